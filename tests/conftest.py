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


def assert_harness_cases(cases, outs: dict, errors: list[str], idxs: list[int]) -> None:
    """Every selected harness case reported no error and wrote exactly its expected bytes."""
    import numpy as np

    bad = []
    for i in idxs:
        c = cases[i]
        errs = [e for e in errors if e.split()[1] == str(i)]
        if errs:
            bad.append(f"case {i} ({c.desc}): {errs}")
            continue
        got = outs.get(i)
        if got != c.expected:
            if got is None or len(got) != len(c.expected):
                bad.append(f"case {i} ({c.desc}): output missing or wrong size")
                continue
            g8 = np.frombuffer(got, np.uint8)
            e8 = np.frombuffer(c.expected, np.uint8)
            pos = np.nonzero(g8 != e8)[0]
            bad.append(f"case {i} ({c.desc}): {len(pos)} bytes differ, first at byte {pos[0]}: "
                       f"got {g8[pos[:8]].tolist()} expected {e8[pos[:8]].tolist()}")
    assert not bad, "\n".join(bad)


def example_net(name: str, flavour: str = "int") -> Path:
    """examples/<name>/<flavour>.onnx, or a skip saying how to build it."""
    p = EXAMPLES / name / f"{flavour}.onnx"
    if not p.is_file():
        pytest.skip(f"example network {p} not built (python examples/build_examples.py)")
    return p


def encode_cases(cases) -> "np.ndarray":
    """The harnesses' test-vector blob: magic, case count, then per case op, params and arrays
    (byte length, element size, little-endian words)."""
    import numpy as np

    words: list[np.ndarray] = [np.array([0x56544C4B, len(cases)], np.int64)]
    for c in cases:
        words.append(np.array([c.op, len(c.params), *c.params, len(c.arrays)], np.int64))
        for arr in c.arrays:
            raw = np.ascontiguousarray(arr).tobytes()
            pad = (-len(raw)) % 4
            words.append(np.array([len(raw), arr.dtype.itemsize if arr.size else 1], np.int64))
            words.append(np.frombuffer(raw + b"\0" * pad, "<i4").astype(np.int64))
    return np.concatenate(words).astype(np.int32)


@pytest.fixture(autouse=True, scope="session")
def _tool_cache(tmp_path_factory):
    """Built tools (the QEMU instruction-count plugin) go to a temporary cache, not ~/.cache."""
    import os

    old = os.environ.get("PLANNER_CACHE_DIR")
    os.environ["PLANNER_CACHE_DIR"] = str(tmp_path_factory.mktemp("planner-cache"))
    yield
    if old is None:
        os.environ.pop("PLANNER_CACHE_DIR", None)
    else:
        os.environ["PLANNER_CACHE_DIR"] = old
