/* The FUSE low-level operations: thin wrappers that send exactly one fuse_reply_* each,
 * over work in namespace.c / read.c / status.c.  Only ll.c and main.c see libfuse. */
#ifndef QFS_FS_LL_H
#define QFS_FS_LL_H

#include <stdatomic.h>
#include <stdint.h>

#include "serve/status.h"

struct fuse_lowlevel_ops;
struct qfs_live;
struct qfs_cache;
struct qfs_prefetch;

/* entry/attr timeout: an inode number's content never changes, and a rescan that changes
 * what a name denotes tells the kernel (rescan.h) */
#define QFS_LL_TIMEOUT 86400.0

/* The session's userdata. */
struct qfs_ll {
    struct qfs_live *live; /* the namespace generations: qfs_live_acquire/release */
    struct qfs_cache *cache;
    struct qfs_prefetch *prefetch; /* NULL: prefetch disabled */
    struct qfs_status_info info;
    unsigned max_read;
    uint64_t readahead;    /* bytes to set the mount's readahead to (0: the kernel's) */
    atomic_bool ra_done;   /* set once the first request after INIT has tried it */
};

const struct fuse_lowlevel_ops *qfs_ll_ops(void);
/* Free the handles never released (files still open when the loop ended).  Only once no
 * request runs. */
void qfs_ll_drop_handles(struct qfs_ll *ll);

#endif
