"""Writing .cz files: deterministic bytes, written atomically (spec: "Writing")."""

from __future__ import annotations

import os
import tempfile
import zlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from czmodel.codecs.base import REGISTRY, Node
from czmodel.codecs.dense import dense
from czmodel.entropy import encode_stream
from czmodel.errors import EncodeError
from czmodel.format import header as H
from czmodel.format.preamble import PREAMBLE_SIZE, align_up, pack_preamble


def _as_node(name: str, value: Any) -> tuple[Node, str]:
    if isinstance(value, Node):
        return value, "f32" if value.codec != "dense" else _dense_tensor_dtype(value)
    a = np.asarray(value)
    dt = H.NUMPY_TO_TENSOR.get(a.dtype.newbyteorder("="))
    if dt is None:
        raise EncodeError(f"tensor {name!r}: numpy dtype {a.dtype} cannot be stored")
    return dense(a), dt


def _dense_tensor_dtype(node: Node) -> str:
    d = node.streams["data"].dtype
    return {"bf16": "f32"}.get(d, d)


def build_file(tensors: Mapping[str, Any], *, graph: dict | None = None,
               calibration: dict | None = None, metadata: dict | None = None,
               tensor_dtypes: Mapping[str, str] | None = None,
               zstd_level: int | None = None) -> bytes:
    """Encode everything and return the complete file bytes (deterministic)."""
    payloads: list[bytes] = []
    entries = []
    for name, value in tensors.items():
        if not isinstance(name, str) or not name:
            raise EncodeError(f"tensor names must be non-empty strings, got {name!r}")
        node, dt = _as_node(name, value)
        if tensor_dtypes and name in tensor_dtypes:
            dt = tensor_dtypes[name]
        if dt not in H.TENSOR_DTYPES:
            raise EncodeError(f"tensor {name!r}: dtype {dt!r} not in {list(H.TENSOR_DTYPES)}")
        enc = _encode_node(node, payloads, name, zstd_level, 0)
        entries.append({"name": name, "dtype": dt, "shape": list(node.shape), "enc": enc})
    header: dict[str, Any] = {"format": H.FORMAT_NAME, "features": [], "tensors": entries,
                              "graph": graph, "calibration": calibration or {},
                              "metadata": metadata or {}}
    for key in ("graph", "calibration", "metadata"):
        if header[key] is not None:
            H.check_plain(header[key], key)
    # The section table lives in the header, whose length moves the sections: iterate
    # to a fixed point (offsets only grow by a few bytes of msgpack integer width).
    table: list[list[int]] = [[0, len(p), zlib.crc32(p)] for p in payloads]
    for _ in range(8):
        header["sections"] = table
        hb = H.pack_header(header)
        pos, new = PREAMBLE_SIZE + len(hb), []
        for _, n, c in table:
            off = align_up(pos)
            new.append([off, n, c])
            pos = off + n
        if new == table:
            break
        table = new
    else:  # pragma: no cover - offsets converge in two or three rounds
        raise RuntimeError("section layout did not converge")
    out = bytearray(pack_preamble(hb))
    out += hb
    for p, (off, _, _) in zip(payloads, table):
        out += bytes(off - len(out))
        out += p
    return bytes(out)


def _encode_node(node: Node, payloads: list[bytes], tensor: str, zstd_level: int | None,
                 depth: int) -> dict:
    codec = REGISTRY.get(node.codec)
    if codec is None:
        raise EncodeError(f"tensor {tensor!r}: unknown codec {node.codec!r}")
    streams = {}
    for role in sorted(node.streams):
        s = node.streams[role]
        stage, payload = encode_stream(s.data, s.dtype, s.bits, s.entropy,
                                       zstd_level=zstd_level)
        streams[role] = {"sec": len(payloads), "entropy": stage, "dtype": s.dtype,
                         "bits": s.bits, "n": int(s.data.size)}
        payloads.append(payload)
    children = {role: _encode_node(node.children[role], payloads, tensor, zstd_level, depth + 1)
                for role in sorted(node.children)}
    return {"codec": node.codec, "shape": [int(d) for d in node.shape],
            "params": dict(node.params), "streams": streams, "children": children}


def write_file(path: str | os.PathLike, data: bytes) -> None:
    """Atomic write: a temporary file in the destination's folder, fsync, then rename.
    A crash at any point leaves either the old file or the complete new one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".cz-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass


def write(path: str | os.PathLike, tensors: Mapping[str, Any], **kw: Any) -> int:
    """Encode ``tensors`` (arrays or encoding ``Node``s) and write the file atomically.
    Returns the number of bytes written."""
    data = build_file(tensors, **kw)
    write_file(path, data)
    return len(data)
