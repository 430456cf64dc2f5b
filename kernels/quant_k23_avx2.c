/* AVX2 row quantizers of Q2_K and Q3_K (plain and importance-weighted).
 *
 * Same bytes as the portable functions of quant_block_k.h, by the rules of
 * quant_k_avx2.c: every vector lane runs exactly the scalar sequence of float
 * operations of one sub-block (no FMA, sums in element order), and only
 * independent sub-blocks share a vector.  Both formats have 16 sub-blocks of
 * 16: two vectors of 8 lanes, loaded transposed (vector i holds element i of
 * 8 sub-blocks).
 *
 *  - Q2_K: make_qkx_quants (kx_search of avx2.h, 16 elements, mean absolute
 *    error on the plain path) runs its trials one after the other in every
 *    lane, each lane with its own running min.
 *  - Q3_K plain: make_q3_quants' coordinate descent runs in every lane at
 *    once, element after element; a lane's move is a blend.  The reference
 *    stops a sub-block after a sweep that changed nothing; a lane that keeps
 *    sweeping from such a state changes nothing again (a sweep is a function
 *    of the state), so the vector stops when no lane changed.
 *  - Q3_K weighted: make_qx_quants (rmse_type 1, nmax 4) as qx_search8.
 *
 * The scales of the super-block are quantized by the portable code (16
 * values); the elements are re-quantized with their decoded scales,
 * vectorized along the elements, and sub-blocks whose scale decodes to 0 get
 * the levels of their search, as in the reference. */
#include "kernels/simd.h"

#if defined(__x86_64__)

#include "kernels/avx2.h"

/* 16 sub-blocks of 16 starting at x: v = 0 the first 8, v = 1 the last */
static inline QFS_AVX2 void transpose_16x8(const float *x, int v, __m256 *xT)
{
    tr8(x + 128 * v, 16, xT);
    tr8(x + 128 * v + 8, 16, xT + 8);
}

/* Q2_K / Q3_K 2-bit planes: qs[32h + l] = L[128h + l + 32k] << 2k, k = 0..3
 * (qfs_pack_2bit_k), for L in 0..3 */
static inline QFS_AVX2 void pack_2bit(const uint8_t *L, uint8_t *qs)
{
    for (int h = 0; h < 2; h++) {
        __m256i acc = _mm256_loadu_si256((const __m256i *)(L + 128 * h));
        for (int k = 1; k < 4; k++) {
            const __m256i q = _mm256_loadu_si256((const __m256i *)(L + 128 * h + 32 * k));
            /* 16-bit shifts: a byte <= 3 shifted by <= 6 stays in its byte */
            acc = _mm256_or_si256(acc, _mm256_sll_epi16(q, _mm_cvtsi32_si128(2 * k)));
        }
        _mm256_storeu_si256((__m256i *)(qs + 32 * h), acc);
    }
}

/* ---- Q2_K --------------------------------------------------------------------------- */

/* qfs_q2_K_finish; k: the searches of sub-blocks 0..7 and 8..15 */
static inline QFS_AVX2 void q2_finish(const float *x, block_q2_K *y, const struct kx8 *k)
{
    const float dsup = qfs_fp16_to_fp32(y->d), msup = qfs_fp16_to_fp32(y->dmin);
    const __m256i ilo = _mm256_setzero_si256(), ihi = _mm256_set1_epi32(3);
    uint8_t L[QK_K];
    for (int j = 0; j < 16; j += 2) {
        __m256i q[4];
        for (int h = 0; h < 2; h++) {
            const int jj = j + h;
            const float d = dsup * (float)(y->scales[jj] & 0xf);
            const float *xs = x + 16 * jj;
            if (d == 0.0f) {
                /* the levels of the search, as the reference keeps them */
                const struct kx8 *kv = &k[jj / 8];
                const __m256 vi = _mm256_set1_ps(kv->L_isc[jj % 8]);
                const __m256 vm = _mm256_set1_ps(kv->L_min[jj % 8]);
                for (int v = 0; v < 2; v++) {
                    const __m256 xv = _mm256_loadu_ps(xs + 8 * v);
                    const __m256 f = _mm256_mul_ps(vi, _mm256_sub_ps(xv, vm));
                    q[2 * h + v] = nearest_clamp(f, ilo, ihi);
                }
                continue;
            }
            const __m256 vm = _mm256_set1_ps(msup * (float)(y->scales[jj] >> 4));
            const __m256 vd = _mm256_set1_ps(d);
            for (int v = 0; v < 2; v++) {
                const __m256 xv = _mm256_loadu_ps(xs + 8 * v);
                q[2 * h + v] = nearest_clamp(_mm256_div_ps(_mm256_add_ps(xv, vm), vd), ilo, ihi);
            }
        }
        store_u8x32(L + 16 * j, q[0], q[1], q[2], q[3]);
    }
    pack_2bit(L, y->qs);
}

/* importance weights qw * sqrt(sigma2 + x^2) of 8 sub-blocks, transposed,
 * and their sums in element order */
static inline QFS_AVX2 __m256 k_weights8(const __m256 *xT, const float *qw, int v, float sigma2,
                                         __m256 *wT)
{
    __m256 qT[16];
    transpose_16x8(qw, v, qT);
    const __m256 vs2 = _mm256_set1_ps(sigma2);
    __m256 sw = _mm256_setzero_ps();
    for (int i = 0; i < 16; i++) {
        const __m256 r = _mm256_sqrt_ps(_mm256_add_ps(vs2, _mm256_mul_ps(xT[i], xT[i])));
        wT[i] = _mm256_mul_ps(qT[i], r);
        sw = _mm256_add_ps(sw, wT[i]);
    }
    return sw;
}

/* the scales and mins of qfs_quantize_block_q2_K from its searches k[0..1] */
static inline QFS_AVX2 void q2_scales_plain(const struct kx8 *k, block_q2_K *y)
{
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 16; j++) {
        const float s = k[j / 8].scale[j % 8], m = k[j / 8].the_min[j % 8];
        if (s > max_scale)
            max_scale = s;
        if (m > max_min)
            max_min = m;
    }
    uint8_t sb[16];
    if (max_scale > 0.0f) {
        const float iscale = 15.0f / max_scale;
        for (int j = 0; j < 16; j++)
            sb[j] = (uint8_t)qfs_nearest_int(iscale * k[j / 8].scale[j % 8]);
        y->d = qfs_fp32_to_fp16(max_scale / 15.0f);
    } else {
        memset(sb, 0, sizeof sb);
        y->d = qfs_fp32_to_fp16(0.0f);
    }
    if (max_min > 0.0f) {
        const float iscale = 15.0f / max_min;
        for (int j = 0; j < 16; j++)
            sb[j] = (uint8_t)(sb[j] |
                              ((unsigned)qfs_nearest_int(iscale * k[j / 8].the_min[j % 8]) << 4));
        y->dmin = qfs_fp32_to_fp16(max_min / 15.0f);
    } else {
        y->dmin = qfs_fp32_to_fp16(0.0f);
    }
    memcpy(y->scales, sb, sizeof sb);
}

/* the same of qfs_quantize_block_q2_K_w; sw: the sub-blocks' weight sums */
static inline QFS_AVX2 void q2_scales_weighted(const struct kx8 *k, const float *sw, block_q2_K *y)
{
    float scales[16], mins[16];
    for (int v = 0; v < 2; v++) {
        memcpy(scales + 8 * v, k[v].scale, sizeof k[v].scale);
        memcpy(mins + 8 * v, k[v].the_min, sizeof k[v].the_min);
    }
    uint8_t Ls[16], Lm[16];
    const float dm = qfs_make_qp_quants(16, 15, scales, Ls, sw);
    const float mm = qfs_make_qp_quants(16, 15, mins, Lm, sw);
    y->d = qfs_fp32_to_fp16(dm);
    y->dmin = qfs_fp32_to_fp16(mm);
    for (int j = 0; j < 16; j++)
        y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
}

/* nb <= K23_NB super-blocks at once (qw NULL: the plain path; ssq: their
 * qfs_sum_sq_k): their 2 * nb vectors of sub-blocks are independent chains,
 * interleaved in kx_search */
#define K23_NB 2
static inline QFS_AVX2_INLINE void q2_blocks(const float *x, const float *qw, const float *ssq,
                                             block_q2_K *y, int nb)
{
    __m256 xT[2 * K23_NB * 16], wT[2 * K23_NB * 16];
    struct kx8 k[2 * K23_NB];
    float sw[K23_NB][16];
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int b = 0; b < nb; b++) {
        const float sigma2 = qw != NULL ? ssq[b] / (float)QK_K : 0.0f;
        for (int v = 0; v < 2; v++) {
            __m256 *xv = xT + 16 * (2 * b + v), *wv = wT + 16 * (2 * b + v);
            transpose_16x8(x + QK_K * b, v, xv);
            if (qw != NULL) {
                _mm256_storeu_ps(sw[b] + 8 * v, k_weights8(xv, qw + QK_K * b, v, sigma2, wv));
            } else {
                for (int i = 0; i < 16; i++)
                    wv[i] = _mm256_and_ps(xv[i], absmask);
            }
        }
    }
    if (qw != NULL)
        kx_search(xT, wT, 2 * nb, 16, 3, -0.9f, 0.05f, 36, 0, k);
    else
        kx_search(xT, wT, 2 * nb, 16, 3, -0.5f, 0.1f, 15, 1, k);
    for (int b = 0; b < nb; b++) {
        if (qw != NULL)
            q2_scales_weighted(k + 2 * b, sw[b], y + b);
        else
            q2_scales_plain(k + 2 * b, y + b);
        q2_finish(x + QK_K * b, y + b, k + 2 * b);
    }
}

/* ---- Q3_K --------------------------------------------------------------------------- */

/* qfs_make_q3_quants for nv * 8 sub-blocks at once (nv <= 2 * K23_NB):
 * xT[16 * v + i] lane j = element i of sub-block 8v + j.  scales[8v + j]
 * gets its scale, lev[16 * v + i] its levels (q + 4, or 0 for an all-zero
 * sub-block).  The nv vectors are independent chains, interleaved. */
static inline QFS_AVX2_INLINE void q3_search(const __m256 *xT, int nv, float *scales,
                                             __m256i *lev)
{
    enum { N = 16, NMAX = 4, NV = 2 * K23_NB };
    const __m256 zero = _mm256_setzero_ps();
    const __m256i ilo = _mm256_set1_epi32(-NMAX), ihi = _mm256_set1_epi32(NMAX - 1);
    const __m256 absmask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 zero_group[NV], sumlx[NV], suml2[NV];
    __m256 w[N * NV], wx[N * NV], fl[N * NV];
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        const __m256 *x = xT + N * v;
        __m256 amax = zero, max = zero;
        for (int i = 0; i < N; i++) {
            const __m256 ax = _mm256_and_ps(x[i], absmask);
            const __m256 gt = _mm256_cmp_ps(ax, amax, _CMP_GT_OQ);
            amax = blend(amax, ax, gt);
            max = blend(max, x[i], gt);
        }
        zero_group[v] = _mm256_cmp_ps(amax, _mm256_set1_ps(QFS_GROUP_MAX_EPS), _CMP_LT_OQ);
        const __m256 iscale = _mm256_div_ps(_mm256_set1_ps((float)(-NMAX)), max);
        sumlx[v] = suml2[v] = zero;
        for (int i = 0; i < N; i++) {
            const int k = N * v + i;
            fl[k] = _mm256_cvtepi32_ps(nearest_clamp(_mm256_mul_ps(iscale, x[i]), ilo, ihi));
            w[k] = _mm256_mul_ps(x[i], x[i]);
            wx[k] = _mm256_mul_ps(w[k], x[i]);
            sumlx[v] = _mm256_add_ps(sumlx[v], _mm256_mul_ps(wx[k], fl[k]));
            suml2[v] = _mm256_add_ps(suml2[v], _mm256_mul_ps(_mm256_mul_ps(w[k], fl[k]), fl[k]));
        }
    }
    /* a vector none of whose lanes moved in a sweep is done */
    int active[NV], zgm[NV];
    for (int v = 0; v < nv; v++) {
        active[v] = 1;
        zgm[v] = _mm256_movemask_ps(zero_group[v]);
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed[NV];
        for (int v = 0; v < nv; v++)
            changed[v] = 0;
        for (int i = 0; i < N; i++) {
#pragma GCC unroll 4
            for (int v = 0; v < nv; v++) {
                if (!active[v])
                    continue;
                const int k = N * v + i;
                const __m256 li = fl[k];
                __m256 slx = _mm256_sub_ps(sumlx[v], _mm256_mul_ps(wx[k], li));
                __m256 sl2 = _mm256_sub_ps(suml2[v], _mm256_mul_ps(_mm256_mul_ps(w[k], li), li));
                const __m256 pos = _mm256_cmp_ps(slx, zero, _CMP_GT_OQ);
                const __m256 f = _mm256_div_ps(_mm256_mul_ps(xT[k], sl2), slx);
                const __m256 nl = _mm256_cvtepi32_ps(nearest_clamp(f, ilo, ihi));
                const __m256 moved = _mm256_cmp_ps(nl, li, _CMP_NEQ_UQ);
                slx = _mm256_add_ps(slx, _mm256_mul_ps(wx[k], nl));
                sl2 = _mm256_add_ps(sl2, _mm256_mul_ps(_mm256_mul_ps(w[k], nl), nl));
                const __m256 lhs = _mm256_mul_ps(_mm256_mul_ps(slx, slx), suml2[v]);
                const __m256 rhs = _mm256_mul_ps(_mm256_mul_ps(sumlx[v], sumlx[v]), sl2);
                const __m256 better = _mm256_cmp_ps(lhs, rhs, _CMP_GT_OQ);
                __m256 take = _mm256_and_ps(_mm256_and_ps(pos, moved), better);
                take = _mm256_and_ps(take, _mm256_cmp_ps(sl2, zero, _CMP_GT_OQ));
                /* moves are rare: a branch, so that the sums of the next
                 * visit do not wait for this one's comparison */
                const int tm = _mm256_movemask_ps(take);
                if (tm != 0) {
                    fl[k] = blend(li, nl, take);
                    sumlx[v] = blend(sumlx[v], slx, take);
                    suml2[v] = blend(suml2[v], sl2, take);
                    changed[v] |= tm & ~zgm[v];
                }
            }
        }
        int any = 0;
        for (int v = 0; v < nv; v++) {
            active[v] = active[v] && changed[v] != 0;
            any |= active[v];
        }
        if (!any)
            break;
    }
    const __m256i off = _mm256_set1_epi32(NMAX);
#pragma GCC unroll 4
    for (int v = 0; v < nv; v++) {
        const __m256i zg = _mm256_castps_si256(zero_group[v]);
        for (int i = 0; i < N; i++)
            lev[N * v + i] =
                _mm256_andnot_si256(zg, _mm256_add_epi32(_mm256_cvtps_epi32(fl[N * v + i]), off));
        const __m256 sc = _mm256_and_ps(_mm256_cmp_ps(suml2[v], zero, _CMP_GT_OQ),
                                        _mm256_div_ps(sumlx[v], suml2[v]));
        _mm256_storeu_ps(scales + 8 * v, _mm256_andnot_ps(zero_group[v], sc));
    }
}

/* What the sub-block searches leave for the sub-blocks whose scale decodes
 * to 0: their levels (plain path), or their winning inverse scale and
 * all-zero mask (weighted path: levels clamp(nearest(isc * x)) + 4). */
struct q3_search {
    int32_t lev[2][16][8]; /* [v][i] lane j: level of element i of sub-block 8v + j */
    float isc[16];
    uint32_t zero_group[16];
    int weighted;
};

/* qfs_q3_K_finish */
static inline QFS_AVX2 void q3_finish(const float *x, block_q3_K *y, const struct q3_search *s)
{
    const float dsup = qfs_fp16_to_fp32(y->d);
    const __m256i ilo = _mm256_set1_epi32(-4), ihi = _mm256_set1_epi32(3);
    const __m256i off = _mm256_set1_epi32(4);
    uint8_t L[QK_K];
    for (int j = 0; j < 16; j += 2) {
        __m256i q[4];
        for (int h = 0; h < 2; h++) {
            const int jj = j + h;
            const float d = dsup * (float)(int8_t)qfs_scale_q3_K(y->scales, jj);
            const float *xs = x + 16 * jj;
            if (d == 0.0f && !s->weighted) {
                int32_t l[16];
                for (int i = 0; i < 16; i++)
                    l[i] = s->lev[jj / 8][i][jj % 8];
                q[2 * h] = _mm256_loadu_si256((const __m256i *)l);
                q[2 * h + 1] = _mm256_loadu_si256((const __m256i *)(l + 8));
                continue;
            }
            if (d == 0.0f) {
                const __m256 vi = _mm256_set1_ps(s->isc[jj]);
                for (int v = 0; v < 2; v++) {
                    const __m256 xv = _mm256_loadu_ps(xs + 8 * v);
                    q[2 * h + v] = s->zero_group[jj] != 0
                                       ? _mm256_setzero_si256()
                                       : _mm256_add_epi32(
                                             nearest_clamp(_mm256_mul_ps(vi, xv), ilo, ihi), off);
                }
                continue;
            }
            const __m256 vd = _mm256_set1_ps(d);
            for (int v = 0; v < 2; v++) {
                const __m256 xv = _mm256_loadu_ps(xs + 8 * v);
                const __m256 f = _mm256_div_ps(xv, vd);
                q[2 * h + v] = _mm256_add_epi32(nearest_clamp(f, ilo, ihi), off);
            }
        }
        store_u8x32(L + 16 * j, q[0], q[1], q[2], q[3]);
    }
    /* hmask[l] bit k: L[32k + l] > 3; the rest is L & 3 */
    const __m256i three = _mm256_set1_epi8(3);
    __m256i hm = _mm256_setzero_si256();
    uint8_t low[QK_K];
    for (int k = 0; k < 8; k++) {
        const __m256i q = _mm256_loadu_si256((const __m256i *)(L + 32 * k));
        const __m256i hi = _mm256_cmpgt_epi8(q, three);
        hm = _mm256_or_si256(hm, _mm256_and_si256(hi, _mm256_set1_epi8((char)(1 << k))));
        _mm256_storeu_si256((__m256i *)(low + 32 * k), _mm256_and_si256(q, three));
    }
    _mm256_storeu_si256((__m256i *)y->hmask, hm);
    pack_2bit(low, y->qs);
}

/* qfs_quantize_block_q3_K for nb <= K23_NB super-blocks at once */
static inline QFS_AVX2_INLINE void q3_blocks_plain(const float *x, block_q3_K *y, int nb)
{
    __m256 xT[2 * K23_NB * 16];
    __m256i lev[2 * K23_NB * 16];
    float scales_all[2 * K23_NB * 8];
    for (int b = 0; b < nb; b++)
        for (int v = 0; v < 2; v++)
            transpose_16x8(x + QK_K * b, v, xT + 16 * (2 * b + v));
    q3_search(xT, 2 * nb, scales_all, lev);
    for (int b = 0; b < nb; b++) {
        struct q3_search s;
        s.weighted = 0;
        for (int v = 0; v < 2; v++)
            for (int i = 0; i < 16; i++)
                _mm256_storeu_si256((__m256i *)s.lev[v][i], lev[16 * (2 * b + v) + i]);
        const float *scales = scales_all + 16 * b;
        float max_scale = 0.0f, amax = 0.0f;
        for (int j = 0; j < 16; j++) {
            if (fabsf(scales[j]) > amax) {
                amax = fabsf(scales[j]);
                max_scale = scales[j];
            }
        }
        if (max_scale != 0.0f) {
            const float iscale = -32.0f / max_scale;
            int l[16];
            for (int j = 0; j < 16; j++) {
                const int8_t q = (int8_t)qfs_nearest_int(iscale * scales[j]); /* int8 as ggml */
                l[j] = qfs_imax(-32, qfs_imin(31, q)) + 32;
            }
            qfs_pack_scales_q3_K(l, y[b].scales);
            y[b].d = qfs_fp32_to_fp16(1.0f / iscale);
        } else {
            memset(y[b].scales, 0, sizeof y[b].scales);
            y[b].d = qfs_fp32_to_fp16(0.0f);
        }
        q3_finish(x + QK_K * b, y + b, &s);
    }
}

static QFS_AVX2 void quantize_block_q3_K_w(const float *x, const float *qw, float ssq,
                                           block_q3_K *y)
{
    struct q3_search s;
    s.weighted = 1;
    float scales[16], sw[16];
    const float sigma2 = 2.0f * ssq / (float)QK_K;
    for (int v = 0; v < 2; v++) {
        __m256 xT[16], wT[16], b, z;
        transpose_16x8(x, v, xT);
        _mm256_storeu_ps(sw + 8 * v, k_weights8(xT, qw, v, sigma2, wT));
        _mm256_storeu_ps(scales + 8 * v, qx_search8(xT, wT, 4, &b, &z));
        _mm256_storeu_ps(s.isc + 8 * v, b);
        _mm256_storeu_si256((__m256i *)(s.zero_group + 8 * v), _mm256_castps_si256(z));
    }
    int8_t Ls[16];
    const float d_block = qfs_make_qx_quants_rmse1(16, 32, scales, Ls, sw);
    int l[16];
    for (int j = 0; j < 16; j++)
        l[j] = Ls[j];
    qfs_pack_scales_q3_K(l, y->scales);
    y->d = qfs_fp32_to_fp16(d_block);
    q3_finish(x, y, &s);
}

/* ---- rows ------------------------------------------------------------------------------ */

/* qfs_sum_sq_k of the super-blocks i .. i + 7 (those below nb) of the row x */
static inline QFS_AVX2 void row_sum_sq(const float *x, int64_t i, int64_t nb, float *ssq)
{
    if (i + 8 <= nb) {
        sum_sq_k8(x + i * QK_K, ssq);
        return;
    }
    for (int64_t b = i; b < nb; b++)
        ssq[b - i] = qfs_sum_sq_k(x + b * QK_K);
}

QFS_AVX2 void qfs_quantize_row_q2_K_avx2(const float *x, void *vy, int64_t n,
                                      const float *imatrix)
{
    block_q2_K *y = vy;
    const int64_t nb = n / QK_K;
    float ssq[8];
    for (int64_t i = 0; i < nb; i += 8) {
        const int64_t e = i + 8 < nb ? i + 8 : nb;
        if (imatrix != NULL)
            row_sum_sq(x, i, nb, ssq);
        int64_t b = i;
        for (; b + K23_NB <= e; b += K23_NB)
            q2_blocks(x + b * QK_K, imatrix != NULL ? imatrix + b * QK_K : NULL, ssq + (b - i),
                      y + b, K23_NB);
        for (; b < e; b++)
            q2_blocks(x + b * QK_K, imatrix != NULL ? imatrix + b * QK_K : NULL, ssq + (b - i),
                      y + b, 1);
    }
}

QFS_AVX2 void qfs_quantize_row_q3_K_avx2(const float *x, void *vy, int64_t n,
                                      const float *imatrix)
{
    block_q3_K *y = vy;
    const int64_t nb = n / QK_K;
    if (imatrix == NULL) {
        int64_t i = 0;
        for (; i + K23_NB <= nb; i += K23_NB)
            q3_blocks_plain(x + i * QK_K, y + i, K23_NB);
        for (; i < nb; i++)
            q3_blocks_plain(x + i * QK_K, y + i, 1);
        return;
    }
    float ssq[8];
    for (int64_t i = 0; i < nb; i += 8) {
        row_sum_sq(x, i, nb, ssq);
        for (int64_t b = i; b < nb && b < i + 8; b++)
            quantize_block_q3_K_w(x + b * QK_K, imatrix + b * QK_K, ssq[b - i], &y[b]);
    }
}

#endif /* __x86_64__ */
