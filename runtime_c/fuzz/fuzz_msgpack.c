/* fuzz_msgpack.c -- libFuzzer target: cz_mp_parse on arbitrary bytes, then a walk over the
 * whole tree (every string read, every key looked up) so a bad pointer or length is touched.
 * Also checks the parser's memory promise: the arena holds at most a small multiple of the
 * input (each node needs >= 1 input byte). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cz_internal.h"

static uint64_t walk(const cz_mp *v, int depth) {
    if (depth > 70) abort();                 /* the parser caps nesting at 64 */
    uint64_t h = (uint64_t)v->type;
    switch (v->type) {
    case CZ_MP_STR:
        if (v->v.s[v->len] != 0) abort();    /* NUL-terminated copy */
        /* fallthrough */
    case CZ_MP_BIN:
        for (uint32_t i = 0; i < v->len; i++) h = h * 31 + (uint8_t)v->v.s[i];
        break;
    case CZ_MP_ARRAY:
        for (uint32_t i = 0; i < v->len; i++) h += walk(&v->v.items[i], depth + 1);
        break;
    case CZ_MP_MAP:
        for (uint32_t i = 0; i < v->len; i++) {
            const cz_mp *k = &v->v.items[2 * i];
            if (k->type != CZ_MP_STR) abort();   /* keys must be strings */
            if (cz_mp_get(v, k->v.s) == NULL && strlen(k->v.s) == k->len) abort();
            h += walk(k, depth + 1) + walk(&v->v.items[2 * i + 1], depth + 1);
        }
        break;
    case CZ_MP_INT: h += (uint64_t)v->v.i; break;
    case CZ_MP_FLOAT: { uint64_t b; memcpy(&b, &v->v.f, 8); h += b; break; }
    default: break;
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cz_arena ar;
    cz_arena_init(&ar, cz_default_allocator(), 0);
    const cz_mp *root = NULL;
    char err[256];
    if (cz_mp_parse(data, size, &ar, &root, err, sizeof err) == CZ_OK) {
        volatile uint64_t h = walk(root, 0);
        (void)h;
        (void)cz_mp_get(root, "format");
        (void)cz_mp_streq(cz_mp_get(root, "format"), "cz");
    } else if (root) {
        abort();
    }
    /* "a small multiple of H": 24-byte nodes per >= 1 input byte, plus the first block */
    if (ar.used > 64 * (uint64_t)size + 2 * (65536 + 64)) abort();
    cz_arena_free_all(&ar);
    return 0;
}
