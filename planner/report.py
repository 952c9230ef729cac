"""report.md and the console summary of a Plan.

The console summary fits CONSOLE_WIDTH columns (tables squeeze their name columns, prose wraps);
report.md carries the details (every table in full, the MHSA blocks' figures, the rules' reasons).
Sizes are KiB (units.KIB_NOTE, said once per output) in tables; percentages say what they are of.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

from planner.cost import UNCERTAINTY_ASSUMED, UNCERTAINTY_CALIBRATED
from planner.plan import Plan
from planner.units import KIB_NOTE, human_bytes, plural

CONSOLE_WIDTH = 99  # every console line is shorter than 100 columns


def _table(headers: list[str], rows: list[list[object]], width: int | None = None,
           squeeze: tuple[int, ...] = ()) -> str:
    """An aligned text table; with `width`, the `squeeze` columns (text) are shortened in turn
    (the middle of a cell replaced by '..') until every line fits."""
    from planner.cli import table
    if width is None or not rows:
        return table(headers, rows)
    rows = [list(r) for r in rows]
    for col in squeeze:
        while True:
            text = table(headers, rows)
            over = max(len(line) for line in text.splitlines()) - width
            cur = max([len(headers[col])] + [len(str(r[col])) for r in rows])
            if over <= 0 or cur <= max(len(headers[col]), 8):
                break
            limit = max(len(headers[col]), 8, cur - over)
            for r in rows:
                r[col] = _shorten(str(r[col]), limit)
    return table(headers, rows)


def kib(n: int | None) -> float | str:
    """A table cell in KiB, one decimal (a number, so that the table right-aligns it)."""
    return "-" if n is None else round(n / 1024, 1)


def _shorten(s: str, n: int) -> str:
    if len(s) <= n:
        return s
    head = (n - 2) // 2
    return s[:head] + ".." + s[len(s) - (n - 2 - head):]


def _wrap(text: str, indent: str = "  ") -> list[str]:
    return textwrap.wrap(text, CONSOLE_WIDTH, subsequent_indent=indent, break_on_hyphens=False,
                         break_long_words=True) or [""]


def _md(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def _tiles(layer) -> str:
    t = layer.tile.get(layer.compute_level, {})
    if not t:
        return "untiled"
    return " ".join(f"{d}={t[d]}/{layer.dims[d]}" for d in layer.loop_order)


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def _has_waits(plan: Plan) -> bool:
    return any(l.cycles.get("read_wait", 0) for l in plan.layers)


def layer_rows(plan: Plan) -> tuple[list[str], list[list[object]]]:
    """The layer table (KiB; "L1 use" = % of L1's usable bytes; "flash wait" = cycles waiting on
    weights read in place; "*": the tiler's optimum is not proven)."""
    lvl = plan.hardware["compute_level"]
    usable = plan.memory[lvl]["usable"]
    waits = _has_waits(plan)
    far = plan.memory.get("L3", {}).get("display_name", "L3")
    headers = ["layer", "op", "tiles (tile/full)"]
    if lvl == "L1":
        headers += ["L1 KiB", "L1 use"]
    headers += ["DMA KiB"]
    if waits:
        headers += [f"{far} wait"]
    headers += ["est. cycles"]
    rows = []
    for l in plan.layers:
        r: list[object] = [l.name, l.op, _tiles(l)]
        if lvl == "L1":
            r += [kib(l.l1_bytes), _pct(l.l1_bytes, usable)]
        r += [kib(l.dma_bytes)]
        if waits:
            r += [f"{l.cycles.get('read_wait', 0):,}"]
        r += [f"{l.est_cycles:,}" + ("" if l.optimal else "*")]
        rows.append(r)
    return headers, rows


MEMORY_HEADERS = ["level", "memory", "capacity", "usable", "peak", "use (of usable)", "activations",
                  "lower bound", "plan/LB", "weights", "runtime"]


def memory_rows(plan: Plan) -> list[list[object]]:
    """Per level, KiB; use = peak as % of usable."""
    rows = []
    for key, m in plan.memory.items():
        b = m["breakdown"]
        lb = m.get("lower_bound", 0)
        ratio = f"{m['plan_peak'] / lb:.3f}" if lb and "plan_peak" in m else "-"
        rows.append([key, m.get("display_name", ""), kib(m["capacity"]), kib(m["usable"]), kib(m["peak"]),
                     _pct(m["peak"], m["usable"]), kib(b["activations"]), kib(lb), ratio, kib(b["weights"]),
                     kib(b["runtime"])])
    return rows


def block_rows(plan: Plan) -> list[list[object]]:
    rows = []
    for b in plan.blocks:
        lbl = b["layer_by_layer"] or {}
        dft = b["depth_first"] or {}
        mn = b["min_peak_depth_first"] or {}
        f = b.get("fwsa") or {}
        dev = f.get("deviation") or {}
        rows.append([b["node"], f"S={b['s']} E={b['e']} P={b['p']} H={b['h']}", b["form"],
                     kib(lbl.get("peak_bytes")), kib(dft.get("peak_bytes")), kib(mn.get("peak_bytes")),
                     _ratio(b["peak_ratio_chosen"]), _ratio(b.get("peak_ratio_depth_first")),
                     _num(lbl.get("est_cycles")), _num(dft.get("est_cycles")),
                     "yes" if f.get("applied") else "no",
                     _ratio(f.get("param_ratio")), _ratio(f.get("mac_ratio")),
                     dev.get("softmax_max_abs_lsb", "-"), dev.get("block_max_abs_lsb", "-")])
    return rows


def _num(n) -> str:
    return "-" if n is None else f"{n:,}"


def _ratio(r) -> str:
    return "-" if r is None else f"{r:.2f}x"


def _b(n) -> str:
    return "does not fit" if n is None else f"{n:,} B"


BLOCK_HEADERS = ["MHSA block", "shape", "chosen", "layer-by-layer peak KiB", "depth-first peak KiB",
                 "min depth-first peak KiB", "ratio (chosen)", "ratio (DFT alone)", "LbL cycles",
                 "DFT cycles", "FWSA", "FWSA params", "FWSA MACs", "Δ softmax LSB", "Δ block LSB"]


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


def deployed_line(plan: Plan, short: bool = False) -> str:
    """Whether the deployed model (what the C computes, `planner golden --plan`) is the input model."""
    fused = [b["node"] for b in plan.blocks if (b.get("fwsa") or {}).get("applied")]
    if not fused:
        return "deployed model: the input model (exact fusions only)"
    dv = (plan.fwsa or {}).get("deviation") or {}
    on = plan.fwsa["inputs"] if plan.fwsa else "the deviation inputs"
    if short:
        return (f"deployed model DIFFERS from the input model: FWSA in {', '.join(fused)}: graph "
                f"outputs max {dv.get('output_max_abs_lsb', '-')} LSB, "
                f"{100 * dv.get('output_mismatch_fraction', 0):.1f}% of elements differ; reference: "
                "planner golden --plan plan.json")
    return (f"deployed model DIFFERS from the input model: FWSA in {', '.join(fused)} (graph outputs "
            f"max {dv.get('output_max_abs_lsb', '-')} LSB, mean {dv.get('output_mean_abs_lsb', 0):.3f} LSB, "
            f"{100 * dv.get('output_mismatch_fraction', 0):.1f}% of elements differ, on {on}); "
            "reference: planner golden --plan plan.json")


def _hw_line(plan: Plan) -> str:
    o = plan.options
    return (f"{plan.network} on {plan.hardware['display_name']}, {plural(int(plan.hardware['cores']), 'core')}: "
            f"dft={o['dft']} fwsa={o['fwsa']} weights={o.get('weights', 'auto')}")


def footprint_lines(plan: Plan) -> list[str]:
    """Read-only and read-write totals, one sentence each (console and report.md)."""
    fp = plan.footprint
    if not fp:
        return []
    ro = fp["read_only"]
    l3 = plan.memory.get("L3", {})
    where = ro["memory"]
    cap = (f" ({_pct(ro['total'], ro['capacity'])} of the {human_bytes(ro['capacity'])} capacity)"
           if ro.get("capacity") else "")
    if not l3.get("addressable"):
        in_l3 = f"in L3 ({l3.get('display_name', 'L3')}, copied there at start-up)"
    else:
        in_l3 = "read in place" if plan.hardware["compute_level"] == "L2" else "DMA'd from there"
    parts = []
    if ro["weights_in_l3"]:
        parts.append(f"weights {human_bytes(ro['weights_in_l3'])} {in_l3}")
    if ro["weights_copied_to_l2"]:
        parts.append(f"{'constants' if parts else 'weights'} {human_bytes(ro['weights_copied_to_l2'])} "
                     "copied to L2 by net_init")
    parts += [f"runtime tables {human_bytes(ro['runtime_tables'])}",
              f"code ~{human_bytes(ro['code_estimate'])} (an estimate; planner run on QEMU measures it)"]
    out = [f"Read-only ({where}): {ro['total']:,} B = {human_bytes(ro['total'])}{cap}: {', '.join(parts)}"]
    parts = []
    for lv, a in fp["read_write"].items():
        name = "" if a["memory"] == lv else f" {a['memory']}"
        parts.append(f"{lv}{name} {a['arena']:,} B = {human_bytes(a['arena'])} ({_pct(a['arena'], a['usable'])} "
                     f"of usable: activations {human_bytes(a['activations'])}, weights {human_bytes(a['weights'])})")
    out.append(f"Read-write (RAM arenas to reserve, NET_<level>_BYTES): {'; '.join(parts)}; "
               f"total {human_bytes(fp['ram_total'])}")
    return out


def weights_line(plan: Plan) -> str:
    w = plan.weights or {}
    if not w:
        return ""
    return (f"Weights: {w['in_l2']} constant{'s' if w['in_l2'] != 1 else ''} in L2 "
            f"({human_bytes(w['bytes_l2'])}), {w['in_l3']} in L3"
            + (f" {w['l3']}" if w.get("l3") else "") + f" ({human_bytes(w['bytes_l3'])}); {w['reason']}")


def estimate_lines(plan: Plan) -> list[str]:
    e = plan.estimate
    hw = plan.hardware
    wait = e.get("read_wait_cycles") or 0
    far = plan.memory.get("L3", {}).get("display_name", "L3")
    out = [f"Estimate: {e['cycles']:,} cycles = {e['latency_ms']} ms at {hw['frequency_hz'] / 1e6:g} MHz"
           + (f", of which {wait:,} waiting on {far} reads" if wait else "")
           + " (from hardware-model figures that are assumed until calibrated)"]
    counted = (f"Counted in the deployed model: {e['macs']:,} MACs, {e['params_bytes']:,} B of constants")
    if "weight_bytes" in e:
        counted += (f" ({e['weight_bytes']:,} B weights + {e['kernel_constant_bytes']:,} B kernel "
                    "requantization vectors and tables)")
    im = e.get("input_model")
    if im:
        fused = any((b.get("fwsa") or {}).get("applied") for b in plan.blocks)
        counted += (f"; the input model{' before FWSA' if fused else ''} (planner inspect): "
                    f"{im['macs']:,} MACs, {im['weight_bytes']:,} B weights")
    out.append(counted)
    return out


def _block_summary(b: dict) -> str:
    f = b.get("fwsa") or {}
    lbl = b.get("layer_by_layer") or {}
    dft = b.get("depth_first") or {}
    rule = b.get("rule") or {}
    by = f" (decided by {rule['decided_by']})" if rule.get("decided_by") else ""
    out = (f"MHSA {b['node']} (S={b['s']} E={b['e']} P={b['p']} H={b['h']}): {b['form']}{by}, "
           f"FWSA {'applied' if f.get('applied') else 'not applied'}; peak layer by layer / chosen "
           f"{_ratio(b['peak_ratio_chosen'])}")
    if lbl.get("est_cycles") is not None and dft.get("est_cycles") is not None:
        out += f"; est. cycles depth-first {dft['est_cycles']:,}, layer by layer {lbl['est_cycles']:,}"
    if f.get("applied"):
        out += f"; FWSA parameters {f['param_ratio']:.2f}x, MACs {f['mac_ratio']:.2f}x"
        dev = f.get("deviation") or {}
        if dev:
            out += (f", softmax output max {dev['softmax_max_abs_lsb']} LSB, block output max "
                    f"{dev['block_max_abs_lsb']} LSB off the unfused model")
    return out


def console_summary(plan: Plan) -> str:
    """What `planner solve` prints: under CONSOLE_WIDTH columns, details in report.md."""
    lines = _wrap(_hw_line(plan))
    if not plan.deployable:
        for r in plan.not_deployable:
            lines += _wrap(f"NOT DEPLOYABLE (--plan-only): {r}")
    lines += _wrap(deployed_line(plan, short=True))
    lvl = plan.hardware["compute_level"]
    headers, rows = layer_rows(plan)
    lines += ["", f"Layers (compute level {lvl}; {KIB_NOTE}"
              + ("; L1 use = % of usable L1" if lvl == "L1" else "") + ")"]
    lines.append(_table(headers, rows, CONSOLE_WIDTH, squeeze=(0, 2)))
    if any(not l.optimal for l in plan.layers):
        lines.append("* the tiler's time limit was reached: best tiling found, not proven optimal")
    lines += ["", "Memory (KiB; use = peak as % of usable)"]
    lines.append(_table(["level", "memory", "capacity", "usable", "peak", "use", "activations",
                         "weights", "runtime"],
                        [[r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[9], r[10]] for r in memory_rows(plan)],
                        CONSOLE_WIDTH, squeeze=(1,)))
    for text in footprint_lines(plan) + [weights_line(plan)]:
        if text:
            lines += _wrap(text)
    if plan.blocks:
        lines.append("")
        for b in plan.blocks:
            lines += _wrap(_block_summary(b))
        if plan.fwsa:
            dv = plan.fwsa["deviation"]
            lines += _wrap(f"FWSA network deviation ({plan.fwsa['inputs']}): softmax max "
                           f"{dv['softmax_max_abs_lsb']} LSB, block max {dv['block_max_abs_lsb']} LSB, "
                           f"graph output max {dv['output_max_abs_lsb']} LSB")
    lines.append("")
    for text in estimate_lines(plan):
        lines += _wrap(text)
    lines.append("Details (every table, the reasons of each decision): report.md")
    return "\n".join(lines)


def _opt(v, none: str) -> str:
    return none if v is None else str(v)


def write_report(plan: Plan, path: str | Path) -> None:
    hw = plan.hardware
    o = plan.options
    out = [f"# Deployment plan: {plan.network} on {hw['display_name']}", "",
           f"Options: dft={o['dft']}, fwsa={o['fwsa']}, weights={o.get('weights', 'auto')}, "
           f"l1={_opt(o['l1'], 'the model size')}, l2={_opt(o['l2'], 'the model size')}, "
           f"{plural(int(o['cores']), 'core')}, time limit {o['time_limit']} (deterministic units per "
           f"layer), seed {o['seed']}. Compute level: {hw['compute_level']}. Sizes in tables: "
           f"{KIB_NOTE}.", "", deployed_line(plan) + ".", ""]
    if not plan.deployable:
        out += ["**Not deployable** (planned with `--plan-only`; code generation refuses this plan):", ""]
        out += [f"- {r}" for r in plan.not_deployable] + [""]
    out += ["## Estimate", ""] + [f"{t}." for t in estimate_lines(plan)] + [
            "", "All cycle figures come from the hardware model, whose figures are assumptions until "
            "calibrated: " + ", ".join(plan.assumptions) + ".", ""]
    headers, rows = layer_rows(plan)
    out += ["## Layers", "", _md(headers, rows), "",
            "Tiles: tile size / full size per tiled dim at the compute level; DMA KiB: bytes moved "
            "between the home level and the compute level per inference (all reloads; for a weight "
            "read in place, one pass over it); L1 use: the layer's L1 footprint as % of L1's usable "
            "bytes; wait: cycles the core waits on weights read in place (flash wait states, "
            "levels.L3.read_* of the hardware model; a Linear's weights are read once per block of "
            "rows); *: the CP-SAT cycle optimum is not proven (time limit).", ""]
    out += ["## Memory", "", _md(MEMORY_HEADERS, memory_rows(plan)), "",
            "Peak = activations (static plan, graph input and output included, plus per-step "
            "scratch such as an MHSA accumulator kept in L2) + weights resident at the level + runtime "
            "(layer descriptors, tile tables, DMA descriptors). Use: peak as % of usable (usable = "
            "capacity minus the hardware model's reserve for stacks, code and runtime). Lower bound: "
            "the largest sum of activation bytes live at one step. L1 holds one layer's tiles at a "
            "time.", ""]
    if plan.footprint:
        fp = plan.footprint
        ro = fp["read_only"]
        out += ["## Footprint: read-only and read-write", ""]
        out += [f"- {t}." for t in footprint_lines(plan)]
        out += ["", _md(["read-only", "KiB"],
                        [["weights in L3", kib(ro["weights_in_l3"])],
                         ["weights copied to L2 (kept in the image)", kib(ro["weights_copied_to_l2"])],
                         ["runtime tables", kib(ro["runtime_tables"])],
                         ["code (estimate)", kib(ro["code_estimate"])], ["total", kib(ro["total"])]]), "",
                _md(["read-write arena", "memory", "KiB", "of usable", "of capacity", "activations KiB",
                     "weights KiB"],
                    [[lv, a["memory"], kib(a["arena"]), _pct(a["arena"], a["usable"]),
                      _pct(a["arena"], a["capacity"]), kib(a["activations"]), kib(a["weights"])]
                     for lv, a in fp["read_write"].items()]), ""]
        out += [f"- {n}." for n in fp["notes"]] + [""]
    if plan.weights:
        out += ["## Weights", "", weights_line(plan) + ".", ""]
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
                           f"{_opt(r['cycles_ratio'], '-')}, cost-model uncertainty ±{r['uncertainty']:g}; "
                           f"network L2 need (activation lower bound + weights in L2 + runtime) depth-first "
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
