/* The work of one GPU thread: one block of one row chunk, with the very same
 * per-block functions as the CPU path (quant_block*.h).
 *
 * Compiled twice: by nvcc into the kernels of quant.cu (QFS_HD is
 * __host__ __device__ there), and by gcc into tests/gpu/test_gpu_emul.c, which
 * runs every "thread" on the CPU and compares with qfs_quantize_rows: so the
 * indexing below is tested on hosts without a GPU, and only nvcc's code
 * generation is left to the GPU test.
 *
 * Layout of one launch (struct qfs_dev_args): nrows rows of n_per_row f32
 * values, contiguous (x); the output rows, contiguous (y, nrows * row_size
 * bytes); block i of the launch is block i % bpr of row i / bpr (bpr: blocks
 * per row), at x + i * qk and at y + i * sizeof(block).  imatrix: n_per_row
 * weights or NULL; sigma2: one mean square per row (qfs_row_sigma2), filled
 * by qfs_dev_row_sigma2 when the type needs it, else NULL. */
#ifndef QFS_CUDA_QUANT_DEV_H
#define QFS_CUDA_QUANT_DEV_H

#include <stdint.h>

#include "kernels/qtypes.h"
#include "kernels/quant_block.h"
#include "kernels/quant_block_b.h"
#include "kernels/quant_block_k.h"

struct qfs_dev_args {
    const float *x;
    uint8_t *y;
    const float *imatrix; /* n_per_row weights or NULL */
    float *sigma2;        /* nrows (legacy weighted types) or NULL */
    int64_t nblocks;      /* blocks in the launch: nrows * bpr */
    int64_t bpr;          /* blocks per row */
    int64_t nrows;
};

/* Source element i -> f32 (dtype: enum qfs_dtype); src raw little-endian. */
static inline QFS_HD float qfs_dev_widen(int dtype, const uint8_t *src, int64_t i)
{
    if (dtype == QFS_DT_F32) {
        float f;
        memcpy(&f, src + 4 * i, 4);
        return f;
    }
    const uint16_t h = (uint16_t)(src[2 * i] | (src[2 * i + 1] << 8));
    return dtype == QFS_DT_F16 ? qfs_fp16_to_fp32(h) : qfs_bf16_to_fp32(h);
}

/* Row r's mean square, the sum in element order as qfs_row_sigma2. */
static inline QFS_HD void qfs_dev_row_sigma2(const struct qfs_dev_args *a, int64_t r, int64_t n)
{
    a->sigma2[r] = qfs_row_sigma2(a->x + r * n, n);
}

/* Plain: the imatrix is ignored (ggml ignores it too for these types). */
#define QFS_DEV_PLAIN(t, qk)                                                                 \
    static inline QFS_HD void qfs_dev_block_##t(const struct qfs_dev_args *a, int64_t i)    \
    {                                                                                        \
        qfs_quantize_block_##t(a->x + i * (qk), (block_##t *)a->y + i);                      \
    }
/* Legacy 32-element types: weighted search with the row's sigma2 when imatrix. */
#define QFS_DEV_LEGACY(t, qk)                                                                \
    static inline QFS_HD void qfs_dev_block_##t(const struct qfs_dev_args *a, int64_t i)    \
    {                                                                                        \
        if (a->imatrix == NULL)                                                              \
            qfs_quantize_block_##t(a->x + i * (qk), (block_##t *)a->y + i);                  \
        else                                                                                 \
            qfs_quantize_block_##t##_w(a->x + i * (qk), a->imatrix + (i % a->bpr) * (qk),    \
                                       a->sigma2[i / a->bpr], (block_##t *)a->y + i);        \
    }
/* K-quants: the block's 256 weights. */
#define QFS_DEV_K(t)                                                                         \
    static inline QFS_HD void qfs_dev_block_##t(const struct qfs_dev_args *a, int64_t i)    \
    {                                                                                        \
        if (a->imatrix == NULL)                                                              \
            qfs_quantize_block_##t(a->x + i * QK_K, (block_##t *)a->y + i);                  \
        else                                                                                 \
            qfs_quantize_block_##t##_w(a->x + i * QK_K, a->imatrix + (i % a->bpr) * QK_K,    \
                                       (block_##t *)a->y + i);                               \
    }
/* IQ4: one function, weights or NULL. */
#define QFS_DEV_IQ4(t, qk)                                                                   \
    static inline QFS_HD void qfs_dev_block_##t(const struct qfs_dev_args *a, int64_t i)    \
    {                                                                                        \
        qfs_quantize_block_##t(a->x + i * (qk),                                              \
                               a->imatrix ? a->imatrix + (i % a->bpr) * (qk) : NULL,         \
                               (block_##t *)a->y + i);                                       \
    }

QFS_DEV_LEGACY(q4_0, QK4_0)
QFS_DEV_LEGACY(q4_1, QK4_1)
QFS_DEV_LEGACY(q5_0, QK5_0)
QFS_DEV_LEGACY(q5_1, QK5_1)
QFS_DEV_PLAIN(q8_0, QK8_0)
QFS_DEV_K(q2_K)
QFS_DEV_K(q3_K)
QFS_DEV_K(q4_K)
QFS_DEV_K(q5_K)
QFS_DEV_K(q6_K)
QFS_DEV_IQ4(iq4_nl, QK4_NL)
QFS_DEV_IQ4(iq4_xs, QK_K)
QFS_DEV_PLAIN(tq1_0, QK_K)
QFS_DEV_PLAIN(tq2_0, QK_K)
QFS_DEV_PLAIN(q1_0, QK1_0)
QFS_DEV_PLAIN(q2_0, QK2_0)

/* F32/F16/BF16 outputs: a "block" is one element. */
static inline QFS_HD void qfs_dev_block_f32(const struct qfs_dev_args *a, int64_t i)
{
    memcpy(a->y + 4 * i, &a->x[i], 4);
}
static inline QFS_HD void qfs_dev_block_f16(const struct qfs_dev_args *a, int64_t i)
{
    const uint16_t h = qfs_fp32_to_fp16(a->x[i]);
    memcpy(a->y + 2 * i, &h, 2);
}
static inline QFS_HD void qfs_dev_block_bf16(const struct qfs_dev_args *a, int64_t i)
{
    const uint16_t h = qfs_fp32_to_bf16(a->x[i]);
    memcpy(a->y + 2 * i, &h, 2);
}

/* X(enum suffix, function suffix, needs sigma2 with an imatrix): the types the
 * GPU path runs.  The grid i-quants (IQ2_*, IQ3_*, IQ1_*) are not here: their
 * search tables (qfs_iq_lattice, built at run time by quant_iq.c) have no
 * device copy yet, so the dispatcher gives them to the CPU. */
#define QFS_DEV_TYPES(X)                                                                     \
    X(Q4_0, q4_0, 1) X(Q4_1, q4_1, 1) X(Q5_0, q5_0, 1) X(Q5_1, q5_1, 1) X(Q8_0, q8_0, 0)     \
    X(Q2_K, q2_K, 0) X(Q3_K, q3_K, 0) X(Q4_K, q4_K, 0) X(Q5_K, q5_K, 0) X(Q6_K, q6_K, 0)     \
    X(IQ4_NL, iq4_nl, 0) X(IQ4_XS, iq4_xs, 0) X(TQ1_0, tq1_0, 0) X(TQ2_0, tq2_0, 0)          \
    X(Q1_0, q1_0, 0) X(Q2_0, q2_0, 0) X(F32, f32, 0) X(F16, f16, 0) X(BF16, bf16, 0)

#endif
