/* Differential test of the family-B types against ggml's ggml_quantize_chunk
 * (libggml-base.so of the npm package @node-llama-cpp/linux-x64), byte for
 * byte, without and with an importance matrix:
 *   Q4_0 Q4_1 Q5_0 Q5_1 (the weighted paths are new; Q8_0 rides along: it
 *   ignores the imatrix), IQ4_NL IQ4_XS, TQ1_0 TQ2_0, Q1_0 Q2_0.
 * Every distribution of testdata.h plus subnormal blocks, rows mixing two
 * distributions, row lengths 32..4096 where the block allows, and imatrix
 * shapes: uniform, with zeros, heavy-tailed, constant, mostly zero, all zero.
 * Exit 77 (skipped) when the library is not there; 1 on any difference. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qtypes.h"
#include "ggml_ref.h"
#include "testdata.h"

static const enum qfs_type family[] = {
    QFS_TYPE_Q4_0,  QFS_TYPE_Q4_1,  QFS_TYPE_Q5_0,  QFS_TYPE_Q5_1, QFS_TYPE_Q8_0, QFS_TYPE_IQ4_NL,
    QFS_TYPE_IQ4_XS, QFS_TYPE_TQ1_0, QFS_TYPE_TQ2_0, QFS_TYPE_Q1_0, QFS_TYPE_Q2_0,
};
static const int64_t row_lengths[] = {32, 64, 128, 256, 352, 512, 768, 4096};

/* data: testdata.h's distributions, then blocks of subnormals (1/amax overflows) */
enum { D_SUBNORMAL = D_COUNT, N_DIST };
static const char *dname(int d) { return d == D_SUBNORMAL ? "subnormal" : dist_name[d]; }

static void fill_dist(struct rng *r, int d, float *x, int64_t n)
{
    if (d == D_SUBNORMAL) { /* amax from 1e-38 (1/amax finite) down to a few ulps (it overflows) */
        static const float scale[] = {1e-38f, 1e-39f, 1e-41f, 1e-44f};
        const float s = scale[rng_u64(r) % 4];
        for (int64_t i = 0; i < n; i++)
            x[i] = rng_normal(r) * s * (rng_unif(r) < 0.5 ? 1.0f : 1e-2f);
        return;
    }
    fill(r, (enum dist)d, x, n);
}

/* importance shapes of this test's own (IW_: not testdata.h's IM_ shapes) */
enum imat { IW_NONE, IW_UNIFORM, IW_ZEROS, IW_HEAVY, IW_ONES, IW_SPARSE, IW_ALLZERO, IW_COUNT };
static const char *const imat_name[IW_COUNT] = {"none",  "uniform", "10%-zeros", "heavy-tailed",
                                                "ones",  "90%-zeros", "all-zero"};

static void fill_weights(struct rng *r, enum imat s, float *w, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        switch (s) {
        case IW_UNIFORM: w[i] = (float)(0.01 + 10.0 * rng_unif(r)); break;
        case IW_ZEROS: w[i] = rng_unif(r) < 0.1 ? 0.0f : (float)(rng_unif(r) * 3.0); break;
        case IW_HEAVY: w[i] = (float)exp(2.5 * rng_normal(r)); break;
        case IW_ONES: w[i] = 1.0f; break;
        case IW_SPARSE: w[i] = rng_unif(r) < 0.9 ? 0.0f : (float)(1.0 + 100.0 * rng_unif(r)); break;
        default: w[i] = 0.0f; break;
        }
    }
}

static int failures;

static void report(const struct qfs_type_info *ti, int64_t n, int d, enum imat im, int64_t nrows,
                   const float *src, const float *imatrix, const uint8_t *ours, const uint8_t *ref,
                   size_t bytes)
{
    const size_t off = ggml_ref_first_diff(ours, ref, bytes);
    const size_t row_size = bytes / (size_t)nrows;
    const size_t row = off / row_size, blk = (off % row_size) / ti->type_size;
    const size_t inblk = (off % row_size) % ti->type_size;
    fprintf(stderr,
            "MISMATCH %s n_per_row=%" PRId64 " dist=%s imatrix=%s: first differing byte %zu "
            "(row %zu, block %zu, byte %zu of %zu): ours 0x%02x ggml 0x%02x\n",
            ti->name, n, dname(d), imat_name[im], off, row, blk, inblk, ti->type_size, ours[off],
            ref[off]);
    const float *xb = src + row * (size_t)n + blk * (size_t)ti->blck;
    fprintf(stderr, "  block input (first 8):");
    for (int i = 0; i < 8; i++)
        fprintf(stderr, " %.9g", xb[i]);
    if (imatrix != NULL) {
        fprintf(stderr, "\n  block imatrix (first 8):");
        for (int i = 0; i < 8; i++)
            fprintf(stderr, " %.9g", imatrix[blk * (size_t)ti->blck + (size_t)i]);
    }
    const size_t b0 = row * row_size + blk * ti->type_size;
    ggml_ref_dump_block(ours, ref, off, b0, ti->type_size, "bytes");
}

static void compare(quantize_chunk_fn chunk)
{
    struct rng r = {0xfa111b5eedull};
    long total_rows[2] = {0, 0}, total_cases[2] = {0, 0};
    for (size_t k = 0; k < sizeof family / sizeof family[0]; k++) {
        const enum qfs_type t = family[k];
        const struct qfs_type_info *ti = qfs_type_info(t);
        if (ti == NULL) {
            fprintf(stderr, "FAIL: type %d is not in the table\n", (int)t);
            failures++;
            continue;
        }
        long rows[2] = {0, 0};
        int type_failed = 0;
        char lens[128] = "";
        for (size_t li = 0; li < sizeof row_lengths / sizeof row_lengths[0]; li++) {
            const int64_t n = row_lengths[li];
            if (n % ti->blck != 0)
                continue;
            snprintf(lens + strlen(lens), sizeof lens - strlen(lens), "%s%" PRId64,
                     lens[0] ? "," : "", n);
            const int64_t nrows = (ti->blck >= 256 ? 16384 : 8192) / n + 3;
            const size_t bytes = qfs_row_size(t, n) * (size_t)nrows;
            float *src = malloc(sizeof(float) * (size_t)(n * nrows));
            float *imatrix = malloc(sizeof(float) * (size_t)n);
            uint8_t *ours = malloc(bytes), *ref = malloc(bytes);
            if (!src || !imatrix || !ours || !ref) {
                fprintf(stderr, "out of memory\n");
                exit(1);
            }
            for (int im = 0; im < IW_COUNT; im++) {
                const float *qw = im == IW_NONE ? NULL : imatrix;
                fill_weights(&r, (enum imat)im, imatrix, n);
                for (int d = 0; d < N_DIST; d++) {
                    for (int64_t row = 0; row < nrows; row++) {
                        float *x = src + row * n;
                        if (row % 4 == 3 && n >= 64) { /* blocks of two distributions in one row */
                            fill_dist(&r, d, x, n / 2);
                            fill_dist(&r, (d + (int)row) % N_DIST, x + n / 2, n - n / 2);
                        } else {
                            fill_dist(&r, d, x, n);
                        }
                    }
                    memset(ours, 0xAA, bytes);
                    memset(ref, 0x55, bytes);
                    const size_t got = qfs_quantize_rows(t, src, ours, nrows, n, qw);
                    const size_t want = chunk((int)t, src, ref, 0, nrows, n, qw);
                    const int w = qw != NULL;
                    if (got != bytes || want != bytes) {
                        fprintf(stderr, "SIZE %s n=%" PRId64 " imatrix=%s: ours %zu ggml %zu want %zu\n",
                                ti->name, n, imat_name[im], got, want, bytes);
                        failures++;
                        type_failed = 1;
                    } else if (memcmp(ours, ref, bytes) != 0) {
                        if (type_failed < 3)
                            report(ti, n, d, (enum imat)im, nrows, src, qw, ours, ref, bytes);
                        failures++;
                        type_failed++;
                    }
                    rows[w] += nrows;
                    total_cases[w]++;
                }
            }
            free(src);
            free(imatrix);
            free(ours);
            free(ref);
        }
        total_rows[0] += rows[0];
        total_rows[1] += rows[1];
        printf("%-6s %s: n_per_row {%s}, %ld rows without imatrix, %ld rows with (%d shapes)\n",
               ti->name, type_failed ? "DIFFERS" : "equal", lens, rows[0], rows[1], IW_COUNT - 1);
    }
    printf("%zu types; %ld rows in %ld cases without imatrix, %ld rows in %ld cases with, "
           "compared with ggml_quantize_chunk\n",
           sizeof family / sizeof family[0], total_rows[0], total_cases[0], total_rows[1],
           total_cases[1]);
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
    compare(g.quantize_chunk);
    if (failures) {
        fprintf(stderr, "FAIL: %d comparisons differ\n", failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
