/* A model directory: config, safetensors headers, converter metadata, and the virtual
 * files and directories of every enabled output format.  Reads metadata only. */
#include "model.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "../../util/log.h"
#include "../gguf/gguf_file.h"

void qfs_model_close(struct qfs_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_files; i++)
        qfs_vfile_free(m->files[i]);
    free(m->files);
    for (int i = 0; i < m->n_dirs; i++) {
        for (int k = 0; k < m->dirs[i].n; k++)
            free(m->dirs[i].entry[k]);
        free(m->dirs[i].entry);
        free(m->dirs[i].file);
        free(m->dirs[i].name);
    }
    free(m->dirs);
    if (m->memos && m->st)
        for (int i = 0; i < m->st->n_tensors; i++)
            pthread_mutex_destroy(&m->memos[i].lock);
    free(m->memos);
    qfs_arch_tensors_free(&m->gt);
    qfs_kvs_free(m->kv);
    free(m->tok_kv); /* after the files, which point into it */
    qfs_st_close(m->st);
    qfs_hf_config_free(&m->cfg);
    qfs_imatrix_free(m->imatrix);
    free(m->dir);
    free(m->name);
    free(m);
}

/* The model's importance matrix: o->imatrix, else imatrix.gguf or imatrix.dat in the model
 * directory.  A file that cannot be used is logged and ignored (the model is then served
 * without one, and the imatrix-only types are not offered); only ENOMEM is an error. */
static int load_imatrix(struct qfs_model *m, const struct qfs_model_opts *o)
{
    char *path = NULL;
    if (o && o->imatrix) {
        path = strdup(o->imatrix);
    } else {
        static const char *names[] = {"imatrix.gguf", "imatrix.dat"};
        for (size_t i = 0; i < 2 && !path; i++) {
            char *p;
            if (asprintf(&p, "%s/%s", m->dir, names[i]) < 0)
                return -ENOMEM;
            if (access(p, F_OK) == 0)
                path = p;
            else
                free(p);
        }
        if (!path)
            return 0;
        /* found in the model directory: like every model file, it must not lead out of
         * the source tree */
        char *real = realpath(path, NULL);
        size_t rl = o && o->root ? strlen(o->root) : 0;
        if (o && o->root && (!real || strncmp(real, o->root, rl) != 0 || (real[rl] && real[rl] != '/'))) {
            qfs_err("%s: symlink points outside the source tree: not used", path);
            free(real);
            free(path);
            return 0;
        }
        free(real);
    }
    if (!path)
        return -ENOMEM;
    struct qfs_imatrix *im = NULL;
    int rc = qfs_imatrix_load(path, &im);
    if (rc == -ENOMEM) {
        free(path);
        return rc;
    }
    if (rc == 0) {
        /* every converted tensor is a possible entry; its row length (times the experts
         * of a stacked tensor) must match */
        const int nt = m->gt.n;
        int n = 0;
        const char **names = calloc((size_t)nt + 1, sizeof *names);
        int64_t *ne0 = calloc((size_t)nt + 1, sizeof *ne0);
        rc = names && ne0 ? 0 : -ENOMEM;
        for (int i = 0; i < nt && rc == 0; i++) {
            const struct qfs_mtensor *t = &m->gt.t[i];
            names[n] = t->name;
            ne0[n++] = t->ne[0] * (t->n_dims > 2 ? t->ne[2] : 1);
        }
        if (rc == 0)
            rc = qfs_imatrix_check(im, names, ne0, n);
        free(names);
        free(ne0);
        if (rc == -ENOMEM) {
            qfs_imatrix_free(im);
            free(path);
            return rc;
        }
    }
    if (rc < 0) {
        qfs_warn("%s: importance matrix %s not used (see above): the imatrix-only types are "
                 "not offered", m->dir, path);
        qfs_imatrix_free(im);
        im = NULL;
    } else {
        qfs_info("%s: using importance matrix %s (%d entries)", m->dir, path, im->n_entries);
    }
    free(path);
    m->imatrix = im;
    return 0;
}

bool qfs_model_reads_file(const char *name)
{
    /* every name codecs/source opens in a model directory (the importance matrix's too) */
    static const char *const names[] = {
        "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
        "tokenizer.model", "special_tokens_map.json", "added_tokens.json", "merges.txt",
        "chat_template.jinja", "chat_template.json", "model.safetensors.index.json",
        "imatrix.gguf", "imatrix.dat"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i]))
            return true;
    size_t n = strlen(name);
    return n > 12 && strcmp(name + n - 12, ".safetensors") == 0;
}

/* Is the real path of dir/name (a symlink) outside root?  A link that does not resolve
 * is not (the reader finds no file there). */
static bool link_leaves(const char *dir, const char *name, const char *root, char **real)
{
    char *p = NULL;
    *real = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0)
        return false;
    char *r = realpath(p, NULL);
    free(p);
    if (!r)
        return false;
    size_t rl = strlen(root);
    bool inside = strncmp(r, root, rl) == 0 && (r[rl] == '/' || r[rl] == '\0' ||
                                                 (rl == 1 && root[0] == '/'));
    if (inside) {
        free(r);
        return false;
    }
    *real = r;
    return true;
}

/* The files the reader may use in dir (its entries qfs_model_reads_file names, and
 * additional_chat_templates/): none may be a symlink leaving root.  0, or -EACCES (one
 * log line). */
static int check_links(const char *dir, const char *root)
{
    static const char *const subdirs[] = {"", "additional_chat_templates"};
    int rc = 0;
    for (size_t k = 0; k < 2 && rc == 0; k++) {
        char *d = NULL;
        if (asprintf(&d, "%s%s%s", dir, *subdirs[k] ? "/" : "", subdirs[k]) < 0)
            return -ENOMEM;
        DIR *dd = opendir(d);
        struct dirent *de;
        while (dd && rc == 0 && (de = readdir(dd))) {
            struct stat st;
            if (fstatat(dirfd(dd), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
                !S_ISLNK(st.st_mode) || (k == 0 && !qfs_model_reads_file(de->d_name)))
                continue;
            char *real;
            if (link_leaves(d, de->d_name, root, &real)) {
                qfs_err("%s/%s: symlink points outside the source tree (%s is not under %s): "
                        "the model is not served", d, de->d_name, real, root);
                free(real);
                rc = -EACCES;
            }
        }
        if (dd)
            closedir(dd);
        free(d);
    }
    return rc;
}

int qfs_model_add_file(struct qfs_model *m, struct qfs_vfile *vf, bool listed)
{
    if (m->n_files == m->cap_files) {
        int cap = m->cap_files ? 2 * m->cap_files : 48;
        void *p = realloc(m->files, (size_t)cap * sizeof *m->files);
        if (!p) {
            qfs_vfile_free(vf);
            return -ENOMEM;
        }
        m->files = p;
        m->cap_files = cap;
    }
    vf->listed = listed;
    m->files[m->n_files] = vf;
    return m->n_files++;
}

int qfs_model_add_dir(struct qfs_model *m, const char *name, const struct qfs_format *fmt,
                      int n, const char *const *names, const int *files)
{
    void *p = realloc(m->dirs, (size_t)(m->n_dirs + 1) * sizeof *m->dirs);
    if (!p)
        return -ENOMEM;
    m->dirs = p;
    struct qfs_vdir *d = &m->dirs[m->n_dirs];
    memset(d, 0, sizeof *d);
    d->fmt = fmt;
    d->name = strdup(name);
    d->entry = calloc((size_t)n + 1, sizeof *d->entry);
    d->file = calloc((size_t)n + 1, sizeof *d->file);
    int rc = d->name && d->entry && d->file ? 0 : -ENOMEM;
    for (int i = 0; i < n && rc == 0; i++) {
        d->file[i] = files[i];
        if (!(d->entry[i] = strdup(names[i])))
            rc = -ENOMEM;
    }
    d->n = n;
    m->n_dirs++; /* freed by qfs_model_close whatever happened */
    return rc;
}

int qfs_model_open(const char *dir, const struct qfs_model_opts *o, struct qfs_model **out)
{
    const char *root = o ? o->root : NULL;
    int rc = -ENOMEM;
    struct qfs_model *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->dir = realpath(dir, NULL);
    if (!m->dir) {
        rc = -errno;
        qfs_err("%s: %s", dir, strerror(errno));
        free(m);
        return rc;
    }
    const char *slash = strrchr(m->dir, '/');
    m->name = strdup(o && o->name ? o->name : slash && slash[1] ? slash + 1 : m->dir);
    if (!m->name)
        goto fail;
    if (root && (rc = check_links(m->dir, root)) < 0)
        goto fail;
    if ((rc = qfs_hf_config_load(m->dir, &m->cfg)) < 0) {
        memset(&m->cfg, 0, sizeof m->cfg);
        goto fail;
    }
    if ((rc = qfs_st_open(m->dir, root, &m->st)) < 0) {
        m->st = NULL;
        goto fail;
    }
    rc = -ENOMEM;
    m->memos = calloc((size_t)m->st->n_tensors + 1, sizeof *m->memos);
    if (!m->memos)
        goto fail;
    for (int i = 0; i < m->st->n_tensors; i++) {
        pthread_mutex_init(&m->memos[i].lock, NULL);
        m->memos[i].shard = &m->st->shards[m->st->tensors[i].shard];
    }
    if ((rc = qfs_arch_convert(m, &m->gt)) < 0)
        goto fail;
    if ((rc = qfs_gguf_base_metadata(m)) < 0)
        goto fail;
    if ((rc = load_imatrix(m, o)) < 0)
        goto fail;
    if (o && o->formats)
        m->formats = *o->formats;
    else
        qfs_format_set_init(&m->formats);
    for (int i = 0; qfs_formats[i]; i++) {
        if (!m->formats.on[i])
            continue;
        if ((rc = qfs_formats[i]->offer(m, m->formats.group[i])) < 0)
            goto fail;
    }
    if (m->n_files == 0) {
        rc = -ENOTSUP;
        goto fail;
    }
    *out = m;
    return 0;
fail:
    qfs_model_close(m);
    return rc;
}

const struct qfs_vfile *qfs_model_file(const struct qfs_model *m, const char *name)
{
    for (int i = 0; i < m->n_files; i++)
        if (m->files[i]->listed && strcmp(m->files[i]->name, name) == 0)
            return m->files[i];
    return NULL;
}

void qfs_model_mark_stale(struct qfs_model *m)
{
    if (!atomic_exchange(&m->stale, 1))
        qfs_warn("%s: a source file changed since the model was described; its virtual "
                 "files answer EIO until the next rescan", m->dir);
}

int qfs_model_check_sources(struct qfs_model *m)
{
    if (atomic_load_explicit(&m->stale, memory_order_relaxed))
        return -ESTALE;
    for (int i = 0; i < m->st->n_shards; i++) {
        const struct qfs_st_shard *sh = &m->st->shards[i];
        struct stat st;
        if (fstat(sh->fd, &st) < 0 || !qfs_st_identity_eq(sh, &st)) {
            qfs_model_mark_stale(m);
            return -ESTALE;
        }
    }
    return 0;
}
