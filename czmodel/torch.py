"""Weights-only PyTorch use: ``czmodel.torch.save(state_dict, path, config)`` and
``czmodel.torch.load(path) -> state_dict``. Needs the ``torch`` extra; torch itself is
imported only by the converters package (``czconvert``)."""

from __future__ import annotations

from typing import Any


def save(state_dict: Any, path: str, config: Any = None, **kw: Any) -> Any:
    from czconvert.torch_weights import save as _save
    return _save(state_dict, path, config, **kw)


def load(path: str, **kw: Any) -> Any:
    from czconvert.torch_weights import load as _load
    return _load(path, **kw)



def compress_module(module: Any, config: Any = None, **kw: Any) -> Any:
    """Swap every nn.Linear/nn.Conv2d the config compresses for a module that keeps the
    compressed weight and runs czmodel's kernels on it (inference only)."""
    from czconvert.torch_modules import compress_module as _cm
    return _cm(module, config, **kw)
