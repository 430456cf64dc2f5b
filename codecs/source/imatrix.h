/* llama.cpp importance-matrix files (llama-imatrix output), read as llama-quantize reads them.
 *
 * GGUF format (recognised by its "GGUF" magic; parsed by gguf_read.h):
 *   1. per weight W, tensors "W.in_sum2" (F32, ne0 * n_expert sums of squared activations)
 *      and "W.counts" (F32, n_expert token counts); other tensors are ignored;
 *   2. metadata "imatrix.datasets" (array of strings), "imatrix.chunk_count" (u32) and
 *      "imatrix.chunk_size" (u32): all three must be present, as llama-quantize requires.
 *   Normalised value = sum / (float)lround(count) of its expert; 1.0 where that count <= 0.
 * Legacy format (anything else), little-endian:
 *   1. i32 n_entries (>= 1)
 *   2. per entry: i32 name length, name bytes, i32 ncall, i32 nval (>= 1), nval f32 sums
 *   3. optional: i32 chunk count, then optional i32 dataset length and its bytes.
 *   Normalised value = sum / (float)ncall; the sum itself when ncall <= 0.  A repeated
 *   name replaces the earlier entry (as llama.cpp's map does); bytes after the dataset
 *   are ignored.
 * Every length and count is bounded by the file size; any violation, and any non-finite
 * normalised value (llama-quantize refuses those too), is -EINVAL with one log line. */
#ifndef QFS_IMATRIX_H
#define QFS_IMATRIX_H

#include <stdbool.h>
#include <stdint.h>

#include "../../cache/cache.h" /* struct qfs_cache_key */

struct qfs_imatrix_entry {
    char *name;    /* GGUF tensor name, "blk.0.attn_q.weight" */
    float *values; /* n normalised values, as llama-quantize passes them to the quantizer */
    int64_t n;     /* ne0 (times the expert count for 3-D expert tensors) */
};

struct qfs_imatrix {
    char *path;      /* as given to qfs_imatrix_load */
    char *file_name; /* basename of path: what the metadata records */
    struct qfs_imatrix_entry *entries; /* sorted by name (strcmp), names unique */
    int n_entries;   /* may be 0 for a GGUF file with no .in_sum2/.counts pairs */
    char *dataset;   /* first dataset (up to an embedded NUL) or NULL */
    /* Chunk count as llama-quantize reads it (an i32): it records
     * quantize.imatrix.chunks_count only when this is > 0.  0 when absent. */
    int64_t chunk_count;
    bool legacy;     /* the file was in the legacy format */
    struct qfs_cache_key hash; /* XXH3-128 of the whole file */
};

/* Read and normalise the imatrix file at path.  0, or a negative errno with one log line
 * naming the file (-ENOENT/-EACCES/... from open, -EINVAL malformed, -ENOMEM);
 * *out is untouched on error.  Free with qfs_imatrix_free. */
int qfs_imatrix_load(const char *path, struct qfs_imatrix **out);
/* NULL is a no-op. */
void qfs_imatrix_free(struct qfs_imatrix *im);
/* The entry for a GGUF tensor name, or NULL.  O(log n). */
const struct qfs_imatrix_entry *qfs_imatrix_find(const struct qfs_imatrix *im, const char *name);

/* Check the imatrix against a model of n tensors: every entry must name one of names[]
 * (GGUF names) and hold exactly ne0[i] values, where ne0[i] is the tensor's row length
 * times its expert count (ne[0] * ne[2], as llama-quantize compares).  0, or -EINVAL with
 * one log line naming the file and the first offending entry.
 * Stricter than llama-quantize, which ignores entries for absent tensors and only warns
 * about a size mismatch on token_embd. */
int qfs_imatrix_check(const struct qfs_imatrix *im, const char *const *names, const int64_t *ne0,
                      int n);

#endif
