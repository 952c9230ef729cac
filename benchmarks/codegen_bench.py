"""Code generation speed and size: per example x hardware model, the time to plan, to emit the C
project, to build it for the host and to run it there, and the size of the emitted C.

    python benchmarks/codegen_bench.py [--repeat 3] [--examples eeg_block,ecg_block]

Times are wall-clock medians over --repeat runs on this machine (noisy when shared: compare rows
of one run, not runs of different days). "host run" is the wall time of net_run on the host
(threads as cores, emulated DMA): a smoke figure, not a target figure. The target of issue 10 is
plan + emit under 2 s per example (the `solve+emit` column).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from codegen.project import emit  # noqa: E402
from planner.run import RunOptions, run  # noqa: E402
from planner.solve import SolveOptions, solve  # noqa: E402

HW = ("gap9", "stm32h7", "stm32l4")


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def bench(net: Path, hw: str, repeat: int) -> dict:
    t_solve, t_emit, t_build, t_run = [], [], [], []  # seconds, host ms
    info: dict = {}
    for _ in range(repeat):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp)
            t0 = time.perf_counter()
            sol = solve(net, REPO / "hw_models" / f"{hw}.json", SolveOptions(fwsa="auto"))
            t1 = time.perf_counter()
            em = emit(sol.plan, sol.graph, out)
            t2 = time.perf_counter()
            sol.plan.write(out / "plan.json")
            proc = subprocess.run(["make", "-s", "-j2", "-C", str(em.root)], capture_output=True, text=True)
            t3 = time.perf_counter()
            if proc.returncode != 0:
                raise SystemExit(f"{net} {hw}: build failed:\n{proc.stderr}")
            res = run(out, RunOptions())
            t_solve.append(t1 - t0)
            t_emit.append(t2 - t1)
            t_build.append(t3 - t2)
            t_run.append((res.host_ns or 0) / 1e6)
            files = em.files
            c_files = {k: v for k, v in files.items() if k.endswith((".c", ".h")) and
                       not k.startswith("kernel_lib/")}
            info = {
                "exact": res.exact,
                "lines": sum(v.count("\n") for v in c_files.values()),
                "c_bytes": sum(len(v) for v in c_files.values()),
                "const_bytes": sum(len(data) for _, data in
                                   [img for img in _images(files)]),
            }
    return {"solve": _median(t_solve), "emit": _median(t_emit), "build": _median(t_build),
            "run_ms": _median(t_run), **info}


def _images(files: dict[str, str]):
    """(level, bytes) of the weights images, from net_consts.c's declared sizes."""
    import re
    text = files.get("src/net_consts.c", "")
    for m in re.finditer(r"net_(l\d)_image_bytes = (\d+)u", text):
        yield m.group(1), b"\0" * int(m.group(2))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--examples", default="")
    args = ap.parse_args()
    names = [n for n in args.examples.split(",") if n] or sorted(
        {p.parent.name for p in (REPO / "examples").glob("*/*.onnx") if p.stem in ("int", "qdq")})
    rows = []
    for name in names:
        for flavour in ("int", "qdq"):
            net = REPO / "examples" / name / f"{flavour}.onnx"
            if not net.is_file():
                continue
            for hw in HW:
                r = bench(net, hw, args.repeat)
                rows.append((f"{name}/{flavour}", hw, r))
    head = ("network", "hw", "solve s", "emit s", "solve+emit s", "build s", "host run ms", "C lines",
            "C KiB", "const KiB", "bit-exact")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for net, hw, r in rows:
        print(f"| {net} | {hw} | {r['solve']:.2f} | {r['emit']:.2f} | {r['solve'] + r['emit']:.2f} | "
              f"{r['build']:.2f} | {r['run_ms']:.2f} | {r['lines']:,} | {r['c_bytes'] / 1024:.1f} | "
              f"{r['const_bytes'] / 1024:.1f} | {'yes' if r['exact'] else 'NO'} |")
    print(f"\n(medians of {args.repeat} runs; KiB = 1024 bytes; C = the emitted network, runtime and "
          "platform sources, kernel_lib excluded)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
