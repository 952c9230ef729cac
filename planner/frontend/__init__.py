"""Frontends: ONNX (QuantLib integer or standard QDQ) to the integer IR."""

from __future__ import annotations

from pathlib import Path

from planner.errors import PlannerError
from planner.frontend.onnx_io import graph_inputs, load_model
from planner.ir import Graph


def detect_flavour(model) -> str:
    from planner.frontend.quantlib import is_quantlib_graph

    ops = {n.op_type for n in model.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearMatMul", "QLinearConv"}:
        return "qdq"
    if is_quantlib_graph(model):
        return "quantlib"
    return "float"


def load_graph(path: str | Path, input_shapes: dict[str, tuple[int, ...]] | None = None,
               fuse: bool = True, int16: str = "off") -> Graph:
    """Read an ONNX file into the canonical integer IR (fused unless fuse=False).

    int16: the int16 residual stream of QDQ graphs, auto | off | TENSOR,...
    (planner/transforms/int16.py)."""
    path = Path(path)
    model = load_model(path)
    inputs = graph_inputs(model, path, input_shapes or {})
    flavour = detect_flavour(model)
    if flavour == "float":
        raise PlannerError(
            f"{path}: this is a float graph with no quantization (no QuantizeLinear/DequantizeLinear "
            "and no QuantLib integer ops); quantize it first, e.g. with "
            "onnxruntime.quantization.quantize_static (QDQ format), or export it with QuantLib")
    if flavour == "qdq":
        from planner.frontend.qdq import import_qdq
        graph = import_qdq(model, path, inputs)
    else:
        from planner.frontend.quantlib import import_quantlib
        graph = import_quantlib(model, path, inputs)
    return finish_import(graph, path, fuse, int16)


def finish_import(graph: Graph, path: Path, fuse: bool, int16: str = "off") -> Graph:
    """Common tail of every frontend: order, shapes, mixed precision (QDQ), canonical fusions."""
    try:
        graph.toposort()
        infer_shapes(graph)
        if int16 != "off":
            from planner.transforms.int16 import apply_int16
            if apply_int16(graph, int16):
                infer_shapes(graph)
        if fuse:
            from planner.transforms import canonicalize
            canonicalize(graph)
            infer_shapes(graph)
    except ValueError as exc:  # a node whose shapes do not fit (the IR op table's rules)
        raise PlannerError(f"{path}: shapes do not fit: {exc}") from None
    except PlannerError as exc:  # (a UsageError stays one)
        raise type(exc)(f"{path}: {exc}") from None
    graph.remove_unused()
    return graph


def infer_shapes(graph: Graph) -> None:
    """Shapes and dtypes of every activation from the IR op table's shape rules
    (planner.ir_ops.infer_shapes): loading a network never executes it."""
    from planner.ir_ops import infer_shapes as by_rules
    by_rules(graph)
