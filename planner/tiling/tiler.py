"""The tiler as the pipeline uses it: describe a layer, solve its variants (cached), keep the best.

A variant's candidate table (its Pareto front of tiling choices, planner.tiling.table) is built
once per problem signature; a solve is cached per signature and set of front points that fit the
capacities (the answer depends on nothing else), so identical layers, other loop-order variants of
the same shape and repeated capacities cost one CP-SAT call.
"""

from __future__ import annotations

from planner.cost import CostParams, Evaluation, evaluate
from planner.errors import PlannerError
from planner.hw import HardwareModel
from planner.ir import Node
from planner.tiling.desc import LayerDesc, Variant, prune_candidates
from planner.tiling.solver import TileResult, solve_variant
from planner.tiling.table import Table, build_table

ALIGN = 4  # every buffer copy is placed at a multiple of this (the memory planner's alignment)


class Tiler:
    """Describe and tile layers, caching tables and solves (see the module doc)."""

    def __init__(self, params: CostParams, hw: HardwareModel, time_limit: float, seed: int):
        self.params, self.hw, self.time_limit, self.seed = params, hw, time_limit, seed
        self.cache: dict[tuple, TileResult | None] = {}
        self.tables: dict[tuple, tuple[Variant, Table | None]] = {}

    def table(self, v: Variant, staging_cap: int | None) -> tuple[tuple, Variant, Table | None]:
        sig = (v.signature(), staging_cap)
        if sig not in self.tables:
            pv = prune_candidates(v, self.params.cores)
            self.tables[sig] = (pv, build_table(self.params, pv, ALIGN, staging_cap))
        return (sig, *self.tables[sig])

    def solve(self, v: Variant, capacity: int, staging_cap: int | None) -> TileResult | None:
        sig, pv, tab = self.table(v, staging_cap)
        if tab is not None:
            key = (sig, (tab.aligned <= capacity).tobytes())
        else:
            key = (sig, capacity, staging_cap)
        if key not in self.cache:
            self.cache[key] = solve_variant(self.params, pv, capacity, staging_cap,
                                            self.time_limit, self.seed, ALIGN, table=tab)
        r = self.cache[key]
        if r is None:
            return None
        if r.variant is not v:  # same problem, another layer (or the unpruned variant): rebind
            ev = evaluate(self.params, v, r.evaluation.tiles, r.evaluation.double)
            r = TileResult(v, ev, r.optimal, r.status)
        return r

    def best(self, desc: LayerDesc, capacity: int, staging_cap: int | None) -> TileResult | None:
        best = None
        for v in desc.variants:
            r = self.solve(v, capacity, staging_cap)
            if r is None:
                continue
            key = (r.evaluation.cost, r.evaluation.footprint + r.evaluation.staging)
            if best is None or key < (best.evaluation.cost, best.evaluation.footprint + best.evaluation.staging):
                best = r
        return best

    def smallest(self, desc: LayerDesc) -> tuple[Evaluation, Variant]:
        """The smallest footprint any tiling of the layer reaches (smallest tiles, single buffers)."""
        out = None
        for v in desc.variants:
            tiles = {d.name: max(min(d.candidates), min(v.min_tile.get(d.name, 1), d.size))
                     for d in v.loops}
            tiles = {d.name: min([c for c in d.candidates if c >= tiles[d.name]] or [d.size]) for d in v.loops}
            ev = evaluate(self.params, v, tiles, frozenset())
            if out is None or ev.footprint < out[0].footprint:
                out = (ev, v)
        assert out is not None
        return out

    def infeasible(self, desc: LayerDesc, node: Node, level: str, capacity: int,
                   held: str = "") -> PlannerError:
        """The error for a layer no tiling of which fits `capacity` bytes of `level`. `held`: when
        the layer gets less than the level's usable bytes, what holds the rest (e.g. "1,310,720 B
        usable minus 12,000 B of live activations ...")."""
        ev, v = self.smallest(desc)
        tiles = ", ".join(f"{k}={t}" for k, t in ev.tiles.items()) or "untiled"
        if ev.footprint <= capacity:  # the smallest tiling fits: staging, or the solver failed
            return PlannerError(
                f"layer {node.name} ({node.op}): no tiling found although the smallest one "
                f"({ev.footprint:,} B, {v.label}; tiles {tiles}) fits the {capacity:,} B of {level}: "
                f"either its L2 staging buffers ({ev.staging:,} B) do not fit beside the rest, or the "
                f"tiler's time limit ({self.time_limit} deterministic units) was too short (raise "
                "--time-limit)")
        if not held:
            room = f"{level} has {capacity:,} B usable"
        elif capacity >= 0:
            room = f"{level} has {capacity:,} B left for it ({held})"
        else:
            room = f"{level} has no room left for it ({held}: {-capacity:,} B over)"
        return PlannerError(
            f"layer {node.name} ({node.op}) does not fit {level}: its smallest footprint is "
            f"{ev.footprint:,} B ({v.label}; tiles {tiles}) but {room}: "
            f"{ev.footprint - capacity:,} B missing at {level}")
