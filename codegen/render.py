"""Mako rendering of codegen/templates/ (strict: an undefined name is an error)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

TEMPLATES = Path(__file__).resolve().parent / "templates"


@lru_cache(maxsize=1)
def _lookup():
    from mako.lookup import TemplateLookup
    return TemplateLookup(directories=[str(TEMPLATES)], strict_undefined=True,
                          input_encoding="utf-8")


def render(name: str, **kw) -> str:
    return _lookup().get_template(name).render(**kw)
