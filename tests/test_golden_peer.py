"""Golden model vs the peer graphs' outputs (bit-exact), fused vs unfused IR on fresh inputs."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import PEER_CASES, peer_case
from planner.cli import main
from planner.frontend import load_graph
from planner.golden import compare_outputs, load_npz_inputs, load_npz_outputs, run_graph

CASES = PEER_CASES or ["<none: ../shared/peer-tests absent>"]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("fuse", [False, True], ids=["raw", "fused"])
def test_peer_case_bit_exact(case: str, fuse: bool) -> None:
    d = peer_case(case)
    graph = load_graph(d / "network.onnx", fuse=fuse)
    inputs = load_npz_inputs(graph, d / "inputs.npz")
    expected = load_npz_outputs(graph, d / "outputs.npz")
    out = run_graph(graph, inputs)
    cmp = compare_outputs([out[o] for o in graph.outputs], expected)
    assert cmp.exact, f"{case}: {cmp.mismatches} of {cmp.total} differ (max |d| {cmp.max_abs_diff})"


@pytest.mark.parametrize("case", CASES)
def test_cli_golden_expect(case: str, capsys) -> None:
    d = peer_case(case)
    rc = main(["golden", str(d / "network.onnx"), "--inputs", str(d / "inputs.npz"),
               "--expect", str(d / "outputs.npz")])
    assert rc == 0
    assert "bit-exact" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["Kernels_Integer_Attention", "Models_EEGFormer"])
@pytest.mark.parametrize("seed", range(3))
def test_fused_mhsa_equals_raw_graph_on_fresh_inputs(case: str, seed: int) -> None:
    """The depth-first MHSA node, the unfused parts and the raw ONNX-level graph agree exactly."""
    d = peer_case(case)
    raw = load_graph(d / "network.onnx", fuse=False)
    fused = load_graph(d / "network.onnx")
    assert [n.op for n in fused.nodes].count("MHSA") == 1
    shape = raw.tensors[raw.inputs[0]].shape
    lo, hi = (0, 256) if case == "Models_EEGFormer" else (-128, 128)
    x = np.random.default_rng(seed).integers(lo, hi, size=shape)
    x.flat[:4] = [lo, hi - 1, lo, hi - 1]
    ref = run_graph(raw, [x])[raw.outputs[0]]
    assert np.array_equal(run_graph(fused, [x])[fused.outputs[0]], ref)
    assert np.array_equal(run_graph(fused, [x], unfused=True)[fused.outputs[0]], ref)


def test_expect_mismatch_exits_1(tmp_path, capsys) -> None:
    d = peer_case("Kernels_Integer_Softmax_Regular")
    out = np.load(d / "outputs.npz")
    bad = {k: v.copy() for k, v in out.items()}
    first = next(iter(bad))
    bad[first].flat[0] += 1
    np.savez(tmp_path / "bad.npz", **bad)
    rc = main(["golden", str(d / "network.onnx"), "--inputs", str(d / "inputs.npz"),
               "--expect", str(tmp_path / "bad.npz")])
    assert rc == 1
    text = capsys.readouterr().out
    assert "1 of 192 elements differ" in text and "max |delta| = 1" in text
