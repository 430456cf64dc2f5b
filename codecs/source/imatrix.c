/* Importance-matrix files.  Formats and contract: imatrix.h.
 *
 * Loading:
 *   1. open, fstat, mmap the whole file read-only; hash it (XXH3-128);
 *   2. "GGUF" magic: parse with gguf_read, require the imatrix.* metadata, pair every
 *      "W.in_sum2" with "W.counts" and normalise by the per-expert counts;
 *      otherwise: walk the legacy layout with a bounds-checked cursor, normalise by ncall;
 *   3. sort by name (legacy: a later duplicate wins), refuse non-finite values. */
#include "imatrix.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/log.h"
#include "../../util/mapfile.h"
#include "../gguf/gguf_read.h"

#define SUFFIX_SUMS ".in_sum2"
#define SUFFIX_COUNTS ".counts"
#define GGML_F32 0

/* An entry while loading: idx is its position in the file (duplicates: the last wins). */
struct pending {
    struct qfs_imatrix_entry e;
    size_t idx;
};

struct loader {
    const char *path;
    struct pending *v;
    size_t n, cap;
};

static float ld_f32(const uint8_t *p)
{
    uint32_t b = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    float f;
    memcpy(&f, &b, 4);
    return f;
}

static int32_t ld_i32(const uint8_t *p)
{
    uint32_t b = (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
    return (int32_t)b;
}

/* Append an entry named name[0..len) (cut at an embedded NUL, as llama.cpp's C strings are)
 * with n uninitialised values; returns it or NULL (logged). */
static struct qfs_imatrix_entry *add_entry(struct loader *L, const char *name, size_t len,
                                           int64_t n)
{
    if (L->n == L->cap) {
        size_t cap = L->cap ? L->cap * 2 : 64;
        struct pending *v = reallocarray(L->v, cap, sizeof *v);
        if (!v)
            goto oom;
        L->v = v;
        L->cap = cap;
    }
    struct pending *p = &L->v[L->n];
    p->e.name = strndup(name, len);
    p->e.values = malloc((size_t)n * sizeof(float));
    p->e.n = n;
    p->idx = L->n;
    if (!p->e.name || !p->e.values) {
        free(p->e.name);
        free(p->e.values);
        goto oom;
    }
    L->n++;
    return &p->e;
oom:
    qfs_err("%s: out of memory", L->path);
    return NULL;
}

static bool has_suffix(const char *s, const char *suf, size_t *stem)
{
    size_t n = strlen(s), m = strlen(suf);
    if (n < m || strcmp(s + n - m, suf) != 0)
        return false;
    *stem = n - m;
    return true;
}

static int64_t nelements(const struct qfs_ggufr_tensor *t)
{
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]; /* the parse checked the product */
}

/* One "W.in_sum2" / "W.counts" pair -> entry W. */
static int gguf_entry(struct loader *L, const char *name, size_t stem,
                      const struct qfs_ggufr_tensor *sums, const struct qfs_ggufr_tensor *counts)
{
    if (sums->type != GGML_F32 || counts->type != GGML_F32) {
        qfs_err("%s: imatrix entry %.*s: sums and counts must be F32", L->path, (int)stem, name);
        return -EINVAL;
    }
    int64_t nval = nelements(sums), ncounts = nelements(counts);
    if (nval == 0 || ncounts == 0 || nval % ncounts != 0) {
        qfs_err("%s: imatrix entry %.*s: %" PRId64 " sums do not split into %" PRId64
                " experts",
                L->path, (int)stem, name, nval, ncounts);
        return -EINVAL;
    }
    int64_t ne0 = nval / ncounts;
    struct qfs_imatrix_entry *e = add_entry(L, name, stem, nval);
    if (!e)
        return -ENOMEM;
    for (int64_t j = 0; j < ncounts; j++) {
        float c = ld_f32(counts->data + 4 * j);
        /* llama.cpp rounds the count to an integer (lround) and divides by it as a float */
        if (!isfinite(c) || fabsf(c) >= 0x1p62f) {
            qfs_err("%s: imatrix entry %s: count %" PRId64 " is not a finite integer value",
                    L->path, e->name, j);
            return -EINVAL;
        }
        float count = (float)llroundf(c);
        for (int64_t i = 0; i < ne0; i++) {
            float s = ld_f32(sums->data + 4 * (j * ne0 + i));
            e->values[j * ne0 + i] = count > 0.0f ? s / count : 1.0f;
        }
    }
    return 0;
}

static int load_gguf(struct loader *L, struct qfs_imatrix *im, const uint8_t *buf, uint64_t size)
{
    struct qfs_ggufr *g = NULL;
    char *other = NULL;
    int r = qfs_ggufr_parse(L->path, buf, size, &g);
    if (r < 0)
        return r;
    r = -EINVAL;
    if (g->n_tensors < 1) {
        qfs_err("%s: imatrix has no tensors", L->path);
        goto fail;
    }
    const struct qfs_ggufr_kv *ds = qfs_ggufr_find_kv(g, "imatrix.datasets");
    const struct qfs_ggufr_kv *cc = qfs_ggufr_find_kv(g, "imatrix.chunk_count");
    const struct qfs_ggufr_kv *cs = qfs_ggufr_find_kv(g, "imatrix.chunk_size");
    if (!ds || !cc || !cs) {
        qfs_err("%s: missing imatrix metadata (imatrix.datasets, imatrix.chunk_count and "
                "imatrix.chunk_size are required)",
                L->path);
        goto fail;
    }
    if (cc->val.type != QFS_GGUF_U32 || cs->val.type != QFS_GGUF_U32) {
        qfs_err("%s: imatrix.chunk_count and imatrix.chunk_size must be u32", L->path);
        goto fail;
    }
    im->chunk_count = (int32_t)(uint32_t)cc->val.u; /* llama.cpp keeps it in an int32_t */
    if (ds->val.type == QFS_GGUF_ARRAY && ds->val.arr.type == QFS_GGUF_STRING) {
        if (ds->val.arr.n > 0) {
            struct qfs_ggufr_val s;
            r = qfs_ggufr_arr_get(&ds->val, 0, &s);
            if (r < 0) {
                qfs_err("%s: imatrix.datasets: unreadable element", L->path);
                goto fail;
            }
            im->dataset = strndup(s.s.p, s.s.len);
            if (!im->dataset) {
                qfs_err("%s: out of memory", L->path);
                r = -ENOMEM;
                goto fail;
            }
        }
    } else {
        /* llama.cpp ignores it too: the output then names no dataset */
        qfs_warn("%s: imatrix.datasets is not an array of strings; ignored", L->path);
    }

    r = 0;
    for (uint64_t k = 0; k < g->n_tensors && r == 0; k++) {
        const struct qfs_ggufr_tensor *t = &g->tensors[g->t_sorted[k]];
        size_t stem;
        bool is_sums = has_suffix(t->name, SUFFIX_SUMS, &stem);
        if (!is_sums && !has_suffix(t->name, SUFFIX_COUNTS, &stem))
            continue; /* not an imatrix tensor: ignored, as by llama.cpp */
        if (asprintf(&other, "%.*s%s", (int)stem, t->name, is_sums ? SUFFIX_COUNTS : SUFFIX_SUMS) <
            0) {
            other = NULL;
            qfs_err("%s: out of memory", L->path);
            r = -ENOMEM;
            goto fail;
        }
        const struct qfs_ggufr_tensor *mate = qfs_ggufr_find_tensor(g, other);
        free(other);
        other = NULL;
        if (!mate) {
            qfs_err("%s: imatrix entry %.*s: %s without %s", L->path, (int)stem, t->name,
                    is_sums ? SUFFIX_SUMS : SUFFIX_COUNTS, is_sums ? SUFFIX_COUNTS : SUFFIX_SUMS);
            r = -EINVAL;
            goto fail;
        }
        if (is_sums) /* each pair once: from its .in_sum2 */
            r = gguf_entry(L, t->name, stem, t, mate);
    }
    if (r < 0)
        goto fail;
    qfs_ggufr_close(g);
    return 0;
fail:
    free(other);
    qfs_ggufr_close(g);
    return r;
}

/* Legacy layout; see imatrix.h. */
struct lcur {
    const char *path;
    const uint8_t *buf;
    uint64_t size, pos;
};

static int lc_i32(struct lcur *c, int32_t *v, const char *what, int64_t entry)
{
    if (c->size - c->pos < 4) {
        qfs_err("%s: truncated imatrix: %s of entry %" PRId64 " at offset %" PRIu64, c->path, what,
                entry, c->pos);
        return -EINVAL;
    }
    *v = ld_i32(c->buf + c->pos);
    c->pos += 4;
    return 0;
}

/* A length field followed by that many bytes (unit bytes each). */
static int lc_span(struct lcur *c, int32_t n, uint64_t unit, const char *what, int64_t entry,
                   const uint8_t **p)
{
    if (n < 0 || (uint64_t)n > (c->size - c->pos) / unit) {
        qfs_err("%s: imatrix %s of entry %" PRId64 " (%" PRId32 ") exceeds the file (%" PRIu64
                " bytes)",
                c->path, what, entry, n, c->size);
        return -EINVAL;
    }
    *p = c->buf + c->pos;
    c->pos += (uint64_t)n * unit;
    return 0;
}

static int load_legacy(struct loader *L, struct qfs_imatrix *im, const uint8_t *buf, uint64_t size)
{
    struct lcur c = {.path = L->path, .buf = buf, .size = size, .pos = 0};
    int32_t n_entries;
    int r = lc_i32(&c, &n_entries, "entry count", 0);
    if (r < 0)
        return r;
    /* the smallest entry: three i32 and one value */
    if (n_entries < 1 || (uint64_t)n_entries > (size - 4) / 16) {
        qfs_err("%s: not an imatrix: %" PRId32 " entries in %" PRIu64 " bytes", L->path, n_entries,
                size);
        return -EINVAL;
    }
    for (int64_t i = 0; i < n_entries; i++) {
        int32_t len, ncall, nval;
        const uint8_t *name, *vals;
        if ((r = lc_i32(&c, &len, "name length", i)) < 0 ||
            (r = lc_span(&c, len, 1, "name length", i, &name)) < 0 ||
            (r = lc_i32(&c, &ncall, "call count", i)) < 0 ||
            (r = lc_i32(&c, &nval, "value count", i)) < 0)
            return r;
        if (nval < 1) {
            qfs_err("%s: imatrix entry %" PRId64 " has %" PRId32 " values", L->path, i, nval);
            return -EINVAL;
        }
        if ((r = lc_span(&c, nval, 4, "value count", i, &vals)) < 0)
            return r;
        struct qfs_imatrix_entry *e = add_entry(L, (const char *)name, (size_t)len, nval);
        if (!e)
            return -ENOMEM;
        /* llama.cpp: sum / ncall with ncall widened to float; the sum itself when ncall <= 0 */
        for (int32_t k = 0; k < nval; k++) {
            float s = ld_f32(vals + 4 * (size_t)k);
            e->values[k] = ncall > 0 ? s / (float)ncall : s;
        }
    }
    /* optional trailer: chunk count, then dataset length and bytes */
    uint64_t left = size - c.pos;
    if (left == 0)
        return 0;
    int32_t chunks, dlen;
    const uint8_t *ds;
    if ((r = lc_i32(&c, &chunks, "chunk count", n_entries)) < 0)
        return r;
    im->chunk_count = chunks;
    if (size - c.pos == 0)
        return 0;
    if ((r = lc_i32(&c, &dlen, "dataset length", n_entries)) < 0 ||
        (r = lc_span(&c, dlen, 1, "dataset length", n_entries, &ds)) < 0)
        return r;
    if (dlen > 0 && !(im->dataset = strndup((const char *)ds, (size_t)dlen))) {
        qfs_err("%s: out of memory", L->path);
        return -ENOMEM;
    }
    return 0;
}

static int cmp_pending(const void *a, const void *b)
{
    const struct pending *x = a, *y = b;
    int c = strcmp(x->e.name, y->e.name);
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

/* Sort, keep the last of equal names, check values; moves the entries into im. */
static int finish(struct loader *L, struct qfs_imatrix *im)
{
    if (L->n > 0)
        qsort(L->v, L->n, sizeof *L->v, cmp_pending);
    size_t k = 0;
    for (size_t i = 0; i < L->n; i++) {
        if (i + 1 < L->n && strcmp(L->v[i].e.name, L->v[i + 1].e.name) == 0) {
            free(L->v[i].e.name);
            free(L->v[i].e.values);
            continue;
        }
        L->v[k++] = L->v[i];
    }
    L->n = k;
    if (L->n > INT32_MAX) {
        qfs_err("%s: too many imatrix entries", L->path);
        return -EINVAL;
    }
    for (size_t i = 0; i < L->n; i++) {
        const struct qfs_imatrix_entry *e = &L->v[i].e;
        for (int64_t j = 0; j < e->n; j++)
            if (!isfinite(e->values[j])) {
                qfs_err("%s: imatrix entry %s: non-finite value %f at %" PRId64, L->path, e->name,
                        (double)e->values[j], j);
                return -EINVAL;
            }
    }
    im->entries = calloc(L->n ? L->n : 1, sizeof *im->entries);
    if (!im->entries) {
        qfs_err("%s: out of memory", L->path);
        return -ENOMEM;
    }
    for (size_t i = 0; i < L->n; i++)
        im->entries[i] = L->v[i].e;
    im->n_entries = (int)L->n;
    L->n = 0;
    return 0;
}

int qfs_imatrix_load(const char *path, struct qfs_imatrix **out)
{
    struct loader L = {.path = path};
    struct qfs_imatrix *im = NULL;
    void *map = NULL;
    uint64_t size = 0;
    int r = qfs_map_file(path, "an imatrix file", 4, &map, &size);
    if (r < 0)
        return r;
    im = calloc(1, sizeof *im);
    if (!im || !(im->path = strdup(path))) {
        qfs_err("%s: out of memory", path);
        r = -ENOMEM;
        goto fail;
    }
    const char *slash = strrchr(path, '/');
    if (!(im->file_name = strdup(slash ? slash + 1 : path))) {
        qfs_err("%s: out of memory", path);
        r = -ENOMEM;
        goto fail;
    }
    qfs_hash128(map, size, &im->hash);
    if (memcmp(map, "GGUF", 4) == 0) {
        r = load_gguf(&L, im, map, size);
    } else {
        im->legacy = true;
        r = load_legacy(&L, im, map, size);
    }
    if (r == 0)
        r = finish(&L, im);
    if (r < 0)
        goto fail;
    qfs_unmap_file(map, size);
    free(L.v);
    *out = im;
    return 0;
fail:
    for (size_t i = 0; i < L.n; i++) {
        free(L.v[i].e.name);
        free(L.v[i].e.values);
    }
    free(L.v);
    qfs_imatrix_free(im);
    qfs_unmap_file(map, size);
    return r;
}

void qfs_imatrix_free(struct qfs_imatrix *im)
{
    if (!im)
        return;
    for (int i = 0; i < im->n_entries; i++) {
        free(im->entries[i].name);
        free(im->entries[i].values);
    }
    free(im->entries);
    free(im->dataset);
    free(im->file_name);
    free(im->path);
    free(im);
}

const struct qfs_imatrix_entry *qfs_imatrix_find(const struct qfs_imatrix *im, const char *name)
{
    int lo = 0, hi = im->n_entries;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(name, im->entries[mid].name);
        if (c == 0)
            return &im->entries[mid];
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

int qfs_imatrix_check(const struct qfs_imatrix *im, const char *const *names, const int64_t *ne0,
                      int n)
{
    for (int i = 0; i < im->n_entries; i++) {
        const struct qfs_imatrix_entry *e = &im->entries[i];
        int k = 0;
        while (k < n && strcmp(names[k], e->name) != 0)
            k++;
        if (k == n) {
            qfs_err("%s: imatrix entry %s: the model has no such tensor", im->path, e->name);
            return -EINVAL;
        }
        if (e->n != ne0[k]) {
            qfs_err("%s: imatrix entry %s: %" PRId64 " values, the tensor's rows need %" PRId64,
                    im->path, e->name, e->n, ne0[k]);
            return -EINVAL;
        }
    }
    return 0;
}
