/* The search structures of the grid i-quants' codebooks (internal to kernels/).
 *
 * quant_iq.c builds one lattice per codebook on first use and never frees it;
 * afterwards it is read-only and shared by every thread.  quant_block_iq.h
 * (the portable searches) and quant_iq_avx2.c (the same searches, 8 listed
 * points per vector) read it. */
#ifndef QFS_IQ_LATTICE_H
#define QFS_IQ_LATTICE_H

#include <stdint.h>

#include "kernels/qtypes.h"

struct qfs_iq_lattice {
    /* level[npos * k + i]: level (0..2 or 0..7) of coordinate i of point k;
     * the coordinate's lattice position is 2 * level + 1 */
    const int8_t *level;
    /* key -> point: key packs one level per coordinate, bits_per_level each
     * (coordinate i at bit bits_per_level * i).  >= 0: the codebook point
     * with exactly these levels; < 0: -(1 + o), and neighbours[o] is the
     * count of the key's neighbour list, neighbours[o + 1 ..] its points. */
    const int32_t *map;
    /* Before each list's count, two more entries: neighbours[o - 2] |
     * neighbours[o - 1] << 16 is the list's offset t into tlevel, which holds
     * the list's levels transposed for SIMD: for each run of 8 listed points
     * (the last run padded with level 0), npos rows of 8 levels,
     * tlevel[t + 8 * npos * run + 8 * i + lane] = level of coordinate i of
     * point neighbours[o + 1 + 8 * run + lane]. */
    const uint16_t *neighbours;
    const int8_t *tlevel;
    int npos;           /* coordinates per point: 8 or 4 */
    int bits_per_level; /* 2 or 3 */
};

/* The lattice of grid i-quant type t (IQ2_XXS/XS/S, IQ3_XXS/S, IQ1_S/M),
 * built on first use (thread-safe): 0 and *out, -ENOMEM (the next call
 * tries again), or -EINVAL for another type. */
int qfs_iq_lattice_get(enum qfs_type t, const struct qfs_iq_lattice **out);

/* Defines `fname`, the row quantizer of grid i-quant type t (lower case, as
 * in block_<t>) with the block function qfs_quantize_block_<t> in scope
 * (quant_block_iq.h), for quant_iq.c and quant_iq_avx2.c.  needs_w: ggml
 * has no unweighted variant (IQ2_XXS, IQ2_XS, IQ1_S); called without
 * importance they use all-ones weights (qfs_quantize_rows refuses that
 * case).  Without its lattice (the prepare failed) it writes zero blocks: a
 * row function cannot fail (qfs_type_info.quantize_row). */
#define QFS_IQ_QUANTIZE_ROW(fname, t, T, needs_w, attr)                                      \
    attr void fname(const float *x, void *vy, int64_t n, const float *imatrix)              \
    {                                                                                        \
        const struct qfs_iq_lattice *lat;                                                    \
        block_##t *y = vy;                                                                   \
        float ones[QK_K];                                                                    \
        const float *unit = NULL;                                                            \
        if (qfs_iq_lattice_get(QFS_TYPE_##T, &lat) < 0) {                                    \
            memset(y, 0, (size_t)(n / QK_K) * sizeof *y);                                    \
            return;                                                                          \
        }                                                                                    \
        if ((needs_w) && imatrix == NULL) {                                                  \
            for (int i = 0; i < QK_K; i++)                                                   \
                ones[i] = 1.0f;                                                              \
            unit = ones;                                                                     \
        }                                                                                    \
        for (int64_t i = 0; i < n / QK_K; i++)                                               \
            qfs_quantize_block_##t(x + i * QK_K, imatrix ? imatrix + i * QK_K : unit, &y[i], \
                                   lat);                                                     \
    }

#endif
