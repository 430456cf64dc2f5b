/* AVX2 row quantizers of Q4_K, Q5_K and Q6_K (plain and importance-weighted).
 *
 * Same bytes as the portable functions of quant_block_k.h, by construction:
 * every vector lane runs exactly the scalar sequence of float operations of
 * one sub-block (mul, add, sub, div, sqrt: all correctly rounded, no FMA, the
 * sums in element order), and only independent sub-blocks share a vector.
 *
 *  - Q4_K / Q5_K: the 8 sub-blocks of 32 of a super-block are the 8 lanes.
 *    The search (make_qkx2/3_quants, kx_search of avx2.h) runs its trials
 *    one after the other in every lane at once, each lane with its own
 *    running min and best error, so the "a kept trial moves min" dependency
 *    costs nothing and no trial is computed twice (the portable code
 *    evaluates trials side by side and must restart a batch whenever min
 *    moves).
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

#include "kernels/avx2.h"

/* ---- Q4_K / Q5_K ---------------------------------------------------------------- */

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
            kx_levels(x + 32 * j, 32, k->L_isc[j], k->L_min[j], nmax, L + 32 * j);
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
    kx_search(xT, wT, 1, 32, nmax, rmin, 0.1f, nstep, 0, k);

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
    kx_search(xT, wT, 1, 32, nmax, -0.9f, 0.05f, 36, 0, k);
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
        _mm256_storeu_ps(scales + 8 * v, qx_search8(xT, qw != NULL ? qT : NULL, 32, &b, &z));
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
