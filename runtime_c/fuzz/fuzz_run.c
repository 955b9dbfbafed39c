/* fuzz_run.c -- libFuzzer target: cz_open_memory, then cz_run on fixed inputs: every graph
 * input gets a deterministic tensor of its declared dtype, symbolic dims set to 2 (inputs of
 * more than 4096 elements are skipped), threads = 1, tensor cap 1 MiB. Seeded with small
 * models that have a graph (fuzz/seeds.py run/). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cz.h"
#include "fix_crc.h"

#define MAX_IN 8
#define MAX_ELEMS 4096

static int one(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *b = fuzz_fix_header_crc(data, size);   /* see fix_crc.h */
    if (!b) return 0;
    int r = one(b, size);
    free(b);
    return r;
}

static int one(const uint8_t *data, size_t size) {
    cz_options o = {0};
    o.max_tensor_bytes = 1u << 20;
    o.threads = 1;
    cz_model *m = NULL;
    char err[256];
    if (cz_open_memory(data, size, &o, &m, err, sizeof err) != CZ_OK) return 0;
    int ni = cz_input_count(m), no = cz_output_count(m);
    if (ni > MAX_IN || no < 1 || no > MAX_IN) { cz_close(m); return 0; }
    cz_tensor in[MAX_IN], out[MAX_IN];
    memset(in, 0, sizeof in);
    memset(out, 0, sizeof out);
    int ok = 1;
    for (int i = 0; i < ni && ok; i++) {
        cz_info info;
        if (cz_input_info(m, i, &info) != CZ_OK) abort();
        uint64_t elems = 1;
        in[i].name = info.name;
        in[i].dtype = info.dtype;
        in[i].ndim = info.ndim;
        for (int k = 0; k < info.ndim; k++) {
            in[i].shape[k] = info.shape[k] < 0 ? 2 : info.shape[k];
            elems *= (uint64_t)in[i].shape[k];
            if (elems > MAX_ELEMS) { ok = 0; break; }
        }
        if (!ok) break;
        size_t isz = cz_dtype_size(info.dtype);
        if (!isz) abort();
        in[i].bytes = (size_t)elems * isz;
        uint8_t *p = malloc(in[i].bytes ? in[i].bytes : 1);
        if (!p) { ok = 0; break; }
        for (size_t b = 0; b < in[i].bytes; b++) p[b] = (uint8_t)(b * 37 + 11);
        if (info.dtype == CZ_F32)            /* finite floats in [-1, 1) */
            for (uint64_t e = 0; e < elems; e++) ((float *)p)[e] = (float)((int)(e % 17) - 8) / 8.0f;
        if (info.dtype == CZ_BOOL)
            for (uint64_t e = 0; e < elems; e++) p[e] &= 1;
        in[i].data = p;
    }
    if (ok) {
        if (cz_run(m, in, ni, out, no, err, sizeof err) == CZ_OK)
            for (int j = 0; j < no; j++) cz_free(m, out[j].data);
    }
    for (int i = 0; i < ni; i++) free(in[i].data);
    cz_close(m);
    return 0;
}
