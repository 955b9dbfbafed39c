/*
 * precise.c -- cz_options.precise for dense fp32 convolutions, the products that dominate a
 * lossless CNN. Precise mode means: every output accumulates in double and is rounded to
 * float once, exactly as the _ref kernels do (they run every other precise product). The
 * reference conv builds one im2col patch per pixel and walks it with a scalar double dot
 * product (~1 GMAC/s); this kernel gives the SAME bits several times faster:
 *   - a block of PB output pixels is im2col'ed into doubles, pixel-contiguous (K x PB);
 *   - each output channel does acc[0..PB) += (double)w[o,k] * col[k][0..PB) for k ascending,
 *     then adds the bias and rounds -- the reference's operation order per output (products
 *     rounded to double, added in k order, bias last), so the results are bit-identical to
 *     czk_conv2d_ref (tests check) while the inner loop is a vectorizable double AXPY.
 * The build uses ISO C (no FP contraction), so neither path fuses the multiply-add.
 * Depthwise and non-DENSE weights go to czk_conv2d_ref.
 */
#include "kint.h"

enum { PB = 32 };   /* pixels per block: K x PB doubles stay in L2 for K <= ~2000 */

static void patches_f64(const float *x, const czk_conv_params *p, int64_t cg, int64_t p0,
                        int64_t np, double *col) {
    int64_t H = p->h, W = p->w, k = 0;
    for (int64_t ci = 0; ci < cg; ci++)
        for (int64_t ky = 0; ky < p->kh; ky++)
            for (int64_t kx = 0; kx < p->kw; kx++, k++) {
                double *d = col + k * PB;
                for (int64_t j = 0; j < np; j++) {
                    int64_t oy = (p0 + j) / p->ow, ox = (p0 + j) % p->ow;
                    int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                    int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                    d[j] = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[(ci * H + iy) * W + ix]
                                                                     : 0.0;
                }
                for (int64_t j = np; j < PB; j++) d[j] = 0.0;
            }
}

#define PRECISE_ROWS(NAME, ATTR)                                                            \
    ATTR static void NAME(const float *wg, int64_t ocg, int64_t K, const double *col,         \
                          const float *bias, float *y, int64_t OHW, int64_t p0, int64_t np) { \
        for (int64_t o = 0; o < ocg; o++) {                                                  \
            double acc[PB];                                                                  \
            for (int j = 0; j < PB; j++) acc[j] = 0.0;                                       \
            const float *wr = wg + o * K;                                                    \
            for (int64_t k = 0; k < K; k++) {                                                \
                double wv = wr[k];                                                           \
                const double *c = col + k * PB;                                              \
                for (int j = 0; j < PB; j++) acc[j] += wv * c[j];                            \
            }                                                                                \
            double b = bias ? bias[o] : 0.0;                                                 \
            float *yo = y + o * OHW + p0;                                                    \
            for (int64_t j = 0; j < np; j++) yo[j] = (float)(bias ? acc[j] + b : acc[j]);   \
        }                                                                                    \
    }

PRECISE_ROWS(rows_port, )
#if CZK_X86
PRECISE_ROWS(rows_avx2, CZK_T_AVX2)
#endif

cz_status czk_conv2d_precise(const cz_form *w, const czk_conv_params *p, const float *x,
                             const float *bias, float *y, cz_ws *ws) {
    int64_t G = p->group, cg = p->c / G, ocg = p->oc / G;
    int dw = G == p->c && G == p->oc && G > 1;
    if (w->kind != CZ_FORM_DENSE || dw || G <= 0 || w->rows != p->oc ||
        w->cols != cg * p->kh * p->kw)
        return czk_conv2d_ref(w, p, x, bias, y);
    int64_t K = w->cols, HW = p->h * p->w, OHW = p->oh * p->ow;
    double *col = czk_scratch(ws, (size_t)(K > 0 ? K : 1) * PB * sizeof(double));
    if (!col) return CZ_ERR_MEMORY;
    void (*rows)(const float *, int64_t, int64_t, const double *, const float *, float *,
                 int64_t, int64_t, int64_t) = rows_port;
#if CZK_X86
    if (czk_isa() >= CZK_ISA_AVX2) rows = rows_avx2;
#endif
    for (int64_t img = 0; img < p->n; img++)
        for (int64_t g = 0; g < G; g++)
            for (int64_t p0 = 0; p0 < OHW; p0 += PB) {
                int64_t np = OHW - p0 < PB ? OHW - p0 : PB;
                patches_f64(x + (img * p->c + g * cg) * HW, p, cg, p0, np, col);
                rows(w->u.dense.w + g * ocg * K, ocg, K, col, bias ? bias + g * ocg : NULL,
                     y + (img * p->oc + g * ocg) * OHW, OHW, p0, np);
            }
    return CZ_OK;
}
