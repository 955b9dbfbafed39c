"""Weights-only .cz files for PyTorch state dicts (later re-exported as ``czmodel.torch``).

``save(state_dict, path, config=None)`` compresses the tensors with ``config`` and writes a
.cz without graph; ``load(path)`` returns the state dict as torch tensors (dtypes restored,
bfloat16 included). ``load_state_dict_file(path)`` reads ``.pt`` / ``.pth`` with
``torch.load(weights_only=True)`` only, or ``.safetensors`` with the bounds-checked reader.

Compression policy (no graph tells which tensor feeds which op): tensors of rank >= 2 are
weights, op type ``Conv`` for rank 4 and ``Linear`` for rank 2 (``default`` and ``op_types``
apply); tensors of rank < 2 (biases, norm parameters, counters) are stored as is unless a
``layers`` pattern names them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from czmodel.errors import EncodeError, UnsupportedError

from ._config import effective_config, named_by_layers, split_config

_NUMPY_OK = ("float64", "float32", "float16", "int64", "int32", "int16", "int8", "uint8",
             "uint16", "uint32", "bool")


def _torch_dtype_name(t: Any) -> str:
    return str(t.dtype).removeprefix("torch.")


def state_dict_to_arrays(state_dict: Mapping[str, Any]) -> tuple[dict[str, np.ndarray],
                                                                  dict[str, str]]:
    """torch tensors -> numpy arrays (bfloat16 widened to float32) and their torch dtypes."""
    import torch

    arrays: dict[str, np.ndarray] = {}
    dtypes: dict[str, str] = {}
    for k, v in state_dict.items():
        if not isinstance(k, str):
            raise EncodeError(f"state dict keys must be strings, got {k!r}")
        if isinstance(v, np.ndarray):
            arrays[k], dtypes[k] = np.asarray(v, order="C"), str(v.dtype)
            continue
        if not torch.is_tensor(v):
            raise EncodeError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
        t = v.detach().cpu()
        name = _torch_dtype_name(t)
        if name == "bfloat16":
            a = t.float().numpy()
        elif name in _NUMPY_OK:
            a = t.contiguous().numpy()
        else:
            raise UnsupportedError(f"state dict entry {k!r}: dtype {name} is not supported "
                                   f"(supported: bfloat16, {', '.join(_NUMPY_OK)})")
        arrays[k], dtypes[k] = np.asarray(a, order="C"), name
    return arrays, dtypes


def save_arrays(arrays: Mapping[str, np.ndarray], path: str | os.PathLike, config: Any = None,
                *, source_dtypes: Mapping[str, str] | None = None,
                metadata: Mapping | None = None):
    """Write a weights-only .cz from numpy arrays with the policy above. Returns the Report."""
    from czmodel.compress.pipeline import save as _save

    cfg, act = split_config(config)
    if act is not None:
        raise EncodeError("int8 activations need a graph; a weights-only file has none")
    op_types = {k: {4: "Conv", 2: "Linear"}.get(a.ndim, "Tensor")
                for k, a in arrays.items() if a.ndim >= 2}
    small = [k for k, a in arrays.items() if a.ndim < 2]
    raw = set(small) - named_by_layers(cfg, small)
    meta: dict[str, Any] = {"producer": "czconvert", "source": "state_dict"}
    keep = {k: v for k, v in (source_dtypes or {}).items()
            if v != str(np.asarray(arrays[k]).dtype)}
    if keep:
        meta["torch_dtypes"] = keep
    meta.update(metadata or {})
    return _save(path, dict(arrays), effective_config(cfg, raw), metadata=meta,
                 op_types=op_types)


def save(state_dict: Mapping[str, Any], path: str | os.PathLike, config: Any = None, *,
         metadata: Mapping | None = None):
    """Compress a PyTorch ``state_dict`` (tensors) with ``config`` into a weights-only .cz."""
    arrays, dtypes = state_dict_to_arrays(state_dict)
    return save_arrays(arrays, path, config, source_dtypes=dtypes, metadata=metadata)


def load(path: str | os.PathLike | bytes) -> dict[str, Any]:
    """A .cz file's tensors as a state dict of torch tensors (decompressed, dtypes restored)."""
    import torch

    import czmodel

    out: dict[str, Any] = {}
    with czmodel.open(path) as f:
        want = (f.metadata or {}).get("torch_dtypes", {}) if isinstance(f.metadata, dict) else {}
        for k in f:
            t = torch.from_numpy(np.array(f[k]))
            dt = want.get(k) if isinstance(want, dict) else None
            if isinstance(dt, str) and hasattr(torch, dt):
                t = t.to(getattr(torch, dt))
            out[k] = t
    return out


def load_state_dict_file(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Arrays and source dtypes from a ``.safetensors`` file or a ``.pt`` / ``.pth`` state dict
    (``torch.load(weights_only=True)``; a checkpoint holding ``"state_dict"`` also works)."""
    p = os.fspath(path)
    if p.lower().endswith(".safetensors"):
        from .safetensors_io import read_safetensors
        return read_safetensors(p)
    import torch

    if not os.path.exists(p):
        raise FileNotFoundError(p)
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling errors vary; weights_only refuses code
        raise EncodeError(f"{p}: cannot load as a weights-only state dict: "
                          f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                          ) from None
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise EncodeError(f"{p}: holds a {type(obj).__name__}, not a state dict")
    return state_dict_to_arrays(obj)


__all__ = ["save", "load", "save_arrays", "state_dict_to_arrays", "load_state_dict_file"]
