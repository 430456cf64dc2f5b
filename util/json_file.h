/* JSON files of a model directory (config.json, tokenizer.json, ...), read with bounds.
 *
 * Hugging Face writes some integers no int64 holds (tokenizer_config.json's
 * model_max_length is 1000000000000000019884624838656 in many repositories); such an
 * integer is read as a real, as Python would keep it, instead of failing the whole file. */
#ifndef QFS_UTIL_JSON_FILE_H
#define QFS_UTIL_JSON_FILE_H

#include <jansson.h>
#include <stddef.h>

/* Documented limits (README, Reliability). */
#define QFS_JSON_MAX_CONFIG (16u << 20)     /* config.json, generation_config.json,
                                               tokenizer_config.json, special_tokens_map.json */
#define QFS_JSON_MAX_TOKENIZER (256u << 20) /* tokenizer.json */

/* Parse path (at most max_bytes bytes; a larger file is -EFBIG) with jansson flags.
 * 0 and *out; -ENOENT (not logged: callers decide whether a missing file is an error);
 * -EFBIG, -EINVAL (not JSON), -EIO, -ENOMEM, each logged once with the path. */
int qfs_json_load(const char *path, size_t max_bytes, size_t flags, json_t **out);

/* The same for a buffer (no size check, nothing logged but through err).  NULL on
 * failure, with err filled as json_loadb does. */
json_t *qfs_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);

#endif
