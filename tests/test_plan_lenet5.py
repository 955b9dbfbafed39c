"""The planner on LeNet-5 / Fashion-MNIST against an exhaustive grid: bench/plan_lenet5.py
--quick end to end (81-point grid, 500 calibration images; about a minute). The full proof
(625 points, 2,000 calibration images, 10,000 test images) is ``python bench/plan_lenet5.py``
and its JSON in bench/results/plan_lenet5.json."""

from __future__ import annotations

import importlib.util
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench():
    spec = importlib.util.spec_from_file_location("bench_plan_lenet5",
                                                  os.path.join(ROOT, "bench", "plan_lenet5.py"))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_plan_lenet5_quick(tmp_path):
    if not os.path.isdir("/usr/share/datasets/fashion-mnist"):
        pytest.skip("apt package dataset-fashion-mnist not installed")
    out = tmp_path / "plan.json"
    _bench().main(["--quick", "--workers", "2", "--out", str(out), "--plot", ""])
    res = json.loads(out.read_text())
    assert res["grid_points"] == 81 and res["grid"]["evaluations"] == 81
    assert res["grid"]["subset_scores_agree"]
    for r in res["budgets_results"]:
        p, g = r["planner"], r["grid_best"]
        assert p["bytes"] <= r["budget_bytes"] and g["bytes"] <= r["budget_bytes"]
        # the grid's numbers (incremental runner) are those of the real .cz
        assert g["test_accuracy_real_cz"] == pytest.approx(g["test_accuracy"], abs=1e-9)
        assert p["evaluations"] < res["grid"]["evaluations"]
        # 500 calibration images: loose (the full run's target is 0.2 points)
        assert r["diff_points"] <= 0.6, r
        assert p["test_accuracy"] >= r["grid_best_by_calibration"]["test_accuracy"] - 0.006
