/* The group quantizers of the safetensors formats (one source of truth for their bytes):
 * FP8 E4M3 (compressed-tensors), symmetric int4 with an optional importance-weighted scale
 * (compressed-tensors W4A16, GPTQ), and MLX's affine quantization.  Plain C, float32, no
 * FMA contraction (the build's -ffp-contract=off): the same bytes on every host. */
#ifndef QFS_CODECS_INTQ_H
#define QFS_CODECS_INTQ_H

#include <stdint.h>

#include "../kernels/qtypes.h"

/* x rounded to dtype dt and back (F32: unchanged). */
float qfs_intq_round(enum qfs_dtype dt, float x);
/* qfs_intq_round over v[0..n) in place, the same bits (NaN stays itself); vectorizes. */
void qfs_intq_round_n(enum qfs_dtype dt, float *v, int64_t n);

/* float8_e4m3fn of x, |x| <= 448 (callers clamp: torch's cast does not saturate), round
 * to nearest even; subnormals m * 2^-9.  Cannot fail. */
uint8_t qfs_intq_e4m3(float x);
/* The value of E4M3 code c (NaN for 0x7f/0xff). */
float qfs_intq_e4m3_value(uint8_t c);

/* compressed-tensors FP8 per output channel: the scale of a row of n values with absolute
 * maximum absmax, in dtype dt (absmax / 448, at least float32's epsilon), and the codes
 * q[i] = e4m3(clamp(dt(x[i] / scale), -448, 448)). */
float qfs_intq_fp8_scale(enum qfs_dtype dt, float absmax);
void qfs_intq_fp8_row(enum qfs_dtype dt, const float *x, int64_t n, float scale, uint8_t *q);

/* Symmetric int4 of a group of n (<= 256) values: the scale d (a value of dt) and q[i] in
 * [-8, 7] with x ~ d * q.  Without importance, round to nearest: d = dt(absmax / 7.5),
 * q = clamp(rint(x / d), -8, 7).  With importance im (>= 0, llama.cpp's imatrix of the
 * group's input columns), weighted as llama.cpp weights it (im * sqrt(sigma2 + x^2)), the
 * scale of least weighted error among candidates around round-to-nearest's (each also
 * refitted by weighted least squares), unless that one's unweighted error exceeds
 * round-to-nearest's by more than 5 %.  A group of zeros gets d = the smallest positive
 * scale, so does n outside 1 .. 256 (with zero codes).  Cannot fail; q may be NULL. */
float qfs_intq_sym4(enum qfs_dtype dt, const float *x, const float *im, int64_t n, int8_t *q);

/* MLX affine quantization of a group of n values with `bits` bits (mlx's CPU kernel:
 * the edge of larger magnitude mapped exactly, scale sign by which edge, rint), into
 * q[i] in [0, 2^bits - 1] with x ~ scale * q + bias; *scale and *bias as float32 (the
 * caller rounds them to the stored dtype).  Cannot fail; q may be NULL (scale and bias
 * only). */
void qfs_intq_mlx(const float *x, int64_t n, int bits, float *scale, float *bias, uint8_t *q);

#endif
