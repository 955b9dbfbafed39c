/*
 * linear.c -- czk_linear and the internal czk_op dispatcher (see kint.h for the contract).
 *
 * DENSE/RELIDX/CODEBOOK/AFFINE/NM go to their family kernels. SVD (W = U V) runs as two
 * linears through an (n x r) scratch intermediate, kept in the caller's layout so the
 * second product reads it without conversion. SUM accumulates its terms into Y (bias added
 * once, by the first term). TUCKER2 is a conv-only factorization: CZ_ERR_PARAM here.
 */
#include <stdlib.h>

#include "kint.h"

/* Y = (acc ? Y : 0) + bias, for forms that contribute nothing (r = 0 SVD, empty SUM). */
static void fill_bias(int64_t R, int64_t n, const float *bias, float *y, int64_t ys_n,
                      int64_t ys_r, int acc) {
    for (int64_t i = 0; i < n; i++)
        for (int64_t r = 0; r < R; r++) {
            float *p = &y[i * ys_n + r * ys_r];
            float b = bias ? bias[r] : 0.f;
            *p = acc ? *p + b : b;
        }
}

cz_status czk_op(const cz_form *w, int64_t r0, int64_t r1, int64_t n, const float *x,
                 int64_t xs_n, int64_t xs_c, const float *bias, float *y, int64_t ys_n,
                 int64_t ys_r, int acc, cz_ws *ws) {
    if (r1 <= r0 || n <= 0) return CZ_OK;
    /* precise mode: the reference accumulates in double (cz_options.precise) */
    if (ws && ws->precise) return czk_op_ref(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc);
    switch (w->kind) {
    case CZ_FORM_DENSE: return czk_dense_op(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc, ws);
    case CZ_FORM_RELIDX: return czk_relidx_op(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc, ws);
    case CZ_FORM_CODEBOOK: return czk_codebook_op(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc, ws);
    case CZ_FORM_AFFINE: return czk_affine_op(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc, ws);
    case CZ_FORM_NM: return czk_nm_op(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc, ws);
    case CZ_FORM_SVD: {
        const cz_form *u = w->u.svd.u, *v = w->u.svd.v;
        int64_t rk = v->rows;
        if (rk <= 0) { fill_bias(r1 - r0, n, bias, y, ys_n, ys_r, acc); return CZ_OK; }
        float *t = czk_scratch(ws, (size_t)n * rk * sizeof(float));
        if (!t) return CZ_ERR_MEMORY;
        cz_status st;
        if (xs_c == 1) {   /* row layout: t is n x rk */
            st = czk_op(v, 0, rk, n, x, xs_n, xs_c, NULL, t, rk, 1, 0, ws);
            if (st == CZ_OK) st = czk_op(u, r0, r1, n, t, rk, 1, bias, y, ys_n, ys_r, acc, ws);
        } else {           /* column layout: t is rk x n */
            st = czk_op(v, 0, rk, n, x, xs_n, xs_c, NULL, t, 1, n, 0, ws);
            if (st == CZ_OK) st = czk_op(u, r0, r1, n, t, 1, n, bias, y, ys_n, ys_r, acc, ws);
        }
        return st;
    }
    case CZ_FORM_SUM: {
        if (w->u.sum.n <= 0) { fill_bias(r1 - r0, n, bias, y, ys_n, ys_r, acc); return CZ_OK; }
        for (int t = 0; t < w->u.sum.n; t++) {
            cz_status st = czk_op(w->u.sum.terms[t], r0, r1, n, x, xs_n, xs_c,
                                  t == 0 ? bias : NULL, y, ys_n, ys_r, t == 0 ? acc : 1, ws);
            if (st != CZ_OK) return st;
        }
        return CZ_OK;
    }
    case CZ_FORM_TUCKER2: return CZ_ERR_PARAM;
    }
    return CZ_ERR_UNSUPPORTED;
}

/* Reference dispatcher: the same decomposition, every family through its _ref. */
cz_status czk_op_ref(const cz_form *w, int64_t r0, int64_t r1, int64_t n, const float *x,
                     int64_t xs_n, int64_t xs_c, const float *bias, float *y, int64_t ys_n,
                     int64_t ys_r, int acc) {
    if (r1 <= r0 || n <= 0) return CZ_OK;
    switch (w->kind) {
    case CZ_FORM_DENSE: czk_dense_op_ref(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc); return CZ_OK;
    case CZ_FORM_RELIDX: czk_relidx_op_ref(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc); return CZ_OK;
    case CZ_FORM_CODEBOOK: czk_codebook_op_ref(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc); return CZ_OK;
    case CZ_FORM_AFFINE: czk_affine_op_ref(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc); return CZ_OK;
    case CZ_FORM_NM: czk_nm_op_ref(w, r0, r1, n, x, xs_n, xs_c, bias, y, ys_n, ys_r, acc); return CZ_OK;
    case CZ_FORM_SVD: {
        const cz_form *u = w->u.svd.u, *v = w->u.svd.v;
        int64_t rk = v->rows;
        if (rk <= 0) { fill_bias(r1 - r0, n, bias, y, ys_n, ys_r, acc); return CZ_OK; }
        float *t = malloc((size_t)n * rk * sizeof(float));
        if (!t) return CZ_ERR_MEMORY;
        cz_status st = czk_op_ref(v, 0, rk, n, x, xs_n, xs_c, NULL, t, rk, 1, 0);
        if (st == CZ_OK) st = czk_op_ref(u, r0, r1, n, t, rk, 1, bias, y, ys_n, ys_r, acc);
        free(t);
        return st;
    }
    case CZ_FORM_SUM: {
        if (w->u.sum.n <= 0) { fill_bias(r1 - r0, n, bias, y, ys_n, ys_r, acc); return CZ_OK; }
        for (int t = 0; t < w->u.sum.n; t++) {
            cz_status st = czk_op_ref(w->u.sum.terms[t], r0, r1, n, x, xs_n, xs_c,
                                      t == 0 ? bias : NULL, y, ys_n, ys_r, t == 0 ? acc : 1);
            if (st != CZ_OK) return st;
        }
        return CZ_OK;
    }
    case CZ_FORM_TUCKER2: return CZ_ERR_PARAM;
    }
    return CZ_ERR_UNSUPPORTED;
}

cz_status czk_linear(const cz_form *w, int64_t batch, const float *x, int64_t ldx,
                     const float *bias, float *y, int64_t ldy, cz_ws *ws) {
    if (!w || !ws || batch < 0 || (batch > 0 && (!x || !y))) return CZ_ERR_PARAM;
    if (w->kind == CZ_FORM_TUCKER2) return CZ_ERR_PARAM;
    if (ldx < w->cols || ldy < w->rows) return CZ_ERR_PARAM;
    return czk_op(w, 0, w->rows, batch, x, ldx, 1, bias, y, ldy, 1, 0, ws);
}

/* ---- one row of a form, decoded (Gather over a file tensor kept as a form) -------------- */
int czk_form_row_ok(const cz_form *w) {
    return w && (w->kind == CZ_FORM_DENSE || w->kind == CZ_FORM_AFFINE ||
                 w->kind == CZ_FORM_CODEBOOK);
}

void czk_form_row(const cz_form *w, int64_t r, float *out) {
    int64_t C = w->cols;
    switch (w->kind) {
    case CZ_FORM_DENSE: memcpy(out, w->u.dense.w + r * C, (size_t)C * sizeof(float)); break;
    case CZ_FORM_CODEBOOK: {
        const uint8_t *ix = w->u.codebook.idx + r * C;
        const float *lut = w->u.codebook.lut + (w->u.codebook.per_row ? r * w->u.codebook.k : 0);
        for (int64_t c = 0; c < C; c++) out[c] = lut[ix[c]];
        break;
    }
    case CZ_FORM_AFFINE: {   /* (float)(q - zp) * scale, as the codec's dense decode */
        const int8_t *q = w->u.affine.q + r * C;
        const float *S = w->u.affine.scale;
        const int32_t *Z = w->u.affine.zp;
        int64_t G = w->u.affine.group;
        if (G > 0) {
            int64_t ng = (C + G - 1) / G;
            for (int64_t g = 0; g < ng; g++) {
                int64_t j = r * ng + g, c1 = (g + 1) * G < C ? (g + 1) * G : C;
                float s = S[j];
                int32_t z = Z ? Z[j] : 0;
                for (int64_t c = g * G; c < c1; c++) out[c] = (float)(q[c] - z) * s;
            }
        } else {
            int64_t j = w->u.affine.per_row ? r : 0;
            float s = S[j];
            int32_t z = Z ? Z[j] : 0;
            for (int64_t c = 0; c < C; c++) out[c] = (float)(q[c] - z) * s;
        }
        break;
    }
    default: break;
    }
}
