/* Random test data for the kernel tests: a small PRNG (splitmix64) and the
 * distributions the quantizers are exercised on. */
#ifndef QFS_TEST_TESTDATA_H
#define QFS_TEST_TESTDATA_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels/qtypes.h"

struct rng {
    uint64_t s;
};

static inline uint64_t rng_u64(struct rng *r)
{
    uint64_t z = (r->s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in [0, 1) */
static inline double rng_unif(struct rng *r) { return (double)(rng_u64(r) >> 11) * 0x1p-53; }

static inline float rng_normal(struct rng *r)
{
    double u1 = rng_unif(r), u2 = rng_unif(r);
    if (u1 < 1e-300)
        u1 = 1e-300;
    return (float)(sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2));
}

enum dist {
    D_NORMAL,
    D_UNIFORM,
    D_OUTLIERS,   /* normal, 1% of values x100 */
    D_ZERO,
    D_CONST,      /* one random value, random sign */
    D_TINY,       /* normal * 1e-8 */
    D_LARGE,      /* normal * 1e4 */
    D_NEGMAX,     /* all <= 0: the block max is negative */
    D_POSMAX,     /* all >= 0 */
    D_BF16,       /* normal rounded to bf16 (real source weights: many ties) */
    D_F16W,       /* normal * 0.02 rounded to f16, like typical weights */
    D_INTS,       /* small integers: exact ties everywhere */
    D_BLOCKSCALE, /* each 16 elements a different scale 10^U(-6,3), some zero */
    D_EPS,        /* normal * 1e-15: around ggml's GROUP_MAX_EPS */
    D_SPARSE,     /* mostly zeros, a few normals */
    D_RAMP,       /* linspace with random ends */
    D_COUNT
};

static const char *const dist_name[D_COUNT] = {
    "normal", "uniform", "outliers", "zero", "const", "tiny", "large", "negmax",
    "posmax", "bf16", "f16w", "ints", "blockscale", "eps", "sparse", "ramp",
};

static inline void fill(struct rng *r, enum dist d, float *x, int64_t n)
{
    switch (d) {
    case D_NORMAL:
        for (int64_t i = 0; i < n; i++) x[i] = rng_normal(r);
        break;
    case D_UNIFORM:
        for (int64_t i = 0; i < n; i++) x[i] = (float)(2.0 * rng_unif(r) - 1.0);
        break;
    case D_OUTLIERS:
        for (int64_t i = 0; i < n; i++)
            x[i] = rng_normal(r) * (rng_unif(r) < 0.01 ? 100.0f : 1.0f);
        break;
    case D_ZERO:
        memset(x, 0, (size_t)n * sizeof *x);
        break;
    case D_CONST: {
        float c = rng_normal(r);
        for (int64_t i = 0; i < n; i++) x[i] = c;
        break;
    }
    case D_TINY:
        for (int64_t i = 0; i < n; i++) x[i] = rng_normal(r) * 1e-8f;
        break;
    case D_LARGE:
        for (int64_t i = 0; i < n; i++) x[i] = rng_normal(r) * 1e4f;
        break;
    case D_NEGMAX:
        for (int64_t i = 0; i < n; i++) x[i] = -fabsf(rng_normal(r));
        break;
    case D_POSMAX:
        for (int64_t i = 0; i < n; i++) x[i] = fabsf(rng_normal(r));
        break;
    case D_BF16:
        for (int64_t i = 0; i < n; i++) x[i] = qfs_bf16_to_f32(qfs_f32_to_bf16(rng_normal(r)));
        break;
    case D_F16W:
        for (int64_t i = 0; i < n; i++)
            x[i] = qfs_f16_to_f32(qfs_f32_to_f16(rng_normal(r) * 0.02f));
        break;
    case D_INTS:
        for (int64_t i = 0; i < n; i++) x[i] = (float)((int)(rng_u64(r) % 17) - 8);
        break;
    case D_BLOCKSCALE:
        for (int64_t i = 0; i < n; i += 16) {
            float s = rng_unif(r) < 0.1 ? 0.0f : (float)pow(10.0, -6.0 + 9.0 * rng_unif(r));
            for (int64_t j = i; j < i + 16 && j < n; j++) x[j] = rng_normal(r) * s;
        }
        break;
    case D_EPS:
        for (int64_t i = 0; i < n; i++) x[i] = rng_normal(r) * 1e-15f;
        break;
    case D_SPARSE:
        for (int64_t i = 0; i < n; i++) x[i] = rng_unif(r) < 0.03 ? rng_normal(r) : 0.0f;
        break;
    case D_RAMP: {
        float a = rng_normal(r), b = rng_normal(r);
        for (int64_t i = 0; i < n; i++) x[i] = a + (b - a) * (float)i / (float)n;
        break;
    }
    case D_COUNT:
        break;
    }
}

#endif
