"""Canonical, length-limited, chunked Huffman coding (spec: "Entropy stage", "Huffman stage").

This module holds the normative pieces in plain Python/numpy:

* ``build_code_lengths`` - optimal length-limited code lengths (package-merge),
* ``canonical_codes``    - canonical code assignment,
* ``encode_huffman``     - the encoder (vectorised numpy),
* ``parse_huffman``      - payload parsing + every structural validity check,
* ``decode_huffman_ref`` - the bit-by-bit canonical REFERENCE decoder (oracle).

The fast table-driven decoder lives in ``huffman_numba``; it shares
``parse_huffman`` and must produce exactly the reference output.

Payload (all integers little-endian)::

    chunk_log2      u8                       C = 2**chunk_log2 symbols per chunk, 8..24
    code_lengths    ceil(A/2) bytes          4-bit length per symbol, low nibble first
    chunk_ends      K x u64                  K = ceil(n / C); end byte offset of each chunk
    chunk_data      chunk_ends[K-1] bytes    chunks back to back, each byte aligned

Bit order is LSB-first: stream bit j of a chunk is bit (j % 8) of the chunk's
byte j // 8; a code is sent most-significant code bit first, so the next
L_MAX stream bits, read as a little-endian integer, hold the code bit-reversed
in their low bits (deflate-style; a table lookup is ``bits & (2**L_MAX - 1)``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from czmodel.errors import CorruptionError, EncodeError, LimitError

L_MAX = 12                 # longest code length (hard limit)
CHUNK_LOG2_MIN = 8
CHUNK_LOG2_MAX = 24
DEFAULT_CHUNK_LOG2 = 16    # 65536 symbols per chunk
MAX_STREAM_ELEMENTS = 1 << 34


# ---------------------------------------------------------------- code construction

def build_code_lengths(freqs, limit: int = L_MAX) -> np.ndarray:
    """Optimal code lengths with max length ``limit`` (package-merge / coin collector).

    ``freqs`` are non-negative integer counts per symbol.  Symbols of count 0
    get length 0.  A single used symbol gets length 1 (code "0").  Ties are
    broken by symbol index, so the result is deterministic.
    """
    freqs = [int(f) for f in np.asarray(freqs).reshape(-1)]
    a = len(freqs)
    lengths = np.zeros(a, np.uint8)
    used = sorted((f, s) for s, f in enumerate(freqs) if f > 0)
    if not used:
        return lengths
    if len(used) == 1:
        lengths[used[0][1]] = 1
        return lengths
    if len(used) > (1 << limit):
        raise EncodeError(f"{len(used)} symbols cannot be coded with lengths <= {limit}")
    m = len(used)
    # item = (weight, counts) where counts[i] = times used-symbol i is inside the item
    leaves = []
    for i, (f, _s) in enumerate(used):
        c = np.zeros(m, np.int32)
        c[i] = 1
        leaves.append((f, c))
    current = leaves
    for _ in range(limit - 1):
        packages = [(current[i][0] + current[i + 1][0], current[i][1] + current[i + 1][1])
                    for i in range(0, len(current) - 1, 2)]
        # stable sort: on equal weight, leaves (listed first) precede packages
        current = sorted(leaves + packages, key=lambda it: it[0])
    total = np.zeros(m, np.int64)
    for _w, c in current[: 2 * m - 2]:
        total += c
    for i, (_f, s) in enumerate(used):
        lengths[s] = total[i]
    return lengths


def canonical_codes(lengths: np.ndarray) -> np.ndarray:
    """Canonical codes (MSB-first integer values) for the given lengths.

    Symbols are ordered by (length, symbol index); the first code of length l
    is ``(first[l-1] + count[l-1]) << 1`` with ``first[0] = count[0] = 0``.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    codes = np.zeros(lengths.size, np.uint32)
    count = np.bincount(lengths[lengths > 0], minlength=L_MAX + 1)
    nxt = np.zeros(L_MAX + 2, np.int64)
    code = 0
    for ln in range(1, L_MAX + 1):
        code = (code + int(count[ln - 1] if ln > 1 else 0)) << 1
        nxt[ln] = code
    for s in range(lengths.size):
        ln = int(lengths[s])
        if ln:
            codes[s] = nxt[ln]
            nxt[ln] += 1
    return codes


def reverse_bits(codes: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Bit-reverse each code within its own length (for LSB-first emission)."""
    codes = np.asarray(codes, dtype=np.uint32)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.zeros_like(codes)
    for b in range(L_MAX):
        bit = (codes >> np.uint32(b)) & np.uint32(1)
        dst = lengths - 1 - b
        ok = dst >= 0
        out[ok] |= (bit[ok] << dst[ok].astype(np.uint32)).astype(np.uint32)
    return out


def validate_lengths(lengths: np.ndarray, n: int) -> None:
    """Raise CorruptionError unless ``lengths`` is a complete prefix code (or the
    single-symbol code) appropriate for a stream of ``n`` symbols."""
    lengths = np.asarray(lengths, dtype=np.int64)
    if lengths.size and int(lengths.max()) > L_MAX:
        raise CorruptionError(f"Huffman code length {int(lengths.max())} exceeds limit {L_MAX}")
    nz = lengths[lengths > 0]
    if n == 0:
        if nz.size:
            raise CorruptionError("empty Huffman stream must have all code lengths zero")
        return
    if nz.size == 0:
        raise CorruptionError("Huffman stream of nonzero length has no coded symbol")
    if nz.size == 1:
        if int(nz[0]) != 1:
            raise CorruptionError("single-symbol Huffman code must have length 1")
        return
    kraft = int(np.sum(np.left_shift(1, L_MAX - nz)))
    if kraft > (1 << L_MAX):
        raise CorruptionError("over-subscribed Huffman code lengths")
    if kraft < (1 << L_MAX):
        raise CorruptionError("incomplete Huffman code lengths")


# ---------------------------------------------------------------- payload layout

@dataclass
class HuffmanLayout:
    """A parsed and structurally validated Huffman payload."""

    lengths: np.ndarray        # uint8[A]
    chunk_log2: int
    ends: np.ndarray           # int64[K] chunk end offsets, relative to data
    data: np.ndarray           # uint8 view of the chunk data region


def _nibble_bytes(alphabet_bits: int) -> int:
    return ((1 << alphabet_bits) + 1) // 2


def header_size(alphabet_bits: int, n: int, chunk_log2: int = DEFAULT_CHUNK_LOG2) -> int:
    k = -(-n // (1 << chunk_log2))
    return 1 + _nibble_bytes(alphabet_bits) + 8 * k


def parse_huffman(payload, alphabet_bits: int, n: int) -> HuffmanLayout:
    """Parse and validate everything that can be checked without decoding."""
    buf = np.frombuffer(payload, dtype=np.uint8)
    buf.flags.writeable = False        # one numba specialisation for bytes and bytearray
    size = buf.size
    if n < 0 or n > MAX_STREAM_ELEMENTS:
        raise LimitError(f"stream of {n} elements exceeds the limit {MAX_STREAM_ELEMENTS}")
    if n > 8 * size:
        raise LimitError(f"{n} Huffman symbols cannot fit in a {size}-byte payload")
    a = 1 << alphabet_bits
    nib = _nibble_bytes(alphabet_bits)
    if size < 1 + nib:
        raise CorruptionError("Huffman payload truncated in its header")
    chunk_log2 = int(buf[0])
    if not CHUNK_LOG2_MIN <= chunk_log2 <= CHUNK_LOG2_MAX:
        raise CorruptionError(
            f"Huffman chunk_log2 {chunk_log2} outside {CHUNK_LOG2_MIN}..{CHUNK_LOG2_MAX}")
    packed = buf[1:1 + nib]
    lengths = np.empty(2 * nib, np.uint8)
    lengths[0::2] = packed & 15
    lengths[1::2] = packed >> 4
    lengths = lengths[:a]          # a is a power of two >= 2: nibbles == alphabet
    validate_lengths(lengths, n)
    c = 1 << chunk_log2
    k = -(-n // c)
    tbl = 1 + nib
    data_off = tbl + 8 * k
    if size < data_off:
        raise CorruptionError("Huffman payload truncated in its chunk table")
    ends_u = buf[tbl:data_off].view("<u8")
    dlen = size - data_off
    if k:
        if bool((ends_u > np.uint64(dlen)).any()):
            raise CorruptionError("Huffman chunk offset points outside the payload")
        ends = ends_u.astype(np.int64)
        if int(ends[-1]) != dlen:
            raise CorruptionError(
                f"Huffman chunk data is {dlen} bytes but the chunk table ends at {int(ends[-1])}")
        sizes = np.diff(ends, prepend=0)
        counts = np.full(k, c, np.int64)
        counts[-1] = n - (k - 1) * c
        lo = (counts + 7) // 8                 # every symbol costs >= 1 bit
        hi = (counts * L_MAX + 7) // 8         # and <= L_MAX bits
        if bool(((sizes < lo) | (sizes > hi)).any()):
            raise CorruptionError("Huffman chunk size inconsistent with its symbol count")
    else:
        ends = np.zeros(0, np.int64)
        if dlen:
            raise CorruptionError("trailing bytes after an empty Huffman stream")
    return HuffmanLayout(lengths, chunk_log2, ends, buf[data_off:])


# ---------------------------------------------------------------- encoder

def encode_huffman(sym: np.ndarray, alphabet_bits: int, *,
                   chunk_log2: int = DEFAULT_CHUNK_LOG2, fast: bool = True) -> bytes:
    """Encode uint8 symbols (each < 2**alphabet_bits) into a Huffman payload.

    ``fast`` selects the numba bit writer; ``fast=False`` the vectorised numpy
    encoder.  Both produce identical bytes.
    """
    if not CHUNK_LOG2_MIN <= chunk_log2 <= CHUNK_LOG2_MAX:
        raise EncodeError(f"chunk_log2 must be {CHUNK_LOG2_MIN}..{CHUNK_LOG2_MAX}")
    sym = np.ascontiguousarray(sym, dtype=np.uint8).reshape(-1)
    a = 1 << alphabet_bits
    n = sym.size
    if n > MAX_STREAM_ELEMENTS:
        raise EncodeError(f"stream of {n} elements exceeds the limit {MAX_STREAM_ELEMENTS}")
    freqs = np.bincount(sym, minlength=a)
    if freqs.size > a:
        raise EncodeError(f"symbol value >= {a} in a {alphabet_bits}-bit Huffman stream")
    lengths = build_code_lengths(freqs)
    rcodes = reverse_bits(canonical_codes(lengths), lengths)
    nib = _nibble_bytes(alphabet_bits)
    lp = np.zeros(2 * nib, np.uint8)
    lp[:a] = lengths
    head = bytes([chunk_log2]) + (lp[0::2] | (lp[1::2] << 4)).astype(np.uint8).tobytes()
    if fast:
        from .huffman_numba import encode_chunks
        ends, data = encode_chunks(sym, lengths, rcodes, chunk_log2)
        return head + ends.astype("<u8").tobytes() + data
    c = 1 << chunk_log2
    k = -(-n // c)
    ends = np.zeros(k, np.uint64)
    parts = []
    total = 0
    block = max(1, (1 << 22) // c) * c      # symbols per vectorised block (whole chunks)
    ln_tab = lengths.astype(np.int64)
    cd_tab = rcodes.astype(np.int64)
    for b0 in range(0, n, block):
        s = sym[b0:b0 + block]
        data, chunk_bytes = _encode_block(s, ln_tab, cd_tab, c)
        kk0 = b0 // c
        ends[kk0:kk0 + chunk_bytes.size] = (total + np.cumsum(chunk_bytes)).astype(np.uint64)
        total += int(chunk_bytes.sum())
        parts.append(data)
    return head + ends.astype("<u8").tobytes() + b"".join(parts)


def _encode_block(s: np.ndarray, ln_tab: np.ndarray, cd_tab: np.ndarray, c: int):
    """Encode whole chunks of ``s``; returns (bytes, per-chunk byte sizes)."""
    ln = ln_tab[s]
    cd = cd_tab[s]
    first = np.arange(0, s.size, c)
    chunk_bits = np.add.reduceat(ln, first)
    chunk_bytes = (chunk_bits + 7) // 8
    chunk_start_bit = 8 * (np.cumsum(chunk_bytes) - chunk_bytes)
    excl = np.cumsum(ln) - ln
    pos = excl - np.repeat(excl[first], np.diff(np.append(first, s.size))) \
        + np.repeat(chunk_start_bit, np.diff(np.append(first, s.size)))
    nbytes = int(chunk_bytes.sum())
    nwords = nbytes // 4 + 2
    # codes never overlap, so summing shifted codes into 32-bit words == OR-ing them
    word = pos >> 5
    v = cd << (pos & 31)                     # < 2**43: exact in float64
    lo = (v & 0xFFFFFFFF).astype(np.float64)
    hi = (v >> 32).astype(np.float64)
    w = np.bincount(word, weights=lo, minlength=nwords)
    w[1:] += np.bincount(word + 1, weights=hi, minlength=nwords + 1)[1:nwords]
    out = w.astype(np.uint64).astype("<u4").tobytes()[:nbytes]
    return out, chunk_bytes


# ---------------------------------------------------------------- reference decoder

def decode_huffman_ref(payload, alphabet_bits: int, n: int) -> np.ndarray:
    """Reference decoder: canonical decoding one bit at a time (slow; the oracle)."""
    lay = parse_huffman(payload, alphabet_bits, n)
    lengths = lay.lengths.astype(np.int64)
    count = np.bincount(lengths[lengths > 0], minlength=L_MAX + 1).tolist()
    order = sorted((int(lengths[s]), s) for s in range(lengths.size) if lengths[s])
    sorted_syms = [s for _l, s in order]
    first = [0] * (L_MAX + 1)
    offset = [0] * (L_MAX + 1)
    code = 0
    off = 0
    for ln in range(1, L_MAX + 1):
        code = (code + (count[ln - 1] if ln > 1 else 0)) << 1
        first[ln] = code
        offset[ln] = off
        off += count[ln]
    out = np.empty(n, np.uint8)
    c = 1 << lay.chunk_log2
    start = 0
    for k in range(lay.ends.size):
        end = int(lay.ends[k])
        bits = np.unpackbits(lay.data[start:end], bitorder="little").tolist()
        nbits = len(bits)
        p = 0
        for i in range(k * c, min(n, (k + 1) * c)):
            code = 0
            ln = 0
            while True:
                if p >= nbits:
                    raise CorruptionError(f"Huffman chunk {k} ends inside a code")
                code = (code << 1) | bits[p]
                p += 1
                ln += 1
                if code - first[ln] < count[ln] and code >= first[ln]:
                    out[i] = sorted_syms[offset[ln] + code - first[ln]]
                    break
                if ln == L_MAX:
                    raise CorruptionError(f"invalid Huffman code in chunk {k}")
        if (p + 7) // 8 != nbits // 8:
            raise CorruptionError(f"Huffman chunk {k} has {nbits // 8 - (p + 7) // 8} unused bytes")
        if any(bits[p:]):
            raise CorruptionError(f"nonzero pad bits at the end of Huffman chunk {k}")
        start = end
    return out
