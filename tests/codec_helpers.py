"""In-memory stand-in for the container, for codec tests.

``to_desc`` walks a writer ``Node`` and builds the reader-side ``NodeDesc``/``StreamDesc``
tree (every stream gets a fake section index; the arrays are kept in a dict keyed by it),
running the container's generic checks and ``codec.check`` on every node. ``decode`` then
runs ``decode_node`` with a ``DecodeContext`` whose ``read_stream`` returns those arrays.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from czmodel.codecs import REGISTRY, DecodeContext, Node, NodeDesc, StreamDesc, decode_node
from czmodel.errors import FormatError

NP_DTYPES = {"u8": np.uint8, "i8": np.int8, "u16": np.uint16, "i16": np.int16,
             "u32": np.uint32, "i32": np.int32, "u64": np.uint64, "i64": np.int64,
             "f16": np.float16, "bf16": np.uint16, "f32": np.float32, "f64": np.float64}


def _join(path: str, role: str) -> str:
    return f"{path}/{role}" if path else role


def generic_check(d: NodeDesc) -> None:
    """What the container checks for every node before calling ``codec.check``."""
    codec = REGISTRY.get(d.codec)
    if codec is None:
        raise FormatError(f"unknown codec {d.codec!r}", path=d.path)
    for role, r in codec.roles.items():
        if r.required and role not in d.streams:
            raise FormatError(f"{d.codec}: missing stream {role!r}", path=d.path)
    for role, s in d.streams.items():
        r = codec.roles.get(role)
        if r is None:
            raise FormatError(f"{d.codec}: unknown stream {role!r}", path=s.path)
        if s.dtype not in r.dtypes:
            raise FormatError(f"{d.codec}: stream {role!r} dtype {s.dtype}", path=s.path)
        if (s.bits is not None) != r.symbols or (s.bits is not None and not 1 <= s.bits <= 8):
            raise FormatError(f"{d.codec}: stream {role!r} bits {s.bits}", path=s.path)
    if getattr(codec, "variadic_children", False):
        n = len(d.children)
        if n < 1 or set(d.children) != {str(i) for i in range(n)}:
            raise FormatError(f"{d.codec}: children {sorted(d.children)}", path=d.path)
    elif set(d.children) != set(codec.child_roles):
        raise FormatError(f"{d.codec}: children {sorted(d.children)}", path=d.path)
    if not set(d.params) <= set(codec.params):
        raise FormatError(f"{d.codec}: params {sorted(d.params)}", path=d.path)
    if len(d.shape) < codec.min_ndim:
        raise FormatError(f"{d.codec}: ndim {len(d.shape)}", path=d.path)


def check_tree(d: NodeDesc) -> None:
    for c in d.children.values():
        check_tree(c)
    generic_check(d)
    REGISTRY[d.codec].check(d)


def to_desc(node: Node, arrays: dict[int, np.ndarray] | None = None, path: str = "",
            check: bool = True) -> tuple[NodeDesc, dict[int, np.ndarray]]:
    """Writer Node -> (NodeDesc, {section: array}); runs every check unless check=False."""
    arrays = {} if arrays is None else arrays
    streams = {}
    for role, s in node.streams.items():
        a = np.ascontiguousarray(s.data).reshape(-1)
        assert a.dtype == np.dtype(NP_DTYPES[s.dtype]), (role, a.dtype, s.dtype)
        if s.bits is not None and a.size:
            assert int(a.max()) < (1 << s.bits), f"{role}: symbol over {s.bits} bits"
        sec = len(arrays)
        arrays[sec] = a
        streams[role] = StreamDesc(sec, s.entropy, s.dtype, s.bits, a.shape[0],
                                   _join(path, role), s.kind)
    children = {role: to_desc(c, arrays, _join(path, role), check=False)[0]
                for role, c in node.children.items()}
    d = NodeDesc(node.codec, tuple(node.shape), dict(node.params), streams, children, path)
    if check and not path:
        check_tree(d)
    return d, arrays


def make_desc(codec: str, shape: tuple[int, ...], params: dict[str, Any],
              streams: dict[str, tuple[str, int | None, Any]],
              children: dict[str, tuple[NodeDesc, dict[int, np.ndarray]]] | None = None,
              path: str = "") -> tuple[NodeDesc, dict[int, np.ndarray]]:
    """Hand-build a (possibly inconsistent) NodeDesc: streams = {role: (dtype, bits, data)}.

    Child descs are re-pathed and their arrays merged (their sections renumbered).
    """
    arrays: dict[int, np.ndarray] = {}
    kids = {}
    for role, (cd, carr) in (children or {}).items():
        kids[role] = _renumber(cd, carr, arrays, _join(path, role))
    sd = {}
    for role, (dtype, bits, data) in streams.items():
        a = np.ascontiguousarray(np.asarray(data, dtype=NP_DTYPES[dtype])).reshape(-1)
        sec = len(arrays)
        arrays[sec] = a
        sd[role] = StreamDesc(sec, "raw", dtype, bits, a.shape[0], _join(path, role))
    return NodeDesc(codec, tuple(shape), dict(params), sd, kids, path), arrays


def _renumber(d: NodeDesc, src: dict[int, np.ndarray], dst: dict[int, np.ndarray],
              path: str) -> NodeDesc:
    streams = {}
    for role, s in d.streams.items():
        sec = len(dst)
        dst[sec] = src[s.sec]
        streams[role] = replace(s, sec=sec, path=_join(path, role))
    kids = {r: _renumber(c, src, dst, _join(path, r)) for r, c in d.children.items()}
    return replace(d, streams=streams, children=kids, path=path)


def with_stream(d: NodeDesc, arrays: dict[int, np.ndarray], role_path: str,
                data: Any) -> dict[int, np.ndarray]:
    """A copy of ``arrays`` where the stream at ``role_path`` ("values/indices") holds
    ``data`` (same element count as declared, so check() still passes)."""
    node = d
    *kids, role = role_path.split("/")
    for k in kids:
        node = node.children[k]
    s = node.streams[role]
    a = np.asarray(data, dtype=NP_DTYPES[s.dtype]).reshape(-1)
    assert a.shape[0] == s.n, "with_stream keeps the declared count"
    out = dict(arrays)
    out[s.sec] = a
    return out


def decode(d: NodeDesc, arrays: dict[int, np.ndarray], *, reference: bool,
           max_bytes: int = 1 << 30) -> np.ndarray:
    def read(s: StreamDesc) -> np.ndarray:
        a = arrays[s.sec]
        a = a.copy()
        a.setflags(write=False)     # codecs must not write into stream buffers
        return a
    return decode_node(d, DecodeContext(read, reference=reference, max_bytes=max_bytes))


def roundtrip(node: Node) -> np.ndarray:
    """Decode ``node`` through both paths; assert they agree bit for bit; return it."""
    d, arrays = to_desc(node)
    ref = decode(d, arrays, reference=True)
    fast = decode(d, arrays, reference=False)
    assert ref.dtype == fast.dtype and ref.shape == fast.shape == tuple(node.shape)
    assert same_bits(ref, fast), "reference and fast decode differ"
    return ref


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
    return (a.dtype == b.dtype and a.shape == b.shape
            and a.tobytes() == b.tobytes())
