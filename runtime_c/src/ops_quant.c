/*
 * ops_quant.c -- QuantizeLinear, DequantizeLinear (per tensor or per axis),
 * DynamicQuantizeLinear (uint8), with the reference backend's arithmetic: x / scale in
 * float32, round half to even, NaN -> 0, add the zero point, saturate.
 */
#include <math.h>
#include <string.h>

#include "graph.h"
#include "ops_util.h"

/* per-axis layout: scale count 1 (per tensor) or x.shape[ax]; returns outer/dim/inner */
static cz_status qparams(cz_exec *ex, cz_rt *x, cz_rt *scale, cz_rt *zp, int64_t axis,
                         const float **s, uint64_t *dim, uint64_t *inner) {
    cz_status st = cz_ex_getf(ex, scale, "scale", s);
    if (st) return st;
    if (scale->ndim > 1)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "scale must be a scalar or 1-D");
    if (zp && (zp->ndim != scale->ndim || (zp->ndim == 1 && zp->shape[0] != scale->shape[0])))
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "zero_point shape differs from scale");
    *dim = 1;
    *inner = 1;
    if (scale->ndim == 1 && !(scale->n == 1 && x->ndim == 0)) {
        int ax;
        if (!cz_normalize_axis(axis, x->ndim, &ax))
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                              (long long)axis, x->ndim);
        if (scale->shape[0] != x->shape[ax])
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "per-axis scale has %lld values, axis %d of x "
                              "has %lld", (long long)scale->shape[0], ax,
                              (long long)x->shape[ax]);
        *dim = (uint64_t)x->shape[ax];
        for (int d = ax + 1; d < x->ndim; d++) *inner *= (uint64_t)x->shape[d];
    }
    return CZ_OK;
}

static int64_t quant1(float x, float s, int64_t zp, int lo, int hi) {
    volatile float q = x / s;
    double v = nearbyint((double)q);
    if (isnan(v)) v = 0.0;
    v += (double)zp;
    if (v < lo) v = lo;
    if (v > hi) v = hi;
    return (int64_t)v;
}

static cz_status op_quantize(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *zp = in[2];
    const float *x, *s;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "x", &x))) return st;
    if (zp && zp->dtype != CZ_U8 && zp->dtype != CZ_I8)
        return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "zero_point dtype %s (op set 1: uint8 or "
                          "int8)", cz_dtype_name(zp->dtype));
    uint64_t dim, inner;
    if ((st = qparams(ex, X, in[1], zp, nd->attr[A_QL_AXIS].i, &s, &dim, &inner))) return st;
    cz_dtype dt = zp ? zp->dtype : CZ_U8;
    int lo = dt == CZ_U8 ? 0 : -128, hi = dt == CZ_U8 ? 255 : 127;
    if ((st = cz_ex_alloc(ex, out[0], dt, X->ndim, X->shape))) return st;
    for (uint64_t k = 0; k < X->n; k++) {
        uint64_t c = dim == 1 ? 0 : (k / inner) % dim;
        cz_rt_put_i(out[0], k, quant1(x[k], s[c], zp ? cz_rt_get_i(zp, c) : 0, lo, hi));
    }
    return CZ_OK;
}

static cz_status op_dequantize(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *zp = in[2];
    const float *s;
    cz_status st;
    if (X->dtype != CZ_U8 && X->dtype != CZ_I8 && X->dtype != CZ_I32)
        return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "x dtype %s (op set 1: uint8, int8, int32)",
                          cz_dtype_name(X->dtype));
    if (zp && zp->dtype != X->dtype)
        return cz_ex_fail(ex, CZ_ERR_PARAM, "zero_point dtype %s differs from x %s",
                          cz_dtype_name(zp->dtype), cz_dtype_name(X->dtype));
    uint64_t dim, inner;
    if ((st = qparams(ex, X, in[1], zp, nd->attr[A_DQL_AXIS].i, &s, &dim, &inner))) return st;
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, X->ndim, X->shape))) return st;
    float *y = out[0]->data;
    for (uint64_t k = 0; k < X->n; k++) {
        uint64_t c = dim == 1 ? 0 : (k / inner) % dim;
        int64_t v = cz_rt_get_i(X, k) - (zp ? cz_rt_get_i(zp, c) : 0);
        y[k] = (float)v * s[c];
    }
    return CZ_OK;
}

static cz_status op_dynquant(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *X = in[0];
    const float *x;
    cz_status st;
    if ((st = cz_ex_getf(ex, X, "x", &x))) return st;
    double mn = 0, mx = 0;
    if (X->n) {
        float a = x[0], b = x[0];
        for (uint64_t k = 1; k < X->n; k++) {
            if (isnan(a)) break;
            if (isnan(x[k])) { a = b = x[k]; break; }
            if (x[k] < a) a = x[k];
            if (x[k] > b) b = x[k];
        }
        mn = a < 0 || isnan(a) ? a : 0.0;   /* Python min(x.min(), 0.0) keeps a NaN first arg */
        mx = b > 0 || isnan(b) ? b : 0.0;
    }
    volatile float diff = (float)mx - (float)mn;
    float scale = diff / 255.0f;
    int64_t sh0[1] = {0};
    if ((st = cz_ex_alloc(ex, out[0], CZ_U8, X->ndim, X->shape))) return st;
    if ((st = cz_ex_alloc(ex, out[1], CZ_F32, 0, sh0))) return st;
    if ((st = cz_ex_alloc(ex, out[2], CZ_U8, 0, sh0))) return st;
    *(float *)out[1]->data = scale;
    uint8_t *y = out[0]->data;
    if (scale == 0.0f) {
        memset(y, 0, (size_t)X->n);
        *(uint8_t *)out[2]->data = 0;
        return CZ_OK;
    }
    int64_t zp = quant1((float)-mn, scale, 0, 0, 255);
    *(uint8_t *)out[2]->data = (uint8_t)zp;
    for (uint64_t k = 0; k < X->n; k++) y[k] = (uint8_t)quant1(x[k], scale, zp, 0, 255);
    return CZ_OK;
}

cz_op_fn cz_ops_quant(cz_op_id op) {
    switch (op) {
    case OP_QUANTIZE: return op_quantize;
    case OP_DEQUANTIZE: return op_dequantize;
    case OP_DYNQUANTIZE: return op_dynquant;
    default: return NULL;
    }
}
