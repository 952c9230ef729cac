"""Write plan.json + report.md of every example network (int.onnx, qdq.onnx) on every hardware
model, with the CLI defaults and with `--dft off --fwsa off`, into OUT/<case>/ (a refactoring
check: run it before and after a change, then `diff -r BEFORE AFTER`).

    python3 scripts/plan_snapshot.py OUT [--peer DIR]   # DIR: peer graphs (<name>/network.onnx)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from planner.cli import main  # noqa: E402

HW = ("gap9", "stm32h7", "stm32l4")
OPTION_SETS = {"default": [], "lbl": ["--dft", "off", "--fwsa", "off"]}
PEER_CASES = ("Kernels_Integer_Attention", "Models_EEGFormer")
# (case, example, hardware model, options): the options' corners (what-if sizes, errors, streaming)
EXTRA = [
    ("eeg_l1_12K", "eeg_block", "gap9", ["--l1", "12K"]),
    ("eeg_l1_24K_l2_300K", "eeg_block", "gap9", ["--l1", "24K", "--l2", "300K"]),
    ("eeg_l2_400K", "eeg_block", "gap9", ["--l2", "400K"]),
    ("eeg_dft_on_l1_22300", "eeg_block", "gap9", ["--dft", "on", "--fwsa", "off", "--l1", "22300"]),
    ("eeg_inputs", "eeg_block", "gap9", ["--inputs", "examples/eeg_block/inputs.npz"]),
    ("eeg_dft_off_fwsa_auto", "eeg_block", "stm32h7", ["--dft", "off"]),
    ("ecg_fwsa_on", "ecg_block", "gap9", ["--fwsa", "on"]),
    ("eeg2_l2_300K", "eeg_2block", "gap9", ["--l2", "300K"]),
    ("radar_l2_290K", "radar_block", "gap9", ["--l2", "290K"]),
    ("radar_cores_1", "radar_block", "gap9", ["--cores", "1"]),
    ("eeg_l4_l2_96K", "eeg_block", "stm32l4", ["--l2", "96K"]),
]


def cases(peer: Path | None) -> list[tuple[str, Path]]:
    out = []
    for d in sorted((REPO / "examples").iterdir()):
        for flavour in ("int", "qdq"):
            p = d / f"{flavour}.onnx"
            if p.is_file():  # relative (error messages name it): comparable between checkouts
                out.append((f"{d.name}_{flavour}", p.relative_to(REPO)))
    if peer is not None:
        for name in PEER_CASES + ("Kernels_Integer_MatMul_Add", "Kernels_Integer_GEMM_TransB_RQ"):
            p = peer / name / "network.onnx"
            if p.is_file():
                out.append((name, p))
    return out


def run(out: Path, peer: Path | None) -> int:
    bad = 0
    for name, net in cases(peer):
        for hw in HW:
            for oname, extra in OPTION_SETS.items():
                bad += _one(out / f"{name}_{hw}_{oname}", net, hw, extra)
    for name, example, hw, extra in EXTRA:
        bad += _one(out / name, Path("examples") / example / "int.onnx", hw, extra)
    return 1 if bad else 0


def _one(d: Path, net: Path, hw: str, extra: list[str]) -> int:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        rc = main(["solve", str(net), hw, "-o", str(d), "-q", *extra])
    d.mkdir(parents=True, exist_ok=True)
    (d / "exit.txt").write_text(f"{rc}\n{err.getvalue()}", encoding="utf-8")
    print(f"{d.name}: exit {rc}", flush=True)
    return int(rc not in (0, 1))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--peer", type=Path)
    a = ap.parse_args()
    out, peer = a.out.resolve(), a.peer.resolve() if a.peer else None
    os.chdir(REPO)  # the cases name files relative to the repository
    sys.exit(run(out, peer))
