"""Every bad-input class gives a clear message (what, where, what to do) and no traceback."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from conftest import PEER_CASES, peer_case
from planner.cli import main


def _save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def _int_linear_model(dims=(1, 4, 8), op: str = "MatMul", float_weights: bool = False) -> onnx.ModelProto:
    w = np.arange(8 * 3, dtype=np.float32).reshape(8, 3) - 10
    if float_weights:
        w = w * 0.37
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(dims))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node(op, ["x", "w"], ["y"], name="the_node")
    g = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(w, "w")])
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    rc = main(args)
    cap = capsys.readouterr()
    return rc, cap.out + cap.err


def test_missing_file(capsys, tmp_path) -> None:
    rc, text = run_cli(["inspect", str(tmp_path / "nope.onnx")], capsys)
    assert rc == 1 and "nope.onnx: no such file" in text


def test_not_onnx(capsys, tmp_path) -> None:
    p = tmp_path / "notes.onnx"
    p.write_text("this is not a model\n" * 20)
    rc, text = run_cli(["inspect", str(p)], capsys)
    assert rc == 1 and "notes.onnx" in text and "not" in text and "ONNX" in text
    assert "Traceback" not in text


def test_truncated(capsys, tmp_path) -> None:
    d = peer_case("Kernels_Integer_Attention")
    data = (d / "network.onnx").read_bytes()
    p = tmp_path / "cut.onnx"
    p.write_bytes(data[: len(data) // 3])
    rc, text = run_cli(["inspect", str(p)], capsys)
    assert rc == 1 and "cut.onnx" in text and "truncated" in text


def test_unsupported_op_names_op_node_and_supported(capsys, tmp_path) -> None:
    p = _save(_int_linear_model(op="Det"), tmp_path / "det.onnx")
    rc, text = run_cli(["inspect", p], capsys)
    assert rc == 1
    assert "'Det'" in text and "the_node" in text and "Supported:" in text and "iSoftmax" in text


def test_float_graph_says_quantize_first(capsys, tmp_path) -> None:
    p = _save(_int_linear_model(float_weights=True), tmp_path / "float.onnx")
    rc, text = run_cli(["inspect", p], capsys)
    assert rc == 1 and "quantize it first" in text and "quantize_static" in text


def test_dynamic_dims_named_and_input_shape_accepted(capsys, tmp_path) -> None:
    p = _save(_int_linear_model(dims=("batch", 4, 8)), tmp_path / "dyn.onnx")
    rc, text = run_cli(["inspect", p], capsys)
    assert rc == 1 and "'x'" in text and "dynamic dimension 0" in text and "'batch'" in text
    assert "--input-shape x=1x" in text
    rc, text = run_cli(["inspect", p, "--input-shape", "x=1x4x8"], capsys)
    assert rc == 0 and "1x4x3" in text


def test_bad_input_shape_syntax_is_usage_error(capsys, tmp_path) -> None:
    p = _save(_int_linear_model(), tmp_path / "m.onnx")
    rc, text = run_cli(["inspect", p, "--input-shape", "x=1xAx8"], capsys)
    assert rc == 2 and "NAME=D1xD2" in text
    rc, text = run_cli(["inspect", p, "--input-shape", "zzz=1x4x8"], capsys)
    assert rc == 2 and "zzz" in text and "graph inputs are: x" in text


def test_npz_too_few_arrays(capsys, tmp_path) -> None:
    d = peer_case("Kernels_Integer_Add_Regular_RQ")
    np.savez(tmp_path / "one.npz", a=np.zeros((1, 128, 128), dtype=np.int8))
    rc, text = run_cli(["golden", str(d / "network.onnx"), "--inputs", str(tmp_path / "one.npz")], capsys)
    assert rc == 1 and "has 1 array(s), the graph needs 2" in text and "by position" in text


def test_npz_wrong_shape(capsys, tmp_path) -> None:
    d = peer_case("Kernels_Integer_Softmax_Regular")
    np.savez(tmp_path / "w.npz", a=np.zeros((1, 3, 8), dtype=np.int8))
    rc, text = run_cli(["golden", str(d / "network.onnx"), "--inputs", str(tmp_path / "w.npz")], capsys)
    assert rc == 1 and "shape [1, 3, 8]" in text and "expects [1, 3, 8, 8]" in text


def test_npz_non_integer_values(capsys, tmp_path) -> None:
    d = peer_case("Kernels_Integer_Softmax_Regular")
    np.savez(tmp_path / "f.npz", a=np.full((1, 3, 8, 8), 0.5, dtype=np.float32))
    rc, text = run_cli(["golden", str(d / "network.onnx"), "--inputs", str(tmp_path / "f.npz")], capsys)
    assert rc == 1 and "must hold integers" in text


def test_no_command_is_usage_error(capsys) -> None:
    rc, _ = run_cli([], capsys)
    assert rc == 2


@pytest.mark.parametrize("case", PEER_CASES or ["<none>"])
def test_inspect_every_peer_graph(case: str, capsys) -> None:
    d = peer_case(case)
    rc, text = run_cli(["inspect", str(d / "network.onnx")], capsys)
    assert rc == 0 and "quantlib graph" in text and "total:" in text
    if case in ("Kernels_Integer_Attention", "Models_EEGFormer"):
        assert "MHSA blocks" in text


def test_golden_names_node_when_int32_accumulator_overflows(capsys, tmp_path) -> None:
    """Weights that push the int32 accumulator out of range: the golden model refuses, naming the node."""
    w = np.full((32, 4), 2**20, dtype=np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 32])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    node = helper.make_node("MatMul", ["x", "w"], ["y"], name="big_mm")
    g = helper.make_graph([node], "g", [x], [y], [numpy_helper.from_array(w, "w")])
    p = _save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), tmp_path / "big.onnx")
    np.savez(tmp_path / "in.npz", x=np.full((1, 32), 127, dtype=np.int8))
    rc, text = run_cli(["golden", p, "--inputs", str(tmp_path / "in.npz")], capsys)
    assert rc == 1 and "big_mm" in text and "int32 range" in text


@pytest.mark.parametrize("example", ["eeg_block", "ecg_block", "radar_block", "eeg_2block"])
@pytest.mark.parametrize("flavour", ["int", "qdq"])
def test_inspect_every_example(example: str, flavour: str, capsys) -> None:
    from conftest import EXAMPLES

    rc, text = run_cli(["inspect", str(EXAMPLES / example / f"{flavour}.onnx")], capsys)
    assert rc == 0
    assert ("quantlib graph" if flavour == "int" else "qdq graph") in text
    meta = __import__("json").loads((EXAMPLES / example / "meta.json").read_text())
    shape = f"S={meta['S']} E={meta['E']} P={meta['P']} H={meta['H']}"
    blocks = 2 if example == "eeg_2block" else 1
    assert text.count(shape) == blocks  # one MHSA row per block in the node table
