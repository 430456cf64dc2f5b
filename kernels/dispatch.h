/* Where chunks are quantized: the CPU (qfs_quantize_rows) or a CUDA device.
 *
 * The CUDA path needs no CUDA library at build or link time: the kernels
 * (kernels/cuda/quant.cu) are a fatbin inside the binary, and the driver
 * (libcuda.so.1) is dlopen'ed by qfs_dev_init.  Without a driver, a device,
 * or a build with -Dcuda=disabled, everything runs on the CPU with exactly
 * today's bytes; with one, the bytes are the same (the GPU runs the CPU's
 * per-block functions, compiled with -fmad=false).  Any CUDA error is one
 * logged line and a fallback to the CPU, never an abort; after an error the
 * device is not used again (a failed context cannot be trusted).
 *
 * Thread-safe after qfs_dev_init; qfs_dev_shutdown when no call runs. */
#ifndef QFS_KERNELS_DISPATCH_H
#define QFS_KERNELS_DISPATCH_H

#include <stddef.h>
#include <stdint.h>

#include "kernels/qtypes.h"

enum qfs_dev_mode { QFS_DEV_AUTO, QFS_DEV_CPU, QFS_DEV_CUDA };

struct qfs_dev_opts {
    enum qfs_dev_mode mode;
    int index;        /* cuda:N; -1: the first device */
    uint64_t mem_max; /* device memory the GPU path may allocate; 0: default (1G) */
};

/* "auto", "cpu", "cuda", "cuda:N" -> *o (mem_max untouched).  0 or -EINVAL. */
int qfs_dev_parse(const char *s, struct qfs_dev_opts *o);

/* Choose the device once (later calls: no-op).  auto and cuda probe the
 * driver and take the device if there is one; otherwise, and for cpu, the CPU
 * is used and one log line says why (for cuda also at warning level: what was
 * asked for is not available).  Never fails: 0. */
int qfs_dev_init(const struct qfs_dev_opts *o);
void qfs_dev_shutdown(void);

/* "cpu" or "cuda:0 NVIDIA H100 80GB HBM3" (valid until qfs_dev_shutdown). */
const char *qfs_dev_name(void);
/* Why the CPU is used although CUDA was asked for or probed, or why the GPU
 * was given up; NULL when there is nothing to say. */
const char *qfs_dev_note(void);
/* true when built with the CUDA kernels (-Dcuda=auto with nvcc, or enabled). */
int qfs_dev_built_with_cuda(void);

struct qfs_dev_stats {
    uint64_t gpu_calls, gpu_rows; /* chunks / rows quantized on the GPU */
    uint64_t cpu_calls;           /* chunks quantized on the CPU by qfs_quantize_rows_dev */
    uint64_t fallbacks;           /* GPU attempts that ended on the CPU (errors) */
};
void qfs_dev_get_stats(struct qfs_dev_stats *s);

/* Widen and quantize nrows source rows: rows[r] points at n_per_row elements of
 * dtype dt (any alignment, e.g. inside an mmap'ed safetensors file); dst gets
 * nrows * qfs_row_size(t, n_per_row) bytes, the bytes of qfs_to_f32 followed
 * by qfs_quantize_rows.  Large chunks of a type the GPU path has go to the
 * device when one was chosen; everything else, and every CUDA failure, goes to
 * the CPU.  0, -ENOMEM, or -EINVAL (what qfs_quantize_rows refuses). */
int qfs_quantize_rows_dev(enum qfs_type t, enum qfs_dtype dt, const uint8_t *const *rows,
                          int64_t nrows, int64_t n_per_row, const float *imatrix, void *dst);

/* The GPU path alone, for tests: no size threshold, no fallback.  0; -ENODEV
 * without a device; -ENOTSUP for a type (or row length) it does not take;
 * -EINVAL as qfs_quantize_rows; -EIO on a CUDA error (logged; the device is
 * then given up). */
int qfs_quantize_rows_gpu(enum qfs_type t, enum qfs_dtype dt, const uint8_t *const *rows,
                          int64_t nrows, int64_t n_per_row, const float *imatrix, void *dst);
/* The CPU path alone (what qfs_quantize_rows_dev does without a device). */
int qfs_quantize_rows_cpu(enum qfs_type t, enum qfs_dtype dt, const uint8_t *const *rows,
                          int64_t nrows, int64_t n_per_row, const float *imatrix, void *dst);

#endif
