"""Fast table-driven Huffman decoder (numba); output identical to ``decode_huffman_ref``.

Decoding uses a multi-symbol table indexed by the next ``L_MAX`` (=12) stream
bits: one lookup emits up to 4 symbols whose codes together fit in 12 bits.
One unaligned 64-bit load (>= 57 valid bits) feeds 4 lookups (<= 48 bits).
Entry layout (uint64): bits 0..31 = up to four symbols (8 bits each, first
symbol lowest), bits 32..39 = bits consumed, bits 40..47 = symbol count;
entry 0 = no valid code starts with these bits (single-symbol alphabets).

Safety on hostile input: every payload is first validated by
``parse_huffman`` (complete code, chunk table inside the payload, chunk sizes
plausible).  Inside the kernel the fast path runs only while an 8-byte load
stays inside the data buffer and >= 16 output slots remain in the chunk;
otherwise a bounds-checked one-symbol-at-a-time path runs (bytes beyond the
buffer read as zero).  After every chunk the consumed bit count must match the
chunk's byte size exactly and the pad bits must be zero.  Errors are returned
as a negative code and raised as CorruptionError in Python.
"""

from __future__ import annotations

import numba
import numpy as np

from czmodel.errors import CorruptionError

from .huffman import L_MAX, canonical_codes, parse_huffman, reverse_bits

TABLE_BITS = L_MAX
TABLE_SIZE = 1 << TABLE_BITS
MAX_PER_LOOKUP = 4


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _tables_kernel(lengths, rc, single, multi):  # pragma: no cover - jitted
    for s in range(lengths.size):
        ln = lengths[s]
        if ln:
            for idx in range(rc[s], TABLE_SIZE, 1 << ln):
                single[idx] = np.uint16(s | (ln << 8))
    for idx in range(TABLE_SIZE):
        e = np.int64(single[idx])
        if e == 0:
            multi[idx] = 0
            continue
        used = e >> 8
        syms = e & 255
        cnt = 1
        while cnt < MAX_PER_LOOKUP:
            e2 = np.int64(single[idx >> used])
            l2 = e2 >> 8
            if e2 == 0 or used + l2 > TABLE_BITS:
                break
            syms |= (e2 & 255) << (8 * cnt)
            used += l2
            cnt += 1
        multi[idx] = np.uint64(syms | (used << 32) | (cnt << 40))


def build_tables(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(single, multi) decode tables (numba); identical to ``build_tables_ref``."""
    lengths = np.ascontiguousarray(lengths, dtype=np.int64)
    rc = reverse_bits(canonical_codes(lengths), lengths).astype(np.int64)
    single = np.zeros(TABLE_SIZE, np.uint16)
    multi = np.zeros(TABLE_SIZE, np.uint64)
    _tables_kernel(lengths, rc, single, multi)
    return single, multi


def build_tables_ref(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(single, multi) decode tables for a validated length table (numpy reference).

    single[idx] = symbol | length << 8 (0 = invalid); multi as described above.
    """
    lengths = np.asarray(lengths, dtype=np.int64)
    rc = reverse_bits(canonical_codes(lengths), lengths).astype(np.int64)
    s_sym = np.zeros(TABLE_SIZE, np.int64)
    s_len = np.zeros(TABLE_SIZE, np.int64)
    for s in np.nonzero(lengths)[0]:
        ln = int(lengths[s])
        idx = int(rc[s]) + (np.arange(1 << (TABLE_BITS - ln), dtype=np.int64) << ln)
        s_sym[idx] = s
        s_len[idx] = ln
    single = (s_sym | (s_len << 8)).astype(np.uint16)
    single[s_len == 0] = 0
    idx = np.arange(TABLE_SIZE, dtype=np.int64)
    valid = s_len[idx] > 0
    used = s_len.copy()
    syms = s_sym.copy()
    cnt = valid.astype(np.int64)
    for j in range(1, MAX_PER_LOOKUP):
        nxt = idx >> used
        ln = s_len[nxt]
        ok = valid & (cnt == j) & (ln > 0) & (used + ln <= TABLE_BITS)
        syms = np.where(ok, syms | (s_sym[nxt] << (8 * j)), syms)
        used = np.where(ok, used + ln, used)
        cnt += ok
    multi = (syms | (used << 32) | (cnt << 40)).astype(np.uint64)
    multi[~valid] = 0
    return single, multi


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _load64(data, p):  # pragma: no cover - jitted; caller guarantees p + 8 <= data.size
    u = np.uintp(p)
    return (np.uint64(data[u]) | (np.uint64(data[u + np.uintp(1)]) << np.uint64(8))
            | (np.uint64(data[u + np.uintp(2)]) << np.uint64(16))
            | (np.uint64(data[u + np.uintp(3)]) << np.uint64(24))
            | (np.uint64(data[u + np.uintp(4)]) << np.uint64(32))
            | (np.uint64(data[u + np.uintp(5)]) << np.uint64(40))
            | (np.uint64(data[u + np.uintp(6)]) << np.uint64(48))
            | (np.uint64(data[u + np.uintp(7)]) << np.uint64(56)))


@numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")
def _round(data, pos, o, multi, out):  # pragma: no cover - jitted
    """4 multi-symbol lookups from one 64-bit load.  Caller guarantees
    (pos >> 3) + 8 <= data.size and >= 16 free output slots at o."""
    mask = np.uint64(TABLE_SIZE - 1)
    w = _load64(data, pos >> 3) >> np.uint64(pos & 7)
    used = np.uint64(0)
    for _ in range(MAX_PER_LOOKUP):
        e = multi[np.uintp(w & mask)]
        if e == 0:
            return pos, o, False
        uo = np.uintp(o)
        out[uo] = np.uint8(e & np.uint64(255))
        out[uo + np.uintp(1)] = np.uint8((e >> np.uint64(8)) & np.uint64(255))
        out[uo + np.uintp(2)] = np.uint8((e >> np.uint64(16)) & np.uint64(255))
        out[uo + np.uintp(3)] = np.uint8((e >> np.uint64(24)) & np.uint64(255))
        nb = (e >> np.uint64(32)) & np.uint64(255)
        o += np.int64(e >> np.uint64(40))
        w >>= nb
        used += nb
    return pos + np.int64(used), o, True


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _finish_chunk(data, pos, o, oend, end, single, multi, out):  # pragma: no cover - jitted
    """Decode the rest of one chunk and check its end; True when valid."""
    nbytes = data.size
    mask = np.uint64(TABLE_SIZE - 1)
    ok = True
    while ok and oend - o >= 16 and (pos >> 3) + 8 <= nbytes:
        pos, o, ok = _round(data, pos, o, multi, out)
    if not ok:
        return False
    # safe path: one symbol at a time, bytes past the buffer read as 0
    while o < oend:
        p = pos >> 3
        w = np.uint64(0)
        for i in range(3):
            if p + i < nbytes:
                w |= np.uint64(data[p + i]) << np.uint64(8 * i)
        w >>= np.uint64(pos & 7)
        e = single[np.uintp(w & mask)]
        if e == 0:
            return False
        out[o] = np.uint8(e & 255)
        o += 1
        pos += np.int64(e >> 8)
    # exact size and zero pad bits
    if (pos + 7) >> 3 != end:
        return False
    r = pos & 7
    if r and (data[end - 1] >> r) != 0:
        return False
    return True


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _decode_kernel(data, ends, n, chunk, single, multi, out):  # pragma: no cover - jitted
    """Decode all chunks, two at a time interleaved (independent dependency
    chains).  Returns 0, or -(k+1) for a bad chunk k."""
    nbytes = data.size
    nchunks = ends.size
    for k in range(0, nchunks, 2):
        sa = 0 if k == 0 else ends[k - 1]
        pa = sa * 8
        oa = k * chunk
        ea = min(oa + chunk, n)
        if k + 1 < nchunks:
            pb = ends[k] * 8
            ob = (k + 1) * chunk
            eb = min(ob + chunk, n)
            oka = True
            okb = True
            while (oka and okb and ea - oa >= 16 and eb - ob >= 16
                   and (pa >> 3) + 8 <= nbytes and (pb >> 3) + 8 <= nbytes):
                pa, oa, oka = _round(data, pa, oa, multi, out)
                pb, ob, okb = _round(data, pb, ob, multi, out)
            if not oka or not _finish_chunk(data, pa, oa, ea, ends[k], single, multi, out):
                return -(k + 1)
            if not okb or not _finish_chunk(data, pb, ob, eb, ends[k + 1], single, multi, out):
                return -(k + 2)
        elif not _finish_chunk(data, pa, oa, ea, ends[k], single, multi, out):
            return -(k + 1)
    return 0


def decode_huffman(payload, alphabet_bits: int, n: int) -> np.ndarray:
    """Fast decoder: payload -> n uint8 symbols (CorruptionError on any bad payload)."""
    lay = parse_huffman(payload, alphabet_bits, n)
    out = np.empty(n, np.uint8)
    if n == 0:
        return out
    single, multi = build_tables(lay.lengths)
    rc = _decode_kernel(lay.data, lay.ends, n, 1 << lay.chunk_log2, single, multi, out)
    if rc:
        raise CorruptionError(f"invalid Huffman data in chunk {-rc - 1}")
    return out


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _encode_kernel(sym, ln, cd, chunk, out, ends):  # pragma: no cover - jitted
    """Sequential LSB-first bit writer; each chunk starts byte aligned.
    ``out`` must hold >= ceil(n*L_MAX/8) + nchunks bytes.  Returns bytes used."""
    n = sym.size
    bp = 0
    for k in range(ends.size):
        acc = np.uint64(0)
        nacc = np.uint64(0)
        for i in range(k * chunk, min(n, (k + 1) * chunk)):
            s = sym[i]
            acc |= np.uint64(cd[s]) << nacc
            nacc += np.uint64(ln[s])
            if nacc >= 32:
                out[bp] = np.uint8(acc & np.uint64(255))
                out[bp + 1] = np.uint8((acc >> np.uint64(8)) & np.uint64(255))
                out[bp + 2] = np.uint8((acc >> np.uint64(16)) & np.uint64(255))
                out[bp + 3] = np.uint8((acc >> np.uint64(24)) & np.uint64(255))
                bp += 4
                acc >>= np.uint64(32)
                nacc -= np.uint64(32)
        while nacc > 0:
            out[bp] = np.uint8(acc & np.uint64(255))
            bp += 1
            acc >>= np.uint64(8)
            nacc = nacc - np.uint64(8) if nacc > 8 else np.uint64(0)
        ends[k] = bp
    return bp


def encode_chunks(sym: np.ndarray, lengths: np.ndarray, rcodes: np.ndarray,
                  chunk_log2: int) -> tuple[np.ndarray, bytes]:
    """Fast chunk encoder: (chunk end offsets u64, chunk data); same bytes as
    the numpy encoder in ``huffman``."""
    n = sym.size
    c = 1 << chunk_log2
    k = -(-n // c)
    ln = np.ascontiguousarray(lengths, dtype=np.uint8)
    cd = np.ascontiguousarray(rcodes, dtype=np.uint32)
    out = np.empty((n * L_MAX + 7) // 8 + k + 8, np.uint8)
    ends = np.zeros(k, np.uint64)
    used = _encode_kernel(np.ascontiguousarray(sym, dtype=np.uint8), ln, cd, c, out, ends)
    return ends, out[:used].tobytes()
