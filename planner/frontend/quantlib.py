"""Frontend A: QuantLib/Deeploy integer ONNX graphs (integer values in float tensors, custom ops).

Every ONNX node becomes one IR node with the same integer meaning (../shared/SPEC-integer.md §B);
the fusion passes in planner/transforms/ then build Linear/MHSA and friends. Custom ops are
matched by op type whatever their domain.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from planner.errors import PlannerError
from planner.frontend.onnx_io import GraphInput, as_int, attr_dict, constants, is_integral
from planner.ir import Graph, Node, Requant, Tensor, dtype_for_range

QUANTLIB_OPS = frozenset({
    "RequantShift", "iSoftmax", "ITAMax", "ITAPartialMax", "iLayerNorm", "iGELU", "iRMSNorm",
    "iNoNorm", "IntegerMean", "TrueIntegerDiv", "IntegerDiv", "iHardswish",
})
STANDARD_OPS = frozenset({
    "MatMul", "Gemm", "Add", "Sub", "Mul", "Conv", "MaxPool", "Reshape", "Transpose", "Concat",
    "Gather", "Identity", "Squeeze", "Unsqueeze", "Flatten", "Slice", "Pad", "Relu", "Clip",
    "ReduceSum", "ReduceMean", "Constant",
})
SUPPORTED_OPS = QUANTLIB_OPS | STANDARD_OPS


def _const_int(consts: dict[str, np.ndarray], name: str, node: str) -> np.ndarray:
    arr = consts[name]
    if not is_integral(arr):
        raise PlannerError(f"node {node}: constant '{name}' holds non-integer values; an integer "
                           "(QuantLib) graph stores only exact integers in its float tensors")
    return np.asarray(arr).astype(np.int64)


class _Importer:
    def __init__(self, model: onnx.ModelProto, path: Path, inputs: list[GraphInput]):
        self.model = model
        self.path = path
        self.consts = constants(model)
        self.tensors: dict[str, Tensor] = {}
        self.nodes: list[Node] = []
        self.notes: list[str] = []
        for gi in inputs:
            dtype = gi.dtype or "int8"
            if gi.dtype is None:
                self.notes.append(f"input '{gi.name}' is a float tensor holding integers: assumed "
                                  "int8 for planning (the golden model accepts its actual range)")
            self.tensors[gi.name] = Tensor(gi.name, gi.shape, dtype)
        self.input_names = [gi.name for gi in inputs]

    def const_tensor(self, name: str, node: str) -> str:
        if name not in self.tensors:
            data = _const_int(self.consts, name, node)
            lo, hi = (int(data.min()), int(data.max())) if data.size else (0, 0)
            self.tensors[name] = Tensor(name, tuple(data.shape), dtype_for_range(lo, hi), data)
        return name

    def is_const(self, name: str) -> bool:
        return name in self.consts

    def add(self, name: str, op: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        for i in inputs:
            if i and self.is_const(i):
                self.const_tensor(i, name)
        self.nodes.append(Node(name, op, inputs, outputs, attrs))

    def ints(self, name: str, node: str) -> list[int]:
        return [int(v) for v in _const_int(self.consts, name, node).reshape(-1)]

    def run(self) -> None:
        for idx, n in enumerate(self.model.graph.node):
            name = n.name or f"{n.op_type}_{idx}"
            if n.op_type not in SUPPORTED_OPS:
                raise PlannerError(
                    f"{self.path}: node '{name}' has op type '{n.op_type}' (domain "
                    f"'{n.domain or 'ai.onnx'}'), which is not supported. Supported: "
                    f"{', '.join(sorted(SUPPORTED_OPS))}")
            if n.op_type == "Constant":
                continue
            self.convert(n, name, attr_dict(n))

    def convert(self, n: onnx.NodeProto, name: str, a: dict) -> None:
        op, ins, outs = n.op_type, list(n.input), list(n.output)
        ai = lambda key, default=None: (as_int(a[key], name, key) if key in a else default)  # noqa: E731
        if op == "RequantShift":
            n_levels = ai("n_levels_out", None) or ai("n_levels")
            if n_levels is None:
                raise PlannerError(f"{self.path}: node '{name}' (RequantShift) lacks n_levels_out")
            rq = Requant(_const_int(self.consts, ins[1], name), _const_int(self.consts, ins[2], name),
                         ai("div"), n_levels, bool(ai("signed", 1)))
            self.add(name, "RequantShift", [ins[0]], outs, rq=rq)
        elif op == "iSoftmax":
            self.add(name, "Softmax", ins, outs, kind="isoftmax", coeff_a=ai("coeffA"),
                     coeff_b=ai("coeffB"), coeff_c=ai("coeffC"), log2=ai("log2"),
                     n_levels=ai("n_levels", 256))
        elif op == "ITAMax":
            self.add(name, "Softmax", ins, outs, kind="itamax", n_levels=ai("n_levels", 256))
        elif op == "ITAPartialMax":
            self.add(name, "Softmax", ins, outs, kind="itapartialmax",
                     group_width=ai("group_width"), n_levels=ai("n_levels", 256))
        elif op == "iLayerNorm":
            self.add(name, "LayerNorm", ins, outs, d=ai("D"), n_levels=ai("n_levels", 256))
        elif op == "iGELU":
            self.add(name, "GELU", ins, outs, b=ai("b"), one=ai("one"))
        elif op == "iRMSNorm":
            self.add(name, "RMSNorm", ins, outs, d=ai("D"), n_levels=ai("n_levels", 256),
                     axis=ai("axis", -1))
        elif op == "iNoNorm":
            self.add(name, "NoNorm", ins, outs, d=ai("D"), mul=ai("mul"), n_levels=ai("n_levels", 256))
        elif op in ("IntegerMean", "ReduceMean"):
            axes = [int(v) for v in a.get("axes", [])] or (self.ints(ins[1], name) if len(ins) > 1 else [])
            self.add(name, "Mean", ins[:1], outs, axes=axes, keepdims=bool(ai("keepdims", 1)))
        elif op == "TrueIntegerDiv":
            self.add(name, "TrueIntegerDiv", ins, outs, delta=ai("Delta"), eps=ai("eps"),
                     eta=ai("eta"), y=ai("y"))
        elif op == "IntegerDiv":
            self.add(name, "IntegerDiv", ins, outs, delta=ai("Delta"), eps=ai("eps"), eta=ai("eta"))
        elif op == "iHardswish":
            self.add(name, "Hardswish", ins, outs, one_over_six=ai("one_over_six"), six=ai("six"),
                     three=ai("three"))
        elif op == "MatMul":
            self.matmul(name, ins, outs)
        elif op == "Gemm":
            self.gemm(name, ins, outs, a)
        elif op in ("Add", "Sub", "Mul"):
            self.add(name, op, ins, outs)
        elif op == "Conv":
            self.add(name, "Conv2d", [i for i in ins if i], outs,
                     strides=list(a.get("strides", [])), pads=list(a.get("pads", [])),
                     dilations=list(a.get("dilations", [])), group=int(a.get("group", 1)),
                     kernel_shape=list(a.get("kernel_shape", [])))
        elif op == "MaxPool":
            self.add(name, "MaxPool", ins[:1], outs[:1], kernel=list(a["kernel_shape"]),
                     strides=list(a.get("strides", [])), pads=list(a.get("pads", [])),
                     ceil_mode=bool(a.get("ceil_mode", 0)))
        elif op == "Reshape":
            self.add(name, "Reshape", ins[:1], outs, shape=self.ints(ins[1], name),
                     allowzero=bool(a.get("allowzero", 0)))
        elif op == "Transpose":
            self.add(name, "Transpose", ins, outs, perm=list(a["perm"]) if "perm" in a else None)
        elif op == "Gather":
            idx = _const_int(self.consts, ins[1], name)
            self.add(name, "Gather", ins[:1], outs, indices=idx, axis=int(a.get("axis", 0)))
        elif op in ("Squeeze", "Unsqueeze"):
            axes = list(a["axes"]) if "axes" in a else (self.ints(ins[1], name) if len(ins) > 1 and ins[1] else None)
            self.add(name, op, ins[:1], outs, axes=axes)
        elif op == "Flatten":
            self.add(name, "Flatten", ins, outs, axis=int(a.get("axis", 1)))
        elif op == "Identity":
            self.add(name, "Identity", ins, outs)
        elif op == "Concat":
            self.add(name, "Concat", ins, outs, axis=int(a["axis"]))
        elif op == "Slice":
            get = lambda k: self.ints(ins[k], name) if len(ins) > k and ins[k] else None  # noqa: E731
            self.add(name, "Slice", ins[:1], outs, starts=get(1), ends=get(2), axes=get(3), steps=get(4))
        elif op == "Pad":
            pads = self.ints(ins[1], name) if len(ins) > 1 else list(a["pads"])
            value = self.ints(ins[2], name)[0] if len(ins) > 2 and ins[2] else 0
            self.add(name, "Pad", ins[:1], outs, pads=pads, value=value, mode=a.get("mode", "constant"))
        elif op == "Relu":
            self.add(name, "Relu", ins, outs)
        elif op == "Clip":
            lo = self.ints(ins[1], name)[0] if len(ins) > 1 and ins[1] else a.get("min")
            hi = self.ints(ins[2], name)[0] if len(ins) > 2 and ins[2] else a.get("max")
            self.add(name, "Clip", ins[:1], outs, min=None if lo is None else int(lo),
                     max=None if hi is None else int(hi))
        elif op == "ReduceSum":
            axes = list(a["axes"]) if "axes" in a else (self.ints(ins[1], name) if len(ins) > 1 and ins[1] else [])
            self.add(name, "ReduceSum", ins[:1], outs, axes=axes, keepdims=bool(a.get("keepdims", 1)))

    def matmul(self, name: str, ins: list[str], outs: list[str]) -> None:
        x, w = ins
        wdata = self.consts.get(w)
        if wdata is not None and wdata.ndim == 2 and not self.is_const(x):
            wt = f"{w}.T" if f"{w}.T" not in self.tensors else f"{w}.T.{name}"
            data = _const_int(self.consts, w, name).T.copy()
            self.tensors[wt] = Tensor(wt, tuple(data.shape), dtype_for_range(int(data.min()), int(data.max())), data)
            self.nodes.append(Node(name, "Linear", [x, wt], outs, {}))
        else:
            self.add(name, "MatMul", ins, outs)

    def gemm(self, name: str, ins: list[str], outs: list[str], a: dict) -> None:
        x, w = ins[0], ins[1]
        if not self.is_const(w):
            raise PlannerError(f"{self.path}: node '{name}' (Gemm) has a non-constant B operand; "
                               "only Gemm with constant weights is supported (use MatMul)")
        alpha = as_int(a.get("alpha", 1.0), name, "alpha")
        beta = as_int(a.get("beta", 1.0), name, "beta")
        if int(a.get("transA", 0)):
            xt = f"{x}.T.{name}"
            self.nodes.append(Node(f"{name}.transA", "Transpose", [x], [xt], {"perm": [1, 0]}))
            x = xt
        wd = _const_int(self.consts, w, name)
        wd = wd if int(a.get("transB", 0)) else wd.T.copy()  # IR weights are [out][in]
        wt = f"{w}.{name}.w"
        self.tensors[wt] = Tensor(wt, tuple(wd.shape), dtype_for_range(int(wd.min()), int(wd.max())), wd)
        inputs = [x, wt]
        if len(ins) > 2 and ins[2]:
            c = _const_int(self.consts, ins[2], name) * beta
            bt = f"{ins[2]}.{name}.bias"
            self.tensors[bt] = Tensor(bt, tuple(c.shape), "int32", c)
            inputs.append(bt)
        self.nodes.append(Node(name, "Linear", inputs, outs, {"alpha": alpha} if alpha != 1 else {}))


def is_quantlib_graph(model: onnx.ModelProto) -> bool:
    """Integer graph: QuantLib custom ops, or only integral constants with no float-only op."""
    ops = {n.op_type for n in model.graph.node}
    if ops & QUANTLIB_OPS:
        return True
    consts = constants(model)
    float_only = {"Softmax", "LayerNormalization", "Gelu", "Erf", "Div", "Sqrt", "Exp", "Tanh",
                  "Sigmoid", "Pow", "BatchNormalization"}
    return not (ops & float_only) and all(is_integral(v) for v in consts.values())


def import_quantlib(model: onnx.ModelProto, path: Path, inputs: list[GraphInput]) -> Graph:
    imp = _Importer(model, path, inputs)
    imp.run()
    graph = Graph(name=model.graph.name or path.stem, tensors=imp.tensors, nodes=imp.nodes,
                  inputs=imp.input_names, outputs=[o.name for o in model.graph.output],
                  source=str(path), flavour="quantlib", notes=imp.notes,
                  assumed_dtypes={gi.name for gi in inputs if gi.dtype is None})
    for n in graph.nodes:
        for o in n.outputs:
            graph.tensors.setdefault(o, Tensor(o, (), "int32"))
    return graph
