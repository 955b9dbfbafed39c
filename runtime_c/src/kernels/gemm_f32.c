/*
 * gemm_f32.c -- dense float32 GEMM, the workhorse under DENSE forms, codebook tiles, SVD
 * factors and conv (im2col) of dense weights.
 *
 *   C[m*csm + j*csn] = (acc ? C : 0) + sum_k A[m*lda + k] * B(j, k) + bias
 *   B(j, k) = bkm ? B[k*ldb + j] (k-major, im2col columns) : B[j*ldb + k] (n-major, W rows)
 *
 * Optimized path (Goto/BLIS style): B is packed per (KC x NCB) block into NR-wide panels
 * (panel[k][NR], zero padded), A is read in place (MR row pointers, one broadcast per row
 * and k), and an MR x NR register-blocked micro-kernel does MR*NR/VW FMAs per k. The packed
 * block is 256 x 256 floats = 256 KB (fits L2); the A slice MR x KC stays in L1.
 *   AVX2+FMA : MR=6, NR=16 (12 ymm accumulators + 2 B vectors + 1 broadcast = 15 of 16 regs)
 *   AVX-512  : MR=8, NR=32 (16 zmm accumulators)
 *   portable : MR=4, NR=8 with 16-byte GCC vectors (SSE2 on x86-64, NEON elsewhere)
 * The micro-kernels are written once with GCC vector extensions and instantiated per ISA
 * with target attributes, so the AVX-512 instance is the same code as the tested AVX2 one.
 * n-major B (linear: B = W rows) skips packing: a dot-product kernel takes 3 X rows x 4 W
 * rows (12 accumulators, horizontal sums at the end of each K block); at batch 1 this is
 * the streaming GEMV. Packing n-major B would be a scalar transpose costing as much as
 * the FMAs at batch 32. k-major B (conv im2col columns) uses the packed micro-kernel; when
 * it is already panel-shaped (aligned, ldb a multiple of NR and an odd number of 16-float
 * lines) the micro-kernel reads its full NR-wide panels in place with k-stride ldb, no
 * packing (a partial last panel is packed: no read past column N of any row).
 * czk_gemm_f32_implicit (conv): B is never materialised -- a pack callback writes each
 * KCI x NR block of a panel (32 KB at NR 16) just before the micro-kernel runs every row
 * tile of A over it, and M % MR rows go to MRH-row tiles (4 on AVX2) instead of a padded
 * MR tile.
 * Threads: over column blocks of B when M*N*K is large.
 */
#include <stdlib.h>

#include "kint.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#define KC 256
#define NCB 256 /* multiple of every NR */
#define KCI 512 /* K block of the implicit-B GEMM (its packed block: 32 KB at NR = 16) */

/* ---- reference: plain triple loop, float accumulation in k order ---------------------- */
void czk_gemm_f32_ref(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, int bkm, float *C, int64_t csm,
                      int64_t csn, const float *bias_m, const float *bias_n, int acc) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t j = 0; j < N; j++) {
            double s = 0.0;   /* the reference accumulates in double: it is the yardstick */
            for (int64_t k = 0; k < K; k++)
                s += (double)A[m * lda + k] * (bkm ? B[k * ldb + j] : B[j * ldb + k]);
            if (bias_m) s += bias_m[m];
            if (bias_n) s += bias_n[j];
            float *c = &C[m * csm + j * csn];
            *c = acc ? *c + (float)s : (float)s;
        }
}

/* ---- packing ------------------------------------------------------------------------- */
/* panel p of the block: bp[p*kc*NR + k*NR + jj] = B(j0 + p*NR + jj, k0 + k), 0 past N */
static void pack_b(const float *B, int64_t ldb, int bkm, int64_t N, int64_t j0, int64_t nc,
                   int64_t k0, int64_t kc, int NR, float *bp) {
    for (int64_t p = 0; p * NR < nc; p++) {
        float *dst = bp + p * kc * NR;
        int64_t jb = j0 + p * NR;
        int64_t nv = N - jb < NR ? N - jb : NR;
        if (bkm && nv == NR) {
            for (int64_t k = 0; k < kc; k++) memcpy(dst + k * NR, B + (k0 + k) * ldb + jb, (size_t)NR * 4);
        } else if (bkm) {
            /* a partial panel: one select per element (no memcpy / memset call per row:
             * those calls dominated small products, e.g. 12 x 12 x 32 attention heads) */
            for (int64_t k = 0; k < kc; k++) {
                const float *src = B + (k0 + k) * ldb + jb;
                float *d = dst + k * NR;
                for (int64_t jj = 0; jj < NR; jj++) d[jj] = jj < nv ? src[jj] : 0.f;
            }
        } else {
            int64_t jj = 0;
            for (; jj < nv; jj++) {
                const float *src = B + (jb + jj) * ldb + k0;
                for (int64_t k = 0; k < kc; k++) dst[k * NR + jj] = src[k];
            }
            for (; jj < NR; jj++)
                for (int64_t k = 0; k < kc; k++) dst[k * NR + jj] = 0.f;
        }
    }
}

/* ---- micro-kernels and GEMV, one instance per ISA ------------------------------------ */
/* store helper shared by the micro-kernels: tile t[MR][NR] (row-major) into C */
static void store_tile(const float *t, int NR, float *c, int64_t csm, int64_t csn, int mr,
                       int nr, int load, const float *bm, const float *bn) {
    if (csn == 1 && !bm && !bn) {   /* (MatMul's partial tiles: no per-element branches) */
        for (int i = 0; i < mr; i++) {
            const float *ti = t + i * NR;
            float *ci = c + i * csm;
            if (load)
                for (int j = 0; j < nr; j++) ci[j] += ti[j];
            else
                memcpy(ci, ti, (size_t)nr * sizeof(float));
        }
        return;
    }
    for (int i = 0; i < mr; i++)
        for (int j = 0; j < nr; j++) {
            float v = t[i * NR + j];
            if (bm) v += bm[i];
            if (bn) v += bn[j];
            float *p = &c[i * csm + j * csn];
            *p = load ? *p + v : v;
        }
}

#define DEF_UK(NAME, SFX, ATTR, VW, MR, NV)                                                    \
    ATTR static void NAME(int64_t kc, const float *const *a, const float *bp, int64_t bs, \
                              float *c,                                                       \
                              int64_t csm, int64_t csn, int mr, int nr, int load,             \
                              const float *bm, const float *bn) {                             \
        vf_##SFX acc[MR][NV];                                                                 \
        _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                                 \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) acc[i][j] = (vf_##SFX){0};   \
        for (int64_t k = 0; k < kc; k++) {                                                    \
            vf_##SFX b[NV];                                                                   \
            _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++)                              \
                b[j] = *(const vf_##SFX *)(bp + k * bs + j * VW);                             \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++) {                           \
                vf_##SFX av = a[i][k] - (vf_##SFX){0}; /* broadcast (x - 0 == x) */                                        \
                _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) acc[i][j] += av * b[j];  \
            }                                                                                 \
        }                                                                                     \
        if (mr == MR && nr == NV * VW && csn == 1) {                                          \
            _Pragma("GCC unroll 16") for (int i = 0; i < MR; i++)                             \
                _Pragma("GCC unroll 4") for (int j = 0; j < NV; j++) {                        \
                vf_##SFX v = acc[i][j];                                                       \
                if (bm) v += bm[i];                                                           \
                if (bn) v += *(const vfu_##SFX *)(bn + j * VW);                               \
                vfu_##SFX *p = (vfu_##SFX *)(c + i * csm + j * VW);                           \
                *p = load ? *p + v : v;                                                       \
            }                                                                                 \
        } else {                                                                              \
            float t[MR * NV * VW];                                                            \
            for (int i = 0; i < MR; i++)                                                      \
                for (int j = 0; j < NV; j++) memcpy(t + i * NV * VW + j * VW, &acc[i][j], VW * 4); \
            store_tile(t, NV * VW, c, csm, csn, mr, nr, load, bm, bn);                        \
        }                                                                                     \
    }

#define DEF_GEMM_ISA(SFX, ATTR, VW, MR, NV, MRH)                                                   \
    typedef float vf_##SFX __attribute__((vector_size(VW * 4)));                              \
    typedef float vfu_##SFX __attribute__((vector_size(VW * 4), aligned(4)));                 \
    DEF_UK(uk_##SFX, SFX, ATTR, VW, MR, NV)                                                \
    DEF_UK(ukh_##SFX, SFX, ATTR, VW, MRH, NV)                                              \
    /* GEMV: MA (1..3) rows of A against rows j0..j1 of n-major B, 4 B rows at a time */      \
    ATTR static void gemv_##SFX(int MA, int64_t j0, int64_t j1, int64_t K, const float *A,    \
                                int64_t lda, const float *B, int64_t ldb, float *C,           \
                                int64_t csm, int64_t csn, const float *bm, const float *bn,   \
                                int acc) {                                                    \
        int64_t j = j0;                                                                       \
        for (; j < j1; j += 4) {                                                              \
            int nj = j1 - j < 4 ? (int)(j1 - j) : 4;                                          \
            const float *b[4];                                                                \
            for (int q = 0; q < 4; q++) b[q] = B + (j + (q < nj ? q : 0)) * ldb;              \
            vf_##SFX s[3][4];                                                                 \
            _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++)                               \
                _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) s[i][q] = (vf_##SFX){0};  \
            int64_t k = 0;                                                                    \
            if (MA == 1) {                                                                    \
                for (; k + VW <= K; k += VW) {                                                \
                    vf_##SFX x0 = *(const vfu_##SFX *)(A + k);                                \
                    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++)                       \
                        s[0][q] += x0 * *(const vfu_##SFX *)(b[q] + k);                       \
                }                                                                             \
            } else {                                                                          \
                for (; k + VW <= K; k += VW) {                                                \
                    vf_##SFX xv[3];                                                           \
                    _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++)                       \
                        xv[i] = *(const vfu_##SFX *)(A + (i < MA ? i : 0) * lda + k);         \
                    _Pragma("GCC unroll 4") for (int q = 0; q < 4; q++) {                     \
                        vf_##SFX bv = *(const vfu_##SFX *)(b[q] + k);                         \
                        _Pragma("GCC unroll 3") for (int i = 0; i < 3; i++)                   \
                            s[i][q] += xv[i] * bv;                                            \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
            for (int i = 0; i < MA; i++)                                                      \
                for (int q = 0; q < nj; q++) {                                                \
                    float r = 0.f;                                                            \
                    for (int l = 0; l < VW; l++) r += s[i][q][l];                             \
                    for (int64_t kk = k; kk < K; kk++) r += A[i * lda + kk] * b[q][kk];       \
                    if (bm) r += bm[i];                                                       \
                    if (bn) r += bn[j + q];                                                   \
                    float *p = &C[i * csm + (j + q) * csn];                                   \
                    *p = acc ? *p + r : r;                                                    \
                }                                                                             \
        }                                                                                     \
    }

DEF_GEMM_ISA(port, , 4, 4, 2, 2)
#if CZK_X86
DEF_GEMM_ISA(avx2, CZK_T_AVX2, 8, 6, 2, 4)
DEF_GEMM_ISA(avx512, CZK_T_AVX512, 16, 8, 2, 4)
#endif

typedef void (*uk_fn)(int64_t, const float *const *, const float *, int64_t, float *, int64_t, int64_t,
                      int, int, int, const float *, const float *);
typedef void (*gemv_fn)(int, int64_t, int64_t, int64_t, const float *, int64_t, const float *,
                        int64_t, float *, int64_t, int64_t, const float *, const float *, int);

cz_status czk_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                       const float *B, int64_t ldb, int bkm, float *C, int64_t csm,
                       int64_t csn, const float *bias_m, const float *bias_n, int acc,
                       cz_ws *ws) {
    if (M <= 0 || N <= 0) return CZ_OK;
    if (K <= 0 || (ws && ws->precise)) {   /* precise: the reference accumulates in double */
        czk_gemm_f32_ref(M, N, K > 0 ? K : 0, A, lda, B, ldb, bkm, C, csm, csn, bias_m, bias_n, acc);
        return CZ_OK;
    }
    int isa = czk_isa();
    uk_fn uk = uk_port;
    gemv_fn gv = gemv_port;
    int MR = 4, NR = 8;
#if CZK_X86
    if (isa == CZK_ISA_AVX512) { uk = uk_avx512; gv = gemv_avx512; MR = 8; NR = 32; }
    else if (isa == CZK_ISA_AVX2) { uk = uk_avx2; gv = gemv_avx2; MR = 6; NR = 16; }
#else
    (void)isa;
#endif
    double work = (double)M * (double)N * (double)K;
    if (!bkm) {
        /* n-major B (W rows): dot-product kernel, no packing. Packing would transpose B
         * element by element, which costs as much as the FMAs when M (the batch) is small.
         * Blocks: JC rows of B x KCD columns (256 KB) stay in L2 while every triplet of A
         * rows streams past them; partial sums go through C between K blocks. */
        const int64_t JC = 64, KCD = 1024;
        int64_t njc = (N + JC - 1) / JC;
        int nt = czk_threads(ws, work);
        if (nt > njc) nt = (int)njc;
        CZK_PAR_FOR(nt, static, jc, njc, tid_, {
            int64_t j0 = jc * JC, j1 = j0 + JC < N ? j0 + JC : N;
            for (int64_t k0 = 0; k0 < K; k0 += KCD) {
                int64_t kc = K - k0 < KCD ? K - k0 : KCD;
                int last = k0 + kc >= K;
                for (int64_t m0 = 0; m0 < M; m0 += 3) {
                    int ma = M - m0 < 3 ? (int)(M - m0) : 3;
                    gv(ma, j0, j1, kc, A + m0 * lda + k0, lda, B + k0, ldb, C + m0 * csm, csm,
                       csn, last && bias_m ? bias_m + m0 : NULL, last ? bias_n : NULL,
                       acc || k0 > 0);
                }
            }
        });
        return CZ_OK;
    }
    int64_t nblk = (N + NCB - 1) / NCB;
    int nt = czk_threads(ws, work);
    if (nt > nblk) nt = (int)nblk;
    if (((uintptr_t)B % (NR * 4 > 64 ? 64 : NR * 4)) == 0 && ldb % NR == 0 &&
        ldb >= (N + NR - 1) / NR * NR && (ldb / 16) % 2 == 1) {
        /* k-major B already laid out like panels (conv im2col columns, 16-float-aligned rows
         * of an odd number of 64-byte lines so consecutive k spread over all L1 sets): the
         * micro-kernel reads it in place with k-stride ldb, no packing. Panel-outer: the
         * KC x NR panel stays in L1 while the MR-row slices of A stream past it. A partial
         * last panel (N % NR != 0) is packed, zero padded, into a per-thread KC x NR buffer
         * instead: read in place it would load columns N .. NR-1 of every row, and B's last
         * row may end at column N (a caller's strided X), so that read ran past the buffer. */
        float *zr = czk_scratch(ws, ((size_t)KC + (size_t)nt * KC * NR) * sizeof(float));
        if (!zr) return CZ_ERR_MEMORY;
        memset(zr, 0, KC * sizeof(float));
        CZK_PAR_FOR(nt, dynamic, jb, nblk, tid, {
            float *pp = zr + KC + (size_t)tid * KC * NR;   /* 64-byte aligned: KC*4 = 1 KB */
            int64_t j0 = jb * NCB, nc = N - j0 < NCB ? N - j0 : NCB;
            for (int64_t k0 = 0; k0 < K; k0 += KC) {
                int64_t kc = K - k0 < KC ? K - k0 : KC;
                int last = k0 + kc >= K;
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? (int)(nc - jr) : NR;
                    const float *bp = B + k0 * ldb + j0 + jr;
                    int64_t bs = ldb;
                    if (nr < NR) {
                        pack_b(B, ldb, 1, N, j0 + jr, nr, k0, kc, NR, pp);
                        bp = pp;
                        bs = NR;
                    }
                    for (int64_t m0 = 0; m0 < M; m0 += MR) {
                        int mr = M - m0 < MR ? (int)(M - m0) : MR;
                        const float *ap[16];
                        for (int i = 0; i < MR; i++) ap[i] = i < mr ? A + (m0 + i) * lda + k0 : zr;
                        uk(kc, ap, bp, bs, C + m0 * csm + (j0 + jr) * csn,
                           csm, csn, mr, nr, acc || k0 > 0, last && bias_m ? bias_m + m0 : NULL,
                           last && bias_n ? bias_n + j0 + jr : NULL);
                    }
                }
            }
        });
        return CZ_OK;
    }
    int64_t kcmax = K < KC ? K : KC;
    float *buf = czk_scratch(ws, ((size_t)nt * kcmax * NCB + KC) * sizeof(float));
    if (!buf) return CZ_ERR_MEMORY;
    float *zrow = buf + (size_t)nt * kcmax * NCB;
    memset(zrow, 0, (size_t)kcmax * sizeof(float));   /* (the micro-kernel reads kc <= kcmax) */
    CZK_PAR_FOR(nt, dynamic, jb, nblk, tid, {
        float *bp = buf + (size_t)tid * kcmax * NCB;
        int64_t j0 = jb * NCB, nc = N - j0 < NCB ? N - j0 : NCB;
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            int64_t kc = K - k0 < KC ? K - k0 : KC;
            int last = k0 + kc >= K;
            pack_b(B, ldb, bkm, N, j0, nc, k0, kc, NR, bp);
            for (int64_t m0 = 0; m0 < M; m0 += MR) {
                int mr = M - m0 < MR ? (int)(M - m0) : MR;
                const float *ap[16];
                for (int i = 0; i < MR; i++) ap[i] = i < mr ? A + (m0 + i) * lda + k0 : zrow;
                for (int64_t jr = 0; jr < nc; jr += NR) {
                    int nr = nc - jr < NR ? (int)(nc - jr) : NR;
                    uk(kc, ap, bp + (jr / NR) * kc * NR, NR, C + m0 * csm + (j0 + jr) * csn, csm,
                       csn, mr, nr, acc || k0 > 0, last && bias_m ? bias_m + m0 : NULL,
                       last && bias_n ? bias_n + j0 + jr : NULL);
                }
            }
        }
    });
    return CZ_OK;
}

/* ---- implicit-B GEMM (conv): B panels produced on the fly by a pack callback --------- */
/* Row tiles of the implicit GEMM: MR-row tiles, and MRH-row ones so that M % MR rows do
 * not waste a whole MR tile (M = 64 at MR 6: ten 6-row tiles and one 4-row tile, not an
 * eleventh 6-row tile with 2 zero rows). Returns the number of tiles; tile t starts at row
 * tm[t] with tr[t] rows and uses the MRH kernel when th[t]. */
static int64_t row_tiles(int64_t M, int MR, int MRH, int64_t *tm, int *tr, int *th) {
    int64_t n = M / MR, r = M % MR, h = 0, nt = 0, m = 0;
    int part = 0;
    if (r == MRH) h = 1;
    else if (r && n >= 1 && (r + MR) % MRH == 0 && (r + MR) / MRH <= 2) { h = (r + MR) / MRH; n--; }
    else if (r) part = 1;
    for (int64_t i = 0; i < n; i++, nt++, m += MR) { tm[nt] = m; tr[nt] = MR; th[nt] = 0; }
    for (int64_t i = 0; i < h; i++, nt++, m += MRH) { tm[nt] = m; tr[nt] = MRH; th[nt] = 1; }
    if (part) { tm[nt] = m; tr[nt] = (int)(M - m); th[nt] = M - m <= MRH; nt++; }
    return nt;
}

cz_status czk_gemm_f32_implicit(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                                czk_pack_fn pack, const void *ctx, int64_t kgran, float *C,
                                int64_t csm, const float *bias_m, cz_ws *ws) {
    if (M <= 0 || N <= 0) return CZ_OK;
    int isa = czk_isa();
    uk_fn uk = uk_port, ukh = ukh_port;
    int MR = 4, MRH = 2, NR = 8;
#if CZK_X86
    if (isa == CZK_ISA_AVX512) { uk = uk_avx512; ukh = ukh_avx512; MR = 8; MRH = 4; NR = 32; }
    else if (isa == CZK_ISA_AVX2) { uk = uk_avx2; ukh = ukh_avx2; MR = 6; MRH = 4; NR = 16; }
#else
    (void)isa;
#endif
    if (K <= 0) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t j = 0; j < N; j++) C[m * csm + j] = bias_m ? bias_m[m] : 0.f;
        return CZ_OK;
    }
    /* K blocks of at most KCI rows, balanced, starting at multiples of kgran when possible:
     * the block of the panel is packed and used at once (in L1 / close to it) while every
     * row tile of A streams past it */
    int64_t kcb;
    if (kgran > 1 && kgran <= KCI) {
        int64_t units = (K + kgran - 1) / kgran, per = KCI / kgran;
        int64_t nkb = (units + per - 1) / per;
        kcb = (units + nkb - 1) / nkb * kgran;
    } else {
        int64_t nkb = (K + KCI - 1) / KCI;
        kcb = (K + nkb - 1) / nkb;
    }
    int64_t npan = (N + NR - 1) / NR;
    int nt = czk_threads(ws, (double)M * (double)N * (double)K);
    if (nt > npan) nt = (int)npan;
    /* zero row for the missing rows of a partial tile, the row tiles, then per thread one
     * panel block (kcb x NR + NR floats of slack) and the pack's state; 64-byte aligned */
    size_t pstride = ((size_t)kcb * NR + NR + 15) / 16 * 16 + CZK_PACK_STATE / sizeof(float);
    size_t zlen = ((size_t)kcb + 15) / 16 * 16;
    int64_t mtmax = M / MRH + 2;
    size_t tbytes = ((size_t)mtmax * (sizeof(int64_t) + 2 * sizeof(int)) + 63) / 64 * 64;
    float *buf = czk_scratch(ws, (zlen + (size_t)nt * pstride) * sizeof(float) + tbytes);
    if (!buf) return CZ_ERR_MEMORY;
    float *zr = buf;
    memset(zr, 0, zlen * sizeof(float));
    int64_t *tm = (int64_t *)(buf + zlen + (size_t)nt * pstride);
    int *tr = (int *)(tm + mtmax), *th = tr + mtmax;
    int64_t ntile = row_tiles(M, MR, MRH, tm, tr, th);
    CZK_PAR_FOR(nt, static, jp, npan, tid, {
        float *pan = buf + zlen + (size_t)tid * pstride;
        int64_t j0 = jp * NR;
        int nr = N - j0 < NR ? (int)(N - j0) : NR;
        for (int64_t k0 = 0; k0 < K; k0 += kcb) {
            int64_t kc = K - k0 < kcb ? K - k0 : kcb;
            int last = k0 + kc >= K;
            pack(ctx, pan + pstride - CZK_PACK_STATE / sizeof(float), j0, nr, k0, kc, NR, pan);
            for (int64_t t = 0; t < ntile; t++) {
                int64_t m0 = tm[t];
                int mr = tr[t], R = th[t] ? MRH : MR;
                const float *ap[16];
                for (int i = 0; i < R; i++) ap[i] = i < mr ? A + (m0 + i) * lda + k0 : zr;
                (th[t] ? ukh : uk)(kc, ap, pan, NR, C + m0 * csm + j0, csm, 1, mr, nr, k0 > 0,
                                   last && bias_m ? bias_m + m0 : NULL, NULL);
            }
        }
    });
    return CZ_OK;
}

/* ---- DENSE form: czk_op over rows [r0, r1) ------------------------------------------- */
cz_status czk_dense_op(CZK_OP_ARGS, cz_ws *ws) {
    const float *W = w->u.dense.w + r0 * w->cols;
    int64_t R = r1 - r0, K = w->cols;
    if (xs_c == 1)   /* X rows: A = X (n x K), B = W rows (n-major) -> C[i][r] */
        return czk_gemm_f32(n, R, K, x, xs_n, W, K, 0, y, ys_n, ys_r, NULL, bias, acc, ws);
    if (xs_n == 1)   /* X columns: A = W, B = X (k-major) -> C[r][i] */
        return czk_gemm_f32(R, n, K, W, K, x, xs_c, 1, y, ys_r, ys_n, bias, NULL, acc, ws);
    /* general strides: gather X rows into scratch */
    float *t = czk_scratch(ws, (size_t)n * K * sizeof(float));
    if (!t) return CZ_ERR_MEMORY;
    for (int64_t i = 0; i < n; i++)
        for (int64_t c = 0; c < K; c++) t[i * K + c] = x[i * xs_n + c * xs_c];
    return czk_gemm_f32(n, R, K, t, K, W, K, 0, y, ys_n, ys_r, NULL, bias, acc, ws);
}

void czk_dense_op_ref(CZK_OP_ARGS) {
    const float *W = w->u.dense.w;
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = r0; r < r1; r++) {
            double s = 0.0;
            for (int64_t c = 0; c < w->cols; c++) s += (double)W[r * w->cols + c] * x[i * xs_n + c * xs_c];
            if (bias) s += bias[r - r0];
            float *p = &y[i * ys_n + (r - r0) * ys_r];
            *p = acc ? *p + (float)s : (float)s;
        }
}
