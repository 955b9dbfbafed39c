"""zstd stage with bounded output (spec: "Entropy stage", "zstd stage").

The payload is exactly one zstd frame (RFC 8878) holding the stage's raw form.
The decoded size is known from the stream description; a frame is accepted
only if it declares exactly that Frame_Content_Size, uses no dictionary, and
ends exactly at the end of the payload.  Decompression is one-shot into a
buffer of exactly the expected size, so a hostile frame can never make the
reader allocate more than the stream description justifies.
"""

from __future__ import annotations

import numba
import numpy as np
import zstandard

from czmodel.errors import CorruptionError, EncodeError, LimitError

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
ZSTD_MAX_RATIO = 1 << 15          # a frame cannot expand more than this (4-byte RLE blocks)
BLOCK_MAX = 1 << 17               # zstd Block_Maximum_Size
LEVEL_SMALL = 19                  # default level for raw forms <= LEVEL_SWITCH_BYTES
LEVEL_LARGE = 9                   # default level for larger raw forms (keeps big models fast)
LEVEL_SWITCH_BYTES = 4 << 20


def default_level(raw_size: int) -> int:
    return LEVEL_SMALL if raw_size <= LEVEL_SWITCH_BYTES else LEVEL_LARGE


def compress(raw: bytes, level: int | None = None) -> bytes:
    """One zstd frame with content size, no checksum, no dictionary id (deterministic)."""
    if level is None:
        level = default_level(len(raw))
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 22:
        raise EncodeError(f"zstd level must be an int in 1..22, got {level!r}")
    cctx = zstandard.ZstdCompressor(level=level, write_content_size=True,
                                    write_checksum=False, write_dict_id=False, threads=0)
    return cctx.compress(raw)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _frame_end(buf, pos, has_checksum):  # pragma: no cover - jitted
    """Walk block headers from ``pos``; return the frame's end offset or -1 if malformed."""
    size = buf.size
    while True:
        if pos + 3 > size:
            return -1
        hdr = np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8) | (np.int64(buf[pos + 2]) << 16)
        pos += 3
        last = hdr & 1
        btype = (hdr >> 1) & 3
        bsize = hdr >> 3
        if btype == 3 or bsize > BLOCK_MAX:
            return -1
        pos += 1 if btype == 1 else bsize
        if pos > size:
            return -1
        if last:
            break
    if has_checksum:
        pos += 4
    if pos > size:
        return -1
    return pos


def decompress(payload, expected: int) -> bytes:
    """Decode one frame that must decompress to exactly ``expected`` bytes."""
    buf = np.frombuffer(payload, dtype=np.uint8)
    buf.flags.writeable = False        # one numba specialisation for bytes and bytearray
    if expected < 0:
        raise LimitError(f"negative expected size {expected}")
    if expected > buf.size * ZSTD_MAX_RATIO:
        raise LimitError(f"zstd payload of {buf.size} bytes cannot hold {expected} bytes")
    if buf.size < 6 or buf[:4].tobytes() != ZSTD_MAGIC:
        raise CorruptionError("zstd payload does not start with a zstd frame")
    raw = buf.tobytes()
    try:
        params = zstandard.get_frame_parameters(raw)
        hsize = zstandard.frame_header_size(raw)
    except zstandard.ZstdError as e:
        raise CorruptionError(f"bad zstd frame header: {e}") from None
    if params.content_size == zstandard.CONTENTSIZE_UNKNOWN or params.content_size < 0:
        raise CorruptionError("zstd frame does not declare its content size")
    if params.content_size != expected:
        raise CorruptionError(
            f"zstd frame declares {params.content_size} bytes, stream needs {expected}")
    if params.dict_id != 0:
        raise CorruptionError("zstd frame requires a dictionary")
    end = _frame_end(buf, hsize, bool(params.has_checksum))
    if end < 0:
        raise CorruptionError("malformed or truncated zstd frame")
    if end != buf.size:
        raise CorruptionError(f"{buf.size - end} trailing bytes after the zstd frame")
    if expected == 0:
        # one-shot decode of an empty frame still validates its blocks/checksum
        out = _decompress_checked(raw, 0)
        return out
    return _decompress_checked(raw, expected)


def _decompress_checked(raw: bytes, expected: int) -> bytes:
    dctx = zstandard.ZstdDecompressor(max_window_size=1 << 31)
    try:
        # content size is in the header and equals `expected`: the output buffer
        # is exactly `expected` bytes and libzstd fails rather than overflow it.
        out = dctx.decompress(raw, max_output_size=expected)
    except zstandard.ZstdError as e:
        raise CorruptionError(f"zstd decompression failed: {e}") from None
    if len(out) != expected:
        raise CorruptionError(f"zstd frame produced {len(out)} bytes, expected {expected}")
    return out
