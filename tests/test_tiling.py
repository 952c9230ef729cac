"""The generic CP-SAT tiler against exhaustive enumeration on small layers (same cost), and the
tiling descriptions on synthetic layers."""

from __future__ import annotations

import numpy as np
import pytest

from planner.cost import CostParams, evaluate
from planner.hw import load_hw_model, with_overrides
from planner.ir import Graph, Node, Tensor
from planner.tiling.desc import prune_candidates
from planner.tiling.ops import BuildContext, describe
from planner.tiling.solver import exhaustive, solve_product, solve_variant
from planner.tiling.table import _pareto, build_table


def _linear_graph(s: int, n: int, k: int, bias: bool = True) -> tuple[Graph, Node]:
    t = {
        "x": Tensor("x", (1, s, k), "int8"),
        "w": Tensor("w", (n, k), "int8", np.zeros((n, k), dtype=np.int64)),
        "y": Tensor("y", (1, s, n), "int8"),
    }
    ins = ["x", "w"]
    if bias:
        t["b"] = Tensor("b", (n,), "int32", np.zeros(n, dtype=np.int64))
        ins.append("b")
    node = Node("lin", "Linear", ins, ["y"])
    return Graph("g", t, [node], ["x"], ["y"]), node


def _mhsa_graph(s: int, e: int, p: int, h: int, softmax: bool = True) -> tuple[Graph, Node]:
    hp = h * p
    T = {"x": Tensor("x", (1, s, e), "int8"), "y": Tensor("y", (1, s, e), "int8")}
    for nm, shape in (("wq", (hp, e)), ("wk", (hp, e)), ("wv", (hp, e)), ("wo", (e, hp))):
        T[nm] = Tensor(nm, shape, "int8", np.zeros(shape, dtype=np.int64))
    for nm in ("q", "k", "v", "o_h"):
        T[nm] = Tensor(nm, (1, s, hp), "int8")
    T["sc"] = Tensor("sc", (1, h, s, s), "int8")
    T["pr"] = Tensor("pr", (1, h, s, s), "uint8")
    T["av"] = Tensor("av", (1, h, s, p), "int8")
    q = Node("q", "Linear", ["x", "wq"], ["q"])
    k = Node("k", "Linear", ["x", "wk"], ["k"])
    v = Node("v", "Linear", ["x", "wv"], ["v"])
    sc = Node("scores", "MatMul", ["q", "k"], ["sc"])
    sm = Node("softmax", "Softmax", ["sc"], ["pr"], {"kind": "isoftmax"}) if softmax else None
    av = Node("av", "MatMul", ["pr" if softmax else "sc", "v"], ["av"])
    o = Node("o", "Linear", ["o_h", "wo"], ["y"])
    node = Node("mhsa", "MHSA", ["x", "wq", "", "wk", "", "wv", "", "wo", ""], ["y"],
                {"s": s, "e": e, "p": p, "h": h, "q": q, "k": k, "v": v, "scores": sc, "softmax": sm,
                 "av": av, "o": o, "parts": []})
    return Graph("g", T, [node], ["x"], ["y"]), node


def _ctx(g: Graph, hw_name: str = "gap9", l1: int | None = None):
    hw = load_hw_model(hw_name)
    if l1:
        hw = with_overrides(hw, l1=l1)
    params = CostParams.from_hw(hw)
    return BuildContext(g, params, hw.isa, params.compute_level), params


SOLVERS = {"table": solve_variant, "product": solve_product}


@pytest.mark.parametrize("model", ["table", "product"])
@pytest.mark.parametrize("s,n,k,cap", [(12, 10, 8, 200), (9, 6, 12, 160), (16, 8, 16, 100000)])
def test_cpsat_equals_exhaustive_linear(s, n, k, cap, model):
    """Both CP-SAT encodings (candidate-table front and product model) reach the exhaustive
    optimum over EVERY tile size 1..D and every buffering choice."""
    g, node = _linear_graph(s, n, k)
    ctx, params = _ctx(g)
    for v in describe(ctx, node).variants:
        r = SOLVERS[model](params, prune_candidates(v, params.cores), cap, time_limit=10)
        ex = exhaustive(params, v, cap, all_sizes=True)
        assert (r is None) == (ex is None)
        if r is None:
            continue
        assert r.optimal
        assert r.evaluation.cost == ex.cost, (v.label, r.evaluation.tiles, ex.tiles)
        assert r.evaluation.footprint <= cap
        if model == "table":  # the memory tie-break is exact too
            assert r.evaluation.footprint + r.evaluation.staging == ex.footprint + ex.staging


@pytest.mark.parametrize("cap", [100, 150, 200, 1000])
def test_cpsat_aligned_capacity(cap):
    """With copies packed 4-byte aligned (as the memory planner does), the capacity binds the
    aligned footprint: still the exhaustive optimum."""
    g, node = _linear_graph(7, 5, 6)
    ctx, params = _ctx(g, "stm32h7")
    for v in describe(ctx, node).variants:
        r = solve_variant(params, prune_candidates(v, params.cores), cap, align=4)
        ex = exhaustive(params, v, cap, align=4)
        assert (r is None) == (ex is None)
        if r is not None:
            assert r.evaluation.cost == ex.cost
            assert r.evaluation.footprint + r.evaluation.staging == ex.footprint + ex.staging


def test_table_front_matches_evaluator():
    """Every point of a candidate table's front is what planner.cost.evaluate says of its tiles
    and buffering (cycles, bytes, aligned bytes, activation bytes)."""
    for g, node in (_linear_graph(20, 12, 16), _mhsa_graph(6, 4, 2, 2)):
        ctx, params = _ctx(g)
        for v in describe(ctx, node).variants:
            t = build_table(params, prune_candidates(v, params.cores), align=4)
            assert t is not None and len(t) >= 1
            for i in range(len(t)):
                tiles, double = t.row(i)
                ev = evaluate(params, t.variant, tiles, double)
                al = sum(-(-b.tile_bytes // 4) * 4 * b.copies for b in ev.buffers if b.present
                         and b.access != "inplace" and (b.access == "dma" or b.kind in ("local", "scratch")))
                assert (ev.cost, ev.footprint + ev.staging, al, ev.activation_bytes) == \
                    (t.cost[i], t.nbytes[i], t.aligned[i], t.activation[i])


def test_pareto_front_exact():
    """_pareto against brute-force dominance on random rows (ties: the first row is kept)."""
    rng = np.random.default_rng(1)
    for _ in range(200):
        n = int(rng.integers(1, 40))
        c, nb, al = (rng.integers(0, 5, n) for _ in range(3))
        front = set(_pareto(c, nb, al).tolist())
        brute = {i for i in range(n) if not any(
            j != i and (c[j], nb[j]) <= (c[i], nb[i]) and al[j] <= al[i]
            and ((c[j], nb[j], al[j]) != (c[i], nb[i], al[i]) or j < i) for j in range(n))}
        assert front == brute


def test_cpsat_equals_exhaustive_single_core_k_split():
    """stm32h7 (one core, L1 DTCM): a K split brings the int32 partial sums buffer."""
    g, node = _linear_graph(6, 8, 24)
    ctx, params = _ctx(g, "stm32h7")
    for v in describe(ctx, node).variants:
        for solver in (solve_variant, solve_product):
            r = solver(params, v, 150, time_limit=10)
            ex = exhaustive(params, v, 150)
            assert r is not None and ex is not None
            assert r.evaluation.cost == ex.cost
            if r.evaluation.n_tiles["K"] > 1:
                assert any(b.name == "psum" and b.present for b in r.evaluation.buffers)


@pytest.mark.parametrize("model", ["table", "product"])
@pytest.mark.parametrize("softmax", [True, False])
def test_cpsat_equals_exhaustive_mhsa(softmax, model):
    g, node = _mhsa_graph(6, 4, 2, 2, softmax)
    ctx, params = _ctx(g)
    for cap in (400, 100000):
        for v in describe(ctx, node).variants:
            r = SOLVERS[model](params, prune_candidates(v, params.cores), cap, time_limit=10)
            ex = exhaustive(params, v, cap)
            assert (r is None) == (ex is None), v.label
            if r is not None:
                assert r.evaluation.cost == ex.cost, (v.label, r.evaluation.tiles, ex.tiles)


def test_rowwise_softmax_rows_only():
    g, _ = _mhsa_graph(10, 4, 2, 2)
    node = Node("sm", "Softmax", ["sc"], ["pr"], {"kind": "isoftmax"})
    g.nodes = [node]
    ctx, params = _ctx(g)
    (v,) = describe(ctx, node).variants
    assert [d.name for d in v.loops] == ["R"]  # the row length is never tiled (exact softmax)
    r = solve_variant(params, v, 300, time_limit=10)
    ex = exhaustive(params, v, 300)
    assert r.evaluation.cost == ex.cost


def test_prune_is_exact():
    g, node = _linear_graph(20, 12, 16)
    ctx, params = _ctx(g)
    for v in describe(ctx, node).variants:
        pv = prune_candidates(v, params.cores)
        assert sum(len(d.candidates) for d in pv.loops) <= sum(len(d.candidates) for d in v.loops)
        a = exhaustive(params, v, 400, all_sizes=False)
        b = exhaustive(params, pv, 400, all_sizes=False)
        assert a.cost == b.cost


def test_evaluate_counts_reloads():
    """Order N,S,K: with S split, W is reloaded once per row tile only if N or K is split."""
    g, node = _linear_graph(16, 8, 8, bias=False)
    ctx, params = _ctx(g)
    v = next(v for v in describe(ctx, node).variants if v.label == "order N,S,K")
    ev = evaluate(params, v, {"N": 8, "S": 8, "K": 8})
    w = next(b for b in ev.buffers if b.name == "w")
    assert w.loads == 1 and w.traffic == 64
    ev = evaluate(params, v, {"N": 4, "S": 8, "K": 8})
    x = next(b for b in ev.buffers if b.name == "x")
    w = next(b for b in ev.buffers if b.name == "w")
    assert x.traffic == 2 * 16 * 8  # X re-read for each of the 2 column tiles
    assert w.loads == 2 and w.traffic == 64


@pytest.mark.parametrize("hw_name", ["gap9", "stm32h7", "stm32l4"])
@pytest.mark.parametrize("softmax", [True, False])
def test_mhsa_buffers_from_kernel_description(hw_name, softmax):
    """The depth-first MHSA's kernel buffers are kl_mhsa_chunk's (kernel_lib/descriptions.py):
    scratch = max(projection scratch, the chunk kernel's scratch on min(x, cores) cores), K_h and
    V_h^T as kl_mhsa_block lays them out, the softmax table as a constant, the chunk MACs from the
    description's cost and priced at its cost key; no score / O_h row buffers of the tiler's own."""
    from kernel_lib import descriptions as kd
    from planner.tiling.kernels import isa_path

    s, e, p, h = 13, 8, 4, 2
    g, node = _mhsa_graph(s, e, p, h, softmax)
    ctx, params = _ctx(g, hw_name)
    isa, cores = isa_path(ctx.isa), params.cores
    kind = kd.SOFTMAX_KINDS["isoftmax"] if softmax else 0
    dims = {"S": s, "D": p, "P": p, "E_out": e, "softmax": kind, "lut_given": 1, "fused_out": 1}
    for v in describe(ctx, node).variants:
        bufs = {b.name: b for b in v.buffers}
        assert not {"score_rows", "o_rows"} & set(bufs)
        kv = kd.mhsa_kv_bytes({"S": s, "P": p})
        assert (bufs["k_h"].unit_bytes, bufs["v_h"].unit_bytes) == (kv["k_h"], kv["v_h"])
        proj = kd.get("linear").scratch_bytes({"S": s, "N": p, "K": e}, cores, isa)
        want = {t: max(proj, kd.get("mhsa_chunk").scratch_bytes({**dims, "rows": t}, min(t, cores), isa))
                for t in v.dim("x").candidates}
        got = dict(bufs["scratch"].table) if "scratch" in bufs else {t: 0 for t in want}
        assert got == want
        assert ("softmax_lut" in bufs) == softmax
        if softmax:
            assert bufs["softmax_lut"].unit_bytes == kd.softmax_lut_bytes(dims) > 0
            assert not bufs["softmax_lut"].activation
        # the chunk step's terms are kl_mhsa_chunk's cost terms, summed over the x tiles, once
        # per head: per feature, h x the description's counts of every chunk (full and rest)
        chunk = [t for t in v.compute if t.label == "mhsa_chunk"]
        assert chunk and all(t.dims == ("x",) for t in chunk)
        for tx in v.dim("x").candidates:
            got: dict = {}
            for t in chunk:
                got[(t.key, t.feature)] = got.get((t.key, t.feature), 0) + t.count({"h": 1, "x": tx})
            want: dict = {}
            for start in range(0, s, tx):
                for k, n in kd.cost_counts("mhsa_chunk", {**dims, "rows": min(tx, s - start)}, isa,
                                           cores).items():
                    want[k] = want.get(k, 0) + h * n
            assert {k: n for k, n in got.items() if n} == {k: n for k, n in want.items() if n}, tx
        if softmax:  # the table softmax inside the chunk kernel is priced at its own key
            assert any(t.key == "softmax_lut" for t in chunk)
        assert bufs["acc"].unit_bytes in (4 * e, 4 * s * e)  # int32 (mhsa_block operand acc)


def test_every_kernel_has_a_cost_key():
    """Every kernel's cost terms are priced by keys and features every shipped model has."""
    from kernel_lib import descriptions as kd
    from planner.tiling.kernels import isa_path

    for hw_name in ("gap9", "stm32h7", "stm32l4"):
        hw = load_hw_model(hw_name)
        isa = isa_path(hw.isa)
        for name in kd.KERNELS:
            assert kd.cost_key(name) in kd.COST_KEY_SET, name
        for key in kd.COST_KEY_SET:
            assert set(kd.cost_features(key, isa)) == set(hw.kernel_cost[key]), (hw_name, key)


def test_derived_efficiencies_count_as_assumed():
    """Kernel efficiencies derived from QEMU instruction counts rest on the assumed insn_to_cycle:
    the cost model keeps the assumed uncertainty for them (planner.cost.source_is_assumed)."""
    from planner.cost import (UNCERTAINTY_ASSUMED, UNCERTAINTY_CALIBRATED, estimate_uncertainty,
                              source_is_assumed)

    assert source_is_assumed(None) and source_is_assumed("assumed: x")
    assert source_is_assumed("derived: QEMU instruction count / insn_to_cycle (assumed)")
    assert not source_is_assumed("measured: cycles on the board")
    assert not source_is_assumed("RM0433 memory map")
    for name in ("stm32h7", "stm32l4", "gap9"):
        hw = load_hw_model(name)
        assert estimate_uncertainty(hw, {"kernel_cost.gemm"}) == UNCERTAINTY_ASSUMED
        assert estimate_uncertainty(hw, {"cores"}) == UNCERTAINTY_CALIBRATED
