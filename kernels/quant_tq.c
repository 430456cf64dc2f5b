/* Portable row loops of the ternary formats TQ1_0 and TQ2_0 (256-element
 * blocks).  ggml ignores an importance matrix for them, and so do we. */
#include "kernels/quant_block_b.h"
#include "kernels/quant_rows.h"

QFS_DEFINE_ROWS(tq1_0, QK_K)
QFS_DEFINE_ROWS(tq2_0, QK_K)
