/* Portable row loops of the grid-based i-quants (IQ2_XXS, IQ2_XS, IQ2_S,
 * IQ3_XXS, IQ3_S, IQ1_S, IQ1_M) and the search structures of their codebooks.
 * The per-block arithmetic lives in quant_block_iq.h.
 *
 * A lattice (struct qfs_iq_lattice) is built once per codebook, on first use
 * (qfs_prepare_row_<t>, which qfs_quantize_rows calls), under build_lock, and
 * never freed (a few hundred KiB in all); afterwards it is read-only and shared
 * by every thread.  IQ1_S and IQ1_M share one.  A build that cannot allocate
 * its tables fails with -ENOMEM and leaves nothing behind: the next call tries
 * again.  Nothing here aborts. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/iq_grids.h"
#include "kernels/iq_lattice.h"
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

/* lattices[id] is complete once ready[id] points at it (stored with release
 * after the build, loaded with acquire); build_lock serialises builds. */
static struct qfs_iq_lattice lattices[LAT_COUNT];
static _Atomic(const struct qfs_iq_lattice *) ready[LAT_COUNT];
static pthread_mutex_t build_lock = PTHREAD_MUTEX_INITIALIZER;

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

/* Build lattices[id].  0, -ENOMEM, or -EINVAL (a codebook byte that is not one
 * of the type's levels: a broken table, logged).  Nothing is kept on failure. */
static int build(enum lattice_id id)
{
    const struct lattice_def *def = &defs[id];
    const int npos = def->npos, bits = def->bits_per_level;
    const int keys = 1 << (bits * npos);
    int rc = -ENOMEM;
    int8_t *level = malloc((size_t)def->grid_size * (size_t)npos);
    int32_t *map = malloc((size_t)keys * sizeof *map);
    int *d2 = malloc((size_t)def->grid_size * sizeof *d2);
    int *hist = malloc(1024 * sizeof *hist);
    uint16_t *nb = NULL;
    int8_t *tlevel = NULL;
    if (!level || !map || !d2 || !hist)
        goto fail;
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
                rc = -EINVAL;
                goto fail;
            }
            level[npos * j + i] = (int8_t)l;
            key |= l << (bits * i);
        }
        map[key] = j;
    }

    /* lists: 2 entries of tlevel offset, the count, the points (iq_lattice.h) */
    size_t total = 0, ttotal = 0;
    for (int k = 0; k < keys; k++) {
        if (map[k] != INT32_MIN || !key_reachable(def, k))
            continue;
        const size_t n = (size_t)neighbour_list(def, level, k, d2, hist, NULL);
        total += 3 + n;
        ttotal += (n + 7) / 8 * 8 * (size_t)npos;
    }
    if (ttotal > UINT32_MAX)
        goto fail; /* cannot happen with ggml's tables */
    nb = malloc(total * sizeof *nb);
    tlevel = malloc(ttotal > 0 ? ttotal : 1);
    if (!nb || !tlevel)
        goto fail;
    memset(tlevel, 0, ttotal); /* the padding lanes' level 0 */
    size_t at = 0, tat = 0;
    int32_t first = INT32_MIN;
    for (int k = 0; k < keys; k++) {
        if (map[k] != INT32_MIN || !key_reachable(def, k))
            continue;
        uint16_t *list = nb + at + 2;
        const int n = neighbour_list(def, level, k, d2, hist, list + 1);
        list[-2] = (uint16_t)(tat & 0xffff);
        list[-1] = (uint16_t)(tat >> 16);
        list[0] = (uint16_t)n;
        for (int j = 0; j < n; j++)
            for (int i = 0; i < npos; i++)
                tlevel[tat + (size_t)(8 * npos * (j / 8) + 8 * i + j % 8)] =
                    level[npos * list[1 + j] + i];
        map[k] = -(int32_t)(at + 2 + 1);
        if (first == INT32_MIN)
            first = map[k];
        at += 3 + (size_t)n;
        tat += (size_t)(n + 7) / 8 * 8 * (size_t)npos;
    }
    if (first == INT32_MIN) {
        rc = -EINVAL; /* a codebook without a gap: not one of ggml's */
        goto fail;
    }
    /* Keys the search never produces: point them at the first list, so even
     * a wrong lookup stays in bounds. */
    for (int k = 0; k < keys; k++)
        if (map[k] == INT32_MIN)
            map[k] = first;
    free(d2);
    free(hist);

    lattices[id] = (struct qfs_iq_lattice){.level = level,
                                           .map = map,
                                           .neighbours = nb,
                                           .tlevel = tlevel,
                                           .npos = npos,
                                           .bits_per_level = bits};
    return 0;
fail:
    free(level);
    free(map);
    free(d2);
    free(hist);
    free(nb);
    free(tlevel);
    return rc;
}

/* The lattice, built on first use (thread-safe).  0 and *out, or what build
 * returned (the next call builds again). */
static int lattice_get(enum lattice_id id, const struct qfs_iq_lattice **out)
{
    const struct qfs_iq_lattice *l = atomic_load_explicit(&ready[id], memory_order_acquire);
    int rc = 0;
    if (!l) {
        pthread_mutex_lock(&build_lock);
        l = atomic_load_explicit(&ready[id], memory_order_relaxed);
        if (!l && (rc = build(id)) == 0) {
            l = &lattices[id];
            atomic_store_explicit(&ready[id], l, memory_order_release);
        }
        pthread_mutex_unlock(&build_lock);
    }
    *out = l;
    return rc;
}

/* the lattice of each type, plus one (0: not a grid i-quant) */
static const unsigned char lattice_of[QFS_TYPE_COUNT] = {
    [QFS_TYPE_IQ2_XXS] = LAT_IQ2_XXS + 1, [QFS_TYPE_IQ2_XS] = LAT_IQ2_XS + 1,
    [QFS_TYPE_IQ2_S] = LAT_IQ2_S + 1,     [QFS_TYPE_IQ3_XXS] = LAT_IQ3_XXS + 1,
    [QFS_TYPE_IQ3_S] = LAT_IQ3_S + 1,     [QFS_TYPE_IQ1_S] = LAT_IQ1 + 1,
    [QFS_TYPE_IQ1_M] = LAT_IQ1 + 1,
};

int qfs_iq_lattice_get(enum qfs_type t, const struct qfs_iq_lattice **out)
{
    *out = NULL;
    if ((unsigned)t >= QFS_TYPE_COUNT || lattice_of[t] == 0)
        return -EINVAL;
    return lattice_get((enum lattice_id)(lattice_of[t] - 1), out);
}

/* Row functions (the quantizer: QFS_IQ_QUANTIZE_ROW of iq_lattice.h). */
#define QFS_DEFINE_IQ_ROWS(t, T, grid, needs_w)                                              \
    int qfs_prepare_row_##t(void)                                                            \
    {                                                                                        \
        const struct qfs_iq_lattice *lat;                                                    \
        return qfs_iq_lattice_get(QFS_TYPE_##T, &lat);                                       \
    }                                                                                        \
    QFS_IQ_QUANTIZE_ROW(qfs_quantize_row_##t, t, T, needs_w, )                               \
    void qfs_dequantize_row_##t(const void *vx, float *y, int64_t n)                         \
    {                                                                                        \
        const block_##t *x = vx;                                                             \
        for (int64_t i = 0; i < n / QK_K; i++)                                               \
            qfs_dequantize_block_##t(&x[i], y + i * QK_K, grid);                             \
    }

QFS_DEFINE_IQ_ROWS(iq2_xxs, IQ2_XXS, qfs_iq2xxs_grid, 1)
QFS_DEFINE_IQ_ROWS(iq2_xs, IQ2_XS, qfs_iq2xs_grid, 1)
QFS_DEFINE_IQ_ROWS(iq2_s, IQ2_S, qfs_iq2s_grid, 0)
QFS_DEFINE_IQ_ROWS(iq3_xxs, IQ3_XXS, qfs_iq3xxs_grid, 0)
QFS_DEFINE_IQ_ROWS(iq3_s, IQ3_S, qfs_iq3s_grid, 0)
QFS_DEFINE_IQ_ROWS(iq1_s, IQ1_S, qfs_iq1s_grid, 1)
QFS_DEFINE_IQ_ROWS(iq1_m, IQ1_M, qfs_iq1s_grid, 0)
