"""Trained quantization (Deep Compression, Han et al. 2016, section 3).

Each layer's kept weights are clustered with 1-D k-means (linear init, the paper's choice:
``czmodel.compress.kmeans``); then the centroids are fine-tuned while the cluster indices
stay fixed. The gradient of a centroid is the sum of the gradients of the weights that
share it: dL/dc_k = sum_{i: idx_i = k} dL/dW_i. Pruned weights stay exactly zero.

Layers stored sparse keep ``2**bits`` centroids for the kept weights. A lightly pruned layer
(density above the pipeline's sparse threshold) is stored dense, so its codebook reserves
index 0 for the value 0.0 (never trained) and clusters the kept weights into the other
``2**bits - 1`` centroids, as ``czmodel.compress.kmeans.share_weights`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from czmodel.compress import kmeans as K
from czmodel.compress.pipeline import _SPARSE_DENSITY_MAX


@dataclass
class Codebook:
    """One layer's shared weights: ``W = where(mask, centroids[indices], 0)``."""

    mask: np.ndarray            # bool, the weight's shape (True = kept)
    indices: np.ndarray         # uint8, the weight's shape (0 at pruned positions)
    centroids: np.ndarray       # float32 (k,)
    bits: int
    zero_reserved: bool         # centroids[0] == 0 is the pruned value (dense storage)

    def decode(self) -> np.ndarray:
        return np.where(self.mask, self.centroids[self.indices], np.float32(0)).astype(
            np.float32)


def centroid_grad(weight_grad: torch.Tensor, indices: torch.Tensor, mask: torch.Tensor,
                  k: int) -> torch.Tensor:
    """Sum of the gradients of the kept weights sharing each centroid (length ``k``)."""
    sel = mask.flatten()
    return torch.zeros(k, dtype=weight_grad.dtype).index_add_(
        0, indices.flatten()[sel], weight_grad.flatten()[sel])


class TrainedQuantizer:
    """k-means weight sharing with centroid fine-tuning (a ``loop.train`` hook).

    ``bits``: weight name -> bits. ``masks``: name -> kept mask (default: the non-zeros).
    Use it as a hook in ``loop.train``: after backward it turns each shared weight's gradient
    into centroid gradients (and clears the weight gradient so the main optimizer leaves the
    weight alone); after the step it updates the centroids with its own optimizer and writes
    ``W = centroids[indices]`` back (0 where pruned). Other parameters (biases) train as usual.
    """

    def __init__(self, model: torch.nn.Module, bits: Mapping[str, int],
                 masks: Mapping[str, torch.Tensor] | None = None, *, lr: float = 1e-4,
                 optimizer: str = "adam", init: str = "linear") -> None:
        params = dict(model.named_parameters())
        self.params = {n: params[n] for n in bits}
        self.bits = {n: int(b) for n, b in bits.items()}
        self.masks: dict[str, torch.Tensor] = {}
        self.indices: dict[str, torch.Tensor] = {}
        self.centroids: dict[str, torch.Tensor] = {}
        self.zero_reserved: dict[str, bool] = {}
        self.initial: dict[str, np.ndarray] = {}
        for n, p in self.params.items():
            w = p.detach().cpu().numpy().astype(np.float32)
            m = (masks or {}).get(n)
            m = (w != 0) if m is None else np.asarray(m.cpu() if torch.is_tensor(m) else m,
                                                      bool)
            b = self.bits[n]
            reserve = (not m.all()) and m.mean() > _SPARSE_DENSITY_MAX
            if reserve:
                idx, cent = K.share_weights(w, b, mask=m, init=init)
            else:
                idx = np.zeros(w.shape, np.uint8)
                cent = np.zeros(1 << b, np.float32)
                if m.any():
                    cent, kidx = K.kmeans_1d(w[m], b, init=init)
                    idx[m] = kidx
            self.masks[n] = torch.from_numpy(m.copy())
            self.indices[n] = torch.from_numpy(idx.astype(np.int64))
            self.centroids[n] = torch.tensor(cent, dtype=torch.float32, requires_grad=True)
            self.zero_reserved[n] = bool(reserve)
            self.initial[n] = cent.copy()
        cs = list(self.centroids.values())
        if optimizer == "adam":
            self.opt = torch.optim.Adam(cs, lr=lr)
        elif optimizer == "sgd":
            self.opt = torch.optim.SGD(cs, lr=lr, momentum=0.9)
        else:
            raise ValueError(f"optimizer must be 'adam' or 'sgd', got {optimizer!r}")
        self.write_weights()

    @torch.no_grad()
    def write_weights(self) -> None:
        for n, p in self.params.items():
            c = self.centroids[n]
            if self.zero_reserved[n]:
                c[0] = 0.0
            w = torch.where(self.masks[n], c[self.indices[n]], torch.zeros(()))
            p.copy_(w.to(p.dtype))

    def after_backward(self, _model=None) -> None:
        for n, p in self.params.items():
            c = self.centroids[n]
            if p.grad is None:
                c.grad = torch.zeros_like(c)
                continue
            c.grad = centroid_grad(p.grad, self.indices[n], self.masks[n], c.numel())
            if self.zero_reserved[n]:
                c.grad[0] = 0.0
            p.grad = None          # the weight itself is not a free parameter any more

    def after_step(self, _model=None) -> None:
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.write_weights()

    def codebooks(self) -> dict[str, Codebook]:
        out = {}
        for n in self.params:
            c = self.centroids[n].detach().numpy().astype(np.float32).copy()
            if self.zero_reserved[n]:
                c[0] = 0.0
            out[n] = Codebook(self.masks[n].numpy().copy(),
                              self.indices[n].numpy().astype(np.uint8), c, self.bits[n],
                              self.zero_reserved[n])
        return out
