"""Fixed-point requantization and the I-BERT integer constants of frontend B (SPEC-integer.md §A).

Everything here is a pure function of scales (no graph): the QDQ importer (planner/frontend/qdq.py)
uses it to lower each quantized op, and scripts/qdq_fidelity.py sweeps it against float.

Conventions (the golden model's, planner/golden/ops.py):
  RequantShift   y = clip((x*mul + add + 2^(s-1)) >> s),  mul/2^s ~ ratio, 15+ significant bits
  iSoftmax       input scale e = ln2/L (L integer) so that log2 = L exactly
  iGELU          input scale e (zero point 0); output x*floor((one+L)/2) has scale e/one
  iLayerNorm     weight = round(gamma*D/s_out), bias = round(beta*D/s_out) + zp_out*D + D/2
"""

from __future__ import annotations

import math

import numpy as np

from planner.ir import Requant

LN2 = math.log(2.0)
I32_MAX = 2**31 - 1
MIN_BITS = 15          # significant bits of every requantization multiplier (SPEC §A)
MAX_SHIFT = 62         # the kernels' kl_rq_t.shift range
WIDE_LEVELS = 2**30    # clip range of an intermediate (unclipped in practice) int32 requantization

# I-BERT polynomial constants
EXP_A, EXP_B, EXP_C = 0.3585, 1.353, 0.344       # exp(p) ~ A*(p+B)^2 + C on (-ln2, 0]
ERF_A, ERF_B = -0.2888, -1.769                   # erf(u) ~ sgn(u)*(A*(min(|u|,-B)+B)^2 + 1)


class FixedPointError(ValueError):
    pass


def fixed_point(ratio, min_bits: int = MIN_BITS, max_mul: int = I32_MAX,
                max_shift: int = MAX_SHIFT) -> tuple[np.ndarray, int]:
    """(mul, shift) with mul/2^shift ~ ratio (array: one shift for all, the smallest ratio gets
    `min_bits` significant bits), every |mul| <= max_mul."""
    r = np.asarray(ratio, dtype=np.float64)
    if r.size == 0 or not np.all(np.isfinite(r)) or np.any(r < 0):
        raise FixedPointError(f"requantization ratio must be finite and >= 0, got {r}")
    pos = r[r > 0]
    if pos.size == 0:
        return np.zeros(r.shape, dtype=np.int64), 0
    rmin, rmax = float(pos.min()), float(pos.max())
    shift = min_bits - math.floor(math.log2(rmin))
    shift = max(0, min(shift, max_shift))
    while shift > 0 and round(rmax * 2.0**shift) > max_mul:
        shift -= 1
    mul = np.round(r * 2.0**shift).astype(np.int64)
    if int(np.abs(mul).max()) > max_mul:
        raise FixedPointError(f"requantization ratio {rmax} does not fit a 32-bit multiplier")
    return mul, shift


def significant_bits(mul: np.ndarray) -> int:
    m = np.abs(np.asarray(mul, dtype=np.int64))
    m = m[m > 0]
    return int(np.floor(np.log2(m.min()))) + 1 if m.size else 0


def make_requant(ratio, zp_out: int, signed: bool, n_levels: int = 256, extra_add=None,
                 add_limit: int = I32_MAX) -> Requant:
    """RequantShift y = round_half_up(x*ratio + extra_add/2^s) + zp_out, clipped to n_levels.

    extra_add (in units of x*mul, i.e. already multiplied) is added to the add term; the output
    zero point is zp_out*2^s. The shift is lowered (never below MIN_BITS significant bits of the
    smallest mul... unless unavoidable) until |add| fits int32, because the kernels store add in
    32 bits (kl_rq_t.add)."""
    mul, shift = fixed_point(ratio)
    while True:
        add = np.int64(zp_out) * (1 << shift) + (0 if extra_add is None else extra_add(mul, shift))
        add = np.asarray(add, dtype=np.int64)
        if int(np.abs(add).max(initial=0)) <= add_limit or shift == 0:
            break
        shift -= 1
        mul = np.round(np.asarray(ratio, dtype=np.float64) * 2.0**shift).astype(np.int64)
    return Requant(mul=_squeeze(mul), add=_squeeze(add), div=1 << shift, n_levels=n_levels,
                   signed=signed)


def _squeeze(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.int64)
    return a.reshape(()) if a.size == 1 else a


def requant_rel_error(rq: Requant, ratio) -> float:
    """Largest relative error of mul/2^s against the target ratio."""
    r = np.asarray(ratio, dtype=np.float64)
    approx = np.asarray(rq.mul, dtype=np.float64) / rq.div
    ok = r > 0
    return float(np.max(np.abs(np.broadcast_to(approx, r.shape)[ok] / r[ok] - 1.0), initial=0.0))


# ------------------------------------------------------------------------------------------
# iSoftmax
# ------------------------------------------------------------------------------------------

def isoftmax_consts(levels: int) -> dict:
    """Constants of iSoftmax for input scale e = ln2/levels: log2 = round(ln2/e) = levels exactly,
    A = 1, B = round(1.353/e), C = round(0.344/(0.3585*e^2))."""
    e = LN2 / levels
    return dict(kind="isoftmax", coeff_a=1, coeff_b=int(round(EXP_B / e)),
                coeff_c=int(round(EXP_C / (EXP_A * e * e))), log2=int(levels), n_levels=256)


MAX_SOFTMAX_LEVELS = 128  # keeps iSoftmax's y_max*(n-1) and y_max*S far below 2^31 (kl_isoftmax)


def softmax_input_quant(scale: float, zp: int, min_levels: int, signed: bool = True,
                        max_levels: int = MAX_SOFTMAX_LEVELS) -> tuple[float, int, int]:
    """(e', zp', L): the softmax input requantized to e' = ln2/L (so that log2 is exact).

    L = floor(ln2/scale) (at most max_levels) when that is >= min_levels: e' >= scale, the
    calibrated range is still covered (never clips where onnxruntime did not), the zero point is
    re-centred.
    Otherwise (a coarse scale) L = min_levels: e' < scale and the range keeps its top (the row
    maxima, where softmax lives); only the far negative end clips, where exp() is ~0 anyway."""
    lo_q, hi_q = (-128, 127) if signed else (0, 255)
    lo, hi = (lo_q - zp) * scale, (hi_q - zp) * scale
    levels = min(int(math.floor(LN2 / scale + 1e-9)), max_levels)
    if levels >= min_levels:
        e = LN2 / levels
        zp_new = int(round((lo_q + hi_q) / 2 - (lo + hi) / 2 / e))
    else:
        levels = min_levels
        e = LN2 / levels
        # may lie outside the code range (real 0 not representable): iSoftmax subtracts the
        # row maximum, so only the add term of the producer's requantization sees it
        return e, int(hi_q - math.floor(hi / e + 1e-9)), levels
    return e, max(lo_q, min(hi_q, zp_new)), levels


def softmax_scores_int16(scale: float, zp: int, max_levels: int = MAX_SOFTMAX_LEVELS
                         ) -> tuple[float, int]:
    """(e', L) of int16 softmax scores (zero point 0) for onnxruntime's int8 scores (scale, zp):
    the finest e' = ln2/L, L <= max_levels, whose int16 range holds the calibrated range
    [(-128-zp)*scale, (127-zp)*scale] -- no score clips, and the row maxima keep 2^15/L octaves
    below them whatever their height."""
    reach = max(abs(-128 - zp), abs(127 - zp)) * scale
    levels = max(1, min(max_levels, int(math.floor(32767 * LN2 / max(reach, 1e-30)))))
    return LN2 / levels, levels


# ------------------------------------------------------------------------------------------
# iGELU
# ------------------------------------------------------------------------------------------

def igelu_consts(scale: float) -> tuple[int, int, float]:
    """(b, one, out_scale) of iGELU for a zero-point-free input of scale e.

    erf(x/sqrt2) with x = q*e is I-BERT's polynomial in u = q*e_B, e_B = e/sqrt2:
    b = round(-1.769/e_B), one = round(1/(0.2888*e_B^2)), L_int/one ~ erf; then
    GELU(x) = x*(1+erf)/2 ~ q*e*(one+L_int)/(2*one), so the integer q*floor((one+L_int)/2) has
    scale e/one."""
    e_b = scale / math.sqrt(2.0)
    b = int(round(ERF_B / e_b))
    one = int(round(1.0 / (-ERF_A * e_b * e_b)))
    return b, one, scale / one


# ------------------------------------------------------------------------------------------
# iLayerNorm
# ------------------------------------------------------------------------------------------

def ilayernorm_consts(gamma: np.ndarray, beta: np.ndarray, s_out: float, zp_out: int,
                      in_span: int = 255, max_d_log2: int = 16
                      ) -> tuple[np.ndarray, np.ndarray, int]:
    """(weight, bias, D) of iLayerNorm for an output of scale s_out and zero point zp_out.

    iLayerNorm normalises by isqrt(var+1) of the integer input, so the input scale cancels:
    y = floor((trunc(nom*weight/std) + bias)/D) ~ x_hat*gamma/s_out + beta/s_out + zp_out with
    weight = round(gamma*D/s_out), bias = round(beta*D/s_out) + zp_out*D + D/2 (the D/2 turns the
    final floor into round-half-up). D is the largest power of two <= 2^max_d_log2 that keeps
    |weight| < 2^23 (kl_ilayernorm) and nom*weight, |nom| <= in_span, in int32."""
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    gmax = float(np.abs(gamma).max(initial=0.0))
    for d_log2 in range(max_d_log2, -1, -1):
        d = 1 << d_log2
        weight = np.round(gamma * d / s_out).astype(np.int64)
        bias = np.round(beta * d / s_out).astype(np.int64) + zp_out * d + d // 2
        wmax = int(np.abs(weight).max(initial=0))
        if wmax < 2**23 and wmax * in_span <= I32_MAX and int(np.abs(bias).max(initial=0)) <= I32_MAX:
            return weight, bias, d
    raise FixedPointError(f"LayerNorm: gamma up to {gmax} with output scale {s_out} cannot be "
                          "represented (|gamma|/s_out too large for an int32 weight)")


LN_QDQ_MAX_WEIGHT = 2**24  # |weight| bound of kl_layernorm_qdq (64-bit products)


def layernorm_qdq_shift(in_dtype: str) -> int:
    """Input widening of the QDQ LayerNorm: 8-bit inputs are computed on x*2^8 (the rounded mean
    and the variance then resolve 1/256 of an input LSB), 16-bit inputs as they are."""
    return 0 if in_dtype == "int16" else 8


def layernorm_qdq_consts(gamma: np.ndarray, beta: np.ndarray, s_in: float, in_dtype: str,
                         s_out: float, zp_out: int, eps: float, max_d_log2: int = 16
                         ) -> tuple[np.ndarray, np.ndarray, int, int, int]:
    """(weight, bias, D, in_shift, eps_int) of the QDQ LayerNorm (golden ops.layernorm_qdq).

    weight/bias as iLayerNorm's (the input scale cancels in x_hat); eps_int = round(eps/s_w^2) is
    the float epsilon on the widened input grid s_w = s_in/2^in_shift (it matters for rows of a
    few LSB). D is the largest power of two <= 2^max_d_log2 with |weight| < 2^24."""
    gamma = np.asarray(gamma, dtype=np.float64)
    beta = np.asarray(beta, dtype=np.float64)
    k = layernorm_qdq_shift(in_dtype)
    s_w = s_in / (1 << k)
    eps_int = int(round(eps / (s_w * s_w)))
    if eps_int > 2**30:
        raise FixedPointError(f"LayerNorm: epsilon {eps:g} is {eps_int} on the input grid "
                              f"{s_w:g} (more than 2^30)")
    for d_log2 in range(max_d_log2, -1, -1):
        d = 1 << d_log2
        weight = np.round(gamma * d / s_out).astype(np.int64)
        bias = np.round(beta * d / s_out).astype(np.int64) + zp_out * d + d // 2
        if (int(np.abs(weight).max(initial=0)) < LN_QDQ_MAX_WEIGHT
                and int(np.abs(bias).max(initial=0)) <= I32_MAX):
            return weight, bias, d, k, eps_int
    raise FixedPointError(f"LayerNorm: gamma up to {float(np.abs(gamma).max(initial=0))} with "
                          f"output scale {s_out} cannot be represented (|gamma|/s_out too large)")


def add_requants(s_a: float, zp_a: int, span_a: int, s_b: float, zp_b: int, span_b: int,
                 s_o: float, zp_o: int, signed_o: bool, n_levels_o: int = 256
                 ) -> tuple[Requant, Requant, Requant]:
    """(rq_a, rq_b, rq) of the QDQ Add: a*mul_a + b*mul_b at the common scale s_out/2^s (exact,
    unclipped int32), one rounding at the end with every zero point in its add term. span_x is
    the number of codes of input x (256 for 8 bit, 65536 for int16): |x*mul_x| < 2^29."""
    span = max(span_a, span_b, 256)
    mul, s = fixed_point(np.array([s_a / s_o, s_b / s_o]), max_mul=(WIDE_LEVELS // 2 - 1) // span)
    add = zp_o * (1 << s) - zp_a * int(mul[0]) - zp_b * int(mul[1])
    if abs(add) > I32_MAX:
        raise FixedPointError("add term leaves int32")
    rq_a = Requant(np.asarray(mul[0]), np.asarray(0), 1, WIDE_LEVELS, True)
    rq_b = Requant(np.asarray(mul[1]), np.asarray(0), 1, WIDE_LEVELS, True)
    rq = Requant(np.asarray(1), np.asarray(add), 1 << s, n_levels_o, signed_o)
    return rq_a, rq_b, rq
