"""Per-op code generation: a plan layer -> its buffers' descriptors and the C of its tile body.

One module per op family (linear, matmul, rowwise, mhsa); each returns a `LayerCode`. Python
decides every argument; the Mako templates under codegen/templates/ print the calls.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from codegen import rq as rqm
from codegen.model import BufDesc, EmitContext, c_ident
from planner.errors import PlannerError
from planner.ir import Node, Requant
from planner.plan import BufferPlan, LayerPlan


@dataclass
class LayerCode:
    lp: LayerPlan
    index: int                       # schedule step
    ident: str                       # C identifier stem
    bufs: list[BufDesc]
    body: str = ""                   # C of the tile body (tiled layers)
    function: str = ""               # C of the whole layer function (layers with their own loops)
    consts: list[str] = field(default_factory=list)   # static const data of the layer
    init: list[str] = field(default_factory=list)     # statements for net_init
    blobs: dict[str, np.ndarray] = field(default_factory=dict)  # plan weight key -> int32 contents

    @property
    def engine(self) -> bool:
        return not self.function


class Emitter:
    """Shared helpers of the op emitters for one layer."""

    def __init__(self, ctx: EmitContext, lp: LayerPlan, index: int):
        self.ctx, self.lp, self.index = ctx, lp, index
        self.node = ctx.node(lp.name)
        self.ident = c_ident(lp.name)
        self.code = LayerCode(lp, index, self.ident, [])
        self.li = {d: i for i, d in enumerate(lp.loop_order)}
        self.decls: dict[str, str] = {}

    # -- buffers
    def buf(self, name: str) -> BufferPlan | None:
        return next((b for b in self.lp.buffers if b.name == name), None)

    def need(self, name: str) -> BufferPlan:
        b = self.buf(name)
        if b is None:
            raise PlannerError(f"code generator: layer {self.lp.name} has no buffer '{name}' in the plan")
        return b

    def index_of(self, name: str) -> int:
        return next(i for i, b in enumerate(self.code.bufs) if b.name == name)

    def add(self, d: BufDesc) -> int:
        self.code.bufs.append(d)
        return len(self.code.bufs) - 1

    def ptr(self, name: str, ctype: str) -> str:
        """A named local of the tile body holding the buffer's pointer for this tile."""
        var = f"buf_{name}"
        self.decls.setdefault(var, f"{ctype} *const {var} = ({ctype} *)t->ptr[{self.index_of(name)}];")
        return var

    def st(self, name: str, axis: int) -> str:
        """A named local: the buffer's element stride along `axis` for this tile."""
        var = f"{name}_st{axis}"
        self.decls.setdefault(var, f"const int32_t {var} = t->st[{self.index_of(name)}][{axis}];")
        return var

    def declarations(self) -> list[str]:
        return list(self.decls.values())

    def ext(self, dim: str) -> str:
        return f"t->ext[{self.li[dim]}]" if dim in self.li else str(self.lp.dims[dim])

    def off(self, dim: str) -> str:
        return f"t->off[{self.li[dim]}]" if dim in self.li else "0"

    def n_tiles(self, dim: str) -> int:
        t = self.lp.tile[self.lp.compute_level].get(dim, self.lp.dims.get(dim, 1))
        return -(-self.lp.dims.get(dim, 1) // t)

    # -- requantization parameters
    def rq_places(self, blob_buf: str, rqs: list[tuple[str, Requant]], ptr_expr: str | None = None
                  ) -> dict[str, rqm.RqPlace]:
        """Places of the node's requantizations: in the layer's blob buffer `blob_buf` when the
        plan has one (contents recorded for the weights image), else as code constants."""
        out: dict[str, rqm.RqPlace] = {}
        if self.buf(blob_buf) is not None and rqs:
            data, offs = rqm.blob([r for _, r in rqs])
            key = f"{self.lp.name}/{blob_buf}"
            self.code.blobs[key] = data
            base = ptr_expr or self.ptr(blob_buf, "const int32_t")
            for (k, r), (mo, ao) in zip(rqs, offs):
                out[k] = rqm.RqPlace(r, base, base, mo, ao)
            return out
        for k, r in rqs:
            mul, add = rqm.rq_values(r)
            nm = f"{self.ident}_{blob_buf}" + ("" if k == blob_buf else f"_{k}")
            self.code.consts.append(f"static const int32_t {nm}_mul[{mul.size}] = {{{_ints(mul)}}};")
            self.code.consts.append(f"static const int32_t {nm}_add[{add.size}] = {{{_ints(add)}}};")
            out[k] = rqm.RqPlace(r, f"{nm}_mul", f"{nm}_add")
        return out


def _ints(a: np.ndarray) -> str:
    return ", ".join(str(int(v)) for v in np.asarray(a).reshape(-1))


def node_rqs(node: Node) -> list[tuple[str, Requant]]:
    return [(k, node.attrs[k]) for k in rqm.NODE_RQ_KEYS if node.attrs.get(k) is not None]


def kernel_shape_2d(shape: tuple[int, ...]) -> tuple[int, int]:
    """[..., C] as [rows][C]."""
    c = shape[-1] if shape else 1
    return int(np.prod(shape[:-1], dtype=np.int64)) if len(shape) > 1 else 1, c


EmitFn = Callable[[EmitContext, LayerPlan, int], LayerCode]
