"""kernel_lib: the C99 int8 kernel library (include/, src/), its target runtime (targets/) and
its machine-readable description (descriptions.py)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent
INCLUDE_DIR = ROOT / "include"
SRC_DIR = ROOT / "src"
TARGETS_DIR = ROOT / "targets"


def sources() -> list[Path]:
    """The C sources of the library (compile them with INCLUDE_DIR on the include path)."""
    return sorted(SRC_DIR.glob("*.c"))


def include_dirs() -> list[Path]:
    return [INCLUDE_DIR]
