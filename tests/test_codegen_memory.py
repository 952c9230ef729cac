"""Static memory exactly as planned, checked on the built binary: each arena and the runtime tables
have the sizes plan.json gives (symbol sizes by nm) and fit the usable bytes; the network's own
code (network, runtime, kernels) allocates nothing at run time and uses no VLA (-Wvla in the
build); every buffer descriptor was checked against the plan's bytes when emitted."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from planner.cli import main

from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("nm") is None,
                                reason="needs gcc and nm (binutils)")


def _build(tmp_path: Path, net: Path, hw: str, *args: str) -> tuple[dict, Path]:
    out = tmp_path / "out"
    assert main(["solve", str(net), hw, "-o", str(out), "-q", *args]) == 0
    proc = subprocess.run(["make", "-s", "-C", str(out / "c")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return json.loads((out / "plan.json").read_text()), out / "c"


def _sizes(exe: Path) -> dict[str, int]:
    text = subprocess.run(["nm", "-S", "--defined-only", str(exe)], capture_output=True, text=True).stdout
    sizes = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 4:
            sizes[parts[3]] = int(parts[1], 16)
    return sizes


@pytest.mark.parametrize("net,hw,args", [
    ("eeg_block/int.onnx", "gap9", ()),
    ("eeg_2block/int.onnx", "gap9", ("--l2", "310000", "--dft", "on")),   # weights in L3
    ("radar_block/qdq.onnx", "stm32h7", ("--l1", "32K")),
    ("ecg_block/int.onnx", "stm32l4", ()),                              # no L1
])
def test_arenas_and_runtime_tables_as_planned(tmp_path, net, hw, args):
    plan, proj = _build(tmp_path, EXAMPLES / net, hw, *args)
    sizes = _sizes(proj / "build" / "host" / "network")
    mem = plan["memory"]
    l2 = mem["L2"]
    assert sizes["net_l2"] == l2["runtime_offset"]
    assert sizes["net_runtime"] == l2["breakdown"]["runtime"]
    assert sizes["net_l2"] + sizes["net_runtime"] == l2["peak"] <= l2["usable"]
    if "L1" in mem:
        assert sizes["net_l1"] == mem["L1"]["peak"] <= mem["L1"]["usable"]
    else:
        assert "net_l1" not in sizes
    w3 = mem.get("L3", {}).get("weights", {})
    if w3:
        assert sizes["net_l3"] == mem["L3"]["peak"] <= mem["L3"]["usable"]
    else:
        assert "net_l3" not in sizes
    # weights in L2 lie after the activations and inside the arena
    for e in l2["weights"].values():
        assert l2["plan_peak"] <= e["offset"] and e["offset"] + e["bytes"] <= sizes["net_l2"]


def test_network_code_allocates_nothing(tmp_path):
    plan, proj = _build(tmp_path, EXAMPLES / "eeg_block" / "int.onnx", "gap9", "--dft", "off")
    objs = [p for p in (proj / "build" / "host" / "obj").rglob("*.o")
            if "platform" not in p.parts]
    assert objs
    for o in objs:
        undefined = subprocess.run(["nm", "-u", str(o)], capture_output=True, text=True).stdout.split()
        assert not {"malloc", "calloc", "realloc", "free", "alloca"} & set(undefined), o.name
