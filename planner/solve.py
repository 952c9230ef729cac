"""`planner solve`: ONNX + hardware model -> Plan (tiles, static memory plan, estimates).

The pipeline, one step a line in `solve()`:
  load the graph (planner.frontend) -> FWSA per MHSA block, priced like for like on the
  depth-first tilings of both forms (planner.mhsa_forms) -> both forms of every block tiled and
  counted, then depth-first or layer by layer per block (--dft; the rule in docs/plan-format.md)
  -> every layer tiled (planner.tiling: descriptions, the generic CP-SAT tiler) and memory planned
  per level, weights in L2 when they fit, else streamed from L3 (planner.placement) -> FWSA
  deviation (golden model) -> Plan (planner.plan_build, planner.plan).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from planner.errors import PlannerError, UsageError
from planner.units import parse_bytes  # noqa: F401  (planner.solve.parse_bytes, kept for callers)

if TYPE_CHECKING:  # the pipeline's modules are imported when solve() runs, not by option parsing
    from planner.hw import HardwareModel
    from planner.ir import Graph
    from planner.plan import Plan


@dataclass
class SolveOptions:
    dft: str = "auto"
    fwsa: str = "off"   # API default kept (callers' baselines); `planner solve` defaults to auto
    l1: int | None = None
    l2: int | None = None
    cores: int | None = None
    time_limit: float = 10.0
    seed: int = 0
    input_shapes: dict | None = None
    inputs: str | Path | None = None   # npz (arrays by position) for the FWSA deviation
    fwsa_samples: int = 4              # seeded random samples for the deviation without inputs
    plan_only: bool = False            # plan a graph with kernel-less ops (marked not deployable)
    int16: str = "off"                 # QDQ int16 residual stream: auto | off | TENSOR,...
    weights: str = "auto"              # where constants live: auto | l2 | l3 (planner.placement)


@dataclass
class Solution:
    plan: Plan
    graph: Graph
    hw: HardwareModel


def solve(network: str | Path, hw_spec: str | Path, opts: SolveOptions | None = None) -> Solution:
    from planner.deployed import network_source
    from planner.frontend import load_graph
    from planner.mhsa_forms import block_forms, choose_forms, decide_fwsa, fwsa_deviation, settle_fwsa
    from planner.placement import place_network
    from planner.plan_build import build_plan

    opts = _checked(opts or SolveOptions())
    hw, cores = _hardware(hw_spec, opts)
    graph = load_graph(network, opts.input_shapes, int16=opts.int16)
    input_model = _input_totals(graph)  # before FWSA (the transforms below change the graph)
    blockers = _deployability(network, graph, opts)
    input_notes: list[str] = []
    inputs = _deviation_inputs(graph, opts, input_notes)
    target = _target(hw, cores, opts)
    fwsa = decide_fwsa(graph, opts.fwsa, opts.dft, target)
    blocks = block_forms(graph, target)
    unfused = choose_forms(graph, blocks, opts.dft, opts.fwsa, target, fwsa)
    fwsa = settle_fwsa(graph, unfused, fwsa)
    placed = place_network(graph, unfused, target, opts.time_limit, opts.seed, opts.weights)
    warnings = input_notes + placed.warnings + _layer_warnings(placed.layers, opts.time_limit)
    deviation = fwsa_deviation(graph, fwsa, inputs, _inputs_name(opts), opts.seed, opts.fwsa_samples) \
        if fwsa else None
    plan = build_plan(network, hw, _options(opts, cores), graph, placed, blocks, fwsa, deviation, warnings,
                      input_model)
    plan.deployable, plan.not_deployable = not blockers, blockers
    plan.source = network_source(network, opts.input_shapes)
    return Solution(plan, graph, hw)


# ---------------------------------------------------------------------------------- the steps


def _input_totals(graph: Graph) -> dict:
    """MACs and weight bytes of the network as loaded (planner inspect's `total`)."""
    from planner.analysis import node_macs
    return {"macs": int(sum(node_macs(graph, n) for n in graph.nodes)),
            "weight_bytes": int(graph.weight_bytes())}


def _checked(opts: SolveOptions) -> SolveOptions:
    if opts.dft not in ("auto", "on", "off"):
        raise UsageError(f"--dft must be auto, on or off, got {opts.dft!r}")
    if opts.fwsa not in ("auto", "on", "off"):
        raise UsageError(f"--fwsa must be auto, on or off, got {opts.fwsa!r}")
    if opts.fwsa == "on" and opts.dft == "off":
        raise UsageError("--fwsa on needs depth-first MHSA blocks (the FWSA kernel is depth-first; "
                         "--dft off plans every block layer by layer): use --dft auto or on")
    if not (math.isfinite(opts.time_limit) and opts.time_limit > 0):
        raise UsageError(f"--time-limit must be a finite number > 0, got {opts.time_limit}")
    if not 0 <= opts.seed < 2**31:
        raise UsageError(f"--seed must be an integer from 0 to {2**31 - 1}, got {opts.seed}")
    from planner.placement import WEIGHTS_MODES
    if opts.weights not in WEIGHTS_MODES:
        raise UsageError(f"--weights must be one of {', '.join(WEIGHTS_MODES)}, got {opts.weights!r}")
    if opts.fwsa_samples < 1:
        raise UsageError(f"FWSA deviation samples must be at least 1, got {opts.fwsa_samples}")
    return opts


def _hardware(hw_spec: str | Path, opts: SolveOptions) -> tuple[HardwareModel, int]:
    """The hardware model with the --l1/--l2 what-if sizes, and the cores used."""
    from planner.hw import load_hw_model, with_overrides

    hw0 = load_hw_model(hw_spec)
    if opts.weights == "l3" and not hw0.has_level("L3"):
        raise UsageError(f"--weights l3: hardware model '{hw0.name}' has no L3 (its levels: "
                         f"{', '.join(hw0.levels)}); use auto or l2")
    if opts.l1 is not None and not hw0.has_level("L1"):
        raise UsageError(f"--l1: hardware model '{hw0.name}' has no L1 (its levels: {', '.join(hw0.levels)})")
    hw = with_overrides(hw0, l1=opts.l1, l2=opts.l2) if (opts.l1 or opts.l2) else hw0
    if opts.cores is None:
        return hw, hw.cores
    if opts.cores < 1 or opts.cores > hw.cores:
        raise UsageError(f"--cores {opts.cores}: hardware model '{hw.name}' has {hw.cores} core"
                         f"{'s' if hw.cores > 1 else ''} (use 1..{hw.cores})")
    return hw, opts.cores


def _deployability(network: str | Path, graph: Graph, opts: SolveOptions) -> list[str]:
    """Nodes without a kernel: an error, unless --plan-only asks for a plan anyway."""
    from planner.tiling.ops import not_deployable

    reasons = not_deployable(graph)
    if reasons and not opts.plan_only:
        raise PlannerError(f"{network}: not deployable: {'; '.join(reasons)}. Use --plan-only for a "
                           "plan without code generation (marked \"deployable\": false)")
    return reasons


def _deviation_inputs(graph: Graph, opts: SolveOptions, notes: list[str]) -> list | None:
    if opts.inputs is None:
        return None
    from planner.golden.io import load_npz_inputs
    return load_npz_inputs(graph, opts.inputs, notes=notes)


def _inputs_name(opts: SolveOptions) -> str | None:
    return None if opts.inputs is None else Path(opts.inputs).name


def _target(hw: HardwareModel, cores: int, opts: SolveOptions):
    from planner.cost import CostParams
    from planner.placement import Target
    from planner.tiling.tiler import Tiler

    # --weights l2 / l3: every step (forms, tiler, placement) sees the constants there; auto
    # starts from the target's default (planner.placement.weights_home may then copy to L2)
    params = CostParams.from_hw(hw, cores, {"l2": "L2", "l3": "L3"}.get(opts.weights))
    if "L2" not in hw.levels:
        raise PlannerError(f"hardware model '{hw.name}' has no L2: the planner keeps activations in L2")
    return Target(hw, params, Tiler(params, hw, opts.time_limit, opts.seed))


def _layer_warnings(layers: list, time_limit: float) -> list[str]:
    out = []
    for l in layers:
        if not l.result.optimal:
            out.append(f"layer {l.node.name}: tiler time limit reached ({time_limit} "
                       "deterministic units): best tiling found, not proven optimal")
        for note in l.desc.variants[0].notes:
            out.append(f"layer {l.node.name}: {note}")
    return out


def _options(opts: SolveOptions, cores: int) -> dict:
    """plan.json `options`: the options as given (file names only, no paths)."""
    return {"dft": opts.dft, "fwsa": opts.fwsa, "int16": opts.int16, "l1": opts.l1, "l2": opts.l2, "cores": cores,
            "time_limit": opts.time_limit, "seed": opts.seed, "inputs": _inputs_name(opts),
            "fwsa_samples": opts.fwsa_samples, "plan_only": opts.plan_only, "weights": opts.weights}
