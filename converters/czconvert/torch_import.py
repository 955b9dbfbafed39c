"""PyTorch -> .cz: ``torch_to_cz(module, example_inputs, out_path, config=None)``.

The module is exported in eval mode with the TorchScript exporter
(``torch.onnx.export(..., dynamo=False)``) to an in-memory ONNX model, which ``onnx_to_cz``
converts. Initializers the exporter names ``onnx::...`` (e.g. pre-transposed MatMul weights)
get their state-dict names back when exactly one parameter or buffer has the same values
(possibly transposed), so config patterns such as ``"encoder.*"`` keep working.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from .onnx_import import onnx_to_cz


def _key(a: np.ndarray) -> tuple:
    a = np.asarray(a, order="C")
    return a.shape, str(a.dtype), hashlib.sha1(a.tobytes()).hexdigest()


def _scope(node_name: str) -> str:
    """The module path of a TorchScript-exported node name ("" if none)."""
    comps = [c for c in node_name.split("/") if c][:-1]
    parts: list[str] = []
    for c in comps:
        if parts and c.startswith(parts[-1] + "."):
            parts[-1] = c            # a Sequential / ModuleList child carries its parent's name
        else:
            parts.append(c)
    return ".".join(parts)


def restore_names(model: onnx.ModelProto, state: Mapping[str, np.ndarray]) -> int:
    """Rename ``onnx::*`` initializers to the unique state-dict entry with equal values (or
    equal transposed values: the converter stores Linear weights back as (out, in))."""
    index: dict[tuple, list[str]] = {}
    for k, a in state.items():
        index.setdefault(_key(a), []).append(k)
        if a.ndim == 2:
            index.setdefault(_key(a.T), []).append(k)
    g = model.graph
    taken = {t.name for t in g.initializer} | {v.name for v in g.input} | {
        o for n in g.node for o in n.output}
    renames: dict[str, str] = {}
    for t in g.initializer:
        if not t.name.startswith("onnx::"):
            continue
        cands = index.get(_key(numpy_helper.to_array(t)), [])
        if len(cands) == 1 and cands[0] not in taken and cands[0] not in renames.values():
            renames[t.name] = cands[0]
    # weights the exporter rewrote (BatchNorm folded into Conv / Gemm): name them after the
    # node's module scope, "/layer1/layer1.0/conv1/Conv" -> "layer1.0.conv1.weight"
    used = set(renames.values())
    for n in g.node:
        scope = _scope(n.name)
        if not scope or n.op_type not in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            continue
        for k, suffix in ((1, "weight"), (2, "bias")):
            if k < len(n.input) and n.input[k].startswith("onnx::") and (
                    n.input[k] not in renames):
                cand = f"{scope}.{suffix}"
                if cand in state and cand not in taken and cand not in used:
                    renames[n.input[k]] = cand
                    used.add(cand)
    for t in g.initializer:
        if t.name in renames:
            t.name = renames[t.name]
    for n in g.node:
        for i, s in enumerate(n.input):
            if s in renames:
                n.input[i] = renames[s]
    return len(renames)


def export_onnx(module: Any, example_inputs: Any, *, input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None, opset: int | None = None,
                dynamic_axes: Mapping | None = None) -> onnx.ModelProto:
    """The module as an in-memory ONNX model (eval mode, TorchScript exporter)."""
    import torch

    args = (example_inputs,) if torch.is_tensor(example_inputs) else tuple(example_inputs)
    if input_names is None:
        input_names = ["input"] if len(args) == 1 else [f"input_{i}" for i in range(len(args))]
    was_training = module.training
    module.eval()
    buf = io.BytesIO()
    kw: dict[str, Any] = {}
    if opset is not None:
        kw["opset_version"] = opset
    try:
        with torch.no_grad():
            torch.onnx.export(module, args, buf, dynamo=False, input_names=list(input_names),
                              output_names=list(output_names) if output_names else None,
                              do_constant_folding=True, dynamic_axes=dynamic_axes, **kw)
    finally:
        module.train(was_training)
    model = onnx.load_from_string(buf.getvalue())
    state = {k: v.detach().cpu().float().numpy() if v.is_floating_point() else
             v.detach().cpu().numpy() for k, v in module.state_dict().items()}
    restore_names(model, state)
    return model


def torch_to_cz(module: Any, example_inputs: Any, out_path: str | os.PathLike,
                config: Any = None, *, calib: Mapping[str, np.ndarray] | None = None,
                input_names: Sequence[str] | None = None,
                output_names: Sequence[str] | None = None, opset: int | None = None,
                dynamic_axes: Mapping | None = None, **kwargs: Any):
    """Export ``module`` (called on ``example_inputs``: a tensor or a tuple of tensors) and
    convert it to ``out_path``. Inputs are named ``input`` (one) or ``input_0``, ``input_1``...
    unless ``input_names`` is given. Other keywords go to ``onnx_to_cz``. Returns the Report."""
    model = export_onnx(module, example_inputs, input_names=input_names,
                        output_names=output_names, opset=opset, dynamic_axes=dynamic_axes)
    meta = {"source": "torch", **dict(kwargs.pop("metadata", None) or {})}
    return onnx_to_cz(model, out_path, config, calib, metadata=meta, **kwargs)


__all__ = ["torch_to_cz", "export_onnx", "restore_names"]
