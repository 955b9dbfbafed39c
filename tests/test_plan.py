"""The planner (czmodel.plan): solver exactness, executors, profiling, the config it writes
being consumed by the compression step, and ``cz plan``. Quick (tiny MLP); the LeNet-5 proof
is tests/test_plan_lenet5.py (slow)."""

from __future__ import annotations

import itertools
import json
import math
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import czmodel
import czmodel.plan as P
from czmodel.compress.config import CompressionConfig
from czmodel.errors import EncodeError
from czmodel.plan.solver import lambda_path, lower_hull

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CANDS = ["fp32", "int8", "k4", "p70-k4", "p95-k3"]


# -- solver ------------------------------------------------------------------------------------
def _brute(costs, losses):
    out = []
    for ch in itertools.product(*[range(len(c)) for c in costs]):
        c = ls = 0.0
        for k, j in enumerate(ch):
            c += costs[k][j]
            ls += losses[k][j]
        out.append((c, ls, ch))
    return out


_layers = st.lists(
    st.lists(st.tuples(st.integers(0, 40), st.one_of(st.integers(-3, 8),
                                                      st.floats(-1, 5, allow_nan=False))),
             min_size=1, max_size=4),
    min_size=1, max_size=4)


@settings(max_examples=120, deadline=None)
@given(_layers, st.integers(0, 150), st.floats(-4, 25, allow_nan=False))
def test_solver_exact_against_brute_force(layers, budget, max_loss):
    costs = [[float(c) for c, _ in opts] for opts in layers]
    losses = [[float(ls) for _, ls in opts] for opts in layers]
    combos = _brute(costs, losses)
    fr = P.pareto_front(costs, losses)
    assert fr.exact
    # the front is Pareto: cost ascending, loss strictly descending, every point achievable
    for a, b in zip(fr.points, fr.points[1:]):
        assert a.cost < b.cost and a.loss > b.loss
    for p in fr.points:
        c = sum(costs[k][j] for k, j in enumerate(p.choice))
        ls = sum(losses[k][j] for k, j in enumerate(p.choice))
        assert math.isclose(c, p.cost) and math.isclose(ls, p.loss, abs_tol=1e-9)
    # budget mode: least loss within the budget
    feas = [ls for c, ls, _ in combos if c <= budget]
    best = fr.best_within(budget)
    assert (best is None) == (not feas)
    if feas:
        assert math.isclose(best.loss, min(feas), abs_tol=1e-9)
    # floor mode: least cost with loss <= max_loss (the solver's float tolerance)
    tol = 1e-12 * max(1.0, abs(max_loss))
    feas2 = [c for c, ls, _ in combos if ls <= max_loss + tol]
    cheap = fr.cheapest_within(max_loss)
    assert (cheap is None) == (not feas2)
    if feas2:
        assert math.isclose(cheap.cost, min(feas2))
    # Lagrangian: feasible, never better than the exact optimum, exact at its own breakpoints
    lg = P.lagrangian(costs, losses, budget=budget)
    assert (lg is None) == (not feas)
    if feas:
        assert lg.cost <= budget and lg.loss >= min(feas) - 1e-9
    lg2 = P.lagrangian(costs, losses, max_loss=max_loss)
    assert (lg2 is None) == (not feas2)
    if feas2:
        assert lg2.loss <= max_loss + tol and lg2.cost >= min(feas2) - 1e-9
    for _, ch in lambda_path(costs, losses):
        c = sum(costs[k][j] for k, j in enumerate(ch))
        ls = sum(losses[k][j] for k, j in enumerate(ch))
        assert math.isclose(fr.best_within(c).loss, ls, abs_tol=1e-9)


def test_lagrangian_gap_and_thinning():
    # a classic duality gap: the relaxation alone cannot use the whole budget
    costs, losses = [[0, 6], [0, 6]], [[10, 0], [10, 0]]
    lg = P.lagrangian(costs, losses, budget=11, fill=False)
    assert (lg.cost, lg.loss) == (6, 10)                      # exact DP: the same here
    assert P.pareto_front(costs, losses).best_within(11).loss == 10
    costs, losses = [[0, 3, 5], [0, 4]], [[9, 2, 0], [5, 0]]
    assert P.pareto_front(costs, losses).best_within(7).loss == 2
    assert P.lagrangian(costs, losses, budget=7).loss >= 2
    assert lower_hull([0, 3, 5], [9, 2, 0]) == [0, 1, 2]
    assert lower_hull([0, 1, 2], [4, 3.9, 0]) == [0, 2]      # (1, 3.9) is above the hull
    rng = np.random.default_rng(0)
    costs = rng.integers(1, 1000, (6, 8)).tolist()
    losses = rng.random((6, 8)).tolist()
    full, thin = P.pareto_front(costs, losses), P.pareto_front(costs, losses, max_points=20)
    assert full.exact and not thin.exact and len(thin.points) <= 20 < len(full.points)


# -- a tiny model --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """A 64-128-10 MLP as ONNX (Gemm, Relu, Gemm), calibration inputs and labels (the fp32
    model's own predictions, so fp32 accuracy is 1)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = (rng.standard_normal((128, 64)) / 8).astype(np.float32)
    b1 = (rng.standard_normal(128) / 10).astype(np.float32)
    w2 = (rng.standard_normal((10, 128)) / 11).astype(np.float32)
    b2 = np.zeros(10, np.float32)
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "fc1.weight", "fc1.bias"], ["h"], transB=1,
                          name="fc1"),
         helper.make_node("Relu", ["h"], ["r"], name="relu"),
         helper.make_node("Gemm", ["r", "fc2.weight", "fc2.bias"], ["logits"], transB=1,
                          name="fc2")],
        "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])],
        [numpy_helper.from_array(a, n) for a, n in ((w1, "fc1.weight"), (b1, "fc1.bias"),
                                                    (w2, "fc2.weight"), (b2, "fc2.bias"))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    d = tmp_path_factory.mktemp("mlp")
    path = str(d / "mlp.onnx")
    onnx.save(model, path)
    x = rng.standard_normal((300, 64)).astype(np.float32)
    y = (np.maximum(x @ w1.T + b1, 0) @ w2.T + b2).argmax(1)
    np.savez(d / "calib.npz", x=x, y=y)
    m = P.PlanModel.load(path)
    space = P.Space({k: [P.parse_label(s, m.tensors[k].shape) for s in CANDS]
                     for k in m.layers})
    return {"path": path, "dir": d, "x": x, "y": y, "model": m, "space": space}


@pytest.fixture(scope="module")
def table(mlp):
    return P.profile(mlp["model"], mlp["x"], P.Accuracy(mlp["y"]), mlp["space"],
                     executor="serial", latency=True, latency_repeats=3)


def test_labels_roles_and_configs(mlp):
    m = mlp["model"]
    assert m.weights == {"fc1.weight": "Linear", "fc2.weight": "Linear"}
    assert P.parse_label("p90-k4").spec == {"prune": {"sparsity": 0.9},
                                            "quantize": {"method": "kmeans", "bits": 4}}
    assert P.parse_label("r0.25-int8", (128, 64)).spec["lowrank"] == {"method": "svd",
                                                                       "rank": 16}
    for bad in ("k9", "p120", "x", "-k4", "k4-k5", "r2"):
        with pytest.raises(EncodeError):
            P.parse_label(bad, (8, 8))
    # exact-name patterns, even for names with glob characters
    cfg = CompressionConfig.from_dict(P.build_config({
        "a[1].w*": P.parse_label("k4"), "a1.w": P.parse_label("fp32")}))
    assert cfg.resolve("a[1].w*", "Linear").quantize["bits"] == 4
    assert cfg.resolve("a1.wx", "Linear") is not None and cfg.resolve("a1.w", "Linear") is None


def test_weight_roles_match_converter():
    from czconvert.onnx_import import _CtxView, _weight_roles

    m = P.PlanModel.load(os.path.join(ROOT, "docs/results/deep_compression/lenet5_fp32.onnx"))
    assert _weight_roles(_CtxView(m.graph, m.tensors)) == P.model.weight_roles(m.graph,
                                                                                 m.tensors)


def test_profile_table(mlp, table):
    t = table
    assert t.layer_names == ["fc1.weight", "fc2.weight"]
    assert t.base_score == 1.0 and t.samples == 300
    for k in t.layer_names:
        b = dict(zip(CANDS, t.bytes[k]))
        loss = dict(zip(CANDS, t.loss(k)))
        assert loss["fp32"] == 0.0
        assert b["fp32"] > b["int8"] > b["k4"] > b["p95-k3"]
        assert loss["p95-k3"] > loss["int8"] >= 0.0
        assert all(x is not None and x > 0 for x in t.latency_ms[k])
    assert t.evaluations == 2 * (len(CANDS) - 1)           # fp32 is not evaluated
    # the bytes are the marginal file bytes of exactly what the compression step writes
    c = P.space.compress_candidate("fc1.weight", mlp["model"].tensors["fc1.weight"], "Linear",
                                   P.parse_label("k4"))
    assert t.bytes["fc1.weight"][2] == c.bytes
    # fp32 choice + fixed bytes = the real as-is file
    fp32 = t.fp32_choice()
    real = mlp["model"].compressed_bytes(P.build_config(
        {k: t.candidates[k][j] for k, j in fp32.items()}))
    assert abs(t.predicted_bytes(fp32) - len(real)) <= 128
    again = P.SensitivityTable.from_dict(json.loads(json.dumps(t.to_dict())))
    assert again.score == t.score and again.candidates == t.candidates


def test_runner_substitution_equals_real_file(mlp):
    """The profile's incremental run (suffix recomputed from the compressed form) gives the
    same outputs as the real compressed .cz run whole by czmodel.load."""
    m, x = mlp["model"], mlp["x"]
    r = P.Runner(m, {"x": x}, batch=128)
    cand = P.parse_label("p70-k4")
    c = P.space.compress_candidate("fc1.weight", m.tensors["fc1.weight"], "Linear", cand)
    envs = r.run({"fc1.weight": r.prepare("fc1.weight", c.data)})
    assert r.affected(["fc2.weight"]) == [2]
    cfg = P.build_config({"fc1.weight": cand, "fc2.weight": P.parse_label("fp32")})
    with czmodel.load(m.compressed_bytes(cfg), backend="numba", threads=1) as real:
        want = real.run({"x": x})["logits"]
    np.testing.assert_allclose(r.output(envs), want, rtol=1e-5, atol=1e-5)
    assert not np.allclose(r.output(envs), r.output())     # the substitution did something


def test_sizer_is_byte_identical(mlp):
    from czmodel.plan.sizes import FileSizer

    m = mlp["model"]
    s = FileSizer(m)
    choice = {"fc1.weight": P.parse_label("p70-k4"), "fc2.weight": P.parse_label("int8")}
    assert s.file_bytes(choice) == m.compressed_bytes(P.build_config(choice))


def test_metrics():
    rng = np.random.default_rng(1)
    z = rng.standard_normal((50, 7))
    assert P.LogitKL().score(z, z, {}) == pytest.approx(0.0, abs=1e-12)
    assert P.LogitKL().score(z + rng.standard_normal(z.shape), z, {}) < 0
    e = rng.standard_normal((4, 5, 3))
    mask = np.array([[1, 1, 0, 0, 0]] * 4)
    cos = P.Cosine(pool="mean", mask="m")
    assert cos.score(e, e, {"m": mask}) == pytest.approx(1.0)
    e2 = e.copy()
    e2[:, 2:] = rng.standard_normal((4, 3, 3))                 # masked tokens only
    assert cos.score(e2, e, {"m": mask}) == pytest.approx(1.0)
    assert P.Cosine(pool="mean").score(e2, e, {}) < 1.0
    acc = P.Accuracy(np.array([0, 1, 2, 0]), index=[0, 1])
    assert acc.score(np.eye(3)[[0, 1, 0, 0]], None, {}) == 1.0
    assert P.make_metric(None, None, 2).name == "kl" and P.make_metric(None, None, 3).name == \
        "cosine"


def _rows(t):
    return {k: (t.bytes[k], t.score[k]) for k in t.layer_names}


def test_process_pool_matches_serial(mlp, table):
    t = P.profile(mlp["model"], mlp["x"], P.Accuracy(mlp["y"]), mlp["space"],
                  executor=P.ProcessExecutor(2), latency=False)
    assert t.executor == "process" and t.workers == 2
    assert _rows(t) == _rows(table)


def test_dask_local_cluster_matches_serial(mlp, table):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        with P.DaskExecutor(client=client) as ex:
            assert ex.workers == 2
            t = P.profile(mlp["model"], mlp["x"], P.Accuracy(mlp["y"]), mlp["space"],
                          executor=ex, latency=False)
    assert t.executor == "dask"
    assert _rows(t) == _rows(table)


def test_executor_interface():
    with P.SerialExecutor() as ex:
        seen = []
        assert ex.map(pow, [3, 4], context=2, on_done=lambda i, r: seen.append(i)) == [8, 16]
        assert seen == [0, 1] and ex.map(abs, [-1, 2]) == [1, 2]
    with pytest.raises(czmodel.errors.UnsupportedError):
        P.make_executor("threads")


def test_plan_budget_config_is_consumed_by_compress(mlp, table, tmp_path):
    """The plan meets the budget on the real file; ``cz compress --config`` writes exactly
    the file the planner measured."""
    from czconvert.cli import main as convert_main

    t = table
    sizes = sorted(t.predicted_bytes({"fc1.weight": a, "fc2.weight": b})
                   for a in range(len(CANDS)) for b in range(len(CANDS)))
    budget = sizes[len(sizes) // 3]
    res = P.plan(mlp["model"], mlp["x"], mlp["y"], table=t, budget_bytes=budget,
                 executor="serial")
    assert res.feasible and res.measured["measured_bytes"] <= budget
    assert res.evaluations["refine"] >= 1 and 1 <= res.evaluations["joint"] <= 3
    cfg_path = tmp_path / "plan.json"
    res.save_config(cfg_path)
    CompressionConfig.from_file(cfg_path)                    # a valid config
    out = tmp_path / "mlp.cz"
    assert convert_main(["compress", mlp["path"], "-o", str(out), "--config",
                         str(cfg_path)]) == 0
    assert os.path.getsize(out) == res.measured["measured_bytes"] <= budget
    with czmodel.load(str(out), backend="numba") as m:
        acc = (m.run({"x": mlp["x"]})["logits"].argmax(1) == mlp["y"]).mean()
    assert acc == pytest.approx(res.measured["measured_score"], abs=1 / 300 + 1e-9)
    # the exact DP is at least as good as any plan that fits, by the profile's own numbers
    best = max(t.base_score - t.loss("fc1.weight")[a] - t.loss("fc2.weight")[b]
               for a in range(len(CANDS)) for b in range(len(CANDS))
               if t.predicted_bytes({"fc1.weight": a, "fc2.weight": b}) <= budget)
    sol = P.solve(t, budget_bytes=budget)
    assert sol.predicted_score == pytest.approx(best)
    assert P.solve(t, budget_bytes=budget, method="lagrangian").predicted_score <= best + 1e-12


def test_plan_fidelity_floor_and_ratio(mlp, table):
    res = P.plan(mlp["model"], mlp["x"], mlp["y"], table=table, min_score=0.97,
                 executor="serial")
    assert res.feasible and res.measured["measured_score"] >= 0.97
    assert res.solution.predicted_score >= 0.97 - 1e-12
    assert res.measured["measured_bytes"] < res.base["bytes"] / 2     # it did compress
    assert res.config["layers"]["fc1.weight"] is not None
    res2 = P.plan(mlp["model"], mlp["x"], mlp["y"], table=table, budget_ratio=10,
                  executor="serial", refine=0)
    assert res2.measured["measured_bytes"] <= mlp["model"].fp32_bytes / 10
    assert res2.evaluations["refine"] == 0
    with pytest.raises(EncodeError, match="no plan meets"):
        P.plan(mlp["model"], mlp["x"], mlp["y"], table=table, budget_bytes=100,
               executor="serial")
    with pytest.raises(EncodeError, match="exactly one"):
        P.plan(mlp["model"], mlp["x"], mlp["y"], table=table, executor="serial")


def test_cli_writes_config_and_png(mlp, tmp_path, capsys):
    from czmodel.cli.plan import main, parse_size

    assert parse_size("1MB") == 10**6 and parse_size("1.5KiB") == 1536
    assert parse_size("20000") == 20000
    cfg, png = tmp_path / "plan.json", tmp_path / "pareto.png"
    code = main(["plan", mlp["path"], "--data", str(mlp["dir"] / "calib.npz"),
                 "--budget-ratio", "6", "--layer", "*=fp32,int8,k4,p70-k4", "--executor",
                 "serial", "-o", str(cfg), "--plot", str(png), "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["feasible"] and out["measured"]["ratio"] >= 6
    assert out["evaluations"]["profile"] == 6
    assert json.loads(cfg.read_text()) == out["config"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000
    code = main(["plan", mlp["path"], "--data", str(mlp["dir"] / "calib.npz"),
                 "--min-accuracy", "0.9", "--candidates", "small", "--executor", "serial",
                 "-o", str(tmp_path / "p.yaml")])
    assert code == 0
    text = capsys.readouterr().out
    assert "accuracy" in text and "cz compress" in text
    assert CompressionConfig.from_file(tmp_path / "p.yaml").layers
    # bad input: one line on stderr, exit 1
    for bad in (["--budget-size", "12 parsecs"], ["--budget-size", "10"]):
        assert main(["plan", mlp["path"], "--data", str(mlp["dir"] / "calib.npz"), *bad,
                     "--executor", "serial", "-o", str(cfg)]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("cz plan: error: EncodeError") and "\n" not in err
    # through the cz entry point (czmodel.cli.main wires add_parser)
    from czmodel.cli.main import main as cz_main

    assert cz_main(["plan", mlp["path"], "--data", str(mlp["dir"] / "calib.npz"),
                    "--budget-size", "9kB", "--layer", "*=int8,k4,p70-k4", "--executor",
                    "serial", "--refine", "0", "-o", str(tmp_path / "cz.json")]) == 0
    assert "evaluations: 6 profile + 0 refine" in capsys.readouterr().out
    assert cz_main(["plan", mlp["path"], "--data", str(mlp["dir"] / "calib.npz"),
                    "--budget-size", "1kB", "--executor", "serial", "-o",
                    str(tmp_path / "cz.json")]) == 1
    assert "no plan meets a file of at most 1,000 bytes" in capsys.readouterr().err
    np.savez(tmp_path / "nolabels.npz", x=mlp["x"])
    assert main(["plan", mlp["path"], "--data", str(tmp_path / "nolabels.npz"),
                 "--min-accuracy", "0.9", "-o", str(cfg)]) == 1
    assert "needs labels" in capsys.readouterr().err


def test_latency_budget_and_progress_bar(mlp, table, monkeypatch, capsys):
    lat = {k: dict(zip(CANDS, table.latency_ms[k])) for k in table.layer_names}
    budget = lat["fc1.weight"]["k4"] + lat["fc2.weight"]["k4"]
    res = P.plan(mlp["model"], mlp["x"], mlp["y"], table=table, budget_latency_ms=budget,
                 executor="serial", refine=0)
    assert res.solution.predicted_latency_ms <= budget + 1e-9
    assert res.constraint == {"budget_latency_ms": budget}
    no_lat = P.SensitivityTable.from_dict({**table.to_dict(), "latency_ms": {
        k: [None] * len(CANDS) for k in table.layer_names}})
    with pytest.raises(EncodeError, match="no latencies"):
        P.solve(no_lat, budget_latency_ms=1.0)
    monkeypatch.setenv("CZ_PROGRESS", "1")
    space = P.Space({k: v[:2] for k, v in mlp["space"].candidates.items()})
    P.profile(mlp["model"], mlp["x"][:50], P.LogitKL(), space, executor="serial",
              latency=False)
    err = capsys.readouterr().err
    assert "profiling" in err and "/4" in err
