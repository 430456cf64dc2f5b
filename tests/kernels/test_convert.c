/* f16 / bf16 conversions against independent references: exhaustive f16
 * round trip, every rounding boundary (midpoints between neighbours and one
 * ulp either side), x86 F16C hardware where the CPU has it, and qfs_to_f32 on
 * unaligned sources. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qtypes.h"
#include "kernels/simd.h"
#include "testdata.h"

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_F16C_PROBE 1
__attribute__((target("f16c"))) static uint16_t hw_f32_to_f16(float f)
{
    return (uint16_t)_cvtss_sh(f, _MM_FROUND_TO_NEAREST_INT);
}
#endif

static int failures;

static void fail(const char *what, uint32_t in, uint32_t got, uint32_t want)
{
    if (failures++ < 10)
        fprintf(stderr, "FAIL %s: input 0x%08x gives 0x%08x, expected 0x%08x\n", what, in, got, want);
}

/* Rounding boundaries of a 16-bit format: conv(value(h)) == h; the midpoint
 * between h and its upper neighbour goes to the even one; one ulp below the
 * midpoint to h, one above to h+1. */
static void check_boundaries(const char *what, uint16_t (*conv)(float), float (*widen)(uint16_t),
                             uint16_t inf_bits)
{
    for (uint32_t h = 0; h < 65536; h++) {
        const uint32_t mag = h & 0x7fff;
        if (mag > inf_bits)
            continue; /* NaN */
        const float a = widen((uint16_t)h);
        if (conv(a) != h)
            fail(what, f2u(a), conv(a), h);
        if (mag + 1u >= inf_bits)
            continue; /* no finite upper neighbour: 65520 -> inf is a fixed case */
        const float b = widen((uint16_t)(h + 1));
        const float mid = (float)(((double)a + (double)b) / 2);
        const uint16_t even = (h & 1) ? (uint16_t)(h + 1) : (uint16_t)h;
        if (conv(mid) != even)
            fail(what, f2u(mid), conv(mid), even);
        const uint32_t mu = f2u(mid);
        if (conv(u2f(mu - 1)) != h)
            fail(what, mu - 1, conv(u2f(mu - 1)), h);
        if (conv(u2f(mu + 1)) != (uint16_t)(h + 1))
            fail(what, mu + 1, conv(u2f(mu + 1)), h + 1);
    }
}

int main(void)
{
    /* exhaustive f16 -> f32 -> f16; NaNs come back quiet */
    for (uint32_t h = 0; h < 65536; h++) {
        const float f = qfs_f16_to_f32((uint16_t)h);
        const int nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        const uint16_t want = nan ? (uint16_t)(h | 0x200) : (uint16_t)h;
        if (qfs_f32_to_f16(f) != want)
            fail("f16 round trip", h, qfs_f32_to_f16(f), want);
        if (!nan && (double)f != (double)f)
            fail("f16 widen", h, f2u(f), 0);
    }
    check_boundaries("f32->f16 boundary", qfs_f32_to_f16, qfs_f16_to_f32, 0x7c00);
    check_boundaries("f32->bf16 boundary", qfs_f32_to_bf16, qfs_bf16_to_f32, 0x7f80);

    /* fixed points */
    const struct { float f; uint16_t h; } f16_cases[] = {
        {65504.0f, 0x7bff}, {65519.99f, 0x7bff}, {65520.0f, 0x7c00}, {1e9f, 0x7c00},
        {-1e9f, 0xfc00}, {5.9604645e-8f, 0x0001}, {2.9802322e-8f, 0x0000},
        {2.98023259e-8f, 0x0001}, {-0.0f, 0x8000}, {6.1035156e-5f, 0x0400},
        {1.0f, 0x3c00}, {-2.0f, 0xc000}, {0.33333334f, 0x3555},
    };
    for (size_t i = 0; i < sizeof f16_cases / sizeof f16_cases[0]; i++)
        if (qfs_f32_to_f16(f16_cases[i].f) != f16_cases[i].h)
            fail("f16 case", f2u(f16_cases[i].f), qfs_f32_to_f16(f16_cases[i].f), f16_cases[i].h);

    /* bf16: gguf-py's rule, NaN kept quiet with its top bits */
    const uint32_t bf_cases[][2] = {
        {0x7f800001u, 0x7fc0u}, {0xff800001u, 0xffc0u}, {0x7fc00000u, 0x7fc0u},
        {0x7fa12345u, 0x7fe1u}, {0x7f7fffffu, 0x7f80u}, {0x3f808000u, 0x3f80u},
        {0x3f818000u, 0x3f82u}, {0x3f808001u, 0x3f81u}, {0x00000001u, 0x0000u},
    };
    for (size_t i = 0; i < sizeof bf_cases / sizeof bf_cases[0]; i++)
        if (qfs_f32_to_bf16(u2f(bf_cases[i][0])) != bf_cases[i][1])
            fail("bf16 case", bf_cases[i][0], qfs_f32_to_bf16(u2f(bf_cases[i][0])), bf_cases[i][1]);
    for (uint32_t h = 0; h < 65536; h++)
        if (f2u(qfs_bf16_to_f32((uint16_t)h)) != h << 16)
            fail("bf16 widen", h, f2u(qfs_bf16_to_f32((uint16_t)h)), h << 16);

#ifdef HAVE_F16C_PROBE
    unsigned ca, cb, cc, cd; /* CPUID.1:ECX.F16C[bit 29]: clang's builtin has no "f16c" */
    if (__get_cpuid(1, &ca, &cb, &cc, &cd) && (cc & (1u << 29))) {
        /* every 251st bit pattern (all classes, NaN included) and 4M random */
        struct rng r = {99};
        long n = 0;
        for (uint64_t u = 0; u <= 0xffffffffull; u += 251, n++) {
            const float f = u2f((uint32_t)u);
            if (qfs_f32_to_f16(f) != hw_f32_to_f16(f))
                fail("f32->f16 vs F16C", (uint32_t)u, qfs_f32_to_f16(f), hw_f32_to_f16(f));
        }
        for (int i = 0; i < 4000000; i++, n++) {
            const uint32_t u = (uint32_t)rng_u64(&r);
            if (qfs_f32_to_f16(u2f(u)) != hw_f32_to_f16(u2f(u)))
                fail("f32->f16 vs F16C", u, qfs_f32_to_f16(u2f(u)), hw_f32_to_f16(u2f(u)));
        }
        printf("f32->f16 compared with F16C on %ld values\n", n);
    } else {
        printf("no F16C on this CPU: hardware comparison skipped\n");
    }
#endif

    /* qfs_to_f32 at every SIMD level the CPU has (F16C for f16 on AVX2): every f16 bit
     * pattern in each lane position of 64-element chunks, unaligned, bit for bit against
     * qfs_f16_to_f32; NaN chunks take the portable path */
    {
        enum { N = 64 * 1024 + 37 };
        unsigned char *src = malloc(2 * N + 1);
        float *got = malloc(N * sizeof *got);
        if (!src || !got)
            return 1;
        long compared = 0;
        for (int lvl = QFS_SIMD_PORTABLE; lvl <= (int)qfs_simd_supported(); lvl++) {
            if (qfs_simd_set((enum qfs_simd)lvl) != 0)
                fail("qfs_simd_set", (uint32_t)lvl, 0, 0);
            for (int rot = 0; rot < 64; rot += 13) {
                for (int i = 0; i < N; i++) {
                    const uint16_t h = (uint16_t)((uint32_t)i * 40503u + (uint32_t)rot);
                    memcpy(src + 1 + 2 * i, &h, 2);
                }
                qfs_to_f32(QFS_DT_F16, src + 1, got, N);
                for (int i = 0; i < N; i++, compared++) {
                    uint16_t h;
                    memcpy(&h, src + 1 + 2 * i, 2);
                    if (f2u(got[i]) != f2u(qfs_f16_to_f32(h)))
                        fail("qfs_to_f32 f16 vs scalar", h, f2u(got[i]), (uint32_t)lvl);
                }
            }
        }
        qfs_simd_set(qfs_simd_supported());
        printf("qfs_to_f32 f16 compared with the scalar rule on %ld values, levels 0..%d\n",
               compared, (int)qfs_simd_supported());
        free(src);
        free(got);
    }

    /* qfs_to_f32 reads unaligned sources */
    unsigned char buf[1 + 64 * 4];
    float out[64];
    for (int i = 0; i < 64; i++) {
        const uint16_t h = (uint16_t)(0x3c00 + i * 7);
        memcpy(buf + 1 + 2 * i, &h, 2);
    }
    qfs_to_f32(QFS_DT_F16, buf + 1, out, 64);
    for (int i = 0; i < 64; i++)
        if (out[i] != qfs_f16_to_f32((uint16_t)(0x3c00 + i * 7)))
            fail("qfs_to_f32 f16", (uint32_t)i, f2u(out[i]), 0);
    for (int i = 0; i < 64; i++) {
        const uint16_t b = (uint16_t)(0x3f80 + i * 3);
        memcpy(buf + 1 + 2 * i, &b, 2);
    }
    qfs_to_f32(QFS_DT_BF16, buf + 1, out, 64);
    for (int i = 0; i < 64; i++)
        if (f2u(out[i]) != (uint32_t)(0x3f80 + i * 3) << 16)
            fail("qfs_to_f32 bf16", (uint32_t)i, f2u(out[i]), 0);
    for (int i = 0; i < 64; i++) {
        const float f = (float)i * 0.25f - 3.0f;
        memcpy(buf + 1 + 4 * i, &f, 4);
    }
    qfs_to_f32(QFS_DT_F32, buf + 1, out, 64);
    for (int i = 0; i < 64; i++)
        if (out[i] != (float)i * 0.25f - 3.0f)
            fail("qfs_to_f32 f32", (uint32_t)i, f2u(out[i]), 0);
    if (qfs_dtype_size(QFS_DT_F32) != 4 || qfs_dtype_size(QFS_DT_F16) != 2 ||
        qfs_dtype_size(QFS_DT_BF16) != 2)
        fail("qfs_dtype_size", 0, 0, 0);

    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
