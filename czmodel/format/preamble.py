"""The fixed 24-byte preamble that starts every .cz file (spec: "Preamble")."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from czmodel.errors import FormatError, UnsupportedError

MAGIC = b"\x89CZM\r\n\x1a\n"   # PNG-style: catches 7-bit transfers and CRLF conversion
VERSION_MAJOR = 1
VERSION_MINOR = 0
PREAMBLE_SIZE = 24
ALIGN = 64
_LAYOUT = struct.Struct("<8sHHIII")   # magic, major, minor, header_len, header_crc32, reserved


@dataclass(frozen=True)
class Preamble:
    major: int
    minor: int
    header_len: int
    header_crc: int


def pack_preamble(header: bytes) -> bytes:
    return _LAYOUT.pack(MAGIC, VERSION_MAJOR, VERSION_MINOR, len(header),
                        zlib.crc32(header), 0)


def unpack_preamble(buf: bytes) -> Preamble:
    if len(buf) < PREAMBLE_SIZE:
        raise FormatError(f"file is {len(buf)} bytes, shorter than the {PREAMBLE_SIZE}-byte "
                          "preamble: not a .cz file", offset=0)
    magic, major, minor, hlen, hcrc, reserved = _LAYOUT.unpack_from(buf, 0)
    if magic != MAGIC:
        raise FormatError("bad magic: not a .cz file", offset=0)
    if major != VERSION_MAJOR:
        raise UnsupportedError(f"format major version {major} is not supported "
                               f"(this reader reads {VERSION_MAJOR}.x)", offset=8)
    if reserved != 0:
        raise FormatError("reserved preamble field is not zero", offset=20)
    return Preamble(major, minor, hlen, hcrc)


def align_up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
