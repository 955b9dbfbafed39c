"""Per-stream entropy stage (spec: spec/sections/entropy.md).

A stream is a 1-D array of ``n`` values of a stream dtype.  Its *raw form* is
the values little-endian back to back, or, for ``u8`` symbol streams with
``bits`` set, the symbols bit-packed LSB-first.  An entropy stage turns the
stream into the payload stored in its file section:

* ``raw``     - the raw form itself;
* ``huffman`` - canonical length-limited chunked Huffman (``u8`` streams only);
* ``zstd``    - one zstd frame of the raw form.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from czmodel.errors import (
    CorruptionError,
    CzError,
    EncodeError,
    FormatError,
    LimitError,
    UnsupportedError,
)

from . import bitpack, huffman, huffman_numba, zstd_stage
from .dtypes import DISK_DTYPES, INTEGER_DTYPES, STREAM_DTYPES
from .huffman import MAX_STREAM_ELEMENTS

STAGES = ("raw", "huffman", "zstd")

__all__ = ["STREAM_DTYPES", "STAGES", "REGISTRY", "MAX_STREAM_ELEMENTS",
           "encoded_raw_size", "encode_stream", "decode_stream"]


# ---------------------------------------------------------------- helpers

def _is_int(x) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, (bool, np.bool_))


def _check_desc(dtype, bits, err) -> None:
    """Validate (dtype, bits); ``err`` is the error class for a bad combination."""
    if not isinstance(dtype, str) or dtype not in STREAM_DTYPES:
        raise (err if err is EncodeError else UnsupportedError)(f"unknown stream dtype {dtype!r}")
    if bits is not None:
        if not _is_int(bits) or not 1 <= bits <= 8:
            raise err(f"symbol width bits={bits!r} must be an int 1..8")
        if dtype != "u8":
            raise err(f"symbol width bits is only allowed with dtype 'u8', not {dtype!r}")


def encoded_raw_size(dtype: str, bits: int | None, n: int) -> int:
    """Bytes of the raw form: ceil(n*bits/8) for bit-packed u8 streams, else n*itemsize."""
    _check_desc(dtype, bits, FormatError)
    if not _is_int(n) or n < 0:
        raise LimitError(f"invalid element count {n!r}")
    n = int(n)
    if bits is not None:
        return bitpack.packed_size(n, int(bits))
    return n * STREAM_DTYPES[dtype].itemsize


def _alphabet_bits(bits: int | None) -> int:
    return 8 if bits is None else int(bits)


# ---------------------------------------------------------------- raw stage

def _coerce(arr, dtype: str, bits: int | None) -> np.ndarray:
    """Check ``arr`` against the stream dtype; return a native contiguous copy/view."""
    a = np.asarray(arr)
    if a.ndim != 1:
        raise EncodeError(f"stream must be 1-D, got shape {a.shape}")
    if a.size > MAX_STREAM_ELEMENTS:
        raise EncodeError(f"stream of {a.size} elements exceeds the limit {MAX_STREAM_ELEMENTS}")
    target = STREAM_DTYPES[dtype]
    k = a.dtype.kind
    if dtype in INTEGER_DTYPES:
        if k not in "biu":
            raise EncodeError(f"{dtype} stream needs an integer array, got {a.dtype}")
        if a.size and k != "b":
            lo, hi = int(a.min()), int(a.max())
            info = np.iinfo(target)
            top = (1 << bits) - 1 if bits is not None else info.max
            if lo < info.min or hi > top:
                raise EncodeError(f"values [{lo}, {hi}] do not fit a {dtype} stream"
                                  + (f" of {bits}-bit symbols" if bits is not None else ""))
        return np.ascontiguousarray(a.astype(target, copy=False))
    if dtype == "bf16":
        if k not in "iu" or a.dtype.itemsize != 2:
            raise EncodeError(f"bf16 stream needs 16-bit integer bit patterns, got {a.dtype}")
        return np.ascontiguousarray(a.astype(a.dtype.newbyteorder("="), copy=False)).view(np.uint16)
    if k != "f" or a.dtype.itemsize != target.itemsize:
        raise EncodeError(f"{dtype} stream needs a {target} array, got {a.dtype}")
    return np.ascontiguousarray(a.astype(target, copy=False))


def _raw_form(values: np.ndarray, dtype: str, bits: int | None) -> bytes:
    if bits is not None:
        return bitpack.pack_symbols(values, int(bits))
    return values.astype(DISK_DTYPES[dtype], copy=False).tobytes()


def _decode_raw(payload, dtype: str, bits: int | None, n: int, reference: bool) -> np.ndarray:
    if bits is not None:
        f = bitpack.unpack_symbols_ref if reference else bitpack.unpack_symbols
        return f(payload, int(bits), n)
    buf = np.frombuffer(payload, dtype=np.uint8)
    need = n * STREAM_DTYPES[dtype].itemsize
    if buf.size != need:
        raise CorruptionError(f"raw {dtype} stream of {n} elements needs {need} bytes, "
                              f"payload has {buf.size}")
    return buf.view(DISK_DTYPES[dtype]).astype(STREAM_DTYPES[dtype], copy=True)


# ---------------------------------------------------------------- stages

def _enc_raw(values, dtype, bits, zstd_level):
    return _raw_form(values, dtype, bits)


def _enc_huffman(values, dtype, bits, zstd_level):
    return huffman.encode_huffman(values, _alphabet_bits(bits))


def _enc_zstd(values, dtype, bits, zstd_level):
    return zstd_stage.compress(_raw_form(values, dtype, bits), zstd_level)


def _dec_raw(payload, dtype, bits, n, reference):
    return _decode_raw(payload, dtype, bits, n, reference)


def _dec_huffman(payload, dtype, bits, n, reference):
    ab = _alphabet_bits(bits)
    if reference:
        return huffman.decode_huffman_ref(payload, ab, n)
    return huffman_numba.decode_huffman(payload, ab, n)


def _dec_zstd(payload, dtype, bits, n, reference):
    raw = zstd_stage.decompress(payload, encoded_raw_size(dtype, bits, n))
    return _decode_raw(raw, dtype, bits, n, reference)


class Stage:
    """One entropy stage: encoder, decoder and the dtypes it applies to."""

    def __init__(self, name: str, encode: Callable, decode: Callable, dtypes: frozenset) -> None:
        self.name = name
        self.encode = encode
        self.decode = decode
        self.dtypes = dtypes

    def applies(self, dtype: str) -> bool:
        return dtype in self.dtypes

    def __repr__(self) -> str:
        return f"Stage({self.name!r})"


REGISTRY: dict[str, Stage] = {
    "raw": Stage("raw", _enc_raw, _dec_raw, frozenset(STREAM_DTYPES)),
    "huffman": Stage("huffman", _enc_huffman, _dec_huffman, frozenset({"u8"})),
    "zstd": Stage("zstd", _enc_zstd, _dec_zstd, frozenset(STREAM_DTYPES)),
}


# ---------------------------------------------------------------- public API

def encode_stream(arr: np.ndarray, dtype: str, bits: int | None, entropy: str, *,
                  zstd_level: int | None = None) -> tuple[str, bytes]:
    """Encode a 1-D array as one stream payload; returns (stage used, payload).

    ``entropy`` is a stage name or ``"auto"`` (smallest payload of every
    applicable stage; ties broken raw < huffman < zstd).  Deterministic.
    """
    _check_desc(dtype, bits, EncodeError)
    if entropy != "auto" and entropy not in REGISTRY:
        raise EncodeError(f"unknown entropy stage {entropy!r} (known: {list(STAGES)} or 'auto')")
    if entropy != "auto" and not REGISTRY[entropy].applies(dtype):
        raise EncodeError(f"entropy stage {entropy!r} does not apply to dtype {dtype!r}")
    values = _coerce(arr, dtype, bits)
    names = [s for s in STAGES if REGISTRY[s].applies(dtype)] if entropy == "auto" else [entropy]
    best: tuple[str, bytes] | None = None
    for name in names:
        payload = REGISTRY[name].encode(values, dtype, bits, zstd_level)
        if best is None or len(payload) < len(best[1]):
            best = (name, payload)
    assert best is not None
    return best


def decode_stream(payload: bytes | memoryview, entropy: str, dtype: str, bits: int | None, n: int,
                  *, reference: bool = False) -> np.ndarray:
    """Decode a stream payload into a new native-endian array of ``n`` elements.

    ``reference=True`` uses the plain numpy/python reference decoders.
    Raises only CzError subclasses on bad input.
    """
    if not isinstance(entropy, str) or entropy not in REGISTRY:
        raise UnsupportedError(f"unknown entropy stage {entropy!r}")
    _check_desc(dtype, bits, FormatError)
    stage = REGISTRY[entropy]
    if not stage.applies(dtype):
        raise UnsupportedError(f"entropy stage {entropy!r} is not defined for dtype {dtype!r}")
    if not _is_int(n) or n < 0:
        raise LimitError(f"invalid element count {n!r}")
    n = int(n)
    if n > MAX_STREAM_ELEMENTS:
        raise LimitError(f"stream of {n} elements exceeds the limit {MAX_STREAM_ELEMENTS}")
    try:
        mv = memoryview(payload)
    except TypeError:
        raise EncodeError(f"payload must be bytes-like, got {type(payload).__name__}") from None
    if mv.ndim != 1 or mv.itemsize != 1:
        mv = mv.cast("B")
    try:
        out = stage.decode(mv, dtype, bits, n, reference)
    except CzError:
        raise
    except (ValueError, IndexError, OverflowError, TypeError, MemoryError) as e:  # defensive
        raise CorruptionError(f"invalid {entropy} payload: {e}") from None
    if out.shape != (n,):  # pragma: no cover - decoders guarantee this
        raise CorruptionError(f"{entropy} payload decoded to {out.size} elements, expected {n}")
    return out
