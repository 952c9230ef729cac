"""Physical layouts of activation buffers and the strided views kernels read them through.

Layout-only nodes (Reshape, Transpose, ...) are not layers: their output is an alias of their
input's memory (planner.memory.alias_root). A kernel that consumes an alias therefore reads its
root buffer through strides. For every root we choose one physical layout (the order in which its
elements are stored) such that every view of it that a layer touches is *affine*: element
(i0, i1, ...) of the view sits at offset base + sum(i_a * stride_a) of the root buffer. Candidates
are the root's own row-major order and the row-major order of each of its views (so that e.g. the
head outputs of a layer-by-layer attention block are written head-interleaved, [S][H][P], where the
output projection reads them as [S][H*P]); graph inputs and outputs keep their row-major order
(the caller's buffer).

Everything is computed on index arrays: the element offsets of a view are the root's offsets
pushed through the same layout ops the golden model runs (planner.golden.run.IMPLS), so the views
have exactly the golden model's semantics.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from planner.errors import PlannerError
from planner.ir import LAYOUT_OPS, Graph, Node


@dataclass(frozen=True)
class View:
    """An affine view of a root buffer: element index -> offset (in elements of the root)."""

    root: str
    shape: tuple[int, ...]
    strides: tuple[int, ...]   # in elements; 0 for size-1 axes
    base: int = 0

    def reshaped(self, shape: tuple[int, ...]) -> "View":
        """The same elements seen with another shape (row-major regrouping); PlannerError when
        the regrouping is not affine (it would need a copy)."""
        v = _affine(self.root, self.offsets().reshape(shape))
        if v is None:
            raise PlannerError(f"tensor view of '{self.root}' {self.shape} cannot be regrouped as "
                               f"{shape} without a copy")
        return v

    def offsets(self) -> np.ndarray:
        idx = np.full(self.shape, self.base, dtype=np.int64)
        for a, (n, s) in enumerate(zip(self.shape, self.strides)):
            shp = [1] * len(self.shape)
            shp[a] = n
            idx = idx + (np.arange(n, dtype=np.int64) * s).reshape(shp)
        return idx

    @property
    def contiguous(self) -> bool:
        return self.strides == _row_major(self.shape) or prod(self.shape) <= 1


def _row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc if n > 1 else 0)
        acc *= n
    return tuple(reversed(out))


def _affine(root: str, idx: np.ndarray) -> View | None:
    """The affine form of an index array, or None."""
    shape = tuple(int(n) for n in idx.shape)
    if idx.size == 0:
        return View(root, shape, tuple(0 for _ in shape), 0)
    base = int(idx.reshape(-1)[0])
    strides = []
    for a, n in enumerate(shape):
        if n <= 1:
            strides.append(0)
            continue
        sl = [0] * len(shape)
        sl[a] = 1
        strides.append(int(idx[tuple(sl)]) - base)
    v = View(root, shape, tuple(strides), base)
    return v if np.array_equal(v.offsets(), idx) else None


class Layouts:
    """Physical layout of every root activation buffer of a planned graph, and the view of any
    activation tensor. `needed` are the tensors layers read or write (their views must be affine)."""

    def __init__(self, graph: Graph, needed: set[str]):
        self.graph = graph
        self._prod = {o: n for n in graph.nodes for o in n.outputs if o}
        for n in graph.nodes:  # fused nodes keep their parts: their layout nodes are aliases too
            for p in n.parts:
                for o in p.outputs:
                    self._prod.setdefault(o, p)
        self._chains: dict[str, list[Node]] = {}
        self._order: dict[str, np.ndarray] = {}   # root -> root logical index -> physical offset
        fixed = set(graph.inputs) | {self.root(t) for t in graph.outputs}
        by_root: dict[str, set[str]] = {}
        for t in needed | set(graph.outputs):
            if t and not graph.tensors[t].is_const:
                by_root.setdefault(self.root(t), set()).add(t)
        for r, views in sorted(by_root.items()):
            self._order[r] = self._choose(r, sorted(views), r in fixed)

    # -- alias chains
    def root(self, tensor: str) -> str:
        return self._chain(tensor)[0]

    def _chain(self, tensor: str) -> tuple[str, list[Node]]:
        nodes: list[Node] = []
        t = tensor
        while True:
            p = self._prod.get(t)
            if p is None or p.op not in LAYOUT_OPS or not p.inputs:
                break
            nodes.append(p)
            t = p.inputs[0]
        return t, list(reversed(nodes))

    def _logical(self, tensor: str) -> np.ndarray:
        """Root logical flat index of every element of `tensor` (through its layout chain)."""
        from planner.golden.run import IMPLS

        root, chain = self._chain(tensor)
        arr = np.arange(self.graph.tensors[root].size, dtype=np.int64).reshape(
            self.graph.tensors[root].shape)
        for node in chain:
            arr = np.asarray(IMPLS[node.op](node, [arr])[0])
        return arr

    def _choose(self, root: str, views: list[str], fixed: bool) -> np.ndarray:
        size = self.graph.tensors[root].size
        logical = {v: self._logical(v) for v in [root, *views]}
        candidates = [root] if fixed else [root, *[v for v in views if v != root]]
        best = None
        for c in candidates:
            order = np.empty(size, dtype=np.int64)
            order[logical[c].reshape(-1)] = np.arange(size, dtype=np.int64)
            affine = [_affine(root, order[logical[v]]) for v in views]
            if any(a is None for a in affine):
                continue
            inner = sum(1 for a in affine if a.strides and a.strides[-1] not in (0, 1))
            if best is None or inner < best[0]:
                best = (inner, order)
            if inner == 0:
                break
        if best is None:
            raise PlannerError(
                f"tensor '{root}' is read through the views {', '.join(views)}, and no single "
                "memory layout makes all of them strided views (a layout node would have to copy "
                "it): not supported by the code generator")
        return best[1]

    # -- queries
    def view(self, tensor: str) -> View:
        root = self.root(tensor)
        if root not in self._order:
            raise PlannerError(f"code generator: tensor '{tensor}' has no planned layout")
        v = _affine(root, self._order[root][self._logical(tensor)])
        assert v is not None  # checked by _choose
        return v

    def physical_to_logical(self, root: str, data: np.ndarray) -> np.ndarray:
        """A root buffer's elements in physical order -> the root tensor in logical order."""
        order = self._order.get(root)
        flat = np.asarray(data).reshape(-1)
        if order is None:
            return flat.reshape(self.graph.tensors[root].shape)
        return flat[order].reshape(self.graph.tensors[root].shape)

    def is_row_major(self, root: str) -> bool:
        order = self._order.get(root)
        return order is None or bool(np.array_equal(order, np.arange(order.size)))
