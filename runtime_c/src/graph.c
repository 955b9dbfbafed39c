/*
 * graph.c -- validate the header "graph" map and build the execution plan (graph.h).
 *
 * Mirrors czmodel/graph/model.py (_parse_graph, _parse_node, _parse_value, _check_attr) and
 * czmodel/graph/ops.py (the op table, cross-attribute checks) rule for rule, with the same
 * error classes: FORMAT for malformed structure, UNSUPPORTED for unknown ops / dtypes /
 * attribute values, LIMIT for counts and lengths over the hard limits. Messages name the
 * node and op ("node 'fc1' (Gemm): ...").
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "graph_model.h"
#include "graph_ops.h"

#define MAX_NODES (1 << 20)
#define MAX_NODE_IO 64
#define MAX_GRAPH_IO (1 << 12)
#define MAX_NAME 4096
#define MAX_DIM ((int64_t)1 << 40)
#define GRAPH_OPSET_MAX 1

/* ---- parsing helpers ------------------------------------------------------------------- */

/* name: non-empty string of at most MAX_NAME characters */
static cz_status check_name(const cz_mp *v, const char *what, char *err, size_t errlen) {
    if (!v || v->type != CZ_MP_STR || v->len == 0)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: name must be a non-empty string",
                       what);
    if (cz_utf8_chars(v->v.s, v->len) > MAX_NAME)
        return cz_fail(err, errlen, CZ_ERR_LIMIT, "%s: name exceeds %d characters", what,
                       MAX_NAME);
    return CZ_OK;
}

/* exact key set */
static int has_keys(const cz_mp *m, const char *const *keys, int nkeys) {
    if (!m || m->type != CZ_MP_MAP || (int)m->len != nkeys) return 0;
    for (int i = 0; i < nkeys; i++)
        if (!cz_mp_get(m, keys[i])) return 0;
    return 1;
}

/* A simple open-addressing hash set over value names -> value ids. */
typedef struct {
    const char **keys;
    int *vals;
    uint64_t cap;
} name_map;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ULL;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static int nm_init(name_map *m, cz_arena *ar, uint64_t n) {
    uint64_t cap = 16;
    while (cap < 2 * n + 16) cap <<= 1;
    m->cap = cap;
    m->keys = cz_arena_alloc(ar, cap * sizeof(char *), 8);
    m->vals = cz_arena_alloc(ar, cap * sizeof(int), 8);
    if (!m->keys || !m->vals) return 0;
    memset(m->keys, 0, cap * sizeof(char *));
    return 1;
}

static int nm_find(const name_map *m, const char *k) {
    uint64_t i = hash_str(k) & (m->cap - 1);
    while (m->keys[i]) {
        if (strcmp(m->keys[i], k) == 0) return m->vals[i];
        i = (i + 1) & (m->cap - 1);
    }
    return -1;
}

static void nm_put(name_map *m, const char *k, int v) {
    uint64_t i = hash_str(k) & (m->cap - 1);
    while (m->keys[i]) {
        if (strcmp(m->keys[i], k) == 0) { m->vals[i] = v; return; }
        i = (i + 1) & (m->cap - 1);
    }
    m->keys[i] = k;
    m->vals[i] = v;
}

/* ---- value infos ----------------------------------------------------------------------- */

static cz_status parse_value(const cz_mp *v, const char *what0, cz_gio *out, char *err,
                             size_t errlen) {
    static const char *const VK[] = {"name", "dtype", "shape"};
    char what[160];
    if (!has_keys(v, VK, 3))
        return cz_fail(err, errlen, CZ_ERR_FORMAT,
                       "%s must be a map with keys ['dtype', 'name', 'shape']", what0);
    const cz_mp *name = cz_mp_get(v, "name");
    cz_status st = check_name(name, what0, err, errlen);
    if (st) return st;
    snprintf(what, sizeof what, "%s '%.80s'", what0, name->v.s);
    const cz_mp *dt = cz_mp_get(v, "dtype");
    if (dt->type != CZ_MP_STR)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: dtype must be a string", what);
    int d = cz_dtype_from_name(dt->v.s);
    if (!d)
        return cz_fail(err, errlen, CZ_ERR_UNSUPPORTED, "%s: unknown dtype '%.40s'", what,
                       dt->v.s);
    const cz_mp *sh = cz_mp_get(v, "shape");
    if (sh->type != CZ_MP_ARRAY)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: shape must be a list", what);
    if (sh->len > CZ_MAX_NDIM)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: shape has more than %d dims", what,
                       CZ_MAX_NDIM);
    out->name = name->v.s;
    out->dtype = (cz_dtype)d;
    out->ndim = (int)sh->len;
    for (uint32_t i = 0; i < sh->len; i++) {
        const cz_mp *s = &sh->v.items[i];
        out->sym[i] = -1;
        out->sym_name[i] = NULL;
        if (s->type == CZ_MP_INT) {
            if (s->v.i < 0)
                return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: negative dim %lld", what,
                               (long long)s->v.i);
            if (s->v.i > MAX_DIM)
                return cz_fail(err, errlen, CZ_ERR_LIMIT, "%s: dim %lld exceeds %lld", what,
                               (long long)s->v.i, (long long)MAX_DIM);
            out->shape[i] = s->v.i;
        } else if (s->type == CZ_MP_STR) {
            if (s->len == 0 || cz_utf8_chars(s->v.s, s->len) > MAX_NAME)
                return cz_fail(err, errlen, CZ_ERR_FORMAT,
                               "%s: symbolic dim must be a non-empty string of at most %d "
                               "characters", what, MAX_NAME);
            out->shape[i] = -1;
            out->sym_name[i] = s->v.s;
        } else {
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "%s: dim %u is neither an int nor a symbolic name", what, i);
        }
    }
    return CZ_OK;
}

/* ---- the graph ------------------------------------------------------------------------- */

typedef struct {
    cz_graph *g;
    name_map names;                /* value name -> value id */
    int cap_values;
} build_ctx;

static int add_value(build_ctx *b, const char *name, cz_value_kind kind, int index) {
    cz_graph *g = b->g;
    int id = g->n_values++;
    cz_gvalue *v = &g->values[id];
    memset(v, 0, sizeof *v);
    v->name = name;
    v->kind = kind;
    v->index = index;
    v->last_use = -1;
    v->output_index = -1;
    nm_put(&b->names, name, id);
    return id;
}

static const char *describe(const cz_graph *g, int id, char *buf, size_t n) {
    const cz_gvalue *v = &g->values[id];
    if (v->kind == VK_TENSOR) return "a file tensor";
    if (v->kind == VK_INPUT) return "a graph input";
    snprintf(buf, n, "an output of node '%.80s'", g->nodes[v->index].name);
    return buf;
}

static cz_status parse_node(build_ctx *b, const cz_mp *nodes, uint32_t i, cz_arena *ar,
                            char *err, size_t errlen) {
    static const char *const NK[] = {"op", "name", "inputs", "outputs", "attrs"};
    cz_graph *g = b->g;
    const cz_mp *v = &nodes->v.items[i];
    char label[160], where[200], buf[240];
    cz_status st;
    if (v->type != CZ_MP_MAP)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "graph node %u must be a map", i);
    const cz_mp *name = cz_mp_get(v, "name");
    if (name && name->type == CZ_MP_STR)
        snprintf(label, sizeof label, "graph node %u '%.80s'", i, name->v.s);
    else
        snprintf(label, sizeof label, "graph node %u", i);
    if (!has_keys(v, NK, 5))
        return cz_fail(err, errlen, CZ_ERR_FORMAT,
                       "%s: must be a map with keys ['attrs', 'inputs', 'name', 'op', "
                       "'outputs']", label);
    snprintf(buf, sizeof buf, "graph node %u", i);
    if ((st = check_name(name, buf, err, errlen))) return st;
    const cz_mp *opv = cz_mp_get(v, "op");
    if (opv->type != CZ_MP_STR)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: op must be a string", label);
    snprintf(where, sizeof where, "node '%.80s' (%.40s)", name->v.s, opv->v.s);
    int op = cz_op_lookup(opv->v.s);
    if (op < 0)
        return cz_fail(err, errlen, CZ_ERR_UNSUPPORTED,
                       "%s: unknown op '%.40s' (not in op set 1)", where, opv->v.s);
    const op_spec *sp = cz_op_spec(op);
    const cz_mp *ins = cz_mp_get(v, "inputs"), *outs = cz_mp_get(v, "outputs");
    const cz_mp *attrs = cz_mp_get(v, "attrs");
    const cz_mp *lists[2] = {ins, outs};
    for (int k = 0; k < 2; k++) {
        const cz_mp *l = lists[k];
        const char *kind = k ? "outputs" : "inputs";
        int ok = l->type == CZ_MP_ARRAY;
        for (uint32_t j = 0; ok && j < l->len; j++) ok = l->v.items[j].type == CZ_MP_STR;
        if (!ok)
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: %s must be a list of strings",
                           where, kind);
        if (l->len > MAX_NODE_IO)
            return cz_fail(err, errlen, CZ_ERR_LIMIT, "%s: %u %s exceed %d", where, l->len,
                           kind, MAX_NODE_IO);
    }
    int n_in = (int)ins->len;
    while (n_in > 0 && ins->v.items[n_in - 1].len == 0 && n_in > sp->min_in) n_in--;
    if (n_in < sp->min_in || n_in > sp->max_in) {
        if (sp->min_in == sp->max_in)
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: takes %d inputs, got %d", where,
                           sp->min_in, n_in);
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: takes %d to %d inputs, got %d", where,
                       sp->min_in, sp->max_in, n_in);
    }
    for (int k = 0; k < n_in && k < sp->min_in; k++)
        if (ins->v.items[k].len == 0)
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: input %d is required but empty",
                           where, k);
    for (int k = 0; k < n_in; k++)
        if (cz_utf8_chars(ins->v.items[k].v.s, ins->v.items[k].len) > MAX_NAME)
            return cz_fail(err, errlen, CZ_ERR_LIMIT, "%s: input name exceeds %d characters",
                           where, MAX_NAME);
    int n_out = (int)outs->len;
    if (n_out < sp->min_out || n_out > sp->max_out) {
        if (sp->min_out == sp->max_out)
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: produces %d outputs, got %d",
                           where, sp->min_out, n_out);
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "%s: produces %d to %d outputs, got %d",
                       where, sp->min_out, sp->max_out, n_out);
    }
    snprintf(buf, sizeof buf, "%s output", where);
    for (int k = 0; k < n_out; k++)
        if ((st = check_name(&outs->v.items[k], buf, err, errlen))) return st;
    cz_attr *av = cz_arena_alloc(ar, sizeof(cz_attr) * (size_t)(sp->n_attrs + 1), 8);
    int *io = cz_arena_alloc(ar, sizeof(int) * (size_t)(n_in + n_out + 1), 8);
    char *nodename = cz_arena_alloc(ar, name->len + 1, 1);
    if (!av || !io || !nodename)
        return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory parsing the graph");
    memcpy(nodename, name->v.s, name->len + 1);
    if ((st = cz_node_attrs(sp, attrs, where, av, ar, err, errlen))) return st;
    /* inputs: resolve references (before the cross checks, which only need "omitted") */
    int *in = io, *out = io + n_in;
    for (int k = 0; k < n_in; k++) in[k] = ins->v.items[k].len ? 0 : -1;
    if (sp->check && (st = sp->check(sp, where, av, n_in, in, n_out, err, errlen))) return st;
    cz_gnode *nd = &g->nodes[i];
    nd->op = (cz_op_id)op;
    nd->name = nodename;
    nd->op_name = sp->name;
    nd->n_in = n_in;
    nd->n_out = n_out;
    nd->in = in;
    nd->out = out;
    nd->attr = av;
    for (int k = 0; k < n_in; k++) {
        const cz_mp *s = &ins->v.items[k];
        if (!s->len) continue;
        int id = nm_find(&b->names, s->v.s);
        if (id < 0) {
            int later = 0;
            for (uint32_t j = i; j < nodes->len && !later; j++) {
                const cz_mp *m = &nodes->v.items[j];
                const cz_mp *o = m->type == CZ_MP_MAP ? cz_mp_get(m, "outputs") : NULL;
                if (!o || o->type != CZ_MP_ARRAY) continue;
                for (uint32_t q = 0; q < o->len; q++)
                    if (o->v.items[q].type == CZ_MP_STR && strcmp(o->v.items[q].v.s, s->v.s) == 0)
                        later = 1;
            }
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "%s: input %d '%.80s' is not a graph input, a file tensor or an "
                           "output of an earlier node%s", where, k, s->v.s,
                           later ? " (it is produced by this or a later node: nodes must be in "
                                   "topological order, or the graph has a cycle)" : "");
        }
        in[k] = id;
    }
    for (int k = 0; k < n_out; k++) {
        const cz_mp *s = &outs->v.items[k];
        int id = nm_find(&b->names, s->v.s);
        if (id >= 0)
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "%s: output '%.80s' is defined twice (already %s)", where, s->v.s,
                           describe(g, id, buf, sizeof buf));
        out[k] = add_value(b, s->v.s, VK_NODE, (int)i);
    }
    return CZ_OK;
}

static cz_status build(cz_graph *g, const cz_mp *d, const gm_tensors *tens, char *err,
                       size_t errlen) {
    static const char *const GK[] = {"opset", "inputs", "outputs", "nodes"};
    cz_arena *ar = &g->arena;
    cz_status st;
    if (d->type != CZ_MP_MAP) return cz_fail(err, errlen, CZ_ERR_FORMAT, "'graph' must be a map");
    if (!has_keys(d, GK, 4))
        return cz_fail(err, errlen, CZ_ERR_FORMAT,
                       "graph must be a map with keys ['inputs', 'nodes', 'opset', 'outputs']");
    const cz_mp *opset = cz_mp_get(d, "opset");
    if (opset->type != CZ_MP_INT || opset->v.i < 1)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "graph 'opset' must be a positive integer");
    if (opset->v.i > GRAPH_OPSET_MAX)
        return cz_fail(err, errlen, CZ_ERR_UNSUPPORTED,
                       "graph op-set version %lld is newer than this reader's %d",
                       (long long)opset->v.i, GRAPH_OPSET_MAX);
    const cz_mp *ins = cz_mp_get(d, "inputs"), *outs = cz_mp_get(d, "outputs"),
                *nodes = cz_mp_get(d, "nodes");
    if (ins->type != CZ_MP_ARRAY)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "graph 'inputs' must be a list");
    if (outs->type != CZ_MP_ARRAY)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "graph 'outputs' must be a list");
    if (nodes->type != CZ_MP_ARRAY)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "graph 'nodes' must be a list");
    if (nodes->len > MAX_NODES)
        return cz_fail(err, errlen, CZ_ERR_LIMIT, "graph has %u nodes, over %d", nodes->len,
                       MAX_NODES);
    if (ins->len > MAX_GRAPH_IO)
        return cz_fail(err, errlen, CZ_ERR_LIMIT, "graph has %u inputs, over %d", ins->len,
                       MAX_GRAPH_IO);
    if (outs->len > MAX_GRAPH_IO)
        return cz_fail(err, errlen, CZ_ERR_LIMIT, "graph has %u outputs, over %d", outs->len,
                       MAX_GRAPH_IO);
    g->n_inputs = (int)ins->len;
    g->n_outputs = (int)outs->len;
    g->n_nodes = (int)nodes->len;
    g->inputs = cz_arena_alloc(ar, sizeof(cz_gio) * (ins->len + 1), 8);
    g->outputs = cz_arena_alloc(ar, sizeof(cz_gio) * (outs->len + 1), 8);
    g->nodes = cz_arena_alloc(ar, sizeof(cz_gnode) * (nodes->len + 1), 8);
    /* values: tensors + inputs + node outputs (<= 64 per node) */
    uint64_t nout = 0;
    for (uint32_t i = 0; i < nodes->len; i++) {
        const cz_mp *m = &nodes->v.items[i];
        const cz_mp *o = m->type == CZ_MP_MAP ? cz_mp_get(m, "outputs") : NULL;
        if (o && o->type == CZ_MP_ARRAY) nout += o->len;
    }
    uint64_t nval = (uint64_t)tens->n + ins->len + nout + 1;
    g->values = cz_arena_alloc(ar, sizeof(cz_gvalue) * nval, 8);
    build_ctx b = {g, {0}, (int)nval};
    if (!g->inputs || !g->outputs || !g->nodes || !g->values || !nm_init(&b.names, ar, nval))
        return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory parsing the graph");
    char what[64];
    for (uint32_t i = 0; i < ins->len; i++) {
        snprintf(what, sizeof what, "graph input %u", i);
        if ((st = parse_value(&ins->v.items[i], what, &g->inputs[i], err, errlen))) return st;
    }
    for (uint32_t i = 0; i < outs->len; i++) {
        snprintf(what, sizeof what, "graph output %u", i);
        if ((st = parse_value(&outs->v.items[i], what, &g->outputs[i], err, errlen))) return st;
    }
    if (outs->len == 0)
        return cz_fail(err, errlen, CZ_ERR_FORMAT, "graph must have at least one output");
    for (int t = 0; t < tens->n; t++) add_value(&b, tens->name[t], VK_TENSOR, t);
    for (int i = 0; i < g->n_inputs; i++) {
        int id = nm_find(&b.names, g->inputs[i].name);
        if (id >= 0) {
            char buf[160];
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "graph input '%.80s' is defined twice (also %s)", g->inputs[i].name,
                           describe(g, id, buf, sizeof buf));
        }
        g->inputs[i].value = add_value(&b, g->inputs[i].name, VK_INPUT, i);
    }
    name_map node_names;
    if (!nm_init(&node_names, ar, nodes->len))
        return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory parsing the graph");
    for (uint32_t i = 0; i < nodes->len; i++) {
        if ((st = parse_node(&b, nodes, i, ar, err, errlen))) return st;
        const cz_gnode *nd = &g->nodes[i];
        if (nm_find(&node_names, nd->name) >= 0)
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "node '%.80s' (%s): node name used twice",
                           nd->name, nd->op_name);
        nm_put(&node_names, nd->name, (int)i);
    }
    for (int i = 0; i < g->n_outputs; i++) {
        cz_gio *o = &g->outputs[i];
        int id = nm_find(&b.names, o->name);
        if (id < 0 || g->values[id].kind != VK_NODE)
            return cz_fail(err, errlen, CZ_ERR_FORMAT,
                           "graph output '%.80s' is not produced by any node", o->name);
        if (g->values[id].output_index >= 0)
            return cz_fail(err, errlen, CZ_ERR_FORMAT, "graph output '%.80s' is listed twice",
                           o->name);
        g->values[id].output_index = i;
        o->value = id;
    }
    /* symbols: one id per distinct symbolic dim name over inputs and outputs */
    int nsym = 0;
    const char **symn = cz_arena_alloc(ar, sizeof(char *) * (size_t)((g->n_inputs +
                                       g->n_outputs) * CZ_MAX_NDIM + 1), 8);
    if (!symn) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory parsing the graph");
    for (int io = 0; io < 2; io++) {
        cz_gio *arr = io ? g->outputs : g->inputs;
        int n = io ? g->n_outputs : g->n_inputs;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < arr[i].ndim; k++) {
                if (!arr[i].sym_name[k]) continue;
                int s = -1;
                for (int q = 0; q < nsym && s < 0; q++)
                    if (strcmp(symn[q], arr[i].sym_name[k]) == 0) s = q;
                if (s < 0) { s = nsym; symn[nsym++] = arr[i].sym_name[k]; }
                arr[i].sym[k] = s;
            }
    }
    g->n_syms = nsym;
    return CZ_OK;
}

/* liveness: per value its last reader; per node the values to free after it */
static cz_status liveness(cz_graph *g, char *err, size_t errlen) {
    cz_arena *ar = &g->arena;
    for (int i = 0; i < g->n_nodes; i++) {
        const cz_gnode *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_in; k++)
            if (nd->in[k] >= 0) g->values[nd->in[k]].last_use = i;
    }
    int *cnt = cz_arena_alloc(ar, sizeof(int) * (size_t)(g->n_nodes + 1), 8);
    if (!cnt) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory parsing the graph");
    memset(cnt, 0, sizeof(int) * (size_t)(g->n_nodes + 1));
    for (int v = 0; v < g->n_values; v++) {
        cz_gvalue *gv = &g->values[v];
        if (gv->kind != VK_NODE || gv->output_index >= 0) continue;
        if (gv->last_use < 0) gv->last_use = gv->index;  /* produced, never read */
        cnt[gv->last_use]++;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        int *f = cz_arena_alloc(ar, sizeof(int) * (size_t)(cnt[i] + 1), 8);
        if (!f) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory parsing the graph");
        g->nodes[i].free_ids = f;
        g->nodes[i].n_free = 0;
    }
    for (int v = 0; v < g->n_values; v++) {
        cz_gvalue *gv = &g->values[v];
        if (gv->kind != VK_NODE || gv->output_index >= 0) continue;
        cz_gnode *nd = &g->nodes[gv->last_use];
        ((int *)nd->free_ids)[nd->n_free++] = v;
    }
    return CZ_OK;
}

/* Can a node read file tensor input `slot` (rank ndim, kernel form f) as a kernel form?
 * Gather along axis 0 decodes the rows it picks from the form (czk_form_row), so an
 * embedding table stays compressed instead of being decoded densely at load. */
static int form_use(const cz_gnode *nd, int slot, const cz_form *f, int ndim) {
    if (nd->op == OP_GATHER && slot == 0) {
        int64_t ax = nd->attr[A_GATHER_AXIS].i;
        return czk_form_row_ok(f) && ndim >= 1 && (ax == 0 || ax == -ndim);
    }
    if (slot != 1) return 0;
    if (nd->op == OP_LINEAR || nd->op == OP_CONV) return 1;
    if (nd->op == OP_GEMM) return nd->attr[A_GEMM_TRANSB].i == 1;
    return 0;
}

/* Attach each file tensor the graph reads: its kernel form and/or dense data. */
static cz_status bind_tensors(cz_graph *g, cz_model *m, char *err, size_t errlen) {
    int n_owned = 0;
    for (int v = 0; v < g->n_values; v++)
        if (g->values[v].kind == VK_TENSOR && g->values[v].last_use >= 0) n_owned++;
    g->owned = cz_arena_alloc(&g->arena, sizeof(void *) * (size_t)(2 * n_owned + 1), 8);
    if (!g->owned) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory");
    for (int v = 0; v < g->n_values; v++) {
        cz_gvalue *gv = &g->values[v];
        if (gv->kind != VK_TENSOR || gv->last_use < 0) continue;
        gm_tensor_view tv;
        gm_tensor_get(m, gv->index, &tv);
        gv->dtype = tv.dtype;
        gv->ndim = tv.ndim;
        memcpy(gv->shape, tv.shape, sizeof gv->shape);
        gv->form = tv.form;
        gv->dense = tv.dense;
        if (!gv->dense && tv.form && tv.form->kind == CZ_FORM_DENSE && tv.dtype == CZ_F32)
            gv->dense = tv.form->u.dense.w;
        int need_dense = !tv.form, gemm_use = 0;
        for (int i = 0; i < g->n_nodes && !need_dense; i++) {
            const cz_gnode *nd = &g->nodes[i];
            for (int k = 0; k < nd->n_in; k++) {
                if (nd->in[k] != v) continue;
                if (!form_use(nd, k, tv.form, tv.ndim)) need_dense = 1;
                else if (nd->op == OP_LINEAR || nd->op == OP_GEMM) gemm_use = 1;
            }
        }
        if (need_dense && !gv->dense) {
            /* only big compressed float tensors lack dense data (cz_model.h) */
            uint64_t n = 1, bytes;
            for (int k = 0; k < tv.ndim; k++)
                if (!cz_mul_ok(n, (uint64_t)tv.shape[k], &n))
                    return cz_fail(err, errlen, CZ_ERR_LIMIT, "tensor '%.80s' too large",
                                   gv->name);
            if (!cz_mul_ok(n, 4, &bytes) || bytes > SIZE_MAX - 64)
                return cz_fail(err, errlen, CZ_ERR_LIMIT, "tensor '%.80s' too large", gv->name);
            void *p = cz_mem_alloc(g->alloc, bytes ? (size_t)bytes : 1, 64);
            if (!p) return cz_fail(err, errlen, CZ_ERR_MEMORY,
                                   "out of memory decoding tensor '%.80s'", gv->name);
            g->owned[g->n_owned++] = p;
            cz_status st = gm_decode_f32(m, gv->index, p, n, err, errlen);
            if (st) return st;
            gv->dense = p;
        }
        if (gv->form && !(gv->dtype == CZ_F32)) gv->form = NULL;
        /* int8 weights of Linear / Gemm: packed once for the int8 GEMM (batch >= 4 then
         * skips the per-call repacking; ~1 byte per weight, counted in the resident bytes).
         * CZ_INT8_PACK=0 in the environment keeps only the row-major weights. */
        const char *pk = getenv("CZ_INT8_PACK");   /* "0": repack per call instead */
        if (gemm_use && gv->form && gv->form->kind == CZ_FORM_AFFINE && !(pk && pk[0] == '0')) {
            void *p = NULL;
            cz_status st = gm_prepare_affine(m, gv->index, &p);
            if (st) return cz_fail(err, errlen, st, "tensor '%.80s': cannot pack its int8 "
                                   "weights", gv->name);
            if (p) g->owned[g->n_owned++] = p;
        }
    }
    return CZ_OK;
}

void cz_graph_free(void *graph, const cz_allocator *a) {
    cz_graph *g = graph;
    if (!g) return;
    (void)a;
    const cz_allocator *al = g->alloc;
    for (int i = 0; i < g->n_owned; i++) cz_mem_free(al, g->owned[i]);
    cz_arena ar = g->arena;
    cz_arena_free_all(&ar);
    cz_mem_free(al, g);
}

const cz_graph *cz_graph_of(const cz_model *m) { return m ? gm_graph(m) : NULL; }

cz_status cz_graph_load(cz_model *m, char *err, size_t errlen) {
    return cz_graph_build(m, err, errlen);
}

cz_status cz_graph_build(cz_model *m, char *err, size_t errlen) {
    const cz_mp *d = gm_graph_mp(m);
    if (!d || d->type == CZ_MP_NIL) return CZ_OK;
    const cz_allocator *al = gm_allocator(m);
    cz_graph *g = cz_mem_alloc(al, sizeof *g, 16);
    if (!g) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory building the graph");
    memset(g, 0, sizeof *g);
    g->alloc = al;
    cz_arena_init(&g->arena, al, 0);
    gm_tensors tens;
    cz_status st = gm_tensor_names(m, &g->arena, &tens);
    if (st) {
        cz_graph_free(g, al);
        return cz_fail(err, errlen, st, "out of memory building the graph");
    }
    st = build(g, d, &tens, err, errlen);
    if (!st) st = cz_graph_fuse(g, m, err, errlen);
    if (!st) st = liveness(g, err, errlen);
    if (!st) st = bind_tensors(g, m, err, errlen);
    if (st) {
        cz_graph_free(g, al);
        return st;
    }
    gm_attach(m, g);
    return CZ_OK;
}
