"""Standard ONNX ops in integer graphs: golden model vs onnxruntime on integer-valued float tensors.

All values stay below 2^24, so onnxruntime's float32 arithmetic is exact and any difference is a
golden-model bug (SPEC-integer.md §3: these ops are exact integer operations).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from planner.frontend import load_graph
from planner.golden import run_graph

ort = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency (pip install -e .[test])")


def _run_both(tmp_path, nodes, x_shape, inits, seed=0, lo=-128, hi=128):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x_shape))
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    init = [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()]
    g = helper.make_graph(nodes, "g", [x], [y], init)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "m.onnx"
    onnx.save(model, str(path))
    data = np.random.default_rng(seed).integers(lo, hi, size=x_shape)
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    ref = sess.run(None, {"x": data.astype(np.float32)})[0]
    graph = load_graph(path)
    got = run_graph(graph, [data])[graph.outputs[0]]
    return got, ref


@pytest.mark.parametrize("strides,pads,dil,group", [
    ((1, 1), (0, 0, 0, 0), (1, 1), 1),
    ((2, 2), (3, 3, 3, 3), (1, 1), 1),   # ICCT tokenizer: kernel 3, stride 2, pads 3
    ((1, 2), (1, 0, 2, 1), (2, 1), 1),
    ((1, 1), (1, 1, 1, 1), (1, 1), 4),   # depthwise
])
def test_conv2d(tmp_path, strides, pads, dil, group) -> None:
    rng = np.random.default_rng(1)
    w = rng.integers(-128, 128, size=(4, 4 // group, 3, 3)).astype(np.float32)
    b = rng.integers(-1000, 1000, size=(4,)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w", "b"], ["y"], strides=list(strides), pads=list(pads),
                            dilations=list(dil), group=group, kernel_shape=[3, 3])
    got, ref = _run_both(tmp_path, [node], (1, 4, 9, 8), {"w": w, "b": b})
    assert got.shape == ref.shape and np.array_equal(got, ref.astype(np.int64))


def test_conv1d(tmp_path) -> None:
    w = np.random.default_rng(2).integers(-128, 128, size=(6, 3, 5)).astype(np.float32)
    node = helper.make_node("Conv", ["x", "w"], ["y"], strides=[2], pads=[2, 1], kernel_shape=[5])
    got, ref = _run_both(tmp_path, [node], (1, 3, 17), {"w": w})
    assert np.array_equal(got, ref.astype(np.int64))


@pytest.mark.parametrize("kernel,strides,pads,ceil", [
    ((3, 3), (2, 2), (0, 0, 0, 0), 0),
    ((3, 3), (2, 2), (1, 1, 1, 1), 1),
    ((2, 3), (2, 3), (0, 0, 0, 0), 1),
])
def test_maxpool(tmp_path, kernel, strides, pads, ceil) -> None:
    node = helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=list(kernel), strides=list(strides),
                            pads=list(pads), ceil_mode=ceil)
    got, ref = _run_both(tmp_path, [node], (1, 2, 18, 17), {})
    assert got.shape == ref.shape and np.array_equal(got, ref.astype(np.int64))


def test_layout_and_misc_ops(tmp_path) -> None:
    nodes = [
        helper.make_node("Transpose", ["x"], ["t"], perm=[0, 3, 2, 1]),
        helper.make_node("Reshape", ["t", "shape"], ["r"]),
        helper.make_node("Gather", ["r", "idx"], ["g"], axis=1),
        helper.make_node("Slice", ["g", "starts", "ends", "axes"], ["s"]),
        helper.make_node("Pad", ["s", "pads"], ["p"]),
        helper.make_node("Concat", ["p", "p"], ["c"], axis=-1),
        helper.make_node("Relu", ["c"], ["y"]),
    ]
    inits = {"shape": np.array([1, -1, 4], dtype=np.int64), "idx": np.array([0, 2, 5], dtype=np.int64),
             "starts": np.array([1], dtype=np.int64), "ends": np.array([4], dtype=np.int64),
             "axes": np.array([2], dtype=np.int64), "pads": np.array([0, 1, 0, 0, 0, 2], dtype=np.int64)}
    got, ref = _run_both(tmp_path, nodes, (1, 4, 3, 5), inits)
    assert got.shape == ref.shape and np.array_equal(got, ref.astype(np.int64))


def test_gemm_alpha_beta_and_transposes(tmp_path) -> None:
    rng = np.random.default_rng(3)
    w = rng.integers(-128, 128, size=(6, 5)).astype(np.float32)
    c = rng.integers(-500, 500, size=(4, 6)).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "c"], ["y"], alpha=2.0, beta=3.0, transA=1, transB=1)
    got, ref = _run_both(tmp_path, [node], (5, 4), {"w": w, "c": c})
    assert np.array_equal(got, ref.astype(np.int64))
