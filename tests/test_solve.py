"""`planner solve` end to end: plan.json checked independently of the solver (tiles cover their
dims, footprints recomputed from the plan fit), depth-first MHSA peak ratio, memory quality,
determinism, and the error paths."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import pytest

from planner.cli import main
from planner.errors import PlannerError
from planner.solve import SolveOptions, solve

from conftest import EXAMPLES, PEER, REPO as ROOT
from conftest import example_net as _example
from plan_checker import check_plan as _check_plan


def _peer(name: str) -> Path:
    p = PEER / name / "network.onnx"
    if not p.is_file():
        pytest.skip(f"peer test graphs not available: {p} is absent (../shared beside the repo)")
    return p


@lru_cache(maxsize=None)
def _solve(net: str, hw: str, dft: str = "auto", l1: int | None = None, fwsa: str = "auto"):
    sol = solve(net, hw, SolveOptions(dft=dft, l1=l1, fwsa=fwsa))
    return sol.plan.to_dict(), sol.graph


@pytest.mark.parametrize("name", ["eeg_block", "ecg_block", "radar_block"])
def test_examples_gap9_plan_valid(name):
    d, g = _solve(str(_example(name)), "gap9")
    _check_plan(d, g)
    l2 = d["memory"]["L2"]
    assert l2["plan_peak"] <= 1.02 * l2["lower_bound"]
    assert all(l["optimal"] for l in d["layers"])


@pytest.mark.parametrize("hw", ["stm32h7", "stm32l4"])
def test_eeg_block_stm32(hw):
    d, g = _solve(str(_example("eeg_block")), hw)
    _check_plan(d, g)
    assert ("L1" in d["memory"]) == (hw == "stm32h7")
    l2 = d["memory"]["L2"]
    assert l2["plan_peak"] <= 1.02 * l2["lower_bound"]


def test_dft_figures_like_for_like():
    """EEG block (S=81, E=32, P=32, H=8) on GAP9, FWSA applied: both forms at the plan's budget,
    tensors and buffers apart, depth-first's own ratio (standard form) apart from FWSA's."""
    d, _ = _solve(str(_example("eeg_block")), "gap9", "auto", None, "auto")
    (b,) = d["blocks"]
    assert (b["s"], b["e"], b["p"], b["h"]) == (81, 32, 32, 8) and b["fwsa"]["applied"]
    lbl, dft, std = b["layer_by_layer"], b["depth_first"], b["depth_first_standard"]
    for f in (lbl, dft, std):
        assert f["peak_bytes"] == f["tensor_bytes"] + f["buffer_bytes"]
    assert dft["variant"].startswith("FWSA") and not std["variant"].startswith("FWSA")
    assert b["peak_ratio_depth_first"] == round(lbl["peak_bytes"] / std["peak_bytes"], 4)
    assert b["cycles_ratio_depth_first"] == round(std["est_cycles"] / lbl["est_cycles"], 4)
    assert b["peak_ratio_fwsa"] == round(std["peak_bytes"] / dft["peak_bytes"], 4)
    assert b["peak_ratio_chosen"] == round(lbl["peak_bytes"] / dft["peak_bytes"], 4)
    assert std["est_cycles"] == b["fwsa"]["cycles_standard"]  # the figure FWSA was decided on
    # the H x S x S score map never exists depth-first, it does layer by layer
    assert dft["peak_bytes"] < 8 * 81 * 81 < lbl["tensor_bytes"]


def test_min_peak_depth_first_is_a_plan_the_tiler_produces():
    """min_peak_depth_first comes with the compute-level capacity at which the tiler picks that
    tiling: solving at that L1 (capacity + GAP9's L1 reserve) gives exactly that peak and tiles."""
    d, _ = _solve(str(_example("eeg_block")), "gap9", "on", None, "off")
    m = d["blocks"][0]["min_peak_depth_first"]
    reserve = d["memory"]["L1"]["capacity"] - d["memory"]["L1"]["usable"]
    d2, _ = _solve(str(_example("eeg_block")), "gap9", "on", m["capacity"] + reserve, "off")
    got = d2["blocks"][0]["depth_first"]
    assert (got["peak_bytes"], got["tiles"]["h"], got["tiles"]["x"], got["est_cycles"]) == (
        m["peak_bytes"], m["h"], m["x"], m["est_cycles"])
    assert d2["blocks"][0]["min_peak_depth_first"] == m  # nothing lower below that capacity


def test_dft_paper_claim_on_stm32h7():
    """The paper's claim, depth-first alone (standard attention, --fwsa off) against layer by
    layer at the same budget (--l1 22K): peak >= 6.19x lower at <= 1.10x the estimated cycles
    (benchmarks/dft_bench.py shows the budgets around it, and GAP9, where it is not reached)."""
    net = str(_example("eeg_block"))
    d, _ = _solve(net, "stm32h7", "on", 22 * 1024, "off")
    l, _ = _solve(net, "stm32h7", "off", 22 * 1024, "off")
    dft, lbl = d["blocks"][0]["depth_first"], l["blocks"][0]["layer_by_layer"]
    assert lbl["peak_bytes"] / dft["peak_bytes"] >= 6.19
    assert dft["est_cycles"] <= 1.10 * lbl["est_cycles"]


@pytest.mark.parametrize("l1", [128000, 64000, 32000])
def test_peer_graphs_l2_peak(l1):
    d, g = _solve(str(_peer("Kernels_Integer_Attention")), "gap9", "auto", l1)
    _check_plan(d, g)
    assert d["memory"]["L2"]["breakdown"]["activations"] <= 5120
    d, g = _solve(str(_peer("Models_EEGFormer")), "gap9", "auto", l1)
    _check_plan(d, g)
    assert d["memory"]["L2"]["breakdown"]["activations"] <= 38016


def test_deterministic_plan_json(tmp_path):
    net = str(_peer("Models_EEGFormer"))
    for k in (1, 2):
        assert main(["solve", net, "gap9", "-o", str(tmp_path / f"o{k}"), "-q"]) == 0
    a = (tmp_path / "o1" / "plan.json").read_bytes()
    assert a == (tmp_path / "o2" / "plan.json").read_bytes()
    d = json.loads(a)
    for key in ("hardware", "options", "memory", "layers", "blocks", "estimate"):
        assert key in d
    assert (tmp_path / "o1" / "report.md").read_text().startswith("# Deployment plan")


def test_infeasible_network_names_layer_and_missing_bytes(capsys, tmp_path):
    net = str(_example("eeg_block"))
    rc = main(["solve", net, "gap9", "--l1", "12K", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 1
    assert "mhsa0_b0.o.matmul.out" in err and "smallest footprint" in err
    assert "missing at L1" in err


@pytest.mark.parametrize("args,what", [
    (["--cores", "8"], "core"),
    (["--l1", "64K"], "no L1"),
    (["--fwsa", "maybe"], "fwsa"),
    (["--fwsa", "on", "--dft", "off"], "fwsa on needs depth-first"),
    (["--l1", "lots"], "bytes"),
    (["--dft", "maybe"], "dft"),
])
def test_bad_options(capsys, tmp_path, args, what):
    net = str(_peer("Models_EEGFormer"))
    rc = main(["solve", net, "stm32l4", "-o", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err
    assert rc == 2
    assert what.lower() in err.lower()
    assert "Traceback" not in err


def test_time_limit_flagged(monkeypatch):
    """A tiny deterministic limit on the CP-SAT product model (forced for every layer: the
    candidate-table model's selection is exact and needs no limit): the plan is still produced,
    some layer is not proven optimal, and every unproven layer is flagged in the warnings."""
    import planner.tiling.table as table

    monkeypatch.setattr(table, "MAX_ROWS", 0)  # every layer through solve_product
    sol = solve(str(_example("ecg_block")), "gap9", SolveOptions(time_limit=1e-6))
    unproven = [l for l in sol.plan.layers if not l.optimal]
    assert unproven, "a 1e-6 deterministic limit proves nothing on the product model"
    for l in unproven:
        assert l.status == "feasible (time limit)"
        assert any(l.name in w and "not proven optimal" in w for w in sol.plan.warnings)
    assert all(l.optimal for l in solve(str(_example("ecg_block")), "gap9", SolveOptions()).plan.layers)


@pytest.mark.parametrize("text,want", [("64K", 65536), ("64k", 65536), ("1000", 1000),
                                       ("1.5M", 1572864), (" 2K ", 2048), ("1.5K", 1536)])
def test_parse_bytes(text, want):
    from planner.units import parse_bytes
    assert parse_bytes(text) == want


@pytest.mark.parametrize("text", ["-3", "0", "1.3", "K", "", "12KB", "0.1K", "lots"])
def test_parse_bytes_refuses(text):
    from planner.units import parse_bytes
    with pytest.raises(PlannerError, match="bytes"):
        parse_bytes(text)
