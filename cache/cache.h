/* Chunk cache: content-addressed, in memory (bounded, LRU) over an optional on-disk store.
 *
 * Protocol (one call does it all):
 *   qfs_cache_get(key, len, fill) -> entry
 *     1. memory hit            -> entry (refcount +1)
 *     2. another thread filling -> wait on that key only, then as 1
 *     3. disk hit, verifies    -> loaded into memory -> entry (file's mtime touched:
 *                                 the disk LRU clock)
 *     3b. shared tier hit (-o cache_shared), verifies -> loaded, then copied locally
 *     4. otherwise this thread fills (no lock held while filling), publishes the
 *        entry, wakes waiters, and then the disk entry is written atomically (tmp +
 *        fsync + rename) behind: by a background writer thread that holds a reference
 *        until the file is in place (so it is not evicted first), or, when more than
 *        min(256 MiB, mem_max / 2) is already queued, by this thread before it returns.
 *   qfs_cache_put(entry) when done with the bytes.
 * qfs_cache_flush waits for every queued write; qfs_cache_close drains the queue first.
 * Disk entries carry a header (magic, version, key, length, XXH3-64 of the payload, codec
 * tag) and are verified on every load; a bad one is deleted, logged, and recomputed.  With
 * an HMAC key (hmac_key_file) every entry written carries an HMAC-SHA256 under it, and a
 * local entry without a valid one is treated the same way: never served (store.h).  The
 * disk store is bounded by disk_max: after writes push it over, the least recently used
 * entries (by file mtime) not in use here are evicted down to 90% (cache/store.h). */
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

/* An entry's tag: which codec, at which algorithm version, produced it, so that
 * `quantfs cache gc` can drop entries no codec will ask for again.  Codec ids are frozen. */
#define QFS_CACHE_TAG(codec, version) (((uint32_t)(codec) << 16) | ((uint32_t)(version) & 0xffff))
enum qfs_cache_codec {
    QFS_CODEC_NONE = 0,    /* untagged (tests, qfs_cache_get) */
    QFS_CODEC_SRCHASH = 1, /* remembered source content hashes (qfs_cache_srchash_*) */
    QFS_CODEC_GGUF = 2,    /* GGUF tensor chunks (codecs/gguf) */
    QFS_CODEC_AWQ = 3,     /* AWQ safetensors chunks (codecs/awq) */
    QFS_CODEC_FP8 = 4,     /* compressed-tensors FP8 (codecs/ct) */
    QFS_CODEC_W4A16 = 5,   /* compressed-tensors W4A16 pack-quantized (codecs/ct) */
    QFS_CODEC_GPTQ = 6,    /* GPTQ v1 (codecs/gptq) */
    QFS_CODEC_MLX = 7,     /* MLX affine (codecs/mlx) */
};
#define QFS_SRCHASH_VERSION 1

struct qfs_cache_stats {
    uint64_t mem_hits, disk_hits, fills, waits, disk_errors, corrupt_dropped;
    uint64_t shared_hits;       /* loaded from the read-only shared tier */
    uint64_t unauth_dropped;    /* with a key: intact entries without a valid HMAC removed */
    uint64_t stale_dropped;     /* entries of another format version removed */
    uint64_t disk_bytes;        /* bytes of the local store (estimate; exact after a scan) */
    uint64_t disk_evicted;      /* entries evicted for disk_max (by this process) */
    uint64_t srchash_hits, srchash_stored; /* remembered source hashes used / stored */
    uint64_t mem_bytes, mem_entries;
    uint64_t mem_evicted;       /* entries dropped from memory for mem_max */
    uint64_t disk_writes;       /* entries written to disk */
    uint64_t disk_writes_sync;  /* of the attempts, made by the filling thread (queue full) */
    uint64_t write_queue_bytes; /* bytes queued or being written behind, now */
};

struct qfs_cache_opts {
    const char *dir;        /* on-disk store (created 0700 if missing) or NULL: memory only */
    const char *shared_dir; /* read-only second tier consulted after dir, or NULL */
    const char *hmac_key_file; /* or NULL.  The key (the file's bytes, at least 16)
                                  authenticates every tier: entries written to dir carry an
                                  HMAC-SHA256 under it, entries of dir without a valid one
                                  are never served, and shared_dir is used only through its
                                  MANIFEST signed with it (SHA-256 of each entry checked) */
    uint64_t mem_max;       /* bytes of memory cache (entries in use are never dropped) */
    uint64_t disk_max;      /* bytes of the on-disk store; 0: unbounded */
};

/* An unusable dir or shared_dir is not fatal: logged once, served from memory.  A key
 * file that cannot be read (or is shorter than 16 bytes) is: 0 or negative errno. */
int qfs_cache_open_opts(const struct qfs_cache_opts *o, struct qfs_cache **out);
/* Same with only dir and mem_max. */
int qfs_cache_open(const char *dir, uint64_t mem_max, struct qfs_cache **out);
/* Writes every queued entry, then frees the cache.  NULL is a no-op. */
void qfs_cache_close(struct qfs_cache *c);
/* Returns once every disk write queued so far has finished.  NULL is a no-op. */
void qfs_cache_flush(struct qfs_cache *c);

/* outcome (may be NULL): 0 memory hit, 1 disk hit, 2 filled here, 3 waited for another. */
int qfs_cache_get(struct qfs_cache *c, const struct qfs_cache_key *key, uint64_t len,
                  qfs_cache_fill_fn fill, void *arg, const struct qfs_cache_entry **out,
                  int *outcome);
/* The same, storing tag (QFS_CACHE_TAG) in the disk entry; qfs_cache_get uses tag 0. */
int qfs_cache_get_tagged(struct qfs_cache *c, const struct qfs_cache_key *key, uint32_t tag,
                         uint64_t len, qfs_cache_fill_fn fill, void *arg,
                         const struct qfs_cache_entry **out, int *outcome);
void qfs_cache_put(struct qfs_cache *c, const struct qfs_cache_entry *e);

/* Ask the kernel to start reading the disk entry of key k (in the cache directory), so
 * that a get of it soon after does not wait on the disk: a sequential reader of cached
 * chunks then has many reads in flight, not one per worker.  Only a hint: nothing is
 * read, verified or served here; no entry or no disk tier: nothing. */
void qfs_cache_hint(struct qfs_cache *c, const struct qfs_cache_key *k);

/* Remembered content hashes of source byte ranges, so a remount of unchanged files does
 * not rehash them.  The identity is (device, inode, size, mtime in ns) of the file plus
 * the range: a file changed in any of these never finds an old hash. */
struct qfs_file_id {
    uint64_t dev, ino, size;
    int64_t mtime_ns, ctime_ns; /* ctime: a rewrite that restores the mtime still changes it */
};
/* 0 and *hash, or -ENOENT (not remembered), or another negative errno.  c may be NULL. */
int qfs_cache_srchash_get(struct qfs_cache *c, const struct qfs_file_id *id, uint64_t off,
                          uint64_t len, struct qfs_cache_key *hash);
/* Remember hash (written to the disk store behind).  c may be NULL (no-op). */
void qfs_cache_srchash_put(struct qfs_cache *c, const struct qfs_file_id *id, uint64_t off,
                           uint64_t len, const struct qfs_cache_key *hash);

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
