/* Chunk cache: a hash table of refcounted entries, bounded by an LRU of idle entries,
 * with single flight per (key, length) and an optional verified on-disk store.
 *
 * On-disk layout: one file per key, <dir>/v1/<first 2 hex digits of key>/<remaining 30>,
 * a header and the payload (cache/store.h: format 2, or 3 with an HMAC when the cache has
 * a key).  Files are written to a unique temp name in the same directory (O_EXCL),
 * fsynced and renamed, so a reader sees a whole entry or none.  Every load verifies the
 * header, the payload's XXH3 and, with a key, the HMAC.
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
#include "cache/store.h"

#include "util/log.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
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
    uint32_t tag;                /* stored in the disk entry (QFS_CACHE_TAG) */
    pthread_cond_t done;         /* broadcast when state leaves E_FILLING */
};

struct qfs_cache {
    char *root;        /* "<dir>/v1", or NULL for memory only; immutable after open */
    char *shared_root; /* "<shared_dir>/v1" (read-only tier) or NULL; immutable */
    struct qfs_store_manifest *shared_manifest; /* signed tier: its entries; immutable */
    uint8_t *mac_key;  /* -o cache_hmac_key: the key file's bytes, or NULL; immutable */
    struct qfs_store_auth auth; /* {mac_key, its length}; immutable */
    uint64_t mem_max;  /* immutable after open */
    uint64_t disk_max; /* 0: unbounded; immutable after open */

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

    bool disk_scanned;          /* under lock: the first housekeeping scan has run */
    bool scan_wanted;           /* under lock: a writer thread is to run that scan (a disk
                                   hit before any write: st.disk_bytes is still unknown) */
    uint64_t written_bytes;     /* under lock: bytes of entries written by this process */
    atomic_bool disk_warned;    /* one warning for disk write/read failures */
    atomic_bool maint_busy;     /* a housekeeping scan is running (disk_maintain) */
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
        c->st.mem_evicted++;
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

/* Logs the first disk failure of this cache; later ones are only counted. */
static void disk_warn_once(struct qfs_cache *c, const char *what, const char *path, int err)
{
    if (!atomic_exchange(&c->disk_warned, true))
        qfs_warn("cache: %s %s: %s; serving from memory (further disk errors not logged)",
                 what, path, strerror(err));
}

struct disk_counts {
    uint64_t errors, corrupt, stale, shared, unauth;
};

/* Is an entry of key whose file has size bytes (either header size: the file's payload
 * length is one of two) in use here: filling, referenced, or queued for its write?
 * Eviction skips those. */
static bool in_use_cb(void *arg, const struct qfs_cache_key *k, uint64_t size)
{
    static const uint64_t hdr[2] = {QFS_STORE_HDR, QFS_STORE_HDR_AUTH};
    struct qfs_cache *c = arg;
    bool busy = false;
    pthread_mutex_lock(&c->lock);
    for (int i = 0; i < 2 && !busy; i++) {
        if (size < hdr[i])
            continue;
        const uint64_t len = size - hdr[i];
        struct centry *e = table_find(c, k, len, key_hash(k, len));
        busy = e && (e->state != E_READY || e->refs != 0);
    }
    pthread_mutex_unlock(&c->lock);
    return busy;
}

/* Housekeeping of the local store, one thread at a time, never under c->lock: the first
 * time (stale temp files of dead writers of this host; the store's real size), and
 * whenever the size passes disk_max (evict least recently used down to 90%). */
static void disk_maintain(struct qfs_cache *c, bool first)
{
    /* Writes landing during a scan may be missed by it: they are counted on top of what
     * it found (an overestimate at worst), and a bound still exceeded scans again. */
    for (int round = 0; round < 4; round++) {
        if (atomic_exchange(&c->maint_busy, true))
            return;
        struct qfs_store_scan_opts o = {
            .op = QFS_STORE_EVICT,
            .max = c->disk_max ? c->disk_max - c->disk_max / 10 : 0,
            .in_use = in_use_cb,
            .in_use_arg = c,
        };
        struct qfs_store_report r;
        pthread_mutex_lock(&c->lock);
        const uint64_t w0 = c->written_bytes;
        pthread_mutex_unlock(&c->lock);
        int rc = qfs_store_scan(c->root, &o, &r);
        pthread_mutex_lock(&c->lock);
        if (rc == 0) {
            c->st.disk_bytes = r.kept_bytes + (c->written_bytes - w0);
            c->st.disk_evicted += r.evicted;
        }
        c->disk_scanned = true;
        const bool again = rc == 0 && c->disk_max && c->st.disk_bytes > c->disk_max;
        pthread_mutex_unlock(&c->lock);
        atomic_store(&c->maint_busy, false);
        if (rc < 0)
            qfs_debug("cache: scanning %s: %s", c->root, strerror(-rc));
        else if (r.evicted || (first && r.tmp_removed))
            qfs_info("cache: %s: evicted %" PRIu64 " entries (%" PRIu64 " bytes), removed %"
                     PRIu64 " abandoned temp files; %" PRIu64 " bytes kept", c->root, r.evicted,
                     r.removed_bytes, r.tmp_removed, r.kept_bytes);
        if (!again)
            return;
        first = false;
    }
}

/* Load and verify the entry for key from root (the local store, or the shared tier when
 * shared).  With a key, a local entry must carry a valid HMAC; the shared tier is checked
 * against its signed manifest instead.  1: *out is a malloc'd payload.  0: miss (absent,
 * other length, unreadable, corrupt or not authenticated; such a local file is unlinked
 * and logged).  -ENOMEM. */
static int disk_load_from(struct qfs_cache *c, const char *root, bool shared,
                          const struct qfs_cache_key *k, uint64_t len, uint8_t **out,
                          struct disk_counts *dc)
{
    char *path = qfs_store_path(root, k), why[128] = "";
    if (!path)
        return -ENOMEM;
    struct qfs_store_hdr h;
    if (shared && c->shared_manifest && !qfs_store_manifest_lists(c->shared_manifest, k)) {
        free(path);
        return 0;
    }
    const struct qfs_store_auth *auth = c->mac_key && !shared ? &c->auth : NULL;
    int rc = qfs_store_read(path, k, len, auth, !shared, &h, out, why, sizeof why);
    if (rc == 1 && shared && c->shared_manifest &&
        !qfs_store_manifest_check(c->shared_manifest, &h, *out)) {
        snprintf(why, sizeof why, "SHA-256 differs from the signed manifest");
        free(*out);
        *out = NULL;
        rc = -EBADMSG;
    }
    if (rc == -EBADMSG || rc == -EPROTO || rc == -EACCES) {
        if (rc == -EBADMSG)
            dc->corrupt++;
        else if (rc == -EPROTO)
            dc->stale++;
        else
            dc->unauth++;
        if (shared)
            qfs_warn("cache: corrupt entry %s in the shared cache (%s); not used", path, why);
        else if (unlink(path) < 0 && errno != ENOENT)
            qfs_warn("cache: %s entry %s (%s), cannot remove it: %s",
                     rc == -EACCES ? "unauthenticated" : "corrupt", path, why, strerror(errno));
        else if (rc == -EBADMSG)
            qfs_warn("cache: dropped corrupt entry %s: %s; recomputing", path, why);
        else if (rc == -EACCES)
            qfs_warn("cache: dropped entry %s: %s; not served, recomputing", path, why);
        else
            qfs_info("cache: dropped old entry %s: %s; recomputing", path, why);
        rc = 0;
    } else if (rc == -ENOMEM) {
        /* returned as is */
    } else if (rc < 0) {
        dc->errors++;
        if (!shared)
            disk_warn_once(c, "cannot read", path, -rc);
        rc = 0;
    }
    free(path);
    return rc;
}

static int disk_load(struct qfs_cache *c, const struct qfs_cache_key *k, uint64_t len,
                     uint8_t **out, struct disk_counts *dc)
{
    int rc = c->root ? disk_load_from(c, c->root, false, k, len, out, dc) : 0;
    if (rc == 0 && c->shared_root) {
        rc = disk_load_from(c, c->shared_root, true, k, len, out, dc);
        if (rc == 1)
            dc->shared++;
    }
    return rc;
}

/* Write the entry atomically (store.c), account for its bytes, and run the housekeeping
 * when due.  0 or negative errno (logged once per cache, counted by the caller). */
static int disk_store(struct qfs_cache *c, const struct qfs_cache_key *k, uint32_t tag,
                      const uint8_t *data, uint64_t len)
{
    const char *what;
    char *where = NULL;
    uint64_t bytes = 0;
    int rc = qfs_store_write(c->root, k, tag, data, len, c->mac_key ? &c->auth : NULL, &bytes,
                             &what, &where);
    if (rc < 0) {
        disk_warn_once(c, what, where ? where : c->root, -rc);
        free(where);
        return rc;
    }
    pthread_mutex_lock(&c->lock);
    c->st.disk_bytes += bytes;
    c->written_bytes += bytes;
    bool first = !c->disk_scanned;
    bool over = c->disk_max && c->st.disk_bytes > c->disk_max;
    pthread_mutex_unlock(&c->lock);
    if (first || over)
        disk_maintain(c, first);
    return 0;
}

/* ---- write-behind ---- */

/* Writer thread: takes queued entries in order, writes each, drops its reference.
 * Exits once stopping and the queue is empty, so close drains every queued write. */
static void *writer_main(void *arg)
{
    struct qfs_cache *c = arg;
    pthread_mutex_lock(&c->lock);
    for (;;) {
        while (!c->wq_head && !c->wq_stop && !c->scan_wanted)
            pthread_cond_wait(&c->wq_work, &c->lock);
        if (c->scan_wanted) {
            c->scan_wanted = false;
            const bool first = !c->disk_scanned;
            pthread_mutex_unlock(&c->lock);
            if (first)
                disk_maintain(c, true);
            pthread_mutex_lock(&c->lock);
            continue;
        }
        struct centry *e = c->wq_head;
        if (!e)
            break;
        c->wq_head = e->wnext;
        if (!c->wq_head)
            c->wq_tail = NULL;
        e->wnext = NULL;
        pthread_mutex_unlock(&c->lock);

        /* e is READY and referenced: its bytes are immutable and stay allocated. */
        int rc = disk_store(c, &e->key, e->tag, e->pub.data, e->pub.len);

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
    const struct qfs_cache_opts o = {.dir = dir, .mem_max = mem_max};
    return qfs_cache_open_opts(&o, out);
}

/* Wipe and free the HMAC key.  Cannot fail. */
static void key_free(struct qfs_cache *c)
{
    if (!c->mac_key)
        return;
    OPENSSL_cleanse(c->mac_key, c->auth.len);
    free(c->mac_key);
    c->mac_key = NULL;
}

int qfs_cache_open_opts(const struct qfs_cache_opts *o, struct qfs_cache **out)
{
    const char *dir = o->dir;
    const uint64_t mem_max = o->mem_max;
    struct qfs_cache *c = calloc(1, sizeof *c);
    int rc = -ENOMEM;
    if (!c)
        return -ENOMEM;
    c->mem_max = mem_max;
    c->disk_max = o->disk_max;
    c->wq_max = mem_max / 2 < WQ_MAX ? mem_max / 2 : WQ_MAX;
    c->nbuckets = 64;
    c->buckets = calloc(c->nbuckets, sizeof *c->buckets);
    if (!c->buckets)
        goto fail;
    atomic_init(&c->disk_warned, false);
    atomic_init(&c->maint_busy, false);
    if (o->hmac_key_file) {
        /* Asked to authenticate: without the key nothing on disk could be trusted. */
        if ((rc = qfs_store_read_key(o->hmac_key_file, &c->mac_key, &c->auth.len)) < 0) {
            qfs_err("cache: -o cache_hmac_key=%s: %s", o->hmac_key_file, strerror(-rc));
            c->mac_key = NULL;
            goto fail;
        }
        c->auth.key = c->mac_key;
    }
    if (o->shared_dir) {
        struct stat st;
        if (o->shared_dir[0] == '\0') {
            rc = -EINVAL;
            goto fail;
        }
        if (asprintf(&c->shared_root, "%s/v1", o->shared_dir) < 0) {
            c->shared_root = NULL;
            goto fail;
        }
        if (c->mac_key) {
            int mrc = qfs_store_manifest_load(o->shared_dir, &c->auth, &c->shared_manifest);
            if (mrc < 0) {
                qfs_warn("cache: shared cache %s not used: %s", o->shared_dir,
                         mrc == -EPERM ? "manifest not signed with the key" : strerror(-mrc));
                free(c->shared_root);
                c->shared_root = NULL;
            }
        }
        if (c->shared_root && (stat(c->shared_root, &st) < 0 || !S_ISDIR(st.st_mode)))
            qfs_warn("cache: shared cache %s is not usable (%s); consulted anyway when it "
                     "appears", c->shared_root, stat(c->shared_root, &st) < 0 ?
                     strerror(errno) : "not a directory");
    }
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
        int mrc = qfs_store_mkdir_p(c->root);
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
    free(c->shared_root);
    qfs_store_manifest_free(c->shared_manifest);
    key_free(c);
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
    free(c->shared_root);
    qfs_store_manifest_free(c->shared_manifest);
    key_free(c);
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
    return qfs_cache_get_tagged(c, key, 0, len, fill, arg, out, outcome);
}

int qfs_cache_get_tagged(struct qfs_cache *c, const struct qfs_cache_key *key, uint32_t tag,
                         uint64_t len, qfs_cache_fill_fn fill, void *arg,
                         const struct qfs_cache_entry **out, int *outcome)
{
    if (!c || !key || !out)
        return -EINVAL;
    if (len > (uint64_t)SIZE_MAX - QFS_STORE_HDR_MAX)
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
    e->tag = tag;
    table_insert(c, e);
    pthread_mutex_unlock(&c->lock);

    /* This thread owns the fill; no lock held from here to publication. */
    struct disk_counts dc = {0, 0, 0, 0, 0};
    uint8_t *buf = NULL;
    bool filled = false, from_disk = false;
    rc = disk_load(c, key, len, &buf, &dc);
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
    c->st.disk_hits += from_disk && !dc.shared;
    if (from_disk && !dc.shared && !c->disk_scanned && !c->scan_wanted && !c->wq_stop &&
        !c->writers_failed && (c->nwriters > 0 || start_writers_locked(c))) {
        c->scan_wanted = true; /* learn the store's size behind, as a first write does */
        pthread_cond_broadcast(&c->wq_work);
    }
    c->st.disk_errors += dc.errors;
    c->st.corrupt_dropped += dc.corrupt;
    c->st.stale_dropped += dc.stale;
    c->st.unauth_dropped += dc.unauth;
    c->st.shared_hits += dc.shared;
    struct centry *victims = NULL;
    bool write_here = false;
    if (rc == 0) {
        e->pub.data = buf;
        e->state = E_READY;
        c->st.mem_bytes += len;
        c->st.mem_entries++;
        victims = evict_locked(c); /* e is in use, never a victim */
        /* Published first; the disk entry is written behind, or below if no room. */
        write_here = (filled || dc.shared) && c->root && !queue_write_locked(c, e);
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
        int wrc = disk_store(c, key, tag, buf, len);
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

/* ---- remembered source hashes ---- */

static int srchash_key(const struct qfs_file_id *id, uint64_t off, uint64_t len,
                       struct qfs_cache_key *k)
{
    struct qfs_cache_keybuf kb;
    qfs_keybuf_init(&kb);
    int rc = 0;
    rc |= qfs_keybuf_add(&kb, "quantfs-srchash", 15);
    rc |= qfs_keybuf_add_u64(&kb, QFS_SRCHASH_VERSION);
    rc |= qfs_keybuf_add_u64(&kb, id->dev);
    rc |= qfs_keybuf_add_u64(&kb, id->ino);
    rc |= qfs_keybuf_add_u64(&kb, id->size);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)id->mtime_ns);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)id->ctime_ns);
    rc |= qfs_keybuf_add_u64(&kb, off);
    rc |= qfs_keybuf_add_u64(&kb, len);
    qfs_keybuf_finish(&kb, k);
    return rc ? -ENOMEM : 0;
}

static int copy_hash(void *arg, uint8_t *dst, uint64_t len)
{
    if (len != 16)
        return -EINVAL;
    memcpy(dst, ((const struct qfs_cache_key *)arg)->b, 16);
    return 0;
}

int qfs_cache_srchash_get(struct qfs_cache *c, const struct qfs_file_id *id, uint64_t off,
                          uint64_t len, struct qfs_cache_key *hash)
{
    struct qfs_cache_key k;
    if (!c)
        return -ENOENT;
    int rc = srchash_key(id, off, len, &k);
    if (rc < 0)
        return rc;
    const struct qfs_cache_entry *e;
    rc = qfs_cache_get_tagged(c, &k, QFS_CACHE_TAG(QFS_CODEC_SRCHASH, QFS_SRCHASH_VERSION), 16,
                              NULL, NULL, &e, NULL);
    if (rc < 0)
        return rc;
    memcpy(hash->b, e->data, 16);
    qfs_cache_put(c, e);
    pthread_mutex_lock(&c->lock);
    c->st.srchash_hits++;
    pthread_mutex_unlock(&c->lock);
    return 0;
}

void qfs_cache_srchash_put(struct qfs_cache *c, const struct qfs_file_id *id, uint64_t off,
                           uint64_t len, const struct qfs_cache_key *hash)
{
    struct qfs_cache_key k;
    if (!c || srchash_key(id, off, len, &k) < 0)
        return;
    const struct qfs_cache_entry *e;
    struct qfs_cache_key h = *hash;
    int outcome = -1;
    if (qfs_cache_get_tagged(c, &k, QFS_CACHE_TAG(QFS_CODEC_SRCHASH, QFS_SRCHASH_VERSION), 16,
                             copy_hash, &h, &e, &outcome) < 0)
        return;
    qfs_cache_put(c, e);
    pthread_mutex_lock(&c->lock);
    c->st.srchash_stored += outcome == 2;
    c->st.fills -= outcome == 2; /* fills count chunk work, not these 16 bytes */
    pthread_mutex_unlock(&c->lock);
}

void qfs_cache_hint(struct qfs_cache *c, const struct qfs_cache_key *k)
{
    if (!c->root)
        return;
    char *path = qfs_store_path(c->root, k);
    if (!path)
        return;
    const int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    free(path);
    if (fd < 0)
        return;
    (void)posix_fadvise(fd, 0, 0, POSIX_FADV_WILLNEED);
    close(fd);
}
