/* tokenizer.ggml.* metadata, reproducing llama.cpp's convert_hf_to_gguf.py
 * (LlamaModel / Qwen2Model set_vocab, _set_vocab_sentencepiece, _set_vocab_llama_hf,
 * _set_vocab_gpt2) and gguf-py's SpecialVocab, key for key and in the same order.
 *
 * Order of the keys written:
 *  1. (llama, mistral) tokenizer.ggml.add_space_prefix when tokenizer_config.json has
 *     add_prefix_space.
 *  2. tokenizer.ggml.model, .pre, .tokens, (.scores), .token_type.
 *  3. SpecialVocab: .merges (gpt2 path), the special token ids in the order they were
 *     found (tokenizer_config.json via tokenizer.json's added_tokens first, then
 *     config.json), add_{bos,sep,eos}_token in the order they were found (tokenizer.json's
 *     post_processor first, then tokenizer_config.json), chat template(s), normalizer flags.
 *  4. CodeLlama (vocab 32016): eot id; vocab 49152: add_bos_token false.
 * Known differences, all documented where they happen: the BPE pre-tokenizer name
 * (bpe_json.c), chat template names in first-seen order (the converter's set order is
 * random), and re-set keys move to the end of the list (gguf-py keeps their place). */
#include "tokenizer.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "arch.h"
#include "bpe_json.h"
#include "sentencepiece.h"
#include "util/json_file.h"
#include "util/log.h"

#define MAX_TYPES 12 /* the fixed set of special token kinds below */

/* Python truthiness of a JSON value (NULL = absent). */
static bool truthy(const json_t *j)
{
    switch (j ? json_typeof(j) : JSON_NULL) {
    case JSON_OBJECT: return json_object_size(j) > 0;
    case JSON_ARRAY: return json_array_size(j) > 0;
    case JSON_STRING: return json_string_length(j) > 0;
    case JSON_INTEGER: return json_integer_value(j) != 0;
    case JSON_REAL: return json_real_value(j) != 0.0;
    case JSON_TRUE: return true;
    default: return false;
    }
}

/* Python ==, for the values these files hold. */
static bool jeq(const json_t *a, const json_t *b)
{
    if (!a || json_is_null(a))
        return !b || json_is_null(b);
    return b && json_equal((json_t *)a, (json_t *)b);
}

/* Replace an owned reference. */
static void jset(json_t **var, json_t *val)
{
    json_incref(val);
    json_decref(*var);
    *var = val;
}

static bool is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static char *path_join(const char *dir, const char *name)
{
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* Load dir/name as JSON if it is a file: 0 with *out NULL when absent. */
static int load_opt_json(const char *dir, const char *name, json_t **out, bool need_object)
{
    char *p = path_join(dir, name);
    *out = NULL;
    if (!p)
        return -ENOMEM;
    int rc = 0;
    if (is_file(p)) {
        rc = qfs_json_load(p, strcmp(name, "tokenizer.json") ? QFS_JSON_MAX_CONFIG
                                                             : QFS_JSON_MAX_TOKENIZER, 0, out);
        if (rc < 0) {
            *out = NULL;
        } else if (need_object && !json_is_object(*out)) {
            qfs_err("%s: top level is not a JSON object", p);
            json_decref(*out);
            *out = NULL;
            rc = -EINVAL;
        }
    }
    free(p);
    return rc;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        n += fread(buf + n, 1, cap - 1 - n, f);
        if (n < cap - 1)
            break;
        char *nb = realloc(buf, cap * 2);
        if (!nb) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = nb;
        cap *= 2;
    }
    if (buf && ferror(f)) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf)
        buf[n] = 0;
    return buf;
}

/* ---- SpecialVocab ---------------------------------------------------------------- */

struct special_vocab {
    const char *types[MAX_TYPES];
    size_t n_types;
    struct { const char *typ; int64_t id; } ids[MAX_TYPES];
    size_t n_ids;
    struct { const char *typ; bool val; } add[MAX_TYPES];
    size_t n_add;
    int64_t n_vocab; /* -1: no limit */
    bool load_merges;
    char **merges;
    size_t n_merges;
    json_t *chat_template; /* string or array, owned; NULL if none */
    int norm_lower, norm_strip; /* -1 unset */
};

static bool sv_has_type(const struct special_vocab *sv, const char *typ)
{
    for (size_t i = 0; i < sv->n_types; i++)
        if (strcmp(sv->types[i], typ) == 0)
            return true;
    return false;
}

static void sv_add_type(struct special_vocab *sv, const char *typ)
{
    if (sv->n_types < MAX_TYPES)
        sv->types[sv->n_types++] = typ;
}

/* add_special_token[typ] = val (an existing key keeps its place, as in a dict) */
static void sv_set_add(struct special_vocab *sv, const char *typ, bool val)
{
    for (size_t i = 0; i < sv->n_add; i++)
        if (strcmp(sv->add[i].typ, typ) == 0) {
            sv->add[i].val = val;
            return;
        }
    if (sv->n_add < MAX_TYPES) {
        sv->add[sv->n_add].typ = typ;
        sv->add[sv->n_add++].val = val;
    }
}

/* _set_special_token: ints only (a JSON bool counts, as in Python), first one wins. */
static int sv_set_id(struct special_vocab *sv, const char *typ, const json_t *tid, const char *src)
{
    int64_t id;
    if (json_is_integer(tid))
        id = json_integer_value(tid);
    else if (json_is_boolean(tid))
        id = json_is_true(tid);
    else
        return 0;
    if (id < 0 || id > UINT32_MAX) {
        qfs_err("%s: invalid value for special token type %s: %" PRId64, src, typ, id);
        return -EINVAL;
    }
    if (sv->n_vocab >= 0 && id >= sv->n_vocab) {
        qfs_warn("%s: special token type %s, id %" PRId64 " out of range, must be under %" PRId64
                 " - skipping", src, typ, id, sv->n_vocab);
        return 0;
    }
    for (size_t i = 0; i < sv->n_ids; i++)
        if (strcmp(sv->ids[i].typ, typ) == 0)
            return 0;
    if (sv->n_ids < MAX_TYPES) {
        sv->ids[sv->n_ids].typ = typ;
        sv->ids[sv->n_ids++].id = id;
    }
    return 0;
}

static void sv_parse_normalizer(struct special_vocab *sv, json_t *n, int depth)
{
    const char *t = json_string_value(json_object_get(n, "type"));
    if (!t || depth > 8)
        return;
    if (strcmp(t, "Lowercase") == 0) {
        sv->norm_lower = 1;
    } else if (strcmp(t, "StripAccents") == 0) {
        sv->norm_strip = 1;
    } else if (strcmp(t, "BertNormalizer") == 0) {
        json_t *v;
        if ((v = json_object_get(n, "lowercase")))
            sv->norm_lower = truthy(v);
        if ((v = json_object_get(n, "strip_accents")))
            sv->norm_strip = json_is_null(v) ? -1 : truthy(v);
    } else if (strcmp(t, "Sequence") == 0) {
        size_t i;
        json_t *e;
        json_array_foreach(json_object_get(n, "normalizers"), i, e)
            sv_parse_normalizer(sv, e, depth + 1);
    }
}

static json_t *special_token_id(json_t *tmpl_item)
{
    return json_object_get(json_object_get(tmpl_item, "SpecialToken"), "id");
}

static json_t *sequence_id(json_t *tmpl_item)
{
    return json_object_get(json_object_get(tmpl_item, "Sequence"), "id");
}

static bool jstr_is(const json_t *j, const char *s)
{
    return json_is_string(j) && strcmp(json_string_value(j), s) == 0;
}

/* The post_processor part of _try_load_from_tokenizer_json. tc may be NULL. */
static int sv_post_processor(struct special_vocab *sv, json_t *tokenizer, json_t *tc)
{
    json_t *bos = NULL, *cls = NULL, *eos = NULL, *sep = NULL; /* owned */
    bool tc_ok = truthy(tc);
    int rc = 0;

    jset(&bos, json_object_get(tc, "bos_token"));
    jset(&cls, json_object_get(tc, "cls_token"));
    jset(&eos, json_object_get(tc, "eos_token"));
    jset(&sep, json_object_get(tc, "sep_token"));
    if (!truthy(bos) && truthy(cls) && tc_ok) {
        jset(&bos, cls);
        json_object_set(tc, "bos_token", bos);
    }
    if (!truthy(eos) && truthy(sep) && tc_ok) {
        jset(&eos, sep);
        json_object_set(tc, "eos_token", eos);
    }
    json_t *pp = json_object_get(tokenizer, "post_processor");
    if (!truthy(pp) || !json_is_object(pp))
        goto out;
    json_t *procs = json_object_get(pp, "processors");
    json_t *single_list = NULL;
    if (!procs) {
        single_list = json_array();
        if (!single_list) {
            rc = -ENOMEM;
            goto out;
        }
        json_array_append(single_list, pp);
        procs = single_list;
    }
    size_t pi;
    json_t *proc;
    json_array_foreach(procs, pi, proc) {
        const char *ptype = json_string_value(json_object_get(proc, "type"));
        if (!ptype)
            continue;
        if (strcmp(ptype, "RobertaProcessing") == 0) {
            sv_set_add(sv, "bos", true);
            sv_set_add(sv, "eos", true);
            sv_set_add(sv, "sep", true);
            if (!truthy(cls) && tc_ok) {
                json_t *c = json_object_get(proc, "cls");
                jset(&cls, c ? json_array_get(c, 0) : bos);
                json_object_set(tc, "cls_token", cls ? cls : json_null());
            }
            if (!truthy(sep) && tc_ok) {
                json_t *s = json_object_get(proc, "sep");
                jset(&sep, s ? json_array_get(s, 0) : eos);
                json_object_set(tc, "sep_token", sep ? sep : json_null());
            }
            continue;
        }
        if (strcmp(ptype, "TemplateProcessing") != 0)
            continue;
        /* Crude parsing of TemplateProcessing, exactly as gguf-py does it. */
        json_t *single = json_object_get(proc, "single");
        json_t *pair = json_object_get(proc, "pair");
        json_t *first = NULL, *last = NULL; /* borrowed from the tokenizer.json tree */
        size_t ns = json_array_size(single);
        if (ns > 1) {
            first = special_token_id(json_array_get(single, 0));
            if (truthy(first)) {
                if (!tc_ok) {
                    jset(&bos, first);
                } else if (!jeq(first, bos) && !jeq(first, cls)) {
                    if (!truthy(bos)) {
                        jset(&bos, first);
                        json_object_set(tc, "bos_token", first);
                    }
                    if (!truthy(cls)) {
                        jset(&cls, first);
                        json_object_set(tc, "cls_token", first);
                    }
                }
                sv_set_add(sv, "bos", jeq(first, bos) || jeq(first, cls));
                if (!jeq(first, bos) && !jeq(first, cls))
                    qfs_warn("tokenizer.json: unknown leading special token in TemplateProcessing<single>");
            } else {
                first = NULL;
            }
            last = special_token_id(json_array_get(single, ns - 1));
            if (truthy(last)) {
                if (!tc_ok) {
                    jset(&eos, last);
                } else if (!jeq(last, eos)) {
                    if (!sv_has_type(sv, "eot")) {
                        sv_add_type(sv, "eot");
                        json_object_set(tc, "eot_token", eos ? eos : json_null());
                    } else if (!sv_has_type(sv, "eom")) {
                        sv_add_type(sv, "eom");
                        json_object_set(tc, "eom_token", eos ? eos : json_null());
                    } else {
                        qfs_warn("tokenizer.json: overriding EOS token without EOT/EOM fallback");
                    }
                    jset(&eos, last);
                    json_object_set(tc, "eos_token", last);
                }
                sv_set_add(sv, "eos", jeq(last, eos));
            } else {
                last = NULL;
            }
        }
        size_t np = json_array_size(pair);
        if (np > 0) {
            size_t start = first && jeq(special_token_id(json_array_get(pair, 0)), first) ? 1 : 0;
            size_t stop = last && jeq(special_token_id(json_array_get(pair, np - 1)), last) ? np - 1 : np;
            if ((first && start == 0) || (last && stop == np))
                qfs_warn("tokenizer.json: TemplateProcessing<single> leading/trailing special tokens "
                         "do not match TemplateProcessing<pair>");
            if (stop > start) {
                json_t *a = sequence_id(json_array_get(pair, start));
                json_t *b = sequence_id(json_array_get(pair, stop - 1));
                if (!jstr_is(a, "A") || !jstr_is(b, "B"))
                    qfs_warn("tokenizer.json: unknown sequence in TemplateProcessing<pair>");
                /* A [sep] [eos] B */
                if (jstr_is(a, "A") && jstr_is(b, "B") && stop - start > 2) {
                    size_t m0 = start + 1, mlen = stop - start - 2;
                    bool add_sep = false;
                    json_t *entry = special_token_id(json_array_get(pair, m0));
                    if (truthy(entry)) {
                        if ((jeq(entry, sep) || jeq(entry, eos)) && !last)
                            add_sep = true;
                    }
                    if (mlen == 2) {
                        entry = special_token_id(json_array_get(pair, m0 + 1));
                        if (truthy(entry) && (jeq(entry, sep) || jeq(entry, eos)))
                            add_sep = true;
                    }
                    sv_set_add(sv, "sep", add_sep);
                    if (add_sep && !truthy(sep) && tc_ok)
                        json_object_set(tc, "sep_token", eos ? eos : json_null());
                }
            }
        }
    }
    json_decref(single_list);
out:
    json_decref(bos);
    json_decref(cls);
    json_decref(eos);
    json_decref(sep);
    return rc;
}

/* Collect the templates of dir/additional_chat_templates/ *.jinja, sorted by name. */
static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static json_t *chat_template_from_files(const char *dir)
{
    char *p = path_join(dir, "chat_template.jinja");
    json_t *res = NULL;
    if (!p)
        return NULL;
    if (is_file(p)) {
        char *txt = read_text(p);
        if (!txt) {
            qfs_warn("%s: cannot read", p);
            goto out;
        }
        res = json_string(txt);
        free(txt);
        char *adir = path_join(dir, "additional_chat_templates");
        DIR *d = adir ? opendir(adir) : NULL;
        char **names = NULL;
        size_t n = 0, cap = 0;
        struct dirent *de;
        while (d && (de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l <= 6 || strcmp(de->d_name + l - 6, ".jinja") != 0)
                continue;
            if (n == cap) {
                cap = cap ? cap * 2 : 8;
                char **nn = realloc(names, cap * sizeof *nn);
                if (!nn)
                    break;
                names = nn;
            }
            if ((names[n] = strdup(de->d_name)))
                n++;
        }
        if (d)
            closedir(d);
        if (n > 0 && res) {
            qsort(names, n, sizeof *names, cmp_str);
            json_t *list = json_array();
            json_array_append_new(list, json_pack("{s:s,s:O}", "name", "default", "template", res));
            for (size_t i = 0; i < n; i++) {
                char *fp = path_join(adir, names[i]);
                char *t = fp ? read_text(fp) : NULL;
                names[i][strlen(names[i]) - 6] = 0;
                if (t)
                    json_array_append_new(list, json_pack("{s:s,s:s}", "name", names[i], "template", t));
                free(t);
                free(fp);
            }
            json_decref(res);
            res = list;
        }
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        free(adir);
        goto out;
    }
    free(p);
    p = path_join(dir, "chat_template.json");
    if (p && is_file(p)) {
        json_t *j = NULL;
        if (qfs_json_load(p, QFS_JSON_MAX_CONFIG, 0, &j) < 0)
            qfs_warn("%s: ignored (see above)", p);
        res = json_incref(json_object_get(j, "chat_template"));
        json_decref(j);
    }
out:
    free(p);
    return res;
}

static int sv_load(struct special_vocab *sv, const char *dir, json_t *tokenizer)
{
    json_t *tc = NULL, *config = NULL;
    json_t *added_tokens = NULL;
    int rc;

    /* _try_load_from_tokenizer_json */
    if (tokenizer) {
        if (sv->load_merges) {
            char *tj = path_join(dir, "tokenizer.json");
            rc = tj ? qfs_bpe_json_merges(tokenizer, tj, &sv->merges, &sv->n_merges) : -ENOMEM;
            free(tj);
            if (rc)
                return rc;
        }
        json_t *norm = json_object_get(tokenizer, "normalizer");
        if (truthy(norm))
            sv_parse_normalizer(sv, norm, 0);
        added_tokens = json_object_get(tokenizer, "added_tokens");
    }
    rc = load_opt_json(dir, "tokenizer_config.json", &tc, false);
    if (rc)
        goto out;
    if (tc && !json_is_object(tc)) {
        qfs_err("%s/tokenizer_config.json: top level is not a JSON object", dir);
        rc = -EINVAL;
        goto out;
    }
    if (tokenizer) {
        rc = sv_post_processor(sv, tokenizer, tc);
        if (rc)
            goto out;
    }
    if (truthy(tc)) {
        json_t *alt = chat_template_from_files(dir);
        json_t *ct = json_object_get(tc, "chat_template");
        if (!ct) /* tokenizer_config.get('chat_template', alt): a null there wins */
            ct = alt;
        if (!ct || json_is_null(ct) || json_is_string(ct) || json_is_array(ct))
            jset(&sv->chat_template, json_is_null(ct) ? NULL : ct);
        else
            qfs_warn("%s/tokenizer_config.json: bad type for chat_template - ignoring", dir);
        json_decref(alt);
        for (size_t t = 0; t < sv->n_types; t++) {
            const char *typ = sv->types[t];
            char key[32];
            snprintf(key, sizeof key, "add_%s_token", typ);
            json_t *ae = json_object_get(tc, key);
            if (json_is_boolean(ae))
                sv_set_add(sv, typ, json_is_true(ae));
            snprintf(key, sizeof key, "%s_token", typ);
            json_t *entry = json_object_get(tc, key);
            const char *content = json_is_string(entry) ? json_string_value(entry)
                                  : json_string_value(json_object_get(entry, "content"));
            if (!content)
                continue;
            size_t i;
            json_t *at;
            json_array_foreach(added_tokens, i, at) {
                if (jstr_is(json_object_get(at, "content"), content)) {
                    rc = sv_set_id(sv, typ, json_object_get(at, "id"), "tokenizer.json");
                    if (rc)
                        goto out;
                    break;
                }
            }
        }
    }
    /* _try_load_from_config_json */
    rc = load_opt_json(dir, "config.json", &config, true);
    if (rc)
        goto out;
    for (size_t t = 0; config && t < sv->n_types; t++) {
        char key[32];
        snprintf(key, sizeof key, "%s_token_id", sv->types[t]);
        json_t *id = json_object_get(config, key);
        if ((!id || json_is_null(id)) && json_object_get(config, "text_config"))
            id = json_object_get(json_object_get(config, "text_config"), key);
        rc = sv_set_id(sv, sv->types[t], id, "config.json");
        if (rc)
            goto out;
    }
    /* merges.txt when tokenizer.json had none */
    if (sv->load_merges && sv->n_merges == 0) {
        char *mp = path_join(dir, "merges.txt");
        char *txt = mp && is_file(mp) ? read_text(mp) : NULL;
        size_t cap = 0;
        bool first_line = true;
        for (char *line = txt, *next; line && *line; line = next) {
            next = strchr(line, '\n');
            if (next)
                *next++ = 0;
            else
                next = line + strlen(line);
            bool comment = first_line && strspn(line, " \t\r\f\v") < strlen(line) &&
                           line[strspn(line, " \t\r\f\v")] == '#';
            first_line = false;
            if (comment)
                continue;
            char *a = strtok(line, " \t\r\f\v"), *b = a ? strtok(NULL, " \t\r\f\v") : NULL;
            if (!a)
                continue;
            if (!b || strtok(NULL, " \t\r\f\v")) {
                qfs_warn("%s: entry malformed, ignoring", mp);
                continue;
            }
            if (sv->n_merges == cap) {
                cap = cap ? cap * 2 : 1024;
                char **nm = realloc(sv->merges, cap * sizeof *nm);
                if (!nm)
                    break;
                sv->merges = nm;
            }
            size_t l = strlen(a) + strlen(b) + 2;
            if ((sv->merges[sv->n_merges] = malloc(l))) {
                snprintf(sv->merges[sv->n_merges], l, "%s %s", a, b);
                sv->n_merges++;
            }
        }
        free(txt);
        free(mp);
    }
out:
    json_decref(tc);
    json_decref(config);
    return rc;
}

static void sv_init(struct special_vocab *sv, int64_t n_vocab, bool load_merges,
                    const char *const *types, size_t n_types)
{
    memset(sv, 0, sizeof *sv);
    sv->n_vocab = n_vocab;
    sv->load_merges = load_merges;
    sv->norm_lower = sv->norm_strip = -1;
    for (size_t i = 0; i < n_types; i++)
        sv_add_type(sv, types[i]);
}

static void sv_free(struct special_vocab *sv)
{
    qfs_bpe_merges_free(sv->merges, sv->n_merges);
    json_decref(sv->chat_template);
    memset(sv, 0, sizeof *sv);
}

static const char *const default_types[] = { "bos", "eos", "unk", "sep", "pad", "cls", "mask" };

/* GGUF keys of the id kinds gguf-py has a writer for; others are skipped as there. */
static const struct { const char *typ, *key; } id_keys[] = {
    { "bos", "tokenizer.ggml.bos_token_id" },   { "eos", "tokenizer.ggml.eos_token_id" },
    { "unk", "tokenizer.ggml.unknown_token_id" }, { "sep", "tokenizer.ggml.seperator_token_id" },
    { "pad", "tokenizer.ggml.padding_token_id" }, { "mask", "tokenizer.ggml.mask_token_id" },
    { "eot", "tokenizer.ggml.eot_token_id" },   { "eom", "tokenizer.ggml.eom_token_id" },
};
static const struct { const char *typ, *key; } add_keys[] = {
    { "bos", "tokenizer.ggml.add_bos_token" }, { "eos", "tokenizer.ggml.add_eos_token" },
    { "sep", "tokenizer.ggml.add_sep_token" },
};

/* With keep_existing, keys already in kv are left alone (a re-add in gguf-py keeps
 * the key's place, and the values are the same). */
#define SKIP_IF(k) if (keep_existing && qfs_kvs_has(kv, (k))) continue

static int sv_add_to_gguf(const struct special_vocab *sv, struct qfs_kvs *kv, bool keep_existing)
{
    int rc = 0;
    if (sv->n_merges > 0 && !(keep_existing && qfs_kvs_has(kv, "tokenizer.ggml.merges")))
        rc = qfs_kvs_set_arr_str(kv, "tokenizer.ggml.merges", (const char *const *)sv->merges, sv->n_merges);
    else if (sv->load_merges && sv->n_merges == 0)
        qfs_warn("tokenizer: no merges found, output may be non-functional");
    for (size_t i = 0; !rc && i < sv->n_ids; i++) {
        const char *key = NULL;
        for (size_t k = 0; k < sizeof id_keys / sizeof *id_keys; k++)
            if (strcmp(id_keys[k].typ, sv->ids[i].typ) == 0)
                key = id_keys[k].key;
        if (!key) {
            qfs_debug("tokenizer: no key for special token type %s - skipping", sv->ids[i].typ);
            continue;
        }
        SKIP_IF(key);
        rc = qfs_kvs_set_u32(kv, key, (uint32_t)sv->ids[i].id);
    }
    for (size_t i = 0; !rc && i < sv->n_add; i++) {
        const char *key = NULL;
        for (size_t k = 0; k < sizeof add_keys / sizeof *add_keys; k++)
            if (strcmp(add_keys[k].typ, sv->add[i].typ) == 0)
                key = add_keys[k].key;
        if (!key)
            continue;
        SKIP_IF(key);
        rc = qfs_kvs_set_bool(kv, key, sv->add[i].val);
    }
    if (!rc && json_is_string(sv->chat_template)) {
        if (!(keep_existing && qfs_kvs_has(kv, "tokenizer.chat_template")))
            rc = qfs_kvs_set_str(kv, "tokenizer.chat_template", json_string_value(sv->chat_template));
    } else if (!rc && json_is_array(sv->chat_template)) {
        /* named templates; the converter writes the name list in Python set order
         * (random per run); we keep first-seen order */
        size_t cap = json_array_size(sv->chat_template) + 1, n_names = 0, i;
        char **names = calloc(cap, sizeof *names); /* cleaned, distinct */
        json_t *choice, *def = NULL;
        if (!names)
            return -ENOMEM;
        json_array_foreach(sv->chat_template, i, choice) {
            const char *nm = json_string_value(json_object_get(choice, "name"));
            json_t *tmpl = json_object_get(choice, "template");
            if (!nm || !*nm || !tmpl || json_is_null(tmpl))
                continue;
            char *clean = strdup(nm);
            if (!clean) {
                rc = -ENOMEM;
                break;
            }
            for (char *c = clean; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')))
                    *c = '_';
            bool keep = false;
            if (!json_is_string(tmpl)) {
                qfs_warn("tokenizer: chat template %s is not a string - ignoring", clean);
            } else if (strcmp(clean, "default") == 0) {
                def = tmpl;
            } else {
                char *key = malloc(strlen(clean) + 32);
                if (!key) {
                    free(clean);
                    rc = -ENOMEM;
                    break;
                }
                sprintf(key, "tokenizer.chat_template.%s", clean);
                if (!(keep_existing && qfs_kvs_has(kv, key)))
                    rc = qfs_kvs_set_str(kv, key, json_string_value(tmpl));
                free(key);
                keep = true;
                for (size_t k = 0; k < n_names; k++)
                    keep = keep && strcmp(names[k], clean) != 0;
            }
            if (keep)
                names[n_names++] = clean;
            else
                free(clean);
            if (rc)
                break;
        }
        if (!rc && n_names > 0 && !(keep_existing && qfs_kvs_has(kv, "tokenizer.chat_templates")))
            rc = qfs_kvs_set_arr_str(kv, "tokenizer.chat_templates", (const char *const *)names, n_names);
        for (size_t k = 0; k < n_names; k++)
            free(names[k]);
        free(names);
        if (!rc && def && !(keep_existing && qfs_kvs_has(kv, "tokenizer.chat_template")))
            rc = qfs_kvs_set_str(kv, "tokenizer.chat_template", json_string_value(def));
    }
    if (!rc && sv->norm_lower >= 0 && !(keep_existing && qfs_kvs_has(kv, "tokenizer.ggml.normalizer.lowercase")))
        rc = qfs_kvs_set_bool(kv, "tokenizer.ggml.normalizer.lowercase", sv->norm_lower);
    if (!rc && sv->norm_strip >= 0 && !(keep_existing && qfs_kvs_has(kv, "tokenizer.ggml.normalizer.strip_accents")))
        rc = qfs_kvs_set_bool(kv, "tokenizer.ggml.normalizer.strip_accents", sv->norm_strip);
    return rc;
}

/* SpecialVocab(dir, ...).add_to_gguf(kv) */
static int special_vocab_write(struct qfs_kvs *kv, const char *dir, json_t *tokenizer, int64_t n_vocab,
                               bool load_merges)
{
    struct special_vocab sv;
    sv_init(&sv, n_vocab, load_merges, default_types, sizeof default_types / sizeof *default_types);
    int rc = sv_load(&sv, dir, tokenizer);
    if (!rc)
        rc = sv_add_to_gguf(&sv, kv, false);
    sv_free(&sv);
    return rc;
}

/* ---- token lists ------------------------------------------------------------------- */

static int write_vocab(struct qfs_kvs *kv, const char *model, const char *pre, const struct qfs_vocab *v)
{
    int rc = qfs_kvs_set_str(kv, "tokenizer.ggml.model", model);
    if (!rc)
        rc = qfs_kvs_set_str(kv, "tokenizer.ggml.pre", pre);
    if (!rc && v->n > 0)
        rc = qfs_kvs_set_arr_str(kv, "tokenizer.ggml.tokens", (const char *const *)v->text, v->n);
    if (!rc && v->n > 0 && v->scores)
        rc = qfs_kvs_set_arr_f32(kv, "tokenizer.ggml.scores", v->scores, v->n);
    if (!rc && v->n > 0)
        rc = qfs_kvs_set_arr_i32(kv, "tokenizer.ggml.token_type", v->types, v->n);
    return rc;
}

static int set_token(struct qfs_vocab *v, size_t id, const char *text, float score, int32_t type)
{
    char *t = strdup(text);
    if (!t)
        return -ENOMEM;
    free(v->text[id]);
    v->text[id] = t;
    v->scores[id] = score;
    v->types[id] = type;
    return 0;
}

/* Parse a Python int() key such as "32000"; false when it is not one. */
static bool parse_id(const char *s, int64_t *out)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    while (*end == ' ' || *end == '\t' || *end == '\n')
        end++;
    if (errno || end == s || *end)
        return false;
    *out = v;
    return true;
}

/* Phi3MiniModel.set_vocab, last step: tokenizer.json's added_tokens, if the file exists. */
static int phi3_added_tokens(const char *dir, struct qfs_vocab *v)
{
    json_t *tj = NULL;
    int rc = load_opt_json(dir, "tokenizer.json", &tj, true);
    if (rc || !tj)
        return rc;
    json_t *added = json_object_get(tj, "added_tokens");
    size_t i;
    json_t *e;
    json_array_foreach(added, i, e) {
        json_t *jid = json_object_get(e, "id");
        const char *content = json_string_value(json_object_get(e, "content"));
        if (!json_is_integer(jid) || !content) {
            qfs_err("%s/tokenizer.json: added token %zu is malformed", dir, i);
            rc = -EINVAL;
            break;
        }
        const json_int_t id = json_integer_value(jid);
        if (id < 0 || (uint64_t)id >= v->n) {
            qfs_warn("%s/tokenizer.json: ignore token %lld: id is out of range", dir, (long long)id);
            continue;
        }
        rc = set_token(v, (size_t)id, content, -1000.0f,
                       truthy(json_object_get(e, "special")) ? QFS_SP_CONTROL : QFS_SP_USER_DEFINED);
        if (rc)
            break;
    }
    json_decref(tj);
    return rc;
}

/* config.json's vocab_size (the SentencePiece vocabulary is padded to it with [PAD<i>]
 * tokens, the GPT-2 one fills its holes up to it) must be backed by the model: at most
 * max(embd_rows, n_file), the token embedding's rows (embd_rows <= 0: unknown) or the
 * tokens the tokenizer file `file` and its companions hold.  0 or -EINVAL (logged). */
static int check_vocab_size(const char *dir, int64_t vocab, int64_t embd_rows, int64_t n_file,
                            const char *file)
{
    if (vocab <= n_file || (embd_rows > 0 && vocab <= embd_rows))
        return 0;
    if (embd_rows > 0)
        qfs_err("%s/config.json: vocab_size %" PRId64 " is more than the %" PRId64 " rows of "
                "token_embd.weight and the %" PRId64 " tokens of %s", dir, vocab, embd_rows,
                n_file, file);
    else
        qfs_err("%s/config.json: vocab_size %" PRId64 " is more than the %" PRId64
                " tokens of %s", dir, vocab, n_file, file);
    return -EINVAL;
}

/* _create_vocab_sentencepiece; phi3: Phi3MiniModel.set_vocab's own reading of the same
 * files (added_tokens_decoder: USER_DEFINED unless "special", no look-alike test, no space
 * normalisation; then tokenizer.json's added tokens the same way). */
static int vocab_sentencepiece(const char *dir, const char *sp_path, int64_t cfg_vocab,
                               int64_t embd_rows, bool phi3, struct qfs_vocab *v)
{
    struct qfs_sp_model sp;
    json_t *added = NULL, *tc = NULL;
    char pad[32];
    memset(v, 0, sizeof *v);
    int rc = qfs_sp_load(sp_path, &sp);
    if (rc) {
        if (rc == -ENOENT)
            qfs_err("%s: no such file", sp_path);
        return rc;
    }
    if ((rc = load_opt_json(dir, "added_tokens.json", &added, true)) ||
        (rc = load_opt_json(dir, "tokenizer_config.json", &tc, true)))
        goto out;
    json_t *atd = json_object_get(tc, "added_tokens_decoder");
    const int64_t n_file = (int64_t)sp.n_pieces + (int64_t)json_object_size(added) +
                           (int64_t)json_object_size(atd);
    int64_t vs = cfg_vocab > 0 ? cfg_vocab : (int64_t)sp.n_pieces;
    if ((rc = check_vocab_size(dir, vs, embd_rows, n_file, "tokenizer.model")))
        goto out;
    v->n = (size_t)vs;
    v->text = calloc(v->n, sizeof *v->text);
    v->scores = malloc(v->n * sizeof *v->scores);
    v->types = malloc(v->n * sizeof *v->types);
    if (!v->text || !v->scores || !v->types)
        goto nomem;
    for (size_t i = 0; i < v->n; i++) {
        snprintf(pad, sizeof pad, "[PAD%zu]", i);
        if (!(v->text[i] = strdup(pad)))
            goto nomem;
        v->scores[i] = -10000.0f;
        v->types[i] = QFS_SP_UNUSED;
    }
    for (size_t i = 0; i < sp.n_pieces; i++) {
        if (i >= v->n) {
            qfs_warn("%s: ignore tokens from %zu: id is out of range, max=%zu", sp_path, i, v->n - 1);
            break;
        }
        /* the converter asks IsUnknown / IsControl / IsUnused / IsByte: USER_DEFINED
         * pieces become NORMAL */
        int t = sp.pieces[i].type;
        int32_t type = t == QFS_SP_UNKNOWN || t == QFS_SP_CONTROL || t == QFS_SP_UNUSED || t == QFS_SP_BYTE
                           ? t : QFS_SP_NORMAL;
        free(v->text[i]);
        v->text[i] = sp.pieces[i].text;
        sp.pieces[i].text = NULL;
        v->scores[i] = sp.pieces[i].score;
        v->types[i] = type;
    }
    const char *key;
    json_t *val;
    json_object_foreach(added, key, val) {
        int64_t id;
        if (!json_is_integer(val)) {
            qfs_err("%s/added_tokens.json: id of \"%s\" is not an integer", dir, key);
            rc = -EINVAL;
            goto fail;
        }
        id = json_integer_value(val);
        if (id < 0 || id >= vs) {
            qfs_warn("%s/added_tokens.json: ignore token %" PRId64 ": id is out of range, max=%" PRId64,
                     dir, id, vs - 1);
            continue;
        }
        if ((rc = set_token(v, (size_t)id, key, -1000.0f, QFS_SP_USER_DEFINED)))
            goto fail;
    }
    json_object_foreach(atd, key, val) {
        int64_t id;
        const char *content = json_string_value(json_object_get(val, "content"));
        if (!parse_id(key, &id) || !content) {
            qfs_err("%s/tokenizer_config.json: added_tokens_decoder entry \"%s\" is malformed", dir, key);
            rc = -EINVAL;
            goto fail;
        }
        if (id < 0 || id >= vs) {
            qfs_warn("%s/tokenizer_config.json: ignore token %" PRId64 ": id is out of range, max=%" PRId64,
                     dir, id, vs - 1);
            continue;
        }
        if (v->types[id] != QFS_SP_UNUSED && strcmp(v->text[id], content) != 0)
            qfs_warn("tokenizer: replacing token %" PRId64 ": '%s' -> '%s'", id, v->text[id], content);
        if (phi3) {
            rc = set_token(v, (size_t)id, content, -1000.0f,
                           truthy(json_object_get(val, "special")) ? QFS_SP_CONTROL
                                                                   : QFS_SP_USER_DEFINED);
        } else if (truthy(json_object_get(val, "special")) || qfs_token_looks_special(content)) {
            rc = set_token(v, (size_t)id, content, -1000.0f, QFS_SP_CONTROL);
        } else {
            /* pre-normalize user-defined spaces: U+2581 -> ' ' */
            size_t n = strlen(content);
            char *t = malloc(n + 1), *o = t;
            if (!t)
                goto nomem;
            for (const char *p = content; *p;) {
                if (strncmp(p, "\xe2\x96\x81", 3) == 0) {
                    *o++ = ' ';
                    p += 3;
                } else {
                    *o++ = *p++;
                }
            }
            *o = 0;
            rc = set_token(v, (size_t)id, t, -1000.0f, QFS_SP_USER_DEFINED);
            free(t);
        }
        if (rc)
            goto fail;
    }
    if (phi3 && (rc = phi3_added_tokens(dir, v)) < 0)
        goto fail;
    goto out;
nomem:
    rc = -ENOMEM;
fail:
    qfs_vocab_free(v);
out:
    json_decref(added);
    json_decref(tc);
    qfs_sp_free(&sp);
    return rc;
}

int qfs_tokenizer_to_gguf(const char *dir, const struct qfs_hf_config *cfg, struct qfs_kvs *kv,
                          int64_t embd_rows)
{
    char *sp_path = path_join(dir, "tokenizer.model");
    char *tj_path = path_join(dir, "tokenizer.json");
    json_t *tokenizer = NULL;
    struct qfs_vocab v = { 0 };
    int rc = 0;
    const enum qfs_vocab_path path = cfg->arch->vocab;
    const bool llama = path == QFS_VOCAB_LLAMA;

    if (!sp_path || !tj_path) {
        rc = -ENOMEM;
        goto out;
    }
    if (is_file(tj_path)) {
        rc = qfs_bpe_json_load(tj_path, &tokenizer);
        if (rc)
            goto out;
    }
    if (llama) {
        json_t *tc;
        rc = load_opt_json(dir, "tokenizer_config.json", &tc, true);
        if (rc)
            goto out;
        json_t *aps = json_object_get(tc, "add_prefix_space");
        if (aps && !json_is_null(aps))
            rc = qfs_kvs_set_bool(kv, "tokenizer.ggml.add_space_prefix", truthy(aps));
        json_decref(tc);
        if (rc)
            goto out;
    }
    bool gpt2_class = false;
    if (path == QFS_VOCAB_PHI3) { /* Phi-4 ships a GPT-2 tokenizer */
        json_t *tc = NULL;
        rc = load_opt_json(dir, "tokenizer_config.json", &tc, true);
        const char *cls = json_string_value(json_object_get(tc, "tokenizer_class"));
        if (!rc && tc && !cls) {
            qfs_err("%s/tokenizer_config.json: no tokenizer_class, which Phi-3's converter reads",
                    dir);
            rc = -EINVAL;
        }
        gpt2_class = cls && !strcmp(cls, "GPT2Tokenizer");
        json_decref(tc);
        if (rc)
            goto out;
        if (!gpt2_class && !is_file(sp_path)) {
            qfs_err("%s: no tokenizer.model, which Phi-3's converter needs", dir);
            rc = -ENOENT;
            goto out;
        }
    }
    if (is_file(sp_path) && path != QFS_VOCAB_GPT2 && !gpt2_class) {
        /* _set_vocab_sentencepiece (Phi-3: its own reader of the same files) */
        rc = vocab_sentencepiece(dir, sp_path, cfg->vocab_size, embd_rows, path == QFS_VOCAB_PHI3,
                                 &v);
        if (!rc)
            rc = write_vocab(kv, "llama", "default", &v);
        if (!rc)
            rc = special_vocab_write(kv, dir, tokenizer, (int64_t)v.n, false);
        if (!rc && path == QFS_VOCAB_GEMMA)
            rc = qfs_kvs_set_bool(kv, "tokenizer.ggml.add_space_prefix", false);
    } else if (!tokenizer) {
        qfs_err("%s: no tokenizer.model or tokenizer.json", dir);
        rc = -ENOENT;
    } else if (llama && qfs_bpe_json_is_llama_hf(tokenizer)) {
        /* _set_vocab_llama_hf */
        json_t *tc = NULL, *stm = NULL;
        rc = load_opt_json(dir, "tokenizer_config.json", &tc, true);
        if (!rc)
            rc = load_opt_json(dir, "special_tokens_map.json", &stm, true);
        if (!rc)
            rc = qfs_bpe_json_vocab_llama_hf(tokenizer, tj_path, tc, stm, embd_rows, &v);
        json_decref(tc);
        json_decref(stm);
        if (!rc)
            rc = write_vocab(kv, "llama", "default", &v);
        if (!rc)
            rc = special_vocab_write(kv, dir, tokenizer, (int64_t)v.n, false);
    } else {
        /* _set_vocab_gpt2 */
        const char *pre = qfs_bpe_json_pre(tokenizer);
        if (!pre) {
            qfs_warn("%s: pre-tokenizer not recognised, writing tokenizer.ggml.pre \"default\"", tj_path);
            pre = "default";
        }
        rc = check_vocab_size(dir, cfg->vocab_size, embd_rows, qfs_bpe_json_entries(tokenizer),
                              "tokenizer.json");
        if (!rc)
            rc = qfs_bpe_json_vocab_gpt2(tokenizer, tj_path, cfg->vocab_size, &v);
        if (!rc)
            rc = write_vocab(kv, "gpt2", pre, &v);
        if (!rc)
            rc = special_vocab_write(kv, dir, tokenizer, -1, true);
    }
    if (rc || !llama)
        goto out;
    if (cfg->vocab_size == 32016) {
        /* CodeLlama: a second SpecialVocab for the infill tokens; only eot has a key */
        static const char *const infill[] = { "prefix", "suffix", "middle", "eot" };
        static const json_int_t infill_id[] = { 32007, 32008, 32009, 32010 };
        struct special_vocab sv;
        sv_init(&sv, -1, false, infill, 4);
        rc = sv_load(&sv, dir, tokenizer);
        for (int i = 0; !rc && i < 4; i++) {
            json_t *id = json_integer(infill_id[i]);
            rc = id ? sv_set_id(&sv, infill[i], id, "codellama") : -ENOMEM;
            json_decref(id);
        }
        if (!rc)
            rc = sv_add_to_gguf(&sv, kv, true);
        sv_free(&sv);
    }
    if (!rc && cfg->vocab_size == 49152) /* granite small models (gguf-py keeps the key's place) */
        rc = qfs_kvs_set_bool(kv, "tokenizer.ggml.add_bos_token", false);
out:
    qfs_vocab_free(&v);
    json_decref(tokenizer);
    free(sp_path);
    free(tj_path);
    return rc;
}
