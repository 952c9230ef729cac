"""Values of command-line options, checked where they are parsed (so a bad value is a usage
error naming the option, never a traceback deep in the solver).

Each parser raises UsageError; `argtype` wraps one for argparse (which then prints the usage line
and exits 2 through planner.cli's parser).
"""

from __future__ import annotations

import argparse
import math
from typing import Callable

from planner.errors import UsageError

KIB = 1024
# A memory level of a 32-bit MCU cannot exceed its address space; the hardware-model schema
# (hw_models/schema.json) uses the same bound for `size` and `usable`.
MAX_MEMORY_BYTES = 1 << 32
MAX_SEED = 2**31 - 1  # CP-SAT's random_seed is a signed 32-bit integer


def parse_size(text: str, flag: str = "") -> int:
    """'131072', '128K', '1.5M' -> bytes (K = 1024, M = 1024^2), 1 B .. 4 GiB."""
    where = f"{flag} " if flag else ""
    t = str(text).strip()
    mult = 1
    if t[-1:].upper() == "K":
        mult, t = KIB, t[:-1]
    elif t[-1:].upper() == "M":
        mult, t = KIB * KIB, t[:-1]
    try:
        v = float(t)
    except ValueError:
        raise UsageError(f"{where}expected a number of bytes such as 65536, 64K or 1.5M, "
                         f"got {text!r}") from None
    if not math.isfinite(v):
        raise UsageError(f"{where}expected a finite number of bytes, got {text!r}")
    v *= mult
    if v <= 0 or v != int(v):
        raise UsageError(f"{where}expected a positive whole number of bytes, got {text!r}")
    if v > MAX_MEMORY_BYTES:
        raise UsageError(f"{where}{text!r} is above 4096M, the 4 GiB address space of a 32-bit MCU")
    return int(v)


def parse_time_limit(text: str) -> float:
    """CP-SAT deterministic time units per layer: a finite number > 0."""
    try:
        v = float(text)
    except ValueError:
        raise UsageError(f"expected a positive number of deterministic time units "
                         f"(e.g. 10), got {text!r}") from None
    if not math.isfinite(v) or v <= 0:
        raise UsageError(f"expected a finite number > 0 (e.g. 10), got {text!r}")
    return v


def parse_seed(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise UsageError(f"expected an integer from 0 to {MAX_SEED}, got {text!r}") from None
    if not 0 <= v <= MAX_SEED:
        raise UsageError(f"expected an integer from 0 to {MAX_SEED} (CP-SAT and the "
                         f"random inputs take a non-negative 32-bit seed), got {text!r}")
    return v


def parse_cores(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise UsageError(f"expected a whole number of cores such as 1 or 8, got {text!r}") from None
    if v < 1:
        raise UsageError(f"expected at least 1 core, got {text!r}")
    return v


def argtype(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse `type=` from a parser above (argparse adds the option name itself)."""
    def convert(text: str) -> object:
        try:
            return parse(text)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = parse.__name__.replace("parse_", "")
    return convert
