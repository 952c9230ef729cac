"""The integer model a plan deploys: the network file the plan was made from (plan.source), with
the plan's FWSA decisions applied. Its golden-model run is what the emitted C must match."""

from __future__ import annotations

import hashlib
from pathlib import Path

from planner.errors import PlannerError
from planner.ir import Graph
from planner.plan import Plan


def deployed_graph(plan: Plan) -> Graph:
    from planner.frontend import load_graph
    from planner.transforms.fwsa import fuse_qk

    src = plan.source or {}
    path = Path(src.get("path", ""))
    if not src or not path.is_file():
        raise PlannerError(f"the network file the plan was made from ({path or plan.network}) is not "
                           "there any more: re-run planner solve")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != src.get("sha256"):
        raise PlannerError(f"the network file {path} changed since the plan was made (SHA-256 "
                           f"{digest[:12]}... vs {str(src.get('sha256'))[:12]}... in plan.json): "
                           "re-run planner solve")
    shapes = {k: tuple(v) for k, v in (src.get("input_shapes") or {}).items()}
    graph = load_graph(path, shapes or None, int16=plan.options.get("int16") or "off")
    fused = {b["node"] for b in plan.blocks if (b.get("fwsa") or {}).get("applied")}
    for node in graph.nodes:
        if node.op == "MHSA" and node.name in fused:
            fuse_qk(graph, node)
    return graph


def planning_graph(plan: Plan, graph: Graph) -> Graph:
    """The graph in the plan's schedule form: MHSA blocks planned layer by layer as their parts."""
    import copy
    lbl = {b["node"] for b in plan.blocks if b.get("form") == "layer-by-layer"}
    nodes = []
    for n in graph.nodes:
        nodes.extend(n.parts if n.op == "MHSA" and n.name in lbl else [n])
    g = copy.copy(graph)
    g.nodes = nodes
    return g
