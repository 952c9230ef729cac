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
                    "level and of the estimated latency. Infeasible points are recorded, not fatal. "
                    "Progress goes to stderr.")
    p.add_argument("network", help="ONNX file (QuantLib integer graph or QDQ int8 graph)")
    p.add_argument("hw", help="hardware model: hw_models/<name>.json or a bare name (gap9, stm32h7, stm32l4)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="output directory")
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
    from planner.explore import (CSV_FILE, MIN_MEMORY_JSON, SUMMARY_HEADERS, Explorer, combinations,
                                 fmt_bytes, min_memory, min_memory_json, network_label, parse_range, parse_vary,
                                 run_sweep, series_label, summary_rows, write_csv, write_plots)
    from planner.frontend.onnx_io import parse_input_shapes
    from planner.solve import SolveOptions

    l1s = parse_range(args.l1, "--l1") if args.l1 is not None else None
    l2s = parse_range(args.l2, "--l2") if args.l2 is not None else None
    vary = parse_vary(args.vary)
    if l1s is None and l2s is None and not args.min_memory:
        raise UsageError("nothing to explore: give --l1 and/or --l2 ranges (e.g. --l1 32K:256K:16K), "
                         "or --min-memory")
    if args.cores is not None and args.cores < 1:
        raise UsageError(f"--cores must be at least 1, got {args.cores}")
    if args.time_limit <= 0:
        raise UsageError(f"--time-limit must be positive, got {args.time_limit}")
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

    sweep = None
    if l1s is not None or l2s is not None:
        sweep = run_sweep(ex, l1s, l2s, vary)
    mins: list[dict] = []
    if args.min_memory:
        l2_config = l2s[0] if l2s is not None and len(l2s) == 1 else ex.real("L2")
        l1_top = max(l1s) if l1s else None
        for combo in combinations(vary, base):
            mins.append(min_memory(ex, combo, l2_config, l1_top))

    written = []
    try:
        if sweep is not None:
            write_csv(sweep, out / CSV_FILE)
            written.append(out / CSV_FILE)
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

    if sweep is not None and not args.quiet:
        print(f"{sweep.network} on {sweep.hardware_display}: {len(sweep.points)} points")
        print(table(SUMMARY_HEADERS, summary_rows(sweep)))
        n_bad = sum(1 for p in sweep.points if not p.feasible)
        if n_bad:
            print(f"{n_bad} of {len(sweep.points)} points infeasible or unsupported (recorded in the CSV)")
    for m in mins:
        print(_min_line(ex, m, fmt_bytes))
    if written:
        print("wrote " + ", ".join(str(p) for p in written))
    return 0


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
