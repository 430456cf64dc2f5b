/* AVX2 row quantizers of Q4_K, Q5_K and Q6_K (plain and importance-weighted).
 *
 * Same bytes as the portable functions of quant_block_k.h, by construction:
 * every vector lane runs exactly the scalar sequence of float operations of
 * one sub-block (mul, add, sub, div, sqrt: all correctly rounded, no FMA, the
 * sums in element order), and only independent sub-blocks share a vector.
 *
 *  - Q4_K / Q5_K: the 8 sub-blocks of 32 of a super-block are the 8 lanes.
 *    The search (make_qkx2/3_quants) runs its trials one after the other in
 *    every lane at once, each lane with its own running min and best error,
 *    so the "a kept trial moves min" dependency costs nothing and no trial is
 *    computed twice (the portable code evaluates trials side by side and must
 *    restart a batch whenever min moves).
 *  - Q6_K: the 16 sub-blocks of 16 are two vectors of 8 lanes; the 19 trial
 *    scales of make_qx_quants (rmse_type 1) run one after the other, and the
 *    sequential choice of the winner is a per-lane blend in trial order.
 *
 * Loads are transposed so that vector i holds element i of every sub-block.
 * Levels of the search are only materialised for a sub-block whose decoded
 * scale is 0 (the reference keeps them then); every other sub-block is
 * re-quantized with its decoded scale, vectorized along the elements.
 *
 * Compiled for baseline x86-64 like every other file: only the functions of
 * this file carry target("avx2"), and qfs_quantize_rows calls them only when
 * the CPU has AVX2 (kernels/simd.h).  FMA is deliberately not enabled. */
#include "kernels/simd.h"

#if defined(__x86_64__)

#include <immintrin.h>

#include "kernels/quant_block_k.h"

#define QFS_AVX2 __attribute__((target("avx2")))

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

/* ---- Q4_K / Q5_K ---------------------------------------------------------------- */

/* What the search of one lane (sub-block) leaves: the kept scale, -min, and
 * the grid its levels come from (L = clamp(nearest(L_isc * (x - L_min))),
 * all zero for a constant sub-block: L_isc = L_min = 0). */
struct kx8 {
    float scale[8], the_min[8], L_isc[8], L_min[8];
};

/* qfs_make_qkx_quants(32, nmax, x_j, w_j, ..., rmin, rdelta, nstep, use_mad 0)
 * for the 8 sub-blocks j at once: xT[i], wT[i] lane j = x_j[i], w_j[i]. */
static inline QFS_AVX2 void kx_search8(const __m256 *xT, const __m256 *wT, int nmax, float rmin,
                                       float rdelta, int nstep, struct kx8 *o)
{
    const __m256 zero = _mm256_setzero_ps();
    const __m256i ilo = _mm256_setzero_si256(), ihi = _mm256_set1_epi32(nmax);
    __m256 min = xT[0], max = xT[0];
    __m256 sum_w = wT[0];
    __m256 sum_x = _mm256_mul_ps(sum_w, xT[0]);
    for (int i = 1; i < 32; i++) {
        min = _mm256_min_ps(xT[i], min); /* x < min ? x : min */
        max = _mm256_max_ps(xT[i], max); /* x > max ? x : max */
        sum_w = _mm256_add_ps(sum_w, wT[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wT[i], xT[i]));
    }
    min = _mm256_andnot_ps(_mm256_cmp_ps(min, zero, _CMP_GT_OQ), min); /* min > 0 -> +0 */
    const __m256 flat = _mm256_cmp_ps(max, min, _CMP_EQ_OQ);

    /* the min/max grid */
    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max, min));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
    __m256 best = zero;
    for (int i = 0; i < 32; i++) {
        const __m256 f = _mm256_mul_ps(iscale, _mm256_sub_ps(xT[i], min));
        const __m256i l = nearest_clamp(f, ilo, ihi);
        __m256 diff = _mm256_add_ps(_mm256_mul_ps(scale, _mm256_cvtepi32_ps(l)), min);
        diff = _mm256_sub_ps(diff, xT[i]);
        best = _mm256_add_ps(best, _mm256_mul_ps(wT[i], _mm256_mul_ps(diff, diff)));
    }
    __m256 L_isc = iscale, L_min = min;

    __m256 lev[32];
    for (int is = 0; is <= nstep; is++) {
        const float num = rmin + rdelta * (float)is + (float)nmax;
        const __m256 isc = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, min));
        __m256 sl = zero, sl2 = zero, sxl = zero;
        for (int i = 0; i < 32; i++) {
            const __m256 f = _mm256_mul_ps(isc, _mm256_sub_ps(xT[i], min));
            const __m256 fl = _mm256_cvtepi32_ps(nearest_clamp(f, ilo, ihi));
            const __m256 wl = _mm256_mul_ps(wT[i], fl);
            lev[i] = fl;
            sl = _mm256_add_ps(sl, wl);
            sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(wl, fl));
            sxl = _mm256_add_ps(sxl, _mm256_mul_ps(wl, xT[i]));
        }
        const __m256 D = _mm256_sub_ps(_mm256_mul_ps(sum_w, sl2), _mm256_mul_ps(sl, sl));
        const __m256 sn = _mm256_sub_ps(_mm256_mul_ps(sum_w, sxl), _mm256_mul_ps(sum_x, sl));
        const __m256 mn = _mm256_sub_ps(_mm256_mul_ps(sl2, sum_x), _mm256_mul_ps(sl, sxl));
        __m256 s = _mm256_div_ps(sn, D);
        __m256 m = _mm256_div_ps(mn, D);
        const __m256 mpos = _mm256_cmp_ps(m, zero, _CMP_GT_OQ);
        m = _mm256_andnot_ps(mpos, m);
        s = blend(s, _mm256_div_ps(sxl, sl2), mpos);
        __m256 err = zero;
        for (int i = 0; i < 32; i++) {
            __m256 diff = _mm256_add_ps(_mm256_mul_ps(s, lev[i]), m);
            diff = _mm256_sub_ps(diff, xT[i]);
            err = _mm256_add_ps(err, _mm256_mul_ps(wT[i], _mm256_mul_ps(diff, diff)));
        }
        __m256 keep = _mm256_and_ps(_mm256_cmp_ps(D, zero, _CMP_GT_OQ),
                                    _mm256_cmp_ps(err, best, _CMP_LT_OQ));
        keep = _mm256_andnot_ps(flat, keep);
        best = blend(best, err, keep);
        scale = blend(scale, s, keep);
        L_isc = blend(L_isc, isc, keep);
        L_min = blend(L_min, min, keep);
        min = blend(min, m, keep);
    }
    scale = _mm256_andnot_ps(flat, scale);
    L_isc = _mm256_andnot_ps(flat, L_isc);
    L_min = _mm256_andnot_ps(flat, L_min);
    _mm256_storeu_ps(o->scale, scale);
    _mm256_storeu_ps(o->the_min, _mm256_xor_ps(min, _mm256_set1_ps(-0.0f)));
    _mm256_storeu_ps(o->L_isc, L_isc);
    _mm256_storeu_ps(o->L_min, L_min);
}

/* Levels of sub-block j as its search left them (only needed when its
 * decoded scale is 0). */
static inline QFS_AVX2 void kx_levels(const float *xs, float isc, float lmin, int nmax, uint8_t *L)
{
    for (int i = 0; i < 32; i++)
        L[i] = (uint8_t)qfs_imax(0, qfs_imin(nmax, qfs_nearest_int(isc * (xs[i] - lmin))));
}

/* qfs_requant_k4, vectorized along the elements; sub-blocks whose scale
 * decodes to 0 get the levels of their search. */
static inline QFS_AVX2 void requant_k4(const float *x, const uint8_t *scales, uint16_t d16,
                                       uint16_t dmin16, int nmax, const struct kx8 *k, uint8_t *L)
{
    const float dsup = qfs_fp16_to_fp32(d16), msup = qfs_fp16_to_fp32(dmin16);
    const __m256i ilo = _mm256_setzero_si256(), ihi = _mm256_set1_epi32(nmax);
    for (int j = 0; j < 8; j++) {
        uint8_t sc, m;
        qfs_unpack_scale_min_k4(j, scales, &sc, &m);
        const float d = dsup * (float)sc;
        if (d == 0.0f) {
            kx_levels(x + 32 * j, k->L_isc[j], k->L_min[j], nmax, L + 32 * j);
            continue;
        }
        const __m256 vdm = _mm256_set1_ps(msup * (float)m), vd = _mm256_set1_ps(d);
        __m256i q[4];
        for (int v = 0; v < 4; v++) {
            const __m256 xv = _mm256_loadu_ps(x + 32 * j + 8 * v);
            q[v] = nearest_clamp(_mm256_div_ps(_mm256_add_ps(xv, vdm), vd), ilo, ihi);
        }
        store_u8x32(L + 32 * j, q[0], q[1], q[2], q[3]);
    }
}

static inline QFS_AVX2 void transpose_32x8(const float *x, __m256 *xT)
{
    for (int b = 0; b < 4; b++)
        tr8(x + 8 * b, 32, xT + 8 * b);
}

/* qfs_k4_plain_scales */
static inline QFS_AVX2 void k4_plain(const float *x, int nmax, float rmin, int nstep, struct kx8 *k,
                                     uint8_t *packed, uint16_t *d, uint16_t *dmin)
{
    __m256 xT[32], wT[32];
    transpose_32x8(x, xT);
    __m256 s2 = _mm256_setzero_ps();
    for (int i = 0; i < 32; i++)
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(xT[i], xT[i]));
    const __m256 av_x = _mm256_sqrt_ps(_mm256_div_ps(s2, _mm256_set1_ps(32.0f)));
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int i = 0; i < 32; i++)
        wT[i] = _mm256_add_ps(av_x, _mm256_and_ps(xT[i], absmask));
    kx_search8(xT, wT, nmax, rmin, 0.1f, nstep, k);

    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        if (k->scale[j] > max_scale)
            max_scale = k->scale[j];
        if (k->the_min[j] > max_min)
            max_min = k->the_min[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        const uint8_t a = (uint8_t)qfs_nearest_int(inv_scale * k->scale[j]);
        const uint8_t b = (uint8_t)qfs_nearest_int(inv_min * k->the_min[j]);
        ls[j] = a < 63 ? a : 63;
        lm[j] = b < 63 ? b : 63;
    }
    qfs_pack_scale_min_k4(ls, lm, packed);
    *d = qfs_fp32_to_fp16(max_scale / 63.0f);
    *dmin = qfs_fp32_to_fp16(max_min / 63.0f);
}

/* qfs_k4_weighted_scales */
static inline QFS_AVX2 void k4_weighted(const float *x, const float *qw, int nmax, int clamp63,
                                        struct kx8 *k, uint8_t *packed, uint16_t *d,
                                        uint16_t *dmin)
{
    __m256 xT[32], wT[32], qT[32];
    const float sigma2 = 2.0f * qfs_sum_sq_k(x) / (float)QK_K;
    transpose_32x8(x, xT);
    transpose_32x8(qw, qT);
    const __m256 vs2 = _mm256_set1_ps(sigma2);
    __m256 sw = _mm256_setzero_ps();
    for (int i = 0; i < 32; i++) {
        const __m256 r = _mm256_sqrt_ps(_mm256_add_ps(vs2, _mm256_mul_ps(xT[i], xT[i])));
        wT[i] = _mm256_mul_ps(qT[i], r);
        sw = _mm256_add_ps(sw, wT[i]);
    }
    float swa[8];
    _mm256_storeu_ps(swa, sw);
    kx_search8(xT, wT, nmax, -0.9f, 0.05f, 36, k);
    uint8_t ls[8], lm[8];
    const float d_block = qfs_make_qp_quants(8, 63, k->scale, ls, swa);
    const float m_block = qfs_make_qp_quants(8, 63, k->the_min, lm, swa);
    for (int j = 0; j < 8 && clamp63; j++) {
        ls[j] = ls[j] < 63 ? ls[j] : 63;
        lm[j] = lm[j] < 63 ? lm[j] : 63;
    }
    qfs_pack_scale_min_k4(ls, lm, packed);
    *d = qfs_fp32_to_fp16(d_block);
    *dmin = qfs_fp32_to_fp16(m_block);
}

static QFS_AVX2 void quantize_block_q4_K(const float *x, const float *qw, block_q4_K *y)
{
    uint8_t L[QK_K];
    struct kx8 k;
    if (qw == NULL)
        k4_plain(x, 15, -1.0f, 20, &k, y->scales, &y->d, &y->dmin);
    else
        k4_weighted(x, qw, 15, 0, &k, y->scales, &y->d, &y->dmin);
    requant_k4(x, y->scales, y->d, y->dmin, 15, &k, L);
    qfs_q4_K_pack(L, y);
}

static QFS_AVX2 void quantize_block_q5_K(const float *x, const float *qw, block_q5_K *y)
{
    uint8_t L[QK_K];
    struct kx8 k;
    if (qw == NULL)
        k4_plain(x, 31, -0.5f, 15, &k, y->scales, &y->d, &y->dmin);
    else
        k4_weighted(x, qw, 31, 1, &k, y->scales, &y->d, &y->dmin);
    requant_k4(x, y->scales, y->d, y->dmin, 31, &k, L);
    qfs_q5_K_pack(L, y);
}

/* ---- Q6_K --------------------------------------------------------------------------- */

/* qfs_make_qx_quants_rmse1(16, 32, x_j, L_j, qw_j) for 8 sub-blocks j at
 * once (xT[i] lane j = x_j[i]; qT likewise, or NULL for weights x^2).
 * Returns the scales; best_isc gets each lane's winning inverse scale, and
 * zero_group all ones in the lanes of an all-zero sub-block (levels 0). */
static inline QFS_AVX2 __m256 qx_search8(const __m256 *xT, const __m256 *qT, __m256 *best_isc,
                                         __m256 *zero_group_out)
{
    enum { N = 16, NMAX = 32 };
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

    __m256 scale = zero, best = zero, bisc = zero;
    for (int t = 0; t < 19; t++) {
        /* t = 0: -nmax/max; then is = -9..-1, 1..9 */
        const int is = t <= 9 ? t - 10 : t - 9;
        const float num = t == 0 ? (float)(-NMAX) : -((float)NMAX + 0.1f * (float)is);
        const __m256 isc = _mm256_div_ps(_mm256_set1_ps(num), max);
        __m256 sumlx = zero, suml2 = zero;
        for (int i = 0; i < N; i++) {
            const __m256i l = nearest_clamp(_mm256_mul_ps(isc, xT[i]), ilo, ihi);
            const __m256 fl = _mm256_cvtepi32_ps(l);
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], fl));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(w[i], fl), fl));
        }
        const __m256 s = _mm256_div_ps(sumlx, suml2);
        if (t == 0) {
            scale = _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_NEQ_UQ), s);
            best = _mm256_mul_ps(scale, sumlx);
            bisc = isc;
        } else {
            const __m256 better =
                _mm256_and_ps(_mm256_cmp_ps(suml2, zero, _CMP_GT_OQ),
                              _mm256_cmp_ps(_mm256_mul_ps(sumlx, sumlx), _mm256_mul_ps(best, suml2),
                                            _CMP_GT_OQ));
            scale = blend(scale, s, better);
            best = blend(best, _mm256_mul_ps(s, sumlx), better);
            bisc = blend(bisc, isc, better);
        }
    }
    *best_isc = bisc;
    *zero_group_out = zero_group;
    return _mm256_andnot_ps(zero_group, scale);
}

static QFS_AVX2 void quantize_block_q6_K(const float *x, const float *qw, block_q6_K *y)
{
    float scales[16], bisc[16];
    uint32_t zg[16];
    for (int v = 0; v < 2; v++) {
        __m256 xT[16], qT[16], b, z;
        tr8(x + 128 * v, 16, xT);
        tr8(x + 128 * v + 8, 16, xT + 8);
        if (qw != NULL) {
            tr8(qw + 128 * v, 16, qT);
            tr8(qw + 128 * v + 8, 16, qT + 8);
        }
        _mm256_storeu_ps(scales + 8 * v, qx_search8(xT, qw != NULL ? qT : NULL, &b, &z));
        _mm256_storeu_ps(bisc + 8 * v, b);
        _mm256_storeu_si256((__m256i *)(zg + 8 * v), _mm256_castps_si256(z));
    }
    float max_scale = 0.0f, max_abs_scale = 0.0f;
    for (int ib = 0; ib < 16; ib++) {
        if (fabsf(scales[ib]) > max_abs_scale) {
            max_abs_scale = fabsf(scales[ib]);
            max_scale = scales[ib];
        }
    }
    if (max_abs_scale < QFS_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float iscale = -128.0f / max_scale;
    y->d = qfs_fp32_to_fp16(1.0f / iscale);
    for (int ib = 0; ib < 16; ib++)
        y->scales[ib] = (int8_t)qfs_imin(127, qfs_nearest_int(iscale * scales[ib]));

    uint8_t L[QK_K];
    const float dsuper = qfs_fp16_to_fp32(y->d);
    const __m256i ilo = _mm256_set1_epi32(-32), ihi = _mm256_set1_epi32(31);
    const __m256i off = _mm256_set1_epi32(32);
    for (int j = 0; j < 16; j += 2) {
        __m256i q[4];
        for (int h = 0; h < 2; h++) {
            const float d = dsuper * (float)y->scales[j + h];
            /* d == 0: the levels of the sub-block search, as the reference keeps them */
            const __m256 vd = _mm256_set1_ps(d == 0.0f ? 1.0f : d);
            const __m256 vi = _mm256_set1_ps(bisc[j + h]);
            for (int v = 0; v < 2; v++) {
                const __m256 xv = _mm256_loadu_ps(x + 16 * (j + h) + 8 * v);
                const __m256 f = d == 0.0f ? _mm256_mul_ps(vi, xv) : _mm256_div_ps(xv, vd);
                q[2 * h + v] = _mm256_add_epi32(nearest_clamp(f, ilo, ihi), off);
                if (d == 0.0f && zg[j + h] != 0)
                    q[2 * h + v] = _mm256_setzero_si256(); /* all-zero group: levels 0 */
            }
        }
        store_u8x32(L + 16 * j, q[0], q[1], q[2], q[3]);
    }

    for (int h = 0; h < 2; h++) {
        const uint8_t *q = L + 128 * h;
        uint8_t *ql = y->ql + 64 * h;
        uint8_t *qh = y->qh + 32 * h;
        for (int l = 0; l < 32; l++) {
            ql[l] = (uint8_t)((q[l] & 0xf) | ((q[l + 64] & 0xf) << 4));
            ql[l + 32] = (uint8_t)((q[l + 32] & 0xf) | ((q[l + 96] & 0xf) << 4));
            qh[l] = (uint8_t)((q[l] >> 4) | ((q[l + 32] >> 4) << 2) | ((q[l + 64] >> 4) << 4) |
                              ((q[l + 96] >> 4) << 6));
        }
    }
}

/* ---- rows ------------------------------------------------------------------------------ */

#define QFS_DEFINE_ROWS_AVX2(t)                                                               \
    QFS_AVX2 void qfs_quantize_row_##t##_avx2(const float *x, void *vy, int64_t n,            \
                                              const float *imatrix)                           \
    {                                                                                         \
        block_##t *y = vy;                                                                    \
        for (int64_t i = 0; i < n / QK_K; i++)                                                \
            quantize_block_##t(x + i * QK_K, imatrix != NULL ? imatrix + i * QK_K : NULL,     \
                               &y[i]);                                                        \
    }

QFS_DEFINE_ROWS_AVX2(q4_K)
QFS_DEFINE_ROWS_AVX2(q5_K)
QFS_DEFINE_ROWS_AVX2(q6_K)

#endif /* __x86_64__ */
