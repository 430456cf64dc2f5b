/* GPU bytes == CPU bytes (suite 'gpu'; exit 77 without a CUDA device).
 *
 *   1. the fixtures (../shared/models/babyllama-105, tinyllama-256) through the
 *      model/vfile API: every chunk of every tensor of every virtual file, the
 *      GPU path (qfs_quantize_rows_gpu) against the CPU path (qfs_quantize_rows_cpu);
 *   2. random tensors of Llama-3-8B sizes (4096x4096, 14336x4096, 4096x14336,
 *      128256x4096; BF16 and F16), every type of the GPU path, with and without
 *      an importance matrix, in slabs of 8192 rows (each several launches).
 * QFS_GPU_TEST_MAX_ROWS=N caps the rows of part 2 (a quick run).  Prints the
 * GPU and CPU (all cores) times of each case. */
#include <errno.h>
#include <pthread.h>
#include <time.h>
#include <unistd.h>

#include "codecs/source/model.h"
#include "kernels/cuda/quant_dev.h"
#include "kernels/dispatch.h"
#include "gpu_testutil.h"

static int failures, compared, unsupported;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* ---- the CPU reference on every core ---- */
struct cpu_job {
    enum qfs_type t;
    enum qfs_dtype dt;
    const uint8_t *const *rows;
    int64_t r0, nr, n;
    const float *imatrix;
    uint8_t *dst;
    int rc;
};

static void *cpu_worker(void *arg)
{
    struct cpu_job *j = arg;
    j->rc = qfs_quantize_rows_cpu(j->t, j->dt, j->rows + j->r0, j->nr, j->n, j->imatrix,
                                  j->dst + (size_t)j->r0 * qfs_row_size(j->t, j->n));
    return NULL;
}

static int cpu_parallel(enum qfs_type t, enum qfs_dtype dt, const uint8_t *const *rows,
                        int64_t nrows, int64_t n, const float *imatrix, uint8_t *dst)
{
    long nth = sysconf(_SC_NPROCESSORS_ONLN);
    if (nth < 1)
        nth = 1;
    if (nth > 64)
        nth = 64;
    if (nth > nrows)
        nth = (long)nrows;
    pthread_t th[64];
    struct cpu_job jobs[64];
    int rc = 0;
    for (long i = 0; i < nth; i++) {
        jobs[i] = (struct cpu_job){t, dt, rows, nrows * i / nth, nrows * (i + 1) / nth - nrows * i / nth,
                                   n, imatrix, dst, 0};
        pthread_create(&th[i], NULL, cpu_worker, &jobs[i]);
    }
    for (long i = 0; i < nth; i++) {
        pthread_join(th[i], NULL);
        if (jobs[i].rc)
            rc = jobs[i].rc;
    }
    return rc;
}

/* GPU vs CPU on one set of rows; what: for the message. */
static void compare(const char *what, enum qfs_type t, enum qfs_dtype dt,
                    const uint8_t *const *rows, int64_t nrows, int64_t n, const float *imatrix,
                    double *t_gpu, double *t_cpu, int parallel)
{
    const size_t bytes = (size_t)nrows * qfs_row_size(t, n);
    uint8_t *ref = malloc(bytes), *got = malloc(bytes);
    if (!ref || !got) {
        printf("FAIL: %s: out of memory\n", what);
        failures++;
        goto out;
    }
    memset(got, 0x5a, bytes);
    double t0 = now();
    const int grc = qfs_quantize_rows_gpu(t, dt, rows, nrows, n, imatrix, got);
    double t1 = now();
    if (grc == -ENOTSUP) {
        unsupported++;
        goto out;
    }
    const int crc = parallel ? cpu_parallel(t, dt, rows, nrows, n, imatrix, ref)
                             : qfs_quantize_rows_cpu(t, dt, rows, nrows, n, imatrix, ref);
    double t2 = now();
    if (t_gpu)
        *t_gpu += t1 - t0, *t_cpu += t2 - t1;
    if (grc != crc) {
        printf("FAIL: %s: GPU path %d, CPU path %d (%s)\n", what, grc, crc,
               qfs_dev_note() ? qfs_dev_note() : "");
        failures++;
    } else if (grc == 0) {
        const int64_t at = tg_first_diff(ref, got, bytes);
        compared++;
        if (at >= 0) {
            const size_t rs = qfs_row_size(t, n);
            printf("FAIL: %s: bytes differ, first at %lld (row %lld, byte %lld of the row)\n",
                   what, (long long)at, (long long)(at / (int64_t)rs),
                   (long long)(at % (int64_t)rs));
            failures++;
        }
    }
out:
    free(ref);
    free(got);
}

static void fixtures(const char *shared)
{
    static const char *const names[] = {"babyllama-105", "tinyllama-256"};
    for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/models/%s", shared, names[k]);
        struct qfs_model *m = NULL;
        if (qfs_model_open(dir, NULL, &m) < 0) {
            printf("FAIL: %s: cannot open\n", dir);
            failures++;
            continue;
        }
        const int before = compared;
        for (int f = 0; f < m->n_files; f++) {
            const struct qfs_vfile *vf = m->files[f];
            for (int i = 0; i < vf->n_tensors; i++) {
                const struct qfs_vtensor *t = &vf->tensors[i];
                if (t->ops || !t->vs || t->vs->add != 0.0f ||
                    qfs_row_size(t->type, t->row_elems) == 0)
                    continue; /* other codecs (AWQ ...), shifted norms, copies */
                for (int64_t c = 0; c < t->n_chunks; c++) {
                    int64_t row0;
                    const int64_t nr = qfs_vtensor_chunk_rows(t, c, &row0);
                    const uint8_t **rows = malloc((size_t)nr * sizeof *rows);
                    const float *im;
                    qfs_vtensor_src_rows(t, c, rows, &im);
                    char what[512];
                    snprintf(what, sizeof what, "%s %s chunk %lld (%s)", vf->name, t->name,
                             (long long)c, qfs_type_info(t->type)->name);
                    compare(what, t->type, t->vs->dtype, rows, nr, t->row_elems, im,
                            NULL, NULL, 0);
                    free(rows);
                }
            }
        }
        printf("%s: %d chunks compared\n", names[k], compared - before);
        qfs_model_close(m);
    }
}

static void random_tensors(int64_t max_rows)
{
    static const struct { int64_t nrows, n; enum qfs_dtype dt; float tiny; } shapes[] = {
        /* edge case first: blocks of ~1e-39 (BF16 subnormals), where 1/d overflows
         * to inf; the CPU's float->int conversions then give INT_MIN (x86), CUDA's
         * saturate: a difference here points at such a cast in a block function */
        {512, 4096, QFS_DT_BF16, 5e-38f},
        {4096, 4096, QFS_DT_F16, 0},    /* attn_q / attn_output */
        {14336, 4096, QFS_DT_BF16, 0},  /* ffn_gate / ffn_up */
        {4096, 14336, QFS_DT_BF16, 0},  /* ffn_down */
        {128256, 4096, QFS_DT_BF16, 0}, /* token_embd / output */
    };
    const int64_t slab = 8192;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const int64_t nrows = shapes[s].nrows < max_rows ? shapes[s].nrows : max_rows, n = shapes[s].n;
        const enum qfs_dtype dt = shapes[s].dt;
        tg_tiny = shapes[s].tiny ? shapes[s].tiny : 1e-28f;
        float *imat = tg_imatrix(n);
        const int64_t srows = nrows < slab ? nrows : slab;
        uint8_t *src = tg_tensor(dt, srows, n); /* one slab of data, varied per slab below */
        const uint8_t **rows = tg_rows(src, dt, srows, n);
#define ONE(T, t, s_)                                                                        \
    for (int w = 0; w < 2; w++) {                                                            \
        double tg = 0, tc = 0;                                                               \
        for (int64_t r0 = 0; r0 < nrows; r0 += slab) {                                       \
            const int64_t nr = nrows - r0 < slab ? nrows - r0 : slab;                        \
            char what[256];                                                                  \
            snprintf(what, sizeof what, "%s %lldx%lld %s%s%s rows %lld..", #T,               \
                     (long long)shapes[s].nrows, (long long)n, tg_dtype_name[dt],            \
                     w ? " +imatrix" : "", shapes[s].tiny ? " (tiny blocks)" : "",            \
                     (long long)r0);                                                         \
            /* a different slab each time: rotate the row table */                           \
            const uint8_t **rr = malloc((size_t)nr * sizeof *rr);                            \
            for (int64_t r = 0; r < nr; r++)                                                 \
                rr[r] = rows[(r + r0 / slab * 7) % srows];                                   \
            compare(what, QFS_TYPE_##T, dt, rr, nr, n, w ? imat : NULL, &tg, &tc, 1);        \
            free(rr);                                                                        \
        }                                                                                    \
        printf("%-7s %6lldx%-6lld %-4s %-8s GPU %7.3f s  CPU %7.3f s (%.1fx)\n", #T,         \
               (long long)nrows, (long long)n, tg_dtype_name[dt], w ? "imatrix" : "",         \
               tg, tc, tg > 0 ? tc / tg : 0.0);                                              \
        fflush(stdout);                                                                      \
    }
        QFS_DEV_TYPES(ONE)
#undef ONE
        free(rows);
        free(src);
        free(imat);
    }
}

int main(void)
{
    const struct qfs_dev_opts o = {.mode = QFS_DEV_CUDA, .index = -1, .mem_max = 2ull << 30};
    qfs_dev_init(&o);
    if (strncmp(qfs_dev_name(), "cuda:", 5) != 0) {
        printf("skip: no CUDA device: %s\n", qfs_dev_note() ? qfs_dev_note() : "?");
        return 77;
    }
    printf("device %s\n", qfs_dev_name());
    const char *shared = getenv("QFS_SHARED");
    if (shared && *shared)
        fixtures(shared);
    else
        printf("note: QFS_SHARED not set, fixtures skipped\n");
    const char *mr = getenv("QFS_GPU_TEST_MAX_ROWS");
    random_tensors(mr && *mr ? atoll(mr) : INT64_MAX);
    printf("%d comparisons, %d cases the GPU path does not take (CPU only), %d failure(s)%s%s\n",
           compared, unsupported, failures, qfs_dev_note() ? "; note: " : "",
           qfs_dev_note() ? qfs_dev_note() : "");
    qfs_dev_shutdown();
    return failures ? 1 : 0;
}
