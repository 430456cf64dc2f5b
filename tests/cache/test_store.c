/* Tests for the store side of cache/: remembered source hashes, the disk bound (LRU
 * eviction, never an entry in use), the read-only shared tier (plain and signed), gc of
 * old formats, unused codec versions and abandoned temp files, verify, and export/import
 * with and without HMAC (tampered manifest, tampered entry, wrong key, unsigned). */
#include "cache/cache.h"
#include "cache/store.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

static int fill_seed(void *arg, uint8_t *dst, uint64_t len)
{
    unsigned seed = *(unsigned *)arg;
    for (uint64_t i = 0; i < len; i++)
        dst[i] = (uint8_t)(seed * 31 + i * 7);
    return 0;
}

static struct qfs_cache_key key_of(unsigned i)
{
    struct qfs_cache_key k;
    qfs_hash128(&i, sizeof i, &k);
    return k;
}

static int rm_cb(const char *p, const struct stat *st, int f, struct FTW *w)
{
    (void)st, (void)f, (void)w;
    remove(p);
    return 0;
}

static char *tmpdir(void)
{
    char *d = strdup("/tmp/qfs-store-test.XXXXXX");
    if (!d || !mkdtemp(d))
        abort();
    return d;
}

static char *cat(const char *a, const char *b)
{
    char *p;
    if (asprintf(&p, "%s%s", a, b) < 0)
        abort();
    return p;
}

/* Put n entries of len bytes (seed i) with tag through a cache on dir. */
static void populate(const char *dir, unsigned first, unsigned n, uint64_t len, uint32_t tag)
{
    struct qfs_cache *c;
    CHECK(qfs_cache_open(dir, 64 << 20, &c) == 0);
    for (unsigned i = first; i < first + n; i++) {
        struct qfs_cache_key k = key_of(i);
        const struct qfs_cache_entry *e;
        unsigned seed = i;
        CHECK(qfs_cache_get_tagged(c, &k, tag, len, fill_seed, &seed, &e, NULL) == 0);
        qfs_cache_put(c, e);
    }
    qfs_cache_close(c);
}

static struct qfs_store_report scan(const char *dir, enum qfs_store_op op, uint64_t max)
{
    static const uint32_t live[] = {QFS_CACHE_TAG(QFS_CODEC_GGUF, 1)};
    struct qfs_store_scan_opts o = {.op = op, .max = max, .live_tags = live, .n_live = 1};
    struct qfs_store_report r;
    char *root = cat(dir, "/v1");
    CHECK(qfs_store_scan(root, &o, &r) == 0);
    free(root);
    return r;
}

static void test_srchash(void)
{
    char *d = tmpdir();
    struct qfs_file_id id = {.dev = 1, .ino = 2, .size = 3, .mtime_ns = 4};
    struct qfs_cache_key h = key_of(99), got;
    struct qfs_cache *c;
    CHECK(qfs_cache_open(d, 1 << 20, &c) == 0);
    CHECK(qfs_cache_srchash_get(c, &id, 0, 10, &got) == -ENOENT);
    qfs_cache_srchash_put(c, &id, 0, 10, &h);
    qfs_cache_close(c);
    CHECK(qfs_cache_open(d, 1 << 20, &c) == 0); /* a remount: found on disk */
    CHECK(qfs_cache_srchash_get(c, &id, 0, 10, &got) == 0 && memcmp(got.b, h.b, 16) == 0);
    struct qfs_file_id changed[4] = {id, id, id, id};
    changed[0].dev++, changed[1].ino++, changed[2].size++, changed[3].mtime_ns++;
    for (int i = 0; i < 4; i++)
        CHECK(qfs_cache_srchash_get(c, &changed[i], 0, 10, &got) == -ENOENT);
    CHECK(qfs_cache_srchash_get(c, &id, 1, 10, &got) == -ENOENT);
    CHECK(qfs_cache_srchash_get(c, &id, 0, 11, &got) == -ENOENT);
    struct qfs_cache_stats s;
    qfs_cache_get_stats(c, &s);
    CHECK(s.srchash_hits == 1 && s.fills == 0);
    qfs_cache_close(c);
    nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    printf("ok   srchash\n");
}

static void test_bound(void)
{
    char *d = tmpdir();
    const uint64_t len = 64 << 10, max = 2 << 20; /* 32 entries fit */
    struct qfs_cache_opts o = {.dir = d, .mem_max = 256 << 10, .disk_max = max};
    struct qfs_cache *c;
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    /* Entry 0 stays in use throughout: never evicted. */
    struct qfs_cache_key k0 = key_of(0);
    const struct qfs_cache_entry *held;
    unsigned seed0 = 0;
    CHECK(qfs_cache_get(c, &k0, len, fill_seed, &seed0, &held, NULL) == 0);
    qfs_cache_flush(c);
    for (unsigned i = 1; i < 200; i++) {
        struct qfs_cache_key k = key_of(i);
        const struct qfs_cache_entry *e;
        unsigned seed = i;
        CHECK(qfs_cache_get(c, &k, len, fill_seed, &seed, &e, NULL) == 0);
        qfs_cache_put(c, e);
        qfs_cache_flush(c);
    }
    struct qfs_cache_stats s;
    qfs_cache_get_stats(c, &s);
    CHECK(s.disk_evicted > 100 && s.disk_bytes <= max);
    struct qfs_store_report r = scan(d, QFS_STORE_STAT, 0);
    CHECK(r.bytes <= max && r.entries >= 16);
    char *root = cat(d, "/v1"), *p0 = qfs_store_path(root, &k0);
    CHECK(access(p0, F_OK) == 0);
    /* The most recent entry survived too. */
    struct qfs_cache_key klast = key_of(199);
    char *plast = qfs_store_path(root, &klast);
    CHECK(access(plast, F_OK) == 0);
    qfs_cache_put(c, held);
    qfs_cache_close(c);
    /* gc --max: bound offline. */
    r = scan(d, QFS_STORE_GC, 10 * (len + QFS_STORE_HDR));
    CHECK(r.kept == 10 || r.kept_bytes <= 10 * (len + QFS_STORE_HDR));
    free(root), free(p0), free(plast);
    nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    printf("ok   bound\n");
}

static void flip(const char *path, off_t off)
{
    int fd = open(path, O_RDWR);
    uint8_t b;
    CHECK(fd >= 0 && pread(fd, &b, 1, off) == 1);
    b ^= 1;
    CHECK(pwrite(fd, &b, 1, off) == 1);
    close(fd);
}

static int write_file(const char *path, const char *s)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return -1;
    fputs(s, f);
    return fclose(f);
}

static void test_gc_verify(void)
{
    char *d = tmpdir(), *root = cat(d, "/v1");
    const uint32_t live = QFS_CACHE_TAG(QFS_CODEC_GGUF, 1), dead = QFS_CACHE_TAG(QFS_CODEC_GGUF, 0);
    populate(d, 0, 10, 1000, live);
    populate(d, 10, 5, 1000, dead);
    struct qfs_cache_key k = key_of(3);
    char *p = qfs_store_path(root, &k);
    flip(p, 48 + 17);
    /* An old-format (version 1) entry and abandoned temp files. */
    struct qfs_cache_key ko = key_of(50);
    char *po = qfs_store_path(root, &ko), *dirname = strdup(po);
    *strrchr(dirname, '/') = '\0';
    mkdir(dirname, 0700);
    uint8_t old[40 + 4] = "QFSC\1\0\0\0";
    FILE *f = fopen(po, "w");
    CHECK(f && fwrite(old, 1, sizeof old, f) == sizeof old && fclose(f) == 0);
    char *dead_tmp = cat(dirname, "/.tmp.0123456789abcdef0123456789abcd.otherhost.1.0");
    char *old_tmp = cat(dirname, "/.tmp.0123456789abcdef0123456789abcd.otherhost.2.0");
    CHECK(write_file(dead_tmp, "young: another host may be writing it") == 0);
    CHECK(write_file(old_tmp, "old") == 0);
    struct timespec ts[2] = {{.tv_sec = 1000}, {.tv_sec = 1000}};
    CHECK(utimensat(AT_FDCWD, old_tmp, ts, 0) == 0);

    struct qfs_store_report r = scan(d, QFS_STORE_VERIFY, 0);
    CHECK(r.entries == 16 && r.bad == 1 && r.stale_format == 1 && r.removed == 0);
    r = scan(d, QFS_STORE_GC, 0);
    CHECK(r.bad == 1 && r.stale_format == 1 && r.dead_tag == 5 && r.removed == 7);
    CHECK(r.tmp_files == 2 && r.tmp_removed == 1 && r.kept == 9);
    CHECK(access(dead_tmp, F_OK) == 0 && access(old_tmp, F_OK) < 0 && access(po, F_OK) < 0);
    r = scan(d, QFS_STORE_VERIFY, 0);
    CHECK(r.entries == 9 && r.bad == 0);
    free(p), free(po), free(dirname), free(dead_tmp), free(old_tmp), free(root);
    nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    printf("ok   gc_verify\n");
}

static void test_shared(void)
{
    char *d = tmpdir(), *local = cat(d, "/local"), *shared = cat(d, "/shared");
    char *sroot = cat(shared, "/v1"), *lroot = cat(local, "/v1");
    populate(shared, 0, 4, 5000, 0);
    struct qfs_cache_key k1 = key_of(1);
    char *bad = qfs_store_path(sroot, &k1);
    flip(bad, 48 + 100);
    CHECK(chmod(shared, 0500) == 0 || 1);
    struct qfs_cache_opts o = {.dir = local, .shared_dir = shared, .mem_max = 1 << 20};
    struct qfs_cache *c;
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    int calls = 0;
    for (unsigned i = 0; i < 4; i++) {
        struct qfs_cache_key k = key_of(i);
        const struct qfs_cache_entry *e;
        unsigned seed = i;
        int oc = -1;
        CHECK(qfs_cache_get(c, &k, 5000, fill_seed, &seed, &e, &oc) == 0);
        calls += oc == 2;
        uint8_t want[5000];
        fill_seed(&seed, want, 5000);
        CHECK(memcmp(e->data, want, 5000) == 0);
        qfs_cache_put(c, e);
    }
    qfs_cache_flush(c);
    struct qfs_cache_stats s;
    qfs_cache_get_stats(c, &s);
    CHECK(calls == 1 && s.shared_hits == 3 && s.corrupt_dropped == 1);
    qfs_cache_close(c);
    CHECK(access(bad, F_OK) == 0); /* the shared tier is never modified */
    struct qfs_store_report r = scan(local, QFS_STORE_VERIFY, 0);
    CHECK(r.entries == 4 && r.bad == 0); /* copied locally (and the recomputed one) */
    free(bad), free(sroot), free(lroot), free(local), free(shared);
    nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    printf("ok   shared\n");
}

static void test_export_import(void)
{
    char *d = tmpdir(), *a = cat(d, "/a"), *b = cat(d, "/b"), *x = cat(d, "/x");
    char *aroot = cat(a, "/v1"), *broot = cat(b, "/v1");
    char *keyf = cat(d, "/key"), *key2f = cat(d, "/key2");
    CHECK(write_file(keyf, "0123456789abcdef-the-shared-key") == 0);
    CHECK(write_file(key2f, "0123456789abcdef-another-key!!!") == 0);
    uint8_t *key, *key2;
    size_t kl, kl2;
    CHECK(qfs_store_read_key(keyf, &key, &kl) == 0 && qfs_store_read_key(key2f, &key2, &kl2) == 0);
    populate(a, 0, 6, 3000, QFS_CACHE_TAG(QFS_CODEC_GGUF, 1));

    /* Unsigned round trip. */
    CHECK(qfs_store_export(aroot, x, NULL, 0) == 0);
    CHECK(qfs_store_import(broot, x, NULL, 0) == 0);
    struct qfs_store_report r = scan(b, QFS_STORE_VERIFY, 0);
    CHECK(r.entries == 6 && r.bad == 0);
    /* With a key, an unsigned export is refused. */
    char *b2root = cat(d, "/b2/v1");
    CHECK(qfs_store_import(b2root, x, key, kl) == -EPERM);
    /* Signed round trip. */
    CHECK(qfs_store_export(aroot, x, key, kl) == 0);
    CHECK(qfs_store_import(b2root, x, key, kl) == 0);
    /* Wrong key. */
    char *b3root = cat(d, "/b3/v1"), *b3 = cat(d, "/b3");
    CHECK(qfs_store_import(b3root, x, key2, kl2) == -EPERM);
    /* Tampered manifest (a digest changed): refused by the signature, and without a
     * key by the digest itself. */
    char *man = cat(x, "/MANIFEST");
    flip(man, 30);
    CHECK(qfs_store_import(b3root, x, key, kl) == -EPERM);
    CHECK(qfs_store_import(b3root, x, NULL, 0) < 0);
    flip(man, 30);
    CHECK(qfs_store_import(b3root, x, key, kl) == 0);
    /* Tampered entry: listed digest no longer matches; nothing is imported. */
    char *b4root = cat(d, "/b4/v1"), *b4 = cat(d, "/b4");
    struct qfs_cache_key k2 = key_of(2);
    char *xroot = cat(x, "/v1"), *pe = qfs_store_path(xroot, &k2);
    flip(pe, 48 + 5);
    CHECK(qfs_store_import(b4root, x, key, kl) == -EBADMSG);
    r = scan(b4, QFS_STORE_STAT, 0);
    CHECK(r.entries == 0);

    /* A signed shared tier for a mount: only listed entries with matching digests. */
    flip(pe, 48 + 5); /* repaired */
    struct qfs_cache_opts o = {.dir = b4, .shared_dir = x, .hmac_key_file = keyf,
                               .mem_max = 1 << 20};
    struct qfs_cache *c;
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    struct qfs_cache_key k = key_of(4);
    const struct qfs_cache_entry *e;
    unsigned seed = 4;
    int oc = -1;
    CHECK(qfs_cache_get_tagged(c, &k, 1, 3000, fill_seed, &seed, &e, &oc) == 0 && oc == 1);
    qfs_cache_put(c, e);
    qfs_cache_close(c);
    o.hmac_key_file = key2f; /* wrong key: the tier is not used at all */
    o.dir = NULL;
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    CHECK(qfs_cache_get_tagged(c, &k, 1, 3000, fill_seed, &seed, &e, &oc) == 0 && oc == 2);
    qfs_cache_put(c, e);
    qfs_cache_close(c);

    free(key), free(key2), free(man), free(pe), free(xroot);
    free(a), free(b), free(x), free(aroot), free(broot), free(b2root), free(b3root), free(b3);
    free(b4root), free(b4), free(keyf), free(key2f);
    nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    printf("ok   export_import\n");
}

/* An export of an empty cache, signed: a valid manifest with no entries, usable as a
 * signed shared tier (every lookup a miss; no qsort/bsearch on a NULL array). */
static void test_export_empty(void)
{
    char *d = tmpdir(), *a = cat(d, "/a"), *x = cat(d, "/x"), *b = cat(d, "/b");
    char *aroot = cat(a, "/v1"), *broot = cat(b, "/v1"), *keyf = cat(d, "/key");
    CHECK(write_file(keyf, "0123456789abcdef-the-shared-key") == 0);
    uint8_t *key;
    size_t kl;
    CHECK(qfs_store_read_key(keyf, &key, &kl) == 0);
    struct qfs_cache *c;
    CHECK(qfs_cache_open(a, 1 << 20, &c) == 0); /* creates a/v1, empty */
    qfs_cache_close(c);
    CHECK(qfs_store_export(aroot, x, key, kl) == 0);
    CHECK(qfs_store_import(broot, x, key, kl) == 0);
    struct qfs_store_manifest *m = NULL;
    const struct qfs_store_auth auth = {.key = key, .len = kl};
    CHECK(qfs_store_manifest_load(x, &auth, &m) == 0 && m);
    struct qfs_cache_key k = key_of(7);
    CHECK(m && !qfs_store_manifest_lists(m, &k));
    qfs_store_manifest_free(m);
    /* As a mount uses it: -o cache_shared=x,cache_hmac_key=key. */
    struct qfs_cache_opts o = {.dir = b, .shared_dir = x, .hmac_key_file = keyf,
                               .mem_max = 1 << 20};
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    const struct qfs_cache_entry *e;
    unsigned seed = 7;
    int oc = -1;
    CHECK(qfs_cache_get(c, &k, 100, fill_seed, &seed, &e, &oc) == 0 && oc == 2);
    qfs_cache_put(c, e);
    qfs_cache_close(c);
    free(key), free(a), free(x), free(b), free(aroot), free(broot), free(keyf);
    nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    printf("ok   export_empty\n");
}

/* -o cache_hmac_key on every tier.  Entries written with the key are format 3 and verify
 * (with and without the key); an entry forged by a writer without the key (valid XXH3, no
 * HMAC, or the HMAC of another key, or a valid entry's HMAC over other bytes) is never
 * served by a cache with the key: dropped, counted, recomputed and replaced; gc and verify
 * with the key find them; the memory tier is unaffected; without the key, behaviour is as
 * before (such an entry is served: the threat the key closes). */
static void forge(const char *root, unsigned i, uint64_t len, const struct qfs_store_auth *a)
{
    struct qfs_cache_key k = key_of(i);
    uint8_t *bad = malloc(len);
    unsigned seed = i + 1000; /* other bytes than fill_seed(i) */
    fill_seed(&seed, bad, len);
    const char *what;
    char *where = NULL;
    CHECK(qfs_store_write(root, &k, QFS_CACHE_TAG(QFS_CODEC_GGUF, 1), bad, len, a, NULL, &what,
                          &where) == 0);
    free(where);
    free(bad);
}

/* get key_of(i) (len bytes) through c: 0 when it holds fill_seed(i)'s bytes; *oc the
 * outcome (0 memory, 1 disk, 2 filled). */
static int get_check(struct qfs_cache *c, unsigned i, uint64_t len, int *oc)
{
    struct qfs_cache_key k = key_of(i);
    const struct qfs_cache_entry *e;
    unsigned seed = i;
    uint8_t *want = malloc(len);
    fill_seed(&seed, want, len);
    *oc = -1;
    int rc = qfs_cache_get_tagged(c, &k, QFS_CACHE_TAG(QFS_CODEC_GGUF, 1), len, fill_seed, &seed,
                                  &e, oc);
    if (rc == 0) {
        rc = memcmp(e->data, want, len) == 0 ? 0 : -EBADMSG;
        qfs_cache_put(c, e);
    }
    free(want);
    return rc;
}

static void test_auth(void)
{
    char *d = tmpdir(), *a = cat(d, "/a"), *aroot = cat(a, "/v1");
    char *keyf = cat(d, "/key"), *key2f = cat(d, "/key2"), *x = cat(d, "/x");
    CHECK(write_file(keyf, "0123456789abcdef-the-shared-key") == 0);
    CHECK(write_file(key2f, "0123456789abcdef-another-key!!!") == 0);
    uint8_t *key, *key2;
    size_t kl, kl2;
    CHECK(qfs_store_read_key(keyf, &key, &kl) == 0 && qfs_store_read_key(key2f, &key2, &kl2) == 0);
    const struct qfs_store_auth auth = {.key = key, .len = kl}, auth2 = {.key = key2, .len = kl2};
    const uint64_t len = 4000;
    struct qfs_cache_opts o = {.dir = a, .hmac_key_file = keyf, .mem_max = 1 << 20};
    struct qfs_cache *c;
    int oc;

    /* 1. Written with the key: format 3, verified with and without it; a remount reads
     * them from disk. */
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    for (unsigned i = 0; i < 8; i++)
        CHECK(get_check(c, i, len, &oc) == 0 && oc == 2);
    qfs_cache_close(c);
    struct qfs_store_scan_opts so = {.op = QFS_STORE_VERIFY, .auth = &auth};
    struct qfs_store_report r;
    CHECK(qfs_store_scan(aroot, &so, &r) == 0 && r.entries == 8 && r.authed == 8 &&
          r.bad == 0 && r.unauth == 0);
    CHECK(r.bytes == 8 * (QFS_STORE_HDR_AUTH + len));
    r = scan(a, QFS_STORE_VERIFY, 0); /* no key: checksums only, both formats */
    CHECK(r.entries == 8 && r.bad == 0 && r.stale_format == 0);
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    for (unsigned i = 0; i < 8; i++)
        CHECK(get_check(c, i, len, &oc) == 0 && oc == 1);

    /* 2. The memory tier is unaffected: entry 0 is in memory; forging its file changes
     * nothing for this cache. */
    forge(aroot, 0, len, NULL);
    CHECK(get_check(c, 0, len, &oc) == 0 && oc == 0);
    qfs_cache_close(c);

    /* 3. Forged: no HMAC (a writer without the key), the HMAC of another key, and a valid
     * entry's HMAC kept over other bytes (XXH3 recomputed).  Entry 4 stays good. */
    forge(aroot, 1, len, NULL);
    forge(aroot, 2, len, &auth2);
    {
        struct qfs_cache_key k = key_of(3);
        char *p = qfs_store_path(aroot, &k), why[128];
        struct qfs_store_hdr h;
        uint8_t *payload;
        CHECK(qfs_store_read(p, &k, UINT64_MAX, &auth, false, &h, &payload, why, sizeof why) == 1);
        payload[7] ^= 1;
        h.sum = XXH3_64bits(payload, h.len);
        const char *what;
        char *where = NULL;
        CHECK(qfs_store_write_entry(aroot, &h, payload, NULL, &what, &where) == 0);
        CHECK(qfs_store_read(p, &k, UINT64_MAX, NULL, false, &h, NULL, why, sizeof why) == 1);
        CHECK(qfs_store_read(p, &k, UINT64_MAX, &auth, false, &h, NULL, why, sizeof why) ==
              -EACCES);
        free(where), free(payload), free(p);
    }
    so.op = QFS_STORE_VERIFY;
    CHECK(qfs_store_scan(aroot, &so, &r) == 0 && r.entries == 8 && r.unauth == 4 && r.bad == 0);
    r = scan(a, QFS_STORE_VERIFY, 0);
    CHECK(r.entries == 8 && r.bad == 0); /* all intact: XXH3 cannot tell */

    /* Without the key, as before: a forged entry is served (what the key prevents). */
    struct qfs_cache_opts plain = {.dir = a, .mem_max = 1 << 20};
    CHECK(qfs_cache_open_opts(&plain, &c) == 0);
    CHECK(get_check(c, 1, len, &oc) == -EBADMSG && oc == 1);
    qfs_cache_close(c);

    /* With the key: none of the four is served; each is dropped, recomputed and
     * replaced by an authenticated entry. */
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    for (unsigned i = 0; i < 5; i++) {
        CHECK(get_check(c, i, len, &oc) == 0);
        CHECK(oc == (i == 4 ? 1 : 2));
    }
    qfs_cache_flush(c);
    struct qfs_cache_stats st;
    qfs_cache_get_stats(c, &st);
    CHECK(st.unauth_dropped == 4 && st.fills == 4 && st.corrupt_dropped == 0);
    qfs_cache_close(c);
    CHECK(qfs_store_scan(aroot, &so, &r) == 0 && r.entries == 8 && r.unauth == 0 &&
          r.authed == 8);

    /* Remembered source hashes too: one forged without the key is not used. */
    struct qfs_file_id id = {.dev = 1, .ino = 2, .size = 3, .mtime_ns = 4};
    struct qfs_cache_key h = key_of(99), got;
    CHECK(qfs_cache_open_opts(&plain, &c) == 0);
    qfs_cache_srchash_put(c, &id, 0, 10, &h);
    qfs_cache_close(c);
    CHECK(qfs_cache_open_opts(&o, &c) == 0);
    CHECK(qfs_cache_srchash_get(c, &id, 0, 10, &got) == -ENOENT);
    qfs_cache_close(c);

    /* 4. gc and verify --delete with the key remove what does not verify. */
    forge(aroot, 5, len, NULL);
    forge(aroot, 6, len, &auth2);
    so.op = QFS_STORE_GC;
    CHECK(qfs_store_scan(aroot, &so, &r) == 0 && r.unauth == 2 && r.removed == 2 &&
          r.kept == 6);
    forge(aroot, 7, len, NULL);
    so.op = QFS_STORE_VERIFY;
    so.fix = true;
    CHECK(qfs_store_scan(aroot, &so, &r) == 0 && r.unauth == 1 && r.removed == 1);
    so.fix = false;
    CHECK(qfs_store_scan(aroot, &so, &r) == 0 && r.entries == 5 && r.unauth == 0);

    /* 5. Export with the key: a wrong HMAC is not exported; entries go out authenticated. */
    forge(aroot, 6, len, &auth2);
    CHECK(qfs_store_export(aroot, x, key, kl) == 0);
    char *xroot = cat(x, "/v1");
    CHECK(qfs_store_scan(xroot, &so, &r) == 0 && r.entries == 5 && r.authed == 5 &&
          r.unauth == 0);
    free(xroot);

    /* 6. A key file that cannot be used is an error, not an unauthenticated cache. */
    char *shortf = cat(d, "/short"), *missing = cat(d, "/missing");
    CHECK(write_file(shortf, "too short") == 0);
    struct qfs_cache_opts bad = {.dir = a, .hmac_key_file = shortf, .mem_max = 1 << 20};
    CHECK(qfs_cache_open_opts(&bad, &c) == -EINVAL);
    bad.hmac_key_file = missing;
    CHECK(qfs_cache_open_opts(&bad, &c) == -ENOENT);
    /* A memory-only cache with a key: nothing on disk, nothing to check. */
    struct qfs_cache_opts mem = {.hmac_key_file = keyf, .mem_max = 1 << 20};
    CHECK(qfs_cache_open_opts(&mem, &c) == 0);
    CHECK(get_check(c, 1, len, &oc) == 0 && oc == 2);
    CHECK(get_check(c, 1, len, &oc) == 0 && oc == 0);
    qfs_cache_close(c);

    free(shortf), free(missing);
    free(key), free(key2), free(a), free(aroot), free(keyf), free(key2f), free(x);
    nftw(d, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    free(d);
    printf("ok   auth\n");
}

int main(void)
{
    test_srchash();
    test_bound();
    test_gc_verify();
    test_shared();
    test_export_import();
    test_export_empty();
    test_auth();
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    return failures ? 1 : 0;
}
