#!/usr/bin/env python3
"""Build the example networks under examples/ (deterministic; see examples/README.md).

    python examples/build_examples.py [--out examples] [--only NAME ...] [--stress]

For every example shape (the reference paper's EEG, ECG and radar encoder blocks, and two EEG
blocks in a row) this writes into ``<out>/<name>/``:

* ``float.onnx``   float32 pre-LN encoder block(s), opset 17, written the way PyTorch exports them;
* ``qdq.onnx``     onnxruntime's ``quantize_static`` QDQ version (int8, per tensor, MinMax);
* ``qdq_per_channel.onnx`` (eeg_block only) the same with per-channel weights;
* ``int.onnx``     a QuantLib/Deeploy-style integer graph (RequantShift, iSoftmax, iLayerNorm,
                   iGELU; integers stored in float32 tensors; custom ops in the default domain);
* ``inputs.npz`` (int8 input of int.onnx), ``inputs_float.npz`` (the float input it came from),
  ``outputs.npz`` (int.onnx's output computed by the reference below), ``meta.json``.

``--stress`` writes a 12-block model (S=128, E=128, H=8, P=16, FFN 512) into ``<out>/stress_12block``
instead; it is not committed.

The integer reference at the bottom of this file (``run_int_model`` and the §B op functions) is
this script's own copy of SPEC-integer.md §B, used only to calibrate and validate the integer
model. The project's golden model (planner.golden) is the specification.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

PRODUCER_NAME = "planner-examples"
PRODUCER_VERSION = "1"
OPSET = 17
IR_VERSION = 8  # the IR version that goes with opset 17
LN_EPS = 1e-5
N_CALIB = 16
MAX_FILE_BYTES = 1_000_000  # committed files stay below this (1 MB)
CHUNK_BYTES = 900_000  # external-data chunk size when a model would exceed MAX_FILE_BYTES


@dataclass(frozen=True)
class ExampleConfig:
    name: str
    S: int
    E: int
    P: int
    H: int
    blocks: int
    seed: int
    ffn: int = 0  # hidden width of the FFN; 0 means 4*E

    @property
    def F(self) -> int:
        return self.ffn or 4 * self.E

    @property
    def HP(self) -> int:
        return self.H * self.P


EXAMPLES = [
    ExampleConfig("eeg_block", S=81, E=32, P=32, H=8, blocks=1, seed=1001),
    ExampleConfig("ecg_block", S=66, E=16, P=2, H=8, blocks=1, seed=2002),
    ExampleConfig("radar_block", S=32, E=64, P=64, H=16, blocks=1, seed=3003),
    ExampleConfig("eeg_2block", S=81, E=32, P=32, H=8, blocks=2, seed=4004),
]
# trained-statistics example: outlier channels in the residual stream and attention rows whose
# maxima lie far below the calibrated maximum (see make_trained_weights / make_trained_inputs)
TRAINED = ExampleConfig("outlier_2block", S=32, E=64, P=16, H=4, blocks=2, seed=6006, ffn=128)
TRAINED_EXAMPLES = [TRAINED]
STRESS = ExampleConfig("stress_12block", S=128, E=128, P=16, H=8, blocks=12, seed=5005, ffn=512)
PER_CHANNEL_EXAMPLES = {"eeg_block"}

# seeds derived from the example seed
def _weight_seed(cfg):
    return cfg.seed


def _calib_seed(cfg):
    return cfg.seed + 1


def _heldout_seed(cfg):
    return cfg.seed + 2


# ---------------------------------------------------------------------------------------------
# Weights and the float model
# ---------------------------------------------------------------------------------------------


def make_weights(cfg: ExampleConfig) -> list[dict[str, np.ndarray]]:
    """Seeded float32 weights, one dict per block. W is stored [in, out] (x @ W).

    Weights ~ N(0, 1/sqrt(fan_in)) (standard deviation), biases ~ N(0, 0.05), LayerNorm gamma ~
    1 + N(0, 0.1), beta ~ N(0, 0.05). The attention scale 1/sqrt(P) is folded into W_Q and b_Q.
    """
    rng = np.random.default_rng(_weight_seed(cfg))
    E, HP, F = cfg.E, cfg.HP, cfg.F
    blocks = []
    for _ in range(cfg.blocks):
        w = {}

        def lin(name, fan_in, fan_out):
            w[name + ".weight"] = rng.normal(0.0, 1.0 / math.sqrt(fan_in), (fan_in, fan_out))
            w[name + ".bias"] = rng.normal(0.0, 0.05, (fan_out,))

        def ln(name, n):
            w[name + ".weight"] = 1.0 + rng.normal(0.0, 0.1, (n,))
            w[name + ".bias"] = rng.normal(0.0, 0.05, (n,))

        ln("ln1", E)
        lin("q", E, HP)
        lin("k", E, HP)
        lin("v", E, HP)
        lin("o", HP, E)
        ln("ln2", E)
        lin("fc1", E, F)
        lin("fc2", F, E)
        inv = 1.0 / math.sqrt(cfg.P)
        w["q.weight"] = w["q.weight"] * inv
        w["q.bias"] = w["q.bias"] * inv
        blocks.append({k: v.astype(np.float32) for k, v in w.items()})
    return blocks


# The statistics of trained BERT-style encoders that break a naive int8 lowering, made by hand:
# two residual channels carry large positive values on the first token (a [CLS]/[SEP]-like
# token: the per-tensor residual scale and a large negative zero point are set by it, so an
# ordinary token's row spans about one LSB), and W_Q / W_K read those channels, so that the
# first token's query meets its own key with a score of about SCORE_PEAK while every other row
# peaks a few nats high.
OUTLIER_CHANNELS = (5, 37)
OUTLIERS = (220.0, 100.0)
SCORE_PEAK = 40.0


def _outlier_xhat(E: int) -> np.ndarray:
    """LayerNorm (without affine) of a row that is zero except for the outlier channels."""
    row = np.zeros(E)
    row[list(OUTLIER_CHANNELS)] = OUTLIERS
    return (row - row.mean()) / row.std()


def make_trained_weights(cfg: ExampleConfig) -> list[dict[str, np.ndarray]]:
    """make_weights plus, per block, a rank-one read of the outlier channels in W_Q and W_K
    (head 0 only): after LayerNorm the first token is large on those channels, so its head-0
    self-score is ~ SCORE_PEAK; ordinary tokens (~N(0,1) there) get a few nats."""
    blocks = make_weights(cfg)
    rng = np.random.default_rng(cfg.seed + 7)
    xh = _outlier_xhat(cfg.E)[list(OUTLIER_CHANNELS)]
    a = math.sqrt(SCORE_PEAK) / float(xh.sum())
    for w in blocks:
        u = rng.normal(0.0, 1.0, cfg.P)
        u /= np.linalg.norm(u)
        for name in ("q.weight", "k.weight"):
            m = w[name].astype(np.float64)
            for c in OUTLIER_CHANNELS:
                m[c, :cfg.P] += a * u
            w[name] = m.astype(np.float32)
    return blocks


def make_trained_inputs(cfg: ExampleConfig, seed: int, n: int) -> np.ndarray:
    x = make_inputs(cfg, seed, n).astype(np.float64)
    rng = np.random.default_rng(seed + 100)
    for c, v in zip(OUTLIER_CHANNELS, OUTLIERS):
        x[:, 0, 0, c] = v * (1 + 0.05 * rng.normal(size=n))
    return x.astype(np.float32)


def make_inputs(cfg: ExampleConfig, seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(0.0, 1.0, (n, 1, cfg.S, cfg.E)).astype(np.float32)


_erf = np.vectorize(math.erf, otypes=[np.float64])


def float_forward(cfg: ExampleConfig, weights, x: np.ndarray, record: dict | None = None) -> np.ndarray:
    """numpy float64 forward of float.onnx for one input [1,S,E]. Records intermediates if asked."""
    S, H, P = cfg.S, cfg.H, cfg.P

    def rec(name, t):
        if record is not None:
            record.setdefault(name, []).append(t)
        return t

    def layernorm(t, g, b):
        mu = t.mean(-1, keepdims=True)
        var = ((t - mu) ** 2).mean(-1, keepdims=True)
        return (t - mu) / np.sqrt(var + LN_EPS) * g + b

    x = x.astype(np.float64)
    rec("input", x)
    for bi, w in enumerate(weights):
        w = {k: v.astype(np.float64) for k, v in w.items()}
        p = f"b{bi}."
        h = rec(p + "ln1", layernorm(x, w["ln1.weight"], w["ln1.bias"]))
        q = rec(p + "q", h @ w["q.weight"] + w["q.bias"])
        k = rec(p + "k", h @ w["k.weight"] + w["k.bias"])
        v = rec(p + "v", h @ w["v.weight"] + w["v.bias"])
        qh = q.reshape(1, S, H, P).transpose(0, 2, 1, 3)
        kh = k.reshape(1, S, H, P).transpose(0, 2, 3, 1)
        vh = v.reshape(1, S, H, P).transpose(0, 2, 1, 3)
        sc = rec(p + "scores", qh @ kh)
        e = np.exp(sc - sc.max(-1, keepdims=True))
        a = rec(p + "probs", e / e.sum(-1, keepdims=True))
        av = rec(p + "av", a @ vh)
        o = av.transpose(0, 2, 1, 3).reshape(1, S, H * P)
        o = rec(p + "o", o @ w["o.weight"] + w["o.bias"])
        x = rec(p + "res1", x + o)
        h = rec(p + "ln2", layernorm(x, w["ln2.weight"], w["ln2.bias"]))
        f = rec(p + "fc1", h @ w["fc1.weight"] + w["fc1.bias"])
        g = rec(p + "gelu", f * 0.5 * (1.0 + _erf(f / math.sqrt(2.0))))
        y = rec(p + "fc2", g @ w["fc2.weight"] + w["fc2.bias"])
        x = rec(p + "res2", x + y)
    return x


def _shape_info(name, shape, elem=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, elem, list(shape))


def _finish_model(graph, opsets) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = IR_VERSION
    model.producer_name = PRODUCER_NAME
    model.producer_version = PRODUCER_VERSION
    return model


def build_float_model(cfg: ExampleConfig, weights) -> onnx.ModelProto:
    """The float graph in PyTorch-export style (see the module docstring of README.md)."""
    S, E, H, P, HP, F = cfg.S, cfg.E, cfg.H, cfg.P, cfg.HP, cfg.F
    nodes, inits, vinfo = [], [], []

    def init(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def node(op, ins, out, shape, **attrs):
        nodes.append(helper.make_node(op, ins, [out], name=out.replace(".out", ""), **attrs))
        if out != "output":
            vinfo.append(_shape_info(out, shape))
        return out

    shape_4d = init("shape_SHP", np.array([1, S, H, P], np.int64))
    shape_3d = init("shape_S_HP", np.array([1, S, HP], np.int64))
    sqrt2 = init("gelu.sqrt2", np.array(math.sqrt(2.0), np.float32))
    one = init("gelu.one", np.array(1.0, np.float32))
    half = init("gelu.half", np.array(0.5, np.float32))

    x = "input"
    last = cfg.blocks - 1
    for bi, w in enumerate(weights):
        p = f"b{bi}."
        W = {k: init(p + k, v) for k, v in w.items()}

        def linear(name, t, n_out):
            mm = node("MatMul", [t, W[name + ".weight"]], p + name + ".matmul.out", (1, S, n_out))
            return node("Add", [W[name + ".bias"], mm], p + name + ".out", (1, S, n_out))

        h = node("LayerNormalization", [x, W["ln1.weight"], W["ln1.bias"]], p + "ln1.out", (1, S, E),
                 axis=-1, epsilon=LN_EPS)
        heads = {}
        for name, perm in (("q", (0, 2, 1, 3)), ("k", (0, 2, 3, 1)), ("v", (0, 2, 1, 3))):
            t = linear(name, h, HP)
            t = node("Reshape", [t, shape_4d], p + name + ".reshape.out", (1, S, H, P))
            tshape = (1, H, P, S) if name == "k" else (1, H, S, P)
            heads[name] = node("Transpose", [t], p + name + ".heads.out", tshape, perm=list(perm))
        sc = node("MatMul", [heads["q"], heads["k"]], p + "scores.out", (1, H, S, S))
        a = node("Softmax", [sc], p + "softmax.out", (1, H, S, S), axis=-1)
        av = node("MatMul", [a, heads["v"]], p + "av.out", (1, H, S, P))
        t = node("Transpose", [av], p + "av.transpose.out", (1, S, H, P), perm=[0, 2, 1, 3])
        t = node("Reshape", [t, shape_3d], p + "av.reshape.out", (1, S, HP))
        o = linear("o", t, E)
        x = node("Add", [x, o], p + "res1.out", (1, S, E))
        h = node("LayerNormalization", [x, W["ln2.weight"], W["ln2.bias"]], p + "ln2.out", (1, S, E),
                 axis=-1, epsilon=LN_EPS)
        f = linear("fc1", h, F)
        d = node("Div", [f, sqrt2], p + "gelu.div.out", (1, S, F))
        d = node("Erf", [d], p + "gelu.erf.out", (1, S, F))
        d = node("Add", [d, one], p + "gelu.add.out", (1, S, F))
        d = node("Mul", [f, d], p + "gelu.mul.out", (1, S, F))
        g = node("Mul", [d, half], p + "gelu.out", (1, S, F))
        y = linear("fc2", g, E)
        x = node("Add", [x, y], "output" if bi == last else p + "res2.out", (1, S, E))

    graph = helper.make_graph(nodes, f"{cfg.name}_float", [_shape_info("input", (1, S, E))],
                              [_shape_info("output", (1, S, E))], initializer=inits, value_info=vinfo)
    return _finish_model(graph, [helper.make_opsetid("", OPSET)])


# ---------------------------------------------------------------------------------------------
# QDQ model (onnxruntime's static quantizer)
# ---------------------------------------------------------------------------------------------


def build_qdq_model(cfg: ExampleConfig, float_path: Path, calib: np.ndarray, per_channel: bool) -> onnx.ModelProto:
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat,
                                          QuantType, quantize_static)

    class Reader(CalibrationDataReader):
        def __init__(self):
            self._it = iter([{"input": c} for c in calib])

        def get_next(self):
            return next(self._it, None)

        def rewind(self):
            self._it = iter([{"input": c} for c in calib])

    kwargs = dict(
        quant_format=QuantFormat.QDQ,
        op_types_to_quantize=None,  # default: every op type onnxruntime can quantize
        per_channel=per_channel,
        reduce_range=False,
        activation_type=QuantType.QInt8,  # the 1.32 default, set explicitly
        weight_type=QuantType.QInt8,  # the 1.32 default, set explicitly
        calibrate_method=CalibrationMethod.MinMax,
        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
    )
    with tempfile.TemporaryDirectory() as td:
        out, cache = Path(td) / "qdq.onnx", Path(td) / "calibration.json"
        # 1) onnxruntime's own MinMax calibration, saved to its JSON cache ...
        quantize_static(str(float_path), str(out), Reader(), calibration_cache_path=str(cache), **kwargs)
        # 2) ... whose ranges are rounded to 6 significant digits, so that a last-bit difference of
        # the float kernels on another CPU cannot change the file; then quantize from the cache.
        raw = json.loads(cache.read_text())
        for rng in raw["data"].values():
            for key in ("lowest", "highest"):
                v = rng[key]
                if isinstance(v, dict):
                    v["data"] = np.vectorize(_round_sig)(np.asarray(v["data"], np.float64)).tolist()
                else:
                    rng[key] = _round_sig(v)
        cache.write_text(json.dumps(raw))
        quantize_static(str(float_path), str(out), None, calibration_cache_path=str(cache), **kwargs)
        model = onnx.load(str(out))
    model.producer_name = PRODUCER_NAME
    model.producer_version = PRODUCER_VERSION
    del model.metadata_props[:]
    return model


# ---------------------------------------------------------------------------------------------
# Integer (QuantLib/Deeploy-style) model
# ---------------------------------------------------------------------------------------------

SOFTMAX_LEVELS = 255  # iSoftmax output q means probability q/255


def requant_params(ratio: float) -> tuple[int, int]:
    """(mul, div) with div = 2^k, k >= 16, and mul/div ~ ratio with mul >= 2^15 (15 significant bits)."""
    if not (ratio > 0 and math.isfinite(ratio)):
        raise ValueError(f"bad requantization ratio {ratio}")
    k = max(16, 15 - math.floor(math.log2(ratio)))
    mul = round(ratio * 2**k)
    if mul >= 2**24:  # float32 holds integers exactly only below 2^24
        raise ValueError(f"requantization ratio {ratio} needs mul {mul} >= 2^24")
    return mul, 2**k


def _round_sig(v: float, digits: int = 6) -> float:
    """Round to a few significant digits, so that scales do not depend on last-bit float differences."""
    return float(f"{float(v):.{digits}g}")


def _scale(arrs) -> float:
    """Symmetric int8 scale: max|calibration values| (6 significant digits) / 127."""
    m = max(float(np.abs(a).max()) for a in arrs)
    return max(_round_sig(m), 1e-8) / 127.0


@dataclass
class IntGraph:
    """Accumulates the nodes of int.onnx and what meta.json records about them."""

    nodes: list = field(default_factory=list)
    inits: list = field(default_factory=list)
    vinfo: list = field(default_factory=list)
    init_names: set = field(default_factory=set)
    meta_rq: dict = field(default_factory=dict)

    def init(self, name, arr):
        if name not in self.init_names:
            arr = np.asarray(arr)
            if arr.dtype == np.float32 or arr.dtype == np.float64:
                arr = arr.astype(np.float32)
                if not np.all(np.abs(arr) < 2**24) or not np.array_equal(arr, np.round(arr)):
                    raise ValueError(f"{name}: not an integer representable exactly in float32")
            self.inits.append(numpy_helper.from_array(arr, name))
            self.init_names.add(name)
        return name

    def node(self, op, ins, out, shape, name=None, **attrs):
        self.nodes.append(helper.make_node(op, ins, [out], name=name or out, **attrs))
        if out != "output":
            self.vinfo.append(_shape_info(out, shape))
        return out

    def rqs(self, x, ratio, out, shape, signed=True):
        mul, div = requant_params(ratio)
        mname = self.init(f"{out}.mul", np.array(mul, np.float32))
        aname = self.init("rq.add_zero", np.array(0, np.float32))
        self.meta_rq[out] = {"mul": mul, "div": div, "ratio": ratio, "rel_err": mul / div / ratio - 1.0}
        return self.node("RequantShift", [x, mname, aname], out, shape, name=out + ".rq",
                         div=numpy_helper.from_array(np.array(div, np.float32)),
                         n_levels_out=numpy_helper.from_array(np.array([256], np.float32)),
                         signed=numpy_helper.from_array(np.array([1 if signed else 0], np.float32)))


def _ftensor(v):
    return numpy_helper.from_array(np.array([v], np.float32))


def _qsym(w: np.ndarray) -> tuple[np.ndarray, float]:
    s = float(np.abs(w).max()) / 127.0
    return np.clip(np.round(w / s), -127, 127), s


def _ln_divisor(gamma, s_out) -> int:
    """Largest D = 2^k, 12 <= k <= 16, with |nom*weight| (|nom| <= 255) below 2^31."""
    for k in range(16, 11, -1):
        wmax = float(np.max(np.abs(np.round(gamma * 2**k / s_out))))
        if 255 * wmax < 2**31:
            return 2**k
    raise ValueError("iLayerNorm weight does not fit int32 even with D = 2^12")


def build_int_model(cfg: ExampleConfig, weights, calib_rec: dict) -> tuple[onnx.ModelProto, dict]:
    """Integer graph; every scale comes from the float forward on the calibration inputs."""
    S, E, H, P, HP, F = cfg.S, cfg.E, cfg.H, cfg.P, cfg.HP, cfg.F
    g = IntGraph()
    scales: dict = {}
    consts: dict = {}
    s_x = _scale(calib_rec["input"])
    scales["input"] = s_x
    shape_4d = g.init("shape_SHP", np.array([1, S, H, P], np.int64))
    shape_3d = g.init("shape_S_HP", np.array([1, S, HP], np.int64))
    x = "input"
    last = cfg.blocks - 1
    for bi, w in enumerate(weights):
        p = f"b{bi}."
        w = {k: v.astype(np.float64) for k, v in w.items()}
        sc = {k: _scale(calib_rec[p + k]) for k in ("ln1", "q", "k", "v", "av", "o", "res1", "ln2",
                                                    "fc1", "gelu", "fc2", "res2")}

        def ilayernorm(name, t, s_out):
            gamma, beta = w[name + ".weight"], w[name + ".bias"]
            D = _ln_divisor(gamma, s_out)
            wi = g.init(p + name + ".weight", np.round(gamma * D / s_out))
            bi_ = g.init(p + name + ".bias", np.round(beta * D / s_out))
            consts[p + name] = {"D": D}
            return g.node("iLayerNorm", [t, wi, bi_], p + name + ".out", (1, S, E), name=p + name,
                          D=_ftensor(D), n_levels=_ftensor(256))

        def linear(name, t, s_in, n_out):
            wq, s_w = _qsym(w[name + ".weight"])
            scales[p + name + ".weight"] = s_w
            W = g.init(p + name + ".weight", wq)
            B = g.init(p + name + ".bias", np.round(w[name + ".bias"] / (s_in * s_w)))
            mm = g.node("MatMul", [t, W], p + name + ".matmul.out", (1, S, n_out))
            acc = g.node("Add", [B, mm], p + name + ".acc.out", (1, S, n_out))
            return acc, s_in * s_w

        # --- attention ---
        s_ln1 = sc["ln1"]
        h = ilayernorm("ln1", x, s_ln1)
        heads = {}
        for name, perm in (("q", (0, 2, 1, 3)), ("k", (0, 2, 3, 1)), ("v", (0, 2, 1, 3))):
            acc, s_acc = linear(name, h, s_ln1, HP)
            t = g.rqs(acc, s_acc / sc[name], p + name + ".out", (1, S, HP))
            t = g.node("Reshape", [t, shape_4d], p + name + ".reshape.out", (1, S, H, P))
            tshape = (1, H, P, S) if name == "k" else (1, H, S, P)
            heads[name] = g.node("Transpose", [t], p + name + ".heads.out", tshape, perm=list(perm))
        # softmax input scale e = ln2/L with an integer L, so that log2 = round(ln2/e) = L exactly;
        # L as large as possible without clipping the calibration scores at 127.
        smax = _round_sig(max(float(np.abs(a).max()) for a in calib_rec[p + "scores"]))
        L = max(1, math.floor(math.log(2.0) * 127.0 / smax))
        e = math.log(2.0) / L
        scales[p + "scores"] = e
        sm = {"coeffA": 1, "coeffB": round(1.353 / e), "coeffC": round(0.344 / (0.3585 * e * e)),
              "log2": round(math.log(2.0) / e), "n_levels": 256}
        consts[p + "softmax"] = sm
        t = g.node("MatMul", [heads["q"], heads["k"]], p + "scores.acc.out", (1, H, S, S))
        t = g.rqs(t, sc["q"] * sc["k"] / e, p + "scores.out", (1, H, S, S))
        a = g.node("iSoftmax", [t], p + "softmax.out", (1, H, S, S), name=p + "softmax",
                   **{k: _ftensor(v) for k, v in sm.items()})
        scales[p + "probs"] = 1.0 / SOFTMAX_LEVELS
        t = g.node("MatMul", [a, heads["v"]], p + "av.acc.out", (1, H, S, P))
        t = g.rqs(t, sc["v"] / SOFTMAX_LEVELS / sc["av"], p + "av.out", (1, H, S, P))
        t = g.node("Transpose", [t], p + "av.transpose.out", (1, S, H, P), perm=[0, 2, 1, 3])
        t = g.node("Reshape", [t, shape_3d], p + "av.reshape.out", (1, S, HP))
        acc, s_acc = linear("o", t, sc["av"], E)
        # residual: both branches requantized to a common scale, added, requantized
        s_c1 = max(s_x, sc["o"])
        o = g.rqs(acc, s_acc / s_c1, p + "o.out", (1, S, E))
        r = g.rqs(x, s_x / s_c1, p + "res1.skip.out", (1, S, E))
        t = g.node("Add", [r, o], p + "res1.sum.out", (1, S, E))
        x1 = g.rqs(t, s_c1 / sc["res1"], p + "res1.out", (1, S, E))
        # --- FFN ---
        h = ilayernorm("ln2", x1, sc["ln2"])
        acc, s_acc = linear("fc1", h, sc["ln2"], F)
        f = g.rqs(acc, s_acc / sc["fc1"], p + "fc1.out", (1, S, F))
        e_b = sc["fc1"] / math.sqrt(2.0)
        gb, gone = round(-1.769 / e_b), round(1.0 / (e_b * e_b * 0.2888))
        consts[p + "gelu"] = {"b": gb, "one": gone}
        t = g.node("iGELU", [f], p + "gelu.acc.out", (1, S, F), name=p + "gelu", b=gb, one=gone)
        t = g.rqs(t, sc["fc1"] / gone / sc["gelu"], p + "gelu.out", (1, S, F))
        acc, s_acc = linear("fc2", t, sc["gelu"], E)
        s_c2 = max(sc["res1"], sc["fc2"])
        y = g.rqs(acc, s_acc / s_c2, p + "fc2.out", (1, S, E))
        r = g.rqs(x1, sc["res1"] / s_c2, p + "res2.skip.out", (1, S, E))
        t = g.node("Add", [r, y], p + "res2.sum.out", (1, S, E))
        x = g.rqs(t, s_c2 / sc["res2"], "output" if bi == last else p + "res2.out", (1, S, E))
        for k in ("ln1", "q", "k", "v", "av", "res1", "ln2", "fc1", "gelu", "res2"):
            scales[p + k] = sc[k]
        scales[p + "res1.common"] = s_c1
        scales[p + "res2.common"] = s_c2
        scales[p + "gelu.acc"] = sc["fc1"] / gone
        s_x = sc["res2"]
    scales["output"] = s_x

    graph = helper.make_graph(g.nodes, f"{cfg.name}_int", [_shape_info("input", (1, S, E))],
                              [_shape_info("output", (1, S, E))], initializer=g.inits, value_info=g.vinfo)
    model = _finish_model(graph, [helper.make_opsetid("", OPSET)])
    return model, {"scales": scales, "requant": g.meta_rq, "consts": consts}


# ---------------------------------------------------------------------------------------------
# Integer reference (this script's own copy of SPEC-integer.md §B; planner.golden is the spec)
# ---------------------------------------------------------------------------------------------


def _attr_int(node, name):
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            if isinstance(v, onnx.TensorProto):
                v = numpy_helper.to_array(v).reshape(-1)[0]
            return int(v)
    raise KeyError(f"{node.name}: attribute {name} missing")


def _trunc_div(a, b):
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def _isqrt(v):
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    r = np.where(r * r > v, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def int_matmul(a, b):
    """Exact integer matmul through float64 (exact while every partial sum stays below 2^53)."""
    k = a.shape[-1]
    bound = float(np.abs(a).max(initial=0)) * float(np.abs(b).max(initial=0)) * k
    if bound >= 2**53:
        return np.matmul(a.astype(np.int64), b.astype(np.int64))
    return np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(np.int64)


def requant_shift(x, mul, add, div, n, signed):
    acc = x * mul + add
    sh = int(div).bit_length() - 1
    assert 2**sh == div, "div must be a power of two"
    y = (acc + (div // 2 if div > 1 else 0)) >> sh
    return np.clip(y, -(n // 2), n // 2 - 1) if signed else np.clip(y, 0, n - 1)


def i_softmax(x, A, B, C, log2, n):
    xt = x - x.max(-1, keepdims=True)
    z = (-xt) // log2
    p = xt + z * log2
    y = (A * (p + B) ** 2 + C) >> np.minimum(z, 62)
    return (y * (n - 1)) // y.sum(-1, keepdims=True)


def i_layernorm(x, weight, bias, D, n):
    L = x.shape[-1]
    mean = _trunc_div(x.sum(-1, keepdims=True), L)
    nom = x - mean
    var = (nom * nom).sum(-1, keepdims=True) // L
    std = _isqrt(var + 1)
    y = _trunc_div(nom * weight, std) + bias
    y = y // D
    return np.clip(y, -(n // 2), n // 2 - 1)


def i_gelu(x, b, one):
    q = np.minimum(np.abs(x), -b)
    L = np.sign(x) * (one - (q + b) ** 2)
    return x * ((one + L) >> 1)


def run_int_model(model: onnx.ModelProto, x: np.ndarray, record: dict | None = None) -> np.ndarray:
    """Evaluate an integer graph of the kind build_int_model writes (nodes in topological order)."""
    env = {i.name: np.round(numpy_helper.to_array(i)).astype(np.int64) for i in model.graph.initializer}
    env[model.graph.input[0].name] = np.asarray(x).astype(np.int64)
    for nd in model.graph.node:
        ins = [env[i] for i in nd.input]
        op = nd.op_type
        if op == "MatMul":
            y = int_matmul(*ins)
        elif op == "Add":
            y = ins[0] + ins[1]
        elif op == "Reshape":
            y = ins[0].reshape([int(v) for v in ins[1]])
        elif op == "Transpose":
            perm = [int(v) for v in helper.get_attribute_value(nd.attribute[0])]
            y = ins[0].transpose(perm)
        elif op == "RequantShift":
            y = requant_shift(ins[0], ins[1], ins[2], _attr_int(nd, "div"), _attr_int(nd, "n_levels_out"),
                              _attr_int(nd, "signed"))
        elif op == "iSoftmax":
            y = i_softmax(ins[0], *(_attr_int(nd, k) for k in ("coeffA", "coeffB", "coeffC", "log2", "n_levels")))
        elif op == "iLayerNorm":
            y = i_layernorm(ins[0], ins[1], ins[2], _attr_int(nd, "D"), _attr_int(nd, "n_levels"))
        elif op == "iGELU":
            y = i_gelu(ins[0], _attr_int(nd, "b"), _attr_int(nd, "one"))
        else:
            raise NotImplementedError(f"{nd.name}: op {op} not in this example reference")
        if np.abs(y).max(initial=0) >= 2**31:
            raise OverflowError(f"{nd.name}: a value leaves int32")
        env[nd.output[0]] = y
        if record is not None:
            record[nd.output[0]] = y
    return env[model.graph.output[0].name]


def run_ort(path: Path, x: np.ndarray) -> np.ndarray:
    """Run a float or QDQ model in onnxruntime on the CPU, graph optimizations disabled, one thread."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    return sess.run(None, {"input": np.asarray(x, np.float32)})[0]


def cosine(a, b) -> float:
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


# ---------------------------------------------------------------------------------------------
# Deterministic writers
# ---------------------------------------------------------------------------------------------


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez without timestamps (byte-identical across runs)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asarray(v), allow_pickle=False)
            info = zipfile.ZipInfo(k + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            zf.writestr(info, buf.getvalue())


def save_onnx(model: onnx.ModelProto, path: Path, max_bytes: int | None) -> list[Path]:
    """Save a model; if it would be max_bytes or larger, move its large initializers into
    external-data files ``<stem>.data<k>`` of at most CHUNK_BYTES each (standard ONNX external
    data, loaded by onnx.load(path) and onnxruntime from the same folder). Returns the files written."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for old in path.parent.glob(path.stem + ".data*"):
        old.unlink()
    if max_bytes is None or model.ByteSize() < max_bytes:
        path.write_bytes(model.SerializeToString())
        return [path]
    chunks: list[bytearray] = [bytearray()]
    written = [path]
    for t in model.graph.initializer:
        raw = numpy_helper.to_array(t).tobytes()
        if len(raw) < 4096:
            continue
        if len(raw) > CHUNK_BYTES:
            raise ValueError(f"initializer {t.name} alone exceeds {CHUNK_BYTES} bytes")
        if len(chunks[-1]) + len(raw) > CHUNK_BYTES:
            chunks.append(bytearray())
        loc = f"{path.stem}.data{len(chunks) - 1}"
        onnx.external_data_helper.set_external_data(t, loc, offset=len(chunks[-1]), length=len(raw))
        t.data_location = TensorProto.EXTERNAL
        t.ClearField("raw_data")
        t.ClearField("float_data")
        t.ClearField("int64_data")
        chunks[-1] += raw
    for k, c in enumerate(chunks):
        p = path.parent / f"{path.stem}.data{k}"
        p.write_bytes(bytes(c))
        written.append(p)
    path.write_bytes(model.SerializeToString())
    return written


# ---------------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------------


def _qdq_summary(model: onnx.ModelProto) -> dict:
    """Per op type of the QDQ graph: how many nodes read all their activations from
    DequantizeLinear, how many still read a float (unquantized) constant, how many feed QuantizeLinear."""
    producers = {o: n for n in model.graph.node for o in n.output}
    consumers: dict = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    inits = {i.name: i for i in model.graph.initializer}
    out: dict = {}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        acts = [i for i in n.input if i and i not in inits]
        d = out.setdefault(n.op_type, {"count": 0, "inputs_from_dq": 0, "float_const_inputs": 0, "outputs_to_q": 0})
        d["count"] += 1
        d["inputs_from_dq"] += int(all(i in producers and producers[i].op_type == "DequantizeLinear" for i in acts))
        d["float_const_inputs"] += int(any(i in inits and inits[i].data_type == TensorProto.FLOAT for i in n.input))
        d["outputs_to_q"] += int(all(any(c.op_type == "QuantizeLinear" for c in consumers.get(o, [])) for o in n.output))
    return out


def build_example(cfg: ExampleConfig, out_dir: Path, with_qdq: bool = True, max_bytes: int | None = MAX_FILE_BYTES,
                  log=print) -> dict:
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = make_weights(cfg)
    calib = make_inputs(cfg, _calib_seed(cfg), N_CALIB)
    held = make_inputs(cfg, _heldout_seed(cfg), 1)[0]

    fmodel = build_float_model(cfg, weights)
    float_path = out_dir / "float.onnx"
    files = save_onnx(fmodel, float_path, max_bytes)

    rec: dict = {}
    for c in calib:
        float_forward(cfg, weights, c, rec)
    imodel, info = build_int_model(cfg, weights, rec)
    files += save_onnx(imodel, out_dir / "int.onnx", max_bytes)

    s_in, s_out = info["scales"]["input"], info["scales"]["output"]
    x_int = np.clip(np.round(held.astype(np.float64) / s_in), -128, 127).astype(np.int8)
    y_float = float_forward(cfg, weights, held)
    y_int = run_int_model(imodel, x_int)
    cos = cosine(y_int * s_out, y_float)
    save_npz(out_dir / "inputs.npz", {"input": x_int})
    save_npz(out_dir / "inputs_float.npz", {"input": held})
    save_npz(out_dir / "outputs.npz", {"output": y_int.astype(np.int32)})
    files += [out_dir / "inputs.npz", out_dir / "inputs_float.npz", out_dir / "outputs.npz"]

    fidelity = {"cosine_int_vs_float": round(cos, 6)}
    qdq_info = {}
    if with_qdq:
        variants = [("qdq.onnx", False)] + ([("qdq_per_channel.onnx", True)] if cfg.name in PER_CHANNEL_EXAMPLES else [])
        for fname, per_channel in variants:
            qm = build_qdq_model(cfg, float_path, calib, per_channel)
            files += save_onnx(qm, out_dir / fname, max_bytes)
            qdq_info[fname] = _qdq_summary(qm)
            fidelity[f"cosine_{fname[:-5]}_ort_vs_float"] = round(cosine(run_ort(out_dir / fname, held), y_float), 6)

    meta = {
        "name": cfg.name,
        "S": cfg.S, "E": cfg.E, "P": cfg.P, "H": cfg.H, "HP": cfg.HP, "ffn": cfg.F, "blocks": cfg.blocks,
        "layernorm_epsilon": LN_EPS,
        "seed": cfg.seed,
        "seeds": {"weights": _weight_seed(cfg), "calibration": _calib_seed(cfg), "heldout": _heldout_seed(cfg)},
        "n_calibration_inputs": N_CALIB,
        "attention_scale_folded_into_q": True,
        "int_model": {
            "input_scale": s_in,
            "output_scale": s_out,
            "conventions": "int8 symmetric per-tensor activations (scale = max|calibration| / 127), "
                           "int8 symmetric per-tensor weights (scale = max|w| / 127, values -127..127), "
                           "biases int32 at s_in*s_w, iSoftmax output unsigned 0..255 = probability*255",
            "scales": info["scales"],
            "requant": info["requant"],
            "consts": info["consts"],
        },
        "fidelity": fidelity,  # on the held-out input (inputs_float.npz / inputs.npz)
        "qdq_ops": qdq_info,
        "files": sorted(f.name for f in files) + ["meta.json"],
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    log(f"{cfg.name}: cosine(int, float) = {cos:.5f}; files: {', '.join(sorted(f.name for f in files))}")
    return meta


def _q_params(model: onnx.ModelProto, tensor: str) -> tuple[float, int]:
    """(scale, zero point) of the QuantizeLinear that reads float tensor `tensor`."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "QuantizeLinear" and n.input[0] == tensor:
            return float(inits[n.input[1]]), int(inits[n.input[2]])
    raise KeyError(tensor)


def trained_statistics(cfg: ExampleConfig, weights, calib: np.ndarray, qdq: onnx.ModelProto) -> dict:
    """What makes this example hard, measured on its calibration inputs (meta.json, README)."""
    rec: dict = {}
    for c in calib:
        float_forward(cfg, weights, c, rec)
    out: dict = {"residual": {}, "scores": {}}
    last = cfg.blocks - 1
    for bi in range(cfg.blocks):
        p = f"b{bi}."
        for t in ("res1", "res2"):
            name = "output_QuantizeLinear_Input" if (bi == last and t == "res2") else p + t + ".out"
            scale, zp = _q_params(qdq, name)
            vals = np.concatenate([v[0, 1:] for v in rec[p + t]])  # ordinary tokens
            out["residual"][p + t] = {
                "scale": _round_sig(scale, 4), "zero_point": zp,
                "max_abs": _round_sig(float(max(np.abs(v).max() for v in rec[p + t])), 4),
                "ordinary_row_std_lsb_median": _round_sig(float(np.median(vals.std(-1)) / scale), 3)}
        scale, zp = _q_params(qdq, p + "scores.out")
        sc = np.concatenate([v.reshape(-1, cfg.S) for v in rec[p + "scores"]])
        row_max = sc.max(-1)
        hi = (127 - zp) * scale
        window = 255 * math.log(2) / 12  # an int8 softmax input at ln2/12 anchored at the top
        out["scores"][p + "scores"] = {
            "scale": _round_sig(scale, 4), "zero_point": zp,
            "calibrated_max": _round_sig(float(sc.max()), 4),
            "row_max_median": _round_sig(float(np.median(row_max)), 3),
            "rows_peaking_below_int8_window": _round_sig(float(np.mean(row_max < hi - window)), 3)}
    return out


def build_trained_example(cfg: ExampleConfig, out_dir: Path, log=print) -> dict:
    """float.onnx + qdq.onnx + inputs of the trained-statistics example. No int.onnx: QuantLib's
    iLayerNorm/iSoftmax semantics are exactly what such statistics defeat (docs/qdq-fidelity.md)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = make_trained_weights(cfg)
    calib = make_trained_inputs(cfg, _calib_seed(cfg), N_CALIB)
    held = make_trained_inputs(cfg, _heldout_seed(cfg), 16)
    float_path = out_dir / "float.onnx"
    files = save_onnx(build_float_model(cfg, weights), float_path, MAX_FILE_BYTES)
    qm = build_qdq_model(cfg, float_path, calib, per_channel=False)
    files += save_onnx(qm, out_dir / "qdq.onnx", MAX_FILE_BYTES)
    save_npz(out_dir / "inputs_float.npz", {"input": held[0]})
    save_npz(out_dir / "heldout_float.npz", {"input": held})
    files += [out_dir / "inputs_float.npz", out_dir / "heldout_float.npz"]
    cos = [cosine(run_ort(out_dir / "qdq.onnx", h), float_forward(cfg, weights, h)) for h in held]
    meta = {
        "name": cfg.name,
        "S": cfg.S, "E": cfg.E, "P": cfg.P, "H": cfg.H, "HP": cfg.HP, "ffn": cfg.F, "blocks": cfg.blocks,
        "layernorm_epsilon": LN_EPS,
        "seed": cfg.seed,
        "seeds": {"weights": _weight_seed(cfg), "outlier_read": cfg.seed + 7,
                  "calibration": _calib_seed(cfg), "heldout": _heldout_seed(cfg)},
        "n_calibration_inputs": N_CALIB,
        "attention_scale_folded_into_q": True,
        "outliers": {"channels": list(OUTLIER_CHANNELS), "token": 0, "values": list(OUTLIERS),
                     "head0_self_score_target": SCORE_PEAK},
        "statistics": trained_statistics(cfg, weights, calib, qm),
        "fidelity": {"cosine_qdq_ort_vs_float_heldout": [round(c, 6) for c in cos]},
        "qdq_ops": _qdq_summary(qm),
        "files": sorted(f.name for f in files) + ["meta.json"],
    }
    (out_dir / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    log(f"{cfg.name}: cosine(QDQ in ORT, float) = {', '.join(f'{c:.4f}' for c in cos)}; files: "
        f"{', '.join(sorted(f.name for f in files))}")
    return meta


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", help="output folder (default: examples/; required with --stress)")
    ap.add_argument("--only", nargs="*", help="build only these examples")
    ap.add_argument("--stress", action="store_true", help="build only the 12-block stress model (not committed)")
    ap.add_argument("--no-qdq", action="store_true", help="skip the onnxruntime QDQ models")
    args = ap.parse_args(argv)
    if args.stress and not args.out:
        ap.error("--stress needs --out DIR (the stress model is not committed under examples/)")
    out = Path(args.out or Path(__file__).resolve().parent)
    if args.stress:
        build_example(STRESS, out / STRESS.name, with_qdq=not args.no_qdq, max_bytes=None)
        return 0
    names = {c.name for c in EXAMPLES + TRAINED_EXAMPLES}
    for n in args.only or []:
        if n not in names:
            ap.error(f"unknown example {n!r}; known: {', '.join(sorted(names))}")
    for cfg in EXAMPLES:
        if args.only and cfg.name not in args.only:
            continue
        build_example(cfg, out / cfg.name, with_qdq=not args.no_qdq)
    for cfg in TRAINED_EXAMPLES:
        if (args.only and cfg.name not in args.only) or args.no_qdq:
            continue
        build_trained_example(cfg, out / cfg.name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
