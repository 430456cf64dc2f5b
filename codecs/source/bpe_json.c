/* tokenizer.json reader: vocabulary, added tokens, merges and pre-tokenizer name.
 *
 * The parts of tokenizer.json used here:
 *  1. "model": {"type": "BPE", "vocab": {token: id, ...}, "merges": ["a b", ...] or
 *     [["a", "b"], ...], "byte_fallback": bool, "ignore_merges": bool}
 *  2. "added_tokens": [{"id", "content", "special", "normalized", ...}, ...]
 *  3. "pre_tokenizer": null, {"type": "ByteLevel", "use_regex"}, {"type": "Split",
 *     "pattern": {"Regex": ...}} or {"type": "Sequence", "pretokenizers": [...]}
 *  4. "decoder": {"type": ...}
 * The converter reads the vocabulary through transformers' AutoTokenizer; we read the
 * same data from the file.  Where AutoTokenizer would decode(encode(t)) a non-normalized
 * added token we keep its text (the two agree for every tokenizer we have seen). */
#include "bpe_json.h"

#include "../../util/json_file.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/log.h"

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER_DEFINED = 4, TT_UNUSED = 5, TT_BYTE = 6 };

void qfs_vocab_free(struct qfs_vocab *v)
{
    if (v->text)
        for (size_t i = 0; i < v->n; i++)
            free(v->text[i]);
    free(v->text);
    free(v->scores);
    free(v->types);
    memset(v, 0, sizeof *v);
}

static int vocab_alloc(struct qfs_vocab *v, size_t n, bool scores)
{
    memset(v, 0, sizeof *v);
    v->text = calloc(n ? n : 1, sizeof *v->text);
    v->types = calloc(n ? n : 1, sizeof *v->types);
    v->scores = scores ? calloc(n ? n : 1, sizeof *v->scores) : NULL;
    v->n = n;
    if (!v->text || !v->types || (scores && !v->scores)) {
        qfs_vocab_free(v);
        return -ENOMEM;
    }
    return 0;
}

int qfs_bpe_json_load(const char *path, json_t **root)
{
    int rc = qfs_json_load(path, QFS_JSON_MAX_TOKENIZER, 0, root);
    if (rc < 0) {
        *root = NULL;
        return rc;
    }
    if (!json_is_object(*root)) {
        qfs_err("%s: top level is not a JSON object", path);
        json_decref(*root);
        *root = NULL;
        return -EINVAL;
    }
    return 0;
}

static bool has_prefix(const char *s, const char *p) { return strncmp(s, p, strlen(p)) == 0; }

static bool has_suffix(const char *s, const char *x)
{
    size_t n = strlen(s), m = strlen(x);
    return n >= m && memcmp(s + n - m, x, m) == 0;
}

bool qfs_token_looks_special(const char *t)
{
    static const char *const exact[] = { "<pad>", "<mask>", "<2mass>", "[@BOS@]" };
    for (size_t i = 0; i < sizeof exact / sizeof *exact; i++)
        if (strcmp(t, exact[i]) == 0)
            return true;
    return (has_prefix(t, "<|") && has_suffix(t, "|>")) ||
           (has_prefix(t, "<\xef\xbd\x9c") && has_suffix(t, "\xef\xbd\x9c>")) || /* fullwidth ｜ */
           (has_prefix(t, "<unused") && has_suffix(t, ">"));
}

/* Python's json bool is an int: true/false count as 1/0 where an int is expected. */
static bool json_int_value(const json_t *j, int64_t *v)
{
    if (json_is_integer(j)) {
        *v = json_integer_value(j);
        return true;
    }
    if (json_is_boolean(j)) {
        *v = json_is_true(j);
        return true;
    }
    return false;
}

/* Copy s with every occurrence of from replaced by to. */
static char *str_replace_all(const char *s, const char *from, const char *to)
{
    size_t fl = strlen(from), tl = strlen(to), n = 0;
    for (const char *p = strstr(s, from); p; p = strstr(p + fl, from))
        n++;
    char *out = malloc(strlen(s) + n * (tl > fl ? tl - fl : 0) + 1);
    if (!out)
        return NULL;
    char *o = out;
    for (const char *p = s;;) {
        const char *q = strstr(p, from);
        if (!q) {
            strcpy(o, p);
            break;
        }
        memcpy(o, p, (size_t)(q - p));
        o += q - p;
        memcpy(o, to, tl);
        o += tl;
        p = q + fl;
    }
    return out;
}

bool qfs_bpe_json_is_llama_hf(json_t *root)
{
    json_t *model = json_object_get(root, "model");
    const char *type = json_string_value(json_object_get(model, "type"));
    json_t *bf = json_object_get(model, "byte_fallback");
    json_t *im = json_object_get(model, "ignore_merges");
    bool is_bpe = type && strcmp(type, "BPE") == 0;
    bool is_llama3 = is_bpe && json_is_true(im) && !(bf ? json_is_true(bf) : true);
    if (is_llama3)
        return false;
    const char *dec = json_string_value(json_object_get(json_object_get(root, "decoder"), "type"));
    return is_bpe && json_is_true(bf) && dec && strcmp(dec, "Sequence") == 0;
}

/* The id -> text table over model.vocab then added_tokens (later entries win, as in a
 * Python dict inversion).  *n_ids = max id + 1; *n_distinct = distinct texts. */
struct idmap {
    const char **text;   /* borrowed from the JSON; NULL = hole */
    json_t **added;      /* added_tokens entry per id, or NULL */
    size_t n_ids, n_distinct, n_model;
    json_t *added_by_content; /* content -> added_tokens entry */
};

static void idmap_free(struct idmap *m)
{
    free(m->text);
    free(m->added);
    json_decref(m->added_by_content);
    memset(m, 0, sizeof *m);
}

int64_t qfs_bpe_json_entries(json_t *root)
{
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    return json_is_object(vocab) ? (int64_t)json_object_size(vocab) +
                                       (json_is_array(added) ? (int64_t)json_array_size(added) : 0)
                                 : 0;
}

/* bound: every id must be below it (the tables are bound entries long at most). */
static int idmap_build(json_t *root, const char *path, int64_t bound, struct idmap *m)
{
    memset(m, 0, sizeof *m);
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *added = json_object_get(root, "added_tokens");
    const char *key;
    json_t *val;
    size_t i;
    int64_t maxid = -1, id = 0;

    if (!json_is_object(vocab)) {
        qfs_err("%s: model.vocab is missing or not an object", path);
        return -EINVAL;
    }
    if (added && !json_is_array(added)) {
        qfs_err("%s: added_tokens is not an array", path);
        return -EINVAL;
    }
    json_object_foreach(vocab, key, val) {
        if (!json_int_value(val, &id) || id < 0 || id >= INT32_MAX) {
            qfs_err("%s: model.vocab[\"%s\"] is not a valid token id", path, key);
            return -EINVAL;
        }
        if (id >= bound) {
            qfs_err("%s: model.vocab[\"%s\"]: token id %" PRId64 " is not below %" PRId64
                    ", the vocabulary size", path, key, id, bound);
            return -EINVAL;
        }
        if (id > maxid)
            maxid = id;
    }
    json_array_foreach(added, i, val) {
        if (!json_is_object(val) || !json_is_string(json_object_get(val, "content")) ||
            !json_int_value(json_object_get(val, "id"), &id) || id < 0 || id >= INT32_MAX) {
            qfs_err("%s: added_tokens[%zu] has no valid id and content", path, i);
            return -EINVAL;
        }
        if (id >= bound) {
            qfs_err("%s: added_tokens[%zu]: token id %" PRId64 " is not below %" PRId64
                    ", the vocabulary size", path, i, id, bound);
            return -EINVAL;
        }
        if (id > maxid)
            maxid = id;
    }
    m->n_ids = (size_t)(maxid + 1);
    m->n_model = json_object_size(vocab);
    m->text = calloc(m->n_ids ? m->n_ids : 1, sizeof *m->text);
    m->added = calloc(m->n_ids ? m->n_ids : 1, sizeof *m->added);
    m->added_by_content = json_object();
    if (!m->text || !m->added || !m->added_by_content)
        goto nomem;
    json_object_foreach(vocab, key, val) {
        json_int_value(val, &id);
        m->text[id] = key;
    }
    m->n_distinct = m->n_model;
    json_array_foreach(added, i, val) {
        const char *c = json_string_value(json_object_get(val, "content"));
        json_int_value(json_object_get(val, "id"), &id);
        m->text[id] = c;
        m->added[id] = val;
        if (!json_object_get(vocab, c) && !json_object_get(m->added_by_content, c))
            m->n_distinct++;
        if (json_object_set(m->added_by_content, c, val))
            goto nomem;
    }
    return 0;
nomem:
    idmap_free(m);
    return -ENOMEM;
}

int qfs_bpe_json_vocab_gpt2(json_t *root, const char *path, int64_t vocab_size, struct qfs_vocab *out)
{
    struct idmap m;
    memset(out, 0, sizeof *out);
    int rc = idmap_build(root, path, vocab_size > 0 ? vocab_size : qfs_bpe_json_entries(root), &m);
    if (rc)
        return rc;
    if (vocab_size <= 0)
        vocab_size = (int64_t)m.n_distinct;
    if ((int64_t)m.n_ids > vocab_size) {
        qfs_err("%s: token id %zu is not below vocab_size %" PRId64, path, m.n_ids - 1, vocab_size);
        rc = -EINVAL;
        goto out;
    }
    rc = vocab_alloc(out, (size_t)vocab_size, false);
    if (rc)
        goto out;
    for (size_t i = 0; i < out->n; i++) {
        const char *t = i < m.n_ids ? m.text[i] : NULL;
        char pad[32];
        if (!t) {
            snprintf(pad, sizeof pad, "[PAD%zu]", i);
            out->text[i] = strdup(pad);
            out->types[i] = TT_UNUSED;
        } else if (json_object_get(m.added_by_content, t)) {
            /* an added token: its own entry, or (text collision) the one with that text */
            json_t *a = m.added[i] ? m.added[i] : json_object_get(m.added_by_content, t);
            if (json_is_true(json_object_get(a, "special")) || qfs_token_looks_special(t)) {
                out->text[i] = strdup(t);
                out->types[i] = TT_CONTROL;
            } else {
                /* pre-normalize user-defined spaces: U+2581 -> ' ' */
                out->text[i] = str_replace_all(t, "\xe2\x96\x81", " ");
                out->types[i] = TT_USER_DEFINED;
            }
        } else {
            out->text[i] = strdup(t);
            out->types[i] = TT_NORMAL;
        }
        if (!out->text[i]) {
            rc = -ENOMEM;
            qfs_vocab_free(out);
            goto out;
        }
    }
out:
    idmap_free(&m);
    return rc;
}

/* Add the id of special token text t (string or {"content": ...}) to ids. */
static void special_id_add(json_t *tok, const struct idmap *m, json_t *vocab, int64_t *ids, size_t *n, size_t cap)
{
    const char *t = json_is_string(tok) ? json_string_value(tok)
                                        : json_string_value(json_object_get(tok, "content"));
    if (!t || *n >= cap)
        return;
    int64_t id;
    json_t *a = json_object_get(m->added_by_content, t);
    if (a ? json_int_value(json_object_get(a, "id"), &id) : json_int_value(json_object_get(vocab, t), &id))
        ids[(*n)++] = id;
}

static bool id_in(int64_t id, const int64_t *ids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static bool is_byte_token(const char *t)
{
    static const char hex[] = "0123456789abcdefABCDEF";
    return strlen(t) == 6 && has_prefix(t, "<0x") && t[5] == '>' && t[3] && t[4] &&
           strchr(hex, t[3]) && strchr(hex, t[4]);
}

int qfs_bpe_json_vocab_llama_hf(json_t *root, const char *path, json_t *tok_config,
                                json_t *special_map, int64_t embd_rows, struct qfs_vocab *out)
{
    static const char *const named[] = { "bos_token", "eos_token", "unk_token", "sep_token",
                                         "pad_token", "cls_token", "mask_token" };
    json_t *vocab = json_object_get(json_object_get(root, "model"), "vocab");
    json_t *srcs[2] = { tok_config, special_map };
    struct idmap m;
    int64_t *special = NULL;
    size_t n_special = 0, cap = 0, n_added = 0;
    const int64_t entries = qfs_bpe_json_entries(root);

    memset(out, 0, sizeof *out);
    int rc = idmap_build(root, path, embd_rows > entries ? embd_rows : entries, &m);
    if (rc)
        return rc;
    /* all_special_ids: the named special tokens and additional_special_tokens */
    for (int s = 0; s < 2; s++) {
        json_t *extra = json_object_get(srcs[s], "additional_special_tokens");
        cap += sizeof named / sizeof *named + (json_is_array(extra) ? json_array_size(extra) : 0);
    }
    special = malloc((cap ? cap : 1) * sizeof *special);
    if (!special) {
        rc = -ENOMEM;
        goto out;
    }
    for (int s = 0; s < 2; s++) {
        if (!json_is_object(srcs[s]))
            continue;
        for (size_t k = 0; k < sizeof named / sizeof *named; k++)
            special_id_add(json_object_get(srcs[s], named[k]), &m, vocab, special, &n_special, cap);
        size_t i;
        json_t *v;
        json_array_foreach(json_object_get(srcs[s], "additional_special_tokens"), i, v)
            special_id_add(v, &m, vocab, special, &n_special, cap);
    }
    size_t base = m.n_model;
    for (size_t i = base; i < m.n_ids; i++)
        if (m.added[i])
            n_added++;
    rc = vocab_alloc(out, base + n_added, true);
    if (rc)
        goto out;
    size_t o = 0;
    for (size_t i = 0; i < base; i++, o++) {
        if (i >= m.n_ids || !m.text[i]) {
            qfs_err("%s: model.vocab has no token with id %zu", path, i);
            rc = -EINVAL;
            goto fail;
        }
        out->text[o] = strdup(m.text[i]);
        out->scores[o] = -1000.0f;
        out->types[o] = is_byte_token(m.text[i]) ? TT_BYTE
                        : id_in((int64_t)i, special, n_special) ? TT_CONTROL : TT_NORMAL;
        if (!out->text[o])
            goto nomem;
    }
    for (size_t i = base; i < m.n_ids; i++) {
        if (!m.added[i])
            continue;
        /* the text of an added token is special iff its vocab id is a special id */
        int64_t id = (int64_t)i;
        out->text[o] = strdup(m.text[i]);
        out->scores[o] = -1000.0f;
        out->types[o] = id_in(id, special, n_special) ? TT_CONTROL : TT_USER_DEFINED;
        if (!out->text[o])
            goto nomem;
        o++;
    }
    goto out;
nomem:
    rc = -ENOMEM;
fail:
    qfs_vocab_free(out);
out:
    free(special);
    idmap_free(&m);
    return rc;
}

void qfs_bpe_merges_free(char **merges, size_t n)
{
    if (merges)
        for (size_t i = 0; i < n; i++)
            free(merges[i]);
    free(merges);
}

/* Append part to dst at *o, spaces written as U+0120 (0xC4 0xA0). */
static void put_part(char *dst, size_t *o, const char *part)
{
    for (const char *p = part; *p; p++) {
        if (*p == ' ') {
            dst[(*o)++] = (char)0xC4;
            dst[(*o)++] = (char)0xA0;
        } else {
            dst[(*o)++] = *p;
        }
    }
}

static size_t part_len(const char *part)
{
    size_t n = 0;
    for (const char *p = part; *p; p++)
        n += *p == ' ' ? 2 : 1;
    return n;
}

int qfs_bpe_json_merges(json_t *root, const char *path, char ***merges, size_t *n)
{
    json_t *arr = json_object_get(json_object_get(root, "model"), "merges");
    size_t cnt = json_is_array(arr) ? json_array_size(arr) : 0;
    *merges = NULL;
    *n = 0;
    if (cnt == 0)
        return 0;
    json_t *first = json_array_get(arr, 0);
    bool str_form = json_is_string(first);
    if (!str_form && !(json_is_array(first) && json_array_size(first) == 2 &&
                       json_is_string(json_array_get(first, 0)))) {
        qfs_err("%s: unknown tokenizer merges format", path);
        return -EINVAL;
    }
    char **out = calloc(cnt, sizeof *out);
    if (!out)
        return -ENOMEM;
    size_t i;
    json_t *e;
    json_array_foreach(arr, i, e) {
        if (str_form) {
            if (!json_is_string(e))
                goto bad;
            out[i] = strdup(json_string_value(e));
        } else {
            const char *a = json_string_value(json_array_get(e, 0));
            const char *b = json_string_value(json_array_get(e, 1));
            if (!json_is_array(e) || json_array_size(e) != 2 || !a || !b)
                goto bad;
            size_t len = part_len(a) + 1 + part_len(b), o = 0;
            out[i] = malloc(len + 1);
            if (out[i]) {
                put_part(out[i], &o, a);
                out[i][o++] = ' ';
                put_part(out[i], &o, b);
                out[i][o] = 0;
            }
        }
        if (!out[i]) {
            qfs_bpe_merges_free(out, cnt);
            return -ENOMEM;
        }
    }
    *merges = out;
    *n = cnt;
    return 0;
bad:
    qfs_err("%s: model.merges[%zu] is not in the form of merges[0]", path, i);
    qfs_bpe_merges_free(out, cnt);
    return -EINVAL;
}

/* The pre-tokenizer name.  THIS IS WHERE WE DIFFER FROM THE CONVERTER: it runs the HF
 * tokenizer on a test string and looks the sha256 of the token ids up in a generated
 * table (get_vocab_base_pre); we cannot run the HF tokenizer, so we recognise the
 * pre_tokenizer's split regex instead.  regex NULL = plain GPT-2 ByteLevel (use_regex
 * true, no Split).  An unknown pre-tokenizer gives NULL; the caller writes "default". */
static const struct {
    const char *regex;
    const char *name;
} pre_table[] = {
    { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}|"
      " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2" },
    { "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}|"
      " ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe" },
    { NULL, "gpt-2" },
};

/* Collect the Split regex (at most one) and whether a ByteLevel step splits by itself. */
static bool pre_scan(json_t *p, const char **regex, bool *bytelevel_regex, int depth)
{
    const char *type = json_string_value(json_object_get(p, "type"));
    if (!type || depth > 4)
        return false;
    if (strcmp(type, "Sequence") == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(p, "pretokenizers"), i, e)
            if (!pre_scan(e, regex, bytelevel_regex, depth + 1))
                return false;
        return true;
    }
    if (strcmp(type, "ByteLevel") == 0) {
        json_t *ur = json_object_get(p, "use_regex");
        if (!ur || json_is_true(ur))
            *bytelevel_regex = true;
        return true;
    }
    if (strcmp(type, "Split") == 0 && !*regex) {
        *regex = json_string_value(json_object_get(json_object_get(p, "pattern"), "Regex"));
        return *regex != NULL;
    }
    return false;
}

const char *qfs_bpe_json_pre(json_t *root)
{
    const char *regex = NULL;
    bool bl_regex = false;
    if (!pre_scan(json_object_get(root, "pre_tokenizer"), &regex, &bl_regex, 0))
        return NULL;
    for (size_t i = 0; i < sizeof pre_table / sizeof *pre_table; i++) {
        if (pre_table[i].regex ? (regex && !bl_regex && strcmp(regex, pre_table[i].regex) == 0)
                               : (!regex && bl_regex))
            return pre_table[i].name;
    }
    return NULL;
}
