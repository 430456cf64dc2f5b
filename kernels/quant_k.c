/* Portable row loops of the 256-element super-block formats Q2_K .. Q6_K.
 * The arithmetic lives in quant_block_k.h.  With an importance matrix (n
 * weights, one per column) each block gets the weights of its 256 columns and
 * runs the weighted quantizer, as ggml_quantize_chunk does. */
#include "kernels/quant_block_k.h"
#include "kernels/quant_rows.h"

#define QFS_DEFINE_ROWS_K(t)                                                                  \
    void qfs_quantize_row_##t(const float *x, void *vy, int64_t n, const float *imatrix)     \
    {                                                                                         \
        block_##t *y = vy;                                                                    \
        const int64_t nb = n / QK_K;                                                          \
        if (imatrix == NULL) {                                                                \
            for (int64_t i = 0; i < nb; i++)                                                  \
                qfs_quantize_block_##t(x + i * QK_K, &y[i]);                                  \
        } else {                                                                              \
            for (int64_t i = 0; i < nb; i++)                                                  \
                qfs_quantize_block_##t##_w(x + i * QK_K, imatrix + i * QK_K, &y[i]);          \
        }                                                                                     \
    }                                                                                         \
    void qfs_dequantize_row_##t(const void *vx, float *y, int64_t n)                          \
    {                                                                                         \
        const block_##t *x = vx;                                                              \
        for (int64_t i = 0; i < n / QK_K; i++)                                                \
            qfs_dequantize_block_##t(&x[i], y + i * QK_K);                                    \
    }

QFS_DEFINE_ROWS_K(q2_K)
QFS_DEFINE_ROWS_K(q3_K)
QFS_DEFINE_ROWS_K(q4_K)
QFS_DEFINE_ROWS_K(q5_K)
QFS_DEFINE_ROWS_K(q6_K)
