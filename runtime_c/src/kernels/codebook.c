/*
 * codebook.c -- dense codebook forms: W[r,c] = lut[r?][idx[r,c]], uint8 indices, k <= 256.
 *
 * batch 1 (memory bound: 1 byte per weight instead of 4):
 *   - AVX2, k <= 16: the LUT lives in two ymm registers; 8 indices are widened and looked
 *     up with vpermps (two lookups + a blend on index bit 3), then one FMA with x.
 *   - k <= 32 otherwise: "sum then multiply": x[c] is added into bin idx[c] (four
 *     interleaved bin sets so repeated indices do not chain through store forwarding),
 *     then y = dot(bins, lut): cols adds + k multiplies instead of cols multiplies and
 *     cols LUT loads.
 *   - larger k: LUT gather lut[idx] * x with four accumulators.
 * batch > 1: rows are dequantized a tile at a time (~256 KB of float32) into scratch and the
 *   dense GEMM micro-kernel runs on the tile. Only the tile is ever dense, never the layer.
 */
#include "kint.h"
#if CZK_X86
#include <immintrin.h>
#endif

static inline const float *row_lut(const cz_form *w, int64_t r) {
    return w->u.codebook.per_row ? w->u.codebook.lut + r * w->u.codebook.k : w->u.codebook.lut;
}

void czk_codebook_op_ref(CZK_OP_ARGS) {
    const uint8_t *idx = w->u.codebook.idx;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = r0; r < r1; r++) {
            const float *L = row_lut(w, r);
            double s = 0.0;   /* double: the reference is the yardstick */
            for (int64_t c = 0; c < w->cols; c++) s += (double)L[idx[r * w->cols + c]] * x[i * xs_n + c * xs_c];
            if (bias) s += bias[r - r0];
            float *o = &y[i * ys_n + (r - r0) * ys_r];
            *o = acc ? *o + (float)s : (float)s;
        }
}

static float dot_bins(const uint8_t *id, const float *x, int64_t cols, const float *L, int k) {
    float b[4][32];
    memset(b, 0, sizeof b);
    int64_t c = 0;
    for (; c + 4 <= cols; c += 4) {
        b[0][id[c]] += x[c];
        b[1][id[c + 1]] += x[c + 1];
        b[2][id[c + 2]] += x[c + 2];
        b[3][id[c + 3]] += x[c + 3];
    }
    for (; c < cols; c++) b[0][id[c]] += x[c];
    float s = 0.f;
    for (int j = 0; j < k; j++) s += L[j] * ((b[0][j] + b[1][j]) + (b[2][j] + b[3][j]));
    return s;
}

static float dot_gather(const uint8_t *id, const float *x, int64_t cols, const float *L) {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    int64_t c = 0;
    for (; c + 4 <= cols; c += 4) {
        s0 += L[id[c]] * x[c];
        s1 += L[id[c + 1]] * x[c + 1];
        s2 += L[id[c + 2]] * x[c + 2];
        s3 += L[id[c + 3]] * x[c + 3];
    }
    for (; c < cols; c++) s0 += L[id[c]] * x[c];
    return (s0 + s1) + (s2 + s3);
}

#if CZK_X86
CZK_T_AVX2 static float dot_perm_avx2(const uint8_t *id, const float *x, int64_t cols,
                                      const float *L, int k) {
    float lp[16] = {0};
    memcpy(lp, L, (size_t)k * sizeof(float));
    __m256 lo = _mm256_loadu_ps(lp), hi = _mm256_loadu_ps(lp + 8);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t c = 0;
    for (; c + 16 <= cols; c += 16) {
        __m128i b16 = _mm_loadu_si128((const __m128i *)(id + c));
        __m256i i0 = _mm256_cvtepu8_epi32(b16);
        __m256i i1 = _mm256_cvtepu8_epi32(_mm_srli_si128(b16, 8));
        __m256 w0 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, i0),
                                     _mm256_permutevar8x32_ps(hi, i0),
                                     _mm256_castsi256_ps(_mm256_slli_epi32(i0, 28)));
        __m256 w1 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(lo, i1),
                                     _mm256_permutevar8x32_ps(hi, i1),
                                     _mm256_castsi256_ps(_mm256_slli_epi32(i1, 28)));
        a0 = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + c), a0);
        a1 = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x + c + 8), a1);
    }
    a0 = _mm256_add_ps(a0, a1);
    float t[8];
    _mm256_storeu_ps(t, a0);
    float s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    for (; c < cols; c++) s += L[id[c]] * x[c];
    return s;
}
#endif

cz_status czk_codebook_op(CZK_OP_ARGS, cz_ws *ws) {
    int64_t cols = w->cols;
    int k = w->u.codebook.k;
    const uint8_t *idx = w->u.codebook.idx;
    if (n == 1) {
        const float *xv = x;
        if (xs_c != 1) {
            float *t = czk_scratch(ws, (size_t)cols * sizeof(float));
            if (!t) return CZ_ERR_MEMORY;
            for (int64_t c = 0; c < cols; c++) t[c] = x[c * xs_c];
            xv = t;
        }
        int isa = czk_isa();
        int nt = czk_threads(ws, (double)(r1 - r0) * cols);
#pragma omp parallel for num_threads(nt) if (nt > 1) schedule(static)
        for (int64_t r = r0; r < r1; r++) {
            const float *L = row_lut(w, r);
            const uint8_t *id = idx + r * cols;
            float s;
#if CZK_X86
            if (isa >= CZK_ISA_AVX2 && k <= 16) s = dot_perm_avx2(id, xv, cols, L, k);
            else
#endif
            if (k <= 32) s = dot_bins(id, xv, cols, L, k);
            else s = dot_gather(id, xv, cols, L);
            if (bias) s += bias[r - r0];
            float *o = &y[(r - r0) * ys_r];
            *o = acc ? *o + s : s;
        }
        (void)isa;
        return CZ_OK;
    }
    /* batch > 1: dequantize a tile of rows, dense GEMM on the tile */
    const float *xr = x;
    int64_t ldx = xs_n;
    if (xs_c != 1 && xs_n != 1) {
        float *t = czk_scratch(ws, (size_t)n * cols * sizeof(float));
        if (!t) return CZ_ERR_MEMORY;
        for (int64_t i = 0; i < n; i++)
            for (int64_t c = 0; c < cols; c++) t[i * cols + c] = x[i * xs_n + c * xs_c];
        xr = t; ldx = cols; xs_c = 1;
    }
    int64_t TR = (64 * 1024) / (cols > 0 ? cols : 1);
    if (TR < 16) TR = 16;
    if (TR > r1 - r0) TR = r1 - r0;
    float *tile = czk_scratch(ws, (size_t)TR * cols * sizeof(float));
    if (!tile) return CZ_ERR_MEMORY;
    cz_ws sub;
    czk_ws_child(&sub, ws);
    cz_status st = CZ_OK;
    for (int64_t rt = r0; rt < r1 && st == CZ_OK; rt += TR) {
        int64_t nr = r1 - rt < TR ? r1 - rt : TR;
        for (int64_t i = 0; i < nr; i++) {
            const float *L = row_lut(w, rt + i);
            const uint8_t *id = idx + (rt + i) * cols;
            float *d = tile + i * cols;
            for (int64_t c = 0; c < cols; c++) d[c] = L[id[c]];
        }
        const float *b = bias ? bias + (rt - r0) : NULL;
        float *yo = y + (rt - r0) * ys_r;
        if (xs_c == 1)
            st = czk_gemm_f32(n, nr, cols, xr, ldx, tile, cols, 0, yo, ys_n, ys_r, NULL, b, acc, &sub);
        else
            st = czk_gemm_f32(nr, n, cols, tile, cols, xr, xs_c, 1, yo, ys_r, ys_n, b, NULL, acc, &sub);
        cz_arena_free_all(&sub.arena);
    }
    return st;
}
