"""report.md and the console summary of a Plan."""

from __future__ import annotations

from pathlib import Path

from planner.cost import UNCERTAINTY_ASSUMED, UNCERTAINTY_CALIBRATED
from planner.plan import Plan


def _table(headers: list[str], rows: list[list[object]]) -> str:
    from planner.cli import table
    return table(headers, rows)


def _md(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _tiles(layer) -> str:
    t = layer.tile.get(layer.compute_level, {})
    if not t:
        return "untiled"
    return " ".join(f"{d}={t[d]}/{layer.dims[d]}" for d in layer.loop_order)


def layer_rows(plan: Plan) -> list[list[object]]:
    lvl = plan.hardware["compute_level"]
    usable = plan.memory[lvl]["usable"]
    rows = []
    for l in plan.layers:
        pct = f"{100.0 * l.l1_bytes / usable:.1f}%" if lvl == "L1" else "-"
        rows.append([l.name, l.op, _tiles(l), l.l1_bytes if lvl == "L1" else "-", pct, l.n_tiles,
                     l.dma_bytes, l.est_cycles, "yes" if l.optimal else "NO"])
    return rows


LAYER_HEADERS = ["layer", "op", "tiles (tile/full)", "L1 B", "L1 use", "tiles", "DMA B", "est. cycles",
                 "optimal"]


def memory_rows(plan: Plan) -> list[list[object]]:
    rows = []
    for key, m in plan.memory.items():
        b = m["breakdown"]
        lb = m.get("lower_bound", 0)
        ratio = f"{m['plan_peak'] / lb:.3f}" if lb and "plan_peak" in m else "-"
        rows.append([key, m.get("display_name", ""), m["capacity"], m["usable"], m["peak"],
                     f"{100.0 * m['peak'] / m['usable']:.1f}%", b["activations"], lb, ratio, b["weights"],
                     b["runtime"]])
    return rows


MEMORY_HEADERS = ["level", "memory", "capacity", "usable", "peak", "use", "activations",
                  "lower bound", "plan/LB", "weights", "runtime"]


def block_rows(plan: Plan) -> list[list[object]]:
    rows = []
    for b in plan.blocks:
        lbl = b["layer_by_layer"] or {}
        dft = b["depth_first"] or {}
        mn = b["min_peak_depth_first"] or {}
        f = b.get("fwsa") or {}
        dev = f.get("deviation") or {}
        rows.append([b["node"], f"S={b['s']} E={b['e']} P={b['p']} H={b['h']}", b["form"],
                     lbl.get("peak_bytes", "-"), dft.get("peak_bytes", "-"), mn.get("peak_bytes", "-"),
                     _ratio(b["peak_ratio_chosen"]), _ratio(b.get("peak_ratio_depth_first")),
                     lbl.get("est_cycles", "-"), dft.get("est_cycles", "-"),
                     "yes" if f.get("applied") else "no",
                     _ratio(f.get("param_ratio")), _ratio(f.get("mac_ratio")),
                     dev.get("softmax_max_abs_lsb", "-"), dev.get("block_max_abs_lsb", "-")])
    return rows


def _ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _b(n) -> str:
    return "does not fit" if n is None else f"{n:,} B"


BLOCK_HEADERS = ["MHSA block", "shape", "chosen", "layer-by-layer peak B", "depth-first peak B",
                 "min depth-first peak B", "ratio (chosen)", "ratio (DFT alone)", "LbL cycles", "DFT cycles",
                 "FWSA", "FWSA params", "FWSA MACs", "Δ softmax LSB", "Δ block LSB"]


def fwsa_line(plan: Plan, b: dict) -> str:
    """FWSA decision, savings and deviation of one block, one line."""
    f = b["fwsa"]
    out = (f"FWSA {'applied' if f['applied'] else 'not applied'} ({f['reason']}); parameters "
           f"{f['param_ratio']:.2f}x, MACs {f['mac_ratio']:.2f}x")
    if f.get("cycles_standard") is not None and f.get("cycles_fused") is not None:
        out += f", depth-first estimated cycles {f['cycles_fused'] / f['cycles_standard']:.2f}x"
    dev = f.get("deviation")
    if dev:
        out += (f"; deviation vs the unfused model: softmax output max {dev['softmax_max_abs_lsb']} LSB "
                f"(mean {dev['softmax_mean_abs_lsb']:.3f}), block output max {dev['block_max_abs_lsb']} LSB "
                f"(mean {dev['block_mean_abs_lsb']:.3f}) on {plan.fwsa['inputs']}")
    return out


def deployed_line(plan: Plan) -> str:
    """Whether the deployed model (what the C computes, `planner golden --plan`) is the input model."""
    fused = [b["node"] for b in plan.blocks if (b.get("fwsa") or {}).get("applied")]
    if not fused:
        return "deployed model: the input model (exact fusions only)"
    dv = (plan.fwsa or {}).get("deviation") or {}
    return (f"deployed model DIFFERS from the input model: FWSA in {', '.join(fused)} (graph outputs "
            f"max {dv.get('output_max_abs_lsb', '?')} LSB, mean {dv.get('output_mean_abs_lsb', 0):.3f} LSB, "
            f"{100 * dv.get('output_mismatch_fraction', 0):.1f}% of elements differ, on "
            f"{plan.fwsa['inputs'] if plan.fwsa else '?'}); reference: planner golden --plan plan.json")


def console_summary(plan: Plan) -> str:
    lines = [f"{plan.network} on {plan.hardware['display_name']} ({plan.hardware['cores']} cores), "
             f"dft={plan.options['dft']} fwsa={plan.options['fwsa']}", ""]
    lines[1:1] = [deployed_line(plan)]
    if not plan.deployable:
        lines[1:1] = [f"NOT DEPLOYABLE (--plan-only): {r}" for r in plan.not_deployable]
    lines.append(_table(LAYER_HEADERS, layer_rows(plan)))
    lines.append("")
    lines.append(_table(MEMORY_HEADERS, memory_rows(plan)))
    if plan.blocks:
        lines.append("")
        lines.append(_table(BLOCK_HEADERS, block_rows(plan)))
        for b in plan.blocks:
            lines.append(f"{b['node']}: {b['form']} ({b['reason']}); peak layer-by-layer / chosen "
                         f"{_ratio(b['peak_ratio_chosen'])}, depth-first alone (standard form, same "
                         f"budget) {_ratio(b.get('peak_ratio_depth_first'))} at "
                         f"{_ratio(b.get('cycles_ratio_depth_first'))} the cycles"
                         + (f", FWSA {_ratio(b['peak_ratio_fwsa'])} on top" if b.get("peak_ratio_fwsa") else ""))
            lines.append(f"{b['node']}: {fwsa_line(plan, b)}")
        if plan.fwsa:
            dv = plan.fwsa["deviation"]
            lines.append(f"FWSA network deviation ({plan.fwsa['inputs']}): softmax max "
                         f"{dv['softmax_max_abs_lsb']} LSB, block max {dv['block_max_abs_lsb']} LSB, graph "
                         f"output max {dv['output_max_abs_lsb']} LSB")
    e = plan.estimate
    lines.append("")
    lines.append(f"estimate: {e['cycles']:,} cycles = {e['latency_ms']} ms at "
                 f"{plan.hardware['frequency_hz'] / 1e6:g} MHz, {e['macs']:,} MACs, "
                 f"{e['params_bytes']:,} parameter bytes (assumed hardware figures, not calibrated)")
    return "\n".join(lines)


def write_report(plan: Plan, path: str | Path) -> None:
    hw = plan.hardware
    o = plan.options
    out = [f"# Deployment plan: {plan.network} on {hw['display_name']}", "",
           f"Options: dft={o['dft']}, fwsa={o['fwsa']}, l1={o['l1']}, l2={o['l2']}, cores={o['cores']}, "
           f"time limit {o['time_limit']} (deterministic units per layer), seed {o['seed']}. "
           f"Compute level: {hw['compute_level']}.", "", deployed_line(plan) + ".", ""]
    if not plan.deployable:
        out += ["**Not deployable** (planned with `--plan-only`; code generation refuses this plan):", ""]
        out += [f"- {r}" for r in plan.not_deployable] + [""]
    e = plan.estimate
    out += ["## Estimate", "",
            f"{e['cycles']:,} cycles, {e['latency_ms']} ms at {hw['frequency_hz'] / 1e6:g} MHz; "
            f"{e['macs']:,} MACs; {e['params_bytes']:,} parameter bytes.", "",
            "All cycle figures come from the hardware model, whose figures are assumptions until "
            "calibrated: " + ", ".join(plan.assumptions) + ".", ""]
    out += ["## Layers", "", _md(LAYER_HEADERS, layer_rows(plan)), "",
            "Tiles: tile size / full size per tiled dim at the compute level; DMA B: bytes moved "
            "between the home level and the compute level per inference (all reloads); optimal: the "
            "CP-SAT cycle optimum is proven.", ""]
    out += ["## Memory", "", _md(MEMORY_HEADERS, memory_rows(plan)), "",
            "Peak = activations (static plan, graph input and output included, plus per-step "
            "scratch such as an MHSA accumulator kept in L2) + weights resident at the level + runtime "
            "(layer descriptors, tile tables, DMA descriptors, estimated). Lower bound: the largest sum "
            "of activation bytes live at one step. L1 holds one layer's tiles at a time.", ""]
    if plan.blocks:
        out += ["## MHSA blocks: depth-first tiling (DFT) and FWSA", "", _md(BLOCK_HEADERS, block_rows(plan)), ""]
        for b in plan.blocks:
            out.append(f"### {b['node']}")
            out.append("")
            out.append(f"- chosen: **{b['form']}** ({b['reason']})")
            for key, what in (("depth_first", "depth-first tiling"),
                              ("depth_first_standard", "depth-first tiling, standard form (without FWSA)")):
                d = b.get(key)
                if d:
                    out.append(f"- {what}: {d['variant']}, tiles {d['tiles']}, {d['est_cycles']:,} cycles, "
                               f"peak {d['peak_bytes']:,} B (tensors {d['tensor_bytes']:,} B, buffers "
                               f"{d['buffer_bytes']:,} B)")
            if b["layer_by_layer"]:
                l = b["layer_by_layer"]
                out.append(f"- layer-by-layer: {l['est_cycles']:,} cycles, peak {l['peak_bytes']:,} B at "
                           f"{l['peak_moment']} (tensors {l['tensor_bytes']:,} B, buffers "
                           f"{l['buffer_bytes']:,} B)")
            if b["min_peak_depth_first"]:
                m = b["min_peak_depth_first"]
                out.append(f"- minimum-peak depth-first tiling the tiler produces (at {m['capacity']:,} B "
                           f"of {hw['compute_level']}): {m['variant']}, h={m['h']} x={m['x']}, peak "
                           f"{m['peak_bytes']:,} B, {m['est_cycles']:,} cycles")
            out.append(f"- peak layer-by-layer / depth-first at the same budget: "
                       f"{_ratio(b['peak_ratio_chosen'])} (chosen form), "
                       f"{_ratio(b.get('peak_ratio_depth_first'))} depth-first alone (standard form) at "
                       f"{_ratio(b.get('cycles_ratio_depth_first'))} the estimated cycles"
                       + (f"; FWSA lowers the depth-first peak {_ratio(b['peak_ratio_fwsa'])} more"
                          if b.get("peak_ratio_fwsa") else ""))
            out.append(f"- counted: {b['counted']}")
            r = b.get("rule")
            if r and r.get("uncertainty") is not None:
                need = r["network_l2_need"]
                out.append(f"- --dft auto rule: estimated cycles depth-first / layer-by-layer "
                           f"{r['cycles_ratio']}, cost-model uncertainty ±{r['uncertainty']:g}; network L2 "
                           f"need (activation lower bound + weights + runtime) depth-first "
                           f"{_b(need['depth_first'])}, layer-by-layer {_b(need['layer_by_layer'])} of "
                           f"{r['l2_usable']:,} B usable; decided by {r['decided_by']}")
            out.append(f"- {fwsa_line(plan, b)}")
            out.append("")
    if plan.blocks:
        out += ["The --dft auto rule (docs/plan-format.md): a form whose layers do not tile into the "
                "compute level, or with which the network does not fit L2, is out; otherwise the form "
                "with fewer estimated cycles if the difference exceeds the cost model's stated "
                f"uncertainty (±{UNCERTAINTY_ASSUMED:.0%} while the figures it rests on are assumed, "
                f"±{UNCERTAINTY_CALIBRATED:.0%} when calibrated); "
                "within it, the lower memory (the network's L2 need, then the block's peak).", ""]
    if plan.fwsa:
        dv = plan.fwsa["deviation"]
        out += ["## FWSA deviation", "",
                f"Fused (FWSA) vs unfused integer model, golden model, on {plan.fwsa['inputs']}; "
                f"blocks fused: {', '.join(plan.fwsa['blocks'])}. In LSB of the integer tensors.", "",
                _md(["tensor", "max abs. Δ (LSB)", "mean abs. Δ (LSB)", "elements that differ"],
                    [[k, dv[f"{k}_max_abs_lsb"], f"{dv[f'{k}_mean_abs_lsb']:.4f}",
                      f"{100 * dv[f'{k}_mismatch_fraction']:.1f}%"]
                     for k in ("softmax", "scores", "block", "output")]), "",
                "softmax: the probabilities (without softmax: the scores feeding ·V); scores: the "
                "softmax input relative to its row maximum; block: the MHSA output; output: the graph "
                "outputs. End to end: a later block sees an earlier block's deviation.", ""]
    if plan.warnings:
        out += ["## Warnings", ""] + [f"- {w}" for w in plan.warnings] + [""]
    Path(path).write_text("\n".join(out), encoding="utf-8")
