/*
 * graph_fuse.c -- the load-time fusion pass of the graph plan (graph.h): chains of nodes
 * that an exported transformer spells op by op become one node, so their intermediates are
 * never written out (each one a full pass over a 128 x 1536 or 12 x 128 x 128 f32 block in
 * MiniLM). Run by cz_graph_build after the nodes are parsed and validated and before the
 * liveness is computed; the file's graph and its semantics are unchanged (results within
 * the float tolerance of the unfused ops: the tests run both, CZ_FUSE=0 turns the pass
 * off). A chain is fused only when each of its intermediates has exactly one reader (the
 * next node of the chain) and is not a graph output; the fused node takes the place of the
 * chain's last node (every input of the chain exists by then) and its intermediates become
 * VK_FUSED values, never materialised.
 *
 *  - exact Gelu as exported from PyTorch's erf form (HF BERT "gelu"):
 *        Mul(Mul(x, Add(Erf(Div(x, sqrt 2)), 1)), 0.5)   -> Gelu(x) (approximate "none")
 *    (Add and the Muls in either operand order), 5 passes -> 1 (czv_gelu_erf).
 *  - the attention scale and mask before Softmax:
 *        Softmax(Add(Mul(x, s), b))   -> OP_SOFTMAX_SA(x, s, b)   (either operand order)
 *    s a 0-d f32 file tensor; the product and the sum are rounded to f32 in that order
 *    (czv_softmax_row_sb), so the Softmax input is the same bits as unfused.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "graph.h"
#include "graph_model.h"

typedef struct {
    cz_graph *g;
    const cz_model *m;
    int *uses;        /* per value: number of node input slots reading it */
    char *dead;       /* per node: fused away */
} fuse_ctx;

/* value v is an intermediate a chain may swallow: made by a node of op `op`, read once,
 * not a graph output; returns the producing node or NULL */
static cz_gnode *sole(const fuse_ctx *c, int v, cz_op_id op) {
    if (v < 0) return NULL;
    const cz_gvalue *gv = &c->g->values[v];
    if (gv->kind != VK_NODE || gv->output_index >= 0 || c->uses[v] != 1) return NULL;
    cz_gnode *nd = &c->g->nodes[gv->index];
    if (c->dead[gv->index] || nd->op != op || nd->n_out != 1) return NULL;
    return nd;
}

/* value v is a 0-d f32 file tensor with dense data: its value in *out */
static int scalar_const(const fuse_ctx *c, int v, float *out) {
    if (v < 0 || c->g->values[v].kind != VK_TENSOR) return 0;
    gm_tensor_view tv;
    gm_tensor_get(c->m, c->g->values[v].index, &tv);
    if (tv.dtype != CZ_F32 || tv.ndim != 0 || !tv.dense) return 0;
    *out = *(const float *)tv.dense;
    return 1;
}

/* a binary node with a scalar constant equal to `want` (within rel. tol) as one operand:
 * the slot of the other operand, else -1 */
static int with_const(const fuse_ctx *c, const cz_gnode *nd, double want, double tol,
                      int commutes) {
    if (nd->n_in != 2 || nd->in[0] < 0 || nd->in[1] < 0) return -1;
    for (int k = commutes ? 0 : 1; k < 2; k++) {
        float v;
        if (scalar_const(c, nd->in[k], &v) && fabs((double)v - want) <= tol * fabs(want))
            return 1 - k;
    }
    return -1;
}

static void kill_node(fuse_ctx *c, cz_gnode *nd) {
    c->dead[nd - c->g->nodes] = 1;
    for (int k = 0; k < nd->n_out; k++)
        if (nd->out[k] >= 0) c->g->values[nd->out[k]].kind = VK_FUSED;
}

/* nd = Mul(m1, 0.5): the Gelu chain ending here -> Gelu(x) in nd's place */
static int fuse_gelu(fuse_ctx *c, cz_gnode *nd) {
    int s = with_const(c, nd, 0.5, 0.0, 1);
    cz_gnode *m1 = s >= 0 ? sole(c, nd->in[s], OP_MUL) : NULL;
    if (!m1 || m1->n_in != 2) return 0;
    for (int k = 0; k < 2; k++) {   /* m1 = Mul(x, add) or Mul(add, x) */
        int x = m1->in[1 - k];
        cz_gnode *ad = sole(c, m1->in[k], OP_ADD);
        int sa = ad ? with_const(c, ad, 1.0, 0.0, 1) : -1;
        cz_gnode *er = sa >= 0 ? sole(c, ad->in[sa], OP_ERF) : NULL;
        cz_gnode *dv = er ? sole(c, er->in[0], OP_DIV) : NULL;
        if (!dv || with_const(c, dv, 1.4142135623730951, 1e-6, 0) != 0 || dv->in[0] != x)
            continue;
        int *in = cz_arena_alloc(&c->g->arena, sizeof(int), 8);
        cz_attr *at = cz_arena_alloc(&c->g->arena, sizeof(cz_attr), 8);
        if (!in || !at) return -1;
        in[0] = x;
        memset(at, 0, sizeof *at);
        at[A_GELU_APPROXIMATE].present = 1;
        at[A_GELU_APPROXIMATE].set = 1;
        at[A_GELU_APPROXIMATE].s = "none";
        at[A_GELU_APPROXIMATE].choice = 0;
        kill_node(c, dv);
        kill_node(c, er);
        kill_node(c, ad);
        kill_node(c, m1);
        nd->op = OP_GELU;
        nd->op_name = "Gelu(fused Div-Erf-Add-Mul-Mul)";
        nd->n_in = 1;
        nd->in = in;
        nd->attr = at;
        return 1;
    }
    return 0;
}

/* nd = Softmax(Add(Mul(x, s), b)) -> OP_SOFTMAX_SA(x, s, b) in nd's place */
static int fuse_softmax(fuse_ctx *c, cz_gnode *nd) {
    cz_gnode *ad = sole(c, nd->in[0], OP_ADD);
    if (!ad || ad->n_in != 2 || ad->in[0] < 0 || ad->in[1] < 0) return 0;
    for (int k = 0; k < 2; k++) {   /* ad = Add(mul, b) or Add(b, mul) */
        cz_gnode *mu = sole(c, ad->in[k], OP_MUL);
        if (!mu || mu->n_in != 2 || mu->in[0] < 0 || mu->in[1] < 0) continue;
        float s;
        int xs = scalar_const(c, mu->in[1], &s) ? 0 : scalar_const(c, mu->in[0], &s) ? 1 : -1;
        if (xs < 0) continue;
        int *in = cz_arena_alloc(&c->g->arena, 3 * sizeof(int), 8);
        if (!in) return -1;
        in[0] = mu->in[xs];
        in[1] = mu->in[1 - xs];
        in[2] = ad->in[1 - k];
        kill_node(c, mu);
        kill_node(c, ad);
        nd->op = OP_SOFTMAX_SA;
        nd->op_name = "Softmax(fused Mul-Add-Softmax)";
        nd->n_in = 3;
        nd->in = in;
        return 1;   /* (attr: Softmax's, the same schema) */
    }
    return 0;
}

cz_status cz_graph_fuse(cz_graph *g, const cz_model *m, char *err, size_t errlen) {
    const char *e = getenv("CZ_FUSE");   /* "0": run the graph op by op (A/B, tests) */
    if ((e && e[0] == '0') || g->n_nodes == 0) return CZ_OK;
    fuse_ctx c = {g, m, NULL, NULL};
    c.uses = cz_arena_alloc(&g->arena, sizeof(int) * (size_t)(g->n_values + 1), 8);
    c.dead = cz_arena_alloc(&g->arena, (size_t)g->n_nodes + 1, 8);
    if (!c.uses || !c.dead) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory");
    memset(c.uses, 0, sizeof(int) * (size_t)(g->n_values + 1));
    memset(c.dead, 0, (size_t)g->n_nodes + 1);
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_in; k++)
            if (g->nodes[i].in[k] >= 0) c.uses[g->nodes[i].in[k]]++;
    int fused = 0;
    for (int i = 0; i < g->n_nodes; i++) {
        cz_gnode *nd = &g->nodes[i];
        int r = 0;
        if (c.dead[i]) continue;
        if (nd->op == OP_MUL) r = fuse_gelu(&c, nd);
        else if (nd->op == OP_SOFTMAX && nd->n_in == 1) r = fuse_softmax(&c, nd);
        if (r < 0) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory");
        fused += r;
    }
    if (!fused) return CZ_OK;
    int j = 0;   /* drop the fused-away nodes; node outputs name their new node index */
    for (int i = 0; i < g->n_nodes; i++) {
        if (c.dead[i]) continue;
        g->nodes[j] = g->nodes[i];
        for (int k = 0; k < g->nodes[j].n_out; k++)
            if (g->nodes[j].out[k] >= 0 && g->values[g->nodes[j].out[k]].kind == VK_NODE)
                g->values[g->nodes[j].out[k]].index = j;
        j++;
    }
    g->n_nodes = j;
    return CZ_OK;
}
