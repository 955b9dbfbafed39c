/*
 * ops_elementwise.c -- unary and binary elementwise ops with numpy broadcasting (any rank up
 * to CZ_MAX_NDIM), Where, Clip and the activation functions.
 *
 * Dtype rules (czmodel/runtime/reference.py): float operands are computed as float32 (f16/f64
 * converted), transcendental functions in double and rounded once; integer arithmetic keeps
 * its dtype with two's-complement wrap-around; comparisons give bool.
 */
#include <math.h>
#include <string.h>

#include "graph.h"
#include "ops_util.h"
#include "ops_vec.h"

/* elements per OpenMP chunk for the vectorised loops (below ~64k a parallel region costs
 * more than it saves) */
#define PAR_MIN 65536
#define PAR_CHUNK 16384

/* run fn over [0, n) in chunks, on up to `threads` threads when n is large */
#define PAR_CHUNKS(threads, n, BODY)                                                      \
    do {                                                                                  \
        uint64_t n_ = (n);                                                                \
        int nt_ = (threads) > 1 && n_ >= PAR_MIN ? (threads) : 1;                         \
        int64_t nc_ = (int64_t)((n_ + PAR_CHUNK - 1) / PAR_CHUNK);                        \
        if (nt_ > 1) {      /* (no OpenMP region for one thread: see CZ_PAR_FOR) */      \
            _Pragma("omp parallel for num_threads(nt_) schedule(static)")                 \
            for (int64_t c_ = 0; c_ < nc_; c_++) {                                        \
                uint64_t lo = (uint64_t)c_ * PAR_CHUNK;                                   \
                uint64_t len = n_ - lo < PAR_CHUNK ? n_ - lo : PAR_CHUNK;                 \
                BODY;                                                                     \
            }                                                                             \
        } else {                                                                          \
            uint64_t lo = 0, len = n_;                                                    \
            (void)nc_;                                                                    \
            BODY;                                                                         \
        }                                                                                 \
    } while (0)

#define FAILP(...) return cz_ex_fail(ex, CZ_ERR_PARAM, __VA_ARGS__)
#ifndef M_PI
#define M_PI 3.14159265358979323846
#endif

/* ---- unary float ----------------------------------------------------------------------- */

/* c ? a : b without a branch (activations on random-sign data mispredict badly) */
static inline float sel(int c, float a, float b) {
    uint32_t ua, ub, m = (uint32_t)0 - (uint32_t)(c != 0);
    memcpy(&ua, &a, 4);
    memcpy(&ub, &b, 4);
    ua = (ua & m) | (ub & ~m);
    memcpy(&a, &ua, 4);
    return a;
}

static double gelu_tanh(double x) {
    return 0.5 * x * (1.0 + tanh(sqrt(2.0 / M_PI) * (x + 0.044715 * x * x * x)));
}

static cz_status unary_float(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    const float *x;
    cz_status st = cz_ex_getf(ex, in[0], "X", &x);
    if (st) return st;
    cz_rt *X = in[0], *Y = out[0];
    if (!(X->dtype == CZ_F32 && cz_ex_steal(ex, nd, 0, X, Y)))
        if ((st = cz_ex_alloc(ex, Y, CZ_F32, X->ndim, X->shape))) return st;
    float *y = Y->data;
    uint64_t n = Y->n;
    const cz_attr *a = nd->attr;
    switch (nd->op) {
    case OP_SIGMOID:
        for (uint64_t i = 0; i < n; i++) y[i] = (float)(1.0 / (1.0 + exp(-(double)x[i])));
        break;
    case OP_TANH: for (uint64_t i = 0; i < n; i++) y[i] = (float)tanh((double)x[i]); break;
    case OP_ERF: PAR_CHUNKS(ex->ws.threads, n, czv_erf(x + lo, y + lo, len)); break;
    case OP_SQRT: for (uint64_t i = 0; i < n; i++) y[i] = (float)sqrt((double)x[i]); break;
    case OP_EXP: for (uint64_t i = 0; i < n; i++) y[i] = (float)exp((double)x[i]); break;
    case OP_LOG: for (uint64_t i = 0; i < n; i++) y[i] = (float)log((double)x[i]); break;
    case OP_GELU:
        if (a[A_GELU_APPROXIMATE].choice == 0)
            PAR_CHUNKS(ex->ws.threads, n, czv_gelu_erf(x + lo, y + lo, len));
        else
            for (uint64_t i = 0; i < n; i++) y[i] = (float)gelu_tanh((double)x[i]);
        break;
    case OP_HARDSWISH:
        for (uint64_t i = 0; i < n; i++) {
            double v = x[i], t = fmin(fmax(v / 6.0 + 0.5, 0.0), 1.0);   /* NaN v: NaN */
            y[i] = (float)(v * t);
        }
        break;
    case OP_HARDSIGMOID: {
        float al = (float)a[A_HSIG_ALPHA].f, be = (float)a[A_HSIG_BETA].f;
        for (uint64_t i = 0; i < n; i++) {
            volatile float t = al * x[i];   /* round the product like numpy (no FMA) */
            float v = t + be;
            v = sel(v < 0.0f, 0.0f, v);
            y[i] = sel(v > 1.0f, 1.0f, v);
        }
        break;
    }
    case OP_LEAKYRELU: {
        float al = (float)a[A_LEAKY_ALPHA].f;
        for (uint64_t i = 0; i < n; i++) y[i] = sel(x[i] >= 0.0f, x[i], x[i] * al);
        break;
    }
    default: return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "internal: not a float unary op");
    }
    return CZ_OK;
}

/* ---- unary numeric (Relu, Neg, Abs), Not ------------------------------------------------ */

static cz_status unary_num(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *Y = out[0];
    cz_status st;
    if (cz_is_float(X->dtype)) {
        const float *x;
        if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
        if (!(X->dtype == CZ_F32 && cz_ex_steal(ex, nd, 0, X, Y)))
            if ((st = cz_ex_alloc(ex, Y, CZ_F32, X->ndim, X->shape))) return st;
        float *y = Y->data;
        uint64_t n = Y->n;
        /* one simple loop per op (vectorised; no data-dependent branches) */
        if (nd->op == OP_RELU)
            czv_relu(x, y, (size_t)n);   /* NaN stays; vectorised (ops_vec) */
        else if (nd->op == OP_NEG)
            for (uint64_t i = 0; i < n; i++) y[i] = -x[i];
        else
            for (uint64_t i = 0; i < n; i++) y[i] = fabsf(x[i]);
        return CZ_OK;
    }
    if (!cz_is_int(X->dtype)) FAILP("X must be numeric, got %s", cz_dtype_name(X->dtype));
    if (nd->op == OP_NEG && (X->dtype == CZ_U8 || X->dtype == CZ_U16 || X->dtype == CZ_U32))
        FAILP("Neg of unsigned %s", cz_dtype_name(X->dtype));
    if ((st = cz_ex_alloc(ex, Y, X->dtype, X->ndim, X->shape))) return st;
    for (uint64_t i = 0; i < Y->n; i++) {
        int64_t v = cz_rt_get_i(X, i);
        uint64_t u = (uint64_t)v;
        if (nd->op == OP_RELU) v = v < 0 ? 0 : v;
        else if (nd->op == OP_NEG) v = (int64_t)(0 - u);
        else v = v < 0 ? (int64_t)(0 - u) : v;
        cz_rt_put_i(Y, i, v);
    }
    return CZ_OK;
}

static cz_status op_not(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *X = in[0];
    if (X->dtype != CZ_BOOL) FAILP("Not needs a bool tensor, got %s", cz_dtype_name(X->dtype));
    cz_status st = cz_ex_alloc(ex, out[0], CZ_BOOL, X->ndim, X->shape);
    if (st) return st;
    const uint8_t *x = X->data;
    uint8_t *y = out[0]->data;
    for (uint64_t i = 0; i < X->n; i++) y[i] = !x[i];
    return CZ_OK;
}

static cz_status op_clip(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *Y = out[0];
    cz_status st;
    int isf = cz_is_float(X->dtype);
    if (!isf && !cz_is_int(X->dtype)) FAILP("X must be numeric, got %s", cz_dtype_name(X->dtype));
    int has[2] = {0, 0};
    double fb[2] = {0, 0};
    int64_t ib[2] = {0, 0};
    for (int k = 0; k < 2; k++) {
        cz_rt *b = in[k + 1];
        if (!b) continue;
        const char *nm = k ? "max" : "min";
        if (b->n != 1 || b->ndim > 1) FAILP("%s must be a scalar (or a 1-element 1-D tensor)", nm);
        int bf = cz_is_float(b->dtype);
        if (!bf && !cz_is_int(b->dtype)) FAILP("%s must be numeric", nm);
        cz_dtype bd = bf ? CZ_F32 : b->dtype, xd = isf ? CZ_F32 : X->dtype;
        if (bd != xd)
            FAILP("bound dtype %s differs from X dtype %s", cz_dtype_name(bd), cz_dtype_name(xd));
        has[k] = 1;
        if (bf) fb[k] = (float)cz_rt_get_f(b, 0);
        else ib[k] = cz_rt_get_i(b, 0);
    }
    if (isf) {
        const float *x;
        if ((st = cz_ex_getf(ex, X, "X", &x))) return st;
        if (!(X->dtype == CZ_F32 && cz_ex_steal(ex, nd, 0, X, Y)))
            if ((st = cz_ex_alloc(ex, Y, CZ_F32, X->ndim, X->shape))) return st;
        float *y = Y->data, lo = (float)fb[0], hi = (float)fb[1];
        if ((has[0] && isnan(lo)) || (has[1] && isnan(hi))) {   /* np.maximum(x, nan) */
            for (uint64_t i = 0; i < Y->n; i++) y[i] = NAN;
            return CZ_OK;
        }
        if (!has[0]) lo = -INFINITY;
        if (!has[1]) hi = INFINITY;
        for (uint64_t i = 0; i < Y->n; i++) {
            float v = sel(x[i] < lo, lo, x[i]);        /* NaN stays NaN */
            y[i] = sel(v > hi, hi, v);
        }
        return CZ_OK;
    }
    if ((st = cz_ex_alloc(ex, Y, X->dtype, X->ndim, X->shape))) return st;
    for (uint64_t i = 0; i < Y->n; i++) {
        int64_t v = cz_rt_get_i(X, i);
        if (has[0] && v < ib[0]) v = ib[0];
        if (has[1] && v > ib[1]) v = ib[1];
        cz_rt_put_i(Y, i, v);
    }
    return CZ_OK;
}

/* ---- binary ---------------------------------------------------------------------------- */

static cz_status bshape(cz_exec *ex, cz_bcast *b, int nin, cz_rt **ops) {
    int nd[3];
    const int64_t *sh[3];
    for (int k = 0; k < nin; k++) { nd[k] = ops[k]->ndim; sh[k] = ops[k]->shape; }
    if (!cz_bcast_init(b, nin, nd, sh)) {
        char s0[128], s1[128], s2[128] = "";
        cz_shape_str(ops[0]->ndim, ops[0]->shape, s0, sizeof s0);
        cz_shape_str(ops[1]->ndim, ops[1]->shape, s1, sizeof s1);
        if (nin > 2) cz_shape_str(ops[2]->ndim, ops[2]->shape, s2, sizeof s2);
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "shapes %s, %s%s%s do not broadcast", s0, s1,
                          nin > 2 ? ", " : "", s2);
    }
    return CZ_OK;
}

static int is_cmp(cz_op_id op) {
    return op == OP_EQUAL || op == OP_LESS || op == OP_GREATER || op == OP_LESSOREQUAL ||
           op == OP_GREATEROREQUAL;
}

/* u OP v for the comparison ops (IEEE: a NaN operand compares false) */
#define CMP(op, u, v)                                                                       \
    ((op) == OP_EQUAL ? (u) == (v) : (op) == OP_LESS ? (u) < (v) : (op) == OP_GREATER         \
     ? (u) > (v) : (op) == OP_LESSOREQUAL ? (u) <= (v) : (u) >= (v))

static cz_status binary_float(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt *Y,
                              const cz_bcast *b) {
    const float *A, *B;
    cz_status st;
    if ((st = cz_ex_getf(ex, in[0], "input 0", &A))) return st;
    if ((st = cz_ex_getf(ex, in[1], "input 1", &B))) return st;
    int cmp = is_cmp(nd->op);
    if ((st = cz_ex_alloc(ex, Y, cmp ? CZ_BOOL : CZ_F32, b->r, b->shape))) return st;
    int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
    int64_t sa = b->r ? b->st[0][b->r - 1] : 0, sb = b->r ? b->st[1][b->r - 1] : 0;
    uint64_t inner = b->inner;
    int vop = nd->op == OP_ADD ? CZV_ADD : nd->op == OP_SUB ? CZV_SUB : nd->op == OP_MUL
              ? CZV_MUL : nd->op == OP_DIV ? CZV_DIV : -1;
    if (vop >= 0 && b->n) {
        float *y = Y->data;
        uint64_t na = in[0]->n, nb = in[1]->n;
        /* whole tensors: same shape, or one side a single value */
        if ((na == b->n || na == 1) && (nb == b->n || nb == 1) && !(na == 1 && nb == 1 &&
                                                                   b->n > 1)) {
            int64_t ua = na == b->n ? 1 : 0, ub = nb == b->n ? 1 : 0;
            if (ua || ub) {
                PAR_CHUNKS(ex->ws.threads, b->n,
                           czv_binary(vop, A + lo * (uint64_t)ua, ua, B + lo * (uint64_t)ub,
                                      ub, y + lo, len));
                return CZ_OK;
            }
        }
        /* rows of the broadcast: contiguous or single-valued inner operands */
        if ((sa == 0 || sa == 1) && (sb == 0 || sb == 1) && (sa || sb) && inner >= 8) {
            int nt = ex->ws.threads > 1 && b->n >= PAR_MIN ? ex->ws.threads : 1;
            if (nt == 1) {
                for (uint64_t o = 0; o < b->outer; o++) {
                    czv_binary(vop, A + off[0], sa, B + off[1], sb, y + o * inner, inner);
                    cz_bcast_next(b, idx, off);
                }
                return CZ_OK;
            }
            /* per-row offsets from the strides (any row order) */
            int64_t outer = (int64_t)b->outer;
#pragma omp parallel for num_threads(nt) schedule(static)
            for (int64_t o = 0; o < outer; o++) {
                int64_t rem = o, oa = 0, ob = 0;
                for (int d = b->r - 2; d >= 0; d--) {
                    int64_t q = rem % b->shape[d];
                    rem /= b->shape[d];
                    oa += q * b->st[0][d];
                    ob += q * b->st[1][d];
                }
                czv_binary(vop, A + oa, sa, B + ob, sb, y + (uint64_t)o * inner, inner);
            }
            return CZ_OK;
        }
    }
    for (uint64_t o = 0; o < b->outer; o++) {
        const float *a = A + off[0], *c = B + off[1];
        if (cmp) {
            uint8_t *y = (uint8_t *)Y->data + o * inner;
            for (uint64_t i = 0; i < inner; i++) {
                float u = a[(int64_t)i * sa], v = c[(int64_t)i * sb];
                y[i] = CMP(nd->op, u, v);
            }
        } else {
            float *y = (float *)Y->data + o * inner;
#define BLOOP(EXPR)                                                                        \
    if (sa == 1 && sb == 1)                                                                \
        for (uint64_t i = 0; i < inner; i++) { float u = a[i], v = c[i]; y[i] = EXPR; }    \
    else if (sa == 1 && sb == 0) {                                                         \
        float v = c[0];                                                                    \
        for (uint64_t i = 0; i < inner; i++) { float u = a[i]; y[i] = EXPR; }              \
    } else                                                                                 \
        for (uint64_t i = 0; i < inner; i++) {                                             \
            float u = a[(int64_t)i * sa], v = c[(int64_t)i * sb];                          \
            y[i] = EXPR;                                                                   \
        }
            switch (nd->op) {
            case OP_ADD: BLOOP(u + v); break;
            case OP_SUB: BLOOP(u - v); break;
            case OP_MUL: BLOOP(u * v); break;
            case OP_DIV: BLOOP(u / v); break;
            case OP_POW: BLOOP((float)pow((double)u, (double)v)); break;
            default: break;
            }
#undef BLOOP
        }
        cz_bcast_next(b, idx, off);
    }
    return CZ_OK;
}

static int64_t ipow(int64_t a, int64_t e) {
    uint64_t r = 1, base = (uint64_t)a;
    while (e > 0) {
        if (e & 1) r *= base;
        base *= base;
        e >>= 1;
    }
    return (int64_t)r;
}

static cz_status op_binary(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *A = in[0], *B = in[1], *Y = out[0];
    cz_bcast b;
    cz_status st;
    int af = cz_is_float(A->dtype), bf = cz_is_float(B->dtype);
    if (nd->op == OP_EQUAL && A->dtype == CZ_BOOL && B->dtype == CZ_BOOL) {
        /* bool == bool */
    } else {
        if (!af && !cz_is_int(A->dtype))
            FAILP("input 0 must be numeric, got %s", cz_dtype_name(A->dtype));
        if (!bf && !cz_is_int(B->dtype))
            FAILP("input 1 must be numeric, got %s", cz_dtype_name(B->dtype));
    }
    if (nd->op == OP_POW) {
        if (!af && bf)
            return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED,
                              "integer base with a float exponent is not supported");
    } else {
        cz_dtype ad = af ? CZ_F32 : A->dtype, bd = bf ? CZ_F32 : B->dtype;
        if (ad != bd)
            FAILP("operand dtypes differ: %s and %s", cz_dtype_name(ad), cz_dtype_name(bd));
    }
    if ((st = bshape(ex, &b, 2, in))) return st;
    if (af && (bf || nd->op != OP_POW)) return binary_float(ex, nd, in, Y, &b);
    if (af) {   /* float ** int */
        const float *a;
        if ((st = cz_ex_getf(ex, A, "X", &a))) return st;
        if ((st = cz_ex_alloc(ex, Y, CZ_F32, b.r, b.shape))) return st;
        int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
        int64_t sa = b.r ? b.st[0][b.r - 1] : 0, sb = b.r ? b.st[1][b.r - 1] : 0;
        float *y = Y->data;
        for (uint64_t o = 0; o < b.outer; o++) {
            for (uint64_t i = 0; i < b.inner; i++)
                y[o * b.inner + i] = (float)pow((double)a[off[0] + (int64_t)i * sa],
                                                (double)cz_rt_get_i(B, (uint64_t)(off[1] + (int64_t)i * sb)));
            cz_bcast_next(&b, idx, off);
        }
        return CZ_OK;
    }
    /* integer (or bool == bool) */
    if (nd->op == OP_DIV)
        for (uint64_t i = 0; i < B->n; i++)
            if (cz_rt_get_i(B, i) == 0) FAILP("integer division by zero");
    if (nd->op == OP_POW)
        for (uint64_t i = 0; i < B->n; i++)
            if (cz_rt_get_i(B, i) < 0) FAILP("integer Pow with a negative exponent");
    if ((st = cz_ex_alloc(ex, Y, is_cmp(nd->op) ? CZ_BOOL : A->dtype, b.r, b.shape))) return st;
    int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
    int64_t sa = b.r ? b.st[0][b.r - 1] : 0, sb = b.r ? b.st[1][b.r - 1] : 0;
    for (uint64_t o = 0; o < b.outer; o++) {
        for (uint64_t i = 0; i < b.inner; i++) {
            int64_t u = cz_rt_get_i(A, (uint64_t)(off[0] + (int64_t)i * sa));
            int64_t v = cz_rt_get_i(B, (uint64_t)(off[1] + (int64_t)i * sb));
            int64_t r = 0;
            switch (nd->op) {
            case OP_ADD: r = (int64_t)((uint64_t)u + (uint64_t)v); break;
            case OP_SUB: r = (int64_t)((uint64_t)u - (uint64_t)v); break;
            case OP_MUL: r = (int64_t)((uint64_t)u * (uint64_t)v); break;
            case OP_DIV: r = (u == INT64_MIN && v == -1) ? INT64_MIN : u / v; break;
            case OP_POW: r = ipow(u, v); break;
            case OP_EQUAL: r = u == v; break;
            case OP_LESS: r = u < v; break;
            case OP_GREATER: r = u > v; break;
            case OP_LESSOREQUAL: r = u <= v; break;
            case OP_GREATEROREQUAL: r = u >= v; break;
            default: break;
            }
            cz_rt_put_i(Y, o * b.inner + i, r);
        }
        cz_bcast_next(&b, idx, off);
    }
    return CZ_OK;
}

/* ---- Where ----------------------------------------------------------------------------- */

static cz_status op_where(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *C = in[0], *X = in[1], *Yv = in[2];
    cz_status st;
    if (C->dtype != CZ_BOOL) FAILP("condition must be bool, got %s", cz_dtype_name(C->dtype));
    const void *xd = X->data, *yd = Yv->data;
    cz_dtype dt = X->dtype;
    if (cz_is_float(X->dtype) && cz_is_float(Yv->dtype)) {
        const float *a, *b;
        if ((st = cz_ex_getf(ex, X, "X", &a))) return st;
        if ((st = cz_ex_getf(ex, Yv, "Y", &b))) return st;
        xd = a;
        yd = b;
        dt = CZ_F32;
    } else if (X->dtype != Yv->dtype) {
        FAILP("X and Y dtypes differ: %s and %s", cz_dtype_name(X->dtype),
              cz_dtype_name(Yv->dtype));
    }
    cz_bcast b;
    if ((st = bshape(ex, &b, 3, in))) return st;
    if ((st = cz_ex_alloc(ex, out[0], dt, b.r, b.shape))) return st;
    size_t es = cz_dtype_size(dt);
    int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
    int64_t s0 = b.r ? b.st[0][b.r - 1] : 0, s1 = b.r ? b.st[1][b.r - 1] : 0,
            s2 = b.r ? b.st[2][b.r - 1] : 0;
    const uint8_t *c = C->data;
    uint8_t *y = out[0]->data;
    for (uint64_t o = 0; o < b.outer; o++) {
        for (uint64_t i = 0; i < b.inner; i++) {
            int64_t ii = (int64_t)i;
            const uint8_t *src = c[off[0] + ii * s0]
                                     ? (const uint8_t *)xd + (size_t)(off[1] + ii * s1) * es
                                     : (const uint8_t *)yd + (size_t)(off[2] + ii * s2) * es;
            memcpy(y + (o * b.inner + i) * es, src, es);
        }
        cz_bcast_next(&b, idx, off);
    }
    return CZ_OK;
}

cz_op_fn cz_ops_elementwise(cz_op_id op) {
    switch (op) {
    case OP_SIGMOID: case OP_TANH: case OP_ERF: case OP_SQRT: case OP_EXP: case OP_LOG:
    case OP_GELU: case OP_HARDSWISH: case OP_HARDSIGMOID: case OP_LEAKYRELU:
        return unary_float;
    case OP_RELU: case OP_NEG: case OP_ABS: return unary_num;
    case OP_NOT: return op_not;
    case OP_CLIP: return op_clip;
    case OP_ADD: case OP_SUB: case OP_MUL: case OP_DIV: case OP_POW: case OP_EQUAL:
    case OP_LESS: case OP_GREATER: case OP_LESSOREQUAL: case OP_GREATEROREQUAL:
        return op_binary;
    case OP_WHERE: return op_where;
    default: return cz_ops_logical(op);   /* And Or Xor IsNaN IsInf Min Max (ops_logical.c) */
    }
}
