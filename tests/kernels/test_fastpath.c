/* The libm-free and vectorization-friendly pieces of the scalar path against
 * what they replace:
 *  - qfs_roundf against libm roundf, bit for bit: every float in [0.25, 2^24]
 *    and its negative, every float below 0.25 with a stride, a stride over all
 *    2^32 patterns, specials, and random bits; through a vectorizable array
 *    loop and through a non-inlined scalar call.
 *  - qfs_to_f32 (the branch-free f16 and the bf16 chunk loops) against the
 *    per-element qfs_fp16_to_fp32 / qfs_bf16_to_fp32 for all 65536 inputs,
 *    NaN payloads included, at every alignment and with ragged tails.
 *  - qfs_absmax, qfs_first_absmax and qfs_minmax against the sequential loops
 *    of the reference, on blocks full of ties and signed zeros. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/quant_block.h"
#include "kernels/qtypes.h"
#include "testdata.h"

static long failures;

static void fail(const char *what, uint32_t in, uint32_t got, uint32_t want)
{
    if (failures++ < 10)
        fprintf(stderr, "FAIL %s: input 0x%08x gives 0x%08x, expected 0x%08x\n", what, in, got,
                want);
}

/* ---- qfs_roundf -------------------------------------------------------------- */

#define BATCH 4096

__attribute__((noinline)) static float round_scalar(float x) { return qfs_roundf(x); }

static void round_batch(const uint32_t *in, int n)
{
    float x[BATCH], ours[BATCH];
    memcpy(x, in, (size_t)n * 4);
    for (int i = 0; i < n; i++) /* the vectorized form */
        ours[i] = qfs_roundf(x[i]);
    for (int i = 0; i < n; i++) {
        const uint32_t want = f2u(roundf(x[i]));
        const uint32_t got = f2u(ours[i]);
        if (is_nan32(in[i])) {
            /* NaN comes back as it went in (libm may quiet it) */
            if (got != in[i] || f2u(round_scalar(x[i])) != in[i])
                fail("qfs_roundf NaN", in[i], got, in[i]);
            continue;
        }
        if (got != want)
            fail("qfs_roundf", in[i], got, want);
        if (i % 61 == 0 && f2u(round_scalar(x[i])) != want)
            fail("qfs_roundf scalar", in[i], f2u(round_scalar(x[i])), want);
    }
}

/* every pattern from lo to hi (inclusive) with a stride, both signs */
static long round_range(uint32_t lo, uint32_t hi, uint32_t stride)
{
    uint32_t buf[BATCH];
    int k = 0;
    long count = 0;
    for (uint64_t u = lo; u <= hi; u += stride) {
        buf[k++] = (uint32_t)u;
        buf[k++] = (uint32_t)u | 0x80000000u;
        if (k == BATCH) {
            round_batch(buf, k);
            count += k;
            k = 0;
        }
    }
    round_batch(buf, k);
    return count + k;
}

static void test_roundf(void)
{
    long count = 0;
    count += round_range(f2u(0.25f), f2u(16777216.0f), 1); /* every float where rounding happens */
    count += round_range(0, f2u(0.25f), 97);               /* zeros, subnormals, small */
    count += round_range(0, 0xffffffffu >> 1, 65537);      /* all magnitudes incl. inf, NaN */
    static const float specials[] = {0.0f, 0.5f, 1.5f, 2.5f, 0.49999997f, 0.50000006f,
                                     8388607.5f, 8388608.0f, 8388609.0f, 4194303.5f,
                                     FLT_MAX, FLT_MIN, INFINITY, 127.49999f, 127.5f};
    uint32_t buf[BATCH];
    int k = 0;
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++) {
        buf[k++] = f2u(specials[i]);
        buf[k++] = f2u(-specials[i]);
    }
    buf[k++] = 0x7fc00000u; /* quiet NaN */
    buf[k++] = 0x7f800001u; /* signalling NaN */
    buf[k++] = 0xffa5a5a5u;
    round_batch(buf, k);
    count += k;
    struct rng r = {7};
    for (int b = 0; b < 1000; b++) {
        for (int i = 0; i < BATCH; i++)
            buf[i] = (uint32_t)rng_u64(&r);
        round_batch(buf, BATCH);
        count += BATCH;
    }
    printf("qfs_roundf: %ld floats compared with roundf\n", count);
}

/* ---- qfs_to_f32 ---------------------------------------------------------------- */

static void test_to_f32(void)
{
    enum { N = 65536 };
    unsigned char *buf = malloc(2 * N + 8);
    float *out = malloc(4 * (N + 8));
    if (!buf || !out)
        exit(1);
    long count = 0;
    for (int dt = 0; dt < 2; dt++) {
        const enum qfs_dtype t = dt == 0 ? QFS_DT_F16 : QFS_DT_BF16;
        for (int off = 0; off < 4; off++) {
            for (uint32_t h = 0; h < N; h++) {
                const uint16_t v = (uint16_t)h;
                memcpy(buf + off + 2 * h, &v, 2);
            }
            /* ragged lengths: chunked part plus scalar tail */
            static const int64_t lens[] = {N, N - 1, 63, 65, 1, 0};
            for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
                const int64_t n = lens[li];
                const int64_t start = N - n; /* the tail end covers inf/NaN */
                out[n] = 12345.0f;
                qfs_to_f32(t, buf + off + 2 * start, out, n);
                for (int64_t i = 0; i < n; i++) {
                    const uint16_t h = (uint16_t)(start + i);
                    const uint32_t want =
                        f2u(t == QFS_DT_F16 ? qfs_fp16_to_fp32(h) : qfs_bf16_to_fp32(h));
                    if (f2u(out[i]) != want)
                        fail(t == QFS_DT_F16 ? "qfs_to_f32 f16" : "qfs_to_f32 bf16", h,
                             f2u(out[i]), want);
                }
                if (out[n] != 12345.0f)
                    fail("qfs_to_f32 wrote past n", (uint32_t)n, f2u(out[n]), 0);
                count += n;
            }
        }
    }
    free(buf);
    free(out);
    printf("qfs_to_f32: %ld f16/bf16 conversions compared\n", count);
}

/* ---- reductions ------------------------------------------------------------------ */

static void test_reductions(void)
{
    /* values from a small pool so ties and signed zeros are everywhere */
    const float pool[] = {0.0f, -0.0f, 1.0f, -1.0f, 0.5f, -0.5f, 3.0f, -3.0f, 1e-30f, -1e-30f,
                          FLT_MAX, -FLT_MAX, 2.0f, -2.0f};
    const int npool = (int)(sizeof pool / sizeof pool[0]);
    struct rng r = {99};
    long count = 0;
    for (int iter = 0; iter < 200000; iter++) {
        float x[32];
        const int n = iter % 2 ? 32 : 16;
        const int kinds = 1 + (int)(rng_u64(&r) % (uint64_t)npool);
        for (int i = 0; i < n; i++)
            x[i] = pool[rng_u64(&r) % (uint64_t)kinds];
        if (iter % 5 == 0)
            x[rng_u64(&r) % (uint64_t)n] = rng_normal(&r);

        float amax = 0.0f, max = 0.0f, a8 = 0.0f;
        float min = FLT_MAX, mx = -FLT_MAX;
        for (int i = 0; i < n; i++) {
            if (amax < fabsf(x[i])) {
                amax = fabsf(x[i]);
                max = x[i];
            }
            a8 = a8 > fabsf(x[i]) ? a8 : fabsf(x[i]);
            if (x[i] < min)
                min = x[i];
            if (x[i] > mx)
                mx = x[i];
        }
        float got_amax, got_min, got_max;
        const float got = qfs_first_absmax(x, n, &got_amax);
        if (f2u(got) != f2u(max) || f2u(got_amax) != f2u(amax))
            fail("qfs_first_absmax", (uint32_t)iter, f2u(got), f2u(max));
        if (f2u(qfs_absmax(x, n)) != f2u(a8))
            fail("qfs_absmax", (uint32_t)iter, f2u(qfs_absmax(x, n)), f2u(a8));
        qfs_minmax(x, n, &got_min, &got_max);
        if (f2u(got_min) != f2u(min) || f2u(got_max) != f2u(mx))
            fail("qfs_minmax", (uint32_t)iter, f2u(got_min), f2u(min));
        count++;
    }
    printf("reductions: %ld blocks compared with the sequential loops\n", count);
}

int main(void)
{
    test_roundf();
    test_to_f32();
    test_reductions();
    (void)u2f;
    if (failures) {
        fprintf(stderr, "FAIL: %ld differences\n", failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
