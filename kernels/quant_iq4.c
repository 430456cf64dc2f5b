/* Portable row loops of IQ4_NL (32-element blocks) and IQ4_XS (256-element
 * super-blocks).  ggml_quantize_chunk runs the same search with or without an
 * importance matrix (weights x^2 without one); the arithmetic lives in
 * quant_block_b.h. */
#include "kernels/quant_block_b.h"
#include "kernels/quant_rows.h"

void qfs_quantize_row_iq4_nl(const float *x, void *vy, int64_t n, const float *imatrix)
{
    block_iq4_nl *y = vy;
    for (int64_t i = 0; i < n / QK4_NL; i++)
        qfs_quantize_block_iq4_nl(x + i * QK4_NL, imatrix != NULL ? imatrix + i * QK4_NL : NULL,
                                  &y[i]);
}

void qfs_dequantize_row_iq4_nl(const void *vx, float *y, int64_t n)
{
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < n / QK4_NL; i++)
        qfs_dequantize_block_iq4_nl(&x[i], y + i * QK4_NL);
}

void qfs_quantize_row_iq4_xs(const float *x, void *vy, int64_t n, const float *imatrix)
{
    block_iq4_xs *y = vy;
    for (int64_t i = 0; i < n / QK_K; i++)
        qfs_quantize_block_iq4_xs(x + i * QK_K, imatrix != NULL ? imatrix + i * QK_K : NULL, &y[i]);
}

void qfs_dequantize_row_iq4_xs(const void *vx, float *y, int64_t n)
{
    const block_iq4_xs *x = vx;
    for (int64_t i = 0; i < n / QK_K; i++)
        qfs_dequantize_block_iq4_xs(&x[i], y + i * QK_K);
}
