/* AWQ (4-bit, zero point, groups along the input dimension) in AutoAWQ's GEMM layout.
 * Layout: awq.h.  Written from AutoAWQ's quantizer (awq/quantize/quantizer.py,
 * awq/quantize/scale.py, awq/modules/linear/gemm.py) and llama models' scaling groups
 * (awq/models/llama.py); no code is shared with them.
 *
 * Quantization of one group of g weights v (one output row, g consecutive input columns):
 *   max, min over v; scale = max(max - min, 1e-5) / 15 in float32, rounded once to fp16
 *   (the stored value); zero = clamp(-rint(min / scale), 0, 15);
 *   q = clamp(rint(v / scale) + zero, 0, 15); rint rounds half to even as torch.round.
 *   AutoAWQ runs the same formula on fp16 tensors (its model is loaded in fp16 and
 *   _apply_quant calls .half()), so every intermediate (max - min, / 15, v / scale, + zero)
 *   is rounded to fp16 there; we keep float32 and round the scale only.  AutoAWQ then
 *   re-derives q = round((deq + zero * scale) / scale) when packing (gemm.py from_linear);
 *   we store q directly (the same value in exact arithmetic, and always within 0..15).
 *
 * Round-to-nearest mode (no importance matrix): the weights are quantized as they are.
 *
 * Activation-aware mode (m->imatrix set), per decoder block, following AutoAWQ's
 * quantize(): (1) search one scale vector per scaling group on the ORIGINAL weights,
 * (2) apply them all, (3) fit each quant group of the scaled linears (fit_group, where
 * AutoAWQ searches clipping), (4) quantize.  A group is scaled only when the importance
 * matrix singles out channels of its input (salient(): on llama models the inputs of
 * o_proj and down_proj; the RMSNorm'd inputs of q/k/v and gate/up are flat).
 *   Scaling groups (llama.py get_layers_for_scaling), applied in this order:
 *     qkv:  q, k, v      input: input_layernorm     (norm weight /= s, columns *= s)
 *     o:    o            input: v's output          (v rows /= s, o columns *= s) only
 *                                                    when v and o have the same shape
 *     gu:   gate, up     input: post_attention_layernorm
 *     down: down         input: up's output         (up rows /= s)
 *   So v = (W_v * s_qkv[col]) / s_o[row], up = (W_up * s_gu[col]) / s_down[row]; a
 *   group is skipped (s = 1) when one of its linears is not quantized, the imatrix has
 *   no entry for its first linear, or that entry is flat.
 *   Scale search (_compute_best_scale, duo_scaling = True, AutoAWQ's default): with
 *   x_mean[j] the mean |x_j| of the group's input and w_mean[j] the mean over all rows of
 *   all its linears of |w| / (max |w| of its quant group + 1e-6), for ratio = i/20,
 *   i = 0..19:  s = clamp(x_mean^ratio / (w_mean^(1-ratio) + 1e-4), 1e-4),
 *   s /= sqrt(max(s) * min(s)), non-finite s -> 1; the first ratio of least loss wins,
 *   if its loss is below that of s = 1 (not a grid point in AutoAWQ; here it is the
 *   default, so the search never makes the group worse by its own measure).
 *   Fit (the linears of an active group but q and k, which AutoAWQ does not clip either):
 *   per quant group, the (scale, zero) of least weighted error among scales
 *   range/15 * (1 + i/40), i = 0..10, and zero points whose 16 levels still cover the
 *   group's [min, max]; i = 0 is round-to-nearest.
 * Where this differs from AutoAWQ:
 *   - Statistics: we have no calibration forward pass, only llama.cpp's importance matrix
 *     I[j] = mean x_j^2 of each linear's input.  x_mean = sqrt(I) (the RMS instead of the
 *     mean absolute value).
 *   - Loss: AutoAWQ measures the MSE of the block's output (self_attn / mlp / the
 *     linear) on calibration tokens.  We use the diagonal of that quadratic form: the
 *     scale loss is sum over the group's linears, rows o, columns j of
 *     I[j] * (w[o][j] - Q(w[o][j] * s[j]) / s[j])^2, the fit loss of a quant group is
 *     sum_j I[j] / s[j]^2 * (Q(ws) - ws)[j]^2 (ws: the scaled weights; the inputs are
 *     divided by s).  Cross terms between columns (correlated activations) and
 *     attention's nonlinearity are not seen.  The imatrix entry of the group's first
 *     linear is used for the group (q/k/v, and gate/up, share their input).
 *   - Which groups, and no clipping.  With this diagonal loss, every search we tried on
 *     the flat-input groups (scales on q/k/v or gate/up, clipping or the fit on v, o,
 *     gate, up) made the model worse than round-to-nearest on tinyllama-256 (perplexity
 *     and KL divergence from F16, README "AWQ"); clipping made down_proj closer to F16
 *     in KL but raised perplexity, the range-preserving fit improves both.  So: scales
 *     only where the statistics are not flat, the fit instead of clipping, s = 1 kept.
 *   - Arithmetic: float32 throughout (AutoAWQ: fp16 weights, fp16 scaled weights and
 *     folded norms); losses are summed in double in a fixed order.  pow is evaluated in
 *     double and rounded to float.
 * Determinism: every loop runs in a fixed order, no threads inside one computation, no
 * FMA contraction (-ffp-contract=off); the scales of a group are computed once per model
 * (memoized, thread-safe) and every chunk that needs them keys the sources they read. */
#include "awq.h"

#include "../format.h"
#include "../stout.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern const struct qfs_format qfs_format_awq;

#include "../../util/json_file.h"
#include "../../util/log.h"
#include "../gguf/gguf_file.h"

/* Output chunks of about this many bytes (qweight; the matching qzeros/scales chunks are
 * the same groups).  Part of the chunk keys through the row range. */
#define CHUNK_TARGET (1u << 20)
#define N_GRID 20      /* scale ratios 0/20 .. 19/20 */
#define N_FIT 10       /* fit_group's scale candidates beyond round-to-nearest's */
#define PACK_ORDER {0, 2, 4, 6, 1, 3, 5, 7}

enum lin_kind { L_Q, L_K, L_V, L_O, L_GATE, L_UP, L_DOWN, L_N };
enum grp_kind { G_QKV, G_O, G_GU, G_DOWN, G_N };

/* A scaling group: its linears (they share an input), and what produces that input: a
 * norm (fold_norm, a 1-D tensor of the block) or the rows of a previous linear (prev_lin;
 * with prev_upper_half only its second half of rows: Phi-3's fused gate_up_proj, whose up
 * half feeds down_proj). */
struct awq_group_def {
    int lins[3], n;
    int prev_lin;           /* -1: a norm */
    bool prev_upper_half;
    const char *fold_norm;  /* with prev_lin -1: the norm's name in the block */
};

/* AutoAWQ's layout of one model family (awq/models/<family>.py get_layers_for_scaling): the
 * block's linears by kind (NULL: the family has none of that kind) and the scaling groups.
 * norm_offset: the family's RMSNorm multiplies by 1 + w, so a scale s folds as
 * (1 + w) / s - 1 (AutoAWQ's Gemma rule). */
struct awq_family {
    const char *arch;       /* GGUF architecture name (codecs/source/arch.c) */
    const char *lin[L_N];
    struct awq_group_def groups[G_N];
    bool norm_offset;
};

#define LLAMA_LINS                                                                        \
    {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",    \
     "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"}
#define LLAMA_GROUPS(gu_norm)                                                             \
    {{{L_Q, L_K, L_V}, 3, -1, false, "input_layernorm.weight"},                         \
     {{L_O}, 1, L_V, false, NULL},                                                         \
     {{L_GATE, L_UP}, 2, -1, false, gu_norm},                                              \
     {{L_DOWN}, 1, L_UP, false, NULL}}

static const struct awq_family families[] = {
    {"llama", LLAMA_LINS, LLAMA_GROUPS("post_attention_layernorm.weight"), false},
    {"qwen2", LLAMA_LINS, LLAMA_GROUPS("post_attention_layernorm.weight"), false},
    {"qwen3", LLAMA_LINS, LLAMA_GROUPS("post_attention_layernorm.weight"), false},
    /* Gemma 3: pre_feedforward_layernorm feeds the MLP (post_attention_layernorm normalises
     * the attention's output) */
    {"gemma3", LLAMA_LINS, LLAMA_GROUPS("pre_feedforward_layernorm.weight"), true},
    /* Phi-3: fused qkv_proj and gate_up_proj; qkv -> o is skipped (AutoAWQ divides the last
     * rows of qkv_proj, which are v's only without GQA) */
    {"phi3",
     {"self_attn.qkv_proj", NULL, NULL, "self_attn.o_proj", "mlp.gate_up_proj", NULL,
      "mlp.down_proj"},
     {{{L_Q}, 1, -1, false, "input_layernorm.weight"},
      {{0}, 0, -1, false, NULL},
      {{L_GATE}, 1, -1, false, "post_attention_layernorm.weight"},
      {{L_DOWN}, 1, L_GATE, true, NULL}},
     false},
};

static const struct awq_family *family_of(const struct qfs_model *m)
{
    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++)
        if (!strcmp(families[i].arch, m->cfg.arch->gguf))
            return &families[i];
    return NULL;
}

/* One linear layer of a decoder block. */
struct awq_lin {
    int src;          /* index into st->tensors, -1: absent */
    int64_t out, in;
    int quantized;    /* in % g == 0 && out % 8 == 0 */
    int col_grp;      /* scaling group whose s multiplies the columns, or -1 */
    int row_grp;      /* scaling group whose s divides rows [row_off, row_off + in of the
                         group), or -1 */
    int64_t row_off;
    const float *im;  /* this linear's imatrix (in values) for clipping, or NULL */
    struct qfs_cache_key im_hash;
};

/* One scaling group; its scales are computed on first use. */
struct awq_grp {
    int kind;
    int active;
    int lins[3], n_lins;        /* indices into st->lin */
    const float *im;            /* in values */
    struct qfs_cache_key im_hash;
    int64_t in;
    pthread_mutex_t lock;       /* protects done and s (computed under it: single flight) */
    int done;
    float *s;                   /* in scales */
};

enum t_kind { T_F16, T_F16_LIN, T_QWEIGHT, T_QZEROS, T_SCALES };

struct awq_tensor {
    struct awq_state *st;
    int kind;
    int src;       /* index into st->tensors */
    int lin;       /* T_F16_LIN / T_Q*: index into lin, else -1 */
    int fold_grp;  /* T_F16 (1-D): group whose s divides the elements, or -1 */
    bool fold_offset; /* the elements are offsets from 1 (family norm_offset, norms) */
    int64_t groups_per_chunk; /* T_Q*: quant groups per chunk */
};

struct awq_state {
    const struct awq_family *fam;
    const struct qfs_st_model *stm;
    struct qfs_src_memo *memos;
    int g;
    int aware;
    struct awq_lin *lin;
    int n_lin;
    struct awq_grp *grp;
    int n_grp;
    struct awq_tensor *ts; /* one per vf->tensors entry */
};

static void state_free(void *p)
{
    struct awq_state *s = p;
    if (!s)
        return;
    for (int i = 0; i < s->n_grp; i++) {
        pthread_mutex_destroy(&s->grp[i].lock);
        free(s->grp[i].s);
    }
    free(s->grp);
    free(s->lin);
    free(s->ts);
    free(s);
}

int qfs_awq_group_ok(int g)
{
    return g == 32 || g == 64 || g == 128;
}

/* ---- quantization of one group (the single source of truth for the bytes) ---- */

static float f16_round(float x)
{
    return qfs_f16_to_f32(qfs_f32_to_f16(x));
}

/* Quantize the n values v: *scale (an fp16 value), *zero, and q[] (may be NULL).
 * Returns nothing; cannot fail. */
/* min and max of v[0..n), and the range AutoAWQ divides: max(max - min, 1e-5). */
static float group_range(const float *v, int64_t n, float *mn_out, float *mx_out)
{
    float mx = v[0], mn = v[0];
    for (int64_t i = 1; i < n; i++) {
        if (v[i] > mx)
            mx = v[i];
        if (v[i] < mn)
            mn = v[i];
    }
    *mn_out = mn;
    *mx_out = mx;
    float range = mx - mn;
    return range >= 1e-5f ? range : 1e-5f;
}

static void quant_group(const float *v, int64_t n, float *scale, int *zero, uint8_t *q)
{
    float mn, mx;
    const float range = group_range(v, n, &mn, &mx);
    float sc = f16_round(range / 15.0f);
    if (!(sc <= 65504.0f))
        sc = 65504.0f;
    float z = -rintf(mn / sc);
    z = z < 0.0f ? 0.0f : z > 15.0f ? 15.0f : z;
    *scale = sc;
    *zero = (int)z;
    if (q) {
        for (int64_t i = 0; i < n; i++) {
            float x = rintf(v[i] / sc) + z;
            q[i] = (uint8_t)(x < 0.0f ? 0.0f : x > 15.0f ? 15.0f : x);
        }
    }
}

/* The weighted error of quantizing v with (sc, zero): sum of wt[i] * e_i^2 with
 * e_i = orig[i] - dequantized(v[i]) / inv[i] (inv NULL: 1).  The callers' forms: the scale
 * search (v = w * s, orig = w, inv = s) and the fit (v = orig, inv NULL). */
static double fit_loss(const float *v, const float *orig, const float *inv, const float *wt,
                       int64_t n, float sc, int zero)
{
    const float zf = (float)zero;
    double loss = 0.0;
    for (int64_t i = 0; i < n; i++) {
        float x = rintf(v[i] / sc) + zf;
        x = x < 0.0f ? 0.0f : x > 15.0f ? 15.0f : x;
        float d = (x - zf) * sc;
        if (inv)
            d = d / inv[i];
        float e = orig[i] - d;
        loss += (double)wt[i] * (double)e * (double)e;
    }
    return loss;
}

/* fit_loss with the round-to-nearest (scale, zero) of v. */
static double group_loss(const float *v, const float *orig, const float *inv, const float *wt,
                         int64_t n)
{
    float sc;
    int z;
    quant_group(v, n, &sc, &z, NULL);
    return fit_loss(v, orig, inv, wt, n, sc, z);
}

/* Activation-aware fit of one group (instead of AutoAWQ's clipping, see the top comment):
 * among scales range/15 * (1 + i/40), i = 0..N_FIT, each with the zero points
 * floor/ceil(-min/scale) for which the 16 levels still cover [min, max], the (scale, zero)
 * of least weighted error; the round-to-nearest pair (i = 0) unless another is strictly
 * better.  Nothing is clipped: every weight keeps its side and magnitude to within a step. */
static void fit_group(const float *v, const float *wt, int64_t n, float *scale, int *zero,
                      uint8_t *q)
{
    quant_group(v, n, scale, zero, NULL);
    double best = fit_loss(v, v, NULL, wt, n, *scale, *zero);
    float mn, mx;
    const float range = group_range(v, n, &mn, &mx);
    for (int i = 1; i <= N_FIT && best > 0.0; i++) {
        const float sc = f16_round(range / 15.0f * (1.0f + (float)i / 40.0f));
        if (!(sc <= 65504.0f))
            break;
        for (int up = 0; up < 2; up++) {
            const float zf = up ? ceilf(-mn / sc) : floorf(-mn / sc);
            if (!(zf >= 0.0f && zf <= 15.0f) || -zf * sc > mn || (15.0f - zf) * sc < mx)
                continue;
            const double loss = fit_loss(v, v, NULL, wt, n, sc, (int)zf);
            if (loss < best) {
                best = loss;
                *scale = sc;
                *zero = (int)zf;
            }
        }
    }
    for (int64_t i = 0; i < n; i++) {
        const float x = rintf(v[i] / *scale) + (float)*zero;
        q[i] = (uint8_t)(x < 0.0f ? 0.0f : x > 15.0f ? 15.0f : x);
    }
}

/* ---- reading the source ---- */

/* rows [o0, o1) x columns [c0, c1) of 2-D source tensor src as float. */
static void read_block(const struct qfs_st_tensor *src, int64_t o0, int64_t o1, int64_t c0,
                       int64_t c1, float *dst)
{
    const int64_t in = src->shape[1];
    const size_t esz = qfs_dtype_size(src->dtype);
    for (int64_t o = o0; o < o1; o++)
        qfs_to_f32(src->dtype, src->data + ((uint64_t)o * (uint64_t)in + (uint64_t)c0) * esz,
                   dst + (o - o0) * (c1 - c0), c1 - c0);
}

/* ---- scale search (memoized per group) ---- */

static int compute_scales(struct awq_state *st, struct awq_grp *gp)
{
    const int64_t in = gp->in, g = st->g;
    float *w[3] = {0}, *s = NULL, *cand = NULL, *xm = NULL, *wm = NULL, *tmp = NULL;
    double *acc = NULL;
    int rc = -ENOMEM;
    int64_t rows_total = 0;
    for (int k = 0; k < gp->n_lins; k++) {
        const struct awq_lin *l = &st->lin[gp->lins[k]];
        w[k] = malloc((size_t)(l->out * in) * sizeof(float));
        if (!w[k])
            goto out;
        read_block(&st->stm->tensors[l->src], 0, l->out, 0, in, w[k]);
        rows_total += l->out;
    }
    s = malloc((size_t)in * sizeof *s);
    cand = malloc((size_t)in * sizeof *cand);
    xm = malloc((size_t)in * sizeof *xm);
    wm = malloc((size_t)in * sizeof *wm);
    tmp = malloc((size_t)g * sizeof *tmp);
    acc = calloc((size_t)in, sizeof *acc);
    if (!s || !cand || !xm || !wm || !tmp || !acc)
        goto out;
    /* x_mean: sqrt of the mean square (see the top comment) */
    for (int64_t j = 0; j < in; j++)
        xm[j] = sqrtf(gp->im[j]);
    /* w_mean: |w| / (group max |w| + 1e-6), averaged over every row of every linear */
    for (int k = 0; k < gp->n_lins; k++) {
        const struct awq_lin *l = &st->lin[gp->lins[k]];
        for (int64_t o = 0; o < l->out; o++) {
            const float *row = w[k] + o * in;
            for (int64_t c = 0; c < in; c += g) {
                float amax = 0.0f;
                for (int64_t j = c; j < c + g; j++)
                    if (fabsf(row[j]) > amax)
                        amax = fabsf(row[j]);
                const float den = amax + 1e-6f;
                for (int64_t j = c; j < c + g; j++)
                    acc[j] += (double)(fabsf(row[j]) / den);
            }
        }
    }
    for (int64_t j = 0; j < in; j++)
        wm[j] = (float)(acc[j] / (double)rows_total);

    /* The unscaled weights are the first candidate: a grid point must do strictly better
     * than leaving the group alone (AutoAWQ's grid has no identity point). */
    double best = 0.0;
    for (int k = 0; k < gp->n_lins; k++) {
        const struct awq_lin *l = &st->lin[gp->lins[k]];
        for (int64_t o = 0; o < l->out; o++) {
            const float *row = w[k] + o * in;
            for (int64_t c = 0; c < in; c += g)
                best += group_loss(row + c, row + c, NULL, gp->im + c, g);
        }
    }
    for (int64_t j = 0; j < in; j++)
        s[j] = 1.0f;
    if (!(best < INFINITY)) /* NaN or infinite source weights: leave the group unscaled */
        goto done;
    for (int i = 0; i < N_GRID; i++) {
        const double ratio = (double)i / N_GRID;
        float smax = 0.0f, smin = INFINITY;
        for (int64_t j = 0; j < in; j++) {
            float a = (float)pow((double)xm[j], ratio);
            float b = (float)pow((double)wm[j], 1.0 - ratio);
            float x = a / (b + 1e-4f);
            if (!(x >= 1e-4f))
                x = isnan(x) ? x : 1e-4f;
            cand[j] = x;
            if (x > smax)
                smax = x;
            if (x < smin)
                smin = x;
        }
        const float norm = (float)sqrt((double)smax * (double)smin);
        for (int64_t j = 0; j < in; j++) {
            float x = cand[j] / norm;
            cand[j] = isfinite(x) ? x : 1.0f;
        }
        double loss = 0.0;
        for (int k = 0; k < gp->n_lins; k++) {
            const struct awq_lin *l = &st->lin[gp->lins[k]];
            for (int64_t o = 0; o < l->out; o++) {
                const float *row = w[k] + o * in;
                for (int64_t c = 0; c < in; c += g) {
                    for (int64_t j = 0; j < g; j++)
                        tmp[j] = row[c + j] * cand[c + j];
                    loss += group_loss(tmp, row + c, cand + c, gp->im + c, g);
                }
            }
        }
        if (loss < best) {
            best = loss;
            memcpy(s, cand, (size_t)in * sizeof *s);
        }
    }
done:
    gp->s = s;
    s = NULL;
    rc = 0;
out:
    for (int k = 0; k < 3; k++)
        free(w[k]);
    free(s);
    free(cand);
    free(xm);
    free(wm);
    free(tmp);
    free(acc);
    return rc;
}

/* The scales of group gi (NULL when gi < 0 or inactive); 0 or -ENOMEM. */
static int group_scales(struct awq_state *st, int gi, const float **out)
{
    *out = NULL;
    if (gi < 0 || !st->grp[gi].active)
        return 0;
    struct awq_grp *gp = &st->grp[gi];
    pthread_mutex_lock(&gp->lock);
    int rc = gp->done ? 0 : compute_scales(st, gp);
    if (rc == 0) {
        gp->done = 1;
        *out = gp->s;
    }
    pthread_mutex_unlock(&gp->lock);
    return rc;
}

/* ---- producing chunks ---- */

static int64_t chunk_rows(const struct qfs_vtensor *t, int64_t chunk, int64_t *row0)
{
    *row0 = chunk * t->rows_per_chunk;
    int64_t n = t->nrows - *row0;
    return n < t->rows_per_chunk ? n : t->rows_per_chunk;
}

static void put_f16(uint8_t *dst, float x)
{
    uint16_t h = qfs_f32_to_f16(x);
    dst[0] = (uint8_t)h;
    dst[1] = (uint8_t)(h >> 8);
}

static void put_u32(uint8_t *dst, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        dst[i] = (uint8_t)(v >> (8 * i));
}

/* A quantized linear's chunk: quant groups [q0, q0 + nq) along the input. */
static int produce_quant(const struct awq_tensor *at, const struct qfs_vtensor *t, int64_t q0,
                         int64_t nq, uint8_t *dst)
{
    struct awq_state *st = at->st;
    const struct awq_lin *l = &st->lin[at->lin];
    const int64_t g = st->g, out = l->out, cols = nq * g, c0 = q0 * g;
    const float *sc = NULL, *sr = NULL;
    int rc;
    if ((rc = group_scales(st, l->col_grp, &sc)) < 0 || (rc = group_scales(st, l->row_grp, &sr)) < 0)
        return rc;
    float *w = malloc((size_t)(out * cols) * sizeof *w);
    float *wt = malloc((size_t)g * sizeof *wt);
    float *scales = malloc((size_t)(out * nq) * sizeof *scales);
    uint8_t *zeros = malloc((size_t)(out * nq));
    uint8_t *q = at->kind == T_QWEIGHT ? malloc((size_t)(out * cols)) : NULL;
    rc = -ENOMEM;
    if (!w || !wt || !scales || !zeros || (at->kind == T_QWEIGHT && !q))
        goto out;
    read_block(&st->stm->tensors[l->src], 0, out, c0, c0 + cols, w);
    /* apply order: columns (the group this linear belongs to), then rows (the next) */
    for (int64_t o = 0; o < out; o++) {
        float *row = w + o * cols;
        if (sc)
            for (int64_t j = 0; j < cols; j++)
                row[j] = row[j] * sc[c0 + j];
        if (sr && o >= l->row_off)
            for (int64_t j = 0; j < cols; j++)
                row[j] = row[j] / sr[o - l->row_off];
    }
    for (int64_t o = 0; o < out; o++) {
        for (int64_t k = 0; k < nq; k++) {
            float *v = w + o * cols + k * g;
            int z;
            float s;
            uint8_t qg[128];
            if (l->im) { /* the fit on the scaled weights, weighted as their inputs */
                for (int64_t j = 0; j < g; j++) {
                    const float cs = sc ? sc[c0 + k * g + j] : 1.0f;
                    wt[j] = l->im[c0 + k * g + j] / (cs * cs);
                }
                fit_group(v, wt, g, &s, &z, qg);
            } else {
                quant_group(v, g, &s, &z, qg);
            }
            scales[o * nq + k] = s;
            zeros[o * nq + k] = (uint8_t)z;
            if (q)
                for (int64_t j = 0; j < g; j++)
                    q[(k * g + j) * out + o] = qg[j]; /* transposed: [input][output] */
        }
    }
    static const int order[8] = PACK_ORDER;
    const int64_t words = out / 8;
    if (at->kind == T_QWEIGHT) {
        for (int64_t j = 0; j < cols; j++)
            for (int64_t c = 0; c < words; c++) {
                uint32_t word = 0;
                for (int i = 0; i < 8; i++)
                    word |= (uint32_t)q[j * out + 8 * c + order[i]] << (4 * i);
                put_u32(dst + (j * words + c) * 4, word);
            }
    } else if (at->kind == T_QZEROS) {
        for (int64_t k = 0; k < nq; k++)
            for (int64_t c = 0; c < words; c++) {
                uint32_t word = 0;
                for (int i = 0; i < 8; i++)
                    word |= (uint32_t)zeros[(8 * c + order[i]) * nq + k] << (4 * i);
                put_u32(dst + (k * words + c) * 4, word);
            }
    } else {
        for (int64_t k = 0; k < nq; k++)
            for (int64_t o = 0; o < out; o++)
                put_f16(dst + (k * out + o) * 2, scales[o * nq + k]);
    }
    (void)t;
    rc = 0;
out:
    free(w);
    free(wt);
    free(scales);
    free(zeros);
    free(q);
    return rc;
}

static int awq_produce(const struct qfs_vtensor *t, int64_t chunk, uint8_t *dst)
{
    const struct awq_tensor *at = t->codec;
    struct awq_state *st = at->st;
    int64_t row0;
    const int64_t nrows = chunk_rows(t, chunk, &row0);
    if (at->kind == T_QWEIGHT)
        return produce_quant(at, t, row0 / st->g, nrows / st->g, dst);
    if (at->kind == T_QZEROS || at->kind == T_SCALES)
        return produce_quant(at, t, row0, nrows, dst);

    /* F16 tensors: rows [row0, row0 + nrows) of row_elems */
    const struct qfs_st_tensor *src = &st->stm->tensors[at->src];
    const float *fold = NULL, *sc = NULL, *sr = NULL;
    int rc;
    if (at->kind == T_F16 && (rc = group_scales(st, at->fold_grp, &fold)) < 0)
        return rc;
    if (at->kind == T_F16_LIN) {
        const struct awq_lin *l = &st->lin[at->lin];
        if ((rc = group_scales(st, l->col_grp, &sc)) < 0 ||
            (rc = group_scales(st, l->row_grp, &sr)) < 0)
            return rc;
    }
    const int64_t n = t->row_elems;
    const int64_t row_off = at->kind == T_F16_LIN ? st->lin[at->lin].row_off : 0;
    const size_t esz = qfs_dtype_size(src->dtype);
    if (src->dtype == QFS_DT_F16 && !fold && !sc && !sr) {
        memcpy(dst, src->data + (uint64_t)row0 * (uint64_t)n * esz, (size_t)(nrows * n) * esz);
        return 0;
    }
    float *f = malloc((size_t)n * sizeof *f);
    if (!f)
        return -ENOMEM;
    for (int64_t r = 0; r < nrows; r++) {
        qfs_to_f32(src->dtype, src->data + (uint64_t)(row0 + r) * (uint64_t)n * esz, f, n);
        for (int64_t j = 0; j < n; j++) {
            float x = f[j];
            if (fold)
                x = at->fold_offset ? (1.0f + x) / fold[j] - 1.0f : x / fold[j];
            if (sc)
                x = x * sc[j];
            if (sr && row0 + r >= row_off)
                x = x / sr[row0 + r - row_off];
            put_f16(dst + (r * n + j) * 2, x);
        }
    }
    free(f);
    return 0;
}

/* ---- chunk keys ---- */

static int add_src(struct qfs_cache_keybuf *kb, struct awq_state *st, int idx)
{
    const struct qfs_st_tensor *s = &st->stm->tensors[idx];
    struct qfs_cache_key h;
    qfs_src_memo_hash(&st->memos[idx], s, &h);
    int rc = qfs_keybuf_add(kb, h.b, sizeof h.b);
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)s->dtype);
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)s->n_dims);
    for (int d = 0; d < s->n_dims; d++)
        rc |= qfs_keybuf_add_u64(kb, (uint64_t)s->shape[d]);
    return rc;
}

/* Everything group gi's scales are computed from. */
static int add_grp(struct qfs_cache_keybuf *kb, struct awq_state *st, int gi)
{
    if (gi < 0 || !st->grp[gi].active)
        return qfs_keybuf_add_u64(kb, UINT64_MAX);
    const struct awq_grp *gp = &st->grp[gi];
    int rc = qfs_keybuf_add_u64(kb, (uint64_t)gp->kind);
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)gp->n_lins);
    for (int k = 0; k < gp->n_lins; k++)
        rc |= add_src(kb, st, st->lin[gp->lins[k]].src);
    rc |= qfs_keybuf_add(kb, gp->im_hash.b, sizeof gp->im_hash.b);
    return rc;
}

static int awq_key(const struct qfs_vfile *vf, const struct qfs_vtensor *t, int64_t chunk,
                   struct qfs_cache_key *key)
{
    const struct awq_tensor *at = t->codec;
    struct awq_state *st = at->st;
    int64_t row0;
    const int64_t nrows = chunk_rows(t, chunk, &row0);
    struct qfs_cache_keybuf kb;
    qfs_keybuf_init(&kb);
    int rc = qfs_keybuf_add(&kb, "quantfs-awq-chunk", 17);
    rc |= qfs_keybuf_add_u64(&kb, vf->codec_version);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)st->g);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)at->kind);
    rc |= add_src(&kb, st, at->src);
    if (at->kind == T_F16) {
        rc |= add_grp(&kb, st, at->fold_grp);
    } else {
        const struct awq_lin *l = &st->lin[at->lin];
        rc |= add_grp(&kb, st, l->col_grp);
        rc |= add_grp(&kb, st, l->row_grp);
        rc |= qfs_keybuf_add_u64(&kb, l->im != NULL);
        if (l->im)
            rc |= qfs_keybuf_add(&kb, l->im_hash.b, sizeof l->im_hash.b);
    }
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)t->row_elems);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)row0);
    rc |= qfs_keybuf_add_u64(&kb, (uint64_t)nrows);
    qfs_keybuf_finish(&kb, key);
    return rc ? -ENOMEM : 0;
}

static const struct qfs_vtensor_ops awq_ops = {.produce = awq_produce, .key = awq_key};

/* ---- naming and the plan ---- */

/* "model.layers.N.<lin>.weight" -> block N and the kind of the family's linear <lin>; -1
 * when it is none of them. */
static int parse_linear(const struct awq_family *f, const char *name, long *block)
{
    const char *pre = "model.layers.";
    if (strncmp(name, pre, strlen(pre)) != 0)
        return -1;
    const char *p = name + strlen(pre);
    if (*p < '0' || *p > '9')
        return -1;
    char *end;
    long b = strtol(p, &end, 10);
    if (*end != '.' || b < 0 || b > 1000000)
        return -1;
    for (int k = 0; k < L_N; k++) {
        if (!f->lin[k])
            continue;
        size_t n = strlen(f->lin[k]);
        if (strncmp(end + 1, f->lin[k], n) == 0 && strcmp(end + 1 + n, ".weight") == 0) {
            *block = b;
            return k;
        }
    }
    return -1;
}

/* "model.layers.N.<what>" -> block N, or -1. */
static long block_of(const char *name, const char *what)
{
    const char *pre = "model.layers.";
    if (strncmp(name, pre, strlen(pre)) != 0)
        return -1;
    const char *p = name + strlen(pre);
    if (*p < '0' || *p > '9')
        return -1;
    char *end;
    long b = strtol(p, &end, 10);
    if (*end != '.' || strcmp(end + 1, what) != 0 || b < 0 || b > 1000000)
        return -1;
    return b;
}

static int lin_quantizable(const struct qfs_st_tensor *s, int g)
{
    return s->n_dims == 2 && s->shape[1] > 0 && s->shape[1] % g == 0 && s->shape[0] > 0 &&
           s->shape[0] % 8 == 0;
}

static int group_of(int g)
{
    return g ? g : QFS_AWQ_DEFAULT_GROUP;
}

/* Do the activation statistics single out channels?  The coefficient of variation of
 * the per-channel mean squares I[j] (std / mean) is at least SALIENT_CV.  Inputs behind an
 * RMSNorm (q/k/v, gate/up) are nearly flat (0.25..0.4 on tinyllama-256), the inputs of
 * o_proj and down_proj are heavy-tailed (0.6..1.6).  With flat statistics the weighted
 * losses reduce to plain weight MSE, and fitting that (scales, clipping or fit_group)
 * made the model worse than round-to-nearest in our measurements (README, AWQ); so the
 * groups of such inputs are not scaled, and their linears are quantized round-to-nearest.
 * Summed in double in index order: deterministic. */
#define SALIENT_CV 0.5

static int salient(const float *im, int64_t n)
{
    double s = 0.0, s2 = 0.0;
    for (int64_t j = 0; j < n; j++) {
        s += (double)im[j];
        s2 += (double)im[j] * (double)im[j];
    }
    const double mean = s / (double)n, var = s2 / (double)n - mean * mean;
    return mean > 0.0 && isfinite(var) && var >= SALIENT_CV * SALIENT_CV * mean * mean;
}

/* An imatrix entry of in values for the linear with HF name hf, or NULL. */
static const float *imatrix_for(const struct qfs_model *m, const char *hf, int64_t in,
                                struct qfs_cache_key *hash)
{
    if (!m->imatrix)
        return NULL;
    char *gname = qfs_arch_gguf_name(m->cfg.arch, hf);
    if (!gname)
        return NULL;
    const struct qfs_imatrix_entry *e = qfs_imatrix_find(m->imatrix, gname);
    free(gname);
    if (!e || e->n != in)
        return NULL;
    qfs_hash128(e->values, (size_t)e->n * sizeof *e->values, hash);
    return e->values;
}

struct out_tensor {
    char *name;
    int dtype_i32;  /* 1: I32, 0: F16 */
    int n_dims;
    int64_t shape[QFS_ST_MAX_DIMS];
    uint64_t nbytes;
    struct awq_tensor at;
    int64_t nrows, row_elems, row_bytes, rows_per_chunk;
};

static int cmp_out(const void *a, const void *b)
{
    const struct out_tensor *x = a, *y = b;
    int ax = x->nbytes % 8 != 0, ay = y->nbytes % 8 != 0;
    if (ax != ay)
        return ax - ay;
    return strcmp(x->name, y->name);
}

int qfs_awq_build(const struct qfs_model *m, int group, struct qfs_vfile **out)
{
    const int g = group_of(group);
    if (!qfs_awq_group_ok(g))
        return -EINVAL;
    const struct qfs_st_model *stm = m->st;
    const int nt = stm->n_tensors;
    if (!family_of(m) || qfs_stout_is_moe(m)) {
        qfs_info("%s: not offering AWQ: %s", m->dir,
                 qfs_stout_is_moe(m) ? "mixture-of-experts models are not served in AutoAWQ's layout"
                                     : "AutoAWQ has no layout for this architecture");
        return -ENOTSUP;
    }
    int rc = -ENOMEM, n_out = 0, n_quant = 0;
    long n_blocks = 0;
    struct out_tensor *ot = NULL;
    json_t *root = NULL;
    char *hdr = NULL;
    struct qfs_vfile *vf = calloc(1, sizeof *vf);
    struct awq_state *st = calloc(1, sizeof *st);
    if (!vf || !st) {
        free(vf);
        free(st);
        return -ENOMEM;
    }
    vf->fmt = &qfs_format_awq;
    vf->codec_version = QFS_AWQ_CODEC_VERSION;
    vf->cache_codec = QFS_CODEC_AWQ;
    vf->codec_state = st;
    vf->codec_state_free = state_free;
    st->fam = family_of(m);
    st->stm = stm;
    st->memos = m->memos;
    st->g = g;
    st->aware = m->imatrix != NULL;
    if (asprintf(&vf->name, "%s.awq.safetensors", m->name) < 0) {
        vf->name = NULL;
        goto fail;
    }

    /* the decoder linears, L_N per block */
    for (int i = 0; i < nt; i++) {
        long b;
        if (parse_linear(st->fam, stm->tensors[i].name, &b) >= 0 && b + 1 > n_blocks)
            n_blocks = b + 1;
    }
    st->n_lin = (int)n_blocks * L_N;
    st->lin = calloc((size_t)st->n_lin + 1, sizeof *st->lin);
    st->grp = calloc((size_t)n_blocks * G_N + 1, sizeof *st->grp);
    if (!st->lin || !st->grp)
        goto fail;
    st->n_grp = (int)n_blocks * G_N; /* from here on state_free destroys the locks */
    for (int i = 0; i < st->n_grp; i++)
        pthread_mutex_init(&st->grp[i].lock, NULL);
    for (int i = 0; i < st->n_lin; i++)
        st->lin[i] = (struct awq_lin){.src = -1, .col_grp = -1, .row_grp = -1};
    for (int i = 0; i < nt; i++) {
        const struct qfs_st_tensor *s = &stm->tensors[i];
        long b;
        int k = parse_linear(st->fam, s->name, &b);
        if (k < 0 || s->n_dims != 2)
            continue;
        struct awq_lin *l = &st->lin[b * L_N + k];
        l->src = i;
        l->out = s->shape[0];
        l->in = s->shape[1];
        l->quantized = lin_quantizable(s, g);
        n_quant += l->quantized;
    }
    if (n_quant == 0) {
        qfs_info("%s: not offering AWQ: no decoder linear layer with in_features divisible by "
                 "%d", m->dir, g);
        rc = -ENOTSUP;
        goto fail;
    }

    /* scaling groups (activation-aware mode only) */
    const struct awq_group_def *groups = st->fam->groups;
    for (long b = 0; b < n_blocks; b++) {
        for (int k = 0; k < G_N; k++) {
            struct awq_grp *gp = &st->grp[b * G_N + k];
            gp->kind = k;
            gp->n_lins = groups[k].n;
            int ok = st->aware && groups[k].n > 0;
            for (int j = 0; j < groups[k].n; j++) {
                gp->lins[j] = (int)(b * L_N + groups[k].lins[j]);
                const struct awq_lin *l = &st->lin[gp->lins[j]];
                ok = ok && l->src >= 0 && l->quantized && l->in == st->lin[gp->lins[0]].in;
            }
            if (!ok)
                continue;
            const struct awq_lin *first = &st->lin[gp->lins[0]];
            gp->in = first->in;
            if (groups[k].prev_lin >= 0) {
                /* rows of the previous linear take 1/s: its output is this input */
                const struct awq_lin *p = &st->lin[b * L_N + groups[k].prev_lin];
                const int64_t rows = groups[k].prev_upper_half ? p->out / 2 : p->out;
                if (p->src < 0 || rows != gp->in || (groups[k].prev_upper_half && p->out % 2))
                    continue;
                /* AutoAWQ scales v -> o only when v and o have the same shape */
                if (k == G_O && (p->out != first->out || p->in != first->in))
                    continue;
            }
            gp->im = imatrix_for(m, stm->tensors[first->src].name, gp->in, &gp->im_hash);
            if (!gp->im || !salient(gp->im, gp->in))
                continue;
            gp->active = 1;
            for (int j = 0; j < gp->n_lins; j++)
                st->lin[gp->lins[j]].col_grp = (int)(b * G_N + k);
            if (groups[k].prev_lin >= 0) {
                struct awq_lin *p = &st->lin[b * L_N + groups[k].prev_lin];
                p->row_grp = (int)(b * G_N + k);
                p->row_off = groups[k].prev_upper_half ? p->out / 2 : 0;
            }
        }
    }

    /* the fit (fit_group) for the linears an active group scales, except q and k (as
     * AutoAWQ does not clip them: their errors pass through the softmax) */
    for (int i = 0; i < st->n_lin; i++) {
        struct awq_lin *l = &st->lin[i];
        const int k = i % L_N;
        if (l->col_grp >= 0 && k != L_Q && k != L_K)
            l->im = imatrix_for(m, stm->tensors[l->src].name, l->in, &l->im_hash);
    }

    /* the output tensors */
    ot = calloc((size_t)nt * 3 + 1, sizeof *ot);
    if (!ot)
        goto fail;
    for (int i = 0; i < nt; i++) {
        const struct qfs_st_tensor *s = &stm->tensors[i];
        size_t nl = strlen(s->name);
        if (nl >= 19 && strcmp(s->name + nl - 19, "rotary_emb.inv_freq") == 0)
            continue; /* a buffer, not a parameter: transformers does not save it */
        long b;
        int k = parse_linear(st->fam, s->name, &b);
        const struct awq_lin *l = k >= 0 && s->n_dims == 2 ? &st->lin[b * L_N + k] : NULL;
        if (l && l->quantized) {
            static const char *suffix[3] = {".qweight", ".qzeros", ".scales"};
            static const int kinds[3] = {T_QWEIGHT, T_QZEROS, T_SCALES};
            const int64_t rows[3] = {l->in, l->in / g, l->in / g};
            const int64_t groups_per_chunk =
                (int64_t)(CHUNK_TARGET / (uint64_t)(l->out / 2) / (uint64_t)g) > 0
                    ? (int64_t)(CHUNK_TARGET / (uint64_t)(l->out / 2) / (uint64_t)g)
                    : 1;
            for (int j = 0; j < 3; j++) {
                struct out_tensor *o = &ot[n_out++];
                if (!(o->name = qfs_stout_renamed(s->name, suffix[j])))
                    goto fail;
                o->dtype_i32 = j != 2;
                o->n_dims = 2;
                o->shape[0] = rows[j];
                o->shape[1] = j == 2 ? l->out : l->out / 8;
                o->nrows = rows[j];
                o->row_elems = o->shape[1];
                o->row_bytes = o->shape[1] * (j == 2 ? 2 : 4);
                o->rows_per_chunk = j == 0 ? groups_per_chunk * g : groups_per_chunk;
                o->at = (struct awq_tensor){.kind = kinds[j], .src = i,
                                            .lin = (int)(l - st->lin), .fold_grp = -1,
                                            .groups_per_chunk = groups_per_chunk};
                o->nbytes = (uint64_t)o->nrows * (uint64_t)o->row_bytes;
            }
            continue;
        }
        struct out_tensor *o = &ot[n_out++];
        if (!(o->name = strdup(s->name)))
            goto fail;
        o->n_dims = s->n_dims;
        memcpy(o->shape, s->shape, sizeof o->shape);
        o->row_elems = s->n_dims > 0 ? s->shape[s->n_dims - 1] : 1;
        o->nrows = 1;
        for (int d = 0; d + 1 < s->n_dims; d++)
            o->nrows *= s->shape[d];
        o->row_bytes = o->row_elems * 2;
        o->rows_per_chunk = o->row_bytes > 0 && (uint64_t)o->row_bytes < CHUNK_TARGET
                                ? (int64_t)(CHUNK_TARGET / (uint64_t)o->row_bytes)
                                : 1;
        o->nbytes = (uint64_t)o->nrows * (uint64_t)o->row_bytes;
        o->at = (struct awq_tensor){.kind = l ? T_F16_LIN : T_F16, .src = i,
                                    .lin = l ? (int)(l - st->lin) : -1, .fold_grp = -1};
        if (!l && s->n_dims == 1) { /* a norm (or bias) folded with a group's 1/s */
            long bb = -1;
            int fg = -1;
            for (int k2 = 0; k2 < G_N && fg < 0; k2++) {
                const struct awq_group_def *gd = &groups[k2];
                char bias[96];
                if (gd->prev_lin < 0 && gd->fold_norm &&
                    (bb = block_of(s->name, gd->fold_norm)) >= 0) {
                    fg = k2;
                    o->at.fold_offset = st->fam->norm_offset;
                } else if (gd->prev_lin >= 0 && !gd->prev_upper_half &&
                           snprintf(bias, sizeof bias, "%s.bias", st->fam->lin[gd->prev_lin]) > 0 &&
                           (bb = block_of(s->name, bias)) >= 0) {
                    fg = k2;
                }
            }
            if (fg >= 0)
                fg = (int)(bb * G_N + fg);
            if (fg >= 0 && bb < n_blocks && st->grp[fg].active && st->grp[fg].in == s->shape[0])
                o->at.fold_grp = fg;
        }
    }

    /* layout: data back to back, header from the final offsets */
    qsort(ot, (size_t)n_out, sizeof *ot, cmp_out);
    root = json_object();
    if (!root || json_object_set_new(root, "__metadata__", json_pack("{s:s}", "format", "pt")))
        goto fail;
    uint64_t off = 0;
    for (int i = 0; i < n_out; i++) {
        json_t *shape = json_array();
        if (!shape)
            goto fail;
        for (int d = 0; d < ot[i].n_dims; d++)
            json_array_append_new(shape, json_integer(ot[i].shape[d]));
        json_t *e = json_pack("{s:s,s:o,s:[I,I]}", "dtype", ot[i].dtype_i32 ? "I32" : "F16",
                              "shape", shape, "data_offsets", (json_int_t)off,
                              (json_int_t)(off + ot[i].nbytes));
        if (!e || json_object_set_new(root, ot[i].name, e))
            goto fail;
        off += ot[i].nbytes;
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS);
    if (!hdr)
        goto fail;
    const size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;
    vf->head_len = 8 + padded;
    vf->size = vf->head_len + off;
    vf->head = malloc(vf->head_len);
    vf->tensors = calloc((size_t)n_out + 1, sizeof *vf->tensors);
    st->ts = calloc((size_t)n_out + 1, sizeof *st->ts);
    if (!vf->head || !vf->tensors || !st->ts)
        goto fail;
    for (int i = 0; i < 8; i++)
        vf->head[i] = (uint8_t)((uint64_t)padded >> (8 * i));
    memcpy(vf->head + 8, hdr, hl);
    memset(vf->head + 8 + hl, ' ', padded - hl);
    off = vf->head_len;
    for (int i = 0; i < n_out; i++) {
        struct qfs_vtensor *t = &vf->tensors[vf->n_tensors++];
        st->ts[i] = ot[i].at;
        st->ts[i].st = st;
        t->name = ot[i].name;
        ot[i].name = NULL;
        t->n_dims = ot[i].n_dims;
        for (int d = 0; d < 4; d++)
            t->ne[d] = d < ot[i].n_dims ? ot[i].shape[ot[i].n_dims - 1 - d] : 1;
        t->type = ot[i].dtype_i32 ? QFS_TYPE_F32 : QFS_TYPE_F16; /* element width only */
        t->nrows = ot[i].nrows;
        t->row_elems = ot[i].row_elems;
        t->row_bytes = (uint64_t)ot[i].row_bytes;
        t->offset = off;
        t->nbytes = ot[i].nbytes;
        qfs_vtensor_set_chunks(t, ot[i].rows_per_chunk);
        t->ops = &awq_ops;
        t->codec = &st->ts[i];
        off += t->nbytes;
    }
    free(hdr);
    json_decref(root);
    free(ot);
    *out = vf;
    return 0;
fail:
    for (int i = 0; ot && i < n_out; i++)
        free(ot[i].name);
    free(ot);
    free(hdr);
    json_decref(root);
    qfs_vfile_free(vf);
    return rc;
}

int qfs_awq_config_json(const struct qfs_model *m, int group, char **buf, size_t *len)
{
    const int g = group_of(group);
    const struct awq_family *fam = family_of(m);
    if (!fam)
        return -ENOTSUP;
    char *path = NULL;
    if (asprintf(&path, "%s/config.json", m->dir) < 0)
        return -ENOMEM;
    json_t *root = NULL;
    int lrc = qfs_json_load(path, QFS_JSON_MAX_CONFIG, JSON_REJECT_DUPLICATES, &root);
    if (lrc < 0 || !json_is_object(root)) {
        if (lrc == 0)
            qfs_err("%s: not a JSON object", path);
        json_decref(root);
        free(path);
        return -EINVAL;
    }
    free(path);
    int rc = -ENOMEM;
    json_t *skip = json_array();
    if (!skip)
        goto out;
    for (int i = 0; i < m->st->n_tensors; i++) {
        const struct qfs_st_tensor *s = &m->st->tensors[i];
        long b;
        if (parse_linear(fam, s->name, &b) < 0 || s->n_dims != 2 || lin_quantizable(s, g))
            continue;
        size_t n = strlen(s->name) - strlen(".weight");
        if (json_array_append_new(skip, json_stringn(s->name, n)))
            goto out;
    }
    json_t *qc = json_pack("{s:s,s:i,s:i,s:b,s:s,s:O}", "quant_method", "awq", "bits", 4,
                           "group_size", g, "zero_point", 1, "version", "gemm",
                           "modules_to_not_convert", skip);
    if (!qc || json_object_set_new(root, "quantization_config", qc) ||
        json_object_set_new(root, "torch_dtype", json_string("float16")))
        goto out;
    char *s = json_dumps(root, JSON_INDENT(2));
    if (!s)
        goto out;
    *len = strlen(s);
    *buf = s;
    rc = 0;
out:
    json_decref(skip);
    json_decref(root);
    return rc;
}

/* <model>.awq.safetensors and the loadable <model>.awq/ (its config.json and the same file
 * as model.safetensors), both or neither: the directory is only loadable with its config.
 * A model AWQ cannot quantize, or whose config.json cannot be rewritten, gets neither
 * (logged).  0 or -ENOMEM. */
static int awq_offer(struct qfs_model *m, int group)
{
    struct qfs_vfile *vf = NULL;
    char *cfg = NULL;
    size_t len = 0;
    int rc = qfs_awq_build(m, group, &vf);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        if (rc != -ENOTSUP) /* -ENOTSUP: nothing to quantize, logged */
            qfs_warn("%s: not offering AWQ: %s", m->dir, strerror(-rc));
        return 0;
    }
    rc = qfs_awq_config_json(m, group, &cfg, &len);
    if (rc < 0) {
        qfs_vfile_free(vf);
        if (rc == -ENOMEM)
            return rc;
        qfs_warn("%s: not offering AWQ: its config.json cannot be rewritten", m->dir);
        return 0;
    }
    if (!(vf->variant = strdup("AWQ"))) {
        qfs_vfile_free(vf);
        free(cfg);
        return -ENOMEM;
    }
    /* listed: <model>.awq.safetensors is a file of its own too */
    return qfs_stout_offer_dir(m, &qfs_format_awq, "awq", vf, true, cfg, len);
}

static const int awq_groups[] = {32, 64, 128, 0};

const struct qfs_format qfs_format_awq = {
    .name = "awq",
    .what = "<model>.awq.safetensors and <model>.awq/ (AutoAWQ GEMM, 4-bit; vLLM, transformers)",
    .cache_codec = QFS_CODEC_AWQ,
    .version = QFS_AWQ_CODEC_VERSION,
    .groups = awq_groups,
    .default_group = QFS_AWQ_DEFAULT_GROUP,
    .default_on = true,
    .offer = awq_offer,
    .variants = "AWQ",
};
