"""The model a plan deploys: the network it was made from, in the forms the plan chose.

`deployed_graph(plan)` reloads the ONNX file recorded in plan.json (`source`: resolved path,
sha256 of its bytes and of its external data files, the input shapes given on the command line)
and applies the plan's FWSA decisions, so that `run_graph(deployed_graph(plan), inputs)` is what
the generated C must match bit for bit. Blocks planned layer by layer run unfused; a fused block
runs its FWSA form (the golden model's depth-first MHSA equals the unfused parts exactly
otherwise). The code generator and `planner run` call it; `planner golden --plan` runs it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from planner.errors import PlannerError
from planner.ir import Graph
from planner.plan import Plan


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _external_files(path: Path) -> list[str]:
    """Relative locations of the external data files an ONNX model refers to, sorted."""
    import onnx

    with open(path, "rb") as f:  # every external tensor names its file under the key "location"
        if b"location" not in f.read():
            return []
    model = onnx.load(str(path), load_external_data=False)
    found = set()
    for t in model.graph.initializer:
        if t.data_location == onnx.TensorProto.EXTERNAL:
            for entry in t.external_data:
                if entry.key == "location":
                    found.add(entry.value)
    return sorted(found)


def network_source(path: str | Path, input_shapes: dict | None) -> dict:
    """plan.json `source`: where the network came from and how to rebuild the same graph."""
    p = Path(path).resolve()
    external = {name: _sha256(p.parent / name) for name in _external_files(p)}
    return {"path": str(p), "sha256": _sha256(p), "external_data": external,
            "input_shapes": None if not input_shapes else
            {k: list(v) for k, v in sorted(input_shapes.items())}}


def _check_source(src: dict) -> Path:
    path = Path(src["path"])
    if not path.is_file():
        raise PlannerError(f"the network file the plan was made from is missing: {path}; restore it "
                           "or re-run planner solve")
    if _sha256(path) != src["sha256"]:
        raise PlannerError(f"the network file {path} changed since the plan was made (sha256 "
                           f"{src['sha256'][:12]}… recorded): re-run planner solve")
    for name, digest in (src.get("external_data") or {}).items():
        ext = path.parent / name
        if not ext.is_file() or _sha256(ext) != digest:
            raise PlannerError(f"the external data file {ext} of {path.name} is missing or changed "
                               "since the plan was made: re-run planner solve")
    return path


def deployed_graph(plan: Plan) -> Graph:
    """The IR graph that `plan` deploys (see the module doc). PlannerError when the network file
    is missing or changed, or when the plan does not match the graph it rebuilds."""
    from planner.frontend import load_graph
    from planner.transforms.fwsa import fuse_qk

    if not plan.source:
        raise PlannerError("plan.json has no `source` (made by an older planner): re-run planner "
                           "solve to record the network it deploys")
    path = _check_source(plan.source)
    shapes = plan.source.get("input_shapes") or {}
    graph = load_graph(path, {k: tuple(v) for k, v in shapes.items()},
                       int16=(plan.options or {}).get("int16") or "off")
    mhsa = {n.name: n for n in graph.nodes if n.op == "MHSA"}
    for b in plan.blocks:
        f = b.get("fwsa") or {}
        if not f.get("applied"):
            continue
        node = mhsa.get(b["node"])
        if node is None:
            raise PlannerError(f"plan block {b['node']} is not an MHSA block of {path.name}: the plan "
                               "was made by another planner version; re-run planner solve")
        how = f.get("fused_with") or {}
        fuse_qk(graph, node, granularity=how.get("granularity", "row"), scale=how.get("scale", "l2"),
                row_term=how.get("row_term"))
    names = {n.name for n in graph.nodes} | {p.name for n in graph.nodes for p in n.parts}
    missing = [name for name in plan.schedule if name not in names]
    if missing:
        raise PlannerError(f"plan layers {', '.join(missing[:5])} are not nodes of {path.name}: the "
                           "plan was made by another planner version; re-run planner solve")
    return graph


def planning_graph(plan: Plan, graph: Graph) -> Graph:
    """The graph in the plan's schedule form: MHSA blocks planned layer by layer as their parts
    (the form the golden model runs to give every layer's output)."""
    import copy
    lbl = {b["node"] for b in plan.blocks if b.get("form") == "layer-by-layer"}
    nodes = []
    for n in graph.nodes:
        nodes.extend(n.parts if n.op == "MHSA" and n.name in lbl else [n])
    g = copy.copy(graph)
    g.nodes = nodes
    return g
