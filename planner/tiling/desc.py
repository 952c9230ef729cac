"""Tiling descriptions: what the generic tiler needs to know about one layer.

A layer is described as a loop nest over named dims (outer to inner), each tiled at the boundary
between the memory level that holds the full tensors (its *home*, usually L2) and the *compute
level* the kernel reads from (L1 when the target has one, else L2). Every buffer the kernel touches
in the compute level has a footprint ``unit_bytes * prod(tile[d] for d in dims)``; the buffers that
are moved by DMA (in/out/inout) are reloaded whenever the tile of one of their dims changes, and only
those may be double-buffered. Compute is a sum of kernel terms whose per-tile parallel work is a
table over the tile size of one dim (the dim the kernel splits across cores).

One description may have several *variants* (a fixed choice such as the loop order of a Linear or
where the MHSA accumulator lives); the tiler solves each and keeps the cheapest.

Everything here is plain data; ``planner.cost`` evaluates a choice, ``planner.tiling.solver``
encodes the same formulas in CP-SAT.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Callable


@dataclass(frozen=True)
class LoopDim:
    name: str
    size: int
    candidates: tuple[int, ...]  # allowed tile sizes (ascending); (size,) when not tiled

    @property
    def tiled(self) -> bool:
        return self.candidates != (self.size,)


@dataclass(frozen=True)
class BufferSpec:
    """One buffer of a layer in the compute level.

    kind: ``in`` / ``out`` / ``inout`` (activation moved to/from its home by DMA), ``weight``
    (constant moved from its home, or read in place when the home is addressable and is the compute
    level's own memory), ``local`` (lives only in the compute level: partial sums, K_h/V_h, score
    rows), ``scratch`` (kernel scratch).
    """

    name: str
    tensor: str | None
    kind: str
    dims: tuple[str, ...]        # loop dims whose tile sizes multiply the footprint
    unit_bytes: int              # footprint = unit_bytes * prod(tile[d] for d in dims)
    full_bytes: int = 0          # bytes of the whole tensor moved in one pass (traffic base)
    home: str | None = None      # level holding the whole tensor (None: local/scratch)
    passes: int = 1              # times the whole traffic repeats (e.g. x read by two phases)
    only_if_split: str | None = None  # present only when this dim has more than one tile
    activation: bool = True      # counted in activation peaks (False for weights)
    table: tuple[tuple[int, int], ...] | None = None  # footprint by tile size of dims[0]
                                 # (instead of unit_bytes * t) for formulas that are not products
    once: bool = False           # moved in one pass after the loop nest's outer loops (not
                                 # reloaded by outer loops it does not depend on)
    align: int = 1               # its base address must be a multiple of this (the kernel
                                 # description's operand alignment beyond the planner's packing)
    into: str | None = None      # DMA'd straight into that buffer's tile (no footprint of its
                                 # own: unit_bytes 0), e.g. a full bias loaded into an int32 y
    # How often the kernel reads a weight where it lives (priced only when it is read in place
    # from a level with wait states, a flash): `reads` times its bytes per pass (a Linear's
    # weights are streamed once per block of rows), or by the tile size of `reads_dim`
    # (`reads_table`); `lookups`: a table read at random, priced per access instead of per byte.
    reads: int = 1
    reads_dim: str | None = None
    reads_table: tuple[tuple[int, int], ...] | None = None
    lookups: int = 0

    @property
    def moved(self) -> bool:
        return self.kind in ("in", "out", "inout", "weight")


@dataclass(frozen=True)
class ComputeTerm:
    """One cost term of a kernel over the layer's loop nest (kernel_lib/descriptions.py, CostTerm):

        cycles = coefficient * const * prod(table[tile[dim]] for dim, table in tables)

    the coefficient being the hardware model's kernel_cost[key][feature] (cycles per count per
    core), each table giving, per candidate tile size of its loop dim, the term's factor summed
    over that dim's tiles (the full tiles and the rest), or the number of tiles when the kernel
    is called once per tile without a factor on that dim. Counts are the busiest core's.
    Tables and counts are non-negative, so a term never decreases when a factor grows.
    """

    label: str
    key: str                     # hardware model kernel_cost key
    feature: str                 # its feature (kernel_cost[key][feature])
    tables: tuple[tuple[str, tuple[tuple[int, int], ...]], ...] = ()
    const: int = 1
    # per table, the function it tabulates (tile size -> value), for sizes outside the
    # candidates (the exhaustive reference of the tests); not part of the term's identity
    exact: tuple = field(default=(), compare=False, hash=False, repr=False)

    @property
    def dims(self) -> tuple[str, ...]:
        return tuple(d for d, _ in self.tables)

    def factor(self, dim: str, t: int) -> int:
        tab = self._lookup[dim]
        if t not in tab:
            tab[t] = self.exact[self.dims.index(dim)](t)
        return tab[t]

    @cached_property
    def _lookup(self) -> dict[str, dict[int, int]]:
        return {d: dict(tab) for d, tab in self.tables}

    def count(self, tiles: dict[str, int]) -> int:
        """The term's count (summed over every tile of the loop nest) for tile sizes `tiles`."""
        c = self.const
        for d, _ in self.tables:
            c *= self.factor(d, tiles[d])
        return c


OVERHEAD_KINDS = ("layer", "tile", "call", "compact")


@dataclass(frozen=True)
class OverheadTerm:
    """Fixed cost of the generated code outside the kernels: mult * prod(n_tiles[d] for d in dims)
    counts of `kind` (hardware model overhead_cycles: per layer, per tile of the tile engine or of
    a layer's own loop, per kernel call made by a layer's body, per byte compacted by
    nr_compact_rows)."""

    dims: tuple[str, ...]
    mult: int = 1
    kind: str = "tile"


@dataclass
class Variant:
    """One fully specified tiling problem (the generic tiler's input)."""

    layer: str
    op: str
    kernel: str                  # C function family (from the kernel description)
    label: str                   # e.g. "order N,S,K" or "acc in L1, x streamed"
    level: str                   # compute level ("L1" or "L2")
    loops: list[LoopDim]         # outer to inner
    buffers: list[BufferSpec]
    compute: list[ComputeTerm]
    overhead: list[OverheadTerm]
    macs: int
    min_tile: dict[str, int] = field(default_factory=dict)  # e.g. rows >= cores for row split
    l2_extra: list[tuple[str, int]] = field(default_factory=list)  # fixed L2 scratch at this step
    notes: list[str] = field(default_factory=list)
    attrs: dict = field(default_factory=dict)  # variant facts for reports (e.g. acc placement)

    def dim(self, name: str) -> LoopDim:
        for d in self.loops:
            if d.name == name:
                return d
        raise KeyError(name)

    def signature(self) -> tuple:
        """Hashable identity of the optimization problem (layers with equal signatures share a
        solution; names excluded)."""
        return (self.op, self.kernel, self.label, self.level,
                tuple((d.name, d.size, d.candidates) for d in self.loops),
                tuple((b.name, b.kind, b.dims, b.unit_bytes, b.full_bytes, b.home, b.passes,
                       b.only_if_split, b.activation, b.once, b.table, b.align, b.into, b.reads,
                       b.reads_dim, b.reads_table, b.lookups)
                      for b in self.buffers),
                tuple(self.compute), tuple(self.overhead), tuple(sorted(self.min_tile.items())),
                tuple(self.l2_extra))


@dataclass
class LayerDesc:
    """All variants of one layer (what the op builder returns)."""

    layer: str
    op: str
    variants: list[Variant]
    macs: int
    untiled_reason: str | None = None


def reserved_bytes(nbytes: int, align: int, base: int) -> int:
    """Bytes one copy takes in a level packed at `base` alignment when it needs `align`: rounded
    up to `align`, plus the worst padding before it (align - base) when align > base, so that a
    footprint counted this way always fits whatever the packing order."""
    if nbytes <= 0:
        return 0
    a = max(align, base)
    return -(-nbytes // a) * a + (a - base if a > base else 0)


def candidate_sizes(size: int, allowed: Callable[[int], bool], minimum: int = 1,
                    dominated: bool = True) -> tuple[int, ...]:
    """Tile sizes worth considering for a dim of `size`.

    With `dominated` (dims whose cost depends only on the number of tiles), only the smallest
    allowed size for each tile count is kept (same cost, least memory); otherwise every allowed
    size. The full size is always allowed (a kernel takes a whole dim).
    """
    out: dict[int, int] = {}
    for t in range(max(1, minimum), size + 1):
        if t != size and not allowed(t):
            continue
        n = -(-size // t)
        if dominated:
            if n not in out:
                out[n] = t
        else:
            out[t] = t
    return tuple(sorted(set(out.values()) | {size}))


def prune_candidates(v: Variant, cores: int) -> Variant:
    """Drop tile sizes that cannot be optimal: for a fixed number of tiles, every footprint, the
    first-tile transfer and the tile counts are non-decreasing in the tile size, so a larger size is
    only worth keeping when it lowers some compute table (core split) or tabulated footprint entry
    of that dim: keep the sizes whose score vector is not dominated by a smaller size with the same
    tile count. Exact: the optimum of the pruned problem equals the optimum over all sizes."""
    import dataclasses

    new_loops = []
    changed = False
    for d in v.loops:
        terms = [t for t in v.compute if d.name in t.dims]
        tables = [dict(b.table) for b in v.buffers if b.table and b.dims and b.dims[0] == d.name]
        kept: list[int] = []
        groups: dict[int, list[tuple[int, tuple]]] = {}
        for t in d.candidates:
            score = tuple(term.factor(d.name, t) for term in terms) + tuple(tab[t] for tab in tables)
            n = -(-d.size // t)
            group = groups.setdefault(n, [])
            if any(all(a <= b for a, b in zip(s2, score)) for _, s2 in group):
                continue
            group.append((t, score))
            kept.append(t)
        if d.size not in kept and v.min_tile.get(d.name, 1) > d.size:
            kept.append(d.size)
        kept = sorted(set(kept))
        if tuple(kept) != d.candidates:
            changed = True
        new_loops.append(LoopDim(d.name, d.size, tuple(kept)))
    if not changed:
        return v
    return dataclasses.replace(v, loops=new_loops)
