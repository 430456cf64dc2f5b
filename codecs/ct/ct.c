/* compressed-tensors checkpoints (what llm-compressor writes and vLLM and transformers load
 * with quant_method "compressed-tensors"), two formats:
 *
 *   <model>.fp8/    "float-quantized", the FP8_DYNAMIC scheme: per decoder Linear
 *                   P.weight F8_E4M3 [out, in] and P.weight_scale [out, 1] in the source
 *                   dtype (scale = row absmax / 448, at least float32's epsilon;
 *                   code = e4m3(clamp(dtype(w / scale), +-448)), round to nearest even);
 *                   activations quantized dynamically per token by the loader (no
 *                   input_scale).
 *   <model>.w4a16/  "pack-quantized", W4A16: P.weight_packed I32 [out, in/8] (element j of
 *                   a row in word j/8 at bits 4(j%8), stored as q + 8), P.weight_scale
 *                   [out, in/g] in the source dtype, P.weight_shape I64 [2] = (out, in);
 *                   symmetric int4 groups of g (128 by default) along the input; with an
 *                   importance matrix each group's scale is chosen by the weighted error
 *                   (intq.h qfs_intq_sym4).
 * Everything else (embeddings, norms, lm_head) is passed through in its source dtype, and
 * "ignore": ["lm_head"] keeps the loaders from expecting lm_head quantized.  The
 * quantization_config blocks are the version-portable field sets of notes/formats.md (a.2,
 * a.3): no keys compressed-tensors 0.11/0.12 would reject. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/log.h"
#include "../format.h"
#include "../intq.h"
#include "../stout.h"

#define FP8_VERSION 1
#define W4A16_VERSION 1

extern const struct qfs_format qfs_format_fp8, qfs_format_w4a16;

enum { K_WEIGHT, K_SCALE, K_SHAPE };

/* ---- FP8 ---- */

static int fp8_produce(const struct qfs_stout_src *s, int64_t row0, int64_t n, uint8_t *dst)
{
    const int64_t in = s->src->shape[1];
    float *x = malloc((size_t)in * sizeof *x + 1);
    if (!x)
        return -ENOMEM;
    for (int64_t r = 0; r < n; r++) {
        qfs_stout_read(s->src, row0 + r, row0 + r + 1, 0, in, x);
        float amax = 0.0f;
        for (int64_t j = 0; j < in; j++)
            amax = fabsf(x[j]) > amax ? fabsf(x[j]) : amax;
        const float sc = qfs_intq_fp8_scale(s->src->dtype, amax);
        if (s->kind == K_SCALE)
            qfs_stout_put_float(dst + r * qfs_stout_dtype_size(s->dtype), s->dtype, sc);
        else
            qfs_intq_fp8_row(s->src->dtype, x, in, sc, dst + r * in);
    }
    free(x);
    return 0;
}

static bool fp8_quantizes(const struct qfs_st_tensor *s) { return qfs_stout_is_linear(s); }

static const char *fp8_unfit(const struct qfs_st_tensor *s, int g)
{
    (void)s, (void)g;
    return NULL; /* per channel: any shape (sizes are checked by the layout) */
}

static int fp8_add(const struct qfs_model *m, int i, int g, struct qfs_stout_list *l)
{
    (void)g;
    const struct qfs_st_tensor *s = &m->st->tensors[i];
    struct qfs_stout_src src = {.src = s, .memo = &m->memos[i], .tag = "fp8",
                                .version = FP8_VERSION, .kind = K_WEIGHT,
                                .dtype = QFS_SO_F8_E4M3, .produce = fp8_produce};
    int rc = qfs_stout_add(l, strdup(s->name), 2, s->shape, &src);
    if (rc < 0)
        return rc;
    src.kind = K_SCALE;
    src.dtype = qfs_stout_of_dtype(s->dtype);
    const int64_t shape[2] = {s->shape[0], 1};
    return qfs_stout_add(l, qfs_stout_renamed(s->name, ".weight_scale"), 2, shape, &src);
}

/* notes/formats.md a.2 */
static json_t *ct_args(int bits, const char *type, const char *strategy, int group, bool dynamic,
                       const char *observer)
{
    return json_pack("{s:n,s:n,s:b,s:o,s:i,s:s?,s:{},s:s,s:b,s:s}", "actorder",
                     "block_structure", "dynamic", dynamic, "group_size",
                     group ? json_integer(group) : json_null(), "num_bits", bits, "observer",
                     observer, "observer_kwargs", "strategy", strategy, "symmetric", 1, "type",
                     type);
}

static int ct_config(const struct qfs_model *m, const char *format, json_t *weights,
                     json_t *inputs, char **buf, size_t *len)
{
    json_t *block = NULL;
    if (weights)
        block = json_pack("{s:{s:{s:s,s:o,s:n,s:[s],s:o}},s:s,s:n,s:[s],s:n,s:s,s:s,s:{},s:{},s:s}",
                          "config_groups", "group_0", "format", format, "input_activations",
                          inputs ? inputs : json_null(), "output_activations", "targets",
                          "Linear", "weights", weights, "format", format,
                          "global_compression_ratio", "ignore", "lm_head", "kv_cache_scheme",
                          "quant_method", "compressed-tensors", "quantization_status",
                          "compressed", "sparsity_config", "transform_config", "version",
                          "0.12.2");
    else
        json_decref(inputs);
    return qfs_stout_config(m, "quantization_config", block, NULL, buf, len);
}

static int fp8_config(const struct qfs_model *m, int g, char **buf, size_t *len)
{
    (void)g;
    return ct_config(m, "float-quantized", ct_args(8, "float", "channel", 0, false, "minmax"),
                     ct_args(8, "float", "token", 0, true, NULL), buf, len);
}

static const struct qfs_stout_plan fp8_plan = {
    .fmt = &qfs_format_fp8, .suffix = "fp8", .variant = "FP8", .meta_format = "pt",
    .quantizes = fp8_quantizes, .unfit = fp8_unfit, .add = fp8_add, .config = fp8_config,
};

static int fp8_offer(struct qfs_model *m, int g)
{
    int rc = qfs_stout_offer(m, &fp8_plan, g);
    return rc < 0 ? rc : 0;
}

const struct qfs_format qfs_format_fp8 = {
    .name = "fp8",
    .what = "<model>.fp8/ (compressed-tensors FP8, dynamic activations; vLLM on Hopper/Ada)",
    .cache_codec = QFS_CODEC_FP8,
    .version = FP8_VERSION,
    .default_on = true,
    .offer = fp8_offer,
    .variants = "FP8",
};

/* ---- W4A16 ---- */

static int w4_produce(const struct qfs_stout_src *s, int64_t row0, int64_t n, uint8_t *dst)
{
    if (s->kind == K_SHAPE) {
        qfs_stout_put_le(dst, (uint64_t)s->src->shape[0], 8);
        qfs_stout_put_le(dst + 8, (uint64_t)s->src->shape[1], 8);
        return 0;
    }
    const int64_t in = s->src->shape[1], g = s->group, ng = in / g;
    float *x = malloc((size_t)in * sizeof *x + 1);
    int8_t *q = malloc((size_t)in + 1);
    if (!x || !q) {
        free(x);
        free(q);
        return -ENOMEM;
    }
    const int ssz = qfs_stout_dtype_size(s->dtype);
    for (int64_t r = 0; r < n; r++) {
        qfs_stout_read(s->src, row0 + r, row0 + r + 1, 0, in, x);
        for (int64_t k = 0; k < ng; k++) {
            const float d = qfs_intq_sym4(s->src->dtype, x + k * g,
                                          s->imatrix ? s->imatrix + k * g : NULL, g,
                                          s->kind == K_WEIGHT ? q + k * g : NULL);
            if (s->kind == K_SCALE)
                qfs_stout_put_float(dst + (r * ng + k) * ssz, s->dtype, d);
        }
        if (s->kind == K_WEIGHT)
            for (int64_t w = 0; w < in / 8; w++) {
                uint32_t word = 0;
                for (int b = 0; b < 8; b++)
                    word |= (uint32_t)(q[8 * w + b] + 8) << (4 * b);
                qfs_stout_put_le(dst + (r * (in / 8) + w) * 4, word, 4);
            }
    }
    free(x);
    free(q);
    return 0;
}

static const char *w4_unfit(const struct qfs_st_tensor *s, int g)
{
    return s->shape[1] % g ? "has rows that do not divide into the format's groups" : NULL;
}

static int w4_add(const struct qfs_model *m, int i, int g, struct qfs_stout_list *l)
{
    const struct qfs_st_tensor *s = &m->st->tensors[i];
    struct qfs_stout_src src = {.src = s, .memo = &m->memos[i], .tag = "w4a16",
                                .version = W4A16_VERSION, .kind = K_WEIGHT, .group = g,
                                .bits = 4, .dtype = QFS_SO_I32, .produce = w4_produce};
    src.imatrix = qfs_stout_imatrix(m, s, &src.imatrix_hash);
    const int64_t packed[2] = {s->shape[0], s->shape[1] / 8};
    int rc = qfs_stout_add(l, qfs_stout_renamed(s->name, ".weight_packed"), 2, packed, &src);
    if (rc < 0)
        return rc;
    src.kind = K_SCALE;
    src.dtype = qfs_stout_of_dtype(s->dtype);
    const int64_t scales[2] = {s->shape[0], s->shape[1] / g};
    if ((rc = qfs_stout_add(l, qfs_stout_renamed(s->name, ".weight_scale"), 2, scales, &src)) < 0)
        return rc;
    src.kind = K_SHAPE;
    src.dtype = QFS_SO_I64;
    src.imatrix = NULL;
    const int64_t two[1] = {2};
    return qfs_stout_add(l, qfs_stout_renamed(s->name, ".weight_shape"), 1, two, &src);
}

static int w4_config(const struct qfs_model *m, int g, char **buf, size_t *len)
{
    return ct_config(m, "pack-quantized", ct_args(4, "int", "group", g, false, "minmax"), NULL,
                     buf, len);
}

static const struct qfs_stout_plan w4_plan = {
    .fmt = &qfs_format_w4a16, .suffix = "w4a16", .variant = "W4A16", .meta_format = "pt",
    .quantizes = fp8_quantizes, .unfit = w4_unfit, .add = w4_add, .config = w4_config,
};

static int w4_offer(struct qfs_model *m, int g)
{
    int rc = qfs_stout_offer(m, &w4_plan, g);
    return rc < 0 ? rc : 0;
}

static const int w4_groups[] = {32, 64, 128, 0};

const struct qfs_format qfs_format_w4a16 = {
    .name = "w4a16",
    .what = "<model>.w4a16/ (compressed-tensors int4 weights, pack-quantized; vLLM Marlin)",
    .cache_codec = QFS_CODEC_W4A16,
    .version = W4A16_VERSION,
    .groups = w4_groups,
    .default_group = 128,
    .default_on = true,
    .offer = w4_offer,
    .variants = "W4A16",
};
