/* Portable row loops of the 256-element super-block formats (Q6_K so far).
 * The arithmetic lives in quant_block.h. */
#include "kernels/quant_block.h"
#include "kernels/quant_rows.h"

QFS_DEFINE_ROWS(q6_K, QK_K)
