/* Random test data for the kernel tests: a small PRNG (splitmix64), the
 * distributions the quantizers are exercised on, shapes of importance
 * matrices, and the bit patterns of floats. */
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

/* Shapes of importance matrices (one weight per column, as llama-imatrix
 * writes: mean of x^2 over the calibration tokens, so positive and heavy
 * tailed, with dead columns at exactly zero).  IM_NONE: no importance matrix
 * (fill_imatrix leaves w as it is). */
enum imshape {
    IM_NONE,
    IM_UNIFORM,   /* U(0.1, 1) */
    IM_LOGNORMAL, /* exp(2 N(0,1)): spans ~1e-4 .. 1e4 */
    IM_ZEROS,     /* lognormal, 20% exactly zero */
    IM_BLOCKZERO, /* lognormal, whole runs of 16 zero, every 5th run */
    IM_SPIKES,    /* 1, a few columns 1e3 */
    IM_TINY,      /* U(0,1) * 1e-20 */
    IM_COUNT
};

static const char *const imshape_name[IM_COUNT] = {
    "none", "uniform", "lognormal", "zeros", "blockzero", "spikes", "tiny",
};

static inline void fill_imatrix(struct rng *r, enum imshape s, float *w, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        switch (s) {
        case IM_UNIFORM: w[i] = (float)(0.1 + 0.9 * rng_unif(r)); break;
        case IM_LOGNORMAL: w[i] = expf(2.0f * rng_normal(r)); break;
        case IM_ZEROS: w[i] = rng_unif(r) < 0.2 ? 0.0f : expf(2.0f * rng_normal(r)); break;
        case IM_BLOCKZERO: w[i] = (i / 16) % 5 == 2 ? 0.0f : expf(rng_normal(r)); break;
        case IM_SPIKES: w[i] = rng_unif(r) < 0.01 ? 1000.0f : 1.0f; break;
        case IM_TINY: w[i] = (float)rng_unif(r) * 1e-20f; break;
        default: break;
        }
    }
}

/* The bits of a float and back; NaN test on the bits. */
static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline int is_nan32(uint32_t u) { return (u & 0x7fffffffu) > 0x7f800000u; }

#endif
