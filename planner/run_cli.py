"""`planner run OUT/ --target host`: build and run the emitted C project, bit-exact check."""

from __future__ import annotations

import argparse


def register(sub, commands) -> None:
    p = sub.add_parser("run", help="build and run the emitted C project (OUT/c/), compare with the "
                                   "golden model bit for bit")
    p.add_argument("output", metavar="OUT/", help="output directory of planner solve")
    p.add_argument("--target", default="host",
                   help="where to run it: host (default; threads as cores, emulated DMA), qemu-m7 "
                        "(STM32H7 plans, QEMU mps2-an500), qemu-m4 (STM32L4 plans, mps2-an386)")
    p.add_argument("--inputs", metavar="IN.npz",
                   help="graph inputs (arrays by position, as planner golden); default: seeded random "
                        "values over each input's integer range")
    p.add_argument("--seed", type=int, default=0, help="seed of the random inputs (default 0)")
    p.add_argument("--sanitize", choices=("address", "thread"),
                   help="build with AddressSanitizer+UBSan (address) or ThreadSanitizer (thread)")
    p.add_argument("--check-layers", action="store_true",
                   help="compare every layer's output with the golden model (names the first bad layer)")
    p.add_argument("--fault", metavar="drop-wait:LAYER",
                   help="fault injection: build without the first DMA wait of LAYER (name or step); "
                        "the run must then report a mismatch")
    p.add_argument("--timeout", type=float, default=120.0, metavar="S",
                   help="kill the program after S seconds (default 120)")
    commands["run"] = cmd_run


def cmd_run(args: argparse.Namespace) -> int:
    from planner.run import RunOptions, run

    res = run(args.output, RunOptions(target=args.target, inputs=args.inputs, sanitize=args.sanitize,
                                      check_layers=args.check_layers, fault=args.fault,
                                      timeout=args.timeout, seed=args.seed))
    san = f", {args.sanitize} sanitizer" if args.sanitize else ""
    fault = f", fault: first DMA wait of {res.fault_layer} dropped" if res.fault_layer else ""
    print(f"{args.output}: built for {args.target}{san}{fault} ({res.build_s:.1f} s)")
    if res.exact:
        checked = f", {len(res.layers)} layer outputs too" if res.layers else ""
        print(f"bit-exact: {res.total} output elements equal the golden model's{checked}")
    else:
        print(f"MISMATCH: {res.mismatches} of {res.total} output elements differ, max |delta| {res.max_abs}")
        if res.first_bad_layer is not None:
            lc = res.first_bad_layer
            print(f"first mismatching layer: {lc.name} (step {lc.index}): {lc.mismatches} of {lc.total} "
                  f"elements, max |delta| {lc.max_abs}")
    if res.host_ns is not None:
        print(f"net_run: {res.host_ns / 1e6:.3f} ms host wall time (this machine, not target time)")
    if res.measured is not None:
        print(measured_table(res.measured))
        if res.measured.get("sizes"):
            print(sizes_line(res.measured["sizes"], res.plan_code_estimate))
        print(f"wrote {args.output.rstrip('/')}/measured.json")
    return 0 if res.exact else 1


def sizes_line(sz: dict, estimate: int | None) -> str:
    """The built ELF's footprint, one wrapped paragraph (KiB = 1024 B)."""
    import textwrap

    from planner.units import human_bytes
    ro, rw = sz["read_only"], sz["read_write"]
    img = sum(ro["weights_images"].values())
    est = f" (plan.json estimated {human_bytes(estimate)})" if estimate else ""
    arenas = ", ".join(f"{k} {human_bytes(v)}" for k, v in rw["arenas"].items()) or "none"
    text = (f"ELF (measured, {sz['tool']}; KiB = 1024 B): read-only {human_bytes(ro['total'])} = code "
            f"{human_bytes(ro['code'])}{est} + weights images {human_bytes(img)} + runtime tables "
            f"{human_bytes(ro['runtime_tables'])} + test inputs {human_bytes(ro['test_inputs'])}; RAM "
            f"arenas {arenas}, runtime and platform data {human_bytes(rw['data_bss'])}")
    return "\n".join(textwrap.wrap(text, 99, subsequent_indent="  "))


def measured_table(m: dict) -> str:
    from planner.cli import table
    rows = [[x["name"], x["op"], x["instructions"], x["estimate_instructions"],
             f"{x['estimate_over_measured']:.2f}" if x["estimate_over_measured"] is not None else "-",
             f"{100 * (x['outside_kernels'] or 0) / x['instructions']:.1f}%" if x["instructions"] else "-"]
            for x in m["layers"]]
    t = m["network_total"]
    rows.append(["network", "", t["instructions"], t["estimate_instructions"],
                 f"{t['estimate_instructions'] / t['instructions']:.2f}" if t["instructions"] else "-",
                 f"{100 * (t['outside_kernels_share'] or 0):.1f}%"])
    head = ["layer", "op", "instructions", "estimate", "est/meas", "outside kernels"]
    return (f"instruction counts on {m['target']} (QEMU: instructions, not cycles; estimate = the "
            f"cost model's estimate of this run: cost terms / insn_to_cycle {m['insn_to_cycle']:g} + "
            f"the QEMU DMA port's copies):\n" + table(head, rows))
