"""Fused-Weight Self-Attention (FWSA): fold W_Q and W_K of every head into one E×E int8 matrix.

Real-arithmetic identity (docs/fwsa.md has the derivation and the exact integer kernel formula).
Each requantization is y ≈ (acc·mul + add)/div, i.e. a scale m = mul/div and an offset add/mul in
accumulator units. Per head h, with g_p = m_q[p]·m_k[p], b'_q = b_q + add_q/mul_q (− zp_a/m_q) and
b'_k likewise, the int8 Q·Kᵀ accumulator is, up to rounding and clipping,

    Q_h·K_hᵀ[i,j] ≈ (x_i·Wf_hᵀ + c_h)·x_j   +   x_i·u_h + κ_h
                     └ kept: I*·Xᵀ ┘           └ constant along a softmax row ┘
    Wf_h[e,e'] = Σ_p g_p·W_k[p,e]·W_q[p,e']    ([out][in]: row e of Wf is read by I*[.,e])
    c_h[e]     = Σ_p g_p·b'_q[p]·W_k[p,e]      (the key-side term: linear in x_j, it does NOT cancel)
    u_h[e']    = Σ_p g_p·b'_k[p]·W_q[p,e']     (row term: linear in x_i)
    κ_h        = Σ_p g_p·b'_q[p]·b'_k[p]       (constant)

Quantized model: Wf_h to int8 with one scale per output row (default) or per head, c_h to int32 on
the accumulator scale, I* = RQ_i(X·Wf_hᵀ + c_h) to int8 with one scale per head, scores =
RQ_s'(I*·Xᵀ [+ r]) with mul/div chosen so that the softmax input keeps the ORIGINAL scale m_s of
the unfused scores requantization (the softmax constants stay valid); κ_h goes into RQ_s'.add.
With a softmax the row term x_i·u_h cancels and is dropped by default; without a softmax it does not
cancel, so it is kept as r = RQ_r(X·w_rowᵀ) (int8 weights, int32 result) added to the accumulator.

The MHSA node keeps its parts (the unfused form still runs); its inputs become
[x, w_fused, b_fused, w_v, b_v, w_o, b_o] (+ [w_row] when the row term is kept).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from planner.analysis import block_fwsa_figures
from planner.errors import PlannerError
from planner.ir import Graph, Node, Requant, Tensor

SOFTMAX_KINDS = frozenset({"isoftmax", "itamax", "itapartialmax"})
INT8_MAX = 127
MUL_MIN = 1 << 15  # at least 15 significant bits in every mul (SPEC §A)
MUL_MAX = 1 << 24  # acc (int32) · mul stays far inside int64


@dataclass
class FwsaParams:
    """The fused form of one MHSA node (attrs["fwsa"]). Per-head arrays are indexed [h] first."""

    w_fused: np.ndarray          # int8 values [H][E][E], layout [out][in]
    bias: np.ndarray             # int32 [H][E], on the accumulator scale of row e of w_fused
    rq_i: Requant                # I* requant: mul/add [H,1,E] (per-row weights) or [H,1,1], int8
    rq_scores: Requant           # scores requant: mul/add [H,1,1]; output = original softmax input
    w_row: np.ndarray | None = None   # int8 [H][E]: row term (kept for no-softmax blocks)
    rq_row: Requant | None = None     # mul/add [H,1,1], int32 output (n_levels 2^32)
    granularity: str = "row"     # weight scale per output "row" or per "head"
    scale_method: str = "l2"     # how the I* scale was chosen: "l2", "l1" or "calib"
    w_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))   # [H][E] real scale s_w of rows
    istar_scale: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [H] real scale s_I of I*
    unfused_inputs: list[str] = field(default_factory=list)  # the MHSA node's inputs before FWSA
    unfused_consts: list[np.ndarray | None] = field(default_factory=list)  # w_q, b_q, w_k, b_k

    @property
    def n_params(self) -> int:
        """Parameters of the fused Q/K part (weights + biases), as fwsa_figures counts them."""
        n = self.w_fused.size + self.bias.size
        return n + (0 if self.w_row is None else self.w_row.size)


@dataclass(frozen=True)
class FwsaDecision:
    node: str
    applied: bool
    reason: str
    params_before: int
    params_after: int
    macs_before: int
    macs_after: int
    cost_before: float | None = None
    cost_after: float | None = None


@dataclass(frozen=True)
class Deviation:
    """Fused vs unfused integer model on the same inputs, in LSB of the integer tensors.

    softmax_*: the softmax output (probabilities 0..255); for a block without softmax, the
    requantized scores that feed ·V. scores_*: the softmax input relative to its row maximum
    (x - max_row(x), all that the softmax sees; raw scores without softmax). block_*: the MHSA
    node's output. output_*: graph outputs.
    Over several MHSA nodes and samples: max of maxima, mismatch fractions over all elements.
    """

    softmax_max_abs_lsb: int
    softmax_mismatch_fraction: float
    block_max_abs_lsb: int
    block_mismatch_fraction: float
    softmax_mean_abs_lsb: float = 0.0
    block_mean_abs_lsb: float = 0.0
    scores_max_abs_lsb: int = 0
    scores_mismatch_fraction: float = 0.0
    scores_mean_abs_lsb: float = 0.0
    output_max_abs_lsb: int = 0
    output_mismatch_fraction: float = 0.0
    samples: int = 0
    nodes: int = 0


# --------------------------------------------------------------------------- applicability


def _size_ok(v: np.ndarray, allowed: Sequence[int]) -> bool:
    return int(np.asarray(v).size) in allowed


def _last_axis_only(v: np.ndarray) -> bool:
    v = np.asarray(v)
    return v.size == 1 or all(d == 1 for d in v.shape[:-1])


def _head_vector(v: np.ndarray, h: int) -> np.ndarray | None:
    """Scalar or per-head ([1,H,1,1], [H,1,1], [H]) parameter → float vector of length H."""
    v = np.asarray(v)
    if v.size == 1:
        return np.full(h, float(v.reshape(-1)[0]))
    if v.size == h and (v.ndim == 1 or (v.ndim >= 3 and v.shape[-3] == h)):
        return v.reshape(-1).astype(np.float64)
    return None


def fwsa_applicable(node: Node) -> tuple[bool, str]:
    """Whether fuse_qk can rewrite this node, and why not (node attributes only)."""
    if node.op != "MHSA":
        return False, f"node {node.name} is {node.op}, not MHSA"
    a = node.attrs
    if "fwsa" in a:
        return False, f"node {node.name} is already in FWSA form"
    h, p = a["h"], a["p"]
    for key in ("q", "k"):
        lin = a[key]
        if lin.attrs.get("alpha", 1) != 1:
            return False, f"{key.upper()} projection {lin.name} has alpha != 1"
        rq = lin.attrs.get("rq")
        if rq is None:
            return False, (f"{key.upper()} projection {lin.name} has no requantization: its scale "
                           "is unknown, so the fold has no integer meaning")
        for what, v in (("mul", rq.mul), ("add", rq.add)):
            if not (_size_ok(v, (1, h * p)) and _last_axis_only(v)):
                return False, (f"{key.upper()} requant {what} of {lin.name} has shape "
                               f"{np.asarray(v).shape}: only per-tensor or per-column is foldable")
        if np.any(np.asarray(rq.mul) == 0):
            return False, f"{key.upper()} requant of {lin.name} has mul = 0"
    sc = a["scores"]
    rq_s = sc.attrs.get("rq")
    if rq_s is None:
        return False, f"scores MatMul {sc.name} has no requantization (softmax input scale unknown)"
    if _head_vector(rq_s.mul, h) is None or _head_vector(rq_s.add, h) is None:
        return False, (f"scores requant of {sc.name} has shape {np.asarray(rq_s.mul).shape}: only "
                       "per-tensor or per-head is supported")
    if not rq_s.signed:
        return False, f"scores requant of {sc.name} is unsigned"
    for zp in ("zp_a", "zp_b"):
        if np.asarray(sc.attrs.get(zp, 0)).size != 1:
            return False, f"scores MatMul {sc.name} has a non-scalar {zp}"
    sm = a["softmax"]
    if sm is not None and sm.attrs.get("kind") not in SOFTMAX_KINDS:
        return False, f"softmax {sm.name} of kind {sm.attrs.get('kind')!r} is not supported"
    if sm is None:
        return True, "applicable (no softmax: the row term X·u_h is kept as an int32 per-row add)"
    return True, "applicable"


# --------------------------------------------------------------------------- the real fold


@dataclass
class RealFold:
    """The fold in real arithmetic (accumulator units of the unfused scores MatMul)."""

    wf: np.ndarray      # [H][E][E] float, [out][in]
    c: np.ndarray       # [H][E] key-side bias
    u: np.ndarray       # [H][E] row term weights
    kappa: np.ndarray   # [H] constant
    kcol_l1: np.ndarray  # [H][E] Σ_p |m_k·W_k[p,e]|   (for the I* range estimate)
    kcol_l2: np.ndarray  # [H][E] ‖m_k·W_k[:,e]‖₂
    m_s: np.ndarray     # [H] scores mul/div
    a_s: np.ndarray     # [H] scores add/div


def _const(graph: Graph, name: str) -> np.ndarray | None:
    if not name:
        return None
    t = graph.tensors.get(name)
    if t is None or not t.is_const:
        raise PlannerError(f"FWSA: {name} is not a constant tensor")
    return np.asarray(t.data, dtype=np.int64)


def _linear_consts(graph: Graph, lin: Node, n_out: int) -> tuple[np.ndarray, np.ndarray]:
    w = _const(graph, lin.inputs[1])
    b = _const(graph, lin.inputs[2]) if len(lin.inputs) > 2 else None
    if w is None or w.ndim != 2 or w.shape[0] != n_out:
        raise PlannerError(f"FWSA: weight of {lin.name} is not [{n_out}][E]")
    if b is None:
        b = np.zeros(n_out, dtype=np.int64)
    elif b.size != n_out or not _last_axis_only(b):
        raise PlannerError(f"FWSA: bias of {lin.name} has shape {b.shape}: it varies along the "
                           "token axis, so the fold does not apply")
    return w, b.reshape(n_out)


def _cols(v: np.ndarray, n: int) -> np.ndarray:
    return np.broadcast_to(np.asarray(v, dtype=np.float64).reshape(-1), (n,)).copy() \
        if np.asarray(v).size == 1 else np.asarray(v, dtype=np.float64).reshape(n)


def real_fold(graph: Graph, node: Node) -> RealFold:
    """W_q, W_k, biases and the Q/K/scores requantizations of `node` folded in float64."""
    ok, why = fwsa_applicable(node) if "fwsa" not in node.attrs else (True, "")
    if not ok:
        raise PlannerError(f"FWSA: {why}")
    a = node.attrs
    h, p, e = a["h"], a["p"], a["e"]
    n = h * p
    if "fwsa" in a:
        wq, bq, wk, bk = a["fwsa"].unfused_consts
        bq = np.zeros(n, np.int64) if bq is None else bq.reshape(n)
        bk = np.zeros(n, np.int64) if bk is None else bk.reshape(n)
    else:
        wq, bq = _linear_consts(graph, a["q"], n)
        wk, bk = _linear_consts(graph, a["k"], n)
    if wq.shape != (n, e) or wk.shape != (n, e):
        raise PlannerError(f"FWSA: Q/K weights of {node.name} are not [{n}][{e}]")
    rq_q, rq_k = a["q"].attrs["rq"], a["k"].attrs["rq"]
    mq = _cols(rq_q.mul, n) / rq_q.div
    mk = _cols(rq_k.mul, n) / rq_k.div
    bq_ = bq + _cols(rq_q.add, n) / _cols(rq_q.mul, n)
    bk_ = bk + _cols(rq_k.add, n) / _cols(rq_k.mul, n)
    sc = a["scores"].attrs
    bq_ = bq_ - float(np.asarray(sc.get("zp_a", 0)).reshape(-1)[0]) / mq
    bk_ = bk_ - float(np.asarray(sc.get("zp_b", 0)).reshape(-1)[0]) / mk
    g = mq * mk
    wqf, wkf = wq.astype(np.float64), wk.astype(np.float64)
    wf = np.empty((h, e, e))
    c = np.empty((h, e))
    u = np.empty((h, e))
    kappa = np.empty(h)
    l1 = np.empty((h, e))
    l2 = np.empty((h, e))
    for hd in range(h):
        sl = slice(hd * p, (hd + 1) * p)
        wf[hd] = (wkf[sl].T * g[sl]) @ wqf[sl]
        c[hd] = (g[sl] * bq_[sl]) @ wkf[sl]
        u[hd] = (g[sl] * bk_[sl]) @ wqf[sl]
        kappa[hd] = float(np.sum(g[sl] * bq_[sl] * bk_[sl]))
        kw = wkf[sl] * mk[sl, None]
        l1[hd] = np.abs(kw).sum(axis=0)
        l2[hd] = np.sqrt((kw * kw).sum(axis=0))
    rq_s = sc["rq"]
    m_s = _head_vector(rq_s.mul, h) / rq_s.div
    a_s = _head_vector(rq_s.add, h) / rq_s.div
    return RealFold(wf, c, u, kappa, l1, l2, m_s, a_s)


# --------------------------------------------------------------------------- quantization


def mul_div(ratios: np.ndarray, max_shift: int = 62) -> tuple[np.ndarray, int]:
    """Integer mul (same shape) and one power-of-two div with mul/div ≈ ratios.

    div = 2^k with the smallest mul ≥ 2^15 (15 significant bits) where the largest stays < 2^24.
    """
    r = np.asarray(ratios, dtype=np.float64)
    pos = r[r > 0]
    if pos.size == 0:
        return np.zeros(r.shape, dtype=np.int64), 1
    k = max(0, math.ceil(math.log2(MUL_MIN / float(pos.min()))))
    k = min(k, max(0, math.floor(math.log2((MUL_MAX - 1) / float(pos.max())))))
    k = min(k, max_shift)
    return np.round(r * (1 << k)).astype(np.int64), 1 << k


def _istar_range(fold: RealFold, method: str, calib: np.ndarray | None) -> np.ndarray:
    """Real range R_h of I*_h = X·Wf_hᵀ + c_h per head; I* gets the scale R_h/127."""
    if method == "calib":
        xs = np.asarray(calib, dtype=np.float64)
        xs = xs.reshape(-1, xs.shape[-1])
        return np.array([np.abs(xs @ fold.wf[hd].T + fold.c[hd]).max()
                         for hd in range(fold.wf.shape[0])])
    # I*_h[i,e] = Σ_p Q̂[i,p]·m_k[p]·W_k[p,e] exactly (Q̂: the real Q before rounding), and the
    # unfused model's calibration keeps |Q| ≤ 127: the L1 norm bounds I*, the L2 norm is the
    # typical maximum (≈ 4σ with σ_Q ≈ 127/4 and independent components).
    norms = fold.kcol_l1 if method == "l1" else fold.kcol_l2
    return INT8_MAX * norms.max(axis=1)


def _quantize(fold: RealFold, granularity: str, method: str, calib: np.ndarray | None,
              row_term: bool, n_levels: int, name: str) -> tuple[FwsaParams, int]:
    h, e, _ = fold.wf.shape
    if granularity == "row":
        s_w = np.abs(fold.wf).max(axis=2) / INT8_MAX              # [H][E]
    elif granularity == "head":
        s_w = np.repeat((np.abs(fold.wf).max(axis=(1, 2)) / INT8_MAX)[:, None], e, axis=1)
    else:
        raise ValueError(f"granularity must be 'row' or 'head', got {granularity!r}")
    s_w = np.where(s_w > 0, s_w, 1.0)
    w = np.clip(np.round(fold.wf / s_w[:, :, None]), -INT8_MAX, INT8_MAX).astype(np.int64)
    bias = np.round(fold.c / s_w)
    if np.abs(bias).max(initial=0) >= 2**31:
        raise PlannerError(f"FWSA: fused bias of {name} leaves int32")
    bias = bias.astype(np.int64)
    rng = _istar_range(fold, method, calib)
    s_i = np.where(rng > 0, rng, 1.0) / INT8_MAX                  # [H]
    ratio_i = s_w / s_i[:, None]                                    # [H][E]
    if granularity == "head":
        ratio_i = ratio_i[:, :1]
    mul_i, div_i = mul_div(ratio_i)
    mul_i = mul_i[:, None, :]                                        # [H,1,E] or [H,1,1]
    rq_i = Requant(mul_i, np.zeros_like(mul_i), div_i, 256, True)
    # scores: (I*·x_j [+ r_i])·s_I + κ is the unfused accumulator (without row term if dropped)
    offset = fold.m_s * fold.kappa + fold.a_s          # score units: κ and the original offset
    max_shift = 62
    while True:  # the C kernel keeps add in int32: give up mul bits if the offset needs it
        mul_s, div_s = mul_div(fold.m_s * s_i, max_shift)
        add_s = np.round(div_s * offset).astype(np.int64)
        if np.abs(add_s).max() < 2**31 or div_s == 1:
            break
        max_shift = div_s.bit_length() - 2
    if np.abs(add_s).max() >= 2**31:
        raise PlannerError(f"FWSA: scores offset of {name} does not fit int32")
    rq_s = Requant(mul_s.reshape(h, 1, 1), add_s.reshape(h, 1, 1), div_s, n_levels, True)
    w_row = rq_row = None
    if row_term:
        s_u = np.abs(fold.u).max(axis=1) / INT8_MAX
        s_u = np.where(s_u > 0, s_u, 1.0)
        w_row = np.clip(np.round(fold.u / s_u[:, None]), -INT8_MAX, INT8_MAX).astype(np.int64)
        mul_r, div_r = mul_div(s_u / s_i)
        rq_row = Requant(mul_r.reshape(h, 1, 1), np.zeros((h, 1, 1), np.int64), div_r, 2**32, True)
    params = FwsaParams(w, bias, rq_i, rq_s, w_row, rq_row, granularity, method, s_w, s_i)
    return params, div_s


def fuse_qk(graph: Graph, node: Node, *, granularity: str = "row", scale: str = "l2",
            calib: np.ndarray | None = None, row_term: bool | None = None) -> None:
    """Rewrite the MHSA node into its FWSA form in place (attrs["fwsa"], new inputs).

    granularity: int8 scale of the fused weight per output "row" (default) or per "head".
    scale: how the I* requantization is chosen without data: "l2" (typical range, default) or
      "l1" (a bound that never clips while Q does not); calib (the node's input X, any leading
      dims, last two [S, E]) overrides it with the measured range ("calib").
    row_term: keep the per-row term X·u_h (default: only when the block has no softmax).
    """
    ok, why = fwsa_applicable(node)
    if not ok:
        raise PlannerError(f"FWSA: {why}")
    a = node.attrs
    if row_term is None:
        row_term = a["softmax"] is None
    if not row_term and a["softmax"] is None:
        raise PlannerError(f"FWSA: node {node.name} has no softmax, so the row term X·W_qᵀb_k "
                           "does not cancel and must be kept (row_term=True)")
    fold = real_fold(graph, node)
    method = "calib" if calib is not None else scale
    if method not in ("l1", "l2", "calib"):
        raise ValueError(f"scale must be 'l1' or 'l2', got {scale!r}")
    rq_old = a["scores"].attrs["rq"]
    params, _ = _quantize(fold, granularity, method, calib, row_term, rq_old.n_levels, node.name)
    ins = list(node.inputs)
    params.unfused_inputs = ins
    params.unfused_consts = [_const(graph, n) for n in ins[1:5]]
    h, e = a["h"], a["e"]
    names = {"w": f"{node.name}.fwsa.w", "b": f"{node.name}.fwsa.bias", "r": f"{node.name}.fwsa.w_row"}
    graph.tensors[names["w"]] = Tensor(names["w"], (h, e, e), "int8", params.w_fused)
    graph.tensors[names["b"]] = Tensor(names["b"], (h, e), "int32", params.bias)
    new_inputs = [ins[0], names["w"], names["b"]] + ins[5:9]
    if params.w_row is not None:
        graph.tensors[names["r"]] = Tensor(names["r"], (h, e), "int8", params.w_row)
        new_inputs.append(names["r"])
    node.inputs = new_inputs
    a["fwsa"] = params


def unfuse_qk(graph: Graph, node: Node) -> None:
    """Undo fuse_qk: the node reads W_q, W_k again; the fused tensors are dropped."""
    params = node.attrs.pop("fwsa", None)
    if params is None:
        return
    for name in node.inputs:
        if name.startswith(f"{node.name}.fwsa."):
            graph.tensors.pop(name, None)
    node.inputs = list(params.unfused_inputs)


# --------------------------------------------------------------------------- decisions


def _mhsa_inputs_from_calibration(graph: Graph, calib_inputs) -> dict[str, np.ndarray]:
    from planner.golden.run import run_graph
    samples = _as_samples(calib_inputs)
    xs: dict[str, list[np.ndarray]] = {}
    mh = [n for n in graph.nodes if n.op == "MHSA"]
    for sample in samples:
        env = run_graph(graph, sample, unfused=True, keep_all=True)
        for n in mh:
            xs.setdefault(n.name, []).append(env[n.inputs[0]])
    return {k: np.stack(v) for k, v in xs.items()}


def apply_fwsa(graph: Graph, mode: str = "auto",
               cost_fn: Callable[[Graph, Node], float] | None = None, *,
               calib_inputs=None, **fuse_kwargs) -> list[FwsaDecision]:
    """Decide FWSA per MHSA node and apply it in place; one decision per MHSA node.

    mode "off": no node is fused (an FWSA node goes back to the standard form); "on": every
    applicable node; "auto": only where it lowers parameters AND MACs (fwsa_figures), or, when
    cost_fn is given, where it lowers cost_fn(graph, node) (estimated cycles of the node, called
    on the node in its standard and in its fused form). calib_inputs (graph inputs, one sample or
    a list of samples) choose the I* scale from data; fuse_kwargs go to fuse_qk.
    """
    if mode not in ("auto", "on", "off"):
        raise ValueError(f"FWSA mode must be auto, on or off, got {mode!r}")
    calib = _mhsa_inputs_from_calibration(graph, calib_inputs) if (
        calib_inputs is not None and mode != "off") else {}
    decisions = []
    for node in [n for n in graph.nodes if n.op == "MHSA"]:
        unfuse_qk(graph, node)
        softmax = node.attrs["softmax"] is not None
        row_term = fuse_kwargs.get("row_term")
        f = block_fwsa_figures(node, (not softmax) if row_term is None else row_term)
        pb, pa, mb, ma = f.params_unfused, f.params_fused, f.macs_unfused, f.macs_fused
        a = node.attrs
        shape = f"S={a['s']} E={a['e']} P={a['p']} H={a['h']}"

        def decide(applied: bool, reason: str, cb=None, ca=None) -> None:
            decisions.append(FwsaDecision(node.name, applied, reason, pb, pa, mb, ma, cb, ca))

        if mode == "off":
            decide(False, "FWSA off")
            continue
        ok, why = fwsa_applicable(node)
        if not ok:
            decide(False, f"not applicable: {why}")
            continue
        pays = pa < pb and ma < mb
        figs = (f"{shape}: params {pb} → {pa} ({pa / pb:.2f}×), MACs {mb} → {ma} "
                f"({ma / mb:.2f}×)")
        if mode == "auto" and cost_fn is None and not pays:
            decide(False, f"harmful at {figs}")
            continue
        cb = cost_fn(graph, node) if cost_fn is not None and mode == "auto" else None
        try:
            fuse_qk(graph, node, calib=calib.get(node.name), **fuse_kwargs)
        except PlannerError as exc:
            decide(False, f"not applicable: {exc}")
            continue
        if cb is not None:
            ca = cost_fn(graph, node)
            if not ca < cb:
                unfuse_qk(graph, node)
                decide(False, f"estimated cycles {cb:.0f} → {ca:.0f}: no gain ({figs})", cb, ca)
                continue
            decide(True, f"estimated cycles {cb:.0f} → {ca:.0f} ({figs})", cb, ca)
            continue
        if mode == "on" and not pays:
            decide(True, f"forced (--fwsa on) although harmful at {figs}")
        else:
            decide(True, f"pays at {figs}")
    return decisions


# --------------------------------------------------------------------------- deviation


def _as_samples(inputs) -> list[list[np.ndarray]]:
    """One sample (list of arrays, positional graph inputs) or a list of such samples."""
    if isinstance(inputs, np.ndarray):
        return [[inputs]]
    inputs = list(inputs)
    if inputs and isinstance(inputs[0], (list, tuple)):
        return [list(s) for s in inputs]
    return [inputs]


def run_with_probes(graph: Graph, inputs: list[np.ndarray], use_fwsa: bool | None = None
                    ) -> tuple[dict[str, np.ndarray], dict[str, dict[str, np.ndarray]]]:
    """Run the graph; MHSA nodes go depth-first and record their scores/softmax per head.

    use_fwsa: None = FWSA where the node has it, False = always the standard form.
    Returns (every tensor, {mhsa node name: {"scores": [H,S,S], "probs": [H,S,S]}}).
    """
    from planner.golden import ops
    from planner.golden.mhsa import mhsa_depth_first
    from planner.golden.run import run_nodes

    env: dict[str, np.ndarray] = {n: t.data for n, t in graph.tensors.items() if t.is_const}
    for name, arr in zip(graph.inputs, inputs):
        env[name] = np.asarray(arr, dtype=np.int64)
    probes: dict[str, dict[str, np.ndarray]] = {}
    for node in graph.nodes:
        if node.op != "MHSA":
            run_nodes([node], env)
            continue
        probe: dict[str, np.ndarray] = {}
        try:
            out = mhsa_depth_first(node, [env[i] if i else None for i in node.inputs],
                                   use_fwsa=use_fwsa, probe=probe)
        except ops.RangeError as exc:
            raise PlannerError(f"golden model: {exc}") from None
        env[node.outputs[0]] = np.asarray(out, dtype=np.int64)
        probes[node.name] = probe
    return env, probes


class _Acc:
    def __init__(self) -> None:
        self.max = 0
        self.diff = 0
        self.total = 0
        self.abs_sum = 0.0

    def add(self, a: np.ndarray, b: np.ndarray) -> None:
        d = np.abs(np.asarray(a, np.int64) - np.asarray(b, np.int64))
        if d.size:
            self.max = max(self.max, int(d.max()))
        self.diff += int(np.count_nonzero(d))
        self.total += int(d.size)
        self.abs_sum += float(d.sum())

    @property
    def frac(self) -> float:
        return self.diff / self.total if self.total else 0.0

    @property
    def mean(self) -> float:
        return self.abs_sum / self.total if self.total else 0.0


def fwsa_deviation(graph_before: Graph, graph_after: Graph, inputs) -> Deviation:
    """Softmax and block output of the fused model (graph_after) vs the unfused one.

    graph_before runs in the standard form (use_fwsa=False, so it may even be graph_after itself);
    inputs: one sample (positional graph inputs) or a list of samples. MHSA nodes are matched by
    name; end to end, so a later block sees the deviation of an earlier one.
    """
    sm, blk, sc, out = _Acc(), _Acc(), _Acc(), _Acc()
    samples = _as_samples(inputs)
    nodes = 0
    for sample in samples:
        env0, pr0 = run_with_probes(graph_before, sample, use_fwsa=False)
        env1, pr1 = run_with_probes(graph_after, sample, use_fwsa=None)
        after = {n.name: n for n in graph_after.nodes if n.op == "MHSA"}
        nodes = 0
        for node in graph_before.nodes:
            if node.op != "MHSA" or node.name not in after:
                continue
            nodes += 1
            sm.add(pr0[node.name]["probs"], pr1[node.name]["probs"])
            s0, s1 = pr0[node.name]["scores"], pr1[node.name]["scores"]
            if node.attrs["softmax"] is not None:  # what the softmax sees: x - max_row(x)
                s0 = s0 - s0.max(axis=-1, keepdims=True)
                s1 = s1 - s1.max(axis=-1, keepdims=True)
            sc.add(s0, s1)
            blk.add(env0[node.outputs[0]], env1[after[node.name].outputs[0]])
        for o0, o1 in zip(graph_before.outputs, graph_after.outputs):
            out.add(env0[o0], env1[o1])
    return Deviation(sm.max, sm.frac, blk.max, blk.frac, sm.mean, blk.mean, sc.max, sc.frac,
                     sc.mean, out.max, out.frac, len(samples), nodes)


def fused_copy(graph: Graph, mode: str = "on", **kwargs) -> tuple[Graph, list[FwsaDecision]]:
    """A deep copy of graph with apply_fwsa(mode) applied (the original stays untouched)."""
    g = copy.deepcopy(graph)
    return g, apply_fwsa(g, mode, **kwargs)
