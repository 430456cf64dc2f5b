/* Portable row loops of the 32-element formats Q4_0, Q4_1, Q5_0, Q5_1, Q8_0.
 * The arithmetic lives in quant_block.h. */
#include "kernels/quant_block.h"
#include "kernels/quant_rows.h"

QFS_DEFINE_ROWS(q4_0, QK4_0)
QFS_DEFINE_ROWS(q4_1, QK4_1)
QFS_DEFINE_ROWS(q5_0, QK5_0)
QFS_DEFINE_ROWS(q5_1, QK5_1)
QFS_DEFINE_ROWS(q8_0, QK8_0)
