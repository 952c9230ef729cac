"""Cycle model of one tiled layer, from the hardware model only.

Figures (all from hw_models/*.json, marked there as assumptions until calibrated):
  * compute: the kernels' cost terms (kernel_lib/descriptions.py: counts of features of the C
    code such as MACs, row blocks, rows, calls, the busiest core's) at `kernel_cost[key][feature]`
    cycles per count (`planner.tiling.desc.ComputeTerm`: each term summed over the tiles);
  * transfers: per link (L2<->L1 described on L1, L3<->L2 on L2) `dma_setup_cycles` per transfer
    plus bytes / `bandwidth_bytes_per_cycle`; a transfer staged through the level in between
    (GAP9: L3 -> L2 -> L1) pays every link, a DMA straight from an addressable home (STM32H7:
    the MDMA reads the flash into DTCM) pays the setups once and moves at the slowest link's rate;
  * in-place reads: a weight the kernel loads where it lives, in a level with read wait states
    (the flash: `read_wait_states` per `read_width_bytes` access at `read_clock_hz`), stalls the
    core for those wait states on every byte it reads (`BufferSpec.reads` times its bytes: a
    Linear's weights are streamed once per block of rows) or on every access of a table read at
    random (`BufferSpec.lookups`); nothing overlaps it. A level without read figures is read at
    RAM speed (the kernel cost terms contain the loads);
  * overlap: transfers of double-buffered buffers run behind compute, except the first load (or
    last store) of each; single-buffered transfers are exposed;
  * the generated code's own work (`overhead_cycles`): per layer, per tile, per kernel call of a
    layer body, per byte compacted, and per DMA transfer the tile engine issues (CPU work on the
    core: descriptors, addresses, issue and wait; the copy itself is the DMA's, priced above).

  cycles = max(compute, hidden transfers) + exposed transfers + read waits + overhead

Everything is integer in units of 1/SCALE cycle so that the CP-SAT encoding
(planner/tiling/solver.py) and this evaluator give identical numbers; `evaluate` is the
reference the solver is tested against (exhaustive enumeration on small layers).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from math import prod

from planner.hw import HardwareModel
from planner.errors import PlannerError
from planner.tiling.desc import OVERHEAD_KINDS, BufferSpec, ComputeTerm, Variant

SCALE = 1000  # cost unit: 1/1000 cycle


@dataclass(frozen=True)
class Link:
    """Transfer between a level and the next-farther one (figures on the nearer level)."""

    near: str
    far: str
    setup: int       # scaled cycles per transfer
    byte_cost: int   # scaled cycles per byte
    engine: str


@dataclass(frozen=True)
class CostParams:
    hw_name: str
    cores: int
    levels: tuple[str, ...]                 # present levels, nearest first
    addressable: dict[str, bool]
    links: dict[str, Link]                  # keyed by the nearer level
    kernel_cost: dict[tuple[str, str], int]  # (key, feature) -> scaled cycles per count
    overhead: dict[str, int]                # OverheadTerm kind -> scaled cycles per count
    transfer_overhead: int                  # scaled cycles of tile-engine work per DMA transfer
    frequency_hz: int
    # levels read in place with wait states: level -> (scaled wait cycles per byte streamed,
    # scaled wait cycles per random access)
    read_wait: dict[str, tuple[int, int]] = field(default_factory=dict)
    weight_home: str | None = None          # where constants live by default (None: see below)

    @classmethod
    def from_hw(cls, hw: HardwareModel, cores: int | None = None,
                weight_home: str | None = None) -> "CostParams":
        levels = tuple(hw.levels)
        links = {}
        for near, far in zip(levels, levels[1:]):
            lv = hw.levels[near]
            links[near] = Link(near, far, int(round(SCALE * (lv.dma_setup_cycles or 0))),
                               int(round(SCALE / lv.bandwidth_bytes_per_cycle)), lv.engine or "")
        kc = {(k, f): int(round(SCALE * v)) for k, feats in hw.kernel_cost.items()
              for f, v in feats.items()}
        ov = {k: int(round(SCALE * hw.overhead_cycles[k])) for k in OVERHEAD_KINDS}
        read_wait = {}
        for k, lv in hw.levels.items():
            per_access = lv.read_wait_cycles(hw.frequency_hz)
            if per_access > 0 and lv.read_width_bytes:
                read_wait[k] = (int(round(SCALE * per_access / lv.read_width_bytes)),
                                int(round(SCALE * per_access)))
        return cls(hw.name, cores or hw.cores, levels, {k: v.addressable for k, v in hw.levels.items()},
                   links, kc, ov, int(round(SCALE * hw.overhead_cycles["transfer"])), hw.frequency_hz,
                   read_wait, weight_home if weight_home in hw.levels else None)

    @property
    def compute_level(self) -> str:
        return self.levels[0]

    @property
    def default_weight_home(self) -> str:
        """Where constants live unless the placement copies them nearer: in an addressable L3 (a
        memory-mapped flash: the weights image is read or DMA'd where it is, as vendor tools
        place it), else in L2 (GAP9: L3 is reached by the micro-DMA only; weights are streamed
        from it only when L2 overflows)."""
        if self.weight_home is not None:
            return self.weight_home
        return "L3" if self.addressable.get("L3") else "L2"

    def transfer(self, home: str, level: str) -> tuple[int, int]:
        """(scaled setup cycles per transfer, scaled cycles per byte) of a DMA'd buffer from
        `home` to `level`: a staged transfer is one DMA per link, one after the other (the sums);
        a DMA straight from an addressable home runs once, at its slowest link's rate."""
        legs = self.legs(home, level)
        if len(legs) > 1 and self.addressable.get(home, False):
            return sum(l.setup for l in legs), max(l.byte_cost for l in legs)
        return sum(l.setup for l in legs), sum(l.byte_cost for l in legs)

    def legs(self, home: str, level: str) -> list[Link]:
        """Links crossed moving data from `home` to `level` (empty when equal)."""
        i, j = self.levels.index(level), self.levels.index(home)
        return [self.links[self.levels[k]] for k in range(i, j)]

    def access(self, b: BufferSpec, level: str) -> str:
        """How a buffer reaches the compute level: 'none' (not moved: local, scratch, or its home
        is the compute level), 'inplace' (a weight read in place from an addressable farther
        level next to the compute level), or 'dma'."""
        if not b.moved or b.home is None or b.home == level:
            return "none"
        if b.kind == "weight" and self.addressable.get(b.home) and self.addressable.get(level) \
                and self.levels.index(b.home) == self.levels.index(level) + 1 and level != "L1":
            return "inplace"
        return "dma"

    def staging_level(self, b: BufferSpec, level: str) -> str | None:
        """A DMA'd buffer whose home cannot be reached by the compute level's DMA engine in one
        hop is staged through the level in between (GAP9: L3 -> L2 -> L1)."""
        if self.access(b, level) != "dma":
            return None
        legs = self.legs(b.home, level)
        if len(legs) > 1 and not self.addressable.get(b.home, False):
            return legs[1].near
        return None

    def term_coef(self, term: ComputeTerm) -> int:
        """Scaled cycles per count of a compute term (kernel_cost[key][feature])."""
        try:
            return self.kernel_cost[(term.key, term.feature)]
        except KeyError:
            raise PlannerError(f"hardware model '{self.hw_name}' has no kernel_cost.{term.key}."
                               f"{term.feature} (the kernel description counts it: "
                               "kernel_lib/descriptions.py)") from None

    def read_wait_cost(self, b: BufferSpec, bytes_read: int) -> int:
        """Scaled cycles the core waits reading `b` in place from its home (`bytes_read` = bytes
        streamed, `b.lookups` random accesses); 0 for a home without wait states."""
        w = self.read_wait.get(b.home or "")
        if w is None:
            return 0
        return w[1] * b.lookups * b.passes if b.lookups else w[0] * bytes_read


def reads_at(b: BufferSpec, tiles: dict[str, int]) -> int:
    """Times the kernel reads `b`'s bytes per pass at these tile sizes (BufferSpec.reads)."""
    if b.reads_table is not None:
        return dict(b.reads_table)[tiles[b.reads_dim]]
    return b.reads


@dataclass
class BufferEval:
    name: str
    tensor: str | None
    kind: str
    access: str
    present: bool
    tile_bytes: int
    copies: int
    loads: int
    traffic: int          # bytes moved over the first leg (all passes)
    dma: int              # scaled cycles
    first: int            # scaled cycles of the first load/last store
    staging: str | None = None
    align: int = 1        # the buffer's address alignment need (BufferSpec.align)
    read_bytes: int = 0   # bytes the kernel reads in place (all passes and re-reads)
    wait: int = 0         # scaled cycles the core waits on those reads (flash wait states)


@dataclass
class Evaluation:
    tiles: dict[str, int]
    n_tiles: dict[str, int]
    double: frozenset[str]
    compute: int
    hidden: int
    exposed: int
    overhead: int
    cost: int                      # scaled cycles
    wait: int                      # scaled cycles waiting on in-place reads (flash wait states)
    footprint: int                 # bytes in the compute level
    staging: int                   # bytes staged in the next level (streamed weights)
    activation_bytes: int          # activation bytes in the compute level (weights excluded)
    buffers: list[BufferEval] = field(default_factory=list)
    overhead_counts: dict[str, int] = field(default_factory=dict)  # OverheadTerm kinds, "transfer"

    @property
    def cycles(self) -> int:
        return -(-self.cost // SCALE)

    @property
    def total_tiles(self) -> int:
        return prod(self.n_tiles.values()) if self.n_tiles else 1

    @property
    def dma_bytes(self) -> int:
        return sum(b.traffic for b in self.buffers if b.access in ("dma", "inplace") and b.present)


def double_bufferable(params: CostParams, v: Variant) -> list[str]:
    return [b.name for b in v.buffers if params.access(b, v.level) == "dma" and b.unit_bytes > 0]


def evaluate(params: CostParams, v: Variant, tiles: dict[str, int], double: frozenset[str] | set[str] = frozenset()) -> Evaluation:
    """Cost and footprint of variant `v` with tile sizes `tiles` (every loop dim) and the buffers
    in `double` double-buffered. The reference semantics of the tiler's CP-SAT model."""
    order = [d.name for d in v.loops]
    n = {d.name: -(-d.size // tiles[d.name]) for d in v.loops}
    split = {k: n[k] >= 2 for k in order}
    compute = sum(params.term_coef(term) * term.count(tiles) for term in v.compute)
    hidden = exposed = transfers = wait = 0
    footprint = staging = act = 0
    evals = []
    for b in v.buffers:
        present = b.only_if_split is None or split[b.only_if_split]
        tb = dict(b.table)[tiles[b.dims[0]]] if b.table else b.unit_bytes * prod(tiles[d] for d in b.dims)
        acc = params.access(b, v.level)
        loads = traffic_factor = 1
        for j, d in enumerate(order):
            if d in b.dims:
                loads *= n[d]
            elif not b.once and any(split[k] for k in order[j + 1:] if k in b.dims):
                loads *= n[d]
                traffic_factor *= n[d]
        loads *= b.passes
        traffic = b.full_bytes * b.passes * traffic_factor
        dma = first = read = bwait = 0
        copies = 1
        stage = None
        if present and acc == "dma":
            setup, byte_cost = params.transfer(b.home, v.level)
            dma = setup * loads + byte_cost * traffic
            first = setup + byte_cost * tb
            transfers += loads
            if b.name in double:
                copies = 2
                hidden += dma - first
                exposed += first
            else:
                exposed += dma
            stage = params.staging_level(b, v.level)
            if stage is not None:
                staging += copies * tb
        elif present and acc == "inplace":
            read = traffic * reads_at(b, tiles)
            bwait = params.read_wait_cost(b, read)
            wait += bwait
        if present and acc != "none" or present and b.kind in ("local", "scratch"):
            if acc != "inplace":
                footprint += copies * tb
                if b.activation:
                    act += copies * tb
        evals.append(BufferEval(b.name, b.tensor, b.kind, acc, present, tb if present else 0,
                                copies, loads if acc != "none" else 0,
                                traffic if acc != "none" and present else 0, dma, first, stage,
                                b.align, read, bwait))
    counts = {"transfer": transfers}
    for o in v.overhead:
        counts[o.kind] = counts.get(o.kind, 0) + o.mult * prod(n[d] for d in o.dims)
    overhead = params.transfer_overhead * transfers + sum(params.overhead[o.kind] * o.mult
                                                           * prod(n[d] for d in o.dims) for o in v.overhead)
    cost = max(compute, hidden) + exposed + wait + overhead
    return Evaluation(dict(tiles), n, frozenset(double), compute, hidden, exposed, overhead, cost,
                      wait, footprint, staging, act, evals, counts)


def latency_ms(cycles: int, frequency_hz: int) -> float:
    return round(cycles * 1000.0 / frequency_hz, 4)


# Stated uncertainty of a cycle estimate, relative, by the status of the hardware-model figures it
# rests on: a figure marked "assumed" in hw_models/*.json (estimated from kernel families, DMA
# figures from peak rates), or derived or measured through a factor that is itself assumed (the
# kernel efficiencies measured as QEMU instruction counts by `planner calibrate`, which become cycles
# through the model's insn_to_cycle), is taken to be good to +-25%; a calibrated one (datasheet,
# cycles measured on the device, or QEMU counts once insn_to_cycle is measured) to +-5%. Used where
# two estimates are compared and the comparison decides (the --dft auto rule,
# docs/plan-format.md): differences inside the band are not taken as evidence. docs/calibration.md.
UNCERTAINTY_ASSUMED = 0.25
UNCERTAINTY_CALIBRATED = 0.05


def hw_fields(params: CostParams, v: Variant) -> set[str]:
    """The hardware-model fields (dotted paths, as in its `_source`) the estimate of `v` rests on."""
    fields = {f"overhead_cycles.{o.kind}" for o in v.overhead}
    for t in v.compute:
        fields.add(f"kernel_cost.{t.key}.{t.feature}")
    for b in v.buffers:
        acc = params.access(b, v.level)
        if acc == "dma":
            for leg in params.legs(b.home, v.level):
                fields.add(f"levels.{leg.near}.bandwidth_bytes_per_cycle")
                fields.add(f"levels.{leg.near}.dma_setup_cycles")
            fields.add("overhead_cycles.transfer")
        elif acc == "inplace" and b.home in params.read_wait:
            fields.update(f"levels.{b.home}.{f}" for f in ("read_wait_states", "read_width_bytes",
                                                             "read_clock_hz"))
    return fields


def source_is_assumed(src: str | None) -> bool:
    """A `_source` string that does not make its figure calibrated: missing, "assumed...", or a
    figure derived or measured through an assumed factor ("derived: QEMU instruction count ... /
    insn_to_cycle (assumed)", "measured: QEMU qemu-m7 instruction count, ... / insn_to_cycle 1
    (assumed) = ..."). Only a source free of "assumed" (datasheet, "measured: cycles ...") is
    calibrated."""
    if src is None:
        return True
    s = src.strip().lower()
    return s.startswith("assumed") or (s.startswith(("derived", "measured")) and "assumed" in s)


def rests_on(src: str | None) -> tuple[str, ...]:
    """Fields a figure is converted through: a QEMU instruction count ("measured: QEMU ...
    instruction count") becomes cycles through insn_to_cycle."""
    s = (src or "").strip().lower()
    return ("insn_to_cycle",) if s.startswith("measured: qemu") and "instruction count" in s else ()


def estimate_uncertainty(hw: HardwareModel, fields: set[str]) -> float:
    """UNCERTAINTY_ASSUMED when any of `fields` is assumed (or has no source, or is derived or
    measured through an assumed factor: `source_is_assumed`, `rests_on`; a field's source is its
    own or its enclosing object's, `kernel_cost.gemm` for `kernel_cost.gemm.mac`), else
    UNCERTAINTY_CALIBRATED, widened to the largest deviation `planner calibrate` measured between
    the estimate and the QEMU count of a layer (qemu_estimate_deviation) when the figures rest
    on QEMU counts."""
    qemu = False
    for f in fields:
        src = hw.source(f)
        deps = rests_on(src)
        if source_is_assumed(src) or any(source_is_assumed(hw.source(d)) for d in deps):
            return UNCERTAINTY_ASSUMED
        qemu = qemu or bool(deps)
    if qemu and hw.qemu_estimate_deviation:
        return max(UNCERTAINTY_CALIBRATED, float(hw.qemu_estimate_deviation))
    return UNCERTAINTY_CALIBRATED
