"""Encoding trees: the writer-side ``Node``/``Stream``, the reader-side ``NodeDesc``/
``StreamDesc``, and the ``Codec`` interface that every encoding implements (one row per
encoding in ``REGISTRY``; adding an encoding adds a module, not branches elsewhere).

A tensor's encoding is a tree. Each node names a codec, the shape it decodes to, its
params, its leaf ``streams`` (each stored in one file section with its own entropy stage)
and its ``children`` (other nodes, e.g. the values of a sparse matrix).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from czmodel.errors import CorruptionError, EncodeError, FormatError, LimitError
from czmodel.format import limits as L

# ----------------------------------------------------------------------------- writer side


@dataclass
class Stream:
    """One leaf stream before entropy coding: a 1-D array in a stream dtype."""

    data: np.ndarray
    dtype: str                  # stream dtype name (czmodel.entropy.STREAM_DTYPES)
    bits: int | None = None     # symbol width for "u8" symbol streams, else None
    kind: str = "weight"        # "weight" or "index" (for the Deep Compression report)
    entropy: str = "auto"       # raw | huffman | zstd | auto


@dataclass
class Node:
    """One encoding node as built by a writer (see czmodel.encode for builders)."""

    codec: str
    shape: tuple[int, ...]
    params: dict[str, Any] = field(default_factory=dict)
    streams: dict[str, Stream] = field(default_factory=dict)
    children: dict[str, Node] = field(default_factory=dict)

    def set_entropy(self, entropy: str | dict[str, str]) -> Node:
        """Set the entropy stage of every stream in this subtree (or per role name).
        "huffman" applies to byte/symbol streams only; other streams get "auto"."""
        for role, s in self.streams.items():
            e = entropy if isinstance(entropy, str) else entropy.get(role)
            if e is None:
                continue
            s.entropy = "auto" if e == "huffman" and s.dtype != "u8" else e
        for c in self.children.values():
            c.set_entropy(entropy)
        return self


# ----------------------------------------------------------------------------- reader side


@dataclass(frozen=True)
class StreamDesc:
    sec: int
    entropy: str
    dtype: str
    bits: int | None
    n: int
    path: str                   # e.g. "values/indices", for error messages and reports
    kind: str = "weight"


@dataclass(frozen=True)
class NodeDesc:
    codec: str
    shape: tuple[int, ...]
    params: dict[str, Any]
    streams: dict[str, StreamDesc]
    children: dict[str, NodeDesc]
    path: str

    @property
    def size(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class Role:
    """What a codec accepts for one stream role."""

    dtypes: tuple[str, ...]
    kind: str = "weight"
    required: bool = True
    symbols: bool = False       # u8 symbol stream: "bits" must be set (1..8)


class DecodeContext:
    """Gives a codec its decoded streams and children during decoding."""

    def __init__(self, read_stream: Callable[[StreamDesc], np.ndarray], *,
                 reference: bool, max_bytes: int) -> None:
        self._read = read_stream
        self.reference = reference
        self.max_bytes = max_bytes

    def stream(self, node: NodeDesc, role: str) -> np.ndarray:
        return self._read(node.streams[role])

    def has(self, node: NodeDesc, role: str) -> bool:
        return role in node.streams

    def child(self, node: NodeDesc, role: str) -> np.ndarray:
        return decode_node(node.children[role], self)


class Codec:
    """One encoding. Subclasses set the class attributes and implement check/decode."""

    name: ClassVar[str]
    roles: ClassVar[dict[str, Role]] = {}
    child_roles: ClassVar[tuple[str, ...]] = ()
    params: ClassVar[tuple[str, ...]] = ()
    min_ndim: ClassVar[int] = 0

    def check(self, node: NodeDesc) -> None:
        """Structural checks from the header alone (counts, shapes, params). Raise on fault."""

    def decode(self, node: NodeDesc, ctx: DecodeContext) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError


REGISTRY: dict[str, Codec] = {}


def register(cls: type[Codec]) -> type[Codec]:
    REGISTRY[cls.name] = cls()
    return cls


def decode_node(node: NodeDesc, ctx: DecodeContext) -> np.ndarray:
    """Decode one node to a dense array of its shape (reference or fast path)."""
    out_bytes = node.size * 4
    if out_bytes > ctx.max_bytes:
        raise LimitError(f"decoding node {node.codec!r} needs {out_bytes} bytes, over the "
                         f"cap of {ctx.max_bytes} (raise max_tensor_bytes to allow)",
                         path=node.path)
    out = REGISTRY[node.codec].decode(node, ctx)
    if out.shape != node.shape:  # a codec bug, never file content: still fail loudly
        raise CorruptionError(f"{node.codec} decoded shape {out.shape}, expected {node.shape}",
                              path=node.path)
    return out


# ----------------------------------------------------------------------------- helpers for codecs


def view2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """Rows = first dim, cols = product of the rest (conv (O,I,kh,kw) -> (O, I*kh*kw))."""
    if len(shape) == 0:
        return 1, 1
    return shape[0], math.prod(shape[1:])


def param_int(node: NodeDesc, key: str, lo: int, hi: int, *, optional: bool = False) -> int | None:
    v = node.params.get(key)
    if v is None:
        if optional:
            return None
        raise FormatError(f"{node.codec}: missing param {key!r}", path=node.path)
    if type(v) is not int or not lo <= v <= hi:
        raise FormatError(f"{node.codec}: param {key!r}={v!r} must be an integer in "
                          f"[{lo}, {hi}]", path=node.path)
    return v


def param_bool(node: NodeDesc, key: str) -> bool:
    v = node.params.get(key)
    if type(v) is not bool:
        raise FormatError(f"{node.codec}: param {key!r} must be a boolean", path=node.path)
    return v


def expect_n(node: NodeDesc, role: str, n: int) -> None:
    s = node.streams[role]
    if s.n != n:
        raise CorruptionError(f"{node.codec}: stream {role!r} holds {s.n} elements, "
                              f"expected {n}", path=s.path)


def expect_child_shape(node: NodeDesc, role: str, shape: tuple[int, ...]) -> None:
    c = node.children[role]
    if c.shape != tuple(shape):
        raise CorruptionError(f"{node.codec}: child {role!r} has shape {list(c.shape)}, "
                              f"expected {list(shape)}", path=c.path)


def check_builder_shape(shape: Any) -> tuple[int, ...]:
    try:
        t = tuple(int(d) for d in shape)
    except Exception as e:  # noqa: BLE001 - user argument
        raise EncodeError(f"bad shape {shape!r}") from e
    if len(t) > L.MAX_NDIM or any(d < 0 or d > L.MAX_DIM for d in t):
        raise EncodeError(f"shape {t} exceeds the format's limits")
    return t
