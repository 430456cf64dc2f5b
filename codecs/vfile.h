/* A virtual file: an exact size and an ordered list of segments, known from metadata
 * alone.  Header bytes are generated once at build time; tensor segments are produced
 * lazily in row chunks (every output type quantizes rows independently).
 *
 *   file = [bytes: header + padding][tensor 0][pad][tensor 1][pad] ...
 *
 * Chunk c of tensor t covers rows [c*rows_per_chunk, min(nrows, (c+1)*rows_per_chunk)). */
#ifndef QFS_VFILE_H
#define QFS_VFILE_H

#include <pthread.h>
#include <stdint.h>

#include "../cache/cache.h"
#include "../kernels/qtypes.h"
#include "safetensors.h"

/* How source rows map to output rows. */
enum qfs_xform {
    QFS_XF_NONE = 0,
    QFS_XF_PERMUTE_QK = 1, /* llama/mistral q,k: rows regrouped per head for GGUF rope */
};

/* Content hash of one source tensor, computed on first use and shared by every
 * virtual file of the model (owned by the model).  Remembered across mounts through the
 * hash store (qfs_vfile_set_hash_store) under the shard's (dev, ino, size, mtime_ns) and
 * the tensor's byte range, so unchanged files are not rehashed. */
struct qfs_src_memo {
    pthread_mutex_t lock; /* protects done and hash */
    int done;
    struct qfs_cache_key hash;
    const struct qfs_st_shard *shard; /* the tensor's file (set by the model); NULL: not
                                         remembered across mounts */
};

struct qfs_vtensor {
    char *name;                      /* GGUF name, "blk.0.attn_q.weight" */
    int n_dims;
    int64_t ne[4];                   /* ggml order: ne[0] = row length */
    enum qfs_type type;              /* output type */
    const struct qfs_st_tensor *src; /* source tensor (owned by the model) */
    enum qfs_xform xform;
    int64_t xform_heads;             /* heads for QFS_XF_PERMUTE_QK */
    int64_t nrows, row_elems;        /* nrows = product(ne[1..]), row_elems = ne[0] */
    uint64_t row_bytes;
    uint64_t offset;                 /* absolute offset in the virtual file */
    uint64_t nbytes;                 /* nrows * row_bytes */
    int64_t rows_per_chunk;
    int64_t n_chunks;
    struct qfs_src_memo *memo;       /* the source tensor's content hash (model-owned) */
    const float *imatrix;            /* row_elems importance weights (model-owned) or NULL */
    struct qfs_cache_key imatrix_hash; /* XXH3-128 of those weights (when imatrix) */
};

struct qfs_vfile {
    char *name;              /* "tinyllama-256.Q8_0.gguf" */
    uint64_t size;
    uint8_t *head;           /* bytes [0, head_len): header, tensor infos, padding */
    uint64_t head_len;
    struct qfs_vtensor *tensors; /* sorted by offset; gaps between tensors are zeros */
    int n_tensors;
    uint32_t codec_version;  /* algorithm version, enters every chunk key */
};

void qfs_vfile_free(struct qfs_vfile *vf);

/* Bytes of one chunk. */
uint64_t qfs_vtensor_chunk_bytes(const struct qfs_vtensor *t, int64_t chunk);

/* Produce chunk `chunk` of t into dst (qfs_vtensor_chunk_bytes bytes): read the source
 * rows (applying the transform), widen to f32, quantize.  Pure function of the source
 * bytes: same input, same output on every host.  0 or -ENOMEM. */
int qfs_vtensor_produce(const struct qfs_vtensor *t, int64_t chunk, uint8_t *dst);

/* The cache key of one chunk: XXH3-128 over the source tensor's content hash, its dtype
 * and shape, the transform, the output type, the row range and the codec version.
 * Hashes the source tensor on first use.  0 or negative errno. */
int qfs_vtensor_key(const struct qfs_vfile *vf, const struct qfs_vtensor *t, int64_t chunk,
                    struct qfs_cache_key *key);

/* Where source content hashes are remembered across mounts (the chunk cache); NULL: not
 * remembered.  Set once the cache is open and cleared before it closes. */
void qfs_vfile_set_hash_store(struct qfs_cache *c);

/* Source row index for output row r under t's transform. */
int64_t qfs_vtensor_src_row(const struct qfs_vtensor *t, int64_t r);

#endif
