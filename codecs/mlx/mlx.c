/* MLX models (what mlx_lm.convert -q writes and mlx_lm loads), affine quantization with 4 or
 * 8 bits: <model>.mlx-4bit/ and <model>.mlx-8bit/.
 *
 * Per quantized module P (every decoder Linear, the token embedding, and lm_head when the
 * model has one, as mlx_lm quantizes every Linear and Embedding whose input size divides
 * into groups) of [out, in], group size g (64 by default):
 *   P.weight U32 [out, in * bits / 32]: element k of a row in word k / (32 / bits) at bit
 *            bits * (k % (32 / bits)), lowest first;
 *   P.scales, P.biases [out, in / g] in the source dtype;
 *   w ~= scale * q + bias, q in [0, 2^bits - 1], computed as mlx's CPU kernel does
 *   (intq.h qfs_intq_mlx: the group edge of larger magnitude mapped exactly, scale and bias
 *   rounded to the dtype only when stored).
 * Norms and the rest are passed through.  config.json gets "quantization" (and its copy
 * "quantization_config", as current mlx_lm writes) {"group_size", "bits", "mode": "affine"};
 * the safetensors metadata says {"format": "mlx"}. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/log.h"
#include "../format.h"
#include "../intq.h"
#include "../stout.h"

#define MLX_VERSION 1

extern const struct qfs_format qfs_format_mlx;

enum { K_WEIGHT, K_SCALES, K_BIASES };

static int mlx_produce(const struct qfs_stout_src *s, int64_t row0, int64_t n, uint8_t *dst)
{
    const int64_t in = s->src->shape[1], g = s->group, ng = in / g;
    const int bits = s->bits, per = 32 / bits;
    float *x = malloc((size_t)in * sizeof *x + 1);
    uint8_t *q = malloc((size_t)in + 1);
    if (!x || !q) {
        free(x);
        free(q);
        return -ENOMEM;
    }
    const int vsz = qfs_stout_dtype_size(s->dtype);
    for (int64_t r = 0; r < n; r++) {
        qfs_stout_read(s->src, row0 + r, row0 + r + 1, 0, in, x);
        for (int64_t k = 0; k < ng; k++) {
            float sc, bi;
            qfs_intq_mlx(x + k * g, g, bits, &sc, &bi, s->kind == K_WEIGHT ? q + k * g : NULL);
            if (s->kind == K_SCALES)
                qfs_stout_put_float(dst + (r * ng + k) * vsz, s->dtype, sc);
            else if (s->kind == K_BIASES)
                qfs_stout_put_float(dst + (r * ng + k) * vsz, s->dtype, bi);
        }
        if (s->kind == K_WEIGHT)
            for (int64_t w = 0; w < in / per; w++) {
                uint32_t word = 0;
                for (int b = 0; b < per; b++)
                    word |= (uint32_t)q[per * w + b] << (bits * b);
                qfs_stout_put_le(dst + (r * (in / per) + w) * 4, word, 4);
            }
    }
    free(x);
    free(q);
    return 0;
}

static bool mlx_quantizes(const struct qfs_st_tensor *s)
{
    return qfs_stout_is_linear(s) ||
           (s->n_dims == 2 && (!strcmp(s->name, "model.embed_tokens.weight") ||
                               !strcmp(s->name, "lm_head.weight")));
}

static const char *mlx_unfit(const struct qfs_st_tensor *s, int g)
{
    return s->shape[1] % g ? "has rows that do not divide into the format's groups" : NULL;
}

static int mlx_add_bits(const struct qfs_model *m, int i, int g, int bits,
                        struct qfs_stout_list *l)
{
    const struct qfs_st_tensor *s = &m->st->tensors[i];
    struct qfs_stout_src src = {.src = s, .memo = &m->memos[i], .tag = "mlx",
                                .version = MLX_VERSION, .kind = K_WEIGHT, .group = g,
                                .bits = bits, .dtype = QFS_SO_U32, .produce = mlx_produce};
    const int64_t wshape[2] = {s->shape[0], s->shape[1] * bits / 32};
    int rc = qfs_stout_add(l, strdup(s->name), 2, wshape, &src);
    const int64_t sshape[2] = {s->shape[0], s->shape[1] / g};
    src.dtype = qfs_stout_of_dtype(s->dtype);
    src.kind = K_SCALES;
    if (rc == 0)
        rc = qfs_stout_add(l, qfs_stout_renamed(s->name, ".scales"), 2, sshape, &src);
    src.kind = K_BIASES;
    if (rc == 0)
        rc = qfs_stout_add(l, qfs_stout_renamed(s->name, ".biases"), 2, sshape, &src);
    return rc;
}

static int add4(const struct qfs_model *m, int i, int g, struct qfs_stout_list *l)
{
    return mlx_add_bits(m, i, g, 4, l);
}

static int add8(const struct qfs_model *m, int i, int g, struct qfs_stout_list *l)
{
    return mlx_add_bits(m, i, g, 8, l);
}

static int mlx_config_bits(const struct qfs_model *m, int g, int bits, char **buf, size_t *len)
{
    char *first = NULL;
    size_t flen;
    /* the same block under both keys (current mlx_lm's convert writes both) */
    json_t *q = json_pack("{s:i,s:i,s:s}", "group_size", g, "bits", bits, "mode", "affine");
    int rc = qfs_stout_config(m, "quantization", q ? json_deep_copy(q) : NULL, NULL, &first, &flen);
    if (rc < 0) {
        json_decref(q);
        return rc;
    }
    json_error_t err;
    json_t *root = json_loadb(first, flen, 0, &err);
    free(first);
    rc = -ENOMEM;
    if (root && q && json_object_set_new(root, "quantization_config", q) == 0) {
        q = NULL;
        char *s = json_dumps(root, JSON_INDENT(2));
        if (s) {
            *buf = s;
            *len = strlen(s);
            rc = 0;
        }
    }
    json_decref(q);
    json_decref(root);
    return rc;
}

static int config4(const struct qfs_model *m, int g, char **buf, size_t *len)
{
    return mlx_config_bits(m, g, 4, buf, len);
}

static int config8(const struct qfs_model *m, int g, char **buf, size_t *len)
{
    return mlx_config_bits(m, g, 8, buf, len);
}

static const struct qfs_stout_plan plans[2] = {
    {.fmt = &qfs_format_mlx, .suffix = "mlx-4bit", .variant = "MLX-4BIT", .meta_format = "mlx",
     .quantizes = mlx_quantizes, .unfit = mlx_unfit, .add = add4, .config = config4},
    {.fmt = &qfs_format_mlx, .suffix = "mlx-8bit", .variant = "MLX-8BIT", .meta_format = "mlx",
     .quantizes = mlx_quantizes, .unfit = mlx_unfit, .add = add8, .config = config8},
};

static int mlx_offer(struct qfs_model *m, int g)
{
    /* the 8-bit directory has the same requirements: one log line when neither fits */
    int rc = qfs_stout_offer(m, &plans[0], g);
    if (rc != 0)
        return rc < 0 ? rc : 0;
    rc = qfs_stout_offer(m, &plans[1], g);
    return rc < 0 ? rc : 0;
}

static bool mlx_variant_ok(const char *name, size_t n)
{
    return (n == 8 && (!strncmp(name, "MLX-4BIT", 8) || !strncmp(name, "MLX-8BIT", 8)));
}

static const int mlx_groups[] = {32, 64, 128, 0};

const struct qfs_format qfs_format_mlx = {
    .name = "mlx",
    .what = "<model>.mlx-4bit/ and <model>.mlx-8bit/ (MLX affine; mlx_lm on Apple silicon)",
    .cache_codec = QFS_CODEC_MLX,
    .version = MLX_VERSION,
    .groups = mlx_groups,
    .default_group = 64,
    .default_on = true,
    .offer = mlx_offer,
    .variant_ok = mlx_variant_ok,
    .variants = "MLX-4BIT, MLX-8BIT",
};
