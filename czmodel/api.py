"""The top-level verbs: open, verify, write, save."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from czmodel.format import limits as L
from czmodel.format.reader import CzFile
from czmodel.format.writer import write as _write


def open(  # noqa: A001 - mirrors builtins.open on purpose
        path: str | os.PathLike | bytes, *, max_tensor_bytes: int | None = None,
        reference: bool = False) -> CzFile:
    """Open a .cz file: validates preamble, header and section table; tensors decode lazily.

    Returns a read-only mapping ``name -> np.ndarray`` with ``.metadata``, ``.graph``,
    ``.calibration`` and ``.info()``. Raises a ``CzError`` subclass for a bad file.
    """
    limits = L.Limits(max_tensor_bytes=max_tensor_bytes or L.DEFAULT_MAX_TENSOR_BYTES)
    return CzFile(path, limits=limits, reference=reference)


def verify(path: str | os.PathLike | bytes, *, max_tensor_bytes: int | None = None) -> None:
    """Check every checksum and structural rule, decoding every tensor; raise on the first
    fault (a ``CzError`` subclass naming the tensor/stream/offset)."""
    with open(path, max_tensor_bytes=max_tensor_bytes) as f:
        f.verify()


def write(path: str | os.PathLike, tensors: Mapping[str, Any], *, graph: Any = None,
          calibration: dict | None = None, metadata: dict | None = None,
          zstd_level: int | None = None) -> int:
    """Write tensors given as numpy arrays (stored losslessly) or encoding trees built with
    ``czmodel.encode`` builders. Atomic and deterministic. Returns bytes written.

    ``graph``: a ``czmodel.graph.Graph`` (validated against ``tensors`` first; a bad graph
    is an ``EncodeError``) or its header map (``Graph.to_header()``)."""
    if graph is not None and hasattr(graph, "to_header"):
        from czmodel.errors import CzError, EncodeError
        try:
            graph = graph.validate(set(tensors)).to_header()
        except EncodeError:
            raise
        except CzError as e:
            raise EncodeError(f"graph: {e}") from None
    return _write(path, tensors, graph=graph, calibration=calibration, metadata=metadata,
                  zstd_level=zstd_level)


def save(path: str | os.PathLike, tensors: Mapping[str, Any], config: Any = None, *,
         metadata: dict | None = None, calibration: Mapping[str, Any] | None = None,
         graph: Any = None) -> Any:
    """Compress a plain dict of numpy arrays with ``config`` (a dict, a JSON/YAML file path
    or a ``CompressionConfig``; None = lossless) and write them atomically.

    Returns the compression report (Deep Compression Tables 2/3 form: ``.to_text()``,
    ``.to_markdown()``, ``.to_json()``)."""
    from czmodel.compress.pipeline import save as _save
    return _save(path, tensors, config, metadata=metadata, calibration=calibration,
                 graph=graph)
