"""ONNX -> .cz: ``onnx_to_cz(model, out_path, config=None, calib=None) -> Report``.

Steps (all before anything is written):

1. load the model; default-domain opset 11 ... ``onnx.defs.onnx_opset_version()`` (older models
   are upgraded with ``onnx.version_converter`` first); every op type is checked against the
   supported list (``SUPPORTED_OPS``) and an unknown one is an ``UnsupportedError`` naming the
   op type, the node and the list;
2. ONNX shape inference (static shapes feed the folding of ``Shape``);
3. each ONNX node is lowered to op set 1 nodes (attribute forms of older opsets become the
   inputs op set 1 takes; ``Cast.to`` enums become dtype names; ``Constant`` nodes and
   initializers become file tensors);
4. the graph is validated (op set 1 rejects attribute values it does not support here, with an
   ``UnsupportedError`` naming the node);
5. constant folding with the reference backend's op implementations (every node whose inputs
   are all constants; ``Shape`` of a value with a static inferred shape);
6. ``Gemm`` / ``MatMul`` with a constant 2-D float B become ``Linear`` (W stored (out, in)),
   ``BatchNormalization`` after ``Conv`` / 2-D ``Linear`` is folded into the weights, a
   following ``Add`` of a constant row vector becomes the ``Linear`` bias;
7. dead nodes and tensors are dropped, the graph is validated again, weights are compressed
   with the ``CompressionConfig`` (only weight-like tensors: see ``_weight_roles``) and, with a
   calibration set, int8 activation ranges are computed with the reference executor and stored.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from czmodel.errors import CzError, EncodeError, UnsupportedError
from czmodel.format.header import TENSOR_DTYPES
from czmodel.graph import OPS, Graph, OpNode, ValueInfo
from czmodel.graph.ops import resolve_attrs
from czmodel.progress import progress_task
from czmodel.runtime.reference import OP_IMPLS

from ._config import effective_config as _effective_config
from ._config import named_by_layers, parse_activations, split_config
from ._dtypes import ONNX_TO_DTYPE, onnx_type_name

MIN_OPSET = 11
MAX_OPSET = onnx.defs.onnx_opset_version()
_DOMAINS = ("", "ai.onnx")
FOLD_MAX_ELEMENTS = 1 << 20      # a folded constant larger than this (and its inputs) stays an op

#: ONNX ops mapped 1:1 onto op set 1 (same attribute names; checked by graph validation)
_DIRECT = (
    "Gemm MatMul Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool "
    "BatchNormalization Relu LeakyRelu Clip Sigmoid Tanh HardSigmoid HardSwish Gelu Erf "
    "LayerNormalization Add Sub Mul Div Pow Sqrt Neg Abs Exp Log Not Equal Less Greater Where "
    "LessOrEqual GreaterOrEqual And Or Xor IsNaN IsInf Min Max "
    "ReduceMean ReduceSum ReduceMax ArgMax Concat Slice Reshape Flatten Transpose Gather "
    "Identity Expand Range Tile Pad Resize Shape QuantizeLinear DequantizeLinear "
    "DynamicQuantizeLinear").split()

#: ONNX attributes op set 1 lacks, accepted when they hold their ONNX default (dropped)
_IGNORABLE: dict[str, dict[str, Any]] = {
    "AveragePool": {"dilations": "ones"},
    "Resize": {"antialias": 0, "keep_aspect_ratio_policy": "stretch"},
    "Cast": {"saturate": 1, "round_mode": "up"},
    "QuantizeLinear": {"block_size": 0, "output_dtype": 0, "precision": 0},
    "DequantizeLinear": {"block_size": 0, "output_dtype": 0},
    "Dropout": {"seed": None},
    "BatchNormalization": {"spatial": 1},
}


@dataclass
class ConversionInfo:
    """What the converter did (attached to the returned Report as ``.conversion``)."""

    source_opset: int
    onnx_nodes: int
    nodes: int
    ops: dict[str, int] = field(default_factory=dict)
    folded: int = 0
    linear: int = 0
    bn_folded: int = 0
    bias_folded: int = 0
    weights: dict[str, str] = field(default_factory=dict)     # compressible tensor -> op type
    calibrated: int = 0
    notes: list[str] = field(default_factory=list)


# -- small helpers ---------------------------------------------------------------------------
def _attr_value(a: onnx.AttributeProto) -> Any:
    v = helper.get_attribute_value(a)
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    if isinstance(v, list) and v and isinstance(v[0], bytes):
        return [x.decode("utf-8", "replace") for x in v]
    return v


def _to_array(t: onnx.TensorProto, where: str, base_dir: str | None = None) -> np.ndarray:
    if t.data_type not in ONNX_TO_DTYPE:
        raise UnsupportedError(f"{where}: tensor element type {onnx_type_name(t.data_type)} is "
                               f"not supported (op set 1 dtypes: {', '.join(TENSOR_DTYPES)})")
    arr = numpy_helper.to_array(t, base_dir or "")
    want = TENSOR_DTYPES[ONNX_TO_DTYPE[t.data_type]]
    return np.asarray(arr.astype(want, copy=False), order="C")


def _dtype_name(elem_type: int, where: str) -> str:
    if elem_type not in ONNX_TO_DTYPE:
        raise UnsupportedError(f"{where}: element type {onnx_type_name(elem_type)} is not "
                               f"supported (op set 1 dtypes: {', '.join(TENSOR_DTYPES)})")
    return ONNX_TO_DTYPE[elem_type]


class _N:
    """A normalised ONNX node."""

    def __init__(self, op: str, name: str, inputs: list[str], outputs: list[str],
                 attrs: dict[str, Any]) -> None:
        self.op, self.name, self.inputs, self.outputs, self.attrs = op, name, inputs, outputs, attrs

    def where(self) -> str:
        return f"ONNX node {self.name!r} ({self.op})"

    def inp(self, k: int) -> str:
        return self.inputs[k] if k < len(self.inputs) else ""

    def out_used(self, k: int) -> bool:
        return k < len(self.outputs) and bool(self.outputs[k])


# -- the conversion context ------------------------------------------------------------------
class _Ctx:
    def __init__(self, opset: int, taken: set[str]) -> None:
        self.opset = opset
        self.nodes: list[OpNode] = []
        self.consts: dict[str, np.ndarray] = {}
        self.shapes: dict[str, list[int | None] | None] = {}   # inferred: None = unknown rank
        self.dtypes: dict[str, str] = {}
        self.inputs: list[ValueInfo] = []
        self.outputs: list[ValueInfo] = []
        self._taken = set(taken)
        self._node_names: set[str] = set()

    # names
    def fresh(self, base: str) -> str:
        base = base or "v"
        name, k = base, 1
        while name in self._taken:
            name = f"{base}_{k}"
            k += 1
        self._taken.add(name)
        return name

    def node_name(self, base: str) -> str:
        name, k = base, 1
        while name in self._node_names:
            name = f"{base}_{k}"
            k += 1
        self._node_names.add(name)
        return name

    def const(self, arr: Any, base: str) -> str:
        name = self.fresh(base)
        self.consts[name] = np.asarray(np.asarray(arr), order="C")
        return name

    def emit(self, op: str, inputs: list[str], outputs: list[str], attrs: dict | None = None,
             name: str = "") -> OpNode:
        node = OpNode(op, self.node_name(name or op), list(inputs), list(outputs),
                      dict(attrs or {}))
        self.nodes.append(node)
        return node

    def rank(self, value: str) -> int | None:
        if value in self.consts:
            return self.consts[value].ndim
        s = self.shapes.get(value)
        return None if s is None else len(s)

    def static_shape(self, value: str) -> list[int] | None:
        s = self.shapes.get(value)
        if s is None or any(d is None for d in s):
            return None
        return [int(d) for d in s]


# -- lowering of each ONNX op ----------------------------------------------------------------
def _check_attrs(n: _N, op: str, attrs: dict[str, Any]) -> dict[str, Any]:
    """Attributes for op set 1 op ``op``: known names pass (validated later by the graph),
    ONNX-only ones at their default are dropped, anything else is an UnsupportedError."""
    spec = OPS[op]
    out = {}
    ign = _IGNORABLE.get(n.op, {})
    for k, v in attrs.items():
        if k in spec.attrs:
            out[k] = v
        elif k in ign:
            d = ign[k]
            ok = (d is None or v == d or (d == "ones" and isinstance(v, list)
                                          and all(x == 1 for x in v)))
            if not ok:
                raise UnsupportedError(f"{n.where()}: attribute {k}={v!r} is not supported by "
                                       f"op set 1 (only the default {d!r})")
        else:
            raise UnsupportedError(f"{n.where()}: attribute {k!r} (= {v!r}) is not supported "
                                   f"by op set 1 {op} (its attributes: "
                                   f"{sorted(spec.attrs) or 'none'})")
    return out


#: op set 1 ops whose first input must be float (spec: "float op"), and ops taking
#: numbers but not bool; an ONNX model giving them another dtype is refused at conversion
_FLOAT_X = frozenset(
    "Gemm Linear Conv ConvTranspose MaxPool AveragePool GlobalAveragePool GlobalMaxPool "
    "BatchNormalization LeakyRelu Sigmoid Tanh Erf Exp Log Sqrt HardSigmoid HardSwish Gelu "
    "Softmax LayerNormalization ReduceMean QuantizeLinear DynamicQuantizeLinear IsNaN "
    "IsInf".split())
_NUMERIC_X = frozenset("Relu Clip Neg Abs ReduceSum ReduceMax ArgMax Add Sub Mul Div Pow "
                       "MatMul Less Greater LessOrEqual GreaterOrEqual Min Max".split())


def _input_dtype(ctx: _Ctx, name: str) -> str | None:
    if name in ctx.consts:
        dt = ctx.consts[name].dtype
        return next((k for k, v in TENSOR_DTYPES.items() if v == dt), None)
    return ctx.dtypes.get(name)


def _check_dtype(ctx: _Ctx, n: _N, op: str) -> None:
    if not n.inputs or not n.inputs[0]:
        return
    dt = _input_dtype(ctx, n.inputs[0])
    if dt is None:
        return
    if op in _FLOAT_X and dt not in ("f32", "f16", "f64"):
        raise UnsupportedError(f"{n.where()}: op set 1 {op} takes a float X, this model gives "
                               f"{dt}")
    if op in _NUMERIC_X and dt == "bool":
        raise UnsupportedError(f"{n.where()}: op set 1 {op} takes numbers, not bool")


def _check_rank(ctx: _Ctx, n: _N, op: str) -> None:
    if op in ("Conv", "ConvTranspose", "MaxPool", "AveragePool") and n.inputs:
        r = ctx.rank(n.inputs[0])
        if r is not None and r != 4:
            raise UnsupportedError(f"{n.where()}: X has rank {r}; op set 1 supports 2-D {op} "
                                   "only (rank-4 N, C, H, W)")


def _direct(ctx: _Ctx, n: _N, op: str | None = None, attrs: dict | None = None) -> None:
    op = op or n.op
    spec = OPS[op]
    _check_dtype(ctx, n, op)
    _check_rank(ctx, n, op)
    outs = list(n.outputs)
    while outs and not outs[-1]:
        outs.pop()
    if len(outs) > spec.max_outputs:
        extra = [o for o in outs[spec.max_outputs:] if o]
        raise UnsupportedError(f"{n.where()}: optional output(s) {extra} are not supported by "
                               f"op set 1 {op} ({spec.max_outputs} output(s))")
    outs = [o or ctx.fresh(f"{n.name}_unused{k}") for k, o in enumerate(outs)]
    ctx.emit(op, n.inputs, outs, _check_attrs(n, op, n.attrs if attrs is None else attrs),
             n.name)


def _const_input(ctx: _Ctx, n: _N, k: int, what: str) -> np.ndarray | None:
    name = n.inp(k)
    if not name:
        return None
    if name not in ctx.consts:
        raise UnsupportedError(f"{n.where()}: input {k} ({what}) must be a constant for "
                               "op set 1")
    return ctx.consts[name]


def _lower_constant(ctx: _Ctx, n: _N) -> None:
    a = n.attrs
    if len(a) != 1:
        raise EncodeError(f"{n.where()}: needs exactly one value attribute, got {sorted(a)}")
    (k, v), = a.items()
    if k == "value":
        arr = _to_array(v, n.where())
    elif k == "value_float":
        arr = np.array(v, np.float32)
    elif k == "value_floats":
        arr = np.array(v, np.float32).reshape(-1)
    elif k == "value_int":
        arr = np.array(v, np.int64)
    elif k == "value_ints":
        arr = np.array(v, np.int64).reshape(-1)
    else:
        raise UnsupportedError(f"{n.where()}: attribute {k!r} is not supported (only value, "
                               "value_float(s), value_int(s))")
    ctx.consts[n.outputs[0]] = np.asarray(arr, order="C")


def _lower_cast(ctx: _Ctx, n: _N) -> None:
    to = n.attrs.get("to")
    attrs = {k: v for k, v in n.attrs.items() if k != "to"}
    attrs["to"] = _dtype_name(to, f"{n.where()} attribute 'to'")
    _direct(ctx, n, "Cast", attrs)


def _lower_castlike(ctx: _Ctx, n: _N) -> None:
    target = n.inp(1)
    dt = ctx.consts[target].dtype if target in ctx.consts else None
    name = (next((k for k, v in TENSOR_DTYPES.items() if v == dt), None) if dt is not None
            else ctx.dtypes.get(target))
    if name is None:
        raise UnsupportedError(f"{n.where()}: the dtype of input 1 {target!r} is unknown")
    attrs = {k: v for k, v in n.attrs.items()}
    attrs["to"] = name
    _direct(ctx, _N("Cast", n.name, [n.inp(0)], n.outputs, n.attrs), "Cast", attrs)


def _lower_constant_of_shape(ctx: _Ctx, n: _N) -> None:
    attrs = {}
    if "value" in n.attrs:
        v = _to_array(n.attrs["value"], n.where())
        if v.size != 1:
            raise EncodeError(f"{n.where()}: 'value' must hold one element")
        x = v.reshape(-1)[0]
        f = float(x)
        if v.dtype.kind in "iu" and int(f) != int(x):
            raise UnsupportedError(f"{n.where()}: fill value {int(x)} is not exactly a float "
                                   "(op set 1 stores it as a float attribute)")
        attrs = {"value": f, "dtype": next(k for k, d in TENSOR_DTYPES.items() if d == v.dtype)}
    _direct(ctx, n, "ConstantOfShape", attrs)


def _axes_to_input(ctx: _Ctx, n: _N, op: str) -> None:
    """Squeeze / Unsqueeze before opset 13: the axes attribute becomes input 1."""
    attrs = dict(n.attrs)
    ins = list(n.inputs)
    if "axes" in attrs:
        ins = [ins[0], ctx.const(np.array(attrs.pop("axes"), np.int64), f"{n.name}_axes")]
    _direct(ctx, _N(n.op, n.name, ins, n.outputs, attrs), op)


def _lower_split(ctx: _Ctx, n: _N) -> None:
    attrs = dict(n.attrs)
    ins = list(n.inputs)
    if "split" in attrs:                                   # Split-11
        ins = [ins[0], ctx.const(np.array(attrs.pop("split"), np.int64), f"{n.name}_split")]
    _direct(ctx, _N(n.op, n.name, ins, n.outputs, attrs), "Split")


def _lower_softmax(ctx: _Ctx, n: _N) -> None:
    axis = n.attrs.get("axis", 1 if ctx.opset < 13 else -1)
    x = n.inp(0)
    r = ctx.rank(x)
    if ctx.opset >= 13 or axis == -1 or (r is not None and axis in (r - 1, -1)):
        _direct(ctx, n, "Softmax", {"axis": axis})
        return
    # Softmax-11: coerce to 2-D at `axis`, softmax over the flattened tail, restore the shape
    shp = ctx.fresh(f"{n.name}_shape")
    flat = ctx.fresh(f"{n.name}_flat")
    soft = ctx.fresh(f"{n.name}_2d")
    ctx.emit("Shape", [x], [shp], {}, f"{n.name}/shape")
    ctx.emit("Flatten", [x], [flat], {"axis": axis}, f"{n.name}/flatten")
    ctx.emit("Softmax", [flat], [soft], {"axis": -1}, f"{n.name}/softmax")
    ctx.emit("Reshape", [soft, shp], [n.outputs[0]], {}, n.name)


def _lower_dropout(ctx: _Ctx, n: _N) -> None:
    tm = _const_input(ctx, n, 2, "training_mode") if n.inp(2) else None
    if tm is not None and bool(np.asarray(tm).reshape(-1)[0]):
        raise UnsupportedError(f"{n.where()}: training_mode=True is not supported (inference "
                               "only)")
    _check_attrs(n, "Identity", {k: v for k, v in n.attrs.items() if k not in ("ratio",)})
    ctx.emit("Identity", [n.inp(0)], [n.outputs[0]], {}, n.name)
    if n.out_used(1):                                      # mask: all true at inference
        shp = ctx.fresh(f"{n.name}_shape")
        ctx.emit("Shape", [n.inp(0)], [shp], {}, f"{n.name}/shape")
        ctx.emit("ConstantOfShape", [shp], [n.outputs[1]], {"value": 1.0, "dtype": "bool"},
                 f"{n.name}/mask")


def _lower_sum(ctx: _Ctx, n: _N) -> None:
    ins = [s for s in n.inputs if s]
    if len(ins) == 1:
        ctx.emit("Identity", ins, [n.outputs[0]], {}, n.name)
        return
    acc = ins[0]
    for k, s in enumerate(ins[1:], 1):
        out = n.outputs[0] if k == len(ins) - 1 else ctx.fresh(f"{n.name}_acc{k}")
        ctx.emit("Add", [acc, s], [out], {}, n.name if out == n.outputs[0] else
                 f"{n.name}/add{k}")
        acc = out


def _lower_resize(ctx: _Ctx, n: _N) -> None:
    attrs = dict(n.attrs)
    if attrs.get("axes") is not None:
        raise UnsupportedError(f"{n.where()}: attribute 'axes' is not supported by op set 1 "
                               "Resize (give scales/sizes for every axis)")
    attrs.pop("axes", None)
    _direct(ctx, _N(n.op, n.name, n.inputs, n.outputs, attrs), "Resize")


def _lower_quantize(ctx: _Ctx, n: _N) -> None:
    attrs = dict(n.attrs)
    od = attrs.get("output_dtype", 0)
    if od and n.op == "QuantizeLinear":
        zp = n.inp(2)
        want = ONNX_TO_DTYPE.get(od)
        have = (ctx.consts[zp].dtype if zp in ctx.consts else None)
        if zp and have is not None and TENSOR_DTYPES.get(want) == have:
            attrs.pop("output_dtype")
        elif not zp and want == "u8":
            attrs.pop("output_dtype")
    if od and n.op == "DequantizeLinear" and ONNX_TO_DTYPE.get(od) == "f32":
        attrs.pop("output_dtype")
    _direct(ctx, _N(n.op, n.name, n.inputs, n.outputs, attrs), n.op)


def _lower_layernorm(ctx: _Ctx, n: _N) -> None:
    if not (n.out_used(1) or n.out_used(2)):
        _direct(ctx, n, "LayerNormalization")
        return
    # Mean and InvStdDev outputs: computed with ReduceMean / Sqrt / Div next to the op
    attrs = dict(n.attrs)
    axis = int(attrs.get("axis", -1))
    x = n.inp(0)
    r = ctx.rank(x)
    if axis < 0:
        axes = list(range(axis, 0))
    elif r is not None:
        axes = list(range(axis, r))
    else:
        raise UnsupportedError(f"{n.where()}: outputs Mean / InvStdDev with a positive axis "
                               "need a known input rank")
    eps = float(attrs.get("epsilon", 1e-5))
    _direct(ctx, _N(n.op, n.name, n.inputs, n.outputs[:1], attrs), "LayerNormalization")
    b = n.name
    mean = n.outputs[1] if n.out_used(1) else ctx.fresh(f"{b}_mean")
    red = {"axes": axes, "keepdims": 1}
    ctx.emit("ReduceMean", [x], [mean], red, f"{b}/mean")
    d, sq, var, ve, sd = (ctx.fresh(f"{b}_{k}") for k in ("d", "sq", "var", "ve", "sd"))
    ctx.emit("Sub", [x, mean], [d], {}, f"{b}/sub")
    ctx.emit("Mul", [d, d], [sq], {}, f"{b}/sq")
    ctx.emit("ReduceMean", [sq], [var], red, f"{b}/var")
    ctx.emit("Add", [var, ctx.const(np.array(eps, np.float32), f"{b}_eps")], [ve], {},
             f"{b}/eps")
    ctx.emit("Sqrt", [ve], [sd], {}, f"{b}/sqrt")
    if n.out_used(2):
        ctx.emit("Div", [ctx.const(np.array(1.0, np.float32), f"{b}_one"), sd],
                 [n.outputs[2]], {}, f"{b}/inv")


_SPECIAL = {
    "LayerNormalization": _lower_layernorm,
    "Constant": _lower_constant,
    "Cast": _lower_cast,
    "CastLike": _lower_castlike,
    "ConstantOfShape": _lower_constant_of_shape,
    "Squeeze": lambda c, n: _axes_to_input(c, n, "Squeeze"),
    "Unsqueeze": lambda c, n: _axes_to_input(c, n, "Unsqueeze"),
    "Split": _lower_split,
    "Softmax": _lower_softmax,
    "Dropout": _lower_dropout,
    "Sum": _lower_sum,
    "Resize": _lower_resize,
    "QuantizeLinear": _lower_quantize,
    "DequantizeLinear": _lower_quantize,
}

#: every ONNX op type the converter accepts
SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(set(_DIRECT) | set(_SPECIAL)))


def _lower(ctx: _Ctx, n: _N) -> None:
    fn = _SPECIAL.get(n.op)
    if fn is not None:
        fn(ctx, n)
    else:
        _direct(ctx, n)


# -- model loading, checks ---------------------------------------------------------------------
def _load(model: Any) -> tuple[onnx.ModelProto, str | None]:
    if isinstance(model, onnx.ModelProto):
        return model, None
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model)), None
    if isinstance(model, (str, os.PathLike)):
        path = os.fspath(model)
        if not os.path.exists(path):
            raise FileNotFoundError(path)
        try:
            return onnx.load(path), os.path.dirname(os.path.abspath(path))
        except Exception as e:  # noqa: BLE001 - protobuf errors vary
            raise EncodeError(f"{path}: not a readable ONNX model: {type(e).__name__}: "
                              f"{e}") from None
    raise EncodeError(f"expected an ONNX path, bytes or ModelProto, not {type(model).__name__}")


def _opset_of(model: onnx.ModelProto) -> int:
    ver = None
    for imp in model.opset_import:
        if imp.domain in _DOMAINS:
            ver = imp.version
    if ver is None:
        raise UnsupportedError("the model imports no default-domain (ai.onnx) opset")
    return int(ver)


def _check_supported(model: onnx.ModelProto) -> None:
    g = model.graph
    for i, nd in enumerate(g.node):
        where = f"node {nd.name or f'#{i}'!r}"
        if nd.domain not in _DOMAINS:
            raise UnsupportedError(f"{where}: op {nd.domain}.{nd.op_type} from domain "
                                   f"{nd.domain!r} is not supported (only the default ONNX "
                                   f"domain); supported ops: {', '.join(SUPPORTED_OPS)}")
        if nd.op_type not in SUPPORTED_OPS:
            raise UnsupportedError(f"{where}: op type {nd.op_type!r} is not supported; "
                                   f"supported ops: {', '.join(SUPPORTED_OPS)}")
        for a in nd.attribute:
            if a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
                raise UnsupportedError(f"{where} ({nd.op_type}): subgraph attributes are not "
                                       "supported")


def _prepare(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    opset = _opset_of(model)
    if opset > MAX_OPSET:
        raise UnsupportedError(f"model opset {opset} is newer than the installed onnx "
                               f"supports ({MAX_OPSET})")
    if opset < MIN_OPSET:
        try:
            from onnx import version_converter
            model = version_converter.convert_version(model, MIN_OPSET)
        except Exception as e:  # noqa: BLE001
            raise UnsupportedError(f"model opset {opset} is older than {MIN_OPSET} and "
                                   f"onnx.version_converter could not upgrade it: "
                                   f"{type(e).__name__}: {e}") from None
        opset = _opset_of(model)
    _check_supported(model)
    return model, opset


def _shape_info(model: onnx.ModelProto) -> tuple[dict, dict]:
    """value name -> dims (int or None per dim; None = unknown rank) and dtype name."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:  # noqa: BLE001 - inference is best effort
        inferred = model
    shapes: dict[str, list | None] = {}
    dtypes: dict[str, str] = {}
    g = inferred.graph
    for vi in list(g.value_info) + list(g.input) + list(g.output):
        t = vi.type
        if not t.HasField("tensor_type"):
            continue
        tt = t.tensor_type
        if tt.elem_type in ONNX_TO_DTYPE:
            dtypes[vi.name] = ONNX_TO_DTYPE[tt.elem_type]
        if tt.HasField("shape"):
            # a negative dim_value (Paddle2ONNX writes -1 for a dynamic dim) is unknown
            shapes[vi.name] = [d.dim_value if d.HasField("dim_value") and d.dim_value >= 0
                               else None for d in tt.shape.dim]
    return shapes, dtypes


def _value_info(vi: onnx.ValueInfoProto, where: str, *, strict: bool) -> ValueInfo:
    t = vi.type
    if not t.HasField("tensor_type"):
        raise UnsupportedError(f"{where} {vi.name!r}: only tensor types are supported")
    tt = t.tensor_type
    if strict:
        dt = _dtype_name(tt.elem_type, f"{where} {vi.name!r}")
    else:
        dt = ONNX_TO_DTYPE.get(tt.elem_type, "f32")
    if not tt.HasField("shape"):
        if strict:
            raise UnsupportedError(f"{where} {vi.name!r}: unknown rank (op set 1 graph inputs "
                                   "need a rank; give the input a shape)")
        return ValueInfo(vi.name, dt, [])
    dims: list[int | str] = []
    for k, d in enumerate(tt.shape.dim):
        if d.HasField("dim_value") and d.dim_value >= 0:    # -1: dynamic (Paddle2ONNX)
            dims.append(int(d.dim_value))
        elif d.dim_param:
            dims.append(d.dim_param)
        else:
            dims.append(f"{vi.name}_dim{k}")
    return ValueInfo(vi.name, dt, dims)


# -- graph passes -----------------------------------------------------------------------------
def _graph(ctx: _Ctx) -> Graph:
    return Graph(ctx.inputs, ctx.outputs, ctx.nodes)


def _validate(ctx: _Ctx) -> None:
    g = _graph(ctx).validate(set(ctx.consts))
    ctx.nodes = g.nodes


def _uses(ctx: _Ctx) -> dict[str, list[tuple[OpNode, int]]]:
    u: dict[str, list[tuple[OpNode, int]]] = {}
    for nd in ctx.nodes:
        for k, s in enumerate(nd.inputs):
            if s:
                u.setdefault(s, []).append((nd, k))
    return u


def _fold_constants(ctx: _Ctx) -> int:
    outs = {v.name for v in ctx.outputs}
    kept: list[OpNode] = []
    folded = 0
    for nd in ctx.nodes:
        if any(o in outs for o in nd.outputs):
            kept.append(nd)
            continue
        res = None
        if nd.op == "Shape" and nd.inputs[0] not in ctx.consts:
            shp = ctx.static_shape(nd.inputs[0])
            if shp is not None:
                fake = np.broadcast_to(np.zeros((), np.uint8), shp)
                res = OP_IMPLS["Shape"]([fake], resolve_attrs(nd), nd)
        elif all((not s) or s in ctx.consts for s in nd.inputs):
            args: list[Any] = [ctx.consts[s] if s else None for s in nd.inputs]
            if nd.op != "Concat":
                args += [None] * (OPS[nd.op].max_inputs - len(args))
            try:
                with np.errstate(all="ignore"):
                    res = OP_IMPLS[nd.op](args, resolve_attrs(nd), nd)
            except (CzError, ValueError, TypeError, IndexError, MemoryError):
                res = None      # leave the op: the same fault is reported at run time
            if res is not None:
                size_in = sum(a.size for a in args if isinstance(a, np.ndarray))
                if sum(r.size for r in res) > max(FOLD_MAX_ELEMENTS, size_in):
                    res = None
        if res is None:
            kept.append(nd)
            continue
        for o, r in zip(nd.outputs, res):
            ctx.consts[o] = np.asarray(r, order="C")
        folded += 1
    ctx.nodes = kept
    return folded


def _single_use(ctx: _Ctx, uses: dict, value: str) -> OpNode | None:
    """The one consumer of ``value`` when it has exactly one use and is no graph output."""
    if value in {v.name for v in ctx.outputs}:
        return None
    u = uses.get(value, [])
    return u[0][0] if len(u) == 1 else None


def _replace_const(ctx: _Ctx, uses: dict, old: str, arr: np.ndarray, base: str) -> str:
    """A constant for ``arr`` derived from ``old``: reuse the name when ``old`` has one use."""
    arr = np.asarray(arr, order="C")
    if old and old in ctx.consts and len(uses.get(old, [])) == 1:
        ctx.consts[old] = arr
        return old
    return ctx.const(arr, base)


def _f32c(ctx: _Ctx, name: str) -> np.ndarray | None:
    a = ctx.consts.get(name) if name else None
    if a is None or a.dtype.kind != "f":
        return None
    return a.astype(np.float32)


def _to_linear(ctx: _Ctx) -> int:
    """Gemm / MatMul with a constant 2-D float B -> Linear (W (out, in))."""
    uses = _uses(ctx)
    out: list[OpNode] = []
    count = 0
    transposed: dict[str, str] = {}
    for nd in ctx.nodes:
        if nd.op not in ("Gemm", "MatMul") or len(nd.inputs) < 2:
            out.append(nd)
            continue
        a_name, b_name = nd.inputs[0], nd.inputs[1]
        b = _f32c(ctx, b_name)
        if b is None or b.ndim != 2 or a_name in ctx.consts:
            out.append(nd)
            continue
        if nd.op == "MatMul":
            if b_name not in transposed:
                transposed[b_name] = _replace_const(ctx, uses, b_name, b.T, f"{nd.name}.weight")
            w = transposed[b_name]
            out.append(OpNode("Linear", nd.name, [a_name, w], list(nd.outputs), {}))
            count += 1
            continue
        at = resolve_attrs(nd)
        cname = nd.inputs[2] if len(nd.inputs) > 2 else ""
        c = _f32c(ctx, cname) if cname else None
        if cname and c is None and cname in ctx.consts:
            out.append(nd)          # non-float C: leave the Gemm (its own error at run time)
            continue
        w = b if at["transB"] else b.T
        if at["alpha"] != 1.0:
            w = (w.astype(np.float64) * at["alpha"]).astype(np.float32)
        n_out = w.shape[0]
        w_name = _replace_const(ctx, uses, b_name, w, f"{nd.name}.weight")
        x = a_name
        if at["transA"]:
            x = ctx.fresh(f"{nd.name}_At")
            out.append(OpNode("Transpose", ctx.node_name(f"{nd.name}/transA"), [a_name], [x],
                              {"perm": [1, 0]}))
        ins = [x, w_name]
        tail: list[OpNode] = []
        y = nd.outputs[0]
        if cname:
            beta = at["beta"]
            if c is not None and (c.ndim == 0 or c.shape in ((n_out,), (1, n_out))
                                  or c.size == 1):
                bias = np.broadcast_to(c.astype(np.float64).reshape(-1), (n_out,)) * beta
                ins.append(_replace_const(ctx, uses, cname, bias.astype(np.float32),
                                          f"{nd.name}.bias"))
            else:
                lin = ctx.fresh(f"{nd.name}_xw")
                cc = cname
                if beta != 1.0:
                    if c is not None:
                        cc = ctx.const((c.astype(np.float64) * beta).astype(np.float32),
                                       f"{nd.name}.C")
                    else:
                        bconst = ctx.const(np.array(beta, np.float32), f"{nd.name}_beta")
                        cc = ctx.fresh(f"{nd.name}_betaC")
                        tail.append(OpNode("Mul", ctx.node_name(f"{nd.name}/beta"),
                                           [cname, bconst], [cc], {}))
                tail.append(OpNode("Add", ctx.node_name(f"{nd.name}/C"), [lin, cc], [y], {}))
                y = lin
        out.append(OpNode("Linear", nd.name, ins, [y], {}))
        out.extend(tail)
        count += 1
    ctx.nodes = out
    return count


def _producers(ctx: _Ctx) -> dict[str, OpNode]:
    return {o: nd for nd in ctx.nodes for o in nd.outputs}


def _fold_bn(ctx: _Ctx) -> int:
    """BatchNormalization after Conv / 2-D Linear with constant weights -> new weights."""
    uses = _uses(ctx)
    prod = _producers(ctx)
    drop: set[int] = set()
    count = 0
    for bn in ctx.nodes:
        if bn.op != "BatchNormalization":
            continue
        x = bn.inputs[0]
        p = prod.get(x)
        if p is None or p.op not in ("Conv", "Linear") or _single_use(ctx, uses, x) is not bn:
            continue
        params = [_f32c(ctx, s) for s in bn.inputs[1:5]]
        w = _f32c(ctx, p.inputs[1])
        bname = p.inputs[2] if len(p.inputs) > 2 else ""
        b = _f32c(ctx, bname) if bname else None
        if w is None or any(q is None for q in params) or (bname and b is None):
            continue
        if p.op == "Linear" and ctx.rank(x) != 2:
            continue
        m = w.shape[0]
        if any(q.shape != (m,) for q in params):
            continue
        scale, beta, mean, var = (q.astype(np.float64) for q in params)
        eps = np.float64(np.float32(resolve_attrs(bn)["epsilon"]))
        factor = scale / np.sqrt(var + eps)
        w2 = (w.astype(np.float64) * factor.reshape((m,) + (1,) * (w.ndim - 1)))
        b0 = b.astype(np.float64) if b is not None else np.zeros(m)
        b2 = (b0 - mean) * factor + beta
        wn = _replace_const(ctx, uses, p.inputs[1], w2.astype(np.float32), f"{p.name}.weight")
        bn_ = _replace_const(ctx, uses, bname, b2.astype(np.float32), f"{p.name}.bias")
        p.inputs = [p.inputs[0], wn, bn_]
        p.outputs = [bn.outputs[0]]
        drop.add(id(bn))
        count += 1
    ctx.nodes = [nd for nd in ctx.nodes if id(nd) not in drop]
    return count


def _fold_bias(ctx: _Ctx) -> int:
    """Linear without bias followed by Add(constant row vector) -> Linear with bias."""
    uses = _uses(ctx)
    drop: set[int] = set()
    count = 0
    for nd in ctx.nodes:
        if nd.op != "Linear" or (len(nd.inputs) > 2 and nd.inputs[2]):
            continue
        y = nd.outputs[0]
        add = _single_use(ctx, uses, y)
        if add is None or add.op != "Add":
            continue
        other = add.inputs[1] if add.inputs[0] == y else add.inputs[0]
        if other == y:
            continue
        c = _f32c(ctx, other)
        w = ctx.consts.get(nd.inputs[1])
        if c is None or w is None:
            continue
        n_out = w.shape[0]
        ry = ctx.rank(y)
        if (c.ndim > (ry if ry is not None else 1) or any(d != 1 for d in c.shape[:-1])
                or (c.ndim and c.shape[-1] not in (1, n_out))):
            continue
        bias = np.broadcast_to(c.reshape(-1), (n_out,)).astype(np.float32)
        bname = _replace_const(ctx, uses, other, bias, f"{nd.name}.bias")
        nd.inputs = [nd.inputs[0], nd.inputs[1], bname]
        nd.outputs = [add.outputs[0]]
        drop.add(id(add))
        count += 1
    ctx.nodes = [nd for nd in ctx.nodes if id(nd) not in drop]
    return count


def _dead_code(ctx: _Ctx) -> None:
    needed = {v.name for v in ctx.outputs}
    kept: list[OpNode] = []
    for nd in reversed(ctx.nodes):
        if any(o in needed for o in nd.outputs):
            kept.append(nd)
            needed.update(s for s in nd.inputs if s)
    ctx.nodes = kept[::-1]
    for name in [k for k in ctx.consts if k not in needed]:
        del ctx.consts[name]


def _weight_roles(ctx: _Ctx) -> tuple[dict[str, str], set[str]]:
    """(compressible weights -> consuming op type, bias tensors). Everything else is stored
    as is: shape constants, normalisation parameters, quantization scales."""
    weights: dict[str, str] = {}
    biases: set[str] = set()
    for nd in ctx.nodes:
        ins = nd.inputs
        if nd.op in ("Conv", "ConvTranspose", "Linear", "Gemm"):
            if len(ins) > 1 and ins[1] in ctx.consts:
                weights[ins[1]] = nd.op
            if len(ins) > 2 and ins[2] in ctx.consts:
                biases.add(ins[2])
        elif nd.op == "MatMul" and ins[1] in ctx.consts:
            weights[ins[1]] = "MatMul"
        elif nd.op == "Gather" and ins[0] in ctx.consts and ctx.consts[ins[0]].ndim >= 2:
            weights[ins[0]] = "Gather"
    weights = {k: v for k, v in weights.items() if ctx.consts[k].dtype.kind == "f"}
    return weights, biases - set(weights)


# -- compression config and calibration ---------------------------------------------------------
def _calib_batches(vi: ValueInfo, x: np.ndarray) -> list[np.ndarray]:
    dt = TENSOR_DTYPES[vi.dtype]
    x = np.asarray(x)
    if x.ndim == len(vi.shape) + 1:
        return [np.asarray(s, dtype=dt, order="C") for s in x]
    if x.ndim != len(vi.shape):
        raise EncodeError(f"calibration input {vi.name!r}: rank {x.ndim}, the graph wants "
                          f"{len(vi.shape)} (or {len(vi.shape) + 1} for a stack of samples)")
    d0 = vi.shape[0] if vi.shape else None
    if isinstance(d0, int) and x.shape[0] != d0 and d0 > 0 and x.shape[0] % d0 == 0:
        return [np.asarray(x[i:i + d0], dtype=dt, order="C") for i in range(0, x.shape[0], d0)]
    return [np.asarray(x, dtype=dt, order="C")]


def calibrate_graph(graph: Graph, tensors: Mapping[str, np.ndarray],
                    calib: Mapping[str, np.ndarray], method: str = "minmax",
                    percentile: float = 99.99, symmetric: bool = True) -> dict:
    """int8 ranges of every float activation (graph inputs and node outputs) over the
    calibration set, with the reference executor (``fetch=`` every node output)."""
    from czmodel.compress.calibrate import HistogramCalibrator, compute_ranges
    from czmodel.runtime.executor import Executor
    from czmodel.runtime.reference import ReferenceBackend

    missing = [v.name for v in graph.inputs if v.name not in calib]
    extra = sorted(set(calib) - {v.name for v in graph.inputs})
    if missing or extra:
        raise EncodeError(f"calibration set: missing inputs {missing}, unknown {extra} (the "
                          f"graph's inputs are {[v.name for v in graph.inputs]})")
    batches = {v.name: _calib_batches(v, calib[v.name]) for v in graph.inputs}
    counts = {len(b) for b in batches.values()}
    if len(counts) != 1:
        raise EncodeError(f"calibration inputs give different numbers of batches: "
                          f"{ {k: len(v) for k, v in batches.items()} }")
    ex = Executor(graph, dict(tensors), ReferenceBackend())
    names = [o for nd in graph.nodes for o in nd.outputs]
    cals: dict[str, HistogramCalibrator] = {}
    n_batches = counts.pop()
    with progress_task(n_batches, desc="calibrating (batches)") as bar:
        for i in range(n_batches):
            feeds = {k: v[i] for k, v in batches.items()}
            res = ex.run(feeds, fetch=names)
            res.update(feeds)
            for k, a in res.items():
                if isinstance(a, np.ndarray) and a.dtype.kind == "f" and a.size and np.isfinite(
                        a).all():
                    cals.setdefault(k, HistogramCalibrator()).update(a)
            bar.advance(1)
    return compute_ranges(cals, method, p=percentile, symmetric=symmetric)


# -- the public function ----------------------------------------------------------------------
def convert_graph(model: Any) -> tuple[Graph, dict[str, np.ndarray], ConversionInfo]:
    """ONNX model -> (validated op set 1 Graph, file tensors, info). Writes nothing."""
    model, base_dir = _load(model)
    model, opset = _prepare(model)
    g = model.graph
    taken = {s for nd in g.node for s in list(nd.input) + list(nd.output)}
    taken |= {v.name for v in list(g.input) + list(g.output)} | {t.name for t in g.initializer}
    ctx = _Ctx(opset, taken)
    ctx.shapes, ctx.dtypes = _shape_info(model)
    # one bar over the import: initializers read, nodes lowered, then the graph passes
    passes = 6          # the four folds, dead code, validation
    with progress_task(len(g.initializer) + len(g.node) + passes,
                       desc="importing ONNX") as bar:
        for t in g.initializer:
            ctx.consts[t.name] = _to_array(t, f"initializer {t.name!r}", base_dir)
            bar.advance(1)
        if len(g.sparse_initializer):
            raise UnsupportedError("sparse initializers are not supported")
        for vi in g.input:
            if vi.name not in ctx.consts:
                ctx.inputs.append(_value_info(vi, "graph input", strict=True))
        for i, nd in enumerate(g.node):
            name = nd.name or f"{nd.op_type}_{i}"
            attrs = {a.name: _attr_value(a) for a in nd.attribute}
            _lower(ctx, _N(nd.op_type, name, list(nd.input), list(nd.output), attrs))
            bar.advance(1)
        _finish_outputs(ctx, g)
        info = ConversionInfo(opset, len(g.node), 0)
        _validate(ctx)
        for attr, label, fn in (("folded", "folding constants", _fold_constants),
                                ("linear", "fusing Linear", _to_linear),
                                ("bn_folded", "folding BatchNorm", _fold_bn),
                                ("bias_folded", "folding biases", _fold_bias)):
            bar.set_postfix_str(label)
            setattr(info, attr, fn(ctx))
            bar.advance(1)
        bar.set_postfix_str("dead code")
        _dead_code(ctx)
        bar.advance(1)
        _validate(ctx)
        bar.advance(1)
    info.nodes = len(ctx.nodes)
    for nd in ctx.nodes:
        info.ops[nd.op] = info.ops.get(nd.op, 0) + 1
    return _graph(ctx), ctx.consts, info


def _finish_outputs(ctx: _Ctx, g: onnx.GraphProto) -> None:
    input_names = {v.name for v in ctx.inputs}
    for vi in g.output:
        out = _value_info(vi, "graph output", strict=False)
        src = vi.name
        produced = {o for nd in ctx.nodes for o in nd.outputs}
        if src in input_names:                # an output that is an input needs its own name
            out.name = ctx.fresh(f"{src}_out")
            ctx.emit("Identity", [src], [out.name], {}, f"{out.name}/identity")
            ctx.outputs.append(out)
            continue
        if src in ctx.consts:
            cname = ctx.fresh(f"{src}_const")
            ctx.consts[cname] = ctx.consts.pop(src)
            for nd in ctx.nodes:
                nd.inputs = [cname if s == src else s for s in nd.inputs]
            ctx.emit("Identity", [cname], [src], {}, f"{src}/identity")
        elif src not in produced:
            raise EncodeError(f"graph output {src!r} is not produced by any node")
        prod = next((nd for nd in ctx.nodes if src in nd.outputs), None)
        already = prod is not None and prod.op == "Cast" and prod.attrs.get("to") == out.dtype
        if out.dtype in ("f16", "f64") and not already:
            # op set 1 float ops compute and return f32; restore the declared width
            inner = ctx.fresh(f"{src}_f32")
            for nd in ctx.nodes:
                nd.outputs = [inner if s == src else s for s in nd.outputs]
                nd.inputs = [inner if s == src else s for s in nd.inputs]
            ctx.emit("Cast", [inner], [src], {"to": out.dtype}, f"{src}/cast")
        ctx.outputs.append(out)


def onnx_to_cz(onnx_path_or_model: Any, out_path: str | os.PathLike, config: Any = None,
               calib: Mapping[str, np.ndarray] | None = None, *,
               activations: str | Mapping | None = None, calib_method: str | None = None,
               metadata: Mapping | None = None):
    """Convert an ONNX model (path, bytes or ``onnx.ModelProto``) to a .cz file with a graph.

    ``config``: a ``CompressionConfig``, a dict or a JSON/YAML path (None = lossless). It
    applies to weight tensors only: the W of Conv / ConvTranspose / Linear / Gemm / MatMul and
    float Gather tables, with the consuming op as op type. Biases are stored as is unless a
    ``layers`` pattern names them; every other tensor is stored as is.
    ``calib``: graph input name -> array (one batch, or a stack of batches along a new axis 0);
    with it (required when int8 activations are requested: ``activations="int8"`` or the
    config's ``"activations"`` key) the int8 range of every float activation is computed
    (``calib_method``: minmax, percentile or entropy) and stored in the file's calibration map.

    Returns the compression ``Report`` with ``.conversion`` (a ``ConversionInfo``). Raises
    ``UnsupportedError`` for an op or attribute op set 1 lacks, before anything is written."""
    from czmodel.compress.pipeline import save

    cfg, act = split_config(config)
    if activations is not None:
        act = parse_activations(activations)
    if act is not None and calib is None:
        raise EncodeError("int8 activations need a calibration set (calib={input: array})")
    graph, tensors, info = convert_graph(onnx_path_or_model)
    weights, biases = _weight_roles(_CtxView(graph, tensors))
    info.weights = dict(weights)
    calibration = None
    if calib is not None:
        method = calib_method or (act or {}).get("method", "minmax")
        calibration = calibrate_graph(graph, tensors, calib, method,
                                      float((act or {}).get("percentile", 99.99)),
                                      bool((act or {}).get("symmetric", True)))
        info.calibrated = len(calibration)
    op_types = dict(weights)
    raw = [n for n in tensors if n not in weights]
    named = named_by_layers(cfg, biases)          # biases a layers pattern asks for
    raw = [n for n in raw if n not in named]
    for b in named:
        op_types[b] = next(nd.op for nd in graph.nodes if len(nd.inputs) > 2 and nd.inputs[2] == b)
    meta = {"producer": "czconvert", "source": "onnx", "onnx_opset": info.source_opset}
    meta.update(metadata or {})
    report = save(out_path, tensors, _effective_config(cfg, raw), metadata=meta,
                  op_types=op_types, calibration=calibration, graph=graph)
    report.conversion = info
    return report


class _CtxView:
    """Adapter so ``_weight_roles`` can run on a finished graph."""

    def __init__(self, graph: Graph, tensors: Mapping[str, np.ndarray]) -> None:
        self.nodes = graph.nodes
        self.consts = tensors
