"""Where every layer's tiles, every activation and every weight go.

Given the graph with each MHSA block in its decided form: tile every scheduled layer into the
compute level (`tile_all`), count what L2 must hold (`l2_figures`: activation lifetimes, per-step
extras such as L2 accumulators and staged weight tiles, weights per home, runtime bytes), plan the
memory of each level statically (`plan_memory`, planner.memory), and keep the weights in L2 while
they fit beside the activations, streaming the largest from L3 otherwise (`place_network`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from codegen.abi import runtime_bytes
from planner.cost import CostParams
from planner.errors import PlannerError
from planner.hw import HardwareModel
from planner.ir import LAYOUT_OPS, Graph, Node
from planner.memory import Buffer, activation_buffers, lower_bound, plan_level
from planner.plan import param_blob_name
from planner.tiling.desc import LayerDesc
from planner.tiling.ops import BuildContext, describe
from planner.tiling.solver import TileResult
from planner.tiling.tiler import ALIGN, Tiler

WEIGHT_ROUNDS = 6    # weight-streaming rounds before giving up (each frees >= 1.25x the overflow)


def align(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


@dataclass
class Target:
    """The hardware a plan is made for, as every step of the pipeline needs it."""

    hw: HardwareModel
    params: CostParams
    tiler: Tiler

    @property
    def level(self) -> str:
        """The compute level (L1, or L2 on targets without L1)."""
        return self.params.compute_level

    @property
    def cap(self) -> int:
        """Usable bytes of the compute level."""
        return self.hw.levels[self.level].usable

    @property
    def l2_usable(self) -> int:
        return self.hw.levels["L2"].usable

    @property
    def stage_cap(self) -> int | None:
        """Bytes a streamed weight tile may be staged in (L2), None when L2 computes."""
        return None if self.level == "L2" else self.l2_usable


@dataclass
class TiledLayer:
    node: Node
    desc: LayerDesc
    result: TileResult
    step: int = -1
    parts_of: str | None = None


@dataclass
class Placed:
    """The network tiled and placed: what plan assembly needs."""

    graph: Graph                 # the planning graph (layer-by-layer blocks replaced by parts)
    level: str                   # the compute level
    schedule: list[Node]
    layers: list[TiledLayer]
    mem: dict                    # plan_memory's figures
    warnings: list[str] = field(default_factory=list)
    weights: dict = field(default_factory=dict)  # weights_home's decision (plan.json `weights`)


def planning_graph(graph: Graph, unfused: set[str]) -> Graph:
    """The graph with the MHSA nodes in `unfused` replaced by their parts (layer-by-layer)."""
    import copy

    nodes = []
    for n in graph.nodes:
        if n.op == "MHSA" and n.name in unfused:
            nodes.extend(n.parts)
        else:
            nodes.append(n)
    g = copy.copy(graph)
    g.nodes = nodes
    return g


class WeightsOverflow(Exception):
    """Compute level L2: the resident weights leave a layer too little room (stream weights)."""

    def __init__(self, over: int):
        super().__init__(over)
        self.over = over


class NoFit(Exception):
    """L2 cannot hold the network even with weights streamed from L3 (message: why)."""

    def __init__(self, message: str, need: int | None):
        super().__init__(message)
        self.need = need


def _weights_loop(graph: Graph, unfused: set[str], target: Target, measure, memo: dict | None = None,
                  home: str | None = None):
    """Tile every layer and measure what L2 needs (`measure(ctx, layers, schedule, weight_home)`
    -> (need, result)) with the constants at `home` (None: the target's default, L3 when it is
    an addressable flash, else L2); while it is more than L2's usable bytes, move the largest
    weights still in L2 to L3 and re-tile (they are then read in place, DMA'd, or staged through
    L2). Returns (planning graph, schedule, layers, result, warnings: one per round); raises
    NoFit. The final plan (place_network) and the --dft rule's L2 fit test (l2_need_streamed)
    use this one loop, so they place the weights alike. `memo` serves the target's default home
    only."""
    hw, params, level, l2_usable = target.hw, target.params, target.level, target.l2_usable
    home = home or params.default_weight_home
    if home != params.default_weight_home:
        memo = None
    warnings: list[str] = []
    weight_home: dict[str, str] = {}
    for _ in range(WEIGHT_ROUNDS):
        ctx = BuildContext(planning_graph(graph, unfused), params, hw.isa, level, weight_home=weight_home,
                           default_weight_home=home)
        pg = ctx.graph
        schedule = [n for n in pg.nodes if n.op not in LAYOUT_OPS]
        need = None
        try:  # descriptions depend on the weight homes: reuse them only while all are in L2
            layers = tile_all(ctx, target.tiler, schedule, target.cap, l2_usable, graph, unfused,
                              memo if not weight_home else None)
        except WeightsOverflow as exc:  # compute level L2: the weights leave no room for a layer
            over = exc.over
        else:
            need, result = measure(ctx, layers, schedule, weight_home)
            over = need - l2_usable
            if over <= 0:
                return pg, schedule, layers, result, warnings
            if "L3" not in hw.levels:
                raise NoFit(f"{result_text(result, need)} but L2 has {l2_usable:,} B usable: "
                            f"{over:,} B missing at L2 (no L3 to stream weights from)", need)
        moved = stream_weights(pg, weight_home, over, home, _used_consts(pg, schedule)) \
            if "L3" in hw.levels else []
        if not moved:
            raise NoFit(
                f"L2: {over:,} B missing at L2 ({l2_usable:,} B usable) even with every weight streamed "
                "from L3" if "L3" in hw.levels else
                f"L2: the weights leave {over:,} B too few for the activations ({l2_usable:,} B usable; "
                "no L3 to stream weights from)", need)
        warnings.append(f"weights {'streamed from' if not hw.levels['L3'].addressable else 'left in'} "
                        f"L3 (do not fit L2): {', '.join(sorted(moved))}")
    streamed = sum(1 for h in weight_home.values() if h == "L3")
    hint = ("Give more L2 (--l2), or less L1 (--l1: weights streamed to L1 through L2 need L2 "
            "staging buffers, smaller tiles smaller ones)" if level == "L1" else "Give more L2 (--l2)")
    raise NoFit(f"L2: weights placement did not converge in {WEIGHT_ROUNDS} round(s) of streaming "
                f"weights to L3 ({streamed} streamed): in round {WEIGHT_ROUNDS}, {over:,} B missing at "
                f"L2 ({l2_usable:,} B usable). {hint}", None)


def result_text(result, need: int) -> str:
    if isinstance(result, dict) and "L2" in result:
        return (f"L2: activations ({result['L2'].peak:,} B) + weights ({result['weights_L2']:,} B) + "
                f"runtime ({result['runtime_L2']:,} B) need {need:,} B")
    return f"L2: the network needs {need:,} B"


def place_network(graph: Graph, unfused: set[str], target: Target, time_limit: float,
                  seed: int, weights: str = "auto") -> Placed:
    """Tile every layer and plan memory, the weights where `weights_home` puts them (--weights):
    in L2 if they fit beside the activations, else the largest in L3 (one warning per round), or
    all in L3."""
    decision = weights_home(graph, unfused, target, weights)

    def measure(ctx, layers, schedule, weight_home):
        mem = plan_memory(ctx, target.hw, layers, schedule, weight_home, time_limit, seed)
        return mem["L2_need"], mem

    try:
        pg, schedule, layers, mem, warnings = _weights_loop(graph, unfused, target, measure,
                                                            home=decision["home"])
    except NoFit as exc:
        raise PlannerError(str(exc)) from None
    placed = Placed(pg, target.level, schedule, layers, mem, warnings)
    placed.weights = decision
    return placed


WEIGHTS_MODES = ("auto", "l2", "l3")


def weights_home(graph: Graph, unfused: set[str], target: Target, mode: str) -> dict:
    """Where the constants go (plan.json `weights`): `l3` all in L3; `l2` in L2 as far as they
    fit beside the activations, the largest in L3 otherwise; `auto` the target's way: GAP9 (L3
    reached by DMA only) as `l2`; a target whose L3 is an addressable flash keeps them there
    (read in place, or DMA'd from it, as vendor tools do) unless copying them to L2 pays: the
    estimate with every weight in L3 exceeds the estimate with them in L2 (as `l2` places them)
    by more than the cost model's stated uncertainty (the --dft rule's test, planner.cost)."""
    from planner.cost import estimate_uncertainty, hw_fields

    params = target.params
    if mode not in WEIGHTS_MODES:
        raise PlannerError(f"--weights must be one of {', '.join(WEIGHTS_MODES)}, got {mode!r}")
    if mode != "auto" or "L3" not in target.hw.levels:
        home = "L3" if mode == "l3" and "L3" in target.hw.levels else "L2"
        return {"mode": mode, "home": home, "reason": f"--weights {mode}" if mode != "auto" else
                "auto: no L3 on this target"}
    if params.default_weight_home == "L2":
        return {"mode": mode, "home": "L2", "reason": f"auto: L3 ({target.hw.levels['L3'].display_name}) "
                "is reached by DMA only: weights in L2 as far as they fit"}
    l3 = target.hw.levels["L3"].display_name

    def measure(ctx, layers, schedule, weight_home):
        f = l2_figures(ctx, layers, schedule, weight_home)
        fields: set[str] = set()
        for l in layers:
            fields |= hw_fields(params, l.result.variant)
        cycles = sum(l.result.evaluation.cycles for l in layers)
        return lower_bound(f["bufs"]) + f["weights_L2"] + f["runtime_L2"], (cycles, f["weights_L2"], fields)

    try:
        *_, (c_in, _, fields_in), _ = _weights_loop(graph, unfused, target, measure, home="L3")
    except (NoFit, PlannerError):  # the final placement reports why
        return {"mode": mode, "home": "L3", "reason": f"auto: weights in {l3}"}
    try:
        *_, (c_l2, copied, fields_l2), _ = _weights_loop(graph, unfused, target, measure, home="L2")
    except (NoFit, PlannerError):
        return {"mode": mode, "home": "L3", "cycles_in_l3": c_in, "cycles_in_l2": None,
                "reason": f"auto: weights in {l3}: the network does not fit L2 with them copied"}
    u = estimate_uncertainty(target.hw, fields_in | fields_l2)
    pays = c_in > (1 + u) * c_l2
    ratio = round(c_in / c_l2, 4) if c_l2 else None
    figures = (f"estimated cycles with the weights in {l3} / copied to L2: {c_in:,} / {c_l2:,} = "
               f"{ratio}, cost-model uncertainty ±{u:g}")
    return {"mode": mode, "home": "L2" if pays else "L3", "cycles_in_l3": c_in, "cycles_in_l2": c_l2,
            "uncertainty": u, "copied_bytes": copied,
            "reason": (f"auto: copied to L2, it pays ({figures})" if pays else
                       f"auto: weights in {l3}, copying them to L2 does not pay beyond the "
                       f"uncertainty ({figures})")}


def l2_need_streamed(graph: Graph, unfused: set[str], target: Target, memo: dict) -> tuple[int | None, int]:
    """What L2 the network needs as the final plan would place its weights (the activation lower
    bound + weights left in L2 + runtime), and how many weights that streams from L3; (None, 0)
    when it does not fit even so, or a layer does not tile."""
    def measure(ctx, layers, schedule, weight_home):
        f = l2_figures(ctx, layers, schedule, weight_home)
        need = lower_bound(f["bufs"]) + f["weights_L2"] + f["runtime_L2"]
        return need, (need, sum(1 for h in weight_home.values() if h == "L3"))

    try:
        *_, (need, streamed), _ = _weights_loop(graph, unfused, target, measure, memo)
    except (NoFit, PlannerError):
        return None, 0
    return need, streamed


def tile_all(ctx: BuildContext, tiler: Tiler, schedule: list[Node], cap_c: int, l2_usable: int,
             graph: Graph, unfused: set[str], memo: dict | None = None) -> list[TiledLayer]:
    """Tile every scheduled layer. `memo` (node name -> description) reuses descriptions between
    calls with the same weight homes (the --dft rule plans the network once per option)."""
    level = ctx.level
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
                    raise WeightsOverflow(need - cap)
            held = (f"{l2_usable:,} B usable minus {live[k]:,} B of live activations"
                    + (f" and {wl2:,} B of resident weights" if wl2 else "")) if level == "L2" else ""
            raise tiler.infeasible(desc, node, level, cap, held)
        layers.append(TiledLayer(node, desc, r, k, parts_of.get(node.name)))
    return layers


def _used_consts(graph: Graph, schedule: list[Node]) -> set[str]:
    return {t for n in schedule if n.op not in LAYOUT_OPS for t in n.inputs
            if t and graph.tensors.get(t) is not None and graph.tensors[t].is_const}


def _live_bytes(graph: Graph, schedule: list[Node]) -> list[int]:
    bufs = activation_buffers(graph, schedule)
    return [sum(b.reserved for b in bufs if b.start <= k <= b.end) for k in range(len(schedule))]


def stream_weights(graph: Graph, weight_home: dict[str, str], over: int, home: str = "L2",
                   used: set[str] | None = None) -> list[str]:
    """Move the largest L2-resident weights (graph tensors the schedule uses, all when `used` is
    None; `home` the default) to L3 until `over` bytes are freed."""
    consts = sorted(((t.nbytes, name) for name, t in graph.tensors.items()
                     if t.is_const and weight_home.get(name, home) == "L2" and t.nbytes > 64
                     and (used is None or name in used)),
                    key=lambda x: (-x[0], x[1]))
    moved, freed = [], 0
    for nbytes, name in consts:
        if freed >= over * 1.25 + 1024:
            break
        weight_home[name] = "L3"
        moved.append(name)
        freed += nbytes
    return moved


def l2_figures(ctx: BuildContext, layers: list[TiledLayer], schedule: list[Node],
               weight_home: dict[str, str]) -> dict:
    """What L2 holds: activation buffers with lifetimes (tensors plus per-step extras: L2
    accumulators, staged weight tiles, and on targets without L1 every layer's tile buffers), the
    L1 tile buffers, the weights per home and the runtime bytes."""
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
                items.append((bname, nbytes, max(ALIGN, b.align)))
            else:
                l1_bufs.append(Buffer(bname, nbytes, l.step, l.step, max(ALIGN, b.align)))
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
    w_l2 = {k: v for k, v in weights.items() if ctx.whome(k) == "L2"}
    w_l3 = {k: v for k, v in weights.items() if ctx.whome(k) == "L3"}
    # the generated code's tables (codegen/abi.py): a descriptor per layer and per buffer
    runtime_l2 = runtime_bytes([sum(1 for b in l.result.evaluation.buffers if b.present) for l in layers])
    bufs = activation_buffers(g, schedule, extra={k: v for k, v in extra.items() if v}, alignment=ALIGN)
    return {"bufs": bufs, "l1_bufs": l1_bufs, "w_l2": w_l2, "w_l3": w_l3,
            "weights_L2": sum(align(v) for v in w_l2.values()), "runtime_L2": runtime_l2}


def plan_memory(ctx: BuildContext, hw: HardwareModel, layers: list[TiledLayer], schedule: list[Node],
                weight_home: dict[str, str], time_limit: float, seed: int) -> dict:
    """Static memory plans of L2 (and L1) and what L2 needs in all (`L2_need`)."""
    f = l2_figures(ctx, layers, schedule, weight_home)
    step_names = [n.name for n in schedule]
    l2 = plan_level(f["bufs"], "L2", capacity=None, time_limit=min(time_limit, 5.0), seed=seed,
                    step_names=step_names)
    l1 = None
    if ctx.level == "L1":
        l1 = plan_level(f["l1_bufs"], "L1", capacity=hw.levels["L1"].usable,
                        time_limit=min(time_limit, 5.0), seed=seed, step_names=step_names)
    need = align(l2.peak) + f["weights_L2"] + f["runtime_L2"]
    return {"L2": l2, "L1": l1, "weights_L2": f["weights_L2"], "w_l2": f["w_l2"], "w_l3": f["w_l3"],
            "runtime_L2": f["runtime_L2"], "L2_need": need, "buffers_L2": f["bufs"]}
