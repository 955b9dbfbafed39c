/*
 * graph_ops.h -- the op table of op set 1 (graph_ops.c), private to graph.c / graph_ops.c.
 */
#ifndef CZ_GRAPH_OPS_H
#define CZ_GRAPH_OPS_H

#include "graph.h"

#define MAX_NAME 4096              /* characters of any name or string attribute */

typedef struct {
    const char *name;
    cz_attr_type type;
    int deflt;                     /* 0: optional, no default; 1: default below; 2: required */
    int64_t di;
    double df;
    const char *ds;
    const char *const *choices;    /* NULL-terminated strings (AT_STR/AT_STRS) */
    const int64_t *ichoices;       /* int choices, terminated by INT64_MIN */
    int has_min;
    int64_t min;
    int nonfinite;
} attr_spec;

typedef struct op_spec op_spec;
/* cross-attribute / input check at load (ops.py `check`) */
typedef cz_status (*check_fn)(const op_spec *sp, const char *where, const cz_attr *a, int n_in,
                              const int *in, int n_out, char *err, size_t errlen);

struct op_spec {
    const char *name;
    int min_in, max_in, min_out, max_out;
    const attr_spec *attrs;
    int n_attrs;
    check_fn check;
};

const op_spec *cz_op_spec(int op);          /* NULL if out of range */
int cz_op_lookup(const char *name);         /* op id or -1 */
/* Decode a node's "attrs" map against the op's schema into av[sp->n_attrs] (defaults filled,
 * unknown / missing-required / ill-typed attributes rejected; `where` names the node). */
cz_status cz_node_attrs(const op_spec *sp, const cz_mp *attrs, const char *where, cz_attr *av,
                        cz_arena *ar, char *err, size_t errlen);
size_t cz_utf8_chars(const char *s, size_t bytes);

#endif /* CZ_GRAPH_OPS_H */
