/* Safetensors outputs: what every format that serves a Hugging Face-style model directory
 * (<model>.<format>/: config.json, model.safetensors, the tokenizer passed through) shares.
 *
 * The file (safetensors.h describes the container):
 *   1. u64 N, then N bytes of JSON: keys sorted by name, "__metadata__" {"format": F} first,
 *      padded with spaces so that 8 + N is a multiple of 8;
 *   2. the data, tensors back to back (no gaps: Hugging Face's reader requires that), those
 *      whose size is a multiple of 8 first, each group by name; so every offset is 8-byte
 *      aligned whenever every size is a multiple of 8, which the formats check.
 * Each output tensor is made of one source tensor (qfs_stout_src: its content hash, the
 * format's tag and version, what it computes, a row range) and produced lazily in row
 * chunks by the format's function.  Keys: XXH3-128 over all of that (qfs_stout_key). */
#ifndef QFS_CODECS_STOUT_H
#define QFS_CODECS_STOUT_H

#include <stdint.h>

#include "source/model.h"
#include "vfile.h"

/* Element types of output tensors (their safetensors names in qfs_stout_dtype_name). */
enum qfs_stout_dtype {
    QFS_SO_F32, QFS_SO_F16, QFS_SO_BF16, QFS_SO_I32, QFS_SO_U32, QFS_SO_I64, QFS_SO_F8_E4M3,
};
const char *qfs_stout_dtype_name(enum qfs_stout_dtype t);
int qfs_stout_dtype_size(enum qfs_stout_dtype t);
/* The output type that holds source dtype dt unchanged. */
enum qfs_stout_dtype qfs_stout_of_dtype(enum qfs_dtype dt);
/* v as n little-endian bytes at p (n <= 8). */
void qfs_stout_put_le(uint8_t *p, uint64_t v, int n);
/* v in output float type t (F32, F16 or BF16; round to nearest even) at p. */
void qfs_stout_put_float(uint8_t *p, enum qfs_stout_dtype t, float v);
/* A copy of name (which ends in ".weight") with that suffix replaced by suffix; NULL when
 * out of memory. */
char *qfs_stout_renamed(const char *name, const char *suffix);

struct qfs_stout_src;
/* Produce rows [row0, row0 + n) of output tensor s into dst.  0 or -ENOMEM. */
typedef int (*qfs_stout_fn)(const struct qfs_stout_src *s, int64_t row0, int64_t n,
                            uint8_t *dst);

/* What one output tensor is made of (owned by the file's state, shared by its chunks). */
struct qfs_stout_src {
    const struct qfs_st_tensor *src;  /* the source tensor */
    struct qfs_src_memo *memo;        /* its content hash */
    const char *tag;                  /* the format's name: enters the key */
    uint32_t version;                 /* the format's version: enters the key */
    int kind;                         /* which of the format's outputs (enters the key) */
    int group, bits;                  /* the format's parameters (enter the key) */
    enum qfs_stout_dtype dtype;       /* of the output elements */
    const float *imatrix;             /* importance weights per input column, or NULL */
    struct qfs_cache_key imatrix_hash;
    qfs_stout_fn produce;
};

/* One output tensor as a format describes it before the layout. */
struct qfs_stout_tensor {
    char *name;                       /* taken by qfs_stout_build */
    int n_dims;
    int64_t shape[4];                 /* row-major, as in the file */
    int64_t nrows, row_elems;         /* chunks are ranges of these rows */
    int64_t rows_per_chunk;           /* 0: about 1 MiB of output */
    struct qfs_stout_src s;
};

/* A list of output tensors being collected. */
struct qfs_stout_list {
    struct qfs_stout_tensor *t;
    int n, cap;
};
/* Append one (name taken over, also on failure).  0 or -ENOMEM. */
int qfs_stout_add(struct qfs_stout_list *l, char *name, int n_dims, const int64_t *shape,
                  const struct qfs_stout_src *s);
void qfs_stout_list_free(struct qfs_stout_list *l);

/* Lay out l's tensors into a virtual file named name (the list is consumed, also on
 * failure), with __metadata__ {"format": meta_format}.  The file's codec is fmt at its
 * version; variant is its prewarm name.  0, -EINVAL (a tensor size is not a multiple of 8
 * though others follow it: logged with tensor and model), -ENOMEM. */
int qfs_stout_build(const struct qfs_model *m, const char *name, const struct qfs_format *fmt,
                    const char *variant, const char *meta_format, struct qfs_stout_list *l,
                    struct qfs_vfile **out);

/* The key of rows [row0, row0 + n) of s: XXH3-128 over its tag, version, source hash,
 * dtype and shape, kind, group, bits, imatrix hash, row range.  0 or -ENOMEM. */
int qfs_stout_key(const struct qfs_stout_src *s, int64_t row0, int64_t n,
                  struct qfs_cache_key *key);

/* Producers every format uses: the source rows unchanged (s->dtype = the source's), or
 * converted to F16 (s->dtype QFS_SO_F16, as AWQ and GPTQ write everything unquantized). */
int qfs_stout_copy(const struct qfs_stout_src *s, int64_t row0, int64_t n, uint8_t *dst);

/* Rows [r0, r1) x columns [c0, c1) of 2-D source tensor src, as float.  Cannot fail. */
void qfs_stout_read(const struct qfs_st_tensor *src, int64_t r0, int64_t r1, int64_t c0,
                    int64_t c1, float *dst);

/* The model's config.json with key (e.g. "quantization_config") set to block (its
 * reference taken) and, if torch_dtype is not NULL, torch_dtype replaced.  *buf malloc'd,
 * NUL-terminated, *len without the NUL.  0, -EINVAL (config unreadable; logged), -ENOMEM. */
int qfs_stout_config(const struct qfs_model *m, const char *key, struct json_t *block,
                     const char *torch_dtype, char **buf, size_t *len);

/* Offer the loadable directory <model>.<suffix>/ with config.json (cfg, cfg_len: taken)
 * and model.safetensors (weights: taken); weights is also listed in the model directory
 * when listed.  0 or -ENOMEM (everything taken freed). */
int qfs_stout_offer_dir(struct qfs_model *m, const struct qfs_format *fmt, const char *suffix,
                        struct qfs_vfile *weights, bool listed, char *cfg, size_t cfg_len);

/* The decoder Linear weights of m (2-D "model.layers.N.*.weight" tensors): 1 when s is
 * one.  MoE models are not served by these formats (the caller logs). */
bool qfs_stout_is_linear(const struct qfs_st_tensor *s);
/* Does m have stacked experts (a MoE model)? */
bool qfs_stout_is_moe(const struct qfs_model *m);

/* How a format turns a dense model into its loadable directory. */
struct qfs_stout_plan {
    const struct qfs_format *fmt;
    const char *suffix;      /* the directory: <model>.<suffix>/ */
    const char *variant;     /* the file's prewarm name */
    const char *meta_format; /* __metadata__ format: "pt", "mlx" */
    bool to_f16;             /* unquantized tensors as F16 (else in their source dtype) */
    /* Does the format quantize s (decoder linears; MLX also the embeddings)? */
    bool (*quantizes)(const struct qfs_st_tensor *s);
    /* Why s (quantized) cannot be stored with group size g, or NULL (it can). */
    const char *(*unfit)(const struct qfs_st_tensor *s, int g);
    /* Append the outputs of quantized source tensor i of m.  0 or -ENOMEM. */
    int (*add)(const struct qfs_model *m, int i, int g, struct qfs_stout_list *l);
    /* The directory's config.json (qfs_stout_config).  0 or negative errno (logged). */
    int (*config)(const struct qfs_model *m, int g, char **buf, size_t *len);
};

/* The format's offer(): m's tensors (quantized where p says, the others passed through),
 * laid out by qfs_stout_build, in <model>.<suffix>/ with its config.json.  A MoE model, or
 * a tensor that does not fit, means no directory (one log line naming the model or the
 * tensor).  0 (offered), 1 (not offered, logged), or -ENOMEM. */
int qfs_stout_offer(struct qfs_model *m, const struct qfs_stout_plan *p, int g);

/* The importance matrix entry of HF tensor hf (its input columns), or NULL. */
const float *qfs_stout_imatrix(const struct qfs_model *m, const struct qfs_st_tensor *hf,
                               struct qfs_cache_key *hash);

#endif
