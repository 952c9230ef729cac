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
    """Linear followed by Add(const) → Linear with bias (the sum is the same int32 accumulator);
    then every Linear bias in one of the two forms the kernels take (normalize_bias)."""
    _fold_bias_adds(graph)
    for lin in graph.nodes:
        if lin.op == "Linear":
            normalize_bias(graph, lin)


def normalize_bias(graph: Graph, lin: Node) -> None:
    """A Linear's bias as a vector [N] (`bias_kind` "vector": the same for every row; scalars and
    [1..1, N] forms are expanded) or as a full int32 matrix of the output's shape ("full": it
    varies along the rows; row-broadcast forms such as [S, 1] are expanded), in int32, which is
    what kl_linear reads (bias[N]) or what becomes the accumulator tile (planner/tiling/ops.py).
    Exact: the same values are added to the same accumulators."""
    if len(lin.inputs) < 3 or not lin.inputs[2]:
        lin.attrs.pop("bias_kind", None)
        return
    t = graph.tensors[lin.inputs[2]]
    out_shape = tuple(graph.tensors[lin.outputs[0]].shape)
    n_out = graph.tensors[lin.inputs[1]].shape[0]
    data = np.asarray(t.data, dtype=np.int64)
    if data.size == 1 or all(d == 1 for d in data.shape[:-1]):
        kind, value = "vector", np.broadcast_to(data.reshape(-1), (n_out,)) if data.size != n_out else data.reshape(n_out)
    else:
        kind, value = "full", np.broadcast_to(data, out_shape)
    lin.attrs["bias_kind"] = kind
    if value.shape == data.shape and t.dtype == "int32":
        return
    name = f"{lin.name}.bias" if lin.inputs[2] != f"{lin.name}.bias" else lin.inputs[2]
    graph.tensors[name] = Tensor(name, tuple(value.shape), "int32", np.ascontiguousarray(value))
    lin.inputs = lin.inputs[:2] + [name]


def _fold_bias_adds(graph: Graph) -> None:
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
        lin.attrs.pop("bias_kind", None)
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
