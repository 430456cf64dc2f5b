/* A model directory: config, safetensors headers, converter metadata, and one virtual
 * GGUF file per output type.  Reads metadata only. */
#include "model.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../util/log.h"
#include "gguf_file.h"
#include "gguf_plan.h"

void qfs_model_close(struct qfs_model *m)
{
    if (!m)
        return;
    for (int i = 0; i < m->n_files; i++)
        qfs_vfile_free(m->files[i]);
    free(m->files);
    if (m->memos && m->st)
        for (int i = 0; i < m->st->n_tensors; i++)
            pthread_mutex_destroy(&m->memos[i].lock);
    free(m->memos);
    qfs_kvs_free(m->kv);
    qfs_st_close(m->st);
    qfs_hf_config_free(&m->cfg);
    free(m->imatrix_path);
    free(m->dir);
    free(m->name);
    free(m);
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
        int skip;
        char *name = qfs_gguf_tensor_name(m->st->tensors[i].name, &skip);
        if (name) {
            int64_t n = 1;
            for (int d = 0; d < m->st->tensors[i].n_dims; d++)
                n *= m->st->tensors[i].shape[d];
            m->n_params += n;
        }
        free(name);
    }
    if ((rc = qfs_gguf_base_metadata(m)) < 0)
        goto fail;
    rc = -ENOMEM;
    m->files = calloc((size_t)qfs_gguf_n_mixes, sizeof *m->files);
    if (!m->files)
        goto fail;
    for (int i = 0; i < qfs_gguf_n_mixes; i++) {
        struct qfs_vfile *vf;
        if (qfs_gguf_mixes[i].imatrix_only)
            continue; /* offered with an importance matrix only */
        rc = qfs_gguf_build(m, qfs_gguf_mixes[i].name, &vf);
        if (rc == -ENOTSUP)
            continue; /* this type only; logged */
        if (rc < 0)
            goto fail;
        m->files[m->n_files++] = vf;
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
        if (strcmp(m->files[i]->name, name) == 0)
            return m->files[i];
    return NULL;
}
