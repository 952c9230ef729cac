"""report.md and the console summary of a Plan."""

from __future__ import annotations

from pathlib import Path

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
        rows.append([b["node"], f"S={b['s']} E={b['e']} P={b['p']} H={b['h']}", b["form"],
                     lbl.get("peak_bytes", "-"), dft.get("peak_bytes", "-"), mn.get("peak_bytes", "-"),
                     _ratio(b["peak_ratio_chosen"]), _ratio(b["peak_ratio_min"]),
                     lbl.get("est_cycles", "-"), dft.get("est_cycles", "-")])
    return rows


def _ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}x"


BLOCK_HEADERS = ["MHSA block", "shape", "chosen", "layer-by-layer peak B", "depth-first peak B",
                 "min depth-first peak B", "ratio (chosen)", "ratio (min)", "LbL cycles", "DFT cycles"]


def console_summary(plan: Plan) -> str:
    lines = [f"{plan.network} on {plan.hardware['display_name']} ({plan.hardware['cores']} cores), "
             f"dft={plan.options['dft']} fwsa={plan.options['fwsa']}", ""]
    lines.append(_table(LAYER_HEADERS, layer_rows(plan)))
    lines.append("")
    lines.append(_table(MEMORY_HEADERS, memory_rows(plan)))
    if plan.blocks:
        lines.append("")
        lines.append(_table(BLOCK_HEADERS, block_rows(plan)))
        for b in plan.blocks:
            lines.append(f"{b['node']}: {b['form']} ({b['reason']}); depth-first peak ratio "
                         f"{_ratio(b['peak_ratio_chosen'])} chosen, {_ratio(b['peak_ratio_min'])} at minimum peak")
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
           f"Compute level: {hw['compute_level']}.", ""]
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
            if b["depth_first"]:
                d = b["depth_first"]
                out.append(f"- depth-first tiling: {d['variant']}, tiles {d['tiles']}, "
                           f"{d['est_cycles']:,} cycles, peak {d['peak_bytes']:,} B")
            if b["min_peak_depth_first"]:
                m = b["min_peak_depth_first"]
                out.append(f"- minimum-peak depth-first tiling: {m['variant']}, h={m['h']} x={m['x']}, "
                           f"peak {m['peak_bytes']:,} B")
            if b["layer_by_layer"]:
                l = b["layer_by_layer"]
                out.append(f"- layer-by-layer: {l['est_cycles']:,} cycles, peak {l['peak_bytes']:,} B at "
                           f"{l['peak_moment']}")
            out.append(f"- peak ratio layer-by-layer / depth-first: {_ratio(b['peak_ratio_chosen'])} "
                       f"(chosen plan), {_ratio(b['peak_ratio_min'])} (minimum-peak depth-first)")
            out.append(f"- counted: {b['counted']}")
            f = b["fwsa"]
            out.append(f"- FWSA: {'applied' if f['applied'] else 'not applied'} ({f['reason']}); "
                       f"parameters {f['params_unfused']:,} -> {f['params_fused']:,} ({f['param_ratio']:.2f}x), "
                       f"MACs {f['macs_unfused']:,} -> {f['macs_fused']:,} ({f['mac_ratio']:.2f}x): "
                       f"{'pays' if f['pays'] else 'does not pay'}")
            out.append("")
    if plan.warnings:
        out += ["## Warnings", ""] + [f"- {w}" for w in plan.warnings] + [""]
    Path(path).write_text("\n".join(out), encoding="utf-8")
