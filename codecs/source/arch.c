/* The architecture table (contract: arch.h).  Facts from llama.cpp's convert_hf_to_gguf.py
 * (conversion/llama.py, qwen.py, gemma.py, phi.py, base.py) and gguf-py's tensor map at the
 * revision the references were made with; no code is shared with them. */
#include "arch.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "../../util/json_file.h"
#include "../../util/log.h"
#include "../gguf/gguf_meta.h"
#include "model.h"

#define B QFS_NR_BLOCK
#define Q QFS_NR_Q
#define K QFS_NR_K
#define S QFS_NR_STACK

/* ---- tensor-name rules ---- */

static const struct qfs_name_rule top_rules[] = {
    {"model.embed_tokens.weight", "token_embd.weight", 0},
    {"model.norm.weight", "output_norm.weight", 0},
    {"lm_head.weight", "output.weight", 0},
    {NULL, NULL, 0},
};
/* a tied model's lm_head (Gemma ties always): the converter drops it */
static const struct qfs_name_rule drop_lm_head_rules[] = {
    {"lm_head.weight", NULL, 0},
    {NULL, NULL, 0},
};
static const struct qfs_name_rule attn_rules[] = {
    {"input_layernorm.weight", "attn_norm.weight", B},
    {"post_attention_layernorm.weight", "ffn_norm.weight", B},
    {"self_attn.q_proj.weight", "attn_q.weight", B | Q},
    {"self_attn.k_proj.weight", "attn_k.weight", B | K},
    {"self_attn.v_proj.weight", "attn_v.weight", B},
    {"self_attn.o_proj.weight", "attn_output.weight", B},
    {"self_attn.q_proj.bias", "attn_q.bias", B | Q},
    {"self_attn.k_proj.bias", "attn_k.bias", B | K},
    {"self_attn.v_proj.bias", "attn_v.bias", B},
    {NULL, NULL, 0},
};
static const struct qfs_name_rule qk_norm_rules[] = {
    {"self_attn.q_norm.weight", "attn_q_norm.weight", B},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", B},
    {NULL, NULL, 0},
};
static const struct qfs_name_rule mlp_rules[] = {
    {"mlp.gate_proj.weight", "ffn_gate.weight", B},
    {"mlp.up_proj.weight", "ffn_up.weight", B},
    {"mlp.down_proj.weight", "ffn_down.weight", B},
    {NULL, NULL, 0},
};
/* Gemma's four norms per layer: these take precedence over attn_rules */
static const struct qfs_name_rule gemma_norm_rules[] = {
    {"post_attention_layernorm.weight", "post_attention_norm.weight", B},
    {"pre_feedforward_layernorm.weight", "ffn_norm.weight", B},
    {"post_feedforward_layernorm.weight", "post_ffw_norm.weight", B},
    {NULL, NULL, 0},
};
/* Qwen2MoeModel.modify_tensors: written down, gate, up */
static const struct qfs_name_rule qwen_moe_rules[] = {
    {"mlp.gate.weight", "ffn_gate_inp.weight", B},
    {"mlp.experts.%x.down_proj.weight", "ffn_down_exps.weight", B | S},
    {"mlp.experts.%x.gate_proj.weight", "ffn_gate_exps.weight", B | S},
    {"mlp.experts.%x.up_proj.weight", "ffn_up_exps.weight", B | S},
    {NULL, NULL, 0},
};
/* LlamaModel.modify_tensors: w1 (gate), w2 (down), w3 (up) */
static const struct qfs_name_rule mixtral_moe_rules[] = {
    {"block_sparse_moe.gate.weight", "ffn_gate_inp.weight", B},
    {"block_sparse_moe.experts.%x.w1.weight", "ffn_gate_exps.weight", B | S},
    {"block_sparse_moe.experts.%x.w2.weight", "ffn_down_exps.weight", B | S},
    {"block_sparse_moe.experts.%x.w3.weight", "ffn_up_exps.weight", B | S},
    {NULL, NULL, 0},
};
/* Phi-3 keeps its fused projections fused (attn_qkv: q, k, v rows; ffn_up: gate, up) */
static const struct qfs_name_rule phi3_rules[] = {
    {"self_attn.qkv_proj.weight", "attn_qkv.weight", B},
    {"mlp.gate_up_proj.weight", "ffn_up.weight", B},
    {NULL, NULL, 0},
};

/* ---- computed tensors ---- */

/* The rope_parameters / rope_scaling object (NULL when absent). */
static json_t *rope_params(const struct qfs_model *m)
{
    json_t *rp = json_object_get(m->cfg.json, "rope_parameters");
    if (!json_is_object(rp))
        rp = json_object_get(m->cfg.json, "rope_scaling");
    return json_is_object(rp) ? rp : NULL;
}

static double rope_get(json_t *rp, const char *key, double def)
{
    json_t *v = rp ? json_object_get(rp, key) : NULL;
    return json_is_number(v) ? json_number_value(v) : def;
}

/* LlamaModel.generate_extra_tensors: per rotary pair, the llama3 wavelength-dependent
 * factor, in torch float32 arithmetic (Python scalars rounded to float32 first). */
static int computed_llama3(const struct qfs_model *m, struct qfs_arch_tensors *out)
{
    json_t *rp = rope_params(m);
    if (!rp || !m->cfg.rope_scaling_type || strcasecmp(m->cfg.rope_scaling_type, "llama3") != 0)
        return 0;
    const double base = m->cfg.has_rope_theta ? m->cfg.rope_theta : rope_get(rp, "rope_theta", 10000.0);
    const int64_t dim = m->cfg.head_dim_explicit ? m->cfg.head_dim
                                                 : m->cfg.hidden_size / m->cfg.n_heads;
    const double factor = rope_get(rp, "factor", 8.0);
    const double low = rope_get(rp, "low_freq_factor", 1.0);
    const double high = rope_get(rp, "high_freq_factor", 4.0);
    const double old_ctx = rope_get(rp, "original_max_position_embeddings", 8192);
    const double low_wl = old_ctx / low, high_wl = old_ctx / high;
    if (dim < 2 || dim > (1 << 20)) {
        qfs_err("%s: head dimension %" PRId64 " cannot carry llama3 rope factors", m->cfg.file, dim);
        return -EINVAL;
    }
    const int64_t n = dim / 2 + dim % 2;
    float *v = malloc((size_t)n * sizeof *v);
    if (!v)
        return -ENOMEM;
    const float two_pi = (float)(2 * M_PI), ctx_f = (float)old_ctx;
    for (int64_t i = 0; i < n; i++) {
        const float e = (float)(2 * i) / (float)dim;
        const float freq = 1.0f / (float)pow((double)(float)base, (double)e);
        const float wavelen = two_pi / freq;
        if (wavelen < (float)high_wl) {
            v[i] = 1.0f;
        } else if (wavelen > (float)low_wl) {
            v[i] = (float)factor;
        } else {
            const float smooth = (ctx_f / wavelen - (float)low) / (float)(high - low);
            v[i] = 1.0f / ((1.0f - smooth) / (float)factor + smooth);
        }
    }
    int rc = qfs_arch_add_computed(out, "rope_freqs.weight", v, n);
    free(v);
    return rc;
}

/* Phi3MiniModel.generate_extra_tensors: longrope's long and short factors, as float32. */
static int computed_longrope(const struct qfs_model *m, struct qfs_arch_tensors *out)
{
    json_t *rp = rope_params(m);
    json_t *lf = rp ? json_object_get(rp, "long_factor") : NULL;
    json_t *sf = rp ? json_object_get(rp, "short_factor") : NULL;
    if (!json_is_array(lf) || json_array_size(lf) == 0)
        return 0;
    double rot = 1.0;
    bool found;
    int rc = qfs_hf_num(&m->cfg, "partial_rotary_factor", &found, &rot);
    if (rc < 0)
        return rc;
    const int64_t rope_dims = (int64_t)(rot * (double)m->cfg.hidden_size) / m->cfg.n_heads;
    if (!json_is_array(sf) || json_array_size(lf) != json_array_size(sf) ||
        (double)json_array_size(lf) != (double)rope_dims / 2) {
        qfs_err("%s: rope_scaling long_factor and short_factor must both have %g values",
                m->cfg.file, (double)rope_dims / 2);
        return -EINVAL;
    }
    const size_t n = json_array_size(lf);
    float *v = malloc(n * sizeof *v);
    if (!v)
        return -ENOMEM;
    static const char *const names[2] = {"rope_factors_long.weight", "rope_factors_short.weight"};
    json_t *arrs[2] = {lf, sf};
    for (int k = 0; k < 2 && rc == 0; k++) {
        for (size_t i = 0; i < n && rc == 0; i++) {
            json_t *x = json_array_get(arrs[k], i);
            if (!json_is_number(x) || !isfinite(json_number_value(x))) {
                qfs_err("%s: rope_scaling %s has a value that is not a number", m->cfg.file,
                        k ? "short_factor" : "long_factor");
                rc = -EINVAL;
            } else {
                v[i] = (float)json_number_value(x);
            }
        }
        if (rc == 0)
            rc = qfs_arch_add_computed(out, names[k], v, (int64_t)n);
    }
    free(v);
    return rc;
}

/* ---- the table ---- */

static const struct qfs_name_rule *const llama_names[] = {top_rules, attn_rules, mlp_rules,
                                                          mixtral_moe_rules, NULL};
static const struct qfs_name_rule *const qwen2_names[] = {top_rules, attn_rules, mlp_rules, NULL};
static const struct qfs_name_rule *const qwen3_names[] = {top_rules, attn_rules, qk_norm_rules,
                                                          mlp_rules, NULL};
static const struct qfs_name_rule *const qwen3moe_names[] = {top_rules, attn_rules,
                                                             qk_norm_rules, qwen_moe_rules, NULL};
static const struct qfs_name_rule *const gemma3_names[] = {drop_lm_head_rules, top_rules,
                                                           gemma_norm_rules, attn_rules,
                                                           qk_norm_rules, mlp_rules, NULL};
static const struct qfs_name_rule *const phi3_names[] = {top_rules, phi3_rules, attn_rules,
                                                         mlp_rules, NULL};

static const qfs_meta_fn llama_meta[] = {qfs_meta_text, qfs_meta_llama, NULL};
static const qfs_meta_fn text_meta[] = {qfs_meta_text, NULL};
static const qfs_meta_fn moe_meta[] = {qfs_meta_text, qfs_meta_qwen2moe, NULL};
static const qfs_meta_fn gemma3_meta[] = {qfs_meta_text, qfs_meta_gemma3, NULL};
static const qfs_meta_fn phi3_meta[] = {qfs_meta_phi3, NULL};

static const char *const mixtral_needs[] = {"num_local_experts", "num_experts_per_tok", NULL};
static const char *const qwen3moe_needs[] = {"num_experts", "num_experts_per_tok",
                                             "moe_intermediate_size", NULL};
static const char *const phi3_needs[] = {"original_max_position_embeddings", NULL};

static const struct qfs_arch arches[] = {
    {.hf = "LlamaForCausalLM", .gguf = "llama", .names = llama_names,
     .flags = QFS_ARCH_PERMUTE_QK, .vocab = QFS_VOCAB_LLAMA, .meta = llama_meta,
     .computed = computed_llama3, .layers_70b = 80, .need_gqa_70b = true},
    /* the converter writes Mistral and Mixtral as arch llama (LlamaModel) */
    {.hf = "MistralForCausalLM", .gguf = "llama", .names = llama_names,
     .flags = QFS_ARCH_PERMUTE_QK, .vocab = QFS_VOCAB_LLAMA, .meta = llama_meta,
     .computed = computed_llama3, .layers_70b = 80, .need_gqa_70b = true},
    {.hf = "MixtralForCausalLM", .gguf = "llama", .names = llama_names,
     .flags = QFS_ARCH_PERMUTE_QK, .vocab = QFS_VOCAB_LLAMA, .needs = mixtral_needs,
     .meta = llama_meta, .computed = computed_llama3, .layers_70b = 80, .need_gqa_70b = true},
    {.hf = "Qwen2ForCausalLM", .gguf = "qwen2", .names = qwen2_names,
     .vocab = QFS_VOCAB_SPM_GPT2, .meta = text_meta, .layers_70b = 80},
    {.hf = "Qwen3ForCausalLM", .gguf = "qwen3", .names = qwen3_names,
     .vocab = QFS_VOCAB_SPM_GPT2, .meta = text_meta},
    {.hf = "Qwen3MoeForCausalLM", .gguf = "qwen3moe", .names = qwen3moe_names,
     .vocab = QFS_VOCAB_GPT2, .needs = qwen3moe_needs, .meta = moe_meta},
    {.hf = "Gemma3ForCausalLM", .gguf = "gemma3", .names = gemma3_names,
     .flags = QFS_ARCH_NORM_PLUS_ONE | QFS_ARCH_CUT_EMBD, .vocab = QFS_VOCAB_GEMMA,
     .meta = gemma3_meta},
    {.hf = "Phi3ForCausalLM", .gguf = "phi3", .names = phi3_names, .vocab = QFS_VOCAB_PHI3,
     .needs = phi3_needs, .meta_pre = qfs_meta_phi3_pre, .meta = phi3_meta,
     .computed = computed_longrope},
};

const struct qfs_arch *qfs_arch_find(const char *hf)
{
    for (size_t i = 0; i < sizeof arches / sizeof arches[0]; i++)
        if (!strcmp(arches[i].hf, hf))
            return &arches[i];
    return NULL;
}

/* ---- naming ---- */

/* Does s (an HF name without the block prefix) match pattern p, where "%x" is a decimal
 * index (stored in *x)? */
static bool match(const char *p, const char *s, long *x)
{
    while (*p) {
        if (p[0] == '%' && p[1] == 'x') {
            if (*s < '0' || *s > '9')
                return false;
            char *end;
            unsigned long v = strtoul(s, &end, 10);
            if (v > 1000000 || (s[0] == '0' && end - s > 1))
                return false;
            *x = (long)v;
            s = end;
            p += 2;
        } else if (*p++ != *s++) {
            return false;
        }
    }
    return *s == 0;
}

/* The rule for HF name hf: 1 and *rule, *layer (-1: not a block tensor), *expert (-1);
 * 0 when no rule names it. */
static int find_rule(const struct qfs_arch *a, const char *hf, const struct qfs_name_rule **rule,
                     const struct qfs_name_rule **table, long *layer, long *expert)
{
    const char *pre = "model.layers.";
    const char *rest = NULL;
    long blk = -1;
    if (!strncmp(hf, pre, strlen(pre)) && hf[strlen(pre)] >= '0' && hf[strlen(pre)] <= '9') {
        char *end;
        unsigned long v = strtoul(hf + strlen(pre), &end, 10);
        if (*end == '.' && v <= 1000000) {
            blk = (long)v;
            rest = end + 1;
        }
    }
    for (const struct qfs_name_rule *const *tab = a->names; *tab; tab++) {
        for (const struct qfs_name_rule *r = *tab; r->hf; r++) {
            long x = -1;
            if ((r->flags & QFS_NR_BLOCK) ? rest && match(r->hf, rest, &x) : !strcmp(r->hf, hf)) {
                *rule = r;
                *table = *tab;
                *layer = (r->flags & QFS_NR_BLOCK) ? blk : -1;
                *expert = x;
                return 1;
            }
        }
    }
    return 0;
}

static char *gguf_name(const struct qfs_name_rule *r, long layer)
{
    char *s = NULL;
    if (layer < 0)
        return strdup(r->gguf);
    return asprintf(&s, "blk.%ld.%s", layer, r->gguf) < 0 ? NULL : s;
}

char *qfs_arch_gguf_name(const struct qfs_arch *a, const char *hf)
{
    const struct qfs_name_rule *r, *tab;
    long layer, x;
    if (!a || !find_rule(a, hf, &r, &tab, &layer, &x) || !r->gguf || (r->flags & QFS_NR_STACK))
        return NULL;
    return gguf_name(r, layer);
}

/* ---- building the converted tensors ---- */

void qfs_arch_tensors_free(struct qfs_arch_tensors *ts)
{
    if (!ts)
        return;
    for (int i = 0; i < ts->n; i++) {
        free(ts->t[i].name);
        free(ts->t[i].src.t);
        free(ts->t[i].src.memo);
    }
    free(ts->t);
    for (int i = 0; i < ts->n_computed; i++) {
        free(ts->computed[i].name);
        free(ts->computed_data[i]);
        pthread_mutex_destroy(&ts->computed_memo[i].lock);
    }
    free(ts->computed);
    free(ts->computed_data);
    free(ts->computed_memo);
    memset(ts, 0, sizeof *ts);
}

/* Append a tensor of n sources (the arrays are taken over); name is taken over too. */
static int push(struct qfs_arch_tensors *ts, char *name, const struct qfs_st_tensor **src,
                struct qfs_src_memo **memo, int n, int layer)
{
    if (ts->n == ts->cap) {
        int cap = ts->cap ? 2 * ts->cap : 64;
        void *p = realloc(ts->t, (size_t)cap * sizeof *ts->t);
        if (!p) {
            free(name);
            free(src);
            free(memo);
            return -ENOMEM;
        }
        ts->t = p;
        ts->cap = cap;
    }
    const struct qfs_st_tensor *s = src[0];
    struct qfs_mtensor *t = &ts->t[ts->n++];
    memset(t, 0, sizeof *t);
    t->name = name;
    t->layer = layer;
    t->n_dims = s->n_dims + (n > 1);
    for (int d = 0; d < 4; d++)
        t->ne[d] = d < s->n_dims ? s->shape[s->n_dims - 1 - d] : 1;
    if (n > 1)
        t->ne[s->n_dims] = n;
    t->src = (struct qfs_vsrc){.n = n, .t = src, .memo = memo, .dtype = s->dtype,
                               .row_elems = t->ne[0], .rows = 1};
    for (int d = 1; d < s->n_dims; d++)
        t->src.rows *= t->ne[d];
    return 0;
}

int qfs_arch_add_computed(struct qfs_arch_tensors *out, const char *name, const float *v,
                          int64_t n)
{
    const int k = out->n_computed;
    void *a = realloc(out->computed, (size_t)(k + 1) * sizeof *out->computed);
    if (a)
        out->computed = a;
    void *b = realloc(out->computed_data, (size_t)(k + 1) * sizeof *out->computed_data);
    if (b)
        out->computed_data = b;
    void *c = realloc(out->computed_memo, (size_t)(k + 1) * sizeof *out->computed_memo);
    if (c)
        out->computed_memo = c;
    if (!a || !b || !c)
        return -ENOMEM;
    float *data = malloc((size_t)n * sizeof *data + 1);
    char *nm = strdup(name);
    if (!data || !nm) {
        free(data);
        free(nm);
        return -ENOMEM;
    }
    memcpy(data, v, (size_t)n * sizeof *data);
    out->computed_data[k] = data;
    out->computed[k] = (struct qfs_st_tensor){.name = nm, .dtype = QFS_DT_F32,
                                              .st_dtype = QFS_ST_F32, .n_dims = 1,
                                              .shape = {n}, .data = (const uint8_t *)data,
                                              .nbytes = (uint64_t)n * sizeof *data, .shard = -1};
    memset(&out->computed_memo[k], 0, sizeof out->computed_memo[k]);
    pthread_mutex_init(&out->computed_memo[k].lock, NULL);
    out->n_computed = k + 1;
    return 0;
}

static bool ends_with(const char *s, const char *suf)
{
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

/* The converter's forced-F32 rule (prepare_tensors): 1-D tensors, *_norm.weight, the MoE
 * router, and anything not named *.weight. */
static bool forced_f32(const struct qfs_mtensor *t)
{
    return t->n_dims <= 1 || ends_with(t->name, "_norm.weight") ||
           ends_with(t->name, "ffn_gate_inp.weight") || !ends_with(t->name, ".weight");
}

/* Experts of one layer being collected: per stacked rule, the source index of each expert. */
struct pending {
    const struct qfs_name_rule *table; /* the rules' table */
    int *idx;                          /* [n_rules * n_experts], -1: not seen */
    int seen;
};

static int expert_count(const struct qfs_model *m, int64_t *n)
{
    static const char *const keys[] = {"num_local_experts", "num_experts", "n_routed_experts"};
    for (size_t i = 0; i < 3; i++) {
        bool found;
        int rc = qfs_hf_int(&m->cfg, keys[i], &found, n);
        if (rc < 0)
            return rc;
        if (found) {
            if (*n < 1 || *n > 65536) {
                qfs_err("%s: %s %" PRId64 " is out of range", m->cfg.file, keys[i], *n);
                return -EINVAL;
            }
            return 0;
        }
    }
    *n = 0;
    return 0;
}

static int n_stack_rules(const struct qfs_name_rule *table)
{
    int n = 0;
    for (const struct qfs_name_rule *r = table; r->hf; r++)
        n += (r->flags & QFS_NR_STACK) != 0;
    return n;
}

/* Emit the stacked tensors of layer b (all its experts seen). */
static int emit_stacked(const struct qfs_model *m, struct qfs_arch_tensors *out,
                        struct pending *p, long b, int64_t n_exp)
{
    int k = 0;
    for (const struct qfs_name_rule *r = p->table; r->hf; r++) {
        if (!(r->flags & QFS_NR_STACK))
            continue;
        const struct qfs_st_tensor **src = calloc((size_t)n_exp, sizeof *src);
        struct qfs_src_memo **memo = calloc((size_t)n_exp, sizeof *memo);
        char *name = gguf_name(r, b);
        if (!src || !memo || !name) {
            free(src);
            free(memo);
            free(name);
            return -ENOMEM;
        }
        for (int64_t e = 0; e < n_exp; e++) {
            const int i = p->idx[k * n_exp + e];
            src[e] = &m->st->tensors[i];
            memo[e] = &m->memos[i];
            const struct qfs_st_tensor *s0 = src[0];
            if (src[e]->dtype != s0->dtype || src[e]->n_dims != 2 ||
                src[e]->shape[0] != s0->shape[0] || src[e]->shape[1] != s0->shape[1]) {
                qfs_err("%s: %s: expert tensors of layer %ld differ in shape or dtype", m->dir,
                        src[e]->name, b);
                free(src);
                free(memo);
                free(name);
                return -EINVAL;
            }
        }
        int rc = push(out, name, src, memo, (int)n_exp, (int)b);
        if (rc < 0)
            return rc;
        k++;
    }
    free(p->idx);
    p->idx = NULL;
    p->seen = 0;
    return 0;
}

/* The name of the first missing expert tensor of layer b (for the log line). */
static void report_missing(const struct qfs_model *m, const struct pending *p, long b,
                           int64_t n_exp)
{
    int k = 0;
    for (const struct qfs_name_rule *r = p->table; r->hf; r++) {
        if (!(r->flags & QFS_NR_STACK))
            continue;
        for (int64_t e = 0; e < n_exp; e++) {
            if (p->idx[k * n_exp + e] >= 0)
                continue;
            char pat[256];
            snprintf(pat, sizeof pat, "%s", r->hf);
            char *x = strstr(pat, "%x");
            if (x)
                *x = 0;
            qfs_err("%s: missing expert tensor model.layers.%ld.%s%" PRId64 "%s: not served",
                    m->dir, b, pat, e, x ? r->hf + (x - pat) + 2 : "");
            return;
        }
        k++;
    }
}

static int convert_tensors(const struct qfs_model *m, struct qfs_arch_tensors *out)
{
    const struct qfs_arch *a = m->cfg.arch;
    const struct qfs_st_model *stm = m->st;
    int64_t n_exp = 0;
    int rc = expert_count(m, &n_exp);
    if (rc < 0)
        return rc;
    long max_layer = -1;
    for (int i = 0; i < stm->n_tensors; i++) {
        const struct qfs_name_rule *r, *tab;
        long layer, x;
        if (find_rule(a, stm->tensors[i].name, &r, &tab, &layer, &x) && layer > max_layer)
            max_layer = layer;
    }
    if (max_layer >= m->cfg.n_layers) {
        qfs_err("%s: tensors of layer %ld but num_hidden_layers is %" PRId64, m->cfg.file,
                max_layer, m->cfg.n_layers);
        return -EINVAL;
    }
    /* one entry per layer the tensors have (check_config refuses a num_hidden_layers above
     * them: a table of that size could be 10^9 entries) */
    const long n_pend = max_layer + 1;
    struct pending *pend = calloc((size_t)n_pend + 1, sizeof *pend);
    if (!pend)
        return -ENOMEM;
    for (int i = 0; i < stm->n_tensors && rc == 0; i++) {
        const struct qfs_st_tensor *s = &stm->tensors[i];
        if (ends_with(s->name, ".attention.masked_bias") || ends_with(s->name, ".attention.bias") ||
            ends_with(s->name, ".rotary_emb.inv_freq"))
            continue; /* buffers the converter drops */
        const struct qfs_name_rule *r, *table;
        long layer, x;
        if (!find_rule(a, s->name, &r, &table, &layer, &x)) {
            qfs_err("%s: tensor %s has no GGUF name for %s", m->dir, s->name, a->hf);
            rc = -ENOTSUP;
            break;
        }
        if (!r->gguf)
            continue; /* dropped by the converter */
        if ((r->flags & (QFS_NR_Q | QFS_NR_K)) && (a->flags & QFS_ARCH_PERMUTE_QK) &&
            s->n_dims != 2) {
            qfs_err("%s: tensor %s: q/k biases of llama models are not supported", m->dir, s->name);
            rc = -ENOTSUP;
            break;
        }
        if (!(r->flags & QFS_NR_STACK)) {
            const struct qfs_st_tensor **src = malloc(sizeof *src);
            struct qfs_src_memo **memo = malloc(sizeof *memo);
            char *name = gguf_name(r, layer);
            if (!src || !memo || !name) {
                free(src);
                free(memo);
                free(name);
                rc = -ENOMEM;
                break;
            }
            src[0] = s;
            memo[0] = &m->memos[i];
            if ((rc = push(out, name, src, memo, 1, (int)layer)) < 0)
                break;
            struct qfs_mtensor *t = &out->t[out->n - 1];
            if ((a->flags & QFS_ARCH_PERMUTE_QK) && (r->flags & (QFS_NR_Q | QFS_NR_K))) {
                t->src.xform = QFS_XF_PERMUTE_QK;
                t->src.xform_heads = (r->flags & QFS_NR_Q) ? m->cfg.n_heads : m->cfg.n_kv_heads;
                if (t->src.xform_heads <= 0 || t->src.rows % (2 * t->src.xform_heads) != 0) {
                    qfs_err("%s: tensor %s: %" PRId64 " rows cannot be permuted for %" PRId64
                            " heads", m->dir, s->name, t->src.rows, t->src.xform_heads);
                    rc = -EINVAL;
                    break;
                }
            }
            if ((a->flags & QFS_ARCH_NORM_PLUS_ONE) && ends_with(s->name, "norm.weight"))
                t->src.add = 1.0f;
            continue;
        }
        /* a per-expert tensor: collect, emit when the layer is complete */
        struct pending *p = &pend[layer];
        const int nr = n_stack_rules(table);
        if (n_exp <= 0 || x >= n_exp) {
            qfs_err("%s: tensor %s: expert %ld but the config has %" PRId64 " experts", m->dir,
                    s->name, x, n_exp);
            rc = -EINVAL;
            break;
        }
        if (p->idx && p->table != table) {
            qfs_err("%s: tensor %s: layer %ld mixes two expert layouts", m->dir, s->name, layer);
            rc = -ENOTSUP;
            break;
        }
        if (!p->idx) {
            p->table = table;
            p->idx = malloc((size_t)(nr * n_exp) * sizeof *p->idx);
            if (!p->idx) {
                rc = -ENOMEM;
                break;
            }
            for (int64_t j = 0; j < nr * n_exp; j++)
                p->idx[j] = -1;
        }
        int k = 0;
        for (const struct qfs_name_rule *q = table; q != r; q++)
            k += (q->flags & QFS_NR_STACK) != 0;
        p->idx[k * n_exp + x] = i;
        if (++p->seen == nr * n_exp)
            rc = emit_stacked(m, out, p, layer, n_exp);
    }
    for (long b = 0; b < n_pend; b++) {
        if (rc == 0 && pend[b].idx) {
            report_missing(m, &pend[b], b, n_exp);
            rc = -EINVAL;
        }
        free(pend[b].idx);
    }
    free(pend);
    return rc;
}

/* ---- the config against the tensors ---- */

static const struct qfs_mtensor *find(const struct qfs_arch_tensors *ts, const char *name)
{
    for (int i = 0; i < ts->n; i++)
        if (!strcmp(ts->t[i].name, name))
            return &ts->t[i];
    return NULL;
}

static int disagree(const struct qfs_model *m, const char *key, int64_t want,
                    const struct qfs_mtensor *t, int64_t has)
{
    qfs_err("%s: %s is %" PRId64 " but tensor %s has %" PRId64 ": not served", m->cfg.file, key,
            want, t->name, has);
    return -EINVAL;
}

/* Every dimension the metadata states must be the tensors' own. */
static int check_config(const struct qfs_model *m, const struct qfs_arch_tensors *ts)
{
    const struct qfs_hf_config *c = &m->cfg;
    const struct qfs_mtensor *e = find(ts, "token_embd.weight");
    if (!e) {
        qfs_err("%s: no token embedding tensor (model.embed_tokens.weight): not served", m->dir);
        return -EINVAL;
    }
    if (e->ne[0] != c->hidden_size)
        return disagree(m, "hidden_size", c->hidden_size, e, e->ne[0]);
    const bool vocab_key = !strcmp(c->arch->gguf, "llama");
    if (vocab_key && e->ne[1] != c->vocab_size)
        return disagree(m, "vocab_size", c->vocab_size, e, e->ne[1]);
    /* layers the tensors have: num_hidden_layers above that is refused before a table of
     * its size is made (a config of 10^9 layers over 4) */
    int max_layer = -1;
    for (int i = 0; i < ts->n; i++)
        if (ts->t[i].layer > max_layer)
            max_layer = ts->t[i].layer;
    if (c->n_layers > (int64_t)max_layer + 1) {
        qfs_err("%s: num_hidden_layers is %" PRId64 " but layer %d has no tensors: not served",
                c->file, c->n_layers, max_layer + 1);
        return -EINVAL;
    }
    bool *seen = calloc((size_t)c->n_layers, sizeof *seen);
    if (!seen)
        return -ENOMEM;
    int rc = 0;
    int64_t n_exp = 0;
    if ((rc = expert_count(m, &n_exp)) < 0) {
        free(seen);
        return rc;
    }
    for (int i = 0; i < ts->n && rc == 0; i++) {
        const struct qfs_mtensor *t = &ts->t[i];
        if (t->layer >= 0)
            seen[t->layer] = true;
        const char *part = t->layer >= 0 ? strchr(t->name + 4, '.') + 1 : t->name;
        const bool fused_gate_up = ends_with(t->src.t[0]->name, "gate_up_proj.weight");
        if (!strcmp(part, "attn_q.weight") && t->ne[1] != c->n_heads * c->head_dim)
            rc = disagree(m, "num_attention_heads x head_dim", c->n_heads * c->head_dim, t, t->ne[1]);
        else if (!strcmp(part, "attn_k.weight") && t->ne[1] != c->n_kv_heads * c->head_dim)
            rc = disagree(m, "num_key_value_heads x head_dim", c->n_kv_heads * c->head_dim, t,
                          t->ne[1]);
        else if (!strcmp(part, "attn_qkv.weight") &&
                 t->ne[1] != (c->n_heads + 2 * c->n_kv_heads) * c->head_dim)
            rc = disagree(m, "(num_attention_heads + 2 num_key_value_heads) x head_dim",
                          (c->n_heads + 2 * c->n_kv_heads) * c->head_dim, t, t->ne[1]);
        else if ((!strcmp(part, "attn_q.weight") || !strcmp(part, "attn_k.weight") ||
                  !strcmp(part, "attn_v.weight") || !strcmp(part, "attn_qkv.weight") ||
                  !strcmp(part, "ffn_gate.weight") || !strcmp(part, "ffn_up.weight") ||
                  !strcmp(part, "ffn_gate_exps.weight") || !strcmp(part, "ffn_up_exps.weight") ||
                  !strcmp(part, "ffn_gate_inp.weight")) &&
                 t->ne[0] != c->hidden_size)
            rc = disagree(m, "hidden_size", c->hidden_size, t, t->ne[0]);
        else if (!strcmp(part, "ffn_gate.weight") && t->ne[1] != c->intermediate_size)
            rc = disagree(m, "intermediate_size", c->intermediate_size, t, t->ne[1]);
        else if (!strcmp(part, "ffn_up.weight") &&
                 t->ne[1] != c->intermediate_size * (fused_gate_up ? 2 : 1))
            rc = disagree(m, fused_gate_up ? "2 x intermediate_size" : "intermediate_size",
                          c->intermediate_size * (fused_gate_up ? 2 : 1), t, t->ne[1]);
        else if (t->n_dims == 3 && t->ne[2] != n_exp)
            rc = disagree(m, "the expert count", n_exp, t, t->ne[2]);
        else if (!strcmp(part, "ffn_gate_inp.weight") && t->ne[1] != n_exp)
            rc = disagree(m, "the expert count", n_exp, t, t->ne[1]);
    }
    for (int64_t b = 0; b < c->n_layers && rc == 0; b++) {
        if (!seen[b]) {
            qfs_err("%s: num_hidden_layers is %" PRId64 " but layer %" PRId64 " has no tensors: "
                    "not served", c->file, c->n_layers, b);
            rc = -EINVAL;
        }
    }
    free(seen);
    return rc;
}

/* Gemma3Model.modify_tensors: token_embd keeps only the tokenizer's rows (a SentencePiece
 * vocabulary has config vocab_size entries, a tokenizer.json its vocab plus added tokens). */
static int cut_embedding(const struct qfs_model *m, struct qfs_arch_tensors *ts)
{
    int64_t n_real = m->cfg.vocab_size;
    char *sp = NULL, *tj = NULL;
    if (asprintf(&sp, "%s/tokenizer.model", m->dir) < 0 || asprintf(&tj, "%s/tokenizer.json", m->dir) < 0) {
        free(sp);
        return -ENOMEM;
    }
    struct stat st;
    int rc = 0;
    if (stat(sp, &st) != 0 && stat(tj, &st) == 0) {
        json_t *j = NULL;
        rc = qfs_json_load(tj, QFS_JSON_MAX_TOKENIZER, 0, &j);
        json_t *vocab = json_object_get(json_object_get(j, "model"), "vocab");
        json_t *added = json_object_get(j, "added_tokens");
        if (rc == 0 && !json_is_object(vocab)) {
            qfs_err("%s: no model.vocab object", tj);
            rc = -EINVAL;
        } else if (rc == 0) {
            n_real = (int64_t)json_object_size(vocab) +
                     (int64_t)(json_is_array(added) ? json_array_size(added) : 0);
        }
        json_decref(j);
    }
    free(sp);
    free(tj);
    for (int i = 0; i < ts->n && rc == 0; i++) {
        struct qfs_mtensor *t = &ts->t[i];
        if (!strcmp(t->name, "token_embd.weight") && n_real > 0 && n_real < t->ne[1]) {
            t->ne[1] = n_real;
            t->src.rows = n_real;
        }
    }
    return rc;
}

int qfs_arch_convert(const struct qfs_model *m, struct qfs_arch_tensors *out)
{
    const struct qfs_arch *a = m->cfg.arch;
    memset(out, 0, sizeof *out);
    int rc = 0;
    if (a->computed && (rc = a->computed(m, out)) < 0)
        goto fail;
    for (int i = 0; i < out->n_computed; i++) {
        const struct qfs_st_tensor **src = malloc(sizeof *src);
        struct qfs_src_memo **memo = malloc(sizeof *memo);
        char *name = strdup(out->computed[i].name);
        if (!src || !memo || !name) {
            free(src);
            free(memo);
            free(name);
            rc = -ENOMEM;
            goto fail;
        }
        src[0] = &out->computed[i];
        memo[0] = &out->computed_memo[i];
        if ((rc = push(out, name, src, memo, 1, -1)) < 0)
            goto fail;
    }
    if ((rc = convert_tensors(m, out)) < 0)
        goto fail;
    /* Problems of one tensor are found here, once per model (one line), not by each output
     * type that would store it (a line per GGUF type). */
    for (int i = 0; i < out->n; i++) {
        struct qfs_mtensor *t = &out->t[i];
        t->f32 = forced_f32(t);
        if (t->n_dims > 4) {
            qfs_err("%s: tensor %s has %d dimensions", m->dir, t->name, t->n_dims);
            rc = -EINVAL;
            goto fail;
        }
        for (int d = 0; d < t->n_dims; d++) {
            if (t->ne[d] <= 0) {
                const struct qfs_st_tensor *st = t->src.t[0];
                char shape[128];
                size_t o = 0;
                for (int k = 0; k < st->n_dims && o < sizeof shape; k++)
                    o += (size_t)snprintf(shape + o, sizeof shape - o, "%s%" PRId64, k ? ", " : "",
                                          st->shape[k]);
                qfs_err("%s: tensor %s [%s] (%s) has an empty dimension: not served", m->dir,
                        st->name, shape, t->name);
                rc = -EINVAL;
                goto fail;
            }
        }
    }
    if ((rc = check_config(m, out)) < 0)
        goto fail;
    if ((a->flags & QFS_ARCH_CUT_EMBD) && (rc = cut_embedding(m, out)) < 0)
        goto fail;
    return 0;
fail:
    qfs_arch_tensors_free(out);
    return rc;
}
