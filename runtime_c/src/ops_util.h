/*
 * ops_util.h -- helpers shared by the op files (implemented in exec.c / ops_shape.c).
 */
#ifndef CZ_OPS_UTIL_H
#define CZ_OPS_UTIL_H

#include "graph.h"

/* shape-building ops (Expand, Tile, ConstantOfShape, Range, Pad, Resize) cap their result */
#define CZ_MAX_RUNTIME_ELEMENTS ((uint64_t)1 << 32)

/* A 1-D (or scalar) integer tensor as int64 values in scratch (`what` names it). */
cz_status cz_ints(cz_exec *ex, cz_rt *t, const char *what, int64_t **out, int *n);
/* Axes from an integer tensor: normalised against rank, no repeats, at most CZ_MAX_NDIM. */
cz_status cz_axes(cz_exec *ex, cz_rt *t, const char *what, int rank, int *ax, int *n);
/* Convert n elements of src into dst's dtype (op set 1 Cast rules: float -> int truncates,
 * saturates, NaN -> 0; -> bool is x != 0; other casts as C/numpy with wrap-around). */
void cz_cast_elems(const cz_rt *src, cz_rt *dst, uint64_t n);
uint16_t cz_f2h(double x);
/* Y[idx] = X[sum idx[d] * xs[d]] over the output shape (element size es, n elements). */
void cz_gather_strided(const uint8_t *x, uint8_t *y, int r, const int64_t *oshape,
                       const int64_t *xs, size_t es, uint64_t n);

/* And, Or, Xor, IsNaN, IsInf, Min, Max (ops_logical.c; reached through cz_ops_elementwise) */
cz_op_fn cz_ops_logical(cz_op_id op);

cz_status cz_op_pad(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out);
cz_status cz_op_resize(cz_exec *ex, const cz_gnode *nd, cz_rt **in, cz_rt **out);

#endif
