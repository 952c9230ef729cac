"""The example networks under examples/ (built by examples/build_examples.py).

Fidelity: float.onnx in onnxruntime equals the builder's numpy forward; the QDQ models run in
onnxruntime; int.onnx, run by the golden model, is bit-exact with outputs.npz (written by the
builder's own copy of SPEC-integer.md §B) and close to the float model (cosine >= 0.99).
Format: the integer graphs follow the QuantLib/Deeploy conventions and §A's constants.
Files stay below 1 MB, and rebuilding reproduces them byte for byte.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = ROOT / "examples"


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_examples", EXAMPLES_DIR / "build_examples.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("build_examples", mod)
    spec.loader.exec_module(mod)
    return mod


be = _load_builder()
CFG = {c.name: c for c in be.EXAMPLES}
NAMES = list(CFG)
QDQ_FILES = [(n, "qdq.onnx") for n in NAMES] + [(n, "qdq_per_channel.onnx") for n in sorted(be.PER_CHANNEL_EXAMPLES)]
# ops that onnxruntime's quantizer must have put between DequantizeLinear and QuantizeLinear
QDQ_OPS = ("MatMul", "Add", "Softmax", "LayerNormalization", "Mul")


def _meta(name):
    return json.loads((EXAMPLES_DIR / name / "meta.json").read_text())


def _float_input(name):
    return np.load(EXAMPLES_DIR / name / "inputs_float.npz")["input"]


def _float_reference(name):
    cfg = CFG[name]
    return be.float_forward(cfg, be.make_weights(cfg), _float_input(name))


def _attr(node, name):
    for a in node.attribute:
        if a.name == name:
            v = onnx.helper.get_attribute_value(a)
            return numpy_helper.to_array(v).reshape(-1)[0] if isinstance(v, onnx.TensorProto) else v
    raise KeyError(f"{node.name}: no attribute {name}")


@pytest.mark.parametrize("name", NAMES)
def test_float_model_matches_numpy_forward(name):
    y = be.run_ort(EXAMPLES_DIR / name / "float.onnx", _float_input(name))
    ref = _float_reference(name)
    assert y.shape == (1, CFG[name].S, CFG[name].E)
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name,fname", QDQ_FILES)
def test_qdq_model_runs_in_onnxruntime(name, fname):
    path = EXAMPLES_DIR / name / fname
    y = be.run_ort(path, _float_input(name))  # graph optimizations disabled
    assert y.shape == (1, CFG[name].S, CFG[name].E) and np.all(np.isfinite(y))
    cos = be.cosine(y, _float_reference(name))
    assert cos >= 0.99
    assert cos == pytest.approx(_meta(name)["fidelity"][f"cosine_{fname[:-5]}_ort_vs_float"], abs=1e-5)
    summary = be._qdq_summary(onnx.load(str(path)))
    for op in QDQ_OPS:
        s = summary[op]
        assert s["inputs_from_dq"] == s["outputs_to_q"] == s["count"], (op, s)
        assert s["float_const_inputs"] == 0, (op, s)


def _golden(name, unfused):
    from planner.frontend import load_graph
    from planner.golden import load_npz_inputs, run_graph

    graph = load_graph(EXAMPLES_DIR / name / "int.onnx")
    inputs = load_npz_inputs(graph, EXAMPLES_DIR / name / "inputs.npz")
    return next(iter(run_graph(graph, inputs, unfused=unfused).values()))


@pytest.mark.parametrize("name", NAMES)
def test_int_model_golden_is_bit_exact_and_close_to_float(name):
    expected = np.load(EXAMPLES_DIR / name / "outputs.npz")["output"].astype(np.int64)
    y = _golden(name, unfused=False)
    assert np.array_equal(y.reshape(expected.shape), expected), "golden model differs from outputs.npz"
    assert np.array_equal(_golden(name, unfused=True).reshape(expected.shape), expected)
    meta = _meta(name)
    cos = be.cosine(y * meta["int_model"]["output_scale"], _float_reference(name))
    assert cos >= 0.99
    assert cos == pytest.approx(meta["fidelity"]["cosine_int_vs_float"], abs=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_int_model_format(name):
    cfg, meta = CFG[name], _meta(name)
    im = meta["int_model"]
    model = onnx.load(str(EXAMPLES_DIR / name / "int.onnx"))
    g = model.graph
    assert [i.name for i in g.input] == ["input"] and [o.name for o in g.output] == ["output"]
    assert g.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in g.input[0].type.tensor_type.shape.dim] == [1, cfg.S, cfg.E]
    for t in g.initializer:
        a = numpy_helper.to_array(t, base_dir=str(EXAMPLES_DIR / name))
        if t.data_type == onnx.TensorProto.FLOAT:
            assert np.array_equal(a, np.round(a)) and np.abs(a).max(initial=0) < 2**24, t.name
    ops = [n.op_type for n in g.node]
    assert ops.count("iSoftmax") == ops.count("iGELU") == cfg.blocks
    assert ops.count("iLayerNorm") == 2 * cfg.blocks
    inits = {t.name: numpy_helper.to_array(t, base_dir=str(EXAMPLES_DIR / name)) for t in g.initializer}
    for n in g.node:
        assert n.domain == ""
        if n.op_type == "RequantShift":
            div = int(_attr(n, "div"))
            assert div >= 2**16 and div & (div - 1) == 0
            assert int(_attr(n, "n_levels_out")) == 256 and int(_attr(n, "signed")) == 1
            mul = int(inits[n.input[1]])
            assert 2**15 <= mul < 2**24
            rq = im["requant"][n.output[0]]
            assert abs(mul / div / rq["ratio"] - 1) < 2**-15
    for b in range(cfg.blocks):
        e = im["scales"][f"b{b}.scores"]
        sm = im["consts"][f"b{b}.softmax"]
        assert sm == {"coeffA": 1, "coeffB": round(1.353 / e), "coeffC": round(0.344 / (0.3585 * e * e)),
                      "log2": round(math.log(2) / e), "n_levels": 256}
        e_b = im["scales"][f"b{b}.fc1"] / math.sqrt(2)
        assert im["consts"][f"b{b}.gelu"] == {"b": round(-1.769 / e_b), "one": round(1 / (e_b * e_b * 0.2888))}
        for ln in ("ln1", "ln2"):
            d = im["consts"][f"b{b}.{ln}"]["D"]
            assert 2**12 <= d <= 2**16 and d & (d - 1) == 0
    x = np.load(EXAMPLES_DIR / name / "inputs.npz")["input"]
    assert x.dtype == np.int8 and x.shape == (1, cfg.S, cfg.E)
    xq = np.clip(np.round(_float_input(name).astype(np.float64) / im["input_scale"]), -128, 127)
    assert np.array_equal(x, xq)


def test_committed_files_are_below_1mb():
    files = [p for p in EXAMPLES_DIR.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert any(p.suffix == ".onnx" for p in files)
    big = [(str(p.relative_to(ROOT)), p.stat().st_size) for p in files if p.stat().st_size >= be.MAX_FILE_BYTES]
    assert not big


def test_rebuild_is_byte_identical(tmp_path):
    name = "ecg_block"  # the smallest example
    be.build_example(CFG[name], tmp_path / name, log=lambda *a: None)
    committed = {p.name: p.read_bytes() for p in (EXAMPLES_DIR / name).iterdir()}
    rebuilt = {p.name: p.read_bytes() for p in (tmp_path / name).iterdir()}
    assert sorted(rebuilt) == sorted(committed)
    differing = [k for k in committed if committed[k] != rebuilt[k]]
    assert not differing, f"rebuilt files differ from the committed ones: {differing}"


# ---- the trained-statistics example (outlier channels, attention rows peaking low) ----------

TRAINED = be.TRAINED.name


def _trained_meta():
    p = EXAMPLES_DIR / TRAINED / "meta.json"
    if not p.exists():
        pytest.skip(f"{p} not built (python examples/build_examples.py --only {TRAINED})")
    return json.loads(p.read_text())


def test_trained_example_float_model_and_statistics():
    meta = _trained_meta()
    cfg = be.TRAINED
    weights = be.make_trained_weights(cfg)
    held = np.load(EXAMPLES_DIR / TRAINED / "heldout_float.npz")["input"]
    assert np.array_equal(held, be.make_trained_inputs(cfg, be._heldout_seed(cfg), len(held)))
    y = be.run_ort(EXAMPLES_DIR / TRAINED / "float.onnx", held[0])
    np.testing.assert_allclose(y, be.float_forward(cfg, weights, held[0]), rtol=1e-4, atol=1e-4)
    # the statistics the README states, recomputed from the committed QDQ model
    calib = be.make_trained_inputs(cfg, be._calib_seed(cfg), be.N_CALIB)
    stats = be.trained_statistics(cfg, weights, calib, onnx.load(str(EXAMPLES_DIR / TRAINED / "qdq.onnx")))
    assert stats == meta["statistics"]
    res = stats["residual"]["b0.res1"]
    assert res["zero_point"] < -100 and res["ordinary_row_std_lsb_median"] < 2  # a row ~ 1 LSB
    for sc in stats["scores"].values():
        assert sc["calibrated_max"] > 10 * sc["row_max_median"]
        assert sc["rows_peaking_below_int8_window"] > 0.9
    summary = be._qdq_summary(onnx.load(str(EXAMPLES_DIR / TRAINED / "qdq.onnx")))
    for op in QDQ_OPS:
        s = summary[op]
        assert s["inputs_from_dq"] == s["outputs_to_q"] == s["count"], (op, s)
