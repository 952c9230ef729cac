"""Requantization parameters in the generated C: where their int32 vectors live and the kl_rq_t
that a kernel call gets (kernel_lib/include/kl_common.h: mul/add indexed by batch, row and column
of the kernel's output through element strides).

Per-tensor or small vectors are code constants (`static const int32_t`); larger ones are a
constant buffer of the layer (plan buffer `rq`, `rq_<part>`, FWSA `rq_i` / `rq_s` / `rq_row`),
laid out as the tiler counted them (planner/tiling/ops.py): for each requantization in order,
its mul values then its add values (int32, C order); per-head FWSA blobs head by head.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from codegen.views import _affine
from planner.errors import PlannerError
from planner.ir import Requant

# the requantizations of a node, in the order _rq_bytes / _params_buf count them
NODE_RQ_KEYS = ("rq", "rq_a", "rq_b")


@dataclass
class RqPlace:
    """Where one Requant's mul and add vectors are: `base` is a C expression of an int32 pointer
    (a blob buffer's pointer or a static array), mul at base + mul_off, add at base + add_off."""

    rq: Requant
    base_mul: str
    base_add: str
    mul_off: int = 0
    add_off: int = 0


def rq_values(rq: Requant) -> tuple[np.ndarray, np.ndarray]:
    mul = np.asarray(rq.mul, dtype=np.int64).reshape(-1)
    add = np.asarray(rq.add, dtype=np.int64).reshape(-1)
    return mul, add


def blob(rqs: list[Requant]) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The int32 contents of a blob holding `rqs` and each one's (mul, add) offsets in it."""
    parts, offs, pos = [], [], 0
    for rq in rqs:
        mul, add = rq_values(rq)
        offs.append((pos, pos + mul.size))
        parts += [mul, add]
        pos += mul.size + add.size
    arr = np.concatenate(parts) if parts else np.zeros(0, np.int64)
    _check_i32(arr)
    return arr, offs


def head_blob(rq: Requant, n_heads: int) -> tuple[np.ndarray, int, int]:
    """Per-head layout (FWSA rq_* with dims h): head h's mul values then its add values; returns
    the contents and the per-head counts of mul and add."""
    mul, add = rq_values(rq)
    if mul.size % n_heads or add.size % n_heads:
        raise PlannerError("code generator: a per-head requantization vector does not split by head")
    m, a = mul.size // n_heads, add.size // n_heads
    rows = [np.concatenate([mul[h * m:(h + 1) * m], add[h * a:(h + 1) * a]]) for h in range(n_heads)]
    arr = np.concatenate(rows)
    _check_i32(arr)
    return arr, m, a


def _check_i32(arr: np.ndarray) -> None:
    if arr.size and (arr.min() < -(2**31) or arr.max() > 2**31 - 1):
        raise PlannerError("code generator: a requantization constant does not fit int32")


def strides(values: np.ndarray, node_out: tuple[int, ...], kernel_out: tuple[int, ...]) -> tuple[int, ...]:
    """Element strides of a broadcast mul/add vector along the kernel output's axes.

    `values` has the vector's own shape (broadcastable to the node's output `node_out`);
    `kernel_out` is the node's output regrouped as the kernel sees it (e.g. [batch][rows][cols])."""
    v = np.asarray(values)
    idx = np.arange(v.size, dtype=np.int64).reshape(v.shape)
    try:
        full = np.broadcast_to(idx, node_out).reshape(kernel_out)
    except ValueError:
        raise PlannerError(f"code generator: requantization vector of shape {v.shape} does not "
                           f"broadcast to the output {node_out}") from None
    aff = _affine("rq", full)
    if aff is None:
        raise PlannerError(f"code generator: requantization vector of shape {v.shape} is not a "
                           f"per-batch/row/column vector of the output {kernel_out}")
    return aff.strides


def out_levels(dtype: str) -> str:
    """The `levels` check of c_rq for a kernel output of this dtype."""
    return "16bit" if dtype == "int16" else "8bit"


def signed(rq: Requant) -> int:
    return 1 if rq.signed else 0


def c_rq(var: str, place: RqPlace, node_out: tuple[int, ...], kernel_out: tuple[int, ...],
         offsets: tuple[str, ...] = (), levels: str = "8bit") -> list[str]:
    """C statements filling `kl_rq_t var` for a kernel whose output is `kernel_out` (up to
    3 axes: batch, rows, cols; fewer means the last ones), at the tile whose first element along
    those axes is `offsets` (C expressions, one per axis; empty: the origin). `levels`: "8bit"
    for a kernel's 8-bit output; "int" for an intermediate clipped to its own range (kl_add_rq's
    input requantizations, n_levels < 2^31); "ignored" for an int32 result that the kernel clips
    to int32 itself (the FWSA row term); "16bit" for an int16 output (QDQ scores, int16 residuals:
    n_levels up to 65536)."""
    rq = place.rq
    if levels == "8bit" and rq.n_levels > 256:
        raise PlannerError("code generator: an 8-bit kernel output cannot take a requantization to "
                           f"{rq.n_levels} levels")
    if levels == "16bit" and rq.n_levels > 65536:
        raise PlannerError("code generator: an int16 kernel output cannot take a requantization to "
                           f"{rq.n_levels} levels")
    if levels == "int" and rq.n_levels > 2**31 - 1:
        raise PlannerError(f"code generator: a requantization to {rq.n_levels} levels does not fit "
                           "the kernels' int32 range")
    ms = strides(np.asarray(rq.mul), node_out, kernel_out)
    as_ = strides(np.asarray(rq.add), node_out, kernel_out)
    pad = 3 - len(kernel_out)
    ms3 = (0,) * pad + tuple(ms)
    as3 = (0,) * pad + tuple(as_)
    offs = ("0",) * pad + tuple(offsets or ("0",) * len(kernel_out))

    def shifted(base: str, start: int, st: tuple[int, ...]) -> str:
        terms = [str(start)] if start else []
        terms += [f"({o}) * {s}" for o, s in zip(offs, st) if s and o != "0"]
        return base + (" + " + " + ".join(terms) if terms else "")

    return [
        f"{var}.mul = {shifted(place.base_mul, place.mul_off, ms3)};",
        f"{var}.add = {shifted(place.base_add, place.add_off, as3)};",
        f"{var}.mul_sb = {ms3[0]}; {var}.mul_sr = {ms3[1]}; {var}.mul_sc = {ms3[2]};",
        f"{var}.add_sb = {as3[0]}; {var}.add_sr = {as3[1]}; {var}.add_sc = {as3[2]};",
        f"{var}.shift = {rq.shift}; {var}.n_levels = {0 if levels == 'ignored' else rq.n_levels}; "
        f"{var}.is_signed = {signed(rq)};",
    ]


def identity(n_levels: int, is_signed: bool) -> Requant:
    """A requantization that changes nothing for values in range (an Add input without one)."""
    return Requant(np.array([1]), np.array([0]), 1, n_levels, is_signed)
