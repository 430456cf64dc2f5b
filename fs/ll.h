/* The FUSE low-level operations: thin wrappers that send exactly one fuse_reply_* each,
 * over work in namespace.c / read.c / status.c.  Only ll.c and main.c see libfuse. */
#ifndef QFS_FS_LL_H
#define QFS_FS_LL_H

#include "status.h"

struct fuse_lowlevel_ops;
struct qfs_ns;
struct qfs_cache;
struct qfs_prefetch;

#define QFS_LL_TIMEOUT 86400.0 /* entry/attr timeout: the namespace never changes */

/* The session's userdata. */
struct qfs_ll {
    struct qfs_ns *ns;
    struct qfs_cache *cache;
    struct qfs_prefetch *prefetch; /* NULL: prefetch disabled */
    struct qfs_status_info info;
    unsigned max_read;
};

const struct fuse_lowlevel_ops *qfs_ll_ops(void);

#endif
