"""`planner calibrate` (planner/calibrate.py): the kernel calls it derives from a plan add up to the
plan's work; on QEMU it writes figures with sources of the promised form whose values reproduce
an independent measurement of the same kernel at the same shape; bad input is refused with a
clear message; the cost model keeps QEMU-measured figures at the assumed uncertainty while
insn_to_cycle is assumed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

import kernel_lib
from conftest import example_net
from planner import calibrate as cb
from planner import toolchain as tc
from planner.analysis import node_macs
from planner.cli import main
from planner.hw import HW_DIR, load_hw_model
from planner.plan import Plan


@pytest.fixture(scope="module")
def l4_plan(tmp_path_factory) -> Path:
    """ecg_block solved for stm32l4 (no L1: whole tensors, one core)."""
    out = tmp_path_factory.mktemp("calib") / "ecg_l4"
    assert main(["solve", str(example_net("ecg_block")), "stm32l4", "-o", str(out), "--no-emit",
                 "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def gap9_plan(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("calib") / "eeg_gap9"
    assert main(["solve", str(example_net("eeg_block")), "gap9", "-o", str(out), "--no-emit",
                 "-q"]) == 0
    return out


MAC_CALLS = ("linear", "matmul", "matmul_i32", "chunk")  # harness kinds whose work is MACs


def _uses(plan_dir: Path, cores: int):
    plan = Plan.read(plan_dir / "plan.json")
    graph = cb._plan_graph(plan)
    return plan, graph, cb.plan_uses(plan, graph, cores, plan_dir.name, "deployed")


def test_last_share_is_the_busiest_core_of_kl_split():
    for total in (1, 5, 8, 11, 66, 81, 1000):
        for n in (1, 2, 3, 8):
            shares = [(total * (c + 1)) // n - (total * c) // n for c in range(n)]
            assert cb.last_share(total, n) == max(shares) == -(-total // n)


@pytest.mark.parametrize("plan_fixture,cores", [("l4_plan", 1), ("gap9_plan", 8)])
def test_calls_add_up_to_the_plan(plan_fixture, cores, request):
    """One core: the calls' work is every layer's MACs (Linear, MHSA) or output elements; eight
    cores: the busiest core's share, at least 1/8 of it and at most the tiles' ceil shares."""
    plan, graph, uses = _uses(request.getfixturevalue(plan_fixture), cores)
    by_layer: dict[str, list] = {}
    for u in uses:
        by_layer.setdefault(u.layer, []).append(u)
    nodes = {n.name: n for n in graph.nodes}
    for lp in plan.layers:
        mine = by_layer.get(lp.name, [])
        assert mine, lp.name
        node = nodes[lp.name]
        if lp.op in ("Linear", "MHSA"):
            macs = sum(u.count * u.call.work for u in mine if u.call.kind in MAC_CALLS)
            if cores == 1:
                assert macs == node_macs(graph, node), lp.name
            else:
                assert node_macs(graph, node) / cores <= macs < node_macs(graph, node), lp.name
        else:
            out = graph.tensors[node.outputs[0]]
            elems = sum(u.count * u.call.work for u in mine)
            if cores == 1:
                assert elems == out.size, lp.name
            else:
                assert out.size / cores <= elems < out.size, lp.name
        if lp.op == "MHSA":  # the softmax inside the chunks: heads x S x S elements
            isa = load_hw_model(plan.hardware["name"]).isa_path
            sm = sum(u.count * n for u in mine for (k, f), n in u.call.counts(isa).items()
                     if f in ("elem", "wide_elem") and k in ("softmax_lut", "softmax", "mhsa_chunk"))
            a = node.attrs
            if cores == 1:
                assert sm == a["h"] * a["s"] * a["s"]
            else:
                assert a["h"] * a["s"] * a["s"] / cores <= sm < a["h"] * a["s"] * a["s"]
            chunks = [u.call for u in mine if u.call.kind == "chunk"]
            assert chunks and all(c.keys == {"mhsa_chunk"} for c in chunks)


def _need_qemu(target: str) -> None:
    if not tc.available(target):
        pytest.skip(f"{target}: missing {', '.join(tc.missing_tools(target))} "
                    "(Debian: gcc-arm-none-eabi qemu-system-arm)")
    reason = tc.icount_unavailable_reason(target)
    if reason:
        pytest.skip(reason)


DIRECT = r"""
#include <stdint.h>
#include "kernel_lib.h"
#include "platform.h"
/* the layers' real inputs (a golden-model run of the plan's network) */
static const int8_t a[%(n)d] = {%(a)s}, b[%(n)d] = {%(b)s}, x[%(n)d] = {%(x)s};
static int8_t y[%(n)d];
static int32_t w[%(c)d], bias[%(c)d];
int main(void)
{
    int32_t mul_a = %(ma)d, mul_b = %(mb)d, mul_o = %(mo)d, zero = 0, i;
    kl_rq_t ra, rb, ro;
    for (i = 0; i < %(c)d; i++) {
        w[i] = 1000 + 7 * i;
        bias[i] = 3 * i - 20;
    }
    /* a zero add vector, as the generated code passes */
    ra.mul = &mul_a; ra.add = &zero; ra.mul_sb = ra.mul_sr = ra.mul_sc = 0;
    ra.add_sb = ra.add_sr = ra.add_sc = 0; ra.shift = %(sa)d; ra.n_levels = 256; ra.is_signed = 1;
    rb = ra; rb.mul = &mul_b; rb.shift = %(sb)d;
    ro = ra; ro.mul = &mul_o; ro.shift = %(so)d;
    prof_start();
    prof_stop();
    prof_start();
    kl_add_rq(a, 1, %(c)d, &ra, b, 1, %(c)d, &rb, y, %(c)d, %(r)d, %(c)d, &ro, 0, 1);
    prof_stop();
    prof_start();
    kl_ilayernorm(x, %(c)d, y, %(c)d, %(r)d, %(c)d, w, bias, %(ld)d, %(nl)d, 0, 1);
    prof_stop();
    return 0;
}
"""


def test_calibrate_writes_measured_figures(l4_plan, tmp_path):
    """On a small shape set (the ECG plan for stm32l4, two element-wise kernels): -o writes the
    figures, each source says how it was measured, the fitted figures reproduce a direct
    measurement of the same kernels at the same shape and constants (a program of its own, not
    the harness), the other figures and the model in hw_models/ stay."""
    from kernel_lib import descriptions as kd

    target = "qemu-m4"
    _need_qemu(target)
    model = HW_DIR / "stm32l4.json"
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    out = tmp_path / "l4.json"
    rc = main(["calibrate", "hw_models/stm32l4.json", "--target", target, "--plan", str(l4_plan),
               "--kernels", "add,layernorm", "-o", str(out), "-q"])
    assert rc == 0
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before
    old, new = load_hw_model(model), load_hw_model(out)
    data = json.loads(out.read_text())
    for key in set(kd.COST_KEY_SET) - {"add", "layernorm"}:
        assert new.kernel_cost[key] == old.kernel_cost[key], key
        assert new.sources.get(f"kernel_cost.{key}") == old.sources.get(f"kernel_cost.{key}"), key
    cmd = (f"`planner calibrate hw_models/stm32l4.json --target {target} --plan {l4_plan.name} "
           "--kernels add,layernorm`")
    for key in ("add", "layernorm"):
        src = data["_source"][f"kernel_cost.{key}"]
        assert src.startswith(f"measured: QEMU {target} instruction count, {cmd}: "), src
        assert "instructions per count" in src and "fitted/measured" in src
        assert "x insn_to_cycle 1.2 (assumed)" in src
    assert data["_source"]["insn_to_cycle"] == old.sources["insn_to_cycle"]
    # the ECG plan on L4 runs both kernels on whole 66 x 16 tensors: measure them directly, on the
    # layers' real inputs with the plan's own constants (the harness draws data of their spread)
    plan, graph, uses = _uses(l4_plan, 1)
    add_u = next(u for u in uses if u.op == "Add")
    ln_u = next(u for u in uses if u.op == "LayerNorm")
    add, ln = add_u.call, ln_u.call
    rows, cols = add.params[:2]
    assert (rows, cols) == (66, 16) == ln.params[:2]
    ma, sa, mb, sb, mo, so = add.params[4:10]
    env = cb.golden_env(plan)
    nodes = {n.name: n for n in graph.nodes}

    def data(t: str) -> str:
        v = env[t].reshape(-1)
        assert v.size == rows * cols and graph.tensors[t].dtype == "int8"
        return ",".join(str(int(e)) for e in v)
    add_node, ln_node = nodes[add_u.layer], nodes[ln_u.layer]
    src = tmp_path / "direct.c"
    src.write_text(DIRECT % {"n": rows * cols, "c": cols, "r": rows, "ma": ma, "sa": sa, "mb": mb,
                             "sb": sb, "mo": mo, "so": so, "ld": ln.params[2], "nl": ln.params[3],
                             "a": data(add_node.inputs[0]), "b": data(add_node.inputs[1]),
                             "x": data(ln_node.inputs[0])})
    exe = tc.build([src, *kernel_lib.sources()], [kernel_lib.INCLUDE_DIR], target, tmp_path / "direct")
    res = tc.run(exe, target, icount=True)
    assert res.exit_code == 0 and len(res.icount_regions) == 3 and not res.icount_errors
    empty = res.icount_regions[0]  # the markers' own instructions
    isa = new.isa_path
    for call, insns in ((add, res.icount_regions[1]), (ln, res.icount_regions[2])):
        direct = insns - empty
        priced = sum(n * new.kernel_cost[k][f] for (k, f), n in call.counts(isa).items()) / new.insn_to_cycle
        # other data than the harness's (the real tensors, not draws of their spread): the
        # kernels' clipping branches differ a little
        assert priced == pytest.approx(direct, rel=0.02), call.label
        before_fit = sum(n * old.kernel_cost[k][f] for (k, f), n in call.counts(isa).items())
        assert priced * new.insn_to_cycle != before_fit


def test_calibrate_dry_run_writes_nothing(l4_plan, tmp_path, capsys):
    target = "qemu-m4"
    _need_qemu(target)
    model = HW_DIR / "stm32l4.json"
    before = model.read_bytes()
    rc = main(["calibrate", "stm32l4", "--plan", str(l4_plan), "--kernels", "requant", "--dry-run",
               "-q", "--layers"])
    out = capsys.readouterr().out
    assert rc == 0 and model.read_bytes() == before
    assert "requant" in out and "elem" in out and "nothing written" in out
    assert "mhsa0_b0.o.matmul.out" in out  # the per-layer table (the MHSA writeout)


@pytest.mark.parametrize("argv,expect", [
    (["calibrate", "stm32l4", "--target", "qemu-m7"], ["qemu_target", "m4", "--target qemu-m4"]),
    (["calibrate", "stm32l4", "--target", "x86"], ["--target", "qemu-m7"]),
    (["calibrate", "stm32l4", "--kernels", "linear,fft"], ["--kernels", "fft", "known"]),
    (["calibrate", "stm32l4", "--examples", "nope"], ["--examples", "nope", "eeg_block"]),
    (["calibrate", "stm32l4", "--plan", "PLAN", "--dry-run", "-o", "x.json"], ["not allowed"]),
])
def test_calibrate_bad_input(argv, expect, tmp_path, capsys):
    argv = [str(tmp_path / "none") if a == "PLAN" else a for a in argv]
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert "Traceback" not in err
    for word in expect:
        assert word in err, (word, err)


def test_calibrate_plan_of_another_model(gap9_plan, capsys):
    rc = main(["calibrate", "stm32l4", "--plan", str(gap9_plan), "--dry-run"])
    err = capsys.readouterr().err
    assert rc == 2 and "for 'gap9', not 'stm32l4'" in err


def test_qemu_measured_figures_stay_assumed_while_insn_to_cycle_is():
    """A kernel figure measured as a QEMU instruction count becomes cycles through insn_to_cycle:
    it counts as calibrated (the +-5% band) only once insn_to_cycle is."""
    from planner.cost import (UNCERTAINTY_ASSUMED, UNCERTAINTY_CALIBRATED, estimate_uncertainty,
                              rests_on, source_is_assumed)

    hw = load_hw_model("stm32h7")
    measured = ("measured: QEMU qemu-m7 instruction count, `planner calibrate hw_models/stm32h7.json "
                "--target qemu-m7`: ... instructions per count: mac 0.93 ... x insn_to_cycle 1 = cycles "
                "per count")
    assert not source_is_assumed(measured) and rests_on(measured) == ("insn_to_cycle",)
    assert source_is_assumed(measured.replace("insn_to_cycle 1 =", "insn_to_cycle 1 (assumed) ="))
    src = dict(hw.sources, **{"kernel_cost.gemm": measured})
    assumed = dataclasses.replace(hw, sources=src)
    assert source_is_assumed(src["insn_to_cycle"])
    assert estimate_uncertainty(assumed, {"kernel_cost.gemm.mac"}) == UNCERTAINTY_ASSUMED
    board = dict(src, insn_to_cycle="measured: cycles of the kernels on a NUCLEO-H743ZI board, DWT")
    calibrated = dataclasses.replace(hw, sources=board)
    # calibrated: the +-5% band, widened to the estimate's largest measured deviation from the
    # QEMU counts (qemu_estimate_deviation, written by planner calibrate)
    assert estimate_uncertainty(dataclasses.replace(calibrated, qemu_estimate_deviation=None),
                                {"kernel_cost.gemm.mac"}) == UNCERTAINTY_CALIBRATED
    assert estimate_uncertainty(dataclasses.replace(calibrated, qemu_estimate_deviation=0.12),
                                {"kernel_cost.gemm.mac"}) == 0.12
    assert estimate_uncertainty(dataclasses.replace(calibrated, qemu_estimate_deviation=0.01),
                                {"kernel_cost.gemm.mac"}) == UNCERTAINTY_CALIBRATED
    # the committed models: their QEMU figures rest on the assumed insn_to_cycle
    for name in ("stm32h7", "stm32l4", "gap9"):
        m = load_hw_model(name)
        assert estimate_uncertainty(m, {"kernel_cost.gemm.mac"}) == UNCERTAINTY_ASSUMED


def test_layers_without_a_calibration_case_are_reported(l4_plan):
    """A layer whose kernel the harness does not run (e.g. another LayerNorm kernel) is listed as
    not measured instead of being measured as something else."""
    plan = Plan.read(l4_plan / "plan.json")
    graph = cb._plan_graph(plan)
    for lp in plan.layers:
        if lp.op == "LayerNorm":
            lp.kernel = "kl_layernorm_other"
    skipped: list[str] = []
    uses = cb.plan_uses(plan, graph, 1, "ecg", "deployed", skipped)
    assert len(skipped) == 2 and all("kl_layernorm_other" in s and "no calibration case" in s
                                     for s in skipped)
    assert not any(u.op == "LayerNorm" for u in uses) and any(u.op == "Add" for u in uses)
