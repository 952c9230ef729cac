"""The emitted network runs clean under AddressSanitizer + UndefinedBehaviorSanitizer and under
ThreadSanitizer (cores as threads, the DMA engine a thread of its own), bit-exact, on plans that
cover every layer kind: layer-by-layer attention with tiled Linear/MatMul/Softmax/LayerNorm/GELU/
Add, depth-first MHSA in the FWSA and the standard form, weights streamed from L3."""

from __future__ import annotations

import shutil

import pytest

from planner.cli import main

from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None,
                                reason="the host target needs gcc and make")

PLANS = [
    ("eeg_block/int.onnx", "gap9", ["--l1", "16K", "--dft", "off"]),
    ("eeg_block/int.onnx", "gap9", ["--l1", "24K"]),
    ("ecg_block/qdq.onnx", "gap9", ["--l1", "16K"]),
    ("eeg_2block/int.onnx", "gap9", ["--l2", "310000", "--dft", "on"]),
    ("ecg_block/int.onnx", "gap9", ["--l1", "16K", "--dft", "on"]),   # x streamed, two copies
]


@pytest.mark.parametrize("san", ["address", "thread"])
@pytest.mark.parametrize("net,hw,args", PLANS, ids=[f"{n}-{' '.join(a)}" for n, _, a in PLANS])
def test_sanitized_run_is_clean_and_bit_exact(tmp_path, capsys, net, hw, args, san):
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLES / net), hw, "-o", str(out), "-q", *args]) == 0
    capsys.readouterr()
    rc = main(["run", str(out), "--sanitize", san, "--timeout", "600"])
    captured = capsys.readouterr()
    assert rc == 0, captured.out + captured.err
    assert "bit-exact" in captured.out
