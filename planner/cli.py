"""The `planner` command: inspect, golden, solve, explore, run."""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from pathlib import Path
from typing import Callable, Sequence

from planner import __version__
from planner.errors import PlannerError, UsageError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # exit 2 with a one-line hint, as argparse does
        self.print_usage(sys.stderr)
        raise UsageError(message)


def _fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


_NUMERIC = re.compile(r"-?[\d,]+(\.\d+)?(%|x|\*)?")  # formatted figures: 1,234  12.5%  0.75x  9*


def table(headers: list[str], rows: list[list[object]]) -> str:
    """A plain aligned text table (right-aligned numbers)."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]

    def fmt(row: list[str], raw: list[object] | None = None) -> str:
        out = []
        for i, c in enumerate(row):
            num = raw is not None and (isinstance(raw[i], (int, float)) or _NUMERIC.fullmatch(c) is not None)
            out.append(c.rjust(widths[i]) if num else c.ljust(widths[i]))
        return "  ".join(out).rstrip()

    lines = [fmt(headers), "  ".join("-" * w for w in widths)]
    lines += [fmt(c, r) for c, r in zip(cells, rows)]
    return "\n".join(lines)


def inspect_doc(graph, network: str) -> dict:
    """What `inspect` shows, as plain data (the --json document and the text tables)."""
    from planner.analysis import mhsa_blocks, node_macs

    def tensor(name: str) -> dict:
        t = graph.tensors[name]
        return {"name": name, "shape": list(t.shape), "dtype": t.dtype}

    nodes = []
    for n in graph.nodes:
        out = graph.tensors[n.outputs[0]]
        entry: dict = {"name": n.name, "op": n.op,
                       "inputs": [tensor(i) for i in graph.activation_inputs(n)],
                       "output": tensor(n.outputs[0]), "macs": int(node_macs(graph, n)),
                       "weight_bytes": int(graph.weight_bytes([n]))}
        if n.attrs.get("rq") is not None:
            entry["requant"] = n.attrs["rq"].granularity(out.shape)
        if n.op == "Softmax":
            entry["softmax"] = n.attrs["kind"]
        if n.op == "MHSA":
            entry["mhsa"] = {k: int(n.attrs[k]) for k in ("s", "e", "p", "h")}
        nodes.append(entry)
    blocks = [{"node": b.node, "s": b.s, "e": b.e, "p": b.p, "h": b.h, "softmax": b.softmax,
               "fwsa": {"params_unfused": b.fwsa.params_unfused, "params_fused": b.fwsa.params_fused,
                        "macs_unfused": b.fwsa.macs_unfused, "macs_fused": b.fwsa.macs_fused,
                        "param_ratio": round(b.fwsa.param_ratio, 4),
                        "mac_ratio": round(b.fwsa.mac_ratio, 4), "pays": b.fwsa.pays}}
              for b in mhsa_blocks(graph)]
    return {
        "network": network, "graph": graph.name, "flavour": graph.flavour,
        "inputs": [tensor(i) for i in graph.inputs], "outputs": [tensor(o) for o in graph.outputs],
        "nodes": nodes,
        "total": {"macs": sum(n["macs"] for n in nodes), "weight_bytes": int(graph.weight_bytes()),
                  "counted": "the network as loaded: standard Q/K weights, before any FWSA fusion "
                             "solve may apply; weight bytes = the graph's constant tensors, without "
                             "the kernels' requantization vectors and softmax tables, which solve "
                             "counts apart (plan.json estimate.counted)"},
        "mhsa_blocks": blocks,
        "notes": list(graph.notes),
    }


def cmd_inspect(args: argparse.Namespace) -> int:
    import json

    from planner.frontend import load_graph
    from planner.frontend.onnx_io import parse_input_shapes

    graph = load_graph(args.network, parse_input_shapes(args.input_shape), int16=args.int16)
    doc = inspect_doc(graph, str(args.network))
    if args.json:
        print(json.dumps(doc, indent=1, sort_keys=True))
        return 0
    print(f"{args.network}: {graph.flavour} graph '{graph.name}', {len(graph.nodes)} nodes")
    for key, label in (("inputs", "input "), ("outputs", "output")):
        for t in doc[key]:
            print(f"  {label} {t['name']}: {_fmt_shape(t['shape'])} {t['dtype']}")
    rows = []
    for n in doc["nodes"]:
        ins = ", ".join(_fmt_shape(i["shape"]) for i in n["inputs"])
        out = n["output"]
        detail = ""
        if "requant" in n:
            detail = "rq " + n["requant"]
        if "softmax" in n:
            detail = n["softmax"]
        if "mhsa" in n:
            detail = " ".join(f"{k.upper()}={v}" for k, v in n["mhsa"].items())
        rows.append([n["name"], n["op"], ins, f"{_fmt_shape(out['shape'])} {out['dtype']}", n["macs"],
                     n["weight_bytes"], detail])
    print()
    print(table(["node", "op", "inputs", "output", "MACs", "weight B", "detail"], rows))
    import textwrap
    print()
    print("\n".join(textwrap.wrap(
        f"total: {doc['total']['macs']:,} MACs, {doc['total']['weight_bytes']:,} weight bytes "
        f"({doc['total']['counted']})", 99, subsequent_indent="  ")))
    if doc["mhsa_blocks"]:
        print("\nMHSA blocks (FWSA = fused Q/K weights; ratios are fused/standard for the whole block):")
        brows = [[b["node"], b["s"], b["e"], b["p"], b["h"], b["softmax"] or "none",
                  f"{b['fwsa']['param_ratio']:.2f}", f"{b['fwsa']['mac_ratio']:.2f}",
                  "yes" if b["fwsa"]["pays"] else "no (harmful)"] for b in doc["mhsa_blocks"]]
        print(table(["block", "S", "E", "P", "H", "softmax", "params ratio", "MACs ratio",
                     "FWSA pays"], brows))
    else:
        print("\nno MHSA block detected")
    for note in graph.notes:
        print(f"note: {note}")
    return 0


def cmd_golden(args: argparse.Namespace) -> int:
    import numpy as np

    from planner.frontend import load_graph
    from planner.frontend.onnx_io import parse_input_shapes
    from planner.golden import compare_outputs, load_npz_inputs, load_npz_outputs, run_graph

    if args.plan:
        if args.network or args.unfused or args.input_shape:
            raise UsageError("--plan runs the model the plan deploys (its network, input shapes and "
                             "forms come from plan.json): give no NETWORK, --unfused or --input-shape")
        from planner.deployed import deployed_graph
        from planner.plan import Plan

        try:
            plan = Plan.read(args.plan)
        except OSError as exc:
            raise PlannerError(f"{args.plan}: cannot read the plan ({exc.strerror})") from None
        except (ValueError, KeyError, TypeError) as exc:
            raise PlannerError(f"{args.plan}: not a plan.json of planner solve ({exc})") from None
        graph = deployed_graph(plan)
    elif not args.network:
        raise UsageError("give the NETWORK to run, or --plan OUT/plan.json for the deployed model")
    else:
        graph = load_graph(args.network, parse_input_shapes(args.input_shape), int16=args.int16)
    notes: list[str] = []
    inputs = load_npz_inputs(graph, args.inputs, notes=notes)
    if args.expect:
        expected = load_npz_outputs(graph, args.expect, notes=notes)
    for note in notes:
        print(f"planner: note: {note}", file=sys.stderr)
    outs = run_graph(graph, inputs, unfused=args.unfused)
    results = [outs[o] for o in graph.outputs]
    if args.output:
        np.savez(args.output, **{f"output_{k}": r for k, r in enumerate(results)})
        print(f"wrote {args.output}")
    if args.expect:
        cmp = compare_outputs(results, expected)
        if cmp.exact:
            print(f"bit-exact ({cmp.total} elements)")
            return 0
        print(f"MISMATCH: {cmp.mismatches} of {cmp.total} elements differ, max |delta| = {cmp.max_abs_diff}")
        return 1
    if not args.output:
        for name, r in zip(graph.outputs, results):
            print(f"{name}: shape {_fmt_shape(r.shape)}, min {r.min()}, max {r.max()}")
    return 0


Command = Callable[[argparse.Namespace], int]


def add_int16_option(p: argparse.ArgumentParser) -> None:
    from planner.solve_cli import add_int16_option as add
    add(p)


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = _Parser(prog="planner", description="Tiling and memory planner for int8 Tiny "
                     "Transformers on MCUs (GAP9, STM32H7, STM32L4).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands: dict[str, Command] = {}

    parser.add_argument("--version", action="version", version=f"planner {__version__}",
                        help="print the planner's version and exit")

    def shape_opt(p: argparse.ArgumentParser) -> None:
        p.add_argument("--input-shape", action="append", metavar="NAME=1x81x32",
                       help="full shape of a graph input with dynamic dimensions (repeatable); "
                            "static dimensions must keep the model's sizes")

    p = sub.add_parser("inspect", help="show the canonical integer graph as understood")
    p.add_argument("network", help="ONNX file (QuantLib integer graph or QDQ int8 graph)")
    p.add_argument("--json", action="store_true",
                   help="print the graph as one JSON document (inputs, nodes, totals, MHSA blocks, "
                        "notes) instead of tables")
    shape_opt(p)
    add_int16_option(p)
    commands["inspect"] = cmd_inspect

    p = sub.add_parser("golden", help="run the bit-exact integer golden model")
    p.add_argument("network", nargs="?", help="ONNX file, QuantLib integer graph or QDQ int8 graph "
                   "(omit with --plan)")
    p.add_argument("--plan", metavar="OUT/plan.json",
                   help="run exactly the model the plan deploys (its FWSA forms included): the "
                        "reference the generated C must match")
    p.add_argument("--inputs", required=True, metavar="IN.npz",
                   help="k-th array feeds the k-th graph input (names irrelevant; surplus arrays "
                        "are ignored with a note)")
    p.add_argument("-o", "--output", metavar="OUT.npz",
                   help="write the outputs (output_0, output_1, ... in graph order) to this .npz")
    p.add_argument("--expect", metavar="EXPECTED.npz",
                   help="compare with expected outputs (k-th array = k-th graph output); exit 1 on "
                        "any mismatch")
    p.add_argument("--unfused", action="store_true", help="run fused blocks through their parts")
    shape_opt(p)
    add_int16_option(p)
    commands["golden"] = cmd_golden

    for register in _extra_commands():
        register(sub, commands)
    return parser, commands


def _extra_commands() -> list[Callable]:
    """Subcommands that live in their own modules (solve, explore, run) when present."""
    found = []
    for module in ("planner.solve_cli", "planner.explore_cli", "planner.run_cli", "planner.calibrate_cli"):
        try:
            mod = __import__(module, fromlist=["register"])
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        found.append(mod.register)
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help, --version: argparse printed and wants to exit
            return int(exc.code or 0)
        if not args.command:
            parser.print_help()
            return 2
        return commands[args.command](args)
    except PlannerError as exc:
        print(f"planner: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("planner: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into e.g. `head`, which stopped reading
        try:
            sys.stdout = open(os.devnull, "w")  # no second error when Python flushes at exit
        except OSError:
            pass
        return 141


def console_main(argv: Sequence[str] | None = None) -> int:
    """The `planner` process (console script, `python -m planner`): main() with the cyclic
    collector tuned for a short-lived process. Importing numpy, onnx and Mako leaves ~50 k
    long-lived tracked objects; the collector's full sweep over them while they are created, and
    the freeing of every cyclic structure while the interpreter shuts down, were 11-14 % of a
    `planner solve` (benchmarks/README.md, Start-up). Young generations still collect as usual (short-lived cycles such as tracebacks);
    only full sweeps wait ten times longer. Not for in-process callers: freezing is permanent."""
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, 100)
    code = main(argv)
    gc.freeze()  # what is left at exit is freed without one more full sweep
    return code


if __name__ == "__main__":
    sys.exit(console_main())
