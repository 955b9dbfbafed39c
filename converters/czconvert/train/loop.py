"""The shared training loop: seeded, deterministic data order, progress bars, hooks, KD.

Hooks are objects with optional ``after_backward(model)`` and ``after_step(model)`` methods
(a ``Pruner`` zeroes pruned gradients and re-applies masks; a ``TrainedQuantizer`` turns
weight gradients into centroid gradients). Progress bars come from ``czmodel.progress``
(rich on a terminal, nothing when stderr is piped).
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from czmodel.progress import progress

from .distill import kd_loss


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy's legacy global generator and torch."""
    random.seed(seed)
    np.random.seed(seed % (1 << 32))
    torch.manual_seed(seed)


def batch_order(n: int, batch_size: int, seed: int, epoch: int,
                shuffle: bool = True) -> list[torch.Tensor]:
    """Index batches of one epoch: a function of (seed, epoch) only."""
    if shuffle:
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
        perm = torch.randperm(n, generator=g)
    else:
        perm = torch.arange(n)
    return list(perm.split(batch_size))


def _as_tensor(a: Any, dtype=None) -> torch.Tensor:
    t = a if torch.is_tensor(a) else torch.as_tensor(np.asarray(a))
    return t.to(dtype) if dtype is not None else t


def train(model: torch.nn.Module, x: Any, y: Any, *, epochs: float = 1, lr: float = 1e-3,
          batch_size: int = 128, optimizer: str = "adam", momentum: float = 0.9,
          weight_decay: float = 0.0, seed: int = 0, params: Sequence | None = None,
          teacher_logits: Any = None, T: float = 4.0, lam: float = 0.5,
          regularizer: Callable[[torch.nn.Module], torch.Tensor] | None = None,
          hooks: Sequence[Any] = (), cosine: bool = True, desc: str = "train",
          progress_bar: bool | None = None, epoch_offset: int = 0) -> dict:
    """Train ``model`` on ``(x, y)``; returns ``{"loss": [...per epoch], "seconds": s}``.

    ``epochs`` may be fractional (the last epoch stops early). ``teacher_logits`` (one row
    per training example, e.g. the uncompressed model's outputs) switch on distillation with
    ``kd_loss(..., T, lam)``. ``regularizer(model)`` is added to the loss (L1/L2, see
    ``prune.regularization``). The batch order depends only on ``seed`` and the epoch.
    """
    x = _as_tensor(x, torch.float32)
    y = _as_tensor(y, torch.long)
    tl = None if teacher_logits is None else _as_tensor(teacher_logits, torch.float32)
    ps = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    if optimizer == "adam":
        opt = torch.optim.Adam(ps, lr=lr, weight_decay=weight_decay)
    elif optimizer == "sgd":
        opt = torch.optim.SGD(ps, lr=lr, momentum=momentum, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
    n = len(x)
    steps_per_epoch = math.ceil(n / batch_size)
    total_steps = max(1, int(round(epochs * steps_per_epoch)))
    sched = (torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / total_steps)))
        if cosine else None)
    history: dict[str, Any] = {"loss": []}
    t0 = time.perf_counter()
    model.train()
    step = 0
    for ep in range(math.ceil(epochs)):
        batches = batch_order(n, batch_size, seed, epoch_offset + ep)
        batches = batches[:total_steps - step]
        bar = progress(batches, len(batches), f"{desc} {ep + 1}/{math.ceil(epochs)}",
                       progress_bar)
        tot, cnt = 0.0, 0
        for idx in bar:
            out = model(x[idx])
            loss = kd_loss(out, None if tl is None else tl[idx], y[idx], T, lam)
            if regularizer is not None:
                loss = loss + regularizer(model)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            for h in hooks:
                if hasattr(h, "after_backward"):
                    h.after_backward(model)
            opt.step()
            for h in hooks:
                if hasattr(h, "after_step"):
                    h.after_step(model)
            if sched is not None:
                sched.step()
            step += 1
            tot += float(loss.detach()) * len(idx)
            cnt += len(idx)
            if step % 20 == 0:
                bar.set_postfix_str(f"loss {tot / cnt:.4f}")
        history["loss"].append(tot / max(cnt, 1))
    model.eval()
    history["seconds"] = time.perf_counter() - t0
    return history


@torch.no_grad()
def predict(model: torch.nn.Module, x: Any, batch_size: int = 1000) -> torch.Tensor:
    """Logits of ``model`` on ``x`` in eval mode."""
    x = _as_tensor(x, torch.float32)
    was = model.training
    model.eval()
    out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was)
    return out


def evaluate(model: torch.nn.Module, x: Any, y: Any, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``model`` on ``(x, y)``: correct / total as a Python float (the
    same value numpy's ``(pred == y).mean()`` gives, so results compare exactly)."""
    y = _as_tensor(y, torch.long)
    return int((predict(model, x, batch_size).argmax(1) == y).sum()) / max(len(y), 1)
