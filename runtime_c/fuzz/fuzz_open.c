/* fuzz_open.c -- libFuzzer target: cz_open_memory + cz_verify + cz_tensor_read of every
 * tensor, with a 1 MiB tensor cap (the cap the Python fuzz tests use). Any crash, sanitizer
 * report or leak is a bug; every status is an acceptable outcome. */
#include <stdint.h>
#include <stdlib.h>

#include "cz.h"
#include "fix_crc.h"

#define CAP (1u << 20)

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
    o.max_tensor_bytes = CAP;
    o.threads = 1;
    cz_model *m = NULL;
    char err[256];
    if (cz_open_memory(data, size, &o, &m, err, sizeof err) != CZ_OK) {
        if (m) abort();                      /* contract: *out is NULL on failure */
        return 0;
    }
    (void)cz_verify(m, err, sizeof err);
    int n = cz_tensor_count(m);
    for (int i = 0; i < n; i++) {
        cz_info info;
        if (cz_tensor_info(m, i, &info) != CZ_OK) abort();
        uint64_t bytes = cz_dtype_size(info.dtype);
        for (int k = 0; k < info.ndim && bytes <= CAP; k++) bytes *= (uint64_t)info.shape[k];
        if (bytes > CAP) continue;
        void *buf = malloc(bytes ? bytes : 1);
        if (!buf) continue;
        (void)cz_tensor_read(m, info.name, buf, (size_t)bytes, err, sizeof err);
        uint64_t res;
        (void)cz_tensor_resident_bytes(m, info.name, &res);
        free(buf);
    }
    cz_close(m);
    return 0;
}
