/* msgpack.c -- bounds-checked msgpack reader for the .cz header.
 *
 * Every container count is checked against the bytes that remain BEFORE anything is
 * allocated (an array item or a map pair needs at least 1 or 2 bytes), less the bytes already
 * promised to the items of the enclosing containers, so all item arrays together hold at
 * most one node per input byte (at most 24x the input, plus strings), nesting is capped
 * at 64, ext types are rejected, strings must be valid UTF-8, map keys must be unique
 * strings. An unsigned integer above INT64_MAX is valid msgpack (and valid plain data in
 * metadata/calibration): it parses as CZ_MP_INT saturated to INT64_MAX with len = 1, which
 * every bounded header field rejects by its own limit. Node memory comes from the
 * arena, so it is bounded by a small multiple of the input length.
 */
#include <stdlib.h>
#include <string.h>

#include "cz_internal.h"

#define MP_MAX_DEPTH 64

typedef struct {
    const uint8_t *p, *end, *base;
    uint64_t pending;              /* items promised by open containers, not yet started */
    cz_arena *ar;
    char *err;
    size_t errlen;
} mp_in;

static cz_status mp_fail(mp_in *in, const char *what) {
    return cz_fail(in->err, in->errlen, CZ_ERR_FORMAT,
                   "header is not valid msgpack: %s at header byte %zu", what,
                   (size_t)(in->p - in->base));
}

static int utf8_valid(const uint8_t *s, size_t n) {
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c < 0x80) { i++; continue; }
        size_t len;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) { len = 2; cp = c & 0x1F; }
        else if (c >= 0xE0 && c <= 0xEF) { len = 3; cp = c & 0x0F; }
        else if (c >= 0xF0 && c <= 0xF4) { len = 4; cp = c & 0x07; }
        else return 0;
        if (n - i < len) return 0;
        for (size_t k = 1; k < len; k++) {
            uint8_t d = s[i + k];
            if ((d & 0xC0) != 0x80) return 0;
            cp = (cp << 6) | (d & 0x3F);
        }
        if (len == 3 && (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF))) return 0;
        if (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) return 0;
        i += len;
    }
    return 1;
}

static uint64_t be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = (v << 8) | p[i];
    return v;
}

static int key_cmp(const void *a, const void *b) {
    const cz_mp *x = *(const cz_mp *const *)a, *y = *(const cz_mp *const *)b;
    if (x->len != y->len) return x->len < y->len ? -1 : 1;
    return memcmp(x->v.s, y->v.s, x->len);
}

static cz_status check_dup_keys(mp_in *in, const cz_mp *items, uint32_t npairs) {
    if (npairs < 2) return CZ_OK;
    if (npairs <= 16) {
        for (uint32_t i = 0; i < npairs; i++)
            for (uint32_t j = i + 1; j < npairs; j++) {
                const cz_mp *a = &items[2 * i], *b = &items[2 * j];
                if (a->len == b->len && memcmp(a->v.s, b->v.s, a->len) == 0)
                    return mp_fail(in, "duplicate map key");
            }
        return CZ_OK;
    }
    const cz_mp **keys = cz_mem_alloc(in->ar->a, (size_t)npairs * sizeof(*keys), 8);
    if (!keys) return cz_fail(in->err, in->errlen, CZ_ERR_MEMORY, "out of memory parsing header");
    for (uint32_t i = 0; i < npairs; i++) keys[i] = &items[2 * i];
    qsort(keys, npairs, sizeof(*keys), key_cmp);
    cz_status st = CZ_OK;
    for (uint32_t i = 1; i < npairs; i++)
        if (key_cmp(&keys[i - 1], &keys[i]) == 0) { st = mp_fail(in, "duplicate map key"); break; }
    cz_mem_free(in->ar->a, keys);
    return st;
}

static cz_status parse_obj(mp_in *in, cz_mp *out, int depth);

static cz_status parse_str(mp_in *in, cz_mp *out, uint64_t n, int is_bin) {
    if (n > (uint64_t)(in->end - in->p)) return mp_fail(in, "truncated str/bin");
    char *s = cz_arena_alloc(in->ar, (size_t)n + 1, 1);
    if (!s) return cz_fail(in->err, in->errlen, CZ_ERR_MEMORY, "out of memory parsing header");
    if (!is_bin && !utf8_valid(in->p, (size_t)n)) return mp_fail(in, "invalid UTF-8 in str");
    memcpy(s, in->p, (size_t)n);
    s[n] = '\0';
    in->p += n;
    out->type = is_bin ? CZ_MP_BIN : CZ_MP_STR;
    out->len = (uint32_t)n;
    out->v.s = s;
    return CZ_OK;
}

static cz_status parse_container(mp_in *in, cz_mp *out, uint64_t n, int is_map, int depth) {
    uint64_t remain = (uint64_t)(in->end - in->p);
    uint64_t items = is_map ? 2 * n : n;
    /* Every item still promised by this container AND by every open ancestor needs at least
     * one byte of its own after this point. Checking the count against the bytes left over
     * by the ancestors' promises (not against all remaining bytes) bounds the item arrays of
     * the whole parse by the input length; a per-container check let each nesting level
     * claim the same bytes again (64 levels x 24 bytes per item: ~1500x the header). */
    if (in->pending > remain || items > remain - in->pending)
        return mp_fail(in, "container count exceeds the remaining bytes");
    if (depth >= MP_MAX_DEPTH) return mp_fail(in, "nesting deeper than 64 levels");
    cz_mp *it = NULL;
    if (items) {
        it = cz_arena_alloc(in->ar, (size_t)items * sizeof(cz_mp), 8);
        if (!it) return cz_fail(in->err, in->errlen, CZ_ERR_MEMORY, "out of memory parsing header");
    }
    in->pending += items;
    for (uint64_t i = 0; i < items; i++) {
        in->pending--;             /* item i starts now: it consumes its own bytes */
        cz_status st = parse_obj(in, &it[i], depth + 1);
        if (st) return st;
        if (is_map && !(i & 1) && it[i].type != CZ_MP_STR) return mp_fail(in, "map key is not a str");
    }
    out->type = is_map ? CZ_MP_MAP : CZ_MP_ARRAY;
    out->len = (uint32_t)n;
    out->v.items = it;
    if (is_map) return check_dup_keys(in, it, (uint32_t)n);
    return CZ_OK;
}

static cz_status parse_obj(mp_in *in, cz_mp *out, int depth) {
    if (in->p >= in->end) return mp_fail(in, "truncated");
    uint8_t c = *in->p++;
    size_t left = (size_t)(in->end - in->p);
    memset(out, 0, sizeof(*out));
    if (c <= 0x7F) { out->type = CZ_MP_INT; out->v.i = c; return CZ_OK; }
    if (c >= 0xE0) { out->type = CZ_MP_INT; out->v.i = (int8_t)c; return CZ_OK; }
    if ((c & 0xF0) == 0x80) return parse_container(in, out, c & 0x0F, 1, depth);
    if ((c & 0xF0) == 0x90) return parse_container(in, out, c & 0x0F, 0, depth);
    if ((c & 0xE0) == 0xA0) return parse_str(in, out, c & 0x1F, 0);
    static const int8_t need[32] = {
        /* c0 nil */ 0, /* c1 */ -1, /* c2 false */ 0, /* c3 true */ 0,
        /* c4-c6 bin8/16/32 */ 1, 2, 4, /* c7-c9 ext */ -1, -1, -1,
        /* ca float32 */ 4, /* cb float64 */ 8, /* cc-cf uint */ 1, 2, 4, 8,
        /* d0-d3 int */ 1, 2, 4, 8, /* d4-d8 fixext/ext */ -1, -1, -1, -1, -1,
        /* d9-db str */ 1, 2, 4, /* dc-dd array */ 2, 4, /* de-df map */ 2, 4};
    int nb = need[c - 0xC0];
    if (nb < 0) {
        in->p--;
        return mp_fail(in, c == 0xC1 ? "reserved type byte 0xc1" : "ext types are not allowed");
    }
    if ((size_t)nb > left) return mp_fail(in, "truncated");
    uint64_t v = be(in->p, nb);
    in->p += nb;
    switch (c) {
    case 0xC0: out->type = CZ_MP_NIL; return CZ_OK;
    case 0xC2: case 0xC3: out->type = CZ_MP_BOOL; out->v.b = c == 0xC3; return CZ_OK;
    case 0xC4: case 0xC5: case 0xC6: return parse_str(in, out, v, 1);
    case 0xCA: {
        uint32_t u = (uint32_t)v;
        float f;
        memcpy(&f, &u, 4);
        out->type = CZ_MP_FLOAT;
        out->v.f = f;
        return CZ_OK;
    }
    case 0xCB: {
        double d;
        memcpy(&d, &v, 8);
        out->type = CZ_MP_FLOAT;
        out->v.f = d;
        return CZ_OK;
    }
    case 0xCC: case 0xCD: case 0xCE: case 0xCF:
        out->type = CZ_MP_INT;
        out->len = v > (uint64_t)INT64_MAX;          /* 1: saturated (see the top) */
        out->v.i = out->len ? INT64_MAX : (int64_t)v;
        return CZ_OK;
    case 0xD0: out->type = CZ_MP_INT; out->v.i = (int8_t)v; return CZ_OK;
    case 0xD1: out->type = CZ_MP_INT; out->v.i = (int16_t)v; return CZ_OK;
    case 0xD2: out->type = CZ_MP_INT; out->v.i = (int32_t)v; return CZ_OK;
    case 0xD3: out->type = CZ_MP_INT; out->v.i = (int64_t)v; return CZ_OK;
    case 0xD9: case 0xDA: case 0xDB: return parse_str(in, out, v, 0);
    case 0xDC: case 0xDD: return parse_container(in, out, v, 0, depth);
    case 0xDE: case 0xDF: return parse_container(in, out, v, 1, depth);
    }
    return mp_fail(in, "unknown type byte");
}

cz_status cz_mp_parse(const uint8_t *buf, size_t len, cz_arena *ar, const cz_mp **root,
                      char *err, size_t errlen) {
    *root = NULL;
    mp_in in = {buf, buf + len, buf, 0, ar, err, errlen};
    cz_mp *r = cz_arena_alloc(ar, sizeof(cz_mp), 8);
    if (!r) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory parsing header");
    if (len == 0) return cz_fail(err, errlen, CZ_ERR_FORMAT, "header is not valid msgpack: empty");
    cz_status st = parse_obj(&in, r, 0);
    if (st) return st;
    if (in.p != in.end) return mp_fail(&in, "extra bytes after the msgpack object");
    *root = r;
    return CZ_OK;
}

const cz_mp *cz_mp_get(const cz_mp *map, const char *key) {
    if (!map || map->type != CZ_MP_MAP || !key) return NULL;
    size_t kl = strlen(key);
    for (uint32_t i = 0; i < map->len; i++) {
        const cz_mp *k = &map->v.items[2 * i];
        if (k->type == CZ_MP_STR && k->len == kl && memcmp(k->v.s, key, kl) == 0)
            return &map->v.items[2 * i + 1];
    }
    return NULL;
}

int cz_mp_streq(const cz_mp *s, const char *lit) {
    if (!s || s->type != CZ_MP_STR || !lit) return 0;
    size_t n = strlen(lit);
    return s->len == n && memcmp(s->v.s, lit, n) == 0;
}
