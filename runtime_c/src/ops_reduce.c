/*
 * ops_reduce.c -- ReduceMean, ReduceSum, ReduceMax (axes as attribute or input, keepdims,
 * noop_with_empty_axes) and ArgMax. Float reductions accumulate in double and round once;
 * integer ReduceSum wraps in its dtype.
 */
#include <math.h>
#include <string.h>

#include "graph.h"
#include "ops_util.h"

static cz_status op_reduce(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    const cz_attr *at = nd->attr;
    int isf = cz_is_float(X->dtype), r = X->ndim;
    cz_status st;
    if (nd->op == OP_REDUCEMEAN && !isf)
        return cz_ex_fail(ex, CZ_ERR_PARAM, "X must be a float tensor, got %s",
                          cz_dtype_name(X->dtype));
    if (!isf && !cz_is_int(X->dtype))
        return cz_ex_fail(ex, CZ_ERR_PARAM, "X must be numeric, got %s", cz_dtype_name(X->dtype));
    const float *xf = NULL;
    if (isf && (st = cz_ex_getf(ex, X, "X", &xf))) return st;
    int red[CZ_MAX_NDIM] = {0}, ax[CZ_MAX_NDIM], na = 0;
    if (at[A_RED_AXES].set) {
        const cz_attr *a = &at[A_RED_AXES];
        if (a->n > CZ_MAX_NDIM)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "axes has %d values", a->n);
        for (int i = 0; i < a->n; i++) {
            if (!cz_normalize_axis(a->ints[i], r, &ax[i]))
                return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                                  (long long)a->ints[i], r);
            for (int j = 0; j < i; j++)
                if (ax[j] == ax[i]) return cz_ex_fail(ex, CZ_ERR_SHAPE, "axes repeat an axis");
        }
        na = a->n;
    } else if (in[1]) {
        if ((st = cz_axes(ex, in[1], "axes", r, ax, &na))) return st;
    }
    if (na == 0) {
        if (at[A_RED_NOOP_EMPTY].i) {
            cz_dtype dt = isf ? CZ_F32 : X->dtype;
            if ((st = cz_ex_alloc(ex, out[0], dt, r, X->shape))) return st;
            if (X->n) memcpy(out[0]->data, isf ? (const void *)xf : X->data,
                             (size_t)(X->n * cz_dtype_size(dt)));
            return CZ_OK;
        }
        for (int i = 0; i < r; i++) red[i] = 1;
    }
    for (int i = 0; i < na; i++) red[ax[i]] = 1;
    if (nd->op == OP_REDUCEMAX)
        for (int i = 0; i < r; i++)
            if (red[i] && X->shape[i] == 0)
                return cz_ex_fail(ex, CZ_ERR_SHAPE, "ReduceMax over an empty axis");
    int keep = (int)at[A_RED_KEEPDIMS].i, orank = 0;
    int64_t os[CZ_MAX_NDIM], ost[CZ_MAX_NDIM], s = 1;
    uint64_t on = 1, cnt = 1;
    for (int i = r - 1; i >= 0; i--) {
        ost[i] = red[i] ? 0 : s;
        if (!red[i]) { s *= X->shape[i]; on *= (uint64_t)X->shape[i]; }
        else cnt *= (uint64_t)X->shape[i];
    }
    for (int i = 0; i < r; i++)
        if (!red[i]) os[orank++] = X->shape[i];
        else if (keep) os[orank++] = 1;
    cz_dtype odt = isf ? CZ_F32 : X->dtype;
    if ((st = cz_ex_alloc(ex, out[0], odt, orank, os))) return st;
    double *acc = NULL;
    uint64_t *iacc = NULL;
    int64_t *imax = NULL;
    if (isf) acc = cz_ex_scratch(ex, 8 * (on + 1));
    else if (nd->op == OP_REDUCESUM) iacc = cz_ex_scratch(ex, 8 * (on + 1));
    else imax = cz_ex_scratch(ex, 8 * (on + 1));
    if (!acc && !iacc && !imax) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    int ismax = nd->op == OP_REDUCEMAX;
    for (uint64_t i = 0; i < on; i++) {
        if (acc) acc[i] = ismax ? -INFINITY : 0.0;
        if (iacc) iacc[i] = 0;
        if (imax) imax[i] = INT64_MIN;
    }
    int64_t idx[CZ_MAX_NDIM] = {0}, o = 0;
    for (uint64_t k = 0; k < X->n; k++) {
        if (acc) {
            double v = xf[k];
            if (ismax) { if (isnan(v) || v > acc[o]) acc[o] = isnan(acc[o]) ? acc[o] : v; }
            else acc[o] += v;
        } else if (iacc) {
            iacc[o] += (uint64_t)cz_rt_get_i(X, k);
        } else {
            int64_t v = cz_rt_get_i(X, k);
            if (v > imax[o]) imax[o] = v;
        }
        for (int d = r - 1; d >= 0; d--) {
            idx[d]++;
            o += ost[d];
            if (idx[d] < X->shape[d]) break;
            o -= ost[d] * X->shape[d];
            idx[d] = 0;
        }
    }
    for (uint64_t i = 0; i < on; i++) {
        if (acc) {
            double v = acc[i];
            if (nd->op == OP_REDUCEMEAN) v = v / (double)cnt;
            ((float *)out[0]->data)[i] = (float)v;
        } else {
            cz_rt_put_i(out[0], i, iacc ? (int64_t)iacc[i] : imax[i]);
        }
    }
    return CZ_OK;
}

static cz_status op_argmax(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    int isf = cz_is_float(X->dtype);
    cz_status st;
    if (!isf && !cz_is_int(X->dtype))
        return cz_ex_fail(ex, CZ_ERR_PARAM, "X must be numeric, got %s", cz_dtype_name(X->dtype));
    const float *xf = NULL;
    if (isf && (st = cz_ex_getf(ex, X, "X", &xf))) return st;
    int ax;
    if (!cz_normalize_axis(nd->attr[A_ARGMAX_AXIS].i, X->ndim, &ax))
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                          (long long)nd->attr[A_ARGMAX_AXIS].i, X->ndim);
    int64_t n = X->shape[ax];
    if (n == 0) return cz_ex_fail(ex, CZ_ERR_SHAPE, "ArgMax over an empty axis");
    int keep = (int)nd->attr[A_ARGMAX_KEEPDIMS].i, last = (int)nd->attr[A_ARGMAX_SELECT_LAST].i;
    int64_t os[CZ_MAX_NDIM];
    int r = 0;
    uint64_t outer = 1, inner = 1;
    for (int d = 0; d < X->ndim; d++) {
        if (d != ax) os[r++] = X->shape[d];
        else if (keep) os[r++] = 1;
        if (d < ax) outer *= (uint64_t)X->shape[d];
        if (d > ax) inner *= (uint64_t)X->shape[d];
    }
    if ((st = cz_ex_alloc(ex, out[0], CZ_I64, r, os))) return st;
    int64_t *y = out[0]->data;
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t i = 0; i < inner; i++) {
            uint64_t base = o * (uint64_t)n * inner + i;
            int64_t best = last ? n - 1 : 0;
            for (int64_t t = 0; t < n; t++) {
                int64_t k = last ? n - 1 - t : t;
                uint64_t e = base + (uint64_t)k * inner, eb = base + (uint64_t)best * inner;
                if (isf) {
                    float v = xf[e], bv = xf[eb];
                    if (isnan(bv)) break;
                    if (isnan(v)) { best = k; break; }
                    if (v > bv) best = k;
                } else if (cz_rt_get_i(X, e) > cz_rt_get_i(X, eb)) {
                    best = k;
                }
            }
            y[o * inner + i] = best;
        }
    return CZ_OK;
}

cz_op_fn cz_ops_reduce(cz_op_id op) {
    switch (op) {
    case OP_REDUCEMEAN: case OP_REDUCESUM: case OP_REDUCEMAX: return op_reduce;
    case OP_ARGMAX: return op_argmax;
    default: return NULL;
    }
}
