/*
 * cz_model.h -- the opened model as the format layer builds it (internal, not installed).
 *
 * Owned by the format layer (container.c, entropy.c, codecs.c, forms.c, api_model.c).
 * The graph executor reads the tensor table and the parsed header through this header and
 * hangs its own state on `graph` / `graph_free`.
 *
 * What cz_open_* builds for every tensor entry (rule for the executor):
 *   - every float tensor (dtype f32/f16/f64) gets a kernel form `form` (f32 arithmetic);
 *   - `f32` is a dense row-major float32 copy of the tensor's values, present when the
 *     tensor is a float tensor AND its form is CZ_FORM_DENSE (then f32 == form->u.dense.w,
 *     no extra memory). Compressed weights are kept ONLY as forms, whatever their size
 *     (never densify a compressed layer); the graph decodes a dense copy at load only for a
 *     tensor that some node consumes as plain data (cz_model_decode_f32);
 *   - `data` is the dense tensor in its OWN dtype for non-float tensors (ints, bool: one
 *     byte 0/1), of any size (bounded by max_tensor_bytes); for f32 tensors data == f32
 *     (may be NULL for big compressed ones); for f16/f64 tensors data is NULL.
 * Empty tensors have non-NULL pointers to a zero-length (but allocated) buffer.
 * All of this is immutable after open, so any number of threads may read it.
 */
#ifndef CZ_MODEL_H
#define CZ_MODEL_H

#include "cz_internal.h"

#define CZ_MODEL_DENSE_MAX 0u   /* compressed float tensors are never also kept dense */

/* stream dtypes (spec/sections/entropy.md) */
typedef enum {
    CZ_S_U8 = 0, CZ_S_I8, CZ_S_U16, CZ_S_I16, CZ_S_U32, CZ_S_I32, CZ_S_U64, CZ_S_I64,
    CZ_S_F16, CZ_S_BF16, CZ_S_F32, CZ_S_F64, CZ_S_COUNT
} cz_sdtype;
extern const uint8_t cz_sdtype_size[CZ_S_COUNT];
extern const char *const cz_sdtype_name[CZ_S_COUNT];

typedef enum { CZ_ENT_RAW = 0, CZ_ENT_HUFFMAN, CZ_ENT_ZSTD } cz_entropy;

typedef enum {
    CZ_CODEC_DENSE = 0, CZ_CODEC_AFFINE, CZ_CODEC_CODEBOOK, CZ_CODEC_RELIDX, CZ_CODEC_NM,
    CZ_CODEC_BLOCK, CZ_CODEC_SVD, CZ_CODEC_TUCKER2, CZ_CODEC_SUM, CZ_CODEC_COUNT
} cz_codec;
extern const char *const cz_codec_name[CZ_CODEC_COUNT];

typedef struct {
    uint64_t off, len;
    uint32_t crc;
} cz_section;

/* A validated stream descriptor. */
typedef struct {
    uint32_t sec;
    cz_entropy entropy;
    cz_sdtype dtype;
    int bits;                      /* 0: plain array; 1..8: u8 symbol stream */
    uint64_t n;                    /* elements */
    uint64_t raw_size;             /* bytes of the raw form */
    const char *path;              /* e.g. "values/indices" */
} cz_stream_desc;

/* Stream roles by codec (index into cz_node.s[]):
 *   dense: 0 data | affine: 0 q, 1 scale, 2 zero_point | codebook: 0 indices, 1 centroids
 *   relidx: 0 gaps, 1 gap_ptr, 2 val_ptr | nm: 0 positions | block: 0 mask
 * Child roles (cz_node.c[]): relidx/nm/block: 0 values | svd: 0 u, 1 v
 *   tucker2: 0 first, 1 core, 2 last | sum: i = child "i". */
#define CZ_NODE_MAX_CHILDREN 16

typedef struct cz_node cz_node;
struct cz_node {
    cz_codec codec;
    int ndim;
    int64_t shape[CZ_MAX_NDIM];
    uint64_t size;                 /* prod(shape) */
    int64_t rows, cols;            /* 2-D view */
    const char *path;              /* "" for the root */
    const char *where;             /* path, or "enc" for the root (for messages) */
    const cz_mp *params;
    /* parsed params; -1 = absent */
    int64_t p_bits, p_axis, p_group, p_k, p_gap_bits, p_n, p_m, p_bh, p_bw;
    int p_signed;
    const cz_stream_desc *s[3];    /* by role, NULL when absent */
    const cz_node *c[CZ_NODE_MAX_CHILDREN];
    int nchild;
};

typedef struct {
    const char *name;
    cz_dtype dtype;
    int ndim;
    int64_t shape[CZ_MAX_NDIM];
    uint64_t numel;
    const cz_node *enc;
    cz_form *form;                 /* float tensors; NULL otherwise */
    const float *f32;              /* see the rule at the top */
    const void *data;              /* see the rule at the top */
    uint64_t resident_bytes;
} cz_tensor_entry;

struct cz_model {
    cz_allocator alloc;            /* copy of the caller's allocator (or the default) */
    cz_options opts;               /* opts.allocator points at `alloc` */
    uint64_t max_tensor_bytes;     /* effective cap (8 GiB when opts gave 0) */
    const uint8_t *bytes;          /* the whole file */
    size_t size;
    void *owned_bytes;             /* non-NULL when the model owns `bytes` (cz_open_file) */
    uint16_t version_minor;
    uint32_t header_len;
    cz_arena arena;                /* header nodes, descriptors, tensor table */
    const cz_mp *header;           /* parsed header root (a map) */
    const cz_mp *graph_mp;         /* header "graph": NULL when absent or nil, else a map
                                      whose "opset" is an int in 1..1 (rest unchecked) */
    const cz_mp *calibration;      /* map or NULL when absent */
    const cz_mp *metadata;         /* map or NULL when absent */
    uint32_t nsections;
    cz_section *sections;
    int ntensors;
    cz_tensor_entry *tensors;
    int32_t *name_index;           /* open-addressing hash of tensor names, -1 = empty */
    uint32_t name_index_cap;       /* power of two */
    void **keep;                   /* buffers owned by the model, freed at close */
    size_t nkeep, capkeep;
    /* graph executor state (filled by the graph engineer's cz_graph_load) */
    void *graph;
    void (*graph_free)(cz_model *);
};

/* Graph hook (implemented by the graph executor, src/graph.c): called at the end of
 * cz_open_*, after every tensor form is built. Returns CZ_OK or an error that fails the
 * open (the model is then closed, graph_free included). */
cz_status cz_graph_load(cz_model *m, char *err, size_t errlen);

/* Tensor lookup: index of `name`, or -1. */
int cz_model_find_tensor(const cz_model *m, const char *name);
const cz_tensor_entry *cz_model_tensor(const cz_model *m, int index);   /* NULL if out of range */
/* Dense data pointers per the rule at the top (NULL when not kept). */
const void *cz_model_tensor_data(const cz_model *m, int index);
const float *cz_model_tensor_f32(const cz_model *m, int index);
/* Decode any tensor densely as float32 (count must be numel); for big compressed weights. */
cz_status cz_model_decode_f32(const cz_model *m, int index, float *out, uint64_t count,
                              char *err, size_t errlen);

/* ---- format layer internals (shared between its .c files) ------------------------- */

uint32_t cz_crc32(uint32_t crc, const void *data, size_t len);   /* zlib crc32 semantics */

/* Validate preamble/header/sections/tensors/graph; fills m (bytes/size/alloc set). */
cz_status cz_container_parse(cz_model *m, char *err, size_t errlen);

/* A decoded stream: `n` elements of `dtype` (symbol streams: u8 symbols < 2^bits). */
typedef struct {
    const void *data;
    void *owned;                   /* allocator memory to free, or NULL (points into file) */
    uint64_t n;
    cz_sdtype dtype;
} cz_buf;
/* Verify the section CRC, then entropy-decode. `tensor` names the tensor for messages. */
cz_status cz_stream_read(const cz_model *m, const cz_stream_desc *s, const char *tensor,
                         cz_buf *out, char *err, size_t errlen);
cz_status cz_section_check(const cz_model *m, uint32_t sec, const char *tensor,
                           const char *path, char *err, size_t errlen);
void cz_buf_free(const cz_model *m, cz_buf *b);

/* Decode a node densely to float32 (newly allocated, node->size elements). */
cz_status cz_node_decode_f32(const cz_model *m, const cz_node *node, const char *tensor,
                             float **out, char *err, size_t errlen);
/* Decode tensor `index` densely into `out` in the tensor's dtype (numel * dtype size). */
cz_status cz_tensor_decode(const cz_model *m, int index, void *out, char *err, size_t errlen);

/* The relidx validation walk (codecs.c): every check of the decode; writes the dense values
 * into out (rows x cols, zeroed by the caller) when out != NULL and the absolute column of
 * every value into col16 (cols <= 65536) when col16 != NULL. 0, or a failure code 1..4 with
 * *bad_row set: 1 a value lands past the end of the row, 2 a filler moves past it, 3 the
 * row's gaps consume more values than val_ptr gives it, 4 fewer. */
int cz_relidx_walk(const uint8_t *gaps, const int64_t *gp, const int64_t *vp, int64_t rows,
                   int64_t cols, int gap_bits, const float *values, float *out, uint16_t *col16,
                   int64_t *bad_row);

/* Build the kernel form of a node (memory kept by the model). */
cz_status cz_form_build(cz_model *m, const cz_node *node, const char *tensor, cz_form **out,
                        char *err, size_t errlen);
/* Record a buffer as owned by the model (freed at close); CZ_ERR_MEMORY on failure
 * (the buffer is then freed). */
cz_status cz_model_keep(cz_model *m, void *p, char *err, size_t errlen);

float cz_half_to_float(uint16_t h);
uint16_t cz_float_to_half(double x);   /* round to nearest even */
float cz_bf16_to_float(uint16_t b);

/* Error helper: "msg (tensor 'T', stream 'P', offset O)" like the Python messages.
 * tensor/path NULL and offset < 0 are omitted. */
cz_status cz_fail_at(char *err, size_t errlen, cz_status st, const char *tensor,
                     const char *path, int64_t offset, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

#endif /* CZ_MODEL_H */
