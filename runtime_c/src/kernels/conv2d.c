/*
 * conv2d.c -- czk_conv2d: NCHW 2-D convolution over any kernel form.
 *
 * Lowering, per image and group (weight view: rows = output channels of the group,
 * cols = c/group * kh * kw in (ci, ky, kx) order = the (oc, c/group, kh, kw) layout):
 *   - 1x1, stride 1, no padding: the image itself is the (cols x pixels) operand -> one
 *     czk_op in column layout, no im2col at all.
 *   - depthwise (group == c == oc, DENSE or AFFINE form): a direct kernel, SIMD over output
 *     width; 3x3 stride 1 copies each plane once into a zero-padded buffer and keeps the 9
 *     taps in registers. AFFINE depthwise runs WEIGHT-ONLY (dequantized weights, float
 *     activations; czk_conv2d_ref does the same): per-pixel activation quantization of a
 *     9-element patch buys nothing and costs accuracy.
 *   - TUCKER2: three convolutions through scratch: 1x1 (c -> r_in), kh x kw (r_in -> r_out,
 *     with the stride/padding/dilation) and 1x1 (r_out -> oc, with the bias). Zero padding
 *     commutes with the bias-free first 1x1, so padding the intermediate is exact.
 *   - everything else: im2col of a TILE of output pixels into scratch (tile sized so the
 *     tile is ~1 MB), then czk_op over the form. The column-major tile (cols x pixels) uses
 *     a row stride of an odd number of 64-byte lines so the dense GEMM reads it IN PLACE
 *     (no B packing); sparse kernels use it in place for their batch-AXPY. AFFINE (int8)
 *     forms with per-tensor/per-row scales on AVX2 take the same column tile (~256 KB) and
 *     czk_affine_conv_cols quantizes it per pixel straight into int16 GEMM panels; other
 *     AFFINE forms (group-wise scales, no AVX2, VNNI) build pixel-major "patches" (pixels x
 *     cols) which czk_affine_op quantizes row by row. Semantics are the same everywhere:
 *     one dynamic activation scale per output pixel (max |patch| / 127). Output is written
 *     straight into NCHW through the op's output strides.
 * Threads: inside the ops (GEMM column blocks, sparse rows); depthwise over channels.
 */
#include <stdlib.h>

#include "kint.h"
#ifdef _OPENMP
#include <omp.h>
#endif

static int64_t cdiv_floor(int64_t a, int64_t b) {
    if (b == 1) return a;   /* stride 1: no division (idiv is ~40 cycles) */
    return a >= 0 ? a / b : -((-a + b - 1) / b);
}
static int64_t cdiv_ceil(int64_t a, int64_t b) { return -cdiv_floor(-a, b); }

static cz_status check(const cz_form *w, const czk_conv_params *p) {
    if (!w || !p) return CZ_ERR_PARAM;
    if (p->n < 0 || p->c <= 0 || p->h <= 0 || p->w <= 0 || p->oc <= 0 || p->kh <= 0 ||
        p->kw <= 0 || p->group <= 0 || p->stride_h <= 0 || p->stride_w <= 0 || p->dil_h <= 0 ||
        p->dil_w <= 0 || p->pad_t < 0 || p->pad_l < 0 || p->pad_b < 0 || p->pad_r < 0)
        return CZ_ERR_PARAM;
    if (p->c % p->group || p->oc % p->group) return CZ_ERR_SHAPE;
    int64_t eh = p->h + p->pad_t + p->pad_b - p->dil_h * (p->kh - 1) - 1;
    int64_t ew = p->w + p->pad_l + p->pad_r - p->dil_w * (p->kw - 1) - 1;
    if (eh < 0 || ew < 0 || p->oh != eh / p->stride_h + 1 || p->ow != ew / p->stride_w + 1)
        return CZ_ERR_SHAPE;
    if (w->kind == CZ_FORM_TUCKER2) {
        if (p->group != 1) return CZ_ERR_UNSUPPORTED;
        const cz_form *f = w->u.tucker2.first, *k = w->u.tucker2.core, *l = w->u.tucker2.last;
        if (f->cols != p->c || l->rows != p->oc || k->rows != l->cols ||
            k->cols != f->rows * p->kh * p->kw)
            return CZ_ERR_SHAPE;
        return CZ_OK;
    }
    if (w->rows != p->oc || w->cols != p->c / p->group * p->kh * p->kw) return CZ_ERR_SHAPE;
    return CZ_OK;
}

/* column-major im2col: col[k*ldp + j] for output pixels p0 .. p0+np, k = (ci, ky, kx) */
/* (no loop -> memset/memcpy pattern replacement: the segments are a few floats long and a
 * libc call per segment cost more than the copy) */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
static void im2col_cols(const float *x, const czk_conv_params *p, int64_t cg, int64_t p0,
                        int64_t np, float *col, int64_t ldp) {
    int64_t H = p->h, W = p->w, OW = p->ow, oy0 = p0 / OW, ox0 = p0 % OW;
    for (int64_t ci = 0; ci < cg; ci++)
        for (int64_t ky = 0; ky < p->kh; ky++)
            for (int64_t kx = 0; kx < p->kw; kx++) {
                float *d = col + ((ci * p->kh + ky) * p->kw + kx) * ldp;
                const float *xc = x + ci * H * W;
                int64_t offx = kx * p->dil_w - p->pad_l;
                /* ox range with 0 <= ox*sw + offx < W */
                int64_t lo = cdiv_ceil(-offx, p->stride_w), hi = cdiv_ceil(W - offx, p->stride_w);
                if (lo < 0) lo = 0;
                if (hi > OW) hi = OW;
                int64_t j = 0, oy = oy0, ox = ox0;
                for (; j < np; oy++, ox = 0) {
                    int64_t seg = OW - ox < np - j ? OW - ox : np - j;
                    int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                    float *dd = d + j;
                    if (iy < 0 || iy >= H) {
                        if (seg > 32) memset(dd, 0, (size_t)seg * sizeof(float));
                        else for (int64_t t = 0; t < seg; t++) dd[t] = 0.f;
                    } else {
                        const float *xr = xc + iy * W + offx;
                        int64_t e = ox + seg;
                        int64_t a = ox;
                        for (; a < e && a < lo; a++) dd[a - ox] = 0.f;
                        int64_t b = e < hi ? e : hi;
                        if (p->stride_w == 1) {
                            if (b - a > 32) memcpy(dd + (a - ox), xr + a, (size_t)(b - a) * sizeof(float));
                            else {   /* short rows: 16-byte moves, no libc call */
                                int64_t t = a;
                                for (; t + 4 <= b; t += 4) memcpy(dd + (t - ox), xr + t, 16);
                                for (; t < b; t++) dd[t - ox] = xr[t];
                            }
                            a = b > a ? b : a;
                        } else {
                            for (; a < b; a++) dd[a - ox] = xr[a * p->stride_w];
                        }
                        for (; a < e; a++) dd[a - ox] = 0.f;
                    }
                    j += seg;
                }
            }
}

/* pixel-major patches: pat[j*K + k] */
static void im2col_patches(const float *x, const czk_conv_params *p, int64_t cg, int64_t p0,
                           int64_t np, float *pat) {
    int64_t H = p->h, W = p->w, K = cg * p->kh * p->kw;
    for (int64_t j = 0; j < np; j++) {
        int64_t oy = (p0 + j) / p->ow, ox = (p0 + j) % p->ow;
        float *d = pat + j * K;
        for (int64_t ci = 0; ci < cg; ci++)
            for (int64_t ky = 0; ky < p->kh; ky++) {
                int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                for (int64_t kx = 0; kx < p->kw; kx++) {
                    int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                    *d++ = (iy >= 0 && iy < H && ix >= 0 && ix < W) ? x[(ci * H + iy) * W + ix] : 0.f;
                }
            }
    }
}

/* ---- depthwise (group == c == oc; DENSE, or AFFINE through its dequantized weights) ----
 * One output vector (VW pixels of a row) accumulates all kh*kw taps in a register (taps
 * loaded unaligned from the input rows), one store per output vector. Pixels whose window
 * crosses the left/right border, strided convs and the tail go through a scalar per-pixel
 * loop with bounds checks. Taps accumulate in (ky, kx) order starting from the bias. */
static inline float dw_pixel(const float *x, const float *wk, float b, const czk_conv_params *p,
                             int64_t oy, int64_t ox) {
    float s = b;
    for (int64_t ky = 0; ky < p->kh; ky++) {
        int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
        if (iy < 0 || iy >= p->h) continue;
        for (int64_t kx = 0; kx < p->kw; kx++) {
            int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
            if (ix < 0 || ix >= p->w) continue;
            s += wk[ky * p->kw + kx] * x[iy * p->w + ix];
        }
    }
    return s;
}

#define DEF_DW_ISA(SFX, ATTR, VW)                                                             \
    typedef float dv_##SFX __attribute__((vector_size(VW * 4), aligned(4)));                  \
    /* 3x3, stride 1, dilation 1: the plane is copied once into a zero-padded buffer (pb:  \
     * h rows of Wp = pad_l + w + pad_r + VW floats, then one zero row), so every output    \
     * vector -- borders included -- is 9 unaligned loads + 9 FMAs from registers. */       \
    ATTR static void dw3_plane_##SFX(const float *x, const float *wk, float b,                \
                                     const czk_conv_params *p, float *y, float *pb) {         \
        int64_t W = p->w, OW = p->ow, H = p->h, Wp = p->pad_l + W + p->pad_r + VW;           \
        float *zr = pb + H * Wp;                                                              \
        for (int64_t iy = 0; iy < H; iy++) {                                                  \
            float *d = pb + iy * Wp;                                                          \
            for (int64_t i = 0; i < p->pad_l; i++) d[i] = 0.f;                                \
            memcpy(d + p->pad_l, x + iy * W, (size_t)W * sizeof(float));                      \
            for (int64_t i = p->pad_l + W; i < Wp; i++) d[i] = 0.f;                           \
        }                                                                                     \
        for (int64_t i = 0; i < Wp; i++) zr[i] = 0.f;                                         \
        const dv_##SFX z = (dv_##SFX){0};                                                     \
        dv_##SFX w0 = z + wk[0], w1 = z + wk[1], w2 = z + wk[2], w3 = z + wk[3],              \
                 w4 = z + wk[4], w5 = z + wk[5], w6 = z + wk[6], w7 = z + wk[7],              \
                 w8 = z + wk[8], vb = z + b;                                                  \
        for (int64_t oy = 0; oy < p->oh; oy++) {                                              \
            float *yr = y + oy * OW;                                                          \
            const float *rr[3];                                                               \
            for (int ky = 0; ky < 3; ky++) {                                                  \
                int64_t iy = oy - p->pad_t + ky;                                              \
                rr[ky] = iy < 0 || iy >= H ? zr : pb + iy * Wp;                               \
            }                                                                                 \
            const float *a = rr[0], *c = rr[1], *d = rr[2];                                   \
            for (int64_t ox = 0;;) {                                                          \
                if (ox + VW > OW) ox = OW - VW; /* last vector overlaps (idempotent) */       \
                /* three independent chains (one per kernel row), then summed */             \
                dv_##SFX e0 = vb, e1 = w3 * *(const dv_##SFX *)(c + ox),                      \
                         e2 = w6 * *(const dv_##SFX *)(d + ox);                               \
                e0 += w0 * *(const dv_##SFX *)(a + ox);                                       \
                e1 += w4 * *(const dv_##SFX *)(c + ox + 1);                                   \
                e2 += w7 * *(const dv_##SFX *)(d + ox + 1);                                   \
                e0 += w1 * *(const dv_##SFX *)(a + ox + 1);                                   \
                e1 += w5 * *(const dv_##SFX *)(c + ox + 2);                                   \
                e2 += w8 * *(const dv_##SFX *)(d + ox + 2);                                   \
                e0 += w2 * *(const dv_##SFX *)(a + ox + 2);                                   \
                *(dv_##SFX *)(yr + ox) = e0 + (e1 + e2);                                      \
                ox += VW;                                                                     \
                if (ox >= OW) break;                                                          \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    ATTR static void dw_plane_##SFX(const float *x, const float *wk, float b,                 \
                                    const czk_conv_params *p, float *y, float *pb) {          \
        int64_t W = p->w, OW = p->ow, KW = p->kw;                                             \
        int64_t lo = 0, hi = OW; /* ox range whose whole window is inside the row */          \
        for (int64_t kx = 0; kx < KW; kx++) {                                                 \
            int64_t offx = kx * p->dil_w - p->pad_l;                                          \
            int64_t l = cdiv_ceil(-offx, p->stride_w), h = cdiv_ceil(W - offx, p->stride_w);  \
            if (l > lo) lo = l;                                                               \
            if (h < hi) hi = h;                                                               \
        }                                                                                     \
        if (lo > OW) lo = OW;                                                                 \
        if (hi < lo) hi = lo;                                                                 \
        if (p->stride_w != 1) hi = lo; /* strided: scalar */                                  \
        if (pb && p->kh == 3 && KW == 3 && p->stride_h == 1 && p->stride_w == 1 &&            \
            p->dil_h == 1 && p->dil_w == 1 && OW >= VW) {                                     \
            dw3_plane_##SFX(x, wk, b, p, y, pb);                                              \
            return;                                                                           \
        }                                                                                     \
        for (int64_t oy = 0; oy < p->oh; oy++) {                                              \
            float *yr = y + oy * OW;                                                          \
            const float *rows[16];                                                            \
            const float *wr[16];                                                              \
            int nr = 0;                                                                       \
            for (int64_t ky = 0; ky < p->kh && nr < 16; ky++) {                               \
                int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;                     \
                if (iy < 0 || iy >= p->h) continue;                                           \
                rows[nr] = x + iy * W - p->pad_l;                                             \
                wr[nr++] = wk + ky * KW;                                                      \
            }                                                                                 \
            int64_t ox = 0;                                                                   \
            for (; ox < lo; ox++) yr[ox] = dw_pixel(x, wk, b, p, oy, ox);                     \
            if (p->kh <= 16 && hi - lo >= VW)                                                 \
                for (;;) {                                                                    \
                    if (ox + VW > hi) ox = hi - VW; /* last vector overlaps (idempotent) */   \
                    dv_##SFX acc = (dv_##SFX){0} + b;                                         \
                    for (int q = 0; q < nr; q++) {                                            \
                        const float *xr = rows[q] + ox;                                       \
                        for (int64_t kx = 0; kx < KW; kx++)                                   \
                            acc += wr[q][kx] * *(const dv_##SFX *)(xr + kx * p->dil_w);       \
                    }                                                                         \
                    *(dv_##SFX *)(yr + ox) = acc;                                             \
                    ox += VW;                                                                 \
                    if (ox >= hi) break;                                                      \
                }                                                                             \
            for (; ox < OW; ox++) yr[ox] = dw_pixel(x, wk, b, p, oy, ox);                     \
        }                                                                                     \
    }

DEF_DW_ISA(port, , 4)
#if CZK_X86
DEF_DW_ISA(avx2, CZK_T_AVX2, 8)
DEF_DW_ISA(avx512, CZK_T_AVX512, 16)
#endif

/* AFFINE depthwise runs weight-only: w = (q - zp) * scale, float activations (dynamic
 * activation quantization buys nothing for kh*kw MACs per output; it is also more
 * accurate). czk_conv2d_ref does the same (see dequant_dw). */
static float *dequant_dw(const cz_form *w) {
    int64_t R = w->rows, C = w->cols;
    float *d = malloc((size_t)(R * C > 0 ? R * C : 1) * sizeof(float));
    if (!d) return NULL;
    int64_t G = w->u.affine.group, ng = G > 0 ? (C + G - 1) / G : 1;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            int64_t j = G > 0 ? r * ng + c / G : w->u.affine.per_row ? r : 0;
            int32_t z = w->u.affine.zp ? w->u.affine.zp[j] : 0;
            d[r * C + c] = (float)(w->u.affine.q[r * C + c] - z) * w->u.affine.scale[j];
        }
    return d;
}

static cz_status conv_depthwise(const cz_form *w, const czk_conv_params *p, const float *x,
                                const float *bias, float *y, cz_ws *ws) {
    int64_t C = p->c, HW = p->h * p->w, OHW = p->oh * p->ow, KK = p->kh * p->kw;
    int isa = czk_isa();
    float *deq = NULL;
    const float *W = w->kind == CZ_FORM_DENSE ? w->u.dense.w : NULL;
    if (!W) {
        deq = dequant_dw(w);
        if (!deq) return CZ_ERR_MEMORY;
        W = deq;
    }
    int nt = czk_threads(ws, (double)p->n * C * OHW * KK);
    /* per-thread zero-padded plane for the 3x3 path: (h + 1) x (pad_l + w + pad_r + 16) */
    size_t pbn = (size_t)(p->h + 1) * (size_t)(p->pad_l + p->w + p->pad_r + 16);
    float *pbuf = malloc((size_t)nt * pbn * sizeof(float));
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t t = 0; t < p->n * C; t++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        float *zrow = pbuf ? pbuf + (size_t)tid * pbn : NULL;
        int64_t ch = t % C;
        const float *xp = x + t * HW;
        float *yp = y + t * OHW;
        const float *wk = W + ch * KK;
        float b = bias ? bias[ch] : 0.f;
#if CZK_X86
        if (isa == CZK_ISA_AVX512) dw_plane_avx512(xp, wk, b, p, yp, zrow);
        else if (isa == CZK_ISA_AVX2) dw_plane_avx2(xp, wk, b, p, yp, zrow);
        else
#endif
            dw_plane_port(xp, wk, b, p, yp, zrow);
    }
    (void)isa;
    free(deq);
    free(pbuf);
    return CZ_OK;
}

/* ---- tucker2 ------------------------------------------------------------------------- */
static cz_status conv_tucker2(const cz_form *w, const czk_conv_params *p, const float *x,
                              const float *bias, float *y, cz_ws *ws, int ref) {
    const cz_form *f = w->u.tucker2.first, *k = w->u.tucker2.core, *l = w->u.tucker2.last;
    int64_t HW = p->h * p->w, OHW = p->oh * p->ow, rin = f->rows, rout = l->cols;
    float *t1 = malloc((size_t)(rin * HW > 0 ? rin * HW : 1) * sizeof(float));
    float *t2 = malloc((size_t)(rout * OHW > 0 ? rout * OHW : 1) * sizeof(float));
    /* (malloc, not the arena: these live across the three stages, each of which uses and
     * releases its own child workspace) */
    cz_status st = (t1 && t2) ? CZ_OK : CZ_ERR_MEMORY;
    czk_conv_params q = *p;
    q.n = 1; q.c = rin; q.oc = rout; q.group = 1;
    for (int64_t img = 0; img < p->n && st == CZ_OK; img++) {
        const float *xi = x + img * p->c * HW;
        float *yi = y + img * p->oc * OHW;
        if (rin == 0 || rout == 0) {
            for (int64_t o = 0; o < p->oc; o++)
                for (int64_t j = 0; j < OHW; j++) yi[o * OHW + j] = bias ? bias[o] : 0.f;
            continue;
        }
        if (ref) {
            st = czk_op_ref(f, 0, rin, HW, xi, 1, HW, NULL, t1, 1, HW, 0);
            if (st == CZ_OK) st = czk_conv2d_ref(k, &q, t1, NULL, t2);
            if (st == CZ_OK) st = czk_op_ref(l, 0, p->oc, OHW, t2, 1, OHW, bias, yi, 1, OHW, 0);
        } else {
            cz_ws sub;
            czk_ws_child(&sub, ws);
            st = czk_op(f, 0, rin, HW, xi, 1, HW, NULL, t1, 1, HW, 0, &sub);
            cz_arena_free_all(&sub.arena);
            if (st == CZ_OK) st = czk_conv2d(k, &q, t1, NULL, t2, &sub);
            cz_arena_free_all(&sub.arena);
            if (st == CZ_OK) st = czk_op(l, 0, p->oc, OHW, t2, 1, OHW, bias, yi, 1, OHW, 0, &sub);
            cz_arena_free_all(&sub.arena);
        }
    }
    free(t1);
    free(t2);
    return st;
}

cz_status czk_conv2d(const cz_form *w, const czk_conv_params *p, const float *x,
                     const float *bias, float *y, cz_ws *ws) {
    cz_status st = check(w, p);
    if (st != CZ_OK) return st;
    if (!ws || (p->n > 0 && (!x || !y))) return CZ_ERR_PARAM;
    if (w->kind == CZ_FORM_TUCKER2) return conv_tucker2(w, p, x, bias, y, ws, 0);
    int64_t G = p->group, cg = p->c / G, ocg = p->oc / G;
    int64_t HW = p->h * p->w, OHW = p->oh * p->ow, K = w->cols;
    if (G == p->c && G == p->oc && (w->kind == CZ_FORM_DENSE || w->kind == CZ_FORM_AFFINE))
        return conv_depthwise(w, p, x, bias, y, ws);
    int pointwise = p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                    p->pad_t == 0 && p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0;
    int patches = w->kind == CZ_FORM_AFFINE;
    /* int8: the exact AVX2 path quantizes im2col COLUMNS per pixel (one plan per group) */
    czk_i8conv **i8 = NULL;
    if (patches) {
        i8 = czk_scratch(ws, (size_t)G * sizeof *i8);
        if (!i8) return CZ_ERR_MEMORY;
        for (int64_t g = 0; g < G; g++) {
            i8[g] = czk_affine_conv_begin(w, g * ocg, (g + 1) * ocg, ws);
            if (!i8[g]) { i8 = NULL; break; }
        }
        if (i8) { patches = 0; pointwise = 0; }
    }
    /* output-pixel tile: the im2col tile is at most ~1 MB (and >= 16 pixels); the int8
     * column path reads its tile twice, so ~256 KB (L2) */
    int64_t PT = (i8 ? 64 * 1024 : 256 * 1024) / (K > 0 ? K : 1);
    PT = PT / 16 * 16;
    if (PT < 16) PT = 16;
    if (PT > OHW) PT = OHW;
    int64_t ldp = (PT + 15) / 16 * 16;
    if (!i8 && !patches && (ldp / 16) % 2 == 0) ldp += 16;   /* odd # of lines: GEMM reads in place */
    float *buf = NULL;
    if (!pointwise) {
        buf = czk_scratch(ws, (size_t)K * ldp * sizeof(float));
        if (!buf) return CZ_ERR_MEMORY;
    }
    cz_ws sub;
    czk_ws_child(&sub, ws);
    for (int64_t img = 0; img < p->n && st == CZ_OK; img++)
        for (int64_t g = 0; g < G && st == CZ_OK; g++) {
            const float *xg = x + (img * p->c + g * cg) * HW;
            float *yg = y + (img * p->oc + g * ocg) * OHW;
            const float *bg = bias ? bias + g * ocg : NULL;
            if (pointwise) {
                st = czk_op(w, g * ocg, (g + 1) * ocg, HW, xg, 1, HW, bg, yg, 1, OHW, 0, &sub);
                cz_arena_free_all(&sub.arena);
                continue;
            }
            for (int64_t p0 = 0; p0 < OHW && st == CZ_OK; p0 += PT) {
                int64_t np = OHW - p0 < PT ? OHW - p0 : PT;
                if (patches) {
                    im2col_patches(xg, p, cg, p0, np, buf);
                    st = czk_op(w, g * ocg, (g + 1) * ocg, np, buf, K, 1, bg, yg + p0, 1, OHW, 0, &sub);
                } else if (i8) {
                    im2col_cols(xg, p, cg, p0, np, buf, ldp);
                    st = czk_affine_conv_cols(i8[g], buf, ldp, np, bg, yg + p0, OHW, &sub);
                } else {
                    im2col_cols(xg, p, cg, p0, np, buf, ldp);
                    st = czk_op(w, g * ocg, (g + 1) * ocg, np, buf, 1, ldp, bg, yg + p0, 1, OHW, 0, &sub);
                }
                cz_arena_free_all(&sub.arena);
            }
        }
    return st;
}

/* Reference: per output pixel, gather its patch and run the reference op on it. */
cz_status czk_conv2d_ref(const cz_form *w, const czk_conv_params *p, const float *x,
                         const float *bias, float *y) {
    cz_status st = check(w, p);
    if (st != CZ_OK) return st;
    if (w->kind == CZ_FORM_TUCKER2) return conv_tucker2(w, p, x, bias, y, NULL, 1);
    int64_t G = p->group, cg = p->c / G, ocg = p->oc / G, K = w->cols;
    int64_t HW = p->h * p->w, OHW = p->oh * p->ow;
    cz_form dq;
    float *deq = NULL;
    if (G == p->c && G == p->oc && w->kind == CZ_FORM_AFFINE) {   /* weight-only depthwise */
        deq = dequant_dw(w);
        if (!deq) return CZ_ERR_MEMORY;
        dq = *w;
        dq.kind = CZ_FORM_DENSE;
        dq.u.dense.w = deq;
        w = &dq;
    }
    float *pat = malloc((size_t)(K > 0 ? K : 1) * sizeof(float));
    if (!pat) return CZ_ERR_MEMORY;
    for (int64_t img = 0; img < p->n && st == CZ_OK; img++)
        for (int64_t g = 0; g < G && st == CZ_OK; g++)
            for (int64_t j = 0; j < OHW && st == CZ_OK; j++) {
                im2col_patches(x + (img * p->c + g * cg) * HW, p, cg, j, 1, pat);
                st = czk_op_ref(w, g * ocg, (g + 1) * ocg, 1, pat, K, 1, bias ? bias + g * ocg : NULL,
                                y + (img * p->oc + g * ocg) * OHW + j, 1, OHW, 0);
            }
    free(pat);
    free(deq);
    return st;
}
