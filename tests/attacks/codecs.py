"""Attacks on the codecs: values that index past their arrays, tiny factors of huge tensors,
and non-finite scales (which the spec allows)."""

from __future__ import annotations

import struct

import numpy as np

from czmodel.codecs import affine, codebook, dense, relidx, svd, tucker2
from czmodel.entropy.bitpack import pack_symbols, unpack_symbols_ref
from czmodel.format.writer import build_file

from . import attack
from ._util import forced, modify, node_at, payload_of, set_payload


def _relidx_file() -> bytes:
    m = np.zeros((2, 8), bool)
    m[0, [2, 4]] = True
    m[1, [0, 7]] = True
    return build_file({"s": forced(relidx(m, dense(np.array([1, 2, 3, 4], np.float32)),
                                          gap_bits=3), "raw")})


@attack("CorruptionError", "verify", "past the end of the row")
def a_relidx_gap_walks_past_row():
    """Row 0's second gap grows from 1 to 6: its value would land at column 9 of 8."""
    d = _relidx_file()
    gaps = unpack_symbols_ref(payload_of(d, "s", "gaps"), 3, 4).copy()
    assert list(gaps) == [2, 1, 0, 6]
    gaps[1] = 6
    return set_payload(d, "s", "gaps", pack_symbols(gaps, 3))


@attack("CorruptionError", "verify", "past the end of the row")
def a_relidx_fillers_walk_past_row():
    """Row 1 becomes filler, filler, filler, 0: 21 positions skipped in a row of 8."""
    d = _relidx_file()
    gaps = np.array([2, 1, 7, 7, 7, 0], np.uint8)
    d = set_payload(d, "s", "gaps", pack_symbols(gaps, 3))

    def edit(h, p):
        n = node_at(h, "s")
        n["streams"]["gaps"]["n"] = 6
    d = modify(d, edit)
    ptr = np.frombuffer(payload_of(d, "s", "gap_ptr"), np.uint32).copy()
    ptr[-1] = 6
    return set_payload(d, "s", "gap_ptr", ptr.tobytes())


def _ptr_attack(role: str, value: int) -> bytes:
    d = _relidx_file()
    raw = payload_of(d, "s", role)
    dt = np.uint32 if len(raw) == 12 else np.uint64
    ptr = np.frombuffer(raw, dt).copy()
    ptr[-1] = value
    return set_payload(d, "s", role, ptr.tobytes())


@attack("CorruptionError", "verify", "gap_ptr")
def a_relidx_gap_ptr_outside_stream():
    """gap_ptr's last entry is 2^32 - 1: row 1's gaps would be read far past the 4-symbol
    stream."""
    return _ptr_attack("gap_ptr", 0xFFFFFFFF)


@attack("CorruptionError", "verify", "val_ptr")
def a_relidx_val_ptr_outside_stream():
    """val_ptr's last entry is 2^32 - 1: row 1's values would be read past the 4 values."""
    return _ptr_attack("val_ptr", 0xFFFFFFFF)


@attack("CorruptionError", "verify", "gap_ptr")
def a_relidx_gap_ptr_backwards():
    """gap_ptr = [0, 3, 1]: row 1 would own a negative number of gaps."""
    d = _relidx_file()
    ptr = np.array([0, 3, 1], np.uint32)
    assert len(payload_of(d, "s", "gap_ptr")) == 12
    return set_payload(d, "s", "gap_ptr", ptr.tobytes())


@attack("CorruptionError", "verify", "index 7 >= k=5")
def a_codebook_index_ge_k():
    """Index 7 into a 5-entry codebook (3-bit indices can say up to 7)."""
    d = build_file({"c": forced(codebook(np.array([0, 1, 2, 3, 4, 0]),
                                         np.arange(5, dtype=np.float32), bits=3), "raw")})
    return set_payload(d, "c", "indices", pack_symbols(np.array([0, 1, 2, 7, 4, 0]), 3))


@attack("CorruptionError", "verify", ">= k")
def a_codebook_index_255_huffman():
    """An 8-bit index 255 into a 4-entry codebook, Huffman coded."""
    idx = np.array([0, 1, 2, 3] * 8)
    d = build_file({"c": forced(codebook(idx, np.arange(4, dtype=np.float32), bits=8), "raw")})
    idx[5] = 255
    return set_payload(d, "c", "indices", idx.astype(np.uint8).tobytes())


@attack("LimitError", "verify", "cap")
def a_tucker2_terabytes_from_empty_factors():
    """A tucker2 conv kernel [2^20, 2^20, 4, 4] (2^44 elements: 64 TiB of f32) from factors
    of rank 0 (no bytes at all): valid structure, so only the memory cap stops the decode."""
    f = tucker2(forced(dense(np.zeros((0, 1 << 20), np.float32)), "raw"),
                forced(dense(np.zeros((0, 0, 4, 4), np.float32)), "raw"),
                forced(dense(np.zeros((1 << 20, 0), np.float32)), "raw"),
                (1 << 20, 1 << 20, 4, 4))
    return build_file({"t": f})


@attack("LimitError", "verify", "cap")
def a_svd_terabytes_from_rank_zero():
    """An svd [2^22, 2^22] (64 TiB of f32) from rank-0 factors (no bytes)."""
    u = forced(dense(np.zeros((1 << 22, 0), np.float32)), "raw")
    v = forced(dense(np.zeros((0, 1 << 22), np.float32)), "raw")
    return build_file({"w": svd(u, v, (1 << 22, 1 << 22))})


@attack("LimitError", "verify", "cap", cap=1 << 20)
def a_tucker2_over_caller_cap():
    """A 2 MiB tucker2 kernel from tiny factors, read with a 1 MiB cap (the fuzzing cap)."""
    f = tucker2(forced(dense(np.ones((1, 64), np.float32)), "raw"),
                forced(dense(np.ones((1, 1, 8, 8), np.float32)), "raw"),
                forced(dense(np.ones((128, 1), np.float32)), "raw"), (128, 64, 8, 8))
    return build_file({"t": f})


NAN_SCALES = np.array([np.nan, np.inf, -np.inf, 0.5], np.float32)


@attack(None, "verify", "")
def a_affine_nan_inf_scales():
    """Per-channel affine scales NaN, +inf, -inf, 0.5: VALID (encodings.md, "Non-finite
    values": infinities and NaNs in float streams are values, not faults)."""
    q = np.array([[1, -2], [3, 0], [-1, 2], [4, -4]])
    d = build_file({"q": forced(affine(q, np.ones(4, np.float32), bits=4, axis=0), "raw")})
    return set_payload(d, "q", "scale", NAN_SCALES.tobytes())


def expected_nan_scales() -> np.ndarray:
    q = np.array([[1, -2], [3, 0], [-1, 2], [4, -4]], np.float32)
    with np.errstate(invalid="ignore"):
        return q * NAN_SCALES[:, None]


@attack(None, "verify", "")
def a_codebook_nan_centroids():
    """A codebook whose centroids are NaN and -inf: valid, decodes to NaN/-inf."""
    d = build_file({"c": forced(codebook(np.array([0, 1, 1, 0]), np.ones(2, np.float32),
                                         bits=1), "raw")})
    return set_payload(d, "c", "centroids", struct.pack("<2f", np.nan, -np.inf))
