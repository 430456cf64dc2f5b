/* A model directory: config, safetensors headers, converter metadata, one virtual GGUF
 * file per output type, and the AWQ file with its directory's config.json.  Reads
 * metadata only. */
#include "model.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/stat.h>

#include "../../util/log.h"
#include "../awq/awq.h"
#include "../gguf/gguf_file.h"
#include "../gguf/gguf_plan.h"

void qfs_model_close(struct qfs_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_files; i++)
        qfs_vfile_free(m->files[i]);
    free(m->files);
    qfs_vfile_free(m->awq_config);
    if (m->memos && m->st)
        for (int i = 0; i < m->st->n_tensors; i++)
            pthread_mutex_destroy(&m->memos[i].lock);
    free(m->memos);
    qfs_arch_tensors_free(&m->gt);
    qfs_kvs_free(m->kv);
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

/* A header-only virtual file (no tensors) of the bytes buf[0, len), which it takes. */
static struct qfs_vfile *head_only_file(const char *name, char *buf, size_t len)
{
    struct qfs_vfile *vf = calloc(1, sizeof *vf);
    if (!vf || !(vf->name = strdup(name))) {
        free(vf);
        free(buf);
        return NULL;
    }
    vf->head = (uint8_t *)buf;
    vf->head_len = len;
    vf->size = len;
    return vf;
}

/* <model>.awq.safetensors (appended to m->files) and the config.json of <model>.awq/,
 * both or neither: the directory is only loadable with its config.  A model AWQ cannot
 * quantize, or whose config.json cannot be rewritten, is served without them (logged).
 * 0 or -ENOMEM. */
static int add_awq(struct qfs_model *m)
{
    struct qfs_vfile *vf = NULL;
    char *cfg = NULL;
    size_t len = 0;
    int rc = qfs_awq_build(m, &vf);
    if (rc == -ENOMEM)
        return rc;
    if (rc < 0) {
        if (rc != -ENOTSUP) /* -ENOTSUP: nothing to quantize, logged */
            qfs_warn("%s: not offering AWQ: %s", m->dir, strerror(-rc));
        return 0;
    }
    rc = qfs_awq_config_json(m, &cfg, &len);
    if (rc < 0) {
        qfs_vfile_free(vf);
        if (rc == -ENOMEM)
            return rc;
        qfs_warn("%s: not offering AWQ: its config.json cannot be rewritten", m->dir);
        return 0;
    }
    m->awq_config = head_only_file("config.json", cfg, len);
    if (!m->awq_config) {
        qfs_vfile_free(vf);
        return -ENOMEM;
    }
    m->awq_file = m->n_files;
    m->files[m->n_files++] = vf;
    return 0;
}

int qfs_model_open(const char *dir, const struct qfs_model_opts *o, struct qfs_model **out)
{
    const char *root = o ? o->root : NULL;
    int rc = -ENOMEM;
    struct qfs_model *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->awq_file = -1;
    m->dir = realpath(dir, NULL);
    if (!m->dir) {
        rc = -errno;
        qfs_err("%s: %s", dir, strerror(errno));
        free(m);
        return rc;
    }
    const char *slash = strrchr(m->dir, '/');
    m->name = strdup(slash && slash[1] ? slash + 1 : m->dir);
    if (!m->name)
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
    /* AWQ is offered unless turned off (-o noawq, awq_group -1). */
    m->awq_group = !o || o->awq_group == 0 ? QFS_AWQ_DEFAULT_GROUP
                   : o->awq_group < 0      ? 0
                                           : o->awq_group;
    if (m->awq_group && !qfs_awq_group_ok(m->awq_group)) {
        qfs_err("%s: AWQ group size %d: expected 32, 64 or 128", m->dir, m->awq_group);
        rc = -EINVAL;
        goto fail;
    }
    rc = -ENOMEM;
    m->files = calloc((size_t)qfs_gguf_n_mixes + 1, sizeof *m->files); /* + the AWQ file */
    if (!m->files)
        goto fail;
    for (int i = 0; i < qfs_gguf_n_mixes; i++) {
        struct qfs_vfile *vf;
        if (qfs_gguf_mixes[i].imatrix_only && !m->imatrix)
            continue; /* offered with an importance matrix only */
        rc = qfs_gguf_build(m, qfs_gguf_mixes[i].name, &vf);
        if (rc == -ENOTSUP)
            continue; /* this type only; logged */
        if (rc < 0)
            goto fail;
        m->files[m->n_files++] = vf;
    }
    if (m->awq_group && (rc = add_awq(m)) < 0)
        goto fail;
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
        if (strcmp(m->files[i]->name, name) == 0)
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
