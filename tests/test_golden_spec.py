"""The golden operators against an independent scalar re-implementation of SPEC-integer.md §B.

The references below are written from the spec's formulas with plain Python integers (no numpy,
no shared helper), element by element, so a slip in the vectorised golden code shows up here.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from planner.golden import ops

RNG_SEEDS = range(5)


def ref_rq(v: int, mul: int, add: int, div: int, n: int, signed: bool) -> int:
    acc = v * mul + add
    y = (acc + div // 2) // div if div > 1 else acc  # floor(acc/div + 1/2)
    lo, hi = (-(n // 2), n // 2 - 1) if signed else (0, n - 1)
    return min(max(y, lo), hi)


def ref_isoftmax(row: list[int], a: int, b: int, c: int, log2: int, n: int) -> list[int]:
    m = max(row)
    ys = []
    for v in row:
        xt = v - m
        z = (-xt) // log2
        p = xt + z * log2
        ys.append((a * (p + b) ** 2 + c) // (2**z))
    s = sum(ys)
    return [(y * (n - 1)) // s for y in ys]


def ref_itamax(row: list[int], n: int) -> list[int]:
    bits = int(math.log2(n))
    m = max(row)
    shifts = [((m - v) * bits + 2 ** (bits - 1)) // 2**bits for v in row]
    e = sum(2**bits // 2**s for s in shifts)
    inv = ((n - 1) * 2**bits) // e
    return [inv // 2**s for s in shifts]


def _trunc(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def ref_layernorm(row: list[int], w: list[int], bias: list[int], d: int, n: int) -> list[int]:
    length = len(row)
    mean = _trunc(sum(row), length)
    nom = [v - mean for v in row]
    var = sum(x * x for x in nom) // length
    std = math.isqrt(var + 1)
    out = []
    for x, wi, bi in zip(nom, w, bias):
        y = (_trunc(x * wi, std) + bi) // d
        out.append(min(max(y, -(n // 2)), n // 2 - 1))
    return out


def ref_gelu(v: int, b: int, one: int) -> int:
    q = min(abs(v), -b)
    sign = (v > 0) - (v < 0)
    poly = sign * (one - (q + b) ** 2)
    return v * ((one + poly) // 2)


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_requant_shift_matches_spec(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-(2**20), 2**20, size=(7, 9))
    x[0, :3] = [-(2**20), 2**20 - 1, 0]
    mul = rng.integers(-300, 3000, size=(9,))
    add = rng.integers(-(2**18), 2**18, size=(7, 1))
    for div, n, signed in ((2**16, 256, True), (2**10, 256, False), (1, 256, True), (2**8, 65536, True)):
        got = ops.requant_shift(x, mul, add, div, n, signed)
        for i in range(7):
            for j in range(9):
                assert got[i, j] == ref_rq(int(x[i, j]), int(mul[j]), int(add[i, 0]), div, n, signed)


def test_requant_rounds_half_up_and_clips_asymmetrically() -> None:
    # -2.5 → -2 and 2.5 → 3 (round half toward +inf); signed range [-128, 127]
    got = ops.requant_shift(np.array([-5, 5, -10**6, 10**6]), 1, 0, 2, 256, True)
    assert got.tolist() == [-2, 3, -128, 127]


@pytest.mark.parametrize("seed", RNG_SEEDS)
@pytest.mark.parametrize("coeffs", [(1, 345, 62395, 255), (1, 173, 15599, 127), (1, 67, 2376, 50)])
def test_isoftmax_matches_spec(seed: int, coeffs: tuple[int, int, int, int]) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(6, 81))
    x[0] = -128
    x[1, :40] = 127
    got = ops.isoftmax(x, *coeffs, 256)
    for r in range(6):
        assert got[r].tolist() == ref_isoftmax(x[r].tolist(), *coeffs, 256)
    assert got.min() >= 0 and got.max() <= 255


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_itamax_matches_spec(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(5, 64))
    got = ops.itamax(x, 256)
    for r in range(5):
        assert got[r].tolist() == ref_itamax(x[r].tolist(), 256)


def test_ita_partial_max_equals_itamax_shape_for_one_group() -> None:
    # With one group covering the row the streaming form differs from ITAMax only by the
    # numerator (n/2-1)*2^B instead of (n-1)*2^B (SPEC §B): check that relation exactly.
    rng = np.random.default_rng(1)
    x = rng.integers(-128, 128, size=(4, 16))
    got = ops.ita_partial_max(x, 16, 256)
    for r in range(4):
        row = x[r].tolist()
        m = max(row)
        shifts = [((m - v) * 8 + 128) // 256 for v in row]
        e = sum(256 // 2**s for s in shifts)
        inv = (127 * 256) // e
        assert got[r].tolist() == [inv // 2**s for s in shifts]


@pytest.mark.parametrize("seed", RNG_SEEDS)
def test_layernorm_matches_spec(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x = rng.integers(-128, 128, size=(4, 32))
    x[0] = 7  # zero variance row
    w = rng.integers(-(2**17), 2**18, size=(32,))
    b = rng.integers(-(2**20), 2**20, size=(32,))
    got = ops.ilayernorm(x, w, b, 2**14, 256)
    for r in range(4):
        assert got[r].tolist() == ref_layernorm(x[r].tolist(), w.tolist(), b.tolist(), 2**14, 256)


@pytest.mark.parametrize("b,one", [(-40, 1743), (-26, 770)])
def test_gelu_matches_spec(b: int, one: int) -> None:
    x = np.arange(-128, 128)
    got = ops.igelu(x, b, one)
    assert got.tolist() == [ref_gelu(v, b, one) for v in range(-128, 128)]


def test_isqrt_exact_for_large_values() -> None:
    v = np.array([0, 1, 2**40 - 1, 2**40, 2**52 + 12345, 2**62 - 1], dtype=np.int64)
    assert ops.isqrt(v).tolist() == [math.isqrt(int(a)) for a in v]


def test_true_integer_div_floors_coefficient_first() -> None:
    # SPEC: coef = floor(16384*200000/400001) = 8191, then x*coef
    assert ops.true_integer_div(np.array([3, -3]), 16384, 1, 200000, 2).tolist() == [3 * 8191, -3 * 8191]


def test_integer_mean_rounds_half_up() -> None:
    x = np.array([[1, 2], [-1, -2], [1, 0]])
    assert ops.integer_mean(x, (1,), False).tolist() == [2, -1, 1]


def test_range_check_names_the_value() -> None:
    with pytest.raises(ops.RangeError, match="accumulator"):
        ops.check_i32(np.array([2**31]), "node X: accumulator")
