/* A Hugging Face model directory turned into the virtual files quantfs offers: one GGUF
 * file per output type and, unless turned off, <model>.awq.safetensors with the
 * config.json of the loadable <model>.awq/ directory.
 *
 * qfs_model_open reads metadata only (config, safetensors headers, tokenizer); the
 * virtual files' sizes and layouts are complete after it, no tensor data is read. */
#ifndef QFS_MODEL_H
#define QFS_MODEL_H

#include "../gguf/gguf_kv.h"
#include "arch.h"
#include "hf_config.h"
#include "imatrix.h"
#include "safetensors.h"
#include "../vfile.h"

struct qfs_model {
    char *dir;                 /* absolute path of the model directory */
    char *name;                /* basename of dir: prefix of the virtual file names */
    struct qfs_hf_config cfg;
    struct qfs_st_model *st;
    struct qfs_kvs *kv;        /* converter metadata shared by every output type */
    struct qfs_vfile **files;  /* one per offered output: the GGUF types in qfs_gguf_mixes
                                  order, then the AWQ file */
    int n_files;
    int awq_file;              /* index of <model>.awq.safetensors in files, -1: none */
    struct qfs_vfile *awq_config; /* with awq_file: the config.json of <model>.awq/, a
                                     header-only file (no tensors); else NULL */
    struct qfs_src_memo *memos; /* one per st->tensors entry */
    struct qfs_arch_tensors gt; /* the converted tensors (cfg.arch applied), in the
                                   converter's order: what every GGUF file is made of */
    int64_t n_params;          /* elements of all converted tensors (size label) */
    struct qfs_imatrix *imatrix; /* the importance matrix in use, or NULL */
    int awq_group;             /* group size of the AWQ file (32, 64 or 128), 0: not asked
                                  for (-o noawq) */
    _Atomic int stale;         /* set once a source file no longer matches this description
                                  (qfs_model_check_source): never produce from it again */
};

struct qfs_model_opts {
    const char *root;    /* the source tree: model files whose real path leaves it are refused
                          * (NULL: no check) */
    const char *imatrix; /* importance matrix file; NULL: dir/imatrix.gguf or dir/imatrix.dat
                          * when present */
    int awq_group;       /* group size of <model>.awq.safetensors: 0 the default
                          * (QFS_AWQ_DEFAULT_GROUP), 32, 64 or 128 (-o awq_group);
                          * -1: no AWQ file (-o noawq) */
};

/* o may be NULL (no root check, default imatrix lookup, default AWQ group).  A model on
 * which AWQ is not possible (see qfs_awq_build) is served without the AWQ file.
 * 0 or negative errno (the reason was logged, naming the file). */
int qfs_model_open(const char *dir, const struct qfs_model_opts *o, struct qfs_model **out);
void qfs_model_close(struct qfs_model *m);
/* Does every shard of m still have the identity it was described from (fstat of the kept
 * fds: qfs_st_identity_eq)?  0, or -ESTALE (then, and for ever after, m->stale is set: the
 * model must be described again).  Thread-safe. */
int qfs_model_check_sources(struct qfs_model *m);
/* Mark m stale (its mapped bytes can no longer be trusted).  Thread-safe. */
void qfs_model_mark_stale(struct qfs_model *m);
/* Lookup by virtual file name; NULL when absent. */
const struct qfs_vfile *qfs_model_file(const struct qfs_model *m, const char *name);

#endif
