/* codecs.c -- decode any encoding tree densely (cz_tensor_read / cz_verify), with the same
 * decode checks as czmodel/codecs/ (Python) (spec/sections/encodings.md).
 */
#include <math.h>
#include <string.h>

#include "cz_model.h"

/* ---- float conversions -------------------------------------------------------------- */

float cz_half_to_float(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16, e = (h >> 10) & 0x1F, mant = h & 0x3FF, bits;
    if (e == 0) {
        if (!mant) bits = sign;
        else {   /* subnormal: normalise */
            e = 127 - 15 + 1;
            while (!(mant & 0x400)) { mant <<= 1; e--; }
            mant &= 0x3FF;
            bits = sign | (e << 23) | (mant << 13);
        }
    } else if (e == 31) {
        bits = sign | 0x7F800000u | (mant << 13);
    } else {
        bits = sign | ((e - 15 + 127) << 23) | (mant << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

float cz_bf16_to_float(uint16_t b) {
    uint32_t u = (uint32_t)b << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

uint16_t cz_float_to_half(double x) {
    uint64_t b;
    memcpy(&b, &x, 8);
    uint16_t sign = (uint16_t)((b >> 48) & 0x8000);
    uint64_t exp = (b >> 52) & 0x7FF, sig = b & 0xFFFFFFFFFFFFFull;
    if (exp == 0x7FF) {
        if (!sig) return sign | 0x7C00;
        uint16_t r = (uint16_t)(0x7C00 + (sig >> 42));   /* numpy: keep the payload's top bits */
        if (r == 0x7C00) r++;
        return sign | r;
    }
    double d = fabs(x);
    if (d >= 65520.0) return sign | 0x7C00;
    if (d < 6.103515625e-05) {                /* 2^-14: subnormal half (or zero) */
        double q = nearbyint(d * 16777216.0); /* units of 2^-24, round to nearest even */
        return sign | (uint16_t)q;            /* q == 1024 is the smallest normal: same bits */
    }
    int e;
    double f = frexp(d, &e);                  /* d = f * 2^e, f in [0.5, 1) */
    double mq = nearbyint(f * 2048.0);        /* 1024..2048 */
    int E = e - 1;
    if (mq >= 2048.0) { mq = 1024.0; E++; }
    if (E + 15 >= 31) return sign | 0x7C00;
    return sign | (uint16_t)(((E + 15) << 10) | ((int)mq - 1024));
}

/* ---- helpers --------------------------------------------------------------------------- */

#define TRY(x) do { cz_status st_ = (x); if (st_) goto done; } while (0)

static float sval_f32(const cz_buf *b, uint64_t i) {
    const uint8_t *p = b->data;
    switch (b->dtype) {
    case CZ_S_U8: return (float)p[i];
    case CZ_S_I8: return (float)((const int8_t *)p)[i];
    case CZ_S_U16: return (float)((const uint16_t *)p)[i];
    case CZ_S_I16: return (float)((const int16_t *)p)[i];
    case CZ_S_U32: return (float)((const uint32_t *)p)[i];
    case CZ_S_I32: return (float)((const int32_t *)p)[i];
    case CZ_S_U64: return (float)((const uint64_t *)p)[i];
    case CZ_S_I64: return (float)((const int64_t *)p)[i];
    case CZ_S_F16: return cz_half_to_float(((const uint16_t *)p)[i]);
    case CZ_S_BF16: return cz_bf16_to_float(((const uint16_t *)p)[i]);
    case CZ_S_F32: return ((const float *)p)[i];
    case CZ_S_F64: return (float)((const double *)p)[i];
    default: return 0.0f;
    }
}

static void buf_to_f32(const cz_buf *b, float *out) {
    if (b->dtype == CZ_S_F32) { memcpy(out, b->data, (size_t)b->n * 4); return; }
    for (uint64_t i = 0; i < b->n; i++) out[i] = sval_f32(b, i);
}

static float *alloc_f32(const cz_model *m, uint64_t n) {
    return cz_mem_alloc(&m->alloc, (size_t)(n ? n : 1) * sizeof(float), 64);
}

static cz_status oom(char *err, size_t errlen) {
    return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory decoding a tensor");
}

#define CORRUPT(node, path, ...) \
    cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, (path), -1, __VA_ARGS__)

/* ptr[0] == 0, ptr[last] == total, non-decreasing (unsigned). Writes int64 copies. */
static cz_status check_ptrs(const cz_node *nd, const char *tensor, int role, const cz_buf *b,
                            uint64_t total, int64_t *out, char *err, size_t errlen) {
    const char *rn = role == 1 ? "gap_ptr" : "val_ptr";
    const char *path = nd->s[role]->path;
    uint64_t n = b->n;
#define PTR(i) (b->dtype == CZ_S_U32 ? (uint64_t)((const uint32_t *)b->data)[i] \
                                     : ((const uint64_t *)b->data)[i])
    if (n == 0 || PTR(0) != 0) return CORRUPT(nd, path, "%s: %s[0] must be 0", cz_codec_name[nd->codec], rn);
    if (PTR(n - 1) != total)
        return CORRUPT(nd, path, "%s: %s[last]=%llu must equal %llu", cz_codec_name[nd->codec], rn,
                       (unsigned long long)PTR(n - 1), (unsigned long long)total);
    for (uint64_t i = 0; i + 1 < n; i++)
        if (PTR(i + 1) < PTR(i))
            return CORRUPT(nd, path, "%s: %s decreases at row %llu", cz_codec_name[nd->codec], rn,
                           (unsigned long long)i);
    for (uint64_t i = 0; i < n; i++) out[i] = (int64_t)PTR(i);   /* <= total < 2^63 */
#undef PTR
    return CZ_OK;
}

/* ---- node decoders ------------------------------------------------------------------------ */

static cz_status dec_affine(const cz_model *m, const cz_node *nd, const char *tensor, float *out,
                            char *err, size_t errlen) {
    cz_buf q = {0}, sc = {0}, zp = {0};
    float *scale = NULL;
    cz_status st = CZ_OK;
    TRY(st = cz_stream_read(m, nd->s[0], tensor, &q, err, errlen));
    TRY(st = cz_stream_read(m, nd->s[1], tensor, &sc, err, errlen));
    if (nd->s[2]) TRY(st = cz_stream_read(m, nd->s[2], tensor, &zp, err, errlen));
    scale = alloc_f32(m, sc.n);
    if (!scale) { st = oom(err, errlen); goto done; }
    buf_to_f32(&sc, scale);
    {
        int bits = (int)nd->p_bits, sg = nd->p_signed;
        int half = 1 << (bits - 1), full = 1 << bits;
        const uint8_t *qv = q.data, *zv = zp.data;
#define SEXT(v) ((sg && (int)(v) >= half) ? (int)(v) - full : (int)(v))
        if (nd->p_group >= 0) {
            uint64_t rows = (uint64_t)nd->rows, cols = (uint64_t)nd->cols, g = (uint64_t)nd->p_group;
            uint64_t ng = (cols + g - 1) / g;
            for (uint64_t r = 0; r < rows; r++)
                for (uint64_t gi = 0; gi < ng; gi++) {
                    uint64_t k = r * ng + gi;
                    float s = scale[k];
                    int z = zv ? SEXT(zv[k]) : 0;
                    uint64_t c1 = (gi + 1) * g < cols ? (gi + 1) * g : cols;
                    for (uint64_t c = gi * g; c < c1; c++) {
                        uint64_t i = r * cols + c;
                        out[i] = (float)(SEXT(qv[i]) - z) * s;
                    }
                }
        } else {
            uint64_t outer = 1, nch = 1, inner = nd->size;
            if (nd->p_axis >= 0) {
                outer = 1;
                for (int d = 0; d < nd->p_axis; d++) outer *= (uint64_t)nd->shape[d];
                nch = (uint64_t)nd->shape[nd->p_axis];
                inner = 1;
                for (int d = (int)nd->p_axis + 1; d < nd->ndim; d++) inner *= (uint64_t)nd->shape[d];
                if (nd->size == 0) outer = nch = inner = 0;
            }
            uint64_t i = 0;
            for (uint64_t o = 0; o < outer; o++)
                for (uint64_t c = 0; c < nch; c++) {
                    float s = scale[c];
                    int z = zv ? SEXT(zv[c]) : 0;
                    for (uint64_t j = 0; j < inner; j++, i++) out[i] = (float)(SEXT(qv[i]) - z) * s;
                }
        }
#undef SEXT
    }
done:
    cz_mem_free(&m->alloc, scale);
    cz_buf_free(m, &q);
    cz_buf_free(m, &sc);
    cz_buf_free(m, &zp);
    return st;
}

static cz_status dec_codebook(const cz_model *m, const cz_node *nd, const char *tensor, float *out,
                              char *err, size_t errlen) {
    cz_buf ib = {0}, cb = {0};
    float *cent = NULL;
    cz_status st = CZ_OK;
    TRY(st = cz_stream_read(m, nd->s[0], tensor, &ib, err, errlen));
    TRY(st = cz_stream_read(m, nd->s[1], tensor, &cb, err, errlen));
    cent = alloc_f32(m, cb.n);
    if (!cent) { st = oom(err, errlen); goto done; }
    buf_to_f32(&cb, cent);
    {
        uint64_t outer = 1, nch = 1, inner = nd->size, k = (uint64_t)nd->p_k;
        if (nd->p_axis >= 0) {
            for (int d = 0; d < nd->p_axis; d++) outer *= (uint64_t)nd->shape[d];
            nch = (uint64_t)nd->shape[nd->p_axis];
            inner = 1;
            for (int d = (int)nd->p_axis + 1; d < nd->ndim; d++) inner *= (uint64_t)nd->shape[d];
            if (nd->size == 0) outer = nch = inner = 0;
        }
        const uint8_t *idx = ib.data;
        uint64_t i = 0;
        for (uint64_t o = 0; o < outer; o++)
            for (uint64_t c = 0; c < nch; c++) {
                const float *base = cent + c * k;
                for (uint64_t j = 0; j < inner; j++, i++) {
                    if (idx[i] >= k) {
                        st = CORRUPT(nd, nd->s[0]->path, "codebook: index %u >= k=%llu at element %llu",
                                     idx[i], (unsigned long long)k, (unsigned long long)i);
                        goto done;
                    }
                    out[i] = base[idx[i]];
                }
            }
    }
done:
    cz_mem_free(&m->alloc, cent);
    cz_buf_free(m, &ib);
    cz_buf_free(m, &cb);
    return st;
}

static const char *const RELIDX_MSG[5] = {"", "a value lands past the end of the row",
                                          "a filler moves past the end of the row",
                                          "the row's gaps consume more values than val_ptr gives it",
                                          "the row's gaps consume fewer values than val_ptr gives it"};

/* Walk the gaps of every row (the relidx decode checks); writes values when out != NULL and
 * the absolute column of every value when col16 != NULL (indexed by the value index; the
 * caller guarantees cols <= 65536). Returns 0 or the failure code (1..4) with *bad_row set. */
int cz_relidx_walk(const uint8_t *gaps, const int64_t *gp, const int64_t *vp, int64_t rows,
                   int64_t cols, int gap_bits, const float *values, float *out, uint16_t *col16,
                   int64_t *bad_row) {
    int64_t fill = (1 << gap_bits) - 1;
    for (int64_t r = 0; r < rows; r++) {
        int64_t v = vp[r], v1 = vp[r + 1], p = 0;
        for (int64_t j = gp[r]; j < gp[r + 1]; j++) {
            int64_t g = gaps[j];
            if (g == fill) {
                p += fill;
                if (p > cols) { *bad_row = r; return 2; }
            } else {
                p += g;
                if (p >= cols) { *bad_row = r; return 1; }
                if (v >= v1) { *bad_row = r; return 3; }
                if (out) out[r * cols + p] = values[v];
                if (col16) col16[v] = (uint16_t)p;
                v++;
                p++;
            }
        }
        if (v != v1) { *bad_row = r; return 4; }
    }
    return 0;
}

static cz_status dec_relidx(const cz_model *m, const cz_node *nd, const char *tensor, float *out,
                            char *err, size_t errlen) {
    cz_buf g = {0}, gpb = {0}, vpb = {0};
    int64_t *gp = NULL, *vp = NULL;
    float *vals = NULL;
    cz_status st = CZ_OK;
    uint64_t nnz = (uint64_t)nd->c[0]->shape[0];
    TRY(st = cz_stream_read(m, nd->s[0], tensor, &g, err, errlen));
    gp = cz_mem_alloc(&m->alloc, (size_t)(nd->rows + 1) * 8, 64);
    vp = cz_mem_alloc(&m->alloc, (size_t)(nd->rows + 1) * 8, 64);
    if (!gp || !vp) { st = oom(err, errlen); goto done; }
    TRY(st = cz_stream_read(m, nd->s[1], tensor, &gpb, err, errlen));
    TRY(st = check_ptrs(nd, tensor, 1, &gpb, g.n, gp, err, errlen));
    TRY(st = cz_stream_read(m, nd->s[2], tensor, &vpb, err, errlen));
    TRY(st = check_ptrs(nd, tensor, 2, &vpb, nnz, vp, err, errlen));
    TRY(st = cz_node_decode_f32(m, nd->c[0], tensor, &vals, err, errlen));
    memset(out, 0, (size_t)nd->size * 4);
    int64_t bad = -1;
    int code = cz_relidx_walk(g.data, gp, vp, nd->rows, nd->cols, (int)nd->p_gap_bits, vals, out, NULL,
                              &bad);
    if (code) st = CORRUPT(nd, nd->s[0]->path, "relidx: row %lld: %s", (long long)bad, RELIDX_MSG[code]);
done:
    cz_mem_free(&m->alloc, gp);
    cz_mem_free(&m->alloc, vp);
    cz_mem_free(&m->alloc, vals);
    cz_buf_free(m, &g);
    cz_buf_free(m, &gpb);
    cz_buf_free(m, &vpb);
    return st;
}

static cz_status dec_nm(const cz_model *m, const cz_node *nd, const char *tensor, float *out,
                        char *err, size_t errlen) {
    cz_buf pb = {0};
    float *vals = NULL;
    cz_status st = CZ_OK;
    uint64_t n = (uint64_t)nd->p_n, mm = (uint64_t)nd->p_m, groups = nd->size / mm;
    TRY(st = cz_stream_read(m, nd->s[0], tensor, &pb, err, errlen));
    TRY(st = cz_node_decode_f32(m, nd->c[0], tensor, &vals, err, errlen));
    memset(out, 0, (size_t)nd->size * 4);
    const uint8_t *pos = pb.data;
    for (uint64_t gi = 0; gi < groups; gi++) {
        int64_t prev = -1;
        for (uint64_t j = 0; j < n; j++) {
            int64_t p = pos[gi * n + j];
            if (p <= prev || (uint64_t)p >= mm) {
                st = CORRUPT(nd, nd->s[0]->path,
                             "nm: group %llu: positions are not strictly increasing or not below m=%llu",
                             (unsigned long long)gi, (unsigned long long)mm);
                goto done;
            }
            out[gi * mm + (uint64_t)p] = vals[gi * n + j];
            prev = p;
        }
    }
done:
    cz_mem_free(&m->alloc, vals);
    cz_buf_free(m, &pb);
    return st;
}

static cz_status dec_block(const cz_model *m, const cz_node *nd, const char *tensor, float *out,
                           char *err, size_t errlen) {
    cz_buf mb = {0};
    float *vals = NULL;
    cz_status st = CZ_OK;
    uint64_t bh = (uint64_t)nd->p_bh, bw = (uint64_t)nd->p_bw, cols = (uint64_t)nd->cols;
    uint64_t nbr = (uint64_t)nd->rows / bh, nbc = cols / bw;
    TRY(st = cz_stream_read(m, nd->s[0], tensor, &mb, err, errlen));
    const uint8_t *mask = mb.data;
    uint64_t kept = 0;
    for (uint64_t i = 0; i < mb.n; i++) {
        if (mask[i] > 1) { st = CORRUPT(nd, nd->s[0]->path, "block: mask symbol is not 0 or 1"); goto done; }
        kept += mask[i];
    }
    uint64_t nv = (uint64_t)nd->c[0]->shape[0];
    if (kept * bh * bw != nv) {   /* kept <= nblocks, kept*bh*bw <= rows*cols: no overflow */
        st = CORRUPT(nd, nd->s[0]->path, "block: mask keeps %llu blocks but child 'values' holds %llu entries",
                     (unsigned long long)kept, (unsigned long long)nv);
        goto done;
    }
    TRY(st = cz_node_decode_f32(m, nd->c[0], tensor, &vals, err, errlen));
    memset(out, 0, (size_t)nd->size * 4);
    uint64_t v = 0;
    for (uint64_t br = 0; br < nbr; br++)
        for (uint64_t bc = 0; bc < nbc; bc++)
            if (mask[br * nbc + bc])
                for (uint64_t i = 0; i < bh; i++) {
                    float *o = out + (br * bh + i) * cols + bc * bw;
                    memcpy(o, vals + v, (size_t)bw * 4);
                    v += bw;
                }
done:
    cz_mem_free(&m->alloc, vals);
    cz_buf_free(m, &mb);
    return st;
}

/* C[M,N] = A[M,K] B[K,N], float32 accumulation, i-k-j order */
static void matmul(const float *A, const float *B, float *C, uint64_t M, uint64_t K, uint64_t N) {
    memset(C, 0, (size_t)(M * N) * 4);
    for (uint64_t i = 0; i < M; i++)
        for (uint64_t k = 0; k < K; k++) {
            float a = A[i * K + k];
            const float *b = B + k * N;
            float *c = C + i * N;
            for (uint64_t j = 0; j < N; j++) c[j] += a * b[j];
        }
}

static cz_status dec_svd(const cz_model *m, const cz_node *nd, const char *tensor, float *out,
                         char *err, size_t errlen) {
    float *u = NULL, *v = NULL;
    cz_status st = CZ_OK;
    TRY(st = cz_node_decode_f32(m, nd->c[0], tensor, &u, err, errlen));
    TRY(st = cz_node_decode_f32(m, nd->c[1], tensor, &v, err, errlen));
    matmul(u, v, out, (uint64_t)nd->rows, (uint64_t)nd->c[0]->shape[1], (uint64_t)nd->cols);
done:
    cz_mem_free(&m->alloc, u);
    cz_mem_free(&m->alloc, v);
    return st;
}

static cz_status dec_tucker2(const cz_model *m, const cz_node *nd, const char *tensor, float *out,
                             char *err, size_t errlen) {
    float *first = NULL, *core = NULL, *last = NULL, *t = NULL, *w = NULL, *t2 = NULL;
    cz_status st = CZ_OK;
    uint64_t O = (uint64_t)nd->shape[0], I = (uint64_t)nd->shape[1], kh = (uint64_t)nd->shape[2],
             kw = (uint64_t)nd->shape[3];
    uint64_t r_out = (uint64_t)nd->c[1]->shape[0], r_in = (uint64_t)nd->c[1]->shape[1], hw = kh * kw;
    TRY(st = cz_node_decode_f32(m, nd->c[0], tensor, &first, err, errlen));
    TRY(st = cz_node_decode_f32(m, nd->c[1], tensor, &core, err, errlen));
    TRY(st = cz_node_decode_f32(m, nd->c[2], tensor, &last, err, errlen));
    /* sizes: every factor is <= 2^44 elements; products below are checked */
    uint64_t size_a, size_b, tmp;
    if (!cz_mul_ok(r_out, hw, &tmp) || !cz_mul_ok(tmp, I, &size_a)) size_a = UINT64_MAX;
    if (!cz_mul_ok(O, r_in, &tmp) || !cz_mul_ok(tmp, hw, &size_b)) size_b = UINT64_MAX;
    uint64_t small = size_a < size_b ? size_a : size_b;
    if (small > m->max_tensor_bytes / 4) {
        st = cz_fail_at(err, errlen, CZ_ERR_LIMIT, tensor, nd->where, -1,
                        "tucker2: intermediate exceeds the cap of %llu bytes",
                        (unsigned long long)m->max_tensor_bytes);
        goto done;
    }
    w = alloc_f32(m, nd->size);   /* [O, kh, kw, I] */
    if (!w) { st = oom(err, errlen); goto done; }
    if (size_a <= size_b) {
        /* t[a, hw, i] = sum_b core[a, b, hw] * first[b, i] */
        t = alloc_f32(m, size_a);
        float *ct = alloc_f32(m, r_out * hw * r_in);   /* core transposed to [a, hw, b] */
        if (!t || !ct) { cz_mem_free(&m->alloc, ct); st = oom(err, errlen); goto done; }
        for (uint64_t a = 0; a < r_out; a++)
            for (uint64_t b = 0; b < r_in; b++)
                for (uint64_t q = 0; q < hw; q++) ct[(a * hw + q) * r_in + b] = core[(a * r_in + b) * hw + q];
        matmul(ct, first, t, r_out * hw, r_in, I);
        cz_mem_free(&m->alloc, ct);
        matmul(last, t, w, O, r_out, hw * I);
    } else {
        /* t[o, b, hw] = sum_a last[o, a] * core[a, b, hw]; w[o, hw, i] = sum_b t[o, hw, b] first[b, i] */
        t = alloc_f32(m, size_b);
        t2 = alloc_f32(m, size_b);
        if (!t || !t2) { st = oom(err, errlen); goto done; }
        matmul(last, core, t, O, r_out, r_in * hw);
        for (uint64_t o = 0; o < O; o++)
            for (uint64_t b = 0; b < r_in; b++)
                for (uint64_t q = 0; q < hw; q++) t2[(o * hw + q) * r_in + b] = t[(o * r_in + b) * hw + q];
        matmul(t2, first, w, O * hw, r_in, I);
    }
    /* [O, hw, I] -> [O, I, hw] */
    for (uint64_t o = 0; o < O; o++)
        for (uint64_t q = 0; q < hw; q++)
            for (uint64_t i = 0; i < I; i++) out[(o * I + i) * hw + q] = w[(o * hw + q) * I + i];
done:
    cz_mem_free(&m->alloc, first);
    cz_mem_free(&m->alloc, core);
    cz_mem_free(&m->alloc, last);
    cz_mem_free(&m->alloc, t);
    cz_mem_free(&m->alloc, t2);
    cz_mem_free(&m->alloc, w);
    return st;
}

static cz_status dec_sum(const cz_model *m, const cz_node *nd, const char *tensor, float *out,
                         char *err, size_t errlen) {
    float *t = NULL;
    cz_status st = CZ_OK;
    for (int c = 0; c < nd->nchild; c++) {
        TRY(st = cz_node_decode_f32(m, nd->c[c], tensor, &t, err, errlen));
        if (c == 0) memcpy(out, t, (size_t)nd->size * 4);
        else
            for (uint64_t i = 0; i < nd->size; i++) out[i] += t[i];
        cz_mem_free(&m->alloc, t);
        t = NULL;
    }
done:
    cz_mem_free(&m->alloc, t);
    return st;
}

static cz_status node_cap(const cz_model *m, const cz_node *nd, const char *tensor, char *err,
                          size_t errlen) {
    if (nd->size > m->max_tensor_bytes / 4)
        return cz_fail_at(err, errlen, CZ_ERR_LIMIT, tensor, nd->where, -1,
                          "decoding node '%s' needs %llu bytes, over the cap of %llu (raise max_tensor_bytes to allow)",
                          cz_codec_name[nd->codec], (unsigned long long)nd->size * 4,
                          (unsigned long long)m->max_tensor_bytes);
    return CZ_OK;
}

cz_status cz_node_decode_f32(const cz_model *m, const cz_node *nd, const char *tensor,
                             float **outp, char *err, size_t errlen) {
    *outp = NULL;
    cz_status st = node_cap(m, nd, tensor, err, errlen);
    if (st) return st;
    float *out = alloc_f32(m, nd->size);
    if (!out) return oom(err, errlen);
    switch (nd->codec) {
    case CZ_CODEC_DENSE: {
        cz_buf b;
        st = cz_stream_read(m, nd->s[0], tensor, &b, err, errlen);
        if (!st) {
            buf_to_f32(&b, out);
            cz_buf_free(m, &b);
        }
        break;
    }
    case CZ_CODEC_AFFINE: st = dec_affine(m, nd, tensor, out, err, errlen); break;
    case CZ_CODEC_CODEBOOK: st = dec_codebook(m, nd, tensor, out, err, errlen); break;
    case CZ_CODEC_RELIDX: st = dec_relidx(m, nd, tensor, out, err, errlen); break;
    case CZ_CODEC_NM: st = dec_nm(m, nd, tensor, out, err, errlen); break;
    case CZ_CODEC_BLOCK: st = dec_block(m, nd, tensor, out, err, errlen); break;
    case CZ_CODEC_SVD: st = dec_svd(m, nd, tensor, out, err, errlen); break;
    case CZ_CODEC_TUCKER2: st = dec_tucker2(m, nd, tensor, out, err, errlen); break;
    case CZ_CODEC_SUM: st = dec_sum(m, nd, tensor, out, err, errlen); break;
    default: st = cz_fail(err, errlen, CZ_ERR_UNSUPPORTED, "unknown codec"); break;
    }
    if (st) {
        cz_mem_free(&m->alloc, out);
        return st;
    }
    *outp = out;
    return CZ_OK;
}

/* ---- conversion to the tensor dtype (numpy astype semantics, x86 for float->int) ------- */

typedef enum { K_SINT, K_UINT, K_FLT } vkind;
typedef struct { vkind k; int64_t i; uint64_t u; double d; float f; int is_f32; } sval;

static sval read_val(cz_sdtype dt, const void *p, uint64_t i) {
    sval v = {K_SINT, 0, 0, 0.0, 0.0f, 0};
    switch (dt) {
    case CZ_S_U8: v.k = K_UINT; v.u = ((const uint8_t *)p)[i]; break;
    case CZ_S_I8: v.i = ((const int8_t *)p)[i]; break;
    case CZ_S_U16: v.k = K_UINT; v.u = ((const uint16_t *)p)[i]; break;
    case CZ_S_I16: v.i = ((const int16_t *)p)[i]; break;
    case CZ_S_U32: v.k = K_UINT; v.u = ((const uint32_t *)p)[i]; break;
    case CZ_S_I32: v.i = ((const int32_t *)p)[i]; break;
    case CZ_S_U64: v.k = K_UINT; v.u = ((const uint64_t *)p)[i]; break;
    case CZ_S_I64: v.i = ((const int64_t *)p)[i]; break;
    case CZ_S_F16: v.k = K_FLT; v.d = cz_half_to_float(((const uint16_t *)p)[i]); break;
    case CZ_S_BF16: v.k = K_FLT; v.d = cz_bf16_to_float(((const uint16_t *)p)[i]); break;
    case CZ_S_F32: v.k = K_FLT; v.d = ((const float *)p)[i]; v.f = ((const float *)p)[i]; v.is_f32 = 1; break;
    case CZ_S_F64: v.k = K_FLT; v.d = ((const double *)p)[i]; break;
    default: break;
    }
    return v;
}

static int64_t f2i64(double d) {   /* cvttsd2si: out of range / NaN -> INT64_MIN */
    if (!(d > -9223372036854775808.0 - 1.0 && d < 9223372036854775808.0)) return INT64_MIN;
    return (int64_t)d;
}
static int32_t f2i32(double d) {
    if (!(d > -2147483649.0 && d < 2147483648.0)) return INT32_MIN;
    return (int32_t)d;
}

static void write_val(cz_dtype dt, void *p, uint64_t i, sval v) {
    switch (dt) {
    case CZ_F64:
        ((double *)p)[i] = v.k == K_FLT ? v.d : v.k == K_SINT ? (double)v.i : (double)v.u;
        break;
    case CZ_F32:
        ((float *)p)[i] = v.k == K_FLT ? (float)v.d : v.k == K_SINT ? (float)v.i : (float)v.u;
        break;
    case CZ_F16:
        ((uint16_t *)p)[i] = cz_float_to_half(v.k == K_FLT ? v.d
                                              : v.k == K_SINT ? (double)(float)v.i : (double)(float)v.u);
        break;
    case CZ_BOOL:
        ((uint8_t *)p)[i] = v.k == K_FLT ? (v.d != 0.0 || v.d != v.d) : v.k == K_SINT ? v.i != 0 : v.u != 0;
        break;
    default: {
        /* integers: int sources wrap (two's complement); float sources truncate like x86 */
        uint64_t u;
        if (v.k == K_SINT) u = (uint64_t)v.i;
        else if (v.k == K_UINT) u = v.u;
        else if (dt == CZ_I64 || dt == CZ_U32) u = (uint64_t)f2i64(v.d);
        else u = (uint64_t)(int64_t)f2i32(v.d);
        switch (dt) {
        case CZ_I64: ((int64_t *)p)[i] = (int64_t)u; break;
        case CZ_I32: ((int32_t *)p)[i] = (int32_t)(uint32_t)u; break;
        case CZ_U32: ((uint32_t *)p)[i] = (uint32_t)u; break;
        case CZ_I16: ((int16_t *)p)[i] = (int16_t)(uint16_t)u; break;
        case CZ_U16: ((uint16_t *)p)[i] = (uint16_t)u; break;
        case CZ_I8: ((int8_t *)p)[i] = (int8_t)(uint8_t)u; break;
        case CZ_U8: ((uint8_t *)p)[i] = (uint8_t)u; break;
        default: break;
        }
    }
    }
}

static int same_repr(cz_sdtype s, cz_dtype t) {
    return (s == CZ_S_F32 && t == CZ_F32) || (s == CZ_S_F64 && t == CZ_F64) ||
           (s == CZ_S_F16 && t == CZ_F16) || (s == CZ_S_I64 && t == CZ_I64) ||
           (s == CZ_S_I32 && t == CZ_I32) || (s == CZ_S_I16 && t == CZ_I16) ||
           (s == CZ_S_I8 && t == CZ_I8) || (s == CZ_S_U8 && t == CZ_U8) ||
           (s == CZ_S_U16 && t == CZ_U16) || (s == CZ_S_U32 && t == CZ_U32);
}

cz_status cz_tensor_decode(const cz_model *m, int index, void *out, char *err, size_t errlen) {
    const cz_tensor_entry *e = &m->tensors[index];
    size_t isz = cz_dtype_size(e->dtype);
    uint64_t want;
    if (!cz_mul_ok(e->numel, isz < 4 ? 4 : isz, &want) || want > m->max_tensor_bytes)
        return cz_fail_at(err, errlen, CZ_ERR_LIMIT, e->name, NULL, -1,
                          "tensor needs %llu bytes, over the cap of %llu",
                          (unsigned long long)e->numel * (isz < 4 ? 4 : isz),
                          (unsigned long long)m->max_tensor_bytes);
    const cz_node *nd = e->enc;
    if (nd->codec == CZ_CODEC_DENSE) {
        cz_status st = node_cap(m, nd, e->name, err, errlen);
        if (st) return st;
        cz_buf b;
        st = cz_stream_read(m, nd->s[0], e->name, &b, err, errlen);
        if (st) return st;
        if (same_repr(b.dtype, e->dtype)) memcpy(out, b.data, (size_t)b.n * isz);
        else if (b.dtype == CZ_S_BF16) {
            for (uint64_t i = 0; i < b.n; i++) {
                float f = cz_bf16_to_float(((const uint16_t *)b.data)[i]);
                write_val(e->dtype, out, i, read_val(CZ_S_F32, &f, 0));
            }
        } else {
            for (uint64_t i = 0; i < b.n; i++) write_val(e->dtype, out, i, read_val(b.dtype, b.data, i));
        }
        cz_buf_free(m, &b);
        return CZ_OK;
    }
    float *f;
    cz_status st = cz_node_decode_f32(m, nd, e->name, &f, err, errlen);
    if (st) return st;
    if (e->dtype == CZ_F32) memcpy(out, f, (size_t)e->numel * 4);
    else
        for (uint64_t i = 0; i < e->numel; i++) write_val(e->dtype, out, i, read_val(CZ_S_F32, f, i));
    cz_mem_free(&m->alloc, f);
    return CZ_OK;
}
