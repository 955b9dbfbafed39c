"""Train the demo model shipped in czmodel/data/: LeNet-300-100 on Fashion-MNIST, in numpy,
with Han et al.'s iterative pruning (prune, retrain with masks held, repeat).

The result is what a user has after pruning in their framework: a checkpoint with zeros
stored as fp32 (as big as the dense one). ``cz demo`` turns it into a small .cz file.
Run: python bench/make_demo_model.py   (about two minutes on 2 cores)
"""

from __future__ import annotations

import importlib.util  # noqa: E402
import os

import numpy as np

# Load czmodel/datasets.py on its own: training needs nothing else from the package.
_spec = importlib.util.spec_from_file_location(
    "czmodel_datasets", os.path.join(os.path.dirname(__file__), "..", "czmodel", "datasets.py"))
_mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
load_fashion_mnist = _mod.load_fashion_mnist

OUT = os.path.join(os.path.dirname(__file__), "..", "czmodel", "data", "lenet300_fmnist.npz")
SIZES = [784, 300, 100, 10]
SPARSITY_SCHEDULE = [0.5, 0.75, 0.85, 0.9]   # fraction pruned after each stage (fc layers)


def forward(params, x):
    acts = [x]
    h = x
    for i in range(3):
        h = h @ params[f"fc{i+1}.weight"].T + params[f"fc{i+1}.bias"]
        if i < 2:
            h = np.maximum(h, 0)
        acts.append(h)
    return acts


def train(params, masks, x, y, epochs, rng, lr=1e-3):
    m = {k: np.zeros_like(v) for k, v in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    t = 0
    n = len(x)
    for _ in range(epochs):
        order = rng.permutation(n)
        for s in range(0, n, 128):
            idx = order[s:s + 128]
            xb, yb = x[idx], y[idx]
            acts = forward(params, xb)
            logits = acts[-1]
            p = np.exp(logits - logits.max(1, keepdims=True))
            p /= p.sum(1, keepdims=True)
            g = p
            g[np.arange(len(yb)), yb] -= 1
            g /= len(yb)
            grads = {}
            for i in (2, 1, 0):
                grads[f"fc{i+1}.weight"] = g.T @ acts[i]
                grads[f"fc{i+1}.bias"] = g.sum(0)
                if i:
                    g = (g @ params[f"fc{i+1}.weight"]) * (acts[i] > 0)
            t += 1
            for k in params:
                m[k] = 0.9 * m[k] + 0.1 * grads[k]
                v[k] = 0.999 * v[k] + 0.001 * grads[k] ** 2
                step = lr * (m[k] / (1 - 0.9 ** t)) / (np.sqrt(v[k] / (1 - 0.999 ** t)) + 1e-8)
                params[k] -= step.astype(np.float32)
                if k in masks:
                    params[k] *= masks[k]   # pruned weights stay exactly zero


def accuracy(params, x, y):
    return float((forward(params, x)[-1].argmax(1) == y).mean())


def main() -> None:
    rng = np.random.default_rng(0)
    xtr, ytr, xte, yte = load_fashion_mnist()
    xtr = xtr.reshape(len(xtr), -1).astype(np.float32) / 255.0
    xtf = xte.reshape(len(xte), -1).astype(np.float32) / 255.0
    params = {}
    for i in range(3):
        fan_in = SIZES[i]
        params[f"fc{i+1}.weight"] = (rng.standard_normal((SIZES[i + 1], fan_in)) *
                                     np.sqrt(2.0 / fan_in)).astype(np.float32)
        params[f"fc{i+1}.bias"] = np.zeros(SIZES[i + 1], np.float32)
    masks: dict[str, np.ndarray] = {}
    train(params, masks, xtr, ytr, 8, rng)
    dense_acc = accuracy(params, xtf, yte)
    print(f"dense: test accuracy {dense_acc:.4f}")
    for sp in SPARSITY_SCHEDULE:
        for i in range(3):
            k = f"fc{i+1}.weight"
            w = params[k]
            layer_sp = sp if i < 2 else sp * 0.8   # the output layer is more sensitive
            thr = np.quantile(np.abs(w), layer_sp)
            masks[k] = (np.abs(w) > thr).astype(np.float32)
            params[k] *= masks[k]
        train(params, masks, xtr, ytr, 3, rng, lr=5e-4)
        print(f"pruned {sp:.2f}: test accuracy {accuracy(params, xtf, yte):.4f}")
    pruned_acc = accuracy(params, xtf, yte)
    sel = np.random.default_rng(1).choice(len(xte), 1000, replace=False)
    np.savez_compressed(OUT, **params, x_test=xte[sel], y_test=yte[sel],
                        dense_accuracy=np.float32(dense_acc),
                        pruned_accuracy=np.float32(pruned_acc))
    print(f"wrote {OUT} ({os.path.getsize(OUT)} bytes)")


if __name__ == "__main__":
    main()
