"""Execution of an IR graph in exact integer arithmetic (int64), node by node.

Fused nodes (MHSA) run either through their parts (the unfused form) or through their own
depth-first implementation (planner/golden/mhsa.py); both must agree exactly.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from planner.errors import PlannerError
from planner.golden import ops
from planner.ir import Graph, Node, Requant
from planner.ir_ops import output_shapes, reshape_target
from planner.limits import check_elements, fmt_shape

Impl = Callable[[Node, list[np.ndarray]], list[np.ndarray]]
IMPLS: dict[str, Impl] = {}


def impl(*names: str):
    def register(fn: Impl) -> Impl:
        for name in names:
            IMPLS[name] = fn
        return fn
    return register


def apply_rq(x: np.ndarray, rq: Requant | None) -> np.ndarray:
    if rq is None:
        return x
    return ops.requant_shift(x, rq.mul, rq.add, rq.div, rq.n_levels, rq.signed)


_CHECK_RANGES = [True]


def acc32(node: Node, x: np.ndarray, what: str = "accumulator") -> np.ndarray:
    """Values the C keeps in int32 must fit (checked, never silently wrapped)."""
    if not _CHECK_RANGES[0]:
        return x
    return ops.check_i32(x, f"node {node.name} ({node.op}): {what}")


@impl("Linear")
def _linear(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    acc = np.matmul(x[0], x[1].T)
    alpha = node.attrs.get("alpha", 1)
    if alpha != 1:
        acc = acc * alpha
    if len(x) > 2 and x[2] is not None:
        acc = acc + x[2]
    acc32(node, acc)
    return [apply_rq(acc, node.attrs.get("rq"))]


@impl("MatMul")
def _matmul(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a, b = x
    if node.attrs.get("zp_a") or node.attrs.get("zp_b"):
        a = a - node.attrs.get("zp_a", 0)
        b = b - node.attrs.get("zp_b", 0)
    acc = acc32(node, np.matmul(a, b))
    return [apply_rq(acc, node.attrs.get("rq"))]


@impl("RequantShift")
def _rq(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [apply_rq(x[0], node.attrs["rq"])]


@impl("Add")
def _add(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = apply_rq(x[0], node.attrs.get("rq_a"))
    b = apply_rq(x[1], node.attrs.get("rq_b"))
    return [apply_rq(acc32(node, a + b, "sum"), node.attrs.get("rq"))]


@impl("Sub")
def _sub(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [x[0] - x[1]]


@impl("Mul")
def _mul(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [apply_rq(acc32(node, x[0] * x[1], "product"), node.attrs.get("rq"))]


@impl("Softmax")
def _softmax(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    if a["kind"] == "isoftmax":
        return [ops.isoftmax(x[0], a["coeff_a"], a["coeff_b"], a["coeff_c"], a["log2"], a["n_levels"],
                             a.get("rounded", False))]
    if a["kind"] == "itamax":
        return [ops.itamax(x[0], a["n_levels"])]
    return [ops.ita_partial_max(x[0], a["group_width"], a["n_levels"])]


@impl("LayerNorm")
def _layernorm(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    xt, w, b = x
    a = node.attrs
    if a.get("mode") == "qdq":  # 64-bit intermediates in the kernel: nothing to check here
        return [ops.layernorm_qdq(xt, w, b, a["d"], a["n_levels"], a["in_shift"], a["eps"])]
    nom = xt - ops.trunc_div(xt.sum(axis=-1, keepdims=True), xt.shape[-1])
    acc32(node, nom * w, "x*weight")
    return [ops.ilayernorm(xt, w, b, node.attrs["d"], node.attrs["n_levels"])]


@impl("Lut")
def _lut(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [ops.lut8(x[0], x[1], node.attrs["in_lo"])]


@impl("GELU")
def _gelu(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    y = acc32(node, ops.igelu(x[0], node.attrs["b"], node.attrs["one"]), "GELU output")
    return [apply_rq(y, node.attrs.get("rq"))]


@impl("RMSNorm")
def _rmsnorm(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    return [ops.irmsnorm(x[0], x[1], a["d"], a["n_levels"], a.get("axis", -1))]


@impl("NoNorm")
def _nonorm(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    return [ops.inonorm(x[0], x[1], x[2], a["d"], a["mul"], a["n_levels"])]


@impl("Mean")
def _mean(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    axes = tuple(a % x[0].ndim for a in node.attrs["axes"]) or tuple(range(x[0].ndim))
    return [ops.integer_mean(x[0], axes, node.attrs["keepdims"])]


@impl("TrueIntegerDiv")
def _tid(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    return [ops.true_integer_div(x[0], a["delta"], a["eps"], a["eta"], a["y"])]


@impl("IntegerDiv")
def _idiv(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    return [ops.integer_div(x[0], x[1], a["delta"], a["eps"], a["eta"])]


@impl("Hardswish")
def _hswish(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    return [ops.ihardswish(x[0], a["one_over_six"], a["six"], a["three"])]


@impl("Conv2d")
def _conv(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    inp, w = x[0], x[1]
    bias = x[2] if len(x) > 2 else None
    one_d = inp.ndim == 3
    if one_d:  # Conv1d as a 1xW Conv2d
        inp, w = inp[:, :, None, :], w[:, :, None, :]
    nd = 2
    strides = tuple(a["strides"] or [1] * (1 if one_d else 2))
    dil = tuple(a["dilations"] or [1] * (1 if one_d else 2))
    pads = a["pads"] or [0] * (2 if one_d else 4)
    if one_d:
        strides, dil, pads = (1, strides[0]), (1, dil[0]), [0, pads[0], 0, pads[1]]
    out = ops.conv2d(inp, w, bias, strides[:nd], tuple(pads), dil[:nd], a["group"])
    acc32(node, out)
    if one_d:
        out = out[:, :, 0, :]
    return [out]


@impl("MaxPool")
def _maxpool(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    k = tuple(a["kernel"])
    strides = tuple(a["strides"] or [1] * len(k))
    pads = tuple(a["pads"] or [0] * 2 * len(k))
    return [ops.maxpool(x[0], k, strides, pads, a["ceil_mode"])]


def onnx_reshape(x: np.ndarray, shape: list[int], allowzero: bool = False) -> np.ndarray:
    return x.reshape(reshape_target(x.shape, shape, allowzero))


@impl("Reshape")
def _reshape(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [onnx_reshape(x[0], node.attrs["shape"], node.attrs.get("allowzero", False))]


@impl("Transpose")
def _transpose(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [np.transpose(x[0], node.attrs.get("perm"))]


@impl("Identity")
def _identity(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [x[0]]


@impl("Squeeze")
def _squeeze(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    axes = node.attrs.get("axes")
    return [np.squeeze(x[0], axis=None if axes is None else tuple(axes))]


@impl("Unsqueeze")
def _unsqueeze(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    out = x[0]
    nd = out.ndim + len(node.attrs["axes"])
    for ax in sorted(a % nd for a in node.attrs["axes"]):
        out = np.expand_dims(out, ax)
    return [out]


@impl("Flatten")
def _flatten(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    ax = node.attrs["axis"] % max(x[0].ndim, 1)
    return [x[0].reshape(int(np.prod(x[0].shape[:ax])), -1)]


@impl("Concat")
def _concat(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [np.concatenate(x, axis=node.attrs["axis"])]


@impl("Gather")
def _gather(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [np.take(x[0], node.attrs["indices"], axis=node.attrs["axis"])]


@impl("Slice")
def _slice(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    a = node.attrs
    arr = x[0]
    axes = a["axes"] or list(range(len(a["starts"])))
    steps = a["steps"] or [1] * len(axes)
    sl = [slice(None)] * arr.ndim
    for ax, st, en, sp in zip(axes, a["starts"], a["ends"], steps):
        sl[ax % arr.ndim] = slice(st, en, sp)
    return [arr[tuple(sl)]]


@impl("Pad")
def _pad(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    p = node.attrs["pads"]
    nd = x[0].ndim
    if node.attrs["mode"] != "constant":
        raise PlannerError(f"node {node.name}: Pad mode {node.attrs['mode']!r} is not supported")
    return [np.pad(x[0], [(p[i], p[i + nd]) for i in range(nd)], constant_values=node.attrs["value"])]


@impl("Relu")
def _relu(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [np.maximum(x[0], 0)]


@impl("Clip")
def _clip(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    return [np.clip(x[0], node.attrs["min"], node.attrs["max"])]


@impl("ReduceSum")
def _reducesum(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    axes = tuple(node.attrs["axes"]) or None
    return [x[0].sum(axis=axes, keepdims=node.attrs["keepdims"])]


@impl("MHSA")
def _mhsa(node: Node, x: list[np.ndarray]) -> list[np.ndarray]:
    from planner.golden.mhsa import mhsa_depth_first
    return [mhsa_depth_first(node, x)]


def run_nodes(nodes: list[Node], env: dict[str, np.ndarray], unfused: bool = False) -> None:
    """Execute nodes in order, adding their outputs to env."""
    for node in nodes:
        if unfused and node.parts:
            run_nodes(node.parts, env, unfused=True)
            continue
        fn = IMPLS.get(node.op)
        if fn is None:
            raise PlannerError(f"node {node.name}: the golden model has no implementation of {node.op}")
        args = [env[i] if i else None for i in node.inputs]
        out_shape = _predicted_shape(node, args)
        if out_shape is not None:
            check_elements(out_shape, f"the output of node {node.name} ({node.op})",
                           "; is an input dimension (e.g. the sequence length) far larger than intended?",
                           verb="would have")
        try:
            outs = fn(node, args)
        except ops.RangeError as exc:
            raise PlannerError(f"golden model: {exc}; the C kernels keep this value in 32 bits, "
                               "so the network cannot run bit-exactly as quantized") from None
        except (ValueError, IndexError) as exc:  # numpy: shapes that do not fit together
            shapes = ", ".join(f"{i} {fmt_shape(a.shape)}" for i, a in zip(node.inputs, args) if a is not None)
            raise PlannerError(f"node {node.name} ({node.op}) cannot run on its inputs ({shapes}): "
                               f"{exc}") from None
        except MemoryError:
            raise PlannerError(f"node {node.name} ({node.op}): out of host memory in the golden model "
                               "(inputs " + ", ".join(fmt_shape(a.shape) for a in args if a is not None)
                               + ")") from None
        _check_shapes(node, outs, env)
        for name, val in zip(node.outputs, outs):
            env[name] = np.asarray(val, dtype=np.int64)


def _predicted_shape(node: Node, args: list[np.ndarray | None]) -> tuple[int, ...] | None:
    """The output shape of the ops whose output can outgrow their inputs (matrix products,
    broadcasting), from the input shapes alone; None when not predicted (or the shapes clash:
    the op itself then reports it)."""
    try:
        if node.op == "Linear":
            return tuple(args[0].shape[:-1]) + (args[1].shape[0],)
        if node.op == "MatMul":
            a, b = args[0].shape, args[1].shape
            if len(a) < 2 or len(b) < 2:
                return None
            return tuple(np.broadcast_shapes(a[:-2], b[:-2])) + (a[-2], b[-1])
        if node.op in ("Add", "Sub", "Mul"):
            return tuple(np.broadcast_shapes(*(x.shape for x in args if x is not None)))
    except (ValueError, IndexError, AttributeError):
        return None
    return None


def _check_shapes(node: Node, outs: list[np.ndarray], env: dict[str, np.ndarray]) -> None:
    """Each output has the shape the IR op table's rule gives (planner.ir_ops): the frontend infers
    shapes from the same rules without running the network, so they must never disagree."""
    want = output_shapes(node, lambda t: env[t].shape)
    got = [tuple(np.shape(o)) for o in outs]
    if got != want:
        raise AssertionError(f"node {node.name} ({node.op}): the golden model computed shapes {got}, "
                             f"the op table's shape rule gives {want} (planner/ir_ops.py)")


def run_graph(graph: Graph, inputs: list[np.ndarray], unfused: bool = False,
              keep_all: bool = False, check_ranges: bool = True) -> dict[str, np.ndarray]:
    """Run the graph on int64 inputs (positional); returns graph outputs (or every tensor).

    unfused: run fused nodes through their parts; check_ranges=False skips the int32 range checks
    (running on arbitrary values, e.g. zeros in tests).
    """
    env: dict[str, np.ndarray] = {n: t.data for n, t in graph.tensors.items() if t.is_const}
    for name, arr in zip(graph.inputs, inputs):
        check_elements(np.shape(arr), f"graph input '{name}'")
        env[name] = np.asarray(arr, dtype=np.int64)
    _CHECK_RANGES[0] = check_ranges
    try:
        run_nodes(graph.nodes, env, unfused=unfused)
    finally:
        _CHECK_RANGES[0] = True
    if keep_all:
        return env
    return {name: env[name] for name in graph.outputs}
