/* CUDA kernels of the GPU path: widen source elements to f32, the per-row
 * mean square of the weighted legacy types, and one quantize kernel per type,
 * each thread running the CPU's per-block function on one block
 * (quant_dev.h).  Built by nvcc with -fmad=false --prec-div=true
 * --prec-sqrt=true -ftz=false into a fatbin that kernels/dispatch.c loads
 * through the driver API (cuModuleLoadData), so the names are extern "C" and
 * every kernel takes its arguments as one struct or plain scalars.
 * GPU bytes equal CPU bytes: same functions, no contraction, IEEE division
 * and square root, denormals kept. */
#include "kernels/cuda/quant_dev.h"

extern "C" __global__ void qfs_k_widen(int dtype, const uint8_t *src, float *dst, long long n)
{
    const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = qfs_dev_widen(dtype, src, i);
}

extern "C" __global__ void qfs_k_sigma2(struct qfs_dev_args a, long long n_per_row)
{
    const long long r = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (r < a.nrows)
        qfs_dev_row_sigma2(&a, r, n_per_row);
}

#define QFS_KERNEL(T, t, s)                                                                  \
    extern "C" __global__ void qfs_k_##t(struct qfs_dev_args a)                               \
    {                                                                                        \
        const long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;                \
        if (i < a.nblocks)                                                                   \
            qfs_dev_block_##t(&a, i);                                                        \
    }
QFS_DEV_TYPES(QFS_KERNEL)
