"""Iterative magnitude pruning with retraining (Han et al. 2015, "Learning both weights
and connections").

Prune the smallest-magnitude weights of each layer, retrain with the masks held (pruned
weights get zero gradient and are re-zeroed after every optimizer step, so momentum, weight
decay or Adam state cannot revive them), repeat on a schedule of growing sparsity. L1/L2
regularisation (``regularization``) is the paper's option: L2 is the better choice with
retraining, L1 without.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import torch


def named_weights(model: torch.nn.Module, names: Sequence[str] | None = None
                  ) -> dict[str, torch.nn.Parameter]:
    """``{name: parameter}`` for ``names`` (default: the weights of Linear and Conv layers)."""
    params = dict(model.named_parameters())
    if names is not None:
        return {n: params[n] for n in names}
    out = {}
    for mname, m in model.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            n = f"{mname}.weight" if mname else "weight"
            out[n] = params[n]
    return out


def magnitude_mask(w: torch.Tensor, keep: float, current: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Bool mask keeping the ``keep`` fraction of ``w`` with the largest |w| (ties: first).

    With ``current``, already-pruned weights stay pruned."""
    if not 0.0 <= keep <= 1.0:
        raise ValueError(f"keep must be in [0, 1], got {keep}")
    a = w.detach().abs().flatten()
    if current is not None:
        a = torch.where(current.flatten(), a, torch.full_like(a, -1.0))
    k = int(round(keep * a.numel()))
    mask = torch.zeros(a.numel(), dtype=torch.bool)
    if k > 0:
        mask[torch.topk(a, k, sorted=False).indices] = True
    if current is not None:
        mask &= current.flatten()
    return mask.view_as(w)


def magnitude_masks(model: torch.nn.Module, keep: Mapping[str, float],
                    current: Mapping[str, torch.Tensor] | None = None
                    ) -> dict[str, torch.Tensor]:
    params = named_weights(model, list(keep))
    return {n: magnitude_mask(p, keep[n], (current or {}).get(n)) for n, p in params.items()}


def regularization(params: Sequence[torch.Tensor], l1: float = 0.0, l2: float = 0.0
                   ) -> Callable[[torch.nn.Module], torch.Tensor]:
    """A ``regularizer(model)`` for ``loop.train``: l1 * sum|w| + l2 * sum w^2."""
    ps = list(params)

    def reg(_model: torch.nn.Module) -> torch.Tensor:
        total = torch.zeros(())
        for p in ps:
            if l1:
                total = total + l1 * p.abs().sum()
            if l2:
                total = total + l2 * p.pow(2).sum()
        return total
    return reg


class Pruner:
    """Holds per-layer masks and enforces them (a ``loop.train`` hook)."""

    def __init__(self, model: torch.nn.Module, masks: Mapping[str, torch.Tensor] | None = None
                 ) -> None:
        self.params = dict(model.named_parameters())
        self.masks: dict[str, torch.Tensor] = {}
        if masks:
            self.set_masks(masks)

    def set_masks(self, masks: Mapping[str, torch.Tensor]) -> None:
        for n, m in masks.items():
            if m.shape != self.params[n].shape:
                raise ValueError(f"mask {n}: shape {tuple(m.shape)} != "
                                 f"{tuple(self.params[n].shape)}")
            self.masks[n] = m.to(torch.bool)
        self.apply()

    def prune(self, keep: Mapping[str, float]) -> dict[str, torch.Tensor]:
        """Prune each named weight to its ``keep`` fraction (of all its weights)."""
        model_masks = {}
        for n, k in keep.items():
            model_masks[n] = magnitude_mask(self.params[n], k, self.masks.get(n))
        self.set_masks(model_masks)
        return model_masks

    @torch.no_grad()
    def apply(self) -> None:
        for n, m in self.masks.items():
            self.params[n].mul_(m)

    def after_backward(self, _model=None) -> None:
        for n, m in self.masks.items():
            g = self.params[n].grad
            if g is not None:
                g.mul_(m)

    def after_step(self, _model=None) -> None:
        self.apply()

    def kept(self) -> dict[str, float]:
        return {n: float(m.float().mean()) for n, m in self.masks.items()}


def keep_schedule(target: float, steps: int) -> list[float]:
    """Geometric keep fractions reaching ``target`` in ``steps`` prune/retrain rounds."""
    if steps < 1:
        raise ValueError("steps must be >= 1")
    return [float(target ** ((i + 1) / steps)) for i in range(steps)]


def iterative_prune(model: torch.nn.Module, targets: Mapping[str, float], steps: int,
                    retrain: Callable[[int, Pruner], object] | None,
                    pruner: Pruner | None = None) -> Pruner:
    """Prune to ``targets`` (name -> kept fraction) in ``steps`` rounds, calling
    ``retrain(round, pruner)`` after each (pass ``pruner`` to ``loop.train`` as a hook)."""
    pr = pruner or Pruner(model)
    sched = {n: keep_schedule(t, steps) for n, t in targets.items()}
    for i in range(steps):
        pr.prune({n: s[i] for n, s in sched.items()})
        if retrain is not None:
            retrain(i, pr)
    return pr
