/*
 * ops_vec.h -- vectorised inner loops of the executor's float ops (ops_vec.c), with run-time
 * ISA dispatch: each loop is compiled three times from one body (ops_vec_body.h): baseline
 * x86-64 (SSE2) / any architecture, AVX2+FMA and AVX-512, all with -O3-level vectorisation
 * enabled per function; the library itself stays built for baseline x86-64 with -O2.
 */
#ifndef CZ_OPS_VEC_H
#define CZ_OPS_VEC_H

#include <stddef.h>
#include <stdint.h>

/* binary op codes for czv_binary */
enum { CZV_ADD, CZV_SUB, CZV_MUL, CZV_DIV };

/* y[i] = a[i*sa] OP b[i*sb] for i < n, sa, sb in {0, 1} (exact IEEE f32 arithmetic). */
void czv_binary(int op, const float *a, int64_t sa, const float *b, int64_t sb, float *y,
                size_t n);
/* erf in f32 (rational approximation, |error| < 1e-6 absolute); NaN propagates */
void czv_erf(const float *x, float *y, size_t n);
/* Gelu (exact form): 0.5 x (1 + erf(x / sqrt 2)) */
void czv_gelu_erf(const float *x, float *y, size_t n);
/* softmax of one contiguous row (NaN anywhere -> NaN row, as the reference); y may equal x */
void czv_softmax_row(const float *x, float *y, size_t n);
/* softmax of the row u = x * s + b (b: a row of n, or NULL), the product and the sum each
 * rounded to f32 as separate Mul and Add ops would (the fused attention Mul-Add-Softmax);
 * s = 1 and b = NULL: czv_softmax_row. y may equal x. */
void czv_softmax_row_sb(const float *x, float *y, size_t n, float s, const float *b);
/* y = (x - mean) / sqrt(var + eps) * scale + bias over one contiguous row of n; scale/bias
 * are f32 rows of n (bias may be NULL); statistics accumulated in double */
void czv_layernorm_row(const float *x, float *y, size_t n, const float *scale,
                       const float *bias, double eps);

/* y = max(x, 0) keeping NaN and -0.0; y may equal x */
void czv_relu(const float *x, float *y, size_t n);
/* 2x2 / stride-2 max pooling, every window inside the input: `planes` planes of h x w ->
 * oh x ow (2 oh <= h, 2 ow <= w); NaN in a window -> NaN (np.maximum). t: scratch of 2 ow
 * floats (not shared between threads). */
void czv_maxpool2x2(const float *x, float *y, size_t planes, size_t h, size_t w, size_t oh,
                    size_t ow, float *t);

#endif
