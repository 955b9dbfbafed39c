"""LSB-first packing of 1..8-bit symbols (spec: "Entropy stage", "Bit-packed symbol streams").

Symbol ``i`` occupies stream bits ``[i*bits, (i+1)*bits)``; stream bit ``j`` is
bit ``j % 8`` (LSB = bit 0) of byte ``j // 8``; the bits of a symbol are laid
down least-significant first.  Pad bits after the last symbol are zero.

``pack_symbols`` and ``unpack_symbols_ref`` are the numpy reference;
``unpack_symbols`` is the numba fast path.  Both unpackers validate the payload
identically (exact length, zero pad bits) and give identical output.
"""

from __future__ import annotations

import numba
import numpy as np

from czmodel.errors import CorruptionError, EncodeError


def packed_size(n: int, bits: int) -> int:
    """Bytes of ``n`` packed ``bits``-bit symbols: ceil(n*bits/8)."""
    return (n * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not isinstance(bits, (int, np.integer)) or isinstance(bits, bool) or not 1 <= bits <= 8:
        raise EncodeError(f"symbol width must be 1..8 bits, got {bits!r}")


def pack_symbols(sym: np.ndarray, bits: int) -> bytes:
    """Pack uint8 symbols (each < 2**bits, checked) LSB-first; reference encoder."""
    _check_bits(bits)
    sym = np.ascontiguousarray(sym, dtype=np.uint8).reshape(-1)
    if sym.size and int(sym.max()) >> bits:
        raise EncodeError(f"symbol value {int(sym.max())} does not fit in {bits} bits")
    if bits == 8:
        return sym.tobytes()
    # (n, 8) little-endian bit matrix; keep the low `bits` columns; flatten; pack.
    bitmat = np.unpackbits(sym[:, None], axis=1, bitorder="little")[:, :bits]
    return np.packbits(bitmat.reshape(-1), bitorder="little").tobytes()


def _validate(data: np.ndarray, bits: int, n: int) -> None:
    """Exact length and zero pad bits (shared by both unpackers)."""
    need = packed_size(n, bits)
    if data.size != need:
        raise CorruptionError(f"bit-packed stream of {n} x {bits}-bit symbols needs {need} "
                              f"bytes, payload has {data.size}")
    used = (n * bits) % 8
    if used and int(data[-1]) >> used:
        raise CorruptionError("nonzero pad bits after the last packed symbol")


def unpack_symbols_ref(data, bits: int, n: int) -> np.ndarray:
    """Reference unpacker (numpy): bytes -> n uint8 symbols."""
    _check_bits(bits)
    buf = np.frombuffer(data, dtype=np.uint8)
    _validate(buf, bits, n)
    if bits == 8:
        return buf.copy()
    if n == 0:
        return np.zeros(0, np.uint8)
    allbits = np.unpackbits(buf, bitorder="little")[: n * bits].reshape(n, bits)
    full = np.zeros((n, 8), np.uint8)
    full[:, :bits] = allbits
    return np.packbits(full, axis=1, bitorder="little").reshape(n)


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _unpack_kernel(data, bits, n, out):  # pragma: no cover - jitted
    # Caller guarantees data.size == ceil(n*bits/8) and out.size == n.
    mask = (1 << bits) - 1
    ngroups = n // 8                      # a group = 8 symbols = `bits` bytes
    for g in range(ngroups):
        base = g * bits
        v = np.uint64(0)
        for k in range(bits):
            v |= np.uint64(data[base + k]) << np.uint64(8 * k)
        o = g * 8
        for j in range(8):
            out[o + j] = np.uint8((v >> np.uint64(j * bits)) & np.uint64(mask))
    rem = n - ngroups * 8
    if rem:
        base = ngroups * bits
        v = np.uint64(0)
        nb = data.size - base             # == ceil(rem*bits/8) <= bits
        for k in range(nb):
            v |= np.uint64(data[base + k]) << np.uint64(8 * k)
        o = ngroups * 8
        for j in range(rem):
            out[o + j] = np.uint8((v >> np.uint64(j * bits)) & np.uint64(mask))


def unpack_symbols(data, bits: int, n: int) -> np.ndarray:
    """Fast unpacker (numba); identical output and errors to ``unpack_symbols_ref``."""
    _check_bits(bits)
    buf = np.frombuffer(data, dtype=np.uint8)
    buf.flags.writeable = False        # one numba specialisation for bytes and bytearray
    _validate(buf, bits, n)
    if bits == 8:
        return buf.copy()
    out = np.empty(n, np.uint8)
    if n:
        _unpack_kernel(buf, bits, n, out)
    return out
