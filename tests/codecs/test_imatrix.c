/* Importance-matrix files: the shared tinyllama imatrix (entry count, dataset and chunk count
 * against the llama-quantize reference JSON, row lengths, normalisation recomputed by a tiny
 * independent GGUF walk), the legacy .dat written here from it, per-expert counts, and
 * malformed files (every truncation, bad lengths, types, pairs, values) plus the model check.
 * The synthetic part always runs; without $QFS_SHARED's fixture the test then exits 77. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdint.h>

#include "codecs/gguf/gguf_read.h"
#include "codecs/source/imatrix.h"
#include "testutil.h"

static char *tmp;

/* ---- a growable byte buffer and a tiny GGUF writer (independent of the reader) ---- */

struct wbuf {
    uint8_t *p;
    size_t n, cap;
};

static void put(struct wbuf *w, const void *d, size_t n)
{
    if (w->n + n > w->cap) {
        w->cap = (w->n + n) * 2 + 64;
        w->p = realloc(w->p, w->cap);
        if (!w->p) {
            perror("realloc");
            exit(1);
        }
    }
    if (n)
        memcpy(w->p + w->n, d, n);
    w->n += n;
}
static void put_u32(struct wbuf *w, uint32_t v) { put(w, &v, 4); }
static void put_i32(struct wbuf *w, int32_t v) { put(w, &v, 4); }
static void put_u64(struct wbuf *w, uint64_t v) { put(w, &v, 8); }
static void put_str(struct wbuf *w, const char *s)
{
    put_u64(w, strlen(s));
    put(w, s, strlen(s));
}

/* metadata helpers: append one KV to kvs */
static void kv_u32(struct wbuf *kvs, const char *k, uint32_t v)
{
    put_str(kvs, k);
    put_u32(kvs, 4);
    put_u32(kvs, v);
}
static void kv_str(struct wbuf *kvs, const char *k, const char *v)
{
    put_str(kvs, k);
    put_u32(kvs, 8);
    put_str(kvs, v);
}
static void kv_arr_str(struct wbuf *kvs, const char *k, const char *v)
{
    put_str(kvs, k);
    put_u32(kvs, 9);
    put_u32(kvs, 8);
    put_u64(kvs, 1);
    put_str(kvs, v);
}
static void kv_imatrix(struct wbuf *kvs, int *n_kv)
{
    kv_arr_str(kvs, "imatrix.datasets", "calib.txt");
    kv_u32(kvs, "imatrix.chunk_count", 7);
    kv_u32(kvs, "imatrix.chunk_size", 512);
    *n_kv += 3;
}

struct tspec {
    const char *name;
    uint32_t type;
    int64_t ne0, ne1;
    const void *data; /* ne0*ne1 elements of 4 (F32) or 2 (F16) bytes */
};

static size_t tbytes(const struct tspec *t)
{
    return (size_t)(t->ne0 * t->ne1) * (t->type == 1 ? 2 : 4);
}

static void build_gguf(struct wbuf *w, const struct wbuf *kvs, int n_kv, const struct tspec *ts,
                       int nt)
{
    static const uint8_t zero[32];
    w->n = 0;
    put(w, "GGUF", 4);
    put_u32(w, 3);
    put_u64(w, (uint64_t)nt);
    put_u64(w, (uint64_t)n_kv);
    put(w, kvs->p, kvs->n);
    uint64_t off = 0;
    for (int i = 0; i < nt; i++) {
        put_str(w, ts[i].name);
        put_u32(w, ts[i].ne1 > 1 ? 2 : 1);
        put_u64(w, (uint64_t)ts[i].ne0);
        if (ts[i].ne1 > 1)
            put_u64(w, (uint64_t)ts[i].ne1);
        put_u32(w, ts[i].type);
        put_u64(w, off);
        off += (tbytes(&ts[i]) + 31) / 32 * 32;
    }
    put(w, zero, (32 - w->n % 32) % 32);
    for (int i = 0; i < nt; i++) {
        put(w, ts[i].data, tbytes(&ts[i]));
        put(w, zero, (32 - tbytes(&ts[i]) % 32) % 32);
    }
}

static void write_file(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(p, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static uint8_t *read_file(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f || fseek(f, 0, SEEK_END) != 0) {
        perror(path);
        exit(1);
    }
    long len = ftell(f);
    uint8_t *p = malloc((size_t)len + 1);
    if (len < 0 || !p || fseek(f, 0, SEEK_SET) != 0 ||
        fread(p, 1, (size_t)len, f) != (size_t)len) {
        perror(path);
        exit(1);
    }
    fclose(f);
    *n = (size_t)len;
    return p;
}

/* Load bytes as a file; returns rc, keeps *im on success (else NULL), log in *log. */
static int load_bytes(const void *p, size_t n, struct qfs_imatrix **im, char **log)
{
    char *path = xasprintf("%s/im.bin", tmp);
    write_file(path, p, n);
    *im = NULL;
    cap_begin();
    int r = qfs_imatrix_load(path, im);
    char *l = cap_end();
    if (log)
        *log = l;
    else
        free(l);
    free(path);
    return r;
}

/* Expect -EINVAL with a log line naming the file and containing what. */
static void expect_einval(int line, const void *p, size_t n, const char *what)
{
    struct qfs_imatrix *im;
    char *log;
    int r = load_bytes(p, n, &im, &log);
    if (r != -EINVAL) {
        fprintf(stderr, "line %d: load = %d, want -EINVAL\nlog: %s\n", line, r, log);
        n_fail++;
    }
    check_log_at(__FILE__, line, log, "im.bin", what);
    qfs_imatrix_free(im);
    free(log);
}
#define EXPECT_EINVAL(p, n, what) expect_einval(__LINE__, p, n, what)

/* Every prefix loads to 0 or -EINVAL (the full file must load). */
static void truncations(const struct wbuf *w, const char *what)
{
    int bad = 0;
    for (size_t len = 0; len <= w->n; len++) {
        struct qfs_imatrix *im;
        int r = load_bytes(w->p, len, &im, NULL);
        if ((r != 0 && r != -EINVAL) || (len == w->n && r != 0)) {
            fprintf(stderr, "%s truncated to %zu of %zu bytes: %d\n", what, len, w->n, r);
            bad++;
        }
        qfs_imatrix_free(im);
    }
    CHECK(bad == 0);
}

/* ---- synthetic GGUF imatrix: two entries, one with 2 experts and a zero count ---- */

static float sums_a[8] = {1, 2, 3, 4, 5, 6, 7, 8}; /* 4 values x 2 experts */
static float counts_a[2] = {2.4f, 0};               /* lround: 2; then 0 -> 1.0 */
static float sums_b[4] = {9, 10, 11, 12};
static float counts_b[1] = {3};

static void build_small(struct wbuf *w, struct tspec *ts, int nt)
{
    struct wbuf kvs = {0};
    int n_kv = 0;
    kv_imatrix(&kvs, &n_kv);
    build_gguf(w, &kvs, n_kv, ts, nt);
    free(kvs.p);
}

static void test_gguf_small(void)
{
    struct tspec ts[] = {
        {"a.weight.in_sum2", 0, 4, 2, sums_a},
        {"a.weight.counts", 0, 2, 1, counts_a},
        {"b.weight.counts", 0, 1, 1, counts_b},
        {"b.weight.in_sum2", 0, 4, 1, sums_b},
        {"other", 0, 1, 1, counts_b}, /* ignored */
    };
    struct wbuf w = {0};
    build_small(&w, ts, 5);
    struct qfs_imatrix *im;
    char *log;
    int r = load_bytes(w.p, w.n, &im, &log);
    CHECK(r == 0);
    if (r == 0) {
        CHECK(im->n_entries == 2);
        CHECK(!im->legacy);
        CHECK(im->chunk_count == 7);
        CHECK(im->dataset && strcmp(im->dataset, "calib.txt") == 0);
        CHECK(strcmp(im->file_name, "im.bin") == 0);
        const struct qfs_imatrix_entry *a = qfs_imatrix_find(im, "a.weight");
        const struct qfs_imatrix_entry *b = qfs_imatrix_find(im, "b.weight");
        CHECK(a && a->n == 8 && b && b->n == 4);
        CHECK(qfs_imatrix_find(im, "other") == NULL && qfs_imatrix_find(im, "c") == NULL);
        if (a && b) {
            for (int i = 0; i < 4; i++) {
                CHECK(a->values[i] == sums_a[i] / 2.0f);
                CHECK(a->values[4 + i] == 1.0f);
                CHECK(b->values[i] == sums_b[i] / 3.0f);
            }
        }
        struct qfs_cache_key k;
        qfs_hash128(w.p, w.n, &k);
        CHECK(memcmp(&k, &im->hash, sizeof k) == 0);

        /* the model check */
        const char *names[] = {"x", "b.weight", "a.weight"};
        int64_t ok_ne[] = {5, 4, 8}, bad_ne[] = {5, 4, 4};
        CHECK(qfs_imatrix_check(im, names, ok_ne, 3) == 0);
        cap_begin();
        r = qfs_imatrix_check(im, names, bad_ne, 3);
        char *l = cap_end();
        CHECK(r == -EINVAL);
        CHECK_LOG(l, "im.bin", "a.weight");
        free(l);
        cap_begin();
        r = qfs_imatrix_check(im, names + 2, ok_ne + 2, 1); /* b.weight unknown */
        l = cap_end();
        CHECK(r == -EINVAL);
        CHECK_LOG(l, "b.weight", "no such tensor");
        free(l);
    } else {
        fprintf(stderr, "%s\n", log);
    }
    qfs_imatrix_free(im);
    free(log);

    truncations(&w, "small GGUF imatrix");

    /* a non-F32 counts tensor */
    uint16_t h[2] = {0x3c00, 0x3c00};
    struct tspec t16[] = {{"a.weight.in_sum2", 0, 4, 2, sums_a}, {"a.weight.counts", 1, 2, 1, h}};
    build_small(&w, t16, 2);
    EXPECT_EINVAL(w.p, w.n, "F32");

    /* sums without counts, counts without sums */
    build_small(&w, ts, 1);
    EXPECT_EINVAL(w.p, w.n, "a.weight");
    build_small(&w, ts + 2, 1);
    EXPECT_EINVAL(w.p, w.n, "b.weight");

    /* sums that do not split into the experts */
    struct tspec t3[] = {{"a.weight.in_sum2", 0, 3, 1, sums_a}, {"a.weight.counts", 0, 2, 1, counts_a}};
    build_small(&w, t3, 2);
    EXPECT_EINVAL(w.p, w.n, "experts");

    /* non-finite sum; non-finite count */
    float sinf_[4] = {1, INFINITY, 3, 4}, cnan[1] = {NAN};
    struct tspec ti[] = {{"b.weight.in_sum2", 0, 4, 1, sinf_}, {"b.weight.counts", 0, 1, 1, counts_b}};
    build_small(&w, ti, 2);
    EXPECT_EINVAL(w.p, w.n, "non-finite");
    struct tspec tn[] = {{"b.weight.in_sum2", 0, 4, 1, sums_b}, {"b.weight.counts", 0, 1, 1, cnan}};
    build_small(&w, tn, 2);
    EXPECT_EINVAL(w.p, w.n, "count");

    /* no tensors; missing metadata; chunk_count of the wrong type */
    build_small(&w, ts, 0);
    EXPECT_EINVAL(w.p, w.n, "no tensors");
    struct wbuf kvs = {0};
    kv_u32(&kvs, "imatrix.chunk_count", 7);
    build_gguf(&w, &kvs, 1, ts, 2);
    EXPECT_EINVAL(w.p, w.n, "missing imatrix metadata");
    kvs.n = 0;
    kv_arr_str(&kvs, "imatrix.datasets", "d");
    kv_str(&kvs, "imatrix.chunk_count", "7");
    kv_u32(&kvs, "imatrix.chunk_size", 512);
    build_gguf(&w, &kvs, 3, ts, 2);
    EXPECT_EINVAL(w.p, w.n, "u32");
    free(kvs.p);
    free(w.p);
}

/* ---- the reader itself: nested arrays, duplicates, alignment, offsets ---- */

static void expect_parse(int line, const struct wbuf *w, int rc, const char *what)
{
    struct qfs_ggufr *g = NULL;
    cap_begin();
    int r = qfs_ggufr_parse("mem.gguf", w->p, w->n, &g);
    char *log = cap_end();
    if (r != rc) {
        fprintf(stderr, "line %d: parse = %d, want %d\nlog: %s\n", line, r, rc, log);
        n_fail++;
    }
    if (what)
        check_log_at(__FILE__, line, log, "mem.gguf", what);
    qfs_ggufr_close(g);
    free(log);
}

static void test_reader(void)
{
    struct wbuf kvs = {0}, w = {0};
    /* nested: [[1,2],[3]] of u16, then a string array and a bool */
    put_str(&kvs, "nest");
    put_u32(&kvs, 9);
    put_u32(&kvs, 9);
    put_u64(&kvs, 2);
    put_u32(&kvs, 2);
    put_u64(&kvs, 2);
    put(&kvs, (uint16_t[]){1, 2}, 4);
    put_u32(&kvs, 2);
    put_u64(&kvs, 1);
    put(&kvs, (uint16_t[]){3}, 2);
    put_str(&kvs, "strs");
    put_u32(&kvs, 9);
    put_u32(&kvs, 8);
    put_u64(&kvs, 2);
    put_str(&kvs, "x");
    put_str(&kvs, "yz");
    put_str(&kvs, "flag");
    put_u32(&kvs, 7);
    put(&kvs, "\2", 1);
    kv_u32(&kvs, "general.alignment", 64);
    struct tspec ts[] = {{"t0", 0, 4, 2, sums_a}, {"t1", 1, 2, 1, (uint16_t[]){1, 2}}};
    /* build_gguf aligns to 32; general.alignment says 64, so the 32-aligned layout is
     * truncated unless it happens to be 64-aligned, and is then fixed up by hand */
    build_gguf(&w, &kvs, 4, ts, 1);
    struct qfs_ggufr *g = NULL;
    cap_begin();
    int r = qfs_ggufr_parse("mem.gguf", w.p, w.n, &g);
    char *log = cap_end();
    size_t hdr_end = w.n - 32; /* start of the data (one 32-byte tensor) */
    if (hdr_end % 64 != 0) {
        CHECK(r == -EINVAL); /* at 64 alignment the data must start later */
        qfs_ggufr_close(g);
        g = NULL;
        /* insert 32 zero bytes before the data */
        struct wbuf w2 = {0};
        put(&w2, w.p, hdr_end);
        put(&w2, (uint8_t[32]){0}, 32);
        put(&w2, w.p + hdr_end, 32);
        put(&w2, (uint8_t[32]){0}, 32); /* padding of the tensor to 64 */
        free(w.p);
        w = w2;
        cap_begin();
        r = qfs_ggufr_parse("mem.gguf", w.p, w.n, &g);
        free(log);
        log = cap_end();
    } else {
        put(&w, (uint8_t[32]){0}, 32);
        qfs_ggufr_close(g);
        g = NULL;
        cap_begin();
        r = qfs_ggufr_parse("mem.gguf", w.p, w.n, &g);
        free(log);
        log = cap_end();
    }
    CHECK(r == 0);
    if (r == 0) {
        CHECK(g->alignment == 64 && g->n_kv == 4 && g->n_tensors == 1);
        const struct qfs_ggufr_kv *kv = qfs_ggufr_find_kv(g, "nest");
        struct qfs_ggufr_val e, x;
        CHECK(kv && kv->val.type == QFS_GGUF_ARRAY && kv->val.arr.n == 2);
        CHECK(kv && qfs_ggufr_arr_get(&kv->val, 1, &e) == 0 && e.arr.n == 1 &&
              qfs_ggufr_arr_get(&e, 0, &x) == 0 && x.type == QFS_GGUF_U16 && x.u == 3);
        CHECK(kv && qfs_ggufr_arr_get(&kv->val, 0, &e) == 0 && e.arr.n == 2 &&
              qfs_ggufr_arr_get(&e, 1, &x) == 0 && x.u == 2);
        CHECK(kv && qfs_ggufr_arr_get(&kv->val, 2, &e) == -EINVAL);
        kv = qfs_ggufr_find_kv(g, "strs");
        CHECK(kv && qfs_ggufr_arr_get(&kv->val, 1, &e) == 0 && e.s.len == 2 &&
              memcmp(e.s.p, "yz", 2) == 0);
        kv = qfs_ggufr_find_kv(g, "flag");
        CHECK(kv && kv->val.type == QFS_GGUF_BOOL && kv->val.b);
        const struct qfs_ggufr_tensor *t = qfs_ggufr_find_tensor(g, "t0");
        CHECK(t && t->ne[0] == 4 && t->ne[1] == 2 && t->nbytes == 32 && t->data == w.p + w.n - 64);
        CHECK(qfs_ggufr_find_tensor(g, "t1") == NULL);
    } else {
        fprintf(stderr, "%s\n", log);
    }
    free(log);
    qfs_ggufr_close(g);

    /* duplicate key, duplicate tensor, bad alignment, wrong offset, unknown type, v1 */
    kvs.n = 0;
    kv_u32(&kvs, "k", 1);
    kv_u32(&kvs, "k", 2);
    build_gguf(&w, &kvs, 2, ts, 0);
    expect_parse(__LINE__, &w, -EINVAL, "duplicate key");
    kvs.n = 0;
    build_gguf(&w, &kvs, 0, (struct tspec[]){ts[0], ts[0]}, 2);
    expect_parse(__LINE__, &w, -EINVAL, "duplicate tensor");
    kv_u32(&kvs, "general.alignment", 48);
    build_gguf(&w, &kvs, 1, ts, 0);
    expect_parse(__LINE__, &w, -EINVAL, "alignment");
    kvs.n = 0;
    build_gguf(&w, &kvs, 0, ts, 2);
    expect_parse(__LINE__, &w, 0, NULL);
    /* the second tensor's offset field: last 8 bytes of the infos, just before the padding */
    struct wbuf w3 = {0};
    build_gguf(&w3, &kvs, 0, ts, 1);
    size_t info_end = 24 + 8 + 2 + 4 + 16 + 4 + 8;
    w3.p[info_end - 8] = 32; /* offset 32 instead of 0 */
    expect_parse(__LINE__, &w3, -EINVAL, "offset");
    w3.p[info_end - 8] = 0;
    w3.p[info_end - 12] = 4; /* type 4: removed Q4_2 */
    expect_parse(__LINE__, &w3, -EINVAL, "type");
    w3.p[info_end - 12] = 0;
    w3.p[4] = 1;
    expect_parse(__LINE__, &w3, -EINVAL, "version");
    w3.p[4] = 3;
    expect_parse(__LINE__, &w3, 0, NULL);
    free(w3.p);
    free(kvs.p);
    free(w.p);
}

/* ---- legacy .dat ---- */

struct lentry {
    const char *name;
    int32_t ncall;
    int32_t nval;
    const float *sums;
};

static void build_dat(struct wbuf *w, const struct lentry *e, int n, int trailer, int32_t chunks,
                      const char *dataset)
{
    w->n = 0;
    put_i32(w, n);
    for (int i = 0; i < n; i++) {
        put_i32(w, (int32_t)strlen(e[i].name));
        put(w, e[i].name, strlen(e[i].name));
        put_i32(w, e[i].ncall);
        put_i32(w, e[i].nval);
        put(w, e[i].sums, (size_t)e[i].nval * 4);
    }
    if (trailer >= 1)
        put_i32(w, chunks);
    if (trailer >= 2) {
        put_i32(w, (int32_t)strlen(dataset));
        put(w, dataset, strlen(dataset));
    }
}

static void test_legacy_small(void)
{
    float s1[3] = {3, 6, 9}, s2[2] = {1, 2}, s3[2] = {5, 7}, s4[1] = {NAN};
    struct lentry e[] = {{"w.b", 3, 3, s1}, {"w.a", 0, 2, s2}, {"w.b", 2, 2, s3}};
    struct wbuf w = {0};
    build_dat(&w, e, 3, 2, 42, "data.txt");
    struct qfs_imatrix *im;
    char *log;
    int r = load_bytes(w.p, w.n, &im, &log);
    CHECK(r == 0);
    if (r == 0) {
        CHECK(im->legacy && im->n_entries == 2 && im->chunk_count == 42);
        CHECK(im->dataset && strcmp(im->dataset, "data.txt") == 0);
        const struct qfs_imatrix_entry *a = qfs_imatrix_find(im, "w.a");
        const struct qfs_imatrix_entry *b = qfs_imatrix_find(im, "w.b");
        /* ncall 0: the sums themselves; duplicate: the later entry wins */
        CHECK(a && a->n == 2 && a->values[0] == 1 && a->values[1] == 2);
        CHECK(b && b->n == 2 && b->values[0] == 2.5f && b->values[1] == 3.5f);
    } else {
        fprintf(stderr, "%s\n", log);
    }
    qfs_imatrix_free(im);
    free(log);

    /* trailer forms: none, chunk count only */
    build_dat(&w, e, 2, 0, 0, NULL);
    CHECK(load_bytes(w.p, w.n, &im, NULL) == 0 && im->chunk_count == 0 && !im->dataset);
    qfs_imatrix_free(im);
    build_dat(&w, e, 2, 1, 9, NULL);
    CHECK(load_bytes(w.p, w.n, &im, NULL) == 0 && im->chunk_count == 9 && !im->dataset);
    qfs_imatrix_free(im);

    build_dat(&w, e, 3, 2, 42, "data.txt");
    truncations(&w, "small legacy imatrix");

    /* a name length beyond the file */
    build_dat(&w, e, 1, 0, 0, NULL);
    int32_t big = 1000;
    memcpy(w.p + 4, &big, 4);
    EXPECT_EINVAL(w.p, w.n, "exceeds the file");
    /* a negative name length */
    big = -5;
    memcpy(w.p + 4, &big, 4);
    EXPECT_EINVAL(w.p, w.n, "exceeds the file");
    /* n_entries huge, zero, negative */
    build_dat(&w, e, 1, 0, 0, NULL);
    int32_t ne = INT32_MAX;
    memcpy(w.p, &ne, 4);
    EXPECT_EINVAL(w.p, w.n, "entries");
    ne = 0;
    memcpy(w.p, &ne, 4);
    EXPECT_EINVAL(w.p, w.n, "entries");
    ne = -1;
    memcpy(w.p, &ne, 4);
    EXPECT_EINVAL(w.p, w.n, "entries");
    /* a value count beyond the file, and a zero one */
    build_dat(&w, e, 1, 0, 0, NULL);
    int32_t nv = 1 << 28;
    memcpy(w.p + 4 + 4 + 3 + 4, &nv, 4);
    EXPECT_EINVAL(w.p, w.n, "exceeds the file");
    nv = 0;
    memcpy(w.p + 4 + 4 + 3 + 4, &nv, 4);
    EXPECT_EINVAL(w.p, w.n, "values");
    /* a non-finite value */
    struct lentry en[] = {{"w.n", 1, 1, s4}};
    build_dat(&w, en, 1, 0, 0, NULL);
    EXPECT_EINVAL(w.p, w.n, "non-finite");
    free(w.p);
}

/* ---- the shared fixture ---- */

/* Minimal independent GGUF walk: data pointer and element count of tensor `name`. */
static uint64_t rd(const uint8_t **p, int n)
{
    uint64_t v = 0;
    memcpy(&v, *p, (size_t)n);
    *p += n;
    return v;
}

static void skip_val(const uint8_t **p, uint32_t t)
{
    static const int sz[] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
    if (t == 8) {
        uint64_t n = rd(p, 8);
        *p += n;
    } else if (t == 9) {
        uint32_t et = (uint32_t)rd(p, 4);
        uint64_t n = rd(p, 8);
        for (uint64_t i = 0; i < n; i++)
            skip_val(p, et);
    } else {
        *p += sz[t];
    }
}

static const float *raw_tensor(const uint8_t *file, const char *name, int64_t *nel)
{
    const uint8_t *p = file + 8;
    uint64_t nt = rd(&p, 8), nkv = rd(&p, 8);
    for (uint64_t i = 0; i < nkv; i++) {
        uint64_t kl = rd(&p, 8);
        p += kl;
        skip_val(&p, (uint32_t)rd(&p, 4));
    }
    bool found = false;
    uint64_t found_off = 0;
    for (uint64_t i = 0; i < nt; i++) {
        uint64_t nl = rd(&p, 8);
        bool hit = nl == strlen(name) && memcmp(p, name, nl) == 0;
        p += nl;
        uint32_t nd = (uint32_t)rd(&p, 4);
        int64_t n = 1;
        for (uint32_t d = 0; d < nd; d++)
            n *= (int64_t)rd(&p, 8);
        rd(&p, 4);
        uint64_t off = rd(&p, 8);
        if (hit) {
            *nel = n;
            found_off = off;
            found = true;
        }
    }
    if (!found)
        return NULL;
    size_t data = (size_t)(p - file + 31) / 32 * 32; /* default alignment in this fixture */
    return (const float *)(file + data + found_off);
}

static int64_t json_quantize_int(json_t *root, const char *key, const char **s)
{
    json_t *md = json_object_get(root, "metadata");
    size_t i;
    json_t *kv;
    json_array_foreach(md, i, kv)
    {
        if (strcmp(json_string_value(json_object_get(kv, "key")), key) == 0) {
            json_t *v = json_object_get(kv, "value");
            if (s)
                *s = json_string_value(v);
            return json_is_integer(v) ? json_integer_value(v) : 0;
        }
    }
    return -1;
}

static int test_fixture(void)
{
    const char *shared = getenv("QFS_SHARED");
    char *path = xasprintf("%s/reference/tinyllama-256/tinyllama-256.imatrix.gguf",
                           shared ? shared : "/nonexistent");
    char *jpath = xasprintf("%s/reference/tinyllama-256/tinyllama-256.imatrix.Q4_K_M.json",
                            shared ? shared : "/nonexistent");
    if (!shared || access(path, R_OK) != 0 || access(jpath, R_OK) != 0) {
        printf("# %s absent: fixture part skipped\n", path);
        free(path);
        free(jpath);
        return 77;
    }
    json_error_t jerr;
    json_t *ref = json_load_file(jpath, 0, &jerr);
    CHECK(ref != NULL);
    const char *ref_ds = NULL;
    int64_t ref_n = json_quantize_int(ref, "quantize.imatrix.entries_count", NULL);
    int64_t ref_chunks = json_quantize_int(ref, "quantize.imatrix.chunks_count", NULL);
    json_quantize_int(ref, "quantize.imatrix.dataset", &ref_ds);
    CHECK(ref_n == 28 && ref_chunks == 584 && ref_ds && strcmp(ref_ds, "calib.txt") == 0);

    struct qfs_imatrix *im = NULL;
    int r = qfs_imatrix_load(path, &im);
    CHECK(r == 0);
    if (r != 0)
        goto out;
    CHECK(im->n_entries == ref_n);
    CHECK(im->chunk_count == ref_chunks);
    CHECK(im->dataset && ref_ds && strcmp(im->dataset, ref_ds) == 0);
    CHECK(strcmp(im->file_name, "tinyllama-256.imatrix.gguf") == 0);
    size_t fsize;
    uint8_t *file = read_file(path, &fsize);
    struct qfs_cache_key k;
    qfs_hash128(file, fsize, &k);
    CHECK(memcmp(&k, &im->hash, sizeof k) == 0);

    const char **names = calloc((size_t)im->n_entries, sizeof *names);
    int64_t *ne0 = calloc((size_t)im->n_entries, sizeof *ne0);
    for (int i = 0; i < im->n_entries; i++) {
        const struct qfs_imatrix_entry *e = &im->entries[i];
        if (i > 0)
            CHECK(strcmp(im->entries[i - 1].name, e->name) < 0);
        int64_t want = strstr(e->name, "ffn_down") ? 768 : 256;
        CHECK(strncmp(e->name, "blk.", 4) == 0);
        CHECK(strstr(e->name, "attn_") || strstr(e->name, "ffn_"));
        CHECK(e->n == want);
        names[i] = e->name;
        ne0[i] = want;
        int bad = 0;
        for (int64_t j = 0; j < e->n; j++)
            bad += !(isfinite(e->values[j]) && e->values[j] > 0);
        CHECK(bad == 0);
        /* normalisation: sums / lround(count), recomputed from the raw tensors */
        char *sn = xasprintf("%s.in_sum2", e->name), *cn = xasprintf("%s.counts", e->name);
        int64_t ns = 0, nc = 0;
        const float *s = raw_tensor(file, sn, &ns), *c = raw_tensor(file, cn, &nc);
        CHECK(s && c && ns == e->n && nc == 1);
        if (s && c && ns == e->n && nc == 1) {
            float cnt = (float)lroundf(c[0]);
            CHECK(cnt > 0);
            int mism = 0;
            for (int64_t j = 0; j < ns; j++)
                mism += e->values[j] != s[j] / cnt;
            CHECK(mism == 0);
        }
        free(sn);
        free(cn);
    }
    CHECK(qfs_imatrix_check(im, names, ne0, im->n_entries) == 0);

    /* legacy .dat from the GGUF entries: sums = value * ncall (ncall 8: exact in float) */
    struct wbuf w = {0};
    put_i32(&w, im->n_entries);
    for (int i = 0; i < im->n_entries; i++) {
        const struct qfs_imatrix_entry *e = &im->entries[i];
        put_i32(&w, (int32_t)strlen(e->name));
        put(&w, e->name, strlen(e->name));
        put_i32(&w, 8);
        put_i32(&w, (int32_t)e->n);
        for (int64_t j = 0; j < e->n; j++) {
            float v = e->values[j] * 8;
            put(&w, &v, 4);
        }
    }
    put_i32(&w, (int32_t)im->chunk_count);
    put_i32(&w, (int32_t)strlen(im->dataset));
    put(&w, im->dataset, strlen(im->dataset));
    char *dat = xasprintf("%s/tiny.dat", tmp);
    write_file(dat, w.p, w.n);
    struct qfs_imatrix *lg = NULL;
    r = qfs_imatrix_load(dat, &lg);
    CHECK(r == 0);
    if (r == 0) {
        CHECK(lg->legacy && lg->n_entries == im->n_entries && lg->chunk_count == 584);
        CHECK(lg->dataset && strcmp(lg->dataset, "calib.txt") == 0);
        CHECK(strcmp(lg->file_name, "tiny.dat") == 0);
        CHECK(memcmp(&lg->hash, &im->hash, sizeof k) != 0);
        int mism = 0;
        for (int i = 0; i < lg->n_entries && i < im->n_entries; i++) {
            const struct qfs_imatrix_entry *a = &im->entries[i], *b = &lg->entries[i];
            if (strcmp(a->name, b->name) != 0 || a->n != b->n ||
                memcmp(a->values, b->values, (size_t)a->n * 4) != 0)
                mism++;
        }
        CHECK(mism == 0);
        CHECK(qfs_imatrix_check(lg, names, ne0, im->n_entries) == 0);
    }
    qfs_imatrix_free(lg);
    free(dat);
    free(w.p);
    free(names);
    free(ne0);
    free(file);
out:
    qfs_imatrix_free(im);
    json_decref(ref);
    free(path);
    free(jpath);
    return 0;
}

/* Random byte mutations of a small imatrix (GGUF and legacy): 0 or -EINVAL, never a crash
 * (the sanitizer build makes any out-of-bounds read fatal). */
static void mutations(void)
{
    struct tspec ts[] = {
        {"a.weight.in_sum2", 0, 4, 2, sums_a},
        {"a.weight.counts", 0, 2, 1, counts_a},
        {"b.weight.in_sum2", 0, 4, 1, sums_b},
        {"b.weight.counts", 0, 1, 1, counts_b},
    };
    float s1[3] = {3, 6, 9}, s2[2] = {1, 2};
    struct lentry e[] = {{"w.b", 3, 3, s1}, {"w.a", 0, 2, s2}};
    struct wbuf g = {0}, d = {0}, m = {0};
    build_small(&g, ts, 4);
    build_dat(&d, e, 2, 2, 42, "data.txt");
    uint32_t seed = 12345;
    int bad = 0;
    for (int it = 0; it < 600; it++) {
        const struct wbuf *src = it % 3 ? &g : &d;
        m.n = 0;
        put(&m, src->p, src->n);
        int nflip = 1 + it % 4;
        for (int k = 0; k < nflip; k++) {
            seed = seed * 1103515245u + 12345u;
            size_t pos = (seed >> 8) % m.n;
            seed = seed * 1103515245u + 12345u;
            m.p[pos] = (uint8_t)(it & 1 ? seed >> 16 : m.p[pos] ^ (1u << (seed >> 16) % 8));
        }
        struct qfs_imatrix *im;
        int r = load_bytes(m.p, m.n, &im, NULL);
        if (r != 0 && r != -EINVAL) {
            fprintf(stderr, "mutation %d: load = %d\n", it, r);
            bad++;
        }
        qfs_imatrix_free(im);
    }
    CHECK(bad == 0);
    free(g.p);
    free(d.p);
    free(m.p);
}

int main(void)
{
    (void)write_text; /* testutil helper this test does not need */
    tmp = make_tmpdir();
    test_reader();
    test_gguf_small();
    test_legacy_small();
    mutations();
    struct qfs_imatrix *im = NULL;
    char *missing = xasprintf("%s/absent.gguf", tmp);
    cap_begin();
    int r = qfs_imatrix_load(missing, &im);
    char *log = cap_end();
    CHECK(r == -ENOENT && im == NULL);
    CHECK_LOG(log, "absent.gguf", NULL);
    free(log);
    free(missing);
    int skip = test_fixture();
    remove_tree(tmp);
    free(tmp);
    if (n_fail) {
        printf("%d check(s) failed\n", n_fail);
        return 1;
    }
    printf("ok\n");
    return skip;
}
