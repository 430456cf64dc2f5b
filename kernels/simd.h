/* Run-time choice of the CPU's SIMD row quantizers.
 *
 * The type table (qtypes.c) holds the portable functions; a SIMD variant is
 * an optimisation that gives the same bytes (tests/kernels/test_simd.c checks
 * it against the portable function).  qfs_quantize_rows asks
 * qfs_simd_row(t, qfs_simd_level()) and falls back to the table's function
 * when it is NULL.  The level is chosen once, on first use: AVX2 when the CPU
 * has it (x86-64 builds only; the rest of the build stays baseline x86-64),
 * the portable path when the environment variable QFS_SIMD is "off" (tests). */
#ifndef QFS_SIMD_H
#define QFS_SIMD_H

#include <stdint.h>

#include "kernels/qtypes.h"

enum qfs_simd { QFS_SIMD_PORTABLE = 0, QFS_SIMD_AVX2 = 1 };

typedef void (*qfs_row_quantizer)(const float *x, void *y, int64_t n, const float *imatrix);

/* The level in use (thread-safe; chosen on the first call). */
enum qfs_simd qfs_simd_level(void);
/* The best level the CPU supports, whatever QFS_SIMD says. */
enum qfs_simd qfs_simd_supported(void);
/* Use `level` from now on (tests and benchmarks).  Returns 0, or -1 (and
 * changes nothing) when the CPU lacks it. */
int qfs_simd_set(enum qfs_simd level);
/* The row quantizer of type t at `level`, with the signature and contract of
 * qfs_type_info.quantize_row; NULL when t has none at that level (the
 * portable level never has one: use the type table). */
qfs_row_quantizer qfs_simd_row(enum qfs_type t, enum qfs_simd level);

#if defined(__x86_64__)
/* quant_k23_avx2.c, quant_k_avx2.c: call only when qfs_simd_supported() >= QFS_SIMD_AVX2 */
void qfs_quantize_row_q2_K_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_q3_K_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_q4_K_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_q5_K_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_q6_K_avx2(const float *x, void *y, int64_t n, const float *imatrix);
/* quant_iq4_avx2.c */
void qfs_quantize_row_iq4_nl_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_iq4_xs_avx2(const float *x, void *y, int64_t n, const float *imatrix);
/* quant_legacy_avx2.c */
void qfs_quantize_row_q8_0_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_q4_0_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_q4_1_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_q5_0_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_q5_1_avx2(const float *x, void *y, int64_t n, const float *imatrix);
/* quant_iq_avx2.c: the grid i-quants (their prepare still comes first) */
void qfs_quantize_row_iq2_xxs_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_iq2_xs_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_iq2_s_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_iq3_xxs_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_iq3_s_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_iq1_s_avx2(const float *x, void *y, int64_t n, const float *imatrix);
void qfs_quantize_row_iq1_m_avx2(const float *x, void *y, int64_t n, const float *imatrix);
#endif

#endif
