/*
 * cz_internal.h -- shared internal interfaces of the C runtime (not installed).
 *
 * Three parts meet here: the format layer (msgpack header reader, container checks,
 * entropy decoding, codecs -> kernel forms), the kernels (GEMM/conv over kernel forms) and
 * the graph executor. Each part owns its own .c files; this header is the contract.
 */
#ifndef CZ_INTERNAL_H
#define CZ_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "cz.h"

/* ---- errors and memory --------------------------------------------------------------- */

/* Format a message into err (if non-NULL) and return st. Always NUL-terminates. */
cz_status cz_fail(char *err, size_t errlen, cz_status st, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

void *cz_mem_alloc(const cz_allocator *a, size_t size, size_t align); /* NULL on failure */
void cz_mem_free(const cz_allocator *a, void *p);
const cz_allocator *cz_default_allocator(void);

/* Overflow-checked size arithmetic: return 0 on overflow (and leave *out untouched). */
static inline int cz_mul_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (a && b > UINT64_MAX / a) return 0;
    *out = a * b;
    return 1;
}
static inline int cz_add_ok(uint64_t a, uint64_t b, uint64_t *out) {
    if (b > UINT64_MAX - a) return 0;
    *out = a + b;
    return 1;
}

/* A bump arena over the allocator: many small allocations freed together. */
typedef struct cz_arena_block cz_arena_block;
typedef struct {
    const cz_allocator *a;
    cz_arena_block *head;
    uint64_t used, cap;            /* cap: total bytes allowed (0 = unlimited) */
} cz_arena;
void cz_arena_init(cz_arena *ar, const cz_allocator *a, uint64_t cap);
void *cz_arena_alloc(cz_arena *ar, size_t size, size_t align);   /* NULL: out of memory/cap */
void cz_arena_free_all(cz_arena *ar);
/* Free every allocation at once but keep the largest block of at most keep_max bytes for
 * the next allocations (a workspace reused call after call: no allocator traffic once it
 * has grown). cz_arena_free_all still releases everything. */
void cz_arena_reset(cz_arena *ar, size_t keep_max);

/* ---- msgpack reader (src/msgpack.c) -------------------------------------------------- */

typedef enum {
    CZ_MP_NIL = 0, CZ_MP_BOOL, CZ_MP_INT, CZ_MP_FLOAT, CZ_MP_STR, CZ_MP_BIN, CZ_MP_ARRAY,
    CZ_MP_MAP
} cz_mp_type;

typedef struct cz_mp {
    cz_mp_type type;
    uint32_t len;                  /* STR/BIN bytes; ARRAY items; MAP pairs; INT: 1 when
                                      the value was above INT64_MAX (v.i = INT64_MAX) */
    union {
        int b;
        int64_t i;                 /* INT: values > INT64_MAX saturate (len = 1) */
        double f;
        const char *s;             /* STR (NUL-terminated copy; may contain no NUL) / BIN */
        const struct cz_mp *items; /* ARRAY: len items; MAP: 2*len (key, value, ...) */
    } v;
} cz_mp;

/* Parse exactly `len` bytes (trailing bytes are an error) into nodes allocated from `ar`.
 * Nesting deeper than 64 levels, ext types, invalid UTF-8 in strings, map keys that are
 * not strings, duplicate keys in a map -> CZ_ERR_FORMAT. */
cz_status cz_mp_parse(const uint8_t *buf, size_t len, cz_arena *ar, const cz_mp **root,
                      char *err, size_t errlen);
const cz_mp *cz_mp_get(const cz_mp *map, const char *key);   /* NULL if absent / not a map */
int cz_mp_streq(const cz_mp *s, const char *lit);

/* ---- kernel forms (built by src/forms.c, consumed by src/kernels/) ------------------- */

typedef enum {
    CZ_FORM_DENSE = 1, CZ_FORM_RELIDX, CZ_FORM_CODEBOOK, CZ_FORM_AFFINE, CZ_FORM_NM,
    CZ_FORM_SVD, CZ_FORM_TUCKER2, CZ_FORM_SUM
} cz_form_kind;

typedef enum { CZ_VALS_F32 = 1, CZ_VALS_CODEBOOK = 2 } cz_vals_kind;

typedef struct cz_form cz_form;
struct cz_form {
    cz_form_kind kind;
    int ndim;
    int64_t shape[CZ_MAX_NDIM];
    int64_t rows, cols;            /* 2-D view: rows = shape[0], cols = prod(shape[1:]) */
    uint64_t resident_bytes;       /* this form and its children */
    union {
        struct { const float *w; } dense;                       /* rows x cols */
        struct {                   /* EIE-style relative-index CSR */
            int gap_bits;          /* filler symbol = (1 << gap_bits) - 1 */
            const int64_t *gap_ptr, *val_ptr;                   /* rows + 1 each */
            const uint8_t *gaps;   /* gaps and gap_ptr are NULL when relidx_col16 holds the
                                      positions instead (what the format layer builds) */
            cz_vals_kind vkind;
            const uint8_t *idx;    /* CODEBOOK: nnz indices into lut[k] */
            const float *lut;
            int k;
            const float *vals;     /* F32: nnz values */
        } relidx;
        struct {
            const uint8_t *idx;    /* rows x cols */
            const float *lut;      /* k (per tensor) or rows x k (per_row) */
            int k, per_row;
        } codebook;
        struct {
            const int8_t *q;       /* rows x cols; int4 and other widths widened to int8 */
            int bits;
            const float *scale;    /* group > 0: rows x ngroups; per_row: rows; else 1 */
            const int32_t *zp;     /* same count as scale, or NULL (symmetric) */
            int64_t group;         /* 0: none */
            int per_row;
        } affine;
        struct {
            int n, m;
            const uint8_t *pos;    /* groups * n positions */
            cz_vals_kind vkind;
            const uint8_t *idx;
            const float *lut;
            int k;
            const float *vals;
        } nm;
        struct { cz_form *u, *v; } svd;                         /* u: rows x r, v: r x cols */
        struct { cz_form *first, *core, *last; } tucker2;       /* conv 1x1, kxk, 1x1 */
        struct { int n; cz_form **terms; } sum;
    } u;
    /* ---- optional derived caches (appended; NULL = not built, kernels fall back) ---- */
    /* RELIDX: absolute column of every stored value (nnz entries, indexed like the values),
     * when cols <= 65536: built by the format layer at open in its validation walk (which
     * then drops gaps and gap_ptr), or from the gaps by czk_relidx_prepare(). Lets every
     * kernel skip the serial gap walk (2 bytes per nnz, counted in resident_bytes). Every
     * RELIDX kernel runs from (val_ptr, col16, values) when it is set and from the gaps
     * otherwise; at least one of the two is present. */
    const uint16_t *relidx_col16;
    /* AFFINE: the int8 weights packed once at load into 8-row sub-panels of 4-column quads
     * for the int8 GEMM's quad kernel (czk_affine_prepare; for weights that Linear / Gemm
     * nodes multiply, on CPUs that run the AVX2 exact int8 path). Batch >= 4 products then
     * run the quad kernel (affine_i8.c) without per-call packing. ~1 byte per weight,
     * counted in resident_bytes. */
    const int8_t *affine_p8;
    /* RELIDX, codebook values: the codebook-GROUPED layout (relidx.c, czk_relidx_group_*),
     * built at load for 2-D weights whose rows hold enough values per LUT entry. Within row r
     * the values are ordered by LUT index and cut into chunks of 4, then 2, then 1 values
     * that share one index: relidx_gcol holds the nnz columns (row r at val_ptr[r], like the
     * values), relidx_gid one LUT index per chunk (row r's chunks from relidx_gptr[r]),
     * relidx_gn per row the counts of 4- and 2-chunks (the rest are 1-chunks). The batch-1
     * kernel then sums x over a chunk and multiplies once by lut[gid]. When it is present
     * the kernels need no other positions; the format layer then drops col16 and idx. */
    const uint16_t *relidx_gcol;
    const uint8_t *relidx_gid;
    const int64_t *relidx_gptr;    /* rows + 1; NULL = not grouped */
    const uint16_t *relidx_gn;     /* 2 * rows */
};

/* ---- per-call workspace ------------------------------------------------------------- */

typedef struct {
    cz_arena arena;                /* scratch for one cz_run call; freed at its end */
    int threads;
    int precise;                   /* cz_options.precise: products on the _ref kernels */
} cz_ws;

/* ---- kernels (src/kernels/) ---------------------------------------------------------- */

/* Y[b, r] (+)= sum_c W[r, c] * X[b, c] (+ bias[r]): Y = X W^T for any form.
 * X: batch x cols with row stride ldx; Y: batch x rows with row stride ldy.
 * Returns CZ_ERR_MEMORY if scratch could not be allocated, CZ_OK otherwise. */
cz_status czk_linear(const cz_form *w, int64_t batch, const float *x, int64_t ldx,
                     const float *bias, float *y, int64_t ldy, cz_ws *ws);

typedef struct {
    int64_t n, c, h, w;            /* input NCHW */
    int64_t oc, kh, kw, group;
    int64_t stride_h, stride_w, dil_h, dil_w;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t oh, ow;                /* output spatial size (computed by the caller) */
} czk_conv_params;

/* 2-D convolution, NCHW, weight form shaped (oc, c/group, kh, kw); bias may be NULL. */
cz_status czk_conv2d(const cz_form *w, const czk_conv_params *p, const float *x,
                     const float *bias, float *y, cz_ws *ws);

/* Row r of a form's 2-D view decoded to float32 (cols values), bit-identical to the codec's
 * dense decode: lets Gather read embedding tables kept compressed (no dense copy at load).
 * czk_form_row_ok: the kinds it supports (DENSE, AFFINE, CODEBOOK). */
int czk_form_row_ok(const cz_form *w);
void czk_form_row(const cz_form *w, int64_t r, float *out);

/* CPU features found at run time (bit 0: AVX2+FMA, bit 1: AVX-512F, bit 2: AVX-512 VNNI). */
int czk_cpu_features(void);

/* Optional preparation of a RELIDX form that holds only its gap stream (tests, benches; the
 * format layer builds the cache itself at open). Call once before any kernel runs on it; not
 * thread-safe against concurrent kernel calls on the same form. Builds f->relidx_col16
 * (absolute u16 column per stored value) from the gap stream, with memory from `a`, and
 * adds its size to f->resident_bytes -- and, for codebook values, the grouped layout below
 * when its rule says so, in the same allocation; the gaps stay (the caller may then release
 * them and set gaps = gap_ptr = NULL). *owned receives the allocation (free it with
 * cz_mem_free(a, *owned) when the form dies; NULL if nothing was built).
 * No-op (CZ_OK, *owned = NULL) for other kinds, cols > 65536, no gaps, or an already
 * prepared form. Returns CZ_ERR_MEMORY or CZ_ERR_FORMAT (a value lands at col >= cols). */
cz_status czk_relidx_prepare(cz_form *f, const cz_allocator *a, void **owned);

/* Codebook-grouped RELIDX layout (see relidx_gptr above). czk_relidx_group_plan: should a
 * form with these values be grouped? mode -1: the rule (>= 2 values per row and LUT entry
 * on average, and at most the bytes of col16 + idx), 0: never, 1: whenever possible (cols
 * <= 65536, k <= 256). Returns 1 with the bytes of the layout's one block in *bytes (<= 3 *
 * nnz by the rule; forced, at most the row tables, 12 * (rows + 1), more).
 * czk_relidx_group_build fills that block (64-byte aligned) from the absolute column of
 * every value (col, indexed like the values) and f's val_ptr / idx / k, and sets f's
 * relidx_g* fields (not resident_bytes). czk_relidx_prepare also groups (same rule;
 * CZ_RELIDX_GROUP=0 / 1 in the environment forces never / always), the layout sharing its
 * allocation (in front of col16: free that block through relidx_gptr when it is set). */
int czk_relidx_group_plan(int64_t rows, int64_t cols, const int64_t *val_ptr, const uint8_t *idx,
                          int k, int mode, uint64_t *bytes);
void czk_relidx_group_build(cz_form *f, const uint16_t *col, void *block);

/* Optional load-time packing of an AFFINE form for the int8 GEMM (batch >= 4): builds
 * f->affine_p8 with memory from `a`, adds its size to f->resident_bytes, *owned receives the
 * allocation (NULL if nothing was built). No-op (CZ_OK) for other kinds, CPUs that do not
 * run the AVX2 exact int8 path (no AVX2, or AVX-512 VNNI), group sizes not a multiple of 4
 * (smaller than cols), or an already
 * packed form. Same threading rule as czk_relidx_prepare. CZ_ERR_MEMORY on failure. */
cz_status czk_affine_prepare(cz_form *f, const cz_allocator *a, void **owned);

#endif /* CZ_INTERNAL_H */
