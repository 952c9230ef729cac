"""Byte counts as the command line writes them (no imports: argument parsing stays instant)."""

from __future__ import annotations

from planner.errors import UsageError


def parse_bytes(text: str) -> int:
    """'131072', '128K', '1.5M' -> bytes (K = 1024, M = 1024²)."""
    t = str(text).strip()
    mult = 1
    if t[-1:].upper() == "K":
        mult, t = 1024, t[:-1]
    elif t[-1:].upper() == "M":
        mult, t = 1024 * 1024, t[:-1]
    try:
        v = float(t) * mult
    except ValueError:
        raise UsageError(f"expected a number of bytes such as 65536, 64K or 1.5M, got {text!r}") from None
    if v <= 0 or v != int(v):
        raise UsageError(f"expected a positive whole number of bytes, got {text!r}")
    return int(v)


KIB_NOTE = "KiB = 1024 B"


def kib(n: int | float | None) -> str:
    """Bytes as KiB with one decimal (the tables' unit, KIB_NOTE); '-' for None."""
    return "-" if n is None else f"{n / 1024:.1f}"


def human_bytes(n: int | None) -> str:
    """Bytes for prose: '512 B', '42.6 KiB', '1.50 MiB'; '-' for None."""
    if n is None:
        return "-"
    if abs(n) < 1024:
        return f"{n} B"
    if abs(n) < 1024 * 1024:
        return f"{n / 1024:.1f} KiB"
    return f"{n / (1024 * 1024):.2f} MiB"


def plural(n: int, word: str) -> str:
    """'1 core', '8 cores'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
