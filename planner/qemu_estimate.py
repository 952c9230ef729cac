"""The cost model's estimate of a QEMU run of the generated code, layer by layer, in instructions.

On the chip the DMA moves the tiles while the core computes (planner/cost.py prices that with the
links' bandwidths). The QEMU builds have no DMA engine: their DMA port copies at issue, with the
core (codegen/platforms/stm32/nr_dma_memcpy.c, the PMSIS stand-in's pi_cl_dma_cmd), so a QEMU
count contains those copies and no wait for a transfer. To compare like with like, the estimate of
a QEMU run is

    kernels + overhead      the plan's compute and overhead figures (the same cost model terms
                            as on the chip: kernel cost terms, tile engine work), in instructions
                            (cycles / insn_to_cycle)
  + port                    the DMA port's copies on QEMU: qemu_dma_port figures of the model
                            (per transfer, per contiguous row, per byte by words or bytes)

and the board's DMA time (bandwidth, setup, overlap) is left out: QEMU cannot measure it.
On the GAP9 stand-in (cores run one after another) the counts are the sum over the cores: the
kernels and the per-layer, per-tile and per-call work are counted once per core (a balanced split
is assumed for the kernels: the busiest core's share times the cores), the transfers, the copies
and the compaction once (core 0 issues them).

The layer's tiling is rebuilt from plan.json (its variant, tiles and double buffers) and
evaluated with the hardware model, which gives every count the figures need.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from planner.cost import SCALE, CostParams, Evaluation, evaluate
from planner.errors import PlannerError
from planner.hw import HardwareModel
from planner.plan import LayerPlan, Plan
from planner.tiling.desc import Variant


@dataclass
class LayerEstimate:
    name: str
    kernels: float        # instructions
    overhead: float
    port: float
    port_counts: dict[str, int]
    overhead_counts: dict[str, int]

    @property
    def total(self) -> float:
        return self.kernels + self.overhead + self.port


def plan_hardware(plan: Plan) -> tuple[HardwareModel, int]:
    """The plan's hardware model with its --l1/--l2 what-if sizes, and its cores."""
    from planner.hw import load_hw_model, with_overrides

    hw = load_hw_model(plan.hardware["name"])
    o = plan.options or {}
    if o.get("l1") or o.get("l2"):
        hw = with_overrides(hw, l1=o.get("l1"), l2=o.get("l2"))
    return hw, int(plan.hardware.get("cores", hw.cores))


def layer_evaluations(plan: Plan, hw: HardwareModel | None = None
                      ) -> list[tuple[LayerPlan, Variant, Evaluation]]:
    """Every layer of the plan as the tiler saw it: its variant (rebuilt from the plan's graph,
    with the plan's weight homes) evaluated at the plan's tiles and double buffers, with `hw`
    (default: the plan's model as it is now)."""
    from planner.deployed import deployed_graph, planning_graph
    from planner.tiling.ops import BuildContext, describe

    base, cores = plan_hardware(plan)
    hw = hw or base
    params = CostParams.from_hw(hw, cores)
    graph = planning_graph(plan, deployed_graph(plan))
    nodes = {n.name: n for n in graph.nodes}
    homes = {b.tensor: b.home for lp in plan.layers for b in lp.buffers
             if b.kind == "weight" and b.tensor and b.home}
    default_home = (plan.weights or {}).get("home")  # --weights: where the other constants live
    out = []
    for lp in plan.layers:
        node = nodes.get(lp.name)
        if node is None:
            raise PlannerError(f"plan layer {lp.name} is not a node of the plan's network: re-run planner solve")
        ctx = BuildContext(graph, params, hw.isa, lp.compute_level, weight_home=homes,
                           default_weight_home=default_home)
        variants = [v for v in describe(ctx, node).variants if v.label == lp.variant]
        if not variants:
            raise PlannerError(f"plan layer {lp.name}: variant '{lp.variant}' is not one the tiler "
                               "builds now: re-run planner solve")
        v = variants[0]
        tiles = dict(lp.tile.get(lp.compute_level) or lp.dims)
        double = frozenset(b.name for b in lp.buffers if b.copies == 2)
        out.append((lp, v, evaluate(params, v, tiles, double)))
    return out


def layer_descs(plan: Plan) -> list[dict | None]:
    """The tile engine's buffer descriptors of every layer as the code generator emits them
    (codegen/model.py BufDesc, by buffer name), None for a layer with its own loops (MHSA) or
    when the code generator cannot describe it: the real geometry of each DMA copy (a view with
    a transposed or head-interleaved layout is gathered in many short rows)."""
    from codegen.project import _emit_layer, build_context
    from planner.deployed import deployed_graph

    try:
        ctx = build_context(plan, deployed_graph(plan))
    except PlannerError:
        return [None] * len(plan.layers)
    out: list[dict | None] = []
    for k in range(len(plan.layers)):
        try:
            code = _emit_layer(ctx, k)
        except PlannerError:
            out.append(None)
            continue
        out.append({b.name: b for b in code.bufs} if code.engine else None)
    return out


def _xfer_rows(desc, ext: dict[int, int]) -> tuple[int, int, bool]:
    """(bytes per row, rows, copied by words) of one copy of a tile of `desc` whose loop dims
    have the extents `ext` (by loop index): nr_make_xfer's merge (contiguous run, then levels;
    axes of extent 1 skipped, adjacent levels merged) and nr_row's word test."""
    dense = row = desc.elem
    contiguous = True
    levels: list[list[int]] = []   # [n, home stride, near stride]
    for a in reversed(desc.axes):
        e = a.full if a.dim is None else ext[a.dim]
        if e == 1:
            continue
        if contiguous and a.stride == row:
            row *= e
        else:
            contiguous = False
            if levels and a.stride == levels[-1][0] * levels[-1][1] and dense == levels[-1][0] * levels[-1][2]:
                levels[-1][0] *= e
            else:
                levels.append([e, a.stride, dense])
        dense *= e
    rows = prod(lv[0] for lv in levels)
    strides = [lv[1] for lv in levels] + [lv[2] for lv in levels]
    words = (row % 4 == 0 and desc.home_off % 4 == 0 and desc.near_off % 4 == 0
             and all(st % 4 == 0 for st in strides))
    return row, rows, words


def _desc_rows(desc, loop_order: list[str], v: Variant, ev: Evaluation) -> tuple[float, float]:
    """(rows per load, share of the bytes copied by words) of a buffer's copies, averaged over
    the tiles (full and rest tiles weighted by their number)."""
    sizes = {d.name: d.size for d in v.loops}
    used = sorted({a.dim for a in desc.axes if a.dim is not None})
    combos: list[tuple[float, dict[int, int]]] = [(1.0, {})]
    for i in used:
        d = loop_order[i]
        t, n = ev.tiles[d], ev.n_tiles[d]
        rest = sizes[d] - (n - 1) * t
        opts = [((n - 1) / n if rest != t else 1.0, t)] + ([(1 / n, rest)] if rest != t else [])
        combos = [(w * wo, {**e, i: x}) for w, e in combos for wo, x in opts if wo > 0]
    rows = words = total = 0.0
    for w, e in combos:
        rb, nr, wd = _xfer_rows(desc, e)
        rows += w * nr
        total += w * rb * nr
        words += w * rb * nr * wd
    return rows, (words / total if total else 1.0)


def port_counts(v: Variant, ev: Evaluation, descs: dict | None = None,
                loop_order: list[str] | None = None) -> dict[str, int]:
    """What the QEMU DMA port copies for a layer: transfers (one per leg), contiguous rows, and the
    bytes of rows whose length is a multiple of 4 (copied by words) or not (byte by byte). With
    the code generator's descriptors (`descs`, layer_descs) the rows are those nr_make_xfer
    makes of each tile; without, a tile's rows are taken from the tiler's view: the inner dims
    of its buffer that the tile spans whole, and the first one it cuts, form one contiguous run;
    the outer dims repeat it. Rest tiles are counted at the average extent. A staged copy's
    second leg (L2 staging -> compute level) is one flat row."""
    sizes = {d.name: d.size for d in v.loops}
    specs = {b.name: b for b in v.buffers}
    out = {"transfer": 0, "row": 0, "byte": 0, "byte_unaligned": 0}
    for be in ev.buffers:
        if be.access != "dma" or not be.present or be.loads == 0:
            continue
        spec = specs[be.name]
        desc = (descs or {}).get(be.name)
        if desc is not None and loop_order is not None and desc.axes:
            per_load, word_share = _desc_rows(desc, loop_order, v, ev)
            n_rows = max(1, int(round(be.loads * per_load)))
            words = int(round(be.traffic * word_share))
            out["transfer"] += be.loads
            out["row"] += n_rows
            out["byte"] += words
            out["byte_unaligned"] += be.traffic - words
            if be.staging:  # the flat copy out of the L2 staging buffer
                out["transfer"] += be.loads
                out["row"] += be.loads
                out["byte" if be.tile_bytes % 4 == 0 else "byte_unaligned"] += be.traffic
            continue
        legs = 2 if be.staging else 1
        rows = 1.0
        run_dims: list[str] = []
        cut = False
        for d in reversed(spec.dims):
            if not cut:
                run_dims.append(d)
                cut = ev.tiles[d] < sizes[d]
            else:
                rows *= sizes[d] / ev.n_tiles[d]
        n_rows = max(1, int(round(be.loads * rows)))
        if spec.unit_bytes > 0:
            run = spec.unit_bytes * prod(ev.tiles[d] for d in run_dims)
            c = run_dims[-1] if cut else None
            rest = sizes[c] % ev.tiles[c] if c else 0
            aligned = run % 4 == 0 and (not rest or (run // ev.tiles[c] * rest) % 4 == 0)
        else:  # no own tile (written from another buffer): the average row
            per_row = be.traffic / n_rows
            aligned = per_row == int(per_row) and int(per_row) % 4 == 0
        out["transfer"] += be.loads * legs
        out["row"] += n_rows * legs
        out["byte" if aligned else "byte_unaligned"] += be.traffic * legs
    return out


# per-core work of the stand-in's sequential cores: counted once per core
_PER_CORE = ("layer", "tile", "call")


def estimate(plan: Plan, target: str, hw: HardwareModel | None = None) -> list[LayerEstimate]:
    """The estimate of the QEMU run of every layer of `plan` on `target` (module doc)."""
    base, cores = plan_hardware(plan)
    hw = hw or base
    i2c = hw.insn_to_cycle
    sequential = cores if target == "qemu-rv32" and cores > 1 else 1
    params = CostParams.from_hw(hw, cores)
    out = []
    for (lp, v, ev), descs in zip(layer_evaluations(plan, hw), layer_descs(plan)):
        counts = ev.overhead_counts
        ov_cyc = 0.0
        for kind, n in counts.items():
            per = (params.transfer_overhead if kind == "transfer" else params.overhead[kind]) / SCALE
            ov_cyc += per * n * (sequential if kind in _PER_CORE else 1)
        pc = port_counts(v, ev, descs, lp.loop_order)
        port = sum(hw.qemu_dma_port[k] * n for k, n in pc.items())
        out.append(LayerEstimate(lp.name, ev.compute / SCALE / i2c * sequential, ov_cyc / i2c, port,
                                 pc, dict(counts)))
    return out


def overhead_features(counts: dict[str, int], sequential: int) -> dict[str, int]:
    """The overhead counts of a layer as a QEMU run executes them (per-core kinds times the
    stand-in's sequential cores): what planner calibrate fits overhead_cycles on."""
    return {k: n * (sequential if k in _PER_CORE else 1) for k, n in counts.items()}
