/* /.quantfs/status: a JSON snapshot, rendered when the file is opened and served from
 * the file handle (the file is direct_io: its size changes between opens). */
#ifndef QFS_FS_STATUS_H
#define QFS_FS_STATUS_H

#include <stdbool.h>
#include <stddef.h>

struct qfs_ns;
struct qfs_cache;
struct qfs_live;
struct qfs_prewarm;

struct qfs_status_info {
    const char *mountpoint;
    const char *cache_dir; /* NULL: memory only */
    unsigned long long cache_mem_max;
    unsigned long long cache_max; /* 0: unbounded */
    const char *cache_shared;     /* NULL: none */
    bool cache_hmac;              /* -o cache_hmac_key: entries authenticated */
    struct qfs_live *live;        /* rescan counters; NULL: not shown */
    struct qfs_prewarm *prewarm;  /* prewarm progress; NULL: not shown */
};

/* Render into *out (malloc'd, NUL-terminated, *len bytes without the NUL).
 * 0 or -ENOMEM. */
int qfs_status_render(const struct qfs_ns *ns, struct qfs_cache *cache,
                      const struct qfs_status_info *info, char **out, size_t *len);

#endif
