/* Strict GGUF reader.  Layout and contract: gguf_read.h.
 *
 * Parsing is one forward pass with a bounds-checked cursor:
 *   1. header (magic, version, counts; counts bounded by the smallest encoding of an item);
 *   2. metadata: each value decoded or, for arrays, walked element by element (recursion
 *      depth bounded), so every byte of the metadata is inside the buffer;
 *   3. tensor infos: name, shape (non-negative, product without overflow), type, offset;
 *   4. alignment from general.alignment, data section start, then every tensor's offset is
 *      checked to be the running padded size and the whole section to fit in the buffer;
 *   5. sorted indexes of keys and names reject duplicates and serve the find functions. */
#include "gguf_read.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/log.h"
#include "../../util/mapfile.h"

#define MAX_STRING (1ull << 30)    /* ggml's GGUF_MAX_STRING_LENGTH */
#define MAX_ARRAY (1ull << 30)     /* ggml's GGUF_MAX_ARRAY_ELEMENTS */
#define MAX_NEST 16                /* arrays of arrays: recursion bound */
#define DEFAULT_ALIGNMENT 32
#define MIN_KV_BYTES 14            /* u64 len + 1 key byte + u32 type + 1 value byte */
#define MIN_TENSOR_BYTES 25        /* u64 len + 1 name byte + u32 n_dims + u32 type + u64 offset */

/* ggml type sizes by id (frozen by the format); a zero blck marks a removed or unknown id. */
static const struct {
    int64_t blck;
    uint64_t size;
} ggml_types[] = {
    [0] = {1, 4},      /* F32 */
    [1] = {1, 2},      /* F16 */
    [2] = {32, 18},    /* Q4_0 */
    [3] = {32, 20},    /* Q4_1 */
    /* 4, 5: removed Q4_2, Q4_3 */
    [6] = {32, 22},    /* Q5_0 */
    [7] = {32, 24},    /* Q5_1 */
    [8] = {32, 34},    /* Q8_0 */
    [9] = {32, 36},    /* Q8_1 */
    [10] = {256, 84},  /* Q2_K */
    [11] = {256, 110}, /* Q3_K */
    [12] = {256, 144}, /* Q4_K */
    [13] = {256, 176}, /* Q5_K */
    [14] = {256, 210}, /* Q6_K */
    [15] = {256, 292}, /* Q8_K */
    [16] = {256, 66},  /* IQ2_XXS */
    [17] = {256, 74},  /* IQ2_XS */
    [18] = {256, 98},  /* IQ3_XXS */
    [19] = {256, 50},  /* IQ1_S */
    [20] = {32, 18},   /* IQ4_NL */
    [21] = {256, 110}, /* IQ3_S */
    [22] = {256, 82},  /* IQ2_S */
    [23] = {256, 136}, /* IQ4_XS */
    [24] = {1, 1},     /* I8 */
    [25] = {1, 2},     /* I16 */
    [26] = {1, 4},     /* I32 */
    [27] = {1, 8},     /* I64 */
    [28] = {1, 8},     /* F64 */
    [29] = {256, 56},  /* IQ1_M */
    [30] = {1, 2},     /* BF16 */
    /* 31-33: removed Q4_0_4_4, Q4_0_4_8, Q4_0_8_8 */
    [34] = {256, 54},  /* TQ1_0 */
    [35] = {256, 66},  /* TQ2_0 */
    /* 36-38: removed IQ4_NL_4_4, IQ4_NL_4_8, IQ4_NL_8_8 */
    [39] = {32, 17},   /* MXFP4 */
    [40] = {64, 36},   /* NVFP4 */
    [41] = {128, 18},  /* Q1_0 */
    [42] = {64, 18},   /* Q2_0 */
};
#define N_GGML_TYPES (sizeof ggml_types / sizeof ggml_types[0])

/* Scalar value sizes by GGUF value type; 0 for string and array (variable). */
static const uint8_t scalar_size[] = {
    [QFS_GGUF_U8] = 1,  [QFS_GGUF_I8] = 1,  [QFS_GGUF_U16] = 2, [QFS_GGUF_I16] = 2,
    [QFS_GGUF_U32] = 4, [QFS_GGUF_I32] = 4, [QFS_GGUF_F32] = 4, [QFS_GGUF_BOOL] = 1,
    [QFS_GGUF_STRING] = 0, [QFS_GGUF_ARRAY] = 0, [QFS_GGUF_U64] = 8, [QFS_GGUF_I64] = 8,
    [QFS_GGUF_F64] = 8,
};
#define N_VTYPES (sizeof scalar_size / sizeof scalar_size[0])

bool qfs_ggufr_type_size(uint32_t t, int64_t *blck, uint64_t *type_size)
{
    if (t >= N_GGML_TYPES || ggml_types[t].blck == 0)
        return false;
    *blck = ggml_types[t].blck;
    *type_size = ggml_types[t].size;
    return true;
}

static uint64_t ld(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* Bounds-checked forward cursor.  Every failing take logs one line. */
struct cur {
    const char *label;
    const uint8_t *buf;
    uint64_t size, pos;
};

static const uint8_t *take(struct cur *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos) {
        qfs_err("%s: truncated GGUF: %s needs %" PRIu64 " bytes at offset %" PRIu64
                ", the file has %" PRIu64,
                c->label, what, n, c->pos, c->size);
        return NULL;
    }
    const uint8_t *p = c->buf + c->pos;
    c->pos += n;
    return p;
}

static int take_u32(struct cur *c, uint32_t *v, const char *what)
{
    const uint8_t *p = take(c, 4, what);
    if (!p)
        return -EINVAL;
    *v = (uint32_t)ld(p, 4);
    return 0;
}

static int take_u64(struct cur *c, uint64_t *v, const char *what)
{
    const uint8_t *p = take(c, 8, what);
    if (!p)
        return -EINVAL;
    *v = ld(p, 8);
    return 0;
}

static int take_str(struct cur *c, struct qfs_ggufr_str *s, const char *what)
{
    uint64_t len;
    if (take_u64(c, &len, what) < 0)
        return -EINVAL;
    if (len > MAX_STRING) {
        qfs_err("%s: %s: string length %" PRIu64 " exceeds %llu", c->label, what, len, MAX_STRING);
        return -EINVAL;
    }
    const uint8_t *p = take(c, len, what);
    if (!p)
        return -EINVAL;
    s->p = (const char *)p;
    s->len = len;
    return 0;
}

/* A NUL-terminated copy of a key or tensor name: non-empty, no NUL inside. */
static int dup_name(struct cur *c, const struct qfs_ggufr_str *s, const char *what, uint64_t idx,
                    char **out)
{
    if (s->len == 0 || memchr(s->p, '\0', s->len)) {
        qfs_err("%s: %s %" PRIu64 " is empty or contains a NUL byte", c->label, what, idx);
        return -EINVAL;
    }
    char *d = malloc(s->len + 1);
    if (!d) {
        qfs_err("%s: out of memory", c->label);
        return -ENOMEM;
    }
    memcpy(d, s->p, s->len);
    d[s->len] = '\0';
    *out = d;
    return 0;
}

static int decode_scalar(const uint8_t *p, enum qfs_gguf_vtype t, struct qfs_ggufr_val *v)
{
    v->type = t;
    switch (t) {
    case QFS_GGUF_U8:
    case QFS_GGUF_U16:
    case QFS_GGUF_U32:
    case QFS_GGUF_U64:
        v->u = ld(p, scalar_size[t]);
        return 0;
    case QFS_GGUF_I8:
        v->i = (int8_t)ld(p, 1);
        return 0;
    case QFS_GGUF_I16:
        v->i = (int16_t)ld(p, 2);
        return 0;
    case QFS_GGUF_I32:
        v->i = (int32_t)ld(p, 4);
        return 0;
    case QFS_GGUF_I64:
        v->i = (int64_t)ld(p, 8);
        return 0;
    case QFS_GGUF_F32: {
        uint32_t b = (uint32_t)ld(p, 4);
        float f;
        memcpy(&f, &b, 4);
        v->f = f;
        return 0;
    }
    case QFS_GGUF_F64: {
        uint64_t b = ld(p, 8);
        memcpy(&v->f, &b, 8);
        return 0;
    }
    case QFS_GGUF_BOOL:
        v->b = p[0] != 0; /* as ggml: any non-zero byte is true */
        return 0;
    default:
        return -EINVAL;
    }
}

static bool vtype_ok(uint32_t t)
{
    return t < N_VTYPES;
}

/* Decode one value of type t at the cursor (arrays: walk every element). */
static int take_value(struct cur *c, uint32_t t, int depth, const char *key,
                      struct qfs_ggufr_val *v)
{
    if (!vtype_ok(t)) {
        qfs_err("%s: key %s: invalid value type %" PRIu32, c->label, key, t);
        return -EINVAL;
    }
    if (t == QFS_GGUF_STRING) {
        v->type = QFS_GGUF_STRING;
        return take_str(c, &v->s, key);
    }
    if (t != QFS_GGUF_ARRAY) {
        const uint8_t *p = take(c, scalar_size[t], key);
        if (!p)
            return -EINVAL;
        return decode_scalar(p, (enum qfs_gguf_vtype)t, v);
    }
    if (depth >= MAX_NEST) {
        qfs_err("%s: key %s: arrays nested deeper than %d", c->label, key, MAX_NEST);
        return -EINVAL;
    }
    uint32_t et;
    uint64_t n;
    if (take_u32(c, &et, key) < 0 || take_u64(c, &n, key) < 0)
        return -EINVAL;
    if (!vtype_ok(et)) {
        qfs_err("%s: key %s: invalid array element type %" PRIu32, c->label, key, et);
        return -EINVAL;
    }
    if (n > MAX_ARRAY) {
        qfs_err("%s: key %s: array of %" PRIu64 " elements exceeds %llu", c->label, key, n,
                MAX_ARRAY);
        return -EINVAL;
    }
    v->type = QFS_GGUF_ARRAY;
    v->arr.type = (enum qfs_gguf_vtype)et;
    v->arr.n = n;
    v->arr.data = c->buf + c->pos;
    uint64_t start = c->pos;
    if (scalar_size[et]) {
        /* n <= 2^30 and size <= 8: no overflow */
        if (!take(c, n * scalar_size[et], key))
            return -EINVAL;
    } else {
        /* every element takes at least 8 bytes, so the walk is bounded by the file */
        for (uint64_t i = 0; i < n; i++) {
            struct qfs_ggufr_val e;
            int r = take_value(c, et, depth + 1, key, &e);
            if (r < 0)
                return r;
        }
    }
    v->arr.nbytes = c->pos - start;
    return 0;
}

int qfs_ggufr_arr_get(const struct qfs_ggufr_val *arr, uint64_t i, struct qfs_ggufr_val *out)
{
    if (arr->type != QFS_GGUF_ARRAY || i >= arr->arr.n)
        return -EINVAL;
    uint32_t et = arr->arr.type;
    if (scalar_size[et])
        return decode_scalar(arr->arr.data + i * scalar_size[et], (enum qfs_gguf_vtype)et, out);
    /* Re-walk the validated bytes; a failure here cannot happen but is still checked. */
    struct cur c = {.label = "array", .buf = arr->arr.data, .size = arr->arr.nbytes, .pos = 0};
    for (uint64_t k = 0;; k++) {
        int r = take_value(&c, et, 0, "array element", out);
        if (r < 0)
            return r;
        if (k == i)
            return 0;
    }
}

/* Merge sort of item indexes (qsort has no context argument to reach the names). */
static void merge_sort(uint32_t *a, uint32_t *tmp, uint64_t n,
                       int (*cmp)(const struct qfs_ggufr *, uint32_t, uint32_t),
                       const struct qfs_ggufr *g)
{
    if (n < 2)
        return;
    uint64_t h = n / 2;
    merge_sort(a, tmp, h, cmp, g);
    merge_sort(a + h, tmp, n - h, cmp, g);
    uint64_t i = 0, j = h, k = 0;
    while (i < h && j < n)
        tmp[k++] = cmp(g, a[j], a[i]) < 0 ? a[j++] : a[i++];
    while (i < h)
        tmp[k++] = a[i++];
    while (j < n)
        tmp[k++] = a[j++];
    memcpy(a, tmp, n * sizeof *a);
}

static int cmp_kv(const struct qfs_ggufr *g, uint32_t a, uint32_t b)
{
    return strcmp(g->kv[a].key, g->kv[b].key);
}

static int cmp_t(const struct qfs_ggufr *g, uint32_t a, uint32_t b)
{
    return strcmp(g->tensors[a].name, g->tensors[b].name);
}

/* Sorted index of n items; -EINVAL (logged) on a duplicate name. */
static int sort_index(struct qfs_ggufr *g, uint64_t n, bool keys, uint32_t **out)
{
    uint32_t *idx = malloc((n ? n : 1) * sizeof *idx);
    uint32_t *tmp = malloc((n ? n : 1) * sizeof *tmp);
    int r = -ENOMEM;
    if (!idx || !tmp) {
        qfs_err("%s: out of memory", g->label);
        goto fail;
    }
    for (uint64_t i = 0; i < n; i++)
        idx[i] = (uint32_t)i;
    merge_sort(idx, tmp, n, keys ? cmp_kv : cmp_t, g);
    for (uint64_t i = 1; i < n; i++) {
        if ((keys ? cmp_kv : cmp_t)(g, idx[i - 1], idx[i]) == 0) {
            qfs_err("%s: duplicate %s '%s'", g->label, keys ? "key" : "tensor name",
                    keys ? g->kv[idx[i]].key : g->tensors[idx[i]].name);
            r = -EINVAL;
            goto fail;
        }
    }
    free(tmp);
    *out = idx;
    return 0;
fail:
    free(idx);
    free(tmp);
    return r;
}

static int parse_header(struct cur *c, struct qfs_ggufr *g)
{
    const uint8_t *magic = take(c, 4, "magic");
    if (!magic)
        return -EINVAL;
    if (memcmp(magic, "GGUF", 4) != 0) {
        qfs_err("%s: not a GGUF file (bad magic)", c->label);
        return -EINVAL;
    }
    if (take_u32(c, &g->version, "version") < 0 || take_u64(c, &g->n_tensors, "tensor count") < 0 ||
        take_u64(c, &g->n_kv, "metadata count") < 0)
        return -EINVAL;
    if (g->version != 2 && g->version != 3) {
        qfs_err("%s: GGUF version %" PRIu32 " is not supported (2 and 3 are%s)", c->label,
                g->version,
                (g->version & 0xFFFF) == 0 ? "; a big-endian file?" : "");
        return -EINVAL;
    }
    uint64_t left = c->size - c->pos;
    if (g->n_kv > left / MIN_KV_BYTES || g->n_tensors > left / MIN_TENSOR_BYTES ||
        g->n_kv > UINT32_MAX || g->n_tensors > UINT32_MAX) {
        qfs_err("%s: %" PRIu64 " keys and %" PRIu64 " tensors cannot fit in %" PRIu64 " bytes",
                c->label, g->n_kv, g->n_tensors, c->size);
        return -EINVAL;
    }
    return 0;
}

static int parse_kvs(struct cur *c, struct qfs_ggufr *g)
{
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    if (!g->kv) {
        qfs_err("%s: out of memory", c->label);
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < g->n_kv; i++) {
        struct qfs_ggufr_str key;
        uint32_t t;
        int r = take_str(c, &key, "metadata key");
        if (r == 0)
            r = dup_name(c, &key, "metadata key", i, &g->kv[i].key);
        if (r == 0)
            r = take_u32(c, &t, g->kv[i].key);
        if (r == 0)
            r = take_value(c, t, 0, g->kv[i].key, &g->kv[i].val);
        if (r < 0)
            return r;
    }
    int r = sort_index(g, g->n_kv, true, &g->kv_sorted);
    if (r < 0)
        return r;
    g->alignment = DEFAULT_ALIGNMENT;
    const struct qfs_ggufr_kv *a = qfs_ggufr_find_kv(g, "general.alignment");
    if (a) {
        if (a->val.type != QFS_GGUF_U32 || a->val.u == 0 || (a->val.u & (a->val.u - 1)) != 0) {
            qfs_err("%s: general.alignment must be a u32 power of two", c->label);
            return -EINVAL;
        }
        g->alignment = a->val.u;
    }
    return 0;
}

static int parse_tensor_info(struct cur *c, struct qfs_ggufr_tensor *t, uint64_t i)
{
    struct qfs_ggufr_str name;
    int r = take_str(c, &name, "tensor name");
    if (r < 0)
        return r;
    if (name.len >= QFS_GGUFR_MAX_NAME) {
        qfs_err("%s: tensor %" PRIu64 ": name of %" PRIu64 " bytes (at most %d)", c->label, i,
                name.len, QFS_GGUFR_MAX_NAME - 1);
        return -EINVAL;
    }
    r = dup_name(c, &name, "tensor name", i, &t->name);
    if (r < 0)
        return r;
    uint32_t nd;
    if (take_u32(c, &nd, t->name) < 0)
        return -EINVAL;
    if (nd > QFS_GGUFR_MAX_DIMS) {
        qfs_err("%s: tensor %s: %" PRIu32 " dimensions (at most %d)", c->label, t->name, nd,
                QFS_GGUFR_MAX_DIMS);
        return -EINVAL;
    }
    t->n_dims = (int)nd;
    int64_t nel = 1;
    for (int d = 0; d < QFS_GGUFR_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if ((uint32_t)d < nd) {
            uint64_t v;
            if (take_u64(c, &v, t->name) < 0)
                return -EINVAL;
            if (v > INT64_MAX) {
                qfs_err("%s: tensor %s: dimension %d is negative", c->label, t->name, d);
                return -EINVAL;
            }
            t->ne[d] = (int64_t)v;
        }
        if (__builtin_mul_overflow(nel, t->ne[d], &nel)) {
            qfs_err("%s: tensor %s: element count overflows", c->label, t->name);
            return -EINVAL;
        }
    }
    int64_t blck;
    uint64_t tsize;
    if (take_u32(c, &t->type, t->name) < 0)
        return -EINVAL;
    if (!qfs_ggufr_type_size(t->type, &blck, &tsize)) {
        qfs_err("%s: tensor %s: unknown ggml type %" PRIu32, c->label, t->name, t->type);
        return -EINVAL;
    }
    if (t->ne[0] % blck != 0) {
        qfs_err("%s: tensor %s: row of %" PRId64 " elements is not a multiple of the block (%" PRId64
                ")",
                c->label, t->name, t->ne[0], blck);
        return -EINVAL;
    }
    if (__builtin_mul_overflow((uint64_t)(nel / blck), tsize, &t->nbytes)) {
        qfs_err("%s: tensor %s: size in bytes overflows", c->label, t->name);
        return -EINVAL;
    }
    return take_u64(c, &t->offset, t->name);
}

/* Data section: starts at the aligned end of the infos; tensors back to back, padded. */
static int place_tensors(struct cur *c, struct qfs_ggufr *g)
{
    uint64_t start = c->pos;
    if (g->n_tensors > 0) {
        uint64_t rem = start % g->alignment;
        if (rem && __builtin_add_overflow(start, g->alignment - rem, &start)) {
            qfs_err("%s: data section offset overflows", c->label);
            return -EINVAL;
        }
        if (start > c->size) {
            qfs_err("%s: truncated GGUF: data section starts at %" PRIu64 " beyond the end (%" PRIu64
                    ")",
                    c->label, start, c->size);
            return -EINVAL;
        }
    }
    g->data_offset = start;
    uint64_t run = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        struct qfs_ggufr_tensor *t = &g->tensors[i];
        if (t->offset != run) {
            qfs_err("%s: tensor %s: offset %" PRIu64 ", expected %" PRIu64, c->label, t->name,
                    t->offset, run);
            return -EINVAL;
        }
        uint64_t padded, rem = t->nbytes % g->alignment;
        if (__builtin_add_overflow(t->nbytes, rem ? g->alignment - rem : 0, &padded) ||
            __builtin_add_overflow(run, padded, &run)) {
            qfs_err("%s: tensor %s: data section size overflows", c->label, t->name);
            return -EINVAL;
        }
        if (run > c->size - start) {
            qfs_err("%s: truncated GGUF: tensor %s (%" PRIu64 " bytes padded at offset %" PRIu64
                    ") ends beyond the file (%" PRIu64 " bytes)",
                    c->label, t->name, padded, start + t->offset, c->size);
            return -EINVAL;
        }
        t->data = c->buf + start + t->offset;
    }
    return 0;
}

int qfs_ggufr_parse(const char *label, const uint8_t *buf, uint64_t size, struct qfs_ggufr **out)
{
    int r = -ENOMEM;
    struct qfs_ggufr *g = calloc(1, sizeof *g);
    if (!g || !(g->label = strdup(label))) {
        qfs_err("%s: out of memory", label);
        goto fail;
    }
    g->buf = buf;
    g->size = size;
    struct cur c = {.label = g->label, .buf = buf, .size = size, .pos = 0};
    r = parse_header(&c, g);
    if (r < 0)
        goto fail;
    r = parse_kvs(&c, g);
    if (r < 0)
        goto fail;
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->tensors) {
        qfs_err("%s: out of memory", label);
        r = -ENOMEM;
        goto fail;
    }
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        r = parse_tensor_info(&c, &g->tensors[i], i);
        if (r < 0)
            goto fail;
    }
    r = sort_index(g, g->n_tensors, false, &g->t_sorted);
    if (r < 0)
        goto fail;
    r = place_tensors(&c, g);
    if (r < 0)
        goto fail;
    *out = g;
    return 0;
fail:
    qfs_ggufr_close(g);
    return r;
}

int qfs_ggufr_open(const char *path, struct qfs_ggufr **out)
{
    void *map;
    uint64_t size;
    int r = qfs_map_file(path, "a GGUF file", 4, &map, &size);
    if (r < 0)
        return r;
    struct qfs_ggufr *g;
    r = qfs_ggufr_parse(path, map, size, &g);
    if (r < 0) {
        qfs_unmap_file(map, size);
        return r;
    }
    g->map = map;
    *out = g;
    return 0;
}

void qfs_ggufr_close(struct qfs_ggufr *g)
{
    if (!g)
        return;
    if (g->kv)
        for (uint64_t i = 0; i < g->n_kv; i++)
            free(g->kv[i].key);
    if (g->tensors)
        for (uint64_t i = 0; i < g->n_tensors; i++)
            free(g->tensors[i].name);
    free(g->kv);
    free(g->tensors);
    free(g->kv_sorted);
    free(g->t_sorted);
    qfs_unmap_file(g->map, g->size);
    free(g->label);
    free(g);
}

const struct qfs_ggufr_kv *qfs_ggufr_find_kv(const struct qfs_ggufr *g, const char *key)
{
    uint64_t lo = 0, hi = g->kv_sorted ? g->n_kv : 0;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const struct qfs_ggufr_kv *kv = &g->kv[g->kv_sorted[mid]];
        int c = strcmp(key, kv->key);
        if (c == 0)
            return kv;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}

const struct qfs_ggufr_tensor *qfs_ggufr_find_tensor(const struct qfs_ggufr *g, const char *name)
{
    uint64_t lo = 0, hi = g->t_sorted ? g->n_tensors : 0;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        const struct qfs_ggufr_tensor *t = &g->tensors[g->t_sorted[mid]];
        int c = strcmp(name, t->name);
        if (c == 0)
            return t;
        if (c < 0)
            hi = mid;
        else
            lo = mid + 1;
    }
    return NULL;
}
