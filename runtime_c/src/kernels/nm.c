/*
 * nm.c -- N:M structured sparsity (NM forms): in every group of m consecutive columns of a
 * row exactly n entries are kept; pos[g*n + j] is the position inside group g (groups are
 * row-major, cols % m == 0 is checked by the format layer).
 *
 * batch 1: per row, walk groups and gather x[g*m + pos] with two accumulators.
 * batch > 1: X transposed into scratch (cols x npad, batch contiguous) and every kept weight
 *   does an AXPY over a 64-wide block of the batch held in a local accumulator array; the
 *   inner loop is a fixed-length, aligned, unit-stride loop that GCC vectorizes for the
 *   target of each instance (AVX2 / AVX-512 / baseline).
 * Threads over rows when kept * batch is large.
 */
#include "kint.h"

static inline float nm_val(const cz_form *w, int64_t t) {
    return w->u.nm.vkind == CZ_VALS_CODEBOOK ? w->u.nm.lut[w->u.nm.idx[t]] : w->u.nm.vals[t];
}

void czk_nm_op_ref(CZK_OP_ARGS) {
    int64_t m = w->u.nm.m, nn = w->u.nm.n, gpr = w->cols / m;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = r0; r < r1; r++) {
            double s = 0.0;   /* double: the reference is the yardstick */
            for (int64_t g = 0; g < gpr; g++)
                for (int64_t j = 0; j < nn; j++) {
                    int64_t t = (r * gpr + g) * nn + j;
                    s += (double)nm_val(w, t) * x[i * xs_n + (g * m + w->u.nm.pos[t]) * xs_c];
                }
            if (bias) s += bias[r - r0];
            float *o = &y[i * ys_n + (r - r0) * ys_r];
            *o = acc ? *o + (float)s : (float)s;
        }
}

#define NB 64
#define DEF_NM_ISA(SFX, ATTR)                                                                 \
    ATTR static void nm_rows_##SFX(const cz_form *w, int64_t ra, int64_t rb, int64_t r0,     \
                                   const float *xt, int64_t ldt, int64_t n,                  \
                                   const float *bias, float *y, int64_t ys_n, int64_t ys_r,  \
                                   int acc) {                                                 \
        int64_t m = w->u.nm.m, nn = w->u.nm.n, gpr = w->cols / m;                             \
        for (int64_t r = ra; r < rb; r++)                                                     \
            for (int64_t i0 = 0; i0 < n; i0 += NB) {                                          \
                float a[NB] __attribute__((aligned(64)));                                     \
                for (int i = 0; i < NB; i++) a[i] = 0.f;                                      \
                const float *xb = xt + i0;                                                    \
                for (int64_t g = 0; g < gpr; g++)                                             \
                    for (int64_t j = 0; j < nn; j++) {                                        \
                        int64_t t = (r * gpr + g) * nn + j;                                   \
                        float v = nm_val(w, t);                                               \
                        const float *xp = xb + (g * m + w->u.nm.pos[t]) * ldt;                \
                        for (int i = 0; i < NB; i++) a[i] += v * xp[i];                       \
                    }                                                                         \
                int nb = n - i0 < NB ? (int)(n - i0) : NB;                                    \
                float bv = bias ? bias[r - r0] : 0.f;                                         \
                for (int i = 0; i < nb; i++) {                                                \
                    float *o = &y[(i0 + i) * ys_n + (r - r0) * ys_r];                         \
                    *o = acc ? *o + a[i] + bv : a[i] + bv;                                    \
                }                                                                             \
            }                                                                                 \
    }

DEF_NM_ISA(port, )
#if CZK_X86
DEF_NM_ISA(avx2, CZK_T_AVX2)
DEF_NM_ISA(avx512, CZK_T_AVX512)
#endif

cz_status czk_nm_op(CZK_OP_ARGS, cz_ws *ws) {
    int64_t cols = w->cols, m = w->u.nm.m, nn = w->u.nm.n, gpr = cols / m;
    int nt = czk_threads(ws, (double)(r1 - r0) * gpr * nn * (double)n);
    if (nt > r1 - r0) nt = (int)(r1 - r0);
    int64_t chunk = (r1 - r0 + nt - 1) / nt;
    if (n == 1) {
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int th = 0; th < nt; th++) {
            int64_t ra = r0 + th * chunk, rb = ra + chunk < r1 ? ra + chunk : r1;
            for (int64_t r = ra; r < rb; r++) {
                float s0 = 0.f, s1 = 0.f;
                int64_t t = r * gpr * nn;
                for (int64_t g = 0; g < gpr; g++) {
                    const float *xg = x + g * m * xs_c;
                    int64_t j = 0;
                    for (; j + 1 < nn; j += 2, t += 2) {
                        s0 += nm_val(w, t) * xg[w->u.nm.pos[t] * xs_c];
                        s1 += nm_val(w, t + 1) * xg[w->u.nm.pos[t + 1] * xs_c];
                    }
                    for (; j < nn; j++, t++) s0 += nm_val(w, t) * xg[w->u.nm.pos[t] * xs_c];
                }
                float s = s0 + s1 + (bias ? bias[r - r0] : 0.f);
                float *o = &y[(r - r0) * ys_r];
                *o = acc ? *o + s : s;
            }
        }
        return CZ_OK;
    }
    /* XT: cols x npad, zero padded to a multiple of NB */
    int64_t npad = (n + NB - 1) / NB * NB;
    float *xt = czk_scratch(ws, (size_t)cols * npad * sizeof(float));
    if (!xt) return CZ_ERR_MEMORY;
    for (int64_t i0 = 0; i0 < npad; i0 += 8)
        for (int64_t c = 0; c < cols; c++)
            for (int64_t i = i0; i < i0 + 8; i++)
                xt[c * npad + i] = i < n ? x[i * xs_n + c * xs_c] : 0.f;
    int isa = czk_isa();
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int th = 0; th < nt; th++) {
        int64_t ra = r0 + th * chunk, rb = ra + chunk < r1 ? ra + chunk : r1;
        if (ra >= rb) continue;
#if CZK_X86
        if (isa == CZK_ISA_AVX512) nm_rows_avx512(w, ra, rb, r0, xt, npad, n, bias, y, ys_n, ys_r, acc);
        else if (isa == CZK_ISA_AVX2) nm_rows_avx2(w, ra, rb, r0, xt, npad, n, bias, y, ys_n, ys_r, acc);
        else
#endif
            nm_rows_port(w, ra, rb, r0, xt, npad, n, bias, y, ys_n, ys_r, acc);
    }
    (void)isa;
    return CZ_OK;
}
