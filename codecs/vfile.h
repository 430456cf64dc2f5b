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
#include "source/safetensors.h"

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

struct qfs_vtensor;
struct qfs_vfile;

/* A codec other than GGUF produces and keys its chunks itself (qfs_vtensor_produce and
 * qfs_vtensor_key dispatch here when qfs_vtensor.ops is set). Same contracts as those. */
struct qfs_vtensor_ops {
    int (*produce)(const struct qfs_vtensor *t, int64_t chunk, uint8_t *dst);
    int (*key)(const struct qfs_vfile *vf, const struct qfs_vtensor *t, int64_t chunk,
               struct qfs_cache_key *key);
};

struct qfs_vtensor {
    char *name;                      /* GGUF name, "blk.0.attn_q.weight" (other codecs:
                                        the name in their container) */
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
    const struct qfs_vtensor_ops *ops; /* NULL: the GGUF path (type, xform, imatrix) */
    const void *codec;               /* ops' per-tensor data (owned by vf->codec_state) */
};

struct qfs_vfile {
    char *name;              /* "tinyllama-256.Q8_0.gguf" */
    uint64_t size;
    uint8_t *head;           /* bytes [0, head_len): header, tensor infos, padding */
    uint64_t head_len;
    struct qfs_vtensor *tensors; /* sorted by offset; gaps between tensors are zeros */
    int n_tensors;
    uint32_t codec_version;  /* algorithm version, enters every chunk key */
    uint32_t cache_codec;    /* enum qfs_cache_codec of its chunks; 0 is read as GGUF */
    void *codec_state;       /* freed with codec_state_free by qfs_vfile_free */
    void (*codec_state_free)(void *);
};

/* The cache tag of vf's chunks: QFS_CACHE_TAG(codec, codec_version). */
uint32_t qfs_vfile_cache_tag(const struct qfs_vfile *vf);

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

/* The content hash of source tensor src (memo: its model-owned memo), computed (or
 * recalled from the hash store) on first use.  Thread-safe; cannot fail. */
void qfs_src_memo_hash(struct qfs_src_memo *memo, const struct qfs_st_tensor *src,
                       struct qfs_cache_key *out);

/* Where source content hashes are remembered across mounts (the chunk cache); NULL: not
 * remembered.  Set once the cache is open and cleared before it closes. */
void qfs_vfile_set_hash_store(struct qfs_cache *c);

/* Source row index for output row r under t's transform. */
int64_t qfs_vtensor_src_row(const struct qfs_vtensor *t, int64_t r);

#endif
