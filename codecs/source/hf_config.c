/* config.json (+ generation_config.json) of a Hugging Face causal LM.  Contract: hf_config.h. */
#include "hf_config.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../util/json_file.h"
#include "../../util/log.h"
#include "arch.h"

/* Load dir/name as a JSON object.  optional: a missing file gives 0 and *out NULL.
 * Negative errno, logged with the file name. */
static int load_json(const char *dir, const char *name, bool optional, json_t **out)
{
    int rc, fd = -1;
    char *path = NULL;
    json_t *root = NULL;
    *out = NULL;
    if (asprintf(&path, "%s/%s", dir, name) < 0) {
        path = NULL;
        qfs_err("%s/%s: out of memory", dir, name);
        rc = -ENOMEM;
        goto fail;
    }
    rc = qfs_json_load(path, QFS_JSON_MAX_CONFIG, JSON_REJECT_DUPLICATES, &root);
    if (rc == -ENOENT && optional) {
        free(path);
        return 0;
    }
    if (rc == -ENOENT)
        qfs_err("%s: %s", path, strerror(-rc));
    if (rc < 0) {
        root = NULL;
        goto fail;
    }
    if (!json_is_object(root)) {
        qfs_err("%s: not a JSON object", path);
        rc = -EINVAL;
        goto fail;
    }
    close(fd);
    free(path);
    *out = root;
    return 0;
fail:
    json_decref(root);
    if (fd >= 0)
        close(fd);
    free(path);
    return rc;
}

/* An integer key: absent or null gives def (required: -EINVAL).  Logged. */
static int get_int(const char *file, json_t *o, const char *key, bool required, int64_t def,
                   int64_t *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        if (required) {
            qfs_err("%s: missing required key %s", file, key);
            return -EINVAL;
        }
        *out = def;
        return 0;
    }
    if (!json_is_integer(v)) {
        qfs_err("%s: key %s is not an integer", file, key);
        return -EINVAL;
    }
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int get_num(const char *file, json_t *o, const char *key, double def, bool *present,
                   double *out)
{
    json_t *v = json_object_get(o, key);
    if (present)
        *present = v && !json_is_null(v);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        qfs_err("%s: key %s is not a finite number", file, key);
        return -EINVAL;
    }
    *out = json_number_value(v);
    return 0;
}

static int get_bool(const char *file, json_t *o, const char *key, bool def, bool *out)
{
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) {
        *out = def;
        return 0;
    }
    if (!json_is_boolean(v)) {
        qfs_err("%s: key %s is not a boolean", file, key);
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

/* A special token id: an integer, or a list whose first element is one (eos in
 * generation_config.json often is).  Absent/null: *found false. */
static int get_token_id(const char *file, json_t *o, const char *key, bool *found, int64_t *out)
{
    json_t *v = json_object_get(o, key);
    *found = false;
    if (!v || json_is_null(v))
        return 0;
    if (json_is_array(v)) {
        if (json_array_size(v) == 0)
            return 0;
        v = json_array_get(v, 0);
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0) {
        qfs_err("%s: key %s is not a non-negative integer (or a list of them)", file, key);
        return -EINVAL;
    }
    *out = (int64_t)json_integer_value(v);
    *found = true;
    return 0;
}

static int parse_rope_scaling(const char *file, json_t *rs, struct qfs_hf_config *c)
{
    if (!rs || json_is_null(rs))
        return 0;
    if (!json_is_object(rs)) {
        qfs_err("%s: rope_scaling is neither an object nor null", file);
        return -EINVAL;
    }
    json_t *ty = json_object_get(rs, "rope_type");
    if (!ty || json_is_null(ty))
        ty = json_object_get(rs, "type");
    if (!json_is_string(ty)) {
        qfs_err("%s: rope_scaling has no string rope_type or type", file);
        return -EINVAL;
    }
    c->rope_scaling_type = strdup(json_string_value(ty));
    if (!c->rope_scaling_type) {
        qfs_err("%s: out of memory", file);
        return -ENOMEM;
    }
    int rc = get_num(file, rs, "factor", 1.0, NULL, &c->rope_scaling_factor);
    if (!rc)
        rc = get_int(file, rs, "original_max_position_embeddings", false, 0, &c->rope_orig_ctx);
    return rc;
}

void qfs_hf_config_free(struct qfs_hf_config *cfg)
{
    if (!cfg)
        return;
    json_decref(cfg->json);
    json_decref(cfg->gen);
    free(cfg->file);
    free(cfg->arch_name);
    free(cfg->rope_scaling_type);
    memset(cfg, 0, sizeof *cfg);
}

int qfs_hf_config_load(const char *dir, struct qfs_hf_config *cfg)
{
    int rc;
    char *file = NULL;
    json_t *root = NULL, *gen = NULL;
    struct qfs_hf_config c = {0};

    rc = load_json(dir, "config.json", false, &root);
    if (rc)
        goto fail;
    if (asprintf(&file, "%s/config.json", dir) < 0) {
        file = NULL;
        qfs_err("%s/config.json: out of memory", dir);
        rc = -ENOMEM;
        goto fail;
    }

    json_t *archs = json_object_get(root, "architectures");
    const char *an = json_string_value(json_array_get(archs, 0));
    if (!an) {
        qfs_err("%s: architectures is missing or has no string first element", file);
        rc = -EINVAL;
        goto fail;
    }
    c.arch = qfs_arch_find(an);
    if (!c.arch) {
        qfs_err("%s: unsupported architecture %s", file, an);
        rc = -ENOTSUP;
        goto fail;
    }
    for (const char *const *k = c.arch->needs; k && *k; k++) {
        json_t *v = json_object_get(root, *k);
        if (!v || json_is_null(v)) {
            qfs_err("%s: missing key %s, which %s needs", file, *k, an);
            rc = -EINVAL;
            goto fail;
        }
    }
    c.arch_name = strdup(an);
    if (!c.arch_name) {
        qfs_err("%s: out of memory", file);
        rc = -ENOMEM;
        goto fail;
    }

    if ((rc = get_int(file, root, "hidden_size", true, 0, &c.hidden_size)) ||
        (rc = get_int(file, root, "intermediate_size", true, 0, &c.intermediate_size)) ||
        (rc = get_int(file, root, "num_hidden_layers", true, 0, &c.n_layers)) ||
        (rc = get_int(file, root, "num_attention_heads", true, 0, &c.n_heads)) ||
        (rc = get_int(file, root, "vocab_size", true, 0, &c.vocab_size)) ||
        (rc = get_int(file, root, "max_position_embeddings", true, 0,
                      &c.max_position_embeddings)))
        goto fail;
    /* Positive, and below 2^32 (GGUF stores them as uint32; the tensors bound them further:
     * arch.c check_config).  The line names the key. */
    const struct { const char *key; int64_t v; } dims[] = {
        {"hidden_size", c.hidden_size}, {"intermediate_size", c.intermediate_size},
        {"num_hidden_layers", c.n_layers}, {"num_attention_heads", c.n_heads},
        {"vocab_size", c.vocab_size}, {"max_position_embeddings", c.max_position_embeddings},
    };
    for (size_t i = 0; i < sizeof dims / sizeof *dims; i++) {
        if (dims[i].v <= 0 || dims[i].v > UINT32_MAX) {
            qfs_err("%s: %s %lld must be positive and below 2^32", file, dims[i].key,
                    (long long)dims[i].v);
            rc = -EINVAL;
            goto fail;
        }
    }
    if ((rc = get_int(file, root, "num_key_value_heads", false, c.n_heads, &c.n_kv_heads)))
        goto fail;
    if (c.n_kv_heads <= 0 || c.n_heads % c.n_kv_heads != 0) {
        qfs_err("%s: num_key_value_heads %lld must be positive and divide num_attention_heads "
                "%lld",
                file, (long long)c.n_kv_heads, (long long)c.n_heads);
        rc = -EINVAL;
        goto fail;
    }
    json_t *jhd = json_object_get(root, "head_dim");
    c.head_dim_explicit = jhd && !json_is_null(jhd);
    if (!c.head_dim_explicit) {
        if (c.hidden_size % c.n_heads != 0) {
            qfs_err("%s: no head_dim and hidden_size %lld is not a multiple of "
                    "num_attention_heads %lld",
                    file, (long long)c.hidden_size, (long long)c.n_heads);
            rc = -EINVAL;
            goto fail;
        }
    }
    if ((rc = get_int(file, root, "head_dim", false, c.hidden_size / c.n_heads, &c.head_dim)))
        goto fail;
    if (c.head_dim <= 0) {
        qfs_err("%s: head_dim %lld must be positive", file, (long long)c.head_dim);
        rc = -EINVAL;
        goto fail;
    }
    if ((rc = get_num(file, root, "rms_norm_eps", 1e-6, NULL, &c.rms_norm_eps)) ||
        (rc = get_num(file, root, "rope_theta", 0.0, &c.has_rope_theta, &c.rope_theta)) ||
        (rc = get_bool(file, root, "tie_word_embeddings", false, &c.tie_word_embeddings)) ||
        (rc = parse_rope_scaling(file, json_object_get(root, "rope_scaling"), &c)))
        goto fail;
    if (c.rms_norm_eps <= 0) {
        qfs_err("%s: rms_norm_eps %g must be positive", file, c.rms_norm_eps);
        rc = -EINVAL;
        goto fail;
    }
    if (c.has_rope_theta && c.rope_theta <= 0) {
        qfs_err("%s: rope_theta %g must be positive", file, c.rope_theta);
        rc = -EINVAL;
        goto fail;
    }

    bool sw_on = true;
    if ((rc = get_bool(file, root, "use_sliding_window", true, &sw_on)))
        goto fail;
    if ((rc = get_int(file, root, "sliding_window", false, 0, &c.sliding_window)))
        goto fail;
    if (c.sliding_window < 0) {
        qfs_err("%s: sliding_window %lld is negative", file, (long long)c.sliding_window);
        rc = -EINVAL;
        goto fail;
    }
    if (!sw_on)
        c.sliding_window = 0;

    bool has_bos, has_eos;
    c.bos_token_id = c.eos_token_id = -1;
    if ((rc = get_token_id(file, root, "bos_token_id", &has_bos, &c.bos_token_id)) ||
        (rc = get_token_id(file, root, "eos_token_id", &has_eos, &c.eos_token_id)))
        goto fail;
    /* generation_config.json: the special ids config.json lacks, and the sampling
     * defaults of the GGUF metadata.  The converter ignores one it cannot parse; we do
     * too, unless an id must come from it. */
    rc = load_json(dir, "generation_config.json", true, &gen);
    if (rc && rc != -ENOMEM && has_bos && has_eos) {
        qfs_warn("%s/generation_config.json: ignored (see above)", dir);
        rc = 0;
        gen = NULL;
    }
    if (rc)
        goto fail;
    if (!has_bos || !has_eos) {
        if (gen) {
            char *gfile = NULL;
            if (asprintf(&gfile, "%s/generation_config.json", dir) < 0) {
                qfs_err("%s/generation_config.json: out of memory", dir);
                rc = -ENOMEM;
                goto fail;
            }
            bool f;
            if (!has_bos)
                rc = get_token_id(gfile, gen, "bos_token_id", &f, &c.bos_token_id);
            if (!rc && !has_eos)
                rc = get_token_id(gfile, gen, "eos_token_id", &f, &c.eos_token_id);
            free(gfile);
            if (rc)
                goto fail;
        }
    }

    c.json = root;
    c.gen = gen;
    c.file = file;
    *cfg = c;
    return 0;
fail:
    qfs_hf_config_free(&c);
    json_decref(gen);
    json_decref(root);
    free(file);
    return rc;
}

/* The typed accessors of qfs_hf_config's JSON, for the architecture table's steps. */
static json_t *member(json_t *o, const char *key, bool *found)
{
    json_t *v = o ? json_object_get(o, key) : NULL;
    *found = v && !json_is_null(v);
    return *found ? v : NULL;
}

static int as_int(const char *file, const char *key, json_t *v, int64_t *out)
{
    if (!json_is_integer(v)) {
        qfs_err("%s: key %s is not an integer", file, key);
        return -EINVAL;
    }
    *out = (int64_t)json_integer_value(v);
    return 0;
}

static int as_num(const char *file, const char *key, json_t *v, double *out)
{
    if (!json_is_number(v) || !isfinite(json_number_value(v))) {
        qfs_err("%s: key %s is not a finite number", file, key);
        return -EINVAL;
    }
    *out = json_number_value(v);
    return 0;
}

int qfs_hf_int(const struct qfs_hf_config *c, const char *key, bool *found, int64_t *out)
{
    json_t *v = member(c->json, key, found);
    return v ? as_int(c->file, key, v, out) : 0;
}

int qfs_hf_num(const struct qfs_hf_config *c, const char *key, bool *found, double *out)
{
    json_t *v = member(c->json, key, found);
    return v ? as_num(c->file, key, v, out) : 0;
}

int qfs_hf_bool(const struct qfs_hf_config *c, const char *key, bool *found, bool *out)
{
    json_t *v = member(c->json, key, found);
    if (!v)
        return 0;
    if (!json_is_boolean(v)) {
        qfs_err("%s: key %s is not a boolean", c->file, key);
        return -EINVAL;
    }
    *out = json_is_true(v);
    return 0;
}

int qfs_hf_rope_num(const struct qfs_hf_config *c, const char *key, bool *found, double *out)
{
    bool f;
    json_t *rs = member(c->json, "rope_parameters", &f);
    if (!rs)
        rs = member(c->json, "rope_scaling", &f);
    json_t *v = json_is_object(rs) ? member(rs, key, found) : (*found = false, NULL);
    return v ? as_num(c->file, key, v, out) : 0;
}
