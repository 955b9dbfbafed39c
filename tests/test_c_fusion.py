"""The C runtime's load-time fusion pass (runtime_c/src/graph_fuse.c): the exported erf Gelu
chain (Div-Erf-Add-Mul-Mul) -> one Gelu node, and the attention Mul(scale)-Add(mask)-Softmax
-> one fused Softmax. Fused results must match the reference backend (and the unfused C run,
CZ_FUSE=0) within the float tolerance; chains whose intermediates have another reader or are
graph outputs must not be fused. Whether a chain was fused is read from the per-op profile of
the cz_run tool (CZ_PROFILE=1 prints the op names that ran)."""
from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest

import czmodel
from czmodel.graph import Graph, OpNode, ValueInfo
from czmodel.runtime import load

RUNTIME = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "runtime_c")
RNG = np.random.default_rng(11)
F = np.float32
SQRT2 = np.array(np.sqrt(2.0), F)


def ops_run(cz_run_bin, tmp_path, p, feeds):
    """names of the op types the C runtime ran on p (from its CZ_PROFILE=1 report)"""
    args = [cz_run_bin, str(p), "-o", str(tmp_path / "out")]
    (tmp_path / "out").mkdir(exist_ok=True)
    for k, v in feeds.items():
        np.save(tmp_path / f"{k}.npy", v)
        args += ["--input", f"{k}={tmp_path / (k + '.npy')}"]
    r = subprocess.run(args, capture_output=True, text=True,
                       env=dict(os.environ, CZ_PROFILE="1"))
    assert r.returncode == 0, r.stderr
    lines = r.stderr.split("cz profile", 1)[1].splitlines()[1:]
    return {ln.split()[0] for ln in lines if ln.strip()}


def check(cb, p, feeds, monkeypatch, rtol=1e-5, atol=1e-6):
    ref = load(p, backend="reference").run(feeds)
    with cb.CModel(p, threads=1) as m:
        got = m.run(feeds)
    with cb.CModel(p, threads=2) as m:   # rows split over threads (large enough inputs)
        got2 = m.run(feeds)
    monkeypatch.setenv("CZ_FUSE", "0")   # read when a model is loaded
    with cb.CModel(p, threads=2) as m:
        unfused = m.run(feeds)
    monkeypatch.delenv("CZ_FUSE")
    assert set(got) == set(ref)
    for k in ref:
        assert got[k].shape == ref[k].shape and got[k].dtype == ref[k].dtype
        np.testing.assert_allclose(got[k], ref[k], rtol=rtol, atol=atol)
        np.testing.assert_allclose(got[k], unfused[k], rtol=rtol, atol=atol)
        np.testing.assert_array_equal(got[k], got2[k])


# ------------------------------------------------------------------------------ Gelu
def gelu_graph(tmp_path, *, swap=False, extra_out=None, extra_reader=None, c_div=SQRT2,
               name="g"):
    """y = Mul(Mul(x, Add(Erf(Div(x, c_div)), 1)), 0.5), as exported by PyTorch; swap: the
    other operand orders; extra_out: an intermediate also a graph output; extra_reader: an
    intermediate also read by a Neg node (output z)."""
    t = {"c_div": c_div, "one": np.array(1.0, F), "half": np.array(0.5, F)}
    nodes = [OpNode("Div", "div", ["x", "c_div"], ["d"]),
             OpNode("Erf", "erf", ["d"], ["e"]),
             OpNode("Add", "add", ["one", "e"] if swap else ["e", "one"], ["a"]),
             OpNode("Mul", "mul", ["a", "x"] if swap else ["x", "a"], ["m"]),
             OpNode("Mul", "mul_1", ["half", "m"] if swap else ["m", "half"], ["y"])]
    outs = [ValueInfo("y", "f32", [3, 131])]
    if extra_out:
        outs.append(ValueInfo(extra_out, "f32", [3, 131]))
    if extra_reader:
        nodes.append(OpNode("Neg", "neg", [extra_reader], ["z"]))
        outs.append(ValueInfo("z", "f32", [3, 131]))
    g = Graph([ValueInfo("x", "f32", [3, 131])], outs, nodes)
    p = tmp_path / f"{name}.cz"
    czmodel.write(p, t, graph=g)
    # the whole range, the far left tail (x < -2.5) included, and a few exact values
    x = np.linspace(-12, 8, 3 * 131).astype(F).reshape(3, 131)
    x[0, :5] = [0.0, -0.0, -2.5, 1e-30, -1e-30]
    return p, {"x": RNG.permutation(x.ravel()).reshape(3, 131)}


@pytest.mark.parametrize("swap", [False, True])
def test_gelu_chain_fused(cb, cz_run_bin, tmp_path, monkeypatch, swap):
    p, feeds = gelu_graph(tmp_path, swap=swap)
    check(cb, p, feeds, monkeypatch)
    ops = ops_run(cz_run_bin, tmp_path, p, feeds)
    assert "Gelu" in ops and not ops & {"Erf", "Div", "Add", "Mul"}, ops


@pytest.mark.parametrize("kw", [{"extra_out": "e"}, {"extra_out": "m"},
                                {"extra_reader": "a"}, {"extra_reader": "d"},
                                {"c_div": np.array(1.5, F)},
                                {"c_div": np.full((1,), np.sqrt(2.0), F)}])
def test_gelu_chain_not_fused(cb, cz_run_bin, tmp_path, monkeypatch, kw):
    """an intermediate also an output / read elsewhere, another constant, a 1-d constant
    (broadcasting could change the rank): op by op"""
    p, feeds = gelu_graph(tmp_path, **kw)
    check(cb, p, feeds, monkeypatch)
    ops = ops_run(cz_run_bin, tmp_path, p, feeds)
    assert "Erf" in ops and "Gelu" not in ops, ops


# --------------------------------------------------------------------------- Softmax
def softmax_graph(tmp_path, xshape, mshape, *, axis=-1, swap=False, mask_input=False,
                  extra_out=None, extra_reader=None, name="s"):
    """p = Softmax(Add(Mul(x, scale), mask)): the attention scores of an exported BERT"""
    t = {"scale": np.array(32 ** -0.5, F)}
    mask = np.where(RNG.random(mshape) < 0.3, F(-3.4028235e38), F(0.0)).astype(F)
    if mask.size > 2:
        mask.flat[1] = -np.inf
        mask.flat[2] = -1e4
    if mask.size:
        mask.flat[-1] = 0.0
    ins = [ValueInfo("x", "f32", list(xshape))]
    feeds = {"x": (RNG.standard_normal(xshape) * 8).astype(F)}
    if mask_input:
        ins.append(ValueInfo("mask", "f32", list(mshape)))
        feeds["mask"] = mask
    else:
        t["mask"] = mask
    nodes = [OpNode("Mul", "mul", ["scale", "x"] if swap else ["x", "scale"], ["s1"]),
             OpNode("Add", "add", ["mask", "s1"] if swap else ["s1", "mask"], ["s2"]),
             OpNode("Softmax", "softmax", ["s2"], ["y"], {"axis": axis})]
    outs = [ValueInfo("y", "f32", [])]
    if extra_out:
        outs.append(ValueInfo(extra_out, "f32", []))
    if extra_reader:
        nodes.append(OpNode("Neg", "neg", [extra_reader], ["z"]))
        outs.append(ValueInfo("z", "f32", []))
    g = Graph(ins, outs, nodes)
    p = tmp_path / f"{name}.cz"
    czmodel.write(p, t, graph=g)
    return p, feeds, mask


@pytest.mark.parametrize("xshape,mshape,kw", [
    ((1, 4, 9, 128), (1, 1, 1, 128), {}),                       # BERT: rows, mask per key
    ((1, 12, 32, 128), (1, 1, 1, 128), {}),                     # over 32768: two threads
    ((2, 3, 5, 133), (2, 1, 1, 133), {"swap": True}),           # 16-, 8-lane parts + tail
    ((2, 3, 5, 7), (1, 1, 1, 7), {"mask_input": True}),         # short rows, mask an input
    ((3, 17), (17,), {}),
    ((2, 3, 5, 7), (2, 3, 5, 1), {}),                           # mask per row: generic path
    ((2, 3, 5, 7), (1, 1, 1, 7), {"axis": 1}),                  # not the last axis
    ((3, 7), (2, 1, 1, 7), {"mask_input": True}),               # the mask widens the rank
    ((2, 3, 5, 7), (2, 3, 5, 7), {"mask_input": True, "swap": True}),
])
def test_softmax_chain_fused(cb, cz_run_bin, tmp_path, monkeypatch, xshape, mshape, kw):
    p, feeds, mask = softmax_graph(tmp_path, xshape, mshape, **kw)
    check(cb, p, feeds, monkeypatch, rtol=1e-4, atol=1e-6)
    ops = ops_run(cz_run_bin, tmp_path, p, feeds)
    assert "Softmax(x*s+b)" in ops and not ops & {"Softmax", "Add", "Mul"}, ops
    # exactly 0 where the mask is -inf or finfo.min (the rows keep one unmasked key)
    got = cb.CModel(p, threads=1).run(feeds)["y"]
    if kw.get("axis", -1) == -1 and mshape[-1] > 1:   # (a mask per row masks whole rows)
        masked = np.broadcast_to(mask < -1e30, got.shape)
        assert np.all(got[masked] == 0.0)


@pytest.mark.parametrize("kw", [{"extra_out": "s1"}, {"extra_out": "s2"},
                                {"extra_reader": "s1"}, {"extra_reader": "s2"}])
def test_softmax_chain_not_fused(cb, cz_run_bin, tmp_path, monkeypatch, kw):
    p, feeds, _ = softmax_graph(tmp_path, (2, 3, 5, 7), (1, 1, 1, 7), **kw)
    check(cb, p, feeds, monkeypatch, rtol=1e-4, atol=1e-6)
    ops = ops_run(cz_run_bin, tmp_path, p, feeds)
    assert "Softmax" in ops and "Softmax(x*s+b)" not in ops, ops


def test_softmax_chain_bad_broadcast_fails_like_unfused(cb, tmp_path, monkeypatch):
    p, feeds, _ = softmax_graph(tmp_path, (2, 3, 5, 7), (1, 1, 1, 6), mask_input=True)
    with pytest.raises(czmodel.errors.CzError):
        cb.CModel(p, threads=1).run(feeds)
    monkeypatch.setenv("CZ_FUSE", "0")
    with pytest.raises(czmodel.errors.CzError):
        cb.CModel(p, threads=1).run(feeds)
