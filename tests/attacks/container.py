"""Attacks on the preamble, the section table and the tensor entries."""

from __future__ import annotations

import struct

import numpy as np

from czmodel.codecs import dense
from czmodel.format.preamble import ALIGN, align_up
from czmodel.format.writer import build_file

from . import attack
from ._util import assemble_table, forced, modify, node_at, patch, split_file


def _base() -> bytes:
    return build_file({"a": forced(dense(np.arange(40, dtype=np.float32)), "raw"),
                       "b": forced(dense(np.array([1, 2, 3, 4], np.int16)), "raw")})


def _claim(data: bytes, tensor: str, shape: list[int]) -> bytes:
    """Make tensor, root node and its stream all agree on ``shape`` (so only size rules fire)."""
    n = 1
    for d in shape:
        n *= d

    def edit(h, p):
        t = next(t for t in h["tensors"] if t["name"] == tensor)
        t["shape"] = list(shape)
        t["enc"]["shape"] = list(shape)
        t["enc"]["streams"]["data"]["n"] = min(n, (1 << 63) - 1)
    return modify(data, edit)


@attack("LimitError", "open", "exceeds the cap of 67108864")
def a_header_size_bomb():
    """header_len = 0xFFFFFFF0 (~4 GiB) in a file of a few hundred bytes: rejected by the hard
    64 MiB cap before anything is read or allocated."""
    return patch(_base(), 12, struct.pack("<I", 0xFFFFFFF0))


@attack("FormatError", "open", "header claims")
def a_header_len_past_end():
    """header_len under the cap (60 MiB) but past the end of a tiny file."""
    return patch(_base(), 12, struct.pack("<I", 60 << 20))


@attack("FormatError", "open", "hole or overlap")
def a_overlapping_sections():
    """Section 1 starts inside section 0 (160 bytes): both CRCs are right for their ranges."""
    def place(end, lengths):
        o0 = align_up(end)
        return [o0, o0 + ALIGN]
    return modify(_base(), lambda h, p: None, place=place)


@attack("FormatError", "open", "hole or overlap")
def a_sections_aliasing_same_bytes():
    """Both sections claim the same offset and length (an exact overlap)."""
    d = build_file({"a": forced(dense(np.arange(4, dtype=np.float32)), "raw"),
                    "b": forced(dense(np.arange(4, dtype=np.float32)), "raw")})

    def place(end, lengths):
        return [align_up(end)] * 2
    return modify(d, lambda h, p: None, place=place)


@attack("FormatError", "open", "runs past the end")
def a_section_length_overflow():
    """The last section's length is 2^64 - offset: offset + length wraps to 0 in 64 bits."""
    d = _base()
    last = len(split_file(d)[0]["sections"]) - 1
    return assemble_table(d, {last: lambda off: (1 << 64) - off})


@attack("FormatError", "open", "runs past the end")
def a_section_length_huge():
    """The last section claims 2^40 bytes in a file of a few hundred."""
    d = _base()
    last = len(split_file(d)[0]["sections"]) - 1
    return assemble_table(d, {last: lambda off: 1 << 40})


@attack("LimitError", "open", "exceeds 17179869184")
def a_huge_tensor_stream_count():
    """A raw dense tensor claiming [2^20, 2^20] elements (4 TiB of f32) from 160 bytes; shape,
    node and stream agree, so only the element-count bounds can stop it."""
    return _claim(_base(), "a", [1 << 20, 1 << 20])


@attack("CorruptionError", "open", "raw stream")
def a_huge_tensor_raw_claim():
    """A raw dense tensor claiming 2^30 f32 elements (4 GiB) from a 160-byte section."""
    return _claim(_base(), "a", [1 << 15, 1 << 15])


@attack("LimitError", "open", "elements")
def a_shape_product_overflow():
    """Dims each within 2^40 whose product (2^120) overflows 64-bit arithmetic."""
    return _claim(_base(), "a", [1 << 40, 1 << 40, 1 << 40])


@attack("LimitError", "open", "exceeds")
def a_shape_dim_above_limit():
    """One dim of 2^41 (the hard limit is 2^40), the others zero: 0 elements in total."""
    return _claim(_base(), "a", [1 << 41, 0])


@attack("FormatError", "open", "negative dim")
def a_shape_negative_dim():
    """A dim of -1 (and a stream count of -40 to match)."""
    def edit(h, p):
        t = h["tensors"][0]
        t["shape"] = [-1, -40]
        t["enc"]["shape"] = [-1, -40]
    return modify(_base(), edit)


@attack("LimitError", "open", "exceeds")
def a_shape_dim_uint64_max():
    """A dim of 2^64-1 (msgpack uint64): product wraps to a small number in unchecked C."""
    def edit(h, p):
        t = h["tensors"][0]
        t["shape"] = [(1 << 64) - 1, 1]
        t["enc"]["shape"] = [(1 << 64) - 1, 1]
    return modify(_base(), edit)


@attack("FormatError", "open", "at most 16 dims")
def a_shape_too_many_dims():
    """17 dims of 1 (the limit is 16)."""
    return _claim(_base(), "b", [1] * 17)


@attack("FormatError", "open", "duplicate tensor name")
def a_duplicate_tensor_names():
    """Two entries named 'a': two readers could disagree on which one 'a' is."""
    return modify(_base(), lambda h, p: h["tensors"][1].update(name="a"))


@attack("FormatError", "open", "not a non-negative integer")
def a_stream_count_float():
    """A stream count given as a float (2.5e9) instead of an int."""
    return modify(_base(), lambda h, p: node_at(h, "a")["streams"]["data"].update(n=2.5e9))


@attack(None, "verify", "")
def a_uint64_in_metadata_valid():
    """metadata {"big": 2^64 - 1}: a msgpack uint64 is valid plain data; the C reader once
    rejected it ("unsigned integer above INT64_MAX"), a valid file refused."""
    return build_file({"w": np.ones(2, np.float32)}, metadata={"big": (1 << 64) - 1})
