"""Header parsing and validation (spec: "Header").

Everything here works on the decoded msgpack object only: one pass that checks types,
names, shapes, the section table and every encoding node before any stream is read.
"""

from __future__ import annotations

import math
from typing import Any

import msgpack
import numpy as np

from czmodel.codecs.base import REGISTRY, NodeDesc, StreamDesc
from czmodel.entropy import MAX_STREAM_ELEMENTS, STAGES, STREAM_DTYPES, encoded_raw_size
from czmodel.entropy import REGISTRY as STAGE_REGISTRY
from czmodel.errors import CorruptionError, FormatError, LimitError, UnsupportedError
from czmodel.format import limits as L
from czmodel.format.preamble import PREAMBLE_SIZE, align_up

FORMAT_NAME = "cz"
KNOWN_FEATURES: frozenset[str] = frozenset()   # v1.0 defines no required features
GRAPH_OPSET_MAX = 1                             # graph op-set versions this reader knows
TENSOR_DTYPES: dict[str, np.dtype] = {
    "f64": np.dtype(np.float64), "f32": np.dtype(np.float32), "f16": np.dtype(np.float16),
    "i64": np.dtype(np.int64), "i32": np.dtype(np.int32), "i16": np.dtype(np.int16),
    "i8": np.dtype(np.int8), "u8": np.dtype(np.uint8), "u16": np.dtype(np.uint16),
    "u32": np.dtype(np.uint32), "bool": np.dtype(np.bool_),
}
NUMPY_TO_TENSOR = {v: k for k, v in TENSOR_DTYPES.items()}
_TENSOR_KEYS = {"name", "dtype", "shape", "enc"}
_NODE_KEYS = {"codec", "shape", "params", "streams", "children"}
_STREAM_KEYS = {"sec", "entropy", "dtype", "bits", "n"}


def unpack_header(raw: bytes) -> dict:
    """msgpack -> dict, with container sizes bounded by the header's own length."""
    n = len(raw)
    try:
        obj = msgpack.unpackb(raw, raw=False, strict_map_key=True, use_list=True,
                              max_str_len=n, max_bin_len=n, max_array_len=n, max_map_len=n,
                              max_ext_len=0, ext_hook=_no_ext, object_pairs_hook=_map)
    except Exception as e:  # noqa: BLE001 - any unpack failure is a malformed header
        raise FormatError(f"header is not valid msgpack: {type(e).__name__}: {e}",
                          offset=PREAMBLE_SIZE) from None
    if not isinstance(obj, dict):
        raise FormatError("header is not a msgpack map", offset=PREAMBLE_SIZE)
    return obj


def _no_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack ext type {code} is not allowed")


def _map(pairs: list) -> dict:
    """Maps: str keys only, each once (a duplicate key would let two readers disagree)."""
    out = {}
    for k, v in pairs:
        if not isinstance(k, str):
            raise ValueError(f"map key {k!r} is not a string")
        if k in out:
            raise ValueError(f"duplicate map key {k!r}")
        out[k] = v
    return out


def pack_header(header: dict) -> bytes:
    """Canonical msgpack: map keys sorted at every level, so equal headers give equal bytes."""
    return msgpack.packb(_canonical(header), use_bin_type=True)


def _canonical(x: Any) -> Any:
    if isinstance(x, dict):
        return {k: _canonical(x[k]) for k in sorted(x)}
    if isinstance(x, (list, tuple)):
        return [_canonical(v) for v in x]
    return x


def _is_int(v: Any) -> bool:
    return type(v) is int


def check_plain(obj: Any, where: str, depth: int = 0) -> None:
    """Free-form values (metadata, calibration): msgpack basic types only, bounded depth."""
    if depth > 32:
        raise FormatError(f"{where}: nested deeper than 32 levels")
    if obj is None or isinstance(obj, (bool, int, float, str, bytes)):
        return
    if isinstance(obj, list):
        for v in obj:
            check_plain(v, where, depth + 1)
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, str):
                raise FormatError(f"{where}: map keys must be strings")
            check_plain(v, where, depth + 1)
        return
    raise FormatError(f"{where}: value of type {type(obj).__name__} is not allowed")


def parse_shape(v: Any, where: str, tensor: str | None) -> tuple[int, ...]:
    if not isinstance(v, list) or len(v) > L.MAX_NDIM:
        raise FormatError(f"{where}: shape must be a list of at most {L.MAX_NDIM} dims",
                          tensor=tensor)
    for d in v:
        if not _is_int(d) or d < 0:
            raise FormatError(f"{where}: shape {v!r} has a non-integer or negative dim",
                              tensor=tensor)
        if d > L.MAX_DIM:
            raise LimitError(f"{where}: dim {d} exceeds {L.MAX_DIM}", tensor=tensor)
    if math.prod(v) > L.MAX_ELEMENTS:
        raise LimitError(f"{where}: {math.prod(v)} elements exceed {L.MAX_ELEMENTS}",
                         tensor=tensor)
    return tuple(v)


def parse_sections(v: Any, file_size: int, header_len: int) -> list[tuple[int, int, int]]:
    """Sections must be sorted, each starting at the next 64-byte boundary after the previous
    one (no holes beyond alignment padding, no overlap), the last ending exactly at EOF."""
    if not isinstance(v, list):
        raise FormatError("'sections' must be a list")
    if len(v) > L.MAX_SECTIONS:
        raise LimitError(f"{len(v)} sections exceed {L.MAX_SECTIONS}")
    out = []
    pos = PREAMBLE_SIZE + header_len
    for i, s in enumerate(v):
        if (not isinstance(s, list) or len(s) != 3 or not all(_is_int(x) for x in s)
                or min(s) < 0 or s[2] > 0xFFFFFFFF):
            raise FormatError(f"section {i}: entry must be [offset, length, crc32] "
                              "non-negative integers")
        off, length, crc = s
        if off != align_up(pos):
            raise FormatError(f"section {i}: offset {off} must be {align_up(pos)} (next 64-byte "
                              "boundary after the previous section): hole or overlap",
                              offset=off)
        if off + length > file_size:
            raise FormatError(f"section {i}: [{off}, {off + length}) runs past the end of the "
                              f"{file_size}-byte file", offset=off)
        out.append((off, length, crc))
        pos = off + length
    if pos != file_size:
        raise FormatError(f"data ends at {pos} but the file is {file_size} bytes: trailing "
                          "bytes", offset=pos)
    return out


def parse_stream(v: Any, path: str, kind: str, tensor: str, sections: list) -> StreamDesc:
    if not isinstance(v, dict) or set(v) != _STREAM_KEYS:
        raise FormatError(f"stream must be a map with keys {sorted(_STREAM_KEYS)}",
                          tensor=tensor, path=path)
    sec, ent, dt, bits, n = v["sec"], v["entropy"], v["dtype"], v["bits"], v["n"]
    if not _is_int(sec) or not 0 <= sec < len(sections):
        raise FormatError(f"stream section index {sec!r} is not in the section table",
                          tensor=tensor, path=path)
    if not isinstance(ent, str) or ent not in STAGES:
        raise UnsupportedError(f"unknown entropy stage {ent!r} (known: {list(STAGES)})",
                               tensor=tensor, path=path)
    if not isinstance(dt, str) or dt not in STREAM_DTYPES:
        raise UnsupportedError(f"unknown stream dtype {dt!r}", tensor=tensor, path=path)
    if bits is not None and (not _is_int(bits) or not 1 <= bits <= 8 or dt != "u8"):
        raise FormatError(f"stream bits {bits!r} invalid (1..8, only for dtype u8)",
                          tensor=tensor, path=path)
    if not _is_int(n) or n < 0:
        raise FormatError(f"stream element count {n!r} is not a non-negative integer",
                          tensor=tensor, path=path)
    if n > MAX_STREAM_ELEMENTS:
        raise LimitError(f"stream element count {n} exceeds {MAX_STREAM_ELEMENTS}",
                         tensor=tensor, path=path)
    if not STAGE_REGISTRY[ent].applies(dt):
        raise UnsupportedError(f"entropy stage {ent!r} is not defined for dtype {dt!r}",
                               tensor=tensor, path=path)
    off, length, _ = sections[sec]
    raw = encoded_raw_size(dt, bits, n)
    # Element counts are bounded by the bytes that hold them (no allocation the file
    # does not justify): raw is exact; a zstd frame cannot expand past ZSTD_MAX_RATIO
    # (spec/sections/entropy.md); huffman spends at least one bit per symbol.
    if ent == "raw" and raw != length:
        raise CorruptionError(f"raw stream of {n} elements needs {raw} bytes, section has "
                              f"{length}", tensor=tensor, path=path, offset=off)
    if ent == "zstd" and raw > length * L.ZSTD_MAX_RATIO:
        raise LimitError(f"zstd stream claims {raw} bytes from {length}: impossible ratio",
                         tensor=tensor, path=path, offset=off)
    if ent == "huffman" and n > length * 8:
        raise LimitError(f"huffman stream claims {n} symbols from {length} bytes",
                         tensor=tensor, path=path, offset=off)
    return StreamDesc(sec, ent, dt, bits, n, path, kind)


def parse_node(v: Any, path: str, tensor: str, sections: list, depth: int = 0) -> NodeDesc:
    where = path or "enc"
    if depth > L.MAX_TREE_DEPTH:
        raise LimitError(f"encoding tree deeper than {L.MAX_TREE_DEPTH}", tensor=tensor,
                         path=where)
    if not isinstance(v, dict) or set(v) != _NODE_KEYS:
        raise FormatError(f"encoding node must be a map with keys {sorted(_NODE_KEYS)}",
                          tensor=tensor, path=where)
    name = v["codec"]
    codec = REGISTRY.get(name) if isinstance(name, str) else None
    if codec is None:
        raise UnsupportedError(f"unknown codec {name!r} (known: {sorted(REGISTRY)})",
                               tensor=tensor, path=where)
    shape = parse_shape(v["shape"], where, tensor)
    if len(shape) < codec.min_ndim:
        raise FormatError(f"{name} needs at least {codec.min_ndim} dims", tensor=tensor,
                          path=where)
    params, streams, children = v["params"], v["streams"], v["children"]
    if not isinstance(params, dict) or not set(params) <= set(codec.params):
        raise FormatError(f"{name}: params must be a map with keys among "
                          f"{list(codec.params)}", tensor=tensor, path=where)
    check_plain(params, f"{where}.params")
    if not isinstance(streams, dict) or not isinstance(children, dict):
        raise FormatError(f"{name}: streams and children must be maps", tensor=tensor,
                          path=where)
    required = {r for r, spec in codec.roles.items() if spec.required}
    if not required <= set(streams) <= set(codec.roles):
        raise FormatError(f"{name}: streams {sorted(streams)} must include {sorted(required)} "
                          f"and be among {sorted(codec.roles)}", tensor=tensor, path=where)
    if getattr(codec, "variadic_children", False):
        want = {str(i) for i in range(len(children))}
        ok = 1 <= len(children) <= 16 and set(children) == want
    else:
        ok = set(children) == set(codec.child_roles)
    if not ok:
        raise FormatError(f"{name}: children {sorted(children)} do not match the codec",
                          tensor=tensor, path=where)
    sdescs = {}
    for role, sv in streams.items():
        spec = codec.roles[role]
        sd = parse_stream(sv, f"{path}/{role}".lstrip("/"), spec.kind, tensor, sections)
        if sd.dtype not in spec.dtypes:
            raise FormatError(f"{name}: stream {role!r} dtype {sd.dtype!r} not in "
                              f"{list(spec.dtypes)}", tensor=tensor, path=sd.path)
        if spec.symbols != (sd.bits is not None):
            raise FormatError(f"{name}: stream {role!r} must {'' if spec.symbols else 'not '}"
                              "declare bits", tensor=tensor, path=sd.path)
        sdescs[role] = sd
    cdescs = {role: parse_node(cv, f"{path}/{role}".lstrip("/"), tensor, sections, depth + 1)
              for role, cv in children.items()}
    node = NodeDesc(name, shape, dict(params), sdescs, cdescs, where)
    try:
        codec.check(node)
    except (FormatError, CorruptionError, LimitError, UnsupportedError) as e:
        e.located(tensor=tensor)
        raise
    return node


def iter_streams(node: NodeDesc):
    yield from node.streams.values()
    for c in node.children.values():
        yield from iter_streams(c)
