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


# Code size of a built network (kernel library, runtime, platform port and the generated layer
# code, without the weights images, the runtime tables and the test inputs), by kernel ISA path:
# (bytes, bytes per layer). An estimate for `planner solve` (the built ELF is not there yet);
# `planner run --target qemu-*` measures the network's own (measured.json `sizes`).
# measured: arm-none-eabi-size / nm of the board ELFs (platform/stm32, -O2) of radar_block,
# ecg_block (8 layers: 55,280 and 55,416 B) and eeg_2block (16 layers: 57,984 B) on stm32l4;
# generic: riscv64-unknown-elf-size of the GAP9 stand-in ELFs (Makefile.standin, RV32IMC, not a
# GAP SDK build): 27,492, 26,732 and 31,476 B. tests/test_footprint.py checks the estimate
# against a fresh build (within CODE_ESTIMATE_TOLERANCE).
CODE_ESTIMATE = {"arm-dsp": (52_700, 330), "generic": (22_000, 600)}
CODE_ESTIMATE_TOLERANCE = 0.15


def code_estimate(isa_path: str, n_layers: int) -> int:
    """Estimated code bytes of a network of `n_layers` layers on kernel ISA path `isa_path`."""
    base, per_layer = CODE_ESTIMATE.get(isa_path, CODE_ESTIMATE["generic"])
    return base + per_layer * n_layers
