"""Config -> encoding tree -> file -> arrays, and the Deep Compression report."""

import json

import numpy as np
import pytest

import czmodel
from czmodel.compress.pipeline import compress_tensor, save
from czmodel.errors import EncodeError


def laplace(shape, seed=0):
    return np.random.default_rng(seed).laplace(size=shape).astype(np.float32)


DC = {"default": {"prune": {"sparsity": 0.9}, "quantize": {"method": "kmeans", "bits": 5},
                  "entropy": "huffman"},
      "op_types": {"Conv": {"prune": {"sparsity": 0.65},
                            "quantize": {"method": "kmeans", "bits": 8}}},
      "layers": {"*.bias": None}}


def test_save_open_roundtrip_deep_compression(tmp_path):
    w = laplace((64, 96))
    conv = laplace((8, 4, 3, 3), 1)
    b = np.arange(64, dtype=np.float32)
    rep = save(tmp_path / "m.cz", {"fc.weight": w, "fc.bias": b, "conv.weight": conv}, DC)
    with czmodel.open(tmp_path / "m.cz") as f:
        np.testing.assert_array_equal(f["fc.bias"], b)          # bias left alone: lossless
        wh = f["fc.weight"]
        assert wh.dtype == np.float32 and wh.shape == w.shape
        kept = wh != 0
        assert abs(kept.mean() - 0.1) < 0.01                    # 90% pruned
        assert len(np.unique(wh[kept])) <= 32                  # 5-bit shared weights
        # the kept weights are the largest ones, each near its original value
        assert np.abs(w[kept]).min() >= np.abs(w[~kept]).max() - 1e-6
        assert np.abs(wh[kept] - w[kept]).max() < 0.25 * np.abs(w).max()
        ch = f["conv.weight"]
        assert abs((ch != 0).mean() - 0.35) < 0.02            # op_types override applied
        assert len(np.unique(ch[ch != 0])) <= 256
        assert f.info()[0]["encoding"].startswith("relidx(")
    row = {r.name: r for r in rep.rows}["fc.weight"]
    assert abs(row.kept_pct - 10) < 1
    assert row.rate_pqh > row.rate_pq > 1                       # Huffman helps
    assert rep.totals().weights == w.size + b.size + conv.size
    assert json.loads(rep.to_json())["ratio"] == pytest.approx(rep.ratio)
    assert "| layer |" in rep.to_markdown()
    assert "total" in rep.to_text()


def test_laplace_target_size(tmp_path):
    """Issue 3's target: 1536x384 Laplace, 10% density, 5-bit k-means, Huffman <= 3.0%."""
    w = laplace((1536, 384))
    cfg = {"default": {"prune": {"sparsity": 0.9}, "quantize": {"method": "kmeans", "bits": 5},
                       "entropy": "huffman"}}
    rep = save(tmp_path / "l.cz", {"w": w}, cfg)
    assert rep.stored_bytes / w.nbytes <= 0.030


@pytest.mark.parametrize("q", [
    {"method": "affine", "bits": 8, "per_channel": True},
    {"method": "affine", "bits": 4, "symmetric": False, "group_size": 32},
    {"method": "affine", "bits": 4, "outlier_fraction": 0.01},
    {"method": "kmeans", "bits": 4, "per_channel": True},
    {"method": "binary"}, {"method": "ternary"}, {"method": "pow2", "bits": 4},
    {"method": "fixed", "bits": 8}, {"method": "minifloat", "exp_bits": 4, "man_bits": 3},
    {"method": "fp16"}, {"method": "bf16"},
])
def test_every_quantizer_writes_and_reads(tmp_path, q):
    w = laplace((32, 64), 3)
    cfg = {"default": {"quantize": q}}
    save(tmp_path / "q.cz", {"w": w}, cfg)
    czmodel.verify(tmp_path / "q.cz")
    with czmodel.open(tmp_path / "q.cz") as f:
        wh = f["w"]
    rel = np.linalg.norm(wh - w) / np.linalg.norm(w)
    bound = {"binary": 0.9, "ternary": 0.8, "fp16": 1e-3, "bf16": 8e-3}.get(q["method"], 0.35)
    assert rel < bound, (q, rel)


def test_lowrank_svd_and_tucker(tmp_path):
    rng = np.random.default_rng(0)
    lowrank = (rng.standard_normal((48, 6)) @ rng.standard_normal((6, 40))).astype(np.float32)
    conv = laplace((16, 8, 3, 3), 2)
    cfg = {"default": {"lowrank": {"method": "svd", "rank": 6}, "quantize": None},
           "op_types": {"Conv": {"lowrank": {"method": "tucker2", "rank": [16, 8]}}}}
    save(tmp_path / "lr.cz", {"fc.weight": lowrank, "conv.weight": conv}, cfg)
    with czmodel.open(tmp_path / "lr.cz") as f:
        np.testing.assert_allclose(f["fc.weight"], lowrank, atol=1e-4)
        np.testing.assert_allclose(f["conv.weight"], conv, atol=1e-4)   # full Tucker rank
        encs = {r["name"]: r["encoding"] for r in f.info()}
    assert encs["fc.weight"].startswith("svd(") and encs["conv.weight"].startswith("tucker2(")


def test_structured_pruning_nm_and_block(tmp_path):
    w = laplace((16, 32), 4)
    cfg = {"default": {"prune": {"granularity": "nm", "n": 2, "m": 4}, "quantize": None},
           "layers": {"b": {"prune": {"granularity": "block", "block": [4, 4],
                                      "sparsity": 0.5}}}}
    save(tmp_path / "s.cz", {"a": w, "b": w}, cfg)
    with czmodel.open(tmp_path / "s.cz") as f:
        a, b = f["a"], f["b"]
    assert ((a.reshape(-1, 4) != 0).sum(1) == 2).all()
    np.testing.assert_array_equal(a[a != 0], w[a != 0])
    blocks = (b.reshape(4, 4, 8, 4) != 0).any(axis=(1, 3))
    assert blocks.sum() == 16


def test_unknown_config_key_is_a_clear_error(tmp_path):
    with pytest.raises(EncodeError, match="sparsty|unknown"):
        save(tmp_path / "x.cz", {"w": laplace((4, 4))},
             {"default": {"prune": {"sparsty": 0.5}}})
    assert not (tmp_path / "x.cz").exists()


def test_integer_and_already_sparse_tensors():
    r = compress_tensor("ids", np.arange(10, dtype=np.int64), None)
    assert r.node.codec == "dense"
    w = np.zeros((8, 8), np.float32)
    w[0, 0] = 1.0
    from czmodel.compress.config import CompressionConfig
    spec = CompressionConfig.from_dict({"default": {"prune": {"sparsity": 0.5}}}).resolve("w")
    r = compress_tensor("w", w, spec)
    assert r.kept == 1                     # zeros already there are never stored


def test_save_accepts_weights_dict_without_config(tmp_path):
    ws = {"a": laplace((3, 5)), "b": np.arange(4, dtype=np.int32)}
    save(tmp_path / "p.cz", ws)
    with czmodel.open(tmp_path / "p.cz") as f:
        for k, v in ws.items():
            np.testing.assert_array_equal(f[k], v)
            assert f[k].dtype == v.dtype


def test_calibration_is_stored(tmp_path):
    from czmodel.compress.calibrate import HistogramCalibrator

    cal = HistogramCalibrator()
    cal.update(np.random.default_rng(0).standard_normal(10000).astype(np.float32))
    rng_ = cal.compute("entropy")
    save(tmp_path / "c.cz", {"w": laplace((4, 4))}, None, calibration={"fc1.out": rng_})
    with czmodel.open(tmp_path / "c.cz") as f:
        c = f.calibration["fc1.out"]
    assert c["scale"] == pytest.approx(rng_.scale) and c["zero_point"] == 0
    assert c["method"] == "entropy"


def test_plots_are_written(tmp_path):
    pytest.importorskip("matplotlib")
    from czmodel.compress.plots import plot_all

    ws = {"fc.weight": laplace((64, 96))}
    rep = save(tmp_path / "p.cz", ws, DC)
    paths = plot_all(ws, str(tmp_path / "p.cz"), rep, str(tmp_path / "plots"))
    assert len(paths) == 3
    for p in paths:
        with open(p, "rb") as fh:
            assert fh.read(8) == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("q", [{"method": "kmeans", "bits": 5},
                               {"method": "kmeans", "bits": 4, "per_channel": True},
                               {"method": "affine", "bits": 8, "per_channel": True}, None])
def test_light_pruning_is_applied_and_stored_dense(tmp_path, q):
    """30% pruning is too light for sparse storage, but the pruned weights must still be
    exactly zero in the file (it used to be silently dropped)."""
    w = laplace((32, 64), 7)
    cfg = {"default": {"prune": {"sparsity": 0.3}, "quantize": q}}
    save(tmp_path / "l.cz", {"w": w}, cfg)
    with czmodel.open(tmp_path / "l.cz") as f:
        wh = f["w"]
        enc = f.info()[0]["encoding"]
    assert not enc.startswith("relidx")
    zeros = wh == 0
    assert abs(zeros.mean() - 0.3) < 0.01
    assert np.abs(w[zeros]).max() <= np.abs(w[~zeros]).min() + 1e-6
