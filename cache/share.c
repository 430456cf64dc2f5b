/* Export and import of cache entries between stores, with a manifest a host can check
 * before it trusts a single byte.
 *
 * An export directory:
 *   1. v1/<2 hex>/<30 hex>: entry files, byte for byte as in a store (store.h)
 *   2. MANIFEST: text; first line "quantfs-cache-manifest 1", then one line per entry:
 *      "<SHA-256 of the whole file, 64 hex> <file size> v1/<2 hex>/<30 hex>"
 *   3. MANIFEST.sig (only when exported with a key): "hmac-sha256 <64 hex>\n", the
 *      HMAC-SHA256 of MANIFEST's exact bytes under the shared key.
 * Import checks the signature (when given a key: a missing or wrong one is refused), the
 * manifest's syntax, and every file's digest, size and entry format before it copies
 * anything; each copy is checked again from the bytes actually written. */
#include "cache/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MANIFEST_HEAD "quantfs-cache-manifest 1\n"
#define SIG_PREFIX "hmac-sha256 "

static const char hexd[] = "0123456789abcdef";

static void to_hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexd[b[i] >> 4];
        out[2 * i + 1] = hexd[b[i] & 15];
    }
    out[2 * n] = '\0';
}

/* SHA-256 of an entry file as it is on disk: header then payload. */
static int entry_sha256(const struct qfs_store_hdr *h, const uint8_t *payload, char hex[65])
{
    uint8_t hdr[QFS_STORE_HDR_MAX], md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    const size_t hs = qfs_store_hdr_encode(h, hdr);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 &&
             EVP_DigestUpdate(ctx, hdr, hs) == 1 &&
             EVP_DigestUpdate(ctx, payload, h->len) == 1 &&
             EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 32;
    EVP_MD_CTX_free(ctx);
    if (!ok)
        return -ENOMEM;
    to_hex(md, 32, hex);
    return 0;
}

static int hmac_hex(const uint8_t *key, size_t keylen, const char *data, size_t n, char hex[65])
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned mdlen = 0;
    if (!HMAC(EVP_sha256(), key, (int)keylen, (const uint8_t *)data, n, md, &mdlen) ||
        mdlen != 32)
        return -ENOMEM;
    to_hex(md, 32, hex);
    return 0;
}

static int read_file(const char *path, char **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (cap - n < 65536) {
            cap = cap ? 2 * cap : 65536 + 1;
            char *nb = realloc(buf, cap + 1);
            if (!nb) {
                free(buf);
                fclose(f);
                return -ENOMEM;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(buf);
        return -EIO;
    }
    buf[n] = '\0';
    *out = buf;
    *len = n;
    return 0;
}

/* Write a small file atomically (temp + fsync + rename). */
static int write_atomic(const char *path, const char *data, size_t n)
{
    char *tmp;
    if (asprintf(&tmp, "%s.tmp.%ld", path, (long)getpid()) < 0)
        return -ENOMEM;
    int rc = 0, fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        free(tmp);
        return rc;
    }
    for (size_t done = 0; done < n && !rc;) {
        ssize_t w = write(fd, data + done, n - done);
        if (w < 0 && errno != EINTR)
            rc = -errno;
        else if (w > 0)
            done += (size_t)w;
    }
    if (!rc && fsync(fd) < 0)
        rc = -errno;
    if (close(fd) < 0 && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path) < 0)
        rc = -errno;
    if (rc)
        unlink(tmp);
    free(tmp);
    return rc;
}

int qfs_store_read_key(const char *path, uint8_t **key, size_t *len)
{
    char *buf;
    size_t n;
    int rc = read_file(path, &buf, &n);
    if (rc < 0) {
        fprintf(stderr, "quantfs: hmac key %s: %s\n", path, strerror(-rc));
        return rc;
    }
    if (n < 16) {
        fprintf(stderr, "quantfs: hmac key %s: %zu bytes, at least 16 needed\n", path, n);
        free(buf);
        return -EINVAL;
    }
    *key = (uint8_t *)buf;
    *len = n;
    return 0;
}

/* Manifest text under construction. */
struct text {
    char *s;
    size_t n, cap;
};

static int text_add(struct text *t, const char *line)
{
    size_t l = strlen(line);
    if (t->cap - t->n <= l) {
        size_t nc = (t->cap + l + 1) * 2;
        char *ns = realloc(t->s, nc);
        if (!ns)
            return -ENOMEM;
        t->s = ns;
        t->cap = nc;
    }
    memcpy(t->s + t->n, line, l + 1);
    t->n += l;
    return 0;
}

int qfs_store_export(const char *root, const char *dest, const uint8_t *key, size_t keylen)
{
    char *droot = NULL, *mpath = NULL, *spath = NULL;
    struct text man = {0};
    uint64_t n_entries = 0, n_bytes = 0, skipped = 0, unauth = 0, signed_plain = 0;
    const struct qfs_store_auth auth = {.key = key, .len = keylen};
    int rc = -ENOMEM;
    if (asprintf(&droot, "%s/v1", dest) < 0) {
        droot = NULL;
        goto out;
    }
    if (asprintf(&mpath, "%s/MANIFEST", dest) < 0 || asprintf(&spath, "%s.sig", mpath) < 0)
        goto out;
    if ((rc = qfs_store_mkdir_p(droot)) < 0) {
        fprintf(stderr, "quantfs: cache export: %s: %s\n", droot, strerror(-rc));
        goto out;
    }
    if ((rc = text_add(&man, MANIFEST_HEAD)) < 0)
        goto out;
    DIR *top = opendir(root);
    if (!top) {
        rc = -errno;
        fprintf(stderr, "quantfs: cache export: %s: %s\n", root, strerror(errno));
        goto out;
    }
    for (struct dirent *de; (de = readdir(top)) && !rc;) {
        if (strlen(de->d_name) != 2)
            continue;
        char *sub;
        if (asprintf(&sub, "%s/%s", root, de->d_name) < 0) {
            rc = -ENOMEM;
            break;
        }
        DIR *dp = opendir(sub);
        for (struct dirent *fe; dp && (fe = readdir(dp)) && !rc;) {
            struct qfs_cache_key k;
            if (!qfs_store_parse_name(de->d_name, fe->d_name, &k))
                continue;
            char *path, why[128], hex[65], line[400];
            if (asprintf(&path, "%s/%s", sub, fe->d_name) < 0) {
                rc = -ENOMEM;
                break;
            }
            struct qfs_store_hdr h;
            uint8_t *payload = NULL;
            int v = qfs_store_read(path, &k, UINT64_MAX, NULL, false, &h, &payload, why,
                                   sizeof why);
            if (v == 1 && key && h.authed && !qfs_store_mac_ok(&h, payload, &auth)) {
                fprintf(stderr, "quantfs: cache export: %s: HMAC does not verify under the "
                                "key; not exported\n", path);
                free(payload);
                unauth++;
                v = -EACCES;
            }
            free(path);
            if (v != 1) { /* vanished, corrupt, old or forged: not exported */
                skipped += v != 0;
                continue;
            }
            const char *what = "cannot compute the HMAC of";
            char *where = NULL;
            signed_plain += key && !h.authed;
            rc = key ? qfs_store_mac_set(&h, payload, &auth) : 0; /* same bytes if authed */
            if (!rc)
                rc = entry_sha256(&h, payload, hex);
            if (!rc)
                rc = qfs_store_write_entry(droot, &h, payload, NULL, &what, &where);
            free(payload);
            if (rc < 0) {
                fprintf(stderr, "quantfs: cache export: %s %s: %s\n", what,
                        where ? where : dest, strerror(-rc));
                free(where);
                break;
            }
            const uint64_t size = qfs_store_hdr_size(&h) + h.len;
            snprintf(line, sizeof line, "%s %" PRIu64 " v1/%s/%s\n", hex, size, de->d_name,
                     fe->d_name);
            rc = text_add(&man, line);
            n_entries++;
            n_bytes += size;
        }
        if (dp)
            closedir(dp);
        free(sub);
    }
    closedir(top);
    if (rc)
        goto out;
    if ((rc = write_atomic(mpath, man.s, man.n)) < 0) {
        fprintf(stderr, "quantfs: cache export: %s: %s\n", mpath, strerror(-rc));
        goto out;
    }
    if (key) {
        char hex[65], sig[100];
        if ((rc = hmac_hex(key, keylen, man.s, man.n, hex)) < 0)
            goto out;
        snprintf(sig, sizeof sig, SIG_PREFIX "%s\n", hex);
        if ((rc = write_atomic(spath, sig, strlen(sig))) < 0) {
            fprintf(stderr, "quantfs: cache export: %s: %s\n", spath, strerror(-rc));
            goto out;
        }
    } else {
        unlink(spath); /* a stale signature of an earlier export would not match */
    }
    printf("exported %" PRIu64 " entries (%" PRIu64 " bytes) to %s%s", n_entries, n_bytes, dest,
           key ? ", manifest signed" : "");
    if (signed_plain)
        printf(", %" PRIu64 " plain entries authenticated with the key", signed_plain);
    if (skipped)
        printf(", %" PRIu64 " invalid entries skipped (%" PRIu64 " with a wrong HMAC)", skipped,
               unauth);
    printf("\n");
    rc = 0;
out:
    free(man.s);
    free(droot);
    free(mpath);
    free(spath);
    return rc;
}

struct mline {
    char sha[65];
    uint64_t size;
    char rel[40]; /* "v1/ab/<30 hex>" */
    struct qfs_cache_key key;
};

/* Parse the manifest (after the signature check).  0 or -EBADMSG (message printed). */
static int parse_manifest(char *text, const char *mpath, struct mline **out, size_t *nout)
{
    if (strncmp(text, MANIFEST_HEAD, strlen(MANIFEST_HEAD)) != 0) {
        fprintf(stderr, "quantfs: cache import: %s: not a quantfs manifest\n", mpath);
        return -EBADMSG;
    }
    struct mline *v = NULL;
    size_t n = 0, cap = 0, lineno = 1;
    char *save = NULL;
    for (char *l = strtok_r(text + strlen(MANIFEST_HEAD), "\n", &save); l;
         l = strtok_r(NULL, "\n", &save)) {
        lineno++;
        struct mline m;
        char d2[3], rest[31], tail;
        unsigned long long size;
        if (n == cap) {
            cap = cap ? 2 * cap : 256;
            struct mline *nv = realloc(v, cap * sizeof *nv);
            if (!nv) {
                free(v);
                return -ENOMEM;
            }
            v = nv;
        }
        if (sscanf(l, "%64[0-9a-f] %llu v1/%2[0-9a-f]/%30[0-9a-f]%c", m.sha, &size, d2, rest,
                   &tail) != 4 ||
            strlen(m.sha) != 64 || !qfs_store_parse_name(d2, rest, &m.key) ||
            size < QFS_STORE_HDR) {
            fprintf(stderr, "quantfs: cache import: %s line %zu: malformed\n", mpath, lineno);
            free(v);
            return -EBADMSG;
        }
        m.size = size;
        snprintf(m.rel, sizeof m.rel, "v1/%s/%s", d2, rest);
        v[n++] = m;
    }
    *out = v;
    *nout = n;
    return 0;
}

/* Read and check one listed file: a valid entry of the listed size and digest.
 * 0 with *h and *payload, or -EBADMSG (message printed). */
static int check_listed(const char *src, const struct mline *m, struct qfs_store_hdr *h,
                        uint8_t **payload)
{
    char *path, why[128] = "", hex[65];
    if (asprintf(&path, "%s/%s", src, m->rel) < 0)
        return -ENOMEM;
    /* The manifest's digest authenticates the whole file (its HMAC, if any, included). */
    int v = qfs_store_read(path, &m->key, UINT64_MAX, NULL, false, h, payload, why, sizeof why);
    int rc = 0;
    if (v != 1) {
        fprintf(stderr, "quantfs: cache import: %s: %s\n", path, v == 0 ? "missing" : why);
        rc = -EBADMSG;
    } else if (qfs_store_hdr_size(h) + h->len != m->size) {
        fprintf(stderr, "quantfs: cache import: %s: size differs from the manifest\n", path);
        rc = -EBADMSG;
    } else if ((rc = entry_sha256(h, *payload, hex)) == 0 && strcmp(hex, m->sha) != 0) {
        fprintf(stderr, "quantfs: cache import: %s: SHA-256 differs from the manifest\n", path);
        rc = -EBADMSG;
    }
    if (rc && v == 1) {
        free(*payload);
        *payload = NULL;
    }
    free(path);
    return rc;
}

/* Read src/MANIFEST, check its signature when key is non-NULL (missing or wrong:
 * -EPERM) and parse it.  Messages printed with the prefix who. */
static int load_verified(const char *who, const char *src, const uint8_t *key, size_t keylen,
                         struct mline **lines, size_t *n)
{
    char *mpath = NULL, *spath = NULL, *text = NULL, *sig = NULL;
    size_t tlen = 0, slen = 0;
    int rc = -ENOMEM;
    if (asprintf(&mpath, "%s/MANIFEST", src) < 0) {
        mpath = NULL;
        goto out;
    }
    if (asprintf(&spath, "%s.sig", mpath) < 0) {
        spath = NULL;
        goto out;
    }
    if ((rc = read_file(mpath, &text, &tlen)) < 0) {
        fprintf(stderr, "quantfs: %s: %s: %s\n", who, mpath, strerror(-rc));
        goto out;
    }
    if (strlen(text) != tlen) {
        fprintf(stderr, "quantfs: %s: %s: not a text manifest\n", who, mpath);
        rc = -EBADMSG;
        goto out;
    }
    if (key) {
        char hex[65];
        if ((rc = read_file(spath, &sig, &slen)) < 0) {
            fprintf(stderr, "quantfs: %s: refused: %s: %s (the manifest must be signed with "
                            "the key)\n", who, spath, strerror(-rc));
            rc = -EPERM;
            goto out;
        }
        if ((rc = hmac_hex(key, keylen, text, tlen, hex)) < 0)
            goto out;
        const size_t pl = strlen(SIG_PREFIX);
        if (slen != pl + 65 || strncmp(sig, SIG_PREFIX, pl) != 0 || sig[pl + 64] != '\n' ||
            CRYPTO_memcmp(sig + pl, hex, 64) != 0) {
            fprintf(stderr, "quantfs: %s: refused: %s does not match the manifest under this "
                            "key\n", who, spath);
            rc = -EPERM;
            goto out;
        }
    } else if (access(spath, F_OK) == 0) {
        fprintf(stderr, "quantfs: %s: %s not checked (no key given); relying on the SHA-256 "
                        "digests only\n", who, spath);
    }
    rc = parse_manifest(text, mpath, lines, n);
out:
    free(text);
    free(sig);
    free(mpath);
    free(spath);
    return rc;
}

int qfs_store_import(const char *root, const char *src, const uint8_t *key, size_t keylen)
{
    size_t n = 0;
    struct mline *lines = NULL;
    const struct qfs_store_auth auth = {.key = key, .len = keylen}, *ap = key ? &auth : NULL;
    int rc = load_verified("cache import", src, key, keylen, &lines, &n);
    if (rc < 0)
        goto out;
    /* Pass 1: everything verifies, or nothing is copied. */
    for (size_t i = 0; i < n; i++) {
        struct qfs_store_hdr h;
        uint8_t *payload = NULL;
        if ((rc = check_listed(src, &lines[i], &h, &payload)) < 0) {
            fprintf(stderr, "quantfs: cache import: refused; nothing imported\n");
            goto out;
        }
        free(payload);
    }
    if ((rc = qfs_store_mkdir_p(root)) < 0) {
        fprintf(stderr, "quantfs: cache import: %s: %s\n", root, strerror(-rc));
        goto out;
    }
    /* Pass 2: copy, checking the bytes that are copied once more. */
    uint64_t copied = 0, present = 0;
    for (size_t i = 0; i < n; i++) {
        struct qfs_store_hdr h, h2;
        uint8_t *payload = NULL;
        char why[128], *path = qfs_store_path(root, &lines[i].key);
        if (!path) {
            rc = -ENOMEM;
            goto out;
        }
        int have = qfs_store_read(path, &lines[i].key, UINT64_MAX, ap, false, &h2, NULL, why,
                                  sizeof why);
        free(path);
        if (have == 1) {
            present++;
            continue;
        }
        if ((rc = check_listed(src, &lines[i], &h, &payload)) < 0) {
            fprintf(stderr, "quantfs: cache import: %s changed during the import; stopped\n",
                    lines[i].rel);
            goto out;
        }
        const char *what = "cannot compute the HMAC of";
        char *where = NULL;
        rc = key ? qfs_store_mac_set(&h, payload, &auth) : 0; /* authenticated here */
        if (!rc)
            rc = qfs_store_write_entry(root, &h, payload, NULL, &what, &where);
        free(payload);
        if (rc < 0) {
            fprintf(stderr, "quantfs: cache import: %s %s: %s\n", what, where ? where : root,
                    strerror(-rc));
            free(where);
            goto out;
        }
        copied++;
    }
    printf("imported %" PRIu64 " entries, %" PRIu64 " already present, from %s%s\n", copied,
           present, src, key ? " (signature verified)" : "");
    rc = 0;
out:
    free(lines);
    return rc;
}

/* ---- a signed shared tier (-o cache_shared with cache_hmac_key) ---- */

struct qfs_store_manifest {
    struct mline *v; /* sorted by key */
    size_t n;
};

static int cmp_mline(const void *a, const void *b)
{
    return memcmp(((const struct mline *)a)->key.b, ((const struct mline *)b)->key.b, 16);
}

int qfs_store_manifest_load(const char *src, const struct qfs_store_auth *key,
                            struct qfs_store_manifest **out)
{
    struct qfs_store_manifest *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    int rc = load_verified("shared cache", src, key->key, key->len, &m->v, &m->n);
    if (rc < 0) {
        free(m);
        return rc;
    }
    if (m->n > 1) /* an empty manifest has no array at all (m->v NULL) */
        qsort(m->v, m->n, sizeof *m->v, cmp_mline);
    *out = m;
    return 0;
}

/* The manifest line of key k, or NULL (also for an empty manifest, whose array is NULL:
 * bsearch must not see it). */
static const struct mline *manifest_find(const struct qfs_store_manifest *m,
                                         const struct qfs_cache_key *k)
{
    struct mline probe;
    if (m->n == 0)
        return NULL;
    probe.key = *k;
    return bsearch(&probe, m->v, m->n, sizeof *m->v, cmp_mline);
}

bool qfs_store_manifest_lists(const struct qfs_store_manifest *m, const struct qfs_cache_key *k)
{
    return manifest_find(m, k) != NULL;
}

bool qfs_store_manifest_check(const struct qfs_store_manifest *m, const struct qfs_store_hdr *h,
                              const uint8_t *payload)
{
    char hex[65];
    const struct mline *l = manifest_find(m, &h->key);
    return l && l->size == qfs_store_hdr_size(h) + h->len && entry_sha256(h, payload, hex) == 0 &&
           strcmp(hex, l->sha) == 0;
}

void qfs_store_manifest_free(struct qfs_store_manifest *m)
{
    if (!m)
        return;
    free(m->v);
    free(m);
}
