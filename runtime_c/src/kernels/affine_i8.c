/*
 * affine_i8.c -- int8 weights (AFFINE forms: w = (q - zp) * scale, scale per tensor, per row
 * or per group of `group` columns; q widened to int8 by the format layer) against
 * DYNAMICALLY quantized activations.
 *
 *   1. every row of X is quantized to int8 with its own scale sx = max|x| / 127
 *      (symmetric, round half to even, clamp +-127) -- czk_quant_row, shared by all paths;
 *   2. int32 accumulation per (row, output, group): acc = sum xq * q  - zp * sum xq
 *      (the zero point folds into a per-group activation sum, so the inner loop is a pure
 *      int8 dot product);
 *   3. y = sx * sum_g float(acc_g) * scale_g (+ bias), in float.
 * The int32 accumulators of every path are BIT-EXACT with the plain C reference (integer
 * arithmetic is exact; no path can overflow: |xq*q| <= 127*128, K < 2^17 per group in
 * practice, and the spec caps tensors well below 2^31 / 16256 columns per row... rows with
 * more than 132k columns would need a 64-bit accumulator and are not produced by any codec
 * we ship).
 *
 * SIMD paths:
 *   AVX-512 VNNI: vpdpbusd multiplies u8 x s8, so X is offset by +128 into uint8 and the
 *     kernel subtracts 128 * sum(q) per output; sum(q) is computed in the same loop by a
 *     second vpdpbusd against a vector of ones (no precomputed row sums needed, and the
 *     masked tail loads handle any group boundary). Block: 4 weight rows x 4 X rows.
 *     NOTE: compiled and dispatched on CPUs with AVX512_VNNI; the machine this was
 *     developed on has none, so this path is compile-checked only.
 *   AVX2 (also AVX-512 CPUs without VNNI): exact, see the "AVX2 exact paths" section below:
 *     batch 1..3 GEMV with the sign trick vpmaddubsw(|w|, sign(xq, w)) (cannot saturate
 *     because activations are clamped to +-127); batch >= 4 a GEMM on weights packed at
 *     load (int8 quads, the same sign trick, 4x16 register blocks) or else an int16 GEMM
 *     on weights packed per call (vpmaddwd, 6x16 / 4x24 blocks), activations quantized
 *     straight into the packed tiles once per call; int8 convolutions quantize im2col
 *     columns per pixel straight into the GEMM's panels (czk_affine_conv_cols) or the
 *     image itself, tap-major (czk_affine_conv_qpacked).
 *     Why not vpmaddubsw on u8 = xq + 128 like ORT/MLAS: 255*127*2 > 32767 saturates (ORT's
 *     MatMulInteger u8s8 result on AVX2 is visibly off for full-range int8 weights).
 *   portable: plain C int32 loops (also the reference).
 * NaN activations quantize to 0 in every path (the max ignores them); a row with an inf
 * quantizes to zeros.
 * Threads: over blocks of weight rows (GEMV, GEMM) or pixel panels (conv) when the layer is
 * large.
 */
#include <stdlib.h>

#include "kint.h"
#if CZK_X86
#include <immintrin.h>
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* fp-contract off: x*inv must be rounded before the magic add, in every build */
__attribute__((optimize("fp-contract=off"))) float czk_quant_row(const float *x, int64_t xs_c, int64_t cols, int8_t *q) {
    float amax = 0.f;
    for (int64_t c = 0; c < cols; c++) {
        float a = x[c * xs_c];
        a = a < 0 ? -a : a;
        amax = a > amax ? a : amax;
    }
    if (!(amax > 0.f) || amax > 3.0e38f) {   /* zero, NaN or inf row: quantize to zeros */
        memset(q, 0, (size_t)cols);
        return 0.f;
    }
    float inv = 127.f / amax;
    /* round half to even: adding and subtracting 1.5 * 2^23 rounds in the default mode */
    const float magic = 12582912.f;
    for (int64_t c = 0; c < cols; c++) {
        float t = x[c * xs_c] * inv;
        if (t != t) t = 0.f;   /* NaN element (amax ignores it): 0, as the SIMD paths do */
        float r = (t + magic) - magic;
        r = r > 127.f ? 127.f : r < -127.f ? -127.f : r;
        q[c] = (int8_t)(int)r;
    }
    return amax / 127.f;
}

static inline int64_t ngroups_of(const cz_form *w) {
    int64_t G = w->u.affine.group;
    return G > 0 ? (w->cols + G - 1) / G : 1;
}
static inline int64_t sidx(const cz_form *w, int64_t r, int64_t g) {
    if (w->u.affine.group > 0) return r * ngroups_of(w) + g;
    return w->u.affine.per_row ? r : 0;
}

/* ---- reference ---------------------------------------------------------------------- */
void czk_affine_acc_ref(const cz_form *w, int64_t n, const int8_t *xq, int64_t ldq,
                        int32_t *acc) {
    int64_t cols = w->cols, rows = w->rows, ng = ngroups_of(w);
    int64_t G = w->u.affine.group > 0 ? w->u.affine.group : cols;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < rows; r++)
            for (int64_t g = 0; g < ng; g++) {
                int64_t c0 = g * G, c1 = c0 + G < cols ? c0 + G : cols;
                int32_t s = 0, xs = 0;
                for (int64_t c = c0; c < c1; c++) {
                    s += (int32_t)xq[i * ldq + c] * (int32_t)w->u.affine.q[r * cols + c];
                    xs += xq[i * ldq + c];
                }
                if (w->u.affine.zp) s -= w->u.affine.zp[sidx(w, r, g)] * xs;
                acc[(i * rows + r) * ng + g] = s;
            }
}

void czk_affine_op_ref(CZK_OP_ARGS) {
    int64_t cols = w->cols, ng = ngroups_of(w);
    int64_t G = w->u.affine.group > 0 ? w->u.affine.group : cols;
    int8_t *xq = malloc(cols ? (size_t)cols : 1);
    if (!xq) return;
    for (int64_t i = 0; i < n; i++) {
        float sx = czk_quant_row(x + i * xs_n, xs_c, cols, xq);
        for (int64_t r = r0; r < r1; r++) {
            float f = 0.f;
            for (int64_t g = 0; g < ng; g++) {
                int64_t c0 = g * G, c1 = c0 + G < cols ? c0 + G : cols;
                int32_t s = 0, xs = 0;
                for (int64_t c = c0; c < c1; c++) {
                    s += (int32_t)xq[c] * (int32_t)w->u.affine.q[r * cols + c];
                    xs += xq[c];
                }
                if (w->u.affine.zp) s -= w->u.affine.zp[sidx(w, r, g)] * xs;
                f += (float)s * w->u.affine.scale[sidx(w, r, g)];
            }
            float v = f * sx + (bias ? bias[r - r0] : 0.f);
            float *o = &y[i * ys_n + (r - r0) * ys_r];
            *o = acc ? *o + v : v;
        }
    }
    free(xq);
}

/* ---- block kernels: out[i][j] = sum_{c0<=c<c1} X_i[c] * W_j[c] for i < nb, j < nr ---- */
typedef void (*blk_fn)(const void *x, int64_t ldx, int nb, const int8_t *w, int64_t ldw,
                       int nr, int64_t c0, int64_t c1, int32_t out[4][4]);

static void blk_port(const void *xv, int64_t ldx, int nb, const int8_t *w, int64_t ldw, int nr,
                     int64_t c0, int64_t c1, int32_t out[4][4]) {
    const int8_t *x = xv;
    for (int i = 0; i < nb; i++)
        for (int j = 0; j < nr; j++) {
            int32_t s = 0;
            for (int64_t c = c0; c < c1; c++) s += (int32_t)x[i * ldx + c] * (int32_t)w[j * ldw + c];
            out[i][j] = s;
        }
}

#if CZK_X86
/* X: uint8 = xq + 128, row stride ldx, padded to a multiple of 64 past cols. */
CZK_T_VNNI static void blk_vnni(const void *xv, int64_t ldx, int nb, const int8_t *w,
                                int64_t ldw, int nr, int64_t c0, int64_t c1,
                                int32_t out[4][4]) {
    const uint8_t *x = xv;
    const uint8_t *xp[4];
    const int8_t *wp[4];
    for (int i = 0; i < 4; i++) xp[i] = x + (i < nb ? i : 0) * ldx;
    for (int j = 0; j < 4; j++) wp[j] = w + (j < nr ? j : 0) * ldw;
    __m512i a[4][4], ws[4];
    const __m512i ones = _mm512_set1_epi8(1);
    for (int j = 0; j < 4; j++) {
        ws[j] = _mm512_setzero_si512();
        for (int i = 0; i < 4; i++) a[i][j] = _mm512_setzero_si512();
    }
    for (int64_t c = c0; c < c1; c += 64) {
        __mmask64 m = c1 - c >= 64 ? ~(__mmask64)0 : (((__mmask64)1 << (c1 - c)) - 1);
        __m512i wv[4], xu[4];
        for (int j = 0; j < 4; j++) {
            wv[j] = _mm512_maskz_loadu_epi8(m, wp[j] + c);
            ws[j] = _mm512_dpbusd_epi32(ws[j], ones, wv[j]);
        }
        for (int i = 0; i < 4; i++) {
            xu[i] = _mm512_maskz_loadu_epi8(m, xp[i] + c);
            for (int j = 0; j < 4; j++) a[i][j] = _mm512_dpbusd_epi32(a[i][j], xu[i], wv[j]);
        }
    }
    for (int j = 0; j < nr; j++) {
        int32_t corr = 128 * _mm512_reduce_add_epi32(ws[j]);
        for (int i = 0; i < nb; i++) out[i][j] = _mm512_reduce_add_epi32(a[i][j]) - corr;
    }
}
#endif

/* Prepared activations for one call. */
typedef struct {
    int isa;                 /* CZK_ISA_* actually used */
    blk_fn blk;
    int RB;                  /* weight rows per block */
    const void *xb;          /* ISA-specific X buffer */
    int64_t ldx;             /* elements */
    int esz;                 /* bytes per element of xb */
} i8_plan;

static cz_status plan_x(int isa, int64_t n, int64_t cols, const int8_t *xq, int64_t ldq,
                        i8_plan *pl, cz_ws *ws) {
    pl->isa = CZK_ISA_PORTABLE; pl->blk = blk_port; pl->RB = 4;
    pl->xb = xq; pl->ldx = ldq; pl->esz = 1;
#if CZK_X86
    int f = czk_features();
    if (isa >= CZK_ISA_AVX512 && (f & CZK_F_VNNI)) {
        int64_t ld = (cols + 63) / 64 * 64;
        uint8_t *b = czk_scratch(ws, (size_t)n * ld + 64);
        if (!b) return CZ_ERR_MEMORY;
        for (int64_t i = 0; i < n; i++) {
            for (int64_t c = 0; c < cols; c++) b[i * ld + c] = (uint8_t)(xq[i * ldq + c] + 128);
            memset(b + i * ld + cols, 128, (size_t)(ld - cols));
        }
        pl->isa = CZK_ISA_AVX512; pl->blk = blk_vnni; pl->RB = 4; pl->xb = b; pl->ldx = ld;
    }
#else
    (void)isa; (void)cols; (void)ws;
#endif
    (void)n;
    return CZ_OK;
}

/* Per-group activation sums (only needed with zero points): xs[i*ng + g]. */
static int32_t *group_sums(const cz_form *w, int64_t n, const int8_t *xq, int64_t ldq, cz_ws *ws) {
    int64_t cols = w->cols, ng = ngroups_of(w);
    int64_t G = w->u.affine.group > 0 ? w->u.affine.group : cols;
    int32_t *xs = czk_scratch(ws, (size_t)n * ng * sizeof(int32_t));
    if (!xs) return NULL;
    for (int64_t i = 0; i < n; i++)
        for (int64_t g = 0; g < ng; g++) {
            int64_t c0 = g * G, c1 = c0 + G < cols ? c0 + G : cols;
            int32_t s = 0;
            for (int64_t c = c0; c < c1; c++) s += xq[i * ldq + c];
            xs[i * ng + g] = s;
        }
    return xs;
}

/* ======================================================================================
 * AVX2 exact paths (no VNNI): the int32 accumulators are bit-exact with the reference.
 *
 * batch 1..3 -- GEMV straight from the int8 weight rows (memory bound: 1 byte / weight),
 *   4 weight rows x 32 columns per step with the sign trick:
 *       vpmaddubsw(|w| as u8, sign(xq, w) as s8) -> s16 pairs, vpmaddwd(ones) -> int32.
 *   |w| <= 128 and |sign(xq, w)| <= 127 (activations are clamped to +-127 by
 *   czk_quant_row, a PRECONDITION of every path), so a pair is <= 2*128*127 = 32512 < 32767:
 *   vpmaddubsw never saturates and the result is exact for every int8 weight incl. -128.
 * batch >= 4 -- a real GEMM on int16: activations are quantized to int16 (pairs of
 *   consecutive k are one int32 broadcast) -- without zero points straight into the
 *   micro-kernel's A tiles (quant_tile_a: no int8 / int16 row copies, no scalar pack) --,
 *   weights are packed at load (czk_affine_prepare: int8 8-row sub-panels of quads, run by
 *   the quad kernel ukq_4x2 below, with A tiles of int8 quads) or else PER CALL into int16 panels
 *   of NR outputs x KC columns laid out [k/2][NR][2] (8x8 int32 transposes, ~0.4 op per
 *   weight, amortized over the batch), and an MR x NR register-blocked micro-kernel does
 *   vpmaddwd (int16 x int16 -> int32 pairs, exact) + vpaddd: 12 ymm accumulators
 *   (6x16 or 4x24, picked per shape to minimize padding). K is cut into segments at KC
 *   and at scale-group boundaries; int32 partial sums of a group stay int32 across KC
 *   segments (exact), groups are combined in float in group order as in the reference.
 * The same micro-kernel runs int8 convolutions (czk_affine_conv_cols) with roles swapped:
 *   A = weight rows (int16), B = im2col pixels quantized per pixel into the panels.
 * Speed note (Zen 3, L1-resident micro-benchmark): the exact int16 kernel does ~75 MAC/ns,
 *   an MLAS-style u8s8 vpmaddubsw + vpmaddwd(ones) kernel ~92 (it does 32 MACs per 3 vector
 *   ops, we 16 per 2; both saturate the vector pipes), the sign-trick vpmaddubsw kernel
 *   (vpsignb per register tile element) ~60: the exact paths stay ~1.2x behind ORT's
 *   MatMulInteger in the inner loop, the rest of the call is packing / quantization.
 * ====================================================================================== */
#if CZK_X86
/* a: packed A tile [kp][MR] int32 (= int16 pairs), b: packed B panel [kp][NR][2] int16 */
typedef void (*uk16_fn)(int64_t nkp, const int32_t *a, const int16_t *b, int32_t *c,
                        int64_t ldc, int load);

#define DEF_UK16(MR, NV) DEF_UK16S(uk16_##MR##x##NV, MR, NV, MR)
/* AS: stride of the A tile per kp (MR, or 6 for a 4-row kernel on a 6-row tile) */
#define DEF_UK16S(NAME, MR, NV, AS)                                                           \
    CZK_T_AVX2 static void NAME(int64_t nkp, const int32_t *a, const int16_t *b,              \
                                int32_t *c, int64_t ldc, int load) {                          \
        __m256i acc[MR][NV];                                                                  \
        _Pragma("GCC unroll 8") for (int m = 0; m < MR; m++)                                  \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                              \
                acc[m][j] = _mm256_setzero_si256();                                           \
        for (int64_t kp = 0; kp < nkp; kp++) {                                                \
            __m256i bv[NV];                                                                   \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                              \
                bv[j] = _mm256_load_si256((const __m256i *)(b + (kp * NV + j) * 16));         \
            _Pragma("GCC unroll 8") for (int m = 0; m < MR; m++) {                            \
                __m256i av = _mm256_set1_epi32(a[kp * AS + m]);                               \
                _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                          \
                    acc[m][j] = _mm256_add_epi32(acc[m][j], _mm256_madd_epi16(av, bv[j]));    \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 8") for (int m = 0; m < MR; m++)                                  \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) {                            \
                __m256i *p = (__m256i *)(c + m * ldc + j * 8);                                \
                __m256i v = acc[m][j];                                                        \
                if (load) v = _mm256_add_epi32(v, _mm256_loadu_si256(p));                     \
                _mm256_storeu_si256(p, v);                                                    \
            }                                                                                 \
    }
DEF_UK16(6, 2)
DEF_UK16(4, 3)
DEF_UK16S(uk16_4of6x2, 4, 2, 6)   /* conv: last weight tile with <= 4 rows */

/* Weights packed once at load (czk_affine_prepare) run a faster exact kernel on int8 QUADS:
 * B vector j is 32 bytes of its 8-row sub-panel b[j] ([kq][8][4]: 8 weight rows x 4
 * consecutive k), the A tile holds 4 quantized activations per int32 ([kq][MR]), and per
 * (row m, vector j) the sign trick of the GEMV:
 *     vpmaddubsw(|w| as u8, sign(a, w) as s8) -> s16 pairs, vpmaddwd(ones) -> int32 sums of 4.
 * |w| <= 128 and |a| <= 127 keep a pair <= 32512 < 32767: no saturation, the int32 sums are
 * the exact sums the int16 kernel above computes (so results are bit-identical). Why: on
 * Zen 3 vpmaddwd issues ~1 per cycle, and the int16 kernel needs 2 of them per 32 MACs, the
 * quad kernel 1 (vpmaddubsw runs on another pipe) -- L1-resident micro-benchmark ~46-50 MAC/ns
 * (int16, 4x3 / 6x2) against ~68-73 (quads, |w| by vpabsb per kq shared by the MR rows);
 * MLAS's saturating u8 x s8 kernel (3 ops per 32 MACs, inexact on full-range weights) ~93. */
typedef void (*ukq_fn)(int64_t nkq, const int32_t *a, const int8_t *const *b, int32_t *c,
                       int64_t ldc, int load);
#define DEF_UKQ(MR, NV)                                                                       \
    CZK_T_AVX2 static void ukq_##MR##x##NV(int64_t nkq, const int32_t *a,                     \
                                           const int8_t *const *b, int32_t *c, int64_t ldc,   \
                                           int load) {                                        \
        __m256i acc[MR][NV];                                                                  \
        const __m256i ones = _mm256_set1_epi16(1);                                            \
        const int8_t *bb[NV];                                                                 \
        _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) bb[j] = b[j];                    \
        _Pragma("GCC unroll 8") for (int m = 0; m < MR; m++)                                  \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                              \
                acc[m][j] = _mm256_setzero_si256();                                           \
        for (int64_t kq = 0; kq < nkq; kq++) {                                                \
            __m256i wv[NV], wa[NV];                                                           \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) {                            \
                wv[j] = _mm256_load_si256((const __m256i *)(bb[j] + kq * 32));                \
                wa[j] = _mm256_abs_epi8(wv[j]);                                               \
            }                                                                                 \
            _Pragma("GCC unroll 8") for (int m = 0; m < MR; m++) {                            \
                __m256i av = _mm256_set1_epi32(a[kq * MR + m]);                               \
                _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) {                        \
                    __m256i p = _mm256_maddubs_epi16(wa[j], _mm256_sign_epi8(av, wv[j]));     \
                    acc[m][j] = _mm256_add_epi32(acc[m][j], _mm256_madd_epi16(p, ones));      \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 8") for (int m = 0; m < MR; m++)                                  \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) {                            \
                __m256i *p = (__m256i *)(c + m * ldc + j * 8);                                \
                __m256i v = acc[m][j];                                                        \
                if (load) v = _mm256_add_epi32(v, _mm256_loadu_si256(p));                     \
                _mm256_storeu_si256(p, v);                                                    \
            }                                                                                 \
    }
DEF_UKQ(4, 2)

typedef struct { int MR, NR; uk16_fn uk; ukq_fn ukq; } uk16_sel;
/* M rows of A (broadcast side) x N columns of B (panel side): least padded work */
static uk16_sel pick_uk16(int64_t M, int64_t N, int quad) {
    uk16_sel s;
    if (quad) {   /* 4 x 16 only: 8 accumulators + 2 weight vectors + their |w| + broadcast +
                   * ones fit the 16 ymm registers (4 x 24 spilled its accumulators: slower) */
        s.MR = 4; s.NR = 16; s.uk = uk16_4x3; s.ukq = ukq_4x2;
        return s;
    }
    double c62 = (double)((M + 5) / 6 * 6) * (double)((N + 15) / 16 * 16);
    double c43 = (double)((M + 3) / 4 * 4) * (double)((N + 23) / 24 * 24);
    if (c43 < c62) { s.MR = 4; s.NR = 24; s.uk = uk16_4x3; s.ukq = NULL; }
    else { s.MR = 6; s.NR = 16; s.uk = uk16_6x2; s.ukq = NULL; }
    return s;
}

/* A tile: ap[kp*MR + m] = pair (row_m[2kp], row_m[2kp+1]) for kp < nkp; NULL rows -> 0.
 * Rows must be readable up to 2*nkp elements (callers pad). */
static void pack_a16(const int16_t *const *rows, int MR, int64_t nkp, int32_t *ap) {
    for (int m = 0; m < MR; m++) {
        const int16_t *r = rows[m];
        if (!r) { for (int64_t kp = 0; kp < nkp; kp++) ap[kp * MR + m] = 0; continue; }
        for (int64_t kp = 0; kp < nkp; kp++) memcpy(&ap[kp * MR + m], r + 2 * kp, 4);
    }
}

#define I8_KC 256
CZK_T_AVX2 static inline void tr8x8(__m256i r[8]) {
    __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
    __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
    __m256i t4 = _mm256_unpacklo_epi32(r[4], r[5]), t5 = _mm256_unpackhi_epi32(r[4], r[5]);
    __m256i t6 = _mm256_unpacklo_epi32(r[6], r[7]), t7 = _mm256_unpackhi_epi32(r[6], r[7]);
    __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
    __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
    __m256i u4 = _mm256_unpacklo_epi64(t4, t6), u5 = _mm256_unpackhi_epi64(t4, t6);
    __m256i u6 = _mm256_unpacklo_epi64(t5, t7), u7 = _mm256_unpackhi_epi64(t5, t7);
    r[0] = _mm256_permute2x128_si256(u0, u4, 0x20); r[4] = _mm256_permute2x128_si256(u0, u4, 0x31);
    r[1] = _mm256_permute2x128_si256(u1, u5, 0x20); r[5] = _mm256_permute2x128_si256(u1, u5, 0x31);
    r[2] = _mm256_permute2x128_si256(u2, u6, 0x20); r[6] = _mm256_permute2x128_si256(u2, u6, 0x31);
    r[3] = _mm256_permute2x128_si256(u3, u7, 0x20); r[7] = _mm256_permute2x128_si256(u3, u7, 0x31);
}

/* Pack int8 weight rows [0, nvalid) of Q (row stride ldq), columns [k0, k0+kc), into
 * int16 panels of NR rows: bp[p*nkp*NR*2 + kp*NR*2 + jj*2 + t] = Q[p*NR+jj][k0+2kp+t],
 * zero past nvalid / past kc. npan panels. */
CZK_T_AVX2 static void pack_w16(const int8_t *Q, int64_t ldq, int64_t nvalid, int npan, int NR,
                                int64_t k0, int64_t kc, int16_t *bp) {
    int64_t nkp = (kc + 1) / 2;
    for (int p = 0; p < npan; p++) {
        int16_t *dst = bp + (int64_t)p * nkp * NR * 2;
        for (int sub = 0; sub < NR / 8; sub++) {
            int64_t rb = (int64_t)p * NR + sub * 8;
            const int8_t *rp[8];
            int nv = 0;
            for (int l = 0; l < 8; l++) {
                rp[l] = rb + l < nvalid ? Q + (rb + l) * ldq + k0 : NULL;
                nv += rp[l] != NULL;
            }
            int64_t kk = 0;
            if (nv == 8)
                for (; kk + 16 <= kc; kk += 16) {
                    __m256i r[8];
                    _Pragma("GCC unroll 8") for (int l = 0; l < 8; l++) {
                        r[l] = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(rp[l] + kk)));
                        /* the next K segment of these rows: ahead of time */
                        if ((kk & 63) == 0) _mm_prefetch((const char *)(rp[l] + kk + I8_KC), _MM_HINT_T0);
                    }
                    tr8x8(r);
                    for (int q = 0; q < 8; q++)
                        _mm256_store_si256((__m256i *)(dst + (kk / 2 + q) * NR * 2 + sub * 16), r[q]);
                }
            for (int64_t k = kk; k < 2 * nkp; k++) {
                int16_t *d = dst + (k / 2) * NR * 2 + sub * 16 + (k & 1);
                for (int l = 0; l < 8; l++) d[l * 2] = (rp[l] && k < kc) ? rp[l][k] : 0;
            }
        }
    }
}

/* max |x| over a contiguous row, NaN ignored (max_ps returns its second operand, the running
 * max, when the element is NaN), as czk_quant_row */
CZK_T_AVX2 static float row_amax_avx2(const float *x, int64_t cols) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 am = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 8 <= cols; c += 8) am = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + c), absm), am);
    float t8[8], amax = 0.f;
    _mm256_storeu_ps(t8, am);
    for (int i = 0; i < 8; i++) amax = t8[i] > amax ? t8[i] : amax;
    for (; c < cols; c++) { float a = x[c] < 0 ? -x[c] : x[c]; amax = a > amax ? a : amax; }
    return amax;
}

/* Quantize one contiguous row like czk_quant_row (bit-identical), int8 and/or int16 out;
 * q16 is zero padded to pad16 elements. */
CZK_T_AVX2 static float quant_row_avx2(const float *x, int64_t cols, int8_t *q8, int16_t *q16,
                                       int64_t pad16) {
    float amax = row_amax_avx2(x, cols);
    int64_t c;
    if (!(amax > 0.f) || amax > 3.0e38f) {
        if (q8) memset(q8, 0, (size_t)cols);
        if (q16) memset(q16, 0, (size_t)pad16 * 2);
        return 0.f;
    }
    float inv = 127.f / amax;
    const __m256 vi = _mm256_set1_ps(inv);
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m256 t0 = _mm256_mul_ps(_mm256_loadu_ps(x + c), vi);
        __m256 t1 = _mm256_mul_ps(_mm256_loadu_ps(x + c + 8), vi);
        t0 = _mm256_and_ps(t0, _mm256_cmp_ps(t0, t0, _CMP_ORD_Q));
        t1 = _mm256_and_ps(t1, _mm256_cmp_ps(t1, t1, _CMP_ORD_Q));
        __m256i i0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(t0), lo), hi);
        __m256i i1 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(t1), lo), hi);
        __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);   /* 16 x s16 */
        if (q16) _mm256_storeu_si256((__m256i *)(q16 + c), w);
        if (q8) {
            __m128i b = _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
            _mm_storeu_si128((__m128i *)(q8 + c), b);
        }
    }
    for (; c < cols; c++) {   /* intrinsics: never contracted into an FMA */
        __m128 t = _mm_mul_ss(_mm_set_ss(x[c]), _mm_set_ss(inv));
        t = _mm_and_ps(t, _mm_cmpord_ss(t, t));
        int r = _mm_cvtss_si32(t);   /* round half to even (default MXCSR) */
        r = r > 127 ? 127 : r < -127 ? -127 : r;
        if (q8) q8[c] = (int8_t)r;
        if (q16) q16[c] = (int16_t)r;
    }
    if (q16) for (c = cols; c < pad16; c++) q16[c] = 0;
    return amax / 127.f;
}

/* 16 elements of a row quantized like quant_row_avx2 (same multiply, NaN mask, conversion
 * in the default rounding mode = half to even, clamp): 8 int16 pairs as int32, in order */
CZK_T_AVX2 static inline __m256i quant16_pairs(const float *x, __m256 vi) {
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    __m256 t0 = _mm256_mul_ps(_mm256_loadu_ps(x), vi);
    __m256 t1 = _mm256_mul_ps(_mm256_loadu_ps(x + 8), vi);
    t0 = _mm256_and_ps(t0, _mm256_cmp_ps(t0, t0, _CMP_ORD_Q));
    t1 = _mm256_and_ps(t1, _mm256_cmp_ps(t1, t1, _CMP_ORD_Q));
    __m256i i0 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(t0), lo), hi);
    __m256i i1 = _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(t1), lo), hi);
    return _mm256_permute4x64_epi64(_mm256_packs_epi32(i0, i1), 0xD8);
}
/* Quantize rows i0 .. i0+MR-1 of X (contiguous rows, stride xs_n; rows >= n are zero) with
 * their inv = 127 / max|row| (0 for zero / NaN-only / inf rows: x * 0 is 0 or NaN -> 0, the
 * zero row czk_quant_row gives) straight into the GEMM's A tile ap[kp*MR + m] = the int16
 * pair (q[2kp], q[2kp+1]), kp < nkpf (zero past cols) -- bit-identical to quant_row_avx2 then
 * pack_a16, without the int16 row buffer and the scalar pair-by-pair pack: 16 columns of
 * the MR rows at a time, an MR x 8 transpose of int32 pairs. MR == 6 stores 8 int32 per kp
 * (overlapping, in increasing order): the caller leaves 2 int32 of slack past the tiles. */
CZK_T_AVX2 static inline __attribute__((always_inline)) void
quant_tile_mr(const float *x, int64_t xs_n, int64_t n, int64_t i0, const int MR, int64_t cols,
              const float *inv, int32_t *ap) {
    int64_t nkpf = (cols + 1) / 2, c = 0;
    const float *rp[6];
    __m256 vi[6];
    _Pragma("GCC unroll 6") for (int m = 0; m < MR; m++) {
        /* rows past n: row 0 with a zero scale (quantizes to zeros: finite * 0 = 0, and
         * NaN / inf * 0 = NaN -> 0) */
        rp[m] = x + (i0 + m < n ? (i0 + m) * xs_n : 0);
        vi[m] = _mm256_set1_ps(i0 + m < n ? inv[i0 + m] : 0.f);
    }
    int32_t tail[8 * 6 + 8];
    for (; c < cols; c += 16) {
        __m256i r[8];
        int full = c + 16 <= cols;
        if (full) {
            _Pragma("GCC unroll 6") for (int m = 0; m < MR; m++)
                r[m] = quant16_pairs(rp[m] + c, vi[m]);
        } else {   /* the last 1..15 columns: masked loads read +0.0 past cols (-> 0) */
            const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
            __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(cols - c)), lane);
            __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(cols - c - 8)), lane);
            for (int m = 0; m < MR; m++) {
                float t16[16];
                _mm256_storeu_ps(t16, _mm256_maskload_ps(rp[m] + c, m0));
                _mm256_storeu_ps(t16 + 8, _mm256_maskload_ps(rp[m] + c + 8, m1));
                r[m] = quant16_pairs(t16, vi[m]);
            }
        }
        int32_t *d = full ? ap + (c / 2) * MR : tail;
        if (MR == 4) {
            __m256i t0 = _mm256_unpacklo_epi32(r[0], r[1]), t1 = _mm256_unpackhi_epi32(r[0], r[1]);
            __m256i t2 = _mm256_unpacklo_epi32(r[2], r[3]), t3 = _mm256_unpackhi_epi32(r[2], r[3]);
            __m256i u0 = _mm256_unpacklo_epi64(t0, t2), u1 = _mm256_unpackhi_epi64(t0, t2);
            __m256i u2 = _mm256_unpacklo_epi64(t1, t3), u3 = _mm256_unpackhi_epi64(t1, t3);
            _mm256_storeu_si256((__m256i *)d, _mm256_permute2x128_si256(u0, u1, 0x20));
            _mm256_storeu_si256((__m256i *)(d + 8), _mm256_permute2x128_si256(u2, u3, 0x20));
            _mm256_storeu_si256((__m256i *)(d + 16), _mm256_permute2x128_si256(u0, u1, 0x31));
            _mm256_storeu_si256((__m256i *)(d + 24), _mm256_permute2x128_si256(u2, u3, 0x31));
        } else {
            r[6] = r[7] = _mm256_setzero_si256();
            tr8x8(r);
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
                _mm256_storeu_si256((__m256i *)(d + q * MR), r[q]);
        }
        if (!full) memcpy(ap + (c / 2) * MR, tail, (size_t)((nkpf - c / 2) * MR) * 4);
    }
}
CZK_T_AVX2 static void quant_tile_a(const float *x, int64_t xs_n, int64_t n, int64_t i0,
                                    int MR, int64_t cols, const float *inv, int32_t *ap) {
    if (MR == 4) quant_tile_mr(x, xs_n, n, i0, 4, cols, inv, ap);
    else quant_tile_mr(x, xs_n, n, i0, 6, cols, inv, ap);
}

/* The same quantization into the quad kernel's A tile: ap[kq*MR + m] = the int8 quad
 * (q[4kq] .. q[4kq+3]) of row i0+m, kq < ceil(cols / 4), zero past cols and for rows >= n
 * (zero scale) -- the same values quant_row_avx2 gives, 16 columns of a row at a time. */
CZK_T_AVX2 static void quant_tile_q(const float *x, int64_t xs_n, int64_t n, int64_t i0,
                                    int MR, int64_t cols, const float *inv, int32_t *ap) {
    int64_t nkq = (cols + 3) / 4;
    const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    for (int m = 0; m < MR; m++) {
        const float *rp = x + (i0 + m < n ? (i0 + m) * xs_n : 0);
        __m256 vi = _mm256_set1_ps(i0 + m < n ? inv[i0 + m] : 0.f);
        for (int64_t c = 0; c < cols; c += 16) {
            __m256i r;
            if (c + 16 <= cols) {
                r = quant16_pairs(rp + c, vi);
            } else {   /* the last 1..15 columns: masked loads read +0.0 past cols (-> 0) */
                float t16[16];
                __m256i m0 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(cols - c)), lane);
                __m256i m1 = _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(cols - c - 8)), lane);
                _mm256_storeu_ps(t16, _mm256_maskload_ps(rp + c, m0));
                _mm256_storeu_ps(t16 + 8, _mm256_maskload_ps(rp + c + 8, m1));
                r = quant16_pairs(t16, vi);
            }
            int32_t q[4];
            _mm_storeu_si128((__m128i *)q, _mm_packs_epi16(_mm256_castsi256_si128(r),
                                                           _mm256_extracti128_si256(r, 1)));
            for (int t = 0; t < 4 && c / 4 + t < nkq; t++) ap[(c / 4 + t) * MR + m] = q[t];
        }
    }
}

CZK_T_AVX2 static inline int32_t hsum8i(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
    return _mm_cvtsi128_si32(s);
}

/* GEMV core: out[j] = sum_{c0<=c<c1} xq[c] * w_j[c] for 4 weight rows (sign trick). */
CZK_T_AVX2 static inline void gemv4_i8(const int8_t *xq, const int8_t *w0, const int8_t *w1,
                                       const int8_t *w2, const int8_t *w3, int64_t c0,
                                       int64_t c1, int32_t out[4]) {
    const __m256i ones = _mm256_set1_epi16(1);
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    int64_t c = c0;
#define GV_STEP(A, W)                                                                         \
    {                                                                                         \
        __m256i wv = _mm256_loadu_si256((const __m256i *)((W) + c));                          \
        __m256i p = _mm256_maddubs_epi16(_mm256_abs_epi8(wv), _mm256_sign_epi8(xv, wv));      \
        A = _mm256_add_epi32(A, _mm256_madd_epi16(p, ones));                                  \
    }
    for (; c + 32 <= c1; c += 32) {
        __m256i xv = _mm256_loadu_si256((const __m256i *)(xq + c));
        GV_STEP(a0, w0) GV_STEP(a1, w1) GV_STEP(a2, w2) GV_STEP(a3, w3)
    }
#undef GV_STEP
    int32_t s0 = hsum8i(a0), s1 = hsum8i(a1), s2 = hsum8i(a2), s3 = hsum8i(a3);
    for (; c < c1; c++) {
        int32_t xv = xq[c];
        s0 += xv * w0[c]; s1 += xv * w1[c]; s2 += xv * w2[c]; s3 += xv * w3[c];
    }
    out[0] = s0; out[1] = s1; out[2] = s2; out[3] = s3;
}

/* Shared finishing of one int32 accumulator: zero-point fold; returns s. */
#define ZP_FOLD(s, r, g, xsv) (Z ? (s) - Z[sidx(w, (r), (g))] * (xsv) : (s))

/* GEMV over weight rows [ra, rb) for one quantized activation row xq (sum per group xsg).
 * acc_out != NULL: int32 accumulators out (test API layout, row i); else float output. */
CZK_T_AVX2 static void gemv_rows_i8(const cz_form *w, int64_t ra, int64_t rb, int64_t r0,
                                    const int8_t *xq, const int32_t *xsg, float sx,
                                    const float *bias, float *yi, int64_t ys_r, int acc,
                                    int32_t *acc_out) {
    int64_t cols = w->cols, ng = ngroups_of(w), rows = w->rows;
    int64_t G = w->u.affine.group > 0 ? w->u.affine.group : cols;
    const int8_t *Q = w->u.affine.q;
    const float *S = w->u.affine.scale;
    const int32_t *Z = w->u.affine.zp;
    for (int64_t r = ra; r < rb; r += 4) {
        int nr = rb - r < 4 ? (int)(rb - r) : 4;
        const int8_t *wp[4];
        for (int j = 0; j < 4; j++) wp[j] = Q + (r + (j < nr ? j : 0)) * cols;
        float f[4] = {0.f, 0.f, 0.f, 0.f};
        for (int64_t g = 0; g < ng; g++) {
            int64_t c0 = g * G, c1 = c0 + G < cols ? c0 + G : cols;
            int32_t o[4];
            gemv4_i8(xq, wp[0], wp[1], wp[2], wp[3], c0, c1, o);
            for (int j = 0; j < nr; j++) {
                int32_t s = ZP_FOLD(o[j], r + j, g, xsg ? xsg[g] : 0);
                if (acc_out) acc_out[(r + j) * ng + g] = s;
                else f[j] += (float)s * S[sidx(w, r + j, g)];
            }
        }
        if (!acc_out)
            for (int j = 0; j < nr; j++) {
                float v = f[j] * sx + (bias ? bias[r + j - r0] : 0.f);
                float *p = &yi[(r + j - r0) * ys_r];
                *p = acc ? *p + v : v;
            }
    }
    (void)rows;
}

/* GEMM: X (n rows of int16, stride ldx, zero padded by >= 1 element past cols) against
 * weight rows [r0, r1). xs: per-(row, group) activation sums (zero points) or NULL. */
static cz_status gemm_rows_i8(const cz_form *w, int64_t r0, int64_t r1, int64_t n,
                              const int16_t *x16, int64_t ldx, const int32_t *apf_in,
                              const int32_t *xs, const float *sx, const float *bias, float *y,
                              int64_t ys_n, int64_t ys_r, int acc, int32_t *acc_out,
                              int quad, cz_ws *ws);

CZK_T_AVX2 static void gemm_block_i8(const cz_form *w, int64_t r0, int64_t jb0, int64_t nc,
                                     int64_t n, const int16_t *x16, int64_t ldx,
                                     const int32_t *xs, const float *sx,
                                     const float *bias, float *y, int64_t ys_n, int64_t ys_r,
                                     int acc, int32_t *acc_out, uk16_sel u, int16_t *bp,
                                     int32_t *ib, float *fb, int32_t *ap,
                                     const int32_t *apf, int64_t nkpf, int64_t kce, int quad) {
    int64_t cols = w->cols, ng = ngroups_of(w), rows = w->rows;
    int64_t G = w->u.affine.group > 0 ? w->u.affine.group : cols;
    const int8_t *Q = w->u.affine.q;
    const float *S = w->u.affine.scale;
    const int32_t *Z = w->u.affine.zp;
    int MR = u.MR, NR = u.NR;
    int npan = (int)((nc + NR - 1) / NR);
    int64_t NCp = (int64_t)npan * NR;
    int64_t rbase = r0 + jb0;   /* first weight row of the block */
    for (int64_t k0 = 0; k0 < cols;) {
        int64_t g = k0 / G, ge = (g + 1) * G < cols ? (g + 1) * G : cols;
        int64_t k1 = k0 + kce < ge ? k0 + kce : ge;
        int first = k0 == g * G;
        int64_t kc = k1 - k0, nkp = (kc + 1) / 2;
        if (quad) {   /* weights packed at load ([kq][8][4] sub-panels), A quad tiles */
            const int8_t *p8 = w->affine_p8;
            int64_t nkq = (kc + 3) / 4, ats = nkpf * MR;   /* (nkpf counts quads here) */
            const int32_t *at = apf + (k0 / 4) * MR;
            for (int p = 0; p < npan; p++) {
                const int8_t *b8[3];
                for (int j = 0; j < NR / 8; j++)
                    b8[j] = p8 + (((rbase + (int64_t)p * NR) / 8 + j) * nkpf + k0 / 4) * 32;
                for (int64_t i0 = 0; i0 < n; i0 += MR)
                    u.ukq(nkq, at + (i0 / MR) * ats, b8, ib + i0 * NCp + p * NR, NCp, !first);
            }
        } else {
            pack_w16(Q + rbase * cols, cols, nc, npan, NR, k0, kc, bp);
            const int32_t *at;   /* A tiles for this segment: [i0 tile][kp][MR], stride ats */
            int64_t ats;
            if (apf) {           /* packed once per call (segments start at even k) */
                at = apf + (k0 / 2) * MR;
                ats = nkpf * MR;
            } else {             /* odd group boundaries: pack this segment */
                for (int64_t i0 = 0; i0 < n; i0 += MR) {
                    const int16_t *a[8];
                    for (int m = 0; m < MR; m++)
                        a[m] = i0 + m < n ? x16 + (i0 + m) * ldx + k0 : NULL;
                    pack_a16(a, MR, nkp, ap + i0 * nkp);
                }
                at = ap;
                ats = nkp * MR;
            }
            for (int p = 0; p < npan; p++)   /* the weight panel stays in L1 over the batch */
                for (int64_t i0 = 0; i0 < n; i0 += MR)
                    u.uk(nkp, at + (i0 / MR) * ats, bp + (int64_t)p * nkp * NR * 2,
                         ib + i0 * NCp + p * NR, NCp, !first);
        }
        if (k1 == ge) {   /* group g complete */
            float swv[384], bvv[384];
            int32_t zv[384];
            for (int64_t j = 0; j < nc; j++) {
                int64_t si = sidx(w, rbase + j, g);
                swv[j] = S[si];
                zv[j] = Z ? Z[si] : 0;
                bvv[j] = bias ? bias[rbase + j - r0] : 0.f;
            }
            for (int64_t i = 0; i < n; i++) {
                const int32_t *ir = ib + i * NCp;
                int32_t xsv = xs ? xs[i * ng + g] : 0;
                if (acc_out) {
                    for (int64_t j = 0; j < nc; j++)
                        acc_out[(i * rows + rbase + j) * ng + g] = ir[j] - zv[j] * xsv;
                    continue;
                }
                float *fr = fb + i * NCp;
                if (ng > 1) {
                    for (int64_t j = 0; j < nc; j++) {
                        float t = (float)(ir[j] - zv[j] * xsv) * swv[j];
                        fr[j] = g == 0 ? 0.f + t : fr[j] + t;
                    }
                    continue;
                }
                /* ng == 1: straight to Y, 8 outputs at a time */
                float *yo = y + i * ys_n + (rbase - r0) * ys_r;
                const __m256 vsx = _mm256_set1_ps(sx[i]);
                const __m256i vxs = _mm256_set1_epi32(xsv);
                int64_t j = 0;
                for (; j + 8 <= nc; j += 8) {
                    __m256i sv = _mm256_loadu_si256((const __m256i *)(ir + j));
                    if (Z)
                        sv = _mm256_sub_epi32(sv, _mm256_mullo_epi32(_mm256_loadu_si256((const __m256i *)(zv + j)), vxs));
                    __m256 t = _mm256_mul_ps(_mm256_cvtepi32_ps(sv), _mm256_loadu_ps(swv + j));
                    __m256 v = _mm256_add_ps(_mm256_mul_ps(t, vsx), _mm256_loadu_ps(bvv + j));
                    if (ys_r == 1) {
                        if (acc) v = _mm256_add_ps(v, _mm256_loadu_ps(yo + j));
                        _mm256_storeu_ps(yo + j, v);
                    } else {
                        float tv[8];
                        _mm256_storeu_ps(tv, v);
                        for (int l = 0; l < 8; l++) {
                            float *o = yo + (j + l) * ys_r;
                            *o = acc ? *o + tv[l] : tv[l];
                        }
                    }
                }
                for (; j < nc; j++) {
                    float t = (float)(ir[j] - zv[j] * xsv) * swv[j];
                    float v = t * sx[i] + bvv[j];
                    float *o = yo + j * ys_r;
                    *o = acc ? *o + v : v;
                }
            }
        }
        k0 = k1;
    }
    if (ng > 1 && !acc_out)
        for (int64_t i = 0; i < n; i++)
            for (int64_t j = 0; j < nc; j++) {
                int64_t r = rbase + j;
                float v = fb[i * NCp + j] * sx[i] + (bias ? bias[r - r0] : 0.f);
                float *o = &y[i * ys_n + (r - r0) * ys_r];
                *o = acc ? *o + v : v;
            }
}

static cz_status gemm_rows_i8(const cz_form *w, int64_t r0, int64_t r1, int64_t n,
                              const int16_t *x16, int64_t ldx, const int32_t *apf_in,
                              const int32_t *xs, const float *sx, const float *bias, float *y,
                              int64_t ys_n, int64_t ys_r, int acc, int32_t *acc_out,
                              int quad, cz_ws *ws) {
    int64_t R = r1 - r0, cols = w->cols;
    uk16_sel u = pick_uk16(n, R, quad);
    int64_t NC = (int64_t)u.NR * 16;
    int64_t nblk = (R + NC - 1) / NC;
    int nt = czk_threads(ws, (double)R * cols * (double)n);
    if (nt > nblk) nt = (int)nblk;
    int64_t npad = (n + u.MR - 1) / u.MR * u.MR;
    int64_t kcm = cols < I8_KC ? cols : I8_KC;
    size_t bpsz = (size_t)NC * ((kcm + 2) / 2 * 2) * 2 + 64;
    size_t ibsz = (size_t)npad * NC * 4;
    size_t apsz = (size_t)npad * ((kcm + 2) / 2) * 4 + 64;
    size_t per = bpsz + 2 * ibsz + apsz + 256;
    char *buf = czk_scratch(ws, (size_t)nt * per);
    if (!buf) return CZ_ERR_MEMORY;
    /* A packed once for the whole K when every segment starts at an even column */
    int64_t G = w->u.affine.group > 0 ? w->u.affine.group : cols;
    /* quad: apf_in holds quad tiles ([kq][MR], kq < ceil(cols / 4)) for the quad kernel */
    int64_t nkpf = quad ? (cols + 3) / 4 : (cols + 1) / 2;
    const int32_t *apf = apf_in;   /* (op_avx2: quantized straight into the tiles) */
    /* K segment length: <= I8_KC, even split of a group (no tiny last segment), x16 */
    int64_t gc = G < cols ? G : cols, nseg = (gc + I8_KC - 1) / I8_KC;
    int64_t kce = ((gc + nseg - 1) / nseg + 15) / 16 * 16;
    if (!apf && (G % 2 == 0 || G >= cols)) {
        int32_t *af = czk_scratch(ws, (size_t)npad * nkpf * 4);
        if (!af) return CZ_ERR_MEMORY;
        for (int64_t i0 = 0; i0 < n; i0 += u.MR) {
            const int16_t *a[8];
            for (int m = 0; m < u.MR; m++) a[m] = i0 + m < n ? x16 + (i0 + m) * ldx : NULL;
            pack_a16(a, u.MR, nkpf, af + i0 * nkpf);
        }
        apf = af;
    }
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(dynamic, 1)
    for (int64_t jb = 0; jb < nblk; jb++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        char *tb = buf + (size_t)tid * per;
        int16_t *bp = (int16_t *)(((uintptr_t)tb + 63) & ~(uintptr_t)63);
        int32_t *ib = (int32_t *)(((uintptr_t)bp + bpsz + 63) & ~(uintptr_t)63);
        float *fb = (float *)(((uintptr_t)ib + ibsz + 63) & ~(uintptr_t)63);
        int32_t *ap = (int32_t *)(((uintptr_t)fb + ibsz + 63) & ~(uintptr_t)63);
        int64_t j0 = jb * NC, nc = R - j0 < NC ? R - j0 : NC;
        gemm_block_i8(w, r0, j0, nc, n, x16, ldx, xs, sx, bias, y, ys_n, ys_r, acc,
                      acc_out, u, bp, ib, fb, ap, apf, nkpf, kce, quad);
    }
    return CZ_OK;
}

/* AVX2 paths usable: AVX2 selected and not dispatching to VNNI. */
static int use_avx2_exact(int isa) {
    int f = czk_features();
    if (!(f & CZK_F_AVX2) || isa < CZK_ISA_AVX2) return 0;
    if (isa >= CZK_ISA_AVX512 && (f & CZK_F_VNNI)) return 0;
    return 1;
}

/* Integer accumulators through the AVX2 paths (test API). */
static cz_status acc_avx2(const cz_form *w, int64_t n, const int8_t *xq, int64_t ldq,
                          int32_t *acc, cz_ws *ws) {
    int64_t cols = w->cols, rows = w->rows, ng = ngroups_of(w);
    int32_t *xs = w->u.affine.zp ? group_sums(w, n, xq, ldq, ws) : NULL;
    if (w->u.affine.zp && !xs) return CZ_ERR_MEMORY;
    if (n < 4 || cols <= 0) {   /* (no columns: the GEMM would divide by zero) */
        for (int64_t i = 0; i < n; i++)
            gemv_rows_i8(w, 0, rows, 0, xq + i * ldq, xs ? xs + i * ng : NULL, 0.f, NULL, NULL,
                         0, 0, acc + i * rows * ng);
        return CZ_OK;
    }
    int64_t ldx = cols + 2;
    int16_t *x16 = czk_scratch(ws, (size_t)n * ldx * 2);
    if (!x16) return CZ_ERR_MEMORY;
    for (int64_t i = 0; i < n; i++) {
        for (int64_t c = 0; c < cols; c++) x16[i * ldx + c] = xq[i * ldq + c];
        x16[i * ldx + cols] = x16[i * ldx + cols + 1] = 0;
    }
    return gemm_rows_i8(w, 0, rows, n, x16, ldx, NULL, xs, NULL, NULL, NULL, 0, 0, 0, acc, 0, ws);
}

/* batch >= 4, no zero points, contiguous rows, A packed whole (K segments start at even
 * columns): each row's scale from its max, then the rows quantized straight into the GEMM's
 * A tiles -- no int8 / int16 row copies: int8 quads for the quad kernel when the weights
 * were packed at load (czk_affine_prepare; segments then start at multiples of 4), else
 * int16 pairs (quant_tile_a) for the int16 kernel on weights packed per call. */
static cz_status op_avx2_fused(CZK_OP_ARGS, cz_ws *ws) {
    (void)xs_c;   /* 1 */
    int64_t cols = w->cols;
    int quad = w->affine_p8 && r0 % 8 == 0;
    int64_t nk = quad ? (cols + 3) / 4 : (cols + 1) / 2;
    uk16_sel u = pick_uk16(n, r1 - r0, quad);
    int64_t npad = (n + u.MR - 1) / u.MR * u.MR;
    float *sx = czk_scratch(ws, (size_t)n * 2 * sizeof(float));
    int32_t *apf = czk_scratch(ws, (size_t)npad * nk * 4 + 32);   /* +2 int32: MR 6 stores */
    if (!sx || !apf) return CZ_ERR_MEMORY;
    float *inv = sx + n;
    for (int64_t i = 0; i < n; i++) {
        float a = row_amax_avx2(x + i * xs_n, cols);
        if (!(a > 0.f) || a > 3.0e38f) { sx[i] = 0.f; inv[i] = 0.f; }
        else { sx[i] = a / 127.f; inv[i] = 127.f / a; }
    }
    for (int64_t i0 = 0; i0 < n; i0 += u.MR) {
        if (quad) quant_tile_q(x, xs_n, n, i0, u.MR, cols, inv, apf + i0 * nk);
        else quant_tile_a(x, xs_n, n, i0, u.MR, cols, inv, apf + i0 * nk);
    }
    return gemm_rows_i8(w, r0, r1, n, NULL, 0, apf, NULL, sx, bias, y, ys_n, ys_r, acc, NULL,
                        quad, ws);
}

/* The float op through the AVX2 paths. */
static cz_status op_avx2(CZK_OP_ARGS, cz_ws *ws) {
    int64_t cols = w->cols, ng = ngroups_of(w);
    int64_t Gw = w->u.affine.group;
    if (n >= 4 && cols > 0 && xs_c == 1 && !w->u.affine.zp &&
        (Gw <= 0 || Gw % 2 == 0 || Gw >= cols))
        return op_avx2_fused(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc, ws);
    int64_t ldq = cols + 32, ldx = cols + 2;
    int small = n < 4 || cols <= 0;   /* (no columns: the GEMV loop writes the bias) */
    int8_t *xq = czk_scratch(ws, (size_t)n * ldq);
    int16_t *x16 = small ? NULL : czk_scratch(ws, (size_t)n * ldx * 2);
    float *sx = czk_scratch(ws, (size_t)n * sizeof(float));
    if (!xq || !sx || (!small && !x16)) return CZ_ERR_MEMORY;
    float *tmp = NULL;
    if (xs_c != 1) {
        tmp = czk_scratch(ws, (size_t)(cols ? cols : 1) * sizeof(float));
        if (!tmp) return CZ_ERR_MEMORY;
    }
    for (int64_t i = 0; i < n; i++) {
        const float *xr = x + i * xs_n;
        if (xs_c != 1) {
            for (int64_t c = 0; c < cols; c++) tmp[c] = xr[c * xs_c];
            xr = tmp;
        }
        sx[i] = quant_row_avx2(xr, cols, xq + i * ldq, small ? NULL : x16 + i * ldx, ldx);
    }
    int32_t *xs = w->u.affine.zp ? group_sums(w, n, xq, ldq, ws) : NULL;
    if (w->u.affine.zp && !xs) return CZ_ERR_MEMORY;
    if (!small)
        return gemm_rows_i8(w, r0, r1, n, x16, ldx, NULL, xs, sx, bias, y, ys_n, ys_r, acc, NULL,
                            0, ws);
    int64_t nrb = (r1 - r0 + 3) / 4;
    int nt = czk_threads(ws, (double)(r1 - r0) * cols * (double)n);
    if (nt > nrb) nt = (int)nrb;
    int64_t chunk = (nrb + nt - 1) / nt * 4;
    for (int64_t i = 0; i < n; i++) {
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int t = 0; t < nt; t++) {
            int64_t ra = r0 + t * chunk, rb = ra + chunk < r1 ? ra + chunk : r1;
            if (ra < rb)
                gemv_rows_i8(w, ra, rb, r0, xq + i * ldq, xs ? xs + i * ng : NULL, sx[i], bias,
                             y + i * ys_n, ys_r, acc, NULL);
        }
    }
    return CZ_OK;
}
#endif /* CZK_X86 */

#if CZK_X86
/* am[j] = max(am[j], max_k |col[k*ldp + j]|) for j < npad (multiple of 16); NaN ignored */
CZK_T_AVX2 static void amax_cols_avx2(const float *col, int64_t ldp, int64_t K, int64_t npad, float *am) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    for (int64_t j = 0; j < npad; j += 16) {
        __m256 m0 = _mm256_loadu_ps(am + j), m1 = _mm256_loadu_ps(am + j + 8);
        for (int64_t k = 0; k < K; k++) {
            const float *c = col + k * ldp + j;
            m0 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(c), absm), m0);
            m1 = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(c + 8), absm), m1);
        }
        _mm256_storeu_ps(am + j, m0);
        _mm256_storeu_ps(am + j + 8, m1);
    }
}
#endif
/* ---- int8 convolution over im2col columns (AVX2 exact) ---------------------------------
 * Same semantics as im2col patches + czk_affine_op (the reference): every output pixel's
 * patch is quantized with its own scale max|patch| / 127. The columns (K x pixels, float)
 * are read twice: once for the per-pixel max, once to quantize + pack 16-pixel panels
 * ([k/2][16][2] int16, one L1-sized panel at a time), then the 6x16 int16 micro-kernel runs
 * with A = the weight rows (packed once per conv) and the output goes straight to NCHW. */
#if CZK_X86
struct czk_i8conv {
    const cz_form *w;
    int64_t r0, r1, K, nkp;
    int32_t *ap;   /* weight tiles [tile][kp][6] */
};

/* weight tile for the conv micro-kernel: dst[kp*6 + m] = pair (q[rb+m][2kp], q[rb+m][2kp+1]),
 * zero past K and for rows >= r1. 16 columns of 6 rows at a time through an 8x8 int32
 * transpose (2 zero rows); each 32-byte store also covers the next kp's first 2 slots,
 * which the next store rewrites (the caller leaves 8 int32 of slack at the end). */
CZK_T_AVX2 static void pack_wtile6(const int8_t *Q, int64_t K, int64_t rb, int64_t r1,
                                   int64_t nkp, int32_t *dst) {
    const int8_t *rp[6];
    for (int m = 0; m < 6; m++) rp[m] = rb + m < r1 ? Q + (rb + m) * K : NULL;
    int64_t k = 0;
    /* (fully unrolled, rows past r1 read row rb and are masked to zero: the 8 vectors stay
     * in registers -- the rolled loop went through the stack, ~2x slower) */
    int nrow = r1 - rb < 6 ? (int)(r1 - rb) : 6;
    const int8_t *r0p = Q + rb * K;
    for (; k + 16 <= K; k += 16) {
        __m256i r[8];
        _Pragma("GCC unroll 6") for (int m = 0; m < 6; m++) {
            const int8_t *src = r0p + (m < nrow ? m : 0) * K + k;
            __m256i v = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)src));
            r[m] = m < nrow ? v : _mm256_setzero_si256();
        }
        r[6] = r[7] = _mm256_setzero_si256();
        tr8x8(r);
        _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++)
            _mm256_storeu_si256((__m256i *)(dst + (k / 2 + q) * 6), r[q]);
    }
    for (int64_t kp = k / 2; kp < nkp; kp++)
        for (int m = 0; m < 6; m++) {
            int16_t lo = rp[m] && 2 * kp < K ? rp[m][2 * kp] : 0;
            int16_t hi = rp[m] && 2 * kp + 1 < K ? rp[m][2 * kp + 1] : 0;
            dst[kp * 6 + m] = (int32_t)((uint32_t)(uint16_t)lo | ((uint32_t)(uint16_t)hi << 16));
        }
}

czk_i8conv *czk_affine_conv_begin(const cz_form *w, int64_t r0, int64_t r1, cz_ws *ws) {
    if (w->kind != CZ_FORM_AFFINE || !use_avx2_exact(czk_isa())) return NULL;
    if (ngroups_of(w) != 1 || r1 <= r0) return NULL;
    int64_t K = w->cols, nkp = (K + 1) / 2, R = r1 - r0, ntile = (R + 5) / 6;
    czk_i8conv *c = czk_scratch(ws, sizeof *c);
    if (!c) return NULL;
    c->ap = czk_scratch(ws, ((size_t)ntile * nkp * 6 + 8) * 4);   /* +8: overlapping stores */
    if (!c->ap) return NULL;
    c->w = w; c->r0 = r0; c->r1 = r1; c->K = K; c->nkp = nkp;
    for (int64_t t = 0; t < ntile; t++) pack_wtile6(w->u.affine.q, K, r0 + t * 6, r1, nkp,
                                                    c->ap + t * nkp * 6);
    return c;
}

/* one weight row (cg x khw bytes, (ci, t) order) to tap-major dst[t * cgp + ci] (zero at
 * ci = cg when cgp > cg). A byte loop costs ~2.5 cycles per weight, as much as a LeNet-5
 * conv2's whole quantization, so blocks of 8 channels x 16 taps go through an SSE2 8 x 16
 * byte transpose (16-byte loads only where `avail` bytes from src are readable). */
CZK_T_AVX2 static void tapmajor_row(const int8_t *src, int64_t avail, int64_t cg, int64_t khw,
                                    int64_t cgp, int8_t *dst) {
    int64_t ci0 = 0, done = 0;
    for (; ci0 + 8 <= cg + 7 && !done; ci0 += 8) {
        if (ci0 + 8 > cg) {   /* a last partial block overlaps the previous one (same bytes) */
            if (cg < 8) break;
            ci0 = cg - 8;
        }
        if ((ci0 + 7) * khw + ((khw - 1) / 16) * 16 + 16 > avail) break;
        done = ci0 + 8 == cg;
        for (int64_t t0 = 0; t0 < khw; t0 += 16) {
            __m128i r[8];
            _Pragma("GCC unroll 8") for (int i = 0; i < 8; i++)
                r[i] = _mm_loadu_si128((const __m128i *)(src + (ci0 + i) * khw + t0));
            __m128i a0 = _mm_unpacklo_epi8(r[0], r[1]), a1 = _mm_unpackhi_epi8(r[0], r[1]);
            __m128i a2 = _mm_unpacklo_epi8(r[2], r[3]), a3 = _mm_unpackhi_epi8(r[2], r[3]);
            __m128i a4 = _mm_unpacklo_epi8(r[4], r[5]), a5 = _mm_unpackhi_epi8(r[4], r[5]);
            __m128i a6 = _mm_unpacklo_epi8(r[6], r[7]), a7 = _mm_unpackhi_epi8(r[6], r[7]);
            __m128i b0 = _mm_unpacklo_epi16(a0, a2), b1 = _mm_unpackhi_epi16(a0, a2);
            __m128i b2 = _mm_unpacklo_epi16(a4, a6), b3 = _mm_unpackhi_epi16(a4, a6);
            __m128i b4 = _mm_unpacklo_epi16(a1, a3), b5 = _mm_unpackhi_epi16(a1, a3);
            __m128i b6 = _mm_unpacklo_epi16(a5, a7), b7 = _mm_unpackhi_epi16(a5, a7);
            /* c[q]: taps 2q (low 8 bytes) and 2q + 1 (high), channels ci0 .. ci0 + 7 */
            __m128i c[8] = {_mm_unpacklo_epi32(b0, b2), _mm_unpackhi_epi32(b0, b2),
                            _mm_unpacklo_epi32(b1, b3), _mm_unpackhi_epi32(b1, b3),
                            _mm_unpacklo_epi32(b4, b6), _mm_unpackhi_epi32(b4, b6),
                            _mm_unpacklo_epi32(b5, b7), _mm_unpackhi_epi32(b5, b7)};
            _Pragma("GCC unroll 8") for (int q = 0; q < 8; q++) {
                int64_t t = t0 + 2 * q;
                if (t < khw) _mm_storel_epi64((__m128i *)(dst + t * cgp + ci0), c[q]);
                if (t + 1 < khw)
                    _mm_storel_epi64((__m128i *)(dst + (t + 1) * cgp + ci0), _mm_srli_si128(c[q], 8));
            }
        }
    }
    if (done) ci0 = cg;
    for (int64_t t = 0; t < khw; t++) {
        for (int64_t ci = ci0; ci < cg; ci++) dst[t * cgp + ci] = src[ci * khw + t];
        if (cgp > cg) dst[t * cgp + cg] = 0;
    }
}

/* The same plan over the weight columns in TAP-MAJOR order: k' = t * cgp + ci for the
 * (oc, ci, t) layout's k = ci * khw + t (t = ky * kw + kx), cgp = cg rounded up to even
 * (a zero column for the odd channel). The int32 accumulators are exact, so their value
 * does not depend on the order of k: results are bit-identical to the (ci, t) order. With
 * an even cgp every int16 pair (k', k'+1) is two channels of the same tap, which lets
 * czk_affine_conv_qpacked's pack quantize straight from the image (two channel planes at
 * the same offsets) with no float panel in between. */
czk_i8conv *czk_affine_conv_begin_tapmajor(const cz_form *w, int64_t r0, int64_t r1,
                                           int64_t cg, int64_t khw, cz_ws *ws) {
    if (w->kind != CZ_FORM_AFFINE || !use_avx2_exact(czk_isa())) return NULL;
    if (ngroups_of(w) != 1 || r1 <= r0 || cg <= 0 || khw <= 0 || w->cols != cg * khw)
        return NULL;
    int64_t cgp = (cg + 1) / 2 * 2, Kp = khw * cgp, nkp = Kp / 2, R = r1 - r0;
    int64_t ntile = (R + 5) / 6;
    czk_i8conv *c = czk_scratch(ws, sizeof *c);
    int8_t *qp = czk_scratch(ws, (size_t)(R * Kp));
    if (!c || !qp) return NULL;
    c->ap = czk_scratch(ws, ((size_t)ntile * nkp * 6 + 8) * 4);   /* +8: overlapping stores */
    if (!c->ap) return NULL;
    const int8_t *Q = w->u.affine.q;
    for (int64_t r = 0; r < R; r++)
        tapmajor_row(Q + (r0 + r) * w->cols, (w->rows - r0 - r) * w->cols, cg, khw, cgp,
                     qp + r * Kp);
    c->w = w; c->r0 = r0; c->r1 = r1; c->K = Kp; c->nkp = nkp;
    for (int64_t t = 0; t < ntile; t++) pack_wtile6(qp, Kp, t * 6, R, nkp, c->ap + t * nkp * 6);
    return c;
}

/* quantize rows 2 kp0 .. 2 kp1 - 1 of 16 pixel columns (col: row 2 kp0, stride ldp, from
 * column j0) with the pixels' 127 / max |patch| into the int16 panel bp ([kp][16][2], kp
 * absolute), adding the rows into xs[0..15] (per-pixel sums, for zero points) */
CZK_T_AVX2 static void quant_block_i8(const czk_i8conv *cv, const float *col, int64_t ldp,
                                      int64_t j0, int64_t kp0, int64_t kp1, const float *inv,
                                      int plain, int16_t *bp, int32_t *xs) {
    const cz_form *w = cv->w;
    int64_t K = cv->K;
    const int32_t *Z = w->u.affine.zp;
    const __m256i lo = _mm256_set1_epi32(-127), hi = _mm256_set1_epi32(127);
    __m256 iv0 = _mm256_loadu_ps(inv + j0), iv1 = _mm256_loadu_ps(inv + j0 + 8);
    __m256i xs0 = _mm256_loadu_si256((const __m256i *)xs);
    __m256i xs1 = _mm256_loadu_si256((const __m256i *)(xs + 8));
#define QV(ptr, iv)                                                                           \
    ({                                                                                        \
        __m256 t_ = _mm256_mul_ps(_mm256_loadu_ps(ptr), iv);                                  \
        t_ = _mm256_and_ps(t_, _mm256_cmp_ps(t_, t_, _CMP_ORD_Q));                            \
        _mm256_min_epi32(_mm256_max_epi32(_mm256_cvtps_epi32(t_), lo), hi);                   \
    })
    /* plain: no NaN in the columns and every pixel's 127 / max finite, so |x * inv| <=
     * 127 (+ rounding) for every element: the NaN mask and the clamp are no-ops, skipped */
#define QP(ptr, iv) _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(ptr), iv))
    for (int64_t kp = kp0; kp < kp1; kp++) {
        const float *c0 = col + (2 * (kp - kp0)) * ldp + j0;
        __m256i a0, a1, b0, b1;
        if (plain) {
            a0 = QP(c0, iv0); a1 = QP(c0 + 8, iv1);
            if (2 * kp + 1 < K) { b0 = QP(c0 + ldp, iv0); b1 = QP(c0 + ldp + 8, iv1); }
            else { b0 = _mm256_setzero_si256(); b1 = b0; }
        } else {
            a0 = QV(c0, iv0); a1 = QV(c0 + 8, iv1);
            if (2 * kp + 1 < K) { b0 = QV(c0 + ldp, iv0); b1 = QV(c0 + ldp + 8, iv1); }
            else { b0 = _mm256_setzero_si256(); b1 = b0; }
        }
        if (Z) {
            xs0 = _mm256_add_epi32(xs0, _mm256_add_epi32(a0, b0));
            xs1 = _mm256_add_epi32(xs1, _mm256_add_epi32(a1, b1));
        }
        /* pair (a, b) per pixel: a's low 16 bits (|a| <= 127), b shifted into the high half */
        _mm256_store_si256((__m256i *)(bp + kp * 32),
                           _mm256_blend_epi16(a0, _mm256_slli_epi32(b0, 16), 0xAA));
        _mm256_store_si256((__m256i *)(bp + kp * 32 + 16),
                           _mm256_blend_epi16(a1, _mm256_slli_epi32(b1, 16), 0xAA));
    }
#undef QV
#undef QP
    _mm256_storeu_si256((__m256i *)xs, xs0);
    _mm256_storeu_si256((__m256i *)(xs + 8), xs1);
}

/* the int16 GEMM of every weight tile against the quantized panel bp, then y = acc * sw *
 * sx (+ bias) into 16 pixel columns from j0 (nj valid) */
CZK_T_AVX2 static void gemm_panel_i8(const czk_i8conv *cv, int64_t j0, int nj, const float *sx,
                                     const float *bias, float *y, int64_t ys_r,
                                     const int16_t *bp, const int32_t *xs) {
    const cz_form *w = cv->w;
    __m256i xs0 = _mm256_loadu_si256((const __m256i *)xs);
    __m256i xs1 = _mm256_loadu_si256((const __m256i *)(xs + 8));
    int64_t nkp = cv->nkp;
    const int32_t *Z = w->u.affine.zp;
    const float *S = w->u.affine.scale;
    int64_t R = cv->r1 - cv->r0;
    __m256 sx0 = _mm256_loadu_ps(sx + j0), sx1 = _mm256_loadu_ps(sx + j0 + 8);
    int32_t tile[6 * 16] __attribute__((aligned(32)));
    for (int64_t t = 0; t * 6 < R; t++) {
        int mr = R - t * 6 < 6 ? (int)(R - t * 6) : 6;
        if (mr <= 4) uk16_4of6x2(nkp, cv->ap + t * nkp * 6, bp, tile, 16, 0);
        else uk16_6x2(nkp, cv->ap + t * nkp * 6, bp, tile, 16, 0);
        for (int m = 0; m < mr; m++) {
            int64_t r = cv->r0 + t * 6 + m;
            int64_t si = sidx(w, r, 0);
            __m256 sw = _mm256_set1_ps(S[si]);
            __m256 bv = _mm256_set1_ps(bias ? bias[r - cv->r0] : 0.f);
            __m256i s0 = _mm256_load_si256((const __m256i *)(tile + m * 16));
            __m256i s1 = _mm256_load_si256((const __m256i *)(tile + m * 16 + 8));
            if (Z) {
                __m256i zv = _mm256_set1_epi32(Z[si]);
                s0 = _mm256_sub_epi32(s0, _mm256_mullo_epi32(zv, xs0));
                s1 = _mm256_sub_epi32(s1, _mm256_mullo_epi32(zv, xs1));
            }
            __m256 v0 = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s0), sw), sx0), bv);
            __m256 v1 = _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s1), sw), sx1), bv);
            float *yo = y + (r - cv->r0) * ys_r + j0;
            if (nj == 16) { _mm256_storeu_ps(yo, v0); _mm256_storeu_ps(yo + 8, v1); }
            else {
                float tv[16];
                _mm256_storeu_ps(tv, v0);
                _mm256_storeu_ps(tv + 8, v1);
                for (int j = 0; j < nj; j++) yo[j] = tv[j];
            }
        }
    }
}

CZK_T_AVX2 static void conv_panel_i8(const czk_i8conv *cv, const float *col, int64_t ldp,
                                     int64_t j0, int nj, const float *inv, const float *sx,
                                     const float *bias, float *y, int64_t ys_r, int16_t *bp,
                                     int plain) {
    int32_t xs[16] = {0};
    quant_block_i8(cv, col, ldp, j0, 0, cv->nkp, inv, plain, bp, xs);
    gemm_panel_i8(cv, j0, nj, sx, bias, y, ys_r, bp, xs);
}

cz_status czk_affine_conv_cols(const czk_i8conv *cv, const float *col, int64_t ldp, int64_t np,
                               const float *bias, float *y, int64_t ys_r, cz_ws *ws) {
    int64_t K = cv->K, npan = (np + 15) / 16, npad = npan * 16;
    float *inv = czk_scratch(ws, (size_t)npad * 2 * sizeof(float));
    if (!inv) return CZ_ERR_MEMORY;
    float *sx = inv + npad;
    /* per-pixel max |x| over the patch (NaN ignored, as czk_quant_row) */
    {
        float *am = sx;
        for (int64_t j = 0; j < npad; j++) am[j] = 0.f;
        amax_cols_avx2(col, ldp, K, npad, am);
        for (int64_t j = 0; j < npad; j++) {
            float a = am[j];
            if (j >= np || !(a > 0.f) || a > 3.0e38f) { inv[j] = 0.f; sx[j] = 0.f; }
            else { inv[j] = 127.f / a; sx[j] = a / 127.f; }
        }
    }
    int nt = czk_threads(ws, (double)(cv->r1 - cv->r0) * K * (double)np);
    if (nt > npan) nt = (int)npan;
    size_t per = (size_t)cv->nkp * 64 + 64 + 64;
    char *buf = czk_scratch(ws, (size_t)nt * per);
    if (!buf) return CZ_ERR_MEMORY;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t p = 0; p < npan; p++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        int16_t *bp = (int16_t *)(((uintptr_t)(buf + (size_t)tid * per) + 63) & ~(uintptr_t)63);
        int nj = np - p * 16 < 16 ? (int)(np - p * 16) : 16;
        conv_panel_i8(cv, col, ldp, p * 16, nj, inv, sx, bias, y, ys_r, bp, 0);
    }
    return CZ_OK;
}

/* The same per-panel GEMM with each 16-pixel int16 panel written by qpack straight from
 * the image (conv2d.c: quantized on the fly, tap-major k, see czk_affine_conv_begin_tapmajor)
 * with the per-pixel max |patch| given (am[j], computed by the caller from the image in one
 * pass). */
cz_status czk_affine_conv_qpacked(const czk_i8conv *cv, czk_qpack_fn qpack, const void *pctx,
                                  const float *am, int64_t np, int nan_free, const float *bias,
                                  float *y, int64_t ys_r, cz_ws *ws) {
    int64_t K = cv->K, npan = (np + 15) / 16, npad = npan * 16;
    float *inv = czk_scratch(ws, (size_t)npad * 2 * sizeof(float));
    if (!inv) return CZ_ERR_MEMORY;
    float *sx = inv + npad;
    for (int64_t j = 0; j < npad; j++) {
        float a = j < np ? am[j] : 0.f;
        if (!(a > 0.f) || a > 3.0e38f) { inv[j] = 0.f; sx[j] = 0.f; }
        else { inv[j] = 127.f / a; sx[j] = a / 127.f; }
    }
    int nt = czk_threads(ws, (double)(cv->r1 - cv->r0) * K * (double)np);
    if (nt > npan) nt = (int)npan;
    /* per thread: pack state, int16 panel (64-byte aligned: per is a multiple of 64) */
    size_t per = CZK_PACK_STATE + (size_t)cv->nkp * 64 + 64;
    char *buf = czk_scratch(ws, (size_t)nt * per);
    if (!buf) return CZ_ERR_MEMORY;
    int zp = cv->w->u.affine.zp != NULL;
    for (int t = 0; t < nt; t++) memset(buf + (size_t)t * per, 0, CZK_QPACK_KEYS);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t p = 0; p < npan; p++) {
        int tid = 0;
#ifdef _OPENMP
        tid = omp_get_thread_num();
#endif
        char *b = buf + (size_t)tid * per;
        int16_t *bp = (int16_t *)(b + CZK_PACK_STATE);
        int nj = np - p * 16 < 16 ? (int)(np - p * 16) : 16;
        int plain = nan_free;
        for (int j = 0; j < 16 && plain; j++) {
            /* inv 0: an all-zero patch (fine) or an inf in it (x * 0 = NaN: masked path) */
            int64_t jj = p * 16 + j;
            float iv = inv[jj];
            plain = iv < 3.0e38f && (iv > 0.f || jj >= np || am[jj] == 0.f);
        }
        int32_t xs[16] = {0};
        qpack(pctx, b, p * 16, nj, inv + p * 16, plain, bp, zp ? xs : NULL);
        gemm_panel_i8(cv, 0, nj, sx + p * 16, bias, y + p * 16, ys_r, bp, xs);
    }
    return CZ_OK;
}
#else
czk_i8conv *czk_affine_conv_begin(const cz_form *w, int64_t r0, int64_t r1, cz_ws *ws) {
    (void)w; (void)r0; (void)r1; (void)ws;
    return NULL;
}
czk_i8conv *czk_affine_conv_begin_tapmajor(const cz_form *w, int64_t r0, int64_t r1,
                                           int64_t cg, int64_t khw, cz_ws *ws) {
    (void)w; (void)r0; (void)r1; (void)cg; (void)khw; (void)ws;
    return NULL;
}
cz_status czk_affine_conv_qpacked(const czk_i8conv *cv, czk_qpack_fn qpack, const void *pctx,
                                  const float *am, int64_t np, int nan_free, const float *bias,
                                  float *y, int64_t ys_r, cz_ws *ws) {
    (void)cv; (void)qpack; (void)pctx; (void)am; (void)np; (void)nan_free; (void)bias;
    (void)y; (void)ys_r; (void)ws;
    return CZ_ERR_UNSUPPORTED;
}
cz_status czk_affine_conv_cols(const czk_i8conv *cv, const float *col, int64_t ldp, int64_t np,
                               const float *bias, float *y, int64_t ys_r, cz_ws *ws) {
    (void)cv; (void)col; (void)ldp; (void)np; (void)bias; (void)y; (void)ys_r; (void)ws;
    return CZ_ERR_UNSUPPORTED;
}
#endif

cz_status czk_affine_acc(const cz_form *w, int64_t n, const int8_t *xq, int64_t ldq,
                         int32_t *acc, int isa, cz_ws *ws) {
#if CZK_X86
    if (use_avx2_exact(isa)) return acc_avx2(w, n, xq, ldq, acc, ws);
#endif
    i8_plan pl;
    cz_status st = plan_x(isa, n, w->cols, xq, ldq, &pl, ws);
    if (st != CZ_OK) return st;
    int32_t *xs = w->u.affine.zp ? group_sums(w, n, xq, ldq, ws) : NULL;
    if (w->u.affine.zp && !xs) return CZ_ERR_MEMORY;
    int64_t cols = w->cols, rows = w->rows, ng = ngroups_of(w);
    int64_t G = w->u.affine.group > 0 ? w->u.affine.group : cols;
    for (int64_t r = 0; r < rows; r += pl.RB)
        for (int64_t i = 0; i < n; i += 4)
            for (int64_t g = 0; g < ng; g++) {
                int nr = rows - r < pl.RB ? (int)(rows - r) : pl.RB;
                int nb = n - i < 4 ? (int)(n - i) : 4;
                int64_t c0 = g * G, c1 = c0 + G < cols ? c0 + G : cols;
                int32_t o[4][4];
                pl.blk((const uint8_t *)pl.xb + i * pl.ldx * pl.esz, pl.ldx, nb,
                       w->u.affine.q + r * cols, cols, nr, c0, c1, o);
                for (int a = 0; a < nb; a++)
                    for (int b = 0; b < nr; b++) {
                        int32_t s = o[a][b];
                        if (xs) s -= w->u.affine.zp[sidx(w, r + b, g)] * xs[(i + a) * ng + g];
                        acc[((i + a) * rows + r + b) * ng + g] = s;
                    }
            }
    return CZ_OK;
}

/* ---- weights packed once at load --------------------------------------------------------
 * For the quad kernel (ukq_*): p8[(b * nkq + kq) * 32 + l * 4 + t] = q[(8b + l) * cols + 4kq + t],
 * zero past rows / cols; nkq = ceil(cols / 4), ceil(rows / 8) + 3 blocks (the last GEMM panel
 * may reach up to 3 sub-panels past the end; they read zeros). Two 4 x 4 transposes of
 * 32-bit quads per 16 columns of 8 rows. */
#if CZK_X86
static void pack_p8(const int8_t *Q, int64_t R, int64_t C, int64_t nblk, int8_t *dst) {
    int64_t nkq = (C + 3) / 4;
    memset(dst, 0, (size_t)(nblk * nkq * 32));
    for (int64_t b = 0; b * 8 < R; b++) {
        int8_t *d = dst + b * nkq * 32;
        int full = b * 8 + 8 <= R;
        int64_t k = 0;
        if (full)
            for (; k + 16 <= C; k += 16) {
                for (int h = 0; h < 2; h++) {   /* rows 4h .. 4h+3 -> bytes 16h .. 16h+15 */
                    __m128i r[4];
                    for (int l = 0; l < 4; l++)
                        r[l] = _mm_loadu_si128((const __m128i *)(Q + (b * 8 + 4 * h + l) * C + k));
                    __m128i t0 = _mm_unpacklo_epi32(r[0], r[1]), t1 = _mm_unpackhi_epi32(r[0], r[1]);
                    __m128i t2 = _mm_unpacklo_epi32(r[2], r[3]), t3 = _mm_unpackhi_epi32(r[2], r[3]);
                    __m128i o[4] = {_mm_unpacklo_epi64(t0, t2), _mm_unpackhi_epi64(t0, t2),
                                    _mm_unpacklo_epi64(t1, t3), _mm_unpackhi_epi64(t1, t3)};
                    for (int q = 0; q < 4; q++)
                        _mm_store_si128((__m128i *)(d + (k / 4 + q) * 32 + 16 * h), o[q]);
                }
            }
        for (; k < C; k++)
            for (int l = 0; l < 8 && b * 8 + l < R; l++)
                d[(k / 4) * 32 + l * 4 + (k & 3)] = Q[(b * 8 + l) * C + k];
    }
}
#endif

cz_status czk_affine_prepare(cz_form *f, const cz_allocator *a, void **owned) {
    if (owned) *owned = NULL;
    if (!f || f->kind != CZ_FORM_AFFINE || f->affine_p8 || f->rows <= 0 || f->cols <= 0)
        return CZ_OK;
#if CZK_X86
    int64_t G = f->u.affine.group;
    /* (scale groups must start at multiples of 4: the quad kernel's K segments) */
    if (!use_avx2_exact(czk_isa()) || (G > 0 && G % 4 && G < f->cols)) return CZ_OK;
    int64_t nblk = (f->rows + 7) / 8 + 3, nkq = (f->cols + 3) / 4;
    size_t bytes = (size_t)(nblk * nkq * 32);
    int8_t *p = cz_mem_alloc(a ? a : cz_default_allocator(), bytes, 64);
    if (!p) return CZ_ERR_MEMORY;
    pack_p8(f->u.affine.q, f->rows, f->cols, nblk, p);
    f->affine_p8 = p;
    f->resident_bytes += bytes;
    if (owned) *owned = p;
#else
    (void)a;
#endif
    return CZ_OK;
}

cz_status czk_affine_op(CZK_OP_ARGS, cz_ws *ws) {
#if CZK_X86
    if (use_avx2_exact(czk_isa()))
        return op_avx2(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc, ws);
#endif
    int64_t cols = w->cols, ng = ngroups_of(w);
    int64_t G = w->u.affine.group > 0 ? w->u.affine.group : cols;
    /* 1. quantize rows of X (transposing from column layout on the way) */
    int64_t ldq = cols > 0 ? cols : 1;
    int8_t *xq = czk_scratch(ws, (size_t)n * ldq);
    float *sx = czk_scratch(ws, (size_t)n * sizeof(float));
    if (!xq || !sx) return CZ_ERR_MEMORY;
    for (int64_t i = 0; i < n; i++) sx[i] = czk_quant_row(x + i * xs_n, xs_c, cols, xq + i * ldq);
    i8_plan pl;
    cz_status st = plan_x(czk_isa(), n, cols, xq, ldq, &pl, ws);
    if (st != CZ_OK) return st;
    int32_t *xs = w->u.affine.zp ? group_sums(w, n, xq, ldq, ws) : NULL;
    if (w->u.affine.zp && !xs) return CZ_ERR_MEMORY;
    const int8_t *Q = w->u.affine.q;
    const float *S = w->u.affine.scale;
    const int32_t *Z = w->u.affine.zp;
    int RB = pl.RB;
    int64_t nrb = (r1 - r0 + RB - 1) / RB;
    int nt = czk_threads(ws, (double)(r1 - r0) * cols * (double)n);
    if (nt > nrb) nt = (int)nrb;
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
    for (int64_t rb = 0; rb < nrb; rb++) {
        int64_t r = r0 + rb * RB;
        int nr = r1 - r < RB ? (int)(r1 - r) : RB;
        for (int64_t i = 0; i < n; i += 4) {
            int nb = n - i < 4 ? (int)(n - i) : 4;
            float f[4][4] = {{0}};
            for (int64_t g = 0; g < ng; g++) {
                int64_t c0 = g * G, c1 = c0 + G < cols ? c0 + G : cols;
                int32_t o[4][4];
                pl.blk((const uint8_t *)pl.xb + i * pl.ldx * pl.esz, pl.ldx, nb, Q + r * cols,
                       cols, nr, c0, c1, o);
                for (int b = 0; b < nr; b++) {
                    int64_t si = sidx(w, r + b, g);
                    float sw = S[si];
                    for (int a = 0; a < nb; a++) {
                        int32_t s = o[a][b];
                        if (Z) s -= Z[si] * xs[(i + a) * ng + g];
                        f[a][b] += (float)s * sw;
                    }
                }
            }
            for (int a = 0; a < nb; a++)
                for (int b = 0; b < nr; b++) {
                    float v = f[a][b] * sx[i + a] + (bias ? bias[r + b - r0] : 0.f);
                    float *p = &y[(i + a) * ys_n + (r + b - r0) * ys_r];
                    *p = acc ? *p + v : v;
                }
        }
    }
    return CZ_OK;
}
