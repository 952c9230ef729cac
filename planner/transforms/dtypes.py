"""Output dtype of each canonical op (what the C kernel writes)."""

from __future__ import annotations

from planner.ir import LAYOUT_OPS, Graph, Node

_SAME_AS_INPUT = LAYOUT_OPS | {"MaxPool", "Gather", "Concat", "Slice", "Pad", "Relu", "Clip", "Mean"}
_NORMS = {"LayerNorm", "RMSNorm", "NoNorm"}


def output_dtype(graph: Graph, node: Node) -> str:
    rq = node.attrs.get("rq")
    if rq is not None:
        return rq.out_dtype
    if node.op in _SAME_AS_INPUT:
        return graph.tensors[node.inputs[0]].dtype
    if node.op == "Softmax":
        return "uint8" if node.attrs["n_levels"] <= 256 else "int32"
    if node.op in _NORMS:
        return "int8" if node.attrs["n_levels"] <= 256 else "int32"
    if node.op == "Lut":
        return graph.tensors[node.inputs[1]].dtype
    if node.op == "MHSA":
        return output_dtype(graph, node.parts[-1])
    return "int32"
