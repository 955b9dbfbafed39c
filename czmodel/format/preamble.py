"""The fixed 24-byte preamble that starts every .cz file (spec: "Preamble")."""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from czmodel.errors import CorruptionError, FormatError, UnsupportedError

MAGIC = b"\x89CZM\r\n\x1a\n"   # PNG-style: catches 7-bit transfers and CRLF conversion
VERSION_MAJOR = 1
VERSION_MINOR = 0
PREAMBLE_SIZE = 24
ALIGN = 64
CRC_OFFSET = 16                # header_crc32 sits at bytes 16-19 ...
CRC_COVERED = 16               # ... and covers preamble bytes 0-15, then the header bytes
_LAYOUT = struct.Struct("<8sHHIII")   # magic, major, minor, header_len, header_crc32, reserved


@dataclass(frozen=True)
class Preamble:
    major: int
    minor: int
    header_len: int
    header_crc: int


def header_crc(preamble: bytes, header: bytes) -> int:
    """The value of ``header_crc32``: CRC-32 of preamble bytes 0-15 (magic, version_major,
    version_minor, header_len) followed by the header bytes (spec: "Checksums")."""
    if len(preamble) < CRC_COVERED:
        raise ValueError(f"need the first {CRC_COVERED} preamble bytes, got {len(preamble)}")
    return zlib.crc32(header, zlib.crc32(bytes(preamble[:CRC_COVERED])))


def pack_preamble(header: bytes, *, major: int = VERSION_MAJOR, minor: int = VERSION_MINOR,
                  hlen: int | None = None, crc: int | None = None, reserved: int = 0) -> bytes:
    """The 24 preamble bytes for ``header``. The keyword arguments exist to build invalid
    files in tests: ``crc=None`` computes the correct checksum over whatever the other fields
    say (so e.g. a wrong ``hlen`` is still covered by a matching CRC)."""
    pre = bytearray(_LAYOUT.pack(MAGIC, major, minor, len(header) if hlen is None else hlen,
                                 0, reserved))
    struct.pack_into("<I", pre, CRC_OFFSET, header_crc(pre, header) if crc is None else crc)
    return bytes(pre)


def refresh_header_crc(data: bytes | bytearray) -> bytes:
    """``data`` with its ``header_crc32`` recomputed from its own preamble bytes 0-15 and
    ``header_len`` header bytes (a test helper: edit a file, then make the header CRC match
    again so that the edit reaches the parser). ``data`` is returned unchanged if it is
    shorter than the preamble or its header runs past the end."""
    data = bytearray(data)
    if len(data) >= PREAMBLE_SIZE:
        hlen = struct.unpack_from("<I", data, 12)[0]
        if PREAMBLE_SIZE + hlen <= len(data):
            struct.pack_into("<I", data, CRC_OFFSET,
                             header_crc(data, data[PREAMBLE_SIZE:PREAMBLE_SIZE + hlen]))
    return bytes(data)


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


def check_header_crc(buf: bytes, header: bytes, pre: Preamble) -> None:
    """Raise ``CorruptionError`` unless ``header_crc32`` matches preamble bytes 0-15 plus
    ``header`` (checked after the size rules, before the header is parsed)."""
    got = header_crc(buf, header)
    if got != pre.header_crc:
        raise CorruptionError(
            f"header checksum mismatch: preamble bytes 0-{CRC_COVERED - 1} + {len(header)} "
            f"header bytes have CRC-32 {got:#010x}, header_crc32 says {pre.header_crc:#010x}; "
            "the preamble or the header is damaged",
            offset=CRC_OFFSET)


def align_up(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
