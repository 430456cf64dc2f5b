#include "options.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../kernels/dispatch.h"
#include "serve/namespace.h"
#include "serve/warm.h"

/* FUSE mount/session options passed through unchanged (name, or name= prefix). */
static const char *const fuse_opts[] = {
    "allow_other", "allow_root", "auto_unmount", "default_permissions", "fsname=",
    "subtype=", "nodev", "nosuid", "noexec", "exec", "noatime", "atime",
    "relatime", "norelatime", "strictatime", "nostrictatime", "sync", "async", "dirsync",
    "context=", "fscontext=", "defcontext=", "rootcontext=", "max_background=",
    "congestion_threshold=", "max_readahead=", "async_read", "sync_read", "no_remote_lock",
    "no_remote_flock", "no_remote_posix_lock", "splice_read", "no_splice_read",
    "splice_write", "no_splice_write", "splice_move", "no_splice_move", "ro", "debug",
    NULL,
};

/* Options that mount(8), fstab or systemd add and that mean nothing to a FUSE daemon:
 * accepted and ignored.  mount(8) passes "rw" unless told "ro" (quantfs is read-only
 * either way); "dev" and "suid" are refused silently: the mount is always nosuid,nodev. */
static const char *const ignored_opts[] = {
    "rw", "dev", "suid", "defaults", "auto", "noauto", "nofail", "_netdev", "user",
    "nouser", "users", "owner", "group", "comment=", "x-", NULL,
};

void qfs_opts_usage(const char *prog)
{
    printf("usage: %s [options] SOURCE MOUNTPOINT\n"
           "\n"
           "Mount SOURCE (a Hugging Face model directory, or a directory of them) read-only\n"
           "at MOUNTPOINT, adding each model in other formats, quantized on demand.\n"
           "\n"
           "options:\n"
           "  -f                 stay in the foreground\n"
           "  -d                 debug output (implies -f)\n"
           "  -s                 single-threaded\n"
           "  -h, --help         this help\n"
           "  -V, --version      print the version\n"
           "  -o opt[,opt...]    mount options:\n"
           "     cache=DIR       chunk cache directory (default $XDG_CACHE_HOME/quantfs,\n"
           "                     $HOME/.cache/quantfs, or /var/cache/quantfs)\n"
           "     cache=none      memory cache only\n"
           "     cache_mem=SIZE  memory cache size, K/M/G suffixes (default 1G)\n"
           "     cache_max=SIZE  bound of the cache directory; least recently used\n"
           "                     entries are evicted (default 0: unbounded)\n"
           "     cache_shared=DIR  read-only second cache consulted after cache=DIR\n"
           "                     (e.g. on NFS, or an export); hits are copied locally\n"
           "     cache_hmac_key=FILE  authenticate every cache tier with this key (a file\n"
           "                     of at least 16 random bytes shared by the hosts): entries\n"
           "                     written carry an HMAC-SHA256, entries without a valid one\n"
           "                     are never served; cache_shared is used only through its\n"
           "                     MANIFEST signed with the key (quantfs cache export)\n"
           "     threads=N       maximum idle threads of the request loop\n"
           "     max_read=N      largest read request in bytes (default %u)\n"
           "     readahead=N     the mount's kernel readahead in bytes, which sizes the\n"
           "                     requests of page-cache readers (default: max_read; 0:\n"
           "                     the kernel's 128K; needs root, else left as it is)\n"
           "     prefetch=N      chunks quantized ahead of a sequential reader, within\n"
           "                     a tensor (default 2 x prefetch_threads; 0 disables)\n"
           "     prefetch_threads=N  prefetch worker threads (default: online CPUs;\n"
           "                     0 disables prefetch)\n"
           "     imatrix=MODEL=FILE  importance matrix (llama.cpp imatrix .gguf or .dat) for\n"
           "                     the model directory MODEL; default: MODEL/imatrix.gguf or\n"
           "                     MODEL/imatrix.dat when present (repeatable)\n"
           "     stop_timeout=S  on SIGTERM/SIGINT, wait up to S seconds for open files\n"
           "                     to close before unmounting (default %u)\n"
           "     rescan=S        rescan SOURCE every S seconds (default %u; 0: only on\n"
           "                     inotify events and SIGHUP): new model directories appear,\n"
           "                     removed ones disappear, changed ones are described again\n"
           "     nowatch         no inotify: rescan on SIGHUP and every rescan=S only\n"
           "     prewarm=V[,V..] fill the cache for these variants (below) of every model\n"
           "                     after mounting, in the background at the lowest priority\n"
           "     device=D        where chunks are quantized: auto (a CUDA GPU when the\n"
           "                     driver finds one, else the CPU), cpu, cuda, cuda:N;\n"
           "                     same bytes on either; without a usable GPU, cuda logs\n"
           "                     a warning and uses the CPU (default auto)\n"
           "     gpu_mem=SIZE    device memory the GPU path may use (default 1G)\n"
           "     max_entries=N   at most N entries in the mount (default %u); a directory\n"
           "                     that would pass it is not listed (logged, and under\n"
           "                     skipped in the status file)\n"
           "  output formats (each on by default unless noted):\n"
           "%s"
           "     allow_other, allow_root, auto_unmount, fsname=, and the other FUSE\n"
           "     mount options are passed to FUSE; the mount is always ro, nosuid, nodev,\n"
           "     default_permissions.  rw, dev, suid, defaults, auto, noauto, nofail,\n"
           "     _netdev, user, users, owner, group, comment=, x-* (from mount(8) and\n"
           "     fstab) are accepted and ignored\n",
           prog, QFS_DEFAULT_MAX_READ, QFS_DEFAULT_STOP_TIMEOUT, QFS_DEFAULT_RESCAN,
           QFS_NS_MAX_NODES, qfs_format_help());
}

int qfs_parse_size(const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (!*s || *s == '-')
        return -EINVAL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s)
        return -EINVAL;
    unsigned shift = 0;
    switch (*end) {
    case 'k': case 'K': shift = 10; end++; break;
    case 'm': case 'M': shift = 20; end++; break;
    case 'g': case 'G': shift = 30; end++; break;
    case 't': case 'T': shift = 40; end++; break;
    default: break;
    }
    if (*end == 'i' && shift)
        end++;
    if ((*end == 'b' || *end == 'B') && (shift || end[-1] != 'i'))
        end++;
    if (*end)
        return -EINVAL;
    if (shift && v > (UINT64_MAX >> shift))
        return -EINVAL;
    *out = (uint64_t)v << shift;
    return 0;
}

static char *default_cache_dir(void)
{
    const char *x = getenv("XDG_CACHE_HOME"), *h = getenv("HOME");
    char *p = NULL;
    if (x && *x == '/') {
        if (asprintf(&p, "%s/quantfs", x) < 0)
            return NULL;
    } else if (h && *h == '/') {
        if (asprintf(&p, "%s/.cache/quantfs", h) < 0)
            return NULL;
    } else {
        p = strdup("/var/cache/quantfs");
    }
    return p;
}

/* o is in list: an entry ending in '=' or '-' is a prefix, any other a whole name. */
static int opt_in(const char *const *list, const char *o)
{
    for (int i = 0; list[i]; i++) {
        size_t n = strlen(list[i]);
        char last = list[i][n - 1];
        if (last == '=' || last == '-' ? !strncmp(o, list[i], n) : !strcmp(o, list[i]))
            return 1;
    }
    return 0;
}

/* Append ",opt" to *acc. */
static int acc_add(char **acc, const char *opt)
{
    char *p;
    if (asprintf(&p, "%s,%s", *acc, opt) < 0)
        return -ENOMEM;
    free(*acc);
    *acc = p;
    return 0;
}

/* One -o argument: comma-separated options. 0 or exit status 2 (message printed). */
static int parse_o(struct qfs_opts *o, const char *arg, char **acc, int *cache_set)
{
    char *copy = strdup(arg), *save = NULL;
    int rc = 0, prewarm_list = 0; /* the previous option was prewarm= or one of its types */
    if (!copy)
        return 1;
    for (char *t = strtok_r(copy, ",", &save); t && !rc; t = strtok_r(NULL, ",", &save)) {
        uint64_t v;
        char ferr[512];
        int fr;
        int in_prewarm = prewarm_list;
        prewarm_list = 0;
        if (in_prewarm && qfs_prewarm_type_ok(t, strlen(t))) {
            /* -o prewarm=Q4_K_M,Q8_0: the names after prewarm= that are variants */
            char *p;
            prewarm_list = 1;
            if (asprintf(&p, "%s,%s", o->prewarm, t) < 0) {
                rc = 1;
            } else {
                free(o->prewarm);
                o->prewarm = p;
            }
        } else if (!strncmp(t, "cache=", 6)) {
            free(o->cache_dir);
            o->cache_dir = NULL;
            *cache_set = 1;
            if (!t[6]) {
                fprintf(stderr, "quantfs: -o cache= needs a directory or 'none'\n");
                rc = 2;
            } else if (strcmp(t + 6, "none") != 0 && !(o->cache_dir = strdup(t + 6))) {
                rc = 1;
            }
        } else if (!strncmp(t, "cache_mem=", 10)) {
            if (qfs_parse_size(t + 10, &v) < 0) {
                fprintf(stderr, "quantfs: -o %s: not a size (e.g. 512M, 2G)\n", t);
                rc = 2;
            } else {
                o->cache_mem = v;
            }
        } else if (!strncmp(t, "cache_max=", 10)) {
            if (qfs_parse_size(t + 10, &v) < 0 || (v != 0 && v < (1u << 20))) {
                fprintf(stderr, "quantfs: -o %s: expected a size of at least 1M (or 0: "
                                "unbounded)\n", t);
                rc = 2;
            } else {
                o->cache_max = v;
            }
        } else if (!strncmp(t, "cache_shared=", 13) || !strncmp(t, "cache_hmac_key=", 15)) {
            const bool sh = t[6] == 's';
            const char *val = t + (sh ? 13 : 15);
            char **dst = sh ? &o->cache_shared : &o->cache_hmac_key;
            free(*dst);
            *dst = NULL;
            if (!*val) {
                fprintf(stderr, "quantfs: -o %s needs a %s\n", t, sh ? "directory" : "file");
                rc = 2;
            } else if (!(*dst = strdup(val))) {
                rc = 1;
            }
        } else if (!strncmp(t, "threads=", 8)) {
            if (qfs_parse_size(t + 8, &v) < 0 || v < 1 || v > 1024 || strpbrk(t + 8, "kKmMgGtT")) {
                fprintf(stderr, "quantfs: -o %s: expected a thread count from 1 to 1024\n", t);
                rc = 2;
            } else {
                o->threads = (unsigned)v;
            }
        } else if (!strncmp(t, "prefetch_threads=", 17)) {
            if (qfs_parse_size(t + 17, &v) < 0 || v > 1024 || strpbrk(t + 17, "kKmMgGtT")) {
                fprintf(stderr, "quantfs: -o %s: expected a thread count from 0 to 1024\n", t);
                rc = 2;
            } else {
                o->prefetch_threads = (int)v;
            }
        } else if (!strncmp(t, "prefetch=", 9)) {
            if (qfs_parse_size(t + 9, &v) < 0 || v > 4096 || strpbrk(t + 9, "kKmMgGtT")) {
                fprintf(stderr, "quantfs: -o %s: expected a chunk count from 0 to 4096\n", t);
                rc = 2;
            } else {
                o->prefetch_window = (int)v;
            }
        } else if (!strncmp(t, "readahead=", 10)) {
            if (qfs_parse_size(t + 10, &v) < 0 || v > (64u << 20)) {
                fprintf(stderr, "quantfs: -o %s: expected a size up to 64M\n", t);
                rc = 2;
            } else {
                o->readahead = (int64_t)v;
            }
        } else if (!strncmp(t, "max_read=", 9)) {
            if (qfs_parse_size(t + 9, &v) < 0 || v < 4096 || v > (64u << 20)) {
                fprintf(stderr, "quantfs: -o %s: expected a size from 4K to 64M\n", t);
                rc = 2;
            } else {
                o->max_read = (unsigned)v;
            }
        } else if (!strncmp(t, "imatrix=", 8)) {
            const char *eq = strchr(t + 8, '=');
            if (!eq || eq == t + 8 || !eq[1] || memchr(t + 8, '/', (size_t)(eq - (t + 8)))) {
                fprintf(stderr, "quantfs: -o %s: expected imatrix=MODEL=FILE (MODEL: the model "
                                "directory's name)\n", t);
                rc = 2;
            } else {
                char **n = realloc(o->imatrix, (size_t)(o->n_imatrix + 1) * sizeof *n);
                if (!n || !(n[o->n_imatrix] = strdup(t + 8))) {
                    if (n)
                        o->imatrix = n;
                    rc = 1;
                } else {
                    o->imatrix = n;
                    o->n_imatrix++;
                }
            }
        } else if (!strncmp(t, "rescan=", 7)) {
            if (qfs_parse_size(t + 7, &v) < 0 || v > 86400 || strpbrk(t + 7, "kKmMgGtT")) {
                fprintf(stderr, "quantfs: -o %s: expected seconds from 0 to 86400\n", t);
                rc = 2;
            } else {
                o->rescan = (unsigned)v;
            }
        } else if (!strcmp(t, "nowatch")) {
            o->nowatch = true;
        } else if (!strncmp(t, "prewarm=", 8)) {
            /* Types are separated by ':' here (',' separates options); stored with ','. */
            const char *bad;
            int bad_len;
            free(o->prewarm);
            o->prewarm = strdup(t + 8);
            if (!o->prewarm) {
                rc = 1;
            } else {
                for (char *c = o->prewarm; *c; c++)
                    if (*c == ':' || *c == '+')
                        *c = ',';
                prewarm_list = 1;
                if (qfs_prewarm_check_types(o->prewarm, &bad, &bad_len) < 0) {
                    fprintf(stderr, "quantfs: -o %s: unknown variant '%.*s' (see the "
                                    "variants of each format in --help)\n", t, bad_len, bad);
                    rc = 2;
                }
            }
        } else if (!strncmp(t, "device=", 7)) {
            struct qfs_dev_opts d;
            if (qfs_dev_parse(t + 7, &d) < 0) {
                fprintf(stderr, "quantfs: -o %s: expected auto, cpu, cuda or cuda:N\n", t);
                rc = 2;
            } else {
                free(o->device);
                if (!(o->device = strdup(t + 7)))
                    rc = 1;
            }
        } else if (!strncmp(t, "gpu_mem=", 8)) {
            if (qfs_parse_size(t + 8, &v) < 0 || v < (64u << 20)) {
                fprintf(stderr, "quantfs: -o %s: expected a size of at least 64M\n", t);
                rc = 2;
            } else {
                o->gpu_mem = v;
            }
        } else if (!strncmp(t, "max_entries=", 12)) {
            if (qfs_parse_size(t + 12, &v) < 0 || v < 100 || v > (1u << 30)) {
                fprintf(stderr, "quantfs: -o %s: expected an entry count from 100 to 2^30 (K, M "
                                "suffixes: 1024, 1024^2)\n", t);
                rc = 2;
            } else {
                o->max_entries = (uint32_t)v;
            }
        } else if (!strncmp(t, "stop_timeout=", 13)) {
            if (qfs_parse_size(t + 13, &v) < 0 || v > 86400 || strpbrk(t + 13, "kKmMgGtT")) {
                fprintf(stderr, "quantfs: -o %s: expected seconds from 0 to 86400\n", t);
                rc = 2;
            } else {
                o->stop_timeout = (unsigned)v;
            }
        } else if ((fr = qfs_format_parse_opt(&o->formats, t, ferr, sizeof ferr)) != 0) {
            if (fr < 0) {
                fprintf(stderr, "quantfs: -o %s: %s\n", t, ferr);
                rc = 2;
            }
        } else if (opt_in(ignored_opts, t)) {
            /* see ignored_opts */
        } else if (opt_in(fuse_opts, t)) {
            if (!strcmp(t, "debug"))
                o->debug = o->foreground = true;
            else if (strcmp(t, "ro") != 0 && acc_add(acc, t) < 0)
                rc = 1;
        } else {
            fprintf(stderr, "quantfs: unknown option -o %s (see --help)\n", t);
            rc = 2;
        }
    }
    free(copy);
    return rc;
}

int qfs_opts_parse(int argc, char **argv, struct qfs_opts *o)
{
    const char *prog = argc > 0 ? argv[0] : "quantfs";
    /* default_permissions: the kernel checks the served modes (read-only for all). */
    char *acc = strdup("ro,nosuid,nodev,default_permissions,fsname=quantfs,subtype=quantfs");
    int cache_set = 0, rc = 0, npos = 0;
    memset(o, 0, sizeof *o);
    qfs_format_set_init(&o->formats);
    o->cache_mem = 1ull << 30;
    o->max_read = QFS_DEFAULT_MAX_READ;
    o->readahead = -1;
    o->prefetch_threads = -1;
    o->prefetch_window = -1;
    o->stop_timeout = QFS_DEFAULT_STOP_TIMEOUT;
    o->rescan = QFS_DEFAULT_RESCAN;
    if (!acc)
        return 1;
    for (int i = 1; i < argc && !rc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            o->help = true;
        } else if (!strcmp(a, "-V") || !strcmp(a, "--version")) {
            o->version = true;
        } else if (!strcmp(a, "-f")) {
            o->foreground = true;
        } else if (!strcmp(a, "-d") || !strcmp(a, "--debug")) {
            o->debug = o->foreground = true;
        } else if (!strcmp(a, "-s")) {
            o->single_thread = true;
        } else if (!strcmp(a, "-o")) {
            if (i + 1 >= argc) {
                fprintf(stderr, "quantfs: -o needs an argument\n");
                rc = 2;
            } else {
                rc = parse_o(o, argv[++i], &acc, &cache_set);
            }
        } else if (!strncmp(a, "-o", 2)) {
            rc = parse_o(o, a + 2, &acc, &cache_set);
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "quantfs: unknown option %s (see --help)\n", a);
            rc = 2;
        } else if (npos == 0) {
            o->source = strdup(a);
            npos++;
        } else if (npos == 1) {
            o->mountpoint = strdup(a);
            npos++;
        } else {
            fprintf(stderr, "quantfs: unexpected argument '%s': expected SOURCE MOUNTPOINT\n", a);
            rc = 2;
        }
    }
    if (!rc && !o->help && !o->version && npos != 2) {
        fprintf(stderr, "quantfs: expected SOURCE and MOUNTPOINT\n"
                        "usage: %s [options] SOURCE MOUNTPOINT (see --help)\n", prog);
        rc = 2;
    }
    if (!rc && !cache_set && !(o->cache_dir = default_cache_dir()))
        rc = 1;
    if (!rc) {
        char mr[32];
        snprintf(mr, sizeof mr, "max_read=%u", o->max_read);
        if (acc_add(&acc, mr) < 0)
            rc = 1;
    }
    if (!rc) {
        o->fuse_argv = calloc(5, sizeof *o->fuse_argv);
        if (!o->fuse_argv || !(o->fuse_argv[0] = strdup(prog)) || !(o->fuse_argv[1] = strdup("-o"))) {
            rc = 1;
        } else {
            o->fuse_argv[2] = acc;
            acc = NULL;
            o->fuse_argc = 3;
            if (o->debug && !(o->fuse_argv[o->fuse_argc++] = strdup("-d")))
                rc = 1;
        }
    }
    if (rc == 1)
        fprintf(stderr, "quantfs: out of memory\n");
    free(acc);
    if (rc)
        qfs_opts_free(o);
    return rc;
}

void qfs_opts_free(struct qfs_opts *o)
{
    free(o->source);
    free(o->mountpoint);
    free(o->cache_dir);
    free(o->cache_shared);
    free(o->cache_hmac_key);
    free(o->prewarm);
    free(o->device);
    for (int i = 0; i < o->n_imatrix; i++)
        free(o->imatrix[i]);
    free(o->imatrix);
    if (o->fuse_argv)
        for (int i = 0; o->fuse_argv[i]; i++)
            free(o->fuse_argv[i]);
    free(o->fuse_argv);
    memset(o, 0, sizeof *o);
}
