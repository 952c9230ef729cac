"""Depth-first execution of a fused MHSA node: heads outer, query-row chunks inner.

The H×S×S attention map never exists: per head, K_h and V_h stay resident; per chunk of rows the
score rows are complete (the whole key dimension), so the integer softmax is exact, and the output
projection is accumulated head by head in int32, which equals the unfused result exactly.
"""

from __future__ import annotations

import numpy as np

from planner.golden import ops
from planner.ir import Node, Requant


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


def _rq(x: np.ndarray, rq: Requant | None) -> np.ndarray:
    return x if rq is None else ops.requant_shift(x, rq.mul, rq.add, rq.div, rq.n_levels, rq.signed)


def _proj(x: np.ndarray, w: np.ndarray, b: np.ndarray | None, rq: Requant | None, name: str) -> np.ndarray:
    acc = x @ w.T + (0 if b is None else b)
    ops.check_i32(acc, f"node {name}: accumulator")
    return _rq(acc, rq)


def mhsa_depth_first(node: Node, x: list[np.ndarray | None], rows: int = 8) -> np.ndarray:
    a = node.attrs
    s, e, p, h = a["s"], a["e"], a["p"], a["h"]
    xin = x[0].reshape(s, e)
    wq, bq, wk, bk, wv, bv, wo, bo = x[1:9]
    q = _proj(xin, wq, bq, a["q"].attrs.get("rq"), a["q"].name)
    k = _proj(xin, wk, bk, a["k"].attrs.get("rq"), a["k"].name)
    v = _proj(xin, wv, bv, a["v"].attrs.get("rq"), a["v"].name)
    sm = a["softmax"]
    acc = np.zeros((s, wo.shape[0]), dtype=np.int64)
    for head in range(h):
        cols = slice(head * p, (head + 1) * p)
        k_h, v_h = k[:, cols], v[:, cols]
        rq_s = head_rq(a["scores"].attrs.get("rq"), head, h)
        rq_v = head_rq(a["av"].attrs.get("rq"), head, h)
        for r0 in range(0, s, rows):
            r1 = min(s, r0 + rows)
            scores = _rq(ops.check_i32(q[r0:r1, cols] @ k_h.T, f"node {a['scores'].name}: scores"), rq_s)
            if sm is not None:
                if sm.attrs["kind"] == "isoftmax":
                    scores = ops.isoftmax(scores, sm.attrs["coeff_a"], sm.attrs["coeff_b"],
                                          sm.attrs["coeff_c"], sm.attrs["log2"], sm.attrs["n_levels"])
                elif sm.attrs["kind"] == "itamax":
                    scores = ops.itamax(scores, sm.attrs["n_levels"])
                else:
                    scores = ops.ita_partial_max(scores, sm.attrs["group_width"], sm.attrs["n_levels"])
            o_h = _rq(ops.check_i32(scores @ v_h, f"node {a['av'].name}: accumulator"), rq_v)
            acc[r0:r1] += o_h @ wo[:, cols].T
    if bo is not None:
        acc = acc + bo
    ops.check_i32(acc, f"node {a['o'].name}: accumulator")
    y = _rq(acc, a["o"].attrs.get("rq"))
    return y.reshape(x[0].shape[:-1] + (wo.shape[0],))
