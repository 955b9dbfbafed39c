"""The cz command: info, verify, demo; exit codes and one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

import czmodel
from czmodel.cli.main import main


def test_info_and_verify(tmp_path, capsys):
    p = tmp_path / "a.cz"
    czmodel.write(p, {"w": np.ones((3, 4), np.float32)}, metadata={"k": "v"})
    assert main(["info", str(p)]) == 0
    out = capsys.readouterr().out
    assert "dense(data:" in out and "3x4" in out
    assert main(["info", str(p), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tensors"][0]["shape"] == [3, 4] and data["metadata"] == {"k": "v"}
    assert main(["verify", str(p)]) == 0


def test_bad_file_is_one_line_and_exit_1(tmp_path, capsys):
    p = tmp_path / "bad.cz"
    p.write_bytes(b"not a cz file at all, definitely not")
    assert main(["verify", str(p)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "FormatError" in err and "magic" in err
    assert main(["info", str(tmp_path / "missing.cz")]) == 1


def test_usage_error_exit_2():
    r = subprocess.run([sys.executable, "-m", "czmodel", "frobnicate"], capture_output=True)
    assert r.returncode == 2


def test_demo_runs_and_keeps_accuracy(tmp_path, capsys):
    out = tmp_path / "demo.cz"
    assert main(["demo", "-o", str(out), "--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["ratio"] > 20                                 # Deep Compression-class size
    assert res["accuracy_cz"] >= res["accuracy_fp32_pruned_checkpoint"] - 0.01
    czmodel.verify(out)


def test_info_report(tmp_path, capsys):
    from czmodel.compress.pipeline import save

    w = np.random.default_rng(0).laplace(size=(64, 64)).astype(np.float32)
    save(tmp_path / "r.cz", {"w": w}, {"default": {"prune": {"sparsity": 0.9},
                                                   "quantize": {"method": "kmeans", "bits": 5},
                                                   "entropy": "huffman"}})
    assert main(["info", str(tmp_path / "r.cz"), "--report"]) == 0
    out = capsys.readouterr().out
    assert "weight bits (P+Q+H)" in out and "total" in out
    assert main(["info", str(tmp_path / "r.cz"), "--markdown"]) == 0
    assert "| layer |" in capsys.readouterr().out


def test_bench_against_onnxruntime(tmp_path, capsys):
    """cz bench times our runtime and ORT on the exported original, and checks outputs."""
    from czconvert import cz_to_onnx
    from czmodel.compress.pipeline import save
    from czmodel.demo import DEMO_CONFIG, lenet300_graph, load_demo_model

    w = {k: v for k, v in load_demo_model().items() if k.startswith("fc")}
    save(tmp_path / "m.cz", w, DEMO_CONFIG, graph=lenet300_graph())
    cz_to_onnx(str(tmp_path / "m.cz"), str(tmp_path / "m.onnx"))
    assert main(["bench", str(tmp_path / "m.cz"), "--vs", str(tmp_path / "m.onnx"),
                 "--seconds", "0.2", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["cosine_vs_ort"] > 0.9999 and r["ratio_vs_ort"] > 0
    assert set(r["timing"]) == {"czmodel", "onnxruntime"}
    assert r["timing"]["czmodel"]["samples"] >= 5
    assert main(["bench", str(tmp_path / "m.cz"), "--seconds", "0.1"]) == 0
    assert "median us" in capsys.readouterr().out


def _subcommands():
    import argparse

    from czmodel.cli.main import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def test_every_subcommand_has_json():
    pytest.importorskip("onnx")                 # compress/run/export come with the converters
    subs = _subcommands()
    assert set(subs) >= {"info", "verify", "bench", "demo", "compress", "run", "export"}
    for name, p in subs.items():
        assert "--json" in p._option_string_actions, f"cz {name} has no --json"


def test_converter_subcommands_json(tmp_path, capsys):
    pytest.importorskip("onnx")
    from czmodel.compress.pipeline import save
    from czmodel.demo import DEMO_CONFIG, lenet300_graph, load_demo_model

    w = {k: v for k, v in load_demo_model().items() if k.startswith("fc")}
    save(tmp_path / "m.cz", w, DEMO_CONFIG, graph=lenet300_graph())
    assert main(["export", str(tmp_path / "m.cz"), "-o", str(tmp_path / "m.onnx"), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["output"] == str(tmp_path / "m.onnx") and e["onnx_nodes"] >= 5
    assert main(["compress", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "c.cz"),
                 "--bits", "4", "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["file"] == str(tmp_path / "c.cz") and c["conversion"]["linear"] == 3
    assert c["report"]["rows"] and c["file_ratio"] > 1
    np.save(tmp_path / "x.npy", np.zeros((2, 784), np.float32))
    assert main(["run", str(tmp_path / "c.cz"), "--input", str(tmp_path / "x.npy"),
                 "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["outputs"]["logits"]["shape"] == [2, 10]
    assert np.asarray(r["outputs"]["logits"]["values"]).shape == (2, 10)


def test_converter_subcommands_without_the_extras(monkeypatch, capsys):
    """A core install (no onnx): cz compress/run/export exist and name the extra to install."""
    monkeypatch.setitem(sys.modules, "czconvert.cli", None)   # import -> ImportError
    for cmd in (["compress", "m.onnx", "-o", "m.cz", "--bits", "4"], ["run", "m.cz"],
                ["export", "m.cz", "-o", "m.onnx"]):
        assert main(cmd) == 1
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and "pip install 'czmodel[onnx]'" in err
