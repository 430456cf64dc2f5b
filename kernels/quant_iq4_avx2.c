/* AVX2 row quantizers of IQ4_NL and IQ4_XS (with and without importance).
 *
 * Same bytes as the portable functions of quant_block_b.h, by the rules of
 * quant_k_avx2.c: every vector lane runs exactly the scalar sequence of float
 * operations of one 32-element sub-block (no FMA, sums in element order), and
 * only independent sub-blocks share a vector.
 *
 *  - The search of qfs_iq4_subblock_scale (the first trial and the 15 trial
 *    scales after it) runs for 8 sub-blocks at once: the 8 sub-blocks of an
 *    IQ4_XS super-block, or 8 consecutive IQ4_NL blocks.  The sequential
 *    choice of the winner is a per-lane blend in trial order.
 *  - The nearest level (qfs_iq4nl_index: the count of the 15 midpoints <= v)
 *    is a 4-step binary search over the sorted midpoints with permutes, the
 *    step's comparison !(v < m) so that NaN lands on 15 as in the reference.
 *  - The final levels (against the chosen or quantized scale) are computed
 *    along the elements of each sub-block.
 *
 * A row whose block count is not a multiple of 8 (IQ4_NL only) quantizes its
 * last blocks with the portable block function.
 *
 * Compiled for baseline x86-64: only these functions carry target("avx2"). */
#include "kernels/simd.h"

#if defined(__x86_64__)

#include "kernels/avx2_b.h"
#include "kernels/quant_block_b.h"

/* midpoints of the levels: v >= mid[k] <=> index > k */
#define M0 -115.5f
#define M1 -93.5f
#define M2 -74.f
#define M3 -57.f
#define M4 -42.f
#define M5 -28.5f
#define M6 -16.f
#define M7 -4.5f
#define M8 7.f
#define M9 19.f
#define M10 31.5f
#define M11 45.5f
#define M12 61.f
#define M13 79.f
#define M14 101.f

struct iq4_tab {
    __m256 t3, t4, lev_even, lev_odd;
};

static inline QFS_AVX2 void iq4_tab_init(struct iq4_tab *t)
{
    t->t3 = _mm256_setr_ps(M1, M5, M9, M13, M1, M5, M9, M13);
    t->t4 = _mm256_setr_ps(M0, M2, M4, M6, M8, M10, M12, M14);
    t->lev_even = _mm256_setr_ps(-127.f, -83.f, -49.f, -22.f, 1.f, 25.f, 53.f, 89.f);
    t->lev_odd = _mm256_setr_ps(-104.f, -65.f, -35.f, -10.f, 13.f, 38.f, 69.f, 113.f);
}

/* Binary search: b3 = v >= M7, b2 = v >= M(8b3+3), b1 = v >= M(8b3+4b2+1),
 * b0 = v >= M(8b3+4b2+2b1); index = 8b3+4b2+2b1+b0.  *i4 = 4b3+2b2+b1,
 * *c0 = b0 as a mask. */
static inline QFS_AVX2 void iq4_search(__m256 v, const struct iq4_tab *t, __m256i *i4, __m256 *c0)
{
    const __m256 c3 = _mm256_cmp_ps(v, _mm256_set1_ps(M7), _CMP_NLT_UQ);
    const __m256 t2 = blend(_mm256_set1_ps(M3), _mm256_set1_ps(M11), c3);
    const __m256 c2 = _mm256_cmp_ps(v, t2, _CMP_NLT_UQ);
    /* 2b3 + b2 (masks are -1 / 0) */
    const __m256i i3 = _mm256_sub_epi32(_mm256_and_si256(_mm256_castps_si256(c3), _mm256_set1_epi32(2)),
                                        _mm256_castps_si256(c2));
    const __m256 c1 = _mm256_cmp_ps(v, _mm256_permutevar8x32_ps(t->t3, i3), _CMP_NLT_UQ);
    const __m256i j4 = _mm256_sub_epi32(_mm256_add_epi32(i3, i3), _mm256_castps_si256(c1));
    *c0 = _mm256_cmp_ps(v, _mm256_permutevar8x32_ps(t->t4, j4), _CMP_NLT_UQ);
    *i4 = j4;
}

/* qfs_iq4nl_level(qfs_iq4nl_index(v)) */
static inline QFS_AVX2 __m256 iq4_level(__m256 v, const struct iq4_tab *t)
{
    __m256i i4;
    __m256 c0;
    iq4_search(v, t, &i4, &c0);
    return blend(_mm256_permutevar8x32_ps(t->lev_even, i4), _mm256_permutevar8x32_ps(t->lev_odd, i4),
                 c0);
}

/* qfs_iq4nl_index(v) */
static inline QFS_AVX2 __m256i iq4_index(__m256 v, const struct iq4_tab *t)
{
    __m256i i4;
    __m256 c0;
    iq4_search(v, t, &i4, &c0);
    return _mm256_sub_epi32(_mm256_add_epi32(i4, i4), _mm256_castps_si256(c0));
}

/* sumqx, sumq2 of one trial inverse scale id (per lane) */
static inline QFS_AVX2 void iq4_trial(const __m256 *xT, const __m256 *wT, __m256 id,
                                      const struct iq4_tab *t, __m256 *sumqx, __m256 *sumq2)
{
    __m256 sx = _mm256_setzero_ps(), s2 = _mm256_setzero_ps();
    for (int j = 0; j < 32; j++) {
        const __m256 q = iq4_level(_mm256_mul_ps(id, xT[j]), t);
        const __m256 wq = _mm256_mul_ps(wT[j], q);
        sx = _mm256_add_ps(sx, _mm256_mul_ps(wq, xT[j]));
        s2 = _mm256_add_ps(s2, _mm256_mul_ps(wq, q));
    }
    *sumqx = sx;
    *sumq2 = s2;
}

/* qfs_iq4_subblock_scale for 8 sub-blocks at once (xT[i], wT[i] lane j =
 * element i of sub-block j) */
static inline QFS_AVX2 __m256 iq4_search8(const __m256 *xT, const __m256 *wT, const struct iq4_tab *t)
{
    const __m256 zero = _mm256_setzero_ps();
    __m256 amax;
    const __m256 max = first_absmax8(xT, 32, &amax);
    const __m256 zero_group = _mm256_cmp_ps(amax, _mm256_set1_ps(QFS_GROUP_MAX_EPS), _CMP_LT_OQ);

    __m256 d = _mm256_div_ps(_mm256_xor_ps(max, _mm256_set1_ps(-0.0f)), _mm256_set1_ps(-127.f));
    __m256 sumqx, sumq2;
    iq4_trial(xT, wT, _mm256_div_ps(_mm256_set1_ps(1.0f), d), t, &sumqx, &sumq2);
    d = _mm256_and_ps(_mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ), _mm256_div_ps(sumqx, sumq2));
    __m256 best = _mm256_mul_ps(d, sumqx);
    for (int k = -QFS_IQ4_NTRY; k <= QFS_IQ4_NTRY; k++) {
        const __m256 id = _mm256_div_ps(_mm256_set1_ps((float)(k - 127)), max);
        iq4_trial(xT, wT, id, t, &sumqx, &sumq2);
        const __m256 better =
            _mm256_and_ps(_mm256_cmp_ps(sumq2, zero, _CMP_GT_OQ),
                          _mm256_cmp_ps(_mm256_mul_ps(sumqx, sumqx), _mm256_mul_ps(best, sumq2),
                                        _CMP_GT_OQ));
        d = blend(d, _mm256_div_ps(sumqx, sumq2), better);
        best = blend(best, _mm256_mul_ps(d, sumqx), better);
    }
    return _mm256_andnot_ps(zero_group, d);
}

/* Weights of 8 sub-blocks (qfs_iq4_weights per lane): x^2, or
 * qw * sqrt(sigma2 + x^2) with sigma2 per lane. */
static inline QFS_AVX2 void iq4_weights8(const __m256 *xT, const float *qw, __m256 sigma2, __m256 *wT)
{
    if (qw == NULL) {
        for (int i = 0; i < 32; i++)
            wT[i] = _mm256_mul_ps(xT[i], xT[i]);
        return;
    }
    tr32x8(qw, wT);
    for (int i = 0; i < 32; i++)
        wT[i] = _mm256_mul_ps(wT[i], _mm256_sqrt_ps(_mm256_add_ps(sigma2, _mm256_mul_ps(xT[i], xT[i]))));
}

/* The nibbles of one sub-block: levels of id * x */
static inline QFS_AVX2 void iq4_pack(const float *x, float id, const struct iq4_tab *t, uint8_t *qs)
{
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int v = 0; v < 4; v++)
        q[v] = iq4_index(_mm256_mul_ps(vid, _mm256_loadu_ps(x + 8 * v)), t);
    store_nibbles32(qs, q[0], q[1], q[2], q[3]);
}

/* ---- IQ4_NL: 8 blocks at a time ------------------------------------------------ */

static QFS_AVX2 void quantize_8_iq4_nl(const float *x, const float *qw, block_iq4_nl *y,
                                       const struct iq4_tab *t)
{
    __m256 xT[32], wT[32];
    tr32x8(x, xT);
    __m256 sigma2 = _mm256_setzero_ps();
    if (qw != NULL) { /* qfs_iq4_sigma2(x, 32) per lane */
        __m256 s = _mm256_setzero_ps();
        for (int i = 0; i < 32; i++)
            s = _mm256_add_ps(s, _mm256_mul_ps(xT[i], xT[i]));
        sigma2 = _mm256_mul_ps(s, _mm256_set1_ps(2.0f / 32.0f));
    }
    iq4_weights8(xT, qw, sigma2, wT);
    const __m256 d = iq4_search8(xT, wT, t);
    float ds[8];
    uint32_t h[8];
    _mm256_storeu_ps(ds, d);
    _mm256_storeu_si256((__m256i *)h, fp32_to_fp16_8(d));
    for (int b = 0; b < 8; b++) {
        y[b].d = (uint16_t)h[b];
        iq4_pack(x + 32 * b, ds[b] != 0.0f ? 1.0f / ds[b] : 0.0f, t, y[b].qs);
    }
}

QFS_AVX2 void qfs_quantize_row_iq4_nl_avx2(const float *x, void *vy, int64_t n, const float *imatrix)
{
    block_iq4_nl *y = vy;
    struct iq4_tab t;
    iq4_tab_init(&t);
    const int64_t nb = n / QK4_NL;
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8)
        quantize_8_iq4_nl(x + i * QK4_NL, imatrix != NULL ? imatrix + i * QK4_NL : NULL, &y[i], &t);
    for (; i < nb; i++)
        qfs_quantize_block_iq4_nl(x + i * QK4_NL, imatrix != NULL ? imatrix + i * QK4_NL : NULL,
                                  &y[i]);
}

/* ---- IQ4_XS: the 8 sub-blocks of a super-block ----------------------------------- */

static QFS_AVX2 void quantize_block_iq4_xs(const float *x, const float *qw, block_iq4_xs *y,
                                           const struct iq4_tab *t)
{
    __m256 xT[32], wT[32];
    tr32x8(x, xT);
    const float sigma2 = qw != NULL ? qfs_iq4_sigma2(x, QK_K) : 0.0f;
    iq4_weights8(xT, qw, _mm256_set1_ps(sigma2), wT);
    float scales[8];
    _mm256_storeu_ps(scales, iq4_search8(xT, wT, t));

    float max_scale = 0.0f, amax_scale = 0.0f;
    for (int ib = 0; ib < 8; ib++) {
        const float a = fabsf(scales[ib]);
        if (a > amax_scale) {
            amax_scale = a;
            max_scale = scales[ib];
        }
    }
    const float d = -max_scale / 32.0f;
    y->d = qfs_fp32_to_fp16(d);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    uint16_t sh = 0;
    for (int ib = 0; ib < 8; ib++) {
        const int l = qfs_imax(-32, qfs_imin(31, qfs_nearest_int(id * scales[ib])));
        const float dl = d * (float)l;
        iq4_pack(x + 32 * ib, dl != 0.0f ? 1.0f / dl : 0.0f, t, y->qs + 16 * ib);
        const int ls = l + 32; /* 0..63 */
        if (ib % 2 == 0)
            y->scales_l[ib / 2] = (uint8_t)(ls & 0x0f);
        else
            y->scales_l[ib / 2] |= (uint8_t)((ls & 0x0f) << 4);
        sh |= (uint16_t)((ls >> 4) << (2 * ib));
    }
    y->scales_h = sh;
}

QFS_AVX2 void qfs_quantize_row_iq4_xs_avx2(const float *x, void *vy, int64_t n, const float *imatrix)
{
    block_iq4_xs *y = vy;
    struct iq4_tab t;
    iq4_tab_init(&t);
    for (int64_t i = 0; i < n / QK_K; i++)
        quantize_block_iq4_xs(x + i * QK_K, imatrix != NULL ? imatrix + i * QK_K : NULL, &y[i], &t);
}

#endif /* __x86_64__ */
