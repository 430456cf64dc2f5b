/* Tokenizer metadata for GGUF (tokenizer.ggml.*), as llama.cpp's converter writes it:
 * from a SentencePiece tokenizer.model (llama, mistral) or a byte-level BPE
 * tokenizer.json (qwen2, llama-3 style), plus the special vocabulary
 * (tokenizer_config.json, tokenizer.json added tokens, config/generation_config ids,
 * chat template). */
#ifndef QFS_TOKENIZER_H
#define QFS_TOKENIZER_H

#include "../gguf/gguf_kv.h"
#include "hf_config.h"

/* Add every tokenizer.ggml.* key for the model in dir to kv, in the converter's order.
 * 0 or negative errno; on error logs the file and reason:
 * -ENOENT no usable tokenizer file, -EINVAL malformed tokenizer file. */
int qfs_tokenizer_to_gguf(const char *dir, const struct qfs_hf_config *cfg, struct qfs_kvs *kv);

#endif
