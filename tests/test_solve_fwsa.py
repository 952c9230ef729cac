"""`planner solve` with FWSA (--fwsa auto|on|off): the per-block decision by the cost model, the
fused-weight depth-first tiling description, the deviation figures in plan.json and report.md,
determinism; and the --dft auto rule (docs/plan-format.md)."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from planner.cli import main
from planner.solve import SolveOptions, solve

from conftest import EXAMPLES, PEER, REPO as ROOT
from conftest import example_net as _example


@lru_cache(maxsize=None)
def _solve(name: str, hw: str = "gap9", fwsa: str = "auto", dft: str = "auto", inputs: bool = False,
           l2: int | None = None):
    net = _example(name)
    opts = SolveOptions(fwsa=fwsa, dft=dft, l2=l2,
                        inputs=str(net.parent / "inputs.npz") if inputs else None)
    sol = solve(str(net), hw, opts)
    return sol.plan.to_dict(), sol


def _mhsa_layer(d: dict) -> dict:
    return next(l for l in d["layers"] if l["op"] == "MHSA")


# ------------------------------------------------------------------------------ decisions


def test_auto_applies_fwsa_on_eeg_block():
    """EEG (S=81, E=32, P=32, H=8): P > E/2 and P > E(E+S)/(2E+S): fewer parameters and MACs; the
    cost model prices the fused depth-first tiling below the standard one."""
    d, _ = _solve("eeg_block")
    (b,) = d["blocks"]
    assert (b["s"], b["e"], b["p"], b["h"]) == (81, 32, 32, 8)
    f = b["fwsa"]
    assert f["applied"] and f["form"].startswith("fused-weight")
    assert f["reason"].startswith("auto: lowers both")
    assert f["cycles_fused"] < f["cycles_standard"] and f["params_fused"] < f["params_unfused"]
    assert b["form"] == "depth-first"
    layer = _mhsa_layer(d)
    assert layer["variant"].startswith("FWSA")
    names = {x["name"] for x in layer["buffers"]}
    assert {"wf", "v_h", "istar_rows", "x"} <= names and not names & {"wq", "wk", "k_h", "q_rows"}
    x = next(x for x in layer["buffers"] if x["name"] == "x")
    assert x["bytes"] == 81 * 32  # the key side is X itself, resident for the whole node
    assert layer["macs"] == f["macs_fused"]
    off, _ = _solve("eeg_block", fwsa="off")
    saved = f["params_unfused"] - f["params_fused"]
    assert d["estimate"]["params_bytes"] < off["estimate"]["params_bytes"]
    assert d["estimate"]["macs"] == off["estimate"]["macs"] - (f["macs_unfused"] - f["macs_fused"])
    assert saved > 0


def test_auto_refuses_ecg_block():
    """ECG (S=66, E=16, P=2, H=8): 2.5x the parameters and more cycles: refused."""
    d, _ = _solve("ecg_block")
    (b,) = d["blocks"]
    assert (b["s"], b["e"], b["p"], b["h"]) == (66, 16, 2, 8)
    f = b["fwsa"]
    assert not f["applied"] and f["reason"].startswith("auto: no cycle gain")
    assert f["cycles_fused"] > f["cycles_standard"] and f["param_ratio"] == 2.5
    assert f["deviation"] is None and d["fwsa"] is None
    names = {x["name"] for x in _mhsa_layer(d)["buffers"]} if b["form"] == "depth-first" else set()
    assert "wf" not in names


def test_fwsa_forced_on_and_off():
    on, _ = _solve("ecg_block", fwsa="on")
    f = on["blocks"][0]["fwsa"]
    assert f["applied"] and "forced" in f["reason"]
    assert on["blocks"][0]["form"] == "depth-first"
    assert _mhsa_layer(on)["variant"].startswith("FWSA")
    assert on["fwsa"] is not None and on["fwsa"]["samples"] == 4
    off, _ = _solve("eeg_block", fwsa="off")
    f = off["blocks"][0]["fwsa"]
    assert not f["applied"] and f["reason"] == "--fwsa off" and off["fwsa"] is None
    assert off["options"]["fwsa"] == "off"
    assert not any(l["variant"].startswith("FWSA") for l in off["layers"])


def test_fwsa_on_with_dft_off_is_a_usage_error(capsys, tmp_path):
    rc = main(["solve", str(_example("eeg_block")), "gap9", "--fwsa", "on", "--dft", "off",
               "-o", str(tmp_path / "o")])
    assert rc == 2 and "depth-first" in capsys.readouterr().err


def test_fwsa_auto_with_dft_off_plans_standard():
    d, _ = _solve("eeg_block", dft="off")
    b = d["blocks"][0]
    assert b["form"] == "layer-by-layer" and not b["fwsa"]["applied"]
    assert "--dft off" in b["fwsa"]["reason"]


# ------------------------------------------------------------------------------ deviation


def _fused_scores(node, x: np.ndarray) -> np.ndarray:
    """The FWSA softmax input from its definition (docs/fwsa.md), with the golden model's scalar
    primitives only: per head I* = RQ_i(X.W_f,h^T + b_f,h), scores = RQ_s'(I*.X^T [+ row term])."""
    from planner.golden import ops

    fw = node.attrs["fwsa"]
    x2 = np.asarray(x, np.int64).reshape(-1, x.shape[-1])
    out = []
    for h in range(fw.w_fused.shape[0]):
        def rq(acc, r):
            sel = lambda v: np.asarray(v)[h] if np.asarray(v).size > 1 else v  # noqa: E731
            return ops.requant_shift(acc, sel(r.mul), sel(r.add), r.div, r.n_levels, r.signed)
        istar = rq(x2 @ fw.w_fused[h].T + fw.bias[h], fw.rq_i)
        acc = istar @ x2.T
        if fw.w_row is not None:
            acc = acc + rq((x2 @ fw.w_row[h])[:, None], fw.rq_row)
        out.append(rq(acc, fw.rq_scores))
    return np.stack(out)[None]


def _independent_deviation(graph, samples) -> tuple[int, int]:
    """(softmax max, block output max) in LSB of the fused model against the unfused one, from
    the unfused parts run by the golden model with the FWSA scores (_fused_scores) put in place
    of the unfused ones: no depth-first MHSA, no run_with_probes."""
    from planner.golden.run import run_nodes

    node = next(n for n in graph.nodes if n.op == "MHSA")
    sm, sc = node.attrs["softmax"], node.attrs["scores"]
    dev_p = dev_y = 0
    for sample in samples:
        env = {n: t.data for n, t in graph.tensors.items() if t.is_const}
        env.update({n: np.asarray(a, np.int64) for n, a in zip(graph.inputs, sample)})
        run_nodes(graph.nodes[:graph.nodes.index(node)], env, unfused=True)
        runs = {}
        for fused in (False, True):
            e = dict(env)
            for p in node.parts:
                run_nodes([p], e)
                if fused and p is sc:
                    e[sc.outputs[0]] = _fused_scores(node, env[node.inputs[0]])
            runs[fused] = e
        probs = sm.outputs[0]
        dev_p = max(dev_p, int(np.abs(runs[True][probs] - runs[False][probs]).max()))
        y = node.outputs[0]
        dev_y = max(dev_y, int(np.abs(runs[True][y] - runs[False][y]).max()))
    return dev_p, dev_y


def test_deviation_in_plan_and_report(tmp_path):
    """On the example's own inputs.npz: the plan's deviation figures are the fused model's
    deviation as computed independently from the FWSA definition (not by the code solve uses),
    and report.md shows them."""
    from planner.golden.io import load_npz_inputs

    net = _example("eeg_block")
    d, sol = _solve("eeg_block", inputs=True)
    dev = d["blocks"][0]["fwsa"]["deviation"]
    assert d["fwsa"]["inputs"] == "--inputs inputs.npz" and d["fwsa"]["samples"] == 1
    x = load_npz_inputs(sol.graph, net.parent / "inputs.npz")
    softmax_max, block_max = _independent_deviation(sol.graph, [x])
    assert (dev["softmax_max_abs_lsb"], dev["block_max_abs_lsb"]) == (softmax_max, block_max)
    assert softmax_max > 0 and block_max > 0  # FWSA is a different quantized model
    # docs/fwsa.md's accuracy bound for eeg (softmax <= 30, block output sanity max <= 3)
    assert softmax_max <= 30 and block_max <= 3
    out = tmp_path / "o"
    assert main(["solve", str(net), "gap9", "--inputs", str(net.parent / "inputs.npz"), "-o", str(out),
                 "-q"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    assert plan["blocks"][0]["fwsa"]["deviation"] == dev
    rep = (out / "report.md").read_text()
    assert "## FWSA deviation" in rep
    assert f"softmax output max {softmax_max} LSB" in rep and f"block output max {block_max} LSB" in rep
    assert "parameters 0.75x, MACs 0.89x" in rep


def test_forced_fwsa_deviation_is_measured_independently():
    """--fwsa on on the ECG block (harmful there, forced): the deviation figures over the four
    seeded random samples equal the independent computation on the same samples."""
    from planner.ir import DTYPE_RANGES

    d, sol = _solve("ecg_block", fwsa="on")
    dev = d["blocks"][0]["fwsa"]["deviation"]
    rng = np.random.default_rng(0)  # the documented samples: seed options.seed, uniform per input
    samples = []
    for _ in range(d["options"]["fwsa_samples"]):
        sample = []
        for name in sol.graph.inputs:
            t = sol.graph.tensors[name]
            lo, hi = DTYPE_RANGES[t.dtype]
            sample.append(rng.integers(max(lo, -128), min(hi, 255) + 1, size=t.shape, dtype=np.int64))
        samples.append(sample)
    assert (dev["softmax_max_abs_lsb"], dev["block_max_abs_lsb"]) == _independent_deviation(sol.graph, samples)


def test_deviation_random_inputs_default():
    d, _ = _solve("eeg_block")
    assert d["fwsa"]["samples"] == 4 and "seeded random" in d["fwsa"]["inputs"]
    dev = d["blocks"][0]["fwsa"]["deviation"]
    assert 0 <= dev["softmax_max_abs_lsb"] <= 30 and 0 <= dev["block_max_abs_lsb"] <= 8


def test_deterministic_with_fwsa(tmp_path):
    net = str(_example("eeg_2block"))
    for k in (1, 2):
        assert main(["solve", net, "gap9", "-o", str(tmp_path / f"o{k}"), "-q"]) == 0
    a = (tmp_path / "o1" / "plan.json").read_bytes()
    assert a == (tmp_path / "o2" / "plan.json").read_bytes()
    d = json.loads(a)
    assert all(b["fwsa"]["applied"] for b in d["blocks"])
    assert (tmp_path / "o1" / "report.md").read_bytes() == (tmp_path / "o2" / "report.md").read_bytes()


def test_fwsa_tiling_cpsat_equals_exhaustive():
    """The FWSA depth-first description through the generic tiler: CP-SAT = exhaustive."""
    from types import SimpleNamespace

    from planner.cost import CostParams
    from planner.hw import load_hw_model
    from planner.ir import Graph, Node, Tensor
    from planner.tiling.desc import prune_candidates
    from planner.tiling.ops import BuildContext, describe
    from planner.tiling.solver import exhaustive, solve_product, solve_variant

    s, e, p, h = 6, 4, 2, 2
    T = {"x": Tensor("x", (1, s, e), "int8"), "y": Tensor("y", (1, s, e), "int8"),
         "wf": Tensor("wf", (h, e, e), "int8", np.zeros((h, e, e), np.int64)),
         "bf": Tensor("bf", (h, e), "int32", np.zeros((h, e), np.int64)),
         "wv": Tensor("wv", (h * p, e), "int8", np.zeros((h * p, e), np.int64)),
         "wo": Tensor("wo", (e, h * p), "int8", np.zeros((e, h * p), np.int64))}
    for nm in ("q", "k", "v", "o_h"):
        T[nm] = Tensor(nm, (1, s, h * p), "int8")
    T["sc"], T["pr"] = Tensor("sc", (1, h, s, s), "int8"), Tensor("pr", (1, h, s, s), "uint8")
    T["av"] = Tensor("av", (1, h, s, p), "int8")
    parts = {"q": Node("q", "Linear", ["x", "wv"], ["q"]), "k": Node("k", "Linear", ["x", "wv"], ["k"]),
             "v": Node("v", "Linear", ["x", "wv"], ["v"]), "scores": Node("scores", "MatMul", ["q", "k"], ["sc"]),
             "softmax": Node("softmax", "Softmax", ["sc"], ["pr"], {"kind": "isoftmax"}),
             "av": Node("av", "MatMul", ["pr", "v"], ["av"]), "o": Node("o", "Linear", ["o_h", "wo"], ["y"])}
    fw = SimpleNamespace(rq_i=None, rq_scores=None, rq_row=None, w_row=None)
    node = Node("mhsa", "MHSA", ["x", "wf", "bf", "wv", "", "wo", ""], ["y"],
                {"s": s, "e": e, "p": p, "h": h, "fwsa": fw, "parts": [], **parts})
    g = Graph("g", T, [node], ["x"], ["y"])
    hw = load_hw_model("gap9")
    params = CostParams.from_hw(hw)
    ctx = BuildContext(g, params, hw.isa, params.compute_level)
    desc = describe(ctx, node)
    assert all(v.label.startswith("FWSA") for v in desc.variants)
    for cap in (500, 100000):
        for v in desc.variants:
            ex = exhaustive(params, v, cap)
            for solver in (solve_variant, solve_product):
                r = solver(params, prune_candidates(v, params.cores), cap, time_limit=10)
                assert (r is None) == (ex is None), v.label
                if r is not None:
                    assert r.evaluation.cost == ex.cost, (v.label, r.evaluation.tiles, ex.tiles)


# --------------------------------------------------------------------------- the --dft rule


def test_dft_rule_memory_within_uncertainty():
    """EEG on GAP9: the two forms' cycles are within the cost model's uncertainty, depth-first's
    network L2 need is lower: depth-first, decided by memory; the figures are in plan.json."""
    d, _ = _solve("eeg_block")
    r = d["blocks"][0]["rule"]
    assert r["decided_by"] == "memory" and r["uncertainty"] == 0.25
    assert abs(r["cycles_ratio"] - 1) <= r["uncertainty"]
    need = r["network_l2_need"]
    assert need["depth_first"] < need["layer_by_layer"]
    assert d["memory"]["L2"]["peak"] == need["depth_first"]  # the static plan reaches the bound here


def test_dft_rule_l2_fit():
    """A small L2 (what-if): the network does not fit L2 with the block layer by layer."""
    d, _ = _solve("eeg_block", l2=400 * 1024)
    b = d["blocks"][0]
    assert b["form"] == "depth-first" and b["rule"]["decided_by"] == "L2 fit"
    need = b["rule"]["network_l2_need"]
    assert need["depth_first"] <= b["rule"]["l2_usable"] < need["layer_by_layer"]


def _check_dft_rule(b: dict) -> None:
    """The --dft auto rule on a block where both forms fit: outside the uncertainty band the form
    with fewer estimated cycles, inside it the one with the lower network L2 need."""
    r = b["rule"]
    cd, cl = b["depth_first"]["est_cycles"], b["layer_by_layer"]["est_cycles"]
    need = r["network_l2_need"]
    if max(cd, cl) > (1 + r["uncertainty"]) * min(cd, cl):
        assert r["decided_by"] == "cycles"
        assert b["form"] == ("depth-first" if cd < cl else "layer-by-layer")
    else:
        assert r["decided_by"] == "memory"
        assert b["form"] == ("depth-first" if need["depth_first"] < need["layer_by_layer"]
                             else "layer-by-layer")


def test_dft_rule_without_uncertainty_is_min_cycles(monkeypatch):
    """With no uncertainty band the rule is 'fewer estimated cycles' (EEG, standard attention)."""
    import planner.cost as cost

    monkeypatch.setattr(cost, "UNCERTAINTY_ASSUMED", 0.0)
    sol = solve(str(_example("eeg_block")), "gap9", SolveOptions(fwsa="off"))
    b = sol.plan.blocks[0]
    cd, cl = b["depth_first"]["est_cycles"], b["layer_by_layer"]["est_cycles"]
    assert cd != cl and b["rule"]["decided_by"] == "cycles" and b["rule"]["uncertainty"] == 0.0
    assert b["form"] == ("depth-first" if cd < cl else "layer-by-layer")
    _check_dft_rule(b)


def test_dft_rule_peer_graphs():
    att = PEER / "Kernels_Integer_Attention" / "network.onnx"
    if not att.is_file():
        pytest.skip("peer test graphs not available")
    # EEGFormer on GAP9: the rule as stated (with the calibrated figures the two forms are
    # within the uncertainty and depth-first needs less L2)
    d = solve(str(PEER / "Models_EEGFormer" / "network.onnx"), "gap9").plan.blocks[0]
    _check_dft_rule(d)
    # Attention on STM32L4 (no L1): layer by layer both needs less L2 and, with the measured
    # per-feature figures, takes fewer estimated cycles (about 1.26x, just outside the band:
    # decided by cycles; inside it the L2 need would decide the same way)
    d = solve(str(att), "stm32l4").plan.blocks[0]
    _check_dft_rule(d)
    assert d["form"] == "layer-by-layer"
    assert d["layer_by_layer"]["est_cycles"] < d["depth_first"]["est_cycles"]
    need = d["rule"]["network_l2_need"]
    assert need["layer_by_layer"] < need["depth_first"]
