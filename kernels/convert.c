/* Element conversions: source dtypes to f32, and the F32/F16/BF16 "types"
 * (quantize = convert, dequantize = widen).  Bit rules in quant_block.h. */
#include <string.h>

#include "kernels/qtypes.h"
#include "kernels/quant_block.h"
#include "kernels/quant_rows.h"

uint16_t qfs_f32_to_f16(float f) { return qfs_fp32_to_fp16(f); }
float qfs_f16_to_f32(uint16_t h) { return qfs_fp16_to_fp32(h); }
uint16_t qfs_f32_to_bf16(float f) { return qfs_fp32_to_bf16(f); }
float qfs_bf16_to_f32(uint16_t h) { return qfs_bf16_to_fp32(h); }

size_t qfs_dtype_size(enum qfs_dtype dt)
{
    switch (dt) {
    case QFS_DT_F32: return 4;
    case QFS_DT_F16:
    case QFS_DT_BF16: return 2;
    }
    return 0;
}

/* src may be unaligned (it points into an mmap'ed safetensors file at any
 * offset), so elements are loaded with memcpy. */
void qfs_to_f32(enum qfs_dtype dt, const void *src, float *dst, int64_t n)
{
    const unsigned char *s = src;
    uint16_t h;
    switch (dt) {
    case QFS_DT_F32:
        memcpy(dst, src, (size_t)n * sizeof(float));
        return;
    case QFS_DT_F16:
        for (int64_t i = 0; i < n; i++) {
            memcpy(&h, s + 2 * i, 2);
            dst[i] = qfs_fp16_to_fp32(h);
        }
        return;
    case QFS_DT_BF16:
        for (int64_t i = 0; i < n; i++) {
            memcpy(&h, s + 2 * i, 2);
            dst[i] = qfs_bf16_to_fp32(h);
        }
        return;
    }
}

void qfs_quantize_row_f32(const float *x, void *y, int64_t n, const float *imatrix)
{
    (void)imatrix;
    memcpy(y, x, (size_t)n * sizeof(float));
}

void qfs_dequantize_row_f32(const void *x, float *y, int64_t n)
{
    memcpy(y, x, (size_t)n * sizeof(float));
}

void qfs_quantize_row_f16(const float *x, void *vy, int64_t n, const float *imatrix)
{
    uint16_t *y = vy;
    (void)imatrix;
    for (int64_t i = 0; i < n; i++)
        y[i] = qfs_fp32_to_fp16(x[i]);
}

void qfs_dequantize_row_f16(const void *x, float *y, int64_t n)
{
    qfs_to_f32(QFS_DT_F16, x, y, n);
}

void qfs_quantize_row_bf16(const float *x, void *vy, int64_t n, const float *imatrix)
{
    uint16_t *y = vy;
    (void)imatrix;
    for (int64_t i = 0; i < n; i++)
        y[i] = qfs_fp32_to_bf16(x[i]);
}

void qfs_dequantize_row_bf16(const void *x, float *y, int64_t n)
{
    qfs_to_f32(QFS_DT_BF16, x, y, n);
}
