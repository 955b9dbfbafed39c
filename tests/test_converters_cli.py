"""cz compress / run / export as wired by ``czconvert.cli.add_subparsers``."""

from __future__ import annotations

import argparse

import numpy as np
import pytest
import torch
from _converters_models import example
from _converters_util import ort_run

import czmodel
from czconvert import cli
from czconvert.torch_import import export_onnx
from czmodel.errors import CzError


def cz(argv):
    """Parse and run like ``cz``: exit code; CzError -> 1 with one stderr line."""
    p = argparse.ArgumentParser(prog="cz")
    sub = p.add_subparsers(dest="cmd", required=True)
    cli.add_subparsers(sub)
    args = p.parse_args([str(a) for a in argv])
    try:
        return args.func(args)
    except CzError as e:
        print(f"cz {args.cmd}: error: {type(e).__name__}: {e}")
        return 1


@pytest.fixture(scope="module")
def lenet_onnx(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    m, args = example("lenet5")
    model = export_onnx(m, args, input_names=["x"], output_names=["y"])
    p = d / "lenet.onnx"
    p.write_bytes(model.SerializeToString())
    x = args[0].numpy()
    np.save(d / "x.npy", x)
    return d, p, x


def test_lossless_compress_run_matches_onnxruntime(lenet_onnx, capsys):
    d, src, x = lenet_onnx
    assert cz(["compress", src, "-o", d / "l.cz"]) == 0
    assert "Linear" in capsys.readouterr().out
    assert cz(["run", d / "l.cz", "--input", f"x={d / 'x.npy'}", "-o", d / "out.npz",
               "--backend", "reference"]) == 0
    got = np.load(d / "out.npz")["y"]
    np.testing.assert_allclose(got, ort_run(src.read_bytes(), {"x": x})[0], rtol=1e-4,
                               atol=1e-5)
    assert cz(["run", d / "l.cz", "--input", d / "x.npy"]) == 0       # auto backend, printed
    assert "y: float32 [2, 10]" in capsys.readouterr().out


def test_compress_options_and_export(lenet_onnx, capsys):
    d, src, x = lenet_onnx
    np.savez(d / "calib.npz", x=np.random.default_rng(0).standard_normal((4, 2, 1, 28, 28))
             .astype(np.float32))
    assert cz(["compress", src, "-o", d / "q.cz", "--sparsity", "0.8", "--int8", "--entropy",
               "huffman", "--calib", d / "calib.npz", "--report"]) == 0
    with czmodel.open(d / "q.cz") as f:
        enc = {r["name"]: r["encoding"] for r in f.info()}
        assert "affine" in enc["fc1.weight"] and enc["fc1.weight"].startswith("relidx")
        assert "x" in f.calibration and len(f.calibration) > 5
    assert cz(["compress", src, "-o", d / "k.cz", "--bits", "5", "--rank", "8"]) == 0
    assert cz(["export", d / "q.cz", "-o", d / "q.onnx"]) == 0
    with czmodel.open(d / "q.cz") as f:
        import czmodel.runtime as rt
        with rt.load(f) as m:
            want = m.run({"x": x})["y"]
    np.testing.assert_allclose(ort_run((d / "q.onnx").read_bytes(), {"x": x})[0], want,
                               rtol=1e-4, atol=1e-5)


def test_compress_state_dict(tmp_path, capsys):
    torch.manual_seed(0)
    sd = torch.nn.Linear(64, 32).state_dict()
    torch.save(sd, tmp_path / "w.pt")
    assert cz(["compress", tmp_path / "w.pt", "-o", tmp_path / "w.cz", "--sparsity", "0.9",
               "--bits", "4"]) == 0
    assert "weights only" in capsys.readouterr().out
    with czmodel.open(tmp_path / "w.cz") as f:
        assert f.graph is None and np.count_nonzero(f["weight"]) <= 64 * 32 // 10 + 1
        np.testing.assert_array_equal(f["bias"], sd["bias"].numpy())


def test_errors_are_one_line(tmp_path, lenet_onnx, capsys):
    d, src, x = lenet_onnx
    (tmp_path / "m.txt").write_text("x")
    cz(["compress", src, "-o", tmp_path / "l.cz"])
    capsys.readouterr()
    assert cz(["compress", tmp_path / "m.txt", "-o", tmp_path / "o.cz"]) == 1
    assert cz(["compress", src, "-o", tmp_path / "o.cz", "--bits", "4", "--int8"]) == 1
    assert cz(["run", tmp_path / "l.cz", "--input", f"nope={d / 'x.npy'}"]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3 and all(line.startswith("cz ") for line in lines)
    assert "EncodeError" in lines[0] and "unknown input kind" in lines[0]
    assert "exclusive" in lines[1]
    assert "RuntimeInputError" in lines[2] and "nope" in lines[2]
    assert not (tmp_path / "o.cz").exists()
    with pytest.raises(FileNotFoundError):
        cz(["compress", tmp_path / "missing.onnx", "-o", tmp_path / "o.cz"])
