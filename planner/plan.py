"""The Plan: what codegen needs (tiles, buffers and offsets per level, DMA figures), plus the
estimates and decisions the report shows. JSON (de)serialization is deterministic: sorted keys,
floats rounded to 4 decimals, no timestamps or wall-clock figures. Format: docs/plan-format.md.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
FLOAT_DIGITS = 4


def param_blob_name(layer: str, buffer: str) -> str:
    """Name of a layer's constant that is not a graph tensor (its requantization vectors, its
    softmax table) among the memory plan's weights (memory.L2.weights)."""
    return f"{layer}/{buffer}"


# Constants the generated code computes at net_init into RAM (the softmax table, kl_softmax_lut):
# their home is L2 whatever the weights' (a flash cannot be written at run time).
INIT_FILLED = ("softmax_lut",)


def filled_at_init(const: str) -> bool:
    """A layer constant (param_blob_name) that net_init computes (INIT_FILLED)."""
    return "/" in const and const.rsplit("/", 1)[1] in INIT_FILLED


@dataclass
class BufferPlan:
    name: str              # role in the kernel call: x, w, bias, y, psum, k_h, acc, scratch, ...
    tensor: str | None     # IR tensor (None for kernel-local buffers)
    kind: str              # in | out | inout | weight | local | scratch
    level: str             # where this buffer lives (compute level for tiles)
    offset: int            # byte offset in that level's arena
    bytes: int             # bytes of one copy (one tile)
    copies: int            # 2 = double-buffered
    home: str | None = None     # level holding the whole tensor it is a tile of
    access: str = "none"        # dma | inplace | none
    loads: int = 0              # transfers per layer run (all passes)
    dma_bytes: int = 0          # bytes moved over the first link per layer run
    staging: dict | None = None  # {level, offset, bytes, copies} when staged (L3 -> L2 -> L1)
    dims: list[str] = field(default_factory=list)  # loop dims the tile spans (bytes scale with them)
    align: int = 4              # offset is a multiple of this (the kernel's need, at least 4)
    into: str | None = None     # DMA'd straight into that buffer's tile (bytes 0: no own memory)
    read_bytes: int = 0         # access inplace: bytes the kernel reads where it lives (re-reads)
    read_wait: int = 0          # access inplace: cycles the core waits on them (flash wait states)


@dataclass
class LayerPlan:
    name: str
    op: str
    kernel: str
    variant: str
    macs: int
    tile: dict[str, dict[str, int]]   # level -> dim -> tile size (the home level: full sizes)
    dims: dict[str, int]              # dim -> full size
    loop_order: list[str]
    n_tiles: int
    buffers: list[BufferPlan]
    l1_bytes: int                     # footprint in the compute level (0 when it is L2 itself)
    compute_level: str
    dma_bytes: int
    est_cycles: int
    cycles: dict[str, int]            # compute, dma_hidden, dma_exposed, overhead
    optimal: bool
    status: str
    step: int
    parts_of: str | None = None       # MHSA block this layer belongs to (layer-by-layer form)
    notes: list[str] = field(default_factory=list)
    bias_kind: str | None = None      # Linear: "vector" (bias[N]) | "full" ([S][N] int32) | None
    accumulator: str | None = None    # buffer holding the int32 accumulator of a tile: "psum",
                                      # "bias" (full bias), "y" (int32 output) or None


@dataclass
class Plan:
    format: int
    network: str
    hardware: dict[str, Any]
    options: dict[str, Any]
    memory: dict[str, Any]
    layers: list[LayerPlan]
    blocks: list[dict[str, Any]]
    estimate: dict[str, Any]
    schedule: list[str]
    aliases: dict[str, str]
    warnings: list[str] = field(default_factory=list)
    assumptions: list[str] = field(default_factory=list)
    fwsa: dict[str, Any] | None = None   # FWSA deviation (when a block is fused), see plan-format.md
    source: dict[str, Any] | None = None  # the network: path, sha256, external_data, input_shapes
    deployable: bool = True              # False: made with --plan-only; codegen refuses it
    not_deployable: list[str] = field(default_factory=list)  # why not (one reason per node)
    weights: dict[str, Any] | None = None    # where the constants live and why (--weights)
    footprint: dict[str, Any] | None = None  # read-only and read-write bytes, vendor-tool style

    def to_dict(self) -> dict[str, Any]:
        return _clean(asdict(self))

    def dumps(self) -> str:
        return dumps(self.to_dict())

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.dumps(), encoding="utf-8")

    def layer(self, name: str) -> LayerPlan:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(name)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Plan":
        layers = []
        for l in d["layers"]:
            l = dict(l)
            l["buffers"] = [BufferPlan(**b) for b in l["buffers"]]
            layers.append(LayerPlan(**l))
        return cls(**{**d, "layers": layers})

    @classmethod
    def read(cls, path: str | Path) -> "Plan":
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


def _clean(obj: Any) -> Any:
    if isinstance(obj, float):
        r = round(obj, FLOAT_DIGITS)
        return 0.0 if r == 0 else r
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and not isinstance(obj, (str, bytes)):  # numpy scalars
        return _clean(obj.item())
    return obj


def dumps(d: dict[str, Any]) -> str:
    return json.dumps(_clean(d), sort_keys=True, indent=1, ensure_ascii=True) + "\n"
