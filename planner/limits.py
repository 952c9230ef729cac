"""Host-side limits that keep a bad or oversized input from exhausting the machine's memory.

The golden model (which also infers shapes today) holds every tensor as int64 in host memory. A
tensor above MAX_TENSOR_ELEMENTS is refused before it is allocated, with the node that would make
it, instead of a MemoryError (or the kernel's OOM killer) gigabytes later.
"""

from __future__ import annotations

from math import prod
from typing import Sequence

from planner.errors import PlannerError

MAX_TENSOR_ELEMENTS = 1 << 26  # 512 MiB as int64; an MCU tensor is a few hundred KiB at most


def fmt_shape(shape: Sequence[int]) -> str:
    return "x".join(str(d) for d in shape) or "scalar"


def check_elements(shape: Sequence[int], what: str, hint: str = "", verb: str = "has") -> None:
    """Raise a PlannerError when a tensor of `shape` is too large to hold on the host."""
    n = prod(int(d) for d in shape)
    if n > MAX_TENSOR_ELEMENTS:
        raise PlannerError(
            f"{what} {verb} shape {fmt_shape(shape)} = {n:,} elements ({n * 8 / 2**30:.1f} GiB as the "
            f"golden model's int64); the planner refuses host tensors above {MAX_TENSOR_ELEMENTS:,} "
            f"elements (512 MiB){hint}")
