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
    check_opset(model, path)
    check_tensor_names(model, path)
    return model


def check_opset(model: onnx.ModelProto, path: Path) -> None:
    """The default-domain opset must be one the installed onnx knows (the frontends read ops by
    the semantics of the known opsets; a newer one may have changed them)."""
    newest = onnx.defs.onnx_opset_version()
    for op in model.opset_import:
        if op.domain in ("", "ai.onnx") and not 1 <= op.version <= newest:
            raise PlannerError(
                f"{path}: imports opset {op.version} of the default ONNX domain; the installed onnx "
                f"{onnx.__version__} knows opsets 1 to {newest}. Re-export the model with a known "
                "opset (e.g. torch.onnx.export(..., opset_version=17))")


def check_tensor_names(model: onnx.ModelProto, path: Path) -> None:
    """Every tensor defined once (initializer, graph input, Constant or node output) and every
    node input defined somewhere: the root cause, before any ordering or import step trips on it."""
    g = model.graph
    defined: dict[str, str] = {}  # tensor -> what defines it

    def define(name: str, what: str) -> None:
        if not name:
            return
        if name in defined and defined[name] != what:
            raise PlannerError(
                f"{path}: tensor '{name}' is defined twice: by {defined[name]} and by {what}; "
                "every tensor name must be defined once (rename one)")
        if name in defined:  # the same initializer or node output listed twice
            raise PlannerError(f"{path}: {what} appears twice for tensor '{name}'; every tensor name "
                               "must be defined once (remove or rename one)")
        defined[name] = what

    for t in g.initializer:
        define(t.name, f"initializer '{t.name}'")
    inits = set(defined)
    for vi in g.input:
        if vi.name not in inits:  # older exporters list initializers among the inputs too
            define(vi.name, f"graph input '{vi.name}'")
    for idx, n in enumerate(g.node):
        label = f"node '{n.name or f'{n.op_type}_{idx}'}' ({n.op_type})"
        for o in n.output:
            define(o, label)
    for idx, n in enumerate(g.node):
        for k, i in enumerate(n.input):
            if i and i not in defined:
                raise PlannerError(
                    f"{path}: tensor '{i}' (input {k} of node '{n.name or f'{n.op_type}_{idx}'}', "
                    f"{n.op_type}) is not defined: no node produces it and it is neither a graph "
                    "input nor an initializer. Is its producer missing, or the name misspelt?")
    for o in g.output:
        if o.name not in defined:
            raise PlannerError(f"{path}: graph output '{o.name}' is not produced by any node, graph "
                               "input or initializer")


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
        declared = _declared_dims(vi, path)
        if vi.name in overrides:
            shape = _override(vi.name, declared, overrides[vi.name])
        elif declared is None:
            raise PlannerError(f"{path}: input '{vi.name}' declares no shape; give it with "
                               f"--input-shape {vi.name}=1x...")
        else:
            for k, d in enumerate(declared):
                if not isinstance(d, int):
                    raise PlannerError(
                        f"{path}: input '{vi.name}' has a dynamic dimension {k} ('{d}'); "
                        f"give the full shape with --input-shape {vi.name}=1x...")
            shape = tuple(declared)
        result.append(GraphInput(vi.name, shape, ONNX_INT_DTYPES.get(ttype.elem_type)))
    unknown = set(overrides) - set(names)
    if unknown:
        raise UsageError(f"--input-shape names {', '.join(sorted(unknown))}, but the graph inputs "
                         f"are: {', '.join(names)}")
    return result


def _declared_dims(vi: onnx.ValueInfoProto, path: Path) -> list[int | str] | None:
    """An input's declared dims: positive ints, or the name of a dynamic one ('?' when unnamed);
    None when no shape is declared at all. A zero or negative size is an error, not dynamic."""
    ttype = vi.type.tensor_type
    if not ttype.HasField("shape"):
        return None
    dims: list[int | str] = []
    for k, d in enumerate(ttype.shape.dim):
        if d.HasField("dim_value"):
            if d.dim_value <= 0:
                raise PlannerError(
                    f"{path}: input '{vi.name}' declares dimension {k} as {d.dim_value}; a static size "
                    "must be positive (a dynamic dimension has a name, dim_param, or no value). Fix "
                    "the model's input shape")
            dims.append(d.dim_value)
        else:
            dims.append(d.dim_param or "?")
    return dims


def _fmt_dims(dims: list[int | str] | tuple[int, ...]) -> str:
    return "x".join(str(d) for d in dims) or "scalar"


def _override(name: str, declared: list[int | str] | None, shape: tuple[int, ...]) -> tuple[int, ...]:
    """--input-shape sets the dynamic dimensions; the rank and the static sizes stay the model's."""
    given = f"--input-shape {name}={_fmt_dims(shape)}"
    if declared is None:
        return shape
    if len(shape) != len(declared):
        raise UsageError(f"{given}: gives {len(shape)} dimension(s), but input '{name}' has "
                         f"{len(declared)} ({_fmt_dims(declared)}; a name or '?' marks a dynamic one)")
    for k, (d, v) in enumerate(zip(declared, shape)):
        if isinstance(d, int) and d != v:
            raise UsageError(f"{given}: dimension {k} of input '{name}' is static in the model ({d}), "
                             f"got {v}; --input-shape sets dynamic dimensions only (declared shape "
                             f"{_fmt_dims(declared)}; a name or '?' marks a dynamic one)")
    return shape


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
