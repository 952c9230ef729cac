"""`planner solve NET.onnx HW.json -o OUT/`: plan.json + report.md, summary on the console."""

from __future__ import annotations

import argparse
from pathlib import Path

from planner.errors import PlannerError, UsageError
from planner.options import argtype, parse_cores, parse_seed, parse_size, parse_time_limit


PLAN_FILE = "plan.json"
REPORT_FILE = "report.md"


def register(sub, commands) -> None:
    p = sub.add_parser("solve", help="tile every layer and plan memory: OUT/plan.json + OUT/report.md",
                       description="Tile every layer and plan memory; write OUT/plan.json and "
                                   "OUT/report.md. When a solve fails, the plan.json and report.md "
                                   "of an earlier run in OUT are renamed to *.stale.")
    p.add_argument("network", help="ONNX file (QuantLib integer graph or QDQ int8 graph)")
    p.add_argument("hw", help="hardware model: hw_models/<name>.json or a bare name (gap9, stm32h7, stm32l4)")
    p.add_argument("-o", "--output", required=True, metavar="OUT/",
                   help="output directory (created if needed)")
    p.add_argument("--dft", default="auto", choices=("auto", "on", "off"),
                   help="depth-first MHSA: auto (per block, by cost model and memory), on, off "
                        "(layer-by-layer, for comparison); default auto")
    p.add_argument("--fwsa", default="auto", choices=("auto", "on", "off"),
                   help="fused-weight self-attention per MHSA block: auto (where it lowers both the "
                        "estimated cycles and the parameters), on (every applicable block), off; "
                        "default auto")
    add_int16_option(p)
    p.add_argument("--inputs", metavar="IN.npz",
                   help="graph inputs (arrays by position) on which the FWSA deviation is measured "
                        "(default: seeded random inputs)")
    p.add_argument("--plan-only", action="store_true",
                   help="plan a network with ops that have no kernel (golden model only); the plan "
                        "is marked not deployable and no C project is written")
    p.add_argument("--l1", type=argtype(parse_size), metavar="BYTES",
                   help="what-if L1 size in bytes (suffix K = 1024, M = 1024^2; up to 4096M); the "
                        "model's reserve for stacks and runtime is kept")
    p.add_argument("--l2", type=argtype(parse_size), metavar="BYTES",
                   help="what-if L2 size, same syntax as --l1")
    p.add_argument("--weights", default="auto", choices=("auto", "l2", "l3"),
                   help="where the weights live: auto (STM32: in flash, read in place or DMA'd "
                        "from it, copied to L2 only where the cost model says it pays; GAP9: in L2 "
                        "as far as they fit), l2 (copied to L2 as far as they fit), l3 (all in L3); "
                        "default auto")
    add_solver_options(p)
    p.add_argument("--no-emit", action="store_true",
                   help="plan only: do not write the C project (OUT/c/)")
    p.add_argument("-q", "--quiet", action="store_true", help="no summary table")
    commands["solve"] = cmd_solve


def add_int16_option(p: argparse.ArgumentParser) -> None:
    """--int16 (QDQ graphs: int16 residual stream, planner/transforms/int16.py)."""
    p.add_argument("--int16", default="auto", metavar="auto|off|TENSOR,...",
                   help="QDQ graphs: keep residual Add outputs in int16 where int8 would lose "
                        ">= 3 bits of the finer Add input (auto, the default), nowhere (off), or "
                        "for the named tensors")


def add_solver_options(p: argparse.ArgumentParser) -> None:
    """Options every planning command shares (solve, explore)."""
    p.add_argument("--cores", type=argtype(parse_cores), metavar="N",
                   help="cores to use (default: the model's cores)")
    p.add_argument("--time-limit", type=argtype(parse_time_limit), default=10.0, metavar="UNITS",
                   help="CP-SAT deterministic time limit per layer, > 0 (default 10)")
    p.add_argument("--seed", type=argtype(parse_seed), default=0, metavar="N",
                   help="random seed of CP-SAT and of the FWSA deviation's random inputs, "
                        "0..2147483647 (default 0)")
    p.add_argument("--input-shape", action="append", metavar="NAME=1x81x32",
                   help="full shape of a graph input with dynamic dimensions (repeatable); "
                        "static dimensions must keep the model's sizes")


def cmd_solve(args: argparse.Namespace) -> int:
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    files = [out / PLAN_FILE, out / REPORT_FILE]
    try:
        return _solve_into(args, out)
    except (PlannerError, KeyboardInterrupt) as exc:
        # the files of an earlier solve must not pass for this run's result
        from planner.outputs import retire
        moved = retire(files)
        if not moved:
            raise
        note = (f"planner: note: the {' and '.join(p.name for p in moved)} of an earlier solve in "
                f"{out} were renamed to *.stale (this solve failed)")
        if isinstance(exc, PlannerError):
            raise type(exc)(f"{exc}\n{note}") from None
        import sys
        print(note, file=sys.stderr)
        raise


def _solve_into(args: argparse.Namespace, out: Path) -> int:
    from planner.frontend.onnx_io import parse_input_shapes
    from planner.outputs import drop_stale, write_atomic
    from planner.report import console_summary, write_report
    from planner.solve import SolveOptions, solve

    _check_sizes(args)
    opts = SolveOptions(dft=args.dft, fwsa=args.fwsa, l1=args.l1, l2=args.l2, cores=args.cores,
                        time_limit=args.time_limit, seed=args.seed,
                        input_shapes=parse_input_shapes(args.input_shape), inputs=args.inputs,
                        int16=args.int16, plan_only=args.plan_only, weights=args.weights)
    sol = solve(args.network, args.hw, opts)
    plan_path, report_path = out / PLAN_FILE, out / REPORT_FILE
    try:
        out.mkdir(parents=True, exist_ok=True)
        emitted = None
        if not args.no_emit and sol.plan.deployable:
            from codegen.project import emit
            emitted = emit(sol.plan, sol.graph, out)
        else:  # a C project of an earlier solve here would not be this plan's
            from codegen.project import PROJECT_DIR
            import shutil
            shutil.rmtree(out / PROJECT_DIR, ignore_errors=True)
        write_atomic(report_path, lambda p: write_report(sol.plan, p))
        write_atomic(plan_path, sol.plan.write)
        drop_stale([plan_path, report_path])
    except OSError as exc:
        raise PlannerError(f"cannot write to {out}: {exc}") from None
    if not args.quiet:
        print(console_summary(sol.plan))
        print(f"\nwrote {PLAN_FILE}, {REPORT_FILE}" + (f" and the C project {emitted.root.name}/"
                                                      if emitted is not None else "") + " in:")
        print(f"  {out}")
    for w in sol.plan.warnings:
        print("\n".join(_wrap(f"planner: warning: {w}")))
    return 0


def _wrap(text: str) -> list[str]:
    from planner.report import CONSOLE_WIDTH
    import textwrap
    return textwrap.wrap(text, CONSOLE_WIDTH, subsequent_indent="  ", break_on_hyphens=False) or [""]


def _check_sizes(args: argparse.Namespace) -> None:
    """--l1/--l2 must leave something above the model's reserve: a usage error, said in the
    option's own terms (explore records such a size as an infeasible point instead)."""
    if args.l1 is None and args.l2 is None:
        return
    from planner.hw import load_hw_model
    hw = load_hw_model(args.hw)
    for key, size in (("L1", args.l1), ("L2", args.l2)):
        if size is None or not hw.has_level(key):
            continue  # a missing level is solve's error, with the levels listed
        reserve = hw.levels[key].reserve
        if size <= reserve:
            raise UsageError(
                f"--{key.lower()} {size:,} B: at or below the {reserve:,} B that '{hw.name}' reserves at "
                f"{key} for stacks and runtime, so nothing would be usable; give more than "
                f"{reserve // 1024 if reserve % 1024 == 0 else reserve:,}{'K' if reserve % 1024 == 0 else ' B'}")
