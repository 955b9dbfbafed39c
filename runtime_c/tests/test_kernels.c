/*
 * test_kernels.c -- every optimized kernel against its plain C reference on random forms,
 * on every ISA level this CPU has (portable, AVX2, AVX-512 when present), 1 and 2 threads.
 *
 * Tolerances: float outputs must satisfy |opt - ref| <= 1e-5 + 1e-4 * max(|ref_i|, rms(ref))
 *   elementwise (rtol 1e-4, atol 1e-5; inputs uniform in [-1, 1]; the references
 *   accumulate in double; the rms floor keeps outputs that cancel to ~0 from demanding
 *   more than float32 summation over K ~ 1000 terms can give); the int8 paths' int32
 *   accumulators must be BIT-EXACT. Conv results are checked against a naive 7-loop conv
 *   over a densified copy of the form (densified HERE, in the test only) with the same
 *   tolerance, except int8 (AFFINE) conv whose dynamic activation quantization makes it
 *   differ from the float conv: it is checked bit-for-tolerance against czk_conv2d_ref
 *   (same quantization) and loosely (2% of the output's max magnitude) against the naive conv.
 * Coverage of the fast paths: RELIDX forms run in each position mode (relidx_mode: gaps only,
 * gaps + u16 column cache, column cache only, + the codebook-grouped layout, the grouped
 * layout only as the format layer builds it for 2-D weights) -- every mode
 * explicitly in test_forms / test_relidx_batches / test_conv, a random one elsewhere; the int8 accumulators are
 * checked at batch 1/3 (GEMV) and 5..64 (packed int16 GEMM) for every scale layout, with the
 * weights repacked per call and packed once at load (czk_affine_prepare); the float int8
 * op at batch >= 4 quantizing straight into the GEMM tiles (no zero points) is checked bit
 * for bit against the row-buffer path (test_int8_fused: all-zero zero points); conv
 * cases with per-row int8 weights run the per-pixel column quantization path, group-wise
 * ones the patches path; test_gemm_inplace drives the GEMM's unpacked k-major B path;
 * test_conv_paths covers each conv lowering (implicit-im2col GEMM, sparse panels, direct
 * small-channel conv, packed int8 -- the latter bit for bit against the im2col-tile path)
 * and their fallbacks.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/kernels/kint.h"

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 11);
}
static float frand(void) { return (float)(rnd() % 2000001) / 1000000.f - 1.f; }
static int irand(int lo, int hi) { return lo + (int)(rnd() % (uint32_t)(hi - lo + 1)); }

static int g_fail = 0, g_checks = 0;
static const char *g_what = "";

static void *xalloc(size_t n) {
    void *p = calloc(n ? n : 1, 1);
    if (!p) { fprintf(stderr, "oom\n"); exit(2); }
    return p;
}
static float *frandv(int64_t n) {
    float *v = xalloc((size_t)n * 4);
    for (int64_t i = 0; i < n; i++) v[i] = frand();
    return v;
}

static int close_arrays(const float *a, const float *b, int64_t n, double rtol, double atol,
                        const char *ctx) {
    g_checks++;
    double rms = 0;
    for (int64_t i = 0; i < n; i++) rms += (double)b[i] * b[i];
    rms = n ? sqrt(rms / n) : 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        double mag = fabs((double)b[i]) > rms ? fabs((double)b[i]) : rms;
        if (!(d <= atol + rtol * mag)) {
            fprintf(stderr, "FAIL %s [%s]: i=%lld got %.8g want %.8g\n", g_what, ctx, (long long)i,
                    a[i], b[i]);
            g_fail++;
            return 0;
        }
    }
    return 1;
}

/* ---- random forms ------------------------------------------------------------------- */
static cz_form *new_form(cz_form_kind kind, int64_t rows, int64_t cols) {
    cz_form *f = xalloc(sizeof *f);
    f->kind = kind; f->ndim = 2; f->shape[0] = rows; f->shape[1] = cols;
    f->rows = rows; f->cols = cols;
    return f;
}
static cz_form *mk_dense(int64_t rows, int64_t cols) {
    cz_form *f = new_form(CZ_FORM_DENSE, rows, cols);
    f->u.dense.w = frandv(rows * cols);
    return f;
}
static void mk_vals(int64_t nnz, int cb, int k, cz_vals_kind *vk, const uint8_t **idx,
                    const float **lut, int *kk, const float **vals) {
    if (cb) {
        uint8_t *ix = xalloc((size_t)nnz);
        for (int64_t i = 0; i < nnz; i++) ix[i] = (uint8_t)(rnd() % (uint32_t)k);
        *vk = CZ_VALS_CODEBOOK; *idx = ix; *lut = frandv(k); *kk = k; *vals = NULL;
    } else {
        *vk = CZ_VALS_F32; *vals = frandv(nnz); *idx = NULL; *lut = NULL; *kk = 0;
    }
}
/* RELIDX position modes: 0 the gap stream only (the lean mode, cols > 65536), 1 gaps + the
 * u16 column cache (kernels use col16, the reference walks the gaps: a cross-check of the
 * cache), 2 col16 only (gaps and gap_ptr released: what the format layer builds for conv
 * weights and sparse rows; the reference runs from col16 too), 3 gaps + col16 + the
 * codebook-grouped layout (kernels run grouped, the reference walks the gaps: a cross-check
 * of the layout), 4 the grouped layout only (gaps, col16 and idx released: what the format
 * layer builds for 2-D codebook weights; the reference runs grouped too). Float values
 * cannot be grouped: modes 3 / 4 are then modes 1 / 2. Random forms draw a mode;
 * g_relidx_mode >= 0 forces one. */
static int g_relidx_mode = -1;
static void relidx_mode(cz_form *f, int mode) {
    if (mode == 0) return;
    void *owned;
    g_checks++;
    setenv("CZ_RELIDX_GROUP", mode >= 3 ? "1" : "0", 1);   /* forced either way */
    cz_status st = czk_relidx_prepare(f, NULL, &owned);
    unsetenv("CZ_RELIDX_GROUP");
    int cb = f->u.relidx.vkind == CZ_VALS_CODEBOOK;
    if (st != CZ_OK || (f->rows > 0 && !f->relidx_col16) ||
        (f->rows > 0 && (mode >= 3 && cb) != (f->relidx_gptr != NULL))) {
        fprintf(stderr, "FAIL relidx_prepare mode %d\n", mode); g_fail++;
        return;
    }
    if ((mode == 2 || mode == 4) && f->relidx_col16) {
        free((void *)f->u.relidx.gaps); free((void *)f->u.relidx.gap_ptr);
        f->u.relidx.gaps = NULL; f->u.relidx.gap_ptr = NULL;
    }
    if (mode == 4 && f->relidx_gptr) {   /* the block is freed through relidx_gptr */
        f->relidx_col16 = NULL;
        free((void *)f->u.relidx.idx);
        f->u.relidx.idx = NULL;
    }
}
/* relidx: per-row density drawn from {0 (empty row), very sparse (filler chains), d} */
static cz_form *mk_relidx(int64_t rows, int64_t cols, double d, int gap_bits, int cb, int k) {
    cz_form *f = new_form(CZ_FORM_RELIDX, rows, cols);
    unsigned M = (1u << gap_bits) - 1;
    int64_t cap = rows * (cols + cols / (M ? M : 1) + 2) + 16;
    uint8_t *gaps = xalloc((size_t)cap);
    int64_t *gp = xalloc((size_t)(rows + 1) * 8), *vp = xalloc((size_t)(rows + 1) * 8);
    int64_t ng = 0, nnz = 0;
    for (int64_t r = 0; r < rows; r++) {
        gp[r] = ng; vp[r] = nnz;
        int mode = irand(0, 9);
        double dr = mode == 0 ? 0.0 : mode == 1 ? 0.01 : d;
        int64_t p = 0;
        for (int64_t c = 0; c < cols; c++) {
            if ((double)(rnd() % 100000) / 100000.0 >= dr) continue;
            int64_t gap = c - p;
            while (gap >= M) { gaps[ng++] = (uint8_t)M; gap -= M; }
            gaps[ng++] = (uint8_t)gap;
            nnz++;
            p = c + 1;
        }
    }
    gp[rows] = ng; vp[rows] = nnz;
    f->u.relidx.gap_bits = gap_bits; f->u.relidx.gaps = gaps;
    f->u.relidx.gap_ptr = gp; f->u.relidx.val_ptr = vp;
    mk_vals(nnz, cb, k, &f->u.relidx.vkind, &f->u.relidx.idx, &f->u.relidx.lut, &f->u.relidx.k,
            &f->u.relidx.vals);
    relidx_mode(f, g_relidx_mode >= 0 ? g_relidx_mode : irand(0, 4));
    return f;
}
static cz_form *mk_codebook(int64_t rows, int64_t cols, int k, int per_row) {
    cz_form *f = new_form(CZ_FORM_CODEBOOK, rows, cols);
    uint8_t *ix = xalloc((size_t)(rows * cols));
    for (int64_t i = 0; i < rows * cols; i++) ix[i] = (uint8_t)(rnd() % (uint32_t)k);
    f->u.codebook.idx = ix; f->u.codebook.k = k; f->u.codebook.per_row = per_row;
    f->u.codebook.lut = frandv(per_row ? rows * k : k);
    return f;
}
static int g_affine_pack = -1;
/* mode 0 per tensor, 1 per row, 2 group-wise */
static cz_form *mk_affine(int64_t rows, int64_t cols, int bits, int mode, int64_t group, int zp) {
    cz_form *f = new_form(CZ_FORM_AFFINE, rows, cols);
    int8_t *q = xalloc((size_t)(rows * cols));
    int lo = bits == 8 ? -128 : -(1 << (bits - 1)) + 1, hi = (1 << (bits - 1)) - 1;
    for (int64_t i = 0; i < rows * cols; i++) q[i] = (int8_t)irand(lo, hi);
    int64_t ng = mode == 2 ? (cols + group - 1) / group : 1;
    int64_t S = mode == 2 ? rows * ng : mode == 1 ? rows : 1;
    float *s = xalloc((size_t)S * 4);
    for (int64_t i = 0; i < S; i++) s[i] = 0.001f + 0.05f * (float)(rnd() % 1000) / 1000.f;
    int32_t *z = NULL;
    if (zp) {
        z = xalloc((size_t)S * 4);
        for (int64_t i = 0; i < S; i++) z[i] = irand(-8, 8);
    }
    f->u.affine.q = q; f->u.affine.bits = bits; f->u.affine.scale = s; f->u.affine.zp = z;
    f->u.affine.group = mode == 2 ? group : 0; f->u.affine.per_row = mode == 1;
    /* half of the forms (all when g_affine_pack > 0, none when 0) carry the weights packed
     * at load (czk_affine_prepare: a no-op where the AVX2 exact path does not run) */
    if (g_affine_pack > 0 || (g_affine_pack < 0 && irand(0, 1))) {
        void *owned;
        g_checks++;
        if (czk_affine_prepare(f, NULL, &owned) != CZ_OK) {
            fprintf(stderr, "FAIL affine_prepare\n"); g_fail++;
        }
    }
    return f;
}
static cz_form *mk_nm(int64_t rows, int64_t cols, int n, int m, int cb, int k) {
    cz_form *f = new_form(CZ_FORM_NM, rows, cols);
    int64_t groups = rows * cols / m;
    uint8_t *pos = xalloc((size_t)(groups * n));
    for (int64_t g = 0; g < groups; g++) {
        /* n distinct increasing positions in [0, m) */
        int cnt = 0;
        for (int j = 0; j < m && cnt < n; j++)
            if ((int)(rnd() % (uint32_t)(m - j)) < n - cnt) pos[g * n + cnt++] = (uint8_t)j;
    }
    f->u.nm.n = n; f->u.nm.m = m; f->u.nm.pos = pos;
    mk_vals(groups * n, cb, k, &f->u.nm.vkind, &f->u.nm.idx, &f->u.nm.lut, &f->u.nm.k,
            &f->u.nm.vals);
    return f;
}
static cz_form *mk_any(int64_t rows, int64_t cols, int depth);
static int g_no_affine = 0;   /* set while building SVD factors (see mk_svd) */
static cz_form *mk_svd(int64_t rows, int64_t cols, int64_t r, int depth) {
    cz_form *f = new_form(CZ_FORM_SVD, rows, cols);
    /* An AFFINE factor quantizes its input dynamically: fed a computed intermediate (U after
     * V), a last-bit difference in the intermediate may flip a rounding and move the result
     * by a quantum, so random SVDs use non-int8 factors; one fixed case below puts AFFINE
     * as V (fed the exact input). */
    int save = g_no_affine;
    g_no_affine = 1;
    f->u.svd.u = mk_any(rows, r, depth + 1);
    f->u.svd.v = mk_any(r, cols, depth + 1);
    g_no_affine = save;
    return f;
}
static cz_form *mk_sum(int64_t rows, int64_t cols, int n, int depth) {
    cz_form *f = new_form(CZ_FORM_SUM, rows, cols);
    f->u.sum.n = n;
    f->u.sum.terms = xalloc((size_t)n * sizeof(cz_form *));
    for (int i = 0; i < n; i++) f->u.sum.terms[i] = mk_any(rows, cols, depth + 1);
    return f;
}
/* frees a form built by the mk_* helpers and everything under it (LeakSanitizer runs the
 * tests under `make asan`), including the u16 column cache czk_relidx_prepare allocated
 * from the default allocator (the test forms have val_ptr[0] == 0, so it is the pointer) */
static void free_form(cz_form *f) {
    if (!f) return;
    switch (f->kind) {
    case CZ_FORM_DENSE: free((void *)f->u.dense.w); break;
    case CZ_FORM_RELIDX:
        free((void *)f->u.relidx.gaps); free((void *)f->u.relidx.gap_ptr);
        free((void *)f->u.relidx.val_ptr); free((void *)f->u.relidx.idx);
        free((void *)f->u.relidx.lut); free((void *)f->u.relidx.vals);
        /* czk_relidx_prepare's one block starts with the grouped layout when it built one */
        if (f->relidx_gptr) cz_mem_free(cz_default_allocator(), (void *)f->relidx_gptr);
        else if (f->relidx_col16) cz_mem_free(cz_default_allocator(), (void *)f->relidx_col16);
        break;
    case CZ_FORM_CODEBOOK: free((void *)f->u.codebook.idx); free((void *)f->u.codebook.lut); break;
    case CZ_FORM_AFFINE:
        free((void *)f->u.affine.q); free((void *)f->u.affine.scale); free((void *)f->u.affine.zp);
        if (f->affine_p8) cz_mem_free(cz_default_allocator(), (void *)f->affine_p8);
        break;
    case CZ_FORM_NM:
        free((void *)f->u.nm.pos); free((void *)f->u.nm.idx); free((void *)f->u.nm.lut);
        free((void *)f->u.nm.vals);
        break;
    case CZ_FORM_SVD: free_form((cz_form *)f->u.svd.u); free_form((cz_form *)f->u.svd.v); break;
    case CZ_FORM_SUM:
        for (int i = 0; i < f->u.sum.n; i++) free_form((cz_form *)f->u.sum.terms[i]);
        free((void *)f->u.sum.terms);
        break;
    case CZ_FORM_TUCKER2:
        free_form((cz_form *)f->u.tucker2.first); free_form((cz_form *)f->u.tucker2.core);
        free_form((cz_form *)f->u.tucker2.last);
        break;
    default: break;
    }
    free(f);
}
static const int KS[] = {2, 3, 5, 8, 16, 17, 32, 33, 100, 256};
static cz_form *mk_any(int64_t rows, int64_t cols, int depth) {
    int t = irand(0, depth >= 1 ? 4 : 6);
    while (g_no_affine && t == 3) t = irand(0, depth >= 1 ? 4 : 6);
    int m = 4;
    switch (t) {
    case 0: return mk_dense(rows, cols);
    case 1: return mk_relidx(rows, cols, 0.05 + 0.3 * (rnd() % 100) / 100.0, irand(2, 8),
                             irand(0, 1), KS[irand(0, 9)]);
    case 2: return mk_codebook(rows, cols, KS[irand(0, 9)], irand(0, 1));
    case 3: return mk_affine(rows, cols, irand(0, 1) ? 4 : 8, irand(0, 2), irand(1, 70), irand(0, 1));
    case 4:
        if (cols % 8 == 0) m = 8; else if (cols % 4 == 0) m = 4; else if (cols % 2 == 0) m = 2; else m = 1;
        return mk_nm(rows, cols, irand(1, m), m, irand(0, 1), KS[irand(0, 9)]);
    case 5: return mk_svd(rows, cols, irand(0, 9), depth);
    default: return mk_sum(rows, cols, irand(1, 3), depth);
    }
}

/* densify (TEST ONLY): W[r][c] through the reference op against the identity. AFFINE goes
 * through its dequantization formula directly (the op would quantize the identity). */
static float *densify(const cz_form *f) {
    int64_t R = f->rows, C = f->cols;
    float *W = xalloc((size_t)(R * C) * 4);
    if (f->kind == CZ_FORM_AFFINE) {
        int64_t G = f->u.affine.group, ng = G > 0 ? (C + G - 1) / G : 1;
        for (int64_t r = 0; r < R; r++)
            for (int64_t c = 0; c < C; c++) {
                int64_t j = G > 0 ? r * ng + c / G : f->u.affine.per_row ? r : 0;
                int32_t z = f->u.affine.zp ? f->u.affine.zp[j] : 0;
                W[r * C + c] = (float)(f->u.affine.q[r * C + c] - z) * f->u.affine.scale[j];
            }
        return W;
    }
    if (f->kind == CZ_FORM_TUCKER2) {   /* W[o,i,h,w] = sum_a sum_b last[o,a] core[a,b,h,w] first[b,i] */
        float *Fd = densify(f->u.tucker2.first), *Kd = densify(f->u.tucker2.core),
              *Ld = densify(f->u.tucker2.last);
        int64_t rin = f->u.tucker2.first->rows, rout = f->u.tucker2.last->cols;
        int64_t I = f->u.tucker2.first->cols, KK = C / I;
        for (int64_t o = 0; o < R; o++)
            for (int64_t i = 0; i < I; i++)
                for (int64_t s = 0; s < KK; s++) {
                    double acc = 0;
                    for (int64_t a = 0; a < rout; a++)
                        for (int64_t b = 0; b < rin; b++)
                            acc += (double)Ld[o * rout + a] * Kd[(a * rin + b) * KK + s] * Fd[b * I + i];
                    W[(o * I + i) * KK + s] = (float)acc;
                }
        free(Fd); free(Kd); free(Ld);
        return W;
    }
    float *I = xalloc((size_t)(C * C) * 4);
    for (int64_t c = 0; c < C; c++) I[c * C + c] = 1.f;
    czk_op_ref(f, 0, R, C, I, C, 1, NULL, W, 1, C, 0);
    free(I);
    return W;
}

static cz_ws g_ws;

/* ---- linear tests -------------------------------------------------------------------- */
static void check_linear(const cz_form *f, int64_t batch, const char *ctx) {
    int64_t R = f->rows, C = f->cols, ldx = C + irand(0, 3), ldy = R + irand(0, 3);
    float *x = frandv(batch * ldx), *b = irand(0, 1) ? frandv(R) : NULL;
    float *y = frandv(batch * ldy), *yr = xalloc((size_t)(batch * ldy) * 4);
    memcpy(yr, y, (size_t)(batch * ldy) * 4);
    if (czk_linear(f, batch, x, ldx, b, y, ldy, &g_ws) != CZ_OK) {
        fprintf(stderr, "FAIL %s [%s]: status\n", g_what, ctx); g_fail++;
    }
    czk_op_ref(f, 0, R, batch, x, ldx, 1, b, yr, ldy, 1, 0);
    close_arrays(y, yr, batch * ldy, 1e-4, 1e-5, ctx);
    /* column layout + accumulate + row sub-range through czk_op */
    int64_t ra = R > 2 ? irand(0, (int)(R / 2)) : 0, rb = R;
    float *xt = xalloc((size_t)(C * batch) * 4);
    for (int64_t i = 0; i < batch; i++)
        for (int64_t c = 0; c < C; c++) xt[c * batch + i] = x[i * ldx + c];
    float *z = frandv(R * batch), *zr = xalloc((size_t)(R * batch) * 4);
    memcpy(zr, z, (size_t)(R * batch) * 4);
    czk_op(f, ra, rb, batch, xt, 1, batch, b, z, 1, batch, 1, &g_ws);
    czk_op_ref(f, ra, rb, batch, xt, 1, batch, b, zr, 1, batch, 1);
    close_arrays(z, zr, R * batch, 1e-4, 1e-5, "collayout+acc");
    cz_arena_free_all(&g_ws.arena);
    free(x); free(b); free(y); free(yr); free(xt); free(z); free(zr);
}

static const int64_t BATCHES[] = {1, 3, 17, 64};
static void test_forms(void) {
    static const int64_t shapes[][2] = {{1, 1}, {7, 13}, {37, 61}, {64, 128}, {100, 300},
                                        {5, 1000}, {33, 17}, {130, 96}};
    char ctx[128];
    for (int s = 0; s < 8; s++) {
        int64_t R = shapes[s][0], C = shapes[s][1];
        for (int rep = 0; rep < 3; rep++) {
            cz_form *fs[32];
            int nf = 0;
            fs[nf++] = mk_dense(R, C);
            for (g_relidx_mode = 0; g_relidx_mode < 5; g_relidx_mode++) {   /* every mode */
                fs[nf++] = mk_relidx(R, C, 0.1, irand(2, 8), 1, KS[irand(0, 9)]);
                fs[nf++] = mk_relidx(R, C, 0.5, irand(2, 8), 0, 0);
                fs[nf++] = mk_relidx(R, C, 0.02, 2, 1, 4);   /* long filler chains */
            }
            g_relidx_mode = -1;
            fs[nf++] = mk_codebook(R, C, KS[irand(0, 9)], irand(0, 1));
            fs[nf++] = mk_codebook(R, C, irand(2, 16), irand(0, 1));
            fs[nf++] = mk_affine(R, C, 4, irand(0, 2), irand(1, 50), irand(0, 1));
            fs[nf++] = mk_affine(R, C, 8, 2, irand(3, 40), 1);
            fs[nf++] = mk_nm(R, C, 1, 1, 1, 16);
            fs[nf++] = mk_svd(R, C, irand(0, 6), 0);
            if (R > 0) {   /* SVD with an int8 V (fed the exact input) */
                cz_form *sv = mk_svd(R, C, 3, 0);
                free_form(sv->u.svd.v);
                sv->u.svd.v = mk_affine(3, C, 8, 1, 0, 0);
                fs[nf++] = sv;
            }
            fs[nf++] = mk_sum(R, C, 2, 0);
            fs[nf++] = mk_any(R, C, 0);
            if (C % 4 == 0) {
                free_form(fs[nf - 1]);
                fs[nf - 1] = mk_nm(R, C, irand(1, 4), 4, irand(0, 1), KS[irand(0, 9)]);
            }
            for (int i = 0; i < nf; i++)
                for (int b = 0; b < 4; b++) {
                    snprintf(ctx, sizeof ctx, "linear kind=%d %lldx%lld batch=%lld", fs[i]->kind,
                             (long long)R, (long long)C, (long long)BATCHES[b]);
                    check_linear(fs[i], BATCHES[b], ctx);
                }
            for (int i = 0; i < nf; i++) free_form(fs[i]);
        }
    }
    /* TUCKER2 is not a linear */
    cz_form *t = new_form(CZ_FORM_TUCKER2, 4, 4);
    float x[4], y[4];
    g_checks++;
    if (czk_linear(t, 1, x, 4, NULL, y, 4, &g_ws) != CZ_ERR_PARAM) {
        fprintf(stderr, "FAIL tucker2 linear not PARAM\n"); g_fail++;
    }
    free_form(t);
}

static void test_gemm(void) {
    char ctx[128];
    for (int it = 0; it < 60; it++) {
        int64_t M = irand(1, 70), N = irand(1, 600), K = irand(1, 700);
        if (it % 5 == 0) K = irand(257, 1100);
        int bkm = irand(0, 1), acc = irand(0, 1);
        int64_t lda = K + irand(0, 5), ldb = (bkm ? N : K) + irand(0, 5);
        int tr = irand(0, 1);   /* transposed output strides */
        int64_t csm = tr ? 1 : N + irand(0, 3), csn = tr ? M + irand(0, 3) : 1;
        int64_t csz = tr ? N * csn : M * csm;
        float *A = frandv(M * lda), *B = frandv((bkm ? K : N) * ldb);
        float *bm = irand(0, 1) ? frandv(M) : NULL, *bn = irand(0, 1) ? frandv(N) : NULL;
        float *C1 = frandv(csz), *C2 = xalloc((size_t)csz * 4);
        memcpy(C2, C1, (size_t)csz * 4);
        czk_gemm_f32(M, N, K, A, lda, B, ldb, bkm, C1, csm, csn, bm, bn, acc, &g_ws);
        czk_gemm_f32_ref(M, N, K, A, lda, B, ldb, bkm, C2, csm, csn, bm, bn, acc);
        snprintf(ctx, sizeof ctx, "gemm M=%lld N=%lld K=%lld bkm=%d", (long long)M, (long long)N,
                 (long long)K, bkm);
        close_arrays(C1, C2, csz, 1e-4, 1e-5, ctx);
        cz_arena_free_all(&g_ws.arena);
        free(A); free(B); free(bm); free(bn); free(C1); free(C2);
    }
}

/* The codebook-grouped RELIDX layout: each row holds the same (column, LUT index) pairs as
 * the column-ordered form, chunk i of a row has 4 / 2 / 1 values (4-chunks first) of one
 * index, and the plan's rule and byte count (never more than col16 + idx + row tables). */
static void test_relidx_grouped(void) {
    char ctx[128];
    for (int it = 0; it < 60; it++) {
        int64_t R = irand(1, 40), C = irand(1, 300);
        int k = KS[irand(0, 9)];
        g_relidx_mode = 3;
        cz_form *f = mk_relidx(R, C, 0.05 + 0.6 * (rnd() % 100) / 100.0, irand(2, 8), 1, k);
        g_relidx_mode = -1;
        snprintf(ctx, sizeof ctx, "grouped layout %lldx%lld k=%d", (long long)R, (long long)C, k);
        const int64_t *vp = f->u.relidx.val_ptr;
        int64_t nnz = vp[R];
        uint64_t bytes = 0, b2 = 0;
        g_checks++;
        int forced = czk_relidx_group_plan(R, C, vp, f->u.relidx.idx, k, 1, &bytes);
        int rule = czk_relidx_group_plan(R, C, vp, f->u.relidx.idx, k, -1, &b2);
        if (!forced || bytes > (uint64_t)nnz * 3 + 12 * (uint64_t)(R + 1) ||
            czk_relidx_group_plan(R, C, vp, f->u.relidx.idx, k, 0, &b2) ||
            czk_relidx_group_plan(R, 65537, vp, f->u.relidx.idx, k, 1, &b2) ||
            rule != (nnz >= 2 * R * (int64_t)k && bytes <= (uint64_t)nnz * 3)) {
            fprintf(stderr, "FAIL %s: plan\n", ctx); g_fail++;
        }
        int bad = 0;
        for (int64_t r = 0; r < R && !bad; r++) {
            int64_t n4 = f->relidx_gn[2 * r], n2 = f->relidx_gn[2 * r + 1];
            int64_t n = vp[r + 1] - vp[r], n1 = n - 4 * n4 - 2 * n2;
            if (n1 < 0 || f->relidx_gptr[r + 1] - f->relidx_gptr[r] != n4 + n2 + n1) { bad = 1; break; }
            /* (col, idx) pairs as a count table, +1 for the column-ordered form, -1 grouped */
            int *cnt = xalloc((size_t)(C * k) * sizeof(int));
            for (int64_t v = vp[r]; v < vp[r + 1]; v++)
                cnt[f->relidx_col16[v] * k + f->u.relidx.idx[v]]++;
            const uint16_t *c = f->relidx_gcol + vp[r];
            const uint8_t *g = f->relidx_gid + f->relidx_gptr[r];
            for (int64_t q = 0; q < n4 + n2 + n1; q++) {
                int len = q < n4 ? 4 : q < n4 + n2 ? 2 : 1;
                for (int j = 0; j < len; j++, c++)
                    if (*c >= C || g[q] >= k || --cnt[*c * k + g[q]] < 0) bad = 1;
            }
            free(cnt);
        }
        g_checks++;
        if (bad) { fprintf(stderr, "FAIL %s: rows differ\n", ctx); g_fail++; }
        check_linear(f, 1, ctx);   /* batch 1 runs from the grouped layout */
        free_form(f);
    }
    /* long rows through the batch-1 kernels: many chunks of 4 per LUT index, and every
     * remainder (0..3 chunks of 4, 0..1 of 2, 0..3 singles past the unrolled loops) across
     * rows; mode 3 (the reference walks the gaps) and 4 (grouped only) */
    static const int KL[] = {2, 3, 5, 8, 16, 17, 32, 33};
    for (int it = 0; it < 24; it++) {
        int64_t R = irand(1, 24), C = irand(500, 3000);
        int k = KL[irand(0, 7)];
        g_relidx_mode = 3 + (it & 1);
        cz_form *f = mk_relidx(R, C, 0.05 + 0.45 * (rnd() % 100) / 100.0, irand(2, 8), 1, k);
        g_relidx_mode = -1;
        snprintf(ctx, sizeof ctx, "grouped long rows %lldx%lld k=%d", (long long)R, (long long)C, k);
        check_linear(f, 1, ctx);
        free_form(f);
    }
}

/* RELIDX at batch > 1 over every block width: the AXPY runs ceil(nb / VW) vectors (1..8)
 * per batch block, for VW = 4 / 8 / 16, on both X paths -- rows transposed into scratch, and
 * columns used in place (64-byte aligned, ld a multiple of 16). The column X is allocated to
 * its exact extent ((C - 1) * ld + n floats), so ASan flags any vector read past the last
 * column (the dispatch once rounded 3 vectors up to 4 and 5..7 up to 8). */
static void test_relidx_batches(void) {
    static const int64_t NS[] = {2, 4, 8, 12, 13, 16, 20, 24, 28, 32, 40, 45, 48, 56, 64,
                                 80, 96, 100, 112, 128, 144};
    char ctx[128];
    for (int md = 0; md < 5; md++)
    for (int cb = 0; cb < 2; cb++)
        for (size_t k = 0; k < sizeof NS / sizeof NS[0]; k++) {
            int64_t R = 9, C = 37, n = NS[k], ld = (n + 15) / 16 * 16;
            g_relidx_mode = md;
            cz_form *f = mk_relidx(R, C, 0.4, irand(2, 8), cb, KS[irand(0, 9)]);
            g_relidx_mode = -1;
            float *xr = frandv(n * C);   /* rows: n x C */
            size_t xcn = (size_t)((C - 1) * ld + n);
            float *xc = NULL;
            if (posix_memalign((void **)&xc, 64, xcn * 4)) { fprintf(stderr, "oom\n"); exit(2); }
            for (size_t i = 0; i < xcn; i++) xc[i] = 0.f;
            for (int64_t i = 0; i < n; i++)
                for (int64_t c = 0; c < C; c++) xc[c * ld + i] = xr[i * C + c];
            float *b = frandv(R), *y = xalloc((size_t)(R * n) * 4), *yr = xalloc((size_t)(R * n) * 4);
            czk_op_ref(f, 0, R, n, xr, C, 1, b, yr, 1, n, 0);
            snprintf(ctx, sizeof ctx, "relidx rows mode=%d cb=%d n=%lld", md, cb, (long long)n);
            czk_op(f, 0, R, n, xr, C, 1, b, y, 1, n, 0, &g_ws);
            close_arrays(y, yr, R * n, 1e-4, 1e-5, ctx);
            cz_arena_free_all(&g_ws.arena);
            snprintf(ctx, sizeof ctx, "relidx cols in place mode=%d cb=%d n=%lld ld=%lld", md, cb,
                     (long long)n, (long long)ld);
            memset(y, 0, (size_t)(R * n) * 4);
            czk_op(f, 0, R, n, xc, 1, ld, b, y, 1, n, 0, &g_ws);
            close_arrays(y, yr, R * n, 1e-4, 1e-5, ctx);
            cz_arena_free_all(&g_ws.arena);
            free(xr); free(xc); free(b); free(y); free(yr);
            free_form(f);
        }
}

/* k-major B read in place by the GEMM (64-byte aligned, ldb = odd multiple of 16 floats).
 * B is allocated to its exact extent ((K - 1) * ldb + N floats): ASan flags a read of the
 * last row's padding (the partial last panel must be packed, not read in place). */
/* czk_gemm_f32 called from inside an enclosing OpenMP team (op_matmul runs batched heads
 * in parallel, each with its own one-thread workspace): the kernel's per-thread scratch is
 * sized for ITS thread count, so it must index it by its own loop's thread number, not by
 * omp_get_thread_num() of the enclosing team (that read past the scratch: a crash in
 * MiniLM at 2 threads; ASan reports it here). Packed-B path (ldb 32) and n-major B. */
static void test_gemm_nested(void) {
    const int64_t M = 64, N = 32, K = 128;
    float *A = frandv(M * K), *B = frandv(K * N), *ref = xalloc((size_t)(2 * M * N) * 4);
    czk_gemm_f32_ref(M, N, K, A, K, B, N, 1, ref, N, 1, NULL, NULL, 0);
    czk_gemm_f32_ref(M, N, K, A, K, B, K, 0, ref + M * N, N, 1, NULL, NULL, 0);
    int bad = 0;
#pragma omp parallel num_threads(2) reduction(| : bad)
    {
        cz_ws w;
        memset(&w, 0, sizeof w);
        cz_arena_init(&w.arena, NULL, 0);
        w.threads = 1;
        float *c = xalloc((size_t)(M * N) * 4);
        for (int it = 0; it < 10; it++)
            for (int bkm = 0; bkm < 2; bkm++) {
                const float *r = bkm ? ref : ref + M * N;
                if (czk_gemm_f32(M, N, K, A, K, B, bkm ? N : K, bkm, c, N, 1, NULL, NULL, 0, &w))
                    bad = 1;
                for (int64_t i = 0; i < M * N; i++)
                    if (!(fabsf(c[i] - r[i]) <= 1e-3f * (1.f + fabsf(r[i])))) bad = 1;
                cz_arena_free_all(&w.arena);
            }
        free(c);
    }
    g_checks++;
    if (bad) { fprintf(stderr, "FAIL %s [gemm inside an OpenMP team]\n", g_what); g_fail++; }
    free(A); free(B); free(ref);
}

static void test_gemm_inplace(void) {
    char ctx[128];
    for (int it = 0; it < 20; it++) {
        int64_t M = irand(1, 70), N = irand(1, 600), K = irand(1, 700);
        int64_t ldb = (N + 15) / 16 * 16;
        if ((ldb / 16) % 2 == 0) ldb += 16;
        int acc = irand(0, 1);
        float *A = frandv(M * K);
        float *B = NULL;
        size_t bn_ = (size_t)((K - 1) * ldb + N);
        if (posix_memalign((void **)&B, 64, bn_ * 4)) { fprintf(stderr, "oom\n"); exit(2); }
        for (size_t i = 0; i < bn_; i++) B[i] = frand();
        float *bm = irand(0, 1) ? frandv(M) : NULL;
        float *C1 = frandv(M * N), *C2 = xalloc((size_t)(M * N) * 4);
        memcpy(C2, C1, (size_t)(M * N) * 4);
        czk_gemm_f32(M, N, K, A, K, B, ldb, 1, C1, N, 1, bm, NULL, acc, &g_ws);
        czk_gemm_f32_ref(M, N, K, A, K, B, ldb, 1, C2, N, 1, bm, NULL, acc);
        snprintf(ctx, sizeof ctx, "gemm in-place B M=%lld N=%lld K=%lld", (long long)M,
                 (long long)N, (long long)K);
        close_arrays(C1, C2, M * N, 1e-4, 1e-5, ctx);
        cz_arena_free_all(&g_ws.arena);
        free(A); free(B); free(bm); free(C1); free(C2);
    }
}

/* int32 accumulators: bit-exact on every ISA path */
static void test_int8_exact(void) {
    char ctx[128];
    int isas[] = {CZK_ISA_PORTABLE, CZK_ISA_AVX2, CZK_ISA_AVX512};
    for (int it = 0; it < 200; it++) {   /* odd iterations: weights packed at load */
        static const int64_t NB[] = {1, 3, 5, 8, 12, 17, 64};   /* GEMV, GEMM widening the
                                                                 * packed panels on the fly
                                                                 * (n <= 2 MR) or per panel */
        int64_t R = irand(1, 40), C = irand(1, 900), n = NB[irand(0, 6)];
        int mode = irand(0, 2);
        if (it % 4 == 1) R = irand(41, 200);   /* several GEMM panels, partial last one */
        g_affine_pack = it % 2;
        cz_form *f = mk_affine(R, C, irand(0, 1) ? 4 : 8, mode, irand(1, 100), irand(0, 1));
        g_affine_pack = -1;
        int8_t *xq = xalloc((size_t)(n * C));
        for (int64_t i = 0; i < n * C; i++) xq[i] = (int8_t)irand(-127, 127);
        int64_t ng = mode == 2 ? (C + f->u.affine.group - 1) / f->u.affine.group : 1;
        int32_t *a = xalloc((size_t)(n * R * ng) * 4), *b = xalloc((size_t)(n * R * ng) * 4);
        czk_affine_acc_ref(f, n, xq, C, b);
        for (int s = 0; s < 3; s++) {
            memset(a, 0x5a, (size_t)(n * R * ng) * 4);
            czk_affine_acc(f, n, xq, C, a, isas[s], &g_ws);
            g_checks++;
            if (memcmp(a, b, (size_t)(n * R * ng) * 4)) {
                snprintf(ctx, sizeof ctx, "int8 acc isa=%d R=%lld C=%lld n=%lld mode=%d", isas[s],
                         (long long)R, (long long)C, (long long)n, mode);
                fprintf(stderr, "FAIL %s [%s]: accumulators differ\n", g_what, ctx);
                g_fail++;
            }
            cz_arena_free_all(&g_ws.arena);
        }
        free(xq); free(a); free(b);
        free_form(f);
    }
    /* quantization: round half to even, clamp */
    float xv[4] = {127.f, 0.5f, 1.5f, -2.5f};
    int8_t q[4];
    float s = czk_quant_row(xv, 1, 4, q);
    g_checks++;
    if (s != 1.f || q[0] != 127 || q[1] != 0 || q[2] != 2 || q[3] != -2) {
        fprintf(stderr, "FAIL quant_row: s=%g q=%d %d %d %d\n", s, q[0], q[1], q[2], q[3]);
        g_fail++;
    }
}

/* The float int8 op at batch >= 4 without zero points quantizes the activation rows straight
 * into the GEMM's A tiles (op_avx2_fused); a form with an all-zero zero-point array runs the
 * same arithmetic through the int8 / int16 row buffers (the unfused path). Their outputs
 * must be identical bit for bit -- over column tails 1..15 of the 16-column quantization
 * blocks, both register blocks (4 / 6 activation rows per tile, padded tiles), K segments and
 * scale groups, weights packed at load or not, row sub-ranges, and rows with NaN / inf /
 * huge values, all-zero rows and exact .5 ties (rows whose max is 127: scale 1). */
static void test_int8_fused(void) {
    static const int64_t NB[] = {4, 5, 6, 7, 8, 12, 13, 17, 32, 64};
    char ctx[160];
    {   /* no columns at batch >= 4: y = bias, accumulators 0 (the GEMM path divided by 0) */
        cz_form *f = mk_affine(5, 0, 8, 1, 0, 0);
        float x[1] = {0.f}, b[5] = {1.f, 2.f, 3.f, 4.f, 5.f}, y[8 * 5];
        for (int i = 0; i < 40; i++) y[i] = -7.f;
        cz_status st = czk_linear(f, 8, x, 0, b, y, 5, &g_ws);
        cz_arena_free_all(&g_ws.arena);
        int bad = st != CZ_OK;
        for (int i = 0; i < 40; i++) bad |= y[i] != b[i % 5];
        g_checks++;
        if (bad) { fprintf(stderr, "FAIL %s [int8 cols 0]: y != bias\n", g_what); g_fail++; }
        int8_t xq[1] = {0};
        int32_t a[8 * 5];
        for (int i = 0; i < 40; i++) a[i] = 99;
        st = czk_affine_acc(f, 8, xq, 0, a, CZK_ISA_AVX2, &g_ws);
        cz_arena_free_all(&g_ws.arena);
        bad = st != CZ_OK;
        for (int i = 0; i < 40; i++) bad |= a[i] != 0;
        g_checks++;
        if (bad) { fprintf(stderr, "FAIL %s [int8 acc cols 0]: not 0\n", g_what); g_fail++; }
        free_form(f);
    }
    for (int it = 0; it < 120; it++) {
        int64_t R = irand(1, 60), C = irand(1, 700), n = NB[irand(0, 9)];
        if (it % 3 == 0) C = 16 * irand(1, 40) + irand(0, 15);
        if (it % 7 == 1) R = irand(61, 420);   /* several GEMM blocks / panels */
        int mode = irand(0, 2);
        int64_t group = 2 * irand(1, 60);      /* even groups: the fused path */
        g_affine_pack = it % 2;
        cz_form *f = mk_affine(R, C, 8, mode, group, 0);
        g_affine_pack = -1;
        /* the same weights with an all-zero zero-point array (unfused path) */
        cz_form *f0 = new_form(CZ_FORM_AFFINE, R, C);
        f0->u.affine = f->u.affine;
        int64_t ng = mode == 2 ? (C + group - 1) / group : 1;
        int64_t S = mode == 2 ? R * ng : mode == 1 ? R : 1;
        int32_t *z0 = xalloc((size_t)S * 4);
        f0->u.affine.zp = z0;
        float *x = frandv(n * C), *b = irand(0, 1) ? frandv(R) : NULL;
        for (int64_t i = 0; i < n; i++) {
            float *xr = x + i * C;
            switch (irand(0, 7)) {
            case 0: xr[irand(0, (int)C - 1)] = NAN; break;
            case 1: xr[irand(0, (int)C - 1)] = INFINITY; break;
            case 2: for (int64_t c = 0; c < C; c++) xr[c] = 0.f; break;
            case 3: xr[irand(0, (int)C - 1)] = -3e38f; break;
            case 4:   /* max 127 (scale 1): halves round to even */
                for (int64_t c = 0; c < C; c++) xr[c] = (float)irand(-254, 254) * 0.5f;
                xr[irand(0, (int)C - 1)] = irand(0, 1) ? 127.f : -127.f;
                break;
            case 5: xr[irand(0, (int)C - 1)] = NAN; xr[irand(0, (int)C - 1)] = 1e-30f; break;
            default: break;
            }
        }
        int64_t ra = R > 2 ? irand(0, (int)(R / 2)) : 0;
        float *y1 = xalloc((size_t)(n * R) * 4), *y2 = xalloc((size_t)(n * R) * 4);
        cz_status s1 = czk_linear(f, n, x, C, b, y1, R, &g_ws);
        cz_arena_free_all(&g_ws.arena);
        cz_status s2 = czk_linear(f0, n, x, C, b, y2, R, &g_ws);
        cz_arena_free_all(&g_ws.arena);
        /* a row sub-range, accumulating into the output (row layout, strided output) */
        cz_status s3 = czk_op(f, ra, R, n, x, C, 1, b, y1, R, 1, 1, &g_ws);
        cz_arena_free_all(&g_ws.arena);
        cz_status s4 = czk_op(f0, ra, R, n, x, C, 1, b, y2, R, 1, 1, &g_ws);
        cz_arena_free_all(&g_ws.arena);
        g_checks++;
        if (s1 || s2 || s3 || s4 || memcmp(y1, y2, (size_t)(n * R) * 4)) {
            snprintf(ctx, sizeof ctx, "int8 fused R=%lld C=%lld n=%lld mode=%d group=%lld",
                     (long long)R, (long long)C, (long long)n, mode, (long long)group);
            fprintf(stderr, "FAIL %s [%s]: status %d/%d/%d/%d or outputs differ\n", g_what, ctx,
                    s1, s2, s3, s4);
            g_fail++;
        }
        free(x); free(b); free(y1); free(y2); free(z0);
        free(f0);
        free_form(f);
    }
}

/* ---- conv tests ---------------------------------------------------------------------- */
static void naive_conv(const float *W, const czk_conv_params *p, const float *x,
                       const float *bias, float *y) {
    int64_t cg = p->c / p->group, ocg = p->oc / p->group;
    for (int64_t n = 0; n < p->n; n++)
        for (int64_t o = 0; o < p->oc; o++)
            for (int64_t oy = 0; oy < p->oh; oy++)
                for (int64_t ox = 0; ox < p->ow; ox++) {
                    double s = bias ? bias[o] : 0;
                    int64_t g = o / ocg;
                    for (int64_t ci = 0; ci < cg; ci++)
                        for (int64_t ky = 0; ky < p->kh; ky++)
                            for (int64_t kx = 0; kx < p->kw; kx++) {
                                int64_t iy = oy * p->stride_h - p->pad_t + ky * p->dil_h;
                                int64_t ix = ox * p->stride_w - p->pad_l + kx * p->dil_w;
                                if (iy < 0 || iy >= p->h || ix < 0 || ix >= p->w) continue;
                                s += (double)W[((o * cg + ci) * p->kh + ky) * p->kw + kx] *
                                     x[((n * p->c + g * cg + ci) * p->h + iy) * p->w + ix];
                            }
                    y[((n * p->oc + o) * p->oh + oy) * p->ow + ox] = (float)s;
                }
}

static void conv_case(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc, int64_t kh,
                      int64_t kw, int64_t group, int64_t sh, int64_t sw, int64_t dh, int64_t dw,
                      int64_t pt, int64_t pl, int64_t pb, int64_t pr, int kind, const char *name) {
    czk_conv_params p = {n, c, h, w, oc, kh, kw, group, sh, sw, dh, dw, pt, pl, pb, pr, 0, 0};
    p.oh = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1;
    p.ow = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
    int64_t K = c / group * kh * kw;
    cz_form *f;
    switch (kind) {
    case 0: f = mk_dense(oc, K); break;
    case 1: f = mk_relidx(oc, K, 0.2, irand(2, 8), 1, 32); break;
    case 2: f = mk_codebook(oc, K, 16, 1); break;
    case 3: f = mk_affine(oc, K, 8, 1, 0, 0); break;
    case 4:
        f = mk_nm(oc, K, 1, 1, 0, 0);
        if (K % 4 == 0) { free_form(f); f = mk_nm(oc, K, 2, 4, 1, 8); }
        break;
    case 5: f = mk_svd(oc, K, 3, 0); break;
    case 6: f = mk_affine(oc, K, 4, 2, 7, 1); break;
    case 8: f = mk_relidx(oc, K, 0.3, irand(2, 8), 0, 0); break;   /* float values */
    default: { /* tucker2 (group 1) */
        int64_t rin = irand(1, 5), rout = irand(1, 5);
        f = new_form(CZ_FORM_TUCKER2, oc, K);
        f->ndim = 4; f->shape[0] = oc; f->shape[1] = c; f->shape[2] = kh; f->shape[3] = kw;
        f->u.tucker2.first = mk_dense(rin, c);
        f->u.tucker2.core = irand(0, 1) ? mk_dense(rout, rin * kh * kw)
                                        : mk_relidx(rout, rin * kh * kw, 0.5, 3, 1, 8);
        f->u.tucker2.last = mk_codebook(oc, rout, 8, 0);
    }
    }
    int64_t ysz = n * oc * p.oh * p.ow;
    float *x = frandv(n * c * h * w), *b = irand(0, 3) ? frandv(oc) : NULL;
    float *y = frandv(ysz), *yn = xalloc((size_t)ysz * 4), *yr = xalloc((size_t)ysz * 4);
    float *W = densify(f);
    naive_conv(W, &p, x, b, yn);
    char ctx[160];
    snprintf(ctx, sizeof ctx, "conv %s kind=%d", name, kind);
    cz_status st = czk_conv2d(f, &p, x, b, y, &g_ws);
    g_checks++;
    if (st != CZ_OK) { fprintf(stderr, "FAIL %s [%s]: status %d\n", g_what, ctx, st); g_fail++; }
    if (kind == 3 || kind == 6) {
        czk_conv2d_ref(f, &p, x, b, yr);
        close_arrays(y, yr, ysz, 1e-4, 1e-5, ctx);
        float mx = 0;
        for (int64_t i = 0; i < ysz; i++) mx = fabsf(yn[i]) > mx ? fabsf(yn[i]) : mx;
        close_arrays(y, yn, ysz, 0, 0.02 * mx + 1e-5, "int8 vs float naive");
    } else {
        close_arrays(y, yn, ysz, 1e-4, 1e-5, ctx);
    }
    /* precise mode (cz_options.precise): the blocked double kernel for DENSE, the reference
     * for the rest -- BIT-IDENTICAL to czk_conv2d_ref either way */
    {
        float *yp = xalloc((size_t)ysz * 4), *yq = xalloc((size_t)ysz * 4);
        czk_conv2d_ref(f, &p, x, b, yq);
        cz_status s2 = czk_conv2d_precise(f, &p, x, b, yp, &g_ws);
        g_checks++;
        if (s2 != CZ_OK || memcmp(yp, yq, (size_t)ysz * 4) != 0) {
            fprintf(stderr, "FAIL %s [%s]: precise conv differs from the reference\n", g_what, ctx);
            g_fail++;
        }
        free(yp); free(yq);
    }
    cz_arena_free_all(&g_ws.arena);
    free(x); free(b); free(y); free(yn); free(yr); free(W);
    free_form(f);
}

static void test_conv(void) {
    for (int kind = 0; kind <= 6; kind++)
    for (int md = 0; md < (kind == 1 ? 5 : 1); md++) {
        g_relidx_mode = kind == 1 ? md : -1;   /* RELIDX: every position mode */
        conv_case(2, 4, 9, 11, 6, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, kind, "groups2 3x3 pad1");
        conv_case(1, 6, 13, 10, 4, 5, 3, 1, 2, 1, 2, 1, 2, 0, 1, 3, kind, "5x3 stride2x1 dil2x1 asym pad");
        conv_case(1, 3, 12, 12, 8, 3, 3, 1, 2, 2, 2, 2, 0, 1, 2, 0, kind, "stride2 dil2 asym pad");
        conv_case(2, 8, 7, 9, 5, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, kind, "1x1 pointwise");
        conv_case(1, 8, 7, 9, 4, 1, 1, 2, 2, 2, 1, 1, 0, 0, 0, 0, kind, "1x1 stride2 groups2");
        conv_case(1, 5, 8, 8, 5, 3, 3, 5, 1, 1, 1, 1, 1, 1, 1, 1, kind, "depthwise as form");
        conv_case(1, 64, 30, 30, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, kind, "multi-tile K=576");
        conv_case(1, 20, 12, 12, 50, 5, 5, 1, 1, 1, 1, 1, 0, 0, 0, 0, kind, "lenet conv2");
    }
    g_relidx_mode = -1;
    /* depthwise direct kernel (DENSE, group == c == oc) */
    conv_case(2, 8, 11, 19, 8, 3, 3, 8, 1, 1, 1, 1, 1, 1, 1, 1, 0, "depthwise 3x3");
    conv_case(1, 8, 11, 19, 8, 3, 3, 8, 2, 2, 1, 1, 1, 0, 2, 1, 0, "depthwise stride2 asym");
    conv_case(1, 4, 16, 37, 4, 3, 5, 4, 1, 1, 2, 2, 2, 3, 1, 0, 0, "depthwise dil2 3x5");
    conv_case(1, 16, 20, 20, 16, 5, 5, 16, 1, 1, 1, 1, 2, 2, 2, 2, 0, "depthwise 5x5");
    /* 3x3 plane copy + row pairs: odd output heights (a last single row), input narrower
     * than a vector (scalar copy), width tails, a left pad wider than a vector, asymmetric
     * pads; DENSE and AFFINE (dequantized into the workspace) */
    for (int kind = 0; kind <= 3; kind += 3) {
        conv_case(1, 6, 7, 5, 6, 3, 3, 6, 1, 1, 1, 1, 3, 3, 3, 3, kind, "depthwise 3x3 w5 pad3");
        conv_case(2, 5, 10, 21, 5, 3, 3, 5, 1, 1, 1, 1, 1, 0, 2, 1, kind, "depthwise 3x3 asym");
        conv_case(1, 3, 9, 12, 3, 3, 3, 3, 1, 1, 1, 1, 0, 10, 1, 9, kind, "depthwise 3x3 pad_l 10");
        conv_case(1, 4, 1, 30, 4, 3, 3, 4, 1, 1, 1, 1, 1, 1, 1, 1, kind, "depthwise 3x3 1 row");
    }
    for (int i = 0; i < 6; i++) {
        conv_case(1, 6, 10, 12, 7, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, 7, "tucker2 3x3");
        conv_case(2, 5, 9, 8, 4, 3, 2, 1, 2, 1, 1, 2, 0, 1, 2, 0, 7, "tucker2 strided dil");
    }
}

/* ---- the conv lowering paths -------------------------------------------------------------
 * czk_conv2d picks per shape and form: the implicit-im2col GEMM (DENSE, stride_w 1, >= 4
 * channels per group), the sparse panel kernel (RELIDX with the column cache), the direct
 * small-channel conv (<= 3 channels per group, stride 1) and the packed int8 path (AFFINE
 * per-row/per-tensor, stride_w 1, >= 4 channels), each with fallbacks (short output rows,
 * odd panels). Float forms are checked against the naive conv on shapes that hit every
 * path and fallback (row tails of the register tiles, outputs narrower than a vector,
 * several K blocks, padding, dilation, row strides, groups). int8 is checked BIT FOR BIT
 * against czk_set_conv_legacy(1) (the im2col-tile path): same per-pixel scales, same int32
 * sums, same epilogue -- also with NaN / inf / all-zero patches in the input. */
static int64_t g_i8_dil = 1;   /* dilation of the int8 legacy cases (both axes) */
static void conv_i8_legacy_case(int64_t n, int64_t c, int64_t h, int64_t w, int64_t oc,
                                int64_t k, int64_t group, int64_t sh, int64_t pad, int mode,
                                int zp, int special, const char *name) {
    int64_t dl = g_i8_dil;
    czk_conv_params p = {n, c, h, w, oc, k, k, group, sh, 1, dl, dl, pad, pad, pad, pad, 0, 0};
    p.oh = (h + 2 * pad - dl * (k - 1) - 1) / sh + 1;
    p.ow = (w + 2 * pad - dl * (k - 1) - 1) + 1;
    int64_t K = c / group * k * k, nx = n * c * h * w, ny = n * oc * p.oh * p.ow;
    cz_form *f = mk_affine(oc, K, 8, mode, 0, zp);
    float *x = frandv(nx), *b = frandv(oc), *y1 = xalloc((size_t)ny * 4), *y2 = xalloc((size_t)ny * 4);
    if (special & 1) x[nx / 3] = NAN;
    if (special & 2) for (int64_t i = 0; i < h * w && i < nx; i++) x[i] = 0.f;   /* zero patches */
    if (special & 4) x[nx / 2] = 1e30f;
    if (special & 8) x[nx / 5] = INFINITY;
    if (special & 2 && c / group == c)   /* every channel zero in the top-left corner */
        for (int64_t ci = 0; ci < c; ci++)
            for (int64_t i = 0; i < 2 * w && i < h * w; i++) x[ci * h * w + i] = 0.f;
    char ctx[160];
    snprintf(ctx, sizeof ctx, "int8 conv %s (mode %d zp %d special %d) vs legacy", name, mode, zp,
             special);
    cz_status s1 = czk_conv2d(f, &p, x, b, y1, &g_ws);
    cz_arena_free_all(&g_ws.arena);
    czk_set_conv_legacy(1);
    cz_status s2 = czk_conv2d(f, &p, x, b, y2, &g_ws);
    czk_set_conv_legacy(0);
    cz_arena_free_all(&g_ws.arena);
    g_checks++;
    if (s1 != CZ_OK || s2 != CZ_OK || memcmp(y1, y2, (size_t)ny * 4)) {
        int64_t i = 0;
        while (i < ny && !memcmp(y1 + i, y2 + i, 4)) i++;
        fprintf(stderr, "FAIL %s [%s]: status %d/%d, first difference at %lld: %g vs %g\n",
                g_what, ctx, s1, s2, (long long)i, i < ny ? y1[i] : 0.0, i < ny ? y2[i] : 0.0);
        g_fail++;
    }
    free(x); free(b); free(y1); free(y2);
    free_form(f);
}

static void test_conv_paths(void) {
    static const int kinds[] = {0, 1, 2, 8};   /* dense, relidx (codebook / float), codebook */
    for (int ki = 0; ki < 4; ki++)
    for (int md = 0; md < (kinds[ki] == 1 ? 5 : kinds[ki] == 8 ? 2 : 1); md++) {
        int kind = kinds[ki];
        g_relidx_mode = kind == 1 ? md : kind == 8 ? 2 - md : -1;
        /* row tails of the 6/4-row tiles (implicit GEMM), panels of 16/32 pixels */
        for (int64_t oc = 1; oc <= 8; oc++)
            conv_case(1, 8, 9, 10, oc, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, kind, "oc tails");
        conv_case(1, 8, 9, 10, 13, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, kind, "oc 13");
        /* narrow outputs: runs of 4, 2 and 1 pixels per panel row (pack fallbacks) */
        conv_case(1, 6, 4, 4, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, kind, "4x4 out");
        conv_case(1, 6, 2, 2, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, kind, "2x2 out");
        conv_case(1, 5, 9, 1, 3, 3, 1, 1, 1, 1, 1, 1, 1, 0, 1, 0, kind, "width 1");
        conv_case(2, 4, 7, 37, 6, 3, 3, 1, 1, 1, 1, 1, 0, 0, 0, 0, kind, "width 35, 2 images");
        /* row stride 2 with stride_w 1, dilation, asymmetric padding */
        conv_case(1, 8, 13, 12, 7, 3, 3, 1, 2, 1, 1, 1, 1, 1, 1, 1, kind, "stride_h 2");
        conv_case(1, 6, 14, 15, 5, 3, 3, 1, 1, 1, 2, 2, 2, 2, 2, 2, kind, "dilation 2");
        conv_case(1, 5, 11, 13, 9, 3, 5, 1, 1, 1, 1, 1, 2, 0, 1, 3, kind, "3x5 asym pad");
        /* several K blocks at channel boundaries (odd kh*kw), groups of >= 4 channels */
        conv_case(1, 130, 6, 7, 6, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, kind, "K 1170");
        conv_case(1, 25, 8, 9, 7, 5, 5, 1, 1, 1, 1, 1, 2, 2, 2, 2, kind, "K 625 5x5");
        conv_case(1, 8, 9, 10, 6, 3, 3, 2, 1, 1, 1, 1, 1, 1, 1, 1, kind, "groups 2 x 4ch");
        conv_case(1, 4, 20, 40, 5, 9, 9, 1, 1, 1, 1, 1, 4, 4, 4, 4, kind, "9x9 (pack table full)");
        /* RELIDX 64-pixel panels (kh*kw <= 32, >= 64 pixels): 3 K blocks, runs of 21 across
         * panel boundaries, a 59-pixel tail panel; 7x7 (49 taps) keeps 32-pixel panels */
        conv_case(1, 12, 15, 21, 9, 5, 5, 1, 1, 1, 1, 1, 2, 2, 2, 2, kind, "5x5 315 px, K 300");
        conv_case(1, 5, 12, 14, 4, 7, 7, 1, 1, 1, 1, 1, 3, 3, 3, 3, kind, "7x7 168 px");
        /* 1x1 (pointwise) through the implicit GEMM */
        conv_case(1, 16, 7, 9, 10, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, kind, "1x1");
        /* direct small-channel conv: 1-3 channels per group, stride 1 */
        conv_case(1, 1, 28, 28, 20, 5, 5, 1, 1, 1, 1, 1, 0, 0, 0, 0, kind, "lenet conv1");
        conv_case(2, 3, 10, 12, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, kind, "3ch pad1");
        conv_case(1, 2, 9, 19, 6, 3, 3, 2, 1, 1, 2, 2, 2, 2, 2, 2, kind, "1ch/group dil2");
        conv_case(1, 3, 7, 7, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1, kind, "3ch 7 wide");
        conv_case(1, 2, 11, 17, 3, 3, 3, 1, 1, 1, 1, 1, 0, 2, 1, 0, kind, "2ch asym pad");
    }
    g_relidx_mode = -1;
    /* int8: per tensor / per row, with and without zero points, special values */
    for (int mode = 0; mode <= 1; mode++)
        for (int zp = 0; zp <= 1; zp++) {
            conv_i8_legacy_case(1, 20, 12, 12, 50, 5, 1, 1, 0, mode, zp, 0, "lenet conv2");
            conv_i8_legacy_case(1, 64, 10, 11, 13, 3, 1, 1, 1, mode, zp, 0, "64ch pad1");
            conv_i8_legacy_case(2, 8, 9, 21, 5, 3, 1, 2, 1, mode, zp, 0, "stride_h 2");
            conv_i8_legacy_case(1, 8, 9, 10, 6, 3, 2, 1, 1, mode, zp, 0, "groups 2");
            conv_i8_legacy_case(1, 8, 3, 3, 4, 3, 1, 1, 1, mode, zp, 0, "3x3 out");
            /* dilation 2 (the per-pixel max's window over the zero-padded channel max) */
            g_i8_dil = 2;
            conv_i8_legacy_case(1, 8, 11, 13, 5, 3, 1, 1, 2, mode, zp, 0, "dilation 2");
            conv_i8_legacy_case(1, 6, 9, 23, 4, 3, 1, 2, 0, mode, zp, 9, "dilation 2 stride_h 2");
            g_i8_dil = 1;
            conv_i8_legacy_case(1, 5, 6, 37, 3, 5, 1, 1, 3, mode, zp, 1, "5x5 pad 3, 35 wide");
            /* tap-major int8 panels: odd channel counts (a zero column per tap), the scalar
             * gather (ow < 8: lane groups with > 2 runs), 64 channels x 56-wide rows with
             * a 4-row weight tail, groups of odd channels with specials */
            conv_i8_legacy_case(1, 7, 5, 6, 9, 3, 1, 1, 1, mode, zp, 0, "7ch 6 wide");
            conv_i8_legacy_case(2, 9, 8, 17, 14, 3, 1, 1, 1, mode, zp, 1, "9ch 17 wide");
            conv_i8_legacy_case(1, 64, 6, 56, 64, 3, 1, 1, 1, mode, zp, 0, "64ch 56 wide");
            conv_i8_legacy_case(1, 10, 7, 12, 6, 3, 2, 1, 1, mode, zp, 15, "groups 2 x 5ch");
            /* tall images: interior panels reuse cached lane programs (shifted by rows) */
            conv_i8_legacy_case(1, 16, 20, 56, 8, 3, 1, 1, 1, mode, zp, 0, "16ch 20x56");
            conv_i8_legacy_case(2, 6, 23, 37, 5, 3, 1, 1, 1, mode, zp, 1, "6ch 23x37");
            conv_i8_legacy_case(1, 8, 30, 24, 5, 3, 1, 2, 1, mode, zp, 0, "stride_h 2 30x24");
            g_i8_dil = 2;
            conv_i8_legacy_case(1, 8, 25, 24, 4, 3, 1, 1, 2, mode, zp, 0, "dilation 2 25x24");
            g_i8_dil = 1;
            for (int sp = 1; sp <= 15; sp++)
                conv_i8_legacy_case(1, 8, 9, 10, 7, 3, 1, 1, 1, mode, zp, sp, "specials");
        }
}

int main(int argc, char **argv) {
    (void)argc; (void)argv;
    int feats = czk_cpu_features();
    printf("cpu features: avx2=%d avx512=%d vnni=%d\n", !!(feats & CZK_F_AVX2),
           !!(feats & CZK_F_AVX512), !!(feats & CZK_F_VNNI));
    static const struct { int mask; const char *name; } levels[] = {
        {0, "portable"}, {CZK_F_AVX2, "avx2"}, {-1, "all"}};
    for (int l = 0; l < 3; l++) {
        if (levels[l].mask > 0 && (feats & levels[l].mask) != levels[l].mask) continue;
        for (int th = 1; th <= 2; th++) {
            char what[64];
            snprintf(what, sizeof what, "%s/threads=%d", levels[l].name, th);
            g_what = what;
            czk_set_feature_mask(levels[l].mask);
            cz_arena_init(&g_ws.arena, NULL, 0);
            g_ws.threads = th;
            int f0 = g_fail, c0 = g_checks;
            test_gemm();
            test_gemm_inplace();
            test_gemm_nested();
            test_forms();
            test_relidx_batches();
            test_relidx_grouped();
            test_conv();
            test_conv_paths();
            test_int8_exact();
            test_int8_fused();
            printf("%-20s checks=%d failures=%d\n", what, g_checks - c0, g_fail - f0);
            fflush(stdout);
            cz_arena_free_all(&g_ws.arena);
        }
    }
    printf("%s: %d checks, %d failures\n", g_fail ? "FAILED" : "OK", g_checks, g_fail);
    return g_fail ? 1 : 0;
}
