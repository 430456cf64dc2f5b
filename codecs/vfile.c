/* Producing the bytes of a tensor chunk, and the chunk's identity (cache key). */
#include "vfile.h"

#include "../kernels/dispatch.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <sys/stat.h>

static _Atomic(struct qfs_cache *) hash_store;

void qfs_vfile_set_hash_store(struct qfs_cache *c)
{
    atomic_store(&hash_store, c);
}

void qfs_vfile_free(struct qfs_vfile *vf)
{
    if (!vf)
        return;
    for (int i = 0; i < vf->n_tensors; i++)
        free(vf->tensors[i].name);
    free(vf->tensors);
    if (vf->codec_state_free)
        vf->codec_state_free(vf->codec_state);
    free(vf->head);
    free(vf->name);
    free(vf->variant);
    free(vf);
}

void qfs_vfile_head_read(const struct qfs_vfile *vf, uint64_t pos, uint64_t n, uint8_t *dst)
{
    const uint64_t a = vf->head_shared ? vf->head_shared_at : vf->head_len;
    const uint64_t b = vf->head_shared ? a + vf->head_shared_len : vf->head_len;
    const uint64_t end = pos + n;
    if (pos < a) { /* before the shared part */
        const uint64_t k = (end < a ? end : a) - pos;
        memcpy(dst, vf->head + pos, k);
        dst += k;
        pos += k;
    }
    if (pos < end && pos < b) { /* in it */
        const uint64_t k = (end < b ? end : b) - pos;
        memcpy(dst, vf->head_shared + (pos - a), k);
        dst += k;
        pos += k;
    }
    if (pos < end) /* after it: stored right after the part before */
        memcpy(dst, vf->head + (pos - (b - a)), end - pos);
}

struct qfs_vfile *qfs_vfile_from_bytes(const char *name, const struct qfs_format *fmt, char *buf,
                                       size_t len)
{
    struct qfs_vfile *vf = calloc(1, sizeof *vf);
    if (!vf || !(vf->name = strdup(name))) {
        free(vf);
        free(buf);
        return NULL;
    }
    vf->fmt = fmt;
    vf->head = (uint8_t *)buf;
    vf->head_len = len;
    vf->size = len;
    return vf;
}

static int64_t group_rows(const struct qfs_vtensor *t)
{
    return t->group_rows > 0 ? t->group_rows : t->nrows;
}

static int64_t chunks_per_group(const struct qfs_vtensor *t)
{
    const int64_t g = group_rows(t);
    return g > 0 ? (g + t->rows_per_chunk - 1) / t->rows_per_chunk : 0;
}

void qfs_vtensor_set_chunks(struct qfs_vtensor *t, int64_t rows_per_chunk)
{
    t->rows_per_chunk = rows_per_chunk > 0 ? rows_per_chunk : 1;
    const int64_t g = group_rows(t);
    t->n_chunks = g > 0 ? t->nrows / g * chunks_per_group(t) : 0;
}

int64_t qfs_vtensor_chunk_rows(const struct qfs_vtensor *t, int64_t chunk, int64_t *row0)
{
    const int64_t g = group_rows(t), cpg = chunks_per_group(t);
    const int64_t in = (chunk % cpg) * t->rows_per_chunk;
    *row0 = chunk / cpg * g + in;
    return g - in < t->rows_per_chunk ? g - in : t->rows_per_chunk;
}

uint64_t qfs_vtensor_chunk_bytes(const struct qfs_vtensor *t, int64_t chunk)
{
    int64_t row0;
    return (uint64_t)qfs_vtensor_chunk_rows(t, chunk, &row0) * t->row_bytes;
}

int64_t qfs_vtensor_chunk_at(const struct qfs_vtensor *t, uint64_t rel, uint64_t *start)
{
    const uint64_t gbytes = (uint64_t)group_rows(t) * t->row_bytes;
    const uint64_t cbytes = (uint64_t)t->rows_per_chunk * t->row_bytes;
    const uint64_t g = rel / gbytes, in = (rel - g * gbytes) / cbytes;
    *start = g * gbytes + in * cbytes;
    return (int64_t)(g * (uint64_t)chunks_per_group(t) + in);
}

/* The converter's q/k permutation for llama: within each head of hd rows, output row
 * 2*i + j comes from source row j*hd/2 + i (rotary pairs interleaved). */
static int64_t src_row(const struct qfs_vsrc *vs, int64_t r)
{
    if (vs->xform != QFS_XF_PERMUTE_QK)
        return r;
    const int64_t hd = vs->rows / vs->xform_heads;
    const int64_t h = r / hd, rem = r % hd;
    return h * hd + (rem % 2) * (hd / 2) + rem / 2;
}

void qfs_vtensor_src_rows(const struct qfs_vtensor *t, int64_t chunk, const uint8_t **rows,
                          const float **imatrix)
{
    const struct qfs_vsrc *vs = t->vs;
    int64_t row0;
    const int64_t n = qfs_vtensor_chunk_rows(t, chunk, &row0);
    const int64_t g = row0 / group_rows(t), r0 = row0 % group_rows(t);
    const uint64_t rb = (uint64_t)vs->row_elems * qfs_dtype_size(vs->dtype);
    for (int64_t r = 0; r < n; r++)
        rows[r] = vs->t[g]->data + (uint64_t)src_row(vs, r0 + r) * rb;
    *imatrix = t->imatrix ? t->imatrix + g * t->row_elems : NULL;
}

void qfs_vtensor_hint(const struct qfs_vtensor *t, int64_t chunk)
{
    const struct qfs_vsrc *vs = t->vs;
    if (t->ops || !vs || chunk < 0 || chunk >= t->n_chunks)
        return;
    int64_t row0;
    const int64_t n = qfs_vtensor_chunk_rows(t, chunk, &row0);
    const int64_t g = row0 / group_rows(t);
    int64_t lo = row0 % group_rows(t), hi = lo + n;
    if (lo == 0) {
        hi = vs->rows;
    } else if (vs->xform == QFS_XF_PERMUTE_QK) { /* rows move within their head only */
        const int64_t hd = vs->rows / vs->xform_heads;
        lo = lo / hd * hd;
        hi = (hi + hd - 1) / hd * hd;
    }
    const uint64_t rb = (uint64_t)vs->row_elems * qfs_dtype_size(vs->dtype);
    const long pg = sysconf(_SC_PAGESIZE);
    const uintptr_t page = pg > 0 ? (uintptr_t)pg : 4096u;
    const uintptr_t a = (uintptr_t)(vs->t[g]->data + (uint64_t)lo * rb) & ~(page - 1);
    const uintptr_t b = (uintptr_t)(vs->t[g]->data + (uint64_t)hi * rb);
    if (b > a)
        (void)madvise((void *)a, b - a, MADV_WILLNEED);
}

bool qfs_vfile_next_chunk(const struct qfs_vfile *vf, const struct qfs_vtensor **t, int64_t *c,
                          bool across)
{
    const struct qfs_vtensor *end = vf->tensors + vf->n_tensors;
    while (++*c >= (*t)->n_chunks) {
        if (!across || ++*t >= end)
            return false;
        *c = -1;
    }
    return true;
}

static enum qfs_type dtype_as_type(enum qfs_dtype dt)
{
    return dt == QFS_DT_F32 ? QFS_TYPE_F32 : dt == QFS_DT_F16 ? QFS_TYPE_F16 : QFS_TYPE_BF16;
}

uint32_t qfs_vfile_cache_tag(const struct qfs_vfile *vf)
{
    return QFS_CACHE_TAG(vf->cache_codec ? vf->cache_codec : QFS_CODEC_GGUF, vf->codec_version);
}

/* Rows with vs->add applied, as F32: the converter adds in F16 for an F16 source (the
 * sum rounded to F16), in F32 otherwise (it widens BF16 to F32 first). */
static float *rows_added(const struct qfs_vsrc *vs, const uint8_t **rows, int64_t n)
{
    const int64_t ne = vs->row_elems;
    float *buf = malloc((size_t)(n * ne) * sizeof *buf + 1);
    if (!buf)
        return NULL;
    for (int64_t r = 0; r < n; r++) {
        float *o = buf + r * ne;
        qfs_to_f32(vs->dtype, rows[r], o, ne);
        for (int64_t i = 0; i < ne; i++) {
            o[i] = o[i] + vs->add;
            if (vs->dtype == QFS_DT_F16)
                o[i] = qfs_f16_to_f32(qfs_f32_to_f16(o[i]));
        }
    }
    return buf;
}

int qfs_vtensor_produce(const struct qfs_vtensor *t, int64_t chunk, uint8_t *dst)
{
    if (t->ops)
        return t->ops->produce(t, chunk, dst);
    const struct qfs_vsrc *vs = t->vs;
    int64_t row0;
    const int64_t nrows = qfs_vtensor_chunk_rows(t, chunk, &row0);
    const uint8_t **rows = malloc((size_t)nrows * sizeof *rows + 1);
    if (!rows)
        return -ENOMEM;
    const float *im;
    qfs_vtensor_src_rows(t, chunk, rows, &im);
    int rc = 0;
    if (vs->add != 0.0f) {
        float *f = rows_added(vs, rows, nrows);
        if (!f) {
            free(rows);
            return -ENOMEM;
        }
        if (t->type == QFS_TYPE_F32) {
            memcpy(dst, f, (size_t)(nrows * t->row_elems) * sizeof *f);
        } else {
            for (int64_t r = 0; r < nrows; r++)
                rows[r] = (const uint8_t *)(f + r * t->row_elems);
            rc = qfs_quantize_rows_dev(t->type, QFS_DT_F32, rows, nrows, t->row_elems, im, dst);
        }
        free(f);
    } else if (dtype_as_type(vs->dtype) == t->type) { /* same representation: copy rows */
        for (int64_t r = 0; r < nrows; r++)
            memcpy(dst + (uint64_t)r * t->row_bytes, rows[r], t->row_bytes);
    } else {
        /* widen + quantize on the chosen device (kernels/dispatch.h): the GPU for large
         * chunks when there is one, else (and on any CUDA error) the CPU, same bytes */
        rc = qfs_quantize_rows_dev(t->type, vs->dtype, rows, nrows, t->row_elems, im, dst);
    }
    free(rows);
    return rc;
}

/* The file a memo's tensor lives in still has the identity it was described with. */
static int shard_unchanged(const struct qfs_st_shard *sh)
{
    struct stat st;
    return fstat(sh->fd, &st) == 0 && qfs_st_identity_eq(sh, &st);
}

void qfs_src_memo_hash(struct qfs_src_memo *m, const struct qfs_st_tensor *src,
                       struct qfs_cache_key *out)
{
    pthread_mutex_lock(&m->lock);
    if (!m->done) { /* hashing under the lock: concurrent first users wait for one hash */
        struct qfs_cache *store = atomic_load(&hash_store);
        struct qfs_file_id id = {0};
        if (m->shard)
            qfs_st_file_id(m->shard, &id);
        if (!store || !m->shard ||
            qfs_cache_srchash_get(store, &id, src->file_offset, src->nbytes, &m->hash) < 0) {
            qfs_hash128(src->data, src->nbytes, &m->hash);
            /* Remember it only if the file is still the one described: a rewrite during
             * the hash would otherwise file new bytes' hash under the old identity. */
            if (store && m->shard && shard_unchanged(m->shard))
                qfs_cache_srchash_put(store, &id, src->file_offset, src->nbytes, &m->hash);
        }
        m->done = 1;
    }
    *out = m->hash;
    pthread_mutex_unlock(&m->lock);
}

int qfs_vtensor_key(const struct qfs_vfile *vf, const struct qfs_vtensor *t, int64_t chunk,
                    struct qfs_cache_key *key)
{
    if (t->ops)
        return t->ops->key(vf, t, chunk, key);
    const struct qfs_vsrc *vs = t->vs;
    int64_t row0;
    const int64_t nrows = qfs_vtensor_chunk_rows(t, chunk, &row0);
    const int64_t g = row0 / group_rows(t);
    const struct qfs_st_tensor *src = vs->t[g];
    struct qfs_cache_key sh;
    qfs_src_memo_hash(vs->memo[g], src, &sh);

    struct qfs_cache_keybuf kb;
    qfs_keybuf_init(&kb);
    int rc = 0;
    rc |= qfs_keybuf_add(&kb, "quantfs-gguf-chunk", 18);
    rc |= qfs_keybuf_add_u64(&kb, vf->codec_version);
    rc |= qfs_keybuf_add(&kb, sh.b, sizeof sh.b);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)src->dtype);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)src->n_dims);
    for (int d = 0; d < src->n_dims; d++)
        rc |= qfs_keybuf_add_u64(&kb, (uint64_t)src->shape[d]);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)vs->xform);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)vs->xform_heads);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->type);
    rc |= qfs_keybuf_add_u64(&kb, t->imatrix != NULL);
    if (t->imatrix)
        rc |= qfs_keybuf_add(&kb, t->imatrix_hash.b, sizeof t->imatrix_hash.b);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->row_elems);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)row0);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)nrows);
    /* Stacking and the element transform; absent for a plain tensor, whose key is then
     * the same as before they existed (caches stay valid). */
    if (vs->n != 1 || vs->add != 0.0f) {
        uint32_t addbits;
        memcpy(&addbits, &vs->add, sizeof addbits);
        rc |= qfs_keybuf_add(&kb, "stack+add", 9);
        rc |= qfs_keybuf_add_u64(&kb, (uint64_t)vs->n);
        rc |= qfs_keybuf_add_u64(&kb, (uint64_t)g);
        rc |= qfs_keybuf_add_u64(&kb, (uint64_t)vs->rows);
        rc |= qfs_keybuf_add_u64(&kb, addbits);
    }
    qfs_keybuf_finish(&kb, key);
    return rc ? -ENOMEM : 0;
}
