"""Quantization-aware fine-tuning with a straight-through estimator (STE).

``prepare_qat(model, "int8" | "binary" | "ternary")`` registers a parametrization on the
weights of Linear / Conv layers: the forward pass uses the quantized weight q(w), the
backward pass treats q as the identity, so the latent fp32
weights keep learning (BinaryConnect / BWN / TWN style). ``finalize_qat`` bakes the
quantized weights in; ``qat_codebook`` gives the (indices, centroids) to store them exactly.

* int8: symmetric, per output channel, scale = max|w| / 127;
* binary (BWN): alpha * sign(w), alpha = mean|w| per output channel;
* ternary (TWN): delta = 0.7 * mean|w|; alpha * sign(w) where |w| > delta, else 0, alpha
  = mean of the |w| above delta (per output channel).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch.nn.utils import parametrize

METHODS = ("int8", "binary", "ternary")


def _rows(w: torch.Tensor) -> torch.Tensor:
    return w.reshape(w.shape[0], -1)


def _bcast(v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return v.reshape((w.shape[0],) + (1,) * (w.dim() - 1))


def quantize_int8(w: torch.Tensor) -> torch.Tensor:
    scale = _bcast(_rows(w).abs().amax(1).clamp_min(1e-12) / 127.0, w)
    return torch.clamp(torch.round(w / scale), -127, 127) * scale


def quantize_binary(w: torch.Tensor) -> torch.Tensor:
    alpha = _bcast(_rows(w).abs().mean(1), w)
    return torch.where(w >= 0, alpha, -alpha)


def quantize_ternary(w: torch.Tensor, t: float = 0.7) -> torch.Tensor:
    a = _rows(w).abs()
    delta = t * a.mean(1, keepdim=True)
    big = a > delta
    alpha = (a * big).sum(1) / big.sum(1).clamp_min(1)
    q = torch.sign(_rows(w)) * big * alpha[:, None]
    return q.reshape(w.shape)


_FN = {"int8": quantize_int8, "binary": quantize_binary, "ternary": quantize_ternary}


class _STE(torch.autograd.Function):
    @staticmethod
    def forward(ctx, w, q):
        return q.detach().clone()

    @staticmethod
    def backward(ctx, g):
        return g, None


def ste(w: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Forward exactly ``q``, backward the identity to ``w`` (the straight-through
    estimator; ``w + (q - w).detach()`` would not give ``q`` bit-exactly)."""
    return _STE.apply(w, q)


class FakeQuant(torch.nn.Module):
    """Parametrization: weight -> STE(quantize(weight)), optionally masked (pruned = 0)."""

    def __init__(self, method: str, mask: torch.Tensor | None = None) -> None:
        super().__init__()
        if method not in METHODS:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
        self.method = method
        self.register_buffer("mask", None if mask is None else mask.to(torch.bool))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        if self.mask is not None:
            w = w * self.mask
        q = _FN[self.method](w)
        if self.mask is not None:
            q = q * self.mask
        return ste(w, q)


def _layers(model: torch.nn.Module, names: Sequence[str] | None):
    for mname, m in model.named_modules():
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)):
            full = f"{mname}.weight"
            if names is None or full in names:
                yield full, m


def prepare_qat(model: torch.nn.Module, method: str, names: Sequence[str] | None = None,
                masks: dict[str, torch.Tensor] | None = None) -> list[str]:
    """Register fake quantization on the weights of ``names`` (default: every Linear /
    Conv). Returns the parametrized weight names."""
    done = []
    for full, m in _layers(model, names):
        parametrize.register_parametrization(m, "weight",
                                             FakeQuant(method, (masks or {}).get(full)))
        done.append(full)
    return done


def finalize_qat(model: torch.nn.Module) -> None:
    """Replace every fake-quantized weight by its quantized value (removes the STE)."""
    for _, m in list(model.named_modules()):
        if parametrize.is_parametrized(m, "weight"):
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)


def qat_codebook(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(uint8 indices, per-channel centroids (C, k)) that represent a finalized binary or
    ternary weight exactly (``czmodel.codecs.codebook(..., axis=0)``)."""
    w = np.asarray(w, np.float32)
    rows = w.reshape(w.shape[0], -1)
    vals = [np.unique(r) for r in rows]
    k = max(len(v) for v in vals)
    if k > 256:
        raise ValueError(f"{k} distinct values per channel: not a small codebook")
    cents = np.zeros((rows.shape[0], k), np.float32)
    idx = np.zeros(rows.shape, np.uint8)
    for i, v in enumerate(vals):
        cents[i, :len(v)] = v
        cents[i, len(v):] = v[-1]
        idx[i] = np.searchsorted(v, rows[i])
    return idx.reshape(w.shape), cents
