"""Attacks on the entropy stages: Huffman tables and chunk tables, zstd bombs."""

from __future__ import annotations

import struct

import numpy as np
import zstandard

from czmodel.codecs import codebook, dense
from czmodel.entropy.huffman import encode_huffman
from czmodel.format.writer import build_file

from . import attack
from ._util import forced, payload_of, set_payload

N_SYM = 600          # 3 chunks of 2^8 symbols


def _huff_file() -> bytes:
    """A 2-bit codebook whose 600 indices are Huffman coded in 256-symbol chunks."""
    idx = (np.arange(N_SYM) * 7919 % 11) % 4
    d = build_file({"h": forced(codebook(idx, np.array([-1, -.5, .5, 1], np.float32),
                                         bits=2), "raw", indices="huffman")})
    return set_payload(d, "h", "indices", encode_huffman(idx.astype(np.uint8), 2,
                                                         chunk_log2=8))


def _huff_edit(edit) -> bytes:
    d = _huff_file()
    p = bytearray(payload_of(d, "h", "indices"))
    assert p[0] == 8
    edit(p)
    return set_payload(d, "h", "indices", bytes(p))


@attack("CorruptionError", "verify", "over-subscribed")
def a_huffman_oversubscribed():
    """Code lengths 1,1,1,1 for 4 symbols (Kraft sum 2): codes would collide."""
    def edit(p):
        p[1:3] = b"\x11\x11"
    return _huff_edit(edit)


@attack("CorruptionError", "verify", "incomplete")
def a_huffman_incomplete():
    """Code lengths 1,2,0,0 (Kraft sum 3/4): some bit strings decode to nothing, and a table
    decoder that does not check would read uninitialised entries."""
    def edit(p):
        p[1:3] = b"\x21\x00"
    return _huff_edit(edit)


@attack("CorruptionError", "verify", "exceeds limit 12")
def a_huffman_code_length_15():
    """A code length of 15 (the limit is 12): the decoder's 12-bit table cannot hold it."""
    def edit(p):
        p[1] = (p[1] & 0xF0) | 15
    return _huff_edit(edit)


@attack("CorruptionError", "verify", "chunk")
def a_huffman_chunk_table_loops_back():
    """chunk_ends = [e0, 0, e2]: chunk 1 would start after it ends (a decoder that computes
    its length as end - start gets 2^64 - e0 and walks off the payload)."""
    def edit(p):
        p[3 + 8:3 + 16] = struct.pack("<Q", 0)
    return _huff_edit(edit)


@attack("CorruptionError", "verify", "chunk")
def a_huffman_chunk_points_outside():
    """chunk_ends[0] = 2^63: far outside the payload."""
    def edit(p):
        p[3:11] = struct.pack("<Q", 1 << 63)
    return _huff_edit(edit)


@attack("LimitError", "open", "huffman stream claims")
def a_huffman_symbol_count_bomb():
    """A Huffman stream claiming 2^33 symbols (shape and counts agree) from ~200 bytes."""
    d = _huff_file()
    from ._util import modify

    def edit(h, p):
        t = h["tensors"][0]
        t["shape"] = t["enc"]["shape"] = [1 << 33]
        t["enc"]["streams"]["indices"]["n"] = 1 << 33
    return modify(d, edit)


def _zstd_file() -> bytes:
    """64 f32 zeros (256 bytes) in one zstd frame."""
    return build_file({"z": forced(dense(np.zeros(64, np.float32)), "zstd")})


@attack("CorruptionError", "verify", "declares")
def a_zstd_bomb_declared_beyond_stream():
    """The stream needs 256 bytes; its zstd frame (a few dozen bytes) declares and holds
    1 GiB of zeros. A reader that trusts the frame allocates 1 GiB."""
    frame = zstandard.ZstdCompressor(level=1).compress(bytes(1 << 20))
    # raise the declared content size to 1 GiB without touching the blocks: rewrite the
    # frame header (4-byte FCS) -- the size check must fire before any decompression
    fhd = frame[4]
    assert fhd >> 6 == 2, "expected a 4-byte frame content size"
    ss = (fhd >> 5) & 1
    at = 5 + (0 if ss else 1)
    frame = frame[:at] + struct.pack("<I", 1 << 30) + frame[at + 4:]
    return set_payload(_zstd_file(), "z", "data", frame)


@attack("CorruptionError", "verify", "decompression failed")
def a_zstd_bomb_expands_past_declared():
    """The frame header declares exactly the 256 bytes the stream needs, but its blocks
    expand to 1 MiB: the decoder must stop at 256 bytes, not write or allocate 1 MiB."""
    frame = zstandard.ZstdCompressor(level=1).compress(bytes(1 << 20))
    fhd = frame[4]
    assert fhd >> 6 == 2
    ss = (fhd >> 5) & 1
    at = 5 + (0 if ss else 1)
    frame = frame[:at] + struct.pack("<I", 256) + frame[at + 4:]
    return set_payload(_zstd_file(), "z", "data", frame)


@attack("CorruptionError", "verify", "does not declare its content size")
def a_zstd_bomb_no_content_size():
    """A frame that does not declare its size, streaming 64 MiB of zeros from ~2 KiB."""
    frame = zstandard.ZstdCompressor(level=1, write_content_size=False).compress(
        bytes(64 << 20))
    return set_payload(_zstd_file(), "z", "data", frame)


@attack("LimitError", "open", "impossible ratio")
def a_zstd_declared_size_beyond_ratio():
    """A 2^30-element f32 dense tensor (4 GiB) from a zstd frame of a few dozen bytes:
    beyond 2^15 decoded bytes per stored byte, checked at open."""
    from ._util import modify

    def edit(h, p):
        t = h["tensors"][0]
        t["shape"] = t["enc"]["shape"] = [1 << 30]
        t["enc"]["streams"]["data"]["n"] = 1 << 30
    return modify(_zstd_file(), edit)


@attack(None, "verify", "")
def a_zstd_window_bomb_valid():
    """A VALID frame for the 256 bytes whose header asks for a 2 GiB window (not single
    segment): it must decode, and no reader may allocate the window it asks for."""
    raw = bytes(256)
    frame = zstandard.ZstdCompressor(level=1).compress(raw)
    fhd = frame[4]
    ss, fcs_flag = (fhd >> 5) & 1, fhd >> 6
    assert ss == 1 and fcs_flag in (0, 1)
    fcs_len = 1 if fcs_flag == 0 else 2
    body = frame[5 + fcs_len:]
    # FCS flag 1 (2 bytes, value - 256), single segment off, then the window descriptor
    # exponent 21 -> windowLog 31
    new = frame[:4] + bytes([(1 << 6) | (fhd & 0x1F & ~0x20)]) + bytes([21 << 3]) \
        + struct.pack("<H", 256 - 256) + body
    assert zstandard.ZstdDecompressor(max_window_size=1 << 31).decompress(new) == raw
    return set_payload(_zstd_file(), "z", "data", new)
