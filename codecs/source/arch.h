/* The architecture table: what llama.cpp's converter does with each Hugging Face model
 * class, as data.  One row per class (architectures[0] of config.json):
 *   - the GGUF architecture name (general.architecture);
 *   - the tensor-name map: tables of rules HF name -> GGUF name, tried in order, each rule
 *     optionally stacking the per-expert tensors of a layer into one 3-D tensor;
 *   - per-tensor transforms: Q/K row permutation (llama), +1 on norms (Gemma), the
 *     embedding cut to the tokenizer's length (Gemma);
 *   - computed tensors (llama3 rope_freqs, longrope factors) made from the config alone;
 *   - the config keys it needs, the tokenizer path, and the metadata steps it writes
 *     (codecs/gguf/gguf_meta.c), in the converter's order;
 *   - llama-quantize's model facts that depend on it (which layer counts make "70B").
 * A new dense architecture is one row (plus, rarely, a rule table or a metadata step).
 *
 * qfs_arch_convert applies a row to a model's safetensors: the converted tensors in the
 * converter's order, each with the sources it is made from (codecs/vfile.h qfs_vsrc), and
 * checks the config against the tensors actually present. */
#ifndef QFS_SOURCE_ARCH_H
#define QFS_SOURCE_ARCH_H

#include <stdbool.h>
#include <stdint.h>

#include "../vfile.h"

struct qfs_model;
struct qfs_kvs;

/* Which of the converter's tokenizer paths a class takes (codecs/source/tokenizer.c). */
enum qfs_vocab_path {
    QFS_VOCAB_LLAMA,     /* LlamaModel: add_prefix_space, SentencePiece, llama-hf BPE, GPT-2 */
    QFS_VOCAB_SPM_GPT2,  /* Qwen2/Qwen3: SentencePiece if tokenizer.model, else GPT-2 BPE */
    QFS_VOCAB_GPT2,      /* TextModel's default (Qwen3-MoE): tokenizer.json only */
    QFS_VOCAB_GEMMA,     /* SentencePiece then add_space_prefix false, else GPT-2 BPE */
    QFS_VOCAB_PHI3,      /* Phi3's own SentencePiece reader (or GPT-2 for GPT2Tokenizer) */
};

/* One naming rule.  hf: a full tensor name (top-level rules) or the part after
 * "model.layers.N." (block rules), where "%x" stands for an expert index; gguf: the GGUF
 * name, "blk.N." prepended for block rules. */
struct qfs_name_rule {
    const char *hf, *gguf;
    unsigned flags;
};
#define QFS_NR_BLOCK 0x1u  /* a block tensor */
#define QFS_NR_Q 0x2u      /* the query projection (permuted with n_head heads) */
#define QFS_NR_K 0x4u      /* the key projection (permuted with n_head_kv heads) */
#define QFS_NR_STACK 0x8u  /* per-expert: stacked in expert order into one tensor, emitted
                              (with the layer's other stacked rules of the same table, in
                              table order) once every expert of the layer has been read */

/* A metadata step: adds keys for m to kv (arch: the GGUF arch name).  0 or negative errno
 * (logged, naming the file and key). */
typedef int (*qfs_meta_fn)(const struct qfs_model *m, struct qfs_kvs *kv, const char *arch);

struct qfs_arch_tensors;
/* Computed tensors: appends them to out (qfs_arch_add_computed).  0 or negative errno. */
typedef int (*qfs_computed_fn)(const struct qfs_model *m, struct qfs_arch_tensors *out);

#define QFS_ARCH_PERMUTE_QK 0x1u   /* LlamaModel.permute on q/k (undo_permute) */
#define QFS_ARCH_NORM_PLUS_ONE 0x2u /* every "*norm.weight" + 1 (Gemma stores offsets) */
#define QFS_ARCH_CUT_EMBD 0x4u     /* token_embd cut to the tokenizer's length (Gemma) */

struct qfs_arch {
    const char *hf;                          /* "LlamaForCausalLM" */
    const char *gguf;                        /* "llama" */
    const struct qfs_name_rule *const *names; /* NULL-terminated list of rule tables */
    unsigned flags;
    enum qfs_vocab_path vocab;
    const char *const *needs;                /* config keys it cannot do without (NULL-end) */
    qfs_meta_fn meta_pre;                    /* keys the converter writes while generating
                                                tensors, before general.type; or NULL */
    const qfs_meta_fn *meta;                 /* <arch>.* steps in order, NULL-terminated */
    qfs_computed_fn computed;                /* or NULL */
    int layers_70b;                          /* llama-quantize's LLM_TYPE_70B: this many
                                                layers (0: never) ... */
    bool need_gqa_70b;                       /* ... and n_head != n_head_kv */
};

/* The row for HF class name, or NULL (an architecture we do not convert). */
const struct qfs_arch *qfs_arch_find(const char *hf);

/* One converted tensor (as the converter's F16 file has it). */
struct qfs_mtensor {
    char *name;           /* GGUF name */
    int n_dims;
    int64_t ne[4];        /* ggml order */
    struct qfs_vsrc src;  /* what it is made of */
    bool f32;             /* always F32 in the converter's files (1-D, *_norm, router) */
    int layer;            /* block index, -1 for the others */
};

/* The converted tensors of a model, in the converter's order: computed ones first, then as
 * read, stacked tensors where their layer's last expert tensor is read. */
struct qfs_arch_tensors {
    struct qfs_mtensor *t;
    int n, cap;
    struct qfs_st_tensor *computed; /* backing "source tensors" of the computed ones */
    float **computed_data;
    struct qfs_src_memo *computed_memo;
    int n_computed;
};

/* Add a computed F32 tensor of n values (copied) named name.  0 or -ENOMEM. */
int qfs_arch_add_computed(struct qfs_arch_tensors *out, const char *name, const float *v,
                          int64_t n);

/* Apply m->cfg.arch to m's safetensors (m->st, m->memos) into *out; check the config
 * against the tensors (dimensions, layer and expert counts, missing experts).  0, -ENOTSUP
 * (a tensor the row cannot name), -EINVAL (the config disagrees with the weights; the key is
 * named), -ENOMEM.  Every error is logged once, naming the file and the problem. */
int qfs_arch_convert(const struct qfs_model *m, struct qfs_arch_tensors *out);
void qfs_arch_tensors_free(struct qfs_arch_tensors *ts);

/* GGUF name of HF tensor name under row a, for tensors that are converted one to one
 * (the importance matrix and AWQ look-ups); NULL when it has none or is stacked. */
char *qfs_arch_gguf_name(const struct qfs_arch *a, const char *hf);

#endif
