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
 * embd_rows: the rows of the model's token embedding (token_embd.weight ne[1]), or <= 0
 * when unknown.  The vocabulary is never larger than what backs it: cfg->vocab_size (to
 * which a SentencePiece vocabulary is padded) and every token id must stay below
 * max(embd_rows, the tokens the files hold), checked before anything of that size is
 * allocated.
 * 0 or negative errno; on error logs one line naming the file and the key or id:
 * -ENOENT no usable tokenizer file, -EINVAL malformed tokenizer file or a vocab_size / token
 * id beyond that bound. */
int qfs_tokenizer_to_gguf(const char *dir, const struct qfs_hf_config *cfg, struct qfs_kvs *kv,
                          int64_t embd_rows);

#endif
