/* forms.c -- build the kernel form (cz_form, cz_internal.h) of every encoding node at open.
 *
 *   dense (any stream dtype)              -> DENSE f32 (raw aligned f32 streams used in place)
 *   relidx                                -> RELIDX; values child = per-tensor codebook ->
 *                                            CODEBOOK vals (idx + LUT), else F32 vals; with
 *                                            cols <= 65536 the u16 column of every value is
 *                                            built in the validation walk and the gap stream
 *                                            and gap_ptr are dropped (CZ_RELIDX_COLS=0 in the
 *                                            environment keeps the gaps instead); 2-D
 *                                            codebook weights with enough values per row
 *                                            and LUT entry get the codebook-grouped layout
 *                                            instead of col16 + idx (relidx.c)
 *   codebook per tensor / per channel ax 0 -> CODEBOOK (per_row for axis 0)
 *   affine per tensor / axis 0 / groups    -> AFFINE (q widened to int8, zero points int32;
 *                                            unsigned 8-bit q is stored as q-128 with zp-128)
 *   nm                                    -> NM (values as for relidx)
 *   svd / tucker2 / sum                    -> SVD / TUCKER2 / SUM of child forms
 *   anything else (block, codebook/affine on another axis) -> decoded -> DENSE
 * Every decode check of the codec runs here too, so kernels may trust the forms.
 */
#include <stdlib.h>
#include <string.h>

#include "cz_model.h"

cz_status cz_model_keep(cz_model *m, void *p, char *err, size_t errlen) {
    if (!p) return CZ_OK;
    if (m->nkeep == m->capkeep) {
        size_t nc = m->capkeep ? 2 * m->capkeep : 64;
        void **nk = cz_mem_alloc(&m->alloc, nc * sizeof(void *), 8);
        if (!nk) {
            cz_mem_free(&m->alloc, p);
            return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory building kernel forms");
        }
        if (m->keep) memcpy(nk, m->keep, m->nkeep * sizeof(void *));
        cz_mem_free(&m->alloc, m->keep);
        m->keep = nk;
        m->capkeep = nc;
    }
    m->keep[m->nkeep++] = p;
    return CZ_OK;
}

static void *kalloc(cz_model *m, uint64_t bytes, char *err, size_t errlen, cz_status *st) {
    void *p = cz_mem_alloc(&m->alloc, (size_t)(bytes ? bytes : 1), 64);
    if (!p) { *st = cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory building kernel forms"); return NULL; }
    *st = cz_model_keep(m, p, err, errlen);
    return *st ? NULL : p;
}

/* keep a decoded buffer (or use the file bytes in place) */
static cz_status keep_buf(cz_model *m, cz_buf *b, char *err, size_t errlen) {
    if (!b->owned) return CZ_OK;
    void *p = b->owned;
    b->owned = NULL;
    return cz_model_keep(m, p, err, errlen);
}

static cz_status to_f32_kept(cz_model *m, cz_buf *b, const float **out, char *err, size_t errlen) {
    cz_status st;
    if (b->dtype == CZ_S_F32) {
        *out = b->data;
        return keep_buf(m, b, err, errlen);
    }
    float *f = kalloc(m, b->n * 4, err, errlen, &st);
    if (!f) return st;
    for (uint64_t i = 0; i < b->n; i++)
        f[i] = b->dtype == CZ_S_F16 ? cz_half_to_float(((const uint16_t *)b->data)[i])
                                    : ((const float *)b->data)[i];
    *out = f;
    return CZ_OK;
}

static cz_form *new_form(cz_model *m, const cz_node *nd, cz_form_kind kind, char *err, size_t errlen,
                         cz_status *st) {
    cz_form *f = kalloc(m, sizeof(cz_form), err, errlen, st);
    if (!f) return NULL;
    memset(f, 0, sizeof *f);
    f->kind = kind;
    f->ndim = nd->ndim;
    memcpy(f->shape, nd->shape, sizeof f->shape);
    f->rows = nd->rows;
    f->cols = nd->cols;
    return f;
}

#define TRY(x) do { st = (x); if (st) goto done; } while (0)

static cz_status build_dense(cz_model *m, const cz_node *nd, const char *tensor, cz_form **out,
                             char *err, size_t errlen) {
    cz_status st;
    cz_form *f = new_form(m, nd, CZ_FORM_DENSE, err, errlen, &st);
    if (!f) return st;
    if (nd->codec == CZ_CODEC_DENSE && nd->s[0]->dtype == CZ_S_F32) {
        if (nd->size > m->max_tensor_bytes / 4)
            return cz_fail_at(err, errlen, CZ_ERR_LIMIT, tensor, nd->where, -1,
                              "decoding node 'dense' needs %llu bytes, over the cap of %llu",
                              (unsigned long long)nd->size * 4, (unsigned long long)m->max_tensor_bytes);
        cz_buf b;
        st = cz_stream_read(m, nd->s[0], tensor, &b, err, errlen);
        if (st) return st;
        f->u.dense.w = b.data;
        st = keep_buf(m, &b, err, errlen);
        if (st) return st;
    } else {
        float *w;
        st = cz_node_decode_f32(m, nd, tensor, &w, err, errlen);
        if (st) return st;
        st = cz_model_keep(m, w, err, errlen);
        if (st) return st;
        f->u.dense.w = w;
    }
    f->resident_bytes = nd->size * 4;
    *out = f;
    return CZ_OK;
}

/* values child of relidx / nm: per-tensor codebook -> (idx, lut, k); else f32 */
static cz_status build_vals(cz_model *m, const cz_node *v, const char *tensor, cz_vals_kind *kind,
                            const uint8_t **idx, const float **lut, int *k, const float **vals,
                            uint64_t *bytes, char *err, size_t errlen) {
    cz_status st;
    if (v->codec == CZ_CODEC_CODEBOOK && v->p_axis < 0) {
        cz_buf ib = {0}, cb = {0};
        st = cz_stream_read(m, v->s[0], tensor, &ib, err, errlen);
        if (!st) st = cz_stream_read(m, v->s[1], tensor, &cb, err, errlen);
        if (!st) {
            const uint8_t *p = ib.data;
            for (uint64_t i = 0; i < ib.n; i++)
                if (p[i] >= v->p_k) {
                    st = cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, v->s[0]->path, -1,
                                    "codebook: index %u >= k=%lld at element %llu", p[i],
                                    (long long)v->p_k, (unsigned long long)i);
                    break;
                }
        }
        if (!st) st = to_f32_kept(m, &cb, lut, err, errlen);
        if (!st) {
            *idx = ib.data;
            st = keep_buf(m, &ib, err, errlen);
        }
        cz_buf_free(m, &ib);
        cz_buf_free(m, &cb);
        if (st) return st;
        *kind = CZ_VALS_CODEBOOK;
        *k = (int)v->p_k;
        *bytes = ib.n + (uint64_t)v->p_k * 4;
        return CZ_OK;
    }
    float *f;
    st = cz_node_decode_f32(m, v, tensor, &f, err, errlen);
    if (st) return st;
    st = cz_model_keep(m, f, err, errlen);
    if (st) return st;
    *kind = CZ_VALS_F32;
    *vals = f;
    *bytes = v->size * 4;
    return CZ_OK;
}

/* keep: the array is kept by the model; else the caller frees *out (also on failure) */
static cz_status ptrs_i64(cz_model *m, const cz_node *nd, const char *tensor, int role, uint64_t total,
                          int keep, const int64_t **out, char *err, size_t errlen) {
    cz_buf b;
    *out = NULL;
    cz_status st = cz_stream_read(m, nd->s[role], tensor, &b, err, errlen);
    if (st) return st;
    int64_t *p;
    if (keep) {
        p = kalloc(m, b.n * 8, err, errlen, &st);
    } else {
        p = cz_mem_alloc(&m->alloc, (size_t)(b.n ? b.n * 8 : 1), 64);
        if (!p) st = cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory building kernel forms");
    }
    if (!p) { cz_buf_free(m, &b); return st; }
    const char *rn = role == 1 ? "gap_ptr" : "val_ptr";
    for (uint64_t i = 0; i < b.n; i++)
        p[i] = (int64_t)(b.dtype == CZ_S_U32 ? ((const uint32_t *)b.data)[i] : ((const uint64_t *)b.data)[i]);
    /* unsigned checks, in the Python order */
    const uint64_t *u = (const uint64_t *)p;
    if (b.n == 0 || u[0] != 0)
        st = cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, nd->s[role]->path, -1, "relidx: %s[0] must be 0", rn);
    else if (u[b.n - 1] != total)
        st = cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, nd->s[role]->path, -1,
                        "relidx: %s[last]=%llu must equal %llu", rn, (unsigned long long)u[b.n - 1],
                        (unsigned long long)total);
    else
        for (uint64_t i = 0; i + 1 < b.n; i++)
            if (u[i + 1] < u[i]) {
                st = cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, nd->s[role]->path, -1,
                                "relidx: %s decreases at row %llu", rn, (unsigned long long)i);
                break;
            }
    cz_buf_free(m, &b);
    *out = p;
    return st;
}

static const char *const WALK_MSG[5] = {"", "a value lands past the end of the row",
                                        "a filler moves past the end of the row",
                                        "the row's gaps consume more values than val_ptr gives it",
                                        "the row's gaps consume fewer values than val_ptr gives it"};

/* Build the u16 column cache (and drop the gap stream)? Not for cols > 65536; not when
 * CZ_RELIDX_COLS=0 is set in the environment (the lean EIE mode: the kernels walk the gaps,
 * ~3x slower at batch 1, for 1 byte per value instead of 2). */
static int relidx_want_col16(int64_t rows, int64_t cols) {
    if (cols > 65536 || rows <= 0) return 0;
    const char *cc = getenv("CZ_RELIDX_COLS");
    return !(cc && cc[0] == '0');
}

/* Release a buffer the model keeps (the idx of a grouped RELIDX form: its chunk indices
 * live in the grouped block); no-op if p is not in the keep list (values used in place). */
static void relidx_unkeep(cz_model *m, const void *p) {
    for (size_t i = m->nkeep; i-- > 0;)
        if (m->keep[i] == p) {
            cz_mem_free(&m->alloc, m->keep[i]);
            m->keep[i] = m->keep[--m->nkeep];
            return;
        }
}

/* CZ_RELIDX_GROUP=0 / 1 in the environment: never / always build the codebook-grouped
 * layout (tests); unset: the rule of czk_relidx_group_plan. 2-D weights only: conv weights
 * keep the column-ordered col16 their conv kernels search (conv2d.c). */
static int relidx_group_mode(void) {
    const char *g = getenv("CZ_RELIDX_GROUP");
    return g && g[0] == '0' ? 0 : g && g[0] == '1' ? 1 : -1;
}

static cz_status build_relidx(cz_model *m, const cz_node *nd, const char *tensor, cz_form **out,
                              char *err, size_t errlen) {
    cz_status st;
    cz_form *f = new_form(m, nd, CZ_FORM_RELIDX, err, errlen, &st);
    if (!f) return st;
    int c16 = relidx_want_col16(nd->rows, nd->cols);
    cz_buf g = {0};
    const int64_t *gp = NULL;
    uint16_t *col = NULL;
    int grp = 0;                  /* grouped: col is a scratch copy, freed below */
    uint64_t gbytes = 0;
    st = cz_stream_read(m, nd->s[0], tensor, &g, err, errlen);
    if (st) return st;
    uint64_t ngaps = g.n;
    uint64_t nnz = (uint64_t)nd->c[0]->shape[0];
    TRY(ptrs_i64(m, nd, tensor, 1, ngaps, !c16, &gp, err, errlen));
    TRY(ptrs_i64(m, nd, tensor, 2, nnz, 1, &f->u.relidx.val_ptr, err, errlen));
    uint64_t vbytes = 0;
    TRY(build_vals(m, nd->c[0], tensor, &f->u.relidx.vkind, &f->u.relidx.idx, &f->u.relidx.lut,
                   &f->u.relidx.k, &f->u.relidx.vals, &vbytes, err, errlen));
    /* val_ptr[0] == 0 and val_ptr[rows] == nnz (checked): col is indexed by the value index */
    grp = c16 && nd->ndim == 2 && f->u.relidx.vkind == CZ_VALS_CODEBOOK &&
          czk_relidx_group_plan(nd->rows, nd->cols, f->u.relidx.val_ptr, f->u.relidx.idx,
                                f->u.relidx.k, relidx_group_mode(), &gbytes);
    if (grp) {
        if (!(col = cz_mem_alloc(&m->alloc, (size_t)(nnz ? nnz * 2 : 1), 64))) {
            st = cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory building kernel forms");
            goto done;
        }
    } else if (c16 && !(col = kalloc(m, nnz * 2, err, errlen, &st))) goto done;
    int64_t bad = -1;
    int code = cz_relidx_walk(g.data, gp, f->u.relidx.val_ptr, nd->rows, nd->cols,
                              (int)nd->p_gap_bits, NULL, NULL, col, &bad);
    if (code) {
        st = cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, nd->s[0]->path, -1, "relidx: row %lld: %s",
                        (long long)bad, WALK_MSG[code]);
        goto done;
    }
    f->u.relidx.gap_bits = (int)nd->p_gap_bits;
    if (grp) {   /* the grouped layout replaces col16 and idx (gaps and gap_ptr released) */
        void *blk = kalloc(m, gbytes, err, errlen, &st);
        if (!blk) goto done;
        czk_relidx_group_build(f, col, blk);
        relidx_unkeep(m, f->u.relidx.idx);
        f->u.relidx.idx = NULL;
        f->resident_bytes = gbytes + ((uint64_t)nd->rows + 1) * 8 + (uint64_t)f->u.relidx.k * 4;
    } else if (c16) {   /* the positions live in col16 only: the gaps and gap_ptr are released */
        f->relidx_col16 = col;
        f->resident_bytes = nnz * 2 + ((uint64_t)nd->rows + 1) * 8 + vbytes;
    } else {
        f->u.relidx.gaps = g.data;
        f->u.relidx.gap_ptr = gp;
        gp = NULL;                             /* kept by the model */
        TRY(keep_buf(m, &g, err, errlen));
        f->resident_bytes = ngaps + 2 * ((uint64_t)nd->rows + 1) * 8 + vbytes;
    }
    *out = f;
done:
    if (c16) cz_mem_free(&m->alloc, (void *)gp);
    if (grp) cz_mem_free(&m->alloc, col);
    cz_buf_free(m, &g);
    return st;
}

static cz_status build_nm(cz_model *m, const cz_node *nd, const char *tensor, cz_form **out,
                          char *err, size_t errlen) {
    cz_status st;
    cz_form *f = new_form(m, nd, CZ_FORM_NM, err, errlen, &st);
    if (!f) return st;
    cz_buf pb;
    st = cz_stream_read(m, nd->s[0], tensor, &pb, err, errlen);
    if (st) return st;
    uint64_t n = (uint64_t)nd->p_n, mm = (uint64_t)nd->p_m, groups = nd->size / mm;
    const uint8_t *pos = pb.data;
    for (uint64_t gi = 0; gi < groups; gi++) {
        int prev = -1;
        for (uint64_t j = 0; j < n; j++) {
            int p = pos[gi * n + j];
            if (p <= prev || (uint64_t)p >= mm) {
                cz_buf_free(m, &pb);
                return cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, nd->s[0]->path, -1,
                                  "nm: group %llu: positions are not strictly increasing or not below m=%llu",
                                  (unsigned long long)gi, (unsigned long long)mm);
            }
            prev = p;
        }
    }
    f->u.nm.pos = pb.data;
    uint64_t npos = pb.n;
    st = keep_buf(m, &pb, err, errlen);
    if (st) return st;
    uint64_t vbytes = 0;
    st = build_vals(m, nd->c[0], tensor, &f->u.nm.vkind, &f->u.nm.idx, &f->u.nm.lut, &f->u.nm.k,
                    &f->u.nm.vals, &vbytes, err, errlen);
    if (st) return st;
    f->u.nm.n = (int)n;
    f->u.nm.m = (int)mm;
    f->resident_bytes = npos + vbytes;
    *out = f;
    return CZ_OK;
}

static cz_status build_codebook(cz_model *m, const cz_node *nd, const char *tensor, cz_form **out,
                                char *err, size_t errlen) {
    cz_status st;
    cz_form *f = new_form(m, nd, CZ_FORM_CODEBOOK, err, errlen, &st);
    if (!f) return st;
    uint64_t nidx = 0, nlut = 0;
    st = build_vals(m, nd, tensor, &(cz_vals_kind){0}, &f->u.codebook.idx, &f->u.codebook.lut,
                    &f->u.codebook.k, &(const float *){NULL}, &nidx, err, errlen);
    (void)nlut;
    if (st) return st;
    f->u.codebook.per_row = 0;
    f->resident_bytes = nidx;
    *out = f;
    return CZ_OK;
}

static cz_status build_codebook_rows(cz_model *m, const cz_node *nd, const char *tensor,
                                     cz_form **out, char *err, size_t errlen) {
    cz_status st;
    cz_form *f = new_form(m, nd, CZ_FORM_CODEBOOK, err, errlen, &st);
    if (!f) return st;
    cz_buf ib = {0}, cb = {0};
    TRY(cz_stream_read(m, nd->s[0], tensor, &ib, err, errlen));
    TRY(cz_stream_read(m, nd->s[1], tensor, &cb, err, errlen));
    const uint8_t *p = ib.data;
    for (uint64_t i = 0; i < ib.n; i++)
        if (p[i] >= nd->p_k) {
            st = cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, nd->s[0]->path, -1,
                            "codebook: index %u >= k=%lld at element %llu", p[i], (long long)nd->p_k,
                            (unsigned long long)i);
            goto done;
        }
    TRY(to_f32_kept(m, &cb, &f->u.codebook.lut, err, errlen));
    f->u.codebook.idx = ib.data;
    TRY(keep_buf(m, &ib, err, errlen));
    f->u.codebook.k = (int)nd->p_k;
    f->u.codebook.per_row = 1;
    f->resident_bytes = ib.n + cb.n * 4;
    *out = f;
done:
    cz_buf_free(m, &ib);
    cz_buf_free(m, &cb);
    return st;
}

static cz_status build_affine(cz_model *m, const cz_node *nd, const char *tensor, cz_form **out,
                              char *err, size_t errlen) {
    cz_status st;
    cz_form *f = new_form(m, nd, CZ_FORM_AFFINE, err, errlen, &st);
    if (!f) return st;
    cz_buf qb = {0}, sb = {0}, zb = {0};
    TRY(cz_stream_read(m, nd->s[0], tensor, &qb, err, errlen));
    TRY(cz_stream_read(m, nd->s[1], tensor, &sb, err, errlen));
    if (nd->s[2]) TRY(cz_stream_read(m, nd->s[2], tensor, &zb, err, errlen));
    int bits = (int)nd->p_bits, sg = nd->p_signed, half = 1 << (bits - 1), full = 1 << bits;
    int shift = (!sg && bits == 8) ? 128 : 0;   /* unsigned 8-bit: store q-128, zp-128 */
    /* q widened to int8: signed 8-bit symbols are int8 as they are (used in place: the
     * decoded buffer or the file bytes); others are converted in the decoded buffer when
     * there is one (no second copy), else into a new one */
    const int8_t *q;
    if (sg && bits == 8) {
        q = (const int8_t *)qb.data;
    } else {
        const uint8_t *qs = qb.data;
        int8_t *qd = qb.owned ? (int8_t *)qb.owned : kalloc(m, qb.n, err, errlen, &st);
        if (!qd) goto done;
        if (sg)                                   /* sign-extend a bits-wide field */
            for (uint64_t i = 0; i < qb.n; i++) qd[i] = (int8_t)((qs[i] ^ half) - half);
        else if (shift)
            for (uint64_t i = 0; i < qb.n; i++) qd[i] = (int8_t)((int)qs[i] - shift);
        else if ((const void *)qd != (const void *)qs)
            memcpy(qd, qs, (size_t)qb.n);
        q = qd;
    }
    if (qb.owned) TRY(keep_buf(m, &qb, err, errlen));
    uint64_t S = sb.n;
    int32_t *zp = NULL;
    if (zb.data || shift) {
        zp = kalloc(m, S * 4, err, errlen, &st);
        if (!zp) goto done;
        const uint8_t *zs = zb.data;
        for (uint64_t i = 0; i < S; i++) {
            int v = zs ? ((sg && zs[i] >= half) ? zs[i] - full : zs[i]) : 0;
            zp[i] = v - shift;
        }
    }
    TRY(to_f32_kept(m, &sb, &f->u.affine.scale, err, errlen));
    f->u.affine.q = q;
    f->u.affine.bits = bits;
    f->u.affine.zp = zp;
    f->u.affine.group = nd->p_group > 0 ? nd->p_group : 0;
    f->u.affine.per_row = nd->p_axis == 0;
    f->resident_bytes = qb.n + S * 4 + (zp ? S * 4 : 0);
    *out = f;
done:
    cz_buf_free(m, &qb);
    cz_buf_free(m, &sb);
    cz_buf_free(m, &zb);
    return st;
}

cz_status cz_form_build(cz_model *m, const cz_node *nd, const char *tensor, cz_form **out,
                        char *err, size_t errlen) {
    cz_status st;
    *out = NULL;
    switch (nd->codec) {
    case CZ_CODEC_RELIDX: return build_relidx(m, nd, tensor, out, err, errlen);
    case CZ_CODEC_NM: return build_nm(m, nd, tensor, out, err, errlen);
    case CZ_CODEC_CODEBOOK:
        if (nd->p_axis < 0) return build_codebook(m, nd, tensor, out, err, errlen);
        if (nd->p_axis == 0) return build_codebook_rows(m, nd, tensor, out, err, errlen);
        break;
    case CZ_CODEC_AFFINE:
        if (nd->p_axis <= 0) return build_affine(m, nd, tensor, out, err, errlen);
        break;
    case CZ_CODEC_SVD:
    case CZ_CODEC_TUCKER2:
    case CZ_CODEC_SUM: {
        cz_form_kind kind = nd->codec == CZ_CODEC_SVD ? CZ_FORM_SVD
                            : nd->codec == CZ_CODEC_TUCKER2 ? CZ_FORM_TUCKER2 : CZ_FORM_SUM;
        cz_form *f = new_form(m, nd, kind, err, errlen, &st);
        if (!f) return st;
        cz_form *ch[CZ_NODE_MAX_CHILDREN];
        uint64_t res = 0;
        for (int i = 0; i < nd->nchild; i++) {
            st = cz_form_build(m, nd->c[i], tensor, &ch[i], err, errlen);
            if (st) return st;
            res += ch[i]->resident_bytes;
        }
        if (kind == CZ_FORM_SVD) { f->u.svd.u = ch[0]; f->u.svd.v = ch[1]; }
        else if (kind == CZ_FORM_TUCKER2) {
            f->u.tucker2.first = ch[0];
            f->u.tucker2.core = ch[1];
            f->u.tucker2.last = ch[2];
        } else {
            cz_form **terms = kalloc(m, (uint64_t)nd->nchild * sizeof(cz_form *), err, errlen, &st);
            if (!terms) return st;
            memcpy(terms, ch, (size_t)nd->nchild * sizeof(cz_form *));
            f->u.sum.n = nd->nchild;
            f->u.sum.terms = terms;
        }
        f->resident_bytes = res;
        *out = f;
        return CZ_OK;
    }
    default:
        break;
    }
    return build_dense(m, nd, tensor, out, err, errlen);
}
