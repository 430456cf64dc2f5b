/* Differential test: every type of our table against ggml's
 * ggml_quantize_chunk from libggml-base.so of the npm package
 * @node-llama-cpp/linux-x64, byte for byte, on many distributions and row
 * lengths: without an importance matrix for every type, and with one (several
 * shapes of random positive weights, some zero) for every type whose
 * imatrix_ok is true; and our f16/bf16 conversions against ggml's.
 * Exit 77 (skipped) when the library is not there; 1 on any difference. */
#include <dlfcn.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qtypes.h"
#include "ggml_ref.h"
#include "testdata.h"

typedef uint16_t (*fp32_to_fp16_fn)(float);
typedef float (*fp16_to_fp32_fn)(uint16_t);
typedef struct { uint16_t bits; } ggml_bf16;
typedef ggml_bf16 (*fp32_to_bf16_fn)(float);

static const int64_t row_lengths[] = {32, 64, 128, 256, 352, 512, 768, 4096};

static int failures;

/* the importance shapes of testdata.h after IM_NONE: a weighted pass quantizes
 * the rows of each distribution in IM_SHAPES groups, one shape each */
enum { IM_SHAPES = IM_COUNT - (IM_NONE + 1) };

static void report_mismatch(const struct qfs_type_info *ti, int64_t n, enum dist d, int im,
                            int64_t nrows, const float *src, const uint8_t *ours,
                            const uint8_t *ref, size_t bytes)
{
    const size_t off = ggml_ref_first_diff(ours, ref, bytes);
    const size_t row_size = bytes / (size_t)nrows;
    const size_t row = off / row_size;
    const size_t blk = (off % row_size) / ti->type_size;
    fprintf(stderr,
            "MISMATCH %s n_per_row=%" PRId64 " dist=%s imatrix=%s: first differing byte %zu "
            "(row %zu, block %zu, byte %zu in block): ours 0x%02x ggml 0x%02x\n",
            ti->name, n, dist_name[d], imshape_name[im], off, row, blk,
            (off % row_size) % ti->type_size, ours[off], ref[off]);
    const float *xb = src + row * (size_t)n + blk * (size_t)ti->blck;
    fprintf(stderr, "  block input (first %d of %" PRId64 "):", ti->blck < 8 ? (int)ti->blck : 8,
            ti->blck);
    for (int i = 0; i < 8 && i < ti->blck; i++)
        fprintf(stderr, " %.9g", xb[i]);
    /* up to 16 bytes of the block from 8 before the first difference */
    const size_t b0 = row * row_size + blk * ti->type_size;
    ggml_ref_dump_block(ours, ref, off, b0, ti->type_size, "block bytes");
}

/* Quantizes rows [r0, r1) of src with ours and ggml's; returns 1 when equal. */
static int compare_range(quantize_chunk_fn chunk, const struct qfs_type_info *ti, int t,
                         int64_t n, enum dist d, int im, const float *imatrix, const float *src,
                         uint8_t *ours, uint8_t *ref, int64_t r0, int64_t r1, int quiet)
{
    const size_t rs = qfs_row_size((enum qfs_type)t, n);
    const size_t bytes = rs * (size_t)(r1 - r0);
    const float *x = src + r0 * n;
    uint8_t *o = ours + rs * (size_t)r0, *g = ref + rs * (size_t)r0;
    memset(o, 0xAA, bytes);
    memset(g, 0x55, bytes);
    const size_t got = qfs_quantize_rows((enum qfs_type)t, x, o, r1 - r0, n, imatrix);
    const size_t want = chunk(t, x, g, 0, r1 - r0, n, imatrix);
    if (got != want || got != bytes) {
        fprintf(stderr, "SIZE %s n=%" PRId64 " imatrix=%s: ours %zu ggml %zu expected %zu\n",
                ti->name, n, imshape_name[im], got, want, bytes);
        return 0;
    }
    if (memcmp(o, g, bytes) != 0) {
        if (!quiet)
            report_mismatch(ti, n, d, im, r1 - r0, x, o, g, bytes);
        return 0;
    }
    return 1;
}

/* One pass over every type of the table: without an importance matrix, or
 * (weighted) with one for the types whose imatrix_ok is true.  With one, the
 * rows of each distribution are split into IM_SHAPES groups, each quantized
 * with its own importance shape (a call per group, as each tensor has one). */
static int is_grid_type(int t)
{
    return t == QFS_TYPE_IQ2_XXS || t == QFS_TYPE_IQ2_XS || t == QFS_TYPE_IQ2_S ||
           t == QFS_TYPE_IQ3_XXS || t == QFS_TYPE_IQ3_S || t == QFS_TYPE_IQ1_S || t == QFS_TYPE_IQ1_M;
}

static void compare_types(quantize_chunk_fn chunk, int weighted)
{
    struct rng r = {weighted ? 0x1a7e1234u : 0x5eed1234u};
    long types = 0, rows_total = 0, blocks_total = 0;
    for (int t = 0; t < QFS_TYPE_COUNT; t++) {
        const struct qfs_type_info *ti = qfs_type_info((enum qfs_type)t);
        if (ti == NULL || (weighted && !ti->imatrix_ok))
            continue;
        if (!weighted && ti->imatrix_required)
            continue; /* ggml aborts without an imatrix: llama-quantize never writes these */
        if (is_grid_type(t))
            continue; /* test_ref_iq.c covers them; their grids make ggml slow to set up */
        types++;
        long type_rows = 0;
        int type_failed = 0;
        for (size_t li = 0; li < sizeof row_lengths / sizeof row_lengths[0]; li++) {
            const int64_t n = row_lengths[li];
            if (n % ti->blck != 0)
                continue;
            /* ~32K elements per distribution; 8x for the super-block types,
             * whose search has the most room for a difference (2x with an
             * imatrix, where the grid i-quants are slow) */
            const int64_t target = ti->blck >= 256 ? (weighted ? 65536 : 262144) : 32768;
            int64_t nrows = target / n + 3;
            if (weighted && nrows < 2 * IM_SHAPES)
                nrows = 2 * IM_SHAPES;
            const size_t bytes = qfs_row_size((enum qfs_type)t, n) * (size_t)nrows;
            float *src = malloc(sizeof(float) * (size_t)(n * nrows));
            float *imx = malloc(sizeof(float) * (size_t)n);
            uint8_t *ours = malloc(bytes), *ref = malloc(bytes);
            if (!src || !imx || !ours || !ref) {
                fprintf(stderr, "out of memory\n");
                exit(1);
            }
            for (int d = 0; d < D_COUNT; d++) {
                /* one distribution per row, plus rows mixing two distributions
                 * block-wise, so blocks of very different scale share a row */
                for (int64_t row = 0; row < nrows; row++) {
                    float *x = src + row * n;
                    if (row % 4 == 3) {
                        const int64_t half = n / 2;
                        fill(&r, (enum dist)d, x, half);
                        fill(&r, (enum dist)((d + (int)row) % D_COUNT), x + half, n - half);
                    } else {
                        fill(&r, (enum dist)d, x, n);
                    }
                }
                int ok = 1;
                if (!weighted) {
                    ok = compare_range(chunk, ti, t, n, (enum dist)d, IM_NONE, NULL, src, ours,
                                       ref, 0, nrows, type_failed);
                } else {
                    for (int k = 0; k < IM_SHAPES; k++) {
                        const int im = IM_NONE + 1 + k;
                        const int64_t r0 = nrows * k / IM_SHAPES, r1 = nrows * (k + 1) / IM_SHAPES;
                        fill_imatrix(&r, (enum imshape)im, imx, n);
                        if (!compare_range(chunk, ti, t, n, (enum dist)d, im, imx, src, ours, ref,
                                           r0, r1, type_failed || !ok))
                            ok = 0;
                    }
                }
                if (!ok) {
                    failures++;
                    type_failed = 1;
                }
                type_rows += nrows;
                blocks_total += (long)(nrows * (n / ti->blck));
            }
            free(src);
            free(imx);
            free(ours);
            free(ref);
        }
        rows_total += type_rows;
        printf("%-7s %-9s %s: %ld rows compared\n", ti->name, weighted ? "imatrix" : "plain",
               type_failed ? "DIFFERS" : "equal", type_rows);
    }
    printf("%ld types, %ld rows, %ld blocks compared with ggml_quantize_chunk (%s)\n", types,
           rows_total, blocks_total, weighted ? "with imatrix" : "no imatrix");
}

static void compare_conversions(void *lib)
{
    fp32_to_fp16_fn g_f2h = (fp32_to_fp16_fn)dlsym(lib, "ggml_fp32_to_fp16");
    fp16_to_fp32_fn g_h2f = (fp16_to_fp32_fn)dlsym(lib, "ggml_fp16_to_fp32");
    fp32_to_bf16_fn g_f2b = (fp32_to_bf16_fn)dlsym(lib, "ggml_fp32_to_bf16");
    long checked = 0;
    int bad = 0;

    if (g_h2f) {
        for (uint32_t h = 0; h < 65536; h++) {
            const uint32_t a = f2u(qfs_f16_to_f32((uint16_t)h)), b = f2u(g_h2f((uint16_t)h));
            if (a != b && !(is_nan32(a) && is_nan32(b))) {
                if (!bad++)
                    fprintf(stderr, "MISMATCH f16->f32 0x%04x: ours 0x%08x ggml 0x%08x\n", h, a, b);
            }
        }
        checked += 65536;
    } else {
        printf("ggml_fp16_to_fp32 not exported: skipped\n");
    }

    /* Inputs: a stride over all 2^32 patterns, every f16 value, the midpoints
     * between neighbouring f16 values and one f32 ulp either side, random bits. */
    struct rng r = {42};
    const uint32_t stride = 65521;
    const size_t cap = (size_t)(0x100000000ull / stride) + 65536 * 4 + 2000000 + 16;
    uint32_t *in = malloc(cap * sizeof *in);
    size_t nin = 0;
    if (!in) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    for (uint64_t u = 0; u <= 0xffffffffull; u += stride)
        in[nin++] = (uint32_t)u;
    for (uint32_t h = 0; h < 65536; h++) {
        const float a = qfs_f16_to_f32((uint16_t)h);
        in[nin++] = f2u(a);
        if ((h & 0x7fff) < 0x7c00) {
            const float b = qfs_f16_to_f32((uint16_t)(h + 1)); /* next magnitude, same sign */
            const uint32_t mid = f2u((float)(((double)a + (double)b) / 2));
            in[nin++] = mid;
            in[nin++] = mid + 1;
            in[nin++] = mid - 1;
        }
    }
    for (int i = 0; i < 2000000; i++)
        in[nin++] = (uint32_t)rng_u64(&r);

    if (g_f2h) {
        for (size_t i = 0; i < nin; i++) {
            if (is_nan32(in[i]))
                continue; /* ggml writes every NaN as 0x7e00; we keep F16C's payload */
            const float f = u2f(in[i]);
            const uint16_t a = qfs_f32_to_f16(f), b = g_f2h(f);
            if (a != b && !bad++)
                fprintf(stderr, "MISMATCH f32->f16 0x%08x (%.9g): ours 0x%04x ggml 0x%04x\n",
                        in[i], f, a, b);
            checked++;
        }
    } else {
        printf("ggml_fp32_to_fp16 not exported: skipped\n");
    }
    if (g_f2b) {
        for (size_t i = 0; i < nin; i++) {
            const float f = u2f(in[i]);
            const uint16_t a = qfs_f32_to_bf16(f), b = g_f2b(f).bits;
            if (a != b && !bad++)
                fprintf(stderr, "MISMATCH f32->bf16 0x%08x: ours 0x%04x ggml 0x%04x\n", in[i], a, b);
            checked++;
        }
    } else {
        printf("ggml_fp32_to_bf16 not exported: skipped\n");
    }
    free(in);
    printf("conversions: %ld values compared with ggml, %s\n", checked, bad ? "DIFFER" : "all equal");
    if (bad)
        failures++;
}

int main(void)
{
    static struct ggml_ref g;
    if (!ggml_ref_open(&g, 0))
        return 77;
    if (g.quantize_chunk == NULL) {
        fprintf(stderr, "FAIL: %s has no ggml_quantize_chunk\n", g.path);
        return 1;
    }
    compare_types(g.quantize_chunk, 0);
    compare_types(g.quantize_chunk, 1);
    compare_conversions(g.lib);
    /* the library stays loaded: its static state is not ours to tear down */
    if (failures) {
        fprintf(stderr, "FAIL: %d comparisons differ\n", failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
