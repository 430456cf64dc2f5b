/* The on-disk entry store under a cache directory: entry files, their verification, and
 * whole-directory maintenance (scan, verify, gc, LRU eviction).  Used by cache.c for
 * single entries, by share.c (export/import) and by `quantfs cache`.
 *
 * Layout:
 *   1. <dir>/v1/<first 2 hex digits of the key>/<remaining 30 hex digits>: one entry
 *   2. <dir>/v1/<2 hex>/.tmp.<30 hex>.<host>.<pid>.<seq>: an entry being written
 *      (renamed into place once complete and fsynced; a crash leaves only these)
 *   3. an entry file (format 2, or 3: authenticated):
 *        bytes 0..3    magic "QFSC"
 *        bytes 4..7    u32 LE format version (2 or 3; any other version is garbage)
 *        bytes 8..23   the 16-byte key
 *        bytes 24..31  u64 LE payload length
 *        bytes 32..39  u64 LE XXH3-64 of the payload
 *        bytes 40..43  u32 LE tag: codec id << 16 | codec algorithm version
 *        bytes 44..47  u32 LE low half of XXH3-64 of bytes 0..43 (protects the tag)
 *      format 2:
 *        bytes 48..    payload; the file is exactly 48 + payload length bytes
 *      format 3 (written by a host with an HMAC key, -o cache_hmac_key):
 *        bytes 48..79  HMAC-SHA256 under the key of bytes 0..47, then the payload
 *        bytes 80..    payload; the file is exactly 80 + payload length bytes
 *   4. an entry's mtime is its last use (set when written, touched on every disk hit):
 *      the least recently used entries are evicted first.
 *
 * Trust: XXH3 and the header checksum detect damage, not intent: anyone who can write
 * the directory can make a format-2 entry that verifies.  A reader given the key
 * (struct qfs_store_auth) accepts only format-3 entries whose HMAC verifies; without a
 * key both formats are read and the HMAC is not checked. */
#ifndef QFS_CACHE_STORE_H
#define QFS_CACHE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "cache/cache.h"

#define QFS_STORE_FORMAT 2u      /* plain entries */
#define QFS_STORE_FORMAT_AUTH 3u /* entries with an HMAC */
#define QFS_STORE_HDR 48         /* header bytes of a plain entry */
#define QFS_STORE_HDR_AUTH 80    /* of an authenticated one */
#define QFS_STORE_HDR_MAX QFS_STORE_HDR_AUTH
#define QFS_STORE_MAC 32
#define QFS_STORE_TMP_STALE_S 3600 /* a temp file this old is a crashed writer's */

struct qfs_store_hdr {
    struct qfs_cache_key key;
    uint64_t len, sum;
    uint32_t tag;
    bool authed;                 /* format 3: mac is the entry's HMAC-SHA256 */
    uint8_t mac[QFS_STORE_MAC];
};

/* An HMAC key: the bytes of a key file (qfs_store_read_key), not owned. */
struct qfs_store_auth {
    const uint8_t *key;
    size_t len;
};

/* The header bytes of h (48 or 80, h->authed), written to out; returns their count. */
size_t qfs_store_hdr_encode(const struct qfs_store_hdr *h, uint8_t out[QFS_STORE_HDR_MAX]);
/* Header bytes of the entry h describes: QFS_STORE_HDR or QFS_STORE_HDR_AUTH. */
size_t qfs_store_hdr_size(const struct qfs_store_hdr *h);
/* Make h authenticated: h->mac = HMAC-SHA256 under a of h's first 48 header bytes
 * (format 3) and the payload.  0 or -ENOMEM. */
int qfs_store_mac_set(struct qfs_store_hdr *h, const uint8_t *payload,
                      const struct qfs_store_auth *a);
/* Does h carry a valid HMAC under a for this payload?  Constant-time comparison. */
bool qfs_store_mac_ok(const struct qfs_store_hdr *h, const uint8_t *payload,
                      const struct qfs_store_auth *a);

/* "<root>/<2 hex>/<30 hex>" (root is "<dir>/v1"); malloc'd, NULL on ENOMEM. */
char *qfs_store_path(const char *root, const struct qfs_cache_key *k);
/* Parse "<2 hex>" + "<30 hex>" names into a key.  false if not an entry name. */
bool qfs_store_parse_name(const char *dir2, const char *name30, struct qfs_cache_key *k);

/* Read and verify the entry file at path.  expect_key: the key its name says (NULL: no
 * check).  want_len: the payload length wanted, or UINT64_MAX for any.  auth: NULL, or
 * the key the entry must be authenticated with.
 * Returns 1: valid, *h filled, *payload (if payload != NULL) malloc'd; 0: absent, or a
 * valid entry of another length; -EBADMSG: corrupt (why says how); -EPROTO: another
 * format version (garbage); -EACCES: auth given and the entry is intact but carries no
 * HMAC or a wrong one (written without the key, or forged); other negative errno:
 * cannot read (why says so too).
 * touch: on success set the file's times to now (LRU use mark; failures ignored). */
int qfs_store_read(const char *path, const struct qfs_cache_key *expect_key, uint64_t want_len,
                   const struct qfs_store_auth *auth, bool touch, struct qfs_store_hdr *h,
                   uint8_t **payload, char *why, size_t whylen);

/* Write an entry atomically: a unique temp file (host, pid, sequence) in the entry's
 * directory, header + payload, fsync, rename.  No temp file survives a failure.
 * auth: NULL (format 2) or the key to authenticate it with (format 3).  *bytes (may be
 * NULL): the file size written.  0 or negative errno; *what names the failing step and
 * *where its path (malloc'd; caller frees) for one log line. */
int qfs_store_write(const char *root, const struct qfs_cache_key *k, uint32_t tag,
                    const uint8_t *data, uint64_t len, const struct qfs_store_auth *auth,
                    uint64_t *bytes, const char **what, char **where);
/* The same with the header given as it is (h->sum and, when h->authed, h->mac are
 * trusted to match data: a copy of an entry read before). */
int qfs_store_write_entry(const char *root, const struct qfs_store_hdr *h, const uint8_t *data,
                          uint64_t *bytes, const char **what, char **where);

/* Directory creation with parents, each new one 0700.  0 or negative errno. */
int qfs_store_mkdir_p(const char *path);

/* ---- whole-store maintenance ---- */

/* Counts gathered by a scan. */
struct qfs_store_report {
    uint64_t entries, bytes;      /* valid-looking entry files (all of them, before gc) */
    uint64_t bad;                 /* corrupt entries found (verify/gc) */
    uint64_t unauth;              /* with a key (verify/gc): intact entries without a valid
                                     HMAC (not counted in bad) */
    uint64_t authed;              /* entries of format 3 (stat: by header; else verified) */
    uint64_t stale_format;        /* entries of another format version */
    uint64_t dead_tag;            /* valid entries whose codec version no codec uses */
    uint64_t tmp_files, tmp_removed;
    uint64_t removed, removed_bytes; /* by gc/verify --delete/evict, every reason */
    uint64_t evicted;             /* of removed: least recently used, for the size bound */
    uint64_t kept, kept_bytes;    /* left after the operation */
    int64_t oldest_ns, newest_ns; /* entry mtimes */
    struct { uint32_t tag; uint64_t n, bytes; } tags[16];
    int n_tags;                   /* distinct tags seen (at most 16 kept) */
};

/* Is the entry with this key and file size (header + payload) in use (must not be
 * evicted)?  May be NULL. */
typedef bool (*qfs_store_in_use_fn)(void *arg, const struct qfs_cache_key *k,
                                    uint64_t file_size);

enum qfs_store_op {
    QFS_STORE_STAT,   /* headers only */
    QFS_STORE_VERIFY, /* every byte (and the HMAC, with auth); remove bad ones if fix */
    QFS_STORE_GC,     /* remove bad, stale-format, dead-tag entries (with auth: also those
                         without a valid HMAC) and stale temp files, then evict least
                         recently used entries down to max (0: no bound) */
    QFS_STORE_EVICT,  /* stale temp files of this host, then LRU down to max only */
};

struct qfs_store_scan_opts {
    enum qfs_store_op op;
    bool fix;                 /* VERIFY: remove bad entries */
    bool verbose;             /* print each bad or removed entry to stdout */
    const uint32_t *live_tags; /* GC: tags still used; n_live 0: keep every tag */
    int n_live;
    uint64_t max;             /* GC/EVICT: bytes of entries to keep at most (0: no bound) */
    qfs_store_in_use_fn in_use;
    void *in_use_arg;
    const struct qfs_store_auth *auth; /* VERIFY/GC: NULL, or entries must carry its HMAC */
};

/* Walk <dir>/v1 (root) per opts.  0 or negative errno (root unreadable); a single
 * vanished or unreadable file is skipped (concurrent gc elsewhere is normal). */
int qfs_store_scan(const char *root, const struct qfs_store_scan_opts *o,
                   struct qfs_store_report *r);

/* ---- export/import (share.c) ---- */

/* Copy every valid entry of root into dest/v1 with dest/MANIFEST (SHA-256 of each file)
 * and, when key is non-NULL, dest/MANIFEST.sig (HMAC-SHA256 of MANIFEST).  With a key,
 * an entry that carries an HMAC must verify under it (others are skipped and counted),
 * and every entry is written to dest authenticated (format 3) under it: the exporter
 * vouches for root's plain entries as it vouches for the manifest.  Without a key
 * entries are copied as they are.
 * Prints a summary; returns 0 or negative errno (message printed). */
int qfs_store_export(const char *root, const char *dest, const uint8_t *key, size_t keylen);
/* Verify src/MANIFEST (its signature when key is non-NULL: missing or wrong is refused)
 * and every listed file's SHA-256 and entry format, then copy the entries into root:
 * authenticated under the key when one is given, else as they are.
 * Nothing is copied unless everything verifies.  0 or negative errno (message printed). */
int qfs_store_import(const char *root, const char *src, const uint8_t *key, size_t keylen);
/* Read a key file (its raw bytes, at least 16).  0 or negative errno (message printed). */
int qfs_store_read_key(const char *path, uint8_t **key, size_t *len);

/* A shared tier's signed manifest, for a mount (-o cache_shared + cache_hmac_key). */
struct qfs_store_manifest;
/* Load src/MANIFEST, refusing it (-EPERM) unless signed under key.  0 or negative errno
 * (message printed). */
int qfs_store_manifest_load(const char *src, const struct qfs_store_auth *key,
                            struct qfs_store_manifest **out);
/* Is k listed? */
bool qfs_store_manifest_lists(const struct qfs_store_manifest *m, const struct qfs_cache_key *k);
/* Is this entry listed with exactly this SHA-256 of header + payload? */
bool qfs_store_manifest_check(const struct qfs_store_manifest *m, const struct qfs_store_hdr *h,
                              const uint8_t *payload);
void qfs_store_manifest_free(struct qfs_store_manifest *m);

#endif
