/* test_format.c -- C unit tests of the format layer.
 *
 *   test_format VECTORS_DIR EXPECTED_DIR [--fuzz N]
 *
 * msgpack edge cases, CRC-32 known answers, every golden vector (valid: open + verify +
 * cz_tensor_read == expected bytes; invalid: the status matching the Python error class),
 * and robustness: every single-byte truncation and N (default 2000) random byte flips of
 * every valid vector (with the header and section CRCs patched so the damage reaches the
 * parsers and decoders) must return an error or succeed, never crash (run under ASan);
 * and every single-bit flip of every valid vector (no CRC patched) must be detected.
 */
#pragma GCC diagnostic ignored "-Wformat-truncation"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cz_model.h"

static int g_fail, g_pass;
#define CHECK(cond, ...)                                                  \
    do {                                                                  \
        if (cond) g_pass++;                                               \
        else {                                                            \
            g_fail++;                                                     \
            fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__);          \
            fprintf(stderr, __VA_ARGS__);                                 \
            fprintf(stderr, "\n");                                        \
        }                                                                 \
    } while (0)

/* ---- msgpack --------------------------------------------------------------------------- */

static cz_status mp(const uint8_t *b, size_t n, const cz_mp **root, cz_arena *ar) {
    char err[256];
    cz_arena_init(ar, NULL, 0);
    return cz_mp_parse(b, n, ar, root, err, sizeof err);
}

static void test_msgpack(void) {
    cz_arena ar;
    const cz_mp *r;
    /* every scalar type */
    struct { uint8_t b[16]; size_t n; cz_mp_type t; int64_t i; double f; } sc[] = {
        {{0xc0}, 1, CZ_MP_NIL, 0, 0},
        {{0xc2}, 1, CZ_MP_BOOL, 0, 0},
        {{0xc3}, 1, CZ_MP_BOOL, 1, 0},
        {{0x7f}, 1, CZ_MP_INT, 127, 0},
        {{0xe0}, 1, CZ_MP_INT, -32, 0},
        {{0xcc, 0xff}, 2, CZ_MP_INT, 255, 0},
        {{0xcd, 0x01, 0x00}, 3, CZ_MP_INT, 256, 0},
        {{0xce, 0xff, 0xff, 0xff, 0xff}, 5, CZ_MP_INT, 4294967295ll, 0},
        {{0xcf, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 9, CZ_MP_INT, INT64_MAX, 0},
        {{0xd0, 0x80}, 2, CZ_MP_INT, -128, 0},
        {{0xd1, 0x80, 0x00}, 3, CZ_MP_INT, -32768, 0},
        {{0xd2, 0x80, 0, 0, 0}, 5, CZ_MP_INT, INT32_MIN, 0},
        {{0xd3, 0x80, 0, 0, 0, 0, 0, 0, 0}, 9, CZ_MP_INT, INT64_MIN, 0},
        {{0xca, 0x3f, 0xc0, 0, 0}, 5, CZ_MP_FLOAT, 0, 1.5},
        {{0xcb, 0x40, 0x09, 0x21, 0xfb, 0x54, 0x44, 0x2d, 0x18}, 9, CZ_MP_FLOAT, 0, 3.141592653589793},
    };
    for (size_t k = 0; k < sizeof sc / sizeof sc[0]; k++) {
        cz_status st = mp(sc[k].b, sc[k].n, &r, &ar);
        CHECK(st == CZ_OK && r->type == sc[k].t, "scalar %zu: st=%d", k, st);
        if (st == CZ_OK && r->type == CZ_MP_INT) CHECK(r->v.i == sc[k].i, "int %zu", k);
        if (st == CZ_OK && r->type == CZ_MP_BOOL) CHECK(r->v.b == sc[k].i, "bool %zu", k);
        if (st == CZ_OK && r->type == CZ_MP_FLOAT) CHECK(r->v.f == sc[k].f, "float %zu", k);
        /* truncation at every byte */
        for (size_t t = 0; t < sc[k].n; t++) {
            cz_arena a2;
            CHECK(mp(sc[k].b, t, &r, &a2) == CZ_ERR_FORMAT, "scalar %zu truncated at %zu", k, t);
            cz_arena_free_all(&a2);
        }
        cz_arena_free_all(&ar);
    }
    /* uint64 above INT64_MAX: valid msgpack (valid plain data); saturates, flagged by len */
    uint8_t big[9] = {0xcf, 0x80, 0, 0, 0, 0, 0, 0, 0};
    CHECK(mp(big, 9, &r, &ar) == CZ_OK && r->type == CZ_MP_INT && r->v.i == INT64_MAX &&
          r->len == 1, "uint64 > INT64_MAX saturates with len = 1");
    cz_arena_free_all(&ar);
    /* a document with every container/str/bin form */
    uint8_t doc[512];
    size_t n = 0;
    doc[n++] = 0xde; doc[n++] = 0; doc[n++] = 7;                 /* map16, 7 pairs */
    doc[n++] = 0xa1; doc[n++] = 'a'; doc[n++] = 0x93; doc[n++] = 1; doc[n++] = 2; doc[n++] = 3;
    doc[n++] = 0xd9; doc[n++] = 1; doc[n++] = 'b';               /* str8 key */
    doc[n++] = 0xdc; doc[n++] = 0; doc[n++] = 2; doc[n++] = 0xc0; doc[n++] = 0xc3;   /* array16 */
    doc[n++] = 0xda; doc[n++] = 0; doc[n++] = 1; doc[n++] = 'c'; /* str16 key */
    doc[n++] = 0xdd; doc[n++] = 0; doc[n++] = 0; doc[n++] = 0; doc[n++] = 1; doc[n++] = 0x80; /* array32 [ {} ] */
    doc[n++] = 0xdb; doc[n++] = 0; doc[n++] = 0; doc[n++] = 0; doc[n++] = 2; doc[n++] = 'd'; doc[n++] = 'd';
    doc[n++] = 0xc4; doc[n++] = 2; doc[n++] = 0; doc[n++] = 0xff;  /* bin8 */
    doc[n++] = 0xa1; doc[n++] = 'e';
    doc[n++] = 0xc5; doc[n++] = 0; doc[n++] = 1; doc[n++] = 7;   /* bin16 */
    doc[n++] = 0xa1; doc[n++] = 'f';
    doc[n++] = 0xc6; doc[n++] = 0; doc[n++] = 0; doc[n++] = 0; doc[n++] = 0;   /* bin32 empty */
    doc[n++] = 0xa2; doc[n++] = 0xc3; doc[n++] = 0xa9;             /* "é" */
    doc[n++] = 0xdf; doc[n++] = 0; doc[n++] = 0; doc[n++] = 0; doc[n++] = 1;   /* map32 */
    doc[n++] = 0xa0; doc[n++] = 0xa3; doc[n++] = 'x'; doc[n++] = 'y'; doc[n++] = 'z';
    cz_status st = mp(doc, n, &r, &ar);
    CHECK(st == CZ_OK && r->type == CZ_MP_MAP && r->len == 7, "document parses (%d)", st);
    if (st == CZ_OK) {
        const cz_mp *a = cz_mp_get(r, "a");
        CHECK(a && a->type == CZ_MP_ARRAY && a->len == 3 && a->v.items[2].v.i == 3, "a");
        const cz_mp *b = cz_mp_get(r, "b");
        CHECK(b && b->type == CZ_MP_ARRAY && b->len == 2 && b->v.items[1].type == CZ_MP_BOOL, "b");
        const cz_mp *d = cz_mp_get(r, "dd");
        CHECK(d && d->type == CZ_MP_BIN && d->len == 2 && (uint8_t)d->v.s[1] == 0xff, "bin8");
        const cz_mp *f = cz_mp_get(r, "f");
        CHECK(f && f->type == CZ_MP_BIN && f->len == 0, "bin32");
        const cz_mp *e = cz_mp_get(r, "\xc3\xa9");
        CHECK(e && e->type == CZ_MP_MAP && cz_mp_streq(cz_mp_get(e, ""), "xyz"), "utf8 key + map32");
        CHECK(cz_mp_get(r, "zz") == NULL && cz_mp_get(a, "a") == NULL, "absent / not a map");
    }
    cz_arena_free_all(&ar);
    for (size_t t = 0; t < n; t++) {
        CHECK(mp(doc, t, &r, &ar) == CZ_ERR_FORMAT, "document truncated at %zu", t);
        cz_arena_free_all(&ar);
    }
    /* trailing bytes */
    uint8_t tr[2] = {0xc0, 0xc0};
    CHECK(mp(tr, 2, &r, &ar) == CZ_ERR_FORMAT, "trailing byte");
    cz_arena_free_all(&ar);
    /* depth: 64 nested arrays ok, 65 rejected */
    uint8_t deep[200];
    memset(deep, 0x91, sizeof deep);
    deep[63] = 0x90;
    CHECK(mp(deep, 64, &r, &ar) == CZ_OK, "64 levels");
    cz_arena_free_all(&ar);
    deep[63] = 0x91;
    deep[64] = 0x90;
    CHECK(mp(deep, 65, &r, &ar) == CZ_ERR_FORMAT, "65 levels");
    cz_arena_free_all(&ar);
    memset(deep, 0x91, sizeof deep);
    CHECK(mp(deep, sizeof deep, &r, &ar) == CZ_ERR_FORMAT, "depth bomb");
    cz_arena_free_all(&ar);
    /* huge counts */
    uint8_t huge[][6] = {{0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0}, {0xdf, 0xff, 0xff, 0xff, 0xff, 0xc0},
                         {0xdb, 0xff, 0xff, 0xff, 0xff, 'a'}, {0xc6, 0x7f, 0xff, 0xff, 0xff, 0}};
    for (int k = 0; k < 4; k++) {
        CHECK(mp(huge[k], 6, &r, &ar) == CZ_ERR_FORMAT, "huge count %d", k);
        CHECK(ar.used < 1 << 20, "huge count %d allocated %llu", k, (unsigned long long)ar.used);
        cz_arena_free_all(&ar);
    }
    /* ext, reserved 0xc1, bad UTF-8, non-str key, duplicate keys */
    uint8_t bad[][8] = {{0xd4, 1, 0}, {0xc7, 1, 1, 0}, {0xc8, 0, 1, 1, 0}, {0xc9, 0, 0, 0, 1, 1, 0},
                        {0xd5, 1, 0, 0}, {0xd6, 1, 0, 0, 0, 0}, {0xc1},
                        {0xa2, 0xc3, 0x28}, {0xa2, 0xc0, 0x80}, {0xa3, 0xed, 0xa0, 0x80},
                        {0x81, 0x01, 0xc0}, {0x81, 0xc4, 1, 'a', 0xc0},
                        {0x82, 0xa1, 'a', 1, 0xa1, 'a', 2}};
    size_t badn[] = {3, 4, 5, 7, 4, 6, 1, 3, 3, 4, 3, 5, 7};
    for (size_t k = 0; k < sizeof badn / sizeof badn[0]; k++) {
        CHECK(mp(bad[k], badn[k], &r, &ar) == CZ_ERR_FORMAT, "bad input %zu", k);
        cz_arena_free_all(&ar);
    }
    /* duplicate key in a big map (sorted path) */
    uint8_t bm[3 + 40 * 4];
    size_t q = 0;
    bm[q++] = 0xde; bm[q++] = 0; bm[q++] = 40;
    for (int k = 0; k < 40; k++) { bm[q++] = 0xa2; bm[q++] = (uint8_t)('a' + k / 10); bm[q++] = (uint8_t)('0' + k % 10); bm[q++] = 0xc0; }
    CHECK(mp(bm, q, &r, &ar) == CZ_OK && r->len == 40, "40 distinct keys");
    cz_arena_free_all(&ar);
    bm[3 + 39 * 4 + 1] = 'a'; bm[3 + 39 * 4 + 2] = '5';
    CHECK(mp(bm, q, &r, &ar) == CZ_ERR_FORMAT, "duplicate among 40 keys");
    cz_arena_free_all(&ar);
    /* 4-byte UTF-8 ok, above U+10FFFF not */
    uint8_t u4[] = {0xa4, 0xf0, 0x9f, 0x98, 0x80}, u5[] = {0xa4, 0xf4, 0x90, 0x80, 0x80};
    CHECK(mp(u4, 5, &r, &ar) == CZ_OK, "4-byte utf8");
    cz_arena_free_all(&ar);
    CHECK(mp(u5, 5, &r, &ar) == CZ_ERR_FORMAT, "utf8 > U+10FFFF");
    cz_arena_free_all(&ar);
}

/* ---- crc32 ----------------------------------------------------------------------------- */

static uint32_t crc_bitwise(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static void test_crc(void) {
    CHECK(cz_crc32(0, "123456789", 9) == 0xCBF43926u, "check value");
    CHECK(cz_crc32(0, "", 0) == 0, "empty");
    CHECK(cz_crc32(0, "The quick brown fox jumps over the lazy dog", 43) == 0x414FA339u, "fox");
    uint8_t buf[1000];
    uint32_t s = 12345;
    for (int i = 0; i < 1000; i++) { s = s * 1103515245u + 12345u; buf[i] = (uint8_t)(s >> 16); }
    for (int off = 0; off < 9; off++)
        for (int len = 0; len < 300; len += 7)
            CHECK(cz_crc32(0, buf + off, (size_t)len) == crc_bitwise(buf + off, (size_t)len), "crc %d %d", off, len);
    /* incremental */
    CHECK(cz_crc32(cz_crc32(0, buf, 333), buf + 333, 667) == crc_bitwise(buf, 1000), "incremental");
}

/* ---- half floats --------------------------------------------------------------------- */

static void test_half(void) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = cz_half_to_float((uint16_t)h);
        uint16_t back = cz_float_to_half(f);
        if (f != f) CHECK((back & 0x7C00) == 0x7C00 && (back & 0x3FF), "nan %x", h);
        else CHECK(back == h, "half roundtrip %x -> %x", h, back);
    }
    CHECK(cz_float_to_half(65519.0) == 0x7BFF && cz_float_to_half(65520.0) == 0x7C00, "half overflow");
    CHECK(cz_float_to_half(1.0 + 1.0 / 2048) == 0x3C00, "tie to even (down)");
    CHECK(cz_float_to_half(1.0 + 3.0 / 2048) == 0x3C02, "tie to even (up)");
    CHECK(cz_float_to_half(5.960464477539063e-08 / 2) == 0, "half of the smallest subnormal");
}

/* ---- vectors ----------------------------------------------------------------------------- */

static uint8_t *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long sz = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *b = malloc((size_t)sz + 1);
    *n = fread(b, 1, (size_t)sz, f);
    fclose(f);
    return b;
}

static cz_dtype dtype_of(const char *s) {
    static const char *nm[] = {"f32", "f16", "f64", "i64", "i32", "i16", "i8", "u8", "u16", "u32", "bool"};
    for (int i = 0; i < 11; i++)
        if (!strcmp(s, nm[i])) return (cz_dtype)(i + 1);
    return (cz_dtype)0;
}

static int status_matches(cz_status st, const char *cls) {
    if (!strcmp(cls, "FormatError")) return st == CZ_ERR_FORMAT;
    if (!strcmp(cls, "CorruptionError")) return st == CZ_ERR_CORRUPT || st == CZ_ERR_CHECKSUM;
    if (!strcmp(cls, "UnsupportedError")) return st == CZ_ERR_UNSUPPORTED;
    if (!strcmp(cls, "LimitError")) return st == CZ_ERR_LIMIT;
    return 0;
}

static int g_valid, g_invalid, g_tensors;

/* exercise every API on an opened model: verify + read all tensors */
static cz_status touch(cz_model *m) {
    char err[256];
    cz_status st = cz_verify(m, err, sizeof err);
    for (int i = 0; i < cz_tensor_count(m); i++) {
        cz_info info;
        if (cz_tensor_info(m, i, &info) != CZ_OK) return CZ_ERR_PARAM;
        uint64_t n = 1;
        for (int d = 0; d < info.ndim; d++) n *= (uint64_t)info.shape[d];
        size_t bytes = (size_t)(n * cz_dtype_size(info.dtype));
        void *buf = malloc(bytes ? bytes : 1);
        cz_status s2 = cz_tensor_read(m, info.name, buf, bytes, err, sizeof err);
        if (!st) st = s2;
        free(buf);
        uint64_t rb;
        cz_tensor_resident_bytes(m, info.name, &rb);
        (void)cz_model_tensor_data(m, i);
    }
    return st;
}

static void run_valid(const char *vecdir, const char *expdir, FILE *man, const char *file, int nt) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/valid/%s", vecdir, file);
    cz_model *m = NULL;
    cz_status st = cz_open_file(path, NULL, &m, err, sizeof err);
    CHECK(st == CZ_OK, "%s: open: %s %s", file, cz_status_name(st), err);
    if (st == CZ_OK) {
        st = cz_verify(m, err, sizeof err);
        CHECK(st == CZ_OK, "%s: verify: %s %s", file, cz_status_name(st), err);
        CHECK(cz_tensor_count(m) == nt, "%s: %d tensors, expected %d", file, cz_tensor_count(m), nt);
    }
    /* the same file from an unaligned caller buffer (in-place raw streams must be copied) */
    size_t fsz;
    uint8_t *fb = read_all(path, &fsz);
    uint8_t *un = malloc(fsz + 8);
    memcpy(un + 1, fb, fsz);
    cz_model *m2 = NULL;
    cz_status st2 = cz_open_memory(un + 1, fsz, NULL, &m2, err, sizeof err);
    CHECK(st2 == CZ_OK, "%s: open_memory unaligned: %s %s", file, cz_status_name(st2), err);
    for (int t = 0; t < nt; t++) {
        char line[2048], name[512], dt[16], bin[512], tol[32];
        unsigned long long nb;
        if (!fgets(line, sizeof line, man) ||
            sscanf(line, "T\t%511[^\t]\t%15s\t%llu\t%511s\t%31s", name, dt, &nb, bin, tol) != 5) {
            CHECK(0, "manifest parse error");
            return;
        }
        g_tensors++;
        if (!m) continue;
        char bp[1024];
        snprintf(bp, sizeof bp, "%s/%s", expdir, bin);
        size_t en;
        uint8_t *exp = read_all(bp, &en);
        CHECK(exp && en == nb, "%s/%s: expected file", file, name);
        int idx = cz_model_find_tensor(m, name);
        cz_info info;
        CHECK(idx >= 0 && cz_tensor_info(m, idx, &info) == CZ_OK, "%s/%s: found", file, name);
        if (idx < 0 || !exp) { free(exp); continue; }
        CHECK(info.dtype == dtype_of(dt), "%s/%s: dtype", file, name);
        CHECK(!strcmp(info.name, name), "%s/%s: name", file, name);
        uint8_t *got = malloc(nb + 1);
        st = cz_tensor_read(m, name, got, (size_t)nb, err, sizeof err);
        CHECK(st == CZ_OK, "%s/%s: read: %s %s", file, name, cz_status_name(st), err);
        if (nb) CHECK(cz_tensor_read(m, name, got, (size_t)nb - 1, err, sizeof err) == CZ_ERR_PARAM,
                      "%s/%s: small buffer", file, name);
        double rt = atof(tol);
        if (rt == 0) {
            CHECK(memcmp(got, exp, (size_t)nb) == 0, "%s/%s: bytes differ", file, name);
        } else {
            const float *a = (const float *)got, *b = (const float *)exp;
            for (size_t i = 0; i < nb / 4; i++)
                CHECK(fabsf(a[i] - b[i]) <= rt * (1 + fabsf(b[i])), "%s/%s[%zu]: %g vs %g", file, name, i, a[i], b[i]);
        }
        /* the form-side dense copy agrees with the decode */
        const cz_tensor_entry *e = cz_model_tensor(m, idx);
        if (e->f32 && info.dtype == CZ_F32)
            CHECK(rt != 0 || memcmp(e->f32, exp, (size_t)nb) == 0, "%s/%s: f32 copy differs", file, name);
        if (e->dtype != CZ_F32 && e->dtype != CZ_F16 && e->dtype != CZ_F64)
            CHECK(e->data && memcmp(e->data, exp, (size_t)nb) == 0, "%s/%s: data differs", file, name);
        if (e->dtype == CZ_F32 || e->dtype == CZ_F16 || e->dtype == CZ_F64)
            CHECK(e->form != NULL, "%s/%s: no form", file, name);
        if (m2) {
            memset(got, 0, (size_t)nb);
            st = cz_tensor_read(m2, name, got, (size_t)nb, err, sizeof err);
            CHECK(st == CZ_OK && (rt != 0 || memcmp(got, exp, (size_t)nb) == 0), "%s/%s: unaligned copy", file, name);
        }
        uint64_t rb = 0;
        CHECK(cz_tensor_resident_bytes(m, name, &rb) == CZ_OK, "%s/%s: resident", file, name);
        free(got);
        free(exp);
    }
    char dummy[4];
    if (m) CHECK(cz_tensor_read(m, "no such tensor", dummy, 4, err, sizeof err) == CZ_ERR_NOT_FOUND, "not found");
    cz_close(m);
    cz_close(m2);
    free(un);
    free(fb);
    g_valid++;
}

static void run_invalid(const char *vecdir, const char *file, const char *cls, const char *msg) {
    char path[1024], err[512] = "";
    snprintf(path, sizeof path, "%s/invalid/%s", vecdir, file);
    cz_model *m = NULL;
    cz_status st = cz_open_file(path, NULL, &m, err, sizeof err);
    if (st == CZ_OK) {
        st = cz_verify(m, err, sizeof err);
        cz_close(m);
    } else {
        CHECK(m == NULL, "%s: *out not NULL on failure", file);
    }
    CHECK(status_matches(st, cls), "%s: got %s (%s), expected %s", file, cz_status_name(st), err, cls);
    CHECK(!msg[0] || strstr(err, msg), "%s: message '%s' lacks '%s'", file, err, msg);
    g_invalid++;
}

/* ---- robustness ---------------------------------------------------------------------------- */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static uint32_t rd32le(const uint8_t *p) { return (uint32_t)p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }
static void wr32le(uint8_t *p, uint32_t v) { p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24); }

static size_t mp_uint(uint64_t v, uint8_t *o) {
    if (v < 128) { o[0] = (uint8_t)v; return 1; }
    if (v < 256) { o[0] = 0xcc; o[1] = (uint8_t)v; return 2; }
    if (v < 65536) { o[0] = 0xcd; o[1] = (uint8_t)(v >> 8); o[2] = (uint8_t)v; return 3; }
    o[0] = 0xce; o[1] = (uint8_t)(v >> 24); o[2] = (uint8_t)(v >> 16); o[3] = (uint8_t)(v >> 8); o[4] = (uint8_t)v;
    return 5;
}

/* header_crc32 as the spec defines it: CRC-32 of preamble bytes 0-15, then the header */
static uint32_t header_crc(const uint8_t *b, uint32_t hlen) {
    return cz_crc32(cz_crc32(0, b, 16), b + 24, hlen);
}

/* After damaging byte `pos`, make the CRCs agree again where that is easy: a header byte ->
 * new header CRC; a section byte -> patch that section's crc32 in the header if the msgpack
 * encoding keeps its width (searching for the unique old encoding), then the header CRC. */
static void patch_crcs(uint8_t *b, size_t n, size_t pos, const cz_model *orig) {
    if (n < 24) return;
    uint32_t hlen = rd32le(b + 12);
    if ((uint64_t)hlen + 24 > n) return;
    if (pos >= 24 + (size_t)hlen && orig) {
        for (uint32_t i = 0; i < orig->nsections; i++) {
            const cz_section *s = &orig->sections[i];
            if (pos < s->off || pos >= s->off + s->len) continue;
            uint8_t oe[5], ne[5];
            size_t ol = mp_uint(s->crc, oe), nl = mp_uint(cz_crc32(0, b + s->off, (size_t)s->len), ne);
            if (ol != nl || ol < 2) return;
            uint8_t *h = b + 24, *hit = NULL;
            for (size_t q = 0; q + ol <= hlen; q++)
                if (!memcmp(h + q, oe, ol)) { if (hit) return; hit = h + q; }
            if (!hit) return;
            memcpy(hit, ne, nl);
        }
    }
    wr32le(b + 16, header_crc(b, hlen));
}

static int g_trunc, g_flips, g_flip_opened;

static void fuzz_one(const char *vecdir, const char *file, int nflips) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/valid/%s", vecdir, file);
    size_t n;
    uint8_t *orig = read_all(path, &n);
    if (!orig) return;
    cz_options o = {0};
    o.max_tensor_bytes = 1 << 20;
    cz_model *om = NULL;
    cz_open_memory(orig, n, &o, &om, err, sizeof err);
    uint8_t *b = malloc(n + 1);
    /* every single-byte truncation: must fail */
    for (size_t t = 0; t < n; t++) {
        memcpy(b, orig, t);
        cz_model *m = NULL;
        cz_status st = cz_open_memory(b, t, &o, &m, err, sizeof err);
        CHECK(st != CZ_OK && m == NULL, "%s truncated to %zu opened", file, t);
        if (st == CZ_OK) cz_close(m);
        g_trunc++;
    }
    for (int k = 0; k < nflips; k++) {
        memcpy(b, orig, n);
        size_t pos = (size_t)(rng() % n);
        uint8_t x = (uint8_t)(rng() % 255 + 1);
        if (k & 1) x = (uint8_t)(1u << (rng() % 8));
        b[pos] ^= x;
        if (k % 4 != 3) patch_crcs(b, n, pos, om);
        cz_model *m = NULL;
        cz_status st = cz_open_memory(b, n, &o, &m, err, sizeof err);
        if (st == CZ_OK) {
            g_flip_opened++;
            touch(m);
            cz_close(m);
        } else {
            CHECK(m == NULL && err[0], "%s flip: error without message", file);
        }
        g_flips++;
    }
    cz_close(om);
    free(b);
    free(orig);
}

/* Every single-bit flip of every valid vector, CRCs NOT patched, must be rejected: by open,
 * or by verify / reading a tensor (spec: the header CRC covers preamble bytes 0-15 and the
 * header, `reserved` must be zero, section CRCs + zero padding + exact end cover the rest). */
static long g_bits, g_bits_detected;

static void bitflip_all(const char *vecdir, const char *file) {
    char path[1024], err[512];
    snprintf(path, sizeof path, "%s/valid/%s", vecdir, file);
    size_t n;
    uint8_t *orig = read_all(path, &n);
    if (!orig) return;
    uint8_t *b = malloc(n ? n : 1);
    cz_options o = {0};
    o.max_tensor_bytes = 1 << 20;
    for (size_t pos = 0; pos < n; pos++)
        for (int bit = 0; bit < 8; bit++) {
            memcpy(b, orig, n);
            b[pos] ^= (uint8_t)(1u << bit);
            cz_model *m = NULL;
            cz_status st = cz_open_memory(b, n, &o, &m, err, sizeof err);
            if (st == CZ_OK) {
                st = touch(m);
                cz_close(m);
            } else {
                CHECK(m == NULL && err[0], "%s bit %zu.%d: error without message", file, pos, bit);
            }
            g_bits++;
            if (st != CZ_OK) g_bits_detected++;
            else CHECK(0, "%s: flip of bit %d of byte %zu not detected", file, bit, pos);
        }
    free(b);
    free(orig);
}

/* a custom allocator that counts: everything allocated is freed */
static long g_live;
static void *cnt_alloc(void *ctx, size_t size, size_t align) {
    (void)ctx;
    void *p = NULL;
    if (posix_memalign(&p, align < sizeof(void *) ? sizeof(void *) : align, size)) return NULL;
    g_live++;
    return p;
}
static void cnt_free(void *ctx, void *p) {
    (void)ctx;
    if (p) { g_live--; free(p); }
}

/* open + touch + close one valid vector with the counting allocator: no leak */
static void open_counted(const char *vec, const char *file, const cz_options *o,
                         const char *what) {
    char path[1024], err[256];
    snprintf(path, sizeof path, "%s/valid/%s", vec, file);
    cz_model *m = NULL;
    CHECK(cz_open_file(path, o, &m, err, sizeof err) == CZ_OK, "%s with allocator%s", path, what);
    touch(m);
    cz_close(m);
    CHECK(g_live == 0, "%s: %ld allocations leaked%s", path, g_live, what);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s VECTORS_DIR EXPECTED_DIR [--fuzz N]\n", argv[0]);
        return 2;
    }
    const char *vec = argv[1], *exp = argv[2];
    int nflips = 2000;
    for (int i = 3; i + 1 < argc; i++)
        if (!strcmp(argv[i], "--fuzz")) nflips = atoi(argv[i + 1]);
    test_msgpack();
    test_crc();
    test_half();
    char mp_[1024];
    snprintf(mp_, sizeof mp_, "%s/manifest.txt", exp);
    FILE *man = fopen(mp_, "r");
    if (!man) { fprintf(stderr, "cannot open %s\n", mp_); return 2; }
    char line[2048];
    char valid_files[128][256];
    int nvalid = 0;
    while (fgets(line, sizeof line, man)) {
        char a[512], b[512];
        int nt;
        if (line[0] == 'V' && sscanf(line, "V\t%511s\t%d", a, &nt) == 2) {
            run_valid(vec, exp, man, a, nt);
            if (nvalid < 128) snprintf(valid_files[nvalid++], 256, "%s", a);
        } else if (line[0] == 'I' && sscanf(line, "I\t%511s\t%511s", a, b) == 2) {
            char msg[512] = "";
            sscanf(line, "I\t%*s\t%*s\t%511[^\n]", msg);
            run_invalid(vec, a, b, msg);
        }
    }
    fclose(man);
    /* allocator accounting on every valid vector */
    cz_allocator ca = {cnt_alloc, cnt_free, NULL};
    cz_options o = {0};
    o.allocator = &ca;
    for (int i = 0; i < nvalid; i++) open_counted(vec, valid_files[i], &o, "");
    /* the codebook-grouped RELIDX layout forced on (built at open for 2-D codebook weights
     * instead of col16 + idx, whose buffer is then released): the valid files open and close
     * without leaks, and a share of the byte-flip fuzz runs through that build too */
    setenv("CZ_RELIDX_GROUP", "1", 1);
    for (int i = 0; i < nvalid; i++) open_counted(vec, valid_files[i], &o, " (grouped relidx)");
    if (nflips > 0)
        for (int i = 0; i < nvalid; i++) fuzz_one(vec, valid_files[i], nflips / 4 + 1);
    unsetenv("CZ_RELIDX_GROUP");
    if (nflips > 0)
        for (int i = 0; i < nvalid; i++) fuzz_one(vec, valid_files[i], nflips);
    for (int i = 0; i < nvalid; i++) bitflip_all(vec, valid_files[i]);
    CHECK(nvalid == 0 || g_bits > 0, "no bit flips tried");
    printf("test_format: %d checks passed, %d failed; %d valid + %d invalid vectors, %d tensors; "
           "%d truncations, %d byte flips (%d opened); single-bit flips: %ld/%ld detected\n",
           g_pass, g_fail, g_valid, g_invalid, g_tensors, g_trunc, g_flips, g_flip_opened,
           g_bits_detected, g_bits);
    return g_fail ? 1 : 0;
}
