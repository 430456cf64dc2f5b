/* llama-quantize's type plan (src/llama-quant.cpp of the llama.cpp revision we match),
 * written as tables and small rules.  Processing order matters: the attn_v and ffn_down
 * rules count tensors in the order llama-quantize visits them. */
#include "gguf_plan.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define T(x) QFS_TYPE_##x

/* Listing order: larger first, converter outputs first. */
const struct qfs_gguf_mix qfs_gguf_mixes[] = {
    /* name      ftype base        conv  imatrix_only */
    {"F32",      0,  T(F32),      true,  false},
    {"F16",      1,  T(F16),      true,  false},
    {"BF16",     32, T(BF16),     true,  false},
    {"Q8_0",     7,  T(Q8_0),     false, false},
    {"Q6_K",     18, T(Q6_K),     false, false},
    {"Q5_K_M",   17, T(Q5_K),     false, false},
    {"Q5_K_S",   16, T(Q5_K),     false, false},
    {"Q5_1",     9,  T(Q5_1),     false, false},
    {"Q5_0",     8,  T(Q5_0),     false, false},
    {"Q4_K_M",   15, T(Q4_K),     false, false},
    {"Q4_K_S",   14, T(Q4_K),     false, false},
    {"Q4_1",     3,  T(Q4_1),     false, false},
    {"Q4_0",     2,  T(Q4_0),     false, false},
    {"IQ4_NL",   25, T(IQ4_NL),   false, false},
    {"IQ4_XS",   30, T(IQ4_XS),   false, false},
    {"Q3_K_L",   13, T(Q3_K),     false, false},
    {"Q3_K_M",   12, T(Q3_K),     false, false},
    {"Q3_K_S",   11, T(Q3_K),     false, false},
    {"Q2_K",     10, T(Q2_K),     false, false},
    {"Q2_K_S",   21, T(Q2_K),     false, false},
    {"TQ2_0",    37, T(TQ2_0),    false, false},
    {"TQ1_0",    36, T(TQ1_0),    false, false},
    {"Q2_0",     41, T(Q2_0),     false, false},
    {"Q1_0",     40, T(Q1_0),     false, false},
    {"IQ3_M",    27, T(IQ3_S),    false, true},
    {"IQ3_S",    26, T(IQ3_S),    false, true},
    {"IQ3_XS",   22, T(IQ3_S),    false, true},
    {"IQ3_XXS",  23, T(IQ3_XXS),  false, true},
    {"IQ2_M",    29, T(IQ2_S),    false, true},
    {"IQ2_S",    28, T(IQ2_XS),   false, true},
    {"IQ2_XS",   20, T(IQ2_XS),   false, true},
    {"IQ2_XXS",  19, T(IQ2_XXS),  false, true},
    {"IQ1_M",    31, T(IQ1_M),    false, true},
    {"IQ1_S",    24, T(IQ1_S),    false, true},
};
const int qfs_gguf_n_mixes = (int)(sizeof qfs_gguf_mixes / sizeof qfs_gguf_mixes[0]);

const struct qfs_gguf_mix *qfs_gguf_mix_find(const char *name)
{
    for (int i = 0; i < qfs_gguf_n_mixes; i++)
        if (strcmp(qfs_gguf_mixes[i].name, name) == 0)
            return &qfs_gguf_mixes[i];
    return NULL;
}

enum cat { C_OTHER, C_OUTPUT, C_TOKEN_EMBD, C_ATTN_QKV, C_ATTN_V, C_ATTN_K, C_ATTN_Q, C_ATTN_OUT, C_FFN_UP, C_FFN_GATE, C_FFN_DOWN };

static enum cat category(const char *name)
{
    if (strcmp(name, "output.weight") == 0)
        return C_OUTPUT;
    if (strcmp(name, "token_embd.weight") == 0)
        return C_TOKEN_EMBD;
    static const struct {
        const char *part;
        enum cat c;
    } parts[] = {
        {"attn_qkv.weight", C_ATTN_QKV},
        {"attn_v.weight", C_ATTN_V},     {"attn_k.weight", C_ATTN_K}, {"attn_q.weight", C_ATTN_Q},
        {"attn_output.weight", C_ATTN_OUT}, {"ffn_up", C_FFN_UP},     {"ffn_gate", C_FFN_GATE},
        {"ffn_down", C_FFN_DOWN},
    };
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        if (strstr(name, parts[i].part))
            return parts[i].c;
    return C_OTHER;
}

static bool is(const struct qfs_gguf_mix *m, const char *name) { return strcmp(m->name, name) == 0; }

/* category_is_attn_v: the fused qkv tensor is as sensitive as attn_v, and counted with it */
static bool attn_v_like(enum cat c) { return c == C_ATTN_V || c == C_ATTN_QKV; }

static bool use_more_bits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static int64_t blck(enum qfs_type t)
{
    const struct qfs_type_info *ti = qfs_type_info(t);
    return ti ? ti->blck : 0;
}

struct counters {
    int n_attn_v, i_attn_v, i_ffn_down, i_ffn_gate, i_ffn_up, n_layers;
};

/* layer_info: the layer of an ffn tensor is its counter, except in a MoE model, whose
 * tensor order does not follow layers: then it is parsed from the name. */
static int layer_of(const struct qfs_plan_model *pm, int counter, const char *name)
{
    int i = counter;
    if (pm->n_expert > 1 && sscanf(name, "blk.%d.", &i) != 1)
        i = counter;
    return i;
}

/* llama_tensor_get_type_impl for the mixes we offer (no falcon, no MXFP4). */
static enum qfs_type choose(const struct qfs_gguf_mix *m, const struct qfs_plan_model *pm,
                            struct counters *c, const struct qfs_vtensor *t, enum cat cat,
                            bool tied)
{
    enum qfs_type ty = m->base;
    const int64_t gqa = pm->n_head_kv > 0 ? pm->n_head / pm->n_head_kv : 1;
    const int64_t n_exp = pm->n_expert;
    const bool iq_low = is(m, "IQ2_XXS") || is(m, "IQ2_XS") || is(m, "IQ1_S") || is(m, "IQ2_S") ||
                        is(m, "IQ2_M") || is(m, "IQ1_M");

    if (cat == C_OUTPUT || (tied && cat == C_TOKEN_EMBD)) {
        if (blck(ty) == 0 || t->ne[0] % blck(ty) != 0)
            return T(Q8_0);
        if (iq_low || is(m, "IQ3_XXS"))
            return T(Q5_K);
        return ty != T(Q8_0) ? T(Q6_K) : ty;
    }
    if (cat == C_TOKEN_EMBD) {
        if (is(m, "IQ2_XXS") || is(m, "IQ2_XS") || is(m, "IQ1_S") || is(m, "IQ1_M"))
            return T(Q2_K);
        if (is(m, "IQ2_S") || is(m, "IQ2_M") || is(m, "IQ3_XXS"))
            return T(IQ3_S);
        if (is(m, "TQ1_0") || is(m, "TQ2_0") || is(m, "Q2_0"))
            return T(Q4_K);
        return ty;
    }
    if (iq_low) {
        const bool s_or_m = is(m, "IQ2_S") || is(m, "IQ2_M");
        if (attn_v_like(cat)) {
            ty = gqa >= 4 || n_exp >= 4 ? T(Q4_K) : s_or_m ? T(IQ3_S) : T(Q2_K);
            c->i_attn_v++;
        } else if (n_exp == 8 && cat == C_ATTN_K) {
            ty = T(Q4_K);
        } else if (cat == C_FFN_DOWN) {
            if (c->i_ffn_down < c->n_layers / 8)
                ty = s_or_m ? T(IQ3_S) : T(Q2_K);
            c->i_ffn_down++;
        } else if (cat == C_ATTN_OUT) {
            if (n_exp == 8)
                ty = T(Q5_K);
            else if (is(m, "IQ1_S") || is(m, "IQ1_M"))
                ty = T(IQ2_XXS);
            else if (s_or_m)
                ty = T(IQ3_S);
        }
        return ty;
    }
    if (attn_v_like(cat)) {
        if (is(m, "Q2_K"))
            ty = gqa >= 4 ? T(Q4_K) : T(Q3_K);
        else if (is(m, "Q2_K_S") && gqa >= 4)
            ty = T(Q4_K);
        else if (is(m, "IQ3_XXS"))
            ty = gqa >= 4 ? T(Q4_K) : !pm->has_imatrix ? T(IQ3_S) : T(IQ3_XXS);
        else if ((is(m, "IQ3_XS") || is(m, "IQ3_S")) && gqa >= 4)
            ty = T(Q4_K);
        else if (is(m, "IQ3_M"))
            ty = T(Q4_K);
        else if (is(m, "Q3_K_M"))
            ty = c->i_attn_v < 2 ? T(Q5_K) : T(Q4_K);
        else if (is(m, "Q3_K_L"))
            ty = T(Q5_K);
        else if ((is(m, "IQ4_NL") || is(m, "IQ4_XS")) && gqa >= 4)
            ty = T(Q5_K);
        else if ((is(m, "Q4_K_M") || is(m, "Q5_K_M")) && use_more_bits(c->i_attn_v, c->n_attn_v))
            ty = T(Q6_K);
        else if (is(m, "Q4_K_S") && c->i_attn_v < 4)
            ty = T(Q5_K);
        if (pm->is_70b && (ty == T(Q3_K) || ty == T(Q4_K)))
            ty = T(Q5_K);
        if (n_exp == 8)
            ty = T(Q8_0); /* "bumping this to Q8_0 trades just ~128MB" */
        c->i_attn_v++;
        return ty;
    }
    if (cat == C_ATTN_K) {
        if (n_exp == 8)
            return T(Q8_0);
        if (is(m, "IQ3_XS"))
            return T(IQ3_XXS);
        if (is(m, "IQ3_XXS"))
            return T(IQ2_S);
        return ty;
    }
    if (cat == C_ATTN_Q) {
        if (is(m, "IQ3_XS"))
            return T(IQ3_XXS);
        if (is(m, "IQ3_XXS"))
            return T(IQ2_S);
        return ty;
    }
    if (cat == C_FFN_DOWN) {
        const int i = layer_of(pm, c->i_ffn_down, t->name), n = c->n_layers;
        c->i_ffn_down++;
        if (is(m, "Q2_K"))
            ty = T(Q3_K);
        else if (is(m, "Q2_K_S")) {
            if (i < n / 8)
                ty = T(Q4_K);
        } else if (is(m, "IQ3_XXS") && !pm->has_imatrix)
            ty = i < n / 8 ? T(Q4_K) : T(Q3_K);
        else if (is(m, "Q3_K_M"))
            ty = i < n / 16 ? T(Q5_K) : T(Q4_K); /* (not falcon) || use_more_bits: always Q4_K */
        else if (is(m, "IQ3_M") && (i < n / 8 || (n_exp == 8 && use_more_bits(i, n))))
            ty = T(Q4_K);
        else if (is(m, "Q3_K_L"))
            ty = T(Q5_K);
        else if (is(m, "Q4_K_M")) {
            if (use_more_bits(i, n))
                ty = T(Q6_K);
        } else if (i < n / 8 && (is(m, "IQ4_NL") || is(m, "IQ4_XS")) && !pm->has_imatrix)
            ty = T(Q5_K);
        else if (is(m, "Q5_K_M") && use_more_bits(i, n))
            ty = T(Q6_K);
        else if (is(m, "Q4_K_S") && i < n / 8)
            ty = T(Q5_K);
        else if ((is(m, "Q4_0") || is(m, "Q5_0")) && pm->has_imatrix && i < n / 8)
            ty = is(m, "Q4_0") ? T(Q4_1) : T(Q5_1);
        return ty;
    }
    if (cat == C_ATTN_OUT) {
        if (n_exp == 8) {
            if (is(m, "Q2_K") || is(m, "IQ3_XS") || is(m, "IQ3_XXS") || is(m, "Q3_K_S") ||
                is(m, "Q3_K_M") || is(m, "IQ4_NL") || is(m, "Q4_K_S") || is(m, "Q4_K_M") ||
                is(m, "IQ3_S") || is(m, "IQ3_M") || is(m, "IQ4_XS"))
                ty = T(Q5_K);
        } else if (is(m, "Q2_K"))
            ty = T(Q3_K);
        else if (is(m, "IQ3_XXS"))
            ty = T(IQ3_S);
        else if (is(m, "Q3_K_M"))
            ty = T(Q4_K);
        else if (is(m, "Q3_K_L"))
            ty = T(Q5_K);
        else if (is(m, "IQ3_M"))
            ty = T(Q4_K);
        return ty;
    }
    if (cat == C_FFN_GATE || cat == C_FFN_UP) {
        int *ctr = cat == C_FFN_GATE ? &c->i_ffn_gate : &c->i_ffn_up;
        const int i = layer_of(pm, *ctr, t->name);
        (*ctr)++;
        if (is(m, "IQ3_XS") && i >= c->n_layers / 8 && i < 7 * c->n_layers / 8)
            ty = T(IQ3_XXS);
        return ty;
    }
    return ty;
}

/* tensor_type_fallback: a row length the type's block does not divide. */
static int fallback(enum qfs_type *ty, int64_t ncols)
{
    const int64_t qk = blck(*ty);
    if (qk == 0)
        return -ENOTSUP; /* the kernel for this type is not available */
    if (ncols % qk == 0)
        return 0;
    switch (*ty) {
    case T(IQ1_S): case T(IQ1_M): case T(IQ2_XXS): case T(IQ2_XS): case T(IQ2_S):
    case T(IQ3_XXS): case T(IQ3_S): case T(IQ4_XS):
        *ty = T(IQ4_NL);
        break;
    case T(Q2_0): case T(Q2_K): case T(Q3_K): case T(TQ1_0): case T(TQ2_0):
        *ty = T(Q4_0);
        break;
    case T(Q4_K):
        *ty = T(Q5_0);
        break;
    case T(Q5_K):
        *ty = T(Q5_1);
        break;
    case T(Q6_K):
        *ty = T(Q8_0);
        break;
    default:
        if (qk > 32)
            return -ENOTSUP; /* llama-quantize: "no tensor type fallback" */
        break;
    }
    if (blck(*ty) == 0)
        return -ENOTSUP;
    if (ncols % blck(*ty) != 0)
        *ty = T(F16);
    return 0;
}

/* tensor_requires_imatrix */
static bool requires_imatrix(const struct qfs_gguf_mix *m, enum cat cat, enum qfs_type ty)
{
    if (cat == C_TOKEN_EMBD || cat == C_OUTPUT)
        return false;
    switch (ty) {
    case T(IQ3_XXS): case T(IQ2_XXS): case T(IQ2_XS): case T(IQ2_S): case T(IQ1_M): case T(IQ1_S):
        return true;
    case T(Q2_K):
        return is(m, "Q2_K_S");
    default:
        return false;
    }
}

static bool allows_quantization(const struct qfs_vtensor *t)
{
    size_t n = strlen(t->name);
    return t->n_dims >= 2 && n >= 6 && strcmp(t->name + n - 6, "weight") == 0 &&
           !strstr(t->name, "_norm.weight") && !strstr(t->name, "ffn_gate_inp.weight");
}

int qfs_gguf_plan(const struct qfs_gguf_mix *m, const struct qfs_plan_model *pm,
                  struct qfs_vtensor *ts, int n, const char **why)
{
    static const char *no_imatrix = "a tensor needs an importance matrix";
    static const char *no_fallback = "a row size has no fallback type";
    static const char *no_kernel = "a type of its plan is not implemented";
    bool tied = true;
    struct counters c = {.n_layers = (int)pm->n_layers};
    for (int i = 0; i < n; i++) {
        enum cat cat = category(ts[i].name);
        if (cat == C_OUTPUT)
            tied = false;
        if (attn_v_like(cat))
            c.n_attn_v++;
    }
    for (int i = 0; i < n; i++) {
        struct qfs_vtensor *t = &ts[i];
        if (!allows_quantization(t))
            continue; /* keeps the type it has in the file llama-quantize reads */
        enum cat cat = category(t->name);
        enum qfs_type ty = choose(m, pm, &c, t, cat, tied);
        int rc = fallback(&ty, t->ne[0]);
        if (rc < 0) {
            *why = rc == -ENOTSUP && blck(ty) == 0 ? no_kernel : no_fallback;
            return rc;
        }
        if (!pm->has_imatrix && requires_imatrix(m, cat, ty)) {
            *why = no_imatrix;
            return -ENOTSUP;
        }
        t->type = ty;
    }
    return 0;
}
