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
 *   - few input channels per group (<= 3: first layers, LeNet-5 conv1), stride 1, DENSE /
 *     RELIDX / CODEBOOK: a direct conv over zero-padded copies of the input planes, each
 *     output channel accumulating its nonzero taps (conv_direct). im2col would give K =
 *     kh*kw*c/group, too short to amortize GEMM tiles.
 *   - AVX2, stride_w 1, >= 4 channels per group ("implicit im2col"): no im2col matrix at
 *     all. Panels of 16 (32, 64 for RELIDX) output pixels are packed straight from the image, k block
 *     by k block, into an L1-sized buffer (conv_pack_panel_avx2: a per-panel program of
 *     masked loads, replayed for every input channel) and consumed at once by:
 *       DENSE  -> czk_gemm_f32_implicit (6x16 FMA micro-kernel, bias fused in the store);
 *       RELIDX -> the sparse panel kernel (stored values x panel rows, u16 column cache);
 *       AFFINE (per-tensor / per-row scales) -> czk_affine_conv_qpacked: the per-pixel
 *         activation scale max |patch| / 127 comes from one pass over the image (window
 *         max of the channel-wise max |x|); the weight columns are taken tap-major so an
 *         int16 pair is two channels of one tap, and the panels are quantized per pixel
 *         straight from the image into int16 GEMM panels (no float panel) --
 *         bit-identical to the im2col-tile path below (exact int32 sums in any k order).
 *     ~1.2x (dense, 64->64 3x3 56x56) to ~1.8x (LeNet-5 conv2) faster than that path.
 *   - everything else (strided rows, other forms, no AVX2, czk_set_conv_legacy(1)): im2col
 *     of a TILE of output pixels into scratch (tile sized so the
 *     tile is ~1 MB), then czk_op over the form. The column-major tile (cols x pixels) uses
 *     a row stride of an odd number of 64-byte lines so the dense GEMM reads it IN PLACE
 *     (no B packing); sparse kernels use it in place for their batch-AXPY. AFFINE (int8)
 *     forms with per-tensor/per-row scales on AVX2 take the same column tile (~256 KB) and
 *     czk_affine_conv_cols quantizes it per pixel straight into int16 GEMM panels; other
 *     AFFINE forms (group-wise scales, no AVX2, VNNI) build pixel-major "patches" (pixels x
 *     cols) which czk_affine_op quantizes row by row. Semantics are the same everywhere:
 *     one dynamic activation scale per output pixel (max |patch| / 127). Output is written
 *     straight into NCHW through the op's output strides.
 * Threads: inside the ops (GEMM column blocks, sparse rows), over pixel panels on the
 * implicit paths; depthwise over channels.
 */
#include <stdlib.h>

#include "kint.h"
#if CZK_X86
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* test / bench hook (kint.h): 1 = only the im2col-tile lowering below (the paths it
 * replaced), for comparisons; process-wide */
static int g_conv_legacy = 0;
void czk_set_conv_legacy(int on) { __atomic_store_n(&g_conv_legacy, on, __ATOMIC_RELAXED); }
static int conv_legacy(void) { return __atomic_load_n(&g_conv_legacy, __ATOMIC_RELAXED); }

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

/* short copies / zero fills of a few floats: 16-byte moves, no libc call, no loop the
 * compiler turns back into memcpy / memset */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
static inline void copy_short(float *d, const float *s, int64_t n) {
    int64_t t = 0;
    for (; t + 8 <= n; t += 8) {
        memcpy(d + t, s + t, 16);
        memcpy(d + t + 4, s + t + 4, 16);
    }
    if (t + 4 <= n) { memcpy(d + t, s + t, 16); t += 4; }
    for (; t < n; t++) d[t] = s[t];
}
__attribute__((optimize("no-tree-loop-distribute-patterns")))
static inline void zero_short(float *d, int64_t n) {
    static const float z[4] = {0.f, 0.f, 0.f, 0.f};
    int64_t t = 0;
    for (; t + 4 <= n; t += 4) memcpy(d + t, z, 16);
    for (; t < n; t++) d[t] = 0.f;
}

/* implicit im2col for czk_gemm_f32_implicit (and the sparse / int8 panel paths), stride_w
 * 1: rows k0 .. k0+kc-1 of the panel of output pixels j0 .. j0+nr of one image and group,
 * pan[(k-k0)*NR + jj], k = (ci, ky, kx), zero past nr. The panel's pixels split into runs
 * along output rows; each run of a kernel row is one contiguous piece of an input row,
 * clipped at the borders. This scalar version is the fallback of the AVX2 one below. */
typedef struct {
    const float *x;               /* the image's first channel of the group */
    const czk_conv_params *p;
    int64_t cg;
} conv_pack_ctx;

#if CZK_X86   /* (only the AVX2 packs fall back to it) */
__attribute__((optimize("no-tree-loop-distribute-patterns")))
static void conv_pack_panel(const void *vctx, void *st, int64_t j0, int nr, int64_t k0,
                            int64_t kc, int NR, float *pan) {
    (void)st;
    const conv_pack_ctx *c = vctx;
    const czk_conv_params *p = c->p;
    int64_t H = p->h, W = p->w, OW = p->ow, KW = p->kw, HW = H * W, KHW = p->kh * KW;
    struct { int64_t iy0, ix0, len, jj; } seg[64];   /* (nr <= 64) */
    int ns = 0;
    for (int64_t jj = 0; jj < nr;) {
        int64_t j = j0 + jj, oy = j / OW, ox = j - oy * OW;
        int64_t len = OW - ox < nr - jj ? OW - ox : nr - jj;
        seg[ns].iy0 = oy * p->stride_h - p->pad_t;
        seg[ns].ix0 = ox - p->pad_l;
        seg[ns].len = len;
        seg[ns].jj = jj;
        ns++;
        jj += len;
    }
    for (int64_t k = k0; k < k0 + kc; k++) {
        int64_t ci = k / KHW, r = k - ci * KHW, ky = r / KW, kx = r - ky * KW;
        const float *xc = c->x + ci * HW;
        float *row = pan + (k - k0) * NR;
        for (int q = 0; q < ns; q++) {
            int64_t iy = seg[q].iy0 + ky * p->dil_h, len = seg[q].len;
            float *d = row + seg[q].jj;
            if (iy < 0 || iy >= H) {
                zero_short(d, len);
                continue;
            }
            const float *xr = xc + iy * W;
            int64_t ix0 = seg[q].ix0 + kx * p->dil_w;
            int64_t a = ix0 < 0 ? -ix0 : 0, b = W - ix0;   /* in-row part [a, b) of the run */
            if (a > len) a = len;
            if (b > len) b = len;
            if (b < a) b = a;
            if (a) zero_short(d, a);
            copy_short(d + a, xr + ix0 + a, b - a);
            if (b < len) zero_short(d + b, len - b);
        }
        if (nr < NR) zero_short(row + nr, NR - nr);
    }
}
/* AVX2 panel pack, stride_w 1. A panel row (NR columns) is written as NR/8 vectors; lane
 * group g (columns 8g .. 8g+7) is the bitwise OR of at most two masked loads, one per run
 * of the panel's pixels along an output row that touches the group. Masked-off lanes --
 * other runs, columns past nr, input columns outside [0, W) (padding), input rows outside
 * [0, H) -- are not read and load as +0.0 bits, so the OR is exact. The load program
 * (offsets within a channel + masks) depends on (ky, kx, g) only: it is built once per
 * call and the copy loops over the channels innermost, branch-free. Runs touching a group
 * more than twice (ow < 8 with short runs), k blocks not on channel boundaries and NR not a
 * multiple of 8 fall back to the scalar pack. */
typedef struct {
    int64_t off0, off1;           /* offsets within a channel of the lanes' first element */
    __m256i m0, m1;               /* lane masks (m1 all zero: one source) */
    int kind;                     /* 0: all zero, 1: one source, all lanes (plain load),
                                     2: masked loads */
} pack_lane;

/* the load program of the panel of pixels j0 .. j0+nr-1 (ng lane groups of 8): prog[r *
 * ng + g] for every tap r = ky * kw + kx; 0 when some lane group needs more than two
 * sources (the scalar pack then) */
CZK_T_AVX2 static int pack_prog(const conv_pack_ctx *c, int64_t j0, int nr, int ng,
                                pack_lane *prog) {
    const czk_conv_params *p = c->p;
    int64_t H = p->h, W = p->w, OW = p->ow, KW = p->kw, KHW = p->kh * KW;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    int nsrc[64 * 4];   /* (KHW * ng <= 256) */
    for (int i = 0; i < KHW * ng; i++) {
        prog[i].off0 = prog[i].off1 = 0;
        prog[i].m0 = prog[i].m1 = _mm256_setzero_si256();
        prog[i].kind = 0;
        nsrc[i] = 0;
    }
    /* runs of the panel along output rows */
    for (int64_t jj = 0; jj < nr;) {
        int64_t j = j0 + jj, oy = j / OW, ox = j - oy * OW;
        int64_t l = OW - ox < nr - jj ? OW - ox : nr - jj;
        int64_t iy0 = oy * p->stride_h - p->pad_t, ix0 = ox - p->pad_l;
        for (int64_t r = 0; r < KHW; r++) {
            int64_t ky = r / KW, kx = r - ky * KW;
            int64_t iy = iy0 + ky * p->dil_h;
            if (iy < 0 || iy >= H) continue;
            int64_t ix = ix0 + kx * p->dil_w;   /* input column of panel column jj */
            /* panel columns t of this run with 0 <= ix + t - jj < W */
            int64_t a = jj > jj - ix ? jj : jj - ix, b = jj + l < jj - ix + W ? jj + l : jj - ix + W;
            for (int64_t g = a / 8; a < b && g <= (b - 1) / 8; g++) {
                int64_t ga = 8 * g, ta = a > ga ? a : ga, tb = b < ga + 8 ? b : ga + 8;
                pack_lane *L = &prog[r * ng + g];
                int n = nsrc[r * ng + g]++;
                if (n >= 2) return 0;
                int64_t off = iy * W + ix + ga - jj;
                __m256i lv = _mm256_add_epi32(lane, _mm256_set1_epi32((int)ga));
                __m256i m = _mm256_and_si256(_mm256_cmpgt_epi32(lv, _mm256_set1_epi32((int)ta - 1)),
                                             _mm256_cmpgt_epi32(_mm256_set1_epi32((int)tb), lv));
                if (n == 0) {
                    L->off0 = L->off1 = off;
                    L->m0 = m;
                    L->kind = ta == ga && tb == ga + 8 ? 1 : 2;
                } else {
                    L->off1 = off;
                    L->m1 = m;
                    L->kind = 2;
                }
            }
        }
        jj += l;
    }
    return 1;
}

CZK_T_AVX2 static void conv_pack_panel_avx2(const void *vctx, void *st, int64_t j0, int nr,
                                            int64_t k0, int64_t kc, int NR, float *pan) {
    const conv_pack_ctx *c = vctx;
    const czk_conv_params *p = c->p;
    int64_t HW = p->h * p->w;
    int64_t KHW = p->kh * p->kw, K = c->cg * KHW;
    int ng = NR / 8;
    /* state: the program of this panel (built at k0 == 0), then its validity flag */
    pack_lane *prog = st;
    int *ok = (int *)(prog + 64 * 4);
    _Static_assert(sizeof(pack_lane) * 64 * 4 + sizeof(int) <= CZK_PACK_STATE, "pack state");
    if (NR % 8 || KHW * ng > 64 * 4 || k0 % KHW || (kc % KHW && k0 + kc != K)) {
        conv_pack_panel(vctx, st, j0, nr, k0, kc, NR, pan);
        return;
    }
    if (k0 == 0) *ok = pack_prog(c, j0, nr, ng, prog);
    if (!*ok) {
        conv_pack_panel(vctx, st, j0, nr, k0, kc, NR, pan);
        return;
    }
    int64_t ci0 = k0 / KHW, nci = (kc + KHW - 1) / KHW;
    const float *x0 = c->x + ci0 * HW;
    int64_t rs = KHW * NR;   /* panel floats per channel */
    for (int64_t r = 0; r < KHW; r++)
        for (int g = 0; g < ng; g++) {
            const pack_lane *L = &prog[r * ng + g];
            float *d = pan + r * NR + 8 * g;
            if (L->kind == 0) {
                for (int64_t i = 0; i < nci; i++) _mm256_storeu_ps(d + i * rs, _mm256_setzero_ps());
            } else if (L->kind == 1) {
                const float *sp = x0 + L->off0;
                for (int64_t i = 0; i < nci; i++) _mm256_storeu_ps(d + i * rs, _mm256_loadu_ps(sp + i * HW));
            } else {
                /* (the offsets may point before the channel or past it: those lanes are
                 * masked, never read) */
                const float *s0 = x0 + L->off0, *s1 = x0 + L->off1;
                __m256i m0 = L->m0, m1 = L->m1;
                for (int64_t i = 0; i < nci; i++) {
                    __m256 v = _mm256_or_ps(_mm256_maskload_ps(s0 + i * HW, m0),
                                            _mm256_maskload_ps(s1 + i * HW, m1));
                    _mm256_storeu_ps(d + i * rs, v);
                }
            }
        }
}

/* ---- int8: quantized panels straight from the image (czk_affine_conv_qpacked's qpack) --
 * The int8 GEMM takes k in tap-major order (k' = t * cgp + ci, czk_affine_conv_begin_
 * tapmajor), so an int16 pair of a 16-pixel panel is channels (2cp, 2cp + 1) of one tap t:
 * the same lane program (offsets within a channel, masks) for both, one plane apart. Each
 * lane vector is loaded from the image, multiplied by the pixels' 127 / max |patch| and
 * rounded (exactly quant_block_i8's ops on exactly the values the float panel held, so the
 * quantized values are identical), and the pair is stored -- no float panel is written
 * and read back (that copy + requantization pass was ~20% of a 64->64 3x3 int8 conv). */
CZK_T_AVX2 static inline __m256 lane_load(const pack_lane *L, const float *x0) {
    if (L->kind == 1) return _mm256_loadu_ps(x0 + L->off0);
    if (L->kind == 0) return _mm256_setzero_ps();
    return _mm256_or_ps(_mm256_maskload_ps(x0 + L->off0, L->m0),
                        _mm256_maskload_ps(x0 + L->off1, L->m1));
}

/* x * iv rounded to int32 (round half to even); not plain: NaN -> 0 and clamp +-127 */
#define Q8V(x, iv, plain)                                                                    \
    ({                                                                                        \
        __m256 t_ = _mm256_mul_ps((x), (iv));                                                 \
        (plain) ? _mm256_cvtps_epi32(t_)                                                      \
                : _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(_mm256_and_ps(          \
                                       t_, _mm256_cmp_ps(t_, t_, _CMP_ORD_Q))),               \
                                       _mm256_set1_epi32(-127)), _mm256_set1_epi32(127));      \
    })
/* quantize 8 pixels of two k' rows (a, b), store the int16 pairs at d, add both into s:
 * pair (a, b) per pixel = a's low 16 bits (|a| <= 127), b shifted into the high half */
#define Q8PAIR(a, b, iv, plain, d, s) Q8PAIRS(a, b, iv, plain, d, s, 1)
#define Q8PAIRS(a, b, iv, plain, d, s, SUM)                                                  \
    do {                                                                                      \
        __m256i qa_ = Q8V(a, iv, plain), qb_ = Q8V(b, iv, plain);                             \
        if (SUM) s = _mm256_add_epi32(s, _mm256_add_epi32(qa_, qb_));                         \
        _mm256_store_si256((__m256i *)(d), _mm256_blend_epi16(qa_, _mm256_slli_epi32(qb_, 16), 0xAA)); \
    } while (0)

/* one (tap, lane group) row of the panel over all channel pairs: d += 32 int16 per pair;
 * PLAIN and the lane kind are compile-time in each copy (the loop is the hot part) */
#define DEF_QROW(PLAIN, SUM)                                                                  \
    CZK_T_AVX2 static inline __attribute__((always_inline)) __m256i qrow_##PLAIN##SUM(       \
        const pack_lane *L, const float *x, int64_t HW, int64_t cg, __m256 iv, int16_t *d,    \
        __m256i s) {                                                                          \
        int64_t cp = 0;                                                                       \
        const float *xa = x;                                                                  \
        if (L->kind == 1) {                                                                   \
            const float *xs = x + L->off0;                                                    \
            _Pragma("GCC unroll 2")                                                           \
            for (; 2 * cp + 1 < cg; cp++, xs += 2 * HW, d += 32) {                            \
                __m256 a = _mm256_loadu_ps(xs), b = _mm256_loadu_ps(xs + HW);                 \
                Q8PAIRS(a, b, iv, PLAIN, d, s, SUM);                                          \
            }                                                                                 \
        } else if (L->kind == 2) {                                                            \
            const float *s0 = x + L->off0, *s1 = x + L->off1;                                 \
            __m256i m0 = L->m0, m1 = L->m1;                                                   \
            for (; 2 * cp + 1 < cg; cp++, s0 += 2 * HW, s1 += 2 * HW, d += 32) {              \
                __m256 a = _mm256_or_ps(_mm256_maskload_ps(s0, m0), _mm256_maskload_ps(s1, m1)); \
                __m256 b = _mm256_or_ps(_mm256_maskload_ps(s0 + HW, m0),                      \
                                        _mm256_maskload_ps(s1 + HW, m1));                     \
                Q8PAIRS(a, b, iv, PLAIN, d, s, SUM);                                          \
            }                                                                                 \
        } else {                                                                              \
            for (; 2 * cp + 1 < cg; cp++, d += 32)                                            \
                _mm256_store_si256((__m256i *)d, _mm256_setzero_si256());                     \
        }                                                                                     \
        if (cg & 1) { /* the zero column of an odd cg */                                      \
            xa = x + 2 * cp * HW;                                                             \
            __m256 a = lane_load(L, xa), b = _mm256_setzero_ps();                             \
            Q8PAIR(a, b, iv, PLAIN, d, s);                                                    \
        }                                                                                     \
        return s;                                                                             \
    }
DEF_QROW(0, 0)
DEF_QROW(0, 1)
DEF_QROW(1, 0)
DEF_QROW(1, 1)

/* scalar gather of one tap of one channel for the panel (zero past nr / outside the image) */
static void gather_tap(const conv_pack_ctx *c, int64_t j0, int nr, int64_t t, int64_t ci,
                       float *d) {
    const czk_conv_params *p = c->p;
    int64_t ky = t / p->kw, kx = t - ky * p->kw;
    for (int jj = 0; jj < 16; jj++) {
        float v = 0.f;
        if (jj < nr && ci < c->cg) {
            int64_t j = j0 + jj, oy = j / p->ow, ox = j - oy * p->ow;
            int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
            int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
            if (iy >= 0 && iy < p->h && ix >= 0 && ix < p->w)
                v = c->x[(ci * p->h + iy) * p->w + ix];
        }
        d[jj] = v;
    }
}

/* Lane programs of panels whose windows stay inside the image rows repeat every few
 * panels up to a row shift (ow = 56: every 7 panels): st keeps QP_SLOTS of them keyed by
 * the panel's first column, width and row span, and a hit only shifts the offsets (building
 * a program was ~2% of a 64->64 3x3 conv). st layout: QP_SLOTS keys (zero = empty: the
 * qpack contract zeroes the first CZK_QPACK_KEYS bytes before a thread's first panel of a
 * call), then the slots' programs (kernels up to 3x3: 18 lanes) and one more slot for an
 * uncached program -- or, for larger kernels (never cached), one program of <= 256 lanes. */
typedef struct { int64_t oy0, ox0, nr, span; } qp_key;   /* nr 0: empty slot */
#define QP_SLOTS 8
#define QP_SLOT_LANES 18
_Static_assert(QP_SLOTS * sizeof(qp_key) <= CZK_QPACK_KEYS, "qpack keys");
_Static_assert((QP_SLOTS + 1) * QP_SLOT_LANES <= 64 * 4, "qpack slots");
_Static_assert(CZK_QPACK_KEYS + sizeof(pack_lane) * 64 * 4 <= CZK_PACK_STATE, "qpack state");

CZK_T_AVX2 static void conv_qpack_panel_avx2(const void *vctx, void *st, int64_t j0, int nr,
                                             const float *inv, int plain, int16_t *bp,
                                             int32_t *xs) {
    const conv_pack_ctx *c = vctx;
    const czk_conv_params *p = c->p;
    int64_t HW = p->h * p->w, KHW = p->kh * p->kw, cg = c->cg, ncp = (cg + 1) / 2;
    qp_key *keys = st;
    pack_lane *slots = (pack_lane *)((char *)st + CZK_QPACK_KEYS), *prog;
    int64_t oy0 = j0 / p->ow, ox0 = j0 - oy0 * p->ow, oy1 = (j0 + nr - 1) / p->ow;
    int ok;
    if (KHW * 2 <= QP_SLOT_LANES && oy0 * p->stride_h - p->pad_t >= 0 &&
        oy1 * p->stride_h - p->pad_t + (p->kh - 1) * p->dil_h < p->h) {
        int64_t si = (ox0 ^ (ox0 >> 3)) % QP_SLOTS;   /* (panel starts are often 8k apart) */
        qp_key *k = &keys[si];
        prog = slots + si * QP_SLOT_LANES;
        if (k->nr == nr && k->ox0 == ox0 && k->span == oy1 - oy0) {
            int64_t sh = (oy0 - k->oy0) * p->stride_h * p->w;
            for (int64_t i = 0; i < KHW * 2; i++) { prog[i].off0 += sh; prog[i].off1 += sh; }
            k->oy0 = oy0;
            ok = 1;
        } else {
            ok = pack_prog(c, j0, nr, 2, prog);
            k->nr = ok ? nr : 0; k->ox0 = ox0; k->span = oy1 - oy0; k->oy0 = oy0;
        }
    } else {
        prog = KHW * 2 <= QP_SLOT_LANES ? slots + QP_SLOTS * QP_SLOT_LANES : slots;
        ok = KHW * 2 <= 64 * 4 && pack_prog(c, j0, nr, 2, prog);
    }
    const __m256 iv[2] = {_mm256_loadu_ps(inv), _mm256_loadu_ps(inv + 8)};
    __m256i sum[2] = {_mm256_setzero_si256(), _mm256_setzero_si256()};
    if (ok) {
        /* taps outer, channel pairs inner (the lane program is per tap; the loads of a
         * row are independent, which keeps many L2 fetches in flight) */
        for (int64_t t = 0; t < KHW; t++)
            for (int g = 0; g < 2; g++) {
                int16_t *d = bp + t * ncp * 32 + g * 16;
                const pack_lane *L = &prog[t * 2 + g];
                /* (the sums are only needed with zero points) */
                if (plain) sum[g] = xs ? qrow_11(L, c->x, HW, cg, iv[g], d, sum[g])
                                       : qrow_10(L, c->x, HW, cg, iv[g], d, sum[g]);
                else sum[g] = xs ? qrow_01(L, c->x, HW, cg, iv[g], d, sum[g])
                                 : qrow_00(L, c->x, HW, cg, iv[g], d, sum[g]);
            }
    } else {   /* (lane groups touched by > 2 runs: ow < 8 and the like) */
        float a[16], b[16];
        for (int64_t t = 0; t < KHW; t++)
            for (int64_t cp = 0; cp < ncp; cp++) {
                gather_tap(c, j0, nr, t, 2 * cp, a);
                gather_tap(c, j0, nr, t, 2 * cp + 1, b);
                int16_t *d = bp + (t * ncp + cp) * 32;
                for (int g = 0; g < 2; g++) {
                    __m256 va = _mm256_loadu_ps(a + 8 * g), vb = _mm256_loadu_ps(b + 8 * g);
                    if (plain) Q8PAIR(va, vb, iv[g], 1, d + 16 * g, sum[g]);
                    else Q8PAIR(va, vb, iv[g], 0, d + 16 * g, sum[g]);
                }
            }
    }
    if (xs) {
        _mm256_storeu_si256((__m256i *)xs, sum[0]);
        _mm256_storeu_si256((__m256i *)(xs + 8), sum[1]);
    }
}
#endif

/* ---- RELIDX over packed panels (AVX2) --------------------------------------------------
 * The sparse rows of the weight (u16 column cache) against the same implicit-im2col panels
 * as the dense GEMM (16, 32 or 64 pixels, K blocks of whole channels): per row, every
 * stored value adds value * panel row col[v] into NV = 2 / 4 / 8 ymm accumulators; 4 / 2 /
 * 1 values in flight (8 accumulators) hide the FMA latency. Per value: its column, its
 * index / value, NV panel loads, NV FMAs -- a 65%-pruned LeNet-5 conv2 runs ~2x faster
 * than the dense GEMM. */
#if CZK_X86
/* NV vectors per panel row (NR = 8 NV); UNR values in flight (NV * UNR accumulators) */
#define DEF_SPK(NV, UNR, CB)                                                                  \
    CZK_T_AVX2 static void spk_##NV##_##CB(const cz_form *w, int64_t M, const int64_t *bnd,   \
                                          int64_t nb1, int64_t b, int64_t k0,                 \
                                          const float *pan, float *y, int64_t ys_r, int nr,   \
                                          const float *bias, int load) {                      \
        const uint16_t *col = w->relidx_col16;                                                \
        const uint8_t *idx = w->u.relidx.idx;                                                 \
        const float *lut = w->u.relidx.lut, *vals = w->u.relidx.vals;                         \
        const float *pb = pan - k0 * (8 * NV);                                                \
        for (int64_t r = 0; r < M; r++) {                                                     \
            __m256 a[UNR][NV];                                                                \
            _Pragma("GCC unroll 8") for (int u = 0; u < UNR; u++)                             \
                _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++) a[u][j] = _mm256_setzero_ps(); \
            int64_t v = bnd[r * nb1 + b], e = bnd[r * nb1 + b + 1];                           \
            for (; v + UNR <= e; v += UNR) {                                                  \
                _Pragma("GCC unroll 8") for (int u = 0; u < UNR; u++) {                       \
                    __m256 wv = _mm256_broadcast_ss(CB ? &lut[idx[v + u]] : &vals[v + u]);    \
                    const float *q = pb + (int64_t)col[v + u] * (8 * NV);                     \
                    _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++)                      \
                        a[u][j] = _mm256_fmadd_ps(wv, _mm256_load_ps(q + 8 * j), a[u][j]);    \
                }                                                                             \
            }                                                                                 \
            for (; v < e; v++) {                                                              \
                __m256 wv = _mm256_broadcast_ss(CB ? &lut[idx[v]] : &vals[v]);                \
                const float *q = pb + (int64_t)col[v] * (8 * NV);                             \
                _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++)                          \
                    a[0][j] = _mm256_fmadd_ps(wv, _mm256_load_ps(q + 8 * j), a[0][j]);        \
            }                                                                                 \
            float *o = y + r * ys_r;                                                          \
            float t[8 * NV];                                                                  \
            _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++) {                            \
                __m256 sv = a[0][j];                                                          \
                _Pragma("GCC unroll 8") for (int u = 1; u < UNR; u++)                         \
                    sv = _mm256_add_ps(sv, a[u][j]);                                          \
                if (bias) sv = _mm256_add_ps(sv, _mm256_set1_ps(bias[r]));                    \
                if (nr == 8 * NV) {                                                           \
                    if (load) sv = _mm256_add_ps(sv, _mm256_loadu_ps(o + 8 * j));             \
                    _mm256_storeu_ps(o + 8 * j, sv);                                          \
                } else {                                                                      \
                    _mm256_storeu_ps(t + 8 * j, sv);                                          \
                }                                                                             \
            }                                                                                 \
            if (nr != 8 * NV)                                                                 \
                for (int jj = 0; jj < nr; jj++) o[jj] = load ? o[jj] + t[jj] : t[jj];         \
        }                                                                                     \
    }
DEF_SPK(2, 4, 0)
DEF_SPK(2, 4, 1)
DEF_SPK(4, 2, 0)
DEF_SPK(4, 2, 1)
DEF_SPK(8, 1, 0)
DEF_SPK(8, 1, 1)
typedef void (*spk_fn)(const cz_form *, int64_t, const int64_t *, int64_t, int64_t, int64_t,
                       const float *, float *, int64_t, int, const float *, int);

/* the zero-padded copy of cm patch_amax_avx2 takes the window max over: rows / columns
 * covering every window (padding contributes 0, as a skipped tap), + 8 columns of slack for
 * the last 8-output vector of a row */
static void amax_pad_dims(const czk_conv_params *p, int64_t *ph, int64_t *pw) {
    int64_t rh = (p->oh - 1) * p->stride_h + (p->kh - 1) * p->dil_h + 1;
    int64_t rw = (p->ow - 1) * p->stride_w + (p->kw - 1) * p->dil_w + 1;
    *ph = p->pad_t + p->h > rh ? p->pad_t + p->h : rh;
    *pw = (p->pad_l + p->w > rw ? p->pad_l + p->w : rw) + 8;
}

/* Per output pixel, max |x| over its patch (NaN ignored; padding contributes 0): the same
 * value the int8 paths take as the pixel's activation scale. max over (channel, window)
 * = window max of the channel-wise max |x|, so one pass over the image (cm: h*w scratch)
 * and one over the output. */
CZK_T_AVX2 static int patch_amax_avx2(const float *x, const czk_conv_params *p, int64_t cg,
                                      float *cm, float *pc, float *am) {
    int64_t HW = p->h * p->w, i = 0, HW8 = HW / 8 * 8;
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 nan = _mm256_setzero_ps();
    /* channels outer over blocks of 2048 pixels (8 KB of cm, in L1): each channel plane is
     * read as one sequential stream (channel-innermost reads cg strided streams at once);
     * the max does not depend on the order */
    for (int64_t b0 = 0; b0 < HW8; b0 += 2048) {
        int64_t b1 = b0 + 2048 < HW8 ? b0 + 2048 : HW8;
        for (int64_t ci = 0; ci < cg; ci++) {
            const float *xc = x + ci * HW;
            for (i = b0; i < b1; i += 8) {   /* max(a, m): m when a is NaN */
                __m256 v = _mm256_loadu_ps(xc + i);
                __m256 m = ci ? _mm256_loadu_ps(cm + i) : _mm256_setzero_ps();
                nan = _mm256_or_ps(nan, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
                _mm256_storeu_ps(cm + i, _mm256_max_ps(_mm256_and_ps(v, absm), m));
            }
        }
    }
    i = HW8;
    int has_nan = _mm256_movemask_ps(nan) != 0;
    for (; i < HW; i++) {
        float m = 0.f;
        for (int64_t ci = 0; ci < cg; ci++) {
            float a = x[ci * HW + i];
            has_nan |= a != a;
            a = a < 0 ? -a : a;
            m = a > m ? a : m;
        }
        cm[i] = m;
    }
    /* window max (stride_w 1, the int8 panel path's case): over a zero-padded copy of cm,
     * 8 outputs of a row at a time (cm >= 0 and NaN-free, so max_ps = the scalar max) */
    int64_t PH, PW;
    amax_pad_dims(p, &PH, &PW);
    memset(pc, 0, (size_t)(PH * PW) * sizeof(float));
    for (int64_t iy = 0; iy < p->h; iy++)
        memcpy(pc + (iy + p->pad_t) * PW + p->pad_l, cm + iy * p->w, (size_t)p->w * sizeof(float));
    for (int64_t oy = 0; oy < p->oh; oy++)
        for (int64_t ox = 0; ox < p->ow; ox += 8) {
            __m256 m = _mm256_setzero_ps();
            for (int64_t ky = 0; ky < p->kh; ky++) {
                const float *r = pc + (oy * p->stride_h + ky * p->dil_h) * PW + ox;
                for (int64_t kx = 0; kx < p->kw; kx++)
                    m = _mm256_max_ps(m, _mm256_loadu_ps(r + kx * p->dil_w));
            }
            float *o = am + oy * p->ow + ox;
            if (ox + 8 <= p->ow) _mm256_storeu_ps(o, m);
            else {
                float t[8];
                _mm256_storeu_ps(t, m);
                for (int64_t j = 0; j < p->ow - ox; j++) o[j] = t[j];
            }
        }
    return !has_nan;
}

/* first stored value of row range [v0, v1) with column >= c (columns ascend in a row) */
static int64_t col_lower(const uint16_t *col, int64_t v0, int64_t v1, int64_t c) {
    while (v0 < v1) {
        int64_t m = v0 + (v1 - v0) / 2;
        if (col[m] < c) v0 = m + 1;
        else v1 = m;
    }
    return v0;
}

/* one pixel panel of conv_relidx_panels: packed k block by k block, each block consumed
 * at once by the sparse panel kernel */
typedef struct {
    const cz_form *w;
    const conv_pack_ctx *pc;
    spk_fn kern;
    const int64_t *bnd;
    float *buf;
    float *yg;
    const float *bg;
    size_t pstride;
    int64_t ocg, nb1, nkb, kcb, K, OHW;
    int NR;
} relidx_panel_job;

static void relidx_panel(const relidx_panel_job *jb, int64_t jp, int tid) {
    float *pan = jb->buf + (size_t)tid * jb->pstride;
    int64_t j0 = jp * jb->NR, K = jb->K;
    int nr = jb->OHW - j0 < jb->NR ? (int)(jb->OHW - j0) : jb->NR;
    for (int64_t b = 0; b < jb->nkb; b++) {
        int64_t k0 = b * jb->kcb, kc = K - k0 < jb->kcb ? K - k0 : jb->kcb;
        conv_pack_panel_avx2(jb->pc, pan + jb->pstride - CZK_PACK_STATE / sizeof(float), j0, nr,
                             k0, kc, jb->NR, pan);
        jb->kern(jb->w, jb->ocg, jb->bnd, jb->nb1, b, k0, pan, jb->yg + j0, jb->OHW, nr,
                 b == jb->nkb - 1 ? jb->bg : NULL, b > 0);
    }
}

static cz_status conv_relidx_panels(const cz_form *w, const czk_conv_params *p, const float *x,
                                    const float *bias, float *y, cz_ws *ws) {
    int64_t G = p->group, cg = p->c / G, ocg = p->oc / G, K = w->cols;
    int64_t HW = p->h * p->w, OHW = p->oh * p->ow, KHW = p->kh * p->kw;
    const int64_t *vp = w->u.relidx.val_ptr;
    double nnz = (double)(vp[p->oc] - vp[0]);
    int nt = czk_threads(ws, nnz * (double)OHW * (double)p->n);
    /* 64-pixel panels (8 FMAs per value for its column / index / LUT loads: LeNet-5's
     * conv2 ~10%, 3x3 56x56 / 28x28 layers 8-19% faster than 32-pixel ones on Zen 3, whose
     * loop is load bound) when every thread still gets a panel and the pack program fits
     * (kh*kw <= 32: 5x5 and smaller); else 32 (~20% faster than 16), 16 for small images */
    const int NR = KHW <= 32 && OHW >= 64 * (int64_t)nt ? 64 : OHW >= 32 ? 32 : 16;
    int cb = w->u.relidx.vkind == CZ_VALS_CODEBOOK;
    spk_fn kern = NR == 64 ? (cb ? spk_8_1 : spk_8_0)
                  : NR == 32 ? (cb ? spk_4_1 : spk_4_0) : (cb ? spk_2_1 : spk_2_0);
    /* K blocks of whole channels, balanced: <= 16 KB of panel (half of L1: the values,
     * columns and indices stream past it); 25 KB for 64-pixel panels (measured: 16 KB ones
     * cost more in k blocks -- output reloads, bounds -- than they gain) */
    int64_t kmax = (NR == 64 ? 6400 : 4096) / NR, kcb = K;
    if (K > kmax) {
        int64_t per = kmax / KHW > 0 ? kmax / KHW : 1, nkb = (cg + per - 1) / per;
        kcb = (cg + nkb - 1) / nkb * KHW;
    }
    int64_t nkb = (K + kcb - 1) / kcb, nb1 = nkb + 1;
    int64_t npan = (OHW + NR - 1) / NR;
    if (nt > npan) nt = (int)npan;
    size_t pstride = ((size_t)kcb * NR + NR + 15) / 16 * 16 + CZK_PACK_STATE / sizeof(float);
    float *buf = czk_scratch(ws, (size_t)nt * pstride * sizeof(float));
    int64_t *bnd = czk_scratch(ws, (size_t)(ocg * nb1 + 1) * sizeof(int64_t));
    if (!buf || !bnd) return CZ_ERR_MEMORY;
    for (int64_t g = 0; g < G; g++) {
        int64_t r0 = g * ocg;
        for (int64_t r = 0; r < ocg; r++) {
            int64_t v0 = vp[r0 + r], v1 = vp[r0 + r + 1];
            bnd[r * nb1] = v0;
            for (int64_t b = 1; b < nkb; b++)
                bnd[r * nb1 + b] = col_lower(w->relidx_col16, bnd[r * nb1 + b - 1], v1, b * kcb);
            bnd[r * nb1 + nkb] = v1;
        }
        for (int64_t img = 0; img < p->n; img++) {
            conv_pack_ctx pc = {x + (img * p->c + g * cg) * HW, p, cg};
            float *yg = y + (img * p->oc + r0) * OHW;
            const float *bg = bias ? bias + r0 : NULL;
            relidx_panel_job jb = {w, &pc, kern, bnd, buf, yg, bg, pstride, ocg, nb1, nkb, kcb,
                                   K, OHW, NR};
            /* one thread: a plain loop (an OpenMP region costs ~0.5-1 us even with its
             * if clause false; LeNet-5's conv2 is ~30 us) */
            if (nt > 1) {
#pragma omp parallel for num_threads(nt) schedule(static)
                for (int64_t jp = 0; jp < npan; jp++) {
                    int tid = 0;
#ifdef _OPENMP
                    tid = omp_get_thread_num();
#endif
                    relidx_panel(&jb, jp, tid);
                }
            } else {
                for (int64_t jp = 0; jp < npan; jp++) relidx_panel(&jb, jp, 0);
            }
        }
    }
    return CZ_OK;
}
#endif

/* ---- few input channels per group (c/group <= 3), stride 1: direct convolution -------
 * The group's input planes are copied once into zero-padded planes; every output channel
 * then accumulates its nonzero taps (DENSE: every tap; RELIDX: the stored values; CODEBOOK:
 * lut[idx]) as tap weight x an unaligned vector load, 2 output rows x up to 4 vectors in
 * flight. An im2col GEMM has too little K (kh*kw*c/group) per pixel to amortize its tiles
 * here; LeNet-5's conv1 (1 -> 20, 5x5) runs ~4x faster this way. The last vector of a row
 * overlaps the previous one (same values recomputed), so ow >= the vector width. */
typedef struct { int64_t off; float w; } conv_tap;

/* taps of row r: (offset in the padded planes, weight); offs[c]: offset of column c */
static int64_t form_taps(const cz_form *w, int64_t r, const int64_t *offs, conv_tap *t,
                         float *tmp) {
    int64_t n = 0, K = w->cols;
    if (w->kind == CZ_FORM_RELIDX) {
        const int64_t *vp = w->u.relidx.val_ptr;
        const uint16_t *col = w->relidx_col16;
        if (w->u.relidx.vkind == CZ_VALS_CODEBOOK)
            for (int64_t v = vp[r]; v < vp[r + 1]; v++, n++) {
                t[n].off = offs[col[v]];
                t[n].w = w->u.relidx.lut[w->u.relidx.idx[v]];
            }
        else
            for (int64_t v = vp[r]; v < vp[r + 1]; v++, n++) {
                t[n].off = offs[col[v]];
                t[n].w = w->u.relidx.vals[v];
            }
    } else {
        czk_form_row(w, r, tmp);
        for (int64_t c = 0; c < K; c++, n++) {
            t[n].off = offs[c];
            t[n].w = tmp[c];
        }
    }
    return n;
}

/* one block: output rows oy, oy+1 (the second recomputed and dropped when rows == 1: the
 * padded plane has a spare zero row), NV vectors at columns xs[] */
#define DIRECT_BLOCK(SFX, NV)                                                                 \
    do {                                                                                      \
        dd_##SFX acc[2][NV];                                                                  \
        _Pragma("GCC unroll 2") for (int rr = 0; rr < 2; rr++)                                \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[rr][v] = (dd_##SFX){0} + b; \
        for (int64_t i = 0; i < nt; i++) {                                                    \
            dd_##SFX wv = (dd_##SFX){0} + t[i].w;                                             \
            const float *q = base + t[i].off;                                                 \
            _Pragma("GCC unroll 2") for (int rr = 0; rr < 2; rr++)                            \
                _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                          \
                    acc[rr][v] += wv * *(const dd_##SFX *)(q + rr * Wp + xs[v]);              \
        }                                                                                     \
        for (int rr = 0; rr < rows; rr++)                                                     \
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)                              \
                *(dd_##SFX *)(y + (oy + rr) * OW + xs[v]) = acc[rr][v];                       \
    } while (0)

#define DEF_DIRECT_ISA(SFX, ATTR, VW)                                                         \
    typedef float dd_##SFX __attribute__((vector_size(VW * 4), aligned(4)));                  \
    ATTR static void direct_plane_##SFX(const float *pb, int64_t Wp, const conv_tap *t,       \
                                        int64_t nt, float b, const czk_conv_params *p,        \
                                        float *y) {                                           \
        int64_t OW = p->ow, OH = p->oh;                                                       \
        for (int64_t oy = 0; oy < OH; oy += 2) {                                              \
            int rows = OH - oy < 2 ? 1 : 2;                                                   \
            const float *base = pb + oy * Wp;                                                 \
            for (int64_t ox0 = 0; ox0 < OW; ox0 += 4 * VW) {                                  \
                int64_t xs[4];                                                                \
                int nv = 0;                                                                   \
                for (int v = 0; v < 4 && ox0 + v * VW < OW; v++, nv++)                        \
                    xs[v] = ox0 + v * VW + VW <= OW ? ox0 + v * VW : OW - VW;                 \
                switch (nv) {                                                                 \
                case 4: DIRECT_BLOCK(SFX, 4); break;                                          \
                case 3: DIRECT_BLOCK(SFX, 3); break;                                          \
                case 2: DIRECT_BLOCK(SFX, 2); break;                                          \
                default: DIRECT_BLOCK(SFX, 1); break;                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }

DEF_DIRECT_ISA(port, , 4)
#if CZK_X86
DEF_DIRECT_ISA(avx2, CZK_T_AVX2, 8)
DEF_DIRECT_ISA(avx512, CZK_T_AVX512, 16)
#endif

static int direct_vw(void) {
    int isa = czk_isa();
    return isa == CZK_ISA_AVX512 ? 16 : isa == CZK_ISA_AVX2 ? 8 : 4;
}

static int direct_ok(const cz_form *w, const czk_conv_params *p) {
    int64_t cg = p->c / p->group;
    if (cg > 3 || p->stride_h != 1 || p->stride_w != 1 || p->ow < direct_vw()) return 0;
    if (cg * p->kh * p->kw > 256) return 0;
    if (w->kind == CZ_FORM_RELIDX) return w->relidx_col16 != NULL;
    return w->kind == CZ_FORM_DENSE || w->kind == CZ_FORM_CODEBOOK;
}

static cz_status conv_direct(const cz_form *w, const czk_conv_params *p, const float *x,
                             const float *bias, float *y, cz_ws *ws) {
    int64_t G = p->group, cg = p->c / G, ocg = p->oc / G, K = w->cols;
    int64_t H = p->h, W = p->w, HW = H * W, OHW = p->oh * p->ow;
    int64_t Hp = H + p->pad_t + p->pad_b, Wp = W + p->pad_l + p->pad_r;
    /* rows read: up to oy + 1 (pairs) + (kh-1)*dil for the last pair's phantom row, and the
     * overlapping last vector reads up to ow - 1 + (kw-1)*dil < Wp: one spare row */
    int64_t HWp = (Hp + 2) * Wp;
    int isa = czk_isa();
    float *pb = czk_scratch(ws, (size_t)(cg * HWp + 16) * sizeof(float));
    conv_tap *taps = czk_scratch(ws, (size_t)(K + 1) * sizeof(conv_tap));
    float *tmp = czk_scratch(ws, (size_t)(K + 1) * sizeof(float));
    int64_t *offs = czk_scratch(ws, (size_t)(K + 1) * sizeof(int64_t));
    if (!pb || !taps || !tmp || !offs) return CZ_ERR_MEMORY;
    for (int64_t ci = 0, c = 0; ci < cg; ci++)
        for (int64_t ky = 0; ky < p->kh; ky++)
            for (int64_t kx = 0; kx < p->kw; kx++, c++)
                offs[c] = ci * HWp + ky * p->dil_h * Wp + kx * p->dil_w;
    memset(pb, 0, (size_t)(cg * HWp + 16) * sizeof(float));
    for (int64_t img = 0; img < p->n; img++)
        for (int64_t g = 0; g < G; g++) {
            const float *xg = x + (img * p->c + g * cg) * HW;
            for (int64_t ci = 0; ci < cg; ci++)
                for (int64_t iy = 0; iy < H; iy++)
                    memcpy(pb + ci * HWp + (iy + p->pad_t) * Wp + p->pad_l, xg + ci * HW + iy * W,
                           (size_t)W * sizeof(float));
            for (int64_t o = 0; o < ocg; o++) {
                int64_t r = g * ocg + o;
                int64_t nt = form_taps(w, r, offs, taps, tmp);
                float b = bias ? bias[r] : 0.f;
                float *yo = y + (img * p->oc + r) * OHW;
#if CZK_X86
                if (isa == CZK_ISA_AVX512) direct_plane_avx512(pb, Wp, taps, nt, b, p, yo);
                else if (isa == CZK_ISA_AVX2) direct_plane_avx2(pb, Wp, taps, nt, b, p, yo);
                else
#endif
                    direct_plane_port(pb, Wp, taps, nt, b, p, yo);
            }
        }
    (void)isa;
    return CZ_OK;
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

/* one output vector of the 3x3 kernel from input rows A, C, D (the taps w0..w8 and the
 * bias vb in scope): three independent chains (one per kernel row), then summed */
#define DW3_OUT(SFX, A, C, D, OX)                                                             \
    ({                                                                                        \
        dv_##SFX e0 = vb, e1 = w3 * *(const dv_##SFX *)((C) + (OX)),                          \
                 e2 = w6 * *(const dv_##SFX *)((D) + (OX));                                   \
        e0 += w0 * *(const dv_##SFX *)((A) + (OX));                                           \
        e1 += w4 * *(const dv_##SFX *)((C) + (OX) + 1);                                       \
        e2 += w7 * *(const dv_##SFX *)((D) + (OX) + 1);                                       \
        e0 += w1 * *(const dv_##SFX *)((A) + (OX) + 1);                                       \
        e1 += w5 * *(const dv_##SFX *)((C) + (OX) + 2);                                       \
        e2 += w8 * *(const dv_##SFX *)((D) + (OX) + 2);                                       \
        e0 += w2 * *(const dv_##SFX *)((A) + (OX) + 2);                                       \
        e0 + (e1 + e2);                                                                       \
    })

#define DEF_DW_ISA(SFX, ATTR, VW)                                                             \
    typedef float dv_##SFX __attribute__((vector_size(VW * 4), aligned(4)));                  \
    /* 3x3, stride 1, dilation 1: the plane is copied once into a zero-padded buffer (pb:     \
     * h rows of Wp = pad_l + w + pad_r + VW floats, then one zero row), so every output      \
     * vector -- borders included -- is 9 unaligned loads + 9 FMAs from registers. The copy is \
     * vector loads / stores (memcpy + memset calls per row were ~1/3 of a 56x56 plane's      \
     * time); output rows go in pairs, which share two of their three input rows (12 loads for \
     * 18 FMAs instead of 18). Per output the sum order is unchanged (DW3_OUT). */             \
    /* (no-tree-loop-distribute-patterns: GCC otherwise turns the zero-fill loops back     \
     * into memset calls, 3 per row: ~25% of a 96-channel 56x56 layer) */                     \
    ATTR __attribute__((optimize("no-tree-loop-distribute-patterns")))                       \
    static void dw3_plane_##SFX(const float *x, const float *wk, float b,                    \
                                const czk_conv_params *p, float *y, float *pb) {              \
        int64_t W = p->w, OW = p->ow, H = p->h, Wp = p->pad_l + W + p->pad_r + VW;            \
        float *zr = pb + H * Wp;                                                              \
        const dv_##SFX z = (dv_##SFX){0};                                                     \
        for (int64_t iy = 0; iy <= H; iy++) {                                                 \
            float *d = pb + iy * Wp;                                                          \
            if (iy == H) { /* the zero row */                                                 \
                for (int64_t i = 0; i + VW <= Wp; i += VW) *(dv_##SFX *)(d + i) = z;          \
                *(dv_##SFX *)(d + Wp - VW) = z;                                               \
                break;                                                                        \
            }                                                                                 \
            /* left pad (may spill into the data part: written first), data, right pad        \
             * [pad_l + w, Wp) (Wp - pad_l - w = pad_r + VW >= VW) */                         \
            for (int64_t i = 0; i < p->pad_l; i += VW) *(dv_##SFX *)(d + i) = z;              \
            const float *s = x + iy * W;                                                      \
            float *dd = d + p->pad_l;                                                         \
            int64_t i = 0;                                                                    \
            for (; i + VW <= W; i += VW) *(dv_##SFX *)(dd + i) = *(const dv_##SFX *)(s + i);  \
            if (i < W) {                                                                      \
                if (W >= VW) *(dv_##SFX *)(dd + W - VW) = *(const dv_##SFX *)(s + W - VW);    \
                else for (; i < W; i++) dd[i] = s[i];                                         \
            }                                                                                 \
            for (int64_t j = p->pad_l + W; j + VW <= Wp; j += VW) *(dv_##SFX *)(d + j) = z;   \
            *(dv_##SFX *)(d + Wp - VW) = z;                                                   \
        }                                                                                     \
        dv_##SFX w0 = z + wk[0], w1 = z + wk[1], w2 = z + wk[2], w3 = z + wk[3],              \
                 w4 = z + wk[4], w5 = z + wk[5], w6 = z + wk[6], w7 = z + wk[7],              \
                 w8 = z + wk[8], vb = z + b;                                                  \
        for (int64_t oy = 0; oy < p->oh; oy += 2) {                                           \
            float *yr = y + oy * OW;                                                          \
            const float *rr[4];                                                               \
            for (int ky = 0; ky < 4; ky++) {                                                  \
                int64_t iy = oy - p->pad_t + ky;                                              \
                rr[ky] = iy < 0 || iy >= H ? zr : pb + iy * Wp;                               \
            }                                                                                 \
            const float *a = rr[0], *c = rr[1], *d = rr[2], *e = rr[3];                       \
            if (oy + 1 < p->oh) {                                                             \
                float *yr1 = yr + OW;                                                         \
                for (int64_t ox = 0;;) {                                                      \
                    if (ox + VW > OW) ox = OW - VW; /* last vector overlaps (idempotent) */   \
                    /* both before either store: the shared row loads are CSE'd */            \
                    dv_##SFX t0 = DW3_OUT(SFX, a, c, d, ox), t1 = DW3_OUT(SFX, c, d, e, ox);  \
                    *(dv_##SFX *)(yr + ox) = t0;                                              \
                    *(dv_##SFX *)(yr1 + ox) = t1;                                             \
                    ox += VW;                                                                 \
                    if (ox >= OW) break;                                                      \
                }                                                                             \
            } else {                                                                          \
                for (int64_t ox = 0;;) {                                                      \
                    if (ox + VW > OW) ox = OW - VW;                                           \
                    *(dv_##SFX *)(yr + ox) = DW3_OUT(SFX, a, c, d, ox);                       \
                    ox += VW;                                                                 \
                    if (ox >= OW) break;                                                      \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    ATTR __attribute__((optimize("no-tree-loop-distribute-patterns")))                       \
    static void dw_plane_##SFX(const float *x, const float *wk, float b,                     \
                               const czk_conv_params *p, float *y, float *pb) {               \
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
 * accurate). czk_conv2d_ref does the same (see dequant_dw). d: rows * cols floats. */
static void dequant_dw(const cz_form *w, float *d) {
    int64_t R = w->rows, C = w->cols;
    int64_t G = w->u.affine.group, ng = G > 0 ? (C + G - 1) / G : 1;
    for (int64_t r = 0; r < R; r++)
        for (int64_t c = 0; c < C; c++) {
            int64_t j = G > 0 ? r * ng + c / G : w->u.affine.per_row ? r : 0;
            int32_t z = w->u.affine.zp ? w->u.affine.zp[j] : 0;
            d[r * C + c] = (float)(w->u.affine.q[r * C + c] - z) * w->u.affine.scale[j];
        }
}

/* one (image, channel) plane of conv_depthwise */
static void dw_one(const float *W, const czk_conv_params *p, const float *x, const float *bias,
                   float *y, float *zrow, int64_t t, int isa) {
    int64_t C = p->c, HW = p->h * p->w, OHW = p->oh * p->ow, KK = p->kh * p->kw;
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
    (void)isa;
}

static cz_status conv_depthwise(const cz_form *w, const czk_conv_params *p, const float *x,
                                const float *bias, float *y, cz_ws *ws) {
    int64_t C = p->c, OHW = p->oh * p->ow, KK = p->kh * p->kw;
    int isa = czk_isa();
    const float *W = w->kind == CZ_FORM_DENSE ? w->u.dense.w : NULL;
    if (!W) {   /* workspace, not malloc: this runs on every call */
        float *deq = czk_scratch(ws, (size_t)(w->rows * w->cols > 0 ? w->rows * w->cols : 1) *
                                         sizeof(float));
        if (!deq) return CZ_ERR_MEMORY;
        dequant_dw(w, deq);
        W = deq;
    }
    int nt = czk_threads(ws, (double)p->n * C * OHW * KK);
    /* per-thread zero-padded plane for the 3x3 path: (h + 1) x (pad_l + w + pad_r + 16) */
    size_t pbn = (size_t)(p->h + 1) * (size_t)(p->pad_l + p->w + p->pad_r + 16);
    int dw3 = p->kh == 3 && p->kw == 3 && p->stride_h == 1 && p->stride_w == 1 &&
              p->dil_h == 1 && p->dil_w == 1;
    float *pbuf = dw3 ? czk_scratch(ws, (size_t)nt * pbn * sizeof(float)) : NULL;
    if (dw3 && !pbuf) return CZ_ERR_MEMORY;
    if (nt > 1) {   /* one thread: no OpenMP region (~0.5-1 us even with if() false) */
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int64_t t = 0; t < p->n * C; t++) {
            int tid = 0;
#ifdef _OPENMP
            tid = omp_get_thread_num();
#endif
            dw_one(W, p, x, bias, y, pbuf ? pbuf + (size_t)tid * pbn : NULL, t, isa);
        }
    } else {
        for (int64_t t = 0; t < p->n * C; t++) dw_one(W, p, x, bias, y, pbuf, t, isa);
    }
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
    if (ws->precise) return czk_conv2d_precise(w, p, x, bias, y, ws);   /* double accumulation */
    if (w->kind == CZ_FORM_TUCKER2) return conv_tucker2(w, p, x, bias, y, ws, 0);
    int64_t G = p->group, cg = p->c / G, ocg = p->oc / G;
    int64_t HW = p->h * p->w, OHW = p->oh * p->ow, K = w->cols;
    if (G == p->c && G == p->oc && (w->kind == CZ_FORM_DENSE || w->kind == CZ_FORM_AFFINE))
        return conv_depthwise(w, p, x, bias, y, ws);
    if (direct_ok(w, p) && !conv_legacy()) return conv_direct(w, p, x, bias, y, ws);
#if CZK_X86
    if (w->kind == CZ_FORM_RELIDX && w->relidx_col16 && p->stride_w == 1 && cg >= 4 &&
        czk_isa() >= CZK_ISA_AVX2 && !conv_legacy())
        return conv_relidx_panels(w, p, x, bias, y, ws);
#endif
#if CZK_X86
    /* DENSE, stride_w 1, >= 4 input channels per group, AVX2: implicit im2col GEMM, the
     * panels packed straight from the image (the load program of a panel is built once and
     * reused for every channel, which needs a few channels to pay off; strided rows and
     * 1-3 channel inputs keep the im2col tile below) */
    if (w->kind == CZ_FORM_DENSE && p->stride_w == 1 && cg >= 4 && czk_isa() >= CZK_ISA_AVX2 && !conv_legacy()) {
        for (int64_t img = 0; img < p->n && st == CZ_OK; img++)
            for (int64_t g = 0; g < G && st == CZ_OK; g++) {
                conv_pack_ctx pc = {x + (img * p->c + g * cg) * HW, p, cg};
                czk_pack_fn pk = conv_pack_panel_avx2;
                st = czk_gemm_f32_implicit(ocg, OHW, K, w->u.dense.w + g * ocg * K, K,
                                           pk, &pc, p->kh * p->kw,
                                           y + (img * p->oc + g * ocg) * OHW, OHW,
                                           bias ? bias + g * ocg : NULL, ws);
            }
        return st;
    }
#endif
    int pointwise = p->kh == 1 && p->kw == 1 && p->stride_h == 1 && p->stride_w == 1 &&
                    p->pad_t == 0 && p->pad_l == 0 && p->pad_b == 0 && p->pad_r == 0;
    int patches = w->kind == CZ_FORM_AFFINE;
    /* int8: the exact AVX2 path quantizes im2col COLUMNS per pixel (one plan per group) */
    czk_i8conv **i8 = NULL;
#if CZK_X86
    /* int8 with stride_w 1 and >= 4 channels: quantized panels straight from the image
     * (weight columns tap-major, one plan per group) */
    if (patches && p->stride_w == 1 && cg >= 4 && !conv_legacy()) {
        i8 = czk_scratch(ws, (size_t)G * sizeof *i8);
        if (!i8) return CZ_ERR_MEMORY;
        for (int64_t g = 0; g < G; g++) {
            i8[g] = czk_affine_conv_begin_tapmajor(w, g * ocg, (g + 1) * ocg, cg, p->kh * p->kw, ws);
            if (!i8[g]) { i8 = NULL; break; }
        }
    }
    if (i8) {
        int64_t PH, PW;
        amax_pad_dims(p, &PH, &PW);
        float *cm = czk_scratch(ws, (size_t)(HW + OHW + PH * PW + 16) * sizeof(float));
        if (!cm) return CZ_ERR_MEMORY;
        float *am = cm + HW, *pc = am + OHW;
        cz_ws sub;
        czk_ws_child(&sub, ws);
        for (int64_t img = 0; img < p->n && st == CZ_OK; img++)
            for (int64_t g = 0; g < G && st == CZ_OK; g++) {
                const float *xg = x + (img * p->c + g * cg) * HW;
                int nan_free = patch_amax_avx2(xg, p, cg, cm, pc, am);
                conv_pack_ctx pc = {xg, p, cg};
                st = czk_affine_conv_qpacked(i8[g], conv_qpack_panel_avx2, &pc, am, OHW,
                                             nan_free, bias ? bias + g * ocg : NULL,
                                             y + (img * p->oc + g * ocg) * OHW, OHW, &sub);
                cz_arena_free_all(&sub.arena);
            }
        return st;
    }
#endif
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
        deq = malloc((size_t)(w->rows * w->cols > 0 ? w->rows * w->cols : 1) * sizeof(float));
        if (!deq) return CZ_ERR_MEMORY;
        dequant_dw(w, deq);
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
