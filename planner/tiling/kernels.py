"""The tiler's view of a C kernel, read from kernel_lib/descriptions.py (the single source of truth
shared with codegen): C function, loop dims, core split, scratch bytes, rules, cost unit.

What a call costs is the description's too (`kernel_lib.descriptions.cost_terms`: counts of
features of the C code, priced at the hardware model's `kernel_cost[key][feature]`;
planner/tiling/ops.py sums them over the tiles).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

from kernel_lib import descriptions as kd

from planner.errors import PlannerError

# kernel_lib description name -> the hardware model kernel_cost key of its own terms (the
# mapping lives in kernel_lib/descriptions.py)
COST_KEY = kd.COST_KEYS


def isa_path(hw_isa: str) -> str:
    """The kernel library's ISA path for a hardware model's `isa` string."""
    if hw_isa.startswith("armv7e-m") or hw_isa.startswith("armv8"):
        return "arm-dsp"
    return "generic"  # xpulpv2 is described as generic (falls back to portable C)


@dataclass(frozen=True)
class KernelInfo:
    name: str
    desc: kd.KernelDesc
    isa: str
    split: str          # "rows" | "rows_else_cols" | "cols"
    rows: str           # the dim split first
    cols: str | None    # the dim split when rows < n_cores
    cost_key: str       # kernel_cost key of its own terms (the gemm core's are at "gemm")
    unit: str           # "mac" | "elem"

    @property
    def function(self) -> str:
        return " / ".join(sorted(set(self.desc.c_functions.values())))

    def scratch(self, dims: Mapping[str, int], cores: int) -> int:
        return self.desc.scratch_bytes(dims, cores, self.isa)

    def ok(self, dims: Mapping[str, int]) -> bool:
        return not self.desc.violations(dims, self.isa)

    def violations(self, dims: Mapping[str, int]) -> list[str]:
        return self.desc.violations(dims, self.isa)

    def scratch_product(self, full: Mapping[str, int], tiled: list[str], cores: int) -> tuple[tuple[str, ...], int]:
        """The scratch formula as unit * prod(tile[d] for d in dims) (what the CP-SAT model can
        encode), found by probing the description; PlannerError when it is not of that form."""
        base = dict(full)
        for d in tiled:
            base[d] = 1
        unit = self.scratch(base, cores)
        dims = []
        for d in tiled:
            probe = dict(base)
            probe[d] = 2
            v2 = self.scratch(probe, cores)
            if v2 == unit:
                continue
            if v2 != 2 * unit:
                break
            dims.append(d)
        else:
            # verify at the full sizes
            if self.scratch(full, cores) == unit * _prod(full[d] for d in dims):
                return tuple(dims), unit
        raise PlannerError(f"kernel '{self.name}': scratch formula {self.desc.scratch_doc!r} is not "
                           "a product of tile sizes; the tiler cannot encode it")


def _prod(it) -> int:
    r = 1
    for x in it:
        r *= x
    return r


def _split_mode(desc: kd.KernelDesc) -> tuple[str, str, str | None]:
    doc = desc.split_doc
    dims = list(desc.dims)
    probe = {d: 16 for d in dims}
    first = desc.split(probe, 8)
    probe_small = dict(probe)
    if first in probe_small:
        probe_small[first] = 4
    else:  # composite (bmatmul "batch*M")
        return "rows_else_cols", first, "N"
    second = desc.split(probe_small, 8)
    if second == first:
        return "rows", first, None
    del doc
    return "rows_else_cols", first, second


@lru_cache(maxsize=None)
def kernel(name: str, hw_isa: str) -> KernelInfo:
    try:
        desc = kd.get(name)
    except KeyError as exc:
        raise PlannerError(f"kernel library has no description of '{name}': {exc}") from None
    split, rows, cols = _split_mode(desc)
    unit = "mac" if desc.cost_unit.upper() == "MAC" else "elem"
    return KernelInfo(name, desc, isa_path(hw_isa), split, rows, cols, kd.cost_key(name), unit)
