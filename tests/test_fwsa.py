"""FWSA (Fused-Weight Self-Attention): the offline fold, the fused integer model, the decisions.

A synthetic MHSA is quantized here from float weights (QuantLib-style int8, with non-zero requant
offsets on Q and K so the key-side bias term is exercised); the peer graph Kernels_Integer_Attention
and examples/eeg_block are used when present. Figures: run with -s to print them.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest

from planner.analysis import block_fwsa_figures, fwsa_figures
from planner.errors import PlannerError
from planner.frontend import infer_shapes, load_graph
from planner.golden import ops, run_graph
from planner.golden.mhsa import mhsa_depth_first
from planner.ir import Graph, Node, Requant, Tensor
from planner.transforms.fwsa import (Deviation, apply_fwsa, fuse_qk, fused_copy, fwsa_applicable,
                                     fwsa_deviation, real_fold, run_with_probes, unfuse_qk)
from planner.transforms.mhsa import fuse_mhsa

REPO = Path(__file__).resolve().parents[1]
PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-tests" / "deeploy"
EEG_EXAMPLE = REPO / "examples" / "eeg_block" / "int.onnx"
ECG_EXAMPLE = REPO / "examples" / "ecg_block" / "int.onnx"


# --------------------------------------------------------------------------- synthetic MHSA


def _rq(ratio, add_real=0.0, n_levels=256, signed=True) -> Requant:
    """mul/div ≈ ratio with div = 2^k and mul in [2^15, 2^16); add = add_real·div."""
    ratio = np.asarray(ratio, dtype=np.float64)
    k = max(0, 15 - math.floor(math.log2(float(ratio.max()))))
    div = 1 << k
    mul = np.round(ratio * div).astype(np.int64)
    add = np.round(np.asarray(add_real, dtype=np.float64) * div).astype(np.int64)
    return Requant(mul, add, div, n_levels, signed)


def build_mhsa(s: int, e: int, p: int, h: int, softmax: bool = True, per_head: bool = False,
               offsets: bool = True, seed: int = 0) -> tuple[Graph, np.ndarray, dict]:
    """A float MHSA quantized to the canonical integer IR (one fused MHSA node).

    Float weights N(0, 1/√fan_in) (1/√P folded into W_q), biases N(0, 0.05), inputs N(0, 1);
    int8 symmetric weights, int32 biases on the accumulator scale, and every requantization
    calibrated on the integer pipeline itself (|acc|·mul/div ≤ 120 on the 8 calibration inputs);
    iSoftmax constants from the softmax input scale e = ln2/L (SPEC §A).
    per_head: Q requantized per head (per-column mul), so the scores requant is per head [1,H,1,1].
    offsets: Q and K requant carry a non-zero add (zero offsets 3 and -2): the real Q is
    Q̂ = (acc·mul + add)/div, and its offset reaches the key-side term of the fold.
    Returns the graph, the 8 integer calibration inputs [8][S][E] and the float reference
    (float_block, x_float, s_x, s_y: the real scales of the graph's input and output).
    """
    rng = np.random.default_rng(seed)
    hp = h * p
    wq = rng.normal(0, 1 / math.sqrt(e), (hp, e)) / math.sqrt(p)
    wk, wv = (rng.normal(0, 1 / math.sqrt(e), (hp, e)) for _ in range(2))
    wo = rng.normal(0, 1 / math.sqrt(hp), (e, hp))
    bq, bk, bv, bo = (rng.normal(0, 0.05, n) for n in (hp, hp, hp, e))
    xc = rng.normal(0, 1, (8, s, e))
    s_x = np.abs(xc).max() / 127
    X = np.clip(np.round(xc / s_x), -128, 127).astype(np.int64)

    def qw(w):
        sw = np.abs(w).max() / 127
        return np.round(w / sw).astype(np.int64), sw

    def apply(acc, rq):
        return ops.requant_shift(acc, rq.mul, rq.add, rq.div, rq.n_levels, rq.signed)

    zq, zk = (3, -2) if offsets else (0, 0)
    ints, scales, rqs = {}, {}, {}
    for key, w, b, z in (("q", wq, bq, zq), ("k", wk, bk, zk), ("v", wv, bv, 0)):
        W, sw = qw(w)
        bias = np.round(b / (s_x * sw)).astype(np.int64)
        acc = X @ W.T + bias
        if key == "q" and per_head:
            ratio = np.repeat(120 / np.abs(acc).reshape(-1, h, p).max(axis=(0, 2)), p)
            rq = _rq(ratio, z)
        else:
            rq = _rq(np.array(120 / np.abs(acc).max()), z)
        ints[key], scales[key], rqs[key] = (W, bias), s_x * sw * rq.div / rq.mul, rq
    Q, K, V = (apply(X @ ints[k][0].T + ints[k][1], rqs[k]).reshape(-1, s, h, p).transpose(0, 2, 1, 3)
               for k in ("q", "k", "v"))
    acc_s = Q @ K.transpose(0, 1, 3, 2)                                # [8][H][S][S]
    s_qh = np.asarray(scales["q"]).reshape(-1)
    s_qh = np.resize(s_qh, hp).reshape(h, p)[:, 0]
    sm_attrs = None
    if softmax:
        logits = acc_s * (s_qh * scales["k"])[None, :, None, None]
        big = int(127 * math.log(2) / np.abs(logits).max())
        assert big >= 4, "synthetic logits too large for an int8 softmax input"
        esc = math.log(2) / big
        sm_attrs = {"kind": "isoftmax", "coeff_a": 1, "coeff_b": round(1.353 / esc),
                    "coeff_c": round(0.344 / (0.3585 * esc * esc)), "log2": big, "n_levels": 256}
        ratio_s = s_qh * scales["k"] / esc
    else:
        ratio_s = 120 / np.abs(acc_s).max(axis=(0, 2, 3))
        ratio_s = ratio_s if per_head else np.full(h, ratio_s.min())
    rq_s = _rq(ratio_s)
    rq_s = Requant(rq_s.mul.reshape(1, h, 1, 1) if per_head else rq_s.mul[:1].reshape(()),
                   np.zeros((), np.int64), rq_s.div, 256, True)
    sc = apply(acc_s, rq_s)
    pr = sc if not softmax else ops.isoftmax(sc, 1, sm_attrs["coeff_b"], sm_attrs["coeff_c"], big, 256)
    acc_av = pr @ V
    rq_av = _rq(np.array(120 / np.abs(acc_av).max()))
    m_av = float(rq_av.mul) / rq_av.div
    if softmax:
        s_av = scales["v"] / (255 * m_av)
    else:
        s_av = float(s_qh[0] * scales["k"] * rq_s.div / np.asarray(rq_s.mul).reshape(-1)[0]) \
            * scales["v"] / m_av
    merged = apply(acc_av, rq_av).transpose(0, 2, 1, 3).reshape(-1, s, hp)
    Wo, s_wo = qw(wo)
    bo_i = np.round(bo / (s_av * s_wo)).astype(np.int64)
    acc_o = merged @ Wo.T + bo_i
    rq_o = _rq(np.array(120 / np.abs(acc_o).max()))

    def float_block(xf: np.ndarray) -> np.ndarray:
        """The float MHSA the integer graph quantizes (meaningful without offsets)."""
        qf, kf, vf = (xf @ w.T + b for w, b in ((wq, bq), (wk, bk), (wv, bv)))
        split = lambda t_: t_.reshape(-1, s, h, p).transpose(0, 2, 1, 3)  # noqa: E731
        lg = split(qf) @ split(kf).transpose(0, 1, 3, 2)
        if softmax:
            lg = np.exp(lg - lg.max(-1, keepdims=True))
            lg /= lg.sum(-1, keepdims=True)
        return (lg @ split(vf)).transpose(0, 2, 1, 3).reshape(-1, s, hp) @ wo.T + bo

    ref = {"float_block": float_block, "x_float": xc, "s_x": s_x,
           "s_y": s_av * s_wo * rq_o.div / float(rq_o.mul)}

    t: dict[str, Tensor] = {}

    def const(name, arr, dtype):
        arr = np.asarray(arr, dtype=np.int64)
        t[name] = Tensor(name, tuple(arr.shape), dtype, arr)
        return name

    def act(name, shape, dtype="int8"):
        t[name] = Tensor(name, tuple(shape), dtype)
        return name

    act("x", (1, s, e))
    nodes = []
    for key, perm in (("q", [0, 2, 1, 3]), ("k", [0, 2, 3, 1]), ("v", [0, 2, 1, 3])):
        w = const(f"{key}.w", ints[key][0], "int8")
        bb = const(f"{key}.b", ints[key][1], "int32")
        nodes.append(Node(f"{key}.lin", "Linear", ["x", w, bb], [act(f"{key}.y", (1, s, hp))],
                          {"rq": rqs[key]}))
        nodes.append(Node(f"{key}.rs", "Reshape", [f"{key}.y"], [act(f"{key}.r", (1, s, h, p))],
                          {"shape": [1, s, h, p], "allowzero": False}))
        shp = (1, h, s, p) if perm == [0, 2, 1, 3] else (1, h, p, s)
        nodes.append(Node(f"{key}.tr", "Transpose", [f"{key}.r"], [act(f"{key}.h", shp)], {"perm": perm}))
    nodes.append(Node("scores", "MatMul", ["q.h", "k.h"], [act("sc", (1, h, s, s))], {"rq": rq_s}))
    src = "sc"
    if softmax:
        nodes.append(Node("softmax", "Softmax", ["sc"], [act("pr", (1, h, s, s), "uint8")], sm_attrs))
        src = "pr"
    nodes.append(Node("av", "MatMul", [src, "v.h"], [act("avo", (1, h, s, p))], {"rq": rq_av}))
    nodes.append(Node("merge_t", "Transpose", ["avo"], [act("avt", (1, s, h, p))], {"perm": [0, 2, 1, 3]}))
    nodes.append(Node("merge_r", "Reshape", ["avt"], [act("avr", (1, s, hp))],
                      {"shape": [1, s, hp], "allowzero": False}))
    nodes.append(Node("o.lin", "Linear", ["avr", const("o.w", Wo, "int8"), const("o.b", bo_i, "int32")],
                      [act("y", (1, s, e))], {"rq": rq_o}))
    g = Graph("synthetic_mhsa", t, nodes, ["x"], ["y"], flavour="quantlib")
    infer_shapes(g)
    assert fuse_mhsa(g) == 1
    g.toposort()
    return g, X, ref


def _mhsa(g: Graph) -> Node:
    return next(n for n in g.nodes if n.op == "MHSA")


def _peer(name: str) -> Path:
    d = PEER / name
    if not d.is_dir():
        pytest.skip(f"peer graph {name} absent: {d} not found (../shared/peer-tests beside the repo)")
    return d


def _eeg() -> Path:
    if not EEG_EXAMPLE.is_file():
        pytest.skip(f"EEG example not generated yet: {EEG_EXAMPLE} absent (examples/build_examples.py)")
    return EEG_EXAMPLE


def _samples(g: Graph, n: int, seed: int, lo: int = -128, hi: int = 128) -> list[list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    shape = g.tensors[g.inputs[0]].shape
    return [[rng.integers(lo, hi, size=shape)] for _ in range(n)]


@pytest.fixture(scope="module")
def syn():
    return build_mhsa(16, 24, 8, 4, softmax=True, per_head=True, offsets=True, seed=1)


@pytest.fixture(scope="module")
def syn_nosm():
    return build_mhsa(12, 16, 4, 4, softmax=False, per_head=False, offsets=True, seed=2)


# --------------------------------------------------------------------------- (1) the fold


def _real_q_k(g: Graph, node: Node, x: np.ndarray):
    """Real value of the integer Q and K before rounding: (acc·mul + add)/div, zero points removed."""
    a = node.attrs
    out = []
    for key, zp in (("q", "zp_a"), ("k", "zp_b")):
        lin = a[key]
        w, b = g.tensors[lin.inputs[1]].data, g.tensors[lin.inputs[2]].data
        rq = lin.attrs["rq"]
        acc = (x.reshape(a["s"], a["e"]) @ w.T + b).astype(np.float64)
        val = (acc * rq.mul + rq.add) / rq.div - float(a["scores"].attrs.get(zp, 0))
        out.append(val.reshape(a["s"], a["h"], a["p"]).transpose(1, 0, 2))
    return out


def _fold_residual(g: Graph, x: np.ndarray) -> tuple[float, float, float]:
    node = _mhsa(g)
    f = real_fold(g, node)
    qh, kh = _real_q_k(g, node, x)
    xf = x.reshape(node.attrs["s"], node.attrs["e"]).astype(np.float64)
    worst_row_spread = worst_exact = scale = 0.0
    for h in range(node.attrs["h"]):
        full = qh[h] @ kh[h].T
        kept = (xf @ f.wf[h].T + f.c[h]) @ xf.T      # X·M_h·Xᵀ + key-bias term
        rest = full - kept                              # must be constant along each row
        worst_row_spread = max(worst_row_spread, float(np.ptp(rest, axis=1).max()))
        exact = rest - ((xf @ f.u[h])[:, None] + f.kappa[h])
        worst_exact = max(worst_exact, float(np.abs(exact).max()))
        scale = max(scale, float(np.abs(full).max()))
    return worst_row_spread, worst_exact, scale


def test_fold_is_exact_in_real_arithmetic(syn, syn_nosm) -> None:
    for g, xs, _ in (syn, syn_nosm):
        spread, exact, scale = _fold_residual(g, xs[0])
        # float64 with |Q·Kᵀ| ~ 1e4: agreement to ~1e-12 relative
        assert spread <= 1e-9 * scale, f"Q·Kᵀ − X·M·Xᵀ − key term varies along a row by {spread}"
        assert exact <= 1e-9 * scale, f"row term X·u + κ does not account for the rest: {exact}"
        # the key-side bias term is really there: without it the rest is NOT row-constant
        node = _mhsa(g)
        f = real_fold(g, node)
        assert np.abs(f.c).max() > 0


def test_fold_on_peer_attention() -> None:
    d = _peer("Kernels_Integer_Attention")
    g = load_graph(d / "network.onnx")
    x = np.load(d / "inputs.npz")
    spread, exact, scale = _fold_residual(g, x[list(x.keys())[0]])
    assert spread <= 1e-9 * scale and exact <= 1e-9 * scale


# --------------------------------------------------------------------------- (2) numerical effect


def _score_bounds(gu: Graph, gf: Graph, sample: list[np.ndarray]):
    """Per-element quantization-step bounds of both models' scores around the same real form.

    Unfused: Q = Q̂ + ε_q, K = K̂ + ε_k with |ε| ≤ 1/2, so |Q·Kᵀ − Q̂·K̂ᵀ| ≤ (Σ|K| + Σ|Q|)/2 + P/4,
    then the final rounding 1/2. Fused: |I* − I_real/s_I| ≤ 1/2 + ρ_e(‖x_i‖₁ + 1)/2 + |t_e − 1|·|I|
    (ρ_e = mul_i/div_i, t_e = ρ_e·s_I/s_w the mul rounding), times |x_j| summed, then 1/2 and the
    scores mul rounding. Returns (|Δ| of row-relative scores, its bound, rows without clipping).
    """
    node_u, node_f = _mhsa(gu), _mhsa(gf)
    a = node_f.attrs
    s, e, h = a["s"], a["e"], a["h"]
    fw = a["fwsa"]
    fold = real_fold(gu, node_u)
    env, pu = run_with_probes(gu, sample, use_fwsa=False)
    _, pf = run_with_probes(gf, sample)
    x = env[node_u.inputs[0]]
    xf = x.reshape(s, e).astype(np.float64)
    su, sf = pu[node_u.name]["scores"], pf[node_f.name]["scores"]
    qh, kh = _real_q_k(gu, node_u, x)
    qi, ki = np.round(qh), np.round(kh)  # the integer Q and K (rounding only: clipping asserted off)
    assert np.abs(qi).max() <= 127 and np.abs(ki).max() <= 127, "Q/K clip: bounds do not apply"
    d_all, b_all, ok_all = [], [], []
    for hd in range(h):
        i_real = xf @ fold.wf[hd].T + fold.c[hd]                      # [S][E]
        r_full = fold.m_s[hd] * (qh[hd] @ kh[hd].T) + fold.a_s[hd]    # real unfused score
        row = fold.m_s[hd] * (xf @ fold.u[hd])[:, None]
        r_fused = r_full - (0 if fw.w_row is not None else row)
        b_u = 0.5 + fold.m_s[hd] * (0.5 * np.abs(ki[hd]).sum(1)[None, :]
                                    + 0.5 * np.abs(qi[hd]).sum(1)[:, None] + 0.25 * a["p"])
        rho = (np.asarray(fw.rq_i.mul)[hd].reshape(-1) / fw.rq_i.div) * np.ones(e)
        t = rho * fw.istar_scale[hd] / fw.w_scale[hd]
        beta = (0.5 + rho[None, :] * 0.5 * (np.abs(xf).sum(1)[:, None] + 1)
                + np.abs(t - 1)[None, :] * np.abs(i_real) / fw.istar_scale[hd])
        mu = float(np.asarray(fw.rq_scores.mul)[hd].reshape(-1)[0]) / fw.rq_scores.div
        eta = mu / (fold.m_s[hd] * fw.istar_scale[hd]) - 1
        b_f = (0.5 + mu * beta @ np.abs(xf).T + abs(eta) * fold.m_s[hd] * np.abs(i_real @ xf.T)
               + 1.0 / fw.rq_scores.div + 1e-9)
        # both models lie within their bounds of the real form (the core check)
        unclipped = (np.abs(r_full + 0.5) <= 127) & (np.abs(r_fused + 0.5) <= 127)
        assert np.all((np.abs(su[hd] - r_full) <= b_u)[unclipped]), f"unfused head {hd} off its bound"
        if fw.w_row is None:
            assert np.all((np.abs(sf[hd] - r_fused) <= b_f)[unclipped]), f"fused head {hd} off its bound"
        rows_ok = unclipped.all(axis=1)
        b = b_u + b_f
        rel_u = su[hd] - su[hd].max(1, keepdims=True)
        rel_f = sf[hd] - sf[hd].max(1, keepdims=True)
        d_all.append(np.abs(rel_u - rel_f)[rows_ok])
        b_all.append((b + b.max(1, keepdims=True))[rows_ok])
        ok_all.append(rows_ok)
    return np.concatenate(d_all), np.concatenate(b_all), np.concatenate(ok_all)


def _check_numerics(gu: Graph, gf: Graph, samples, label: str) -> Deviation:
    """(2): scores within their quantization-step bounds, softmax and block within the bounds
    that follow from the softmax input step e; prints the figures."""
    node = _mhsa(gu)
    a = node.attrs
    e_scale = math.log(2) / a["softmax"].attrs["log2"]  # iSoftmax: log2 = round(ln2/e)
    dev = fwsa_deviation(gu, gf, samples)
    d, b, ok = [], [], []
    for smp in samples[:3]:
        di, bi, oki = _score_bounds(gu, gf, smp)
        d.append(di), b.append(bi), ok.append(oki)
    d, b, ok = np.concatenate(d), np.concatenate(b), np.concatenate(ok)
    assert np.all(d <= b), f"{label}: row-relative score deviation beyond its quantization bound"
    delta = dev.scores_max_abs_lsb
    # softmax: ∂p_i/∂x_k = p_i(δ_ik − p_k), so a change of at most δ LSB (step e nats) in every
    # input of a row moves p_i·255 by ≤ 255·e·δ·2p_i(1−p_i) ≤ 255·e·δ/2; +2 LSB for the two
    # floors of the integer softmax (y >> z and y·255 // Σy)
    sm_max_bound = math.ceil(255 * e_scale * delta / 2) + 2
    # mean: the typical probability is 1/S, so E|Δp·255| ≈ 255·e·E|Δx|/S; allow 2× + 0.02
    sm_mean_bound = 2 * 255 * e_scale * dev.scores_mean_abs_lsb / a["s"] + 0.02
    print(f"\n{label}: scores Δ max {delta} LSB, mean {dev.scores_mean_abs_lsb:.3f} (row-relative; "
          f"per-element bound mean {b.mean():.1f}, {ok.mean():.0%} rows unclipped); softmax Δ max "
          f"{dev.softmax_max_abs_lsb} LSB (bound {sm_max_bound}), mean "
          f"{dev.softmax_mean_abs_lsb:.3f} (bound {sm_mean_bound:.3f}), "
          f"{dev.softmax_mismatch_fraction:.1%} differ; block Δ max {dev.block_max_abs_lsb} LSB, "
          f"mean {dev.block_mean_abs_lsb:.3f}, {dev.block_mismatch_fraction:.1%} differ "
          f"[{dev.samples} inputs]")
    assert dev.softmax_max_abs_lsb <= sm_max_bound
    assert dev.softmax_mean_abs_lsb <= sm_mean_bound
    return dev


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel().astype(np.float64), b.ravel().astype(np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_fused_softmax_close_to_unfused_synthetic(syn) -> None:
    g, xs, _ = syn
    gf, dec = fused_copy(g, "on")
    assert dec[0].applied
    dev = _check_numerics(g, gf, [[x[None]] for x in xs], "synthetic S=16 E=24 P=8 H=4")
    # the block output is a different quantized model: judge it against the float block
    # (below); here only a sanity bound (measured 4-6 LSB on this finely-scaled block)
    assert dev.block_max_abs_lsb <= 8


def test_fused_block_as_faithful_to_float_as_unfused() -> None:
    """Block output vs the float MHSA: FWSA's error stays at the unfused model's own level."""
    g, xs, ref = build_mhsa(32, 32, 16, 4, softmax=True, per_head=True, offsets=False, seed=5)
    gf, _ = fused_copy(g, "on")
    xf = ref["x_float"]
    y_float = ref["float_block"](np.clip(np.round(xf / ref["s_x"]), -128, 127) * ref["s_x"])
    yu = np.stack([run_graph(g, [x[None]])["y"][0] for x in xs]) * ref["s_y"]
    yf = np.stack([run_graph(gf, [x[None]])["y"][0] for x in xs]) * ref["s_y"]
    eu, ef = np.sqrt(np.mean((yu - y_float) ** 2)), np.sqrt(np.mean((yf - y_float) ** 2))
    print(f"\nsynthetic S=32 E=32 P=16 H=4 vs float: RMS error unfused {eu:.4f}, fused {ef:.4f} "
          f"(output step {ref['s_y']:.4f}); cos unfused {_cos(yu, y_float):.5f}, "
          f"fused {_cos(yf, y_float):.5f}")
    assert ef <= 1.15 * eu


def test_fused_softmax_close_to_unfused_peer_attention() -> None:
    d = _peer("Kernels_Integer_Attention")
    g = load_graph(d / "network.onnx")
    gf, _ = fused_copy(g, "on")
    x = np.load(d / "inputs.npz")
    samples = [[x[list(x.keys())[0]]]] + _samples(g, 7, 0)
    dev = _check_numerics(g, gf, samples, "peer Attention S=16 E=64 P=8 H=8")
    assert dev.block_max_abs_lsb <= 2


def test_fused_eeg_example_numerics_and_float_fidelity() -> None:
    path = _eeg()
    g = load_graph(path)
    gf, _ = fused_copy(g, "on")
    x = np.load(path.parent / "inputs.npz")["input"]
    samples = [[x]] + _samples(g, 5, 0)
    dev = _check_numerics(g, gf, samples, "eeg_block S=81 E=32 P=32 H=8")
    assert dev.block_max_abs_lsb <= 3
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime absent: no float reference")
    import json
    meta = json.loads((path.parent / "meta.json").read_text())
    s_in, s_out = meta["int_model"]["input_scale"], meta["int_model"]["output_scale"]
    sess = ort.InferenceSession(str(path.parent / "float.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(7)
    xs_f = [np.load(path.parent / "inputs_float.npz")["input"]] + \
        [rng.normal(0, 1, x.shape).astype(np.float32) for _ in range(3)]
    cu, cf = [], []
    for xf in xs_f:
        xi = np.clip(np.round(xf / s_in), -128, 127).astype(np.int64)
        yref = sess.run(None, {sess.get_inputs()[0].name: xf.astype(np.float32)})[0]
        cu.append(_cos(run_graph(g, [xi])[g.outputs[0]] * s_out, yref))
        cf.append(_cos(run_graph(gf, [xi])[gf.outputs[0]] * s_out, yref))
    print(f"eeg_block output vs float.onnx, cos: unfused {np.round(cu, 5).tolist()}, "
          f"fused {np.round(cf, 5).tolist()}")
    assert min(cf) >= min(cu) - 2e-4


def test_no_softmax_block_keeps_row_term(syn_nosm) -> None:
    g, xs, _ = syn_nosm
    node = _mhsa(g)
    ok, why = fwsa_applicable(node)
    assert ok and "row term" in why
    gf = copy.deepcopy(g)
    with pytest.raises(PlannerError, match="row term"):
        fuse_qk(gf, _mhsa(gf), row_term=False)
    fuse_qk(gf, _mhsa(gf))
    assert _mhsa(gf).attrs["fwsa"].w_row is not None
    dev = fwsa_deviation(g, gf, [[x[None]] for x in xs])
    print(f"\nno-softmax synthetic: scores Δ max {dev.scores_max_abs_lsb} LSB, "
          f"{dev.scores_mismatch_fraction:.1%} differ; block Δ max {dev.block_max_abs_lsb}")
    # without a softmax the row term matters: dropping it would shift whole score rows
    assert dev.scores_max_abs_lsb <= 3 and dev.block_max_abs_lsb <= 3


def test_no_softmax_peer_eegformer_closer_to_real_than_unfused() -> None:
    """EEGFormer (no softmax, uint8 input): the unfused model clips Q at -128 for some tokens,
    the fused one never forms Q; against the exact real form both are measured."""
    d = _peer("Models_EEGFormer")
    g = load_graph(d / "network.onnx")
    gf, dec = fused_copy(g, "on")
    assert dec[0].applied and _mhsa(gf).attrs["fwsa"].w_row is not None
    x = np.load(d / "inputs.npz")
    x = x[list(x.keys())[0]]
    node = _mhsa(g)
    f = real_fold(g, node)
    _, pu = run_with_probes(g, [x], use_fwsa=False)
    _, pf = run_with_probes(gf, [x])
    xf = x.reshape(node.attrs["s"], node.attrs["e"]).astype(np.float64)
    worst_u = worst_f = 0.0
    for hd in range(node.attrs["h"]):
        real = ((xf @ f.wf[hd].T + f.c[hd]) @ xf.T + (xf @ f.u[hd])[:, None] + f.kappa[hd])
        real = np.clip(f.m_s[hd] * real + f.a_s[hd], -128, 127)
        worst_u = max(worst_u, float(np.abs(pu[node.name]["scores"][hd] - real).max()))
        worst_f = max(worst_f, float(np.abs(pf[node.name]["scores"][hd] - real).max()))
    dev = fwsa_deviation(g, gf, [[x]])
    print(f"\nEEGFormer (no softmax): scores vs exact real form: unfused max {worst_u:.2f} LSB "
          f"(Q clips), fused max {worst_f:.2f} LSB; fused vs unfused: scores Δ max "
          f"{dev.scores_max_abs_lsb}, block Δ max {dev.block_max_abs_lsb} LSB")
    assert worst_f <= 2.0 and worst_f < worst_u


# --------------------------------------------------------------------------- (3) parameters


def _node_params(g: Graph, node: Node) -> int:
    return sum(g.tensors[i].size for i in node.inputs[1:] if i and g.tensors[i].is_const)


def test_params_after_fusion_match_fwsa_figures(syn, syn_nosm) -> None:
    """The figures count what the fused graph really holds, with and without the row term (the
    no-softmax blocks: synthetic and the peer EEGFormer)."""
    graphs = [syn[0], syn_nosm[0]]
    if EEG_EXAMPLE.is_file():
        graphs.append(load_graph(EEG_EXAMPLE))
    for peer in ("Kernels_Integer_Attention", "Models_EEGFormer"):
        if (PEER / peer).is_dir():
            graphs.append(load_graph(PEER / peer / "network.onnx"))
    for g in graphs:
        node = _mhsa(g)
        a = node.attrs
        fig = block_fwsa_figures(node)
        assert fig == fwsa_figures(a["s"], a["e"], a["p"], a["h"], a["softmax"] is None)
        assert _node_params(g, node) == fig.params_unfused
        gf, dec = fused_copy(g, "on")
        nf = _mhsa(gf)
        assert (nf.attrs["fwsa"].w_row is not None) == (a["softmax"] is None)
        assert _node_params(gf, nf) == fig.params_fused == dec[0].params_after
        assert nf.attrs["fwsa"].w_fused.shape == (a["h"], a["e"], a["e"])
        assert np.abs(nf.attrs["fwsa"].w_fused).max() <= 127
        assert gf.tensors[nf.inputs[1]].dtype == "int8" and gf.tensors[nf.inputs[2]].dtype == "int32"


@pytest.mark.parametrize("peer", ["Models_EEGFormer", "Kernels_Integer_Attention"])
def test_inspect_and_solve_record_the_same_fwsa_ratios(peer, capsys) -> None:
    """`planner inspect` prints and `planner solve` records one set of FWSA ratios (they once
    disagreed on EEGFormer, whose row term only solve counted)."""
    from planner.cli import main
    from planner.solve import SolveOptions, solve

    net = PEER / peer / "network.onnx"
    if not net.is_file():
        pytest.skip(f"peer test graphs not available: {net} is absent (../shared beside the repo)")
    assert main(["inspect", str(net)]) == 0
    out = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(out) if line.startswith("block "))
    cols = out[head].split()
    row = out[head + 2].split()
    printed = (row[cols.index("params")], row[cols.index("params") + 1])  # "params ratio", "MACs ratio"
    (b,) = solve(str(net), "gap9", SolveOptions(fwsa="auto")).plan.blocks
    recorded = (f"{b['fwsa']['param_ratio']:.2f}", f"{b['fwsa']['mac_ratio']:.2f}")
    assert printed == recorded
    # and both are the figures of what the fused graph holds (test above): with the row term
    f = block_fwsa_figures(_mhsa(load_graph(net)))
    assert recorded == (f"{f.param_ratio:.2f}", f"{f.mac_ratio:.2f}")


# --------------------------------------------------------------------------- (4) decisions


def test_auto_refuses_ecg_shape_and_applies_eeg_shape() -> None:
    ecg = load_graph(ECG_EXAMPLE) if ECG_EXAMPLE.is_file() else build_mhsa(66, 16, 2, 8, seed=3)[0]
    eeg = load_graph(EEG_EXAMPLE) if EEG_EXAMPLE.is_file() else build_mhsa(81, 32, 32, 8, seed=4)[0]
    for g, applied in ((ecg, False), (eeg, True)):
        a = _mhsa(g).attrs
        before = list(_mhsa(g).inputs)
        dec = apply_fwsa(g, "auto")
        assert len(dec) == 1 and dec[0].applied is applied, dec[0].reason
        print(f"\nauto S={a['s']} E={a['e']} P={a['p']} H={a['h']}: {dec[0].reason}")
        if applied:
            assert dec[0].params_after < dec[0].params_before and dec[0].macs_after < dec[0].macs_before
            assert "fwsa" in _mhsa(g).attrs
        else:
            assert "harmful" in dec[0].reason and "fwsa" not in _mhsa(g).attrs
            assert _mhsa(g).inputs == before
    # --fwsa on forces it on the harmful shape, off undoes it
    dec = apply_fwsa(ecg, "on")
    assert dec[0].applied and "harmful" in dec[0].reason
    dec = apply_fwsa(ecg, "off")
    assert not dec[0].applied and "fwsa" not in _mhsa(ecg).attrs


def test_auto_with_cost_fn_decides_by_cycles(syn) -> None:
    g = copy.deepcopy(syn[0])
    before = list(_mhsa(g).inputs)
    dec = apply_fwsa(g, "auto", cost_fn=lambda gr, n: 2.0 if "fwsa" in n.attrs else 1.0)
    assert not dec[0].applied and dec[0].cost_after == 2.0 and _mhsa(g).inputs == before
    assert set(g.tensors) == set(syn[0].tensors)
    dec = apply_fwsa(g, "auto", cost_fn=lambda gr, n: 1.0 if "fwsa" in n.attrs else 2.0)
    assert dec[0].applied and "fwsa" in _mhsa(g).attrs


# --------------------------------------------------------------------------- (5) golden vs direct


def _rq_direct(acc: np.ndarray, rq: Requant, h: int) -> np.ndarray:
    mul, add = np.asarray(rq.mul), np.asarray(rq.add)
    mul = mul[h] if mul.ndim == 3 else mul
    add = add[h] if add.ndim == 3 else add
    y = np.floor_divide(acc * mul + add + (rq.div // 2 if rq.div > 1 else 0), rq.div)
    lo, hi = (-(rq.n_levels // 2), rq.n_levels // 2 - 1) if rq.signed else (0, rq.n_levels - 1)
    return np.clip(y, lo, hi)


def _direct_fwsa(g: Graph, node: Node, x: np.ndarray) -> np.ndarray:
    """The fused formula on whole tensors: all heads, all rows at once, heads concatenated."""
    a = node.attrs
    fw = a["fwsa"]
    s, e, p, h = a["s"], a["e"], a["p"], a["h"]
    X = x.reshape(s, e).astype(np.int64)
    wv, bv = g.tensors[a["v"].inputs[1]].data, g.tensors[a["v"].inputs[2]].data
    wo, bo = g.tensors[a["o"].inputs[1]].data, g.tensors[a["o"].inputs[2]].data
    V = _rq_direct(X @ wv.T + bv, a["v"].attrs["rq"], -1)
    heads = []
    rq_av = a["av"].attrs["rq"]
    for hd in range(h):
        istar = _rq_direct(X @ fw.w_fused[hd].T + fw.bias[hd], fw.rq_i, hd)
        acc = istar @ X.T
        if fw.w_row is not None:
            acc = acc + _rq_direct((X @ fw.w_row[hd])[:, None], fw.rq_row, hd)
        sc = _rq_direct(acc, fw.rq_scores, hd)
        sm = a["softmax"]
        pr = sc if sm is None else ops.isoftmax(sc, sm.attrs["coeff_a"], sm.attrs["coeff_b"],
                                                sm.attrs["coeff_c"], sm.attrs["log2"], 256)
        m_av = np.asarray(rq_av.mul).reshape(-1)
        rq_h = Requant(m_av[hd % m_av.size], np.asarray(rq_av.add).reshape(-1)[0], rq_av.div,
                       rq_av.n_levels, rq_av.signed)
        heads.append(_rq_direct(pr @ V[:, hd * p:(hd + 1) * p], rq_h, -1))
    merged = np.concatenate(heads, axis=1)                      # [S][H·P]
    return _rq_direct(merged @ wo.T + bo, a["o"].attrs["rq"], -1)


@pytest.mark.parametrize("which", ["softmax", "no_softmax"])
def test_golden_depth_first_equals_direct_evaluation(which, syn, syn_nosm) -> None:
    g, xs, _ = syn if which == "softmax" else syn_nosm
    gf, _ = fused_copy(g, "on")
    node = _mhsa(gf)
    for x in xs[:3]:
        ref = _direct_fwsa(gf, node, x)
        vals = [gf.tensors[i].data if gf.tensors[i].is_const else x[None] for i in node.inputs]
        for rows in (1, 3, 8, node.attrs["s"]):
            out = mhsa_depth_first(node, vals, rows=rows)
            assert np.array_equal(out.reshape(ref.shape), ref), f"rows={rows}"
        # through the graph runner too
        assert np.array_equal(run_graph(gf, [x[None]])["y"].reshape(ref.shape), ref)


def test_golden_direct_on_eeg_example() -> None:
    path = _eeg()
    g = load_graph(path)
    gf, _ = fused_copy(g, "on")
    node = _mhsa(gf)
    x = np.load(path.parent / "inputs.npz")["input"]
    env = run_graph(gf, [x], keep_all=True)
    ref = _direct_fwsa(gf, node, env[node.inputs[0]])
    assert np.array_equal(env[node.outputs[0]].reshape(ref.shape), ref)


# --------------------------------------------------------------------------- both forms run


def test_fused_node_still_runs_unfused(syn) -> None:
    g, xs, _ = syn
    gf, _ = fused_copy(g, "on")
    for x in xs[:2]:
        ref = run_graph(g, [x[None]])["y"]
        assert np.array_equal(run_graph(gf, [x[None]], unfused=True)["y"], ref)
        env, _ = run_with_probes(gf, [x[None]], use_fwsa=False)
        assert np.array_equal(env["y"], ref)
    # same graph twice: 'before' runs the standard form
    assert fwsa_deviation(gf, gf, [xs[0][None]]) == fwsa_deviation(g, gf, [xs[0][None]])
    unfuse_qk(gf, _mhsa(gf))
    assert _mhsa(gf).inputs == _mhsa(g).inputs and not any(".fwsa." in k for k in gf.tensors)


def test_int32_overflow_names_the_node(syn) -> None:
    g, xs, _ = syn
    gf, _ = fused_copy(g, "on")
    node = _mhsa(gf)
    gf.tensors[node.inputs[2]].data = gf.tensors[node.inputs[2]].data + (2**31 - 10)
    with pytest.raises(PlannerError, match=f"node {node.name}: FWSA I\\* accumulator"):
        run_graph(gf, [xs[0][None]])
