/* Cache key derivation: XXH3-128 over length-prefixed fields.
 *
 * Each field is appended as a u64 little-endian byte count followed by its bytes, so
 * ("ab", "c") and ("a", "bc") hash differently.  The key is the big-endian canonical
 * form of the 128-bit hash, identical on every host. */
#include "cache/cache.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "cache/xxh.h"

/* A keybuf whose allocation failed is poisoned: cap == SIZE_MAX, buf == NULL.
 * Every later add fails, so a caller checking only the last add still notices. */
#define KB_POISON SIZE_MAX

void qfs_keybuf_init(struct qfs_cache_keybuf *kb)
{
    kb->buf = NULL;
    kb->len = 0;
    kb->cap = 0;
}

/* Make room for n more bytes.  0 or -ENOMEM (the keybuf is then poisoned). */
static int kb_reserve(struct qfs_cache_keybuf *kb, size_t n)
{
    if (kb->cap == KB_POISON && kb->buf == NULL)
        return -ENOMEM;
    if (n <= kb->cap - kb->len)
        return 0;
    if (n > SIZE_MAX / 2 - kb->len)
        goto fail;
    size_t cap = kb->cap ? kb->cap : 64;
    while (cap - kb->len < n)
        cap *= 2;
    uint8_t *p = realloc(kb->buf, cap);
    if (!p)
        goto fail;
    kb->buf = p;
    kb->cap = cap;
    return 0;
fail:
    free(kb->buf);
    kb->buf = NULL;
    kb->len = 0;
    kb->cap = KB_POISON;
    return -ENOMEM;
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

/* Append one field: u64 LE length, then the bytes.  0 or -ENOMEM. */
int qfs_keybuf_add(struct qfs_cache_keybuf *kb, const void *p, size_t n)
{
    if (n > SIZE_MAX - 8)
        return -ENOMEM;
    int rc = kb_reserve(kb, 8 + n);
    if (rc < 0)
        return rc;
    put_le64(kb->buf + kb->len, (uint64_t)n);
    if (n)
        memcpy(kb->buf + kb->len + 8, p, n);
    kb->len += 8 + n;
    return 0;
}

/* A u64 field, encoded little-endian (8 bytes, length-prefixed like any field). */
int qfs_keybuf_add_u64(struct qfs_cache_keybuf *kb, uint64_t v)
{
    uint8_t b[8];
    put_le64(b, v);
    return qfs_keybuf_add(kb, b, sizeof b);
}

static void canon128(XXH128_hash_t h, struct qfs_cache_key *key)
{
    XXH128_canonical_t c;
    XXH128_canonicalFromHash(&c, h);
    _Static_assert(sizeof c.digest == sizeof key->b, "key is 16 bytes");
    memcpy(key->b, c.digest, sizeof key->b);
}

/* Hash the fields added so far and free the buffer; kb is reset to empty.
 * Cannot fail; the key is meaningless if any add failed (callers check adds). */
void qfs_keybuf_finish(struct qfs_cache_keybuf *kb, struct qfs_cache_key *key)
{
    canon128(qfs_xxh3_128(kb->buf, kb->len), key);
    free(kb->buf);
    qfs_keybuf_init(kb);
}

void qfs_hash128(const void *p, size_t n, struct qfs_cache_key *out)
{
    canon128(qfs_xxh3_128(p, n), out);
}
