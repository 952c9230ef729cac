"""`planner calibrate HW.json --target qemu-m7|qemu-m4|qemu-rv32`: measure the kernel library on
QEMU at the shapes the examples' plans use and write the measured figures into the hardware
model's `kernel_efficiency`.

1. Shapes. The example networks (examples/*/int.onnx) are solved for the hardware model twice:
   as `planner solve` plans them (`--dft auto`, the deployed form) and layer by layer
   (`--dft off`, which is where the attention MatMuls and the Softmax layers appear). Every
   layer of every plan is turned into the kernel calls the generated code makes for its tiles
   (`plan_calls`): a Linear tile is one kl_linear call (with a K split: the int32 chunks plus
   kl_linear_finalize), a depth-first MHSA layer is its K/V/Q (or V/I*) projections per head,
   kl_mhsa_chunk per chunk and head and the final requantization, and so on, each with the
   number of times the plan runs it. On a multi-core model a call runs the busiest core's share
   (kl_split gives the last core ceil(rows / cores)), which is what the cost model prices.
2. Measurement. Every distinct call runs once between prof_start/prof_stop in one program
   (planner/qemu/calib_harness.c) on the QEMU target; the project's plugin counts its guest
   instructions (deterministic; the markers' own instructions, measured by an empty region, are
   subtracted). kl_mhsa_chunk's table softmax is measured alone at the same rows x S
   (kl_softmax_rows) and priced at `softmax`, the rest at `mhsa_chunk`, as the cost model splits
   them (planner/tiling/ops.py).
3. Statistic. Per kernel_efficiency key: the work-weighted figure over all calls of the plans,
   sum(MACs) / sum(instructions) (MAC kernels) or sum(instructions) / sum(elements), i.e. the one
   figure that reproduces the plans' total kernel instructions exactly. The calls of the deployed
   form decide; a key without calls there (matmul) takes those of the layer-by-layer form. The
   spread is reported as the range of the per-shape figures.
4. Cycles. The stored figure is the measured one converted through the model's `insn_to_cycle`
   (MAC/cycle = MAC/instruction / insn_to_cycle; cycles/element = instructions/element x
   insn_to_cycle), which stays as it is (assumed); the `_source` of each figure says so, and
   planner.cost keeps such figures at the assumed uncertainty while insn_to_cycle is assumed.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from planner.errors import PlannerError, UsageError
from planner.hw import ELEMENTWISE_KERNELS, HW_DIR, MAC_KERNELS, HardwareModel, load_hw_model, resolve_hw_path

REPO = Path(__file__).resolve().parents[1]
EXAMPLES_DIR = REPO / "examples"
HARNESS = Path(__file__).resolve().parent / "qemu" / "calib_harness.c"
TARGETS = {"qemu-m7": "m7", "qemu-m4": "m4", "qemu-rv32": "rv32"}
KEYS = MAC_KERNELS + ELEMENTWISE_KERNELS
DIGITS = 4  # significant digits of a stored figure

# harness case kinds (calib_harness.c)
KIND = {"empty": 0, "linear": 1, "matmul": 2, "matmul_i32": 3, "layernorm": 4, "gelu": 5, "add": 6,
        "requant": 7, "isoftmax": 8, "itamax": 9, "itapartial": 10, "smrows": 11, "chunk": 12,
        "finalize": 13}
CASE_WIDTH = 24  # int32 words per case row: kind, core, n_cores, parameters


@dataclass(frozen=True)
class Call:
    """One kernel call of the generated code, as the harness runs it."""

    key: str                  # the kernel_efficiency key that prices it
    kind: str                 # harness case kind (KIND)
    params: tuple[int, ...]   # the case's parameters (calib_harness.c)
    core: int                 # the measured core ...
    n_cores: int              # ... of the cores the call is split over
    work: int                 # MACs or elements of that core's share
    label: str
    sub: "Call | None" = None  # measured separately, its instructions belong to another key
                               # (the table softmax inside kl_mhsa_chunk)


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
class KeyResult:
    key: str
    unit: str                 # "MAC/instruction" or "instructions/element"
    measured: float           # the work-weighted figure over the uses
    per_shape: list[tuple[float, Call]]   # (figure, call) per distinct call
    calls: int                # number of calls in the plans
    work: int
    insns: int
    form: str                 # which plans' uses decided
    previous: float
    new: float                # measured, converted through insn_to_cycle and rounded
    source: str
    other: float | None = None  # the same figure over the layer-by-layer plans (not stored)

    @property
    def spread(self) -> tuple[float, float]:
        vals = [v for v, _ in self.per_shape]
        return min(vals), max(vals)


@dataclass
class Calibration:
    hw: HardwareModel
    target: str
    command: str
    results: dict[str, KeyResult]
    uses: list[Use]
    measured: dict[Call, int]         # instructions per call (markers subtracted)
    marker_insns: int
    plans: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # layers without a calibration case

    def attributed(self, call: Call) -> int:
        """The instructions of `call` its key is charged with (its sub-call's removed)."""
        return self.measured[call] - (self.measured[call.sub] if call.sub else 0)


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


def _core(n_cores: int) -> tuple[int, int]:
    return max(n_cores, 1) - 1, max(n_cores, 1)


def _who(core: int, n: int) -> str:
    return f", core {core + 1}/{n}" if n > 1 else ""


def linear_call(S: int, N: int, K: int, cores: int, *, kt: int = 0, xs: int = 0, trans: int = 0,
                out_i32: int = 0, bias: int = 1) -> Call:
    """kl_linear_* on S x K -> N (kt: K chunk of a K split, 0 = none); rows split when
    S >= cores, else output features."""
    c, n = _core(cores)
    share = last_share(S, n) * N if S >= n else S * last_share(N, n)
    mul, sh = _mul_shift(K)
    fn = f"kl_linear{'_t' if trans else ''}_{'u8' if xs else 's8'}"
    if kt:
        label = f"{fn}_i32 x{-(-K // kt)} + finalize {S}x{K}->{N} (K chunks of {kt})"
    else:
        label = f"{fn}{'_i32' if out_i32 else ''} {S}x{K}->{N}"
    return Call("linear", "linear", (S, N, K, kt, xs, trans, out_i32, bias, mul, sh), c, n,
                share * K, label + _who(c, n))


def _rows_else_cols(rows: int, cols: int, n: int) -> int:
    return last_share(rows, n) * cols if rows >= n else rows * last_share(cols, n)


def _sm_params(sm) -> tuple[int, ...]:
    """kind A B C log2 group_width n_levels of a Softmax node (None: no softmax)."""
    from kernel_lib import descriptions as kd
    if sm is None:
        return (0, 0, 0, 0, 1, 0, 256)
    a = sm.attrs
    return (kd.SOFTMAX_KINDS[a.get("kind", "isoftmax")], int(a.get("coeff_a", 0)), int(a.get("coeff_b", 0)),
            int(a.get("coeff_c", 0)), int(a.get("log2", 1)), int(a.get("group_width", 0)),
            int(a.get("n_levels", 256)))


def softmax_rows_call(rows: int, L: int, sm: tuple[int, ...]) -> Call:
    """kl_softmax_rows on one core's rows (the softmax inside kl_mhsa_chunk)."""
    return Call("softmax", "smrows", (rows, L, *sm), 0, 1, rows * L,
                f"kl_softmax_rows {rows}x{L} (inside kl_mhsa_chunk)")


def chunk_call(rows: int, S: int, D: int, P: int, E: int, cores: int, sm: tuple[int, ...], *,
               fwsa: int = 0, row_term: int = 0, q_signed: int = 1) -> Call:
    """kl_mhsa_chunk on a chunk of `rows` query rows (split over min(rows, cores) cores)."""
    c, n = _core(min(rows, cores))
    share = last_share(rows, n)
    macs = share * (S * D + S * P + P * E + (D * D if fwsa else 0) + (D if row_term else 0))
    ms, ss = _mul_shift(D)
    mv, sv = _mul_shift(S, 147.0)
    sub = softmax_rows_call(share, S, sm) if sm[0] else None
    label = (f"kl_mhsa_chunk rows={rows} S={S} D={D} P={P} E={E}{' FWSA' if fwsa else ''}"
             f"{' row term' if row_term else ''}" + _who(c, n))
    return Call("mhsa_chunk", "chunk", (rows, S, D, P, E, fwsa, row_term, *sm, q_signed, ms, ss, mv, sv),
                c, n, macs, label, sub)


def finalize_call(rows: int, cols: int, cores: int, bias: int) -> Call:
    """The MHSA writeout (nr_finalize_rows: rows split across cores, kl_linear_finalize in place)."""
    share = last_share(rows, cores)
    return Call("requant", "finalize", (share, cols, bias, 1, 10), 0, 1, share * cols,
                f"kl_linear_finalize {share}x{cols} (MHSA writeout{_who(cores - 1, cores)})")


class NotMeasured(Exception):
    """A layer whose kernel has no calibration case (reported, not measured)."""


# the kernel-library functions the harness runs, per op (plan.json `kernel`, " / "-separated)
_FUNCTIONS = {
    "LayerNorm": {"kl_ilayernorm"}, "GELU": {"kl_igelu_i32", "kl_igelu_rq"}, "Add": {"kl_add_rq"},
    "RequantShift": {"kl_requant"}, "Softmax": {"kl_isoftmax", "kl_itamax", "kl_ita_partial_max"},
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
        ok = dtypes <= ({"int32", *_8BIT} if "kl_bmatmul_i32" in fns else set(_8BIT))
    elif lp.op in _FUNCTIONS:
        allowed = set(_8BIT) | ({"int32"} if lp.op in ("GELU", "RequantShift") else set())
        ok = fns <= _FUNCTIONS[lp.op] and dtypes <= allowed
    elif lp.op == "MHSA":
        rq = node.attrs["scores"].attrs.get("rq") if node.attrs.get("scores") is not None else None
        fw = node.attrs.get("fwsa")
        if fw is not None:
            rq = fw.rq_scores
        ok = (rq is None or rq.n_levels <= 256) and T[node.inputs[0]].dtype in _8BIT
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
    if op == "Linear":
        S, N, K = lp.dims["S"], lp.dims["N"], lp.dims["K"]
        x = node.inputs[0]
        bias = int(len(node.inputs) > 2 and bool(node.inputs[2]))
        xs = int(T[x].dtype == "uint8")
        out_i32 = int(node.attrs.get("rq") is None)
        kt = tile["K"] if tile["K"] < K else 0
        for s, cs in _tiles(S, tile["S"]):
            for n_, cn in _tiles(N, tile["N"]):
                out.append((linear_call(s, n_, K, cores, kt=kt, xs=xs, out_i32=out_i32, bias=bias), cs * cn))
    elif op == "MatMul":
        from math import prod
        a, b = node.inputs[0], node.inputs[1]
        y = node.outputs[0]
        ash, bsh, ysh = T[a].shape, T[b].shape, T[y].shape
        M, K, N = ash[-2], ash[-1], bsh[-1]
        B = prod(ysh[:-2]) if len(ysh) > 2 else 1
        wide = "bmatmul_i32" in lp.kernel
        bt = int("matmul_nt" in lp.kernel)
        mul, sh = _mul_shift(K)
        c, n = _core(cores)
        for bb, cb in _tiles(B, tile.get("B", B)):
            for m, cm in _tiles(M, tile.get("M", M)):
                share = (last_share(bb * m, n) * N if bb * m >= n else bb * m * last_share(N, n)) * K
                if wide:
                    call = Call("matmul", "matmul_i32", (bb, m, N, K, bt, mul, sh), c, n, share,
                                f"kl_bmatmul_i32 {bb}x{m}x{K} . {K}x{N}" + _who(c, n))
                else:
                    asg, bsg = int(T[a].dtype != "uint8"), int(T[b].dtype != "uint8")
                    call = Call("matmul", "matmul", (bb, m, N, K, asg, bsg, bt, mul, sh), c, n, share,
                                f"kl_bmatmul {bb}x{m}x{K} . {K}x{N}{' (B^T)' if bt else ''}" + _who(c, n))
                out.append((call, cb * cm))
    elif op in ("LayerNorm", "GELU", "Add", "RequantShift", "Softmax"):
        y = node.outputs[0]
        shape = T[y].shape
        C = shape[-1] if shape else 1
        R = max(1, math.prod(shape) // max(C, 1))
        c, n = _core(cores)
        for r, cr in _tiles(R, tile.get("R", R)):
            if op == "LayerNorm":
                d = int(node.attrs.get("d", 1))
                call = Call("layernorm", "layernorm", (r, C, d.bit_length() - 1, int(node.attrs.get("n_levels", 256))),
                            c, n, last_share(r, n) * C, f"kl_ilayernorm {r}x{C}" + _who(c, n))
            elif op == "GELU":
                fused = int(node.attrs.get("rq") is not None)
                call = Call("gelu", "gelu", (r, C, int(node.attrs["b"]), int(node.attrs["one"]), fused, 1, 14),
                            c, n, _rows_else_cols(r, C, n),
                            f"kl_igelu_{'rq' if fused else 'i32'} {r}x{C}" + _who(c, n))
            elif op == "Add":
                a_, b_ = node.inputs[0], node.inputs[1]
                call = Call("add", "add", (r, C, int(T[a_].dtype != "uint8"), int(T[b_].dtype != "uint8"), 1 << 15, 16),
                            c, n, _rows_else_cols(r, C, n), f"kl_add_rq {r}x{C}" + _who(c, n))
            elif op == "RequantShift":
                call = Call("requant", "requant", (r, C, 1, 10), c, n, _rows_else_cols(r, C, n),
                            f"kl_requant {r}x{C}" + _who(c, n))
            else:
                sm = _sm_params(node)
                kind = node.attrs.get("kind", "isoftmax")
                if kind == "isoftmax":  # called with min(rows, cores) cores (its scratch)
                    ci, ni = _core(min(r, cores))
                    call = Call("softmax", "isoftmax", (r, C, sm[1], sm[2], sm[3], sm[4], sm[6]), ci, ni,
                                last_share(r, ni) * C, f"kl_isoftmax {r}x{C}" + _who(ci, ni))
                elif kind == "itamax":
                    call = Call("softmax", "itamax", (r, C, sm[6]), c, n, last_share(r, n) * C,
                                f"kl_itamax {r}x{C}" + _who(c, n))
                else:
                    call = Call("softmax", "itapartial", (r, C, sm[5], sm[6]), c, n, last_share(r, n) * C,
                                f"kl_ita_partial_max {r}x{C}" + _who(c, n))
            out.append((call, cr))
    elif op == "MHSA":
        out += _mhsa_calls(graph, node, lp, tile, cores)
    return out  # other ops (not tiled, golden-model only) call no kernel-library kernel


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
    ex = 1
    bufs = {b.name: b for b in lp.buffers}
    x_res = "x" in bufs and bufs["x"].bytes == S * E * ex
    acc_local = "acc" in bufs and bufs["acc"].kind == "local"
    out: list[tuple[Call, int]] = []
    for tn, ct in ([(S, 1)] if x_res else _tiles(S, XT)):
        if fw is None:
            out.append((linear_call(tn, P, E, cores, xs=xs), H * ct))            # K_h
        out.append((linear_call(tn, P, E, cores, xs=xs, trans=1), H * ct))       # V_h^T
    for xn, cx in _tiles(S, XT):
        if fw is None:
            out.append((linear_call(xn, P, E, cores, xs=xs), H * cx))            # Q_h rows
            q_signed = int(a["q"].attrs["rq"].signed)
            out.append((chunk_call(xn, S, P, P, E, cores, sm, q_signed=q_signed), H * cx))
        elif not row_term:
            out.append((linear_call(xn, E, E, cores, xs=xs), H * cx))            # I* rows
            out.append((chunk_call(xn, S, E, P, E, cores, sm, q_signed=int(fw.rq_i.signed)), H * cx))
        else:  # the kernel's FWSA mode computes I* and the row term itself
            out.append((chunk_call(xn, S, E, P, E, cores, sm, fwsa=1, row_term=1, q_signed=1 - xs), H * cx))
    has_bo = int(len(node.inputs) > 8 and bool(node.inputs[8])) if fw is None else \
        int(len(node.inputs) > 6 and bool(node.inputs[6]))
    for rows, cr in ([(S, 1)] if acc_local else _tiles(S, XT)):
        out.append((finalize_call(rows, E, cores, has_bo), cr))
    return out


def plan_uses(plan, graph, cores: int, name: str, form: str,
              skipped: list[str] | None = None) -> list[Use]:
    """Every kernel call of `plan` (the graph in the plan's schedule form); layers without a
    calibration case are listed in `skipped`."""
    uses = []
    for lp in plan.layers:
        try:
            calls = _layer_calls(graph, lp, cores)
        except NotMeasured as exc:
            if skipped is not None:
                skipped.append(f"{name}: {exc}")
            continue
        for call, count in calls:
            uses.append(Use(name, form, lp.name, lp.op, call, count))
            if call.sub is not None:
                uses.append(Use(name, form, lp.name, lp.op, call.sub, count))
    return uses


def _plan_graph(plan):
    from planner.deployed import deployed_graph, planning_graph
    return planning_graph(plan, deployed_graph(plan))


def example_networks(names: Sequence[str] | None) -> list[Path]:
    if not EXAMPLES_DIR.is_dir():
        raise UsageError(f"no example networks here ({EXAMPLES_DIR} is absent): give solved plans "
                         "with --plan OUT/")
    known = sorted(p.parent.name for p in EXAMPLES_DIR.glob("*/int.onnx"))
    if not names:
        return [EXAMPLES_DIR / n / "int.onnx" for n in known]
    bad = [n for n in names if n not in known]
    if bad:
        raise UsageError(f"--examples: unknown example {', '.join(bad)} (known: {', '.join(known)})")
    return [EXAMPLES_DIR / n / "int.onnx" for n in names]


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
            uses += plan_uses(plan, _plan_graph(plan), hw.cores, name, "deployed", skipped)
            names.append(name)
        return uses, names
    from planner.solve import SolveOptions, solve
    for net in example_networks(examples):
        for form, dft in (("deployed", "auto"), ("layer-by-layer", "off")):
            if progress:
                progress(f"solving {net.parent.name} for {hw.name} (--dft {dft})")
            sol = solve(net, hw_path, SolveOptions(dft=dft, fwsa="auto"))
            name = f"{net.parent.name}{'' if dft == 'auto' else ' --dft off'}"
            uses += plan_uses(sol.plan, _plan_graph(sol.plan), hw.cores, name, form, skipped)
            names.append(name)
    return uses, names


# ------------------------------------------------------------------------------------------
# measurement on QEMU
# ------------------------------------------------------------------------------------------

def case_header(calls: Sequence[Call], arena: int) -> str:
    rows = []
    for c in calls:
        vals = [KIND[c.kind], c.core, c.n_cores, *c.params]
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
        per_core = 12 * max(D, S, P) + 1024 + 6 * (S + P + D + 8) + 64
        return rows * D + D * D + S * D + P * S + E * P + 4 * rows * E + per_core * c.n_cores + 8192
    rows, cols = p[0], p[1]
    return 4 * rows * cols * 2 + 4 * cols * max(c.n_cores, 1) + 8192


def measure(calls: Sequence[Call], target: str, timeout: float = 600) -> tuple[dict[Call, int], int]:
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
    cases = [Call("none", "empty", (), 0, 1, 0, "markers only")] + list(calls)
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
# statistics and the hardware model
# ------------------------------------------------------------------------------------------

def round_sig(v: float, digits: int = DIGITS) -> float:
    if v == 0:
        return 0.0
    return round(v, digits - 1 - int(math.floor(math.log10(abs(v)))))


def _fmt(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def _weighted(key: str, uses: Sequence[Use], attributed) -> tuple[float, int, int]:
    """(figure, work, instructions): sum(work) / sum(instructions) for MAC kernels, the inverse
    for element-wise ones, every call counted as often as the plans run it."""
    work = sum(u.count * u.call.work for u in uses)
    insns = sum(u.count * attributed(u.call) for u in uses)
    if work <= 0 or insns <= 0:
        raise PlannerError(f"{key}: measured {insns} instructions for {work} units of work: no figure")
    return (work / insns if key in MAC_KERNELS else insns / work), work, insns


def key_figures(key: str, uses: Sequence[Use], attributed
                ) -> tuple[float, list[tuple[float, Call]], int, int, int, str, float | None]:
    """(figure, per-shape figures, calls, work, instructions, form, layer-by-layer figure) of one
    key: over the deployed form's uses when there are any, else the layer-by-layer form's."""
    mine = [u for u in uses if u.call.key == key]
    dep = [u for u in mine if u.form == "deployed"]
    lbl = [u for u in mine if u.form != "deployed"]
    chosen, form = (dep, "deployed") if dep else (lbl, "layer-by-layer")
    if not chosen:
        raise KeyError(key)
    figure, work, insns = _weighted(key, chosen, attributed)
    other = _weighted(key, lbl, attributed)[0] if dep and lbl else None
    mac = key in MAC_KERNELS
    per_shape = []
    for call in sorted({u.call for u in chosen}, key=lambda c: c.label):
        ins = attributed(call)
        per_shape.append(((call.work / ins) if mac else (ins / call.work), call))
    return figure, per_shape, sum(u.count for u in chosen), work, insns, form, other


def source_text(hw: HardwareModel, target: str, command: str, key: str, r: "KeyResult",
                plans: Sequence[str]) -> str:
    mac = key in MAC_KERNELS
    lo, hi = r.spread
    worst_lo = min(r.per_shape, key=lambda t: t[0])
    worst_hi = max(r.per_shape, key=lambda t: t[0])
    shape_word = f"{len(r.per_shape)} shape{'s' if len(r.per_shape) != 1 else ''}"
    forms = "as solved (--dft auto)" if r.form == "deployed" else "layer by layer (--dft off)"
    assumed = hw.sources.get("insn_to_cycle", "assumed").strip().lower().startswith("assumed")
    conv = (f"/ insn_to_cycle {hw.insn_to_cycle:g}" if mac else f"x insn_to_cycle {hw.insn_to_cycle:g}")
    unit = "MAC/cycle" if mac else "cycles/element"
    stand_in = ""
    if target == "qemu-rv32":
        stand_in = ("; RV32IMC stand-in for GAP9 without XpulpV2 (portable C path: no SIMD dot "
                    "products, no hardware loops), so it overstates GAP9's instructions")
    cores = f"; per core: the busiest core's share of {hw.cores} cores" if hw.cores > 1 else ""
    notes = ""
    if key == "mhsa_chunk":
        notes = ("; kl_mhsa_chunk's instructions minus those of its table softmax (kl_softmax_rows "
                 "on the same rows x S, priced at softmax)")
    if r.other is not None and abs(r.other / r.measured - 1) > 0.05:
        notes += (f"; the layer-by-layer plans (--dft off) measure {_fmt(r.other)} {r.unit}, "
                  "priced at this same figure")
    return (f"measured: QEMU {target} instruction count, `{command}`: {_fmt(r.measured)} {r.unit} "
            f"= total work / total instructions of the {r.calls} kernel calls ({shape_word}) of "
            f"the example plans {forms} ({', '.join(sorted({p.split(' ')[0] for p in plans}))}); "
            f"per shape {_fmt(lo)}..{_fmt(hi)} ({worst_lo[1].label}: {_fmt(worst_lo[0])}; "
            f"{worst_hi[1].label}: {_fmt(worst_hi[0])}){notes}{cores}{stand_in}; {conv}"
            f"{' (assumed)' if assumed else ''} = {r.new:g} {unit}")


def calibrate(hw_spec: str | Path, target: str, *, examples: Sequence[str] | None = None,
              plan_dirs: Sequence[Path] = (), keys: Sequence[str] | None = None, command: str,
              progress=None) -> Calibration:
    hw_path = resolve_hw_path(hw_spec)
    hw = load_hw_model(hw_path)
    if target not in TARGETS:
        raise UsageError(f"--target: expected one of {', '.join(TARGETS)}, got {target!r}")
    if TARGETS[target] != hw.qemu_target.replace("x8", ""):
        own = f"qemu-{hw.qemu_target.replace('x8', '')}"
        raise UsageError(f"{hw_path}: the model's QEMU stand-in (qemu_target) is "
                         f"'{hw.qemu_target}', not {target}: calibrate it with --target {own}")
    keys = list(keys or KEYS)
    skipped: list[str] = []
    uses, plans = collect_uses(hw_path, hw, examples, plan_dirs, progress, skipped)
    uses = [u for u in uses if u.call.key in keys or any(
        v.call.sub == u.call for v in uses if v.call.key in keys)]
    calls = sorted({u.call for u in uses}, key=lambda c: (c.key, c.label))
    if not calls:
        raise PlannerError(f"the plans call no kernel priced at {', '.join(keys)}: nothing to measure")
    if progress:
        progress(f"measuring {len(calls)} kernel calls on {target}")
    measured, base = measure(calls, target)
    cal = Calibration(hw, target, command, {}, uses, measured, base, plans, skipped)
    for key in keys:
        try:
            fig, per_shape, n, work, insns, form, other = key_figures(key, uses, cal.attributed)
        except KeyError:
            continue
        mac = key in MAC_KERNELS
        new = round_sig(fig / hw.insn_to_cycle if mac else fig * hw.insn_to_cycle)
        r = KeyResult(key, "MAC/instruction" if mac else "instructions/element", fig, per_shape, n,
                      work, insns, form, hw.kernel_efficiency[key], new, "", other)
        r.source = source_text(hw, target, command, key, r, plans)
        cal.results[key] = r
    return cal


def updated_model_text(path: Path, cal: Calibration) -> str:
    """The hardware model file with the calibrated figures and their sources (key order and
    formatting kept)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, r in cal.results.items():
        data["kernel_efficiency"][key] = r.new
        data["_source"][f"kernel_efficiency.{key}"] = r.source
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def layer_table(cal: Calibration, form: str = "deployed") -> list[tuple[str, str, str, int, int]]:
    """Per layer of the plans of `form`: (plan, layer, op, measured kernel instructions, the same
    calls priced with the calibrated figures in instructions)."""
    per: dict[tuple[str, str, str], list[int]] = defaultdict(lambda: [0, 0])
    figs = {k: r.measured for k, r in cal.results.items()}
    for u in cal.uses:
        if u.form != form or u.call.key not in figs:
            continue
        acc = per[(u.plan, u.layer, u.op)]
        acc[0] += u.count * cal.attributed(u.call)
        f = figs[u.call.key]
        acc[1] += round(u.count * (u.call.work / f if u.call.key in MAC_KERNELS else u.call.work * f))
    return [(p, l, o, m, e) for (p, l, o), (m, e) in per.items()]


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
        raise UsageError(f"--kernels: unknown kernel_efficiency key {', '.join(bad) or repr(text)} "
                         f"(known: {', '.join(KEYS)})")
    return keys

