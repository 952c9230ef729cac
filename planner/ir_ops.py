"""The op table of the integer IR: per op its operands, its attributes and its shape rule.

A shape rule maps the shapes of a node's inputs (None for an absent optional input) to the shapes
of its outputs, from the node's attributes alone: no values, no allocation. The frontend infers
every activation's shape with it (`infer_shapes`: loading a network never executes it) and the
golden model checks each output it computes against it (planner/golden/run.py), so the rule and
the executable semantics cannot drift apart. The semantics themselves are planner/golden (numpy
broadcasting where an op broadcasts: requantization vectors and biases included).

`rq` is an optional Requant fused into the producer (mul/add broadcast against the output).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod
from typing import Callable, Sequence

import numpy as np

from planner.ir import Graph, Node

Shape = tuple[int, ...]
Rule = Callable[[Node, list], list]


@dataclass(frozen=True)
class OpSpec:
    name: str
    operands: str        # inputs, in order (? = optional)
    attrs: str           # attributes (node.attrs keys)
    shape: Rule          # (node, input shapes) -> output shapes


def _bc(*shapes) -> Shape:
    """numpy broadcasting of shapes (None and scalars ignored)."""
    return tuple(np.broadcast_shapes(*[tuple(s) for s in shapes if s is not None]))


def _vshape(v) -> Shape | None:
    return None if v is None else np.shape(v)


def _rq(node: Node, out: Shape, key: str = "rq") -> Shape:
    rq = node.attrs.get(key)
    if rq is None:
        return out
    return _bc(out, _vshape(rq.mul), _vshape(rq.add))


def _axis(a: int, nd: int) -> int:
    return a % nd if nd else 0


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """np.matmul's result shape (1-D operands promoted and the added axis dropped)."""
    a1, b1 = len(a) == 1, len(b) == 1
    a_, b_ = ((1,) + tuple(a)) if a1 else tuple(a), (tuple(b) + (1,)) if b1 else tuple(b)
    if a_[-1] != b_[-2]:
        raise ValueError(f"matmul of {tuple(a)} and {tuple(b)}: inner dims differ")
    out = _bc(a_[:-2], b_[:-2]) + (a_[-2], b_[-1])
    if a1:
        out = out[:-2] + out[-1:]
    if b1:
        out = out[:-1]
    return out


def conv_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, dilation: int) -> int:
    """Output extent of a zero-padded cross-correlation along one axis."""
    return (size + pad_lo + pad_hi - dilation * (kernel - 1) - 1) // stride + 1


def pool_out(size: int, kernel: int, stride: int, pad_lo: int, pad_hi: int, ceil_mode: bool) -> int:
    """Output extent of a max pooling along one axis (ONNX MaxPool, with ceil_mode)."""
    span = size + pad_lo + pad_hi - kernel
    o = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (o - 1) * stride >= size + pad_lo:
        o -= 1  # the last window must start inside the input or left padding
    return o


def reshape_target(shape: Shape, target: Sequence[int], allowzero: bool = False) -> Shape:
    """ONNX Reshape: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    t = [shape[i] if (d == 0 and not allowzero) else int(d) for i, d in enumerate(target)]
    if t.count(-1) > 1:
        raise ValueError(f"reshape to {list(target)}: more than one -1")
    if -1 in t:
        known = prod(d for d in t if d != -1)
        total = prod(shape)
        if known == 0 or total % known:
            raise ValueError(f"cannot reshape {tuple(shape)} to {list(target)}")
        t[t.index(-1)] = total // known
    if prod(t) != prod(shape):
        raise ValueError(f"cannot reshape {tuple(shape)} to {list(target)}")
    return tuple(t)


# --------------------------------------------------------------------------- shape rules


def _linear(n: Node, s: list) -> list:
    x, w = s[0], s[1]
    if x[-1] != w[1]:
        raise ValueError(f"Linear: input {x} and weight [out][in] {w} disagree")
    out = tuple(x[:-1]) + (w[0],)
    if len(s) > 2 and s[2] is not None:
        out = _bc(out, s[2])
    return [_rq(n, out)]


def _matmul(n: Node, s: list) -> list:
    return [_rq(n, matmul_shape(s[0], s[1]))]


def _same(n: Node, s: list) -> list:
    return [tuple(s[0])]


def _same_rq(n: Node, s: list) -> list:
    return [_rq(n, tuple(s[0]))]


def _add(n: Node, s: list) -> list:
    return [_rq(n, _bc(_rq(n, s[0], "rq_a"), _rq(n, s[1], "rq_b")))]


def _broadcast(n: Node, s: list) -> list:
    return [_rq(n, _bc(*s))]


def _reduce(shape: Shape, axes, keepdims: bool) -> Shape:
    nd = len(shape)
    ax = set(range(nd)) if not axes else {_axis(a, nd) for a in axes}
    if keepdims:
        return tuple(1 if i in ax else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in ax)


def _mean(n: Node, s: list) -> list:
    return [_reduce(s[0], n.attrs["axes"], n.attrs["keepdims"])]


def _reducesum(n: Node, s: list) -> list:
    return [_reduce(s[0], n.attrs["axes"], n.attrs["keepdims"])]


def _conv(n: Node, s: list) -> list:
    a = n.attrs
    x, w = s[0], s[1]
    one_d = len(x) == 3
    strides = list(a["strides"] or [1] * (1 if one_d else 2))
    dil = list(a["dilations"] or [1] * (1 if one_d else 2))
    pads = list(a["pads"] or [0] * (2 if one_d else 4))
    if one_d:
        return [(x[0], w[0], conv_out(x[2], w[2], strides[0], pads[0], pads[1], dil[0]))]
    return [(x[0], w[0], conv_out(x[2], w[2], strides[0], pads[0], pads[2], dil[0]),
             conv_out(x[3], w[3], strides[1], pads[1], pads[3], dil[1]))]


def _maxpool(n: Node, s: list) -> list:
    a = n.attrs
    k = tuple(a["kernel"])
    nd = len(k)
    strides = tuple(a["strides"] or [1] * nd)
    pads = tuple(a["pads"] or [0] * 2 * nd)
    x = s[0]
    spatial = x[-nd:]
    return [tuple(x[:-nd]) + tuple(pool_out(spatial[i], k[i], strides[i], pads[i], pads[i + nd],
                                            a["ceil_mode"]) for i in range(nd))]


def _reshape(n: Node, s: list) -> list:
    return [reshape_target(s[0], n.attrs["shape"], n.attrs.get("allowzero", False))]


def _transpose(n: Node, s: list) -> list:
    perm = n.attrs.get("perm")
    x = s[0]
    perm = list(range(len(x)))[::-1] if perm is None else perm
    return [tuple(x[p] for p in perm)]


def _squeeze(n: Node, s: list) -> list:
    x = s[0]
    axes = n.attrs.get("axes")
    if axes is None:
        return [tuple(d for d in x if d != 1)]
    drop = {_axis(a, len(x)) for a in axes}
    if any(x[a] != 1 for a in drop):
        raise ValueError(f"Squeeze of {x} on axes {list(axes)}: a dim is not 1")
    return [tuple(d for i, d in enumerate(x) if i not in drop)]


def _unsqueeze(n: Node, s: list) -> list:
    out = list(s[0])
    nd = len(out) + len(n.attrs["axes"])
    for ax in sorted(a % nd for a in n.attrs["axes"]):
        out.insert(ax, 1)
    return [tuple(out)]


def _flatten(n: Node, s: list) -> list:
    x = s[0]
    ax = n.attrs["axis"] % max(len(x), 1)
    return [(prod(x[:ax]), prod(x[ax:]))]


def _concat(n: Node, s: list) -> list:
    ax = _axis(n.attrs["axis"], len(s[0]))
    out = list(s[0])
    out[ax] = sum(x[ax] for x in s)
    return [tuple(out)]


def _gather(n: Node, s: list) -> list:
    x = s[0]
    ax = _axis(n.attrs["axis"], len(x))
    return [tuple(x[:ax]) + np.shape(n.attrs["indices"]) + tuple(x[ax + 1:])]


def _slice(n: Node, s: list) -> list:
    a = n.attrs
    out = list(s[0])
    axes = a["axes"] or list(range(len(a["starts"])))
    steps = a["steps"] or [1] * len(axes)
    for ax, st, en, sp in zip(axes, a["starts"], a["ends"], steps):
        ax = _axis(ax, len(out))
        out[ax] = len(range(*slice(st, en, sp).indices(out[ax])))
    return [tuple(out)]


def _pad(n: Node, s: list) -> list:
    p = n.attrs["pads"]
    x = s[0]
    nd = len(x)
    return [tuple(x[i] + p[i] + p[i + nd] for i in range(nd))]


def _norm(n: Node, s: list) -> list:
    return [_bc(*s)]


def _mhsa(n: Node, s: list) -> list:
    raise AssertionError("MHSA shapes come from its parts (output_shapes)")


OPS: dict[str, OpSpec] = {o.name: o for o in (
    OpSpec("Linear", "x, w[out][in] (constant), bias?", "rq?, alpha (1)", _linear),
    OpSpec("MatMul", "a, b (activations, numpy batch broadcasting)", "rq?, zp_a?, zp_b? (scalars)",
           _matmul),
    OpSpec("RequantShift", "x", "rq", _same_rq),
    OpSpec("Add", "a, b", "rq_a?, rq_b? (each input requantized first), rq?", _add),
    OpSpec("Sub", "a, b", "", _broadcast),
    OpSpec("Mul", "a, b", "rq?", _broadcast),
    OpSpec("Softmax", "x (last axis)", "kind (isoftmax | itamax | itapartialmax), n_levels, "
           "coeff_a/b/c, log2 (isoftmax), group_width (itapartialmax)", _same),
    OpSpec("LayerNorm", "x, weight, bias (last axis)", "d, n_levels", _norm),
    OpSpec("GELU", "x", "b, one, rq?", _same_rq),
    OpSpec("Lut", "x, table (constant, 256 entries)", "in_lo (-128 for int8 x, 0 for uint8)", _same),
    OpSpec("RMSNorm", "x, weight", "d, n_levels, axis", _norm),
    OpSpec("NoNorm", "x, weight, bias", "d, mul, n_levels", _norm),
    OpSpec("Mean", "x", "axes, keepdims", _mean),
    OpSpec("TrueIntegerDiv", "x", "delta, eps, eta, y", _same),
    OpSpec("IntegerDiv", "x, y", "delta, eps, eta", _broadcast),
    OpSpec("Hardswish", "x", "one_over_six, six, three", _same),
    OpSpec("Conv2d", "x [N][C][H][W] (or [N][C][W]: Conv1d), w, bias?",
           "strides, pads (ONNX order), dilations, group", _conv),
    OpSpec("MaxPool", "x", "kernel, strides, pads, ceil_mode", _maxpool),
    OpSpec("Reshape", "x", "shape (ONNX: 0 copies, -1 inferred), allowzero", _reshape),
    OpSpec("Transpose", "x", "perm (None: reversed)", _transpose),
    OpSpec("Identity", "x", "", _same),
    OpSpec("Squeeze", "x", "axes (None: every 1)", _squeeze),
    OpSpec("Unsqueeze", "x", "axes", _unsqueeze),
    OpSpec("Flatten", "x", "axis", _flatten),
    OpSpec("Concat", "x0, x1, ...", "axis", _concat),
    OpSpec("Gather", "x", "indices (constant), axis", _gather),
    OpSpec("Slice", "x", "starts, ends, axes, steps", _slice),
    OpSpec("Pad", "x", "pads (ONNX order), mode (constant), value", _pad),
    OpSpec("Relu", "x", "", _same),
    OpSpec("Clip", "x", "min, max", _same),
    OpSpec("ReduceSum", "x", "axes (empty: all), keepdims", _reducesum),
    OpSpec("MHSA", "x, w_q, b_q, w_k, b_k, w_v, b_v, w_o, b_o (FWSA form: x, w_fused, b_fused, w_v, "
           "b_v, w_o, b_o[, w_row])", "s, e, p, h, q, k, v, scores, softmax, av, o (the parts), "
           "parts, fwsa?", _mhsa),
)}


def output_shapes(node: Node, shape_of: Callable[[str], Shape]) -> list[Shape]:
    """Output shapes of `node` from its inputs' shapes (`shape_of(tensor name)`); a fused node
    (with parts) through its parts. ValueError when the shapes do not fit the op."""
    if node.parts:
        local: dict[str, Shape] = {}

        def inner(t: str) -> Shape:
            return local[t] if t in local else shape_of(t)

        for p in node.parts:
            local.update(zip(p.outputs, output_shapes(p, inner)))
        return [local[o] for o in node.outputs]
    spec = OPS.get(node.op)
    if spec is None:
        raise ValueError(f"op {node.op} has no shape rule (planner/ir_ops.py)")
    ins = [tuple(shape_of(i)) if i else None for i in node.inputs]
    return [tuple(int(d) for d in s) for s in spec.shape(node, ins)]


def infer_shapes(graph: Graph) -> None:
    """Shapes and dtypes of every activation (parts of fused nodes included), in graph order,
    from the op table: nothing is executed and nothing of the tensors' size is allocated."""
    from planner.transforms.dtypes import output_dtype

    def shape_of(t: str) -> Shape:
        return graph.tensors[t].shape

    for node in graph.nodes:
        for part in (node.parts or [node]):
            try:
                shapes = output_shapes(part, shape_of)
            except ValueError as exc:
                ins = ", ".join(f"{i} {graph.tensors[i].shape}" for i in part.inputs if i)
                raise ValueError(f"node {part.name} ({part.op}) with inputs {ins}: {exc}") from None
            for o, shp in zip(part.outputs, shapes):
                t = graph.tensors[o]
                t.shape = shp
                t.dtype = output_dtype(graph, part)
        if node.parts:
            for o, shp in zip(node.outputs, output_shapes(node, shape_of)):
                graph.tensors[o].shape = shp
                graph.tensors[o].dtype = output_dtype(graph, node)
