/* GGUF metadata list.  Values are stored already serialized (type + payload) so that
 * serialization is a concatenation and setters are the only place that knows formats. */
#include "gguf_kv.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

struct kv {
    char *key;
    uint8_t *val; /* u32 type, then the payload as GGUF writes it */
    size_t val_len;
};

struct qfs_kvs {
    struct kv *v;
    size_t n, cap;
};

struct buf {
    uint8_t *p;
    size_t len, cap;
    int err;
};

static void buf_put(struct buf *b, const void *p, size_t n)
{
    if (b->err)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (cap < b->len + n)
            cap *= 2;
        uint8_t *np = realloc(b->p, cap);
        if (!np) {
            b->err = -ENOMEM;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
    memcpy(b->p + b->len, p, n);
    b->len += n;
}

static void buf_u32(struct buf *b, uint32_t v) { buf_put(b, &v, 4); } /* GGUF is little-endian, as is every host we build for */
static void buf_u64(struct buf *b, uint64_t v) { buf_put(b, &v, 8); }
static void buf_str(struct buf *b, const char *s)
{
    size_t n = strlen(s);
    buf_u64(b, n);
    buf_put(b, s, n);
}

struct qfs_kvs *qfs_kvs_new(void) { return calloc(1, sizeof(struct qfs_kvs)); }

void qfs_kvs_free(struct qfs_kvs *kv)
{
    if (!kv)
        return;
    for (size_t i = 0; i < kv->n; i++) {
        free(kv->v[i].key);
        free(kv->v[i].val);
    }
    free(kv->v);
    free(kv);
}

static ssize_t find(const struct qfs_kvs *kv, const char *key)
{
    for (size_t i = 0; i < kv->n; i++)
        if (strcmp(kv->v[i].key, key) == 0)
            return (ssize_t)i;
    return -1;
}

void qfs_kvs_remove(struct qfs_kvs *kv, const char *key)
{
    ssize_t i = find(kv, key);
    if (i < 0)
        return;
    free(kv->v[i].key);
    free(kv->v[i].val);
    memmove(&kv->v[i], &kv->v[i + 1], (kv->n - (size_t)i - 1) * sizeof kv->v[0]);
    kv->n--;
}

bool qfs_kvs_has(const struct qfs_kvs *kv, const char *key) { return find(kv, key) >= 0; }
size_t qfs_kvs_count(const struct qfs_kvs *kv) { return kv->n; }

/* Takes ownership of b's bytes (also on failure). */
static int set(struct qfs_kvs *kv, const char *key, struct buf *b)
{
    if (b->err) {
        free(b->p);
        return b->err;
    }
    char *k = strdup(key);
    if (!k)
        goto fail;
    if (kv->n == kv->cap) {
        size_t cap = kv->cap ? kv->cap * 2 : 32;
        struct kv *nv = realloc(kv->v, cap * sizeof *nv);
        if (!nv)
            goto fail;
        kv->v = nv;
        kv->cap = cap;
    }
    ssize_t i = find(kv, key);
    if (i >= 0) { /* replace in place */
        free(kv->v[i].key);
        free(kv->v[i].val);
        kv->v[i] = (struct kv){.key = k, .val = b->p, .val_len = b->len};
        return 0;
    }
    kv->v[kv->n++] = (struct kv){.key = k, .val = b->p, .val_len = b->len};
    return 0;
fail:
    free(k);
    free(b->p);
    return -ENOMEM;
}

static int set_scalar(struct qfs_kvs *kv, const char *key, enum qfs_gguf_vtype t, const void *p, size_t n)
{
    struct buf b = {0};
    buf_u32(&b, t);
    buf_put(&b, p, n);
    return set(kv, key, &b);
}

int qfs_kvs_set_str(struct qfs_kvs *kv, const char *key, const char *val)
{
    struct buf b = {0};
    buf_u32(&b, QFS_GGUF_STRING);
    buf_str(&b, val);
    return set(kv, key, &b);
}

int qfs_kvs_set_u32(struct qfs_kvs *kv, const char *key, uint32_t v) { return set_scalar(kv, key, QFS_GGUF_U32, &v, 4); }
int qfs_kvs_set_i32(struct qfs_kvs *kv, const char *key, int32_t v) { return set_scalar(kv, key, QFS_GGUF_I32, &v, 4); }
int qfs_kvs_set_f32(struct qfs_kvs *kv, const char *key, float v) { return set_scalar(kv, key, QFS_GGUF_F32, &v, 4); }

int qfs_kvs_set_bool(struct qfs_kvs *kv, const char *key, bool v)
{
    uint8_t x = v ? 1 : 0;
    return set_scalar(kv, key, QFS_GGUF_BOOL, &x, 1);
}

static int set_arr(struct qfs_kvs *kv, const char *key, enum qfs_gguf_vtype t, const void *p, size_t elsz, size_t n)
{
    struct buf b = {0};
    buf_u32(&b, QFS_GGUF_ARRAY);
    buf_u32(&b, t);
    buf_u64(&b, n);
    buf_put(&b, p, elsz * n);
    return set(kv, key, &b);
}

int qfs_kvs_set_arr_f32(struct qfs_kvs *kv, const char *key, const float *v, size_t n) { return set_arr(kv, key, QFS_GGUF_F32, v, 4, n); }
int qfs_kvs_set_arr_i32(struct qfs_kvs *kv, const char *key, const int32_t *v, size_t n) { return set_arr(kv, key, QFS_GGUF_I32, v, 4, n); }

int qfs_kvs_set_arr_str(struct qfs_kvs *kv, const char *key, const char *const *vals, size_t n)
{
    struct buf b = {0};
    buf_u32(&b, QFS_GGUF_ARRAY);
    buf_u32(&b, QFS_GGUF_STRING);
    buf_u64(&b, n);
    for (size_t i = 0; i < n; i++)
        buf_str(&b, vals[i]);
    return set(kv, key, &b);
}

struct qfs_kvs *qfs_kvs_dup(const struct qfs_kvs *src)
{
    struct qfs_kvs *kv = qfs_kvs_new();
    if (!kv)
        return NULL;
    for (size_t i = 0; i < src->n; i++) {
        struct buf b = {0};
        buf_put(&b, src->v[i].val, src->v[i].val_len);
        if (set(kv, src->v[i].key, &b) < 0) {
            qfs_kvs_free(kv);
            return NULL;
        }
    }
    return kv;
}

size_t qfs_kvs_serialize(const struct qfs_kvs *kv, uint8_t *out)
{
    size_t off = 0;
    for (size_t i = 0; i < kv->n; i++) {
        uint64_t klen = strlen(kv->v[i].key);
        if (out) {
            memcpy(out + off, &klen, 8);
            memcpy(out + off + 8, kv->v[i].key, klen);
            memcpy(out + off + 8 + klen, kv->v[i].val, kv->v[i].val_len);
        }
        off += 8 + klen + kv->v[i].val_len;
    }
    return off;
}
