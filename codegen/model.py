"""What the code generator decides per layer, before any C is printed.

`EmitContext` gathers the inputs (plan, deployed graph, layouts, hardware facts); `BufDesc` is the
Python twin of `nr_buf_t` (codegen/runtime/nr_runtime.h): where a buffer of a layer lives in the
compute level, where its whole tensor lives (its home), and how a tile of it maps to the home
(axes bound to loop dims, home strides). Every descriptor is checked against the plan: the bytes
of one tile copy must equal the plan's figure for that buffer (the plan checker of the emitted
code).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

import numpy as np

from codegen.views import Layouts, View
from planner.errors import PlannerError
from planner.ir import DTYPE_BYTES, Graph, Node
from planner.plan import BufferPlan, LayerPlan, Plan, param_blob_name

ARENA_ID = {"L1": "NR_L1", "L2": "NR_L2", "L3": "NR_L3"}
KIND = {"in": "NR_IN", "out": "NR_OUT", "inout": "NR_INOUT", "local": "NR_LOCAL",
        "direct": "NR_DIRECT"}
NO_STAGE = 0xFFFFFFFF


@dataclass
class Axis:
    dim: int | None      # loop dim index (position in loop_order) or None (whole axis)
    full: int            # extent of the whole axis
    stride: int          # home stride in bytes


@dataclass
class BufDesc:
    """One nr_buf_t."""

    name: str            # the plan's buffer role (x, w, y, ...)
    kind: str            # in | out | inout | local | direct
    elem: int
    home: str            # arena of the whole tensor (or of the buffer itself for local)
    home_off: int
    near: str            # compute-level arena
    near_off: int
    copies: int = 1
    copy_bytes: int = 0
    stage_off: int = NO_STAGE
    axes: list[Axis] = field(default_factory=list)
    ctype: str = "int8_t"
    into: int = 0        # 1 + index of the buffer whose current copy it is loaded into

    def c_init(self) -> str:
        ax = ", ".join("{%d, %d, %s, {0}}" % (a.stride, a.full, "NR_DIM_NONE" if a.dim is None else a.dim)
                       for a in self.axes) or "{0}"
        stage = "NR_NO_STAGE" if self.stage_off == NO_STAGE else str(self.stage_off)
        return (f"{{{self.home_off}u, {self.near_off}u, {self.copy_bytes}u, {stage}, {KIND[self.kind]}, "
                f"{ARENA_ID[self.home]}, {ARENA_ID[self.near]}, {self.copies}, {self.elem}, {len(self.axes)}, "
                f"{self.into}, 0, {{{ax}}}}}")


def c_ident(name: str) -> str:
    """A C identifier from a layer or tensor name (deterministic, readable)."""
    out = "".join(c if c.isalnum() else "_" for c in name)
    if not out or out[0].isdigit():
        out = "l_" + out
    return out


def ctype_of(dtype: str) -> str:
    return {"int8": "int8_t", "uint8": "uint8_t", "int16": "int16_t", "int32": "int32_t"}[dtype]


@dataclass
class EmitContext:
    plan: Plan
    graph: Graph                 # the deployed integer graph (FWSA decisions applied)
    layouts: Layouts
    nodes: dict[str, Node]       # every node by name, MHSA parts included
    level: str                   # compute level
    cores: int
    isa: str

    def node(self, name: str) -> Node:
        try:
            return self.nodes[name]
        except KeyError:
            raise PlannerError(f"code generator: layer '{name}' of the plan is not a node of the "
                               "network (re-run planner solve)") from None

    def l2_weight_offset(self, key: str) -> int:
        w = self.plan.memory["L2"].get("weights", {})
        if key not in w:
            raise PlannerError(f"code generator: the plan gives no L2 place to constant '{key}'")
        return int(w[key]["offset"])

    def weight_home(self, key: str) -> tuple[str, int]:
        for lv in ("L2", "L3"):
            w = self.plan.memory.get(lv, {}).get("weights", {})
            if key in w:
                return lv, int(w[key]["offset"])
        raise PlannerError(f"code generator: the plan gives no place to constant '{key}'")

    def act_home(self, tensor: str) -> tuple[int, View]:
        """L2 offset of element 0 of an activation's view, and the view (strides in elements)."""
        v = self.layouts.view(tensor)
        pl = self.plan.memory["L2"]["placements"].get(v.root)
        if pl is None:
            raise PlannerError(f"code generator: activation '{v.root}' has no L2 placement in the plan")
        return int(pl["offset"]), v

    def l2_place(self, key: str) -> int:
        pl = self.plan.memory["L2"]["placements"].get(key)
        if pl is None:
            raise PlannerError(f"code generator: the plan gives no L2 place to '{key}'")
        return int(pl["offset"])


def loop_index(lp: LayerPlan) -> dict[str, int]:
    return {d: i for i, d in enumerate(lp.loop_order)}


def tile_sizes(lp: LayerPlan) -> dict[str, int]:
    return dict(lp.tile[lp.compute_level])


def describe_buffer(ctx: EmitContext, lp: LayerPlan, bp: BufferPlan, shape: tuple[int, ...],
                    dims: tuple[str | None, ...], elem: int, *, home: str | None = None,
                    home_off: int | None = None, home_strides: tuple[int, ...] | None = None,
                    const_key: str | None = None, check: bool = True) -> BufDesc:
    """The descriptor of plan buffer `bp`, seen by the kernel as a tensor of `shape` whose axes
    follow `dims` (loop dim names or None).

    Activations: the home is the tensor's view in L2 (layouts); constants: row-major at the
    plan's weight offset (`const_key`, default the tensor name); explicit `home`/`home_off`/
    `home_strides` for buffers of the layer's own (an MHSA accumulator in L2)."""
    li = loop_index(lp)
    tiles = tile_sizes(lp)
    near = lp.compute_level
    if bp.kind in ("local", "scratch"):
        if bp.offset % max(1, bp.align):
            raise PlannerError(f"code generator: layer {lp.name}, buffer {bp.name}: offset {bp.offset} "
                               f"is not {bp.align}-byte aligned as the kernel needs")
        return BufDesc(bp.name, "local", elem, near, bp.offset, near, bp.offset, 1, bp.bytes, NO_STAGE, [])
    if home is None:
        if bp.tensor is not None and not ctx.graph.tensors[bp.tensor].is_const:
            base, view = ctx.act_home(bp.tensor)
            view = view.reshaped(shape) if view.shape != tuple(shape) else view
            home, home_off = "L2", base + view.base * elem
            home_strides = tuple(s * elem for s in view.strides)
        else:
            home, home_off = ctx.weight_home(const_key or bp.tensor or param_blob_name(lp.name, bp.name))
            home_strides = tuple(s * elem for s in _row_major(shape))
    axes = [Axis(None if d is None else li[d], n, s) for d, n, s in zip(dims, shape, home_strides)]
    if bp.access == "dma":
        # the tiler's view of the buffer (plan.json dims, align) and the code generator's agree
        if check and bp.dims and sorted(set(d for d in dims if d)) != sorted(bp.dims):
            raise PlannerError(f"code generator: layer {lp.name}, buffer {bp.name}: its tile follows "
                               f"{sorted(set(d for d in dims if d))}, the plan says {sorted(bp.dims)}")
        if bp.offset % max(1, bp.align):
            raise PlannerError(f"code generator: layer {lp.name}, buffer {bp.name}: offset {bp.offset} "
                               f"is not {bp.align}-byte aligned as the kernel needs")
        kind = {"in": "in", "weight": "in", "out": "out", "inout": "inout"}[bp.kind]
        tile_elems = prod(tiles[d] if d is not None else n for d, n in zip(dims, shape))
        if check and tile_elems * elem != bp.bytes:
            raise PlannerError(f"code generator: layer {lp.name}, buffer {bp.name}: a tile of "
                               f"{tile_elems * elem} B does not match the plan's {bp.bytes} B")
        stage = NO_STAGE
        if bp.staging is not None:
            stage = int(bp.staging["offset"])
        return BufDesc(bp.name, kind, elem, home, home_off, near, bp.offset, bp.copies, bp.bytes,
                       stage, axes)
    # read / written where it lives (home = compute level, or a weight in place in flash): the
    # kernels read the last axis contiguously
    inner = next((a for a in reversed(axes) if a.full > 1), None)
    if inner is not None and inner.stride != elem:
        raise PlannerError(f"code generator: layer {lp.name}, buffer {bp.name}: read in place, its "
                           f"inner axis has a stride of {inner.stride} B (the kernel needs {elem}): "
                           "this layout needs a copy, which the code generator does not emit")
    if check and prod(shape) * elem != bp.bytes:
        raise PlannerError(f"code generator: layer {lp.name}, buffer {bp.name}: {prod(shape) * elem} B "
                           f"in place does not match the plan's {bp.bytes} B")
    return BufDesc(bp.name, "direct", elem, home, home_off, near, 0, 1, 0, NO_STAGE, axes)


def _row_major(shape: tuple[int, ...]) -> tuple[int, ...]:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= n
    return tuple(reversed(out))


def max_levels(b: BufDesc) -> int:
    """DMA levels of the worst tile (the runtime supports 3 beyond the contiguous rows)."""
    n = sum(1 for a in b.axes if a.full > 1)
    inner = next((a for a in reversed(b.axes) if a.full > 1), None)
    return n - (1 if inner is not None and inner.stride == b.elem else 0)


def np_dtype(dtype: str) -> np.dtype:
    return np.dtype({"int8": np.int8, "uint8": np.uint8, "int16": np.int16, "int32": np.int32}[dtype])


def elem_bytes(graph: Graph, tensor: str) -> int:
    return DTYPE_BYTES[graph.tensors[tensor].dtype]
