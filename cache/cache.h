/* Chunk cache: content-addressed, in memory (bounded, LRU) over an optional on-disk store.
 *
 * Protocol (one call does it all):
 *   qfs_cache_get(key, len, fill) -> entry
 *     1. memory hit            -> entry (refcount +1)
 *     2. another thread filling -> wait on that key only, then as 1
 *     3. disk hit, verifies    -> loaded into memory -> entry
 *     4. otherwise this thread fills (no lock held while filling), publishes the
 *        entry, wakes waiters, and then the disk entry is written atomically (tmp +
 *        fsync + rename) behind: by a background writer thread that holds a reference
 *        until the file is in place (so it is not evicted first), or, when more than
 *        min(256 MiB, mem_max / 2) is already queued, by this thread before it returns.
 *   qfs_cache_put(entry) when done with the bytes.
 * qfs_cache_flush waits for every queued write; qfs_cache_close drains the queue first.
 * Disk entries carry a header (magic, version, key, length, XXH3-64 of the payload) and
 * are verified on every load; a bad one is deleted, logged, and recomputed. */
#ifndef QFS_CACHE_H
#define QFS_CACHE_H

#include <stddef.h>
#include <stdint.h>

struct qfs_cache;

struct qfs_cache_key {
    uint8_t b[16]; /* XXH3-128, big-endian canonical form */
};

struct qfs_cache_entry {
    const uint8_t *data;
    uint64_t len;
};

/* Fill dst with exactly len bytes.  0 or negative errno. */
typedef int (*qfs_cache_fill_fn)(void *arg, uint8_t *dst, uint64_t len);

struct qfs_cache_stats {
    uint64_t mem_hits, disk_hits, fills, waits, disk_errors, corrupt_dropped;
    uint64_t mem_bytes, mem_entries;
    uint64_t disk_writes;       /* entries written to disk */
    uint64_t disk_writes_sync;  /* of the attempts, made by the filling thread (queue full) */
    uint64_t write_queue_bytes; /* bytes queued or being written behind, now */
};

/* dir: on-disk store (created 0700 if missing) or NULL for memory only.
 * mem_max: bytes of memory cache (entries in use are never dropped).
 * 0 or negative errno. */
int qfs_cache_open(const char *dir, uint64_t mem_max, struct qfs_cache **out);
/* Writes every queued entry, then frees the cache.  NULL is a no-op. */
void qfs_cache_close(struct qfs_cache *c);
/* Returns once every disk write queued so far has finished.  NULL is a no-op. */
void qfs_cache_flush(struct qfs_cache *c);

/* outcome (may be NULL): 0 memory hit, 1 disk hit, 2 filled here, 3 waited for another. */
int qfs_cache_get(struct qfs_cache *c, const struct qfs_cache_key *key, uint64_t len,
                  qfs_cache_fill_fn fill, void *arg, const struct qfs_cache_entry **out,
                  int *outcome);
void qfs_cache_put(struct qfs_cache *c, const struct qfs_cache_entry *e);

void qfs_cache_get_stats(struct qfs_cache *c, struct qfs_cache_stats *s);

/* Key derivation: XXH3-128 over the given fields in order (each length-prefixed). */
struct qfs_cache_keybuf {
    uint8_t *buf;
    size_t len, cap;
};
void qfs_keybuf_init(struct qfs_cache_keybuf *kb);
int qfs_keybuf_add(struct qfs_cache_keybuf *kb, const void *p, size_t n);
int qfs_keybuf_add_u64(struct qfs_cache_keybuf *kb, uint64_t v);
void qfs_keybuf_finish(struct qfs_cache_keybuf *kb, struct qfs_cache_key *key); /* frees buf */
/* Content hash of a byte range (XXH3-128). */
void qfs_hash128(const void *p, size_t n, struct qfs_cache_key *out);

#endif
