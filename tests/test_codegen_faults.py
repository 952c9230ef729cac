"""The host's emulated DMA catches a missing wait: `planner run --fault drop-wait:LAYER` builds the
project without the first DMA wait of LAYER, and the run must report a mismatch in that very
layer (exit 1) -- for a tiled layer of every op kind that uses DMA."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from planner.cli import main

from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None,
                                reason="the host target needs gcc and make")

CASES = [  # (network, hw, solve options, op kinds to break)
    ("eeg_block/int.onnx", "gap9", ["--l1", "16K", "--dft", "off"],
     ("Linear", "MatMul", "Softmax", "LayerNorm", "GELU", "Add")),
    ("eeg_block/int.onnx", "gap9", ["--dft", "on"], ("MHSA",)),             # FWSA form
    ("ecg_block/int.onnx", "gap9", ["--l1", "16K", "--dft", "on"], ("MHSA",)),  # standard form
]


def _pick(plan: dict, op: str) -> str:
    """A layer of `op` with DMA'd inputs, the most tiled one."""
    cands = [l for l in plan["layers"] if l["op"] == op
             and any(b["access"] == "dma" and b["kind"] in ("in", "weight") for b in l["buffers"])]
    assert cands, f"no {op} layer with DMA in the plan"
    return max(cands, key=lambda l: (l["n_tiles"], l["name"]))["name"]


@pytest.mark.parametrize("net,hw,args,ops", CASES, ids=[c[0] + "-" + "-".join(c[3]) for c in CASES])
def test_dropped_wait_is_caught(tmp_path, capsys, net, hw, args, ops):
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLES / net), hw, "-o", str(out), "-q", *args]) == 0
    plan = json.loads((out / "plan.json").read_text())
    capsys.readouterr()
    assert main(["run", str(out)]) == 0, capsys.readouterr().out   # intact: bit-exact
    capsys.readouterr()
    for op in ops:
        layer = _pick(plan, op)
        rc = main(["run", str(out), "--fault", f"drop-wait:{layer}"])
        text = capsys.readouterr().out
        assert rc == 1, text
        assert "MISMATCH" in text
        m = re.search(r"^first mismatching layer: (\S+)", text, re.M)
        assert m and m.group(1) == layer, text


def test_fault_on_a_layer_without_dma_is_refused(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLES / "ecg_block" / "int.onnx"), "stm32l4", "-o", str(out), "-q"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    rc = main(["run", str(out), "--fault", f"drop-wait:{plan['layers'][0]['name']}"])
    assert rc == 2
    assert "no DMA transfer" in capsys.readouterr().err
