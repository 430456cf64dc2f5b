/* qfs-genmodel: write a small synthetic Hugging Face Llama/Mistral model directory.
 *
 * Output (DIR):
 *   1. config.json, generation_config.json, tokenizer_config.json
 *   2. model.safetensors, or N shards model-0000i-of-0000N.safetensors plus
 *      model.safetensors.index.json
 *   3. tokenizer.model: a SentencePiece BPE ModelProto written by hand:
 *      <unk> <s> </s>, the 256 byte pieces <0x00>..<0xFF>, then "▁", the ASCII letters,
 *      "▁"-prefixed English words, the other printable ASCII characters and filler pieces
 *      up to --vocab.
 * Weights are deterministic: a splitmix64 stream per tensor (seeded by --seed and the
 * tensor name) through Box-Muller, std 0.02; norm weights are 1.0. */
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

struct opts {
    const char *out, *arch, *name;
    int64_t hidden, layers, heads, kv_heads, ff, vocab, ctx;
    enum qfs_dtype dtype;
    int shards;
    bool tied;
    uint64_t seed;
};

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

/* little-endian element i of a dtype buffer */
static void store(enum qfs_dtype dt, uint8_t *p, int64_t i, float v)
{
    uint32_t x;
    switch (dt) {
    case QFS_DT_F32:
        memcpy(&x, &v, 4);
        break;
    case QFS_DT_F16:
        x = qfs_f32_to_f16(v);
        break;
    default:
        x = qfs_f32_to_bf16(v);
        break;
    }
    size_t sz = dt_size(dt);
    for (size_t b = 0; b < sz; b++)
        p[(size_t)i * sz + b] = (uint8_t)(x >> (8 * b));
}

struct gtensor {
    char *name;
    int n_dims;
    int64_t shape[2];
    bool norm;
};

/* Fill the data of one tensor; NULL on allocation failure. */
static void *gen_data(const struct opts *o, const struct gtensor *g)
{
    int64_t n = 1;
    for (int d = 0; d < g->n_dims; d++)
        n *= g->shape[d];
    uint8_t *p = malloc((size_t)n * dt_size(o->dtype) + 1);
    if (!p)
        return NULL;
    uint64_t s = o->seed ^ fnv1a(g->name);
    for (int64_t i = 0; i < n; i += 2) {
        /* Box-Muller: two normals per pair of uniforms */
        double u1 = uniform01(&s), u2 = uniform01(&s);
        double r = sqrt(-2.0 * log(u1)), th = 2.0 * M_PI * u2;
        float a = g->norm ? 1.0f : (float)(0.02 * r * cos(th));
        float b = g->norm ? 1.0f : (float)(0.02 * r * sin(th));
        store(o->dtype, p, i, a);
        if (i + 1 < n)
            store(o->dtype, p, i + 1, b);
    }
    return p;
}

/* ---- tensors ---- */

static int add(struct gtensor *v, int *n, bool norm, int64_t d0, int64_t d1, const char *fmt,
               ...) __attribute__((format(printf, 6, 7)));
static int add(struct gtensor *v, int *n, bool norm, int64_t d0, int64_t d1, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = vasprintf(&v[*n].name, fmt, ap);
    va_end(ap);
    if (r < 0)
        return -ENOMEM;
    v[*n].norm = norm;
    v[*n].n_dims = d1 ? 2 : 1;
    v[*n].shape[0] = d0;
    v[*n].shape[1] = d1;
    (*n)++;
    return 0;
}

static int build_tensors(const struct opts *o, struct gtensor **out, int *n_out)
{
    int64_t hd = o->hidden / o->heads;
    int cap = 4 + 9 * (int)o->layers, n = 0, rc = 0;
    struct gtensor *v = calloc((size_t)cap, sizeof *v);
    if (!v)
        return -ENOMEM;
    rc |= add(v, &n, false, o->vocab, o->hidden, "model.embed_tokens.weight");
    for (int64_t l = 0; l < o->layers; l++) {
        const char *p = "model.layers";
        rc |= add(v, &n, true, o->hidden, 0, "%s.%" PRId64 ".input_layernorm.weight", p, l);
        rc |= add(v, &n, false, o->heads * hd, o->hidden, "%s.%" PRId64 ".self_attn.q_proj.weight",
                  p, l);
        rc |= add(v, &n, false, o->kv_heads * hd, o->hidden,
                  "%s.%" PRId64 ".self_attn.k_proj.weight", p, l);
        rc |= add(v, &n, false, o->kv_heads * hd, o->hidden,
                  "%s.%" PRId64 ".self_attn.v_proj.weight", p, l);
        rc |= add(v, &n, false, o->hidden, o->heads * hd, "%s.%" PRId64 ".self_attn.o_proj.weight",
                  p, l);
        rc |= add(v, &n, true, o->hidden, 0, "%s.%" PRId64 ".post_attention_layernorm.weight", p,
                  l);
        rc |= add(v, &n, false, o->ff, o->hidden, "%s.%" PRId64 ".mlp.gate_proj.weight", p, l);
        rc |= add(v, &n, false, o->ff, o->hidden, "%s.%" PRId64 ".mlp.up_proj.weight", p, l);
        rc |= add(v, &n, false, o->hidden, o->ff, "%s.%" PRId64 ".mlp.down_proj.weight", p, l);
    }
    rc |= add(v, &n, true, o->hidden, 0, "model.norm.weight");
    if (!o->tied)
        rc |= add(v, &n, false, o->vocab, o->hidden, "lm_head.weight");
    *out = v;
    *n_out = n;
    return rc ? -ENOMEM : 0;
}

static void free_tensors(struct gtensor *v, int n)
{
    for (int i = 0; i < n; i++)
        free(v[i].name);
    free(v);
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

/* Write shard s (tensors [b, e)) to path. */
static int write_shard(const struct opts *o, const struct gtensor *g, int b, int e,
                       const char *path)
{
    int rc = 0, n = e - b;
    struct qfs_st_wtensor *w = calloc((size_t)n, sizeof *w);
    if (!w)
        return -ENOMEM;
    for (int i = 0; i < n && !rc; i++) {
        w[i].name = g[b + i].name;
        w[i].dtype = o->dtype;
        w[i].n_dims = g[b + i].n_dims;
        w[i].shape[0] = g[b + i].shape[0];
        w[i].shape[1] = g[b + i].shape[1];
        w[i].data = gen_data(o, &g[b + i]);
        if (!w[i].data)
            rc = -ENOMEM;
    }
    if (!rc)
        rc = qfs_st_write(path, w, n);
    for (int i = 0; i < n; i++)
        free((void *)w[i].data);
    free(w);
    return rc;
}

static int write_weights(const struct opts *o)
{
    struct gtensor *g = NULL;
    int n = 0, rc = build_tensors(o, &g, &n);
    json_t *wm = NULL;
    char *path = NULL;
    if (rc)
        goto out;
    if (o->shards == 1) {
        path = path_of(o->out, "model.safetensors");
        rc = path ? write_shard(o, g, 0, n, path) : -ENOMEM;
        goto out;
    }
    wm = json_object();
    uint64_t total = 0;
    for (int s = 0; s < o->shards && !rc; s++) {
        char name[64];
        snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, o->shards);
        int b = (int)((int64_t)n * s / o->shards), e = (int)((int64_t)n * (s + 1) / o->shards);
        free(path);
        path = path_of(o->out, name);
        rc = path ? write_shard(o, g, b, e, path) : -ENOMEM;
        for (int i = b; i < e && !rc; i++) {
            total += (uint64_t)(g[i].shape[0] * (g[i].n_dims > 1 ? g[i].shape[1] : 1)) *
                     dt_size(o->dtype);
            if (json_object_set_new(wm, g[i].name, json_string(name)))
                rc = -ENOMEM;
        }
    }
    if (!rc)
        rc = dump_json(o->out, "model.safetensors.index.json",
                       json_pack("{s:{s:I},s:O}", "metadata", "total_size", (json_int_t)total,
                                 "weight_map", wm));
out:
    json_decref(wm);
    free(path);
    if (g)
        free_tensors(g, n);
    return rc;
}

static int write_configs(const struct opts *o)
{
    bool mistral = strcmp(o->arch, "mistral") == 0;
    const char *tdt = o->dtype == QFS_DT_F32 ? "float32" : o->dtype == QFS_DT_F16 ? "float16"
                                                                                  : "bfloat16";
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

static int write_tokenizer(const struct opts *o)
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
    for (int c = 0x21; c < 0x7f && id < o->vocab; c++) {
        if (!isalpha(c))
            continue;
        piece[0] = (char)c;
        piece[1] = '\0';
        sp_piece(&m, piece, score -= 1.0f, SP_NORMAL), id++;
    }
    for (size_t w = 0; w < sizeof words / sizeof words[0] && id < o->vocab; w++, id++) {
        snprintf(piece, sizeof piece, SPACE "%s", words[w]);
        sp_piece(&m, piece, score -= 1.0f, SP_NORMAL);
    }
    for (int c = 0x21; c < 0x7f && id < o->vocab; c++) {
        if (isalpha(c))
            continue;
        piece[0] = (char)c;
        piece[1] = '\0';
        sp_piece(&m, piece, score -= 1.0f, SP_NORMAL), id++;
    }
    /* filler: lowercase strings of 2+ letters without the marker; they cannot collide
     * with the single characters or the marked words above */
    for (int64_t k = 0; id < o->vocab; k++, id++) {
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
    pb_varint(&sub, 4, o->vocab);
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

static void usage(FILE *f)
{
    fprintf(f, "usage: qfs-genmodel --out DIR [--arch llama|mistral] [--hidden 64] [--layers 2]\n"
               "         [--heads 4] [--kv-heads 2] [--ff 128] [--vocab 320] [--ctx 256]\n"
               "         [--dtype f16|bf16|f32] [--shards N] [--tied] [--seed S] [--name NAME]\n");
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
        {"help", no_argument, 0, 'h'},         {0, 0, 0, 0},
    };
    *o = (struct opts){.arch = "llama", .hidden = 64, .layers = 2, .heads = 4, .kv_heads = 2,
                       .ff = 128, .vocab = 320, .ctx = 256, .dtype = QFS_DT_F16, .shards = 1};
    int64_t v, big = 1 << 20;
    int c, li = -1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "", lo, &li)) != -1) {
        bool ok = true;
        switch (c) {
        case 'o': o->out = optarg; break;
        case 'N': o->name = optarg; break;
        case 't': o->tied = true; break;
        case 'a':
            o->arch = optarg;
            ok = !strcmp(optarg, "llama") || !strcmp(optarg, "mistral");
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
    if (!o->out) {
        fprintf(stderr, "qfs-genmodel: --out DIR is required\n");
        usage(stderr);
        return -1;
    }
    if (o->hidden % o->heads || o->heads % o->kv_heads) {
        fprintf(stderr, "qfs-genmodel: --hidden must be a multiple of --heads and --heads of "
                        "--kv-heads\n");
        return -1;
    }
    if ((o->vocab * o->hidden) > (INT64_C(1) << 31)) {
        fprintf(stderr, "qfs-genmodel: --vocab x --hidden too large for a synthetic model\n");
        return -1;
    }
    int64_t n_tensors = 2 + 9 * o->layers + (o->tied ? 0 : 1);
    if (o->shards > n_tensors) {
        fprintf(stderr, "qfs-genmodel: --shards %d exceeds the %" PRId64 " tensors\n", o->shards,
                n_tensors);
        return -1;
    }
    if (!o->name)
        o->name = strcmp(o->arch, "mistral") == 0 ? "qfs-synthetic-mistral" : "qfs-synthetic-llama";
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    if (parse_args(argc, argv, &o))
        return 2;
    if (mkdir(o.out, 0755) < 0 && errno != EEXIST) {
        fprintf(stderr, "qfs-genmodel: mkdir %s: %s\n", o.out, strerror(errno));
        return 1;
    }
    int rc = write_configs(&o);
    if (!rc)
        rc = write_tokenizer(&o);
    if (!rc)
        rc = write_weights(&o);
    if (rc) {
        fprintf(stderr, "qfs-genmodel: failed to write %s: %s\n", o.out, strerror(-rc));
        return 1;
    }
    return 0;
}
