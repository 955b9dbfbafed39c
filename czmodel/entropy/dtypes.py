"""Stream dtype table (spec: "Entropy stage", "Stream dtypes").

Every stream element is stored little-endian on disk.  ``bf16`` has no numpy
dtype; it is carried as its raw 16-bit pattern in ``np.uint16``.
"""

from __future__ import annotations

import numpy as np

from czmodel.errors import UnsupportedError

#: stream dtype name -> native numpy dtype of the decoded array
STREAM_DTYPES: dict[str, np.dtype] = {
    "u8": np.dtype(np.uint8),
    "i8": np.dtype(np.int8),
    "u16": np.dtype(np.uint16),
    "i16": np.dtype(np.int16),
    "u32": np.dtype(np.uint32),
    "i32": np.dtype(np.int32),
    "u64": np.dtype(np.uint64),
    "i64": np.dtype(np.int64),
    "f16": np.dtype(np.float16),
    "bf16": np.dtype(np.uint16),
    "f32": np.dtype(np.float32),
    "f64": np.dtype(np.float64),
}

#: stream dtype name -> little-endian on-disk numpy dtype
DISK_DTYPES: dict[str, np.dtype] = {k: v.newbyteorder("<") for k, v in STREAM_DTYPES.items()}

#: dtypes whose values are integers (range-checked on encode)
INTEGER_DTYPES = frozenset({"u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64"})


def stream_dtype(name: str) -> np.dtype:
    """Native numpy dtype for stream dtype ``name``; UnsupportedError if unknown."""
    try:
        return STREAM_DTYPES[name]
    except (KeyError, TypeError):
        raise UnsupportedError(f"unknown stream dtype {name!r}") from None


def disk_dtype(name: str) -> np.dtype:
    """Little-endian numpy dtype used on disk for stream dtype ``name``."""
    stream_dtype(name)
    return DISK_DTYPES[name]
