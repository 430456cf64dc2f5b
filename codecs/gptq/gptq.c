/* GPTQ checkpoints, format v1 (checkpoint_format "gptq": what AutoGPTQ and GPTQModel write
 * and vLLM, TGI, transformers and optimum load), 4 bits, symmetric, desc_act false.
 *
 * Per decoder Linear P [out, in] with group size g (in % g == 0, out % 8 == 0):
 *   P.qweight I32 [in/8, out]: input k of output n in word (k/8, n) at bits 4(k%8), the
 *             value q + 8 (q in [-8, 7]);
 *   P.qzeros  I32 [in/g, out/8]: zero - 1 packed along the output the same way; the
 *             symmetric zero is 8, so every word is 0x77777777;
 *   P.scales  F16 [in/g, out];
 *   P.g_idx   I32 [in] = k / g.
 *   w[n][k] ~= scales[k/g][n] * q.
 * Everything else is F16 (torch_dtype float16, as GPTQ models are).
 *
 * Data-free: real GPTQ updates the remaining weights of a row from each layer's full
 * Hessian of calibration activations.  What we have is llama.cpp's importance matrix, that
 * Hessian's diagonal, with which the update vanishes; GPTQ then reduces to choosing each
 * group's scale by the importance-weighted error (intq.h qfs_intq_sym4), which is what is
 * done here (round to nearest without an imatrix).  config.json says so ("quantfs"). */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/log.h"
#include "../format.h"
#include "../intq.h"
#include "../stout.h"

#define GPTQ_VERSION 1

extern const struct qfs_format qfs_format_gptq;

enum { K_QWEIGHT, K_QZEROS, K_SCALES, K_GIDX };

/* Rows [row0, row0 + n) of one of P's outputs: whole groups of inputs (qweight's rows are
 * input octets; qzeros' and scales' rows groups; g_idx one row). */
static int gptq_produce(const struct qfs_stout_src *s, int64_t row0, int64_t n, uint8_t *dst)
{
    const int64_t out = s->src->shape[0], g = s->group;
    if (s->kind == K_GIDX) {
        const int64_t in = s->src->shape[1];
        for (int64_t k = 0; k < in; k++)
            qfs_stout_put_le(dst + 4 * k, (uint64_t)(k / g), 4);
        return 0;
    }
    if (s->kind == K_QZEROS) {
        for (int64_t i = 0; i < n * (out / 8); i++)
            qfs_stout_put_le(dst + 4 * i, 0x77777777u, 4);
        return 0;
    }
    /* the groups these rows cover, and the source block they read: all outputs x their
     * input columns (a strided read of the [out, in] source) */
    const int64_t g0 = s->kind == K_QWEIGHT ? row0 * 8 / g : row0;
    const int64_t ng = s->kind == K_QWEIGHT ? n * 8 / g : n, cols = ng * g;
    float *w = malloc((size_t)(out * cols) * sizeof *w + 1);
    float *col = malloc((size_t)g * sizeof *col);
    int8_t *q = s->kind == K_QWEIGHT ? malloc((size_t)(out * cols)) : NULL;
    if (!w || !col || (s->kind == K_QWEIGHT && !q)) {
        free(w);
        free(col);
        free(q);
        return -ENOMEM;
    }
    qfs_stout_read(s->src, 0, out, g0 * g, g0 * g + cols, w);
    for (int64_t o = 0; o < out; o++) {
        for (int64_t k = 0; k < ng; k++) {
            const float *x = w + o * cols + k * g;
            int8_t qg[256];
            const float d = qfs_intq_sym4(QFS_DT_F16, x,
                                          s->imatrix ? s->imatrix + (g0 + k) * g : NULL, g,
                                          s->kind == K_QWEIGHT ? qg : NULL);
            if (s->kind == K_SCALES)
                qfs_stout_put_le(dst + (k * out + o) * 2, qfs_f32_to_f16(d), 2);
            else
                for (int64_t j = 0; j < g; j++)
                    q[(k * g + j) * out + o] = qg[j];
        }
    }
    if (s->kind == K_QWEIGHT)
        for (int64_t r = 0; r < n; r++)
            for (int64_t o = 0; o < out; o++) {
                uint32_t word = 0;
                for (int b = 0; b < 8; b++)
                    word |= (uint32_t)(q[(8 * r + b) * out + o] + 8) << (4 * b);
                qfs_stout_put_le(dst + (r * out + o) * 4, word, 4);
            }
    free(w);
    free(col);
    free(q);
    return 0;
}

static bool gptq_quantizes(const struct qfs_st_tensor *s) { return qfs_stout_is_linear(s); }

static const char *gptq_unfit(const struct qfs_st_tensor *s, int g)
{
    if (s->shape[1] % g)
        return "has rows that do not divide into the format's groups";
    if (s->shape[0] % 8)
        return "has an output size that is not a multiple of 8 (qzeros packs 8 outputs a word)";
    return NULL;
}

/* Output chunks of about this many bytes, in whole groups of inputs. */
#define CHUNK_TARGET (1u << 20)

static int gptq_add(const struct qfs_model *m, int i, int g, struct qfs_stout_list *l)
{
    const struct qfs_st_tensor *s = &m->st->tensors[i];
    const int64_t out = s->shape[0], in = s->shape[1];
    struct qfs_stout_src src = {.src = s, .memo = &m->memos[i], .tag = "gptq",
                                .version = GPTQ_VERSION, .group = g, .bits = 4,
                                .produce = gptq_produce};
    src.imatrix = qfs_stout_imatrix(m, s, &src.imatrix_hash);
    int64_t gpc = (int64_t)(CHUNK_TARGET / ((uint64_t)out * 4 * (uint64_t)(g / 8)));
    if (gpc < 1)
        gpc = 1;
    static const struct {
        const char *suffix;
        int kind;
        enum qfs_stout_dtype dtype;
    } outs[4] = {{".qweight", K_QWEIGHT, QFS_SO_I32}, {".qzeros", K_QZEROS, QFS_SO_I32},
                 {".scales", K_SCALES, QFS_SO_F16}, {".g_idx", K_GIDX, QFS_SO_I32}};
    const int64_t shapes[4][2] = {{in / 8, out}, {in / g, out / 8}, {in / g, out}, {in, 0}};
    const int64_t rpc[4] = {gpc * (g / 8), gpc, gpc, 1};
    for (int k = 0; k < 4; k++) {
        src.kind = outs[k].kind;
        src.dtype = outs[k].dtype;
        int rc = qfs_stout_add(l, qfs_stout_renamed(s->name, outs[k].suffix), k == 3 ? 1 : 2, shapes[k],
                               &src);
        if (rc < 0)
            return rc;
        l->t[l->n - 1].rows_per_chunk = rpc[k];
    }
    return 0;
}

static int gptq_config(const struct qfs_model *m, int g, char **buf, size_t *len)
{
    json_t *block = json_pack(
        "{s:i,s:i,s:b,s:b,s:b,s:f,s:b,s:b,s:n,s:s,s:s,s:s,s:s,s:{s:[s]},s:s}", "bits", 4,
        "group_size", g, "desc_act", 0, "sym", 1, "lm_head", 0, "damp_percent", 0.01,
        "static_groups", 0, "true_sequential", 1, "model_name_or_path", "model_file_base_name",
        "model", "quant_method", "gptq", "checkpoint_format", "gptq", "pack_dtype", "int32",
        "meta", "quantizer", "quantfs", "quantfs",
        "data-free GPTQ layout: made by quantfs from the unquantized weights without "
        "calibration data; with an importance matrix each group's scale minimises the "
        "importance-weighted error (GPTQ's update needs the full Hessian, which is not "
        "available), else round-to-nearest");
    return qfs_stout_config(m, "quantization_config", block, "float16", buf, len);
}

static const struct qfs_stout_plan gptq_plan = {
    .fmt = &qfs_format_gptq, .suffix = "gptq", .variant = "GPTQ", .meta_format = "pt",
    .to_f16 = true, .quantizes = gptq_quantizes, .unfit = gptq_unfit, .add = gptq_add,
    .config = gptq_config,
};

static int gptq_offer(struct qfs_model *m, int g)
{
    int rc = qfs_stout_offer(m, &gptq_plan, g);
    return rc < 0 ? rc : 0;
}

static const int gptq_groups[] = {32, 64, 128, 0};

const struct qfs_format qfs_format_gptq = {
    .name = "gptq",
    .what = "<model>.gptq/ (GPTQ v1 layout, 4-bit, data-free; vLLM, TGI, transformers)",
    .cache_codec = QFS_CODEC_GPTQ,
    .version = GPTQ_VERSION,
    .groups = gptq_groups,
    .default_group = 128,
    .default_on = true,
    .offer = gptq_offer,
    .variants = "GPTQ",
};
