/* Group quantizers of the safetensors formats (contract: intq.h).  Written from the
 * formats' descriptions (notes/formats.md: compressed-tensors' FP8 and int4 arithmetic,
 * mlx's CPU affine_quantize); no code is shared with those projects. */
#include "intq.h"

#include <math.h>
#include <string.h>

#define MIN_SCALE 0x1p-23f /* float32's epsilon: compressed-tensors' floor for a zero scale */

float qfs_intq_round(enum qfs_dtype dt, float x)
{
    if (dt == QFS_DT_F16)
        return qfs_f16_to_f32(qfs_f32_to_f16(x));
    if (dt == QFS_DT_BF16)
        return qfs_bf16_to_f32(qfs_f32_to_bf16(x));
    return x;
}

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
        return (uint8_t)(sign | (uint8_t)rintf(a * 512.0f));
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
    float s = qfs_intq_round(dt, absmax / 448.0f);
    return s < MIN_SCALE ? MIN_SCALE : s;
}

void qfs_intq_fp8_row(enum qfs_dtype dt, const float *x, int64_t n, float scale, uint8_t *q)
{
    for (int64_t i = 0; i < n; i++) {
        float v = qfs_intq_round(dt, x[i] / scale);
        v = v > 448.0f ? 448.0f : v < -448.0f ? -448.0f : v;
        q[i] = qfs_intq_e4m3(v);
    }
}

static int8_t sym4_q(float x, float d)
{
    float v = rintf(x / d);
    return (int8_t)(v > 7.0f ? 7.0f : v < -8.0f ? -8.0f : v);
}

/* Weighted (w) and unweighted errors of scale d over the group. */
static void sym4_err(const float *x, const float *w, int64_t n, float d, double *ew, double *eu)
{
    double a = 0.0, b = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double e = (double)x[i] - (double)d * (double)sym4_q(x[i], d);
        b += e * e;
        if (w)
            a += (double)w[i] * e * e;
    }
    *ew = a;
    *eu = b;
}

float qfs_intq_sym4(enum qfs_dtype dt, const float *x, const float *im, int64_t n, int8_t *q)
{
    /* llama.cpp's use of an importance matrix in its legacy and K types: the weight of a
     * value is its importance times sqrt(sigma2 + x^2), sigma2 twice the group's mean
     * square, so that large values count even where the importance is small */
    float wbuf[256];
    const float *w = NULL;
    if (im && n <= 256) {
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
    float d = qfs_intq_round(dt, amax / 7.5f);
    if (!(d >= MIN_SCALE))
        d = MIN_SCALE;
    if (w && amax > 0.0f) {
        double best_w, rtn_u;
        sym4_err(x, w, n, d, &best_w, &rtn_u);
        float best = d;
        /* scales that map absmax to 6 .. 10 levels, each refitted by weighted least squares
         * with its codes fixed: the search of the K-quants' make_qx_quants, for a
         * symmetric grid */
        for (int k = -6; k <= 10; k++) {
            const float c = qfs_intq_round(dt, amax / (7.5f + 0.25f * (float)k));
            if (!(c >= MIN_SCALE))
                continue;
            double num = 0.0, den = 0.0;
            for (int64_t i = 0; i < n; i++) {
                const double qi = (double)sym4_q(x[i], c);
                num += (double)w[i] * (double)x[i] * qi;
                den += (double)w[i] * qi * qi;
            }
            const float cands[2] = {c, den > 0.0 ? qfs_intq_round(dt, (float)(num / den)) : c};
            for (int j = 0; j < 2; j++) {
                if (!(cands[j] >= MIN_SCALE))
                    continue;
                double ew, eu;
                sym4_err(x, w, n, cands[j], &ew, &eu);
                if (ew < best_w && eu <= 1.05 * rtn_u) {
                    best_w = ew;
                    best = cands[j];
                }
            }
        }
        d = best;
    }
    if (q)
        for (int64_t i = 0; i < n; i++)
            q[i] = sym4_q(x[i], d);
    return d;
}

void qfs_intq_mlx(const float *x, int64_t n, int bits, float *scale, float *bias, uint8_t *q)
{
    const float n_bins = (float)((1 << bits) - 1), eps = 1e-7f;
    float w_min = INFINITY, w_max = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        w_min = x[i] < w_min ? x[i] : w_min;
        w_max = x[i] > w_max ? x[i] : w_max;
    }
    const int mask = fabsf(w_min) > fabsf(w_max);
    float s = fmaxf((w_max - w_min) / n_bins, eps);
    s = mask ? s : -s;
    const float edge = mask ? w_min : w_max;
    const float q0 = rintf(edge / s);
    float b = 0.0f;
    if (q0 != 0.0f) {
        s = edge / q0;
        b = edge;
    }
    for (int64_t i = 0; i < n; i++) {
        float v = rintf((x[i] - b) / s);
        q[i] = (uint8_t)(v < 0.0f ? 0.0f : v > n_bins ? n_bins : v);
    }
    *scale = s;
    *bias = b;
}
