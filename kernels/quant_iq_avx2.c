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
 *  - IQ1's split fits (iq1s_split_avx2, iq1m_split_avx2): every split's sums
 *    and score in vectors, then the scalar test replayed on the splits near
 *    the largest score only (iq1_near_split), else on each running record;
 *    and IQ1's stable sort (iq1_order_avx2).
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

/* Where iq1_near_split (below) cannot decide, the IQ1 split fits take 8
 * consecutive i2 per vector and replay every running record.  A candidate wins
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

/* The IQ1 splits without replaying every record.  The scalar loop accepts
 * candidate c (sums X, Q) when Q > 0 and fl(X*X) > fl(B*Q), and then sets
 * B = fl(fl(X/Q)*X); its result is the last candidate accepted, which comes
 * from the candidates near the largest score r = X*X/Q:
 *
 * Let T > 0, R = the candidates with r >= T (in order), every other one with
 * r < T (1 - g), g > 4 u, and every Q and B in the normal range (below).
 * Before the first member c1 of R, B is -FLT_MAX or some fl(fl(X/Q)*X) of an
 * earlier candidate, <= r (1 + u)^2 < T (1 - g) (1 + u)^2 (u = 2^-24); then
 * fl(X1^2) >= T Q1 (1 - u) > fl(B Q1): c1 is accepted, and everything the
 * loop keeps is overwritten.  After that B is the b of a member,
 * >= T (1 - u)^2, and an outsider fails: fl(X^2) <= r Q (1 + u) < B Q (1 - u)
 * <= fl(B Q).  So the loop run on R alone, from B = -FLT_MAX, ends in the
 * same state as the whole loop.
 *
 * Normal range: with every half's prefix weights non-decreasing (no negative
 * weight) and W, the total weight, in [2^-50, 2^55], every Q is within a few
 * ulps of a sum of w q^2 with q^2 in [1/64, 1.27], so in [2^-57, 2^56]; the
 * largest score M in [2^-50, 2^60] keeps B Q and X^2 normal for members.
 * NaN sums have no score (the scalar test fails on them too).
 *
 * Scores come from rcp and one Newton step (relative error below 2^-20 with
 * rcp's architectural 1.5 2^-12), so the threshold th has a margin: members
 * are scores >= th (r >= th (1 - 2^-20) = T), outsiders scores below
 * th (1 - 2^-18) (r < T (1 - 2^-19), and 2^-19 > 4 u); a score in between is
 * tried again with a lower th, and after three the caller runs the whole
 * loop.
 *
 * iq1_near_split does both steps for IQ1_S and IQ1_M. */
/* the candidates of splits (i1, i2 .. i2 + 7) of one type (c: its split state) */
typedef void (*iq1_candidates_fn)(const void *c, int i1, int i2, __m256 *sqx, __m256 *sq2);

/* X^2 / Q per lane (0 in lanes not valid; NaN where a sum is NaN) */
static inline __m256 iq1_near_score(__m256 sqx, __m256 sq2, __m256 valid)
{
    const __m256 r0 = _mm256_rcp_ps(sq2);
    const __m256 rq = _mm256_mul_ps(r0, _mm256_sub_ps(_mm256_set1_ps(2.0f), _mm256_mul_ps(sq2, r0)));
    return _mm256_and_ps(_mm256_mul_ps(_mm256_mul_ps(sqx, sqx), rq), valid);
}

/* the largest lane of v, which holds no NaN */
static inline float hmax8(__m256 v)
{
    __m256 m = _mm256_max_ps(v, _mm256_permute_ps(v, 0xB1));
    m = _mm256_max_ps(m, _mm256_permute_ps(m, 0x4E));
    m = _mm256_max_ps(m, _mm256_permute2f128_ps(m, m, 0x01));
    return _mm256_cvtss_f32(m);
}

/* the precondition on the prefix weights pw[0..bs] (above) */
static int iq1_near_weights(const float *pw, int bs)
{
    for (int j = 0; j < bs; j++)
        if (!(pw[j + 1] >= pw[j]))
            return 0;
    return 1;
}

/* Vectors of i2 over all i1 of a sub-block of bs: IQ1_S (bs 32) 85 with 2
 * candidates each, IQ1_M (bs 16) 27 with 4. */
enum { IQ1_NEAR_NIT = 85, IQ1_NEAR_CAND = 85 * 2 * 8 };

/* The split of bs values by the candidates near the largest score (above),
 * K candidates per split from cand; total: the sub-block's weight.  Returns 1
 * with the last accepted (*scale, *besti1, *besti2, *best_k: the candidate),
 * 0 when a precondition fails or no threshold had an empty band. */
static inline __attribute__((always_inline)) int
iq1_near_split(const void *c, int bs, int K, iq1_candidates_fn cand, float total, float *scale,
               int *besti1, int *besti2, int *best_k)
{
    if (!(total >= 0x1p-50f && total <= 0x1p55f))
        return 0;
    /* [it][k][lane] in the scalar order; vmaxr: each lane's best over k */
    float vx[IQ1_NEAR_CAND], v2[IQ1_NEAR_CAND], vr[IQ1_NEAR_CAND], vmaxr[IQ1_NEAR_NIT * 8];
    int it_i1[IQ1_NEAR_NIT], it_i2[IQ1_NEAR_NIT];
    int nit = 0;
    __m256 vmax = _mm256_setzero_ps();
    for (int i1 = 0; i1 <= bs; i1++) {
        for (int i2 = i1; i2 <= bs; i2 += 8, nit++) {
            __m256 sqx[4], sq2[4];
            cand(c, i1, i2, sqx, sq2);
            const __m256 valid = lanes_upto(i2, bs);
            __m256 m = _mm256_setzero_ps();
            for (int k = 0; k < K; k++) {
                const __m256 r = iq1_near_score(sqx[k], sq2[k], valid);
                m = _mm256_max_ps(r, m); /* a NaN r: max keeps its second operand */
                _mm256_storeu_ps(vx + (K * nit + k) * 8, sqx[k]);
                _mm256_storeu_ps(v2 + (K * nit + k) * 8, sq2[k]);
                _mm256_storeu_ps(vr + (K * nit + k) * 8, r);
            }
            _mm256_storeu_ps(vmaxr + 8 * nit, m);
            vmax = _mm256_max_ps(m, vmax);
            it_i1[nit] = i1;
            it_i2[nit] = i2;
        }
    }
    const float M = hmax8(vmax);
    if (!(M >= 0x1p-50f && M <= 0x1p60f))
        return 0;
    static const float below[3] = {1.0f - 0x1p-14f, 1.0f - 0x1p-11f, 1.0f - 0x1p-8f};
    for (int t = 0; t < 3; t++) {
        const float th = M * below[t], tlo = th * (1.0f - 0x1p-18f);
        const __m256 vlo = _mm256_set1_ps(tlo);
        float best = -FLT_MAX, sc = 0.0f;
        int b1 = -1, b2 = -1, bk = -1;
        for (int it = 0; it < nit; it++) {
            unsigned lanes = (unsigned)_mm256_movemask_ps(
                _mm256_cmp_ps(_mm256_loadu_ps(vmaxr + 8 * it), vlo, _CMP_GE_OQ));
            for (; lanes != 0; lanes &= lanes - 1) {
                const int l = __builtin_ctz(lanes);
                for (int k = 0; k < K; k++) {
                    const int at = (K * it + k) * 8 + l;
                    const float r = vr[at];
                    if (!(r >= tlo))
                        continue;
                    if (r < th)
                        goto lower; /* a score near the threshold */
                    const float X = vx[at], Q = v2[at];
                    if (Q > 0.0f && X * X > best * Q) {
                        sc = X / Q;
                        best = sc * X;
                        b1 = it_i1[it];
                        b2 = it_i2[it] + l;
                        bk = k;
                    }
                }
            }
        }
        *scale = sc;
        *besti1 = b1;
        *besti2 = b2;
        *best_k = bk;
        return 1;
    lower:;
    }
    return 0;
}

/* IQ1_S's splits: the prefix sums (8 zeros past the end) and the deltas. */
enum { IQ1S_BS = 32 };
struct iq1s_split {
    float px[IQ1S_BS + 1 + 8], pw[IQ1S_BS + 1 + 8];
    __m256 p0, p1, p2, m0, m1, m2, tx, tw;
};

/* The 2 candidates (x_p, then x_m) of splits (i1, i2 .. i2 + 7), in
 * qfs_iq1s_split's order of operations. */
static inline void iq1s_candidates(const void *split, int i1, int i2, __m256 *sqx, __m256 *sq2)
{
    const struct iq1s_split *c = split;
    const __m256 ax = _mm256_set1_ps(c->px[i1]), aw = _mm256_set1_ps(c->pw[i1]);
    const __m256 sx0 = _mm256_set1_ps(c->px[i1] - c->px[0]), sw0 = _mm256_set1_ps(c->pw[i1] - c->pw[0]);
    const __m256 bx = _mm256_loadu_ps(c->px + i2), bw = _mm256_loadu_ps(c->pw + i2);
    const __m256 sx1 = _mm256_sub_ps(bx, ax), sx2 = _mm256_sub_ps(c->tx, bx);
    const __m256 sw1 = _mm256_sub_ps(bw, aw), sw2 = _mm256_sub_ps(c->tw, bw);
    sqx[0] = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(sx0, c->p0), _mm256_mul_ps(sx1, c->p1)),
                           _mm256_mul_ps(sx2, c->p2));
    sq2[0] = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(sw0, c->p0), c->p0),
                                         _mm256_mul_ps(_mm256_mul_ps(sw1, c->p1), c->p1)),
                           _mm256_mul_ps(_mm256_mul_ps(sw2, c->p2), c->p2));
    sqx[1] = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(sx0, c->m0), _mm256_mul_ps(sx1, c->m1)),
                           _mm256_mul_ps(sx2, c->m2));
    sq2[1] = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(sw0, c->m0), c->m0),
                                         _mm256_mul_ps(_mm256_mul_ps(sw1, c->m1), c->m1)),
                           _mm256_mul_ps(_mm256_mul_ps(sw2, c->m2), c->m2));
}

static int iq1s_split_near(const struct iq1s_split *c, float *scale, int *besti1, int *besti2,
                           int *best_shift)
{
    int k = 0;
    if (!iq1_near_weights(c->pw, IQ1S_BS) ||
        !iq1_near_split(c, IQ1S_BS, 2, iq1s_candidates, c->pw[IQ1S_BS], scale, besti1, besti2, &k))
        return 0;
    *best_shift = k == 0 ? 1 : -1;
    return 1;
}

static void iq1s_split_avx2(const float *sumx, const float *sumw, const float *x_p,
                            const float *x_m, float *scale, int *besti1, int *besti2,
                            int *best_shift)
{
    enum { BS = IQ1S_BS };
    struct iq1s_split c;
    memcpy(c.px, sumx, sizeof(float) * (BS + 1));
    memcpy(c.pw, sumw, sizeof(float) * (BS + 1));
    memset(c.px + BS + 1, 0, sizeof(float) * 8);
    memset(c.pw + BS + 1, 0, sizeof(float) * 8);
    c.p0 = _mm256_set1_ps(x_p[0]);
    c.p1 = _mm256_set1_ps(x_p[1]);
    c.p2 = _mm256_set1_ps(x_p[2]);
    c.m0 = _mm256_set1_ps(x_m[0]);
    c.m1 = _mm256_set1_ps(x_m[1]);
    c.m2 = _mm256_set1_ps(x_m[2]);
    c.tx = _mm256_set1_ps(c.px[BS]);
    c.tw = _mm256_set1_ps(c.pw[BS]);
    if (iq1s_split_near(&c, scale, besti1, besti2, best_shift))
        return;
    float best_score = -FLT_MAX;
    float vqxp[8], vq2p[8], vqxm[8], vq2m[8];
    for (int i1 = 0; i1 <= BS; i1++) {
        for (int i2 = i1; i2 <= BS; i2 += 8) {
            __m256 sqx[2], sq2[2];
            iq1s_candidates(&c, i1, i2, sqx, sq2);
            const __m256 qxp = sqx[0], q2p = sq2[0], qxm = sqx[1], q2m = sq2[1];
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

/* IQ1_M's splits: the sums of each half for one i1, the constants of
 * qfs_iq1m_split (the same operations, so each lane is the scalar value). */
enum { IQ1M_BS = 16 };
struct iq1m_split {
    float px[2][IQ1M_BS + 1 + 8], pw[2][IQ1M_BS + 1 + 8]; /* 8 zeros past the end */
    float txs[2], tws[2], p2, m2, cp1, cp2, cm1, cm2;
};

/* The 4 candidates k of splits (i1, i2 .. i2 + 7), in qfs_iq1m_split's order
 * of operations. */
static inline void iq1m_candidates(const void *split, int i1, int i2, __m256 *sqx, __m256 *sq2)
{
    const struct iq1m_split *c = split;
    __m256 qx_p[2], qx_m[2], q2_p[2], q2_m[2];
    for (int h = 0; h < 2; h++) {
        const float tp = c->tws[h] * c->p2 * c->p2 + c->pw[h][i1] * c->cp1;
        const float tm = c->tws[h] * c->m2 * c->m2 + c->pw[h][i1] * c->cm1;
        const __m256 sx = _mm256_add_ps(_mm256_set1_ps(c->px[h][i1]), _mm256_loadu_ps(c->px[h] + i2));
        const __m256 w2 = _mm256_loadu_ps(c->pw[h] + i2);
        qx_p[h] = _mm256_sub_ps(_mm256_set1_ps(c->txs[h] * c->p2), sx);
        qx_m[h] = _mm256_sub_ps(_mm256_set1_ps(c->txs[h] * c->m2), sx);
        q2_p[h] = _mm256_add_ps(_mm256_set1_ps(tp), _mm256_mul_ps(w2, _mm256_set1_ps(c->cp2)));
        q2_m[h] = _mm256_add_ps(_mm256_set1_ps(tm), _mm256_mul_ps(w2, _mm256_set1_ps(c->cm2)));
    }
    sqx[0] = _mm256_add_ps(qx_p[0], qx_p[1]);
    sqx[1] = _mm256_add_ps(qx_p[0], qx_m[1]);
    sqx[2] = _mm256_add_ps(qx_m[0], qx_p[1]);
    sqx[3] = _mm256_add_ps(qx_m[0], qx_m[1]);
    sq2[0] = _mm256_add_ps(q2_p[0], q2_p[1]);
    sq2[1] = _mm256_add_ps(q2_p[0], q2_m[1]);
    sq2[2] = _mm256_add_ps(q2_m[0], q2_p[1]);
    sq2[3] = _mm256_add_ps(q2_m[0], q2_m[1]);
}

static int iq1m_split_near(const struct iq1m_split *c, float *scale, int *besti1, int *besti2,
                           int *best_k)
{
    return iq1_near_weights(c->pw[0], IQ1M_BS) && iq1_near_weights(c->pw[1], IQ1M_BS) &&
           iq1_near_split(c, IQ1M_BS, 4, iq1m_candidates, c->tws[0] + c->tws[1], scale, besti1,
                          besti2, best_k);
}

static void iq1m_split_avx2(const float *px0, const float *px1, const float *pw0,
                            const float *pw1, const float *x_p, const float *x_m, float *scale,
                            int *besti1, int *besti2, int *best_k)
{
    enum { BS = IQ1M_BS };
    struct iq1m_split c;
    memcpy(c.px[0], px0, sizeof(float) * (BS + 1));
    memcpy(c.px[1], px1, sizeof(float) * (BS + 1));
    memcpy(c.pw[0], pw0, sizeof(float) * (BS + 1));
    memcpy(c.pw[1], pw1, sizeof(float) * (BS + 1));
    for (int h = 0; h < 2; h++) {
        memset(c.px[h] + BS + 1, 0, sizeof(float) * 8);
        memset(c.pw[h] + BS + 1, 0, sizeof(float) * 8);
    }
    c.txs[0] = px0[BS];
    c.txs[1] = px1[BS];
    c.tws[0] = pw0[BS];
    c.tws[1] = pw1[BS];
    c.p2 = x_p[2];
    c.m2 = x_m[2];
    c.cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1];
    c.cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
    c.cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1];
    c.cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
    if (iq1m_split_near(&c, scale, besti1, besti2, best_k))
        return;
    float best_score = -FLT_MAX;
    float vqx[4][8], vq2[4][8];
    for (int i1 = 0; i1 <= BS; i1++) {
        for (int i2 = i1; i2 <= BS; i2 += 8) {
            __m256 sqx[4], sq2[4];
            iq1m_candidates(&c, i1, i2, sqx, sq2);
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
