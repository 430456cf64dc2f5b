/* The type table: one row per implemented type, indexed by the frozen ggml id.
 * Portable facts and the portable CPU functions; the SIMD variants have their
 * own table below (kernels/simd.h), a CUDA backend keeps its own. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/blocks.h"
#include "kernels/qtypes.h"
#include "kernels/quant_rows.h"
#include "kernels/simd.h"

#define ROWS(t) .quantize_row = qfs_quantize_row_##t, .dequantize_row = qfs_dequantize_row_##t
#define IQ_ROWS(t) ROWS(t), .prepare = qfs_prepare_row_##t

static const struct qfs_type_info types[QFS_TYPE_COUNT] = {
    [QFS_TYPE_F32] = {.name = "F32", .blck = 1, .type_size = 4, ROWS(f32),
                      .imatrix_ok = true, .max_err = 0.0f},
    [QFS_TYPE_F16] = {.name = "F16", .blck = 1, .type_size = 2, ROWS(f16),
                      .imatrix_ok = true, .max_err = 1.0f / 2048},
    [QFS_TYPE_BF16] = {.name = "BF16", .blck = 1, .type_size = 2, ROWS(bf16),
                       .imatrix_ok = true, .max_err = 1.0f / 256},
    /* max_err: half a step of the block's grid (Q4_0/Q5_0: a whole step, the
     * extreme opposite to the block's max is clamped from 8 to 7 / 16 to 15),
     * plus the f16 rounding of d and m. */
    [QFS_TYPE_Q4_0] = {.name = "Q4_0", .blck = QK4_0, .type_size = sizeof(block_q4_0),
                       ROWS(q4_0), .imatrix_ok = true, .max_err = 1.0f / 8 + 1.0f / 1024},
    [QFS_TYPE_Q4_1] = {.name = "Q4_1", .blck = QK4_1, .type_size = sizeof(block_q4_1),
                       ROWS(q4_1), .imatrix_ok = true, .max_err = 1.0f / 15 + 1.0f / 512},
    [QFS_TYPE_Q5_0] = {.name = "Q5_0", .blck = QK5_0, .type_size = sizeof(block_q5_0),
                       ROWS(q5_0), .imatrix_ok = true, .max_err = 1.0f / 16 + 1.0f / 1024},
    [QFS_TYPE_Q5_1] = {.name = "Q5_1", .blck = QK5_1, .type_size = sizeof(block_q5_1),
                       ROWS(q5_1), .imatrix_ok = true, .max_err = 1.0f / 31 + 1.0f / 512},
    /* family B (quant_block_b.h).  max_err: TQ/Q2_0 half a step of d = amax
     * plus its f16 rounding; Q1_0 a sign times the mean |x|, so up to amax
     * itself.  IQ4: empirical (the fitted scale is a least-squares choice,
     * half the widest level gap (24) is ~0.106 at d = amax/113); worst seen
     * 0.149 on adversarial two-level blocks, IQ4_XS incl. its 6-bit scales. */
    [QFS_TYPE_IQ4_NL] = {.name = "IQ4_NL", .blck = QK4_NL, .type_size = sizeof(block_iq4_nl),
                         ROWS(iq4_nl), .imatrix_ok = true, .max_err = 0.25f},
    [QFS_TYPE_IQ4_XS] = {.name = "IQ4_XS", .blck = QK_K, .type_size = sizeof(block_iq4_xs),
                         ROWS(iq4_xs), .imatrix_ok = true, .max_err = 0.25f},
    [QFS_TYPE_TQ1_0] = {.name = "TQ1_0", .blck = QK_K, .type_size = sizeof(block_tq1_0),
                        ROWS(tq1_0), .imatrix_ok = true, .max_err = 0.5f + 1.0f / 1024},
    [QFS_TYPE_TQ2_0] = {.name = "TQ2_0", .blck = QK_K, .type_size = sizeof(block_tq2_0),
                        ROWS(tq2_0), .imatrix_ok = true, .max_err = 0.5f + 1.0f / 1024},
    [QFS_TYPE_Q1_0] = {.name = "Q1_0", .blck = QK1_0, .type_size = sizeof(block_q1_0),
                       ROWS(q1_0), .imatrix_ok = true, .max_err = 1.0f + 1.0f / 1024},
    [QFS_TYPE_Q2_0] = {.name = "Q2_0", .blck = QK2_0, .type_size = sizeof(block_q2_0),
                       ROWS(q2_0), .imatrix_ok = true, .max_err = 0.5f + 1.0f / 1024},
    [QFS_TYPE_Q8_0] = {.name = "Q8_0", .blck = QK8_0, .type_size = sizeof(block_q8_0),
                       ROWS(q8_0), .imatrix_ok = true, .max_err = 1.0f / 254 + 1.0f / 1024},
    /* K-quants: max_err is the measured worst case of test_types' round trip
     * (plain path) with about 1.5x headroom; the sub-block scales are
     * themselves quantized, so no simple half-step bound holds. */
    [QFS_TYPE_Q2_K] = {.name = "Q2_K", .blck = QK_K, .type_size = sizeof(block_q2_K),
                       ROWS(q2_K), .imatrix_ok = true, .max_err = 0.75f},
    [QFS_TYPE_Q3_K] = {.name = "Q3_K", .blck = QK_K, .type_size = sizeof(block_q3_K),
                       ROWS(q3_K), .imatrix_ok = true, .max_err = 0.5f},
    [QFS_TYPE_Q4_K] = {.name = "Q4_K", .blck = QK_K, .type_size = sizeof(block_q4_K),
                       ROWS(q4_K), .imatrix_ok = true, .max_err = 0.25f},
    [QFS_TYPE_Q5_K] = {.name = "Q5_K", .blck = QK_K, .type_size = sizeof(block_q5_K),
                       ROWS(q5_K), .imatrix_ok = true, .max_err = 0.125f},
    /* Grid i-quants (quant_iq.c).  max_err: loose round-trip sanity bounds,
     * the measured worst case of test_types with ~1.5x headroom: a 1-2 bit
     * codebook cannot follow a block's outliers, and the parity-coded signs
     * (IQ2_XXS/XS, IQ3_XXS) flip the least important value of a group. */
    [QFS_TYPE_IQ2_XXS] = {.name = "IQ2_XXS", .blck = QK_K, .type_size = sizeof(block_iq2_xxs),
                          IQ_ROWS(iq2_xxs), .imatrix_ok = true, .imatrix_required = true,
                          .max_err = 1.5f},
    [QFS_TYPE_IQ2_XS] = {.name = "IQ2_XS", .blck = QK_K, .type_size = sizeof(block_iq2_xs),
                         IQ_ROWS(iq2_xs), .imatrix_ok = true, .imatrix_required = true,
                         .max_err = 1.0f},
    [QFS_TYPE_IQ2_S] = {.name = "IQ2_S", .blck = QK_K, .type_size = sizeof(block_iq2_s),
                        IQ_ROWS(iq2_s), .imatrix_ok = true, .max_err = 1.0f},
    [QFS_TYPE_IQ3_XXS] = {.name = "IQ3_XXS", .blck = QK_K, .type_size = sizeof(block_iq3_xxs),
                          IQ_ROWS(iq3_xxs), .imatrix_ok = true, .max_err = 0.85f},
    [QFS_TYPE_IQ3_S] = {.name = "IQ3_S", .blck = QK_K, .type_size = sizeof(block_iq3_s),
                        IQ_ROWS(iq3_s), .imatrix_ok = true, .max_err = 0.625f},
    [QFS_TYPE_IQ1_S] = {.name = "IQ1_S", .blck = QK_K, .type_size = sizeof(block_iq1_s),
                        IQ_ROWS(iq1_s), .imatrix_ok = true, .imatrix_required = true,
                        .max_err = 1.25f},
    [QFS_TYPE_IQ1_M] = {.name = "IQ1_M", .blck = QK_K, .type_size = sizeof(block_iq1_m),
                        IQ_ROWS(iq1_m), .imatrix_ok = true, .imatrix_required = true,
                        .max_err = 1.5f},
    [QFS_TYPE_Q6_K] = {.name = "Q6_K", .blck = QK_K, .type_size = sizeof(block_q6_K),
                       ROWS(q6_K), .imatrix_ok = true, .max_err = 1.0f / 32},
};

const struct qfs_type_info *qfs_type_info(enum qfs_type t)
{
    if ((unsigned)t >= QFS_TYPE_COUNT || types[t].name == NULL)
        return NULL;
    return &types[t];
}

int qfs_type_from_name(const char *name)
{
    if (name == NULL)
        return -1;
    for (int t = 0; t < QFS_TYPE_COUNT; t++)
        if (types[t].name != NULL && strcmp(types[t].name, name) == 0)
            return t;
    return -1;
}

size_t qfs_row_size(enum qfs_type t, int64_t n)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    if (ti == NULL || n < 0 || n % ti->blck != 0)
        return 0;
    return (size_t)(n / ti->blck) * ti->type_size;
}

/* ---- SIMD dispatch (kernels/simd.h) ---------------------------------------- */

#if defined(__x86_64__)
static const qfs_row_quantizer simd_rows_avx2[QFS_TYPE_COUNT] = {
    [QFS_TYPE_Q4_0] = qfs_quantize_row_q4_0_avx2,
    [QFS_TYPE_Q4_1] = qfs_quantize_row_q4_1_avx2,
    [QFS_TYPE_Q5_0] = qfs_quantize_row_q5_0_avx2,
    [QFS_TYPE_Q5_1] = qfs_quantize_row_q5_1_avx2,
    [QFS_TYPE_Q8_0] = qfs_quantize_row_q8_0_avx2,
    [QFS_TYPE_Q2_K] = qfs_quantize_row_q2_K_avx2,
    [QFS_TYPE_Q3_K] = qfs_quantize_row_q3_K_avx2,
    [QFS_TYPE_Q4_K] = qfs_quantize_row_q4_K_avx2,
    [QFS_TYPE_Q5_K] = qfs_quantize_row_q5_K_avx2,
    [QFS_TYPE_Q6_K] = qfs_quantize_row_q6_K_avx2,
    [QFS_TYPE_IQ4_NL] = qfs_quantize_row_iq4_nl_avx2,
    [QFS_TYPE_IQ4_XS] = qfs_quantize_row_iq4_xs_avx2,
    [QFS_TYPE_IQ2_XXS] = qfs_quantize_row_iq2_xxs_avx2,
    [QFS_TYPE_IQ2_XS] = qfs_quantize_row_iq2_xs_avx2,
    [QFS_TYPE_IQ2_S] = qfs_quantize_row_iq2_s_avx2,
    [QFS_TYPE_IQ3_XXS] = qfs_quantize_row_iq3_xxs_avx2,
    [QFS_TYPE_IQ3_S] = qfs_quantize_row_iq3_s_avx2,
    [QFS_TYPE_IQ1_S] = qfs_quantize_row_iq1_s_avx2,
    [QFS_TYPE_IQ1_M] = qfs_quantize_row_iq1_m_avx2,
};
#endif

/* -1 until the first qfs_simd_level(); every thread computes the same value,
 * so a race on the first call is harmless. */
static _Atomic int simd_level = -1;

enum qfs_simd qfs_simd_supported(void)
{
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2"))
        return QFS_SIMD_AVX2;
#endif
    return QFS_SIMD_PORTABLE;
}

enum qfs_simd qfs_simd_level(void)
{
    int l = atomic_load_explicit(&simd_level, memory_order_relaxed);
    if (l < 0) {
        const char *env = getenv("QFS_SIMD");
        l = env != NULL && strcmp(env, "off") == 0 ? QFS_SIMD_PORTABLE : (int)qfs_simd_supported();
        atomic_store_explicit(&simd_level, l, memory_order_relaxed);
    }
    return (enum qfs_simd)l;
}

int qfs_simd_set(enum qfs_simd level)
{
    if ((int)level < 0 || level > qfs_simd_supported())
        return -1;
    atomic_store_explicit(&simd_level, (int)level, memory_order_relaxed);
    return 0;
}

qfs_row_quantizer qfs_simd_row(enum qfs_type t, enum qfs_simd level)
{
    if ((unsigned)t >= QFS_TYPE_COUNT)
        return NULL;
#if defined(__x86_64__)
    if (level == QFS_SIMD_AVX2)
        return simd_rows_avx2[t];
#endif
    (void)level;
    return NULL;
}

size_t qfs_quantize_rows(enum qfs_type t, const float *src, void *dst, int64_t nrows,
                         int64_t n_per_row, const float *imatrix)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    const size_t row_size = qfs_row_size(t, n_per_row);
    if (ti == NULL || row_size == 0 || nrows < 0)
        return 0;
    if (imatrix != NULL && !ti->imatrix_ok)
        return 0;
    if (imatrix == NULL && ti->imatrix_required)
        return 0; /* ggml asserts, llama-quantize refuses: no defined bytes */
    if (ti->prepare && ti->prepare() < 0)
        return 0; /* out of memory for its tables */
    qfs_row_quantizer row = qfs_simd_row(t, qfs_simd_level());
    if (row == NULL)
        row = ti->quantize_row;
    unsigned char *out = dst;
    for (int64_t r = 0; r < nrows; r++)
        row(src + r * n_per_row, out + (size_t)r * row_size, n_per_row, imatrix);
    return (size_t)nrows * row_size;
}
