/*
 * ops_nn.c -- Linear, Gemm, MatMul, Conv, ConvTranspose, pools, BatchNormalization,
 * LayerNormalization, Softmax.
 *
 * Products go through the kernels: czk_linear / czk_conv2d on the file tensor's kernel form
 * when the weight is a file tensor the plan bound as a form (Linear W, Gemm B with transB=1,
 * Conv W), else on a temporary dense form over the (transposed where needed) operand.
 */
#include <math.h>
#include <string.h>

#include "graph.h"
#include "kernels/kint.h"   /* czk_gemm_f32: k-major B without a transpose (MatMul) */
#include "ops_util.h"
#include "ops_vec.h"

#define FAILS(...) return cz_ex_fail(ex, CZ_ERR_SHAPE, __VA_ARGS__)

static void dense_form(cz_form *f, const float *w, int64_t rows, int64_t cols) {
    memset(f, 0, sizeof *f);
    f->kind = CZ_FORM_DENSE;
    f->ndim = 2;
    f->shape[0] = f->rows = rows;
    f->shape[1] = f->cols = cols;
    f->u.dense.w = w;
}

/* Y (batch x rows) = X (batch x cols) W^T + bias for any form; handles cols == 0. */
static cz_status linear(cz_exec *ex, const cz_form *w, int64_t batch, const float *x,
                        const float *bias, float *y) {
    if (batch == 0 || w->rows == 0) return CZ_OK;
    if (w->cols == 0) {
        for (int64_t i = 0; i < batch; i++)
            for (int64_t r = 0; r < w->rows; r++) y[i * w->rows + r] = bias ? bias[r] : 0.0f;
        return CZ_OK;
    }
    cz_status st = czk_linear(w, batch, x, w->cols, bias, y, w->rows, &ex->ws);
    if (st) return cz_ex_fail(ex, st, "kernel failed (%s)", cz_status_name(st));
    return CZ_OK;
}

static float *transpose2(cz_exec *ex, const float *a, int64_t r, int64_t c) {
    float *t = cz_ex_scratch(ex, 4 * (uint64_t)r * (uint64_t)c);
    if (!t) return NULL;
    for (int64_t i = 0; i < r; i++)
        for (int64_t j = 0; j < c; j++) t[j * r + i] = a[i * c + j];
    return t;
}

static cz_status bias_vec(cz_exec *ex, cz_rt *b, int64_t n, const char *what, const float **out) {
    *out = NULL;
    if (!b) return CZ_OK;
    cz_status st = cz_ex_getf(ex, b, what, out);
    if (st) return st;
    if (b->ndim != 1 || b->shape[0] != n) FAILS("%s must have shape [%lld]", what, (long long)n);
    return CZ_OK;
}

/* ---- Linear / Gemm / MatMul ------------------------------------------------------------ */

static cz_status op_linear(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *X = in[0], *W = in[1];
    const float *x, *bias;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
    if (!cz_is_float(W->dtype)) return cz_ex_fail(ex, CZ_ERR_PARAM, "W must be a float tensor");
    if (W->ndim != 2) FAILS("W must be 2-D (out, in), got rank %d", W->ndim);
    int64_t O = W->shape[0], I = W->shape[1];
    if (X->ndim < 1 || X->shape[X->ndim - 1] != I)
        FAILS("X last dim must equal W's in-dim %lld", (long long)I);
    if ((st = bias_vec(ex, in[2], O, "B", &bias))) return st;
    cz_form tmp;
    const cz_form *f = W->form;
    if (!f) {
        const float *w;
        if ((st = cz_ex_getf(ex, W, "W", &w))) return st;
        dense_form(&tmp, w, O, I);
        f = &tmp;
    }
    int64_t os[CZ_MAX_NDIM];
    memcpy(os, X->shape, sizeof os);
    os[X->ndim - 1] = O;
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, X->ndim, os))) return st;
    int64_t batch = 1;
    for (int d = 0; d < X->ndim - 1; d++) batch *= X->shape[d];
    return linear(ex, f, batch, x, bias, out[0]->data);
}

static cz_status op_gemm(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *A = in[0], *B = in[1], *C = in[2];
    const cz_attr *at = nd->attr;
    const float *a, *b = NULL, *c = NULL;
    cz_status st;
    if ((st = cz_ex_getf(ex, A, "A", &a))) return st;
    if (!cz_is_float(B->dtype)) return cz_ex_fail(ex, CZ_ERR_PARAM, "B must be a float tensor");
    if (A->ndim != 2 || B->ndim != 2) FAILS("A and B must be 2-D");
    int ta = (int)at[A_GEMM_TRANSA].i, tb = (int)at[A_GEMM_TRANSB].i;
    int64_t M = ta ? A->shape[1] : A->shape[0], K = ta ? A->shape[0] : A->shape[1];
    int64_t K2 = tb ? B->shape[1] : B->shape[0], N = tb ? B->shape[0] : B->shape[1];
    if (K != K2) FAILS("inner dims differ: %lld and %lld", (long long)K, (long long)K2);
    int64_t os[2] = {M, N};
    cz_bcast bc;
    if (C) {
        if ((st = cz_ex_getf(ex, C, "C", &c))) return st;
        int nds[2] = {C->ndim, 2};
        const int64_t *shs[2] = {C->shape, os};
        if (!cz_bcast_init(&bc, 2, nds, shs) || bc.r != 2 || bc.shape[0] != M || bc.shape[1] != N)
            FAILS("C does not broadcast to [%lld, %lld]", (long long)M, (long long)N);
    }
    if (ta && !(a = transpose2(ex, a, A->shape[0], A->shape[1])))
        return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    cz_form tmp;
    const cz_form *f = tb ? B->form : NULL;
    if (!f) {
        if ((st = cz_ex_getf(ex, B, "B", &b))) return st;
        if (!tb && !(b = transpose2(ex, b, K, N)))
            return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
        dense_form(&tmp, b, N, K);
        f = &tmp;
    }
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, 2, os))) return st;
    float *y = out[0]->data;
    if ((st = linear(ex, f, M, a, NULL, y))) return st;
    double ald = at[A_GEMM_ALPHA].f, bed = at[A_GEMM_BETA].f;
    if (ald != 1.0 || C) {
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double v = ald * y[i * N + j];
                if (C) v += bed * c[i * bc.st[0][0] + j * bc.st[0][1]];
                y[i * N + j] = (float)v;
            }
    }
    return CZ_OK;
}

static cz_status matmul_int(cz_exec *ex, cz_rt *A, cz_rt *B, cz_rt *Y, const cz_bcast *bb,
                            int64_t M, int64_t K, int64_t N, int64_t sa, int64_t sb) {
    (void)ex;
    int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
    uint64_t nb = bb->n;
    for (uint64_t t = 0; t < nb; t++) {
        /* batch offsets from the broadcast iterator over batch dims (inner dim included) */
        int64_t ao = off[0] * sa, bo = off[1] * sb;
        (void)idx;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                uint64_t acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (uint64_t)cz_rt_get_i(A, (uint64_t)(ao + i * K + k)) *
                           (uint64_t)cz_rt_get_i(B, (uint64_t)(bo + k * N + j));
                cz_rt_put_i(Y, t * (uint64_t)(M * N) + (uint64_t)(i * N + j), (int64_t)acc);
            }
        /* advance all batch dims */
        for (int d = bb->r - 1; d >= 0; d--) {
            idx[d]++;
            off[0] += bb->st[0][d];
            off[1] += bb->st[1][d];
            if (idx[d] < bb->shape[d]) break;
            off[0] -= bb->st[0][d] * bb->shape[d];
            off[1] -= bb->st[1][d] * bb->shape[d];
            idx[d] = 0;
        }
    }
    return CZ_OK;
}

static cz_status op_matmul(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *A = in[0], *B = in[1];
    int af = cz_is_float(A->dtype), bf = cz_is_float(B->dtype);
    if ((!af && !cz_is_int(A->dtype)) || (!bf && !cz_is_int(B->dtype)))
        return cz_ex_fail(ex, CZ_ERR_PARAM, "MatMul operands must be numeric");
    if ((af ? CZ_F32 : A->dtype) != (bf ? CZ_F32 : B->dtype))
        return cz_ex_fail(ex, CZ_ERR_PARAM, "operand dtypes differ: %s and %s",
                          cz_dtype_name(A->dtype), cz_dtype_name(B->dtype));
    if (A->ndim == 0 || B->ndim == 0) FAILS("MatMul operands must have rank >= 1");
    int64_t as[CZ_MAX_NDIM + 1], bs[CZ_MAX_NDIM + 1];
    int ar = A->ndim, br = B->ndim;
    memcpy(as, A->shape, sizeof(int64_t) * (size_t)ar);
    memcpy(bs, B->shape, sizeof(int64_t) * (size_t)br);
    int a1 = ar == 1, b1 = br == 1;
    if (a1) { as[1] = as[0]; as[0] = 1; ar = 2; }
    if (b1) { bs[1] = 1; br = 2; }
    int64_t M = as[ar - 2], K = as[ar - 1], K2 = bs[br - 2], N = bs[br - 1];
    if (K != K2) FAILS("inner dims differ: %lld and %lld", (long long)K, (long long)K2);
    cz_bcast bb;
    int nds[2] = {ar - 2, br - 2};
    const int64_t *shs[2] = {as, bs};
    if (!cz_bcast_init(&bb, 2, nds, shs)) FAILS("batch dims do not broadcast");
    int64_t os[CZ_MAX_NDIM + 2];
    int r = 0;
    for (int d = 0; d < bb.r; d++) os[r++] = bb.shape[d];
    if (!a1) os[r++] = M;
    if (!b1) os[r++] = N;
    if (r > CZ_MAX_NDIM) FAILS("result rank exceeds %d", CZ_MAX_NDIM);
    cz_status st;
    if (!af) {
        if ((st = cz_ex_alloc(ex, out[0], A->dtype, r, os))) return st;
        return matmul_int(ex, A, B, out[0], &bb, M, K, N, M * K, K * N);
    }
    const float *a, *b;
    if ((st = cz_ex_getf(ex, A, "A", &a))) return st;
    if ((st = cz_ex_getf(ex, B, "B", &b))) return st;
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, r, os))) return st;
    float *y = out[0]->data;
    if (M == 0 || N == 0 || bb.n == 0) return CZ_OK;
    if (K == 0) {
        memset(y, 0, 4 * (size_t)(bb.n * (uint64_t)(M * N)));
        return CZ_OK;
    }
    /* B is used in its own (k-major, K x N) layout: czk_gemm_f32(bkm = 1), no transpose */
    int b_shared = 1, a_full = 1;
    for (int d = 0; d < bb.r; d++) {
        b_shared &= bb.st[1][d] == 0;
        a_full &= bb.st[0][d] != 0 || bb.shape[d] == 1;
    }
    if (b_shared && a_full) {   /* one weight for every batch: all A rows in one product */
        st = czk_gemm_f32((int64_t)bb.n * M, N, K, a, K, b, N, 1, y, N, 1, NULL, NULL, 0,
                          &ex->ws);
        if (st) return cz_ex_fail(ex, st, "kernel failed (%s)", cz_status_name(st));
        return CZ_OK;
    }
    /* batched: one product per batch entry; batches split over threads (each with its own
     * scratch arena, one thread inside) when there are several and enough work */
    int64_t nbt = (int64_t)bb.n;
    double work = (double)M * (double)N * (double)K;
    int nt = ex->ws.threads;
    if (nt > nbt) nt = (int)nbt;
    if (nt < 1 || work * (double)nbt < 2e5) nt = 1;
    cz_status fail = CZ_OK;
#define MM_ONE(t, ws)                                                                      \
    do {                                                                                  \
        int64_t rem = (t), oa = 0, ob = 0;                                                \
        for (int d = bb.r - 1; d >= 0; d--) {                                             \
            int64_t q = rem % bb.shape[d];                                                \
            rem /= bb.shape[d];                                                           \
            oa += q * bb.st[0][d];                                                        \
            ob += q * bb.st[1][d];                                                        \
        }                                                                                 \
        s2 = czk_gemm_f32(M, N, K, a + oa * M * K, K, b + ob * K * N, N, 1,                \
                          y + (t) * M * N, N, 1, NULL, NULL, 0, (ws));                    \
    } while (0)
    if (nt <= 1) {   /* no OpenMP region for one thread (see CZ_PAR_FOR) */
        for (int64_t t = 0; t < nbt && !fail; t++) {
            cz_status s2;
            MM_ONE(t, &ex->ws);
            fail = s2;
        }
    } else {
#pragma omp parallel num_threads(nt)
        {
            cz_ws child;
            cz_arena_init(&child.arena, ex->alloc, 0);
            child.threads = 1;
            child.precise = ex->ws.precise;
#pragma omp for schedule(static)
            for (int64_t t = 0; t < nbt; t++) {
                cz_status s2;
                MM_ONE(t, &child);
                if (s2) {
#pragma omp critical(cz_matmul_fail)
                    fail = s2;
                }
                cz_arena_free_all(&child.arena);
            }
        }
    }
#undef MM_ONE
    if (fail) return cz_ex_fail(ex, fail, "kernel failed (%s)", cz_status_name(fail));
    return CZ_OK;
}

/* ---- Conv / ConvTranspose / pools ------------------------------------------------------- */

/* ONNX auto_pad: pads begin/end for 2 spatial dims */
static void spatial_pads(const cz_attr *autopad, const cz_attr *pads, const int64_t *in_hw,
                         const int64_t *keff, const int64_t *s, int64_t *pb, int64_t *pe) {
    int mode = autopad->choice;
    for (int a = 0; a < 2; a++) {
        if (mode == AUTOPAD_NOTSET) {
            pb[a] = pads->set ? pads->ints[a] : 0;
            pe[a] = pads->set ? pads->ints[a + 2] : 0;
        } else if (mode == AUTOPAD_VALID) {
            pb[a] = pe[a] = 0;
        } else {
            int64_t o = (in_hw[a] + s[a] - 1) / s[a];
            int64_t total = (o - 1) * s[a] + keff[a] - in_hw[a];
            if (total < 0) total = 0;
            int64_t small = total / 2;
            pb[a] = mode == AUTOPAD_SAME_UPPER ? small : total - small;
            pe[a] = total - pb[a];
        }
    }
}

static cz_status rank4(cz_exec *ex, const cz_rt *x, const char *what) {
    if (x->ndim != 4)
        return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "%s has rank %d; op set 1 supports 2-D %s only "
                          "(rank-4 N, C, H, W)", what, x->ndim, ex->node->op_name);
    return CZ_OK;
}

static void ints2(const cz_attr *a, int64_t *o) {
    o[0] = a->set ? a->ints[0] : 1;
    o[1] = a->set ? a->ints[1] : 1;
}

static cz_status op_conv(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *W = in[1];
    const cz_attr *at = nd->attr;
    const float *x, *bias;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
    if (!cz_is_float(W->dtype)) return cz_ex_fail(ex, CZ_ERR_PARAM, "W must be a float tensor");
    if ((st = rank4(ex, X, "X")) || (st = rank4(ex, W, "W"))) return st;
    int64_t n = X->shape[0], c = X->shape[1], h = X->shape[2], wd = X->shape[3];
    int64_t m = W->shape[0], cg = W->shape[1], kh = W->shape[2], kw = W->shape[3];
    int64_t g = at[A_CONV_GROUP].i;
    const cz_attr *ks = &at[A_CONV_KERNEL_SHAPE];
    if (ks->set && (ks->ints[0] != kh || ks->ints[1] != kw))
        FAILS("kernel_shape differs from W");
    if (c != cg * g || m % g)
        FAILS("X has %lld channels and W is [%lld, %lld, %lld, %lld]: with group=%lld need "
              "C == W.shape[1] * group and M divisible by group", (long long)c, (long long)m,
              (long long)cg, (long long)kh, (long long)kw, (long long)g);
    int64_t s[2], d[2], keff[2], pb[2], pe[2], hw[2] = {h, wd};
    ints2(&at[A_CONV_STRIDES], s);
    ints2(&at[A_CONV_DILATIONS], d);
    keff[0] = (kh - 1) * d[0] + 1;
    keff[1] = (kw - 1) * d[1] + 1;
    spatial_pads(&at[A_CONV_AUTO_PAD], &at[A_CONV_PADS], hw, keff, s, pb, pe);
    int64_t oh = (h + pb[0] + pe[0] - keff[0]), ow = (wd + pb[1] + pe[1] - keff[1]);
    oh = oh < 0 ? 0 : oh / s[0] + 1;
    ow = ow < 0 ? 0 : ow / s[1] + 1;
    if (oh <= 0 || ow <= 0) FAILS("input %lldx%lld is smaller than the dilated kernel",
                                  (long long)h, (long long)wd);
    if ((st = bias_vec(ex, in[2], m, "B", &bias))) return st;
    int64_t os[4] = {n, m, oh, ow};
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, 4, os))) return st;
    cz_form tmp;
    const cz_form *f = W->form;
    if (!f) {
        const float *w;
        if ((st = cz_ex_getf(ex, W, "W", &w))) return st;
        dense_form(&tmp, w, m, cg * kh * kw);
        tmp.ndim = 4;
        tmp.shape[0] = m; tmp.shape[1] = cg; tmp.shape[2] = kh; tmp.shape[3] = kw;
        f = &tmp;
    }
    if (out[0]->n == 0) return CZ_OK;
    czk_conv_params p = {n, c, h, wd, m, kh, kw, g, s[0], s[1], d[0], d[1],
                         pb[0], pb[1], pe[0], pe[1], oh, ow};
    st = czk_conv2d(f, &p, x, bias, out[0]->data, &ex->ws);
    if (st) return cz_ex_fail(ex, st, "conv kernel failed (%s)", cz_status_name(st));
    return CZ_OK;
}

static cz_status op_conv_transpose(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *W = in[1];
    const cz_attr *at = nd->attr;
    const float *x, *w, *bias;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
    if ((st = rank4(ex, X, "X")) || (st = rank4(ex, W, "W"))) return st;
    if ((st = cz_ex_getf(ex, W, "W", &w))) return st;
    int64_t n = X->shape[0], c = X->shape[1], h = X->shape[2], wd = X->shape[3];
    int64_t cw = W->shape[0], mg = W->shape[1], kh = W->shape[2], kw = W->shape[3];
    int64_t g = at[A_CONV_GROUP].i;
    const cz_attr *ks = &at[A_CONV_KERNEL_SHAPE];
    if (ks->set && (ks->ints[0] != kh || ks->ints[1] != kw))
        FAILS("kernel_shape differs from W");
    if (c != cw || c % g) FAILS("X has %lld channels, W.shape[0] is %lld, group=%lld: need C == "
                                "W.shape[0], divisible by group", (long long)c, (long long)cw,
                                (long long)g);
    int64_t s[2], d[2], op[2] = {0, 0}, p[4] = {0, 0, 0, 0};
    ints2(&at[A_CONV_STRIDES], s);
    ints2(&at[A_CONV_DILATIONS], d);
    if (at[A_CONV_OUTPUT_PADDING].set) {
        op[0] = at[A_CONV_OUTPUT_PADDING].ints[0];
        op[1] = at[A_CONV_OUTPUT_PADDING].ints[1];
    }
    if (op[0] >= (s[0] > d[0] ? s[0] : d[0]) || op[1] >= (s[1] > d[1] ? s[1] : d[1]))
        FAILS("output_padding must be smaller than the stride or dilation");
    if (at[A_CONV_AUTO_PAD].choice != AUTOPAD_VALID && at[A_CONV_PADS].set)
        for (int i = 0; i < 4; i++) p[i] = at[A_CONV_PADS].ints[i];
    int64_t keff[2] = {(kh - 1) * d[0] + 1, (kw - 1) * d[1] + 1};
    int64_t fh = s[0] * (h - 1) + keff[0] + op[0], fw = s[1] * (wd - 1) + keff[1] + op[1];
    int64_t oh = fh - p[0] - p[2], ow = fw - p[1] - p[3];
    if (h == 0 || wd == 0 || oh <= 0 || ow <= 0) FAILS("pads leave an empty output");
    int64_t m = g * mg, cgp = c / g;
    if ((st = bias_vec(ex, in[2], m, "B", &bias))) return st;
    int64_t os[4] = {n, m, oh, ow};
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, 4, os))) return st;
    uint64_t plane = (uint64_t)fh * (uint64_t)fw;
    double *acc = cz_ex_scratch(ex, 8 * plane * (uint64_t)mg);
    if (!acc) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    float *y = out[0]->data;
    for (int64_t b = 0; b < n; b++)
        for (int64_t gi = 0; gi < g; gi++) {
            memset(acc, 0, 8 * plane * (uint64_t)mg);
            for (int64_t ci = 0; ci < cgp; ci++) {
                int64_t ch = gi * cgp + ci;
                const float *xp = x + ((b * c + ch) * h) * wd;
                const float *wp = w + ch * mg * kh * kw;
                for (int64_t mo = 0; mo < mg; mo++)
                    for (int64_t i = 0; i < kh; i++)
                        for (int64_t j = 0; j < kw; j++) {
                            double wv = wp[(mo * kh + i) * kw + j];
                            double *ap = acc + mo * plane + i * d[0] * fw + j * d[1];
                            for (int64_t yy = 0; yy < h; yy++)
                                for (int64_t xx = 0; xx < wd; xx++)
                                    ap[yy * s[0] * fw + xx * s[1]] += (double)xp[yy * wd + xx] * wv;
                        }
            }
            for (int64_t mo = 0; mo < mg; mo++) {
                int64_t ch = gi * mg + mo;
                float *yp = y + (b * m + ch) * oh * ow;
                for (int64_t yy = 0; yy < oh; yy++)
                    for (int64_t xx = 0; xx < ow; xx++) {
                        double v = acc[mo * plane + (yy + p[0]) * fw + xx + p[1]];
                        if (bias) v += bias[ch];
                        yp[yy * ow + xx] = (float)v;
                    }
            }
        }
    return CZ_OK;
}

static cz_status op_pool(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    const cz_attr *at = nd->attr;
    int ismax = nd->op == OP_MAXPOOL;
    const float *x;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
    if ((st = rank4(ex, X, "X"))) return st;
    const cz_attr *ap = &at[ismax ? A_MAXPOOL_AUTO_PAD : A_AVGPOOL_AUTO_PAD];
    const cz_attr *pads = &at[ismax ? A_MAXPOOL_PADS : A_AVGPOOL_PADS];
    const cz_attr *ks = &at[ismax ? A_MAXPOOL_KERNEL_SHAPE : A_AVGPOOL_KERNEL_SHAPE];
    int ceil_mode = (int)at[ismax ? A_MAXPOOL_CEIL_MODE : A_AVGPOOL_CEIL_MODE].i;
    int cip = ismax ? 0 : (int)at[A_AVGPOOL_COUNT_INCLUDE_PAD].i;
    int64_t k[2] = {ks->ints[0], ks->ints[1]}, s[2], d[2] = {1, 1}, keff[2], pb[2], pe[2], o[2];
    ints2(&at[ismax ? A_MAXPOOL_STRIDES : A_AVGPOOL_STRIDES], s);
    if (ismax) ints2(&at[A_MAXPOOL_DILATIONS], d);
    int64_t hw[2] = {X->shape[2], X->shape[3]};
    for (int a = 0; a < 2; a++) keff[a] = (k[a] - 1) * d[a] + 1;
    spatial_pads(ap, pads, hw, keff, s, pb, pe);
    for (int a = 0; a < 2; a++) {
        int64_t span = hw[a] + pb[a] + pe[a] - keff[a];
        if (span < 0) FAILS("input %lldx%lld is smaller than the window", (long long)hw[0],
                            (long long)hw[1]);
        if (ceil_mode && ap->choice == AUTOPAD_NOTSET) {
            o[a] = (span + s[a] - 1) / s[a] + 1;
            if ((o[a] - 1) * s[a] >= hw[a] + pb[a]) o[a]--;
        } else {
            o[a] = span / s[a] + 1;
        }
    }
    int64_t os[4] = {X->shape[0], X->shape[1], o[0], o[1]};
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, 4, os))) return st;
    float *y = out[0]->data;
    int64_t planes = X->shape[0] * X->shape[1], H = hw[0], Wd = hw[1];
    /* per output row / column: the window taps inside the input [lo, hi) and, for
     * count_include_pad, the taps inside the padded input (separable counts) */
    int64_t *rng = cz_ex_scratch(ex, 8 * 3 * (uint64_t)(o[0] + o[1] + 2));
    if (!rng) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    int64_t *lo[2] = {rng, rng + o[0]}, *hi[2], *cp[2];
    hi[0] = rng + o[0] + o[1];
    hi[1] = hi[0] + o[0];
    cp[0] = hi[1] + o[1];
    cp[1] = cp[0] + o[0];
    for (int a = 0; a < 2; a++)
        for (int64_t q = 0; q < o[a]; q++) {
            int64_t base = q * s[a] - pb[a], l = 0, h = 0, c = 0;  /* tap t reads base + t*d */
            for (int64_t t = 0; t < k[a]; t++) {
                int64_t v = base + t * d[a];
                if (v < 0) l = t + 1;
                if (v < hw[a]) h = t + 1;
                if (v + pb[a] < hw[a] + pb[a] + pe[a]) c = t + 1;
            }
            lo[a][q] = l;
            hi[a][q] = h > l ? h : l;
            cp[a][q] = c;
        }
    int nt = ex->ws.threads;
    if ((double)planes * (double)(o[0] * o[1]) * (double)(k[0] * k[1]) < 2e5) nt = 1;
    if (ismax && k[0] == 2 && k[1] == 2 && s[0] == 2 && s[1] == 2 && d[0] == 1 &&
        d[1] == 1 && pb[0] == 0 && pb[1] == 0 && 2 * o[0] <= H && 2 * o[1] <= Wd) {
        /* the common 2x2 / stride 2 window fully inside the input: no bounds, no tables;
         * vectorised (ops_vec), planes split between threads */
        float *t = cz_ex_scratch(ex, 4 * (uint64_t)nt * (uint64_t)(2 * o[1] + 16));
        if (!t) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
        if (nt <= 1) {   /* (no OpenMP region for one thread: see CZ_PAR_FOR) */
            czv_maxpool2x2(x, y, (size_t)planes, (size_t)H, (size_t)Wd, (size_t)o[0],
                           (size_t)o[1], t);
            return CZ_OK;
        }
        int64_t chunk = (planes + nt - 1) / nt;
#pragma omp parallel for num_threads(nt) schedule(static)
        for (int th = 0; th < nt; th++) {
            int64_t p0 = th * chunk, p1 = p0 + chunk < planes ? p0 + chunk : planes;
            if (p0 < p1)
                czv_maxpool2x2(x + p0 * H * Wd, y + p0 * o[0] * o[1], (size_t)(p1 - p0),
                               (size_t)H, (size_t)Wd, (size_t)o[0], (size_t)o[1],
                               t + (size_t)th * (size_t)(2 * o[1] + 16));
        }
        return CZ_OK;
    }
    CZ_PAR_FOR(nt, pl, planes, {
        const float *xp = x + pl * H * Wd;
        float *yp = y + pl * o[0] * o[1];
        for (int64_t oy = 0; oy < o[0]; oy++) {
            int64_t by = oy * s[0] - pb[0];
            for (int64_t ox = 0; ox < o[1]; ox++) {
                int64_t bx = ox * s[1] - pb[1];
                if (ismax) {
                    float mx = -INFINITY;
                    int nan = 0;                 /* NaN propagates, as np.maximum */
                    for (int64_t i = lo[0][oy]; i < hi[0][oy]; i++) {
                        const float *row = xp + (by + i * d[0]) * Wd + bx;
                        for (int64_t j = lo[1][ox]; j < hi[1][ox]; j++) {
                            float v = row[j * d[1]];
                            nan |= v != v;
                            mx = v > mx ? v : mx;
                        }
                    }
                    yp[oy * o[1] + ox] = nan ? NAN : mx;
                } else {
                    double sum = 0;
                    for (int64_t i = lo[0][oy]; i < hi[0][oy]; i++) {
                        const float *row = xp + (by + i * d[0]) * Wd + bx;
                        for (int64_t j = lo[1][ox]; j < hi[1][ox]; j++) sum += row[j * d[1]];
                    }
                    double cnt = cip ? (double)cp[0][oy] * (double)cp[1][ox]
                                     : (double)(hi[0][oy] - lo[0][oy]) *
                                           (double)(hi[1][ox] - lo[1][ox]);
                    yp[oy * o[1] + ox] = (float)(sum / cnt);
                }
            }
        }
    });
    return CZ_OK;
}

static cz_status op_global_pool(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    const float *x;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
    if (X->ndim < 3) FAILS("X must have rank >= 3, got %d", X->ndim);
    int64_t os[CZ_MAX_NDIM];
    uint64_t sp = 1;
    for (int i = 0; i < X->ndim; i++) {
        os[i] = i < 2 ? X->shape[i] : 1;
        if (i >= 2) sp *= (uint64_t)X->shape[i];
    }
    int ismax = nd->op == OP_GLOBALMAXPOOL;
    if (ismax && sp == 0 && X->n) FAILS("GlobalMaxPool over an empty spatial extent");
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, X->ndim, os))) return st;
    float *y = out[0]->data;
    for (uint64_t p = 0; p < out[0]->n; p++) {
        const float *xp = x + p * sp;
        if (ismax) {
            float m = -INFINITY;
            int nan = 0;
            for (uint64_t i = 0; i < sp; i++) {
                nan |= xp[i] != xp[i];
                m = xp[i] > m ? xp[i] : m;
            }
            y[p] = nan ? NAN : m;
        } else {
            double s = 0;
            for (uint64_t i = 0; i < sp; i++) s += xp[i];
            y[p] = (float)(s / (double)sp);
        }
    }
    return CZ_OK;
}

/* ---- normalizations -------------------------------------------------------------------- */

static cz_status op_batchnorm(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    static const char *NM[4] = {"scale", "B", "input_mean", "input_var"};
    cz_rt *X = in[0];
    const float *x, *p[4];
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
    if (X->ndim < 2) FAILS("X must have rank >= 2, got %d", X->ndim);
    int64_t c = X->shape[1];
    for (int k = 0; k < 4; k++) {
        if ((st = cz_ex_getf(ex, in[k + 1], NM[k], &p[k]))) return st;
        if (in[k + 1]->ndim != 1 || in[k + 1]->shape[0] != c)
            FAILS("%s must have shape [%lld]", NM[k], (long long)c);
    }
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, X->ndim, X->shape))) return st;
    double eps = (float)nd->attr[A_BN_EPSILON].f;
    uint64_t inner = 1;
    for (int i = 2; i < X->ndim; i++) inner *= (uint64_t)X->shape[i];
    float *y = out[0]->data;
    for (int64_t b = 0; b < X->shape[0]; b++)
        for (int64_t ch = 0; ch < c; ch++) {
            double sd = sqrt((double)p[3][ch] + eps), mu = p[2][ch], sc = p[0][ch], bi = p[1][ch];
            uint64_t base = ((uint64_t)b * (uint64_t)c + (uint64_t)ch) * inner;
            for (uint64_t i = 0; i < inner; i++)
                y[base + i] = (float)(((double)x[base + i] - mu) / sd * sc + bi);
        }
    return CZ_OK;
}

/* softmax of x (shape[ndim]) along axis ax into y (x may equal y) */
static cz_status softmax_axis(cz_exec *ex, const float *x, float *y, int ndim,
                              const int64_t *shape, int ax) {
    uint64_t outer = 1, inner = 1, n = (uint64_t)shape[ax];
    for (int d = 0; d < ax; d++) outer *= (uint64_t)shape[d];
    for (int d = ax + 1; d < ndim; d++) inner *= (uint64_t)shape[d];
    if (inner == 1 && n > 0) {   /* softmax over the last axis: contiguous rows */
        int nt = ex->ws.threads > 1 && outer * n >= 32768 && outer > 1 ? ex->ws.threads : 1;
        CZ_PAR_FOR(nt, o, outer, czv_softmax_row(x + (uint64_t)o * n, y + (uint64_t)o * n, n));
        return CZ_OK;
    }
    double *e = cz_ex_scratch(ex, 8 * (n + 1));
    if (!e) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t i = 0; i < inner; i++) {
            const float *xp = x + o * n * inner + i;
            float *yp = y + o * n * inner + i;
            double mx = -INFINITY, sum = 0;
            int nan = 0;
            for (uint64_t k = 0; k < n; k++) {
                double v = xp[k * inner];
                nan |= v != v;
                mx = v > mx ? v : mx;
            }
            if (nan) mx = NAN;
            for (uint64_t k = 0; k < n; k++) { e[k] = exp((double)xp[k * inner] - mx); sum += e[k]; }
            for (uint64_t k = 0; k < n; k++) yp[k * inner] = (float)(e[k] / sum);
        }
    return CZ_OK;
}

static cz_status op_softmax(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    const float *x;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
    int ax;
    if (!cz_normalize_axis(nd->attr[A_SOFTMAX_AXIS].i, X->ndim, &ax))
        FAILS("axis %lld is out of range for rank %d", (long long)nd->attr[A_SOFTMAX_AXIS].i,
              X->ndim);
    /* in place when X dies here: the output stays in cache (MiniLM's 12 x 128 x 128 scores
     * are larger than Zen 3's L2) */
    if (!(X->dtype == CZ_F32 && cz_ex_steal(ex, nd, 0, X, out[0])))
        if ((st = cz_ex_alloc(ex, out[0], CZ_F32, X->ndim, X->shape))) return st;
    return softmax_axis(ex, x, out[0]->data, out[0]->ndim, out[0]->shape, ax);
}

/* OP_SOFTMAX_SA (graph_fuse.c): Softmax(X * S + B), S a 0-d f32 file tensor, B broadcast
 * as by Add (numpy rules over the three shapes, the output of the broadcast shape). Rows
 * along a last axis where X and B are contiguous go through czv_softmax_row_sb (one pass
 * makes X * S + B and the max); any other layout writes X * S + B out first, then runs
 * Softmax on it in place. Both round the product and the sum as the unfused Mul and Add. */
static cz_status op_softmax_sa(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *S = in[1], *B = in[2];
    const float *x, *sp, *bp;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x)) || (st = cz_ex_getf(ex, S, "scale", &sp)) ||
        (st = cz_ex_getf(ex, B, "mask", &bp)))
        return st;
    if (S->n != 1) FAILS("scale must have one element");
    float s = sp[0];
    cz_bcast b;
    int nds[3] = {X->ndim, S->ndim, B->ndim};
    const int64_t *shs[3] = {X->shape, S->shape, B->shape};
    if (!cz_bcast_init(&b, 3, nds, shs)) {
        char b1[96], b2[96];
        FAILS("cannot broadcast %s and %s", cz_shape_str(X->ndim, X->shape, b1, sizeof b1),
              cz_shape_str(B->ndim, B->shape, b2, sizeof b2));
    }
    int ax;
    if (!cz_normalize_axis(nd->attr[A_SOFTMAX_AXIS].i, b.r, &ax))
        FAILS("axis %lld is out of range for rank %d", (long long)nd->attr[A_SOFTMAX_AXIS].i,
              b.r);
    int same = b.r == X->ndim;
    for (int d = 0; same && d < b.r; d++) same = b.shape[d] == X->shape[d];
    if (!(same && X->dtype == CZ_F32 && cz_ex_steal(ex, nd, 0, X, out[0])))
        if ((st = cz_ex_alloc(ex, out[0], CZ_F32, b.r, b.shape))) return st;
    float *y = out[0]->data;
    uint64_t n = b.inner, outer = b.outer;
    if (b.n == 0) return CZ_OK;
    int r = b.r;
    if (r >= 1 && ax == r - 1 && b.st[0][r - 1] == 1 && b.st[2][r - 1] == 1) {
        int nt = ex->ws.threads > 1 && b.n >= 32768 && outer > 1 ? ex->ws.threads : 1;
        CZ_PAR_FOR(nt, o, outer, {
            int64_t q = o, ox = 0, ob = 0;   /* offsets of row o in X and B */
            for (int d = r - 2; d >= 0; d--) {
                int64_t i = q % b.shape[d];
                q /= b.shape[d];
                ox += i * b.st[0][d];
                ob += i * b.st[2][d];
            }
            czv_softmax_row_sb(x + ox, y + (uint64_t)o * n, n, s, bp + ob);
        });
        return CZ_OK;
    }
    int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
    int64_t sx = r ? b.st[0][r - 1] : 0, sb = r ? b.st[2][r - 1] : 0;
    for (uint64_t o = 0; o < outer; o++) {
        float *yr = y + o * n;
        for (uint64_t i = 0; i < n; i++) {
            volatile float t = x[off[0] + (int64_t)i * sx] * s;   /* rounded as by Mul */
            yr[i] = t + bp[off[2] + (int64_t)i * sb];
        }
        cz_bcast_next(&b, idx, off);
    }
    return softmax_axis(ex, y, y, b.r, b.shape, ax);
}

/* a Scale/B operand broadcast to the normalised block (shape[ax:]) as doubles */
static cz_status ln_param(cz_exec *ex, cz_rt *v, const char *what, int nr, const int64_t *nshape,
                          uint64_t inner, double **out) {
    const float *p;
    cz_status st = cz_ex_getf(ex, v, what, &p);
    if (st) return st;
    cz_bcast b;
    int nds[2] = {v->ndim, nr};
    const int64_t *shs[2] = {v->shape, nshape};
    int ok = cz_bcast_init(&b, 2, nds, shs) && b.r == nr;
    for (int d = 0; ok && d < nr; d++) ok = b.shape[d] == nshape[d];
    if (!ok) FAILS("%s does not broadcast to the normalised shape", what);
    double *o = cz_ex_scratch(ex, 8 * (inner + 1));
    if (!o) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
    int64_t sl = b.r ? b.st[0][b.r - 1] : 0;
    for (uint64_t q = 0; q < b.outer; q++) {
        for (uint64_t i = 0; i < b.inner; i++) o[q * b.inner + i] = p[off[0] + (int64_t)i * sl];
        cz_bcast_next(&b, idx, off);
    }
    *out = o;
    return CZ_OK;
}

static cz_status op_layernorm(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    const float *x;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
    int ax;
    if (!cz_normalize_axis(nd->attr[A_LN_AXIS].i, X->ndim, &ax))
        FAILS("axis %lld is out of range for rank %d", (long long)nd->attr[A_LN_AXIS].i, X->ndim);
    uint64_t outer = 1, inner = 1;
    for (int d = 0; d < ax; d++) outer *= (uint64_t)X->shape[d];
    for (int d = ax; d < X->ndim; d++) inner *= (uint64_t)X->shape[d];
    double *sc, *bi = NULL;
    if ((st = ln_param(ex, in[1], "Scale", X->ndim - ax, X->shape + ax, inner, &sc))) return st;
    if (in[2] && (st = ln_param(ex, in[2], "B", X->ndim - ax, X->shape + ax, inner, &bi)))
        return st;
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, X->ndim, X->shape))) return st;
    double eps = (float)nd->attr[A_LN_EPSILON].f;
    float *y = out[0]->data;
    float *scf = inner ? cz_ex_scratch(ex, 4 * (inner + (bi ? inner : 0))) : NULL;
    if (scf) {   /* vectorised rows (f32 arithmetic, statistics in double) */
        float *bif = bi ? scf + inner : NULL;
        for (uint64_t i = 0; i < inner; i++) {
            scf[i] = (float)sc[i];
            if (bif) bif[i] = (float)bi[i];
        }
        int nt = ex->ws.threads > 1 && outer * inner >= 65536 && outer > 1 ? ex->ws.threads : 1;
        CZ_PAR_FOR(nt, o, outer, czv_layernorm_row(x + (uint64_t)o * inner,
                                                   y + (uint64_t)o * inner, inner, scf, bif,
                                                   eps));
        return CZ_OK;
    }
    for (uint64_t o = 0; o < outer; o++) {
        const float *xp = x + o * inner;
        double mean = 0, var = 0;
        for (uint64_t i = 0; i < inner; i++) mean += xp[i];
        mean /= (double)inner;
        for (uint64_t i = 0; i < inner; i++) var += (xp[i] - mean) * (xp[i] - mean);
        var /= (double)inner;
        double sd = sqrt(var + eps);
        for (uint64_t i = 0; i < inner; i++) {
            double v = ((double)xp[i] - mean) / sd * sc[i];
            if (bi) v += bi[i];
            y[o * inner + i] = (float)v;
        }
    }
    return CZ_OK;
}

cz_op_fn cz_ops_nn(cz_op_id op) {
    switch (op) {
    case OP_LINEAR: return op_linear;
    case OP_GEMM: return op_gemm;
    case OP_MATMUL: return op_matmul;
    case OP_CONV: return op_conv;
    case OP_CONVTRANSPOSE: return op_conv_transpose;
    case OP_MAXPOOL: case OP_AVERAGEPOOL: return op_pool;
    case OP_GLOBALAVERAGEPOOL: case OP_GLOBALMAXPOOL: return op_global_pool;
    case OP_BATCHNORM: return op_batchnorm;
    case OP_SOFTMAX: return op_softmax;
    case OP_SOFTMAX_SA: return op_softmax_sa;
    case OP_LAYERNORM: return op_layernorm;
    default: return NULL;
    }
}
