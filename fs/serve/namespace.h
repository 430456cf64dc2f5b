/* The mount's namespace: every entry is known at mount time, from metadata only.
 *
 * SOURCE is either one model directory (config.json plus *.safetensors or
 * model.safetensors.index.json): the root shows its files plus its virtual files; or a
 * directory of entries: a model subdirectory shows its files plus its virtual files, any
 * other subdirectory is passed through as a plain tree (the reason logged once), regular
 * files are passed through.  /.quantfs/status is the status file.
 *
 * A model directory also shows the loadable directories its formats offer
 * (codecs/format.h; <name>.awq/ ...): their virtual entries (config.json,
 * model.safetensors: virtual files of the model, sharing counters with the same file
 * listed elsewhere) and the model directory's tokenizer and generation files
 * (qfs_format_passthrough), passed through.  A source entry of a virtual entry's name hides
 * the virtual one (logged).
 *
 * Passthrough entries are limited to regular files and directories, QFS_NS_MAX_DEPTH
 * levels deep.  A symlink is followed only when its real path stays inside SOURCE's real
 * path; otherwise it is not listed.  A symlink to a directory is also not followed (not
 * listed, one log line) when that directory (by device and inode) is the one holding the
 * link or one of its ancestors, or is listed elsewhere in the mount already: so every
 * source directory is listed at most once through a link, and `ln -s . x` loops cannot
 * multiply the tree.  Among the entries of one directory, real directories are taken
 * before links, in name order; directories of one level before deeper ones.  A real
 * directory with an ancestor's identity (a bind mount of it) is not listed either.
 *
 * The namespace holds at most max_nodes entries (qfs_ns_opts, -o max_entries; default
 * QFS_NS_MAX_NODES): a directory whose entries would take it past the bound is listed
 * empty, with one log line, and recorded in skips (a model directory's model stays
 * described; its files are then reachable only by the status file's counters).
 *
 * Hugging Face hub cache (what `hf download` and from_pretrained write):
 *   models--ORG--NAME/blobs/<sha256 | git sha1>       the files' contents
 *   models--ORG--NAME/snapshots/<REV>/<file>          symlinks to ../../blobs/<hash>
 *   models--ORG--NAME/refs/main                       the commit REV of branch main
 * A models--* directory of SOURCE (SOURCE a hub directory, or any directory of entries
 * holding such repositories), or SOURCE itself when it is one, is not listed as it is:
 * it shows as the model directories ORG--NAME (the snapshot refs/main names) and
 * ORG--NAME@REV (every snapshot), whose model is named ORG--NAME (file names, GGUF
 * general.name).  SOURCE may also be one snapshot directory (.../snapshots/REV of a
 * models--* directory): the mount root is then that model, named ORG--NAME.  Below a
 * repository, the symlink rule above has the repository's directory in place of SOURCE:
 * a link leaving its models--* directory is not followed (one log line per build,
 * however many views show the snapshot).  A repository with a blob being downloaded
 * (blobs/ *.incomplete) shows no view, and a snapshot with a dangling symlink or a shard
 * that its model.safetensors.index.json names but that is missing shows none either:
 * each is logged once and recorded in skips.  Views of one snapshot share one model
 * description.  The repository's directory, refs/, snapshots/ (and every snapshot), and
 * blobs/ (names only) are in the namespace's watch list, so that rescan.c sees a new
 * download, a moved refs/main, a finished blob.
 *
 * A namespace is immutable once built; a change of the source is a new generation
 * (qfs_ns_rebuild, swapped in by rescan.c).  No FUSE here: a test builds a namespace
 * directly. */
#ifndef QFS_FS_NAMESPACE_H
#define QFS_FS_NAMESPACE_H

#include <stdatomic.h>
#include <stdint.h>
#include <sys/stat.h>

#include "read.h"

#define QFS_NS_MAX_DEPTH 8
#define QFS_NS_MAX_NODES (1u << 18) /* default bound of entries (about 60 MiB of nodes) */

enum qfs_node_kind {
    QFS_NODE_DIR,    /* passthrough directory, model directory, the root, /.quantfs,
                        a format's loadable directory (qfs_node.dir says which) */
    QFS_NODE_FILE,   /* passthrough regular file: opened by relpath below root_fd */
    QFS_NODE_VFILE,  /* virtual file of a model */
    QFS_NODE_STATUS, /* a report of /.quantfs (qfs_node.report says which), rendered at
                        open */
};

/* The reports of /.quantfs, in name order. */
enum qfs_report {
    QFS_REPORT_METRICS = 0, /* /.quantfs/metrics: Prometheus text format (metrics.h) */
    QFS_REPORT_STATUS,      /* /.quantfs/status: JSON (status.h) */
    QFS_N_REPORTS,
};

/* What a QFS_NODE_DIR lists. */
enum qfs_dir_kind {
    QFS_DIR_SOURCE = 0, /* a source directory (relpath): the root, passthrough, model */
    QFS_DIR_STATUS,     /* /.quantfs */
    QFS_DIR_VIRT,       /* loadable directory vdir of the model `model` (<name>.awq ...):
                           no source directory of its own */
};

struct qfs_model;
struct qfs_vfile;

/* A model as described once (qfs_model_open), shared by every namespace generation in
 * which its source files are unchanged: an unchanged model keeps its virtual files, their
 * inode numbers and counters, and its content-hash memos across rescans.  A changed model
 * gets a new description (so the content is hashed again).  Refcounted by namespaces. */
struct qfs_ns_desc {
    struct qfs_model *model;
    struct qfs_read_stats *stats; /* one per model->files[i]: the counters of that file */
    char *abs;                    /* real path of the model directory */
    char *imatrix;                /* the -o imatrix= file it was opened with, or NULL */
    char *name;                   /* the model name it was opened with, or NULL (the
                                     directory's name) */
    char *label;                  /* what names it in metrics: the directory shown
                                     ("llama"), ORG--NAME@REV for a hub revision */
    uint8_t fp[16];               /* fingerprint of the directory's files (name, type, size,
                                     mtime, inode) when it was described */
    _Atomic int refs;             /* namespaces holding it */
    _Atomic int prewarmed;        /* warm.c: its prewarm was done */
};

struct qfs_node {
    char *name;             /* entry name ("" for the root) */
    enum qfs_node_kind kind;
    uint32_t parent;        /* index of the parent (the root is its own parent) */
    uint32_t first_child;   /* children: [first_child, first_child + n_children), sorted */
    uint32_t n_children;
    enum qfs_dir_kind dir;  /* QFS_NODE_DIR: what it lists */
    char *relpath;          /* QFS_NODE_FILE, QFS_DIR_SOURCE: real path relative to ns->tree
                               (the source, or a hub snapshot's repository); NULL otherwise */
    struct qfs_model *model;        /* QFS_NODE_VFILE, model directories, QFS_DIR_VIRT:
                                       owning model */
    int vdir;                       /* QFS_DIR_VIRT: index into model->dirs */
    const struct qfs_vfile *vf;     /* QFS_NODE_VFILE */
    enum qfs_report report;         /* QFS_NODE_STATUS */
    struct qfs_read_stats *stats;   /* QFS_NODE_VFILE: counters, owned by the description */
    dev_t src_dev;                  /* QFS_NODE_FILE, QFS_DIR_SOURCE: the source file's or
                                       directory's identity */
    ino_t src_ino;
    struct stat st;                 /* attributes as served (st_ino: the FUSE inode number) */
};

struct qfs_ns_model {
    char *path;              /* path shown in the mount ("/" or "/name") */
    struct qfs_model *model;
    struct qfs_ns_desc *desc; /* holds a reference; views of one hub snapshot share one */
    uint32_t node;           /* the model directory's node */
    uint32_t first_vnode;    /* nodes [first_vnode, end_vnode) hold the virtual files listed
                                in the model directory, among its other entries (check the
                                kind); empty when none is listed */
    uint32_t end_vnode;
};

struct qfs_ns_skip {
    char *path;   /* source path */
    char *reason;
};

/* A source directory a rescan depends on besides the namespace's directory nodes. */
struct qfs_ns_watch {
    char *relpath;   /* below tree */
    int names_only;  /* only entries appearing, vanishing, renamed (blobs/: not the writes
                        of a download) */
};

struct qfs_ns {
    char *source;      /* realpath of SOURCE */
    char *tree;        /* realpath of the directory relpaths are relative to: source, or
                          for a hub snapshot SOURCE its models--* directory */
    int root_fd;       /* O_PATH|O_DIRECTORY fd of tree: passthrough opens are relative */
    struct qfs_node *nodes;
    uint32_t n_nodes;
    struct qfs_ns_model *models;
    int n_models;
    struct qfs_ns_skip *skips;
    int n_skips;
    uint32_t status_node;
    uint32_t report_node[QFS_N_REPORTS];
    struct qfs_ns_watch *watch; /* see the top (hub repositories) */
    int n_watch;
    uint64_t generation;  /* 0 at mount, +1 per rebuild */
    uint64_t next_ino;    /* the next inode number never used by this or an older generation */
    uint32_t *ino_tab;    /* open addressing: inode number -> node index + 1 (0: empty) */
    uint32_t ino_mask;
    int unsettled;        /* a model directory changed while it was being described */
    /* Owned by rescan.c (the live generation list); zero from qfs_ns_build. */
    _Atomic long refs;
    struct qfs_ns *older;
};

/* Scan source and build the namespace.  0 or negative errno (logged):
 * -ENOTDIR source is not a directory, -ENOENT missing, -ENOMEM.  A model that fails to
 * open is not an error: it is recorded in skips and passed through. */
struct qfs_ns_opts {
    char *const *imatrix; /* "MODEL=FILE": the importance matrix of model directory MODEL */
    int n_imatrix;
    const struct qfs_format_set *formats; /* for every model; NULL: the defaults */
    uint32_t max_nodes;   /* bound of entries (0: QFS_NS_MAX_NODES); see the top */
};
/* o may be NULL. */
int qfs_ns_build(const char *source, const struct qfs_ns_opts *o, struct qfs_ns **out);
/* Build the next generation after prev (same source): models whose directory fingerprint
 * is unchanged are shared with prev, and every entry whose identity is unchanged (same
 * path and kind; a directory; the same source file, size and mtime; the same model
 * description) keeps its inode number.  Other entries get numbers never used before.
 * prev is only read.  0 or negative errno, as qfs_ns_build. */
int qfs_ns_rebuild(const struct qfs_ns *prev, const struct qfs_ns_opts *o, struct qfs_ns **out);
void qfs_ns_destroy(struct qfs_ns *ns);

/* What changed from prev to next, for the kernel's caches: entry(arg, dir_ino, name) for
 * every name added, removed or bound to another inode in a directory present in both;
 * dir(arg, dir_ino) for each such directory whose listing or attributes changed.
 * Returns the number of calls (0: the generations look the same). */
struct qfs_ns_diff_cb {
    void (*entry)(void *arg, uint64_t dir_ino, const char *name);
    void (*dir)(void *arg, uint64_t dir_ino);
    void *arg;
};
unsigned qfs_ns_diff(const struct qfs_ns *prev, const struct qfs_ns *next,
                     const struct qfs_ns_diff_cb *cb);

/* Node of a FUSE inode number, NULL when this generation has none (see namespace.c). */
const struct qfs_node *qfs_ns_node(const struct qfs_ns *ns, uint64_t ino);
uint64_t qfs_ns_ino(const struct qfs_ns *ns, const struct qfs_node *n);
/* Child of dir by name: 0 and *out, -ENOTDIR, or -ENOENT. */
int qfs_ns_lookup(const struct qfs_ns *ns, const struct qfs_node *dir, const char *name,
                  const struct qfs_node **out);
/* Extended attributes of the virtual entries, for clients such as `quantfs warm` (so
 * that they need not parse names): user.quantfs.format (the format's name, on virtual
 * files and loadable directories), user.quantfs.variant (on virtual files with tensors:
 * "Q4_K_M", "AWQ"), user.quantfs.file (on those: the same string for every entry that
 * shows the same virtual file).  getxattr copies the value of name into buf (size 0: only
 * its length) and returns the length, -ENODATA, or -ERANGE; listxattr lists the names
 * node n has, NUL-separated, likewise. */
ssize_t qfs_ns_getxattr(const struct qfs_node *n, const char *name, char *buf, size_t size);
ssize_t qfs_ns_listxattr(const struct qfs_node *n, char *buf, size_t size);

/* Open a passthrough file read-only (O_NOFOLLOW, no blocking on special files).
 * fd or negative errno. */
int qfs_ns_open_file(const struct qfs_ns *ns, const struct qfs_node *n);

#endif
