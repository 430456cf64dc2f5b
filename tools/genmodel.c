/* qfs-genmodel: write a synthetic Hugging Face model directory, small or at real shapes.
 *
 * Architectures (--arch), each laid out as its Hub checkpoint (tensor names, shapes, config.json
 * keys and value types):
 *   llama, mistral  LlamaForCausalLM / MistralForCausalLM, this tool's original small layout
 *   llama3          LlamaForCausalLM as meta-llama/Llama-3.1-8B (llama3 rope_scaling, no
 *                   head_dim key); --tied: the Llama-3.2 style (no lm_head)
 *   qwen3           Qwen3ForCausalLM: explicit head_dim, self_attn.q_norm / k_norm [head_dim]
 *   qwen3moe        Qwen3MoeForCausalLM: mlp.gate [experts, hidden], and per expert E
 *                   mlp.experts.E.{gate,up,down}_proj of --moe-ff rows
 *   mixtral         MixtralForCausalLM as mistralai/Mixtral-8x7B: block_sparse_moe.gate and
 *                   block_sparse_moe.experts.E.w1/w2/w3 (gate, down, up) of --ff
 *   gemma3          Gemma3ForCausalLM, text only (model_type gemma3_text) as google/gemma-3-1b-pt:
 *                   four norms a layer plus q_norm/k_norm, all stored as offsets from 1, tied
 *                   embeddings, bf16 by default
 *   phi3            Phi3ForCausalLM as microsoft/Phi-3.5-mini-instruct: fused self_attn.qkv_proj
 *                   and mlp.gate_up_proj (gate rows first), longrope rope_scaling
 * --preset NAME sets the real shapes of a published model (see usage); options after it
 * override it (--preset qwen3-30b-a3b --layers 4: four layers at real shapes).
 *
 * Output (DIR):
 *   1. config.json, generation_config.json, tokenizer_config.json; for the architectures after
 *      mistral also special_tokens_map.json (and added_tokens.json for phi3); their family's
 *      special tokens are added tokens (tokenizer_config.json added_tokens_decoder) placed after
 *      the SentencePiece pieces as the real vocabularies place them, inside vocab_size
 *   2. model.safetensors, or N shards model-0000i-of-0000N.safetensors plus
 *      model.safetensors.index.json.  llama/mistral: the data in the order embed_tokens, per
 *      layer input_layernorm q k v o post_attention_layernorm gate up down, norm, lm_head; the
 *      shards an even split of that list by count.  The others: shards split in module
 *      (state_dict) order, each file's data sorted by name as the safetensors library writes
 *      it; mixtral cuts each shard boundary inside a layer's experts (the first half of that
 *      layer's experts in one shard, the rest in the next, as the published checkpoint does),
 *      the others balance bytes.
 *   3. tokenizer.model: a SentencePiece BPE ModelProto written by hand:
 *      <unk> <s> </s>, the 256 byte pieces <0x00>..<0xFF>, then "▁", the ASCII letters,
 *      "▁"-prefixed English words, the other printable ASCII characters and filler pieces
 *      up to --vocab (less the added tokens and the padding, for the architectures that have
 *      them).
 * The writer streams: each shard's header is written from the shapes, then each tensor's data
 * is generated and written a few MiB at a time, so a model larger than memory can be written.
 * Weights are deterministic: a splitmix64 stream per tensor (seeded by --seed and the tensor
 * name).  llama/mistral without --preset or --fast: Box-Muller, std 0.02, norm weights 1.0
 * (the bytes this tool has always written; ~45 MB/s).  Otherwise ("fast", ~1 GB/s): each 16
 * bits of the stream pick one of 65536 normal quantiles, std 0.02; norm weights
 * 1 + N(0, 0.05), and N(0, 0.05) for gemma3, whose norms are offsets from 1. */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "codecs/source/safetensors.h"
#include "kernels/qtypes.h"

#define MIN_VOCAB 262 /* 3 specials + 256 bytes + a few normal pieces */
#define MAX_VOCAB (1 << 20)
#define CHUNK (4u << 20) /* bytes generated and written at a time */

enum arch { A_LLAMA, A_MISTRAL, A_LLAMA3, A_QWEN3, A_QWEN3MOE, A_MIXTRAL, A_GEMMA3, A_PHI3 };
static const char *const arch_names[] = {"llama",    "mistral", "llama3", "qwen3",
                                         "qwen3moe", "mixtral", "gemma3", "phi3"};
#define N_ARCH ((int)(sizeof arch_names / sizeof arch_names[0]))

/* options given explicitly that only some architectures take */
enum { G_HEAD_DIM = 1, G_EXPERTS = 2, G_USED = 4, G_MOE_FF = 8 };

struct opts {
    const char *out, *name, *preset;
    enum arch arch;
    /* -1: not set (the architecture's default applies) */
    int64_t hidden, layers, heads, kv_heads, head_dim, ff, vocab, ctx, experts, experts_used,
        moe_ff;
    int dtype; /* enum qfs_dtype, or -1 */
    int shards;
    bool tied, fast;
    unsigned given;
    uint64_t seed;
};

static bool legacy(const struct opts *o) { return o->arch == A_LLAMA || o->arch == A_MISTRAL; }
static bool moe(const struct opts *o) { return o->arch == A_QWEN3MOE || o->arch == A_MIXTRAL; }
/* architectures whose config.json has head_dim (which may differ from hidden / heads) */
static bool own_head_dim(const struct opts *o)
{
    return o->arch == A_QWEN3 || o->arch == A_QWEN3MOE || o->arch == A_GEMMA3;
}

/* ---- deterministic weights ---- */

static uint64_t splitmix64(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* uniform in (0, 1] */
static double uniform01(uint64_t *s) { return ((splitmix64(s) >> 11) + 1) * 0x1.0p-53; }

static uint64_t fnv1a(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}

static size_t dt_size(enum qfs_dtype dt) { return qfs_dtype_size(dt); }

static uint32_t encode(enum qfs_dtype dt, float v)
{
    uint32_t x;
    switch (dt) {
    case QFS_DT_F32:
        memcpy(&x, &v, 4);
        return x;
    case QFS_DT_F16:
        return qfs_f32_to_f16(v);
    default:
        return qfs_f32_to_bf16(v);
    }
}

/* little-endian element i of a dtype buffer */
static void store(enum qfs_dtype dt, uint8_t *p, int64_t i, float v)
{
    uint32_t x = encode(dt, v);
    size_t sz = dt_size(dt);
    for (size_t b = 0; b < sz; b++)
        p[(size_t)i * sz + b] = (uint8_t)(x >> (8 * b));
}

/* Inverse of the standard normal CDF: Acklam's rational approximation and one Halley step. */
static double norm_ppf(double p)
{
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02,
                               -2.759285104469687e+02, 1.383577518672690e+02,
                               -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02,
                               -1.556989798598866e+02, 6.680131188771972e+01,
                               -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01,
                               -2.400758277161838e+00, -2.549732539343734e+00,
                               4.374664141464968e+00,  2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01,
                               2.445134137142996e+00, 3.754408661907416e+00};
    double x, q, r;
    if (p < 0.02425 || p > 1 - 0.02425) {
        q = sqrt(-2 * log(p < 0.5 ? p : 1 - p));
        x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
            ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        if (p > 0.5)
            x = -x;
    } else {
        q = p - 0.5;
        r = q * q;
        x = (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
            (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
    }
    double e = 0.5 * erfc(-x / M_SQRT2) - p, u = e * sqrt(2 * M_PI) * exp(x * x / 2);
    return x - u / (1 + x * u / 2);
}

/* The fast generator: 65536 quantiles of N(0, 1), symmetric, and those times 0.02 encoded
 * in the output dtype. */
static float qz[65536];
static uint32_t qw[65536];

static void fast_tables(enum qfs_dtype dt)
{
    for (int r = 0; r < 32768; r++) {
        float z = (float)norm_ppf((r + 0.5) / 65536.0);
        qz[r] = z;
        qz[65535 - r] = -z;
    }
    for (int r = 0; r < 65536; r++)
        qw[r] = encode(dt, 0.02f * qz[r]);
}

enum kind { K_WEIGHT, K_NORM, K_NORM_OFFSET };

struct gtensor {
    char *name;
    int n_dims;
    int64_t shape[2];
    enum kind kind;
    int shard;
};

static uint64_t n_elems(const struct gtensor *g)
{
    return (uint64_t)g->shape[0] * (uint64_t)(g->n_dims > 1 ? g->shape[1] : 1);
}

struct fill {
    const struct opts *o;
    const struct gtensor *const *g; /* this file's tensors, in file order */
    uint64_t s;                     /* the stream of the tensor being written */
};

/* qfs_st_fill_fn: elements [off, off + len) / dtype size of tensor i.  Every piece but the
 * last is CHUNK bytes, a multiple of 4 elements: the Box-Muller pairs and the 4 elements of
 * one 64-bit draw never straddle two pieces. */
static int fill_data(void *ctx, int ti, uint64_t off, uint8_t *p, size_t len)
{
    struct fill *f = ctx;
    const struct gtensor *g = f->g[ti];
    enum qfs_dtype dt = (enum qfs_dtype)f->o->dtype;
    size_t sz = dt_size(dt);
    int64_t n = (int64_t)(len / sz);
    if (off == 0)
        f->s = f->o->seed ^ fnv1a(g->name);
    if (!f->o->fast) {
        for (int64_t i = 0; i < n; i += 2) {
            /* Box-Muller: two normals per pair of uniforms */
            double u1 = uniform01(&f->s), u2 = uniform01(&f->s);
            double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
            bool norm = g->kind != K_WEIGHT;
            float a = norm ? 1.0f : (float)(0.02 * r * cos(th));
            float b = norm ? 1.0f : (float)(0.02 * r * sin(th));
            store(dt, p, i, a);
            if (i + 1 < n)
                store(dt, p, i + 1, b);
        }
        return 0;
    }
    if (g->kind != K_WEIGHT) {
        float mean = g->kind == K_NORM ? 1.0f : 0.0f;
        for (int64_t i = 0; i < n; i += 4) {
            uint64_t x = splitmix64(&f->s);
            for (int64_t k = i; k < i + 4 && k < n; k++, x >>= 16)
                store(dt, p, k, mean + 0.05f * qz[x & 0xffff]);
        }
        return 0;
    }
    int64_t i = 0;
    if (sz == 2) {
        for (; i + 4 <= n; i += 4) {
            uint64_t x = splitmix64(&f->s);
            for (int k = 0; k < 4; k++, x >>= 16) {
                uint32_t w = qw[x & 0xffff];
                p[2 * (i + k)] = (uint8_t)w;
                p[2 * (i + k) + 1] = (uint8_t)(w >> 8);
            }
        }
    }
    for (; i < n; i += 4) {
        uint64_t x = splitmix64(&f->s);
        for (int64_t k = i; k < i + 4 && k < n; k++, x >>= 16) {
            uint32_t w = qw[x & 0xffff];
            for (size_t b = 0; b < sz; b++)
                p[(size_t)k * sz + b] = (uint8_t)(w >> (8 * b));
        }
    }
    return 0;
}

/* ---- tensors ---- */

struct tlist {
    struct gtensor *v;
    int n, cap;
    bool oom;
    int *cut; /* mixtral: per layer, the index of its experts.<E/2>.w1 (a shard may start there) */
};

static void add(struct tlist *t, enum kind kind, int64_t d0, int64_t d1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static void add(struct tlist *t, enum kind kind, int64_t d0, int64_t d1, const char *fmt, ...)
{
    if (t->oom)
        return;
    if (t->n == t->cap) {
        int cap = t->cap ? 2 * t->cap : 64;
        struct gtensor *v = realloc(t->v, (size_t)cap * sizeof *v);
        if (!v) {
            t->oom = true;
            return;
        }
        t->v = v;
        t->cap = cap;
    }
    struct gtensor *g = &t->v[t->n];
    *g = (struct gtensor){.kind = kind, .n_dims = d1 ? 2 : 1, .shape = {d0, d1}};
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&g->name, fmt, ap);
    va_end(ap);
    if (r < 0)
        t->oom = true;
    else
        t->n++;
}

#define W(d0, d1, ...) add(t, K_WEIGHT, d0, d1, __VA_ARGS__)
#define L "model.layers.%" PRId64 "."

/* q/k/v/o of layer l, in module order; qk_norm: Qwen3/Gemma3's per-head RMSNorm weights */
static void attention(struct tlist *t, const struct opts *o, int64_t l, bool qk_norm,
                      enum kind nk)
{
    int64_t hd = o->head_dim;
    W(o->heads * hd, o->hidden, L "self_attn.q_proj.weight", l);
    W(o->kv_heads * hd, o->hidden, L "self_attn.k_proj.weight", l);
    W(o->kv_heads * hd, o->hidden, L "self_attn.v_proj.weight", l);
    W(o->hidden, o->heads * hd, L "self_attn.o_proj.weight", l);
    if (qk_norm) {
        add(t, nk, hd, 0, L "self_attn.q_norm.weight", l);
        add(t, nk, hd, 0, L "self_attn.k_norm.weight", l);
    }
}

static void dense_mlp(struct tlist *t, const struct opts *o, int64_t l)
{
    W(o->ff, o->hidden, L "mlp.gate_proj.weight", l);
    W(o->ff, o->hidden, L "mlp.up_proj.weight", l);
    W(o->hidden, o->ff, L "mlp.down_proj.weight", l);
}

/* The tensors of o's architecture in module (state_dict) order. */
static int build_tensors(const struct opts *o, struct tlist *t)
{
    *t = (struct tlist){0};
    if (o->arch == A_MIXTRAL && !(t->cut = calloc((size_t)o->layers, sizeof *t->cut)))
        return -ENOMEM;
    enum kind nk = o->arch == A_GEMMA3 ? K_NORM_OFFSET : K_NORM;
    W(o->vocab, o->hidden, "model.embed_tokens.weight");
    for (int64_t l = 0; l < o->layers; l++) {
        switch (o->arch) {
        case A_LLAMA:
        case A_MISTRAL: /* this tool's original order */
            add(t, K_NORM, o->hidden, 0, L "input_layernorm.weight", l);
            attention(t, o, l, false, nk);
            add(t, K_NORM, o->hidden, 0, L "post_attention_layernorm.weight", l);
            dense_mlp(t, o, l);
            continue;
        case A_LLAMA3:
        case A_QWEN3:
            attention(t, o, l, o->arch == A_QWEN3, nk);
            dense_mlp(t, o, l);
            break;
        case A_QWEN3MOE:
            attention(t, o, l, true, nk);
            W(o->experts, o->hidden, L "mlp.gate.weight", l);
            for (int64_t e = 0; e < o->experts; e++) {
                W(o->moe_ff, o->hidden, L "mlp.experts.%" PRId64 ".gate_proj.weight", l, e);
                W(o->moe_ff, o->hidden, L "mlp.experts.%" PRId64 ".up_proj.weight", l, e);
                W(o->hidden, o->moe_ff, L "mlp.experts.%" PRId64 ".down_proj.weight", l, e);
            }
            break;
        case A_MIXTRAL:
            attention(t, o, l, false, nk);
            W(o->experts, o->hidden, L "block_sparse_moe.gate.weight", l);
            for (int64_t e = 0; e < o->experts; e++) {
                if (e == o->experts / 2)
                    t->cut[l] = t->n;
                W(o->ff, o->hidden, L "block_sparse_moe.experts.%" PRId64 ".w1.weight", l, e);
                W(o->hidden, o->ff, L "block_sparse_moe.experts.%" PRId64 ".w2.weight", l, e);
                W(o->ff, o->hidden, L "block_sparse_moe.experts.%" PRId64 ".w3.weight", l, e);
            }
            break;
        case A_GEMMA3:
            attention(t, o, l, true, nk);
            dense_mlp(t, o, l);
            break;
        case A_PHI3: /* Phi3Attention declares o_proj before qkv_proj */
            W(o->hidden, o->heads * o->head_dim, L "self_attn.o_proj.weight", l);
            W((o->heads + 2 * o->kv_heads) * o->head_dim, o->hidden, L "self_attn.qkv_proj.weight",
              l);
            W(2 * o->ff, o->hidden, L "mlp.gate_up_proj.weight", l);
            W(o->hidden, o->ff, L "mlp.down_proj.weight", l);
            break;
        }
        add(t, nk, o->hidden, 0, L "input_layernorm.weight", l);
        add(t, nk, o->hidden, 0, L "post_attention_layernorm.weight", l);
        if (o->arch == A_GEMMA3) {
            add(t, nk, o->hidden, 0, L "pre_feedforward_layernorm.weight", l);
            add(t, nk, o->hidden, 0, L "post_feedforward_layernorm.weight", l);
        }
    }
    add(t, legacy(o) ? K_NORM : nk, o->hidden, 0, "model.norm.weight");
    if (!o->tied)
        W(o->vocab, o->hidden, "lm_head.weight");
    return t->oom ? -ENOMEM : 0;
}

#undef W
#undef L

static void free_tensors(struct tlist *t)
{
    for (int i = 0; i < t->n; i++)
        free(t->v[i].name);
    free(t->v);
    free(t->cut);
}

/* Shard of each tensor (module order, consecutive runs); 0 when a shard would be empty. */
static int assign_shards(const struct opts *o, struct tlist *t)
{
    int n = t->n, ns = o->shards;
    if (ns == 1) {
        for (int i = 0; i < n; i++)
            t->v[i].shard = 0;
        return 0;
    }
    if (o->arch == A_MIXTRAL) {
        /* boundary k (1..ns-1) halfway through the experts of layer k * layers / ns */
        for (int s = 0, i = 0; s < ns; s++) {
            int e = s + 1 < ns ? t->cut[(int64_t)(s + 1) * o->layers / ns] : n;
            for (; i < e; i++)
                t->v[i].shard = s;
        }
        return 0;
    }
    if (!legacy(o)) {
        /* balance bytes: tensor i goes to the shard its first byte falls in */
        uint64_t total = 0, pos = 0;
        for (int i = 0; i < n; i++)
            total += n_elems(&t->v[i]);
        bool ok = true;
        for (int i = 0, prev = -1; i < n; i++) {
            int s = (int)(pos * (uint64_t)ns / total);
            ok &= s == prev || s == prev + 1;
            t->v[i].shard = prev = s;
            pos += n_elems(&t->v[i]);
        }
        if (ok && t->v[n - 1].shard == ns - 1)
            return 0;
    }
    /* an even split by count (llama/mistral always, to keep their files as they were) */
    for (int s = 0; s < ns; s++)
        for (int i = (int)((int64_t)n * s / ns); i < (int)((int64_t)n * (s + 1) / ns); i++)
            t->v[i].shard = s;
    return 0;
}

/* ---- files ---- */

static char *path_of(const char *dir, const char *name)
{
    char *p;
    return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

static int dump_json(const char *dir, const char *name, json_t *j)
{
    char *p = path_of(dir, name);
    int rc = (!j || !p) ? -ENOMEM : json_dump_file(j, p, JSON_INDENT(2) | JSON_SORT_KEYS | JSON_REAL_PRECISION(9));
    if (rc)
        fprintf(stderr, "qfs-genmodel: cannot write %s/%s\n", dir, name);
    free(p);
    json_decref(j);
    return rc ? -EIO : 0;
}

static int cmp_name(const void *a, const void *b)
{
    return strcmp((*(const struct gtensor *const *)a)->name,
                  (*(const struct gtensor *const *)b)->name);
}

/* Write shard s: its tensors in module order, or sorted by name (the new architectures). */
static int write_shard(const struct opts *o, const struct tlist *t, int s, const char *path)
{
    int rc = 0, n = 0;
    for (int i = 0; i < t->n; i++)
        n += t->v[i].shard == s;
    const struct gtensor **g = calloc((size_t)n + 1, sizeof *g);
    struct qfs_st_wtensor *w = calloc((size_t)n + 1, sizeof *w);
    if (!g || !w) {
        rc = -ENOMEM;
        goto out;
    }
    n = 0;
    for (int i = 0; i < t->n; i++)
        if (t->v[i].shard == s)
            g[n++] = &t->v[i];
    if (!legacy(o))
        qsort(g, (size_t)n, sizeof *g, cmp_name);
    for (int i = 0; i < n; i++) {
        w[i].name = g[i]->name;
        w[i].dtype = (enum qfs_dtype)o->dtype;
        w[i].n_dims = g[i]->n_dims;
        w[i].shape[0] = g[i]->shape[0];
        w[i].shape[1] = g[i]->shape[1];
    }
    struct fill f = {.o = o, .g = g};
    rc = qfs_st_write_stream(path, w, n, CHUNK, fill_data, &f);
out:
    free(g);
    free(w);
    return rc;
}

static int write_weights(const struct opts *o, const struct tlist *t)
{
    json_t *wm = NULL;
    char *path = NULL;
    int rc = 0;
    if (o->shards == 1) {
        path = path_of(o->out, "model.safetensors");
        rc = path ? write_shard(o, t, 0, path) : -ENOMEM;
        free(path);
        return rc;
    }
    wm = json_object();
    uint64_t total = 0;
    for (int s = 0; s < o->shards && !rc; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, o->shards);
        free(path);
        path = path_of(o->out, name);
        rc = path ? write_shard(o, t, s, path) : -ENOMEM;
        for (int i = 0; i < t->n && !rc; i++) {
            if (t->v[i].shard != s)
                continue;
            total += n_elems(&t->v[i]) * dt_size((enum qfs_dtype)o->dtype);
            if (json_object_set_new(wm, t->v[i].name, json_string(name)))
                rc = -ENOMEM;
        }
    }
    if (!rc)
        rc = dump_json(o->out, "model.safetensors.index.json",
                       json_pack("{s:{s:I},s:O}", "metadata", "total_size", (json_int_t)total,
                                 "weight_map", wm));
    json_decref(wm);
    free(path);
    return rc;
}

/* ---- vocabulary: SentencePiece pieces, then the family's added tokens ---- */

struct atok {
    char content[40];
    bool special, rstrip;
};

struct vocab {
    int64_t n_pieces; /* tokenizer.model: ids 0 .. n_pieces - 1 */
    struct atok added[256]; /* ids n_pieces, n_pieces + 1, ... */
    int n_added;
    bool list_base; /* added_tokens_decoder also lists <unk> <s> </s> (ids 0, 1, 2) */
};

static const char *const qwen_tokens[] = {
    "<|endoftext|>",    "<|im_start|>",   "<|im_end|>",      "<|object_ref_start|>",
    "<|object_ref_end|>", "<|box_start|>", "<|box_end|>",     "<|quad_start|>",
    "<|quad_end|>",     "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
    "<|image_pad|>",    "<|video_pad|>",  "<tool_call>",     "</tool_call>",
    "<|fim_prefix|>",   "<|fim_middle|>", "<|fim_suffix|>",  "<|fim_pad|>",
    "<|repo_name|>",    "<|file_sep|>",   "<tool_response>", "</tool_response>",
    "<think>",          "</think>",
};
#define QWEN_SPECIAL 14 /* the first 14 are "special": true */

static const char *const phi3_tokens[] = {
    "<|endoftext|>",    "<|assistant|>", "<|placeholder1|>", "<|placeholder2|>",
    "<|placeholder3|>", "<|placeholder4|>", "<|system|>",   "<|end|>",
    "<|placeholder5|>", "<|placeholder6|>", "<|user|>",
};

static const char *const llama3_named[] = {
    /* Llama 3.1's first 11 special tokens; ids 11..255 are reserved_special_token_3..247 */
    "<|begin_of_text|>",           "<|end_of_text|>",    "<|reserved_special_token_0|>",
    "<|reserved_special_token_1|>", "<|finetune_right_pad_id|>", "<|reserved_special_token_2|>",
    "<|start_header_id|>",         "<|end_header_id|>",  "<|eom_id|>",
    "<|eot_id|>",                  "<|python_tag|>",
};

#define N_OF(a) ((int)(sizeof a / sizeof a[0]))

static void add_tok(struct vocab *v, const char *s, bool special, bool rstrip)
{
    struct atok *a = &v->added[v->n_added++];
    snprintf(a->content, sizeof a->content, "%s", s);
    a->special = special;
    a->rstrip = rstrip;
}

/* The vocabulary layout of o's architecture; n_pieces < MIN_VOCAB when --vocab is too small. */
static void make_vocab(const struct opts *o, struct vocab *v)
{
    *v = (struct vocab){0};
    char s[40];
    switch (o->arch) {
    case A_LLAMA3:
        for (int i = 0; i < 256; i++) {
            if (i < N_OF(llama3_named))
                add_tok(v, llama3_named[i], true, false);
            else {
                snprintf(s, sizeof s, "<|reserved_special_token_%d|>", i - N_OF(llama3_named) + 3);
                add_tok(v, s, true, false);
            }
        }
        break;
    case A_QWEN3:
    case A_QWEN3MOE:
        for (int i = 0; i < N_OF(qwen_tokens); i++)
            add_tok(v, qwen_tokens[i], i < QWEN_SPECIAL, false);
        break;
    case A_GEMMA3:
        add_tok(v, "<start_of_turn>", true, false);
        add_tok(v, "<end_of_turn>", true, false);
        v->list_base = true;
        break;
    case A_PHI3:
        for (int i = 0; i < N_OF(phi3_tokens); i++)
            add_tok(v, phi3_tokens[i], true, i > 0);
        v->list_base = true;
        break;
    case A_MIXTRAL:
        v->list_base = true;
        break;
    default:
        break;
    }
    v->n_pieces = o->vocab - v->n_added;
    /* Qwen pads 151,669 tokens to 151,936 and Phi-3 32,011 to 32,064: the pieces are the
     * largest multiple of 64 that leaves room for the added tokens */
    if (o->arch == A_QWEN3 || o->arch == A_QWEN3MOE || o->arch == A_PHI3)
        v->n_pieces = v->n_pieces / 64 * 64;
}

/* token id of an added token by content */
static int64_t tok_id(const struct vocab *v, const char *content)
{
    for (int i = 0; i < v->n_added; i++)
        if (!strcmp(v->added[i].content, content))
            return v->n_pieces + i;
    return -1;
}

/* ---- config.json, generation_config.json, tokenizer files ---- */

static const char *torch_dtype(const struct opts *o)
{
    return o->dtype == QFS_DT_F32 ? "float32" : o->dtype == QFS_DT_F16 ? "float16" : "bfloat16";
}

static int write_configs_legacy(const struct opts *o)
{
    bool mistral = o->arch == A_MISTRAL;
    const char *tdt = torch_dtype(o);
    json_t *c = json_pack(
        "{s:[s],s:s,s:s,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:f,s:f,s:s,s:b,s:i,s:i,s:s,s:b,s:b,"
        "s:f,s:s}",
        "architectures", mistral ? "MistralForCausalLM" : "LlamaForCausalLM", "model_type",
        mistral ? "mistral" : "llama", "_name_or_path", o->name, "hidden_size",
        (json_int_t)o->hidden, "intermediate_size", (json_int_t)o->ff, "num_hidden_layers",
        (json_int_t)o->layers, "num_attention_heads", (json_int_t)o->heads,
        "num_key_value_heads", (json_int_t)o->kv_heads, "head_dim",
        (json_int_t)(o->hidden / o->heads), "vocab_size", (json_int_t)o->vocab,
        "max_position_embeddings", (json_int_t)o->ctx, "rms_norm_eps", 1e-5, "rope_theta",
        10000.0, "hidden_act", "silu", "tie_word_embeddings", o->tied, "bos_token_id", 1,
        "eos_token_id", 2, "torch_dtype", tdt, "attention_bias", 0, "mlp_bias", 0,
        "initializer_range", 0.02, "transformers_version", "4.46.0");
    if (c && mistral && json_object_set_new(c, "sliding_window", json_null())) {
        json_decref(c);
        c = NULL;
    }
    int rc = dump_json(o->out, "config.json", c);
    if (!rc)
        rc = dump_json(o->out, "generation_config.json",
                       json_pack("{s:i,s:i,s:s}", "bos_token_id", 1, "eos_token_id", 2,
                                 "transformers_version", "4.46.0"));
    if (!rc)
        rc = dump_json(o->out, "tokenizer_config.json",
                       json_pack("{s:b,s:b,s:s,s:s,s:s,s:n,s:I,s:s,s:b,s:b}", "add_bos_token", 1,
                                 "add_eos_token", 0, "bos_token", "<s>", "eos_token", "</s>",
                                 "unk_token", "<unk>", "pad_token", "model_max_length",
                                 (json_int_t)o->ctx, "tokenizer_class", "LlamaTokenizer",
                                 "legacy", 0, "clean_up_tokenization_spaces", 0));
    return rc;
}

/* json object builder that remembers an allocation failure */
struct jo {
    json_t *o;
    bool bad;
};

static void jset(struct jo *j, const char *k, json_t *v)
{
    if (!j->o) {
        json_decref(v);
        j->bad = true;
    } else if (!v || json_object_set_new(j->o, k, v)) {
        j->bad = true;
    }
}
static void ji(struct jo *j, const char *k, int64_t v) { jset(j, k, json_integer((json_int_t)v)); }
static void jr(struct jo *j, const char *k, double v) { jset(j, k, json_real(v)); }
static void js(struct jo *j, const char *k, const char *v)
{
    jset(j, k, v ? json_string(v) : json_null());
}
static void jb(struct jo *j, const char *k, bool v) { jset(j, k, json_boolean(v)); }
static void jnull(struct jo *j, const char *k) { jset(j, k, json_null()); }
static json_t *jdone(struct jo *j)
{
    if (j->bad) {
        json_decref(j->o);
        return NULL;
    }
    return j->o;
}

/* json array of int64 */
static json_t *jints(int n, const int64_t *v)
{
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++)
        if (json_array_append_new(a, json_integer((json_int_t)v[i]))) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* Phi-3.5-style longrope factors, head_dim / 2 of them, as float32 values:
 * short rising 1.0 -> 2.84, long a sigmoid 1.7 -> 64.6 */
static json_t *longrope(int64_t n, bool lng)
{
    json_t *a = json_array();
    for (int64_t i = 0; a && i < n; i++) {
        double t = n > 1 ? (double)i / (double)(n - 1) : 0.0, v;
        if (lng)
            v = 1.7 + 62.9 * (1.0 / (1.0 + exp(-12.0 * (t - 0.45))) - 1.0 / (1.0 + exp(5.4))) /
                          (1.0 / (1.0 + exp(-6.6)) - 1.0 / (1.0 + exp(5.4)));
        else
            v = 1.0 + 1.84 * t * t;
        v = (double)(float)(round(v * 100.0) / 100.0);
        if (json_array_append_new(a, json_real(v))) {
            json_decref(a);
            return NULL;
        }
    }
    return a;
}

static const char *const arch_class[] = {
    [A_LLAMA3] = "LlamaForCausalLM",    [A_QWEN3] = "Qwen3ForCausalLM",
    [A_QWEN3MOE] = "Qwen3MoeForCausalLM", [A_MIXTRAL] = "MixtralForCausalLM",
    [A_GEMMA3] = "Gemma3ForCausalLM",   [A_PHI3] = "Phi3ForCausalLM",
};
static const char *const model_type[] = {
    [A_LLAMA3] = "llama", [A_QWEN3] = "qwen3",          [A_QWEN3MOE] = "qwen3_moe",
    [A_MIXTRAL] = "mixtral", [A_GEMMA3] = "gemma3_text", [A_PHI3] = "phi3",
};
static const char *const tf_version[] = {
    [A_LLAMA3] = "4.43.0.dev0", [A_QWEN3] = "4.51.0",        [A_QWEN3MOE] = "4.51.0",
    [A_MIXTRAL] = "4.36.0.dev0", [A_GEMMA3] = "4.50.0.dev0", [A_PHI3] = "4.43.3",
};

struct ids {
    int64_t bos, eos, pad; /* pad -1: none */
};

static struct ids family_ids(const struct opts *o, const struct vocab *v)
{
    switch (o->arch) {
    case A_LLAMA3:
        return (struct ids){tok_id(v, "<|begin_of_text|>"), tok_id(v, "<|end_of_text|>"), -1};
    case A_QWEN3:
    case A_QWEN3MOE:
        return (struct ids){tok_id(v, "<|endoftext|>"), tok_id(v, "<|im_end|>"),
                            tok_id(v, "<|endoftext|>")};
    case A_GEMMA3:
        return (struct ids){1, 2, 0};
    case A_PHI3:
        return (struct ids){1, tok_id(v, "<|endoftext|>"), tok_id(v, "<|endoftext|>")};
    default:
        return (struct ids){1, 2, -1};
    }
}

static json_t *config_json(const struct opts *o, const struct vocab *v)
{
    struct ids id = family_ids(o, v);
    struct jo j = {json_object(), false};
    enum arch a = o->arch;
    json_t *arr = json_array();
    if (!arr || json_array_append_new(arr, json_string(arch_class[a])))
        j.bad = true;
    jset(&j, "architectures", arr);
    if (o->name)
        js(&j, "_name_or_path", o->name);
    js(&j, "model_type", model_type[a]);
    js(&j, "transformers_version", tf_version[a]);
    js(&j, "torch_dtype", torch_dtype(o));
    ji(&j, "hidden_size", o->hidden);
    ji(&j, "intermediate_size", o->ff);
    ji(&j, "num_hidden_layers", o->layers);
    ji(&j, "num_attention_heads", o->heads);
    ji(&j, "num_key_value_heads", o->kv_heads);
    ji(&j, "vocab_size", o->vocab);
    ji(&j, "max_position_embeddings", o->ctx);
    ji(&j, "bos_token_id", id.bos);
    ji(&j, "eos_token_id", id.eos);
    jr(&j, "attention_dropout", 0.0);
    jr(&j, "initializer_range", 0.02);
    jb(&j, "use_cache", true);
    if (a != A_MIXTRAL)
        jb(&j, "attention_bias", false);
    if (a != A_GEMMA3) {
        js(&j, "hidden_act", "silu");
        jb(&j, "tie_word_embeddings", o->tied);
    }
    if (own_head_dim(o))
        ji(&j, "head_dim", o->head_dim);
    switch (a) {
    case A_LLAMA3: {
        jb(&j, "mlp_bias", false);
        ji(&j, "pretraining_tp", 1);
        jr(&j, "rms_norm_eps", 1e-5);
        jr(&j, "rope_theta", 500000.0);
        jset(&j, "rope_scaling",
             json_pack("{s:f,s:f,s:f,s:i,s:s}", "factor", 8.0, "low_freq_factor", 1.0,
                       "high_freq_factor", 4.0, "original_max_position_embeddings", 8192,
                       "rope_type", "llama3"));
        break;
    }
    case A_QWEN3:
    case A_QWEN3MOE:
        ji(&j, "max_window_layers", o->layers);
        jr(&j, "rms_norm_eps", 1e-6);
        jnull(&j, "rope_scaling");
        if (a == A_QWEN3)
            ji(&j, "rope_theta", 1000000); /* an integer in Qwen3's configs */
        else
            jr(&j, "rope_theta", 1000000.0);
        jnull(&j, "sliding_window");
        jb(&j, "use_sliding_window", false);
        if (a == A_QWEN3MOE) {
            ji(&j, "decoder_sparse_step", 1);
            jset(&j, "mlp_only_layers", json_array());
            ji(&j, "moe_intermediate_size", o->moe_ff);
            jb(&j, "norm_topk_prob", true);
            ji(&j, "num_experts", o->experts);
            ji(&j, "num_experts_per_tok", o->experts_used);
            jb(&j, "output_router_logits", false);
            jr(&j, "router_aux_loss_coef", 0.001);
        }
        break;
    case A_MIXTRAL:
        ji(&j, "num_local_experts", o->experts);
        ji(&j, "num_experts_per_tok", o->experts_used);
        jb(&j, "output_router_logits", false);
        jr(&j, "rms_norm_eps", 1e-5);
        jr(&j, "rope_theta", 1000000.0);
        jr(&j, "router_aux_loss_coef", 0.02);
        jnull(&j, "sliding_window");
        break;
    case A_GEMMA3:
        jnull(&j, "attn_logit_softcapping");
        js(&j, "cache_implementation", "hybrid");
        jnull(&j, "final_logit_softcapping");
        js(&j, "hidden_activation", "gelu_pytorch_tanh");
        ji(&j, "pad_token_id", id.pad);
        ji(&j, "query_pre_attn_scalar", o->head_dim);
        jr(&j, "rms_norm_eps", 1e-6);
        ji(&j, "rope_local_base_freq", 10000);
        jnull(&j, "rope_scaling");
        ji(&j, "rope_theta", 1000000);
        ji(&j, "sliding_window", 512);
        ji(&j, "sliding_window_pattern", 6);
        break;
    case A_PHI3:
        jr(&j, "embd_pdrop", 0.0);
        ji(&j, "original_max_position_embeddings", o->ctx < 4096 ? o->ctx : 4096);
        ji(&j, "pad_token_id", id.pad);
        jr(&j, "resid_pdrop", 0.0);
        jr(&j, "rms_norm_eps", 1e-5);
        jset(&j, "rope_scaling",
             json_pack("{s:o,s:o,s:s}", "long_factor", longrope(o->head_dim / 2, true),
                       "short_factor", longrope(o->head_dim / 2, false), "type", "longrope"));
        jr(&j, "rope_theta", 10000.0);
        ji(&j, "sliding_window", 262144);
        break;
    default:
        break;
    }
    return jdone(&j);
}

static json_t *generation_json(const struct opts *o, const struct vocab *v)
{
    struct ids id = family_ids(o, v);
    struct jo j = {json_object(), false};
    js(&j, "transformers_version", tf_version[o->arch]);
    ji(&j, "bos_token_id", id.bos);
    switch (o->arch) {
    case A_LLAMA3:
        ji(&j, "eos_token_id", id.eos);
        jb(&j, "do_sample", true);
        jr(&j, "temperature", 0.6);
        jr(&j, "top_p", 0.9);
        break;
    case A_QWEN3:
    case A_QWEN3MOE:
        jset(&j, "eos_token_id", jints(2, (int64_t[]){id.eos, id.bos}));
        ji(&j, "pad_token_id", id.pad);
        jb(&j, "do_sample", true);
        jr(&j, "temperature", 0.6);
        ji(&j, "top_k", 20);
        jr(&j, "top_p", 0.95);
        break;
    case A_GEMMA3:
        ji(&j, "eos_token_id", id.eos);
        ji(&j, "pad_token_id", id.pad);
        js(&j, "cache_implementation", "hybrid");
        break;
    case A_PHI3:
        jb(&j, "_from_model_config", true);
        jset(&j, "eos_token_id",
             jints(3, (int64_t[]){tok_id(v, "<|end|>"), tok_id(v, "<|assistant|>"), id.eos}));
        ji(&j, "pad_token_id", id.pad);
        break;
    default: /* mixtral */
        jb(&j, "_from_model_config", true);
        ji(&j, "eos_token_id", id.eos);
        break;
    }
    return jdone(&j);
}

static json_t *token_entry(const char *content, bool special, bool rstrip)
{
    return json_pack("{s:s,s:b,s:b,s:b,s:b,s:b}", "content", content, "lstrip", 0, "normalized",
                     0, "rstrip", rstrip, "single_word", 0, "special", special);
}

static const char *const base_piece[] = {"<unk>", "<s>", "</s>"};

static json_t *added_tokens_decoder(const struct opts *o, const struct vocab *v)
{
    struct jo j = {json_object(), false};
    char key[24];
    for (int i = 0; v->list_base && i < 3; i++) {
        snprintf(key, sizeof key, "%d", i);
        /* Phi-3.5: </s> is not special and strips to the right */
        bool phi_eos = o->arch == A_PHI3 && i == 2;
        jset(&j, key, token_entry(base_piece[i], !phi_eos, phi_eos));
    }
    for (int i = 0; i < v->n_added; i++) {
        snprintf(key, sizeof key, "%" PRId64, v->n_pieces + i);
        jset(&j, key, token_entry(v->added[i].content, v->added[i].special, v->added[i].rstrip));
    }
    return jdone(&j);
}

/* special_tokens_map.json entry */
static json_t *stm_entry(const char *content)
{
    return json_pack("{s:s,s:b,s:b,s:b,s:b}", "content", content, "lstrip", 0, "normalized", 0,
                     "rstrip", 0, "single_word", 0);
}

static int write_tokenizer_files(const struct opts *o, const struct vocab *v)
{
    struct jo tc = {json_object(), false}, sm = {json_object(), false};
    jset(&tc, "added_tokens_decoder", added_tokens_decoder(o, v));
    js(&tc, "tokenizer_class", o->arch == A_GEMMA3 ? "GemmaTokenizer" : "LlamaTokenizer");
    jb(&tc, "add_eos_token", false);
    switch (o->arch) {
    case A_LLAMA3:
        jb(&tc, "add_bos_token", true);
        js(&tc, "bos_token", "<|begin_of_text|>");
        jb(&tc, "clean_up_tokenization_spaces", true);
        js(&tc, "eos_token", "<|end_of_text|>");
        jb(&tc, "legacy", false);
        jset(&tc, "model_input_names", json_pack("[s,s]", "input_ids", "attention_mask"));
        ji(&tc, "model_max_length", o->ctx);
        jnull(&tc, "pad_token");
        jset(&tc, "sp_model_kwargs", json_object());
        js(&tc, "unk_token", "<unk>");
        jset(&sm, "bos_token", stm_entry("<|begin_of_text|>"));
        jset(&sm, "eos_token", stm_entry("<|end_of_text|>"));
        jset(&sm, "unk_token", stm_entry("<unk>"));
        break;
    case A_QWEN3:
    case A_QWEN3MOE: {
        json_t *ast = json_array();
        for (int i = 1; ast && i < QWEN_SPECIAL; i++)
            if (json_array_append_new(ast, json_string(qwen_tokens[i])))
                tc.bad = true;
        jset(&sm, "additional_special_tokens", json_incref(ast));
        jset(&tc, "additional_special_tokens", ast);
        jb(&tc, "add_bos_token", false);
        jb(&tc, "add_prefix_space", false);
        jnull(&tc, "bos_token");
        jb(&tc, "clean_up_tokenization_spaces", false);
        js(&tc, "eos_token", "<|im_end|>");
        js(&tc, "errors", "replace");
        jb(&tc, "legacy", false);
        ji(&tc, "model_max_length", 131072);
        js(&tc, "pad_token", "<|endoftext|>");
        jset(&tc, "sp_model_kwargs", json_object());
        jb(&tc, "split_special_tokens", false);
        jnull(&tc, "unk_token");
        jset(&sm, "eos_token", stm_entry("<|im_end|>"));
        jset(&sm, "pad_token", stm_entry("<|endoftext|>"));
        break;
    }
    case A_GEMMA3:
    case A_PHI3:
    case A_MIXTRAL: {
        bool phi = o->arch == A_PHI3, gemma = o->arch == A_GEMMA3;
        const char *eos = phi ? "<|endoftext|>" : "</s>";
        const char *pad = phi ? "<|endoftext|>" : gemma ? "<unk>" : NULL;
        jb(&tc, "add_bos_token", !phi);
        js(&tc, "bos_token", "<s>");
        jb(&tc, "clean_up_tokenization_spaces", false);
        js(&tc, "eos_token", eos);
        if (!gemma)
            jb(&tc, "legacy", !phi);
        ji(&tc, "model_max_length", o->ctx);
        js(&tc, "pad_token", pad);
        if (phi)
            js(&tc, "padding_side", "left");
        jset(&tc, "sp_model_kwargs", gemma ? json_null() : json_object());
        if (!phi)
            jb(&tc, "spaces_between_special_tokens", false);
        js(&tc, "unk_token", "<unk>");
        jb(&tc, "use_default_system_prompt", false);
        jset(&sm, "bos_token", stm_entry("<s>"));
        jset(&sm, "eos_token", stm_entry(eos));
        if (pad)
            jset(&sm, "pad_token", stm_entry(pad));
        jset(&sm, "unk_token", stm_entry("<unk>"));
        break;
    }
    default:
        break;
    }
    int rc = dump_json(o->out, "tokenizer_config.json", jdone(&tc));
    if (!rc)
        rc = dump_json(o->out, "special_tokens_map.json", jdone(&sm));
    else
        json_decref(jdone(&sm));
    if (!rc && o->arch == A_PHI3) {
        struct jo at = {json_object(), false};
        for (int i = 0; i < v->n_added; i++)
            ji(&at, v->added[i].content, v->n_pieces + i);
        rc = dump_json(o->out, "added_tokens.json", jdone(&at));
    }
    return rc;
}

static int write_configs(const struct opts *o, const struct vocab *v)
{
    if (legacy(o))
        return write_configs_legacy(o);
    int rc = dump_json(o->out, "config.json", config_json(o, v));
    if (!rc)
        rc = dump_json(o->out, "generation_config.json", generation_json(o, v));
    if (!rc)
        rc = write_tokenizer_files(o, v);
    return rc;
}

/* ---- tokenizer.model (protobuf) ---- */

struct buf {
    uint8_t *p;
    size_t n, cap;
    bool oom;
};

static void put(struct buf *b, const void *d, size_t n)
{
    if (b->oom)
        return;
    if (b->n + n > b->cap) {
        size_t c = b->cap ? b->cap : 256;
        while (c < b->n + n)
            c *= 2;
        uint8_t *p = realloc(b->p, c);
        if (!p) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = c;
    }
    memcpy(b->p + b->n, d, n);
    b->n += n;
}

static void put_varint(struct buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    do {
        t[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, t, n);
}

/* protobuf wire types: 0 varint, 2 length-delimited, 5 fixed32 */
static void pb_varint(struct buf *b, int field, int64_t v) /* int32 -1 is sign-extended */
{
    put_varint(b, (uint64_t)field << 3 | 0);
    put_varint(b, (uint64_t)v);
}

static void pb_bytes(struct buf *b, int field, const void *d, size_t n)
{
    put_varint(b, (uint64_t)field << 3 | 2);
    put_varint(b, n);
    put(b, d, n);
}

static void pb_float(struct buf *b, int field, float f)
{
    uint32_t x;
    memcpy(&x, &f, 4);
    uint8_t t[4] = {(uint8_t)x, (uint8_t)(x >> 8), (uint8_t)(x >> 16), (uint8_t)(x >> 24)};
    put_varint(b, (uint64_t)field << 3 | 5);
    put(b, t, 4);
}

enum { SP_NORMAL = 1, SP_UNKNOWN = 2, SP_CONTROL = 3, SP_BYTE = 6 };

static void sp_piece(struct buf *m, const char *s, float score, int type)
{
    struct buf p = {0};
    pb_bytes(&p, 1, s, strlen(s));
    pb_float(&p, 2, score);
    pb_varint(&p, 3, type);
    m->oom |= p.oom;
    pb_bytes(m, 1, p.p, p.n);
    free(p.p);
}

#define SPACE "\xe2\x96\x81" /* U+2581, SentencePiece's word-boundary marker */

static const char *const words[] = {
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "was", "with", "on",
    "be", "at", "by", "this", "are", "from", "or", "an", "have", "not", "but", "they",
    "which", "one", "you", "were", "all", "we", "her", "she", "there", "would", "their",
    "will", "can", "if", "more", "when", "has", "who", "so", "no", "file", "line", "text",
    "model", "data", "time", "word", "first", "new", "use", "set", "see", "value",
};

static int write_tokenizer(const struct opts *o, int64_t n_pieces)
{
    struct buf m = {0}, sub = {0};
    char piece[32];
    int64_t id = 0;
    float score = 0.0f;
    sp_piece(&m, "<unk>", 0.0f, SP_UNKNOWN);
    sp_piece(&m, "<s>", 0.0f, SP_CONTROL);
    sp_piece(&m, "</s>", 0.0f, SP_CONTROL);
    for (int c = 0; c < 256; c++) {
        snprintf(piece, sizeof piece, "<0x%02X>", c);
        sp_piece(&m, piece, 0.0f, SP_BYTE);
    }
    id = 259;
    /* normal pieces, each scoring below the previous one */
    sp_piece(&m, SPACE, score -= 1.0f, SP_NORMAL), id++;
    /* letters, then words, then the other printable ASCII characters */
    for (int c = 0x21; c < 0x7f && id < n_pieces; c++) {
        if (!isalpha(c))
            continue;
        piece[0] = (char)c;
        piece[1] = '\0';
        sp_piece(&m, piece, score -= 1.0f, SP_NORMAL), id++;
    }
    for (size_t w = 0; w < sizeof words / sizeof words[0] && id < n_pieces; w++, id++) {
        snprintf(piece, sizeof piece, SPACE "%s", words[w]);
        sp_piece(&m, piece, score -= 1.0f, SP_NORMAL);
    }
    for (int c = 0x21; c < 0x7f && id < n_pieces; c++) {
        if (isalpha(c))
            continue;
        piece[0] = (char)c;
        piece[1] = '\0';
        sp_piece(&m, piece, score -= 1.0f, SP_NORMAL), id++;
    }
    /* filler: lowercase strings of 2+ letters without the marker; they cannot collide
     * with the single characters or the marked words above */
    for (int64_t k = 0; id < n_pieces; k++, id++) {
        int64_t len = 2, span = 26 * 26, r = k;
        while (r >= span) {
            r -= span;
            span *= 26;
            len++;
        }
        for (int64_t i = len - 1; i >= 0; i--) {
            piece[i] = (char)('a' + r % 26);
            r /= 26;
        }
        piece[len] = '\0';
        sp_piece(&m, piece, score -= 1.0f, SP_NORMAL);
    }

    /* TrainerSpec: model_type 3 = BPE(2), vocab_size 4, byte_fallback 35,
     * unk/bos/eos/pad ids 40..43 */
    pb_varint(&sub, 3, 2);
    pb_varint(&sub, 4, n_pieces);
    pb_varint(&sub, 35, 1);
    pb_varint(&sub, 40, 0);
    pb_varint(&sub, 41, 1);
    pb_varint(&sub, 42, 2);
    pb_varint(&sub, 43, -1);
    m.oom |= sub.oom;
    pb_bytes(&m, 2, sub.p, sub.n);
    free(sub.p);
    sub = (struct buf){0};
    /* NormalizerSpec: name 1, add_dummy_prefix 3, remove_extra_whitespaces 4,
     * escape_whitespaces 5 */
    pb_bytes(&sub, 1, "identity", 8);
    pb_varint(&sub, 3, 1);
    pb_varint(&sub, 4, 0);
    pb_varint(&sub, 5, 1);
    m.oom |= sub.oom;
    pb_bytes(&m, 3, sub.p, sub.n);
    free(sub.p);

    int rc = 0;
    char *path = path_of(o->out, "tokenizer.model");
    FILE *f = path ? fopen(path, "wb") : NULL;
    if (m.oom || !f || fwrite(m.p, 1, m.n, f) != m.n)
        rc = -EIO;
    if (f && fclose(f) != 0)
        rc = -EIO;
    if (rc)
        fprintf(stderr, "qfs-genmodel: cannot write %s: %s\n", path ? path : "tokenizer.model",
                strerror(errno));
    free(path);
    free(m.p);
    return rc;
}

/* ---- arguments ---- */

struct preset {
    const char *name, *model;
    enum arch arch;
    int64_t hidden, layers, heads, kv_heads, head_dim, ff, vocab, ctx, experts, experts_used,
        moe_ff;
    bool tied;
};

static const struct preset presets[] = {
    {"llama3-8b", "meta-llama/Llama-3.1-8B", A_LLAMA3, 4096, 32, 32, 8, -1, 14336, 128256,
     131072, -1, -1, -1, false},
    {"qwen3-8b", "Qwen/Qwen3-8B", A_QWEN3, 4096, 36, 32, 8, 128, 12288, 151936, 40960, -1, -1,
     -1, false},
    {"qwen3-30b-a3b", "Qwen/Qwen3-30B-A3B", A_QWEN3MOE, 2048, 48, 32, 4, 128, 6144, 151936,
     40960, 128, 8, 768, false},
    {"mixtral-8x7b", "mistralai/Mixtral-8x7B-v0.1", A_MIXTRAL, 4096, 32, 32, 8, -1, 14336, 32000,
     32768, 8, 2, -1, false},
    {"gemma3-1b", "google/gemma-3-1b-pt", A_GEMMA3, 1152, 26, 4, 1, 256, 6912, 262144, 32768, -1,
     -1, -1, true},
    {"phi3.5-mini", "microsoft/Phi-3.5-mini-instruct", A_PHI3, 3072, 32, 32, 32, -1, 8192, 32064,
     131072, -1, -1, -1, false},
    {"tinyllama-1.1b", "TinyLlama/TinyLlama-1.1B-Chat-v1.0", A_LLAMA, 2048, 22, 32, 4, -1, 5632,
     32000, 2048, -1, -1, -1, false},
};
#define N_PRESETS ((int)(sizeof presets / sizeof presets[0]))

static void usage(FILE *f)
{
    fprintf(f, "usage: qfs-genmodel --out DIR [--arch llama|mistral] [--hidden 64] [--layers 2]\n"
               "         [--heads 4] [--kv-heads 2] [--ff 128] [--vocab 320] [--ctx 256]\n"
               "         [--dtype f16|bf16|f32] [--shards N] [--tied] [--seed S] [--name NAME]\n");
    fprintf(f,
            "       qfs-genmodel --out DIR --arch llama3|qwen3|qwen3moe|mixtral|gemma3|phi3 ...\n"
            "         [--head-dim D]  qwen3, qwen3moe, gemma3 (default hidden / heads)\n"
            "         [--experts N] [--experts-used K]  qwen3moe (8, 2), mixtral (4, 2)\n"
            "         [--moe-ff F]  qwen3moe expert size (default ff / 2; mixtral's is --ff)\n"
            "         [--fast]  fast weights for llama/mistral too (the others always use them)\n"
            "       qfs-genmodel --out DIR --preset NAME [options that override it]\n"
            "  defaults of the new architectures: --vocab 576 (llama3), 384 (qwen3, qwen3moe,\n"
            "  phi3), 322 (gemma3), 320 (mixtral); --ctx as the real model; --dtype bf16 for\n"
            "  gemma3, f16 for the others.  gemma3 is always tied.\n"
            "  presets (real shapes, bf16):\n");
    for (int i = 0; i < N_PRESETS; i++)
        fprintf(f, "    %-15s %s\n", presets[i].name, presets[i].model);
}

static bool parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static void apply_preset(struct opts *o, const struct preset *p)
{
    o->preset = p->name;
    o->arch = p->arch;
    o->hidden = p->hidden;
    o->layers = p->layers;
    o->heads = p->heads;
    o->kv_heads = p->kv_heads;
    o->head_dim = p->head_dim;
    o->ff = p->ff;
    o->vocab = p->vocab;
    o->ctx = p->ctx;
    o->experts = p->experts;
    o->experts_used = p->experts_used;
    o->moe_ff = p->moe_ff;
    o->tied = p->tied;
    o->dtype = QFS_DT_BF16;
    o->given = 0;
}

static int64_t or_default(int64_t v, int64_t d) { return v < 0 ? d : v; }

/* The architecture's defaults for what is still unset, then the checks. */
static int finish_opts(struct opts *o)
{
    static const int64_t def_vocab[] = {[A_LLAMA] = 320,  [A_MISTRAL] = 320, [A_LLAMA3] = 576,
                                        [A_QWEN3] = 384,  [A_QWEN3MOE] = 384, [A_MIXTRAL] = 320,
                                        [A_GEMMA3] = 322, [A_PHI3] = 384};
    static const int64_t def_ctx[] = {[A_LLAMA] = 256,      [A_MISTRAL] = 256,
                                      [A_LLAMA3] = 131072,  [A_QWEN3] = 40960,
                                      [A_QWEN3MOE] = 40960, [A_MIXTRAL] = 32768,
                                      [A_GEMMA3] = 32768,   [A_PHI3] = 131072};
    const char *an = arch_names[o->arch];
    o->hidden = or_default(o->hidden, 64);
    o->layers = or_default(o->layers, 2);
    o->heads = or_default(o->heads, 4);
    o->kv_heads = or_default(o->kv_heads, 2);
    o->ff = or_default(o->ff, 128);
    o->vocab = or_default(o->vocab, def_vocab[o->arch]);
    o->ctx = or_default(o->ctx, def_ctx[o->arch]);
    o->experts = or_default(o->experts, o->arch == A_MIXTRAL ? 4 : 8);
    o->experts_used = or_default(o->experts_used, o->experts < 2 ? o->experts : 2);
    o->moe_ff = or_default(o->moe_ff, o->ff > 1 ? o->ff / 2 : 1);
    if (o->dtype < 0)
        o->dtype = o->arch == A_GEMMA3 ? QFS_DT_BF16 : QFS_DT_F16;
    if (o->arch == A_GEMMA3)
        o->tied = true;
    o->fast = o->fast || o->preset || !legacy(o);
    if (!o->out) {
        fprintf(stderr, "qfs-genmodel: --out DIR is required\n");
        usage(stderr);
        return -1;
    }
    if ((o->given & G_HEAD_DIM) && !own_head_dim(o)) {
        fprintf(stderr, "qfs-genmodel: --head-dim is for qwen3, qwen3moe and gemma3 (%s has "
                        "hidden / heads)\n", an);
        return -1;
    }
    if ((o->given & (G_EXPERTS | G_USED)) && !moe(o)) {
        fprintf(stderr,
                "qfs-genmodel: --experts and --experts-used are for qwen3moe and mixtral\n");
        return -1;
    }
    if ((o->given & G_MOE_FF) && o->arch != A_QWEN3MOE) {
        fprintf(stderr, "qfs-genmodel: --moe-ff is for qwen3moe (mixtral's experts have --ff)\n");
        return -1;
    }
    bool hd_free = own_head_dim(o) && o->head_dim > 0;
    if ((!hd_free && o->hidden % o->heads) || o->heads % o->kv_heads) {
        fprintf(stderr, "qfs-genmodel: --hidden must be a multiple of --heads and --heads of "
                        "--kv-heads\n");
        return -1;
    }
    if (!own_head_dim(o) || o->head_dim < 0)
        o->head_dim = o->hidden / o->heads;
    if (!legacy(o) && o->head_dim % 2) {
        fprintf(stderr, "qfs-genmodel: the head dimension (%" PRId64 ") must be even\n",
                o->head_dim);
        return -1;
    }
    if (moe(o) && o->experts_used > o->experts) {
        fprintf(stderr, "qfs-genmodel: --experts-used exceeds --experts\n");
        return -1;
    }
    if ((o->vocab * o->hidden) > (INT64_C(1) << 31)) {
        fprintf(stderr, "qfs-genmodel: --vocab x --hidden too large for a synthetic model\n");
        return -1;
    }
    if (o->arch == A_MIXTRAL && o->shards > 1 && (o->shards > o->layers || o->experts < 2)) {
        fprintf(stderr, "qfs-genmodel: mixtral cuts each shard inside one layer's experts: "
                        "--shards needs at most --layers shards and 2 or more --experts\n");
        return -1;
    }
    if (!o->name && legacy(o))
        o->name = o->arch == A_MISTRAL ? "qfs-synthetic-mistral" : "qfs-synthetic-llama";
    return 0;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct option lo[] = {
        {"out", required_argument, 0, 'o'},    {"arch", required_argument, 0, 'a'},
        {"hidden", required_argument, 0, 'H'}, {"layers", required_argument, 0, 'L'},
        {"heads", required_argument, 0, 'n'},  {"kv-heads", required_argument, 0, 'k'},
        {"ff", required_argument, 0, 'f'},     {"vocab", required_argument, 0, 'v'},
        {"ctx", required_argument, 0, 'c'},    {"dtype", required_argument, 0, 'd'},
        {"shards", required_argument, 0, 's'}, {"tied", no_argument, 0, 't'},
        {"seed", required_argument, 0, 'S'},   {"name", required_argument, 0, 'N'},
        {"preset", required_argument, 0, 'P'}, {"head-dim", required_argument, 0, 'D'},
        {"experts", required_argument, 0, 'E'}, {"experts-used", required_argument, 0, 'K'},
        {"moe-ff", required_argument, 0, 'F'}, {"fast", no_argument, 0, 'x'},
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
    };
    *o = (struct opts){.arch = A_LLAMA, .hidden = -1, .layers = -1, .heads = -1, .kv_heads = -1,
                       .head_dim = -1, .ff = -1, .vocab = -1, .ctx = -1, .experts = -1,
                       .experts_used = -1, .moe_ff = -1, .dtype = -1, .shards = 1};
    int64_t v, big = 1 << 20;
    int c, li = -1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, &li)) != -1) {
        bool ok = true;
        switch (c) {
        case 'o': o->out = optarg; break;
        case 'N': o->name = optarg; break;
        case 't': o->tied = true; break;
        case 'x': o->fast = true; break;
        case 'a':
            ok = false;
            for (int i = 0; i < N_ARCH && !ok; i++)
                if (!strcmp(optarg, arch_names[i])) {
                    o->arch = (enum arch)i;
                    ok = true;
                }
            break;
        case 'P':
            ok = false;
            for (int i = 0; i < N_PRESETS && !ok; i++)
                if (!strcmp(optarg, presets[i].name)) {
                    apply_preset(o, &presets[i]);
                    ok = true;
                }
            break;
        case 'd':
            if (!strcmp(optarg, "f16"))
                o->dtype = QFS_DT_F16;
            else if (!strcmp(optarg, "bf16"))
                o->dtype = QFS_DT_BF16;
            else if (!strcmp(optarg, "f32"))
                o->dtype = QFS_DT_F32;
            else
                ok = false;
            break;
        case 'H': ok = parse_i64(optarg, 1, big, &o->hidden); break;
        case 'L': ok = parse_i64(optarg, 1, 1024, &o->layers); break;
        case 'n': ok = parse_i64(optarg, 1, 4096, &o->heads); break;
        case 'k': ok = parse_i64(optarg, 1, 4096, &o->kv_heads); break;
        case 'f': ok = parse_i64(optarg, 1, big, &o->ff); break;
        case 'v': ok = parse_i64(optarg, MIN_VOCAB, MAX_VOCAB, &o->vocab); break;
        case 'c': ok = parse_i64(optarg, 1, big, &o->ctx); break;
        case 'D':
            ok = parse_i64(optarg, 1, 65536, &o->head_dim);
            o->given |= G_HEAD_DIM;
            break;
        case 'E':
            ok = parse_i64(optarg, 1, 4096, &o->experts);
            o->given |= G_EXPERTS;
            break;
        case 'K':
            ok = parse_i64(optarg, 1, 4096, &o->experts_used);
            o->given |= G_USED;
            break;
        case 'F':
            ok = parse_i64(optarg, 1, big, &o->moe_ff);
            o->given |= G_MOE_FF;
            break;
        case 's':
            ok = parse_i64(optarg, 1, 99999, &v);
            o->shards = (int)v;
            break;
        case 'S':
            ok = parse_i64(optarg, 0, INT64_MAX, &v);
            o->seed = (uint64_t)v;
            break;
        case 'h': usage(stdout); exit(0);
        default:
            fprintf(stderr, "qfs-genmodel: unknown option or missing argument: %s\n",
                    argv[optind - 1]);
            usage(stderr);
            return -1;
        }
        if (!ok) {
            fprintf(stderr, "qfs-genmodel: bad value '%s' for --%s\n", optarg, lo[li].name);
            usage(stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "qfs-genmodel: unexpected argument %s\n", argv[optind]);
        return -1;
    }
    return finish_opts(o);
}

int main(int argc, char **argv)
{
    struct opts o;
    struct vocab voc;
    struct tlist t = {0};
    int rc;
    if (parse_args(argc, argv, &o))
        return 2;
    make_vocab(&o, &voc);
    if (voc.n_pieces < MIN_VOCAB) {
        bool pad64 = o.arch == A_QWEN3 || o.arch == A_QWEN3MOE || o.arch == A_PHI3;
        fprintf(stderr, "qfs-genmodel: --vocab %" PRId64 " is too small for %s: at least %d (%d "
                "pieces%s and %d added tokens)\n", o.vocab, arch_names[o.arch],
                (pad64 ? 320 : MIN_VOCAB) + voc.n_added, MIN_VOCAB,
                pad64 ? ", a multiple of 64," : "", voc.n_added);
        return 2;
    }
    if ((rc = build_tensors(&o, &t))) {
        fprintf(stderr, "qfs-genmodel: out of memory\n");
        free_tensors(&t);
        return 1;
    }
    if (o.shards > t.n) {
        fprintf(stderr, "qfs-genmodel: --shards %d exceeds the %d tensors\n", o.shards, t.n);
        free_tensors(&t);
        return 2;
    }
    assign_shards(&o, &t);
    if (o.fast)
        fast_tables((enum qfs_dtype)o.dtype);
    if (mkdir(o.out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "qfs-genmodel: mkdir %s: %s\n", o.out, strerror(errno));
        free_tensors(&t);
        return 1;
    }
    rc = write_configs(&o, &voc);
    if (!rc)
        rc = write_tokenizer(&o, voc.n_pieces);
    if (!rc)
        rc = write_weights(&o, &t);
    free_tensors(&t);
    if (rc) {
        fprintf(stderr, "qfs-genmodel: failed to write %s: %s\n", o.out, strerror(-rc));
        return 1;
    }
    return 0;
}
