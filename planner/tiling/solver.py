"""The ONE generic tiler: any `Variant` in, tile sizes and buffering out.

Two encodings of the same problem (both mirror `planner.cost.evaluate` exactly, in integer units of
1/SCALE cycle; tests/test_tiling.py checks both against exhaustive enumeration):

Candidate-table model (`solve_table`, used whenever the choice space has at most
planner.tiling.table.MAX_ROWS points -- every layer of the examples, peer graphs and the 12-block
stress model): every tile-size combination and buffering choice is evaluated at once with numpy
(`planner.tiling.table.build_table`), reduced exactly to its Pareto front over (cycles, bytes),
aligned footprint and staging bytes. Choosing one front point under the capacities, minimizing
cycles then bytes, is then exact selection: the front is sorted in objective order, so the optimum
is the first point that fits (an assignment CP-SAT used to solve, in ~10 ms a call; the answers are
the same). Microseconds, always proven optimal, and the front is reused for every capacity.

Product model (`solve_product`, larger spaces; CP-SAT, imported only here):
  * per loop dim, boolean selectors over its candidate tile sizes (exactly one); the tile size t,
    the number of tiles n = ceil(D/t), "split" (n >= 2) and every core-split table are linear in
    the selectors (the non-linear ceil is tabulated);
  * footprints: products of tile sizes (AddMultiplicationEquality), doubled for double-buffered
    buffers (conditional on one boolean per DMA'd buffer);
  * reloads: a buffer is reloaded when one of its dims changes; a loop outside an inner split dim of
    the buffer multiplies its traffic: m_j = n_j if active_j else 1 (reified), products again;
  * objective: (1) estimated cycles = max(compute, hidden DMA) + exposed DMA + overhead, then
    (2) with the cycles fixed at the optimum, the footprint (ties broken by memory).

Deterministic: one worker, fixed seed, a deterministic time limit per layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

import numpy as np

from planner.cost import CostParams, Evaluation, evaluate
from planner.tiling.desc import Variant, reserved_bytes
from planner.tiling.table import Table, build_table


TIE_BREAK_LIMIT = 1.0  # deterministic budget of the memory tie-break (cycles are proven first)


@dataclass
class TileResult:
    variant: Variant
    evaluation: Evaluation
    optimal: bool
    status: str          # "optimal", "feasible (time limit)", ...


def _new_solver(time_limit: float, seed: int) -> "cp_model.CpSolver":
    from ortools.sat.python import cp_model  # only the product model needs CP-SAT (import ~0.3-0.8 s)

    s = cp_model.CpSolver()
    p = s.parameters
    p.num_workers = 1
    p.random_seed = seed
    p.max_deterministic_time = float(time_limit)
    p.max_time_in_seconds = 10.0 * float(time_limit) + 30.0  # safety net only
    p.linearization_level = 2
    return s


class _Model:
    """CP-SAT encoding of one variant. Every expression carries its upper bound (`_E`)."""

    def __init__(self, params: CostParams, v: Variant, capacity: int, staging_capacity: int | None):
        from ortools.sat.python import cp_model

        self.params, self.v = params, v
        m = self.m = cp_model.CpModel()
        order = [d.name for d in v.loops]
        self.sel: dict[str, list[tuple[int, object]]] = {}
        self.t: dict[str, _E] = {}
        self.n: dict[str, _E] = {}
        self.split: dict[str, _E] = {}
        self._cache: dict[tuple, _E] = {}
        self.double: dict[str, object] = {}
        for d in v.loops:
            cands = [c for c in d.candidates if c >= v.min_tile.get(d.name, 1) or c == d.size]
            if len(cands) == 1:
                c = cands[0]
                self.sel[d.name] = [(c, 1)]
                nn = -(-d.size // c)
                self.t[d.name], self.n[d.name] = _E(c, c), _E(nn, nn)
                self.split[d.name] = _E(int(nn >= 2), int(nn >= 2))
                continue
            bs = [(c, m.new_bool_var(f"s_{d.name}_{c}")) for c in cands]
            m.add_exactly_one(b for _, b in bs)
            self.sel[d.name] = bs
            t = m.new_int_var_from_domain(cp_model.Domain.from_values(cands), f"t_{d.name}")
            m.add(t == sum(c * b for c, b in bs))
            ns = sorted({-(-d.size // c) for c in cands})
            n = m.new_int_var_from_domain(cp_model.Domain.from_values(ns), f"n_{d.name}")
            m.add(n == sum((-(-d.size // c)) * b for c, b in bs))
            sp = m.new_bool_var(f"split_{d.name}")
            m.add(sp == sum(b for c, b in bs if c < d.size))
            self.t[d.name], self.n[d.name], self.split[d.name] = _E(t, max(cands)), _E(n, max(ns)), _E(sp, 1)
        # compute: per term the product of its per-dim tables (each linear in that dim's selectors)
        comp_expr, comp_ub = 0, 0
        for i, term in enumerate(v.compute):
            coef = params.term_coef(term) * term.const
            factors = [self._table(d, term._lookup[d]) for d in term.dims]
            e = self._mul(factors, f"ct{i}").scale(coef)
            comp_expr += e.x
            comp_ub += e.ub
        compute = m.new_int_var(0, max(comp_ub, 0), "compute")
        m.add(compute == comp_expr)
        hidden_terms: list[_E] = []
        exposed_terms: list[_E] = []
        wait_terms: list[_E] = []       # in-place reads: wait states (exposed)
        foot_terms: list[_E] = []
        stage_terms: list[_E] = []
        xfer_terms: list[_E] = []
        for b in v.buffers:
            acc = params.access(b, v.level)
            if acc == "none" and b.kind not in ("local", "scratch"):
                continue
            if b.table:  # footprint tabulated by the tile size of one dim: linear in its selectors
                if b.kind not in ("local", "scratch"):
                    raise ValueError(f"{b.name}: tabulated footprints are for local/scratch buffers")
                tab = dict(b.table)
                foot_terms.append(_E(sum(tab[c] * sel for c, sel in self.sel[b.dims[0]]),
                                     max(tab[c] for c, _ in self.sel[b.dims[0]])))
                continue
            tb = self._prod(b.dims)
            present = _E(1, 1) if b.only_if_split is None else self.split[b.only_if_split]
            if acc == "none":
                foot_terms.append(self._cond(present, tb.scale(b.unit_bytes), f"f_{b.name}"))
                continue
            dep_n, trf = [], []
            for j, d in enumerate(order):
                if d in b.dims:
                    dep_n.append(self.n[d])
                elif not b.once:
                    inner = [self.split[k] for k in order[j + 1:] if k in b.dims]
                    trf.append(self._active_n(d, inner))
            traffic_f = self._mul(trf, f"tf_{b.name}")
            loads = self._mul(dep_n + trf, f"ld_{b.name}")
            setup, bcost = params.transfer(b.home, v.level)
            if acc == "inplace":
                if b.lookups:
                    w = params.read_wait_cost(b, 0)
                    wait_terms.append(_E(w, w))
                    continue
                per_byte = params.read_wait.get(b.home, (0, 0))[0]
                if b.reads_table is not None:
                    tab = dict(b.reads_table)
                    sel = self.sel[b.reads_dim]
                    ub = max(tab[c] for c, _ in sel)
                    if len(sel) == 1:
                        reads = _E(tab[sel[0][0]], ub)
                    else:
                        r = m.new_int_var(0, ub, f"reads_{b.name}")
                        m.add(r == sum(tab[c] * bv for c, bv in sel))
                        reads = _E(r, ub)
                else:
                    reads = _E(b.reads, b.reads)
                rd = self._mul([traffic_f, reads], f"rd_{b.name}")
                wait_terms.append(rd.scale(per_byte * b.full_bytes * b.passes))
                continue
            dma = _E(setup * b.passes * loads.x + bcost * b.full_bytes * b.passes * traffic_f.x,
                     setup * b.passes * loads.ub + bcost * b.full_bytes * b.passes * traffic_f.ub)
            xfer_terms.append(self._cond(present, loads.scale(params.transfer_overhead * b.passes),
                                         f"xo_{b.name}"))
            first = _E(setup + bcost * b.unit_bytes * tb.x, setup + bcost * b.unit_bytes * tb.ub)
            db = m.new_bool_var(f"db_{b.name}")
            self.double[b.name] = db
            if b.unit_bytes == 0:  # written in place from another buffer: nothing to double
                m.add(db == 0)
            if isinstance(present.x, int):
                if present.x == 0:
                    m.add(db == 0)
            else:
                m.add_implication(db, present.x)
            h = m.new_int_var(0, max(dma.ub, 0), f"h_{b.name}")
            m.add(h == dma.x - first.x).only_enforce_if(db)
            m.add(h == 0).only_enforce_if(~db)
            hidden_terms.append(_E(h, dma.ub))
            e = self._cond(present, dma, f"dma_{b.name}")
            exposed_terms.append(_E(e.x - h, e.ub))
            f1 = self._cond(present, tb.scale(b.unit_bytes), f"f_{b.name}")
            f2 = self._cond(_E(db, 1), tb.scale(b.unit_bytes), f"f2_{b.name}")
            foot_terms += [f1, f2]
            if params.staging_level(b, v.level) is not None:
                stage_terms += [f1, f2]
        hidden_ub = sum(e.ub for e in hidden_terms)
        hidden = m.new_int_var(0, max(hidden_ub, 0), "hidden")
        m.add(hidden == sum(e.x for e in hidden_terms))
        mx = m.new_int_var(0, max(comp_ub, hidden_ub, 0), "max_compute_dma")
        m.add_max_equality(mx, [compute, hidden])
        over = [self._mul([self.n[d] for d in o.dims], f"ov{i}").scale(params.overhead[o.kind] * o.mult)
                for i, o in enumerate(v.overhead)] + xfer_terms
        cost_ub = max(comp_ub, hidden_ub) + sum(e.ub for e in exposed_terms + wait_terms + over)
        self.cost = m.new_int_var(0, max(cost_ub, 1), "cost")
        m.add(self.cost == mx + sum(e.x for e in exposed_terms + wait_terms + over))
        self.foot_expr = sum(e.x for e in foot_terms)
        m.add(self.foot_expr <= capacity)
        self.stage_expr = sum(e.x for e in stage_terms)
        if stage_terms and staging_capacity is not None:
            m.add(self.stage_expr <= staging_capacity)

    # helpers -------------------------------------------------------------------------------
    def _table(self, dim: str, table: dict[int, int]) -> "_E":
        """sum(table[c] * selector_c) over the dim's candidates: a per-tile-size value."""
        sel = self.sel[dim]
        vals = [(table[c], b) for c, b in sel]
        if len(vals) == 1:
            return _E(vals[0][0], vals[0][0])
        key = ("table", dim, tuple(x for x, _ in vals))
        if key not in self._cache:
            ub = max(x for x, _ in vals)
            var = self.m.new_int_var(0, max(ub, 0), f"tab_{dim}_{len(self._cache)}")
            self.m.add(var == sum(x * b for x, b in vals))
            self._cache[key] = _E(var, ub)
        return self._cache[key]

    def _prod(self, dims: tuple[str, ...]) -> "_E":
        key = ("prod",) + tuple(sorted(dims))
        if key not in self._cache:
            self._cache[key] = self._mul([self.t[d] for d in sorted(dims)], "p_" + "_".join(sorted(dims)))
        return self._cache[key]

    def _mul(self, vals: list["_E"], name: str) -> "_E":
        c = prod(e.x for e in vals if isinstance(e.x, int))
        vars_ = [e for e in vals if not isinstance(e.x, int)]
        if not vars_:
            return _E(c, c)
        key = ("mul",) + tuple(sorted(e.x.index for e in vars_))
        if key in self._cache:
            cur = self._cache[key]
        else:
            cur = vars_[0]
            for i, x in enumerate(vars_[1:]):
                ub = cur.ub * x.ub
                nv = self.m.new_int_var(0, ub, f"{name}_{i}")
                self.m.add_multiplication_equality(nv, [cur.x, x.x])
                cur = _E(nv, ub)
            self._cache[key] = cur
        return cur.scale(c)

    def _active_n(self, d: str, inner_splits: list["_E"]) -> "_E":
        """n_d if some listed split is true, else 1."""
        n = self.n[d]
        if isinstance(n.x, int) and n.x == 1:
            return _E(1, 1)
        if any(isinstance(s.x, int) and s.x == 1 for s in inner_splits):
            return n
        vars_ = [s.x for s in inner_splits if not isinstance(s.x, int)]
        if not vars_:
            return _E(1, 1)
        key = ("act", d) + tuple(sorted(v.index for v in vars_))
        if key in self._cache:
            return self._cache[key]
        act = self.m.new_bool_var(f"act_{d}_{len(self._cache)}")
        self.m.add_max_equality(act, vars_)
        mj = self.m.new_int_var(1, max(1, n.ub), f"m_{d}_{len(self._cache)}")
        self.m.add(mj == n.x).only_enforce_if(act)
        self.m.add(mj == 1).only_enforce_if(~act)
        self._cache[key] = _E(mj, max(1, n.ub))
        return self._cache[key]

    def _cond(self, flag: "_E", expr: "_E", name: str) -> "_E":
        """expr when flag (bool var or 0/1 constant) else 0."""
        if isinstance(flag.x, int):
            return expr if flag.x else _E(0, 0)
        v = self.m.new_int_var(0, max(expr.ub, 0), name)
        self.m.add(v == expr.x).only_enforce_if(flag.x)
        self.m.add(v == 0).only_enforce_if(~flag.x)
        return _E(v, expr.ub)

    def choice(self, solver: "cp_model.CpSolver") -> tuple[dict[str, int], frozenset[str]]:
        tiles = {}
        for d in self.v.loops:
            t = self.t[d.name].x
            tiles[d.name] = t if isinstance(t, int) else int(solver.value(t))
        double = frozenset(k for k, b in self.double.items() if solver.boolean_value(b))
        return tiles, double

    def hint(self, tiles: dict[str, int], double: frozenset[str]) -> None:
        for d, bs in self.sel.items():
            for c, b in bs:
                if not isinstance(b, int):
                    self.m.add_hint(b, c == tiles[d])
        for k, b in self.double.items():
            self.m.add_hint(b, k in double)


@dataclass(frozen=True)
class _E:
    """An integer expression (int, IntVar or linear expression) with a known upper bound."""

    x: object
    ub: int

    def scale(self, c: int) -> "_E":
        if c == 1:
            return self
        if isinstance(self.x, int):
            return _E(self.x * c, self.ub * c)
        return _E(c * self.x, self.ub * c)


def solve_variant(params: CostParams, v: Variant, capacity: int, staging_capacity: int | None = None,
                  time_limit: float = 10.0, seed: int = 0, align: int = 1,
                  table: Table | None = None) -> TileResult | None:
    """Best tiling of one variant under `capacity` bytes of the compute level (each buffer copy
    rounded up to `align` bytes, as the memory planner packs them); None if infeasible.

    The candidate-table model (`solve_table`) when the choice space has at most
    `planner.tiling.table.MAX_ROWS` points, else the product model (`solve_product`)."""
    if table is None or table.staging_capacity != staging_capacity or table.align != align:
        table = build_table(params, v, align, staging_capacity)
    if table is not None:
        return solve_table(params, table, capacity, staging_capacity, time_limit, seed)
    return solve_product(params, v, capacity, staging_capacity, time_limit, seed, align)


def solve_table(params: CostParams, table: Table, capacity: int, staging_capacity: int | None = None,
                time_limit: float = 10.0, seed: int = 0) -> TileResult | None:
    """The optimum on the Pareto front of the variant's tiling choices (planner.tiling.table).

    The assignment "one front point, aligned bytes <= capacity (staged bytes <= the staging
    capacity), minimal (cycles, bytes)" is solved exactly by selection: the front is sorted in
    objective order with no two points equal, and the choices staging too much were dropped when
    the table was built, so the optimum is the first point that fits. No solver and no time limit
    are involved (time_limit and seed are accepted for the product model's signature); the result
    is always proven optimal. tests/test_tiling.py checks it against exhaustive enumeration."""
    v = table.variant
    assert table.staging_capacity == staging_capacity, "table built for another staging capacity"
    feasible = table.aligned <= capacity
    if staging_capacity is not None:
        feasible &= table.staging <= staging_capacity
    if len(table) == 0 or not feasible.any():
        return None
    pick = int(np.argmax(feasible))  # the first True: the best point that fits
    tiles, double = table.row(pick)
    ev = evaluate(params, v, tiles, double)
    if ev.cost != int(table.cost[pick]):  # the table and the evaluator must agree exactly
        raise AssertionError(f"tiler table mismatch on {v.layer} ({v.label}): table {table.cost[pick]}, "
                             f"evaluator {ev.cost} for tiles {tiles}, double {sorted(double)}")
    return TileResult(v, ev, True, "optimal")


def solve_product(params: CostParams, v: Variant, capacity: int, staging_capacity: int | None = None,
                  time_limit: float = 10.0, seed: int = 0, align: int = 1) -> TileResult | None:
    """The product model (`_Model`) for choice spaces too large to enumerate. With align > 1 the
    copies are packed aligned: re-solve with the excess removed when the aligned footprint would
    not fit (usually no re-solve)."""
    cap = capacity
    for _ in range(4):
        r = _solve_product(params, v, cap, staging_capacity, time_limit, seed)
        if r is None:
            return None
        over = aligned_footprint(r.evaluation, align) - capacity
        if over <= 0:
            return r
        cap -= over
    return None


def aligned_footprint(ev: Evaluation, align: int) -> int:
    """Compute-level bytes as the memory planner packs them (each copy aligned, at the buffer's
    own alignment where it needs more: planner.tiling.desc.reserved_bytes)."""
    return sum(reserved_bytes(b.tile_bytes, b.align, align) * b.copies for b in ev.buffers
               if b.present and b.access != "inplace" and (b.access == "dma" or b.kind in ("local", "scratch")))


def _solve_product(params: CostParams, v: Variant, capacity: int, staging_capacity: int | None = None,
                   time_limit: float = 10.0, seed: int = 0) -> TileResult | None:
    """Phase 1 minimizes the cycles (`optimal` reports whether that optimum is proven); phase 2 keeps
    those cycles and minimizes the bytes (ties broken by memory) within TIE_BREAK_LIMIT."""
    from ortools.sat.python import cp_model

    model = _Model(params, v, capacity, staging_capacity)
    model.m.minimize(model.cost)
    small = {d.name: min(c for c in d.candidates if c >= v.min_tile.get(d.name, 1) or c == d.size)
             for d in v.loops}
    model.hint(small, frozenset())
    solver = _new_solver(time_limit, seed)
    status = solver.solve(model.m)
    if status == cp_model.UNKNOWN:  # time limit before any solution: the smallest tiles, if they fit
        ev = evaluate(params, v, small, frozenset())
        if ev.footprint <= capacity and (staging_capacity is None or ev.staging <= staging_capacity):
            return TileResult(v, ev, False, "feasible (time limit)")
        return None
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    proven = status == cp_model.OPTIMAL
    tiles, double = model.choice(solver)
    best_cost = int(solver.value(model.cost))
    # cycles first, then bytes at those cycles
    model.m.clear_objective()
    model.m.add(model.cost == best_cost)
    model.hint(tiles, double)
    model.m.minimize(model.foot_expr + model.stage_expr)
    solver2 = _new_solver(min(time_limit, TIE_BREAK_LIMIT), seed)
    status2 = solver2.solve(model.m)
    if status2 in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        tiles, double = model.choice(solver2)
    ev = evaluate(params, v, tiles, double)
    if ev.cost != best_cost:  # the encoding and the evaluator must agree exactly
        raise AssertionError(f"tiler model mismatch on {v.layer} ({v.label}): CP-SAT {best_cost}, "
                             f"evaluator {ev.cost} for tiles {tiles}, double {sorted(double)}")
    return TileResult(v, ev, proven, "optimal" if proven else "feasible (time limit)")


def exhaustive(params: CostParams, v: Variant, capacity: int, staging_capacity: int | None = None,
               all_sizes: bool = True, align: int = 1) -> Evaluation | None:
    """Reference: every tile size 1..D of every dim (or the candidates) and every buffering choice,
    one `evaluate` each; the lowest (cost, footprint) that fits (footprint with every copy rounded
    up to `align`). For tests on small layers."""
    from itertools import product as iproduct

    from planner.cost import double_bufferable

    dims = []
    for d in v.loops:
        lo = v.min_tile.get(d.name, 1)
        if all_sizes and d.tiled:
            allowed = set(d.candidates)
            # all sizes the kernel rules allow: those with the candidates' rule are the candidates
            # plus the dominated ones; reconstruct by the same rule function when given
            rule = v.attrs.get("rules", {}).get(d.name)
            sizes = [t for t in range(1, d.size + 1) if (t >= lo or t == d.size)
                     and (t == d.size or (rule(t) if rule else True))]
            del allowed
        else:
            sizes = [c for c in d.candidates if c >= lo or c == d.size]
        dims.append((d.name, sizes))
    dbl = double_bufferable(params, v)
    best: Evaluation | None = None
    for combo in iproduct(*[s for _, s in dims]):
        tiles = {name: t for (name, _), t in zip(dims, combo)}
        for mask in range(1 << len(dbl)):
            double = frozenset(b for i, b in enumerate(dbl) if mask >> i & 1)
            ev = evaluate(params, v, tiles, double)
            if aligned_footprint(ev, align) > capacity:
                continue
            if staging_capacity is not None and ev.staging > staging_capacity:
                continue
            if best is None or (ev.cost, ev.footprint + ev.staging) < (best.cost, best.footprint + best.staging):
                best = ev
    return best
