/* Element conversions: source dtypes to f32, and the F32/F16/BF16 "types"
 * (quantize = convert, dequantize = widen).  Bit rules in quant_block.h. */
#include <stdatomic.h>
#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>
#endif

#include "kernels/qtypes.h"
#include "kernels/simd.h"
#include "kernels/quant_block.h"
#include "kernels/quant_rows.h"

uint16_t qfs_f32_to_f16(float f) { return qfs_fp32_to_fp16(f); }
float qfs_f16_to_f32(uint16_t h) { return qfs_fp16_to_fp32(h); }
uint16_t qfs_f32_to_bf16(float f) { return qfs_fp32_to_bf16(f); }
float qfs_bf16_to_f32(uint16_t h) { return qfs_bf16_to_fp32(h); }

size_t qfs_dtype_size(enum qfs_dtype dt)
{
    switch (dt) {
    case QFS_DT_F32: return 4;
    case QFS_DT_F16:
    case QFS_DT_BF16: return 2;
    }
    return 0;
}

/* f16 -> f32 without branches, bit-identical to qfs_fp16_to_fp32 for all
 * 65536 inputs (tests/kernels/test_convert.c checks every one), so that the
 * loops below vectorize.  Exponent and mantissa move into place and are
 * rebiased by 112 << 23; an all-ones exponent gets another 112 << 23 (inf,
 * NaN with its payload, signalling or not); a zero exponent gets 1 << 23 and
 * then loses 2^-14 in an exact float subtraction, which normalises a
 * subnormal (m * 2^-24) and leaves +0 for zero.  The sign goes on last. */
static inline float f16_to_f32_fast(uint16_t h)
{
    const uint32_t em = ((uint32_t)h & 0x7fffu) << 13;
    const uint32_t e = em & 0x0f800000u;
    const uint32_t is_inf_nan = 0u - (uint32_t)(e == 0x0f800000u);
    const uint32_t is_sub = 0u - (uint32_t)(e == 0);
    const uint32_t o = em + (112u << 23) + (is_inf_nan & (112u << 23)) + (is_sub & (1u << 23));
    /* the float subtraction sees 0 - 0 unless the exponent is zero, so a
     * signalling NaN never meets arithmetic (which would quiet it) */
    const float f = qfs_bits_f32(o & is_sub) - qfs_bits_f32(is_sub & (113u << 23));
    const uint32_t r = (qfs_f32_bits(f) & is_sub) | (o & ~is_sub);
    return qfs_bits_f32(r | (((uint32_t)h & 0x8000u) << 16));
}

/* Fixed-size chunks with restrict pointers: gcc -O2 vectorizes only loops of
 * known trip count that need no runtime alias check. */
#define CHUNK 64

static void f16_chunk(const unsigned char *restrict s, float *restrict d)
{
    for (int i = 0; i < CHUNK; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        d[i] = f16_to_f32_fast(h);
    }
}

static void bf16_chunk(const unsigned char *restrict s, float *restrict d)
{
    for (int i = 0; i < CHUNK; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        d[i] = qfs_bits_f32((uint32_t)h << 16);
    }
}

#if defined(__x86_64__)
/* F16C widens 8 halves per instruction, exactly, except that it quiets a signalling NaN
 * (the portable rule keeps it as it is): a chunk holding any NaN takes the portable
 * path, so the floats are the same bit for bit.  0: not done. */
__attribute__((target("avx2,f16c"))) static int f16_chunk_f16c(const unsigned char *restrict s,
                                                                float *restrict d)
{
    const __m256i mag = _mm256_set1_epi16(0x7fff), inf = _mm256_set1_epi16(0x7c00);
    __m256i nan = _mm256_setzero_si256();
    for (int i = 0; i < CHUNK; i += 16) {
        const __m256i h = _mm256_loadu_si256((const __m256i *)(const void *)(s + 2 * i));
        nan = _mm256_or_si256(nan, _mm256_cmpgt_epi16(_mm256_and_si256(h, mag), inf));
    }
    if (!_mm256_testz_si256(nan, nan))
        return 0;
    for (int i = 0; i < CHUNK; i += 8)
        _mm256_storeu_ps(d + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(const void *)(s + 2 * i))));
    return 1;
}

/* -1 unknown, else whether the CPU has F16C (asked once). */
static _Atomic int have_f16c = -1;

static int use_f16c(void)
{
    if (qfs_simd_level() < QFS_SIMD_AVX2)
        return 0;
    int h = atomic_load_explicit(&have_f16c, memory_order_relaxed);
    if (h < 0) {
        /* CPUID leaf 1, ECX bit 29 (clang's __builtin_cpu_supports has no "f16c"); the
         * OS's AVX state was checked with AVX2 by qfs_simd_level */
        unsigned a, b, c, d;
        h = __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29)) ? 1 : 0;
        atomic_store_explicit(&have_f16c, h, memory_order_relaxed);
    }
    return h;
}
#endif

/* src may be unaligned (it points into an mmap'ed safetensors file at any
 * offset), so elements are loaded with memcpy. */
void qfs_to_f32(enum qfs_dtype dt, const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    uint16_t h;
    int64_t i = 0;
    switch (dt) {
    case QFS_DT_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case QFS_DT_F16:
#if defined(__x86_64__)
        if (n >= CHUNK && use_f16c()) {
            for (; i + CHUNK <= n; i += CHUNK)
                if (!f16_chunk_f16c(s + 2 * i, dst + i))
                    f16_chunk(s + 2 * i, dst + i);
        }
#endif
        for (; i + CHUNK <= n; i += CHUNK)
            f16_chunk(s + 2 * i, dst + i);
        for (; i < n; i++) {
            memcpy(&h, s + 2 * i, 2);
            dst[i] = f16_to_f32_fast(h);
        }
        return;
    case QFS_DT_BF16:
        for (; i + CHUNK <= n; i += CHUNK)
            bf16_chunk(s + 2 * i, dst + i);
        for (; i < n; i++) {
            memcpy(&h, s + 2 * i, 2);
            dst[i] = qfs_bf16_to_fp32(h);
        }
        return;
    }
}

void qfs_quantize_row_f32(const float *x, void *y, int64_t n, const float *imatrix)
{
    (void)imatrix;
    memcpy(y, x, (size_t)n * sizeof(float));
}

void qfs_dequantize_row_f32(const void *x, float *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void qfs_quantize_row_f16(const float *x, void *vy, int64_t n, const float *imatrix)
{
    uint16_t *y = vy;
    (void)imatrix;
    for (int64_t i = 0; i < n; i++)
        y[i] = qfs_fp32_to_fp16(x[i]);
}

void qfs_dequantize_row_f16(const void *x, float *y, int64_t n)
{
    qfs_to_f32(QFS_DT_F16, x, y, n);
}

void qfs_quantize_row_bf16(const float *x, void *vy, int64_t n, const float *imatrix)
{
    uint16_t *y = vy;
    (void)imatrix;
    for (int64_t i = 0; i < n; i++)
        y[i] = qfs_fp32_to_bf16(x[i]);
}

void qfs_dequantize_row_bf16(const void *x, float *y, int64_t n)
{
    qfs_to_f32(QFS_DT_BF16, x, y, n);
}
