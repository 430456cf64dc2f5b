/* Portable row loops of Q1_0 (128 signs and a mean magnitude) and Q2_0
 * (64 elements, levels -d..2d).  ggml ignores an importance matrix for them,
 * and so do we. */
#include "kernels/quant_block_b.h"
#include "kernels/quant_rows.h"

QFS_DEFINE_ROWS(q1_0, QK1_0)
QFS_DEFINE_ROWS(q2_0, QK2_0)
