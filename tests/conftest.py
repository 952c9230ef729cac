"""Shared test fixtures: where ../shared lives, and skips with a clear reason when it does not."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
PEER = SHARED / "peer-tests" / "deeploy"
PEER_CASES = sorted(p.name for p in PEER.iterdir()) if PEER.is_dir() else []
EXAMPLES = REPO / "examples"


def peer_case(name: str) -> Path:
    path = PEER / name
    if not path.is_dir():
        pytest.skip(f"peer test graphs not available: {path} is absent (../shared beside the repo)")
    return path


@pytest.fixture
def peer_dir():
    if not PEER.is_dir():
        pytest.skip(f"peer test graphs not available: {PEER} is absent (../shared beside the repo)")
    return PEER
