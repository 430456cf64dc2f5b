/* Inode numbers.
 *
 * The namespace is an array of nodes built once at mount, breadth first: the root is
 * node 0, and when a directory is scanned all of its children are appended together,
 * sorted by name (strcmp).  So the children of every directory are one contiguous,
 * sorted slice [first_child, first_child + n_children) that lookup binary-searches.
 *
 *   fuse_ino_t ino = node index + 1        (root: index 0 -> FUSE_ROOT_ID = 1)
 *
 * A virtual file's node carries its model and qfs_vfile pointers, so an inode maps to
 * (model, virtual file) by one array access.  The numbering is a pure function of the
 * source listing (names, types, and which directories are models): the same source
 * gives the same inode numbers on every mount.  Nodes live until unmount, so no
 * lookup counts or forget bookkeeping are needed. */
#include "namespace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../codecs/model.h"
#include "../codecs/vfile.h"
#include "../util/log.h"

#define STATUS_DIR "/.quantfs"
#define STATUS_DIR_NAME ".quantfs"

/* One entry found while scanning a directory, before it becomes a node. */
struct ent {
    char *name;
    enum qfs_node_kind kind;
    char *relpath;                 /* FILE/DIR: real path below the source root */
    struct stat st;                /* source attributes (the link target for symlinks) */
    const struct qfs_vfile *vf;
};

struct builder {
    struct qfs_ns *ns;
    uint32_t cap;
    uint8_t *depth;     /* per node: directory depth below the root */
    uint32_t dcap;
    int root_kind;      /* 0 directory of entries, 1 model, 2 failed model (plain tree) */
    int models_cap, skips_cap;
    const struct qfs_ns_opts *opts; /* may be NULL */
};

/* The -o imatrix=MODEL=FILE given for the model directory named `name`, or NULL. */
static const char *imatrix_for(const struct builder *b, const char *name)
{
    if (!b->opts)
        return NULL;
    size_t n = strlen(name);
    for (int i = 0; i < b->opts->n_imatrix; i++) {
        const char *e = b->opts->imatrix[i];
        if (strncmp(e, name, n) == 0 && e[n] == '=')
            return e + n + 1;
    }
    return NULL;
}

static char *join(const char *a, const char *b)
{
    char *p;
    if (!*a)
        return strdup(b);
    if (asprintf(&p, "%s/%s", a, b) < 0)
        return NULL;
    return p;
}

static int add_skip(struct builder *b, const char *path, const char *reason)
{
    struct qfs_ns *ns = b->ns;
    qfs_warn("%s: not served as a model: %s", path, reason);
    if (ns->n_skips == b->skips_cap) {
        int cap = b->skips_cap ? 2 * b->skips_cap : 8;
        void *p = realloc(ns->skips, (size_t)cap * sizeof *ns->skips);
        if (!p)
            return -ENOMEM;
        ns->skips = p;
        b->skips_cap = cap;
    }
    struct qfs_ns_skip *s = &ns->skips[ns->n_skips];
    s->path = strdup(path);
    s->reason = strdup(reason);
    if (!s->path || !s->reason) {
        free(s->path);
        free(s->reason);
        return -ENOMEM;
    }
    ns->n_skips++;
    return 0;
}

/* NULL when dir (an open directory fd) looks like a model, else why not. */
static const char *model_probe(int dfd)
{
    struct stat st;
    if (fstatat(dfd, "config.json", &st, 0) < 0 || !S_ISREG(st.st_mode))
        return "no config.json";
    if (fstatat(dfd, "model.safetensors.index.json", &st, 0) == 0 && S_ISREG(st.st_mode))
        return NULL;
    int fd = dup(dfd);
    if (fd < 0)
        return "cannot read directory";
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return "cannot read directory";
    }
    rewinddir(d);
    const char *why = "no *.safetensors or model.safetensors.index.json";
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n > 12 && strcmp(de->d_name + n - 12, ".safetensors") == 0) {
            why = NULL;
            break;
        }
    }
    closedir(d);
    return why;
}

/* Try to serve directory node idx (real path abs) as a model.  0 (served or skipped,
 * the reason recorded) or -ENOMEM. */
static int try_model(struct builder *b, uint32_t idx, const char *abs, const char *shown)
{
    struct qfs_ns *ns = b->ns;
    int dfd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *why = dfd < 0 ? "cannot open directory" : model_probe(dfd);
    if (dfd >= 0)
        close(dfd);
    if (why)
        return add_skip(b, abs, why);
    struct qfs_model *m = NULL;
    const char *base = strrchr(abs, '/');
    const struct qfs_model_opts mo = {.root = ns->source,
                                      .imatrix = imatrix_for(b, base ? base + 1 : abs)};
    int rc = qfs_model_open(abs, &mo, &m);
    if (rc < 0) {
        char reason[128];
        snprintf(reason, sizeof reason, "cannot open the model: %s", strerror(-rc));
        return add_skip(b, abs, reason);
    }
    if (ns->n_models == b->models_cap) {
        int cap = b->models_cap ? 2 * b->models_cap : 8;
        void *p = realloc(ns->models, (size_t)cap * sizeof *ns->models);
        if (!p) {
            qfs_model_close(m);
            return -ENOMEM;
        }
        ns->models = p;
        b->models_cap = cap;
    }
    struct qfs_ns_model *nm = &ns->models[ns->n_models];
    memset(nm, 0, sizeof *nm);
    nm->path = strdup(shown);
    if (!nm->path) {
        qfs_model_close(m);
        return -ENOMEM;
    }
    nm->model = m;
    ns->n_models++;
    ns->nodes[idx].model = m;
    qfs_info("%s: serving %d virtual files", abs, m->n_files);
    return 0;
}

static int node_reserve(struct builder *b, uint32_t extra)
{
    struct qfs_ns *ns = b->ns;
    if ((uint64_t)ns->n_nodes + extra > UINT32_MAX - 1)
        return -EOVERFLOW;
    if (ns->n_nodes + extra <= b->cap)
        return 0;
    uint32_t cap = b->cap ? b->cap : 64;
    while (cap < ns->n_nodes + extra)
        cap *= 2;
    struct qfs_node *p = realloc(ns->nodes, (size_t)cap * sizeof *p);
    if (!p)
        return -ENOMEM;
    ns->nodes = p;
    uint8_t *d = realloc(b->depth, cap);
    if (!d)
        return -ENOMEM;
    b->depth = d;
    b->cap = cap;
    return 0;
}

/* Served attributes: a pure function of the source metadata. */
static void set_attr(struct qfs_node *n, const struct stat *src, uint64_t ino)
{
    struct stat *st = &n->st;
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_uid = src->st_uid;
    st->st_gid = src->st_gid;
    st->st_atim = src->st_mtim;
    st->st_mtim = src->st_mtim;
    st->st_ctim = src->st_mtim;
    st->st_blksize = 4096;
    if (n->kind == QFS_NODE_DIR) {
        st->st_mode = S_IFDIR | 0555;
        st->st_nlink = 2;
        st->st_size = 4096;
    } else {
        st->st_mode = S_IFREG | 0444;
        st->st_nlink = 1;
        st->st_size = n->kind == QFS_NODE_STATUS ? 0 : src->st_size;
    }
    st->st_blocks = (st->st_size + 511) / 512;
}

static int ent_cmp(const void *a, const void *b)
{
    return strcmp(((const struct ent *)a)->name, ((const struct ent *)b)->name);
}

static void ents_free(struct ent *e, int n)
{
    for (int i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].relpath);
    }
    free(e);
}

static int ents_push(struct ent **e, int *n, int *cap, struct ent x)
{
    if (*n == *cap) {
        int c = *cap ? 2 * *cap : 16;
        void *p = realloc(*e, (size_t)c * sizeof **e);
        if (!p)
            return -ENOMEM;
        *e = p;
        *cap = c;
    }
    (*e)[(*n)++] = x;
    return 0;
}

/* Classify one directory entry: 1 and *x filled when it is listed, 0 when skipped,
 * negative errno on allocation failure. */
static int classify(struct builder *b, int dfd, const char *dir_rel, const char *name,
                    int child_depth, struct ent *x)
{
    const char *src = b->ns->source;
    struct stat st;
    char *rel = NULL;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    if (S_ISLNK(st.st_mode)) {
        char *lnk = join(dir_rel, name), *abs = NULL, *real = NULL;
        int rc = -ENOMEM;
        if (!lnk || asprintf(&abs, "%s/%s", src, lnk) < 0) {
            free(lnk);
            return -ENOMEM;
        }
        real = realpath(abs, NULL);
        size_t sl = strlen(src);
        if (!real) {
            qfs_warn("%s: symlink not followed: %s", abs, strerror(errno));
            rc = 0;
        } else if (strncmp(real, src, sl) != 0 ||
                   (real[sl] != '\0' && real[sl] != '/' && strcmp(src, "/") != 0)) {
            qfs_warn("%s: symlink not followed: it points outside the source (%s)", abs, real);
            rc = 0;
        } else if (stat(real, &st) < 0) {
            rc = 0;
        } else {
            const char *r = real + sl;
            while (*r == '/')
                r++;
            rel = strdup(r);
            rc = rel ? 1 : -ENOMEM;
        }
        free(lnk);
        free(abs);
        free(real);
        if (rc <= 0)
            return rc;
    } else {
        rel = join(dir_rel, name);
        if (!rel)
            return -ENOMEM;
    }
    if (S_ISREG(st.st_mode)) {
        x->kind = QFS_NODE_FILE;
    } else if (S_ISDIR(st.st_mode)) {
        if (child_depth > QFS_NS_MAX_DEPTH) {
            qfs_debug("%s/%s: deeper than %d levels, not listed", src, rel, QFS_NS_MAX_DEPTH);
            free(rel);
            return 0;
        }
        x->kind = QFS_NODE_DIR;
    } else {
        free(rel); /* sockets, fifos, devices: never served */
        return 0;
    }
    x->name = strdup(name);
    if (!x->name) {
        free(rel);
        return -ENOMEM;
    }
    x->relpath = rel;
    x->st = st;
    x->vf = NULL;
    return 1;
}

/* Scan directory node idx and append its children. */
static int scan_dir(struct builder *b, uint32_t idx)
{
    struct qfs_ns *ns = b->ns;
    struct ent *e = NULL;
    int n = 0, cap = 0, rc = 0;
    int depth = b->depth[idx];
    char *dir_rel = strdup(ns->nodes[idx].relpath ? ns->nodes[idx].relpath : "");
    if (!dir_rel)
        return -ENOMEM;
    int dfd = openat(ns->root_fd, *dir_rel ? dir_rel : ".",
                     O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        qfs_warn("%s/%s: cannot list: %s", ns->source, dir_rel, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        ns->nodes[idx].first_child = ns->n_nodes;
        ns->nodes[idx].n_children = 0;
        free(dir_rel);
        return 0;
    }
    struct timespec newest = {0, 0};
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (idx == 0 && !strcmp(de->d_name, STATUS_DIR_NAME)) {
            qfs_warn("%s/%s: hidden by the status directory", ns->source, STATUS_DIR_NAME);
            continue;
        }
        struct ent x;
        rc = classify(b, dfd, dir_rel, de->d_name, depth + 1, &x);
        if (rc < 0)
            goto out;
        if (rc == 0)
            continue;
        if (x.kind == QFS_NODE_FILE &&
            (x.st.st_mtim.tv_sec > newest.tv_sec ||
             (x.st.st_mtim.tv_sec == newest.tv_sec && x.st.st_mtim.tv_nsec > newest.tv_nsec)))
            newest = x.st.st_mtim;
        if ((rc = ents_push(&e, &n, &cap, x)) < 0) {
            free(x.name);
            free(x.relpath);
            goto out;
        }
    }
    rc = 0;
    struct qfs_model *m = ns->nodes[idx].model;
    int n_real = n;
    if (m) {
        struct stat vst = ns->nodes[idx].st; /* owner of the model directory */
        vst.st_mtim = newest;
        for (int i = 0; i < m->n_files; i++) {
            const struct qfs_vfile *vf = m->files[i];
            int clash = 0;
            for (int j = 0; j < n_real && !clash; j++)
                clash = !strcmp(e[j].name, vf->name);
            if (clash) {
                qfs_warn("%s/%s/%s: a source file has this name; the virtual file is not listed",
                         ns->source, dir_rel, vf->name);
                continue;
            }
            struct ent x = {.name = strdup(vf->name), .kind = QFS_NODE_VFILE, .st = vst, .vf = vf};
            x.st.st_size = (off_t)vf->size;
            if (!x.name || (rc = ents_push(&e, &n, &cap, x)) < 0) {
                free(x.name);
                rc = -ENOMEM;
                goto out;
            }
        }
    }
    if (idx == 0) {
        struct ent x = {.name = strdup(STATUS_DIR_NAME), .kind = QFS_NODE_DIR,
                        .st = ns->nodes[0].st};
        if (!x.name || (rc = ents_push(&e, &n, &cap, x)) < 0) {
            free(x.name);
            rc = -ENOMEM;
            goto out;
        }
    }
    if (n > 1)
        qsort(e, (size_t)n, sizeof *e, ent_cmp);
    if ((rc = node_reserve(b, (uint32_t)n)) < 0)
        goto out;
    struct qfs_node *dir = &ns->nodes[idx];
    dir->first_child = ns->n_nodes;
    dir->n_children = (uint32_t)n;
    for (int i = 0; i < n; i++) {
        uint32_t ci = ns->n_nodes++;
        struct qfs_node *c = &ns->nodes[ci];
        memset(c, 0, sizeof *c);
        c->name = e[i].name;
        e[i].name = NULL;
        c->kind = e[i].kind;
        c->parent = idx;
        c->relpath = e[i].relpath;
        e[i].relpath = NULL;
        b->depth[ci] = (uint8_t)(depth + 1);
        if (c->kind == QFS_NODE_VFILE) {
            c->model = m;
            c->vf = e[i].vf;
            c->stats = calloc(1, sizeof *c->stats);
            if (!c->stats) {
                rc = -ENOMEM;
                goto out;
            }
        }
        set_attr(c, &e[i].st, ci + 1);
        if (c->kind == QFS_NODE_DIR)
            ns->nodes[idx].st.st_nlink++;
        if (c->kind == QFS_NODE_VFILE && m) {
            struct qfs_ns_model *nm = &ns->models[ns->n_models - 1];
            for (int k = 0; k < ns->n_models; k++)
                if (ns->models[k].model == m)
                    nm = &ns->models[k];
            if (nm->n_vfiles++ == 0)
                nm->first_vnode = ci;
        }
        /* Which subdirectories are models: those of a directory of entries. */
        if (c->kind == QFS_NODE_DIR && idx == 0 && b->root_kind == 0 && c->relpath) {
            char *abs = join(ns->source, c->relpath), *shown = NULL;
            if (!abs || asprintf(&shown, "/%s", c->name) < 0) {
                free(abs);
                rc = -ENOMEM;
                goto out;
            }
            rc = try_model(b, ci, abs, shown);
            free(abs);
            free(shown);
            if (rc < 0)
                goto out;
        }
    }
out:
    ents_free(e, n);
    closedir(d);
    free(dir_rel);
    return rc;
}

int qfs_ns_build(const char *source, const struct qfs_ns_opts *opts, struct qfs_ns **out)
{
    struct builder b = {.opts = opts};
    struct qfs_ns *ns = calloc(1, sizeof *ns);
    int rc = -ENOMEM;
    if (!ns)
        return -ENOMEM;
    ns->root_fd = -1;
    b.ns = ns;
    ns->source = realpath(source, NULL);
    if (!ns->source) {
        rc = -errno;
        qfs_err("%s: %s", source, strerror(errno));
        goto fail;
    }
    struct stat st;
    if (stat(ns->source, &st) < 0 || !S_ISDIR(st.st_mode)) {
        rc = -ENOTDIR;
        qfs_err("%s: not a directory", source);
        goto fail;
    }
    ns->root_fd = open(ns->source, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ns->root_fd < 0) {
        rc = -errno;
        qfs_err("%s: %s", source, strerror(errno));
        goto fail;
    }
    if ((rc = node_reserve(&b, 1)) < 0)
        goto fail;
    struct qfs_node *root = &ns->nodes[0];
    memset(root, 0, sizeof *root);
    root->kind = QFS_NODE_DIR;
    root->name = strdup("");
    root->relpath = strdup("");
    if (!root->name || !root->relpath)
        goto fail;
    set_attr(root, &st, 1);
    b.depth[0] = 0;
    ns->n_nodes = 1;

    int dfd = open(ns->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *why = dfd < 0 ? "no config.json" : model_probe(dfd);
    if (dfd >= 0)
        close(dfd);
    if (!why) {
        int nm = ns->n_models;
        if ((rc = try_model(&b, 0, ns->source, "/")) < 0)
            goto fail;
        b.root_kind = ns->n_models > nm ? 1 : 2;
    }

    /* Breadth first: node i's children are appended when i is reached. */
    for (uint32_t i = 0; i < ns->n_nodes; i++) {
        if (ns->nodes[i].kind != QFS_NODE_DIR)
            continue;
        if (ns->nodes[i].relpath) {
            if ((rc = scan_dir(&b, i)) < 0)
                goto fail;
        } else { /* /.quantfs: one child, the status file */
            if ((rc = node_reserve(&b, 1)) < 0)
                goto fail;
            uint32_t ci = ns->n_nodes++;
            struct qfs_node *c = &ns->nodes[ci];
            memset(c, 0, sizeof *c);
            c->kind = QFS_NODE_STATUS;
            c->parent = i;
            c->name = strdup("status");
            if (!c->name) {
                rc = -ENOMEM;
                goto fail;
            }
            set_attr(c, &ns->nodes[0].st, ci + 1);
            b.depth[ci] = (uint8_t)(b.depth[i] + 1);
            ns->nodes[i].first_child = ci;
            ns->nodes[i].n_children = 1;
            ns->status_node = ci;
        }
    }
    free(b.depth);
    qfs_info("%s: %u entries, %d models, %d directories not served as models", ns->source,
             ns->n_nodes, ns->n_models, ns->n_skips);
    *out = ns;
    return 0;
fail:
    if (rc == -ENOMEM)
        qfs_err("%s: out of memory while scanning", source);
    free(b.depth);
    qfs_ns_destroy(ns);
    return rc;
}

void qfs_ns_destroy(struct qfs_ns *ns)
{
    if (!ns)
        return;
    for (uint32_t i = 0; i < ns->n_nodes; i++) {
        free(ns->nodes[i].name);
        free(ns->nodes[i].relpath);
        free(ns->nodes[i].stats);
    }
    free(ns->nodes);
    for (int i = 0; i < ns->n_models; i++) {
        qfs_model_close(ns->models[i].model);
        free(ns->models[i].path);
    }
    free(ns->models);
    for (int i = 0; i < ns->n_skips; i++) {
        free(ns->skips[i].path);
        free(ns->skips[i].reason);
    }
    free(ns->skips);
    if (ns->root_fd >= 0)
        close(ns->root_fd);
    free(ns->source);
    free(ns);
}

const struct qfs_node *qfs_ns_node(const struct qfs_ns *ns, uint64_t ino)
{
    if (ino == 0 || ino > ns->n_nodes)
        return NULL;
    return &ns->nodes[ino - 1];
}

uint64_t qfs_ns_ino(const struct qfs_ns *ns, const struct qfs_node *n)
{
    return (uint64_t)(n - ns->nodes) + 1;
}

int qfs_ns_lookup(const struct qfs_ns *ns, const struct qfs_node *dir, const char *name,
                  const struct qfs_node **out)
{
    if (dir->kind != QFS_NODE_DIR)
        return -ENOTDIR;
    uint32_t lo = dir->first_child, hi = dir->first_child + dir->n_children;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        int c = strcmp(ns->nodes[mid].name, name);
        if (c == 0) {
            *out = &ns->nodes[mid];
            return 0;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return -ENOENT;
}

int qfs_ns_open_file(const struct qfs_ns *ns, const struct qfs_node *n)
{
    if (n->kind != QFS_NODE_FILE || !n->relpath)
        return -EINVAL;
    /* relpath is a real path (symlinks were resolved and checked at scan); O_NOFOLLOW
     * refuses a file replaced by a symlink since, O_NONBLOCK a fifo. */
    int fd = openat(ns->root_fd, n->relpath, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return -EACCES;
    }
    return fd;
}
