"""`planner calibrate HW.json --target qemu-m7|qemu-m4|qemu-rv32`: measure the generated code on
QEMU and fit the hardware model's cost figures (docs/calibration.md).

The cost model (planner/cost.py) prices a kernel call as counts of features of its C code
(kernel_lib/descriptions.py: MACs, row blocks, columns of a block, rows, calls, ...) times the
model's `kernel_cost[key][feature]`, and the generated code's own work as `overhead_cycles`
(per layer, tile, kernel call, DMA transfer, compacted byte). This command measures both:

1. Kernels. The example networks (examples/*/int.onnx and qdq.onnx) are solved for the model
   as `planner solve` plans them (--dft auto, the deployed form) and layer by layer (--dft off);
   every layer becomes the kernel calls its generated code makes (`plan_uses`), with the
   layer's own requantization constants. A fixed grid of further shapes per kernel family
   (`grid_calls`) makes every feature vary independently. Every distinct call runs once between
   prof_start/prof_stop in one program (planner/qemu/calib_harness.c) on the QEMU target; the
   project's plugin counts its instructions (the markers' own subtracted). The coefficients are
   the non-negative least-squares fit of the calls' instructions on their feature counts, each
   call weighted by 1/instructions (relative error), all keys at once (the gemm core's features
   are shared by kl_linear, the matmuls and kl_mhsa_chunk).
2. Overhead. The deployed plans of the examples (C emitted) run on the target
   (`planner run`); per layer the instructions outside the kernel library (and its libgcc
   helpers) are split into the DMA port's (the QEMU build copies with the core) and the rest (tile
   engine, layer bodies). `overhead_cycles` is the fit of the rest on the layer's overhead counts,
   `qemu_dma_port` the fit of the port's on its transfers, rows and bytes (planner/qemu_estimate.py).
3. Check. With the fitted figures, every layer of those runs is estimated as a QEMU run
   (planner/qemu_estimate.py) and compared with its count; the largest deviation is stored as
   `qemu_estimate_deviation`, which the cost model's stated uncertainty uses (planner/cost.py).

Stored figures are instructions x insn_to_cycle (cycles; qemu_dma_port stays in instructions),
each with a `_source` "measured: QEMU <target> instruction count, `<command>`: ..."; insn_to_cycle
itself stays as it is (assumed).
"""

from __future__ import annotations

import dataclasses
import json
import math
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from kernel_lib import descriptions as kd
from planner.errors import PlannerError, UsageError
from planner.hw import (HW_DIR, OVERHEAD_FIELDS, QEMU_PORT_FIELDS, HardwareModel, load_hw_model,
                        resolve_hw_path)
from planner.tiling.ops import _head_rq, _per_head, rq_axes

REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "examples"
HARNESS = Path(__file__).resolve().parent / "qemu" / "calib_harness.c"
TARGETS = {"qemu-m7": "m7", "qemu-m4": "m4", "qemu-rv32": "rv32"}
KEYS = kd.COST_KEY_SET
DIGITS = 4  # significant digits of a stored figure
TIGHT_L1 = "16K"  # stage 2 also runs the examples with this L1 (more tiles, transfers and rows)

# harness case kinds (calib_harness.c)
KIND = {"empty": 0, "linear": 1, "matmul": 2, "matmul_i32": 3, "layernorm": 4, "gelu": 5, "add": 6,
        "requant": 7, "isoftmax": 8, "itamax": 9, "itapartial": 10, "smrows": 11, "chunk": 12,
        "finalize": 13, "ln_qdq": 14, "lut": 15, "add_x": 16, "isoftmax16": 17}
CASE_WIDTH = 34  # int32 words per case row: kind, core, n_cores, data (3), parameters

Feature = tuple[str, str]   # (kernel_cost key, feature)


@dataclass(frozen=True)
class Part:
    """One kernel call inside a measured region, as the cost model counts it."""

    kernel: str                       # kernel description name
    dims: tuple[tuple[str, int], ...]  # its call dims and flags
    n_cores: int = 1
    times: int = 1

    def counts(self, isa: str) -> dict[Feature, int]:
        c = kd.cost_counts(self.kernel, dict(self.dims), isa, self.n_cores)
        return {k: v * self.times for k, v in c.items()}


def _part(kernel: str, n_cores: int = 1, times: int = 1, **dims: int) -> Part:
    return Part(kernel, tuple(sorted((k, int(v)) for k, v in dims.items())), max(1, n_cores), times)


@dataclass(frozen=True)
class Call:
    """One measured region of the harness: the kernel call(s) the generated code makes for one
    tile (on a multi-core model, the busiest core's share: core n-1 of n)."""

    kind: str                 # harness case kind (KIND)
    params: tuple[int, ...]   # the case's parameters (calib_harness.c)
    core: int
    n_cores: int
    parts: tuple[Part, ...]   # what the cost model counts for the region
    work: int                 # MACs or elements of the measured core's share
    label: str
    data: tuple[int, int, int] = (0, 0, 1)  # the inputs' center, spread (0: uniform), signed

    def counts(self, isa: str) -> dict[Feature, int]:
        out: dict[Feature, int] = {}
        for p in self.parts:
            for k, v in p.counts(isa).items():
                out[k] = out.get(k, 0) + v
        return out

    @property
    def keys(self) -> set[str]:
        return {kd.cost_key(p.kernel) for p in self.parts}


@dataclass(frozen=True)
class Use:
    """A call in a plan: which plan and layer, and how many times the layer runs it."""

    plan: str
    form: str                 # "deployed" (as solved / given) or "layer-by-layer"
    layer: str
    op: str
    call: Call
    count: int


@dataclass
class KeyFit:
    key: str
    coefs: dict[str, float]           # instructions per count (fitted)
    measured: set[str]                # the features some call counts (the others kept)
    previous: dict[str, float]        # cycles per count before
    new: dict[str, float]             # cycles per count, rounded (what is written)
    calls: int                        # distinct calls that count the key
    ratio: tuple[float, float]        # fitted / measured instructions over those calls
    worst: tuple[str, float]          # the call furthest off
    source: str = ""


@dataclass
class LayerRun:
    """One layer of an example plan run on the target (stage 2)."""

    plan: str
    layer: str
    op: str
    total: int                        # instructions of the layer's region
    kernels: int                      # inside the kernel library and its libgcc helpers
    port: int                         # inside the DMA port
    overhead_counts: dict[str, int]   # as a QEMU run executes them (qemu_estimate.overhead_features)
    port_counts: dict[str, int]
    estimate: float = 0.0             # the QEMU estimate with the fitted figures

    @property
    def ratio(self) -> float:
        return self.estimate / self.total if self.total else 1.0


@dataclass
class Calibration:
    hw: HardwareModel
    target: str
    command: str
    fits: dict[str, KeyFit]
    uses: list[Use]
    grid: list[Call]
    measured: dict[Call, int]         # instructions per call (markers subtracted)
    marker_insns: int
    plans: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # layers without a calibration case
    overhead: dict[str, float] | None = None          # instructions per count (fitted)
    port: dict[str, float] | None = None              # instructions per count (fitted)
    runs: list[LayerRun] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)  # _source entries to write
    values: dict[str, float] = field(default_factory=dict)  # dotted path -> value to write

    @property
    def deviation(self) -> float | None:
        if not self.runs:
            return None
        return max(abs(r.ratio - 1) for r in self.runs)


# ------------------------------------------------------------------------------------------
# plans -> kernel calls
# ------------------------------------------------------------------------------------------

def _tiles(size: int, t: int) -> list[tuple[int, int]]:
    """(extent, count) of the tiles of a dim of `size` cut in tiles of `t`."""
    t = max(1, min(int(t), int(size)))
    full, rem = divmod(int(size), t)
    return ([(t, full)] if full else []) + ([(rem, 1)] if rem else [])


def last_share(total: int, n: int) -> int:
    """Elements of the last core under kl_split (the busiest: ceil(total / n))."""
    return total if n <= 1 else total - (total * (n - 1)) // n


def _mul_shift(k: int, amag: float = 74.0, sh: int = 24) -> tuple[int, int]:
    """A requantization that maps an int8 dot product of length k to a spread of ~40 LSB."""
    sd = amag * 74.0 * math.sqrt(max(k, 1))
    return max(1, round(40 * 2**sh / sd)), sh


def _rq(rq, default: tuple[int, int]) -> tuple[int, int]:
    """(mul, shift) of a layer's requantization (its first multiplier: per-tensor in the
    examples), or `default` without one."""
    if rq is None:
        return default
    mul = int(np.asarray(rq.mul).reshape(-1)[0])
    return (mul if mul else 1), int(rq.shift)


def _core(n_cores: int) -> tuple[int, int]:
    return max(n_cores, 1) - 1, max(n_cores, 1)


def _who(core: int, n: int) -> str:
    return f", core {core + 1}/{n}" if n > 1 else ""


def linear_call(S: int, N: int, K: int, cores: int, *, kt: int = 0, xs: int = 0, trans: int = 0,
                out_i32: int = 0, bias: int = 1, rq: tuple[int, int] | None = None,
                rq_flags: dict | None = None) -> Call:
    """kl_linear_* on S x K -> N (kt: K chunk of a K split, 0 = none: the int32 chunks then
    kl_linear_finalize); rows split when S >= cores, else output features. rq_flags: rq_n / rq_s
    (planner.tiling.ops.rq_axes) for a requantization varying along N or S."""
    fl = dict(rq_flags or {})
    mode = 1 if fl.get("rq_n") else 2 if fl.get("rq_s") else 0
    c, n = _core(cores)
    share = last_share(S, n) * N if S >= n else S * last_share(N, n)
    mul, sh = rq or _mul_shift(K)
    fn = f"kl_linear{'_t' if trans else ''}_{'u8' if xs else 's8'}"
    parts: list[Part] = []
    if kt:
        full, rest = divmod(K, kt)
        parts.append(_part("linear", n, full, S=S, N=N, K=kt, trans=0, out_i32=1))
        if rest:
            parts.append(_part("linear", n, 1, S=S, N=N, K=rest, trans=0, out_i32=1))
        if not out_i32:
            parts.append(_part("linear_finalize", n, S=S, N=N))
        label = f"{fn}_i32 x{-(-K // kt)}{'' if out_i32 else ' + finalize'} {S}x{K}->{N} (K chunks of {kt})"
    else:
        parts.append(_part("linear", n, S=S, N=N, K=K, trans=trans, out_i32=out_i32, **fl))
        label = f"{fn}{'_i32' if out_i32 else ''} {S}x{K}->{N}"
    rq_txt = {1: ", RQ per feature", 2: ", RQ per row"}.get(mode, "")
    return Call("linear", (S, N, K, kt, xs, trans, out_i32, bias, mul, sh, mode), c, n, tuple(parts),
                share * K, label + rq_txt + _who(c, n))


def _rows_else_cols(rows: int, cols: int, n: int) -> int:
    return last_share(rows, n) * cols if rows >= n else rows * last_share(cols, n)


def _sm_params(sm) -> tuple[int, ...]:
    """kind A B C log2 group_width n_levels of a Softmax node (None: no softmax)."""
    if sm is None:
        return (0, 0, 0, 0, 1, 0, 256)
    a = sm.attrs
    return (kd.SOFTMAX_KINDS[a.get("kind", "isoftmax")], int(a.get("coeff_a", 0)), int(a.get("coeff_b", 0)),
            int(a.get("coeff_c", 0)), int(a.get("log2", 1)), int(a.get("group_width", 0)),
            int(a.get("n_levels", 256)))


def softmax_rows_call(rows: int, L: int, sm: tuple[int, ...]) -> Call:
    """kl_softmax_rows on one core's rows (the table softmax kl_mhsa_chunk runs inside)."""
    return Call("smrows", (rows, L, *sm), 0, 1, (_part("softmax_rows", 1, rows=rows, L=L, softmax=sm[0]),),
                rows * L, f"kl_softmax_rows {rows}x{L}")


def chunk_call(rows: int, S: int, D: int, P: int, E: int, cores: int, sm: tuple[int, ...], *,
               fwsa: int = 0, row_term: int = 0, q_signed: int = 1, wide: int = 0,
               rq_s: tuple[int, int] | None = None, rq_v: tuple[int, int] | None = None,
               rq_i: tuple[int, int] | None = None, rq_i_cols: int = 0) -> Call:
    """kl_mhsa_chunk on a chunk of `rows` query rows (split over min(rows, cores) cores)."""
    c, n = _core(min(rows, cores))
    share = last_share(rows, n)
    macs = share * (S * D + S * P + P * E + (D * D if fwsa else 0) + (D if row_term else 0))
    ms, ss = rq_s or _mul_shift(D)
    mv, sv = rq_v or _mul_shift(S, 147.0)
    mi, si = rq_i or (0, 0)
    label = (f"kl_mhsa_chunk rows={rows} S={S} D={D} P={P} E={E}{' FWSA' if fwsa else ''}"
             f"{' row term' if row_term else ''}{' int16 scores' if wide else ''}" + _who(c, n))
    part = _part("mhsa_chunk", n, rows=rows, S=S, D=D, P=P, E_out=E, fwsa=fwsa, row_term=row_term,
                 softmax=sm[0], wide_scores=wide, fused_out=1, lut_given=1, rq_i_cols=rq_i_cols)
    return Call("chunk", (rows, S, D, P, E, fwsa, row_term, *sm, q_signed, ms, ss, mv, sv, wide, mi, si,
                          rq_i_cols), c, n, (part,), macs, label)


def matmul_call(b: int, m: int, n: int, k: int, bt: int, cores: int, rq: tuple[int, int],
                a_signed: int = 1, b_signed: int = 1, wide: int = 0) -> Call:
    """kl_bmatmul on b batches of [m][k] . [k][n] (bt: B stored [n][k]), split as the kernel
    (the b*m output rows, else the columns); wide: int16 outputs (rq.n_levels = 65536)."""
    c, nc = _core(cores)
    share = (last_share(b * m, nc) * n if b * m >= nc else b * m * last_share(n, nc)) * k
    mul, sh = rq
    return Call("matmul", (b, m, n, k, a_signed, b_signed, bt, mul, sh, wide), c, nc,
                (_part("bmatmul", nc, batch=b, M=m, N=n, K=k, b_trans=bt, rq16=wide),), share,
                f"kl_bmatmul {b}x{m}x{k} . {k}x{n}{' (B^T)' if bt else ''}{' int16 out' if wide else ''}"
                + _who(c, nc))


def finalize_call(rows: int, cols: int, cores: int, bias: int, rq: tuple[int, int] | None = None) -> Call:
    """The MHSA writeout (nr_finalize_rows: rows split across cores, kl_linear_finalize in place)."""
    share = last_share(rows, cores)
    mul, sh = rq or (1, 10)
    return Call("finalize", (share, cols, bias, mul, sh), 0, 1, (_part("linear_finalize", 1, S=share, N=cols),),
                share * cols, f"kl_linear_finalize {share}x{cols} (MHSA writeout{_who(cores - 1, cores)})")


def rowwise_call(kind: str, kernel: str, rows: int, cols: int, cores: int, params: tuple[int, ...],
                 label: str, by_rows_only: bool = False, **flags: int) -> Call:
    """An element-wise / row-wise kernel on rows x cols (rows split, or columns when rows <
    cores unless the kernel splits rows only)."""
    n_used = min(rows, cores) if kernel in ("isoftmax", "isoftmax_s16") else cores
    c, n = _core(n_used)
    dnames = kd.get(kernel).dims
    work = last_share(rows, n) * cols if by_rows_only else _rows_else_cols(rows, cols, n)
    part = _part(kernel, n, **{dnames[0]: rows, dnames[1]: cols}, **flags)
    return Call(kind, (rows, cols, *params), c, n, (part,), work, label + _who(c, n))


class NotMeasured(Exception):
    """A layer whose kernel has no calibration case (reported, not measured)."""


# the kernel-library functions the harness runs, per op (plan.json `kernel`, " / "-separated)
_FUNCTIONS = {
    "LayerNorm": {"kl_ilayernorm", "kl_layernorm_qdq"}, "GELU": {"kl_igelu_i32", "kl_igelu_rq"},
    "Add": {"kl_add_rq", "kl_add_rq_x"}, "RequantShift": {"kl_requant"}, "Lut": {"kl_lut8"},
    "Softmax": {"kl_isoftmax", "kl_itamax", "kl_ita_partial_max", "kl_isoftmax_s16"},
}
_8BIT = ("int8", "uint8")


def _check_layer(graph, node, lp) -> None:
    """Raise NotMeasured unless the harness runs this layer's kernel with these dtypes."""
    T = graph.tensors
    dtypes = {T[t].dtype for t in [*node.inputs, *node.outputs] if t and not T[t].is_const}
    fns = {f.strip() for f in lp.kernel.split("/")}
    ok = True
    if lp.op == "Linear":
        ok = all(f.startswith("kl_linear_") for f in fns) and T[node.inputs[0]].dtype in _8BIT
    elif lp.op == "MatMul":
        outs = {T[t].dtype for t in node.outputs if t}
        ok = dtypes <= ({"int32", *_8BIT} if "kl_bmatmul_i32" in fns
                        else {*_8BIT, "int16"}) and all(T[t].dtype in _8BIT for t in node.inputs[:2])
        ok = ok and ("kl_bmatmul_i32" in fns or outs <= {*_8BIT, "int16"})
    elif lp.op in _FUNCTIONS:
        allowed = set(_8BIT) | {"int16"} | ({"int32"} if lp.op in ("GELU", "RequantShift") else set())
        ok = fns <= _FUNCTIONS[lp.op] and dtypes <= allowed
    elif lp.op == "MHSA":
        ok = T[node.inputs[0]].dtype in _8BIT
    if not ok:
        raise NotMeasured(f"{lp.name} ({lp.op}, {lp.kernel}; {', '.join(sorted(dtypes))}): "
                          "no calibration case for this kernel")


def _layer_calls(graph, lp, cores: int) -> list[tuple[Call, int]]:
    """The kernel calls the generated code makes for plan layer `lp`, with their counts
    (NotMeasured for a kernel the harness does not run)."""
    node = next((n for n in graph.nodes if n.name == lp.name), None)
    if node is None:
        raise PlannerError(f"plan layer {lp.name} is not a node of the plan's network: re-run planner solve")
    _check_layer(graph, node, lp)
    tile = lp.tile.get(lp.compute_level) or lp.dims
    op = lp.op
    out: list[tuple[Call, int]] = []
    T = graph.tensors
    wide = any(T[t].dtype == "int16" for t in [*node.inputs, *node.outputs] if t)
    rq = node.attrs.get("rq")
    if op == "Linear":
        S, N, K = lp.dims["S"], lp.dims["N"], lp.dims["K"]
        x = node.inputs[0]
        bias = int(len(node.inputs) > 2 and bool(node.inputs[2]))
        xs = int(T[x].dtype == "uint8")
        out_i32 = int(rq is None)
        kt = tile["K"] if tile["K"] < K else 0
        for s, cs in _tiles(S, tile["S"]):
            for n_, cn in _tiles(N, tile["N"]):
                out.append((linear_call(s, n_, K, cores, kt=kt, xs=xs, out_i32=out_i32, bias=bias,
                                        rq=_rq(rq, _mul_shift(K)), rq_flags=rq_axes(rq)), cs * cn))
    elif op == "MatMul":
        from math import prod
        a, b = node.inputs[0], node.inputs[1]
        y = node.outputs[0]
        ash, bsh, ysh = T[a].shape, T[b].shape, T[y].shape
        M, K, N = ash[-2], ash[-1], bsh[-1]
        B = prod(ysh[:-2]) if len(ysh) > 2 else 1
        i32 = "bmatmul_i32" in lp.kernel
        bt = int("matmul_nt" in lp.kernel)
        mul, sh = _rq(rq, _mul_shift(K))
        c, n = _core(cores)
        for bb, cb in _tiles(B, tile.get("B", B)):
            for m, cm in _tiles(M, tile.get("M", M)):
                share = (last_share(bb * m, n) * N if bb * m >= n else bb * m * last_share(N, n)) * K
                if i32:
                    call = Call("matmul_i32", (bb, m, N, K, bt, mul, sh), c, n,
                                (_part("bmatmul_i32", n, batch=bb, M=m, N=N, K=K),), share,
                                f"kl_bmatmul_i32 {bb}x{m}x{K} . {K}x{N}" + _who(c, n))
                else:
                    asg, bsg = int(T[a].dtype != "uint8"), int(T[b].dtype != "uint8")
                    wide = int(T[y].dtype == "int16")  # QDQ scores: int16 outputs
                    call = matmul_call(bb, m, N, K, bt, cores, (mul, sh), asg, bsg, wide)
                    share = call.work
                out.append((call, cb * cm))
    elif op in ("LayerNorm", "GELU", "Add", "RequantShift", "Softmax", "Lut"):
        y = node.outputs[0]
        shape = T[y].shape
        C = shape[-1] if shape else 1
        R = max(1, math.prod(shape) // max(C, 1))
        dt = {"uint8": 0, "int8": 1, "int16": 2}
        for r, cr in _tiles(R, tile.get("R", R)):
            out.append((_rowwise_layer_call(node, op, r, C, cores, T, wide, dt), cr))
    elif op == "MHSA":
        out += _mhsa_calls(graph, node, lp, tile, cores)
    return out  # other ops (not tiled, golden-model only) call no kernel-library kernel


def _rowwise_layer_call(node, op: str, r: int, C: int, cores: int, T, wide: bool, dt: dict) -> Call:
    a = node.attrs
    rq = a.get("rq")
    if op == "LayerNorm":
        d = int(a.get("d", 1))
        if a.get("mode") == "qdq":
            xt = dt[T[node.inputs[0]].dtype]
            return rowwise_call("ln_qdq", "layernorm_qdq", r, C, cores,
                                (xt, int(a["in_shift"]), int(a["eps"]), d.bit_length() - 1,
                                 int(a.get("n_levels", 256))), f"kl_layernorm_qdq {r}x{C}", True)
        return rowwise_call("layernorm", "ilayernorm", r, C, cores,
                            (d.bit_length() - 1, int(a.get("n_levels", 256))), f"kl_ilayernorm {r}x{C}", True)
    if op == "GELU":
        fused = int(rq is not None)
        mul, sh = _rq(rq, (1, 14))
        return rowwise_call("gelu", "igelu", r, C, cores, (int(a["b"]), int(a["one"]), fused, mul, sh),
                            f"kl_igelu_{'rq' if fused else 'i32'} {r}x{C}", rq=fused)
    if op == "Add":
        a_, b_ = node.inputs[0], node.inputs[1]
        ma, sa = _rq(a.get("rq_a"), (1, 0))
        mb, sb = _rq(a.get("rq_b"), (1, 0))
        mo, so = _rq(rq, (1 << 15, 16))
        shifts = int(sa > 0) + int(sb > 0) + int(so > 0)
        if wide:
            return rowwise_call("add_x", "add_rq_x", r, C, cores,
                                (dt[T[a_].dtype], dt[T[b_].dtype], dt[T[node.outputs[0]].dtype],
                                 ma, sa, mb, sb, mo, so), f"kl_add_rq_x {r}x{C}", shifts=shifts)
        return rowwise_call("add", "add_rq", r, C, cores,
                            (int(T[a_].dtype != "uint8"), int(T[b_].dtype != "uint8"), ma, sa, mb, sb, mo, so),
                            f"kl_add_rq {r}x{C}", shifts=shifts)
    if op == "RequantShift":
        mul, sh = _rq(rq, (1, 10))
        return rowwise_call("requant", "requant", r, C, cores, (mul, sh), f"kl_requant {r}x{C}")
    if op == "Lut":
        return rowwise_call("lut", "lut8", r, C, cores, (int(T[node.inputs[0]].dtype == "int8"),),
                            f"kl_lut8 {r}x{C}")
    sm = _sm_params(node)
    kind = a.get("kind", "isoftmax")
    if wide:
        return rowwise_call("isoftmax16", "isoftmax_s16", r, C, cores, (sm[1], sm[2], sm[3], sm[4], sm[6]),
                            f"kl_isoftmax_s16 {r}x{C}", True)
    if kind == "isoftmax":
        return rowwise_call("isoftmax", "isoftmax", r, C, cores, (sm[1], sm[2], sm[3], sm[4], sm[6]),
                            f"kl_isoftmax {r}x{C}", True)
    if kind == "itamax":
        return rowwise_call("itamax", "itamax", r, C, cores, (sm[6],), f"kl_itamax {r}x{C}", True)
    return rowwise_call("itapartial", "ita_partial_max", r, C, cores, (sm[5], sm[6]),
                        f"kl_ita_partial_max {r}x{C}", True)


def _mhsa_calls(graph, node, lp, tile, cores: int) -> list[tuple[Call, int]]:
    """Depth-first MHSA (codegen/templates/mhsa.c.mako): per head, pass 1 projects V_h^T (and
    K_h) over the tokens; pass 2, per chunk and head, the query rows (Q_h, or I* in the FWSA
    form) then kl_mhsa_chunk; finally the accumulator is requantized."""
    a = node.attrs
    S, E, P, H = int(a["s"]), int(a["e"]), int(a["p"]), int(a["h"])
    fw = a.get("fwsa")
    x = node.inputs[0]
    xs = int(graph.tensors[x].dtype == "uint8")
    row_term = int(fw is not None and len(node.inputs) > 7 and bool(node.inputs[7]))
    sm = _sm_params(a.get("softmax"))
    XT = int(tile["x"])
    bufs = {b.name: b for b in lp.buffers}
    x_res = "x" in bufs and bufs["x"].bytes == S * E
    acc_local = "acc" in bufs and bufs["acc"].kind == "local"
    rq_of = lambda part: _rq(a[part].attrs.get("rq") if a.get(part) is not None else None,  # noqa: E731
                             _mul_shift(E))
    fl_of = lambda part: rq_axes(_head_rq(a.get(part), H))  # noqa: E731
    rq_s = _rq(fw.rq_scores if fw is not None else a["scores"].attrs.get("rq"), _mul_shift(P))
    wide = int(rq_s is not None and (fw.rq_scores if fw is not None else a["scores"].attrs.get("rq")) is not None
               and (fw.rq_scores if fw is not None else a["scores"].attrs["rq"]).n_levels > 256)
    rq_av = _rq(a["av"].attrs.get("rq"), _mul_shift(S, 147.0))
    out: list[tuple[Call, int]] = []
    for tn, ct in ([(S, 1)] if x_res else _tiles(S, XT)):
        if fw is None:
            out.append((linear_call(tn, P, E, cores, xs=xs, rq=rq_of("k"), rq_flags=fl_of("k")), H * ct))
        out.append((linear_call(tn, P, E, cores, xs=xs, trans=1, rq=rq_of("v"), rq_flags=fl_of("v")),
                    H * ct))                                                                     # V_h^T
    for xn, cx in _tiles(S, XT):
        if fw is None:
            out.append((linear_call(xn, P, E, cores, xs=xs, rq=rq_of("q"), rq_flags=fl_of("q")), H * cx))
            q_signed = int(a["q"].attrs["rq"].signed)
            out.append((chunk_call(xn, S, P, P, E, cores, sm, q_signed=q_signed, wide=wide, rq_s=rq_s,
                                   rq_v=rq_av), H * cx))
        elif not row_term:
            rq_i = _rq(fw.rq_i, _mul_shift(E))
            out.append((linear_call(xn, E, E, cores, xs=xs, rq=rq_i, rq_flags=rq_axes(_per_head(fw.rq_i, H))),
                        H * cx))                                                                 # I* rows
            out.append((chunk_call(xn, S, E, P, E, cores, sm, q_signed=int(fw.rq_i.signed), wide=wide,
                                   rq_s=rq_s, rq_v=rq_av), H * cx))
        else:  # the kernel's FWSA mode computes I* and the row term itself
            out.append((chunk_call(xn, S, E, P, E, cores, sm, fwsa=1, row_term=1, q_signed=1 - xs, wide=wide,
                                   rq_s=rq_s, rq_v=rq_av, rq_i=_rq(fw.rq_i, _mul_shift(E)),
                                   rq_i_cols=int(bool(rq_axes(_per_head(fw.rq_i, H)).get("rq_n")))), H * cx))
    has_bo = int(len(node.inputs) > 8 and bool(node.inputs[8])) if fw is None else \
        int(len(node.inputs) > 6 and bool(node.inputs[6]))
    rq_o = _rq(a["o"].attrs.get("rq") if a.get("o") is not None else None, (1, 10))
    for rows, cr in ([(S, 1)] if acc_local else _tiles(S, XT)):
        out.append((finalize_call(rows, E, cores, has_bo, rq_o), cr))
    return out


def plan_uses(plan, graph, cores: int, name: str, form: str,
              skipped: list[str] | None = None, env: dict | None = None) -> list[Use]:
    """Every kernel call of `plan` (the graph in the plan's schedule form); layers without a
    calibration case are listed in `skipped`. With `env` (every tensor of a golden-model run),
    each call's data has the spread of its layer's real input (`data_stats`)."""
    uses = []
    nodes = {n.name: n for n in graph.nodes}
    for lp in plan.layers:
        try:
            calls = _layer_calls(graph, lp, cores)
        except NotMeasured as exc:
            if skipped is not None:
                skipped.append(f"{name}: {exc}")
            continue
        data = data_stats(graph, nodes[lp.name], env) if env is not None else None
        for call, count in calls:
            if data is not None:
                call = dataclasses.replace(call, data=data)
            uses.append(Use(name, form, lp.name, lp.op, call, count))
    return uses


def data_stats(graph, node, env: dict) -> tuple[int, int, int]:
    """(center, spread, signed) of a layer's first activation input in a golden-model run: the
    harness draws its inputs as center + the mean of two uniform values in [-spread, spread]
    (the same standard deviation: spread = std * sqrt(6))."""
    t = next((t for t in node.inputs if t and not graph.tensors[t].is_const), None)
    if t is None or t not in env:
        return (0, 0, 1)
    v = np.asarray(env[t], dtype=np.float64)
    if v.size == 0:
        return (0, 0, 1)
    return (int(round(float(v.mean()))), max(1, int(round(float(v.std()) * math.sqrt(6)))),
            int(graph.tensors[t].dtype != "uint8"))


def golden_env(plan) -> dict:
    """Every tensor of the plan's network on the inputs `planner run` uses by default (seed 0)."""
    from codegen.project import test_inputs
    from planner.deployed import deployed_graph, planning_graph
    from planner.golden.run import run_graph

    g = deployed_graph(plan)
    return run_graph(planning_graph(plan, g), test_inputs(g, 0), keep_all=True)


def _plan_graph(plan):
    from planner.deployed import deployed_graph, planning_graph
    return planning_graph(plan, deployed_graph(plan))


def example_networks(names: Sequence[str] | None) -> list[Path]:
    """The examples' integer and QDQ graphs (examples/NAME/int.onnx, qdq.onnx)."""
    if not EXAMPLES_DIR.is_dir():
        raise UsageError(f"no example networks here ({EXAMPLES_DIR} is absent): give solved plans "
                         "with --plan OUT/")
    known = sorted({p.parent.name for p in EXAMPLES_DIR.glob("*/*.onnx")
                    if p.name in ("int.onnx", "qdq.onnx")})
    bad = [n for n in (names or []) if n not in known]
    if bad:
        raise UsageError(f"--examples: unknown example {', '.join(bad)} (known: {', '.join(known)})")
    return [p for n in (names or known) for p in (EXAMPLES_DIR / n / "int.onnx", EXAMPLES_DIR / n / "qdq.onnx")
            if p.is_file()]


def _net_name(net: Path) -> str:
    return f"{net.parent.name}/{net.stem}"


def collect_uses(hw_path: Path, hw: HardwareModel, examples: Sequence[str] | None,
                 plan_dirs: Sequence[Path], progress=None,
                 skipped: list[str] | None = None) -> tuple[list[Use], list[str]]:
    """The uses of the given plans, or of the examples solved for `hw_path` (deployed form and
    layer by layer); layers without a calibration case go to `skipped`."""
    from planner.plan import Plan
    uses: list[Use] = []
    names: list[str] = []
    if plan_dirs:
        for d in plan_dirs:
            p = Path(d) / "plan.json" if Path(d).is_dir() else Path(d)
            if not p.is_file():
                raise UsageError(f"--plan {d}: no plan.json there (run planner solve first)")
            try:
                plan = Plan.read(p)
            except (ValueError, KeyError, TypeError) as exc:
                raise PlannerError(f"{p}: not a plan.json of this planner: {exc}") from None
            if plan.hardware.get("name") != hw.name:
                raise UsageError(f"--plan {d}: the plan is for '{plan.hardware.get('name')}', not "
                                 f"'{hw.name}': plans and hardware model must match")
            name = Path(d).name if Path(d).is_dir() else p.parent.name
            uses += plan_uses(plan, _plan_graph(plan), hw.cores, name, "deployed", skipped,
                              golden_env(plan))
            names.append(name)
        return uses, names
    from planner.solve import SolveOptions, solve
    for net in example_networks(examples):
        for form, dft in (("deployed", "auto"), ("layer-by-layer", "off")):
            if progress:
                progress(f"solving {_net_name(net)} for {hw.name} (--dft {dft})")
            sol = solve(net, hw_path, SolveOptions(dft=dft, fwsa="auto"))
            name = f"{_net_name(net)}{'' if dft == 'auto' else ' --dft off'}"
            uses += plan_uses(sol.plan, _plan_graph(sol.plan), hw.cores, name, form, skipped,
                              golden_env(sol.plan))
            names.append(name)
    return uses, names


# ------------------------------------------------------------------------------------------
# the grid: further shapes per kernel family, so that every feature varies
# ------------------------------------------------------------------------------------------

def _pick(items: list, n: int, seed: int) -> list:
    """A deterministic subset of n items (the same on every run)."""
    rng = np.random.default_rng(seed)
    if len(items) <= n:
        return list(items)
    idx = sorted(rng.choice(len(items), size=n, replace=False).tolist())
    return [items[i] for i in idx]


def grid_calls(cores: int) -> list[Call]:
    """Shapes beyond the plans' (deterministic): kl_linear (plain, transposed, int32 out, K
    split), kl_bmatmul (B^T and gathered B), kl_mhsa_chunk (standard, FWSA, FWSA with the row
    term, int16 scores), kl_softmax_rows, and every row-wise kernel."""
    out: list[Call] = []
    S_ = (1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 13, 16, 24, 33, 41, 64, 81)
    N_ = (1, 2, 3, 4, 8, 16, 32, 43, 64)
    K_ = (2, 3, 4, 5, 8, 16, 17, 32, 64)
    grid = [(s, n, k) for s in S_ for n in N_ for k in K_]
    out += [linear_call(s, n, k, cores) for s, n, k in _pick(grid, 180, 1)]
    out += [linear_call(s, n, k, cores, trans=1) for s, n, k in _pick(grid, 60, 2)]
    out += [linear_call(s, n, k, cores, xs=1) for s, n, k in _pick(grid, 20, 3)]
    out += [linear_call(s, n, k, cores, out_i32=1) for s, n, k in _pick(grid, 30, 4)]
    out += [linear_call(s, n, k, cores, rq_flags={"rq_n": 1}) for s, n, k in _pick(grid, 30, 13)]
    out += [linear_call(s, n, k, cores, rq_flags={"rq_s": 1}) for s, n, k in _pick(grid, 15, 14)]
    out += [linear_call(s, n, k, cores, trans=1, rq_flags={"rq_n": 1}) for s, n, k in _pick(grid, 10, 15)]
    out += [linear_call(s, n, 4 * k, cores, kt=k) for s, n, k in _pick(grid, 30, 5) if k >= 2]
    mm = [(b, m, n, k) for b in (1, 2, 4) for m in (1, 3, 6, 8, 13, 32) for n in (2, 8, 16, 33)
          for k in (2, 8, 16, 32, 66)]
    for b, m, n, k in _pick(mm, 40, 6):
        for bt in (0, 1):
            out.append(matmul_call(b, m, n, k, bt, cores, _mul_shift(k)))
    for b, m, n, k in _pick(mm, 12, 16):  # int16 outputs (the QDQ scores' kl_matmul_nt_s8)
        out.append(matmul_call(b, m, n, k, 1, cores, _mul_shift(k), wide=1))
    for b, m, n, k in _pick(mm, 8, 7):
        c, nc = _core(cores)
        out.append(Call("matmul_i32", (b, m, n, k, 1, 1, 12), c, nc,
                        (_part("bmatmul_i32", nc, batch=b, M=m, N=n, K=k),), b * m * n * k,
                        f"kl_bmatmul_i32 {b}x{m}x{k} . {k}x{n}" + _who(c, nc)))
    isoft = (1, 3, -100, 4, 12, 0, 256)  # kind A B C log2 group_width n_levels (an iSoftmax)
    ch = [(r, s, p, e) for r in (1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 24, 33) for s in (16, 32, 66, 81)
          for p in (2, 8, 16, 32) for e in (16, 32, 64)]
    for r, s, p, e in _pick(ch, 40, 8):
        out.append(chunk_call(r, s, p, p, e, cores, isoft))
    for r, s, p, e in _pick(ch, 16, 9):
        out.append(chunk_call(r, s, e, p, e, cores, isoft))
    for r, s, p, e in _pick(ch, 8, 10):
        out.append(chunk_call(r, s, e, p, e, cores, (0, 0, 0, 0, 1, 0, 256), fwsa=1, row_term=1))
    for r, s, p, e in _pick(ch, 8, 16):
        out.append(chunk_call(r, s, e, p, e, cores, (0, 0, 0, 0, 1, 0, 256), fwsa=1, row_term=1,
                              rq_i_cols=1))
    for r, s, p, e in _pick(ch, 12, 11):
        out.append(chunk_call(r, s, p, p, e, cores, isoft, wide=1, rq_s=(1 << 12, 12)))
    rc = [(r, c) for r in (1, 2, 5, 8, 13, 22, 32) for c in (16, 32, 66, 81, 128, 256)]
    for r, c in _pick(rc, 10, 12):
        out.append(softmax_rows_call(r, c, isoft))
    for i, (kind, kernel, params, rows_only, flags) in enumerate((
            ("layernorm", "ilayernorm", (6, 256), True, {}),
            ("ln_qdq", "layernorm_qdq", (1, 8, 1, 6, 256), True, {}),
            ("ln_qdq", "layernorm_qdq", (2, 0, 1, 6, 256), True, {}),
            ("gelu", "igelu", (-1408, 1048, 1, 1 << 13, 28), False, {"rq": 1}),
            ("add", "add_rq", (1, 1, 1 << 16, 16, 1 << 15, 16, 1 << 15, 16), False, {"shifts": 3}),
            ("add", "add_rq", (1, 1, 1 << 16, 16, 1, 0, 1 << 15, 16), False, {"shifts": 2}),
            ("add", "add_rq", (1, 1, 1, 0, 1, 0, 1 << 15, 13), False, {"shifts": 1}),
            ("add_x", "add_rq_x", (1, 2, 2, 1 << 16, 16, 1 << 15, 16, 1 << 15, 16), False, {"shifts": 3}),
            ("add_x", "add_rq_x", (1, 1, 1, 1 << 16, 16, 1 << 15, 16, 1 << 15, 16), False, {"shifts": 3}),
            ("add_x", "add_rq_x", (1, 1, 2, 1, 0, 1, 0, 1 << 15, 13), False, {"shifts": 1}),
            ("add_x", "add_rq_x", (2, 1, 2, 1, 0, 1 << 15, 16, 1 << 15, 13), False, {"shifts": 2}),
            ("requant", "requant", (1 << 12, 16), False, {}),
            ("finalize", "linear_finalize", (1, 1 << 12, 16), False, {}),
            ("lut", "lut8", (1,), False, {}),
            ("isoftmax", "isoftmax", isoft[1:5] + (256,), True, {}),
            ("isoftmax16", "isoftmax_s16", (3, -100, 4, 12, 256), True, {}))):
        for r, c in _pick(rc, 8, 20 + i):
            if kind == "finalize":
                out.append(finalize_call(r, c, cores, 1, (1 << 12, 16)))
                continue
            out.append(rowwise_call(kind, kernel, r, c, cores, params,
                                    f"{kernel} {r}x{c} (grid)", rows_only, **flags))
    return out


# ------------------------------------------------------------------------------------------
# measurement on QEMU
# ------------------------------------------------------------------------------------------

def case_header(calls: Sequence[Call], arena: int) -> str:
    rows = []
    for c in calls:
        vals = [KIND[c.kind], c.core, c.n_cores, *c.data, *c.params]
        if len(vals) > CASE_WIDTH:
            raise AssertionError(f"case row too long: {c}")
        rows.append("{" + ",".join(str(int(v)) for v in vals + [0] * (CASE_WIDTH - len(vals))) + "}")
    return (f"#define CAL_N {len(calls)}\n#define CAL_W {CASE_WIDTH}\n#define CAL_ARENA {arena}u\n"
            f"static const int32_t cal_cases[{len(calls)}][{CASE_WIDTH}] = {{\n"
            + ",\n".join(rows) + "\n};\n")


def _case_bytes(c: Call) -> int:
    """An upper bound of the harness arena a case allocates."""
    p = c.params
    if c.kind == "empty":
        return 0
    if c.kind == "linear":
        S, N, K = p[0], p[1], p[2]
        return S * K + N * K + 4 * N + 4 * S * N * 2 + 12 * K * c.n_cores + 4096
    if c.kind in ("matmul", "matmul_i32"):
        B, M, N, K = p[:4]
        return 4 * (B * M * K + B * N * K) + B * M * N + 12 * K * c.n_cores + 4096
    if c.kind == "chunk":
        rows, S, D, P, E = p[:5]
        per_core = 12 * max(D, S, P) + 1024 + 6 * (2 * S + P + D + 8) + 64
        return rows * D + D * D + S * D + P * S + E * P + 4 * rows * E + per_core * c.n_cores + 8192
    rows, cols = p[0], p[1]
    return 4 * rows * cols * 2 + 4 * cols * max(c.n_cores, 1) + 8192


def measure(calls: Sequence[Call], target: str, timeout: float = 900) -> tuple[dict[Call, int], int]:
    """Instructions of every call on `target` (markers subtracted), and the markers' own count."""
    import kernel_lib
    from planner import toolchain as tc

    if not tc.available(target):
        miss = tc.missing_tools(target)
        pkg = "gcc-arm-none-eabi qemu-system-arm" if "m" in TARGETS[target] else \
            "gcc-riscv64-unknown-elf qemu-system-misc"
        raise PlannerError(f"{target}: missing {', '.join(miss)}: install the Debian packages {pkg} "
                           f"(apt-get install {pkg})")
    reason = tc.icount_unavailable_reason(target)
    if reason:
        raise PlannerError(f"cannot count instructions: {reason}")
    cases = [Call("empty", (), 0, 1, (), 0, "markers only")] + list(calls)
    arena = max(_case_bytes(c) for c in cases) + 65536
    arena = (arena + 4095) // 4096 * 4096
    limit = 3 << 20 if target != "qemu-rv32" else 12 << 20
    if arena > limit:
        raise PlannerError(f"a kernel call needs {arena:,} B of test data, more than the "
                           f"{limit:,} B the {target} harness has: {max(cases, key=_case_bytes).label}")
    with tempfile.TemporaryDirectory(prefix="planner-calib-") as d:
        Path(d, "calib_cases.h").write_text(case_header(cases, arena))
        try:
            exe = tc.build([HARNESS, *kernel_lib.sources()], [kernel_lib.INCLUDE_DIR, d], target, d,
                           name="calib")
            res = tc.run(exe, target, timeout=timeout, icount=True)
        except tc.ToolchainError as exc:
            raise PlannerError(f"{target}: {exc}") from None
    if res.timed_out:
        raise PlannerError(f"{target}: the calibration program did not finish in {timeout:.0f} s")
    if res.exit_code != 0 or f"DONE {len(cases)}" not in res.stdout:
        raise PlannerError(f"{target}: the calibration program failed (exit {res.exit_code}"
                           f"{': a fault' if res.faulted else ''}): {res.stdout[-300:]}{res.stderr[-300:]}")
    if res.icount_errors:
        raise PlannerError(f"{target}: instruction count: {'; '.join(res.icount_errors)}")
    regions = res.icount_regions or []
    if len(regions) != len(cases):
        raise PlannerError(f"{target}: {len(regions)} counted regions for {len(cases)} kernel calls")
    base = regions[0]
    return {c: r - base for c, r in zip(cases[1:], regions[1:])}, base


# ------------------------------------------------------------------------------------------
# fitting
# ------------------------------------------------------------------------------------------

def nnls(A: np.ndarray, b: np.ndarray, iters: int = 0) -> np.ndarray:
    """min ||A x - b|| subject to x >= 0 (Lawson-Hanson active set)."""
    m, n = A.shape
    x = np.zeros(n)
    passive = np.zeros(n, bool)
    w = A.T @ (b - A @ x)
    tol = 10 * max(m, n) * np.finfo(float).eps * np.linalg.norm(A, 1) * max(1.0, np.abs(b).max(initial=0))
    for _ in range(iters or 3 * n + 10):
        if passive.all() or w[~passive].max(initial=-1) <= tol:
            break
        j = int(np.argmax(np.where(passive, -np.inf, w)))
        passive[j] = True
        while True:
            z = np.zeros(n)
            z[passive] = np.linalg.lstsq(A[:, passive], b, rcond=None)[0]
            if (z[passive] > 0).all():
                x = z
                break
            neg = passive & (z <= 0)
            alpha = np.min(x[neg] / (x[neg] - z[neg]))
            x = x + alpha * (z - x)
            passive &= x > tol
            x[~passive] = 0
        w = A.T @ (b - A @ x)
    return x


def fit_counts(rows: Sequence[dict[str, int]], y: Sequence[float], columns: Sequence[str],
               weights: Sequence[float] | None = None) -> dict[str, float]:
    """Non-negative least squares of y on the counts, each row weighted by 1/y (relative error),
    times `weights`."""
    A = np.array([[r.get(c, 0) for c in columns] for r in rows], float)
    yv = np.asarray(y, float)
    w = 1.0 / np.maximum(yv, 1.0) * (np.asarray(weights, float) if weights is not None else 1.0)
    scale = np.maximum(np.abs(A * w[:, None]).max(axis=0), 1e-12)  # column scaling: conditioning
    x = nnls(A * w[:, None] / scale, yv * w) / scale
    return dict(zip(columns, x.tolist()))


LAYER_WEIGHT = 4  # a layer of an example plan counts as much as this many single calls


def layer_rows(uses: Sequence[Use], measured: dict[Call, int], isa: str
               ) -> list[tuple[dict[Feature, int], int]]:
    """Per layer of the plans: (the feature counts of all its calls, their measured
    instructions), each call as often as the layer runs it; a layer with a call that was not
    measured (--kernels: another key's) is left out."""
    per: dict[tuple[str, str], list] = {}
    partial: set[tuple[str, str]] = set()
    for u in uses:
        acc = per.setdefault((u.plan, u.layer), [defaultdict(int), 0])
        if u.call not in measured:
            partial.add((u.plan, u.layer))
            continue
        for f, v in u.call.counts(isa).items():
            acc[0][f] += u.count * v
        acc[1] += u.count * measured[u.call]
    return [(dict(c), m) for k, (c, m) in per.items() if k not in partial]


def fit_kernels(calls: Sequence[Call], measured: dict[Call, int], isa: str, keys: Sequence[str],
                fixed: dict[Feature, float], layers: Sequence[tuple[dict, int]] = ()
                ) -> dict[Feature, float]:
    """Instructions per count of every feature of `keys` that some call counts, fitted on every
    call and on every layer of the plans (`layer_rows`, weighted LAYER_WEIGHT: the layers are what
    the estimate must get right); the other features' contributions (`fixed`, instructions per
    count) are subtracted first."""
    rows, y, cols, wts = [], [], set(), []
    items = [(c.counts(isa), measured[c], 1.0) for c in calls]
    items += [(cnt, m, float(LAYER_WEIGHT)) for cnt, m in layers]
    for cnt, meas, wt in items:
        free = {f: v for f, v in cnt.items() if f[0] in keys}
        if not free:
            continue
        rest = sum(v * fixed.get(f, 0.0) for f, v in cnt.items() if f[0] not in keys)
        rows.append({f"{k}.{f}": v for (k, f), v in free.items()})
        y.append(max(meas - rest, 1.0))
        wts.append(wt)
        cols |= {f"{k}.{f}" for (k, f) in free}
    if not rows:
        return {}
    res = fit_counts(rows, y, sorted(cols), wts)
    return {tuple(k.split(".", 1)): v for k, v in res.items()}  # type: ignore[misc]


def predicted(call: Call, isa: str, coefs: dict[Feature, float]) -> float:
    return sum(v * coefs.get(f, 0.0) for f, v in call.counts(isa).items())


# ------------------------------------------------------------------------------------------
# statistics and the hardware model
# ------------------------------------------------------------------------------------------

def round_sig(v: float, digits: int = DIGITS) -> float:
    if v == 0:
        return 0.0
    return round(v, digits - 1 - int(math.floor(math.log10(abs(v)))))


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _assumed_i2c(hw: HardwareModel) -> bool:
    return hw.sources.get("insn_to_cycle", "assumed").strip().lower().startswith("assumed")


def _stand_in(target: str) -> str:
    if target != "qemu-rv32":
        return ""
    return ("; RV32IMC stand-in for GAP9 without XpulpV2 (portable C path: no SIMD dot products, "
            "no hardware loops), so it overstates GAP9's instructions")


def key_source(hw: HardwareModel, target: str, command: str, fit: KeyFit, n_calls: int) -> str:
    feats = ", ".join(f"{f} {_fmt(fit.coefs[f])}" for f in fit.coefs if f in fit.measured)
    kept = [f for f in fit.coefs if f not in fit.measured]
    cores = f"; per core: the busiest core's share of {hw.cores} cores" if hw.cores > 1 else ""
    return (f"measured: QEMU {target} instruction count, `{command}`: non-negative least-squares fit "
            f"(relative error) of the instructions of {n_calls} kernel calls in the calibration "
            f"harness (the example plans' calls, each plan layer's sum weighted {LAYER_WEIGHT}, and a "
            f"grid of shapes) on the feature counts of kernel_lib/descriptions.py; instructions per "
            f"count: {feats}"
            + (f"; not counted by any call, kept: {', '.join(kept)}" if kept else "")
            + f"; the {fit.calls} calls counting {fit.key}: fitted/measured "
            f"{fit.ratio[0]:.3f}..{fit.ratio[1]:.3f} (furthest: {fit.worst[0]}, {fit.worst[1]:.3f})"
            f"{cores}{_stand_in(target)}; x insn_to_cycle {hw.insn_to_cycle:g}"
            f"{' (assumed)' if _assumed_i2c(hw) else ''} = cycles per count")


def calibrate(hw_spec: str | Path, target: str, *, examples: Sequence[str] | None = None,
              plan_dirs: Sequence[Path] = (), keys: Sequence[str] | None = None, command: str,
              overhead: bool = True, progress=None) -> Calibration:
    hw_path = resolve_hw_path(hw_spec)
    hw = load_hw_model(hw_path)
    if target not in TARGETS:
        raise UsageError(f"--target: expected one of {', '.join(TARGETS)}, got {target!r}")
    if TARGETS[target] != hw.qemu_target.replace("x8", ""):
        own = f"qemu-{hw.qemu_target.replace('x8', '')}"
        raise UsageError(f"{hw_path}: the model's QEMU stand-in (qemu_target) is "
                         f"'{hw.qemu_target}', not {target}: calibrate it with --target {own}")
    keys = list(keys or KEYS)
    isa = hw.isa_path
    skipped: list[str] = []
    uses, plans = collect_uses(hw_path, hw, examples, plan_dirs, progress, skipped)
    grid = [] if plan_dirs else grid_calls(hw.cores)
    calls = sorted({u.call for u in uses} | set(grid), key=lambda c: (c.kind, c.label))
    calls = [c for c in calls if any(f[0] in keys for f in c.counts(isa))]
    if not calls:
        raise PlannerError(f"the plans call no kernel priced at {', '.join(keys)}: nothing to measure")
    if progress:
        progress(f"measuring {len(calls)} kernel calls on {target}")
    measured, base = measure(calls, target)
    i2c = hw.insn_to_cycle
    fixed = {(k, f): v / i2c for k, feats in hw.kernel_cost.items() for f, v in feats.items()}
    coefs = fit_kernels(calls, measured, isa, keys, fixed, layer_rows(uses, measured, isa))
    cal = Calibration(hw, target, command, {}, uses, grid, measured, base, plans, skipped)
    allc = dict(fixed)
    allc.update(coefs)
    for key in keys:
        feats = kd.cost_features(key, isa)
        mine = [c for c in calls if any(f[0] == key for f in c.counts(isa))]
        if not mine:
            continue
        got = {f: coefs.get((key, f), fixed[(key, f)]) for f in feats}
        measured_f = {f for f in feats if (key, f) in coefs}
        ratios = [(predicted(c, isa, allc) / max(measured[c], 1), c.label) for c in mine]
        worst = max(ratios, key=lambda t: abs(t[0] - 1))
        new = {f: round_sig(v * i2c) if f in measured_f else hw.kernel_cost[key][f] for f, v in got.items()}
        fit = KeyFit(key, got, measured_f, dict(hw.kernel_cost[key]), new, len(mine),
                     (min(r for r, _ in ratios), max(r for r, _ in ratios)), (worst[1], worst[0]))
        fit.source = key_source(hw, target, command, fit, len(calls))
        cal.fits[key] = fit
        for f, v in new.items():
            cal.values[f"kernel_cost.{key}.{f}"] = v
        cal.sources[f"kernel_cost.{key}"] = fit.source
    if overhead and keys == list(KEYS):
        calibrate_overhead(cal, hw_path, examples, plan_dirs, progress)
    return cal


# ------------------------------------------------------------------------------------------
# stage 2: the generated code's own work, and the QEMU DMA port
# ------------------------------------------------------------------------------------------

PORT_FUNCTIONS = {
    "qemu-m7": ("nr_dma_start", "nr_row"), "qemu-m4": ("nr_dma_start", "nr_row"),
    "qemu-rv32": ("nr_dma_start", "nr_copy", "nr_copy_2d", "pi_cl_dma_cmd", "pi_cl_dma_cmd_2d",
                  "pi_cl_dma_cmd_wait", "pi_ram_read", "pi_cl_ram_read", "pi_cl_ram_read_2d",
                  "pi_cl_ram_read_wait"),
}


def _is_kernel_code(name: str) -> bool:
    """The kernel library's functions and the libgcc helpers they call (64-bit division): what
    the harness counts as a kernel call."""
    return name.startswith("kl_") or name.startswith("__")


def _model_with(hw_path: Path, values: dict[str, float], sources: dict[str, str], dest: Path) -> Path:
    dest.write_text(updated_text(hw_path, values, sources), encoding="utf-8")
    load_hw_model(dest)
    return dest


def calibrate_overhead(cal: Calibration, hw_path: Path, examples: Sequence[str] | None,
                       plan_dirs: Sequence[Path], progress=None) -> None:
    """Stage 2 and 3 (module doc): run the deployed example plans (solved with the new kernel
    figures) on the target, fit overhead_cycles and qemu_dma_port, check every layer."""
    from planner import qemu_estimate as qe
    from planner.plan import Plan
    from planner.run import RunOptions, count_functions, run

    hw, target = cal.hw, cal.target
    i2c = hw.insn_to_cycle
    with tempfile.TemporaryDirectory(prefix="planner-calib-run-") as tmp:
        model = _model_with(hw_path, cal.values, cal.sources, Path(tmp) / f"{hw.name}.json")
        outs: list[tuple[str, Path]] = []
        if plan_dirs:
            outs = [(Path(d).name, Path(d)) for d in plan_dirs]
        else:
            from planner.cli import main as planner_main
            tight = [[], ["--l1", TIGHT_L1]] if "L1" in hw.levels else [[]]
            for net in example_networks(examples):
                for extra in tight:
                    name = _net_name(net) + (f" --l1 {extra[1]}" if extra else "")
                    out = Path(tmp) / net.parent.name / (net.stem + ("-tight" if extra else ""))
                    if progress:
                        progress(f"solving and running {name} on {target}")
                    if planner_main(["solve", str(net), str(model), "-o", str(out), "-q", *extra]) != 0:
                        raise PlannerError(f"{net}: planner solve {' '.join(extra)} failed with the "
                                           "calibrated kernel figures")
                    outs.append((name, out))
        layer_runs: list[LayerRun] = []
        for name, out in outs:
            plan = Plan.read(out / "plan.json")
            res = run(out, RunOptions(target=target))
            if not res.exact:
                raise PlannerError(f"{name} on {target}: not bit-exact ({res.mismatches} mismatches)")
            kern = count_functions(out, target, _is_kernel_code, "-kernels")
            port = count_functions(out, target, lambda n: n in PORT_FUNCTIONS[target], "-port")
            hwm = load_hw_model(model)
            cores = int(plan.hardware.get("cores", 1))
            seq = cores if target == "qemu-rv32" and cores > 1 else 1
            for (lp, v, ev), descs, (tot, kin), (_, pin) in zip(qe.layer_evaluations(plan, hwm),
                                                               qe.layer_descs(plan), kern["layers"],
                                                               port["layers"]):
                layer_runs.append(LayerRun(name, lp.name, lp.op, tot, kin or 0, pin or 0,
                                           qe.overhead_features(ev.overhead_counts, seq),
                                           qe.port_counts(v, ev, descs, lp.loop_order)))
        port_rows = [r for r in layer_runs if any(r.port_counts.values())]
        ov_rows = layer_runs
        cal.port = fit_counts([r.port_counts for r in port_rows], [max(r.port, 1) for r in port_rows],
                              QEMU_PORT_FIELDS) if port_rows else {}
        ov_y = [max(r.total - r.kernels - r.port, 1) for r in ov_rows]
        ov_cols = [k for k in OVERHEAD_FIELDS if any(r.overhead_counts.get(k, 0) for r in ov_rows)]
        cal.overhead = fit_counts([r.overhead_counts for r in ov_rows], ov_y, ov_cols)
        n_layers = len(layer_runs)
        where = f"the {n_layers} layers of the deployed example plans ({', '.join(n for n, _ in outs)})"
        conv = f"x insn_to_cycle {i2c:g}{' (assumed)' if _assumed_i2c(hw) else ''}"
        for k in OVERHEAD_FIELDS:
            if k in cal.overhead:
                cal.values[f"overhead_cycles.{k}"] = round_sig(cal.overhead[k] * i2c)
                cal.sources[f"overhead_cycles.{k}"] = (
                    f"measured: QEMU {target} instruction count, `{cal.command}`: instructions of the "
                    f"generated code outside the kernel library and the DMA port, least-squares fit "
                    f"over {where} on their overhead counts: {_fmt(cal.overhead[k])} instructions per "
                    f"{k}{_stand_in(target)}; {conv}")
            else:
                cal.sources[f"overhead_cycles.{k}"] = (
                    f"assumed: not measured (no {k} in the example plans on {target}); kept at "
                    f"{hw.overhead_cycles[k]:g}")
        for k in QEMU_PORT_FIELDS:
            if cal.port and any(r.port_counts.get(k) for r in port_rows):
                cal.values[f"qemu_dma_port.{k}"] = round_sig(cal.port[k])
                cal.sources[f"qemu_dma_port.{k}"] = (
                    f"measured: QEMU {target} instruction count, `{cal.command}`: instructions in the "
                    f"QEMU build's DMA port ({', '.join(PORT_FUNCTIONS[target][:2])}...), least-squares "
                    f"fit over the {len(port_rows)} layers with transfers of {where.split(' (')[0][4:]}: "
                    f"{_fmt(cal.port[k])} per {k.replace('_', ' ')} (instructions; QEMU only: on the chip "
                    f"the DMA copies){_stand_in(target)}")
            else:
                cal.sources[f"qemu_dma_port.{k}"] = (
                    f"assumed: not measured (the example plans on {target} make no DMA transfer); "
                    f"kept at {hw.qemu_dma_port[k]:g}")
        # 3. check: every layer estimated as a QEMU run with the fitted figures (same tiling)
        model = _model_with(hw_path, cal.values, cal.sources, Path(tmp) / f"{hw.name}.json")
        hwm = load_hw_model(model)
        by_plan: dict[str, list[LayerRun]] = defaultdict(list)
        for r in layer_runs:
            by_plan[r.plan].append(r)
        for name, out in outs:
            plan = Plan.read(out / "plan.json")
            for r, e in zip(by_plan[name], qe.estimate(plan, target, hwm)):
                r.estimate = e.total
        cal.runs = layer_runs
        dev = cal.deviation
        worst = max(layer_runs, key=lambda r: abs(r.ratio - 1))
        cal.values["qemu_estimate_deviation"] = round(dev, 4)
        cal.sources["qemu_estimate_deviation"] = (
            f"measured: QEMU {target} instruction count, `{cal.command}`: the largest |estimate / "
            f"measured - 1| of the cost model's estimate of the QEMU run (planner/qemu_estimate.py) "
            f"over {where}: {dev:.3f} ({worst.plan} {worst.layer}: {worst.ratio:.3f}); in instructions, "
            f"before insn_to_cycle{_stand_in(target)}")


def updated_text(path: Path, values: dict[str, float], sources: dict[str, str]) -> str:
    """The hardware model file with `values` (dotted paths) and `sources` written (key order and
    formatting kept)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for dotted, v in values.items():
        parts = dotted.split(".")
        d = data
        for p in parts[:-1]:
            d = d.setdefault(p, {})
        d[parts[-1]] = v
    src = data["_source"]
    for dotted in sources:  # a source for an object replaces the sources of its fields
        for k in [k for k in src if k.startswith(dotted + ".")]:
            del src[k]
    src.update(sources)
    # an object's own source goes once each of its fields has one (the per-field sources of
    # overhead_cycles and qemu_dma_port replace the object's "assumed" one)
    for parent in {d.rsplit(".", 1)[0] for d in sources if "." in d}:
        obj = data
        for p in parent.split("."):
            obj = obj.get(p) if isinstance(obj, dict) else None
        if parent in src and isinstance(obj, dict) and all(f"{parent}.{k}" in src for k in obj):
            del src[parent]
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def updated_model_text(path: Path, cal: Calibration) -> str:
    return updated_text(path, cal.values, cal.sources)


def layer_table(cal: Calibration, form: str = "deployed") -> list[tuple[str, str, str, int, int]]:
    """Per layer of the plans of `form`: (plan, layer, op, measured kernel instructions in the
    harness, the same calls priced with the fitted figures in instructions); with --kernels, the
    calls of those keys only."""
    isa = cal.hw.isa_path
    coefs = {(k, f): v / cal.hw.insn_to_cycle for k, feats in cal.hw.kernel_cost.items() for f, v in feats.items()}
    for key, fit in cal.fits.items():
        for f, v in fit.coefs.items():
            coefs[(key, f)] = v
    per: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
    for u in cal.uses:
        if u.form != form or u.call not in cal.measured:  # --kernels: the measured calls only
            continue
        acc = per[(u.plan, u.layer, u.op)]
        acc[0] += u.count * cal.measured[u.call]
        acc[1] += u.count * predicted(u.call, isa, coefs)
    return [(p, l, o, int(m), int(round(e))) for (p, l, o), (m, e) in per.items()]


def command_line(hw_spec: str | Path, target: str, examples: Iterable[str] | None,
                 plan_dirs: Sequence[Path], keys: Sequence[str] | None) -> str:
    """The command as recorded in the `_source` (no absolute paths of this machine)."""
    p = resolve_hw_path(hw_spec)
    try:
        shown = str(p.resolve().relative_to(HW_DIR.parent))
    except ValueError:
        shown = p.name
    cmd = f"planner calibrate {shown} --target {target}"
    if examples:
        cmd += f" --examples {','.join(examples)}"
    for d in plan_dirs:
        cmd += f" --plan {Path(d).name}"
    if keys:
        cmd += f" --kernels {','.join(keys)}"
    return cmd


def parse_keys(text: str | None) -> list[str] | None:
    if not text:
        return None
    keys = [k.strip() for k in text.split(",") if k.strip()]
    bad = [k for k in keys if k not in KEYS]
    if bad or not keys:
        raise UsageError(f"--kernels: unknown kernel_cost key {', '.join(bad) or repr(text)} "
                         f"(known: {', '.join(KEYS)})")
    return keys

