/* The mount's namespace: every entry is known at mount time, from metadata only.
 *
 * SOURCE is either one model directory (config.json plus *.safetensors or
 * model.safetensors.index.json): the root shows its files plus its virtual files; or a
 * directory of entries: a model subdirectory shows its files plus its virtual files, any
 * other subdirectory is passed through as a plain tree (the reason logged once), regular
 * files are passed through.  /.quantfs/status is the status file.
 *
 * Passthrough entries are limited to regular files and directories, QFS_NS_MAX_DEPTH
 * levels deep.  A symlink is followed only when its real path stays inside SOURCE's real
 * path; otherwise it is not listed.  No FUSE here: a test builds a namespace directly. */
#ifndef QFS_FS_NAMESPACE_H
#define QFS_FS_NAMESPACE_H

#include <stdint.h>
#include <sys/stat.h>

#include "read.h"

#define QFS_NS_MAX_DEPTH 8

enum qfs_node_kind {
    QFS_NODE_DIR,    /* passthrough directory, model directory, the root, /.quantfs */
    QFS_NODE_FILE,   /* passthrough regular file: opened by relpath below root_fd */
    QFS_NODE_VFILE,  /* virtual file of a model */
    QFS_NODE_STATUS, /* /.quantfs/status */
};

struct qfs_model;
struct qfs_vfile;

struct qfs_node {
    char *name;             /* entry name ("" for the root) */
    enum qfs_node_kind kind;
    uint32_t parent;        /* index of the parent (the root is its own parent) */
    uint32_t first_child;   /* children: [first_child, first_child + n_children), sorted */
    uint32_t n_children;
    char *relpath;          /* QFS_NODE_FILE: real path relative to the source root */
    struct qfs_model *model;        /* QFS_NODE_VFILE (and model directories): owning model */
    const struct qfs_vfile *vf;     /* QFS_NODE_VFILE */
    struct qfs_read_stats *stats;   /* QFS_NODE_VFILE: counters, owned by the namespace */
    struct stat st;                 /* attributes as served (st_ino already set) */
};

struct qfs_ns_model {
    char *path;              /* path shown in the mount ("/" or "/name") */
    struct qfs_model *model;
    uint32_t first_vnode;    /* node index of its first virtual file */
    int n_vfiles;
};

struct qfs_ns_skip {
    char *path;   /* source path */
    char *reason;
};

struct qfs_ns {
    char *source;      /* realpath of SOURCE */
    int root_fd;       /* O_PATH|O_DIRECTORY fd of source: passthrough opens are relative */
    struct qfs_node *nodes;
    uint32_t n_nodes;
    struct qfs_ns_model *models;
    int n_models;
    struct qfs_ns_skip *skips;
    int n_skips;
    uint32_t status_node;
};

/* Scan source and build the namespace.  0 or negative errno (logged):
 * -ENOTDIR source is not a directory, -ENOENT missing, -ENOMEM.  A model that fails to
 * open is not an error: it is recorded in skips and passed through. */
struct qfs_ns_opts {
    char *const *imatrix; /* "MODEL=FILE": the importance matrix of model directory MODEL */
    int n_imatrix;
};
/* o may be NULL. */
int qfs_ns_build(const char *source, const struct qfs_ns_opts *o, struct qfs_ns **out);
void qfs_ns_destroy(struct qfs_ns *ns);

/* Node of a FUSE inode number, NULL when out of range (see namespace.c for the mapping). */
const struct qfs_node *qfs_ns_node(const struct qfs_ns *ns, uint64_t ino);
uint64_t qfs_ns_ino(const struct qfs_ns *ns, const struct qfs_node *n);
/* Child of dir by name: 0 and *out, -ENOTDIR, or -ENOENT. */
int qfs_ns_lookup(const struct qfs_ns *ns, const struct qfs_node *dir, const char *name,
                  const struct qfs_node **out);
/* Open a passthrough file read-only (O_NOFOLLOW, no blocking on special files).
 * fd or negative errno. */
int qfs_ns_open_file(const struct qfs_ns *ns, const struct qfs_node *n);

#endif
