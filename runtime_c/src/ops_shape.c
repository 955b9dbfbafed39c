/*
 * ops_shape.c -- data movement and shape ops: Reshape, Flatten, Transpose, Squeeze,
 * Unsqueeze, Concat, Split, Slice, Gather, Expand, Tile, Shape, Cast, Range,
 * ConstantOfShape, Identity (Pad and Resize: ops_resize.c). Any dtype unless noted.
 */
#include <math.h>
#include <string.h>

#include "graph.h"
#include "ops_util.h"

/* ---- reshape family (no data change: steal the buffer when possible) ------------------- */

static cz_status move_or_copy(cz_exec *ex, const cz_gnode *nd, cz_rt *X, cz_rt *Y, int ndim,
                              const int64_t *shape) {
    int ok = 1;
    uint64_t n = cz_shape_numel(ndim, shape, &ok);
    if (!ok || n != X->n)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "internal: element count changes");
    int64_t sh[CZ_MAX_NDIM];
    memcpy(sh, shape, sizeof(int64_t) * (size_t)ndim);
    if (X->data && cz_ex_steal(ex, nd, 0, X, Y)) {
        Y->ndim = ndim;
        for (int i = 0; i < CZ_MAX_NDIM; i++) Y->shape[i] = i < ndim ? sh[i] : 0;
        return CZ_OK;
    }
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    cz_status st = cz_ex_alloc(ex, Y, X->dtype, ndim, sh);
    if (st) return st;
    if (n) memcpy(Y->data, X->data, (size_t)(n * cz_dtype_size(X->dtype)));
    return CZ_OK;
}

static cz_status op_reshape(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    int64_t *s;
    int n;
    cz_status st = cz_ints(ex, in[1], "shape", &s, &n);
    if (st) return st;
    int allowzero = (int)nd->attr[A_RESHAPE_ALLOWZERO].i, neg = -1, has0 = 0;
    if (n > CZ_MAX_NDIM) return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape has %d dims, over %d", n,
                                           CZ_MAX_NDIM);
    for (int i = 0; i < n; i++) {
        if (s[i] < -1) return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape: negative value %lld",
                                         (long long)s[i]);
        if (s[i] == -1) {
            if (neg >= 0) return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape: more than one -1");
            neg = i;
        }
        if (s[i] == 0) has0 = 1;
    }
    if (allowzero && has0 && neg >= 0)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "allowzero=1 forbids 0 together with -1");
    int64_t o[CZ_MAX_NDIM];
    uint64_t rest = 1;
    for (int i = 0; i < n; i++) {
        o[i] = s[i];
        if (s[i] == 0 && !allowzero) {
            if (i >= X->ndim)
                return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape: 0 at position %d copies a dim X "
                                  "lacks", i);
            o[i] = X->shape[i];
        }
        if (o[i] != -1 && !cz_mul_ok(rest, (uint64_t)o[i], &rest))
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape overflows");
    }
    char b0[128];
    if (neg >= 0) {
        if (rest == 0 || X->n % rest)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "cannot reshape %s to the requested shape",
                              cz_shape_str(X->ndim, X->shape, b0, sizeof b0));
        o[neg] = (int64_t)(X->n / rest);
        rest = X->n;
    }
    if (rest != X->n)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "cannot reshape %s (%llu elements) to %s",
                          cz_shape_str(X->ndim, X->shape, b0, sizeof b0),
                          (unsigned long long)X->n, "a different element count");
    return move_or_copy(ex, nd, X, out[0], n, o);
}

static cz_status op_flatten(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    int64_t a = nd->attr[A_FLATTEN_AXIS].i;
    if (a < -X->ndim || a > X->ndim)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld out of range for rank %d", (long long)a,
                          X->ndim);
    if (a < 0) a += X->ndim;
    int64_t o[2] = {1, 1};
    for (int i = 0; i < X->ndim; i++) o[i < a ? 0 : 1] *= X->shape[i];
    return move_or_copy(ex, nd, X, out[0], 2, o);
}

static cz_status op_identity(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    return move_or_copy(ex, nd, in[0], out[0], in[0]->ndim, in[0]->shape);
}

static cz_status op_squeeze(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    int drop[CZ_MAX_NDIM] = {0};
    if (!in[1]) {
        for (int i = 0; i < X->ndim; i++) drop[i] = X->shape[i] == 1;
    } else {
        int ax[CZ_MAX_NDIM], n;
        cz_status st = cz_axes(ex, in[1], "axes", X->ndim, ax, &n);
        if (st) return st;
        for (int k = 0; k < n; k++) {
            if (X->shape[ax[k]] != 1)
                return cz_ex_fail(ex, CZ_ERR_SHAPE, "cannot squeeze axis %d of size %lld",
                                  ax[k], (long long)X->shape[ax[k]]);
            drop[ax[k]] = 1;
        }
    }
    int64_t o[CZ_MAX_NDIM];
    int r = 0;
    for (int i = 0; i < X->ndim; i++)
        if (!drop[i]) o[r++] = X->shape[i];
    return move_or_copy(ex, nd, X, out[0], r, o);
}

static cz_status op_unsqueeze(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    int64_t *a;
    int n;
    cz_status st = cz_ints(ex, in[1], "axes", &a, &n);
    if (st) return st;
    int r = X->ndim + n;
    if (r > CZ_MAX_NDIM)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "result rank %d exceeds %d", r, CZ_MAX_NDIM);
    int ins[CZ_MAX_NDIM] = {0};
    for (int k = 0; k < n; k++) {
        int ax;
        if (!cz_normalize_axis(a[k], r, &ax))
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                              (long long)a[k], r);
        if (ins[ax]) return cz_ex_fail(ex, CZ_ERR_SHAPE, "axes repeat an axis");
        ins[ax] = 1;
    }
    int64_t o[CZ_MAX_NDIM];
    for (int i = 0, j = 0; i < r; i++) o[i] = ins[i] ? 1 : X->shape[j++];
    return move_or_copy(ex, nd, X, out[0], r, o);
}

/* ---- Transpose ------------------------------------------------------------------------- */

/* Y[idx] = X[sum idx[d] * xs[d]] over the output shape (element size es). */
void cz_gather_strided(const uint8_t *x, uint8_t *y, int r, const int64_t *oshape,
                       const int64_t *xs, size_t es, uint64_t n) {
    if (n == 0) return;
    if (r == 0) { memcpy(y, x, es); return; }
    int64_t idx[CZ_MAX_NDIM] = {0}, off = 0;
    int64_t inner = oshape[r - 1], sl = xs[r - 1];
    uint64_t outer = n / (uint64_t)inner;
    for (uint64_t o = 0; o < outer; o++) {
        const uint8_t *src = x + off * (int64_t)es;
        if (sl == 1)
            memcpy(y, src, (size_t)inner * es);
        else if (es == 4)
            for (int64_t i = 0; i < inner; i++)
                ((uint32_t *)y)[i] = *(const uint32_t *)(src + i * sl * 4);
        else
            for (int64_t i = 0; i < inner; i++) memcpy(y + i * (int64_t)es, src + i * sl * (int64_t)es, es);
        y += inner * (int64_t)es;
        for (int d = r - 2; d >= 0; d--) {
            idx[d]++;
            off += xs[d];
            if (idx[d] < oshape[d]) break;
            off -= xs[d] * oshape[d];
            idx[d] = 0;
        }
    }
}

/* Transpose of 4-byte elements where X's contiguous last axis becomes output axis a, not
 * the last: per position of the other axes, a 2-D transpose (output axis a x the output's
 * last axis) in 8 x 8 tiles, each reading 8 runs of 8 contiguous elements, instead of an
 * element-by-element gather whose reads are all strided (MiniLM's key heads, (1, 128, 12,
 * 32) -> (1, 12, 32, 128): 1.2 ns per element before, 61 us per layer). The same result as
 * cz_gather_strided (a copy: the bits move unchanged). */
static void transpose_tiled4(const uint32_t *x, uint32_t *y, int r, const int64_t *os,
                             const int64_t *xs, int a) {
    int64_t ost[CZ_MAX_NDIM], s = 1, idx[CZ_MAX_NDIM] = {0};
    for (int d = r - 1; d >= 0; d--) { ost[d] = s; s *= os[d]; }
    int64_t na = os[a], nl = os[r - 1], sl = xs[r - 1], oa = ost[a];
    uint64_t outer = 1;
    for (int d = 0; d < r - 1; d++) if (d != a) outer *= (uint64_t)os[d];
    for (uint64_t o = 0; o < outer; o++) {
        int64_t xo = 0, yo = 0;
        for (int d = 0; d < r - 1; d++) { xo += idx[d] * xs[d]; yo += idx[d] * ost[d]; }
        for (int64_t i0 = 0; i0 < na; i0 += 8)
            for (int64_t j0 = 0; j0 < nl; j0 += 8) {
                int64_t ie = i0 + 8 < na ? i0 + 8 : na, je = j0 + 8 < nl ? j0 + 8 : nl;
                for (int64_t j = j0; j < je; j++)
                    for (int64_t i = i0; i < ie; i++) y[yo + i * oa + j] = x[xo + i + j * sl];
            }
        for (int d = r - 2; d >= 0; d--) {   /* next position of the axes but a and r-1 */
            if (d == a) continue;
            if (++idx[d] < os[d]) break;
            idx[d] = 0;
        }
    }
}

static cz_status op_transpose(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    const cz_attr *pa = &nd->attr[A_TRANSPOSE_PERM];
    int r = X->ndim, perm[CZ_MAX_NDIM], seen[CZ_MAX_NDIM] = {0};
    if (pa->set) {
        if (pa->n != r)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "perm has %d entries, X has rank %d", pa->n, r);
        for (int i = 0; i < r; i++) {
            if (pa->ints[i] < 0 || pa->ints[i] >= r || seen[pa->ints[i]])
                return cz_ex_fail(ex, CZ_ERR_SHAPE, "perm is not a permutation of %d axes", r);
            seen[pa->ints[i]] = 1;
            perm[i] = (int)pa->ints[i];
        }
    } else {
        for (int i = 0; i < r; i++) perm[i] = r - 1 - i;
    }
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    int64_t os[CZ_MAX_NDIM] = {0}, xst[CZ_MAX_NDIM], xs[CZ_MAX_NDIM], s = 1;
    for (int d = r - 1; d >= 0; d--) { xst[d] = s; s *= X->shape[d]; }
    for (int i = 0; i < r; i++) { os[i] = X->shape[perm[i]]; xs[i] = xst[perm[i]]; }
    cz_status st = cz_ex_alloc(ex, out[0], X->dtype, r, os);
    if (st) return st;
    int a = -1;   /* the output axis that is X's last (contiguous) axis */
    for (int i = 0; i < r; i++) if (perm[i] == r - 1) a = i;
    if (cz_dtype_size(X->dtype) == 4 && r >= 2 && a >= 0 && a != r - 1 && os[a] >= 8 &&
        os[r - 1] >= 8) {
        transpose_tiled4(X->data, out[0]->data, r, os, xs, a);
        return CZ_OK;
    }
    cz_gather_strided(X->data, out[0]->data, r, os, xs, cz_dtype_size(X->dtype), X->n);
    return CZ_OK;
}

/* ---- Concat / Split / Slice / Gather ---------------------------------------------------- */

static cz_status op_concat(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *xs[64];
    int n = 0;
    for (int k = 0; k < nd->n_in; k++) if (in[k]) xs[n++] = in[k];
    if (!n) return cz_ex_fail(ex, CZ_ERR_PARAM, "no inputs");
    int r = xs[0]->ndim;
    for (int k = 0; k < n; k++) {
        if (xs[k]->dtype != xs[0]->dtype)
            return cz_ex_fail(ex, CZ_ERR_PARAM, "inputs have different dtypes (%s and %s)",
                              cz_dtype_name(xs[0]->dtype), cz_dtype_name(xs[k]->dtype));
        if (xs[k]->ndim != r || r == 0)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "inputs must share one rank >= 1");
        if (!xs[k]->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    }
    int ax;
    if (!cz_normalize_axis(nd->attr[A_CONCAT_AXIS].i, r, &ax))
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                          (long long)nd->attr[A_CONCAT_AXIS].i, r);
    int64_t os[CZ_MAX_NDIM];
    memcpy(os, xs[0]->shape, sizeof os);
    os[ax] = 0;
    for (int k = 0; k < n; k++) {
        for (int d = 0; d < r; d++)
            if (d != ax && xs[k]->shape[d] != xs[0]->shape[d])
                return cz_ex_fail(ex, CZ_ERR_SHAPE, "input %d dim %d is %lld, input 0 has %lld",
                                  k, d, (long long)xs[k]->shape[d], (long long)xs[0]->shape[d]);
        os[ax] += xs[k]->shape[ax];
    }
    cz_status st = cz_ex_alloc(ex, out[0], xs[0]->dtype, r, os);
    if (st) return st;
    size_t es = cz_dtype_size(xs[0]->dtype);
    uint64_t outer = 1, inner = es;
    for (int d = 0; d < ax; d++) outer *= (uint64_t)os[d];
    for (int d = ax + 1; d < r; d++) inner *= (uint64_t)os[d];
    uint8_t *y = out[0]->data;
    uint64_t row = (uint64_t)os[ax] * inner, pos = 0;
    for (int k = 0; k < n; k++) {
        uint64_t w = (uint64_t)xs[k]->shape[ax] * inner;
        for (uint64_t o = 0; o < outer && w; o++)
            memcpy(y + o * row + pos, (const uint8_t *)xs[k]->data + o * w, (size_t)w);
        pos += w;
    }
    return CZ_OK;
}

static cz_status op_split(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    int ax, n = nd->n_out;
    if (!cz_normalize_axis(nd->attr[A_SPLIT_AXIS].i, X->ndim, &ax))
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                          (long long)nd->attr[A_SPLIT_AXIS].i, X->ndim);
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    int64_t dim = X->shape[ax], sizes[64];
    if (in[1]) {
        int64_t *s;
        int k;
        cz_status st = cz_ints(ex, in[1], "split", &s, &k);
        if (st) return st;
        int64_t sum = 0;
        int bad = k != n;
        for (int i = 0; i < k && !bad; i++) {
            if (s[i] < 0 || s[i] > dim) bad = 1;
            else sum += s[i];
        }
        if (bad || sum != dim)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "split must be %d non-negative sizes summing to "
                              "%lld", n, (long long)dim);
        memcpy(sizes, s, sizeof(int64_t) * (size_t)n);
    } else if (nd->attr[A_SPLIT_NUM_OUTPUTS].set) {
        int64_t chunk = (dim + n - 1) / n;
        for (int i = 0; i < n - 1; i++) sizes[i] = chunk;
        sizes[n - 1] = dim - chunk * (n - 1);
        if (sizes[n - 1] < 0)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "cannot split %lld into %d chunks of %lld",
                              (long long)dim, n, (long long)chunk);
    } else {
        if (dim % n)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis of size %lld does not split evenly into "
                              "%d outputs", (long long)dim, n);
        for (int i = 0; i < n; i++) sizes[i] = dim / n;
    }
    size_t es = cz_dtype_size(X->dtype);
    uint64_t outer = 1, inner = es;
    for (int d = 0; d < ax; d++) outer *= (uint64_t)X->shape[d];
    for (int d = ax + 1; d < X->ndim; d++) inner *= (uint64_t)X->shape[d];
    uint64_t row = (uint64_t)dim * inner, pos = 0;
    for (int i = 0; i < n; i++) {
        int64_t os[CZ_MAX_NDIM];
        memcpy(os, X->shape, sizeof os);
        os[ax] = sizes[i];
        cz_status st = cz_ex_alloc(ex, out[i], X->dtype, X->ndim, os);
        if (st) return st;
        uint64_t w = (uint64_t)sizes[i] * inner;
        for (uint64_t o = 0; o < outer && w; o++)
            memcpy((uint8_t *)out[i]->data + o * w, (const uint8_t *)X->data + o * row + pos,
                   (size_t)w);
        pos += w;
    }
    return CZ_OK;
}

static cz_status op_slice(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *X = in[0];
    int64_t *starts, *ends, *axes = NULL, *steps = NULL;
    int ns, ne, na, np;
    cz_status st;
    if ((st = cz_ints(ex, in[1], "starts", &starts, &ns))) return st;
    if ((st = cz_ints(ex, in[2], "ends", &ends, &ne))) return st;
    na = np = ns;
    if (in[3] && (st = cz_ints(ex, in[3], "axes", &axes, &na))) return st;
    if (in[4] && (st = cz_ints(ex, in[4], "steps", &steps, &np))) return st;
    if (!(ns == ne && ne == na && na == np))
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "starts, ends, axes and steps must have the same "
                          "length");
    int r = X->ndim, seen[CZ_MAX_NDIM] = {0};
    int64_t begin[CZ_MAX_NDIM], step[CZ_MAX_NDIM], cnt[CZ_MAX_NDIM];
    for (int d = 0; d < r; d++) { begin[d] = 0; step[d] = 1; cnt[d] = X->shape[d]; }
    for (int i = 0; i < ns; i++) {
        int a;
        int64_t av = axes ? axes[i] : i;
        if (!cz_normalize_axis(av, r, &a))
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                              (long long)av, r);
        if (seen[a]) return cz_ex_fail(ex, CZ_ERR_SHAPE, "axes repeat an axis");
        seen[a] = 1;
        int64_t dim = X->shape[a], sp = steps ? steps[i] : 1, s0 = starts[i], e0 = ends[i];
        if (sp == 0) return cz_ex_fail(ex, CZ_ERR_SHAPE, "step 0");
        if (s0 < 0) s0 = s0 < INT64_MIN + dim ? INT64_MIN : s0 + dim;
        if (e0 < 0) e0 = e0 < INT64_MIN + dim ? INT64_MIN : e0 + dim;
        int64_t c;
        if (sp > 0) {
            s0 = s0 < 0 ? 0 : s0 > dim ? dim : s0;
            e0 = e0 < 0 ? 0 : e0 > dim ? dim : e0;
            c = e0 > s0 ? (int64_t)(((uint64_t)(e0 - s0) + (uint64_t)sp - 1) / (uint64_t)sp) : 0;
        } else {
            s0 = s0 < 0 ? 0 : s0 > dim - 1 ? dim - 1 : s0;
            e0 = e0 < -1 ? -1 : e0 > dim - 1 ? dim - 1 : e0;
            uint64_t nsp = sp == INT64_MIN ? (uint64_t)1 << 63 : (uint64_t)(-sp);
            c = s0 > e0 ? (int64_t)(((uint64_t)(s0 - e0) + nsp - 1) / nsp) : 0;
        }
        begin[a] = s0;
        step[a] = sp;
        cnt[a] = c;
    }
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    if ((st = cz_ex_alloc(ex, out[0], X->dtype, r, cnt))) return st;
    int64_t xst[CZ_MAX_NDIM], xs[CZ_MAX_NDIM], s = 1, base = 0;
    for (int d = r - 1; d >= 0; d--) { xst[d] = s; s *= X->shape[d]; }
    for (int d = 0; d < r; d++) {
        xs[d] = xst[d] * step[d];
        if (cnt[d]) base += begin[d] * xst[d];
    }
    size_t es = cz_dtype_size(X->dtype);
    cz_gather_strided((const uint8_t *)X->data + base * (int64_t)es, out[0]->data, r, cnt, xs, es,
                      out[0]->n);
    return CZ_OK;
}

static cz_status op_gather(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0], *I = in[1];
    if (I->dtype != CZ_I32 && I->dtype != CZ_I64)
        return cz_ex_fail(ex, CZ_ERR_PARAM, "indices must be int32 or int64, got %s",
                          cz_dtype_name(I->dtype));
    if (X->ndim == 0) return cz_ex_fail(ex, CZ_ERR_SHAPE, "data must have rank >= 1");
    int ax;
    if (!cz_normalize_axis(nd->attr[A_GATHER_AXIS].i, X->ndim, &ax))
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                          (long long)nd->attr[A_GATHER_AXIS].i, X->ndim);
    /* a file tensor kept as a kernel form (graph.c form_use): rows decoded from the form */
    const cz_form *F = !X->data && X->form && ax == 0 && czk_form_row_ok(X->form) &&
                       X->dtype == CZ_F32 ? X->form : NULL;
    if (!X->data && !F) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    int64_t dim = X->shape[ax];
    for (uint64_t i = 0; i < I->n; i++) {
        int64_t v = cz_rt_get_i(I, i);
        if (v < -dim || v >= dim)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "index %lld out of range [%lld, %lld]",
                              (long long)v, (long long)-dim, (long long)(dim - 1));
    }
    int r = X->ndim - 1 + I->ndim;
    if (r > CZ_MAX_NDIM) return cz_ex_fail(ex, CZ_ERR_SHAPE, "result rank %d exceeds %d", r,
                                           CZ_MAX_NDIM);
    int64_t os[CZ_MAX_NDIM];
    int q = 0;
    for (int d = 0; d < ax; d++) os[q++] = X->shape[d];
    for (int d = 0; d < I->ndim; d++) os[q++] = I->shape[d];
    for (int d = ax + 1; d < X->ndim; d++) os[q++] = X->shape[d];
    cz_status st = cz_ex_alloc(ex, out[0], X->dtype, r, os);
    if (st) return st;
    size_t es = cz_dtype_size(X->dtype);
    uint64_t outer = 1, inner = es;
    for (int d = 0; d < ax; d++) outer *= (uint64_t)X->shape[d];
    for (int d = ax + 1; d < X->ndim; d++) inner *= (uint64_t)X->shape[d];
    uint8_t *y = out[0]->data;
    if (F) {   /* axis 0: outer == 1, one form row (F->cols floats) per index */
        if (F->rows != dim || (uint64_t)F->cols * es != inner)
            return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "data form does not match its shape");
        for (uint64_t i = 0; i < I->n; i++) {
            int64_t v = cz_rt_get_i(I, i);
            czk_form_row(F, v < 0 ? v + dim : v, (float *)(void *)y);
            y += inner;
        }
        return CZ_OK;
    }
    for (uint64_t o = 0; o < outer; o++)
        for (uint64_t i = 0; i < I->n; i++) {
            int64_t v = cz_rt_get_i(I, i);
            if (v < 0) v += dim;
            memcpy(y, (const uint8_t *)X->data + (o * (uint64_t)dim + (uint64_t)v) * inner,
                   (size_t)inner);
            y += inner;
        }
    return CZ_OK;
}

/* ---- Expand / Tile --------------------------------------------------------------------- */

static cz_status op_expand(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *X = in[0];
    int64_t *s;
    int n;
    cz_status st = cz_ints(ex, in[1], "shape", &s, &n);
    if (st) return st;
    if (n > CZ_MAX_NDIM) return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape has %d dims", n);
    for (int i = 0; i < n; i++)
        if (s[i] < 0) return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape has a negative dim");
    cz_bcast b;
    int nds[2] = {X->ndim, n};
    const int64_t *shs[2] = {X->shape, s};
    if (!cz_bcast_init(&b, 2, nds, shs)) {
        char b0[128];
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "X %s does not broadcast with the requested shape",
                          cz_shape_str(X->ndim, X->shape, b0, sizeof b0));
    }
    if (b.n > CZ_MAX_RUNTIME_ELEMENTS)
        return cz_ex_fail(ex, CZ_ERR_LIMIT, "result of %llu elements exceeds %llu",
                          (unsigned long long)b.n, (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    if ((st = cz_ex_alloc(ex, out[0], X->dtype, b.r, b.shape))) return st;
    cz_gather_strided(X->data, out[0]->data, b.r, b.shape, b.st[0], cz_dtype_size(X->dtype),
                      b.n);
    return CZ_OK;
}

static cz_status op_tile(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    cz_rt *X = in[0];
    int64_t *rp;
    int n;
    cz_status st = cz_ints(ex, in[1], "repeats", &rp, &n);
    if (st) return st;
    int bad = n != X->ndim;
    for (int i = 0; i < n && !bad; i++) bad = rp[i] < 0;
    if (bad) return cz_ex_fail(ex, CZ_ERR_SHAPE, "repeats must be %d non-negative values",
                               X->ndim);
    int r = X->ndim;
    /* view as (rep0, d0, rep1, d1, ...) with stride 0 on the rep axes */
    int64_t vs[CZ_MAX_NDIM * 2], vst[CZ_MAX_NDIM * 2], os[CZ_MAX_NDIM], s = 1;
    uint64_t total = 1;
    for (int d = r - 1; d >= 0; d--) {
        vs[2 * d] = rp[d];
        vst[2 * d] = 0;
        vs[2 * d + 1] = X->shape[d];
        vst[2 * d + 1] = s;
        s *= X->shape[d];
    }
    for (int d = 0; d < r; d++) {
        os[d] = rp[d] * X->shape[d];
        if (!cz_mul_ok(total, (uint64_t)rp[d], &total) ||
            !cz_mul_ok(total, (uint64_t)X->shape[d], &total) || total > CZ_MAX_RUNTIME_ELEMENTS)
            return cz_ex_fail(ex, CZ_ERR_LIMIT, "result exceeds %llu elements",
                              (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
    }
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    if ((st = cz_ex_alloc(ex, out[0], X->dtype, r, os))) return st;
    /* gather over the doubled view (up to 2 * CZ_MAX_NDIM dims) */
    int64_t idx[CZ_MAX_NDIM * 2] = {0}, off = 0;
    size_t es = cz_dtype_size(X->dtype);
    uint8_t *y = out[0]->data;
    int vr = 2 * r;
    for (uint64_t k = 0; k < total; k++) {
        memcpy(y + k * es, (const uint8_t *)X->data + off * (int64_t)es, es);
        for (int d = vr - 1; d >= 0; d--) {
            idx[d]++;
            off += vst[d];
            if (idx[d] < vs[d]) break;
            off -= vst[d] * vs[d];
            idx[d] = 0;
        }
    }
    return CZ_OK;
}

/* ---- Shape / Range / ConstantOfShape / Cast ------------------------------------------- */

static cz_status op_shape(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    int64_t r = X->ndim, s0 = nd->attr[A_SHAPE_START].i, e0 = r;
    if (s0 < 0) s0 += r;
    s0 = s0 < 0 ? 0 : s0 > r ? r : s0;
    if (nd->attr[A_SHAPE_END].set) {
        e0 = nd->attr[A_SHAPE_END].i;
        if (e0 < 0) e0 += r;
        e0 = e0 < 0 ? 0 : e0 > r ? r : e0;
    }
    int64_t n = e0 > s0 ? e0 - s0 : 0;
    cz_status st = cz_ex_alloc(ex, out[0], CZ_I64, 1, &n);
    if (st) return st;
    for (int64_t i = 0; i < n; i++) ((int64_t *)out[0]->data)[i] = X->shape[s0 + i];
    return CZ_OK;
}

static cz_status op_range(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    (void)nd;
    static const char *NM[3] = {"start", "limit", "delta"};
    for (int k = 0; k < 3; k++) {
        if (in[k]->n != 1 || in[k]->ndim > 1)
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "%s must be a scalar (or a 1-element 1-D "
                              "tensor)", NM[k]);
        if (!cz_is_float(in[k]->dtype) && !cz_is_int(in[k]->dtype))
            return cz_ex_fail(ex, CZ_ERR_PARAM, "%s must be numeric", NM[k]);
    }
    cz_dtype d0 = cz_is_float(in[0]->dtype) ? CZ_F32 : in[0]->dtype;
    for (int k = 1; k < 3; k++)
        if ((cz_is_float(in[k]->dtype) ? CZ_F32 : in[k]->dtype) != d0)
            return cz_ex_fail(ex, CZ_ERR_PARAM, "start, limit and delta must have one dtype");
    cz_status st;
    if (d0 == CZ_F32) {
        double s = (float)cz_rt_get_f(in[0], 0), li = (float)cz_rt_get_f(in[1], 0),
               dl = (float)cz_rt_get_f(in[2], 0);
        if (dl == 0) return cz_ex_fail(ex, CZ_ERR_PARAM, "delta is 0");
        double c = ceil((li - s) / dl);
        if (!(c <= (double)CZ_MAX_RUNTIME_ELEMENTS))
            return cz_ex_fail(ex, CZ_ERR_LIMIT, "result exceeds %llu elements",
                              (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
        int64_t n = c > 0 ? (int64_t)c : 0;
        if ((st = cz_ex_alloc(ex, out[0], CZ_F32, 1, &n))) return st;
        for (int64_t i = 0; i < n; i++) ((float *)out[0]->data)[i] = (float)(s + (double)i * dl);
        return CZ_OK;
    }
    int64_t s = cz_rt_get_i(in[0], 0), li = cz_rt_get_i(in[1], 0), dl = cz_rt_get_i(in[2], 0);
    if (dl == 0) return cz_ex_fail(ex, CZ_ERR_PARAM, "delta is 0");
    /* n = max(ceil((li - s) / dl), 0) in exact arithmetic (__int128 avoids overflow) */
    __int128 num = (__int128)li - s, q = num / dl;
    if (q * dl != num && ((num < 0) == (dl < 0))) q++;
    if (q > (__int128)CZ_MAX_RUNTIME_ELEMENTS)
        return cz_ex_fail(ex, CZ_ERR_LIMIT, "result exceeds %llu elements",
                          (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
    int64_t n = q > 0 ? (int64_t)q : 0;
    if ((st = cz_ex_alloc(ex, out[0], d0, 1, &n))) return st;
    for (int64_t i = 0; i < n; i++)
        cz_rt_put_i(out[0], (uint64_t)i, (int64_t)((uint64_t)s + (uint64_t)i * (uint64_t)dl));
    return CZ_OK;
}

static cz_status op_constant_of_shape(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    int64_t *s;
    int n;
    cz_status st = cz_ints(ex, in[0], "shape", &s, &n);
    if (st) return st;
    if (n > CZ_MAX_NDIM) return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape has %d dims", n);
    uint64_t total = 1;
    for (int i = 0; i < n; i++) {
        if (s[i] < 0) return cz_ex_fail(ex, CZ_ERR_SHAPE, "shape has a negative dim");
        if (!cz_mul_ok(total, (uint64_t)s[i], &total) || total > CZ_MAX_RUNTIME_ELEMENTS)
            return cz_ex_fail(ex, CZ_ERR_LIMIT, "result exceeds %llu elements",
                              (unsigned long long)CZ_MAX_RUNTIME_ELEMENTS);
    }
    cz_dtype dt = (cz_dtype)nd->attr[A_COS_DTYPE].choice;
    if ((st = cz_ex_alloc(ex, out[0], dt, n, s))) return st;
    double v = nd->attr[A_COS_VALUE].f;
    uint8_t one[8];
    cz_rt src = {0}, dst = {0};
    src.dtype = CZ_F64; src.data = &v; src.n = 1;
    dst.dtype = dt; dst.data = one; dst.n = 1;
    cz_cast_elems(&src, &dst, 1);
    size_t es = cz_dtype_size(dt);
    for (uint64_t i = 0; i < out[0]->n; i++) memcpy((uint8_t *)out[0]->data + i * es, one, es);
    return CZ_OK;
}

static cz_status op_cast(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out) {
    cz_rt *X = in[0];
    cz_dtype to = (cz_dtype)nd->attr[A_CAST_TO].choice;
    if (!X->data) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "input has no dense data");
    if (to == X->dtype) return move_or_copy(ex, nd, X, out[0], X->ndim, X->shape);
    cz_status st = cz_ex_alloc(ex, out[0], to, X->ndim, X->shape);
    if (st) return st;
    cz_cast_elems(X, out[0], X->n);
    return CZ_OK;
}

cz_op_fn cz_ops_shape(cz_op_id op) {
    switch (op) {
    case OP_RESHAPE: return op_reshape;
    case OP_FLATTEN: return op_flatten;
    case OP_IDENTITY: return op_identity;
    case OP_SQUEEZE: return op_squeeze;
    case OP_UNSQUEEZE: return op_unsqueeze;
    case OP_TRANSPOSE: return op_transpose;
    case OP_CONCAT: return op_concat;
    case OP_SPLIT: return op_split;
    case OP_SLICE: return op_slice;
    case OP_GATHER: return op_gather;
    case OP_EXPAND: return op_expand;
    case OP_TILE: return op_tile;
    case OP_SHAPE: return op_shape;
    case OP_RANGE: return op_range;
    case OP_CONSTANTOFSHAPE: return op_constant_of_shape;
    case OP_CAST: return op_cast;
    case OP_PAD: return cz_op_pad;
    case OP_RESIZE: return cz_op_resize;
    default: return NULL;
    }
}
