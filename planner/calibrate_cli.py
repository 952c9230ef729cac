"""`planner calibrate HW.json --target qemu-m7|qemu-m4|qemu-rv32`: the hardware model's cost figures
(kernel_cost, overhead_cycles, qemu_dma_port) fitted to QEMU instruction counts of the kernel
library at the examples' shapes and of the generated examples (planner/calibrate.py,
docs/calibration.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub, commands) -> None:
    p = sub.add_parser(
        "calibrate", help="measure the kernels and the generated examples on QEMU and fit the "
                          "hardware model's cost figures",
        description="Solve the example networks for HW.json (as planned, and layer by layer), run "
                    "every kernel call of the plans and a grid of further shapes on QEMU and count "
                    "its instructions, fit kernel_cost (per feature of the kernels' C code, "
                    "kernel_lib/descriptions.py); then run the deployed examples and fit "
                    "overhead_cycles and qemu_dma_port, and check every layer's estimate. Figures "
                    "are converted through the model's insn_to_cycle, which stays assumed; each "
                    "gets a `_source` saying how it was measured.")
    p.add_argument("hw", help="hardware model: hw_models/<name>.json or a bare name (gap9, stm32h7, stm32l4)")
    p.add_argument("--target", help="QEMU target: qemu-m7 (stm32h7), qemu-m4 (stm32l4), qemu-rv32 "
                                    "(gap9); default: the model's qemu_target")
    p.add_argument("--examples", metavar="NAME,...",
                   help="example networks to take the shapes from (default: every examples/*/int.onnx "
                        "and qdq.onnx)")
    p.add_argument("--plan", action="append", default=[], metavar="OUT/",
                   help="take the shapes from this solved plan (OUT/plan.json) instead of solving the "
                        "examples (repeatable)")
    p.add_argument("--kernels", metavar="KEY,...",
                   help="fit only these kernel_cost keys (the others and the overhead stay)")
    p.add_argument("--no-overhead", action="store_true",
                   help="fit the kernels only (no runs of the generated examples)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--dry-run", action="store_true", help="print the table, write nothing")
    out.add_argument("-o", "--output", metavar="FILE.json",
                     help="write the calibrated model to this file instead of HW.json")
    p.add_argument("--layers", action="store_true",
                   help="also print, per layer of the plans, the measured kernel instructions next "
                        "to the same calls priced with the calibrated figures")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    commands["calibrate"] = cmd_calibrate


def cmd_calibrate(args: argparse.Namespace) -> int:
    from planner import calibrate as cb
    from planner.cli import table
    from planner.errors import UsageError
    from planner.hw import load_hw_model, resolve_hw_path
    from planner.outputs import write_atomic

    hw_path = resolve_hw_path(args.hw)
    hw = load_hw_model(hw_path)
    target = args.target or f"qemu-{hw.qemu_target.replace('x8', '')}"
    examples = [e.strip() for e in args.examples.split(",") if e.strip()] if args.examples else None
    if examples is not None and args.plan:
        raise UsageError("give either --examples or --plan, not both")
    keys = cb.parse_keys(args.kernels)
    plan_dirs = [Path(d) for d in args.plan]
    command = cb.command_line(args.hw, target, examples, plan_dirs, keys)

    def progress(msg: str) -> None:
        if not args.quiet:
            print(f"planner: {msg}", file=sys.stderr, flush=True)

    cal = cb.calibrate(hw_path, target, examples=examples, plan_dirs=plan_dirs, keys=keys,
                       command=command, overhead=not args.no_overhead, progress=progress)
    conv = "assumed" if hw.sources.get("insn_to_cycle", "assumed").lower().startswith("assumed") else "given"
    print(f"{hw.name} on {target}: QEMU instruction counts of {len(cal.measured)} kernel calls "
          f"(markers' {cal.marker_insns} instructions subtracted) from the plans of "
          f"{', '.join(cal.plans)}{' and a grid of shapes' if cal.grid else ''}; stored figures = "
          f"instructions x insn_to_cycle {hw.insn_to_cycle:g} ({conv})")
    rows = []
    for key, r in cal.fits.items():
        for f in r.coefs:
            rows.append([key, f, "-" if f not in r.measured else cb._fmt(r.coefs[f]), f"{r.new[f]:g}",
                         f"{r.previous[f]:g}", r.calls if f == next(iter(r.coefs)) else "",
                         f"{r.ratio[0]:.3f}..{r.ratio[1]:.3f}" if f == next(iter(r.coefs)) else ""])
    print()
    print(table(["key", "feature", "instructions", "new (cycles)", "previous", "calls",
                 "fitted/measured"], rows))
    if cal.skipped:
        print(f"\nnot measured (no calibration case for the kernel): {len(cal.skipped)} layers")
        for line in cal.skipped:
            print(f"  {line}")
    missing = [k for k in (keys or cb.KEYS) if k not in cal.fits]
    if missing:
        print(f"\nnot calibrated (no call counts them): {', '.join(missing)}")
    if cal.overhead is not None:
        print("\noverhead (instructions per count): "
              + ", ".join(f"{k} {cb._fmt(v)}" for k, v in cal.overhead.items())
              + "; QEMU DMA port: " + ", ".join(f"{k} {cb._fmt(v)}" for k, v in (cal.port or {}).items()))
        print(f"largest deviation of a layer's estimate from its QEMU count: {cal.deviation:.3f}")
    if args.layers:
        lrows = []
        for plan, layer, op, meas, est in cb.layer_table(cal):
            lrows.append([plan, layer, op, meas, est, f"{est / meas:.3f}" if meas else "-"])
        print("\nper layer (deployed plans): kernel instructions measured in the harness, and the "
              "same calls priced with the fitted figures")
        print(table(["plan", "layer", "op", "measured", "priced", "priced/measured"], lrows))
        if cal.runs:
            print("\nper layer (the generated examples on QEMU): the estimate of the run and its count")
            print(table(["plan", "layer", "op", "measured", "estimate", "estimate/measured"],
                        [[r.plan, r.layer, r.op, r.total, int(round(r.estimate)), f"{r.ratio:.3f}"]
                         for r in cal.runs]))
    if args.dry_run:
        print("\n--dry-run: nothing written")
        return 0
    dest = Path(args.output) if args.output else hw_path
    text = cb.updated_model_text(hw_path, cal)

    def write(tmp: Path) -> None:
        tmp.write_text(text, encoding="utf-8")
        load_hw_model(tmp)  # the calibrated model must load (schema, ranges, sources)
    write_atomic(dest, write)
    print(f"\nwrote {dest}")
    return 0
