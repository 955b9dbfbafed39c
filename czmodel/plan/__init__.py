"""The planner: per-layer sparsity, bits and ranks from a budget.

    import czmodel.plan as P

    table = P.profile("model.onnx", x, P.Accuracy(y))          # layer x candidate table
    sol = P.solve(table, budget_bytes=100_000)                  # exact multiple-choice knapsack
    res = P.plan("model.onnx", x, y, budget_ratio=40)           # profile + solve + joint check
    res.save_config("plan.json")                                # -> cz compress --config plan.json
    res.plot("pareto.png")

Modules: ``space`` (candidates, configs, exact bytes), ``fidelity`` (metrics, the
incremental runner), ``latency``, ``executors`` (serial / process pool / Dask),
``sensitivity`` (profiling and its table), ``solver`` (Pareto DP and Lagrangian), ``planner`` (joint
evaluation and correction), ``plots``.
"""

from __future__ import annotations

from .executors import DaskExecutor, Executor, ProcessExecutor, SerialExecutor, make_executor
from .fidelity import Accuracy, Cosine, LogitKL, Metric, Runner, make_metric
from .model import PlanModel
from .planner import Planner, PlanResult, plan
from .sensitivity import SensitivityTable, profile
from .solver import Solution, front, lagrangian, pareto_front, solve
from .space import Candidate, Space, build_config, parse_label

__all__ = [
    "Accuracy", "Candidate", "Cosine", "DaskExecutor", "Executor", "LogitKL", "Metric",
    "PlanModel", "PlanResult", "Planner", "ProcessExecutor", "Runner", "SensitivityTable",
    "SerialExecutor", "Solution", "Space", "build_config", "front", "lagrangian",
    "make_executor", "make_metric", "pareto_front", "parse_label", "plan", "profile", "solve",
]
