/* An ordered list of GGUF metadata key/values and its serialization.
 * Setting an existing key replaces its value in place; to move a key to the end (as
 * llama-quantize's gguf_set_* does), remove it first. */
#ifndef QFS_GGUF_KV_H
#define QFS_GGUF_KV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* GGUF value type ids (frozen by the format). */
enum qfs_gguf_vtype {
    QFS_GGUF_U8 = 0, QFS_GGUF_I8 = 1, QFS_GGUF_U16 = 2, QFS_GGUF_I16 = 3,
    QFS_GGUF_U32 = 4, QFS_GGUF_I32 = 5, QFS_GGUF_F32 = 6, QFS_GGUF_BOOL = 7,
    QFS_GGUF_STRING = 8, QFS_GGUF_ARRAY = 9, QFS_GGUF_U64 = 10, QFS_GGUF_I64 = 11,
    QFS_GGUF_F64 = 12,
};

struct qfs_kvs;

struct qfs_kvs *qfs_kvs_new(void);
void qfs_kvs_free(struct qfs_kvs *kv);
/* Deep copy; NULL on ENOMEM. */
struct qfs_kvs *qfs_kvs_dup(const struct qfs_kvs *kv);

/* All setters copy their arguments; return 0 or -ENOMEM. */
int qfs_kvs_set_str(struct qfs_kvs *kv, const char *key, const char *val);
int qfs_kvs_set_u32(struct qfs_kvs *kv, const char *key, uint32_t val);
int qfs_kvs_set_i32(struct qfs_kvs *kv, const char *key, int32_t val);
int qfs_kvs_set_f32(struct qfs_kvs *kv, const char *key, float val);
int qfs_kvs_set_bool(struct qfs_kvs *kv, const char *key, bool val);
int qfs_kvs_set_arr_str(struct qfs_kvs *kv, const char *key, const char *const *vals, size_t n);
int qfs_kvs_set_arr_f32(struct qfs_kvs *kv, const char *key, const float *vals, size_t n);
int qfs_kvs_set_arr_i32(struct qfs_kvs *kv, const char *key, const int32_t *vals, size_t n);
void qfs_kvs_remove(struct qfs_kvs *kv, const char *key);
bool qfs_kvs_has(const struct qfs_kvs *kv, const char *key);
size_t qfs_kvs_count(const struct qfs_kvs *kv);

/* Append the serialized KV section (count not included) to buf.
 * buf may be NULL to only measure.  Returns the number of bytes. */
size_t qfs_kvs_serialize(const struct qfs_kvs *kv, uint8_t *buf);

#endif
