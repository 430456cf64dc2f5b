/* Out of memory in the kernels is an error return, never an abort: the grid
 * i-quants' one-time lattice tables (quant_iq.c) fail with -ENOMEM through
 * qfs_type_info.prepare, qfs_quantize_rows (0 bytes) and qfs_quantize_rows_cpu
 * (-ENOMEM, what the daemon's read path returns), leave nothing half built, and
 * are built on a later call with the same bytes as an undisturbed build.
 *
 * malloc is interposed (this executable's definition wins over libc's for the
 * static core library): armed, it fails every allocation of at least `fail_min`
 * bytes, or exactly the `fail_nth`-th one.  Exit 77 under AddressSanitizer, whose
 * own malloc cannot be interposed this way. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/dispatch.h"
#include "kernels/qtypes.h"

#ifndef __SANITIZE_ADDRESS__
extern void *__libc_malloc(size_t n);

static atomic_bool armed;
static atomic_size_t fail_min; /* 0: by count */
static atomic_int fail_nth, seen;

void *malloc(size_t n)
{
    if (atomic_load(&armed)) {
        const size_t min = atomic_load(&fail_min);
        if (min ? n >= min : atomic_fetch_add(&seen, 1) + 1 == atomic_load(&fail_nth))
            return NULL;
    }
    return __libc_malloc(n);
}

static void arm_min(size_t min)
{
    atomic_store(&fail_min, min);
    atomic_store(&armed, true);
}

static void arm_nth(int nth)
{
    atomic_store(&fail_min, 0);
    atomic_store(&seen, 0);
    atomic_store(&fail_nth, nth);
    atomic_store(&armed, true);
}

static void disarm(void) { atomic_store(&armed, false); }

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

enum { N = 512, ROWS = 3 };

static void fill(float *x, float *w)
{
    unsigned s = 7;
    for (int i = 0; i < N * ROWS; i++) {
        s = s * 1103515245u + 12345u;
        x[i] = (float)((int)(s >> 9) % 2000 - 1000) / 300.0f;
    }
    for (int i = 0; i < N; i++)
        w[i] = 0.25f + (float)(i % 17) / 8.0f;
}

/* Every allocation of the lattice build fails in turn (the 1st, the 2nd, ...):
 * each is -ENOMEM with nothing kept, until the build needs no more. */
static void each_allocation(enum qfs_type t)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    int nth = 1, rc = -1;
    for (; nth < 64; nth++) {
        arm_nth(nth);
        rc = ti->prepare();
        disarm();
        if (rc == 0)
            break;
        CHECK(rc == -ENOMEM, "%s: allocation %d failing gives %d", ti->name, nth, rc);
    }
    CHECK(rc == 0 && nth > 2, "%s: built after %d failing allocations (rc %d)", ti->name,
          nth - 1, rc);
    CHECK(ti->prepare() == 0, "%s: prepare after the build", ti->name);
}

/* The paths the daemon takes: qfs_quantize_rows_cpu returns -ENOMEM (not the
 * -EINVAL of a refused type) while the tables cannot be allocated, then the
 * same bytes as qfs_quantize_rows. */
static void rows_paths(enum qfs_type t, const float *x, const float *w)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    const size_t rs = qfs_row_size(t, N);
    unsigned char *a = calloc(ROWS, rs), *b = calloc(ROWS, rs);
    uint16_t *f16 = calloc((size_t)N * ROWS, sizeof *f16);
    const uint8_t *rows[ROWS];
    for (int i = 0; i < N * ROWS; i++)
        f16[i] = qfs_f32_to_f16(x[i]);
    for (int r = 0; r < ROWS; r++)
        rows[r] = (const uint8_t *)(f16 + (size_t)r * N);
    float *xr = malloc(sizeof(float) * N * ROWS); /* the floats rows_cpu will see */
    qfs_to_f32(QFS_DT_F16, f16, xr, (int64_t)N * ROWS);

    arm_min(16384); /* the lattice's map and neighbour lists; not rows_cpu's 6 KiB */
    CHECK(qfs_quantize_rows(t, xr, a, ROWS, N, w) == 0, "%s: rows without tables", ti->name);
    const int rc = qfs_quantize_rows_cpu(t, QFS_DT_F16, rows, ROWS, N, w, a);
    disarm();
    CHECK(rc == -ENOMEM, "%s: qfs_quantize_rows_cpu without memory gives %d", ti->name, rc);

    CHECK(qfs_quantize_rows_cpu(t, QFS_DT_F16, rows, ROWS, N, w, a) == 0, "%s: rows_cpu",
          ti->name);
    CHECK(qfs_quantize_rows(t, xr, b, ROWS, N, w) == rs * ROWS, "%s: rows", ti->name);
    CHECK(memcmp(a, b, rs * ROWS) == 0, "%s: bytes differ between the paths", ti->name);
    free(a), free(b), free(f16), free(xr);
}
#endif

int main(void)
{
#ifdef __SANITIZE_ADDRESS__
    printf("skip: malloc cannot be interposed under AddressSanitizer\n");
    return 77;
#else
    float *x = malloc(sizeof(float) * N * ROWS), *w = malloc(sizeof(float) * N);
    fill(x, w);
    int prepared = 0;
    for (int t = 0; t < QFS_TYPE_COUNT; t++) {
        const struct qfs_type_info *ti = qfs_type_info((enum qfs_type)t);
        prepared += ti && ti->prepare;
    }
    CHECK(prepared == 7, "%d types with one-time tables, 7 expected", prepared);
    each_allocation(QFS_TYPE_IQ2_XXS);
    each_allocation(QFS_TYPE_IQ3_XXS);
    rows_paths(QFS_TYPE_IQ3_S, x, w);
    rows_paths(QFS_TYPE_IQ2_S, x, w);
    rows_paths(QFS_TYPE_IQ1_M, x, w);
    free(x), free(w);
    if (failures)
        fprintf(stderr, "%d failure(s)\n", failures);
    else
        printf("ok   nomem\n");
    return failures ? 1 : 0;
#endif
}
