/* AVX2 row quantizers of the grid i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S, IQ1_M).
 *
 * The block functions of quant_block_iq.h are compiled here unchanged around
 * vector versions of their searches (the QFS_IQ_* hooks there):
 *  - the neighbour search (nearest8): for a group that rounds off the
 *    codebook, the weighted squared distance to every point of its neighbour
 *    list, 8 listed points per vector from the lattice's transposed levels
 *    (iq_lattice.h);
 *  - the scale trials of IQ2/IQ3 (iq_search_scale_avx2): 8 trial scales per
 *    vector for the rounding and the two sums; trials whose groups round to
 *    the same off-grid key search that list together, a trial per lane
 *    (nearest_trials), when that is cheaper than one search per trial;
 *  - IQ1's split fits and its stable sort (iq1s_split_avx2, iq1m_split_avx2,
 *    iq1_order_avx2).
 *
 * Same bytes as the portable functions: each lane runs the scalar sequence of
 * float operations of one candidate (no FMA, sums in element order), and
 * every choice is the portable loop's: the first minimum listed (a lane keeps
 * its first minimum; across lanes the lower position wins a tie), below
 * FLT_MAX, else the first point listed; the trials and splits are accepted in
 * their scalar order.
 *
 * The rest of the build stays baseline x86-64: qfs_quantize_rows calls these
 * only when the CPU has AVX2. */
#include "kernels/simd.h"

#if defined(__x86_64__)

#include <assert.h>
#include <float.h>
#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Everything below, the included block functions too, is AVX2 code: the
 * search inlines into them (and the compiler may use AVX2 for their integer
 * work; float operations stay as written: no contraction, no reassociation). */
#if defined(__clang__)
#pragma clang attribute push(__attribute__((target("avx2"))), apply_to = function)
#else
#pragma GCC push_options
#pragma GCC target("avx2")
#endif

#include "kernels/iq_lattice.h"

#define QFS_AVX2 __attribute__((target("avx2")))

/* The listed point nearest to scale * pos[level] (pos: the lattice
 * position or value of each level, a lane per level) in the w-weighted
 * squared distance to x; its levels go to L.  Returns its index. */
static inline __attribute__((always_inline)) int
nearest8_n(const struct qfs_iq_lattice *lat, const uint16_t *list, const float *x, const float *w,
           float scale, __m256 pos, int8_t *L, const int npos)
{
    const int count = list[0];
    const int8_t *t = lat->tlevel + ((uint32_t)list[-2] | (uint32_t)list[-1] << 16);
    const __m256 vs = _mm256_set1_ps(scale);
    __m256 xv[8], wv[8];
    for (int i = 0; i < npos; i++) {
        xv[i] = _mm256_set1_ps(x[i]);
        wv[i] = _mm256_set1_ps(w[i]);
    }
    __m256 best = _mm256_set1_ps(FLT_MAX);
    __m256i bpos = _mm256_setzero_si256();
    __m256i at = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    const __m256i vcount = _mm256_set1_epi32(count);
    for (int run = 0; 8 * run < count; run++, t += 8 * npos) {
        __m256 d2 = _mm256_setzero_ps();
        for (int i = 0; i < npos; i++) {
            const __m256i lv = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(t + 8 * i)));
            const __m256 diff = _mm256_sub_ps(_mm256_mul_ps(vs, _mm256_permutevar8x32_ps(pos, lv)),
                                              xv[i]);
            d2 = _mm256_add_ps(d2, _mm256_mul_ps(_mm256_mul_ps(wv[i], diff), diff));
        }
        /* taken: strictly below the lane's best (never NaN), and a listed point */
        const __m256 take = _mm256_and_ps(_mm256_cmp_ps(d2, best, _CMP_LT_OQ),
                                          _mm256_castsi256_ps(_mm256_cmpgt_epi32(vcount, at)));
        best = _mm256_blendv_ps(best, d2, take);
        bpos = _mm256_castps_si256(
            _mm256_blendv_ps(_mm256_castsi256_ps(bpos), _mm256_castsi256_ps(at), take));
        at = _mm256_add_epi32(at, _mm256_set1_epi32(8));
    }
    /* the smallest distance, then the lowest position holding it */
    __m256 m = _mm256_min_ps(best, _mm256_permute_ps(best, 0xB1));
    m = _mm256_min_ps(m, _mm256_permute_ps(m, 0x4E));
    m = _mm256_min_ps(m, _mm256_permute2f128_ps(m, m, 0x01));
    const __m256 eq = _mm256_cmp_ps(best, m, _CMP_EQ_OQ);
    int p;
    if (count <= 8) {
        /* one run: a lane's position is its index (or 0 with best FLT_MAX,
         * and then every lane ties and lane 0 wins) */
        p = __builtin_ctz((unsigned)_mm256_movemask_ps(eq));
    } else {
        __m256i c = _mm256_castps_si256(_mm256_blendv_ps(
            _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff)), _mm256_castsi256_ps(bpos), eq));
        c = _mm256_min_epi32(c, _mm256_shuffle_epi32(c, 0xB1));
        c = _mm256_min_epi32(c, _mm256_shuffle_epi32(c, 0x4E));
        c = _mm256_min_epi32(c, _mm256_permute2x128_si256(c, c, 0x01));
        p = _mm256_cvtsi256_si32(c);
    }
    const int found = list[1 + p];
    memcpy(L, lat->level + npos * found, (size_t)npos);
    return found;
}

/* nearest8_n with npos a constant: the coordinate loops unroll */
static QFS_AVX2 int nearest8(const struct qfs_iq_lattice *lat, const uint16_t *list,
                             const float *x, const float *w, float scale, __m256 pos, int8_t *L)
{
    if (lat->npos == 8)
        return nearest8_n(lat, list, x, w, scale, pos, L, 8);
    return nearest8_n(lat, list, x, w, scale, pos, L, 4);
}

/* qfs_iq_nearest_listed: position 2 * level + 1 */
static inline QFS_AVX2 int iq_nearest_avx2(const struct qfs_iq_lattice *lat, const uint16_t *list,
                                           const float *xval, const float *w, float scale,
                                           int8_t *L)
{
    const __m256 pos = _mm256_setr_ps(1.f, 3.f, 5.f, 7.f, 9.f, 11.f, 13.f, 15.f);
    return nearest8(lat, list, xval, w, scale, pos, L);
}

/* qfs_iq1_nearest_listed: value xg[level] */
static inline QFS_AVX2 int iq1_nearest_avx2(const struct qfs_iq_lattice *lat, const uint16_t *list,
                                            const float *x, const float *w, float scale,
                                            const float *xg, int8_t *L)
{
    const __m256 pos = _mm256_setr_ps(xg[0], xg[1], xg[2], 0.f, 0.f, 0.f, 0.f, 0.f);
    return nearest8(lat, list, x, w, scale, pos, L);
}

struct qfs_iq_search;
static float iq_search_scale_avx2(const struct qfs_iq_lattice *lat, const struct qfs_iq_search *p,
                                  const float *xval, const float *weight, const float *waux,
                                  float scale, float den, int8_t *L);

static void iq1s_split_avx2(const float *sumx, const float *sumw, const float *x_p,
                            const float *x_m, float *scale, int *besti1, int *besti2,
                            int *best_shift);
static void iq1m_split_avx2(const float *px0, const float *px1, const float *pw0,
                            const float *pw1, const float *x_p, const float *x_m, float *scale,
                            int *besti1, int *besti2, int *best_k);

static void iq1_order_avx2(const float *x, int n, int *order);

#define QFS_IQ1_ORDER iq1_order_avx2
#define QFS_IQ1S_SPLIT iq1s_split_avx2
#define QFS_IQ1M_SPLIT iq1m_split_avx2
#define QFS_IQ_NEAREST iq_nearest_avx2
#define QFS_IQ1_NEAREST iq1_nearest_avx2
#define QFS_IQ_SEARCH_SCALE iq_search_scale_avx2
#include "kernels/avx2.h"
#include "kernels/quant_block_iq.h"

/* qfs_iq_nearest_listed for the trials (lanes) in `lanes`, which share the
 * list, each at its own scale (a lane of vscale): the listed points one
 * after the other, each lane keeping its first minimum, which is the scalar
 * loop's choice lane by lane.  The levels go to Lt[8 * i + lane] for the
 * group's coordinates i. */
static inline void nearest_trials(const struct qfs_iq_lattice *lat, const uint16_t *list,
                                  const float *x, const float *w, __m256 vscale, unsigned lanes,
                                  int8_t *Lt)
{
    const int npos = lat->npos;
    const int count = list[0];
    __m256 best = _mm256_set1_ps(FLT_MAX);
    __m256i bj = _mm256_setzero_si256();
    for (int j = 0; j < count; j++) {
        const int8_t *lv = lat->level + npos * list[1 + j];
        __m256 d2 = _mm256_setzero_ps();
        for (int i = 0; i < npos; i++) {
            const __m256 diff = _mm256_sub_ps(
                _mm256_mul_ps(vscale, _mm256_set1_ps((float)(2 * lv[i] + 1))), _mm256_set1_ps(x[i]));
            d2 = _mm256_add_ps(d2, _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(w[i]), diff), diff));
        }
        const __m256 take = _mm256_cmp_ps(d2, best, _CMP_LT_OQ);
        best = _mm256_blendv_ps(best, d2, take);
        bj = _mm256_castps_si256(_mm256_blendv_ps(_mm256_castsi256_ps(bj),
                                                  _mm256_castsi256_ps(_mm256_set1_epi32(j)), take));
    }
    int pj[8];
    _mm256_storeu_si256((__m256i *)pj, bj);
    for (unsigned m = lanes; m != 0; m &= m - 1) {
        const int l = __builtin_ctz(m);
        const int8_t *lv = lat->level + npos * list[1 + pj[l]];
        for (int i = 0; i < npos; i++)
            Lt[8 * i + l] = lv[i];
    }
}

/* qfs_iq_search_scale with 8 trial scales per vector, a lane each: the
 * rounding of every value and the two sums of each trial (in element order)
 * run in the lanes; the neighbour searches and the sequential choice of the
 * winning trial stay per trial, in trial order. */
static float iq_search_scale_avx2(const struct qfs_iq_lattice *lat, const struct qfs_iq_search *p,
                                  const float *xval, const float *weight, const float *waux,
                                  float scale, float den, int8_t *L)
{
    const int npos = lat->npos, bits = lat->bits_per_level;
    const int n = p->n, ngroups = n / npos;
    const int ntrials = 1 - 2 * p->is_lo;
    /* Lt[8 * i + lane]: level of value i in the lane's trial */
    int8_t Lt[8 * 32];
    int8_t Lg[8];
    int32_t keys[8][8]; /* [group][lane] */
    int on_grid[8], on_grid_aux[8][8]; /* [lane][group] */
    float this_scale[8], sqx[8], sq2[8];
    for (int k = 0; k < ngroups; k++)
        on_grid[k] = p->on_grid_init;
    float best = 0.0f;
    const __m256i lo = _mm256_setzero_si256(), hi = _mm256_set1_epi32(p->nlev - 1);
    for (int t0 = 0; t0 < ntrials; t0 += 8) {
        const __m256 is = _mm256_cvtepi32_ps(_mm256_add_epi32(
            _mm256_set1_epi32(p->is_lo + t0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
        const __m256 id = _mm256_div_ps(
            _mm256_add_ps(_mm256_set1_ps((float)(2 * p->kmaxq - 1)),
                          _mm256_mul_ps(is, _mm256_set1_ps(p->step))),
            _mm256_set1_ps(den));
        const __m256 vscale = _mm256_div_ps(_mm256_set1_ps(1.0f), id);
        _mm256_storeu_ps(this_scale, vscale);
        for (int k = 0; k < ngroups; k++) {
            __m256i key = _mm256_setzero_si256();
            for (int j = 0; j < npos; j++) {
                const int i = npos * k + j;
                const __m256 f = _mm256_mul_ps(
                    _mm256_set1_ps(0.5f),
                    _mm256_sub_ps(_mm256_mul_ps(id, _mm256_set1_ps(xval[i])), _mm256_set1_ps(1.0f)));
                const __m256i l = nearest_clamp(f, lo, hi);
                key = _mm256_or_si256(key, _mm256_slli_epi32(l, bits * j));
                const __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(l, l), lo);
                const int32_t b0 = _mm256_extract_epi32(b, 0), b1 = _mm256_extract_epi32(b, 4);
                memcpy(Lt + 8 * i, &b0, 4);
                memcpy(Lt + 8 * i + 4, &b1, 4);
            }
            _mm256_storeu_si256((__m256i *)keys[k], key);
        }
        const int nl = ntrials - t0 < 8 ? ntrials - t0 : 8;
        for (int k = 0; k < ngroups; k++) {
            /* the trials whose rounding is off the grid, by key: several trials
             * with one key search its list together (nearest_trials) when that
             * is cheaper than a search per trial (nearest8) */
            unsigned pending = 0;
            for (int l = 0; l < nl; l++) {
                on_grid_aux[l][k] = lat->map[keys[k][l]] >= 0;
                pending |= (unsigned)!on_grid_aux[l][k] << l;
            }
            const __m256i kv = _mm256_loadu_si256((const __m256i *)keys[k]);
            while (pending != 0) {
                const int l0 = __builtin_ctz(pending);
                const unsigned same =
                    pending & (unsigned)_mm256_movemask_ps(_mm256_castsi256_ps(
                                  _mm256_cmpeq_epi32(kv, _mm256_set1_epi32(keys[k][l0]))));
                pending &= ~same;
                const uint16_t *list = lat->neighbours + (-lat->map[keys[k][l0]] - 1);
                const int nsame = __builtin_popcount(same);
                if (list[0] < nsame * ((list[0] + 7) / 8 + 1)) {
                    nearest_trials(lat, list, xval + npos * k, waux + npos * k, vscale, same,
                                   Lt + 8 * npos * k);
                    continue;
                }
                for (unsigned m = same; m != 0; m &= m - 1) {
                    const int l = __builtin_ctz(m);
                    nearest8(lat, list, xval + npos * k, waux + npos * k, this_scale[l],
                             _mm256_setr_ps(1.f, 3.f, 5.f, 7.f, 9.f, 11.f, 13.f, 15.f), Lg);
                    for (int j = 0; j < npos; j++)
                        Lt[8 * (npos * k + j) + l] = Lg[j];
                }
            }
        }
        __m256 vqx = _mm256_setzero_ps(), vq2 = _mm256_setzero_ps();
        for (int i = 0; i < n; i++) {
            const __m256 w = _mm256_set1_ps(weight[i]);
            const __m256i li = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(Lt + 8 * i)));
            const __m256 q = _mm256_cvtepi32_ps(
                _mm256_add_epi32(_mm256_add_epi32(li, li), _mm256_set1_epi32(1)));
            vqx = _mm256_add_ps(vqx, _mm256_mul_ps(_mm256_set1_ps(weight[i] * xval[i]), q));
            vq2 = _mm256_add_ps(vq2, _mm256_mul_ps(_mm256_mul_ps(w, q), q));
        }
        _mm256_storeu_ps(sqx, vqx);
        _mm256_storeu_ps(sq2, vq2);
        for (int l = 0; l < nl; l++) {
            if (sq2[l] > 0.0f && sqx[l] * sqx[l] > best * sq2[l]) {
                scale = sqx[l] / sq2[l];
                best = scale * sqx[l];
                for (int i = 0; i < n; i++)
                    L[i] = Lt[8 * i + l];
                for (int k = 0; k < ngroups; k++)
                    on_grid[k] = on_grid_aux[l][k];
            }
        }
    }
    return qfs_iq_refit(lat, p, xval, weight, waux, scale, on_grid, L);
}

/* qfs_iq1_order (a stable sort) by ranks: value j goes to the count of values
 * below it plus the count of equal ones before it, 8 values j per vector.
 * n: 16 or 32 (a rank is at most n - 1: a value never counts itself). */
static void iq1_order_avx2(const float *x, int n, int *order)
{
    int rank[32];
    for (int j0 = 0; j0 < n; j0 += 8) {
        const __m256 xj = _mm256_loadu_ps(x + j0);
        const __m256i jv = _mm256_add_epi32(_mm256_set1_epi32(j0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
        __m256i r = _mm256_setzero_si256();
        for (int i = 0; i < n; i++) {
            const __m256 xi = _mm256_set1_ps(x[i]);
            const __m256 before = _mm256_castsi256_ps(_mm256_cmpgt_epi32(jv, _mm256_set1_epi32(i)));
            const __m256 ahead = _mm256_or_ps(
                _mm256_cmp_ps(xi, xj, _CMP_LT_OQ),
                _mm256_and_ps(_mm256_cmp_ps(xi, xj, _CMP_EQ_OQ), before));
            r = _mm256_sub_epi32(r, _mm256_castps_si256(ahead));
        }
        _mm256_storeu_si256((__m256i *)(rank + j0), r);
    }
    /* ranks form a permutation unless a value is NaN (equal to nothing):
     * then the insertion sort decides */
    uint32_t seen = 0;
    for (int j = 0; j < n; j++) {
        seen |= 1u << rank[j];
        order[rank[j]] = j;
    }
    if (seen != (n == 32 ? 0xffffffffu : (1u << n) - 1u))
        qfs_iq1_order(x, n, order);
}

/* The IQ1 split fits take 8 consecutive i2 per vector.  A candidate wins
 * only if it beats the best score so far, which the vector tests for all 8
 * against the score before them: when none passes, none would have in
 * sequence either (the score only changes when one passes).  The first lane
 * that passes is replayed with the scalar test (its candidates in order, on
 * the same values), then the lanes after it are tested again against the new
 * score, and so on. */

/* lanes i2 = i2_0 .. i2_0 + 7 that are <= last */
static inline __m256 lanes_upto(int i2_0, int last)
{
    return _mm256_castsi256_ps(_mm256_cmpgt_epi32(
        _mm256_set1_epi32(last + 1),
        _mm256_add_epi32(_mm256_set1_epi32(i2_0), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))));
}

/* sq2 > 0 && sqx * sqx > best * sq2, per lane */
static inline __m256 beats(__m256 sqx, __m256 sq2, __m256 best)
{
    return _mm256_and_ps(_mm256_cmp_ps(sq2, _mm256_setzero_ps(), _CMP_GT_OQ),
                         _mm256_cmp_ps(_mm256_mul_ps(sqx, sqx), _mm256_mul_ps(best, sq2),
                                       _CMP_GT_OQ));
}

/* the lanes (bits) where one of the candidates beats best */
static inline unsigned pass2(__m256 qxp, __m256 q2p, __m256 qxm, __m256 q2m, float best,
                             __m256 valid)
{
    const __m256 bs = _mm256_set1_ps(best);
    return (unsigned)_mm256_movemask_ps(
        _mm256_and_ps(_mm256_or_ps(beats(qxp, q2p, bs), beats(qxm, q2m, bs)), valid));
}

static inline unsigned pass4(const __m256 *sqx, const __m256 *sq2, float best, __m256 valid)
{
    const __m256 bs = _mm256_set1_ps(best);
    __m256 pass = beats(sqx[0], sq2[0], bs);
    for (int k = 1; k < 4; k++)
        pass = _mm256_or_ps(pass, beats(sqx[k], sq2[k], bs));
    return (unsigned)_mm256_movemask_ps(_mm256_and_ps(pass, valid));
}

static void iq1s_split_avx2(const float *sumx, const float *sumw, const float *x_p,
                            const float *x_m, float *scale, int *besti1, int *besti2,
                            int *best_shift)
{
    enum { BS = 32 };
    float px[BS + 1 + 8], pw[BS + 1 + 8];
    memcpy(px, sumx, sizeof(float) * (BS + 1));
    memcpy(pw, sumw, sizeof(float) * (BS + 1));
    memset(px + BS + 1, 0, sizeof(float) * 8);
    memset(pw + BS + 1, 0, sizeof(float) * 8);
    const __m256 p0 = _mm256_set1_ps(x_p[0]), p1 = _mm256_set1_ps(x_p[1]), p2 = _mm256_set1_ps(x_p[2]);
    const __m256 m0 = _mm256_set1_ps(x_m[0]), m1 = _mm256_set1_ps(x_m[1]), m2 = _mm256_set1_ps(x_m[2]);
    const __m256 tx = _mm256_set1_ps(px[BS]), tw = _mm256_set1_ps(pw[BS]);
    float best_score = -FLT_MAX;
    float vqxp[8], vq2p[8], vqxm[8], vq2m[8];
    for (int i1 = 0; i1 <= BS; i1++) {
        const __m256 ax = _mm256_set1_ps(px[i1]), aw = _mm256_set1_ps(pw[i1]);
        const __m256 sx0 = _mm256_set1_ps(px[i1] - px[0]), sw0 = _mm256_set1_ps(pw[i1] - pw[0]);
        for (int i2 = i1; i2 <= BS; i2 += 8) {
            const __m256 bx = _mm256_loadu_ps(px + i2), bw = _mm256_loadu_ps(pw + i2);
            const __m256 sx1 = _mm256_sub_ps(bx, ax), sx2 = _mm256_sub_ps(tx, bx);
            const __m256 sw1 = _mm256_sub_ps(bw, aw), sw2 = _mm256_sub_ps(tw, bw);
            const __m256 qxp = _mm256_add_ps(
                _mm256_add_ps(_mm256_mul_ps(sx0, p0), _mm256_mul_ps(sx1, p1)), _mm256_mul_ps(sx2, p2));
            const __m256 q2p = _mm256_add_ps(
                _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(sw0, p0), p0),
                              _mm256_mul_ps(_mm256_mul_ps(sw1, p1), p1)),
                _mm256_mul_ps(_mm256_mul_ps(sw2, p2), p2));
            const __m256 qxm = _mm256_add_ps(
                _mm256_add_ps(_mm256_mul_ps(sx0, m0), _mm256_mul_ps(sx1, m1)), _mm256_mul_ps(sx2, m2));
            const __m256 q2m = _mm256_add_ps(
                _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(sw0, m0), m0),
                              _mm256_mul_ps(_mm256_mul_ps(sw1, m1), m1)),
                _mm256_mul_ps(_mm256_mul_ps(sw2, m2), m2));
            const __m256 valid = lanes_upto(i2, BS);
            unsigned mask = pass2(qxp, q2p, qxm, q2m, best_score, valid);
            if (mask == 0)
                continue;
            _mm256_storeu_ps(vqxp, qxp);
            _mm256_storeu_ps(vq2p, q2p);
            _mm256_storeu_ps(vqxm, qxm);
            _mm256_storeu_ps(vq2m, q2m);
            while (mask != 0) {
                const int l = __builtin_ctz(mask);
                if (vq2p[l] > 0.0f && vqxp[l] * vqxp[l] > best_score * vq2p[l]) {
                    *scale = vqxp[l] / vq2p[l];
                    best_score = *scale * vqxp[l];
                    *besti1 = i1;
                    *besti2 = i2 + l;
                    *best_shift = 1;
                }
                if (vq2m[l] > 0.0f && vqxm[l] * vqxm[l] > best_score * vq2m[l]) {
                    *scale = vqxm[l] / vq2m[l];
                    best_score = *scale * vqxm[l];
                    *besti1 = i1;
                    *besti2 = i2 + l;
                    *best_shift = -1;
                }
                mask = pass2(qxp, q2p, qxm, q2m, best_score, valid) & ~((2u << l) - 1u);
            }
        }
    }
}

static void iq1m_split_avx2(const float *px0, const float *px1, const float *pw0,
                            const float *pw1, const float *x_p, const float *x_m, float *scale,
                            int *besti1, int *besti2, int *best_k)
{
    enum { BS = 16 };
    float px[2][BS + 1 + 8], pw[2][BS + 1 + 8];
    memcpy(px[0], px0, sizeof(float) * (BS + 1));
    memcpy(px[1], px1, sizeof(float) * (BS + 1));
    memcpy(pw[0], pw0, sizeof(float) * (BS + 1));
    memcpy(pw[1], pw1, sizeof(float) * (BS + 1));
    for (int h = 0; h < 2; h++) {
        memset(px[h] + BS + 1, 0, sizeof(float) * 8);
        memset(pw[h] + BS + 1, 0, sizeof(float) * 8);
    }
    const float txs[2] = {px0[BS], px1[BS]};
    const float tws[2] = {pw0[BS], pw1[BS]};
    const float p2 = x_p[2], m2 = x_m[2];
    const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1];
    const float cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
    const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1];
    const float cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
    float best_score = -FLT_MAX;
    float vqx[4][8], vq2[4][8];
    for (int i1 = 0; i1 <= BS; i1++) {
        __m256 qx_p[2], qx_m[2], q2_p[2], q2_m[2];
        float tp[2], tm[2];
        for (int h = 0; h < 2; h++) {
            tp[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1;
            tm[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1;
        }
        for (int i2 = i1; i2 <= BS; i2 += 8) {
            for (int h = 0; h < 2; h++) {
                const __m256 sx = _mm256_add_ps(_mm256_set1_ps(px[h][i1]), _mm256_loadu_ps(px[h] + i2));
                const __m256 w2 = _mm256_loadu_ps(pw[h] + i2);
                qx_p[h] = _mm256_sub_ps(_mm256_set1_ps(txs[h] * p2), sx);
                qx_m[h] = _mm256_sub_ps(_mm256_set1_ps(txs[h] * m2), sx);
                q2_p[h] = _mm256_add_ps(_mm256_set1_ps(tp[h]), _mm256_mul_ps(w2, _mm256_set1_ps(cp2)));
                q2_m[h] = _mm256_add_ps(_mm256_set1_ps(tm[h]), _mm256_mul_ps(w2, _mm256_set1_ps(cm2)));
            }
            const __m256 sqx[4] = {_mm256_add_ps(qx_p[0], qx_p[1]), _mm256_add_ps(qx_p[0], qx_m[1]),
                                   _mm256_add_ps(qx_m[0], qx_p[1]), _mm256_add_ps(qx_m[0], qx_m[1])};
            const __m256 sq2[4] = {_mm256_add_ps(q2_p[0], q2_p[1]), _mm256_add_ps(q2_p[0], q2_m[1]),
                                   _mm256_add_ps(q2_m[0], q2_p[1]), _mm256_add_ps(q2_m[0], q2_m[1])};
            const __m256 valid = lanes_upto(i2, BS);
            unsigned mask = pass4(sqx, sq2, best_score, valid);
            if (mask == 0)
                continue;
            for (int k = 0; k < 4; k++) {
                _mm256_storeu_ps(vqx[k], sqx[k]);
                _mm256_storeu_ps(vq2[k], sq2[k]);
            }
            while (mask != 0) {
                const int l = __builtin_ctz(mask);
                for (int k = 0; k < 4; k++) {
                    if (vq2[k][l] > 0.0f && vqx[k][l] * vqx[k][l] > best_score * vq2[k][l]) {
                        *scale = vqx[k][l] / vq2[k][l];
                        best_score = *scale * vqx[k][l];
                        *besti1 = i1;
                        *besti2 = i2 + l;
                        *best_k = k;
                    }
                }
                mask = pass4(sqx, sq2, best_score, valid) & ~((2u << l) - 1u);
            }
        }
    }
}

QFS_IQ_QUANTIZE_ROW(qfs_quantize_row_iq2_xxs_avx2, iq2_xxs, IQ2_XXS, 1, QFS_AVX2)
QFS_IQ_QUANTIZE_ROW(qfs_quantize_row_iq2_xs_avx2, iq2_xs, IQ2_XS, 1, QFS_AVX2)
QFS_IQ_QUANTIZE_ROW(qfs_quantize_row_iq2_s_avx2, iq2_s, IQ2_S, 0, QFS_AVX2)
QFS_IQ_QUANTIZE_ROW(qfs_quantize_row_iq3_xxs_avx2, iq3_xxs, IQ3_XXS, 0, QFS_AVX2)
QFS_IQ_QUANTIZE_ROW(qfs_quantize_row_iq3_s_avx2, iq3_s, IQ3_S, 0, QFS_AVX2)
QFS_IQ_QUANTIZE_ROW(qfs_quantize_row_iq1_s_avx2, iq1_s, IQ1_S, 1, QFS_AVX2)
QFS_IQ_QUANTIZE_ROW(qfs_quantize_row_iq1_m_avx2, iq1_m, IQ1_M, 0, QFS_AVX2)

#if defined(__clang__)
#pragma clang attribute pop
#else
#pragma GCC pop_options
#endif

#endif
