/* status.c -- status names, error formatting, version, dtype sizes. */
#include <stdio.h>
#include <string.h>

#include "cz_internal.h"

const char *cz_status_name(cz_status status) {
    switch (status) {
    case CZ_OK: return "CZ_OK";
    case CZ_ERR_FORMAT: return "CZ_ERR_FORMAT";
    case CZ_ERR_CORRUPT: return "CZ_ERR_CORRUPT";
    case CZ_ERR_CHECKSUM: return "CZ_ERR_CHECKSUM";
    case CZ_ERR_UNSUPPORTED: return "CZ_ERR_UNSUPPORTED";
    case CZ_ERR_LIMIT: return "CZ_ERR_LIMIT";
    case CZ_ERR_PARAM: return "CZ_ERR_PARAM";
    case CZ_ERR_SHAPE: return "CZ_ERR_SHAPE";
    case CZ_ERR_NOT_FOUND: return "CZ_ERR_NOT_FOUND";
    case CZ_ERR_MEMORY: return "CZ_ERR_MEMORY";
    case CZ_ERR_IO: return "CZ_ERR_IO";
    }
    return "CZ_ERR_UNKNOWN";
}

cz_status cz_fail(char *err, size_t errlen, cz_status st, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        int r = vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
        if (r < 0) err[0] = '\0';
        err[errlen - 1] = '\0';
    }
    return st;
}

const char *cz_version(void) { return "0.1.0"; }

size_t cz_dtype_size(cz_dtype dtype) {
    switch (dtype) {
    case CZ_F64: case CZ_I64: return 8;
    case CZ_F32: case CZ_I32: case CZ_U32: return 4;
    case CZ_F16: case CZ_I16: case CZ_U16: return 2;
    case CZ_I8: case CZ_U8: case CZ_BOOL: return 1;
    }
    return 0;
}
