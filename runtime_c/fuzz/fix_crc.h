/* fix_crc.h -- shared by fuzz_open.c and fuzz_run.c: copy the input and make its header CRC
 * (CRC-32 of preamble bytes 0-15, then the header bytes) match, so that mutations of the
 * preamble and the header reach the msgpack parser and the validators instead of stopping
 * at the checksum (section CRCs are skipped by the -DCZ_FUZZING library build).
 * An input with bit 7 of byte 10 set (version_minor >= 128: any minor version is valid) is
 * passed unchanged, so the header checksum check itself stays fuzzed. */
#ifndef FIX_CRC_H
#define FIX_CRC_H
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

uint32_t cz_crc32(uint32_t crc, const void *data, size_t len);

static uint8_t *fuzz_fix_header_crc(const uint8_t *data, size_t size) {
    uint8_t *b = malloc(size ? size : 1);
    if (!b) return NULL;
    memcpy(b, data, size);
    if (size >= 24 && !(b[10] & 0x80)) {
        uint32_t h = (uint32_t)b[12] | (uint32_t)b[13] << 8 | (uint32_t)b[14] << 16 |
                     (uint32_t)b[15] << 24;
        if (h <= size - 24) {
            uint32_t c = cz_crc32(cz_crc32(0, b, 16), b + 24, h);   /* bytes 0-15, header */
            b[16] = (uint8_t)c; b[17] = (uint8_t)(c >> 8);
            b[18] = (uint8_t)(c >> 16); b[19] = (uint8_t)(c >> 24);
        }
    }
    return b;
}
#endif
