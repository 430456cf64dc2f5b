/* Hugging Face tokenizer.json (the "fast" tokenizer file): the vocabulary, merges,
 * added tokens and pre-tokenizer, turned into the token lists llama.cpp's converter
 * writes (its get_vocab_base for byte-level BPE, and gguf-py's LlamaHfVocab). */
#ifndef QFS_BPE_JSON_H
#define QFS_BPE_JSON_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A token list as written to GGUF: text (owned, NUL-terminated), score, type (GGUF token type). */
struct qfs_vocab {
    char **text;
    float *scores; /* NULL when the path writes no scores */
    int32_t *types;
    size_t n;
};
void qfs_vocab_free(struct qfs_vocab *v);

/* Load path as JSON.  0, -ENOENT (missing), -EINVAL (not JSON or not an object), -ENOMEM.
 * *root is a new reference on success. */
int qfs_bpe_json_load(const char *path, json_t **root);

/* gguf-py LlamaHfVocab's pre-check: true for a BPE model with byte_fallback and a
 * Sequence decoder (a SentencePiece-style llama tokenizer), false otherwise (llama-3
 * style byte-level BPE, which the converter sends to its gpt2 path). */
bool qfs_bpe_json_is_llama_hf(json_t *root);

/* The number of entries of model.vocab and added_tokens (what the file holds), 0 when
 * model.vocab is not an object. */
int64_t qfs_bpe_json_entries(json_t *root);

/* The converter's get_vocab_base: ids 0..vocab_size-1, holes as "[PAD<i>]" UNUSED,
 * added tokens CONTROL (special or looking special) or USER_DEFINED, others NORMAL.
 * vocab_size <= 0 means the number of distinct tokens.  No scores.  The caller bounds
 * vocab_size (qfs_tokenizer_to_gguf); an id at or above it (above the entries when
 * vocab_size <= 0) is refused before any table is allocated.
 * 0, -EINVAL (malformed, or an id >= vocab_size), -ENOMEM; logs path on error. */
int qfs_bpe_json_vocab_gpt2(json_t *root, const char *path, int64_t vocab_size, struct qfs_vocab *out);

/* gguf-py LlamaHfVocab: the base vocabulary (BYTE for <0xXX>, CONTROL for the special
 * tokens named in tokenizer_config / special_tokens_map, else NORMAL), then the added
 * tokens above it; every score -1000.  tok_config / special_map may be NULL.  An id at
 * or above max(embd_rows, the file's entries) is refused (-EINVAL) before any table is
 * allocated; embd_rows <= 0: unknown. */
int qfs_bpe_json_vocab_llama_hf(json_t *root, const char *path, json_t *tok_config,
                                json_t *special_map, int64_t embd_rows, struct qfs_vocab *out);

/* model.merges in the converter's "a b" string form (the ["a","b"] form is joined with a
 * space, spaces inside a part written as U+0120).  *n = 0 when there are none.
 * 0, -EINVAL (unknown form), -ENOMEM. */
int qfs_bpe_json_merges(json_t *root, const char *path, char ***merges, size_t *n);
void qfs_bpe_merges_free(char **merges, size_t n);

/* tokenizer.ggml.pre for this pre_tokenizer, or NULL when it is not in our table. */
const char *qfs_bpe_json_pre(json_t *root);

/* The converter's does_token_look_special. */
bool qfs_token_looks_special(const char *text);

#endif
