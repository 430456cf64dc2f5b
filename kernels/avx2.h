/* AVX2 pieces shared by the K-quant row quantizers (quant_k_avx2.c,
 * quant_k23_avx2.c).  Every function carries target("avx2") and is static
 * inline, so the including file stays baseline x86-64 everywhere else; the
 * rules of quant_k_avx2.c's header hold: each lane runs the scalar sequence
 * of float operations of one sub-block (no FMA, sums in element order). */
#ifndef QFS_KERNELS_AVX2_H
#define QFS_KERNELS_AVX2_H

#if defined(__x86_64__)

#include <immintrin.h>

#include "kernels/quant_block_k.h"

#define QFS_AVX2 __attribute__((target("avx2")))
/* the searches: inlined so that n, nmax and use_mad fold to constants */
#define QFS_AVX2_INLINE __attribute__((target("avx2"), always_inline))

/* ---- helpers ---------------------------------------------------------------- */

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

/* 32 int32 (4 vectors, elements in order, each 0..255) -> 32 bytes */
static inline QFS_AVX2 void store_u8x32(uint8_t *dst, __m256i a, __m256i b, __m256i c, __m256i d)
{
    const __m256i ab = _mm256_packs_epi32(a, b), cd = _mm256_packs_epi32(c, d);
    const __m256i p = _mm256_packus_epi16(ab, cd);
    const __m256i v = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    _mm256_storeu_si256((__m256i *)dst, v);
}

/* qfs_sum_sq_k of the 8 super-blocks at x, x + QK_K, ..: one lane each, the
 * sums in element order */
static inline QFS_AVX2 void sum_sq_k8(const float *x, float *out)
{
    __m256 acc = _mm256_setzero_ps();
    for (int c = 0; c < QK_K / 8; c++) {
        __m256 T[8];
        tr8(x + 8 * c, QK_K, T);
        for (int k = 0; k < 8; k++)
            acc = _mm256_add_ps(acc, _mm256_mul_ps(T[k], T[k]));
    }
    _mm256_storeu_ps(out, acc);
}

/* ---- sub-block searches ------------------------------------------------------ */

/* What the search of one lane (sub-block) leaves: the kept scale, -min, and
 * the grid its levels come from (L = clamp(nearest(L_isc * (x - L_min))),
 * all zero for a constant sub-block: L_isc = L_min = 0). */
struct kx8 {
    float scale[8], the_min[8], L_isc[8], L_min[8];
};

/* qfs_make_qkx_quants(n, nmax, x_j, w_j, ..., rmin, rdelta, nstep, use_mad)
 * for nv * 8 sub-blocks j at once (n <= 32, nv <= KX_NV): xT[n * v + i],
 * wT[n * v + i] lane j = x_j[i], w_j[i] of sub-block 8v + j, o[v] its
 * results.  The nv vectors are independent chains interleaved, which hides
 * the latency of the sums (each still in element order). */
#define KX_NV 4
static inline QFS_AVX2_INLINE void kx_search(const __m256 *xT, const __m256 *wT, int nv, int n,
                                             int nmax, float rmin, float rdelta, int nstep,
                                             int use_mad, struct kx8 *o)
{
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const __m256 zero = _mm256_setzero_ps();
    const __m256i ilo = _mm256_setzero_si256(), ihi = _mm256_set1_epi32(nmax);
    __m256 min[KX_NV], max[KX_NV], sum_w[KX_NV], sum_x[KX_NV], flat[KX_NV];
    __m256 scale[KX_NV], best[KX_NV], L_isc[KX_NV], L_min[KX_NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        const __m256 *x = xT + n * v, *w = wT + n * v;
        min[v] = x[0];
        max[v] = x[0];
        sum_w[v] = w[0];
        sum_x[v] = _mm256_mul_ps(w[0], x[0]);
        for (int i = 1; i < n; i++) {
            min[v] = _mm256_min_ps(x[i], min[v]); /* x < min ? x : min */
            max[v] = _mm256_max_ps(x[i], max[v]); /* x > max ? x : max */
            sum_w[v] = _mm256_add_ps(sum_w[v], w[i]);
            sum_x[v] = _mm256_add_ps(sum_x[v], _mm256_mul_ps(w[i], x[i]));
        }
        min[v] = _mm256_andnot_ps(_mm256_cmp_ps(min[v], zero, _CMP_GT_OQ), min[v]); /* > 0: +0 */
        flat[v] = _mm256_cmp_ps(max[v], min[v], _CMP_EQ_OQ);

        /* the min/max grid */
        const __m256 iscale =
            _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max[v], min[v]));
        scale[v] = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
        best[v] = zero;
        for (int i = 0; i < n; i++) {
            const __m256 f = _mm256_mul_ps(iscale, _mm256_sub_ps(x[i], min[v]));
            const __m256i l = nearest_clamp(f, ilo, ihi);
            __m256 diff = _mm256_add_ps(_mm256_mul_ps(scale[v], _mm256_cvtepi32_ps(l)), min[v]);
            diff = _mm256_sub_ps(diff, x[i]);
            diff = use_mad ? _mm256_and_ps(diff, absmask) : _mm256_mul_ps(diff, diff);
            best[v] = _mm256_add_ps(best[v], _mm256_mul_ps(w[i], diff));
        }
        L_isc[v] = iscale;
        L_min[v] = min[v];
    }

    __m256 lev[32 * KX_NV];
    for (int is = 0; is <= nstep; is++) {
        const __m256 num = _mm256_set1_ps(rmin + rdelta * (float)is + (float)nmax);
        __m256 isc[KX_NV], sl[KX_NV], sl2[KX_NV], sxl[KX_NV], err[KX_NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            isc[v] = _mm256_div_ps(num, _mm256_sub_ps(max[v], min[v]));
            sl[v] = sl2[v] = sxl[v] = err[v] = zero;
        }
        for (int i = 0; i < n; i++) {
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                const __m256 x = xT[n * v + i], w = wT[n * v + i];
                const __m256 f = _mm256_mul_ps(isc[v], _mm256_sub_ps(x, min[v]));
                const __m256 fl = _mm256_cvtepi32_ps(nearest_clamp(f, ilo, ihi));
                const __m256 wl = _mm256_mul_ps(w, fl);
                lev[n * v + i] = fl;
                sl[v] = _mm256_add_ps(sl[v], wl);
                sl2[v] = _mm256_add_ps(sl2[v], _mm256_mul_ps(wl, fl));
                sxl[v] = _mm256_add_ps(sxl[v], _mm256_mul_ps(wl, x));
            }
        }
        __m256 D[KX_NV], s[KX_NV], m[KX_NV];
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            D[v] = _mm256_sub_ps(_mm256_mul_ps(sum_w[v], sl2[v]), _mm256_mul_ps(sl[v], sl[v]));
            const __m256 sn =
                _mm256_sub_ps(_mm256_mul_ps(sum_w[v], sxl[v]), _mm256_mul_ps(sum_x[v], sl[v]));
            const __m256 mn =
                _mm256_sub_ps(_mm256_mul_ps(sl2[v], sum_x[v]), _mm256_mul_ps(sl[v], sxl[v]));
            s[v] = _mm256_div_ps(sn, D[v]);
            m[v] = _mm256_div_ps(mn, D[v]);
            const __m256 mpos = _mm256_cmp_ps(m[v], zero, _CMP_GT_OQ);
            m[v] = _mm256_andnot_ps(mpos, m[v]);
            s[v] = blend(s[v], _mm256_div_ps(sxl[v], sl2[v]), mpos);
        }
        for (int i = 0; i < n; i++) {
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                __m256 diff = _mm256_add_ps(_mm256_mul_ps(s[v], lev[n * v + i]), m[v]);
                diff = _mm256_sub_ps(diff, xT[n * v + i]);
                diff = use_mad ? _mm256_and_ps(diff, absmask) : _mm256_mul_ps(diff, diff);
                err[v] = _mm256_add_ps(err[v], _mm256_mul_ps(wT[n * v + i], diff));
            }
        }
#pragma GCC unroll 4
        for (int v = 0; v < nv; v++) {
            __m256 keep = _mm256_and_ps(_mm256_cmp_ps(D[v], zero, _CMP_GT_OQ),
                                        _mm256_cmp_ps(err[v], best[v], _CMP_LT_OQ));
            keep = _mm256_andnot_ps(flat[v], keep);
            best[v] = blend(best[v], err[v], keep);
            scale[v] = blend(scale[v], s[v], keep);
            L_isc[v] = blend(L_isc[v], isc[v], keep);
            L_min[v] = blend(L_min[v], min[v], keep);
            min[v] = blend(min[v], m[v], keep);
        }
    }
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        _mm256_storeu_ps(o[v].scale, _mm256_andnot_ps(flat[v], scale[v]));
        _mm256_storeu_ps(o[v].the_min, _mm256_xor_ps(min[v], _mm256_set1_ps(-0.0f)));
        _mm256_storeu_ps(o[v].L_isc, _mm256_andnot_ps(flat[v], L_isc[v]));
        _mm256_storeu_ps(o[v].L_min, _mm256_andnot_ps(flat[v], L_min[v]));
    }
}

/* Levels of sub-block j (n elements) as kx_search left them (only needed
 * when its decoded scale is 0). */
static inline QFS_AVX2 void kx_levels(const float *xs, int n, float isc, float lmin, int nmax,
                                      uint8_t *L)
{
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)qfs_imax(0, qfs_imin(nmax, qfs_nearest_int(isc * (xs[i] - lmin))));
}

/* qfs_make_qx_quants_rmse1(16, nmax, x_j, L_j, qw_j) for 8 sub-blocks j at
 * once (xT[i] lane j = x_j[i]; qT likewise, or NULL for weights x^2).
 * Returns the scales; best_isc gets each lane's winning inverse scale, and
 * zero_group all ones in the lanes of an all-zero sub-block (levels 0). */
static inline QFS_AVX2_INLINE __m256 qx_search8(const __m256 *xT, const __m256 *qT, int NMAX,
                                                __m256 *best_isc, __m256 *zero_group_out)
{
    enum { N = 16 };
    const __m256 zero = _mm256_setzero_ps();
    const __m256i ilo = _mm256_set1_epi32(-NMAX), ihi = _mm256_set1_epi32(NMAX - 1);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 amax = zero, max = zero;
    __m256 w[N], wx[N];
    for (int i = 0; i < N; i++) {
        const __m256 ax = _mm256_and_ps(xT[i], absmask);
        const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
        amax = blend(amax, ax, gt);
        max = blend(max, xT[i], gt);
        w[i] = qT != NULL ? qT[i] : _mm256_mul_ps(xT[i], xT[i]);
        wx[i] = _mm256_mul_ps(w[i], xT[i]);
    }
    const __m256 zero_group = _mm256_cmp_ps(amax, _mm256_set1_ps(QFS_GROUP_MAX_EPS), _CMP_LT_OQ);

    /* trial 0: -nmax/max; then is = -9..-1, 1..9; 19 pads to 5 groups of 4
     * (a copy of 18, never chosen).  The trials of a group run side by side
     * (independent sums, each in element order), the choice is in order. */
    enum { G = 4, NT = 20 };
    __m256 scale = zero, best = zero, bisc = zero;
    for (int t0 = 0; t0 < NT; t0 += G) {
        __m256 isc[G], sumlx[G], suml2[G];
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            const int t = t0 + g < 19 ? t0 + g : 18;
            const int is = t <= 9 ? t - 10 : t - 9;
            const float num = t == 0 ? (float)(-NMAX) : -((float)NMAX + 0.1f * (float)is);
            isc[g] = _mm256_div_ps(_mm256_set1_ps(num), max);
            sumlx[g] = suml2[g] = zero;
        }
        for (int i = 0; i < N; i++) {
#pragma GCC unroll 4
            for (int g = 0; g < G; g++) {
                const __m256i l = nearest_clamp(_mm256_mul_ps(isc[g], xT[i]), ilo, ihi);
                const __m256 fl = _mm256_cvtepi32_ps(l);
                sumlx[g] = _mm256_add_ps(sumlx[g], _mm256_mul_ps(wx[i], fl));
                suml2[g] = _mm256_add_ps(suml2[g], _mm256_mul_ps(_mm256_mul_ps(w[i], fl), fl));
            }
        }
#pragma GCC unroll 4
        for (int g = 0; g < G; g++) {
            if (t0 + g >= 19)
                break;
            const __m256 s = _mm256_div_ps(sumlx[g], suml2[g]);
            if (t0 + g == 0) {
                scale = _mm256_and_ps(_mm256_cmp_ps(suml2[g], zero, _CMP_NEQ_UQ), s);
                best = _mm256_mul_ps(scale, sumlx[g]);
                bisc = isc[g];
            } else {
                const __m256 better = _mm256_and_ps(
                    _mm256_cmp_ps(suml2[g], zero, _CMP_GT_OQ),
                    _mm256_cmp_ps(_mm256_mul_ps(sumlx[g], sumlx[g]),
                                  _mm256_mul_ps(best, suml2[g]), _CMP_GT_OQ));
                scale = blend(scale, s, better);
                best = blend(best, _mm256_mul_ps(s, sumlx[g]), better);
                bisc = blend(bisc, isc[g], better);
            }
        }
    }
    *best_isc = bisc;
    *zero_group_out = zero_group;
    return _mm256_andnot_ps(zero_group, scale);
}

#endif /* __x86_64__ */

#endif
