/* api_model.c -- cz_open_file / cz_open_memory / cz_close / cz_verify / tensor API. */
#include <stdio.h>
#include <string.h>

#include "cz_model.h"

#define DEFAULT_MAX_TENSOR_BYTES (8ull << 30)

static int is_float(cz_dtype d) { return d == CZ_F32 || d == CZ_F16 || d == CZ_F64; }

void cz_close(cz_model *m) {
    if (!m) return;
    if (m->graph_free) m->graph_free(m);
    m->graph = NULL;
    for (size_t i = 0; i < m->nkeep; i++) cz_mem_free(&m->alloc, m->keep[i]);
    cz_mem_free(&m->alloc, m->keep);
    cz_arena_free_all(&m->arena);
    cz_mem_free(&m->alloc, m->owned_bytes);
    cz_allocator a = m->alloc;
    cz_mem_free(&a, m);
}

static cz_status build_tensors(cz_model *m, char *err, size_t errlen) {
    static float empty_f32[16] __attribute__((aligned(64)));   /* read-only, never written */
    for (int i = 0; i < m->ntensors; i++) {
        cz_tensor_entry *e = &m->tensors[i];
        cz_status st;
        if (is_float(e->dtype)) {
            st = cz_form_build(m, e->enc, e->name, &e->form, err, errlen);
            if (st) return st;
            e->resident_bytes = e->form->resident_bytes;
            if (e->form->kind == CZ_FORM_DENSE) {
                e->f32 = e->form->u.dense.w;
            } else if (e->numel <= CZ_MODEL_DENSE_MAX) {
                float *f;
                st = cz_node_decode_f32(m, e->enc, e->name, &f, err, errlen);
                if (st) return st;
                st = cz_model_keep(m, f, err, errlen);
                if (st) return st;
                e->f32 = f;
                e->resident_bytes += e->numel * 4;
            }
            if (e->f32 == NULL && e->numel == 0) e->f32 = empty_f32;
            if (e->dtype == CZ_F32) e->data = e->f32;
        } else {
            size_t isz = cz_dtype_size(e->dtype);
            void *d = cz_mem_alloc(&m->alloc, (size_t)(e->numel ? e->numel * isz : 1), 64);
            if (!d) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory decoding tensor '%s'", e->name);
            st = cz_tensor_decode(m, i, d, err, errlen);
            if (st) { cz_mem_free(&m->alloc, d); return st; }
            st = cz_model_keep(m, d, err, errlen);
            if (st) return st;
            e->data = d;
            e->resident_bytes = e->numel * isz;
        }
    }
    return CZ_OK;
}

static cz_status open_common(const uint8_t *data, size_t size, void *owned, const cz_options *o,
                             cz_model **out, char *err, size_t errlen) {
    const cz_allocator *a = (o && o->allocator) ? o->allocator : cz_default_allocator();
    cz_model *m = cz_mem_alloc(a, sizeof(cz_model), 64);
    if (!m) {
        cz_mem_free(a, owned);
        return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory opening the model");
    }
    memset(m, 0, sizeof *m);
    m->alloc = *a;
    if (o) m->opts = *o;
    m->opts.allocator = &m->alloc;
    if (m->opts.threads <= 0) m->opts.threads = 1;
    m->max_tensor_bytes = m->opts.max_tensor_bytes ? m->opts.max_tensor_bytes : DEFAULT_MAX_TENSOR_BYTES;
    m->bytes = data;
    m->size = size;
    m->owned_bytes = owned;
    cz_arena_init(&m->arena, &m->alloc, 0);
    if (err && errlen) err[0] = '\0';
    cz_status st = cz_container_parse(m, err, errlen);
    if (!st) st = build_tensors(m, err, errlen);
    if (!st) st = cz_graph_load(m, err, errlen);
    if (st) {
        cz_close(m);
        return st;
    }
    *out = m;
    return CZ_OK;
}

cz_status cz_open_memory(const void *data, size_t size, const cz_options *options,
                         cz_model **out, char *err, size_t errlen) {
    if (!out) return cz_fail(err, errlen, CZ_ERR_PARAM, "out is NULL");
    *out = NULL;
    if (!data && size) return cz_fail(err, errlen, CZ_ERR_PARAM, "data is NULL");
    static const uint8_t none[1] = {0};
    return open_common(data ? data : none, size, NULL, options, out, err, errlen);
}

cz_status cz_open_file(const char *path, const cz_options *options, cz_model **out, char *err,
                       size_t errlen) {
    if (!out) return cz_fail(err, errlen, CZ_ERR_PARAM, "out is NULL");
    *out = NULL;
    if (!path) return cz_fail(err, errlen, CZ_ERR_PARAM, "path is NULL");
    const cz_allocator *a = (options && options->allocator) ? options->allocator : cz_default_allocator();
    FILE *f = fopen(path, "rb");
    if (!f) return cz_fail(err, errlen, CZ_ERR_IO, "cannot open %s", path);
    long sz = -1;
    if (fseek(f, 0, SEEK_END) == 0) sz = ftell(f);
    if (sz < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return cz_fail(err, errlen, CZ_ERR_IO, "cannot determine the size of %s", path);
    }
    uint8_t *buf = cz_mem_alloc(a, (size_t)sz ? (size_t)sz : 1, 64);
    if (!buf) {
        fclose(f);
        return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory reading %s (%ld bytes)", path, sz);
    }
    size_t got = sz ? fread(buf, 1, (size_t)sz, f) : 0;
    int extra = fgetc(f) != EOF;
    int bad = ferror(f);
    fclose(f);
    if (got != (size_t)sz || extra || bad) {
        cz_mem_free(a, buf);
        return cz_fail(err, errlen, CZ_ERR_IO, "cannot read %s (size changed or read error)", path);
    }
    return open_common(buf, (size_t)sz, buf, options, out, err, errlen);
}

cz_status cz_verify(const cz_model *m, char *err, size_t errlen) {
    if (!m) return cz_fail(err, errlen, CZ_ERR_PARAM, "model is NULL");
    for (uint32_t i = 0; i < m->nsections; i++) {
        cz_status st = cz_section_check(m, i, NULL, NULL, err, errlen);
        if (st) return st;
    }
    for (int i = 0; i < m->ntensors; i++) {
        const cz_tensor_entry *e = &m->tensors[i];
        size_t isz = cz_dtype_size(e->dtype);
        uint64_t bytes;
        if (!cz_mul_ok(e->numel, isz, &bytes) || bytes > SIZE_MAX)
            return cz_fail(err, errlen, CZ_ERR_LIMIT, "tensor '%s' is too large", e->name);
        if (bytes > m->max_tensor_bytes)   /* cz_tensor_decode reports the cap precisely */
            return cz_tensor_decode(m, i, NULL, err, errlen);
        void *d = cz_mem_alloc(&m->alloc, (size_t)(bytes ? bytes : 1), 64);
        if (!d) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory verifying tensor '%s'", e->name);
        cz_status st = cz_tensor_decode(m, i, d, err, errlen);
        cz_mem_free(&m->alloc, d);
        if (st) return st;
    }
    return CZ_OK;
}

int cz_tensor_count(const cz_model *m) { return m ? m->ntensors : 0; }

const cz_tensor_entry *cz_model_tensor(const cz_model *m, int index) {
    if (!m || index < 0 || index >= m->ntensors) return NULL;
    return &m->tensors[index];
}

const void *cz_model_tensor_data(const cz_model *m, int index) {
    const cz_tensor_entry *e = cz_model_tensor(m, index);
    return e ? e->data : NULL;
}

const float *cz_model_tensor_f32(const cz_model *m, int index) {
    const cz_tensor_entry *e = cz_model_tensor(m, index);
    return e ? e->f32 : NULL;
}

cz_status cz_model_decode_f32(const cz_model *m, int index, float *out, uint64_t count, char *err,
                              size_t errlen) {
    const cz_tensor_entry *e = cz_model_tensor(m, index);
    if (!e || !out) return cz_fail(err, errlen, CZ_ERR_PARAM, "bad tensor index or output");
    if (count != e->numel) return cz_fail(err, errlen, CZ_ERR_PARAM, "count %llu != %llu elements",
                                          (unsigned long long)count, (unsigned long long)e->numel);
    if (e->f32) { memcpy(out, e->f32, (size_t)count * 4); return CZ_OK; }
    float *f;
    cz_status st = cz_node_decode_f32(m, e->enc, e->name, &f, err, errlen);
    if (st) return st;
    memcpy(out, f, (size_t)count * 4);
    cz_mem_free(&m->alloc, f);
    return CZ_OK;
}

cz_status cz_tensor_info(const cz_model *m, int index, cz_info *out) {
    const cz_tensor_entry *e = cz_model_tensor(m, index);
    if (!out) return CZ_ERR_PARAM;
    if (!e) return CZ_ERR_NOT_FOUND;
    memset(out, 0, sizeof *out);
    out->name = e->name;
    out->dtype = e->dtype;
    out->ndim = e->ndim;
    memcpy(out->shape, e->shape, sizeof out->shape);
    return CZ_OK;
}

cz_status cz_tensor_read(const cz_model *m, const char *name, void *out, size_t bytes, char *err,
                         size_t errlen) {
    if (!m || !name) return cz_fail(err, errlen, CZ_ERR_PARAM, "model or name is NULL");
    int i = cz_model_find_tensor(m, name);
    if (i < 0) return cz_fail(err, errlen, CZ_ERR_NOT_FOUND, "no tensor named '%.200s'", name);
    const cz_tensor_entry *e = &m->tensors[i];
    uint64_t need;
    if (!cz_mul_ok(e->numel, cz_dtype_size(e->dtype), &need) || need > bytes || (!out && need))
        return cz_fail(err, errlen, CZ_ERR_PARAM, "tensor '%.200s' needs %llu bytes, buffer has %zu", name,
                       (unsigned long long)e->numel * cz_dtype_size(e->dtype), bytes);
    return cz_tensor_decode(m, i, out, err, errlen);
}

cz_status cz_tensor_resident_bytes(const cz_model *m, const char *name, uint64_t *out) {
    if (!m || !name || !out) return CZ_ERR_PARAM;
    int i = cz_model_find_tensor(m, name);
    if (i < 0) return CZ_ERR_NOT_FOUND;
    *out = m->tensors[i].resident_bytes;
    return CZ_OK;
}
