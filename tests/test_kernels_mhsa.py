"""Depth-first MHSA kernels (kl_mhsa_chunk, kl_mhsa_block, kl_softmax_rows) vs planner.golden,
bit-exact, on every target.

* Whole blocks: the MHSA node of the peer graph Kernels_Integer_Attention and of the examples
  eeg_block and ecg_block (planner.frontend.load_graph), standard form and FWSA form
  (planner.transforms.fwsa.fused_copy), with the node's real input (the graph run on its
  inputs.npz) and a random one, chunk sizes that do and do not divide S; the peer EEGFormer
  block (no softmax) in FWSA form with the row term; random synthetic blocks with odd S, P, H,
  per-column / per-head requantization, every softmax kind, biases present or absent.
  Reference: planner.golden.mhsa.mhsa_depth_first (standard / FWSA form).
* The chunk kernel on its own in every output mode (8-bit head-interleaved output, fused
  output projection STORE/ADD), both V layouts, FWSA with and without the row term, with and
  without a prepared softmax table. Reference: the golden ops composed exactly as in one
  (head, chunk) step of mhsa_depth_first.
* kl_softmax_rows vs planner.golden.ops (isoftmax, itamax, ita_partial_max).

Every case runs for n_cores = 1..8 (the shares of the cores one after the other, checked in C
to equal n_cores = 1, guard bytes intact). On the host the block cases also run on 2..8
POSIX threads with a barrier (shared K/V). Targets: host (-Werror), host-asan (ASan+UBSan),
qemu-m7, qemu-m4 (Arm DSP path), qemu-rv32 (portable path); a missing toolchain skips with
the reason.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import tempfile
from pathlib import Path

import numpy as np

from conftest import assert_harness_cases, encode_cases as encode
import pytest

try:
    import kernel_lib
except ImportError:  # an installed (non-editable) tinyplanner that predates kernel_lib/__init__.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import kernel_lib
from kernel_lib import descriptions as kd
from planner import toolchain as tc
from planner.golden import ops
from planner.golden.mhsa import mhsa_depth_first, mhsa_zero_points
from planner.ir import Node, Requant

HARNESS = Path(__file__).resolve().parent / "kernel_harness" / "mhsa_harness.c"
REPO = Path(__file__).resolve().parents[1]
PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-tests" / "deeploy"
EXAMPLES = REPO / "examples"

TARGETS = {
    "host": ("host", False),
    "host-asan": ("host", True),
    "qemu-m7": ("qemu-m7", False),
    "qemu-m4": ("qemu-m4", False),
    "qemu-rv32": ("qemu-rv32", False),
}
OP_CHUNK, OP_BLOCK, OP_SOFTMAX = 1, 2, 3
SM_KIND = {None: 0, "isoftmax": 1, "itamax": 2, "itapartialmax": 3}
SOFTMAX_COEFFS = [(1, 345, 62395, 255), (1, 173, 15599, 127), (1, 67, 2376, 50),
                  (1, 25, 338, 13), (1, 16, 128, 8)]


# ------------------------------------------------------------------------------------------
# requantization parameters in the C form (pointer + element strides)
# ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class CRQ:
    mul: np.ndarray
    add: np.ndarray | None
    mul_s: tuple[int, int, int]   # (batch/head, row, column)
    add_s: tuple[int, int, int]
    shift: int
    n_levels: int
    signed: int

    def params(self) -> list[int]:
        return [*self.mul_s, *self.add_s, int(self.add is not None), self.shift,
                self.n_levels if self.n_levels == 65536 else min(self.n_levels, 256), self.signed]

    def arrays(self) -> list[np.ndarray]:
        return [self.mul.reshape(-1).astype(np.int32),
                (self.add if self.add is not None else np.zeros(0)).reshape(-1).astype(np.int32)]


def _strides(v: np.ndarray, role: str, n: int, h: int, e: int) -> tuple[int, int, int]:
    """Element strides of one mul/add array of a golden Requant, by its role."""
    v = np.asarray(v)
    if v.size == 1:
        return (0, 0, 0)
    if role == "proj" and v.size == n and all(d == 1 for d in v.shape[:-1]):
        return (0, 0, 1)
    if role == "head" and v.size == h and v.ndim >= 3 and v.shape[-3] == h:
        return (1, 0, 0)
    if role == "fwsa" and v.ndim == 3 and v.shape[0] == h:
        return (1, 0, 0) if v.shape[2] == 1 else (e, 0, 1)
    raise NotImplementedError(f"requant parameter of shape {v.shape} for role {role}")


def crq(rq: Requant | None, role: str, n: int = 1, h: int = 1, e: int = 1) -> CRQ:
    if rq is None:
        raise NotImplementedError("a part without requantization")
    mul = np.asarray(rq.mul, dtype=np.int64)
    add = np.asarray(rq.add, dtype=np.int64)
    has_add = bool(np.any(add != 0))
    return CRQ(mul, add if has_add else None, _strides(mul, role, n, h, e),
               _strides(add, role, n, h, e) if has_add else (0, 0, 0),
               int(rq.div).bit_length() - 1, int(rq.n_levels), int(bool(rq.signed)))


def sm_params(sm: Node | None) -> list[int]:
    if sm is None:
        return [0, 0, 0, 0, 1, 1, 256]
    a = sm.attrs
    return [SM_KIND[a["kind"]], a.get("coeff_a", 0), a.get("coeff_b", 0), a.get("coeff_c", 0),
            a.get("log2", 1), a.get("group_width", 1), a["n_levels"]]


def _rounded(sm: Node | None) -> int:
    """The kl_softmax_t.rounded flag of a softmax node (the harness's last parameter)."""
    return int(bool(sm is not None and sm.attrs.get("rounded", False)))


def golden_softmax(scores: np.ndarray, sm: Node | None) -> np.ndarray:
    if sm is None:
        return scores
    a = sm.attrs
    if a["kind"] == "isoftmax":
        return ops.isoftmax(scores, a["coeff_a"], a["coeff_b"], a["coeff_c"], a["log2"],
                            a["n_levels"], a.get("rounded", False))
    if a["kind"] == "itamax":
        return ops.itamax(scores, a["n_levels"])
    return ops.ita_partial_max(scores, a["group_width"], a["n_levels"])


# ------------------------------------------------------------------------------------------
# cases
# ------------------------------------------------------------------------------------------

@dataclasses.dataclass
class Case:
    group: str
    desc: str
    op: int
    params: list[int]
    arrays: list[np.ndarray]
    expected: bytes


def _i8(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64).astype(np.int8)


def _i32(a) -> np.ndarray:
    return (np.zeros(0, np.int32) if a is None else np.asarray(a, dtype=np.int64).astype(np.int32))


def _empty() -> np.ndarray:
    return np.zeros(0, np.int8)


def to8(v: np.ndarray) -> np.ndarray:
    return (np.asarray(v, dtype=np.int64) & 0xFF).astype(np.uint8)


def strided_buf(mat: np.ndarray, rs: int, rng, dtype=np.int8) -> np.ndarray:
    """mat [rows][cols] inside a buffer with row stride rs (random filler), cut after the end."""
    rows, cols = mat.shape
    info = np.iinfo(dtype)
    buf = rng.integers(info.min, int(info.max) + 1, (rows, rs)).astype(np.int64)
    buf[:, :cols] = mat
    return buf.reshape(-1)[: (rows - 1) * rs + cols].astype(dtype)


def block_case(group: str, desc: str, node: Node, vals: list, chunk: int, *,
               use_fwsa: bool, isa: str, use_lut: bool = False, rng=None) -> Case:
    """One kl_mhsa_block case from an MHSA node (standard or FWSA form) and its input values."""
    rng = rng or np.random.default_rng(0)
    a = node.attrs
    s, e, p, h = a["s"], a["e"], a["p"], a["h"]
    x = np.asarray(vals[0], dtype=np.int64).reshape(s, e)
    fw = a.get("fwsa") if use_fwsa else None
    if fw is not None:
        wf, bf, wv, bv, wo, bo = vals[1:7]
        w_row = vals[7] if len(vals) > 7 else None
        wq = bq = wk = bk = None
    else:
        if a.get("fwsa") is not None:  # standard form of a fused node
            wq, bq, wk, bk = a["fwsa"].unfused_consts
            wv, bv, wo, bo = vals[3:7]
        else:
            wq, bq, wk, bk, wv, bv, wo, bo = vals[1:9]
        wf = bf = w_row = None
    e_out = wo.shape[0]
    expected = mhsa_depth_first(node, vals, rows=chunk, use_fwsa=fw is not None)
    expected = np.asarray(expected).reshape(s, e_out)
    hp = h * p
    rq_q = crq(a["q"].attrs.get("rq"), "proj", n=hp) if fw is None else None
    rq_k = crq(a["k"].attrs.get("rq"), "proj", n=hp) if fw is None else None
    rq_v = crq(a["v"].attrs.get("rq"), "proj", n=hp)
    rq_s = (crq(fw.rq_scores, "fwsa", h=h, e=e) if fw is not None
            else crq(a["scores"].attrs.get("rq"), "head", h=h))
    rq_av = crq(a["av"].attrs.get("rq"), "head", h=h)
    rq_o = crq(a["o"].attrs.get("rq"), "proj", n=e_out)
    rq_i = crq(fw.rq_i, "fwsa", h=h, e=e) if fw is not None else None
    rq_row = crq(fw.rq_row, "fwsa", h=h, e=e) if fw is not None and w_row is not None else None
    dummy = CRQ(np.ones(1, np.int64), None, (0, 0, 0), (0, 0, 0), 0, 256, 1)
    rqs = [rq_q or dummy, rq_k or dummy, rq_v, rq_s, rq_av, rq_o, rq_i or dummy,
           rq_row or dummy]
    x_rs, y_rs, acc_rs = e + (1 if s % 2 else 0), e_out + 3, e_out + 1
    dims = dict(S=s, E=e, H=h, P=p, E_out=e_out, fwsa=int(fw is not None),
                row_term=int(w_row is not None), softmax=SM_KIND[a["softmax"].attrs["kind"]
                                                                 if a["softmax"] else None],
                lut_given=int(use_lut), wide_scores=int(rq_s.n_levels == 65536))
    zq, zk, zv = mhsa_zero_points(node, fused=fw is not None)
    dims.update(zp_k=int(bool(zq or zk)), zp_v=int(bool(zv)))
    own = kd.get("mhsa_block").scratch_bytes({**dims, "shared_kv": 0}, 8, isa)
    shared = kd.get("mhsa_block").scratch_bytes({**dims, "shared_kv": 1}, 8, isa)
    params = [s, e, h, p, e_out, x_rs, y_rs, acc_rs, chunk, int(fw is not None),
              int(w_row is not None), int(use_lut), own, shared,
              int(bq is not None), int(bk is not None), int(bv is not None),
              int(bf is not None), int(bo is not None), *sm_params(a["softmax"])]
    for r in rqs:
        params += r.params()
    x_signed = int(x.min() < 0 or x.max() <= 127)
    params += [x_signed, zq, zk, zv, _rounded(a["softmax"])]
    arrays = [strided_buf(x, x_rs, rng, np.int8 if x_signed else np.uint8),
              _i8(wq) if wq is not None else _empty(), _i32(bq),
              _i8(wk) if wk is not None else _empty(), _i32(bk),
              _i8(wv), _i32(bv),
              _i8(wf).reshape(-1) if wf is not None else _empty(), _i32(bf).reshape(-1),
              _i8(w_row).reshape(-1) if w_row is not None else _empty(),
              _i8(wo), _i32(bo)]
    for r in rqs:
        arrays += r.arrays()
    init = rng.integers(-128, 128, (s - 1) * y_rs + e_out).astype(np.int8)
    exp = init.copy().view(np.uint8)
    for r in range(s):
        exp[r * y_rs: r * y_rs + e_out] = to8(expected[r])
    arrays.append(init)
    return Case(group, desc, OP_BLOCK, [int(v) for v in params], arrays, exp.tobytes())


# ---- synthetic MHSA nodes ----------------------------------------------------------------

def _calib(acc: np.ndarray, target: float, rng, shift: int = 16, per: str = "tensor",
           n_levels: int = 256, signed: bool = True, add: bool = True,
           shape: tuple | None = None) -> Requant:
    """A Requant that maps acc to a spread of about `target` LSB."""
    if per == "tensor":
        sd = float(np.std(acc)) + 1.0
        mul = np.array(max(1, int(round(target * 2**shift / sd))), np.int64)
        ad = np.array(int(rng.integers(-2**(shift + 3), 2**(shift + 3))) if add else 0, np.int64)
    else:  # per column (last axis)
        sd = np.std(acc.reshape(-1, acc.shape[-1]), axis=0) + 1.0
        mul = np.maximum(1, np.round(target * 2**shift / sd)).astype(np.int64)
        ad = (rng.integers(-2**(shift + 3), 2**(shift + 3), mul.shape) if add
              else np.zeros(mul.shape, np.int64))
    if shape is not None:
        mul, ad = mul.reshape(shape), ad.reshape(shape)
    return Requant(mul, ad, 2**shift, n_levels, signed)


def _sm_node(kind: str | None, coeffs=None, n_levels=256, gw=8, rounded=False) -> Node | None:
    if kind is None:
        return None
    attrs = {"kind": kind, "n_levels": n_levels}
    if kind == "isoftmax":
        attrs.update(dict(zip(("coeff_a", "coeff_b", "coeff_c", "log2"), coeffs)))
        attrs["rounded"] = rounded
    if kind == "itapartialmax":
        attrs["group_width"] = gw
    return Node("sm", "Softmax", [], [], attrs)


def synthetic_node(rng, s, e, p, h, *, e_out=None, sm=("isoftmax", SOFTMAX_COEFFS[1]),
                   per_col=False, per_head=False, biases=True, fwsa=False, row_term=False):
    """A random MHSA node (golden form) and its input values, RQ calibrated on the values."""
    e_out = e_out or e
    hp = h * p
    x = rng.integers(-128, 128, (s, e))
    w = {k: rng.integers(-128, 128, (hp, e)) for k in "qkv"}
    b = {k: (rng.integers(-2**12, 2**12, hp) if biases else None) for k in "qkv"}
    wo = rng.integers(-128, 128, (e_out, hp))
    bo = rng.integers(-2**14, 2**14, e_out) if biases else None
    per = "col" if per_col else "tensor"
    lin = {}
    outs = {}
    for k in "qkv":
        acc = x @ w[k].T + (b[k] if b[k] is not None else 0)
        rq = _calib(acc, 35, rng, shift=18, per=per, shape=(hp,) if per_col else None)
        lin[k] = Node(k, "Linear", [], [], {"rq": rq})
        outs[k] = ops.requant_shift(acc, rq.mul, rq.add, rq.div, rq.n_levels, rq.signed)
    q, k, v = outs["q"], outs["k"], outs["v"]
    smn = _sm_node(*sm) if sm[0] is not None else None
    heads = [q[:, i * p:(i + 1) * p] @ k[:, i * p:(i + 1) * p].T for i in range(h)]
    if per_head:
        sds = [float(np.std(a)) + 1.0 for a in heads]
        mul = np.array([max(1, round(25 * 2**20 / sd)) for sd in sds], np.int64).reshape(1, h, 1, 1)
        add = rng.integers(-2**22, 2**22, (1, h, 1, 1))
        rq_s = Requant(mul, add, 2**20, 256, True)
    else:
        rq_s = _calib(np.stack(heads), 25, rng, shift=20)
    scores_node = Node("scores", "MatMul", [], [], {"rq": rq_s})
    # ·V requant from typical probabilities
    probs = []
    for i in range(h):
        sc = ops.requant_shift(heads[i], Requant(*_hsel(rq_s, i, h)).mul,
                               Requant(*_hsel(rq_s, i, h)).add, rq_s.div, 256, True)
        probs.append(golden_softmax(sc, smn))
    pv = np.stack([probs[i] @ v[:, i * p:(i + 1) * p] for i in range(h)])
    rq_av = _calib(pv, 35, rng, shift=16, add=not per_head)
    if per_head:
        rq_av = Requant(np.full((1, h, 1, 1), int(rq_av.mul)), np.zeros((1, h, 1, 1), np.int64),
                        rq_av.div, 256, True)
    av_node = Node("av", "MatMul", [], [], {"rq": rq_av})
    o_est = np.concatenate([ops.requant_shift(pv[i], rq_av.mul.reshape(-1)[i % rq_av.mul.size],
                                              0, rq_av.div, 256, True) for i in range(h)], axis=1)
    acc_o = o_est @ wo.T + (bo if bo is not None else 0)
    rq_o = _calib(acc_o, 40, rng, shift=20, per=per, shape=(e_out,) if per_col else None)
    o_node = Node("o", "Linear", [], [], {"rq": rq_o})
    node = Node("syn", "MHSA", [], [], {"s": s, "e": e, "p": p, "h": h, "q": lin["q"],
                                        "k": lin["k"], "v": lin["v"], "scores": scores_node,
                                        "softmax": smn, "av": av_node, "o": o_node})
    vals = [x, w["q"], b["q"], w["k"], b["k"], w["v"], b["v"], wo, bo]
    if fwsa:
        vals = _synthetic_fwsa(rng, node, vals, row_term)
    return node, vals


def _hsel(rq: Requant, i: int, h: int):
    m = np.asarray(rq.mul)
    a = np.asarray(rq.add)
    pick = (lambda t: t.reshape(-1)[i] if t.size == h else t)
    return pick(m), pick(a), rq.div, rq.n_levels, rq.signed


def _synthetic_fwsa(rng, node: Node, vals: list, row_term: bool) -> list:
    """Random FWSA parameters (not a fold: the kernel contract is the integer formula)."""
    from planner.transforms.fwsa import FwsaParams
    a = node.attrs
    s, e, h = a["s"], a["e"], a["h"]
    x = vals[0]
    wf = rng.integers(-127, 128, (h, e, e))
    bf = rng.integers(-2**13, 2**13, (h, e))
    acc_i = np.stack([x @ wf[i].T + bf[i] for i in range(h)])          # [H][S][E]
    sd = acc_i.std(axis=1) + 1.0                                          # [H][E]
    mul_i = np.maximum(1, np.round(40 * 2**24 / sd)).astype(np.int64).reshape(h, 1, e)
    rq_i = Requant(mul_i, np.zeros((h, 1, e), np.int64), 2**24, 256, True)
    istar = ops.requant_shift(acc_i, mul_i, 0, 2**24, 256, True)
    acc_s = np.stack([istar[i] @ x.T for i in range(h)])
    w_row = rq_row = None
    if row_term:
        w_row = rng.integers(-128, 128, (h, e))
        rq_row = Requant(rng.integers(2**14, 2**16, (h, 1, 1)), np.zeros((h, 1, 1), np.int64),
                         2**16, 2**32, True)
    sd_s = acc_s.reshape(h, -1).std(axis=1) + 1.0
    mul_s = np.maximum(1, np.round(25 * 2**22 / sd_s)).astype(np.int64).reshape(h, 1, 1)
    add_s = rng.integers(-2**24, 2**24, (h, 1, 1))
    rq_s = Requant(mul_s, add_s, 2**22, 256, True)
    fw = FwsaParams(w_fused=wf, bias=bf, rq_i=rq_i, rq_scores=rq_s, w_row=w_row, rq_row=rq_row)
    fw.unfused_consts = [vals[1], vals[2], vals[3], vals[4]]
    a["fwsa"] = fw
    out = [x, wf, bf, vals[5], vals[6], vals[7], vals[8]]
    if row_term:
        out.append(w_row)
    return out


# ---- chunk cases -------------------------------------------------------------------------

def chunk_case(g: "Gen", rows, S, D, P, *, sm=("isoftmax", SOFTMAX_COEFFS[0]), v_trans=1,
               out_mode="acc_add", E_out=11, fwsa=False, row_term=False, use_lut=False,
               with_bo=True, pads=(1, 2, 3, 5), per_col_v=False, zp=(0, 0, 0)) -> None:
    """zp: (zq, zk, zv), the zero points Q, K, V keep (QDQ): k_corr formed here as the C caller
    does (kl_zp_sums), the rows' corrections inside the kernel."""
    rng = g.rng
    zq, zk, zv = zp
    smn = _sm_node(*sm) if sm[0] is not None else None
    q_rs, k_rs, v_rs, o_rs = D + pads[0], D + pads[1], (S if v_trans else P) + pads[2], P + pads[3]
    X = rng.integers(-128, 128, (rows, D))
    K = rng.integers(-128, 128, (S, D))
    V = rng.integers(-128, 128, (S, P))
    z = np.zeros(0)
    wf = bf = w_row = None
    rq_i = rq_row = None
    rterm = 0
    if fwsa:
        wf = rng.integers(-127, 128, (D, D))
        bf = rng.integers(-2**13, 2**13, D)
        acc_i = X @ wf.T + bf
        rq_i = _calib(acc_i, 40, rng, shift=22, per="col", add=False)
        qv = ops.requant_shift(acc_i, rq_i.mul, rq_i.add, rq_i.div, 256, True)
        if row_term:
            w_row = rng.integers(-128, 128, D)
            rq_row = Requant(np.array(int(rng.integers(2**14, 2**16))), np.array(0), 2**16,
                             2**32, True)
            rterm = ops.requant_shift(X @ w_row, rq_row.mul, rq_row.add, rq_row.div, 2**32,
                                      True)[:, None]
    else:
        qv = X
    acc_s = (qv - zq) @ (K - zk).T + rterm
    rq_s = _calib(acc_s, 25, rng, shift=20)
    scores = ops.requant_shift(acc_s, rq_s.mul, rq_s.add, rq_s.div, 256, True)
    probs = golden_softmax(scores, smn)
    pv = probs @ (V - zv)
    if per_col_v:
        rq_v = _calib(pv, 35, rng, shift=16, per="col")
    else:
        rq_v = _calib(pv, 35, rng, shift=16)
    O = ops.requant_shift(pv, rq_v.mul, rq_v.add, rq_v.div, 256, True)
    if out_mode == "o8":
        init = rng.integers(-128, 128, (rows - 1) * o_rs + P).astype(np.int8)
        exp = init.copy().view(np.uint8)
        for r in range(rows):
            exp[r * o_rs: r * o_rs + P] = to8(O[r])
        wo = bo = None
        e_out, acc_rs, wo_rs, acc_mode = 0, 0, 0, 0
    else:
        e_out = E_out
        acc_rs, wo_rs = e_out + 2, P + 3
        wo = rng.integers(-128, 128, (e_out, P))
        bo = rng.integers(-2**20, 2**20, e_out) if with_bo else None
        add = out_mode == "acc_add"
        init = rng.integers(-2**24, 2**24, (rows - 1) * acc_rs + e_out).astype(np.int32)
        prev = np.zeros((rows, e_out), np.int64)
        if add:
            for r in range(rows):
                prev[r] = init[r * acc_rs: r * acc_rs + e_out]
        res = prev + O @ wo.T + (bo if bo is not None else 0)
        exp = init.copy()
        for r in range(rows):
            exp[r * acc_rs: r * acc_rs + e_out] = res[r].astype(np.int32)
        acc_mode = 1 if add else 0
    c_rq_s = crq(rq_s, "proj")
    c_rq_v = crq(rq_v, "proj", n=P)
    c_rq_i = crq(rq_i, "proj", n=D) if fwsa else CRQ(np.ones(1), None, (0, 0, 0), (0, 0, 0), 0, 256, 1)
    c_rq_row = crq(rq_row, "proj") if row_term else CRQ(np.ones(1), None, (0, 0, 0), (0, 0, 0), 0, 256, 1)
    dims = dict(S=S, D=D, P=P, fwsa=int(fwsa), row_term=int(row_term),
                softmax=SM_KIND[sm[0]], lut_given=int(use_lut), fused_out=int(out_mode != "o8"),
                zp_k=int(bool(zq or zk)), zp_v=int(bool(zv)))
    per_core = kd.get("mhsa_chunk").scratch_bytes(dims, 1, g.isa)
    params = [S, D, P, rows, q_rs, k_rs, v_rs, v_trans, o_rs, acc_rs, e_out, wo_rs, acc_mode,
              int(bo is not None), int(fwsa), int(row_term), 1, 1, 1, int(bf is not None),
              int(use_lut), per_core, *sm_params(smn)]
    for r in (c_rq_s, c_rq_v, c_rq_i, c_rq_row):
        params += r.params()
    params += [zk, zv, int(bool(zq or zk)), _rounded(smn)]
    vmat = V.T if v_trans else V
    arrays = [strided_buf(X, q_rs, rng), strided_buf(K, k_rs, rng), strided_buf(vmat, v_rs, rng),
              _i8(wf).reshape(-1) if wf is not None else _empty(), _i32(bf),
              _i8(w_row) if w_row is not None else _empty(),
              strided_buf(wo, wo_rs, rng) if wo is not None else _empty(), _i32(bo)]
    for r in (c_rq_s, c_rq_v, c_rq_i, c_rq_row):
        arrays += r.arrays()
    arrays.append(_i32(-zq * K.sum(axis=1) + D * zq * zk) if (zq or zk) else _empty())
    arrays.append(init)
    g.cases.append(Case("chunk", f"rows{rows} S{S} D{D} P{P} sm={sm[0]} vt{v_trans} {out_mode} "
                        f"fwsa{int(fwsa)} row{int(row_term)} lut{int(use_lut)} zp{zq},{zk},{zv}", OP_CHUNK,
                        [int(v) for v in params], arrays, exp.tobytes()))
    del z


def softmax_case(g: "Gen", rows, L, sm, *, kind="random", use_lut=False, pad=2) -> None:
    rng = g.rng
    smn = _sm_node(*sm)
    if kind == "narrow":
        x = rng.integers(-20, 21, (rows, L)) + rng.integers(-100, 100, (rows, 1))
    elif kind == "const":
        x = np.full((rows, L), int(rng.integers(-128, 128)))
    elif kind == "extreme":
        x = rng.choice(np.array([-128, 127, -128, 0]), (rows, L))
    else:
        x = rng.integers(-128, 128, (rows, L))
    x = np.clip(x, -128, 127)
    y = golden_softmax(x, smn)
    x_rs, y_rs = L + pad, L + pad + 1
    init = rng.integers(0, 256, (rows - 1) * y_rs + L).astype(np.uint8)
    exp = init.copy()
    for r in range(rows):
        exp[r * y_rs: r * y_rs + L] = to8(y[r])
    per_core = kd.get("softmax_rows").scratch_bytes(
        {"rows": rows, "L": L, "softmax": SM_KIND[sm[0]], "lut_given": int(use_lut)}, 1, g.isa)
    params = [rows, L, x_rs, y_rs, *sm_params(smn), int(use_lut), per_core, _rounded(smn)]
    g.cases.append(Case("softmax", f"{sm} rows{rows} L{L} {kind} lut{int(use_lut)}", OP_SOFTMAX,
                        params, [strided_buf(x, x_rs, rng), init], exp.tobytes()))


# ---- graphs ------------------------------------------------------------------------------

_GRAPHS: dict = {}


def _graph_node(path: Path, fwsa: bool):
    """(node, values with the real activation, graph) of the MHSA node of an integer graph."""
    key = (str(path), fwsa)
    if key in _GRAPHS:
        return _GRAPHS[key]
    from planner.frontend import load_graph
    from planner.golden.run import run_graph
    g = load_graph(path)
    if fwsa:
        from planner.transforms.fwsa import fused_copy
        g, _ = fused_copy(g, "on")
    node = next(n for n in g.nodes if n.op == "MHSA")
    if path.name.startswith("qdq"):  # the float input, quantized as onnxruntime does
        from planner.frontend.qdq import quantize_input
        x = np.load(path.parent / "inputs_float.npz")["input"]
        ins = [quantize_input(g, g.inputs[0], x)]
    else:
        npz = np.load(path.parent / ("inputs.npz"))
        ins = [np.asarray(npz[k]) for k in npz.files][: len(g.inputs)]
    env = run_graph(g, ins, keep_all=True)
    vals = [env[i] if not g.tensors[i].is_const else g.tensors[i].data for i in node.inputs]
    _GRAPHS[key] = (node, vals)
    return _GRAPHS[key]


def graph_sources() -> list[tuple[str, Path, list[int]]]:
    out = []
    att = PEER / "Kernels_Integer_Attention" / "network.onnx"
    if att.is_file():
        out.append(("peer-attention", att, [5, 16]))
    for name, chunks in (("eeg_block", [10, 81]), ("ecg_block", [7, 66])):
        p = EXAMPLES / name / "int.onnx"
        if p.is_file():
            out.append((name, p, chunks))
    # QDQ lowerings with int16 softmax scores (the wide-score mode: scores RQ n_levels 65536)
    for name, chunks in (("ecg_block", [9, 66]), ("outlier_2block", [5, 32])):
        p = EXAMPLES / name / "qdq.onnx"
        if p.is_file():
            out.append((f"{name}-qdq", p, chunks))
    return out


class Gen:
    def __init__(self, isa: str, seed: int = 4321):
        self.isa = isa
        self.rng = np.random.default_rng(seed)
        self.cases: list[Case] = []


_CASES: dict[str, list[Case]] = {}


def build_cases(isa: str) -> list[Case]:
    if isa not in _CASES:
        _CASES[isa] = _build_cases(isa)
    return _CASES[isa]


def _build_cases(isa: str) -> list[Case]:
    g = Gen(isa)
    rng = g.rng
    # ---- whole blocks from the graphs: standard and FWSA form, real and random input ----
    for name, path, chunks in graph_sources():
        for fwsa in (False, True):
            node, vals = _graph_node(path, fwsa)
            s, e = node.attrs["s"], node.attrs["e"]
            for j, chunk in enumerate(chunks):
                v = list(vals)
                if j == 1:
                    v[0] = rng.integers(-128, 128, np.asarray(vals[0]).shape)
                g.cases.append(block_case("block-graph", f"{name} fwsa{int(fwsa)} chunk{chunk}"
                                          f" {'random' if j else 'real'} input", node, v, chunk,
                                          use_fwsa=fwsa, isa=isa, use_lut=j == 1, rng=rng))
    eegformer = PEER / "Models_EEGFormer" / "network.onnx"
    if eegformer.is_file():  # no softmax: FWSA keeps the row term
        node, vals = _graph_node(eegformer, True)
        g.cases.append(block_case("block-graph", "EEGFormer fwsa1 row term chunk 9", node,
                                  list(vals), 9, use_fwsa=True, isa=isa, rng=rng))
        v = list(vals)
        v[0] = rng.integers(0, 256, np.asarray(vals[0]).shape)  # the block input is uint8
        g.cases.append(block_case("block-graph", "EEGFormer fwsa1 random uint8 chunk 66", node,
                                  v, 66, use_fwsa=True, isa=isa, rng=rng))
        node, vals = _graph_node(eegformer, False)
        g.cases.append(block_case("block-graph", "EEGFormer standard chunk 13", node,
                                  list(vals), 13, use_fwsa=False, isa=isa, rng=rng))
    # ---- synthetic blocks: odd shapes, every softmax, RQ layouts --------------------------
    syn = [
        # s, e, p, h, chunk, kwargs
        (13, 12, 5, 3, 4, dict(sm=("isoftmax", SOFTMAX_COEFFS[2]), per_col=True)),
        (17, 9, 7, 2, 17, dict(sm=("itamax", None), per_head=True, biases=False)),
        (11, 16, 3, 5, 3, dict(sm=("itapartialmax", None, 256, 4))),
        (9, 8, 4, 3, 2, dict(sm=(None,), per_head=True, e_out=5)),
        (23, 10, 6, 2, 7, dict(sm=("isoftmax", SOFTMAX_COEFFS[4]), fwsa=True)),
        (19, 7, 5, 3, 5, dict(sm=(None,), fwsa=True, row_term=True, per_col=True)),
        (7, 13, 9, 1, 6, dict(sm=("isoftmax", SOFTMAX_COEFFS[0]), fwsa=True, biases=False)),
        (1, 4, 2, 2, 1, dict(sm=("isoftmax", SOFTMAX_COEFFS[3]))),
        (15, 12, 4, 3, 5, dict(sm=("isoftmax", SOFTMAX_COEFFS[3], 256, 8, True))),
        (11, 10, 5, 2, 4, dict(sm=("isoftmax", SOFTMAX_COEFFS[4], 256, 8, True), fwsa=True)),
    ]
    for s, e, p, h, chunk, kw in syn:
        node, vals = synthetic_node(rng, s, e, p, h, **kw)
        fw = kw.get("fwsa", False)
        g.cases.append(block_case("block-synthetic", f"S{s} E{e} P{p} H{h} chunk{chunk} {kw}",
                                  node, vals, chunk, use_fwsa=fw, isa=isa,
                                  use_lut=s % 2 == 0, rng=rng))
    # ---- chunk kernel: output modes, V layouts, FWSA, tables -------------------------------
    chunk_case(g, 9, 29, 7, 5, out_mode="o8")
    chunk_case(g, 13, 40, 16, 8, out_mode="acc_store", v_trans=0, use_lut=True)
    chunk_case(g, 7, 21, 12, 3, out_mode="acc_add", fwsa=True, per_col_v=True)
    chunk_case(g, 6, 15, 6, 6, out_mode="acc_add", fwsa=True, row_term=True, sm=(None,))
    chunk_case(g, 5, 33, 4, 9, out_mode="o8", v_trans=0, sm=("itamax", None))
    chunk_case(g, 3, 16, 8, 8, out_mode="acc_store", sm=("itapartialmax", None, 256, 4),
               with_bo=False)
    chunk_case(g, 8, 81, 32, 32, out_mode="acc_add", sm=("isoftmax", SOFTMAX_COEFFS[3]))
    chunk_case(g, 1, 1, 1, 1, out_mode="o8", sm=("isoftmax", SOFTMAX_COEFFS[1]))
    # short dot products (the portable small-D scores loop) with the FWSA row term
    chunk_case(g, 7, 19, 3, 4, out_mode="acc_add", fwsa=True, row_term=True, sm=(None,))
    chunk_case(g, 11, 23, 2, 2, out_mode="acc_store", sm=("isoftmax", SOFTMAX_COEFFS[4]))
    # zero points kept by Q, K, V (QDQ), every output mode and V layout; short dot products
    chunk_case(g, 9, 29, 7, 5, out_mode="o8", zp=(-6, 1, 3))
    chunk_case(g, 13, 40, 16, 8, out_mode="acc_store", v_trans=0, use_lut=True, zp=(-39, -9, 2))
    chunk_case(g, 8, 81, 32, 32, out_mode="acc_add", zp=(127, -128, -128))
    chunk_case(g, 11, 23, 2, 2, out_mode="acc_store", sm=("isoftmax", SOFTMAX_COEFFS[4]),
               zp=(5, -5, 0))
    chunk_case(g, 7, 21, 12, 3, out_mode="acc_add", fwsa=True, per_col_v=True, zp=(0, 0, -4))
    chunk_case(g, 5, 33, 4, 9, out_mode="o8", v_trans=0, sm=("itamax", None), zp=(0, 7, 0))
    # the rounded iSoftmax normalisation (QDQ int8 scores), with and without a prepared table
    chunk_case(g, 9, 29, 7, 5, out_mode="acc_add", sm=("isoftmax", SOFTMAX_COEFFS[3], 256, 8, True))
    chunk_case(g, 13, 40, 16, 8, out_mode="o8", use_lut=True, zp=(3, -2, 1),
               sm=("isoftmax", SOFTMAX_COEFFS[4], 256, 8, True))
    # ---- the table-driven row softmax ------------------------------------------------------
    for j, coeffs in enumerate(SOFTMAX_COEFFS):
        for rows, L, kind in ((3, 81, "narrow"), (2, 7, "const"), (2, 33, "extreme"),
                              (1, 1, "random"), (4, 66, "random")):
            softmax_case(g, rows, L, ("isoftmax", coeffs), kind=kind, use_lut=(j + rows) % 2 == 0)
    for n in (256, 128):
        for rows, L, kind in ((3, 81, "narrow"), (2, 7, "const"), (2, 33, "extreme"),
                              (5, 20, "random")):
            softmax_case(g, rows, L, ("itamax", None, n), kind=kind, use_lut=rows % 2 == 1)
    for rows, L, kind in ((3, 81, "narrow"), (2, 7, "const"), (2, 33, "extreme"), (1, 1, "random")):
        softmax_case(g, rows, L, ("isoftmax", SOFTMAX_COEFFS[rows], 256, 8, True), kind=kind,
                     use_lut=rows % 2 == 0)
    softmax_case(g, 3, 40, ("itapartialmax", None, 256, 8), kind="random")
    softmax_case(g, 2, 9, (None,), kind="random")
    return g.cases


# ------------------------------------------------------------------------------------------
# blob, build, run
# ------------------------------------------------------------------------------------------

def write_header(blob: np.ndarray, path: Path) -> None:
    vals = blob.astype(np.int64)
    body = ",".join(str(v) if v != -2**31 else "(-2147483647-1)" for v in vals.tolist())
    path.write_text("/* generated by tests/test_kernels_mhsa.py */\n#include <stdint.h>\n"
                    f"static const int32_t tv_blob[{len(vals)}] = {{\n{body}\n}};\n")


def build_harness(target: str, sanitize: bool, cases: list[Case], out_dir: Path,
                  name: str = "mhsa_harness", threads: bool | None = None) -> Path:
    write_header(encode(cases), out_dir / "tv_data.h")
    defines: dict = {}
    extra: list[str] = []
    if target == "host":
        defines["KL_HARNESS_HOST"] = None
        if threads is None or threads:
            defines["KL_HARNESS_THREADS"] = None
            extra.append("-pthread")
    else:
        biggest = max(sum(a.nbytes + 40 for a in c.arrays) + 2 * c.arrays[-1].nbytes
                      + (c.params[12] if c.op == OP_BLOCK else 8 * max(c.params[-1], 0))
                      + 4 * c.params[0] * (c.params[7] if c.op == OP_BLOCK else 0) + 4096
                      for c in cases)
        defines["KL_ARENA_BYTES"] = str(max(1 << 16, min(biggest, 3 << 20)))
    return tc.build([HARNESS, *kernel_lib.sources()], [kernel_lib.INCLUDE_DIR, out_dir], target,
                    out_dir, defines, name=name, sanitize=sanitize, extra_cflags=extra)


def parse_output(text: str):
    outs, errors, done = {}, [], None
    for line in text.splitlines():
        if line.startswith("C "):
            _, idx, *hexs = line.split(" ")
            outs[int(idx)] = bytes.fromhex(hexs[0] if hexs else "")
        elif line.startswith("E "):
            errors.append(line)
        elif line.startswith("DONE"):
            done = line
    return outs, errors, done


_RESULTS: dict = {}


def suite(target_id: str):
    if target_id in _RESULTS:
        return _RESULTS[target_id]
    target, sanitize = TARGETS[target_id]
    if not tc.available(target):
        res = ("skip", f"{target}: missing {', '.join(tc.missing_tools(target))}")
        _RESULTS[target_id] = res
        return res
    cases = build_cases(tc.target_isa(target))
    with tempfile.TemporaryDirectory(prefix=f"klmhsa-{target_id}-") as d:
        exe = build_harness(target, sanitize, cases, Path(d))
        run = tc.run(exe, target, timeout=300)
    outs, errors, done = parse_output(run.stdout)
    res = ("ok", cases, outs, errors, done, run)
    _RESULTS[target_id] = res
    return res


GROUPS = ["block-graph", "block-synthetic", "chunk", "softmax"]


@pytest.mark.parametrize("group", GROUPS)
@pytest.mark.parametrize("target_id", list(TARGETS))
def test_mhsa_bit_exact(target_id: str, group: str):
    res = suite(target_id)
    if res[0] == "skip":
        pytest.skip(res[1])
    _, cases, outs, errors, done, run = res
    assert run.exit_code == 0 and done is not None, (
        f"harness on {target_id} exited {run.exit_code} (70 = fault, 124 = timeout); "
        f"stderr: {run.stderr[-2000:]}; last output: {run.stdout[-500:]}")
    idxs = [i for i, c in enumerate(cases) if c.group == group]
    if group == "block-graph" and not idxs:
        pytest.skip(f"no graph available: {PEER} and {EXAMPLES} absent")
    assert idxs, f"no case for {group}"
    assert_harness_cases(cases, outs, errors, idxs)


def test_mhsa_block_threads_tsan():
    """kl_mhsa_block on 2..8 POSIX threads with a barrier (one shared K_h / V_h^T) under
    ThreadSanitizer: no data race, same bytes as the golden model."""
    if not tc.available("host"):
        pytest.skip(f"host: missing {', '.join(tc.missing_tools('host'))}")
    cases = [c for c in build_cases("generic") if c.op == OP_BLOCK
             and (c.group == "block-synthetic" or c.desc.startswith("peer"))]
    with tempfile.TemporaryDirectory(prefix="klmhsa-tsan-") as d:
        write_header(encode(cases), Path(d) / "tv_data.h")
        try:
            exe = tc.build([HARNESS, *kernel_lib.sources()], [kernel_lib.INCLUDE_DIR, d], "host",
                           d, {"KL_HARNESS_HOST": None, "KL_HARNESS_THREADS": None},
                           name="mhsa_tsan", extra_cflags=["-pthread", "-fsanitize=thread", "-g"])
        except tc.ToolchainError as exc:
            if "tsan" in str(exc).lower():
                pytest.skip(f"ThreadSanitizer unavailable: {str(exc)[-300:]}")
            raise
        run = tc.run(exe, "host", timeout=300)
    outs, errors, done = parse_output(run.stdout)
    assert run.exit_code == 0 and "ThreadSanitizer" not in run.stderr, run.stderr[-3000:]
    assert done == f"DONE {len(cases)} 0" and not errors, errors
    for i, c in enumerate(cases):
        assert outs[i] == c.expected, c.desc


def test_graph_sources_present():
    """The peer graph and the examples the block tests use (skip, with the reason, if absent)."""
    if not PEER.is_dir():
        pytest.skip(f"peer test graphs not available: {PEER} is absent (../shared beside the repo)")
    names = [n for n, _, _ in graph_sources()]
    assert "peer-attention" in names and "eeg_block" in names and "ecg_block" in names


def test_descriptions_mhsa():
    for name in ("mhsa_chunk", "mhsa_block", "softmax_rows"):
        d = kd.get(name)
        hdr = (kernel_lib.INCLUDE_DIR / "kernel_lib.h").read_text()
        for fn in d.c_functions.values():
            assert fn in hdr, fn
        dims = {k: 8 for k in d.dims}
        assert d.cost(dims) > 0 and d.split_dim(dims, 8)
        for isa in kd.ISAS:
            assert d.scratch_bytes(dims, 8, isa) >= 0
    # the working set of the depth-first schedule: no S x S map, one head's K/V
    blk = kd.get("mhsa_block")
    s, e, h, p = 81, 32, 8, 32
    one = blk.scratch_bytes(dict(S=s, E=e, H=h, P=p, E_out=e, shared_kv=1), 1, "arm-dsp")
    assert one < s * s + 2 * s * p
    eight = blk.scratch_bytes(dict(S=s, E=e, H=h, P=p, E_out=e, shared_kv=1), 8, "arm-dsp")
    own = blk.scratch_bytes(dict(S=s, E=e, H=h, P=p, E_out=e, shared_kv=0), 8, "arm-dsp")
    assert own - eight == 7 * 2 * s * p
