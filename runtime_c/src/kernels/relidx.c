/*
 * relidx.c -- EIE-style relative-index CSR (RELIDX forms), run straight from the gap stream.
 *
 * Row r owns gap symbols gaps[gap_ptr[r] .. gap_ptr[r+1]) and values val_ptr[r] .. ; a
 * symbol M = 2^gap_bits - 1 is a filler (advance M, no value), any other g advances g,
 * places the next value, then advances 1. Values are LUT indices (codebook) or float32.
 * The format layer has validated every row (no value lands at col >= cols), so the walks
 * below do no bounds checks of their own.
 *
 * Three representations of the positions, at least one present (cz_internal.h):
 *   - the gap stream (gaps + gap_ptr), as stored in the file;
 *   - the u16 absolute column of every value (relidx_col16), when cols <= 65536. The format
 *     layer builds it at open (in the validation walk) and then drops the gap stream and
 *     gap_ptr, so a loaded model normally holds (val_ptr, col16, values) only;
 *   - the codebook-GROUPED layout (relidx_gptr/gcol/gid/gn), for codebook values: per row
 *     the values ordered by LUT index in chunks of 4, 2, 1 values of one index, one index
 *     byte per chunk. The format layer builds it instead of col16 + idx for 2-D weights with
 *     >= 2 values per row and LUT entry on average (czk_relidx_group_plan; conv weights keep
 *     the column-ordered col16 that conv2d.c's kernels search), never growing the bytes.
 * Every path below runs from the grouped layout when present (codebook values), else from
 * col16 when present, else walks the gaps (cols > 65536, or CZ_RELIDX_COLS=0: the lean EIE
 * mode). The reference prefers the gaps, then col16, then the grouped layout, so the tests
 * cross-check each derived layout against the one it was built from.
 *
 * batch 1, grouped (any ISA): per chunk, the sum of x over its columns times lut[gid] --
 *   scalar loads + adds, ~0.35 ns/value on Zen 3 (see gemv_rows_grp); ~0.31 with AVX2 +
 *   BMI1 (grp_row_avx2: BEXTR fields of wide column / index loads, FMA).
 * batch 1, AVX2, with the derived u16 column cache (cz_form.relidx_col16, built once at
 *   load by czk_relidx_prepare): no serial walk at all -- 16 values per step, LUT in
 *   registers (vpermps + blends, k <= 32), x by scalar loads inserted into vectors, FMA.
 *   ~0.5 ns/nnz on Zen 3 vs ~1.5 for the walk. (A SIMD prefix-sum decode of the gaps +
 *   vgatherdps was tried: gathers cost ~1 ns/element on Zen 3, slower than the walk.)
 * batch 1, portable, with col16: four independent accumulators over the values.
 * batch 1 otherwise: walk the gaps with a pointer into x; four symbols at a time when none
 *   of them is a filler (SWAR test on a 32-bit load), into four independent accumulators so
 *   the FMA latency chain does not serialize the walk (the loop is load-bound: gap, index,
 *   LUT, x).
 * batch > 1: X is transposed into scratch as XT (cols x npad, batch contiguous, zero padded
 *   to the vector width) -- or used in place when it already is in that layout (conv im2col
 *   columns) -- and each stored weight does an AXPY of its LUT value over a block of up to
 *   8 vectors of the batch (64 floats AVX2 / 128 AVX-512). Two accumulator sets alternate
 *   between consecutive weights so the FMA latency is hidden even for small blocks. The
 *   row of XT of a weight comes from col16 when present, else from the gap walk; with the
 *   grouped layout a chunk's XT rows are summed and multiplied once by its LUT value.
 * Threads: rows are split across threads when nnz * batch is large (czk_threads); one
 *   thread runs without a parallel region (an if(0) region costs ~0.5 us).
 */
#include <stdlib.h>

#include "kint.h"

static inline int has_byte(uint32_t w, unsigned b) {
    uint32_t t = w ^ (b * 0x01010101u);
    return ((t - 0x01010101u) & ~t & 0x80808080u) != 0;
}

/* ---- reference: decode-walk exactly as the spec states it ---------------------------- */
void czk_relidx_op_ref(CZK_OP_ARGS) {
    const unsigned M = (1u << w->u.relidx.gap_bits) - 1;
    int cb = w->u.relidx.vkind == CZ_VALS_CODEBOOK;
    const uint16_t *col = w->relidx_col16;
    const int64_t *vp = w->u.relidx.val_ptr;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = r0; r < r1; r++) {
            double s = 0.0;   /* double: the reference is the yardstick */
            if (!w->u.relidx.gaps && !col) {   /* grouped only: chunks of one LUT index */
                const uint16_t *gc = w->relidx_gcol + vp[r];
                const uint8_t *gi = w->relidx_gid + w->relidx_gptr[r];
                int64_t n4 = w->relidx_gn[2 * r], n2 = w->relidx_gn[2 * r + 1];
                int64_t n1 = vp[r + 1] - vp[r] - 4 * n4 - 2 * n2;
                for (int64_t q = 0; q < n4 + n2 + n1; q++) {
                    int len = q < n4 ? 4 : q < n4 + n2 ? 2 : 1;
                    for (int j = 0; j < len; j++)
                        s += (double)w->u.relidx.lut[gi[q]] * x[i * xs_n + (int64_t)*gc++ * xs_c];
                }
            } else if (!w->u.relidx.gaps) {   /* col16 only: value v sits at column col[v] */
                for (int64_t v = vp[r]; v < vp[r + 1]; v++) {
                    float wv = cb ? w->u.relidx.lut[w->u.relidx.idx[v]] : w->u.relidx.vals[v];
                    s += (double)wv * x[i * xs_n + (int64_t)col[v] * xs_c];
                }
            } else {
                int64_t p = 0, v = vp[r];
                for (int64_t t = w->u.relidx.gap_ptr[r]; t < w->u.relidx.gap_ptr[r + 1]; t++) {
                    unsigned g = w->u.relidx.gaps[t];
                    if (g == M) { p += M; continue; }
                    p += g;
                    float wv = cb ? w->u.relidx.lut[w->u.relidx.idx[v]] : w->u.relidx.vals[v];
                    s += (double)wv * x[i * xs_n + p * xs_c];
                    v++;
                    p++;
                }
            }
            if (bias) s += bias[r - r0];
            float *o = &y[i * ys_n + (r - r0) * ys_r];
            *o = acc ? *o + (float)s : (float)s;
        }
}

/* ---- batch 1 ------------------------------------------------------------------------- */
static inline __attribute__((always_inline)) float row_dot(const uint8_t *g, const uint8_t *ge,
                                                           int64_t v, const uint8_t *idx,
                                                           const float *lut, const float *vals,
                                                           const float *x, unsigned M, int cb) {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    const float *xp = x;
#define VAL(j) (cb ? lut[idx[v + (j)]] : vals[v + (j)])
    while (ge - g >= 4) {
        uint32_t w4;
        memcpy(&w4, g, 4);
        if (!has_byte(w4, M)) {
            xp += g[0]; s0 += VAL(0) * xp[0];
            xp += g[1] + 1; s1 += VAL(1) * xp[0];
            xp += g[2] + 1; s2 += VAL(2) * xp[0];
            xp += g[3] + 1; s3 += VAL(3) * xp[0];
            xp += 1;
            g += 4;
            v += 4;
        } else {
            unsigned s = *g++;
            if (s == M) { xp += M; continue; }
            xp += s; s0 += VAL(0) * xp[0]; xp += 1; v++;
        }
    }
    while (g < ge) {
        unsigned s = *g++;
        if (s == M) { xp += M; continue; }
        xp += s; s0 += VAL(0) * xp[0]; xp += 1; v++;
    }
#undef VAL
    return (s0 + s1) + (s2 + s3);
}

static void gemv_rows(const cz_form *w, int64_t ra, int64_t rb, int64_t r0, const float *x,
                      const float *bias, float *y, int64_t ys_r, int acc) {
    const unsigned M = (1u << w->u.relidx.gap_bits) - 1;
    const uint8_t *gaps = w->u.relidx.gaps;
    const int64_t *gp = w->u.relidx.gap_ptr, *vp = w->u.relidx.val_ptr;
    int cb = w->u.relidx.vkind == CZ_VALS_CODEBOOK;
    for (int64_t r = ra; r < rb; r++) {
        float s = cb ? row_dot(gaps + gp[r], gaps + gp[r + 1], vp[r], w->u.relidx.idx,
                               w->u.relidx.lut, NULL, x, M, 1)
                     : row_dot(gaps + gp[r], gaps + gp[r + 1], vp[r], NULL, NULL,
                               w->u.relidx.vals, x, M, 0);
        if (bias) s += bias[r - r0];
        float *o = &y[(r - r0) * ys_r];
        *o = acc ? *o + s : s;
    }
}

/* batch 1 from col16, portable: four independent accumulators (no serial walk) */
static inline __attribute__((always_inline)) float row_dot_c16_port(
    const uint16_t *col, int64_t v, int64_t ve, const uint8_t *idx, const float *lut,
    const float *vals, const float *x, int cb) {
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#define VAL(j) (cb ? lut[idx[(j)]] : vals[(j)])
    for (; v + 4 <= ve; v += 4) {
        s0 += VAL(v) * x[col[v]];
        s1 += VAL(v + 1) * x[col[v + 1]];
        s2 += VAL(v + 2) * x[col[v + 2]];
        s3 += VAL(v + 3) * x[col[v + 3]];
    }
    for (; v < ve; v++) s0 += VAL(v) * x[col[v]];
#undef VAL
    return (s0 + s1) + (s2 + s3);
}

static void gemv_rows_c16_port(const cz_form *w, int64_t ra, int64_t rb, int64_t r0,
                               const float *x, const float *bias, float *y, int64_t ys_r,
                               int acc) {
    const int64_t *vp = w->u.relidx.val_ptr;
    const uint16_t *col = w->relidx_col16;
    int cb = w->u.relidx.vkind == CZ_VALS_CODEBOOK;
    for (int64_t r = ra; r < rb; r++) {
        float s = cb ? row_dot_c16_port(col, vp[r], vp[r + 1], w->u.relidx.idx, w->u.relidx.lut,
                                        NULL, x, 1)
                     : row_dot_c16_port(col, vp[r], vp[r + 1], NULL, NULL, w->u.relidx.vals, x,
                                        0);
        if (bias) s += bias[r - r0];
        float *o = &y[(r - r0) * ys_r];
        *o = acc ? *o + s : s;
    }
}

/* ---- the codebook-grouped layout (cz_internal.h, relidx_gptr) ---------------------------
 * y_r = sum_k lut[k] * (sum of x over the values of index k): per chunk of 2-4 values of one
 * index, the x are summed and multiplied once by lut[gid]. The inner loop is then scalar
 * loads + adds (one u16 column + one x per value, no per-value index byte, no LUT work): on
 * Zen 3 ~0.35 ns/value against ~0.46 for the AVX2 col16 kernel below, whose vpermps/blend
 * LUT and vinsertps x loads compete for the two shuffle ports (4096^2, 10%, k 32, warm
 * caches, best of many runs). The 4 / 2 / 1 split (no padding) keeps the layout within
 * col16 + idx bytes and leaves no branch inside a chunk. Measured alternatives, same case:
 * chunks padded to 4 with a zero column 0.33-0.40 ns (12% padding, 40-65% on short rows, and
 * a copy of x with a zero slot), padded to 2 0.38, a 4 / 1 split 0.35, 8 / 1 0.39, two rows
 * interleaved 0.36-0.39, software prefetch of the columns 0.37; the scalar per-value LUT
 * (lut[idx[v]] * x[col[v]], 4 accumulators) 0.55. Rows with ~1 value per LUT entry gain
 * little (1536x384 at 10%, 1.2 per entry: 0.93-1.05x of col16's time) and their one index
 * byte per chunk would outweigh the saved idx bytes, hence the rule in
 * czk_relidx_group_plan: >= 2 values per row and LUT entry on average (2.4 for
 * LeNet-300-100's 784 -> 300 layer: 0.88-0.96x of the col16 kernel's time, 0.75-0.8x of
 * it before its 8-value tail step below) and no more bytes than col16 + idx. */
int czk_relidx_group_plan(int64_t rows, int64_t cols, const int64_t *vp, const uint8_t *idx,
                          int k, int mode, uint64_t *bytes) {
    if (mode == 0 || rows <= 0 || cols > 65536 || k < 1 || k > 256 || !vp || !idx) return 0;
    int64_t nnz = vp[rows] - vp[0];
    if (mode < 0 && nnz < 2 * rows * (int64_t)k) return 0;
    int64_t nch = 0;
    int cnt[256];
    for (int64_t r = 0; r < rows; r++) {
        memset(cnt, 0, sizeof(int) * (size_t)k);
        for (int64_t v = vp[r]; v < vp[r + 1]; v++) cnt[idx[v]]++;
        for (int g = 0; g < k; g++) nch += cnt[g] / 4 + (cnt[g] % 4) / 2 + cnt[g] % 2;
    }
    /* one block: gptr (rows + 1) int64 | gcol nnz u16 | gn 2 * rows u16 | gid nch u8 */
    *bytes = (uint64_t)(rows + 1) * 8 + (uint64_t)nnz * 2 + (uint64_t)rows * 4 + (uint64_t)nch;
    /* the rule also keeps the bytes within those of what the layout replaces (col16 + idx) */
    return mode > 0 || *bytes <= (uint64_t)nnz * 3;
}

void czk_relidx_group_build(cz_form *f, const uint16_t *col, void *block) {
    const int64_t rows = f->rows, *vp = f->u.relidx.val_ptr;
    const uint8_t *idx = f->u.relidx.idx;
    const int k = f->u.relidx.k;
    int64_t nnz = vp[rows] - vp[0];
    int64_t *gptr = block;
    uint16_t *gcol = (uint16_t *)(gptr + rows + 1), *gn = gcol + nnz;
    uint8_t *gid = (uint8_t *)(gn + 2 * rows);
    uint16_t *gc = gcol - vp[0];   /* indexed by the value index */
    int cnt[256], seen[256], s4[256], s2[256], s1[256];
    int64_t nch = 0;
    for (int64_t r = 0; r < rows; r++) {
        gptr[r] = nch;
        memset(cnt, 0, sizeof(int) * (size_t)k);
        for (int64_t v = vp[r]; v < vp[r + 1]; v++) cnt[idx[v]]++;
        int n4 = 0, n2 = 0;
        for (int g = 0; g < k; g++) { n4 += cnt[g] / 4; n2 += (cnt[g] % 4) / 2; }
        /* element offsets of each index's slots in the 4-, 2- and 1-sections; one gid per
         * chunk, in the same order */
        int o4 = 0, o2 = 4 * n4, o1 = 4 * n4 + 2 * n2;
        int64_t c4 = nch, c2 = nch + n4, c1 = nch + n4 + n2;
        for (int g = 0; g < k; g++) {
            int q4 = cnt[g] / 4, h2 = (cnt[g] % 4) / 2, h1 = cnt[g] % 2;
            s4[g] = o4; o4 += 4 * q4;
            s2[g] = o2; o2 += 2 * h2;
            s1[g] = o1; o1 += h1;
            for (int j = 0; j < q4; j++) gid[c4++] = (uint8_t)g;
            if (h2) gid[c2++] = (uint8_t)g;
            if (h1) gid[c1++] = (uint8_t)g;
            seen[g] = 0;
        }
        nch = c1;
        uint16_t *row = gc + vp[r];
        for (int64_t v = vp[r]; v < vp[r + 1]; v++) {
            int g = idx[v], t = seen[g]++, q4 = cnt[g] / 4 * 4, h2 = (cnt[g] % 4) / 2 * 2;
            int at = t < q4 ? s4[g] + t : t < q4 + h2 ? s2[g] + (t - q4) : s1[g];
            row[at] = col[v];
        }
        gn[2 * r] = (uint16_t)n4;
        gn[2 * r + 1] = (uint16_t)n2;
    }
    gptr[rows] = nch;
    f->relidx_gptr = gptr;
    f->relidx_gcol = gc;
    f->relidx_gn = gn;
    f->relidx_gid = gid;
}

/* sum of x over a chunk of 4 columns: one 64-bit load of the columns (fewer load-port
 * slots than four u16 loads; ~15% faster on Zen 3) on little-endian targets */
static inline __attribute__((always_inline)) float sum4(const float *x, const uint16_t *c) {
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    uint64_t u;
    memcpy(&u, c, 8);
    return (x[u & 0xffff] + x[(u >> 16) & 0xffff]) + (x[(u >> 32) & 0xffff] + x[u >> 48]);
#else
    return (x[c[0]] + x[c[1]]) + (x[c[2]] + x[c[3]]);
#endif
}

/* batch 1, grouped, portable: four accumulators */
static inline __attribute__((always_inline)) float grp_row_port(const uint16_t *c,
                                                                const uint8_t *g, int64_t n4,
                                                                int64_t n2, int64_t n1,
                                                                const float *lut, const float *x) {
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
    int64_t i = 0;
    for (; i + 4 <= n4; i += 4, g += 4, c += 16) {
        a0 += lut[g[0]] * sum4(x, c);
        a1 += lut[g[1]] * sum4(x, c + 4);
        a2 += lut[g[2]] * sum4(x, c + 8);
        a3 += lut[g[3]] * sum4(x, c + 12);
    }
    for (; i < n4; i++, g++, c += 4) a2 += lut[*g] * sum4(x, c);
    for (i = 0; i + 2 <= n2; i += 2, g += 2, c += 4) {
        a0 += lut[g[0]] * (x[c[0]] + x[c[1]]);
        a1 += lut[g[1]] * (x[c[2]] + x[c[3]]);
    }
    if (i < n2) { a3 += lut[*g++] * (x[c[0]] + x[c[1]]); c += 2; }
    for (i = 0; i + 2 <= n1; i += 2, g += 2, c += 2) {
        a2 += lut[g[0]] * x[c[0]];
        a3 += lut[g[1]] * x[c[1]];
    }
    if (i < n1) a0 += lut[*g] * x[*c];
    return (a0 + a1) + (a2 + a3);
}

/* The row loop of both batch-1 grouped kernels, ROW (grp_row_avx2 / grp_row_port) inlined
 * into each: a macro, not a function pointer, so that the always_inline row stays inlined
 * into its ISA's loop (a call per row costs ~6% on 300-row layers). */
#define GRP_ROWS(ROW)                                                                         \
    do {                                                                                      \
        const int64_t *vp = w->u.relidx.val_ptr, *gptr = w->relidx_gptr;                      \
        const uint16_t *gn = w->relidx_gn;                                                    \
        for (int64_t r = ra; r < rb; r++) {                                                   \
            int64_t n4 = gn[2 * r], n2 = gn[2 * r + 1];                                       \
            int64_t n1 = vp[r + 1] - vp[r] - 4 * n4 - 2 * n2;                                 \
            float s = ROW(w->relidx_gcol + vp[r], w->relidx_gid + gptr[r], n4, n2, n1,        \
                          w->u.relidx.lut, x);                                                \
            if (bias) s += bias[r - r0];                                                      \
            float *o = &y[(r - r0) * ys_r];                                                   \
            *o = acc ? *o + s : s;                                                            \
        }                                                                                     \
    } while (0)

#if CZK_X86
#include <immintrin.h>
#define CZK_T_GRP __attribute__((target("avx2,fma,bmi")))
/* the sum of x over 4 columns packed in u (one 64-bit load) */
#define GRP_X4(u)                                                                             \
    ((x[(u) & 0xffff] + x[_bextr_u64(u, 16, 16)]) + (x[_bextr_u64(u, 32, 16)] + x[(u) >> 48]))
/* batch 1, grouped, AVX2 + FMA + BMI1 (scalar code; the target is for BEXTR and FMA): as
 * grp_row_port, with the columns 4 per 64-bit load and the LUT indexes 4 per 32-bit load,
 * their fields by BEXTR (1 uop on Zen 3, vs shift + movzx) -- fewer load-port slots and
 * uops around the x and LUT loads that bound the loop (x alone, as a bare sum of 4-column
 * chunks in L1, runs at ~0.2 ns/value on Zen 3; this loop at ~0.24) -- one FMA per chunk,
 * and the section remainders as at most one step of 2 and one of 1 (ifs, not loops).
 * 4096^2 at 10%, k 32: ~0.86-0.89x the time of grp_row_port; 300x784: ~0.91x (paired
 * medians, Zen 3; ~0.24 ns/value on 4096^2 at its best vs ~0.2 for the bare x sums: the x
 * loads are the bound, the per-row tails the rest). Measured and dropped: remainders
 * computed without branches (always 3 chunks of 4, 1 of 2 and 3 singles, masked out past
 * each section's end, reading past the row): 0.99x on 4096^2 but 1.10-1.14x on 300x784 and
 * 1024^2 -- the per-row branches are mostly predicted (the same weights every call); shift
 * + movzx instead of BEXTR: 1.08x on 4096^2; four chunks of 2 per step: 1.0-1.02x. */
CZK_T_GRP static inline __attribute__((always_inline)) float grp_row_avx2(
    const uint16_t *c, const uint8_t *g, int64_t n4, int64_t n2, int64_t n1, const float *lut,
    const float *x) {
    float a0 = 0.f, a1 = 0.f, a2 = 0.f, a3 = 0.f;
    uint64_t u;
    uint32_t q;
    int64_t i = 0;
    for (; i + 4 <= n4; i += 4, g += 4, c += 16) {
        memcpy(&q, g, 4);
        memcpy(&u, c, 8);
        a0 = __builtin_fmaf(lut[q & 0xff], GRP_X4(u), a0);
        memcpy(&u, c + 4, 8);
        a1 = __builtin_fmaf(lut[_bextr_u32(q, 8, 8)], GRP_X4(u), a1);
        memcpy(&u, c + 8, 8);
        a2 = __builtin_fmaf(lut[_bextr_u32(q, 16, 8)], GRP_X4(u), a2);
        memcpy(&u, c + 12, 8);
        a3 = __builtin_fmaf(lut[q >> 24], GRP_X4(u), a3);
    }
    if (i + 2 <= n4) {
        memcpy(&u, c, 8);
        a0 = __builtin_fmaf(lut[g[0]], GRP_X4(u), a0);
        memcpy(&u, c + 4, 8);
        a1 = __builtin_fmaf(lut[g[1]], GRP_X4(u), a1);
        i += 2; g += 2; c += 8;
    }
    if (i < n4) {
        memcpy(&u, c, 8);
        a2 = __builtin_fmaf(lut[*g++], GRP_X4(u), a2);
        c += 4;
    }
    for (i = 0; i + 2 <= n2; i += 2, g += 2, c += 4) {
        uint16_t q2;
        memcpy(&q2, g, 2);
        memcpy(&u, c, 8);
        a0 = __builtin_fmaf(lut[q2 & 0xff], x[u & 0xffff] + x[_bextr_u64(u, 16, 16)], a0);
        a1 = __builtin_fmaf(lut[q2 >> 8], x[_bextr_u64(u, 32, 16)] + x[u >> 48], a1);
    }
    if (i < n2) {
        a3 = __builtin_fmaf(lut[*g++], x[c[0]] + x[c[1]], a3);
        c += 2;
    }
    for (i = 0; i + 4 <= n1; i += 4, g += 4, c += 4) {
        memcpy(&q, g, 4);
        memcpy(&u, c, 8);
        a0 = __builtin_fmaf(lut[q & 0xff], x[u & 0xffff], a0);
        a1 = __builtin_fmaf(lut[_bextr_u32(q, 8, 8)], x[_bextr_u64(u, 16, 16)], a1);
        a2 = __builtin_fmaf(lut[_bextr_u32(q, 16, 8)], x[_bextr_u64(u, 32, 16)], a2);
        a3 = __builtin_fmaf(lut[q >> 24], x[u >> 48], a3);
    }
    if (i + 2 <= n1) {
        a2 = __builtin_fmaf(lut[g[0]], x[c[0]], a2);
        a3 = __builtin_fmaf(lut[g[1]], x[c[1]], a3);
        i += 2; g += 2; c += 2;
    }
    if (i < n1) a0 = __builtin_fmaf(lut[*g], x[*c], a0);
    return (a0 + a1) + (a2 + a3);
}
#undef GRP_X4

CZK_T_GRP static void gemv_rows_grp_avx2(const cz_form *w, int64_t ra, int64_t rb, int64_t r0,
                                         const float *x, const float *bias, float *y,
                                         int64_t ys_r, int acc) {
    GRP_ROWS(grp_row_avx2);
}
#endif

/* batch 1, grouped (every ISA: scalar code) */
static void gemv_rows_grp_port(const cz_form *w, int64_t ra, int64_t rb, int64_t r0,
                               const float *x, const float *bias, float *y, int64_t ys_r,
                               int acc) {
    GRP_ROWS(grp_row_port);
}

static void gemv_rows_grp(const cz_form *w, int64_t ra, int64_t rb, int64_t r0, const float *x,
                          const float *bias, float *y, int64_t ys_r, int acc) {
#if CZK_X86
    /* AVX2 (with FMA: czk_isa) does not imply BMI1 in every VM's CPUID: asked separately */
    if (czk_isa() >= CZK_ISA_AVX2 && (czk_features() & CZK_F_BMI)) {
        gemv_rows_grp_avx2(w, ra, rb, r0, x, bias, y, ys_r, acc);
        return;
    }
#endif
    gemv_rows_grp_port(w, ra, rb, r0, x, bias, y, ys_r, acc);
}

/* ---- batch 1 with the derived u16 column cache (czk_relidx_prepare) ----------------------
 * No serial walk: 8 values per step, weights from the LUT held in registers (vpermps +
 * blends for k <= 32, else scalar LUT loads) or loaded (F32), x by 8 scalar loads inserted
 * into a vector (vgatherdps costs ~1 ns per element on Zen 3, 3x the scalar loads), FMA. */
#if CZK_X86
#include <immintrin.h>

/* LUT in registers: LM 1 (k <= 8), 2 (k <= 16), 4 (k <= 32) */
CZK_T_AVX2 static inline __m256 lut8(__m256i id, const __m256 L[4], const int LM) {
    __m256 p0 = _mm256_permutevar8x32_ps(L[0], id);
    if (LM == 1) return p0;
    __m256 s3 = _mm256_castsi256_ps(_mm256_slli_epi32(id, 28));
    __m256 p01 = _mm256_blendv_ps(p0, _mm256_permutevar8x32_ps(L[1], id), s3);
    if (LM == 2) return p01;
    __m256 p23 = _mm256_blendv_ps(_mm256_permutevar8x32_ps(L[2], id),
                                  _mm256_permutevar8x32_ps(L[3], id), s3);
    return _mm256_blendv_ps(p01, p23, _mm256_castsi256_ps(_mm256_slli_epi32(id, 27)));
}

CZK_T_AVX2 static inline __m256 xload8(const float *x, const uint16_t *c) {
    __m128 lo = _mm_load_ss(x + c[0]);
    lo = _mm_insert_ps(lo, _mm_load_ss(x + c[1]), 0x10);
    lo = _mm_insert_ps(lo, _mm_load_ss(x + c[2]), 0x20);
    lo = _mm_insert_ps(lo, _mm_load_ss(x + c[3]), 0x30);
    __m128 hi = _mm_load_ss(x + c[4]);
    hi = _mm_insert_ps(hi, _mm_load_ss(x + c[5]), 0x10);
    hi = _mm_insert_ps(hi, _mm_load_ss(x + c[6]), 0x20);
    hi = _mm_insert_ps(hi, _mm_load_ss(x + c[7]), 0x30);
    return _mm256_insertf128_ps(_mm256_castps128_ps256(lo), hi, 1);
}

CZK_T_AVX2 static inline __attribute__((always_inline)) float row_dot_c16(
    const uint16_t *col, int64_t v, int64_t ve, const uint8_t *idx, const float *lut,
    const float *vals, const float *x, const int LM, const __m256 L[4]) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    for (; v + 16 <= ve; v += 16) {
        __m256 w0, w1;
        if (LM == -1) { w0 = _mm256_loadu_ps(vals + v); w1 = _mm256_loadu_ps(vals + v + 8); }
        else if (LM == 0) {
            w0 = _mm256_setr_ps(lut[idx[v]], lut[idx[v + 1]], lut[idx[v + 2]], lut[idx[v + 3]],
                                lut[idx[v + 4]], lut[idx[v + 5]], lut[idx[v + 6]], lut[idx[v + 7]]);
            w1 = _mm256_setr_ps(lut[idx[v + 8]], lut[idx[v + 9]], lut[idx[v + 10]], lut[idx[v + 11]],
                                lut[idx[v + 12]], lut[idx[v + 13]], lut[idx[v + 14]], lut[idx[v + 15]]);
        } else {
            __m128i b = _mm_loadu_si128((const __m128i *)(idx + v));
            w0 = lut8(_mm256_cvtepu8_epi32(b), L, LM);
            w1 = lut8(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)), L, LM);
        }
        a0 = _mm256_fmadd_ps(w0, xload8(x, col + v), a0);
        a1 = _mm256_fmadd_ps(w1, xload8(x, col + v + 8), a1);
    }
    if (v + 8 <= ve) {   /* short rows (30-40 values) spend much of their time in the tail */
        __m256 w0;
        if (LM == -1) w0 = _mm256_loadu_ps(vals + v);
        else if (LM == 0)
            w0 = _mm256_setr_ps(lut[idx[v]], lut[idx[v + 1]], lut[idx[v + 2]], lut[idx[v + 3]],
                                lut[idx[v + 4]], lut[idx[v + 5]], lut[idx[v + 6]], lut[idx[v + 7]]);
        else {
            int64_t b8;
            memcpy(&b8, idx + v, 8);
            w0 = lut8(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(b8)), L, LM);
        }
        a1 = _mm256_fmadd_ps(w0, xload8(x, col + v), a1);
        v += 8;
    }
    a0 = _mm256_add_ps(a0, a1);
    float t[8];
    _mm256_storeu_ps(t, a0);
    float s = ((t[0] + t[1]) + (t[2] + t[3])) + ((t[4] + t[5]) + (t[6] + t[7]));
    float s1 = 0.f;   /* the last < 8 values: two chains instead of one */
    for (; v + 2 <= ve; v += 2) {
        s += (LM == -1 ? vals[v] : lut[idx[v]]) * x[col[v]];
        s1 += (LM == -1 ? vals[v + 1] : lut[idx[v + 1]]) * x[col[v + 1]];
    }
    if (v < ve) s += (LM == -1 ? vals[v] : lut[idx[v]]) * x[col[v]];
    return s + s1;
}

CZK_T_AVX2 static void gemv_rows_c16(const cz_form *w, int64_t ra, int64_t rb, int64_t r0,
                                     const float *x, const float *bias, float *y, int64_t ys_r,
                                     int acc) {
    const int64_t *vp = w->u.relidx.val_ptr;
    const uint16_t *col = w->relidx_col16;
    const uint8_t *idx = w->u.relidx.idx;
    const float *lut = w->u.relidx.lut, *vals = w->u.relidx.vals;
    int cb = w->u.relidx.vkind == CZ_VALS_CODEBOOK, k = w->u.relidx.k;
    int LM = !cb ? -1 : k <= 8 ? 1 : k <= 16 ? 2 : k <= 32 ? 4 : 0;
    float lp[32] = {0};
    if (LM > 0) memcpy(lp, lut, (size_t)k * sizeof(float));
    __m256 L[4] = {_mm256_loadu_ps(lp), _mm256_loadu_ps(lp + 8), _mm256_loadu_ps(lp + 16),
                   _mm256_loadu_ps(lp + 24)};
    for (int64_t r = ra; r < rb; r++) {
        int64_t v = vp[r], ve = vp[r + 1];
        float s;
        switch (LM) {
        case -1: s = row_dot_c16(col, v, ve, idx, lut, vals, x, -1, L); break;
        case 1: s = row_dot_c16(col, v, ve, idx, lut, vals, x, 1, L); break;
        case 2: s = row_dot_c16(col, v, ve, idx, lut, vals, x, 2, L); break;
        case 4: s = row_dot_c16(col, v, ve, idx, lut, vals, x, 4, L); break;
        default: s = row_dot_c16(col, v, ve, idx, lut, vals, x, 0, L); break;
        }
        if (bias) s += bias[r - r0];
        float *o = &y[(r - r0) * ys_r];
        *o = acc ? *o + s : s;
    }
}
#endif

cz_status czk_relidx_prepare(cz_form *f, const cz_allocator *a, void **owned) {
    if (owned) *owned = NULL;
    if (!f || f->kind != CZ_FORM_RELIDX || f->relidx_col16 || !f->u.relidx.gaps ||
        f->cols > 65536 || f->rows <= 0)
        return CZ_OK;
    const unsigned M = (1u << f->u.relidx.gap_bits) - 1;
    const int64_t *gp = f->u.relidx.gap_ptr, *vp = f->u.relidx.val_ptr;
    int64_t nnz = vp[f->rows] - vp[0];
    /* the grouped layout (same rule as the format layer) shares the block, in front */
    uint64_t gbytes = 0;
    const char *ge = getenv("CZ_RELIDX_GROUP");
    int gmode = ge && ge[0] == '0' ? 0 : ge && ge[0] == '1' ? 1 : -1;
    int grp = f->u.relidx.vkind == CZ_VALS_CODEBOOK &&
              czk_relidx_group_plan(f->rows, f->cols, vp, f->u.relidx.idx, f->u.relidx.k, gmode,
                                    &gbytes);
    size_t goff = grp ? (size_t)(gbytes + 63) / 64 * 64 : 0;
    uint8_t *blk = cz_mem_alloc(a ? a : cz_default_allocator(), goff + (size_t)(nnz > 0 ? nnz : 1) * 2, 64);
    if (!blk) return CZ_ERR_MEMORY;
    uint16_t *c16 = (uint16_t *)(blk + goff);
    uint16_t *cv = c16 - vp[0];   /* indexed by the value index */
    for (int64_t r = 0; r < f->rows; r++) {
        int64_t p = 0, v = vp[r];
        for (int64_t t = gp[r]; t < gp[r + 1]; t++) {
            unsigned g = f->u.relidx.gaps[t];
            if (g == M) { p += M; continue; }
            p += g;
            if (p >= f->cols || v >= vp[r + 1]) {
                cz_mem_free(a ? a : cz_default_allocator(), blk);
                return CZ_ERR_FORMAT;
            }
            cv[v++] = (uint16_t)p;
            p++;
        }
        if (v != vp[r + 1]) { cz_mem_free(a ? a : cz_default_allocator(), blk); return CZ_ERR_FORMAT; }
    }
    f->relidx_col16 = cv;
    f->resident_bytes += (uint64_t)nnz * 2;
    if (grp) {
        czk_relidx_group_build(f, cv, blk);
        f->resident_bytes += gbytes;
    }
    if (owned) *owned = blk;
    return CZ_OK;
}

/* ---- batch > 1: AXPY over batch blocks ------------------------------------------------- */
/* One ISA instance: rows [ra, rb), batch columns [0, nb) of xt (ld = ldt, zero padded to a
 * multiple of VW), NV = ceil(nb / VW) <= 8 vectors. */
/* one case of the exact NV dispatch in axpy_rows_* (key: (NV * 2 + value kind) * 2 + col16) */
/* (positions: 0 the gap walk, 1 col16, 2 the codebook-grouped layout) */
#define RELIDX_CASE1(SFX, N, CB, C16)                                                         \
    case (2 * N + CB) * 3 + C16:                                                              \
        axpy_##SFX(w, ra, rb, r0, xt, ldt, nb, bias, y, ys_n, ys_r, acc, N, CB, C16);         \
        break;
#define RELIDX_CASE(SFX, N)                                                                   \
    RELIDX_CASE1(SFX, N, 0, 0) RELIDX_CASE1(SFX, N, 0, 1)                                     \
    RELIDX_CASE1(SFX, N, 1, 0) RELIDX_CASE1(SFX, N, 1, 1) RELIDX_CASE1(SFX, N, 1, 2)
/* the AXPY of one weight (value V0) at XT row P0 / of two weights, over NV vectors */
#define RELIDX_AXPY1(SFX, VW, A, V0, P0)                                                      \
    _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++)                                      \
        A[j] += (V0) * *(const rv_##SFX *)((P0) + j * VW);
#define RELIDX_AXPY2(SFX, VW, V0, P0, V1, P1)                                                 \
    _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++) {                                    \
        a0[j] += (V0) * *(const rv_##SFX *)((P0) + j * VW);                                   \
        a1[j] += (V1) * *(const rv_##SFX *)((P1) + j * VW);                                   \
    }
#define DEF_RELIDX_ISA(SFX, ATTR, VW)                                                         \
    typedef float rv_##SFX __attribute__((vector_size(VW * 4)));                              \
    typedef float rvu_##SFX __attribute__((vector_size(VW * 4), aligned(4)));                 \
    static inline __attribute__((always_inline)) ATTR void axpy_##SFX(                        \
        const cz_form *w, int64_t ra, int64_t rb, int64_t r0, const float *xt, int64_t ldt,   \
        int nb, const float *bias, float *y, int64_t ys_n, int64_t ys_r, int acc,             \
        const int NV, const int cb, const int c16) {                                          \
        const unsigned M = (1u << w->u.relidx.gap_bits) - 1;                                  \
        const uint8_t *gaps = w->u.relidx.gaps, *idx = w->u.relidx.idx;                       \
        const uint16_t *col = w->relidx_col16;                                                \
        const int64_t *vp = w->u.relidx.val_ptr;                                              \
        const float *lut = w->u.relidx.lut, *vals = w->u.relidx.vals;                         \
        const int64_t adv = ldt;                                                              \
        for (int64_t r = ra; r < rb; r++) {                                                   \
            rv_##SFX a0[8], a1[8];                                                            \
            _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++) a0[j] = a1[j] = (rv_##SFX){0}; \
            int64_t v = vp[r];                                                                \
            if (c16 == 2) {               /* grouped: sum a chunk's XT rows, one multiply */  \
                const uint16_t *c = w->relidx_gcol + v;                                       \
                const uint8_t *g = w->relidx_gid + w->relidx_gptr[r];                         \
                int64_t n4 = w->relidx_gn[2 * r], n2 = w->relidx_gn[2 * r + 1];               \
                int64_t n1 = vp[r + 1] - v - 4 * n4 - 2 * n2;                                 \
                for (int64_t q = 0; q < n4; q++, c += 4) {   /* a0 / a1 alternate */          \
                    float v0 = lut[*g++];                                                     \
                    const float *p0 = xt + (int64_t)c[0] * adv, *p1 = xt + (int64_t)c[1] * adv; \
                    const float *p2 = xt + (int64_t)c[2] * adv, *p3 = xt + (int64_t)c[3] * adv; \
                    rv_##SFX *A = (q & 1) ? a1 : a0;                                          \
                    _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++)                      \
                        A[j] += v0 * ((*(const rv_##SFX *)(p0 + j * VW) +                     \
                                       *(const rv_##SFX *)(p1 + j * VW)) +                    \
                                      (*(const rv_##SFX *)(p2 + j * VW) +                     \
                                       *(const rv_##SFX *)(p3 + j * VW)));                    \
                }                                                                             \
                for (int64_t q = 0; q < n2; q++, c += 2) {                                    \
                    float v0 = lut[*g++];                                                     \
                    const float *p0 = xt + (int64_t)c[0] * adv, *p1 = xt + (int64_t)c[1] * adv; \
                    _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++)                      \
                        a1[j] += v0 * (*(const rv_##SFX *)(p0 + j * VW) +                     \
                                       *(const rv_##SFX *)(p1 + j * VW));                     \
                }                                                                             \
                int64_t q = 0;                                                                \
                for (; q + 2 <= n1; q += 2, c += 2, g += 2) {                                 \
                    const float *p0 = xt + (int64_t)c[0] * adv, *p1 = xt + (int64_t)c[1] * adv; \
                    RELIDX_AXPY2(SFX, VW, lut[g[0]], p0, lut[g[1]], p1)                       \
                }                                                                             \
                if (q < n1) {                                                                 \
                    const float *p0 = xt + (int64_t)c[0] * adv;                               \
                    RELIDX_AXPY1(SFX, VW, a0, lut[g[0]], p0)                                  \
                }                                                                             \
            } else if (c16) {             /* XT row of value v: col[v] */                     \
                const int64_t ve = vp[r + 1];                                                 \
                for (; v + 2 <= ve; v += 2) {                                                 \
                    float v0 = cb ? lut[idx[v]] : vals[v];                                    \
                    float v1 = cb ? lut[idx[v + 1]] : vals[v + 1];                            \
                    const float *p0 = xt + (int64_t)col[v] * adv;                             \
                    const float *p1 = xt + (int64_t)col[v + 1] * adv;                         \
                    RELIDX_AXPY2(SFX, VW, v0, p0, v1, p1)                                     \
                }                                                                             \
                if (v < ve) {                                                                 \
                    float v0 = cb ? lut[idx[v]] : vals[v];                                    \
                    const float *p0 = xt + (int64_t)col[v] * adv;                             \
                    RELIDX_AXPY1(SFX, VW, a0, v0, p0)                                         \
                }                                                                             \
            } else {                      /* walk the gaps */                                 \
                const uint8_t *g = gaps + w->u.relidx.gap_ptr[r],                             \
                              *ge = gaps + w->u.relidx.gap_ptr[r + 1];                        \
                const float *xp = xt;                                                         \
                while (g < ge) {                                                              \
                    if (ge - g >= 2 && g[0] != M && g[1] != M) {                              \
                        float v0 = cb ? lut[idx[v]] : vals[v];                                \
                        float v1 = cb ? lut[idx[v + 1]] : vals[v + 1];                        \
                        const float *p0 = xp + g[0] * adv;                                    \
                        const float *p1 = p0 + (g[1] + 1) * adv;                              \
                        RELIDX_AXPY2(SFX, VW, v0, p0, v1, p1)                                 \
                        xp = p1 + adv;                                                        \
                        g += 2;                                                               \
                        v += 2;                                                               \
                    } else {                                                                  \
                        unsigned s = *g++;                                                    \
                        if (s == M) { xp += (int64_t)M * adv; continue; }                     \
                        float v0 = cb ? lut[idx[v]] : vals[v];                                \
                        const float *p0 = xp + s * adv;                                       \
                        RELIDX_AXPY1(SFX, VW, a0, v0, p0)                                     \
                        xp = p0 + adv;                                                        \
                        v++;                                                                  \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
            float bv = bias ? bias[r - r0] : 0.f;                                             \
            float *o = y + (r - r0) * ys_r;                                                   \
            if (ys_n == 1 && nb == NV * VW) {                                                 \
                _Pragma("GCC unroll 8") for (int j = 0; j < NV; j++) {                        \
                    rv_##SFX t = a0[j] + a1[j] + bv;                                          \
                    rvu_##SFX *q = (rvu_##SFX *)(o + j * VW);                                 \
                    *q = acc ? *q + t : t;                                                    \
                }                                                                             \
            } else {                                                                          \
                float t[8 * VW];                                                              \
                for (int j = 0; j < NV; j++) {                                                \
                    rv_##SFX s2 = a0[j] + a1[j];                                              \
                    memcpy(t + j * VW, &s2, sizeof s2);                                       \
                }                                                                             \
                for (int i = 0; i < nb; i++) {                                                \
                    float *q = o + i * ys_n;                                                  \
                    *q = acc ? *q + t[i] + bv : t[i] + bv;                                    \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
    }                                                                                         \
    ATTR static void axpy_rows_##SFX(const cz_form *w, int64_t ra, int64_t rb, int64_t r0,   \
                                     const float *xt, int64_t ldt, int nb, const float *bias, \
                                     float *y, int64_t ys_n, int64_t ys_r, int acc) {         \
        /* NV is exactly ceil(nb / VW), never rounded up: each column of xt holds only      \
         * ceil(nb / VW) * VW readable floats from the block start (XT scratch is padded to   \
         * npad, an in-place x only guarantees nfull), so NV = 4 for nv = 3 or NV = 8 for     \
         * nv = 5..7 read past the last column of the scratch / of the caller's x (and did    \
         * wasted FMAs on every other one).                                                   \
         */                                                                                   \
        int nv = (nb + VW - 1) / VW;                                                          \
        int cb = w->u.relidx.vkind == CZ_VALS_CODEBOOK;                                       \
        int c16 = cb && w->relidx_gptr ? 2 : w->relidx_col16 != NULL;                         \
        switch ((nv * 2 + cb) * 3 + c16) {                                                    \
        RELIDX_CASE(SFX, 1) RELIDX_CASE(SFX, 2) RELIDX_CASE(SFX, 3) RELIDX_CASE(SFX, 4)       \
        RELIDX_CASE(SFX, 5) RELIDX_CASE(SFX, 6) RELIDX_CASE(SFX, 7) RELIDX_CASE(SFX, 8)       \
        default: break; /* nb <= 8 * VW by construction */                                   \
        }                                                                                     \
    }

DEF_RELIDX_ISA(port, , 4)
#if CZK_X86
DEF_RELIDX_ISA(avx2, CZK_T_AVX2, 8)
DEF_RELIDX_ISA(avx512, CZK_T_AVX512, 16)
#endif
#undef RELIDX_CASE
#undef RELIDX_CASE1
#undef RELIDX_AXPY1
#undef RELIDX_AXPY2

typedef void (*axpy_fn)(const cz_form *, int64_t, int64_t, int64_t, const float *, int64_t,
                        int, const float *, float *, int64_t, int64_t, int);

cz_status czk_relidx_op(CZK_OP_ARGS, cz_ws *ws) {
    int64_t cols = w->cols;
    int64_t nnz = w->u.relidx.val_ptr[r1] - w->u.relidx.val_ptr[r0];
    int nt = czk_threads(ws, (double)nnz * (double)n);
    if (nt > r1 - r0) nt = (int)(r1 - r0);
    if (n == 1) {
        const float *xv = x;
        if (xs_c != 1) {
            float *t = czk_scratch(ws, (size_t)cols * sizeof(float));
            if (!t) return CZ_ERR_MEMORY;
            for (int64_t c = 0; c < cols; c++) t[c] = x[c * xs_c];
            xv = t;
        }
        int64_t chunk = (r1 - r0 + nt - 1) / nt;
        int c16 = w->relidx_col16 != NULL, avx2 = czk_isa() >= CZK_ISA_AVX2 && c16;
        int grp = w->relidx_gptr != NULL && w->u.relidx.vkind == CZ_VALS_CODEBOOK;
        (void)avx2;
        /* one thread: no parallel region at all (an if(0) region still costs ~0.5 us on
         * Zen 3 / libgomp, 5% of a 10 us layer) */
#define RELIDX_GEMV(RA, RB)                                                                   \
    do {                                                                                      \
        if (grp) gemv_rows_grp(w, RA, RB, r0, xv, bias, y, ys_r, acc);                        \
        else if (c16 && avx2) RELIDX_GEMV_AVX2(RA, RB);                                       \
        else if (c16) gemv_rows_c16_port(w, RA, RB, r0, xv, bias, y, ys_r, acc);              \
        else gemv_rows(w, RA, RB, r0, xv, bias, y, ys_r, acc);                                \
    } while (0)
#if CZK_X86
#define RELIDX_GEMV_AVX2(RA, RB) gemv_rows_c16(w, RA, RB, r0, xv, bias, y, ys_r, acc)
#else
#define RELIDX_GEMV_AVX2(RA, RB) gemv_rows_c16_port(w, RA, RB, r0, xv, bias, y, ys_r, acc)
#endif
        if (nt <= 1) {
            RELIDX_GEMV(r0, r1);
            return CZ_OK;
        }
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int t = 0; t < nt; t++) {
            int64_t ra = r0 + t * chunk, rb = ra + chunk < r1 ? ra + chunk : r1;
            if (ra >= rb) continue;
            RELIDX_GEMV(ra, rb);
        }
#undef RELIDX_GEMV
#undef RELIDX_GEMV_AVX2
        return CZ_OK;
    }
    int isa = czk_isa();
    axpy_fn f = axpy_rows_port;
    int VW = 4;
#if CZK_X86
    if (isa == CZK_ISA_AVX512) { f = axpy_rows_avx512; VW = 16; }
    else if (isa == CZK_ISA_AVX2) { f = axpy_rows_avx2; VW = 8; }
#else
    (void)isa;
#endif
    int64_t BB = 8 * VW;                          /* batch block */
    int64_t npad = (n + VW - 1) / VW * VW;
    const float *xt;
    int64_t ldt;
    float *tail = NULL;
    int64_t nfull = 0;                            /* batch columns usable in place */
    if (xs_n == 1 && (xs_c % VW) == 0 && (((uintptr_t)x) % (VW * 4)) == 0) {
        xt = x; ldt = xs_c;
        nfull = n / VW * VW;
        if (nfull < n) {   /* the last partial vector: copy the remainder, zero padded */
            tail = czk_scratch(ws, (size_t)cols * VW * sizeof(float));
            if (!tail) return CZ_ERR_MEMORY;
            int64_t rem = n - nfull;
            for (int64_t c = 0; c < cols; c++)
                for (int64_t i = 0; i < VW; i++)
                    tail[c * VW + i] = i < rem ? x[(nfull + i) + c * xs_c] : 0.f;
        }
    } else {
        float *t = czk_scratch(ws, (size_t)cols * npad * sizeof(float));
        if (!t) return CZ_ERR_MEMORY;
        /* transpose by blocks of 8 batch rows to keep both sides streaming */
        for (int64_t i0 = 0; i0 < npad; i0 += 8)
            for (int64_t c = 0; c < cols; c++)
                for (int64_t i = i0; i < i0 + 8 && i < npad; i++)
                    t[c * npad + i] = i < n ? x[i * xs_n + c * xs_c] : 0.f;
        xt = t; ldt = npad; nfull = n;
    }
    int64_t chunk = (r1 - r0 + nt - 1) / nt;
#define RELIDX_AXPY_ROWS(RA, RB)                                                              \
    do {                                                                                      \
        for (int64_t i0 = 0; i0 < nfull; i0 += BB) {                                          \
            int nb = (int)(nfull - i0 < BB ? nfull - i0 : BB);                                \
            f(w, RA, RB, r0, xt + i0, ldt, nb, bias, y + i0 * ys_n, ys_n, ys_r, acc);         \
        }                                                                                     \
        if (tail)                                                                             \
            f(w, RA, RB, r0, tail, VW, (int)(n - nfull), bias, y + nfull * ys_n, ys_n, ys_r, acc); \
    } while (0)
    if (nt <= 1) {   /* no parallel region (see batch 1) */
        RELIDX_AXPY_ROWS(r0, r1);
        return CZ_OK;
    }
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int t = 0; t < nt; t++) {
        int64_t ra = r0 + t * chunk, rb = ra + chunk < r1 ? ra + chunk : r1;
        if (ra >= rb) continue;
        RELIDX_AXPY_ROWS(ra, rb);
    }
#undef RELIDX_AXPY_ROWS
    return CZ_OK;
}
