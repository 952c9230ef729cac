"""`planner golden` on a QDQ graph takes real-valued inputs and quantizes them like QuantizeLinear."""

from __future__ import annotations

import numpy as np

from conftest import EXAMPLES
from planner.cli import main
from planner.frontend import load_graph
from planner.frontend.qdq import quantize_input
from planner.golden import run_graph


def test_golden_qdq_float_inputs(tmp_path, capsys) -> None:
    net = EXAMPLES / "eeg_block" / "qdq.onnx"
    inp = EXAMPLES / "eeg_block" / "inputs_float.npz"
    rc = main(["golden", str(net), "--inputs", str(inp), "-o", str(tmp_path / "out.npz")])
    assert rc == 0
    got = np.load(tmp_path / "out.npz")["output_0"]
    graph = load_graph(net)
    x = next(iter(np.load(inp).values()))
    q = quantize_input(graph, graph.inputs[0], x)
    assert q.min() >= -128 and q.max() <= 127 and len(np.unique(q)) > 50
    assert np.array_equal(got, run_graph(graph, [q])[graph.outputs[0]])
