#!/usr/bin/env python3
"""Fidelity of frontend B (QDQ → integer IR) against onnxruntime and float; prints markdown.

    python scripts/qdq_fidelity.py                 # everything (about 40 s)
    python scripts/qdq_fidelity.py --only sweeps   # sweeps | small | blocks

1. Sweeps of each derivation against float (SPEC §A): iSoftmax rows, iLayerNorm rows, iGELU over
   the int8 range, and the fixed-point requantization multipliers.
2. Small graphs with only Linear/MatMul/Add, built here from seeded weights and quantized with
   onnxruntime's quantize_static: fraction of outputs within 1 LSB of onnxruntime.
3. Whole encoder blocks (examples/*/qdq*.onnx when present, the trained-statistics example
   outlier_2block, and a small block built here): max |Δ| in LSB and cosine of the dequantized
   output against onnxruntime and float, per block and end to end; the default lowering, with
   --int16 auto (and its planned memory/cycle cost), and the previous lowering.
4. The local check: every op fed onnxruntime's own inputs against onnxruntime's result of the
   same op; ops over 1 LSB are flagged (local_errors).

onnxruntime runs the same QDQ graph with graph_optimization_level = ORT_DISABLE_ALL, so every
QuantizeLinear/DequantizeLinear is evaluated literally; ours is planner.golden.run_graph on
planner.frontend.load_graph(path). The graph builders are reused by tests/test_qdq.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from planner.frontend.qdq import (QdqOptions, dequantize_output, load_qdq_graph,  # noqa: E402
                                  quantize_input)
from planner.frontend.qdq_fixed import (LN2, fixed_point, igelu_consts,  # noqa: E402
                                        ilayernorm_consts, isoftmax_consts, layernorm_qdq_consts,
                                        requant_rel_error, make_requant)
from planner.golden import ops, run_graph  # noqa: E402

OPSET = 17
EXAMPLES = ROOT / "examples"
BLOCK_FILES = [("eeg_block", "qdq.onnx"), ("eeg_block", "qdq_per_channel.onnx"),
               ("ecg_block", "qdq.onnx"), ("radar_block", "qdq.onnx"), ("eeg_2block", "qdq.onnx")]


# ------------------------------------------------------------------------------------------
# onnxruntime helpers
# ------------------------------------------------------------------------------------------

def ort_session(path_or_bytes):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    src = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(src, so, providers=["CPUExecutionProvider"])


def quantize(float_model: onnx.ModelProto, calib: list[dict], per_channel: bool = False,
             activation_type: str = "QInt8", weight_symmetric: bool = True) -> onnx.ModelProto:
    """onnxruntime's quantize_static (QDQ, MinMax, asymmetric activations) on a float model."""
    import logging

    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter(calib)

        def get_next(self):
            return next(self.it, None)

        def rewind(self):
            self.it = iter(calib)

    logging.getLogger().setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as td:
        src, dst = Path(td) / "f.onnx", Path(td) / "q.onnx"
        onnx.save(float_model, str(src))
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                            per_channel=per_channel, reduce_range=False,
                            activation_type=getattr(QuantType, activation_type),
                            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
                            extra_options={"ActivationSymmetric": False,
                                           "WeightSymmetric": weight_symmetric})
        return onnx.load(str(dst))


# ------------------------------------------------------------------------------------------
# small float graphs (seeded)
# ------------------------------------------------------------------------------------------

def _model(nodes, inputs, outputs, inits, name="g") -> onnx.ModelProto:
    graph = helper.make_graph(nodes, name, inputs, outputs,
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    return model


def _vi(name, shape):
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape))


@dataclass
class SmallCase:
    name: str
    model: onnx.ModelProto          # float
    calib: list[dict]
    test: list[dict]
    per_channel: bool = False
    activation_type: str = "QInt8"
    weight_symmetric: bool = True


def small_cases(seed: int = 7, n_calib: int = 8, n_test: int = 8) -> list[SmallCase]:
    """Graphs with only Linear/MatMul/Add (the ≤1-LSB criterion)."""
    rng = np.random.default_rng(seed)
    S, K, N = 32, 48, 40
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731

    def feeds(shapes, n, shift=None):
        out = []
        for _ in range(n):
            d = {}
            for k, shp in shapes.items():
                v = rng.normal(0.0, 1.0, shp)
                if shift and k in shift:
                    v = v * shift[k][1] + shift[k][0]
                d[k] = f32(v)
            out.append(d)
        return out

    cases = []
    w = f32(rng.normal(0, 1 / math.sqrt(K), (K, N)))
    b = f32(rng.normal(0, 0.1, N))
    lin = _model([helper.make_node("MatMul", ["x", "W"], ["mm"]),
                  helper.make_node("Add", ["mm", "b"], ["y"])],
                 [_vi("x", (1, S, K))], [_vi("y", (1, S, N))], {"W": w, "b": b}, "linear")
    shift = {"x": (0.4, 1.0)}  # asymmetric input range: non-zero activation zero point
    cases.append(SmallCase("Linear (MatMul+Add, per-tensor)", lin, feeds({"x": (1, S, K)}, n_calib, shift),
                           feeds({"x": (1, S, K)}, n_test, shift)))
    # per-channel: columns with very different magnitudes
    wpc = f32(w * np.exp(rng.normal(0, 1.0, (1, N))))
    lin_pc = _model([helper.make_node("MatMul", ["x", "W"], ["mm"]),
                     helper.make_node("Add", ["mm", "b"], ["y"])],
                    [_vi("x", (1, S, K))], [_vi("y", (1, S, N))], {"W": wpc, "b": b}, "linear_pc")
    cases.append(SmallCase("Linear (per-channel weights)", lin_pc, feeds({"x": (1, S, K)}, n_calib, shift),
                           feeds({"x": (1, S, K)}, n_test, shift), per_channel=True))
    gemm = _model([helper.make_node("Gemm", ["x", "Wt", "b"], ["y"], transB=1)],
                  [_vi("x", (S, K))], [_vi("y", (S, N))], {"Wt": f32(w.T), "b": b}, "gemm")
    cases.append(SmallCase("Linear (Gemm, int32 bias)", gemm, feeds({"x": (S, K)}, n_calib, shift),
                           feeds({"x": (S, K)}, n_test, shift)))
    cases.append(SmallCase("Linear (uint8 activations)", lin, feeds({"x": (1, S, K)}, n_calib, shift),
                           feeds({"x": (1, S, K)}, n_test, shift), activation_type="QUInt8"))
    cases.append(SmallCase("Linear (asymmetric int8 weights, zp_w ≠ 0)", lin,
                           feeds({"x": (1, S, K)}, n_calib, shift), feeds({"x": (1, S, K)}, n_test, shift),
                           weight_symmetric=False))
    mm = _model([helper.make_node("MatMul", ["a", "b"], ["y"])],
                [_vi("a", (1, 2, S, K)), _vi("b", (1, 2, K, S))], [_vi("y", (1, 2, S, S))], {}, "matmul")
    sh2 = {"a": (0.5, 1.0), "b": (-0.7, 0.8)}
    cases.append(SmallCase("MatMul of two activations (zp ≠ 0)", mm,
                           feeds({"a": (1, 2, S, K), "b": (1, 2, K, S)}, n_calib, sh2),
                           feeds({"a": (1, 2, S, K), "b": (1, 2, K, S)}, n_test, sh2)))
    add = _model([helper.make_node("Add", ["a", "b"], ["y"])],
                 [_vi("a", (1, S, N)), _vi("b", (1, S, N))], [_vi("y", (1, S, N))], {}, "add")
    sh3 = {"a": (0.3, 2.0), "b": (-0.2, 0.5)}
    cases.append(SmallCase("Add of two activations", add,
                           feeds({"a": (1, S, N), "b": (1, S, N)}, n_calib, sh3),
                           feeds({"a": (1, S, N), "b": (1, S, N)}, n_test, sh3)))
    return cases


def block_model(S=16, E=16, H=2, P=8, F=64, seed=11, variant: int = 0) -> onnx.ModelProto:
    """A one-block pre-LN encoder (PyTorch-export style) written with onnx.helper.

    variant 0: GELU as Div(√2) → Erf → Add(1) → Mul(x) → Mul(0.5), scores scaled by Mul(1/√P);
    variant 1: GELU as Mul(1/√2) → Erf → Add(1), (x*0.5) * (1+erf), scores divided by √P."""
    rng = np.random.default_rng(seed)
    HP = H * P
    f32 = lambda a: np.asarray(a, dtype=np.float32)  # noqa: E731
    inits = {}
    nodes = []

    def lin(name, x, fi, fo):
        inits[f"{name}.w"] = f32(rng.normal(0, 1 / math.sqrt(fi), (fi, fo)))
        inits[f"{name}.b"] = f32(rng.normal(0, 0.05, fo))
        nodes.append(helper.make_node("MatMul", [x, f"{name}.w"], [f"{name}.mm"], name=f"{name}.mm"))
        nodes.append(helper.make_node("Add", [f"{name}.mm", f"{name}.b"], [f"{name}.out"], name=name))
        return f"{name}.out"

    def ln(name, x):
        inits[f"{name}.g"] = f32(1 + rng.normal(0, 0.1, E))
        inits[f"{name}.b"] = f32(rng.normal(0, 0.05, E))
        nodes.append(helper.make_node("LayerNormalization", [x, f"{name}.g", f"{name}.b"],
                                      [f"{name}.out"], name=name, axis=-1, epsilon=1e-5))
        return f"{name}.out"

    inits["shp4"] = np.array([1, S, H, P], dtype=np.int64)
    inits["shp3"] = np.array([1, S, HP], dtype=np.int64)
    h = ln("ln1", "input")
    heads = {}
    for nm, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        t = lin(nm, h, E, HP)
        nodes.append(helper.make_node("Reshape", [t, "shp4"], [f"{nm}.r"], name=f"{nm}.reshape"))
        nodes.append(helper.make_node("Transpose", [f"{nm}.r"], [f"{nm}.h"], name=f"{nm}.heads", perm=perm))
        heads[nm] = f"{nm}.h"
    nodes.append(helper.make_node("MatMul", [heads["q"], heads["k"]], ["scores.raw"], name="scores"))
    if variant == 0:
        inits["inv_sqrt_p"] = f32(1 / math.sqrt(P))
        nodes.append(helper.make_node("Mul", ["scores.raw", "inv_sqrt_p"], ["scores"], name="scale"))
    else:
        inits["sqrt_p"] = f32(math.sqrt(P))
        nodes.append(helper.make_node("Div", ["scores.raw", "sqrt_p"], ["scores"], name="scale"))
    nodes.append(helper.make_node("Softmax", ["scores"], ["probs"], name="softmax", axis=-1))
    nodes.append(helper.make_node("MatMul", ["probs", heads["v"]], ["av"], name="av"))
    nodes.append(helper.make_node("Transpose", ["av"], ["av.t"], name="av.t", perm=[0, 2, 1, 3]))
    nodes.append(helper.make_node("Reshape", ["av.t", "shp3"], ["av.r"], name="av.r"))
    o = lin("o", "av.r", HP, E)
    nodes.append(helper.make_node("Add", ["input", o], ["res1"], name="res1"))
    h2 = ln("ln2", "res1")
    f = lin("fc1", h2, E, F)
    inits["one"], inits["half"] = f32(1.0), f32(0.5)
    if variant == 0:
        inits["sqrt2"] = f32(math.sqrt(2))
        nodes += [helper.make_node("Div", [f, "sqrt2"], ["g.d"], name="gelu.div"),
                  helper.make_node("Erf", ["g.d"], ["g.e"], name="gelu.erf"),
                  helper.make_node("Add", ["g.e", "one"], ["g.a"], name="gelu.add"),
                  helper.make_node("Mul", [f, "g.a"], ["g.m"], name="gelu.mul"),
                  helper.make_node("Mul", ["g.m", "half"], ["gelu"], name="gelu")]
    else:
        inits["inv_sqrt2"] = f32(1 / math.sqrt(2))
        nodes += [helper.make_node("Mul", [f, "inv_sqrt2"], ["g.d"], name="gelu.div"),
                  helper.make_node("Erf", ["g.d"], ["g.e"], name="gelu.erf"),
                  helper.make_node("Add", ["one", "g.e"], ["g.a"], name="gelu.add"),
                  helper.make_node("Mul", [f, "half"], ["g.h"], name="gelu.half"),
                  helper.make_node("Mul", ["g.h", "g.a"], ["gelu"], name="gelu")]
    y = lin("fc2", "gelu", F, E)
    nodes.append(helper.make_node("Add", ["res1", y], ["output"], name="res2"))
    return _model(nodes, [_vi("input", (1, S, E))], [_vi("output", (1, S, E))], inits, "block")


def block_feeds(S=16, E=16, seed=12, n=8) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [{"input": rng.normal(0, 1, (1, S, E)).astype(np.float32)} for _ in range(n)]


# ------------------------------------------------------------------------------------------
# running ours vs onnxruntime
# ------------------------------------------------------------------------------------------

def run_ours(graph, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Dequantized outputs of the golden model for float feeds (quantized like onnxruntime)."""
    ins = [quantize_input(graph, name, feeds[name]) for name in graph.inputs]
    outs = run_graph(graph, ins)
    return {name: dequantize_output(graph, name, outs[name]) for name in graph.outputs}


def compare(graph, qdq: onnx.ModelProto | Path, tests: list[dict],
            float_model: onnx.ModelProto | Path | None = None) -> dict:
    """Per-element |Δ| in output LSB (onnxruntime's output scale) and cosine, pooled over tests;
    with a float model also both errors against float (mean |Δ| in the same LSB)."""
    sess = ort_session(qdq if isinstance(qdq, Path) else qdq.SerializeToString())
    fsess = None
    if float_model is not None:
        fsess = ort_session(float_model if isinstance(float_model, Path) else float_model.SerializeToString())
    names = [o.name for o in sess.get_outputs()]
    diffs, ys, rs, ef_ours, ef_ort = [], [], [], [], []
    for feeds in tests:
        ref = dict(zip(names, sess.run(None, feeds)))
        flt = dict(zip(names, fsess.run(None, feeds))) if fsess is not None else None
        ours = run_ours(graph, feeds)
        for name in graph.outputs:
            s = float(np.asarray(graph.tensors[name].quant.scale))
            d = (ours[name].astype(np.float64) - ref[name]).ravel() / s
            diffs.append(np.abs(np.round(d, 3)))  # same grid: integers up to float32 noise
            ys.append(ours[name].ravel().astype(np.float64))
            rs.append(ref[name].ravel().astype(np.float64))
            if flt is not None:
                ef_ours.append(np.abs(ours[name] - flt[name]).ravel() / s)
                ef_ort.append(np.abs(ref[name] - flt[name]).ravel() / s)
    d = np.concatenate(diffs)
    y, r = np.concatenate(ys), np.concatenate(rs)
    out = dict(n=int(d.size), within1=float(np.mean(d <= 1.0)), exact=float(np.mean(d == 0)),
               max=float(d.max()), mean=float(d.mean()), cos=cosine(y, r))
    if ef_ours:
        out.update(float_ours=float(np.concatenate(ef_ours).mean()),
                   float_ort=float(np.concatenate(ef_ort).mean()))
    return out


def cosine(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def load_model_graph(model: onnx.ModelProto, options: QdqOptions | None = None):
    with tempfile.TemporaryDirectory() as td:
        path = Path(td) / "m.onnx"
        onnx.save(model, str(path))
        return load_qdq_graph(path, options)


# ------------------------------------------------------------------------------------------
# 1. sweeps of the derivations against float
# ------------------------------------------------------------------------------------------

def softmax_sweep(rows: int = 2000, seed: int = 3) -> list[dict]:
    """iSoftmax with e = ln2/L vs float softmax of the same integer input (×255, in LSB);
    and the same with log2 = round(1/e) (QuantLib's training-time variant) for contrast."""
    rng = np.random.default_rng(seed)
    out = []
    for levels in (8, 12, 16):
        for S in (16, 66, 128):
            for spread in (1.0, 3.0):
                e = LN2 / levels
                z = rng.normal(0, spread, (rows, S))
                q = np.clip(np.round(z / e), -128, 127).astype(np.int64)
                ref = _softmax(q * e) * 255
                c = isoftmax_consts(levels)
                ours = ops.isoftmax(q, c["coeff_a"], c["coeff_b"], c["coeff_c"], c["log2"], 256)
                wrong = ops.isoftmax(q, 1, c["coeff_b"], c["coeff_c"], max(1, round(1 / e)), 256)
                rounded = _isoftmax_rounded(q, c)
                d = ours - ref
                out.append(dict(L=levels, S=S, spread=spread, max=np.abs(d).max(),
                                mean=np.abs(d).mean(), bias=d.mean(),
                                max_rounded=np.abs(rounded - ref).max(),
                                bias_rounded=(rounded - ref).mean(),
                                rowsum=ours.sum(-1).mean(), max_1e=np.abs(wrong - ref).max()))
    return out


def _softmax(x):
    x = x - x.max(-1, keepdims=True)
    ex = np.exp(x)
    return ex / ex.sum(-1, keepdims=True)


def _isoftmax_rounded(x, c, n_levels=256):
    """iSoftmax with the rounded normalisation (golden isoftmax(..., rounded=True))."""
    return ops.isoftmax(x, c["coeff_a"], c["coeff_b"], c["coeff_c"], c["log2"], n_levels, rounded=True)


def layernorm_sweep(rows: int = 3000, seed: int = 4) -> list[dict]:
    """iLayerNorm and the QDQ LayerNorm (ops.layernorm_qdq) vs a float LayerNorm of the same int8
    input, quantized to s_out (round half even). Rows with mean ~N(0, σ/2) and σ LSB, and the
    residual-stream case of trained encoders: σ ~ 1 LSB around a zero point of -120."""
    rng = np.random.default_rng(seed)
    out = []
    cases = [(E, sigma, 0) for E in (16, 32, 64) for sigma in (8, 16, 32, 64)]
    cases += [(64, 1, -120), (384, 1, -120), (384, 4, -120)]
    for E, sigma, zp_in in cases:
        mu = rng.normal(0, sigma / 2, (rows, 1)) + zp_in
        x = np.clip(np.round(rng.normal(mu, sigma, (rows, E))), -128, 127).astype(np.int64)
        s_in = 0.03
        gamma = 1 + rng.normal(0, 0.1, E)
        beta = rng.normal(0, 0.05, E)
        s_out, zp = 4.5 / 127, 3
        xr = (x - zp_in) * s_in
        ref = (xr - xr.mean(-1, keepdims=True)) / np.sqrt(xr.var(-1, keepdims=True) + 1e-5)
        ref = np.clip(np.rint((ref * gamma + beta) / s_out) + zp, -128, 127)
        row = dict(E=E, sigma=sigma, zp=zp_in)
        w, b, d = ilayernorm_consts(gamma, beta, s_out, zp)
        ours = {"ilayernorm": ops.ilayernorm(x, w, b, d, 256)}
        w, b, d, k, eps = layernorm_qdq_consts(gamma, beta, s_in, "int8", s_out, zp, 1e-5)
        ours["qdq"] = ops.layernorm_qdq(x, w, b, d, 256, k, eps)
        for key, y in ours.items():
            diff = y - ref
            row[key] = dict(max=np.abs(diff).max(), mean=np.abs(diff).mean(), bias=diff.mean(),
                            within1=np.mean(np.abs(diff) <= 1))
        out.append(row)
    return out


def gelu_sweep() -> list[dict]:
    """iGELU over every int8 input q (zero point 0) at scale e vs float GELU(q*e):
    (a) the real value q*floor((one+L)/2)*e/one against GELU, in output LSB of s_out;
    (b) after the RequantShift to s_out (max GELU/127), against round(GELU/s_out)."""
    out = []
    q = np.arange(-128, 128, dtype=np.int64)
    for e in (0.01, 0.02, 0.0314, 0.05, 0.08):
        x = q * e
        ref = x * 0.5 * (1 + np.vectorize(math.erf)(x / math.sqrt(2)))
        b, one, s_g = igelu_consts(e)
        wide = ops.igelu(q, b, one)
        s_out = float(ref.max()) / 127
        real = wide * s_g
        rq = make_requant(s_g / s_out, 0, True)
        ours = ops.requant_shift(wide, rq.mul, rq.add, rq.div, rq.n_levels, rq.signed)
        refq = np.clip(np.rint(ref / s_out), -128, 127)
        out.append(dict(e=e, b=b, one=one, err_real=np.abs(real - ref).max() / s_out,
                        err_real_abs=np.abs(real - ref).max(), max=np.abs(ours - refq).max(),
                        mean=np.abs(ours - refq).mean(), within1=np.mean(np.abs(ours - refq) <= 1)))
    return out


def requant_sweep(seed: int = 5) -> dict:
    """Relative error and significant bits of mul/2^s for ratios spanning 2^-20 .. 2^4."""
    rng = np.random.default_rng(seed)
    ratios = 2.0 ** rng.uniform(-20, 4, 20000)
    worst, bits = 0.0, 99
    for r in ratios:
        mul, s = fixed_point(r)
        worst = max(worst, abs(int(mul) / 2**s / r - 1))
        bits = min(bits, int(mul).bit_length())
    # per-channel: 64 channels spread over 2^6 share one shift
    pc = 2.0 ** rng.uniform(-12, -6, 64)
    rq = make_requant(pc, 0, True)
    return dict(worst=worst, bits=bits, pc_worst=requant_rel_error(rq, pc),
                pc_bits=int(np.abs(rq.mul).min()).bit_length())


# ------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------

def report_sweeps() -> None:
    rq = requant_sweep()
    print("### Fixed-point requantization\n")
    print(f"- 20,000 ratios in [2^-20, 2^4]: mul ≥ 2^{rq['bits'] - 1} ({rq['bits']} significant bits), "
          f"worst relative error {rq['worst']:.2e}.")
    print(f"- 64 per-channel ratios spread over 2^6 with one shared shift: smallest mul has "
          f"{rq['pc_bits']} bits, worst relative error {rq['pc_worst']:.2e}.\n")
    print("### iSoftmax (input scale e = ln2/L, so log2 = L exactly) vs float softmax ×255\n")
    print("Same integer input for both; error in output LSB (1/255). `round(1/e)` is QuantLib's "
          "training-time log2, shown for contrast; `rounded` is the proposed rounded normalisation.\n")
    print("| L | S | logit σ | max \\|Δ\\| | mean \\|Δ\\| | bias | row sum | max \\|Δ\\| rounded | bias rounded | max \\|Δ\\| log2=round(1/e) |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in softmax_sweep():
        print(f"| {r['L']} | {r['S']} | {r['spread']:g} | {r['max']:.2f} | {r['mean']:.3f} | "
              f"{r['bias']:+.3f} | {r['rowsum']:.1f} | {r['max_rounded']:.2f} | "
              f"{r['bias_rounded']:+.3f} | {r['max_1e']:.1f} |")
    print("\n### LayerNorm vs float LayerNorm of the same int8 input (output LSB)\n")
    print("| E | input σ (LSB) | input zp | iLayerNorm max \\|Δ\\| | mean \\|Δ\\| | bias | ≤1 LSB | "
          "QDQ LayerNorm max \\|Δ\\| | mean \\|Δ\\| | bias | ≤1 LSB |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in layernorm_sweep():
        a, b = r["ilayernorm"], r["qdq"]
        print(f"| {r['E']} | {r['sigma']} | {r['zp']} | {a['max']:.0f} | {a['mean']:.3f} | "
              f"{a['bias']:+.3f} | {a['within1'] * 100:.2f}% | {b['max']:.0f} | {b['mean']:.3f} | "
              f"{b['bias']:+.3f} | {b['within1'] * 100:.2f}% |")
    print("\n### iGELU over all int8 inputs vs float GELU\n")
    print("| input scale e | b | one | max \\|real − GELU\\| (output LSB) | max \\|Δ\\| after RQ | mean \\|Δ\\| | ≤1 LSB |")
    print("|---|---|---|---|---|---|---|")
    for r in gelu_sweep():
        print(f"| {r['e']} | {r['b']} | {r['one']} | {r['err_real']:.2f} | {r['max']:.0f} | "
              f"{r['mean']:.3f} | {r['within1'] * 100:.1f}% |")
    print()


def report_small() -> list[dict]:
    print("### Linear / MatMul / Add graphs vs onnxruntime\n")
    print("| graph | lowering | outputs | within 1 LSB | exact | max \\|Δ\\| (LSB) | mean \\|Δ\\| | "
          "mean \\|ours − float\\| | mean \\|ORT − float\\| |")
    print("|---|---|---|---|---|---|---|---|---|")
    rows = []
    for case in small_cases():
        qdq = quantize(case.model, case.calib, case.per_channel, case.activation_type,
                       case.weight_symmetric)
        has_bias_add = any(n.op_type == "Add" for n in qdq.graph.node) and any(
            n.op_type == "MatMul" and any(i.endswith("DequantizeLinear_Output") and "W" in i
                                          for i in n.input) for n in qdq.graph.node)
        modes = [("default", QdqOptions())]
        if has_bias_add:
            modes.append(("fuse_bias=False", QdqOptions(fuse_bias=False)))
        for label, opt in modes:
            graph = load_model_graph(qdq, opt)
            r = compare(graph, qdq, case.test, case.model)
            r.update(name=case.name, options=label)
            rows.append(r)
            print(f"| {case.name} | {label} | {r['n']} | {r['within1'] * 100:.3f}% | "
                  f"{r['exact'] * 100:.1f}% | {r['max']:.0f} | {r['mean']:.3f} | "
                  f"{r['float_ours']:.3f} | {r['float_ort']:.3f} |")
    print()
    return rows


def _float_ref(float_path: Path, feeds: dict) -> np.ndarray | None:
    if not float_path.exists():
        return None
    sess = ort_session(float_path)
    return sess.run(None, feeds)[0]


PREVIOUS = QdqOptions(layernorm="ilayernorm", softmax_scores="int8", gelu="igelu",
                      absorb_clip_codes=256, matmul_zero_points="absorb",
                      softmax_rounding="floor")  # the lowering before issue 12
TRAINED_EXAMPLE = "outlier_2block"


def example_cases() -> list[tuple[str, Path, list[dict], Path]]:
    """(title, qdq path, float test feeds, float model) of every committed QDQ example: the
    held-out input of the random-weight examples, the 16 held-out inputs of the trained one."""
    cases = []
    for name, fn in BLOCK_FILES + [(TRAINED_EXAMPLE, "qdq.onnx")]:
        path = EXAMPLES / name / fn
        held = EXAMPLES / name / "heldout_float.npz"
        src = held if held.exists() else EXAMPLES / name / "inputs_float.npz"
        if path.exists() and src.exists():
            x = np.load(src)["input"]
            tests = [{"input": v} for v in (x if x.ndim == 4 else x[None])]
            cases.append((f"{name}/{fn}", path, tests, EXAMPLES / name / "float.onnx"))
    return cases


def block_cosines(graph, path: Path, float_path: Path, tests: list[dict]) -> list[dict]:
    """Per encoder block (its output: the second residual Add) and end to end: cosine of ours
    against float and against onnxruntime's QDQ run, and onnxruntime's against float."""
    sess, q_of, inits = _ort_with_intermediates(path)
    names = [o.name for o in sess.get_outputs()]
    fm = onnx.load(str(float_path))
    outs = [t for t in sorted(q_of) if t.endswith(".res2.out")]
    for t in outs:
        fm.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    fsess = ort_session(fm.SerializeToString())
    fnames = [o.name for o in fsess.get_outputs()]
    pool: dict[str, list] = {}
    for feeds in tests:
        res = dict(zip(names, sess.run(None, feeds)))
        fres = dict(zip(fnames, fsess.run(None, feeds)))
        ins = [quantize_input(graph, n, feeds[n]) for n in graph.inputs]
        env = run_graph(graph, ins, keep_all=True)
        for t in outs + graph.outputs:
            if t in graph.outputs:
                ort = res[t]
            else:
                qn = q_of[t]
                ort = (res[qn.output[0]].astype(np.float64) - int(inits[qn.input[2]])) * float(inits[qn.input[1]])
            ours = dequantize_output(graph, t, env[t])
            p = pool.setdefault(t, [[], [], []])
            p[0].append(ours.ravel()), p[1].append(np.asarray(ort).ravel()), p[2].append(fres[t].ravel())
    rows = []
    for t, (o, r, f) in pool.items():
        o, r, f = (np.concatenate(v).astype(np.float64) for v in (o, r, f))
        rows.append(dict(tensor=t, cos_float=cosine(o, f), cos_ort=cosine(o, r), ort_float=cosine(r, f)))
    return rows


def _int16_cost(graph) -> tuple[int, int]:
    """(int16 tensors, extra bytes) from the int16 transform's notes."""
    notes = [n for n in graph.notes if "int16 (scale/256)" in n]
    return len(notes), sum(int(n.rsplit("+", 1)[1].split()[0]) for n in notes)


def report_blocks(variants: bool = True) -> list[dict]:
    cases = [(t, p, tests, f) for t, p, tests, f in example_cases()]
    labels = {0: "Div(√2) GELU, ·1/√P", 1: "Mul(1/√2) GELU, (x·0.5)·(1+erf), ÷√P"}
    feeds = block_feeds()
    for variant in (0, 1):
        fm = block_model(variant=variant)
        cases.append((f"built S=16 E=16 H=2 P=8 ({labels[variant]})", quantize(fm, feeds[:6]),
                      feeds[6:], fm))
    option_sets = [("default", QdqOptions())]
    if variants:
        option_sets += [("int16 auto", QdqOptions(int16="auto")), ("previous", PREVIOUS)]
    rows = []
    for label, opt in option_sets:
        for title, src, tests, fsrc in cases:
            graph = load_qdq_graph(src, opt) if isinstance(src, Path) else load_model_graph(src, opt)
            r = compare(graph, src, tests)
            fl, ortf = _float_cos(graph, src, fsrc, tests)
            n16, extra = _int16_cost(graph)
            r.update(name=title, options=label, cos_float=fl, ort_float=ortf, int16=n16,
                     extra_bytes=extra, mhsa=sum(n.op == "MHSA" for n in graph.nodes))
            rows.append(r)
    print("### Encoder blocks vs onnxruntime (dequantized output, default lowering, int8)\n")
    print("| model | outputs | MHSA fused | max \\|Δ\\| (LSB) | mean \\|Δ\\| | within 1 LSB | "
          "cos vs ORT | cos vs float | ORT's cos vs float |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        if r["options"] == "default":
            print(f"| {r['name']} | {r['n']} | {r['mhsa']} | {r['max']:.0f} | {r['mean']:.3f} | "
                  f"{r['within1'] * 100:.1f}% | {r['cos']:.5f} | {r['cos_float']:.5f} | "
                  f"{r['ort_float']:.5f} |")
    if variants:
        print("\n### Lowerings compared: cosine vs float (max \\|Δ\\| vs onnxruntime in LSB)\n")
        print("`previous` = the lowering before this change (iLayerNorm, int8 softmax scores, "
              "iGELU, absorbed zero points clipping); `int16 auto` = the default plus the int16 "
              "residual stream where `--int16 auto` chooses it (tensors, extra activation bytes).\n")
        print("| model | ORT's QDQ | previous | default (int8) | int16 auto | int16 tensors (+bytes) |")
        print("|---|---|---|---|---|---|")
        for title, *_ in cases:
            cell = {r["options"]: r for r in rows if r["name"] == title}
            c = lambda k: f"{cell[k]['cos_float']:.5f} ({cell[k]['max']:.0f})"  # noqa: E731
            i16 = cell["int16 auto"]
            print(f"| {title} | {cell['default']['ort_float']:.5f} | {c('previous')} | {c('default')} | "
                  f"{c('int16 auto')} | {i16['int16']} (+{i16['extra_bytes']}) |")
    print()
    return rows


def report_block_cosines() -> list[dict]:
    print("### Per block and end to end (cosine; default lowering, int8, and with --int16 auto)\n")
    print("| model | tensor | ours vs float | ours vs ORT | ORT vs float | int16 auto: ours vs float |")
    print("|---|---|---|---|---|---|")
    out = []
    for title, path, tests, fpath in example_cases():
        r8 = block_cosines(load_qdq_graph(path), path, fpath, tests)
        r16 = block_cosines(load_qdq_graph(path, QdqOptions(int16="auto")), path, fpath, tests)
        for a, b in zip(r8, r16):
            print(f"| {title} | {a['tensor']} | {a['cos_float']:.5f} | {a['cos_ort']:.5f} | "
                  f"{a['ort_float']:.5f} | {b['cos_float']:.5f} |")
            out.append(dict(name=title, **a, int16_cos_float=b["cos_float"]))
    print()
    return out


def report_int16_plan(hw: str = "gap9") -> None:
    """Memory and estimated cycles of the trained example's plan with and without int16."""
    import tempfile as _tf
    from planner.solve import SolveOptions, solve
    path = EXAMPLES / TRAINED_EXAMPLE / "qdq.onnx"
    if not path.exists():
        return
    print(f"### Cost of the int16 residual stream ({TRAINED_EXAMPLE}, `planner solve`)\n")
    print("| hardware | --int16 | L2 activation peak (B) | L2 peak (B) | L1 peak (B) | est. cycles |")
    print("|---|---|---|---|---|---|")
    for hwn in ("gap9", "stm32h7"):
        for mode in ("off", "auto"):
            plan = solve(path, hwn, SolveOptions(int16=mode, time_limit=2.0)).plan
            m = plan.memory
            l1 = m.get("L1", {}).get("peak", "-")
            print(f"| {hwn} | {mode} | {m['L2']['breakdown']['activations']} | {m['L2']['peak']} | "
                  f"{l1} | {plan.estimate['cycles']} |")
    print()


def report_local_all() -> list[dict]:
    """The local check of every QDQ example: ops over 1 LSB against onnxruntime fed the same
    inputs (the default lowering and the previous one)."""
    print("### Local check: every op fed onnxruntime's inputs, ops over 1 LSB\n")
    print("| model | lowering | ops checked | ops over 1 LSB (max \\|Δ\\|) | elements left out "
          "(onnxruntime saturated) |")
    print("|---|---|---|---|---|")
    out = []
    for title, path, tests, _ in example_cases():
        for label, opt in (("default", QdqOptions()), ("previous", PREVIOUS)):
            rows = local_errors(path, tests, opt)
            over = [f"{r['node']} ({r['max']:.2f})" for r in rows if r["over"]]
            sat = sum(r["saturated"] for r in rows)
            print(f"| {title} | {label} | {len(rows)} | {', '.join(over) or 'none'} | {sat} |")
            out.append(dict(name=title, options=label, rows=rows))
    print()
    return out


def _ort_with_intermediates(path: Path):
    """onnxruntime session on the QDQ model with every QuantizeLinear output exposed, and
    {float tensor: its QuantizeLinear node}, the initializers."""
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    q_of = {n.input[0]: n for n in model.graph.node if n.op_type == "QuantizeLinear"}
    outs = {o.name for o in model.graph.output}
    for t, qn in q_of.items():
        if qn.output[0] not in outs:
            zp = inits[qn.input[2]]
            elem = TensorProto.INT8 if zp.dtype == np.int8 else TensorProto.UINT8
            model.graph.output.append(helper.make_tensor_value_info(qn.output[0], elem, None))
        if t not in outs and t not in inits:  # the float value onnxruntime quantizes
            model.graph.output.append(helper.make_tensor_value_info(t, TensorProto.FLOAT, None))
    return ort_session(model.SerializeToString()), q_of, inits


def _ort_quantizations_inside(model: onnx.ModelProto, out_q: onnx.NodeProto,
                              inputs: set[str]) -> list[onnx.NodeProto]:
    """The QuantizeLinear nodes of onnxruntime's graph between the Q/DQ of `inputs` (our op's
    inputs) and `out_q` (its output's Q), out_q included: the roundings of the op in
    onnxruntime (a Linear's intermediate matmul output, the four of an erf GELU ...)."""
    prod = {o: n for n in model.graph.node for o in n.output}
    found, seen, todo = [out_q], set(), list(out_q.input[:1])
    while todo:
        t = todo.pop()
        n = prod.get(t)
        if n is None or t in seen:
            continue
        seen.add(t)
        if n.op_type == "QuantizeLinear":
            if n.input[0] in inputs:
                continue
            found.append(n)
        if n.op_type == "DequantizeLinear" and prod.get(n.input[0]) is not None \
                and prod[n.input[0]].op_type == "QuantizeLinear" and prod[n.input[0]].input[0] in inputs:
            continue
        todo += [i for i in n.input if i]
    return found


def local_errors(path: Path, tests: list[dict], options: QdqOptions | None = None) -> list[dict]:
    """Each op of our (unfused) lowering fed onnxruntime's own inputs (its int8 codes put on our
    grid), against onnxruntime's result of the same op on our output grid: the float value its
    final QuantizeLinear reads, rounded (half to even) and clipped on our grid. On the same grid
    that is onnxruntime's own output code; where ours differs (absorbed zero points, int16
    scores) it judges our op, not the two grids. |Δ| in LSB of the coarser of the two output grids
    (ours, onnxruntime's), pooled over the inputs.
    Elements where onnxruntime saturated inside the op (an intermediate quantization whose input
    lies beyond its calibrated range: it clips there and we do not) are left out and counted
    (`saturated`). `over` = the op exceeds 1 LSB somewhere."""
    from planner.golden.run import run_nodes
    graph = load_qdq_graph(path, options, fuse=False)
    sess, q_of, inits = _ort_with_intermediates(path)
    model = onnx.load(str(path))
    names = [o.name for o in sess.get_outputs()]
    # our tensors named like the float tensors onnxruntime quantizes (or after the graph output
    # that dequantizes them); the graph output's QuantizeLinear reads '<output>_QuantizeLinear_Input'
    alias = {f"{o}_QuantizeLinear_Input": o for o in graph.outputs}

    def q_node(t):
        if t in q_of:
            return q_of[t]
        for k, v in alias.items():
            if v == t and k in q_of:
                return q_of[k]
        return None

    def code_limits(qn):
        zp = inits[qn.input[2]]
        return (-128, 127) if zp.dtype == np.int8 else (0, 255)

    diffs: dict[str, list] = {}
    sat: dict[str, int] = {}
    for feeds in tests:
        res = dict(zip(names, sess.run(None, feeds)))

        def ort_real(t):
            qn = q_node(t)
            s, z = float(inits[qn.input[1]]), int(inits[qn.input[2]])
            return (res[qn.output[0]].astype(np.float64) - z) * s, s

        def ours_int(t, real):
            tt = graph.tensors[t]
            lo, hi = {"int8": (-128, 127), "uint8": (0, 255), "int16": (-32768, 32767)}[tt.dtype]
            q = np.rint(real / float(tt.quant.scale)) + int(tt.quant.zero_point)
            return np.clip(q, lo, hi).astype(np.int64)

        for node in graph.nodes:
            if node.op in ("Reshape", "Transpose") or q_node(node.outputs[0]) is None:
                continue
            env = {k: t.data for k, t in graph.tensors.items() if t.is_const}
            if any(i not in env and q_node(i) is None for i in node.inputs):
                continue
            for i in node.inputs:
                if i not in env:
                    env[i] = ours_int(i, ort_real(i)[0])
            run_nodes([node], env)
            out_q = q_node(node.outputs[0])
            ref = ours_int(node.outputs[0], res[out_q.input[0]].astype(np.float64))
            so = float(inits[out_q.input[1]])
            sw = float(np.asarray(graph.tensors[node.outputs[0]].quant.scale))
            d = (env[node.outputs[0]] - ref) * (sw / max(so, sw))  # in the coarser grid's LSB
            ins = {i for i in node.inputs if i in q_of} | {k for k, v in alias.items() if v in node.inputs}
            mask = np.zeros(d.shape, dtype=bool)
            for qn in _ort_quantizations_inside(model, out_q, ins)[1:]:
                val = res.get(qn.input[0])
                if val is not None and val.shape == d.shape:  # its input beyond its range
                    lo, hi = code_limits(qn)
                    q = val.astype(np.float64) / float(inits[qn.input[1]]) + int(inits[qn.input[2]])
                    mask |= (q < lo - 0.5) | (q > hi + 0.5)
            sat[node.name] = sat.get(node.name, 0) + int(mask.sum())
            diffs.setdefault(node.name, [node.op, []])[1].append(np.round(d[~mask], 3).ravel())
    rows = []
    for name, (op, ds) in diffs.items():
        d = np.concatenate(ds)
        if not d.size:
            d = np.zeros(1)
        rows.append(dict(node=name, op=op, max=float(np.abs(d).max()), mean=float(np.abs(d).mean()),
                         bias=float(d.mean()), within1=float(np.mean(np.abs(d) <= 1)),
                         over=bool(np.abs(d).max() > 1), saturated=sat[name], n=int(d.size)))
    return rows


def report_local(name: str = "eeg_block") -> None:
    """Each op fed onnxruntime's own (requantized) inputs: where the block's error comes from."""
    case = next((c for c in example_cases() if c[0] == f"{name}/qdq.onnx"), None)
    if case is None:
        return
    _, path, tests, _ = case
    print(f"### Per-op error on {name}, each op fed onnxruntime's inputs\n")
    print("| node | op | max \\|Δ\\| | mean \\|Δ\\| | mean Δ (bias) | within 1 LSB | left out |")
    print("|---|---|---|---|---|---|---|")
    for r in local_errors(path, tests):
        print(f"| {r['node']} | {r['op']} | {r['max']:.2f} | {r['mean']:.3f} | "
              f"{r['bias']:+.3f} | {r['within1'] * 100:.2f}% | {r['saturated']} |")
    print()


def _float_cos(graph, src, fsrc, tests) -> tuple[float, float]:
    fsess = ort_session(fsrc if isinstance(fsrc, Path) else fsrc.SerializeToString())
    qsess = ort_session(src if isinstance(src, Path) else src.SerializeToString())
    ys, fs, qs = [], [], []
    for feeds in tests:
        fs.append(fsess.run(None, feeds)[0].ravel())
        qs.append(qsess.run(None, feeds)[0].ravel())
        ys.append(run_ours(graph, feeds)[graph.outputs[0]].ravel())
    f = np.concatenate(fs)
    return cosine(np.concatenate(ys), f), cosine(np.concatenate(qs), f)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", choices=["sweeps", "small", "blocks"], action="append")
    ap.add_argument("--json", help="also write the numbers to this JSON file")
    args = ap.parse_args(argv)
    parts = args.only or ["sweeps", "small", "blocks"]
    result = {}
    if "sweeps" in parts:
        report_sweeps()
    if "small" in parts:
        result["small"] = report_small()
    if "blocks" in parts:
        result["blocks"] = report_blocks()
        result["per_block"] = report_block_cosines()
        report_int16_plan()
        result["local"] = report_local_all()
        report_local(TRAINED_EXAMPLE)
        report_local()
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
