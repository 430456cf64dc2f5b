/* Shared by the GPU-path tests: source tensors with the values real weights have,
 * as raw F16/BF16/F32 rows, and a row-pointer table for qfs_quantize_rows_*. */
#ifndef QFS_TEST_GPU_UTIL_H
#define QFS_TEST_GPU_UTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/qtypes.h"

static uint64_t tg_state = 0x9e3779b97f4a7c15ull;
static inline uint64_t tg_next(void)
{
    tg_state ^= tg_state << 13;
    tg_state ^= tg_state >> 7;
    tg_state ^= tg_state << 17;
    return tg_state;
}
/* scale of the "tiny" stretch for BF16/F32 sources (see tg_tensor) */
static float tg_tiny = 1e-28f;
static inline float tg_unit(void) { return (float)((tg_next() >> 40) * (1.0 / 16777216.0)); }
/* roughly normal: sum of 4 uniforms, centred */
static inline float tg_normal(void)
{
    return (tg_unit() + tg_unit() + tg_unit() + tg_unit() - 2.0f) * 1.7320508f;
}

/* nrows x n elements of dtype dt: N(0, 0.02) with 0.1% outliers of 20x, one
 * all-zero 256-element stretch, one of tiny values (subnormal in F16, 0.02 *
 * tg_tiny in BF16/F32), one constant stretch, per row chosen at random. */
static inline uint8_t *tg_tensor(enum qfs_dtype dt, int64_t nrows, int64_t n)
{
    const size_t esz = qfs_dtype_size(dt);
    uint8_t *p = malloc((size_t)nrows * (size_t)n * esz);
    if (!p)
        return NULL;
    for (int64_t r = 0; r < nrows; r++) {
        const int special = (int)(tg_next() % 8);
        const int64_t s0 = (int64_t)(tg_next() % (uint64_t)(n / 256 > 0 ? n / 256 : 1)) * 256;
        for (int64_t j = 0; j < n; j++) {
            float v = 0.02f * tg_normal();
            if (tg_next() % 1000 == 0)
                v *= 20.0f;
            if (j >= s0 && j < s0 + 256) {
                if (special == 0)
                    v = 0.0f;
                else if (special == 1)
                    v *= dt == QFS_DT_F16 ? 1e-4f : tg_tiny;
                else if (special == 2)
                    v = 0.5f;
            }
            uint8_t *e = p + ((size_t)r * (size_t)n + (size_t)j) * esz;
            if (dt == QFS_DT_F32) {
                memcpy(e, &v, 4);
            } else {
                const uint16_t h = dt == QFS_DT_F16 ? qfs_f32_to_f16(v) : qfs_f32_to_bf16(v);
                memcpy(e, &h, 2);
            }
        }
    }
    return p;
}

static inline const uint8_t **tg_rows(const uint8_t *base, enum qfs_dtype dt, int64_t nrows,
                                      int64_t n)
{
    const uint8_t **rows = malloc((size_t)nrows * sizeof *rows);
    if (rows)
        for (int64_t r = 0; r < nrows; r++)
            rows[r] = base + (size_t)r * (size_t)n * qfs_dtype_size(dt);
    return rows;
}

/* per-column importance: positive, spread over three orders of magnitude */
static inline float *tg_imatrix(int64_t n)
{
    float *w = malloc((size_t)n * sizeof *w);
    if (w)
        for (int64_t j = 0; j < n; j++)
            w[j] = 0.001f + tg_unit() * tg_unit() * 10.0f;
    return w;
}

static inline int64_t tg_first_diff(const uint8_t *a, const uint8_t *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return (int64_t)i;
    return -1;
}

static const char *const tg_dtype_name[] = {"F32", "F16", "BF16"};

#endif
