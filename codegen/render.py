"""Mako rendering of codegen/templates/ (strict: an undefined name is an error).

The templates' compiled Python modules are kept in the planner's cache directory
(planner.toolchain.cache_dir()/mako-<version>/<digest of the templates>/: one directory per set
of templates, as the cache is shared by every checkout on the machine and Mako itself only
recompiles a template whose file is newer than its module); where the cache cannot be written the
templates are compiled in memory as before (compiling them all costs about 0.3 s a run)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"


def _templates_digest() -> str:
    """Digest of every template's name and text: the cache directory is shared by every checkout
    on the machine, and Mako only compares file times, so another checkout's newer module of a
    template of the same name would otherwise be served for ours."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(TEMPLATES.rglob("*.mako")):
        h.update(p.relative_to(TEMPLATES).as_posix().encode() + b"\0" + p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def _module_dir() -> str | None:
    import mako

    from planner.toolchain import cache_dir
    try:
        d = cache_dir() / f"mako-{mako.__version__}" / _templates_digest()
        d.mkdir(parents=True, exist_ok=True)
        return str(d) if os.access(d, os.W_OK) else None
    except OSError:
        return None


@lru_cache(maxsize=1)
def _lookup():
    from mako.lookup import TemplateLookup
    return TemplateLookup(directories=[str(TEMPLATES)], strict_undefined=True,
                          input_encoding="utf-8", module_directory=_module_dir())


def render(name: str, **kw) -> str:
    return _lookup().get_template(name).render(**kw)
