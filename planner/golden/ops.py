"""Exact integer semantics of every operator, on int64 numpy arrays.

This module is the executable specification (../shared/SPEC-integer.md): the C kernel library and
the emitted code must be bit-exact with these functions. Every function takes and returns int64
arrays holding true integer values (unsigned tensors in [0, n-1], signed in [-n/2, n/2-1]).
"""

from __future__ import annotations

import math

import numpy as np

from planner.ir_ops import conv_out, pool_out  # output extents: the IR op table's rules

I32_MIN = -(2**31)
I32_MAX = 2**31 - 1


class RangeError(ArithmeticError):
    """A value that the C code keeps in 32 bits left the int32 range."""


def check_i32(x: np.ndarray, what: str) -> np.ndarray:
    """Raise RangeError when any value of `x` does not fit int32 (the C would silently wrap)."""
    if x.size:
        lo, hi = int(x.min()), int(x.max())
        if lo < I32_MIN or hi > I32_MAX:
            raise RangeError(f"{what} leaves the int32 range: [{lo}, {hi}]")
    return x


def floor_div(a: np.ndarray | int, b: np.ndarray | int) -> np.ndarray:
    return np.floor_divide(a, b)


def trunc_div(a: np.ndarray, b: np.ndarray | int) -> np.ndarray:
    """C-style division, rounding toward zero."""
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    q = np.abs(a) // np.abs(b)
    return np.where((a < 0) != (b < 0), -q, q)


def isqrt(v: np.ndarray) -> np.ndarray:
    """floor(sqrt(v)) exactly, for non-negative int64."""
    v = np.asarray(v, dtype=np.int64)
    r = np.floor(np.sqrt(v.astype(np.float64))).astype(np.int64)
    # float sqrt can be off by one for large v: correct both ways
    r = np.where(r * r > v, r - 1, r)
    r = np.where((r + 1) * (r + 1) <= v, r + 1, r)
    return r


def isqrt_round(v: np.ndarray) -> np.ndarray:
    """round(sqrt(v)) exactly (half up: never a tie for integers), for non-negative int64."""
    r = isqrt(v)
    return np.where(np.asarray(v, dtype=np.int64) - r * r > r, r + 1, r)


def qrange(n_levels: int, signed: bool) -> tuple[int, int]:
    """Clip range of an n-level tensor ([-n/2, n/2-1] signed, QuantLib's ceil for odd n)."""
    if signed:
        c = (n_levels + 1) // 2
        return -c, c - 1
    return 0, n_levels - 1


def log2_exact(div: int, what: str = "div") -> int:
    if div < 1 or div & (div - 1):
        raise ValueError(f"{what} must be a power of two, got {div}")
    return div.bit_length() - 1


def requant_shift(x: np.ndarray, mul: np.ndarray, add: np.ndarray, div: int, n_levels: int,
                  signed: bool) -> np.ndarray:
    """y = clip((x*mul + add + div/2) >> log2(div)); no rounding term when div == 1."""
    s = log2_exact(int(div))
    acc = x * mul + add
    if s > 0:
        acc = (acc + (1 << (s - 1))) >> s
    lo, hi = qrange(n_levels, signed)
    return np.clip(acc, lo, hi)


def isoftmax(x: np.ndarray, coeff_a: int, coeff_b: int, coeff_c: int, log2: int,
             n_levels: int, rounded: bool = False) -> np.ndarray:
    """I-BERT integer softmax over the last axis; unsigned output in [0, n-1]. rounded: the
    normalisation rounds half up, floor((2*y*(n-1) + S)/(2*S)), instead of flooring (the QDQ
    lowering of int16 scores; no -0.5 LSB bias)."""
    xt = x - x.max(axis=-1, keepdims=True)
    z = floor_div(-xt, log2)
    p = xt + z * log2
    # z >= 63 shifts any positive int64 to 0; numpy needs the shift count kept below 64
    y = (coeff_a * (p + coeff_b) ** 2 + coeff_c) >> np.minimum(z, 63)
    total = y.sum(axis=-1, keepdims=True)
    if rounded:
        return floor_div(2 * y * (n_levels - 1) + total, 2 * total)
    return floor_div(y * (n_levels - 1), total)


def _ita_shift(diff: np.ndarray, b: int) -> np.ndarray:
    # floor(diff*B/2^B + 1/2)
    return (diff * b + (1 << (b - 1))) >> b


def itamax(x: np.ndarray, n_levels: int) -> np.ndarray:
    """ITA hardware softmax over the last axis; unsigned output in [0, n-1]."""
    b = log2_exact(n_levels, "n_levels")
    m = x.max(axis=-1, keepdims=True)
    shift = _ita_shift(m - x, b)
    e = ((1 << b) >> np.minimum(shift, 62)).sum(axis=-1, keepdims=True)
    inv = floor_div((n_levels - 1) * (1 << b), e)
    return inv >> shift


def ita_partial_max(x: np.ndarray, group_width: int, n_levels: int) -> np.ndarray:
    """Streaming ITA softmax over groups of the last axis; unsigned output in [0, n/2-1]."""
    b = log2_exact(n_levels, "n_levels")
    length = x.shape[-1]
    groups = length // group_width
    rows = x.reshape(-1, length)
    out = np.empty_like(rows)
    for r, row in enumerate(rows):
        gmax = -(n_levels // 2)
        acc = 0
        for g in range(groups):
            grp = row[g * group_width:(g + 1) * group_width]
            cmax = int(grp.max())
            s = 0
            if cmax > gmax:
                s = int(_ita_shift(np.int64(cmax - gmax), b))
                gmax = cmax
            e_g = int(((1 << b) >> np.minimum(_ita_shift(gmax - grp, b), 62)).sum())
            acc = (acc >> s) + e_g
        inv = ((n_levels // 2 - 1) * (1 << b)) // acc
        # Columns after the last full group can exceed the running max: their shift is negative.
        # The SPEC leaves this open; we define the output as 0 there (the C kernel matches).
        shift = _ita_shift(gmax - row, b)
        out[r] = np.where(shift < 0, 0, inv >> np.clip(shift, 0, 63))
    return out.reshape(x.shape)


def ilayernorm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, d: int,
               n_levels: int) -> np.ndarray:
    """Integer LayerNorm over the last axis (QuantLib iLayerNorm)."""
    length = x.shape[-1]
    mean = trunc_div(x.sum(axis=-1, keepdims=True), length)
    nom = x - mean
    var = floor_div((nom * nom).sum(axis=-1, keepdims=True), length)
    std = isqrt(var + 1)
    y = trunc_div(nom * weight, std) + bias
    y = floor_div(y, d)
    lo, hi = qrange(n_levels, True)
    return np.clip(y, lo, hi)


LN_QDQ_XHAT_BITS = 16  # x_hat = (x - mean)/std carried with 16 fractional bits
LN_QDQ_STD_BITS = 8    # std carried with 8 fractional bits
LN_QDQ_INV_BITS = 30   # 1/std as a 2^30 fixed-point reciprocal


def layernorm_qdq(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, d: int, n_levels: int,
                  in_shift: int, eps: int) -> np.ndarray:
    """Integer LayerNorm of QDQ graphs over the last axis (docs/qdq-fidelity.md, "LayerNorm").

    Unlike iLayerNorm it is built to follow a float LayerNorm of the same input within rounding:
    the input is widened (x*2^in_shift), the mean rounded (not truncated toward zero: a zero point
    makes the sum negative), the variance summed in 64 bits (+ eps, the float epsilon on the
    widened grid), the standard deviation rounded with 8 fractional bits, and x_hat carried with
    16 fractional bits through a rounded 2^30 reciprocal of it (one division per row):
        xw = x*2^k, mean = round(sum(xw)/L), nom = xw - mean, var = floor(sum(nom^2)/L) + eps
        std = max(round(sqrt(var*2^16)), 2^8)           (std*2^8)
        inv = round(2^38/std)                           (2^30/std)
        xh  = (nom*inv + 2^13) >> 14                    (x_hat*2^16)
        y   = clip((xh*weight + bias*2^16) >> (16 + log2 D))
    weight = round(gamma*D/s_out), bias = round(beta*D/s_out) + zp_out*D + D/2 as for iLayerNorm.
    Every intermediate fits int64 for |x| < 2^16, L < 2^15, |weight| < 2^24, |bias| < 2^31."""
    s = log2_exact(int(d), "d")
    xw = np.asarray(x, dtype=np.int64) << in_shift
    length = xw.shape[-1]
    mean = floor_div(2 * xw.sum(axis=-1, keepdims=True) + length, 2 * length)
    nom = xw - mean
    var = floor_div((nom * nom).sum(axis=-1, keepdims=True), length) + eps
    std = np.maximum(isqrt_round(var << (2 * LN_QDQ_STD_BITS)), 1 << LN_QDQ_STD_BITS)
    one = 1 << (LN_QDQ_INV_BITS + LN_QDQ_STD_BITS)
    inv = floor_div(2 * one + std, 2 * std)
    sh = LN_QDQ_INV_BITS - LN_QDQ_XHAT_BITS
    xh = (nom * inv + (1 << (sh - 1))) >> sh
    acc = xh * weight + (np.asarray(bias, dtype=np.int64) << LN_QDQ_XHAT_BITS)
    y = acc >> (LN_QDQ_XHAT_BITS + s)
    lo, hi = qrange(n_levels, True)
    return np.clip(y, lo, hi)


def lut8(x: np.ndarray, table: np.ndarray, in_lo: int) -> np.ndarray:
    """Table lookup of an 8-bit input: y = table[x - in_lo] (in_lo -128 for int8, 0 for uint8)."""
    return np.asarray(table, dtype=np.int64)[np.asarray(x, dtype=np.int64) - in_lo]


def igelu(x: np.ndarray, b: int, one: int) -> np.ndarray:
    """I-BERT GELU polynomial; wide (unclipped) output, followed by a RequantShift."""
    q = np.minimum(np.abs(x), -b)
    poly = np.sign(x) * (one - (q + b) ** 2)
    return x * ((one + poly) >> 1)


def irmsnorm(x: np.ndarray, weight: np.ndarray, d: int, n_levels: int, axis: int = -1) -> np.ndarray:
    axis = axis % x.ndim
    axes = tuple(range(axis, x.ndim))
    length = int(np.prod([x.shape[a] for a in axes]))
    ms = floor_div((x * x).sum(axis=axes, keepdims=True), length)
    std = isqrt(ms + 1)
    y = floor_div(trunc_div(x * weight, std), d)
    lo, hi = qrange(n_levels, True)
    return np.clip(y, lo, hi)


def inonorm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, d: int, mul: int,
            n_levels: int) -> np.ndarray:
    y = floor_div((x * weight + bias) * mul, d)
    lo, hi = qrange(n_levels, True)
    return np.clip(y, lo, hi)


def integer_mean(x: np.ndarray, axes: tuple[int, ...], keepdims: bool) -> np.ndarray:
    """floor(sum/N + 1/2): round half up."""
    n = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    total = x.sum(axis=axes, keepdims=keepdims)
    return floor_div(2 * total + n, 2 * n)


def true_integer_div(x: np.ndarray, delta: int, eps: int, eta: int, y: int) -> np.ndarray:
    coef = (delta * eta) // (y * eta + eps)
    return x * coef


def integer_div(x: np.ndarray, y: np.ndarray, delta: int, eps: int, eta: int) -> np.ndarray:
    """QuantLib IntegerDiv: floor(x*Delta*eta / (y*eta + eps) + 1/2)."""
    num = x * delta * eta
    den = y * eta + eps
    return floor_div(2 * num + den, 2 * den)


def ihardswish(x: np.ndarray, one_over_six: int, six: int, three: int) -> np.ndarray:
    return x * np.clip(x + three, 0, six) * one_over_six


def linear(x: np.ndarray, w_out_in: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """Y[..., n] = sum_k X[..., k] * W[n, k] + b[n] (weights stored [out][in])."""
    acc = np.matmul(x, w_out_in.T)
    if bias is not None:
        acc = acc + bias
    return acc


def conv2d(x: np.ndarray, w: np.ndarray, bias: np.ndarray | None, strides: tuple[int, int],
           pads: tuple[int, int, int, int], dilations: tuple[int, int], group: int) -> np.ndarray:
    """NCHW cross-correlation with zero padding; pads in ONNX order (top, left, bottom, right)."""
    n, c, h, wd = x.shape
    m, cg, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
    sh, sw = strides
    dh, dw = dilations
    oh = conv_out(h, kh, sh, pads[0], pads[2], dh)
    ow = conv_out(wd, kw, sw, pads[1], pads[3], dw)
    out = np.zeros((n, m, oh, ow), dtype=np.int64)
    mg = m // group
    for g in range(group):
        xs = xp[:, g * cg:(g + 1) * cg]
        wg = w[g * mg:(g + 1) * mg]
        for i in range(kh):
            for j in range(kw):
                patch = xs[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * mg:(g + 1) * mg] += np.einsum("nchw,mc->nmhw", patch, wg[:, :, i, j])
    if bias is not None:
        out += bias.reshape(1, -1, 1, 1)
    return out


def maxpool(x: np.ndarray, kernel: tuple[int, ...], strides: tuple[int, ...], pads: tuple[int, ...],
            ceil_mode: bool) -> np.ndarray:
    """N-D max pooling over the trailing len(kernel) axes; padding never wins (-inf)."""
    nd = len(kernel)
    spatial = x.shape[-nd:]
    out_shape = [pool_out(spatial[a], kernel[a], strides[a], pads[a], pads[a + nd], ceil_mode)
                 for a in range(nd)]
    neg = np.iinfo(np.int64).min
    pad_width = [(0, 0)] * (x.ndim - nd) + [
        (pads[a], pads[a + nd] + kernel[a] + strides[a] * out_shape[a]) for a in range(nd)]
    xp = np.pad(x, pad_width, constant_values=neg)
    out = np.full(x.shape[:-nd] + tuple(out_shape), neg, dtype=np.int64)
    for idx in np.ndindex(*kernel):
        sl = tuple(slice(idx[a], idx[a] + strides[a] * (out_shape[a] - 1) + 1, strides[a]) for a in range(nd))
        out = np.maximum(out, xp[(Ellipsis,) + sl])
    return out


def ceil_log2(v: int) -> int:
    return max(0, math.ceil(math.log2(v))) if v > 0 else 0
