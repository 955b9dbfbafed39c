"""Write the seed corpora of the libFuzzer targets (run by run.sh; also writes the model of
the ThreadSanitizer test).

    python fuzz/seeds.py OUTDIR          # OUTDIR/{open,msgpack,entropy,run}/...
    python fuzz/seeds.py --model PATH    # only the small MLP used by `make tsan`

open/     every spec/vectors/valid/*.cz
msgpack/  the header bytes of each of them
entropy/  one input per stream of each of them, in fuzz_entropy.c's layout:
          [stage u8][dtype u8][bits u8][n u32 LE] + payload
run/      small models with a graph (compressed Linear / Conv weights, a few elementwise
          ops), plus the valid vectors that have a graph
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import czmodel  # noqa: E402
from czmodel.codecs import affine, codebook, dense, relidx, sum_, svd, tucker2  # noqa: E402
from czmodel.format import header as H  # noqa: E402
from czmodel.format.writer import build_file  # noqa: E402

VALID = ROOT / "spec" / "vectors" / "valid"
STAGES = {"raw": 0, "huffman": 1, "zstd": 2}
SDTYPES = ["u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f16", "bf16", "f32", "f64"]


def _split(data: bytes) -> tuple[dict, bytes]:
    hlen = struct.unpack_from("<I", data, 12)[0]
    hb = data[24:24 + hlen]
    return H.unpack_header(hb), hb


def _streams(node: dict):
    yield from node["streams"].values()
    for child in node["children"].values():
        yield from _streams(child)


def _f(*shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 0.5).astype(np.float32)


def mlp() -> bytes:
    """x [N, 16] -> Linear(relidx+codebook) -> Relu -> Linear(affine int4) -> Add(bias)
    -> Gelu -> Linear(svd) -> Softmax."""
    rng = np.random.default_rng(1)
    m = rng.random((32, 16)) < 0.3
    idx = rng.integers(0, 8, int(m.sum()))
    w1n = relidx(m, codebook(idx, np.linspace(-1, 1, 8).astype(np.float32), bits=3),
                 gap_bits=3)
    w1n.set_entropy({"gaps": "huffman"})
    q = rng.integers(-8, 8, (24, 32))
    w2 = affine(q, np.full(24, 0.05, np.float32), bits=4, axis=0)
    w3 = svd(dense(_f(10, 3, seed=3)), dense(_f(3, 24, seed=4)), (10, 24))
    graph = {"opset": 1, "inputs": [{"name": "x", "dtype": "f32", "shape": ["N", 16]}],
             "outputs": [{"name": "y", "dtype": "f32", "shape": ["N", 10]}],
             "nodes": [
                 {"op": "Linear", "name": "l1", "inputs": ["x", "w1"], "outputs": ["h1"],
                  "attrs": {}},
                 {"op": "Relu", "name": "r1", "inputs": ["h1"], "outputs": ["a1"], "attrs": {}},
                 {"op": "Linear", "name": "l2", "inputs": ["a1", "w2"], "outputs": ["h2"],
                  "attrs": {}},
                 {"op": "Add", "name": "b2", "inputs": ["h2", "b"], "outputs": ["h2b"],
                  "attrs": {}},
                 {"op": "Gelu", "name": "g2", "inputs": ["h2b"], "outputs": ["a2"], "attrs": {}},
                 {"op": "Linear", "name": "l3", "inputs": ["a2", "w3"], "outputs": ["h3"],
                  "attrs": {}},
                 {"op": "Softmax", "name": "s", "inputs": ["h3"], "outputs": ["y"],
                  "attrs": {"axis": -1}}]}
    return build_file({"w1": w1n, "w2": w2, "w3": w3, "b": dense(_f(24, seed=5))},
                      graph=graph)


def convnet() -> bytes:
    """x [1, 3, 8, 8] -> Conv(tucker2) -> Relu -> Conv(sum(affine, relidx)) -> Flatten."""
    rng = np.random.default_rng(6)
    t = tucker2(dense(_f(2, 3, seed=7)), dense(_f(2, 2, 3, 3, seed=8)), dense(_f(4, 2, seed=9)),
                (4, 3, 3, 3))
    q = rng.integers(-8, 8, (6, 36))
    m = rng.random((6, 36)) < 0.1
    s = sum_(affine(q, np.full(6, 0.1, np.float32), bits=4, axis=0),
             relidx(m, dense(_f(int(m.sum()), seed=10)), gap_bits=4))
    graph = {"opset": 1, "inputs": [{"name": "x", "dtype": "f32", "shape": [1, 3, 8, 8]}],
             "outputs": [{"name": "y", "dtype": "f32", "shape": [1, "K"]}],
             "nodes": [
                 {"op": "Conv", "name": "c1", "inputs": ["x", "k1"], "outputs": ["h1"],
                  "attrs": {"pads": [1, 1, 1, 1]}},
                 {"op": "Relu", "name": "r1", "inputs": ["h1"], "outputs": ["a1"], "attrs": {}},
                 {"op": "Conv", "name": "c2", "inputs": ["a1", "k2"], "outputs": ["h2"],
                  "attrs": {"strides": [2, 2]}},
                 {"op": "Flatten", "name": "f", "inputs": ["h2"], "outputs": ["y"],
                  "attrs": {"axis": 1}}]}
    # the terms were built as (6, 36) matrices: view the sum as the (6, 4, 3, 3) kernel
    s.shape = (6, 4, 3, 3)
    for child in s.children.values():
        child.shape = (6, 4, 3, 3)
    return build_file({"k1": t, "k2": s}, graph=graph)


def main(argv: list[str]) -> int:
    if argv[:1] == ["--model"]:
        Path(argv[1]).write_bytes(mlp())
        return 0
    out = Path(argv[0])
    for sub in ("open", "msgpack", "entropy", "run"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    for p in sorted(VALID.glob("*.cz")):
        data = p.read_bytes()
        (out / "open" / p.name).write_bytes(data)
        hdr, hb = _split(data)
        (out / "msgpack" / (p.stem + ".mp")).write_bytes(hb)
        sections = hdr["sections"]
        for t in hdr["tensors"]:
            for k, s in enumerate(_streams(t["enc"])):
                off, n, _ = sections[s["sec"]]
                prm = struct.pack("<BBBI", STAGES[s["entropy"]], SDTYPES.index(s["dtype"]),
                                  s["bits"] or 0, s["n"])
                (out / "entropy" / f"{p.stem}.{t['name']}.{k}").write_bytes(
                    prm + data[off:off + n])
        if hdr.get("graph"):
            (out / "run" / p.name).write_bytes(data)
    for name, fn in (("mlp", mlp), ("convnet", convnet)):
        data = fn()
        with czmodel.open(data) as f:
            f.verify()
        (out / "run" / f"{name}.cz").write_bytes(data)
        (out / "open" / f"{name}.cz").write_bytes(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
