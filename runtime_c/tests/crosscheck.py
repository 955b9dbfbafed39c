"""Cross-check the C format layer against the Python reader on random files (not run by
`make test`; run by hand after `make`):  python tests/crosscheck.py [N_FILES] [SEED]

Builds random files with the Python writer (every codec, every entropy stage, sizes that
span several Huffman chunks), decodes each tensor with czmodel and with build/libcz.so
(ctypes), and compares bit for bit (svd/tucker2: within 1e-5 relative).
"""

from __future__ import annotations

import ctypes as ct
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from czmodel import codecs as C  # noqa: E402
from czmodel.format.reader import CzFile  # noqa: E402
from czmodel.format.writer import build_file  # noqa: E402

lib = ct.CDLL(str(ROOT / "runtime_c" / "build" / "libcz.so"))


class Info(ct.Structure):
    _fields_ = [("name", ct.c_char_p), ("dtype", ct.c_int), ("ndim", ct.c_int),
                ("shape", ct.c_int64 * 16)]


NP = {1: np.float32, 2: np.float16, 3: np.float64, 4: np.int64, 5: np.int32, 6: np.int16,
      7: np.int8, 8: np.uint8, 9: np.uint16, 10: np.uint32, 11: np.bool_}


def c_read(path: str) -> dict[str, np.ndarray]:
    m = ct.c_void_p()
    err = ct.create_string_buffer(512)
    st = lib.cz_open_file(path.encode(), None, ct.byref(m), err, 512)
    if st:
        raise RuntimeError(f"open: {st} {err.value.decode()}")
    st = lib.cz_verify(m, err, 512)
    if st:
        raise RuntimeError(f"verify: {st} {err.value.decode()}")
    out = {}
    for i in range(lib.cz_tensor_count(m)):
        inf = Info()
        lib.cz_tensor_info(m, i, ct.byref(inf))
        shape = tuple(inf.shape[: inf.ndim])
        a = np.empty(shape, NP[inf.dtype])
        st = lib.cz_tensor_read(m, inf.name, a.ctypes.data_as(ct.c_void_p), ct.c_size_t(a.nbytes), err, 512)
        if st:
            raise RuntimeError(f"read: {st} {err.value.decode()}")
        out[inf.name.decode()] = a
    lib.cz_close(m)
    return out


def rand_tensors(rng: np.random.Generator) -> dict:
    ent = lambda: str(rng.choice(["raw", "huffman", "zstd", "auto"]))  # noqa: E731
    fent = lambda: str(rng.choice(["raw", "zstd", "auto"]))  # noqa: E731
    t = {}
    big = int(rng.choice([1, 7, 300, 70000, 200003]))
    # codebook per tensor, huffman-friendly skew, several chunks when big
    k = int(rng.integers(1, 257))
    idx = np.minimum(rng.geometric(0.3, size=big) - 1, k - 1)
    t["cb"] = C.codebook(idx, rng.standard_normal(k).astype(np.float32), entropy=fent())
    r, c = int(rng.integers(1, 9)), int(rng.integers(1, 40))
    t["cb_ax1"] = C.codebook(rng.integers(0, 5, size=(r, c, 2)), rng.standard_normal((c, 5)),
                             axis=1, entropy=fent())
    t["cb_ax0"] = C.codebook(rng.integers(0, 3, size=(r, c)), rng.standard_normal((r, 3)),
                             axis=0, centroid_dtype="f16", entropy=fent())
    bits = int(rng.integers(2, 9))
    signed = bool(rng.integers(0, 2))
    lo, hi = (-(1 << (bits - 1)), (1 << (bits - 1))) if signed else (0, 1 << bits)
    q = rng.integers(lo, hi, size=(r, c))
    mode = int(rng.integers(0, 4))
    if mode == 0:
        t["aff"] = C.affine(q, np.float32(0.1), rng.integers(lo, hi, size=1), bits=bits, signed=signed, entropy=fent())
    elif mode == 1:
        t["aff"] = C.affine(q, rng.random(r).astype(np.float16), bits=bits, signed=signed, axis=0, entropy=fent())
    elif mode == 2:
        t["aff"] = C.affine(q, rng.random(c), rng.integers(lo, hi, size=c), bits=bits, signed=signed, axis=1, entropy=fent())
    else:
        g = int(rng.integers(1, c + 2))
        n = r * (-(-c // g))
        t["aff"] = C.affine(q, rng.random(n), rng.integers(lo, hi, size=n), bits=bits, signed=signed,
                            group_size=g, entropy=fent())
    mask = rng.random((r * 3, c * 5)) < rng.random()
    nnz = int(mask.sum())
    vals = C.codebook(rng.integers(0, 4, size=nnz), rng.standard_normal(4), entropy=fent()) \
        if rng.integers(0, 2) else C.dense(rng.standard_normal(nnz).astype(np.float32), entropy=fent())
    t["rel"] = C.relidx(mask, vals, gap_bits=int(rng.integers(2, 9)), entropy=fent(),
                        ptr_dtype=str(rng.choice(["u32", "u64"])))
    m_ = int(rng.choice([1, 2, 4, 8]))
    n_ = int(rng.integers(1, m_ + 1))
    nmmask = np.zeros((r, c * m_), bool).reshape(-1, m_)
    for row in nmmask:
        row[rng.choice(m_, n_, replace=False)] = True
    nmmask = nmmask.reshape(r, c * m_)
    t["nm"] = C.nm(nmmask, C.dense(rng.standard_normal(int(nmmask.sum())).astype(np.float16), entropy=fent()),
                   n=n_, m=m_, entropy=fent())
    bm = rng.random((r, c)) < 0.5
    t["blk"] = C.block(bm, C.dense(rng.standard_normal(int(bm.sum()) * 6).astype(np.float32)), bh=2, bw=3,
                       entropy=fent())
    rk = int(rng.integers(0, 4))
    t["svd"] = C.svd(C.dense(rng.standard_normal((r, rk)).astype(np.float32)),
                     C.dense(rng.standard_normal((rk, c)).astype(np.float32)), (r, c))
    o, i_, kh, kw, ri, ro = (int(x) for x in rng.integers(1, 5, size=6))
    t["tk"] = C.tucker2(C.dense(rng.standard_normal((ri, i_)).astype(np.float32)),
                        C.dense(rng.standard_normal((ro, ri, kh, kw)).astype(np.float32)),
                        C.dense(rng.standard_normal((o, ro)).astype(np.float32)), (o, i_, kh, kw))
    t["sum"] = C.sum_(C.dense(rng.standard_normal((r, c)).astype(np.float32)),
                      C.affine(q, np.float32(0.5), bits=bits, signed=signed),
                      C.relidx(rng.random((r, c)) < 0.3, C.dense(np.ones(0, np.float32)) if False else
                               C.dense(rng.standard_normal(0).astype(np.float32))) if False else
                      C.dense(rng.standard_normal((r, c)).astype(np.float64)))
    for dt in ["f64", "f32", "f16", "bf16", "i64", "i32", "i16", "i8", "u8", "u16", "u32"]:
        npdt = {"bf16": np.float32}.get(dt, None)
        a = rng.standard_normal(int(rng.integers(0, 50))) * 100
        if dt in ("f64", "f32", "f16", "bf16"):
            arr = a.astype(npdt or {"f64": np.float64, "f32": np.float32, "f16": np.float16}[dt])
        else:
            arr = a.astype({"i64": np.int64, "i32": np.int32, "i16": np.int16, "i8": np.int8,
                            "u8": np.uint8, "u16": np.uint16, "u32": np.uint32}[dt])
        t["d_" + dt] = C.dense(arr, dt, entropy=str(rng.choice(["raw", "zstd", "auto"])))
    for name, node in t.items():
        if not name.startswith("d_") and rng.integers(0, 2):
            node.set_entropy(ent())
    return t


def main() -> None:
    nfiles = int(sys.argv[1]) if len(sys.argv) > 1 else 30
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    rng = np.random.default_rng(seed)
    ntens = 0
    with tempfile.TemporaryDirectory() as d:
        for f in range(nfiles):
            tensors = rand_tensors(rng)
            dtypes = {"d_bf16": "f32"}
            if rng.integers(0, 2):   # tensor dtype conversions (astype)
                dtypes.update({"cb": "f16", "aff": "f64", "d_i16": "f32", "d_f32": "i32"})
            p = Path(d) / f"r{f}.cz"
            p.write_bytes(build_file(tensors, tensor_dtypes=dtypes))
            with CzFile(str(p)) as py:
                want = {k: py[k] for k in py}
            got = c_read(str(p))
            assert set(got) == set(want), (set(got), set(want))
            for k, w in want.items():
                g = got[k]
                assert g.dtype == w.dtype and g.shape == w.shape, (k, g.dtype, w.dtype, g.shape, w.shape)
                if k in ("svd", "tk"):
                    assert np.allclose(g, w, rtol=1e-5, atol=1e-5), k
                else:
                    assert g.tobytes() == w.tobytes(), (f, k, g.reshape(-1)[:8], w.reshape(-1)[:8])
                ntens += 1
    print(f"crosscheck: {nfiles} random files, {ntens} tensors identical to the Python reader")


if __name__ == "__main__" and not (len(sys.argv) > 1 and sys.argv[1] == "--mutate"):
    main()


def mutate_main(n: int, seed: int) -> None:
    """Flip header bytes (fixing the header CRC) or section bits (fixing the section's CRC
    in the header) of the valid golden vectors and compare the C status class with the Python reader's error class (open or verify)."""
    import struct
    import zlib

    from czmodel.errors import CorruptionError, FormatError, LimitError, UnsupportedError
    from czmodel.format.preamble import refresh_header_crc
    cls = {FormatError: 100, CorruptionError: 200, UnsupportedError: 300, LimitError: 400}
    rng = np.random.default_rng(seed)
    files = sorted((ROOT / "spec" / "vectors" / "valid").glob("*.cz"))
    same = diff = 0
    for it in range(n):
        b = bytearray(files[it % len(files)].read_bytes())
        hlen = struct.unpack_from("<I", b, 12)[0]
        if it % 2 and len(b) > 24 + hlen:   # damage a section, then re-checksum it in the header
            from czmodel.format import header as H
            hd = H.unpack_header(bytes(b[24:24 + hlen]))
            secs = hd["sections"]
            i = int(rng.integers(0, len(secs)))
            off, ln, _ = secs[i]
            if ln == 0:
                continue
            pos = off + int(rng.integers(0, ln))
            b[pos] ^= 1 << int(rng.integers(0, 8))
            secs[i][2] = zlib.crc32(bytes(b[off:off + ln]))
            nh = H.pack_header(hd)
            if len(nh) != hlen:
                continue
            b[24:24 + hlen] = nh
        else:
            for _ in range(int(rng.integers(1, 3))):
                pos = 24 + int(rng.integers(0, hlen))
                b[pos] = int(rng.integers(0, 256)) if rng.integers(0, 2) else b[pos] ^ (1 << int(rng.integers(0, 8)))
        b = bytearray(refresh_header_crc(b))   # CRC-32 of preamble bytes 0-15 + header
        try:
            with CzFile(bytes(b)) as f:
                f.verify()
            py = 0
        except tuple(cls) as e:
            py = cls[type(e)]
        m = ct.c_void_p()
        err = ct.create_string_buffer(512)
        buf = ct.create_string_buffer(bytes(b), len(b))
        st = lib.cz_open_memory(buf, ct.c_size_t(len(b)), None, ct.byref(m), err, 512)
        if st == 0:
            st = lib.cz_verify(m, err, 512)
            lib.cz_close(m)
        c = st // 100 * 100
        if c == py:
            same += 1
        else:
            diff += 1
            if diff <= 20:
                Path(f"/tmp/czdiff_{diff}.cz").write_bytes(bytes(b))
                print(f"DIFF {files[it % len(files)].name}: python {py} C {st} {err.value.decode()}")
    print(f"mutate: {same} same class, {diff} different")


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--mutate":
    mutate_main(int(sys.argv[2]) if len(sys.argv) > 2 else 3000, int(sys.argv[3]) if len(sys.argv) > 3 else 1)
