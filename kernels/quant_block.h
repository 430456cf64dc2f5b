/* One block of each format: quantize and dequantize.
 *
 * The single source of truth for the arithmetic of every block format.  The
 * portable CPU path loops over blocks with these functions; a CUDA path
 * compiles the same functions (QFS_HD) and gives each thread a block.  Rules
 * that keep that possible: static inline, no recursion, no allocation, no libc
 * beyond <math.h> functions CUDA also provides (fabsf) and memcpy.
 *
 * Without an importance matrix every quantizer reproduces the bytes of ggml's
 * quantize_row_<t>_ref: the same float operations in the same order (build
 * with -ffp-contract=off / nvcc -fmad=false, never fast-math).  Inputs must be
 * finite; NaN/inf in a block give unspecified (but memory-safe) bytes.
 *
 * Speed on the CPU: the loops are written so that gcc -O2 (whose "very cheap"
 * vectorizer takes only fixed trip counts and no runtime alias checks)
 * vectorizes them without changing a single float operation: order-free
 * reductions (max, min) run on integer bit patterns, per-element results go
 * to a local array first (a store through y could alias x), and sequential
 * float sums stay sequential per accumulator. */
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

/* (int)v as x86's cvttss2si computes it: truncation toward zero, and INT_MIN for NaN
 * and for values outside int's range.  A C cast of those is undefined (and CUDA
 * saturates instead), yet a block whose 1/d overflowed (max below ~2e-38) feeds them
 * here, and the reference's bytes for it are x86's. */
static inline QFS_HD int qfs_f2i_x86(float v)
{
    return (v > -2147483648.0f && v < 2147483648.0f) ? (int)v : (-2147483647 - 1);
}

/* roundf without libm (x86-64's baseline has no roundss, so roundf is an
 * out-of-line call there): round half away from zero, bit-identical to roundf
 * for every float.  |x| >= 2^23 is already integral, and NaN/inf fail the
 * comparison: both come back unchanged.  Below 2^23 the truncation is exact,
 * the fraction r = |x| - t is exact, and t + 1 is exact; the sign goes back on
 * by bit so -0.3 gives -0.0.  Branch-free, so loops over it vectorize. */
static inline QFS_HD float qfs_roundf(float x)
{
    const uint32_t ux = qfs_f32_bits(x);
    const uint32_t sign = ux & 0x80000000u;
    const float ax = qfs_bits_f32(ux ^ sign);
    const uint32_t small = 0u - (uint32_t)(ax < 8388608.0f); /* all ones or 0 */
    const float xs = qfs_bits_f32(qfs_f32_bits(ax) & small);  /* |x|, or 0 */
    const float t = (float)(int32_t)xs;
    const float r = xs - t;
    const uint32_t up = 0u - (uint32_t)(r >= 0.5f);
    const float ra = t + qfs_bits_f32(0x3f800000u & up); /* t + 1 or t + 0 */
    return qfs_bits_f32(((qfs_f32_bits(ra) | sign) & small) | (ux & ~small));
}

/* ---- order-free reductions on bit patterns ----------------------------------- */

/* For non-NaN floats, |x| orders like its bit pattern without the sign bit,
 * and x orders like key(x) = bits ^ (sign ? 0x7fffffff : 0) as int32, except
 * that key(-0) < key(+0).  Integer max/min vectorize where float ?: does not
 * (gcc may not reassociate it without -ffinite-math-only -fno-signed-zeros). */
static inline QFS_HD int32_t qfs_abs_key(float x)
{
    const int32_t b = (int32_t)(qfs_f32_bits(x) & 0x7fffffffu);
    return b > 0x7f800000 ? 0 : b; /* NaN counts as 0: skipped, like a failed < */
}

static inline QFS_HD int32_t qfs_ord_key(float x)
{
    const int32_t b = (int32_t)qfs_f32_bits(x);
    return b ^ (int32_t)((uint32_t)(b >> 31) >> 1);
}

static inline QFS_HD float qfs_from_ord_key(int32_t k)
{
    return qfs_bits_f32((uint32_t)(k ^ (int32_t)((uint32_t)(k >> 31) >> 1)));
}

/* max |x[i]| (0 for an empty or all-zero input) */
static inline QFS_HD float qfs_absmax(const float *x, int n)
{
    int32_t m = 0;
    for (int i = 0; i < n; i++) {
        const int32_t k = qfs_abs_key(x[i]);
        m = m > k ? m : k;
    }
    return qfs_bits_f32((uint32_t)m);
}

/* The signed value of the first element of largest magnitude, as the loop
 *   if (amax < fabsf(x[i])) { amax = fabsf(x[i]); max = x[i]; }
 * from amax = max = 0 leaves it (so +0.0f when every element is +-0).
 * *amax_out gets amax. */
static inline QFS_HD float qfs_first_absmax(const float *x, int n, float *amax_out)
{
    const float amax = qfs_absmax(x, n);
    *amax_out = amax;
    if (amax == 0.0f)
        return 0.0f;
    const uint32_t ab = qfs_f32_bits(amax);
    int i = 0;
    while ((qfs_f32_bits(x[i]) & 0x7fffffffu) != ab)
        i++;
    return x[i];
}

/* min and max of x as the loop
 *   if (x[i] < min) min = x[i];  if (x[i] > max) max = x[i];
 * from min = FLT_MAX, max = -FLT_MAX leaves them, for non-NaN x.  Only the
 * sign of a zero result depends on the order: it is the first zero's. */
static inline QFS_HD void qfs_minmax(const float *x, int n, float *min_out, float *max_out)
{
    int32_t kmin = qfs_ord_key(FLT_MAX);
    int32_t kmax = qfs_ord_key(-FLT_MAX);
    for (int i = 0; i < n; i++) {
        const int32_t k = qfs_ord_key(x[i]);
        kmin = kmin < k ? kmin : k;
        kmax = kmax > k ? kmax : k;
    }
    float min = qfs_from_ord_key(kmin);
    float max = qfs_from_ord_key(kmax);
    if (min == 0.0f || max == 0.0f) {
        int i = 0;
        while (x[i] != 0.0f)
            i++;
        if (min == 0.0f)
            min = x[i];
        if (max == 0.0f)
            max = x[i];
    }
    *min_out = min;
    *max_out = max;
}

/* ---- Q4_0: 32 elements, value = (q - 8) * d ------------------------------ */

static inline QFS_HD void qfs_quantize_block_q4_0(const float *x, block_q4_0 *y)
{
    float amax; /* largest magnitude; max: its signed value, first one wins on ties */
    const float max = qfs_first_absmax(x, QK4_0, &amax);
    const float d = max / -8.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    uint8_t qs[QK4_0 / 2];
    for (int j = 0; j < QK4_0 / 2; j++) {
        const float v0 = x[j] * id;
        const float v1 = x[j + QK4_0 / 2] * id;
        /* v in [-8, 8]: truncation of v + 8.5 is a round-half-up to 0..16 */
        const int q0 = qfs_imin(15, qfs_f2i_x86(v0 + 8.5f));
        const int q1 = qfs_imin(15, qfs_f2i_x86(v1 + 8.5f));
        /* masks: a block whose 1/d overflows gives INT_MIN here (x86), whose low
         * byte 0 is what the reference stores; no shift of a negative value */
        qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    }
    memcpy(y->qs, qs, sizeof qs);
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
    float min, max;
    qfs_minmax(x, QK4_1, &min, &max);
    const float d = (max - min) / 15.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    y->m = qfs_fp32_to_fp16(min);
    uint8_t qs[QK4_1 / 2];
    for (int j = 0; j < QK4_1 / 2; j++) {
        const float v0 = (x[j] - min) * id;
        const float v1 = (x[j + QK4_1 / 2] - min) * id;
        const int q0 = qfs_imin(15, qfs_f2i_x86(v0 + 0.5f));
        const int q1 = qfs_imin(15, qfs_f2i_x86(v1 + 0.5f));
        /* masks: a block whose 1/d overflows gives INT_MIN here (x86), whose low
         * byte 0 is what the reference stores; no shift of a negative value */
        qs[j] = (uint8_t)((q0 & 0x0f) | ((q1 & 0x0f) << 4));
    }
    memcpy(y->qs, qs, sizeof qs);
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
    float amax;
    const float max = qfs_first_absmax(x, QK5_0, &amax);
    const float d = max / -16.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    uint8_t qs[QK5_0 / 2];
    uint32_t hbit[QK5_0];
    for (int j = 0; j < QK5_0 / 2; j++) {
        const float v0 = x[j] * id;
        const float v1 = x[j + QK5_0 / 2] * id;
        const uint32_t q0 = (uint32_t)qfs_imin(31, qfs_f2i_x86(v0 + 16.5f));
        const uint32_t q1 = (uint32_t)qfs_imin(31, qfs_f2i_x86(v1 + 16.5f));
        qs[j] = (uint8_t)((q0 & 0x0fu) | ((q1 & 0x0fu) << 4));
        hbit[j] = ((q0 >> 4) & 1u) << j;
        hbit[j + QK5_0 / 2] = ((q1 >> 4) & 1u) << (j + QK5_0 / 2);
    }
    uint32_t qh = 0;
    for (int j = 0; j < QK5_0; j++)
        qh |= hbit[j];
    memcpy(y->qs, qs, sizeof qs);
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
    float min, max;
    qfs_minmax(x, QK5_1, &min, &max);
    const float d = (max - min) / 31.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    y->m = qfs_fp32_to_fp16(min);
    uint8_t qs[QK5_1 / 2];
    uint32_t hbit[QK5_1];
    for (int j = 0; j < QK5_1 / 2; j++) {
        const float v0 = (x[j] - min) * id;
        const float v1 = (x[j + QK5_1 / 2] - min) * id;
        /* the reference truncates to uint8 without clamping: v <= 31 + rounding */
        const uint32_t q0 = (uint32_t)(uint8_t)qfs_f2i_x86(v0 + 0.5f);
        const uint32_t q1 = (uint32_t)(uint8_t)qfs_f2i_x86(v1 + 0.5f);
        qs[j] = (uint8_t)((q0 & 0x0fu) | ((q1 & 0x0fu) << 4));
        hbit[j] = ((q0 >> 4) & 1u) << j;
        hbit[j + QK5_1 / 2] = ((q1 >> 4) & 1u) << (j + QK5_1 / 2);
    }
    uint32_t qh = 0;
    for (int j = 0; j < QK5_1; j++)
        qh |= hbit[j];
    memcpy(y->qs, qs, sizeof qs);
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
    const float amax = qfs_absmax(x, QK8_0);
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    y->d = qfs_fp32_to_fp16(d);
    int8_t qs[QK8_0];
    for (int j = 0; j < QK8_0; j++)
        qs[j] = (int8_t)qfs_f2i_x86(qfs_roundf(x[j] * id)); /* half away from zero */
    memcpy(y->qs, qs, sizeof qs);
}

static inline QFS_HD void qfs_dequantize_block_q8_0(const block_q8_0 *x, float *y)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int j = 0; j < QK8_0; j++)
        y[j] = (float)x->qs[j] * d;
}

/* ggml's GROUP_MAX_EPS: a group whose largest magnitude is below it is all zero. */
#define QFS_GROUP_MAX_EPS 1e-15f

/* The 256-element super-block formats (Q2_K .. Q6_K) are in quant_block_k.h. */

#endif
