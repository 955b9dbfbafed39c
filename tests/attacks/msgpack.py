"""Attacks on the msgpack header parser: nesting, and counts that claim more than the bytes.

Each file has no tensors and no sections, so it is valid except for its header bytes, which
are spliced in raw (the header CRC is made to match: the parser itself must say no)."""

from __future__ import annotations

import struct

from czmodel.format import header as H
from czmodel.format.preamble import pack_preamble

from . import attack

_MARK = b"\xc4\x04MARK"       # bin8 "MARK": the msgpack of metadata["x"] before the splice


def _with_metadata_value(raw: bytes) -> bytes:
    """A valid empty file whose header is {..., metadata: {"x": <raw msgpack bytes>}}."""
    hb = H.pack_header({"format": "cz", "features": [], "sections": [], "tensors": [],
                        "graph": None, "calibration": {}, "metadata": {"x": b"MARK"}})
    assert hb.count(_MARK) == 1
    hb = hb.replace(_MARK, raw)
    return pack_preamble(hb) + hb


@attack("FormatError", "open", "not valid msgpack")
def a_msgpack_deep_nesting():
    """metadata.x is 200,000 nested one-element arrays (1 byte per level): a recursive parser
    without a depth limit overflows its stack."""
    depth = 200_000
    return _with_metadata_value(b"\x91" * depth + b"\xc0")


@attack("FormatError", "open", "nested deeper than 32 levels")
def a_msgpack_nesting_just_over_limit():
    """33 nested maps {"k": {"k": ...}} inside metadata: valid msgpack, but plain data may
    nest at most 32 levels (spec: Limits)."""
    return _with_metadata_value(b"\x81\xa1k" * 33 + b"\xc0")


@attack("FormatError", "open", "not valid msgpack")
def a_msgpack_map_2e31_entries():
    """A map32 claiming 2^31 entries followed by one: a parser that reserves room for the
    claimed count first asks for 2^31 * (key, value) slots (tens of GiB)."""
    return _with_metadata_value(b"\xdf" + struct.pack(">I", 1 << 31) + b"\xa1k\xc0")


@attack("FormatError", "open", "not valid msgpack")
def a_msgpack_array_4g_entries():
    """An array32 claiming 2^32 - 1 elements followed by three."""
    return _with_metadata_value(b"\xdd" + struct.pack(">I", 0xFFFFFFFF) + b"\xc0\xc0\xc0")


@attack("FormatError", "open", "not valid msgpack")
def a_msgpack_str_4g_bytes():
    """A str32 claiming 4 GiB - 1 bytes with 5 present."""
    return _with_metadata_value(b"\xdb" + struct.pack(">I", 0xFFFFFFFF) + b"hello")


@attack("FormatError", "open", "not valid msgpack")
def a_msgpack_ext_type():
    """A fixext1 value (ext types are never allowed in a header)."""
    return _with_metadata_value(b"\xd4\x01\x00")


@attack("FormatError", "open", "not valid msgpack")
def a_msgpack_duplicate_key():
    """metadata.x is {"k": 1, "k": 2}: two readers may keep different copies."""
    return _with_metadata_value(b"\x82\xa1k\x01\xa1k\x02")


@attack("FormatError", "open", "not valid msgpack")
def a_msgpack_nested_counts_claim_same_bytes():
    """60 nested array32s, each claiming as many items as there are bytes left (256 KiB),
    then a byte that is never valid: each count alone fits the remaining bytes, but they all
    claim the SAME bytes. A parser that checks each count on its own reserves
    60 x 24 x 256 KiB = 360 MiB of nodes before it fails (the C reader did, found by
    fuzz_msgpack: now the counts of all open containers together must fit)."""
    size, depth = 256 << 10, 60
    head = b"".join(b"\xdd" + struct.pack(">I", size - 5 * (i + 1) - 64) for i in range(depth))
    return _with_metadata_value(head + b"\xc1" + bytes(size - len(head) - 1))
