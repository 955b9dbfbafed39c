/*
 * ops_vec_body.h -- included by ops_vec.c once per ISA with VSFX (name suffix) and VATTR
 * (function attributes) defined. Plain loops written for the auto-vectoriser: no
 * data-dependent branches, reductions over 16 independent lanes.
 */
#define VCAT2(a, b) a##_##b
#define VCAT(a, b) VCAT2(a, b)
#define VF(name) VCAT(name, VSFX)

#define VLANES 16

#ifndef VCLAMP_DEFINED
#define VCLAMP_DEFINED
/* branch-free select / clamp that keep NaN (bit selects: the compiler cannot turn them into
 * jumps, which would stop the loop from vectorising). Macros, not functions: a helper
 * compiled with other optimisation options would not be inlined into these loops. */
typedef union { float f; uint32_t u; } vpun;
#define VSEL(c, a, b) __extension__({                                                     \
    vpun a_ = {(a)}, b_ = {(b)};                                                          \
    uint32_t m_ = (uint32_t)0 - (uint32_t)((c) != 0);                                     \
    a_.u = (a_.u & m_) | (b_.u & ~m_);                                                    \
    a_.f; })
#define VCLAMP(x, lo, hi) __extension__({                                                 \
    float c_ = (x);                                                                       \
    c_ = VSEL(c_ > (hi), (hi), c_);                                                       \
    VSEL(c_ < (lo), (lo), c_); })
#endif

VATTR static void VF(binary)(int op, const float *restrict a, int64_t sa,
                             const float *restrict b, int64_t sb, float *restrict y, size_t n) {
    if (sa && sb) {
        switch (op) {
        case CZV_ADD: for (size_t i = 0; i < n; i++) y[i] = a[i] + b[i]; break;
        case CZV_SUB: for (size_t i = 0; i < n; i++) y[i] = a[i] - b[i]; break;
        case CZV_MUL: for (size_t i = 0; i < n; i++) y[i] = a[i] * b[i]; break;
        default: for (size_t i = 0; i < n; i++) y[i] = a[i] / b[i]; break;
        }
    } else if (sa) {
        float v = b[0];
        switch (op) {
        case CZV_ADD: for (size_t i = 0; i < n; i++) y[i] = a[i] + v; break;
        case CZV_SUB: for (size_t i = 0; i < n; i++) y[i] = a[i] - v; break;
        case CZV_MUL: for (size_t i = 0; i < n; i++) y[i] = a[i] * v; break;
        default: for (size_t i = 0; i < n; i++) y[i] = a[i] / v; break;
        }
    } else {
        float u = a[0];
        switch (op) {
        case CZV_ADD: for (size_t i = 0; i < n; i++) y[i] = u + b[i]; break;
        case CZV_SUB: for (size_t i = 0; i < n; i++) y[i] = u - b[i]; break;
        case CZV_MUL: for (size_t i = 0; i < n; i++) y[i] = u * b[i]; break;
        default: for (size_t i = 0; i < n; i++) y[i] = u / b[i]; break;
        }
    }
}

/* Eigen's generic_fast_erf_float: odd/even rational on [-4, 4] */
#define ERF_BODY(X, OUT)                                                                  \
    do {                                                                                  \
        float x_ = VCLAMP((X), -4.f, 4.f);                                                \
        float x2_ = x_ * x_;                                                              \
        float p_ = x2_ * -2.72614225801306e-10f + 2.77068142495902e-08f;                  \
        p_ = x2_ * p_ + -2.10102402082508e-06f;                                           \
        p_ = x2_ * p_ + -5.69250639462346e-05f;                                           \
        p_ = x2_ * p_ + -7.34990630326855e-04f;                                           \
        p_ = x2_ * p_ + -2.95459980854025e-03f;                                           \
        p_ = x2_ * p_ + -1.60960333262415e-02f;                                           \
        p_ = x_ * p_;                                                                     \
        float q_ = x2_ * -1.45660718464996e-05f + -2.13374055278905e-04f;                 \
        q_ = x2_ * q_ + -1.68282697438203e-03f;                                           \
        q_ = x2_ * q_ + -7.37332916720468e-03f;                                           \
        q_ = x2_ * q_ + -1.42647390514189e-02f;                                           \
        (OUT) = p_ / q_;                                                                  \
    } while (0)

VATTR static void VF(erf)(const float *restrict x, float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float e;
        ERF_BODY(x[i], e);
        y[i] = e;
    }
}

/* 0.5 x (1 + erf(x / sqrt 2)) with the f32 erf: accurate but for x < -2.5 (gelu_tail) */
VATTR static void VF(gelu_erf_main)(const float *restrict x,
                                   float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) {
        float v = x[i], e;
        ERF_BODY(v * 0.70710678118654752f, e);
        y[i] = 0.5f * v * (1.0f + e);
    }
}

/* far left tail: 1 + erf cancels, so the f32 erf's absolute error would exceed the
 * elementwise tolerance there; recompute those elements in double. The portable version:
 * x86 with AVX2 runs gelu_tail_avx2i (ops_vec.c) instead, a vectorised f32 erfc (a scalar
 * test per element here cost as much as the whole Gelu on MiniLM, erfc calls more). */
VATTR __attribute__((unused)) static void VF(gelu_tail)(const float *restrict x,
                                                         float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (x[i] < -2.5f) y[i] = (float)(0.5 * x[i] * erfc(-(double)x[i] * 0.70710678118654752));
}

/* Cephes expf: x = k ln2 + r, |r| <= ln2/2, degree-7 polynomial, 2^k from the exponent bits.
 * The polynomial is evaluated on x clamped to -87.3 (2^k stays a normal float); inputs below
 * that give exactly 0 (a select after the polynomial), so exp(-inf) of masked attention
 * scores is 0 as in the reference (whose f64 exp of x < -87.3 is < 1.2e-38 as f32 anyway). */
VATTR __attribute__((unused)) static float VF(softmax_exp)(const float *x, float *y,
                                                          size_t n, float mx) {
    float acc[VLANES] = {0};
    size_t i = 0;
    for (; i + VLANES <= n; i += VLANES)
        for (int l = 0; l < VLANES; l++) {
            float d = x[i + l] - mx;
            float v = VCLAMP(d, -87.3f, 0.f);
            float kf = v * 1.44269504088896341f + 12582912.0f;   /* round to nearest */
            kf -= 12582912.0f;
            float r = v - kf * 0.693359375f;
            r = r - kf * -2.12194440e-4f;
            float p = 1.9875691500e-4f;
            p = p * r + 1.3981999507e-3f;
            p = p * r + 8.3334519073e-3f;
            p = p * r + 4.1665795894e-2f;
            p = p * r + 1.6666665459e-1f;
            p = p * r + 5.0000001201e-1f;
            p = p * r * r + r + 1.0f;
            int32_t k = (int32_t)kf;
            vpun s;
            s.u = (uint32_t)(k + 127) << 23;
            float e = VSEL(d < -87.3f, 0.f, p * s.f);
            y[i + l] = e;
            acc[l] += e;
        }
    float sum = 0.f;
    for (int l = 0; l < VLANES; l++) sum += acc[l];
    for (; i < n; i++) {
        float v = x[i] - mx;
        float e = v < -87.3f ? 0.f : expf(v);
        y[i] = e;
        sum += e;
    }
    return sum;
}

/* (x may equal y: no restrict; x86 with AVX2 runs softmax_row_avx2i of ops_vec.c instead) */
VATTR __attribute__((unused)) static void VF(softmax_row)(const float *x, float *y, size_t n) {
    float mxl[VLANES];
    int nanl[VLANES];
    for (int l = 0; l < VLANES; l++) { mxl[l] = -INFINITY; nanl[l] = 0; }
    size_t i = 0;
    for (; i + VLANES <= n; i += VLANES)
        for (int l = 0; l < VLANES; l++) {
            float v = x[i + l];
            nanl[l] |= v != v;
            mxl[l] = v > mxl[l] ? v : mxl[l];
        }
    float mx = -INFINITY;
    int nan = 0;
    for (int l = 0; l < VLANES; l++) { nan |= nanl[l]; mx = mxl[l] > mx ? mxl[l] : mx; }
    for (; i < n; i++) { nan |= x[i] != x[i]; mx = x[i] > mx ? x[i] : mx; }
    if (nan || mx == INFINITY || mx == -INFINITY) {   /* rare: the reference's exact path */
        double m = nan ? NAN : mx, s = 0;
        for (size_t k = 0; k < n; k++) s += exp((double)x[k] - m);
        for (size_t k = 0; k < n; k++) y[k] = (float)(exp((double)x[k] - m) / s);
        return;
    }
    float sum = VF(softmax_exp)(x, y, n, mx);
    float inv = 1.0f / sum;
    for (size_t k = 0; k < n; k++) y[k] *= inv;
}

VATTR static void VF(layernorm_row)(const float *restrict x, float *restrict y, size_t n,
                                    const float *restrict sc, const float *restrict bi,
                                    double eps) {
    double acc[VLANES] = {0};
    size_t i = 0;
    for (; i + VLANES <= n; i += VLANES)
        for (int l = 0; l < VLANES; l++) acc[l] += (double)x[i + l];
    double s = 0;
    for (int l = 0; l < VLANES; l++) s += acc[l];
    for (; i < n; i++) s += x[i];
    double mean = s / (double)n;
    for (int l = 0; l < VLANES; l++) acc[l] = 0;
    i = 0;
    for (; i + VLANES <= n; i += VLANES)
        for (int l = 0; l < VLANES; l++) {
            double d = (double)x[i + l] - mean;
            acc[l] += d * d;
        }
    double v = 0;
    for (int l = 0; l < VLANES; l++) v += acc[l];
    for (; i < n; i++) v += ((double)x[i] - mean) * ((double)x[i] - mean);
    v /= (double)n;
    float inv = (float)(1.0 / sqrt(v + eps)), mf = (float)mean;
    if (bi)
        for (size_t k = 0; k < n; k++) y[k] = (x[k] - mf) * inv * sc[k] + bi[k];
    else
        for (size_t k = 0; k < n; k++) y[k] = (x[k] - mf) * inv * sc[k];
}

/* Relu: x < 0 -> 0, else x (NaN and -0.0 stay, as the scalar sel loop of ops_elementwise) */
VATTR static void VF(relu)(const float *restrict x, float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = VSEL(x[i] < 0.0f, 0.0f, x[i]);
}

/* Relu in place (y may be the input: a stolen buffer) */
VATTR static void VF(relu_inplace)(float *restrict y, size_t n) {
    for (size_t i = 0; i < n; i++) y[i] = VSEL(y[i] < 0.0f, 0.0f, y[i]);
}

/* max that keeps a NaN of either side, as np.maximum: a when a > b or a is NaN, else b
 * (so a NaN b is taken when a is not NaN); a tie gives b, as the former scalar loop. As
 * vectors: maxps(a, b) (which returns b when either is NaN), then a where a is NaN. */
#define VMAXN(a, b) __extension__({ float a_ = (a), b_ = (b); (a_ > b_ || a_ != a_) ? a_ : b_; })

/* 2x2 / stride-2 max pooling with every window inside the input: planes of h x w in,
 * oh x ow out (2 oh <= h, 2 ow <= w). Per output row, first the max of the two input rows
 * (contiguous: whole vectors), then of neighbouring pairs (even / odd lanes), instead of
 * four strided scalar loads per output. t: scratch of 2 ow floats. The portable version:
 * x86 with AVX2 uses maxpool2x2_avx2i (ops_vec.c), same steps and bits. */
VATTR __attribute__((unused)) static void VF(maxpool2x2)(
    const float *restrict x, float *restrict y, size_t planes, size_t h, size_t w, size_t oh,
    size_t ow, float *restrict t) {
    for (size_t p = 0; p < planes; p++)
        for (size_t oy = 0; oy < oh; oy++) {
            const float *r0 = x + (p * h + 2 * oy) * w, *r1 = r0 + w;
            float *yr = y + (p * oh + oy) * ow;
            for (size_t j = 0; j < 2 * ow; j++) t[j] = VMAXN(r0[j], r1[j]);
            for (size_t i = 0; i < ow; i++) yr[i] = VMAXN(t[2 * i], t[2 * i + 1]);
        }
}

#undef VF
#undef VCAT
#undef VCAT2
#undef VLANES
