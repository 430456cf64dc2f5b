/* Portable row loops of the grid-based i-quants (IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) and the search structures of their codebooks.
 * The per-block arithmetic lives in quant_block_iq.h.
 *
 * A lattice (struct qfs_iq_lattice) is built once per codebook, on first use,
 * under pthread_once, and never freed (a few hundred KiB in all); afterwards
 * it is read-only and shared by every thread.  IQ1_S and IQ1_M share one. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#include "kernels/iq_grids.h"
#include "kernels/quant_block_iq.h"
#include "kernels/quant_rows.h"

enum lattice_id { LAT_IQ2_XXS, LAT_IQ2_XS, LAT_IQ2_S, LAT_IQ1, LAT_IQ3_XXS, LAT_IQ3_S, LAT_COUNT };

struct lattice_def {
    const uint64_t *grid64; /* 8-coordinate codebooks */
    const uint32_t *grid32; /* 4-coordinate codebooks */
    int grid_size;
    int npos, bits_per_level;
    uint8_t bytes[8]; /* the codebook's coordinate bytes, in level order */
    int nlev;         /* levels the search produces per coordinate (0..nlev-1) */
    int nwant;        /* a neighbour list holds the points at the nwant smallest distances */
};

/* nwant is ggml's choice per type (iq2xs_init_impl / iq3xs_init_impl). */
static const struct lattice_def defs[LAT_COUNT] = {
    [LAT_IQ2_XXS] = {qfs_iq2xxs_grid, NULL, 256, 8, 2, {0x08, 0x19, 0x2b}, 3, 2},
    [LAT_IQ2_XS] = {qfs_iq2xs_grid, NULL, 512, 8, 2, {0x08, 0x19, 0x2b}, 3, 2},
    [LAT_IQ2_S] = {qfs_iq2s_grid, NULL, 1024, 8, 2, {0x08, 0x19, 0x2b}, 3, 1},
    [LAT_IQ1] = {qfs_iq1s_grid, NULL, 2048, 8, 2, {0xff, 0x00, 0x01}, 3, 3},
    [LAT_IQ3_XXS] = {NULL, qfs_iq3xxs_grid, 256, 4, 3, {4, 12, 20, 28, 36, 44, 52, 62}, 8, 2},
    [LAT_IQ3_S] = {NULL, qfs_iq3s_grid, 512, 4, 3, {1, 3, 5, 7, 9, 11, 13, 15}, 8, 3},
};

static struct qfs_iq_lattice lattices[LAT_COUNT];

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (p == NULL) {
        /* one-time tables of a few hundred KiB: nothing sensible to go on with */
        fprintf(stderr, "quantfs: out of memory building the i-quant codebook tables\n");
        abort();
    }
    return p;
}

static int key_level(int key, int i, int bits) { return (key >> (bits * i)) & ((1 << bits) - 1); }

/* Does the search ever look this key up?  Only keys whose every level is
 * below nlev (the search clamps to that); the rest get no list. */
static int key_reachable(const struct lattice_def *def, int key)
{
    for (int i = 0; i < def->npos; i++)
        if (key_level(key, i, def->bits_per_level) >= def->nlev)
            return 0;
    return 1;
}

/* The neighbour list of an off-grid key, as ggml builds it: all codebook
 * points ordered by (squared distance between lattice positions, index),
 * cut after the nwant-th distinct distance.  Written to out (if not NULL);
 * returns its length.  d2 and hist are scratch of grid_size and 1024 ints. */
static int neighbour_list(const struct lattice_def *def, const int8_t *level, int key,
                          int *d2, int *hist, uint16_t *out)
{
    enum { HIST = 1024 }; /* > largest distance: 8 * (2*2)^2 = 128, 4 * (2*7)^2 = 784 */
    memset(hist, 0, HIST * sizeof *hist);
    for (int j = 0; j < def->grid_size; j++) {
        int s = 0;
        for (int i = 0; i < def->npos; i++) {
            /* positions are 2*level + 1, so their difference is twice the levels' */
            const int diff = 2 * (level[def->npos * j + i] - key_level(key, i, def->bits_per_level));
            s += diff * diff;
        }
        d2[j] = s;
        hist[s]++;
    }
    int n = 0, have = 0;
    for (int dist = 0; dist < HIST && have < def->nwant; dist++) {
        if (hist[dist] == 0)
            continue;
        have++;
        if (out == NULL) {
            n += hist[dist];
            continue;
        }
        for (int j = 0; j < def->grid_size; j++)
            if (d2[j] == dist)
                out[n++] = (uint16_t)j;
    }
    return n;
}

static void build(enum lattice_id id)
{
    const struct lattice_def *def = &defs[id];
    const int npos = def->npos, bits = def->bits_per_level;
    const int keys = 1 << (bits * npos);

    int8_t *level = xmalloc((size_t)def->grid_size * (size_t)npos);
    int32_t *map = xmalloc((size_t)keys * sizeof *map);
    for (int k = 0; k < keys; k++)
        map[k] = INT32_MIN; /* not yet assigned */
    for (int j = 0; j < def->grid_size; j++) {
        int key = 0;
        for (int i = 0; i < npos; i++) {
            const uint8_t b = def->grid64 ? (uint8_t)(def->grid64[j] >> (8 * i))
                                          : (uint8_t)(def->grid32[j] >> (8 * i));
            int l = 0;
            while (l < def->nlev && def->bytes[l] != b)
                l++;
            if (l == def->nlev) {
                fprintf(stderr, "quantfs: i-quant codebook entry %d has byte 0x%02x\n", j, b);
                abort();
            }
            level[npos * j + i] = (int8_t)l;
            key |= l << (bits * i);
        }
        map[key] = j;
    }

    int *d2 = xmalloc((size_t)def->grid_size * sizeof *d2);
    int *hist = xmalloc(1024 * sizeof *hist);
    size_t total = 0;
    for (int k = 0; k < keys; k++)
        if (map[k] == INT32_MIN && key_reachable(def, k))
            total += 1 + (size_t)neighbour_list(def, level, k, d2, hist, NULL);
    uint16_t *nb = xmalloc(total * sizeof *nb);
    size_t at = 0;
    for (int k = 0; k < keys; k++) {
        if (map[k] != INT32_MIN || !key_reachable(def, k))
            continue;
        const int n = neighbour_list(def, level, k, d2, hist, nb + at + 1);
        nb[at] = (uint16_t)n;
        map[k] = -(int32_t)(at + 1);
        at += 1 + (size_t)n;
    }
    /* Keys the search never produces: point them at the first list, so even
     * a wrong lookup stays in bounds. */
    for (int k = 0; k < keys; k++)
        if (map[k] == INT32_MIN)
            map[k] = -1;
    free(d2);
    free(hist);

    lattices[id] = (struct qfs_iq_lattice){
        .level = level, .map = map, .neighbours = nb, .npos = npos, .bits_per_level = bits};
}

#define LATTICE_ONCE(id)                                                                     \
    static void build_##id(void) { build(id); }
LATTICE_ONCE(LAT_IQ2_XXS)
LATTICE_ONCE(LAT_IQ2_XS)
LATTICE_ONCE(LAT_IQ2_S)
LATTICE_ONCE(LAT_IQ1)
LATTICE_ONCE(LAT_IQ3_XXS)
LATTICE_ONCE(LAT_IQ3_S)

static pthread_once_t once[LAT_COUNT] = {PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT,
                                          PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT, PTHREAD_ONCE_INIT};
static void (*const builders[LAT_COUNT])(void) = {
    build_LAT_IQ2_XXS, build_LAT_IQ2_XS, build_LAT_IQ2_S,
    build_LAT_IQ1,     build_LAT_IQ3_XXS, build_LAT_IQ3_S,
};

/* The lattice, built on first call (thread-safe). */
static const struct qfs_iq_lattice *lattice(enum lattice_id id)
{
    pthread_once(&once[id], builders[id]);
    return &lattices[id];
}

/* Row functions.  needs_w: ggml has no unweighted variant (IQ2_XXS, IQ2_XS,
 * IQ1_S); called without importance they use all-ones weights (see
 * quant_block_iq.h; qfs_quantize_rows refuses that case). */
#define QFS_DEFINE_IQ_ROWS(t, lat_id, grid, needs_w)                                         \
    void qfs_quantize_row_##t(const float *x, void *vy, int64_t n, const float *imatrix)   \
    {                                                                                        \
        const struct qfs_iq_lattice *lat = lattice(lat_id);                                  \
        block_##t *y = vy;                                                                   \
        float ones[QK_K];                                                                    \
        const float *unit = NULL;                                                            \
        if ((needs_w) && imatrix == NULL) {                                                  \
            for (int i = 0; i < QK_K; i++)                                                   \
                ones[i] = 1.0f;                                                              \
            unit = ones;                                                                     \
        }                                                                                    \
        for (int64_t i = 0; i < n / QK_K; i++)                                               \
            qfs_quantize_block_##t(x + i * QK_K, imatrix ? imatrix + i * QK_K : unit, &y[i], \
                                   lat);                                                     \
    }                                                                                        \
    void qfs_dequantize_row_##t(const void *vx, float *y, int64_t n)                         \
    {                                                                                        \
        const block_##t *x = vx;                                                             \
        for (int64_t i = 0; i < n / QK_K; i++)                                               \
            qfs_dequantize_block_##t(&x[i], y + i * QK_K, grid);                             \
    }

QFS_DEFINE_IQ_ROWS(iq2_xxs, LAT_IQ2_XXS, qfs_iq2xxs_grid, 1)
QFS_DEFINE_IQ_ROWS(iq2_xs, LAT_IQ2_XS, qfs_iq2xs_grid, 1)
QFS_DEFINE_IQ_ROWS(iq2_s, LAT_IQ2_S, qfs_iq2s_grid, 0)
QFS_DEFINE_IQ_ROWS(iq3_xxs, LAT_IQ3_XXS, qfs_iq3xxs_grid, 0)
QFS_DEFINE_IQ_ROWS(iq3_s, LAT_IQ3_S, qfs_iq3s_grid, 0)
QFS_DEFINE_IQ_ROWS(iq1_s, LAT_IQ1, qfs_iq1s_grid, 1)
QFS_DEFINE_IQ_ROWS(iq1_m, LAT_IQ1, qfs_iq1s_grid, 0)
