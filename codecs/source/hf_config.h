/* The parts of a Hugging Face model directory that describe the model
 * (config.json, generation_config.json), parsed and validated. */
#ifndef QFS_HF_CONFIG_H
#define QFS_HF_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

enum qfs_arch { QFS_ARCH_LLAMA, QFS_ARCH_MISTRAL, QFS_ARCH_QWEN2 };

struct qfs_hf_config {
    enum qfs_arch arch;      /* from architectures[0] */
    char *arch_name;         /* "LlamaForCausalLM" ... */
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
 * -ENOENT missing, -EINVAL malformed or missing a required key,
 * -ENOTSUP an architecture we do not convert. */
int qfs_hf_config_load(const char *dir, struct qfs_hf_config *cfg);
void qfs_hf_config_free(struct qfs_hf_config *cfg);
const char *qfs_arch_gguf_name(enum qfs_arch a); /* "llama", "qwen2" */

#endif
