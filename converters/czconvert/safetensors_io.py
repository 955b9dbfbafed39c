"""A small, bounds-checked reader of ``.safetensors`` files (no safetensors / torch needed).

Layout: u64 little-endian header length N, N bytes of JSON ``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, then the data buffer. bf16 tensors
are widened to float32 (exact) and reported in the returned dtype map.
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from czmodel.errors import FormatError, LimitError, UnsupportedError

MAX_HEADER = 100 << 20
_DTYPES = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
           "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "U16": np.uint16,
           "U32": np.uint32, "BOOL": np.bool_}
_TORCH_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                "U16": "uint16", "U32": "uint32", "BOOL": "bool"}


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(name -> array, name -> source dtype name such as "bfloat16") in file order."""
    data = open(path, "rb").read()      # noqa: SIM115 - whole file, closed by refcount
    where = os.fspath(path)
    if len(data) < 8:
        raise FormatError(f"{where}: too short for a safetensors file")
    n = int.from_bytes(data[:8], "little")
    if n > MAX_HEADER or 8 + n > len(data):
        raise LimitError(f"{where}: header length {n} exceeds the file or {MAX_HEADER}")
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FormatError(f"{where}: header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise FormatError(f"{where}: header must be a JSON object")
    buf = memoryview(data)[8 + n:]
    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for name, e in header.items():
        if name == "__metadata__":
            continue
        if not isinstance(e, dict) or set(e) != {"dtype", "shape", "data_offsets"}:
            raise FormatError(f"{where}: tensor {name!r}: bad entry")
        dt, shape, off = e["dtype"], e["shape"], e["data_offsets"]
        if dt not in _DTYPES and dt != "BF16":
            raise UnsupportedError(f"{where}: tensor {name!r}: dtype {dt!r} is not supported "
                                   f"(known: {sorted(_TORCH_NAMES)})")
        if (not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape)
                or not isinstance(off, list) or len(off) != 2
                or not all(type(o) is int for o in off)):
            raise FormatError(f"{where}: tensor {name!r}: bad shape or data_offsets")
        b, t = off
        item = 2 if dt == "BF16" else np.dtype(_DTYPES[dt]).itemsize
        if not 0 <= b <= t <= len(buf) or t - b != math.prod(shape) * item:
            raise FormatError(f"{where}: tensor {name!r}: data_offsets {off} do not match "
                              f"shape {shape} x {item} bytes within a {len(buf)}-byte buffer")
        raw = buf[b:t]
        if dt == "BF16":
            u = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
            arr = u.view(np.float32).reshape(shape)
        else:
            arr = np.frombuffer(raw, np.dtype(_DTYPES[dt]).newbyteorder("<")).reshape(shape)
            arr = arr.astype(arr.dtype.newbyteorder("="))
        arrays[name] = np.asarray(arr, order="C")
        dtypes[name] = _TORCH_NAMES[dt]
    return arrays, dtypes
