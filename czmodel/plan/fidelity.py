"""Fidelity of a model whose weights are (partly) replaced by their compressed forms.

Metrics (higher is better; the planner's *loss* is ``base score - score``):

* ``Accuracy(labels)``: top-1 accuracy of the output's argmax on a labelled set;
* ``LogitKL()``: minus the mean KL(softmax(fp32) || softmax(compressed)) of the logits;
* ``Cosine(pool=..., mask=...)``: the mean per-sample cosine between the fp32 and the
  compressed outputs (embeddings; ``pool="mean"`` mean-pools axis 1 first, weighted by the
  ``mask`` input, e.g. ``attention_mask``).

How a (layer, candidate) is evaluated cheaply and correctly (``Runner``): the fp32 model is
run once on the calibration set in our runtime (the Numba backend, op by op, one thread)
keeping every intermediate value. A candidate's tensor is compressed exactly as the
compression step will, written to a one-tensor ``.cz`` in memory, and turned into the
kernel form the runtime runs from (``backend.prepare_weight``: codebook / sparse / int8
forms, never a dense copy); then only the nodes downstream of that weight are run again.
So the measurement includes the runtime's own arithmetic (e.g. int8 layers quantize their
activations dynamically) at the cost of the layer's suffix of the graph. The final joint
evaluation of a plan runs the real compressed ``.cz`` through ``czmodel.load``
(``czmodel.plan.planner``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from czmodel.errors import EncodeError, UnsupportedError


# -- metrics ------------------------------------------------------------------------------
class Metric:
    """Base: ``score(out, base, feeds)`` of one output array (all samples)."""

    name = "metric"
    unit = ""

    def __init__(self, output: str | None = None) -> None:
        self.output = output

    def score(self, out: np.ndarray, base: np.ndarray, feeds: Mapping[str, np.ndarray]
              ) -> float:  # pragma: no cover - every metric overrides
        raise NotImplementedError

    def to_dict(self) -> dict:
        return {"name": self.name, "output": self.output}


class Accuracy(Metric):
    """Top-1 accuracy; ``index`` restricts it to those samples (labels cover all)."""

    name = "accuracy"

    def __init__(self, labels: Any, output: str | None = None, index: Any = None) -> None:
        super().__init__(output)
        self.labels = np.asarray(labels).reshape(-1).astype(np.int64)
        self.index = None if index is None else np.asarray(index, np.int64)

    def score(self, out, base, feeds):
        pred = np.asarray(out).reshape(len(self.labels), -1).argmax(1)
        ok = pred == self.labels
        return float((ok if self.index is None else ok[self.index]).mean())


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z.astype(np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


class LogitKL(Metric):
    name = "kl"

    def score(self, out, base, feeds):
        lp, lq = _log_softmax(np.asarray(base)), _log_softmax(np.asarray(out))
        kl = (np.exp(lp) * (lp - lq)).sum(-1)
        return -float(kl.mean())


class Cosine(Metric):
    name = "cosine"

    def __init__(self, output: str | None = None, pool: str | None = None,
                 mask: str | None = None) -> None:
        super().__init__(output)
        if pool not in (None, "mean"):
            raise EncodeError(f"cosine pool {pool!r}: use None or 'mean'")
        self.pool, self.mask = pool, mask

    def _pooled(self, a: np.ndarray, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        a = np.asarray(a, np.float64)
        if self.pool == "mean" and a.ndim >= 3:
            if self.mask is not None:
                m = np.asarray(feeds[self.mask], np.float64).reshape(a.shape[:2] + (1,) *
                                                                      (a.ndim - 2))
                a = (a * m).sum(1) / np.maximum(m.sum(1), 1e-9)
            else:
                a = a.mean(1)
        return a.reshape(a.shape[0], -1)

    def score(self, out, base, feeds):
        a, b = self._pooled(out, feeds), self._pooled(base, feeds)
        num = (a * b).sum(1)
        den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(den > 0, num / np.maximum(den, 1e-300), 1.0)
        return float(cos.mean())

    def to_dict(self) -> dict:
        return {**super().to_dict(), "pool": self.pool, "mask": self.mask}


def make_metric(kind: str | None, labels: Any = None, output_rank: int = 2,
                output: str | None = None, pool: str | None = None,
                mask: str | None = None) -> Metric:
    """``kind`` None: accuracy when labels are given, else KL for (N, classes) logits and
    cosine for anything else."""
    if kind is None:
        kind = "accuracy" if labels is not None else ("kl" if output_rank == 2 else "cosine")
    if kind == "accuracy":
        if labels is None:
            raise EncodeError("the accuracy metric needs labels (y in the data file)")
        return Accuracy(labels, output)
    if kind == "kl":
        return LogitKL(output)
    if kind == "cosine":
        return Cosine(output, pool, mask)
    raise EncodeError(f"metric {kind!r}: use accuracy, kl or cosine")


# -- the incremental runner --------------------------------------------------------------------
class Runner:
    """Runs ``model`` op by op on ``feeds`` (in chunks of ``batch`` samples) keeping every
    intermediate; ``run(subs)`` re-runs only the nodes downstream of substituted weights."""

    def __init__(self, model: Any, feeds: Mapping[str, np.ndarray], batch: int = 1024,
                 backend: str = "numba", threads: int | None = 1) -> None:
        import czmodel
        from czmodel.format.writer import build_file
        from czmodel.graph.ops import OPS, resolve_attrs
        from czmodel.runtime.model import backend_class

        from .model import split_batches

        try:
            be = backend_class(backend)(threads=threads)
        except ValueError as e:
            raise UnsupportedError(str(e)) from None
        if hasattr(be, "load_model"):
            raise UnsupportedError(f"backend {backend!r} runs whole graphs; profiling needs an "
                                   "op-by-op backend (numba or reference)")
        self.backend = be
        self.model = model
        graph = model.graph
        self.uses = model.uses()
        self._base_file = czmodel.open(build_file({k: model.tensors[k] for k in self.uses}))
        self.weights = {n: be.prepare_weight(n, self._base_file, u) for n, u in self.uses.items()}
        self.nodes = graph.nodes
        self._attrs = [resolve_attrs(n) for n in self.nodes]
        self._fns = [be.op(n.op) for n in self.nodes]
        self._pad = [0 if n.op == "Concat" else OPS[n.op].max_inputs for n in self.nodes]
        self.chunks = split_batches(feeds, batch)
        self.feeds = dict(feeds)
        self._affected: dict[frozenset, list[int]] = {}
        self.envs = [self._run(dict(ch), range(len(self.nodes)), {}) for ch in self.chunks]

    def _run(self, env: dict, order: Any, subs: Mapping[str, Any]) -> dict:
        for i in order:
            n = self.nodes[i]
            args = [(subs[s] if s in subs else self.weights[s] if s in self.weights else env[s])
                    if s else None for s in n.inputs]
            if len(args) < self._pad[i]:
                args.extend([None] * (self._pad[i] - len(args)))
            for s, r in zip(n.outputs, self._fns[i](args, self._attrs[i], n)):
                env[s] = r
        return env

    def affected(self, names: Any) -> list[int]:
        """Indices of the nodes that read any of ``names`` or a value computed from them."""
        key = frozenset(names)
        if key not in self._affected:
            dirty, out = set(key), []
            for i, n in enumerate(self.nodes):
                if any(s in dirty for s in n.inputs if s):
                    out.append(i)
                    dirty.update(n.outputs)
            self._affected[key] = out
        return self._affected[key]

    def prepare(self, name: str, data: bytes) -> Any:
        """The runtime's kernel form of tensor ``name`` from a one-tensor .cz (bytes)."""
        import czmodel

        f = czmodel.open(data)
        form = self.backend.prepare_weight(name, f, self.uses[name])
        if isinstance(form, np.ndarray):
            form = np.array(form)           # own the memory: the file may go away
        return form

    def run(self, subs: Mapping[str, Any], envs: list[dict] | None = None,
            changed: Any = None) -> list[dict]:
        """New per-chunk envs with ``subs`` (name -> prepared weight) in place of the fp32
        weights. Only the nodes downstream of ``changed`` (default: every name in ``subs``)
        are recomputed, starting from ``envs`` (default: the fp32 run) -- so ``envs`` must
        already reflect ``subs`` outside ``changed``."""
        order = self.affected(subs if changed is None else changed)
        return [self._run(dict(e), order, subs) for e in (envs or self.envs)]

    def output(self, envs: list[dict] | None = None, name: str | None = None) -> np.ndarray:
        name = name or self.model.graph.outputs[0].name
        parts = [e[name] for e in (envs or self.envs)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def score(self, metric: Metric, envs: list[dict] | None = None) -> float:
        out = self.output(envs, metric.output)
        base = self.output(None, metric.output)
        s = metric.score(out, base, self.feeds)
        if not math.isfinite(s):
            s = -math.inf
        return s
