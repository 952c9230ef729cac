"""Target platforms of the emitted project: what differs per target (memory sections, DMA,
fork/barrier, timers, I/O, build file). The portable core (network.c, runtime/, kernel_lib/) is
the same for all; a platform is its directory here (static files copied to OUT/c/platform/<name>/)
plus the template of its build file.

host   always emitted: threads as cores, an emulated DMA engine (planner run --target host)
stm32  STM32H7 / STM32L4 plans: arm-none-eabi, board and QEMU mps2 linker scripts, memcpy / MDMA
gap9   GAP9 plans: GAP SDK Makefile (PMSIS), and a PMSIS stand-in for QEMU RV32
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Platform:
    name: str
    makefiles: dict[str, str]             # relative path in platform/<name>/ -> template
    variables: dict = field(default_factory=dict)

    def static_files(self) -> list[Path]:
        d = HERE / self.name
        return sorted(p for p in d.rglob("*") if p.is_file() and p.suffix in (".c", ".h", ".S", ".ld", ".mk")
                      and "__pycache__" not in p.parts)


# Cortex-M compiler flags and QEMU machines by the hardware model's `qemu_target`
_ARM = {
    "m7": {"cpu": "-mcpu=cortex-m7 -mthumb -mfloat-abi=hard -mfpu=fpv5-d16", "board_ld": "stm32h7.ld",
           "board_map": "flash 0x08000000, DTCM 0x20000000, AXI SRAM 0x24000000",
           "board_dma": "nr_dma_mdma.c", "qemu_machine": "mps2-an500"},
    "m4": {"cpu": "-mcpu=cortex-m4 -mthumb -mfloat-abi=hard -mfpu=fpv4-sp-d16", "board_ld": "stm32l4.ld",
           "board_map": "flash 0x08000000, SRAM 0x20000000",
           "board_dma": "nr_dma_memcpy.c", "qemu_machine": "mps2-an386"},
}


def platforms_for(hw_name: str) -> list[Platform]:
    """The platforms emitted for a plan made for hardware model `hw_name` (host always)."""
    out = [Platform("host", {})]
    try:
        from planner.hw import load_hw_model
        hw = load_hw_model(hw_name)
    except Exception:  # a plan for a model that is not in hw_models/: host only
        return out
    qt = hw.qemu_target
    if hw_name.startswith("stm32") and qt in _ARM:
        out.append(Platform("stm32", {"Makefile": "Makefile.stm32.mako"}, dict(_ARM[qt])))
    if hw_name.startswith("gap9"):
        out.append(Platform("gap9", {"Makefile": "Makefile.gap9.mako",
                                     "Makefile.standin": "Makefile.gap9standin.mako"}))
    return out
