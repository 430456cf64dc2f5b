/* One super-block (QK_K = 256 elements) of each K-quant format: Q2_K, Q3_K,
 * Q4_K, Q5_K, Q6_K.  Quantize (plain and importance-weighted) and dequantize.
 *
 * The rules of quant_block.h hold here too (static inline QFS_HD, no
 * allocation, no libc beyond fabsf/sqrtf/memcpy/memset, same float operations
 * in the same order as ggml, -ffp-contract=off).  Without an importance
 * matrix each qfs_quantize_block_<t> gives the bytes of ggml's
 * quantize_row_<t>_ref; qfs_quantize_block_<t>_w(x, qw, y), with qw the 256
 * importance weights of the block's columns, those of quantize_row_<t>_impl
 * (what ggml_quantize_chunk runs when it is given an imatrix).
 *
 * Every K format is a two-level scheme: each sub-block (16 or 32 elements)
 * gets a scale (and for Q2_K/Q4_K/Q5_K a min) from a small search, then the
 * sub-block scales are themselves quantized to 4/6/8 bits against one f16
 * super-block scale, and the elements are re-quantized with the scale they
 * will actually be decoded with.  The searches below are where the time goes;
 * they are written to evaluate several independent trial scales side by side
 * (one vector lane per trial, each lane's sums still in element order), which
 * changes no float operation, only the order in which independent ones run. */
#ifndef QFS_QUANT_BLOCK_K_H
#define QFS_QUANT_BLOCK_K_H

#include "kernels/quant_block.h"

#if !defined(__CUDACC__) && defined(__SSE__)
#include <xmmintrin.h>
#endif

/* Correctly rounded square root without the errno path of libm's sqrtf
 * (which costs a compare and a branch per call on x86). */
static inline QFS_HD float qfs_sqrtf(float x)
{
#if !defined(__CUDACC__) && defined(__SSE__)
    return _mm_cvtss_f32(_mm_sqrt_ss(_mm_set_ss(x)));
#else
    return sqrtf(x);
#endif
}

/* ---- sub-block searches ------------------------------------------------------- */

/* Symmetric quantization of 16 values to [-nmax, nmax-1] (ggml's
 * make_qx_quants with rmse_type 1): 19 trial inverse scales, the first
 * -nmax/max, then -(nmax + 0.1 is)/max for is = -9..-1, 1..9; the winner
 * maximises sumlx^2/suml2 with weights qw (x^2 when qw is NULL), a later trial
 * winning only when strictly better.  L gets q + nmax.  Returns the least
 * squares scale of the winner (0 for an all-zero group). */
static inline QFS_HD float qfs_make_qx_quants_rmse1(int n, int nmax, const float *x, int8_t *L,
                                                    const float *qw)
{
    float amax;
    const float max = qfs_first_absmax(x, n, &amax);
    if (amax < QFS_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++)
            L[i] = 0;
        return 0.0f;
    }
    /* Trial 0 is iscale = -nmax/max, trials 1..18 are is = -9..-1, 1..9 of
     * the reference's search, 19 pads to a multiple of 4 (a copy of 18, never
     * chosen).  The trials are independent, so their sums run side by side
     * (one vector lane per trial, each sum still in element order), and the
     * sequential choice comes afterwards. */
    enum { NT = 20 };
    float isc[NT];
    isc[0] = (float)(-nmax) / max;
    for (int t = 1; t < NT; t++) {
        const int is = t < 19 ? (t <= 9 ? t - 10 : t - 9) : 9;
        isc[t] = -((float)nmax + 0.1f * (float)is) / max;
    }
    float sumlx[NT], suml2[NT];
    for (int t = 0; t < NT; t++) {
        sumlx[t] = 0.0f;
        suml2[t] = 0.0f;
    }
    for (int i = 0; i < n; i++) {
        const float xi = x[i];
        const float w = qw != NULL ? qw[i] : xi * xi;
        const float wx = w * xi; /* w*x[i]*l is (w*x[i])*l */
        for (int t = 0; t < NT; t++) {
            const int l = qfs_imax(-nmax, qfs_imin(nmax - 1, qfs_nearest_int(isc[t] * xi)));
            sumlx[t] += wx * (float)l;
            suml2[t] += w * (float)l * (float)l;
        }
    }
    int best_t = 0;
    float scale = suml2[0] != 0.0f ? sumlx[0] / suml2[0] : 0.0f;
    float best = scale * sumlx[0];
    for (int t = 1; t < NT - 1; t++) {
        if (suml2[t] > 0.0f && sumlx[t] * sumlx[t] > best * suml2[t]) {
            best_t = t;
            scale = sumlx[t] / suml2[t];
            best = scale * sumlx[t];
        }
    }
    const float iscale = isc[best_t];
    for (int i = 0; i < n; i++) {
        const int l = qfs_imax(-nmax, qfs_imin(nmax - 1, qfs_nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
    }
    return scale;
}

/* Q3_K's plain search (ggml's make_q3_quants with do_rmse, n = 16, nmax = 4):
 * start from iscale = -4/max, then up to 5 sweeps of coordinate descent, each
 * element moved to the level that the current least-squares fit of the others
 * asks for when that raises sumlx^2/suml2 (weights x^2).  Sequential by
 * nature: each accepted move changes the sums the next element sees.  L gets
 * q + 4 in 0..7. */
static inline QFS_HD float qfs_make_q3_quants(const float *x, int8_t *L)
{
    enum { N = 16, NMAX = 4 };
    float amax;
    const float max = qfs_first_absmax(x, N, &amax);
    if (amax < QFS_GROUP_MAX_EPS) {
        for (int i = 0; i < N; i++)
            L[i] = 0;
        return 0.0f;
    }
    const float iscale = (float)(-NMAX) / max;
    float w[N], wx[N];
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < N; i++) {
        const int l = qfs_imax(-NMAX, qfs_imin(NMAX - 1, qfs_nearest_int(iscale * x[i])));
        L[i] = (int8_t)l;
        w[i] = x[i] * x[i];
        wx[i] = w[i] * x[i];
        sumlx += wx[i] * (float)l;
        suml2 += w[i] * (float)l * (float)l;
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < N; i++) {
            const float li = (float)L[i];
            float slx = sumlx - wx[i] * li;
            if (!(slx > 0.0f))
                continue;
            float sl2 = suml2 - w[i] * li * li;
            const int nl =
                qfs_imax(-NMAX, qfs_imin(NMAX - 1, qfs_nearest_int(x[i] * sl2 / slx)));
            if (nl == L[i])
                continue;
            slx += wx[i] * (float)nl;
            sl2 += w[i] * (float)nl * (float)nl;
            if (sl2 > 0.0f && slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (int8_t)nl;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed)
            break;
    }
    for (int i = 0; i < N; i++)
        L[i] = (int8_t)(L[i] + NMAX);
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* Affine quantization of n <= 32 values to 0..nmax, x ~ scale * q - the_min
 * (ggml's make_qkx2_quants / make_qkx3_quants; the two differ only in
 * their weights, which the caller passes in w, and the all-equal test, which
 * for non-NaN input is the same).
 *
 * The reference starts from the min/max grid, then tries nstep + 1 inverse
 * scales (rmin + rdelta*is + nmax)/(max - min); for each it takes the
 * weighted least-squares (scale, min <= 0) for those levels and keeps it when
 * its weighted error (|diff| when use_mad, else diff^2) is strictly lower.
 * A kept trial replaces min, and min enters every later trial's levels: so
 * trials are independent only until one is kept.  We evaluate QFS_KX_LANES
 * trials at once with the current min, walk them in order, and at the first
 * one kept that changes min start a new batch after it (the trials already
 * computed past it used the old min and are dropped).  Every trial that
 * counts is computed exactly as the reference computes it.  L gets the levels
 * of the kept trial (recomputed from its inverse scale and min). */
#define QFS_KX_LANES 8

static inline QFS_HD float qfs_make_qkx_quants(int n, int nmax, const float *x, const float *w,
                                               uint8_t *L, float *the_min, float rmin,
                                               float rdelta, int nstep, int use_mad)
{
    enum { B = QFS_KX_LANES };
    float min, max;
    qfs_minmax(x, n, &min, &max);
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < n; i++) {
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0.0f)
        min = 0.0f;
    if (max == min) {
        for (int i = 0; i < n; i++)
            L[i] = 0;
        *the_min = -min;
        return 0.0f;
    }

    /* the min/max grid: the error to beat */
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_err = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = qfs_imax(0, qfs_imin(nmax, qfs_nearest_int(iscale * (x[i] - min))));
        float diff = scale * (float)l + min - x[i];
        diff = use_mad ? fabsf(diff) : diff * diff;
        best_err += w[i] * diff;
    }
    /* the grid L comes from: (iscale, min) at the time */
    float L_iscale = iscale, L_min = min;

    int is = 0;
    while (is <= nstep) {
        const float range = max - min;
        float isc[B];
        for (int t = 0; t < B; t++)
            isc[t] = (rmin + rdelta * (float)(is + t) + (float)nmax) / range;
        float sl[B], sl2[B], sxl[B];
        for (int t = 0; t < B; t++) {
            sl[t] = 0.0f;
            sl2[t] = 0.0f;
            sxl[t] = 0.0f;
        }
        float lev[32][B]; /* the trials' levels, as floats */
        for (int i = 0; i < n; i++) {
            const float xi = x[i], wi = w[i];
            const float xm = xi - min;
            for (int t = 0; t < B; t++) {
                const int l = qfs_imax(0, qfs_imin(nmax, qfs_nearest_int(isc[t] * xm)));
                const float fl = (float)l;
                const float wl = wi * fl;
                lev[i][t] = fl;
                sl[t] += wl;
                sl2[t] += wl * fl;
                sxl[t] += wl * xi;
            }
        }
        float D[B], ts[B], tm[B];
        for (int t = 0; t < B; t++) {
            D[t] = sum_w * sl2[t] - sl[t] * sl[t];
            const float Dd = D[t] > 0.0f ? D[t] : 1.0f; /* lanes with D <= 0 are never kept */
            float s = (sum_w * sxl[t] - sum_x * sl[t]) / Dd;
            float m = (sl2[t] * sum_x - sl[t] * sxl[t]) / Dd;
            if (m > 0.0f) {
                m = 0.0f;
                s = sl2[t] != 0.0f ? sxl[t] / sl2[t] : 0.0f; /* sl2 > 0 whenever D > 0 */
            }
            ts[t] = s;
            tm[t] = m;
        }
        float err[B];
        for (int t = 0; t < B; t++)
            err[t] = 0.0f;
        for (int i = 0; i < n; i++) {
            const float xi = x[i], wi = w[i];
            for (int t = 0; t < B; t++) {
                float diff = ts[t] * lev[i][t] + tm[t] - xi;
                diff = use_mad ? fabsf(diff) : diff * diff;
                err[t] += wi * diff;
            }
        }
        const int avail = nstep + 1 - is < B ? nstep + 1 - is : B;
        int step = avail;
        for (int t = 0; t < avail; t++) {
            if (D[t] > 0.0f && err[t] < best_err) {
                best_err = err[t];
                scale = ts[t];
                L_iscale = isc[t];
                L_min = min;
                const int moved = tm[t] != min;
                min = tm[t];
                if (moved) {
                    step = t + 1;
                    break;
                }
            }
        }
        is += step;
    }
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)qfs_imax(0, qfs_imin(nmax, qfs_nearest_int(L_iscale * (x[i] - L_min))));
    *the_min = -min;
    return scale;
}

/* Quantization of n non-negative values (sub-block scales or mins) to
 * 0..nmax against one scale, weighted by qw (ggml's make_qp_quants): the
 * max grid, 8 nearby grids (kept when strictly better in weighted squared
 * error), then up to 5 sweeps of coordinate descent on sumlx^2/suml2.
 * L is uint8 as in the reference: a negative level (only from a negative
 * input) wraps, and later sweeps see the wrapped value. */
static inline QFS_HD float qfs_make_qp_quants(int n, int nmax, const float *x, uint8_t *L,
                                              const float *qw)
{
    float max = 0.0f;
    for (int i = 0; i < n; i++)
        max = max > x[i] ? max : x[i];
    if (max < QFS_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++)
            L[i] = 0;
        return 0.0f;
    }
    float iscale = (float)nmax / max;
    for (int i = 0; i < n; i++)
        L[i] = (uint8_t)qfs_nearest_int(iscale * x[i]);
    const float scale0 = 1.0f / iscale;
    float best_mse = 0.0f;
    for (int i = 0; i < n; i++) {
        const float diff = x[i] - scale0 * (float)L[i];
        best_mse += qw[i] * diff * diff;
    }
    for (int is = -4; is <= 4; is++) {
        if (is == 0)
            continue;
        const float isc = (0.1f * (float)is + (float)nmax) / max;
        const float sc = 1.0f / isc;
        float mse = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = qfs_imin(nmax, qfs_nearest_int(isc * x[i]));
            const float diff = x[i] - sc * (float)l;
            mse += qw[i] * diff * diff;
        }
        if (mse < best_mse) {
            best_mse = mse;
            iscale = isc;
        }
    }
    float sumlx = 0.0f, suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = qfs_imin(nmax, qfs_nearest_int(iscale * x[i]));
        L[i] = (uint8_t)l;
        sumlx += qw[i] * x[i] * (float)l;
        suml2 += qw[i] * (float)l * (float)l;
    }
    for (int sweep = 0; sweep < 5; sweep++) {
        int changed = 0;
        for (int i = 0; i < n; i++) {
            const float wi = qw[i];
            const float li = (float)L[i];
            float slx = sumlx - wi * x[i] * li;
            float sl2 = suml2 - wi * li * li;
            if (!(slx > 0.0f && sl2 > 0.0f))
                continue;
            const int nl = qfs_imin(nmax, qfs_nearest_int(x[i] * sl2 / slx));
            if (nl == (int)L[i])
                continue;
            slx += wi * x[i] * (float)nl;
            sl2 += wi * (float)nl * (float)nl;
            if (slx * slx * suml2 > sumlx * sumlx * sl2) {
                L[i] = (uint8_t)nl;
                sumlx = slx;
                suml2 = sl2;
                changed++;
            }
        }
        if (!changed)
            break;
    }
    return suml2 > 0.0f ? sumlx / suml2 : 0.0f;
}

/* ---- shared pieces ---------------------------------------------------------- */

/* sum of x[i]^2 over the super-block, in element order */
static inline QFS_HD float qfs_sum_sq_k(const float *x)
{
    float s = 0.0f;
    for (int i = 0; i < QK_K; i++)
        s += x[i] * x[i];
    return s;
}

/* importance weights of the weighted paths: qw[i] * sqrt(sigma2 + x[i]^2) */
static inline QFS_HD void qfs_k_weights(const float *x, const float *qw, float sigma2, int n,
                                        float *w)
{
    for (int i = 0; i < n; i++)
        w[i] = qw[i] * qfs_sqrtf(sigma2 + x[i] * x[i]);
}

/* sequential sum of n floats (the reference's sumw) */
static inline QFS_HD float qfs_sum_seq(const float *w, int n)
{
    float s = 0.0f;
    for (int i = 0; i < n; i++)
        s += w[i];
    return s;
}

/* Q2_K / Q3_K element packing: qs[32h + l] = L[128h + l + 32k] << 2k, k = 0..3 */
static inline QFS_HD void qfs_pack_2bit_k(const uint8_t *L, uint8_t *qs)
{
    uint8_t out[QK_K / 4];
    for (int h = 0; h < 2; h++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *q = L + 128 * h + l;
            out[32 * h + l] = (uint8_t)(q[0] | (q[32] << 2) | (q[64] << 4) | (q[96] << 6));
        }
    memcpy(qs, out, sizeof out);
}

/* Q4_K / Q5_K 6-bit (scale, min) pairs, 8 of them in 12 bytes (see blocks.h) */
static inline QFS_HD void qfs_pack_scale_min_k4(const uint8_t *ls, const uint8_t *lm, uint8_t *s)
{
    for (int j = 0; j < 4; j++) {
        s[j] = ls[j];
        s[j + 4] = lm[j];
    }
    for (int j = 4; j < 8; j++) {
        s[j + 4] = (uint8_t)((ls[j] & 0xf) | ((lm[j] & 0xf) << 4));
        s[j - 4] = (uint8_t)(s[j - 4] | ((ls[j] >> 4) << 6));
        s[j] = (uint8_t)(s[j] | ((lm[j] >> 4) << 6));
    }
}

static inline QFS_HD void qfs_unpack_scale_min_k4(int j, const uint8_t *s, uint8_t *sc, uint8_t *m)
{
    if (j < 4) {
        *sc = s[j] & 63;
        *m = s[j + 4] & 63;
    } else {
        *sc = (uint8_t)((s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4));
        *m = (uint8_t)((s[j + 4] >> 4) | ((s[j] >> 6) << 4));
    }
}

/* Re-quantize 32-element sub-blocks with the (d, dmin) they decode with:
 * q = nearest((x + dmin*m) / (d*sc)) in 0..nmax.  A sub-block whose scale
 * decodes to 0 keeps the levels of its search, as in the reference. */
static inline QFS_HD void qfs_requant_k4(const float *x, const uint8_t *scales, uint16_t d16,
                                         uint16_t dmin16, int nmax, uint8_t *L)
{
    const float dsup = qfs_fp16_to_fp32(d16), msup = qfs_fp16_to_fp32(dmin16);
    for (int j = 0; j < QK_K / 32; j++) {
        uint8_t sc, m;
        qfs_unpack_scale_min_k4(j, scales, &sc, &m);
        const float d = dsup * (float)sc;
        if (d == 0.0f)
            continue;
        const float dm = msup * (float)m;
        uint8_t q[32];
        for (int i = 0; i < 32; i++)
            q[i] = (uint8_t)qfs_imax(0, qfs_imin(nmax, qfs_nearest_int((x[32 * j + i] + dm) / d)));
        memcpy(L + 32 * j, q, sizeof q);
    }
}

/* Q3_K's 16 6-bit scales (stored + 32) */
static inline QFS_HD void qfs_pack_scales_q3_K(const int *l, uint8_t *s)
{
    uint8_t o[12];
    memset(o, 0, sizeof o);
    for (int j = 0; j < 16; j++) {
        o[j % 8] = (uint8_t)(o[j % 8] | ((l[j] & 0xf) << (j < 8 ? 0 : 4)));
        o[8 + j % 4] = (uint8_t)(o[8 + j % 4] | ((l[j] >> 4) << (2 * (j / 4))));
    }
    memcpy(s, o, sizeof o);
}

static inline QFS_HD int qfs_scale_q3_K(const uint8_t *s, int j)
{
    const int lo = j < 8 ? (s[j] & 0xf) : (s[j - 8] >> 4);
    const int hi = (s[8 + j % 4] >> (2 * (j / 4))) & 3;
    return (lo | (hi << 4)) - 32;
}

/* ---- Q2_K: 16 sub-blocks of 16, x = d*sc*q - dmin*m, q in 0..3 --------------- */

static inline QFS_HD void qfs_q2_K_finish(const float *x, block_q2_K *y, uint8_t *L)
{
    const float dsup = qfs_fp16_to_fp32(y->d), msup = qfs_fp16_to_fp32(y->dmin);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = dsup * (float)(y->scales[j] & 0xf);
        if (d == 0.0f)
            continue;
        const float m = msup * (float)(y->scales[j] >> 4);
        for (int i = 0; i < 16; i++)
            L[16 * j + i] =
                (uint8_t)qfs_imax(0, qfs_imin(3, qfs_nearest_int((x[16 * j + i] + m) / d)));
    }
    qfs_pack_2bit_k(L, y->qs);
}

static inline QFS_HD void qfs_quantize_block_q2_K(const float *x, block_q2_K *y)
{
    uint8_t L[QK_K];
    float scales[16], mins[16];
    float max_scale = 0.0f, max_min = 0.0f; /* scales and mins are >= 0 */
    for (int j = 0; j < 16; j++) {
        float w[16];
        for (int i = 0; i < 16; i++)
            w[i] = fabsf(x[16 * j + i]);
        scales[j] = qfs_make_qkx_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.5f, 0.1f,
                                        15, 1);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    uint8_t sb[16];
    if (max_scale > 0.0f) {
        const float iscale = 15.0f / max_scale;
        for (int j = 0; j < 16; j++)
            sb[j] = (uint8_t)qfs_nearest_int(iscale * scales[j]);
        y->d = qfs_fp32_to_fp16(max_scale / 15.0f);
    } else {
        memset(sb, 0, sizeof sb);
        y->d = qfs_fp32_to_fp16(0.0f);
    }
    if (max_min > 0.0f) {
        const float iscale = 15.0f / max_min;
        for (int j = 0; j < 16; j++)
            sb[j] = (uint8_t)(sb[j] | ((unsigned)qfs_nearest_int(iscale * mins[j]) << 4));
        y->dmin = qfs_fp32_to_fp16(max_min / 15.0f);
    } else {
        y->dmin = qfs_fp32_to_fp16(0.0f);
    }
    memcpy(y->scales, sb, sizeof sb);
    qfs_q2_K_finish(x, y, L);
}

static inline QFS_HD void qfs_quantize_block_q2_K_w(const float *x, const float *qw, block_q2_K *y)
{
    uint8_t L[QK_K];
    float scales[16], mins[16], sw[16];
    const float sigma2 = qfs_sum_sq_k(x) / (float)QK_K;
    for (int j = 0; j < 16; j++) {
        float w[16];
        qfs_k_weights(x + 16 * j, qw + 16 * j, sigma2, 16, w);
        sw[j] = qfs_sum_seq(w, 16);
        scales[j] = qfs_make_qkx_quants(16, 3, x + 16 * j, w, L + 16 * j, &mins[j], -0.9f, 0.05f,
                                        36, 0);
    }
    uint8_t Ls[16], Lm[16];
    const float dm = qfs_make_qp_quants(16, 15, scales, Ls, sw);
    const float mm = qfs_make_qp_quants(16, 15, mins, Lm, sw);
    y->d = qfs_fp32_to_fp16(dm);
    y->dmin = qfs_fp32_to_fp16(mm);
    for (int j = 0; j < 16; j++)
        y->scales[j] = (uint8_t)(Ls[j] | (Lm[j] << 4));
    qfs_q2_K_finish(x, y, L);
}

static inline QFS_HD void qfs_dequantize_block_q2_K(const block_q2_K *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d), dmin = qfs_fp16_to_fp32(x->dmin);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int half = 0; half < 2; half++) {
                const uint8_t sc = x->scales[8 * h + 2 * k + half];
                const float dl = d * (float)(sc & 0xf), ml = dmin * (float)(sc >> 4);
                const uint8_t *q = x->qs + 32 * h + 16 * half;
                float *o = y + 128 * h + 32 * k + 16 * half;
                for (int l = 0; l < 16; l++)
                    o[l] = dl * (float)((q[l] >> (2 * k)) & 3) - ml;
            }
}

/* ---- Q3_K: 16 sub-blocks of 16, x = d*sc*(q - 4), sc in -32..31, q in 0..7 --- */

/* Re-quantize with the decoded scales, move bit 2 to hmask, pack the rest. */
static inline QFS_HD void qfs_q3_K_finish(const float *x, block_q3_K *y, int8_t *L)
{
    const float dsup = qfs_fp16_to_fp32(y->d);
    for (int j = 0; j < 16; j++) {
        const float d = dsup * (float)(int8_t)qfs_scale_q3_K(y->scales, j);
        if (d == 0.0f)
            continue;
        for (int i = 0; i < 16; i++)
            L[16 * j + i] =
                (int8_t)(qfs_imax(-4, qfs_imin(3, qfs_nearest_int(x[16 * j + i] / d))) + 4);
    }
    uint8_t hm[QK_K / 8], low[QK_K];
    memset(hm, 0, sizeof hm);
    for (int j = 0; j < QK_K; j++) {
        const int hi = L[j] > 3;
        hm[j % 32] = (uint8_t)(hm[j % 32] | (hi << (j / 32)));
        low[j] = (uint8_t)(L[j] - 4 * hi);
    }
    memcpy(y->hmask, hm, sizeof hm);
    qfs_pack_2bit_k(low, y->qs);
}

static inline QFS_HD void qfs_quantize_block_q3_K(const float *x, block_q3_K *y)
{
    int8_t L[QK_K];
    float scales[16];
    float max_scale = 0.0f, amax = 0.0f;
    for (int j = 0; j < 16; j++) {
        scales[j] = qfs_make_q3_quants(x + 16 * j, L + 16 * j);
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
        qfs_pack_scales_q3_K(l, y->scales);
        y->d = qfs_fp32_to_fp16(1.0f / iscale);
    } else {
        memset(y->scales, 0, sizeof y->scales);
        y->d = qfs_fp32_to_fp16(0.0f);
    }
    qfs_q3_K_finish(x, y, L);
}

static inline QFS_HD void qfs_quantize_block_q3_K_w(const float *x, const float *qw, block_q3_K *y)
{
    int8_t L[QK_K];
    float scales[16], sw[16];
    const float sigma2 = 2.0f * qfs_sum_sq_k(x) / (float)QK_K;
    for (int j = 0; j < 16; j++) {
        float w[16];
        qfs_k_weights(x + 16 * j, qw + 16 * j, sigma2, 16, w);
        sw[j] = qfs_sum_seq(w, 16);
        scales[j] = qfs_make_qx_quants_rmse1(16, 4, x + 16 * j, L + 16 * j, w);
    }
    int8_t Ls[16];
    const float d_block = qfs_make_qx_quants_rmse1(16, 32, scales, Ls, sw);
    int l[16];
    for (int j = 0; j < 16; j++)
        l[j] = Ls[j];
    qfs_pack_scales_q3_K(l, y->scales);
    y->d = qfs_fp32_to_fp16(d_block);
    qfs_q3_K_finish(x, y, L);
}

static inline QFS_HD void qfs_dequantize_block_q3_K(const block_q3_K *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int h = 0; h < 2; h++)
        for (int k = 0; k < 4; k++)
            for (int half = 0; half < 2; half++) {
                const int j = 8 * h + 2 * k + half;
                const float dl = d * (float)qfs_scale_q3_K(x->scales, j);
                const uint8_t *q = x->qs + 32 * h + 16 * half;
                const uint8_t *hm = x->hmask + 16 * half;
                const int bit = 4 * h + k;
                float *o = y + 128 * h + 32 * k + 16 * half;
                for (int l = 0; l < 16; l++) {
                    const int v = ((q[l] >> (2 * k)) & 3) - (((hm[l] >> bit) & 1) ? 0 : 4);
                    o[l] = dl * (float)v;
                }
            }
}

/* ---- Q4_K / Q5_K: 8 sub-blocks of 32, x = d*sc*q - dmin*m ------------------- */

/* The plain path's sub-block search: weights av_x + |x| with av_x the rms
 * of the sub-block; then 6-bit scales and mins against their maxima. */
static inline QFS_HD void qfs_k4_plain_scales(const float *x, int nmax, float rmin, int nstep,
                                              uint8_t *L, uint8_t *packed, uint16_t *d,
                                              uint16_t *dmin)
{
    float scales[8], mins[8];
    float max_scale = 0.0f, max_min = 0.0f;
    for (int j = 0; j < 8; j++) {
        const float *xs = x + 32 * j;
        float s2 = 0.0f;
        for (int i = 0; i < 32; i++)
            s2 += xs[i] * xs[i];
        const float av_x = qfs_sqrtf(s2 / 32.0f);
        float w[32];
        for (int i = 0; i < 32; i++)
            w[i] = av_x + fabsf(xs[i]);
        scales[j] = qfs_make_qkx_quants(32, nmax, xs, w, L + 32 * j, &mins[j], rmin, 0.1f, nstep, 0);
        if (scales[j] > max_scale)
            max_scale = scales[j];
        if (mins[j] > max_min)
            max_min = mins[j];
    }
    const float inv_scale = max_scale > 0.0f ? 63.0f / max_scale : 0.0f;
    const float inv_min = max_min > 0.0f ? 63.0f / max_min : 0.0f;
    uint8_t ls[8], lm[8];
    for (int j = 0; j < 8; j++) {
        /* uint8 truncation first, then the clamp, as the reference does */
        const uint8_t a = (uint8_t)qfs_nearest_int(inv_scale * scales[j]);
        const uint8_t b = (uint8_t)qfs_nearest_int(inv_min * mins[j]);
        ls[j] = a < 63 ? a : 63;
        lm[j] = b < 63 ? b : 63;
    }
    qfs_pack_scale_min_k4(ls, lm, packed);
    *d = qfs_fp32_to_fp16(max_scale / 63.0f);
    *dmin = qfs_fp32_to_fp16(max_min / 63.0f);
}

/* The weighted path's: weights qw * sqrt(sigma2 + x^2), 37 trials, then the
 * scales and mins quantized by make_qp_quants weighted by the sub-block sums. */
static inline QFS_HD void qfs_k4_weighted_scales(const float *x, const float *qw, int nmax,
                                                 int clamp63, uint8_t *L, uint8_t *packed,
                                                 uint16_t *d, uint16_t *dmin)
{
    float scales[8], mins[8], sw[8];
    const float sigma2 = 2.0f * qfs_sum_sq_k(x) / (float)QK_K;
    for (int j = 0; j < 8; j++) {
        float w[32];
        qfs_k_weights(x + 32 * j, qw + 32 * j, sigma2, 32, w);
        sw[j] = qfs_sum_seq(w, 32);
        scales[j] = qfs_make_qkx_quants(32, nmax, x + 32 * j, w, L + 32 * j, &mins[j], -0.9f,
                                        0.05f, 36, 0);
    }
    uint8_t ls[8], lm[8];
    const float d_block = qfs_make_qp_quants(8, 63, scales, ls, sw);
    const float m_block = qfs_make_qp_quants(8, 63, mins, lm, sw);
    /* Only Q5_K clamps: it matters for a level that wrapped (negative input,
     * see qfs_make_qp_quants), which Q4_K stores as it is. */
    for (int j = 0; j < 8 && clamp63; j++) {
        ls[j] = ls[j] < 63 ? ls[j] : 63;
        lm[j] = lm[j] < 63 ? lm[j] : 63;
    }
    qfs_pack_scale_min_k4(ls, lm, packed);
    *d = qfs_fp32_to_fp16(d_block);
    *dmin = qfs_fp32_to_fp16(m_block);
}

static inline QFS_HD void qfs_q4_K_pack(const uint8_t *L, block_q4_K *y)
{
    uint8_t qs[QK_K / 2];
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++)
            qs[32 * c + l] = (uint8_t)(L[64 * c + l] | (L[64 * c + 32 + l] << 4));
    memcpy(y->qs, qs, sizeof qs);
}

static inline QFS_HD void qfs_quantize_block_q4_K(const float *x, block_q4_K *y)
{
    uint8_t L[QK_K];
    qfs_k4_plain_scales(x, 15, -1.0f, 20, L, y->scales, &y->d, &y->dmin);
    qfs_requant_k4(x, y->scales, y->d, y->dmin, 15, L);
    qfs_q4_K_pack(L, y);
}

static inline QFS_HD void qfs_quantize_block_q4_K_w(const float *x, const float *qw, block_q4_K *y)
{
    uint8_t L[QK_K];
    qfs_k4_weighted_scales(x, qw, 15, 0, L, y->scales, &y->d, &y->dmin);
    qfs_requant_k4(x, y->scales, y->d, y->dmin, 15, L);
    qfs_q4_K_pack(L, y);
}

static inline QFS_HD void qfs_dequantize_block_q4_K(const block_q4_K *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d), dmin = qfs_fp16_to_fp32(x->dmin);
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        qfs_unpack_scale_min_k4(2 * c, x->scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        qfs_unpack_scale_min_k4(2 * c + 1, x->scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *q = x->qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            y[64 * c + l] = d1 * (float)(q[l] & 0xf) - m1;
            y[64 * c + 32 + l] = d2 * (float)(q[l] >> 4) - m2;
        }
    }
}

static inline QFS_HD void qfs_q5_K_pack(const uint8_t *L, block_q5_K *y)
{
    uint8_t qs[QK_K / 2], qh[QK_K / 8];
    memset(qh, 0, sizeof qh);
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            const int a = L[64 * c + l], b = L[64 * c + 32 + l];
            qs[32 * c + l] = (uint8_t)((a & 0xf) | ((b & 0xf) << 4));
            qh[l] = (uint8_t)(qh[l] | ((a >> 4) << (2 * c)) | ((b >> 4) << (2 * c + 1)));
        }
    memcpy(y->qs, qs, sizeof qs);
    memcpy(y->qh, qh, sizeof qh);
}

static inline QFS_HD void qfs_quantize_block_q5_K(const float *x, block_q5_K *y)
{
    uint8_t L[QK_K];
    qfs_k4_plain_scales(x, 31, -0.5f, 15, L, y->scales, &y->d, &y->dmin);
    qfs_requant_k4(x, y->scales, y->d, y->dmin, 31, L);
    qfs_q5_K_pack(L, y);
}

static inline QFS_HD void qfs_quantize_block_q5_K_w(const float *x, const float *qw, block_q5_K *y)
{
    uint8_t L[QK_K];
    qfs_k4_weighted_scales(x, qw, 31, 1, L, y->scales, &y->d, &y->dmin);
    qfs_requant_k4(x, y->scales, y->d, y->dmin, 31, L);
    qfs_q5_K_pack(L, y);
}

static inline QFS_HD void qfs_dequantize_block_q5_K(const block_q5_K *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d), dmin = qfs_fp16_to_fp32(x->dmin);
    for (int c = 0; c < 4; c++) {
        uint8_t sc, m;
        qfs_unpack_scale_min_k4(2 * c, x->scales, &sc, &m);
        const float d1 = d * (float)sc, m1 = dmin * (float)m;
        qfs_unpack_scale_min_k4(2 * c + 1, x->scales, &sc, &m);
        const float d2 = d * (float)sc, m2 = dmin * (float)m;
        const uint8_t *ql = x->qs + 32 * c;
        for (int l = 0; l < 32; l++) {
            const int h1 = ((x->qh[l] >> (2 * c)) & 1) << 4;
            const int h2 = ((x->qh[l] >> (2 * c + 1)) & 1) << 4;
            y[64 * c + l] = d1 * (float)((ql[l] & 0xf) + h1) - m1;
            y[64 * c + 32 + l] = d2 * (float)((ql[l] >> 4) + h2) - m2;
        }
    }
}

/* ---- Q6_K: 16 sub-blocks of 16, x = d * sc * (q - 32), sc int8 ---------------- */

/* qw: the block's 256 importance weights, or NULL for the plain path (the
 * weighted path uses them directly in the sub-block search, nothing else
 * differs). */
static inline QFS_HD void qfs_q6_K_block(const float *x, const float *qw, block_q6_K *y)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0.0f;
    float max_abs_scale = 0.0f;

    for (int ib = 0; ib < QK_K / 16; ib++) {
        const float scale = qfs_make_qx_quants_rmse1(16, 32, x + 16 * ib, L + 16 * ib,
                                                     qw != NULL ? qw + 16 * ib : NULL);
        scales[ib] = scale;
        if (fabsf(scale) > max_abs_scale) {
            max_abs_scale = fabsf(scale);
            max_scale = scale;
        }
    }
    if (max_abs_scale < QFS_GROUP_MAX_EPS) {
        memset(y, 0, sizeof *y);
        return;
    }

    const float iscale = -128.0f / max_scale;
    y->d = qfs_fp32_to_fp16(1.0f / iscale);
    for (int ib = 0; ib < QK_K / 16; ib++)
        y->scales[ib] = (int8_t)qfs_imin(127, qfs_nearest_int(iscale * scales[ib]));

    const float dsuper = qfs_fp16_to_fp32(y->d);
    for (int j = 0; j < QK_K / 16; j++) {
        const float d = dsuper * (float)y->scales[j];
        if (d == 0.0f)
            continue; /* keep the levels of the sub-block search, as the reference does */
        for (int i = 0; i < 16; i++) {
            const int l = qfs_imax(-32, qfs_imin(31, qfs_nearest_int(x[16 * j + i] / d)));
            L[16 * j + i] = (int8_t)(l + 32);
        }
    }

    /* Per half (128 elements): ql[l] = q[l] | q[l+64] << 4,
     * ql[l+32] = q[l+32] | q[l+96] << 4, qh[l] = top 2 bits of q[l + 32k] at bits 2k. */
    for (int h = 0; h < 2; h++) {
        const int8_t *q = L + 128 * h;
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

static inline QFS_HD void qfs_quantize_block_q6_K(const float *x, block_q6_K *y)
{
    qfs_q6_K_block(x, NULL, y);
}

static inline QFS_HD void qfs_quantize_block_q6_K_w(const float *x, const float *qw, block_q6_K *y)
{
    qfs_q6_K_block(x, qw, y);
}

static inline QFS_HD void qfs_dequantize_block_q6_K(const block_q6_K *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *ql = x->ql + 64 * h;
        const uint8_t *qh = x->qh + 32 * h;
        const int8_t *sc = x->scales + 8 * h;
        float *yh = y + 128 * h;
        for (int l = 0; l < 32; l++) {
            const int is = l / 16;
            const int q1 = ((ql[l] & 0xf) | (((qh[l] >> 0) & 3) << 4)) - 32;
            const int q2 = ((ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4)) - 32;
            const int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            yh[l] = d * (float)sc[is + 0] * (float)q1;
            yh[l + 32] = d * (float)sc[is + 2] * (float)q2;
            yh[l + 64] = d * (float)sc[is + 4] * (float)q3;
            yh[l + 96] = d * (float)sc[is + 6] * (float)q4;
        }
    }
}

#endif
