/* The converter's metadata steps, one function per step of convert_hf_to_gguf.py's
 * set_gguf_parameters that a row of the architecture table (codecs/source/arch.c) lists.
 * Each adds its keys to kv in the converter's order; a key set twice keeps its first place
 * (gguf-py overwrites in place).  qfs_meta_fn contract (arch.h): 0 or negative errno,
 * logged with the file and the key. */
#ifndef QFS_GGUF_META_H
#define QFS_GGUF_META_H

#include "../source/arch.h"

/* TextModel.set_gguf_parameters: block/context/embedding/feed-forward lengths, heads, rope
 * scaling and bases, norm epsilons, experts, head_dim, file type. */
int qfs_meta_text(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch);
/* LlamaModel: vocab_size and rope.dimension_count. */
int qfs_meta_llama(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch);
/* Qwen2MoeModel: expert (and shared expert) feed-forward lengths. */
int qfs_meta_qwen2moe(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch);
/* Gemma3Model: its defaults, final logit softcapping, sliding window. */
int qfs_meta_gemma3(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch);
/* Phi3MiniModel.set_gguf_parameters (it does not call the base). */
int qfs_meta_phi3(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch);
/* Phi3MiniModel.generate_extra_tensors: rope.scaling.attn_factor, written before
 * general.type. */
int qfs_meta_phi3_pre(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch);

#endif
