"""czconvert: ONNX / PyTorch <-> .cz converters (the only code that imports onnx and torch).

* ``onnx_to_cz(model, out_path, config=None, calib=None) -> Report``  (``onnx_import``)
* ``cz_to_onnx(cz_path, onnx_path)``                                  (``onnx_export``)
* ``torch_to_cz(module, example_inputs, out_path, config=None)``       (``torch_import``)
* ``torch_weights.save(state_dict, path, config=None)`` / ``torch_weights.load(path)``

torch is imported lazily: ``import czconvert`` needs only onnx.
"""

from __future__ import annotations

from typing import Any

from czmodel.errors import UnsupportedError

from .onnx_export import cz_to_onnx
from .onnx_import import SUPPORTED_OPS, ConversionInfo, convert_graph, onnx_to_cz


def torch_to_cz(*args: Any, **kwargs: Any) -> Any:
    """See ``czconvert.torch_import.torch_to_cz`` (imports torch on first use)."""
    from .torch_import import torch_to_cz as fn
    return fn(*args, **kwargs)


__all__ = ["onnx_to_cz", "cz_to_onnx", "torch_to_cz", "convert_graph", "ConversionInfo",
           "SUPPORTED_OPS", "UnsupportedError"]
