/*
 * ops_vec.c -- the executor's vectorised float loops (ops_vec.h) and their ISA dispatch.
 * The same body (ops_vec_body.h) is compiled for baseline, AVX2+FMA and AVX-512 with
 * per-function optimisation attributes; czk_cpu_features() picks one at run time.
 */
#include <math.h>
#include <string.h>

#include "cz_internal.h"
#include "kernels/kint.h"   /* czk_features */
#include "ops_vec.h"

#if defined(__GNUC__) && !defined(__clang__)
#define VOPT __attribute__((optimize("O3", "no-math-errno")))
#else
#define VOPT
#endif

#define VSFX base
#define VATTR VOPT
#include "ops_vec_body.h"
#undef VSFX
#undef VATTR

#if defined(__x86_64__) && defined(__GNUC__)
#define VX86 1
#define VSFX avx2
#define VATTR VOPT __attribute__((target("avx2,fma")))
#include "ops_vec_body.h"
#undef VSFX
#undef VATTR
#define VSFX avx512
#define VATTR VOPT __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma," \
                                         "prefer-vector-width=512")))
#include "ops_vec_body.h"
#undef VSFX
#undef VATTR
#else
#define VX86 0
#endif

static int isa(void) {   /* 0 base, 1 avx2, 2 avx512 */
#if VX86
    int f = czk_features();   /* (masked by czk_set_feature_mask: tests run every path) */
    return (f & 2) ? 2 : (f & 1) ? 1 : 0;
#else
    return 0;
#endif
}

#if VX86
#define DISPATCH(call_base, call_avx2, call_avx512)                                       \
    switch (isa()) {                                                                      \
    case 2: call_avx512; break;                                                           \
    case 1: call_avx2; break;                                                             \
    default: call_base; break;                                                            \
    }
#else
#define DISPATCH(call_base, call_avx2, call_avx512) call_base;
#endif

void czv_binary(int op, const float *a, int64_t sa, const float *b, int64_t sb, float *y,
                size_t n) {
    DISPATCH(binary_base(op, a, sa, b, sb, y, n), binary_avx2(op, a, sa, b, sb, y, n),
             binary_avx512(op, a, sa, b, sb, y, n))
}

void czv_erf(const float *x, float *y, size_t n) {
    DISPATCH(erf_base(x, y, n), erf_avx2(x, y, n), erf_avx512(x, y, n))
}

void czv_gelu_erf(const float *x, float *y, size_t n) {
    DISPATCH(gelu_erf_base(x, y, n), gelu_erf_avx2(x, y, n), gelu_erf_avx512(x, y, n))
}

void czv_softmax_row(const float *x, float *y, size_t n) {
    DISPATCH(softmax_row_base(x, y, n), softmax_row_avx2(x, y, n), softmax_row_avx512(x, y, n))
}

void czv_layernorm_row(const float *x, float *y, size_t n, const float *scale,
                       const float *bias, double eps) {
    DISPATCH(layernorm_row_base(x, y, n, scale, bias, eps),
             layernorm_row_avx2(x, y, n, scale, bias, eps),
             layernorm_row_avx512(x, y, n, scale, bias, eps))
}

void czv_relu(const float *x, float *y, size_t n) {
    if (x == y)
        DISPATCH(relu_inplace_base(y, n), relu_inplace_avx2(y, n), relu_inplace_avx512(y, n))
    else
        DISPATCH(relu_base(x, y, n), relu_avx2(x, y, n), relu_avx512(x, y, n))
}

#if VX86
#include <immintrin.h>

/* AVX2 2x2 / stride-2 max pooling, the same two steps as maxpool2x2 (ops_vec_body.h: rows,
 * then neighbouring pairs, each with VMAXN), so the results are the same bits; written with
 * intrinsics because the vectorised plain loops pay their set-up per output row, and
 * LeNet-5's rows are short (12 and 4 outputs): its 2 pools took 14.4 us (median per call,
 * the former scalar loop), 4.6 us with the plain vectorised loops, 1.8 us with this.
 * 8 outputs per step: the row max of two 16-float rows, even / odd lanes by shuffle_ps (per
 * 128-bit lane), max, and permute4x64 to restore the order. */
__attribute__((target("avx2,fma"))) static inline __m256 maxn8(__m256 a, __m256 b) {
    /* VMAXN: maxps gives a > b ? a : b (b when either is NaN); then a where a is NaN */
    return _mm256_blendv_ps(_mm256_max_ps(a, b), a, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
}
__attribute__((target("avx2,fma"))) static inline __m128 maxn4(__m128 a, __m128 b) {
    return _mm_blendv_ps(_mm_max_ps(a, b), a, _mm_cmp_ps(a, a, _CMP_UNORD_Q));
}
__attribute__((target("avx2,fma"))) static void maxpool2x2_avx2i(
    const float *x, float *y, size_t planes, size_t h, size_t w, size_t oh, size_t ow) {
    for (size_t p = 0; p < planes; p++)
        for (size_t oy = 0; oy < oh; oy++) {
            const float *r0 = x + (p * h + 2 * oy) * w, *r1 = r0 + w;
            float *yr = y + (p * oh + oy) * ow;
            size_t i = 0;
            for (; i + 8 <= ow; i += 8) {
                __m256 v0 = maxn8(_mm256_loadu_ps(r0 + 2 * i), _mm256_loadu_ps(r1 + 2 * i));
                __m256 v1 = maxn8(_mm256_loadu_ps(r0 + 2 * i + 8),
                                  _mm256_loadu_ps(r1 + 2 * i + 8));
                __m256 m = maxn8(_mm256_shuffle_ps(v0, v1, 0x88), _mm256_shuffle_ps(v0, v1, 0xDD));
                m = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(m), 0xD8));
                _mm256_storeu_ps(yr + i, m);
            }
            for (; i + 4 <= ow; i += 4) {
                __m128 v0 = maxn4(_mm_loadu_ps(r0 + 2 * i), _mm_loadu_ps(r1 + 2 * i));
                __m128 v1 = maxn4(_mm_loadu_ps(r0 + 2 * i + 4), _mm_loadu_ps(r1 + 2 * i + 4));
                _mm_storeu_ps(yr + i, maxn4(_mm_shuffle_ps(v0, v1, 0x88),
                                            _mm_shuffle_ps(v0, v1, 0xDD)));
            }
            for (; i < ow; i++) {
                float a = VMAXN(r0[2 * i], r1[2 * i]), b = VMAXN(r0[2 * i + 1], r1[2 * i + 1]);
                yr[i] = VMAXN(a, b);
            }
        }
}
#endif

void czv_maxpool2x2(const float *x, float *y, size_t planes, size_t h, size_t w, size_t oh,
                    size_t ow, float *t) {
#if VX86
    if (isa() >= 1) {
        maxpool2x2_avx2i(x, y, planes, h, w, oh, ow);
        return;
    }
#endif
    maxpool2x2_base(x, y, planes, h, w, oh, ow, t);
}
