"""Mixed precision for QDQ graphs: an int16 residual stream where it pays (--int16).

A residual Add whose output scale is set by a few outlier channels (trained encoders) quantizes
every ordinary token's row onto about one LSB: the LayerNorm that reads it (and the next residual
Add) then works on noise. Kept in int16 at scale s/256 (zero point zp*256, the same real range)
the tensor carries 8 more bits at twice the bytes.

Decision per tensor, from the calibration statistics the QDQ file carries (its scales): the
candidate is an Add output read only by LayerNorm {mode: qdq} and Add nodes (not a graph output);
int8 discards log2(s_out / min(s_a, s_b)) bits of the finer Add input; `auto` chooses int16 when
that is at least AUTO_BITS. `TENSOR,...` forces the named candidates, `off` none.

Rewrite: the tensor's quantization and dtype; the Add that writes it and every Add that reads it
get their requantizations recomputed from the tensors' scales (qdq_fixed.add_requants); every
LayerNorm that reads it gets in_shift 0 and its epsilon on the new grid. Run on the unfused QDQ
IR (before canonicalize); each decision is a graph note with its extra bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from planner.errors import PlannerError, UsageError
from planner.frontend.qdq_fixed import FixedPointError, add_requants, layernorm_qdq_shift
from planner.ir import Graph, QuantInfo

AUTO_BITS = 3.0   # int8 would lose >= 3 bits (8x) of the finer Add input
WIDEN = 256       # int16 scale = int8 scale / 256


@dataclass
class Int16Choice:
    tensor: str
    bits_lost: float      # of the finer Add input, at int8
    chosen: bool
    reason: str
    extra_bytes: int = 0


def _scale(graph: Graph, name: str) -> float:
    return float(np.asarray(graph.tensors[name].quant.scale).reshape(-1)[0])


def _zp(graph: Graph, name: str) -> int:
    return int(np.asarray(graph.tensors[name].quant.zero_point).reshape(-1)[0])


def _levels(graph: Graph, name: str) -> int:
    return 65536 if graph.tensors[name].dtype == "int16" else 256


def candidates(graph: Graph) -> list[Int16Choice]:
    """Every Add output that could be int16, with the bits int8 loses on it (not yet chosen)."""
    out = []
    for node in graph.nodes:
        if node.op != "Add" or "rq_a" not in node.attrs:
            continue
        t = node.outputs[0]
        tt = graph.tensors[t]
        if tt.quant is None or tt.dtype not in ("int8", "uint8") or t in graph.outputs:
            continue
        cons = graph.consumers(t)
        ok = cons and all((c.op == "LayerNorm" and c.attrs.get("mode") == "qdq")
                          or (c.op == "Add" and "rq_a" in c.attrs) for c in cons)
        if not ok:
            continue
        finer = min(_scale(graph, i) for i in node.inputs)
        out.append(Int16Choice(t, math.log2(max(_scale(graph, t) / finer, 1.0)), False, ""))
    return out


def decide(graph: Graph, spec: str) -> list[Int16Choice]:
    """The candidates with their decision for --int16 `spec` (auto | off | TENSOR,...)."""
    cands = candidates(graph)
    spec = (spec or "off").strip()
    if spec == "off":
        for c in cands:
            c.reason = "--int16 off"
        return cands
    if spec == "auto":
        for c in cands:
            c.chosen = c.bits_lost >= AUTO_BITS
            c.reason = (f"int8 loses {c.bits_lost:.1f} bits of the finer Add input "
                        f"({'>=' if c.chosen else '<'} {AUTO_BITS:g})")
        return cands
    names = [n.strip() for n in spec.split(",") if n.strip()]
    by_name = {c.tensor: c for c in cands}
    bad = [n for n in names if n not in by_name]
    if bad:
        known = ", ".join(sorted(by_name)) or "none in this graph"
        raise UsageError(f"--int16: {', '.join(bad)} is not a residual tensor that can be int16 "
                         f"(an Add output read only by LayerNorm/Add, not a graph output); "
                         f"candidates: {known}; or use --int16 auto|off")
    for c in cands:
        c.chosen = c.tensor in names
        c.reason = "named by --int16" if c.chosen else "not named by --int16"
    return cands


def apply_int16(graph: Graph, spec: str) -> list[Int16Choice]:
    """Decide and rewrite (see the module docstring); returns the decisions."""
    if graph.flavour != "qdq":
        if spec not in ("off", "auto"):
            raise UsageError("--int16 TENSOR,... applies to QDQ graphs only (this graph is "
                             f"'{graph.flavour}'): use --int16 off")
        return []
    choices = decide(graph, spec)
    chosen = [c for c in choices if c.chosen]
    for c in chosen:
        t = graph.tensors[c.tensor]
        s, zp = _scale(graph, c.tensor), _zp(graph, c.tensor)
        if t.dtype == "uint8":  # the same codes as int8
            zp -= 128
        t.quant = QuantInfo(np.asarray(s / WIDEN, dtype=np.float64), np.asarray(zp * WIDEN))
        t.dtype = "int16"
        c.extra_bytes = t.size  # one more byte per element
    touched = {c.tensor for c in chosen}
    for node in graph.nodes:
        if node.op == "Add" and "rq_a" in node.attrs and touched & set(node.inputs + node.outputs):
            a, b = node.inputs
            y = node.outputs[0]
            try:
                rq_a, rq_b, rq = add_requants(
                    _scale(graph, a), _zp(graph, a), _levels(graph, a),
                    _scale(graph, b), _zp(graph, b), _levels(graph, b),
                    _scale(graph, y), _zp(graph, y), graph.tensors[y].dtype != "uint8",
                    _levels(graph, y))
            except FixedPointError as exc:
                raise PlannerError(f"{graph.source}: node '{node.name}': int16 residual: "
                                   f"{exc}") from None
            node.attrs.update(rq_a=rq_a, rq_b=rq_b, rq=rq)
        elif node.op == "LayerNorm" and node.attrs.get("mode") == "qdq" and node.inputs[0] in touched:
            x = node.inputs[0]
            k = layernorm_qdq_shift("int16")
            s_w = _scale(graph, x) / (1 << k)
            node.attrs.update(in_shift=k, eps=int(round(node.attrs["epsilon"] / (s_w * s_w))))
    for c in choices:
        if c.chosen:
            graph.notes.append(f"tensor '{c.tensor}': int16 (scale/256): {c.reason}; "
                               f"+{c.extra_bytes} bytes")
        elif spec != "off":
            graph.notes.append(f"tensor '{c.tensor}': int8 kept: {c.reason}")
    return choices
