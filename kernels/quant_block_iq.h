/* One super-block (256 elements) of each grid-based i-quant: IQ2_XXS, IQ2_XS,
 * IQ2_S, IQ3_XXS, IQ3_S, IQ1_S, IQ1_M.  Quantize and dequantize.
 *
 * Same rules as quant_block.h (static inline, QFS_HD, no allocation, no
 * recursion, no libc beyond fabsf/sqrtf/memcpy/memset, the reference's float
 * operations in the reference's order) so a CUDA path can run the very same
 * functions.  The arithmetic reproduces ggml's quantize_row_<t>_impl of
 * llama.cpp (ggml 0.25.1) byte for byte, including its quirks, which are
 * called out where they occur.
 *
 * How these quantizers work: every group of 8 (IQ2, IQ1) or 4 (IQ3) values
 * is replaced by one point of a fixed codebook (kernels/iq_grids.h) times a
 * per-sub-block scale; the signs are stored separately.  A search tries a
 * range of scales; for each it rounds every coordinate to the nearest lattice
 * level and, when that point is not in the codebook, takes the best of a
 * precomputed list of codebook points near it (struct qfs_iq_lattice, built
 * once by quant_iq.c).  The neighbour lists' order matters: ties keep the
 * first point listed, so the lists must be ggml's exactly.
 *
 * Importance weights qw (256 floats of the super-block, or NULL): NULL is
 * ggml's unweighted variant for IQ2_S, IQ3_XXS, IQ3_S and IQ1_M.  IQ2_XXS,
 * IQ2_XS and IQ1_S have no unweighted variant in ggml (it asserts); here NULL
 * means all-ones weights there, which gives bytes ggml never writes.  Inputs
 * must be finite. */
#ifndef QFS_QUANT_BLOCK_IQ_H
#define QFS_QUANT_BLOCK_IQ_H

#include "kernels/quant_block.h"
#include "kernels/quant_block_k.h" /* qfs_make_qp_quants */
#include "kernels/iq_lattice.h"

/* The two neighbour searches can be replaced by a SIMD translation unit
 * (quant_iq_avx2.c) that defines these names before including this header;
 * its functions must give the same result, bit for bit (the scale search
 * and the IQ1 split fits below too). */
#ifndef QFS_IQ_NEAREST
#define QFS_IQ_NEAREST qfs_iq_nearest_listed
#endif
#ifndef QFS_IQ1_NEAREST
#define QFS_IQ1_NEAREST qfs_iq1_nearest_listed
#endif
#ifndef QFS_IQ_SEARCH_SCALE
#define QFS_IQ_SEARCH_SCALE qfs_iq_search_scale
#endif
#ifndef QFS_IQ1_ORDER
#define QFS_IQ1_ORDER qfs_iq1_order
#endif
#ifndef QFS_IQ1S_SPLIT
#define QFS_IQ1S_SPLIT qfs_iq1s_split
#endif
#ifndef QFS_IQ1M_SPLIT
#define QFS_IQ1M_SPLIT qfs_iq1m_split
#endif

#define QFS_IQ_EPS_IQ2 1e-15f     /* ggml GROUP_MAX_EPS */
#define QFS_IQ_EPS_IQ2_S 1e-8f    /* GROUP_MAX_EPS_IQ2_S */
#define QFS_IQ_EPS_IQ3_XXS 1e-8f  /* GROUP_MAX_EPS_IQ3_XXS */
#define QFS_IQ_EPS_IQ1_S 1e-12f   /* GROUP_MAX_EPS_IQ1_S */
#define QFS_IQ_EPS_IQ1_M 1e-7f    /* GROUP_MAX_EPS_IQ1_M */
#define QFS_IQ1_DELTA 0.125f      /* IQ1S_DELTA == IQ1M_DELTA */

static inline QFS_HD float qfs_fmaxf_ref(float a, float b) { return a > b ? a : b; }

/* ---- the shared search ------------------------------------------------------ */

/* The point of the list nearest to scale * position in the weighted squared
 * distance; the first one listed wins a tie.  Its levels go to L.  Returns
 * the point's index. */
static inline QFS_HD int qfs_iq_nearest_listed(const struct qfs_iq_lattice *lat,
                                               const uint16_t *list, const float *xval,
                                               const float *w, float scale, int8_t *L)
{
    const int npos = lat->npos;
    const int count = list[0];
    float best = FLT_MAX;
    int found = list[1]; /* kept only if every distance is inf/NaN (ggml asserts there) */
    for (int j = 1; j <= count; j++) {
        const int8_t *lv = lat->level + npos * list[j];
        float d2 = 0.0f;
        for (int i = 0; i < npos; i++) {
            const float diff = scale * (float)(2 * lv[i] + 1) - xval[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            found = list[j];
        }
    }
    const int8_t *lv = lat->level + npos * found;
    for (int i = 0; i < npos; i++)
        L[i] = lv[i];
    return found;
}

/* Round the npos values of one group at inverse scale id to lattice levels
 * 0..nlev-1 (into L) and return their key. */
static inline QFS_HD int qfs_iq_round_group(const struct qfs_iq_lattice *lat, const float *xval,
                                            float id, int nlev, int8_t *L)
{
    int key = 0;
    for (int i = 0; i < lat->npos; i++) {
        const int l = qfs_nearest_int(0.5f * (id * xval[i] - 1.0f));
        L[i] = (int8_t)qfs_imax(0, qfs_imin(nlev - 1, l));
        key |= L[i] << (lat->bits_per_level * i);
    }
    return key;
}

/* Levels of the group, snapped to the codebook: on the grid as rounded,
 * else the best listed neighbour at `scale`.  Returns true when on the grid. */
static inline QFS_HD int qfs_iq_snap_group(const struct qfs_iq_lattice *lat, const float *xval,
                                           const float *waux, float id, float scale, int nlev,
                                           int8_t *L)
{
    const int key = qfs_iq_round_group(lat, xval, id, nlev, L);
    const int32_t m = lat->map[key];
    if (m >= 0)
        return 1;
    QFS_IQ_NEAREST(lat, lat->neighbours + (-m - 1), xval, waux, scale, L);
    return 0;
}

/* The codebook point of a group's levels (they are on the grid). */
static inline QFS_HD int qfs_iq_point(const struct qfs_iq_lattice *lat, const int8_t *L)
{
    int key = 0;
    for (int i = 0; i < lat->npos; i++)
        key |= L[i] << (lat->bits_per_level * i);
    const int32_t m = lat->map[key];
    return m >= 0 ? m : 0; /* off the grid cannot happen (ggml aborts) */
}

/* What to redo after the scale trials, at the best scale (ggml's variants). */
enum qfs_iq_refit {
    QFS_IQ_REFIT_ALL,          /* IQ2_XXS: all groups, whenever scale > 0 */
    QFS_IQ_REFIT_OFF_GRID,     /* IQ2_XS, IQ2_S, IQ3_XXS: only the groups that needed a
                                * neighbour, if any did and scale > 0 */
    QFS_IQ_REFIT_ALL_IF_ANY,   /* IQ3_S: all groups, if any needed one and scale > 0 */
};

struct qfs_iq_search {
    int n;         /* values in the sub-block: 32 or 16 */
    int nlev;      /* levels per coordinate (ggml's kMaxQ - 1 + 1): 3 or 8 */
    int is_lo;     /* trials is = is_lo .. -is_lo: id = (2 * kMaxQ - 1 + is * step) / den */
    float step;
    int kmaxq;     /* ggml's kMaxQ: 3 or 8 */
    int on_grid_init; /* the "on grid" state before any trial is accepted */
    enum qfs_iq_refit refit;
};

/* After the trials of qfs_iq_search_scale: redo the groups ggml's variant
 * redoes at the chosen scale (on_grid[k]: group k's state in the chosen
 * trial) and refit the scale to them.  Returns the scale. */
static inline QFS_HD float qfs_iq_refit(const struct qfs_iq_lattice *lat,
                                        const struct qfs_iq_search *p, const float *xval,
                                        const float *weight, const float *waux, float scale,
                                        const int *on_grid, int8_t *L)
{
    const int npos = lat->npos;
    const int ngroups = p->n / npos;
    int n_off = 0;
    for (int k = 0; k < ngroups; k++)
        n_off += !on_grid[k];
    const int redo = p->refit == QFS_IQ_REFIT_ALL ? scale > 0.0f : (n_off > 0 && scale > 0.0f);
    if (redo) {
        const float id = 1.0f / scale;
        for (int k = 0; k < ngroups; k++) {
            if (p->refit == QFS_IQ_REFIT_OFF_GRID && on_grid[k])
                continue;
            qfs_iq_snap_group(lat, xval + npos * k, waux + npos * k, id, scale, p->nlev,
                              L + npos * k);
        }
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (int i = 0; i < p->n; i++) {
            const float w = weight[i];
            const float q = (float)(2 * L[i] + 1);
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        if (sumq2 > 0.0f)
            scale = sumqx / sumq2;
    }
    return scale;
}

/* The sub-block search of IQ2_XXS/XS/S and IQ3_XXS/S on xval >= 0 (but for
 * ggml's parity flip).  scale: the starting scale; den: the divisor of the
 * trial inverse scales.  L gets the levels (on the grid), the result is the
 * sub-block's scale (may be <= 0: the caller handles that as ggml does). */
static inline QFS_HD float qfs_iq_search_scale(const struct qfs_iq_lattice *lat,
                                               const struct qfs_iq_search *p, const float *xval,
                                               const float *weight, const float *waux,
                                               float scale, float den, int8_t *L)
{
    const int npos = lat->npos;
    const int ngroups = p->n / npos;
    int8_t Laux[32];
    int on_grid[8], on_grid_aux[8];
    for (int k = 0; k < ngroups; k++)
        on_grid[k] = p->on_grid_init;
    float best = 0.0f;
    for (int is = p->is_lo; is <= -p->is_lo; is++) {
        const float id = ((float)(2 * p->kmaxq - 1) + (float)is * p->step) / den;
        const float this_scale = 1.0f / id;
        for (int k = 0; k < ngroups; k++)
            on_grid_aux[k] = qfs_iq_snap_group(lat, xval + npos * k, waux + npos * k, id,
                                               this_scale, p->nlev, Laux + npos * k);
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (int i = 0; i < p->n; i++) {
            const float w = weight[i];
            const float q = (float)(2 * Laux[i] + 1);
            sumqx += w * xval[i] * q;
            sumq2 += w * q * q;
        }
        if (sumq2 > 0.0f && sumqx * sumqx > best * sumq2) {
            scale = sumqx / sumq2;
            best = scale * sumqx;
            memcpy(L, Laux, (size_t)p->n);
            for (int k = 0; k < ngroups; k++)
                on_grid[k] = on_grid_aux[k];
        }
    }
    return qfs_iq_refit(lat, p, xval, weight, waux, scale, on_grid, L);
}

/* IQ2_XXS's starting scale is ggml's make_qp_quants: qfs_make_qp_quants of
 * quant_block_k.h (Q2_K uses it too). */
/* Sum of squares of the super-block, in element order. */
static inline QFS_HD float qfs_iq_sumx2(const float *x)
{
    float s = 0.0f;
    for (int i = 0; i < QK_K; i++)
        s += x[i] * x[i];
    return s;
}

/* weight[i] = qw[i] * sqrt(sigma2 + x^2), or the unweighted formula. */
static inline QFS_HD void qfs_iq_weights(const float *x, const float *qw, float sigma2, int n,
                                         int unweighted_kind, float *weight)
{
    if (qw != NULL) {
        for (int i = 0; i < n; i++)
            weight[i] = qw[i] * sqrtf(sigma2 + x[i] * x[i]);
    } else if (unweighted_kind == 1) { /* IQ2_S */
        for (int i = 0; i < n; i++)
            weight[i] = 0.25f * sigma2 + x[i] * x[i];
    } else {
        for (int i = 0; i < n; i++)
            weight[i] = x[i] * x[i];
    }
}

/* |x| into xval and the sign bits of each group of 8 into signs[k].  With
 * even_parity (IQ2_XXS, IQ2_XS, IQ3_XXS, which store 7 sign bits and infer
 * the 8th), a group with an odd number of negatives keeps the sign of its
 * least important element (smallest w*x*x) wrong instead: that value's xval
 * goes negative.  signs get the low 7 bits then. */
static inline QFS_HD void qfs_iq_signs(const float *x, const float *weight, int n, int even_parity,
                                       float *xval, uint8_t *signs)
{
    for (int k = 0; k < n / 8; k++) {
        int nneg = 0;
        unsigned s = 0;
        for (int i = 0; i < 8; i++) {
            const float v = x[8 * k + i];
            if (v >= 0.0f) {
                xval[8 * k + i] = v;
            } else {
                xval[8 * k + i] = -v;
                nneg++;
                s |= 1u << i;
            }
        }
        if (even_parity) {
            if (nneg % 2) {
                int imin = 0;
                float min = weight[8 * k] * x[8 * k] * x[8 * k];
                for (int i = 1; i < 8; i++) {
                    const float a = weight[8 * k + i] * x[8 * k + i] * x[8 * k + i];
                    if (a < min) {
                        min = a;
                        imin = i;
                    }
                }
                xval[8 * k + imin] = -xval[8 * k + imin];
                s ^= 1u << imin;
            }
            s &= 127u;
        }
        signs[k] = (uint8_t)s;
    }
}

/* 4-bit sub-block scale code of ggml: nearest_int(0.5 * (scale / d - 1)) in 0..max */
static inline QFS_HD int qfs_iq_scale_code(float id, float scale, int max)
{
    return qfs_imax(0, qfs_imin(max, qfs_nearest_int(0.5f * (id * scale - 1.0f))));
}

/* ---- IQ2_XXS: 8 sub-blocks of 32, 256-point codebook, 2.0625 bpw --------- */

static inline QFS_HD void qfs_quantize_block_iq2_xxs(const float *x, const float *qw,
                                                     block_iq2_xxs *y,
                                                     const struct qfs_iq_lattice *lat)
{
    const struct qfs_iq_search p = {32, 3, -6, 0.1f, 3, 1, QFS_IQ_REFIT_ALL};
    uint32_t q2[QK_K / 16]; /* per sub-block: 4 point bytes, then 4x7 signs | scale << 28 */
    float scales[QK_K / 32];
    float weight[32], waux[32], xval[32];
    int8_t L[32];
    uint8_t signs[4];
    memset(q2, 0, sizeof q2);
    float max_scale = 0.0f;
    const float sigma2 = qfs_iq_sumx2(x) / (float)QK_K;

    for (int ib = 0; ib < QK_K / 32; ib++) {
        const float *xb = x + 32 * ib;
        qfs_iq_weights(xb, qw ? qw + 32 * ib : NULL, sigma2, 32, 0, weight);
        for (int i = 0; i < 32; i++)
            waux[i] = sqrtf(weight[i]);
        qfs_iq_signs(xb, weight, 32, 1, xval, signs);
        float max = xval[0];
        for (int i = 1; i < 32; i++)
            max = qfs_fmaxf_ref(max, xval[i]);
        scales[ib] = 0.0f;
        if (max < QFS_IQ_EPS_IQ2)
            continue;
        uint8_t Lqp[32];
        float scale = qfs_make_qp_quants(32, p.kmaxq + 1, xval, Lqp, weight);
        const float eff_max = scale * (float)p.kmaxq;
        if (eff_max <= 0.0f)
            continue;
        memset(L, 0, sizeof L);
        scale = QFS_IQ_SEARCH_SCALE(lat, &p, xval, weight, waux, scale, eff_max, L);
        if (scale < 0.0f) { /* never seen; ggml flips scale and signs */
            scale = -scale;
            for (int k = 0; k < 4; k++)
                signs[k] = (uint8_t)(~signs[k] & 127u);
        }
        for (int k = 0; k < 4; k++) {
            q2[2 * ib] |= (uint32_t)qfs_iq_point(lat, L + 8 * k) << (8 * k);
            q2[2 * ib + 1] |= (uint32_t)signs[k] << (7 * k);
        }
        scales[ib] = scale;
        max_scale = qfs_fmaxf_ref(max_scale, scale);
    }

    if (max_scale == 0.0f) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float d = max_scale / 31.0f;
    y->d = qfs_fp32_to_fp16(d);
    const float id = 1.0f / d;
    for (int ib = 0; ib < QK_K / 32; ib++)
        q2[2 * ib + 1] |= (uint32_t)qfs_iq_scale_code(id, scales[ib], 15) << 28;
    memcpy(y->qs, q2, sizeof y->qs);
}

/* ---- IQ2_XS: 16 sub-blocks of 16, 512-point codebook, 2.3125 bpw --------- */

static inline QFS_HD void qfs_quantize_block_iq2_xs(const float *x, const float *qw,
                                                    block_iq2_xs *y,
                                                    const struct qfs_iq_lattice *lat)
{
    const struct qfs_iq_search p = {16, 3, -9, 0.1f, 3, 1, QFS_IQ_REFIT_OFF_GRID};
    uint16_t q2[QK_K / 8];
    float scales[QK_K / 16];
    float weight[16], waux[16], xval[16];
    int8_t L[16];
    uint8_t signs[2];
    memset(q2, 0, sizeof q2);
    float max_scale = 0.0f;
    const float sigma2 = qfs_iq_sumx2(x) / (float)QK_K;

    for (int ib = 0; ib < QK_K / 16; ib++) {
        const float *xb = x + 16 * ib;
        qfs_iq_weights(xb, qw ? qw + 16 * ib : NULL, sigma2, 16, 0, weight);
        for (int i = 0; i < 16; i++)
            waux[i] = sqrtf(weight[i]);
        qfs_iq_signs(xb, weight, 16, 1, xval, signs);
        float max = xval[0];
        for (int i = 1; i < 16; i++)
            max = qfs_fmaxf_ref(max, xval[i]);
        scales[ib] = 0.0f;
        if (max < QFS_IQ_EPS_IQ2)
            continue;
        memset(L, 0, sizeof L);
        float scale = QFS_IQ_SEARCH_SCALE(lat, &p, xval, weight, waux,
                                          max / (float)(2 * p.kmaxq - 1), max, L);
        if (scale < 0.0f) {
            scale = -scale;
            for (int k = 0; k < 2; k++)
                signs[k] = (uint8_t)(~signs[k] & 127u);
        }
        for (int k = 0; k < 2; k++)
            q2[2 * ib + k] = (uint16_t)(qfs_iq_point(lat, L + 8 * k) | (signs[k] << 9));
        scales[ib] = scale;
        max_scale = qfs_fmaxf_ref(max_scale, scale);
    }

    memset(y, 0, sizeof *y);
    if (max_scale == 0.0f)
        return;
    const float d = max_scale / 31.0f;
    y->d = qfs_fp32_to_fp16(d);
    const float id = 1.0f / d;
    for (int ib = 0; ib < QK_K / 16; ib++)
        y->scales[ib / 2] |= (uint8_t)(qfs_iq_scale_code(id, scales[ib], 15) << (4 * (ib % 2)));
    memcpy(y->qs, q2, sizeof q2);
}

/* ---- IQ2_S: 16 sub-blocks of 16, 1024-point codebook, 8 sign bits, 2.5625 bpw */

static inline QFS_HD void qfs_quantize_block_iq2_s(const float *x, const float *qw,
                                                   block_iq2_s *y,
                                                   const struct qfs_iq_lattice *lat)
{
    const struct qfs_iq_search p = {16, 3, -9, 0.1f, 3, 1, QFS_IQ_REFIT_OFF_GRID};
    float scales[QK_K / 16];
    float weight[16], waux[16], xval[16];
    int8_t L[16];
    uint8_t signs[2];
    memset(y, 0, sizeof *y);
    float max_scale = 0.0f;
    const float sigma2 = 2.0f * qfs_iq_sumx2(x) / (float)QK_K;

    for (int ib = 0; ib < QK_K / 16; ib++) {
        const float *xb = x + 16 * ib;
        qfs_iq_weights(xb, qw ? qw + 16 * ib : NULL, sigma2, 16, 1, weight);
        for (int i = 0; i < 16; i++)
            waux[i] = sqrtf(weight[i]);
        qfs_iq_signs(xb, weight, 16, 0, xval, signs);
        float max = xval[0];
        for (int i = 1; i < 16; i++)
            max = qfs_fmaxf_ref(max, xval[i]);
        scales[ib] = 0.0f;
        if (max < QFS_IQ_EPS_IQ2_S)
            continue;
        memset(L, 0, sizeof L);
        float scale = QFS_IQ_SEARCH_SCALE(lat, &p, xval, weight, waux,
                                          max / (float)(2 * p.kmaxq - 1), max, L);
        if (scale < 0.0f) {
            scale = -scale;
            for (int k = 0; k < 2; k++)
                signs[k] = (uint8_t)~signs[k];
        }
        for (int k = 0; k < 2; k++) {
            const int i8 = 2 * ib + k;
            const int g = qfs_iq_point(lat, L + 8 * k);
            y->qs[i8] = (uint8_t)(g & 255);
            y->qh[i8 / 4] |= (uint8_t)((g >> 8) << (2 * (i8 % 4)));
            y->qs[QK_K / 8 + i8] = signs[k];
        }
        scales[ib] = scale;
        max_scale = qfs_fmaxf_ref(max_scale, scale);
    }

    if (max_scale == 0.0f)
        return;
    const float d = max_scale / 31.0f;
    y->d = qfs_fp32_to_fp16(d * 0.9875f);
    const float id = 1.0f / d;
    for (int ib = 0; ib < QK_K / 16; ib++)
        y->scales[ib / 2] |= (uint8_t)(qfs_iq_scale_code(id, scales[ib], 15) << (4 * (ib % 2)));
}

/* ---- IQ3_XXS: 8 sub-blocks of 32, 256-point codebook of 4-vectors, 3.0625 bpw */

static inline QFS_HD void qfs_quantize_block_iq3_xxs(const float *x, const float *qw,
                                                     block_iq3_xxs *y,
                                                     const struct qfs_iq_lattice *lat)
{
    const struct qfs_iq_search p = {32, 8, -15, 0.2f, 8, 1, QFS_IQ_REFIT_OFF_GRID};
    uint8_t q3[3 * QK_K / 8]; /* 64 point bytes, then per sub-block a LE u32 of signs | scale */
    uint32_t sas[QK_K / 32];
    float scales[QK_K / 32];
    float weight[32], waux[32], xval[32];
    int8_t L[32];
    uint8_t signs[4];
    memset(q3, 0, sizeof q3);
    memset(sas, 0, sizeof sas);
    float max_scale = 0.0f;
    const float sigma2 = 2.0f * qfs_iq_sumx2(x) / (float)QK_K;

    for (int ib = 0; ib < QK_K / 32; ib++) {
        const float *xb = x + 32 * ib;
        qfs_iq_weights(xb, qw ? qw + 32 * ib : NULL, sigma2, 32, 0, weight);
        for (int i = 0; i < 32; i++)
            waux[i] = sqrtf(weight[i]);
        qfs_iq_signs(xb, weight, 32, 1, xval, signs);
        float max = xval[0];
        for (int i = 1; i < 32; i++)
            max = qfs_fmaxf_ref(max, xval[i]);
        scales[ib] = 0.0f;
        if (max < QFS_IQ_EPS_IQ3_XXS)
            continue;
        memset(L, 0, sizeof L);
        float scale = QFS_IQ_SEARCH_SCALE(lat, &p, xval, weight, waux,
                                          max / (float)(2 * p.kmaxq - 1), max, L);
        if (scale < 0.0f) {
            scale = -scale;
            for (int k = 0; k < 4; k++)
                signs[k] = (uint8_t)(~signs[k] & 127u);
        }
        for (int k = 0; k < 8; k++)
            q3[8 * ib + k] = (uint8_t)qfs_iq_point(lat, L + 4 * k);
        sas[ib] = (uint32_t)signs[0] | ((uint32_t)signs[1] << 7) | ((uint32_t)signs[2] << 14) |
                  ((uint32_t)signs[3] << 21);
        scales[ib] = scale;
        max_scale = qfs_fmaxf_ref(max_scale, scale);
    }

    if (max_scale == 0.0f) {
        memset(y, 0, sizeof *y);
        return;
    }
    const float d = max_scale / 31.0f;
    y->d = qfs_fp32_to_fp16(d * 1.0125f);
    const float id = 1.0f / d;
    for (int ib = 0; ib < QK_K / 32; ib++)
        sas[ib] |= (uint32_t)qfs_iq_scale_code(id, scales[ib], 15) << 28;
    memcpy(q3 + QK_K / 4, sas, sizeof sas);
    memcpy(y->qs, q3, sizeof q3);
}

/* ---- IQ3_S: 8 sub-blocks of 32, 512-point codebook of 4-vectors, 3.4375 bpw */

static inline QFS_HD void qfs_quantize_block_iq3_s(const float *x, const float *qw,
                                                   block_iq3_s *y,
                                                   const struct qfs_iq_lattice *lat)
{
    const struct qfs_iq_search p = {32, 8, -9, 0.2f, 8, 0, QFS_IQ_REFIT_ALL_IF_ANY};
    float scales[QK_K / 32];
    float weight[32], waux[32], xval[32];
    int8_t L[32];
    uint8_t signs[4];
    memset(y, 0, sizeof *y);
    /* ggml advances its point and sign cursors only past sub-blocks it
     * quantizes: after an all-zero sub-block the following ones are stored
     * shifted down (qh stays indexed by sub-block).  Kept for identical bytes. */
    int qpos = 0, spos = 0;
    float max_scale = 0.0f;
    const float sigma2 = 2.0f * qfs_iq_sumx2(x) / (float)QK_K;

    for (int ib = 0; ib < QK_K / 32; ib++) {
        const float *xb = x + 32 * ib;
        qfs_iq_weights(xb, qw ? qw + 32 * ib : NULL, sigma2, 32, 0, weight);
        for (int i = 0; i < 32; i++)
            waux[i] = sqrtf(weight[i]);
        qfs_iq_signs(xb, weight, 32, 0, xval, signs);
        float max = xval[0];
        for (int i = 1; i < 32; i++)
            max = qfs_fmaxf_ref(max, xval[i]);
        scales[ib] = 0.0f;
        if (max == 0.0f)
            continue;
        memset(L, 0, sizeof L);
        float scale = QFS_IQ_SEARCH_SCALE(lat, &p, xval, weight, waux,
                                          max / (float)(2 * p.kmaxq - 1), max, L);
        if (scale < 0.0f) {
            scale = -scale;
            for (int k = 0; k < 4; k++)
                signs[k] = (uint8_t)~signs[k];
        }
        for (int k = 0; k < 8; k++) {
            const int g = qfs_iq_point(lat, L + 4 * k);
            y->qs[qpos + k] = (uint8_t)(g & 255);
            y->qh[ib] |= (uint8_t)((g >> 8) << k);
        }
        qpos += 8;
        for (int k = 0; k < 4; k++)
            y->signs[spos + k] = signs[k];
        spos += 4;
        scales[ib] = scale;
        max_scale = qfs_fmaxf_ref(max_scale, scale);
    }

    if (max_scale == 0.0f)
        return;
    const float d = max_scale / 31.0f;
    y->d = qfs_fp32_to_fp16(d * 1.033f);
    const float id = 1.0f / d;
    for (int ib = 0; ib < QK_K / 32; ib += 2)
        y->scales[ib / 2] = (uint8_t)(qfs_iq_scale_code(id, scales[ib], 15) |
                                      (qfs_iq_scale_code(id, scales[ib + 1], 15) << 4));
}

/* ---- IQ1_S / IQ1_M: values (-1, 0, +1) + delta, 2048-point codebook ------- */

/* Positions 0..n-1 ordered by x ascending, equal values in position order:
 * what glibc's qsort (a stable merge sort for these sizes) gives ggml. */
static inline QFS_HD void qfs_iq1_order(const float *x, int n, int *order)
{
    for (int j = 0; j < n; j++) {
        int k = j;
        while (k > 0 && x[order[k - 1]] > x[j]) {
            order[k] = order[k - 1];
            k--;
        }
        order[k] = j;
    }
}

/* ggml's iq1_find_best_neighbour2: the listed point minimising the weighted
 * squared distance of scale * xg[level] to x (signed values); first wins ties. */
static inline QFS_HD int qfs_iq1_nearest_listed(const struct qfs_iq_lattice *lat,
                                                const uint16_t *list, const float *x,
                                                const float *w, float scale, const float *xg,
                                                int8_t *L)
{
    const int count = list[0];
    float best = FLT_MAX;
    int found = list[1]; /* ggml's fallback scan only runs for inf/NaN distances */
    for (int j = 1; j <= count; j++) {
        const int8_t *lv = lat->level + 8 * list[j];
        float d2 = 0.0f;
        for (int i = 0; i < 8; i++) {
            const float diff = scale * xg[lv[i]] - x[i];
            d2 += w[i] * diff * diff;
        }
        if (d2 < best) {
            best = d2;
            found = list[j];
        }
    }
    const int8_t *lv = lat->level + 8 * found;
    for (int i = 0; i < 8; i++)
        L[i] = lv[i];
    return found;
}

/* Snap the levels of each group of 8 to the codebook (index[k]); when one
 * was off the grid, refit the scale to the snapped points.  xg[k]: the value
 * set of group k.  Returns the scale. */
static inline QFS_HD float qfs_iq1_snap(const struct qfs_iq_lattice *lat, const float *xb,
                                        const float *weight, int n, float scale,
                                        const float *const *xg, int8_t *L, uint16_t *index)
{
    int all_on_grid = 1;
    for (int k = 0; k < n / 8; k++) {
        int key = 0;
        for (int j = 0; j < 8; j++)
            key |= L[8 * k + j] << (2 * j);
        int32_t g = lat->map[key];
        if (g < 0) {
            all_on_grid = 0;
            g = QFS_IQ1_NEAREST(lat, lat->neighbours + (-g - 1), xb + 8 * k,
                                weight + 8 * k, scale, xg[k], L + 8 * k);
        }
        index[k] = (uint16_t)g;
    }
    if (!all_on_grid) {
        float sumqx = 0.0f, sumq2 = 0.0f;
        for (int k = 0; k < n / 8; k++) {
            const int8_t *lv = lat->level + 8 * index[k];
            for (int j = 0; j < 8; j++) {
                const float w = weight[8 * k + j];
                const float q = xg[k][lv[j]];
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
        if (sumqx > 0.0f && sumq2 > 0.0f)
            scale = sumqx / sumq2;
    }
    return scale;
}

static inline QFS_HD void qfs_iq1_levels(const int *order, int n, int i1, int i2, int8_t *L)
{
    for (int j = 0; j < n; j++)
        L[order[j]] = (int8_t)(j < i1 ? 0 : j < i2 ? 1 : 2);
}

/* IQ1_S's exhaustive weighted fit of one sub-block of 32: the values sorted
 * ascending split into three runs (levels -1, 0, +1) at i1 <= i2; prefix sums
 * sumx/sumw (33 each) give each split's optimal scale and score, for delta
 * +0.125 (x_p) and -0.125 (x_m), tried in that order.  The best split goes
 * to *scale, *besti1, *besti2 and *best_shift (+1 / -1); they stay as they
 * were when no split has a positive sum of squares. */
static inline QFS_HD void qfs_iq1s_split(const float *sumx, const float *sumw, const float *x_p,
                                         const float *x_m, float *scale, int *besti1,
                                         int *besti2, int *best_shift)
{
    enum { BS = 32 };
    float best_score = -FLT_MAX;
    for (int i1 = 0; i1 <= BS; i1++) {
        for (int i2 = i1; i2 <= BS; i2++) {
            const float sx0 = sumx[i1] - sumx[0], sx1 = sumx[i2] - sumx[i1],
                        sx2 = sumx[BS] - sumx[i2];
            const float sw0 = sumw[i1] - sumw[0], sw1 = sumw[i2] - sumw[i1],
                        sw2 = sumw[BS] - sumw[i2];
            float sumqx = sx0 * x_p[0] + sx1 * x_p[1] + sx2 * x_p[2];
            float sumq2 = sw0 * x_p[0] * x_p[0] + sw1 * x_p[1] * x_p[1] + sw2 * x_p[2] * x_p[2];
            if (sumq2 > 0.0f && sumqx * sumqx > best_score * sumq2) {
                *scale = sumqx / sumq2;
                best_score = *scale * sumqx;
                *besti1 = i1;
                *besti2 = i2;
                *best_shift = 1;
            }
            sumqx = sx0 * x_m[0] + sx1 * x_m[1] + sx2 * x_m[2];
            sumq2 = sw0 * x_m[0] * x_m[0] + sw1 * x_m[1] * x_m[1] + sw2 * x_m[2] * x_m[2];
            if (sumq2 > 0.0f && sumqx * sumqx > best_score * sumq2) {
                *scale = sumqx / sumq2;
                best_score = *scale * sumqx;
                *besti1 = i1;
                *besti2 = i2;
                *best_shift = -1;
            }
        }
    }
}

/* IQ1_M's fit of one sub-block of 16: as qfs_iq1s_split, but each half of 8
 * picks its own delta sign, so each split has 4 candidates k (bit 1: the
 * first half uses x_m, bit 0: the second does), tried in k order.  px0/pw0
 * and px1/pw1 (17 each): the prefix sums of the values of each half, in the
 * sorted order.  With v0 - v1 = v1 - v2 = -1 a split's sum is
 * T * v2 - px[i1] - px[i2]. */
static inline QFS_HD void qfs_iq1m_split(const float *px0, const float *px1, const float *pw0,
                                         const float *pw1, const float *x_p, const float *x_m,
                                         float *scale, int *besti1, int *besti2, int *best_k)
{
    enum { BS = 16 };
    const float *px[2] = {px0, px1}, *pw[2] = {pw0, pw1};
    float best_score = -FLT_MAX;
    const float txs[2] = {px0[BS], px1[BS]};
    const float tws[2] = {pw0[BS], pw1[BS]};
    const float p2 = x_p[2], m2 = x_m[2];
    const float cp1 = x_p[0] * x_p[0] - x_p[1] * x_p[1];
    const float cp2 = x_p[1] * x_p[1] - x_p[2] * x_p[2];
    const float cm1 = x_m[0] * x_m[0] - x_m[1] * x_m[1];
    const float cm2 = x_m[1] * x_m[1] - x_m[2] * x_m[2];
    for (int i1 = 0; i1 <= BS; i1++) {
        for (int i2 = i1; i2 <= BS; i2++) {
            float qx_p[2], qx_m[2], q2_p[2], q2_m[2];
            for (int h = 0; h < 2; h++) {
                const float sx = px[h][i1] + px[h][i2];
                qx_p[h] = txs[h] * p2 - sx;
                qx_m[h] = txs[h] * m2 - sx;
                q2_p[h] = tws[h] * p2 * p2 + pw[h][i1] * cp1 + pw[h][i2] * cp2;
                q2_m[h] = tws[h] * m2 * m2 + pw[h][i1] * cm1 + pw[h][i2] * cm2;
            }
            const float sqx[4] = {qx_p[0] + qx_p[1], qx_p[0] + qx_m[1], qx_m[0] + qx_p[1],
                                  qx_m[0] + qx_m[1]};
            const float sq2[4] = {q2_p[0] + q2_p[1], q2_p[0] + q2_m[1], q2_m[0] + q2_p[1],
                                  q2_m[0] + q2_m[1]};
            for (int k = 0; k < 4; k++) {
                if (sq2[k] > 0.0f && sqx[k] * sqx[k] > best_score * sq2[k]) {
                    *scale = sqx[k] / sq2[k];
                    best_score = *scale * sqx[k];
                    *besti1 = i1;
                    *besti2 = i2;
                    *best_k = k;
                }
            }
        }
    }
}

/* IQ1_S: 8 sub-blocks of 32, one scale and one delta sign each, 1.5625 bpw. */
static inline QFS_HD void qfs_quantize_block_iq1_s(const float *x, const float *qw,
                                                   block_iq1_s *y,
                                                   const struct qfs_iq_lattice *lat)
{
    enum { BS = 32 };
    const float x_p[3] = {-1.0f + QFS_IQ1_DELTA, QFS_IQ1_DELTA, 1.0f + QFS_IQ1_DELTA};
    const float x_m[3] = {-1.0f - QFS_IQ1_DELTA, -QFS_IQ1_DELTA, 1.0f - QFS_IQ1_DELTA};
    float scales[QK_K / BS];
    int shifts[QK_K / BS];
    float weight[BS], sumx[BS + 1], sumw[BS + 1];
    int order[BS];
    int8_t L[BS];
    uint16_t index[BS / 8];
    memset(y, 0, sizeof *y);
    float max_scale = 0.0f;
    const float sigma2 = 2.0f * qfs_iq_sumx2(x) / (float)QK_K;

    for (int ib = 0; ib < QK_K / BS; ib++) {
        const float *xb = x + BS * ib;
        qfs_iq_weights(xb, qw ? qw + BS * ib : NULL, sigma2, BS, 0, weight);
        float max = fabsf(xb[0]);
        for (int i = 1; i < BS; i++)
            max = qfs_fmaxf_ref(max, fabsf(xb[i]));
        scales[ib] = 0.0f;
        shifts[ib] = 1;
        if (max < QFS_IQ_EPS_IQ1_S)
            continue;
        /* exhaustive weighted fit over the sorted values (qfs_iq1s_split) */
        QFS_IQ1_ORDER(xb, BS, order);
        sumx[0] = sumw[0] = 0.0f;
        for (int j = 0; j < BS; j++) {
            const int i = order[j];
            sumx[j + 1] = sumx[j] + weight[i] * xb[i];
            sumw[j + 1] = sumw[j] + weight[i];
        }
        float scale = max;
        int besti1 = -1, besti2 = -1, best_shift = 0;
        QFS_IQ1S_SPLIT(sumx, sumw, x_p, x_m, &scale, &besti1, &besti2, &best_shift);
        if (besti1 < 0 || besti2 < 0 || best_shift == 0)
            continue;
        qfs_iq1_levels(order, BS, besti1, besti2, L);
        if (scale < 0.0f) {
            for (int j = 0; j < BS; j++)
                L[j] = (int8_t)(2 - L[j]);
            scale = -scale;
            best_shift = -best_shift;
        }
        const float *xx = best_shift == 1 ? x_p : x_m;
        const float *xg[BS / 8] = {xx, xx, xx, xx};
        scale = qfs_iq1_snap(lat, xb, weight, BS, scale, xg, L, index);
        uint16_t h = 0;
        for (int k = 0; k < BS / 8; k++) {
            y->qs[(BS / 8) * ib + k] = (uint8_t)(index[k] & 255);
            h |= (uint16_t)((index[k] >> 8) << (3 * k));
        }
        y->qh[ib] = h;
        scales[ib] = scale;
        shifts[ib] = best_shift;
        max_scale = qfs_fmaxf_ref(max_scale, scale);
    }

    if (max_scale == 0.0f)
        return;
    const float d = max_scale / 15.0f;
    y->d = qfs_fp32_to_fp16(d * 1.125f);
    const float id = 1.0f / d;
    for (int ib = 0; ib < QK_K / BS; ib++) {
        int l = qfs_iq_scale_code(id, scales[ib], 7);
        if (shifts[ib] == -1)
            l |= 8;
        y->qh[ib] |= (uint16_t)(l << 12);
    }
}

/* IQ1_M: 16 sub-blocks of 16, each half (8 values) with its own delta sign,
 * 3-bit scales, the f16 super-scale spread over the scales' top nibbles. */
static inline QFS_HD void qfs_quantize_block_iq1_m(const float *x, const float *qw,
                                                   block_iq1_m *y,
                                                   const struct qfs_iq_lattice *lat)
{
    enum { BS = 16 };
    const float x_p[3] = {-1.0f + QFS_IQ1_DELTA, QFS_IQ1_DELTA, 1.0f + QFS_IQ1_DELTA};
    const float x_m[3] = {-1.0f - QFS_IQ1_DELTA, -QFS_IQ1_DELTA, 1.0f - QFS_IQ1_DELTA};
    /* shift code k: bit 1 = first half uses x_m, bit 0 = second half does;
     * stored in qh as 0x08 / 0x80 */
    const uint8_t masks[4] = {0x00, 0x80, 0x08, 0x88};
    float scales[QK_K / BS];
    int shifts[QK_K / BS];
    float weight[BS];
    int order[BS];
    int8_t L[BS];
    uint16_t index[BS / 8];
    uint16_t sc[4] = {0, 0, 0, 0};
    memset(y, 0, sizeof *y);
    float max_scale = 0.0f;
    const float sigma2 = 2.0f * qfs_iq_sumx2(x) / (float)QK_K;

    for (int ib = 0; ib < QK_K / BS; ib++) {
        const float *xb = x + BS * ib;
        qfs_iq_weights(xb, qw ? qw + BS * ib : NULL, sigma2, BS, 0, weight);
        float max = fabsf(xb[0]);
        for (int i = 1; i < BS; i++)
            max = qfs_fmaxf_ref(max, fabsf(xb[i]));
        scales[ib] = 0.0f;
        shifts[ib] = 0;
        if (max < QFS_IQ_EPS_IQ1_M)
            continue;
        QFS_IQ1_ORDER(xb, BS, order);
        float scale = max;
        int besti1 = -1, besti2 = -1, best_k = -1;
        {
            /* Prefix sums per half (each half picks its delta sign) */
            float px[2][BS + 1], pw[2][BS + 1];
            px[0][0] = px[1][0] = 0.0f;
            pw[0][0] = pw[1][0] = 0.0f;
            for (int j = 0; j < BS; j++) {
                const int i = order[j];
                const int h = i < BS / 2 ? 0 : 1;
                px[h][j + 1] = px[h][j] + weight[i] * xb[i];
                px[1 - h][j + 1] = px[1 - h][j];
                pw[h][j + 1] = pw[h][j] + weight[i];
                pw[1 - h][j + 1] = pw[1 - h][j];
            }
            QFS_IQ1M_SPLIT(px[0], px[1], pw[0], pw[1], x_p, x_m, &scale, &besti1, &besti2, &best_k);
        }
        if (besti1 < 0 || besti2 < 0 || best_k < 0)
            continue;
        qfs_iq1_levels(order, BS, besti1, besti2, L);
        if (scale < 0.0f) {
            for (int j = 0; j < BS; j++)
                L[j] = (int8_t)(2 - L[j]);
            scale = -scale;
            best_k = 3 - best_k; /* both halves' delta signs flip */
        }
        const float *xg[2] = {best_k < 2 ? x_p : x_m, best_k % 2 == 0 ? x_p : x_m};
        scale = qfs_iq1_snap(lat, xb, weight, BS, scale, xg, L, index);
        y->qs[2 * ib] = (uint8_t)(index[0] & 255);
        y->qs[2 * ib + 1] = (uint8_t)(index[1] & 255);
        y->qh[ib] = (uint8_t)((index[0] >> 8) | ((index[1] >> 8) << 4));
        scales[ib] = scale;
        shifts[ib] = best_k;
        max_scale = qfs_fmaxf_ref(max_scale, scale);
    }

    if (max_scale == 0.0f)
        return;
    float d = max_scale / 15.0f;
    const float id = 1.0f / d;
    /* refit the super-scale to the coded 3-bit scales and the chosen points */
    float sumqx = 0.0f, sumq2 = 0.0f;
    for (int ib = 0; ib < QK_K / BS; ib++) {
        const int l = qfs_iq_scale_code(id, scales[ib], 7);
        sc[ib / 4] |= (uint16_t)(l << (3 * (ib % 4)));
        y->qh[ib] |= masks[shifts[ib]];
        const float *xb = x + BS * ib;
        qfs_iq_weights(xb, qw ? qw + BS * ib : NULL, sigma2, BS, 0, weight);
        for (int k = 0; k < 2; k++) {
            const float *xx = (k == 0 ? shifts[ib] < 2 : shifts[ib] % 2 == 0) ? x_p : x_m;
            const int g = y->qs[2 * ib + k] | ((y->qh[ib] << (8 - 4 * k)) & 0x700);
            const int8_t *lv = lat->level + 8 * g;
            for (int j = 0; j < 8; j++) {
                const float w = weight[8 * k + j];
                const float q = xx[lv[j]] * (float)(2 * l + 1);
                sumqx += w * q * xb[8 * k + j];
                sumq2 += w * q * q;
            }
        }
    }
    if (sumq2 > 0.0f)
        d = sumqx / sumq2;
    const uint16_t s = qfs_fp32_to_fp16(d * 1.1125f);
    sc[0] |= (uint16_t)((s & 0x000fu) << 12);
    sc[1] |= (uint16_t)((s & 0x00f0u) << 8);
    sc[2] |= (uint16_t)((s & 0x0f00u) << 4);
    sc[3] |= (uint16_t)(s & 0xf000u);
    for (int i = 0; i < 4; i++) {
        y->scales[2 * i] = (uint8_t)(sc[i] & 0xff);
        y->scales[2 * i + 1] = (uint8_t)(sc[i] >> 8);
    }
}

/* ---- dequantize ------------------------------------------------------------ */
/* grid: the codebook of iq_grids.h (byte values per coordinate).  Sign bit j
 * of a stored 7-bit sign field s is bit j of s, bit 7 the parity of s. */

static inline QFS_HD uint8_t qfs_iq_signs8(unsigned s7)
{
    unsigned p = s7 ^ (s7 >> 4);
    p ^= p >> 2;
    p ^= p >> 1;
    return (uint8_t)(s7 | ((p & 1u) << 7));
}

static inline QFS_HD void qfs_iq_put8(float db, uint64_t point, unsigned signs, float *y)
{
    for (int j = 0; j < 8; j++) {
        const float g = (float)(uint8_t)(point >> (8 * j));
        y[j] = db * g * ((signs >> j) & 1u ? -1.0f : 1.0f);
    }
}

static inline QFS_HD void qfs_dequantize_block_iq2_xxs(const block_iq2_xxs *x, float *y,
                                                       const uint64_t *grid)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        uint32_t a[2];
        memcpy(a, x->qs + 4 * ib, sizeof a);
        const float db = d * (0.5f + (float)(a[1] >> 28)) * 0.25f;
        for (int l = 0; l < 4; l++)
            qfs_iq_put8(db, grid[(a[0] >> (8 * l)) & 255], qfs_iq_signs8((a[1] >> (7 * l)) & 127),
                        y + 32 * ib + 8 * l);
    }
}

static inline QFS_HD void qfs_dequantize_block_iq2_xs(const block_iq2_xs *x, float *y,
                                                      const uint64_t *grid)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const float db[2] = {d * (0.5f + (float)(x->scales[ib] & 0xf)) * 0.25f,
                             d * (0.5f + (float)(x->scales[ib] >> 4)) * 0.25f};
        for (int l = 0; l < 4; l++) {
            const unsigned q = x->qs[4 * ib + l];
            qfs_iq_put8(db[l / 2], grid[q & 511], qfs_iq_signs8(q >> 9), y + 32 * ib + 8 * l);
        }
    }
}

static inline QFS_HD void qfs_dequantize_block_iq2_s(const block_iq2_s *x, float *y,
                                                     const uint64_t *grid)
{
    const float d = qfs_fp16_to_fp32(x->d);
    const uint8_t *signs = x->qs + QK_K / 8;
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const float db[2] = {d * (0.5f + (float)(x->scales[ib] & 0xf)) * 0.25f,
                             d * (0.5f + (float)(x->scales[ib] >> 4)) * 0.25f};
        for (int l = 0; l < 4; l++) {
            const int g = x->qs[4 * ib + l] | ((x->qh[ib] << (8 - 2 * l)) & 0x300);
            qfs_iq_put8(db[l / 2], grid[g], signs[4 * ib + l], y + 32 * ib + 8 * l);
        }
    }
}

static inline QFS_HD void qfs_dequantize_block_iq3_xxs(const block_iq3_xxs *x, float *y,
                                                       const uint32_t *grid)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        uint32_t a;
        memcpy(&a, x->qs + QK_K / 4 + 4 * ib, sizeof a);
        const float db = d * (0.5f + (float)(a >> 28)) * 0.5f;
        for (int l = 0; l < 4; l++) {
            const uint64_t point = (uint64_t)grid[x->qs[8 * ib + 2 * l]] |
                                   ((uint64_t)grid[x->qs[8 * ib + 2 * l + 1]] << 32);
            qfs_iq_put8(db, point, qfs_iq_signs8((a >> (7 * l)) & 127), y + 32 * ib + 8 * l);
        }
    }
}

static inline QFS_HD void qfs_dequantize_block_iq3_s(const block_iq3_s *x, float *y,
                                                     const uint32_t *grid)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const int nib = (x->scales[ib / 2] >> (4 * (ib % 2))) & 0xf;
        const float db = d * (float)(1 + 2 * nib);
        for (int l = 0; l < 4; l++) {
            const int g1 = x->qs[8 * ib + 2 * l] | ((x->qh[ib] << (8 - 2 * l)) & 256);
            const int g2 = x->qs[8 * ib + 2 * l + 1] | ((x->qh[ib] << (7 - 2 * l)) & 256);
            const uint64_t point = (uint64_t)grid[g1] | ((uint64_t)grid[g2] << 32);
            qfs_iq_put8(db, point, x->signs[4 * ib + l], y + 32 * ib + 8 * l);
        }
    }
}

static inline QFS_HD void qfs_iq1_put8(float dl, uint64_t point, float delta, float *y)
{
    for (int j = 0; j < 8; j++)
        y[j] = dl * ((float)(int8_t)(uint8_t)(point >> (8 * j)) + delta);
}

static inline QFS_HD void qfs_dequantize_block_iq1_s(const block_iq1_s *x, float *y,
                                                     const uint64_t *grid)
{
    const float d = qfs_fp16_to_fp32(x->d);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const unsigned qh = x->qh[ib];
        const float dl = d * (float)(2 * ((qh >> 12) & 7) + 1);
        const float delta = qh & 0x8000u ? -QFS_IQ1_DELTA : QFS_IQ1_DELTA;
        for (int l = 0; l < 4; l++)
            qfs_iq1_put8(dl, grid[x->qs[4 * ib + l] | (((qh >> (3 * l)) & 7) << 8)], delta,
                         y + 32 * ib + 8 * l);
    }
}

static inline QFS_HD void qfs_dequantize_block_iq1_m(const block_iq1_m *x, float *y,
                                                     const uint64_t *grid)
{
    uint16_t sc[4];
    for (int i = 0; i < 4; i++)
        sc[i] = (uint16_t)(x->scales[2 * i] | (x->scales[2 * i + 1] << 8));
    const uint16_t s = (uint16_t)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00f0) | ((sc[2] >> 4) & 0x0f00) |
                                  (sc[3] & 0xf000));
    const float d = qfs_fp16_to_fp32(s);
    for (int ib = 0; ib < QK_K / 32; ib++) {
        const float dl1 = d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2))) & 7) + 1);
        const float dl2 = d * (float)(2 * ((sc[ib / 2] >> (6 * (ib % 2) + 3)) & 7) + 1);
        for (int l = 0; l < 4; l++) {
            const unsigned qh = x->qh[2 * ib + l / 2];
            const int g = x->qs[4 * ib + l] | ((qh << (l % 2 ? 4 : 8)) & 0x700);
            const float delta = qh & (l % 2 ? 0x80u : 0x08u) ? -QFS_IQ1_DELTA : QFS_IQ1_DELTA;
            qfs_iq1_put8(l < 2 ? dl1 : dl2, grid[g], delta, y + 32 * ib + 8 * l);
        }
    }
}

#endif
