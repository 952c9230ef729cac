"""`planner explore`: what-if sweeps over memory capacity and planner options.

A sweep solves the network (through the public `planner.solve.solve`) at every point of a grid:
L1 sizes x L2 sizes x combinations of the varied options (--vary dft,fwsa: each over on/off). It
writes one CSV row per point as soon as the point is solved (Ctrl-C leaves a valid partial CSV)
and two PNG plots (memory peak per level, estimated latency), one line
per combination. A point where the plan does not fit is recorded as infeasible, with the level, the
layer and the missing bytes taken from the planner's message; the sweep goes on.

`min_memory` finds the smallest L1 (1 KiB grid of sizes, as --l1 takes them) for which a plan exists
with L2 as configured, then the smallest L2 for that L1.

Monotonicity (more memory never makes a plan infeasible) does NOT hold for the solver in general:
  * --dft auto and --fwsa auto choose per block from estimates that depend on both capacities
    (the L2 fit test of --dft auto counts every weight as resident, so at a tight L2 it can rule
    out both forms and fall back to cycles, picking a form that does not fit);
  * larger L1 tiles grow the L2 staging buffers of weights streamed L3 -> L2 -> L1;
  * the weights-to-L3 streaming is a greedy of at most four rounds; on targets computing in L2
    the tile room itself depends on L2.
What IS certain: a layer's fit at the compute level is monotone (the tiler says "no tiling" only
when CP-SAT proves it or the smallest tiles do not fit), and an L2 plan holds at least its live
graph tensors, which depend on the MHSA forms only. So the search is a "safe search": it probes,
follows the missing-bytes hints and bisects; every infeasible point below the answer must be
certified by one of those two facts or evaluated, and an uncertified gap is scanned at 1 KiB. The
answer is the true minimum on the 1 KiB grid whatever the solver's monotonicity (docs/explore.md).
"""

from __future__ import annotations

import bisect
import csv
import dataclasses
import io
import itertools
import json
import math
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from planner.errors import PlannerError, UsageError
from planner.hw import HardwareModel, load_hw_model
from planner.options import parse_size
from planner.solve import SolveOptions, solve

KIB = 1024
ALIGN = 4  # the memory planner aligns every buffer to 4 bytes
RANGE_SYNTAX = ("START:STOP:STEP (e.g. 32K:256K:16K), START:STOP (8 steps) or a single value "
                "(e.g. 64K); sizes are bytes with an optional K (x1024) or M (x1024^2) suffix, "
                "0 < START <= STOP, STEP > 0")
VARY_OPTIONS = ("dft", "fwsa")
VARY_VALUES = ("on", "off")
DEFAULT_STEPS = 8
MAX_POINTS = 2000          # per sweep (axes x combinations): a typo must not start a day-long run
MAX_SEARCH_EVALS = 2000    # per min-memory search (each is one solve)
L1_SEARCH_LIMIT = 64 * KIB * KIB  # never look for an L1 above 64 MiB

CSV_COLUMNS = [
    "network", "hardware", "l1", "l1_usable", "l2", "l2_usable", "dft", "fwsa", "status",
    "l1_peak", "l2_peak", "l2_activations", "l2_weights", "l2_runtime", "l3_peak",
    "cycles", "latency_ms", "forms", "fwsa_applied", "streamed_weights", "not_proven_optimal",
    "infeasible_level", "infeasible_layer", "missing_bytes", "reason", "message",
]

CSV_FILE = "explore.csv"
PEAK_PNG = "memory_peak.png"
LATENCY_PNG = "latency.png"
MIN_MEMORY_JSON = "min_memory.json"


# ------------------------------------------------------------------------------ parsing


def fmt_bytes(n: int | None) -> str:
    """64K for multiples of 1 KiB, else the byte count."""
    if n is None:
        return "-"
    return f"{n // KIB}K" if n % KIB == 0 else str(n)


def parse_range(text: str, flag: str = "--l1") -> list[int]:
    """'32K:256K:16K' -> [32768, 49152, ..., 262144] (STOP included when on the grid);
    '32K:256K' -> 8 steps (rounded up to 1 KiB, STOP included); '64K' -> [65536].
    The number of points comes from the range arithmetic and is checked against MAX_POINTS
    before any list is built (a typo such as 1:1000000000:1 must not fill the host's memory)."""
    def bad(why: str) -> UsageError:
        return UsageError(f"{flag} {text!r}: {why} (range syntax: {RANGE_SYNTAX})")

    parts = str(text).strip().split(":")
    if not 1 <= len(parts) <= 3 or any(not p.strip() for p in parts):
        raise bad("not a range")
    try:
        vals = [parse_size(p) for p in parts]
    except UsageError as exc:
        raise bad(str(exc)) from None
    if len(vals) == 1:
        return vals
    start, stop = vals[0], vals[1]
    if start > stop:
        raise bad(f"START ({start:,} B) is above STOP ({stop:,} B)")
    if len(vals) == 3:
        step = vals[2]
        count = (stop - start) // step + 1
        add_stop = False
    else:
        step = max(KIB, -(-(stop - start) // DEFAULT_STEPS // KIB) * KIB) if stop > start else KIB
        count = (stop - start) // step + 1
        add_stop = start + (count - 1) * step != stop
        count += add_stop
    if count > MAX_POINTS:
        raise bad(f"{count:,} points (at most {MAX_POINTS:,}): use a coarser STEP")
    out = list(range(start, stop + 1, step))
    if add_stop:
        out.append(stop)
    return out


def parse_vary(text: str | None) -> tuple[str, ...]:
    """'dft,fwsa' -> ('dft', 'fwsa') in canonical order."""
    if text is None:
        return ()
    names = [t.strip().lower() for t in str(text).split(",") if t.strip()]
    if not names:
        raise UsageError(f"--vary {text!r}: expected a comma-separated list of {', '.join(VARY_OPTIONS)}")
    for n in names:
        if n not in VARY_OPTIONS:
            raise UsageError(f"--vary: unknown option {n!r} (can vary: {', '.join(VARY_OPTIONS)}; "
                             "each is varied over on/off)")
    return tuple(o for o in VARY_OPTIONS if o in names)


def combinations(vary: Sequence[str], base: SolveOptions) -> list[dict[str, str]]:
    """Every combination of the varied options (on before off); the others keep the base value."""
    fixed = {"dft": base.dft, "fwsa": base.fwsa}
    axes = [[(o, v) for v in VARY_VALUES] if o in vary else [(o, fixed[o])] for o in VARY_OPTIONS]
    return [dict(c) for c in itertools.product(*axes)]


def series_label(combo: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in combo.items())


# ------------------------------------------------------------------------ one evaluated point


_RE_MISSING = re.compile(r"([\d,]+) B missing at (L\d)")
_RE_LAYER = re.compile(r"layer (\S+) \((\w+)\) does not fit (L\d)")
_RE_SMALLEST = re.compile(r"smallest footprint is ([\d,]+) B")
_RE_OVERRIDE = re.compile(r"^(L\d) override for")


@dataclass
class Outcome:
    """The result of one solve, reduced to what the CSV, the plots and the search need."""

    l1: int | None
    l2: int
    dft: str
    fwsa: str
    status: str                      # feasible | infeasible | unsupported
    l1_usable: int | None = None
    l2_usable: int | None = None
    l1_peak: int | None = None
    l2_peak: int | None = None
    l2_activations: int | None = None
    l2_weights: int | None = None
    l2_runtime: int | None = None
    l3_peak: int | None = None
    cycles: int | None = None
    latency_ms: float | None = None
    forms: str = ""
    fwsa_applied: str = ""
    streamed_weights: int | None = None
    not_proven_optimal: int | None = None
    level: str = ""                  # infeasible: the level that overflows
    layer: str = ""                  # infeasible: the layer that does not fit (when named)
    layer_op: str = ""
    missing: int | None = None       # infeasible: bytes missing at `level`
    smallest: int | None = None      # infeasible at a layer: its smallest footprint (usable bytes)
    message: str = ""
    seconds: float = 0.0             # console only, never written to a file
    compute_level: str = ""
    schedule: tuple[str, ...] = ()
    block_forms: tuple[tuple[str, str], ...] = ()   # (MHSA node, form) in graph order
    l2_regions: dict | None = None   # feasible: live graph-tensor peak per region (_region_peaks)
    # feasible: per MHSA block (node, form, what decided it, the planner's reason), graph order
    block_choices: tuple[tuple[str, str, str, str], ...] = ()
    reserve: int | None = None       # the reserve of `level` (for the reason of a size below it)

    @property
    def reason(self) -> str:
        """Why the point has no plan, in a few words (the full message is `message`)."""
        if self.feasible:
            return ""
        if self.status == "unsupported":
            return _first_clause(self.message)
        msg = self.message
        miss = f"{self.missing:,} B missing" if self.missing is not None else ""
        if self.layer:
            need = f" needs {self.smallest:,} B" if self.smallest is not None else " does not fit"
            return f"{self.layer} ({self.layer_op}){need} of {self.level}" + (f", {miss}" if miss else "")
        if _RE_OVERRIDE.search(msg):
            return f"{self.level} size at or below its {self.reserve:,} B reserve" if self.reserve is not None \
                else f"{self.level} size at or below its reserve"
        for key, why in _REASONS:
            if key in msg:
                return f"{self.level or '?'}: {miss + ' ' if miss else ''}{why}".strip()
        return _first_clause(msg)

    @property
    def feasible(self) -> bool:
        return self.status == "feasible"

    def row(self, network: str, hardware: str) -> list[object]:
        def v(x):
            return "" if x is None else x
        lat = "" if self.latency_ms is None else f"{self.latency_ms:.4f}"
        return [network, hardware, v(self.l1), v(self.l1_usable), self.l2, v(self.l2_usable), self.dft,
                self.fwsa, self.status, v(self.l1_peak), v(self.l2_peak), v(self.l2_activations),
                v(self.l2_weights), v(self.l2_runtime), v(self.l3_peak), v(self.cycles), lat, self.forms,
                self.fwsa_applied, v(self.streamed_weights), v(self.not_proven_optimal), self.level,
                self.layer, v(self.missing), self.reason, self.message]


# (text of the planner's message, the reason shown) for infeasible points not naming a layer
_REASONS = (
    ("even with every weight streamed", "even with every weight streamed from L3"),
    ("no L3 to stream weights from", "activations + weights + runtime, no L3 for the weights"),
    ("did not converge", "weights placement did not converge"),
    ("no tiling found although", "no tiling found (L2 staging or tiler time limit)"),
    ("exceeds the usable", "peak above the usable size"),
)


def _first_clause(msg: str, limit: int = 70) -> str:
    """The message up to its first ';' or ' (' (at most `limit` characters)."""
    cut = min([i for i in (msg.find("; "), msg.find(" (")) if i > 0] or [len(msg)])
    text = msg[:cut]
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _region_peaks(sol) -> dict[str | None, int] | None:
    """Largest sum of live graph activation tensors (4-byte aligned, from the L2 placements) at one
    step, per region: None for the steps outside any MHSA block, else the block's node name (its
    depth-first step, or its layer-by-layer parts). Which tensors exist and when they are live
    depends only on the MHSA forms: outside steps see the same tensors in every form (block-internal
    tensors never live there, and the steps keep their order), and a block's region depends on its
    own form only. Tile, staging and accumulator buffers (which do depend on the capacities) are not
    counted, so an L2 plan of the same forms can never need less than these peaks."""
    placements = sol.plan.memory.get("L2", {}).get("placements") or {}
    tensors = sol.graph.tensors
    spans = [(p["start"], p["end"], -(-p["bytes"] // ALIGN) * ALIGN)
             for name, p in placements.items() if name in tensors]
    if not spans:
        return None
    out: dict[str | None, int] = {}
    for lay in sol.plan.layers:
        key = lay.name if lay.op == "MHSA" else lay.parts_of
        live = sum(b for s, e, b in spans if s <= lay.step <= e)
        out[key] = max(out.get(key, 0), live)
    return out


class Explorer:
    """Solves points (cached by capacities and options) and reports progress on stderr."""

    def __init__(self, network: str | Path, hw_spec: str | Path, base: SolveOptions,
                 vary: Sequence[str] = (), progress: Callable[[str], None] | None = None):
        self.network = str(network)
        self.hw_spec = hw_spec
        self.hw: HardwareModel = load_hw_model(hw_spec)
        self.base = base
        self.vary = tuple(vary)
        self.progress = progress
        self.cache: dict[tuple, Outcome] = {}
        if "L2" not in self.hw.levels:
            raise PlannerError(f"hardware model '{self.hw.name}' has no L2: the planner keeps activations in L2")

    @property
    def has_l1(self) -> bool:
        return self.hw.has_level("L1")

    def real(self, key: str) -> int | None:
        return self.hw.levels[key].size if self.hw.has_level(key) else None

    def reserve(self, key: str) -> int:
        return self.hw.levels[key].reserve

    def usable(self, key: str, size: int | None) -> int | None:
        if size is None or size <= self.reserve(key):
            return None
        return size - self.reserve(key)

    def evaluate(self, l1: int | None, l2: int, combo: dict[str, str], tag: str = "",
                 after: Callable[[Outcome], str] | None = None) -> Outcome:
        """Solve one point (cached). A PlannerError is an infeasible point; a UsageError about a
        varied option (e.g. --fwsa on where the tree cannot plan it) an unsupported one; any other
        UsageError is the user's and propagates. after(o): text appended to the progress line
        (the sweep's ETA)."""
        key = (l1, l2, combo["dft"], combo["fwsa"])
        if key in self.cache:
            return self.cache[key]
        opts = dataclasses.replace(self.base, l1=l1, l2=l2, dft=combo["dft"], fwsa=combo["fwsa"])
        o = Outcome(l1, l2, combo["dft"], combo["fwsa"], "feasible",
                    l1_usable=self.usable("L1", l1), l2_usable=self.usable("L2", l2))
        t0 = time.perf_counter()
        try:
            sol = solve(self.network, self.hw_spec, opts)
        except UsageError as exc:
            msg = str(exc)
            # a combination of the varied options the planner refuses (e.g. --fwsa on with
            # --dft off) is a point of the sweep; anything else is the user's mistake
            if not (self.vary and any(msg.startswith(f"--{k}") for k in VARY_OPTIONS)):
                raise
            o.status, o.message = "unsupported", msg
        except PlannerError as exc:
            self._infeasible(o, str(exc))
        else:
            self._feasible(o, sol)
        o.seconds = time.perf_counter() - t0
        if o.level in ("L1", "L2") and self.hw.has_level(o.level):
            o.reserve = self.reserve(o.level)
        self.cache[key] = o
        if self.progress:
            self.progress(f"{tag} {self.describe(o)}".strip() + (after(o) if after else ""))
        return o

    def describe(self, o: Outcome) -> str:
        head = f"L1={fmt_bytes(o.l1)} " if o.l1 is not None else ""
        head += f"L2={fmt_bytes(o.l2)} dft={o.dft} fwsa={o.fwsa} ..."
        if o.feasible:
            what = f"feasible, {o.latency_ms:.4f} ms"
        elif o.status == "unsupported":
            what = "unsupported"
        else:
            what = f"infeasible at {o.level or '?'}" + (f" ({o.missing:,} B missing)" if o.missing is not None else "")
        return f"{head} {what}, {o.seconds:.1f} s"

    def _infeasible(self, o: Outcome, msg: str) -> None:
        o.status, o.message = "infeasible", msg
        m = _RE_LAYER.search(msg)
        if m:
            o.layer, o.layer_op, o.level = m.group(1), m.group(2), m.group(3)
            s = _RE_SMALLEST.search(msg)
            if s:
                o.smallest = int(s.group(1).replace(",", ""))
        m = _RE_MISSING.search(msg)
        if m:
            o.missing = int(m.group(1).replace(",", ""))
            o.level = o.level or m.group(2)
        m = _RE_OVERRIDE.search(msg)
        if m:
            o.level = m.group(1)

    def _feasible(self, o: Outcome, sol) -> None:
        p = sol.plan
        mem = p.memory
        if "L1" in mem:
            o.l1_peak = mem["L1"]["peak"]
        l2 = mem["L2"]
        o.l2_peak = l2["peak"]
        o.l2_activations = l2["breakdown"]["activations"]
        o.l2_weights = l2["breakdown"]["weights"]
        o.l2_runtime = l2["breakdown"]["runtime"]
        o.l3_peak = mem["L3"]["peak"] if "L3" in mem else None
        o.cycles = int(p.estimate["cycles"])
        o.latency_ms = round(float(p.estimate["latency_ms"]), 4)
        o.forms = ";".join(b["form"] for b in p.blocks)
        o.fwsa_applied = ";".join("yes" if b.get("fwsa", {}).get("applied") else "no" for b in p.blocks)
        o.streamed_weights = len(mem["L3"].get("weights", {})) if "L3" in mem else 0
        o.not_proven_optimal = sum(1 for lay in p.layers if not lay.optimal)
        o.compute_level = p.hardware.get("compute_level", "")
        o.schedule = tuple(p.schedule)
        o.block_forms = tuple((b["node"], b["form"]) for b in p.blocks)
        o.l2_regions = _region_peaks(sol)
        o.block_choices = tuple((b["node"], b["form"], (b.get("rule") or {}).get("decided_by", ""),
                                 b.get("reason") or "") for b in p.blocks)


# ------------------------------------------------------------------------------------ sweep


def network_label(path: str | Path) -> str:
    """'examples/ecg_block/int.onnx' -> 'ecg_block/int.onnx' (independent of where the tree is)."""
    p = Path(path)
    return f"{p.parent.name}/{p.name}" if p.parent.name else p.name


@dataclass
class Sweep:
    network: str
    hardware: str
    hardware_display: str
    l1_values: list[int | None]
    l2_values: list[int]
    combos: list[dict[str, str]]
    points: list[Outcome] = field(default_factory=list)
    total: int = 0                   # points planned; len(points) < total when interrupted
    interrupted: bool = False

    @property
    def axis(self) -> str:
        """The capacity on the plots' x axis: L1 when it is swept (or the only one given), else L2."""
        if len(self.l1_values) > 1 or (len(self.l2_values) == 1 and self.l1_values[0] is not None):
            return "L1"
        return "L2"


def sweep_size(n_l1: int, n_l2: int, vary: Sequence[str]) -> int:
    """Points of a sweep, from the axis lengths alone (checked before anything is solved)."""
    return n_l1 * n_l2 * len(VARY_VALUES) ** len(vary)


def run_sweep(ex: Explorer, l1_values: Sequence[int] | None, l2_values: Sequence[int] | None,
              vary: Sequence[str], csv_path: Path | None = None) -> Sweep:
    """Solve every point; with csv_path, each row is appended and flushed as soon as its point is
    solved, so an interrupted sweep (Ctrl-C: `interrupted` is set and the points so far are
    returned) leaves a valid CSV of the finished points."""
    hw = ex.hw
    if l1_values and not ex.has_l1:
        raise UsageError(f"--l1: hardware model '{hw.name}' has no L1 (its levels: {', '.join(hw.levels)})")
    total = sweep_size(len(l1_values or [None]), len(l2_values or [None]), vary)
    if total > MAX_POINTS:
        raise UsageError(f"the sweep has {total:,} points (at most {MAX_POINTS:,}): use a coarser STEP")
    l1s: list[int | None] = list(l1_values) if l1_values else [ex.real("L1")]
    l2s = list(l2_values) if l2_values else [ex.real("L2")]
    combos = combinations(vary, ex.base)
    sw = Sweep(network_label(ex.network), hw.name, hw.display_name, l1s, l2s, combos, total=total)
    grid = [(l1, l2, combo) for l1 in l1s for l2 in l2s for combo in combos]
    spent = [0.0]

    def eta(o: Outcome) -> str:
        spent[0] += o.seconds
        done = len(sw.points) + 1
        left = total - done
        return f"; ETA {fmt_duration(spent[0] / done * left)}" if left else ""

    sink = open_csv(csv_path) if csv_path is not None else None
    try:
        for k, (l1, l2, combo) in enumerate(grid, 1):
            o = ex.evaluate(l1, l2, combo, tag=f"[{k}/{total}]", after=eta)
            sw.points.append(o)
            if sink is not None:
                sink.write(_csv_line(o.row(sw.network, sw.hardware)))
                sink.flush()
    except KeyboardInterrupt:
        sw.interrupted = True
    finally:
        if sink is not None:
            sink.close()
    return sw


def fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {s % 3600 // 60:02d} min"


def _csv_line(row: list[object]) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(row)
    return buf.getvalue()


def open_csv(path: Path):
    """The sweep's CSV, header written and flushed (rows follow, one write per row)."""
    f = path.open("w", encoding="utf-8", newline="")
    f.write(_csv_line(CSV_COLUMNS))
    f.flush()
    return f


def csv_text(sw: Sweep) -> str:
    return _csv_line(CSV_COLUMNS) + "".join(_csv_line(o.row(sw.network, sw.hardware)) for o in sw.points)


def write_csv(sw: Sweep, path: Path) -> None:
    path.write_text(csv_text(sw), encoding="utf-8")


def slower_with_more_memory(sw: Sweep) -> list[tuple[str, Outcome, Outcome]]:
    """(series label, smaller point, larger point) where the next larger capacity of a series gives
    a slower plan with other MHSA forms or FWSA choices (the --dft/--fwsa auto rules switched)."""
    out = []
    xs_of = (lambda o: o.l1) if sw.axis == "L1" else (lambda o: o.l2)
    for label, pts in _series(sw):
        feas = sorted((o for o in pts if o.feasible), key=xs_of)
        for a, b in zip(feas, feas[1:]):
            if b.latency_ms > a.latency_ms and (a.forms, a.fwsa_applied) != (b.forms, b.fwsa_applied):
                out.append((label, a, b))
    return out


def switch_explanation(a: Outcome, b: Outcome) -> str:
    """Why the larger point b is slower than a: which block changed form, and the rule's reason."""
    parts = []
    for (node, fa, _, _), (_, fb, how, why) in zip(a.block_choices, b.block_choices):
        if fa != fb:
            rule = {"memory": "estimates within the cost model's uncertainty, so the lower L2 need",
                    "cycles": "fewer estimated cycles", "fit": "the other form does not fit"}.get(how, why)
            parts.append(f"{node}: {fa} -> {fb} ({rule})")
    if not parts and a.fwsa_applied != b.fwsa_applied:  # (a form switch alone changes FWSA too)
        parts.append(f"FWSA per block {a.fwsa_applied} -> {b.fwsa_applied}")
    return "; ".join(parts) or "the plan changed"


# ------------------------------------------------------------------------------------ plots


def _series(sw: Sweep) -> list[tuple[str, list[Outcome]]]:
    """One line per combination (and per value of the non-plotted axis when both are swept)."""
    out = []
    other = sw.l2_values if sw.axis == "L1" else sw.l1_values
    for combo in sw.combos:
        for ov in other:
            pts = [o for o in sw.points if o.dft == combo["dft"] and o.fwsa == combo["fwsa"]
                   and (o.l2 if sw.axis == "L1" else o.l1) == ov]
            label = series_label(combo)
            if len(other) > 1:
                label += f" {'L2' if sw.axis == 'L1' else 'L1'}={fmt_bytes(ov)}"
            out.append((label, pts))
    return out


def write_plots(sw: Sweep, ex: Explorer, out_dir: Path,
                min_marks: Sequence[tuple[str, int]] = ()) -> list[Path]:
    """memory_peak.png (one panel per level L1/L2) and latency.png; fixed metadata, no pyplot."""
    from matplotlib import style  # Figure + the Agg canvas directly: no pyplot, no global backend
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    axis = sw.axis
    xs_of = (lambda o: o.l1) if axis == "L1" else (lambda o: o.l2)
    real = ex.real(axis)
    reserve = ex.reserve(axis)
    series = _series(sw)
    title = f"{sw.network} on {sw.hardware_display}"
    name = ex.hw.levels[axis].display_name
    xlabel = f"{axis} capacity (KiB)" + (f", {name}" if name != axis else "")
    files = []

    def kib(v):
        return math.nan if v is None else v / KIB

    def decorate(ax, ylabel):
        ax.axvline(real / KIB, color="0.3", linestyle="--", linewidth=1,
                   label=f"{ex.hw.name} {axis} = {fmt_bytes(real)}")
        merged: dict[int, list[str]] = {}
        for label, cap in min_marks:
            merged.setdefault(cap, []).append(label)
        for cap, labels in merged.items():
            ax.axvline(cap / KIB, color="0.6", linestyle=":", linewidth=1,
                       label=f"min {axis} = {fmt_bytes(cap)} ({'; '.join(labels)})")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, linewidth=0.3)

    levels = [k for k in ("L1", "L2") if k in ex.hw.levels]
    with style.context("default"):
        # (1) memory peaks
        fig = Figure(figsize=(8, 3.2 * len(levels) + 0.6), dpi=100)
        FigureCanvasAgg(fig)
        axes = fig.subplots(len(levels), 1, squeeze=False)[:, 0]
        for ax, lvl in zip(axes, levels):
            for i, (label, pts) in enumerate(series):
                color = f"C{i % 10}"
                xs = [xs_of(o) / KIB for o in pts]
                ys = [kib(o.l1_peak if lvl == "L1" else o.l2_peak) if o.feasible else math.nan for o in pts]
                ax.plot(xs, ys, marker="o", markersize=3, color=color, label=label)
                bad = [xs_of(o) / KIB for o in pts if o.status == "infeasible"]
                if bad:
                    ax.plot(bad, [0.0] * len(bad), linestyle="none", marker="x", markersize=7, color=color, clip_on=False)
            if lvl == axis:
                xs = [v / KIB for v in (sw.l1_values if axis == "L1" else sw.l2_values)]
                ax.plot(xs, [max(0.0, x - reserve / KIB) for x in xs], color="0.5", linewidth=0.8,
                        linestyle="-.", label=f"usable {axis} (capacity - {fmt_bytes(reserve)} reserve)")
            decorate(ax, f"{lvl} peak (KiB)")
            ax.set_ylim(bottom=0)
            name = ex.hw.levels[lvl].display_name
            what = "one layer's tiles at a time" if lvl == "L1" else "activations + resident weights + runtime"
            ax.set_title(f"{lvl}" + (f" ({name})" if name != lvl else "") + f" peak: {what}", fontsize=9)
            ax.legend(fontsize=7, loc="best")
        fig.suptitle(f"{title}\nmemory peak vs {axis} capacity (x on the axis: infeasible)", fontsize=10)
        fig.tight_layout()
        path = out_dir / PEAK_PNG
        fig.savefig(path, format="png", metadata={"Software": None})
        files.append(path)

        # (2) latency
        fig = Figure(figsize=(8, 4.2), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        for i, (label, pts) in enumerate(series):
            color = f"C{i % 10}"
            xs = [xs_of(o) / KIB for o in pts]
            ys = [o.latency_ms if o.feasible else math.nan for o in pts]
            ax.plot(xs, ys, marker="o", markersize=3, color=color, label=label)
            bad = [xs_of(o) / KIB for o in pts if o.status == "infeasible"]
            if bad:
                ax.plot(bad, [0.0] * len(bad), linestyle="none", marker="x", markersize=7, color=color, clip_on=False)
        decorate(ax, f"estimated latency (ms at {ex.hw.frequency_hz / 1e6:g} MHz)")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=7, loc="best")
        ax.set_title(f"{title}\nestimated latency vs {axis} capacity (x on the axis: infeasible)", fontsize=10)
        fig.tight_layout()
        _annotate_switches(fig, ax, sw, xs_of)
        path = out_dir / LATENCY_PNG
        fig.savefig(path, format="png", metadata={"Software": None})
        files.append(path)
    return files


MAX_ANNOTATIONS = 3  # more would crowd the figure; the console lists every switch


def _annotate_switches(fig, ax, sw: Sweep, xs_of) -> None:
    """Where more memory gives a slower plan because an auto rule switched form: a numbered mark
    at the slower point, the explanation as a footnote under the plot (the console prints it too)."""
    import textwrap

    switches = slower_with_more_memory(sw)
    notes = []
    for i, (label, a, b) in enumerate(switches[:MAX_ANNOTATIONS], 1):
        ax.annotate(f"({i}) slower with more {sw.axis}", xy=(xs_of(b) / KIB, b.latency_ms),
                    xytext=(16, -24), textcoords="offset points", fontsize=7,
                    arrowprops={"arrowstyle": "->", "color": "0.35", "lw": 0.8})
        series = f" [{label}]" if len(_series(sw)) > 1 else ""
        notes.append(textwrap.fill(f"({i}) {fmt_bytes(xs_of(a))} -> {fmt_bytes(xs_of(b))}{series}: "
                                   f"{a.latency_ms:.4f} -> {b.latency_ms:.4f} ms: "
                                   + switch_explanation(a, b), 130))
    if len(switches) > MAX_ANNOTATIONS:
        notes.append(f"{len(switches) - MAX_ANNOTATIONS} more such switch(es): see the console")
    if notes:
        text = "\n".join(notes)
        lines = text.count("\n") + 1
        w, h = fig.get_size_inches()
        fig.set_size_inches(w, h + 0.16 * lines + 0.1)
        fig.text(0.01, 0.01, text, fontsize=6.5, ha="left", va="bottom")
        fig.tight_layout(rect=(0, (0.16 * lines + 0.05) / (h + 0.16 * lines + 0.1), 1, 1))


# ------------------------------------------------------------------------------- min memory


@dataclass
class SearchResult:
    value: int | None          # smallest feasible candidate (bytes), None if none up to the top
    evaluations: int           # solves made by this search (cached points included)
    certified_below: int       # every candidate below this many bytes is proven infeasible
    scanned: int               # candidates evaluated by the safety scan (0: the bisection sufficed)
    non_monotone: list[tuple[int, int]]  # (feasible capacity, larger infeasible capacity) seen
    top: int


def safe_min_search(cands: Sequence[int], evaluate: Callable[[int], Outcome],
                    certified_bound: Callable[[int, Outcome], int | None],
                    guess: Callable[[int, Outcome], int | None]) -> SearchResult:
    """Smallest candidate (ascending list) whose evaluation is feasible, without assuming monotony.

    certified_bound(c, o): a capacity B such that every candidate below B is certainly infeasible
    (None if the outcome proves nothing). guess(c, o): a hint where the boundary may be (not trusted).
    Probe the lowest uncertified candidate, follow hints, bisect; then evaluate every candidate between
    the certified floor and the answer that the bisection skipped (none when the last infeasible
    point below the answer is itself certified)."""
    results: dict[int, Outcome] = {}
    floor = 0  # candidates with index < floor are certainly infeasible
    count = 0

    def index_at_least(b: int) -> int:
        return bisect.bisect_left(cands, b)

    def ev(i: int) -> Outcome:
        nonlocal floor, count
        if count >= MAX_SEARCH_EVALS:
            raise PlannerError(f"min-memory search stopped after {MAX_SEARCH_EVALS} solves")
        count += 1
        o = evaluate(cands[i])
        results[i] = o
        b = certified_bound(cands[i], o)
        if b is not None:
            floor = max(floor, index_at_least(b))
        return o

    top = len(cands) - 1
    hi: int | None = top if ev(top).feasible else None
    scanned = 0
    if hi is not None:
        lo = -1
        nxt: int | None = floor  # first probe: the lowest uncertified candidate
        while True:
            lo = max(lo, floor - 1)
            if hi - lo <= 1:
                break
            mid = nxt if nxt is not None and lo < nxt < hi else (lo + hi) // 2
            nxt = None
            o = ev(mid)
            if o.feasible:
                hi = mid
            else:
                lo = mid
                g = guess(cands[mid], o)
                if g is not None:
                    nxt = index_at_least(g)
    # safety scan: candidates in [floor, hi) that nothing certifies and nothing evaluated, lowest
    # first (when the top is infeasible: everything uncertified below the top)
    end = hi if hi is not None else top
    i = floor
    while i < end:
        if i not in results:
            scanned += 1
            if ev(i).feasible:
                hi = i
                break
        i = max(i + 1, floor)
    feas = sorted(i for i, o in results.items() if o.feasible)
    infeas = sorted(i for i, o in results.items() if not o.feasible)
    non_mono = []
    if feas:
        f0 = feas[0]
        non_mono = [(cands[f0], cands[j]) for j in infeas if j > f0]
    return SearchResult(None if hi is None else cands[hi], count, cands[floor] if floor < len(cands) else cands[-1] + 1,
                        scanned, non_mono, cands[top])


def _grid(reserve: int, top: int) -> range:
    """Sizes on the 1 KiB grid above the level's reserve, up to `top` (rounded up to 1 KiB); a
    range, not a list: the search touches a few of them (bisection), the grid can be millions."""
    first = (reserve // KIB + 1) * KIB
    last = -(-top // KIB) * KIB
    return range(first, last + 1, KIB)


def min_memory(ex: Explorer, combo: dict[str, str], l2_config: int, l1_top: int | None = None,
               tag: str = "") -> dict:
    """Smallest L1 (1 KiB grid) with L2 = l2_config, then the smallest L2 for that L1."""
    hw = ex.hw
    label = series_label(combo)
    res: dict = {"options": dict(combo), "l2_configured": l2_config}

    def progress_tag(what: str) -> str:
        return f"[min-memory {label}: {what}]"

    first_unsupported = ex.evaluate(ex.real("L1"), l2_config, combo, tag=progress_tag("check"))
    if first_unsupported.status == "unsupported":
        res.update({"status": "unsupported", "message": first_unsupported.message})
        return res

    # --- L1
    l1 = None
    if ex.has_l1:
        reserve = ex.reserve("L1")
        top = max(ex.real("L1"), l1_top or 0)

        def cert_l1(c: int, o: Outcome) -> int | None:
            if o.feasible or o.level != "L1":
                return None
            bound = c + 1  # this layer's fit at L1 is monotone: every smaller L1 fails too
            # The footprint bound is the reported layer's. For an MHSA node it is the depth-first
            # node's: only a bound when that form is forced and fused or not is not left to auto
            # (with --dft off/auto the planner reports the depth-first node when both forms fail,
            # and the layer-by-layer parts may need less).
            other_form = o.layer_op == "MHSA" and (o.dft != "on" or o.fwsa == "auto")
            if o.smallest is not None and not other_form:
                bound = max(bound, o.smallest + reserve)
            return bound

        def guess(c: int, o: Outcome) -> int | None:
            return c + o.missing if o.missing else None

        while True:
            cands = _grid(reserve, top)
            sr = safe_min_search(cands, lambda c: ex.evaluate(c, l2_config, combo, tag=progress_tag("L1 search")),
                                 cert_l1, guess)
            if sr.value is not None or cands[-1] >= L1_SEARCH_LIMIT:
                break
            o_top = ex.evaluate(cands[-1], l2_config, combo)
            if o_top.level != "L1":
                break  # more L1 does not cure an L2 shortage; the safety scan covered the grid below
            top = min(L1_SEARCH_LIMIT, max(2 * cands[-1], (cert_l1(cands[-1], o_top) or 0) + KIB))
        l1 = sr.value
        res["l1_search"] = _search_info(sr, reserve, "L1")
        if l1 is None:
            o_top = ex.evaluate(sr.top, l2_config, combo)
            res.update({"status": "infeasible", "l1": None,
                        "message": f"no L1 up to {fmt_bytes(sr.top)} gives a plan with L2 = "
                                   f"{fmt_bytes(l2_config)}: {o_top.message}"})
            return res
    else:
        sr = None

    # --- L2 for that L1
    reserve2 = ex.reserve("L2")
    cands2 = _grid(reserve2, l2_config)
    top_o = ex.evaluate(l1, cands2[-1], combo, tag=progress_tag("L2 search"))
    floor, basis, no_dft = _l2_tensor_floor(ex, l1, cands2[-1], combo, top_o, progress_tag("L2 bound"))
    bound_ok = {"ok": floor is not None}

    def cert_l2(c: int, o: Outcome) -> int | None:
        # the floor's premises, checked on every feasible point: forced forms keep the top's
        # schedule; a block taken as unable to be depth-first is never planned depth-first
        if o.feasible and ((basis == "forms fixed" and o.schedule != top_o.schedule)
                           or any(f == "depth-first" and b in no_dft for b, f in o.block_forms)):
            bound_ok["ok"] = False
        return floor + reserve2 + 1 if bound_ok["ok"] else None

    def guess2(c: int, o: Outcome) -> int | None:
        return c + o.missing if (o.missing and o.level == "L2") else None

    sr2 = safe_min_search(cands2, lambda c: ex.evaluate(l1, c, combo, tag=progress_tag("L2 search")), cert_l2, guess2)
    if floor is not None and not bound_ok["ok"]:
        # the premise of the tensor bound failed on some point: search again trusting nothing
        sr2 = safe_min_search(cands2, lambda c: ex.evaluate(l1, c, combo, tag=progress_tag("L2 search")),
                              lambda c, o: None, guess2)
        res["l2_bound_note"] = "the MHSA forms changed with L2: searched without the tensor bound"
    res["l2_search"] = _search_info(sr2, reserve2, "L2")
    res["l2_search"]["tensor_floor"] = {"bytes": floor, "basis": basis}
    final = ex.evaluate(l1, sr2.value, combo) if sr2.value is not None else None
    res.update({
        "status": "feasible" if final is not None and final.feasible else "infeasible",
        "l1": l1, "l1_usable": ex.usable("L1", l1) if l1 is not None else None,
        "l2": sr2.value, "l2_usable": ex.usable("L2", sr2.value) if sr2.value is not None else None,
    })
    if final is not None and final.feasible:
        res.update({"l1_peak": final.l1_peak, "l2_peak": final.l2_peak,
                    "l2_activations": final.l2_activations, "l2_weights": final.l2_weights,
                    "streamed_weights": final.streamed_weights, "latency_ms": final.latency_ms,
                    "forms": final.forms})
    return res


def _l2_tensor_floor(ex: Explorer, l1: int | None, l2_top: int, combo: dict[str, str], top_o: Outcome,
                     tag: str) -> tuple[int | None, str, frozenset]:
    """Usable L2 bytes no plan at this L1 can go below: the live graph tensors (see _region_peaks).
    Returns (floor or None, how it was derived, blocks assumed unable to be depth-first).

    Forced forms (--dft on/off): the top's peak over all steps. --dft auto (the forms may change
    with L2): the outside-block steps are the same in every form; per block, the smaller region
    peak of its two forms (two more solves at the top: all depth-first, all layer by layer). A block
    whose depth-first node does not fit L1 at the top cannot be depth-first at a smaller L2 either
    (L1 tiles only grow when weights move out of L2); it counts with its layer-by-layer region.
    The caller checks that assumption on every feasible point it sees."""
    if not top_o.feasible or not top_o.l2_regions:
        return None, "none (no feasible plan at the top)", frozenset()
    regions = top_o.l2_regions
    if combo["dft"] != "auto":
        return max(regions.values()), "forms fixed", frozenset()
    blocks = [k for k in regions if k is not None]
    if not blocks:
        return max(regions.values()), "no MHSA block", frozenset()
    forced = {}
    for dft in ("on", "off"):
        c = {"dft": dft, "fwsa": "off" if (dft == "off" and combo["fwsa"] == "on") else combo["fwsa"]}
        try:
            forced[dft] = ex.evaluate(l1, l2_top, c, tag=tag)
        except UsageError:
            forced[dft] = None
    on, off = forced["on"], forced["off"]
    parts = [regions.get(None, 0)]
    basis = "auto: outside MHSA blocks only"
    no_dft: frozenset = frozenset()
    if off is not None and off.feasible and off.l2_regions and set(off.l2_regions) == set(regions):
        if on is not None and on.feasible and on.l2_regions and set(on.l2_regions) == set(regions):
            parts += [min(on.l2_regions[b], off.l2_regions[b]) for b in blocks]
            basis = "auto: outside MHSA blocks, and per block the smaller of its two forms"
        elif on is not None and on.status == "infeasible" and on.level == "L1" and on.layer in blocks \
                and on.layer_op == "MHSA":
            no_dft = frozenset([on.layer])
            parts.append(off.l2_regions[on.layer])
            basis = (f"auto: outside MHSA blocks, and {on.layer} layer by layer (its depth-first "
                     "node does not fit L1)")
    return max(parts), basis, no_dft


def _search_info(sr: SearchResult, reserve: int, level: str) -> dict:
    return {
        "grid": f"1 KiB sizes from {fmt_bytes((reserve // KIB + 1) * KIB)} (above the {reserve:,} B "
                f"reserve) to {fmt_bytes(sr.top)}",
        "solves": sr.evaluations,
        "certified_infeasible_below": sr.certified_below,
        "safety_scan": sr.scanned,
        "non_monotone": [{"feasible": a, "infeasible_above": b} for a, b in sr.non_monotone],
    }


def min_memory_json(network: str, hw: HardwareModel, results: list[dict]) -> str:
    doc = {
        "network": network,
        "hardware": hw.name,
        "resolution_bytes": KIB,
        "note": ("l1/l2 are sizes as --l1/--l2 take them (capacity); *_usable = size minus the "
                 "model's reserve for stacks and runtime. The search does not assume monotonicity: "
                 "every smaller size on the grid is proven infeasible (certified or solved)."),
        "results": results,
    }
    return json.dumps(doc, sort_keys=True, indent=1) + "\n"


def summary_rows(sw: Sweep) -> list[list[object]]:
    rows = []
    for o in sw.points:
        rows.append([fmt_bytes(o.l1) if o.l1 is not None else "-", fmt_bytes(o.l2), o.dft, o.fwsa, o.status,
                     o.l1_peak if o.l1_peak is not None else "-",
                     o.l2_peak if o.l2_peak is not None else "-",
                     f"{o.latency_ms:.4f}" if o.latency_ms is not None else "-",
                     o.forms or "-", o.reason])
    return rows


SUMMARY_HEADERS = ["L1", "L2", "dft", "fwsa", "status", "L1 peak B", "L2 peak B", "latency ms",
                   "MHSA forms", "why no plan"]
