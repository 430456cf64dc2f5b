/* The GPU path without a GPU (suite 'kernels'): every "thread" of the launches
 * kernels/dispatch.c makes (widen, row sigma2, one block per thread; quant_dev.h)
 * runs here on the CPU, with the launch layout the dispatcher uses, and must give
 * the bytes of qfs_quantize_rows_cpu, for every type of the GPU path, F16/BF16/F32
 * sources, with and without an importance matrix.  What only a GPU can check
 * (nvcc's code generation) is tests/gpu/test_gpu.c. */
#include <errno.h>

#include "kernels/cuda/quant_dev.h"
#include "kernels/dispatch.h"
#include "gpu_testutil.h"

static int failures;

/* One launch as the device would run it, thread by thread. */
static void emulate(enum qfs_type t, void (*block)(const struct qfs_dev_args *, int64_t),
                    int needs_sigma2, enum qfs_dtype dt, const uint8_t *src, int64_t nrows,
                    int64_t n, const float *imatrix, uint8_t *out)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    float *x = malloc((size_t)(nrows * n) * sizeof *x);
    float *sigma2 = malloc((size_t)nrows * sizeof *sigma2);
    for (int64_t i = 0; i < nrows * n; i++) /* qfs_k_widen */
        x[i] = qfs_dev_widen((int)dt, src, i);
    struct qfs_dev_args a = {.x = x, .y = out, .imatrix = imatrix, .sigma2 = NULL,
                             .nblocks = nrows * n / ti->blck, .bpr = n / ti->blck,
                             .nrows = nrows};
    if (imatrix && needs_sigma2) { /* qfs_k_sigma2 */
        a.sigma2 = sigma2;
        for (int64_t r = 0; r < nrows; r++)
            qfs_dev_row_sigma2(&a, r, n);
    }
    for (int64_t i = a.nblocks - 1; i >= 0; i--) /* any order: threads are independent */
        block(&a, i);
    free(x);
    free(sigma2);
}

int main(void)
{
    const int64_t nrows = 6, n = 2048;
    float *imat = tg_imatrix(n);
    int tested = 0;
    for (int d = QFS_DT_F32; d <= QFS_DT_BF16; d++) {
        const enum qfs_dtype dt = (enum qfs_dtype)d;
        uint8_t *src = tg_tensor(dt, nrows, n);
        const uint8_t **rows = tg_rows(src, dt, nrows, n);
#define ONE(T, t, s)                                                                         \
    for (int w = 0; w < 2; w++) {                                                            \
        const enum qfs_type ty = QFS_TYPE_##T;                                               \
        const size_t bytes = (size_t)nrows * qfs_row_size(ty, n);                            \
        uint8_t *ref = malloc(bytes), *got = malloc(bytes);                                  \
        memset(got, 0xa5, bytes);                                                            \
        const float *im = w ? imat : NULL;                                                   \
        if (qfs_quantize_rows_cpu(ty, dt, rows, nrows, n, im, ref) != 0) {                   \
            printf("FAIL: %s from %s%s: CPU path refused\n", #T, tg_dtype_name[d],           \
                   w ? " +imatrix" : "");                                                    \
            failures++;                                                                      \
        } else {                                                                             \
            emulate(ty, qfs_dev_block_##t, s, dt, src, nrows, n, im, got);                   \
            const int64_t at = tg_first_diff(ref, got, bytes);                               \
            if (at >= 0) {                                                                   \
                printf("FAIL: %s from %s%s: first difference at byte %lld\n", #T,            \
                       tg_dtype_name[d], w ? " +imatrix" : "", (long long)at);               \
                failures++;                                                                  \
            }                                                                                \
            tested++;                                                                        \
        }                                                                                    \
        free(ref);                                                                           \
        free(got);                                                                           \
    }
        QFS_DEV_TYPES(ONE)
#undef ONE
        free(rows);
        free(src);
    }
    free(imat);
    /* without a device the GPU path says so, and the dispatcher uses the CPU */
    const struct qfs_dev_opts cpu = {.mode = QFS_DEV_CPU, .index = -1};
    qfs_dev_init(&cpu);
    uint8_t one[2 * 256] = {0}, out[144];
    const uint8_t *r1[1] = {one};
    if (qfs_quantize_rows_gpu(QFS_TYPE_Q4_K, QFS_DT_F16, r1, 1, 256, NULL, out) != -ENODEV) {
        printf("FAIL: GPU path without a device is not -ENODEV\n");
        failures++;
    }
    if (qfs_quantize_rows_dev(QFS_TYPE_Q4_K, QFS_DT_F16, r1, 1, 256, NULL, out) != 0 ||
        strcmp(qfs_dev_name(), "cpu") != 0) {
        printf("FAIL: dispatcher without a device\n");
        failures++;
    }
    qfs_dev_shutdown();
    printf("%d launches emulated, %d failure(s) (CUDA kernels %sbuilt)\n", tested, failures,
           qfs_dev_built_with_cuda() ? "" : "not ");
    return failures ? 1 : 0;
}
