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

/* AVX2 softmax of one row, optionally of u = x * s + b (the fused Mul-Add-Softmax of an
 * attention block: the product and the sum rounded to f32 one after the other, as the
 * unfused Mul and Add store them, so u is the same bits). Written with intrinsics because
 * the plain loops (softmax_row in ops_vec_body.h, the portable version kept beside this)
 * left the max / NaN pass scalar: 1.6 ns per element on MiniLM's 128-wide rows against
 * 0.7 ns here (its 12 x 128 x 128 scores do not fit in L2). Passes: u (when fused: into y), max + NaN test, exp + sum, scale by 1/sum;
 * x may equal y. exp: the Cephes expf of softmax_exp (same reduction, same degree-7
 * polynomial, here with FMA); the rows' relative error vs double is < 5e-6, mostly the
 * f32 rounding of u - max that any f32 softmax has (test_graph.c measures 1.1e-6);
 * inputs below max - 87.3 (and -inf) give exactly 0, as in softmax_exp. NaN anywhere or an
 * infinite max: the reference's double path (the same as softmax_row's). */
#define SM_AVX2 __attribute__((target("avx2,fma")))
SM_AVX2 static inline __m256 sm_exp8(__m256 d) {
    __m256 v = _mm256_max_ps(_mm256_min_ps(d, _mm256_setzero_ps()), _mm256_set1_ps(-87.3f));
    __m256 kf = _mm256_round_ps(_mm256_mul_ps(v, _mm256_set1_ps(1.44269504088896341f)),
                                _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(0.693359375f), v);
    r = _mm256_fnmadd_ps(kf, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i k = _mm256_cvtps_epi32(kf);
    __m256 sc = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(k, _mm256_set1_epi32(127)), 23));
    __m256 e = _mm256_mul_ps(p, sc);
    /* d < -87.3 (or -inf): exactly 0 */
    return _mm256_andnot_ps(_mm256_cmp_ps(d, _mm256_set1_ps(-87.3f), _CMP_LT_OQ), e);
}
SM_AVX2 static inline __m256i sm_tailmask(size_t left) {
    const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)left), idx);
}
SM_AVX2 static void softmax_row_avx2i(const float *x, float *y, size_t n, float s,
                                     const float *b) {
    size_t i;
    if (s != 1.0f || b) {   /* fused: u = fl(fl(x * s) + b) into y, then y in place */
        __m256 vs = _mm256_set1_ps(s);
        for (i = 0; i + 8 <= n; i += 8) {
            __m256 u = _mm256_mul_ps(_mm256_loadu_ps(x + i), vs);
            if (b) u = _mm256_add_ps(u, _mm256_loadu_ps(b + i));
            _mm256_storeu_ps(y + i, u);
        }
        for (; i < n; i++) {
            volatile float t = x[i] * s;   /* no contraction into an FMA */
            y[i] = b ? t + b[i] : t;
        }
        x = y;
    }
    __m256 m0 = _mm256_set1_ps(-INFINITY), m1 = m0, nan = _mm256_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m256 a = _mm256_loadu_ps(x + i), c = _mm256_loadu_ps(x + i + 8);
        m0 = _mm256_max_ps(m0, a);
        m1 = _mm256_max_ps(m1, c);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, c, _CMP_UNORD_Q));
    }
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_loadu_ps(x + i);
        m0 = _mm256_max_ps(m0, a);
        nan = _mm256_or_ps(nan, _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
    }
    m0 = _mm256_max_ps(m0, m1);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(m0), _mm256_extractf128_ps(m0, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_shuffle_ps(h, h, 1));
    float mx = _mm_cvtss_f32(h);
    int isnan = _mm256_movemask_ps(nan) != 0;
    for (; i < n; i++) {
        isnan |= x[i] != x[i];
        mx = x[i] > mx ? x[i] : mx;
    }
    if (isnan || mx == INFINITY || mx == -INFINITY) {   /* rare: the reference's exact path */
        double m = isnan ? NAN : mx, sd = 0;
        for (size_t k = 0; k < n; k++) sd += exp((double)x[k] - m);
        for (size_t k = 0; k < n; k++) y[k] = (float)(exp((double)x[k] - m) / sd);
        return;
    }
    __m256 vm = _mm256_set1_ps(mx), s0 = _mm256_setzero_ps(), s1 = s0;
    for (i = 0; i + 16 <= n; i += 16) {
        __m256 e0 = sm_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vm));
        __m256 e1 = sm_exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i + 8), vm));
        _mm256_storeu_ps(y + i, e0);
        _mm256_storeu_ps(y + i + 8, e1);
        s0 = _mm256_add_ps(s0, e0);
        s1 = _mm256_add_ps(s1, e1);
    }
    for (; i < n; i += 8) {   /* last 1..15: masked */
        __m256i mk = sm_tailmask(n - i);
        __m256 e = sm_exp8(_mm256_sub_ps(_mm256_maskload_ps(x + i, mk), vm));
        e = _mm256_and_ps(e, _mm256_castsi256_ps(mk));
        _mm256_maskstore_ps(y + i, mk, e);
        s0 = _mm256_add_ps(s0, e);
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 q = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    q = _mm_add_ps(q, _mm_movehl_ps(q, q));
    q = _mm_add_ss(q, _mm_shuffle_ps(q, q, 1));
    __m256 inv = _mm256_set1_ps(1.0f / _mm_cvtss_f32(q));
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_loadu_ps(y + i), inv));
    for (; i < n; i++) y[i] *= _mm_cvtss_f32(_mm256_castps256_ps128(inv));
}

/* gelu_tail (ops_vec_body.h) with AVX2, 8 lanes: 0.5 x erfc(-x / sqrt 2) with the
 * erfc of Numerical Recipes (erfcc: t exp(-z^2 + P(t)), t = 1 / (1 + z / 2), fractional
 * error < 1.2e-7), evaluated in f32 with z^2 inside an FMA and sm_exp8: relative error
 * < 3e-5 where Gelu is above 1e-30 (test_graph.c: 1.2e-5 at x = -14, from the rounding of
 * z, growing with z^2; |Gelu| < 0.016 in this tail, so that is < 1e-9 absolute); used
 * for x < -2.5 only (blocks of 8 without such an element cost one compare). */
SM_AVX2 static inline __m256 gelu_tail8(__m256 v) {
    __m256 z = _mm256_mul_ps(v, _mm256_set1_ps(-0.70710678118654752f));
    __m256 t = _mm256_div_ps(_mm256_set1_ps(1.0f),
                             _mm256_fmadd_ps(z, _mm256_set1_ps(0.5f), _mm256_set1_ps(1.0f)));
    __m256 p = _mm256_set1_ps(0.17087277f);
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.82215223f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.48851587f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.13520398f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.27886807f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-0.18628806f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.09678418f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(0.37409196f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(1.00002368f));
    p = _mm256_fmadd_ps(p, t, _mm256_set1_ps(-1.26551223f));
    __m256 e = _mm256_mul_ps(t, sm_exp8(_mm256_fnmadd_ps(z, z, p)));
    return _mm256_mul_ps(_mm256_mul_ps(_mm256_set1_ps(0.5f), v), e);
}

SM_AVX2 static void gelu_tail_avx2i(const float *x, float *y, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 v = _mm256_loadu_ps(x + i);
        __m256 m = _mm256_cmp_ps(v, _mm256_set1_ps(-2.5f), _CMP_LT_OQ);
        if (_mm256_movemask_ps(m))
            _mm256_storeu_ps(y + i, _mm256_blendv_ps(_mm256_loadu_ps(y + i), gelu_tail8(v), m));
    }
    gelu_tail_base(x + i, y + i, n - i);
}
/* (Tried: one pass, ERF_BODY in intrinsics with the tail blended in per block of 8: 1.31
 * ms for MiniLM's 6 Gelu against 0.95 ms for the two passes -- the per-block branch sits
 * inside the erf's long dependency chain and mispredicts on such data.) */
#endif

void czv_gelu_erf(const float *x, float *y, size_t n) {
    DISPATCH(gelu_erf_main_base(x, y, n), gelu_erf_main_avx2(x, y, n),
             gelu_erf_main_avx512(x, y, n))
#if VX86
    if (isa() >= 1) {
        gelu_tail_avx2i(x, y, n);
        return;
    }
#endif
    gelu_tail_base(x, y, n);
}

void czv_softmax_row_sb(const float *x, float *y, size_t n, float s, const float *b) {
#if VX86
    if (isa() >= 1) {
        softmax_row_avx2i(x, y, n, s, b);
        return;
    }
#endif
    if (s != 1.0f || b) {   /* fused: u = fl(fl(x * s) + b) into y, then y in place */
        for (size_t i = 0; i < n; i++) {
            volatile float t = x[i] * s;   /* no contraction into an FMA */
            y[i] = b ? t + b[i] : t;
        }
        x = y;
    }
    softmax_row_base(x, y, n);
}

void czv_softmax_row(const float *x, float *y, size_t n) { czv_softmax_row_sb(x, y, n, 1.0f, NULL); }

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
