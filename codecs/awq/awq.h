/* AWQ virtual files: <model>.awq.safetensors in AutoAWQ's "GEMM" layout (what vLLM and
 * transformers load as quant_method "awq", version "gemm").
 *
 * Layout (a plain safetensors file, see safetensors.h):
 *   1. u64 little-endian N, then N bytes of JSON: keys sorted by name ("__metadata__":
 *      {"format":"pt"} first), padded with spaces so that 8 + N is a multiple of 8;
 *   2. the data area, tensors back to back (no gaps, as HF's loader requires), those whose
 *      size is a multiple of 8 first, each group by name: every offset is 8-byte aligned
 *      whenever every tensor size is a multiple of 8 (true for any model whose dimensions
 *      are multiples of 4).
 *   Per quantized linear "P.weight" [out, in] of a decoder block (q/k/v/o, gate/up/down)
 *   with group size g (in % g == 0, out % 8 == 0):
 *     P.qweight I32 [in, out/8]: word c of input row j holds, in nibble i (bits 4i..4i+3),
 *               the 4-bit value of output column 8c + {0,2,4,6,1,3,5,7}[i];
 *     P.qzeros  I32 [in/g, out/8]: the zero points, packed the same way;
 *     P.scales  F16 [in/g, out].
 *     w[o][j] ~= (q[j][o] - zero[j/g][o]) * scale[j/g][o].
 *   Every other tensor (embeddings, norms, lm_head, biases, linears that cannot be
 *   grouped) is F16 under its own name; those linears are modules_to_not_convert.
 * Tensors are produced lazily: a chunk of qweight is a range of whole groups of input
 * rows (a strided read of the [out, in] source), the matching chunks of qzeros/scales are
 * the same groups.  The quantization itself is described in awq.c. */
#ifndef QFS_AWQ_H
#define QFS_AWQ_H

#include <stddef.h>

#include "../source/model.h"

/* Bumped whenever any output byte of the AWQ codec could change: it enters every key. */
#define QFS_AWQ_CODEC_VERSION 2
#define QFS_AWQ_DEFAULT_GROUP 128

/* Is g a group size the AWQ file can be offered with (32, 64, 128)? */
int qfs_awq_group_ok(int g);

/* Build <model>.awq.safetensors for m with group size g.  Activation-aware
 * when m->imatrix is set, round-to-nearest otherwise.  0, -ENOTSUP when the model has no
 * linear layer AWQ can quantize (logged), -EINVAL for a bad group size, -ENOMEM. */
int qfs_awq_build(const struct qfs_model *m, int g, struct qfs_vfile **out);

/* The config.json of the loadable <model>.awq/ directory: the source config.json with
 * torch_dtype "float16" and quantization_config {quant_method "awq", bits 4, group_size,
 * zero_point true, version "gemm", modules_to_not_convert [...]}, for group size
 * g.  *buf is malloc'd (NUL-terminated, *len excludes the NUL).
 * 0, -ENOENT/-EINVAL (config unreadable; logged), -ENOMEM. */
int qfs_awq_config_json(const struct qfs_model *m, int g, char **buf, size_t *len);

#endif
