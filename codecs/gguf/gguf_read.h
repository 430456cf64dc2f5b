/* Strict GGUF reader over a read-only mapping (or any caller buffer).
 *
 * On-disk layout (v2 and v3 are read; both are little-endian with u64 lengths):
 *   1. "GGUF", u32 version, u64 tensor count, u64 metadata count
 *   2. metadata, each: string key, u32 value type, value
 *      - string: u64 length, bytes (no terminator)
 *      - array:  u32 element type, u64 count, elements (arrays may nest)
 *      - others: fixed-size little-endian scalars; bool is one byte
 *   3. tensor infos, each: string name, u32 n_dims (<= 4), i64 ne[n_dims], u32 ggml type,
 *      u64 offset relative to the data section
 *   4. padding to general.alignment (u32 power of two, default 32), measured from the file start
 *   5. the data section: tensors back to back, each padded to the alignment.
 * Validation is ggml's (gguf.cpp) made strict: unique non-empty keys, unique tensor names
 * shorter than 64 bytes, no NUL inside keys or names, known ggml types, rows a whole number
 * of blocks, each offset exactly where the previous padded tensor ends, and every length,
 * count and offset bounds- and overflow-checked against the buffer.  Any violation is
 * -EINVAL with one log line naming the file and the problem. */
#ifndef QFS_GGUF_READ_H
#define QFS_GGUF_READ_H

#include <stdbool.h>
#include <stdint.h>

#include "gguf_kv.h" /* enum qfs_gguf_vtype */

#define QFS_GGUFR_MAX_DIMS 4
#define QFS_GGUFR_MAX_NAME 64 /* ggml's GGML_MAX_NAME: names are shorter */

/* A string inside the buffer: not NUL-terminated. */
struct qfs_ggufr_str {
    const char *p;
    uint64_t len;
};

/* One decoded value.  Integers widen to u (unsigned types) or i (signed), F32/F64 to f
 * (exactly).  Arrays keep their raw elements in the buffer: see qfs_ggufr_arr_get. */
struct qfs_ggufr_val {
    enum qfs_gguf_vtype type;
    union {
        uint64_t u;
        int64_t i;
        double f;
        bool b;
        struct qfs_ggufr_str s;
        struct {
            enum qfs_gguf_vtype type; /* element type */
            uint64_t n;
            const uint8_t *data; /* first element */
            uint64_t nbytes;     /* all elements */
        } arr;
    };
};

struct qfs_ggufr_kv {
    char *key; /* NUL-terminated copy */
    struct qfs_ggufr_val val;
};

struct qfs_ggufr_tensor {
    char *name; /* NUL-terminated copy */
    int n_dims;
    int64_t ne[QFS_GGUFR_MAX_DIMS]; /* ggml order: ne[0] is the row; 1 beyond n_dims */
    uint32_t type;                  /* ggml type id */
    uint64_t offset;                /* relative to the data section */
    uint64_t nbytes;                /* unpadded */
    const uint8_t *data;            /* into the buffer */
};

struct qfs_ggufr {
    char *label;         /* the path, for log lines */
    const uint8_t *buf;  /* the whole file */
    uint64_t size;
    uint32_t version;
    struct qfs_ggufr_kv *kv; /* file order */
    uint64_t n_kv;
    struct qfs_ggufr_tensor *tensors; /* file order */
    uint64_t n_tensors;
    uint64_t alignment;
    uint64_t data_offset; /* absolute start of the data section */
    /* private */
    void *map; /* non-NULL when qfs_ggufr_open mapped the file */
    uint32_t *kv_sorted, *t_sorted;
};

/* Map path read-only and parse it.  0 or negative errno (-ENOENT, -EACCES, ... from open,
 * -EINVAL for any format violation, -ENOMEM), logged; *out untouched on error. */
int qfs_ggufr_open(const char *path, struct qfs_ggufr **out);
/* Parse buf[0..size) (not copied: it must outlive the result); label names it in logs. */
int qfs_ggufr_parse(const char *label, const uint8_t *buf, uint64_t size, struct qfs_ggufr **out);
/* Unmaps when opened by qfs_ggufr_open.  NULL is a no-op. */
void qfs_ggufr_close(struct qfs_ggufr *g);

/* NULL when absent.  O(log n). */
const struct qfs_ggufr_kv *qfs_ggufr_find_kv(const struct qfs_ggufr *g, const char *key);
const struct qfs_ggufr_tensor *qfs_ggufr_find_tensor(const struct qfs_ggufr *g, const char *name);

/* Element i of an array value (O(1) for fixed-size elements, O(i) for strings and nested
 * arrays).  0, or -EINVAL when arr is not an array or i is out of range.  Cannot fail
 * otherwise: the whole array was validated by the parse. */
int qfs_ggufr_arr_get(const struct qfs_ggufr_val *arr, uint64_t i, struct qfs_ggufr_val *out);

/* ggml's block size and bytes per block of type id t; false for an unknown or removed id. */
bool qfs_ggufr_type_size(uint32_t t, int64_t *blck, uint64_t *type_size);

#endif
