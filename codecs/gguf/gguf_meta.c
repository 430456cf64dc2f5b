/* The metadata convert_hf_to_gguf.py writes: general.* (name heuristics from the
 * directory name, size label from the parameter count) and the <arch>.* hyperparameters,
 * in the converter's key order. */
#include <ctype.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <inttypes.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../../util/log.h"
#include "gguf_file.h"
#include "gguf_meta.h"
#include "../source/model.h"
#include "../source/tokenizer.h"

/* "(v|iter)?\d+(\.\d+)*" */
static int is_version(const char *s)
{
    if (strncasecmp(s, "iter", 4) == 0)
        s += 4;
    else if (*s == 'v' || *s == 'V')
        s++;
    if (!isdigit((unsigned char)*s))
        return 0;
    while (*s) {
        if (!isdigit((unsigned char)*s))
            return 0;
        s++;
        if (*s == '.') {
            s++;
            if (!isdigit((unsigned char)*s))
                return 0;
        }
    }
    return 1;
}

/* "i?q\d(_\w)*|b?fp?(16|32)" */
static int is_qtype(const char *s)
{
    const char *p = s;
    if (*p == 'i' || *p == 'I')
        p++;
    if ((*p == 'q' || *p == 'Q') && isdigit((unsigned char)p[1])) {
        p += 2;
        while (*p == '_' && (isalnum((unsigned char)p[1]) || p[1] == '_')) {
            p++;
            while (isalnum((unsigned char)*p) || *p == '_')
                p++;
        }
        return *p == 0;
    }
    p = s;
    if (*p == 'b' || *p == 'B')
        p++;
    if (*p != 'f' && *p != 'F')
        return 0;
    p++;
    if (*p == 'p' || *p == 'P')
        p++;
    return strcmp(p, "16") == 0 || strcmp(p, "32") == 0;
}

/* "(([A]|\d+[x])?\d+([._]\d+)?[KMBT][\d]?|small|mini|medium|large|x?xl)" */
static int is_size_label(const char *s)
{
    static const char *words[] = {"small", "mini", "medium", "large", "xl", "xxl"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strcasecmp(s, words[i]) == 0)
            return 1;
    const char *p = s;
    if (*p == 'a' || *p == 'A')
        p++;
    else {
        const char *q = p;
        while (isdigit((unsigned char)*q))
            q++;
        if (q > p && (*q == 'x' || *q == 'X'))
            p = q + 1;
    }
    if (!isdigit((unsigned char)*p))
        return 0;
    while (isdigit((unsigned char)*p))
        p++;
    if ((*p == '.' || *p == '_') && isdigit((unsigned char)p[1])) {
        p++;
        while (isdigit((unsigned char)*p))
            p++;
    }
    if (!*p || !strchr("KMBTkmbt", *p))
        return 0;
    p++;
    if (isdigit((unsigned char)*p))
        p++;
    return *p == 0;
}

static int is_finetune_word(const char *s)
{
    return !strcasecmp(s, "chat") || !strcasecmp(s, "instruct") || !strcasecmp(s, "vision") ||
           !strcasecmp(s, "lora");
}

enum { T_BASE = 1, T_SIZE = 2, T_FT = 4, T_VER = 8, T_TYPE = 16 };

static int popcount(int x) { return __builtin_popcount((unsigned)x); }

/* Append "-part" (or "part") to *acc. */
static int join(char **acc, const char *part)
{
    size_t a = *acc ? strlen(*acc) : 0, b = strlen(part);
    char *n = realloc(*acc, a + b + 2);
    if (!n)
        return -ENOMEM;
    if (a)
        n[a++] = '-';
    memcpy(n + a, part, b + 1);
    *acc = n;
    return 0;
}

/* gguf-py's Metadata heuristics on the directory name: basename, version, finetune and
 * size label.  Simplified where the converter consults a model card or _name_or_path
 * (we only have the directory name); the size label plausibility check against the
 * parameter count is kept. */
static int name_components(const char *id, int64_t n_params, char **basename, char **version,
                           char **finetune, char **size)
{
    char *copy = strdup(id);
    if (!copy)
        return -ENOMEM;
    int np = 0, rc = 0;
    char **parts = calloc(strlen(id) + 1, sizeof *parts);
    int *types = calloc(strlen(id) + 1, sizeof *types);
    if (!parts || !types) {
        rc = -ENOMEM;
        goto out;
    }
    for (char *sv, *tok = strtok_r(copy, "-", &sv); tok; tok = strtok_r(NULL, "-", &sv))
        parts[np++] = tok;
    for (int i = 0; i < np; i++) {
        char *p = parts[i];
        if (is_version(p))
            types[i] |= T_VER;
        else if (is_qtype(p)) {
            types[i] |= T_TYPE;
            for (char *c = p; *c; c++)
                *c = (char)toupper((unsigned char)*c);
        } else if (i > 0 && is_size_label(p)) {
            size_t n = strlen(p);
            for (char *c = p; *c; c++)
                if (*c == '_')
                    *c = '.';
            if (n > 1 && isdigit((unsigned char)p[n - 2]) && strchr("kmbt", p[n - 1]))
                p[n - 1] = (char)toupper((unsigned char)p[n - 1]);
            if (n_params > 0 && isdigit((unsigned char)p[0]) && strchr("KMBT", p[n - 1])) {
                double label = strtod(p, NULL);
                const char *sc = " KMBT";
                for (long k = strchr(sc, p[n - 1]) - sc; k > 0; k--)
                    label *= 1000;
                double d = label - (double)n_params;
                if (d < 0)
                    d = -d;
                if (d > (double)(7 * n_params / 8)) {
                    types[i] |= T_FT; /* likely a context length */
                    p[n - 1] = (char)tolower((unsigned char)p[n - 1]);
                }
            }
            if (!types[i])
                types[i] |= T_SIZE;
        } else if (i > 0 && is_finetune_word(p))
            types[i] |= T_FT;
    }
    int at_start = 1;
    for (int i = 0; i < np; i++) {
        if (at_start && ((types[i] == 0 && isalpha((unsigned char)parts[i][0])) || (types[i] & T_VER)))
            types[i] |= T_BASE;
        else {
            at_start = 0;
            if (types[i] == 0)
                types[i] |= T_FT;
        }
    }
    for (int i = np - 1; i >= 0; i--) {
        if ((types[i] & T_BASE) && popcount(types[i]) > 1)
            types[i] &= ~T_BASE;
        else
            break;
    }
    for (int i = 0; i < np && !rc; i++) {
        if (types[i] & T_BASE)
            rc = join(basename, parts[i]);
        if (!rc && (types[i] & T_SIZE))
            rc = join(size, parts[i]);
        if (!rc && (types[i] & T_FT))
            rc = join(finetune, parts[i]);
        if (!rc && (types[i] & T_VER) && !(types[i] & T_BASE))
            rc = join(version, parts[i]);
    }
    if (!rc && !*size && !*finetune && !*version) {
        free(*basename); /* too ambiguous */
        *basename = NULL;
    }
out:
    free(parts);
    free(types);
    free(copy);
    return rc;
}

/* id_to_title: '-' -> ' ', lowercase words title-cased unless they are versions or start
 * with a digit. */
static char *id_to_title(const char *id)
{
    size_t n = strlen(id);
    char *out = malloc(n + 1), *o = out;
    if (!out)
        return NULL;
    char *copy = strdup(id);
    if (!copy) {
        free(out);
        return NULL;
    }
    for (char *c = copy; *c; c++)
        if (*c == '-')
            *c = ' ';
    for (char *sv, *w = strtok_r(copy, " \t\n", &sv); w; w = strtok_r(NULL, " \t\n", &sv)) {
        if (o != out)
            *o++ = ' ';
        int lower = 1, has_alpha = 0;
        for (char *c = w; *c; c++)
            if (isalpha((unsigned char)*c)) {
                has_alpha = 1;
                if (isupper((unsigned char)*c))
                    lower = 0;
            }
        int keep = !has_alpha || !lower || isdigit((unsigned char)w[0]) ||
                   ((w[0] == 'v') && is_version(w));
        int start = 1;
        for (char *c = w; *c; c++) {
            char ch = *c;
            if (!keep && isalpha((unsigned char)ch)) {
                ch = start ? (char)toupper((unsigned char)ch) : (char)tolower((unsigned char)ch);
                start = 0;
            } else if (!keep)
                start = 1;
            *o++ = ch;
        }
    }
    *o = 0;
    free(copy);
    return out;
}

/* model_weight_count_rounded_notation(n, min_digits=2) */
static void size_label(int64_t n, char *out, size_t outsz)
{
    double x;
    const char *suf;
    if (n >= 1000000000000LL) { x = (double)n * 1e-12; suf = "T"; }
    else if (n >= 1000000000LL) { x = (double)n * 1e-9; suf = "B"; }
    else if (n >= 1000000LL) { x = (double)n * 1e-6; suf = "M"; }
    else { x = (double)n * 1e-3; suf = "K"; }
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.0f", x); /* Python's round(): half to even, as %.0f */
    const char *t = tmp;
    while (*t == '0')
        t++;
    int fix = 2 - (int)strlen(t);
    if (fix < 0)
        fix = 0;
    snprintf(out, outsz, "%.*f%s", fix, x, suf);
}

#define CHECK(x)                                                                                   \
    do {                                                                                           \
        if ((rc = (x)) < 0)                                                                        \
            goto out;                                                                              \
    } while (0)

/* "<arch>.<suffix>" in buf (keys are short: arch names and suffixes are ours). */
static const char *akey(char *buf, size_t n, const char *arch, const char *suffix)
{
    snprintf(buf, n, "%s.%s", arch, suffix);
    return buf;
}
#define K(suffix) akey(key, sizeof key, arch, suffix)

/* find_hparam: the first of keys present in config.json (an integer).  *found false when
 * none is.  0 or -EINVAL. */
static int first_int(const struct qfs_hf_config *c, const char *const *keys, bool *found,
                     int64_t *out)
{
    for (; *keys; keys++) {
        int rc = qfs_hf_int(c, *keys, found, out);
        if (rc < 0 || *found)
            return rc;
    }
    return 0;
}

static int first_num(const struct qfs_hf_config *c, const char *const *keys, bool *found,
                     double *out)
{
    for (; *keys; keys++) {
        int rc = qfs_hf_num(c, *keys, found, out);
        if (rc < 0 || *found)
            return rc;
    }
    return 0;
}

/* A uint32 key from an integer that must fit. */
static int set_u32_checked(const struct qfs_model *m, struct qfs_kvs *kv, const char *key,
                           const char *what, int64_t v)
{
    if (v < 0 || v > UINT32_MAX) {
        qfs_err("%s: %s %" PRId64 " does not fit the GGUF key %s", m->cfg.file, what, v, key);
        return -EINVAL;
    }
    return qfs_kvs_set_u32(kv, key, (uint32_t)v);
}

/* The rope parameters the converter reads: rope_parameters or rope_scaling (NULL if none). */
static json_t *rope_obj(const struct qfs_model *m)
{
    json_t *rp = json_object_get(m->cfg.json, "rope_parameters");
    if (!json_is_object(rp))
        rp = json_object_get(m->cfg.json, "rope_scaling");
    return json_is_object(rp) ? rp : NULL;
}

static bool rope_num(json_t *rp, const char *key, double *out)
{
    json_t *v = rp ? json_object_get(rp, key) : NULL;
    if (!json_is_number(v))
        return false;
    *out = json_number_value(v);
    return true;
}

static const char *const theta_keys[] = {"global_rope_theta", "rope_global_theta",
                                         "rope_theta_global", "rope_theta", "rotary_emb_base",
                                         NULL};
static const char *const local_theta_keys[] = {"local_rope_theta", "rope_local_theta",
                                               "rope_theta_local", "swa_rope_theta",
                                               "rope_local_base_freq", NULL};

/* The rope base the converter mirrors into rope_parameters: rope_parameters.rope_theta if
 * set, else the first of theta_keys. */
static int rope_theta(const struct qfs_model *m, bool *found, double *out)
{
    if (rope_num(rope_obj(m), "rope_theta", out)) {
        *found = true;
        return 0;
    }
    return first_num(&m->cfg, theta_keys, found, out);
}

int qfs_meta_text(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch)
{
    static const char *const ctx_keys[] = {"max_position_embeddings", "n_ctx", "n_positions",
                                           "max_length", "max_sequence_length",
                                           "model_max_length", NULL};
    static const char *const embd_keys[] = {"hidden_size", "n_embd", "dim", NULL};
    static const char *const ff_keys[] = {"prefix_dense_intermediate_size",
                                          "dense_intermediate_size", "intermediate_size",
                                          "n_inner", "hidden_dim", NULL};
    static const char *const head_keys[] = {"num_attention_heads", "n_head", "n_heads", NULL};
    static const char *const kv_keys[] = {"num_key_value_heads", "n_kv_heads", NULL};
    static const char *const rms_keys[] = {"rms_norm_eps", "norm_eps", NULL};
    static const char *const ln_keys[] = {"layer_norm_eps", "layer_norm_epsilon", "norm_epsilon",
                                          NULL};
    static const char *const exp_keys[] = {"num_local_experts", "num_experts", "n_routed_experts",
                                           NULL};
    static const char *const used_keys[] = {"num_experts_per_tok", "num_experts_per_token",
                                            "top_k_experts", NULL};
    const struct qfs_hf_config *c = &m->cfg;
    char key[160];
    int rc = 0;
    bool f;
    int64_t v;
    double d;
    CHECK(set_u32_checked(m, kv, K("block_count"), "num_hidden_layers", c->n_layers));
    CHECK(first_int(c, ctx_keys, &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("context_length"), "the context length", v));
    CHECK(first_int(c, embd_keys, &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("embedding_length"), "hidden_size", v));
    CHECK(first_int(c, ff_keys, &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("feed_forward_length"), "intermediate_size", v));
    CHECK(first_int(c, head_keys, &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("attention.head_count"), "num_attention_heads", v));
    CHECK(first_int(c, kv_keys, &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("attention.head_count_kv"), "num_key_value_heads", v));
    bool causal = true;
    CHECK(qfs_hf_bool(c, "is_causal", &f, &causal));
    if (f && !causal)
        CHECK(qfs_kvs_set_bool(kv, K("attention.causal"), false));
    json_t *rp = rope_obj(m);
    const char *rt = c->rope_scaling_type;
    double factor = 1.0;
    const bool has_factor = rope_num(rp, "factor", &factor);
    if (rt && !strcmp(rt, "linear") && has_factor) {
        CHECK(qfs_kvs_set_str(kv, K("rope.scaling.type"), "linear"));
        CHECK(qfs_kvs_set_f32(kv, K("rope.scaling.factor"), (float)factor));
    } else if (rt && !strcmp(rt, "yarn") && has_factor) {
        CHECK(qfs_kvs_set_str(kv, K("rope.scaling.type"), "yarn"));
        CHECK(qfs_kvs_set_f32(kv, K("rope.scaling.factor"), (float)factor));
        if (!rope_num(rp, "original_max_position_embeddings", &d)) {
            qfs_err("%s: rope_scaling yarn has no original_max_position_embeddings", c->file);
            CHECK(-EINVAL);
        }
        CHECK(set_u32_checked(m, kv, K("rope.scaling.original_context_length"),
                              "original_max_position_embeddings", (int64_t)d));
        if (rope_num(rp, "extrapolation_factor", &d))
            CHECK(qfs_kvs_set_f32(kv, K("rope.scaling.yarn_ext_factor"), (float)d));
        if (rope_num(rp, "attention_factor", &d) || rope_num(rp, "attn_factor", &d))
            CHECK(qfs_kvs_set_f32(kv, K("rope.scaling.yarn_attn_factor"), (float)d));
        if (rope_num(rp, "beta_fast", &d))
            CHECK(qfs_kvs_set_f32(kv, K("rope.scaling.yarn_beta_fast"), (float)d));
        if (rope_num(rp, "beta_slow", &d))
            CHECK(qfs_kvs_set_f32(kv, K("rope.scaling.yarn_beta_slow"), (float)d));
    } else if (rt && (!strcmp(rt, "su") || !strcmp(rt, "longrope"))) {
        CHECK(qfs_kvs_set_str(kv, K("rope.scaling.type"), "longrope"));
    } else if (rt && strcmp(rt, "dynamic") && strcasecmp(rt, "llama3") &&
               !(!strcmp(rt, "linear") || !strcmp(rt, "yarn"))) {
        qfs_err("%s: rope_scaling type \"%s\" is not supported", c->file, rt);
        CHECK(-ENOTSUP);
    }
    CHECK(rope_theta(m, &f, &d));
    if (f)
        CHECK(qfs_kvs_set_f32(kv, K("rope.freq_base"), (float)d));
    CHECK(first_num(c, local_theta_keys, &f, &d));
    if (f)
        CHECK(qfs_kvs_set_f32(kv, K("rope.freq_base_swa"), (float)d));
    CHECK(first_num(c, rms_keys, &f, &d));
    if (f)
        CHECK(qfs_kvs_set_f32(kv, K("attention.layer_norm_rms_epsilon"), (float)d));
    CHECK(first_num(c, ln_keys, &f, &d));
    if (f)
        CHECK(qfs_kvs_set_f32(kv, K("attention.layer_norm_epsilon"), (float)d));
    CHECK(first_int(c, exp_keys, &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("expert_count"), "the expert count", v));
    CHECK(first_int(c, used_keys, &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("expert_used_count"), "num_experts_per_tok", v));
    if (c->head_dim_explicit) {
        CHECK(set_u32_checked(m, kv, K("attention.key_length"), "head_dim", c->head_dim));
        CHECK(set_u32_checked(m, kv, K("attention.value_length"), "head_dim", c->head_dim));
    }
    CHECK(qfs_kvs_set_u32(kv, "general.file_type", 1)); /* F16; replaced per output type */
out:
    return rc;
}

int qfs_meta_llama(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch)
{
    const struct qfs_hf_config *c = &m->cfg;
    char key[160];
    int rc = 0;
    CHECK(set_u32_checked(m, kv, K("vocab_size"), "vocab_size", c->vocab_size));
    CHECK(set_u32_checked(m, kv, K("rope.dimension_count"), "head_dim",
                          c->head_dim_explicit ? c->head_dim : c->hidden_size / c->n_heads));
out:
    return rc;
}

int qfs_meta_qwen2moe(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch)
{
    char key[160];
    int rc = 0;
    bool f;
    int64_t v;
    CHECK(qfs_hf_int(&m->cfg, "moe_intermediate_size", &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("expert_feed_forward_length"), "moe_intermediate_size", v));
    CHECK(qfs_hf_int(&m->cfg, "shared_expert_intermediate_size", &f, &v));
    if (f)
        CHECK(set_u32_checked(m, kv, K("expert_shared_feed_forward_length"),
                              "shared_expert_intermediate_size", v));
out:
    return rc;
}

int qfs_meta_gemma3(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch)
{
    const struct qfs_hf_config *c = &m->cfg;
    char key[160];
    int rc = 0;
    bool f;
    int64_t v;
    double d;
    json_t *cap = json_object_get(c->json, "attn_logit_softcapping");
    if (cap && !json_is_null(cap)) {
        qfs_err("%s: attn_logit_softcapping is set, which Gemma 3 does not have", c->file);
        CHECK(-EINVAL);
    }
    CHECK(qfs_hf_int(c, "max_position_embeddings", &f, &v));
    CHECK(set_u32_checked(m, kv, K("context_length"), "max_position_embeddings", f ? v : 131072));
    CHECK(qfs_hf_int(c, "num_attention_heads", &f, &v));
    CHECK(set_u32_checked(m, kv, K("attention.head_count"), "num_attention_heads", f ? v : 8));
    CHECK(qfs_hf_num(c, "rms_norm_eps", &f, &d));
    CHECK(qfs_kvs_set_f32(kv, K("attention.layer_norm_rms_epsilon"), (float)(f ? d : 1e-6)));
    CHECK(qfs_hf_int(c, "head_dim", &f, &v));
    CHECK(set_u32_checked(m, kv, K("attention.key_length"), "head_dim", f ? v : 256));
    CHECK(set_u32_checked(m, kv, K("attention.value_length"), "head_dim", f ? v : 256));
    CHECK(rope_theta(m, &f, &d));
    CHECK(qfs_kvs_set_f32(kv, K("rope.freq_base"), (float)(f ? d : 1000000.0)));
    CHECK(qfs_hf_num(c, "final_logit_softcapping", &f, &d));
    if (f && d != 0.0)
        CHECK(qfs_kvs_set_f32(kv, K("final_logit_softcapping"), (float)d));
    json_t *pat = json_object_get(c->json, "sliding_window_pattern");
    if (!(json_is_integer(pat) && json_integer_value(pat) == 1)) {
        CHECK(qfs_hf_int(c, "sliding_window", &f, &v));
        if (!f) {
            qfs_err("%s: missing key sliding_window, which Gemma3ForCausalLM needs", c->file);
            CHECK(-EINVAL);
        }
        CHECK(set_u32_checked(m, kv, K("attention.sliding_window"), "sliding_window", v));
    }
    CHECK(qfs_hf_int(c, "num_key_value_heads", &f, &v));
    CHECK(set_u32_checked(m, kv, K("attention.head_count_kv"), "num_key_value_heads", f ? v : 4));
out:
    return rc;
}

/* Phi-3's rotary dimensions: int(partial_rotary_factor * hidden) // heads. */
static int phi3_rope_dims(const struct qfs_model *m, int64_t *out)
{
    bool f;
    double rot = 1.0;
    int rc = qfs_hf_rope_num(&m->cfg, "partial_rotary_factor", &f, &rot);
    if (rc == 0 && !f)
        rc = qfs_hf_num(&m->cfg, "partial_rotary_factor", &f, &rot);
    if (rc < 0)
        return rc;
    if (!f)
        rot = 1.0;
    *out = (int64_t)(rot * (double)m->cfg.hidden_size) / m->cfg.n_heads;
    return 0;
}

static int phi3_orig_ctx(const struct qfs_model *m, int64_t *out)
{
    double d;
    if (rope_num(rope_obj(m), "original_max_position_embeddings", &d)) {
        *out = (int64_t)d;
        return 0;
    }
    bool f;
    int rc = qfs_hf_int(&m->cfg, "original_max_position_embeddings", &f, out);
    if (rc == 0 && !f) {
        qfs_err("%s: missing key original_max_position_embeddings", m->cfg.file);
        rc = -EINVAL;
    }
    return rc;
}

int qfs_meta_phi3(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch)
{
    const struct qfs_hf_config *c = &m->cfg;
    char key[160];
    int rc = 0;
    int64_t orig, rope_dims, sw;
    bool f;
    double theta;
    CHECK(phi3_orig_ctx(m, &orig));
    CHECK(phi3_rope_dims(m, &rope_dims));
    CHECK(set_u32_checked(m, kv, K("context_length"), "max_position_embeddings",
                          c->max_position_embeddings));
    CHECK(set_u32_checked(m, kv, K("rope.scaling.original_context_length"),
                          "original_max_position_embeddings", orig));
    CHECK(set_u32_checked(m, kv, K("embedding_length"), "hidden_size", c->hidden_size));
    CHECK(set_u32_checked(m, kv, K("feed_forward_length"), "intermediate_size",
                          c->intermediate_size));
    CHECK(set_u32_checked(m, kv, K("block_count"), "num_hidden_layers", c->n_layers));
    CHECK(set_u32_checked(m, kv, K("attention.head_count"), "num_attention_heads", c->n_heads));
    CHECK(set_u32_checked(m, kv, K("attention.head_count_kv"), "num_key_value_heads",
                          c->n_kv_heads));
    CHECK(qfs_kvs_set_f32(kv, K("attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps));
    CHECK(set_u32_checked(m, kv, K("rope.dimension_count"), "the rotary dimensions", rope_dims));
    CHECK(rope_theta(m, &f, &theta));
    if (!f) {
        qfs_err("%s: missing key rope_theta, which Phi3ForCausalLM needs", c->file);
        CHECK(-EINVAL);
    }
    CHECK(qfs_kvs_set_f32(kv, K("rope.freq_base"), (float)theta));
    CHECK(qfs_kvs_set_u32(kv, "general.file_type", 1));
    CHECK(qfs_hf_int(c, "sliding_window", &f, &sw));
    CHECK(set_u32_checked(m, kv, K("attention.sliding_window"), "sliding_window", f ? sw : 0));
out:
    return rc;
}

int qfs_meta_phi3_pre(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch)
{
    json_t *rp = rope_obj(m);
    json_t *lf = rp ? json_object_get(rp, "long_factor") : NULL;
    if (!json_is_array(lf) || json_array_size(lf) == 0)
        return 0; /* no long-context factors: nothing (generate_extra_tensors returns) */
    char key[160];
    int rc = 0;
    int64_t orig;
    CHECK(phi3_orig_ctx(m, &orig));
    const double scale = (double)m->cfg.max_position_embeddings / (double)orig;
    const char *rt = m->cfg.rope_scaling_type ? m->cfg.rope_scaling_type : "";
    double attn = 1.0;
    if (!strcasecmp(rt, "su") || !strcasecmp(rt, "longrope"))
        attn = scale > 1.0 ? sqrt(1 + log(scale) / log((double)orig)) : 1.0;
    else if (!strcasecmp(rt, "yarn"))
        attn = scale > 1.0 ? 0.1 * log(scale) + 1.0 : 1.0;
    else {
        qfs_err("%s: rope_scaling type \"%s\" with long_factor is not supported", m->cfg.file, rt);
        CHECK(-ENOTSUP);
    }
    CHECK(qfs_kvs_set_f32(kv, K("rope.scaling.attn_factor"), (float)attn));
out:
    return rc;
}

/* The sampling defaults gguf-py's Metadata takes from generation_config.json. */
static int sampling_metadata(const struct qfs_model *m, struct qfs_kvs *kv)
{
    static const struct {
        const char *json, *alt, *key;
        char type; /* s string, i int32, f float32 */
    } keys[] = {
        {"sequence", NULL, "general.sampling.sequence", 's'},
        {"top_k", NULL, "general.sampling.top_k", 'i'},
        {"top_p", NULL, "general.sampling.top_p", 'f'},
        {"min_p", NULL, "general.sampling.min_p", 'f'},
        {"xtc_probability", NULL, "general.sampling.xtc_probability", 'f'},
        {"xtc_threshold", NULL, "general.sampling.xtc_threshold", 'f'},
        {"temperature", NULL, "general.sampling.temp", 'f'},
        {"penalty_last_n", NULL, "general.sampling.penalty_last_n", 'i'},
        {"penalty_repeat", "repetition_penalty", "general.sampling.penalty_repeat", 'f'},
        {"mirostat", NULL, "general.sampling.mirostat", 'i'},
        {"mirostat_tau", NULL, "general.sampling.mirostat_tau", 'f'},
        {"mirostat_eta", NULL, "general.sampling.mirostat_eta", 'f'},
    };
    json_t *gen = m->cfg.gen;
    int rc = 0;
    for (size_t i = 0; gen && i < sizeof keys / sizeof keys[0] && rc == 0; i++) {
        json_t *v = json_object_get(gen, keys[i].json);
        if ((!v || json_is_null(v)) && keys[i].alt)
            v = json_object_get(gen, keys[i].alt);
        if (!v || json_is_null(v))
            continue;
        if (keys[i].type == 's' && json_is_string(v))
            rc = qfs_kvs_set_str(kv, keys[i].key, json_string_value(v));
        else if (keys[i].type == 'i' && json_is_integer(v) && json_integer_value(v) >= INT32_MIN &&
                 json_integer_value(v) <= INT32_MAX)
            rc = qfs_kvs_set_i32(kv, keys[i].key, (int32_t)json_integer_value(v));
        else if (keys[i].type == 'f' && json_is_number(v) && isfinite(json_number_value(v)))
            rc = qfs_kvs_set_f32(kv, keys[i].key, (float)json_number_value(v));
        else
            qfs_warn("%s/generation_config.json: %s has an unexpected type: not recorded",
                     m->dir, keys[i].json);
    }
    return rc;
}

/* The converter's parameter count (gguf_writer.get_total_parameter_count): every tensor;
 * for a MoE model also the per-expert share, for the "8x40M" label. */
static void count_params(const struct qfs_model *m, int64_t *total, int64_t *shared_exp,
                         int64_t *expert_count)
{
    int64_t tot = 0, shared = 0, expert = 0, exp_sum = 0, n_exp_t = 0;
    for (int i = 0; i < m->gt.n; i++) {
        const struct qfs_mtensor *t = &m->gt.t[i];
        int64_t size = 1;
        for (int d = 0; d < t->n_dims; d++)
            size *= t->ne[d];
        if (strstr(t->name, "_exps.") && t->n_dims >= 3) {
            const int64_t ec = t->ne[t->n_dims - 1];
            expert += size / ec;
            exp_sum += ec;
            n_exp_t++;
        } else {
            shared += size;
        }
        tot += size;
    }
    *total = tot;
    *shared_exp = shared + expert;
    *expert_count = n_exp_t ? exp_sum / n_exp_t : 0;
}

int qfs_gguf_base_metadata(struct qfs_model *m)
{
    const struct qfs_hf_config *c = &m->cfg;
    const struct qfs_arch *a = c->arch;
    const char *arch = a->gguf;
    char *basename = NULL, *version = NULL, *finetune = NULL, *size = NULL, *title = NULL;
    char lbl[96];
    int rc = 0;
    struct qfs_kvs *kv = qfs_kvs_new(), *tok = NULL;
    if (!kv)
        return -ENOMEM;
    int64_t total, shared_exp, n_exp;
    count_params(m, &total, &shared_exp, &n_exp);
    m->n_params = total;
    CHECK(name_components(m->name, total, &basename, &version, &finetune, &size));
    title = id_to_title(m->name);
    if (!title)
        CHECK(-ENOMEM);
    CHECK(qfs_kvs_set_str(kv, "general.architecture", arch));
    if (a->meta_pre)
        CHECK(a->meta_pre(m, kv, arch));
    CHECK(qfs_kvs_set_str(kv, "general.type", "model"));
    CHECK(sampling_metadata(m, kv));
    CHECK(qfs_kvs_set_str(kv, "general.name", title));
    if (version)
        CHECK(qfs_kvs_set_str(kv, "general.version", version));
    if (finetune)
        CHECK(qfs_kvs_set_str(kv, "general.finetune", finetune));
    if (basename)
        CHECK(qfs_kvs_set_str(kv, "general.basename", basename));
    if (!size) {
        if (n_exp > 0) {
            char one[64];
            size_label(shared_exp, one, sizeof one);
            snprintf(lbl, sizeof lbl, "%" PRId64 "x%s", n_exp, one);
        } else {
            size_label(total, lbl, sizeof lbl);
        }
    }
    CHECK(qfs_kvs_set_str(kv, "general.size_label", size ? size : lbl));
    for (const qfs_meta_fn *step = a->meta; *step; step++)
        CHECK((*step)(m, kv, arch));
    CHECK(qfs_kvs_set_u32(kv, "general.quantization_version", 2));
    /* The tokenizer keys in their own list, serialized once: every GGUF file's header holds
     * them between the keys above and its own (gguf_file.c), and points at this copy. */
    int64_t embd_rows = 0;
    for (int i = 0; i < m->gt.n; i++)
        if (!strcmp(m->gt.t[i].name, "token_embd.weight"))
            embd_rows = m->gt.t[i].ne[1];
    if (!(tok = qfs_kvs_new()))
        CHECK(-ENOMEM);
    CHECK(qfs_tokenizer_to_gguf(m->dir, c, tok, embd_rows));
    m->tok_kv_len = qfs_kvs_serialize(tok, NULL);
    m->tok_kv_count = qfs_kvs_count(tok);
    if (!(m->tok_kv = malloc(m->tok_kv_len ? m->tok_kv_len : 1)))
        CHECK(-ENOMEM);
    qfs_kvs_serialize(tok, m->tok_kv);
    m->kv = kv;
    kv = NULL;
out:
    qfs_kvs_free(tok);
    /* tokenizer.json's tree and the token lists were freed: give that memory back (a big
     * tokenizer leaves hundreds of MiB of free heap, in pieces glibc does not trim) */
    malloc_trim(0);
    qfs_kvs_free(kv);
    free(basename);
    free(version);
    free(finetune);
    free(size);
    free(title);
    return rc;
}
