/* Table-driven checks of every type in the table (a new type is tested
 * without new code): names, row sizes, qfs_quantize_rows' contract, and the
 * round-trip error bound quantize -> dequantize per block. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qtypes.h"
#include "testdata.h"

static int failures;

#define CHECK(cond, ...)                                                                     \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);                             \
            fprintf(stderr, __VA_ARGS__);                                                    \
            fprintf(stderr, "\n");                                                           \
            failures++;                                                                      \
        }                                                                                    \
    } while (0)

static void check_table(void)
{
    int count = 0;
    for (int t = 0; t < QFS_TYPE_COUNT; t++) {
        const struct qfs_type_info *ti = qfs_type_info((enum qfs_type)t);
        if (ti == NULL) {
            CHECK(qfs_row_size((enum qfs_type)t, 256) == 0, "row size of missing type %d", t);
            continue;
        }
        count++;
        CHECK(ti->name != NULL && ti->blck > 0 && ti->type_size > 0, "type %d incomplete", t);
        CHECK(ti->quantize_row != NULL && ti->dequantize_row != NULL, "%s: no functions", ti->name);
        CHECK(qfs_type_from_name(ti->name) == t, "%s: name lookup gives %d", ti->name,
              qfs_type_from_name(ti->name));
        for (int64_t k = 0; k < 20; k++)
            CHECK(qfs_row_size((enum qfs_type)t, k * ti->blck) == (size_t)k * ti->type_size,
                  "%s: row size of %" PRId64 " blocks", ti->name, k);
        if (ti->blck > 1) {
            CHECK(qfs_row_size((enum qfs_type)t, ti->blck + 1) == 0, "%s: misaligned row", ti->name);
            CHECK(qfs_row_size((enum qfs_type)t, ti->blck / 2) == 0, "%s: short row", ti->name);
        }
        CHECK(qfs_row_size((enum qfs_type)t, -ti->blck) == 0, "%s: negative row", ti->name);
    }
    CHECK(count >= 9, "only %d types in the table", count);
    CHECK(qfs_type_info((enum qfs_type)4) == NULL, "id 4 (removed Q4_2) must stay empty");
    CHECK(qfs_type_info((enum qfs_type)QFS_TYPE_COUNT) == NULL, "id past the table");
    CHECK(qfs_type_info((enum qfs_type)-1) == NULL, "negative id");
    CHECK(qfs_type_from_name("q4_0") == -1, "lookup must be case-sensitive");
    CHECK(qfs_type_from_name("Q4_2") == -1, "unknown name");
    CHECK(qfs_type_from_name("") == -1, "empty name");
    CHECK(qfs_type_from_name(NULL) == -1, "NULL name");
    CHECK(qfs_type_from_name("Q6_K") == QFS_TYPE_Q6_K, "Q6_K");
    CHECK(qfs_type_from_name("BF16") == QFS_TYPE_BF16, "BF16");
    CHECK(qfs_row_size(QFS_TYPE_Q4_0, 4096) == 4096 / 32 * 18, "Q4_0 row");
    CHECK(qfs_row_size(QFS_TYPE_Q6_K, 4096) == 4096 / 256 * 210, "Q6_K row");
    CHECK(qfs_row_size(QFS_TYPE_Q8_0, 4096) == 4096 / 32 * 34, "Q8_0 row");
}

/* Distributions whose blocks have their amax in [1, 1e4], where max_err is
 * promised (elements below 1 are checked against blocks of 32 or more). */
static void fill_bounded(struct rng *r, int which, float *x, int64_t n)
{
    static const float scales[] = {1.0f, 3.0f, 30.0f, 1000.0f};
    const float s = scales[which % 4];
    switch (which / 4) {
    case 0: fill(r, D_NORMAL, x, n); break;
    case 1: fill(r, D_UNIFORM, x, n); break;
    case 2: fill(r, D_NEGMAX, x, n); break;
    case 3: fill(r, D_POSMAX, x, n); break;
    case 4: fill(r, D_BF16, x, n); break;
    default: /* mild outliers */
        for (int64_t i = 0; i < n; i++) x[i] = rng_normal(r) * (rng_unif(r) < 0.02 ? 8.0f : 1.0f);
    }
    for (int64_t i = 0; i < n; i++) {
        x[i] *= s;
        if (fabsf(x[i]) > 1e4f) x[i] = copysignf(1e4f, x[i]);
    }
    /* every 32-element run gets an element of magnitude >= 1 */
    for (int64_t i = 0; i < n; i += 32) x[i] = x[i] >= 0 ? fmaxf(x[i], 1.5f * s) : fminf(x[i], -1.5f * s);
    for (int64_t i = 0; i < n; i += 32) if (fabsf(x[i]) > 1e4f) x[i] = copysignf(1e4f, x[i]);
}

static void check_round_trip(void)
{
    const int64_t n = 4096, nrows = 16;
    float *x = malloc(sizeof(float) * n * nrows), *y = malloc(sizeof(float) * n * nrows);
    float *y2 = malloc(sizeof(float) * n);
    uint8_t *q = malloc(n * nrows * 4), *q1 = malloc(n * 4);
    /* unit importance for the types that refuse to quantize without one */
    float *ones = malloc(sizeof(float) * n);
    for (int64_t i = 0; i < n; i++)
        ones[i] = 1.0f;
    struct rng r = {7};
    for (int t = 0; t < QFS_TYPE_COUNT; t++) {
        const struct qfs_type_info *ti = qfs_type_info((enum qfs_type)t);
        if (ti == NULL)
            continue;
        const size_t rs = qfs_row_size((enum qfs_type)t, n);
        const float *imx = ti->imatrix_required ? ones : NULL;
        double worst = 0;
        for (int which = 0; which < 24; which++) {
            for (int64_t row = 0; row < nrows; row++)
                fill_bounded(&r, which, x + row * n, n);
            CHECK(qfs_quantize_rows((enum qfs_type)t, x, q, nrows, n, imx) == rs * nrows,
                  "%s: bytes written", ti->name);
            for (int64_t row = 0; row < nrows; row++) {
                ti->dequantize_row(q + row * rs, y + row * n, n);
                /* rows are independent: one row alone gives the same bytes */
                ti->quantize_row(x + row * n, q1, n, imx);
                CHECK(memcmp(q1, q + row * rs, rs) == 0, "%s: row %" PRId64 " differs alone",
                      ti->name, row);
            }
            for (int64_t b = 0; b < n * nrows; b += ti->blck) {
                float amax = 0, err = 0;
                for (int64_t i = b; i < b + ti->blck; i++) {
                    amax = fmaxf(amax, fabsf(x[i]));
                    err = fmaxf(err, fabsf(x[i] - y[i]));
                }
                if (amax < 1.0f)
                    continue; /* outside the promised range (only 1-element blocks) */
                const double rel = err / amax;
                if (rel > worst)
                    worst = rel;
                if (!(err <= ti->max_err * amax)) {
                    CHECK(0, "%s: block %" PRId64 " (dist %d): error %g > %g * amax %g", ti->name,
                          b / ti->blck, which, err, ti->max_err, amax);
                    break;
                }
            }
        }
        /* all-zero input gives zeros back */
        memset(x, 0, sizeof(float) * n);
        ti->quantize_row(x, q1, n, NULL);
        ti->dequantize_row(q1, y2, n);
        for (int64_t i = 0; i < n; i++)
            if (y2[i] != 0.0f) {
                CHECK(0, "%s: zero row comes back as %g at %" PRId64, ti->name, y2[i], i);
                break;
            }
        CHECK(!ti->imatrix_required || qfs_quantize_rows((enum qfs_type)t, x, q, 1, n, NULL) == 0,
              "%s: quantized without the imatrix it requires", ti->name);
        /* imatrix: accepted only where the result is defined */
        const size_t with_imatrix = qfs_quantize_rows((enum qfs_type)t, x, q, 1, n, y2);
        CHECK(with_imatrix == (ti->imatrix_ok ? rs : 0), "%s: imatrix gives %zu", ti->name,
              with_imatrix);
        if (ti->blck > 1)
            CHECK(qfs_quantize_rows((enum qfs_type)t, x, q, 1, ti->blck + 1, NULL) == 0,
                  "%s: misaligned row accepted", ti->name);
        printf("%-5s worst |x - deq(q(x))| / block amax = %.6f (bound %.6f)\n", ti->name, worst,
               (double)ti->max_err);
    }
    CHECK(qfs_quantize_rows((enum qfs_type)5, x, q, 1, 32, NULL) == 0, "unknown type accepted");
    free(x);
    free(y);
    free(y2);
    free(q);
    free(q1);
    free(ones);
}

int main(void)
{
    check_table();
    check_round_trip();
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("PASS\n");
    return 0;
}
