"""`planner explore NET.onnx HW.json --l1 32K:256K:16K [--l2 ...] [--vary dft,fwsa] [--min-memory] -o DIR`:
what-if sweep -> DIR/explore.csv, DIR/memory_peak.png, DIR/latency.png (and DIR/min_memory.json)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from planner.errors import PlannerError, UsageError
from planner.solve_cli import add_solver_options


def register(sub, commands) -> None:
    p = sub.add_parser(
        "explore", help="what-if sweep over L1/L2 capacity and --dft/--fwsa: CSV + PNG plots; --min-memory",
        description="Solve the network at every point of a capacity grid (and every combination of "
                    "the --vary options); write DIR/explore.csv and PNG plots of the memory peak per "
                    "level and of the estimated latency. Infeasible points are recorded with the "
                    "reason, not fatal. Progress and an ETA go to stderr; each CSV row is written "
                    "as soon as its point is solved, so Ctrl-C leaves a valid partial CSV.")
    p.add_argument("network", help="ONNX file (QuantLib integer graph or QDQ int8 graph)")
    p.add_argument("hw", help="hardware model: hw_models/<name>.json or a bare name (gap9, stm32h7, stm32l4)")
    p.add_argument("-o", "--output", required=True, metavar="DIR",
                   help="output directory (created if needed); explore.csv grows row by row")
    p.add_argument("--l1", metavar="RANGE",
                   help="L1 sizes to sweep: START:STOP:STEP (e.g. 32K:256K:16K), START:STOP (8 steps) "
                        "or one value; K = 1024, M = 1024^2 (default: the model's L1)")
    p.add_argument("--l2", metavar="RANGE", help="L2 sizes to sweep, same syntax (default: the model's L2)")
    p.add_argument("--vary", metavar="OPTS",
                   help="comma-separated options to vary over on/off: dft, fwsa (e.g. dft,fwsa); every "
                        "combination is one series in the plots")
    p.add_argument("--dft", default="auto", choices=("auto", "on", "off"),
                   help="--dft when not varied (default auto)")
    p.add_argument("--fwsa", default="auto", choices=("auto", "on", "off"),
                   help="--fwsa when not varied (default auto, as planner solve)")
    p.add_argument("--min-memory", action="store_true",
                   help="find the smallest L1 (1 KiB steps) that gives a plan with L2 as configured "
                        "(--l2 when it is one value, else the model's), then the smallest L2 for that "
                        "L1; writes DIR/min_memory.json (one result per --vary combination)")
    add_solver_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines and no table")
    commands["explore"] = cmd_explore


def _progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_explore(args: argparse.Namespace) -> int:
    from planner.cli import table
    from planner.explore import (CSV_FILE, MAX_POINTS, MIN_MEMORY_JSON, SUMMARY_HEADERS, Explorer,
                                 combinations, fmt_bytes, min_memory, min_memory_json, network_label,
                                 parse_range, parse_vary, run_sweep, series_label, summary_rows,
                                 sweep_size, write_plots)
    from planner.frontend.onnx_io import parse_input_shapes
    from planner.solve import SolveOptions

    # count first: every axis is checked (and the grid's size computed) before anything is built
    l1s = parse_range(args.l1, "--l1") if args.l1 is not None else None
    l2s = parse_range(args.l2, "--l2") if args.l2 is not None else None
    vary = parse_vary(args.vary)
    if l1s is None and l2s is None and not args.min_memory:
        raise UsageError("nothing to explore: give --l1 and/or --l2 ranges (e.g. --l1 32K:256K:16K), "
                         "or --min-memory")
    n_points = sweep_size(len(l1s or [None]), len(l2s or [None]), vary)
    if n_points > MAX_POINTS:
        raise UsageError(f"the sweep has {n_points:,} points ({len(l1s or [None])} L1 x "
                         f"{len(l2s or [None])} L2 x {n_points // len(l1s or [None]) // len(l2s or [None])} "
                         f"option combinations; at most {MAX_POINTS:,}): use a coarser STEP")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    base = SolveOptions(dft=args.dft, fwsa=args.fwsa, cores=args.cores, time_limit=args.time_limit,
                        seed=args.seed, input_shapes=parse_input_shapes(args.input_shape))
    ex = Explorer(args.network, args.hw, base, vary, progress=None if args.quiet else _progress)
    if l1s is not None and not ex.has_l1:
        raise UsageError(f"--l1: hardware model '{ex.hw.name}' has no L1 (its levels: "
                         f"{', '.join(ex.hw.levels)}); sweep --l2 instead")
    for key, vals in (("L1", l1s), ("L2", l2s)):
        if vals and all(v <= ex.reserve(key) for v in vals):
            raise UsageError(f"--{key.lower()}: every size is at or below the {ex.reserve(key):,} B "
                             f"{ex.hw.name} reserves at {key} (stacks, runtime): nothing to plan")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PlannerError(f"cannot create {out}: {exc}") from None
    # outputs of an earlier run that this one rewrites: renamed to *.stale until rewritten, so an
    # interrupted or failed run never leaves old plots beside a new (partial) CSV
    from planner.explore import LATENCY_PNG, PEAK_PNG
    from planner.outputs import drop_stale, retire
    mine = ([out / PEAK_PNG, out / LATENCY_PNG] if (l1s is not None or l2s is not None) else []) \
        + ([out / MIN_MEMORY_JSON] if args.min_memory else [])
    retire(mine)

    sweep = None
    if l1s is not None or l2s is not None:
        sweep = run_sweep(ex, l1s, l2s, vary, csv_path=out / CSV_FILE)
        if sweep.interrupted:
            return _interrupted(sweep, out / CSV_FILE, args.quiet, table, SUMMARY_HEADERS, summary_rows)
    mins: list[dict] = []
    if args.min_memory:
        l2_config = l2s[0] if l2s is not None and len(l2s) == 1 else ex.real("L2")
        l1_top = max(l1s) if l1s else None
        for combo in combinations(vary, base):
            mins.append(min_memory(ex, combo, l2_config, l1_top))

    written = []
    try:
        if sweep is not None:
            written.append(out / CSV_FILE)  # written row by row during the sweep
            marks = []
            if mins and sweep.axis == "L1":
                marks = [(series_label(m["options"]), m["l1"]) for m in mins if m.get("l1")]
            written += write_plots(sweep, ex, out, marks)
        if args.min_memory:
            (out / MIN_MEMORY_JSON).write_text(min_memory_json(network_label(args.network), ex.hw, mins),
                                               encoding="utf-8")
            written.append(out / MIN_MEMORY_JSON)
    except OSError as exc:
        raise PlannerError(f"cannot write to {out}: {exc}") from None
    drop_stale(mine)

    if sweep is not None and not args.quiet:
        print(f"{sweep.network} on {sweep.hardware_display}: {len(sweep.points)} points")
        print(table(SUMMARY_HEADERS, summary_rows(sweep)))
        n_bad = sum(1 for p in sweep.points if not p.feasible)
        if n_bad:
            print(f"{n_bad} of {len(sweep.points)} points infeasible or unsupported (the reason is in "
                  "the table; the planner's full message in the CSV)")
    if sweep is not None:
        from planner.explore import slower_with_more_memory, switch_explanation
        xs = (lambda o: o.l1) if sweep.axis == "L1" else (lambda o: o.l2)
        for label, a, b in slower_with_more_memory(sweep):
            print(f"note: {sweep.axis} {fmt_bytes(xs(a))} -> {fmt_bytes(xs(b))} ({label}): slower with "
                  f"more memory ({a.latency_ms:.4f} -> {b.latency_ms:.4f} ms): {switch_explanation(a, b)}")
    for m in mins:
        print(_min_line(ex, m, fmt_bytes))
    if written:
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


def _interrupted(sweep, csv_path: Path, quiet: bool, table, headers, summary_rows) -> int:
    """Ctrl-C during the sweep: show what was solved and say that the CSV is partial."""
    if not quiet and sweep.points:
        print(table(headers, summary_rows(sweep)))
    print(f"planner: interrupted after {len(sweep.points)} of {sweep.total} points: {csv_path} holds "
          f"the {len(sweep.points)} finished point(s) (a valid but partial CSV); no plots written "
          "(plots of an earlier run, if any, are now *.stale)", file=sys.stderr)
    return 130


def _min_line(ex, m: dict, fmt_bytes) -> str:
    from planner.explore import series_label
    head = f"min memory ({series_label(m['options'])}, L2 as configured = {fmt_bytes(m['l2_configured'])}): "
    if m["status"] == "unsupported":
        return head + f"unsupported: {m['message']}"
    if m["status"] != "feasible":
        return head + f"none: {m.get('message', 'no plan')}"
    parts = []
    if m.get("l1") is not None:
        parts.append(f"L1 = {fmt_bytes(m['l1'])} ({m['l1_usable']:,} B usable)")
        parts.append(f"then L2 = {fmt_bytes(m['l2'])} ({m['l2_usable']:,} B usable)")
    else:
        parts.append(f"L2 = {fmt_bytes(m['l2'])} ({m['l2_usable']:,} B usable; {ex.hw.name} has no L1)")
    tail = (f"; at that point: L2 peak {m['l2_peak']:,} B, {m['latency_ms']:.4f} ms"
            + (f", MHSA {m['forms']}" if m.get("forms") else ""))
    notes = []
    for key in ("l1_search", "l2_search"):
        s = m.get(key)
        if s:
            notes.append(f"{key[:2].upper()}: {s['solves']} solves" + (f", {s['safety_scan']} scanned" if s["safety_scan"] else ""))
            if s["non_monotone"]:
                notes.append(f"{key[:2].upper()} NOT monotone: " + ", ".join(
                    f"feasible at {fmt_bytes(x['feasible'])} but infeasible at {fmt_bytes(x['infeasible_above'])}"
                    for x in s["non_monotone"][:3]))
    return head + ", ".join(parts) + tail + (" [" + "; ".join(notes) + "]" if notes else "")
