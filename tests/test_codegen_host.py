"""The emitted C project on the host: `planner solve ... -o OUT && planner run OUT --target host`
is bit-exact with the golden model of the deployed network, for every example and hardware model,
the peer graphs, tight memory (many tiles, leftovers, double buffers, weights streamed from L3),
both MHSA forms and FWSA on/off; the emitted C is deterministic; a dropped DMA wait is caught."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from planner.cli import main

from conftest import EXAMPLES, PEER_CASES, peer_case

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None,
                                reason="the host target needs gcc and make")

HW = ("gap9", "stm32h7", "stm32l4")
EXAMPLE_NETS = sorted(p.relative_to(EXAMPLES).as_posix() for p in EXAMPLES.glob("*/*.onnx")
                      if p.stem in ("int", "qdq", "qdq_per_channel"))


def solve_run(tmp_path: Path, capsys, net: Path, hw: str, solve_args=(), run_args=(), expect=0) -> str:
    out = tmp_path / "out"
    assert main(["solve", str(net), hw, "-o", str(out), "-q", *solve_args]) == 0
    capsys.readouterr()
    rc = main(["run", str(out), "--target", "host", *run_args])
    text = capsys.readouterr().out
    assert rc == expect, text
    return text


@pytest.mark.parametrize("hw", HW)
@pytest.mark.parametrize("net", EXAMPLE_NETS)
def test_examples_bit_exact(tmp_path, capsys, net, hw):
    text = solve_run(tmp_path, capsys, EXAMPLES / net, hw, run_args=["--check-layers"])
    assert re.search(r"^bit-exact: \d+ output elements", text, re.M), text


def test_example_inputs_bit_exact(tmp_path, capsys):
    """The example's own input file (real data of the float model), not random values."""
    text = solve_run(tmp_path, capsys, EXAMPLES / "eeg_block" / "int.onnx", "gap9",
                     run_args=["--inputs", str(EXAMPLES / "eeg_block" / "inputs.npz")])
    assert "bit-exact" in text


@pytest.mark.parametrize("case", PEER_CASES or ["(absent)"])
def test_peer_graphs_bit_exact(tmp_path, capsys, case):
    net = peer_case(case) / "network.onnx"
    text = solve_run(tmp_path, capsys, net, "gap9", run_args=["--check-layers"])
    assert "bit-exact" in text


TIGHT = [
    # many tiles, leftover tiles and double buffers in every layer
    ("eeg_block/int.onnx", "gap9", ["--l1", "16K"]),
    ("eeg_block/int.onnx", "stm32h7", ["--l1", "16K"]),
    ("eeg_block/int.onnx", "gap9", ["--l1", "16K", "--dft", "off"]),
    ("eeg_block/int.onnx", "gap9", ["--l1", "16K", "--fwsa", "on"]),
    ("eeg_block/int.onnx", "gap9", ["--l1", "16K", "--fwsa", "off"]),
    # between the smallest feasible L1 and the default
    ("eeg_block/int.onnx", "gap9", ["--l1", "40K"]),
    ("radar_block/int.onnx", "gap9", ["--l1", "24K"]),
    ("ecg_block/qdq.onnx", "stm32h7", ["--l1", "16K", "--dft", "off"]),
    # no L1: every layer reads its tensors where they live, through the layouts' strides
    ("eeg_block/int.onnx", "stm32l4", ["--dft", "off"]),
    ("outlier_2block/qdq.onnx", "gap9", ["--l1", "16K", "--dft", "off"]),
    # depth-first MHSA with x streamed by chunks (two copies / one copy) and the accumulator in L2
    ("eeg_block/int.onnx", "gap9", ["--l1", "24000", "--dft", "on", "--fwsa", "off"]),
    ("ecg_block/int.onnx", "gap9", ["--l1", "20000", "--dft", "on"]),
    # GAP9 L2 so small that weights stream from L3 through L2 staging buffers
    ("eeg_2block/int.onnx", "gap9", ["--l2", "310000", "--dft", "on"]),
    ("eeg_block/int.onnx", "gap9", ["--l2", "305000"]),
]


@pytest.mark.parametrize("net,hw,args", TIGHT, ids=[f"{n}-{h}-{' '.join(a)}" for n, h, a in TIGHT])
def test_tight_memory_bit_exact(tmp_path, capsys, net, hw, args):
    text = solve_run(tmp_path, capsys, EXAMPLES / net, hw, solve_args=args, run_args=["--check-layers"])
    assert "bit-exact" in text


@pytest.mark.parametrize("case", ["Kernels_Integer_MatMul_Add", "Kernels_Integer_GEMM_TransB_RQ"])
def test_full_bias_peers_at_16k(tmp_path, capsys, case):
    """A full [S][N] bias: the accumulator tile (8-bit output) or loaded into the int32 output tile,
    with many tiles at --l1 16K."""
    net = peer_case(case) / "network.onnx"
    text = solve_run(tmp_path, capsys, net, "gap9", solve_args=["--l1", "16K"], run_args=["--check-layers"])
    assert "bit-exact" in text


def test_l3_streaming_is_exercised(tmp_path):
    """The --l2 case above really streams weights from L3 through L2 staging."""
    import json
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLES / "eeg_2block" / "int.onnx"), "gap9", "-o", str(out), "-q",
                 "--l2", "310000", "--dft", "on", "--no-emit"]) == 0
    plan = json.loads((out / "plan.json").read_text())
    staged = [b for l in plan["layers"] for b in l["buffers"] if b["staging"]]
    assert staged and plan["memory"]["L3"]["weights"]


def test_emitted_c_is_deterministic(tmp_path):
    files = []
    for k in range(2):
        out = tmp_path / f"out{k}"
        assert main(["solve", str(EXAMPLES / "eeg_block" / "int.onnx"), "gap9", "-o", str(out), "-q",
                     "--l1", "24K"]) == 0
        files.append({p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
                      if p.is_file()})
    assert files[0] == files[1]
    assert "c/src/network.c" in files[0]


def test_no_emit(tmp_path):
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLES / "ecg_block" / "int.onnx"), "gap9", "-o", str(out), "-q",
                 "--no-emit"]) == 0
    assert (out / "plan.json").is_file() and not (out / "c").exists()
