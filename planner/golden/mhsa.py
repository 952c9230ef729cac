"""Depth-first execution of a fused MHSA node: heads outer, query-row chunks inner.

The H×S×S attention map never exists: per head, K_h and V_h stay resident; per chunk of rows the
score rows are complete (the whole key dimension), so the integer softmax is exact, and the output
projection is accumulated head by head in int32, which equals the unfused result exactly.

FWSA form (node.attrs["fwsa"], planner/transforms/fwsa.py; docs/fwsa.md): W_Q and W_K of a head are
one int8 E×E matrix; per head and chunk of rows
    I*     = RQ_i(X_rows·W_hᵀ + b_h)                      int8, per-row weight scales
    scores = RQ_s'(I*·Xᵀ [+ RQ_r(X_rows·w_row_h)])        int8, the ORIGINAL softmax input scale
then softmax, ·V_h and the output projection as in the standard form. The key side is X itself:
no K projection exists. This function is the executable specification of the C FWSA kernel.
"""

from __future__ import annotations

import numpy as np

from planner.golden import ops
from planner.ir import Node, Requant


def mhsa_zero_points(node: Node, fused: bool | None = None) -> tuple[int, int, int]:
    """(zq, zk, zv): the zero points the attention operands of an MHSA node keep (QDQ graphs
    whose Q, K, V are not zero-point free; 0 elsewhere): scores = (Q - zq)·(K - zk)ᵀ,
    O = probs·(V - zv). The FWSA form has no Q or K (the transform folds their zero points);
    fused: the form (None: FWSA when the node has it; False: the standard form of any node)."""
    a = node.attrs
    sc, av = a["scores"].attrs, a["av"].attrs
    if fused is None:
        fused = a.get("fwsa") is not None
    return (0 if fused else int(sc.get("zp_a", 0)), 0 if fused else int(sc.get("zp_b", 0)),
            int(av.get("zp_b", 0)))


def head_rq(rq: Requant | None, h: int, n_heads: int) -> Requant | None:
    """The requantization of head h (mul/add may be per head, shaped [1,H,1,1] or [H,1,1])."""
    if rq is None:
        return None

    def pick(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v)
        if v.ndim >= 3 and v.shape[-3] == n_heads and n_heads > 1:
            return v.reshape(-1, *v.shape[-3:])[0, h]
        return v

    return Requant(pick(rq.mul), pick(rq.add), rq.div, rq.n_levels, rq.signed)


def fwsa_head_rq(rq: Requant, h: int) -> Requant:
    """FWSA requantizations store mul/add as [H, 1, n] (n = 1 or E): head h's [1, n]."""
    def pick(v: np.ndarray) -> np.ndarray:
        v = np.asarray(v)
        return v[h] if v.ndim == 3 else v

    return Requant(pick(rq.mul), pick(rq.add), rq.div, rq.n_levels, rq.signed)


def _rq(x: np.ndarray, rq: Requant | None) -> np.ndarray:
    return x if rq is None else ops.requant_shift(x, rq.mul, rq.add, rq.div, rq.n_levels, rq.signed)


def _proj(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, rq: Requant | None, name: str) -> np.ndarray:
    acc = x @ w.T + (0 if b is None else b)
    ops.check_i32(acc, f"node {name}: accumulator")
    return _rq(acc, rq)


def _softmax(scores: np.ndarray, sm: Node | None) -> np.ndarray:
    if sm is None:
        return scores
    if sm.attrs["kind"] == "isoftmax":
        return ops.isoftmax(scores, sm.attrs["coeff_a"], sm.attrs["coeff_b"],
                            sm.attrs["coeff_c"], sm.attrs["log2"], sm.attrs["n_levels"],
                            sm.attrs.get("rounded", False))
    if sm.attrs["kind"] == "itamax":
        return ops.itamax(scores, sm.attrs["n_levels"])
    return ops.ita_partial_max(scores, sm.attrs["group_width"], sm.attrs["n_levels"])


def mhsa_depth_first(node: Node, x: list[np.ndarray | None], rows: int = 8,
                     use_fwsa: bool | None = None, probe: dict | None = None) -> np.ndarray:
    """Run one MHSA node depth-first. x: the values of node.inputs.

    use_fwsa: None runs the FWSA form when the node has one, False always runs the standard form
    (for an FWSA node, with the W_q/W_k it keeps), True requires the FWSA form.
    probe: if a dict, receives "scores" and "probs" ([H,S,S], the softmax input and the ·V input).
    """
    a = node.attrs
    fw = a.get("fwsa")
    if use_fwsa and fw is None:
        raise ValueError(f"node {node.name} has no FWSA form (run planner.transforms.fwsa first)")
    if fw is not None and use_fwsa is not False:
        return _mhsa_fwsa(node, x, rows, probe)
    if fw is not None:  # standard form of an FWSA node: its inputs are [x, w_f, b_f, v, o ...]
        wq, bq, wk, bk = fw.unfused_consts
        x = [x[0], wq, bq, wk, bk] + list(x[3:7])
    return _mhsa_standard(node, x, rows, probe, mhsa_zero_points(node, fused=False))


def _mhsa_standard(node: Node, x: list[np.ndarray | None], rows: int, probe: dict | None,
                   zps: tuple[int, int, int]) -> np.ndarray:
    a = node.attrs
    s, e, p, h = a["s"], a["e"], a["p"], a["h"]
    xin = x[0].reshape(s, e)
    wq, bq, wk, bk, wv, bv, wo, bo = x[1:9]
    zq, zk, zv = zps
    q = _proj(xin, wq, bq, a["q"].attrs.get("rq"), a["q"].name) - zq
    k = _proj(xin, wk, bk, a["k"].attrs.get("rq"), a["k"].name) - zk
    v = _proj(xin, wv, bv, a["v"].attrs.get("rq"), a["v"].name) - zv
    sm = a["softmax"]
    acc = np.zeros((s, wo.shape[0]), dtype=np.int64)
    if probe is not None:
        probe["scores"] = np.zeros((h, s, s), dtype=np.int64)
        probe["probs"] = np.zeros((h, s, s), dtype=np.int64)
    for head in range(h):
        cols = slice(head * p, (head + 1) * p)
        k_h, v_h = k[:, cols], v[:, cols]
        rq_s = head_rq(a["scores"].attrs.get("rq"), head, h)
        rq_v = head_rq(a["av"].attrs.get("rq"), head, h)
        for r0 in range(0, s, rows):
            r1 = min(s, r0 + rows)
            scores = _rq(ops.check_i32(q[r0:r1, cols] @ k_h.T, f"node {a['scores'].name}: scores"), rq_s)
            acc[r0:r1] += _attend(scores, sm, probe, head, r0, v_h, rq_v, a) @ wo[:, cols].T
    return _output_projection(acc, bo, a, x[0].shape)


def _attend(scores: np.ndarray, sm: Node | None, probe: dict | None, head: int, r0: int,
            v_h: np.ndarray, rq_v: Requant | None, a: dict) -> np.ndarray:
    """Softmax of full score rows, then ·V_h: the head's output rows O_h (int8)."""
    probs = _softmax(scores, sm)
    if probe is not None:
        probe["scores"][head, r0:r0 + len(scores)] = scores
        probe["probs"][head, r0:r0 + len(scores)] = probs
    return _rq(ops.check_i32(probs @ v_h, f"node {a['av'].name}: accumulator"), rq_v)


def _output_projection(acc: np.ndarray, bo: np.ndarray | None, a: dict, x_shape: tuple) -> np.ndarray:
    """Y = RQ_o(acc + b_o), the int32 accumulator summed over heads."""
    if bo is not None:
        acc = acc + bo
    ops.check_i32(acc, f"node {a['o'].name}: accumulator")
    y = _rq(acc, a["o"].attrs.get("rq"))
    return y.reshape(x_shape[:-1] + (y.shape[-1],))


def _mhsa_fwsa(node: Node, x: list[np.ndarray | None], rows: int, probe: dict | None) -> np.ndarray:
    """FWSA form; x = [X, w_fused [H][E][E], b_fused [H][E], w_v, b_v, w_o, b_o, (w_row [H][E])]."""
    a = node.attrs
    fw = a["fwsa"]
    s, e, p, h = a["s"], a["e"], a["p"], a["h"]
    xin = x[0].reshape(s, e)
    wf, bf, wv, bv, wo, bo = x[1:7]
    w_row = x[7] if len(x) > 7 else None
    v = _proj(xin, wv, bv, a["v"].attrs.get("rq"), a["v"].name) - mhsa_zero_points(node)[2]
    sm = a["softmax"]
    acc = np.zeros((s, wo.shape[0]), dtype=np.int64)
    if probe is not None:
        probe["scores"] = np.zeros((h, s, s), dtype=np.int64)
        probe["probs"] = np.zeros((h, s, s), dtype=np.int64)
    for head in range(h):
        cols = slice(head * p, (head + 1) * p)
        v_h = v[:, cols]
        w_h, b_h = wf[head], bf[head]
        rq_i = fwsa_head_rq(fw.rq_i, head)
        rq_s = fwsa_head_rq(fw.rq_scores, head)
        rq_r = None if w_row is None else fwsa_head_rq(fw.rq_row, head)
        rq_v = head_rq(a["av"].attrs.get("rq"), head, h)
        for r0 in range(0, s, rows):
            r1 = min(s, r0 + rows)
            x_rows = xin[r0:r1]
            acc_i = ops.check_i32(x_rows @ w_h.T + b_h, f"node {node.name}: FWSA I* accumulator")
            istar = _rq(acc_i, rq_i)
            acc_s = istar @ xin.T
            if w_row is not None:
                acc_r = ops.check_i32(x_rows @ w_row[head], f"node {node.name}: FWSA row-term accumulator")
                acc_s = acc_s + _rq(acc_r[:, None], rq_r)
            scores = _rq(ops.check_i32(acc_s, f"node {node.name}: FWSA scores"), rq_s)
            acc[r0:r1] += _attend(scores, sm, probe, head, r0, v_h, rq_v, a) @ wo[:, cols].T
    return _output_projection(acc, bo, a, x[0].shape)
