/* AVX2 helpers of quant_iq4_avx2.c and quant_legacy_avx2.c (static inline,
 * target("avx2") each; include only from x86-64 builds).  tr8, nearest_clamp
 * blend and store_u8x32 are the same as quant_k_avx2.c's.
 *
 * Every helper does per lane exactly what the named scalar code does, bit
 * for bit (no FMA, no reassociation). */
#ifndef QFS_AVX2_B_H
#define QFS_AVX2_B_H

#include <immintrin.h>
#include <stdint.h>

#ifndef QFS_AVX2
#define QFS_AVX2 __attribute__((target("avx2")))
#endif

/* out[c] lane r = src[r * stride + c], r, c = 0..7 */
static inline QFS_AVX2 void tr8(const float *src, int stride, __m256 *out)
{
    const __m256 r0 = _mm256_loadu_ps(src + 0 * stride), r1 = _mm256_loadu_ps(src + 1 * stride);
    const __m256 r2 = _mm256_loadu_ps(src + 2 * stride), r3 = _mm256_loadu_ps(src + 3 * stride);
    const __m256 r4 = _mm256_loadu_ps(src + 4 * stride), r5 = _mm256_loadu_ps(src + 5 * stride);
    const __m256 r6 = _mm256_loadu_ps(src + 6 * stride), r7 = _mm256_loadu_ps(src + 7 * stride);
    const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
    const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
    const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
    const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
    const __m256 s0 = _mm256_shuffle_ps(t0, t2, 0x44), s1 = _mm256_shuffle_ps(t0, t2, 0xEE);
    const __m256 s2 = _mm256_shuffle_ps(t1, t3, 0x44), s3 = _mm256_shuffle_ps(t1, t3, 0xEE);
    const __m256 s4 = _mm256_shuffle_ps(t4, t6, 0x44), s5 = _mm256_shuffle_ps(t4, t6, 0xEE);
    const __m256 s6 = _mm256_shuffle_ps(t5, t7, 0x44), s7 = _mm256_shuffle_ps(t5, t7, 0xEE);
    out[0] = _mm256_permute2f128_ps(s0, s4, 0x20);
    out[1] = _mm256_permute2f128_ps(s1, s5, 0x20);
    out[2] = _mm256_permute2f128_ps(s2, s6, 0x20);
    out[3] = _mm256_permute2f128_ps(s3, s7, 0x20);
    out[4] = _mm256_permute2f128_ps(s0, s4, 0x31);
    out[5] = _mm256_permute2f128_ps(s1, s5, 0x31);
    out[6] = _mm256_permute2f128_ps(s2, s6, 0x31);
    out[7] = _mm256_permute2f128_ps(s3, s7, 0x31);
}

/* xT[i] lane j = x[32 * j + i]: 8 consecutive 32-element blocks, one per lane */
static inline QFS_AVX2 void tr32x8(const float *x, __m256 *xT)
{
    for (int b = 0; b < 4; b++)
        tr8(x + 8 * b, 32, xT + 8 * b);
}

/* qfs_imax(lo, qfs_imin(hi, qfs_nearest_int(f))) per lane, bit for bit
 * (the same 1.5*2^23 trick on the same float sum) */
static inline QFS_AVX2 __m256i nearest_clamp(__m256 f, __m256i lo, __m256i hi)
{
    const __m256 v = _mm256_add_ps(f, _mm256_set1_ps(12582912.f));
    __m256i i = _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x007fffff));
    i = _mm256_sub_epi32(i, _mm256_set1_epi32(0x00400000));
    return _mm256_max_epi32(lo, _mm256_min_epi32(hi, i));
}

static inline QFS_AVX2 __m256 blend(__m256 a, __m256 b, __m256 mask)
{
    return _mm256_blendv_ps(a, b, mask); /* mask ? b : a */
}

static inline QFS_AVX2 __m256 abs_ps(__m256 x)
{
    return _mm256_and_ps(x, _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)));
}

/* The first element of largest magnitude of each lane, as the loop
 *   if (amax < fabsf(x[i])) { amax = fabsf(x[i]); max = x[i]; }
 * from amax = max = 0 leaves it (qfs_first_absmax; NaN never wins). */
static inline QFS_AVX2 __m256 first_absmax8(const __m256 *xT, int n, __m256 *amax_out)
{
    __m256 amax = _mm256_setzero_ps(), max = _mm256_setzero_ps();
    for (int i = 0; i < n; i++) {
        const __m256 ax = abs_ps(xT[i]);
        const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = blend(amax, ax, gt);
        max = blend(max, xT[i], gt);
    }
    *amax_out = amax;
    return max;
}

/* Lane j = max of the 8 lanes of a[j] (a[j] free of NaN). */
static inline QFS_AVX2 __m256 hmax8x8(const __m256 *a)
{
    __m256 s[4];
    for (int k = 0; k < 4; k++)
        s[k] = _mm256_max_ps(_mm256_shuffle_ps(a[2 * k], a[2 * k + 1], 0x88),
                             _mm256_shuffle_ps(a[2 * k], a[2 * k + 1], 0xDD));
    const __m256 u0 = _mm256_max_ps(_mm256_shuffle_ps(s[0], s[1], 0x88),
                                    _mm256_shuffle_ps(s[0], s[1], 0xDD));
    const __m256 u1 = _mm256_max_ps(_mm256_shuffle_ps(s[2], s[3], 0x88),
                                    _mm256_shuffle_ps(s[2], s[3], 0xDD));
    /* u0 lanes: a0 a1 a2 a3 (low half) | a0 a1 a2 a3 (high half); u1: a4..a7 */
    return _mm256_max_ps(_mm256_permute2f128_ps(u0, u1, 0x20),
                         _mm256_permute2f128_ps(u0, u1, 0x31));
}

/* qfs_fp32_to_fp16 per lane (the low 16 bits of each int32 lane).  Assumes
 * the default rounding mode (round to nearest even), as qfs_nearest_int does. */
static inline QFS_AVX2 __m256i fp32_to_fp16_8(__m256 f)
{
    const __m256i x = _mm256_castps_si256(f);
    const __m256i ax = _mm256_and_si256(x, _mm256_set1_epi32(0x7fffffff));
    const __m256i sign = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(0x8000));
    /* normal: rebias, round the 13 dropped bits to nearest even */
    const __m256i r = _mm256_sub_epi32(ax, _mm256_set1_epi32((127 - 15) << 23));
    const __m256i odd = _mm256_and_si256(_mm256_srli_epi32(r, 13), _mm256_set1_epi32(1));
    __m256i q = _mm256_srli_epi32(
        _mm256_add_epi32(r, _mm256_add_epi32(_mm256_set1_epi32(0xfff), odd)), 13);
    /* below 2^-14: |f| * 2^24 rounded to an integer (exact scaling, RNE) */
    const __m256 sub =
        _mm256_mul_ps(_mm256_castsi256_ps(ax), _mm256_set1_ps(16777216.0f));
    const __m256i qs = _mm256_cvtps_epi32(sub);
    const __m256i is_sub = _mm256_cmpgt_epi32(_mm256_set1_epi32(0x38800000), ax);
    q = _mm256_blendv_epi8(q, qs, is_sub);
    /* overflow (>= 65520) to inf */
    const __m256i is_inf = _mm256_cmpgt_epi32(ax, _mm256_set1_epi32(0x477ff000 - 1));
    q = _mm256_blendv_epi8(q, _mm256_set1_epi32(0x7c00), is_inf);
    /* NaN: quiet, top 9 payload bits */
    const __m256i is_nan = _mm256_cmpgt_epi32(ax, _mm256_set1_epi32(0x7f800000));
    const __m256i qn = _mm256_or_si256(
        _mm256_set1_epi32(0x7e00),
        _mm256_and_si256(_mm256_srli_epi32(ax, 13), _mm256_set1_epi32(0x3ff)));
    q = _mm256_blendv_epi8(q, qn, is_nan);
    return _mm256_or_si256(q, sign);
}

/* 32 int32 (4 vectors, elements in order, each 0..255) -> 32 bytes */
static inline QFS_AVX2 void store_u8x32(uint8_t *dst, __m256i a, __m256i b, __m256i c, __m256i d)
{
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i p = _mm256_packus_epi16(ab, cd);
    const __m256i v = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, v);
}

/* 32 int32 levels in element order (4 vectors, each 0..15) -> the 16 bytes
 * of qfs_pack_nibbles32 (element j low nibble, j + 16 high) */
static inline QFS_AVX2 void store_nibbles32(uint8_t *qs, __m256i q0, __m256i q1, __m256i q2,
                                            __m256i q3)
{
    const __m256i lo = _mm256_or_si256(q0, _mm256_slli_epi32(q2, 4));
    const __m256i hi = _mm256_or_si256(q1, _mm256_slli_epi32(q3, 4));
    const __m256i p = _mm256_permute4x64_epi64(_mm256_packs_epi32(lo, hi), 0xD8);
    const __m128i b = _mm_packus_epi16(_mm256_castsi256_si128(p), _mm256_extracti128_si256(p, 1));
    _mm_storeu_si128((__m128i *)qs, b);
}

/* Bit 4 of each of 32 int32 levels (element order), element j at bit j. */
static inline QFS_AVX2 uint32_t bit4_mask32(__m256i q0, __m256i q1, __m256i q2, __m256i q3)
{
    const uint32_t m0 = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q0, 27)));
    const uint32_t m1 = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q1, 27)));
    const uint32_t m2 = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q2, 27)));
    const uint32_t m3 = (uint32_t)_mm256_movemask_ps(_mm256_castsi256_ps(_mm256_slli_epi32(q3, 27)));
    return m0 | (m1 << 8) | (m2 << 16) | (m3 << 24);
}

#endif
