"""`planner solve`: ONNX + hardware model -> Plan (tiles, static memory plan, estimates).

Pipeline: load graph -> [FWSA] -> per MHSA block depth-first or layer-by-layer (--dft) -> schedule
(compute nodes; layout nodes are aliases) -> per layer: description (planner.tiling.ops) -> the
generic CP-SAT tiler (planner.tiling.solver) -> static memory plan per level (planner.memory) ->
weights in L2 when they fit, else L3 -> Plan (planner.plan).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

from planner.cost import SCALE, CostParams, Evaluation, evaluate, latency_ms
from planner.errors import PlannerError, UsageError
from planner.hw import HardwareModel, load_hw_model, with_overrides
from planner.ir import LAYOUT_OPS, Graph, Node
from planner.plan import FORMAT_VERSION, BufferPlan, LayerPlan, Plan
from planner.tiling.desc import LayerDesc, Variant, prune_candidates
from planner.tiling.ops import BuildContext, describe
from planner.tiling.solver import TileResult, solve_variant

ALIGN = 4
DESC_BYTES = 32      # runtime: per-layer descriptor (kernel id, argument block pointer, tile counts)
DMA_DESC_BYTES = 16  # runtime: per DMA'd buffer (src, dst, bytes, stride)
TILE_TABLE_BYTES = 8  # runtime: per tiled dim (tile size, tile count)


@dataclass
class SolveOptions:
    dft: str = "auto"
    fwsa: str = "off"
    l1: int | None = None
    l2: int | None = None
    cores: int | None = None
    time_limit: float = 10.0
    seed: int = 0
    input_shapes: dict | None = None


@dataclass
class Solution:
    plan: Plan
    graph: Graph
    hw: HardwareModel


@dataclass
class _Layer:
    node: Node
    desc: LayerDesc
    result: TileResult
    step: int = -1
    parts_of: str | None = None


def parse_bytes(text: str) -> int:
    """'131072', '128K', '1.5M' -> bytes (K = 1024, M = 1024²)."""
    t = str(text).strip()
    mult = 1
    if t[-1:].upper() == "K":
        mult, t = 1024, t[:-1]
    elif t[-1:].upper() == "M":
        mult, t = 1024 * 1024, t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise UsageError(f"expected a number of bytes such as 65536, 64K or 1.5M, got {text!r}") from None
    if v <= 0 or v != int(v):
        raise UsageError(f"expected a positive whole number of bytes, got {text!r}")
    return int(v)


def _align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


def aligned_footprint(ev: Evaluation) -> int:
    """Compute-level bytes as the memory planner packs them (each copy aligned)."""
    return sum(_align(b.tile_bytes) * b.copies for b in ev.buffers
               if b.present and b.access != "inplace" and (b.access == "dma" or b.kind in ("local", "scratch")))


# ------------------------------------------------------------------------------------ tiling


class Tiler:
    """Describe and tile layers, caching identical problems (same signature and capacities)."""

    def __init__(self, params: CostParams, hw: HardwareModel, time_limit: float, seed: int):
        self.params, self.hw, self.time_limit, self.seed = params, hw, time_limit, seed
        self.cache: dict[tuple, TileResult | None] = {}

    def solve(self, v: Variant, capacity: int, staging_cap: int | None) -> TileResult | None:
        key = (v.signature(), capacity, staging_cap)
        if key not in self.cache:
            pv = prune_candidates(v, self.params.cores)
            self.cache[key] = solve_variant(self.params, pv, capacity, staging_cap, self.time_limit, self.seed)
        r = self.cache[key]
        if r is None:
            return None
        if r.variant is not v:  # same problem, another layer: rebind names
            ev = evaluate(self.params, v, r.evaluation.tiles, r.evaluation.double)
            r = TileResult(v, ev, r.optimal, r.status)
        return r

    def best(self, desc: LayerDesc, capacity: int, staging_cap: int | None) -> TileResult | None:
        best = None
        for v in desc.variants:
            r = self._fit(v, capacity, staging_cap)
            if r is None:
                continue
            key = (r.evaluation.cost, r.evaluation.footprint + r.evaluation.staging)
            if best is None or key < (best.evaluation.cost, best.evaluation.footprint + best.evaluation.staging):
                best = r
        return best

    def _fit(self, v: Variant, capacity: int, staging_cap: int | None) -> TileResult | None:
        """Solve; the memory planner aligns every buffer copy to ALIGN bytes, so re-solve with the
        excess removed when the aligned footprint would not fit (exact, usually no re-solve)."""
        cap = capacity
        for _ in range(4):
            r = self.solve(v, cap, staging_cap)
            if r is None:
                return None
            over = aligned_footprint(r.evaluation) - capacity
            if over <= 0:
                return r
            cap -= over
        return None

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


# ------------------------------------------------------------------------------- the pipeline


def _planning_graph(graph: Graph, unfused: set[str]) -> Graph:
    """The graph with the MHSA nodes in `unfused` replaced by their parts (layer-by-layer)."""
    nodes = []
    for n in graph.nodes:
        if n.op == "MHSA" and n.name in unfused:
            nodes.extend(n.parts)
        else:
            nodes.append(n)
    g = copy.copy(graph)
    g.nodes = nodes
    return g


def _check_cores(hw: HardwareModel, cores: int | None) -> int:
    if cores is None:
        return hw.cores
    if cores < 1 or cores > hw.cores:
        raise UsageError(f"--cores {cores}: hardware model '{hw.name}' has {hw.cores} core"
                         f"{'s' if hw.cores > 1 else ''} (use 1..{hw.cores})")
    return cores


def _infeasible(tiler: Tiler, desc: LayerDesc, node: Node, level: str, capacity: int) -> PlannerError:
    ev, v = tiler.smallest(desc)
    tiles = ", ".join(f"{k}={t}" for k, t in ev.tiles.items()) or "untiled"
    return PlannerError(
        f"layer {node.name} ({node.op}) does not fit {level}: its smallest footprint is "
        f"{ev.footprint:,} B ({v.label}; tiles {tiles}) but {level} has {capacity:,} B usable: "
        f"{ev.footprint - capacity:,} B missing at {level}")


def solve(network: str | Path, hw_spec: str | Path, opts: SolveOptions | None = None) -> Solution:
    from planner.frontend import load_graph

    opts = opts or SolveOptions()
    if opts.dft not in ("auto", "on", "off"):
        raise UsageError(f"--dft must be auto, on or off, got {opts.dft!r}")
    if opts.fwsa not in ("auto", "on", "off"):
        raise UsageError(f"--fwsa must be auto, on or off, got {opts.fwsa!r}")
    if opts.time_limit <= 0:
        raise UsageError(f"--time-limit must be positive, got {opts.time_limit}")
    hw0 = load_hw_model(hw_spec)
    if opts.l1 is not None and not hw0.has_level("L1"):
        raise UsageError(f"--l1: hardware model '{hw0.name}' has no L1 (its levels: {', '.join(hw0.levels)})")
    hw = with_overrides(hw0, l1=opts.l1, l2=opts.l2) if (opts.l1 or opts.l2) else hw0
    cores = _check_cores(hw, opts.cores)
    graph = load_graph(network, opts.input_shapes)
    warnings: list[str] = []
    fwsa_decisions = {}
    if opts.fwsa != "off":
        fwsa_decisions = _apply_fwsa(graph, opts.fwsa)
    params = CostParams.from_hw(hw, cores)
    level = params.compute_level
    if "L2" not in hw.levels:
        raise PlannerError(f"hardware model '{hw.name}' has no L2: the planner keeps activations in L2")
    ctx = BuildContext(graph, params, hw.isa, level)
    tiler = Tiler(params, hw, opts.time_limit, opts.seed)
    l2_usable = hw.levels["L2"].usable
    cap_c = hw.levels[level].usable

    # --- MHSA blocks: both forms, then the choice
    blocks = [n for n in graph.nodes if n.op == "MHSA"]
    block_info: dict[str, dict] = {}
    unfused: set[str] = set()
    for b in blocks:
        info = _block_forms(graph, b, ctx, tiler, cap_c if level != "L2" else l2_usable, opts.dft, l2_usable)
        block_info[b.name] = info
        if info["form"] == "layer-by-layer":
            unfused.add(b.name)

    # --- weights home: L2 if they fit beside the activations, else L3
    weight_home: dict[str, str] = {}
    for attempt in range(4):
        ctx = BuildContext(_planning_graph(graph, unfused), params, hw.isa, level, weight_home=weight_home)
        pg = ctx.graph
        schedule = [n for n in pg.nodes if n.op not in LAYOUT_OPS]
        layers = _tile_all(ctx, tiler, schedule, level, cap_c, l2_usable, graph, unfused)
        mem = _memory(ctx, hw, layers, schedule, weight_home, opts)
        over = mem["L2_need"] - l2_usable
        if over <= 0:
            break
        if "L3" not in hw.levels:
            raise PlannerError(
                f"L2: activations ({mem['L2'].peak:,} B) + weights ({mem['weights_L2']:,} B) + runtime "
                f"({mem['runtime_L2']:,} B) need {mem['L2_need']:,} B but L2 has {l2_usable:,} B usable: "
                f"{over:,} B missing at L2 (no L3 to stream weights from)")
        moved = _stream_weights(pg, weight_home, over)
        if not moved:
            raise PlannerError(
                f"L2: {mem['L2_need']:,} B needed, {l2_usable:,} B usable: {over:,} B missing at L2 even "
                "with every weight streamed from L3")
        warnings.append(f"weights streamed from L3 (do not fit L2): {', '.join(sorted(moved))}")
    else:  # pragma: no cover
        raise PlannerError("weights placement did not converge")

    for l in layers:
        if not l.result.optimal:
            warnings.append(f"layer {l.node.name}: tiler time limit reached ({opts.time_limit} "
                            "deterministic units): best tiling found, not proven optimal")
        for note in l.desc.variants[0].notes:
            warnings.append(f"layer {l.node.name}: {note}")
    plan = _assemble(network, hw, hw0, opts, cores, params, graph, pg, schedule, layers, mem,
                     block_info, fwsa_decisions, warnings)
    return Solution(plan, graph, hw)


def _apply_fwsa(graph: Graph, mode: str) -> dict:
    try:
        from planner.transforms.fwsa import apply_fwsa
    except ImportError:
        raise UsageError(f"--fwsa {mode}: the FWSA pass (planner/transforms/fwsa.py) is not "
                         "available in this tree; use --fwsa off") from None
    raise UsageError(f"--fwsa {mode}: the tiler has no description of the fused-weight MHSA node "
                     "yet (planner/tiling/ops.py); use --fwsa off (FWSA figures are reported per "
                     "block)") from None
    return {d.node: d for d in apply_fwsa(graph, mode)}  # noqa


def _tile_all(ctx: BuildContext, tiler: Tiler, schedule: list[Node], level: str, cap_c: int,
              l2_usable: int, graph: Graph, unfused: set[str]) -> list[_Layer]:
    parts_of = {}
    for n in graph.nodes:
        if n.op == "MHSA" and n.name in unfused:
            for p in n.parts:
                parts_of[p.name] = n.name
    live = _live_bytes(ctx.graph, schedule) if level == "L2" else None
    wl2 = sum(t.nbytes for name, t in ctx.graph.tensors.items()
              if t.is_const and ctx.whome(name) == "L2") if level == "L2" else 0
    layers = []
    for k, node in enumerate(schedule):
        desc = describe(ctx, node)
        if level == "L2":
            cap = l2_usable - live[k] - wl2
        else:
            cap = cap_c
        r = tiler.best(desc, cap, l2_usable if level != "L2" else None)
        if r is None:
            raise _infeasible(tiler, desc, node, level, cap)
        layers.append(_Layer(node, desc, r, k, parts_of.get(node.name)))
    return layers


def _live_bytes(graph: Graph, schedule: list[Node]) -> list[int]:
    from planner.memory import activation_buffers
    bufs = activation_buffers(graph, schedule)
    return [sum(b.reserved for b in bufs if b.start <= k <= b.end) for k in range(len(schedule))]


def _stream_weights(graph: Graph, weight_home: dict[str, str], over: int) -> list[str]:
    """Move the largest L2-resident weights to L3 until `over` bytes are freed."""
    consts = sorted(((t.nbytes, name) for name, t in graph.tensors.items()
                     if t.is_const and weight_home.get(name, "L2") == "L2" and t.nbytes > 64),
                    key=lambda x: (-x[0], x[1]))
    moved, freed = [], 0
    for nbytes, name in consts:
        if freed >= over * 1.25 + 1024:
            break
        weight_home[name] = "L3"
        moved.append(name)
        freed += nbytes
    return moved


# ---------------------------------------------------------------------------- memory plan


def _memory(ctx: BuildContext, hw: HardwareModel, layers: list[_Layer], schedule: list[Node],
            weight_home: dict[str, str], opts: SolveOptions) -> dict:
    from planner.memory import Buffer, activation_buffers, plan_level

    level = ctx.level
    g = ctx.graph
    step_names = [n.name for n in schedule]
    extra: dict[int, list[tuple[str, int]]] = {}
    l1_bufs: list[Buffer] = []
    for l in layers:
        ev = l.result.evaluation
        v = l.result.variant
        items = extra.setdefault(l.step, [])
        for name, nbytes in v.l2_extra:
            items.append((name, nbytes))
        for b in ev.buffers:
            if not b.present or b.access == "inplace":
                continue
            if b.access == "none" and b.kind not in ("local", "scratch"):
                continue
            nbytes = b.tile_bytes * b.copies
            if nbytes == 0:
                continue
            bname = f"{l.node.name}/{b.name}"
            if level == "L2":
                items.append((bname, nbytes))
            else:
                l1_bufs.append(Buffer(bname, nbytes, l.step, l.step, ALIGN))
            if b.staging is not None:
                items.append((bname + ".stage", nbytes))
    # weights used by the schedule
    weights: dict[str, int] = {}
    for n in schedule:
        for t in n.inputs:
            tt = g.tensors.get(t) if t else None
            if tt is not None and tt.is_const and n.op not in LAYOUT_OPS:
                weights[t] = tt.nbytes
    w_l2 = {k: v for k, v in weights.items() if weight_home.get(k, "L2") == "L2"}
    w_l3 = {k: v for k, v in weights.items() if weight_home.get(k, "L2") == "L3"}
    runtime_l2 = sum(DESC_BYTES + TILE_TABLE_BYTES * len(l.result.variant.loops)
                     + DMA_DESC_BYTES * sum(1 for b in l.result.evaluation.buffers if b.access == "dma")
                     for l in layers)
    bufs = activation_buffers(g, schedule, extra={k: v for k, v in extra.items() if v}, alignment=ALIGN)
    wbytes_l2 = sum(_align(v) for v in w_l2.values())
    l2_usable = hw.levels["L2"].usable
    act_cap = max(0, l2_usable - wbytes_l2 - runtime_l2)
    try:
        l2 = plan_level(bufs, "L2", capacity=None, time_limit=min(opts.time_limit, 5.0), seed=opts.seed,
                        step_names=step_names)
    except PlannerError:
        raise
    l1 = None
    if level == "L1":
        l1 = plan_level(l1_bufs, "L1", capacity=hw.levels["L1"].usable, time_limit=min(opts.time_limit, 5.0),
                        seed=opts.seed, step_names=step_names)
    need = l2.peak + wbytes_l2 + runtime_l2
    if need > l2_usable and act_cap < l2.lower_bound and "L3" not in hw.levels:
        pass  # reported by the caller with the figures
    return {"L2": l2, "L1": l1, "weights_L2": wbytes_l2, "w_l2": w_l2, "w_l3": w_l3,
            "runtime_L2": runtime_l2, "L2_need": need, "buffers_L2": bufs}


# ------------------------------------------------------------------------------ MHSA blocks


def _block_forms(graph: Graph, node: Node, ctx: BuildContext, tiler: Tiler, cap: int, mode: str,
                 l2_cap: int) -> dict:
    """Tile the block depth-first (one fused node) and layer by layer (its parts); count both
    peaks the same way; choose per --dft."""
    level = ctx.level
    dft_desc = describe(ctx, node)
    stage_cap = None if level == "L2" else l2_cap
    dft = tiler.best(dft_desc, cap, stage_cap)
    # layer by layer
    pg = _planning_graph(graph, {node.name})
    pctx = BuildContext(pg, ctx.params, ctx.isa, level, weight_home=ctx.weight_home)
    parts = [p for p in node.parts if p.op not in LAYOUT_OPS]
    lbl: list[tuple[Node, TileResult | None, LayerDesc]] = []
    for p in parts:
        d = describe(pctx, p)
        lbl.append((p, tiler.best(d, cap, stage_cap), d))
    lbl_ok = all(r is not None for _, r, _ in lbl)
    info: dict = {"node": node.name}
    x = node.inputs[0]
    x_bytes = graph.tensors[x].nbytes
    y_bytes = graph.tensors[node.outputs[0]].nbytes
    a = node.attrs
    s, e = a["s"], a["e"]
    dft_cycles = dft.evaluation.cycles if dft else None
    lbl_cycles = sum(r.evaluation.cycles for _, r, _ in lbl) if lbl_ok else None
    dft_peak = _dft_peak(dft.variant, dft.evaluation, x_bytes, y_bytes, s, e) if dft else None
    lbl_peak, lbl_moment = _lbl_peak(pg, node, [(p, r) for p, r, _ in lbl]) if lbl_ok else (None, None)
    # minimum-peak depth-first tiling (every candidate that fits, single buffers)
    min_peak, min_tiles = None, None
    for v in dft_desc.variants:
        for th in v.dim("h").candidates:
            for tx in v.dim("x").candidates:
                ev = evaluate(tiler.params, v, {"h": th, "x": tx}, frozenset())
                if ev.footprint > cap:
                    continue
                pk = _dft_peak(v, ev, x_bytes, y_bytes, s, e)
                if min_peak is None or pk < min_peak:
                    min_peak, min_tiles = pk, {"h": th, "x": tx, "variant": v.label}
    if mode == "on":
        if dft is None:
            raise _infeasible(tiler, dft_desc, node, level, cap)
        form, why = "depth-first", "--dft on"
    elif mode == "off":
        if not lbl_ok:
            bad = next((p, d) for p, r, d in lbl if r is None)
            raise _infeasible(tiler, bad[1], bad[0], level, cap)
        form, why = "layer-by-layer", "--dft off"
    else:
        if dft is None and not lbl_ok:
            raise _infeasible(tiler, dft_desc, node, level, cap)
        if dft is None:
            form, why = "layer-by-layer", "depth-first tiling does not fit"
        elif not lbl_ok:
            form, why = "depth-first", "layer-by-layer does not fit"
        elif (dft_cycles, dft_peak) <= (lbl_cycles, lbl_peak):
            form, why = "depth-first", (f"fewer estimated cycles ({dft_cycles:,} vs {lbl_cycles:,})"
                                        if dft_cycles < lbl_cycles else "same cycles, lower peak")
        else:
            form, why = "layer-by-layer", f"fewer estimated cycles ({lbl_cycles:,} vs {dft_cycles:,})"
    chosen_peak = dft_peak if form == "depth-first" else lbl_peak
    info.update({
        "s": s, "e": e, "p": a["p"], "h": a["h"], "softmax": a["softmax"].attrs.get("kind") if a["softmax"] is not None else None,
        "form": form, "reason": why,
        "depth_first": None if dft is None else {
            "variant": dft.variant.label, "tiles": dict(dft.evaluation.tiles),
            "est_cycles": dft_cycles, "peak_bytes": dft_peak},
        "layer_by_layer": None if not lbl_ok else {
            "est_cycles": lbl_cycles, "peak_bytes": lbl_peak, "peak_moment": lbl_moment},
        "min_peak_depth_first": None if min_peak is None else {"peak_bytes": min_peak, **min_tiles},
        "peak_ratio_chosen": (round(lbl_peak / chosen_peak, 4) if lbl_peak and chosen_peak else None),
        "peak_ratio_min": (round(lbl_peak / min_peak, 4) if lbl_peak and min_peak else None),
        "counted": ("activation bytes live at the block's peak moment in L1 and L2 together: the "
                    "block input x (kept for the whole block), every intermediate (Q, K, V, score map, "
                    "probabilities, head outputs; int8 since requantization is fused into producers), "
                    "the int32 accumulator, the output once written, tile and chunk buffers with their "
                    "copies and kernel scratch; weights excluded; softmax not in place (the memory "
                    "planner has no in-place reuse)"),
    })
    return info


def _dft_peak(v: Variant, ev: Evaluation, x_bytes: int, y_bytes: int, s: int, e: int) -> int:
    """Depth-first peak: chunk moment (compute-level activations + x and an L2 accumulator in L2)
    and the write-out moment (x + accumulator + output)."""
    acc_l2 = 0 if v.attrs.get("acc_local", True) else s * e * 4
    # x itself lives in L2 (on a target without L1 it is not in the compute-level footprint either)
    chunk = ev.activation_bytes + x_bytes + acc_l2
    writeout = x_bytes + s * e * 4 + y_bytes
    return max(chunk, writeout)


def _lbl_peak(pg: Graph, node: Node, parts: list[tuple[Node, TileResult]]) -> tuple[int, str]:
    """Layer-by-layer peak of the block: at each part, the L2 tensors live (x kept for the whole
    block) plus that layer's compute-level activation buffers."""
    from planner.memory import alias_root
    x = alias_root(pg, node.inputs[0])
    steps = [p for p, _ in parts]
    first: dict[str, int] = {}
    last: dict[str, int] = {}
    for k, p in enumerate(steps):
        for t in p.outputs:
            r = alias_root(pg, t)
            first.setdefault(r, k)
            last[r] = max(last.get(r, k), k)
        for t in p.inputs:
            if t and not pg.tensors[t].is_const:
                r = alias_root(pg, t)
                last[r] = max(last.get(r, k), k)
    first[x] = 0
    last[x] = len(steps) - 1
    best, moment = 0, ""
    for k, (p, r) in enumerate(parts):
        live = sum(_align(pg.tensors[t].nbytes) for t in first if first[t] <= k <= last[t])
        tot = live + r.evaluation.activation_bytes
        if tot > best:
            best, moment = tot, p.name
    return best, moment


# --------------------------------------------------------------------------------- assembly


def _assemble(network, hw, hw0, opts, cores, params, graph, pg, schedule, layers, mem, block_info,
              fwsa_decisions, warnings) -> Plan:
    from planner.memory import alias_map

    level = params.compute_level
    l2 = mem["L2"]
    l1 = mem["L1"]
    l2_off = l2.offsets()
    l1_off = l1.offsets() if l1 is not None else {}
    layer_plans = []
    w_off_l2, w_off_l3 = {}, {}
    cur = _align(l2.peak)
    for name in sorted(mem["w_l2"]):
        w_off_l2[name] = cur
        cur += _align(mem["w_l2"][name])
    runtime_off = cur
    cur3 = 0
    for name in sorted(mem["w_l3"]):
        w_off_l3[name] = cur3
        cur3 += _align(mem["w_l3"][name])
    total_cycles = 0
    for l in layers:
        ev, v = l.result.evaluation, l.result.variant
        bplans = []
        for b in ev.buffers:
            spec = next(s for s in v.buffers if s.name == b.name)
            bname = f"{l.node.name}/{b.name}"
            if not b.present:
                continue
            if b.access == "inplace":
                lv, off, nbytes = spec.home, w_off_l3.get(spec.tensor, 0), spec.full_bytes
            elif b.access == "none" and b.kind not in ("local", "scratch"):
                lv = spec.home
                off = l2_off.get(alias_root_cached(pg, spec.tensor), w_off_l2.get(spec.tensor, 0)) \
                    if spec.tensor else 0
                nbytes = spec.full_bytes
            else:
                lv = level
                off = (l1_off if level == "L1" else l2_off).get(bname, 0)
                nbytes = b.tile_bytes
            staging = None
            if b.staging is not None:
                staging = {"level": b.staging, "offset": l2_off.get(bname + ".stage", 0),
                           "bytes": b.tile_bytes, "copies": b.copies}
            bplans.append(BufferPlan(b.name, spec.tensor, b.kind, lv, off, nbytes, b.copies, spec.home,
                                     b.access, b.loads, b.traffic, staging))
        dims = {d.name: d.size for d in v.loops}
        tile = {level: dict(ev.tiles)}
        if level != "L2":
            tile["L2"] = dict(dims)
        cyc = ev.cycles
        total_cycles += cyc
        layer_plans.append(LayerPlan(
            l.node.name, l.node.op, v.kernel, v.label, v.macs, tile, dims, [d.name for d in v.loops],
            ev.total_tiles, bplans, ev.footprint if level != "L2" else 0, level, ev.dma_bytes, cyc,
            {"compute": -(-ev.compute // SCALE), "dma_hidden": -(-ev.hidden // SCALE),
             "dma_exposed": -(-ev.exposed // SCALE), "overhead": -(-ev.overhead // SCALE)},
            l.result.optimal, l.result.status, l.step, l.parts_of, list(v.notes)))
    # memory section
    memory = {}
    runtime_l2 = mem["runtime_L2"]
    for key, lv in hw.levels.items():
        entry = {"capacity": lv.size, "usable": lv.usable, "display_name": lv.display_name,
                 "addressable": lv.addressable}
        if key == "L1" and l1 is not None:
            peak_layer = max(layer_plans, key=lambda lp: (lp.l1_bytes, lp.name))
            w_part = sum(b.bytes * b.copies for b in peak_layer.buffers
                         if b.level == "L1" and b.kind == "weight")
            entry.update({"peak": l1.peak, "lower_bound": l1.lower_bound, "optimal": l1.optimal,
                          "plan_peak": l1.peak,
                          "breakdown": {"activations": l1.peak - w_part, "weights": w_part, "runtime": 0},
                          "peak_layer": peak_layer.name,
                          "runtime_note": "DMA command buffers and barrier state are inside the "
                                          "hardware model's L1 reserve (size - usable)"})
        elif key == "L2":
            entry.update({"peak": l2.peak + mem["weights_L2"] + runtime_l2,
                          "lower_bound": l2.lower_bound, "optimal": l2.optimal, "solver": l2.solver,
                          "plan_peak": l2.peak,
                          "breakdown": {"activations": l2.peak, "weights": mem["weights_L2"],
                                        "runtime": runtime_l2},
                          "runtime_offset": runtime_off,
                          "placements": {p.name: {"offset": p.offset, "bytes": p.size, "start": p.start,
                                                  "end": p.end} for p in l2.placements},
                          "weights": {k: {"offset": w_off_l2[k], "bytes": mem["w_l2"][k]} for k in sorted(mem["w_l2"])}})
        elif key == "L3":
            w3 = sum(_align(v) for v in mem["w_l3"].values())
            entry.update({"peak": w3, "lower_bound": 0,
                          "breakdown": {"activations": 0, "weights": w3, "runtime": 0},
                          "weights": {k: {"offset": w_off_l3[k], "bytes": mem["w_l3"][k]} for k in sorted(mem["w_l3"])}})
        else:
            entry.update({"peak": 0, "lower_bound": 0, "breakdown": {"activations": 0, "weights": 0, "runtime": 0}})
        if entry["peak"] > lv.usable:
            raise PlannerError(f"{key}: peak {entry['peak']:,} B exceeds the usable {lv.usable:,} B: "
                               f"{entry['peak'] - lv.usable:,} B missing at {key}")
        memory[key] = entry
    if l1 is not None:
        memory["L1"]["placements"] = {p.name: {"offset": p.offset, "bytes": p.size, "step": p.start}
                                      for p in l1.placements}
    params_bytes = sum(mem["w_l2"].values()) + sum(mem["w_l3"].values())
    blocks = []
    from planner.analysis import fwsa_figures
    for name, info in block_info.items():
        f = fwsa_figures(info["s"], info["e"], info["p"], info["h"])
        d = fwsa_decisions.get(name)
        info = dict(info)
        info["fwsa"] = {
            "applied": bool(d.applied) if d else False,
            "reason": d.reason if d else ("--fwsa off" if opts.fwsa == "off" else "not decided"),
            "params_unfused": f.params_unfused, "params_fused": f.params_fused,
            "macs_unfused": f.macs_unfused, "macs_fused": f.macs_fused,
            "param_ratio": round(f.param_ratio, 4), "mac_ratio": round(f.mac_ratio, 4), "pays": f.pays,
        }
        blocks.append(info)
    options = {"dft": opts.dft, "fwsa": opts.fwsa, "l1": opts.l1, "l2": opts.l2, "cores": cores,
               "time_limit": opts.time_limit, "seed": opts.seed}
    hardware = {"name": hw.name, "display_name": hw.display_name, "cores": cores,
                "frequency_hz": hw.frequency_hz, "isa": hw.isa, "compute_level": level,
                "levels": list(hw.levels)}
    estimate = {"cycles": total_cycles, "latency_ms": latency_ms(total_cycles, hw.frequency_hz),
                "params_bytes": params_bytes, "macs": sum(lp.macs for lp in layer_plans),
                "note": "estimated from hw_models figures marked as assumptions until calibrated"}
    aliases = {k: v for k, v in alias_map(pg, schedule).items() if k != v}
    return Plan(FORMAT_VERSION, Path(network).name, hardware, options, memory, layer_plans, blocks,
                estimate, [n.name for n in schedule], aliases, warnings, sorted(hw.assumptions))


_ROOTS: dict[tuple[int, str], str] = {}


def alias_root_cached(g: Graph, t: str) -> str:
    from planner.memory import alias_root
    key = (id(g), t)
    if key not in _ROOTS:
        _ROOTS[key] = alias_root(g, t)
    return _ROOTS[key]
