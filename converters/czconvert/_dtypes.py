"""ONNX element types <-> czmodel tensor dtype names (``czmodel.format.header.TENSOR_DTYPES``)."""

from __future__ import annotations

from onnx import TensorProto

ONNX_TO_DTYPE: dict[int, str] = {
    TensorProto.FLOAT: "f32", TensorProto.DOUBLE: "f64", TensorProto.FLOAT16: "f16",
    TensorProto.INT64: "i64", TensorProto.INT32: "i32", TensorProto.INT16: "i16",
    TensorProto.INT8: "i8", TensorProto.UINT8: "u8", TensorProto.UINT16: "u16",
    TensorProto.UINT32: "u32", TensorProto.BOOL: "bool",
}
DTYPE_TO_ONNX: dict[str, int] = {v: k for k, v in ONNX_TO_DTYPE.items()}


def onnx_type_name(elem_type: int) -> str:
    try:
        return TensorProto.DataType.Name(elem_type)
    except ValueError:
        return f"<elem type {elem_type}>"
