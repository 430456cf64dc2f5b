/* Safetensors outputs shared by the formats (contract and layout: stout.h). */
#include "stout.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/json_file.h"
#include "../util/log.h"
#include "format.h"

/* Output chunks of about this many bytes (part of the keys through the row range). */
#define CHUNK_TARGET (1u << 20)

static const struct {
    const char *name;
    int size;
} dtypes[] = {
    [QFS_SO_F32] = {"F32", 4}, [QFS_SO_F16] = {"F16", 2},     [QFS_SO_BF16] = {"BF16", 2},
    [QFS_SO_I32] = {"I32", 4}, [QFS_SO_U32] = {"U32", 4},     [QFS_SO_I64] = {"I64", 8},
    [QFS_SO_F8_E4M3] = {"F8_E4M3", 1},
};

const char *qfs_stout_dtype_name(enum qfs_stout_dtype t) { return dtypes[t].name; }
int qfs_stout_dtype_size(enum qfs_stout_dtype t) { return dtypes[t].size; }

enum qfs_stout_dtype qfs_stout_of_dtype(enum qfs_dtype dt)
{
    return dt == QFS_DT_F32 ? QFS_SO_F32 : dt == QFS_DT_F16 ? QFS_SO_F16 : QFS_SO_BF16;
}

int qfs_stout_add(struct qfs_stout_list *l, char *name, int n_dims, const int64_t *shape,
                  const struct qfs_stout_src *s)
{
    if (!name)
        return -ENOMEM;
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        void *p = realloc(l->t, (size_t)cap * sizeof *l->t);
        if (!p) {
            free(name);
            return -ENOMEM;
        }
        l->t = p;
        l->cap = cap;
    }
    struct qfs_stout_tensor *t = &l->t[l->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->n_dims = n_dims;
    memcpy(t->shape, shape, (size_t)n_dims * sizeof *shape);
    t->row_elems = n_dims ? shape[n_dims - 1] : 1;
    t->nrows = 1;
    for (int d = 0; d + 1 < n_dims; d++)
        t->nrows *= shape[d];
    t->s = *s;
    return 0;
}

void qfs_stout_list_free(struct qfs_stout_list *l)
{
    for (int i = 0; i < l->n; i++)
        free(l->t[i].name);
    free(l->t);
    memset(l, 0, sizeof *l);
}

static uint64_t nbytes(const struct qfs_stout_tensor *t)
{
    return (uint64_t)t->nrows * (uint64_t)t->row_elems * (uint64_t)qfs_stout_dtype_size(t->s.dtype);
}

static int cmp_out(const void *a, const void *b)
{
    const struct qfs_stout_tensor *x = a, *y = b;
    int ax = nbytes(x) % 8 != 0, ay = nbytes(y) % 8 != 0;
    if (ax != ay)
        return ax - ay;
    return strcmp(x->name, y->name);
}

/* The file's state: the tensors' sources, which the vtensors point at. */
struct stout_state {
    struct qfs_stout_src *src;
};

static void state_free(void *p)
{
    struct stout_state *st = p;
    if (st)
        free(st->src);
    free(st);
}

static int so_produce(const struct qfs_vtensor *t, int64_t chunk, uint8_t *dst)
{
    int64_t row0;
    const int64_t n = qfs_vtensor_chunk_rows(t, chunk, &row0);
    const struct qfs_stout_src *s = t->codec;
    return s->produce(s, row0, n, dst);
}

static int so_key(const struct qfs_vfile *vf, const struct qfs_vtensor *t, int64_t chunk,
                  struct qfs_cache_key *key)
{
    (void)vf;
    int64_t row0;
    const int64_t n = qfs_vtensor_chunk_rows(t, chunk, &row0);
    return qfs_stout_key(t->codec, row0, n, key);
}

static const struct qfs_vtensor_ops so_ops = {.produce = so_produce, .key = so_key};

int qfs_stout_build(const struct qfs_model *m, const char *name, const struct qfs_format *fmt,
                    const char *variant, const char *meta_format, struct qfs_stout_list *l,
                    struct qfs_vfile **out)
{
    int rc = -ENOMEM;
    json_t *root = NULL;
    char *hdr = NULL;
    struct qfs_vfile *vf = calloc(1, sizeof *vf);
    struct stout_state *st = calloc(1, sizeof *st);
    if (!vf || !st) {
        free(vf);
        free(st);
        qfs_stout_list_free(l);
        return -ENOMEM;
    }
    vf->fmt = fmt;
    vf->codec_version = fmt->version;
    vf->cache_codec = fmt->cache_codec;
    vf->codec_state = st;
    vf->codec_state_free = state_free;
    if (!(vf->name = strdup(name)) || !(vf->variant = strdup(variant)))
        goto fail;
    qsort(l->t, (size_t)l->n, sizeof *l->t, cmp_out);
    /* No gap is allowed, so alignment holds only while sizes are multiples of 8: a tensor
     * that is not may only come last among those (cmp_out puts them last). */
    for (int i = 0; i + 1 < l->n; i++) {
        if (nbytes(&l->t[i]) % 8) {
            qfs_err("%s: not offering %s: tensor %s has %" PRIu64 " bytes, not a multiple of 8 "
                    "(its offset in the file could not be aligned)", m->dir, name, l->t[i].name,
                    nbytes(&l->t[i]));
            rc = -EINVAL;
            goto fail;
        }
    }
    root = json_object();
    if (!root || json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", meta_format)))
        goto fail;
    uint64_t off = 0;
    for (int i = 0; i < l->n; i++) {
        const struct qfs_stout_tensor *t = &l->t[i];
        json_t *shape = json_array();
        if (!shape)
            goto fail;
        for (int d = 0; d < t->n_dims; d++)
            if (json_array_append_new(shape, json_integer(t->shape[d])))
                goto fail_shape;
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", qfs_stout_dtype_name(t->s.dtype),
                              "shape", shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + nbytes(t)));
        shape = NULL;
        if (!e || json_object_set_new(root, t->name, e))
            goto fail;
        off += nbytes(t);
        continue;
    fail_shape:
        json_decref(shape);
        goto fail;
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!hdr)
        goto fail;
    const size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    vf->head_len = 8 + padded;
    vf->size = vf->head_len + off;
    vf->head = malloc(vf->head_len);
    vf->tensors = calloc((size_t)l->n + 1, sizeof *vf->tensors);
    st->src = calloc((size_t)l->n + 1, sizeof *st->src);
    if (!vf->head || !vf->tensors || !st->src)
        goto fail;
    for (int i = 0; i < 8; i++)
        vf->head[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(vf->head + 8, hdr, hl);
    memset(vf->head + 8 + hl, ' ', padded - hl);
    off = vf->head_len;
    for (int i = 0; i < l->n; i++) {
        struct qfs_stout_tensor *o = &l->t[i];
        struct qfs_vtensor *t = &vf->tensors[vf->n_tensors++];
        st->src[i] = o->s;
        t->name = o->name;
        o->name = NULL;
        t->n_dims = o->n_dims;
        for (int d = 0; d < 4; d++)
            t->ne[d] = d < o->n_dims ? o->shape[o->n_dims - 1 - d] : 1;
        t->type = o->s.dtype == QFS_SO_F16 ? QFS_TYPE_F16 : QFS_TYPE_F32; /* width only */
        t->nrows = o->nrows;
        t->row_elems = o->row_elems;
        t->row_bytes = (uint64_t)o->row_elems * (uint64_t)qfs_stout_dtype_size(o->s.dtype);
        t->offset = off;
        t->nbytes = nbytes(o);
        int64_t rpc = o->rows_per_chunk;
        if (rpc <= 0)
            rpc = t->row_bytes > 0 && t->row_bytes < CHUNK_TARGET
                      ? (int64_t)(CHUNK_TARGET / t->row_bytes) : 1;
        qfs_vtensor_set_chunks(t, rpc);
        t->ops = &so_ops;
        t->codec = &st->src[i];
        off += t->nbytes;
    }
    free(hdr);
    json_decref(root);
    qfs_stout_list_free(l);
    *out = vf;
    return 0;
fail:
    free(hdr);
    json_decref(root);
    qfs_stout_list_free(l);
    qfs_vfile_free(vf);
    return rc;
}

int qfs_stout_key(const struct qfs_stout_src *s, int64_t row0, int64_t n, struct qfs_cache_key *key)
{
    struct qfs_cache_key h;
    qfs_src_memo_hash(s->memo, s->src, &h);
    struct qfs_cache_keybuf kb;
    qfs_keybuf_init(&kb);
    int rc = qfs_keybuf_add(&kb, "quantfs-stout-chunk", 19);
    rc |= qfs_keybuf_add(&kb, s->tag, strlen(s->tag));
    rc |= qfs_keybuf_add_u64(&kb, s->version);
    rc |= qfs_keybuf_add(&kb, h.b, sizeof h.b);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)s->src->dtype);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)s->src->n_dims);
    for (int d = 0; d < s->src->n_dims; d++)
        rc |= qfs_keybuf_add_u64(&kb, (uint64_t)s->src->shape[d]);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)s->kind);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)s->group);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)s->bits);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)s->dtype);
    rc |= qfs_keybuf_add_u64(&kb, s->imatrix != NULL);
    if (s->imatrix)
        rc |= qfs_keybuf_add(&kb, s->imatrix_hash.b, sizeof s->imatrix_hash.b);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)row0);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)n);
    qfs_keybuf_finish(&kb, key);
    return rc ? -ENOMEM : 0;
}

int qfs_stout_copy(const struct qfs_stout_src *s, int64_t row0, int64_t n, uint8_t *dst)
{
    const struct qfs_st_tensor *src = s->src;
    const int64_t ne = src->n_dims ? src->shape[src->n_dims - 1] : 1;
    const size_t esz = qfs_dtype_size(src->dtype);
    const uint8_t *p = src->data + (uint64_t)row0 * (uint64_t)ne * esz;
    if (qfs_stout_of_dtype(src->dtype) == s->dtype) {
        memcpy(dst, p, (size_t)(n * ne) * esz);
        return 0;
    }
    float *f = malloc((size_t)ne * sizeof *f + 1);
    if (!f)
        return -ENOMEM;
    const int osz = qfs_stout_dtype_size(s->dtype);
    for (int64_t r = 0; r < n; r++) {
        qfs_to_f32(src->dtype, p + (uint64_t)r * (uint64_t)ne * esz, f, ne);
        uint8_t *o = dst + (uint64_t)r * (uint64_t)ne * (uint64_t)osz;
        for (int64_t j = 0; j < ne; j++) {
            if (s->dtype == QFS_SO_F32) {
                memcpy(o + 4 * j, &f[j], 4);
            } else {
                const uint16_t h = s->dtype == QFS_SO_F16 ? qfs_f32_to_f16(f[j]) : qfs_f32_to_bf16(f[j]);
                o[2 * j] = (uint8_t)h;
                o[2 * j + 1] = (uint8_t)(h >> 8);
            }
        }
    }
    free(f);
    return 0;
}

void qfs_stout_read(const struct qfs_st_tensor *src, int64_t r0, int64_t r1, int64_t c0,
                    int64_t c1, float *dst)
{
    const int64_t in = src->shape[1];
    const size_t esz = qfs_dtype_size(src->dtype);
    for (int64_t r = r0; r < r1; r++)
        qfs_to_f32(src->dtype, src->data + ((uint64_t)r * (uint64_t)in + (uint64_t)c0) * esz,
                   dst + (r - r0) * (c1 - c0), c1 - c0);
}

int qfs_stout_config(const struct qfs_model *m, const char *key, json_t *block,
                     const char *torch_dtype, char **buf, size_t *len)
{
    char *path = NULL;
    json_t *root = NULL;
    if (asprintf(&path, "%s/config.json", m->dir) < 0) {
        json_decref(block);
        return -ENOMEM;
    }
    int rc = qfs_json_load(path, QFS_JSON_MAX_CONFIG, JSON_REJECT_DUPLICATES, &root);
    if (rc == 0 && !json_is_object(root)) {
        qfs_err("%s: not a JSON object", path);
        rc = -EINVAL;
    }
    free(path);
    if (rc < 0) {
        json_decref(root);
        json_decref(block);
        return rc == -ENOMEM ? rc : -EINVAL;
    }
    rc = -ENOMEM;
    if (!block || json_object_set_new(root, key, block))
        goto out;
    if (torch_dtype && json_object_set_new(root, "torch_dtype", json_string(torch_dtype)))
        goto out;
    char *s = json_dumps(root, JSON_INDENT(2));
    if (!s)
        goto out;
    *len = strlen(s);
    *buf = s;
    rc = 0;
out:
    json_decref(root);
    return rc;
}

int qfs_stout_offer_dir(struct qfs_model *m, const struct qfs_format *fmt, const char *suffix,
                        struct qfs_vfile *weights, bool listed, char *cfg, size_t cfg_len)
{
    char *dname = NULL;
    struct qfs_vfile *cf = qfs_vfile_from_bytes("config.json", fmt, cfg, cfg_len);
    if (!cf) {
        qfs_vfile_free(weights);
        return -ENOMEM;
    }
    const int wi = qfs_model_add_file(m, weights, listed);
    if (wi < 0) {
        qfs_vfile_free(cf);
        return wi;
    }
    const int ci = qfs_model_add_file(m, cf, false);
    if (ci < 0)
        return ci;
    if (asprintf(&dname, "%s.%s", m->name, suffix) < 0)
        return -ENOMEM;
    static const char *const names[2] = {"config.json", "model.safetensors"};
    const int files[2] = {ci, wi};
    int rc = qfs_model_add_dir(m, dname, fmt, 2, names, files);
    free(dname);
    return rc;
}

void qfs_stout_put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

void qfs_stout_put_float(uint8_t *p, enum qfs_stout_dtype t, float v)
{
    if (t == QFS_SO_F32)
        memcpy(p, &v, 4);
    else
        qfs_stout_put_le(p, t == QFS_SO_F16 ? qfs_f32_to_f16(v) : qfs_f32_to_bf16(v), 2);
}

char *qfs_stout_renamed(const char *name, const char *suffix)
{
    char *r = NULL;
    const size_t n = strlen(name) - strlen(".weight");
    return asprintf(&r, "%.*s%s", (int)n, name, suffix) < 0 ? NULL : r;
}

bool qfs_stout_is_linear(const struct qfs_st_tensor *s)
{
    const char *pre = "model.layers.";
    size_t n = strlen(s->name);
    if (s->n_dims != 2 || strncmp(s->name, pre, strlen(pre)) || n < 7 ||
        strcmp(s->name + n - 7, ".weight"))
        return false;
    const char *p = s->name + strlen(pre);
    while (*p >= '0' && *p <= '9')
        p++;
    return p > s->name + strlen(pre) && *p == '.';
}

bool qfs_stout_is_moe(const struct qfs_model *m)
{
    for (int i = 0; i < m->gt.n; i++)
        if (m->gt.t[i].src.n > 1)
            return true;
    return false;
}

const float *qfs_stout_imatrix(const struct qfs_model *m, const struct qfs_st_tensor *hf,
                               struct qfs_cache_key *hash)
{
    if (!m->imatrix)
        return NULL;
    char *gname = qfs_arch_gguf_name(m->cfg.arch, hf->name);
    if (!gname)
        return NULL;
    const struct qfs_imatrix_entry *e = qfs_imatrix_find(m->imatrix, gname);
    free(gname);
    if (!e || e->n != hf->shape[hf->n_dims - 1])
        return NULL;
    qfs_hash128(e->values, (size_t)e->n * sizeof *e->values, hash);
    return e->values;
}

int qfs_stout_offer(struct qfs_model *m, const struct qfs_stout_plan *p, int g)
{
    if (qfs_stout_is_moe(m)) {
        qfs_info("%s: not offering %s: mixture-of-experts models are not served in this "
                 "format", m->dir, p->fmt->name);
        return 1;
    }
    const struct qfs_st_model *stm = m->st;
    struct qfs_stout_list l = {0};
    int rc = 0;
    for (int i = 0; i < stm->n_tensors && rc == 0; i++) {
        const struct qfs_st_tensor *s = &stm->tensors[i];
        size_t nl = strlen(s->name);
        if (nl >= 19 && !strcmp(s->name + nl - 19, "rotary_emb.inv_freq"))
            continue; /* a buffer, not a parameter */
        if (p->quantizes(s)) {
            const char *why = p->unfit(s, g);
            if (why) {
                qfs_info("%s: not offering %s: tensor %s [%lld, %lld] %s (group size %d)",
                         m->dir, p->fmt->name, s->name, (long long)s->shape[0],
                         (long long)s->shape[1], why, g);
                qfs_stout_list_free(&l);
                return 1;
            }
            rc = p->add(m, i, g, &l);
            continue;
        }
        const struct qfs_stout_src src = {
            .src = s, .memo = &m->memos[i], .tag = p->fmt->name, .version = p->fmt->version,
            .dtype = p->to_f16 ? QFS_SO_F16 : qfs_stout_of_dtype(s->dtype),
            .produce = qfs_stout_copy};
        int64_t shape[4] = {1};
        for (int d = 0; d < s->n_dims && d < 4; d++)
            shape[d] = s->shape[d];
        if (s->n_dims > 4) {
            qfs_info("%s: not offering %s: tensor %s has %d dimensions", m->dir, p->fmt->name,
                     s->name, s->n_dims);
            qfs_stout_list_free(&l);
            return 1;
        }
        rc = qfs_stout_add(&l, strdup(s->name), s->n_dims, shape, &src);
    }
    if (rc < 0) {
        qfs_stout_list_free(&l);
        return rc;
    }
    char *name = NULL, *cfg = NULL;
    size_t len = 0;
    struct qfs_vfile *vf = NULL;
    if (asprintf(&name, "%s.%s.safetensors", m->name, p->suffix) < 0) {
        qfs_stout_list_free(&l);
        return -ENOMEM;
    }
    rc = qfs_stout_build(m, name, p->fmt, p->variant, p->meta_format, &l, &vf);
    free(name);
    if (rc < 0)
        return rc == -ENOMEM ? rc : 1; /* logged */
    if ((rc = p->config(m, g, &cfg, &len)) < 0) {
        qfs_vfile_free(vf);
        return rc == -ENOMEM ? rc : 1; /* logged */
    }
    return qfs_stout_offer_dir(m, p->fmt, p->suffix, vf, false, cfg, len);
}
