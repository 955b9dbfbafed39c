/*
 * graph_model.h -- the graph executor's view of struct cz_model (cz_model.h, format layer).
 * Internal to graph.c / exec.c: every access to the format layer's model goes through here.
 */
#ifndef CZ_GRAPH_MODEL_H
#define CZ_GRAPH_MODEL_H

#include <string.h>

#include "cz_model.h"
#include "graph.h"

typedef struct {
    int n;
    const char **name;
} gm_tensors;

typedef struct {
    cz_dtype dtype;                /* as the executor sees it (f16/f64 tensors: f32) */
    int ndim;
    int64_t shape[CZ_MAX_NDIM];
    const cz_form *form;
    const void *dense;             /* in `dtype`, or NULL */
} gm_tensor_view;

static inline const cz_mp *gm_graph_mp(const cz_model *m) { return m->graph_mp; }
static inline const cz_allocator *gm_allocator(const cz_model *m) { return &m->alloc; }
static inline int gm_threads(const cz_model *m) { return m->opts.threads > 0 ? m->opts.threads : 1; }
static inline uint64_t gm_max_bytes(const cz_model *m) { return m->max_tensor_bytes; }

static inline cz_status gm_tensor_names(const cz_model *m, cz_arena *ar, gm_tensors *out) {
    out->n = m->ntensors;
    out->name = cz_arena_alloc(ar, sizeof(char *) * (size_t)(m->ntensors + 1), 8);
    if (!out->name) return CZ_ERR_MEMORY;
    for (int i = 0; i < m->ntensors; i++) out->name[i] = m->tensors[i].name;
    return CZ_OK;
}

static inline void gm_tensor_get(const cz_model *m, int i, gm_tensor_view *v) {
    const cz_tensor_entry *t = &m->tensors[i];
    int fl = t->dtype == CZ_F32 || t->dtype == CZ_F16 || t->dtype == CZ_F64;
    v->dtype = fl ? CZ_F32 : t->dtype;
    v->ndim = t->ndim;
    for (int k = 0; k < CZ_MAX_NDIM; k++) v->shape[k] = k < t->ndim ? t->shape[k] : 0;
    v->form = fl ? t->form : NULL;
    v->dense = fl ? (const void *)t->f32 : t->data;
}

/* decode a float tensor densely as f32 (count = numel) */
static inline cz_status gm_decode_f32(const cz_model *m, int i, float *out, uint64_t count,
                                      char *err, size_t errlen) {
    return cz_model_decode_f32(m, i, out, count, err, errlen);
}

/* Load-time packing of tensor i's AFFINE form for the int8 GEMM (czk_affine_prepare); the
 * extra memory is added to the tensor's resident bytes; *owned receives it (free with the
 * model's allocator), NULL if none. */
static inline cz_status gm_prepare_affine(cz_model *m, int i, void **owned) {
    cz_tensor_entry *t = &m->tensors[i];
    *owned = NULL;
    if (!t->form || t->form->kind != CZ_FORM_AFFINE) return CZ_OK;
    uint64_t before = t->form->resident_bytes;
    cz_status st = czk_affine_prepare(t->form, &m->alloc, owned);
    if (st == CZ_OK && t->form->resident_bytes > before)
        t->resident_bytes += t->form->resident_bytes - before;
    return st;
}

static void gm_graph_free_hook(cz_model *m) {
    if (m && m->graph) {
        cz_graph_free(m->graph, &m->alloc);
        m->graph = NULL;
    }
}

/* What the model keeps for the executor: the plan, and idle run caches (exec.c: the
 * workspace, value table and intermediate buffers of a finished cz_run, handed to the next
 * one so that a steady serving loop does no allocator calls). A cz_run takes a cache with
 * an atomic exchange (or builds one when all are busy: concurrent runs each have their
 * own) and puts it back with a compare-and-swap into an empty slot (or frees it). */
typedef struct cz_runcache cz_runcache;
#define GM_RUNCACHES 4
typedef struct {
    cz_graph *g;
    cz_runcache *idle[GM_RUNCACHES];
} gm_state;

/* exec.c: the model's graph_free hook when m->graph is a gm_state (frees the caches, the
 * graph and the state). Its address also tells which of the two m->graph holds. */
void cz_gm_state_free(cz_model *m);

static inline void gm_attach(cz_model *m, cz_graph *g) {
    gm_state *s = cz_mem_alloc(&m->alloc, sizeof *s, 64);
    if (s) {
        memset(s, 0, sizeof *s);
        s->g = g;
        m->graph = s;
        m->graph_free = cz_gm_state_free;
    } else {   /* (no memory for the state: the plan alone, runs without caches) */
        m->graph = g;
        m->graph_free = gm_graph_free_hook;
    }
}

static inline gm_state *gm_state_of(const cz_model *m) {
    return m->graph && m->graph_free == cz_gm_state_free ? (gm_state *)m->graph : NULL;
}

static inline const cz_graph *gm_graph(const cz_model *m) {
    gm_state *s = gm_state_of(m);
    return s ? s->g : (const cz_graph *)m->graph;
}

#endif /* CZ_GRAPH_MODEL_H */
