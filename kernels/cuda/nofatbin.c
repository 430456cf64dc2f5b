/* Built without CUDA (-Dcuda=disabled, or auto without nvcc): no kernels, so
 * kernels/dispatch.c keeps everything on the CPU. */
#include <stddef.h>

const unsigned char qfs_cuda_fatbin[1] = {0};
const size_t qfs_cuda_fatbin_size = 0;
