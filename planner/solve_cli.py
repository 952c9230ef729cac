"""`planner solve NET.onnx HW.json -o OUT/`: plan.json + report.md, summary on the console."""

from __future__ import annotations

import argparse
from pathlib import Path

from planner.errors import PlannerError, UsageError


def _bytes_arg(text: str) -> int:
    from planner.units import parse_bytes
    try:
        return parse_bytes(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def register(sub, commands) -> None:
    p = sub.add_parser("solve", help="tile every layer and plan memory: OUT/plan.json + OUT/report.md")
    p.add_argument("network", help="ONNX file (QuantLib integer graph or QDQ int8 graph)")
    p.add_argument("hw", help="hardware model: hw_models/<name>.json or a bare name (gap9, stm32h7, stm32l4)")
    p.add_argument("-o", "--output", required=True, metavar="OUT/", help="output directory")
    p.add_argument("--dft", default="auto", choices=("auto", "on", "off"),
                   help="depth-first MHSA: auto (per block, by cost model and memory), on, off "
                        "(layer-by-layer, for comparison); default auto")
    p.add_argument("--fwsa", default="auto", choices=("auto", "on", "off"),
                   help="fused-weight self-attention per MHSA block: auto (where it lowers both the "
                        "estimated cycles and the parameters), on (every applicable block), off; "
                        "default auto")
    p.add_argument("--inputs", metavar="IN.npz",
                   help="graph inputs (arrays by position) on which the FWSA deviation is measured "
                        "(default: seeded random inputs)")
    p.add_argument("--plan-only", action="store_true",
                   help="plan a network with ops that have no kernel (golden model only); the plan "
                        "is marked not deployable and codegen refuses it")
    p.add_argument("--l1", type=_bytes_arg, metavar="BYTES", help="what-if L1 size (suffix K = 1024, M)")
    p.add_argument("--l2", type=_bytes_arg, metavar="BYTES", help="what-if L2 size (suffix K = 1024, M)")
    add_solver_options(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no summary table")
    commands["solve"] = cmd_solve


def add_solver_options(p: argparse.ArgumentParser) -> None:
    """Options every planning command shares (solve, explore)."""
    p.add_argument("--cores", type=int, metavar="N", help="cores to use (default: the model's cores)")
    p.add_argument("--time-limit", type=float, default=10.0, metavar="UNITS",
                   help="CP-SAT deterministic time limit per layer (default 10)")
    p.add_argument("--seed", type=int, default=0, help="CP-SAT random seed (default 0)")
    p.add_argument("--input-shape", action="append", metavar="NAME=1x81x32",
                   help="static shape of a graph input with dynamic dimensions (repeatable)")


def cmd_solve(args: argparse.Namespace) -> int:
    from planner.frontend.onnx_io import parse_input_shapes
    from planner.report import console_summary, write_report
    from planner.solve import SolveOptions, solve

    if args.cores is not None and args.cores < 1:
        raise UsageError(f"--cores must be at least 1, got {args.cores}")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise UsageError(f"-o {out}: exists and is not a directory")
    opts = SolveOptions(dft=args.dft, fwsa=args.fwsa, l1=args.l1, l2=args.l2, cores=args.cores,
                        time_limit=args.time_limit, seed=args.seed,
                        input_shapes=parse_input_shapes(args.input_shape), inputs=args.inputs,
                        plan_only=args.plan_only)
    sol = solve(args.network, args.hw, opts)
    try:
        out.mkdir(parents=True, exist_ok=True)
        sol.plan.write(out / "plan.json")
        write_report(sol.plan, out / "report.md")
    except OSError as exc:
        raise PlannerError(f"cannot write to {out}: {exc}") from None
    if not args.quiet:
        print(console_summary(sol.plan))
        print(f"\nwrote {out / 'plan.json'} and {out / 'report.md'}")
    for w in sol.plan.warnings:
        print(f"planner: warning: {w}")
    return 0
