"""PyTorch -> .cz (five small random models vs torch), the weights-only API, state-dict files,
and .onnx -> .cz -> .onnx round trips in ONNX Runtime."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from _converters_models import MODELS, example
from _converters_util import BACKENDS, ort_run

import czmodel
import czmodel.runtime as rt
from czconvert import cz_to_onnx, onnx_to_cz, torch_to_cz
from czconvert import torch_weights as TW
from czconvert.safetensors_io import read_safetensors
from czconvert.torch_import import export_onnx
from czmodel.errors import EncodeError


def _names(args):
    return ["x"] if len(args) == 1 else ["x", "mask"]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    d = tmp_path_factory.mktemp("torch")
    out = {}
    for name in MODELS:
        m, args = example(name)
        p = d / f"{name}.cz"
        rep = torch_to_cz(m, args, p, input_names=_names(args), output_names=["y"])
        with torch.no_grad():
            want = m(*args).numpy()
        out[name] = (p, args, want, rep)
    return out


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_torch_model_matches(converted, name, backend):
    p, args, want, _ = converted[name]
    with rt.load(p, backend=backend) as m:
        got = m.run(dict(zip(_names(args), (a.numpy() for a in args))))["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_converted_graph_shapes(converted):
    ops = {k: v[3].conversion.ops for k, v in converted.items()}
    assert "Linear" in ops["mlp"] and "Gemm" not in ops["mlp"]
    assert "BatchNormalization" not in ops["resblock"]           # folded (by torch or us)
    assert "BatchNormalization" not in ops["mobileblock"]
    assert ops["bert"]["Linear"] == 6 and "Shape" not in ops["bert"]   # static: folded
    w = converted["resblock"][3].conversion.weights
    assert w.get("conv1.weight") == "Conv" and w.get("fc.weight") == "Linear"  # names restored
    assert set(converted["bert"][3].conversion.weights) >= {"q.weight", "ff2.weight"}


def test_bert_dynamic_batch_and_sequence(tmp_path):
    m, args = example("bert")
    p = tmp_path / "bert_dyn.cz"
    torch_to_cz(m, args, p, input_names=["x", "mask"], output_names=["y"],
                dynamic_axes={"x": {0: "B", 1: "T"}, "mask": {0: "B", 1: "T"}, "y": {0: "B",
                                                                                1: "T"}})
    x = torch.randn(3, 5, 32)
    mask = torch.ones(3, 5)
    with torch.no_grad():
        want = m(x, mask).numpy()
    with rt.load(p) as mod:
        got = mod.run({"x": x.numpy(), "mask": mask.numpy()})["y"]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_torch_to_cz_with_config(tmp_path):
    m, args = example("lenet5")
    from czmodel.compress import deep_compression_default
    p = tmp_path / "dc.cz"
    rep = torch_to_cz(m, args, p, deep_compression_default(), input_names=["x"])
    assert rep.file_ratio > 3
    with czmodel.open(p) as f:
        enc = {r["name"]: r["encoding"] for r in f.info()}
    assert enc["fc1.weight"].startswith("relidx") and enc["fc1.bias"].startswith("dense")
    with rt.load(p) as mod:
        y = mod.run({"x": args[0].numpy()})[mod.outputs[0].name]
    assert y.shape == (2, 10) and np.isfinite(y).all()


@pytest.mark.parametrize("name", ["lenet5", "resblock", "bert"])
def test_onnx_cz_onnx_round_trip_in_onnxruntime(tmp_path, name):
    m, args = example(name)
    model = export_onnx(m, args, input_names=_names(args), output_names=["y"])
    feeds = dict(zip(_names(args), (a.numpy() for a in args)))
    want = ort_run(model, feeds)[0]
    onnx_to_cz(model, tmp_path / "a.cz")
    back = cz_to_onnx(tmp_path / "a.cz", tmp_path / "b.onnx")
    got = ort_run((tmp_path / "b.onnx").read_bytes(), feeds)[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    assert "Linear" not in {n.op_type for n in back.graph.node}


def test_round_trip_of_a_compressed_file_uses_decompressed_weights(tmp_path):
    m, args = example("mlp")
    p = tmp_path / "c.cz"
    torch_to_cz(m, args, p, {"default": {"quantize": {"method": "kmeans", "bits": 4}}},
                input_names=["x"], output_names=["y"])
    cz_to_onnx(p, tmp_path / "c.onnx")
    with rt.load(p) as mod:
        want = mod.run({"x": args[0].numpy()})["y"]
    got = ort_run((tmp_path / "c.onnx").read_bytes(), {"x": args[0].numpy()})[0]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


# -- weights only -----------------------------------------------------------------------------
def _state():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                            torch.nn.Flatten(), torch.nn.Linear(8, 4))
    sd = dict(m.state_dict())
    sd["extra.bf16"] = torch.randn(4, 6).to(torch.bfloat16)
    return sd


def test_weights_save_load_lossless(tmp_path):
    sd = _state()
    p = tmp_path / "w.cz"
    TW.save(sd, p)
    back = TW.load(p)
    assert list(back) == list(sd)
    for k, v in sd.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape, k
        assert torch.equal(back[k], v), k
    with czmodel.open(p) as f:
        assert f.graph is None


def test_weights_save_with_config_compresses_only_matrices(tmp_path):
    sd = _state()
    p = tmp_path / "wc.cz"
    TW.save(sd, p, {"default": {"prune": {"sparsity": 0.5}}})
    with czmodel.open(p) as f:
        enc = {r["name"]: r["encoding"] for r in f.info()}
    assert enc["0.weight"].startswith("relidx") and enc["3.weight"].startswith("relidx")
    for k in ("0.bias", "1.running_mean", "1.num_batches_tracked", "3.bias"):
        assert enc[k].startswith("dense"), k
    back = TW.load(p)
    assert torch.equal(back["1.running_var"], sd["1.running_var"])
    assert (back["0.weight"] == 0).float().mean() >= 0.45


def test_state_dict_files_pt_and_safetensors(tmp_path):
    sd = _state()
    pt = tmp_path / "m.pt"
    torch.save({"state_dict": sd, "epoch": 3}, pt)
    arrays, dtypes = TW.load_state_dict_file(pt)
    assert dtypes["extra.bf16"] == "bfloat16" and set(arrays) == set(sd)
    # a pickle that runs code is refused by weights_only loading
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1), "f": io.StringIO}, evil)
    with pytest.raises(EncodeError, match="weights-only"):
        TW.load_state_dict_file(evil)
    st = tmp_path / "m.safetensors"
    _write_safetensors(st, {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                            "b": np.array([1, -2], np.int64)})
    arr, dts = read_safetensors(st)
    np.testing.assert_array_equal(arr["a"], np.arange(6).reshape(2, 3))
    assert arr["b"].dtype == np.int64 and dts == {"a": "float32", "b": "int64"}


def _write_safetensors(path, arrays):
    import json
    header, blobs, off = {}, [], 0
    names = {np.dtype(np.float32): "F32", np.dtype(np.int64): "I64"}
    for k, a in arrays.items():
        b = a.tobytes()
        header[k] = {"dtype": names[a.dtype], "shape": list(a.shape),
                     "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    path.write_bytes(len(h).to_bytes(8, "little") + h + b"".join(blobs))
