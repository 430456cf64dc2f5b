/* The parts of a Hugging Face model directory that describe the model
 * (config.json, generation_config.json), parsed and validated. */
#ifndef QFS_HF_CONFIG_H
#define QFS_HF_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

struct json_t;
struct qfs_arch;

struct qfs_hf_config {
    const struct qfs_arch *arch; /* the architecture table's row for architectures[0] */
    char *arch_name;         /* "LlamaForCausalLM" ... */
    char *file;              /* ".../config.json", for log lines */
    struct json_t *json;     /* config.json as parsed (the keys a row's steps read) */
    struct json_t *gen;      /* generation_config.json, or NULL */
    int64_t hidden_size, intermediate_size, n_layers, n_heads, n_kv_heads, head_dim;
    bool head_dim_explicit;  /* config.json has head_dim (the converter then writes key/value_length) */
    int64_t vocab_size, max_position_embeddings;
    double rms_norm_eps, rope_theta;
    bool has_rope_theta;
    bool tie_word_embeddings;
    /* rope_scaling: type "linear"/"yarn"/"llama3"... or NULL when absent/null */
    char *rope_scaling_type;
    double rope_scaling_factor;
    int64_t rope_orig_ctx;   /* original_max_position_embeddings, 0 if absent */
    int64_t sliding_window;  /* 0 if absent/null or disabled */
    /* special ids from config.json (then generation_config.json); -1 if absent */
    int64_t bos_token_id, eos_token_id;
};

/* Parse dir/config.json.  0 or negative errno; on error logs the file and reason.
 * -ENOENT missing, -EINVAL malformed or missing a required key (its row's needs too),
 * a value out of range (dimensions and counts must fit the GGUF's uint32),
 * -ENOTSUP an architecture we do not convert. */
int qfs_hf_config_load(const char *dir, struct qfs_hf_config *cfg);
void qfs_hf_config_free(struct qfs_hf_config *cfg);

/* config.json key `key` (absent or null: *found false, *out untouched): an integer, a
 * finite number, a boolean.  0, or -EINVAL when it has another type (logged). */
int qfs_hf_int(const struct qfs_hf_config *c, const char *key, bool *found, int64_t *out);
int qfs_hf_num(const struct qfs_hf_config *c, const char *key, bool *found, double *out);
int qfs_hf_bool(const struct qfs_hf_config *c, const char *key, bool *found, bool *out);
/* rope_scaling's member key (rope_parameters when present), as qfs_hf_num. */
int qfs_hf_rope_num(const struct qfs_hf_config *c, const char *key, bool *found, double *out);

#endif
