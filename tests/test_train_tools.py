"""Training-time compression tools (czconvert.train): masks, trained quantization, STE,
distillation, determinism, progress bars and the .cz writer that keeps trained codebooks."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

from czconvert.train import kd_loss, loop, prune, qat, quantize  # noqa: E402


class Tiny(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, 3, 3)
        self.fc1 = torch.nn.Linear(3 * 3 * 3, 16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x):
        x = torch.nn.functional.max_pool2d(self.conv1(x), 2)
        return self.fc2(torch.relu(self.fc1(x.flatten(1))))


def _data(n=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x.mean((1, 2, 3)) * 40).long() % 4
    return x, y


def _model(seed=0):
    torch.manual_seed(seed)
    return Tiny()


@pytest.mark.parametrize("opt,wd", [("sgd", 1e-2), ("adam", 1e-2)])
def test_masks_hold_through_optimizer_steps(opt, wd):
    m = _model()
    x, y = _data()
    loop.train(m, x, y, epochs=1, batch_size=32, progress_bar=False)   # momentum / Adam state
    pr = prune.Pruner(m)
    masks = pr.prune({"fc1.weight": 0.3, "fc2.weight": 0.5, "conv1.weight": 0.8})
    w = dict(m.named_parameters())
    for n, mk in masks.items():
        assert mk.float().mean().item() == pytest.approx(
            {"fc1.weight": 0.3, "fc2.weight": 0.5, "conv1.weight": 0.8}[n], abs=0.02)
        # the largest magnitudes are the ones kept
        a = w[n].detach().abs()
        assert (a[mk] > 0).all()
    loop.train(m, x, y, epochs=3, batch_size=16, optimizer=opt, weight_decay=wd, lr=0.05,
               hooks=[pr], progress_bar=False)
    for n, mk in masks.items():
        assert (w[n].detach()[~mk] == 0).all()
        assert (w[n].detach()[mk] != 0).any()
    # iterative: a later, sparser round keeps earlier pruned weights pruned
    before = {n: mk.clone() for n, mk in pr.masks.items()}
    pr.prune({"fc1.weight": 0.1})
    assert not (pr.masks["fc1.weight"] & ~before["fc1.weight"]).any()


def test_magnitude_mask_and_schedule():
    w = torch.tensor([[0.1, -3.0, 0.5], [2.0, -0.2, 0.0]])
    m = prune.magnitude_mask(w, 0.5)
    assert m.tolist() == [[False, True, True], [True, False, False]]
    s = prune.keep_schedule(0.08, 4)
    assert len(s) == 4 and s[-1] == pytest.approx(0.08) and all(a > b for a, b in zip(s, s[1:]))


def test_iterative_prune_and_regularization():
    m = _model()
    x, y = _data()
    calls = []
    reg = prune.regularization([m.fc1.weight], l1=1e-4, l2=1e-3)
    expect = 1e-4 * m.fc1.weight.abs().sum() + 1e-3 * m.fc1.weight.pow(2).sum()
    assert float(reg(m).detach()) == pytest.approx(float(expect.detach()), rel=1e-6)

    def retrain(i, pr):
        calls.append(i)
        loop.train(m, x, y, epochs=1, hooks=[pr], regularizer=reg, progress_bar=False)

    pr = prune.iterative_prune(m, {"fc1.weight": 0.1}, 3, retrain)
    assert calls == [0, 1, 2]
    assert pr.kept()["fc1.weight"] == pytest.approx(0.1, abs=0.01)
    assert (m.fc1.weight.detach()[~pr.masks["fc1.weight"]] == 0).all()


def test_centroid_gradient_is_sum_of_member_gradients():
    m = _model()
    x, y = _data()
    pr = prune.Pruner(m)
    pr.prune({"fc1.weight": 0.4, "conv1.weight": 0.9})       # conv1: dense, zero reserved
    q = quantize.TrainedQuantizer(m, {"fc1.weight": 3, "conv1.weight": 2}, pr.masks)
    assert q.zero_reserved == {"fc1.weight": False, "conv1.weight": True}
    for n in q.params:
        cb = q.codebooks()[n]
        assert np.array_equal(cb.decode(), q.params[n].detach().numpy())
    # reference: the same loss as a function of the centroids (autograd through the gather)
    cs = {n: q.centroids[n].detach().clone().requires_grad_(True) for n in q.params}
    params = dict(m.named_parameters())
    saved = {n: params[n].detach().clone() for n in q.params}
    for n in q.params:
        delattr(_owner(m, n), "weight")
        _owner(m, n).weight = torch.where(q.masks[n], cs[n][q.indices[n]], torch.zeros(()))
    torch.nn.functional.cross_entropy(m(x), y).backward()
    ref = {n: cs[n].grad.clone() for n in q.params}
    for n in q.params:
        delattr(_owner(m, n), "weight")
        _owner(m, n).weight = params[n]
        params[n].data.copy_(saved[n])
    # the quantizer's hook from the weight gradients
    m.zero_grad()
    torch.nn.functional.cross_entropy(m(x), y).backward()
    grads = {n: p.grad.clone() for n, p in q.params.items()}
    q.after_backward(m)
    for n in q.params:
        got = q.centroids[n].grad
        want = ref[n].clone()
        if q.zero_reserved[n]:
            want[0] = 0.0
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
        # explicitly: the sum over each cluster's members
        idx, mk = q.indices[n], q.masks[n]
        for k in range(got.numel()):
            members = mk & (idx == k)
            s = grads[n][members].sum() if not (q.zero_reserved[n] and k == 0) else 0.0
            assert float(got[k]) == pytest.approx(float(s), abs=1e-6)
        assert q.params[n].grad is None


def _owner(model, name):
    return model.get_submodule(name.rsplit(".", 1)[0])


def test_trained_quantization_keeps_indices_and_zeros():
    m = _model()
    x, y = _data()
    pr = prune.Pruner(m)
    pr.prune({"fc1.weight": 0.3})
    q = quantize.TrainedQuantizer(m, {"fc1.weight": 3, "fc2.weight": 4}, pr.masks, lr=1e-2)
    idx0 = {n: t.clone() for n, t in q.indices.items()}
    c0 = {n: t.detach().clone() for n, t in q.centroids.items()}
    bias0 = m.fc1.bias.detach().clone()
    loop.train(m, x, y, epochs=2, batch_size=16, hooks=[q], progress_bar=False)
    for n, p in q.params.items():
        assert torch.equal(q.indices[n], idx0[n])
        assert not torch.equal(q.centroids[n].detach(), c0[n])       # centroids learned
        w = p.detach().numpy()
        assert np.array_equal(w, q.codebooks()[n].decode())
        assert len(np.unique(w[q.masks[n].numpy()])) <= 2 ** q.bits[n]
    assert (m.fc1.weight.detach()[~pr.masks["fc1.weight"]] == 0).all()
    assert not torch.equal(m.fc1.bias.detach(), bias0)              # biases still train


@pytest.mark.parametrize("method", ["int8", "binary", "ternary"])
def test_ste_passes_gradients(method):
    m = _model()
    qat.prepare_qat(m, method)
    w_latent = m.parametrizations.weight.original if hasattr(m, "parametrizations") else None
    assert w_latent is None
    lat = m.fc1.parametrizations.weight.original
    qw = m.fc1.weight
    rows = qw.detach().reshape(qw.shape[0], -1)
    distinct = max(len(torch.unique(r)) for r in rows)
    assert distinct <= {"int8": 255, "binary": 2, "ternary": 3}[method]
    g0 = torch.randn(qw.shape)
    (m.fc1.weight * g0).sum().backward()
    torch.testing.assert_close(lat.grad, g0)                 # identity in the backward pass
    x, y = _data()
    before = lat.detach().clone()
    loop.train(m, x, y, epochs=1, batch_size=16, lr=1e-2, progress_bar=False)
    assert not torch.equal(lat.detach(), before)            # latent weights learn
    qat.finalize_qat(m)
    assert not hasattr(m.fc1, "parametrizations")
    if method != "int8":
        idx, cent = qat.qat_codebook(m.fc1.weight.detach().numpy())
        dec = np.take_along_axis(cent, idx.reshape(idx.shape[0], -1).astype(int), 1)
        assert np.array_equal(dec.reshape(idx.shape), m.fc1.weight.detach().numpy())


def test_ternary_and_binary_values():
    w = torch.tensor([[1.0, -0.1, 0.05, -2.0]])
    t = qat.quantize_ternary(w)            # delta = 0.7 * 0.7875; alpha = mean(1, 2)
    assert t.tolist() == [[1.5, 0.0, 0.0, -1.5]]
    b = qat.quantize_binary(w)
    assert b.tolist() == [pytest.approx([0.7875, -0.7875, 0.7875, -0.7875])]
    i8 = qat.quantize_int8(w)
    assert float((i8 - w).abs().max()) <= 2.0 / 127 / 2 + 1e-7


def test_kd_loss_equals_formula():
    g = torch.Generator().manual_seed(3)
    zs, zt = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    y = torch.tensor([0, 3, 6, 2, 2])
    T, lam = 3.0, 0.3
    s, t = zs.numpy().astype(np.float64), zt.numpy().astype(np.float64)

    def softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)
    ce = -np.mean(np.log(softmax(s))[np.arange(5), y.numpy()])
    pt, ps = softmax(t / T), softmax(s / T)
    kl = np.mean(np.sum(pt * (np.log(pt) - np.log(ps)), 1))
    want = lam * ce + (1 - lam) * T * T * kl
    assert float(kd_loss(zs, zt, y, T=T, lam=lam)) == pytest.approx(want, rel=1e-5)
    assert float(kd_loss(zs, None, y)) == pytest.approx(ce, rel=1e-5)
    assert float(kd_loss(zs, zs, y, T=T, lam=0.0)) == pytest.approx(0.0, abs=1e-6)


def test_same_seed_same_weights():
    x, y = _data()

    def run(seed):
        loop.seed_everything(seed)
        m = Tiny()
        pr = prune.Pruner(m)
        pr.prune({"fc1.weight": 0.5})
        loop.train(m, x, y, epochs=1.5, batch_size=16, seed=seed, hooks=[pr],
                   teacher_logits=torch.randn(len(x), 4, generator=torch.Generator()
                                              .manual_seed(1)), progress_bar=False)
        return {k: v.clone() for k, v in m.state_dict().items()}

    a, b, c = run(5), run(5), run(6)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert loop.batch_order(10, 3, 1, 0)[0].tolist() == loop.batch_order(10, 3, 1, 0)[0].tolist()
    assert len(loop.batch_order(10, 3, 1, 0)) == math.ceil(10 / 3)


def test_progress_bars(monkeypatch):
    items = list(range(5))
    assert list(loop.progress(items, 5, "x")) == items         # pytest: not a TTY -> no bar
    from czmodel import progress as P

    assert isinstance(loop.progress(items, 5, "x"), P._NoBar)   # the project's one module
    buf = io.StringIO()
    monkeypatch.setattr("sys.stderr", buf)
    assert list(P._TextBar(items, 5, "epoch")) == items
    assert "epoch [" in buf.getvalue() and "5/5" in buf.getvalue()


def test_write_cz_keeps_trained_codebooks(tmp_path):
    import czmodel
    from czconvert.train.export import write_cz

    m = _model()
    x, y = _data()
    pr = prune.Pruner(m)
    pr.prune({"fc1.weight": 0.2, "conv1.weight": 0.9, "fc2.weight": 0.5})
    q = quantize.TrainedQuantizer(m, {"fc1.weight": 4, "conv1.weight": 3, "fc2.weight": 2},
                                  pr.masks, lr=1e-2)
    loop.train(m, x, y, epochs=1, batch_size=16, hooks=[q], progress_bar=False)
    path = tmp_path / "t.cz"
    rep = write_cz(m, x[:1], path, q.codebooks())
    assert {r.name for r in rep.rows} >= {"fc1.weight", "conv1.weight", "fc2.weight"}
    with czmodel.open(path) as f:
        for n, cb in q.codebooks().items():
            assert np.array_equal(f[n], cb.decode())             # stored exactly as trained
        assert "relidx" in f.entry("fc1.weight").enc.codec
    model = czmodel.load(path, backend="auto", threads=1)
    out = model.run({"input": x.numpy()})["logits"]
    ref = loop.predict(m, x).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-5)
    assert loop.evaluate(m, x, y) == float((out.argmax(1) == y.numpy()).mean())
