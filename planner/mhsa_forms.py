"""MHSA forms: per block, fused-weight attention (FWSA) or not, and depth-first or layer by layer.

FWSA is decided first (`decide_fwsa`), like for like on the depth-first tilings of both forms
(the fused form exists only as a depth-first kernel). Then each block is tiled in both forms
(`block_forms`: the depth-first node in its decided FWSA form, the standard parts layer by layer,
both peaks counted the same way) and the --dft rule picks one (`choose_forms`, docs/plan-format.md);
a block planned layer by layer runs unfused (`settle_fwsa`). `fwsa_deviation` measures what the
fused model changes (golden model, in LSB).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from planner.cost import CostParams, estimate_uncertainty, hw_fields
from planner.errors import PlannerError
from planner.hw import HardwareModel
from planner.ir import LAYOUT_OPS, Graph, Node
from planner.memory import alias_root, lower_bound
from planner.placement import (Target, WeightsOverflow, align, l2_figures, l2_need_streamed,
                               planning_graph, tile_all)
from planner.tiling.desc import LayerDesc, Variant
from planner.tiling.ops import BuildContext, describe
from planner.tiling.solver import TileResult
from planner.tiling.tiler import Tiler


def block_forms(graph: Graph, target: Target) -> dict[str, dict]:
    """Both forms of every MHSA block, tiled and counted (see _block_forms)."""
    ctx = BuildContext(graph, target.params, target.hw.isa, target.level)
    return {b.name: _block_forms(graph, b, ctx, target.tiler, target.cap, target.l2_usable)
            for b in graph.nodes if b.op == "MHSA"}


def settle_fwsa(graph: Graph, unfused: set[str], decisions: dict) -> dict:
    """The FWSA kernel is depth-first: a fused block planned layer by layer goes back to the
    standard form (its decision says why)."""
    from planner.transforms.fwsa import unfuse_qk

    out = dict(decisions)
    for b in graph.nodes:
        d = out.get(b.name)
        if b.op == "MHSA" and b.name in unfused and d is not None and d.applied:
            unfuse_qk(graph, b)
            out[b.name] = dataclasses.replace(
                d, applied=False, reason=f"{d.reason}; not applied: the block is planned layer by layer "
                "(layer-by-layer has no FWSA form)")
    return out


def decide_fwsa(graph: Graph, mode: str, dft_mode: str, target: Target) -> dict:
    """FWSA per MHSA block (planner.transforms.fwsa.apply_fwsa), priced by the cost model.

    The fused form exists only as a depth-first kernel, so it is compared like for like: the
    estimated cycles of the block's depth-first tiling in the fused form against the standard
    form. auto applies it only where it lowers the estimated cycles AND the parameters (apply_fwsa
    with a cost_fn keeps it where the cycles drop; the parameter condition is checked here).
    """
    from planner.analysis import block_fwsa_figures
    from planner.transforms.fwsa import FwsaDecision, apply_fwsa, unfuse_qk

    if mode == "off" or not any(n.op == "MHSA" for n in graph.nodes):
        return {}
    ctx = BuildContext(graph, target.params, target.hw.isa, target.level)
    tiler, cap, stage_cap = target.tiler, target.cap, target.stage_cap

    def cost_fn(g: Graph, node: Node) -> float:
        r = tiler.best(describe(ctx, node), cap, stage_cap)
        return float("inf") if r is None else float(r.evaluation.cycles)

    nodes = {n.name: n for n in graph.nodes if n.op == "MHSA"}
    if mode == "auto" and dft_mode == "off":
        return {name: FwsaDecision(name, False, "--dft off: layer-by-layer has no FWSA form",
                                   *_figures(block_fwsa_figures(n))) for name, n in nodes.items()}
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


def _figures(f) -> tuple[int, int, int, int]:
    return f.params_unfused, f.params_fused, f.macs_unfused, f.macs_fused


def _num(c: float | None) -> str:
    return "-" if c is None else ("does not fit" if c == float("inf") else f"{int(c):,}")


def fwsa_deviation(graph: Graph, decisions: dict, inputs: list | None, inputs_name: str | None,
                   seed: int, n_samples: int) -> dict | None:
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
        source = f"--inputs {inputs_name}"
    else:
        rng = np.random.default_rng(seed)
        samples = []
        for _ in range(n_samples):
            sample = []
            for name in graph.inputs:
                t = graph.tensors[name]
                lo, hi = DTYPE_RANGES.get(t.dtype, (-128, 127))
                lo, hi = max(lo, -128), min(hi, 255)  # an int8/uint8 range for wider inputs
                sample.append(rng.integers(lo, hi + 1, size=t.shape, dtype=np.int64))
            samples.append(sample)
        source = (f"{n_samples} seeded random input{'s' if n_samples > 1 else ''} "
                  f"(uniform over each graph input's integer range, seed {seed})")
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


def _dft_figures(r: TileResult | None, x_bytes: int, y_bytes: int, s: int, e: int) -> dict | None:
    if r is None:
        return None
    peak, tensors, buffers = _dft_moment(r.variant, r.evaluation.activation_bytes, x_bytes, y_bytes, s, e)
    return {"variant": r.variant.label, "tiles": dict(r.evaluation.tiles), "est_cycles": r.evaluation.cycles,
            "peak_bytes": peak, "tensor_bytes": tensors, "buffer_bytes": buffers}


def _block_forms(graph: Graph, node: Node, ctx: BuildContext, tiler: Tiler, cap: int, l2_cap: int) -> dict:
    """Tile the block depth-first (one fused node, in its FWSA form when it has one) and layer by
    layer (its standard parts); count both peaks the same way. The choice is _choose_forms'."""
    level = ctx.level
    dft_desc = describe(ctx, node)
    stage_cap = None if level == "L2" else l2_cap
    dft = tiler.best(dft_desc, cap, stage_cap)
    # layer by layer
    pg = planning_graph(graph, {node.name})
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
    lbl_cycles = sum(r.evaluation.cycles for _, r, _ in lbl) if lbl_ok else None
    lbl_peak, lbl_moment, lbl_split = _lbl_peak(pg, node, [(p, r) for p, r, _ in lbl]) if lbl_ok \
        else (None, None, (None, None))
    min_dft = _min_peak_dft(tiler, dft_desc, cap, stage_cap, x_bytes, y_bytes, s, e)
    std = None  # FWSA's share apart from depth-first's: the standard form's depth-first tiling
    if a.get("fwsa") is not None:
        std_node = Node(node.name, node.op, list(a["fwsa"].unfused_inputs), list(node.outputs),
                        {k: v for k, v in a.items() if k != "fwsa"})
        std_desc = describe(ctx, std_node)
        std = _dft_figures(tiler.best(std_desc, cap, stage_cap), x_bytes, y_bytes, s, e)
    fields: set[str] = set()
    for v in dft_desc.variants + [v for _, _, d in lbl for v in d.variants]:
        fields |= hw_fields(tiler.params, v)
    dfig = _dft_figures(dft, x_bytes, y_bytes, s, e)
    base = std if std is not None else dfig
    return {
        "node": node.name,
        "s": s, "e": e, "p": a["p"], "h": a["h"],
        "softmax": a["softmax"].attrs.get("kind") if a["softmax"] is not None else None,
        "form": None, "reason": None,
        "depth_first": dfig,
        "depth_first_standard": std,
        "layer_by_layer": None if not lbl_ok else {
            "est_cycles": lbl_cycles, "peak_bytes": lbl_peak, "peak_moment": lbl_moment,
            "tensor_bytes": lbl_split[0], "buffer_bytes": lbl_split[1]},
        "min_peak_depth_first": min_dft,
        "peak_ratio_chosen": None,
        "peak_ratio_depth_first": (round(lbl_peak / base["peak_bytes"], 4) if lbl_peak and base else None),
        "cycles_ratio_depth_first": (round(base["est_cycles"] / lbl_cycles, 4) if lbl_cycles and base
                                     else None),
        "peak_ratio_fwsa": (round(std["peak_bytes"] / dfig["peak_bytes"], 4) if std and dfig else None),
        "counted": ("activation bytes live at the block's peak moment in L1 and L2 together: the "
                    "block input x (kept for the whole block), every intermediate (Q, K, V, score map, "
                    "probabilities, head outputs; int8 since requantization is fused into producers), "
                    "the int32 accumulator, the output once written, tile and chunk buffers with their "
                    "copies and kernel scratch; weights excluded; softmax not in place (the memory "
                    "planner has no in-place reuse)"),
        "_dft_desc": dft_desc, "_lbl": lbl, "_cap": cap, "_fields": fields,
    }


def choose_forms(graph: Graph, block_info: dict, dft_mode: str, fwsa_mode: str, target: Target,
                 fwsa_decisions: dict) -> set[str]:
    """Depth-first or layer by layer per block; returns the blocks planned layer by layer.

    --dft auto (docs/plan-format.md, "The --dft auto rule"), blocks in graph order, the blocks
    not yet decided taken depth-first:
      1. a form whose layers do not all tile into the compute level is out;
      2. a form with which the network does not fit L2 with its weights resident (its L2 need:
         activation lower bound + resident weights + runtime > usable) is out, if the other fits;
         when neither does, a form that does not fit even with weights streamed from L3 as the
         final plan streams them (planner.placement: the same loop) is out, if the other fits;
      3. if one form's estimated cycles are lower beyond the cost model's stated uncertainty u
         (slower > (1 + u) x faster), it is chosen;
      4. else (within u) the lower memory: the network's L2 need, then the block's peak; then
         fewer cycles; then depth-first.
    """
    hw, params, tiler, level = target.hw, target.params, target.tiler, target.level
    cap_c, l2_usable = target.cap, target.l2_usable
    blocks = [n for n in graph.nodes if n.op == "MHSA"]
    unfused = {b.name for b in blocks if block_info[b.name]["depth_first"] is None}
    memo: dict[str, LayerDesc] = {}
    for b in blocks:
        info = block_info[b.name]
        dft, lbl = info["depth_first"], info["layer_by_layer"]
        fused = b.name in fwsa_decisions and fwsa_decisions[b.name].applied
        rule: dict = {}
        if dft is None and lbl is None and dft_mode == "auto":
            bad = next((p, d) for p, r, d in info["_lbl"] if r is None)
            e_d = tiler.infeasible(info["_dft_desc"], b, level, info["_cap"])
            e_l = tiler.infeasible(bad[1], bad[0], level, info["_cap"])
            raise PlannerError(f"MHSA block {b.name} fits {level} in neither form: depth-first: {e_d}; "
                               f"layer by layer: {e_l}")
        if dft_mode == "on":
            if dft is None:
                raise tiler.infeasible(info["_dft_desc"], b, level, info["_cap"])
            form, why = "depth-first", "--dft on"
        elif dft_mode == "off":
            if lbl is None:
                bad = next((p, d) for p, r, d in info["_lbl"] if r is None)
                raise tiler.infeasible(bad[1], bad[0], level, info["_cap"])
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
            streamed = None
            if not fit_d and not fit_l:  # both need weights from L3: as the final plan places them
                sd, nd = l2_need_streamed(graph, unfused - {b.name}, target, memo)
                sl, nl = l2_need_streamed(graph, unfused | {b.name}, target, memo)
                streamed = (sd is not None, sl is not None)
                rule["network_l2_need_streamed"] = {"depth_first": sd, "layer_by_layer": sl}
                rule["weights_streamed"] = {"depth_first": nd, "layer_by_layer": nl}
            if fit_d != fit_l:
                form = "depth-first" if fit_d else "layer-by-layer"
                bad = "layer-by-layer" if fit_d else "depth-first"
                why = (f"with {bad} the network does not fit L2 with its weights resident (L2 need "
                       f"{nb(need_l if fit_d else need_d)} > {l2_usable:,} B usable; {form}: "
                       f"{nb(need_d if fit_d else need_l)})")
                rule["decided_by"] = "L2 fit"
            elif streamed is not None and streamed[0] != streamed[1]:
                form = "depth-first" if streamed[0] else "layer-by-layer"
                bad = "layer-by-layer" if streamed[0] else "depth-first"
                ns = rule["network_l2_need_streamed"]
                got = ns["depth_first"] if streamed[0] else ns["layer_by_layer"]
                nw = rule["weights_streamed"]["depth_first" if streamed[0] else "layer_by_layer"]
                why = (f"neither form fits L2 with its weights resident; with {bad} the network does "
                       f"not fit even with weights streamed from L3, with {form} it does ({nw} "
                       f"weight{'s' if nw != 1 else ''} streamed, L2 need {got:,} B of {l2_usable:,} B)")
                rule["decided_by"] = "L2 fit (weights streamed)"
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
        if form == "layer-by-layer" and fused and fwsa_mode == "on" and dft is not None:
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
    level = params.compute_level
    ctx = BuildContext(planning_graph(graph, unfused), params, hw.isa, level)
    schedule = [n for n in ctx.graph.nodes if n.op not in LAYOUT_OPS]
    try:
        layers = tile_all(ctx, tiler, schedule, cap_c, l2_usable, graph, unfused, memo)
    except (PlannerError, WeightsOverflow):
        return None
    f = l2_figures(ctx, layers, schedule, {})
    return lower_bound(f["bufs"]) + f["weights_L2"] + f["runtime_L2"]


def _min_peak_dft(tiler: Tiler, desc: LayerDesc, cap: int, stage_cap: int | None, x_bytes: int,
                  y_bytes: int, s: int, e: int) -> dict | None:
    """The lowest depth-first peak among the tilings the tiler actually produces for this node at
    a compute-level capacity up to `cap`, with that capacity (compute-level usable bytes) and its
    estimated cycles. The tiler's choice at capacity C (Tiler.best: per variant the first Pareto
    point that fits, then the lowest (cycles, bytes), the first variant on a tie) changes only
    where C crosses a front point's aligned footprint, so those capacities are all there is to
    try; the choice is made here from the same tables, without re-solving."""
    from planner.cost import evaluate

    fronts = []
    for v in desc.variants:
        _, _, tab = tiler.table(v, stage_cap)
        if tab is not None and len(tab):
            fronts.append((v, tab, -tab.aligned))  # aligned decreases along the front
    caps = sorted({int(a) for _, tab, _ in fronts for a in tab.aligned if a <= cap})
    best = None  # (peak, variant index, row, capacity): the first capacity reaching the lowest peak
    seen: dict[tuple[int, int], int] = {}
    for c in caps:
        pick = None
        for vi, (v, tab, neg) in enumerate(fronts):
            i = int(np.searchsorted(neg, -c, side="left"))  # first point with aligned <= c
            if i >= len(tab):
                continue
            key = (int(tab.cost[i]), int(tab.nbytes[i]))
            if pick is None or key < pick[0]:
                pick = (key, vi, i)
        if pick is None:
            continue
        _, vi, i = pick
        if (vi, i) not in seen:
            v, tab, _ = fronts[vi]
            seen[(vi, i)] = _dft_moment(v, int(tab.activation[i]), x_bytes, y_bytes, s, e)[0]
        if best is None or seen[(vi, i)] < best[0]:
            best = (seen[(vi, i)], vi, i, c)
    if best is None:
        return None
    peak, vi, i, c = best
    v, tab, _ = fronts[vi]
    ev = evaluate(tiler.params, v, *tab.row(i))
    return {"peak_bytes": peak, "h": ev.tiles["h"], "x": ev.tiles["x"], "variant": v.label,
            "est_cycles": ev.cycles, "capacity": c}


def _dft_moment(v: Variant, activation_bytes: int, x_bytes: int, y_bytes: int, s: int,
                e: int) -> tuple[int, int, int]:
    """Depth-first peak (peak, tensors, buffers): the chunk moment (compute-level activation
    buffers + x in L2 + an L2 accumulator) or the write-out moment (x and y in L2 + the int32
    accumulator), whichever is higher."""
    acc_l2 = 0 if v.attrs.get("acc_local", True) else s * e * 4
    # x itself lives in L2 (on a target without L1 it is not in the compute-level footprint either)
    chunk = (activation_bytes + x_bytes + acc_l2, x_bytes, activation_bytes + acc_l2)
    writeout = (x_bytes + s * e * 4 + y_bytes, x_bytes + y_bytes, s * e * 4)
    return max(chunk, writeout)


def _lbl_peak(pg: Graph, node: Node, parts: list[tuple[Node, TileResult]]) -> tuple[int, str, tuple]:
    """Layer-by-layer peak of the block: at each part, the L2 tensors live (x kept for the whole
    block) plus that layer's compute-level activation buffers; (peak, the part where it is,
    (tensor bytes, buffer bytes) there)."""
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
    best, moment, split = 0, "", (0, 0)
    for k, (p, r) in enumerate(parts):
        live = sum(align(pg.tensors[t].nbytes) for t in first if first[t] <= k <= last[t])
        tot = live + r.evaluation.activation_bytes
        if tot > best:
            best, moment, split = tot, p.name, (live, r.evaluation.activation_bytes)
    return best, moment, split
