"""Shared helpers of the converter tests: czconvert import (installed or from the source
folder), the available backends, and ONNX models built with onnx.helper."""

from __future__ import annotations

import sys
from pathlib import Path

try:
    import czconvert  # noqa: F401 - installed package
except ImportError:  # not installed yet: the source folder
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "converters"))
    import czconvert  # noqa: F401

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from czconvert.node_suite import available_backends

BACKENDS = available_backends()       # "reference" always, numba / c when they load


def make_model(nodes, inputs, outputs, initializers=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs,
                          [numpy_helper.from_array(np.asarray(a), k) for k, a in initializers])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m


def vi(name, shape, dtype=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, dtype, shape)


def ort_run(model, feeds):
    import onnxruntime as ort

    data = model if isinstance(model, bytes) else model.SerializeToString()
    s = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return s.run(None, feeds)
