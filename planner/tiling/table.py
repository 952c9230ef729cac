"""Candidate tables: every tiling choice of a variant evaluated at once, reduced to its Pareto front.

For the layers of Tiny Transformers the candidate tile sizes per dim are few (tens), so the whole
choice space of a variant -- one tile size per dim and, per DMA'd buffer, single or double
buffering -- can be enumerated with numpy and evaluated with exactly the formulas of
`planner.cost.evaluate` (integer units of 1/SCALE cycle). What the tiler then needs from that space
is only its Pareto front over

    (cycles, bytes)   lexicographic objective (cycles first, ties broken by memory; bytes =
                      compute-level footprint + staged bytes of streamed weights), and
    aligned bytes     the compute-level footprint as the memory planner packs it (the capacity
                      constraint):

any optimum of "minimize (cycles, bytes) subject to aligned <= capacity, staging <= staging
capacity" is a point of that front, for ANY capacity (exact: a dominated point is never better and
never more feasible). The staging capacity is one figure per solve (the staging level's usable
bytes): choices over it are dropped before the front is taken. The front has a few to a few dozen points, so the CP-SAT model built on it
(planner.tiling.solver) is a pure assignment with a linear objective and solves in milliseconds,
and the front is reused for every capacity (L2-compute targets, what-if sweeps).

Double buffering is enumerated per *group* of buffers with identical figures at every tile choice
(e.g. W_q, W_k, W_v of an MHSA head): how many of the group are doubled, not which (the same
rows). A buffer whose transfer is never partly hidden by doubling (loaded once, whatever the tiles)
is never doubled: doubling it costs memory and saves nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import product as iproduct
from math import prod

import numpy as np

from planner.cost import CostParams
from planner.tiling.desc import Variant

MAX_ROWS = 1_500_000   # tiling choices enumerated at most; larger spaces use the product model


def _align(a: np.ndarray, align: int, need: int = 1) -> np.ndarray:
    """Bytes per copy as packed at `align`, for a buffer that needs `need` (reserved_bytes)."""
    if need <= align:
        return -(-a // align) * align
    return np.where(a > 0, -(-a // need) * need + (need - align), 0)


@dataclass
class Table:
    """The Pareto front of one variant's tiling choices (see module doc)."""

    variant: Variant
    align: int
    staging_capacity: int | None          # choices staging more bytes were dropped
    dims: list[str]
    cands: list[tuple[int, ...]]          # per dim, the tile sizes enumerated
    groups: list[tuple[str, ...]]         # double-buffering groups (buffer names, spec order)
    rows: int                             # choices enumerated (tile combos x buffering choices)
    # the front, sorted by (cost, bytes, aligned, staging)
    combo: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # combo index
    choice: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.int64))  # doubled per group
    cost: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    nbytes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))   # footprint + staging
    aligned: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    staging: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    # compute-level activation bytes (weights excluded; Evaluation.activation_bytes): what a
    # depth-first peak is made of, read from the front without evaluating each point again
    activation: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def tiles(self, combo: int) -> dict[str, int]:
        idx = np.unravel_index(int(combo), [len(c) for c in self.cands]) if self.cands else ()
        return {d: int(c[i]) for d, c, i in zip(self.dims, self.cands, idx)}

    def double(self, choice) -> frozenset[str]:
        out: list[str] = []
        for names, k in zip(self.groups, choice):
            out += names[:int(k)]
        return frozenset(out)

    def row(self, i: int) -> tuple[dict[str, int], frozenset[str]]:
        return self.tiles(self.combo[i]), self.double(self.choice[i])

    def __len__(self) -> int:
        return int(self.cost.size)


def build_table(params: CostParams, v: Variant, align: int = 1, staging_capacity: int | None = None,
                max_rows: int | None = None) -> Table | None:
    """Enumerate and evaluate every tiling choice of `v`; None when there are more than max_rows.
    Choices whose staged bytes exceed `staging_capacity` are dropped first (the staging level's
    capacity is one figure per solve), so the front is over (cycles, bytes) and aligned bytes."""
    max_rows = MAX_ROWS if max_rows is None else max_rows
    cores = params.cores
    order = [d.name for d in v.loops]
    cands = [tuple(c for c in d.candidates if c >= v.min_tile.get(d.name, 1) or c == d.size) for d in v.loops]
    shape = [len(c) for c in cands]
    m = prod(shape)
    if m > max_rows:
        return None
    grid = np.indices(shape).reshape(len(shape), -1) if shape else np.zeros((0, 1), np.int64)
    idx = {d: grid[i] for i, d in enumerate(order)}
    T = {d: np.asarray(cands[i], np.int64)[idx[d]] for i, d in enumerate(order)}
    sizes = {d.name: d.size for d in v.loops}
    N = {d: -(-sizes[d] // T[d]) for d in order}
    split = {d: N[d] >= 2 for d in order}
    ones = np.ones(m, np.int64)
    zeros = np.zeros(m, np.int64)

    compute = zeros.copy()
    for term in v.compute:
        c = ones * (params.term_coef(term) * term.const)
        for d in term.dims:
            i = order.index(d)
            per = np.array([term.factor(d, t) for t in cands[i]], np.int64)
            c = c * per[idx[d]]
        compute += c
    overhead = zeros.copy()
    for o in v.overhead:
        cnt = ones.copy()
        for d in o.dims:
            cnt = cnt * N[d]
        overhead += params.overhead[o.kind] * o.mult * cnt

    hidden = zeros.copy()       # hidden transfers before double-buffering (none yet)
    wait = zeros.copy()         # in-place reads: wait states (exposed)
    dma_all = zeros.copy()      # all DMA transfers as if single-buffered (exposed)
    foot = zeros.copy()
    foot_al = zeros.copy()
    stage = zeros.copy()
    act = zeros.copy()
    items = []                  # double-bufferable buffers: (name, gain, tb, aligned tb, staged, act)
    for b in v.buffers:
        present = split[b.only_if_split] if b.only_if_split is not None else np.ones(m, bool)
        if b.table:
            i = order.index(b.dims[0])
            tab = dict(b.table)
            tb = np.array([tab[c] for c in cands[i]], np.int64)[idx[b.dims[0]]]
        else:
            tb = ones * b.unit_bytes
            for d in b.dims:
                tb = tb * T[d]
        tb = np.where(present, tb, 0)
        acc = params.access(b, v.level)
        loads, tf = ones.copy(), ones.copy()
        for j, d in enumerate(order):
            if d in b.dims:
                loads = loads * N[d]
            elif not b.once:
                inner = [k for k in order[j + 1:] if k in b.dims]
                if inner:
                    active = np.logical_or.reduce([split[k] for k in inner])
                    mult = np.where(active, N[d], 1)
                    loads, tf = loads * mult, tf * mult
        loads = loads * b.passes
        traffic = b.full_bytes * b.passes * tf
        if acc == "dma":
            setup, byte_cost = params.transfer(b.home, v.level)
            dma = setup * loads + byte_cost * traffic
            first = setup + byte_cost * tb
            dma = np.where(present, dma, 0)
            first = np.where(present, first, 0)
            overhead += np.where(present, params.transfer_overhead * loads, 0)
            dma_all += dma
            staged = params.staging_level(b, v.level) is not None
            foot += tb
            foot_al += _align(tb, align, b.align)
            if staged:
                stage += tb
            if b.activation:
                act += tb
            gain = dma - first
            if b.unit_bytes > 0 and np.any(gain > 0):
                items.append((b.name, gain, tb, _align(tb, align, b.align), staged, b.activation))
        elif acc == "inplace":
            if b.reads_table is not None:
                i = order.index(b.reads_dim)
                tab = dict(b.reads_table)
                reads = np.array([tab[c] for c in cands[i]], np.int64)[idx[b.reads_dim]]
            else:
                reads = ones * b.reads
            if b.lookups:
                bw = ones * params.read_wait_cost(b, 0)
            else:
                bw = params.read_wait.get(b.home, (0, 0))[0] * traffic * reads
            wait += np.where(present, bw, 0)
        elif b.kind in ("local", "scratch"):
            foot += tb
            foot_al += _align(tb, align, b.align)
            if b.activation:
                act += tb
    # double-buffering groups: buffers with identical figures at every tile choice
    groups: list[list] = []
    for it in items:
        for g in groups:
            r = g[0]
            if r[4:] == it[4:] and all(np.array_equal(a, c) for a, c in zip(r[1:4], it[1:4])):
                g.append(it)
                break
        else:
            groups.append([it])
    choices = np.array(list(iproduct(*[range(len(g) + 1) for g in groups])), np.int64)
    choices = choices.reshape(max(1, choices.shape[0]), len(groups))
    k = choices.shape[0]
    table = Table(v, align, staging_capacity, order, cands, [tuple(it[0] for it in g) for g in groups], m * k)
    if m * k > max_rows:
        return None
    # rows: (combo, choice) -> figures, shape (m, k)
    hid = np.repeat(hidden[:, None], k, axis=1)
    f, fa, st, ac = (np.repeat(a[:, None], k, axis=1) for a in (foot, foot_al, stage, act))
    for gi, g in enumerate(groups):
        _, gain, tb, tba, staged, activation = g[0]
        c = choices[:, gi][None, :]
        if not np.any(c):
            continue
        hid = hid + gain[:, None] * c
        f = f + tb[:, None] * c
        fa = fa + tba[:, None] * c
        if staged:
            st = st + tb[:, None] * c
        if activation:
            ac = ac + tb[:, None] * c
    # exposed = all transfers - the hidden (doubled) parts; cost = max(compute, hidden) + exposed + waits
    # + overhead
    cost = np.maximum(compute[:, None], hid) + (dma_all[:, None] - (hid - hidden[:, None])) \
        + wait[:, None] + overhead[:, None]
    # a group doubled where its transfer gains nothing (not present, or loaded once at these tiles)
    # costs memory for no cycle: the same tiles with that group single dominate the row
    useful = np.ones((m, k), bool)
    for gi, g in enumerate(groups):
        useful &= (choices[:, gi] == 0)[None, :] | (g[0][1] > 0)[:, None]
    if staging_capacity is not None:
        useful &= st <= staging_capacity
    sel = np.flatnonzero(useful.ravel())
    cost, nbytes, fa, st, ac = (a.ravel()[sel] for a in (cost, f + st, fa, st, ac))
    front = _pareto(cost, nbytes, fa)
    cost, nbytes, fa, st, ac, front = cost[front], nbytes[front], fa[front], st[front], ac[front], sel[front]
    table.combo = front // k
    table.choice = choices[front % k]
    table.cost, table.nbytes, table.aligned, table.staging, table.activation = cost, nbytes, fa, st, ac
    return table


def _lexorder(keys: list[np.ndarray]) -> np.ndarray:
    """Stable order by keys (most significant first; non-negative ints), packing adjacent keys into
    one int64 where their bit widths allow (one stable argsort instead of a lexsort per key)."""
    packed: list[np.ndarray] = []
    cur, bits = None, 0
    for k in keys:
        b = max(1, int(k.max(initial=0)).bit_length())
        if cur is not None and bits + b <= 62:
            cur = (cur << b) | k
            bits += b
        else:
            if cur is not None:
                packed.append(cur)
            cur, bits = k.astype(np.int64, copy=True), b
    packed.append(cur)
    if len(packed) == 1:
        return np.argsort(packed[0], kind="stable")
    return np.lexsort(packed[::-1])


def _pareto(cost: np.ndarray, nbytes: np.ndarray, aligned: np.ndarray) -> np.ndarray:
    """Indices of the rows not dominated in ((cost, nbytes) lexicographic, aligned), in objective
    order; among identical rows the first (lowest index) is kept."""
    n = cost.size
    if n == 0:
        return np.zeros(0, np.int64)
    o = _lexorder([cost, nbytes, aligned])  # stable: ties keep the lower index
    a = aligned[o]
    keep = np.ones(n, bool)
    keep[1:] = a[1:] < np.minimum.accumulate(a)[:-1]  # fewer aligned bytes than every better row
    return o[keep]
