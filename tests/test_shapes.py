"""Shape inference from the IR op table (planner/ir_ops.py), without running the network: loading
never calls the golden model, the inferred shapes equal the shapes the golden model computes on
every example and peer graph, and the shape step allocates nothing of the tensors' size."""

from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

from planner.frontend import infer_shapes, load_graph
from planner.golden import run as golden_run
from planner.ir import Graph, Node, Tensor
from planner.ir_ops import OPS, output_shapes

from conftest import EXAMPLES, PEER, PEER_CASES, REPO


def _networks() -> list:
    nets = [p for d in sorted(EXAMPLES.iterdir()) if d.is_dir() for p in sorted(d.glob("*.onnx"))
            if p.name != "float.onnx"]
    nets += [PEER / c / "network.onnx" for c in PEER_CASES]
    return nets


NETS = _networks()


def test_op_table_covers_every_golden_op():
    assert set(OPS) == set(golden_run.IMPLS)


def test_load_graph_never_runs_the_golden_model(monkeypatch):
    """Every executor entry point raises: loading must not need any of them."""
    def boom(*a, **k):
        raise AssertionError("the golden model ran during load_graph")

    monkeypatch.setattr(golden_run, "run_graph", boom)
    monkeypatch.setattr(golden_run, "run_nodes", boom)
    for op in list(golden_run.IMPLS):
        monkeypatch.setitem(golden_run.IMPLS, op, boom)
    loaded = 0
    for net in NETS:
        g = load_graph(net)
        assert all(len(g.tensors[o].shape) for o in g.outputs)
        loaded += 1
    assert loaded >= 9  # the examples at least


def test_loading_does_not_import_the_golden_model():
    code = ("import sys; from planner.frontend import load_graph; "
            f"load_graph({str(EXAMPLES / 'eeg_block' / 'int.onnx')!r}); "
            f"load_graph({str(EXAMPLES / 'eeg_block' / 'qdq.onnx')!r}); "
            "print(sorted(m for m in sys.modules if m.startswith('planner.golden')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]"


@pytest.mark.parametrize("net", NETS, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_rule_shapes_equal_golden_shapes(net):
    """The executor's shapes (zeros through every node, fused nodes through their parts) are the
    inferred ones, for every activation of the graph."""
    g = load_graph(net)
    zeros = [np.zeros(g.tensors[i].shape, np.int64) for i in g.inputs]
    with np.errstate(all="ignore"):
        env = golden_run.run_graph(g, zeros, unfused=True, keep_all=True, check_ranges=False)
    checked = 0
    for name, t in g.tensors.items():
        if not t.is_const and name in env:
            assert tuple(env[name].shape) == t.shape, name
            checked += 1
    assert checked >= len(g.nodes)


def test_shape_step_allocates_nothing_of_s_squared():
    """EEG block: the H x S x S score map is 8 x 81 x 81; the golden model on zeros held several
    int64 copies of it (>= 420 KB each). Inferring shapes from the rules stays far below one."""
    g = load_graph(EXAMPLES / "eeg_block" / "int.onnx")
    s_sq = 8 * 81 * 81 * 8
    tracemalloc.start()
    infer_shapes(g)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < s_sq / 10, peak


def _node_shapes(op: str, attrs: dict, shapes: list, consts: dict | None = None) -> tuple[list, list]:
    """(rule shapes, golden shapes) of one node on zero inputs of `shapes`."""
    names = [f"i{k}" for k in range(len(shapes))]
    consts = consts or {}
    tensors = {n: Tensor(n, s, "int8", consts.get(k)) for k, (n, s) in enumerate(zip(names, shapes))}
    node = Node("n", op, names, ["y"], attrs)
    rule = output_shapes(node, lambda t: tensors[t].shape)
    env = {n: (consts[k] if k in consts else np.zeros(s, np.int64)) for k, (n, s) in enumerate(zip(names, shapes))}
    golden_run.run_nodes([node], env)  # checks its outputs against the rule itself
    return rule, [env["y"].shape]


@pytest.mark.parametrize("op,attrs,shapes", [
    ("Reshape", {"shape": [0, -1, 4]}, [(2, 6, 2)]),
    ("Reshape", {"shape": [-1]}, [(3, 5)]),
    ("Transpose", {"perm": None}, [(2, 3, 4)]),
    ("Transpose", {"perm": [0, 2, 3, 1]}, [(1, 2, 3, 4)]),
    ("Squeeze", {"axes": None}, [(1, 3, 1, 2)]),
    ("Squeeze", {"axes": [-1]}, [(3, 1)]),
    ("Unsqueeze", {"axes": [0, -1]}, [(3, 4)]),
    ("Flatten", {"axis": 2}, [(2, 3, 4, 5)]),
    ("Flatten", {"axis": 0}, [(2, 3)]),
    ("Concat", {"axis": -1}, [(2, 3), (2, 5)]),
    ("Gather", {"indices": np.array([[0, 2], [1, 1]]), "axis": 1}, [(4, 3, 2)]),
    ("Gather", {"indices": 2, "axis": 0}, [(4, 3)]),
    ("Slice", {"starts": [1, -3], "ends": [100, -1], "axes": [0, 1], "steps": None}, [(5, 7)]),
    ("Slice", {"starts": [-1], "ends": [-100], "axes": [0], "steps": [-2]}, [(9, 2)]),
    ("Pad", {"pads": [0, 1, 2, 3], "mode": "constant", "value": 0}, [(2, 3)]),
    ("MaxPool", {"kernel": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1], "ceil_mode": True},
     [(1, 2, 8, 7)]),
    ("MaxPool", {"kernel": [2], "strides": None, "pads": None, "ceil_mode": False}, [(1, 2, 9)]),
    ("Mean", {"axes": [-1], "keepdims": True}, [(2, 3, 4)]),
    ("ReduceSum", {"axes": [], "keepdims": False}, [(2, 3)]),
    ("MatMul", {}, [(2, 1, 3, 4), (5, 4, 6)]),
    ("MatMul", {}, [(4,), (2, 4, 3)]),
    ("Add", {}, [(2, 1, 4), (3, 1)]),
    ("Sub", {}, [(3,), (2, 3)]),
])
def test_shape_rules_single_ops(op, attrs, shapes):
    rule, golden = _node_shapes(op, attrs, shapes)
    assert rule == [tuple(s) for s in golden]


@pytest.mark.parametrize("strides,pads,dil,group,x,w", [
    ([2, 1], [1, 0, 2, 1], [1, 2], 1, (1, 4, 9, 8), (6, 4, 3, 2)),
    ([1, 1], None, None, 2, (2, 4, 5, 5), (6, 2, 1, 1)),
    ([3], [1, 2], [2], 1, (1, 2, 17), (3, 2, 4)),
])
def test_shape_rule_conv(strides, pads, dil, group, x, w):
    attrs = {"strides": strides, "pads": pads, "dilations": dil, "group": group}
    rule, golden = _node_shapes("Conv2d", attrs, [x, w], {1: np.zeros(w, np.int64)})
    assert rule == [tuple(s) for s in golden]


def test_bias_and_requant_vectors_broadcast_like_the_golden_model():
    """A Linear's bias or requant vectors may widen its output (numpy broadcasting)."""
    from planner.ir import Requant

    rq = Requant(np.ones((3, 1)), np.zeros(1), 1, 256, True)
    rule, golden = _node_shapes("Linear", {"rq": rq}, [(1, 4), (5, 4), (2, 1, 5)],
                                {1: np.zeros((5, 4), np.int64), 2: np.zeros((2, 1, 5), np.int64)})
    assert rule == [(2, 3, 5)] == [tuple(s) for s in golden]


def test_bad_shapes_name_the_node():
    g = Graph("g", {"x": Tensor("x", (2, 3), "int8"), "y": Tensor("y", (), "int8")},
              [Node("bad_reshape", "Reshape", ["x"], ["y"], {"shape": [4, -1]})], ["x"], ["y"])
    with pytest.raises(ValueError, match="bad_reshape.*cannot reshape"):
        infer_shapes(g)
