/* llama.cpp's ggml as the reference of the differential kernel tests (and of
 * bench_kernels): dlopen of libggml-base.so from $QFS_LLAMA_LIB_DIR, which
 * tests/meson.build sets to <npm_dir>/node_modules/@node-llama-cpp/linux-x64/
 * bins/linux-x64 (npm_dir: the meson option, default <build>/npm, where
 * tests/setup-ref.sh installs the package), and its quantizer entry points.
 *
 * A missing library is not a failure: ggml_ref_open returns 0 after printing
 *   "skipped: QFS_LLAMA_LIB_DIR is not set"  or
 *   "skipped: cannot load <path>: <dlerror>"
 * on stderr (nothing when quiet), and a test then exits 77 (meson: skipped).
 * A missing symbol is left to the caller (the pointer is NULL): the tests
 * fail on it with their own message and exit 1.  The library stays loaded
 * to the end of the process: its static state is not ours to tear down. */
#ifndef QFS_TEST_GGML_REF_H
#define QFS_TEST_GGML_REF_H

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

/* ggml_quantize_chunk(type, src, dst, start, nrows, n_per_row, imatrix) */
typedef size_t (*quantize_chunk_fn)(int type, const float *src, void *dst, int64_t start,
                                    int64_t nrows, int64_t n_per_row, const float *imatrix);
/* ggml_quantize_init(type): builds the grids of the i-quants */
typedef void (*quantize_init_fn)(int type);

struct ggml_ref {
    void *lib;                        /* the dlopen handle, for further dlsym */
    char path[4096];                  /* $QFS_LLAMA_LIB_DIR/libggml-base.so */
    quantize_chunk_fn quantize_chunk; /* NULL when not exported */
    quantize_init_fn quantize_init;   /* NULL when not exported */
};

/* Loads the library into *g.  Returns 1, or 0 when QFS_LLAMA_LIB_DIR is
 * unset or empty or the library does not load (with the "skipped: ..."
 * line on stderr unless quiet). */
static inline int ggml_ref_open(struct ggml_ref *g, int quiet)
{
    g->lib = NULL;
    g->path[0] = '\0';
    g->quantize_chunk = NULL;
    g->quantize_init = NULL;
    const char *dir = getenv("QFS_LLAMA_LIB_DIR");
    if (dir == NULL || *dir == '\0') {
        if (!quiet)
            fprintf(stderr, "skipped: QFS_LLAMA_LIB_DIR is not set\n");
        return 0;
    }
    snprintf(g->path, sizeof g->path, "%s/libggml-base.so", dir);
    g->lib = dlopen(g->path, RTLD_NOW | RTLD_LOCAL);
    if (g->lib == NULL) {
        if (!quiet)
            fprintf(stderr, "skipped: cannot load %s: %s\n", g->path, dlerror());
        return 0;
    }
    g->quantize_chunk = (quantize_chunk_fn)dlsym(g->lib, "ggml_quantize_chunk");
    g->quantize_init = (quantize_init_fn)dlsym(g->lib, "ggml_quantize_init");
    return 1;
}

/* For the mismatch reports: the offset of the first byte where ours and ref
 * (bytes long each) differ; bytes when they are equal. */
static inline size_t ggml_ref_first_diff(const uint8_t *ours, const uint8_t *ref, size_t bytes)
{
    size_t off = 0;
    while (off < bytes && ours[off] == ref[off])
        off++;
    return off;
}

/* Ends a mismatch report (its last line not yet ended) with up to 16 bytes
 * of the block [b0, b0 + block_size) from 8 before the differing byte off,
 * ours and ggml's, on lines "  <label> i..j ours: .." and ".. ggml: ..". */
static inline void ggml_ref_dump_block(const uint8_t *ours, const uint8_t *ref, size_t off,
                                       size_t b0, size_t block_size, const char *label)
{
    const size_t from = off - b0 >= 8 ? off - 8 : b0;
    const size_t to = from + 16 < b0 + block_size ? from + 16 : b0 + block_size;
    fprintf(stderr, "\n  %s %zu..%zu ours:", label, from - b0, to - b0 - 1);
    for (size_t i = from; i < to; i++)
        fprintf(stderr, " %02x", ours[i]);
    fprintf(stderr, "\n  %s %zu..%zu ggml:", label, from - b0, to - b0 - 1);
    for (size_t i = from; i < to; i++)
        fprintf(stderr, " %02x", ref[i]);
    fprintf(stderr, "\n");
}

#endif
