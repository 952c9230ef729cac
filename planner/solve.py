"""`planner solve`: ONNX + hardware model -> Plan (tiles, static memory plan, estimates).

Pipeline: load graph -> FWSA per MHSA block (--fwsa; priced like for like on the depth-first
tilings of both forms) -> depth-first or layer-by-layer per block (--dft; the rule in
docs/plan-format.md) -> schedule (compute nodes; layout nodes are aliases) -> per layer:
description (planner.tiling.ops) -> the generic CP-SAT tiler (planner.tiling.solver, on the
candidate table of planner.tiling.table) -> static memory plan per level (planner.memory) ->
weights in L2 when they fit, else L3 -> FWSA deviation (golden model) -> Plan (planner.plan).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field
from math import prod
from pathlib import Path

import numpy as np

from codegen.abi import runtime_bytes
from planner.cost import (SCALE, CostParams, Evaluation, estimate_uncertainty, evaluate, hw_fields,
                          latency_ms)
from planner.errors import PlannerError, UsageError
from planner.hw import HardwareModel, load_hw_model, with_overrides
from planner.ir import LAYOUT_OPS, Graph, Node
from planner.plan import FORMAT_VERSION, BufferPlan, LayerPlan, Plan, param_blob_name
from planner.tiling.desc import LayerDesc, Variant, prune_candidates
from planner.tiling.ops import BuildContext, describe
from planner.tiling.solver import TileResult, solve_variant
from planner.tiling.table import Table, build_table

ALIGN = 4
WEIGHT_ROUNDS = 6    # weights-to-L3 streaming rounds before giving up


@dataclass
class SolveOptions:
    dft: str = "auto"
    fwsa: str = "off"   # API default kept (callers' baselines); `planner solve` defaults to auto
    l1: int | None = None
    l2: int | None = None
    cores: int | None = None
    time_limit: float = 10.0
    seed: int = 0
    input_shapes: dict | None = None
    inputs: str | Path | None = None   # npz (arrays by position) for the FWSA deviation
    fwsa_samples: int = 4              # seeded random samples for the deviation without inputs
    int16: str = "off"                 # QDQ int16 residual stream: auto | off | TENSOR,...


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
    from planner.tiling.solver import aligned_footprint as af
    return af(ev, ALIGN)


# ------------------------------------------------------------------------------------ tiling


class Tiler:
    """Describe and tile layers. A variant's candidate table (its Pareto front of tiling choices) is
    built once per problem signature; a solve is cached per signature and set of front points that
    fit the capacities (the answer depends on nothing else), so identical layers, other loop-order
    variants of the same shape and repeated capacities cost one CP-SAT call."""

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
            self.cache[key] = solve_variant(self.params, pv, capacity, staging_cap, self.time_limit,
                                            self.seed, ALIGN, table=tab)
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


def _infeasible(tiler: Tiler, desc: LayerDesc, node: Node, level: str, capacity: int,
                held: str = "") -> PlannerError:
    """`held`: when the layer gets less than the level's usable bytes, what holds the rest
    (e.g. "1,310,720 B usable minus 12,000 B of live activations ...")."""
    ev, v = tiler.smallest(desc)
    tiles = ", ".join(f"{k}={t}" for k, t in ev.tiles.items()) or "untiled"
    if ev.footprint <= capacity:  # the smallest tiling fits the level: staging or the solver failed
        return PlannerError(
            f"layer {node.name} ({node.op}): no tiling found although the smallest one "
            f"({ev.footprint:,} B, {v.label}; tiles {tiles}) fits the {capacity:,} B of {level}: "
            f"either its L2 staging buffers ({ev.staging:,} B) do not fit beside the rest, or the "
            f"tiler's time limit ({tiler.time_limit} deterministic units) was too short (raise "
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


def solve(network: str | Path, hw_spec: str | Path, opts: SolveOptions | None = None) -> Solution:
    from planner.frontend import load_graph

    opts = opts or SolveOptions()
    if opts.dft not in ("auto", "on", "off"):
        raise UsageError(f"--dft must be auto, on or off, got {opts.dft!r}")
    if opts.fwsa not in ("auto", "on", "off"):
        raise UsageError(f"--fwsa must be auto, on or off, got {opts.fwsa!r}")
    if opts.fwsa == "on" and opts.dft == "off":
        raise UsageError("--fwsa on needs depth-first MHSA blocks (the FWSA kernel is depth-first; "
                         "--dft off plans every block layer by layer): use --dft auto or on")
    if not (math.isfinite(opts.time_limit) and opts.time_limit > 0):
        raise UsageError(f"--time-limit must be a finite number > 0, got {opts.time_limit}")
    if not 0 <= opts.seed < 2**31:
        raise UsageError(f"--seed must be an integer from 0 to {2**31 - 1}, got {opts.seed}")
    if opts.fwsa_samples < 1:
        raise UsageError(f"FWSA deviation samples must be at least 1, got {opts.fwsa_samples}")
    hw0 = load_hw_model(hw_spec)
    if opts.l1 is not None and not hw0.has_level("L1"):
        raise UsageError(f"--l1: hardware model '{hw0.name}' has no L1 (its levels: {', '.join(hw0.levels)})")
    hw = with_overrides(hw0, l1=opts.l1, l2=opts.l2) if (opts.l1 or opts.l2) else hw0
    cores = _check_cores(hw, opts.cores)
    graph = load_graph(network, opts.input_shapes, int16=opts.int16)
    inputs = None
    warnings: list[str] = []
    if opts.inputs is not None:
        from planner.golden.io import load_npz_inputs
        inputs = load_npz_inputs(graph, opts.inputs, notes=warnings)
    params = CostParams.from_hw(hw, cores)
    level = params.compute_level
    if "L2" not in hw.levels:
        raise PlannerError(f"hardware model '{hw.name}' has no L2: the planner keeps activations in L2")
    ctx = BuildContext(graph, params, hw.isa, level)
    tiler = Tiler(params, hw, opts.time_limit, opts.seed)
    l2_usable = hw.levels["L2"].usable
    cap_c = hw.levels[level].usable
    cap_blk = cap_c if level != "L2" else l2_usable
    stage_cap = None if level == "L2" else l2_usable

    # --- MHSA blocks: FWSA per block (like for like: depth-first fused vs depth-first standard)
    blocks = [n for n in graph.nodes if n.op == "MHSA"]
    fwsa_decisions: dict = {}
    if blocks and opts.fwsa != "off":
        fwsa_decisions = _decide_fwsa(graph, opts.fwsa, opts.dft, ctx, tiler, cap_blk, stage_cap)
    # --- then depth-first or layer by layer (--dft), each block in its decided form
    block_info = {b.name: _block_forms(graph, b, ctx, tiler, cap_blk, l2_usable) for b in blocks}
    unfused = _choose_forms(graph, blocks, block_info, opts, hw, params, tiler, cap_c, l2_usable,
                            fwsa_decisions)
    for b in blocks:  # the FWSA kernel is depth-first: a block planned layer by layer runs unfused
        d = fwsa_decisions.get(b.name)
        if b.name in unfused and d is not None and d.applied:
            from planner.transforms.fwsa import unfuse_qk
            unfuse_qk(graph, b)
            fwsa_decisions[b.name] = dataclasses.replace(
                d, applied=False, reason=f"{d.reason}; not applied: the block is planned layer by layer "
                "(layer-by-layer has no FWSA form)")

    # --- weights home: L2 if they fit beside the activations, else L3
    weight_home: dict[str, str] = {}
    for attempt in range(WEIGHT_ROUNDS):
        ctx = BuildContext(_planning_graph(graph, unfused), params, hw.isa, level, weight_home=weight_home)
        pg = ctx.graph
        schedule = [n for n in pg.nodes if n.op not in LAYOUT_OPS]
        try:
            layers = _tile_all(ctx, tiler, schedule, level, cap_c, l2_usable, graph, unfused)
        except _WeightsOverflow as exc:  # compute level L2: the weights leave no room for a layer
            over = exc.over
        else:
            mem = _memory(ctx, hw, layers, schedule, weight_home, opts)
            over = mem["L2_need"] - l2_usable
            if over <= 0:
                break
            if "L3" not in hw.levels:
                raise PlannerError(
                    f"L2: activations ({mem['L2'].peak:,} B) + weights ({mem['weights_L2']:,} B) + runtime "
                    f"({mem['runtime_L2']:,} B) need {mem['L2_need']:,} B but L2 has {l2_usable:,} B usable: "
                    f"{over:,} B missing at L2 (no L3 to stream weights from)")
        moved = _stream_weights(pg, weight_home, over) if "L3" in hw.levels else []
        if not moved:
            raise PlannerError(
                f"L2: {over:,} B missing at L2 ({l2_usable:,} B usable) even with every weight streamed "
                "from L3" if "L3" in hw.levels else
                f"L2: the weights leave {over:,} B too few for the activations ({l2_usable:,} B usable; "
                "no L3 to stream weights from)")
        warnings.append(f"weights streamed from L3 (do not fit L2): {', '.join(sorted(moved))}")
    else:
        streamed = sum(1 for h in weight_home.values() if h == "L3")
        hint = ("Give more L2 (--l2), or less L1 (--l1: weights streamed to L1 through L2 need L2 "
                "staging buffers, smaller tiles smaller ones)" if level == "L1" else "Give more L2 (--l2)")
        raise PlannerError(
            f"L2: weights placement did not converge in {WEIGHT_ROUNDS} round(s) of streaming weights "
            f"to L3 ({streamed} streamed): in round {WEIGHT_ROUNDS}, {over:,} B missing at L2 "
            f"({l2_usable:,} B usable). {hint}")

    for l in layers:
        if not l.result.optimal:
            warnings.append(f"layer {l.node.name}: tiler time limit reached ({opts.time_limit} "
                            "deterministic units): best tiling found, not proven optimal")
        for note in l.desc.variants[0].notes:
            warnings.append(f"layer {l.node.name}: {note}")
    deviation = _fwsa_deviation(graph, fwsa_decisions, inputs, opts) if fwsa_decisions else None
    plan = _assemble(network, hw, hw0, opts, cores, params, graph, pg, schedule, layers, mem,
                     block_info, fwsa_decisions, deviation, warnings)
    return Solution(plan, graph, hw)


# ------------------------------------------------------------------------------------- FWSA


def _decide_fwsa(graph: Graph, mode: str, dft_mode: str, ctx: BuildContext, tiler: Tiler, cap: int,
                 stage_cap: int | None) -> dict:
    """FWSA per MHSA block (planner.transforms.fwsa.apply_fwsa), priced by the cost model.

    The fused form exists only as a depth-first kernel, so it is compared like for like: the
    estimated cycles of the block's depth-first tiling in the fused form against the standard
    form. auto applies it only where it lowers the estimated cycles AND the parameters (apply_fwsa
    with a cost_fn keeps it where the cycles drop; the parameter condition is checked here).
    """
    from planner.transforms.fwsa import FwsaDecision, apply_fwsa, fwsa_node_figures, unfuse_qk

    def cost_fn(g: Graph, node: Node) -> float:
        r = tiler.best(describe(ctx, node), cap, stage_cap)
        return float("inf") if r is None else float(r.evaluation.cycles)

    nodes = {n.name: n for n in graph.nodes if n.op == "MHSA"}
    if mode == "auto" and dft_mode == "off":
        return {name: FwsaDecision(name, False, "--dft off: layer-by-layer has no FWSA form",
                                   *fwsa_node_figures(n)) for name, n in nodes.items()}
    if mode == "on":
        before = {name: cost_fn(graph, n) for name, n in nodes.items()}
        out = {}
        for d in apply_fwsa(graph, "on"):
            after = cost_fn(graph, nodes[d.node]) if d.applied else None
            out[d.node] = dataclasses.replace(d, cost_before=before[d.node], cost_after=after)
        return out
    out = {}
    for d in apply_fwsa(graph, "auto", cost_fn=cost_fn):
        if d.cost_before is not None:  # priced: say it with the figures that decided
            cyc = f"estimated cycles {_num(d.cost_before)} -> {_num(d.cost_after)} (depth-first)"
            par = f"parameters {d.params_before:,} -> {d.params_after:,}"
            if not d.applied:
                reason = f"no cycle gain: {cyc}"
            elif not d.params_after < d.params_before:
                unfuse_qk(graph, nodes[d.node])
                reason = f"fewer cycles but not fewer parameters: {cyc}, {par}"
            else:
                reason = f"lowers both: {cyc}, {par}"
            d = dataclasses.replace(d, applied=d.applied and d.params_after < d.params_before,
                                    reason=f"auto: {reason}")
        out[d.node] = d
    return out


def _num(c: float | None) -> str:
    return "-" if c is None else ("does not fit" if c == float("inf") else f"{int(c):,}")


def _fwsa_deviation(graph: Graph, decisions: dict, inputs: list | None, opts: SolveOptions) -> dict | None:
    """Fused vs unfused integer model (the same graph run in both forms by the golden model), per
    FWSA block and for the network, in LSB: the softmax output (without softmax: the scores that
    feed ·V) and the block output; on --inputs, else on seeded random inputs. The network figures
    are those of planner.transforms.fwsa.fwsa_deviation (tests/test_solve_fwsa.py checks it)."""
    from planner.ir import DTYPE_RANGES
    from planner.transforms.fwsa import run_with_probes

    fused = [n for n in graph.nodes if n.op == "MHSA" and n.name in decisions and decisions[n.name].applied]
    if not fused:
        return None
    if inputs is not None:
        samples = [inputs]
        source = f"--inputs {Path(opts.inputs).name}"
    else:
        rng = np.random.default_rng(opts.seed)
        samples = []
        for _ in range(opts.fwsa_samples):
            sample = []
            for name in graph.inputs:
                t = graph.tensors[name]
                lo, hi = DTYPE_RANGES.get(t.dtype, (-128, 127))
                lo, hi = max(lo, -128), min(hi, 255)  # an int8/uint8 range for wider inputs
                sample.append(rng.integers(lo, hi + 1, size=t.shape, dtype=np.int64))
            samples.append(sample)
        source = (f"{opts.fwsa_samples} seeded random input{'s' if opts.fwsa_samples > 1 else ''} "
                  f"(uniform over each graph input's integer range, seed {opts.seed})")
    acc = {n.name: {"softmax": _Dev(), "scores": _Dev(), "block": _Dev()} for n in fused}
    net = {"softmax": _Dev(), "scores": _Dev(), "block": _Dev(), "output": _Dev()}
    all_mhsa = [n for n in graph.nodes if n.op == "MHSA"]
    for sample in samples:
        env0, pr0 = run_with_probes(graph, sample, use_fwsa=False)
        env1, pr1 = run_with_probes(graph, sample, use_fwsa=None)
        for n in all_mhsa:
            p0, p1 = pr0[n.name], pr1[n.name]
            s0, s1 = p0["scores"], p1["scores"]
            if n.attrs["softmax"] is not None:  # what the softmax sees: x - max_row(x)
                s0 = s0 - s0.max(axis=-1, keepdims=True)
                s1 = s1 - s1.max(axis=-1, keepdims=True)
            for key, u, v in (("softmax", p0["probs"], p1["probs"]), ("scores", s0, s1),
                              ("block", env0[n.outputs[0]], env1[n.outputs[0]])):
                net[key].add(u, v)
                if n.name in acc:
                    acc[n.name][key].add(u, v)
        for o in graph.outputs:
            net["output"].add(env0[o], env1[o])
    return {"inputs": source, "samples": len(samples),
            "blocks": {name: _dev_dict(d) for name, d in acc.items()},
            "network": _dev_dict(net)}


class _Dev:
    """max / mean |Δ| in LSB and the fraction of differing elements (as fwsa_deviation counts)."""

    def __init__(self) -> None:
        self.max, self.diff, self.total, self.abs_sum = 0, 0, 0, 0

    def add(self, a, b) -> None:
        d = np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64))
        if d.size:
            self.max = max(self.max, int(d.max()))
        self.diff += int(np.count_nonzero(d))
        self.total += int(d.size)
        self.abs_sum += int(d.sum())


def _dev_dict(d: dict) -> dict:
    out = {}
    for key, v in d.items():
        out[f"{key}_max_abs_lsb"] = v.max
        out[f"{key}_mean_abs_lsb"] = v.abs_sum / v.total if v.total else 0.0
        out[f"{key}_mismatch_fraction"] = v.diff / v.total if v.total else 0.0
    return out


class _WeightsOverflow(Exception):
    """Compute level L2: the resident weights leave a layer too little room (stream weights)."""

    def __init__(self, over: int):
        super().__init__(over)
        self.over = over


def _tile_all(ctx: BuildContext, tiler: Tiler, schedule: list[Node], level: str, cap_c: int,
              l2_usable: int, graph: Graph, unfused: set[str], memo: dict | None = None) -> list[_Layer]:
    """Tile every scheduled layer. `memo` (node name -> description) reuses descriptions between
    calls with the same weight homes (the --dft rule plans the network once per option)."""
    parts_of = {}
    for n in graph.nodes:
        if n.op == "MHSA" and n.name in unfused:
            for p in n.parts:
                parts_of[p.name] = n.name
    live = _live_bytes(ctx.graph, schedule) if level == "L2" else None
    wl2 = sum(t.nbytes for name, t in ctx.graph.tensors.items()
              if t.is_const and ctx.whome(name) == "L2" and name in _used_consts(ctx.graph, schedule)) \
        if level == "L2" else 0
    layers = []
    for k, node in enumerate(schedule):
        if memo is not None and node.name in memo:
            desc = memo[node.name]
        else:
            desc = describe(ctx, node)
            if memo is not None:
                memo[node.name] = desc
        if level == "L2":
            cap = l2_usable - live[k] - wl2
        else:
            cap = cap_c
        r = tiler.best(desc, cap, l2_usable if level != "L2" else None)
        if r is None:
            if level == "L2" and wl2:
                need = tiler.smallest(desc)[0].footprint
                if need <= cap + wl2:  # it fits once weights leave L2
                    raise _WeightsOverflow(need - cap)
            held = (f"{l2_usable:,} B usable minus {live[k]:,} B of live activations and {wl2:,} B "
                    "of resident weights") if level == "L2" else ""
            raise _infeasible(tiler, desc, node, level, cap, held)
        layers.append(_Layer(node, desc, r, k, parts_of.get(node.name)))
    return layers


def _used_consts(graph: Graph, schedule: list[Node]) -> set[str]:
    return {t for n in schedule if n.op not in LAYOUT_OPS for t in n.inputs
            if t and graph.tensors.get(t) is not None and graph.tensors[t].is_const}


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


def _l2_figures(ctx: BuildContext, layers: list[_Layer], schedule: list[Node],
                weight_home: dict[str, str]) -> dict:
    """What L2 holds: activation buffers with lifetimes (tensors plus per-step extras: L2
    accumulators, staged weight tiles, and on targets without L1 every layer's tile buffers), the
    L1 tile buffers, the weights per home and the runtime bytes."""
    from planner.memory import Buffer, activation_buffers

    level = ctx.level
    g = ctx.graph
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
    # constants that are not graph tensors (requantization vectors, softmax tables) have a home too
    for l in layers:
        for spec in l.result.variant.buffers:
            if spec.kind == "weight" and spec.tensor is None and spec.full_bytes:
                weights[param_blob_name(l.node.name, spec.name)] = spec.full_bytes
    w_l2 = {k: v for k, v in weights.items() if weight_home.get(k, "L2") == "L2"}
    w_l3 = {k: v for k, v in weights.items() if weight_home.get(k, "L2") == "L3"}
    # the generated code's tables (codegen/abi.py): a descriptor per layer and per buffer
    runtime_l2 = runtime_bytes([sum(1 for b in l.result.evaluation.buffers if b.present) for l in layers])
    bufs = activation_buffers(g, schedule, extra={k: v for k, v in extra.items() if v}, alignment=ALIGN)
    return {"bufs": bufs, "l1_bufs": l1_bufs, "w_l2": w_l2, "w_l3": w_l3,
            "weights_L2": sum(_align(v) for v in w_l2.values()), "runtime_L2": runtime_l2}


def _memory(ctx: BuildContext, hw: HardwareModel, layers: list[_Layer], schedule: list[Node],
            weight_home: dict[str, str], opts: SolveOptions) -> dict:
    from planner.memory import plan_level

    f = _l2_figures(ctx, layers, schedule, weight_home)
    step_names = [n.name for n in schedule]
    l2 = plan_level(f["bufs"], "L2", capacity=None, time_limit=min(opts.time_limit, 5.0), seed=opts.seed,
                    step_names=step_names)
    l1 = None
    if ctx.level == "L1":
        l1 = plan_level(f["l1_bufs"], "L1", capacity=hw.levels["L1"].usable,
                        time_limit=min(opts.time_limit, 5.0), seed=opts.seed, step_names=step_names)
    need = _align(l2.peak) + f["weights_L2"] + f["runtime_L2"]
    return {"L2": l2, "L1": l1, "weights_L2": f["weights_L2"], "w_l2": f["w_l2"], "w_l3": f["w_l3"],
            "runtime_L2": f["runtime_L2"], "L2_need": need, "buffers_L2": f["bufs"]}


# ------------------------------------------------------------------------------ MHSA blocks


def _block_forms(graph: Graph, node: Node, ctx: BuildContext, tiler: Tiler, cap: int, l2_cap: int) -> dict:
    """Tile the block depth-first (one fused node, in its FWSA form when it has one) and layer by
    layer (its standard parts); count both peaks the same way. The choice is _choose_forms'."""
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
    min_peak, min_tiles = _min_peak_dft(tiler, dft_desc, cap, stage_cap, x_bytes, y_bytes, s, e)
    fields: set[str] = set()
    for v in dft_desc.variants + [v for _, _, d in lbl for v in d.variants]:
        fields |= hw_fields(tiler.params, v)
    return {
        "node": node.name,
        "s": s, "e": e, "p": a["p"], "h": a["h"],
        "softmax": a["softmax"].attrs.get("kind") if a["softmax"] is not None else None,
        "form": None, "reason": None,
        "depth_first": None if dft is None else {
            "variant": dft.variant.label, "tiles": dict(dft.evaluation.tiles),
            "est_cycles": dft_cycles, "peak_bytes": dft_peak},
        "layer_by_layer": None if not lbl_ok else {
            "est_cycles": lbl_cycles, "peak_bytes": lbl_peak, "peak_moment": lbl_moment},
        "min_peak_depth_first": None if min_peak is None else {"peak_bytes": min_peak, **min_tiles},
        "peak_ratio_chosen": None,
        "peak_ratio_min": (round(lbl_peak / min_peak, 4) if lbl_peak and min_peak else None),
        "counted": ("activation bytes live at the block's peak moment in L1 and L2 together: the "
                    "block input x (kept for the whole block), every intermediate (Q, K, V, score map, "
                    "probabilities, head outputs; int8 since requantization is fused into producers), "
                    "the int32 accumulator, the output once written, tile and chunk buffers with their "
                    "copies and kernel scratch; weights excluded; softmax not in place (the memory "
                    "planner has no in-place reuse)"),
        "_dft_desc": dft_desc, "_lbl": lbl, "_cap": cap, "_fields": fields,
    }


def _choose_forms(graph: Graph, blocks: list[Node], block_info: dict, opts: SolveOptions,
                  hw: HardwareModel, params: CostParams, tiler: Tiler, cap_c: int, l2_usable: int,
                  fwsa_decisions: dict) -> set[str]:
    """Depth-first or layer by layer per block; returns the blocks planned layer by layer.

    --dft auto (docs/plan-format.md, "The --dft auto rule"), blocks in graph order, the blocks
    not yet decided taken depth-first:
      1. a form whose layers do not all tile into the compute level is out;
      2. a form with which the network does not fit L2 (its L2 need: activation lower bound +
         resident weights + runtime > usable) is out, if the other fits;
      3. if one form's estimated cycles are lower beyond the cost model's stated uncertainty u
         (slower > (1 + u) x faster), it is chosen;
      4. else (within u) the lower memory: the network's L2 need, then the block's peak; then
         fewer cycles; then depth-first.
    """
    level = params.compute_level
    unfused = {b.name for b in blocks if block_info[b.name]["depth_first"] is None}
    memo: dict[str, LayerDesc] = {}
    for b in blocks:
        info = block_info[b.name]
        dft, lbl = info["depth_first"], info["layer_by_layer"]
        fused = b.name in fwsa_decisions and fwsa_decisions[b.name].applied
        rule: dict = {}
        if dft is None and lbl is None:
            raise _infeasible(tiler, info["_dft_desc"], b, level, info["_cap"])
        if opts.dft == "on":
            if dft is None:
                raise _infeasible(tiler, info["_dft_desc"], b, level, info["_cap"])
            form, why = "depth-first", "--dft on"
        elif opts.dft == "off":
            if lbl is None:
                bad = next((p, d) for p, r, d in info["_lbl"] if r is None)
                raise _infeasible(tiler, bad[1], bad[0], level, info["_cap"])
            form, why = "layer-by-layer", "--dft off"
        elif dft is None or lbl is None:
            form = "layer-by-layer" if dft is None else "depth-first"
            other = "depth-first" if dft is None else "layer-by-layer"
            why = f"{other} does not fit {level} (a layer's smallest tiling exceeds it)"
            rule["decided_by"] = "fit"
        else:
            u = estimate_uncertainty(hw, info["_fields"])
            need_d = _network_l2_need(graph, unfused - {b.name}, params, hw, tiler, cap_c, l2_usable, memo)
            need_l = _network_l2_need(graph, unfused | {b.name}, params, hw, tiler, cap_c, l2_usable, memo)
            cd, cl = dft["est_cycles"], lbl["est_cycles"]
            fit_d = need_d is not None and need_d <= l2_usable
            fit_l = need_l is not None and need_l <= l2_usable
            rule.update({"uncertainty": u, "cycles_ratio": round(cd / cl, 4) if cl else None,
                         "network_l2_need": {"depth_first": need_d, "layer_by_layer": need_l},
                         "l2_usable": l2_usable})

            def nb(n):
                return "does not fit" if n is None else f"{n:,} B"
            if fit_d != fit_l:
                form = "depth-first" if fit_d else "layer-by-layer"
                bad = "layer-by-layer" if fit_d else "depth-first"
                why = (f"with {bad} the network does not fit L2 (L2 need {nb(need_l if fit_d else need_d)} "
                       f"> {l2_usable:,} B usable; {form}: {nb(need_d if fit_d else need_l)})")
                rule["decided_by"] = "L2 fit"
            elif max(cd, cl) > (1 + u) * min(cd, cl):
                form = "depth-first" if cd < cl else "layer-by-layer"
                why = (f"fewer estimated cycles beyond the cost model's uncertainty ({min(cd, cl):,} vs "
                       f"{max(cd, cl):,}: {max(cd, cl) / min(cd, cl):.3f}x > 1 + {u:g})")
                rule["decided_by"] = "cycles"
            else:
                key_d = (need_d if need_d is not None else 1 << 62, dft["peak_bytes"])
                key_l = (need_l if need_l is not None else 1 << 62, lbl["peak_bytes"])
                within = (f"cycles within the cost model's uncertainty ({cd:,} vs {cl:,}: ratio "
                          f"{cd / cl:.3f}, ±{u:g})")
                if key_d != key_l:
                    form = "depth-first" if key_d < key_l else "layer-by-layer"
                    if key_d[0] != key_l[0]:
                        what = f"network L2 need {nb(need_d)} vs {nb(need_l)} layer by layer"
                        if form == "layer-by-layer":
                            what = f"network L2 need {nb(need_l)} vs {nb(need_d)} depth-first"
                    else:
                        pk = (dft["peak_bytes"], lbl["peak_bytes"]) if form == "depth-first" else \
                            (lbl["peak_bytes"], dft["peak_bytes"])
                        what = (f"same network L2 need ({nb(need_d)}), block peak {pk[0]:,} B vs {pk[1]:,} B")
                    why = f"{within}; lower memory: {what}"
                    rule["decided_by"] = "memory"
                else:
                    form = "depth-first" if cd <= cl else "layer-by-layer"
                    why = f"{within}, same memory: {'fewer cycles' if cd != cl else 'depth-first on a tie'}"
                    rule["decided_by"] = "cycles (same memory)"
        if form == "layer-by-layer" and fused and opts.fwsa == "on" and dft is not None:
            form, why = "depth-first", f"--fwsa on: the FWSA kernel is depth-first (the rule alone: {why})"
        info["form"], info["reason"], info["rule"] = form, why, rule or None
        if form == "layer-by-layer":
            unfused.add(b.name)
        else:
            unfused.discard(b.name)
        chosen_peak = (dft or {}).get("peak_bytes") if form == "depth-first" else (lbl or {}).get("peak_bytes")
        lp = (lbl or {}).get("peak_bytes")
        info["peak_ratio_chosen"] = round(lp / chosen_peak, 4) if lp and chosen_peak else None
    return unfused


def _network_l2_need(graph: Graph, unfused: set[str], params: CostParams, hw: HardwareModel, tiler: Tiler,
                     cap_c: int, l2_usable: int, memo: dict) -> int | None:
    """L2 the whole network needs with the MHSA blocks in `unfused` layer by layer: the activation
    lower bound (largest sum of live bytes at one step, which the static plan reaches within a
    few percent) + weights (all resident) + runtime; None if some layer does not tile."""
    from planner.memory import lower_bound

    level = params.compute_level
    ctx = BuildContext(_planning_graph(graph, unfused), params, hw.isa, level)
    schedule = [n for n in ctx.graph.nodes if n.op not in LAYOUT_OPS]
    try:
        layers = _tile_all(ctx, tiler, schedule, level, cap_c, l2_usable, graph, unfused, memo)
    except (PlannerError, _WeightsOverflow):
        return None
    f = _l2_figures(ctx, layers, schedule, {})
    return lower_bound(f["bufs"]) + f["weights_L2"] + f["runtime_L2"]


def _min_peak_dft(tiler: Tiler, desc: LayerDesc, cap: int, stage_cap: int | None, x_bytes: int,
                  y_bytes: int, s: int, e: int) -> tuple[int | None, dict | None]:
    """The lowest depth-first peak over every tile choice that fits (single buffers), from the
    variants' candidate tables (exact: a pruned tile size has a smaller one with the same tile count,
    a smaller footprint and a peak no higher)."""
    best: tuple | None = None
    for v in desc.variants:
        _, pv, tab = tiler.table(v, stage_cap)
        if tab is None:  # pragma: no cover - MHSA tables are small
            continue
        acc_l2 = 0 if pv.attrs.get("acc_local", True) else s * e * 4
        peak = np.maximum(tab.single_activation + x_bytes + acc_l2, x_bytes + s * e * 4 + y_bytes)
        ok = tab.single_footprint <= cap
        if not ok.any():
            continue
        i = int(np.argmin(np.where(ok, peak, np.iinfo(np.int64).max)))
        if best is None or int(peak[i]) < best[0]:
            t = tab.tiles(i)
            best = (int(peak[i]), {"h": t["h"], "x": t["x"], "variant": v.label})
    return (None, None) if best is None else best


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
              fwsa_decisions, deviation, warnings) -> Plan:
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
                    if spec.tensor else w_off_l2.get(param_blob_name(l.node.name, b.name), 0)
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
            entry.update({"peak": runtime_off + runtime_l2,
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
    for name, info in block_info.items():
        info = {k: v for k, v in info.items() if not k.startswith("_")}
        d = fwsa_decisions.get(name)
        if d is None:
            from planner.transforms.fwsa import fwsa_node_figures
            node = next(n for n in graph.nodes if n.name == name)
            pb, pa, mb, ma = fwsa_node_figures(node)
            applied, reason, cb, ca = False, "--fwsa off", None, None
        else:
            pb, pa, mb, ma = d.params_before, d.params_after, d.macs_before, d.macs_after
            applied, reason, cb, ca = d.applied, d.reason, d.cost_before, d.cost_after
        info["fwsa"] = {
            "applied": bool(applied), "reason": reason,
            "form": "fused-weight (FWSA)" if applied else "standard (W_Q, W_K)",
            "params_unfused": pb, "params_fused": pa, "macs_unfused": mb, "macs_fused": ma,
            "param_ratio": round(pa / pb, 4), "mac_ratio": round(ma / mb, 4), "pays": pa < pb and ma < mb,
            "cycles_standard": None if cb is None or cb == float("inf") else int(cb),
            "cycles_fused": None if ca is None or ca == float("inf") else int(ca),
            "deviation": (deviation or {}).get("blocks", {}).get(name) if applied else None,
        }
        blocks.append(info)
    fwsa = None
    if deviation is not None:
        fwsa = {"inputs": deviation["inputs"], "samples": deviation["samples"],
                "blocks": sorted(deviation["blocks"]), "deviation": deviation["network"],
                "note": ("fused (FWSA) vs unfused integer model, golden model, in LSB; softmax: the "
                         "probabilities (without softmax: the scores feeding .V); block: the MHSA "
                         "output; output: the graph outputs; end to end over all blocks")}
    options = {"dft": opts.dft, "fwsa": opts.fwsa, "int16": opts.int16,
               "l1": opts.l1, "l2": opts.l2, "cores": cores,
               "time_limit": opts.time_limit, "seed": opts.seed,
               "inputs": None if opts.inputs is None else Path(opts.inputs).name,
               "fwsa_samples": opts.fwsa_samples}
    hardware = {"name": hw.name, "display_name": hw.display_name, "cores": cores,
                "frequency_hz": hw.frequency_hz, "isa": hw.isa, "compute_level": level,
                "levels": list(hw.levels)}
    estimate = {"cycles": total_cycles, "latency_ms": latency_ms(total_cycles, hw.frequency_hz),
                "params_bytes": params_bytes, "macs": sum(lp.macs for lp in layer_plans),
                "note": "estimated from hw_models figures marked as assumptions until calibrated"}
    aliases = {k: v for k, v in alias_map(pg, schedule).items() if k != v}
    return Plan(FORMAT_VERSION, Path(network).name, hardware, options, memory, layer_plans, blocks,
                estimate, [n.name for n in schedule], aliases, warnings, sorted(hw.assumptions), fwsa,
                network_source(network, opts.input_shapes))


def network_source(network, input_shapes) -> dict:
    """Where the planned network came from, so that its deployed form can be rebuilt (the
    reference of `planner run`): the resolved path and the SHA-256 of the file's bytes."""
    import hashlib
    p = Path(network).resolve()
    return {"path": str(p), "sha256": hashlib.sha256(p.read_bytes()).hexdigest(),
            "input_shapes": {k: list(v) for k, v in sorted((input_shapes or {}).items())}}


_ROOTS: dict[tuple[int, str], str] = {}


def alias_root_cached(g: Graph, t: str) -> str:
    from planner.memory import alias_root
    key = (id(g), t)
    if key not in _ROOTS:
        _ROOTS[key] = alias_root(g, t)
    return _ROOTS[key]
