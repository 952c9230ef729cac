"""Frontend B: standard QDQ int8 ONNX (onnxruntime's quantize_static and similar) → integer IR.

A QDQ graph is a float graph whose activations pass through QuantizeLinear → DequantizeLinear
pairs and whose weights are DequantizeLinear(int8 constant). Each float op between DQ and Q
becomes canonical integer ops (SPEC-integer.md §A, "Frontend B"):

  MatMul(x, W) [+ Add(bias)], Gemm    → Linear(x, W'[out][in], bias') {rq}
        W' = q_w - zp_w; bias' = round(b/(s_x*s_w)) - zp_x*Σ_k W'[n,k] (exact zero-point folding);
        rq: mul/2^s ~ s_x*s_w/s_out (per channel with per-channel weights), add = zp_out*2^s.
        The bias Add that onnxruntime quantizes separately is fused (one rounding, not two).
  MatMul(a, b), two activations       → MatMul {rq, zp_a, zp_b}; operand zero points are absorbed
        by the producers instead whenever they are ours (always the case for attention), so the
        MHSA pattern is zero-point free. A following Mul/Div by a scalar (1/√P) joins its rq.
  Add(a, b), two activations          → Add {rq_a, rq_b, rq}: a*mul_a + b*mul_b at a common scale
        s_out/2^s (exact, no intermediate rounding), zero points in the final add term.
  Add(x, constant)                    → RequantShift with a per-element add.
  Softmax(axis -1)                    → Softmax isoftmax; its input is requantized (by its
        producer) to e = ln2/L so that log2 = L exactly, in int16 (zero point 0, rounded
        normalisation) when onnxruntime's calibrated range is wider than an int8 window (it
        would clip the rows whose maxima lie low); output uint8 probability*255.
  LayerNormalization(axis -1)         → LayerNorm {mode: qdq} (ops.layernorm_qdq: widened input,
        rounded mean, 64-bit variance, rounded std) with weight/bias from γ, β, s_out.
  Gelu, or x*0.5*(1+Erf(x/√2)) with Div(√2) or Mul(1/√2), with or without Q/DQ inside
                                      → Lut: the exact GELU of each of the 256 input codes
        (option gelu="igelu": GELU {b, one, rq} (I-BERT), input zero point absorbed).
  Reshape/Transpose/Squeeze/Unsqueeze/Flatten/Identity → the same layout op (RequantShift after
        it only if the Q parameters differ on both sides).

Lowering works in three passes: read the graph into op records and "families" of tensors that
share one quantization (joined by layout ops); decide the families' integer encodings (softmax
grids, absorbed zero points, int8/uint8 re-encodings); emit IR nodes with constants derived from
the decided encodings. The int16 residual stream (QdqOptions.int16) is a transform on the result
(planner/transforms/int16.py). Deviations from onnxruntime's quantization are listed in graph.notes.
docs/qdq-fidelity.md has the derivations and the measured fidelity.

Conventions: the graph inputs are the integer tensors after the first QuantizeLinear (the caller
quantizes its float input with the input's scale and zero point: `quantize_input`); the outputs
are the integers before the last DequantizeLinear (`dequantize_output`). Every activation tensor
carries Tensor.quant (real = (q - zero_point)*scale). Fixed-point details: qdq_fixed.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from planner.errors import PlannerError, UsageError
from planner.frontend.onnx_io import GraphInput, attr_dict, constants
from planner.frontend.qdq_fixed import (LN2, WIDE_LEVELS, FixedPointError, fixed_point,
                                        igelu_consts, ilayernorm_consts, isoftmax_consts,
                                        layernorm_qdq_consts, make_requant, significant_bits,
                                        softmax_input_quant, softmax_scores_int16, add_requants)
from planner.ir import Graph, Node, QuantInfo, Requant, Tensor, dtype_for_range

LAYOUT = frozenset({"Reshape", "Transpose", "Squeeze", "Unsqueeze", "Flatten", "Identity"})
SUPPORTED = ("QuantizeLinear/DequantizeLinear (per-tensor 8-bit activations, per-tensor or "
             "per-channel weights) around MatMul, Gemm, Add, Softmax (last axis), "
             "LayerNormalization (last axis), Gelu or its erf form x*0.5*(1+Erf(x/sqrt2)), a "
             "scalar Mul/Div right after an activation MatMul, and the layout ops "
             + "/".join(sorted(LAYOUT)))
Q_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})


@dataclass
class QdqOptions:
    """Choices of the lowering (defaults are what load_graph uses)."""

    softmax_min_levels: int = 12       # iSoftmax input scale is ln2/L with L >= this
    absorb_zero_points: bool = True    # zp-free MatMul operands / GELU inputs via their producers
    absorb_clip_codes: int = 0         # more codes than this would clip: rescale instead
    # operands of MatMul (two activations): "carry" = a nonzero zero point is kept, on
    # onnxruntime's own grid, and the kernels subtract it exactly (row/column corrections:
    # kl_bmatmul_zp, kl_mhsa_chunk); "absorb" = the producer makes the operand zero-point free
    # (on a coarser symmetric grid where that would clip; the lowering before carrying)
    matmul_zero_points: str = "carry"
    fuse_bias: bool = True             # MatMul + separately quantized bias Add → one Linear
    # "qdq": LayerNorm {mode: qdq} (widened input, rounded mean, 64-bit variance, rounded std:
    # within rounding of a float LayerNorm of the same input); "ilayernorm": QuantLib's
    # iLayerNorm (truncated mean of the raw codes, floored isqrt), kept for comparison
    layernorm: str = "qdq"
    # softmax input: "auto" = int16 scores at ln2/L when the int8 window ln2/L x 256 cannot hold
    # onnxruntime's calibrated range (it would clip the rows whose maxima lie low), else int8;
    # "int8" / "int16" force one
    softmax_scores: str = "auto"
    # iSoftmax normalisation of int8 scores: "round" = floor((2y(n-1) + S) / 2S), within 1/2 LSB
    # of the float softmax of the same logits; "floor" = QuantLib's floor(y(n-1) / S), -0.5 LSB
    # on average (int16 scores are always rounded)
    softmax_rounding: str = "round"
    # GELU: "table" = Lut of the exact erf GELU of every 8-bit input code, rounded onto the
    # output grid (within rounding of float; no polynomial); "igelu" = I-BERT's iGELU
    gelu: str = "table"
    # int16 residual stream: auto | off | TENSOR,... (planner/transforms/int16.py)
    int16: str = "off"

    def __post_init__(self) -> None:
        choices = {"layernorm": ("qdq", "ilayernorm"), "softmax_scores": ("auto", "int8", "int16"),
                   "softmax_rounding": ("round", "floor"), "gelu": ("table", "igelu"),
                   "matmul_zero_points": ("carry", "absorb")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise UsageError(f"QDQ lowering option {name}={getattr(self, name)!r}: expected "
                                 f"one of {', '.join(allowed)}")


# ------------------------------------------------------------------------------------------
# Build-time objects: activation tensors grouped in families (tensors joined by pure layout ops
# share one quantization), and op records lowered once every family's quantization is decided.
# ------------------------------------------------------------------------------------------

@dataclass(eq=False)
class _Fam:
    scale: float           # onnxruntime's quantization
    zp: int
    signed: bool
    root: "_Rec | None" = None
    members: list = field(default_factory=list)
    eff_scale: float = 0.0  # ours (what the IR tensor means)
    eff_zp: int = 0
    eff_signed: bool = True
    locked: str = ""        # why scale/zp/signedness must not change
    bits: int = 8           # 8, or 16 (int16 softmax scores)

    def __post_init__(self):
        self.eff_scale, self.eff_zp, self.eff_signed = self.scale, self.zp, self.signed

    @property
    def controllable(self) -> bool:
        """Our op writes this family's integers with a requantization we choose."""
        return self.root is not None and self.root.kind not in ("Softmax", "Input")

    @property
    def qrange(self) -> tuple[int, int]:
        if self.bits == 16:
            return (-32768, 32767)
        return (-128, 127) if self.eff_signed else (0, 255)

    @property
    def n_levels(self) -> int:
        return 1 << self.bits


@dataclass(eq=False)
class _T:
    name: str
    fam: _Fam


@dataclass(eq=False)
class _Rec:
    kind: str
    name: str
    inputs: list
    out: "_T | None" = None
    p: dict = field(default_factory=dict)


@dataclass
class _Const:
    real: np.ndarray                # float64 value
    q: np.ndarray | None = None     # integer data when it came from a DequantizeLinear
    scale: np.ndarray | None = None
    zp: np.ndarray | None = None
    axis: int | None = None


def _copy(model: onnx.ModelProto) -> onnx.ModelProto:
    out = onnx.ModelProto()
    out.CopyFrom(model)
    return out


def _toposorted(nodes: list[onnx.NodeProto], available: set[str]) -> list[onnx.NodeProto]:
    """Nodes in an order where every input is produced first (most files already are)."""
    available = set(available) | {""}
    pending, ordered = list(nodes), []
    while pending:
        rest = [n for n in pending if not all(i in available for i in n.input)]
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            return ordered + rest  # a cycle or an undefined input: reported where it is read
        for n in ready:
            available.update(n.output)
        ordered += ready
        pending = rest
    return ordered


class _Importer:
    def __init__(self, model: onnx.ModelProto, path: Path, inputs: list[GraphInput],
                 options: QdqOptions):
        self.model = model
        self.path = path
        self.opt = options
        self.consts = constants(model)
        self.gin = {gi.name: gi for gi in inputs}
        if any(not n.name for n in model.graph.node):  # name them, on a copy
            self.model = model = _copy(model)
            for i, n in enumerate(model.graph.node):
                n.name = n.name or f"{n.op_type}_{i}"
        self.nodes = _toposorted([n for n in model.graph.node if n.op_type != "Constant"],
                                 set(self.consts) | {i.name for i in model.graph.input})
        self.prod: dict[str, onnx.NodeProto] = {o: n for n in self.nodes for o in n.output}
        self.cons: dict[str, list[onnx.NodeProto]] = {}
        for n in self.nodes:
            for i in n.input:
                if i:
                    self.cons.setdefault(i, []).append(n)
        self.graph_outputs = [o.name for o in model.graph.output]
        self.view: dict[str, _T] = {}        # float tensor (a DQ output, a layout result) → tensor
        self.qmap: dict[str, _T] = {}        # integer tensor (a Q output / int input) → tensor
        self.fconst: dict[str, _Const] = {}  # DQ of a constant → its value
        self.pending: dict[str, _Rec] = {}   # float output of a lowered op → its record
        self.recs: list[_Rec] = []
        self.fams: list[_Fam] = []
        self.in_tensors: list[_T] = []
        self.consumed: set[int] = set()      # ids of nodes absorbed by a pattern
        self.anchors: dict[int, tuple] = {}  # id(first node of a pattern) → (kind, data)
        self.notes: list[str] = []
        self.names: set[str] = set()

    # ------------------------------------------------------------------ helpers
    def err(self, node: onnx.NodeProto | None, msg: str) -> PlannerError:
        where = f"node '{node.name}' ({node.op_type})" if node is not None else "graph"
        return PlannerError(f"{self.path}: {where}: {msg}. Supported QDQ patterns: {SUPPORTED}")

    def uniq(self, name: str) -> str:
        base, k = name, 1
        while name in self.names:
            name = f"{base}.{k}"
            k += 1
        self.names.add(name)
        return name

    def new_fam(self, scale, zp, signed, root) -> _Fam:
        f = _Fam(float(scale), int(zp), bool(signed), root)
        self.fams.append(f)
        return f

    def new_tensor(self, name: str, fam: _Fam) -> _T:
        t = _T(self.uniq(name), fam)
        fam.members.append(t)
        return t

    def const_value(self, name: str) -> _Const | None:
        if name in self.fconst:
            return self.fconst[name]
        if name in self.consts:
            arr = np.asarray(self.consts[name])
            return _Const(arr.astype(np.float64)) if arr.dtype.kind == "f" else None
        return None

    def act(self, name: str) -> _T | None:
        return self.view.get(name)

    def quant_params(self, node: onnx.NodeProto) -> tuple[Any, Any, np.dtype]:
        """(scale, zero_point, integer dtype) of a Q or DQ node."""
        if len(node.input) < 2 or node.input[1] not in self.consts:
            raise self.err(node, "the scale must be a constant")
        scale = np.asarray(self.consts[node.input[1]], dtype=np.float64)
        if len(node.input) > 2 and node.input[2]:
            if node.input[2] not in self.consts:
                raise self.err(node, "the zero point must be a constant")
            zp = np.asarray(self.consts[node.input[2]])
            dt = zp.dtype
        else:
            dt = np.dtype(np.uint8)
            if node.op_type == "DequantizeLinear" and node.input[0] in self.consts:
                dt = np.asarray(self.consts[node.input[0]]).dtype
            zp = np.zeros((), dtype=dt)
        a = attr_dict(node)
        if "block_size" in a and int(a["block_size"]) != 0:
            raise self.err(node, "blocked quantization (block_size) is not supported")
        return scale, zp, dt

    def act_qparams(self, node: onnx.NodeProto) -> tuple[float, int, bool]:
        scale, zp, dt = self.quant_params(node)
        if dt not in (np.int8, np.uint8):
            raise self.err(node, f"activation type {dt} is not supported (int8 or uint8 only)")
        if scale.size != 1 or zp.size != 1:
            raise self.err(node, f"an activation must be quantized per tensor (one scale and zero "
                           f"point), got {scale.size} scales; per-axis quantization is supported "
                           "for constant weights only")
        return float(scale.reshape(-1)[0]), int(zp.reshape(-1)[0]), dt == np.int8

    def consumers(self, name: str) -> list[onnx.NodeProto]:
        return [n for n in self.cons.get(name, [])]

    # ------------------------------------------------------------------ pass 1: read the graph
    def run(self) -> None:
        for n in self.nodes:  # quantized constants first: patterns look at their values
            if n.op_type == "DequantizeLinear" and n.input[0] in self.consts:
                self.read_dq(n)
                self.consumed.add(id(n))
        self.find_patterns()
        for n in self.nodes:
            if id(n) in self.anchors:
                kind, data = self.anchors[id(n)]
                self.lower_pattern(kind, data)
            if id(n) in self.consumed:
                continue
            op = n.op_type
            if op == "DequantizeLinear":
                self.read_dq(n)
            elif op == "QuantizeLinear":
                self.read_q(n)
            elif op in LAYOUT:
                self.read_layout(n)
            elif op in ("MatMul", "Gemm"):
                self.read_matmul(n)
            elif op == "Add":
                self.read_add(n)
            elif op == "Softmax":
                self.read_softmax(n)
            elif op == "LayerNormalization":
                self.read_layernorm(n)
            elif op == "Gelu":
                self.read_gelu_op(n)
            else:
                raise self.err(n, "this op is not supported here (not part of a recognised "
                               "pattern between DequantizeLinear and QuantizeLinear)")
        for f, rec in self.pending.items():
            if rec.out is None:
                raise self.err(self.prod.get(f), f"its output '{f}' is not quantized "
                               "(no QuantizeLinear follows); a QDQ op must end in QuantizeLinear")

    def read_dq(self, n: onnx.NodeProto) -> None:
        x = n.input[0]
        if x in self.consts:
            scale, zp, _ = self.quant_params(n)
            q = np.asarray(self.consts[x])
            axis = attr_dict(n).get("axis", 1) if scale.size > 1 else None
            if axis is not None:
                axis = int(axis) % q.ndim
                shape = [1] * q.ndim
                shape[axis] = -1
                s_b, z_b = scale.reshape(shape), zp.astype(np.int64).reshape(shape)
            else:
                s_b, z_b = scale.reshape(()), zp.astype(np.int64).reshape(())
            real = (q.astype(np.int64) - z_b) * s_b
            self.fconst[n.output[0]] = _Const(real, q.astype(np.int64), s_b, z_b, axis)
            return
        t = self.qmap.get(x)
        if t is None and x in self.gin:  # an integer graph input, already quantized
            scale, zp, signed = self.act_qparams(n)
            fam = self.new_fam(scale, zp, signed, _Rec("Input", x, []))
            fam.locked = "graph input"
            t = self.new_tensor(x, fam)
            self.in_tensors.append(t)
            self.qmap[x] = t
        if t is None:
            raise self.err(n, f"its input '{x}' is neither a constant nor the output of a "
                           "QuantizeLinear")
        scale, zp, signed = self.act_qparams(n)
        f = t.fam
        if not (math.isclose(scale, f.scale, rel_tol=1e-6) and zp == f.zp and signed == f.signed):
            raise self.err(n, "DequantizeLinear parameters differ from its QuantizeLinear's")
        self.view[n.output[0]] = t

    def read_q(self, n: onnx.NodeProto) -> None:
        f_in, q_out = n.input[0], n.output[0]
        scale, zp, signed = self.act_qparams(n)
        if f_in in self.gin:
            others = [c for c in self.consumers(f_in) if c.op_type != "QuantizeLinear"]
            if others:
                raise self.err(others[0], f"it reads the float graph input '{f_in}' directly; "
                               "a QDQ graph must quantize its input first")
            prev = [t for t in self.in_tensors if t.name == f_in]
            if prev:
                t = prev[0]
                if not (math.isclose(scale, t.fam.scale, rel_tol=1e-6) and zp == t.fam.zp):
                    raise self.err(n, f"graph input '{f_in}' is quantized twice with different "
                                   "parameters")
            else:
                fam = self.new_fam(scale, zp, signed, _Rec("Input", f_in, []))
                fam.locked = "graph input"
                t = self.new_tensor(f_in, fam)
                self.in_tensors.append(t)
            self.qmap[q_out] = t
            return
        if f_in in self.pending:
            rec = self.pending[f_in]
            if rec.out is not None:  # a second Q of the same float: must be identical
                f = rec.out.fam
                if not (math.isclose(scale, f.scale, rel_tol=1e-6) and zp == f.zp):
                    raise self.err(n, f"'{f_in}' is quantized twice with different parameters")
                self.qmap[q_out] = rec.out
                return
            fam = self.new_fam(scale, zp, signed, rec)
            rec.out = self.new_tensor(f_in, fam)
            self.qmap[q_out] = rec.out
            return
        if f_in in self.view:  # a DQ'd or laid-out tensor quantized again
            t = self.view[f_in]
            f = t.fam
            if math.isclose(scale, f.scale, rel_tol=1e-6) and zp == f.zp and signed == f.signed:
                self.qmap[q_out] = t
                return
            rec = _Rec("RQ", n.name, [t])
            self.recs.append(rec)
            fam = self.new_fam(scale, zp, signed, rec)
            rec.out = self.new_tensor(f"{f_in}.rq", fam)
            self.qmap[q_out] = rec.out
            return
        prod = self.prod.get(f_in)
        if prod is None:
            raise self.err(n, f"its input '{f_in}' is a constant or undefined; quantized "
                           "constants should be stored as integers with a DequantizeLinear")
        raise self.err(prod, "its output is quantized, but the op is not supported")

    def read_layout(self, n: onnx.NodeProto) -> None:
        x = self.act(n.input[0])
        if x is None:
            raise self.err(n, "its input must be a dequantized activation")
        a = attr_dict(n)
        op = n.op_type
        p: dict[str, Any] = {}
        if op == "Reshape":
            if len(n.input) < 2 or n.input[1] not in self.consts:
                raise self.err(n, "the target shape must be a constant")
            p = dict(shape=[int(v) for v in np.asarray(self.consts[n.input[1]]).reshape(-1)],
                     allowzero=bool(a.get("allowzero", 0)))
        elif op == "Transpose":
            p = dict(perm=list(a["perm"]) if "perm" in a else None)
        elif op in ("Squeeze", "Unsqueeze"):
            if "axes" in a:
                axes = [int(v) for v in a["axes"]]
            elif len(n.input) > 1 and n.input[1]:
                axes = [int(v) for v in np.asarray(self.consts[n.input[1]]).reshape(-1)]
            else:
                axes = None
            p = dict(axes=axes)
        elif op == "Flatten":
            p = dict(axis=int(a.get("axis", 1)))
        rec = _Rec("Layout", n.name, [x], p=dict(op=op, attrs=p))
        self.recs.append(rec)
        rec.out = self.new_tensor(n.output[0], x.fam)
        self.view[n.output[0]] = rec.out

    def expect_output(self, node: onnx.NodeProto, rec: _Rec, out: str | None = None) -> None:
        out = out or node.output[0]
        cons = self.consumers(out)
        bad = [c for c in cons if c.op_type != "QuantizeLinear" and id(c) not in self.consumed]
        if bad:
            raise self.err(node, f"its float output '{out}' feeds {bad[0].op_type} node "
                           f"'{bad[0].name}' without a QuantizeLinear in between")
        if out in self.graph_outputs:
            raise self.err(node, f"its float output '{out}' is a graph output; the QDQ graph "
                           "must quantize it")
        self.pending[out] = rec
        self.recs.append(rec)

    # ------------------------------------------------------------------ MatMul / Gemm / Add
    def read_matmul(self, n: onnx.NodeProto) -> None:
        if n.op_type == "Gemm":
            return self.read_gemm(n)
        a_name, b_name = n.input[0], n.input[1]
        a, b = self.act(a_name), self.act(b_name)
        wb = self.const_value(b_name)
        if a is not None and b is not None:
            rec = _Rec("MatMul", n.name, [a, b], p=dict(scale=1.0))
            out = self.fuse_scalar_scale(n, rec)
            self.expect_output(n, rec, out)
            return
        if a is not None and wb is not None:
            if wb.real.ndim != 2:
                raise self.err(n, f"constant operand '{b_name}' has {wb.real.ndim} dims; only "
                               "2-D weights [in, out] are supported")
            self.linear(n, a, wb, transposed=False)
            return
        if self.const_value(a_name) is not None:
            raise self.err(n, "a constant first operand (W·x) is not supported; write x·W")
        raise self.err(n, "its operands must be dequantized activations or DequantizeLinear "
                       "constants")

    def read_gemm(self, n: onnx.NodeProto) -> None:
        a = attr_dict(n)
        if int(a.get("transA", 0)):
            raise self.err(n, "Gemm with transA=1 is not supported")
        x = self.act(n.input[0])
        w = self.const_value(n.input[1])
        if x is None or w is None:
            raise self.err(n, "Gemm needs an activation A and a constant B")
        alpha, beta = float(a.get("alpha", 1.0)), float(a.get("beta", 1.0))
        w = _Const(w.real * alpha, w.q, None if w.scale is None else w.scale * alpha, w.zp, w.axis)
        bias = None
        if len(n.input) > 2 and n.input[2]:
            c = self.const_value(n.input[2])
            if c is None:
                raise self.err(n, "the Gemm bias C must be a constant")
            bias = c.real * beta
        self.linear(n, x, w, transposed=bool(int(a.get("transB", 0))), bias=bias)

    def linear(self, n, x: _T, w: _Const, transposed: bool, bias=None) -> None:
        if w.q is None:
            raise self.err(n, "the weight is a float constant; a QDQ graph stores weights as "
                           "integers with a DequantizeLinear")
        # IR weights are [out][in]; per-channel scales must be per output feature
        q = w.q if transposed else w.q.T
        s = np.asarray(w.scale, dtype=np.float64)
        z = np.asarray(w.zp, dtype=np.int64)
        out_axis = 0 if transposed else 1
        if w.axis is not None and w.axis != out_axis:
            raise self.err(n, "per-channel weights must be quantized along the output features "
                           f"(axis {out_axis} here), got axis {w.axis}")
        n_out = q.shape[0]
        s = np.broadcast_to(s.reshape(-1), (n_out,)) if s.size > 1 else s.reshape(())
        z = np.broadcast_to(z.reshape(-1), (n_out,)) if z.size > 1 else z.reshape(())
        rec = _Rec("Linear", n.name, [x], p=dict(wq=q.astype(np.int64), ws=s, wz=z, bias=bias,
                                                  wname=n.input[1]))
        out = n.output[0]
        if bias is None and self.opt.fuse_bias:
            out = self.fuse_bias(n, rec) or out
        self.expect_output(n, rec, out)

    def _through_qdq(self, f: str) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto]] | None:
        """f → Q → DQ(s): (the Q/DQ nodes, the DQ outputs' consumers), when that is all f feeds."""
        cons = self.consumers(f)
        if len(cons) != 1 or cons[0].op_type != "QuantizeLinear" or f in self.graph_outputs:
            return None
        q = cons[0]
        if q.output[0] in self.graph_outputs:
            return None
        dqs = self.consumers(q.output[0])
        if not dqs or any(d.op_type != "DequantizeLinear" for d in dqs):
            return None
        nxt = []
        for d in dqs:
            if d.output[0] in self.graph_outputs:
                return None
            nxt += self.consumers(d.output[0])
        return [q] + dqs, nxt

    def _single_next(self, f: str) -> tuple[list[onnx.NodeProto], onnx.NodeProto, str] | None:
        """The one op reading f, directly or through one Q/DQ pair: (skipped, op, its input)."""
        cons = self.consumers(f)
        if f in self.graph_outputs:
            return None
        if len(cons) == 1 and cons[0].op_type not in Q_OPS:
            return [], cons[0], f
        hop = self._through_qdq(f)
        if hop is None or len(hop[1]) != 1:
            return None
        skipped, (op,) = hop
        dq_out = [i for i in op.input if i in {d.output[0] for d in skipped[1:]}][0]
        return skipped, op, dq_out

    def fuse_bias(self, n: onnx.NodeProto, rec: _Rec) -> str | None:
        """MatMul → [Q → DQ] → Add(bias constant [N]) fuses into the Linear (one rounding)."""
        nxt = self._single_next(n.output[0])
        if nxt is None:
            return None
        skipped, add, via = nxt
        if add.op_type != "Add":
            return None
        other = add.input[1] if add.input[0] == via else add.input[0]
        c = self.const_value(other)
        n_out = rec.p["wq"].shape[0]
        if c is None or c.real.size not in (1, n_out) or c.real.ndim > 1 and c.real.shape[-1] != n_out:
            return None
        rec.p["bias"] = np.broadcast_to(c.real.reshape(-1), (n_out,)).astype(np.float64)
        rec.p["fused_bias_node"] = add.name
        self.consumed.update(id(s) for s in skipped)
        self.consumed.add(id(add))
        return add.output[0]

    def fuse_scalar_scale(self, n: onnx.NodeProto, rec: _Rec) -> str:
        """Activation MatMul → [Q → DQ] → Mul/Div(scalar constant) fuses into the MatMul's rq."""
        out = n.output[0]
        while True:
            nxt = self._single_next(out)
            if nxt is None:
                return out
            skipped, op, via = nxt
            if op.op_type not in ("Mul", "Div") or (op.op_type == "Div" and op.input[0] != via):
                return out
            other = op.input[1] if op.input[0] == via else op.input[0]
            c = self.const_value(other)
            if c is None or c.real.size != 1 or float(c.real.reshape(-1)[0]) == 0.0:
                return out
            v = float(c.real.reshape(-1)[0])
            rec.p["scale"] *= v if op.op_type == "Mul" else 1.0 / v
            self.consumed.update(id(s) for s in skipped)
            self.consumed.add(id(op))
            self.notes.append(f"{op.op_type} '{op.name}' by {v:g} folded into MatMul '{n.name}'")
            out = op.output[0]

    def read_add(self, n: onnx.NodeProto) -> None:
        a, b = self.act(n.input[0]), self.act(n.input[1])
        if a is not None and b is not None:
            rec = _Rec("Add", n.name, [a, b])
        else:
            x = a or b
            c = self.const_value(n.input[1] if a is not None else n.input[0])
            if x is None or c is None:
                raise self.err(n, "its inputs must be dequantized activations or constants")
            rec = _Rec("AddConst", n.name, [x], p=dict(c=c.real))
        self.expect_output(n, rec)

    # ------------------------------------------------------------------ Softmax / LN / GELU
    def read_softmax(self, n: onnx.NodeProto) -> None:
        x = self.act(n.input[0])
        if x is None:
            raise self.err(n, "its input must be a dequantized activation")
        axis = int(attr_dict(n).get("axis", -1 if self.opset() >= 13 else 1))
        rank = self.rank_of(n.input[0])
        if axis != -1 and (rank is None or axis != rank - 1):
            raise self.err(n, f"softmax over axis {axis}: only the last axis is supported")
        self.expect_output(n, _Rec("Softmax", n.name, [x]))

    def opset(self) -> int:
        return max([o.version for o in self.model.opset_import if o.domain in ("", "ai.onnx")] or [13])

    def rank_of(self, name: str) -> int | None:
        for vi in list(self.model.graph.value_info) + list(self.model.graph.input):
            if vi.name == name and vi.type.tensor_type.HasField("shape"):
                return len(vi.type.tensor_type.shape.dim)
        return None

    def read_layernorm(self, n: onnx.NodeProto) -> None:
        a = attr_dict(n)
        x = self.act(n.input[0])
        if x is None:
            raise self.err(n, "its input must be a dequantized activation")
        axis = int(a.get("axis", -1))
        rank = self.rank_of(n.input[0])
        if axis != -1 and (rank is None or axis != rank - 1):
            raise self.err(n, f"normalisation from axis {axis}: only the last axis is supported")
        g = self.const_value(n.input[1])
        b = self.const_value(n.input[2]) if len(n.input) > 2 and n.input[2] else _Const(np.zeros(1))
        if g is None or b is None:
            raise self.err(n, "scale and bias must be constants")
        if len(n.output) > 1 and any(n.output[1:]):
            raise self.err(n, "the optional Mean/InvStdDev outputs are not supported")
        rec = _Rec("LayerNorm", n.name, [x], p=dict(gamma=g.real.reshape(-1), beta=b.real.reshape(-1),
                                                    eps=float(a.get("epsilon", 1e-5))))
        self.expect_output(n, rec)

    def read_gelu_op(self, n: onnx.NodeProto) -> None:
        x = self.act(n.input[0])
        if x is None:
            raise self.err(n, "its input must be a dequantized activation")
        approx = attr_dict(n).get("approximate", "none")
        if approx != "none":
            self.notes.append(f"Gelu '{n.name}' (approximate={approx}) lowered to I-BERT's erf "
                              "polynomial")
        self.expect_output(n, _Rec("GELU", n.name, [x]))

    # ---- the erf form of GELU, with or without Q/DQ between its ops
    def find_patterns(self) -> None:
        for n in self.nodes:
            if n.op_type == "Erf":
                self.match_gelu(n)

    def _source(self, f: str) -> str:
        """The float tensor behind f, looking through DQ ← Q (an activation view)."""
        p = self.prod.get(f)
        if p is not None and p.op_type == "DequantizeLinear" and p.input[0] not in self.consts:
            q = self.prod.get(p.input[0])
            if q is not None and q.op_type == "QuantizeLinear":
                return self._source(q.input[0])
        return f

    def _const_near(self, name: str, value: float) -> bool:
        c = self.const_value(name)
        return (c is not None and c.real.size == 1
                and math.isclose(float(c.real.reshape(-1)[0]), value, rel_tol=2e-3))

    def match_gelu(self, erf: onnx.NodeProto) -> None:
        pre = self.prod.get(erf.input[0])
        fail = lambda why: self.err(erf, f"not a recognised GELU x*0.5*(1+Erf(x/sqrt2)): {why}")  # noqa: E731
        pre_skipped: list[onnx.NodeProto] = []
        if pre is not None and pre.op_type == "DequantizeLinear" and pre.input[0] not in self.consts:
            q = self.prod.get(pre.input[0])  # x/sqrt2 quantized on its own (Mul is quantizable)
            if (q is not None and q.op_type == "QuantizeLinear"
                    and len(self.consumers(erf.input[0])) == 1
                    and len(self.consumers(pre.input[0])) == 1
                    and len(self.consumers(q.input[0])) == 1):
                pre_skipped = [pre, q]
                pre = self.prod.get(q.input[0])
        if pre is None or pre.op_type not in ("Div", "Mul"):
            raise fail("Erf's input must be Div(x, sqrt2) or Mul(x, 1/sqrt2)")
        target = math.sqrt(2.0) if pre.op_type == "Div" else 1.0 / math.sqrt(2.0)
        xs = [i for i in pre.input if not self._const_near(i, target)]
        if len(xs) != 1 or (pre.op_type == "Div" and xs[0] != pre.input[0]):
            raise fail(f"{pre.op_type} '{pre.name}' must scale x by 1/sqrt2")
        x_view = xs[0]
        x_src = self._source(x_view)
        if x_view not in {d.output[0] for d in self.nodes if d.op_type == "DequantizeLinear"}:
            raise fail(f"x ('{x_view}') must be a dequantized activation")
        chain = [pre, erf] + pre_skipped
        have = {"one": False, "x": False, "half": False}
        cur = erf.output[0]
        last = erf
        extra: list[onnx.NodeProto] = []
        while not all(have.values()):
            nxt = self._single_next(cur)
            if nxt is None:
                raise fail(f"'{cur}' must feed exactly one Add/Mul (possibly through one Q/DQ)")
            skipped, op, via = nxt
            other = op.input[1] if op.input[0] == via else op.input[0]
            if op.op_type == "Add" and not have["one"] and self._const_near(other, 1.0):
                have["one"] = True
            elif op.op_type == "Mul" and not have["half"] and self._const_near(other, 0.5):
                have["half"] = True
            elif op.op_type == "Mul" and not have["x"] and self._source(other) == x_src:
                have["x"] = True
            elif op.op_type == "Mul" and not have["x"] and not have["half"]:
                # other = (x*0.5), computed separately (possibly through Q/DQ)
                h = self.prod.get(self._source(other))
                if h is None or h.op_type != "Mul":
                    raise fail(f"Mul '{op.name}' multiplies by neither x, 0.5 nor x*0.5")
                hx = [i for i in h.input if not self._const_near(i, 0.5)]
                if len(hx) != 1 or self._source(hx[0]) != x_src:
                    raise fail(f"Mul '{h.name}' is not x*0.5")
                have["x"] = have["half"] = True
                extra.append(h)
                hop = self._through_qdq(h.output[0])
                if hop is not None:
                    extra += hop[0]
            else:
                raise fail(f"unexpected {op.op_type} '{op.name}' in the GELU chain")
            chain += skipped + [op]
            cur, last = op.output[0], op
        nodes = chain + extra
        first = min(nodes, key=lambda m: self.nodes.index(m))
        self.consumed.update(id(m) for m in nodes)
        dropped = [m.name for m in nodes if m.op_type == "QuantizeLinear"]
        self.anchors[id(first)] = ("gelu", dict(x=x_view, out=last, name=last.name, dropped=dropped))

    def lower_pattern(self, kind: str, data: dict) -> None:
        if kind == "gelu":
            x = self.act(data["x"])
            rec = _Rec("GELU", data["name"], [x])
            if data["dropped"]:
                self.notes.append(f"GELU '{data['name']}': the intermediate quantizations "
                                  f"{', '.join(data['dropped'])} are not reproduced (one iGELU)")
            last = data["out"]
            self.consumed.discard(id(last))  # its output check happens here
            self.expect_output(last, rec)
            self.consumed.add(id(last))

    # ------------------------------------------------------------------ pass 2: decide scales
    def decide(self) -> None:
        for rec in self.recs:
            if rec.kind == "Softmax":
                self.decide_softmax(rec)
        for rec in self.recs:
            if rec.kind == "LayerNorm":
                f = rec.out.fam
                if not f.eff_signed:  # iLayerNorm writes signed int8: same values, zp - 128
                    f.eff_signed, f.eff_zp = True, f.eff_zp - 128
                self.prefer_signed(rec.inputs[0].fam)
        if self.opt.absorb_zero_points:
            for rec in self.recs:
                if rec.kind == "MatMul":
                    for t in rec.inputs:
                        if not self.carry_zp(t.fam):
                            self.absorb_zp(t.fam, f"operand of MatMul '{rec.name}'")
                elif rec.kind == "GELU" and self.opt.gelu == "igelu":
                    self.absorb_zp(rec.inputs[0].fam, f"input of GELU '{rec.name}'")
        for rec in self.recs:
            if rec.kind == "GELU":
                f = rec.inputs[0].fam
                rec.p["offset"] = self.opt.gelu == "igelu" and not (f.eff_zp == 0 and f.eff_signed)

    def decide_softmax(self, rec: _Rec) -> None:
        f_in = rec.inputs[0].fam
        f_out = rec.out.fam
        if f_out.locked:
            raise PlannerError(f"{self.path}: node '{rec.name}': its output is also required "
                               f"with another quantization ({f_out.locked})")
        f_out.eff_scale, f_out.eff_zp, f_out.eff_signed = 1.0 / 255.0, 0, False
        f_out.locked = f"Softmax '{rec.name}' output (probability*255, uint8)"
        if f_out.scale and not (math.isclose(f_out.scale, 1 / 255, rel_tol=1e-4)
                                and f_out.zp == (-128 if f_out.signed else 0)):
            self.notes.append(f"Softmax '{rec.name}': output quantized at 1/255 (uint8) instead of "
                              f"scale {f_out.scale:g}, zero point {f_out.zp}")
        zp_signed = f_in.zp if f_in.signed else f_in.zp - 128  # the same codes as int8
        e, zp, levels = softmax_input_quant(f_in.scale, zp_signed, self.opt.softmax_min_levels)
        mode = self.opt.softmax_scores
        if mode not in ("auto", "int8", "int16"):
            raise PlannerError(f"softmax_scores must be auto, int8 or int16, got {mode!r}")
        clips = math.floor(LN2 / f_in.scale + 1e-9) < self.opt.softmax_min_levels
        if (mode == "int16" or (mode == "auto" and clips)) and f_in.controllable and not f_in.locked:
            e, levels = softmax_scores_int16(f_in.scale, zp_signed)
            f_in.eff_scale, f_in.eff_zp, f_in.eff_signed, f_in.bits = e, 0, True, 16
            f_in.locked = f"Softmax '{rec.name}' input (int16, scale ln2/{levels})"
            rec.p["levels"] = levels
            why = ("its calibrated range is wider than an int8 window at ln2/"
                   f"{self.opt.softmax_min_levels}" if clips else "softmax_scores=int16")
            self.notes.append(f"Softmax '{rec.name}': input requantized by its producer to int16 "
                              f"at scale ln2/{levels} = {e:.6g} (onnxruntime: int8 at "
                              f"{f_in.scale:.6g}), zero point 0: {why}, so no score clips")
            return
        if f_in.controllable and not f_in.locked:
            f_in.eff_scale, f_in.eff_zp, f_in.eff_signed = e, zp, True
            f_in.locked = f"Softmax '{rec.name}' input (scale ln2/{levels})"
            rec.p["levels"] = levels
            self.notes.append(f"Softmax '{rec.name}': input requantized by its producer to scale "
                              f"ln2/{levels} = {e:.6g} (onnxruntime: {f_in.scale:.6g}), "
                              f"zero point {zp}")
        else:
            rec.p["pre_rq"] = (e, zp, levels)
            rec.p["levels"] = levels
            self.notes.append(f"Softmax '{rec.name}': a RequantShift to scale ln2/{levels} is "
                              "inserted before it (its producer is not requantizable)")

    def prefer_signed(self, f: _Fam) -> None:
        if not f.eff_signed and f.controllable and not f.locked:
            f.eff_signed, f.eff_zp = True, f.eff_zp - 128

    def carry_zp(self, f: _Fam) -> bool:
        """A MatMul operand keeps its zero point (matmul_zero_points = "carry"): signed where its
        producer allows it (the kernels take zero points in [-128, 128])."""
        if self.opt.matmul_zero_points != "carry":
            return False
        self.prefer_signed(f)
        return f.eff_signed or f.eff_zp <= 128

    def absorb_zp(self, f: _Fam, why: str) -> None:
        if f.eff_zp == 0 and f.eff_signed:
            return
        if not f.controllable or f.locked:
            return
        lo, hi = (-128 - f.eff_zp, 127 - f.eff_zp) if f.eff_signed else (-f.eff_zp, 255 - f.eff_zp)
        lost = max(0, hi - 127) + max(0, -128 - lo)
        if lost > self.opt.absorb_clip_codes:
            # too much of the calibrated range would clip (a one-sided range, e.g. an outlier
            # token's query): keep it all on a coarser symmetric grid instead
            reach = max(abs(lo), abs(hi))
            f.eff_scale *= reach / 127
            self.notes.append(f"tensor '{f.members[0].name}' ({why}): zero point {f.eff_zp} "
                              f"absorbed by its producer at a {reach / 127:.3f}x coarser scale "
                              f"{f.eff_scale:.6g} (clipping {lost} of onnxruntime's 256 codes "
                              "instead would lose calibrated values)")
        elif lost:
            self.notes.append(f"tensor '{f.members[0].name}' ({why}): zero point {f.eff_zp} "
                              f"absorbed by its producer; {lost} of onnxruntime's 256 codes at the "
                              "range's end now clip")
        f.eff_zp, f.eff_signed = 0, True
        f.locked = f"zero-point free ({why})"

    # ------------------------------------------------------------------ pass 3: emit the IR
    def emit(self) -> Graph:
        self.tensors: dict[str, Tensor] = {}
        self.out_nodes: list[Node] = []
        for t in self.in_tensors:
            self.tensors[t.name] = self.ir_tensor(t)
        for rec in self.recs:
            getattr(self, f"emit_{rec.kind.lower()}")(rec)
            if rec.out is not None:
                self.tensors[rec.out.name] = self.ir_tensor(rec.out)
        outputs = []
        for o in self.graph_outputs:
            p = self.prod.get(o)
            if p is not None and p.op_type == "DequantizeLinear" and p.input[0] in self.qmap:
                t = self.qmap[p.input[0]]
            elif o in self.qmap:
                t = self.qmap[o]
            else:
                raise self.err(p, f"graph output '{o}' is not a dequantized (or quantized) "
                               "activation")
            outputs.append(t.name)
        inputs = [t.name for t in self.in_tensors]
        graph = Graph(name=self.model.graph.name or self.path.stem, tensors=self.tensors,
                      nodes=self.out_nodes, inputs=inputs, outputs=outputs, source=str(self.path),
                      flavour="qdq", notes=self.notes)
        return graph

    def rename_outputs(self) -> None:
        """Name the integer graph outputs after the ONNX outputs they dequantize to."""
        for o in self.graph_outputs:
            p = self.prod.get(o)
            if p is not None and p.op_type == "DequantizeLinear" and p.input[0] in self.qmap:
                t = self.qmap[p.input[0]]
                if t in self.in_tensors:
                    continue
                if o not in self.names:
                    self.names.discard(t.name)
                    self.names.add(o)
                    t.name = o

    def ir_tensor(self, t: _T) -> Tensor:
        f = t.fam
        dtype = "int16" if f.bits == 16 else "int8" if f.eff_signed else "uint8"
        return Tensor(t.name, (), dtype,
                      quant=QuantInfo(np.asarray(f.eff_scale, dtype=np.float64),
                                      np.asarray(f.eff_zp, dtype=np.int64)))

    def const(self, name: str, data: np.ndarray, dtype: str | None = None) -> str:
        name = self.uniq(name)
        data = np.asarray(data, dtype=np.int64)
        if dtype is None:
            dtype = dtype_for_range(int(data.min(initial=0)), int(data.max(initial=0)))
        self.tensors[name] = Tensor(name, tuple(data.shape), dtype, data)
        return name

    def node(self, name: str, op: str, inputs: list[str], outputs: list[str], **attrs) -> None:
        self.out_nodes.append(Node(name, op, inputs, outputs, attrs))

    def out_rq(self, rec: _Rec, ratio, extra_add=None) -> Requant:
        """The requantization that writes rec's output family (re-encoding signedness when the
        zero point does not fit the 32-bit add term at full precision)."""
        f = rec.out.fam
        rq = make_requant(ratio, f.eff_zp, f.eff_signed, n_levels=f.n_levels, extra_add=extra_add)
        if significant_bits(rq.mul) < 15 and not f.locked and f.controllable and f.bits == 8:
            alt_zp = f.eff_zp + 128 if f.eff_signed else f.eff_zp - 128
            alt = make_requant(ratio, alt_zp, not f.eff_signed, extra_add=extra_add)
            if significant_bits(alt.mul) > significant_bits(rq.mul):
                f.eff_zp, f.eff_signed = alt_zp, not f.eff_signed
                f.locked = "re-encoded for a 32-bit add term"
                self.notes.append(f"tensor '{rec.out.name}': stored as "
                                  f"{'int8' if f.eff_signed else 'uint8'} (zero point {alt_zp}) so "
                                  "that its requantization keeps 15+ bits with a 32-bit add")
                rq = alt
        if significant_bits(rq.mul) < 15:
            self.notes.append(f"node '{rec.name}': requantization multiplier has only "
                              f"{significant_bits(rq.mul)} significant bits (32-bit add limit)")
        return rq

    def emit_layout(self, rec: _Rec) -> None:
        self.node(rec.name, rec.p["op"], [rec.inputs[0].name], [rec.out.name], **rec.p["attrs"])

    def emit_rq(self, rec: _Rec) -> None:
        x = rec.inputs[0].fam
        ratio = x.eff_scale / rec.out.fam.eff_scale
        rq = self.out_rq(rec, ratio, extra_add=lambda mul, s: -x.eff_zp * mul)
        self.node(rec.name, "RequantShift", [rec.inputs[0].name], [rec.out.name], rq=rq)

    def emit_linear(self, rec: _Rec) -> None:
        x = rec.inputs[0].fam
        p = rec.p
        w = p["wq"] - (p["wz"].reshape(-1, 1) if np.ndim(p["wz"]) else p["wz"])  # W' = q - zp
        s_w = np.asarray(p["ws"], dtype=np.float64)
        s_acc = x.eff_scale * s_w
        bias = np.zeros(w.shape[0], dtype=np.int64)
        if p["bias"] is not None:
            bias = np.round(np.asarray(p["bias"], dtype=np.float64) / s_acc).astype(np.int64)
        bias = bias - x.eff_zp * w.sum(axis=1)
        if np.any(np.abs(bias) > 2**31 - 1):
            raise PlannerError(f"{self.path}: node '{rec.name}': the folded bias leaves int32")
        wdt = dtype_for_range(int(w.min()), int(w.max()))
        if wdt not in ("int8",):
            self.notes.append(f"Linear '{rec.name}': weights minus their zero point need {wdt} "
                              "(exact in the golden model; the int8 kernels need symmetric weights)")
        ratio = s_acc / rec.out.fam.eff_scale
        mul, shift = fixed_point(ratio)
        zo = rec.out.fam.eff_zp
        add = np.int64(zo) << shift
        if abs(int(add)) > 2**31 - 1:
            # the output zero point does not fit the 32-bit add term at full precision: move
            # zo*2^s = c*mul + r into the accumulator (bias += c) and keep r (|r| <= mul/2)
            c = np.round(zo * 2.0**shift / mul).astype(np.int64)
            bias = bias + c
            add = zo * (np.int64(1) << shift) - c * mul
        rq = Requant(mul=mul.reshape(()) if mul.size == 1 else mul,
                     add=np.asarray(add).reshape(()) if np.size(add) == 1 else np.asarray(add),
                     div=1 << shift, n_levels=256, signed=rec.out.fam.eff_signed)
        if np.any(np.abs(bias) > 2**31 - 1) or np.any(np.abs(rq.add) > 2**31 - 1):
            raise PlannerError(f"{self.path}: node '{rec.name}': bias or add term leaves int32")
        wn = self.const(f"{rec.name}.weight", w, wdt)
        bn = self.const(f"{rec.name}.bias", bias, "int32")
        self.node(rec.name, "Linear", [rec.inputs[0].name, wn, bn], [rec.out.name], rq=rq)

    def emit_matmul(self, rec: _Rec) -> None:
        a, b = rec.inputs[0].fam, rec.inputs[1].fam
        ratio = a.eff_scale * b.eff_scale * rec.p["scale"] / rec.out.fam.eff_scale
        if ratio < 0:
            raise PlannerError(f"{self.path}: node '{rec.name}': negative scale factor")
        rq = self.out_rq(rec, ratio)
        attrs: dict[str, Any] = {"rq": rq}
        if a.eff_zp:
            attrs["zp_a"] = int(a.eff_zp)
        if b.eff_zp:
            attrs["zp_b"] = int(b.eff_zp)
        self.node(rec.name, "MatMul", [t.name for t in rec.inputs], [rec.out.name], **attrs)

    def emit_add(self, rec: _Rec) -> None:
        a, b = rec.inputs[0].fam, rec.inputs[1].fam
        o = rec.out.fam
        # a*mul_a + b*mul_b at scale s_out/2^s (exact, unclipped int32), one rounding at the end
        try:
            rq_a, rq_b, rq = add_requants(a.eff_scale, a.eff_zp, a.n_levels, b.eff_scale,
                                          b.eff_zp, b.n_levels, o.eff_scale, o.eff_zp,
                                          o.eff_signed, o.n_levels)
        except FixedPointError as exc:
            raise PlannerError(f"{self.path}: node '{rec.name}': {exc}") from None
        self.node(rec.name, "Add", [t.name for t in rec.inputs], [rec.out.name],
                  rq_a=rq_a, rq_b=rq_b, rq=rq)

    def emit_addconst(self, rec: _Rec) -> None:
        x = rec.inputs[0].fam
        o = rec.out.fam
        c = np.asarray(rec.p["c"], dtype=np.float64)
        rq = self.out_rq(rec, x.eff_scale / o.eff_scale,
                         extra_add=lambda mul, s: np.round(c / o.eff_scale * 2.0**s).astype(np.int64)
                         - x.eff_zp * mul)
        self.node(rec.name, "RequantShift", [rec.inputs[0].name], [rec.out.name], rq=rq)

    def emit_softmax(self, rec: _Rec) -> None:
        src = rec.inputs[0].name
        if "pre_rq" in rec.p:
            e, zp, levels = rec.p["pre_rq"]
            x = rec.inputs[0].fam
            tmp = self.uniq(f"{rec.name}.in")
            rq = make_requant(x.eff_scale / e, zp, True, extra_add=lambda mul, s: -x.eff_zp * mul)
            self.node(f"{rec.name}.rq", "RequantShift", [src], [tmp], rq=rq)
            self.tensors[tmp] = Tensor(tmp, (), "int8", quant=QuantInfo(np.asarray(e), np.asarray(zp)))
            src = tmp
        else:
            levels = rec.p["levels"]
            e = rec.inputs[0].fam.eff_scale
            assert math.isclose(e * levels, LN2, rel_tol=1e-12)
        consts = isoftmax_consts(levels)
        if (rec.inputs[0].fam.bits == 16 and "pre_rq" not in rec.p) or self.opt.softmax_rounding == "round":
            consts["rounded"] = True  # kl_isoftmax_s16 / the MHSA wide-score mode always round
        self.node(rec.name, "Softmax", [src], [rec.out.name], **consts)

    def emit_layernorm(self, rec: _Rec) -> None:
        o = rec.out.fam
        x = rec.inputs[0].fam
        span = x.qrange[1] - x.qrange[0]
        src = rec.inputs[0].name
        g, b = rec.p["gamma"], rec.p["beta"]
        if self.opt.layernorm == "qdq":
            in_dtype = self.ir_tensor(rec.inputs[0]).dtype
            try:
                w, bias, d, k, eps = layernorm_qdq_consts(g, b, x.eff_scale, in_dtype,
                                                          o.eff_scale, o.eff_zp, rec.p["eps"])
            except FixedPointError as exc:
                raise PlannerError(f"{self.path}: node '{rec.name}': {exc}") from None
            n = max(w.size, bias.size)
            wn = self.const(f"{rec.name}.weight", np.broadcast_to(w, (n,)).copy(), "int32")
            bn = self.const(f"{rec.name}.bias", np.broadcast_to(bias, (n,)).copy(), "int32")
            self.node(rec.name, "LayerNorm", [src, wn, bn], [rec.out.name], d=d, n_levels=256,
                      mode="qdq", in_shift=k, eps=eps, epsilon=float(rec.p["eps"]))
            return
        if self.opt.layernorm != "ilayernorm":
            raise PlannerError(f"layernorm must be qdq or ilayernorm, got {self.opt.layernorm!r}")
        try:
            w, bias, d = ilayernorm_consts(g, b, o.eff_scale, o.eff_zp, in_span=span)
        except FixedPointError as exc:
            raise PlannerError(f"{self.path}: node '{rec.name}': {exc}") from None
        n = max(w.size, bias.size)
        w = np.broadcast_to(w, (n,)).copy()
        bias = np.broadcast_to(bias, (n,)).copy()
        wn = self.const(f"{rec.name}.weight", w, "int32")
        bn = self.const(f"{rec.name}.bias", bias, "int32")
        self.node(rec.name, "LayerNorm", [src, wn, bn], [rec.out.name], d=d,
                  n_levels=256)

    def emit_gelu(self, rec: _Rec) -> None:
        x = rec.inputs[0].fam
        src = rec.inputs[0].name
        if self.opt.gelu == "table":
            o = rec.out.fam
            lo, hi = x.qrange
            q = np.arange(lo, hi + 1, dtype=np.float64)
            real = (q - x.eff_zp) * x.eff_scale
            gelu = real * 0.5 * (1.0 + np.vectorize(math.erf)(real / math.sqrt(2.0)))
            olo, ohi = o.qrange
            table = np.clip(np.rint(gelu / o.eff_scale) + o.eff_zp, olo, ohi).astype(np.int64)
            tn = self.const(f"{rec.name}.table", table, "int8" if o.eff_signed else "uint8")
            self.node(rec.name, "Lut", [src, tn], [rec.out.name], in_lo=int(lo))
            return
        if self.opt.gelu != "igelu":
            raise PlannerError(f"gelu must be table or igelu, got {self.opt.gelu!r}")
        if rec.p.get("offset"):
            # explicit zero-point removal: q - zp, exact, into int16
            tmp = self.uniq(f"{rec.name}.centered")
            lo, hi = x.qrange
            rq = Requant(np.asarray(1), np.asarray(-x.eff_zp), 1, 65536, True)
            self.node(f"{rec.name}.center", "RequantShift", [src], [tmp], rq=rq)
            self.tensors[tmp] = Tensor(tmp, (), "int16", quant=QuantInfo(
                np.asarray(x.eff_scale), np.asarray(0)))
            self.notes.append(f"GELU '{rec.name}': input zero point {x.eff_zp} removed by an "
                              f"explicit RequantShift (int16 [{lo - x.eff_zp}, {hi - x.eff_zp}])")
            src = tmp
        b, one, s_gelu = igelu_consts(x.eff_scale)
        lo, hi = x.qrange
        if max(abs(lo - x.eff_zp), abs(hi - x.eff_zp)) * one > 2**31 - 1:
            raise PlannerError(f"{self.path}: node '{rec.name}': GELU input scale {x.eff_scale:g} is "
                               "too fine for a 32-bit iGELU (x*one overflows)")
        rq = self.out_rq(rec, s_gelu / rec.out.fam.eff_scale)
        self.node(rec.name, "GELU", [src], [rec.out.name], b=b, one=one, rq=rq)


# ------------------------------------------------------------------------------------------
# public API
# ------------------------------------------------------------------------------------------

def import_qdq(model: onnx.ModelProto, path: Path, inputs: list[GraphInput],
               options: QdqOptions | None = None) -> Graph:
    """A QDQ ONNX model → the integer IR (unfused: load_graph runs the fusions afterwards)."""
    imp = _Importer(model, Path(path), inputs, options or QdqOptions())
    imp.run()
    imp.decide()
    imp.rename_outputs()
    graph = imp.emit()
    for t in imp.in_tensors:
        gi = imp.gin.get(t.name)
        if gi is not None:
            graph.tensors[t.name].shape = tuple(gi.shape)
    return graph


def quantize_input(graph: Graph, name: str, x: np.ndarray) -> np.ndarray:
    """The integer input of `graph` for the float input x: onnxruntime's QuantizeLinear,
    saturate(round_half_even(x/scale) + zero_point), computed in float32 as onnxruntime does."""
    t = _quantized(graph, name)
    scale = np.float32(np.asarray(t.quant.scale).reshape(-1)[0])
    zp = int(np.asarray(t.quant.zero_point).reshape(-1)[0])
    q = np.rint(np.asarray(x, dtype=np.float32) / scale).astype(np.int64) + zp
    lo, hi = (-128, 127) if t.dtype == "int8" else (0, 255)
    return np.clip(q, lo, hi)


def dequantize_output(graph: Graph, name: str, q: np.ndarray) -> np.ndarray:
    """The real value of an integer tensor of `graph`: (q - zero_point)*scale (float32, as
    onnxruntime's DequantizeLinear)."""
    t = _quantized(graph, name)
    scale = np.float32(np.asarray(t.quant.scale).reshape(-1)[0])
    zp = int(np.asarray(t.quant.zero_point).reshape(-1)[0])
    return (np.asarray(q, dtype=np.int64) - zp).astype(np.float32) * scale


def _quantized(graph: Graph, name: str) -> Tensor:
    t = graph.tensors.get(name)
    if t is None or t.quant is None:
        known = [n for n in graph.inputs + graph.outputs]
        raise PlannerError(f"tensor '{name}' is not a quantized tensor of graph '{graph.name}' "
                           f"(inputs/outputs: {', '.join(known)})")
    return t


def load_qdq_graph(path: str | Path, options: QdqOptions | None = None, fuse: bool = True,
                   input_shapes: dict[str, tuple[int, ...]] | None = None) -> Graph:
    """load_graph for a QDQ file with explicit lowering options (same passes, same result with
    the default options)."""
    from planner.frontend import finish_import
    from planner.frontend.onnx_io import graph_inputs, load_model

    path = Path(path)
    model = load_model(path)
    graph = import_qdq(model, path, graph_inputs(model, path, input_shapes or {}), options)
    return finish_import(graph, path, fuse, (options or QdqOptions()).int16)
