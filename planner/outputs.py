"""Writing a command's output files so that a reader never mistakes an old or partial file for
the result of the run that just failed.

* `write_atomic`: the text goes to a temporary file beside the target, then replaces it in one
  rename, so an interrupted write leaves the previous file or the new one, never half of one.
* `retire`: after a failed run, files of an earlier run in the same directory are renamed to
  `<name>.stale` (kept for the user, no longer under the name tools read).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

STALE_SUFFIX = ".stale"


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call write(tmp) on a temporary path in the same directory, then rename it to `path`."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def stale_path(path: Path) -> Path:
    return path.with_name(path.name + STALE_SUFFIX)


def retire(paths: list[Path]) -> list[Path]:
    """Rename the existing files among `paths` to <name>.stale (replacing older stale copies);
    returns the renamed originals."""
    moved = []
    for p in paths:
        if p.is_file():
            try:
                os.replace(p, stale_path(p))
            except OSError:
                continue
            moved.append(p)
    return moved


def drop_stale(paths: list[Path]) -> None:
    """After a successful run: stale copies of an earlier failure are no longer news."""
    for p in paths:
        s = stale_path(p)
        if s.is_file():
            try:
                s.unlink()
            except OSError:
                pass
