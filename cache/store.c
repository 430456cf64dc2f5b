/* The on-disk entry store: entry files (see store.h for the layout), their verification,
 * atomic writes, and whole-store scans (stat, verify, gc, LRU eviction).
 *
 * Concurrency: any number of processes on any number of hosts may use one store.  Writers
 * never expose a partial file (unique temp name + rename); readers and scanners treat a
 * file that vanishes under them as absent; a temp file is removed only when it is old
 * (QFS_STORE_TMP_STALE_S) or belongs to a dead process of this host. */
#include "cache/store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <xxhash.h>

#include "cache/xxh.h"

#define MAGIC "QFSC"

static void put_le32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_le32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint64_t get_le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

size_t qfs_store_hdr_size(const struct qfs_store_hdr *h)
{
    return h->authed ? QFS_STORE_HDR_AUTH : QFS_STORE_HDR;
}

size_t qfs_store_hdr_encode(const struct qfs_store_hdr *h, uint8_t out[QFS_STORE_HDR_MAX])
{
    memcpy(out, MAGIC, 4);
    put_le32(out + 4, h->authed ? QFS_STORE_FORMAT_AUTH : QFS_STORE_FORMAT);
    memcpy(out + 8, h->key.b, 16);
    put_le64(out + 24, h->len);
    put_le64(out + 32, h->sum);
    put_le32(out + 40, h->tag);
    put_le32(out + 44, (uint32_t)qfs_xxh3_64(out, 44));
    if (h->authed)
        memcpy(out + QFS_STORE_HDR, h->mac, QFS_STORE_MAC);
    return qfs_store_hdr_size(h);
}

/* HMAC-SHA256 under a of the 48 header bytes of h as format 3, then the payload.
 * 0 or -ENOMEM. */
static int entry_mac(const struct qfs_store_hdr *h, const uint8_t *payload,
                     const struct qfs_store_auth *a, uint8_t mac[QFS_STORE_MAC])
{
    struct qfs_store_hdr g = *h;
    uint8_t hdr[QFS_STORE_HDR_MAX];
    size_t maclen = 0;
    g.authed = true;
    qfs_store_hdr_encode(&g, hdr);
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                           OSSL_PARAM_construct_end()};
    EVP_MAC *alg = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = alg ? EVP_MAC_CTX_new(alg) : NULL;
    const int ok = ctx && EVP_MAC_init(ctx, a->key, a->len, params) == 1 &&
                   EVP_MAC_update(ctx, hdr, QFS_STORE_HDR) == 1 &&
                   EVP_MAC_update(ctx, payload, h->len) == 1 &&
                   EVP_MAC_final(ctx, mac, &maclen, QFS_STORE_MAC) == 1 &&
                   maclen == QFS_STORE_MAC;
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(alg);
    return ok ? 0 : -ENOMEM;
}

int qfs_store_mac_set(struct qfs_store_hdr *h, const uint8_t *payload,
                      const struct qfs_store_auth *a)
{
    int rc = entry_mac(h, payload, a, h->mac);
    h->authed = rc == 0;
    return rc;
}

bool qfs_store_mac_ok(const struct qfs_store_hdr *h, const uint8_t *payload,
                      const struct qfs_store_auth *a)
{
    uint8_t mac[QFS_STORE_MAC];
    return h->authed && entry_mac(h, payload, a, mac) == 0 &&
           CRYPTO_memcmp(mac, h->mac, QFS_STORE_MAC) == 0;
}

/* The header size of a format version, 0 for one we do not read. */
static size_t format_hdr(uint32_t version)
{
    return version == QFS_STORE_FORMAT ? QFS_STORE_HDR
         : version == QFS_STORE_FORMAT_AUTH ? QFS_STORE_HDR_AUTH : 0;
}

static const char hexd[] = "0123456789abcdef";

char *qfs_store_path(const char *root, const struct qfs_cache_key *k)
{
    char hex[33];
    for (int i = 0; i < 16; i++) {
        hex[2 * i] = hexd[k->b[i] >> 4];
        hex[2 * i + 1] = hexd[k->b[i] & 15];
    }
    hex[32] = '\0';
    char *p;
    if (asprintf(&p, "%s/%.2s/%s", root, hex, hex + 2) < 0)
        return NULL;
    return p;
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

bool qfs_store_parse_name(const char *dir2, const char *name30, struct qfs_cache_key *k)
{
    char hex[33];
    if (strlen(dir2) != 2 || strlen(name30) != 30)
        return false;
    memcpy(hex, dir2, 2);
    memcpy(hex + 2, name30, 31);
    for (int i = 0; i < 16; i++) {
        int a = hexval(hex[2 * i]), b = hexval(hex[2 * i + 1]);
        if (a < 0 || b < 0)
            return false;
        k->b[i] = (uint8_t)(a << 4 | b);
    }
    return true;
}

/* Full pread; returns bytes read (< n only at EOF) or negative errno. */
static ssize_t pread_full(int fd, void *buf, size_t n, off_t off)
{
    size_t got = 0;
    while (got < n) {
        ssize_t r = pread(fd, (uint8_t *)buf + got, n - got, off + (off_t)got);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (r == 0)
            break;
        got += (size_t)r;
    }
    return (ssize_t)got;
}

static int write_full(int fd, const void *buf, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t r = write(fd, (const uint8_t *)buf + done, n - done);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        done += (size_t)r;
    }
    return 0;
}

int qfs_store_read(const char *path, const struct qfs_cache_key *expect_key, uint64_t want_len,
                   const struct qfs_store_auth *auth, bool touch, struct qfs_store_hdr *h,
                   uint8_t **payload, char *why, size_t whylen)
{
    uint8_t *buf = NULL, hdr[QFS_STORE_HDR_MAX];
    int rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        rc = errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
        snprintf(why, whylen, "%s", strerror(errno));
        return rc;
    }
    struct stat st;
    ssize_t n = pread_full(fd, hdr, sizeof hdr, 0);
    if (n < 0 || fstat(fd, &st) < 0) {
        rc = n < 0 ? (int)n : -errno;
        snprintf(why, whylen, "%s", strerror(-rc));
        goto out;
    }
    rc = -EBADMSG;
    const size_t hs = n >= 8 ? format_hdr(get_le32(hdr + 4)) : 0;
    if (n >= 8 && memcmp(hdr, MAGIC, 4) == 0 && hs == 0) {
        snprintf(why, whylen, "format version %" PRIu32 ", expected %u or %u", get_le32(hdr + 4),
                 QFS_STORE_FORMAT, QFS_STORE_FORMAT_AUTH);
        rc = -EPROTO;
        goto out;
    }
    if (n < QFS_STORE_HDR || (size_t)n < hs) {
        snprintf(why, whylen, "truncated header (%zd of %zu bytes)", n,
                 hs ? hs : (size_t)QFS_STORE_HDR);
        goto out;
    }
    if (memcmp(hdr, MAGIC, 4) != 0) {
        snprintf(why, whylen, "bad magic");
        goto out;
    }
    if (get_le32(hdr + 44) != (uint32_t)qfs_xxh3_64(hdr, 44)) {
        snprintf(why, whylen, "header checksum mismatch");
        goto out;
    }
    memcpy(h->key.b, hdr + 8, 16);
    h->len = get_le64(hdr + 24);
    h->sum = get_le64(hdr + 32);
    h->tag = get_le32(hdr + 40);
    h->authed = hs == QFS_STORE_HDR_AUTH;
    if (h->authed)
        memcpy(h->mac, hdr + QFS_STORE_HDR, QFS_STORE_MAC);
    if (expect_key && memcmp(h->key.b, expect_key->b, 16) != 0) {
        snprintf(why, whylen, "key in header does not match its name");
        goto out;
    }
    if (h->len > (uint64_t)SIZE_MAX - hs || (uint64_t)st.st_size != hs + h->len) {
        snprintf(why, whylen, "file is %jd bytes, header says %" PRIu64 " + %zu",
                 (intmax_t)st.st_size, h->len, hs);
        goto out;
    }
    if (want_len != UINT64_MAX && h->len != want_len) {
        snprintf(why, whylen, "holds %" PRIu64 " bytes, %" PRIu64 " wanted", h->len, want_len);
        rc = 0; /* a valid entry of another length: a miss */
        goto out;
    }
    buf = malloc(h->len ? h->len : 1);
    if (!buf) {
        rc = -ENOMEM;
        snprintf(why, whylen, "out of memory");
        goto out;
    }
    n = pread_full(fd, buf, h->len, (off_t)hs);
    if (n < 0) {
        rc = (int)n;
        snprintf(why, whylen, "%s", strerror(-rc));
        goto out;
    }
    if ((uint64_t)n != h->len) {
        snprintf(why, whylen, "truncated payload (%zd of %" PRIu64 " bytes)", n, h->len);
        goto out;
    }
    if (qfs_xxh3_64(buf, h->len) != h->sum) {
        snprintf(why, whylen, "payload checksum mismatch");
        goto out;
    }
    if (auth && !qfs_store_mac_ok(h, buf, auth)) {
        snprintf(why, whylen, "%s", h->authed ? "HMAC does not verify under the key"
                                              : "no HMAC (written without the key)");
        rc = -EACCES;
        goto out;
    }
    if (touch)
        (void)futimens(fd, NULL);
    close(fd);
    if (payload)
        *payload = buf;
    else
        free(buf);
    return 1;
out:
    close(fd);
    free(buf);
    return rc;
}

int qfs_store_mkdir_p(const char *path)
{
    char *p = strdup(path);
    if (!p)
        return -ENOMEM;
    int rc = 0;
    for (char *s = p + 1;; s++) {
        if (*s != '/' && *s != '\0')
            continue;
        char save = *s;
        *s = '\0';
        if (mkdir(p, 0700) < 0 && errno != EEXIST) {
            rc = -errno;
            break;
        }
        *s = save;
        if (save == '\0')
            break;
    }
    if (rc == 0) {
        struct stat st;
        if (stat(p, &st) < 0)
            rc = -errno;
        else if (!S_ISDIR(st.st_mode))
            rc = -ENOTDIR;
    }
    free(p);
    return rc;
}

/* This host's name for temp files: no '/', at most 64 bytes. */
static const char *host_name(void)
{
    static char host[65];
    static atomic_int done;
    if (!atomic_load(&done)) {
        char h[65] = "";
        if (gethostname(h, sizeof h - 1) < 0 || !h[0])
            strcpy(h, "localhost");
        for (char *s = h; *s; s++)
            if (*s == '/' || *s <= ' ')
                *s = '_';
        memcpy(host, h, sizeof host); /* same bytes from any thread: a benign race */
        atomic_store(&done, 1);
    }
    return host;
}

int qfs_store_write(const char *root, const struct qfs_cache_key *k, uint32_t tag,
                    const uint8_t *data, uint64_t len, const struct qfs_store_auth *auth,
                    uint64_t *bytes, const char **what, char **where)
{
    struct qfs_store_hdr h = {.key = *k, .len = len, .sum = qfs_xxh3_64(data, len), .tag = tag};
    *where = NULL;
    if (auth && qfs_store_mac_set(&h, data, auth) < 0) {
        *what = "cannot compute the HMAC of";
        *where = qfs_store_path(root, k);
        return -ENOMEM;
    }
    return qfs_store_write_entry(root, &h, data, bytes, what, where);
}

int qfs_store_write_entry(const char *root, const struct qfs_store_hdr *h, const uint8_t *data,
                          uint64_t *bytes, const char **what, char **where)
{
    static atomic_uint_fast64_t seq;
    char *path = qfs_store_path(root, &h->key), *tmp = NULL;
    int fd = -1, rc = -ENOMEM;
    *what = "cannot allocate";
    *where = NULL;
    if (!path)
        return -ENOMEM;
    char *slash = strrchr(path, '/');
    *slash = '\0';
    if (mkdir(path, 0700) < 0 && errno != EEXIST) {
        rc = -errno;
        *what = "cannot create";
        *where = path;
        return rc;
    }
    *slash = '/';
    unsigned long long s = atomic_fetch_add(&seq, 1);
    if (asprintf(&tmp, "%.*s/.tmp.%s.%s.%ld.%llu", (int)(slash - path), path, slash + 1,
                 host_name(), (long)getpid(), s) < 0) {
        tmp = NULL;
        goto fail;
    }
    fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        *what = "cannot create";
        goto fail;
    }
    uint8_t hdr[QFS_STORE_HDR_MAX];
    const size_t hs = qfs_store_hdr_encode(h, hdr);
    if ((rc = write_full(fd, hdr, hs)) < 0 || (rc = write_full(fd, data, h->len)) < 0) {
        *what = "cannot write";
        goto fail_unlink;
    }
    if (fsync(fd) < 0) {
        rc = -errno;
        *what = "cannot fsync";
        goto fail_unlink;
    }
    int cfd = fd;
    fd = -1;
    if (close(cfd) < 0) {
        rc = -errno;
        *what = "cannot close";
        goto fail_unlink;
    }
    if (rename(tmp, path) < 0) {
        rc = -errno;
        *what = "cannot rename into place";
        unlink(tmp);
        goto fail;
    }
    if (bytes)
        *bytes = hs + h->len;
    free(tmp);
    free(path);
    return 0;

fail_unlink:
    if (fd >= 0)
        close(fd);
    fd = -1;
    unlink(tmp);
fail:
    if (fd >= 0)
        close(fd);
    if (tmp) {
        *where = tmp;
        free(path);
    } else {
        *where = path;
    }
    return rc;
}

/* ---- scans ---- */

struct item {
    char *path;
    struct qfs_cache_key key;
    uint64_t size;
    int64_t mtime_ns;
};

static int cmp_mtime(const void *a, const void *b)
{
    const struct item *x = a, *y = b;
    return x->mtime_ns < y->mtime_ns ? -1 : x->mtime_ns > y->mtime_ns;
}

/* A temp file name ".tmp.<30hex>.<host>.<pid>.<seq>": may it be removed?  Old ones
 * always; younger ones only when written by a process of this host that is gone. */
static bool tmp_is_stale(const char *name, const struct stat *st, time_t now)
{
    if (now - st->st_mtime > QFS_STORE_TMP_STALE_S)
        return true;
    const char *host = name + 5 + 31; /* after ".tmp." + 30 hex + "." */
    if (strlen(name) < 5 + 31)
        return false;
    const char *dot_seq = strrchr(name, '.');
    if (!dot_seq || dot_seq <= host)
        return false;
    const char *dot_pid = dot_seq - 1;
    while (dot_pid > host && *dot_pid != '.')
        dot_pid--;
    if (dot_pid <= host)
        return false;
    const char *me = host_name();
    if ((size_t)(dot_pid - host) != strlen(me) || memcmp(host, me, strlen(me)) != 0)
        return false;
    long pid = strtol(dot_pid + 1, NULL, 10);
    return pid > 0 && pid != getpid() && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

static void tag_count(struct qfs_store_report *r, uint32_t tag, uint64_t bytes)
{
    for (int i = 0; i < r->n_tags; i++)
        if (r->tags[i].tag == tag) {
            r->tags[i].n++;
            r->tags[i].bytes += bytes;
            return;
        }
    if (r->n_tags < (int)(sizeof r->tags / sizeof r->tags[0])) {
        r->tags[r->n_tags].tag = tag;
        r->tags[r->n_tags].n = 1;
        r->tags[r->n_tags].bytes = bytes;
        r->n_tags++;
    }
}

static bool tag_live(const struct qfs_store_scan_opts *o, uint32_t tag)
{
    if (o->n_live == 0)
        return true;
    for (int i = 0; i < o->n_live; i++)
        if (o->live_tags[i] == tag)
            return true;
    return false;
}

static void remove_entry(const char *path, uint64_t size, const char *why, bool verbose,
                         struct qfs_store_report *r)
{
    if (unlink(path) < 0 && errno != ENOENT)
        return;
    r->removed++;
    r->removed_bytes += size;
    if (verbose)
        printf("removed %s: %s\n", path, why);
}

/* Only the header: enough for stat (format version, tag, length vs size). */
static int read_header_only(const char *path, const struct qfs_cache_key *k, uint64_t size,
                            struct qfs_store_hdr *h, char *why, size_t whylen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(why, whylen, "%s", strerror(errno));
        return errno == ENOENT ? 0 : -errno;
    }
    uint8_t hdr[QFS_STORE_HDR_MAX];
    ssize_t n = pread_full(fd, hdr, sizeof hdr, 0);
    close(fd);
    if (n < 0) {
        snprintf(why, whylen, "%s", strerror((int)-n));
        return (int)n;
    }
    const size_t hs = n >= 8 ? format_hdr(get_le32(hdr + 4)) : 0;
    if (n >= 8 && memcmp(hdr, MAGIC, 4) == 0 && hs == 0) {
        snprintf(why, whylen, "format version %" PRIu32, get_le32(hdr + 4));
        return -EPROTO;
    }
    if (hs == 0 || (size_t)n < hs || memcmp(hdr, MAGIC, 4) != 0 ||
        get_le32(hdr + 44) != (uint32_t)qfs_xxh3_64(hdr, 44) || memcmp(hdr + 8, k->b, 16) != 0 ||
        get_le64(hdr + 24) + hs != size) {
        snprintf(why, whylen, "bad header");
        return -EBADMSG;
    }
    memcpy(h->key.b, hdr + 8, 16);
    h->len = get_le64(hdr + 24);
    h->sum = get_le64(hdr + 32);
    h->tag = get_le32(hdr + 40);
    h->authed = hs == QFS_STORE_HDR_AUTH;
    if (h->authed)
        memcpy(h->mac, hdr + QFS_STORE_HDR, QFS_STORE_MAC);
    return 1;
}

int qfs_store_scan(const char *root, const struct qfs_store_scan_opts *o,
                   struct qfs_store_report *r)
{
    memset(r, 0, sizeof *r);
    r->oldest_ns = INT64_MAX;
    DIR *top = opendir(root);
    if (!top)
        return errno == ENOENT ? 0 : -errno;
    struct item *items = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    const time_t now = time(NULL);
    const bool removing = o->op == QFS_STORE_GC || o->op == QFS_STORE_EVICT ||
                          (o->op == QFS_STORE_VERIFY && o->fix);
    char why[128];
    for (struct dirent *de; (de = readdir(top));) {
        const char *d2 = de->d_name;
        if (strlen(d2) != 2 || hexval(d2[0]) < 0 || hexval(d2[1]) < 0)
            continue;
        char *sub;
        if (asprintf(&sub, "%s/%s", root, d2) < 0) {
            rc = -ENOMEM;
            break;
        }
        DIR *dp = opendir(sub);
        if (!dp) {
            free(sub);
            continue;
        }
        for (struct dirent *fe; (fe = readdir(dp));) {
            const char *name = fe->d_name;
            struct stat st;
            char *path;
            if (name[0] == '.' && (!name[1] || (name[1] == '.' && !name[2])))
                continue;
            if (asprintf(&path, "%s/%s", sub, name) < 0) {
                rc = -ENOMEM;
                break;
            }
            if (lstat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
                free(path);
                continue;
            }
            if (!strncmp(name, ".tmp.", 5)) {
                r->tmp_files++;
                if ((o->op == QFS_STORE_GC || o->op == QFS_STORE_EVICT) &&
                    tmp_is_stale(name, &st, now) && unlink(path) == 0) {
                    r->tmp_removed++;
                    if (o->verbose)
                        printf("removed %s: abandoned temporary file\n", path);
                }
                free(path);
                continue;
            }
            struct qfs_cache_key k;
            if (!qfs_store_parse_name(d2, name, &k)) {
                free(path);
                continue;
            }
            const uint64_t size = (uint64_t)st.st_size;
            const int64_t mt = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
            struct qfs_store_hdr h;
            int v = 1;
            if (o->op == QFS_STORE_VERIFY || o->op == QFS_STORE_GC)
                v = qfs_store_read(path, &k, UINT64_MAX, o->auth, false, &h, NULL, why,
                                   sizeof why);
            else if (o->op == QFS_STORE_STAT)
                v = read_header_only(path, &k, size, &h, why, sizeof why);
            if (v == 0 ||
                (v < 0 && v != -EBADMSG && v != -EPROTO && v != -EACCES)) { /* vanished */
                free(path);
                continue;
            }
            r->entries++;
            r->bytes += size;
            if (v == -EACCES) {
                r->unauth++;
                if (o->verbose)
                    printf("not authenticated %s: %s\n", path, why);
                if (o->op == QFS_STORE_GC || (o->op == QFS_STORE_VERIFY && o->fix))
                    remove_entry(path, size, why, o->verbose, r);
                free(path);
                continue;
            }
            if (v == -EPROTO) {
                r->stale_format++;
                if (o->op == QFS_STORE_GC)
                    remove_entry(path, size, why, o->verbose, r);
                free(path);
                continue;
            }
            if (v == -EBADMSG) {
                r->bad++;
                if (o->verbose)
                    printf("bad %s: %s\n", path, why);
                if (removing && o->op != QFS_STORE_EVICT)
                    remove_entry(path, size, why, o->verbose, r);
                free(path);
                continue;
            }
            if (o->op != QFS_STORE_EVICT) {
                tag_count(r, h.tag, size);
                r->authed += h.authed;
            }
            if (o->op == QFS_STORE_GC && !tag_live(o, h.tag)) {
                r->dead_tag++;
                remove_entry(path, size, "no codec uses its version", o->verbose, r);
                free(path);
                continue;
            }
            if (mt < r->oldest_ns)
                r->oldest_ns = mt;
            if (mt > r->newest_ns)
                r->newest_ns = mt;
            if (n == cap) {
                size_t nc = cap ? 2 * cap : 256;
                struct item *ni = realloc(items, nc * sizeof *ni);
                if (!ni) {
                    free(path);
                    rc = -ENOMEM;
                    break;
                }
                items = ni;
                cap = nc;
            }
            items[n++] = (struct item){.path = path, .key = k, .size = size, .mtime_ns = mt};
        }
        closedir(dp);
        free(sub);
        if (rc)
            break;
    }
    closedir(top);
    uint64_t kept = 0;
    for (size_t i = 0; i < n; i++)
        kept += items[i].size;
    if (!rc && o->max && kept > o->max && (o->op == QFS_STORE_GC || o->op == QFS_STORE_EVICT)) {
        qsort(items, n, sizeof *items, cmp_mtime);
        for (size_t i = 0; i < n && kept > o->max; i++) {
            if (o->in_use && o->in_use(o->in_use_arg, &items[i].key, items[i].size))
                continue;
            uint64_t before = r->removed;
            remove_entry(items[i].path, items[i].size, "least recently used", o->verbose, r);
            if (r->removed != before) {
                r->evicted++;
                kept -= items[i].size;
                items[i].size = 0;
            }
        }
    }
    r->kept = 0;
    r->kept_bytes = kept;
    for (size_t i = 0; i < n; i++) {
        r->kept += items[i].size != 0;
        free(items[i].path);
    }
    free(items);
    if (r->oldest_ns == INT64_MAX)
        r->oldest_ns = 0;
    return rc;
}
