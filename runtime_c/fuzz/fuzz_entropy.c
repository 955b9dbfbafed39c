/* fuzz_entropy.c -- libFuzzer target: one entropy-stage decoder (raw / bit-packed, huffman,
 * zstd) through cz_stream_read, with the input split into a descriptor and a payload:
 *   [stage u8][dtype u8][bits u8][n u32 LE] payload...
 * The descriptor is made to pass the open-time rules (spec/format.md, "Element-count
 * bounds": raw R == L, zstd R <= L * 2^15, huffman n <= 8 L) as cz_open would, so the payload
 * rules of the decoder are what is fuzzed. The payload sits in its own exact-size heap block
 * (ASan sees every over-read) and its CRC is made to match. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cz_model.h"

#define CAP (1u << 22)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 7) return 0;
    cz_entropy stage = (cz_entropy)(data[0] % 3);
    cz_sdtype dt = (cz_sdtype)(data[1] % CZ_S_COUNT);
    int bits = data[2] % 9;
    uint64_t n = (uint64_t)data[3] | (uint64_t)data[4] << 8 | (uint64_t)data[5] << 16 |
                 (uint64_t)data[6] << 24;
    const uint8_t *payload = data + 7;
    uint64_t len = size - 7;
    if (dt != CZ_S_U8) bits = 0;
    if (stage == CZ_ENT_HUFFMAN && dt != CZ_S_U8) return 0;      /* UnsupportedError at open */
    uint64_t raw = bits ? (n * (uint64_t)bits + 7) / 8 : n * cz_sdtype_size[dt];
    if (stage == CZ_ENT_RAW && raw != len) return 0;
    if (stage == CZ_ENT_ZSTD && raw > len * 32768) return 0;
    if (stage == CZ_ENT_HUFFMAN && n > 8 * len) return 0;

    uint8_t *copy = malloc(len ? len : 1);
    if (!copy) return 0;
    memcpy(copy, payload, len);
    cz_model m;
    memset(&m, 0, sizeof m);
    m.alloc = *cz_default_allocator();
    m.opts.allocator = &m.alloc;
    m.max_tensor_bytes = CAP;
    m.bytes = copy;
    m.size = len;
    cz_section sec = {0, len, cz_crc32(0, copy, len)};
    m.sections = &sec;
    m.nsections = 1;
    cz_stream_desc s = {0, stage, dt, bits, n, raw, "s"};
    cz_buf b;
    char err[256];
    if (cz_stream_read(&m, &s, "t", &b, err, sizeof err) == CZ_OK) {
        if (b.n != n || !b.data) abort();
        volatile uint8_t acc = 0;            /* touch every decoded byte */
        const uint8_t *p = b.data;
        uint64_t nb = n * cz_sdtype_size[dt];
        for (uint64_t i = 0; i < nb; i++) acc ^= p[i];
        if (bits)
            for (uint64_t i = 0; i < n; i++)
                if (p[i] >> bits) abort();   /* symbols must be < 2^bits */
        cz_buf_free(&m, &b);
    }
    free(copy);
    return 0;
}
