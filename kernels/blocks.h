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
 *   Q2_K  scales:16 qs:64 d:2 dmin:2      16 sub-blocks of 16; scales[j] = scale | min << 4
 *   Q3_K  hmask:32 qs:64 scales:12 d:2    16 sub-blocks of 16, 6-bit signed scales (+32)
 *   Q4_K  d:2 dmin:2 scales:12 qs:128     8 sub-blocks of 32, 6-bit scales and mins
 *   Q5_K  d:2 dmin:2 scales:12 qh:32 qs:128
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

/* ---- grid-based i-quants: 256 elements, indices into the codebooks of
 * kernels/iq_grids.h plus sign bits and 4- or 3-bit sub-block scales -------
 *   IQ2_XXS d:2 qs:64   per 32 elements two LE u32: 4 grid bytes | 4x7 sign bits, scale<<28
 *   IQ2_XS  d:2 qs:64 scales:8   per 8 elements u16 = 9-bit grid index | 7 sign bits << 9
 *   IQ2_S   d:2 qs:32 signs:32 (in qs[64]) qh:8 scales:8   10-bit grid index, 8 sign bits
 *   IQ3_XXS d:2 qs:64 (grid bytes) + 8 LE u32: 4x7 sign bits, scale<<28
 *   IQ3_S   d:2 qs:64 qh:8 signs:32 scales:4   9-bit grid index per 4 elements
 *   IQ1_S   d:2 qs:32 qh:8 (LE u16: 3x3 high index bits, 3-bit scale<<12, delta sign<<15)
 *   IQ1_M   qs:32 qh:16 scales:8 (3-bit scales; the f16 d in the top nibbles of the 4 u16) */
typedef struct {
    uint16_t d;
    uint16_t qs[QK_K / 8];
} block_iq2_xxs;
static_assert(sizeof(block_iq2_xxs) == 2 + QK_K / 4, "block_iq2_xxs size");

typedef struct {
    uint16_t d;
    uint16_t qs[QK_K / 8];
    uint8_t scales[QK_K / 32];
} block_iq2_xs;
static_assert(sizeof(block_iq2_xs) == 2 + QK_K / 4 + QK_K / 32, "block_iq2_xs size");

typedef struct {
    uint16_t d;
    uint8_t qs[QK_K / 4]; /* 32 low index bytes, then 32 sign bytes */
    uint8_t qh[QK_K / 32];
    uint8_t scales[QK_K / 32];
} block_iq2_s;
static_assert(sizeof(block_iq2_s) == 2 + QK_K / 4 + QK_K / 16, "block_iq2_s size");

typedef struct {
    uint16_t d;
    uint8_t qs[3 * QK_K / 8];
} block_iq3_xxs;
static_assert(sizeof(block_iq3_xxs) == 2 + 3 * QK_K / 8, "block_iq3_xxs size");

typedef struct {
    uint16_t d;
    uint8_t qs[QK_K / 4];
    uint8_t qh[QK_K / 32];
    uint8_t signs[QK_K / 8];
    uint8_t scales[QK_K / 64];
} block_iq3_s;
static_assert(sizeof(block_iq3_s) == 2 + 13 * (QK_K / 32) + QK_K / 64, "block_iq3_s size");

typedef struct {
    uint16_t d;
    uint8_t qs[QK_K / 8];
    uint16_t qh[QK_K / 32];
} block_iq1_s;
static_assert(sizeof(block_iq1_s) == 2 + QK_K / 8 + QK_K / 16, "block_iq1_s size");

typedef struct {
    uint8_t qs[QK_K / 8];
    uint8_t qh[QK_K / 16];
    uint8_t scales[QK_K / 32];
} block_iq1_m;
static_assert(sizeof(block_iq1_m) == QK_K / 8 + QK_K / 16 + QK_K / 32, "block_iq1_m size");

/* ---- family B: non-linear 4-bit, ternary and 1-/2-bit sign formats -------
 *   IQ4_NL d:2 qs:16            32 elements, index j<16 in qs[j] low nibble, j>=16 high
 *                               nibble of qs[j-16]; value = d * kvalues_iq4nl[index]
 *   IQ4_XS d:2 scales_h:2 scales_l:4 qs:128   256 elements in 8 sub-blocks of 32, each
 *                               packed like IQ4_NL; 6-bit scale ls of sub-block ib: low
 *                               nibble (ib&1 ? high : low) of scales_l[ib/2], top 2 bits at
 *                               bits 2*ib of scales_h; value = d * (ls - 32) * kvalues
 *   TQ1_0  qs:48 qh:4 d:2       256 ternary digits (value = (t - 1) * d), base-3 packed:
 *                               qs[m<32] holds elements m + 32n (n = 0..4, first = most
 *                               significant), qs[32+m] elements 160 + m + 16n, qh[m]
 *                               elements 240 + m + 4n (n = 0..3, times 3); each byte stores
 *                               ceil(t * 256 / 243) so the top trit is a byte multiply away
 *   TQ2_0  qs:64 d:2            256 elements, qs[32h + m] bits 2n: element 128h + m + 32n,
 *                               value = (q - 1) * d
 *   Q1_0   d:2 qs:16            128 elements, bit j%8 of qs[j/8] set when x >= 0;
 *                               value = +-d, d = mean |x|
 *   Q2_0   d:2 qs:16            64 elements, bits 2*(j%4) of qs[j/4]: q in 0..3,
 *                               value = (q - 1) * d, d = max |x| */
#define QK4_NL 32
#define QK1_0 128
#define QK2_0 64

typedef struct {
    uint16_t d;
    uint8_t qs[QK4_NL / 2];
} block_iq4_nl;
static_assert(sizeof(block_iq4_nl) == 2 + QK4_NL / 2, "block_iq4_nl size");

typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[QK_K / 64];
    uint8_t qs[QK_K / 2];
} block_iq4_xs;
static_assert(sizeof(block_iq4_xs) == 4 + QK_K / 64 + QK_K / 2, "block_iq4_xs size");

typedef struct {
    uint8_t qs[(QK_K - 4 * QK_K / 64) / 5]; /* 5 trits per byte */
    uint8_t qh[QK_K / 64];                  /* 4 trits per byte */
    uint16_t d;
} block_tq1_0;
static_assert(sizeof(block_tq1_0) == 48 + 4 + 2, "block_tq1_0 size");

typedef struct {
    uint8_t qs[QK_K / 4];
    uint16_t d;
} block_tq2_0;
static_assert(sizeof(block_tq2_0) == QK_K / 4 + 2, "block_tq2_0 size");

typedef struct {
    uint16_t d;
    uint8_t qs[QK1_0 / 8];
} block_q1_0;
static_assert(sizeof(block_q1_0) == 2 + QK1_0 / 8, "block_q1_0 size");

typedef struct {
    uint16_t d;
    uint8_t qs[QK2_0 / 4];
} block_q2_0;
static_assert(sizeof(block_q2_0) == 2 + QK2_0 / 4, "block_q2_0 size");

/* Q2_K: x = d * (scales[j] & 15) * q - dmin * (scales[j] >> 4), q in 0..3.
 * qs[32h + l] holds element 128h + 32k + l in bits 2k..2k+1 (k = 0..3). */
typedef struct {
    uint8_t scales[QK_K / 16]; /* low nibble scale, high nibble min */
    uint8_t qs[QK_K / 4];
    uint16_t d;    /* f16: super-block scale of the scales */
    uint16_t dmin; /* f16: super-block scale of the mins */
} block_q2_K;
static_assert(sizeof(block_q2_K) == QK_K / 16 + QK_K / 4 + 4, "block_q2_K size");

/* Q3_K: x = d * (sc[j] - 32) * (q - 4), q in 0..7: low 2 bits packed as in
 * Q2_K, bit 2 of element 32k + l in bit k of hmask[l] (k = 0..7).  Scale j's
 * low nibble is in scales[j % 8] (low nibble for j < 8, high for j >= 8), its
 * top 2 bits in scales[8 + j % 4] at bit 2 * (j / 4). */
typedef struct {
    uint8_t hmask[QK_K / 8];
    uint8_t qs[QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} block_q3_K;
static_assert(sizeof(block_q3_K) == QK_K / 8 + QK_K / 4 + 12 + 2, "block_q3_K size");

/* Q4_K: x = d * sc[j] * q - dmin * m[j], q in 0..15; sub-blocks 2c and 2c+1
 * are the low and high nibbles of qs[32c .. 32c+31].  The 8 6-bit (sc, m)
 * pairs: j < 4 in the low 6 bits of scales[j] / scales[j + 4]; j >= 4 low
 * nibbles in scales[j + 4], top 2 bits in bits 6-7 of scales[j - 4] / scales[j]. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[QK_K / 2];
} block_q4_K;
static_assert(sizeof(block_q4_K) == 4 + 12 + QK_K / 2, "block_q4_K size");

/* Q5_K: as Q4_K with q in 0..31, bit 4 of element 64c + l (l < 32) in bit 2c
 * of qh[l], of element 64c + 32 + l in bit 2c + 1. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[QK_K / 8];
    uint8_t qs[QK_K / 2];
} block_q5_K;
static_assert(sizeof(block_q5_K) == 4 + 12 + QK_K / 8 + QK_K / 2, "block_q5_K size");

#endif
