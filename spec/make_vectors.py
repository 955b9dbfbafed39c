"""Write the golden test vectors of spec/format.md under spec/vectors/ (run by hand).

    python spec/make_vectors.py            # (re)write spec/vectors/
    python spec/make_vectors.py --check    # regenerate in a temp dir, compare, exit 1 on a diff
    python spec/make_vectors.py --out DIR  # write somewhere else

valid/NAME.cz   a valid file; valid/NAME.npz holds its exact decoded tensors by name. The
                expected arrays are computed here from the builder inputs with plain numpy
                (not by the reader), and the script asserts that the reader agrees.
invalid/NAME.cz a valid file with exactly ONE fault; invalid/manifest.json maps each file to
                the error class a conforming reader raises, a substring of the Python
                reader's message, and the stage that finds it ("open" or "verify").

Everything is deterministic: data comes from integer formulas (no RNG stream that could
change between numpy versions), every stream's entropy stage is forced (only the zstd
vectors depend on the zstd library's output), and the .npz files are written with fixed
zip timestamps.
"""

from __future__ import annotations

import argparse
import copy
import filecmp
import io
import json
import math
import os
import struct
import sys
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import czmodel  # noqa: E402
from czmodel.codecs import affine, block, codebook, dense, nm, relidx, sum_, svd, tucker2  # noqa: E402
from czmodel.codecs.base import Node  # noqa: E402
from czmodel.format import header as H  # noqa: E402
from czmodel.format.preamble import (  # noqa: E402
    ALIGN,
    PREAMBLE_SIZE,
    VERSION_MAJOR,
    VERSION_MINOR,
    align_up,
    pack_preamble,
)
from czmodel.format.writer import build_file  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "vectors"


# ============================================================================ data helpers


def ints(n: int, mod: int, seed: int = 0) -> np.ndarray:
    """n deterministic pseudo-random integers in [0, mod) (Knuth multiplicative hash)."""
    i = np.arange(n, dtype=np.uint64) + np.uint64(seed * 7919 + 1)
    h = (i * np.uint64(2654435761)) % np.uint64(1 << 32)
    h ^= h >> np.uint64(13)
    return (h % np.uint64(mod)).astype(np.int64)


def dyadic(n: int, seed: int = 0, denom: int = 8, span: int = 33) -> np.ndarray:
    """Small multiples of 1/denom, centred on 0: sums and products of a few of them are exact
    in float32, so every decoder gets the same bits whatever its summation order."""
    return ((ints(n, span, seed) - span // 2) / denom).astype(np.float32)


def mask_from(shape: tuple[int, ...], keep_every: int, seed: int) -> np.ndarray:
    return (ints(math.prod(shape), keep_every, seed) == 0).reshape(shape)


def forced(node: Node, default: str, **roles: str) -> Node:
    """Force every stream of the tree to ``default``, then the named roles to their stage."""
    node.set_entropy(default)
    if roles:
        node.set_entropy(roles)
    return node


# ============================================================================ valid vectors
# Each builder returns (tensors for the writer, expected arrays, writer keyword arguments).

VALID: dict[str, Callable[[], tuple[dict, dict, dict]]] = {}


def valid(fn):
    VALID[fn.__name__.removeprefix("v_")] = fn
    return fn


@valid
def v_empty():
    return {}, {}, {}


@valid
def v_scalar_f32():
    x = np.array(3.25, np.float32)
    return {"x": forced(dense(x), "raw")}, {"x": x}, {}


_DTYPE_VALUES = {
    "f64": np.array([[0.0, -1.5, 1e300], [np.inf, -np.inf, 2.0 ** -1074]], np.float64),
    "f32": np.array([[0.0, -0.0, 1.5], [np.inf, 3.4e38, 1e-45]], np.float32),
    "f16": np.array([[0.0, -2.0, 65504.0], [6e-8, -np.inf, 0.333]], np.float16),
    "i64": np.array([[-(2 ** 63), 2 ** 63 - 1, 0], [1, -1, 12345678901]], np.int64),
    "i32": np.array([[-(2 ** 31), 2 ** 31 - 1, 0], [1, -1, 7]], np.int32),
    "i16": np.array([[-32768, 32767, 0], [1, -1, 7]], np.int16),
    "i8": np.array([[-128, 127, 0], [1, -1, 7]], np.int8),
    "u8": np.array([[0, 255, 1], [2, 3, 4]], np.uint8),
    "u16": np.array([[0, 65535, 1], [2, 3, 4]], np.uint16),
    "u32": np.array([[0, 2 ** 32 - 1, 1], [2, 3, 4]], np.uint32),
    "bool": np.array([[True, False, True], [False, False, True]], np.bool_),
}


def storable_dtypes() -> list[str]:
    """Tensor dtypes the writer can store losslessly (dense) with this library version."""
    out = []
    for name in H.TENSOR_DTYPES:
        try:
            build_file({"t": forced(dense(_DTYPE_VALUES[name]), "raw")})
        except czmodel.EncodeError:
            print(f"warning: dense {name} cannot be written (no stream dtype): left out of "
                  "dense_dtypes", file=sys.stderr)
            continue
        out.append(name)
    return out


@valid
def v_dense_dtypes():
    t, e = {}, {}
    for name in storable_dtypes():
        a = _DTYPE_VALUES[name]
        t[name] = forced(dense(a), "raw")
        e[name] = a
    z = np.zeros((0, 3), np.float32)
    t["empty_0x3"] = forced(dense(z), "raw")
    e["empty_0x3"] = z
    # a dense Node of a bool array stores u8; the tensor dtype says "bool"
    return t, e, {"tensor_dtypes": {"bool": "bool"}}


@valid
def v_dense_bf16():
    # exact bf16 values, a tie that rounds to even (1 + 2^-8 -> 1), one that rounds up
    # (1 + 2^-8 + 2^-10 -> 1 + 2^-7), and the special values.
    x = np.array([1.0, -2.5, 0.0, 1 + 2 ** -8, 1 + 2 ** -8 + 2 ** -10, np.inf, -np.inf, 3e38],
                 np.float32)
    want = np.array([1.0, -2.5, 0.0, 1.0, 1 + 2 ** -7, np.inf, -np.inf, 0.0], np.float32)
    u = np.array([3e38], np.float32).view(np.uint32).astype(np.uint64)
    u = ((u + 0x7FFF + ((u >> 16) & 1)) >> 16) << 16                 # RNE by hand for 3e38
    want[-1] = u.astype(np.uint32).view(np.float32)[0]
    return {"w": forced(dense(x, "bf16"), "raw")}, {"w": want}, {}


@valid
def v_affine_int8_per_channel():
    rows, cols = 4, 16
    q = (ints(rows * cols, 256, 1) - 128).astype(np.int8).reshape(rows, cols)
    scale = np.array([2.0 ** -7, 2.0 ** -5, 2.0 ** -9, 0.5], np.float32)
    w = (q.astype(np.float32) * scale[:, None]).astype(np.float32)
    node = forced(affine(q, scale, bits=8, signed=True, axis=0), "raw")
    return {"fc.weight": node}, {"fc.weight": w}, {}


@valid
def v_affine_int4_group_asym():
    rows, cols, g = 3, 10, 4                          # 3 groups per row, the last one partial
    q = ints(rows * cols, 16, 2).reshape(rows, cols)
    ng = -(-cols // g)
    scale = (2.0 ** -(ints(rows * ng, 5, 3) + 2)).astype(np.float32)
    zp = ints(rows * ng, 16, 4)
    grp = (np.arange(rows)[:, None] * ng + np.arange(cols)[None, :] // g)
    w = ((q - zp[grp]).astype(np.float32) * scale[grp]).astype(np.float32)
    node = forced(affine(q, scale, zp, bits=4, signed=False, group_size=g), "raw")
    return {"w4": node}, {"w4": w}, {}


@valid
def v_codebook_5bit():
    k, shape = 32, (6, 12)
    idx = ints(math.prod(shape), k, 5).reshape(shape)
    cent = dyadic(k, 6)
    node = forced(codebook(idx, cent, bits=5), "raw")
    return {"cb": node}, {"cb": cent[idx]}, {}


@valid
def v_codebook_per_channel():
    k, shape = 4, (3, 2, 5)
    idx = ints(math.prod(shape), k, 7).reshape(shape)
    cent = dyadic(3 * k, 8).reshape(3, k)
    w = cent[np.arange(3)[:, None, None], idx]
    node = forced(codebook(idx, cent, bits=2, axis=0), "raw")
    return {"conv": node}, {"conv": w.astype(np.float32)}, {}


@valid
def v_codebook_binary_1bit():
    shape = (4, 9)
    idx = ints(math.prod(shape), 2, 9).reshape(shape)
    cent = np.array([-0.375, 0.375], np.float32)
    node = forced(codebook(idx, cent, bits=1), "raw")
    return {"bin": node}, {"bin": cent[idx]}, {}


def _sparse(shape, keep_every, seed):
    m = mask_from(shape, keep_every, seed)
    full = np.zeros(shape, np.float32)
    return m, full


@valid
def v_relidx_codebook_huffman():
    # Deep Compression: relative indices (Huffman-coded gaps) + shared weights (Huffman-coded
    # codebook indices).
    shape, k = (8, 40), 8
    m = mask_from(shape, 4, 10)
    nnz = int(m.sum())
    idx = np.minimum(ints(nnz, 16, 11), k - 1)           # skewed: index 7 is the most common
    cent = dyadic(k, 12)
    vals = codebook(idx, cent, bits=3)
    node = forced(relidx(m, vals, gap_bits=4), "raw", gaps="huffman", indices="huffman")
    w = np.zeros(shape, np.float32)
    w[m] = cent[idx]
    return {"sparse": node}, {"sparse": w}, {}


@valid
def v_relidx_gap2_fillers():
    # gap_bits=2: filler symbol 3 advances 3 positions; long zero runs make filler chains,
    # including a row whose only entry is the last column and an empty row.
    shape = (4, 24)
    m = np.zeros(shape, bool)
    m[0, [0, 1, 11, 23]] = True
    m[1, 23] = True
    m[3, [3, 4, 5, 20]] = True
    nnz = int(m.sum())
    v = dyadic(nnz, 13)
    node = forced(relidx(m, dense(v), gap_bits=2), "raw")
    w = np.zeros(shape, np.float32)
    w[m] = v
    return {"fill": node}, {"fill": w}, {}


@valid
def v_nm_2of4():
    rows, cols = 4, 16
    pos = np.array([[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]])
    pick = pos[ints(rows * cols // 4, 6, 14)]
    m = np.zeros((rows * cols // 4, 4), bool)
    m[np.arange(m.shape[0])[:, None], pick] = True
    m = m.reshape(rows, cols)
    v = dyadic(int(m.sum()), 15)
    node = forced(nm(m, dense(v), n=2, m=4), "raw")
    w = np.zeros((rows, cols), np.float32)
    w[m] = v
    return {"nm": node}, {"nm": w}, {}


@valid
def v_block():
    bh, bw = 2, 4
    bm = np.array([[1, 0, 1], [0, 0, 1], [1, 1, 0]], bool)
    nk = int(bm.sum())
    v = dyadic(nk * bh * bw, 16)
    node = forced(block(bm, dense(v), bh=bh, bw=bw), "raw")
    w = np.zeros((3 * bh, 3 * bw), np.float32)
    blocks = v.reshape(nk, bh, bw)
    for j, (r, c) in enumerate(zip(*np.nonzero(bm))):
        w[r * bh:(r + 1) * bh, c * bw:(c + 1) * bw] = blocks[j]
    return {"blk": node}, {"blk": w}, {}


@valid
def v_svd():
    m_, r, n = 6, 2, 5
    u = dyadic(m_ * r, 17, denom=4, span=9).reshape(m_, r)
    v = dyadic(r * n, 18, denom=4, span=9).reshape(r, n)
    node = forced(svd(dense(u), dense(v, "f16"), (m_, n)), "raw")
    w = (u.astype(np.float64) @ v.astype(np.float64)).astype(np.float32)   # exact
    return {"lowrank": node}, {"lowrank": w}, {}


@valid
def v_tucker2():
    o, i, kh, kw, r_out, r_in = 4, 3, 3, 3, 2, 2
    first = dyadic(r_in * i, 19, 4, 9).reshape(r_in, i)
    core = dyadic(r_out * r_in * kh * kw, 20, 4, 9).reshape(r_out, r_in, kh, kw)
    last = dyadic(o * r_out, 21, 4, 9).reshape(o, r_out)
    node = forced(tucker2(dense(first), dense(core), dense(last), (o, i, kh, kw)), "raw")
    w = np.einsum("oa,abhw,bi->oihw", last.astype(np.float64), core.astype(np.float64),
                  first.astype(np.float64)).astype(np.float32)              # exact
    return {"conv": node}, {"conv": w}, {}


@valid
def v_sum_outlier():
    # Outlier split: a 4-bit affine base plus a sparse relidx of f16 outliers.
    rows, cols = 4, 12
    q = (ints(rows * cols, 16, 22) - 8).reshape(rows, cols)
    scale = np.array([2.0 ** -4], np.float32)
    base = q.astype(np.float32) * scale[0]
    m = mask_from((rows, cols), 7, 23)
    out = (dyadic(int(m.sum()), 24) * 16).astype(np.float16)
    node = forced(sum_(affine(q, scale, bits=4, signed=True),
                       relidx(m, dense(out), gap_bits=3)), "raw")
    w = base.copy()
    w[m] += out.astype(np.float32)
    return {"outlier": node}, {"outlier": w.astype(np.float32)}, {}


@valid
def v_entropy_raw():
    # raw stage: little-endian values and bit-packed 3-bit symbols (with pad bits)
    idx = ints(37, 6, 25)
    cent = dyadic(6, 26)
    x = dyadic(5, 27)
    return ({"cb3": forced(codebook(idx, cent, bits=3), "raw"), "x": forced(dense(x), "raw")},
            {"cb3": cent[idx], "x": x}, {})


@valid
def v_entropy_huffman():
    # huffman stage over a 4-bit alphabet, skewed so the code lengths differ, and a
    # single-symbol stream (the one-used-symbol special case)
    idx = np.minimum(ints(300, 40, 28), 15)
    cent = dyadic(16, 29)
    one = np.zeros(20, np.int64)
    c1 = np.array([0.5, -0.5], np.float32)
    return ({"h4": forced(codebook(idx, cent, bits=4), "raw", indices="huffman"),
             "h1": forced(codebook(one, c1, bits=1), "raw", indices="huffman")},
            {"h4": cent[idx], "h1": c1[one]}, {})


@valid
def v_entropy_zstd():
    x = np.repeat(dyadic(8, 30), 32)
    idx = ints(200, 4, 31)
    cent = dyadic(4, 32)
    return ({"z": forced(dense(x), "zstd"),
             "cbz": forced(codebook(idx, cent, bits=2), "zstd")},
            {"z": x, "cbz": cent[idx]}, {"zstd_level": 19})


@valid
def v_metadata_graph_calibration():
    x = dyadic(12, 33).reshape(3, 4)
    meta = {"producer": "czmodel spec/make_vectors.py", "source": {"model": "tiny", "epochs": 3},
            "tags": ["golden", "v1.0"], "ratio": 0.25, "flag": True, "none": None}
    calib = {"input": {"scale": 0.0078125, "zero_point": 0, "min": -1.0, "max": 0.9921875}}
    graph = {"opset": 1,
             "inputs": [{"name": "input", "dtype": "f32", "shape": ["N", 4]}],
             "outputs": [{"name": "y", "dtype": "f32", "shape": ["N", 3]}],
             "nodes": [{"op": "Linear", "name": "fc", "inputs": ["input", "w"],
                        "outputs": ["y"], "attrs": {}}]}
    return ({"w": forced(dense(x), "raw")}, {"w": x},
            {"metadata": meta, "calibration": calib, "graph": graph})


# ============================================================================ file surgery


def split_file(data: bytes) -> tuple[dict, list[bytes]]:
    """A file -> (its header map, its section payloads)."""
    hlen = struct.unpack_from("<I", data, 12)[0]
    hdr = H.unpack_header(data[PREAMBLE_SIZE:PREAMBLE_SIZE + hlen])
    return hdr, [bytes(data[o:o + n]) for o, n, _ in hdr["sections"]]


def assemble(hdr: dict, payloads: list[bytes], *, place: Callable | None = None,
             crcs: list[int] | None = None, header_bytes: Callable | None = None) -> bytes:
    """Build a file from a header map and payloads, recomputing the section table (offsets by
    the format's rule unless ``place(header_end, lengths)`` says otherwise; CRCs of the
    payloads unless ``crcs`` is given) and the preamble's header length and CRC."""
    hdr = copy.deepcopy(hdr)
    lengths = [len(p) for p in payloads]
    crcs = [zlib.crc32(p) for p in payloads] if crcs is None else crcs

    def canonical(end: int, lengths: list[int]) -> list[int]:
        offs, pos = [], end
        for n in lengths:
            offs.append(align_up(pos))
            pos = offs[-1] + n
        return offs

    place = place or canonical
    hdr["sections"] = [[0, n, c] for n, c in zip(lengths, crcs)]
    for _ in range(16):
        hb = H.pack_header(hdr)
        offs = place(PREAMBLE_SIZE + len(hb), lengths)
        table = [[o, n, c] for o, n, c in zip(offs, lengths, crcs)]
        if table == hdr["sections"]:
            break
        hdr["sections"] = table
    else:  # pragma: no cover
        raise RuntimeError("layout did not converge")
    hb = H.pack_header(hdr)
    if header_bytes is not None:
        hb = header_bytes(hb)
    out = bytearray(preamble(hb))
    out += hb
    end = max([len(out)] + [o + n for o, n in zip(offs, lengths)])
    out += bytes(end - len(out))
    for o, p in zip(offs, payloads):
        out[o:o + len(p)] = p
    return bytes(out)


def preamble(hb: bytes, *, major: int = VERSION_MAJOR, minor: int = VERSION_MINOR,
             hlen: int | None = None, crc: int | None = None, reserved: int = 0) -> bytes:
    """The preamble for header bytes ``hb``; ``crc=None``: the correct header_crc32 (CRC-32
    of preamble bytes 0-15, then ``hb``) for whatever the other fields say."""
    return pack_preamble(hb, major=major, minor=minor, hlen=hlen, crc=crc, reserved=reserved)


def modify(data: bytes, edit: Callable[[dict, list[bytes]], Any], **kw: Any) -> bytes:
    """Re-pack ``data`` after ``edit(header, payloads)`` changed them in place."""
    hdr, payloads = split_file(data)
    edit(hdr, payloads)
    return assemble(hdr, payloads, **kw)


def patch(data: bytes, offset: int, new: bytes) -> bytes:
    return data[:offset] + new + data[offset + len(new):]


def with_section_payload(data: bytes, sec: int, payload: bytes) -> bytes:
    """Replace the payload of section ``sec`` (same length) and fix its CRC in the header."""
    def edit(hdr, payloads):
        assert len(payload) == len(payloads[sec])
        payloads[sec] = payload
    return modify(data, edit)


def sec_of(hdr: dict, tensor: str, path: str) -> int:
    """Section index of the stream at ``path`` ("values/indices") of ``tensor``."""
    node = next(t for t in hdr["tensors"] if t["name"] == tensor)["enc"]
    *kids, role = path.split("/")
    for k in kids:
        node = node["children"][k]
    return node["streams"][role]["sec"]


def node_at(hdr: dict, tensor: str, path: str = "") -> dict:
    node = next(t for t in hdr["tensors"] if t["name"] == tensor)["enc"]
    for k in filter(None, path.split("/")):
        node = node["children"][k]
    return node


# ============================================================================ invalid vectors


def base_file() -> bytes:
    """The small valid file most invalid vectors start from: two raw dense tensors."""
    return build_file({"a": forced(dense(np.arange(6, dtype=np.float32).reshape(2, 3)), "raw"),
                       "b": forced(dense(np.array([1, 2, 3, 4], np.int16)), "raw")})


INVALID: dict[str, Callable[[], tuple[bytes, str, str, str, str]]] = {}


def invalid(error: str, message: str, stage: str = "open"):
    def deco(fn):
        INVALID[fn.__name__.removeprefix("x_")] = (fn, error, message, stage)
        return fn
    return deco


@invalid("FormatError", "runs past the end")
def x_truncated():
    """The last section is cut short by one byte."""
    return base_file()[:-1]


@invalid("FormatError", "shorter than the 24-byte preamble")
def x_truncated_preamble():
    """Only 23 bytes: not even a preamble."""
    return base_file()[:23]


@invalid("FormatError", "bad magic")
def x_bad_magic():
    """'CZM' spelled 'CZN'."""
    return patch(base_file(), 3, b"N")


@invalid("UnsupportedError", "major version 2")
def x_major_version_2():
    return patch(base_file(), 8, struct.pack("<H", 2))


@invalid("FormatError", "reserved preamble field is not zero")
def x_reserved_nonzero():
    return patch(base_file(), 20, struct.pack("<I", 1))


@invalid("CorruptionError", "header checksum mismatch")
def x_header_crc_mismatch():
    d = base_file()
    return patch(d, 16, struct.pack("<I", struct.unpack_from("<I", d, 16)[0] ^ 1))


@invalid("CorruptionError", "header checksum mismatch")
def x_version_minor_damaged():
    """version_minor changed from 0 to 1 (one bit) without updating header_crc32, which also
    covers preamble bytes 0-15: readers accept any minor version, so only the CRC sees it."""
    return patch(base_file(), 10, struct.pack("<H", 1))


@invalid("CorruptionError", "header checksum mismatch")
def x_header_byte_damaged():
    """One bit of the header's last byte flipped, header_crc32 left as it was."""
    d = base_file()
    last = PREAMBLE_SIZE + struct.unpack_from("<I", d, 12)[0] - 1
    return patch(d, last, bytes([d[last] ^ 0x01]))


@invalid("FormatError", "header is not valid msgpack")
def x_header_not_msgpack():
    """The header's first byte is 0xc1 (never used in msgpack); its CRC is correct."""
    d = base_file()
    hlen = struct.unpack_from("<I", d, 12)[0]
    hb = b"\xc1" + d[PREAMBLE_SIZE + 1:PREAMBLE_SIZE + hlen]
    return preamble(hb) + hb + d[PREAMBLE_SIZE + hlen:]


@invalid("FormatError", "header claims")
def x_header_too_long():
    """header_len is the whole file size (header CRC irrelevant: checked after the size)."""
    d = base_file()
    return patch(d, 12, struct.pack("<I", len(d)))


@invalid("FormatError", "hole or overlap")
def x_section_overlap():
    """Section 1 starts inside section 0 (both listed with their true bytes)."""
    d = build_file({"a": forced(dense(np.arange(40, dtype=np.float32)), "raw"),
                    "b": forced(dense(np.array([1, 2, 3, 4], np.int16)), "raw")})

    def place(end, lengths):
        o0 = align_up(end)
        return [o0, o0 + ALIGN]          # section 0 is 160 bytes: 1 overlaps it
    return modify(d, lambda h, p: None, place=place)


@invalid("FormatError", "hole or overlap")
def x_section_hole():
    """64 extra zero bytes between section 0 and section 1."""
    def place(end, lengths):
        o0 = align_up(end)
        return [o0, align_up(o0 + lengths[0]) + ALIGN]
    return modify(base_file(), lambda h, p: None, place=place)


@invalid("FormatError", "trailing bytes")
def x_trailing_bytes():
    return base_file() + b"\0"


@invalid("FormatError", "trailing bytes")
def x_trailing_bytes_no_sections():
    """A file with no tensors must end right after its header."""
    return build_file({}) + b"\0" * 64


@invalid("CorruptionError", "non-zero padding")
def x_nonzero_padding():
    d = base_file()
    hdr, _ = split_file(d)
    o1 = hdr["sections"][1][0]
    assert o1 - 1 >= hdr["sections"][0][0] + hdr["sections"][0][1], "no padding to damage"
    return patch(d, o1 - 1, b"\x01")


@invalid("CorruptionError", "checksum mismatch in section 1", "verify")
def x_section_crc_mismatch():
    """One payload bit flipped, CRC left as it was."""
    d = base_file()
    hdr, _ = split_file(d)
    o1 = hdr["sections"][1][0]
    return patch(d, o1, bytes([d[o1] ^ 0x10]))


@invalid("UnsupportedError", "unknown codec 'dense2'")
def x_unknown_codec():
    return modify(base_file(), lambda h, p: node_at(h, "b").update(codec="dense2"))


@invalid("UnsupportedError", "unknown entropy stage 'lz4'")
def x_unknown_entropy_stage():
    return modify(base_file(),
                  lambda h, p: node_at(h, "b")["streams"]["data"].update(entropy="lz4"))


@invalid("UnsupportedError", "requires features this reader lacks")
def x_unknown_feature():
    return modify(base_file(), lambda h, p: h.update(features=["sparse-attention-v9"]))


@invalid("FormatError", "encoding node must be a map with keys")
def x_unknown_node_key():
    return modify(base_file(), lambda h, p: node_at(h, "b").update(comment="hello"))


@invalid("FormatError", "differs from tensor shape")
def x_tensor_shape_mismatch():
    """Tensor 'a' says [3, 2]; its encoding (rightly, for its 6 elements) says [2, 3]."""
    return modify(base_file(), lambda h, p: h["tensors"][0].update(shape=[3, 2]))


@invalid("CorruptionError", "raw stream of 7 elements needs 14 bytes, section has 8")
def x_raw_length_mismatch():
    """Tensor 'b' claims 7 int16 elements (shape, node and stream agree) but holds 8 bytes."""
    def edit(h, p):
        t = h["tensors"][1]
        t["shape"] = [7]
        t["enc"]["shape"] = [7]
        t["enc"]["streams"]["data"]["n"] = 7
    return modify(base_file(), edit)


def _claim_size(d: bytes, tensor: str, n: int) -> bytes:
    """Set a 1-D tensor's shape, root shape and every stream count of its root to ``n``."""
    def edit(h, p):
        t = next(t for t in h["tensors"] if t["name"] == tensor)
        t["shape"] = [n]
        t["enc"]["shape"] = [n]
        for role, s in t["enc"]["streams"].items():
            if role in ("data", "indices"):
                s["n"] = n
    return modify(d, edit)


@invalid("LimitError", "huffman stream claims")
def x_huffman_too_many_symbols():
    """A Huffman stream claims more symbols than 8 per payload byte (shape, node and stream
    all agree on the count)."""
    idx = np.minimum(ints(64, 6, 40), 3)
    d = build_file({"h": forced(codebook(idx, dyadic(4, 41), bits=2), "raw",
                                indices="huffman")})
    hdr, payloads = split_file(d)
    n = 8 * len(payloads[sec_of(hdr, "h", "indices")]) + 1
    return _claim_size(d, "h", n)


@invalid("LimitError", "impossible ratio")
def x_zstd_ratio_bomb():
    """A 2^26-element f32 tensor (256 MiB) claimed from a zstd frame of a few dozen bytes."""
    d = build_file({"z": forced(dense(np.zeros(64, np.float32)), "zstd")})
    return _claim_size(d, "z", 1 << 26)


@invalid("CorruptionError", "a value lands past the end of the row", "verify")
def x_relidx_gap_past_row():
    """Row 0's second gap grows from 1 to 6: its entry would land past column 7."""
    m = np.zeros((2, 8), bool)
    m[0, [2, 4]] = True
    m[1, [0, 7]] = True
    d = build_file({"s": forced(relidx(m, dense(np.array([1, 2, 3, 4], np.float32)),
                                       gap_bits=3), "raw")})
    hdr, payloads = split_file(d)
    sec = sec_of(hdr, "s", "gaps")
    from czmodel.entropy.bitpack import pack_symbols, unpack_symbols_ref
    gaps = unpack_symbols_ref(payloads[sec], 3, 4).copy()
    assert list(gaps) == [2, 1, 0, 6], gaps
    gaps[1] = 6
    return with_section_payload(d, sec, pack_symbols(gaps, 3))


@invalid("CorruptionError", "index 7 >= k=5", "verify")
def x_codebook_index_ge_k():
    d = build_file({"c": forced(codebook(np.array([0, 1, 2, 3, 4, 0]), dyadic(5, 42), bits=3),
                                "raw")})
    hdr, payloads = split_file(d)
    sec = sec_of(hdr, "c", "indices")
    from czmodel.entropy.bitpack import pack_symbols
    return with_section_payload(d, sec, pack_symbols(np.array([0, 1, 2, 7, 4, 0]), 3))


@invalid("FormatError", "duplicate tensor name")
def x_duplicate_tensor_name():
    return modify(base_file(), lambda h, p: h["tensors"][1].update(name="a"))


@invalid("FormatError", "section 0 is referenced by 2 streams")
def x_section_referenced_twice():
    """Tensors 'a' and 'b' share section 0 (identical bytes); the table has one section."""
    d = build_file({"a": forced(dense(np.arange(4, dtype=np.float32)), "raw"),
                    "b": forced(dense(np.arange(4, dtype=np.float32)), "raw")})

    def edit(h, p):
        node_at(h, "b")["streams"]["data"]["sec"] = 0
        del p[1]
    return modify(d, edit)


@invalid("LimitError", "encoding tree deeper than 8")
def x_tree_too_deep():
    """sum(sum(...(dense)...)) with the dense leaf at depth 9."""
    node = forced(dense(np.ones(3, np.float32)), "raw")
    for _ in range(9):
        node = sum_(node)
    return build_file({"deep": node})


@invalid("UnsupportedError", "graph op-set version 2 is newer")
def x_graph_opset_too_new():
    return build_file({"a": forced(dense(np.ones(2, np.float32)), "raw")},
                      graph={"opset": 2, "nodes": []})


# ============================================================================ writing


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Like np.savez, but byte-for-byte deterministic (fixed zip timestamps, sorted names)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_STORED) as z:
        for name in sorted(arrays):
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            b = io.BytesIO()
            np.lib.format.write_array(b, np.array(arrays[name], order="C", copy=True),
                                      allow_pickle=False)
            z.writestr(info, b.getvalue())
    path.write_bytes(buf.getvalue())


def same(a: np.ndarray, b: np.ndarray) -> bool:
    return (a.dtype == b.dtype and a.shape == b.shape
            and a.tobytes() == np.ascontiguousarray(b).tobytes())


def generate(out: Path) -> None:
    (out / "valid").mkdir(parents=True, exist_ok=True)
    (out / "invalid").mkdir(parents=True, exist_ok=True)
    for name, fn in VALID.items():
        tensors, expected, kw = fn()
        data = build_file(tensors, **kw)
        for ref in (True, False):
            with czmodel.open(data, reference=ref) as f:
                f.verify()
                assert list(f) == list(expected), (name, list(f))
                for t, want in expected.items():
                    got = f[t]
                    assert same(got, want), f"{name}/{t} (reference={ref}): {got!r} != {want!r}"
        (out / "valid" / f"{name}.cz").write_bytes(data)
        save_npz(out / "valid" / f"{name}.npz", expected)
    manifest = {}
    for name, (fn, error, message, stage) in INVALID.items():
        data = fn()
        check_invalid(name, data, error, message, stage)
        (out / "invalid" / f"{name}.cz").write_bytes(data)
        manifest[f"{name}.cz"] = {"error": error, "message": message, "stage": stage,
                                  "fault": " ".join((fn.__doc__ or name.replace("_", " "))
                                                    .split())}
    (out / "invalid" / "manifest.json").write_text(
        json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def check_invalid(name: str, data: bytes, error: str, message: str, stage: str) -> None:
    cls = getattr(czmodel, error)
    try:
        f = czmodel.open(data)
    except czmodel.CzError as e:
        if stage != "open" or type(e) is not cls or message not in str(e):
            raise AssertionError(f"invalid/{name}: open raised {type(e).__name__}: {e}") from e
        return
    with f:
        if stage == "open":
            raise AssertionError(f"invalid/{name}: open did not fail")
        try:
            f.verify()
        except czmodel.CzError as e:
            if type(e) is not cls or message not in str(e):
                raise AssertionError(f"invalid/{name}: verify raised {type(e).__name__}: "
                                     f"{e}") from e
            return
    raise AssertionError(f"invalid/{name}: verify did not fail")


def listing(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def check(out: Path) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        fresh = Path(tmp)
        generate(fresh)
        want, have = listing(fresh), listing(out) if out.is_dir() else []
        problems = [f"missing: {p}" for p in sorted(set(want) - set(have))]
        problems += [f"unexpected: {p}" for p in sorted(set(have) - set(want))]
        problems += [f"differs: {p}" for p in want if p in have
                     and not filecmp.cmp(fresh / p, out / p, shallow=False)]
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} difference(s): run `python spec/make_vectors.py` and commit",
              file=sys.stderr)
        return 1
    print(f"{len(want)} files reproduced exactly")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true",
                    help="regenerate in a temp dir and compare with --out; exit 1 on a diff")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args(argv)
    if args.check:
        return check(args.out)
    for sub in ("valid", "invalid"):   # start clean, so removed vectors do not linger
        for p in (args.out / sub).glob("*") if (args.out / sub).is_dir() else []:
            if p.suffix in (".cz", ".npz", ".json"):
                os.remove(p)
    generate(args.out)
    files = listing(args.out)
    size = sum((args.out / p).stat().st_size for p in files)
    print(f"wrote {len(files)} files, {size} bytes, under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
