/* Block layouts of the GGUF quant types, byte for byte as ggml stores them.
 *
 * Shared by the C kernels and (later) the CUDA kernels: plain structs of
 * fixed-width integers, no padding, each followed by a size check.  Half
 * floats are stored as their raw IEEE binary16 bits (uint16_t, little endian
 * like every multi-byte field here).
 *
 * Layouts (bytes):
 *   Q4_0  d:2  qs:16            element j<16 in qs[j] low nibble, j>=16 in qs[j-16] high nibble
 *   Q4_1  d:2  m:2  qs:16       same packing, value = q*d + m
 *   Q5_0  d:2  qh:4 qs:16       low 4 bits as Q4_0, bit 4 of element j in bit j of qh (LE u32)
 *   Q5_1  d:2  m:2  qh:4 qs:16
 *   Q8_0  d:2  qs:32 (int8)
 *   Q6_K  ql:128 qh:64 scales:16 (int8) d:2, 256 elements in 16 sub-blocks of 16
 */
#ifndef QFS_BLOCKS_H
#define QFS_BLOCKS_H

#include <stdint.h>

#ifndef __cplusplus
#include <assert.h> /* static_assert in C11/C17 */
#endif

#define QK4_0 32
#define QK4_1 32
#define QK5_0 32
#define QK5_1 32
#define QK8_0 32
#define QK_K 256

typedef struct {
    uint16_t d;
    uint8_t qs[QK4_0 / 2];
} block_q4_0;
static_assert(sizeof(block_q4_0) == 2 + QK4_0 / 2, "block_q4_0 size");

typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qs[QK4_1 / 2];
} block_q4_1;
static_assert(sizeof(block_q4_1) == 4 + QK4_1 / 2, "block_q4_1 size");

typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[QK5_0 / 2];
} block_q5_0;
static_assert(sizeof(block_q5_0) == 2 + 4 + QK5_0 / 2, "block_q5_0 size");

typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[QK5_1 / 2];
} block_q5_1;
static_assert(sizeof(block_q5_1) == 4 + 4 + QK5_1 / 2, "block_q5_1 size");

typedef struct {
    uint16_t d;
    int8_t qs[QK8_0];
} block_q8_0;
static_assert(sizeof(block_q8_0) == 2 + QK8_0, "block_q8_0 size");

typedef struct {
    uint8_t ql[QK_K / 2];     /* low 4 bits */
    uint8_t qh[QK_K / 4];     /* high 2 bits */
    int8_t scales[QK_K / 16]; /* 8-bit sub-block scales */
    uint16_t d;               /* super-block scale (f16) */
} block_q6_K;
static_assert(sizeof(block_q6_K) == QK_K / 2 + QK_K / 4 + QK_K / 16 + 2, "block_q6_K size");

#endif
