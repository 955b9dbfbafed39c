"""Reading .cz files: ``CzFile`` validates the preamble, header and section table in one
pass at open and decodes a tensor only when it is asked for (spec: "Reading")."""

from __future__ import annotations

import math
import mmap
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from czmodel.codecs.base import DecodeContext, NodeDesc, StreamDesc, decode_node
from czmodel.entropy import decode_stream, encoded_raw_size
from czmodel.errors import CorruptionError, CzError, FormatError, LimitError, UnsupportedError
from czmodel.format import header as H
from czmodel.format import limits as L
from czmodel.format.preamble import PREAMBLE_SIZE, check_header_crc, unpack_preamble


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    enc: NodeDesc


class CzFile(Mapping[str, np.ndarray]):
    """A read-only mapping ``name -> np.ndarray`` over a .cz file (decoded on access)."""

    def __init__(self, source: str | os.PathLike | bytes, *, limits: L.Limits | None = None,
                 reference: bool = False) -> None:
        self.limits = limits or L.Limits()
        self.reference = reference
        self.closed = False
        self._file = None
        self._mm: Any = None
        if isinstance(source, (bytes, bytearray, memoryview)):
            self.path = None
            self._buf = memoryview(bytes(source))
        else:
            self.path = os.fspath(source)
            try:
                self._file = open(self.path, "rb")
            except OSError as e:
                raise FileNotFoundError(f"cannot open {self.path}: {e.strerror}") from e
            size = os.fstat(self._file.fileno()).st_size
            if size == 0:
                self._buf = memoryview(b"")
            else:
                self._mm = mmap.mmap(self._file.fileno(), 0, access=mmap.ACCESS_READ)
                self._buf = memoryview(self._mm)
        try:
            self._parse()
        except BaseException:
            self.close()
            raise
        self._verified: set[int] = set()

    # -- parsing -----------------------------------------------------------------------------
    def _parse(self) -> None:
        buf = self._buf
        pre = unpack_preamble(bytes(buf[:PREAMBLE_SIZE]))
        self.version = (pre.major, pre.minor)
        if pre.header_len > self.limits.max_header_bytes:
            raise LimitError(f"header of {pre.header_len} bytes exceeds the cap of "
                             f"{self.limits.max_header_bytes}", offset=12)
        end = PREAMBLE_SIZE + pre.header_len
        if end > len(buf):
            raise FormatError(f"header claims {pre.header_len} bytes but the file ends at "
                              f"{len(buf)}", offset=12)
        raw = bytes(buf[PREAMBLE_SIZE:end])
        check_header_crc(buf[:PREAMBLE_SIZE], raw, pre)
        h = H.unpack_header(raw)
        if h.get("format") != H.FORMAT_NAME:
            raise FormatError(f"header 'format' must be {H.FORMAT_NAME!r}", offset=PREAMBLE_SIZE)
        feats = h.get("features", [])
        if not isinstance(feats, list) or not all(isinstance(f, str) for f in feats):
            raise FormatError("'features' must be a list of strings")
        unknown = [f for f in feats if f not in H.KNOWN_FEATURES]
        if unknown:
            raise UnsupportedError(f"file requires features this reader lacks: {unknown}")
        self.sections = H.parse_sections(h.get("sections"), len(buf), pre.header_len)
        # Padding between sections must be zero (cheap: at most 63 bytes each).
        pos = end
        for i, (off, length, _) in enumerate(self.sections):
            if any(buf[pos:off]):
                raise CorruptionError(f"non-zero padding before section {i}", offset=pos)
            pos = off + length
        tensors = h.get("tensors")
        if not isinstance(tensors, list):
            raise FormatError("'tensors' must be a list")
        if len(tensors) > L.MAX_TENSORS:
            raise LimitError(f"{len(tensors)} tensors exceed {L.MAX_TENSORS}")
        self._entries: dict[str, TensorEntry] = {}
        used = [0] * len(self.sections)
        for i, t in enumerate(tensors):
            e = self._parse_tensor(t, i)
            for s in H.iter_streams(e.enc):
                used[s.sec] += 1
            self._entries[e.name] = e
        for i, u in enumerate(used):
            if u != 1:
                raise FormatError(f"section {i} is referenced by {u} streams (must be exactly "
                                  "one)", offset=self.sections[i][0])
        graph = h.get("graph")
        if graph is not None:
            if not isinstance(graph, dict):
                raise FormatError("'graph' must be a map or nil")
            op = graph.get("opset")
            if type(op) is not int or op < 1:
                raise FormatError("graph 'opset' must be a positive integer")
            if op > H.GRAPH_OPSET_MAX:
                raise UnsupportedError(f"graph op-set version {op} is newer than this reader's "
                                       f"{H.GRAPH_OPSET_MAX}")
            H.check_plain(graph, "graph")
            from czmodel.graph import validate_header_graph  # graph layer sits above

            # every structural rule (ops, attributes, topological order) is checked at open
            self.graph_model = validate_header_graph(graph, frozenset(self._entries))
        else:
            self.graph_model = None
        self.graph = graph
        self.calibration = h.get("calibration", {})
        self.metadata = h.get("metadata", {})
        for key in ("calibration", "metadata"):
            if not isinstance(getattr(self, key), dict):
                raise FormatError(f"{key!r} must be a map")
            H.check_plain(getattr(self, key), key)

    def _parse_tensor(self, t: Any, i: int) -> TensorEntry:
        if not isinstance(t, dict) or set(t) != H._TENSOR_KEYS:
            raise FormatError(f"tensor entry {i} must be a map with keys "
                              f"{sorted(H._TENSOR_KEYS)}")
        name = t["name"]
        if not isinstance(name, str) or not name:
            raise FormatError(f"tensor entry {i}: name must be a non-empty string")
        if name in self._entries:
            raise FormatError("duplicate tensor name", tensor=name)
        if not isinstance(t["dtype"], str) or t["dtype"] not in H.TENSOR_DTYPES:
            raise UnsupportedError(f"unknown tensor dtype {t['dtype']!r}", tensor=name)
        shape = H.parse_shape(t["shape"], "tensor", name)
        enc = H.parse_node(t["enc"], "", name, self.sections)
        if enc.shape != shape:
            raise FormatError(f"encoding shape {list(enc.shape)} differs from tensor shape "
                              f"{list(shape)}", tensor=name)
        return TensorEntry(name, t["dtype"], shape, enc)

    # -- mapping -----------------------------------------------------------------------------
    def __getitem__(self, name: str) -> np.ndarray:
        e = self._entries[name]  # KeyError for unknown names, as a Mapping should
        return self.decode(e)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> TensorEntry:
        return self._entries[name]

    def decode(self, e: TensorEntry, *, reference: bool | None = None) -> np.ndarray:
        ref = self.reference if reference is None else reference
        want = math.prod(e.shape) * max(4, H.TENSOR_DTYPES[e.dtype].itemsize)
        if want > self.limits.max_tensor_bytes:
            raise LimitError(f"tensor needs {want} bytes, over the cap of "
                             f"{self.limits.max_tensor_bytes}", tensor=e.name)
        ctx = DecodeContext(lambda s: self.read_stream(s, reference=ref, tensor=e.name),
                            reference=ref, max_bytes=self.limits.max_tensor_bytes)
        try:
            out = decode_node(e.enc, ctx)
        except CzError as err:
            err.located(tensor=e.name)
            raise
        return out.astype(H.TENSOR_DTYPES[e.dtype], copy=False)

    def read_stream(self, s: StreamDesc, *, reference: bool = False,
                    tensor: str | None = None) -> np.ndarray:
        """Checksum-verify (once) and entropy-decode one stream."""
        if self.closed:  # the buffer is gone: do not blame the file's bytes
            raise ValueError("I/O operation on a closed .cz file")
        off, length, crc = self.sections[s.sec]
        if encoded_raw_size(s.dtype, s.bits, s.n) > self.limits.max_tensor_bytes:
            raise LimitError("stream decodes past the memory cap", tensor=tensor, path=s.path)
        payload = self._buf[off:off + length]
        if s.sec not in self._verified:
            if zlib.crc32(payload) != crc:
                raise CorruptionError(f"checksum mismatch in section {s.sec}", tensor=tensor,
                                      path=s.path, offset=off)
            self._verified.add(s.sec)
        try:
            return decode_stream(payload, s.entropy, s.dtype, s.bits, s.n, reference=reference)
        except CzError as err:
            err.located(tensor=tensor, path=s.path, offset=off)
            raise

    def verify(self) -> None:
        """Check every section checksum, then decode every tensor (both are required for a
        sound file: a stream can pass its checksum and still be inconsistent)."""
        if self.closed:
            raise ValueError("I/O operation on a closed .cz file")
        for i, (off, length, crc) in enumerate(self.sections):
            if zlib.crc32(self._buf[off:off + length]) != crc:
                raise CorruptionError(f"checksum mismatch in section {i}", offset=off)
            self._verified.add(i)
        for e in self._entries.values():
            self.decode(e)

    def info(self) -> list[dict]:
        from czmodel.format.info import tensor_info
        return [tensor_info(e, self.sections) for e in self._entries.values()]

    # -- lifetime ----------------------------------------------------------------------------
    def close(self) -> None:
        self.closed = True
        old, self._buf = getattr(self, "_buf", None), memoryview(b"")
        if old is not None:
            old.release()
        if self._mm is not None:
            try:
                self._mm.close()
            except BufferError:  # arrays still view the map: leave it to the GC
                pass
            self._mm = None
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> CzFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CzFile({self.path!r}, {len(self)} tensors)"
