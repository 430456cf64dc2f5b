/* Group quantizers of the safetensors formats (contract: intq.h).  Written from the
 * formats' descriptions (notes/formats.md: compressed-tensors' FP8 and int4 arithmetic,
 * mlx's CPU affine_quantize); no code is shared with those projects. */
#include "intq.h"

#include <math.h>
#include <string.h>

#include "../kernels/quant_block.h"

#define MIN_SCALE 0x1p-23f /* float32's epsilon: compressed-tensors' floor for a zero scale */

/* rintf (round half to even) without the libm call: for |v| < 2^22 adding and taking away
 * 1.5 * 2^23 rounds at the units in the default rounding mode (no FMA, no fast-math in
 * this build), exactly as rintf does; the sign of a zero result is rintf's too. */
static inline float rne(float v)
{
    if (!(fabsf(v) < 0x1p22f))
        return rintf(v);
    const float r = (v + 0x1.8p23f) - 0x1.8p23f;
    return r == 0.0f ? copysignf(0.0f, v) : r;
}

static inline float round_to(enum qfs_dtype dt, float x)
{
    if (dt == QFS_DT_F16)
        return qfs_fp16_to_fp32(qfs_fp32_to_fp16(x));
    if (dt == QFS_DT_BF16)
        return qfs_bf16_to_fp32(qfs_fp32_to_bf16(x));
    return x;
}

float qfs_intq_round(enum qfs_dtype dt, float x) { return round_to(dt, x); }

uint8_t qfs_intq_e4m3(float x)
{
    uint32_t b;
    memcpy(&b, &x, sizeof b);
    const uint8_t sign = (uint8_t)((b >> 24) & 0x80);
    const float a = fabsf(x);
    if (!(a > 0.0f))
        return sign; /* zeros (and NaN, which callers never pass) */
    if (a < 0x1p-6f) {
        /* subnormal m * 2^-9; rint rounds half to even, and m = 8 is exactly the code of
         * the smallest normal, 2^-6 */
        return (uint8_t)(sign | (uint8_t)rne(a * 512.0f));
    }
    int exp = (int)((b >> 23) & 0xff) - 127;
    uint32_t mant = b & 0x7fffff, keep = mant >> 20, rest = mant & 0xfffff;
    if (rest > 0x80000 || (rest == 0x80000 && (keep & 1)))
        keep++;
    if (keep == 8) {
        keep = 0;
        exp++;
    }
    if (exp > 8 || (exp == 8 && keep > 6)) /* beyond 448: saturate (callers clamp first) */
        return (uint8_t)(sign | 0x7e);
    return (uint8_t)(sign | (uint8_t)((exp + 7) << 3) | (uint8_t)keep);
}

float qfs_intq_e4m3_value(uint8_t c)
{
    const int e = (c >> 3) & 15, m = c & 7;
    float v;
    if (e == 15 && m == 7)
        v = NAN;
    else if (e == 0)
        v = ldexpf((float)m, -9);
    else
        v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
    return (c & 0x80) ? -v : v;
}

float qfs_intq_fp8_scale(enum qfs_dtype dt, float absmax)
{
    float s = round_to(dt, absmax / 448.0f);
    return s < MIN_SCALE ? MIN_SCALE : s;
}

/* The row quantizers work in blocks of BLK values: loops of a fixed trip count, without
 * branches, are what the compiler vectorizes at -O2.  Every operation is exact and per
 * element, so vector and scalar code give the same bits. */
#define BLK 256

/* round_to over a block: the same values for every input (a NaN stays itself, which every
 * caller then treats as round_to's NaN).  F16: a normal result keeps 10 of f32's 23
 * mantissa bits, rounded half to even by adding 0xfff plus the lowest kept bit; a
 * subnormal one (below 2^-14) is a multiple of 2^-24, which adding and taking away 0.75
 * (whose ulp is 2^-24) rounds to; 65520 and above overflow to infinity. */
static void round_f16_blk(float *v)
{
    for (int i = 0; i < BLK; i++) {
        uint32_t b, rs;
        memcpy(&b, &v[i], 4);
        const uint32_t sign = b & 0x80000000u, a = b & 0x7fffffffu;
        const uint32_t rn = (b + 0xfffu + ((b >> 13) & 1u)) & ~0x1fffu;
        float av, sv;
        memcpy(&av, &a, 4);
        sv = (av + 0.75f) - 0.75f;
        memcpy(&rs, &sv, 4);
        rs |= sign;
        /* selects as masks: a conditional expression here becomes a branch */
        const uint32_t msub = 0u - (uint32_t)(a < 0x38800000u);
        const uint32_t minf = 0u - (uint32_t)(a >= 0x477ff000u);
        const uint32_t mnan = 0u - (uint32_t)(a > 0x7f800000u);
        uint32_t r = (rs & msub) | (rn & ~msub & ~minf) | ((sign | 0x7f800000u) & minf);
        r = (b & mnan) | (r & ~mnan);
        memcpy(&v[i], &r, 4);
    }
}

/* BF16: 7 mantissa bits the same way (f32's range: the carry out of the largest finite
 * value makes infinity, as round to nearest does). */
static void round_bf16_blk(float *v)
{
    for (int i = 0; i < BLK; i++) {
        uint32_t b;
        memcpy(&b, &v[i], 4);
        uint32_t r = (b + 0x7fffu + ((b >> 16) & 1u)) & 0xffff0000u;
        r = (b & 0x7fffffffu) > 0x7f800000u ? b : r;
        memcpy(&v[i], &r, 4);
    }
}

static void round_blk(enum qfs_dtype dt, float *v)
{
    if (dt == QFS_DT_F16)
        round_f16_blk(v);
    else if (dt == QFS_DT_BF16)
        round_bf16_blk(v);
}

void qfs_intq_round_n(enum qfs_dtype dt, float *v, int64_t n)
{
    float t[BLK];
    for (int64_t i0 = 0; i0 < n; i0 += BLK) {
        const int m = n - i0 < BLK ? (int)(n - i0) : BLK;
        memset(t, 0, sizeof t);
        memcpy(t, v + i0, (size_t)m * sizeof *t);
        round_blk(dt, t);
        memcpy(v + i0, t, (size_t)m * sizeof *t);
    }
}

/* qfs_intq_e4m3 of clamp(v, -448, 448) over a block: a normal code is f32's biased
 * exponent less 120 and 3 mantissa bits, rounded half to even by adding 0x7ffff plus the
 * lowest kept bit (a carry moves into the exponent; 448 cannot round past itself); a
 * subnormal one is rint(a * 2^9) < 9, the low bits of a * 2^9 + 1.5 * 2^23; a NaN gives
 * its sign, as the scalar one does. */
static void e4m3_blk(const float *t, uint8_t *q)
{
    for (int i = 0; i < BLK; i++) {
        uint32_t b, sb;
        memcpy(&b, &t[i], 4);
        const uint32_t a0 = b & 0x7fffffffu;
        /* the clamp on the magnitude's bits (448 is 0x43e00000), a NaN's above it too */
        const uint32_t mbig = 0u - (uint32_t)(a0 > 0x43e00000u);
        const uint32_t mnan = 0u - (uint32_t)(a0 > 0x7f800000u);
        const uint32_t a = (a0 & ~mbig) | (0x43e00000u & mbig);
        float av, sv;
        memcpy(&av, &a, 4);
        sv = av * 512.0f + 0x1.8p23f;
        memcpy(&sb, &sv, 4);
        const uint32_t sub = sb - 0x4b400000u;
        const uint32_t nrm = ((a + 0x7ffffu + ((a >> 20) & 1u)) >> 20) - 960u;
        const uint32_t msub = 0u - (uint32_t)(a < 0x3c800000u);
        const uint32_t code = ((sub & msub) | (nrm & ~msub)) & ~mnan;
        q[i] = (uint8_t)(((b >> 24) & 0x80u) | code);
    }
}

void qfs_intq_fp8_row(enum qfs_dtype dt, const float *x, int64_t n, float scale, uint8_t *q)
{
    float t[BLK];
    uint8_t c[BLK];
    for (int64_t i0 = 0; i0 < n; i0 += BLK) {
        const int m = n - i0 < BLK ? (int)(n - i0) : BLK;
        memset(t, 0, sizeof t);
        memcpy(t, x + i0, (size_t)m * sizeof *t);
        for (int i = 0; i < BLK; i++)
            t[i] /= scale;
        round_blk(dt, t);
        e4m3_blk(t, c);
        memcpy(q + i0, c, (size_t)m);
    }
}

/* clamp(rint(v), lo, hi) for |lo|, |hi| < 2^22, any v (a NaN gives hi): rint of a value of
 * magnitude below 2^22 is the low bits of v + 1.5 * 2^23; a larger one makes a sum whose
 * bits lie beyond the bounds on the same side (below zero: the sign bit).  Clamping to
 * integer bounds before or after rounding is the same. */
static inline int32_t rint_clamp(float v, int32_t lo, int32_t hi)
{
    const float s = v + 0x1.8p23f;
    uint32_t sb;
    memcpy(&sb, &s, 4);
    int32_t c = (int32_t)(sb & 0x7fffffffu) - 0x4b400000;
    const int32_t neg = -(int32_t)(sb >> 31);
    c = (c & ~neg) | (lo & neg);
    return c < lo ? lo : c > hi ? hi : c;
}

#define CBLK 32

/* The codes clamp(rint((x[i] - b) / d), lo, hi) of n values, as floats (b = 0: x / d).
 * Blocks of a fixed size, for the vectorizer. */
static void codes(const float *x, int64_t n, float b, float d, int32_t lo, int32_t hi,
                  float *qf)
{
    float t[CBLK], c[CBLK];
    for (int64_t i0 = 0; i0 < n; i0 += CBLK) {
        const int m = n - i0 < CBLK ? (int)(n - i0) : CBLK;
        memset(t, 0, sizeof t);
        memcpy(t, x + i0, (size_t)m * sizeof *t);
        for (int j = 0; j < CBLK; j++)
            c[j] = (float)rint_clamp((t[j] - b) / d, lo, hi);
        memcpy(qf + i0, c, (size_t)m * sizeof *c);
    }
}

/* Weighted (w) and unweighted errors of scale d with codes qf over the group (in double,
 * in index order: the same sums everywhere). */
static void sym4_err(const float *x, const float *w, int64_t n, float d, const float *qf,
                     double *ew, double *eu)
{
    double a = 0.0, b = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double e = (double)x[i] - (double)d * (double)qf[i];
        b += e * e;
        if (w)
            a += (double)w[i] * e * e;
    }
    *ew = a;
    *eu = b;
}

float qfs_intq_sym4(enum qfs_dtype dt, const float *x, const float *im, int64_t n, int8_t *q)
{
    if (n <= 0 || n > 256) { /* the callers' groups are 32 .. 128 */
        if (q && n > 0)
            memset(q, 0, (size_t)n);
        return MIN_SCALE;
    }
    /* llama.cpp's use of an importance matrix in its legacy and K types: the weight of a
     * value is its importance times sqrt(sigma2 + x^2), sigma2 twice the group's mean
     * square, so that large values count even where the importance is small */
    float wbuf[256], qf[256], qc[256];
    const float *w = NULL;
    if (im) {
        double s2 = 0.0;
        for (int64_t i = 0; i < n; i++)
            s2 += (double)x[i] * (double)x[i];
        const float sigma2 = (float)(2.0 * s2 / (double)n);
        for (int64_t i = 0; i < n; i++)
            wbuf[i] = im[i] * sqrtf(sigma2 + x[i] * x[i]);
        w = wbuf;
    }
    float amax = 0.0f;
    for (int64_t i = 0; i < n; i++)
        if (fabsf(x[i]) > amax)
            amax = fabsf(x[i]);
    float d = round_to(dt, amax / 7.5f);
    if (!(d >= MIN_SCALE))
        d = MIN_SCALE;
    if (w && amax > 0.0f) {
        double best_w, rtn_u;
        codes(x, n, 0.0f, d, -8, 7, qf);
        sym4_err(x, w, n, d, qf, &best_w, &rtn_u);
        float best = d;
        /* scales that map absmax to 6 .. 10 levels, each refitted by weighted least squares
         * with its codes fixed: the search of the K-quants' make_qx_quants, for a
         * symmetric grid */
        for (int k = -6; k <= 10; k++) {
            const float c = round_to(dt, amax / (7.5f + 0.25f * (float)k));
            if (!(c >= MIN_SCALE))
                continue;
            codes(x, n, 0.0f, c, -8, 7, qc);
            double num = 0.0, den = 0.0;
            for (int64_t i = 0; i < n; i++) {
                const double qi = (double)qc[i];
                num += (double)w[i] * (double)x[i] * qi;
                den += (double)w[i] * qi * qi;
            }
            const float cands[2] = {c, den > 0.0 ? round_to(dt, (float)(num / den)) : c};
            for (int j = 0; j < 2; j++) {
                if (!(cands[j] >= MIN_SCALE))
                    continue;
                if (j == 1)
                    codes(x, n, 0.0f, cands[j], -8, 7, qc);
                double ew, eu;
                sym4_err(x, w, n, cands[j], qc, &ew, &eu);
                if (ew < best_w && eu <= 1.05 * rtn_u) {
                    best_w = ew;
                    best = cands[j];
                }
            }
        }
        d = best;
    }
    if (q) {
        codes(x, n, 0.0f, d, -8, 7, qf);
        for (int64_t i = 0; i < n; i++)
            q[i] = (int8_t)qf[i];
    }
    return d;
}

/* Keys whose signed order is the floats' order (-0 just below +0, which no caller tells
 * apart), and back. */
static inline int32_t fkey(uint32_t b)
{
    const uint32_t k = b ^ ((0u - (b >> 31)) >> 1);
    int32_t r;
    memcpy(&r, &k, 4);
    return r;
}

static inline float funkey(int32_t r)
{
    uint32_t k, b;
    memcpy(&k, &r, 4);
    b = k ^ ((0u - (k >> 31)) >> 1);
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* The least and greatest of x[0..n), NaNs left out (+inf / -inf if all are), over
 * integer keys: an integer reduction vectorizes, a float one may not be reordered. */
static void minmax(const float *x, int64_t n, float *mn, float *mx)
{
    int32_t lo = fkey(0x7f800000u), hi = fkey(0xff800000u);
    uint32_t t[CBLK];
    for (int64_t i0 = 0; i0 < n; i0 += CBLK) {
        const int m = n - i0 < CBLK ? (int)(n - i0) : CBLK;
        memcpy(t, x + i0, (size_t)m * sizeof *t);
        for (int j = m; j < CBLK; j++)
            t[j] = 0x7fc00000u; /* a NaN: left out */
        for (int j = 0; j < CBLK; j++) {
            const int nan = (t[j] & 0x7fffffffu) > 0x7f800000u;
            const int32_t k = fkey(t[j]);
            const int32_t kl = nan ? fkey(0x7f800000u) : k, kh = nan ? fkey(0xff800000u) : k;
            lo = kl < lo ? kl : lo;
            hi = kh > hi ? kh : hi;
        }
    }
    *mn = funkey(lo);
    *mx = funkey(hi);
}

void qfs_intq_mlx(const float *x, int64_t n, int bits, float *scale, float *bias, uint8_t *q)
{
    const int32_t top = (1 << bits) - 1;
    const float n_bins = (float)top, eps = 1e-7f;
    float w_min, w_max;
    minmax(x, n, &w_min, &w_max);
    const int mask = fabsf(w_min) > fabsf(w_max);
    float s = fmaxf((w_max - w_min) / n_bins, eps);
    s = mask ? s : -s;
    const float edge = mask ? w_min : w_max;
    const float q0 = rne(edge / s);
    float b = 0.0f;
    if (q0 != 0.0f) {
        s = edge / q0;
        b = edge;
    }
    float qf[CBLK];
    for (int64_t i0 = 0; q && i0 < n; i0 += CBLK) {
        const int64_t m = n - i0 < CBLK ? n - i0 : CBLK;
        codes(x + i0, m, b, s, 0, top, qf);
        for (int64_t j = 0; j < m; j++)
            q[i0 + j] = (uint8_t)qf[j];
    }
    *scale = s;
    *bias = b;
}
