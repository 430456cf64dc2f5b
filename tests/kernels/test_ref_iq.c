/* Differential test of the grid i-quants (IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS,
 * IQ3_S, IQ1_S, IQ1_M) against ggml's ggml_quantize_chunk from
 * $QFS_LLAMA_LIB_DIR/libggml-base.so, byte for byte: with importance
 * matrices of several shapes (some with zero columns), and without one where
 * ggml has an unweighted variant (IQ2_S, IQ3_XXS, IQ3_S, IQ1_M), on the
 * distributions of testdata.h and rows of 256, 512, 768 and 4096.  Also
 * checks that qfs_quantize_rows refuses the imatrix-required types without
 * one.  Exit 77 (skipped) without the library; 1 on any difference.
 *
 * QFS_IQ_TEST_ROWS (default 6) sets the rows per (type, length,
 * distribution, importance shape); these quantizers are slow on both sides. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qtypes.h"
#include "ggml_ref.h"
#include "testdata.h"

static const enum qfs_type iq_types[] = {QFS_TYPE_IQ2_XXS, QFS_TYPE_IQ2_XS, QFS_TYPE_IQ2_S,
                                         QFS_TYPE_IQ3_XXS, QFS_TYPE_IQ3_S,  QFS_TYPE_IQ1_S,
                                         QFS_TYPE_IQ1_M};
static const int64_t row_lengths[] = {256, 512, 768, 4096};

/* Importance shapes; W_NONE = no importance matrix. */
enum wshape { W_NONE, W_ONES, W_UNIFORM, W_LOGNORMAL, W_SOMEZERO, W_RUNZERO, W_SPIKY, W_COUNT };
static const char *const wshape_name[W_COUNT] = {
    "none", "ones", "uniform", "lognormal", "somezero", "runzero", "spiky",
};

static void fill_weights(struct rng *r, enum wshape s, float *w, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        switch (s) {
        case W_ONES: w[i] = 1.0f; break;
        case W_UNIFORM: w[i] = (float)(0.05 + rng_unif(r)); break;
        case W_LOGNORMAL: w[i] = expf(1.5f * rng_normal(r)); break;
        case W_SOMEZERO: w[i] = rng_unif(r) < 0.25 ? 0.0f : (float)rng_unif(r); break;
        case W_RUNZERO: w[i] = (i / 32) % 3 == 1 ? 0.0f : expf(rng_normal(r)); break;
        case W_SPIKY: w[i] = rng_unif(r) < 0.02 ? 500.0f : 0.5f; break;
        default: w[i] = 1.0f; break;
        }
    }
}

static int failures;
static long compared_rows[QFS_TYPE_COUNT], compared_blocks;

static void report(const struct qfs_type_info *ti, int64_t n, int d, enum wshape ws, int64_t nrows,
                   const float *src, const uint8_t *ours, const uint8_t *ref, size_t bytes)
{
    const size_t off = ggml_ref_first_diff(ours, ref, bytes);
    const size_t rs = bytes / (size_t)nrows;
    const size_t row = off / rs, blk = (off % rs) / ti->type_size, inb = (off % rs) % ti->type_size;
    fprintf(stderr,
            "MISMATCH %s n_per_row=%" PRId64 " dist=%s imatrix=%s: first differing byte %zu "
            "(row %zu, super-block %zu, byte %zu): ours 0x%02x ggml 0x%02x\n",
            ti->name, n, dist_name[d], wshape_name[ws], off, row, blk, inb, ours[off], ref[off]);
    const float *xb = src + row * (size_t)n + blk * (size_t)ti->blck;
    fprintf(stderr, "  input x[0..7]:");
    for (int i = 0; i < 8; i++)
        fprintf(stderr, " %.9g", xb[i]);
    fprintf(stderr, "\n");
}

/* One comparison: nrows rows of n, importance shape ws.  Rows alternate
 * between pure distribution d and a half-and-half mix with another one. */
static void compare(quantize_chunk_fn chunk, const struct qfs_type_info *ti, enum qfs_type t,
                    int64_t n, int d, enum wshape ws, int64_t nrows, struct rng *r, float *src,
                    float *w, uint8_t *ours, uint8_t *ref, int *type_failed)
{
    for (int64_t row = 0; row < nrows; row++) {
        float *x = src + row * n;
        if (row % 3 == 2) {
            fill(r, (enum dist)d, x, n / 2);
            fill(r, (enum dist)((d + 1 + (int)row) % D_COUNT), x + n / 2, n - n / 2);
        } else {
            fill(r, (enum dist)d, x, n);
        }
    }
    const float *imx = NULL;
    if (ws != W_NONE) {
        fill_weights(r, ws, w, n);
        imx = w;
    }
    const size_t rs = qfs_row_size(t, n), bytes = rs * (size_t)nrows;
    memset(ours, 0xAA, bytes);
    memset(ref, 0x55, bytes);
    size_t got;
    if (imx == NULL && ti->imatrix_required) {
        /* only IQ1_M gets here: ggml has an unweighted variant that
         * llama-quantize never uses; qfs_quantize_rows refuses it, the row
         * function implements it */
        for (int64_t row = 0; row < nrows; row++)
            ti->quantize_row(src + row * n, ours + rs * (size_t)row, n, NULL);
        got = bytes;
    } else {
        got = qfs_quantize_rows(t, src, ours, nrows, n, imx);
    }
    const size_t want = chunk((int)t, src, ref, 0, nrows, n, imx);
    if (got != bytes || want != bytes) {
        fprintf(stderr, "SIZE %s n=%" PRId64 ": ours %zu ggml %zu expected %zu\n", ti->name, n, got,
                want, bytes);
        failures++;
        *type_failed = 1;
    } else if (memcmp(ours, ref, bytes) != 0) {
        if (!*type_failed)
            report(ti, n, d, ws, nrows, src, ours, ref, bytes);
        failures++;
        *type_failed = 1;
    }
    compared_rows[t] += nrows;
    compared_blocks += (long)(nrows * (n / 256));
}

int main(void)
{
    static struct ggml_ref g;
    if (!ggml_ref_open(&g, 0))
        return 77;
    const quantize_chunk_fn chunk = g.quantize_chunk;
    const quantize_init_fn init = g.quantize_init;
    if (chunk == NULL || init == NULL) {
        fprintf(stderr, "FAIL: %s lacks ggml_quantize_chunk / ggml_quantize_init\n", g.path);
        return 1;
    }
    int64_t rows = 6;
    const char *env_rows = getenv("QFS_IQ_TEST_ROWS");
    if (env_rows != NULL && atoi(env_rows) > 0)
        rows = atoi(env_rows);

    const int64_t nmax = 4096;
    float *src = malloc(sizeof(float) * (size_t)(nmax * rows));
    float *w = malloc(sizeof(float) * (size_t)nmax);
    uint8_t *ours = malloc((size_t)(nmax * rows)), *ref = malloc((size_t)(nmax * rows));
    if (!src || !w || !ours || !ref) {
        fprintf(stderr, "out of memory\n");
        return 1;
    }
    struct rng r = {0x1a0eedull};
    for (size_t ti_ix = 0; ti_ix < sizeof iq_types / sizeof iq_types[0]; ti_ix++) {
        const enum qfs_type t = iq_types[ti_ix];
        const struct qfs_type_info *ti = qfs_type_info(t);
        if (ti == NULL) {
            fprintf(stderr, "FAIL: type %d is not in the table\n", (int)t);
            failures++;
            continue;
        }
        init((int)t);
        /* the required-imatrix contract */
        fill(&r, D_NORMAL, src, 256);
        if (ti->imatrix_required && qfs_quantize_rows(t, src, ours, 1, 256, NULL) != 0) {
            fprintf(stderr, "FAIL: %s accepted a NULL imatrix\n", ti->name);
            failures++;
        }
        int type_failed = 0;
        for (size_t li = 0; li < sizeof row_lengths / sizeof row_lengths[0]; li++) {
            const int64_t n = row_lengths[li];
            /* long rows: fewer of them */
            const int64_t nr = n >= 4096 ? (rows + 2) / 3 : rows;
            for (int d = 0; d < D_COUNT; d++) {
                for (int ws = 0; ws < W_COUNT; ws++) {
                    /* ggml asserts without weights for these three */
                    if (ws == W_NONE && t != QFS_TYPE_IQ1_M && ti->imatrix_required)
                        continue;
                    compare(chunk, ti, t, n, d, (enum wshape)ws, nr, &r, src, w, ours, ref,
                            &type_failed);
                }
            }
        }
        printf("%-8s %s: %ld rows compared\n", ti->name, type_failed ? "DIFFERS" : "equal",
               compared_rows[t]);
        fflush(stdout);
    }
    printf("%ld super-blocks compared with ggml_quantize_chunk\n", compared_blocks);
    free(src);
    free(w);
    free(ours);
    free(ref);
    if (failures) {
        fprintf(stderr, "FAIL: %d comparisons differ\n", failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
