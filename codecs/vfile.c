/* Producing the bytes of a tensor chunk, and the chunk's identity (cache key). */
#include "vfile.h"

#include "../kernels/dispatch.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
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
    free(vf);
}

static int64_t chunk_rows(const struct qfs_vtensor *t, int64_t chunk, int64_t *row0)
{
    *row0 = chunk * t->rows_per_chunk;
    int64_t n = t->nrows - *row0;
    return n < t->rows_per_chunk ? n : t->rows_per_chunk;
}

uint64_t qfs_vtensor_chunk_bytes(const struct qfs_vtensor *t, int64_t chunk)
{
    int64_t row0;
    return (uint64_t)chunk_rows(t, chunk, &row0) * t->row_bytes;
}

/* The converter's q/k permutation for llama: within each head of hd rows, output row
 * 2*i + j comes from source row j*hd/2 + i (rotary pairs interleaved). */
int64_t qfs_vtensor_src_row(const struct qfs_vtensor *t, int64_t r)
{
    if (t->xform != QFS_XF_PERMUTE_QK)
        return r;
    const int64_t hd = t->nrows / t->xform_heads;
    const int64_t h = r / hd, rem = r % hd;
    return h * hd + (rem % 2) * (hd / 2) + rem / 2;
}

static enum qfs_type dtype_as_type(enum qfs_dtype dt)
{
    return dt == QFS_DT_F32 ? QFS_TYPE_F32 : dt == QFS_DT_F16 ? QFS_TYPE_F16 : QFS_TYPE_BF16;
}

uint32_t qfs_vfile_cache_tag(const struct qfs_vfile *vf)
{
    return QFS_CACHE_TAG(vf->cache_codec ? vf->cache_codec : QFS_CODEC_GGUF, vf->codec_version);
}

int qfs_vtensor_produce(const struct qfs_vtensor *t, int64_t chunk, uint8_t *dst)
{
    if (t->ops)
        return t->ops->produce(t, chunk, dst);
    int64_t row0;
    const int64_t nrows = chunk_rows(t, chunk, &row0);
    const size_t esz = qfs_dtype_size(t->src->dtype);
    const uint64_t src_row_bytes = (uint64_t)t->row_elems * esz;

    if (dtype_as_type(t->src->dtype) == t->type) { /* same representation: copy rows */
        for (int64_t r = 0; r < nrows; r++)
            memcpy(dst + (uint64_t)r * t->row_bytes,
                   t->src->data + (uint64_t)qfs_vtensor_src_row(t, row0 + r) * src_row_bytes,
                   t->row_bytes);
        return 0;
    }
    /* widen + quantize on the chosen device (kernels/dispatch.h): the GPU for large
     * chunks when there is one, else (and on any CUDA error) the CPU, same bytes */
    const uint8_t **rows = malloc((size_t)nrows * sizeof *rows);
    if (!rows)
        return -ENOMEM;
    for (int64_t r = 0; r < nrows; r++)
        rows[r] = t->src->data + (uint64_t)qfs_vtensor_src_row(t, row0 + r) * src_row_bytes;
    int rc = qfs_quantize_rows_dev(t->type, t->src->dtype, rows, nrows, t->row_elems,
                                   t->imatrix, dst);
    free(rows);
    return rc;
}

void qfs_src_memo_hash(struct qfs_src_memo *m, const struct qfs_st_tensor *src,
                       struct qfs_cache_key *out)
{
    pthread_mutex_lock(&m->lock);
    if (!m->done) { /* hashing under the lock: concurrent first users wait for one hash */
        struct qfs_cache *store = atomic_load(&hash_store);
        struct qfs_file_id id = {0};
        if (m->shard) {
            id = (struct qfs_file_id){.dev = (uint64_t)m->shard->dev,
                                      .ino = (uint64_t)m->shard->ino,
                                      .size = m->shard->size,
                                      .mtime_ns = m->shard->mtime_ns};
        }
        if (!store || !m->shard ||
            qfs_cache_srchash_get(store, &id, src->file_offset, src->nbytes, &m->hash) < 0) {
            qfs_hash128(src->data, src->nbytes, &m->hash);
            /* Remember it only if the file is still the one described: a rewrite during
             * the hash would otherwise file new bytes' hash under the old identity. */
            struct stat st;
            if (store && m->shard && fstat(m->shard->fd, &st) == 0 &&
                (uint64_t)st.st_dev == id.dev && (uint64_t)st.st_ino == id.ino &&
                (uint64_t)st.st_size == id.size &&
                (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec == id.mtime_ns)
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
    struct qfs_cache_key src;
    qfs_src_memo_hash(t->memo, t->src, &src);

    int64_t row0;
    const int64_t nrows = chunk_rows(t, chunk, &row0);
    struct qfs_cache_keybuf kb;
    qfs_keybuf_init(&kb);
    int rc = 0;
    rc |= qfs_keybuf_add(&kb, "quantfs-gguf-chunk", 18);
    rc |= qfs_keybuf_add_u64(&kb, vf->codec_version);
    rc |= qfs_keybuf_add(&kb, src.b, sizeof src.b);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->src->dtype);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->src->n_dims);
    for (int d = 0; d < t->src->n_dims; d++)
        rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->src->shape[d]);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->xform);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->xform_heads);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->type);
    rc |= qfs_keybuf_add_u64(&kb, t->imatrix != NULL);
    if (t->imatrix)
        rc |= qfs_keybuf_add(&kb, t->imatrix_hash.b, sizeof t->imatrix_hash.b);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->row_elems);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)row0);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)nrows);
    qfs_keybuf_finish(&kb, key);
    return rc ? -ENOMEM : 0;
}
