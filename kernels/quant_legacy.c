/* Portable row loops of the 32-element formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
 * The arithmetic lives in quant_block.h (plain) and quant_block_b.h
 * (importance-weighted).
 *
 * With an importance matrix ggml quantizes Q4_0..Q5_1 differently: a
 * weighted search per block whose weights also depend on the mean square of
 * the whole row (sigma2), so the row function computes that first.  Q8_0
 * ignores the imatrix, as ggml does. */
#include "kernels/quant_block.h"
#include "kernels/quant_block_b.h"
#include "kernels/quant_rows.h"

/* Row functions of a legacy type with a weighted variant t_w. */
#define LEGACY_ROWS_WEIGHTED(t, qk)                                                          \
    void qfs_quantize_row_##t(const float *x, void *vy, int64_t n, const float *imatrix)   \
    {                                                                                        \
        block_##t *y = vy;                                                                   \
        const int64_t nb = n / (qk);                                                         \
        if (imatrix == NULL) {                                                               \
            for (int64_t i = 0; i < nb; i++)                                                 \
                qfs_quantize_block_##t(x + i * (qk), &y[i]);                                 \
            return;                                                                          \
        }                                                                                    \
        const float sigma2 = qfs_row_sigma2(x, n);                                           \
        for (int64_t i = 0; i < nb; i++)                                                     \
            qfs_quantize_block_##t##_w(x + i * (qk), imatrix + i * (qk), sigma2, &y[i]);     \
    }                                                                                        \
    void qfs_dequantize_row_##t(const void *vx, float *y, int64_t n)                         \
    {                                                                                        \
        const block_##t *x = vx;                                                             \
        for (int64_t i = 0; i < n / (qk); i++)                                               \
            qfs_dequantize_block_##t(&x[i], y + i * (qk));                                   \
    }

LEGACY_ROWS_WEIGHTED(q4_0, QK4_0)
LEGACY_ROWS_WEIGHTED(q4_1, QK4_1)
LEGACY_ROWS_WEIGHTED(q5_0, QK5_0)
LEGACY_ROWS_WEIGHTED(q5_1, QK5_1)
QFS_DEFINE_ROWS(q8_0, QK8_0)
