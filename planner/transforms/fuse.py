"""Producer fusions that keep the integer meaning exactly: bias into Linear, RequantShift into its
producer, input requantizations into Add."""

from __future__ import annotations

import numpy as np

from planner.ir import Graph, Node, Requant, Tensor

RQ_PRODUCERS = frozenset({"Linear", "MatMul", "GELU", "Mul"})


def _single_consumer(graph: Graph, tensor: str) -> Node | None:
    if tensor in graph.outputs:
        return None
    cons = graph.consumers(tensor)
    return cons[0] if len(cons) == 1 else None


def _remove(graph: Graph, node: Node) -> None:
    graph.nodes = [n for n in graph.nodes if n is not node]


def fold_bias(graph: Graph) -> None:
    """Linear followed by Add(const) → Linear with bias (the sum is the same int32 accumulator)."""
    for lin in [n for n in graph.nodes if n.op == "Linear" and "rq" not in n.attrs]:
        add = _single_consumer(graph, lin.outputs[0])
        if add is None or add.op != "Add" or add.attrs:
            continue
        other = add.inputs[1] if add.inputs[0] == lin.outputs[0] else add.inputs[0]
        ot = graph.tensors[other]
        out_shape = graph.tensors[lin.outputs[0]].shape
        if not ot.is_const or np.broadcast_shapes(ot.shape, out_shape) != tuple(out_shape):
            continue
        bias = ot.data
        if len(lin.inputs) > 2:
            bias = graph.tensors[lin.inputs[2]].data + bias
        bname = f"{lin.name}.bias"
        graph.tensors[bname] = Tensor(bname, tuple(bias.shape), "int32", bias)
        lin.inputs = lin.inputs[:2] + [bname]
        lin.outputs = list(add.outputs)
        _remove(graph, add)


def _fold_alpha(graph: Graph, lin: Node, rq: Requant) -> Requant:
    """RQ(alpha*acc + bias) == RQ'(acc) with mul' = alpha*mul, add' = add + bias*mul (exact)."""
    alpha = lin.attrs.pop("alpha")
    add = rq.add
    if len(lin.inputs) > 2:
        add = add + graph.tensors[lin.inputs[2]].data * rq.mul
        lin.inputs = lin.inputs[:2]
    return Requant(rq.mul * alpha, np.asarray(add), rq.div, rq.n_levels, rq.signed)


def fuse_requant(graph: Graph, producers: frozenset[str]) -> None:
    """RequantShift whose input has no other consumer becomes its producer's `rq`."""
    for rqn in [n for n in graph.nodes if n.op == "RequantShift"]:
        prod = graph.producer(rqn.inputs[0])
        if prod is None or prod.op not in producers or "rq" in prod.attrs:
            continue
        if _single_consumer(graph, rqn.inputs[0]) is not rqn:
            continue
        rq = rqn.attrs["rq"]
        if prod.attrs.get("alpha", 1) != 1:
            rq = _fold_alpha(graph, prod, rq)
        prod.attrs["rq"] = rq
        prod.outputs = list(rqn.outputs)
        _remove(graph, rqn)


def fuse_add_inputs(graph: Graph) -> None:
    """RQ(a) + RQ(b) → one Add with per-input requantization (QuantLib's residual pattern)."""
    for add in [n for n in graph.nodes if n.op == "Add" and not n.attrs]:
        if any(graph.tensors[i].is_const for i in add.inputs):
            continue
        for slot, key in ((0, "rq_a"), (1, "rq_b")):
            prod = graph.producer(add.inputs[slot])
            if prod is None or prod.op != "RequantShift":
                continue
            if _single_consumer(graph, add.inputs[slot]) is not add:
                continue
            add.attrs[key] = prod.attrs["rq"]
            add.inputs[slot] = prod.inputs[0]
            _remove(graph, prod)
