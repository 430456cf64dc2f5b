/* A Hugging Face model directory turned into the virtual files quantfs offers: what
 * every enabled output format (codecs/format.h) adds, files in the model directory and
 * loadable directories beside them.
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
#include "../format.h"
#include "../vfile.h"

/* A loadable directory a format offers (<model>.awq/): named entries bound to virtual
 * files of the model, plus the model directory's passthrough files
 * (qfs_format_passthrough). */
struct qfs_vdir {
    char *name;                   /* "tinyllama-256.awq" */
    const struct qfs_format *fmt;
    int n;
    char **entry;                 /* entry names */
    int *file;                    /* their files: indices into qfs_model.files */
};

struct qfs_model {
    char *dir;                 /* absolute path of the model directory */
    char *name;                /* basename of dir: prefix of the virtual file names */
    struct qfs_hf_config cfg;
    struct qfs_st_model *st;
    struct qfs_kvs *kv;        /* converter metadata shared by every output type: general.*
                                  and <arch>.*, up to general.quantization_version */
    uint8_t *tok_kv;           /* the tokenizer.* keys that follow them, serialized once (the
                                  bulk of a GGUF header: tokens, merges) and shared by every
                                  GGUF file (qfs_vfile.head_shared) */
    size_t tok_kv_len, tok_kv_count; /* its bytes and keys */
    struct qfs_vfile **files;  /* every virtual file, in the formats' order: those listed in
                                  the model directory and those of its loadable directories */
    int n_files, cap_files;
    struct qfs_vdir *dirs;     /* the loadable directories */
    int n_dirs;
    struct qfs_format_set formats; /* what it was opened with */
    struct qfs_src_memo *memos; /* one per st->tensors entry */
    struct qfs_arch_tensors gt; /* the converted tensors (cfg.arch applied), in the
                                   converter's order: what every GGUF file is made of */
    int64_t n_params;          /* elements of all converted tensors (size label) */
    struct qfs_imatrix *imatrix; /* the importance matrix in use, or NULL */
    _Atomic int stale;         /* set once a source file no longer matches this description
                                  (qfs_model_check_source): never produce from it again */
};

struct qfs_model_opts {
    const char *root;    /* the source tree: model files whose real path leaves it are refused
                          * (NULL: no check): a model whose directory holds, as a symlink
                          * leaving root, a file the reader may use (reads_file) is not
                          * opened (-EACCES, one log line) */
    const char *name;    /* the model's name: prefix of its virtual files' names and the
                          * GGUF general.name; NULL: the directory's name */
    const char *imatrix; /* importance matrix file; NULL: dir/imatrix.gguf or dir/imatrix.dat
                          * when present */
    const struct qfs_format_set *formats; /* NULL: every format at its default */
};

/* Might qfs_model_open read the model directory's entry `name` (config.json, the tokenizer
 * files, the chat template, generation_config.json, imatrix.gguf/.dat, *.safetensors and
 * their index; and every file of additional_chat_templates/)?  Keep in step with the
 * readers in codecs/source. */
bool qfs_model_reads_file(const char *name);

/* o may be NULL (no root check, default imatrix lookup, default formats).  A format that
 * cannot serve the model adds nothing (logged).  0 or negative errno (the reason was
 * logged, naming the file). */
int qfs_model_open(const char *dir, const struct qfs_model_opts *o, struct qfs_model **out);
void qfs_model_close(struct qfs_model *m);
/* Does every shard of m still have the identity it was described from (fstat of the kept
 * fds: qfs_st_identity_eq)?  0, or -ESTALE (then, and for ever after, m->stale is set: the
 * model must be described again).  Thread-safe. */
int qfs_model_check_sources(struct qfs_model *m);
/* Mark m stale (its mapped bytes can no longer be trusted).  Thread-safe. */
void qfs_model_mark_stale(struct qfs_model *m);
/* Lookup of a file listed in the model directory by name; NULL when absent. */
const struct qfs_vfile *qfs_model_file(const struct qfs_model *m, const char *name);

/* For formats' offer(): add vf (taken over, also on failure) as file of m, listed in the
 * model directory or not.  Its index, or -ENOMEM. */
int qfs_model_add_file(struct qfs_model *m, struct qfs_vfile *vf, bool listed);
/* Add the loadable directory name with entries names[i] -> files[i] (indices returned by
 * qfs_model_add_file).  0 or -ENOMEM. */
int qfs_model_add_dir(struct qfs_model *m, const char *name, const struct qfs_format *fmt,
                      int n, const char *const *names, const int *files);

#endif
