/* Row functions of the portable CPU path (internal to kernels/).
 *
 * Each quantized type has qfs_quantize_row_<t> / qfs_dequantize_row_<t> with
 * the signatures of struct qfs_type_info; they loop over blocks with the
 * per-block functions of quant_block.h.  n must be a multiple of the block
 * size (qfs_quantize_rows checks).  The imatrix argument is ignored for now:
 * qfs_quantize_rows refuses an imatrix for types that would need it. */
#ifndef QFS_QUANT_ROWS_H
#define QFS_QUANT_ROWS_H

#include <stdint.h>

#define QFS_DECLARE_ROWS(t)                                                                  \
    void qfs_quantize_row_##t(const float *x, void *y, int64_t n, const float *imatrix);    \
    void qfs_dequantize_row_##t(const void *x, float *y, int64_t n)

/* Defines both row functions of type t from its block struct and block functions. */
#define QFS_DEFINE_ROWS(t, qk)                                                               \
    void qfs_quantize_row_##t(const float *x, void *vy, int64_t n, const float *imatrix)   \
    {                                                                                        \
        block_##t *y = vy;                                                                   \
        (void)imatrix;                                                                       \
        for (int64_t i = 0; i < n / (qk); i++)                                               \
            qfs_quantize_block_##t(x + i * (qk), &y[i]);                                     \
    }                                                                                        \
    void qfs_dequantize_row_##t(const void *vx, float *y, int64_t n)                         \
    {                                                                                        \
        const block_##t *x = vx;                                                             \
        for (int64_t i = 0; i < n / (qk); i++)                                               \
            qfs_dequantize_block_##t(&x[i], y + i * (qk));                                   \
    }

QFS_DECLARE_ROWS(q4_0);
QFS_DECLARE_ROWS(q4_1);
QFS_DECLARE_ROWS(q5_0);
QFS_DECLARE_ROWS(q5_1);
QFS_DECLARE_ROWS(q8_0);
QFS_DECLARE_ROWS(q2_K);
QFS_DECLARE_ROWS(q3_K);
QFS_DECLARE_ROWS(q4_K);
QFS_DECLARE_ROWS(q5_K);
QFS_DECLARE_ROWS(q6_K);
QFS_DECLARE_ROWS(f32);
QFS_DECLARE_ROWS(f16);
QFS_DECLARE_ROWS(bf16);
/* family B: quant_iq4.c, quant_tq.c, quant_low.c (imatrix used by iq4_*) */
QFS_DECLARE_ROWS(iq4_nl);
QFS_DECLARE_ROWS(iq4_xs);
QFS_DECLARE_ROWS(tq1_0);
QFS_DECLARE_ROWS(tq2_0);
QFS_DECLARE_ROWS(q1_0);
QFS_DECLARE_ROWS(q2_0);
/* grid i-quants: quant_iq.c (imatrix used; IQ2_XXS/IQ2_XS/IQ1_S need one), each
 * with qfs_prepare_row_<t> (qfs_type_info.prepare: builds its lattice) */
#define QFS_DECLARE_IQ_ROWS(t)                                                               \
    QFS_DECLARE_ROWS(t);                                                                     \
    int qfs_prepare_row_##t(void)
QFS_DECLARE_IQ_ROWS(iq2_xxs);
QFS_DECLARE_IQ_ROWS(iq2_xs);
QFS_DECLARE_IQ_ROWS(iq2_s);
QFS_DECLARE_IQ_ROWS(iq3_xxs);
QFS_DECLARE_IQ_ROWS(iq3_s);
QFS_DECLARE_IQ_ROWS(iq1_s);
QFS_DECLARE_IQ_ROWS(iq1_m);

#endif
