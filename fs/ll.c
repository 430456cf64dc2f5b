#define FUSE_USE_VERSION 312
#include "ll.h"

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "../codecs/source/model.h"
#include "../codecs/vfile.h"
#include "../util/log.h"
#include "serve/metrics.h"
#include "serve/namespace.h"
#include "serve/read.h"
#include "serve/readahead.h"
#include "serve/rescan.h"

/* Handle of an open file or directory: the generation it was opened in (a reference, so
 * its nodes and model description live until release) and its node. */
struct qfs_fh {
    struct qfs_fh *prev, *next; /* every open handle (handles_lock), freed at exit */
    struct qfs_ns *ns;
    const struct qfs_node *n;
    int fd;     /* QFS_NODE_FILE: the source file */
    char *text; /* QFS_NODE_STATUS: the report rendered at open */
    size_t len;
};

static struct qfs_ll *ll_of(fuse_req_t req)
{
    return fuse_req_userdata(req);
}

static struct qfs_fh *fh_of(const struct fuse_file_info *fi)
{
    return (struct qfs_fh *)(uintptr_t)fi->fh;
}

/* Handles the kernel never released (the daemon stops with files open): freed by
 * qfs_ll_drop_handles.  handles_lock protects the list. */
static pthread_mutex_t handles_lock = PTHREAD_MUTEX_INITIALIZER;
static struct qfs_fh handles = {.prev = &handles, .next = &handles};

static void fh_free(struct qfs_ll *ll, struct qfs_fh *h)
{
    if (!h)
        return;
    if (h->next) {
        pthread_mutex_lock(&handles_lock);
        h->prev->next = h->next;
        h->next->prev = h->prev;
        pthread_mutex_unlock(&handles_lock);
    }
    if (h->fd >= 0)
        close(h->fd);
    free(h->text);
    qfs_live_release(ll->live, h->ns);
    free(h);
}

static void qfs_ll_init(void *userdata, struct fuse_conn_info *conn)
{
    struct qfs_ll *ll = userdata;
    /* max_read must match the -o max_read passed at mount (see options.c). */
    conn->max_read = ll->max_read;
    /* The kernel offers its maximum; it can only be lowered. */
    if (conn->max_readahead > ll->max_read)
        conn->max_readahead = ll->max_read;
    /* The kernel sizes every request (reads too) by max_pages, which libfuse derives
     * from max_write: without this a 1 MiB max_read still arrives as 128 KiB requests. */
    if (conn->max_write < ll->max_read)
        conn->max_write = ll->max_read;
    if (conn->capable & FUSE_CAP_SPLICE_WRITE)
        conn->want |= FUSE_CAP_SPLICE_WRITE;
    if (conn->capable & FUSE_CAP_SPLICE_MOVE)
        conn->want |= FUSE_CAP_SPLICE_MOVE;
    /* Nothing is ever written: no writeback cache, no read-before-write. */
    conn->want &= ~(unsigned)FUSE_CAP_WRITEBACK_CACHE;
    qfs_debug("init: max_read %u, max_write %u, max_readahead %u, splice %s", conn->max_read,
              conn->max_write, conn->max_readahead, (conn->want & FUSE_CAP_SPLICE_WRITE) ? "on" : "off");
}

/* Work function: 0 and *e, or an errno.  A miss is a cached negative entry (ino 0). */
static int do_lookup(const struct qfs_ns *ns, fuse_ino_t parent, const char *name,
                     struct fuse_entry_param *e)
{
    const struct qfs_node *dir = qfs_ns_node(ns, parent), *n;
    if (!dir)
        return ENOENT; /* a directory the source no longer has */
    memset(e, 0, sizeof *e);
    e->attr_timeout = QFS_LL_TIMEOUT;
    e->entry_timeout = QFS_LL_TIMEOUT;
    int rc = qfs_ns_lookup(ns, dir, name, &n);
    if (rc == -ENOENT)
        return 0; /* e->ino = 0: negative entry (a rescan that adds the name drops it) */
    if (rc < 0)
        return -rc;
    e->ino = qfs_ns_ino(ns, n);
    e->attr = n->st;
    if (n->kind == QFS_NODE_STATUS)
        e->attr_timeout = 0; /* served with direct_io; its size is not meaningful */
    return 0;
}

/* The mount's readahead (serve/readahead.h), once: in the first request, since the kernel
 * applies INIT's reply (which can only lower it) before it sends any other.  Not root, or
 * a read-only /sys: the kernel's window stays, which costs only speed. */
static void readahead_once(struct qfs_ll *ll)
{
    if (ll->readahead == 0 || atomic_exchange(&ll->ra_done, true))
        return;
    int rc = qfs_readahead_set(ll->info.mountpoint, ll->readahead);
    if (rc < 0)
        qfs_info("readahead of %s left at the kernel's: %s", ll->info.mountpoint, strerror(-rc));
    else
        qfs_debug("readahead of %s: %llu KiB", ll->info.mountpoint,
                  (unsigned long long)(ll->readahead / 1024));
}

static void qfs_ll_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    readahead_once(ll_of(req));
    struct qfs_ll *ll = ll_of(req);
    struct qfs_ns *ns = qfs_live_acquire(ll->live);
    struct fuse_entry_param e;
    int rc = do_lookup(ns, parent, name, &e);
    if (rc)
        fuse_reply_err(req, rc);
    else
        fuse_reply_entry(req, &e);
    qfs_live_release(ll->live, ns);
}

static void qfs_ll_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    readahead_once(ll_of(req));
    (void)fi;
    /* Any live generation: an open file of an older one still answers fstat. */
    struct qfs_ll *ll = ll_of(req);
    const struct qfs_node *n = NULL;
    struct qfs_ns *ns = qfs_live_acquire_ino(ll->live, ino, &n);
    if (!ns) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    fuse_reply_attr(req, &n->st, n->kind == QFS_NODE_STATUS ? 0 : QFS_LL_TIMEOUT);
    qfs_live_release(ll->live, ns);
}

/* Open ino in the current generation: a new handle holding a reference on it, or an
 * errno.  A number only an older generation knows is ESTALE: the kernel then looks the
 * name up again and opens what the source holds now. */
static int fh_new(struct qfs_ll *ll, fuse_ino_t ino, struct qfs_fh **out)
{
    struct qfs_fh *h = calloc(1, sizeof *h);
    if (!h)
        return ENOMEM;
    h->fd = -1;
    h->ns = qfs_live_acquire(ll->live);
    h->n = qfs_ns_node(h->ns, ino);
    if (!h->n) {
        fh_free(ll, h);
        return ESTALE;
    }
    pthread_mutex_lock(&handles_lock);
    h->next = &handles;
    h->prev = handles.prev;
    handles.prev->next = h;
    handles.prev = h;
    pthread_mutex_unlock(&handles_lock);
    *out = h;
    return 0;
}

void qfs_ll_drop_handles(struct qfs_ll *ll)
{
    while (handles.next != &handles)
        fh_free(ll, handles.next);
}

static void reply_open(fuse_req_t req, struct fuse_file_info *fi, struct qfs_fh *h)
{
    fi->fh = (uint64_t)(uintptr_t)h;
    if (fuse_reply_open(req, fi) == -ENOENT) /* interrupted: no release will come */
        fh_free(ll_of(req), h);
}

static void qfs_ll_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    struct qfs_ll *ll = ll_of(req);
    struct qfs_fh *h = NULL;
    int rc = fh_new(ll, ino, &h);
    if (rc == 0 && h->n->kind != QFS_NODE_DIR) {
        fh_free(ll, h);
        rc = ENOTDIR;
    }
    if (rc) {
        fuse_reply_err(req, rc);
        return;
    }
    fi->cache_readdir = 1;
    fi->keep_cache = 1;
    reply_open(req, fi, h);
}

/* Work function: fill buf (size bytes) with entries from offset off; *used set. */
static int do_readdir(fuse_req_t req, const struct qfs_fh *h, size_t size, off_t off,
                      char *buf, size_t *used)
{
    const struct qfs_ns *ns = h->ns; /* the generation opened: offsets stay consistent */
    const struct qfs_node *dir = h->n;
    /* Offsets: 0 ".", 1 "..", 2 + i child i; an entry's d_off is the next offset. */
    size_t pos = 0;
    for (uint64_t i = (uint64_t)off; i < 2u + dir->n_children; i++) {
        const struct qfs_node *n;
        const char *name;
        if (i == 0) {
            n = dir;
            name = ".";
        } else if (i == 1) {
            n = &ns->nodes[dir->parent];
            name = "..";
        } else {
            n = &ns->nodes[dir->first_child + (uint32_t)(i - 2)];
            name = n->name;
        }
        struct stat st = {.st_ino = qfs_ns_ino(ns, n), .st_mode = n->st.st_mode};
        size_t need = fuse_add_direntry(req, buf + pos, size - pos, name, &st, (off_t)(i + 1));
        if (need > size - pos)
            break;
        pos += need;
    }
    *used = pos;
    return 0;
}

static void qfs_ll_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                           struct fuse_file_info *fi)
{
    (void)ino;
    char *buf = malloc(size ? size : 1);
    size_t used = 0;
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    int rc = do_readdir(req, fh_of(fi), size, off, buf, &used);
    if (rc)
        fuse_reply_err(req, rc);
    else
        fuse_reply_buf(req, buf, used);
    free(buf);
}

static void qfs_ll_releasedir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fh_free(ll_of(req), fh_of(fi));
    fuse_reply_err(req, 0);
}

static int do_open(struct qfs_ll *ll, fuse_ino_t ino, struct fuse_file_info *fi,
                   struct qfs_fh **out)
{
    if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC))
        return EROFS;
    struct qfs_fh *h = NULL;
    int rc = fh_new(ll, ino, &h);
    if (rc)
        return rc;
    switch (h->n->kind) {
    case QFS_NODE_DIR:
        rc = EISDIR;
        break;
    case QFS_NODE_FILE:
        h->fd = qfs_ns_open_file(h->ns, h->n);
        if (h->fd < 0) {
            rc = -h->fd;
            h->fd = -1;
        }
        fi->keep_cache = 1;
        break;
    case QFS_NODE_VFILE:
        fi->keep_cache = 1; /* an inode number's bytes never change: pages stay valid */
        break;
    case QFS_NODE_STATUS:
        rc = -(h->n->report == QFS_REPORT_METRICS ? qfs_metrics_render : qfs_status_render)(
            h->ns, ll->cache, &ll->info, &h->text, &h->len);
        fi->direct_io = 1;
        break;
    }
    if (rc) {
        fh_free(ll, h);
        return rc;
    }
    *out = h;
    return 0;
}

static void qfs_ll_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    readahead_once(ll_of(req));
    struct qfs_fh *h = NULL;
    int rc = do_open(ll_of(req), ino, fi, &h);
    if (rc)
        fuse_reply_err(req, rc);
    else
        reply_open(req, fi, h);
}

static void read_file(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
    /* The bytes go from the source file to the kernel by splice when it can. */
    struct fuse_bufvec bv = FUSE_BUFVEC_INIT(size);
    bv.buf[0].flags = FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK;
    bv.buf[0].fd = fh_of(fi)->fd;
    bv.buf[0].pos = off;
    fuse_reply_data(req, &bv, FUSE_BUF_SPLICE_MOVE);
}

static void read_vfile(fuse_req_t req, const struct qfs_node *n, size_t size, off_t off,
                       const struct fuse_file_info *fi)
{
    const struct qfs_vfile *vf = n->vf;
    if (off < 0 || (uint64_t)off >= vf->size || size == 0) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > vf->size - (uint64_t)off)
        size = vf->size - (uint64_t)off;
    uint8_t *buf = malloc(size);
    if (!buf) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    /* fi->flags: the reader's open flags (FUSE passes them with every read, readahead
     * and page faults included) */
    struct qfs_read_ctx ctx = {.cache = ll_of(req)->cache, .stats = n->stats,
                               .prefetch = ll_of(req)->prefetch,
                               .stream = !(fi->flags & O_DIRECT)};
    ssize_t got = qfs_read_vfile(&ctx, vf, (uint64_t)off, size, buf);
    if (got < 0)
        fuse_reply_err(req, (int)-got);
    else
        fuse_reply_buf(req, (const char *)buf, (size_t)got);
    free(buf);
}

static void read_status(fuse_req_t req, size_t size, off_t off, struct fuse_file_info *fi)
{
    const struct qfs_fh *h = fh_of(fi);
    if (off < 0 || (size_t)off >= h->len) {
        fuse_reply_buf(req, NULL, 0);
        return;
    }
    if (size > h->len - (size_t)off)
        size = h->len - (size_t)off;
    /* Reply from a private copy: once the kernel has the reply, the reader can close and
     * release (another thread) frees h while this thread is still returning from writev
     * (AddressSanitizer checks the iovec after the call). */
    char *copy = malloc(size);
    if (!copy) {
        fuse_reply_err(req, ENOMEM);
        return;
    }
    memcpy(copy, h->text + off, size);
    fuse_reply_buf(req, copy, size);
    free(copy);
}

static void qfs_ll_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                        struct fuse_file_info *fi)
{
    (void)ino;
    const struct qfs_node *n = fh_of(fi)->n;
    switch (n->kind) {
    case QFS_NODE_FILE:
        read_file(req, size, off, fi);
        return;
    case QFS_NODE_VFILE:
        read_vfile(req, n, size, off, fi);
        return;
    case QFS_NODE_STATUS:
        read_status(req, size, off, fi);
        return;
    case QFS_NODE_DIR:
        break;
    }
    fuse_reply_err(req, EISDIR);
}

static void qfs_ll_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    fh_free(ll_of(req), fh_of(fi));
    fuse_reply_err(req, 0);
}

static void qfs_ll_statfs(fuse_req_t req, fuse_ino_t ino)
{
    (void)ino;
    struct qfs_ll *ll = ll_of(req);
    struct qfs_ns *ns = qfs_live_acquire(ll->live);
    struct statvfs sv;
    memset(&sv, 0, sizeof sv);
    uint64_t bytes = 0;
    for (uint32_t i = 0; i < ns->n_nodes; i++) {
        const struct qfs_node *n = &ns->nodes[i], *p = &ns->nodes[n->parent];
        /* a loadable directory shows files counted elsewhere again: its passthrough
         * files and virtual files listed in the model directory too */
        if (p->dir == QFS_DIR_VIRT && (n->kind == QFS_NODE_FILE || (n->vf && n->vf->listed)))
            continue;
        if (n->kind == QFS_NODE_FILE || n->kind == QFS_NODE_VFILE)
            bytes += (uint64_t)n->st.st_size;
    }
    sv.f_bsize = 4096;
    sv.f_frsize = 4096;
    sv.f_blocks = (bytes + 4095) / 4096;
    sv.f_files = ns->n_nodes;
    sv.f_namemax = 255;
    sv.f_flag = ST_RDONLY;
    qfs_live_release(ll->live, ns);
    fuse_reply_statfs(req, &sv);
}

/* Every operation that would change something: the filesystem is read-only. */
static void erofs(fuse_req_t req)
{
    fuse_reply_err(req, EROFS);
}

static void qfs_ll_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set,
                           struct fuse_file_info *fi)
{
    (void)ino, (void)attr, (void)to_set, (void)fi;
    erofs(req);
}

static void qfs_ll_mknod(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                         dev_t rdev)
{
    (void)parent, (void)name, (void)mode, (void)rdev;
    erofs(req);
}

static void qfs_ll_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode)
{
    (void)parent, (void)name, (void)mode;
    erofs(req);
}

static void qfs_ll_unlink(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    (void)parent, (void)name;
    erofs(req);
}

static void qfs_ll_symlink(fuse_req_t req, const char *link, fuse_ino_t parent,
                           const char *name)
{
    (void)link, (void)parent, (void)name;
    erofs(req);
}

static void qfs_ll_rename(fuse_req_t req, fuse_ino_t parent, const char *name,
                          fuse_ino_t newparent, const char *newname, unsigned int flags)
{
    (void)parent, (void)name, (void)newparent, (void)newname, (void)flags;
    erofs(req);
}

static void qfs_ll_link(fuse_req_t req, fuse_ino_t ino, fuse_ino_t newparent,
                        const char *newname)
{
    (void)ino, (void)newparent, (void)newname;
    erofs(req);
}

static void qfs_ll_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size,
                         off_t off, struct fuse_file_info *fi)
{
    (void)ino, (void)buf, (void)size, (void)off, (void)fi;
    erofs(req);
}

static void qfs_ll_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode,
                          struct fuse_file_info *fi)
{
    (void)parent, (void)name, (void)mode, (void)fi;
    erofs(req);
}

static void qfs_ll_setxattr(fuse_req_t req, fuse_ino_t ino, const char *name,
                            const char *value, size_t size, int flags)
{
    (void)ino, (void)name, (void)value, (void)size, (void)flags;
    erofs(req);
}

/* getxattr and listxattr share the reply: a size probe, the value, or an error. */
static void reply_xattr(fuse_req_t req, ssize_t r, const char *buf, size_t size)
{
    if (r < 0)
        fuse_reply_err(req, (int)-r);
    else if (size == 0)
        fuse_reply_xattr(req, (size_t)r);
    else
        fuse_reply_buf(req, buf, (size_t)r);
}

static void qfs_ll_xattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    struct qfs_ll *ll = ll_of(req);
    const struct qfs_node *n = NULL;
    struct qfs_ns *ns = qfs_live_acquire_ino(ll->live, ino, &n);
    if (!ns) {
        fuse_reply_err(req, ESTALE);
        return;
    }
    char *buf = size ? malloc(size) : NULL;
    ssize_t r = size && !buf ? -ENOMEM
                : name  ? qfs_ns_getxattr(n, name, buf, size)
                        : qfs_ns_listxattr(n, buf, size);
    reply_xattr(req, r, buf, size);
    free(buf);
    qfs_live_release(ll->live, ns);
}

static void qfs_ll_getxattr(fuse_req_t req, fuse_ino_t ino, const char *name, size_t size)
{
    qfs_ll_xattr(req, ino, name, size);
}

static void qfs_ll_listxattr(fuse_req_t req, fuse_ino_t ino, size_t size)
{
    qfs_ll_xattr(req, ino, NULL, size);
}

static void qfs_ll_removexattr(fuse_req_t req, fuse_ino_t ino, const char *name)
{
    (void)ino, (void)name;
    erofs(req);
}

static void qfs_ll_fallocate(fuse_req_t req, fuse_ino_t ino, int mode, off_t offset,
                             off_t length, struct fuse_file_info *fi)
{
    (void)ino, (void)mode, (void)offset, (void)length, (void)fi;
    erofs(req);
}

static const struct fuse_lowlevel_ops ops = {
    .init = qfs_ll_init,
    .lookup = qfs_ll_lookup,
    .getattr = qfs_ll_getattr,
    .opendir = qfs_ll_opendir,
    .readdir = qfs_ll_readdir,
    .releasedir = qfs_ll_releasedir,
    .open = qfs_ll_open,
    .read = qfs_ll_read,
    .release = qfs_ll_release,
    .statfs = qfs_ll_statfs,
    .setattr = qfs_ll_setattr,
    .mknod = qfs_ll_mknod,
    .mkdir = qfs_ll_mkdir,
    .unlink = qfs_ll_unlink,
    .rmdir = qfs_ll_unlink,
    .symlink = qfs_ll_symlink,
    .rename = qfs_ll_rename,
    .link = qfs_ll_link,
    .write = qfs_ll_write,
    .create = qfs_ll_create,
    .setxattr = qfs_ll_setxattr,
    .getxattr = qfs_ll_getxattr,
    .listxattr = qfs_ll_listxattr,
    .removexattr = qfs_ll_removexattr,
    .fallocate = qfs_ll_fallocate,
};

const struct fuse_lowlevel_ops *qfs_ll_ops(void)
{
    return &ops;
}
