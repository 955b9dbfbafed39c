/*
 * ops_logical.c -- the logical ops And, Or, Xor (bool, numpy broadcasting), the float
 * predicates IsNaN and IsInf (bool out) and the variadic Min / Max (numpy broadcasting of
 * all inputs). The comparisons (Equal, Less, Greater, LessOrEqual, GreaterOrEqual) live
 * with the other binary ops in ops_elementwise.c, which also dispatches here.
 *
 * Semantics: spec/ops.md 3.3, czmodel/runtime/reference.py. Portable C: these ops build
 * masks and shape values, they are not hot.
 */
#include <math.h>
#include <string.h>

#include "graph.h"
#include "ops_util.h"

#define FAILP(...) return cz_ex_fail(ex, CZ_ERR_PARAM, __VA_ARGS__)

static cz_status bcast2(cz_exec *ex, cz_bcast *b, const cz_rt *A, const cz_rt *B) {
    int nd[2] = {A->ndim, B->ndim};
    const int64_t *sh[2] = {A->shape, B->shape};
    if (!cz_bcast_init(b, 2, nd, sh)) {
        char s0[128], s1[128];
        cz_shape_str(A->ndim, A->shape, s0, sizeof s0);
        cz_shape_str(B->ndim, B->shape, s1, sizeof s1);
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "shapes %s, %s do not broadcast", s0, s1);
    }
    return CZ_OK;
}

/* ---- And, Or, Xor ------------------------------------------------------------------------ */

static cz_status op_logic(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *A = in[0], *B = in[1];
    cz_status st;
    for (int k = 0; k < 2; k++)
        if (in[k]->dtype != CZ_BOOL)
            FAILP("input %d must be a bool tensor, got %s", k, cz_dtype_name(in[k]->dtype));
    cz_bcast b;
    if ((st = bcast2(ex, &b, A, B))) return st;
    if ((st = cz_ex_alloc(ex, out[0], CZ_BOOL, b.r, b.shape))) return st;
    const uint8_t *a = A->data, *c = B->data;
    uint8_t *y = out[0]->data;
    int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
    int64_t sa = b.r ? b.st[0][b.r - 1] : 0, sb = b.r ? b.st[1][b.r - 1] : 0;
    for (uint64_t o = 0; o < b.outer; o++) {
        const uint8_t *pa = a + off[0], *pb = c + off[1];
        uint8_t *py = y + o * b.inner;
        for (uint64_t i = 0; i < b.inner; i++) {
            int u = pa[(int64_t)i * sa] != 0, v = pb[(int64_t)i * sb] != 0;
            py[i] = (uint8_t)(nd->op == OP_AND ? u & v : nd->op == OP_OR ? u | v : u ^ v);
        }
        cz_bcast_next(&b, idx, off);
    }
    return CZ_OK;
}

/* ---- IsNaN, IsInf (on the operand's own width: an f64 1e300 is not infinite) -------------- */

/* class of element k: 0 finite, 1 NaN, 2 +inf, 3 -inf */
static int fclass(const cz_rt *X, uint64_t k) {
    if (X->dtype == CZ_F16) {
        uint16_t h = ((const uint16_t *)X->data)[k];
        if ((h & 0x7c00u) != 0x7c00u) return 0;
        if (h & 0x03ffu) return 1;
        return (h & 0x8000u) ? 3 : 2;
    }
    double v = X->dtype == CZ_F64 ? ((const double *)X->data)[k]
                                  : (double)((const float *)X->data)[k];
    if (isnan(v)) return 1;
    if (isinf(v)) return v > 0 ? 2 : 3;
    return 0;
}

static cz_status op_isnan_isinf(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    if (!cz_is_float(X->dtype))
        FAILP("X must be a float tensor, got %s", cz_dtype_name(X->dtype));
    if (!X->data && X->n)
        return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "X: no dense data for this weight");
    cz_status st = cz_ex_alloc(ex, out[0], CZ_BOOL, X->ndim, X->shape);
    if (st) return st;
    uint8_t *y = out[0]->data;
    int want[4] = {0, 1, 0, 0};
    if (nd->op == OP_ISINF) {
        want[1] = 0;
        want[2] = nd->attr[A_ISINF_DETECT_POSITIVE].i != 0;
        want[3] = nd->attr[A_ISINF_DETECT_NEGATIVE].i != 0;
    }
    for (uint64_t i = 0; i < X->n; i++) y[i] = (uint8_t)want[fclass(X, i)];
    return CZ_OK;
}

/* ---- Min, Max (variadic; omitted inputs are skipped) -------------------------------------- */

static cz_status op_minmax(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *xs[64];
    int n = 0;
    for (int k = 0; k < nd->n_in && k < 64; k++)
        if (in[k]) xs[n++] = in[k];
    if (!n) FAILP("needs at least one input");
    int isf = cz_is_float(xs[0]->dtype);
    for (int k = 0; k < n; k++) {
        cz_dtype d = xs[k]->dtype;
        if (!cz_is_float(d) && !cz_is_int(d))
            FAILP("input %d must be numeric, got %s", k, cz_dtype_name(d));
        cz_dtype d0 = isf ? CZ_F32 : xs[0]->dtype, dk = cz_is_float(d) ? CZ_F32 : d;
        if (dk != d0) FAILP("operand dtypes differ: %s and %s", cz_dtype_name(d0),
                            cz_dtype_name(dk));
    }
    /* the broadcast shape of all inputs */
    int r = 0;
    int64_t shape[CZ_MAX_NDIM];
    for (int k = 0; k < n; k++) {
        cz_bcast b;
        int nds[2] = {r, xs[k]->ndim};
        const int64_t *shs[2] = {shape, xs[k]->shape};
        if (!cz_bcast_init(&b, 2, nds, shs)) {
            char s0[128], s1[128];
            cz_shape_str(r, shape, s0, sizeof s0);
            cz_shape_str(xs[k]->ndim, xs[k]->shape, s1, sizeof s1);
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "shapes do not broadcast: %s and input %d %s",
                              s0, k, s1);
        }
        r = b.r;
        memcpy(shape, b.shape, sizeof(int64_t) * (size_t)r);
    }
    cz_rt *Y = out[0];
    cz_status st = cz_ex_alloc(ex, Y, isf ? CZ_F32 : xs[0]->dtype, r, shape);
    if (st) return st;
    int is_min = nd->op == OP_MIN;
    /* Y = X0 (broadcast), then Y = min/max(Y, Xk) in place, in input order (numpy's fold) */
    for (int k = 0; k < n; k++) {
        cz_bcast b;
        if ((st = bcast2(ex, &b, Y, xs[k]))) return st;
        int64_t idx[CZ_MAX_NDIM] = {0}, off[3] = {0, 0, 0};
        int64_t sx = b.r ? b.st[1][b.r - 1] : 0;
        if (isf) {
            const float *x;
            if ((st = cz_ex_getf(ex, xs[k], "input", &x))) return st;
            float *y = Y->data;
            for (uint64_t o = 0; o < b.outer; o++) {
                const float *px = x + off[1];
                float *py = y + o * b.inner;
                for (uint64_t i = 0; i < b.inner; i++) {
                    float v = px[(int64_t)i * sx];
                    if (k == 0) {
                        py[i] = v;
                    } else {   /* numpy minimum / maximum: a NaN operand gives NaN */
                        float u = py[i];
                        int keep = is_min ? (u <= v || isnan(u)) : (u >= v || isnan(u));
                        py[i] = keep ? u : v;
                    }
                }
                cz_bcast_next(&b, idx, off);
            }
        } else {
            for (uint64_t o = 0; o < b.outer; o++) {
                for (uint64_t i = 0; i < b.inner; i++) {
                    uint64_t j = o * b.inner + i;
                    int64_t v = cz_rt_get_i(xs[k], (uint64_t)(off[1] + (int64_t)i * sx));
                    if (k > 0) {
                        int64_t u = cz_rt_get_i(Y, j);
                        if (is_min ? u <= v : u >= v) v = u;
                    }
                    cz_rt_put_i(Y, j, v);
                }
                cz_bcast_next(&b, idx, off);
            }
        }
    }
    return CZ_OK;
}

cz_op_fn cz_ops_logical(cz_op_id op) {
    switch (op) {
    case OP_AND: case OP_OR: case OP_XOR: return op_logic;
    case OP_ISNAN: case OP_ISINF: return op_isnan_isinf;
    case OP_MIN: case OP_MAX: return op_minmax;
    default: return NULL;
    }
}
