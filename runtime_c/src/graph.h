/*
 * graph.h -- the model graph of a .cz file as a compact execution plan (graph.c), and the
 * executor that runs it (exec.c, ops_*.c). Internal; spec: spec/ops.md, czmodel/graph.
 *
 * graph.c validates the header's "graph" map with every rule of the Python validator
 * (czmodel/graph/model.py + ops.py) and builds a cz_graph: values numbered (graph inputs,
 * file tensors, node outputs), per node an op id, value ids of inputs/outputs and the
 * attributes decoded against the op's schema (defaults filled in), plus liveness.
 * The plan is immutable after cz_graph_build: cz_run only reads it (thread-safe).
 */
#ifndef CZ_GRAPH_H
#define CZ_GRAPH_H

#include "cz_internal.h"

/* ---- op ids (order = the table in graph.c) ------------------------------------------- */
typedef enum {
    OP_GEMM, OP_MATMUL, OP_LINEAR, OP_CONV, OP_CONVTRANSPOSE, OP_MAXPOOL, OP_AVERAGEPOOL,
    OP_GLOBALAVERAGEPOOL, OP_GLOBALMAXPOOL, OP_BATCHNORM, OP_RELU, OP_LEAKYRELU, OP_CLIP,
    OP_SIGMOID, OP_TANH, OP_HARDSIGMOID, OP_HARDSWISH, OP_GELU, OP_ERF, OP_SOFTMAX,
    OP_LAYERNORM, OP_ADD, OP_SUB, OP_MUL, OP_DIV, OP_POW, OP_SQRT, OP_NEG, OP_ABS, OP_EXP,
    OP_LOG, OP_NOT, OP_EQUAL, OP_LESS, OP_GREATER, OP_WHERE, OP_REDUCEMEAN, OP_REDUCESUM,
    OP_REDUCEMAX, OP_ARGMAX, OP_CONCAT, OP_SPLIT, OP_SLICE, OP_RESHAPE, OP_FLATTEN,
    OP_TRANSPOSE, OP_SQUEEZE, OP_UNSQUEEZE, OP_GATHER, OP_RESIZE, OP_CAST, OP_SHAPE,
    OP_IDENTITY, OP_EXPAND, OP_CONSTANTOFSHAPE, OP_RANGE, OP_TILE, OP_PAD, OP_QUANTIZE,
    OP_DEQUANTIZE, OP_DYNQUANTIZE,
    /* comparison / logical family and Min / Max (ops_elementwise.c, ops_logical.c) */
    OP_LESSOREQUAL, OP_GREATEROREQUAL, OP_AND, OP_OR, OP_XOR, OP_ISNAN, OP_ISINF, OP_MIN,
    OP_MAX,
    /* internal ops made by the fusion pass of graph.c (graph_fuse.c), never named by a file:
     * Softmax(X * S + B) with S a scalar file tensor (the attention scale) and B any
     * broadcastable f32 (the mask), Softmax's attributes */
    OP_SOFTMAX_SA,
    OP__COUNT
} cz_op_id;
#define OP__FILE_COUNT OP_SOFTMAX_SA   /* ops a file may name: ids below this */

/* Attribute slots per op: the index of an attribute in that op's schema (graph.c). */
enum { A_GEMM_ALPHA, A_GEMM_BETA, A_GEMM_TRANSA, A_GEMM_TRANSB };
/* Conv / ConvTranspose share the first six; ConvTranspose adds two. */
enum { A_CONV_AUTO_PAD, A_CONV_DILATIONS, A_CONV_GROUP, A_CONV_KERNEL_SHAPE, A_CONV_PADS,
       A_CONV_STRIDES, A_CONV_OUTPUT_PADDING, A_CONV_OUTPUT_SHAPE };
enum { A_MAXPOOL_AUTO_PAD, A_MAXPOOL_CEIL_MODE, A_MAXPOOL_DILATIONS, A_MAXPOOL_KERNEL_SHAPE,
       A_MAXPOOL_PADS, A_MAXPOOL_STORAGE_ORDER, A_MAXPOOL_STRIDES };
enum { A_AVGPOOL_AUTO_PAD, A_AVGPOOL_CEIL_MODE, A_AVGPOOL_COUNT_INCLUDE_PAD,
       A_AVGPOOL_KERNEL_SHAPE, A_AVGPOOL_PADS, A_AVGPOOL_STRIDES };
enum { A_BN_EPSILON, A_BN_MOMENTUM, A_BN_TRAINING_MODE };
enum { A_LEAKY_ALPHA };
enum { A_HSIG_ALPHA, A_HSIG_BETA };
enum { A_GELU_APPROXIMATE };
enum { A_SOFTMAX_AXIS };
enum { A_LN_AXIS, A_LN_EPSILON, A_LN_STASH_TYPE };
enum { A_RED_AXES, A_RED_KEEPDIMS, A_RED_NOOP_EMPTY };
enum { A_ARGMAX_AXIS, A_ARGMAX_KEEPDIMS, A_ARGMAX_SELECT_LAST };
enum { A_CONCAT_AXIS };
enum { A_SPLIT_AXIS, A_SPLIT_NUM_OUTPUTS };
enum { A_RESHAPE_ALLOWZERO };
enum { A_FLATTEN_AXIS };
enum { A_TRANSPOSE_PERM };
enum { A_GATHER_AXIS };
enum { A_RESIZE_CTM, A_RESIZE_MODE, A_RESIZE_NEAREST_MODE, A_RESIZE_CUBIC_A,
       A_RESIZE_EXCLUDE_OUTSIDE, A_RESIZE_EXTRAPOLATION };
enum { A_CAST_TO };
enum { A_SHAPE_START, A_SHAPE_END };
enum { A_COS_VALUE, A_COS_DTYPE };
enum { A_PAD_MODE };
enum { A_QL_AXIS, A_QL_SATURATE };
enum { A_DQL_AXIS };
enum { A_ISINF_DETECT_NEGATIVE, A_ISINF_DETECT_POSITIVE };

/* auto_pad choice indices */
enum { AUTOPAD_NOTSET, AUTOPAD_SAME_UPPER, AUTOPAD_SAME_LOWER, AUTOPAD_VALID };
/* Resize choice indices */
enum { CTM_HALF_PIXEL, CTM_ASYMMETRIC, CTM_ALIGN_CORNERS, CTM_PYTORCH_HALF_PIXEL };
enum { RMODE_NEAREST, RMODE_LINEAR };
enum { NMODE_ROUND_PREFER_FLOOR, NMODE_ROUND_PREFER_CEIL, NMODE_FLOOR, NMODE_CEIL };

typedef enum { AT_INT = 1, AT_FLOAT, AT_STR, AT_INTS, AT_FLOATS, AT_STRS } cz_attr_type;

/* One decoded attribute. present = 0: absent optional (no default); the typed fields then
 * hold the default when the schema has one (has_default). */
typedef struct {
    int present;                 /* given in the file */
    int set;                     /* given or defaulted (0: absent optional without default) */
    int64_t i;                   /* AT_INT */
    double f;                    /* AT_FLOAT */
    const char *s;               /* AT_STR */
    int choice;                  /* AT_STR with choices: index into the choices; dtype for
                                    Cast.to / ConstantOfShape.dtype: a cz_dtype */
    int n;                       /* list length */
    const int64_t *ints;         /* AT_INTS */
    const double *floats;        /* AT_FLOATS */
} cz_attr;

/* VK_FUSED: an intermediate of a chain that graph_fuse.c made one node (never produced) */
typedef enum { VK_INPUT = 1, VK_TENSOR, VK_NODE, VK_FUSED } cz_value_kind;

typedef struct {
    const char *name;
    cz_value_kind kind;
    int index;                   /* VK_INPUT: graph input #; VK_TENSOR: tensor #; VK_NODE: node # */
    int last_use;                /* index of the last node reading it; -1: never read */
    int output_index;            /* graph output # or -1 */
    /* VK_TENSOR: how ops see it */
    const cz_form *form;         /* kernel form (if every use can take it), else NULL */
    const void *dense;           /* dense data in the tensor's dtype (NULL if form-only) */
    cz_dtype dtype;
    int ndim;
    int64_t shape[CZ_MAX_NDIM];
} cz_gvalue;

typedef struct {
    const char *name;
    cz_dtype dtype;
    int ndim;
    int64_t shape[CZ_MAX_NDIM];  /* -1: symbolic */
    int sym[CZ_MAX_NDIM];        /* symbol id for a symbolic dim, else -1 */
    const char *sym_name[CZ_MAX_NDIM];
    int value;                   /* value id */
} cz_gio;

typedef struct {
    cz_op_id op;
    const char *name;
    const char *op_name;
    int n_in, n_out;
    const int *in;               /* value ids; -1 = omitted optional input */
    const int *out;
    const cz_attr *attr;         /* the op's schema order */
    int n_free;                  /* values whose last use is this node (to free after it) */
    const int *free_ids;
} cz_gnode;

typedef struct cz_graph {
    int n_values, n_nodes, n_inputs, n_outputs, n_syms;
    cz_gvalue *values;
    cz_gnode *nodes;
    cz_gio *inputs, *outputs;
    cz_arena arena;              /* everything above lives here */
    const cz_allocator *alloc;
    void **owned;                /* dense decodings of file tensors (allocator memory) */
    int n_owned;
} cz_graph;

typedef struct cz_model cz_model;

/* Validate the header graph of `m` and attach the plan to m (m->graph, m->graph_free).
 * Without a graph in the file: CZ_OK and nothing attached. */
cz_status cz_graph_build(cz_model *m, char *err, size_t errlen);
void cz_graph_free(void *graph, const cz_allocator *a);
/* The fusion pass (graph_fuse.c), run by cz_graph_build before the liveness. */
cz_status cz_graph_fuse(cz_graph *g, const cz_model *m, char *err, size_t errlen);
const cz_graph *cz_graph_of(const cz_model *m);

/* Name of an op id; names of dtypes ("f32", ...). */
const char *cz_op_name(cz_op_id op);
const char *cz_dtype_name(cz_dtype dt);
int cz_dtype_from_name(const char *s);   /* 0 if unknown */

/* ---- executor (exec.c) --------------------------------------------------------------- */

/* A run-time value. */
typedef struct {
    cz_dtype dtype;
    int ndim;
    int64_t shape[CZ_MAX_NDIM];
    uint64_t n;                  /* elements */
    void *data;                  /* may be NULL when form != NULL (file tensor) */
    const cz_form *form;         /* file tensor with a kernel form */
    int owned;                   /* data from the allocator, freed by the executor */
    int is_file;                 /* a file tensor (read-only) */
} cz_rt;

typedef struct {
    const cz_model *m;
    const cz_graph *g;
    const cz_allocator *alloc;
    uint64_t max_bytes;          /* cap on one value */
    cz_ws ws;
    char *err;
    size_t errlen;
    const cz_gnode *node;        /* node being run (for messages) */
} cz_exec;

typedef cz_status (*cz_op_fn)(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out);

/* for (int64_t I = 0; I < N; I++) BODY over NT threads: an OpenMP loop only when NT > 1.
 * `#pragma omp parallel ... if (nt > 1)` still enters libgomp when the condition is false
 * (it builds a team of one and ends it with a barrier whose futex wake is a system call:
 * 0.3-1 us a region on this Zen 3 host, against ~20 us for a whole LeNet-300-100 call), so
 * one thread runs the plain loop instead. NT must be a plain variable name (the pragma
 * reads it). */
#define CZ_PAR_FOR(NT, I, N, ...)                                                          \
    do {                                                                                  \
        int64_t n_pf_ = (int64_t)(N);                                                     \
        if ((NT) > 1) {                                                                   \
            _Pragma(CZ_PF_STR(omp parallel for num_threads(NT) schedule(static)))         \
            for (int64_t I = 0; I < n_pf_; I++) { __VA_ARGS__; }                         \
        } else {                                                                          \
            for (int64_t I = 0; I < n_pf_; I++) { __VA_ARGS__; }                         \
        }                                                                                 \
    } while (0)
#define CZ_PF_STR(...) #__VA_ARGS__

/* Helpers the op files use (exec.c). */
cz_status cz_ex_fail(cz_exec *ex, cz_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));       /* prefixes "node 'x' (Op): " */
/* Set out's dtype/shape and allocate its data (checked sizes). */
cz_status cz_ex_alloc(cz_exec *ex, cz_rt *out, cz_dtype dt, int ndim, const int64_t *shape);
void *cz_ex_scratch(cz_exec *ex, uint64_t bytes);  /* per-node scratch (NULL: no memory) */
/* Steal in's buffer for out if in is owned and dies at this node (returns 1), else 0. */
int cz_ex_steal(cz_exec *ex, const cz_gnode *nd, int in_slot, cz_rt *in, cz_rt *out);
/* A float operand as f32 (f16/f64 converted into scratch; ints -> CZ_ERR_PARAM naming `what`). */
cz_status cz_ex_getf(cz_exec *ex, cz_rt *t, const char *what, const float **out);
void cz_rt_put_i(cz_rt *t, uint64_t k, int64_t v);   /* store with wrap-around */
static inline int cz_is_int(cz_dtype d) {
    return d == CZ_I64 || d == CZ_I32 || d == CZ_I16 || d == CZ_I8 || d == CZ_U8 ||
           d == CZ_U16 || d == CZ_U32;
}
static inline int cz_is_float(cz_dtype d) { return d == CZ_F32 || d == CZ_F16 || d == CZ_F64; }
/* Element count of a shape, checked (returns 0 on overflow and sets *ok = 0). */
uint64_t cz_shape_numel(int ndim, const int64_t *shape, int *ok);
/* Read element k of an integer / float tensor as int64 / double. */
int64_t cz_rt_get_i(const cz_rt *t, uint64_t k);
double cz_rt_get_f(const cz_rt *t, uint64_t k);
int cz_normalize_axis(int64_t axis, int rank, int *out);

/* numpy broadcasting of up to 3 operands: out shape and per-operand element strides (0 on
 * broadcast dims). Iterate: outer = n / inner positions, inner = shape[r-1] (1 if r == 0). */
typedef struct {
    int r, nin;
    int64_t shape[CZ_MAX_NDIM];
    int64_t st[3][CZ_MAX_NDIM];
    uint64_t n, inner, outer;
} cz_bcast;
int cz_bcast_init(cz_bcast *b, int nin, const int *ndims, const int64_t *const *shapes);
static inline void cz_bcast_next(const cz_bcast *b, int64_t *idx, int64_t *off) {
    for (int d = b->r - 2; d >= 0; d--) {
        idx[d]++;
        for (int k = 0; k < b->nin; k++) off[k] += b->st[k][d];
        if (idx[d] < b->shape[d]) return;
        for (int k = 0; k < b->nin; k++) off[k] -= b->st[k][d] * b->shape[d];
        idx[d] = 0;
    }
}
const char *cz_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);

/* op tables of the op files */
cz_op_fn cz_ops_elementwise(cz_op_id op);
cz_op_fn cz_ops_nn(cz_op_id op);
cz_op_fn cz_ops_shape(cz_op_id op);
cz_op_fn cz_ops_reduce(cz_op_id op);
cz_op_fn cz_ops_quant(cz_op_id op);

#endif /* CZ_GRAPH_H */
