/* AVX2 row quantizers of Q8_0, Q4_0, Q4_1, Q5_0 and Q5_1.
 *
 * Same bytes as the portable functions of quant_block.h, by the rules of
 * quant_k_avx2.c: no FMA, every float operation of the reference on the same
 * operands.  The plain formats have no sums, so everything vectorizes along
 * the elements of a block: the order-free reductions (max |x|, min, max) run
 * per block, then across 8 blocks at once, and the per-block scalars (d, 1/d,
 * the half-precision conversions) are computed for 8 blocks in one vector.
 *
 * Order-dependent details are kept: the signed max of Q4_0/Q5_0 is the first
 * element of largest magnitude (found by comparing bit patterns), and a zero
 * min or max of Q4_1/Q5_1 takes the sign of the block's first zero.
 *
 * A row whose block count is not a multiple of 8 quantizes its last blocks
 * with the portable block function.  Compiled for baseline x86-64: only these
 * functions carry target("avx2"). */
#include "kernels/simd.h"

#if defined(__x86_64__)

#include "kernels/avx2_b.h"
#include "kernels/quant_block_b.h"

/* ---- per-block reductions, 8 blocks at once ------------------------------------ */

/* Lane b = max |x| of block b (qfs_absmax: NaN skipped). */
static inline QFS_AVX2 __m256 absmax_8blocks(const float *x)
{
    __m256 m[8];
    for (int b = 0; b < 8; b++) {
        __m256 a = _mm256_setzero_ps();
        for (int v = 0; v < 4; v++)
            a = _mm256_max_ps(abs_ps(_mm256_loadu_ps(x + 32 * b + 8 * v)), a); /* NaN: keeps a */
        m[b] = a;
    }
    return hmax8x8(m);
}

/* Lanes b = min and max of block b (from FLT_MAX and -FLT_MAX, NaN skipped;
 * the sign of a zero result is not yet the reference's). */
static inline QFS_AVX2 void lohi_8blocks(const float *x, __m256 *min_out, __m256 *max_out)
{
    __m256 mn[8], mx[8];
    for (int b = 0; b < 8; b++) {
        __m256 lo = _mm256_set1_ps(FLT_MAX), hi = _mm256_set1_ps(-FLT_MAX);
        for (int v = 0; v < 4; v++) {
            const __m256 xv = _mm256_loadu_ps(x + 32 * b + 8 * v);
            lo = _mm256_min_ps(xv, lo);
            hi = _mm256_max_ps(xv, hi);
        }
        /* negated min, so that one max reduction serves both */
        mn[b] = _mm256_xor_ps(lo, _mm256_set1_ps(-0.0f));
        mx[b] = hi;
    }
    *min_out = _mm256_xor_ps(hmax8x8(mn), _mm256_set1_ps(-0.0f));
    *max_out = hmax8x8(mx);
}

/* Lane b = qfs_first_absmax of block b: the first element of largest
 * magnitude, +0 when that is 0.  From the min and max: the larger magnitude
 * decides, unless both are equal (+a and -a both present, or a constant
 * block), when the block is scanned for the first one. */
static inline QFS_AVX2 __m256 first_max_8blocks(const float *x)
{
    __m256 lo, hi;
    lohi_8blocks(x, &lo, &hi);
    const __m256 alo = abs_ps(lo), ahi = abs_ps(hi);
    const __m256 amax = _mm256_max_ps(alo, ahi);
    __m256 max = blend(lo, hi, _mm256_cmp_ps(ahi, alo, _CMP_GT_OQ));
    max = _mm256_and_ps(max, _mm256_cmp_ps(amax, _mm256_setzero_ps(), _CMP_NEQ_UQ)); /* 0 -> +0 */
    const int tie = _mm256_movemask_ps(_mm256_and_ps(_mm256_cmp_ps(ahi, alo, _CMP_EQ_OQ),
                                                     _mm256_cmp_ps(hi, lo, _CMP_NEQ_UQ)));
    if (tie == 0)
        return max;
    float mx[8], am[8];
    _mm256_storeu_ps(mx, max);
    _mm256_storeu_ps(am, amax);
    for (int b = 0; b < 8; b++) {
        if (!(tie >> b & 1) || am[b] == 0.0f)
            continue;
        const float *xb = x + 32 * b;
        const uint32_t key = qfs_f32_bits(am[b]);
        int i = 0;
        while (i < 31 && (qfs_f32_bits(xb[i]) & 0x7fffffffu) != key)
            i++;
        mx[b] = xb[i];
    }
    return _mm256_loadu_ps(mx);
}

/* Lanes b = min and max of block b as qfs_minmax leaves them. */
static inline QFS_AVX2 void minmax_8blocks(const float *x, __m256 *min_out, __m256 *max_out)
{
    __m256 min, max;
    lohi_8blocks(x, &min, &max);
    const __m256 zero = _mm256_setzero_ps();
    const int zmask = _mm256_movemask_ps(_mm256_or_ps(_mm256_cmp_ps(min, zero, _CMP_EQ_OQ),
                                                      _mm256_cmp_ps(max, zero, _CMP_EQ_OQ)));
    if (zmask != 0) { /* a zero result has the sign of the block's first zero */
        float mns[8], mxs[8];
        _mm256_storeu_ps(mns, min);
        _mm256_storeu_ps(mxs, max);
        for (int b = 0; b < 8; b++) {
            if (!(zmask >> b & 1))
                continue;
            const float *xb = x + 32 * b;
            int i = 0;
            while (i < 31 && xb[i] != 0.0f)
                i++;
            if (mns[b] == 0.0f)
                mns[b] = xb[i];
            if (mxs[b] == 0.0f)
                mxs[b] = xb[i];
        }
        min = _mm256_loadu_ps(mns);
        max = _mm256_loadu_ps(mxs);
    }
    *min_out = min;
    *max_out = max;
}

/* d != 0 ? 1/d : 0 per lane */
static inline QFS_AVX2 __m256 inv_or_zero(__m256 d)
{
    return _mm256_and_ps(_mm256_cmp_ps(d, _mm256_setzero_ps(), _CMP_NEQ_UQ),
                         _mm256_div_ps(_mm256_set1_ps(1.0f), d));
}

/* ---- Q8_0 ------------------------------------------------------------------------ */

/* qfs_f2i_x86(qfs_roundf(v)): round half away from zero, then truncate (the
 * rounding is exact below 2^23; above it, and for inf/NaN, v passes through
 * and the conversion gives INT_MIN as cvttss2si does) */
static inline QFS_AVX2 __m256i round_away_i32(__m256 v)
{
    const __m256 sign = _mm256_and_ps(v, _mm256_set1_ps(-0.0f));
    const __m256 a = _mm256_xor_ps(v, sign);
    const __m256 t = _mm256_round_ps(a, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 up = _mm256_cmp_ps(_mm256_sub_ps(a, t), _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    const __m256 r = _mm256_add_ps(t, _mm256_and_ps(up, _mm256_set1_ps(1.0f)));
    return _mm256_cvttps_epi32(_mm256_or_ps(r, sign));
}

static QFS_AVX2 void quantize_8_q8_0(const float *x, block_q8_0 *y)
{
    const __m256 d = _mm256_div_ps(absmax_8blocks(x), _mm256_set1_ps(127.0f));
    float id[8];
    uint32_t h[8];
    _mm256_storeu_ps(id, inv_or_zero(d));
    _mm256_storeu_si256((__m256i *)h, fp32_to_fp16_8(d));
    const __m256i m128 = _mm256_set1_epi8(-128);
    for (int b = 0; b < 8; b++) {
        const __m256 vid = _mm256_set1_ps(id[b]);
        __m256i q[4];
        for (int v = 0; v < 4; v++)
            q[v] = round_away_i32(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * b + 8 * v), vid));
        /* |q| <= 127 except INT_MIN (whose low byte, 0, the reference stores):
         * saturate to -128, then make that 0 */
        __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
        p = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        p = _mm256_andnot_si256(_mm256_cmpeq_epi8(p, m128), p);
        y[b].d = (uint16_t)h[b];
        _mm256_storeu_si256((__m256i *)y[b].qs, p);
    }
}

/* ---- Q4_0 / Q5_0 ----------------------------------------------------------------- */

/* qfs_quantize_block_q4_0 (nmax 8) or q5_0 (nmax 16) of 8 blocks */
static inline QFS_AVX2 void quantize_8_sym(const float *x, int nmax, uint16_t *dh, uint8_t (*qs)[16],
                                           uint32_t *qh)
{
    const __m256 max = first_max_8blocks(x);
    const __m256 d = _mm256_div_ps(max, _mm256_set1_ps(-(float)nmax));
    float id[8];
    uint32_t h[8];
    _mm256_storeu_ps(id, inv_or_zero(d));
    _mm256_storeu_si256((__m256i *)h, fp32_to_fp16_8(d));
    const __m256 off = _mm256_set1_ps((float)nmax + 0.5f);
    const __m256i top = _mm256_set1_epi32(2 * nmax - 1), low4 = _mm256_set1_epi32(0x0f);
    for (int b = 0; b < 8; b++) {
        const __m256 vid = _mm256_set1_ps(id[b]);
        __m256i q[4], n[4];
        for (int v = 0; v < 4; v++) {
            const __m256 xv = _mm256_loadu_ps(x + 32 * b + 8 * v);
            q[v] = _mm256_min_epi32(top, _mm256_cvttps_epi32(_mm256_add_ps(_mm256_mul_ps(xv, vid), off)));
            n[v] = _mm256_and_si256(q[v], low4);
        }
        dh[b] = (uint16_t)h[b];
        store_nibbles32(qs[b], n[0], n[1], n[2], n[3]);
        if (qh != NULL)
            qh[b] = bit4_mask32(q[0], q[1], q[2], q[3]);
    }
}

static QFS_AVX2 void quantize_8_q4_0(const float *x, block_q4_0 *y)
{
    uint16_t d[8];
    uint8_t qs[8][16];
    quantize_8_sym(x, 8, d, qs, NULL);
    for (int b = 0; b < 8; b++) {
        y[b].d = d[b];
        memcpy(y[b].qs, qs[b], 16);
    }
}

static QFS_AVX2 void quantize_8_q5_0(const float *x, block_q5_0 *y)
{
    uint16_t d[8];
    uint8_t qs[8][16];
    uint32_t qh[8];
    quantize_8_sym(x, 16, d, qs, qh);
    for (int b = 0; b < 8; b++) {
        y[b].d = d[b];
        memcpy(y[b].qh, &qh[b], 4); /* little endian: byte k = bits 8k..8k+7 */
        memcpy(y[b].qs, qs[b], 16);
    }
}

/* ---- Q4_1 / Q5_1 ----------------------------------------------------------------- */

/* qfs_quantize_block_q4_1 (nmax 15, levels clamped) or q5_1 (nmax 31, the
 * low byte of the truncation kept) of 8 blocks */
static inline QFS_AVX2 void quantize_8_asym(const float *x, int nmax, uint16_t *dh, uint16_t *mh,
                                            uint8_t (*qs)[16], uint32_t *qh)
{
    __m256 min, max;
    minmax_8blocks(x, &min, &max);
    const __m256 d = _mm256_div_ps(_mm256_sub_ps(max, min), _mm256_set1_ps((float)nmax));
    float id[8], mn[8];
    uint32_t h[8], hm[8];
    _mm256_storeu_ps(id, inv_or_zero(d));
    _mm256_storeu_ps(mn, min);
    _mm256_storeu_si256((__m256i *)h, fp32_to_fp16_8(d));
    _mm256_storeu_si256((__m256i *)hm, fp32_to_fp16_8(min));
    const __m256 half = _mm256_set1_ps(0.5f);
    /* Q4_1 clamps to 15; Q5_1 (the one with qh) keeps the low byte unclamped */
    const __m256i top = _mm256_set1_epi32(qh != NULL ? 0x7fffffff : 15), low4 = _mm256_set1_epi32(0x0f);
    for (int b = 0; b < 8; b++) {
        const __m256 vid = _mm256_set1_ps(id[b]), vmin = _mm256_set1_ps(mn[b]);
        __m256i q[4], n[4];
        for (int v = 0; v < 4; v++) {
            const __m256 xv = _mm256_loadu_ps(x + 32 * b + 8 * v);
            const __m256 f = _mm256_add_ps(_mm256_mul_ps(_mm256_sub_ps(xv, vmin), vid), half);
            q[v] = _mm256_min_epi32(top, _mm256_cvttps_epi32(f));
            n[v] = _mm256_and_si256(q[v], low4);
        }
        dh[b] = (uint16_t)h[b];
        mh[b] = (uint16_t)hm[b];
        store_nibbles32(qs[b], n[0], n[1], n[2], n[3]);
        if (qh != NULL)
            qh[b] = bit4_mask32(q[0], q[1], q[2], q[3]);
    }
}

static QFS_AVX2 void quantize_8_q4_1(const float *x, block_q4_1 *y)
{
    uint16_t d[8], m[8];
    uint8_t qs[8][16];
    quantize_8_asym(x, 15, d, m, qs, NULL);
    for (int b = 0; b < 8; b++) {
        y[b].d = d[b];
        y[b].m = m[b];
        memcpy(y[b].qs, qs[b], 16);
    }
}

static QFS_AVX2 void quantize_8_q5_1(const float *x, block_q5_1 *y)
{
    uint16_t d[8], m[8];
    uint8_t qs[8][16];
    uint32_t qh[8];
    quantize_8_asym(x, 31, d, m, qs, qh);
    for (int b = 0; b < 8; b++) {
        y[b].d = d[b];
        y[b].m = m[b];
        memcpy(y[b].qh, &qh[b], 4);
        memcpy(y[b].qs, qs[b], 16);
    }
}

/* ---- with an importance matrix: the weighted searches, 8 blocks per vector ---- */

/* qfs_importance32 per lane: wT[i] = qw * sqrt(sigma2 + x^2) */
static inline QFS_AVX2 void importance8(const __m256 *xT, const float *qw, float sigma2, __m256 *wT)
{
    const __m256 s2 = _mm256_set1_ps(sigma2);
    tr32x8(qw, wT);
    for (int i = 0; i < 32; i++)
        wT[i] = _mm256_mul_ps(wT[i], _mm256_sqrt_ps(_mm256_add_ps(s2, _mm256_mul_ps(xT[i], xT[i]))));
}

/* qfs_lw_qx_quants32(nmax, ...) of 8 blocks (lane j = block j): the scales;
 * L[j] gets block j's levels + nmax (0 .. 2 nmax - 1). */
static inline QFS_AVX2 __m256 qx_search8(int nmax, const float *x, const __m256 *xT, const __m256 *wT,
                                         uint8_t L[8][32])
{
    const __m256 zero = _mm256_setzero_ps();
    const __m256i ilo = _mm256_set1_epi32(-nmax), ihi = _mm256_set1_epi32(nmax - 1);
    __m256 amax;
    const __m256 max = first_absmax8(xT, 32, &amax);
    const __m256 zero_group = _mm256_cmp_ps(amax, _mm256_set1_ps(QFS_GROUP_MAX_EPS), _CMP_LT_OQ);
    __m256 wx[32];
    for (int i = 0; i < 32; i++)
        wx[i] = _mm256_mul_ps(wT[i], xT[i]);

    __m256 scale = zero, best = zero, bisc = zero;
    for (int t = 0; t < 19; t++) {
        /* t = 0: -nmax/max; then is = -9..-1, 1..9 */
        const int is = t <= 9 ? t - 10 : t - 9;
        const float num = t == 0 ? (float)(-nmax) : -((float)nmax + 0.1f * (float)is);
        const __m256 isc = _mm256_div_ps(_mm256_set1_ps(num), max);
        __m256 sumlx = zero, suml2 = zero;
        for (int i = 0; i < 32; i++) {
            const __m256 fl = _mm256_cvtepi32_ps(nearest_clamp(_mm256_mul_ps(isc, xT[i]), ilo, ihi));
            sumlx = _mm256_add_ps(sumlx, _mm256_mul_ps(wx[i], fl));
            suml2 = _mm256_add_ps(suml2, _mm256_mul_ps(_mm256_mul_ps(wT[i], fl), fl));
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
    float isc[8];
    _mm256_storeu_ps(isc, bisc);
    const int zg = _mm256_movemask_ps(zero_group);
    const __m256i off = _mm256_set1_epi32(nmax);
    for (int b = 0; b < 8; b++) {
        __m256i q[4];
        const __m256 vi = _mm256_set1_ps(isc[b]);
        for (int v = 0; v < 4; v++)
            q[v] = zg >> b & 1 ? _mm256_setzero_si256()
                               : _mm256_add_epi32(nearest_clamp(_mm256_mul_ps(vi, _mm256_loadu_ps(x + 32 * b + 8 * v)), ilo, ihi), off);
        store_u8x32(L[b], q[0], q[1], q[2], q[3]);
    }
    return _mm256_andnot_ps(zero_group, scale);
}

/* qfs_lw_qkx3_quants32(nmax, ...) of 8 blocks: the scales, *min_out the
 * mins; L[j] gets block j's levels.  The steps run one after the other in
 * every lane, each lane with its own running min and best error. */
static inline QFS_AVX2 __m256 qkx3_search8(int nmax, const float *x, const __m256 *xT,
                                           const __m256 *wT, uint8_t L[8][32], __m256 *min_out)
{
    const __m256 zero = _mm256_setzero_ps();
    const __m256i ilo = _mm256_setzero_si256(), ihi = _mm256_set1_epi32(nmax);
    __m256 min, max;
    minmax_8blocks(x, &min, &max);
    __m256 sum_w = wT[0];
    __m256 sum_x = _mm256_mul_ps(sum_w, xT[0]);
    for (int i = 1; i < 32; i++) {
        sum_w = _mm256_add_ps(sum_w, wT[i]);
        sum_x = _mm256_add_ps(sum_x, _mm256_mul_ps(wT[i], xT[i]));
    }
    min = _mm256_andnot_ps(_mm256_cmp_ps(min, zero, _CMP_GT_OQ), min); /* min > 0 -> +0 */
    const __m256 flat = _mm256_cmp_ps(max, min, _CMP_LE_OQ);

    __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)nmax), _mm256_sub_ps(max, min));
    __m256 scale = _mm256_div_ps(_mm256_set1_ps(1.0f), iscale);
    __m256 best = zero;
    for (int i = 0; i < 32; i++) {
        const __m256 fl = _mm256_cvtepi32_ps(nearest_clamp(_mm256_mul_ps(iscale, _mm256_sub_ps(xT[i], min)), ilo, ihi));
        const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(scale, fl), min), xT[i]);
        best = _mm256_add_ps(best, _mm256_mul_ps(wT[i], _mm256_mul_ps(diff, diff)));
    }
    __m256 L_isc = iscale, L_min = min;

    __m256 lev[32];
    for (int step = 0; step <= 36; step++) {
        const float num = -0.9f + 0.05f * (float)step + (float)nmax;
        const __m256 isc = _mm256_div_ps(_mm256_set1_ps(num), _mm256_sub_ps(max, min));
        __m256 sl = zero, sl2 = zero, sxl = zero;
        for (int i = 0; i < 32; i++) {
            const __m256 fl = _mm256_cvtepi32_ps(nearest_clamp(_mm256_mul_ps(isc, _mm256_sub_ps(xT[i], min)), ilo, ihi));
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
            const __m256 diff = _mm256_sub_ps(_mm256_add_ps(_mm256_mul_ps(s, lev[i]), m), xT[i]);
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
    float li[8], lm[8];
    _mm256_storeu_ps(li, L_isc);
    _mm256_storeu_ps(lm, L_min);
    const int fl = _mm256_movemask_ps(flat);
    for (int b = 0; b < 8; b++) {
        __m256i q[4];
        const __m256 vi = _mm256_set1_ps(li[b]), vm = _mm256_set1_ps(lm[b]);
        for (int v = 0; v < 4; v++) {
            const __m256 xv = _mm256_loadu_ps(x + 32 * b + 8 * v);
            q[v] = fl >> b & 1 ? _mm256_setzero_si256()
                               : nearest_clamp(_mm256_mul_ps(vi, _mm256_sub_ps(xv, vm)), ilo, ihi);
        }
        store_u8x32(L[b], q[0], q[1], q[2], q[3]);
    }
    *min_out = min;
    return _mm256_andnot_ps(flat, scale);
}

static QFS_AVX2 void quantize_8_q4_0_w(const float *x, const float *qw, float sigma2, block_q4_0 *y)
{
    __m256 xT[32], wT[32];
    uint8_t L[8][32];
    uint32_t h[8];
    tr32x8(x, xT);
    importance8(xT, qw, sigma2, wT);
    _mm256_storeu_si256((__m256i *)h, fp32_to_fp16_8(qx_search8(8, x, xT, wT, L)));
    for (int b = 0; b < 8; b++) {
        y[b].d = (uint16_t)h[b];
        qfs_pack_nibbles32(L[b], y[b].qs);
    }
}

static QFS_AVX2 void quantize_8_q5_0_w(const float *x, const float *qw, float sigma2, block_q5_0 *y)
{
    __m256 xT[32], wT[32];
    uint8_t L[8][32];
    uint32_t h[8];
    tr32x8(x, xT);
    importance8(xT, qw, sigma2, wT);
    _mm256_storeu_si256((__m256i *)h, fp32_to_fp16_8(qx_search8(16, x, xT, wT, L)));
    for (int b = 0; b < 8; b++) {
        y[b].d = (uint16_t)h[b];
        qfs_pack_nibbles32(L[b], y[b].qs);
        qfs_pack_qh32(L[b], y[b].qh);
    }
}

static QFS_AVX2 void quantize_8_q4_1_w(const float *x, const float *qw, float sigma2, block_q4_1 *y)
{
    __m256 xT[32], wT[32], min;
    uint8_t L[8][32];
    uint32_t h[8], hm[8];
    tr32x8(x, xT);
    importance8(xT, qw, sigma2, wT);
    _mm256_storeu_si256((__m256i *)h, fp32_to_fp16_8(qkx3_search8(15, x, xT, wT, L, &min)));
    _mm256_storeu_si256((__m256i *)hm, fp32_to_fp16_8(min));
    for (int b = 0; b < 8; b++) {
        y[b].d = (uint16_t)h[b];
        y[b].m = (uint16_t)hm[b];
        qfs_pack_nibbles32(L[b], y[b].qs);
    }
}

static QFS_AVX2 void quantize_8_q5_1_w(const float *x, const float *qw, float sigma2, block_q5_1 *y)
{
    __m256 xT[32], wT[32], min;
    uint8_t L[8][32];
    uint32_t h[8], hm[8];
    tr32x8(x, xT);
    importance8(xT, qw, sigma2, wT);
    _mm256_storeu_si256((__m256i *)h, fp32_to_fp16_8(qkx3_search8(31, x, xT, wT, L, &min)));
    _mm256_storeu_si256((__m256i *)hm, fp32_to_fp16_8(min));
    for (int b = 0; b < 8; b++) {
        y[b].d = (uint16_t)h[b];
        y[b].m = (uint16_t)hm[b];
        qfs_pack_nibbles32(L[b], y[b].qs);
        qfs_pack_qh32(L[b], y[b].qh);
    }
}

/* ---- rows -------------------------------------------------------------------------- */

QFS_AVX2 void qfs_quantize_row_q8_0_avx2(const float *x, void *vy, int64_t n, const float *imatrix)
{
    block_q8_0 *y = vy;
    (void)imatrix; /* ignored, as by ggml */
    const int64_t nb = n / QK8_0;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8)
        quantize_8_q8_0(x + i * QK8_0, &y[i]);
    for (; i < nb; i++)
        qfs_quantize_block_q8_0(x + i * QK8_0, &y[i]);
}

/* Rows of a legacy type t: plain, or weighted (sigma2 of the whole row first,
 * as qfs_quantize_row_<t> does). */
#define LEGACY_ROWS_AVX2(t, qk)                                                              \
    QFS_AVX2 void qfs_quantize_row_##t##_avx2(const float *x, void *vy, int64_t n,          \
                                              const float *imatrix)                         \
    {                                                                                        \
        block_##t *y = vy;                                                                   \
        const int64_t nb = n / (qk);                                                         \
        int64_t i = 0;                                                                       \
        if (imatrix != NULL) {                                                               \
            const float sigma2 = qfs_row_sigma2(x, n);                                       \
            for (; i + 8 <= nb; i += 8)                                                      \
                quantize_8_##t##_w(x + i * (qk), imatrix + i * (qk), sigma2, &y[i]);         \
            for (; i < nb; i++)                                                              \
                qfs_quantize_block_##t##_w(x + i * (qk), imatrix + i * (qk), sigma2, &y[i]); \
            return;                                                                          \
        }                                                                                    \
        for (; i + 8 <= nb; i += 8)                                                          \
            quantize_8_##t(x + i * (qk), &y[i]);                                             \
        for (; i < nb; i++)                                                                  \
            qfs_quantize_block_##t(x + i * (qk), &y[i]);                                     \
    }

LEGACY_ROWS_AVX2(q4_0, QK4_0)
LEGACY_ROWS_AVX2(q4_1, QK4_1)
LEGACY_ROWS_AVX2(q5_0, QK5_0)
LEGACY_ROWS_AVX2(q5_1, QK5_1)

#endif /* __x86_64__ */
