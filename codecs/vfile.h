/* A virtual file: an exact size and an ordered list of segments, known from metadata
 * alone.  Header bytes are generated once at build time; tensor segments are produced
 * lazily in row chunks (every output type quantizes rows independently).
 *
 *   file = [bytes: header + padding][tensor 0][pad][tensor 1][pad] ...
 *
 * A tensor's rows come in groups of group_rows (one group per stacked source: an expert of
 * a MoE tensor; a single group otherwise).  Chunks never cross a group: group g holds
 * chunks [g*cpg, (g+1)*cpg) with cpg = ceil(group_rows / rows_per_chunk), so a reader of
 * one expert produces (and hashes) no other. */
#ifndef QFS_VFILE_H
#define QFS_VFILE_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "../cache/cache.h"
#include "../kernels/qtypes.h"
#include "source/safetensors.h"

/* How source rows map to output rows (frozen: the value enters chunk keys). */
enum qfs_xform {
    QFS_XF_NONE = 0,
    QFS_XF_PERMUTE_QK = 1, /* llama/mistral q,k: rows regrouped per head for GGUF rope */
};

/* Content hash of one source tensor, computed on first use and shared by every
 * virtual file of the model (owned by the model).  Remembered across mounts through the
 * hash store (qfs_vfile_set_hash_store) under the shard's identity and the tensor's byte
 * range, so unchanged files are not rehashed. */
struct qfs_src_memo {
    pthread_mutex_t lock; /* protects done and hash */
    int done;
    struct qfs_cache_key hash;
    const struct qfs_st_shard *shard; /* the tensor's file (set by the model); NULL: not
                                         remembered across mounts (a computed tensor) */
};

/* Where a converted tensor's rows come from (model-owned, shared by every output of the
 * model): n source tensors of the same dtype and row length, stacked in order on a new
 * outer axis (output row g*rows + r is row r of source g: the experts of a MoE layer); the
 * first `rows` rows of each (fewer than it has: a truncated embedding); a row permutation
 * inside each source; and a constant added to every element (Gemma's norms), computed as
 * the converter does: in F16 for an F16 source, in F32 otherwise.  A tensor computed from
 * the config (llama3 rope_freqs) is an F32 source tensor over model memory (shard -1). */
struct qfs_vsrc {
    int n;
    const struct qfs_st_tensor **t;   /* n sources */
    struct qfs_src_memo **memo;       /* their content hashes */
    int64_t rows, row_elems;          /* per source, as read */
    enum qfs_dtype dtype;
    enum qfs_xform xform;
    int64_t xform_heads;              /* heads for QFS_XF_PERMUTE_QK */
    float add;                        /* 0: none */
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
    const struct qfs_vsrc *vs;       /* the rows it is made from (model-owned); other codecs
                                        may leave it NULL */
    int64_t nrows, row_elems;        /* nrows = product(ne[1..]), row_elems = ne[0] */
    int64_t group_rows;              /* rows per group (see the top); nrows when one */
    uint64_t row_bytes;
    uint64_t offset;                 /* absolute offset in the virtual file */
    uint64_t nbytes;                 /* nrows * row_bytes */
    int64_t rows_per_chunk;
    int64_t n_chunks;
    const float *imatrix;            /* importance weights (model-owned) or NULL: row_elems
                                        per group (per expert), groups back to back */
    struct qfs_cache_key imatrix_hash; /* XXH3-128 of all of them (when imatrix) */
    const struct qfs_vtensor_ops *ops; /* NULL: the GGUF path (type, vs, imatrix) */
    const void *codec;               /* ops' per-tensor data (owned by vf->codec_state) */
};

struct qfs_format;

struct qfs_vfile {
    char *name;              /* "tinyllama-256.Q8_0.gguf"; "config.json" in a directory */
    const struct qfs_format *fmt; /* the format that offers it */
    char *variant;           /* "Q4_K_M", "AWQ": the -o prewarm= name of its chunks; NULL
                                for a header-only file (a directory's config.json) */
    bool listed;             /* shown in the model directory (else only in a loadable
                                directory of the model) */
    uint64_t size;
    uint8_t *head;           /* bytes [0, head_len): header, tensor infos, padding; without
                                the shared part below when there is one */
    uint64_t head_len;
    const uint8_t *head_shared; /* or NULL: bytes [head_shared_at, + head_shared_len) of the
                                   header, owned by the model and shared by its files (the
                                   GGUF tokenizer metadata, the bulk of a header); head then
                                   holds the bytes before and after it back to back */
    uint64_t head_shared_at, head_shared_len;
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

/* Copy header bytes [pos, pos + n) of vf (pos + n <= head_len) to dst, the shared part
 * included.  Cannot fail. */
void qfs_vfile_head_read(const struct qfs_vfile *vf, uint64_t pos, uint64_t n, uint8_t *dst);

/* A header-only virtual file named name of the bytes buf[0, len) (taken over, also on
 * failure): a loadable directory's config.json.  NULL on ENOMEM. */
struct qfs_vfile *qfs_vfile_from_bytes(const char *name, const struct qfs_format *fmt, char *buf,
                                       size_t len);

/* Set t's chunk layout for rows_per_chunk (>= 1): n_chunks from nrows and group_rows
 * (group_rows 0 is taken as nrows).  Cannot fail. */
void qfs_vtensor_set_chunks(struct qfs_vtensor *t, int64_t rows_per_chunk);

/* Rows [*row0, *row0 + return) of t are chunk `chunk`.  Cannot fail. */
int64_t qfs_vtensor_chunk_rows(const struct qfs_vtensor *t, int64_t chunk, int64_t *row0);

/* Bytes of one chunk. */
uint64_t qfs_vtensor_chunk_bytes(const struct qfs_vtensor *t, int64_t chunk);

/* The chunk holding byte rel of t's data (rel < t->nbytes), and the offset of that chunk's
 * first byte in the data.  Cannot fail. */
int64_t qfs_vtensor_chunk_at(const struct qfs_vtensor *t, uint64_t rel, uint64_t *start);

/* Source rows of chunk `chunk` of a GGUF tensor (t->vs set): rows[0..n) point into the
 * source mappings (n = qfs_vtensor_chunk_rows), *imatrix at that group's weights (or NULL).
 * Cannot fail. */
void qfs_vtensor_src_rows(const struct qfs_vtensor *t, int64_t chunk, const uint8_t **rows,
                          const float **imatrix);

/* Produce chunk `chunk` of t into dst (qfs_vtensor_chunk_bytes bytes): read the source
 * rows (applying the transform), widen to f32, quantize.  Pure function of the source
 * bytes: same input, same output on every host.  0 or -ENOMEM. */
int qfs_vtensor_produce(const struct qfs_vtensor *t, int64_t chunk, uint8_t *dst);

/* Ask the kernel to start reading the source bytes chunk `chunk` of t will read
 * (madvise WILLNEED on the mapping), so that a chunk produced later does not wait on
 * the disk page by page: its rows, or for the first chunk of a group the whole source
 * tensor (its key hashes all of it).  Only a hint: no error, no effect on the bytes.
 * Tensors of other codecs (ops set): nothing. */
void qfs_vtensor_hint(const struct qfs_vtensor *t, int64_t chunk);

/* Step (*t, *c) to the next chunk in vf: of the same tensor, or (across) the first of
 * the next tensor that has any.  false at the end (then *t, *c are unspecified). */
bool qfs_vfile_next_chunk(const struct qfs_vfile *vf, const struct qfs_vtensor **t, int64_t *c,
                          bool across);

/* The cache key of one chunk: XXH3-128 over the content hash of the source the chunk
 * reads (its group's), its dtype and shape, the transform, the output type, the row range
 * and the codec version.  Hashes that source on first use.  0 or negative errno. */
int qfs_vtensor_key(const struct qfs_vfile *vf, const struct qfs_vtensor *t, int64_t chunk,
                    struct qfs_cache_key *key);

/* The content hash of source tensor src (memo: its model-owned memo), computed (or
 * recalled from the hash store) on first use.  Thread-safe; cannot fail. */
void qfs_src_memo_hash(struct qfs_src_memo *memo, const struct qfs_st_tensor *src,
                       struct qfs_cache_key *out);

/* Where source content hashes are remembered across mounts (the chunk cache); NULL: not
 * remembered.  Set once the cache is open and cleared before it closes. */
void qfs_vfile_set_hash_store(struct qfs_cache *c);

#endif
