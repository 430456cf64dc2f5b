/* One block of the "family B" formats: quantize and dequantize.
 *
 *  - the importance-weighted variants of Q4_0, Q4_1, Q5_0, Q5_1 (what
 *    ggml_quantize_chunk runs when it is given an imatrix; the plain variants
 *    live in quant_block.h);
 *  - IQ4_NL and IQ4_XS (non-linear 4-bit grid), with and without importance;
 *  - TQ1_0 and TQ2_0 (ternary), Q1_0 and Q2_0 (sign / 2-bit), which ggml
 *    quantizes the same way with or without an imatrix.
 *
 * Same rules as quant_block.h: the single source of truth of each format's
 * arithmetic, static inline QFS_HD, no allocation, no recursion, the float
 * operations of ggml in ggml's order (build with -ffp-contract=off).  sqrtf is
 * the one <math.h> call: IEEE-exact on the host and in CUDA (-prec-sqrt=true). */
#ifndef QFS_QUANT_BLOCK_B_H
#define QFS_QUANT_BLOCK_B_H

#include "kernels/quant_block.h"

/* ---- helpers shared by the weighted paths ------------------------------------ */

/* Mean square of a whole row, as the weighted legacy quantizers take it:
 * a sequential sum (order matters), then one division by n. */
static inline QFS_HD float qfs_row_sigma2(const float *x, int64_t n)
{
    float sum = 0.0f;
    for (int64_t j = 0; j < n; j++)
        sum += x[j] * x[j];
    return sum / (float)n;
}

/* Importance of each element of a block: the caller's per-column weight
 * times sqrt(sigma2 + x^2), so large values matter more than the imatrix
 * alone says. */
static inline QFS_HD void qfs_importance32(const float *x, const float *qw, float sigma2, float *w)
{
    for (int j = 0; j < 32; j++)
        w[j] = qw[j] * sqrtf(sigma2 + x[j] * x[j]);
}

/* Symmetric weighted quantization of 32 values to [-nmax, nmax-1] (ggml's
 * make_qx_quants with rmse_type 1 and explicit weights).  L gets q + nmax.
 * Scale search: the trial iscale = -nmax/max, then -(nmax + 0.1*is)/max for
 * is = -9..-1, 1..9; the first trial maximising sumlx^2/suml2 wins.  The
 * trials' sums are computed side by side (each still summed in element
 * order), the choice is made afterwards in the reference's order. */
static inline QFS_HD float qfs_lw_qx_quants32(int nmax, const float *x, const float *w, int8_t *L)
{
    float amax;
    const float max = qfs_first_absmax(x, 32, &amax);
    if (amax < QFS_GROUP_MAX_EPS) {
        for (int i = 0; i < 32; i++)
            L[i] = 0;
        return 0.0f;
    }
    enum { NT = 19 };
    float isc[NT], sumlx[NT], suml2[NT];
    isc[0] = (float)(-nmax) / max;
    for (int t = 1; t < NT; t++) {
        const int is = t <= 9 ? t - 10 : t - 9; /* -9..-1, 1..9 */
        isc[t] = -((float)nmax + 0.1f * (float)is) / max;
    }
    for (int t = 0; t < NT; t++) {
        sumlx[t] = 0.0f;
        suml2[t] = 0.0f;
    }
    for (int i = 0; i < 32; i++) {
        const float wx = w[i] * x[i];
        for (int t = 0; t < NT; t++) {
            const float l = (float)qfs_imax(-nmax, qfs_imin(nmax - 1, qfs_nearest_int(isc[t] * x[i])));
            sumlx[t] += wx * l;
            suml2[t] += w[i] * l * l;
        }
    }
    int pick = 0;
    float scale = suml2[0] != 0.0f ? sumlx[0] / suml2[0] : 0.0f;
    float best = scale * sumlx[0];
    for (int t = 1; t < NT; t++) {
        if (suml2[t] > 0.0f && sumlx[t] * sumlx[t] > best * suml2[t]) {
            pick = t;
            scale = sumlx[t] / suml2[t];
            best = scale * sumlx[t];
        }
    }
    for (int i = 0; i < 32; i++) {
        const int l = qfs_imax(-nmax, qfs_imin(nmax - 1, qfs_nearest_int(isc[pick] * x[i])));
        L[i] = (int8_t)(l + nmax);
    }
    return scale;
}

/* Asymmetric weighted quantization of 32 values to q in [0, nmax], value =
 * q * scale + min (ggml's make_qkx3_quants with rmin -0.9, rdelta 0.05,
 * 37 steps, squared error).  Returns the scale, *min_out the offset (<= 0).
 * Each step tries iscale = (nmax - 0.9 + 0.05*step) / (max - min), fits
 * scale and min by weighted least squares, and is kept when its weighted
 * squared error is strictly below the best so far.  Note that min is the
 * best fit so far, not the block minimum: once a step is kept, the later
 * steps measure range and offsets from its min (the reference does; the
 * steps are therefore sequential). */
static inline QFS_HD float qfs_lw_qkx3_quants32(int nmax, const float *x, const float *w,
                                                uint8_t *L, float *min_out)
{
    float min, max;
    qfs_minmax(x, 32, &min, &max); /* same values (and zero signs) as the reference's scan */
    float sum_w = w[0];
    float sum_x = sum_w * x[0];
    for (int i = 1; i < 32; i++) {
        sum_w += w[i];
        sum_x += w[i] * x[i];
    }
    if (min > 0.0f)
        min = 0.0f;
    if (max <= min) {
        for (int i = 0; i < 32; i++)
            L[i] = 0;
        *min_out = min;
        return 0.0f;
    }
    float iscale = (float)nmax / (max - min);
    float scale = 1.0f / iscale;
    float best_err = 0.0f;
    for (int i = 0; i < 32; i++) {
        const int l = qfs_imax(0, qfs_imin(nmax, qfs_nearest_int(iscale * (x[i] - min))));
        L[i] = (uint8_t)l;
        const float diff = scale * (float)l + min - x[i];
        best_err += w[i] * (diff * diff);
    }
    uint8_t Lt[32];
    for (int step = 0; step <= 36; step++) {
        iscale = (-0.9f + 0.05f * (float)step + (float)nmax) / (max - min);
        float sum_l = 0.0f, sum_l2 = 0.0f, sum_xl = 0.0f;
        for (int i = 0; i < 32; i++) {
            const int l = qfs_imax(0, qfs_imin(nmax, qfs_nearest_int(iscale * (x[i] - min))));
            Lt[i] = (uint8_t)l;
            const float wl = w[i] * (float)l;
            sum_l += wl;
            sum_l2 += wl * (float)l;
            sum_xl += wl * x[i];
        }
        const float D = sum_w * sum_l2 - sum_l * sum_l;
        if (!(D > 0.0f))
            continue;
        float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
        float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
        if (this_min > 0.0f) {
            this_min = 0.0f;
            this_scale = sum_xl / sum_l2;
        }
        float err = 0.0f;
        for (int i = 0; i < 32; i++) {
            const float diff = this_scale * (float)Lt[i] + this_min - x[i];
            err += w[i] * (diff * diff);
        }
        if (err < best_err) {
            memcpy(L, Lt, 32);
            best_err = err;
            scale = this_scale;
            min = this_min;
        }
    }
    *min_out = min;
    return scale;
}

/* Nibble packing of the 32-element formats: element j < 16 low, j + 16 high. */
static inline QFS_HD void qfs_pack_nibbles32(const uint8_t *L, uint8_t *qs)
{
    for (int j = 0; j < 16; j++)
        qs[j] = (uint8_t)((L[j] & 0x0f) | ((L[j + 16] & 0x0f) << 4));
}

/* Bit 4 of each of 32 levels, element j at bit j, little endian. */
static inline QFS_HD void qfs_pack_qh32(const uint8_t *L, uint8_t qh[4])
{
    uint32_t h = 0;
    for (int j = 0; j < 32; j++)
        h |= (uint32_t)((L[j] >> 4) & 1u) << j;
    for (int b = 0; b < 4; b++)
        qh[b] = (uint8_t)(h >> (8 * b));
}

/* ---- Q4_0 / Q5_0 with importance: symmetric weighted search ---------------- */

static inline QFS_HD void qfs_quantize_block_q4_0_w(const float *x, const float *qw, float sigma2,
                                                    block_q4_0 *y)
{
    float w[32];
    int8_t L[32];
    qfs_importance32(x, qw, sigma2, w);
    const float d = qfs_lw_qx_quants32(8, x, w, L); /* L in 0..15 */
    y->d = qfs_fp32_to_fp16(d);
    qfs_pack_nibbles32((const uint8_t *)L, y->qs);
}

static inline QFS_HD void qfs_quantize_block_q5_0_w(const float *x, const float *qw, float sigma2,
                                                    block_q5_0 *y)
{
    float w[32];
    int8_t L[32];
    qfs_importance32(x, qw, sigma2, w);
    const float d = qfs_lw_qx_quants32(16, x, w, L); /* L in 0..31 */
    y->d = qfs_fp32_to_fp16(d);
    qfs_pack_nibbles32((const uint8_t *)L, y->qs);
    qfs_pack_qh32((const uint8_t *)L, y->qh);
}

/* ---- Q4_1 / Q5_1 with importance: asymmetric weighted search --------------- */

static inline QFS_HD void qfs_quantize_block_q4_1_w(const float *x, const float *qw, float sigma2,
                                                    block_q4_1 *y)
{
    float w[32], min;
    uint8_t L[32];
    qfs_importance32(x, qw, sigma2, w);
    const float d = qfs_lw_qkx3_quants32(15, x, w, L, &min);
    y->d = qfs_fp32_to_fp16(d);
    y->m = qfs_fp32_to_fp16(min);
    qfs_pack_nibbles32(L, y->qs);
}

static inline QFS_HD void qfs_quantize_block_q5_1_w(const float *x, const float *qw, float sigma2,
                                                    block_q5_1 *y)
{
    float w[32], min;
    uint8_t L[32];
    qfs_importance32(x, qw, sigma2, w);
    const float d = qfs_lw_qkx3_quants32(31, x, w, L, &min);
    y->d = qfs_fp32_to_fp16(d);
    y->m = qfs_fp32_to_fp16(min);
    qfs_pack_nibbles32(L, y->qs);
    qfs_pack_qh32(L, y->qh);
}

/* ---- IQ4_NL / IQ4_XS: 16 non-uniform levels -------------------------------- */

/* ggml's kvalues_iq4nl, as floats (every level is an exact small integer).
 * nvcc: device code reads the __constant__ copy, host code the static one. */
static const float qfs_iq4nl_levels[16] = {-127.f, -104.f, -83.f, -65.f, -49.f, -35.f,
                                           -22.f,  -10.f,  1.f,   13.f,  25.f,  38.f,
                                           53.f,   69.f,   89.f,  113.f};
#ifdef __CUDACC__
static __constant__ float qfs_iq4nl_levels_dev[16] = {-127.f, -104.f, -83.f, -65.f, -49.f, -35.f,
                                                      -22.f,  -10.f,  1.f,   13.f,  25.f,  38.f,
                                                      53.f,   69.f,   89.f,  113.f};
#endif

static inline QFS_HD float qfs_iq4nl_level(int i)
{
#ifdef __CUDA_ARCH__
    return qfs_iq4nl_levels_dev[i];
#else
    return qfs_iq4nl_levels[i];
#endif
}

/* Index of the level nearest to v, as ggml's best_index_int8 picks it: 0 at
 * or below the first level, 15 at or above the last (and for NaN), else the
 * lower neighbour when v - lo < hi - v, the upper one on a tie.  Near a
 * midpoint both float differences are exact (every |midpoint| is at least
 * half its gap, so v and the differences share a binade), and away from it
 * rounding cannot flip the comparison; so the choice is "count the midpoints
 * <= v".  Checked against the reference's binary search for all 2^32 floats.
 * Branch-free, so loops over it vectorize. */
static inline QFS_HD int qfs_iq4nl_index(float v)
{
    const int c = (v >= -115.5f) + (v >= -93.5f) + (v >= -74.f) + (v >= -57.f) + (v >= -42.f) +
                  (v >= -28.5f) + (v >= -16.f) + (v >= -4.5f) + (v >= 7.f) + (v >= 19.f) +
                  (v >= 31.5f) + (v >= 45.5f) + (v >= 61.f) + (v >= 79.f) + (v >= 101.f);
    return v != v ? 15 : c;
}

#define QFS_IQ4_NTRY 7 /* what ggml_quantize_chunk uses, imatrix or not */

/* Scale of one 32-element sub-block by weighted least squares over the
 * levels; L gets the levels of the first trial (d = max / -127).  The other
 * 2*7+1 trials (1/d = (t - 127) / max) only move the scale.  0 for a block
 * below GROUP_MAX_EPS (L untouched: every caller recomputes it). */
static inline QFS_HD float qfs_iq4_subblock_scale(const float *x, const float *w, uint8_t *L)
{
    float amax;
    const float max = qfs_first_absmax(x, 32, &amax);
    if (amax < QFS_GROUP_MAX_EPS)
        return 0.0f;
    float d = -max / -127.f;
    float id = 1.0f / d;
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int j = 0; j < 32; j++) {
        const int l = qfs_iq4nl_index(id * x[j]);
        L[j] = (uint8_t)l;
        const float wq = w[j] * qfs_iq4nl_level(l);
        sumqx += wq * x[j];
        sumq2 += wq * qfs_iq4nl_level(l);
    }
    d = sumq2 > 0.0f ? sumqx / sumq2 : 0.0f;
    float best = d * sumqx;
    for (int t = -QFS_IQ4_NTRY; t <= QFS_IQ4_NTRY; t++) {
        id = (float)(t - 127) / max;
        sumqx = 0.0f;
        sumq2 = 0.0f;
        for (int j = 0; j < 32; j++) {
            const float q = qfs_iq4nl_level(qfs_iq4nl_index(id * x[j]));
            const float wq = w[j] * q;
            sumqx += wq * x[j];
            sumq2 += wq * q;
        }
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            d = sumqx / sumq2;
            best = d * sumqx;
        }
    }
    return d;
}

/* Weights of one sub-block: x^2 without importance, qw * sqrt(sigma2 + x^2) with. */
static inline QFS_HD void qfs_iq4_weights(const float *x, const float *qw, float sigma2, float *w)
{
    if (qw != NULL)
        qfs_importance32(x, qw, sigma2, w);
    else
        for (int j = 0; j < 32; j++)
            w[j] = x[j] * x[j];
}

/* Sum of squares of a super-block times 2/size (only the weighted path uses it). */
static inline QFS_HD float qfs_iq4_sigma2(const float *x, int n)
{
    float s = 0.0f;
    for (int j = 0; j < n; j++)
        s += x[j] * x[j];
    return s * (2.0f / (float)n);
}

/* qw: the block's 32 importance weights or NULL. */
static inline QFS_HD void qfs_quantize_block_iq4_nl(const float *x, const float *qw, block_iq4_nl *y)
{
    float w[32];
    uint8_t L[32];
    qfs_iq4_weights(x, qw, qw != NULL ? qfs_iq4_sigma2(x, 32) : 0.0f, w);
    const float d = qfs_iq4_subblock_scale(x, w, L);
    y->d = qfs_fp32_to_fp16(d);
    /* levels again against the chosen (unrounded) scale */
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < 32; j++)
        L[j] = (uint8_t)qfs_iq4nl_index(id * x[j]);
    qfs_pack_nibbles32(L, y->qs);
}

static inline QFS_HD void qfs_dequantize_block_iq4_nl(const block_iq4_nl *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int j = 0; j < 16; j++) {
        y[j] = d * qfs_iq4nl_level(x->qs[j] & 0x0f);
        y[j + 16] = d * qfs_iq4nl_level(x->qs[j] >> 4);
    }
}

/* qw: the super-block's 256 importance weights or NULL.  Each sub-block gets
 * its own scale, then the scales are quantized to 6 bits against
 * d = -max_scale / 32 and the levels recomputed with the quantized scale. */
static inline QFS_HD void qfs_quantize_block_iq4_xs(const float *x, const float *qw, block_iq4_xs *y)
{
    const float sigma2 = qw != NULL ? qfs_iq4_sigma2(x, QK_K) : 0.0f;
    float scales[QK_K / 32];
    float w[32];
    uint8_t L[32];
    float max_scale = 0.0f, amax_scale = 0.0f;
    for (int ib = 0; ib < QK_K / 32; ib++) {
        qfs_iq4_weights(x + 32 * ib, qw != NULL ? qw + 32 * ib : NULL, sigma2, w);
        scales[ib] = qfs_iq4_subblock_scale(x + 32 * ib, w, L);
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
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const int l = qfs_imax(-32, qfs_imin(31, qfs_nearest_int(id * scales[ib])));
        const float dl = d * (float)l;
        const float idl = dl != 0.0f ? 1.0f / dl : 0.0f;
        const float *xb = x + 32 * ib;
        for (int j = 0; j < 32; j++)
            L[j] = (uint8_t)qfs_iq4nl_index(idl * xb[j]);
        qfs_pack_nibbles32(L, y->qs + 16 * ib);
        const int ls = l + 32; /* 0..63 */
        if (ib % 2 == 0)
            y->scales_l[ib / 2] = (uint8_t)(ls & 0x0f);
        else
            y->scales_l[ib / 2] |= (uint8_t)((ls & 0x0f) << 4);
        sh |= (uint16_t)((ls >> 4) << (2 * ib));
    }
    y->scales_h = sh;
}

static inline QFS_HD void qfs_dequantize_block_iq4_xs(const block_iq4_xs *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const int ls = ((x->scales_l[ib / 2] >> (4 * (ib % 2))) & 0x0f) |
                       (((x->scales_h >> (2 * ib)) & 3) << 4);
        const float dl = d * (float)(ls - 32);
        const uint8_t *qs = x->qs + 16 * ib;
        float *yb = y + 32 * ib;
        for (int j = 0; j < 16; j++) {
            yb[j] = dl * qfs_iq4nl_level(qs[j] & 0x0f);
            yb[j + 16] = dl * qfs_iq4nl_level(qs[j] >> 4);
        }
    }
}

/* ---- TQ1_0 / TQ2_0: ternary, d = max |x| ----------------------------------- */

/* lroundf(v) + 1 as the reference stores it in an int: 0, 1, 2 for v in
 * [-1.5, 1.5).  A non-finite v (a block whose amax is so small that 1/amax
 * overflows) makes glibc's lroundf return LONG_MIN, whose low 32 bits plus
 * one are 1: such elements read as the zero trit. */
static inline QFS_HD int qfs_trit(float v)
{
    const float r = qfs_roundf(v);
    return (r >= -2147483648.0f && r < 2147483648.0f) ? (int)r + 1 : 1;
}

/* Trits of a 256-element block against id = 1/amax (0 for an all-zero block). */
static inline QFS_HD float qfs_ternary_trits(const float *x, uint8_t *t)
{
    const float d = qfs_absmax(x, QK_K);
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    for (int j = 0; j < QK_K; j++)
        t[j] = (uint8_t)qfs_trit(x[j] * id);
    return d;
}

/* Base-3 digits t[0], t[s], ... t[(k-1)s], first most significant, in 8-bit
 * arithmetic as the reference does it (wraps only on impossible inputs). */
static inline QFS_HD uint8_t qfs_pack_trits(const uint8_t *t, int k, int s)
{
    uint8_t q = 0;
    for (int n = 0; n < k; n++)
        q = (uint8_t)((uint8_t)(q * 3) + t[n * s]);
    return q;
}

/* A byte of 5 trits b (0..242) is stored as ceil(b * 256 / 243): the top trit
 * is then (byte * 3) >> 8, the next ((byte * 3) & 255 * 3) >> 8, ... */
static inline QFS_HD uint8_t qfs_trits_to_byte(uint8_t q)
{
    return (uint8_t)(((unsigned)q * 256u + 242u) / 243u);
}

static inline QFS_HD void qfs_quantize_block_tq1_0(const float *x, block_tq1_0 *y)
{
    uint8_t t[QK_K];
    const float d = qfs_ternary_trits(x, t);
    y->d = qfs_fp32_to_fp16(d);
    for (int m = 0; m < 32; m++) /* elements 0..159 */
        y->qs[m] = qfs_trits_to_byte(qfs_pack_trits(t + m, 5, 32));
    for (int m = 0; m < 16; m++) /* elements 160..239 */
        y->qs[32 + m] = qfs_trits_to_byte(qfs_pack_trits(t + 160 + m, 5, 16));
    for (int m = 0; m < 4; m++) /* elements 240..255: 4 trits, shifted up one place */
        y->qh[m] = qfs_trits_to_byte((uint8_t)(qfs_pack_trits(t + 240 + m, 4, 4) * 3));
}

/* Trit n (0 = most significant) of a stored byte. */
static inline QFS_HD int qfs_byte_trit(uint8_t b, int n)
{
    uint8_t p = 1; /* 3^n, by multiplication rather than a table */
    for (int k = 0; k < n; k++)
        p = (uint8_t)(p * 3);
    const uint8_t q = (uint8_t)(b * p);
    return ((int)q * 3) >> 8;
}

static inline QFS_HD void qfs_dequantize_block_tq1_0(const block_tq1_0 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 32; m++)
            y[32 * n + m] = (float)(qfs_byte_trit(x->qs[m], n) - 1) * d;
    for (int n = 0; n < 5; n++)
        for (int m = 0; m < 16; m++)
            y[160 + 16 * n + m] = (float)(qfs_byte_trit(x->qs[32 + m], n) - 1) * d;
    for (int n = 0; n < 4; n++)
        for (int m = 0; m < 4; m++)
            y[240 + 4 * n + m] = (float)(qfs_byte_trit(x->qh[m], n) - 1) * d;
}

static inline QFS_HD void qfs_quantize_block_tq2_0(const float *x, block_tq2_0 *y)
{
    uint8_t t[QK_K];
    const float d = qfs_ternary_trits(x, t);
    y->d = qfs_fp32_to_fp16(d);
    for (int h = 0; h < 2; h++) {
        const uint8_t *th = t + 128 * h;
        for (int m = 0; m < 32; m++)
            y->qs[32 * h + m] = (uint8_t)((th[m] & 3) | ((th[m + 32] & 3) << 2) |
                                          ((th[m + 64] & 3) << 4) | ((th[m + 96] & 3) << 6));
    }
}

static inline QFS_HD void qfs_dequantize_block_tq2_0(const block_tq2_0 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int h = 0; h < 2; h++)
        for (int n = 0; n < 4; n++)
            for (int m = 0; m < 32; m++)
                y[128 * h + 32 * n + m] = (float)(((x->qs[32 * h + m] >> (2 * n)) & 3) - 1) * d;
}

/* ---- Q1_0: 128 signs, d = mean |x| ----------------------------------------- */

static inline QFS_HD void qfs_quantize_block_q1_0(const float *x, block_q1_0 *y)
{
    float sum = 0.0f; /* sequential: the order of the sum is part of the format */
    for (int j = 0; j < QK1_0; j++)
        sum += fabsf(x[j]);
    y->d = qfs_fp32_to_fp16(sum / (float)QK1_0);
    uint8_t qs[QK1_0 / 8];
    for (int b = 0; b < QK1_0 / 8; b++) {
        unsigned bits = 0;
        for (int k = 0; k < 8; k++)
            bits |= (unsigned)(x[8 * b + k] >= 0.0f) << k; /* -0 counts as positive */
        qs[b] = (uint8_t)bits;
    }
    memcpy(y->qs, qs, sizeof qs);
}

static inline QFS_HD void qfs_dequantize_block_q1_0(const block_q1_0 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int j = 0; j < QK1_0; j++)
        y[j] = (x->qs[j / 8] >> (j % 8)) & 1 ? d : -d;
}

/* ---- Q2_0: 64 elements, levels -d, 0, d, 2d with d = max |x| --------------- */

static inline QFS_HD void qfs_quantize_block_q2_0(const float *x, block_q2_0 *y)
{
    const float d = qfs_absmax(x, QK2_0);
    const float id = d > 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    uint8_t q[QK2_0];
    for (int j = 0; j < QK2_0; j++) {
        /* (int)roundf(v) + 1 clamped to 0..3.  A v outside int range or NaN
         * (1/d overflowed) converts to INT_MIN on x86 as in the reference,
         * hence 0: so clamp the integral r to [-1, 2] in float first, with
         * NaN, +-inf and |r| >= 2^31 going to -1 (selects, no branch: the loop
         * vectorizes). */
        const float r = qfs_roundf(x[j] * id);
        float rc = r > 2.0f ? 2.0f : r;
        rc = (r >= -1.0f && r < 2147483648.0f) ? rc : -1.0f;
        q[j] = (uint8_t)((int)rc + 1);
    }
    for (int b = 0; b < QK2_0 / 4; b++)
        y->qs[b] = (uint8_t)(q[4 * b] | (q[4 * b + 1] << 2) | (q[4 * b + 2] << 4) | (q[4 * b + 3] << 6));
}

static inline QFS_HD void qfs_dequantize_block_q2_0(const block_q2_0 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int j = 0; j < QK2_0; j++)
        y[j] = (float)((int)((x->qs[j / 4] >> (2 * (j % 4))) & 3) - 1) * d;
}

#endif
