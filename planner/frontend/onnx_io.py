"""Reading an ONNX file with clear errors: loading, constants, attributes and input shapes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from planner.errors import PlannerError, UsageError

ONNX_INT_DTYPES = {
    onnx.TensorProto.INT8: "int8",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT16: "int16",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.INT64: "int64",
}


def load_model(path: str | Path) -> onnx.ModelProto:
    path = Path(path)
    if not path.exists():
        raise PlannerError(f"{path}: no such file")
    if path.is_dir():
        raise PlannerError(f"{path}: is a directory, expected an .onnx file")
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf raises DecodeError, onnx raises its own on external data
        raise PlannerError(
            f"{path}: not a readable ONNX model ({type(exc).__name__}: {exc}); "
            "is the file truncated or of another format?") from None
    if not model.graph.node:
        raise PlannerError(f"{path}: not an ONNX model with a graph (no nodes found); "
                           "is the file truncated or of another format?")
    return model


def parse_input_shapes(specs: list[str] | None) -> dict[str, tuple[int, ...]]:
    """`NAME=1x81x32` strings from --input-shape into a dict."""
    shapes: dict[str, tuple[int, ...]] = {}
    for spec in specs or []:
        name, sep, dims = spec.partition("=")
        try:
            if not sep or not name:
                raise ValueError
            shape = tuple(int(d) for d in dims.lower().split("x"))
            if any(d <= 0 for d in shape):
                raise ValueError
        except ValueError:
            raise UsageError(f"--input-shape {spec!r}: expected NAME=D1xD2x..., "
                             "positive integers, e.g. input=1x81x32") from None
        shapes[name] = shape
    return shapes


@dataclass
class GraphInput:
    name: str
    shape: tuple[int, ...]
    dtype: str | None  # None when ONNX declares a float type (integer values in a float tensor)


def graph_inputs(model: onnx.ModelProto, path: Path,
                 overrides: dict[str, tuple[int, ...]]) -> list[GraphInput]:
    """Non-initializer graph inputs with static shapes (dynamic dims need --input-shape)."""
    inits = {i.name for i in model.graph.initializer}
    result = []
    names = []
    for vi in model.graph.input:
        if vi.name in inits:
            continue
        names.append(vi.name)
        ttype = vi.type.tensor_type
        if vi.name in overrides:
            shape = overrides[vi.name]
        else:
            dims = []
            for k, d in enumerate(ttype.shape.dim):
                if d.HasField("dim_value") and d.dim_value > 0:
                    dims.append(d.dim_value)
                else:
                    label = d.dim_param or "?"
                    raise PlannerError(
                        f"{path}: input '{vi.name}' has a dynamic dimension {k} ('{label}'); "
                        f"give the full shape with --input-shape {vi.name}=1x...")
            shape = tuple(dims)
        result.append(GraphInput(vi.name, shape, ONNX_INT_DTYPES.get(ttype.elem_type)))
    unknown = set(overrides) - set(names)
    if unknown:
        raise UsageError(f"--input-shape names {', '.join(sorted(unknown))}, but the graph inputs "
                         f"are: {', '.join(names)}")
    return result


def attr_dict(node: onnx.NodeProto) -> dict[str, Any]:
    """Attributes as Python values; 1-element tensors (QuantLib's spelling of ints) unwrapped."""
    out: dict[str, Any] = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        if isinstance(v, onnx.TensorProto):
            arr = numpy_helper.to_array(v)
            v = arr.reshape(-1)[0].item() if arr.size == 1 else arr
        elif isinstance(v, bytes):
            v = v.decode()
        out[a.name] = v
    return out


def as_int(value: Any, node: str, field: str) -> int:
    """One integer from a plain int/float or a 1-element tensor; clear error otherwise."""
    arr = np.asarray(value)
    if arr.size != 1:
        raise PlannerError(f"node {node}: attribute {field} should be one number, got shape {arr.shape}")
    f = float(arr.reshape(-1)[0])
    if f != round(f):
        raise PlannerError(f"node {node}: attribute {field} should be an integer, got {f}")
    return int(round(f))


def constants(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Initializers and Constant-node outputs as numpy arrays (original dtypes)."""
    consts = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output:
            a = attr_dict(n)
            if "value" in a:
                consts[n.output[0]] = np.asarray(a["value"])
            elif "value_int" in a:
                consts[n.output[0]] = np.asarray(a["value_int"], dtype=np.int64)
            elif "value_ints" in a:
                consts[n.output[0]] = np.asarray(a["value_ints"], dtype=np.int64)
            elif "value_float" in a:
                consts[n.output[0]] = np.asarray(a["value_float"], dtype=np.float32)
            elif "value_floats" in a:
                consts[n.output[0]] = np.asarray(a["value_floats"], dtype=np.float32)
    return consts


def is_integral(arr: np.ndarray) -> bool:
    if arr.dtype.kind in "iub":
        return True
    if arr.dtype.kind == "f":
        return bool(np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    return False
