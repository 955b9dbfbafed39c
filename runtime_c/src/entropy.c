/* entropy.c -- entropy stages raw / huffman / zstd (spec/sections/entropy.md), producing
 * exactly what czmodel.entropy.decode_stream returns: n elements of the stream dtype
 * (u8 symbols for symbol streams, bf16 as 16-bit patterns).
 */
#include <string.h>

#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include "cz_model.h"

#define L_MAX 12
#define TABLE_SIZE (1u << L_MAX)

void cz_buf_free(const cz_model *m, cz_buf *b) {
    if (b && b->owned) cz_mem_free(&m->alloc, b->owned);
    if (b) { b->owned = NULL; b->data = NULL; }
}

cz_status cz_section_check(const cz_model *m, uint32_t sec, const char *tensor,
                           const char *path, char *err, size_t errlen) {
    const cz_section *s = &m->sections[sec];
#ifndef CZ_FUZZING   /* fuzz builds (make fuzz) skip it so mutated payloads reach the decoders */
    if (cz_crc32(0, m->bytes + s->off, (size_t)s->len) != s->crc)
        return cz_fail_at(err, errlen, CZ_ERR_CHECKSUM, tensor, path, (int64_t)s->off,
                          "checksum mismatch in section %u", sec);
#else
    (void)s; (void)tensor; (void)path; (void)err; (void)errlen;
#endif
    return CZ_OK;
}

/* ---- raw / bit-packed --------------------------------------------------------------- */

/* data must be exactly ceil(n*bits/8) bytes (checked by the caller's size rule too). */
static int unpack_symbols(const uint8_t *data, uint64_t len, int bits, uint64_t n, uint8_t *out,
                          const char **why) {
    uint64_t need = (n * (uint64_t)bits + 7) / 8;
    if (len != need) { *why = "bit-packed stream has the wrong length"; return 0; }
    unsigned used = (unsigned)((n * (uint64_t)bits) % 8);
    if (used && (data[len - 1] >> used)) { *why = "nonzero pad bits after the last packed symbol"; return 0; }
    if (bits == 8) { memcpy(out, data, (size_t)n); return 1; }
    uint8_t mask = (uint8_t)((1u << bits) - 1);
    uint64_t groups = n / 8, i = 0;
    for (uint64_t g = 0; g < groups; g++) {          /* 8 symbols = `bits` bytes */
        const uint8_t *p = data + g * (uint64_t)bits;
        uint64_t v = 0;
        for (int k = 0; k < bits; k++) v |= (uint64_t)p[k] << (8 * k);
        for (int j = 0; j < 8; j++) out[i++] = (uint8_t)((v >> (j * bits)) & mask);
    }
    uint64_t rem = n - i;
    if (rem) {
        const uint8_t *p = data + groups * (uint64_t)bits;
        uint64_t nb = len - groups * (uint64_t)bits, v = 0;
        for (uint64_t k = 0; k < nb; k++) v |= (uint64_t)p[k] << (8 * k);
        for (uint64_t j = 0; j < rem; j++) out[i++] = (uint8_t)((v >> (j * (uint64_t)bits)) & mask);
    }
    return 1;
}

/* ---- huffman ------------------------------------------------------------------------- */

static uint64_t rd64(const uint8_t *p) {
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
}

/* one chunk being decoded: bit stream ch[0..cb), m symbols into o, i done, pos bits used */
typedef struct {
    const uint8_t *ch;
    uint8_t *o;
    uint64_t cb, m, i, pos;
} huff_st;

/* multi-symbol lookup: one 64-bit load (>= 57 valid bits) feeds 4 lookups of <= 12 bits;
 * each emits up to 4 symbols (so 16 free output slots are needed). Entries: bits 0..31
 * symbols (first lowest), 32..39 bits used, 40..47 count; 0 = invalid code. (32-bit
 * entries with 3 symbols, a 16 KB table instead of 32 KB, measured no faster on Zen 3.) */
#define HUFF_STEP4(S, BAD)                                                                    \
    do {                                                                                      \
        uint64_t w_ = rd64((S).ch + ((S).pos >> 3)) >> ((S).pos & 7);                         \
        for (int j_ = 0; j_ < 4; j_++) {                                                      \
            uint64_t e_ = multi[w_ & (TABLE_SIZE - 1)];                                       \
            if (!e_) BAD;                                                                     \
            uint32_t syms_ = (uint32_t)e_;                                                    \
            memcpy((S).o + (S).i, &syms_, 4);                                                 \
            unsigned used_ = (unsigned)(e_ >> 32) & 0xFF;                                     \
            (S).i += (e_ >> 40) & 0xFF;                                                       \
            w_ >>= used_;                                                                     \
            (S).pos += used_;                                                                 \
        }                                                                                     \
    } while (0)
#define HUFF_ROOM(S) ((S).m - (S).i >= 16 && ((S).pos >> 3) + 8 <= (S).cb)

/* four chunks in lockstep while all of them have room for a fast step; -1 on an invalid code */
static int huff_lockstep4(const uint64_t *multi, huff_st *s) {
    huff_st a = s[0], b = s[1], c = s[2], d = s[3];
    while (HUFF_ROOM(a) && HUFF_ROOM(b) && HUFF_ROOM(c) && HUFF_ROOM(d)) {
        HUFF_STEP4(a, return -1);
        HUFF_STEP4(b, return -1);
        HUFF_STEP4(c, return -1);
        HUFF_STEP4(d, return -1);
    }
    s[0] = a; s[1] = b; s[2] = c; s[3] = d;
    return 0;
}

/* finish one chunk from its state: fast steps, then symbol by symbol, then the end checks */
static const char *huff_chunk(const uint64_t *multi, const uint16_t *single, huff_st *s) {
    while (HUFF_ROOM(*s)) HUFF_STEP4(*s, return "invalid Huffman code");
    const uint8_t *ch = s->ch;
    uint64_t cb = s->cb, m = s->m, i = s->i, pos = s->pos;
    uint8_t *o = s->o;
    while (i < m) {
        uint64_t q = pos >> 3;
        if (q >= cb) return "Huffman chunk ends inside a code";
        uint32_t w = 0;
        for (uint64_t b = 0; b < 3 && q + b < cb; b++) w |= (uint32_t)ch[q + b] << (8 * b);
        w >>= pos & 7;
        uint16_t e = single[w & (TABLE_SIZE - 1)];
        if (!e) return "invalid Huffman code";
        o[i++] = (uint8_t)e;
        pos += e >> 8;
    }
    if ((pos + 7) >> 3 != cb) return "Huffman chunk size does not match its codes";
    unsigned r = (unsigned)(pos & 7);
    if (r && (ch[cb - 1] >> r)) return "nonzero pad bits at the end of a Huffman chunk";
    return NULL;
}

/* returns NULL on success or a message */
static const char *huff_decode(const uint8_t *p, uint64_t size, int ab, uint64_t n, uint8_t *out,
                               uint16_t *single /* TABLE_SIZE u16, then TABLE_SIZE u64 */) {
    uint32_t a = 1u << ab, nib = (a + 1) / 2;
    if (size < 1 + (uint64_t)nib) return "Huffman payload truncated in its header";
    int chunk_log2 = p[0];
    if (chunk_log2 < 8 || chunk_log2 > 24) return "Huffman chunk_log2 outside 8..24";
    uint8_t len[256];
    int count[L_MAX + 1] = {0}, nz = 0, maxl = 0, one = 0;
    for (uint32_t s = 0; s < a; s++) {
        uint8_t byte = p[1 + s / 2];
        len[s] = (s & 1) ? byte >> 4 : byte & 15;
        if (len[s] > maxl) maxl = len[s];
    }
    if (maxl > L_MAX) return "Huffman code length exceeds limit 12";
    uint32_t kraft = 0;
    for (uint32_t s = 0; s < a; s++)
        if (len[s]) { nz++; count[len[s]]++; kraft += 1u << (L_MAX - len[s]); one = len[s]; }
    if (n == 0) {
        if (nz) return "empty Huffman stream must have all code lengths zero";
    } else if (nz == 0) {
        return "Huffman stream of nonzero length has no coded symbol";
    } else if (nz == 1) {
        if (one != 1) return "single-symbol Huffman code must have length 1";
    } else if (kraft > TABLE_SIZE) {
        return "over-subscribed Huffman code lengths";
    } else if (kraft < TABLE_SIZE) {
        return "incomplete Huffman code lengths";
    }
    uint64_t C = 1ull << chunk_log2, K = (n + C - 1) / C;
    uint64_t tbl = 1 + nib, data_off = tbl + 8 * K;
    if (size < data_off) return "Huffman payload truncated in its chunk table";
    uint64_t dlen = size - data_off;
    const uint8_t *data = p + data_off;
    if (K) {
        for (uint64_t k = 0; k < K; k++)
            if (rd64(p + tbl + 8 * k) > dlen) return "Huffman chunk offset points outside the payload";
        if (rd64(p + tbl + 8 * (K - 1)) != dlen) return "Huffman chunk data size differs from the chunk table's end";
        uint64_t prev = 0;
        for (uint64_t k = 0; k < K; k++) {
            uint64_t e = rd64(p + tbl + 8 * k);
            uint64_t mcount = k + 1 < K ? C : n - (K - 1) * C;
            uint64_t lo = (mcount + 7) / 8, hi = (mcount * L_MAX + 7) / 8;
            if (e < prev || e - prev < lo || e - prev > hi)
                return "Huffman chunk size inconsistent with its symbol count";
            prev = e;
        }
    } else if (dlen) {
        return "trailing bytes after an empty Huffman stream";
    }
    if (n == 0) return NULL;
    /* canonical codes -> bit-reversed single-symbol table: sym | len << 8, 0 = invalid */
    uint32_t next[L_MAX + 2];
    uint32_t code = 0;
    for (int l = 1; l <= L_MAX; l++) {
        code = (code + (l > 1 ? (uint32_t)count[l - 1] : 0)) << 1;
        next[l] = code;
    }
    /* first[1] = 0: the loop above gives first[1] = 0 << 1 = 0 */
    memset(single, 0, TABLE_SIZE * sizeof *single);
    for (uint32_t s = 0; s < a; s++) {
        int l = len[s];
        if (!l) continue;
        uint32_t c = next[l]++, r = 0;
        for (int b = 0; b < l; b++) r |= ((c >> b) & 1u) << (l - 1 - b);
        for (uint32_t idx = r; idx < TABLE_SIZE; idx += 1u << l) single[idx] = (uint16_t)(s | (uint32_t)l << 8);
    }
    /* multi-symbol table: up to 4 symbols whose codes fit in 12 bits together (layout at
     * HUFF_STEP4) */
    uint64_t *multi = (uint64_t *)(single + TABLE_SIZE);
    for (uint32_t idx = 0; idx < TABLE_SIZE; idx++) {
        uint32_t e = single[idx];
        if (!e) { multi[idx] = 0; continue; }
        uint32_t used = e >> 8, cnt = 1;
        uint64_t syms = e & 0xFF;
        while (cnt < 4) {
            uint32_t e2 = single[idx >> used];
            if (!e2 || used + (e2 >> 8) > L_MAX) break;
            syms |= (uint64_t)(e2 & 0xFF) << (8 * cnt);
            used += e2 >> 8;
            cnt++;
        }
        multi[idx] = syms | (uint64_t)used << 32 | (uint64_t)cnt << 40;
    }
    /* chunks are independent bit streams: decode HW of them in lockstep so that their
     * serial lookup chains (load -> table -> shift, ~8 cycles per lookup) overlap; each
     * chunk is then finished (tail symbols, end checks) by huff_chunk. Any invalid code in
     * the lockstep loop re-decodes the group chunk by chunk, so the first error reported
     * is exactly the one of a sequential decode. */
    enum { HW = 4 };
    for (uint64_t k0 = 0; k0 < K; k0 += HW) {
        int nw = K - k0 < HW ? (int)(K - k0) : HW;
        huff_st st[HW];
        for (int j = 0; j < nw; j++) {
            uint64_t k = k0 + (uint64_t)j;
            uint64_t start = k ? rd64(p + tbl + 8 * (k - 1)) : 0, end = rd64(p + tbl + 8 * k);
            st[j].ch = data + start;
            st[j].cb = end - start;
            st[j].o = out + k * C;
            st[j].m = k + 1 < K ? C : n - (K - 1) * C;
            st[j].i = st[j].pos = 0;
        }
        if (nw == HW && huff_lockstep4(multi, st) != 0)
            for (int j = 0; j < HW; j++) st[j].i = st[j].pos = 0;   /* sequential re-decode */
        for (int j = 0; j < nw; j++) {
            const char *why = huff_chunk(multi, single, &st[j]);
            if (why) return why;
        }
    }
    return NULL;
}

/* ---- zstd ---------------------------------------------------------------------------- */

static void *zalloc(void *opaque, size_t size) { return cz_mem_alloc(opaque, size, 64); }
static void zfree(void *opaque, void *p) { cz_mem_free(opaque, p); }

static const char *zstd_decode(const cz_model *m, const uint8_t *p, uint64_t size, uint64_t expected,
                               uint8_t *out, int *oom) {
    static const uint8_t MAGIC[4] = {0x28, 0xB5, 0x2F, 0xFD};
    if (size < 6 || memcmp(p, MAGIC, 4) != 0) return "zstd payload does not start with a zstd frame";
    unsigned long long cs = ZSTD_getFrameContentSize(p, (size_t)size);
    if (cs == ZSTD_CONTENTSIZE_ERROR) return "bad zstd frame header";
    if (cs == ZSTD_CONTENTSIZE_UNKNOWN) return "zstd frame does not declare its content size";
    if (cs != expected) return "zstd frame content size differs from the stream's raw size";
    if (ZSTD_getDictID_fromFrame(p, (size_t)size) != 0) return "zstd frame requires a dictionary";
    size_t fs = ZSTD_findFrameCompressedSize(p, (size_t)size);
    if (ZSTD_isError(fs)) return "malformed or truncated zstd frame";
    if (fs != size) return "trailing bytes after the zstd frame";
    ZSTD_customMem cm = {zalloc, zfree, (void *)&m->alloc};
    ZSTD_DCtx *d = ZSTD_createDCtx_advanced(cm);
    if (!d) { *oom = 1; return "out of memory"; }
    ZSTD_DCtx_setParameter(d, ZSTD_d_windowLogMax, 31);
    uint8_t dummy = 0;
    size_t r = ZSTD_decompressDCtx(d, expected ? out : &dummy, (size_t)expected, p, (size_t)size);
    ZSTD_freeDCtx(d);
    if (ZSTD_isError(r)) return "zstd decompression failed";
    if (r != expected) return "zstd frame produced the wrong number of bytes";
    return NULL;
}

/* ---- entry point ------------------------------------------------------------------------ */

cz_status cz_stream_read(const cz_model *m, const cz_stream_desc *s, const char *tensor,
                         cz_buf *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    const cz_section *sec = &m->sections[s->sec];
    int64_t off = (int64_t)sec->off;
    if (s->raw_size > m->max_tensor_bytes)
        return cz_fail_at(err, errlen, CZ_ERR_LIMIT, tensor, s->path, -1,
                          "stream decodes past the memory cap (%llu bytes > cap %llu)",
                          (unsigned long long)s->raw_size, (unsigned long long)m->max_tensor_bytes);
    cz_status st = cz_section_check(m, s->sec, tensor, s->path, err, errlen);
    if (st) return st;
    const uint8_t *payload = m->bytes + sec->off;
    uint64_t plen = sec->len;
    size_t isz = cz_sdtype_size[s->dtype];
    out->n = s->n;
    out->dtype = s->dtype;
    const char *why = NULL;
    int oom = 0;
    if (s->entropy == CZ_ENT_HUFFMAN) {
        uint8_t *o = cz_mem_alloc(&m->alloc, (size_t)s->n, 64);
        uint16_t *tab = cz_mem_alloc(&m->alloc, TABLE_SIZE * (sizeof(uint16_t) + sizeof(uint64_t)), 64);
        if (!o || !tab) {
            cz_mem_free(&m->alloc, o);
            cz_mem_free(&m->alloc, tab);
            return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory decoding a stream");
        }
        why = huff_decode(payload, plen, s->bits ? s->bits : 8, s->n, o, tab);
        cz_mem_free(&m->alloc, tab);
        if (why) {
            cz_mem_free(&m->alloc, o);
            return cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, s->path, off, "%s", why);
        }
        out->data = out->owned = o;
        return CZ_OK;
    }
    const uint8_t *raw = payload;
    uint8_t *rawbuf = NULL;
    if (s->entropy == CZ_ENT_ZSTD) {
        rawbuf = cz_mem_alloc(&m->alloc, (size_t)s->raw_size, 64);
        if (!rawbuf) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory decoding a stream");
        why = zstd_decode(m, payload, plen, s->raw_size, rawbuf, &oom);
        if (why) {
            cz_mem_free(&m->alloc, rawbuf);
            if (oom) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory decoding a stream");
            return cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, s->path, off, "%s", why);
        }
        raw = rawbuf;
        plen = s->raw_size;
    }
    if (s->bits && s->bits != 8) {
        uint8_t *o = cz_mem_alloc(&m->alloc, (size_t)s->n, 64);
        if (!o) {
            cz_mem_free(&m->alloc, rawbuf);
            return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory decoding a stream");
        }
        int ok = unpack_symbols(raw, plen, s->bits, s->n, o, &why);
        cz_mem_free(&m->alloc, rawbuf);
        if (!ok) {
            cz_mem_free(&m->alloc, o);
            return cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, s->path, off, "%s", why);
        }
        out->data = out->owned = o;
        return CZ_OK;
    }
    /* plain little-endian array (or 8-bit symbols): exact length */
    if (plen != s->n * isz) {
        cz_mem_free(&m->alloc, rawbuf);
        return cz_fail_at(err, errlen, CZ_ERR_CORRUPT, tensor, s->path, off,
                          "raw %s stream of %llu elements needs %llu bytes, payload has %llu",
                          cz_sdtype_name[s->dtype], (unsigned long long)s->n,
                          (unsigned long long)(s->n * isz), (unsigned long long)plen);
    }
    if (rawbuf) {
        out->data = out->owned = rawbuf;
        return CZ_OK;
    }
    if (((uintptr_t)raw % isz) == 0) {      /* use the file bytes in place */
        out->data = raw;
        return CZ_OK;
    }
    uint8_t *o = cz_mem_alloc(&m->alloc, (size_t)plen, 64);
    if (!o) return cz_fail(err, errlen, CZ_ERR_MEMORY, "out of memory decoding a stream");
    memcpy(o, raw, (size_t)plen);
    out->data = out->owned = o;
    return CZ_OK;
}
