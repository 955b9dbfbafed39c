/*
 * graph_ops.c -- op set 1 as data: the op table (czmodel/graph/ops.py: input/output counts,
 * attribute schemas with defaults, allowed values and minimums, cross-attribute checks) and
 * the decoding of a node's attribute map against it. Used by graph.c.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "graph_ops.h"

#define MAX_ATTR_LIST (1 << 20)
#define MAX_ATTRS 64

/* ---- the op table (czmodel/graph/ops.py) ---------------------------------------------- */


static const char *const AUTO_PAD_CH[] = {"NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID", NULL};
static const char *const DTYPE_CH[] = {"f64", "f32", "f16", "i64", "i32", "i16", "i8", "u8",
                                       "u16", "u32", "bool", NULL};
static const cz_dtype DTYPE_CH_ID[] = {CZ_F64, CZ_F32, CZ_F16, CZ_I64, CZ_I32, CZ_I16,
                                       CZ_I8, CZ_U8, CZ_U16, CZ_U32, CZ_BOOL};
static const char *const GELU_CH[] = {"none", "tanh", NULL};
static const char *const CTM_CH[] = {"half_pixel", "asymmetric", "align_corners",
                                     "pytorch_half_pixel", NULL};
static const char *const RMODE_CH[] = {"nearest", "linear", NULL};
static const char *const NMODE_CH[] = {"round_prefer_floor", "round_prefer_ceil", "floor",
                                       "ceil", NULL};
static const char *const PADMODE_CH[] = {"constant", NULL};
static const int64_t B01[] = {0, 1, INT64_MIN};
static const int64_t ONLY0[] = {0, INT64_MIN};
static const int64_t ONLY1[] = {1, INT64_MIN};

#define A_INT(n, d) {n, AT_INT, 1, d, 0, NULL, NULL, NULL, 0, 0, 0}
#define A_INTC(n, d, c) {n, AT_INT, 1, d, 0, NULL, NULL, c, 0, 0, 0}
#define A_INTMIN(n, d, m) {n, AT_INT, 1, d, 0, NULL, NULL, NULL, 1, m, 0}
#define A_INTOPTMIN(n, m) {n, AT_INT, 0, 0, 0, NULL, NULL, NULL, 1, m, 0}
#define A_INTOPT(n) {n, AT_INT, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0}
#define A_INTREQ(n) {n, AT_INT, 2, 0, 0, NULL, NULL, NULL, 0, 0, 0}
#define A_FLT(n, d) {n, AT_FLOAT, 1, 0, d, NULL, NULL, NULL, 0, 0, 0}
#define A_FLTNF(n, d) {n, AT_FLOAT, 1, 0, d, NULL, NULL, NULL, 0, 0, 1}
#define A_STR(n, d, c) {n, AT_STR, 1, 0, 0, d, c, NULL, 0, 0, 0}
#define A_STRREQ(n, c) {n, AT_STR, 2, 0, 0, NULL, c, NULL, 0, 0, 0}
#define A_INTS(n) {n, AT_INTS, 0, 0, 0, NULL, NULL, NULL, 0, 0, 0}
#define A_INTSMIN(n, m) {n, AT_INTS, 0, 0, 0, NULL, NULL, NULL, 1, m, 0}
#define A_INTSREQMIN(n, m) {n, AT_INTS, 2, 0, 0, NULL, NULL, NULL, 1, m, 0}

static const attr_spec AS_GEMM[] = {A_FLT("alpha", 1.0), A_FLT("beta", 1.0),
                                    A_INTC("transA", 0, B01), A_INTC("transB", 0, B01)};
#define CONV_COMMON                                                                        \
    A_STR("auto_pad", "NOTSET", AUTO_PAD_CH), A_INTSMIN("dilations", 1),                   \
        A_INTMIN("group", 1, 1), A_INTSMIN("kernel_shape", 1), A_INTSMIN("pads", 0),       \
        A_INTSMIN("strides", 1)
static const attr_spec AS_CONV[] = {CONV_COMMON};
static const attr_spec AS_CONVT[] = {CONV_COMMON, A_INTSMIN("output_padding", 0),
                                     A_INTSMIN("output_shape", 1)};
static const attr_spec AS_MAXPOOL[] = {
    A_STR("auto_pad", "NOTSET", AUTO_PAD_CH), A_INTC("ceil_mode", 0, B01),
    A_INTSMIN("dilations", 1), A_INTSREQMIN("kernel_shape", 1), A_INTSMIN("pads", 0),
    A_INTC("storage_order", 0, ONLY0), A_INTSMIN("strides", 1)};
static const attr_spec AS_AVGPOOL[] = {
    A_STR("auto_pad", "NOTSET", AUTO_PAD_CH), A_INTC("ceil_mode", 0, B01),
    A_INTC("count_include_pad", 0, B01), A_INTSREQMIN("kernel_shape", 1),
    A_INTSMIN("pads", 0), A_INTSMIN("strides", 1)};
static const attr_spec AS_BN[] = {A_FLT("epsilon", 1e-5), A_FLT("momentum", 0.9),
                                  A_INTC("training_mode", 0, ONLY0)};
static const attr_spec AS_LEAKY[] = {A_FLT("alpha", 0.01)};
static const attr_spec AS_HSIG[] = {A_FLT("alpha", 0.2), A_FLT("beta", 0.5)};
static const attr_spec AS_GELU[] = {A_STR("approximate", "none", GELU_CH)};
static const attr_spec AS_SOFTMAX[] = {A_INT("axis", -1)};
static const attr_spec AS_LN[] = {A_INT("axis", -1), A_FLT("epsilon", 1e-5),
                                  A_INTC("stash_type", 1, ONLY1)};
static const attr_spec AS_REDUCE[] = {A_INTS("axes"), A_INTC("keepdims", 1, B01),
                                      A_INTC("noop_with_empty_axes", 0, B01)};
static const attr_spec AS_ARGMAX[] = {A_INT("axis", 0), A_INTC("keepdims", 1, B01),
                                      A_INTC("select_last_index", 0, B01)};
static const attr_spec AS_CONCAT[] = {A_INTREQ("axis")};
static const attr_spec AS_SPLIT[] = {A_INT("axis", 0), A_INTOPTMIN("num_outputs", 1)};
static const attr_spec AS_RESHAPE[] = {A_INTC("allowzero", 0, B01)};
static const attr_spec AS_FLATTEN[] = {A_INT("axis", 1)};
static const attr_spec AS_TRANSPOSE[] = {A_INTS("perm")};
static const attr_spec AS_GATHER[] = {A_INT("axis", 0)};
static const attr_spec AS_RESIZE[] = {
    A_STR("coordinate_transformation_mode", "half_pixel", CTM_CH),
    A_STR("mode", "nearest", RMODE_CH), A_STR("nearest_mode", "round_prefer_floor", NMODE_CH),
    A_FLT("cubic_coeff_a", -0.75), A_INTC("exclude_outside", 0, ONLY0),
    A_FLT("extrapolation_value", 0.0)};
static const attr_spec AS_CAST[] = {A_STRREQ("to", DTYPE_CH)};
static const attr_spec AS_SHAPE[] = {A_INT("start", 0), A_INTOPT("end")};
static const attr_spec AS_COS[] = {A_FLTNF("value", 0.0), A_STR("dtype", "f32", DTYPE_CH)};
static const attr_spec AS_PAD[] = {A_STR("mode", "constant", PADMODE_CH)};
static const attr_spec AS_QL[] = {A_INT("axis", 1), A_INTC("saturate", 1, ONLY1)};
static const attr_spec AS_DQL[] = {A_INT("axis", 1)};
static const attr_spec AS_ISINF[] = {A_INTC("detect_negative", 1, B01),
                                     A_INTC("detect_positive", 1, B01)};

static cz_status check_spatial(const op_spec *, const char *, const cz_attr *, int, const int *, int,
                               char *, size_t);
static cz_status check_split(const op_spec *, const char *, const cz_attr *, int,
                              const int *, int, char *, size_t);
static cz_status check_reduce(const op_spec *, const char *, const cz_attr *, int,
                              const int *, int, char *, size_t);
static cz_status check_resize(const op_spec *, const char *, const cz_attr *, int,
                              const int *, int, char *, size_t);

#define NA(a) a, (int)(sizeof(a) / sizeof(a[0]))
#define UN(n) {n, 1, 1, 1, 1, NULL, 0, NULL}
#define UNA(n, a) {n, 1, 1, 1, 1, NA(a), NULL}
#define BI(n) {n, 2, 2, 1, 1, NULL, 0, NULL}

static const op_spec OPS[OP__COUNT] = {
    [OP_GEMM] = {"Gemm", 2, 3, 1, 1, NA(AS_GEMM), NULL},
    [OP_MATMUL] = {"MatMul", 2, 2, 1, 1, NULL, 0, NULL},
    [OP_LINEAR] = {"Linear", 2, 3, 1, 1, NULL, 0, NULL},
    [OP_CONV] = {"Conv", 2, 3, 1, 1, NA(AS_CONV), check_spatial},
    [OP_CONVTRANSPOSE] = {"ConvTranspose", 2, 3, 1, 1, NA(AS_CONVT), check_spatial},
    [OP_MAXPOOL] = {"MaxPool", 1, 1, 1, 1, NA(AS_MAXPOOL), check_spatial},
    [OP_AVERAGEPOOL] = {"AveragePool", 1, 1, 1, 1, NA(AS_AVGPOOL), check_spatial},
    [OP_GLOBALAVERAGEPOOL] = UN("GlobalAveragePool"),
    [OP_GLOBALMAXPOOL] = UN("GlobalMaxPool"),
    [OP_BATCHNORM] = {"BatchNormalization", 5, 5, 1, 1, NA(AS_BN), NULL},
    [OP_RELU] = UN("Relu"),
    [OP_LEAKYRELU] = UNA("LeakyRelu", AS_LEAKY),
    [OP_CLIP] = {"Clip", 1, 3, 1, 1, NULL, 0, NULL},
    [OP_SIGMOID] = UN("Sigmoid"),
    [OP_TANH] = UN("Tanh"),
    [OP_HARDSIGMOID] = UNA("HardSigmoid", AS_HSIG),
    [OP_HARDSWISH] = UN("HardSwish"),
    [OP_GELU] = UNA("Gelu", AS_GELU),
    [OP_ERF] = UN("Erf"),
    [OP_SOFTMAX] = UNA("Softmax", AS_SOFTMAX),
    [OP_LAYERNORM] = {"LayerNormalization", 2, 3, 1, 1, NA(AS_LN), NULL},
    [OP_ADD] = BI("Add"), [OP_SUB] = BI("Sub"), [OP_MUL] = BI("Mul"), [OP_DIV] = BI("Div"),
    [OP_POW] = BI("Pow"),
    [OP_SQRT] = UN("Sqrt"), [OP_NEG] = UN("Neg"), [OP_ABS] = UN("Abs"), [OP_EXP] = UN("Exp"),
    [OP_LOG] = UN("Log"), [OP_NOT] = UN("Not"),
    [OP_EQUAL] = BI("Equal"), [OP_LESS] = BI("Less"), [OP_GREATER] = BI("Greater"),
    [OP_WHERE] = {"Where", 3, 3, 1, 1, NULL, 0, NULL},
    [OP_REDUCEMEAN] = {"ReduceMean", 1, 2, 1, 1, NA(AS_REDUCE), check_reduce},
    [OP_REDUCESUM] = {"ReduceSum", 1, 2, 1, 1, NA(AS_REDUCE), check_reduce},
    [OP_REDUCEMAX] = {"ReduceMax", 1, 2, 1, 1, NA(AS_REDUCE), check_reduce},
    [OP_ARGMAX] = UNA("ArgMax", AS_ARGMAX),
    [OP_CONCAT] = {"Concat", 1, 64, 1, 1, NA(AS_CONCAT), NULL},
    [OP_SPLIT] = {"Split", 1, 2, 1, 64, NA(AS_SPLIT), check_split},
    [OP_SLICE] = {"Slice", 3, 5, 1, 1, NULL, 0, NULL},
    [OP_RESHAPE] = {"Reshape", 2, 2, 1, 1, NA(AS_RESHAPE), NULL},
    [OP_FLATTEN] = UNA("Flatten", AS_FLATTEN),
    [OP_TRANSPOSE] = UNA("Transpose", AS_TRANSPOSE),
    [OP_SQUEEZE] = {"Squeeze", 1, 2, 1, 1, NULL, 0, NULL},
    [OP_UNSQUEEZE] = {"Unsqueeze", 2, 2, 1, 1, NULL, 0, NULL},
    [OP_GATHER] = {"Gather", 2, 2, 1, 1, NA(AS_GATHER), NULL},
    [OP_RESIZE] = {"Resize", 1, 4, 1, 1, NA(AS_RESIZE), check_resize},
    [OP_CAST] = UNA("Cast", AS_CAST),
    [OP_SHAPE] = UNA("Shape", AS_SHAPE),
    [OP_IDENTITY] = UN("Identity"),
    [OP_EXPAND] = {"Expand", 2, 2, 1, 1, NULL, 0, NULL},
    [OP_CONSTANTOFSHAPE] = UNA("ConstantOfShape", AS_COS),
    [OP_RANGE] = {"Range", 3, 3, 1, 1, NULL, 0, NULL},
    [OP_TILE] = {"Tile", 2, 2, 1, 1, NULL, 0, NULL},
    [OP_PAD] = {"Pad", 2, 4, 1, 1, NA(AS_PAD), NULL},
    [OP_QUANTIZE] = {"QuantizeLinear", 2, 3, 1, 1, NA(AS_QL), NULL},
    [OP_DEQUANTIZE] = {"DequantizeLinear", 2, 3, 1, 1, NA(AS_DQL), NULL},
    [OP_DYNQUANTIZE] = {"DynamicQuantizeLinear", 1, 1, 3, 3, NULL, 0, NULL},
    [OP_LESSOREQUAL] = BI("LessOrEqual"), [OP_GREATEROREQUAL] = BI("GreaterOrEqual"),
    [OP_AND] = BI("And"), [OP_OR] = BI("Or"), [OP_XOR] = BI("Xor"),
    [OP_ISNAN] = UN("IsNaN"), [OP_ISINF] = UNA("IsInf", AS_ISINF),
    [OP_MIN] = {"Min", 1, 64, 1, 1, NULL, 0, NULL},
    [OP_MAX] = {"Max", 1, 64, 1, 1, NULL, 0, NULL},
    [OP_SOFTMAX_SA] = {"Softmax(x*s+b)", 3, 3, 1, 1, NA(AS_SOFTMAX), NULL},
};

const char *cz_op_name(cz_op_id op) {
    return (op >= 0 && op < OP__COUNT) ? OPS[op].name : "?";
}

const char *cz_dtype_name(cz_dtype dt) {
    for (int i = 0; DTYPE_CH[i]; i++)
        if (DTYPE_CH_ID[i] == dt) return DTYPE_CH[i];
    return "?";
}

int cz_dtype_from_name(const char *s) {
    for (int i = 0; DTYPE_CH[i]; i++)
        if (strcmp(DTYPE_CH[i], s) == 0) return (int)DTYPE_CH_ID[i];
    return 0;
}

/* ---- cross-attribute checks ------------------------------------------------------------ */

static cz_status len_check(const char *where, const cz_attr *a, const char *key, int n,
                           int unsupported, char *err, size_t errlen) {
    if (a->set && a->n != n)
        return cz_fail(err, errlen, unsupported ? CZ_ERR_UNSUPPORTED : CZ_ERR_FORMAT,
                       "%s: attribute '%s' must have %d values (op set 1 supports 2-D only), "
                       "got %d", where, key, n, a->n);
    return CZ_OK;
}

static cz_status check_split(const op_spec *sp, const char *where, const cz_attr *a,
                              int n_in, const int *in, int n_out, char *err,
                              size_t errlen) {
    (void)sp;
    const cz_attr *no = &a[A_SPLIT_NUM_OUTPUTS];
    if (no->set) {
        if (n_in > 1 && in[1] != -1)
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "%s: 'num_outputs' and the 'split' input are mutually exclusive",
                           where);
        if (no->i != n_out)
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "%s: num_outputs=%lld but the node has %d outputs", where,
                           (long long)no->i, n_out);
    }
    return CZ_OK;
}

static cz_status check_reduce(const op_spec *sp, const char *where, const cz_attr *a,
                              int n_in, const int *in, int n_out, char *err,
                              size_t errlen) {
    (void)sp;
    (void)n_out;
    if (a[A_RED_AXES].set && n_in > 1 && in[1] != -1)
        return cz_fail(err, errlen, CZ_ERR_FORMAT,
                       "%s: axes given both as attribute and as input", where);
    return CZ_OK;
}

static cz_status check_resize(const op_spec *sp, const char *where, const cz_attr *a,
                              int n_in, const int *in, int n_out, char *err,
                              size_t errlen) {
    (void)sp;
    (void)a; (void)n_out;
    int sc = n_in > 2 && in[2] != -1, sz = n_in > 3 && in[3] != -1;
    if (sc && sz)
        return cz_fail(err, errlen, CZ_ERR_FORMAT,
                       "%s: 'scales' and 'sizes' are mutually exclusive", where);
    if (!sc && !sz)
        return cz_fail(err, errlen, CZ_ERR_FORMAT,
                       "%s: one of 'scales' (input 2) or 'sizes' (input 3) is required", where);
    return CZ_OK;
}

/* the spatial check by attribute name (same for Conv, ConvTranspose, MaxPool, AveragePool) */
static cz_status check_spatial(const op_spec *sp, const char *where, const cz_attr *a,
                               int n_in, const int *in, int n_out, char *err, size_t errlen) {
    (void)n_in; (void)in; (void)n_out;
    static const struct { const char *key; int n, unsup; } K[] = {
        {"kernel_shape", 2, 1}, {"strides", 2, 1}, {"dilations", 2, 1}, {"pads", 4, 0},
        {"output_padding", 2, 0}, {"output_shape", 2, 0}};
    for (size_t k = 0; k < sizeof(K) / sizeof(K[0]); k++)
        for (int j = 0; j < sp->n_attrs; j++)
            if (strcmp(sp->attrs[j].name, K[k].key) == 0) {
                cz_status st = len_check(where, &a[j], K[k].key, K[k].n, K[k].unsup, err,
                                         errlen);
                if (st) return st;
            }
    return CZ_OK;
}

/* ---- helpers ---------------------------------------------------------------------------- */

size_t cz_utf8_chars(const char *s, size_t bytes) {
    size_t n = 0;
    for (size_t i = 0; i < bytes; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80) n++;
    return n;
}

/* ---- attributes ------------------------------------------------------------------------ */

static int in_choices(const attr_spec *s, const cz_mp *x) {
    if (s->choices) {
        for (int i = 0; s->choices[i]; i++)
            if (strcmp(s->choices[i], x->v.s) == 0) return i;
        return -1;
    }
    if (s->ichoices) {
        for (int i = 0; s->ichoices[i] != INT64_MIN; i++)
            if (s->ichoices[i] == x->v.i) return i;
        return -1;
    }
    return 0;
}

static const char *type_name(const cz_mp *x) {
    switch (x->type) {
    case CZ_MP_NIL: return "NoneType";
    case CZ_MP_BOOL: return "bool";
    case CZ_MP_INT: return "int";
    case CZ_MP_FLOAT: return "float";
    case CZ_MP_STR: return "str";
    case CZ_MP_BIN: return "bytes";
    case CZ_MP_ARRAY: return "list";
    default: return "dict";
    }
}

static const char *attr_type_name(cz_attr_type t) {
    static const char *N[] = {"?", "int", "float", "str", "ints", "floats", "strs"};
    return N[t];
}

/* one scalar; base: AT_INT/AT_FLOAT/AT_STR. Fills iv / fv. */
static cz_status attr_scalar(const attr_spec *s, cz_attr_type base, const cz_mp *x,
                             const char *where, int64_t *iv, double *fv, char *err,
                             size_t errlen) {
    const char *key = s->name, *tn = attr_type_name(s->type);
    if (base == AT_INT) {
        if (x->type != CZ_MP_INT)
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: attribute '%s' must be %s, got %s",
                           where, key, tn, type_name(x));
        if (x->len)                /* msgpack uint above INT64_MAX (saturated by the parser) */
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "%s: attribute '%s' is outside the int64 range", where, key);
        if (s->has_min && x->v.i < s->min)
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "%s: attribute '%s' value %lld must be >= %lld", where, key,
                           (long long)x->v.i, (long long)s->min);
        *iv = x->v.i;
    } else if (base == AT_FLOAT) {
        double f;
        if (x->type == CZ_MP_INT) {
            if (x->v.i > ((int64_t)1 << 53) || x->v.i < -((int64_t)1 << 53))
                return cz_fail(err, errlen, CZ_ERR_FORMAT,
                               "%s: attribute '%s' value %lld is not a float", where, key,
                               (long long)x->v.i);
            f = (double)x->v.i;
        } else if (x->type == CZ_MP_FLOAT) {
            f = x->v.f;
        } else {
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: attribute '%s' must be %s, got %s",
                           where, key, tn, type_name(x));
        }
        if (!s->nonfinite && !isfinite(f))
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: attribute '%s' must be finite",
                           where, key);
        *fv = f;
    } else {
        if (x->type != CZ_MP_STR)
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: attribute '%s' must be %s, got %s",
                           where, key, tn, type_name(x));
        if (cz_utf8_chars(x->v.s, x->len) > MAX_NAME)
            return cz_fail(err, errlen, CZ_ERR_LIMIT,
                           "%s: attribute '%s' string exceeds %d characters", where, key,
                           MAX_NAME);
    }
    return CZ_OK;
}

static cz_status parse_attr(const attr_spec *s, const cz_mp *v, const char *where,
                            cz_attr *a, cz_arena *ar, char *err, size_t errlen) {
    cz_status st;
    a->present = a->set = 1;
    if (s->type == AT_INTS || s->type == AT_FLOATS || s->type == AT_STRS) {
        cz_attr_type base = s->type == AT_INTS ? AT_INT : s->type == AT_FLOATS ? AT_FLOAT
                                                                               : AT_STR;
        if (v->type != CZ_MP_ARRAY)
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "%s: attribute '%s' must be a list (%s), got %s", where, s->name,
                           attr_type_name(s->type), type_name(v));
        if (v->len > MAX_ATTR_LIST)
            return cz_fail(err, errlen, CZ_ERR_LIMIT,
                           "%s: attribute '%s' has %u elements, over %d", where, s->name,
                           v->len, MAX_ATTR_LIST);
        int64_t *iv = NULL;
        double *fv = NULL;
        if (base == AT_INT) iv = cz_arena_alloc(ar, (size_t)v->len * 8 + 8, 8);
        if (base == AT_FLOAT) fv = cz_arena_alloc(ar, (size_t)v->len * 8 + 8, 8);
        if ((base == AT_INT && !iv) || (base == AT_FLOAT && !fv))
            return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory parsing the graph");
        for (uint32_t i = 0; i < v->len; i++) {
            int64_t ti = 0;
            double tf = 0;
            st = attr_scalar(s, base, &v->v.items[i], where, &ti, &tf, err, errlen);
            if (st) return st;
            if (iv) iv[i] = ti;
            if (fv) fv[i] = tf;
        }
        for (uint32_t i = 0; i < v->len; i++)
            if (in_choices(s, &v->v.items[i]) < 0)
                return cz_fail(err, errlen, CZ_ERR_UNSUPPORTED,
                               "%s: attribute '%s' has an unsupported value", where, s->name);
        a->n = (int)v->len;
        a->ints = iv;
        a->floats = fv;
        return CZ_OK;
    }
    st = attr_scalar(s, s->type, v, where, &a->i, &a->f, err, errlen);
    if (st) return st;
    int c = in_choices(s, v);
    if (c < 0) {
        if (s->type == AT_STR)
            return cz_fail(err, errlen, CZ_ERR_UNSUPPORTED,
                           "%s: attribute '%s' value '%.40s' is not supported", where, s->name,
                           v->v.s);
        return cz_fail(err, errlen, CZ_ERR_UNSUPPORTED,
                       "%s: attribute '%s' value %lld is not supported", where, s->name,
                       (long long)v->v.i);
    }
    if (s->type == AT_STR) {
        a->s = v->v.s;
        a->choice = s->choices == DTYPE_CH ? (int)DTYPE_CH_ID[c] : c;
    }
    return CZ_OK;
}

static void attr_default(const attr_spec *s, cz_attr *a) {
    memset(a, 0, sizeof *a);
    if (s->deflt != 1) return;
    a->set = 1;
    a->i = s->di;
    a->f = s->df;
    a->s = s->ds;
    if (s->ds && s->choices)
        for (int i = 0; s->choices[i]; i++)
            if (strcmp(s->choices[i], s->ds) == 0)
                a->choice = s->choices == DTYPE_CH ? (int)DTYPE_CH_ID[i] : i;
}

const op_spec *cz_op_spec(int op) { return op >= 0 && op < OP__COUNT ? &OPS[op] : NULL; }

int cz_op_lookup(const char *name) {
    for (int k = 0; k < OP__FILE_COUNT; k++)   /* (not the internal fused ops) */
        if (strcmp(OPS[k].name, name) == 0) return k;
    return -1;
}

cz_status cz_node_attrs(const op_spec *sp, const cz_mp *attrs, const char *where, cz_attr *av,
                        cz_arena *ar, char *err, size_t errlen) {
    cz_status st;
    if (attrs->type != CZ_MP_MAP)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: attrs must be a map", where);
    if (attrs->len > MAX_ATTRS)
        return cz_fail(err, errlen, CZ_ERR_LIMIT, "%s: %u attributes exceed %d", where,
                       attrs->len, MAX_ATTRS);
    /* unknown attributes: report the smallest name (as the Python validator does) */
    const char *unknown = NULL;
    for (uint32_t k = 0; k < attrs->len; k++) {
        const char *key = attrs->v.items[2 * k].v.s;
        int known = 0;
        for (int j = 0; j < sp->n_attrs; j++) known |= strcmp(sp->attrs[j].name, key) == 0;
        if (!known && (!unknown || strcmp(key, unknown) < 0)) unknown = key;
    }
    if (unknown)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: unknown attribute '%.60s'", where,
                       unknown);
    for (int j = 0; j < sp->n_attrs; j++) {
        const attr_spec *as = &sp->attrs[j];
        attr_default(as, &av[j]);
        const cz_mp *x = cz_mp_get(attrs, as->name);
        if (x) {
            if ((st = parse_attr(as, x, where, &av[j], ar, err, errlen))) return st;
        } else if (as->deflt == 2) {
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: required attribute '%s' is missing",
                           where, as->name);
        }
    }
    return CZ_OK;
}
