"""Sizes of the runtime tables the generated C carries (codegen/runtime/nr_runtime.h), for the
planner's `runtime` bytes: one nr_layer_t per layer and one nr_buf_t per buffer of a layer, all in
one const table (`net_runtime`). The structs hold no pointers, so their sizes are the same on every
target; tests/test_codegen_memory.py checks them against the built binary."""

from __future__ import annotations

LAYER_DESC_BYTES = 40   # sizeof(nr_layer_t)
BUF_DESC_BYTES = 72     # sizeof(nr_buf_t)
MAX_DIMS = 4            # NR_MAX_DIMS
MAX_AXES = 4            # NR_MAX_AXES
MAX_BUFS = 16           # NR_MAX_BUFS


def runtime_bytes(buffers_per_layer: list[int]) -> int:
    """Bytes of the runtime table for layers with these numbers of buffers."""
    return sum(LAYER_DESC_BYTES + BUF_DESC_BYTES * n for n in buffers_per_layer)
