/* quantfs cache stat|gc|verify|export|import: inspect, clean and share a cache directory
 * (layout in cache/store.h).  Safe while mounts use the same directory: entries appear by
 * rename, and a reader whose entry vanishes recomputes it. */
#include <errno.h>
#include <stdbool.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../cache/store.h"
#include "../../codecs/format.h"
#include "commands.h"
#include "../options.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: quantfs cache stat [DIR]\n"
            "       quantfs cache verify [--hmac-key FILE] [--delete] [DIR]\n"
            "       quantfs cache gc [--hmac-key FILE] [--max SIZE] [DIR]\n"
            "       quantfs cache export [--hmac-key FILE] DEST [DIR]\n"
            "       quantfs cache import [--hmac-key FILE] SRC [DIR]\n"
            "DIR: the cache directory (default: the mount's default cache directory).\n"
            "verify exits 1 when an entry is bad; gc removes bad entries, entries of old\n"
            "formats or of codec versions no longer used, abandoned temporary files, and\n"
            "with --max the least recently used entries beyond SIZE.  With --hmac-key (the\n"
            "mounts' -o cache_hmac_key), verify and gc also check every entry's HMAC: an\n"
            "entry without a valid one is reported (verify exits 1) and removed by gc and\n"
            "verify --delete.  export/import copy verified entries with a SHA-256 manifest,\n"
            "signed (HMAC-SHA256) with --hmac-key, the entries then authenticated with it;\n"
            "import refuses anything that does not verify.\n");
}

/* The tags a current build can ask for: the source hashes and each format's current
 * version.  Everything else is garbage to gc. */
static bool tag_live(uint32_t tag)
{
    if (tag == QFS_CACHE_TAG(QFS_CODEC_SRCHASH, QFS_SRCHASH_VERSION))
        return true;
    const struct qfs_format *f = qfs_format_by_codec(tag >> 16);
    return f && QFS_CACHE_TAG(f->cache_codec, f->version) == tag;
}

static const char *codec_name(uint32_t tag)
{
    const struct qfs_format *f = qfs_format_by_codec(tag >> 16);
    if (f)
        return f->name;
    switch (tag >> 16) {
    case QFS_CODEC_NONE: return "untagged";
    case QFS_CODEC_SRCHASH: return "source-hash";
    default: return "unknown";
    }
}

static void print_time(const char *label, int64_t ns)
{
    char buf[64] = "-";
    time_t t = (time_t)(ns / 1000000000);
    struct tm tm;
    if (ns && localtime_r(&t, &tm))
        strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
    printf("%-14s %s\n", label, buf);
}

static int do_stat(const char *dir, const char *root)
{
    struct qfs_store_scan_opts o = {.op = QFS_STORE_STAT};
    struct qfs_store_report r;
    int rc = qfs_store_scan(root, &o, &r);
    if (rc < 0) {
        fprintf(stderr, "quantfs cache: %s: %s\n", root, strerror(-rc));
        return 1;
    }
    printf("%-14s %s\n", "directory", dir);
    printf("%-14s %" PRIu64 "\n", "entries", r.entries);
    printf("%-14s %" PRIu64 " (%.1f MiB)\n", "bytes", r.bytes, (double)r.bytes / (1 << 20));
    for (int i = 0; i < r.n_tags; i++)
        printf("  %-12s v%-3u %8" PRIu64 " entries %12" PRIu64 " bytes%s\n",
               codec_name(r.tags[i].tag), r.tags[i].tag & 0xffff, r.tags[i].n,
               r.tags[i].bytes, tag_live(r.tags[i].tag) ? "" : "  (unused: gc removes)");
    printf("%-14s %" PRIu64 " (HMAC not checked here: verify --hmac-key)\n", "with HMAC",
           r.authed);
    printf("%-14s %" PRIu64 "\n", "old format", r.stale_format);
    printf("%-14s %" PRIu64 "\n", "bad headers", r.bad);
    printf("%-14s %" PRIu64 "\n", "temp files", r.tmp_files);
    print_time("least recent", r.oldest_ns);
    print_time("most recent", r.newest_ns);
    return 0;
}

/* auth: NULL, or the key every entry must be authenticated with. */
static int do_verify(const char *root, bool fix, const struct qfs_store_auth *auth)
{
    struct qfs_store_scan_opts o = {.op = QFS_STORE_VERIFY, .fix = fix, .verbose = true,
                                    .auth = auth};
    struct qfs_store_report r;
    int rc = qfs_store_scan(root, &o, &r);
    if (rc < 0) {
        fprintf(stderr, "quantfs cache: %s: %s\n", root, strerror(-rc));
        return 1;
    }
    printf("verified %" PRIu64 " entries%s: %" PRIu64 " bad, %" PRIu64 " of an old format",
           r.entries - r.bad - r.stale_format - r.unauth, auth ? " (HMAC checked)" : "", r.bad,
           r.stale_format);
    if (auth)
        printf(", %" PRIu64 " without a valid HMAC", r.unauth);
    printf("%s\n", fix && r.removed ? " (bad ones removed)" : "");
    return (r.bad || r.unauth) && !fix ? 1 : 0;
}

static int do_gc(const char *root, uint64_t max, const struct qfs_store_auth *auth)
{
    uint32_t live_tags[QFS_MAX_FORMATS + 1];
    int n_live = 0;
    live_tags[n_live++] = QFS_CACHE_TAG(QFS_CODEC_SRCHASH, QFS_SRCHASH_VERSION);
    for (int i = 0; qfs_formats[i] && n_live <= QFS_MAX_FORMATS; i++)
        live_tags[n_live++] = QFS_CACHE_TAG(qfs_formats[i]->cache_codec, qfs_formats[i]->version);
    struct qfs_store_scan_opts o = {.op = QFS_STORE_GC, .verbose = false, .max = max,
                                    .live_tags = live_tags, .n_live = n_live,
                                    .auth = auth};
    struct qfs_store_report r;
    int rc = qfs_store_scan(root, &o, &r);
    if (rc < 0) {
        fprintf(stderr, "quantfs cache: %s: %s\n", root, strerror(-rc));
        return 1;
    }
    printf("removed %" PRIu64 " entries (%" PRIu64 " bytes): %" PRIu64 " bad, %" PRIu64
           " old format, %" PRIu64 " unused codec versions, %" PRIu64
           " least recently used; %" PRIu64 " temp files\n",
           r.removed, r.removed_bytes, r.bad, r.stale_format, r.dead_tag, r.evicted,
           r.tmp_removed);
    if (auth)
        printf("removed %" PRIu64 " entries without a valid HMAC\n", r.unauth);
    printf("kept %" PRIu64 " entries (%" PRIu64 " bytes)\n", r.kept, r.kept_bytes);
    return 0;
}

/* The default cache directory, as a mount would use it. */
static char *default_dir(void)
{
    char *argv[] = {"quantfs", "x", "y", NULL};
    struct qfs_opts o;
    if (qfs_opts_parse(3, argv, &o) != 0)
        return NULL;
    char *d = o.cache_dir ? strdup(o.cache_dir) : NULL;
    qfs_opts_free(&o);
    return d;
}

int qfs_cmd_cache(int argc, char **argv)
{
    if (argc < 2 || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *sub = argv[1], *keyfile = NULL, *pos[2] = {NULL, NULL};
    bool fix = false;
    uint64_t max = 0;
    int npos = 0, status = 2;
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--hmac-key") && i + 1 < argc) {
            keyfile = argv[++i];
        } else if (!strcmp(argv[i], "--max") && i + 1 < argc) {
            if (qfs_parse_size(argv[++i], &max) < 0) {
                fprintf(stderr, "quantfs cache: --max %s: not a size\n", argv[i]);
                return 2;
            }
        } else if (!strcmp(argv[i], "--delete")) {
            fix = true;
        } else if (argv[i][0] == '-' || npos == 2) {
            fprintf(stderr, "quantfs cache: unexpected argument %s\n", argv[i]);
            usage(stderr);
            return 2;
        } else {
            pos[npos++] = argv[i];
        }
    }
    const bool xfer = !strcmp(sub, "export") || !strcmp(sub, "import");
    if (xfer && npos < 1) {
        fprintf(stderr, "quantfs cache %s: a directory to %s is needed\n", sub,
                sub[0] == 'e' ? "export to" : "import from");
        return 2;
    }
    if (!xfer && npos > 1) {
        usage(stderr);
        return 2;
    }
    const char *given = xfer ? pos[1] : pos[0];
    char *dir = given ? strdup(given) : default_dir(), *root = NULL;
    if (!dir || asprintf(&root, "%s/v1", dir) < 0) {
        fprintf(stderr, "quantfs cache: out of memory\n");
        free(dir);
        return 1;
    }
    uint8_t *key = NULL;
    size_t keylen = 0;
    if (keyfile && qfs_store_read_key(keyfile, &key, &keylen) < 0) {
        status = 1;
        goto out;
    }
    const struct qfs_store_auth auth = {.key = key, .len = keylen};
    if (!strcmp(sub, "stat"))
        status = do_stat(dir, root);
    else if (!strcmp(sub, "verify"))
        status = do_verify(root, fix, key ? &auth : NULL);
    else if (!strcmp(sub, "gc"))
        status = do_gc(root, max, key ? &auth : NULL);
    else if (!strcmp(sub, "export"))
        status = qfs_store_export(root, pos[0], key, keylen) < 0 ? 1 : 0;
    else if (!strcmp(sub, "import"))
        status = qfs_store_import(root, pos[0], key, keylen) < 0 ? 1 : 0;
    else {
        fprintf(stderr, "quantfs cache: unknown command %s\n", sub);
        usage(stderr);
    }
out:
    if (key)
        OPENSSL_cleanse(key, keylen);
    free(key);
    free(root);
    free(dir);
    return status;
}
