/* The metadata convert_hf_to_gguf.py writes: general.* (name heuristics from the
 * directory name, size label from the parameter count) and the <arch>.* hyperparameters,
 * in the converter's key order. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../util/log.h"
#include "gguf_file.h"
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

int qfs_gguf_base_metadata(struct qfs_model *m)
{
    const struct qfs_hf_config *c = &m->cfg;
    const char *arch = qfs_arch_gguf_name(c->arch);
    char *basename = NULL, *version = NULL, *finetune = NULL, *size = NULL, *title = NULL;
    char key[128], lbl[64];
    int rc = 0;
    struct qfs_kvs *kv = qfs_kvs_new();
    if (!kv)
        return -ENOMEM;
#define K(suffix) (snprintf(key, sizeof key, "%s.%s", arch, suffix), key)
    CHECK(name_components(m->name, m->n_params, &basename, &version, &finetune, &size));
    title = id_to_title(m->name);
    if (!title)
        CHECK(-ENOMEM);
    CHECK(qfs_kvs_set_str(kv, "general.architecture", arch));
    CHECK(qfs_kvs_set_str(kv, "general.type", "model"));
    CHECK(qfs_kvs_set_str(kv, "general.name", title));
    if (version)
        CHECK(qfs_kvs_set_str(kv, "general.version", version));
    if (finetune)
        CHECK(qfs_kvs_set_str(kv, "general.finetune", finetune));
    if (basename)
        CHECK(qfs_kvs_set_str(kv, "general.basename", basename));
    if (!size)
        size_label(m->n_params, lbl, sizeof lbl);
    CHECK(qfs_kvs_set_str(kv, "general.size_label", size ? size : lbl));
    CHECK(qfs_kvs_set_u32(kv, K("block_count"), (uint32_t)c->n_layers));
    CHECK(qfs_kvs_set_u32(kv, K("context_length"), (uint32_t)c->max_position_embeddings));
    CHECK(qfs_kvs_set_u32(kv, K("embedding_length"), (uint32_t)c->hidden_size));
    CHECK(qfs_kvs_set_u32(kv, K("feed_forward_length"), (uint32_t)c->intermediate_size));
    CHECK(qfs_kvs_set_u32(kv, K("attention.head_count"), (uint32_t)c->n_heads));
    CHECK(qfs_kvs_set_u32(kv, K("attention.head_count_kv"), (uint32_t)c->n_kv_heads));
    if (c->has_rope_theta)
        CHECK(qfs_kvs_set_f32(kv, K("rope.freq_base"), (float)c->rope_theta));
    CHECK(qfs_kvs_set_f32(kv, K("attention.layer_norm_rms_epsilon"), (float)c->rms_norm_eps));
    if (c->head_dim_explicit) {
        CHECK(qfs_kvs_set_u32(kv, K("attention.key_length"), (uint32_t)c->head_dim));
        CHECK(qfs_kvs_set_u32(kv, K("attention.value_length"), (uint32_t)c->head_dim));
    }
    CHECK(qfs_kvs_set_u32(kv, "general.file_type", 1)); /* F16; replaced per output type */
    if (c->arch == QFS_ARCH_LLAMA || c->arch == QFS_ARCH_MISTRAL) {
        CHECK(qfs_kvs_set_u32(kv, K("vocab_size"), (uint32_t)c->vocab_size));
        CHECK(qfs_kvs_set_u32(kv, K("rope.dimension_count"), (uint32_t)c->head_dim));
    }
    if (c->rope_scaling_type) {
        if (strcmp(c->rope_scaling_type, "linear") != 0) {
            qfs_err("%s/config.json: rope_scaling type \"%s\" is not supported yet", m->dir,
                    c->rope_scaling_type);
            CHECK(-ENOTSUP);
        }
        CHECK(qfs_kvs_set_str(kv, K("rope.scaling.type"), "linear"));
        CHECK(qfs_kvs_set_f32(kv, K("rope.scaling.factor"), (float)c->rope_scaling_factor));
    }
    CHECK(qfs_kvs_set_u32(kv, "general.quantization_version", 2));
    CHECK(qfs_tokenizer_to_gguf(m->dir, c, kv));
#undef K
    m->kv = kv;
    kv = NULL;
out:
    qfs_kvs_free(kv);
    free(basename);
    free(version);
    free(finetune);
    free(size);
    free(title);
    return rc;
}
