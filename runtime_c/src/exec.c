/*
 * exec.c -- run the graph plan (graph.h): cz_run, graph input/output info, cz_free.
 *
 * One cz_run call owns everything it touches: a value table, intermediates allocated with the
 * model's allocator and released after their last use (graph.c liveness), and a scratch arena
 * (cz_ws) reset after every node. The plan is only read; those per-call resources come from
 * a run cache (below) that the call takes from the model with an atomic exchange and puts
 * back at its end, so any number of threads may run one model at once (each running call
 * holds its own cache) and a steady loop does no allocator calls after the first call
 * (MiniLM, 128 tokens: 1.6x faster than allocating per node -- the fresh pages of big
 * scratch blocks were faulted in on every node). Memory kept per idle cache: the value
 * table, one arena block (<= RC_ARENA_KEEP) and pooled intermediates (<= RC_POOL_BYTES);
 * at most GM_RUNCACHES idle caches per model, freed by cz_close.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "graph.h"
#include "graph_model.h"
#include "ops_util.h"

/* ---- helpers for the op files ---------------------------------------------------------- */

cz_status cz_ex_fail(cz_exec *ex, cz_status st, const char *fmt, ...) {
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (ex->node)
        return cz_fail(ex->err, ex->errlen, st, "node '%.100s' (%s): %s", ex->node->name,
                       ex->node->op_name, msg);
    return cz_fail(ex->err, ex->errlen, st, "%s", msg);
}

uint64_t cz_shape_numel(int ndim, const int64_t *shape, int *ok) {
    uint64_t n = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || !cz_mul_ok(n, (uint64_t)shape[i], &n)) {
            *ok = 0;
            return 0;
        }
    }
    return n;
}

/* ---- run caches (graph_model.h) --------------------------------------------------------
 * What one cz_run allocates besides its outputs -- the value table, the output selection,
 * the scratch arena's block and the buffers of intermediate values -- is kept in a run
 * cache when the call ends and reused by the next call that takes that cache: after the
 * first call a steady loop makes no allocator calls but for outputs it hands over.
 * Intermediates go to a small pool (at most RC_POOL buffers, RC_POOL_BYTES in all) when
 * they die and cz_ex_alloc takes a pooled buffer of fitting size (>= the request, at most
 * twice it + 4 KB) before asking the allocator. Every cz_exec lives in a run_ctx, which
 * is how cz_ex_alloc and rt_release find the cache of their call (NULL: no caching). */
#define RC_POOL 32
#define RC_POOL_BYTES ((uint64_t)64 << 20)
#define RC_ARENA_KEEP ((size_t)16 << 20)

struct cz_runcache {
    cz_arena arena;
    cz_rt *rt;
    int rt_cap;
    int *sel;
    int sel_cap;
    int npool;
    uint64_t pool_bytes;
    void *pool_p[RC_POOL];
    uint64_t pool_cap[RC_POOL];
};

typedef struct {
    cz_exec ex;                  /* first: ops get &ex, cz_ex_alloc casts back */
    cz_runcache *rc;
} run_ctx;

static void rc_destroy(cz_runcache *rc, const cz_allocator *a) {
    if (!rc) return;
    cz_arena_free_all(&rc->arena);
    cz_mem_free(a, rc->rt);
    cz_mem_free(a, rc->sel);
    for (int i = 0; i < rc->npool; i++) cz_mem_free(a, rc->pool_p[i]);
    cz_mem_free(a, rc);
}

void cz_gm_state_free(cz_model *m) {
    gm_state *s = m ? m->graph : NULL;
    if (!s) return;
    for (int i = 0; i < GM_RUNCACHES; i++) rc_destroy(s->idle[i], &m->alloc);
    if (s->g) cz_graph_free(s->g, &m->alloc);
    cz_mem_free(&m->alloc, s);
    m->graph = NULL;
}

static cz_runcache *rc_take(gm_state *s, const cz_allocator *a) {
    for (int i = 0; i < GM_RUNCACHES; i++) {
        cz_runcache *rc = __atomic_exchange_n(&s->idle[i], NULL, __ATOMIC_ACQ_REL);
        if (rc) return rc;
    }
    cz_runcache *rc = cz_mem_alloc(a, sizeof *rc, 64);
    if (rc) {
        memset(rc, 0, sizeof *rc);
        cz_arena_init(&rc->arena, a, 0);
    }
    return rc;
}

static void rc_give(gm_state *s, cz_runcache *rc, const cz_allocator *a) {
    for (int i = 0; i < GM_RUNCACHES; i++) {
        cz_runcache *none = NULL;
        if (__atomic_compare_exchange_n(&s->idle[i], &none, rc, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return;
    }
    rc_destroy(rc, a);   /* every slot taken: more concurrent runs than slots */
}

static void *pool_take(cz_runcache *rc, uint64_t bytes) {
    int best = -1;
    for (int i = 0; i < rc->npool; i++) {
        uint64_t c = rc->pool_cap[i];
        if (c >= bytes && c <= 2 * bytes + 4096 && (best < 0 || c < rc->pool_cap[best])) best = i;
    }
    if (best < 0) return NULL;
    void *p = rc->pool_p[best];
    rc->pool_bytes -= rc->pool_cap[best];
    rc->npool--;
    rc->pool_p[best] = rc->pool_p[rc->npool];
    rc->pool_cap[best] = rc->pool_cap[rc->npool];
    return p;
}

static int pool_put(cz_runcache *rc, void *p, uint64_t cap) {
    if (rc->npool >= RC_POOL || cap > RC_POOL_BYTES - rc->pool_bytes || ((uintptr_t)p & 63))
        return 0;
    rc->pool_p[rc->npool] = p;
    rc->pool_cap[rc->npool] = cap;
    rc->npool++;
    rc->pool_bytes += cap;
    return 1;
}

#define MAX_RUNTIME_ELEMENTS ((uint64_t)1 << 40)

cz_status cz_ex_alloc(cz_exec *ex, cz_rt *out, cz_dtype dt, int ndim, const int64_t *shape) {
    if (ndim < 0 || ndim > CZ_MAX_NDIM)
        return cz_ex_fail(ex, CZ_ERR_SHAPE, "result rank %d exceeds %d", ndim, CZ_MAX_NDIM);
    int ok = 1;
    uint64_t n = cz_shape_numel(ndim, shape, &ok), bytes;
    if (!ok || n > MAX_RUNTIME_ELEMENTS || !cz_mul_ok(n, cz_dtype_size(dt), &bytes))
        return cz_ex_fail(ex, CZ_ERR_LIMIT, "result shape overflows");
    if (bytes > ex->max_bytes || bytes > (uint64_t)SIZE_MAX - 64)
        return cz_ex_fail(ex, CZ_ERR_LIMIT, "result of %llu bytes exceeds the cap of %llu",
                          (unsigned long long)bytes, (unsigned long long)ex->max_bytes);
    cz_runcache *rc = ((run_ctx *)ex)->rc;
    void *p = rc ? pool_take(rc, bytes ? bytes : 1) : NULL;
    if (!p) p = cz_mem_alloc(ex->alloc, bytes ? (size_t)bytes : 1, 64);
    if (!p) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory (%llu bytes)",
                              (unsigned long long)bytes);
    out->dtype = dt;
    out->ndim = ndim;
    for (int i = 0; i < CZ_MAX_NDIM; i++) out->shape[i] = i < ndim ? shape[i] : 0;
    out->n = n;
    out->data = p;
    out->form = NULL;
    out->owned = 1;
    out->is_file = 0;
    return CZ_OK;
}

void *cz_ex_scratch(cz_exec *ex, uint64_t bytes) {
    if (bytes > (uint64_t)SIZE_MAX - 128) return NULL;
    return cz_arena_alloc(&ex->ws.arena, bytes ? (size_t)bytes : 1, 64);
}

int cz_ex_steal(cz_exec *ex, const cz_gnode *nd, int slot, cz_rt *in, cz_rt *out) {
    if (!in->owned || in->is_file) return 0;
    int vid = nd->in[slot];
    const cz_gvalue *gv = &ex->g->values[vid];
    if (gv->output_index >= 0 || gv->last_use != (int)(nd - ex->g->nodes)) return 0;
    for (int k = 0; k < nd->n_in; k++)
        if (k != slot && nd->in[k] == vid) return 0;
    *out = *in;
    in->owned = 0;
    in->data = NULL;
    return 1;
}

static float half_to_float(uint16_t h);

cz_status cz_ex_getf(cz_exec *ex, cz_rt *t, const char *what, const float **out) {
    if (!t) return cz_ex_fail(ex, CZ_ERR_PARAM, "%s is required", what);
    if (t->dtype == CZ_F32) {
        if (!t->data)
            return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "%s: no dense data for this weight", what);
        *out = t->data;
        return CZ_OK;
    }
    if (t->dtype != CZ_F16 && t->dtype != CZ_F64)
        return cz_ex_fail(ex, CZ_ERR_PARAM, "%s must be a float tensor, got %s", what,
                          cz_dtype_name(t->dtype));
    float *f = cz_ex_scratch(ex, t->n * 4);
    if (!f) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    if (t->dtype == CZ_F64)
        for (uint64_t i = 0; i < t->n; i++) f[i] = (float)((const double *)t->data)[i];
    else
        for (uint64_t i = 0; i < t->n; i++) f[i] = half_to_float(((const uint16_t *)t->data)[i]);
    *out = f;
    return CZ_OK;
}

void cz_rt_put_i(cz_rt *t, uint64_t k, int64_t v) {
    void *d = t->data;
    switch (t->dtype) {
    case CZ_I64: ((int64_t *)d)[k] = v; break;
    case CZ_I32: ((int32_t *)d)[k] = (int32_t)(uint32_t)(uint64_t)v; break;
    case CZ_I16: ((int16_t *)d)[k] = (int16_t)(uint16_t)(uint64_t)v; break;
    case CZ_I8: ((int8_t *)d)[k] = (int8_t)(uint8_t)(uint64_t)v; break;
    case CZ_U8: ((uint8_t *)d)[k] = (uint8_t)(uint64_t)v; break;
    case CZ_U16: ((uint16_t *)d)[k] = (uint16_t)(uint64_t)v; break;
    case CZ_U32: ((uint32_t *)d)[k] = (uint32_t)(uint64_t)v; break;
    case CZ_BOOL: ((uint8_t *)d)[k] = v != 0; break;
    case CZ_F32: ((float *)d)[k] = (float)v; break;
    case CZ_F64: ((double *)d)[k] = (double)v; break;
    default: break;
    }
}

int64_t cz_rt_get_i(const cz_rt *t, uint64_t k) {
    const void *d = t->data;
    switch (t->dtype) {
    case CZ_I64: return ((const int64_t *)d)[k];
    case CZ_I32: return ((const int32_t *)d)[k];
    case CZ_I16: return ((const int16_t *)d)[k];
    case CZ_I8: return ((const int8_t *)d)[k];
    case CZ_U8: return ((const uint8_t *)d)[k];
    case CZ_U16: return ((const uint16_t *)d)[k];
    case CZ_U32: return ((const uint32_t *)d)[k];
    case CZ_BOOL: return ((const uint8_t *)d)[k] != 0;
    case CZ_F32: return (int64_t)((const float *)d)[k];
    case CZ_F64: return (int64_t)((const double *)d)[k];
    default: return 0;
    }
}

static float half_to_float(uint16_t h) {
    uint32_t s = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31, m = h & 1023, u;
    if (e == 0) {
        if (!m) u = s;
        else {
            float f = (float)m * (1.0f / 16777216.0f);
            return s ? -f : f;
        }
    } else if (e == 31) {
        u = s | 0x7F800000u | (m << 13);
    } else {
        u = s | ((e + 112) << 23) | (m << 13);
    }
    float f;
    memcpy(&f, &u, 4);
    return f;
}

double cz_rt_get_f(const cz_rt *t, uint64_t k) {
    const void *d = t->data;
    switch (t->dtype) {
    case CZ_F32: return ((const float *)d)[k];
    case CZ_F64: return ((const double *)d)[k];
    case CZ_F16: return half_to_float(((const uint16_t *)d)[k]);
    case CZ_U32: return ((const uint32_t *)d)[k];
    default: return (double)cz_rt_get_i(t, k);
    }
}

int cz_normalize_axis(int64_t axis, int rank, int *out) {
    if (axis < -rank || axis >= rank) return 0;
    *out = (int)(axis < 0 ? axis + rank : axis);
    return 1;
}

int cz_bcast_init(cz_bcast *b, int nin, const int *ndims, const int64_t *const *shapes) {
    int r = 0;
    for (int k = 0; k < nin; k++) if (ndims[k] > r) r = ndims[k];
    b->r = r;
    b->nin = nin;
    for (int d = 0; d < r; d++) {
        int64_t dim = 1;
        for (int k = 0; k < nin; k++) {
            int kd = d - (r - ndims[k]);
            int64_t v = kd >= 0 ? shapes[k][kd] : 1;
            if (v != 1) {
                if (dim != 1 && dim != v) return 0;
                dim = v;
            }
        }
        for (int k = 0; k < nin; k++) {
            int kd = d - (r - ndims[k]);
            int64_t v = kd >= 0 ? shapes[k][kd] : 1;
            if (v != 1 && v != dim) return 0;
        }
        b->shape[d] = dim;
    }
    for (int k = 0; k < nin; k++) {
        int64_t s = 1;
        for (int d = r - 1; d >= 0; d--) {
            int kd = d - (r - ndims[k]);
            int64_t v = kd >= 0 ? shapes[k][kd] : 1;
            b->st[k][d] = (v == 1) ? 0 : s;
            s *= v;
        }
    }
    int ok = 1;
    b->n = cz_shape_numel(r, b->shape, &ok);
    if (!ok) return 0;
    b->inner = r ? (uint64_t)b->shape[r - 1] : 1;
    b->outer = b->inner ? b->n / b->inner : 0;
    return 1;
}

const char *cz_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
    size_t p = 0;
    p += (size_t)snprintf(buf, n, "[");
    for (int i = 0; i < ndim && p < n; i++)
        p += (size_t)snprintf(buf + p, n - p, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (p < n) snprintf(buf + p, n - p, "]");
    return buf;
}

cz_status cz_ints(cz_exec *ex, cz_rt *t, const char *what, int64_t **out, int *n) {
    if (!t) return cz_ex_fail(ex, CZ_ERR_PARAM, "%s is required", what);
    if (!cz_is_int(t->dtype) || t->ndim > 1)
        return cz_ex_fail(ex, CZ_ERR_PARAM, "%s must be a 1-D integer tensor, got %s of rank %d",
                          what, cz_dtype_name(t->dtype), t->ndim);
    if (t->n > (1u << 20)) return cz_ex_fail(ex, CZ_ERR_LIMIT, "%s has too many values", what);
    int64_t *v = cz_ex_scratch(ex, 8 * (t->n + 1));
    if (!v) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    for (uint64_t i = 0; i < t->n; i++) v[i] = cz_rt_get_i(t, i);
    *out = v;
    *n = (int)t->n;
    return CZ_OK;
}

cz_status cz_axes(cz_exec *ex, cz_rt *t, const char *what, int rank, int *ax, int *n) {
    int64_t *v;
    int k;
    cz_status st = cz_ints(ex, t, what, &v, &k);
    if (st) return st;
    if (k > CZ_MAX_NDIM) return cz_ex_fail(ex, CZ_ERR_SHAPE, "%s has %d values", what, k);
    for (int i = 0; i < k; i++) {
        if (!cz_normalize_axis(v[i], rank, &ax[i]))
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "axis %lld is out of range for rank %d",
                              (long long)v[i], rank);
        for (int j = 0; j < i; j++)
            if (ax[j] == ax[i]) return cz_ex_fail(ex, CZ_ERR_SHAPE, "%s repeat an axis", what);
    }
    *n = k;
    return CZ_OK;
}

uint16_t cz_f2h(double x) {
    /* round to nearest even from double */
    uint64_t u;
    memcpy(&u, &x, 8);
    uint16_t sign = (uint16_t)((u >> 48) & 0x8000);
    double a = fabs(x);
    if (isnan(x)) return sign | 0x7E00;
    if (a >= 65520.0) return sign | 0x7C00;
    if (a < 0x1p-25) return sign;               /* rounds to 0 (ties to even at 2^-25) */
    int e;
    double m = frexp(a, &e);                    /* a = m * 2^e, m in [0.5, 1) */
    int ex = e - 1;                             /* a = (2m) * 2^ex */
    if (ex < -14) {                             /* subnormal: units of 2^-24 */
        double q = nearbyint(ldexp(a, 24));
        return sign | (uint16_t)q;
    }
    double q = nearbyint(ldexp(m * 2.0 - 1.0, 10));   /* mantissa bits */
    int expb = ex + 15;
    if (q >= 1024.0) { q = 0; expb++; }
    if (expb >= 31) return sign | 0x7C00;
    return sign | (uint16_t)(expb << 10) | (uint16_t)q;
}

void cz_cast_elems(const cz_rt *src, cz_rt *dst, uint64_t n) {
    int sf = cz_is_float(src->dtype);
    cz_dtype to = dst->dtype;
    for (uint64_t i = 0; i < n; i++) {
        if (to == CZ_BOOL) {
            ((uint8_t *)dst->data)[i] = sf ? cz_rt_get_f(src, i) != 0.0 : cz_rt_get_i(src, i) != 0;
        } else if (to == CZ_F32) {
            ((float *)dst->data)[i] = sf ? (float)cz_rt_get_f(src, i) : (float)cz_rt_get_i(src, i);
        } else if (to == CZ_F64) {
            ((double *)dst->data)[i] = sf ? cz_rt_get_f(src, i) : (double)cz_rt_get_i(src, i);
        } else if (to == CZ_F16) {
            /* one rounding from the exact source value (numpy casts f64 -> f16 directly) */
            double v = sf ? cz_rt_get_f(src, i) : (double)cz_rt_get_i(src, i);
            ((uint16_t *)dst->data)[i] = cz_f2h(v);
        } else if (sf) {
            double t = trunc(cz_rt_get_f(src, i));
            int64_t lo, hi;
            switch (to) {
            case CZ_I64: lo = INT64_MIN; hi = INT64_MAX; break;
            case CZ_I32: lo = INT32_MIN; hi = INT32_MAX; break;
            case CZ_I16: lo = INT16_MIN; hi = INT16_MAX; break;
            case CZ_I8: lo = INT8_MIN; hi = INT8_MAX; break;
            case CZ_U8: lo = 0; hi = UINT8_MAX; break;
            case CZ_U16: lo = 0; hi = UINT16_MAX; break;
            default: lo = 0; hi = UINT32_MAX; break;
            }
            int64_t v;
            if (isnan(t)) v = 0;
            else if (t <= (double)lo) v = lo;
            else if (t >= (double)hi) v = hi;
            else v = (int64_t)t;
            cz_rt_put_i(dst, i, v);
        } else {
            cz_rt_put_i(dst, i, cz_rt_get_i(src, i));
        }
    }
}

/* ---- graph inputs / outputs ------------------------------------------------------------ */

int cz_input_count(const cz_model *m) {
    const cz_graph *g = cz_graph_of(m);   /* (also links graph.o from libcz.a) */
    return g ? g->n_inputs : 0;
}

int cz_output_count(const cz_model *m) {
    const cz_graph *g = cz_graph_of(m);   /* (also links graph.o from libcz.a) */
    return g ? g->n_outputs : 0;
}

static cz_status io_info(const cz_gio *io, int n, int index, cz_info *out) {
    if (!out || index < 0 || index >= n) return CZ_ERR_PARAM;
    memset(out, 0, sizeof *out);
    out->name = io[index].name;
    out->dtype = io[index].dtype;
    out->ndim = io[index].ndim;
    for (int k = 0; k < io[index].ndim; k++) out->shape[k] = io[index].shape[k];
    return CZ_OK;
}

cz_status cz_input_info(const cz_model *m, int index, cz_info *out) {
    const cz_graph *g = cz_graph_of(m);   /* (also links graph.o from libcz.a) */
    if (!g) return CZ_ERR_PARAM;
    return io_info(g->inputs, g->n_inputs, index, out);
}

cz_status cz_output_info(const cz_model *m, int index, cz_info *out) {
    const cz_graph *g = cz_graph_of(m);   /* (also links graph.o from libcz.a) */
    if (!g) return CZ_ERR_PARAM;
    return io_info(g->outputs, g->n_outputs, index, out);
}

void cz_free(const cz_model *m, void *ptr) {
    if (!ptr) return;
    cz_mem_free(m ? gm_allocator(m) : NULL, ptr);
}

/* ---- dispatch -------------------------------------------------------------------------- */

static cz_op_fn op_fn(cz_op_id op) {
    cz_op_fn f = cz_ops_elementwise(op);
    if (!f) f = cz_ops_nn(op);
    if (!f) f = cz_ops_shape(op);
    if (!f) f = cz_ops_reduce(op);
    if (!f) f = cz_ops_quant(op);
    return f;
}

static void rt_release(cz_exec *ex, cz_rt *t) {
    if (t->owned) {
        cz_runcache *rc = ((run_ctx *)ex)->rc;
        uint64_t cap = t->n * cz_dtype_size(t->dtype);   /* (<= its allocation) */
        if (!rc || !pool_put(rc, t->data, cap ? cap : 1)) cz_mem_free(ex->alloc, t->data);
    }
    t->owned = 0;
    t->data = NULL;
}

/* feeds vs graph inputs: names, dtypes, ranks, static dims, consistent symbolic dims */
static cz_status bind_inputs(cz_exec *ex, const cz_tensor *inputs, int n_inputs, cz_rt *rt) {
    const cz_graph *g = ex->g;
    if (n_inputs < 0 || (n_inputs > 0 && !inputs))
        return cz_ex_fail(ex, CZ_ERR_PARAM, "inputs is NULL");
    int64_t sym[CZ_MAX_NDIM * 8];
    int64_t *symv = g->n_syms <= (int)(sizeof sym / sizeof sym[0]) ? sym
                    : cz_ex_scratch(ex, sizeof(int64_t) * (uint64_t)g->n_syms);
    const char **symfrom = cz_ex_scratch(ex, sizeof(char *) * (uint64_t)(g->n_syms + 1));
    int *seen = cz_ex_scratch(ex, sizeof(int) * (uint64_t)(g->n_inputs + 1));
    if (!symv || !symfrom || !seen) return cz_ex_fail(ex, CZ_ERR_MEMORY, "out of memory");
    for (int s = 0; s < g->n_syms; s++) symv[s] = -1;
    memset(seen, 0, sizeof(int) * (size_t)(g->n_inputs + 1));
    for (int j = 0; j < n_inputs; j++) {
        const cz_tensor *t = &inputs[j];
        if (!t->name) return cz_ex_fail(ex, CZ_ERR_PARAM, "input %d has no name", j);
        int i = 0;
        while (i < g->n_inputs && strcmp(g->inputs[i].name, t->name) != 0) i++;
        if (i == g->n_inputs) {
            char names[256] = "";
            size_t p = 0;
            for (int k = 0; k < g->n_inputs && p < sizeof names - 90; k++)
                p += (size_t)snprintf(names + p, sizeof names - p, "%s'%.80s'", k ? ", " : "",
                                      g->inputs[k].name);
            return cz_ex_fail(ex, CZ_ERR_NOT_FOUND,
                              "unknown input '%.100s' (the graph's inputs are [%s])", t->name,
                              names);
        }
        if (seen[i]) return cz_ex_fail(ex, CZ_ERR_PARAM, "input '%.100s' given twice", t->name);
        seen[i] = 1;
        const cz_gio *gi = &g->inputs[i];
        if (t->dtype != gi->dtype)
            return cz_ex_fail(ex, CZ_ERR_PARAM, "input '%.100s' has dtype %s, the graph wants %s",
                              t->name, cz_dtype_name(t->dtype), cz_dtype_name(gi->dtype));
        if (t->ndim != gi->ndim)
            return cz_ex_fail(ex, CZ_ERR_PARAM, "input '%.100s' has rank %d, the graph wants "
                              "rank %d", t->name, t->ndim, gi->ndim);
        for (int k = 0; k < gi->ndim; k++) {
            int64_t d = t->shape[k];
            if (d < 0)
                return cz_ex_fail(ex, CZ_ERR_SHAPE, "input '%.100s' dim %d is negative",
                                  t->name, k);
            if (gi->sym[k] >= 0) {
                int s = gi->sym[k];
                if (symv[s] >= 0 && symv[s] != d)
                    return cz_ex_fail(ex, CZ_ERR_SHAPE,
                                      "input '%.100s' dim %d is %lld but symbolic dim '%.60s' is "
                                      "%lld in input '%.100s'", t->name, k, (long long)d,
                                      gi->sym_name[k], (long long)symv[s], symfrom[s]);
                if (symv[s] < 0) { symv[s] = d; symfrom[s] = t->name; }
            } else if (d != gi->shape[k]) {
                return cz_ex_fail(ex, CZ_ERR_SHAPE,
                                  "input '%.100s' dim %d is %lld, the graph wants %lld",
                                  t->name, k, (long long)d, (long long)gi->shape[k]);
            }
        }
        int ok = 1;
        uint64_t n = cz_shape_numel(t->ndim, t->shape, &ok), bytes;
        if (!ok || !cz_mul_ok(n, cz_dtype_size(t->dtype), &bytes))
            return cz_ex_fail(ex, CZ_ERR_SHAPE, "input '%.100s' shape overflows", t->name);
        if (t->bytes < bytes)
            return cz_ex_fail(ex, CZ_ERR_PARAM, "input '%.100s' holds %zu bytes, its shape "
                              "needs %llu", t->name, t->bytes, (unsigned long long)bytes);
        if (!t->data && bytes)
            return cz_ex_fail(ex, CZ_ERR_PARAM, "input '%.100s' has no data", t->name);
        cz_rt *r = &rt[gi->value];
        r->dtype = t->dtype;
        r->ndim = t->ndim;
        for (int k = 0; k < CZ_MAX_NDIM; k++) r->shape[k] = k < t->ndim ? t->shape[k] : 0;
        r->n = n;
        r->data = t->data ? t->data : (void *)"";
        r->owned = 0;
        r->is_file = 1;     /* caller memory: read-only */
    }
    for (int i = 0; i < g->n_inputs; i++)
        if (!seen[i])
            return cz_ex_fail(ex, CZ_ERR_PARAM, "missing input '%.100s'", g->inputs[i].name);
    return CZ_OK;
}

#define MAX_NODE_IO_RT 64

/* ---- optional per-op profile (CZ_PROFILE=1 in the environment: wall time per op type;
 * CZ_PROFILE=2: per node too), printed to stderr at exit; off by default, one branch per
 * node when off ---------------------------------------------------------------------- */
#include <stdlib.h>
#include <time.h>

static int prof_state = -1;            /* -1 unknown, 0 off, 1 on */
static double prof_ns[OP__COUNT];
static uint64_t prof_calls[OP__COUNT];
static double prof_total_ns;
static uint64_t prof_runs;
/* per-run time of every op type (first PROF_KEEP runs), for medians and minima: the machine
 * may be shared, and means over runs follow the neighbours' load */
#define PROF_KEEP 8192
static float *prof_run_ns;             /* PROF_KEEP x (OP__COUNT + 1); last column: total */
/* CZ_PROFILE=2: also per node (the first PROF_NODES nodes of the graph run): per-run times
 * for medians and minima, and the node's name and op */
#define PROF_NODES 64
static float *prof_node_run_ns;        /* PROF_KEEP x PROF_NODES */
static char prof_node_name[PROF_NODES][40];
static int prof_node_op[PROF_NODES];
static int prof_nodes;

static double prof_now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static int prof_cmpf(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return x < y ? -1 : x > y;
}

/* median and minimum of column c over the kept runs (us) */
static void prof_stats_of(const float *tab, int cols, int c, uint64_t n, double *med,
                          double *mn) {
    float *v = malloc(sizeof(float) * (size_t)(n ? n : 1));
    *med = *mn = 0.0;
    if (!v || !n) { free(v); return; }
    for (uint64_t r = 0; r < n; r++) v[r] = tab[r * (uint64_t)cols + (uint64_t)c];
    qsort(v, (size_t)n, sizeof *v, prof_cmpf);
    *med = v[n / 2] / 1e3;
    *mn = v[0] / 1e3;
    free(v);
}

static void prof_stats(int c, uint64_t n, double *med, double *mn) {
    prof_stats_of(prof_run_ns, OP__COUNT + 1, c, n, med, mn);
}

static void prof_report(void) {
    if (!prof_runs) return;
    uint64_t kept = prof_runs < PROF_KEEP ? prof_runs : PROF_KEEP;
    double med = 0, mn = 0;
    if (prof_run_ns) prof_stats(OP__COUNT, kept, &med, &mn);
    fprintf(stderr, "cz profile: %llu runs, %.1f us/run in nodes (per run: median %.1f, min %.1f)\n",
            (unsigned long long)prof_runs, prof_total_ns / 1e3 / (double)prof_runs, med, mn);
    for (int o = 0; o < OP__COUNT; o++)
        if (prof_calls[o]) {
            if (prof_run_ns) prof_stats(o, kept, &med, &mn);
            fprintf(stderr, "  %-22s %9.1f us/run %6.1f%%  median %8.1f  min %8.1f  (%llu calls/run)\n",
                    cz_op_name(o), prof_ns[o] / 1e3 / (double)prof_runs,
                    100.0 * prof_ns[o] / prof_total_ns, med, mn,
                    (unsigned long long)(prof_calls[o] / prof_runs));
        }
    if (prof_node_run_ns) {
        fprintf(stderr, "cz profile per node (us per run):\n");
        for (int i = 0; i < prof_nodes; i++) {
            prof_stats_of(prof_node_run_ns, PROF_NODES, i, kept, &med, &mn);
            fprintf(stderr, "  %3d %-22s %-40s median %8.2f  min %8.2f\n", i,
                    cz_op_name(prof_node_op[i]), prof_node_name[i], med, mn);
        }
    }
}

static int prof_on(void) {
    int s = __atomic_load_n(&prof_state, __ATOMIC_RELAXED);
    if (s < 0) {
        const char *e = getenv("CZ_PROFILE");
        s = e && *e && *e != '0';
        if (s) {
            prof_run_ns = calloc((size_t)PROF_KEEP * (OP__COUNT + 1), sizeof(float));
            if (atoi(e) >= 2)
                prof_node_run_ns = calloc((size_t)PROF_KEEP * PROF_NODES, sizeof(float));
            atexit(prof_report);
        }
        __atomic_store_n(&prof_state, s, __ATOMIC_RELAXED);
    }
    return s;
}

static cz_status run_nodes(cz_exec *ex, cz_rt *rt) {
    const cz_graph *g = ex->g;
    cz_rt *inp[MAX_NODE_IO_RT], *outp[MAX_NODE_IO_RT];
    int prof = prof_on();
    double t_start = prof ? prof_now() : 0.0;
    for (int i = 0; i < g->n_nodes; i++) {
        const cz_gnode *nd = &g->nodes[i];
        ex->node = nd;
        for (int k = 0; k < nd->n_in; k++) inp[k] = nd->in[k] >= 0 ? &rt[nd->in[k]] : NULL;
        for (int k = nd->n_in; k < MAX_NODE_IO_RT && k < nd->n_in + 8; k++) inp[k] = NULL;
        for (int k = 0; k < nd->n_out; k++) outp[k] = &rt[nd->out[k]];
        cz_op_fn fn = op_fn(nd->op);
        if (!fn) return cz_ex_fail(ex, CZ_ERR_UNSUPPORTED, "op not implemented by the C runtime");
        double t0 = prof ? prof_now() : 0.0;
        cz_status st = fn(ex, nd, inp, outp);
        if (prof) {   /* (not thread-safe across concurrent runs: a diagnostic) */
            double dt = prof_now() - t0;
            prof_ns[nd->op] += dt;
            prof_calls[nd->op]++;
            if (prof_run_ns && prof_runs < PROF_KEEP)
                prof_run_ns[prof_runs * (OP__COUNT + 1) + nd->op] += (float)dt;
            if (prof_node_run_ns && i < PROF_NODES && prof_runs < PROF_KEEP) {
                prof_node_run_ns[prof_runs * PROF_NODES + (uint64_t)i] = (float)dt;
                if (i >= prof_nodes) {
                    snprintf(prof_node_name[i], sizeof prof_node_name[i], "%s", nd->name);
                    prof_node_op[i] = nd->op;
                    prof_nodes = i + 1;
                }
            }
        }
        cz_arena_reset(&ex->ws.arena, RC_ARENA_KEEP);
        if (st) return st;
        for (int k = 0; k < nd->n_free; k++) rt_release(ex, &rt[nd->free_ids[k]]);
    }
    if (prof) {
        double dt = prof_now() - t_start;
        prof_total_ns += dt;
        if (prof_run_ns && prof_runs < PROF_KEEP)
            prof_run_ns[prof_runs * (OP__COUNT + 1) + OP__COUNT] = (float)dt;
        prof_runs++;
    }
    ex->node = NULL;
    return CZ_OK;
}

cz_status cz_run(const cz_model *m, const cz_tensor *inputs, int n_inputs, cz_tensor *outputs,
                 int n_outputs, char *err, size_t errlen) {
    if (err && errlen) err[0] = 0;
    if (!m) return cz_fail(err, errlen, CZ_ERR_PARAM, "model is NULL");
    const cz_graph *g = cz_graph_of(m);
    if (!g)
        return cz_fail(err, errlen, CZ_ERR_PARAM,
                       "this file holds weights only (no graph): nothing to run");
    if (n_outputs < 0 || (n_outputs > 0 && !outputs))
        return cz_fail(err, errlen, CZ_ERR_PARAM, "outputs is NULL");
    run_ctx rx;
    memset(&rx, 0, sizeof rx);
    cz_exec *ex = &rx.ex;
    ex->m = m;
    ex->g = g;
    ex->alloc = gm_allocator(m);
    ex->max_bytes = gm_max_bytes(m) ? gm_max_bytes(m) : ((uint64_t)8 << 30);
    ex->ws.threads = gm_threads(m);
    ex->ws.precise = m->opts.precise != 0;
    ex->err = err;
    ex->errlen = errlen;
    gm_state *gs = gm_state_of(m);
    cz_runcache *rc = gs ? rc_take(gs, ex->alloc) : NULL;
    rx.rc = rc;
    int *sel = NULL;
    cz_rt *rt = NULL;
    if (rc) {
        ex->ws.arena = rc->arena;   /* (its kept block) */
        if (rc->sel_cap < n_outputs + 1) {
            cz_mem_free(ex->alloc, rc->sel);
            rc->sel = cz_mem_alloc(ex->alloc, sizeof(int) * (size_t)(n_outputs + 1), 16);
            rc->sel_cap = rc->sel ? n_outputs + 1 : 0;
        }
        if (rc->rt_cap < g->n_values + 1) {
            cz_mem_free(ex->alloc, rc->rt);
            rc->rt = cz_mem_alloc(ex->alloc, sizeof(cz_rt) * (size_t)(g->n_values + 1), 64);
            rc->rt_cap = rc->rt ? g->n_values + 1 : 0;
        }
        sel = rc->sel;
        rt = rc->rt;
    } else {
        cz_arena_init(&ex->ws.arena, ex->alloc, 0);
        sel = cz_mem_alloc(ex->alloc, sizeof(int) * (size_t)(n_outputs + 1), 16);
        rt = cz_mem_alloc(ex->alloc, sizeof(cz_rt) * (size_t)(g->n_values + 1), 64);
    }
    /* which outputs */
    cz_status st = CZ_OK;
    if (!sel || !rt) {
        st = cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory");
        goto done;
    }
    memset(rt, 0, sizeof(cz_rt) * (size_t)(g->n_values + 1));
    for (int j = 0; j < n_outputs; j++) {
        const char *nm = outputs[j].name;
        int o = -1;
        if (!nm) {
            if (j >= g->n_outputs) {
                st = cz_fail(err, errlen, CZ_ERR_PARAM, "output %d: the graph has only %d "
                             "outputs", j, g->n_outputs);
                goto done;
            }
            o = j;
        } else {
            for (int k = 0; k < g->n_outputs && o < 0; k++)
                if (strcmp(g->outputs[k].name, nm) == 0) o = k;
            if (o < 0) {
                st = cz_fail(err, errlen, CZ_ERR_NOT_FOUND, "unknown output '%.100s'", nm);
                goto done;
            }
        }
        sel[j] = o;
    }
    for (int v = 0; v < g->n_values; v++) {
        const cz_gvalue *gv = &g->values[v];
        if (gv->kind != VK_TENSOR || gv->last_use < 0) continue;
        cz_rt *r = &rt[v];
        r->dtype = gv->dtype;
        r->ndim = gv->ndim;
        memcpy(r->shape, gv->shape, sizeof r->shape);
        int ok = 1;
        r->n = cz_shape_numel(gv->ndim, gv->shape, &ok);
        r->data = (void *)gv->dense;
        r->form = gv->form;
        r->is_file = 1;
    }
    if ((st = bind_inputs(ex, inputs, n_inputs, rt))) goto done;
    cz_arena_reset(&ex->ws.arena, RC_ARENA_KEEP);
    if ((st = run_nodes(ex, rt))) goto done;
    /* hand the results over: check every caller buffer first, so a failure leaves none
     * of the outputs allocated */
    for (int j = 0; j < n_outputs; j++) {
        const cz_rt *r = &rt[g->outputs[sel[j]].value];
        uint64_t bytes = r->n * cz_dtype_size(r->dtype);
        if (outputs[j].data && outputs[j].bytes < bytes) {
            st = cz_fail(err, errlen, CZ_ERR_PARAM, "output '%.100s' needs %llu bytes, the "
                         "buffer holds %zu", g->outputs[sel[j]].name,
                         (unsigned long long)bytes, outputs[j].bytes);
            goto done;
        }
    }
    for (int j = 0; j < n_outputs; j++) {
        cz_rt *r = &rt[g->outputs[sel[j]].value];
        cz_tensor *o = &outputs[j];
        uint64_t bytes = r->n * cz_dtype_size(r->dtype);
        if (o->data) {
            if (bytes) memcpy(o->data, r->data, (size_t)bytes);
        } else if (r->owned) {
            o->data = r->data;
            r->owned = 0;
            sel[j] = -1 - sel[j];
        } else {
            void *p = cz_mem_alloc(ex->alloc, bytes ? (size_t)bytes : 1, 64);
            if (!p) {
                st = cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory");
                for (int q = 0; q < j; q++)
                    if (sel[q] < 0) {
                        cz_mem_free(ex->alloc, outputs[q].data);
                        outputs[q].data = NULL;
                    }
                goto done;
            }
            if (bytes) memcpy(p, r->data, (size_t)bytes);
            o->data = p;
            sel[j] = -1 - sel[j];
        }
        int oi = sel[j] < 0 ? -1 - sel[j] : sel[j];
        o->name = g->outputs[oi].name;
        o->dtype = r->dtype;
        o->ndim = r->ndim;
        for (int k = 0; k < CZ_MAX_NDIM; k++) o->shape[k] = k < r->ndim ? r->shape[k] : 0;
        o->bytes = (size_t)bytes;
    }
done:
    if (rt)
        for (int v = 0; v < g->n_values; v++) rt_release(ex, &rt[v]);
    if (rc) {
        cz_arena_reset(&ex->ws.arena, RC_ARENA_KEEP);
        rc->arena = ex->ws.arena;
        rc_give(gs, rc, ex->alloc);
    } else {
        cz_arena_free_all(&ex->ws.arena);
        cz_mem_free(ex->alloc, rt);
        cz_mem_free(ex->alloc, sel);
    }
    return st;
}
