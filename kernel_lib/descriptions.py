"""Machine-readable description of every kernel of kernel_lib, read by the tiler and the codegen.

One KernelDesc per kernel family: the C function(s), the loop dims, which dim is split across
cores, each operand's layout and strides, the scratch size (a function of the dims, the core
count and the ISA path), the divisibility / alignment / range rules that are really enforced
or assumed by the C, and a cost hint (MACs or elements as a function of the dims).

Dims are passed as a dict of ints, with the names listed in KernelDesc.dims (extra keys are
ignored). ISA paths: "generic" (portable C: host, RV32 / GAP9 without Xpulp), "arm-dsp"
(Cortex-M4/M7, __ARM_FEATURE_DSP), "xpulpv2" (reserved: GAP9 SIMD, not implemented or verified
here; it falls back to the portable code, so it is described as "generic").

Example::

    from kernel_lib import descriptions as kd
    d = kd.get("linear")
    d.c_function(x_dtype="uint8", out="8bit")          # 'kl_linear_u8'
    d.split_dim({"S": 64, "N": 64, "K": 64}, 8)        # 'S'
    d.scratch_bytes({"S": 64, "N": 64, "K": 64}, 8, "arm-dsp")   # 6144
    kd.check("linear", {"S": 3, "N": 5, "K": 7}, "arm-dsp")       # [] (no rule violated)
    d.cost({"S": 64, "N": 64, "K": 64})                # 262144 (MACs)
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping

Dims = Mapping[str, int]

ISAS = ("generic", "arm-dsp", "xpulpv2")
DEFAULT_ALIGN = 4  # every operand: int32 elements, 4-byte aligned on every path
DSP_SCRATCH_ALIGN = (("arm-dsp", 8),)  # LDRD/STRD on the scratch (KL_MM_SCRATCH_PER_CORE rows)

I32_MAX = 2**31 - 1


@dataclasses.dataclass(frozen=True)
class Operand:
    """One argument array of a kernel."""

    name: str           # C argument name of the base pointer
    role: str           # "in", "out", "inout", "param" (constant tensor), "scratch"
    dtype: str          # "int8", "uint8", "int8|uint8", "int32", "8bit" (signedness from rq)
    shape: tuple[str, ...]   # logical shape in dim names (or expressions) e.g. ("S", "K")
    layout: str         # human-readable layout
    strides: tuple[str, ...] = ()  # C arguments giving its strides in elements, outer first
    contiguous_dim: str | None = None  # dim whose elements are adjacent in memory (stride 1)
    align: tuple[tuple[str, int], ...] = ()  # (ISA path, bytes) where the base address must be
    #   aligned beyond DEFAULT_ALIGN (e.g. the Arm DSP path's LDRD on scratch: 8); read by the
    #   memory planner (planner/tiling/ops.py -> BufferSpec.align) and checked by codegen

    def alignment(self, isa: str) -> int:
        """Bytes the base address of this operand must be a multiple of on ISA path `isa`."""
        return max([DEFAULT_ALIGN] + [a for i, a in self.align if i == isa])


@dataclasses.dataclass(frozen=True)
class Rule:
    """A condition the kernel needs. `check(dims)` returns True when it holds."""

    text: str
    check: Callable[[Dims], bool]
    isa: tuple[str, ...] = ISAS  # the paths the rule applies to


@dataclasses.dataclass(frozen=True)
class KernelDesc:
    name: str
    c_functions: Mapping[str, str]  # variant key -> C function name
    prototype: str                  # C prototype(s), as in kernel_lib.h
    dims: tuple[str, ...]
    split_doc: str
    split: Callable[[Dims, int], str]
    operands: tuple[Operand, ...]
    scratch: Callable[[Dims, int, str], int]
    scratch_doc: str
    rules: tuple[Rule, ...]
    cost_unit: str                  # "MAC" or "element"
    cost: Callable[[Dims], int]
    golden: str                     # function of planner.golden.ops that specifies it
    notes: str = ""

    def c_function(self, **variant: str) -> str:
        """The C function for a variant, e.g. linear: x_dtype='int8'|'uint8', out='8bit'|'int32'."""
        key = _variant_key(self.name, variant)
        try:
            return self.c_functions[key]
        except KeyError:
            raise KeyError(f"{self.name}: no C function for variant {variant} "
                           f"(known: {sorted(self.c_functions)})") from None

    def split_dim(self, dims: Dims, n_cores: int) -> str:
        return self.split(dims, n_cores)

    def scratch_bytes(self, dims: Dims, n_cores: int, isa: str = "generic") -> int:
        """Total scratch bytes for a call on n_cores cores (one buffer, 4-byte aligned)."""
        _check_isa(isa)
        return int(self.scratch(dims, n_cores, isa))

    def operand_align(self, operand: str, isa: str = "generic") -> int:
        """Alignment in bytes of operand `operand`'s base address on ISA path `isa`."""
        _check_isa(isa)
        for o in self.operands:
            if o.name == operand:
                return o.alignment(isa)
        raise KeyError(f"{self.name}: no operand {operand!r}")

    def violations(self, dims: Dims, isa: str = "generic") -> list[str]:
        _check_isa(isa)
        return [r.text for r in self.rules if isa in r.isa and not r.check(dims)]

    def to_dict(self) -> dict:
        """JSON-friendly view (callables left out)."""
        return {
            "name": self.name, "c_functions": dict(self.c_functions), "prototype": self.prototype,
            "dims": list(self.dims), "split": self.split_doc,
            "operands": [dataclasses.asdict(o) for o in self.operands],
            "scratch": self.scratch_doc, "rules": [r.text for r in self.rules],
            "cost_unit": self.cost_unit, "golden": self.golden, "notes": self.notes,
        }


def _check_isa(isa: str) -> None:
    if isa not in ISAS:
        raise ValueError(f"unknown ISA path {isa!r}; known: {ISAS}")


def _variant_key(name: str, variant: Mapping[str, str]) -> str:
    if not variant:
        return "default"
    return ",".join(f"{k}={variant[k]}" for k in sorted(variant))


# ------------------------------------------------------------------------------------------
# shared pieces
# ------------------------------------------------------------------------------------------

DSP_RMAX = 6  # KL_DSP_RMAX of kernel_lib.h


def mm_scratch_per_core(k: int, isa: str) -> int:
    """KL_MM_SCRATCH_PER_CORE(K) of kernel_lib.h: DSP_RMAX rows x K int16 on the Arm DSP path."""
    return 2 * DSP_RMAX * k if isa == "arm-dsp" else 0


def gemm_q_streams(rows: int, n_cores: int, isa: str) -> int:
    """How many times kl_gemm_block reads its Q operand (a Linear's weights, with its per-column
    bias and requantization vectors) for `rows` P rows split across `n_cores` (balanced, as
    kl_split; fewer rows than cores: the columns are split, each core streams its own Q columns
    once per block). A Q row is streamed once per block of P rows: on arm-dsp blocks of 6, then
    4, 2, 1 (a remainder of 2 after the 6-row blocks as 4 + 4, kl_gemm_dsp), on the portable
    path blocks of 2. What a Q operand read in place from a slow memory (flash) costs."""
    def blocks(r: int) -> int:
        if r <= 0:
            return 0
        if isa != "arm-dsp":
            return -(-r // 2)
        p6 = r - 8 if r % 6 == 2 and r >= 8 else r
        n, rest = p6 // DSP_RMAX, r - (p6 // DSP_RMAX) * DSP_RMAX
        n += rest // 4
        rest %= 4
        return n + rest // 2 + rest % 2
    if rows < n_cores:
        return blocks(rows)
    base, extra = divmod(rows, n_cores)
    return extra * blocks(base + 1) + (n_cores - extra) * blocks(base)


def _mm_scratch(kdim: str) -> Callable[[Dims, int, str], int]:
    return lambda d, n, isa: n * mm_scratch_per_core(d[kdim], isa)


def _rows_else_cols(rows: str, cols: str) -> Callable[[Dims, int], str]:
    return lambda d, n: rows if d[rows] >= n else cols


def _pos(*names: str) -> Rule:
    return Rule(f"{', '.join(names)} >= 1", lambda d: all(d[k] >= 1 for k in names))


_RQ_DOC = ("kl_rq_t: y = clip((acc*mul + add + 2^(shift-1)) >> shift), 64-bit product; "
           "mul/add per tensor, row, column or batch through element strides; shift 0..62")
_RQ_RULES = (
    Rule("rq.shift in [0, 62]", lambda d: 0 <= d.get("shift", 0) <= 62),
    Rule("rq.n_levels in [2, 256]", lambda d: 2 <= d.get("n_levels", 256) <= 256),
)

_ACC_RULE_LINEAR = Rule(
    "int32 accumulator: K * 128 * 255 + |bias| < 2^31 (K < 65000 for int8 x uint8)",
    lambda d: d["K"] * 128 * 255 < 2**31 - 2**24)


KERNELS: dict[str, KernelDesc] = {}


def _add(k: KernelDesc) -> None:
    KERNELS[k.name] = k


_add(KernelDesc(
    name="linear",
    c_functions={
        "out=8bit,x_dtype=int8": "kl_linear_s8",
        "out=8bit,x_dtype=uint8": "kl_linear_u8",
        "out=int32,x_dtype=int8": "kl_linear_s8_i32",
        "out=int32,x_dtype=uint8": "kl_linear_u8_i32",
        "out=8bit_transposed,x_dtype=int8": "kl_linear_t_s8",
        "out=8bit_transposed,x_dtype=uint8": "kl_linear_t_u8",
    },
    prototype=(
        "void kl_linear_s8(const int8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs, "
        "const int32_t *bias, void *y, int32_t y_rs, int32_t S, int32_t N, int32_t K, "
        "const kl_rq_t *rq, void *scratch, int core_id, int n_cores);  /* _u8: uint8 x */\n"
        "void kl_linear_s8_i32(const int8_t *x, int32_t x_rs, const int8_t *w, int32_t w_rs, "
        "const int32_t *bias, int32_t *acc, int32_t acc_rs, int32_t S, int32_t N, int32_t K, "
        "int mode /* KL_ACC_STORE|KL_ACC_ADD */, void *scratch, int core_id, int n_cores);"),
    dims=("S", "N", "K"),
    split_doc="rows S when S >= n_cores, else output features N (balanced, sizes differ by <= 1)",
    split=_rows_else_cols("S", "N"),
    operands=(
        Operand("x", "in", "int8|uint8", ("S", "K"), "token-major, row stride x_rs >= K",
                ("x_rs",), "K"),
        Operand("w", "param", "int8", ("N", "K"),
                "[out][in], row stride w_rs >= K (a column slice W[:, k0:k0+K] is w + k0 with "
                "the full row stride); no pre-arranged layout", ("w_rs",), "K"),
        Operand("bias", "param", "int32", ("N",), "per output feature, may be NULL"),
        Operand("y", "out", "8bit", ("S", "N"), "row stride y_rs >= N; int8 or uint8 by rq",
                ("y_rs",), "N"),
        Operand("acc", "inout", "int32", ("S", "N"),
                "int32 variants: row stride acc_rs; KL_ACC_STORE writes, KL_ACC_ADD adds "
                "(K split: bias with exactly one chunk, then kl_linear_finalize or kl_requant)",
                ("acc_rs",), "N"),
        Operand("scratch", "scratch", "int8", ("n_cores * 2 * DSP_RMAX * K",),
                "arm-dsp: per core DSP_RMAX (6) rows x K int16; 8-byte aligned; "
                "NULL -> portable path", align=DSP_SCRATCH_ALIGN),
    ),
    scratch=_mm_scratch("K"),
    scratch_doc="n_cores * 12 * K bytes on arm-dsp (KL_MM_SCRATCH_PER_CORE), 0 otherwise",
    rules=(_pos("S", "N", "K"), _ACC_RULE_LINEAR, *_RQ_RULES),
    cost_unit="MAC",
    cost=lambda d: d["S"] * d["N"] * d["K"],
    golden="linear + requant_shift",
    notes=("S, N, K any (leftovers handled); no stride alignment rule on any path (the DSP path "
           "uses unaligned word loads, allowed on ARMv7E-M). " + _RQ_DOC),
))

_add(KernelDesc(
    name="linear_finalize",
    c_functions={"default": "kl_linear_finalize"},
    prototype=("void kl_linear_finalize(const int32_t *acc, int32_t acc_rs, const int32_t *bias, "
               "void *y, int32_t y_rs, int32_t S, int32_t N, const kl_rq_t *rq, int core_id, "
               "int n_cores);"),
    dims=("S", "N"),
    split_doc="rows S when S >= n_cores, else columns N",
    split=_rows_else_cols("S", "N"),
    operands=(
        Operand("acc", "in", "int32", ("S", "N"), "row stride acc_rs", ("acc_rs",), "N"),
        Operand("bias", "param", "int32", ("N",), "may be NULL"),
        Operand("y", "out", "8bit", ("S", "N"), "row stride y_rs", ("y_rs",), "N"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("S", "N"), *_RQ_RULES),
    cost_unit="element",
    cost=lambda d: d["S"] * d["N"],
    golden="requant_shift(acc + bias)",
))

_add(KernelDesc(
    name="requant",
    c_functions={"default": "kl_requant"},
    prototype=("void kl_requant(const int32_t *x, int32_t x_rs, void *y, int32_t y_rs, "
               "int32_t rows, int32_t cols, const kl_rq_t *rq, int core_id, int n_cores);"),
    dims=("rows", "cols"),
    split_doc="rows when rows >= n_cores, else columns",
    split=_rows_else_cols("rows", "cols"),
    operands=(
        Operand("x", "in", "int32", ("rows", "cols"), "row stride x_rs", ("x_rs",), "cols"),
        Operand("y", "out", "8bit", ("rows", "cols"), "row stride y_rs", ("y_rs",), "cols"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "cols"), *_RQ_RULES),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["cols"],
    golden="requant_shift",
))

_MM_CORR = ("row_corr[M] / col_corr[N] (int32, may be NULL) are added to the accumulator "
            "before requantization: the zero-point correction hook (QDQ activations: "
            "col_corr = -za*colsum(B) + K*za*zb, row_corr = -zb*rowsum(A))")

_add(KernelDesc(
    name="matmul_nt",
    c_functions={"default": "kl_matmul_nt_s8"},
    prototype=("void kl_matmul_nt_s8(const int8_t *a, int32_t a_rs, const int8_t *b, int32_t b_rs,"
               " void *y, int32_t y_rs, int32_t M, int32_t N, int32_t K, const int32_t *row_corr,"
               " const int32_t *col_corr, const kl_rq_t *rq, void *scratch, int core_id, "
               "int n_cores);"),
    dims=("M", "N", "K"),
    split_doc="rows M when M >= n_cores, else columns N",
    split=_rows_else_cols("M", "N"),
    operands=(
        Operand("a", "in", "int8", ("M", "K"), "token-major (e.g. Q_h: q + h*P, a_rs = H*P)",
                ("a_rs",), "K"),
        Operand("b", "in", "int8", ("N", "K"), "token-major (e.g. K_h: k + h*P, b_rs = H*P)",
                ("b_rs",), "K"),
        Operand("y", "out", "8bit", ("M", "N"), "row stride y_rs", ("y_rs",), "N"),
        Operand("scratch", "scratch", "int8", ("n_cores * 2 * DSP_RMAX * K",), "as linear",
                align=DSP_SCRATCH_ALIGN),
    ),
    scratch=_mm_scratch("K"),
    scratch_doc="n_cores * 12 * K bytes on arm-dsp, 0 otherwise",
    rules=(_pos("M", "N", "K"), Rule("K * 128 * 128 + |corr| < 2^31", lambda d: d["K"] < 2**17),
           *_RQ_RULES),
    cost_unit="MAC",
    cost=lambda d: d["M"] * d["N"] * d["K"],
    golden="A @ B.T (+ corr), requant_shift",
    notes=_MM_CORR,
))

_add(KernelDesc(
    name="matmul_nn",
    c_functions={"a_dtype=uint8": "kl_matmul_nn_u8s8", "a_dtype=int8": "kl_matmul_nn_s8s8"},
    prototype=("void kl_matmul_nn_u8s8(const uint8_t *a, int32_t a_rs, const int8_t *b, "
               "int32_t b_rs, void *y, int32_t y_rs, int32_t M, int32_t N, int32_t K, "
               "const int32_t *row_corr, const int32_t *col_corr, const kl_rq_t *rq, "
               "void *scratch, int core_id, int n_cores);  /* _s8s8: int8 a */"),
    dims=("M", "N", "K"),
    split_doc="rows M when M >= n_cores, else columns N",
    split=_rows_else_cols("M", "N"),
    operands=(
        Operand("a", "in", "uint8|int8", ("M", "K"), "row-major (probabilities [x][S])",
                ("a_rs",), "K"),
        Operand("b", "in", "int8", ("K", "N"),
                "row-major [K][N] (V_h token-major [S][P]: v + h*P, b_rs = H*P)", ("b_rs",), "N"),
        Operand("y", "out", "8bit", ("M", "N"),
                "row stride y_rs (head-interleaved [S][H][P]: y + h*P, y_rs = H*P)",
                ("y_rs",), "N"),
        Operand("scratch", "scratch", "int8", ("n_cores * 2 * DSP_RMAX * K",), "as linear",
                align=DSP_SCRATCH_ALIGN),
    ),
    scratch=_mm_scratch("K"),
    scratch_doc="n_cores * 12 * K bytes on arm-dsp, 0 otherwise",
    rules=(_pos("M", "N", "K"), Rule("K * 255 * 128 + |corr| < 2^31", lambda d: d["K"] < 65000),
           *_RQ_RULES),
    cost_unit="MAC",
    cost=lambda d: d["M"] * d["N"] * d["K"],
    golden="A @ B (+ corr), requant_shift",
    notes=(_MM_CORR + ". On arm-dsp the columns of B are gathered and expanded once per 8 "
           "columns per call, which costs about 3 instructions per element of B: for few rows M "
           "(small depth-first chunks) transpose V_h once per head with kl_transpose8 and use "
           "matmul_nt instead."),
))

def _bmm_operands(dtype: str) -> tuple[Operand, ...]:
    """A, B, Y of the batched matmuls (kl_bmatmul, kl_bmatmul_zp, kl_bmatmul_i32)."""
    return (
        Operand("a", "in", dtype, ("batch", "M", "K"), "batch stride a_bs, row stride a_rs",
                ("a_bs", "a_rs"), "K"),
        Operand("b", "in", dtype, ("batch", "K", "N"),
                "[batch][K][N] (b_trans=0) or [batch][N][K] (b_trans=1)", ("b_bs", "b_rs")),
        Operand("y", "out", "8bit", ("batch", "M", "N"), "batch stride y_bs, row stride y_rs",
                ("y_bs", "y_rs"), "N"),
    )


_add(KernelDesc(
    name="bmatmul",
    c_functions={"default": "kl_bmatmul"},
    prototype=("void kl_bmatmul(const void *a, int a_signed, int32_t a_bs, int32_t a_rs, "
               "const void *b, int b_signed, int b_trans, int32_t b_bs, int32_t b_rs, void *y, "
               "int32_t y_bs, int32_t y_rs, int32_t batch, int32_t M, int32_t N, int32_t K, "
               "const int32_t *row_corr, const int32_t *col_corr, const kl_rq_t *rq, "
               "void *scratch, int core_id, int n_cores);"),
    dims=("batch", "M", "N", "K"),
    split_doc="the batch*M output rows when batch*M >= n_cores, else columns N of every batch",
    split=lambda d, n: "batch*M" if d["batch"] * d["M"] >= n else "N",
    operands=(
        *_bmm_operands("int8|uint8"),
        Operand("scratch", "scratch", "int8", ("n_cores * 2 * DSP_RMAX * K",), "as linear",
                align=DSP_SCRATCH_ALIGN),
    ),
    scratch=_mm_scratch("K"),
    scratch_doc="n_cores * 12 * K bytes on arm-dsp, 0 otherwise",
    rules=(_pos("batch", "M", "N", "K"), Rule("K * 255 * 255 < 2^31", lambda d: d["K"] < 33000),
           *_RQ_RULES),
    cost_unit="MAC",
    cost=lambda d: d["batch"] * d["M"] * d["N"] * d["K"],
    golden="np.matmul (batched), requant_shift with mul/add per batch (rq.mul_sb/add_sb)",
    notes=_MM_CORR + " (per batch: row_corr + b*M, col_corr + b*N).",
))

def zp_scratch_per_core(k: int, isa: str) -> int:
    """KL_ZP_SCRATCH(K) of kernel_lib.h: the matmul scratch and the K-byte zero-point vector."""
    return _a8(mm_scratch_per_core(k, isa)) + _a8(k)


def bmatmul_zp_scratch_per_core(d: Dims, isa: str) -> int:
    """KL_BMATMUL_ZP_SCRATCH(M, N, K): zero-point scratch, row and column corrections."""
    return zp_scratch_per_core(d["K"], isa) + _a8(4 * d["M"]) + _a8(4 * d["N"])


_add(KernelDesc(
    name="zp_sums",
    c_functions={"default": "kl_zp_sums", "block": "kl_zp_sums_block"},
    prototype=("void kl_zp_sums(const void *x, int x_signed, int32_t rs, int32_t cs, int32_t n, "
               "int32_t K, int32_t z, int32_t cst, int32_t *out, void *scratch, int core_id, "
               "int n_cores);"),
    dims=("n", "K"),
    split_doc="the n sums",
    split=lambda d, n: "n",
    operands=(
        Operand("x", "in", "int8|uint8", ("n", "K"), "element (i, k) at x[i*rs + k*cs]",
                ("rs",), "K"),
        Operand("out", "out", "int32", ("n",), "out[i] = cst + z * sum_k x[i][k]"),
        Operand("scratch", "scratch", "int8", ("n_cores * KL_ZP_SCRATCH(K)",),
                "per core: the matmul scratch and K bytes of z", align=DSP_SCRATCH_ALIGN),
    ),
    scratch=lambda d, n, isa: n * zp_scratch_per_core(d["K"], isa),
    scratch_doc="n_cores * (A8(mm(K)) + A8(K)), mm = 12*K on arm-dsp and 0 otherwise",
    rules=(_pos("n", "K"), Rule("z in [-128, 255]", lambda d: -128 <= d.get("z", 0) <= 255)),
    cost_unit="element",
    cost=lambda d: d["n"] * d["K"],
    golden="cst + z * x.sum(-1)",
    notes=("The zero-point corrections of activations that keep their zero points (QDQ graphs): "
           "one kl_gemm_block call of 1 x n outputs, K long, against K copies of z (contiguous "
           "rows: the z vector is the P operand; gathered rows: the rows are)."),
))

_add(KernelDesc(
    name="bmatmul_zp",
    c_functions={"default": "kl_bmatmul_zp"},
    prototype=("void kl_bmatmul_zp(const void *a, int a_signed, int32_t a_bs, int32_t a_rs, "
               "const void *b, int b_signed, int b_trans, int32_t b_bs, int32_t b_rs, void *y, "
               "int32_t y_bs, int32_t y_rs, int32_t batch, int32_t M, int32_t N, int32_t K, "
               "int32_t za, int32_t zb, const kl_rq_t *rq, void *scratch, int core_id, "
               "int n_cores);"),
    dims=("batch", "M", "N", "K"),
    split_doc="as bmatmul; each core forms the corrections of its own outputs",
    split=lambda d, n: "batch*M" if d["batch"] * d["M"] >= n else "N",
    operands=(
        *_bmm_operands("int8|uint8"),
        Operand("scratch", "scratch", "int8", ("n_cores * KL_BMATMUL_ZP_SCRATCH(M, N, K)",),
                "per core: zero-point scratch, M row and N column corrections",
                align=DSP_SCRATCH_ALIGN),
    ),
    scratch=lambda d, n, isa: n * bmatmul_zp_scratch_per_core(d, isa),
    scratch_doc="n_cores * (A8(mm(K)) + A8(K) + A8(4M) + A8(4N))",
    rules=(_pos("batch", "M", "N", "K"), Rule("K * 255 * 255 < 2^31", lambda d: d["K"] < 33000),
           *_RQ_RULES),
    cost_unit="MAC",
    cost=lambda d: d["batch"] * d["M"] * d["N"] * d["K"],
    golden="np.matmul(A - za, B - zb) (batched), requant_shift",
    notes=("kl_bmatmul with the corrections -zb*rowsum(A) + K*za*zb and -za*colsum(B) formed per "
           "core for its own outputs by kl_zp_sums_block (QDQ MatMuls whose operands keep their "
           "zero points)."),
))

_add(KernelDesc(
    name="bmatmul_i32",
    c_functions={"default": "kl_bmatmul_i32"},
    prototype=("void kl_bmatmul_i32(const int32_t *a, int32_t a_bs, int32_t a_rs, const int32_t *b, "
               "int b_trans, int32_t b_bs, int32_t b_rs, void *y, int32_t y_bs, int32_t y_rs, "
               "int32_t batch, int32_t M, int32_t N, int32_t K, const kl_rq_t *rq, int core_id, "
               "int n_cores);"),
    dims=("batch", "M", "N", "K"),
    split_doc="the batch*M output rows when batch*M >= n_cores, else columns N of every batch",
    split=lambda d, n: "batch*M" if d["batch"] * d["M"] >= n else "N",
    operands=_bmm_operands("int32"),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("batch", "M", "N", "K"), *_RQ_RULES),
    cost_unit="MAC",
    cost=lambda d: d["batch"] * d["M"] * d["N"] * d["K"],
    golden="np.matmul (batched) of int32 operands, requant_shift; sums exact when they fit int32",
    notes="For graphs whose activations are int32 tensors; products and sums modulo 2^32.",
))

_add(KernelDesc(
    name="transpose8",
    c_functions={"default": "kl_transpose8"},
    prototype=("void kl_transpose8(const void *x, int32_t x_rs, void *y, int32_t y_rs, "
               "int32_t rows, int32_t cols, int core_id, int n_cores);"),
    dims=("rows", "cols"),
    split_doc="output rows (= input columns)",
    split=lambda d, n: "cols",
    operands=(
        Operand("x", "in", "int8|uint8", ("rows", "cols"), "row stride x_rs", ("x_rs",), "cols"),
        Operand("y", "out", "int8|uint8", ("cols", "rows"), "row stride y_rs", ("y_rs",), "rows"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "cols"),),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["cols"],
    golden="np.transpose",
))


def _isoftmax_ymax(d: Dims) -> int:
    a, b, c, l2 = d.get("coeff_a", 1), d.get("coeff_b", 0), d.get("coeff_c", 0), d.get("log2", 1)
    return a * (abs(b) + l2) ** 2 + abs(c)


_add(KernelDesc(
    name="isoftmax",
    c_functions={"default": "kl_isoftmax"},
    prototype=("void kl_isoftmax(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, "
               "int32_t rows, int32_t L, int32_t coeff_a, int32_t coeff_b, int32_t coeff_c, "
               "int32_t log2, int32_t n_levels, int rounded, int32_t *scratch, int core_id, "
               "int n_cores);"),
    dims=("rows", "L"),
    split_doc="rows (each row whole on one core)",
    split=lambda d, n: "rows",
    operands=(
        Operand("x", "in", "int8", ("rows", "L"), "row stride x_rs", ("x_rs",), "L"),
        Operand("y", "out", "uint8", ("rows", "L"), "row stride y_rs, values in [0, n-1]",
                ("y_rs",), "L"),
        Operand("scratch", "scratch", "int32", ("n_cores * L",), "per core one int32 row"),
    ),
    scratch=lambda d, n, isa: 4 * d["L"] * n,
    scratch_doc="n_cores * 4 * L bytes (int32, 4-byte aligned), every ISA",
    rules=(
        _pos("rows", "L"),
        Rule("log2 >= 1", lambda d: d.get("log2", 1) >= 1),
        Rule("coeff_a >= 0 and coeff_c >= 0 (exponential terms non-negative)",
             lambda d: d.get("coeff_a", 1) >= 0 and d.get("coeff_c", 0) >= 0),
        Rule("coeff_a*coeff_b^2 + coeff_c > 0 (row sum > 0)",
             lambda d: d.get("coeff_a", 1) * d.get("coeff_b", 1) ** 2 + d.get("coeff_c", 0) > 0),
        Rule("ymax*(n_levels-1) < 2^31 and ymax*L < 2^31, ymax = a*(|b|+log2)^2 + c",
             lambda d: _isoftmax_ymax(d) * (d.get("n_levels", 256) - 1) <= I32_MAX
             and _isoftmax_ymax(d) * d["L"] <= I32_MAX),
        Rule("n_levels in [2, 256]", lambda d: 2 <= d.get("n_levels", 256) <= 256),
        Rule("rounded (flag): 2*ymax*(n_levels-1) + ymax*L < 2^31 (the rounded numerator)",
             lambda d: not d.get("rounded", 0) or _isoftmax_ymax(d) * (
                 2 * (d.get("n_levels", 256) - 1) + d["L"]) <= I32_MAX),
    ),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["L"],
    golden="isoftmax",
    notes=("Row sum division by an exact reciprocal computed once per row (Granlund-Montgomery, "
           "exact for every numerator < 2^31); exponent z = floor(d/log2) by an exact multiply."),
))

_add(KernelDesc(
    name="itamax",
    c_functions={"default": "kl_itamax"},
    prototype=("void kl_itamax(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, "
               "int32_t rows, int32_t L, int32_t n_levels, int core_id, int n_cores);"),
    dims=("rows", "L"),
    split_doc="rows",
    split=lambda d, n: "rows",
    operands=(
        Operand("x", "in", "int8", ("rows", "L"), "row stride x_rs", ("x_rs",), "L"),
        Operand("y", "out", "uint8", ("rows", "L"), "row stride y_rs", ("y_rs",), "L"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "L"),
           Rule("n_levels a power of two in [2, 256]",
                lambda d: d.get("n_levels", 256) in (2, 4, 8, 16, 32, 64, 128, 256)),
           Rule("L * 2^B < 2^31", lambda d: d["L"] < 2**22)),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["L"],
    golden="itamax",
))

_add(KernelDesc(
    name="ita_partial_max",
    c_functions={"default": "kl_ita_partial_max"},
    prototype=("void kl_ita_partial_max(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, "
               "int32_t rows, int32_t L, int32_t group_width, int32_t n_levels, int core_id, "
               "int n_cores);"),
    dims=("rows", "L"),
    split_doc="rows",
    split=lambda d, n: "rows",
    operands=(
        Operand("x", "in", "int8", ("rows", "L"), "row stride x_rs", ("x_rs",), "L"),
        Operand("y", "out", "uint8", ("rows", "L"), "row stride y_rs, values in [0, n/2-1]",
                ("y_rs",), "L"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "L"),
           Rule("L >= group_width >= 1", lambda d: d["L"] >= d.get("group_width", 1) >= 1),
           Rule("n_levels a power of two in [2, 256]",
                lambda d: d.get("n_levels", 256) in (2, 4, 8, 16, 32, 64, 128, 256))),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["L"],
    golden="ita_partial_max",
))

_add(KernelDesc(
    name="ilayernorm",
    c_functions={"default": "kl_ilayernorm"},
    prototype=("void kl_ilayernorm(const int8_t *x, int32_t x_rs, int8_t *y, int32_t y_rs, "
               "int32_t rows, int32_t L, const int32_t *weight, const int32_t *bias, "
               "int32_t d_log2, int32_t n_levels, int core_id, int n_cores);"),
    dims=("rows", "L"),
    split_doc="rows",
    split=lambda d, n: "rows",
    operands=(
        Operand("x", "in", "int8", ("rows", "L"), "row stride x_rs", ("x_rs",), "L"),
        Operand("weight", "param", "int32", ("L",), "per feature"),
        Operand("bias", "param", "int32", ("L",), "per feature"),
        Operand("y", "out", "int8", ("rows", "L"), "row stride y_rs", ("y_rs",), "L"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "L"),
           Rule("|weight| < 2^23 and |bias| < 2^30 (int32 products)",
                lambda d: d.get("max_abs_weight", 0) < 2**23 and d.get("max_abs_bias", 0) < 2**30),
           Rule("L * 255^2 < 2^31", lambda d: d["L"] * 255 * 255 < 2**31),
           Rule("D a power of two (pass d_log2 = log2(D), 0..30)",
                lambda d: 0 <= d.get("d_log2", 0) <= 30)),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["L"],
    golden="ilayernorm",
))

DT_CODES = {"uint8": 0, "int8": 1, "int16": 2}  # KL_DT_* of kernel_lib.h

_add(KernelDesc(
    name="layernorm_qdq",
    c_functions={"default": "kl_layernorm_qdq"},
    prototype=("void kl_layernorm_qdq(const void *x, int x_type, int32_t x_rs, int8_t *y, "
               "int32_t y_rs, int32_t rows, int32_t L, const int32_t *weight, "
               "const int32_t *bias, int32_t in_shift, int32_t eps, int32_t d_log2, "
               "int32_t n_levels, int core_id, int n_cores);"),
    dims=("rows", "L"),
    split_doc="rows",
    split=lambda d, n: "rows",
    operands=(
        Operand("x", "in", "int8|uint8|int16", ("rows", "L"),
                "row stride x_rs; x_type KL_DT_S8 / KL_DT_U8 / KL_DT_S16 (DT_CODES)", ("x_rs",), "L"),
        Operand("weight", "param", "int32", ("L",), "per feature, round(gamma*D/s_out)"),
        Operand("bias", "param", "int32", ("L",),
                "per feature, round(beta*D/s_out) + zp_out*D + D/2"),
        Operand("y", "out", "int8", ("rows", "L"), "row stride y_rs", ("y_rs",), "L"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "L"),
           Rule("|x * 2^in_shift| < 2^16 (in_shift 8 for 8-bit inputs, 0 for int16)",
                lambda d: d.get("in_bits", 8) + d.get("in_shift", 8) <= 16),
           Rule("L < 2^14 (int32 sum of the widened row)", lambda d: d["L"] < 2**14),
           Rule("|weight| < 2^24, |bias| < 2^31 (64-bit products)",
                lambda d: d.get("max_abs_weight", 0) < 2**24),
           Rule("0 <= eps < 2^30", lambda d: 0 <= d.get("eps", 0) < 2**30),
           Rule("D a power of two (d_log2 0..30)", lambda d: 0 <= d.get("d_log2", 0) <= 30)),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["L"],
    golden="layernorm_qdq",
    notes=("QDQ graphs' LayerNorm {mode: qdq}: three passes over the row (sum, squares, output), "
           "64-bit variance, one 64-bit division per row for 1/std, two 64-bit multiplies per "
           "element. Within rounding of a float LayerNorm of the same input "
           "(docs/qdq-fidelity.md)."),
))

_add(KernelDesc(
    name="isoftmax_s16",
    c_functions={"default": "kl_isoftmax_s16"},
    prototype=("void kl_isoftmax_s16(const int16_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, "
               "int32_t rows, int32_t L, int32_t coeff_a, int32_t coeff_b, int32_t coeff_c, "
               "int32_t log2, int32_t n_levels, int32_t *scratch, int core_id, int n_cores);"),
    dims=("rows", "L"),
    split_doc="rows (each row whole on one core)",
    split=lambda d, n: "rows",
    operands=(
        Operand("x", "in", "int16", ("rows", "L"), "row stride x_rs (int16 elements)", ("x_rs",), "L"),
        Operand("y", "out", "uint8", ("rows", "L"), "row stride y_rs, values in [0, n-1]",
                ("y_rs",), "L"),
        Operand("scratch", "scratch", "int32", ("n_cores * L",), "per core one int32 row"),
    ),
    scratch=lambda d, n, isa: 4 * d["L"] * n,
    scratch_doc="n_cores * 4 * L bytes (int32, 4-byte aligned), every ISA",
    rules=(
        _pos("rows", "L"),
        Rule("log2 >= 1", lambda d: d.get("log2", 1) >= 1),
        Rule("coeff_a >= 0 and coeff_c >= 0", lambda d: d.get("coeff_a", 1) >= 0 and d.get("coeff_c", 0) >= 0),
        Rule("2*ymax*(n_levels-1) + L*ymax < 2^31, ymax = a*(|b|+log2)^2 + c",
             lambda d: _isoftmax_ymax(d) * (2 * (d.get("n_levels", 256) - 1) + d["L"]) <= I32_MAX),
        Rule("n_levels in [2, 256]", lambda d: 2 <= d.get("n_levels", 256) <= 256),
    ),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["L"],
    golden="isoftmax (int16 input, rounded=True)",
    notes=("The softmax of QDQ scores requantized to int16 at ln2/L (no score clips, "
           "docs/qdq-fidelity.md): z = floor(d/log2) by an exact 64-bit multiply for d < 2^16."),
))

_ELTWISE_SPLIT = "rows when rows >= n_cores, else columns"

_add(KernelDesc(
    name="igelu",
    c_functions={"out=int32": "kl_igelu_i32", "out=8bit": "kl_igelu_rq"},
    prototype=("void kl_igelu_i32(const int8_t *x, int32_t x_rs, int32_t *y, int32_t y_rs, "
               "int32_t rows, int32_t cols, int32_t b, int32_t one, int core_id, int n_cores);\n"
               "void kl_igelu_rq(const int8_t *x, int32_t x_rs, void *y, int32_t y_rs, "
               "int32_t rows, int32_t cols, int32_t b, int32_t one, const kl_rq_t *rq, "
               "int core_id, int n_cores);"),
    dims=("rows", "cols"),
    split_doc=_ELTWISE_SPLIT,
    split=_rows_else_cols("rows", "cols"),
    operands=(
        Operand("x", "in", "int8", ("rows", "cols"), "row stride x_rs", ("x_rs",), "cols"),
        Operand("y", "out", "int32|8bit", ("rows", "cols"), "row stride y_rs", ("y_rs",), "cols"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "cols"),
           Rule("b < 0, one > 0, 128*(one + b^2) < 2^31",
                lambda d: d.get("b", -1) < 0 and d.get("one", 1) > 0
                and 128 * (d.get("one", 1) + d.get("b", -1) ** 2) < 2**31)),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["cols"],
    golden="igelu (+ requant_shift)",
))

_add(KernelDesc(
    name="add_rq",
    c_functions={"default": "kl_add_rq"},
    prototype=("void kl_add_rq(const void *a, int a_signed, int32_t a_rs, const kl_rq_t *rq_a, "
               "const void *b, int b_signed, int32_t b_rs, const kl_rq_t *rq_b, void *y, "
               "int32_t y_rs, int32_t rows, int32_t cols, const kl_rq_t *rq_out, int core_id, "
               "int n_cores);"),
    dims=("rows", "cols"),
    split_doc=_ELTWISE_SPLIT,
    split=_rows_else_cols("rows", "cols"),
    operands=(
        Operand("a", "in", "int8|uint8", ("rows", "cols"), "row stride a_rs", ("a_rs",), "cols"),
        Operand("b", "in", "int8|uint8", ("rows", "cols"), "row stride b_rs", ("b_rs",), "cols"),
        Operand("y", "out", "8bit", ("rows", "cols"), "row stride y_rs", ("y_rs",), "cols"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "cols"), *_RQ_RULES),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["cols"],
    golden="requant_shift(requant_shift(a) + requant_shift(b))",
    notes="QuantLib residual pattern RQ(RQ(a) + RQ(b)) (peer Kernels_Integer_Add_Regular_RQ).",
))


_add(KernelDesc(
    name="add_rq_x",
    c_functions={"default": "kl_add_rq_x"},
    prototype=("void kl_add_rq_x(const void *a, int a_type, int32_t a_rs, const kl_rq_t *rq_a, "
               "const void *b, int b_type, int32_t b_rs, const kl_rq_t *rq_b, void *y, "
               "int y_type, int32_t y_rs, int32_t rows, int32_t cols, const kl_rq_t *rq_out, "
               "int core_id, int n_cores);"),
    dims=("rows", "cols"),
    split_doc=_ELTWISE_SPLIT,
    split=_rows_else_cols("rows", "cols"),
    operands=(
        Operand("a", "in", "int8|uint8|int16", ("rows", "cols"), "row stride a_rs; a_type KL_DT_*",
                ("a_rs",), "cols"),
        Operand("b", "in", "int8|uint8|int16", ("rows", "cols"), "row stride b_rs; b_type KL_DT_*",
                ("b_rs",), "cols"),
        Operand("y", "out", "int8|uint8|int16", ("rows", "cols"),
                "row stride y_rs; y_type KL_DT_* (int16: rq_out.n_levels = 65536)", ("y_rs",), "cols"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "cols"), Rule("rq.shift in [0, 62]", lambda d: 0 <= d.get("shift", 0) <= 62),
           Rule("|a*mul_a| + |b*mul_b| < 2^31 (int32 sum)", lambda d: True)),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["cols"],
    golden="requant_shift(requant_shift(a) + requant_shift(b)) (any n_levels)",
    notes="kl_add_rq for the int16 residual stream of QDQ graphs (planner/transforms/int16.py).",
))


_add(KernelDesc(
    name="lut8",
    c_functions={"default": "kl_lut8"},
    prototype=("void kl_lut8(const void *x, int x_signed, int32_t x_rs, const uint8_t *table, "
               "void *y, int32_t y_rs, int32_t rows, int32_t cols, int core_id, int n_cores);"),
    dims=("rows", "cols"),
    split_doc=_ELTWISE_SPLIT,
    split=_rows_else_cols("rows", "cols"),
    operands=(
        Operand("x", "in", "int8|uint8", ("rows", "cols"), "row stride x_rs", ("x_rs",), "cols"),
        Operand("table", "param", "int8|uint8", ("256",),
                "IR Lut table (256 entries, index x - in_lo), as bytes"),
        Operand("y", "out", "int8|uint8", ("rows", "cols"), "row stride y_rs", ("y_rs",), "cols"),
    ),
    scratch=lambda d, n, isa: 0,
    scratch_doc="none",
    rules=(_pos("rows", "cols"),),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["cols"],
    golden="lut8",
    notes="IR op Lut: the GELU of QDQ graphs (exact erf GELU per input code, docs/qdq-fidelity.md).",
))


# ------------------------------------------------------------------------------------------
# depth-first MHSA (kl_mhsa.c)
# ------------------------------------------------------------------------------------------

MHSA_G = 6  # KL_MHSA_G of kernel_lib.h: query rows per group (one DSP register block)
SM_LUT_BYTES = 1024  # KL_SM_LUT_WORDS int32
SOFTMAX_KINDS = {"none": 0, "isoftmax": 1, "itamax": 2, "itapartialmax": 3}  # KL_SM_*


def mhsa_row_groups(rows: int, n_cores: int) -> int:
    """Groups of MHSA_G query rows kl_mhsa_chunk runs for a chunk of `rows` rows split across
    `n_cores`: its per-head weights (W_o's head slice, FWSA W_f and w_row) are streamed once per
    group (what reading them in place from flash costs)."""
    if rows <= 0:
        return 0
    used = min(rows, n_cores)
    base, extra = divmod(rows, used)
    return extra * -(-(base + 1) // MHSA_G) + (used - extra) * -(-base // MHSA_G)


def _a8(n: int) -> int:
    return (n + 7) // 8 * 8


def _sm_needs_lut(d: Dims) -> bool:
    """A softmax table is built in scratch: iSoftmax / ITAMax without a prepared table (int16
    scores, flag wide_scores, use none)."""
    return d.get("softmax", 1) in (1, 2) and not d.get("lut_given", 0) and not d.get("wide_scores", 0)


def _mhsa_core_bytes(S: int, D: int, P: int, kmax: int, lut: bool, rterm: bool, obuf: bool,
                     qbuf: bool, isa: str, wide: bool = False, zp: bool = False) -> int:
    """Per-core scratch of the chunk kernel / block driver (layout of kl_mhsa.c: matmul
    scratch | softmax table | row term | G score rows (int16 when wide) | G O_h rows | G query
    rows | zero-point vector and G query-row and G probability-row corrections)."""
    n = _a8(mm_scratch_per_core(kmax, isa))
    n += SM_LUT_BYTES if lut else 0
    n += _a8(4 * MHSA_G) if rterm else 0
    n += _a8(MHSA_G * S * (2 if wide else 1))
    n += _a8(MHSA_G * P) if obuf else 0
    n += _a8(MHSA_G * D) if qbuf else 0
    n += _a8(kmax) + 2 * _a8(4 * MHSA_G) if zp else 0
    return n


def mhsa_chunk_scratch_per_core(d: Dims, isa: str) -> int:
    """kl_mhsa_chunk_scratch: dims S, D, P; flags fwsa, row_term, softmax (KL_SM_*),
    lut_given, fused_out (output projection accumulated), zp_k / zp_v (Q/K or V zero points)."""
    fwsa = bool(d.get("fwsa", 0))
    return _mhsa_core_bytes(d["S"], d["D"], d["P"], max(d["D"], d["S"], d["P"], 1),
                            _sm_needs_lut(d), fwsa and bool(d.get("row_term", 0)),
                            bool(d.get("fused_out", 1)), fwsa, isa, bool(d.get("wide_scores", 0)),
                            bool(d.get("zp_k", 0) or d.get("zp_v", 0)))


def mhsa_block_scratch(d: Dims, n_cores: int, isa: str) -> int:
    """kl_mhsa_block_scratch: dims S, E, P; flags fwsa, row_term, softmax, lut_given,
    shared_kv (1: a barrier is given, or n_cores == 1: one K_h/V_h^T copy for all cores),
    zp_k / zp_v (zero points of Q/K, of V)."""
    fwsa = bool(d.get("fwsa", 0))
    S, E, P = d["S"], d["E"], d["P"]
    zp_k = not fwsa and bool(d.get("zp_k", 0))
    core = _mhsa_core_bytes(S, E if fwsa else P, P, max(E, S, P, 1), _sm_needs_lut(d),
                            fwsa and bool(d.get("row_term", 0)), True, True, isa,
                            bool(d.get("wide_scores", 0)), zp_k or bool(d.get("zp_v", 0)))
    kv = sum(mhsa_kv_bytes({"S": S, "P": P, "fwsa": int(fwsa), "zp_k": int(zp_k)}).values())
    copies = 1 if (d.get("shared_kv", 1) or n_cores <= 1) else n_cores
    return copies * kv + n_cores * core


def mhsa_macs(d: Dims) -> int:
    """MACs of one MHSA block (block driver): Q/K/V (FWSA: I*, V) projections, scores, ·V
    and the output projection."""
    S, E, P, H = d["S"], d["E"], d["P"], d["H"]
    e_out = d.get("E_out", E)
    if d.get("fwsa", 0):
        qk = H * (S * E * E + S * S * E) + (H * S * E if d.get("row_term", 0) else 0)
    else:
        qk = 2 * S * E * H * P + H * S * S * P
    return qk + S * E * H * P + H * S * S * P + S * H * P * e_out


_SM_RULES = (
    Rule("softmax input (scores RQ) signed when a softmax follows",
         lambda d: d.get("softmax", 1) == 0 or d.get("scores_signed", 1) == 1),
    Rule("iSoftmax coefficients as kernel isoftmax (log2 >= 1, ymax*(n-1) < 2^31, ymax*S < 2^31)",
         lambda d: d.get("softmax", 1) != 1 or (
             d.get("log2", 1) >= 1 and _isoftmax_ymax(d) * (d.get("n_levels", 256) - 1)
             <= I32_MAX and _isoftmax_ymax(d) * d.get("S", d.get("L", 1)) <= I32_MAX)),
    Rule("ITAMax / ITAPartialMax: n_levels a power of two in [2, 256]",
         lambda d: d.get("softmax", 1) not in (2, 3)
         or d.get("n_levels", 256) in (2, 4, 8, 16, 32, 64, 128, 256)),
    Rule("wide (int16) scores, rq_s.n_levels = 65536: iSoftmax only, with the rounded "
         "normalisation (the Softmax node's rounded = True, as kl_isoftmax_s16)",
         lambda d: not d.get("wide_scores", 0) or d.get("softmax", 1) == 1),
)

_MHSA_NOTES = (
    "Depth-first: the S x S map never exists; per core at most G = 6 score rows (G x S bytes) "
    "are live. Every matmul goes through kl_gemm_block (Arm DSP path on M4/M7). Bit-exact with "
    "planner.golden.mhsa.mhsa_depth_first (standard and FWSA form). Softmax through a 256-entry "
    "int32 table (kl_softmax_lut, a model constant: pass it in kl_softmax_t.lut to avoid "
    "building it per call).")

_add(KernelDesc(
    name="softmax_rows",
    c_functions={"default": "kl_softmax_rows", "lut": "kl_softmax_lut"},
    prototype=("void kl_softmax_lut(const kl_softmax_t *sm, int32_t *lut);\n"
               "void kl_softmax_rows(const int8_t *x, int32_t x_rs, uint8_t *y, int32_t y_rs, "
               "int32_t rows, int32_t L, const kl_softmax_t *sm, void *scratch, int core_id, "
               "int n_cores);"),
    dims=("rows", "L"),
    split_doc="rows (each row whole on one core)",
    split=lambda d, n: "rows",
    operands=(
        Operand("x", "in", "int8", ("rows", "L"), "row stride x_rs", ("x_rs",), "L"),
        Operand("y", "out", "uint8", ("rows", "L"), "row stride y_rs; y == x allowed (in place)",
                ("y_rs",), "L"),
        Operand("scratch", "scratch", "int32", ("n_cores * 256",),
                "per core one 256-entry table when sm->lut is NULL (iSoftmax, ITAMax)"),
    ),
    scratch=lambda d, n, isa: n * (SM_LUT_BYTES if _sm_needs_lut(d) else 0),
    scratch_doc=("n_cores * 1024 bytes (4-byte aligned) for iSoftmax / ITAMax without a "
                 "prepared table (kl_softmax_t.lut), else 0"),
    rules=(_pos("rows", "L"), *_SM_RULES),
    cost_unit="element",
    cost=lambda d: d["rows"] * d["L"],
    golden="isoftmax / itamax / ita_partial_max",
    notes=("Flags (dict keys, not loop dims): softmax (KL_SM_*: 0 none, 1 isoftmax, 2 itamax, "
           "3 itapartialmax), lut_given. Same results as kl_isoftmax / kl_itamax / "
           "kl_ita_partial_max; per element one table load instead of the polynomial."),
))

_add(KernelDesc(
    name="mhsa_chunk",
    c_functions={"default": "kl_mhsa_chunk", "scratch": "kl_mhsa_chunk_scratch"},
    prototype=("void kl_mhsa_chunk(const kl_attn_t *a, int32_t rows, void *scratch, int core_id, "
               "int n_cores);  /* struct kl_attn_t: kernel_lib.h */\n"
               "size_t kl_mhsa_chunk_scratch(const kl_attn_t *a);"),
    dims=("rows", "S", "D", "P", "E_out"),
    split_doc=("query rows of the chunk (balanced; cores beyond `rows` idle): every row is "
               "independent (full score rows on one core), results do not depend on n_cores"),
    split=lambda d, n: "rows",
    operands=(
        Operand("q", "in", "int8|uint8", ("rows", "D"),
                "standard: Q_h rows of the chunk (q + r0*q_rs + h*P); FWSA: X rows", ("q_rs",),
                "D"),
        Operand("k", "in", "int8|uint8", ("S", "D"),
                "standard: K_h [S][P] token-major (k + h*P, k_rs = H*P or P); FWSA: X [S][E]",
                ("k_rs",), "D"),
        Operand("w_f", "param", "int8", ("D", "D"), "FWSA only: W_f of the head, [out][in]"),
        Operand("b_f", "param", "int32", ("D",), "FWSA only, may be NULL"),
        Operand("w_row", "param", "int8", ("D",), "FWSA row term (no-softmax blocks), or NULL"),
        Operand("v", "in", "int8|uint8", ("P", "S"),
                "v_trans = 1: V_h^T [P][S] (fast); v_trans = 0: V_h [S][P] token-major "
                "(v + h*P, v_rs = H*P; columns gathered per group of rows, ~3 instr/element "
                "of V_h per group on arm-dsp)", ("v_rs",), "S"),
        Operand("o", "out", "8bit", ("rows", "P"),
                "when acc == NULL: head-interleaved [S][H][P] (o + r0*o_rs + h*P, o_rs = H*P)",
                ("o_rs",), "P"),
        Operand("w_o", "param", "int8", ("E_out", "P"),
                "when acc != NULL: the head's column slice of W_o [E_out][H*P] (w_o + h*P, "
                "w_o_rs = H*P)", ("w_o_rs",), "P"),
        Operand("acc", "inout", "int32", ("rows", "E_out"),
                "when acc != NULL: acc (acc_mode KL_ACC_STORE) = or (KL_ACC_ADD) += O_h . W_o^T "
                "(+ b_o when b_o != NULL)", ("acc_rs",), "E_out"),
        Operand("scratch", "scratch", "int8", ("n_cores * kl_mhsa_chunk_scratch",),
                "per core: matmul scratch (arm-dsp 12*max(D,S,P)) | softmax table 1024 "
                "(iSoftmax/ITAMax without sm.lut) | FWSA row term 4*G | G*S score rows | "
                "G*P O_h rows (fused output) | G*D I* rows (FWSA), each rounded up to 8; "
                "8-byte aligned", align=DSP_SCRATCH_ALIGN),
    ),
    scratch=lambda d, n, isa: n * mhsa_chunk_scratch_per_core(d, isa),
    scratch_doc=("n_cores * per_core, per_core = A8(mm(max(D,S,P))) + 1024*lut + A8(24)*rowterm "
                 "+ A8(6*S) + A8(6*P)*fused_out + A8(6*D)*fwsa, A8 = round up to 8, mm = 12*K on "
                 "arm-dsp and 0 otherwise, + A8(max(D,S,P)) + 2*A8(24) with zero points "
                 "(mhsa_chunk_scratch_per_core); flags as dict keys fwsa, row_term, softmax, "
                 "lut_given, fused_out, zp_k, zp_v"),
    rules=(_pos("rows", "S", "D", "P"),
           Rule("int32 score accumulators: D * 255 * 255 + |row term| < 2^31",
                lambda d: d["D"] * 255 * 255 < 2**31 - 2**24),
           Rule("int32 O_h accumulators: S * 255 * 128 < 2^31", lambda d: d["S"] < 65000),
           *_SM_RULES, *_RQ_RULES),
    cost_unit="MAC",
    cost=lambda d: d["rows"] * (d["S"] * d["D"] + d["S"] * d["P"] + d["P"] * d.get("E_out", 0)
                                + (d["D"] * d["D"] if d.get("fwsa", 0) else 0)),
    golden="one (head, chunk) step of planner.golden.mhsa.mhsa_depth_first",
    notes=_MHSA_NOTES + (" FWSA when a->w_f != NULL: q is X rows, k is X, D = E, the query rows "
                         "are I* = RQ_i(X.W_f^T + b_f) (docs/fwsa.md). Efficiency (arm-dsp): rows "
                         "per core a multiple of 6 (groups of 6 rows; a rest of 3 / 5 is computed "
                         "as 4 / 6 when the next rows exist and the output projection is fused)."),
))

_add(KernelDesc(
    name="mhsa_block",
    c_functions={"default": "kl_mhsa_block", "scratch": "kl_mhsa_block_scratch"},
    prototype=("void kl_mhsa_block(const kl_mhsa_t *m, int core_id, int n_cores);  "
               "/* struct kl_mhsa_t: kernel_lib.h */\n"
               "size_t kl_mhsa_block_scratch(const kl_mhsa_t *m, int n_cores);"),
    dims=("S", "E", "H", "P", "E_out", "chunk"),
    split_doc=("per head the S tokens of the K_h / V_h^T projections (then the barrier), and the "
               "rows of every chunk (balanced); without a barrier every core projects K/V "
               "itself (no synchronization). The final RQ_o runs on each core's own rows."),
    split=lambda d, n: "chunk rows",
    operands=(
        Operand("x", "in", "int8", ("S", "E"), "token-major, row stride x_rs", ("x_rs",), "E"),
        Operand("w_q, w_k, w_v", "param", "int8", ("H*P", "E"),
                "[out][in] (w_q/w_k NULL in FWSA form); biases [H*P] may be NULL; RQ per tensor "
                "or per column (mul_sc)"),
        Operand("w_f", "param", "int8", ("H", "E", "E"),
                "FWSA form: [h][out][in], b_f [H][E], rq_i per head (mul_sb = E, mul_sc = 1 for "
                "per-row weight scales), w_row [H][E] or NULL"),
        Operand("w_o", "param", "int8", ("E_out", "H*P"), "[out][in], b_o [E_out] may be NULL"),
        Operand("acc", "inout", "int32", ("S", "E_out"),
                "caller memory: the int32 accumulator of the output projection (row stride "
                "acc_rs); part of the block's peak", ("acc_rs",), "E_out"),
        Operand("y", "out", "8bit", ("S", "E_out"), "row stride y_rs", ("y_rs",), "E_out"),
        Operand("scratch", "scratch", "int8", ("kl_mhsa_block_scratch",),
                "copies * (A8(P*S) V_h^T + A8(S*P) K_h (standard form)) + n_cores * per_core "
                "(chunk layout with D = P or E, query rows and O_h rows always); 8-byte aligned",
                align=DSP_SCRATCH_ALIGN),
    ),
    scratch=lambda d, n, isa: mhsa_block_scratch(d, n, isa),
    scratch_doc=("mhsa_block_scratch(dims, n_cores, isa): copies * kv + n_cores * per_core, "
                 "kv = A8(P*S) + A8(S*P) (standard) or A8(P*S) (FWSA), copies = 1 with a barrier "
                 "or one core (flag shared_kv = 1, the default), else n_cores; per_core as "
                 "mhsa_chunk with D = P (standard) or E (FWSA), K = max(E, S, P), fused_out = 1 "
                 "and a query-row buffer G*D always"),
    rules=(_pos("S", "E", "H", "P", "E_out", "chunk"),
           Rule("int32 accumulators: E * 255 * 255 < 2^31 (projections, FWSA scores)",
                lambda d: d["E"] * 255 * 255 < 2**31 - 2**24),
           Rule("the output accumulator (sum over heads + b_o) fits int32 (checked by the "
                "golden model)", lambda d: True),
           *_SM_RULES, *_RQ_RULES),
    cost_unit="MAC",
    cost=mhsa_macs,
    golden="planner.golden.mhsa.mhsa_depth_first (rows = chunk)",
    notes=_MHSA_NOTES + (" Flags as dict keys: fwsa, row_term, softmax, lut_given, shared_kv. "
                         "Multi-core needs kl_mhsa_t.barrier for the shared K/V copy (2 barriers "
                         "per head). Efficiency (arm-dsp): each core's rows of a chunk are "
                         "processed in groups of 6; prefer chunk sizes whose per-core share is "
                         "a multiple of 6 (EEG S=81 on M7: chunk 6 -> 8.62 M, 27 -> 8.91 M, "
                         "9 -> 9.88 M, 81 -> 8.59 M instructions; benchmarks/kernels_bench.py). "
                         "The scratch does not depend on the chunk size."),
))


def get(name: str) -> KernelDesc:
    try:
        return KERNELS[name]
    except KeyError:
        raise KeyError(f"unknown kernel {name!r}; known: {sorted(KERNELS)}") from None


def scratch_bytes(name: str, dims: Dims, n_cores: int, isa: str = "generic") -> int:
    return get(name).scratch_bytes(dims, n_cores, isa)


def check(name: str, dims: Dims, isa: str = "generic") -> list[str]:
    """The rules of kernel `name` violated by `dims` (empty list: all hold)."""
    return get(name).violations(dims, isa)


def as_json() -> dict:
    return {k: v.to_dict() for k, v in KERNELS.items()}


# ------------------------------------------------------------------------------------------
# additions read by the tiler (planner/tiling): cost keys and the MHSA buffer parts
# ------------------------------------------------------------------------------------------

# kernel description name -> the hardware model's `kernel_cost` key of the kernel's own cost
# terms (the gemm core's terms are priced at "gemm" whatever the kernel; see COST_MODEL below).
COST_KEYS: dict[str, str] = {
    "linear": "gemm", "linear_finalize": "requant", "requant": "requant",
    "matmul_nt": "gemm", "matmul_nn": "gemm", "bmatmul": "matmul", "bmatmul_i32": "matmul_i32",
    "transpose8": "requant",
    "isoftmax": "softmax", "itamax": "softmax", "ita_partial_max": "softmax",
    "softmax_rows": "softmax_lut", "ilayernorm": "layernorm", "igelu": "gelu", "add_rq": "add",
    "layernorm_qdq": "layernorm_qdq", "isoftmax_s16": "softmax_s16", "add_rq_x": "add_x",
    "lut8": "lut", "mhsa_chunk": "mhsa_chunk", "mhsa_block": "mhsa_chunk",
    "zp_sums": "gemm", "bmatmul_zp": "matmul",
}


def cost_key(name: str) -> str:
    """The hardware model kernel_cost key of kernel `name`'s own terms."""
    get(name)
    try:
        return COST_KEYS[name]
    except KeyError:
        raise KeyError(f"kernel {name!r} has no cost key (COST_KEYS)") from None


def softmax_lut_bytes(d: Dims) -> int:
    """Bytes of the softmax table (kl_softmax_lut, int32 x 256) the MHSA kernels and
    kl_softmax_rows use for `d["softmax"]` (KL_SM_*): SM_LUT_BYTES for iSoftmax / ITAMax, else 0
    (also 0 with int16 scores, flag wide_scores: computed without a table).
    Passed as kl_softmax_t.lut (a model constant, flag lut_given = 1) it is not in the scratch."""
    return SM_LUT_BYTES if d.get("softmax", 1) in (1, 2) and not d.get("wide_scores", 0) else 0


def mhsa_kv_bytes(d: Dims) -> dict[str, int]:
    """Per head, the resident K/V operands of kl_mhsa_chunk as kl_mhsa_block lays them out in its
    scratch (one copy): {"k_h": A8(S*P) K_h [S][P] (standard form; 0 for FWSA, the keys are X),
    followed by its zero-point correction k_corr [S] int32 when Q/K keep zero points (flag zp_k),
    "v_h": A8(P*S) V_h^T [P][S] (v_trans = 1)}. Without zero points their sum is the `kv` term of
    mhsa_block_scratch."""
    S, P = d["S"], d["P"]
    if d.get("fwsa", 0):
        return {"k_h": 0, "v_h": _a8(P * S)}
    return {"k_h": mhsa_k_corr_offset(S, P) + (4 * S if d.get("zp_k", 0) else 0), "v_h": _a8(P * S)}


def mhsa_k_corr_offset(S: int, P: int) -> int:
    """Byte offset of k_corr [S] int32 in a head's K_h buffer (right after K_h [S][P])."""
    return _a8(S * P)


# ------------------------------------------------------------------------------------------
# cost model: a call's instructions as counts of named features of the C code
# ------------------------------------------------------------------------------------------
#
# A kernel call's cost is a sum of terms, each the count of one feature of the C code (MACs,
# row blocks, columns of a row block, rows, calls, ...) times a coefficient of the hardware
# model, `kernel_cost.<key>.<feature>` in cycles per count (hw_models/*.json; measured as QEMU
# instruction counts by `planner calibrate`, which fits them from harness runs at many shapes).
# The counts below follow the loops of the C sources; the tiler (planner/tiling/ops.py) and the
# calibration (planner/calibrate.py) read them from here.
#
# A term's count is a product over call dims of one function of that dim's extent (`factors`)
# times a constant: the form the tiler sums over the tiles of every loop dim exactly (a factor
# must not depend on another dim that can be tiled). Each count is the busiest core's share on
# `n_cores` cores (kl_split gives the last core ceil(total / n_cores)).
#
# The gemm core (kl_gemm.c, kl_gemm_block) is shared by kl_linear, the matmuls and the attention
# kernel; its features depend on the ISA path:
#   arm-dsp (Cortex-M4/M7): the P rows run in blocks of 6 (4, then 2 and 1 for the rest; a rest
#     of 2 after 6-row blocks as 4 + 4), each block expanded to int16 once, then one column loop
#     per Q row (SMLAD on 4 k per step, K % 4 scalar):
#       mac      per MAC (the SMLADs and their operand loads)
#       mac_c    per MAC of the 2- and 1-row blocks (their C column loop costs more per MAC)
#       col      per (row block, Q row): corrections, loop set-up, epilogue
#       tail     per (row block, Q row, k of the K % 4 rest): the scalar leftover steps
#       expand   per P element expanded to int16 (contiguous rows)
#       expand_strided   the same through the strided path (P columns gathered: kl_matmul_nn)
#       block    per 6- or 4-row block (its expansion and requantization set-up)
#       block_c  per 2- or 1-row block (the C path's set-up)
#       col_rq   per (row block, Q row) when the requantization varies along Q (per output
#                column): the C column loop and a requantization prepared per column
#       out_generic  per output through the generic 64-bit epilogue (int16 outputs, or a
#                requantization that varies along P)
#       call     per kl_gemm_block call (with the calling kernel's own set-up)
#   generic (portable C, RV32): register tiles of 2 P rows x 4 Q rows (rests 1 x 1):
#       mac      per MAC
#       tile_k   per (register tile, k): the operand loads of one step
#       tile     per register tile
#       col      per (P block of 2 or 1 rows, Q row): one kl_epi call
#       out      per output element (its requantization)
#       out_generic  per output through the 64-bit requantization (int16 outputs, or parameters
#                that vary along P) instead of the prepared one
#       call     per kl_gemm_block call
# Element-wise and row-wise kernels: `elem` per element, `row` per row, `call` per call
# (`rq` per requantized element where a kernel optionally requantizes: kl_igelu_rq).

GEMM_FEATURES = {
    "arm-dsp": ("mac", "mac_c", "col", "col_rq", "tail", "expand", "expand_strided", "block",
                "block_c", "out_generic", "call"),
    "generic": ("mac", "tile_k", "tile", "col", "out", "out_generic", "call"),
    "xpulpv2": ("mac", "tile_k", "tile", "col", "out", "out_generic", "call"),
}
_ROWWISE = ("elem", "row", "call")


def cost_features(key: str, isa: str) -> tuple[str, ...]:
    """The features (kernel_cost.<key>.<feature>) the cost model counts for `key` on ISA path
    `isa`: what a hardware model for that path must give."""
    _check_isa(isa)
    if key == "gemm":
        return GEMM_FEATURES[isa]
    if key == "mhsa_chunk":
        return ("group", "call", "row_term", "wide_elem", "wide_row") + \
            (("small_score",) if isa != "arm-dsp" else ())
    if key == "gelu":
        return ("elem", "rq", "row", "call")
    if key in ("add", "add_x"):
        return ("elem", "shift", "row", "call")
    if key == "matmul":
        return ("batch",)
    if key == "matmul_i32":
        return ("mac", "out", "call")
    if key in ("softmax", "softmax_lut", "softmax_s16", "layernorm", "layernorm_qdq", "add",
               "add_x", "lut", "requant"):
        return _ROWWISE
    raise KeyError(f"unknown kernel_cost key {key!r}; known: {sorted(COST_KEY_SET)}")


COST_KEY_SET = ("gemm", "mhsa_chunk", "matmul", "matmul_i32", "softmax", "softmax_lut",
                "softmax_s16", "layernorm", "layernorm_qdq", "gelu", "lut", "add", "add_x",
                "requant")

Factor = Callable[[int], int]


@dataclasses.dataclass(frozen=True)
class CostTerm:
    """count = const * prod(f(dims[d]) for d, f in factors), priced at kernel_cost.key.feature."""

    key: str
    feature: str
    factors: tuple[tuple[str, Factor], ...] = ()
    const: int = 1

    def count(self, dims: Dims) -> int:
        c = self.const
        for d, f in self.factors:
            c *= f(dims[d])
        return c


def _ident(t: int) -> int:
    return t


def share(n_cores: int) -> Factor:
    """The busiest core's part of an extent split over n_cores (kl_split: ceil)."""
    if n_cores <= 1:
        return _ident
    return lambda t: -(-t // n_cores)


def _of(f: Factor, g: Factor) -> Factor:
    if g is _ident:
        return f
    return lambda t: f(g(t))


def dsp_blocks(p: int) -> tuple[int, int, int, int]:
    """(6-, 4-, 2-, 1-row) blocks kl_gemm_block runs for p rows on the Arm DSP path
    (kl_gemm_dsp: 6-row blocks, a rest of 2 after them as 4 + 4, then 4, 2, 1)."""
    p6 = p - 8 if p % 6 == 2 and p >= 8 else p
    n6 = p6 // 6
    r = p - 6 * n6
    n4 = r // 4
    r -= 4 * n4
    return n6, n4, r // 2, r % 2


def _blocks(p: int) -> int:
    return sum(dsp_blocks(p))


def _blocks_asm(p: int) -> int:
    b = dsp_blocks(p)
    return b[0] + b[1]


def _blocks_c(p: int) -> int:
    b = dsp_blocks(p)
    return b[2] + b[3]


def _rows_c(p: int) -> int:
    b = dsp_blocks(p)
    return 2 * b[2] + b[3]


def _k_rest(k: int) -> int:
    return k % 4


def _pblocks(p: int) -> int:
    return p // 2 + p % 2


def _qblocks(q: int) -> int:
    return q // 4 + q % 4


EPILOGUES = ("rq8", "i32", "rq8_q", "rq8_p", "rq16")


def gemm_terms(isa: str, p: tuple[str, Factor], q: tuple[str, Factor], k: tuple[str, Factor],
               const: int = 1, strided: bool = False, epi: str = "rq8") -> tuple[CostTerm, ...]:
    """The gemm core's terms for one kl_gemm_block call on P rows (call dim p[0], the core's rows
    p[1](extent)), Q rows (q) and dot products of K (k); `const` calls of it. strided: P rows
    gathered through a stride (kl_matmul_nn's columns of B). epi: the epilogue (EPILOGUES):
    per-tensor requantization to 8 bits, int32 store/accumulate, 8 bits with parameters varying
    along Q (per output column) or along P, int16 outputs."""
    (pd, pf), (qd, qf), (kd, kf) = p, q, k
    extra: tuple[CostTerm, ...] = ()
    if epi in ("rq16", "rq8_p"):
        extra = (CostTerm("gemm", "out_generic", ((pd, pf), (qd, qf)), const),)
    elif epi == "rq8_q" and isa == "arm-dsp":
        extra = (CostTerm("gemm", "col_rq", ((pd, _of(_blocks, pf)), (qd, qf)), const),)
    if isa == "arm-dsp":
        return extra + (
            CostTerm("gemm", "mac", ((pd, pf), (qd, qf), (kd, kf)), const),
            CostTerm("gemm", "mac_c", ((pd, _of(_rows_c, pf)), (qd, qf), (kd, kf)), const),
            CostTerm("gemm", "col", ((pd, _of(_blocks, pf)), (qd, qf)), const),
            CostTerm("gemm", "tail", ((pd, _of(_blocks, pf)), (qd, qf), (kd, _of(_k_rest, kf))), const),
            CostTerm("gemm", "expand_strided" if strided else "expand", ((pd, pf), (kd, kf)), const),
            CostTerm("gemm", "block", ((pd, _of(_blocks_asm, pf)),), const),
            CostTerm("gemm", "block_c", ((pd, _of(_blocks_c, pf)),), const),
            CostTerm("gemm", "call", (), const),
        )
    return extra + (
        CostTerm("gemm", "mac", ((pd, pf), (qd, qf), (kd, kf)), const),
        CostTerm("gemm", "tile_k", ((pd, _of(_pblocks, pf)), (qd, _of(_qblocks, qf)), (kd, kf)), const),
        CostTerm("gemm", "tile", ((pd, _of(_pblocks, pf)), (qd, _of(_qblocks, qf))), const),
        CostTerm("gemm", "col", ((pd, _of(_pblocks, pf)), (qd, qf)), const),
        CostTerm("gemm", "out", ((pd, pf), (qd, qf)), const),
        CostTerm("gemm", "call", (), const),
    )


def gemm_counts(isa: str, P: int, Q: int, K: int, strided: bool = False,
                epi: str = "rq8") -> dict[tuple[str, str], int]:
    """The gemm core's feature counts of one kl_gemm_block call on P x Q outputs, K long."""
    if P <= 0 or Q <= 0:
        return {}
    d = {"p": P, "q": Q, "k": K}
    out: dict[tuple[str, str], int] = {}
    for t in gemm_terms(isa, ("p", _ident), ("q", _ident), ("k", _ident), 1, strided, epi):
        out[(t.key, t.feature)] = out.get((t.key, t.feature), 0) + t.count(d)
    return out


def rowwise_terms(key: str, rows: str, cols: str, by_rows: bool, n_cores: int,
                  rq: bool = False, shifts: int = 0) -> tuple[CostTerm, ...]:
    """An element-wise / row-wise kernel on rows x cols, split by rows (by_rows) or by columns:
    `elem` per element of the busiest core, `row` per row it loops over, `call` per call
    (`rq` per element as well when it requantizes: kl_igelu_rq; `shift` per element and
    requantization with a shift > 0 -- its 64-bit rounding shift -- in kl_add_rq*, whose three
    requantizations are counted by the flag shifts)."""
    fr, fc = (share(n_cores), _ident) if by_rows else (_ident, share(n_cores))
    terms = [CostTerm(key, "elem", ((rows, fr), (cols, fc))), CostTerm(key, "row", ((rows, fr),)),
             CostTerm(key, "call")]
    if rq:
        terms.insert(1, CostTerm(key, "rq", ((rows, fr), (cols, fc))))
    if shifts:
        terms.insert(1, CostTerm(key, "shift", ((rows, fr), (cols, fc)), shifts))
    return tuple(terms)


def _linear_epi(d: Dims, trans: bool) -> str:
    """The epilogue of a kl_linear call: flags out_i32 (the int32 variants), rq_n / rq_s (the
    requantization varies along the output features N / the rows S)."""
    if d.get("out_i32", 0):
        return "i32"
    along_n, along_s = d.get("rq_n", 0), d.get("rq_s", 0)
    if along_n or along_s:  # P is the x rows S (transposed: the weight rows N)
        return "rq8_p" if (along_s and not trans) or (along_n and trans) else "rq8_q"
    return "rq8"


def _linear_cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
    """kl_linear_*: one kl_gemm_block call; P = the rows of x (transposed, flag trans: the
    weight rows), the split as kl_run_split (rows S when S >= n_cores, else columns N)."""
    by_rows = d["S"] >= n
    fs, fn = (share(n), _ident) if by_rows else (_ident, share(n))
    trans = bool(d.get("trans", 0))
    epi = _linear_epi(d, trans)
    if trans:
        return gemm_terms(isa, ("N", fn), ("S", fs), ("K", _ident), epi=epi)
    return gemm_terms(isa, ("S", fs), ("N", fn), ("K", _ident), epi=epi)


def _matmul2_cost(nn: bool):
    def cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
        by_rows = d["M"] >= n
        fm, fn = (share(n), _ident) if by_rows else (_ident, share(n))
        w = "rq16" if d.get("rq16", 0) else "rq8"
        if nn:  # P = the (strided) columns of B, Q = the rows of A
            return gemm_terms(isa, ("N", fn), ("M", fm), ("K", _ident), strided=True, epi=w)
        return gemm_terms(isa, ("M", fm), ("N", fn), ("K", _ident), epi=w)
    return cost


def _bmm_split(d: Dims, n: int) -> tuple[Factor, Factor, Factor]:
    """The busiest core's share of the batch, M and N of a kl_bmatmul split."""
    if d["M"] >= n:
        return _ident, share(n), _ident
    if d["batch"] * d["M"] >= n:
        return share(max(1, n // max(d["M"], 1))), _ident, _ident
    return _ident, _ident, share(n)


def _bmatmul_cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
    """kl_bmatmul: per batch one kl_gemm_block (b_trans: P = the rows of A, else the gathered
    columns of B) and the batch loop's own work. The split over batch*M rows is taken as a split
    of M (when M >= n_cores) or of the batch (exact on one core)."""
    fb, fm, fn = _bmm_split(d, n)
    w = "rq16" if d.get("rq16", 0) else "rq8"  # int16 outputs (QDQ scores)
    if d.get("b_trans", 1):
        g = gemm_terms(isa, ("M", fm), ("N", fn), ("K", _ident), epi=w)
    else:
        g = gemm_terms(isa, ("N", fn), ("M", fm), ("K", _ident), strided=True, epi=w)
    batched = tuple(dataclasses.replace(t, factors=(("batch", fb),) + t.factors) for t in g)
    return batched + (CostTerm("matmul", "batch", (("batch", fb),)),)


def _zp_sums_cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
    """kl_zp_sums: one gemm call per core of 1 x (its n) sums, K long; gathered rows (cs != 1,
    flag gathered) are the P operand through a stride."""
    if d.get("gathered", 0):
        return _single(gemm_terms(isa, ("n", share(n)), ("one", _one), ("K", _ident), strided=True,
                                  epi="i32"))
    return _single(gemm_terms(isa, ("one", _one), ("n", share(n)), ("K", _ident), epi="i32"))


def _one(_t: int) -> int:
    return 1


def _single(terms: tuple[CostTerm, ...]) -> tuple[CostTerm, ...]:
    """gemm terms of a block of one row: the "one" placeholder dim's factors taken at 1 (its
    count folded into the constant, terms that vanish at one row dropped)."""
    out = []
    for t in terms:
        c = t.const
        for d, f in t.factors:
            c *= f(1) if d == "one" else 1
        if c:
            out.append(dataclasses.replace(t, const=c, factors=tuple((d, f) for d, f in t.factors
                                                                     if d != "one")))
    return tuple(out)


def _bmatmul_zp_cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
    """kl_bmatmul_zp: kl_bmatmul on each core's block, plus per batch the corrections of its
    rows (1 x M sums of K) and columns (1 x N sums of K; gathered through b_rs when B is not
    transposed). Split as _bmatmul_cost."""
    fb, fm, fn = _bmm_split(d, n)
    rows = gemm_terms(isa, ("one", _one), ("M", fm), ("K", _ident), epi="i32")
    if d.get("b_trans", 1):
        cols = gemm_terms(isa, ("one", _one), ("N", fn), ("K", _ident), epi="i32")
    else:
        cols = gemm_terms(isa, ("N", fn), ("one", _one), ("K", _ident), strided=True, epi="i32")
    corr = tuple(dataclasses.replace(t, factors=(("batch", fb),) + t.factors)
                 for t in _single(rows + cols))
    return _bmatmul_cost(d, isa, n) + corr


def _bmatmul_i32_cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
    fm, fn = (share(n), _ident) if d["batch"] * d["M"] >= n else (_ident, share(n))
    return (CostTerm("matmul_i32", "mac", (("batch", _ident), ("M", fm), ("N", fn), ("K", _ident))),
            CostTerm("matmul_i32", "out", (("batch", _ident), ("M", fm), ("N", fn))),
            CostTerm("matmul_i32", "call"))


def _rowwise_cost(key: str, rows: str, cols: str, always_rows: bool = False, rq_flag: str | None = None):
    def cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
        by_rows = always_rows or d[rows] >= n
        return rowwise_terms(key, rows, cols, by_rows, n, bool(rq_flag and d.get(rq_flag, 1)),
                             int(d.get("shifts", 0)) if key in ("add", "add_x") else 0)
    return cost


def _transpose_cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
    return rowwise_terms("requant", "cols", "rows", True, n)


@functools.lru_cache(maxsize=4096)
def _chunk_counts(rows: int, S: int, D: int, P: int, E: int, fwsa: int, row_term: int, sm: int,
                  wide: int, fused: int, rq_i_cols: int, zp_k: int, zp_v: int, isa: str,
                  n: int) -> tuple[tuple[tuple[str, str], int], ...]:
    """Feature counts of one kl_mhsa_chunk call on `rows` query rows, the busiest core's share:
    per group of up to KL_MHSA_G rows (kl_mh_group) its gemm calls (FWSA I* rows R x D, K = D;
    scores R x S, K = D; . V: R x P, K = S; the fused output projection R x E, K = P), its
    softmax rows (table: softmax_lut, int16 scores: its own wide_elem / wide_row, ITAPartialMax:
    softmax), the
    FWSA row term (R x D MACs in C), and the group's and the call's own work. On the generic path
    scores of D <= 4 are computed row by row (small_score per score; per-tensor scores RQ in the
    prepared 32-bit form assumed, as the example graphs have)."""
    own = rows if n <= 1 else -(-rows // n)
    out: dict[tuple[str, str], int] = {("mhsa_chunk", "call"): 1}

    def add(counts: dict) -> None:
        for k, v in counts.items():
            out[k] = out.get(k, 0) + v

    r = 0
    while r < own:
        R = min(MHSA_G, own - r)
        out[("mhsa_chunk", "group")] = out.get(("mhsa_chunk", "group"), 0) + 1
        if fwsa:  # I* rows: RQ_i per head, per output column in the examples
            add(gemm_counts(isa, R, D, D, epi="rq8_q" if rq_i_cols else "rq8"))
            if row_term:
                add({("mhsa_chunk", "row_term"): R * D})
        if zp_k:  # the query rows' zero-point sums (kl_zp_sums_block: 1 x R, D long)
            add(gemm_counts(isa, 1, R, D, epi="i32"))
        if not wide and isa != "arm-dsp" and D <= 4 and not zp_k:
            add({("mhsa_chunk", "small_score"): R * S})
        else:
            add(gemm_counts(isa, R, S, D, epi="rq16" if wide else "rq8"))
        if wide:  # its own int16 softmax, in place (kl_mh_isoftmax_row16)
            add({("mhsa_chunk", "wide_elem"): R * S, ("mhsa_chunk", "wide_row"): R})
        elif sm in (1, 2):
            add({("softmax_lut", "elem"): R * S, ("softmax_lut", "row"): R})
        elif sm == 3:
            add({("softmax", "elem"): R * S, ("softmax", "row"): R, ("softmax", "call"): 1})
        if zp_v:  # the probability rows' sums (1 x R, S long)
            add(gemm_counts(isa, 1, R, S, epi="i32"))
        add(gemm_counts(isa, R, P, S))
        if fused:
            add(gemm_counts(isa, R, E, P, epi="i32"))
        r += R
    return tuple(sorted(out.items()))


def _chunk_cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
    """kl_mhsa_chunk: every count is a function of the chunk's rows (the other dims and flags
    are constants of a layer), see _chunk_counts."""
    consts = (d["S"], d["D"], d["P"], d.get("E_out", 0), int(d.get("fwsa", 0)),
              int(d.get("row_term", 0)), int(d.get("softmax", 1)), int(d.get("wide_scores", 0)),
              int(d.get("fused_out", 1)), int(d.get("rq_i_cols", 0)), int(d.get("zp_k", 0)),
              int(d.get("zp_v", 0)))

    def factor(key: tuple[str, str]) -> Factor:
        return lambda rows: dict(_chunk_counts(rows, *consts, isa, n)).get(key, 0)
    keys: set[tuple[str, str]] = set()
    for rows in (1, 2, 4, 6, MHSA_G * 7 + 5):  # every feature the flags give, whatever the rows
        keys |= {k for k, _ in _chunk_counts(rows, *consts, isa, 1)}
    return tuple(CostTerm(k, f, (("rows", factor((k, f))),)) for k, f in sorted(keys))


def _mhsa_block_cost(d: Dims, isa: str, n: int) -> tuple[CostTerm, ...]:
    """kl_mhsa_block (the whole-block driver): per head the K_h / V_h^T projections over the S
    tokens (FWSA: V_h^T only), per chunk and head the query rows (Q_h) and kl_mhsa_chunk, then
    the output requantization. Counted with the block's dims as constants (it is not tiled)."""
    S, E, H, P, E_out, ch = d["S"], d["E"], d["H"], d["P"], d.get("E_out", d["E"]), d["chunk"]
    fwsa = int(d.get("fwsa", 0))
    out: dict[tuple[str, str], int] = {}

    def add(terms, dims, times):
        for t in terms:
            out[(t.key, t.feature)] = out.get((t.key, t.feature), 0) + times * t.count(dims)
    lin = {"S": S, "N": P, "K": E}
    add(_linear_cost({**lin, "trans": 1}, isa, n), {**lin, "trans": 1}, H)
    if not fwsa:
        add(_linear_cost(lin, isa, n), lin, H)
    full, rest = divmod(S, ch)
    for rows, times in ((ch, full), (rest, 1 if rest else 0)):
        if not times:
            continue
        if not fwsa:
            q = {"S": rows, "N": P, "K": E}
            add(_linear_cost(q, isa, n), q, H * times)
        cd = {"rows": rows, "S": S, "D": E if fwsa else P, "P": P, "E_out": E_out,
              **{k: d[k] for k in ("softmax", "wide_scores", "row_term") if k in d}, "fwsa": fwsa}
        add(_chunk_cost(cd, isa, n), cd, H * times)
    fin = {"rows": S, "cols": E_out}
    add(rowwise_terms("requant", "rows", "cols", S >= n, n), fin, 1)
    return tuple(CostTerm(k, f, (), c) for (k, f), c in sorted(out.items()) if c)


COST_MODEL: dict[str, Callable[[Dims, str, int], tuple[CostTerm, ...]]] = {
    "linear": _linear_cost,
    "linear_finalize": _rowwise_cost("requant", "S", "N"),
    "requant": _rowwise_cost("requant", "rows", "cols"),
    "matmul_nt": _matmul2_cost(False),
    "matmul_nn": _matmul2_cost(True),
    "bmatmul": _bmatmul_cost,
    "bmatmul_zp": _bmatmul_zp_cost,
    "zp_sums": _zp_sums_cost,
    "bmatmul_i32": _bmatmul_i32_cost,
    "transpose8": _transpose_cost,
    "isoftmax": _rowwise_cost("softmax", "rows", "L", True),
    "itamax": _rowwise_cost("softmax", "rows", "L", True),
    "ita_partial_max": _rowwise_cost("softmax", "rows", "L", True),
    "softmax_rows": _rowwise_cost("softmax_lut", "rows", "L", True),
    "ilayernorm": _rowwise_cost("layernorm", "rows", "L", True),
    "layernorm_qdq": _rowwise_cost("layernorm_qdq", "rows", "L", True),
    "isoftmax_s16": _rowwise_cost("softmax_s16", "rows", "L", True),
    "igelu": _rowwise_cost("gelu", "rows", "cols", rq_flag="rq"),
    "add_rq": _rowwise_cost("add", "rows", "cols"),
    "add_rq_x": _rowwise_cost("add_x", "rows", "cols"),
    "lut8": _rowwise_cost("lut", "rows", "cols"),
    "mhsa_chunk": _chunk_cost,
    "mhsa_block": _mhsa_block_cost,
}


def cost_terms(name: str, dims: Dims, isa: str, n_cores: int) -> tuple[CostTerm, ...]:
    """The cost terms of one call of kernel `name` with `dims` (and flags: linear `trans`,
    bmatmul `b_trans`, igelu `rq`, mhsa_chunk as its scratch flags) on `n_cores` cores."""
    _check_isa(isa)
    get(name)
    return COST_MODEL[name](dims, isa, max(1, int(n_cores)))


def cost_counts(name: str, dims: Dims, isa: str, n_cores: int) -> dict[tuple[str, str], int]:
    """{(key, feature): count} of one call (the busiest core's share): what planner calibrate
    fits the coefficients on and the tiler sums over tiles."""
    out: dict[tuple[str, str], int] = {}
    for t in cost_terms(name, dims, isa, n_cores):
        c = t.count(dims)
        if c:
            out[(t.key, t.feature)] = out.get((t.key, t.feature), 0) + c
    return out
