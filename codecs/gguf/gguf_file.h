/* GGUF virtual files: naming (HF -> GGUF tensor names), the type plan of each output
 * type, and the file layout.
 *
 * GGUF v3 layout, as written here:
 *   1. "GGUF", u32 version 3, u64 tensor count, u64 metadata count
 *   2. metadata: (u64 len, key bytes, u32 value type, value) ...
 *   3. tensor infos: (u64 len, name, u32 n_dims, u64 ne[n_dims], u32 ggml type, u64 offset)
 *   4. zero padding to general.alignment (32)
 *   5. tensor data, each tensor padded with zeros to 32 bytes; offsets relative to 5. */
#ifndef QFS_GGUF_FILE_H
#define QFS_GGUF_FILE_H

#include "../source/model.h"

#define QFS_GGUF_ALIGN 32
/* Bumped whenever any output byte of the GGUF codec could change: it enters every key. */
#define QFS_GGUF_CODEC_VERSION 1

/* Build the virtual file for output type `type` ("Q8_0", ...) of model m.
 * 0, -ENOTSUP when the model cannot be written in that type (reason logged),
 * or another negative errno. */
int qfs_gguf_build(const struct qfs_model *m, const char *type, struct qfs_vfile **out);

/* The converter metadata (general.*, <arch>.*, tokenizer.*) for m, as
 * convert_hf_to_gguf.py writes it for an F16 output. 0 or negative errno. */
int qfs_gguf_base_metadata(struct qfs_model *m);

#endif
