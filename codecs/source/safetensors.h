/* Safetensors reader (single file or sharded through model.safetensors.index.json).
 *
 * On-disk layout of one file:
 *   1. u64 little-endian N: length of the JSON header
 *   2. N bytes of JSON: { "<name>": {"dtype": "F16", "shape": [..], "data_offsets": [b, e]}, ...,
 *      optional "__metadata__": {str: str} }
 *   3. the data area; data_offsets are relative to its start (8 + N).
 * Validation is strict (see qfs_st_open): any violation rejects the whole model.
 * Dtypes: F32, F16 and BF16 everywhere; I32 only where the caller asks for it
 * (qfs_st_open_file with QFS_ST_ALLOW_I32), never in a model source. */
#ifndef QFS_SAFETENSORS_H
#define QFS_SAFETENSORS_H

#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>

#include "../../kernels/qtypes.h"

#define QFS_ST_MAX_DIMS 8
#define QFS_ST_MAX_HEADER (100u << 20) /* header length bound: 100 MiB */

/* The dtype a tensor's header entry names.  The float ones are the source dtypes models
 * are built from (enum qfs_dtype, what kernels/ convert to float); QFS_ST_I32 (little-endian
 * two's complement int32) is not: it is accepted only by qfs_st_open_file with
 * QFS_ST_ALLOW_I32, to read a file with packed integers back (an AWQ file's
 * qweight/qzeros).  Being a separate enum, an I32 tensor cannot reach qfs_to_f32 or
 * qfs_dtype_size without a cast. */
enum qfs_st_dtype { QFS_ST_F32, QFS_ST_F16, QFS_ST_BF16, QFS_ST_I32 };

struct qfs_st_tensor {
    char *name;
    enum qfs_dtype dtype;           /* the element type when st_dtype is F32/F16/BF16 (always
                                     * so from qfs_st_open); for an I32 tensor it holds
                                     * QFS_DT_F32 and means nothing: check st_dtype first */
    enum qfs_st_dtype st_dtype;     /* as the header names it */
    int n_dims;
    int64_t shape[QFS_ST_MAX_DIMS]; /* row-major, as in the file: shape[n_dims-1] is the row */
    const uint8_t *data;            /* into the shard's read-only mmap */
    uint64_t nbytes;
    int shard;                      /* index into qfs_st_model.shards */
    uint64_t file_offset;           /* absolute offset of data in its shard file */
};

struct qfs_st_shard {
    char *path;       /* absolute path */
    int fd;           /* kept open: used for the content identity (fstat) */
    uint8_t *map;     /* PROT_READ, MAP_SHARED mapping of the whole file */
    uint64_t size;
    dev_t dev;
    ino_t ino;
    int64_t mtime_ns;
    int64_t ctime_ns; /* what userspace cannot set back: a rewrite with a restored mtime
                         still changes it */
};

struct qfs_st_model {
    struct qfs_st_shard *shards;
    int n_shards;
    struct qfs_st_tensor *tensors; /* in file order: shard by shard, each sorted by name */
    int n_tensors;
};

/* Open the safetensors of model directory dir: model.safetensors.index.json if present,
 * else the single *.safetensors file (more than one without an index is an error).
 * root: a file (or shard) whose real path lies outside root is refused (-EACCES): symlinks
 * out of the source tree are not followed.  root NULL: no such check.
 * Returns 0 or a negative errno; on error logs one line naming the file and the problem
 * and leaves *out untouched.  Errors: -EINVAL malformed header/JSON/offsets/shape,
 * -ENOTSUP unsupported dtype (I32 included), -ENOENT missing file or shard, -EFBIG header
 * too long, -EIO truncated file. */
int qfs_st_open(const char *dir, const char *root, struct qfs_st_model **out);

/* Flags of qfs_st_open_file. */
#define QFS_ST_ALLOW_I32 0x1u /* accept I32 tensors (st_dtype QFS_ST_I32) */

/* Open the single safetensors file path (a file, not a model directory: no index, no
 * source-root check), with exactly qfs_st_open's validation of that file.  flags: 0 or
 * QFS_ST_ALLOW_I32; without it an I32 tensor is refused as qfs_st_open refuses it.  The
 * result is a one-shard model (qfs_st_find, qfs_st_close as usual).  For reading back
 * files quantfs produces (tests, tools); model sources go through qfs_st_open only.
 * Returns 0 or a negative errno, logged with the file name, *out untouched on error:
 * those of qfs_st_open, and -EINVAL for an unknown flag. */
int qfs_st_open_file(const char *path, unsigned flags, struct qfs_st_model **out);
void qfs_st_close(struct qfs_st_model *m);
/* Does st (an fstat of the shard's kept fd) still show the identity sh was read with:
 * device, inode, size, mtime and ctime?  Cannot fail. */
int qfs_st_identity_eq(const struct qfs_st_shard *sh, const struct stat *st);
struct qfs_file_id;
/* sh's identity as the cache remembers source hashes under it.  Cannot fail. */
void qfs_st_file_id(const struct qfs_st_shard *sh, struct qfs_file_id *id);

/* NULL when absent. */
const struct qfs_st_tensor *qfs_st_find(const struct qfs_st_model *m, const char *name);

/* Writer, for the model generator and tests: tensors laid out in the given order,
 * header keys sorted, offsets 8-byte aligned.  Float dtypes only. */
struct qfs_st_wtensor {
    const char *name;
    enum qfs_dtype dtype;
    int n_dims;
    int64_t shape[QFS_ST_MAX_DIMS];
    const void *data; /* product(shape) * dtype size bytes */
};
int qfs_st_write(const char *path, const struct qfs_st_wtensor *t, int n);

/* Streaming writer: the same file as qfs_st_write, but t[i].data is not used: the bytes of
 * tensor i come from fill(ctx, i, off, buf, len), called in file order with off 0, chunk,
 * 2*chunk, ... (len is chunk for every piece but a tensor's last), into a buffer of chunk
 * bytes that the writer owns.  So a file larger than memory can be written one piece at a
 * time.  fill returns 0 or a negative errno, which aborts the write (the file is left
 * incomplete) and is returned. */
typedef int (*qfs_st_fill_fn)(void *ctx, int i, uint64_t off, uint8_t *buf, size_t len);
int qfs_st_write_stream(const char *path, const struct qfs_st_wtensor *t, int n, size_t chunk,
                        qfs_st_fill_fn fill, void *ctx);

#endif
