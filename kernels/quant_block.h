/* One block of each format: quantize and dequantize.
 *
 * The single source of truth for the arithmetic of every block format.  The
 * portable CPU path loops over blocks with these functions; a CUDA path
 * compiles the same functions (QFS_HD) and gives each thread a block.  Rules
 * that keep that possible: static inline, no recursion, no allocation, no libc
 * beyond <math.h> functions CUDA also provides (fabsf, roundf) and memcpy.
 *
 * Without an importance matrix every quantizer reproduces the bytes of ggml's
 * quantize_row_<t>_ref: the same float operations in the same order (build
 * with -ffp-contract=off / nvcc -fmad=false, never fast-math).  Inputs must be
 * finite; NaN/inf in a block give unspecified (but memory-safe) bytes. */
#ifndef QFS_QUANT_BLOCK_H
#define QFS_QUANT_BLOCK_H

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/blocks.h"

#ifdef __CUDACC__
#define QFS_HD __host__ __device__
#else
#define QFS_HD
#endif

/* ---- bit helpers ---------------------------------------------------------- */

static inline QFS_HD uint32_t qfs_f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline QFS_HD float qfs_bits_f32(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline QFS_HD int qfs_imin(int a, int b) { return a < b ? a : b; }
static inline QFS_HD int qfs_imax(int a, int b) { return a > b ? a : b; }

/* ---- half and bfloat16 ------------------------------------------------------ */

/* f32 -> IEEE binary16, round to nearest even.  Overflow gives +-inf,
 * subnormal results are exact-rounded, NaN stays NaN: quiet bit set, payload
 * truncated to its top 9 bits (what x86 F16C's vcvtps2ph does). */
static inline QFS_HD uint16_t qfs_fp32_to_fp16(float f)
{
    const uint32_t x = qfs_f32_bits(f);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;

    if (ax > 0x7f800000u) /* NaN */
        return (uint16_t)(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));
    /* 65520 = halfway between 65504 (largest half) and 2^16: ties go to the
     * even neighbour, which is the infinity encoding. */
    if (ax >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below 2^-14: half subnormal or zero */
        if (ax <= 0x33000000u) /* <= 2^-25: rounds to zero (2^-25 is a tie to 0) */
            return (uint16_t)sign;
        const uint32_t e = ax >> 23;                       /* 102 .. 112 */
        const uint32_t m = (ax & 0x7fffffu) | 0x800000u;   /* value = m * 2^(e-150) */
        const uint32_t shift = 126u - e;                   /* units of 2^-24: 14 .. 24 */
        uint32_t q = m >> shift;
        const uint32_t rem = m & ((1u << shift) - 1u);
        const uint32_t half = 1u << (shift - 1u);
        if (rem > half || (rem == half && (q & 1u)))
            q++; /* may carry into the smallest normal: still the right encoding */
        return (uint16_t)(sign | q);
    }
    /* normal: rebias exponent 127 -> 15, keep 10 mantissa bits, round */
    const uint32_t r = ax - ((127u - 15u) << 23);
    uint32_t q = r >> 13;
    const uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (q & 1u)))
        q++; /* a carry into the exponent is correct; inf was handled above */
    return (uint16_t)(sign | q);
}

/* IEEE binary16 -> f32, exact (NaN payloads kept). */
static inline QFS_HD float qfs_fp16_to_fp32(uint16_t h)
{
    const uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    const uint32_t e = (h >> 10) & 0x1fu;
    const uint32_t m = h & 0x3ffu;

    if (e == 0x1fu)
        return qfs_bits_f32(sign | 0x7f800000u | (m << 13));
    if (e == 0) {
        /* zero or subnormal: m * 2^-24, exact in f32 */
        const float v = (float)m * 5.9604644775390625e-8f;
        return qfs_bits_f32(sign | qfs_f32_bits(v));
    }
    return qfs_bits_f32(sign | ((e + (127u - 15u)) << 23) | (m << 13));
}

/* f32 -> bfloat16 as gguf-py (and ggml) do it: a NaN keeps its top 16 bits and
 * gets the quiet bit (bit 6 of the bf16); everything else rounds to nearest
 * even on the top 16 bits (overflow to inf as the carry dictates). */
static inline QFS_HD uint16_t qfs_fp32_to_bf16(float f)
{
    const uint32_t x = qfs_f32_bits(f);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((x >> 16) | 64u);
    return (uint16_t)((x + (0x7fffu + ((x >> 16) & 1u))) >> 16);
}

static inline QFS_HD float qfs_bf16_to_fp32(uint16_t h)
{
    return qfs_bits_f32((uint32_t)h << 16);
}

/* ggml's nearest_int: round half to even via the 1.5*2^23 trick.
 * Valid for |f| <= 4194303; outside it gives the same (meaningless) bits the
 * reference does. */
static inline QFS_HD int qfs_nearest_int(float f)
{
    const float v = f + 12582912.f;
    return (int)(qfs_f32_bits(v) & 0x007fffffu) - 0x00400000;
}

/* ---- Q4_0: 32 elements, value = (q - 8) * d ------------------------------ */

static inline QFS_HD void qfs_quantize_block_q4_0(const float *x, block_q4_0 *y)
{
    float amax = 0.0f; /* largest magnitude, first one wins on ties */
    float max = 0.0f;  /* its signed value */
    for (int j = 0; j < QK4_0; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        const float v0 = x[j] * id;
        const float v1 = x[j + QK4_0 / 2] * id;
        /* v in [-8, 8]: truncation of v + 8.5 is a round-half-up to 0..16 */
        const int q0 = qfs_imin(15, (int)(v0 + 8.5f));
        const int q1 = qfs_imin(15, (int)(v1 + 8.5f));
        y->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static inline QFS_HD void qfs_dequantize_block_q4_0(const block_q4_0 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int j = 0; j < QK4_0 / 2; j++) {
        y[j] = (float)((x->qs[j] & 0x0f) - 8) * d;
        y[j + QK4_0 / 2] = (float)((x->qs[j] >> 4) - 8) * d;
    }
}

/* ---- Q4_1: 32 elements, value = q * d + m ------------------------------- */

static inline QFS_HD void qfs_quantize_block_q4_1(const float *x, block_q4_1 *y)
{
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < QK4_1; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    y->m = qfs_fp32_to_fp16(min);
    for (int j = 0; j < QK4_1 / 2; j++) {
        const float v0 = (x[j] - min) * id;
        const float v1 = (x[j + QK4_1 / 2] - min) * id;
        const int q0 = qfs_imin(15, (int)(v0 + 0.5f));
        const int q1 = qfs_imin(15, (int)(v1 + 0.5f));
        y->qs[j] = (uint8_t)(q0 | (q1 << 4));
    }
}

static inline QFS_HD void qfs_dequantize_block_q4_1(const block_q4_1 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    const float m = qfs_fp16_to_fp32(x->m);
    for (int j = 0; j < QK4_1 / 2; j++) {
        y[j] = (float)(x->qs[j] & 0x0f) * d + m;
        y[j + QK4_1 / 2] = (float)(x->qs[j] >> 4) * d + m;
    }
}

/* ---- Q5_0: 32 elements, value = (q - 16) * d, q has 5 bits -------------- */

static inline QFS_HD void qfs_quantize_block_q5_0(const float *x, block_q5_0 *y)
{
    float amax = 0.0f;
    float max = 0.0f;
    for (int j = 0; j < QK5_0; j++) {
        if (amax < fabsf(x[j])) {
            amax = fabsf(x[j]);
            max = x[j];
        }
    }
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_0 / 2; j++) {
        const float v0 = x[j] * id;
        const float v1 = x[j + QK5_0 / 2] * id;
        const uint32_t q0 = (uint32_t)qfs_imin(31, (int)(v0 + 16.5f));
        const uint32_t q1 = (uint32_t)qfs_imin(31, (int)(v1 + 16.5f));
        y->qs[j] = (uint8_t)((q0 & 0x0fu) | ((q1 & 0x0fu) << 4));
        qh |= ((q0 >> 4) & 1u) << j;
        qh |= ((q1 >> 4) & 1u) << (j + QK5_0 / 2);
    }
    for (int b = 0; b < 4; b++)
        y->qh[b] = (uint8_t)(qh >> (8 * b));
}

static inline QFS_HD uint32_t qfs_load_qh(const uint8_t qh[4])
{
    return (uint32_t)qh[0] | ((uint32_t)qh[1] << 8) | ((uint32_t)qh[2] << 16) |
           ((uint32_t)qh[3] << 24);
}

static inline QFS_HD void qfs_dequantize_block_q5_0(const block_q5_0 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    const uint32_t qh = qfs_load_qh(x->qh);
    for (int j = 0; j < QK5_0 / 2; j++) {
        const int h0 = (int)((qh >> j) & 1u) << 4;
        const int h1 = (int)((qh >> (j + QK5_0 / 2)) & 1u) << 4;
        y[j] = (float)(((x->qs[j] & 0x0f) | h0) - 16) * d;
        y[j + QK5_0 / 2] = (float)(((x->qs[j] >> 4) | h1) - 16) * d;
    }
}

/* ---- Q5_1: 32 elements, value = q * d + m, q has 5 bits ------------------ */

static inline QFS_HD void qfs_quantize_block_q5_1(const float *x, block_q5_1 *y)
{
    float min = FLT_MAX;
    float max = -FLT_MAX;
    for (int j = 0; j < QK5_1; j++) {
        if (x[j] < min)
            min = x[j];
        if (x[j] > max)
            max = x[j];
    }
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    y->m = qfs_fp32_to_fp16(min);
    uint32_t qh = 0;
    for (int j = 0; j < QK5_1 / 2; j++) {
        const float v0 = (x[j] - min) * id;
        const float v1 = (x[j + QK5_1 / 2] - min) * id;
        /* the reference truncates to uint8 without clamping: v <= 31 + rounding */
        const uint32_t q0 = (uint32_t)(uint8_t)(v0 + 0.5f);
        const uint32_t q1 = (uint32_t)(uint8_t)(v1 + 0.5f);
        y->qs[j] = (uint8_t)((q0 & 0x0fu) | ((q1 & 0x0fu) << 4));
        qh |= ((q0 >> 4) & 1u) << j;
        qh |= ((q1 >> 4) & 1u) << (j + QK5_1 / 2);
    }
    for (int b = 0; b < 4; b++)
        y->qh[b] = (uint8_t)(qh >> (8 * b));
}

static inline QFS_HD void qfs_dequantize_block_q5_1(const block_q5_1 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    const float m = qfs_fp16_to_fp32(x->m);
    const uint32_t qh = qfs_load_qh(x->qh);
    for (int j = 0; j < QK5_1 / 2; j++) {
        const int h0 = (int)((qh >> j) & 1u) << 4;
        const int h1 = (int)((qh >> (j + QK5_1 / 2)) & 1u) << 4;
        y[j] = (float)((x->qs[j] & 0x0f) | h0) * d + m;
        y[j + QK5_1 / 2] = (float)((x->qs[j] >> 4) | h1) * d + m;
    }
}

/* ---- Q8_0: 32 elements, value = q * d, q in [-127, 127] ------------------ */

static inline QFS_HD void qfs_quantize_block_q8_0(const float *x, block_q8_0 *y)
{
    float amax = 0.0f;
    for (int j = 0; j < QK8_0; j++) {
        const float a = fabsf(x[j]);
        amax = amax > a ? amax : a;
    }
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    for (int j = 0; j < QK8_0; j++)
        y->qs[j] = (int8_t)roundf(x[j] * id); /* half away from zero */
}

static inline QFS_HD void qfs_dequantize_block_q8_0(const block_q8_0 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int j = 0; j < QK8_0; j++)
        y[j] = (float)x->qs[j] * d;
}

/* ---- Q6_K: 256 elements, 16 sub-blocks of 16, value = d * sc * (q - 32) -- */

#define QFS_GROUP_MAX_EPS 1e-15f

/* Symmetric quantization of n values to [-nmax, nmax-1], scale chosen to
 * maximise sumlx^2/suml2 with weights x^2 over 19 trial scales (ggml's
 * make_qx_quants with rmse_type 1 and no importance).  L gets q + nmax.
 * Returns the scale (0 for an all-zero group). */
static inline QFS_HD float qfs_make_qx_quants_rmse1(int n, int nmax, const float *x, int8_t *L)
{
    float max = 0.0f;
    float amax = 0.0f;
    for (int i = 0; i < n; i++) {
        const float ax = fabsf(x[i]);
        if (ax > amax) {
            amax = ax;
            max = x[i];
        }
    }
    if (amax < QFS_GROUP_MAX_EPS) {
        for (int i = 0; i < n; i++)
            L[i] = 0;
        return 0.0f;
    }
    float iscale = (float)(-nmax) / max;
    float sumlx = 0.0f;
    float suml2 = 0.0f;
    for (int i = 0; i < n; i++) {
        const int l = qfs_imax(-nmax, qfs_imin(nmax - 1, qfs_nearest_int(iscale * x[i])));
        L[i] = (int8_t)(l + nmax);
        const float w = x[i] * x[i];
        sumlx += w * x[i] * (float)l;
        suml2 += w * (float)l * (float)l;
    }
    float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
    float best = scale * sumlx;
    for (int is = -9; is <= 9; is++) {
        if (is == 0)
            continue;
        iscale = -((float)nmax + 0.1f * (float)is) / max;
        sumlx = 0.0f;
        suml2 = 0.0f;
        for (int i = 0; i < n; i++) {
            const int l = qfs_imax(-nmax, qfs_imin(nmax - 1, qfs_nearest_int(iscale * x[i])));
            const float w = x[i] * x[i];
            sumlx += w * x[i] * (float)l;
            suml2 += w * (float)l * (float)l;
        }
        if (suml2 > 0.0f && sumlx * sumlx > best * suml2) {
            for (int i = 0; i < n; i++) {
                const int l = qfs_imax(-nmax, qfs_imin(nmax - 1, qfs_nearest_int(iscale * x[i])));
                L[i] = (int8_t)(l + nmax);
            }
            scale = sumlx / suml2;
            best = scale * sumlx;
        }
    }
    return scale;
}

static inline QFS_HD void qfs_quantize_block_q6_K(const float *x, block_q6_K *y)
{
    int8_t L[QK_K];
    float scales[QK_K / 16];
    float max_scale = 0.0f;
    float max_abs_scale = 0.0f;

    for (int ib = 0; ib < QK_K / 16; ib++) {
        const float scale = qfs_make_qx_quants_rmse1(16, 32, x + 16 * ib, L + 16 * ib);
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
