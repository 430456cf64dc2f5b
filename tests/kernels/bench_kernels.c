/* Throughput of the CPU kernels: N f16 (or bf16) elements of random
 * normal-ish data through qfs_to_f32, then qfs_quantize_rows for each type.
 * Prints M elements/s per stage (best of a few runs).  Then, for the types
 * with a SIMD variant (kernels/simd.h), portable vs SIMD vs ggml's
 * ggml_quantize_chunk (libggml-base.so from $QFS_LLAMA_LIB_DIR, if it loads),
 * plain and with an imatrix, on one thread, timed alternately in one process
 * by thread CPU time (so other load on the machine skews them alike), and the
 * ratio SIMD / ggml.  A benchmark, not a test: `meson test --benchmark
 * --suite kernels` or run the binary directly, optionally with the element
 * count in Mi as argv[1] (default 64) and the repetitions as argv[2]; with
 * argv[3], a comma-separated list of type names ("IQ2_S,IQ3_S"), only the
 * comparison runs, for those types. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kernels/qtypes.h"
#include "kernels/simd.h"
#include "ggml_ref.h"

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static quantize_chunk_fn load_ggml(void)
{
    static struct ggml_ref g;
    return ggml_ref_open(&g, 1) ? g.quantize_chunk : NULL;
}

/* Portable vs SIMD vs ggml for the types with a SIMD variant: each rep runs
 * the three one after the other, the best CPU time of each is kept. */
/* only: NULL, or a comma-separated list of type names to compare */
static int listed(const char *only, const char *name)
{
    if (only == NULL)
        return 1;
    const size_t n = strlen(name);
    for (const char *p = only; (p = strstr(p, name)) != NULL; p += n)
        if ((p == only || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return 1;
    return 0;
}

static void compare_simd(const float *f, void *q, int64_t nrows, int64_t row,
                         const float *imatrix, int reps, const char *only)
{
    const enum qfs_simd best = qfs_simd_supported();
    const quantize_chunk_fn ggml = load_ggml();
    printf("portable vs %s vs ggml, one thread, %lld rows of %lld, M elements/s by CPU time:\n",
           best == QFS_SIMD_AVX2 ? "AVX2" : "(no SIMD)", (long long)nrows, (long long)row);
    if (ggml == NULL)
        printf("  (ggml not loaded: set QFS_LLAMA_LIB_DIR to the dir of libggml-base.so)\n");
    printf("  %-16s %9s %9s %9s %11s %12s\n", "type", "portable", "simd", "ggml", "simd/ggml",
           "simd/portable");
    for (int t = 0; t < QFS_TYPE_COUNT; t++) {
        if (qfs_simd_row((enum qfs_type)t, best) == NULL)
            continue;
        const struct qfs_type_info *ti = qfs_type_info((enum qfs_type)t);
        if (!listed(only, ti->name))
            continue;
        /* the grid i-quants (the types with a prepare) are slow: a sixteenth */
        const int64_t rows = ti->prepare != NULL && nrows >= 16 ? nrows / 16 : nrows;
        if (ti->prepare != NULL && ti->prepare() < 0)
            continue;
        for (int weighted = 0; weighted < 2; weighted++) {
            if (!weighted && ti->imatrix_required)
                continue; /* ggml asserts */
            const float *im = weighted ? imatrix : NULL;
            double tb[3] = {1e30, 1e30, 1e30};
            for (int r = 0; r < reps; r++) {
                for (int k = 0; k < 3; k++) {
                    if (k == 2 && ggml == NULL)
                        continue;
                    if (k < 2)
                        qfs_simd_set(k == 0 ? QFS_SIMD_PORTABLE : best);
                    const double t0 = cpu_now();
                    if (k < 2)
                        qfs_quantize_rows((enum qfs_type)t, f, q, rows, row, im);
                    else
                        ggml(t, f, q, 0, rows, row, im);
                    const double dt = cpu_now() - t0;
                    tb[k] = dt < tb[k] ? dt : tb[k];
                }
            }
            const double el = (double)(rows * row) / 1e6;
            char name[32];
            snprintf(name, sizeof name, "%s%s", ti->name, weighted ? " (imatrix)" : "");
            if (ggml != NULL)
                printf("  %-16s %9.1f %9.1f %9.1f %10.2fx %11.2fx\n", name, el / tb[0],
                       el / tb[1], el / tb[2], tb[2] / tb[1], tb[0] / tb[1]);
            else
                printf("  %-16s %9.1f %9.1f %9s %11s %11.2fx\n", name, el / tb[0], el / tb[1],
                       "-", "-", tb[0] / tb[1]);
        }
    }
    qfs_simd_set(best);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t next(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* roughly normal, sd ~0.03 (weights-like) */
static float gauss(void)
{
    float s = 0.0f;
    for (int i = 0; i < 4; i++)
        s += (float)(next() >> 40) / (float)(1 << 24);
    return (s - 2.0f) * 0.05f;
}

int main(int argc, char **argv)
{
    const int64_t n = (argc > 1 ? atoll(argv[1]) : 64) << 20;
    const int64_t row = 4096;
    const int64_t nrows = n / row;
    const int reps = argc > 2 ? atoi(argv[2]) : 3;
    const char *only = argc > 3 ? argv[3] : NULL;

    uint16_t *h16 = malloc((size_t)n * 2 + 2);
    uint16_t *b16 = malloc((size_t)n * 2);
    float *f = malloc((size_t)n * sizeof(float));
    void *q = malloc((size_t)n * sizeof(float));
    if (!h16 || !b16 || !f || !q)
        return 1;
    for (int64_t i = 0; i < n; i++) {
        const float v = gauss();
        h16[i] = qfs_f32_to_f16(v);
        b16[i] = qfs_f32_to_bf16(v);
    }
    printf("%lld Mi elements, %d reps (best), M elements/s:\n", (long long)(n >> 20), reps);

    struct {
        const char *name;
        enum qfs_dtype dt;
        const void *src;
    } conv[] = {
        {"f16->f32", QFS_DT_F16, h16},
        {"f16->f32 (unaligned)", QFS_DT_F16, (const unsigned char *)h16 + 1},
        {"bf16->f32", QFS_DT_BF16, b16},
    };
    for (size_t c = 0; c < sizeof conv / sizeof conv[0]; c++) {
        double best = 1e30;
        for (int r = 0; r < reps; r++) {
            const double t0 = now();
            qfs_to_f32(conv[c].dt, conv[c].src, f, n);
            const double t = now() - t0;
            best = t < best ? t : best;
        }
        printf("  %-22s %9.1f\n", conv[c].name, (double)n / best / 1e6);
    }
    qfs_to_f32(QFS_DT_F16, h16, f, n);

    const enum qfs_type types[] = {QFS_TYPE_Q8_0, QFS_TYPE_Q4_0, QFS_TYPE_Q4_1, QFS_TYPE_Q5_0,
                                   QFS_TYPE_Q5_1, QFS_TYPE_Q2_K, QFS_TYPE_Q3_K, QFS_TYPE_Q4_K,
                                   QFS_TYPE_Q5_K, QFS_TYPE_Q6_K, QFS_TYPE_F16,  QFS_TYPE_BF16};
    /* an importance matrix shaped like llama-imatrix's (positive, heavy tailed) */
    float *imatrix = malloc((size_t)row * sizeof(float));
    if (!imatrix)
        return 1;
    for (int64_t i = 0; i < row; i++) {
        const float g = gauss() * 20.0f;
        imatrix[i] = 0.01f + g * g;
    }
    uint64_t sum = 0;
    for (size_t k = 0; only == NULL && k < sizeof types / sizeof types[0]; k++) {
        const struct qfs_type_info *ti = qfs_type_info(types[k]);
        if (ti == NULL)
            continue;
        /* the super-block searches are slow: a quarter of the data is plenty */
        const int64_t rows = ti->blck == 256 ? nrows / 4 : nrows;
        for (int weighted = 0; weighted < 2; weighted++) {
            if (weighted && (!ti->imatrix_ok || ti->blck == 1))
                continue;
            double best = 1e30;
            size_t bytes = 0;
            for (int r = 0; r < reps; r++) {
                const double t0 = now();
                bytes = qfs_quantize_rows(types[k], f, q, rows, row, weighted ? imatrix : NULL);
                const double t = now() - t0;
                best = t < best ? t : best;
            }
            for (size_t i = 0; i < bytes; i += 4099)
                sum += ((unsigned char *)q)[i];
            printf("  %-8s%-14s %9.1f\n", ti->name, weighted ? " (imatrix)" : "",
                   (double)(rows * row) / best / 1e6);
        }
    }
    compare_simd(f, q, nrows / 16 > 0 ? nrows / 16 : 1, row, imatrix, reps, only);
    if (only != NULL) {
        free(imatrix);
        free(h16);
        free(b16);
        free(f);
        free(q);
        return 0;
    }
    free(imatrix);
    /* the end-to-end Q8_0 pipeline as the converter runs it: row by row */
    {
        double best = 1e30;
        float *rowbuf = malloc((size_t)row * sizeof(float));
        for (int r = 0; r < reps; r++) {
            const double t0 = now();
            for (int64_t i = 0; i < nrows; i++) {
                qfs_to_f32(QFS_DT_F16, h16 + i * row, rowbuf, row);
                qfs_quantize_rows(QFS_TYPE_Q8_0, rowbuf, (unsigned char *)q + i * row, 1, row, NULL);
            }
            const double t = now() - t0;
            best = t < best ? t : best;
        }
        printf("  %-22s %9.1f\n", "f16->Q8_0 per row", (double)n / best / 1e6);
        free(rowbuf);
    }
    printf("(checksum %llu)\n", (unsigned long long)sum);
    free(h16);
    free(b16);
    free(f);
    free(q);
    return 0;
}
