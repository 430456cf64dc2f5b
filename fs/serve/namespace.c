/* Inode numbers.
 *
 * A namespace is an array of nodes built breadth first: the root is node 0, and when a
 * directory is scanned all of its children are appended together, sorted by name
 * (strcmp).  So the children of every directory are one contiguous, sorted slice
 * [first_child, first_child + n_children) that lookup binary-searches.
 *
 * Generation 0 (the mount):   fuse_ino_t ino = node index + 1   (root: FUSE_ROOT_ID = 1)
 * so the numbering is a pure function of the source listing: the same source gives the
 * same inode numbers on every mount.
 *
 * A rescan builds generation g+1 next to g (qfs_ns_rebuild).  A node of g+1 whose path,
 * kind and identity match a node of g keeps that node's number: directories by path and
 * what they list (a source directory, /.quantfs, a model's loadable directory); a passthrough
 * file while its source file (device, inode, size, mtime) is the same; a virtual file
 * while its model description is the same object (models whose directory fingerprint is
 * unchanged are shared, not reopened).  Any other node gets next_ino++,
 * a number no generation used before.  So an inode number always denotes one content:
 * the kernel may keep attributes and pages of a number forever, and a handle opened on
 * an old number keeps reading the content it opened.  Each generation maps numbers to
 * nodes by a small open-addressing table (node index + 1 in generation 0 is its fast
 * path).  Nodes live as long as their generation (rescan.c keeps old generations until
 * their last handle is released), so no lookup counts or forget bookkeeping are needed:
 * a number no live generation knows is answered ESTALE. */
#include "namespace.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../cache/cache.h"
#include "../../codecs/format.h"
#include "../../codecs/source/model.h"
#include "../../codecs/vfile.h"
#include "../../util/json_file.h"
#include "../../util/log.h"

#define STATUS_DIR "/.quantfs"
#define STATUS_DIR_NAME ".quantfs"

/* One entry found while scanning a directory, before it becomes a node. */
struct ent {
    char *name;
    enum qfs_node_kind kind;
    enum qfs_dir_kind dir;         /* DIR: what it lists */
    char *relpath;                 /* FILE, source DIR: real path below the source root */
    struct stat st;                /* source attributes (the link target for symlinks) */
    const struct qfs_vfile *vf;
    int vf_index;                  /* VFILE: index of its file (and counters) in the model */
    int vdir;                      /* DIR of kind QFS_DIR_VIRT: index into model->dirs */
    bool via_link;                 /* source DIR: reached through a symlink */
    uint32_t jail;                 /* source DIR: index into builder.jails of the directory
                                      its links must stay in; 0: its parent's */
    char *model_name;              /* a hub view (source DIR): its model's name ORG--NAME */
    char *label;                   /* a hub view: ORG--NAME@REV (qfs_ns_desc.label) */
};

/* Source directories listed so far, by identity: open addressing, at most half full. */
struct dirset {
    struct dirid {
        dev_t dev;
        ino_t ino;
        bool used;
    } *v;
    uint32_t cap, n; /* cap: 0 or a power of two */
};

struct builder {
    struct qfs_ns *ns;
    uint32_t cap;
    uint8_t *depth;     /* per node: directory depth below the root */
    uint32_t dcap;
    int root_kind;      /* 0 directory of entries, 1 model, 2 failed model (plain tree),
                           3 a hub repository (models--*: lists its views) */
    int models_cap, skips_cap;
    const struct qfs_ns_opts *opts; /* may be NULL */
    const struct qfs_ns *prev;      /* the generation before, or NULL */
    struct dirset dirs;             /* source directories listed (the root included) */
    struct dirset scanned;          /* source directories scanned: a second view of one
                                       logs nothing about its entries */
    uint32_t *jail;                 /* per node: index into jails */
    char **jails;                   /* real paths symlinks must stay in: [0] the tree,
                                       then one per hub repository */
    int n_jails, jails_cap;
    int watch_cap;
    uint32_t max_nodes;             /* bound of ns->n_nodes (see namespace.h) */
    uint32_t over_limit;            /* directories not listed for max_nodes */
};

#define LIMIT_LOGGED 16 /* directories not listed for max_nodes logged one by one */

static uint32_t dirset_slot(const struct dirset *s, dev_t dev, ino_t ino)
{
    uint64_t h = ((uint64_t)dev * 0x9E3779B97F4A7C15ull) ^ ((uint64_t)ino * 0xC2B2AE3D27D4EB4Full);
    return (uint32_t)(h >> 32) & (s->cap - 1);
}

static bool dirset_has(const struct dirset *s, dev_t dev, ino_t ino)
{
    if (s->cap == 0)
        return false;
    for (uint32_t h = dirset_slot(s, dev, ino); s->v[h].used; h = (h + 1) & (s->cap - 1))
        if (s->v[h].dev == dev && s->v[h].ino == ino)
            return true;
    return false;
}

/* Add (dev, ino) if not present.  0 or -ENOMEM. */
static int dirset_add(struct dirset *s, dev_t dev, ino_t ino)
{
    if (dirset_has(s, dev, ino))
        return 0;
    if (2 * (s->n + 1) > s->cap) {
        struct dirset g = {.cap = s->cap ? 2 * s->cap : 64};
        g.v = calloc(g.cap, sizeof *g.v);
        if (!g.v)
            return -ENOMEM;
        for (uint32_t i = 0; i < s->cap; i++) {
            if (!s->v[i].used)
                continue;
            uint32_t h = dirset_slot(&g, s->v[i].dev, s->v[i].ino);
            while (g.v[h].used)
                h = (h + 1) & (g.cap - 1);
            g.v[h] = s->v[i];
        }
        g.n = s->n;
        free(s->v);
        *s = g;
    }
    uint32_t h = dirset_slot(s, dev, ino);
    while (s->v[h].used)
        h = (h + 1) & (s->cap - 1);
    s->v[h] = (struct dirid){.dev = dev, .ino = ino, .used = true};
    s->n++;
    return 0;
}

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

/* Record path in the skips the status file lists (no log line).  0 or -ENOMEM. */
static int record_skip(struct builder *b, const char *path, const char *reason)
{
    struct qfs_ns *ns = b->ns;
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

/* A directory not served as a model: one log line, and recorded, once per build (two
 * views of one hub snapshot are one skip).  0 or -ENOMEM. */
static int add_skip(struct builder *b, const char *path, const char *reason)
{
    for (int i = 0; i < b->ns->n_skips; i++)
        if (!strcmp(b->ns->skips[i].path, path))
            return 0;
    qfs_warn("%s: not served as a model: %s", path, reason);
    return record_skip(b, path, reason);
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

/* ---- model descriptions ---- */

static void desc_put(struct qfs_ns_desc *d)
{
    if (!d || atomic_fetch_sub(&d->refs, 1) != 1)
        return;
    qfs_model_close(d->model);
    free(d->stats);
    free(d->abs);
    free(d->imatrix);
    free(d->name);
    free(d->label);
    free(d);
}

struct fp_ent {
    char *name;
    struct stat st;
    int ok;
};

static int fp_cmp(const void *a, const void *b)
{
    return strcmp(((const struct fp_ent *)a)->name, ((const struct fp_ent *)b)->name);
}

static int fp_add_stat(struct qfs_cache_keybuf *kb, const struct stat *st)
{
    int rc = 0;
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)(st->st_mode & S_IFMT));
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)st->st_size);
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)st->st_mtim.tv_sec);
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)st->st_mtim.tv_nsec);
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)st->st_ino);
    rc |= qfs_keybuf_add_u64(kb, (uint64_t)st->st_dev);
    return rc;
}

/* Fingerprint of what a model description is made from: every entry of the directory
 * (name; type, size, mtime, inode and device of what it names, symlinks followed) and
 * the importance matrix file given by option.  0 or -ENOMEM (an unreadable directory
 * or entry still gives a fingerprint). */
static int fingerprint(const char *abs, const char *imatrix, uint8_t out[16])
{
    struct fp_ent *e = NULL;
    int n = 0, cap = 0, rc = 0;
    DIR *d = opendir(abs);
    if (d) {
        struct dirent *de;
        while ((de = readdir(d))) {
            if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                continue;
            if (n == cap) {
                int c = cap ? 2 * cap : 32;
                void *p = realloc(e, (size_t)c * sizeof *e);
                if (!p) {
                    rc = -ENOMEM;
                    break;
                }
                e = p;
                cap = c;
            }
            struct fp_ent *x = &e[n];
            if (!(x->name = strdup(de->d_name))) {
                rc = -ENOMEM;
                break;
            }
            x->ok = fstatat(dirfd(d), de->d_name, &x->st, 0) == 0 ||
                    fstatat(dirfd(d), de->d_name, &x->st, AT_SYMLINK_NOFOLLOW) == 0;
            n++;
        }
        closedir(d);
    }
    if (n > 1)
        qsort(e, (size_t)n, sizeof *e, fp_cmp);
    struct qfs_cache_keybuf kb;
    qfs_keybuf_init(&kb);
    int bad = qfs_keybuf_add(&kb, "quantfs-model-dir", 17);
    bad |= qfs_keybuf_add_u64(&kb, d ? 1 : 0);
    for (int i = 0; i < n; i++) {
        bad |= qfs_keybuf_add(&kb, e[i].name, strlen(e[i].name));
        if (e[i].ok)
            bad |= fp_add_stat(&kb, &e[i].st);
        free(e[i].name);
    }
    free(e);
    if (imatrix) {
        struct stat st;
        bad |= qfs_keybuf_add(&kb, imatrix, strlen(imatrix));
        if (stat(imatrix, &st) == 0)
            bad |= fp_add_stat(&kb, &st);
    }
    struct qfs_cache_key k;
    qfs_keybuf_finish(&kb, &k);
    memcpy(out, k.b, 16);
    return rc ? rc : bad ? -ENOMEM : 0;
}

static int str_eq(const char *a, const char *b)
{
    return a == b || (a && b && !strcmp(a, b));
}

/* How a model directory is shown and described (try_model). */
struct view {
    const char *shown;   /* its path in the mount ("/" or "/name") */
    const char *name;    /* the model's name; NULL: the directory's */
    const char *label;   /* qfs_ns_desc.label; NULL: shown without its '/' (or the name) */
    const char *imx;     /* the name -o imatrix=NAME=FILE gives it by */
    const char *jail;    /* real path its files must stay in */
};

static bool desc_matches(const struct qfs_ns_desc *d, const char *abs, const struct view *v,
                         const char *imatrix, const uint8_t fp[16])
{
    return d && !strcmp(d->abs, abs) && str_eq(d->imatrix, imatrix) && str_eq(d->name, v->name) &&
           !memcmp(d->fp, fp, 16) && !atomic_load(&d->model->stale);
}

/* A description of abs that still holds: same directory, name, importance matrix option
 * and fingerprint, never found stale: one this generation made already (another view of
 * the same hub snapshot), else the previous generation's. */
static struct qfs_ns_desc *desc_reuse(const struct builder *b, const char *abs,
                                      const struct view *v, const char *imatrix,
                                      const uint8_t fp[16])
{
    for (int i = 0; i < b->ns->n_models; i++)
        if (desc_matches(b->ns->models[i].desc, abs, v, imatrix, fp))
            return b->ns->models[i].desc;
    for (int i = 0; b->prev && i < b->prev->n_models; i++)
        if (desc_matches(b->prev->models[i].desc, abs, v, imatrix, fp))
            return b->prev->models[i].desc;
    return NULL;
}

/* Describe the model in abs (qfs_model_open), with fingerprint fp.  0, -ENOMEM, or the
 * model's error (*why filled). */
static int desc_open(const struct builder *b, const char *abs, const struct view *v,
                     const char *imatrix, const uint8_t fp[16], struct qfs_ns_desc **out)
{
    struct qfs_ns_desc *d = calloc(1, sizeof *d);
    if (!d)
        return -ENOMEM;
    atomic_init(&d->refs, 1);
    memcpy(d->fp, fp, 16);
    d->abs = strdup(abs);
    d->imatrix = imatrix ? strdup(imatrix) : NULL;
    d->name = v->name ? strdup(v->name) : NULL;
    if (!d->abs || (imatrix && !d->imatrix) || (v->name && !d->name)) {
        desc_put(d);
        return -ENOMEM;
    }
    const struct qfs_model_opts mo = {.root = v->jail, .imatrix = imatrix, .name = v->name,
                                      .formats = b->opts ? b->opts->formats : NULL};
    int rc = qfs_model_open(abs, &mo, &d->model);
    if (rc < 0) {
        d->model = NULL;
        desc_put(d);
        return rc;
    }
    d->stats = calloc((size_t)d->model->n_files + 1, sizeof *d->stats);
    if (!d->stats) {
        desc_put(d);
        return -ENOMEM;
    }
    for (int i = 0; i < d->model->n_files; i++)
        d->stats[i].model = d->model;
    d->label = strdup(v->label ? v->label : v->shown[1] ? v->shown + 1 : d->model->name);
    if (!d->label) {
        desc_put(d);
        return -ENOMEM;
    }
    *out = d;
    return 0;
}

/* Try to serve directory node idx (real path abs) as a model: the previous generation's
 * description when its fingerprint still holds, else a new one.  0 (served or skipped,
 * the reason recorded) or -ENOMEM. */
static int try_model(struct builder *b, uint32_t idx, const char *abs, const struct view *v)
{
    struct qfs_ns *ns = b->ns;
    for (int i = 0; i < ns->n_skips; i++)
        if (!strcmp(ns->skips[i].path, abs))
            return 0; /* another view of a snapshot found unusable in this build */
    int dfd = open(abs, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *why = dfd < 0 ? "cannot open directory" : model_probe(dfd);
    if (dfd >= 0)
        close(dfd);
    if (why)
        return add_skip(b, abs, why);
    const char *imatrix = imatrix_for(b, v->imx);
    uint8_t fp[16], fp2[16];
    int rc = fingerprint(abs, imatrix, fp);
    if (rc < 0)
        return rc;
    struct qfs_ns_desc *d = desc_reuse(b, abs, v, imatrix, fp);
    if (d) {
        atomic_fetch_add(&d->refs, 1);
    } else {
        rc = desc_open(b, abs, v, imatrix, fp, &d);
        if (rc == -ENOMEM)
            return rc;
        if (rc < 0) {
            char reason[128];
            snprintf(reason, sizeof reason, "cannot open the model: %s", strerror(-rc));
            return add_skip(b, abs, reason);
        }
        /* Changed while it was read: keep the description (the fingerprint from before,
         * so the next rescan describes it again) and ask for that rescan. */
        if (fingerprint(abs, imatrix, fp2) == 0 && memcmp(fp, fp2, 16) != 0)
            ns->unsettled = 1;
        qfs_info("%s: serving %d virtual files", abs, d->model->n_files);
    }
    if (ns->n_models == b->models_cap) {
        int cap = b->models_cap ? 2 * b->models_cap : 8;
        void *p = realloc(ns->models, (size_t)cap * sizeof *ns->models);
        if (!p) {
            desc_put(d);
            return -ENOMEM;
        }
        ns->models = p;
        b->models_cap = cap;
    }
    struct qfs_ns_model *nm = &ns->models[ns->n_models];
    memset(nm, 0, sizeof *nm);
    nm->node = idx;
    nm->path = strdup(v->shown);
    if (!nm->path) {
        desc_put(d);
        return -ENOMEM;
    }
    nm->model = d->model;
    nm->desc = d;
    ns->n_models++;
    ns->nodes[idx].model = d->model;
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
    uint32_t *j = realloc(b->jail, (size_t)cap * sizeof *j);
    if (!j)
        return -ENOMEM;
    b->jail = j;
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

/* Free x's strings (and forget them). */
static void ent_clear(struct ent *x)
{
    free(x->name);
    free(x->relpath);
    free(x->model_name);
    free(x->label);
    x->name = x->relpath = x->model_name = x->label = NULL;
}

static void ents_free(struct ent *e, int n)
{
    for (int i = 0; i < n; i++)
        ent_clear(&e[i]);
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

/* ents_push taking x's strings in every case: x.name NULL (a failed strdup) or a full
 * array frees them.  0 or -ENOMEM. */
static int ents_add(struct ent **e, int *n, int *cap, struct ent x)
{
    if (x.name && ents_push(e, n, cap, x) == 0)
        return 0;
    ent_clear(&x);
    return -ENOMEM;
}

static int ents_have(const struct ent *e, int n, const char *name)
{
    for (int i = 0; i < n; i++)
        if (!strcmp(e[i].name, name))
            return 1;
    return 0;
}

/* Is real inside dir (both real paths)? */
static bool path_inside(const char *real, const char *dir)
{
    size_t n = strlen(dir);
    return strncmp(real, dir, n) == 0 &&
           (real[n] == '\0' || real[n] == '/' || strcmp(dir, "/") == 0);
}

/* Classify one directory entry of a directory whose links must stay in jail b->jails[jail]
 * (quiet: that directory was scanned before in this build, through another view: log
 * nothing): 1 and *x filled when it is listed, 0 when skipped, negative errno on
 * allocation failure. */
static int classify(struct builder *b, int dfd, const char *dir_rel, const char *name,
                    int child_depth, uint32_t jail, bool quiet, struct ent *x)
{
    const char *src = b->ns->tree, *in = b->jails[jail];
    struct stat st;
    char *rel = NULL;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return 0;
    const bool link = S_ISLNK(st.st_mode);
    if (link) {
        char *lnk = join(dir_rel, name), *abs = NULL, *real = NULL;
        int rc = -ENOMEM;
        if (!lnk || asprintf(&abs, "%s/%s", src, lnk) < 0) {
            free(lnk);
            return -ENOMEM;
        }
        real = realpath(abs, NULL);
        size_t sl = strlen(src);
        if (!real) {
            if (!quiet)
                qfs_warn("%s: symlink not followed: %s", abs, strerror(errno));
            rc = 0;
        } else if (!path_inside(real, in)) {
            if (!quiet && jail == 0 && !strcmp(src, b->ns->source))
                qfs_warn("%s: symlink not followed: it points outside the source (%s)", abs,
                         real);
            else if (!quiet)
                qfs_warn("%s: symlink not followed: it points outside its repository %s (%s)",
                         abs, in, real);
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
    x->dir = QFS_DIR_SOURCE;
    x->st = st;
    x->vf = NULL;
    x->vf_index = -1;
    x->via_link = link;
    x->jail = 0;
    x->model_name = x->label = NULL;
    return 1;
}

/* The description serving model m (m is in ns->models). */
static struct qfs_ns_desc *desc_of(const struct qfs_ns *ns, const struct qfs_model *m)
{
    for (int k = 0; k < ns->n_models; k++)
        if (ns->models[k].model == m)
            return ns->models[k].desc;
    return NULL;
}

/* The virtual entries of model m's directory, after its source entries e[0, *n): its
 * listed virtual files and its loadable directories; each unless a source entry has that
 * name.  vst: their attributes.  0 or -ENOMEM. */
static int model_ents(const struct qfs_ns *ns, const char *dir_rel, const struct qfs_model *m,
                      const struct stat *vst, struct ent **e, int *n, int *cap)
{
    const int n_real = *n;
    int rc;
    for (int i = 0; i < m->n_files; i++) {
        const struct qfs_vfile *vf = m->files[i];
        if (!vf->listed)
            continue;
        if (ents_have(*e, n_real, vf->name)) {
            qfs_warn("%s/%s/%s: a source file has this name; the virtual file is not listed",
                     ns->tree, dir_rel, vf->name);
            continue;
        }
        struct ent x = {.name = strdup(vf->name), .kind = QFS_NODE_VFILE, .st = *vst, .vf = vf,
                        .vf_index = i};
        x.st.st_size = (off_t)vf->size;
        if ((rc = ents_add(e, n, cap, x)) < 0)
            return rc;
    }
    for (int i = 0; i < m->n_dirs; i++) {
        if (ents_have(*e, n_real, m->dirs[i].name)) {
            qfs_warn("%s/%s/%s: a source entry has this name; the virtual directory is not "
                     "listed", ns->tree, dir_rel, m->dirs[i].name);
            continue;
        }
        struct ent x = {.name = strdup(m->dirs[i].name), .kind = QFS_NODE_DIR,
                        .dir = QFS_DIR_VIRT, .st = *vst, .vf_index = -1, .vdir = i};
        if ((rc = ents_add(e, n, cap, x)) < 0)
            return rc;
    }
    return 0;
}

/* Append e[0, n) as the children of directory node idx, sorted by name (the nodes take
 * the entries' strings).  Model subdirectories of a directory of entries are described
 * here (try_model).  0 or negative errno. */
static int add_children(struct builder *b, uint32_t idx, struct ent *e, int n)
{
    struct qfs_ns *ns = b->ns;
    struct qfs_model *m = ns->nodes[idx].model;
    /* virtual files listed in a model directory: its status entries (not those of its
     * loadable directories, which share their counters or are small) */
    const int model_dir = m && ns->nodes[idx].dir == QFS_DIR_SOURCE;
    const int depth = b->depth[idx];
    int rc;
    if (n > 1)
        qsort(e, (size_t)n, sizeof *e, ent_cmp);
    if ((rc = node_reserve(b, (uint32_t)n)) < 0)
        return rc;
    ns->nodes[idx].first_child = ns->n_nodes;
    ns->nodes[idx].n_children = (uint32_t)n;
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
        b->jail[ci] = e[i].jail ? e[i].jail : b->jail[idx];
        if (c->kind == QFS_NODE_VFILE) {
            c->model = m;
            c->vf = e[i].vf;
            c->stats = &desc_of(ns, m)->stats[e[i].vf_index];
        } else if (c->kind == QFS_NODE_FILE) {
            c->src_dev = e[i].st.st_dev;
            c->src_ino = e[i].st.st_ino;
        } else if (c->kind == QFS_NODE_DIR) {
            c->dir = e[i].dir;
            if (c->dir == QFS_DIR_VIRT) {
                c->model = m;
                c->vdir = e[i].vdir;
            }
            if (c->dir == QFS_DIR_SOURCE) {
                c->src_dev = e[i].st.st_dev;
                c->src_ino = e[i].st.st_ino;
            }
        }
        set_attr(c, &e[i].st, ci + 1);
        if (c->kind == QFS_NODE_DIR)
            ns->nodes[idx].st.st_nlink++;
        if (c->kind == QFS_NODE_VFILE && model_dir) {
            struct qfs_ns_model *nm = NULL;
            for (int k = 0; k < ns->n_models && !nm; k++)
                if (ns->models[k].node == idx)
                    nm = &ns->models[k];
            if (nm && nm->end_vnode == 0)
                nm->first_vnode = ci;
            if (nm)
                nm->end_vnode = ci + 1;
        }
        /* Which subdirectories are models: those of a directory of entries (a hub
         * repository's views included), of a repository. */
        if (c->kind == QFS_NODE_DIR && c->dir == QFS_DIR_SOURCE && idx == 0 &&
            (b->root_kind == 0 || b->root_kind == 3)) {
            char *abs = join(ns->tree, c->relpath), *shown = NULL;
            if (!abs || asprintf(&shown, "/%s", c->name) < 0) {
                free(abs);
                return -ENOMEM;
            }
            const char *base = strrchr(abs, '/');
            const struct view v = {.shown = shown, .name = e[i].model_name,
                                   .label = e[i].label,
                                   .imx = e[i].model_name ? c->name : base ? base + 1 : abs,
                                   .jail = b->jails[b->jail[ci]]};
            if (e[i].model_name || b->root_kind == 0)
                rc = try_model(b, ci, abs, &v);
            free(abs);
            free(shown);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

/* Is the directory (dev, ino) node idx or one of its ancestors? */
static int is_ancestor(const struct qfs_ns *ns, uint32_t idx, dev_t dev, ino_t ino)
{
    for (;;) {
        const struct qfs_node *n = &ns->nodes[idx];
        if (n->kind == QFS_NODE_DIR && n->dir == QFS_DIR_SOURCE && n->src_dev == dev &&
            n->src_ino == ino)
            return 1;
        if (idx == 0)
            return 0;
        idx = n->parent;
    }
}

/* Keep, among the sorted entries e[0, *n) of directory node idx (source path dir_rel),
 * the source directories the namespace may list (namespace.h): real ones first, then
 * links, none that is idx or an ancestor, and no link to a directory listed already.
 * The others are dropped (one log line each); the kept ones are added to b->dirs.
 * 0 or -ENOMEM. */
static int filter_dirs(struct builder *b, uint32_t idx, const char *dir_rel, struct ent *e,
                       int *n)
{
    struct qfs_ns *ns = b->ns;
    int rc = 0;
    for (int pass = 0; pass < 2 && rc == 0; pass++) {
        for (int i = 0; i < *n && rc == 0; i++) {
            struct ent *x = &e[i];
            if (x->kind != QFS_NODE_DIR || x->dir != QFS_DIR_SOURCE || x->via_link != pass)
                continue;
            const char *why = NULL;
            if (is_ancestor(ns, idx, x->st.st_dev, x->st.st_ino))
                why = x->via_link ? "symlink not followed: it points to an ancestor directory"
                                  : "not listed: the same directory as an ancestor (a bind "
                                    "mount?)";
            else if (x->via_link && dirset_has(&b->dirs, x->st.st_dev, x->st.st_ino))
                why = "symlink not followed: the directory it points to is already listed";
            if (!why) {
                rc = dirset_add(&b->dirs, x->st.st_dev, x->st.st_ino);
                continue;
            }
            qfs_warn("%s/%s%s%s: %s (%s/%s)", ns->tree, dir_rel, *dir_rel ? "/" : "",
                     x->name, why, ns->tree, x->relpath);
            ent_clear(x);
        }
    }
    int k = 0;
    for (int i = 0; i < *n; i++)
        if (e[i].name) /* a dropped entry's strings are already freed */
            e[k++] = e[i];
    *n = k;
    return rc;
}

/* Directory node idx (source path dir_rel) would take the namespace past b->max_nodes:
 * logged (the first LIMIT_LOGGED) and recorded.  0 or -ENOMEM. */
static int over_limit(struct builder *b, const char *dir_rel)
{
    struct qfs_ns *ns = b->ns;
    char *path = NULL, reason[128];
    if (++b->over_limit > LIMIT_LOGGED)
        return 0;
    if (asprintf(&path, "%s%s%s", ns->tree, *dir_rel ? "/" : "", dir_rel) < 0)
        return -ENOMEM;
    snprintf(reason, sizeof reason, "not listed: the mount would hold more than %" PRIu32
             " entries (-o max_entries)", b->max_nodes);
    qfs_warn("%s: %s", path, reason);
    int rc = record_skip(b, path, reason);
    free(path);
    return rc;
}

/* ---- Hugging Face hub cache (see namespace.h) ---- */

#define HUB_PREFIX "models--"
#define HUB_PREFIX_LEN 8

/* Is entry name of directory dfd a hub repository: a real directory models--X holding a
 * real directory snapshots/? */
static bool hub_is_repo(int dfd, const char *name)
{
    struct stat st;
    if (strncmp(name, HUB_PREFIX, HUB_PREFIX_LEN) != 0 || !name[HUB_PREFIX_LEN] ||
        fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        return false;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    bool yes = fstatat(fd, "snapshots", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
    close(fd);
    return yes;
}

/* Is the directory abs (a real path) a hub repository? */
static bool hub_is_repo_path(const char *abs)
{
    const char *base = strrchr(abs, '/');
    if (!base || base == abs)
        return false;
    char *dir = strndup(abs, (size_t)(base - abs));
    int fd = dir ? open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    bool yes = fd >= 0 && hub_is_repo(fd, base + 1);
    if (fd >= 0)
        close(fd);
    free(dir);
    return yes;
}

/* abs (a real path) is .../models--ORG--NAME/snapshots/REV of a hub repository: the
 * repository's real path (malloc'd), *rev its REV (in abs).  Else NULL. */
static char *hub_snapshot_tree(const char *abs, const char **rev)
{
    const char *b = strrchr(abs, '/');
    if (!b || b == abs || !b[1])
        return NULL;
    char *snaps = strndup(abs, (size_t)(b - abs));
    char *s = snaps ? strrchr(snaps, '/') : NULL;
    char *repo = NULL;
    if (s && s != snaps && !strcmp(s + 1, "snapshots")) {
        *s = '\0';
        if (hub_is_repo_path(snaps))
            repo = strdup(snaps);
    }
    free(snaps);
    if (repo)
        *rev = b + 1;
    return repo;
}

/* Add relpath (below the tree) to the namespace's watch list.  0 or -ENOMEM. */
static int add_watch(struct builder *b, const char *a, const char *c, int names_only)
{
    struct qfs_ns *ns = b->ns;
    if (ns->n_watch == b->watch_cap) {
        int cap = b->watch_cap ? 2 * b->watch_cap : 16;
        void *p = realloc(ns->watch, (size_t)cap * sizeof *ns->watch);
        if (!p)
            return -ENOMEM;
        ns->watch = p;
        b->watch_cap = cap;
    }
    char *rel = NULL;
    if (asprintf(&rel, "%s%s%s", a, *a && *c ? "/" : "", c) < 0)
        return -ENOMEM;
    ns->watch[ns->n_watch++] = (struct qfs_ns_watch){.relpath = rel, .names_only = names_only};
    return 0;
}

/* Add abs as a jail; its index, or -ENOMEM. */
static int add_jail(struct builder *b, const char *abs)
{
    if (b->n_jails == b->jails_cap) {
        int cap = b->jails_cap ? 2 * b->jails_cap : 8;
        void *p = realloc(b->jails, (size_t)cap * sizeof *b->jails);
        if (!p)
            return -ENOMEM;
        b->jails = p;
        b->jails_cap = cap;
    }
    if (!(b->jails[b->n_jails] = strdup(abs)))
        return -ENOMEM;
    return b->n_jails++;
}

/* A dangling symlink in directory fd (a snapshot, depth levels below it): its path
 * below the snapshot in why.  1 found, 0 none. */
static int hub_dangling(int fd, const char *rel, int depth, char *why, size_t n)
{
    int dfd = dup(fd);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        if (dfd >= 0)
            close(dfd);
        return 0;
    }
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        if (S_ISLNK(st.st_mode) && fstatat(dirfd(d), de->d_name, &st, 0) < 0 &&
            errno == ENOENT) {
            snprintf(why, n, "incomplete download: %s%s%s is a dangling symlink", rel,
                     *rel ? "/" : "", de->d_name);
            found = 1;
        } else if (S_ISDIR(st.st_mode) && depth < QFS_NS_MAX_DEPTH) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC |
                                                       O_NOFOLLOW);
            char *r = join(rel, de->d_name);
            if (sub >= 0 && r)
                found = hub_dangling(sub, r, depth + 1, why, n);
            free(r);
            if (sub >= 0)
                close(sub);
        }
    }
    closedir(d);
    return found;
}

/* Is the snapshot in directory fd (real path abs) a partial download: a dangling symlink,
 * or a shard its model.safetensors.index.json names missing?  1 and why, 0, or -ENOMEM. */
static int hub_incomplete(int fd, const char *abs, char *why, size_t n)
{
    if (hub_dangling(fd, "", 1, why, n))
        return 1;
    struct stat st;
    if (fstatat(fd, "model.safetensors.index.json", &st, 0) < 0)
        return 0;
    char *p = join(abs, "model.safetensors.index.json");
    if (!p)
        return -ENOMEM;
    json_t *root = NULL;
    int rc = qfs_json_load(p, QFS_JSON_MAX_CONFIG, 0, &root);
    free(p);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0)
        return 0; /* the model reader says what is wrong with it */
    json_t *map = json_object_get(root, "weight_map"), *v;
    const char *k;
    int found = 0;
    json_object_foreach(map, k, v) {
        const char *shard = json_string_value(v);
        if (shard && *shard && (fstatat(fd, shard, &st, 0) < 0 || !S_ISREG(st.st_mode))) {
            snprintf(why, n, "incomplete download: %s (named by model.safetensors.index.json) "
                     "is missing", shard);
            found = 1;
            break;
        }
    }
    json_decref(root);
    return found;
}

/* Append a view of a snapshot: directory name shown (the model named model) of relpath
 * rel, listing links jailed in jail.  0 or -ENOMEM. */
static int hub_view(struct ent **e, int *n, int *cap, const char *shown, const char *model,
                    const char *label, const char *rel, const struct stat *st, uint32_t jail)
{
    struct ent x = {.name = strdup(shown), .kind = QFS_NODE_DIR, .dir = QFS_DIR_SOURCE,
                    .relpath = strdup(rel), .st = *st, .vf_index = -1, .jail = jail,
                    .model_name = strdup(model), .label = strdup(label)};
    if (!x.relpath || !x.model_name || !x.label) {
        ent_clear(&x);
        return -ENOMEM;
    }
    return ents_add(e, n, cap, x);
}

/* The views of the hub repository at rel (below the tree; "": the tree itself) named
 * repo (models--ORG--NAME), appended to e: ORG--NAME@REV per usable snapshot, and
 * ORG--NAME for the one refs/main names.  Registers its jail and watches.  0 or -ENOMEM. */
static int hub_repo_ents(struct builder *b, const char *rel, const char *repo, struct ent **e,
                         int *n, int *cap)
{
    struct qfs_ns *ns = b->ns;
    const char *model = repo + HUB_PREFIX_LEN;
    char *abs = *rel ? join(ns->tree, rel) : strdup(ns->tree), *srel = NULL, *label = NULL;
    char main_rev[256] = "", why[PATH_MAX + 128];
    int rc = -ENOMEM, rfd = -1, jail = 0, main_state = 0; /* 1 shown, 2 unusable */
    DIR *d = NULL;
    if (!abs)
        goto out;
    if (*rel && (jail = add_jail(b, abs)) < 0)
        goto out;
    if ((rc = add_watch(b, rel, "", 0)) < 0 || (rc = add_watch(b, rel, "refs", 0)) < 0 ||
        (rc = add_watch(b, rel, "snapshots", 0)) < 0 || (rc = add_watch(b, rel, "blobs", 1)) < 0)
        goto out;
    rc = 0;
    rfd = openat(ns->root_fd, *rel ? rel : ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (rfd < 0)
        goto out;
    /* A blob being downloaded: the repository is not complete, whichever snapshot it is
     * for (huggingface_hub links a file into its snapshot only once its blob is whole). */
    int bfd = openat(rfd, "blobs", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (bfd >= 0 && (d = fdopendir(bfd))) {
        struct dirent *de;
        while ((de = readdir(d))) {
            size_t l = strlen(de->d_name);
            if (l > 11 && !strcmp(de->d_name + l - 11, ".incomplete")) {
                snprintf(why, sizeof why, "incomplete download: blobs/%s (no view of the "
                         "repository is shown until it completes)", de->d_name);
                rc = add_skip(b, abs, why);
                goto out;
            }
        }
        closedir(d);
        d = NULL;
    } else if (bfd >= 0) {
        close(bfd);
    }
    int mfd = openat(rfd, "refs/main", O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (mfd >= 0) {
        ssize_t got = read(mfd, main_rev, sizeof main_rev - 1);
        close(mfd);
        main_rev[got > 0 ? got : 0] = '\0';
        for (size_t l = strlen(main_rev); l && strchr(" \t\r\n", main_rev[l - 1]); l--)
            main_rev[l - 1] = '\0';
    }
    int sfd = openat(rfd, "snapshots", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    if (sfd < 0 || !(d = fdopendir(sfd))) {
        if (sfd >= 0)
            close(sfd);
        goto out;
    }
    struct dirent *de;
    while ((de = readdir(d))) {
        struct stat st;
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, "..") ||
            fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            continue;
        const bool is_main = !strcmp(de->d_name, main_rev);
        free(srel);
        srel = NULL;
        char *sabs = NULL;
        if (asprintf(&srel, "%s%ssnapshots/%s", rel, *rel ? "/" : "", de->d_name) < 0 ||
            !(sabs = join(ns->tree, srel))) {
            rc = -ENOMEM;
            goto out;
        }
        if ((rc = add_watch(b, srel, "", 0)) < 0) {
            free(sabs);
            goto out;
        }
        int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        int partial = fd < 0 ? 1 : hub_incomplete(fd, sabs, why, sizeof why);
        if (fd >= 0)
            close(fd);
        rc = partial < 0 ? partial : fd >= 0 && partial ? add_skip(b, sabs, why) : 0;
        free(sabs);
        if (rc < 0)
            goto out;
        if (partial) {
            if (is_main)
                main_state = 2;
            continue;
        }
        free(label);
        label = NULL;
        if (asprintf(&label, "%s@%s", model, de->d_name) < 0) {
            rc = -ENOMEM;
            goto out;
        }
        if ((rc = hub_view(e, n, cap, label, model, label, srel, &st, (uint32_t)jail)) < 0 ||
            (is_main &&
             (rc = hub_view(e, n, cap, model, model, label, srel, &st, (uint32_t)jail)) < 0))
            goto out;
        if (is_main)
            main_state = 1;
    }
    if (main_state == 0) {
        if (main_rev[0])
            snprintf(why, sizeof why, "refs/main names %s, which has no snapshot: %s is not "
                     "shown (its revisions are, as %s@REV)", main_rev, model, model);
        else
            snprintf(why, sizeof why, "no refs/main: %s is not shown (its revisions are, as "
                     "%s@REV)", model, model);
        rc = add_skip(b, abs, why);
    }
out:
    if (rc == 0 && rfd < 0 && abs)
        qfs_warn("%s: cannot list the repository: %s", abs, strerror(errno));
    if (d)
        closedir(d);
    if (rfd >= 0)
        close(rfd);
    free(abs);
    free(srel);
    free(label);
    return rc;
}

/* Among the sorted entries e[0, *n): a hub view whose name a source entry has is not
 * listed (one log line). */
static void drop_shadowed_views(const struct qfs_ns *ns, struct ent *e, int *n)
{
    int k = 0;
    for (int i = 0; i < *n; i++) {
        const struct ent *o = k ? &e[k - 1] : NULL;
        if (o && !strcmp(o->name, e[i].name)) {
            struct ent *view = e[i].model_name ? &e[i] : &e[k - 1];
            qfs_warn("%s/%s: a source entry has this name; the hub view (%s) is not listed",
                     ns->source, e[i].name, view->relpath);
            struct ent keep = e[i].model_name ? e[k - 1] : e[i];
            ent_clear(view);
            e[k - 1] = keep;
            continue;
        }
        e[k++] = e[i];
    }
    *n = k;
}

/* Scan directory node idx and append its children: all of them, or none when they
 * would take the namespace past b->max_nodes (see namespace.h). */
static int scan_dir(struct builder *b, uint32_t idx)
{
    struct qfs_ns *ns = b->ns;
    struct ent *e = NULL;
    int n = 0, cap = 0, rc = 0;
    bool over = false;
    int depth = b->depth[idx];
    char *dir_rel = strdup(ns->nodes[idx].relpath ? ns->nodes[idx].relpath : "");
    if (!dir_rel)
        return -ENOMEM;
    int dfd = openat(ns->root_fd, *dir_rel ? dir_rel : ".",
                     O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    DIR *d = dfd < 0 ? NULL : fdopendir(dfd);
    if (!d) {
        qfs_warn("%s/%s: cannot list: %s", ns->tree, dir_rel, strerror(errno));
        if (dfd >= 0)
            close(dfd);
        ns->nodes[idx].first_child = ns->n_nodes;
        ns->nodes[idx].n_children = 0;
        free(dir_rel);
        return 0;
    }
    const struct qfs_node *self = &ns->nodes[idx];
    const bool quiet = dirset_has(&b->scanned, self->src_dev, self->src_ino);
    if ((rc = dirset_add(&b->scanned, self->src_dev, self->src_ino)) < 0)
        goto out;
    if (idx == 0 && b->root_kind == 3) { /* a repository: its views, not its files */
        const char *base = strrchr(ns->tree, '/');
        if ((rc = hub_repo_ents(b, "", base ? base + 1 : ns->tree, &e, &n, &cap)) < 0)
            goto out;
    }
    struct timespec newest = {0, 0};
    struct dirent *de;
    while (!(idx == 0 && b->root_kind == 3) && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        if (idx == 0 && !strcmp(de->d_name, STATUS_DIR_NAME)) {
            qfs_warn("%s/%s: hidden by the status directory", ns->source, STATUS_DIR_NAME);
            continue;
        }
        if ((uint64_t)ns->n_nodes + (uint64_t)n >= b->max_nodes) {
            over = true; /* stop reading: the directory is not listed */
            break;
        }
        if (idx == 0 && b->root_kind == 0 && hub_is_repo(dfd, de->d_name)) {
            if ((rc = hub_repo_ents(b, de->d_name, de->d_name, &e, &n, &cap)) < 0)
                goto out;
            continue;
        }
        struct ent x;
        rc = classify(b, dfd, dir_rel, de->d_name, depth + 1, b->jail[idx], quiet, &x);
        if (rc < 0)
            goto out;
        if (rc == 0)
            continue;
        if (x.kind == QFS_NODE_FILE &&
            (x.st.st_mtim.tv_sec > newest.tv_sec ||
             (x.st.st_mtim.tv_sec == newest.tv_sec && x.st.st_mtim.tv_nsec > newest.tv_nsec)))
            newest = x.st.st_mtim;
        if ((rc = ents_push(&e, &n, &cap, x)) < 0) {
            ent_clear(&x);
            goto out;
        }
    }
    rc = 0;
    struct qfs_model *m = ns->nodes[idx].model;
    if (m && !over) {
        struct stat vst = ns->nodes[idx].st; /* owner of the model directory */
        vst.st_mtim = newest;
        if ((rc = model_ents(ns, dir_rel, m, &vst, &e, &n, &cap)) < 0)
            goto out;
    }
    if (over || (uint64_t)ns->n_nodes + (uint64_t)n > b->max_nodes) {
        ents_free(e, n);
        e = NULL;
        n = cap = 0;
        if ((rc = over_limit(b, dir_rel)) < 0)
            goto out;
    }
    if (n > 1)
        qsort(e, (size_t)n, sizeof *e, ent_cmp);
    drop_shadowed_views(ns, e, &n);
    if ((rc = filter_dirs(b, idx, dir_rel, e, &n)) < 0)
        goto out;
    if (idx == 0) { /* /.quantfs, whatever the bound */
        struct ent x = {.name = strdup(STATUS_DIR_NAME), .kind = QFS_NODE_DIR,
                        .dir = QFS_DIR_STATUS, .st = ns->nodes[0].st};
        if ((rc = ents_add(&e, &n, &cap, x)) < 0)
            goto out;
    }
    rc = add_children(b, idx, e, n);
out:
    ents_free(e, n);
    closedir(d);
    free(dir_rel);
    return rc;
}

/* List loadable directory node idx: its virtual entries, and the tokenizer and generation
 * files among the source files of its model directory, which was listed before it (so
 * those passed classify's checks there).  0 or negative errno. */
static int scan_vdir(struct builder *b, uint32_t idx)
{
    struct qfs_ns *ns = b->ns;
    const struct qfs_node *dir = &ns->nodes[idx], *md = &ns->nodes[dir->parent];
    const struct qfs_model *m = dir->model;
    const struct qfs_vdir *vd = &m->dirs[dir->vdir];
    struct ent *e = NULL;
    int n = 0, cap = 0, rc = 0;
    for (int i = 0; i < vd->n; i++) {
        const struct qfs_vfile *vf = m->files[vd->file[i]];
        struct ent x = {.name = strdup(vd->entry[i]), .kind = QFS_NODE_VFILE, .st = dir->st,
                        .vf = vf, .vf_index = vd->file[i]};
        x.st.st_size = (off_t)vf->size;
        if ((rc = ents_add(&e, &n, &cap, x)) < 0)
            goto out;
    }
    for (uint32_t i = 0; i < md->n_children; i++) {
        const struct qfs_node *c = &ns->nodes[md->first_child + i];
        if (c->kind != QFS_NODE_FILE || !qfs_format_passthrough(c->name) ||
            ents_have(e, vd->n, c->name))
            continue;
        struct ent x = {.name = strdup(c->name), .kind = QFS_NODE_FILE,
                        .relpath = strdup(c->relpath), .st = c->st, .vf_index = -1};
        x.st.st_dev = c->src_dev; /* the source file's identity, as classify gives it */
        x.st.st_ino = c->src_ino;
        if (!x.relpath) {
            free(x.name);
            rc = -ENOMEM;
            goto out;
        }
        if ((rc = ents_add(&e, &n, &cap, x)) < 0)
            goto out;
    }
    rc = add_children(b, idx, e, n);
out:
    ents_free(e, n);
    return rc;
}

/* /.quantfs (node idx): the reports, in name order (enum qfs_report). */
static int add_status_file(struct builder *b, uint32_t idx)
{
    static const char *const names[QFS_N_REPORTS] = {[QFS_REPORT_METRICS] = "metrics",
                                                     [QFS_REPORT_STATUS] = "status"};
    struct qfs_ns *ns = b->ns;
    int rc = node_reserve(b, QFS_N_REPORTS);
    if (rc < 0)
        return rc;
    ns->nodes[idx].first_child = ns->n_nodes;
    ns->nodes[idx].n_children = 0;
    for (int k = 0; k < QFS_N_REPORTS; k++) {
        uint32_t ci = ns->n_nodes++;
        struct qfs_node *c = &ns->nodes[ci];
        memset(c, 0, sizeof *c);
        c->kind = QFS_NODE_STATUS;
        c->report = (enum qfs_report)k;
        c->parent = idx;
        ns->nodes[idx].n_children++;
        c->name = strdup(names[k]);
        if (!c->name)
            return -ENOMEM;
        set_attr(c, &ns->nodes[0].st, ci + 1);
        b->depth[ci] = (uint8_t)(b->depth[idx] + 1);
        b->jail[ci] = 0;
        ns->report_node[k] = ci;
    }
    ns->status_node = ns->report_node[QFS_REPORT_STATUS];
    return 0;
}

static int assign_inos(struct qfs_ns *ns, const struct qfs_ns *prev);

/* Free what only the build needs. */
static void builder_free(struct builder *b)
{
    free(b->depth);
    free(b->jail);
    free(b->dirs.v);
    free(b->scanned.v);
    for (int i = 0; i < b->n_jails; i++)
        free(b->jails[i]);
    free(b->jails);
    b->depth = NULL;
    b->jail = NULL;
    b->dirs.v = b->scanned.v = NULL;
    b->jails = NULL;
    b->n_jails = 0;
}

static int build_gen(const char *source, const struct qfs_ns_opts *opts,
                     const struct qfs_ns *prev, struct qfs_ns **out)
{
    struct builder b = {.opts = opts, .prev = prev,
                        .max_nodes = opts && opts->max_nodes ? opts->max_nodes
                                                             : QFS_NS_MAX_NODES};
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
    /* A hub snapshot (.../models--ORG--NAME/snapshots/REV): relpaths, and its links, are
     * below its repository. */
    const char *snap_rev = NULL, *repo_name = NULL;
    char *hub_name = NULL, *hub_label = NULL;
    ns->tree = hub_snapshot_tree(ns->source, &snap_rev);
    if (!ns->tree)
        ns->tree = strdup(ns->source);
    else
        repo_name = strrchr(ns->tree, '/') + 1;
    if (!ns->tree || (rc = add_jail(&b, ns->tree)) < 0) {
        rc = -ENOMEM;
        goto fail;
    }
    ns->root_fd = open(ns->tree, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (ns->root_fd < 0) {
        rc = -errno;
        qfs_err("%s: %s", ns->tree, strerror(errno));
        goto fail;
    }
    if ((rc = node_reserve(&b, 1)) < 0)
        goto fail;
    rc = -ENOMEM;
    struct qfs_node *root = &ns->nodes[0];
    memset(root, 0, sizeof *root);
    root->kind = QFS_NODE_DIR;
    root->name = strdup("");
    root->relpath = snap_rev ? join("snapshots", snap_rev) : strdup("");
    if (!root->name || !root->relpath)
        goto fail;
    b.jail[0] = 0;
    set_attr(root, &st, 1);
    root->src_dev = st.st_dev;
    root->src_ino = st.st_ino;
    b.depth[0] = 0;
    ns->n_nodes = 1;
    if ((rc = dirset_add(&b.dirs, st.st_dev, st.st_ino)) < 0)
        goto fail;

    const char *base = strrchr(ns->source, '/');
    base = base && base[1] ? base + 1 : ns->source;
    int dfd = open(ns->source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const char *why = dfd < 0 ? "no config.json" : model_probe(dfd);
    char partial[PATH_MAX + 128];
    int inc = 0;
    if (!why && snap_rev && dfd >= 0)
        inc = hub_incomplete(dfd, ns->source, partial, sizeof partial);
    if (dfd >= 0)
        close(dfd);
    if (inc < 0) {
        rc = inc;
        goto fail;
    }
    if (!snap_rev && hub_is_repo_path(ns->source)) {
        b.root_kind = 3;
    } else if (!why && inc) {
        if ((rc = add_skip(&b, ns->source, partial)) < 0)
            goto fail;
        b.root_kind = 2;
    } else if (!why) {
        int nm = ns->n_models;
        if (snap_rev && (asprintf(&hub_name, "%s", repo_name + HUB_PREFIX_LEN) < 0 ||
                         asprintf(&hub_label, "%s@%s", hub_name, snap_rev) < 0)) {
            free(hub_name);
            rc = -ENOMEM;
            goto fail;
        }
        const struct view v = {.shown = "/", .name = hub_name, .label = hub_label,
                               .imx = snap_rev ? hub_name : base, .jail = ns->tree};
        rc = try_model(&b, 0, ns->source, &v);
        free(hub_name);
        free(hub_label);
        if (rc < 0)
            goto fail;
        b.root_kind = ns->n_models > nm ? 1 : 2;
    }

    /* Breadth first: node i's children are appended when i is reached. */
    for (uint32_t i = 0; i < ns->n_nodes; i++) {
        if (ns->nodes[i].kind != QFS_NODE_DIR)
            continue;
        switch (ns->nodes[i].dir) {
        case QFS_DIR_SOURCE:
            rc = scan_dir(&b, i);
            break;
        case QFS_DIR_STATUS:
            rc = add_status_file(&b, i);
            break;
        case QFS_DIR_VIRT:
            rc = scan_vdir(&b, i);
            break;
        }
        if (rc < 0)
            goto fail;
    }
    builder_free(&b);
    if (b.over_limit > LIMIT_LOGGED)
        qfs_warn("%s: %" PRIu32 " more directories not listed: the mount would hold more "
                 "than %" PRIu32 " entries (-o max_entries)", ns->source,
                 b.over_limit - LIMIT_LOGGED, b.max_nodes);
    if ((rc = assign_inos(ns, prev)) < 0)
        goto fail;
    if (!prev)
        qfs_info("%s: %u entries, %d models, %d directories not served as models", ns->source,
                 ns->n_nodes, ns->n_models, ns->n_skips);
    *out = ns;
    return 0;
fail:
    if (rc == -ENOMEM)
        qfs_err("%s: out of memory while scanning", source);
    builder_free(&b);
    qfs_ns_destroy(ns);
    return rc;
}

int qfs_ns_build(const char *source, const struct qfs_ns_opts *opts, struct qfs_ns **out)
{
    return build_gen(source, opts, NULL, out);
}

int qfs_ns_rebuild(const struct qfs_ns *prev, const struct qfs_ns_opts *opts,
                   struct qfs_ns **out)
{
    return build_gen(prev->source, opts, prev, out);
}

void qfs_ns_destroy(struct qfs_ns *ns)
{
    if (!ns)
        return;
    for (uint32_t i = 0; i < ns->n_nodes; i++) {
        free(ns->nodes[i].name);
        free(ns->nodes[i].relpath);
    }
    free(ns->nodes);
    free(ns->ino_tab);
    for (int i = 0; i < ns->n_models; i++) {
        desc_put(ns->models[i].desc);
        free(ns->models[i].path);
    }
    free(ns->models);
    for (int i = 0; i < ns->n_skips; i++) {
        free(ns->skips[i].path);
        free(ns->skips[i].reason);
    }
    free(ns->skips);
    for (int i = 0; i < ns->n_watch; i++)
        free(ns->watch[i].relpath);
    free(ns->watch);
    if (ns->root_fd >= 0)
        close(ns->root_fd);
    free(ns->source);
    free(ns->tree);
    free(ns);
}

static uint32_t ino_slot(uint64_t ino, uint32_t mask)
{
    return (uint32_t)((ino * 0x9E3779B97F4A7C15ull) >> 32) & mask;
}

const struct qfs_node *qfs_ns_node(const struct qfs_ns *ns, uint64_t ino)
{
    if (ino == 0)
        return NULL;
    if (ino <= ns->n_nodes && ns->nodes[ino - 1].st.st_ino == (ino_t)ino)
        return &ns->nodes[ino - 1]; /* generation 0, and every unchanged prefix */
    if (!ns->ino_tab)
        return NULL;
    for (uint32_t h = ino_slot(ino, ns->ino_mask);; h = (h + 1) & ns->ino_mask) {
        uint32_t v = ns->ino_tab[h];
        if (v == 0)
            return NULL;
        if (ns->nodes[v - 1].st.st_ino == (ino_t)ino)
            return &ns->nodes[v - 1];
    }
}

uint64_t qfs_ns_ino(const struct qfs_ns *ns, const struct qfs_node *n)
{
    (void)ns;
    return (uint64_t)n->st.st_ino;
}

/* ---- generations: inode numbers and differences ---- */

/* Same path (given) and kind: does new node n denote what old node o denoted? */
static int same_identity(const struct qfs_node *o, const struct qfs_node *n)
{
    if (o->kind != n->kind)
        return 0;
    switch (n->kind) {
    case QFS_NODE_DIR:
        return o->dir == n->dir;
    case QFS_NODE_STATUS:
        return o->report == n->report;
    case QFS_NODE_FILE:
        return o->src_dev == n->src_dev && o->src_ino == n->src_ino &&
               o->st.st_size == n->st.st_size &&
               o->st.st_mtim.tv_sec == n->st.st_mtim.tv_sec &&
               o->st.st_mtim.tv_nsec == n->st.st_mtim.tv_nsec && str_eq(o->relpath, n->relpath);
    case QFS_NODE_VFILE:
        return o->vf == n->vf && o->st.st_size == n->st.st_size &&
               o->st.st_mtim.tv_sec == n->st.st_mtim.tv_sec &&
               o->st.st_mtim.tv_nsec == n->st.st_mtim.tv_nsec;
    }
    return 0;
}

/* Child of dir named name in ns, or NULL. */
static const struct qfs_node *child(const struct qfs_ns *ns, const struct qfs_node *dir,
                                    const char *name)
{
    const struct qfs_node *c;
    return qfs_ns_lookup(ns, dir, name, &c) == 0 ? c : NULL;
}

/* Number the nodes (see the comment at the top) and fill the inode table. */
static int assign_inos(struct qfs_ns *ns, const struct qfs_ns *prev)
{
    if (!prev) {
        for (uint32_t i = 0; i < ns->n_nodes; i++)
            ns->nodes[i].st.st_ino = (ino_t)(i + 1);
        ns->next_ino = (uint64_t)ns->n_nodes + 1;
    } else {
        ns->generation = prev->generation + 1;
        ns->next_ino = prev->next_ino;
        /* Breadth first: a node's parent is matched before the node. */
        const struct qfs_node **match = calloc(ns->n_nodes, sizeof *match);
        if (!match)
            return -ENOMEM;
        match[0] = &prev->nodes[0];
        for (uint32_t i = 0; i < ns->n_nodes; i++) {
            struct qfs_node *n = &ns->nodes[i];
            const struct qfs_node *o = match[i];
            if (o && same_identity(o, n))
                n->st.st_ino = o->st.st_ino;
            else
                n->st.st_ino = (ino_t)ns->next_ino++;
            if (n->kind == QFS_NODE_DIR && o && o->kind == QFS_NODE_DIR)
                for (uint32_t k = 0; k < n->n_children; k++)
                    match[n->first_child + k] = child(prev, o, ns->nodes[n->first_child + k].name);
        }
        free(match);
    }
    uint32_t cap = 16;
    while (cap < 2 * (uint64_t)ns->n_nodes)
        cap *= 2;
    ns->ino_tab = calloc(cap, sizeof *ns->ino_tab);
    if (!ns->ino_tab)
        return -ENOMEM;
    ns->ino_mask = cap - 1;
    for (uint32_t i = 0; i < ns->n_nodes; i++) {
        uint32_t h = ino_slot((uint64_t)ns->nodes[i].st.st_ino, ns->ino_mask);
        while (ns->ino_tab[h])
            h = (h + 1) & ns->ino_mask;
        ns->ino_tab[h] = i + 1;
    }
    return 0;
}

static int attr_changed(const struct stat *a, const struct stat *b)
{
    return a->st_size != b->st_size || a->st_nlink != b->st_nlink || a->st_mode != b->st_mode ||
           a->st_uid != b->st_uid || a->st_gid != b->st_gid ||
           a->st_mtim.tv_sec != b->st_mtim.tv_sec || a->st_mtim.tv_nsec != b->st_mtim.tv_nsec;
}

/* Directories o (prev) and n (next) have the same path: merge their sorted children. */
static unsigned diff_dir(const struct qfs_ns *prev, const struct qfs_node *o,
                         const struct qfs_ns *next, const struct qfs_node *n,
                         const struct qfs_ns_diff_cb *cb)
{
    unsigned calls = 0, changed = 0;
    uint64_t dino = (uint64_t)n->st.st_ino;
    uint32_t i = 0, j = 0;
    while (i < o->n_children || j < n->n_children) {
        const struct qfs_node *a = i < o->n_children ? &prev->nodes[o->first_child + i] : NULL;
        const struct qfs_node *b = j < n->n_children ? &next->nodes[n->first_child + j] : NULL;
        int c = !a ? 1 : !b ? -1 : strcmp(a->name, b->name);
        if (c == 0) {
            if (a->st.st_ino != b->st.st_ino) {
                cb->entry(cb->arg, dino, b->name);
                calls++;
                changed = 1;
            } else if (b->kind == QFS_NODE_DIR) {
                calls += diff_dir(prev, a, next, b, cb);
            }
            i++;
            j++;
        } else {
            const struct qfs_node *x = c < 0 ? a : b; /* removed, or added (negative dentry) */
            cb->entry(cb->arg, dino, x->name);
            calls++;
            changed = 1;
            if (c < 0)
                i++;
            else
                j++;
        }
    }
    if (changed || attr_changed(&o->st, &n->st)) {
        cb->dir(cb->arg, dino);
        calls++;
    }
    return calls;
}

unsigned qfs_ns_diff(const struct qfs_ns *prev, const struct qfs_ns *next,
                     const struct qfs_ns_diff_cb *cb)
{
    return diff_dir(prev, &prev->nodes[0], next, &next->nodes[0], cb);
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

/* ---- extended attributes ---- */

static const struct qfs_format *node_format(const struct qfs_node *n)
{
    if (n->kind == QFS_NODE_VFILE)
        return n->vf->fmt;
    if (n->kind == QFS_NODE_DIR && n->dir == QFS_DIR_VIRT)
        return n->model->dirs[n->vdir].fmt;
    return NULL;
}

/* The value of attribute k (0 format, 1 variant, 2 file) of n, malloc'd; NULL: none. */
static char *xattr_value(const struct qfs_node *n, int k)
{
    const struct qfs_format *f = node_format(n);
    char *v = NULL;
    if (!f)
        return NULL;
    if (k == 0)
        return strdup(f->name);
    if (n->kind != QFS_NODE_VFILE || !n->vf->variant)
        return NULL;
    if (k == 1)
        return strdup(n->vf->variant);
    if (asprintf(&v, "%s/%s", n->model->dir, n->vf->name) < 0)
        return NULL;
    return v;
}

static const char *const xattr_names[3] = {"user.quantfs.format", "user.quantfs.variant",
                                           "user.quantfs.file"};

static ssize_t xattr_reply(const char *v, size_t len, char *buf, size_t size)
{
    if (size == 0)
        return (ssize_t)len;
    if (size < len)
        return -ERANGE;
    memcpy(buf, v, len);
    return (ssize_t)len;
}

ssize_t qfs_ns_getxattr(const struct qfs_node *n, const char *name, char *buf, size_t size)
{
    for (int k = 0; k < 3; k++) {
        if (strcmp(name, xattr_names[k]))
            continue;
        char *v = xattr_value(n, k);
        if (!v)
            return -ENODATA;
        ssize_t r = xattr_reply(v, strlen(v), buf, size);
        free(v);
        return r;
    }
    return -ENODATA;
}

ssize_t qfs_ns_listxattr(const struct qfs_node *n, char *buf, size_t size)
{
    char list[128];
    size_t len = 0;
    for (int k = 0; k < 3; k++) {
        char *v = xattr_value(n, k);
        if (!v)
            continue;
        free(v);
        size_t l = strlen(xattr_names[k]) + 1;
        memcpy(list + len, xattr_names[k], l);
        len += l;
    }
    return xattr_reply(list, len, buf, size);
}
