/* The output types ("mixes") quantfs offers and llama-quantize's per-tensor type plan
 * for each: which ggml type every tensor of the converter's F16 file becomes. */
#ifndef QFS_GGUF_PLAN_H
#define QFS_GGUF_PLAN_H

#include <stdbool.h>
#include <stdint.h>

#include "../vfile.h"

struct qfs_gguf_mix {
    const char *name;      /* "Q4_K_M": the virtual file is <model>.<name>.gguf */
    uint32_t file_type;    /* general.file_type (llama_ftype) */
    enum qfs_type base;    /* llama_ftype_get_default_type */
    bool converter;        /* written by convert_hf_to_gguf.py (F32/F16/BF16), not llama-quantize */
    bool imatrix_only;     /* offered only when the model has an importance matrix */
};

extern const struct qfs_gguf_mix qfs_gguf_mixes[];
extern const int qfs_gguf_n_mixes;
const struct qfs_gguf_mix *qfs_gguf_mix_find(const char *name);

/* What the plan needs to know about the model (llama_model hparams). */
struct qfs_plan_model {
    int64_t n_layers, n_head, n_head_kv;
    int64_t n_expert;  /* experts per MoE layer; 0 for a dense model */
    bool is_70b;       /* llama with 80 layers and GQA (LLM_TYPE_70B) */
    bool has_imatrix;
};

/* Set ts[i].type for the n tensors, given in llama-quantize's processing order with the
 * type they have in the file llama-quantize reads (which a tensor it does not quantize
 * keeps).
 * 0, or -ENOTSUP when llama-quantize would refuse the model for this mix (a tensor needs an
 * importance matrix that is absent, or a row size has no fallback); *why then says which
 * tensor (static storage, do not free). */
int qfs_gguf_plan(const struct qfs_gguf_mix *mix, const struct qfs_plan_model *pm,
                  struct qfs_vtensor *ts, int n, const char **why);

#endif
