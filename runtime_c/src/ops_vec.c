/*
 * ops_vec.c -- the executor's vectorised float loops (ops_vec.h) and their ISA dispatch.
 * The same body (ops_vec_body.h) is compiled for baseline, AVX2+FMA and AVX-512 with
 * per-function optimisation attributes; czk_cpu_features() picks one at run time.
 */
#include <math.h>
#include <string.h>

#include "cz_internal.h"
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
    int f = czk_cpu_features();
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
