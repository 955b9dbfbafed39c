/*
 * ops_resize.c -- Pad (constant mode, negative pads crop) and Resize (nearest / linear, the
 * ONNX coordinate transformation modes), any rank. Part of the shape op family.
 */
#include <math.h>
#include <string.h>

#include "graph.h"
#include "ops_util.h"

cz_status cz_op_pad(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *X = in[0];
    int r = X->ndim, ax[CZ_MAX_NDIM], na = r;
    cz_status st;
    if (in[3]) {
        if ((st = cz_axes(ex, in[3], "axes", r, ax, &na))) return st;
    } else {
        for (int i = 0; i < r; i++) ax[i] = i;
    }
    int64_t *p;
    int np;
    if ((st = cz_ints(ex, in[1], "pads", &p, &np))) return st;
    if (np != 2 * na)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "pads has %d values, needs %d", np, 2 * na);
    int64_t before[CZ_MAX_NDIM] = {0}, after[CZ_MAX_NDIM] = {0}, os[CZ_MAX_NDIM];
    for (int i = 0; i < na; i++) { before[ax[i]] = p[i]; after[ax[i]] = p[i + na]; }
    uint64_t total = 1;
    for (int d = 0; d < r; d++) {
        __int128 o = (__int128)X->shape[d] + before[d] + after[d];
        if (o < 0)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "negative pads crop more than axis %d holds", d);
        if (o > (__int128)CZ_MAX_RUNTIME_ELEMENTS)
            return cz_ex_fail(ex, CZ_ERR_LIMIT, "result exceeds %llu elements",
                              (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
        os[d] = (int64_t)o;
        if (!cz_mul_ok(total, (uint64_t)os[d], &total) || total > CZ_MAX_RUNTIME_ELEMENTS)
            return cz_ex_fail(ex, CZ_ERR_LIMIT, "result exceeds %llu elements",
                              (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
    }
    size_t es = cz_dtype_size(X->dtype);
    uint8_t cv[8] = {0};
    if (in[2]) {
        cz_rt *c = in[2];
        if (c->n != 1 || c->ndim > 1)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "constant_value must be a scalar (or a "
                              "1-element 1-D tensor)");
        if (c->dtype != X->dtype && !(cz_is_float(c->dtype) && cz_is_float(X->dtype)))
            return cz_ex_fail(ex, CZ_ERR_PARAM, "constant_value dtype %s differs from X %s",
                              cz_dtype_name(c->dtype), cz_dtype_name(X->dtype));
        cz_rt dst = {0};
        dst.dtype = X->dtype;
        dst.data = cv;
        cz_cast_elems(c, &dst, 1);
    }
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    if ((st = cz_ex_alloc(ex, out[0], X->dtype, r, os))) return st;
    uint8_t *y = out[0]->data;
    for (uint64_t i = 0; i < total; i++) memcpy(y + i * es, cv, es);
    /* copy the kept region: out index = in index + before, for in index in the kept range */
    int64_t lo[CZ_MAX_NDIM], cnt[CZ_MAX_NDIM], xst[CZ_MAX_NDIM], yst[CZ_MAX_NDIM], s = 1, t = 1;
    uint64_t n = 1;
    for (int d = r - 1; d >= 0; d--) { xst[d] = s; s *= X->shape[d]; yst[d] = t; t *= os[d]; }
    int64_t xoff = 0, yoff = 0;
    for (int d = 0; d < r; d++) {
        lo[d] = before[d] < 0 ? -before[d] : 0;
        int64_t hi = X->shape[d] - (after[d] < 0 ? -after[d] : 0);
        cnt[d] = hi > lo[d] ? hi - lo[d] : 0;
        n *= (uint64_t)cnt[d];
        xoff += lo[d] * xst[d];
        yoff += (lo[d] + before[d]) * yst[d];
    }
    if (n == 0) return CZ_OK;
    if (r == 0) { memcpy(y, X->data, es); return CZ_OK; }
    int64_t idx[CZ_MAX_NDIM] = {0};
    uint64_t outer = n / (uint64_t)cnt[r - 1];
    for (uint64_t o = 0; o < outer; o++) {
        memcpy(y + yoff * (int64_t)es, (const uint8_t *)X->data + xoff * (int64_t)es,
               (size_t)cnt[r - 1] * es);
        for (int d = r - 2; d >= 0; d--) {
            idx[d]++;
            xoff += xst[d];
            yoff += yst[d];
            if (idx[d] < cnt[d]) break;
            xoff -= xst[d] * cnt[d];
            yoff -= yst[d] * cnt[d];
            idx[d] = 0;
        }
    }
    return CZ_OK;
}

static double coord(double xo, double scale, int64_t n_in, int64_t n_out, int mode) {
    switch (mode) {
    case CTM_HALF_PIXEL: return (xo + 0.5) / scale - 0.5;
    case CTM_PYTORCH_HALF_PIXEL: return n_out > 1 ? (xo + 0.5) / scale - 0.5 : 0.0;
    case CTM_ALIGN_CORNERS:
        return n_out > 1 ? xo * (double)(n_in - 1) / (double)(n_out - 1) : 0.0;
    default: return xo / scale;
    }
}

static int64_t clampi(double v, int64_t n) {
    if (!(v >= 0)) return 0;
    if (v > (double)(n - 1)) return n - 1;
    return (int64_t)v;
}

cz_status cz_op_resize(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *S = in[2], *Z = in[3];
    int r = X->ndim;
    int64_t os[CZ_MAX_NDIM];
    double sc[CZ_MAX_NDIM];
    cz_status st;
    if (S && S->n > 0) {
        if (!cz_is_float(S->dtype) || S->ndim != 1 || S->shape[0] != r)
            return cz_ex_fail(ex, CZ_ERR_PARAM, "scales must be float of shape [%d]", r);
        for (int d = 0; d < r; d++) {
            sc[d] = (float)cz_rt_get_f(S, (uint64_t)d);
            if (!(sc[d] > 0) || !isfinite(sc[d]))
                return cz_ex_fail(ex, CZ_ERR_PARAM, "scales must be positive and finite");
            double o = floor((double)X->shape[d] * sc[d]);
            if (o > (double)CZ_MAX_RUNTIME_ELEMENTS)
                return cz_ex_fail(ex, CZ_ERR_LIMIT, "result exceeds %llu elements",
                                  (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
            os[d] = (int64_t)o;
        }
    } else {
        if (!Z) return cz_ex_fail(ex, CZ_ERR_PARAM, "one of scales or sizes is required");
        int64_t *z;
        int nz;
        if ((st = cz_ints(ex, Z, "sizes", &z, &nz))) return st;
        int bad = nz != r;
        for (int d = 0; d < nz && !bad; d++) bad = z[d] <= 0;
        if (bad) return cz_ex_fail(ex, CZ_ERR_SHAPE, "sizes must be %d positive values", r);
        for (int d = 0; d < r; d++) {
            os[d] = z[d];
            sc[d] = X->shape[d] ? (double)z[d] / (double)X->shape[d] : 1.0;
        }
    }
    uint64_t total = 1;
    int ok = 1;
    for (int d = 0; d < r; d++)
        if (!cz_mul_ok(total, (uint64_t)os[d], &total)) ok = 0;
    if (!ok || total > CZ_MAX_RUNTIME_ELEMENTS)
        return cz_ex_fail(ex, CZ_ERR_LIMIT, "result exceeds %llu elements",
                          (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
    if (X->n == 0 && total)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "cannot resize an empty tensor");
    int mode = nd->attr[A_RESIZE_MODE].choice, ctm = nd->attr[A_RESIZE_CTM].choice;
    int nmode = nd->attr[A_RESIZE_NEAREST_MODE].choice;
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    if (mode == RMODE_NEAREST) {
        /* one gather with a per-axis index map */
        int64_t *map[CZ_MAX_NDIM];
        for (int d = 0; d < r; d++) {
            map[d] = cz_ex_scratch(ex, 8 * ((uint64_t)os[d] + 1));
            if (!map[d]) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
            int skip = X->shape[d] == os[d] && sc[d] == 1.0;
            for (int64_t i = 0; i < os[d]; i++) {
                if (skip) { map[d][i] = i; continue; }
                double c = coord((double)i, sc[d], X->shape[d], os[d], ctm), v;
                switch (nmode) {
                case NMODE_ROUND_PREFER_FLOOR: v = ceil(c - 0.5); break;
                case NMODE_ROUND_PREFER_CEIL: v = floor(c + 0.5); break;
                case NMODE_FLOOR: v = floor(c); break;
                default: v = ceil(c); break;
                }
                map[d][i] = clampi(v, X->shape[d]);
            }
        }
        if ((st = cz_ex_alloc(ex, out[0], X->dtype, r, os))) return st;
        size_t es = cz_dtype_size(X->dtype);
        int64_t xst[CZ_MAX_NDIM], s = 1, idx[CZ_MAX_NDIM] = {0};
        for (int d = r - 1; d >= 0; d--) { xst[d] = s; s *= X->shape[d]; }
        uint8_t *y = out[0]->data;
        for (uint64_t k = 0; k < total; k++) {
            int64_t off = 0;
            for (int d = 0; d < r; d++) off += map[d][idx[d]] * xst[d];
            memcpy(y + k * es, (const uint8_t *)X->data + off * (int64_t)es, es);
            for (int d = r - 1; d >= 0; d--) {
                if (++idx[d] < os[d]) break;
                idx[d] = 0;
            }
        }
        return CZ_OK;
    }
    /* linear: separable passes in double, one axis at a time (as the reference) */
    const float *xf;
    if ((st = cz_ex_getf(ex, X, "X", &xf))) return st;
    int64_t cur[CZ_MAX_NDIM];
    memcpy(cur, X->shape, sizeof(int64_t) * (size_t)r);
    uint64_t curn = X->n;
    double *buf = cz_ex_scratch(ex, 8 * (curn + 1));
    if (!buf) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    for (uint64_t i = 0; i < curn; i++) buf[i] = xf[i];
    for (int ax = 0; ax < r; ax++) {
        int64_t n_in = X->shape[ax], n_out = os[ax];
        if (n_in == n_out && sc[ax] == 1.0) continue;
        uint64_t outer = 1, inner = 1;
        for (int d = 0; d < ax; d++) outer *= (uint64_t)cur[d];
        for (int d = ax + 1; d < r; d++) inner *= (uint64_t)cur[d];
        uint64_t nn = outer * (uint64_t)n_out * inner;
        double *nb = cz_ex_scratch(ex, 8 * (nn + 1));
        int64_t *i0 = cz_ex_scratch(ex, 16 * ((uint64_t)n_out + 1));
        double *w = cz_ex_scratch(ex, 8 * ((uint64_t)n_out + 1));
        if (!nb || !i0 || !w) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
        int64_t *i1 = i0 + n_out;
        for (int64_t i = 0; i < n_out; i++) {
            double c = coord((double)i, sc[ax], n_in, n_out, ctm), x0 = floor(c);
            w[i] = c - x0;
            i0[i] = clampi(x0, n_in);
            i1[i] = clampi(x0 + 1, n_in);
        }
        for (uint64_t o = 0; o < outer; o++)
            for (int64_t i = 0; i < n_out; i++) {
                const double *a = buf + (o * (uint64_t)n_in + (uint64_t)i0[i]) * inner;
                const double *b = buf + (o * (uint64_t)n_in + (uint64_t)i1[i]) * inner;
                double *y = nb + (o * (uint64_t)n_out + (uint64_t)i) * inner;
                double wi = w[i], wa = 1 - wi;
                for (uint64_t k = 0; k < inner; k++) {
                    volatile double p = a[k] * wa;   /* no FMA: match numpy's rounding */
                    volatile double q = b[k] * wi;
                    y[k] = p + q;
                }
            }
        buf = nb;
        cur[ax] = n_out;
        curn = nn;
    }
    if ((st = cz_ex_alloc(ex, out[0], CZ_F32, r, os))) return st;
    for (uint64_t i = 0; i < total; i++) ((float *)out[0]->data)[i] = (float)buf[i];
    return CZ_OK;
}
