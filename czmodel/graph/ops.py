"""Op set 1: the op registry (spec: ``spec/ops.md``). One row per op: input and output
counts, the attribute schema (name -> type, default, allowed values) and the ONNX op version
whose semantics it follows."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from czmodel.errors import FormatError, UnsupportedError
from czmodel.format.header import TENSOR_DTYPES

REQUIRED: Any = type("Required", (), {"__repr__": lambda self: "REQUIRED"})()


@dataclass(frozen=True)
class Attr:
    type: str                      # int, float, str, ints, floats, strs
    default: Any = None            # None: optional without default; REQUIRED: must be given
    choices: tuple | None = None   # allowed values (per element for lists)
    min: int | None = None         # int / ints: smallest allowed value (per element)
    nonfinite: bool = False        # float: inf/nan allowed


@dataclass(frozen=True)
class OpSpec:
    name: str
    min_inputs: int
    max_inputs: int
    min_outputs: int
    max_outputs: int
    attrs: dict[str, Attr]
    onnx: str                                  # ONNX op-version followed ("ours" for Linear)
    weight_inputs: tuple[int, ...] = ()        # inputs a backend may pre-pack (kernel forms)
    check: Callable[[Any, dict], None] | None = None   # cross-attribute check at load


def resolve_attrs(node: Any) -> dict[str, Any]:
    """The node's attributes with every default filled in (None for absent optionals)."""
    spec = OPS[node.op]
    out = {}
    for k, a in spec.attrs.items():
        if k in node.attrs:
            v = node.attrs[k]
            out[k] = list(v) if isinstance(v, list) else v
        else:
            out[k] = None if a.default is REQUIRED else a.default
    return out


# -- cross-attribute checks ------------------------------------------------------------------
def _len_check(node: Any, a: dict, key: str, n: int) -> None:
    v = a.get(key)
    if v is not None and len(v) != n:
        cls = UnsupportedError if key in ("kernel_shape", "strides", "dilations") else FormatError
        raise cls(f"node {node.name!r} ({node.op}): attribute {key!r} must have {n} values "
                  f"(op set 1 supports 2-D {node.op} only), got {len(v)}")


def _check_spatial(node: Any, a: dict) -> None:
    for key, n in (("kernel_shape", 2), ("strides", 2), ("dilations", 2), ("pads", 4),
                   ("output_padding", 2), ("output_shape", 2)):
        _len_check(node, a, key, n)


def _check_convtranspose(node: Any, a: dict) -> None:
    _check_spatial(node, a)
    if a["output_shape"] is not None:
        raise UnsupportedError(f"node {node.name!r} (ConvTranspose): attribute 'output_shape' "
                               "is not supported in op set 1 (give 'pads' and "
                               "'output_padding')")
    if a["auto_pad"] in ("SAME_UPPER", "SAME_LOWER"):
        raise UnsupportedError(f"node {node.name!r} (ConvTranspose): auto_pad "
                               f"{a['auto_pad']!r} is not supported in op set 1 (ONNX "
                               "implementations disagree on it; give explicit 'pads')")


def _check_split(node: Any, a: dict) -> None:
    n = a["num_outputs"]
    if n is not None:
        if len(node.inputs) > 1 and node.inputs[1]:
            raise FormatError(f"node {node.name!r} (Split): 'num_outputs' and the 'split' "
                              "input are mutually exclusive")
        if n != len(node.outputs):
            raise FormatError(f"node {node.name!r} (Split): num_outputs={n} but the node has "
                              f"{len(node.outputs)} outputs")


def _check_reduce(node: Any, a: dict) -> None:
    if a["axes"] is not None and len(node.inputs) > 1 and node.inputs[1]:
        raise FormatError(f"node {node.name!r} ({node.op}): axes given both as attribute and "
                          "as input")


def _check_resize(node: Any, a: dict) -> None:
    ins = list(node.inputs) + [""] * (4 - len(node.inputs))
    if not ins[2] and not ins[3]:
        raise FormatError(f"node {node.name!r} (Resize): one of 'scales' (input 2) or 'sizes' "
                          "(input 3) is required")


# -- the table -------------------------------------------------------------------------------
_B01 = (0, 1)
_AUTO_PAD = Attr("str", "NOTSET", ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"))
_CONV = {"auto_pad": _AUTO_PAD, "dilations": Attr("ints", None, min=1),
         "group": Attr("int", 1, min=1), "kernel_shape": Attr("ints", None, min=1),
         "pads": Attr("ints", None, min=0), "strides": Attr("ints", None, min=1)}
_REDUCE = {"axes": Attr("ints"), "keepdims": Attr("int", 1, _B01),
           "noop_with_empty_axes": Attr("int", 0, _B01)}
_DTYPES = tuple(TENSOR_DTYPES)
_NO: dict[str, Attr] = {}


def _unary(name: str, onnx: str, attrs: dict | None = None) -> OpSpec:
    return OpSpec(name, 1, 1, 1, 1, attrs or _NO, onnx)


def _binary(name: str, onnx: str) -> OpSpec:
    return OpSpec(name, 2, 2, 1, 1, _NO, onnx)


_TABLE = [
    # name, inputs min/max, outputs min/max, attrs, ONNX, weight inputs, check
    OpSpec("Gemm", 2, 3, 1, 1, {"alpha": Attr("float", 1.0), "beta": Attr("float", 1.0),
                                "transA": Attr("int", 0, _B01), "transB": Attr("int", 0, _B01)},
           "Gemm-13", (1, 2)),
    OpSpec("MatMul", 2, 2, 1, 1, _NO, "MatMul-13", (1,)),
    OpSpec("Linear", 2, 3, 1, 1, _NO, "ours", (1, 2)),
    OpSpec("Conv", 2, 3, 1, 1, _CONV, "Conv-11", (1, 2), _check_spatial),
    OpSpec("ConvTranspose", 2, 3, 1, 1,
           {**_CONV, "output_padding": Attr("ints", None, min=0),
            "output_shape": Attr("ints", None, min=1)},
           "ConvTranspose-11", (1, 2), _check_convtranspose),
    OpSpec("MaxPool", 1, 1, 1, 1,
           {"auto_pad": _AUTO_PAD, "ceil_mode": Attr("int", 0, _B01),
            "dilations": Attr("ints", None, min=1),
            "kernel_shape": Attr("ints", REQUIRED, min=1), "pads": Attr("ints", None, min=0),
            "storage_order": Attr("int", 0, (0,)), "strides": Attr("ints", None, min=1)},
           "MaxPool-12", (), _check_spatial),
    OpSpec("AveragePool", 1, 1, 1, 1,
           {"auto_pad": _AUTO_PAD, "ceil_mode": Attr("int", 0, _B01),
            "count_include_pad": Attr("int", 0, _B01),
            "kernel_shape": Attr("ints", REQUIRED, min=1), "pads": Attr("ints", None, min=0),
            "strides": Attr("ints", None, min=1)},
           "AveragePool-11", (), _check_spatial),
    _unary("GlobalAveragePool", "GlobalAveragePool-1"),
    _unary("GlobalMaxPool", "GlobalMaxPool-1"),
    OpSpec("BatchNormalization", 5, 5, 1, 1,
           {"epsilon": Attr("float", 1e-5), "momentum": Attr("float", 0.9),
            "training_mode": Attr("int", 0, (0,))}, "BatchNormalization-15"),
    _unary("Relu", "Relu-14"),
    _unary("LeakyRelu", "LeakyRelu-16", {"alpha": Attr("float", 0.01)}),
    OpSpec("Clip", 1, 3, 1, 1, _NO, "Clip-13"),
    _unary("Sigmoid", "Sigmoid-13"),
    _unary("Tanh", "Tanh-13"),
    _unary("HardSigmoid", "HardSigmoid-6",
           {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)}),
    _unary("HardSwish", "HardSwish-14"),
    _unary("Gelu", "Gelu-20", {"approximate": Attr("str", "none", ("none", "tanh"))}),
    _unary("Erf", "Erf-13"),
    _unary("Softmax", "Softmax-13", {"axis": Attr("int", -1)}),
    OpSpec("LayerNormalization", 2, 3, 1, 1,
           {"axis": Attr("int", -1), "epsilon": Attr("float", 1e-5),
            "stash_type": Attr("int", 1, (1,))}, "LayerNormalization-17"),
    _binary("Add", "Add-14"),
    _binary("Sub", "Sub-14"),
    _binary("Mul", "Mul-14"),
    _binary("Div", "Div-14"),
    _binary("Pow", "Pow-15"),
    _unary("Sqrt", "Sqrt-13"),
    _unary("Neg", "Neg-13"),
    _unary("Abs", "Abs-13"),
    _unary("Exp", "Exp-13"),
    _unary("Log", "Log-13"),
    _unary("Not", "Not-1"),
    _binary("Equal", "Equal-13"),
    _binary("Less", "Less-13"),
    _binary("Greater", "Greater-13"),
    _binary("LessOrEqual", "LessOrEqual-16"),
    _binary("GreaterOrEqual", "GreaterOrEqual-16"),
    _binary("And", "And-7"),
    _binary("Or", "Or-7"),
    _binary("Xor", "Xor-7"),
    _unary("IsNaN", "IsNaN-20"),
    _unary("IsInf", "IsInf-20", {"detect_negative": Attr("int", 1, _B01),
                                 "detect_positive": Attr("int", 1, _B01)}),
    OpSpec("Min", 1, 64, 1, 1, _NO, "Min-13"),
    OpSpec("Max", 1, 64, 1, 1, _NO, "Max-13"),
    OpSpec("Where", 3, 3, 1, 1, _NO, "Where-16"),
    OpSpec("ReduceMean", 1, 2, 1, 1, _REDUCE, "ReduceMean-18", (), _check_reduce),
    OpSpec("ReduceSum", 1, 2, 1, 1, _REDUCE, "ReduceSum-13", (), _check_reduce),
    OpSpec("ReduceMax", 1, 2, 1, 1, _REDUCE, "ReduceMax-18", (), _check_reduce),
    _unary("ArgMax", "ArgMax-13", {"axis": Attr("int", 0), "keepdims": Attr("int", 1, _B01),
                                   "select_last_index": Attr("int", 0, _B01)}),
    OpSpec("Concat", 1, 64, 1, 1, {"axis": Attr("int", REQUIRED)}, "Concat-13"),
    OpSpec("Split", 1, 2, 1, 64, {"axis": Attr("int", 0), "num_outputs": Attr("int", None, min=1)},
           "Split-18", (), _check_split),
    OpSpec("Slice", 3, 5, 1, 1, _NO, "Slice-13"),
    OpSpec("Reshape", 2, 2, 1, 1, {"allowzero": Attr("int", 0, _B01)}, "Reshape-14"),
    _unary("Flatten", "Flatten-13", {"axis": Attr("int", 1)}),
    _unary("Transpose", "Transpose-13", {"perm": Attr("ints")}),
    OpSpec("Squeeze", 1, 2, 1, 1, _NO, "Squeeze-13"),
    OpSpec("Unsqueeze", 2, 2, 1, 1, _NO, "Unsqueeze-13"),
    OpSpec("Gather", 2, 2, 1, 1, {"axis": Attr("int", 0)}, "Gather-13"),
    OpSpec("Resize", 1, 4, 1, 1,
           {"coordinate_transformation_mode": Attr(
               "str", "half_pixel",
               ("half_pixel", "asymmetric", "align_corners", "pytorch_half_pixel")),
            "mode": Attr("str", "nearest", ("nearest", "linear")),
            "nearest_mode": Attr("str", "round_prefer_floor",
                                 ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")),
            "cubic_coeff_a": Attr("float", -0.75),
            "exclude_outside": Attr("int", 0, (0,)),
            "extrapolation_value": Attr("float", 0.0)},
           "Resize-13", (), _check_resize),
    _unary("Cast", "Cast-13", {"to": Attr("str", REQUIRED, _DTYPES)}),
    _unary("Shape", "Shape-15", {"start": Attr("int", 0), "end": Attr("int", None)}),
    _unary("Identity", "Identity-16"),
    OpSpec("Expand", 2, 2, 1, 1, _NO, "Expand-13"),
    _unary("ConstantOfShape", "ConstantOfShape-9",
           {"value": Attr("float", 0.0, nonfinite=True), "dtype": Attr("str", "f32", _DTYPES)}),
    OpSpec("Range", 3, 3, 1, 1, _NO, "Range-11"),
    OpSpec("Tile", 2, 2, 1, 1, _NO, "Tile-13"),
    OpSpec("Pad", 2, 4, 1, 1, {"mode": Attr("str", "constant", ("constant",))}, "Pad-18"),
    OpSpec("QuantizeLinear", 2, 3, 1, 1, {"axis": Attr("int", 1), "saturate": Attr("int", 1, (1,))},
           "QuantizeLinear-13"),
    OpSpec("DequantizeLinear", 2, 3, 1, 1, {"axis": Attr("int", 1)}, "DequantizeLinear-13"),
    OpSpec("DynamicQuantizeLinear", 1, 1, 3, 3, _NO, "DynamicQuantizeLinear-11"),
]

OPS: dict[str, OpSpec] = {s.name: s for s in _TABLE}
assert len(OPS) == len(_TABLE)

#: ops the brief requires every backend to implement; the others are "extra" (still op set 1)
REQUIRED_OPS = frozenset({
    "Gemm", "MatMul", "Linear", "Conv", "ConvTranspose", "MaxPool", "AveragePool",
    "GlobalAveragePool", "BatchNormalization", "Relu", "Clip", "Sigmoid", "Tanh", "HardSigmoid",
    "HardSwish", "Gelu", "Erf", "Softmax", "LayerNormalization", "Add", "Sub", "Mul", "Div",
    "Pow", "Sqrt", "ReduceMean", "Concat", "Split", "Slice", "Reshape", "Flatten", "Transpose",
    "Squeeze", "Unsqueeze", "Gather", "Resize", "Cast", "Where", "QuantizeLinear",
    "DequantizeLinear", "Shape", "Identity", "Expand", "ConstantOfShape", "Range", "Equal",
    "Neg", "Exp", "Log", "Pad", "ReduceSum", "ReduceMax"})
