/* The quant types quantfs can write.
 *
 * Type ids are ggml's (they are written into GGUF files and so are frozen):
 * a type we do not implement simply has no row in the table.
 * Every type quantizes rows independently: row r of the output depends only on
 * row r of the input (and the per-column importance, if any).  That is what
 * lets the read path split a tensor into row chunks. */
#ifndef QFS_QTYPES_H
#define QFS_QTYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum qfs_type {
    QFS_TYPE_F32 = 0,
    QFS_TYPE_F16 = 1,
    QFS_TYPE_Q4_0 = 2,
    QFS_TYPE_Q4_1 = 3,
    /* 4, 5: removed Q4_2 / Q4_3 in ggml */
    QFS_TYPE_Q5_0 = 6,
    QFS_TYPE_Q5_1 = 7,
    QFS_TYPE_Q8_0 = 8,
    QFS_TYPE_Q8_1 = 9,
    QFS_TYPE_Q2_K = 10,
    QFS_TYPE_Q3_K = 11,
    QFS_TYPE_Q4_K = 12,
    QFS_TYPE_Q5_K = 13,
    QFS_TYPE_Q6_K = 14,
    QFS_TYPE_Q8_K = 15,
    QFS_TYPE_IQ2_XXS = 16,
    QFS_TYPE_IQ2_XS = 17,
    QFS_TYPE_IQ3_XXS = 18,
    QFS_TYPE_IQ1_S = 19,
    QFS_TYPE_IQ4_NL = 20,
    QFS_TYPE_IQ3_S = 21,
    QFS_TYPE_IQ2_S = 22,
    QFS_TYPE_IQ4_XS = 23,
    /* 24-28: I8, I16, I32, I64, F64 (not quant types) */
    QFS_TYPE_IQ1_M = 29,
    QFS_TYPE_BF16 = 30,
    /* 31-33: removed Q4_0_4_4 / Q4_0_4_8 / Q4_0_8_8 in ggml */
    QFS_TYPE_TQ1_0 = 34,
    QFS_TYPE_TQ2_0 = 35,
    /* 36-40: removed IQ4_NL_4_4.. / MXFP4 / NVFP4 (not written by quantfs) */
    QFS_TYPE_Q1_0 = 41,
    QFS_TYPE_Q2_0 = 42,
    QFS_TYPE_COUNT = 64, /* upper bound of the id space we index by */
};

/* Element dtypes of source tensors (safetensors). */
enum qfs_dtype { QFS_DT_F32, QFS_DT_F16, QFS_DT_BF16 };

struct qfs_type_info {
    const char *name;     /* ggml's spelling: "Q4_0", "F16" ... */
    int64_t blck;         /* elements per block */
    size_t type_size;     /* bytes per block */
    /* Quantize one row of n floats (n % blck == 0).  imatrix: n importance
     * weights or NULL; rows functions of types with imatrix_ok == false
     * ignore it (use qfs_quantize_rows, which refuses).  Never fails once
     * prepare (if any) returned 0.
     * Always the portable function: qfs_quantize_rows may run a SIMD variant
     * with the same bytes instead (kernels/simd.h). */
    void (*quantize_row)(const float *x, void *y, int64_t n, const float *imatrix);
    /* NULL, or builds the one-time tables quantize_row needs (the grid i-quants'
     * codebook lattices): 0, or -ENOMEM and nothing built (the next call tries
     * again).  Thread-safe; cheap once it succeeded.  qfs_quantize_rows and
     * qfs_quantize_rows_cpu call it. */
    int (*prepare)(void);
    /* Inverse, for tests and error bounds. */
    void (*dequantize_row)(const void *x, float *y, int64_t n);
    /* true when a result with an importance matrix is what ggml gives:
     * F32/F16/BF16/Q8_0 ignore it in ggml too.  The weighted variants of the
     * other types are not implemented yet. */
    bool imatrix_ok;
    /* true when ggml has no unweighted quantizer (it asserts) and llama-quantize
     * refuses to write the type without an importance matrix: IQ2_XXS, IQ2_XS,
     * IQ1_S, IQ1_M.  qfs_quantize_rows refuses these without one;
     * quantize_row called with NULL uses all-ones weights (IQ1_M: ggml's
     * unweighted variant), bytes llama-quantize never writes. */
    bool imatrix_required;
    /* Error bound of a round trip: |x - dequant(quant(x))| <= max_err * amax
     * of x's block, for finite x whose block amax is in [1, 1e4]
     * (there every f16 scale and F16 value is a normal number). */
    float max_err;
};

/* NULL when the type is not implemented. */
const struct qfs_type_info *qfs_type_info(enum qfs_type t);
/* Case-sensitive lookup by ggml name; -1 when unknown. */
int qfs_type_from_name(const char *name);
/* Bytes of one row of n elements; 0 when n is not a multiple of the block. */
size_t qfs_row_size(enum qfs_type t, int64_t n);

/* Quantize nrows rows of n_per_row floats, with the SIMD variant of the type
 * when the CPU has one (kernels/simd.h: chosen once at run time, same bytes;
 * QFS_SIMD=off in the environment forces the portable functions).  Returns the bytes written
 * (nrows * qfs_row_size), 0 on an unsupported type or misaligned row, and 0
 * when imatrix != NULL for a type whose weighted quantizer is not implemented
 * (imatrix_ok == false), and 0 when imatrix == NULL for a type with
 * imatrix_required (IQ2_XXS, IQ2_XS, IQ1_S, IQ1_M), and 0 when the type's
 * prepare fails (out of memory; qfs_quantize_rows_cpu returns it as -ENOMEM).
 * Without imatrix the bytes equal ggml's
 * ggml_quantize_chunk(type, src, dst, 0, nrows, n_per_row, NULL). */
size_t qfs_quantize_rows(enum qfs_type t, const float *src, void *dst, int64_t nrows,
                         int64_t n_per_row, const float *imatrix);

/* Source dtype -> float, exactly (f16/bf16 widen losslessly). */
void qfs_to_f32(enum qfs_dtype dt, const void *src, float *dst, int64_t n);
size_t qfs_dtype_size(enum qfs_dtype dt);

/* Scalar conversions with round-to-nearest-even, matching ggml and the
 * converter (numpy astype for f16; gguf-py's bf16 rounding with NaN kept quiet). */
uint16_t qfs_f32_to_f16(float f);
float qfs_f16_to_f32(uint16_t h);
uint16_t qfs_f32_to_bf16(float f);
float qfs_bf16_to_f32(uint16_t h);

#endif
