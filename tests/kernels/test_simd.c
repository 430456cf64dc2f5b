/* The SIMD row quantizers (kernels/simd.h) against the portable functions of
 * the type table, byte for byte: every type with a variant at the CPU's best
 * level, row lengths 256..4096, every distribution of testdata.h (whole rows,
 * rows of two halves, and rows whose 32-element pieces each come from a
 * random distribution, so the sub-blocks sharing a vector differ), without an
 * importance matrix and with several shapes of one.  Then the dispatch:
 * QFS_SIMD=off gives the portable level, qfs_quantize_rows follows the level.
 * argv[1]: super-blocks per type in Ki (default 512: millions in all).
 * Exit 77 when the CPU has no SIMD level (or the build has no variant). */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qtypes.h"
#include "kernels/simd.h"
#include "testdata.h"

/* the last four only for 32-element block types: block counts that are not
 * a multiple of 8 (SIMD variants that take 8 blocks at a time have a tail) */
static const int64_t row_lengths[] = {256, 512, 768, 1024, 2048, 4096, 32, 96, 800, 4000};

static void fill_row(struct rng *r, int d, int64_t row, float *x, int64_t n)
{
    switch (row % 4) {
    case 1: /* two halves */
        fill(r, (enum dist)d, x, n / 2);
        fill(r, (enum dist)((d + (int)row) % D_COUNT), x + n / 2, n - n / 2);
        break;
    case 3: /* every 32 elements a random distribution */
        for (int64_t i = 0; i < n; i += 32)
            fill(r, (enum dist)(rng_u64(r) % D_COUNT), x + i, 32);
        break;
    default:
        fill(r, (enum dist)d, x, n);
        break;
    }
}

static int failures;

/* Returns the blocks compared. */
static long compare_type(enum qfs_type t, qfs_row_quantizer simd, int im, long target_blocks)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    struct rng r = {0x51d0u + 977u * (unsigned)t + 31u * (unsigned)im};
    long blocks = 0;
    int reported = 0;
    long nlengths = 0;
    for (size_t li = 0; li < sizeof row_lengths / sizeof row_lengths[0]; li++)
        nlengths += row_lengths[li] % ti->blck == 0;
    for (size_t li = 0; li < sizeof row_lengths / sizeof row_lengths[0]; li++) {
        const int64_t n = row_lengths[li];
        if (n % ti->blck != 0)
            continue;
        const int64_t nb = n / ti->blck;
        /* the blocks of one type and mode spread evenly over lengths and distributions */
        const int64_t nrows =
            target_blocks / nlengths / D_COUNT / nb + 4;
        const size_t rs = qfs_row_size(t, n);
        float *x = malloc(sizeof(float) * (size_t)n);
        float *imx = malloc(sizeof(float) * (size_t)n);
        uint8_t *a = malloc(rs), *b = malloc(rs);
        if (!x || !imx || !a || !b) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        for (int d = 0; d < D_COUNT; d++) {
            for (int64_t row = 0; row < nrows; row++) {
                if (im != IM_NONE && row % 8 == 0)
                    fill_imatrix(&r, (enum imshape)im, imx, n);
                fill_row(&r, d, row, x, n);
                const float *w = im != IM_NONE ? imx : NULL;
                memset(a, 0xAA, rs);
                memset(b, 0x55, rs);
                ti->quantize_row(x, a, n, w);
                simd(x, b, n, w);
                blocks += (long)nb;
                if (memcmp(a, b, rs) == 0)
                    continue;
                failures++;
                if (reported++ < 3) {
                    size_t off = 0;
                    while (a[off] == b[off])
                        off++;
                    const size_t blk = off / ti->type_size;
                    fprintf(stderr,
                            "MISMATCH %s n=%" PRId64 " dist=%s row=%" PRId64 " imatrix=%s: "
                            "block %zu byte %zu: portable 0x%02x simd 0x%02x\n",
                            ti->name, n, dist_name[d], row, imshape_name[im], blk,
                            off % ti->type_size, a[off], b[off]);
                }
            }
        }
        free(x);
        free(imx);
        free(a);
        free(b);
    }
    return blocks;
}

/* Values outside testdata.h's range: subnormals, near FLT_MAX, signed zeros
 * around a single value, 1e-30 next to 1e30; importance zero, wide, tiny.
 * Inputs whose searches overflow to inf/NaN must still give equal bytes.
 * And exact ties: blocks on a half-integer grid whose largest magnitude is
 * 8, 16, 127 or 128 (both signs, often twice), so that a unit scale puts
 * values exactly on rounding midpoints; blocks of one repeated value; all-zero
 * blocks between normal ones. */
static long compare_extremes(enum qfs_type t, qfs_row_quantizer simd)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    enum { N = 1024 };
    static float x[N], w[N];
    static uint8_t a[N * 4], b[N * 4];
    const size_t rs = qfs_row_size(t, N);
    struct rng r = {0xe7u + (unsigned)t};
    long blocks = 0;
    static const float grid_max[] = {8.0f, 16.0f, 127.0f, 128.0f, 15.0f, 31.0f};
    /* the grid i-quants (types with a prepare) are ~100x slower: 20 rounds of the kinds */
    const int iterations = ti->prepare != NULL ? 240 : 1200;
    for (int it = 0; it < iterations; it++) {
        const int kind = it % 12;
        float gm = grid_max[rng_u64(&r) % 6], cval = rng_normal(&r);
        for (int i = 0; i < N; i++) {
            if (i % 32 == 0) {
                gm = grid_max[rng_u64(&r) % 6];
                cval = rng_u64(&r) % 4 == 0 ? 0.0f : rng_normal(&r);
            }
            const float v = rng_normal(&r);
            switch (kind) {
            case 0: x[i] = v * 1e-39f; break;
            case 1: x[i] = v * 1e36f; break;
            case 2: x[i] = i % 32 == 5 ? v : (i & 1 ? 0.0f : -0.0f); break;
            case 3: x[i] = rng_unif(&r) < 0.5 ? v * 1e-30f : v * 1e30f; break;
            case 4: x[i] = v * 3e-38f; break;
            case 5: x[i] = i % 16 == 0 ? v * 1e-44f : 0.0f; break;
            case 6: x[i] = v * 1e38f; break;
            case 7: x[i] = i % 7 == 0 ? -0.0f : (float)(int)(v * 3.0f); break;
            case 8: /* half-integer grid in [-gm, gm], the extremes often present */
                x[i] = (float)((int)(rng_u64(&r) % (uint64_t)(4 * gm + 1)) - (int)(2 * gm)) * 0.5f;
                if (i % 32 == 3 || i % 32 == 17)
                    x[i] = rng_u64(&r) & 1 ? gm : -gm;
                break;
            case 9: /* the grid scaled by a power of two */
                x[i] = (float)((int)(rng_u64(&r) % (uint64_t)(4 * gm + 1)) - (int)(2 * gm)) *
                       0x1p-10f;
                if (i % 32 == 0)
                    x[i] = (rng_u64(&r) & 1 ? gm : -gm) * 0x1p-9f;
                break;
            case 10: /* one value per block (sometimes zero) */
                x[i] = i % 32 == 31 && rng_u64(&r) % 3 == 0 ? -cval : cval;
                break;
            default: /* all-zero blocks (signed zeros) between normal ones */
                x[i] = (i / 32) % 2 ? (i & 2 ? 0.0f : -0.0f) : v;
                break;
            }
            const int ws = (it / 8) % 3;
            w[i] = ws == 0   ? 0.0f
                   : ws == 1 ? expf(3.0f * rng_normal(&r))
                             : 1e-30f * (float)rng_unif(&r);
        }
        for (int wt = 0; wt < 2; wt++) {
            if (wt && !ti->imatrix_ok)
                continue;
            ti->quantize_row(x, a, N, wt ? w : NULL);
            simd(x, b, N, wt ? w : NULL);
            blocks += N / ti->blck;
            if (memcmp(a, b, rs) != 0 && failures++ < 10)
                fprintf(stderr, "MISMATCH %s extreme kind %d imatrix %d (iteration %d)\n",
                        ti->name, kind, wt, it);
        }
    }
    /* grid i-quants: NaN and inf among normal values (a corrupt source) give
     * the same bytes at every level, and no out-of-range index */
    for (int it = 0; ti->prepare != NULL && it < 48; it++) {
        for (int i = 0; i < N; i++) {
            const uint64_t u = rng_u64(&r) % 64;
            x[i] = u == 0 ? NAN : u == 1 ? INFINITY : u == 2 ? -INFINITY : rng_normal(&r);
            w[i] = expf(rng_normal(&r));
        }
        for (int wt = 0; wt < 2; wt++) {
            ti->quantize_row(x, a, N, wt ? w : NULL);
            simd(x, b, N, wt ? w : NULL);
            blocks += N / ti->blck;
            if (memcmp(a, b, rs) != 0 && failures++ < 10)
                fprintf(stderr, "MISMATCH %s NaN/inf imatrix %d (iteration %d)\n", ti->name, wt,
                        it);
        }
    }
    return blocks;
}

/* qfs_quantize_rows follows the level; QFS_SIMD=off was honoured at start-up. */
static void check_dispatch(enum qfs_simd best)
{
    if (qfs_simd_level() != QFS_SIMD_PORTABLE) {
        fprintf(stderr, "QFS_SIMD=off: level %d, expected portable\n", (int)qfs_simd_level());
        failures++;
    }
    if (qfs_simd_set((enum qfs_simd)(best + 1)) != -1) {
        fprintf(stderr, "qfs_simd_set accepted a level the CPU lacks\n");
        failures++;
    }
    struct rng r = {7};
    const int64_t n = 4096, nrows = 8;
    float *x = malloc(sizeof(float) * (size_t)(n * nrows));
    float *imx = malloc(sizeof(float) * (size_t)n);
    /* room for any type (Q8_0 takes more than a byte per element) */
    uint8_t *a = malloc((size_t)(n * nrows) * 4), *b = malloc((size_t)(n * nrows) * 4);
    if (!x || !imx || !a || !b)
        exit(1);
    fill(&r, D_NORMAL, x, n * nrows);
    fill_imatrix(&r, IM_LOGNORMAL, imx, n);
    for (int t = 0; t < QFS_TYPE_COUNT; t++) {
        if (qfs_simd_row((enum qfs_type)t, best) == NULL)
            continue;
        for (int w = 0; w < 2; w++) {
            qfs_simd_set(QFS_SIMD_PORTABLE);
            const size_t sa = qfs_quantize_rows((enum qfs_type)t, x, a, nrows, n, w ? imx : NULL);
            qfs_simd_set(best);
            const size_t sb = qfs_quantize_rows((enum qfs_type)t, x, b, nrows, n, w ? imx : NULL);
            if (!w && qfs_type_info((enum qfs_type)t)->imatrix_required) {
                /* refused at both levels: no defined bytes without importance */
                if (sa != 0 || sb != 0) {
                    fprintf(stderr, "qfs_quantize_rows type %d without imatrix: %zu/%zu bytes\n",
                            t, sa, sb);
                    failures++;
                }
                continue;
            }
            if (sa == 0 || sa != sb || memcmp(a, b, sa) != 0) {
                fprintf(stderr, "qfs_quantize_rows type %d imatrix %d: levels differ\n", t, w);
                failures++;
            }
        }
    }
    free(x);
    free(imx);
    free(a);
    free(b);
}

int main(int argc, char **argv)
{
    setenv("QFS_SIMD", "off", 1); /* before the first qfs_simd_level() */
    const long target = (argc > 1 ? atol(argv[1]) : 512) * 1024;
    const enum qfs_simd best = qfs_simd_supported();
    int ntypes = 0;
    for (int t = 0; t < QFS_TYPE_COUNT; t++)
        ntypes += best != QFS_SIMD_PORTABLE && qfs_simd_row((enum qfs_type)t, best) != NULL;
    if (ntypes == 0) {
        printf("skipped: no SIMD level on this CPU (or no variant in this build)\n");
        return 77;
    }
    check_dispatch(best);
    long total = 0;
    for (int t = 0; t < QFS_TYPE_COUNT; t++) {
        const qfs_row_quantizer simd = qfs_simd_row((enum qfs_type)t, best);
        if (simd == NULL)
            continue;
        const struct qfs_type_info *ti = qfs_type_info((enum qfs_type)t);
        if (ti->prepare != NULL && ti->prepare() < 0) {
            fprintf(stderr, "%s: cannot build its tables\n", ti->name);
            failures++;
            continue;
        }
        /* the grid i-quants quantize ~100x slower than the rest: 1/64 of the blocks */
        const long tt = ti->prepare != NULL ? target / 64 : target;
        /* the plain path gets half of the blocks, the imatrix shapes share the rest */
        long plain = compare_type((enum qfs_type)t, simd, IM_NONE, tt / 2);
        long weighted = 0;
        if (ti->imatrix_ok)
            for (int im = IM_NONE + 1; im < IM_COUNT; im++)
                weighted += compare_type((enum qfs_type)t, simd, im, tt / 2 / (IM_COUNT - 1));
        const long extreme = compare_extremes((enum qfs_type)t, simd);
        printf("%-6s %ld blocks plain, %ld with imatrix, %ld extreme: %s\n", ti->name, plain,
               weighted, extreme, failures ? "failures so far" : "equal");
        total += plain + weighted + extreme;
    }
    printf("%ld blocks compared, %d differing rows\n", total, failures);
    return failures ? 1 : 0;
}
