"""The integer IR: tensors, nodes and graphs that every frontend lowers to.

Canonical ops (attrs in brackets; `rq` is an optional Requant fused into the producer):
  Linear(x, w[out][in], bias?)  [rq]       constant weights, int32 accumulation
  MatMul(a, b)                  [rq]       activation x activation, numpy batch broadcasting
  RequantShift(x)               [rq]
  Add(a, b)                     [rq_a, rq_b, rq]   each input optionally requantized first
  Softmax(x)                    [kind: isoftmax|itamax|itapartialmax, coefficients]
  LayerNorm(x, weight, bias)    [d, n_levels]
  GELU(x)                       [b, one, rq]
  Lut(x, table[256])            [in_lo]    8-bit table lookup y = table[x - in_lo] (QDQ GELU)
  Reshape / Transpose / Squeeze / Unsqueeze / Flatten / Identity   layout only
  MHSA(x, ...)                  [s, e, p, h, parts: the unfused nodes it replaces]
  Conv2d, MaxPool, Gather, Mean, and the rest of QuantLib's integer ops (golden model only so far).

The op table (operands, attributes and the shape rule of every op) is planner/ir_ops.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

DTYPE_RANGES: dict[str, tuple[int, int]] = {
    "int8": (-128, 127),
    "uint8": (0, 255),
    "int16": (-(2**15), 2**15 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
}
DTYPE_BYTES = {"int8": 1, "uint8": 1, "int16": 2, "int32": 4, "int64": 8}

LAYOUT_OPS = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"})


def dtype_for_range(lo: int, hi: int) -> str:
    """The narrowest IR dtype that holds [lo, hi]."""
    for name in ("int8", "uint8", "int16", "int32", "int64"):
        a, b = DTYPE_RANGES[name]
        if a <= lo and hi <= b:
            return name
    raise ValueError(f"range [{lo}, {hi}] does not fit int64")


def _unorderable(rest: list["Node"], available: set[str]) -> str:
    """Why nodes cannot be ordered, named at the root: an input nothing defines, else the cycle
    (not the nodes downstream of it, which only wait)."""
    producer = {o: n for n in rest for o in n.outputs}
    for n in rest:
        for i in n.inputs:
            if i not in available and i not in producer:
                return (f"tensor '{i}' (input of node {n.name}) is not defined: no node produces it "
                        "and it is neither a graph input nor a constant")
    path: list[Node] = []
    node = rest[0]
    while node not in path:  # every waiting node waits on another waiting node: walk back to a loop
        path.append(node)
        node = producer[next(i for i in node.inputs if i not in available)]
    loop = path[path.index(node):][::-1]
    return ("graph has a cycle: " + " -> ".join(n.name for n in loop) + f" -> {loop[0].name} "
            "(each needs the output of the one before)")


@dataclass
class Requant:
    """y = clip((x*mul + add + div/2) >> log2(div)); mul/add broadcast against the output."""

    mul: np.ndarray
    add: np.ndarray
    div: int
    n_levels: int
    signed: bool

    @property
    def shift(self) -> int:
        return int(self.div).bit_length() - 1

    @property
    def out_dtype(self) -> str:
        if self.n_levels <= 256:
            return "int8" if self.signed else "uint8"
        if self.n_levels <= 65536:
            return "int16" if self.signed else "int32"
        return "int32"

    def granularity(self, out_shape: tuple[int, ...]) -> str:
        """per-tensor, per-row, per-column, per-channel or per-element (of mul and add together)."""
        sizes = {int(np.asarray(self.mul).size), int(np.asarray(self.add).size)}
        if sizes == {1}:
            return "per-tensor"
        shapes = [np.asarray(v).shape for v in (self.mul, self.add) if np.asarray(v).size > 1]
        nd = len(out_shape)
        varying: set[int] = set()
        for shp in shapes:
            shp = (1,) * (nd - len(shp)) + tuple(shp)
            varying |= {i for i, d in enumerate(shp) if d > 1}
        if varying == {nd - 1}:
            return "per-column"
        if varying == {nd - 2}:
            return "per-row"
        if len(varying) == 1:
            return "per-channel"
        return "per-element"


@dataclass
class QuantInfo:
    """Real-valued meaning of an integer tensor: real = (q - zero_point) * scale (QDQ graphs)."""

    scale: np.ndarray
    zero_point: np.ndarray
    axis: int | None = None


@dataclass
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    data: np.ndarray | None = None  # int64 values of a constant
    quant: QuantInfo | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * DTYPE_BYTES[self.dtype]


@dataclass
class Node:
    name: str
    op: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def parts(self) -> list["Node"]:
        """Nodes a fused node replaced (kept so the unfused form still runs)."""
        return self.attrs.get("parts", [])


@dataclass
class Graph:
    name: str
    tensors: dict[str, Tensor]
    nodes: list[Node]
    inputs: list[str]
    outputs: list[str]
    source: str = ""
    flavour: str = ""  # "quantlib" or "qdq"
    notes: list[str] = field(default_factory=list)
    # inputs whose dtype the frontend assumed (ONNX declares float): values outside it are noted,
    # not refused, when inputs are read (planner.golden.io)
    assumed_dtypes: set[str] = field(default_factory=set)

    def tensor(self, name: str) -> Tensor:
        return self.tensors[name]

    def const(self, name: str) -> np.ndarray | None:
        t = self.tensors.get(name)
        return None if t is None else t.data

    def producer(self, name: str) -> Node | None:
        for n in self.nodes:
            if name in n.outputs:
                return n
        return None

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def activation_inputs(self, node: Node) -> list[str]:
        return [i for i in node.inputs if i and not self.tensors[i].is_const]

    def toposort(self) -> None:
        """Order nodes so that every input is produced before use (some exporters do not)."""
        available = {n for n, t in self.tensors.items() if t.is_const} | set(self.inputs) | {""}
        pending = list(self.nodes)
        ordered: list[Node] = []
        while pending:
            progress = False
            rest = []
            for n in pending:
                if all(i in available for i in n.inputs):
                    ordered.append(n)
                    available.update(n.outputs)
                    progress = True
                else:
                    rest.append(n)
            if not progress:
                raise ValueError(_unorderable(rest, available))
            pending = rest
        self.nodes = ordered

    def remove_unused(self) -> None:
        """Drop tensors that no node and no graph output refers to."""
        used = set(self.inputs) | set(self.outputs)
        for n in self.nodes:
            used.update(n.inputs)
            used.update(n.outputs)
            for p in n.parts:
                used.update(p.inputs)
                used.update(p.outputs)
        self.tensors = {k: v for k, v in self.tensors.items() if k in used}

    def weight_bytes(self, nodes: Iterable[Node] | None = None) -> int:
        """Bytes of constant operands (weights, biases, norms) that the kernels read."""
        seen: set[str] = set()
        total = 0
        for n in (self.nodes if nodes is None else nodes):
            for i in n.inputs:
                t = self.tensors.get(i)
                if t is not None and t.is_const and i not in seen and n.op not in LAYOUT_OPS:
                    seen.add(i)
                    total += t.nbytes
        return total
