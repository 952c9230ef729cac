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
