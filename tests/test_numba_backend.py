"""Whole small graphs on the Numba backend against the reference executor.

Float forms: rtol 1e-4, atol 1e-5 (outputs of a few layers of float32 math against the
float64-accumulating reference). Int8 layers (dynamic activation quantization): relative
error below 3e-2.
"""

from __future__ import annotations

import numpy as np
import pytest

import czmodel
from czmodel import encode as E
from czmodel.graph import Graph, OpNode, ValueInfo
from czmodel.runtime import forms as F
from czmodel.runtime import load
from czmodel.runtime.model import BACKENDS, backend_class
from czmodel.runtime.numba_backend import NumbaBackend

RNG = np.random.default_rng(3)


def relidx_cb(w, density=0.1, bits=5):
    """Deep Compression style: magnitude prune, k-means-like codebook (quantiles here)."""
    m = np.abs(w) >= np.quantile(np.abs(w), 1 - density)
    vals = w[m]
    cent = np.quantile(vals, np.linspace(0, 1, 1 << bits)).astype(np.float32)
    idx = np.abs(vals[:, None] - cent[None, :]).argmin(axis=1)
    return E.relidx(m, E.codebook(idx, cent, bits=bits)).set_entropy("huffman")


def int8(w):
    s = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    q = np.clip(np.rint(w / s[:, None]), -127, 127).astype(np.int64)
    return E.affine(q, s, bits=8, axis=0)


def mlp(tmp_path, enc1, enc2):
    w1 = (RNG.standard_normal((300, 784)) * 0.05).astype(np.float32)
    w2 = (RNG.standard_normal((100, 300)) * 0.05).astype(np.float32)
    w3 = (RNG.standard_normal((10, 100)) * 0.1).astype(np.float32)
    b = [RNG.standard_normal(n).astype(np.float32) * 0.1 for n in (300, 100, 10)]
    g = Graph([ValueInfo("x", "f32", ["N", 784])], [ValueInfo("y", "f32", ["N", 10])],
              [OpNode("Linear", "fc1", ["x", "w1", "b1"], ["h1"]),
               OpNode("Relu", "r1", ["h1"], ["a1"]),
               OpNode("Gemm", "fc2", ["a1", "w2", "b2"], ["h2"], {"transB": 1}),
               OpNode("Relu", "r2", ["h2"], ["a2"]),
               OpNode("Linear", "fc3", ["a2", "w3", "b3"], ["y"])])
    p = tmp_path / "mlp.cz"
    czmodel.write(p, {"w1": enc1(w1), "w2": enc2(w2), "w3": w3, "b1": b[0], "b2": b[1],
                      "b3": b[2]}, graph=g)
    return p


def lenet5(tmp_path, conv_enc, fc_enc):
    c1 = (RNG.standard_normal((20, 1, 5, 5)) * 0.2).astype(np.float32)
    c2 = (RNG.standard_normal((50, 20, 5, 5)) * 0.05).astype(np.float32)
    f1 = (RNG.standard_normal((500, 800)) * 0.03).astype(np.float32)
    f2 = (RNG.standard_normal((10, 500)) * 0.05).astype(np.float32)
    g = Graph([ValueInfo("x", "f32", ["N", 1, 28, 28])], [ValueInfo("y", "f32", ["N", 10])],
              [OpNode("Conv", "conv1", ["x", "c1", "cb1"], ["h1"], {"kernel_shape": [5, 5]}),
               OpNode("MaxPool", "p1", ["h1"], ["q1"], {"kernel_shape": [2, 2],
                                                        "strides": [2, 2]}),
               OpNode("Conv", "conv2", ["q1", "c2", "cb2"], ["h2"]),
               OpNode("MaxPool", "p2", ["h2"], ["q2"], {"kernel_shape": [2, 2],
                                                        "strides": [2, 2]}),
               OpNode("Flatten", "fl", ["q2"], ["v"]),
               OpNode("Gemm", "fc1", ["v", "f1", "fb1"], ["z1"], {"transB": 1}),
               OpNode("Relu", "r", ["z1"], ["a"]),
               OpNode("Gemm", "fc2", ["a", "f2"], ["y"], {"transB": 1, "alpha": 0.5})])
    p = tmp_path / "lenet.cz"
    czmodel.write(p, {"c1": c1, "c2": conv_enc(c2), "f1": fc_enc(f1), "f2": f2,
                      "cb1": np.zeros(20, np.float32), "cb2": np.full(50, 0.1, np.float32),
                      "fb1": np.zeros(500, np.float32)}, graph=g)
    return p


def same(p, feeds, quantized):
    ref = load(p).run(feeds)
    m = load(p, backend="numba", threads=1)
    assert isinstance(m.backend, NumbaBackend)
    out = m.run(feeds)
    for k in ref:
        if quantized:
            err = np.linalg.norm(out[k] - ref[k]) / np.linalg.norm(ref[k])
            assert err < 3e-2, err
        else:
            np.testing.assert_allclose(out[k], ref[k], rtol=1e-4, atol=1e-5)
    return m


def test_registered():
    assert backend_class("numba") is NumbaBackend and BACKENDS["numba"] is NumbaBackend


@pytest.mark.parametrize("n", [1, 7])
def test_mlp_relidx_codebook(tmp_path, n):
    p = mlp(tmp_path, relidx_cb, relidx_cb)
    m = same(p, {"x": RNG.standard_normal((n, 784)).astype(np.float32)}, False)
    w = m.executor.weights
    assert isinstance(w["w1"], F.RelidxForm) and isinstance(w["w2"], F.RelidxForm)
    assert isinstance(w["w3"], F.DenseForm) and isinstance(w["b1"], np.ndarray)
    assert w["w1"].resident_bytes < 0.1 * 300 * 784 * 4


def test_mlp_int8(tmp_path):
    p = mlp(tmp_path, int8, relidx_cb)
    m = same(p, {"x": RNG.standard_normal((5, 784)).astype(np.float32)}, True)
    assert isinstance(m.executor.weights["w1"], F.AffineForm)


@pytest.mark.parametrize("n", [1, 3])
def test_lenet5_compressed(tmp_path, n):
    p = lenet5(tmp_path, relidx_cb, relidx_cb)
    m = same(p, {"x": RNG.standard_normal((n, 1, 28, 28)).astype(np.float32)}, False)
    assert isinstance(m.executor.weights["c2"], F.RelidxForm)
    assert not m.backend.log.fallbacks


def test_lenet5_int8_conv_and_codebook_fc(tmp_path):
    def cb(w):
        cent = np.linspace(w.min(), w.max(), 16).astype(np.float32)
        return E.codebook(np.abs(w[..., None] - cent).argmin(-1), cent)
    p = lenet5(tmp_path, int8_conv, cb)
    m = same(p, {"x": RNG.standard_normal((2, 1, 28, 28)).astype(np.float32)}, True)
    assert isinstance(m.executor.weights["f1"], F.CodebookForm)


def int8_conv(w):
    w2 = w.reshape(w.shape[0], -1)
    s = (np.abs(w2).max(axis=1) / 127).astype(np.float32)
    q = np.clip(np.rint(w2 / s[:, None]), -127, 127).astype(np.int64).reshape(w.shape)
    return E.affine(q, s, bits=8, axis=0)


def test_weight_with_other_use_stays_dense(tmp_path):
    w = RNG.standard_normal((4, 4)).astype(np.float32)
    g = Graph([ValueInfo("x", "f32", [2, 4])], [ValueInfo("y", "f32", [2, 4])],
              [OpNode("Linear", "l", ["x", "w"], ["h"]),
               OpNode("MatMul", "mm", ["h", "w"], ["y"])])
    p = tmp_path / "m.cz"
    czmodel.write(p, {"w": w}, graph=g)
    m = same(p, {"x": RNG.standard_normal((2, 4)).astype(np.float32)}, False)
    assert isinstance(m.executor.weights["w"], np.ndarray)
