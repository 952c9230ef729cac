"""Issue 13, "Bad input": every case a tester tried gives a clear message (file, node or field,
what was expected, what to do), exit 2 for a usage error and 1 for a failure, and no traceback.
Each bad input is built here from an example (edited with the onnx API, a mutated hw JSON, a
hand-made zip), then fed to the CLI entry point in-process."""

from __future__ import annotations

import copy
import json
import re
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import example_net
from planner.cli import main
from planner.hw import HW_DIR


def run(args: list[str], capsys) -> tuple[int, str]:
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    text = cap.out + cap.err
    assert "Traceback" not in text
    return rc, text


def _edited(tmp_path: Path, name: str, edit, example: str = "eeg_block", flavour: str = "int") -> Path:
    model = onnx.load(str(example_net(example, flavour)))
    edit(model.graph)
    out = tmp_path / f"{name}.onnx"
    onnx.save(model, str(out))
    return out


def _init(g: onnx.GraphProto, name: str) -> onnx.TensorProto:
    return next(t for t in g.initializer if t.name == name)


def _set_seq_len(g: onnx.GraphProto, s: int) -> None:
    """A consistent sequence length: the input, the reshape targets and the output."""
    g.input[0].type.tensor_type.shape.dim[1].dim_value = s
    for t in g.initializer:
        if t.name.startswith("shape_"):
            a = numpy_helper.to_array(t).copy()
            a[1] = s
            t.CopyFrom(numpy_helper.from_array(a, t.name))
    for o in g.output:
        if len(o.type.tensor_type.shape.dim) > 1:
            o.type.tensor_type.shape.dim[1].dim_value = s


# ------------------------------------------------------------------------------- tracebacks


def test_input_dimension_edited(tmp_path, capsys):
    """1x100000x32 against reshape targets of S=81: the node whose shapes clash is named."""
    def edit(g):
        g.input[0].type.tensor_type.shape.dim[1].dim_value = 100000
    p = _edited(tmp_path, "s100000", edit)
    rc, text = run(["inspect", p], capsys)
    assert rc == 1
    assert "s100000.onnx" in text and "b0.q.reshape.out" in text and "100000" in text


def test_consistent_huge_sequence_length(tmp_path, capsys):
    """S = 4096 everywhere: the S x S attention map (8 x 4096 x 4096 int64 = 1 GiB) is refused
    before it is allocated, naming the node, instead of a MemoryError after gigabytes."""
    p = _edited(tmp_path, "s4096", lambda g: _set_seq_len(g, 4096))
    np.savez(tmp_path / "in.npz", x=np.zeros((1, 4096, 32), np.int8))
    rc, text = run(["golden", p, "--inputs", tmp_path / "in.npz", "--unfused"], capsys)
    assert rc == 1
    assert "b0.scores.acc.out" in text and "1x8x4096x4096" in text and "134,217,728 elements" in text
    # inspect reads shapes only: it either works (shape inference without the S^2 map) or
    # refuses with the same message, never a traceback
    rc, text = run(["inspect", p], capsys)
    assert rc == 0 or (rc == 1 and "refuses host tensors" in text), text


def test_weight_of_wrong_shape(tmp_path, capsys):
    def edit(g):
        t = _init(g, "b0.q.weight")
        t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t)[:29].copy(), t.name))
    p = _edited(tmp_path, "wshape", edit)
    rc, text = run(["inspect", p], capsys)
    assert rc == 1 and "wshape.onnx" in text and "b0.q.matmul.out" in text and "29" in text


def test_input_shape_wrong_rank_or_overriding_a_static_input(capsys):
    net = example_net("ecg_block")
    rc, text = run(["inspect", net, "--input-shape", "input=1x66"], capsys)
    assert rc == 2 and "gives 2 dimension(s)" in text and "has 3 (1x66x16" in text
    rc, text = run(["inspect", net, "--input-shape", "input=1x70x16"], capsys)
    assert rc == 2 and "dimension 1 of input 'input' is static in the model (66), got 70" in text
    rc, text = run(["inspect", net, "--input-shape", "input=1x66x16"], capsys)  # the same: fine
    assert rc == 0


def _hw_json(tmp_path: Path, name: str, mutate) -> Path:
    d = json.loads((HW_DIR / "gap9.json").read_text())
    mutate(d)
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(d, indent=1))  # json.dumps writes float('nan') as NaN
    return p


@pytest.mark.parametrize("case,mutate,expect", [
    ("nan", lambda d: d["kernel_cost"]["gemm"].__setitem__("mac", float("nan")),
     ["field 'mac'", "NaN is not a JSON number"]),
    ("tiny_bandwidth", lambda d: d["levels"]["L1"].__setitem__("bandwidth_bytes_per_cycle", 1e-300),
     ["levels.L1.bandwidth_bytes_per_cycle", ">= 0.001", "1e-300"]),
    ("huge_size", lambda d: d["levels"]["L2"].update(size=1e30, usable=1e30),
     ["levels.L2.size", "<= 4294967296"]),
    ("huge_frequency", lambda d: d.__setitem__("frequency_hz", 1e30), ["frequency_hz", "<= 10000000000"]),
])
def test_implausible_hardware_figures(tmp_path, capsys, case, mutate, expect):
    hw = _hw_json(tmp_path, case, mutate)
    rc, text = run(["solve", example_net("ecg_block"), hw, "-o", tmp_path / "out", "-q"], capsys)
    assert rc == 1 and f"{case}.json" in text
    for e in expect:
        assert e in text, (e, text)
    assert not (tmp_path / "out" / "plan.json").exists()


@pytest.mark.parametrize("opt,value,expect", [
    ("--l1", "1e30", "above 4096M, the 4 GiB address space"),
    ("--l1", "inf", "finite number of bytes"),
    ("--seed", "-1", "from 0 to 2147483647"),
    ("--time-limit", "nan", "finite number > 0"),
    ("--time-limit", "-3", "finite number > 0"),
    ("--cores", "0", "at least 1 core"),
])
def test_bad_option_values_are_usage_errors(tmp_path, capsys, opt, value, expect):
    for cmd in (["solve"], ["explore", "--l1", "64K"]):
        if cmd[0] == "explore" and opt == "--l1":
            continue  # explore's --l1 is a range: covered by test_explore's range tests
        rc, text = run([cmd[0], example_net("ecg_block"), "gap9", *cmd[1:], f"{opt}={value}",
                        "-o", tmp_path / "o"], capsys)
        assert rc == 2 and f"argument {opt}" in text and expect in text, text


def test_l_size_at_or_below_reserve_is_usage_error(tmp_path, capsys):
    rc, text = run(["solve", example_net("ecg_block"), "gap9", "--l2", "48K", "-o", tmp_path / "o"], capsys)
    assert rc == 2 and "at or below the 262,144 B that 'gap9' reserves at L2" in text


def test_npz_with_garbage_member(tmp_path, capsys):
    p = tmp_path / "garbage.npz"
    with zipfile.ZipFile(p, "w") as z:
        z.writestr("x.npy", b"this is no array")
    rc, text = run(["golden", example_net("eeg_block"), "--inputs", p], capsys)
    assert rc == 1 and "garbage.npz: member 'x' is not a numpy array" in text and "numpy.savez" in text


def test_npz_not_a_zip(tmp_path, capsys):
    p = tmp_path / "broken.npz"
    p.write_bytes(b"PK\x03\x04 and then nothing sensible")
    rc, text = run(["golden", example_net("eeg_block"), "--inputs", p], capsys)
    assert rc == 1 and "broken.npz: not a readable .npz file" in text


# ------------------------------------------------------------------------ runaway memory


@pytest.mark.parametrize("flag,rng,count", [("--l1", "1:1000000000:1", "1,000,000,000"),
                                            ("--l2", "1:100000000:1", "100,000,000")])
def test_explore_counts_points_before_building_them(tmp_path, capsys, flag, rng, count):
    tracemalloc.start()
    try:
        rc, text = run(["explore", example_net("ecg_block"), "gap9", flag, rng, "-o", tmp_path / "x"], capsys)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rc == 2 and f"{count} points (at most 2,000)" in text and flag in text
    assert peak < 20 * 2**20, f"{peak:,} B traced: the grid was built before counting"
    assert not (tmp_path / "x").exists()


def test_explore_counts_the_whole_grid(tmp_path, capsys):
    """Each axis below the cap, their product above it: refused before anything is solved."""
    rc, text = run(["explore", example_net("ecg_block"), "gap9", "--l1", "16K:1015K:1K", "--l2", "300K:1299K:1K",
                    "--vary", "dft", "-o", tmp_path / "x"], capsys)
    assert rc == 2 and "2,000,000 points (1000 L1 x 1000 L2 x 2 option combinations" in text


def test_min_memory_grid_is_not_a_list():
    from planner.explore import _grid
    g = _grid(10240, 4 << 30)  # up to 4 GiB in 1 KiB steps: a range, indexable, not materialized
    assert isinstance(g, range) and len(g) == (4 << 20) - 10 and g[0] == 11 * 1024


# ------------------------------------------------------------------------------ misleading


def test_missing_tensor_names_the_root(tmp_path, capsys):
    def edit(g):
        g.node.remove(next(n for n in g.node if n.name == "b0.q.out.rq"))
    p = _edited(tmp_path, "missing", edit)
    rc, text = run(["inspect", p], capsys)
    assert rc == 1 and "tensor 'b0.q.out'" in text and "b0.q.reshape.out" in text and "not defined" in text
    assert "b0.av.acc.out" not in text  # not the nodes downstream that merely wait for it


def test_duplicated_tensor_names_both_producers(tmp_path, capsys):
    def edit(g):
        next(n for n in g.node if n.name == "b0.q.heads.out").output[0] = "b0.q.out"
    p = _edited(tmp_path, "dup", edit)
    rc, text = run(["inspect", p], capsys)
    assert rc == 1 and "tensor 'b0.q.out' is defined twice" in text
    assert "'b0.q.out.rq' (RequantShift)" in text and "'b0.q.heads.out' (Transpose)" in text


def test_cycle_is_named(tmp_path, capsys):
    x = helper.make_tensor_value_info("x", TensorProto.INT8, [1, 8])
    y = helper.make_tensor_value_info("y", TensorProto.INT8, [1, 8])
    nodes = [helper.make_node("Add", ["x", "c"], ["a"], name="A"),
             helper.make_node("Relu", ["a"], ["b"], name="B"),
             helper.make_node("Relu", ["b"], ["c"], name="C"),
             helper.make_node("Relu", ["c"], ["y"], name="D")]
    m = helper.make_model(helper.make_graph(nodes, "g", [x], [y]), opset_imports=[helper.make_opsetid("", 17)])
    p = tmp_path / "cycle.onnx"
    onnx.save(m, str(p))
    rc, text = run(["inspect", p], capsys)
    assert rc == 1 and "graph has a cycle: B -> C -> A -> B" in text


@pytest.mark.parametrize("value", [0, -3])
def test_zero_or_negative_dimension_is_not_called_dynamic(tmp_path, capsys, value):
    def edit(g):
        g.input[0].type.tensor_type.shape.dim[1].dim_value = value
    rc, text = run(["inspect", _edited(tmp_path, "dim", edit)], capsys)
    assert rc == 1 and f"declares dimension 1 as {value}" in text and "must be positive" in text
    assert "has a dynamic dimension" not in text  # the old, wrong diagnosis


def test_layer_without_room_never_reports_negative_usable(tmp_path, capsys):
    """stm32l4 computes in L2: with --l2 48K (the weights copied to L2, --weights l2; the
    placement then moves them back to flash) the live activations leave the MHSA layer too
    little; the message says what is left instead of a negative usable figure. When what is held
    exceeds the usable bytes (resident weights that cannot move), it says "no room left" and by
    how much (the message function, on the same layer)."""
    rc, text = run(["solve", example_net("radar_block"), "stm32l4", "--l2", "48K", "--weights", "l2",
                    "-o", tmp_path / "o"], capsys)
    assert rc == 1 and "mhsa0_b0.o.matmul.out" in text
    assert not re.search(r"-[\d,]+ B", text), text
    assert "live activations" in text
    left = re.search(r"L2 has ([\d,]+) B left for it \(.*\): ([\d,]+) B missing at L2", text)
    foot = int(re.search(r"smallest footprint is ([\d,]+) B", text).group(1).replace(",", ""))
    assert left and int(left.group(2).replace(",", "")) == foot - int(left.group(1).replace(",", ""))
    from planner.solve import SolveOptions, _target
    from planner.hw import load_hw_model
    from planner.frontend import load_graph
    from planner.tiling.ops import BuildContext, describe
    target = _target(load_hw_model("stm32l4"), 1, SolveOptions())
    g = load_graph(example_net("radar_block"))
    node = next(n for n in g.nodes if n.op == "MHSA")
    desc = describe(BuildContext(g, target.params, "armv7e-m", "L2"), node)
    err = str(target.tiler.infeasible(desc, node, "L2", -512, "16,384 B usable minus 6,144 B of live "
                                      "activations and 10,752 B of resident weights"))
    assert not re.search(r"-[\d,]+ B", err), err
    assert "no room left for it" in err and "resident weights" in err
    m = re.search(r"([\d,]+) B over\): ([\d,]+) B missing at L2", err)
    foot = int(re.search(r"smallest footprint is ([\d,]+) B", err).group(1).replace(",", ""))
    assert m and int(m.group(2).replace(",", "")) == foot + int(m.group(1).replace(",", ""))


def test_weights_placement_not_converging_says_what_to_do(tmp_path, capsys, monkeypatch):
    """One streaming round where two are needed (stm32l4, 64K of L2 with the weights copied to
    L2, --weights l2, streams them back to flash)."""
    import planner.placement
    monkeypatch.setattr(planner.placement, "WEIGHT_ROUNDS", 1)
    rc, text = run(["solve", example_net("eeg_block"), "stm32l4", "--l2", "64K", "--weights", "l2",
                    "-o", tmp_path / "o"], capsys)
    assert rc == 1 and "did not converge in 1 round(s)" in text
    assert re.search(r"[\d,]+ B missing at L2 \(32,768 B usable\)", text) and "--l2" in text


def test_no_tiling_although_the_smallest_fits_is_not_reported_as_missing_bytes(monkeypatch):
    """What --time-limit nan used to produce ('-118,822 B missing'): a tiler that returns nothing
    for a layer that fits is reported as such, with what to try."""
    import planner.solve
    from planner.errors import PlannerError
    from planner.tiling.tiler import Tiler
    monkeypatch.setattr(Tiler, "best", lambda self, desc, cap, stage: None)
    with pytest.raises(PlannerError) as info:
        planner.solve.solve(example_net("ecg_block"), "gap9", planner.solve.SolveOptions(dft="on"))
    msg = str(info.value)
    assert "no tiling found although the smallest one" in msg and "--time-limit" in msg
    assert "missing" not in msg


def test_unknown_input_shape_name_on_every_command(tmp_path, capsys):
    net = example_net("ecg_block")
    for args in (["solve", net, "gap9", "-o", tmp_path / "o"], ["explore", net, "gap9", "--l1", "64K", "-o", tmp_path / "e"],
                 ["golden", net, "--inputs", net.parent / "inputs.npz"]):
        rc, text = run([*args, "--input-shape", "zzz=1x66x16"], capsys)
        assert rc == 2 and "--input-shape names zzz" in text and "graph inputs are: input" in text


# ------------------------------------------------------------------------ silently accepted


def test_duplicate_json_keys(tmp_path, capsys):
    text = (HW_DIR / "gap9.json").read_text().replace('"cores": 8,', '"cores": 8,\n  "cores": 1,', 1)
    p = tmp_path / "dupkey.json"
    p.write_text(text)
    rc, out = run(["solve", example_net("ecg_block"), p, "-o", tmp_path / "o"], capsys)
    assert rc == 1 and "dupkey.json: key 'cores' appears twice in one object" in out


def test_duplicate_initializers(tmp_path, capsys):
    def edit(g):
        g.initializer.append(copy.deepcopy(_init(g, "b0.q.weight")))
    rc, text = run(["inspect", _edited(tmp_path, "dupinit", edit)], capsys)
    assert rc == 1 and "initializer 'b0.q.weight' appears twice" in text


def test_unknown_opset(tmp_path, capsys):
    p = example_net("eeg_block")
    model = onnx.load(str(p))
    model.opset_import[0].version = 999
    out = tmp_path / "opset.onnx"
    onnx.save(model, str(out))
    rc, text = run(["inspect", out], capsys)
    assert rc == 1 and "opset 999" in text and f"knows opsets 1 to {onnx.defs.onnx_opset_version()}" in text


def test_int8_input_values_out_of_range(tmp_path, capsys):
    """A declared int8 input (QDQ: the quantized input) refuses 300 / -1000; an input whose int8
    type the frontend assumed (ONNX float) runs, with a note saying the plan assumes int8."""
    x = np.zeros((1, 81, 32), np.int32)
    x[0, 0, 0], x[0, 1, 1] = 300, -1000
    np.savez(tmp_path / "wide.npz", x=x)
    rc, text = run(["golden", example_net("eeg_block", "qdq"), "--inputs", tmp_path / "wide.npz"], capsys)
    assert rc == 1 and "array 'x' (graph input 'input') has values from -1000 to 300, outside int8" in text
    rc, text = run(["golden", example_net("eeg_block"), "--inputs", tmp_path / "wide.npz"], capsys)
    assert rc == 0 and "note:" in text and "outside int8 [-128, 127], the type assumed for planning" in text


def test_int8_declared_quantlib_input_out_of_range(tmp_path, capsys):
    w = (np.arange(8 * 3, dtype=np.float32).reshape(8, 3) - 10)
    x = helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], "g", [x], [y],
                          [numpy_helper.from_array(w, "w")])
    p = tmp_path / "i8.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    np.savez(tmp_path / "in.npz", x=np.full((1, 4, 8), 300, np.int32))
    rc, text = run(["golden", p, "--inputs", tmp_path / "in.npz"], capsys)
    assert rc == 1 and "outside int8 [-128, 127], its type in the model" in text


def test_surplus_npz_arrays_are_noted(tmp_path, capsys):
    net = example_net("ecg_block")
    x = next(iter(np.load(net.parent / "inputs.npz").values()))
    np.savez(tmp_path / "more.npz", a=x, b=np.zeros(3), c=np.ones(2))
    rc, text = run(["golden", net, "--inputs", tmp_path / "more.npz"], capsys)
    assert rc == 0 and "more.npz: 3 arrays for 1 graph input(s): ignored 'b', 'c'" in text
    out = tmp_path / "plan"
    rc, text = run(["solve", net, "gap9", "--fwsa", "on", "--inputs", tmp_path / "more.npz", "-o", out, "-q"], capsys)
    assert rc == 0 and "ignored 'b', 'c'" in text
    assert any("ignored 'b', 'c'" in w for w in json.loads((out / "plan.json").read_text())["warnings"])
