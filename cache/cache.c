/* Chunk cache: a hash table of refcounted entries, bounded by an LRU of idle entries,
 * with single flight per (key, length) and an optional verified on-disk store.
 *
 * On-disk layout (format version 1), one file per key:
 *   1. path  <dir>/v1/<first 2 hex digits of key>/<remaining 30 hex digits>
 *   2. bytes 0..3    magic "QFSC"
 *   3. bytes 4..7    u32 LE format version (1)
 *   4. bytes 8..23   the 16-byte key
 *   5. bytes 24..31  u64 LE payload length
 *   6. bytes 32..39  u64 LE XXH3-64 of the payload
 *   7. bytes 40..    payload; the file size is exactly 40 + payload length
 * Files are written to a unique temp name in the same directory (O_EXCL), fsynced and
 * renamed, so a reader sees a whole entry or none.  Every load verifies all of the above.
 *
 * Write-behind: a filled entry is published (READY, waiters woken) before it is written.
 * The write then goes to a FIFO served by WRITERS background threads (started on the
 * first write, so a fork after open, as fuse_daemonize does, is safe).  A queued entry
 * holds one reference (the writer's) until its file is renamed into place, so it cannot
 * be evicted, and a later get in this process finds it in memory, never half on disk.
 * The queue is bounded in bytes (min(WQ_MAX, mem_max / 2): queued bytes are memory cache
 * bytes that cannot be evicted); an entry that does not fit is written by the filling
 * thread itself after publication (backpressure).  qfs_cache_close drains the queue.
 *
 * Entry life: FILLING (in the table, owned by the filling thread, waiters sleep on
 * `done`) -> READY (in the table; on the LRU list while refs == 0) or FAILED (already
 * out of the table; freed by whoever drops the last ref).  Memory-bound eviction only
 * takes READY entries with refs == 0, i.e. those on the LRU list; an entry waiting for
 * its disk write holds the writer's reference, so it is never evicted before that. */
#include "cache/cache.h"

#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <xxhash.h>

#define DISK_MAGIC "QFSC"
#define DISK_VERSION 1u
#define DISK_HDR 40
#define HEX_KEY 32
#define WRITERS 2                   /* background disk writer threads */
#define WQ_MAX (256ull << 20)       /* queued write-behind bytes, at most */

enum entry_state { E_FILLING, E_READY, E_FAILED };

struct centry {
    struct qfs_cache_entry pub; /* first member: qfs_cache_put casts back */
    struct qfs_cache_key key;
    uint64_t hash;
    struct centry *hnext;        /* bucket chain */
    struct centry *lprev, *lnext; /* LRU list, linked only while READY && refs == 0 */
    uint64_t refs;
    enum entry_state state;
    int err;                     /* FAILED: the negative errno given to waiters */
    struct centry *wnext;        /* write queue link, while queued for the disk */
    pthread_cond_t done;         /* broadcast when state leaves E_FILLING */
};

struct qfs_cache {
    char *root;       /* "<dir>/v1", or NULL for memory only; immutable after open */
    uint64_t mem_max; /* immutable after open */

    /* lock protects: buckets/nbuckets/count, the LRU list (lru_head/lru_tail), every
     * entry's hnext/lprev/lnext/wnext/refs/state/err/pub.data, st, and the write queue
     * below.  It is a leaf lock:
     * never held while filling, during disk I/O, or while logging.  Entries' `done`
     * condition variables are waited on with this lock. */
    pthread_mutex_t lock;
    struct centry **buckets;
    size_t nbuckets, count;
    struct centry *lru_head, *lru_tail; /* head = most recently put */
    struct qfs_cache_stats st;

    /* Write-behind queue, also under lock: entries queued (wq_head..wq_tail, linked by
     * wnext) or being written; wq_pending counts both, st.write_queue_bytes their bytes.
     * Each holds a reference dropped by the writer once the file is in place. */
    uint64_t wq_max; /* immutable after open */
    struct centry *wq_head, *wq_tail;
    uint64_t wq_pending;
    pthread_cond_t wq_work; /* queue not empty, or stopping */
    pthread_cond_t wq_idle; /* wq_pending reached 0 */
    bool wq_stop;
    int nwriters;           /* threads started (lazily, on the first queued write) */
    bool writers_failed;    /* pthread_create failed: every write is synchronous */
    pthread_t writers[WRITERS];

    atomic_bool disk_warned;    /* one warning for disk write/read failures */
    atomic_uint_fast64_t tmp_seq; /* unique temp names within this process */
};

/* ---- hash table and LRU (caller holds c->lock) ---- */

static uint64_t key_hash(const struct qfs_cache_key *k, uint64_t len)
{
    uint64_t h;
    memcpy(&h, k->b, sizeof h); /* the key is already a good hash */
    return h ^ (len * 0x9E3779B97F4A7C15ull);
}

static struct centry *table_find(struct qfs_cache *c, const struct qfs_cache_key *k,
                                 uint64_t len, uint64_t h)
{
    for (struct centry *e = c->buckets[h & (c->nbuckets - 1)]; e; e = e->hnext)
        if (e->hash == h && e->pub.len == len && memcmp(e->key.b, k->b, sizeof k->b) == 0)
            return e;
    return NULL;
}

/* Doubling the bucket array; on allocation failure chains just get longer. */
static void table_grow(struct qfs_cache *c)
{
    size_t n = c->nbuckets * 2;
    struct centry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct centry *e = c->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            e->hnext = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->nbuckets = n;
}

static void table_insert(struct qfs_cache *c, struct centry *e)
{
    if (c->count >= c->nbuckets)
        table_grow(c);
    struct centry **b = &c->buckets[e->hash & (c->nbuckets - 1)];
    e->hnext = *b;
    *b = e;
    c->count++;
}

static void table_remove(struct qfs_cache *c, struct centry *e)
{
    struct centry **p = &c->buckets[e->hash & (c->nbuckets - 1)];
    while (*p != e)
        p = &(*p)->hnext;
    *p = e->hnext;
    e->hnext = NULL;
    c->count--;
}

static void lru_push(struct qfs_cache *c, struct centry *e)
{
    e->lprev = NULL;
    e->lnext = c->lru_head;
    if (c->lru_head)
        c->lru_head->lprev = e;
    else
        c->lru_tail = e;
    c->lru_head = e;
}

static void lru_unlink(struct qfs_cache *c, struct centry *e)
{
    if (e->lprev)
        e->lprev->lnext = e->lnext;
    else
        c->lru_head = e->lnext;
    if (e->lnext)
        e->lnext->lprev = e->lprev;
    else
        c->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void entry_free(struct centry *e)
{
    free((void *)e->pub.data);
    pthread_cond_destroy(&e->done);
    free(e);
}

/* Unlink idle entries, least recently used first, until within mem_max.  Returns them
 * chained through lnext for the caller to free after unlocking. */
static struct centry *evict_locked(struct qfs_cache *c)
{
    struct centry *victims = NULL;
    while (c->st.mem_bytes > c->mem_max && c->lru_tail) {
        struct centry *e = c->lru_tail;
        lru_unlink(c, e);
        table_remove(c, e);
        c->st.mem_bytes -= e->pub.len;
        c->st.mem_entries--;
        e->lnext = victims;
        victims = e;
    }
    return victims;
}

static void free_victims(struct centry *v)
{
    while (v) {
        struct centry *next = v->lnext;
        entry_free(v);
        v = next;
    }
}

/* Drop one reference of a READY entry; returns eviction victims (see evict_locked). */
static struct centry *unref_locked(struct qfs_cache *c, struct centry *e)
{
    if (--e->refs != 0)
        return NULL;
    lru_push(c, e);
    return evict_locked(c);
}

/* ---- disk store (no lock held) ---- */

/* Directory creation with parents, each new one 0700.  0 or negative errno. */
static int mkdir_p(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char save = *s;
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *s = save;
        if (save == '\0')
            break;
    }
    if (rc == 0) {
        struct stat st;
        if (stat(p, &st) < 0)
            rc = -errno;
        else if (!S_ISDIR(st.st_mode))
            rc = -ENOTDIR;
    }
    free(p);
    return rc;
}

static void key_hex(const struct qfs_cache_key *k, char hex[HEX_KEY + 1])
{
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = digits[k->b[i] >> 4];
        hex[2 * i + 1] = digits[k->b[i] & 15];
    }
    hex[HEX_KEY] = '\0';
}

/* path = "<root>/<2 hex>/<30 hex>"; caller frees.  NULL on ENOMEM. */
static char *entry_path(const struct qfs_cache *c, const struct qfs_cache_key *k)
{
    char hex[HEX_KEY + 1];
    key_hex(k, hex);
    char *p;
    if (asprintf(&p, "%s/%.2s/%s", c->root, hex, hex + 2) < 0)
        return NULL;
    return p;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* Logs the first disk failure of this cache; later ones are only counted. */
static void disk_warn_once(struct qfs_cache *c, const char *what, const char *path, int err)
{
    if (!atomic_exchange(&c->disk_warned, true))
        qfs_warn("cache: %s %s: %s; serving from memory (further disk errors not logged)",
                 what, path, strerror(err));
}

/* Full pread; returns bytes read (< n only at EOF) or negative errno. */
static ssize_t pread_full(int fd, void *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, off + (off_t)got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int write_full(int fd, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, (const uint8_t *)buf + done, n - done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)r;
    }
    return 0;
}

struct disk_counts {
    uint64_t errors, corrupt;
};

/* Load and verify the entry for key with payload length len.
 * 1: *out is a malloc'd payload.  0: miss (absent, other length, unreadable, or corrupt;
 * a corrupt file is unlinked and logged).  Negative errno only for ENOMEM. */
static int disk_load(struct qfs_cache *c, const struct qfs_cache_key *k, uint64_t len,
                     uint8_t **out, struct disk_counts *dc)
{
    char *path = entry_path(c, k);
    if (!path)
        return -ENOMEM;
    uint8_t *buf = NULL;
    char why[96];
    int rc = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno != ENOENT && errno != ENOTDIR) {
            dc->errors++;
            disk_warn_once(c, "cannot open", path, errno);
        }
        goto out;
    }
    struct stat st;
    uint8_t hdr[DISK_HDR];
    ssize_t n = pread_full(fd, hdr, sizeof hdr, 0);
    if (n < 0 || fstat(fd, &st) < 0) {
        dc->errors++;
        disk_warn_once(c, "cannot read", path, n < 0 ? (int)-n : errno);
        goto out;
    }
    if (n < DISK_HDR) {
        snprintf(why, sizeof why, "truncated header (%zd of %d bytes)", n, DISK_HDR);
        goto corrupt;
    }
    if (memcmp(hdr, DISK_MAGIC, 4) != 0) {
        snprintf(why, sizeof why, "bad magic");
        goto corrupt;
    }
    if (get_le32(hdr + 4) != DISK_VERSION) {
        snprintf(why, sizeof why, "format version %" PRIu32 ", expected %u", get_le32(hdr + 4),
                 DISK_VERSION);
        goto corrupt;
    }
    if (memcmp(hdr + 8, k->b, sizeof k->b) != 0) {
        snprintf(why, sizeof why, "key in header does not match its name");
        goto corrupt;
    }
    uint64_t plen = get_le64(hdr + 24);
    if (plen > (uint64_t)SIZE_MAX - DISK_HDR || (uint64_t)st.st_size != DISK_HDR + plen) {
        snprintf(why, sizeof why, "file is %jd bytes, header says %" PRIu64 " + %d",
                 (intmax_t)st.st_size, plen, DISK_HDR);
        goto corrupt;
    }
    if (plen != len) { /* a valid entry of another length: a miss, refilled and replaced */
        qfs_debug("cache: %s holds %" PRIu64 " bytes, %" PRIu64 " requested", path, plen, len);
        goto out;
    }
    buf = malloc(len ? len : 1);
    if (!buf) {
        rc = -ENOMEM;
        goto out;
    }
    n = pread_full(fd, buf, len, DISK_HDR);
    if (n < 0) {
        dc->errors++;
        disk_warn_once(c, "cannot read", path, (int)-n);
        goto out;
    }
    if ((uint64_t)n != len) {
        snprintf(why, sizeof why, "truncated payload (%zd of %" PRIu64 " bytes)", n, len);
        goto corrupt;
    }
    if (XXH3_64bits(buf, len) != get_le64(hdr + 32)) {
        snprintf(why, sizeof why, "payload checksum mismatch");
        goto corrupt;
    }
    close(fd);
    free(path);
    *out = buf;
    return 1;

corrupt:
    dc->corrupt++;
    if (unlink(path) < 0 && errno != ENOENT)
        qfs_warn("cache: corrupt entry %s (%s), cannot remove it: %s", path, why, strerror(errno));
    else
        qfs_warn("cache: dropped corrupt entry %s: %s; recomputing", path, why);
out:
    if (fd >= 0)
        close(fd);
    free(buf);
    free(path);
    return rc;
}

/* Write the entry atomically: unique temp file (O_EXCL) in the entry's directory,
 * header + payload, fsync, rename.  The temp file never survives a failure.
 * 0 or negative errno (logged once per cache, counted by the caller). */
static int disk_store(struct qfs_cache *c, const struct qfs_cache_key *k, const uint8_t *data,
                      uint64_t len)
{
    char *path = entry_path(c, k), *tmp = NULL;
    int fd = -1, rc;
    if (!path)
        return -ENOMEM;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        disk_warn_once(c, "cannot create", path, -rc);
        goto fail;
    }
    *slash = '/';
    unsigned long long seq = atomic_fetch_add(&c->tmp_seq, 1);
    if (asprintf(&tmp, "%.*s/.tmp.%s.%ld.%llu", (int)(slash - path), path, slash + 1,
                 (long)getpid(), seq) < 0) {
        tmp = NULL;
        rc = -ENOMEM;
        goto fail;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        disk_warn_once(c, "cannot create", tmp, -rc);
        goto fail;
    }
    uint8_t hdr[DISK_HDR];
    memcpy(hdr, DISK_MAGIC, 4);
    put_le32(hdr + 4, DISK_VERSION);
    memcpy(hdr + 8, k->b, sizeof k->b);
    put_le64(hdr + 24, len);
    put_le64(hdr + 32, XXH3_64bits(data, len));
    if ((rc = write_full(fd, hdr, sizeof hdr)) < 0 || (rc = write_full(fd, data, len)) < 0) {
        disk_warn_once(c, "cannot write", tmp, -rc);
        goto fail_unlink;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        disk_warn_once(c, "cannot fsync", tmp, -rc);
        goto fail_unlink;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) < 0) {
        rc = -errno;
        disk_warn_once(c, "cannot close", tmp, -rc);
        goto fail_unlink;
    }
    if (rename(tmp, path) < 0) {
        rc = -errno;
        disk_warn_once(c, "cannot rename into", path, -rc);
        goto fail_unlink;
    }
    free(tmp);
    free(path);
    return 0;

fail_unlink:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
fail:
    if (fd >= 0)
        close(fd);
    free(tmp);
    free(path);
    return rc;
}

/* ---- write-behind ---- */

/* Writer thread: takes queued entries in order, writes each, drops its reference.
 * Exits once stopping and the queue is empty, so close drains every queued write. */
static void *writer_main(void *arg)
{
    struct qfs_cache *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->wq_head && !c->wq_stop)
            pthread_cond_wait(&c->wq_work, &c->lock);
        struct centry *e = c->wq_head;
        if (!e)
            break;
        c->wq_head = e->wnext;
        if (!c->wq_head)
            c->wq_tail = NULL;
        e->wnext = NULL;
        pthread_mutex_unlock(&c->lock);

        /* e is READY and referenced: its bytes are immutable and stay allocated. */
        int rc = disk_store(c, &e->key, e->pub.data, e->pub.len);

        pthread_mutex_lock(&c->lock);
        if (rc < 0)
            c->st.disk_errors++;
        else
            c->st.disk_writes++;
        c->st.write_queue_bytes -= e->pub.len;
        if (--c->wq_pending == 0)
            pthread_cond_broadcast(&c->wq_idle);
        struct centry *victims = unref_locked(c, e);
        if (victims) {
            pthread_mutex_unlock(&c->lock);
            free_victims(victims);
            pthread_mutex_lock(&c->lock);
        }
    }
    pthread_mutex_unlock(&c->lock);
    return NULL;
}

/* Start the writer threads with every signal blocked (signals belong to the threads
 * that serve requests).  Caller holds c->lock.  false: none could be started. */
static bool start_writers_locked(struct qfs_cache *c)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    while (c->nwriters < WRITERS &&
           pthread_create(&c->writers[c->nwriters], NULL, writer_main, c) == 0)
        c->nwriters++;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (c->nwriters == 0)
        c->writers_failed = true;
    return c->nwriters > 0;
}

/* Queue the READY entry e for writing if the queue has room: takes a reference for
 * the writer.  Caller holds c->lock.  false: the caller writes it itself. */
static bool queue_write_locked(struct qfs_cache *c, struct centry *e)
{
    if (c->writers_failed || c->wq_stop || e->pub.len > c->wq_max - c->st.write_queue_bytes)
        return false;
    if (c->nwriters == 0 && !start_writers_locked(c))
        return false;
    e->refs++;
    e->wnext = NULL;
    if (c->wq_tail)
        c->wq_tail->wnext = e;
    else
        c->wq_head = e;
    c->wq_tail = e;
    c->wq_pending++;
    c->st.write_queue_bytes += e->pub.len;
    pthread_cond_signal(&c->wq_work);
    return true;
}

/* ---- public API ---- */

int qfs_cache_open(const char *dir, uint64_t mem_max, struct qfs_cache **out)
{
    struct qfs_cache *c = calloc(1, sizeof *c);
    int rc = -ENOMEM;
    if (!c)
        return -ENOMEM;
    c->mem_max = mem_max;
    c->wq_max = mem_max / 2 < WQ_MAX ? mem_max / 2 : WQ_MAX;
    c->nbuckets = 64;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets)
        goto fail;
    atomic_init(&c->disk_warned, false);
    atomic_init(&c->tmp_seq, 0);
    if (dir) {
        if (dir[0] == '\0') {
            rc = -EINVAL;
            goto fail;
        }
        if (asprintf(&c->root, "%s/v1", dir) < 0) {
            c->root = NULL;
            goto fail;
        }
        /* An unusable directory is not fatal: the cache then serves from memory and
         * every disk attempt fails quietly (counted in disk_errors). */
        int mrc = mkdir_p(c->root);
        if (mrc < 0) {
            atomic_store(&c->disk_warned, true);
            qfs_warn("cache: cannot create %s: %s; serving from memory only", c->root,
                     strerror(-mrc));
        }
    }
    if ((rc = -pthread_mutex_init(&c->lock, NULL)) < 0)
        goto fail;
    if ((rc = -pthread_cond_init(&c->wq_work, NULL)) < 0)
        goto fail_lock;
    if ((rc = -pthread_cond_init(&c->wq_idle, NULL)) < 0)
        goto fail_work;
    *out = c;
    return 0;
fail_work:
    pthread_cond_destroy(&c->wq_work);
fail_lock:
    pthread_mutex_destroy(&c->lock);
fail:
    free(c->root);
    free(c->buckets);
    free(c);
    return rc;
}

void qfs_cache_flush(struct qfs_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    while (c->wq_pending)
        pthread_cond_wait(&c->wq_idle, &c->lock);
    pthread_mutex_unlock(&c->lock);
}

/* Writes every queued entry, stops the writers, frees every entry.  All gets must have
 * returned and all entries been put. */
void qfs_cache_close(struct qfs_cache *c)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    c->wq_stop = true;
    pthread_cond_broadcast(&c->wq_work);
    pthread_mutex_unlock(&c->lock);
    for (int i = 0; i < c->nwriters; i++)
        pthread_join(c->writers[i], NULL);
    uint64_t busy = 0;
    for (size_t i = 0; i < c->nbuckets; i++) {
        struct centry *e = c->buckets[i], *next;
        for (; e; e = next) {
            next = e->hnext;
            busy += e->refs != 0;
            entry_free(e);
        }
    }
    if (busy)
        qfs_warn("cache: closed with %" PRIu64 " entries still in use", busy);
    pthread_cond_destroy(&c->wq_idle);
    pthread_cond_destroy(&c->wq_work);
    pthread_mutex_destroy(&c->lock);
    free(c->buckets);
    free(c->root);
    free(c);
}

static struct centry *entry_new(const struct qfs_cache_key *k, uint64_t len, uint64_t h)
{
    struct centry *e = calloc(1, sizeof *e);
    if (!e)
        return NULL;
    if (pthread_cond_init(&e->done, NULL) != 0) {
        free(e);
        return NULL;
    }
    e->key = *k;
    e->pub.len = len;
    e->hash = h;
    e->refs = 1;
    e->state = E_FILLING;
    return e;
}

/* See cache.h for the protocol.  0 with *out referenced (release with qfs_cache_put),
 * or negative errno: the fill's own error (also given to every waiter of that fill),
 * -ENOMEM, -EINVAL.  A failed key is not remembered: the next get fills again. */
int qfs_cache_get(struct qfs_cache *c, const struct qfs_cache_key *key, uint64_t len,
                  qfs_cache_fill_fn fill, void *arg, const struct qfs_cache_entry **out,
                  int *outcome)
{
    if (!c || !key || !out)
        return -EINVAL;
    if (len > (uint64_t)SIZE_MAX - DISK_HDR)
        return -EFBIG;
    uint64_t h = key_hash(key, len);
    int rc;

    pthread_mutex_lock(&c->lock);
    struct centry *e = table_find(c, key, len, h);
    if (e && e->state == E_READY) {
        if (e->refs++ == 0)
            lru_unlink(c, e);
        c->st.mem_hits++;
        pthread_mutex_unlock(&c->lock);
        *out = &e->pub;
        if (outcome)
            *outcome = 0;
        return 0;
    }
    if (e) { /* E_FILLING: wait for that key only */
        e->refs++;
        c->st.waits++;
        while (e->state == E_FILLING)
            pthread_cond_wait(&e->done, &c->lock);
        if (e->state == E_READY) {
            pthread_mutex_unlock(&c->lock);
            *out = &e->pub;
            if (outcome)
                *outcome = 3;
            return 0;
        }
        rc = e->err; /* E_FAILED: already out of the table */
        bool last = --e->refs == 0;
        pthread_mutex_unlock(&c->lock);
        if (last)
            entry_free(e);
        return rc;
    }
    e = entry_new(key, len, h);
    if (!e) {
        pthread_mutex_unlock(&c->lock);
        return -ENOMEM;
    }
    table_insert(c, e);
    pthread_mutex_unlock(&c->lock);

    /* This thread owns the fill; no lock held from here to publication. */
    struct disk_counts dc = {0, 0};
    uint8_t *buf = NULL;
    bool filled = false, from_disk = false;
    rc = c->root ? disk_load(c, key, len, &buf, &dc) : 0;
    if (rc == 1) {
        from_disk = true;
        rc = 0;
    } else if (rc == 0) {
        buf = malloc(len ? len : 1);
        if (!buf) {
            rc = -ENOMEM;
        } else if (!fill) {
            rc = -ENOENT;
        } else {
            filled = true;
            rc = fill(arg, buf, len);
            if (rc > 0)
                rc = -rc;
        }
    }

    pthread_mutex_lock(&c->lock);
    c->st.fills += filled;
    c->st.disk_hits += from_disk;
    c->st.disk_errors += dc.errors;
    c->st.corrupt_dropped += dc.corrupt;
    struct centry *victims = NULL;
    bool write_here = false;
    if (rc == 0) {
        e->pub.data = buf;
        e->state = E_READY;
        c->st.mem_bytes += len;
        c->st.mem_entries++;
        victims = evict_locked(c); /* e is in use, never a victim */
        /* Published first; the disk entry is written behind, or below if no room. */
        write_here = filled && c->root && !queue_write_locked(c, e);
    } else {
        table_remove(c, e);
        e->state = E_FAILED;
        e->err = rc;
    }
    pthread_cond_broadcast(&e->done);
    bool last = rc != 0 && --e->refs == 0;
    pthread_mutex_unlock(&c->lock);
    free_victims(victims);
    if (rc != 0) {
        free(buf);
        if (last)
            entry_free(e);
        return rc;
    }
    if (write_here) { /* backpressure: this thread's reference keeps e in memory */
        int wrc = disk_store(c, key, buf, len);
        pthread_mutex_lock(&c->lock);
        c->st.disk_writes_sync++;
        if (wrc < 0)
            c->st.disk_errors++;
        else
            c->st.disk_writes++;
        pthread_mutex_unlock(&c->lock);
    }
    *out = &e->pub;
    if (outcome)
        *outcome = from_disk ? 1 : 2;
    return 0;
}

/* Drop one reference; the entry becomes evictable when none remain.  e may be NULL. */
void qfs_cache_put(struct qfs_cache *c, const struct qfs_cache_entry *pe)
{
    if (!c || !pe)
        return;
    struct centry *e = (struct centry *)(void *)pe;
    pthread_mutex_lock(&c->lock);
    struct centry *victims = unref_locked(c, e);
    pthread_mutex_unlock(&c->lock);
    free_victims(victims);
}

void qfs_cache_get_stats(struct qfs_cache *c, struct qfs_cache_stats *s)
{
    pthread_mutex_lock(&c->lock);
    *s = c->st;
    pthread_mutex_unlock(&c->lock);
}
