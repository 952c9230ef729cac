"""Static memory planning: activation lifetimes over a schedule -> offsets in one memory level.

The model (see docs/memory-planning.md):
  * a schedule is the ordered list of compute nodes; step k runs schedule[k];
  * a buffer is a rectangle: time [start, end] (steps, inclusive) x address [offset, offset + size);
  * buffers that are live at a common step must not overlap in address;
  * the peak of a level is the highest occupied byte; we minimize it.

Layout-only nodes (ir.LAYOUT_OPS: Reshape, Transpose, ...) that are not in the schedule only relabel
memory: their output is an alias of their input's buffer (its *root*), and uses of the alias extend
the root's lifetime. A layout node that IS in the schedule is treated as a real copy (its output is a
buffer of its own).

Placement is exact CP-SAT (AddNoOverlap2D over time x address, minimize the peak), warm-started
with a deterministic best-fit heuristic; if the heuristic already reaches the lower bound (the
largest sum of live bytes at any step) the solver is skipped, since no placement can do better.

No in-place reuse: an output never shares memory with an input that is live at the same step
(element-wise ops could; see docs/memory-planning.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

from planner.errors import PlannerError
from planner.ir import LAYOUT_OPS, Graph, Node

__all__ = [
    "Buffer", "Placement", "LevelPlan", "tensor_lifetimes", "alias_root", "alias_map",
    "activation_buffers", "plan_level", "best_fit", "lower_bound", "check_plan",
]


# --------------------------------------------------------------------------------------- types


@dataclass(frozen=True)
class Buffer:
    name: str        # tensor name or a scratch buffer name
    size: int        # bytes
    start: int       # first schedule step at which it is live (inclusive)
    end: int         # last step at which it is live (inclusive)
    alignment: int = 4

    @property
    def reserved(self) -> int:
        """Bytes used for packing: size rounded up to the alignment."""
        return _align_up(self.size, self.alignment)


@dataclass(frozen=True)
class Placement:
    name: str
    offset: int
    size: int        # the buffer's own size in bytes
    start: int
    end: int
    alignment: int = 1

    @property
    def reserved(self) -> int:
        """Bytes this placement occupies for packing: size rounded up to the alignment."""
        return _align_up(self.size, self.alignment)


@dataclass
class LevelPlan:
    level: str                    # "L1" / "L2" / "L3"
    placements: list[Placement]   # sorted by name
    peak: int                     # max over steps of the highest occupied byte (offset + reserved)
    lower_bound: int              # max over steps of the sum of live (aligned) sizes
    optimal: bool                 # peak is proven minimal (== lower bound, or CP-SAT proved it)
    solver: str                   # "cp-sat" or "best-fit"
    capacity: int | None = None   # the capacity the plan was checked against, if any
    heuristic_peak: int = 0       # peak of the best-fit warm start (before CP-SAT)
    notes: list[str] = field(default_factory=list)

    def offsets(self) -> dict[str, int]:
        return {p.name: p.offset for p in self.placements}

    def placement(self, name: str) -> Placement:
        for p in self.placements:
            if p.name == name:
                return p
        raise KeyError(name)


def _align_up(value: int, alignment: int) -> int:
    return -(-value // alignment) * alignment


# ------------------------------------------------------------------------------ lifetimes/aliases


def _producers(graph: Graph) -> dict[str, Node]:
    prod: dict[str, Node] = {}
    for n in graph.nodes:
        for o in n.outputs:
            if o:
                prod[o] = n
    return prod


def _root(tensor: str, prod: Mapping[str, Node], materialized: frozenset[str]) -> str:
    seen = {tensor}
    while True:
        node = prod.get(tensor)
        if node is None or node.op not in LAYOUT_OPS or node.name in materialized or not node.inputs:
            return tensor
        tensor = node.inputs[0]
        if tensor in seen:  # pragma: no cover - a cycle; toposort rejects these earlier
            raise PlannerError(f"layout-only nodes form a cycle through tensor '{tensor}'")
        seen.add(tensor)


def alias_root(graph: Graph, tensor: str, materialized: Iterable[str] = ()) -> str:
    """Follow layout-only producers (Reshape, Transpose, ...) back to the tensor that owns the memory.

    `materialized`: names of layout nodes that are scheduled as real copies (not followed).
    """
    return _root(tensor, _producers(graph), frozenset(materialized))


def _check_schedule(graph: Graph, schedule: Sequence[Node]) -> dict[str, int]:
    step: dict[str, int] = {}
    for k, node in enumerate(schedule):
        if node.name in step:
            raise PlannerError(f"node '{node.name}' appears twice in the schedule (steps "
                               f"{step[node.name]} and {k})")
        step[node.name] = k
    missing = [n for n in graph.nodes if n.op not in LAYOUT_OPS and n.name not in step]
    if missing:
        names = ", ".join(f"{n.name} ({n.op})" for n in missing[:5])
        raise PlannerError(f"graph '{graph.name}': compute node(s) missing from the schedule: {names}"
                           + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return step


def _is_activation(graph: Graph, name: str) -> bool:
    t = graph.tensors.get(name)
    if t is None:
        raise PlannerError(f"graph '{graph.name}': tensor '{name}' is used but not declared")
    return not t.is_const


def alias_map(graph: Graph, schedule: Sequence[Node]) -> dict[str, str]:
    """Every activation tensor (aliases included) -> its root buffer, under this schedule."""
    materialized = frozenset(n.name for n in schedule if n.op in LAYOUT_OPS)
    prod = _producers(graph)
    names: set[str] = set(graph.inputs) | set(graph.outputs)
    for n in list(graph.nodes) + list(schedule):
        names.update(t for t in n.inputs if t)
        names.update(t for t in n.outputs if t)
    out: dict[str, str] = {}
    for t in sorted(names):
        if not _is_activation(graph, t):
            continue
        r = _root(t, prod, materialized)
        if _is_activation(graph, r):
            out[t] = r
    return out


def tensor_lifetimes(graph: Graph, schedule: list[Node]) -> dict[str, tuple[int, int]]:
    """Root activation tensors -> (first step, last step), both inclusive, sorted by name.

    A tensor lives from the step of its producer to the step of its last consumer; graph inputs from
    step 0, graph outputs to the last step. Layout-only nodes not in the schedule are aliases: their
    output has no entry of its own, its uses extend the lifetime of its root (see alias_map). A
    tensor that nothing consumes lives only at its producer's step.
    """
    _check_schedule(graph, schedule)
    materialized = frozenset(n.name for n in schedule if n.op in LAYOUT_OPS)
    prod = _producers(graph)
    last = max(len(schedule) - 1, 0)
    born: dict[str, int] = {}
    life: dict[str, list[int]] = {}

    def root_of(t: str) -> str | None:
        if not t or not _is_activation(graph, t):
            return None
        r = _root(t, prod, materialized)
        return r if _is_activation(graph, r) else None

    def touch(r: str, k: int) -> None:
        span = life.setdefault(r, [k, k])
        span[0] = min(span[0], k)
        span[1] = max(span[1], k)

    for t in graph.inputs:
        r = root_of(t)
        if r is not None:
            born[r] = 0
            touch(r, 0)
    for k, node in enumerate(schedule):
        for t in node.outputs:
            r = root_of(t)
            if r is None:
                continue
            if r in born:
                raise PlannerError(f"tensor '{r}' is written at step {born[r]} and again at step {k} "
                                   f"(node '{node.name}'); the planner needs single assignment")
            born[r] = k
            touch(r, k)
    for k, node in enumerate(schedule):
        for t in node.inputs:
            r = root_of(t)
            if r is None:
                continue
            if r not in born:
                raise PlannerError(f"node '{node.name}' (step {k}) reads '{t}', which no scheduled node "
                                   "produces and which is not a graph input")
            if born[r] > k:
                raise PlannerError(f"schedule is not topological: node '{node.name}' (step {k}) reads "
                                   f"'{t}', produced at step {born[r]}")
            touch(r, k)
    for t in graph.outputs:
        r = root_of(t)
        if r is None:
            continue
        if r not in born:
            raise PlannerError(f"graph output '{t}' is produced by no scheduled node")
        touch(r, last)
    return {r: (span[0], span[1]) for r, span in sorted(life.items())}


def activation_buffers(graph: Graph, schedule: list[Node],
                       extra: dict[int, list[tuple[str, int]]] | None = None,
                       alignment: int = 4) -> list[Buffer]:
    """One Buffer per root activation tensor (size = Tensor.nbytes, lifetime from tensor_lifetimes),
    plus per-step scratch buffers {step: [(name, bytes[, alignment])]} live only at that step (at
    `alignment`, or the item's own when it needs more). Sorted by name."""
    buffers = [Buffer(name, graph.tensors[name].nbytes, s, e, alignment)
               for name, (s, e) in tensor_lifetimes(graph, schedule).items()]
    names = {b.name for b in buffers}
    for k, items in sorted((extra or {}).items()):
        if not 0 <= k < max(len(schedule), 1):
            raise PlannerError(f"scratch buffers given for step {k}, but the schedule has steps "
                               f"0..{len(schedule) - 1}")
        for item in items:
            name, nbytes = item[0], item[1]
            align = max(alignment, item[2]) if len(item) > 2 else alignment
            if name in names:
                raise PlannerError(f"scratch buffer name '{name}' (step {k}) is already used by "
                                   "another buffer")
            if nbytes < 0:
                raise PlannerError(f"scratch buffer '{name}' (step {k}) has a negative size {nbytes}")
            names.add(name)
            buffers.append(Buffer(name, int(nbytes), k, k, align))
    return sorted(buffers, key=lambda b: b.name)


# ---------------------------------------------------------------------------------- lower bound


def _validate(buffers: Sequence[Buffer]) -> None:
    seen: set[str] = set()
    for b in buffers:
        if b.name in seen:
            raise ValueError(f"duplicate buffer name '{b.name}'")
        seen.add(b.name)
        if b.size < 0 or b.alignment < 1 or b.start > b.end:
            raise ValueError(f"invalid buffer {b}: need size >= 0, alignment >= 1, start <= end")


def _step_loads(buffers: Sequence[Buffer]) -> dict[int, int]:
    """Live aligned bytes at every step where some buffer starts (the maxima are among these)."""
    starts = sorted({b.start for b in buffers})
    return {t: sum(b.reserved for b in buffers if b.start <= t <= b.end) for t in starts}


def lower_bound(buffers: Sequence[Buffer]) -> int:
    """Largest sum of live (aligned) sizes at any step: no placement can have a smaller peak."""
    loads = _step_loads(buffers)
    return max(loads.values(), default=0)


# ------------------------------------------------------------------------------------ best-fit


def _overlap(a: Buffer, b: Buffer) -> bool:
    return a.start <= b.end and b.start <= a.end


def _place_one(b: Buffer, placed: list[tuple[int, int]], best_gap: bool) -> int:
    """Offset for b given the (offset, end) address ranges of placed buffers live with it."""
    size = b.reserved
    placed = sorted(placed)
    candidates: list[tuple[int, int]] = []  # (gap size, offset) of gaps that fit
    cursor = 0
    for lo, hi in placed:
        off = _align_up(cursor, b.alignment)
        if off + size <= lo:
            if not best_gap:
                return off
            candidates.append((lo - off, off))
        cursor = max(cursor, hi)
    top = _align_up(cursor, b.alignment)
    if candidates:
        return min(candidates)[1]
    return top


_ORDERS = ("size", "breadth", "area", "length", "start")


def _order(buffers: Sequence[Buffer], how: str, loads: Mapping[int, int]) -> list[Buffer]:
    def breadth(b: Buffer) -> int:  # most contended step the buffer lives through
        return max((v for t, v in loads.items() if b.start <= t <= b.end), default=0)

    keys = {
        "size": lambda b: (-b.reserved, b.start, -b.end, b.name),
        "breadth": lambda b: (-breadth(b), -b.reserved, b.start, b.name),
        "area": lambda b: (-b.reserved * (b.end - b.start + 1), -b.reserved, b.start, b.name),
        "length": lambda b: (-(b.end - b.start), -b.reserved, b.start, b.name),
        "start": lambda b: (b.start, -b.reserved, b.name),
    }
    return sorted(buffers, key=keys[how])


def _pack(order: Sequence[Buffer], best_gap: bool) -> dict[str, int]:
    offsets: dict[str, int] = {}
    done: list[Buffer] = []
    for b in order:
        if b.reserved == 0:
            offsets[b.name] = 0
            continue
        live = [(offsets[o.name], offsets[o.name] + o.reserved) for o in done if _overlap(o, b)]
        offsets[b.name] = _place_one(b, live, best_gap)
        done.append(b)
    return offsets


def _peak(buffers: Sequence[Buffer], offsets: Mapping[str, int]) -> int:
    return max((offsets[b.name] + b.reserved for b in buffers), default=0)


def best_fit(buffers: Sequence[Buffer]) -> tuple[dict[str, int], int]:
    """Deterministic greedy portfolio: several orders (size, contention, area, length, start; ties by
    name), each packed first-fit (lowest offset) and best-fit (smallest gap); the lowest peak wins
    (ties: the first in that list). Returns (offsets, peak)."""
    _validate(buffers)
    loads = _step_loads(buffers)
    lb = max(loads.values(), default=0)
    best: tuple[dict[str, int], int] | None = None
    for how in _ORDERS:
        order = _order(buffers, how, loads)
        for best_gap in (False, True):
            offsets = _pack(order, best_gap)
            peak = _peak(buffers, offsets)
            if best is None or peak < best[1]:
                best = (offsets, peak)
            if peak == lb:
                return best
    assert best is not None
    return best


# -------------------------------------------------------------------------------------- CP-SAT


@dataclass
class _CpResult:
    offsets: dict[str, int]
    peak: int
    proven: bool


def _cp_sat(buffers: Sequence[Buffer], hint: Mapping[str, int], upper: int, lower: int,
            time_limit: float, seed: int) -> _CpResult | None:
    from ortools.sat.python import cp_model

    model = cp_model.CpModel()
    active = [b for b in buffers if b.reserved > 0]
    peak = model.new_int_var(lower, upper, "peak")
    x_iv, y_iv, starts = [], [], {}
    for b in active:
        k = model.new_int_var(0, (upper - b.reserved) // b.alignment, f"k_{b.name}")
        off = k * b.alignment if b.alignment > 1 else k
        starts[b.name] = (k, off)
        x_iv.append(model.new_fixed_size_interval_var(b.start, b.end - b.start + 1, f"t_{b.name}"))
        y_iv.append(model.new_fixed_size_interval_var(off, b.reserved, f"a_{b.name}"))
        model.add(off + b.reserved <= peak)
        model.add_hint(k, hint[b.name] // b.alignment)
    model.add_no_overlap_2d(x_iv, y_iv)
    # Redundant 1D cliques: buffers live at one step pairwise exclude each other in address. Only
    # the maximal live sets matter (taken at every step where a buffer starts).
    cliques: list[frozenset[int]] = []
    for t in sorted({b.start for b in active}):
        live = frozenset(i for i, b in enumerate(active) if b.start <= t <= b.end)
        if len(live) > 1 and not any(live <= c for c in cliques):
            cliques = [c for c in cliques if not c <= live] + [live]
    for c in cliques:
        model.add_no_overlap([y_iv[i] for i in sorted(c)])
    model.add_hint(peak, upper)
    model.minimize(peak)

    solver = cp_model.CpSolver()
    p = solver.parameters
    p.num_workers = 1
    p.random_seed = seed
    p.max_deterministic_time = float(time_limit)
    # Wall-clock safety net only (far above the deterministic limit, so it does not decide results).
    p.max_time_in_seconds = 10.0 * float(time_limit) + 30.0
    status = solver.solve(model)
    if status not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
        return None
    offsets = {b.name: 0 for b in buffers}
    for b in active:
        offsets[b.name] = int(solver.value(starts[b.name][1]))
    return _CpResult(offsets, int(solver.value(peak)), status == cp_model.OPTIMAL)


# ----------------------------------------------------------------------------------- plan_level


def _fmt_bytes(n: int) -> str:
    return f"{n:,} B"


def _hotspots(buffers: Sequence[Buffer], step_names: Sequence[str] | None, limit: int = 3) -> str:
    loads = _step_loads(buffers)
    top = max(loads.values(), default=0)
    steps = sorted(t for t, v in loads.items() if v == top)
    parts = []
    for t in steps[:limit]:
        live = sorted((b for b in buffers if b.start <= t <= b.end), key=lambda b: (-b.reserved, b.name))
        shown = ", ".join(f"{b.name} ({_fmt_bytes(b.reserved)})" for b in live[:8])
        if len(live) > 8:
            shown += f", and {len(live) - 8} more"
        where = f"step {t}"
        if step_names is not None and 0 <= t < len(step_names):
            where += f" ({step_names[t]})"
        parts.append(f"{where}: {_fmt_bytes(top)} live: {shown}")
    more = f"; {len(steps) - limit} more step(s) at the same load" if len(steps) > limit else ""
    return "; ".join(parts) + more


def plan_level(buffers: list[Buffer], level: str, capacity: int | None = None,
               time_limit: float = 5.0, seed: int = 0,
               step_names: Sequence[str] | None = None) -> LevelPlan:
    """Offsets for `buffers` in one memory level, minimizing the peak.

    Best-fit first; if it reaches the lower bound it is optimal and CP-SAT is skipped. Otherwise
    CP-SAT (NoOverlap2D over time x address, one worker, fixed seed, deterministic time limit
    `time_limit`) improves it; whichever is lower is kept (ties: best-fit). If `capacity` is given
    and the best peak exceeds it, raises PlannerError naming the level, peak, capacity and the most
    loaded step(s) with their live buffers. `step_names[k]` (e.g. node names) labels step k there.
    """
    _validate(buffers)
    bufs = sorted(buffers, key=lambda b: b.name)
    lb = lower_bound(bufs)
    offsets, bf_peak = best_fit(bufs)
    peak, solver_name, optimal = bf_peak, "best-fit", bf_peak == lb
    notes: list[str] = []

    def fail(achieved: int, what: str) -> PlannerError:
        assert capacity is not None
        return PlannerError(
            f"{level}: the activation memory plan needs {_fmt_bytes(achieved)} ({what}) but the usable "
            f"capacity of {level} is {_fmt_bytes(capacity)}: {_fmt_bytes(achieved - capacity)} missing "
            f"(lower bound {_fmt_bytes(lb)}). Most live bytes at {_hotspots(bufs, step_names)}")

    if capacity is not None and lb > capacity:
        raise fail(bf_peak, "best-fit peak; even the lower bound does not fit")
    if not optimal and time_limit > 0:
        cp = _cp_sat(bufs, offsets, bf_peak, lb, time_limit, seed)
        if cp is None:
            notes.append("CP-SAT found no solution within its time limit; kept best-fit")
        elif cp.peak < bf_peak:
            offsets, peak, solver_name = cp.offsets, cp.peak, "cp-sat"
            optimal = cp.proven or cp.peak == lb
        else:
            optimal = cp.proven
            if not cp.proven:
                notes.append("CP-SAT did not improve best-fit within its time limit")
    if capacity is not None and peak > capacity:
        raise fail(peak, "optimal peak" if optimal else "best peak found")
    placements = [Placement(b.name, offsets[b.name], b.size, b.start, b.end, b.alignment) for b in bufs]
    plan = LevelPlan(level, placements, peak, lb, optimal, solver_name, capacity, bf_peak, notes)
    check_plan(plan)
    return plan


def check_plan(plan: LevelPlan) -> None:
    """Assert the invariants of a plan (independent of how it was found)."""
    ps = sorted(plan.placements, key=lambda p: (p.offset, p.name))
    for p in ps:
        if p.offset < 0 or p.offset % p.alignment:
            raise AssertionError(f"{plan.level}: '{p.name}' at misaligned offset {p.offset}")
        if p.offset + p.reserved > plan.peak:
            raise AssertionError(f"{plan.level}: '{p.name}' ends above the peak {plan.peak}")
    for i, a in enumerate(ps):
        if a.reserved == 0:
            continue
        for b in ps[i + 1:]:
            if b.offset >= a.offset + a.reserved:
                break
            if b.reserved and a.start <= b.end and b.start <= a.end:
                raise AssertionError(f"{plan.level}: '{a.name}' and '{b.name}' overlap in time "
                                     "and address")
