/* Tests for cache/: key derivation, hits, single flight, memory bound, disk store
 * (reload, corruption, truncation, wrong length), unwritable stores, failing fills,
 * write-behind (drained by close, bounded queue, synchronous when full). */
#include "cache/cache.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

static int failures;

#define CHECK(cond)                                                                     \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);            \
            failures++;                                                                 \
        }                                                                               \
    } while (0)

/* ---- helpers ---- */

struct fillarg {
    atomic_int calls;
    int delay_us;
    int rc;       /* returned by the fill */
    uint32_t seed;
};

static uint8_t pattern(uint32_t seed, uint64_t i)
{
    return (uint8_t)(seed * 131u + i * 7u + (i >> 8) * 13u);
}

static int fill_fn(void *p, uint8_t *dst, uint64_t len)
{
    struct fillarg *a = p;
    atomic_fetch_add(&a->calls, 1);
    if (a->delay_us)
        usleep((useconds_t)a->delay_us);
    if (a->rc)
        return a->rc;
    for (uint64_t i = 0; i < len; i++)
        dst[i] = pattern(a->seed, i);
    return 0;
}

static int data_ok(const struct qfs_cache_entry *e, uint32_t seed, uint64_t len)
{
    if (!e || e->len != len)
        return 0;
    for (uint64_t i = 0; i < len; i++)
        if (e->data[i] != pattern(seed, i))
            return 0;
    return 1;
}

static struct qfs_cache_key make_key(uint64_t i)
{
    struct qfs_cache_keybuf kb;
    struct qfs_cache_key k;
    qfs_keybuf_init(&kb);
    if (qfs_keybuf_add(&kb, "test", 4) < 0 || qfs_keybuf_add_u64(&kb, i) < 0)
        abort();
    qfs_keybuf_finish(&kb, &k);
    return k;
}

static struct qfs_cache_stats stats(struct qfs_cache *c)
{
    struct qfs_cache_stats s;
    qfs_cache_get_stats(c, &s);
    return s;
}

static int rm_cb(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *path) { nftw(path, rm_cb, 16, FTW_DEPTH | FTW_PHYS); }

static char *entry_file(const char *dir, const struct qfs_cache_key *k)
{
    char hex[33];
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", k->b[i]);
    char *p;
    if (asprintf(&p, "%s/v1/%.2s/%s", dir, hex, hex + 2) < 0)
        abort();
    return p;
}

static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Number of names in the directory holding path (excluding . and ..). */
static int siblings(const char *path)
{
    char *d = strdup(path);
    *strrchr(d, '/') = '\0';
    DIR *dp = opendir(d);
    int n = 0;
    if (dp) {
        for (struct dirent *de; (de = readdir(dp));)
            n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
        closedir(dp);
    }
    free(d);
    return n;
}

/* Redirect stderr to a file while the cache logs; return what was logged. */
static int saved_stderr = -1;
static FILE *capture_file;

static void capture_start(void)
{
    fflush(stderr);
    capture_file = tmpfile();
    saved_stderr = dup(STDERR_FILENO);
    dup2(fileno(capture_file), STDERR_FILENO);
}

static char *capture_stop(void)
{
    fflush(stderr);
    dup2(saved_stderr, STDERR_FILENO);
    close(saved_stderr);
    long n = ftell(capture_file);
    if (n < 0)
        n = 0;
    char *s = calloc(1, (size_t)n + 1);
    rewind(capture_file);
    size_t got = fread(s, 1, (size_t)n, capture_file);
    s[got] = '\0';
    fclose(capture_file);
    fputs(s, stderr); /* keep it in the test log */
    return s;
}

static char *make_tmpdir(void)
{
    char tmpl[] = "/tmp/qfs-cache-test.XXXXXX";
    if (!mkdtemp(tmpl))
        abort();
    return strdup(tmpl);
}

/* ---- tests ---- */

static void test_keys(void)
{
    struct qfs_cache_keybuf kb;
    struct qfs_cache_key k1, k2, k3;

    /* Field boundaries matter: ("ab","c") != ("a","bc"). */
    qfs_keybuf_init(&kb);
    CHECK(qfs_keybuf_add(&kb, "ab", 2) == 0);
    CHECK(qfs_keybuf_add(&kb, "c", 1) == 0);
    qfs_keybuf_finish(&kb, &k1);
    CHECK(kb.buf == NULL);
    qfs_keybuf_init(&kb);
    CHECK(qfs_keybuf_add(&kb, "a", 1) == 0);
    CHECK(qfs_keybuf_add(&kb, "bc", 2) == 0);
    qfs_keybuf_finish(&kb, &k2);
    CHECK(memcmp(k1.b, k2.b, 16) != 0);

    /* Encoding: u64 LE length then bytes; key = canonical XXH3-128. */
    uint8_t manual[8 + 3 + 8 + 8] = {3, 0, 0, 0, 0, 0, 0, 0, 'x', 'y', 'z', 8, 0, 0, 0, 0, 0, 0, 0,
                                     0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
    qfs_keybuf_init(&kb);
    CHECK(qfs_keybuf_add(&kb, "xyz", 3) == 0);
    CHECK(qfs_keybuf_add_u64(&kb, 0x0102030405060708ull) == 0);
    qfs_keybuf_finish(&kb, &k3);
    XXH128_canonical_t canon;
    XXH128_canonicalFromHash(&canon, XXH3_128bits(manual, sizeof manual));
    CHECK(memcmp(k3.b, canon.digest, 16) == 0);

    /* Many fields (buffer growth) are deterministic. */
    struct qfs_cache_key a, b;
    for (int rep = 0; rep < 2; rep++) {
        qfs_keybuf_init(&kb);
        for (uint64_t i = 0; i < 1000; i++)
            CHECK(qfs_keybuf_add_u64(&kb, i) == 0);
        qfs_keybuf_finish(&kb, rep ? &b : &a);
    }
    CHECK(memcmp(a.b, b.b, 16) == 0);

    qfs_hash128("abc", 3, &k1);
    XXH128_canonicalFromHash(&canon, XXH3_128bits("abc", 3));
    CHECK(memcmp(k1.b, canon.digest, 16) == 0);
}

static void test_basic(void)
{
    struct qfs_cache *c;
    CHECK(qfs_cache_open(NULL, 1 << 20, &c) == 0);
    struct fillarg fa = {.seed = 1};
    struct qfs_cache_key k = make_key(1);
    const struct qfs_cache_entry *e, *e2;
    int oc = -1;

    CHECK(qfs_cache_get(c, &k, 1000, fill_fn, &fa, &e, &oc) == 0);
    CHECK(oc == 2 && fa.calls == 1 && data_ok(e, 1, 1000));
    CHECK(qfs_cache_get(c, &k, 1000, fill_fn, &fa, &e2, &oc) == 0);
    CHECK(oc == 0 && fa.calls == 1 && e2 == e && data_ok(e2, 1, 1000));
    qfs_cache_put(c, e2);
    qfs_cache_put(c, e);
    CHECK(qfs_cache_get(c, &k, 1000, fill_fn, &fa, &e, NULL) == 0);
    CHECK(fa.calls == 1 && data_ok(e, 1, 1000));
    qfs_cache_put(c, e);

    /* Zero-length payload. */
    struct qfs_cache_key k0 = make_key(0);
    CHECK(qfs_cache_get(c, &k0, 0, fill_fn, &fa, &e, &oc) == 0);
    CHECK(oc == 2 && e->len == 0);
    qfs_cache_put(c, e);

    /* No fill function and nothing cached. */
    struct qfs_cache_key k9 = make_key(9);
    CHECK(qfs_cache_get(c, &k9, 10, NULL, NULL, &e, &oc) == -ENOENT);

    struct qfs_cache_stats s = stats(c);
    CHECK(s.fills == 2 && s.mem_hits == 2 && s.mem_entries == 2 && s.mem_bytes == 1000);
    qfs_cache_close(c);
}

struct sf_thread {
    struct qfs_cache *c;
    pthread_barrier_t *bar;
    struct fillarg *fa;
    struct qfs_cache_key key;
    uint64_t len;
    int rc, outcome, ok;
};

static void *sf_main(void *p)
{
    struct sf_thread *t = p;
    const struct qfs_cache_entry *e = NULL;
    pthread_barrier_wait(t->bar);
    t->rc = qfs_cache_get(t->c, &t->key, t->len, fill_fn, t->fa, &e, &t->outcome);
    if (t->rc == 0) {
        t->ok = data_ok(e, t->fa->seed, t->len);
        qfs_cache_put(t->c, e);
    }
    return NULL;
}

static void test_single_flight(void)
{
    enum { N = 8 };
    struct qfs_cache *c;
    CHECK(qfs_cache_open(NULL, 1 << 20, &c) == 0);
    struct fillarg fa = {.delay_us = 200000, .seed = 7};
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    struct sf_thread t[N];
    pthread_t th[N];
    for (int i = 0; i < N; i++) {
        t[i] = (struct sf_thread){c, &bar, &fa, make_key(42), 5000, -1, -1, 0};
        pthread_create(&th[i], NULL, sf_main, &t[i]);
    }
    int filled = 0, waited = 0, hit = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK(t[i].rc == 0 && t[i].ok);
        filled += t[i].outcome == 2;
        waited += t[i].outcome == 3;
        hit += t[i].outcome == 0;
    }
    CHECK(fa.calls == 1);
    /* All start together and the fill takes 200 ms: the others wait (a thread delayed
     * past the fill would see a memory hit, which is still single flight). */
    CHECK(filled == 1 && waited + hit == N - 1 && waited >= 1);
    CHECK(stats(c).fills == 1 && stats(c).waits == (uint64_t)waited);
    pthread_barrier_destroy(&bar);
    qfs_cache_close(c);
}

/* Many keys across threads: every key filled exactly once. */
enum { MK_THREADS = 8, MK_KEYS = 96 };
struct mk_shared {
    struct qfs_cache *c;
    struct fillarg fa[MK_KEYS];
    atomic_int bad;
};
struct mk_thread {
    struct mk_shared *sh;
    int idx;
};

static void *mk_main(void *p)
{
    struct mk_thread *t = p;
    for (int j = 0; j < MK_KEYS; j++) {
        int k = (j * 7 + t->idx * 13) % MK_KEYS;
        struct qfs_cache_key key = make_key(1000 + (uint64_t)k);
        const struct qfs_cache_entry *e;
        uint64_t len = 256 + (uint64_t)k * 3;
        if (qfs_cache_get(t->sh->c, &key, len, fill_fn, &t->sh->fa[k], &e, NULL) != 0 ||
            !data_ok(e, (uint32_t)k, len))
            atomic_fetch_add(&t->sh->bad, 1);
        else
            qfs_cache_put(t->sh->c, e);
    }
    return NULL;
}

static void test_many_keys(void)
{
    static struct mk_shared sh;
    memset(&sh, 0, sizeof sh);
    CHECK(qfs_cache_open(NULL, 1 << 24, &sh.c) == 0);
    for (int k = 0; k < MK_KEYS; k++)
        sh.fa[k] = (struct fillarg){.delay_us = 2000, .seed = (uint32_t)k};
    pthread_t th[MK_THREADS];
    struct mk_thread t[MK_THREADS];
    for (int i = 0; i < MK_THREADS; i++) {
        t[i] = (struct mk_thread){&sh, i};
        pthread_create(&th[i], NULL, mk_main, &t[i]);
    }
    for (int i = 0; i < MK_THREADS; i++)
        pthread_join(th[i], NULL);
    CHECK(sh.bad == 0);
    for (int k = 0; k < MK_KEYS; k++)
        CHECK(sh.fa[k].calls == 1);
    struct qfs_cache_stats s = stats(sh.c);
    CHECK(s.fills == MK_KEYS && s.mem_entries == MK_KEYS);
    CHECK(s.mem_hits + s.waits + s.fills == (uint64_t)MK_THREADS * MK_KEYS);
    qfs_cache_close(sh.c);
}

static void test_memory_bound(void)
{
    const uint64_t len = 1024, max = 8 * 1024;
    struct qfs_cache *c;
    CHECK(qfs_cache_open(NULL, max, &c) == 0);
    struct fillarg held_fa = {.seed = 99}, fa = {.seed = 5};
    struct qfs_cache_key hk = make_key(5000);
    const struct qfs_cache_entry *held, *e;
    int oc;
    CHECK(qfs_cache_get(c, &hk, len, fill_fn, &held_fa, &held, &oc) == 0 && oc == 2);
    for (uint64_t i = 0; i < 100; i++) {
        struct qfs_cache_key k = make_key(6000 + i);
        CHECK(qfs_cache_get(c, &k, len, fill_fn, &fa, &e, NULL) == 0);
        qfs_cache_put(c, e);
        struct qfs_cache_stats s = stats(c);
        CHECK(s.mem_bytes <= max && s.mem_entries <= max / len);
    }
    CHECK(fa.calls == 100);
    /* The held entry survived every eviction, bytes intact, and is still a hit. */
    CHECK(data_ok(held, 99, len));
    CHECK(qfs_cache_get(c, &hk, len, fill_fn, &held_fa, &e, &oc) == 0);
    CHECK(oc == 0 && e == held && held_fa.calls == 1);
    qfs_cache_put(c, e);
    qfs_cache_put(c, held);
    CHECK(stats(c).mem_bytes <= max);
    /* The most recent keys are still there (LRU keeps recent ones). */
    struct qfs_cache_key last = make_key(6000 + 99);
    CHECK(qfs_cache_get(c, &last, len, fill_fn, &fa, &e, &oc) == 0 && oc == 0);
    qfs_cache_put(c, e);
    /* An entry larger than the bound is served, then dropped when put. */
    struct qfs_cache_key big = make_key(7000);
    CHECK(qfs_cache_get(c, &big, 4 * max, fill_fn, &fa, &e, &oc) == 0 && oc == 2);
    CHECK(data_ok(e, 5, 4 * max));
    qfs_cache_put(c, e);
    CHECK(stats(c).mem_bytes <= max);
    qfs_cache_close(c);

    /* mem_max 0: nothing stays in memory once put. */
    CHECK(qfs_cache_open(NULL, 0, &c) == 0);
    struct fillarg f0 = {.seed = 3};
    for (int i = 0; i < 3; i++) {
        CHECK(qfs_cache_get(c, &hk, len, fill_fn, &f0, &e, &oc) == 0 && oc == 2);
        qfs_cache_put(c, e);
    }
    CHECK(f0.calls == 3 && stats(c).mem_bytes == 0 && stats(c).mem_entries == 0);
    qfs_cache_close(c);
}

/* Eviction churn under concurrency (for the sanitizers): small memory, shared keys. */
struct churn_thread {
    struct qfs_cache *c;
    struct fillarg *fa;
    int idx, bad;
};

static void *churn_main(void *p)
{
    struct churn_thread *t = p;
    unsigned r = (unsigned)t->idx * 2654435761u + 1;
    for (int j = 0; j < 400; j++) {
        r = r * 1103515245u + 12345u;
        int k = (int)((r >> 8) % 32);
        struct qfs_cache_key key = make_key(8000 + (uint64_t)k);
        const struct qfs_cache_entry *e;
        if (qfs_cache_get(t->c, &key, 512, fill_fn, &t->fa[k], &e, NULL) != 0 ||
            !data_ok(e, (uint32_t)k, 512))
            t->bad++;
        else
            qfs_cache_put(t->c, e);
    }
    return NULL;
}

static void test_churn(const char *dir)
{
    struct qfs_cache *c;
    CHECK(qfs_cache_open(dir, 4 * 512, &c) == 0);
    static struct fillarg fa[32];
    for (int k = 0; k < 32; k++)
        fa[k] = (struct fillarg){.delay_us = 100, .seed = (uint32_t)k};
    pthread_t th[8];
    struct churn_thread t[8];
    for (int i = 0; i < 8; i++) {
        t[i] = (struct churn_thread){c, fa, i, 0};
        pthread_create(&th[i], NULL, churn_main, &t[i]);
    }
    for (int i = 0; i < 8; i++) {
        pthread_join(th[i], NULL);
        CHECK(t[i].bad == 0);
    }
    struct qfs_cache_stats s = stats(c);
    CHECK(s.mem_bytes <= 4 * 512);
    if (dir) /* every key filled once; re-reads after eviction come from disk */
        for (int k = 0; k < 32; k++)
            CHECK(fa[k].calls == 1);
    CHECK(s.corrupt_dropped == 0 && s.disk_errors == 0);
    qfs_cache_close(c);
}

/* Reopen dir with empty memory and get key: returns the outcome, checks the bytes. */
static int reget(const char *dir, const struct qfs_cache_key *k, uint64_t len,
                 struct fillarg *fa, struct qfs_cache_stats *s)
{
    struct qfs_cache *c;
    const struct qfs_cache_entry *e;
    int oc = -1;
    CHECK(qfs_cache_open(dir, 1 << 20, &c) == 0);
    CHECK(qfs_cache_get(c, k, len, fill_fn, fa, &e, &oc) == 0);
    CHECK(data_ok(e, fa->seed, len));
    qfs_cache_put(c, e);
    *s = stats(c);
    qfs_cache_close(c);
    return oc;
}

static void flip_byte(const char *path, long off)
{
    int fd = open(path, O_RDWR);
    uint8_t b = 0;
    CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1);
    b ^= 0x40;
    CHECK(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

/* Damage the entry, then check: detected, logged with its path, recomputed once,
 * rewritten valid (next open is a disk hit). */
static void check_recovers(const char *dir, const struct qfs_cache_key *k, uint64_t len,
                           uint32_t seed, const char *what)
{
    char *path = entry_file(dir, k);
    struct fillarg fa = {.seed = seed};
    struct qfs_cache_stats s;
    capture_start();
    int oc = reget(dir, k, len, &fa, &s);
    char *log = capture_stop();
    CHECK(oc == 2 && fa.calls == 1 && s.fills == 1 && s.corrupt_dropped + s.stale_dropped == 1);
    CHECK(strstr(log, path) != NULL);
    if (!strstr(log, path))
        fprintf(stderr, "  (%s: log did not name %s)\n", what, path);
    free(log);
    CHECK(file_size(path) == 48 + (long)len);
    oc = reget(dir, k, len, &fa, &s);
    CHECK(oc == 1 && fa.calls == 1 && s.fills == 0 && s.disk_hits == 1);
    CHECK(siblings(path) == 1); /* no temp files left */
    free(path);
}

static void test_disk(void)
{
    char *top = make_tmpdir(), *dir;
    if (asprintf(&dir, "%s/store/a", top) < 0)
        abort();
    const uint64_t lens[3] = {4096, 1, 0};
    struct qfs_cache_key k[3];
    struct fillarg fa[3];
    struct qfs_cache *c;
    const struct qfs_cache_entry *e;
    int oc;

    CHECK(qfs_cache_open(dir, 1 << 20, &c) == 0);
    struct stat st;
    CHECK(stat(dir, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0700);
    for (int i = 0; i < 3; i++) {
        k[i] = make_key(100 + (uint64_t)i);
        fa[i] = (struct fillarg){.seed = 100 + (uint32_t)i};
        CHECK(qfs_cache_get(c, &k[i], lens[i], fill_fn, &fa[i], &e, &oc) == 0 && oc == 2);
        qfs_cache_put(c, e);
        qfs_cache_flush(c); /* written behind: on disk once flushed */
        char *p = entry_file(dir, &k[i]);
        CHECK(file_size(p) == 48 + (long)lens[i]);
        CHECK(siblings(p) == 1);
        free(p);
    }
    qfs_cache_close(c);

    /* Header layout. */
    {
        char *p = entry_file(dir, &k[0]);
        uint8_t hdr[48], payload[4096];
        int fd = open(p, O_RDONLY);
        CHECK(fd >= 0 && pread(fd, hdr, 48, 0) == 48 && pread(fd, payload, 4096, 48) == 4096);
        close(fd);
        uint64_t plen = 0, sum = 0;
        for (int i = 7; i >= 0; i--) {
            plen = plen << 8 | hdr[24 + i];
            sum = sum << 8 | hdr[32 + i];
        }
        CHECK(memcmp(hdr, "QFSC", 4) == 0 && hdr[4] == 2 && hdr[5] == 0 && hdr[6] == 0 &&
              hdr[7] == 0);
        CHECK(memcmp(hdr + 8, k[0].b, 16) == 0 && plen == 4096);
        CHECK(sum == XXH3_64bits(payload, 4096));
        free(p);
    }

    /* Reopen with memory empty: disk hits, zero fills. */
    CHECK(qfs_cache_open(dir, 1 << 20, &c) == 0);
    for (int i = 0; i < 3; i++) {
        CHECK(qfs_cache_get(c, &k[i], lens[i], fill_fn, &fa[i], &e, &oc) == 0 && oc == 1);
        CHECK(data_ok(e, fa[i].seed, lens[i]));
        qfs_cache_put(c, e);
        CHECK(fa[i].calls == 1);
    }
    struct qfs_cache_stats s = stats(c);
    CHECK(s.disk_hits == 3 && s.fills == 0 && s.corrupt_dropped == 0);
    qfs_cache_close(c);

    char *p0 = entry_file(dir, &k[0]);
    flip_byte(p0, 48 + 1234); /* payload byte */
    check_recovers(dir, &k[0], 4096, 100, "payload flip");
    flip_byte(p0, 2); /* magic */
    check_recovers(dir, &k[0], 4096, 100, "magic");
    flip_byte(p0, 8 + 3); /* key */
    check_recovers(dir, &k[0], 4096, 100, "key");
    flip_byte(p0, 4); /* version */
    check_recovers(dir, &k[0], 4096, 100, "version");
    flip_byte(p0, 32); /* checksum */
    check_recovers(dir, &k[0], 4096, 100, "checksum");
    flip_byte(p0, 41); /* codec tag: the header checksum */
    check_recovers(dir, &k[0], 4096, 100, "checksum");
    CHECK(truncate(p0, 48 + 2000) == 0);
    check_recovers(dir, &k[0], 4096, 100, "truncated payload");
    CHECK(truncate(p0, 10) == 0);
    check_recovers(dir, &k[0], 4096, 100, "truncated header");
    CHECK(truncate(p0, 0) == 0);
    check_recovers(dir, &k[0], 4096, 100, "empty");
    CHECK(truncate(p0, 48 + 4096 + 1) == 0);
    check_recovers(dir, &k[0], 4096, 100, "trailing byte");
    char *p2 = entry_file(dir, &k[2]); /* zero-length payload entry, truncated header */
    CHECK(truncate(p2, 39) == 0);
    check_recovers(dir, &k[2], 0, 102, "zero-length truncated");

    /* Wrong length for an existing key: a miss (refilled), not corruption. */
    struct fillarg wl = {.seed = 100};
    oc = reget(dir, &k[0], 2048, &wl, &s);
    CHECK(oc == 2 && wl.calls == 1 && s.corrupt_dropped == 0);
    oc = reget(dir, &k[0], 2048, &wl, &s);
    CHECK(oc == 1 && wl.calls == 1);
    /* Both lengths of the key can live in memory at once. */
    CHECK(qfs_cache_open(dir, 1 << 20, &c) == 0);
    const struct qfs_cache_entry *e2;
    CHECK(qfs_cache_get(c, &k[0], 2048, fill_fn, &wl, &e, &oc) == 0 && oc == 1);
    CHECK(qfs_cache_get(c, &k[0], 4096, fill_fn, &wl, &e2, &oc) == 0 && oc == 2);
    CHECK(data_ok(e, 100, 2048) && data_ok(e2, 100, 4096));
    qfs_cache_put(c, e);
    qfs_cache_put(c, e2);
    qfs_cache_close(c);

    free(p0);
    free(p2);
    test_churn(dir);
    rm_rf(top);
    free(dir);
    free(top);
}

/* A store that cannot be written: the cache still serves. */
static void serve_without_disk(const char *dir, int expect_errors)
{
    struct qfs_cache *c;
    const struct qfs_cache_entry *e;
    int oc;
    struct fillarg fa = {.seed = 11};
    struct qfs_cache_key k = make_key(11);
    capture_start();
    int rc = qfs_cache_open(dir, 1 << 20, &c);
    CHECK(rc == 0);
    if (rc == 0) {
        CHECK(qfs_cache_get(c, &k, 300, fill_fn, &fa, &e, &oc) == 0 && oc == 2);
        CHECK(data_ok(e, 11, 300));
        qfs_cache_put(c, e);
        CHECK(qfs_cache_get(c, &k, 300, fill_fn, &fa, &e, &oc) == 0 && oc == 0);
        qfs_cache_put(c, e);
        struct qfs_cache_key k2 = make_key(12);
        CHECK(qfs_cache_get(c, &k2, 300, fill_fn, &fa, &e, &oc) == 0 && oc == 2);
        qfs_cache_put(c, e);
        CHECK(fa.calls == 2);
        qfs_cache_flush(c);
        if (expect_errors)
            CHECK(stats(c).disk_errors >= 1);
        qfs_cache_close(c);
    }
    char *log = capture_stop();
    /* Logged once, not per failure. */
    char *first = strstr(log, "cache:");
    CHECK(first != NULL);
    CHECK(first == NULL || strstr(first + 1, "cache:") == NULL);
    free(log);
}

static void test_unwritable(void)
{
    char *top = make_tmpdir(), *file, *dir, *dir2;
    if (asprintf(&file, "%s/regular", top) < 0 || asprintf(&dir, "%s/regular/cache", top) < 0 ||
        asprintf(&dir2, "%s/store", top) < 0)
        abort();
    int fd = open(file, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0);
    close(fd);
    serve_without_disk(dir, 1);  /* parent is a regular file */
    serve_without_disk(file, 1); /* the dir is a regular file */
    serve_without_disk("/proc/qfs-cache-test/store", 0);

    /* The store breaks after open: v1 replaced by a regular file. */
    {
        struct qfs_cache *c;
        CHECK(qfs_cache_open(dir2, 1 << 20, &c) == 0);
        char *v1;
        if (asprintf(&v1, "%s/v1", dir2) < 0)
            abort();
        rm_rf(v1);
        fd = open(v1, O_CREAT | O_WRONLY, 0600);
        close(fd);
        struct fillarg fa = {.seed = 4};
        const struct qfs_cache_entry *e;
        int oc;
        capture_start();
        for (int i = 0; i < 3; i++) {
            struct qfs_cache_key k = make_key(300 + (uint64_t)i);
            CHECK(qfs_cache_get(c, &k, 100, fill_fn, &fa, &e, &oc) == 0 && oc == 2);
            CHECK(data_ok(e, 4, 100));
            qfs_cache_put(c, e);
        }
        qfs_cache_flush(c);
        free(capture_stop());
        CHECK(stats(c).disk_errors == 3);
        qfs_cache_close(c);
        unlink(v1);
        free(v1);
    }

    /* A write that fails midway (file size limit, like ENOSPC): no partial file left. */
    {
        char *dir3;
        if (asprintf(&dir3, "%s/limited", top) < 0)
            abort();
        struct qfs_cache *c;
        CHECK(qfs_cache_open(dir3, 1 << 20, &c) == 0);
        struct rlimit old, lim;
        getrlimit(RLIMIT_FSIZE, &old);
        lim = old;
        lim.rlim_cur = 1000;
        signal(SIGXFSZ, SIG_IGN);
        CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
        struct fillarg fa = {.seed = 8};
        struct qfs_cache_key k = make_key(400);
        const struct qfs_cache_entry *e;
        int oc;
        capture_start();
        CHECK(qfs_cache_get(c, &k, 5000, fill_fn, &fa, &e, &oc) == 0 && oc == 2);
        qfs_cache_flush(c); /* the write behind must meet the limit too */
        free(capture_stop());
        setrlimit(RLIMIT_FSIZE, &old);
        signal(SIGXFSZ, SIG_DFL);
        CHECK(data_ok(e, 8, 5000));
        qfs_cache_put(c, e);
        CHECK(stats(c).disk_errors == 1);
        char *p = entry_file(dir3, &k);
        CHECK(file_size(p) == -1);
        CHECK(siblings(p) == 0); /* the temp file was removed */
        free(p);
        qfs_cache_close(c);
        free(dir3);
    }
    rm_rf(top);
    free(file);
    free(dir);
    free(dir2);
    free(top);
}

/* Write-behind: many threads fill many keys; close drains the queue, so afterwards every
 * filled entry is a whole verified file, and a reopened cache serves all of them from
 * disk.  The queue never holds more than its bound; with no room (mem_max 0) every write
 * is made by the filling thread. */
enum { WB_THREADS = 6, WB_KEYS = 48 };
static const uint64_t wb_len = 64 * 1024;

struct wb_thread {
    struct qfs_cache *c;
    struct fillarg *fa;
    int idx, bad;
    uint64_t max_queued;
};

static void *wb_main(void *p)
{
    struct wb_thread *t = p;
    for (int j = 0; j < WB_KEYS; j++) {
        int k = (j + t->idx * 7) % WB_KEYS;
        struct qfs_cache_key key = make_key(9000 + (uint64_t)k);
        const struct qfs_cache_entry *e;
        if (qfs_cache_get(t->c, &key, wb_len, fill_fn, &t->fa[k], &e, NULL) != 0 ||
            !data_ok(e, t->fa[k].seed, wb_len))
            t->bad++;
        else
            qfs_cache_put(t->c, e);
        uint64_t q = stats(t->c).write_queue_bytes;
        if (q > t->max_queued)
            t->max_queued = q;
    }
    return NULL;
}

static void write_behind_round(const char *dir, uint64_t mem_max)
{
    static struct fillarg fa[WB_KEYS];
    for (int k = 0; k < WB_KEYS; k++)
        fa[k] = (struct fillarg){.delay_us = 200, .seed = 900 + (uint32_t)k};
    struct qfs_cache *c;
    CHECK(qfs_cache_open(dir, mem_max, &c) == 0);
    pthread_t th[WB_THREADS];
    struct wb_thread t[WB_THREADS];
    for (int i = 0; i < WB_THREADS; i++) {
        t[i] = (struct wb_thread){c, fa, i, 0, 0};
        pthread_create(&th[i], NULL, wb_main, &t[i]);
    }
    uint64_t bound = mem_max / 2 < (256ull << 20) ? mem_max / 2 : (256ull << 20);
    for (int i = 0; i < WB_THREADS; i++) {
        pthread_join(th[i], NULL);
        CHECK(t[i].bad == 0);
        CHECK(t[i].max_queued <= bound);
    }
    struct qfs_cache_stats s = stats(c);
    for (int k = 0; k < WB_KEYS; k++)
        CHECK(fa[k].calls == 1); /* queued entries stay in memory: never refilled */
    CHECK(s.fills == WB_KEYS && s.disk_errors == 0);
    if (mem_max == 0)
        CHECK(s.disk_writes_sync == WB_KEYS && s.disk_writes == WB_KEYS);
    qfs_cache_close(c); /* no flush: close must drain */

    for (int k = 0; k < WB_KEYS; k++) {
        struct qfs_cache_key key = make_key(9000 + (uint64_t)k);
        char *path = entry_file(dir, &key);
        CHECK(file_size(path) == 48 + (long)wb_len);
        CHECK(siblings(path) >= 1);
        free(path);
    }
    /* No temp file left anywhere in the store. */
    char *cmd;
    if (asprintf(&cmd, "find '%s' -name '.tmp.*' | grep -q .", dir) < 0)
        abort();
    CHECK(system(cmd) != 0);
    free(cmd);

    CHECK(qfs_cache_open(dir, 64 << 20, &c) == 0);
    for (int k = 0; k < WB_KEYS; k++) {
        struct qfs_cache_key key = make_key(9000 + (uint64_t)k);
        const struct qfs_cache_entry *e;
        int oc = -1;
        CHECK(qfs_cache_get(c, &key, wb_len, fill_fn, &fa[k], &e, &oc) == 0 && oc == 1);
        CHECK(data_ok(e, fa[k].seed, wb_len));
        qfs_cache_put(c, e);
        CHECK(fa[k].calls == 1);
    }
    s = stats(c);
    CHECK(s.disk_hits == WB_KEYS && s.fills == 0 && s.corrupt_dropped == 0);
    qfs_cache_close(c);
}

static void test_write_behind(void)
{
    char *top = make_tmpdir(), *d1, *d2, *d3;
    if (asprintf(&d1, "%s/big", top) < 0 || asprintf(&d2, "%s/small", top) < 0 ||
        asprintf(&d3, "%s/none", top) < 0)
        abort();
    write_behind_round(d1, 64 << 20);         /* everything fits the queue */
    write_behind_round(d2, 4 * 64 * 1024);    /* queue of 2 entries: backpressure */
    write_behind_round(d3, 0);                /* no queue: all synchronous */

    /* Entries published before their write are pinned: with a memory bound below the
     * queued bytes, nothing is lost or refilled, and the bound holds once written. */
    struct qfs_cache *c;
    CHECK(qfs_cache_open(d1, 1 << 20, &c) == 0);
    struct fillarg fa = {.seed = 77};
    for (uint64_t i = 0; i < 40; i++) {
        struct qfs_cache_key k = make_key(9500 + i);
        const struct qfs_cache_entry *e;
        int oc;
        CHECK(qfs_cache_get(c, &k, 100000, fill_fn, &fa, &e, &oc) == 0 && oc == 2);
        qfs_cache_put(c, e);
    }
    qfs_cache_flush(c);
    struct qfs_cache_stats s = stats(c);
    CHECK(s.write_queue_bytes == 0 && s.disk_writes == 40 && s.mem_bytes <= 1 << 20);
    qfs_cache_close(c);
    rm_rf(top);
    free(d1);
    free(d2);
    free(d3);
    free(top);
}

static void test_failing_fill(void)
{
    enum { N = 8 };
    char *top = make_tmpdir();
    struct qfs_cache *c;
    CHECK(qfs_cache_open(top, 1 << 20, &c) == 0);
    struct fillarg fa = {.delay_us = 100000, .rc = -EIO, .seed = 21};
    pthread_barrier_t bar;
    pthread_barrier_init(&bar, NULL, N);
    struct sf_thread t[N];
    pthread_t th[N];
    struct qfs_cache_key k = make_key(21);
    for (int i = 0; i < N; i++) {
        t[i] = (struct sf_thread){c, &bar, &fa, k, 777, 1, -1, 0};
        pthread_create(&th[i], NULL, sf_main, &t[i]);
    }
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        CHECK(t[i].rc == -EIO);
    }
    CHECK(fa.calls >= 1 && fa.calls < N); /* waiters shared the failed fill */
    struct qfs_cache_stats s = stats(c);
    CHECK(s.mem_entries == 0 && s.mem_bytes == 0);
    char *p = entry_file(top, &k);
    CHECK(file_size(p) == -1);
    free(p);

    /* A later call retries, and succeeds. */
    fa.rc = 0;
    fa.delay_us = 0;
    int before = fa.calls;
    const struct qfs_cache_entry *e;
    int oc;
    CHECK(qfs_cache_get(c, &k, 777, fill_fn, &fa, &e, &oc) == 0 && oc == 2);
    CHECK(fa.calls == before + 1 && data_ok(e, 21, 777));
    qfs_cache_put(c, e);

    /* Positive return from a fill is still an error. */
    struct fillarg pos = {.rc = EPERM};
    struct qfs_cache_key k2 = make_key(22);
    CHECK(qfs_cache_get(c, &k2, 10, fill_fn, &pos, &e, &oc) == -EPERM);
    pthread_barrier_destroy(&bar);
    qfs_cache_close(c);
    rm_rf(top);
    free(top);
}

int main(void)
{
    struct {
        const char *name;
        void (*fn)(void);
    } tests[] = {
        {"keys", test_keys},
        {"basic", test_basic},
        {"single_flight", test_single_flight},
        {"many_keys", test_many_keys},
        {"memory_bound", test_memory_bound},
        {"disk", test_disk},
        {"unwritable", test_unwritable},
        {"failing_fill", test_failing_fill},
        {"write_behind", test_write_behind},
    };
    for (size_t i = 0; i < sizeof tests / sizeof tests[0]; i++) {
        int before = failures;
        tests[i].fn();
        if (tests[i].fn == test_memory_bound)
            test_churn(NULL);
        printf("%s %s\n", failures == before ? "ok  " : "FAIL", tests[i].name);
    }
    fflush(stdout);
    return failures ? 1 : 0;
}
