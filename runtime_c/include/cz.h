/*
 * cz.h -- the czmodel C runtime: open a .cz file, verify it, and run its graph.
 *
 * Stable API. Every function that can fail returns a cz_status; on failure it writes a
 * one-line message (what, where) into the caller's err buffer when err != NULL.
 * Nothing a file contains makes this library abort, exit, or read out of bounds: every
 * size and offset is checked before use. There is no global state: all memory comes from
 * the allocator in cz_options (or malloc/free by default), and a loaded model may be run
 * from several threads at once (each cz_run call uses its own workspace).
 */
#ifndef CZ_H
#define CZ_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CZ_VERSION_MAJOR 1   /* file format major version this library reads */
#define CZ_MAX_NDIM 16

/* Status codes, numbered in groups. cz_status_name() gives the name string. */
typedef enum {
    CZ_OK = 0,
    /* format: the bytes are not a well-formed .cz file */
    CZ_ERR_FORMAT = 100,
    /* corruption: structure valid, content inconsistent (checksums, streams) */
    CZ_ERR_CORRUPT = 200,
    CZ_ERR_CHECKSUM = 201,
    /* unsupported: version, feature, codec, dtype or op this library does not know */
    CZ_ERR_UNSUPPORTED = 300,
    /* limit: the file claims sizes beyond a hard limit or the caller's caps */
    CZ_ERR_LIMIT = 400,
    /* parameter: the caller passed something wrong (names, shapes, dtypes, NULLs) */
    CZ_ERR_PARAM = 500,
    CZ_ERR_SHAPE = 501,
    CZ_ERR_NOT_FOUND = 502,
    /* memory: the allocator failed */
    CZ_ERR_MEMORY = 600,
    /* io: the file could not be read */
    CZ_ERR_IO = 700
} cz_status;

/* "CZ_ERR_FORMAT" etc.; "CZ_ERR_UNKNOWN" for a value not in the enum. Never NULL. */
const char *cz_status_name(cz_status status);

typedef enum {
    CZ_F32 = 1, CZ_F16 = 2, CZ_F64 = 3, CZ_I64 = 4, CZ_I32 = 5, CZ_I16 = 6, CZ_I8 = 7,
    CZ_U8 = 8, CZ_U16 = 9, CZ_U32 = 10, CZ_BOOL = 11
} cz_dtype;

/* Bytes per element of a dtype; 0 for an unknown value. */
size_t cz_dtype_size(cz_dtype dtype);

/* Caller-supplied allocator. alloc returns memory aligned to `align` (a power of two
 * <= 64) or NULL; free accepts NULL. */
typedef struct {
    void *(*alloc)(void *ctx, size_t size, size_t align);
    void (*free)(void *ctx, void *ptr);
    void *ctx;
} cz_allocator;

typedef struct {
    const cz_allocator *allocator; /* NULL: aligned malloc/free */
    uint64_t max_tensor_bytes;     /* cap on any one decoded tensor or stream; 0: 8 GiB */
    int threads;                   /* threads used by cz_run; <= 0: 1 */
    int precise;                   /* nonzero: every float product (Gemm/MatMul/Conv/
                                    * ConvTranspose, any weight form) accumulates in double
                                    * and rounds once, bit-identical to the reference
                                    * kernels (dense convs: a blocked double kernel).
                                    * ~3x slower or more; for checking a conversion
                                    * against another runtime on ill-conditioned models,
                                    * where float32 summation order alone moves outputs.
                                    * Integer paths give the same bits either way. */
} cz_options;

typedef struct cz_model cz_model;

/* Open a file by path (read fully into allocator memory) or from a caller buffer.
 * cz_open_memory BORROWS `data`: it must stay valid and unchanged until cz_close.
 * Validates the preamble, header, section table, every encoding tree and the graph;
 * decodes weights into kernel forms. On failure *out is NULL.
 * Returns CZ_OK or a CZ_ERR_* code (FORMAT/CORRUPT/CHECKSUM/UNSUPPORTED/LIMIT/MEMORY/IO). */
cz_status cz_open_file(const char *path, const cz_options *options, cz_model **out,
                       char *err, size_t errlen);
cz_status cz_open_memory(const void *data, size_t size, const cz_options *options,
                         cz_model **out, char *err, size_t errlen);

/* Free everything the model owns. NULL is a no-op. */
void cz_close(cz_model *model);

/* Check every section checksum and decode every tensor once (full soundness check). */
cz_status cz_verify(const cz_model *model, char *err, size_t errlen);

/* ---- tensors stored in the file ---- */

typedef struct {
    const char *name;              /* owned by the model */
    cz_dtype dtype;
    int ndim;
    int64_t shape[CZ_MAX_NDIM];    /* -1 marks a symbolic dim (graph values only) */
} cz_info;

int cz_tensor_count(const cz_model *model);
cz_status cz_tensor_info(const cz_model *model, int index, cz_info *out);
/* Decode tensor `name` densely into `out` (capacity `bytes`, in the tensor's dtype).
 * CZ_ERR_NOT_FOUND for an unknown name, CZ_ERR_PARAM if `bytes` is too small. */
cz_status cz_tensor_read(const cz_model *model, const char *name, void *out, size_t bytes,
                         char *err, size_t errlen);
/* Bytes the runtime keeps resident for tensor `name` (its kernel form). */
cz_status cz_tensor_resident_bytes(const cz_model *model, const char *name, uint64_t *out);

/* ---- running the graph ---- */

int cz_input_count(const cz_model *model);   /* 0 when the file has no graph */
int cz_output_count(const cz_model *model);
cz_status cz_input_info(const cz_model *model, int index, cz_info *out);
cz_status cz_output_info(const cz_model *model, int index, cz_info *out);

typedef struct {
    const char *name;
    cz_dtype dtype;
    int ndim;
    int64_t shape[CZ_MAX_NDIM];
    void *data;                    /* outputs: NULL -> allocated by cz_run (free with cz_free) */
    size_t bytes;                  /* capacity of data */
} cz_tensor;

/* Run the graph. inputs[i] are matched by name. outputs[j].name selects an output (NULL:
 * the j-th graph output); with data != NULL the result is written there if it fits
 * (CZ_ERR_PARAM otherwise), else it is allocated with the model's allocator. On return
 * each output's dtype/ndim/shape/bytes are filled. Thread-safe on one model. */
cz_status cz_run(const cz_model *model, const cz_tensor *inputs, int n_inputs,
                 cz_tensor *outputs, int n_outputs, char *err, size_t errlen);

/* Free memory that cz_run allocated for an output. */
void cz_free(const cz_model *model, void *ptr);

/* Library version string, e.g. "0.1.0". */
const char *cz_version(void);

#ifdef __cplusplus
}
#endif
#endif /* CZ_H */
