/* Command line: quantfs [options] SOURCE MOUNTPOINT.
 * Our -o options (cache=, cache_mem=, cache_max=, cache_shared=, cache_hmac_key=, threads=,
 * max_read=, readahead=, prefetch=, prefetch_threads=, imatrix=MODEL=FILE, stop_timeout=, rescan=,
 * nowatch, prewarm=, device=, gpu_mem=, max_entries=, and the output formats' options:
 * formats=, no<format>, <format>_group= (codecs/format.h)) are consumed here; options
 * mount(8) and fstab add (rw, noauto, nofail, _netdev, x-*...) are ignored; known FUSE
 * mount options are collected for fuse_session_new; anything else is an error (exit 2). */
#ifndef QFS_FS_OPTIONS_H
#define QFS_FS_OPTIONS_H

#include <stdbool.h>
#include <stdint.h>

#include "../codecs/format.h"

#define QFS_DEFAULT_MAX_READ (1u << 20)
#define QFS_DEFAULT_STOP_TIMEOUT 60 /* seconds */
#define QFS_DEFAULT_RESCAN 60       /* seconds */

struct qfs_opts {
    char *source;
    char *mountpoint;
    bool foreground, debug, single_thread, help, version;
    char *cache_dir;        /* NULL: memory only (cache=none) */
    uint64_t cache_mem;     /* bytes */
    uint64_t cache_max;     /* bytes of the cache directory; 0 = unbounded */
    char *cache_shared;     /* -o cache_shared=DIR: read-only second tier, or NULL */
    char *cache_hmac_key;   /* -o cache_hmac_key=FILE, or NULL */
    unsigned threads;       /* max idle threads of the mt loop; 0 = libfuse default */
    unsigned max_read;      /* bytes, also passed as -o max_read */
    int64_t readahead;      /* -o readahead=: bytes; 0: the kernel's; -1: max_read */
    int prefetch_threads;   /* prefetch workers; 0 = off; -1 = default (online CPUs) */
    int prefetch_window;    /* chunks ahead; 0 = off; -1 = default (2 x prefetch_threads) */
    char **imatrix;         /* -o imatrix=MODEL=FILE, repeatable: "MODEL=FILE" strings */
    struct qfs_format_set formats; /* which output formats, with which group sizes */
    int n_imatrix;
    unsigned stop_timeout;  /* seconds to wait for open files on SIGTERM/SIGINT */
    unsigned rescan;        /* -o rescan=S: seconds between periodic rescans; 0: none */
    bool nowatch;           /* -o nowatch: no inotify (periodic rescans and SIGHUP only) */
    char *prewarm;          /* -o prewarm=V[,V...] (or ':'-separated): the variants
                               (codecs/format.h) to prewarm, stored comma-separated, or NULL */
    char *device;           /* -o device=auto|cpu|cuda|cuda:N (checked), or NULL: auto */
    uint64_t gpu_mem;       /* -o gpu_mem=SIZE: device memory of the GPU path; 0: default */
    uint32_t max_entries;   /* -o max_entries=N: bound of the namespace; 0: the default
                               (QFS_NS_MAX_NODES, fs/serve/namespace.h) */
    /* argv for fuse_session_new: [prog, "-o", "ro,...", ("-d")], NULL-terminated. */
    char **fuse_argv;
    int fuse_argc;
};

/* 0: ok (opts filled; help/version may be set); otherwise the exit status to use after
 * the message was printed (2: usage error). */
int qfs_opts_parse(int argc, char **argv, struct qfs_opts *o);
void qfs_opts_free(struct qfs_opts *o);
void qfs_opts_usage(const char *prog);
/* "1G", "512M", "4096" -> bytes; -EINVAL on garbage or overflow. */
int qfs_parse_size(const char *s, uint64_t *out);

#endif
