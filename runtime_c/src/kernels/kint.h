/*
 * kint.h -- private interface between the kernel files in src/kernels/ (not for the format
 * layer or the executor: their contract is czk_linear / czk_conv2d / czk_cpu_features in
 * cz_internal.h).
 *
 * The one internal operation every form implements is
 *
 *   czk_op(w, r0, r1, n, X, xs_n, xs_c, bias, Y, ys_n, ys_r, acc, ws):
 *       for i < n, r0 <= r < r1:
 *       Y[i*ys_n + (r-r0)*ys_r] = (acc ? Y[..] : 0) + sum_c W[r,c] * X[i*xs_n + c*xs_c]
 *                                 + (bias ? bias[r-r0] : 0)
 *
 * i.e. a linear layer over rows [r0, r1) of the form's 2-D view, with arbitrary strides on
 * the input and output. Two layouts matter:
 *   - "row layout"  xs_c == 1: X is n x cols (czk_linear, im2col "patches")
 *   - "col layout"  xs_n == 1: X is cols x n (im2col columns, 1x1 conv over NCHW)
 * Each form kernel takes the layout it likes directly and converts the other one in
 * scratch. Output strides are general so that conv writes NCHW directly (ys_n = 1,
 * ys_r = oh*ow) and linear writes row-major (ys_n = ldy, ys_r = 1).
 *
 * Every optimized kernel has a plain C reference `_ref` beside it; the tests compare them.
 */
#ifndef CZ_KINT_H
#define CZ_KINT_H

#include <stdint.h>
#include <string.h>

#include "../cz_internal.h"
#ifdef _OPENMP
#include <omp.h>
#endif

/* for (int64_t I = 0; I < N; I++) BODY over NT threads (schedule SCHED: static or dynamic),
 * an OpenMP loop only when NT > 1: `#pragma omp parallel ... if (nt > 1)` still enters
 * libgomp when the condition is false (a team of one and a barrier, 0.3-1 us a region on
 * Zen 3 -- 144 attention-head products per MiniLM call), so one thread runs the plain loop.
 * BODY reads its thread number (0 .. NT-1, the index of its per-thread scratch) from the
 * variable TID that the macro declares: NOT omp_get_thread_num(), which inside the plain
 * loop returns the number of an enclosing team's thread (a kernel called from a parallel
 * batched MatMul) and would index past a scratch sized for one thread. NT must be a plain
 * variable name (the pragma reads it); BODY may not hold directives. Same as CZ_PAR_FOR in
 * graph.h for the ops. */
#define CZK_PAR_FOR(NT, SCHED, I, N, TID, ...)                                             \
    do {                                                                                  \
        int64_t n_pf_ = (int64_t)(N);                                                     \
        if ((NT) > 1) {                                                                   \
            _Pragma(CZK_PF_STR(omp parallel for num_threads(NT) schedule(SCHED)))         \
            for (int64_t I = 0; I < n_pf_; I++) {                                         \
                const int TID = czk_team_tid();                                           \
                (void)TID;                                                                \
                __VA_ARGS__;                                                              \
            }                                                                             \
        } else {                                                                          \
            for (int64_t I = 0; I < n_pf_; I++) {                                         \
                const int TID = 0;                                                        \
                (void)TID;                                                                \
                __VA_ARGS__;                                                              \
            }                                                                             \
        }                                                                                 \
    } while (0)
#define CZK_PF_STR(...) #__VA_ARGS__
/* the thread number inside CZK_PAR_FOR's own OpenMP team (only meaningful there) */
static inline int czk_team_tid(void) {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* ISA levels chosen at run time (czk_isa()). */
enum { CZK_ISA_PORTABLE = 0, CZK_ISA_AVX2 = 1, CZK_ISA_AVX512 = 2 };
#define CZK_F_AVX2 1
#define CZK_F_AVX512 2
#define CZK_F_VNNI 4
#define CZK_F_BMI 8     /* BMI1 (bextr): not implied by AVX2 in every VM's CPUID */

/* czk_cpu_features() masked by the test hook below. */
int czk_features(void);
/* Test/bench hook: AND-mask applied to the detected features (-1 = all). Process-wide;
 * meant for tests that compare the SIMD paths with the portable ones. */
void czk_set_feature_mask(int mask);

/* Scratch from the per-call arena (64-byte aligned); NULL on failure. */
void *czk_scratch(cz_ws *ws, size_t bytes);
/* Loops over tiles that call other kernels use a child workspace (same allocator, the
 * parent's remaining cap) released after every tile, so scratch stays bounded by one tile
 * instead of growing with the tile count (the arena only frees everything at once). */
void czk_ws_child(cz_ws *child, const cz_ws *parent);
/* Threads worth using for `work` multiply-adds (1 below ~ 200k MACs: a parallel region
 * costs a few microseconds, which only pays off for layers that take >= ~50 us). */
int czk_threads(const cz_ws *ws, double work);

cz_status czk_op(const cz_form *w, int64_t r0, int64_t r1, int64_t n, const float *x,
                 int64_t xs_n, int64_t xs_c, const float *bias, float *y, int64_t ys_n,
                 int64_t ys_r, int acc, cz_ws *ws);
cz_status czk_op_ref(const cz_form *w, int64_t r0, int64_t r1, int64_t n, const float *x,
                     int64_t xs_n, int64_t xs_c, const float *bias, float *y, int64_t ys_n,
                     int64_t ys_r, int acc);

/* ---- per-family kernels (same contract as czk_op, the form kind already known) ---- */

/* Dense GEMM: C[m*csm + j*csn] = (acc?C:0) + sum_k A[m*lda+k] * B(j,k) + bias
 *   B(j,k) = bkm ? B[k*ldb + j] : B[j*ldb + k];  bias indexed by m (bias_m) or j (bias_n). */
cz_status czk_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, int bkm, float *C, int64_t csm,
                       int64_t csn, const float *bias_m, const float *bias_n, int acc,
                       cz_ws *ws);
void czk_gemm_f32_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, int bkm, float *C, int64_t csm,
                      int64_t csn, const float *bias_m, const float *bias_n, int acc);

/* Implicit-B GEMM (conv without an im2col matrix): C[m*csm + j] = sum_k A[m*lda+k] * B(k,j)
 * + bias_m[m], where B is never materialised: pack(ctx, st, j0, nr, k0, kc, NR, pan) writes
 * rows k0 .. k0+kc-1 of the panel of columns j0 .. j0+nr-1 as pan[(k-k0)*NR + jj] (columns
 * nr .. NR-1 zero) into a 64-byte aligned per-thread buffer with NR floats of slack after
 * the last row, and the register-blocked micro-kernel consumes that block while it is in
 * L1. Per panel the blocks come in k order starting at k0 = 0, so the pack may keep what
 * it derives from (j0, nr) in st (CZK_PACK_STATE bytes per thread, 64-byte aligned) when
 * k0 == 0 and reuse it for the later blocks. kgran: K blocks start at multiples of it when
 * it is <= the block size (conv: kh*kw, so a block holds whole input channels). pack may
 * run concurrently on several threads (distinct panels and states). NR: 16 (AVX2), 32
 * (AVX-512), 8 (portable). */
#define CZK_PACK_STATE 40960
typedef void (*czk_pack_fn)(const void *ctx, void *st, int64_t j0, int nr, int64_t k0,
                            int64_t kc, int NR, float *pan);
cz_status czk_gemm_f32_implicit(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                                czk_pack_fn pack, const void *ctx, int64_t kgran, float *C,
                                int64_t csm, const float *bias_m, cz_ws *ws);

#define CZK_OP_ARGS const cz_form *w, int64_t r0, int64_t r1, int64_t n, const float *x, \
    int64_t xs_n, int64_t xs_c, const float *bias, float *y, int64_t ys_n, int64_t ys_r, int acc
cz_status czk_dense_op(CZK_OP_ARGS, cz_ws *ws);
void czk_dense_op_ref(CZK_OP_ARGS);
cz_status czk_relidx_op(CZK_OP_ARGS, cz_ws *ws);
void czk_relidx_op_ref(CZK_OP_ARGS);
cz_status czk_nm_op(CZK_OP_ARGS, cz_ws *ws);
void czk_nm_op_ref(CZK_OP_ARGS);
cz_status czk_codebook_op(CZK_OP_ARGS, cz_ws *ws);
void czk_codebook_op_ref(CZK_OP_ARGS);
cz_status czk_affine_op(CZK_OP_ARGS, cz_ws *ws);
void czk_affine_op_ref(CZK_OP_ARGS);

/* ---- int8 pieces exposed for the bit-exactness tests ---- */

/* Dynamic symmetric quantization of one row: s = max|x| / 127, q = rint(x / s) (round half
 * to even, computed as x * (127 / max|x|)), clamped to +-127. Returns s (0 for an all-zero
 * row, which quantizes to zeros). Shared by the optimized and reference paths. */
float czk_quant_row(const float *x, int64_t xs_c, int64_t cols, int8_t *q);
/* Integer accumulators of an AFFINE form against quantized rows xq (n x cols, row stride
 * ldq): acc[(i*rows + r)*ngroups + g] = sum_{c in group g} xq[i,c] * (q[r,c] - zp[r,g])
 * (ngroups = 1 without group-wise scales). `isa` forces a path (CZK_ISA_*; VNNI is used
 * for CZK_ISA_AVX512 when present). Returns CZ_ERR_MEMORY/CZ_ERR_UNSUPPORTED. */
cz_status czk_affine_acc(const cz_form *w, int64_t n, const int8_t *xq, int64_t ldq,
                         int32_t *acc, int isa, cz_ws *ws);
void czk_affine_acc_ref(const cz_form *w, int64_t n, const int8_t *xq, int64_t ldq,
                        int32_t *acc);

/* int8 conv over im2col columns (AVX2 exact path; affine_i8.c). begin: weight rows
 * [r0, r1) packed once per conv (scratch from ws, kept until the conv returns); NULL when
 * the path does not apply (no AVX2, VNNI preferred, group-wise scales) -> use patches.
 * cols: col[k*ldp + j], K = w->cols rows, np pixels (ldp >= np rounded up to 16, readable);
 * writes y[(r-r0)*ys_r + j] = the czk_affine_op result of pixel j's patch (same per-pixel
 * dynamic quantization, bit-exact int32 accumulators). */
typedef struct czk_i8conv czk_i8conv;
czk_i8conv *czk_affine_conv_begin(const cz_form *w, int64_t r0, int64_t r1, cz_ws *ws);
cz_status czk_affine_conv_cols(const czk_i8conv *cv, const float *col, int64_t ldp, int64_t np,
                               const float *bias, float *y, int64_t ys_r, cz_ws *ws);

/* The same from int16 panels packed straight from the image, weight columns in tap-major
 * order (k' = t * cgp + ci, t = ky * kw + kx, cgp = cg rounded up to even, a zero column
 * for the odd channel; w->cols must be cg * khw): qpack(ctx, st, j0, nr, inv, plain, bp,
 * xs) writes the panel of pixels j0 .. j0+nr-1 (zero past nr) for all nkp = khw * cgp / 2
 * pairs as bp[(kp * 16 + jj) * 2 + t] = the pixel's (k' = 2 kp + t) element quantized
 * with inv[jj] (rint(x * inv), NaN -> 0 and clamp +-127 unless plain), adding every
 * quantized value into xs[jj] when xs != NULL; st: CZK_PACK_STATE bytes per thread (64-byte
 * aligned), its first CZK_QPACK_KEYS bytes zero before a thread's first panel of a call
 * (qpack may keep what it derives from a panel there for later panels of the same call).
 * am[j] = max |patch of pixel j| (NaN ignored, 0 for an all-zero patch), j < np;
 * nan_free: the caller knows no patch holds a NaN (the quantization then skips its NaN
 * mask and clamp wherever they cannot change a value -- same results). */
#define CZK_QPACK_KEYS 256
typedef void (*czk_qpack_fn)(const void *ctx, void *st, int64_t j0, int nr, const float *inv,
                             int plain, int16_t *bp, int32_t *xs);
czk_i8conv *czk_affine_conv_begin_tapmajor(const cz_form *w, int64_t r0, int64_t r1,
                                           int64_t cg, int64_t khw, cz_ws *ws);
cz_status czk_affine_conv_qpacked(const czk_i8conv *cv, czk_qpack_fn qpack, const void *pctx,
                                  const float *am, int64_t np, int nan_free, const float *bias,
                                  float *y, int64_t ys_r, cz_ws *ws);

/* Test/bench hook: 1 routes every conv through the im2col-tile lowering only (no implicit
 * GEMM, sparse panel kernel, direct small-channel conv or packed int8 path) so tests can
 * compare the paths; process-wide, 0 by default. */
void czk_set_conv_legacy(int on);

/* conv pieces */
cz_status czk_conv2d_ref(const cz_form *w, const czk_conv_params *p, const float *x,
                         const float *bias, float *y);
/* cz_options.precise: dense convs in double, bit-identical to czk_conv2d_ref (precise.c) */
cz_status czk_conv2d_precise(const cz_form *w, const czk_conv_params *p, const float *x,
                             const float *bias, float *y, cz_ws *ws);

/* Selected ISA (highest available after the mask). */
static inline int czk_isa(void) {
    int f = czk_features();
    if (f & CZK_F_AVX512) return CZK_ISA_AVX512;
    if (f & CZK_F_AVX2) return CZK_ISA_AVX2;
    return CZK_ISA_PORTABLE;
}

#if defined(__x86_64__) && defined(__GNUC__)
#define CZK_X86 1
#define CZK_T_AVX2 __attribute__((target("avx2,fma")))
#define CZK_T_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx2,fma")))
#define CZK_T_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")))
#else
#define CZK_X86 0
#endif

#endif /* CZ_KINT_H */
