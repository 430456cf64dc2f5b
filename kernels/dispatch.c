/* GPU or CPU for each chunk (dispatch.h).
 *
 * The CUDA driver API is reached through dlopen("libcuda.so.1"): the binary has
 * no CUDA dependency and starts on any host.  The kernels are the fatbin that
 * kernels/cuda/meson.build embeds (qfs_cuda_fatbin; empty when built without
 * CUDA), loaded with cuModuleLoadData into the device's primary context.
 *
 * Work goes through slots: each has a stream, pinned host staging buffers and
 * device buffers for SLOT_ELEMS elements.  A call takes a free slot (waiting
 * when all are busy), gathers the source rows into pinned memory, and runs
 * H2D copy -> widen -> (row sigma2) -> quantize -> D2H copy on the slot's
 * stream, in pieces of at most SLOT_ELEMS elements; concurrent callers (the
 * read path and the prefetch workers) use different slots, so their copies
 * and kernels overlap on the device. */
#include "kernels/dispatch.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/cuda/quant_dev.h"
#include "util/log.h"

/* From kernels/cuda (quant_fatbin.c, or nofatbin.c without CUDA). */
extern const unsigned char qfs_cuda_fatbin[];
extern const size_t qfs_cuda_fatbin_size;

#define MIN_GPU_ELEMS (1 << 16)      /* smaller chunks stay on the CPU */
#define SLOT_ELEMS ((int64_t)4 << 20) /* elements of one piece */
#define MAX_IMAT_ELEMS (1 << 18)     /* longest row with an imatrix on the GPU */
#define MAX_SLOTS 8
#define THREADS 128

/* ---- the driver API, by dlsym ---------------------------------------------- */

typedef int CUresult;
typedef int CUdevice;
typedef struct CUctx_st *CUcontext;
typedef struct CUmod_st *CUmodule;
typedef struct CUfunc_st *CUfunction;
typedef struct CUstream_st *CUstream;
typedef unsigned long long CUdeviceptr;

#define CU_FUNCS(X)                                                                          \
    X(cuInit, "cuInit", (unsigned))                                                          \
    X(cuDriverGetVersion, "cuDriverGetVersion", (int *))                                     \
    X(cuDeviceGetCount, "cuDeviceGetCount", (int *))                                         \
    X(cuDeviceGet, "cuDeviceGet", (CUdevice *, int))                                         \
    X(cuDeviceGetName, "cuDeviceGetName", (char *, int, CUdevice))                           \
    X(cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", (CUcontext *, CUdevice))         \
    X(cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", (CUdevice))                 \
    X(cuCtxSetCurrent, "cuCtxSetCurrent", (CUcontext))                                       \
    X(cuMemGetInfo, "cuMemGetInfo_v2", (size_t *, size_t *))                                 \
    X(cuModuleLoadData, "cuModuleLoadData", (CUmodule *, const void *))                      \
    X(cuModuleUnload, "cuModuleUnload", (CUmodule))                                          \
    X(cuModuleGetFunction, "cuModuleGetFunction", (CUfunction *, CUmodule, const char *))    \
    X(cuMemAlloc, "cuMemAlloc_v2", (CUdeviceptr *, size_t))                                  \
    X(cuMemFree, "cuMemFree_v2", (CUdeviceptr))                                              \
    X(cuMemHostAlloc, "cuMemHostAlloc", (void **, size_t, unsigned))                         \
    X(cuMemFreeHost, "cuMemFreeHost", (void *))                                              \
    X(cuStreamCreate, "cuStreamCreate", (CUstream *, unsigned))                              \
    X(cuStreamDestroy, "cuStreamDestroy_v2", (CUstream))                                     \
    X(cuStreamSynchronize, "cuStreamSynchronize", (CUstream))                                \
    X(cuMemcpyHtoDAsync, "cuMemcpyHtoDAsync_v2", (CUdeviceptr, const void *, size_t, CUstream)) \
    X(cuMemcpyDtoHAsync, "cuMemcpyDtoHAsync_v2", (void *, CUdeviceptr, size_t, CUstream))   \
    X(cuLaunchKernel, "cuLaunchKernel",                                                      \
      (CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,     \
       CUstream, void **, void **))                                                          \
    X(cuGetErrorString, "cuGetErrorString", (CUresult, const char **))

struct cu_api {
#define X(f, sym, args) CUresult(*f) args;
    CU_FUNCS(X)
#undef X
};

/* ---- state --------------------------------------------------------------------- */

struct slot {
    CUstream stream;
    uint8_t *h_in;  /* pinned: SLOT_ELEMS * 4 bytes of gathered source rows */
    uint8_t *h_out; /* pinned: SLOT_ELEMS * 4 bytes of output rows */
    float *h_imat;  /* pinned: MAX_IMAT_ELEMS weights */
    CUdeviceptr d_in, d_f32, d_out, d_imat, d_sigma2;
    int busy;
};

enum { K_WIDEN, K_SIGMA2, K_TYPES };

static struct {
    void *lib;
    struct cu_api cu;
    CUdevice dev;
    CUcontext ctx;
    CUmodule mod;
    CUfunction kern[K_TYPES + QFS_TYPE_COUNT]; /* widen, sigma2, then one per qfs_type */
    struct slot slots[MAX_SLOTS];
    int n_slots;
    pthread_mutex_t lock; /* protects slots[].busy; slots_free waits on it */
    pthread_cond_t slots_free;
    _Atomic int usable;   /* 1 while the GPU path may be used */
    int inited;
    char name[160];
    char note[320];
    _Atomic uint64_t gpu_calls, gpu_rows, cpu_calls, fallbacks;
} g = {.lock = PTHREAD_MUTEX_INITIALIZER, .slots_free = PTHREAD_COND_INITIALIZER,
       .name = "cpu"};

int qfs_dev_built_with_cuda(void) { return qfs_cuda_fatbin_size > 0; }
const char *qfs_dev_name(void) { return g.name; }
const char *qfs_dev_note(void) { return g.note[0] ? g.note : NULL; }

void qfs_dev_get_stats(struct qfs_dev_stats *s)
{
    s->gpu_calls = atomic_load(&g.gpu_calls);
    s->gpu_rows = atomic_load(&g.gpu_rows);
    s->cpu_calls = atomic_load(&g.cpu_calls);
    s->fallbacks = atomic_load(&g.fallbacks);
}

int qfs_dev_parse(const char *s, struct qfs_dev_opts *o)
{
    if (!strcmp(s, "auto")) {
        o->mode = QFS_DEV_AUTO, o->index = -1;
    } else if (!strcmp(s, "cpu")) {
        o->mode = QFS_DEV_CPU, o->index = -1;
    } else if (!strcmp(s, "cuda")) {
        o->mode = QFS_DEV_CUDA, o->index = -1;
    } else if (!strncmp(s, "cuda:", 5) && s[5] >= '0' && s[5] <= '9') {
        char *end;
        const long v = strtol(s + 5, &end, 10);
        if (*end || v < 0 || v > 1023)
            return -EINVAL;
        o->mode = QFS_DEV_CUDA, o->index = (int)v;
    } else {
        return -EINVAL;
    }
    return 0;
}

static const char *cu_err(CUresult r)
{
    const char *s = NULL;
    if (g.cu.cuGetErrorString == NULL || g.cu.cuGetErrorString(r, &s) != 0 || s == NULL)
        return "unknown CUDA error";
    return s;
}

/* Give the GPU up after an error: one log line, the CPU from now on.  The
 * device's buffers stay allocated until qfs_dev_shutdown (a call in flight on
 * another slot may still use them). */
static void give_up(const char *what, CUresult r)
{
    int expected = 1;
    atomic_fetch_add(&g.fallbacks, 1);
    if (!atomic_compare_exchange_strong(&g.usable, &expected, 0))
        return;
    pthread_mutex_lock(&g.lock);
    snprintf(g.note, sizeof g.note, "CUDA error in %s: %s (%d); quantizing on the CPU from now on",
             what, cu_err(r), r);
    pthread_mutex_unlock(&g.lock);
    qfs_err("device %s: %s", g.name, g.note);
}

/* ---- set-up ---------------------------------------------------------------------- */

static void free_slot(struct slot *s)
{
    {
        if (s->stream)
            g.cu.cuStreamDestroy(s->stream);
        if (s->h_in)
            g.cu.cuMemFreeHost(s->h_in);
        if (s->h_out)
            g.cu.cuMemFreeHost(s->h_out);
        if (s->h_imat)
            g.cu.cuMemFreeHost(s->h_imat);
        CUdeviceptr d[] = {s->d_in, s->d_f32, s->d_out, s->d_imat, s->d_sigma2};
        for (size_t k = 0; k < sizeof d / sizeof d[0]; k++)
            if (d[k])
                g.cu.cuMemFree(d[k]);
        memset(s, 0, sizeof *s);
    }
}

static void free_slots(void)
{
    for (int i = 0; i < g.n_slots; i++)
        free_slot(&g.slots[i]);
    g.n_slots = 0;
}

/* Device bytes of one slot. */
static uint64_t slot_dev_bytes(void)
{
    return (uint64_t)SLOT_ELEMS * 4 * 3 + (uint64_t)MAX_IMAT_ELEMS * 4 +
           (uint64_t)(SLOT_ELEMS / 32 + 1) * 4;
}

static CUresult make_slot(struct slot *s)
{
    CUresult r;
    const size_t big = (size_t)SLOT_ELEMS * 4;
    if ((r = g.cu.cuStreamCreate(&s->stream, 1 /* CU_STREAM_NON_BLOCKING */)) ||
        (r = g.cu.cuMemHostAlloc((void **)&s->h_in, big, 0)) ||
        (r = g.cu.cuMemHostAlloc((void **)&s->h_out, big, 0)) ||
        (r = g.cu.cuMemHostAlloc((void **)&s->h_imat, (size_t)MAX_IMAT_ELEMS * 4, 0)) ||
        (r = g.cu.cuMemAlloc(&s->d_in, big)) || (r = g.cu.cuMemAlloc(&s->d_f32, big)) ||
        (r = g.cu.cuMemAlloc(&s->d_out, big)) ||
        (r = g.cu.cuMemAlloc(&s->d_imat, (size_t)MAX_IMAT_ELEMS * 4)) ||
        (r = g.cu.cuMemAlloc(&s->d_sigma2, (size_t)(SLOT_ELEMS / 32 + 1) * 4)))
        return r;
    return 0;
}

/* Probe and set up; on failure *why gets the reason and 0 is returned. */
static int cuda_open(const struct qfs_dev_opts *o, char *why, size_t why_len)
{
    CUresult r;
    const char *step = "";
    if (!qfs_dev_built_with_cuda()) {
        snprintf(why, why_len, "built without CUDA (-Dcuda=disabled or no nvcc at build time)");
        return 0;
    }
    g.lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!g.lib) {
        const char *e = dlerror();
        snprintf(why, why_len, "no CUDA driver (%s)", e ? e : "libcuda.so.1 not found");
        return 0;
    }
#define X(f, sym, args)                                                                      \
    if (!(*(void **)&g.cu.f = dlsym(g.lib, sym))) {                                          \
        snprintf(why, why_len, "CUDA driver too old: no %s in libcuda.so.1", sym);           \
        goto fail;                                                                           \
    }
    CU_FUNCS(X)
#undef X
    int count = 0, version = 0;
    if ((r = g.cu.cuInit(0)) != 0) {
        snprintf(why, why_len, "no usable CUDA device (cuInit: %s)", cu_err(r));
        goto fail;
    }
    g.cu.cuDriverGetVersion(&version);
    if ((r = g.cu.cuDeviceGetCount(&count)) != 0 || count == 0) {
        snprintf(why, why_len, "no CUDA device (%s)", r ? cu_err(r) : "count 0");
        goto fail;
    }
    const int idx = o->index < 0 ? 0 : o->index;
    if (idx >= count) {
        snprintf(why, why_len, "cuda:%d asked for, but the host has %d CUDA device%s", idx,
                 count, count == 1 ? "" : "s");
        goto fail;
    }
    char dname[128] = "?";
    if ((r = g.cu.cuDeviceGet(&g.dev, idx)) != 0 ||
        (r = g.cu.cuDeviceGetName(dname, (int)sizeof dname, g.dev)) != 0) {
        step = "cuDeviceGet";
        goto fail_cu;
    }
    if ((r = g.cu.cuDevicePrimaryCtxRetain(&g.ctx, g.dev)) != 0) {
        step = "cuDevicePrimaryCtxRetain";
        goto fail_cu;
    }
    if ((r = g.cu.cuCtxSetCurrent(g.ctx)) != 0) {
        step = "cuCtxSetCurrent";
        goto fail_ctx;
    }
    /* a device without a kernel image for its architecture fails here (PTX JIT
     * covers newer ones) */
    if ((r = g.cu.cuModuleLoadData(&g.mod, qfs_cuda_fatbin)) != 0) {
        step = "cuModuleLoadData";
        goto fail_ctx;
    }
    static const char *const fixed[K_TYPES] = {"qfs_k_widen", "qfs_k_sigma2"};
    for (int k = 0; k < K_TYPES; k++)
        if ((r = g.cu.cuModuleGetFunction(&g.kern[k], g.mod, fixed[k])) != 0) {
            step = fixed[k];
            goto fail_mod;
        }
#define GETK(T, t, s)                                                                        \
    if ((r = g.cu.cuModuleGetFunction(&g.kern[K_TYPES + QFS_TYPE_##T], g.mod, "qfs_k_" #t))) { \
        step = "qfs_k_" #t;                                                                  \
        goto fail_mod;                                                                       \
    }
    QFS_DEV_TYPES(GETK)
#undef GETK
    /* slots within mem_max and what the device has free */
    size_t mfree = 0, mtotal = 0;
    g.cu.cuMemGetInfo(&mfree, &mtotal);
    uint64_t budget = o->mem_max ? o->mem_max : (1ull << 30);
    if (mfree && budget > mfree / 2)
        budget = mfree / 2;
    int want = (int)(budget / slot_dev_bytes());
    if (want > MAX_SLOTS)
        want = MAX_SLOTS;
    if (want < 1) {
        snprintf(why, why_len, "gpu_mem=%llu is below one staging slot (%llu bytes)",
                 (unsigned long long)budget, (unsigned long long)slot_dev_bytes());
        goto fail_mod;
    }
    for (g.n_slots = 0; g.n_slots < want; g.n_slots++)
        if ((r = make_slot(&g.slots[g.n_slots])) != 0) {
            free_slot(&g.slots[g.n_slots]); /* keep the complete ones */
            break;
        }
    if (g.n_slots == 0) {
        step = "allocating a staging slot";
        goto fail_mod;
    }
    snprintf(g.name, sizeof g.name, "cuda:%d %s", idx, dname);
    qfs_info("device %s (driver %d.%d, %zu MiB free of %zu): %d streams of %lld elements, "
             "%llu MiB device memory", g.name, version / 1000, version % 1000 / 10,
             mfree >> 20, mtotal >> 20, g.n_slots, (long long)SLOT_ELEMS,
             (unsigned long long)(slot_dev_bytes() * (uint64_t)g.n_slots) >> 20);
    atomic_store(&g.usable, 1);
    return 1;

fail_mod:
    g.cu.cuModuleUnload(g.mod);
    g.mod = NULL;
fail_ctx:
    g.cu.cuDevicePrimaryCtxRelease(g.dev);
    g.ctx = NULL;
fail_cu:
    if (*step)
        snprintf(why, why_len, "CUDA device %d unusable: %s: %s", idx, step, cu_err(r));
fail:
    dlclose(g.lib);
    g.lib = NULL;
    memset(&g.cu, 0, sizeof g.cu);
    return 0;
}

int qfs_dev_init(const struct qfs_dev_opts *o)
{
    const struct qfs_dev_opts def = {.mode = QFS_DEV_AUTO, .index = -1};
    char why[280] = "";
    if (g.inited)
        return 0;
    g.inited = 1;
    if (!o)
        o = &def;
    if (o->mode == QFS_DEV_CPU) {
        qfs_info("device cpu (-o device=cpu)");
        return 0;
    }
    if (cuda_open(o, why, sizeof why))
        return 0;
    snprintf(g.note, sizeof g.note, "%s", why);
    if (o->mode == QFS_DEV_CUDA && o->index >= 0)
        qfs_warn("device=cuda:%d asked for, but %s: quantizing on the CPU", o->index, why);
    else if (o->mode == QFS_DEV_CUDA)
        qfs_warn("device=cuda asked for, but %s: quantizing on the CPU", why);
    else
        qfs_info("device cpu: %s", why);
    return 0;
}

void qfs_dev_shutdown(void)
{
    if (g.lib) {
        atomic_store(&g.usable, 0);
        g.cu.cuCtxSetCurrent(g.ctx);
        free_slots();
        if (g.mod)
            g.cu.cuModuleUnload(g.mod);
        g.cu.cuDevicePrimaryCtxRelease(g.dev);
        dlclose(g.lib);
    }
    memset(&g.cu, 0, sizeof g.cu);
    g.lib = NULL, g.mod = NULL, g.ctx = NULL, g.inited = 0;
    snprintf(g.name, sizeof g.name, "cpu");
    g.note[0] = '\0';
}

/* ---- the two paths ----------------------------------------------------------------- */

static int check_args(enum qfs_type t, int64_t nrows, int64_t n, const float *imatrix,
                      size_t *row_size)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    *row_size = qfs_row_size(t, n);
    if (ti == NULL || *row_size == 0 || nrows < 0 || n <= 0)
        return -EINVAL;
    if ((imatrix != NULL && !ti->imatrix_ok) || (imatrix == NULL && ti->imatrix_required))
        return -EINVAL;
    return 0;
}

/* Elements widened per batch on the CPU path (64 KiB of f32). */
#define CPU_BATCH_FLOATS 16384

int qfs_quantize_rows_cpu(enum qfs_type t, enum qfs_dtype dt, const uint8_t *const *rows,
                          int64_t nrows, int64_t n_per_row, const float *imatrix, void *dst)
{
    size_t row_size;
    int rc = check_args(t, nrows, n_per_row, imatrix, &row_size);
    if (rc < 0)
        return rc;
    if (nrows == 0)
        return 0;
    const struct qfs_type_info *ti = qfs_type_info(t);
    if (ti->prepare && (rc = ti->prepare()) < 0)
        return rc; /* its one-time tables: -ENOMEM, so qfs_quantize_rows' 0 means -EINVAL */
    /* Widen and quantize a few rows at a time: rows quantize independently, so the bytes
     * are those of one call over all rows, while the f32 batch stays in L2 (and in
     * malloc's heap) instead of a chunk-sized buffer that is faulted in, streamed through
     * memory twice and unmapped again on every chunk. */
    const int64_t batch = n_per_row >= CPU_BATCH_FLOATS ? 1 : CPU_BATCH_FLOATS / n_per_row;
    const int64_t nb = batch < nrows ? batch : nrows;
    float *f = malloc((size_t)nb * (size_t)n_per_row * sizeof *f);
    if (!f)
        return -ENOMEM;
    uint8_t *out = dst;
    for (int64_t r0 = 0; r0 < nrows && rc == 0; r0 += nb) {
        const int64_t k = nrows - r0 < nb ? nrows - r0 : nb;
        for (int64_t r = 0; r < k; r++)
            qfs_to_f32(dt, rows[r0 + r], f + r * n_per_row, n_per_row);
        const size_t n = qfs_quantize_rows(t, f, out, k, n_per_row, imatrix);
        if (n != (size_t)k * row_size)
            rc = -EINVAL;
        out += (size_t)k * row_size;
    }
    free(f);
    return rc;
}

static int gpu_type(enum qfs_type t, int *needs_sigma2)
{
    switch (t) {
#define CASE(T, t, s)                                                                        \
    case QFS_TYPE_##T:                                                                       \
        *needs_sigma2 = s;                                                                   \
        return 1;
        QFS_DEV_TYPES(CASE)
#undef CASE
    default:
        return 0;
    }
}

static CUresult launch(CUfunction f, int64_t n, CUstream st, void **params)
{
    const int64_t grid = (n + THREADS - 1) / THREADS;
    return g.cu.cuLaunchKernel(f, (unsigned)grid, 1, 1, THREADS, 1, 1, 0, st, params, NULL);
}

/* One piece of at most SLOT_ELEMS elements on slot s.  0 or a CUresult; *what
 * names the failed step. */
static CUresult run_piece(struct slot *s, enum qfs_type t, int needs_sigma2, enum qfs_dtype dt,
                          const uint8_t *const *rows, int64_t nrows, int64_t n,
                          const float *imatrix, size_t row_size, uint8_t *dst, const char **what)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    const size_t esz = qfs_dtype_size(dt), src_row = (size_t)n * esz;
    CUresult r;
    for (int64_t i = 0; i < nrows; i++) /* page faults of the source mapping happen here */
        memcpy(s->h_in + (size_t)i * src_row, rows[i], src_row);
    const int64_t nelem = nrows * n;
    *what = "cuMemcpyHtoDAsync";
    if ((r = g.cu.cuMemcpyHtoDAsync(s->d_in, s->h_in, (size_t)nelem * esz, s->stream)))
        return r;
    int dtype = (int)dt;
    long long ln = nelem;
    void *wp[] = {&dtype, &s->d_in, &s->d_f32, &ln};
    *what = "qfs_k_widen";
    if ((r = launch(g.kern[K_WIDEN], nelem, s->stream, wp)))
        return r;
    struct qfs_dev_args a = {
        .x = (const float *)(uintptr_t)s->d_f32,
        .y = (uint8_t *)(uintptr_t)s->d_out,
        .imatrix = NULL,
        .sigma2 = NULL,
        .nblocks = nelem / ti->blck,
        .bpr = n / ti->blck,
        .nrows = nrows,
    };
    if (imatrix) {
        memcpy(s->h_imat, imatrix, (size_t)n * sizeof(float));
        *what = "cuMemcpyHtoDAsync (imatrix)";
        if ((r = g.cu.cuMemcpyHtoDAsync(s->d_imat, s->h_imat, (size_t)n * 4, s->stream)))
            return r;
        a.imatrix = (const float *)(uintptr_t)s->d_imat;
        if (needs_sigma2) {
            a.sigma2 = (float *)(uintptr_t)s->d_sigma2;
            long long lrow = n;
            void *sp[] = {&a, &lrow};
            *what = "qfs_k_sigma2";
            if ((r = launch(g.kern[K_SIGMA2], nrows, s->stream, sp)))
                return r;
        }
    }
    void *qp[] = {&a};
    *what = ti->name;
    if ((r = launch(g.kern[K_TYPES + t], a.nblocks, s->stream, qp)))
        return r;
    *what = "cuMemcpyDtoHAsync";
    if ((r = g.cu.cuMemcpyDtoHAsync(s->h_out, s->d_out, (size_t)nrows * row_size, s->stream)))
        return r;
    *what = "cuStreamSynchronize";
    if ((r = g.cu.cuStreamSynchronize(s->stream)))
        return r;
    memcpy(dst, s->h_out, (size_t)nrows * row_size);
    return 0;
}

int qfs_quantize_rows_gpu(enum qfs_type t, enum qfs_dtype dt, const uint8_t *const *rows,
                          int64_t nrows, int64_t n_per_row, const float *imatrix, void *dst)
{
    size_t row_size;
    int needs_sigma2 = 0;
    int rc = check_args(t, nrows, n_per_row, imatrix, &row_size);
    if (rc < 0)
        return rc;
    if (!atomic_load(&g.usable))
        return -ENODEV;
    if (!gpu_type(t, &needs_sigma2) || n_per_row > SLOT_ELEMS ||
        (imatrix && n_per_row > MAX_IMAT_ELEMS))
        return -ENOTSUP;
    if (nrows == 0)
        return 0;

    pthread_mutex_lock(&g.lock);
    struct slot *s = NULL;
    while (!s) {
        for (int i = 0; i < g.n_slots && !s; i++)
            if (!g.slots[i].busy)
                s = &g.slots[i];
        if (!s)
            pthread_cond_wait(&g.slots_free, &g.lock);
    }
    s->busy = 1;
    pthread_mutex_unlock(&g.lock);

    CUresult r = g.cu.cuCtxSetCurrent(g.ctx);
    const char *what = "cuCtxSetCurrent";
    const int64_t piece = SLOT_ELEMS / n_per_row; /* rows per piece, >= 1 */
    uint8_t *out = dst;
    for (int64_t r0 = 0; r == 0 && r0 < nrows; r0 += piece) {
        const int64_t nr = nrows - r0 < piece ? nrows - r0 : piece;
        if (!atomic_load(&g.usable)) {
            r = -1, what = "(given up by another thread)";
            break;
        }
        r = run_piece(s, t, needs_sigma2, dt, rows + r0, nr, n_per_row, imatrix, row_size,
                      out + (size_t)r0 * row_size, &what);
    }

    pthread_mutex_lock(&g.lock);
    s->busy = 0;
    pthread_cond_signal(&g.slots_free);
    pthread_mutex_unlock(&g.lock);
    if (r != 0) {
        if (r != -1)
            give_up(what, r);
        return -EIO;
    }
    atomic_fetch_add(&g.gpu_calls, 1);
    atomic_fetch_add(&g.gpu_rows, (uint64_t)nrows);
    return 0;
}

int qfs_quantize_rows_dev(enum qfs_type t, enum qfs_dtype dt, const uint8_t *const *rows,
                          int64_t nrows, int64_t n_per_row, const float *imatrix, void *dst)
{
    if (atomic_load_explicit(&g.usable, memory_order_relaxed) &&
        nrows * n_per_row >= MIN_GPU_ELEMS) {
        const int rc = qfs_quantize_rows_gpu(t, dt, rows, nrows, n_per_row, imatrix, dst);
        if (rc == 0 || rc == -EINVAL)
            return rc;
        /* -ENOTSUP: a type the GPU path lacks; -ENODEV/-EIO: logged by give_up */
    }
    atomic_fetch_add_explicit(&g.cpu_calls, 1, memory_order_relaxed);
    return qfs_quantize_rows_cpu(t, dt, rows, nrows, n_per_row, imatrix, dst);
}
