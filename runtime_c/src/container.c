/* container.c -- preamble, header CRC, header/section-table/tensor/encoding-tree
 * validation, exactly as czmodel/format/{preamble,header,reader}.py enforce them.
 *
 * Error classes: FormatError -> CZ_ERR_FORMAT, CorruptionError -> CZ_ERR_CORRUPT (header
 * checksum -> CZ_ERR_CHECKSUM), UnsupportedError -> CZ_ERR_UNSUPPORTED,
 * LimitError -> CZ_ERR_LIMIT. Checks run in the Python reader's order, so a file with one
 * fault gets the same class as in Python.
 */
#include <stdio.h>
#include <string.h>

#include "cz_model.h"
#include "crc32_tab.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the czmodel C runtime assumes a little-endian host"
#endif

#define PREAMBLE 24u
#define CRC_OFFSET 16u     /* header_crc32 ... */
#define CRC_COVERED 16u    /* ... covers preamble bytes [0, 16), then the header bytes */
#define ALIGN 64u
#define MAX_HEADER_BYTES (64u << 20)
#define MAX_DIM (1ull << 40)
#define MAX_ELEMENTS (1ull << 44)
#define MAX_TREE_DEPTH 8
#define MAX_TENSORS (1 << 20)
#define MAX_SECTIONS (1u << 22)
#define ZSTD_MAX_RATIO (1ull << 15)
#define MAX_STREAM_ELEMENTS (1ull << 34)
#define PLAIN_MAX_DEPTH 32
#define GRAPH_OPSET_MAX 1

static const uint8_t MAGIC[8] = {0x89, 'C', 'Z', 'M', '\r', '\n', 0x1a, '\n'};

const uint8_t cz_sdtype_size[CZ_S_COUNT] = {1, 1, 2, 2, 4, 4, 8, 8, 2, 2, 4, 8};
const char *const cz_sdtype_name[CZ_S_COUNT] = {"u8", "i8", "u16", "i16", "u32", "i32",
                                                "u64", "i64", "f16", "bf16", "f32", "f64"};
const char *const cz_codec_name[CZ_CODEC_COUNT] = {"dense", "affine", "codebook", "relidx",
                                                   "nm", "block", "svd", "tucker2", "sum"};

/* ---- CRC-32 (slice-by-8) -------------------------------------------------------------- */

uint32_t cz_crc32(uint32_t crc, const void *data, size_t len) {
    const uint8_t *p = data;
    crc = ~crc;
    while (len && ((uintptr_t)p & 7)) {
        crc = cz_crc_tab[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
        len--;
    }
    while (len >= 8) {
        uint32_t a, b;
        memcpy(&a, p, 4);
        memcpy(&b, p + 4, 4);
        a ^= crc;
        crc = cz_crc_tab[7][a & 0xFF] ^ cz_crc_tab[6][(a >> 8) & 0xFF] ^
              cz_crc_tab[5][(a >> 16) & 0xFF] ^ cz_crc_tab[4][a >> 24] ^
              cz_crc_tab[3][b & 0xFF] ^ cz_crc_tab[2][(b >> 8) & 0xFF] ^
              cz_crc_tab[1][(b >> 16) & 0xFF] ^ cz_crc_tab[0][b >> 24];
        p += 8;
        len -= 8;
    }
    while (len--) crc = cz_crc_tab[0][(crc ^ *p++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* ---- messages ------------------------------------------------------------------------- */

cz_status cz_fail_at(char *err, size_t errlen, cz_status st, const char *tensor,
                     const char *path, int64_t offset, const char *fmt, ...) {
    if (!err || !errlen) return st;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    int r = vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (r < 0) msg[0] = '\0';
    char where[384];
    size_t w = 0;
    where[0] = '\0';
    if (tensor) w += (size_t)snprintf(where + w, sizeof where - w, "tensor '%.200s'", tensor);
    if (path && w < sizeof where)
        w += (size_t)snprintf(where + w, sizeof where - w, "%sstream '%.100s'", w ? ", " : "", path);
    if (offset >= 0 && w < sizeof where)
        w += (size_t)snprintf(where + w, sizeof where - w, "%soffset %lld", w ? ", " : "",
                              (long long)offset);
    if (w) snprintf(err, errlen, "%s (%s)", msg, where);
    else snprintf(err, errlen, "%s", msg);
    return st;
}

#define FAIL(st, tensor, path, off, ...) cz_fail_at(err, errlen, (st), (tensor), (path), (off), __VA_ARGS__)
#define FMT CZ_ERR_FORMAT
#define COR CZ_ERR_CORRUPT
#define UNS CZ_ERR_UNSUPPORTED
#define LIM CZ_ERR_LIMIT
#define OOM() cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory while opening")

/* ---- small helpers -------------------------------------------------------------------- */

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }
static uint64_t align_up(uint64_t x) { return (x + ALIGN - 1) / ALIGN * ALIGN; }

static int is_int(const cz_mp *v) { return v && v->type == CZ_MP_INT; }

/* keys of a map are exactly `keys` (n of them) */
static int keys_exact(const cz_mp *m, const char *const *keys, int n) {
    if (!m || m->type != CZ_MP_MAP || m->len != (uint32_t)n) return 0;
    for (int i = 0; i < n; i++)
        if (!cz_mp_get(m, keys[i])) return 0;
    return 1;   /* keys are unique (msgpack layer), so equal counts + all present == equal sets */
}

static int key_in(const cz_mp *k, const char *const *keys, int n) {
    for (int i = 0; i < n; i++)
        if (cz_mp_streq(k, keys[i])) return i;
    return -1;
}

/* Plain data: depth <= 32 (map keys are already str, no ext types at all). */
static int plain_ok(const cz_mp *v, int depth) {
    if (depth > PLAIN_MAX_DEPTH) return 0;
    if (v->type == CZ_MP_ARRAY) {
        for (uint32_t i = 0; i < v->len; i++)
            if (!plain_ok(&v->v.items[i], depth + 1)) return 0;
    } else if (v->type == CZ_MP_MAP) {
        for (uint32_t i = 0; i < v->len; i++)
            if (!plain_ok(&v->v.items[2 * i + 1], depth + 1)) return 0;
    }
    return 1;
}

static char *arena_strdup_path(cz_arena *ar, const char *prefix, const char *role) {
    size_t a = strlen(prefix), b = strlen(role);
    char *s = cz_arena_alloc(ar, a + b + 2, 1);
    if (!s) return NULL;
    if (a) {
        memcpy(s, prefix, a);
        s[a] = '/';
        memcpy(s + a + 1, role, b + 1);
    } else {
        memcpy(s, role, b + 1);   /* "/role".lstrip("/") */
    }
    /* Python: f"{path}/{role}".lstrip("/") -- a role starting with '/' loses it too */
    while (*s == '/') s++;
    return s;
}

/* ---- parse context ---------------------------------------------------------------------- */

typedef struct {
    cz_model *m;
    char *err;
    size_t errlen;
    uint32_t *used;               /* references per section */
} pctx;

static cz_status parse_shape(pctx *c, const cz_mp *v, const char *where, const char *tensor,
                             int *ndim, int64_t *shape, uint64_t *size) {
    char *err = c->err;
    size_t errlen = c->errlen;
    if (!v || v->type != CZ_MP_ARRAY || v->len > CZ_MAX_NDIM)
        return FAIL(FMT, tensor, NULL, -1, "%s: shape must be a list of at most %d dims", where,
                    CZ_MAX_NDIM);
    int zero = 0, over = 0;
    uint64_t prod = 1;
    for (uint32_t i = 0; i < v->len; i++) {
        const cz_mp *d = &v->v.items[i];
        if (!is_int(d) || d->v.i < 0)
            return FAIL(FMT, tensor, NULL, -1, "%s: shape has a non-integer or negative dim", where);
        if ((uint64_t)d->v.i > MAX_DIM)
            return FAIL(LIM, tensor, NULL, -1, "%s: dim %lld exceeds %llu", where,
                        (long long)d->v.i, (unsigned long long)MAX_DIM);
        shape[i] = d->v.i;
        if (d->v.i == 0) zero = 1;
        else if (!over && !cz_mul_ok(prod, (uint64_t)d->v.i, &prod)) over = 1;
    }
    if (zero) prod = 0;
    else if (over || prod > MAX_ELEMENTS)
        return FAIL(LIM, tensor, NULL, -1, "%s: elements exceed %llu", where,
                    (unsigned long long)MAX_ELEMENTS);
    *ndim = (int)v->len;
    *size = prod;
    return CZ_OK;
}

/* ---- stream descriptors ----------------------------------------------------------------- */

static const char *const STREAM_KEYS[5] = {"sec", "entropy", "dtype", "bits", "n"};
static const char *const STAGE_NAMES[3] = {"raw", "huffman", "zstd"};

static cz_status parse_stream(pctx *c, const cz_mp *v, const char *path, const char *tensor,
                              cz_stream_desc *sd) {
    char *err = c->err;
    size_t errlen = c->errlen;
    cz_model *m = c->m;
    if (!keys_exact(v, STREAM_KEYS, 5))
        return FAIL(FMT, tensor, path, -1,
                    "stream must be a map with keys ['bits', 'dtype', 'entropy', 'n', 'sec']");
    const cz_mp *sec = cz_mp_get(v, "sec"), *ent = cz_mp_get(v, "entropy"),
                *dt = cz_mp_get(v, "dtype"), *bits = cz_mp_get(v, "bits"), *n = cz_mp_get(v, "n");
    if (!is_int(sec) || sec->v.i < 0 || (uint64_t)sec->v.i >= m->nsections)
        return FAIL(FMT, tensor, path, -1, "stream section index is not in the section table");
    int e = ent->type == CZ_MP_STR ? key_in(ent, STAGE_NAMES, 3) : -1;
    if (e < 0)
        return FAIL(UNS, tensor, path, -1, "unknown entropy stage '%.40s' (known: ['raw', 'huffman', 'zstd'])",
                    ent->type == CZ_MP_STR ? ent->v.s : "?");
    int d = dt->type == CZ_MP_STR ? key_in(dt, cz_sdtype_name, CZ_S_COUNT) : -1;
    if (d < 0)
        return FAIL(UNS, tensor, path, -1, "unknown stream dtype '%.40s'",
                    dt->type == CZ_MP_STR ? dt->v.s : "?");
    if (bits->type != CZ_MP_NIL &&
        (!is_int(bits) || bits->v.i < 1 || bits->v.i > 8 || d != CZ_S_U8))
        return FAIL(FMT, tensor, path, -1, "stream bits invalid (1..8, only for dtype u8)");
    if (!is_int(n) || n->v.i < 0)
        return FAIL(FMT, tensor, path, -1, "stream element count is not a non-negative integer");
    uint64_t cnt = (uint64_t)n->v.i;
    if (cnt > MAX_STREAM_ELEMENTS)
        return FAIL(LIM, tensor, path, -1, "stream element count %llu exceeds %llu",
                    (unsigned long long)cnt, (unsigned long long)MAX_STREAM_ELEMENTS);
    if (e == CZ_ENT_HUFFMAN && d != CZ_S_U8)
        return FAIL(UNS, tensor, path, -1, "entropy stage 'huffman' is not defined for dtype '%s'",
                    cz_sdtype_name[d]);
    const cz_section *s = &m->sections[sec->v.i];
    int b = bits->type == CZ_MP_NIL ? 0 : (int)bits->v.i;
    uint64_t raw = b ? (cnt * (uint64_t)b + 7) / 8 : cnt * cz_sdtype_size[d];   /* cnt <= 2^34 */
    if (e == CZ_ENT_RAW && raw != s->len)
        return FAIL(COR, tensor, path, (int64_t)s->off,
                    "raw stream of %llu elements needs %llu bytes, section has %llu",
                    (unsigned long long)cnt, (unsigned long long)raw, (unsigned long long)s->len);
    /* raw > len * 2^15  <=>  ceil(raw / 2^15) > len (no overflow) */
    if (e == CZ_ENT_ZSTD && (raw + ZSTD_MAX_RATIO - 1) / ZSTD_MAX_RATIO > s->len)
        return FAIL(LIM, tensor, path, (int64_t)s->off,
                    "zstd stream claims %llu bytes from %llu: impossible ratio",
                    (unsigned long long)raw, (unsigned long long)s->len);
    if (e == CZ_ENT_HUFFMAN && (cnt + 7) / 8 > s->len)
        return FAIL(LIM, tensor, path, (int64_t)s->off, "huffman stream claims %llu symbols from %llu bytes",
                    (unsigned long long)cnt, (unsigned long long)s->len);
    sd->sec = (uint32_t)sec->v.i;
    sd->entropy = (cz_entropy)e;
    sd->dtype = (cz_sdtype)d;
    sd->bits = b;
    sd->n = cnt;
    sd->raw_size = raw;
    sd->path = path;
    return CZ_OK;
}

/* ---- encoding nodes --------------------------------------------------------------------- */

typedef struct {
    const char *roles[3];
    uint8_t dtypes[3][CZ_S_COUNT];  /* allowed stream dtypes, 1 = allowed */
    uint8_t required[3];
    uint8_t symbols[3];
    int nroles;
    const char *children[3];
    int nchildren;                  /* -1: variadic */
    const char *params[4];
    int nparams;
    int min_ndim;
} codec_spec;

/* allowed-dtype sets */
#define ALL_DENSE {1,1,1,1,1,1,0,1,1,1,1,1}
#define ONLY_U8 {[CZ_S_U8] = 1}
#define F32_F16 {[CZ_S_F32] = 1, [CZ_S_F16] = 1}
#define U32_U64 {[CZ_S_U32] = 1, [CZ_S_U64] = 1}
static const codec_spec SPECS[CZ_CODEC_COUNT] = {
    [CZ_CODEC_DENSE] = {.roles = {"data"}, .dtypes = {ALL_DENSE}, .required = {1}, .nroles = 1},
    [CZ_CODEC_AFFINE] = {.roles = {"q", "scale", "zero_point"},
                         .dtypes = {ONLY_U8, F32_F16, ONLY_U8}, .required = {1, 1, 0},
                         .symbols = {1, 0, 1}, .nroles = 3,
                         .params = {"bits", "signed", "axis", "group_size"}, .nparams = 4},
    [CZ_CODEC_CODEBOOK] = {.roles = {"indices", "centroids"}, .dtypes = {ONLY_U8, F32_F16},
                           .required = {1, 1}, .symbols = {1, 0}, .nroles = 2,
                           .params = {"k", "axis"}, .nparams = 2},
    [CZ_CODEC_RELIDX] = {.roles = {"gaps", "gap_ptr", "val_ptr"},
                         .dtypes = {ONLY_U8, U32_U64, U32_U64}, .required = {1, 1, 1},
                         .symbols = {1, 0, 0}, .nroles = 3, .children = {"values"},
                         .nchildren = 1, .params = {"gap_bits"}, .nparams = 1, .min_ndim = 1},
    [CZ_CODEC_NM] = {.roles = {"positions"}, .dtypes = {ONLY_U8}, .required = {1},
                     .symbols = {1}, .nroles = 1, .children = {"values"}, .nchildren = 1,
                     .params = {"n", "m"}, .nparams = 2},
    [CZ_CODEC_BLOCK] = {.roles = {"mask"}, .dtypes = {ONLY_U8}, .required = {1},
                        .symbols = {1}, .nroles = 1, .children = {"values"}, .nchildren = 1,
                        .params = {"bh", "bw"}, .nparams = 2},
    [CZ_CODEC_SVD] = {.children = {"u", "v"}, .nchildren = 2},
    [CZ_CODEC_TUCKER2] = {.children = {"first", "core", "last"}, .nchildren = 3, .min_ndim = 4},
    [CZ_CODEC_SUM] = {.nchildren = -1},
};

static const char *const NODE_KEYS[5] = {"codec", "shape", "params", "streams", "children"};

/* param_int: -1 when absent/nil and optional; error otherwise */
static cz_status param_int(pctx *c, const cz_node *nd, const char *tensor, const char *key,
                           int64_t lo, int64_t hi, int optional, int64_t *out) {
    char *err = c->err;
    size_t errlen = c->errlen;
    const cz_mp *v = cz_mp_get(nd->params, key);
    if (!v || v->type == CZ_MP_NIL) {
        if (optional) { *out = -1; return CZ_OK; }
        return FAIL(FMT, tensor, nd->where, -1, "%s: missing param '%s'", cz_codec_name[nd->codec], key);
    }
    if (!is_int(v) || v->v.i < lo || v->v.i > hi)
        return FAIL(FMT, tensor, nd->where, -1, "%s: param '%s' must be an integer in [%lld, %lld]",
                    cz_codec_name[nd->codec], key, (long long)lo, (long long)hi);
    *out = v->v.i;
    return CZ_OK;
}

static cz_status expect_n(pctx *c, const cz_node *nd, const char *tensor, int role, uint64_t n) {
    char *err = c->err;
    size_t errlen = c->errlen;
    const cz_stream_desc *s = nd->s[role];
    if (s->n != n)
        return FAIL(COR, tensor, s->path, -1, "%s: stream '%s' holds %llu elements, expected %llu",
                    cz_codec_name[nd->codec], SPECS[nd->codec].roles[role],
                    (unsigned long long)s->n, (unsigned long long)n);
    return CZ_OK;
}

static cz_status expect_bits(pctx *c, const cz_node *nd, const char *tensor, int role, int bits) {
    char *err = c->err;
    size_t errlen = c->errlen;
    const cz_stream_desc *s = nd->s[role];
    if (s->bits != bits)
        return FAIL(FMT, tensor, s->path, -1, "%s: stream '%s' has bits=%d, expected %d",
                    cz_codec_name[nd->codec], SPECS[nd->codec].roles[role], s->bits, bits);
    return CZ_OK;
}

static cz_status child_1d(pctx *c, const cz_node *nd, const char *tensor, int role, uint64_t *len) {
    char *err = c->err;
    size_t errlen = c->errlen;
    const cz_node *ch = nd->c[role];
    if (ch->ndim != 1)
        return FAIL(COR, tensor, ch->where, -1, "%s: child has %d dims, expected a 1-D shape",
                    cz_codec_name[nd->codec], ch->ndim);
    *len = (uint64_t)ch->shape[0];
    return CZ_OK;
}

static int min_bits(int64_t k) {
    int b = 0;
    uint64_t v = (uint64_t)(k - 1);
    while (v) { b++; v >>= 1; }
    return b < 1 ? 1 : b;
}

static int same_shape(const cz_node *a, int ndim, const int64_t *shape) {
    if (a->ndim != ndim) return 0;
    for (int i = 0; i < ndim; i++)
        if (a->shape[i] != shape[i]) return 0;
    return 1;
}

#define TRY(x) do { cz_status st_ = (x); if (st_) return st_; } while (0)

/* codec.check(node): header checks (after the generic ones). */
static cz_status codec_check(pctx *c, cz_node *nd, const char *tensor) {
    char *err = c->err;
    size_t errlen = c->errlen;
    const char *cn = cz_codec_name[nd->codec];
    switch (nd->codec) {
    case CZ_CODEC_DENSE:
        return expect_n(c, nd, tensor, 0, nd->size);
    case CZ_CODEC_AFFINE: {
        TRY(param_int(c, nd, tensor, "bits", 2, 8, 0, &nd->p_bits));
        const cz_mp *sg = cz_mp_get(nd->params, "signed");
        if (!sg || sg->type != CZ_MP_BOOL)
            return FAIL(FMT, tensor, nd->where, -1, "affine: param 'signed' must be a boolean");
        nd->p_signed = sg->v.b;
        TRY(param_int(c, nd, tensor, "axis", 0, (int64_t)nd->ndim - 1, 1, &nd->p_axis));
        TRY(param_int(c, nd, tensor, "group_size", 1, (int64_t)MAX_DIM, 1, &nd->p_group));
        if (nd->p_axis >= 0 && nd->p_group >= 0)
            return FAIL(FMT, tensor, nd->where, -1,
                        "affine: params 'axis' and 'group_size' are mutually exclusive");
        TRY(expect_bits(c, nd, tensor, 0, (int)nd->p_bits));
        TRY(expect_n(c, nd, tensor, 0, nd->size));
        uint64_t S = 1;
        if (nd->p_axis >= 0) S = (uint64_t)nd->shape[nd->p_axis];
        else if (nd->p_group >= 0)
            S = (uint64_t)nd->rows * (((uint64_t)nd->cols + (uint64_t)nd->p_group - 1) / (uint64_t)nd->p_group);
        TRY(expect_n(c, nd, tensor, 1, S));
        if (nd->s[2]) {
            TRY(expect_bits(c, nd, tensor, 2, (int)nd->p_bits));
            TRY(expect_n(c, nd, tensor, 2, S));
        }
        return CZ_OK;
    }
    case CZ_CODEC_CODEBOOK: {
        TRY(param_int(c, nd, tensor, "k", 1, 256, 0, &nd->p_k));
        TRY(param_int(c, nd, tensor, "axis", 0, (int64_t)nd->ndim - 1, 1, &nd->p_axis));
        int bits = nd->s[0]->bits;   /* symbols role: always 1..8 here */
        if (nd->p_k > (1 << bits))
            return FAIL(FMT, tensor, nd->s[0]->path, -1, "codebook: k=%lld does not fit in %d-bit indices",
                        (long long)nd->p_k, bits);
        TRY(expect_n(c, nd, tensor, 0, nd->size));
        uint64_t want = nd->p_axis < 0 ? (uint64_t)nd->p_k
                                       : (uint64_t)nd->shape[nd->p_axis] * (uint64_t)nd->p_k;
        return expect_n(c, nd, tensor, 1, want);
    }
    case CZ_CODEC_RELIDX: {
        if (nd->ndim < 1)
            return FAIL(FMT, tensor, nd->where, -1, "relidx: shape has 0 dims, expected >= 1");
        TRY(param_int(c, nd, tensor, "gap_bits", 2, 8, 0, &nd->p_gap_bits));
        TRY(expect_bits(c, nd, tensor, 0, (int)nd->p_gap_bits));
        TRY(expect_n(c, nd, tensor, 1, (uint64_t)nd->rows + 1));
        TRY(expect_n(c, nd, tensor, 2, (uint64_t)nd->rows + 1));
        uint64_t nnz = 0;
        TRY(child_1d(c, nd, tensor, 0, &nnz));
        if (nnz > nd->size)
            return FAIL(COR, tensor, nd->where, -1, "relidx: %llu values cannot fit in %llu positions",
                        (unsigned long long)nnz, (unsigned long long)nd->size);
        return CZ_OK;
    }
    case CZ_CODEC_NM: {
        TRY(param_int(c, nd, tensor, "n", 1, 256, 0, &nd->p_n));
        TRY(param_int(c, nd, tensor, "m", 1, 256, 0, &nd->p_m));
        if (nd->p_n > nd->p_m)
            return FAIL(FMT, tensor, nd->where, -1, "nm: n=%lld exceeds m=%lld", (long long)nd->p_n,
                        (long long)nd->p_m);
        if (nd->cols % nd->p_m)
            return FAIL(COR, tensor, nd->where, -1, "nm: %lld columns are not a multiple of m=%lld",
                        (long long)nd->cols, (long long)nd->p_m);
        uint64_t groups = (uint64_t)nd->rows * ((uint64_t)nd->cols / (uint64_t)nd->p_m);
        TRY(expect_bits(c, nd, tensor, 0, min_bits(nd->p_m)));
        TRY(expect_n(c, nd, tensor, 0, groups * (uint64_t)nd->p_n));
        uint64_t nv = 0;
        TRY(child_1d(c, nd, tensor, 0, &nv));
        if (nv != groups * (uint64_t)nd->p_n)
            return FAIL(COR, tensor, nd->c[0]->where, -1, "nm: child 'values' holds %llu entries, expected %llu",
                        (unsigned long long)nv, (unsigned long long)(groups * (uint64_t)nd->p_n));
        return CZ_OK;
    }
    case CZ_CODEC_BLOCK: {
        TRY(param_int(c, nd, tensor, "bh", 1, (int64_t)MAX_DIM, 0, &nd->p_bh));
        TRY(param_int(c, nd, tensor, "bw", 1, (int64_t)MAX_DIM, 0, &nd->p_bw));
        if (nd->rows % nd->p_bh || nd->cols % nd->p_bw)
            return FAIL(COR, tensor, nd->where, -1,
                        "block: the %lldx%lld 2-D view is not a whole number of %lldx%lld blocks",
                        (long long)nd->rows, (long long)nd->cols, (long long)nd->p_bh, (long long)nd->p_bw);
        uint64_t nblocks = (uint64_t)(nd->rows / nd->p_bh) * (uint64_t)(nd->cols / nd->p_bw);
        TRY(expect_bits(c, nd, tensor, 0, 1));
        TRY(expect_n(c, nd, tensor, 0, nblocks));
        uint64_t nv = 0, bsz = 0;
        TRY(child_1d(c, nd, tensor, 0, &nv));
        /* bh*bw may exceed 2^64 only if nv can never be a multiple <= nblocks (nv <= 2^40) */
        if (!cz_mul_ok((uint64_t)nd->p_bh, (uint64_t)nd->p_bw, &bsz) || nv % bsz || nv / bsz > nblocks)
            return FAIL(COR, tensor, nd->c[0]->where, -1,
                        "block: child 'values' holds %llu entries, not a whole number (<= %llu) of %lldx%lld blocks",
                        (unsigned long long)nv, (unsigned long long)nblocks, (long long)nd->p_bh,
                        (long long)nd->p_bw);
        return CZ_OK;
    }
    case CZ_CODEC_SVD: {
        const cz_node *u = nd->c[0], *v = nd->c[1];
        if (u->ndim != 2 || u->shape[0] != nd->rows)
            return FAIL(COR, tensor, u->where, -1, "svd: child 'u' has the wrong shape, expected [%lld, r]",
                        (long long)nd->rows);
        int64_t want[2] = {u->shape[1], nd->cols};
        if (!same_shape(v, 2, want))
            return FAIL(COR, tensor, v->where, -1, "svd: child 'v' has the wrong shape, expected [%lld, %lld]",
                        (long long)want[0], (long long)want[1]);
        return CZ_OK;
    }
    case CZ_CODEC_TUCKER2: {
        if (nd->ndim != 4)
            return FAIL(FMT, tensor, nd->where, -1, "tucker2: shape has %d dims, expected 4", nd->ndim);
        const cz_node *f = nd->c[0], *core = nd->c[1], *l = nd->c[2];
        if (f->ndim != 2 || f->shape[1] != nd->shape[1])
            return FAIL(COR, tensor, f->where, -1, "tucker2: child 'first' has the wrong shape, expected [r_in, %lld]",
                        (long long)nd->shape[1]);
        if (l->ndim != 2 || l->shape[0] != nd->shape[0])
            return FAIL(COR, tensor, l->where, -1, "tucker2: child 'last' has the wrong shape, expected [%lld, r_out]",
                        (long long)nd->shape[0]);
        int64_t want[4] = {l->shape[1], f->shape[0], nd->shape[2], nd->shape[3]};
        if (!same_shape(core, 4, want))
            return FAIL(COR, tensor, core->where, -1, "tucker2: child 'core' has the wrong shape, expected [%lld, %lld, %lld, %lld]",
                        (long long)want[0], (long long)want[1], (long long)want[2], (long long)want[3]);
        return CZ_OK;
    }
    case CZ_CODEC_SUM:
        for (int i = 0; i < nd->nchild; i++)
            if (!same_shape(nd->c[i], nd->ndim, nd->shape))
                return FAIL(COR, tensor, nd->c[i]->where, -1, "sum: child '%d' has a shape different from the node's", i);
        return CZ_OK;
    default:
        break;
    }
    (void)cn;
    return CZ_OK;
}

static cz_status parse_node(pctx *c, const cz_mp *v, const char *path, const char *tensor,
                            int depth, const cz_node **out) {
    char *err = c->err;
    size_t errlen = c->errlen;
    cz_model *m = c->m;
    const char *where = path[0] ? path : "enc";
    if (depth > MAX_TREE_DEPTH)
        return FAIL(LIM, tensor, where, -1, "encoding tree deeper than %d", MAX_TREE_DEPTH);
    if (!keys_exact(v, NODE_KEYS, 5))
        return FAIL(FMT, tensor, where, -1,
                    "encoding node must be a map with keys ['children', 'codec', 'params', 'shape', 'streams']");
    const cz_mp *codec = cz_mp_get(v, "codec");
    int ci = codec->type == CZ_MP_STR ? key_in(codec, cz_codec_name, CZ_CODEC_COUNT) : -1;
    if (ci < 0)
        return FAIL(UNS, tensor, where, -1, "unknown codec '%.40s' (known: ['affine', 'block', 'codebook', 'dense', 'nm', 'relidx', 'sum', 'svd', 'tucker2'])",
                    codec->type == CZ_MP_STR ? codec->v.s : "?");
    const codec_spec *spec = &SPECS[ci];
    cz_node *nd = cz_arena_alloc(&m->arena, sizeof(cz_node), 8);
    if (!nd) return OOM();
    memset(nd, 0, sizeof *nd);
    nd->codec = (cz_codec)ci;
    nd->path = path;
    nd->where = where;
    nd->p_bits = nd->p_axis = nd->p_group = nd->p_k = nd->p_gap_bits = -1;
    nd->p_n = nd->p_m = nd->p_bh = nd->p_bw = -1;
    TRY(parse_shape(c, cz_mp_get(v, "shape"), where, tensor, &nd->ndim, nd->shape, &nd->size));
    if (nd->ndim == 0) { nd->rows = 1; nd->cols = 1; }
    else {
        nd->rows = nd->shape[0];
        uint64_t cols = 1;
        for (int i = 1; i < nd->ndim; i++) cols *= (uint64_t)nd->shape[i];   /* <= 2^44 unless a 0 dim */
        int zero = 0;
        for (int i = 1; i < nd->ndim; i++) zero |= nd->shape[i] == 0;
        if (zero) cols = 0;
        nd->cols = (int64_t)cols;
    }
    if (nd->ndim < spec->min_ndim)
        return FAIL(FMT, tensor, where, -1, "%s needs at least %d dims", cz_codec_name[ci], spec->min_ndim);
    const cz_mp *params = cz_mp_get(v, "params"), *streams = cz_mp_get(v, "streams"),
                *children = cz_mp_get(v, "children");
    int pok = params->type == CZ_MP_MAP;
    for (uint32_t i = 0; pok && i < params->len; i++)
        if (key_in(&params->v.items[2 * i], spec->params, spec->nparams) < 0) pok = 0;
    if (!pok)
        return FAIL(FMT, tensor, where, -1, "%s: params must be a map with keys among the codec's params",
                    cz_codec_name[ci]);
    if (!plain_ok(params, 0))
        return FAIL(FMT, tensor, NULL, -1, "%s.params: nested deeper than 32 levels", where);
    nd->params = params;
    if (streams->type != CZ_MP_MAP || children->type != CZ_MP_MAP)
        return FAIL(FMT, tensor, where, -1, "%s: streams and children must be maps", cz_codec_name[ci]);
    /* required <= streams <= roles */
    int sok = 1;
    for (uint32_t i = 0; i < streams->len; i++)
        if (key_in(&streams->v.items[2 * i], spec->roles, spec->nroles) < 0) sok = 0;
    for (int r = 0; r < spec->nroles; r++)
        if (spec->required[r] && !cz_mp_get(streams, spec->roles[r])) sok = 0;
    if (!sok)
        return FAIL(FMT, tensor, where, -1, "%s: streams must include the required roles and be among the codec's roles",
                    cz_codec_name[ci]);
    int cok;
    if (spec->nchildren < 0) {
        uint32_t n = children->len;
        cok = n >= 1 && n <= 16;
        for (uint32_t i = 0; cok && i < n; i++) {
            char name[16];
            snprintf(name, sizeof name, "%u", i);
            if (!cz_mp_get(children, name)) cok = 0;
        }
    } else {
        cok = children->len == (uint32_t)spec->nchildren;
        for (int i = 0; cok && i < spec->nchildren; i++)
            if (!cz_mp_get(children, spec->children[i])) cok = 0;
    }
    if (!cok)
        return FAIL(FMT, tensor, where, -1, "%s: children do not match the codec", cz_codec_name[ci]);
    /* streams, in file order */
    for (uint32_t i = 0; i < streams->len; i++) {
        const cz_mp *k = &streams->v.items[2 * i];
        int r = key_in(k, spec->roles, spec->nroles);
        char *sp = arena_strdup_path(&m->arena, path, k->v.s);
        cz_stream_desc *sd = cz_arena_alloc(&m->arena, sizeof *sd, 8);
        if (!sp || !sd) return OOM();
        TRY(parse_stream(c, &streams->v.items[2 * i + 1], sp, tensor, sd));
        if (!spec->dtypes[r][sd->dtype])
            return FAIL(FMT, tensor, sp, -1, "%s: stream '%s' dtype '%s' not allowed", cz_codec_name[ci],
                        spec->roles[r], cz_sdtype_name[sd->dtype]);
        if (spec->symbols[r] != (sd->bits != 0))
            return FAIL(FMT, tensor, sp, -1, "%s: stream '%s' must %sdeclare bits", cz_codec_name[ci],
                        spec->roles[r], spec->symbols[r] ? "" : "not ");
        nd->s[r] = sd;
        c->used[sd->sec]++;
    }
    /* children, in file order */
    for (uint32_t i = 0; i < children->len; i++) {
        const cz_mp *k = &children->v.items[2 * i];
        int r;
        if (spec->nchildren < 0) {
            r = 0;
            for (const char *q = k->v.s; *q; q++) r = r * 10 + (*q - '0');   /* validated above */
        } else {
            r = key_in(k, spec->children, spec->nchildren);
        }
        char *cp = arena_strdup_path(&m->arena, path, k->v.s);
        if (!cp) return OOM();
        TRY(parse_node(c, &children->v.items[2 * i + 1], cp, tensor, depth + 1, &nd->c[r]));
    }
    nd->nchild = spec->nchildren < 0 ? (int)children->len : spec->nchildren;
    TRY(codec_check(c, nd, tensor));
    *out = nd;
    return CZ_OK;
}

/* ---- top level ---------------------------------------------------------------------------- */

static const char *const TENSOR_KEYS[4] = {"name", "dtype", "shape", "enc"};
static const char *const TENSOR_DTYPES[11] = {"f64", "f32", "f16", "i64", "i32", "i16",
                                              "i8", "u8", "u16", "u32", "bool"};
static const cz_dtype TENSOR_DTYPE_IDS[11] = {CZ_F64, CZ_F32, CZ_F16, CZ_I64, CZ_I32, CZ_I16,
                                              CZ_I8, CZ_U8, CZ_U16, CZ_U32, CZ_BOOL};

static uint32_t hash_str(const char *s, size_t n) {
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) h = (h ^ (uint8_t)s[i]) * 16777619u;
    return h;
}

int cz_model_find_tensor(const cz_model *m, const char *name) {
    if (!m || !name || !m->name_index) return -1;
    size_t n = strlen(name);
    uint32_t mask = m->name_index_cap - 1, i = hash_str(name, n) & mask;
    for (;;) {
        int32_t t = m->name_index[i];
        if (t < 0) return -1;
        const char *tn = m->tensors[t].name;
        if (strlen(tn) == n && memcmp(tn, name, n) == 0) return t;
        i = (i + 1) & mask;
    }
}

static cz_status parse_tensor(pctx *c, const cz_mp *t, int i, cz_tensor_entry *e) {
    char *err = c->err;
    size_t errlen = c->errlen;
    cz_model *m = c->m;
    if (!keys_exact(t, TENSOR_KEYS, 4))
        return FAIL(FMT, NULL, NULL, -1, "tensor entry %d must be a map with keys ['dtype', 'enc', 'name', 'shape']", i);
    const cz_mp *name = cz_mp_get(t, "name");
    if (name->type != CZ_MP_STR || name->len == 0)
        return FAIL(FMT, NULL, NULL, -1, "tensor entry %d: name must be a non-empty string", i);
    if (strlen(name->v.s) != name->len)
        return FAIL(UNS, NULL, NULL, -1, "tensor entry %d: name contains a NUL character (not supported by the C API)", i);
    /* duplicate? insert into the hash */
    uint32_t mask = m->name_index_cap - 1, h = hash_str(name->v.s, name->len) & mask;
    for (;;) {
        int32_t o = m->name_index[h];
        if (o < 0) break;
        if (strcmp(m->tensors[o].name, name->v.s) == 0)
            return FAIL(FMT, name->v.s, NULL, -1, "duplicate tensor name");
        h = (h + 1) & mask;
    }
    const char *tn = name->v.s;
    const cz_mp *dt = cz_mp_get(t, "dtype");
    int d = dt->type == CZ_MP_STR ? key_in(dt, TENSOR_DTYPES, 11) : -1;
    if (d < 0)
        return FAIL(UNS, tn, NULL, -1, "unknown tensor dtype '%.40s'", dt->type == CZ_MP_STR ? dt->v.s : "?");
    memset(e, 0, sizeof *e);
    e->name = tn;
    e->dtype = TENSOR_DTYPE_IDS[d];
    TRY(parse_shape(c, cz_mp_get(t, "shape"), "tensor", tn, &e->ndim, e->shape, &e->numel));
    TRY(parse_node(c, cz_mp_get(t, "enc"), "", tn, 0, &e->enc));
    if (!same_shape(e->enc, e->ndim, e->shape))
        return FAIL(FMT, tn, NULL, -1, "encoding shape differs from tensor shape");
    m->name_index[h] = i;
    return CZ_OK;
}

cz_status cz_container_parse(cz_model *m, char *err, size_t errlen) {
    const uint8_t *b = m->bytes;
    size_t size = m->size;
    if (size < PREAMBLE)
        return FAIL(FMT, NULL, NULL, 0, "file is %zu bytes, shorter than the 24-byte preamble: not a .cz file", size);
    if (memcmp(b, MAGIC, 8) != 0) return FAIL(FMT, NULL, NULL, 0, "bad magic: not a .cz file");
    uint16_t major = rd16(b + 8);
    if (major != CZ_VERSION_MAJOR)
        return FAIL(UNS, NULL, NULL, 8, "format major version %u is not supported (this reader reads 1.x)", major);
    if (rd32(b + 20) != 0) return FAIL(FMT, NULL, NULL, 20, "reserved preamble field is not zero");
    m->version_minor = rd16(b + 10);
    uint32_t hlen = rd32(b + 12);
    if (hlen > MAX_HEADER_BYTES)
        return FAIL(LIM, NULL, NULL, 12, "header of %u bytes exceeds the cap of %u", hlen, MAX_HEADER_BYTES);
    uint64_t hend = PREAMBLE + (uint64_t)hlen;
    if (hend > size)
        return FAIL(FMT, NULL, NULL, 12, "header claims %u bytes but the file ends at %zu", hlen, size);
    m->header_len = hlen;
    /* header_crc32 covers preamble bytes 0-15 (magic, versions, header_len), then the header:
     * a flip in version_minor is caught here too (reserved is covered by its zero rule). */
    uint32_t hcrc = cz_crc32(cz_crc32(0, b, CRC_COVERED), b + PREAMBLE, hlen);
    if (hcrc != rd32(b + CRC_OFFSET))
        return FAIL(CZ_ERR_CHECKSUM, NULL, NULL, CRC_OFFSET,
                    "header checksum mismatch: preamble bytes 0-15 + %u header bytes have CRC-32 "
                    "0x%08x, header_crc32 says 0x%08x; the preamble or the header is damaged",
                    hlen, hcrc, rd32(b + CRC_OFFSET));
    const cz_mp *h;
    TRY(cz_mp_parse(b + PREAMBLE, hlen, &m->arena, &h, err, errlen));
    if (h->type != CZ_MP_MAP) return FAIL(FMT, NULL, NULL, PREAMBLE, "header is not a msgpack map");
    m->header = h;
    if (!cz_mp_streq(cz_mp_get(h, "format"), "cz"))
        return FAIL(FMT, NULL, NULL, PREAMBLE, "header 'format' must be 'cz'");
    const cz_mp *feats = cz_mp_get(h, "features");
    if (feats) {
        if (feats->type != CZ_MP_ARRAY) return FAIL(FMT, NULL, NULL, -1, "'features' must be a list of strings");
        for (uint32_t i = 0; i < feats->len; i++)
            if (feats->v.items[i].type != CZ_MP_STR)
                return FAIL(FMT, NULL, NULL, -1, "'features' must be a list of strings");
        if (feats->len)   /* v1.0 knows no features */
            return FAIL(UNS, NULL, NULL, -1, "file requires features this reader lacks: ['%.60s'%s]",
                        feats->v.items[0].v.s, feats->len > 1 ? ", ..." : "");
    }
    /* section table */
    const cz_mp *secs = cz_mp_get(h, "sections");
    if (!secs || secs->type != CZ_MP_ARRAY) return FAIL(FMT, NULL, NULL, -1, "'sections' must be a list");
    if (secs->len > MAX_SECTIONS)
        return FAIL(LIM, NULL, NULL, -1, "%u sections exceed %u", secs->len, MAX_SECTIONS);
    m->nsections = secs->len;
    m->sections = cz_arena_alloc(&m->arena, (size_t)secs->len * sizeof(cz_section) + 1, 8);
    if (!m->sections) return OOM();
    uint64_t pos = hend;
    for (uint32_t i = 0; i < secs->len; i++) {
        const cz_mp *s = &secs->v.items[i];
        int ok = s->type == CZ_MP_ARRAY && s->len == 3;
        for (uint32_t k = 0; ok && k < 3; k++)
            ok = is_int(&s->v.items[k]) && s->v.items[k].v.i >= 0;
        if (ok && s->v.items[2].v.i > 0xFFFFFFFFll) ok = 0;
        if (!ok)
            return FAIL(FMT, NULL, NULL, -1, "section %u: entry must be [offset, length, crc32] non-negative integers", i);
        uint64_t off = (uint64_t)s->v.items[0].v.i, len = (uint64_t)s->v.items[1].v.i;
        if (off != align_up(pos))
            return FAIL(FMT, NULL, NULL, (int64_t)off,
                        "section %u: offset %llu must be %llu (next 64-byte boundary after the previous section): hole or overlap",
                        i, (unsigned long long)off, (unsigned long long)align_up(pos));
        if (len > size || off > size - len)
            return FAIL(FMT, NULL, NULL, (int64_t)off, "section %u: [%llu, %llu) runs past the end of the %zu-byte file",
                        i, (unsigned long long)off, (unsigned long long)(off + len), size);
        m->sections[i].off = off;
        m->sections[i].len = len;
        m->sections[i].crc = (uint32_t)s->v.items[2].v.i;
        pos = off + len;
    }
    if (pos != size)
        return FAIL(FMT, NULL, NULL, (int64_t)pos, "data ends at %llu but the file is %zu bytes: trailing bytes",
                    (unsigned long long)pos, size);
    pos = hend;
    for (uint32_t i = 0; i < m->nsections; i++) {
        for (uint64_t q = pos; q < m->sections[i].off; q++)
            if (b[q]) return FAIL(COR, NULL, NULL, (int64_t)pos, "non-zero padding before section %u", i);
        pos = m->sections[i].off + m->sections[i].len;
    }
    /* tensors */
    const cz_mp *tens = cz_mp_get(h, "tensors");
    if (!tens || tens->type != CZ_MP_ARRAY) return FAIL(FMT, NULL, NULL, -1, "'tensors' must be a list");
    if (tens->len > MAX_TENSORS)
        return FAIL(LIM, NULL, NULL, -1, "%u tensors exceed %d", tens->len, MAX_TENSORS);
    m->ntensors = (int)tens->len;
    m->tensors = cz_arena_alloc(&m->arena, (size_t)tens->len * sizeof(cz_tensor_entry) + 1, 8);
    uint32_t cap = 16;
    while (cap < 2 * tens->len) cap <<= 1;
    m->name_index_cap = cap;
    m->name_index = cz_arena_alloc(&m->arena, (size_t)cap * sizeof(int32_t), 8);
    pctx c = {m, err, errlen, NULL};
    c.used = cz_mem_alloc(&m->alloc, (size_t)m->nsections * sizeof(uint32_t) + 4, 8);
    if (!m->tensors || !m->name_index || !c.used) {
        cz_mem_free(&m->alloc, c.used);
        return OOM();
    }
    memset(m->name_index, 0xFF, (size_t)cap * sizeof(int32_t));
    memset(c.used, 0, (size_t)m->nsections * sizeof(uint32_t));
    cz_status st = CZ_OK;
    for (uint32_t i = 0; i < tens->len && !st; i++)
        st = parse_tensor(&c, &tens->v.items[i], (int)i, &m->tensors[i]);
    for (uint32_t i = 0; i < m->nsections && !st; i++)
        if (c.used[i] != 1)
            st = FAIL(FMT, NULL, NULL, (int64_t)m->sections[i].off,
                      "section %u is referenced by %u streams (must be exactly one)", i, c.used[i]);
    cz_mem_free(&m->alloc, c.used);
    if (st) return st;
    /* graph, calibration, metadata */
    const cz_mp *g = cz_mp_get(h, "graph");
    if (g && g->type != CZ_MP_NIL) {
        if (g->type != CZ_MP_MAP) return FAIL(FMT, NULL, NULL, -1, "'graph' must be a map or nil");
        const cz_mp *op = cz_mp_get(g, "opset");
        if (!is_int(op) || op->v.i < 1) return FAIL(FMT, NULL, NULL, -1, "graph 'opset' must be a positive integer");
        if (op->v.i > GRAPH_OPSET_MAX)
            return FAIL(UNS, NULL, NULL, -1, "graph op-set version %lld is newer than this reader's %d",
                        (long long)op->v.i, GRAPH_OPSET_MAX);
        if (!plain_ok(g, 0)) return FAIL(FMT, NULL, NULL, -1, "graph: nested deeper than 32 levels");
        m->graph_mp = g;
    }
    static const char *const FREE_KEYS[2] = {"calibration", "metadata"};
    for (int k = 0; k < 2; k++) {
        const cz_mp *v = cz_mp_get(h, FREE_KEYS[k]);
        if (!v) continue;
        if (v->type != CZ_MP_MAP) return FAIL(FMT, NULL, NULL, -1, "'%s' must be a map", FREE_KEYS[k]);
        if (!plain_ok(v, 0)) return FAIL(FMT, NULL, NULL, -1, "%s: nested deeper than 32 levels", FREE_KEYS[k]);
        if (k == 0) m->calibration = v;
        else m->metadata = v;
    }
    return CZ_OK;
}
