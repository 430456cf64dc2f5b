/* The group quantizers of the safetensors formats (codecs/intq.h), against their
 * definitions:
 *   - E4M3: every code round-trips; a value half-way between two neighbours goes to the
 *     even code, a value a hair off a midpoint to the nearest; subnormals; +-448 the edge;
 *   - the vectorized rounding to F16/BF16: bit-equal to the scalar one over a sweep of
 *     float32 patterns and the edges;
 *   - FP8 rows: the codes of dtype(x / scale) with the row's absmax at 448, zero rows;
 *   - symmetric int4: codes in [-8, 7] and within half a step of x / d (clamped);
 *     round-to-nearest's scale is absmax / 7.5 in the dtype; with an importance matrix the
 *     chosen scale's weighted error (importance x sqrt(sigma2 + x^2)) is at most
 *     round-to-nearest's and its unweighted error at most 5 % above it, on many groups of
 *     several distributions; zero groups;
 *   - MLX affine: codes in range, the edge of larger magnitude reproduced exactly (in
 *     float32), every value within one step, scale's sign as mlx's rule says.
 * Deterministic (splitmix64). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "codecs/intq.h"

static int n_fail;

#define CHECK(c)                                                                     \
    do {                                                                             \
        if (!(c)) {                                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c);    \
            n_fail++;                                                                \
        }                                                                            \
    } while (0)

static uint64_t rng = 0x243f6a8885a308d3ull;

static uint64_t next(void)
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double unif(void) { return ((double)(next() >> 11) + 0.5) * 0x1.0p-53; }

static float normal(void)
{
    return (float)(sqrt(-2.0 * log(unif())) * cos(2.0 * M_PI * unif()));
}

static void test_e4m3(void)
{
    int bad = 0;
    for (int c = 0; c < 256; c++) {
        if ((c & 0x7f) == 0x7f)
            continue; /* NaN */
        const float v = qfs_intq_e4m3_value((uint8_t)c);
        uint8_t back = qfs_intq_e4m3(v);
        if (back != (uint8_t)c && !(v == 0.0f && (back & 0x7f) == 0))
            bad++;
    }
    CHECK(bad == 0);
    /* midpoints between neighbouring positive codes: ties to the even code */
    int ties = 0, near = 0;
    for (int c = 0; c < 0x7e; c++) {
        const float a = qfs_intq_e4m3_value((uint8_t)c), b = qfs_intq_e4m3_value((uint8_t)(c + 1));
        const float mid = (a + b) / 2;
        const uint8_t want = (c & 1) ? (uint8_t)(c + 1) : (uint8_t)c;
        ties += qfs_intq_e4m3(mid) != want;
        near += qfs_intq_e4m3(nextafterf(mid, b)) != c + 1 || qfs_intq_e4m3(nextafterf(mid, a)) != c;
        ties += qfs_intq_e4m3(-mid) != (uint8_t)(want | 0x80);
    }
    CHECK(ties == 0);
    CHECK(near == 0);
    CHECK(qfs_intq_e4m3(448.0f) == 0x7e && qfs_intq_e4m3(-448.0f) == 0xfe);
    CHECK(qfs_intq_e4m3(0x1p-9f) == 0x01 && qfs_intq_e4m3(0x1p-10f) == 0x00); /* tie to even */
    CHECK(qfs_intq_e4m3(0x1.8p-9f) == 0x02);                                   /* 1.5 -> 2 */
    CHECK(qfs_intq_e4m3(0x1p-6f) == 0x08 && qfs_intq_e4m3(7.5f * 0x1p-9f) == 0x08);
}

static void test_fp8_rows(void)
{
    const enum qfs_dtype dts[3] = {QFS_DT_F32, QFS_DT_F16, QFS_DT_BF16};
    float x[256];
    uint8_t q[256];
    int bad = 0;
    for (int k = 0; k < 300; k++) {
        const enum qfs_dtype dt = dts[k % 3];
        float amax = 0.0f;
        for (int i = 0; i < 256; i++) {
            x[i] = qfs_intq_round(dt, normal() * (k % 7 == 0 ? 1e-3f : 0.02f));
            amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        }
        const float s = qfs_intq_fp8_scale(dt, amax);
        bad += s != qfs_intq_round(dt, amax / 448.0f) || !(s > 0);
        qfs_intq_fp8_row(dt, x, 256, s, q);
        for (int i = 0; i < 256; i++) {
            const float v = qfs_intq_round(dt, x[i] / s);
            bad += q[i] != qfs_intq_e4m3(v > 448 ? 448 : v < -448 ? -448 : v);
            /* relative error of E4M3 is at most 2^-4 for normals, plus a subnormal floor */
            const float deq = qfs_intq_e4m3_value(q[i]) * s;
            bad += fabsf(deq - x[i]) > fabsf(x[i]) * 0.0626f + s * 0x1p-9f + 1e-9f;
        }
    }
    CHECK(bad == 0);
    memset(x, 0, sizeof x);
    const float s0 = qfs_intq_fp8_scale(QFS_DT_BF16, 0.0f);
    qfs_intq_fp8_row(QFS_DT_BF16, x, 256, s0, q);
    int nz = 0;
    for (int i = 0; i < 256; i++)
        nz += q[i] != 0;
    CHECK(s0 > 0 && nz == 0);
}

/* Weighted and unweighted squared errors of (d, q) for x. */
static void errs(const float *x, const float *w, int n, float d, const int8_t *q, double *ew,
                 double *eu)
{
    *ew = *eu = 0.0;
    for (int i = 0; i < n; i++) {
        const double e = (double)x[i] - (double)d * q[i];
        *eu += e * e;
        *ew += (double)w[i] * e * e;
    }
}

static void test_sym4(void)
{
    const enum qfs_dtype dts[3] = {QFS_DT_F32, QFS_DT_F16, QFS_DT_BF16};
    float x[128], w[128];
    int8_t q[128], qr[128];
    int bad_range = 0, bad_rtn = 0, bad_w = 0, bad_u = 0, better = 0, groups = 0;
    for (int k = 0; k < 3000; k++) {
        const enum qfs_dtype dt = dts[k % 3];
        const int n = k % 5 == 0 ? 32 : k % 5 == 1 ? 64 : 128;
        for (int i = 0; i < n; i++) {
            float v = normal() * 0.02f;
            if (k % 4 == 1 && next() % 16 == 0)
                v *= 8.0f; /* outliers */
            if (k % 4 == 2)
                v = (float)(unif() - 0.3) * 0.05f; /* uniform, skewed */
            x[i] = qfs_intq_round(dt, v);
            /* importance: heavy-tailed, a few channels dominate */
            w[i] = (float)exp(2.0 * normal());
        }
        float amax = 0.0f;
        for (int i = 0; i < n; i++)
            amax = fabsf(x[i]) > amax ? fabsf(x[i]) : amax;
        const float dr = qfs_intq_sym4(dt, x, NULL, n, qr);
        bad_rtn += dr != qfs_intq_round(dt, amax / 7.5f);
        const float d = qfs_intq_sym4(dt, x, w, n, q);
        for (int i = 0; i < n; i++) {
            bad_range += q[i] < -8 || q[i] > 7;
            const float t = x[i] / d;
            const float c = t > 7 ? 7 : t < -8 ? -8 : t;
            bad_range += fabsf((float)q[i] - c) > 0.5f + 1e-4f;
        }
        /* the weights intq.h says it uses: importance x sqrt(sigma2 + x^2) */
        float wt[128];
        double s2 = 0.0;
        for (int i = 0; i < n; i++)
            s2 += (double)x[i] * x[i];
        const float sigma2 = (float)(2.0 * s2 / n);
        for (int i = 0; i < n; i++)
            wt[i] = w[i] * sqrtf(sigma2 + x[i] * x[i]);
        double ew, eu, rw, ru;
        errs(x, wt, n, d, q, &ew, &eu);
        errs(x, wt, n, dr, qr, &rw, &ru);
        bad_w += ew > rw * (1 + 1e-12) + 1e-30;
        bad_u += eu > ru * 1.05 * (1 + 1e-12) + 1e-30;
        better += ew < rw * 0.99;
        groups++;
    }
    printf("sym4: %d groups, weighted error lower by >1%% than round-to-nearest in %d\n", groups,
           better);
    CHECK(bad_range == 0);
    CHECK(bad_rtn == 0);
    CHECK(bad_w == 0);
    CHECK(bad_u == 0);
    CHECK(better > groups / 4); /* the search does something */
    memset(x, 0, sizeof x);
    const float dz = qfs_intq_sym4(QFS_DT_F16, x, w, 128, q);
    int nz = 0;
    for (int i = 0; i < 128; i++)
        nz += q[i] != 0;
    CHECK(dz > 0 && nz == 0);
}

static void test_mlx(void)
{
    float x[128];
    uint8_t q[128];
    int bad = 0, neg = 0, pos = 0;
    for (int k = 0; k < 2000; k++) {
        const int bits = k % 2 ? 8 : 4, n = k % 3 == 0 ? 32 : 64;
        const float nb = (float)((1 << bits) - 1);
        float mn = INFINITY, mx = -INFINITY;
        for (int i = 0; i < n; i++) {
            x[i] = normal() * 0.02f + (k % 5 == 0 ? 0.03f : 0.0f);
            mn = x[i] < mn ? x[i] : mn;
            mx = x[i] > mx ? x[i] : mx;
        }
        float s, b;
        qfs_intq_mlx(x, n, bits, &s, &b, q);
        const int min_edge = fabsf(mn) > fabsf(mx);
        const float edge = min_edge ? mn : mx;
        /* the sign rule: positive when the minimum is the larger edge */
        bad += min_edge ? !(s > 0) : !(s < 0);
        neg += s < 0;
        pos += s > 0;
        float step = fabsf(s);
        for (int i = 0; i < n; i++) {
            bad += q[i] > nb;
            const float deq = q[i] * s + b;
            bad += fabsf(deq - x[i]) > step * 1.0001f + 1e-7f;
            if (x[i] == edge)
                bad += deq != edge; /* mapped exactly: q = 0 and bias = edge */
        }
    }
    printf("mlx: scales negative in %d groups, positive in %d\n", neg, pos);
    CHECK(bad == 0);
    CHECK(neg > 0 && pos > 0);
}

/* The block rounding against the scalar one over every 61st float32 bit pattern (every
 * exponent, both signs, subnormals, the F16 overflow edge, infinities, NaNs) and the
 * exact edges: 2^-14 and its neighbours, 2^-25 (a tie to zero), 65504..65520. */
static void test_round_n(void)
{
    static float v[1 << 16];
    static const uint32_t edges[] = {0x38800000u, 0x387fffffu, 0x38800001u, 0x33000000u,
                                     0x33000001u, 0x32ffffffu, 0x477fe000u, 0x477fefffu,
                                     0x477ff000u, 0x477ff001u, 0x7f7fffffu, 0x7f800000u,
                                     0x7fc00000u, 0x7f800001u, 0x00000001u, 0x00000000u};
    const enum qfs_dtype dts[3] = {QFS_DT_F32, QFS_DT_F16, QFS_DT_BF16};
    int bad = 0;
    for (int d = 0; d < 3; d++) {
        uint64_t bits = 0;
        for (int pass = 0; bits <= 0xffffffffull; pass++) {
            int n = 0;
            if (pass == 0)
                for (size_t e = 0; e < sizeof edges / sizeof edges[0]; e++) {
                    const uint32_t b[2] = {edges[e], edges[e] | 0x80000000u};
                    memcpy(&v[n++], &b[0], 4);
                    memcpy(&v[n++], &b[1], 4);
                }
            for (; n < (1 << 16) && bits <= 0xffffffffull; n++, bits += 61) {
                const uint32_t b = (uint32_t)bits;
                memcpy(&v[n], &b, 4);
            }
            static float ref[1 << 16];
            for (int i = 0; i < n; i++)
                ref[i] = qfs_intq_round(dts[d], v[i]);
            qfs_intq_round_n(dts[d], v, n);
            for (int i = 0; i < n; i++) {
                uint32_t a, b;
                memcpy(&a, &v[i], 4);
                memcpy(&b, &ref[i], 4);
                bad += isnan(ref[i]) ? !isnan(v[i]) : a != b;
            }
        }
    }
    CHECK(bad == 0);
    /* the FP8 row's own E4M3 against the scalar one (scale 1, F32: the codes of the
     * clamped values), over the same sweep */
    int bad8 = 0;
    for (uint64_t bits = 0; bits <= 0xffffffffull;) {
        int n = 0;
        for (; n < (1 << 16) && bits <= 0xffffffffull; n++, bits += 61) {
            const uint32_t b = (uint32_t)bits;
            memcpy(&v[n], &b, 4);
        }
        static uint8_t q[1 << 16];
        qfs_intq_fp8_row(QFS_DT_F32, v, n, 1.0f, q);
        for (int i = 0; i < n; i++) {
            const float c = v[i] > 448.0f ? 448.0f : v[i] < -448.0f ? -448.0f : v[i];
            bad8 += q[i] != qfs_intq_e4m3(c);
        }
    }
    CHECK(bad8 == 0);
}

int main(void)
{
    test_round_n();
    test_e4m3();
    test_fp8_rows();
    test_sym4();
    test_mlx();
    printf("%s\n", n_fail ? "FAIL" : "PASS");
    return n_fail ? 1 : 0;
}
