#!/usr/bin/env python3
"""Planner benchmarks: prints tables (markdown), it is not a test.

    python benchmarks/planner_bench.py            # examples x {gap9, stm32h7, stm32l4}, peer graphs,
                                                  # memory quality, determinism
    python benchmarks/planner_bench.py --stress   # + the 12-block stress model on gap9 (builds it, ~11 s)

What is measured (wall-clock, this process, the machine's cores printed at the top):
  * planner wall time: end to end as `planner solve NET HW -o TMP -q` runs in-process - load the
    ONNX, solve (tiling + memory plan), write plan.json and report.md into a temp dir. Imports are
    warmed first; the cold start of a `planner` process (interpreter + imports) is measured once.
  * tiler time per layer: the plan carries no wall-clock (plan.json is deterministic and must stay
    so), so the bench wraps the tiler entry points that planner.tiling.tiler calls (`solve_variant` and,
    when present, the candidate-table builder `build_table`) and sums their time per layer name.
    Median and max over the layers the tiler actually solved ("layers tiled": a problem the solver
    had cached, e.g. the second of two identical blocks, costs nothing and is not counted); the
    parts of the MHSA form that was not chosen are included (both forms are tiled). The memory
    planner, FWSA and the rest of solve are in the wall time only.
  * proven optimal: layers whose CP-SAT optimum is proven (plan.json `layers[].optimal`).
  * determinism: each case is solved twice; plan.json bytes compared.
Targets are printed next to the figures.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
PEER = Path(__file__).resolve().parents[2] / "shared" / "peer-tests" / "deeploy"
EXAMPLES = ["eeg_block", "ecg_block", "radar_block", "eeg_2block"]
HWS = ["gap9", "stm32h7", "stm32l4"]
PEERS = [("Kernels_Integer_Attention", 5120), ("Models_EEGFormer", 38016)]
QUALITY_L1 = [128000, 64000, 32000]
TARGET_S = {"example": 2.0, "eeg_2block": 5.0, "stress": 60.0, "peer": 1.0}


# ------------------------------------------------------------------------------ measuring


class LayerTimer:
    """Wraps the tiler entry points planner.tiling.tiler calls and sums wall time per layer name."""

    HOOKS = ("solve_variant", "build_table")

    def __init__(self):
        import planner.tiling.tiler as ps
        self.module = ps
        self.saved = {}
        self.per_layer: dict[str, float] = {}
        self.calls = 0
        for name in self.HOOKS:
            fn = getattr(ps, name, None)
            if callable(fn):
                self.saved[name] = fn

    @property
    def available(self) -> bool:
        return "solve_variant" in self.saved

    def _wrap(self, fn):
        def timed(*args, **kwargs):
            layer = next((a.layer for a in list(args) + list(kwargs.values())
                          if hasattr(a, "layer") and hasattr(a, "signature")), "?")
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.per_layer[layer] = self.per_layer.get(layer, 0.0) + time.perf_counter() - t0
                self.calls += 1
        return timed

    def __enter__(self):
        self.per_layer, self.calls = {}, 0
        for name, fn in self.saved.items():
            setattr(self.module, name, self._wrap(fn))
        return self

    def __exit__(self, *exc):
        for name, fn in self.saved.items():
            setattr(self.module, name, fn)


def run_solve(net: str, hw: str, out: Path, extra: list[str] = ()) -> tuple[float, str]:
    """planner solve in-process; returns (wall seconds, stderr+stdout if it failed else '')."""
    from planner.cli import main
    buf = io.StringIO()
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
        rc = main(["solve", net, hw, "-o", str(out), "-q", *extra])
    dt = time.perf_counter() - t0
    return dt, ("" if rc == 0 else f"exit {rc}: {buf.getvalue().strip()[-300:]}")


def measure(net: str, hw: str, tmp: Path, tag: str, extra: list[str] = ()) -> dict:
    import json
    res: dict = {"error": ""}
    timer = LayerTimer()
    with timer:
        t1, err = run_solve(net, hw, tmp / f"{tag}_1", extra)
    if err:
        return {"error": err, "wall1": t1}
    t2, err2 = run_solve(net, hw, tmp / f"{tag}_2", extra)
    a = (tmp / f"{tag}_1" / "plan.json").read_bytes()
    b = (tmp / f"{tag}_2" / "plan.json").read_bytes() if not err2 else b""
    plan = json.loads(a)
    layers = plan["layers"]
    res.update({
        "wall1": t1, "wall2": t2, "identical": a == b,
        "layers": len(layers), "optimal": sum(1 for l in layers if l["optimal"]),
        "plan": plan,
    })
    if timer.available:
        # per layer that the tiler actually solved (a problem it had cached, e.g. the second of
        # two identical blocks, costs nothing and is not counted); the parts of the MHSA form
        # that was not chosen are included (both forms are tiled)
        per = timer.per_layer
        res["tiled"] = len(per)
        res["tiler_total_ms"] = sum(per.values()) * 1e3
        res["tiler_calls"] = timer.calls
        if per:
            res["tiler_median_ms"] = statistics.median(per.values()) * 1e3
            name, worst = max(per.items(), key=lambda kv: (kv[1], kv[0]))
            res["tiler_max_ms"], res["tiler_max_layer"] = worst * 1e3, name
    return res


# ------------------------------------------------------------------------------- printing


def md(headers: list[str], rows: list[list[object]]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def verdict(t: float, target: float) -> str:
    return f"< {target:g} s {'ok' if t < target else 'MISSED'}"


def timing_row(name: str, hw: str, r: dict, target: float) -> list[object]:
    if r.get("error"):
        return [name, hw, f"{r['wall1']:.2f}", "-", verdict(r["wall1"], target), "-", "-", "-", "-", "-", "-", r["error"]]
    tl = ("n/a", "n/a") if "tiler_median_ms" not in r else (
        f"{r['tiler_median_ms']:.1f}", f"{r['tiler_max_ms']:.1f} ({r['tiler_max_layer']})")
    return [name, hw, f"{r['wall1']:.2f}", f"{r['wall2']:.2f}", verdict(max(r["wall1"], r["wall2"]), target),
            r["layers"], r.get("tiled", "n/a"), f"{r['tiler_total_ms']:.0f}" if "tiler_total_ms" in r else "n/a",
            tl[0], tl[1],
            f"{r['optimal']}/{r['layers']}",
            "identical" if r["identical"] else "DIFFERENT"]


TIMING_HEADERS = ["network", "hw", "wall s (run 1)", "wall s (run 2)", "target", "layers planned",
                  "layers tiled", "tiler total ms", "tiler/layer median ms", "tiler/layer max ms (layer)",
                  "proven optimal", "plan.json x2"]


def cold_start() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import planner.cli, planner.solve, planner.report"],
                   cwd=REPO, check=True)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stress", action="store_true",
                    help="also build the 12-block stress model (examples/build_examples.py --stress, "
                         "~11 s) and plan it for gap9")
    args = ap.parse_args()

    import ortools

    import planner.solve  # noqa: F401  (warm the imports before timing)
    from planner.report import write_report  # noqa: F401

    cpus = os.cpu_count()
    try:
        avail = len(os.sched_getaffinity(0))
    except AttributeError:
        avail = cpus
    cpu_model = ""
    try:
        cpu_model = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "")
    except OSError:
        pass
    print(f"# Planner benchmarks, {datetime.date.today().isoformat()}")
    print()
    print(f"machine: {cpus} cores ({avail} available to this process), {cpu_model or platform.processor()}; "
          f"Python {platform.python_version()}, OR-Tools {ortools.__version__}")
    print(f"cold start of a planner process (interpreter + imports): {cold_start():.2f} s "
          "(not included in the wall times below)")
    timer = LayerTimer()
    if not timer.available:
        print("tiler time per layer: n/a (planner.tiling.tiler.solve_variant not found; wall time only)")
    print()

    all_identical = True
    with tempfile.TemporaryDirectory(prefix="planner_bench_") as td:
        tmp = Path(td)
        # --- examples
        rows = []
        for ex in EXAMPLES:
            net = REPO / "examples" / ex / "int.onnx"
            for hw in HWS:
                if not net.is_file():
                    rows.append([ex, hw, "-", "-", "-", "-", "-", "-", "-", "-", "-", f"missing {net}"])
                    continue
                r = measure(str(net), hw, tmp, f"{ex}_{hw}")
                all_identical &= bool(r.get("identical", False))
                target = TARGET_S["eeg_2block"] if ex == "eeg_2block" else TARGET_S["example"]
                rows.append(timing_row(ex, hw, r, target))
        print("## Examples (planner solve end to end)")
        print()
        print(md(TIMING_HEADERS, rows))
        print()

        # --- stress
        if args.stress:
            out = tmp / "stress"
            t0 = time.perf_counter()
            proc = subprocess.run([sys.executable, "examples/build_examples.py", "--stress", "--out", str(out)],
                                  cwd=REPO, capture_output=True, text=True)
            build = time.perf_counter() - t0
            net = out / "stress_12block" / "int.onnx"
            print("## Stress model (12 blocks, S=128, E=128, H=8, P=16, FFN 512)")
            print()
            if proc.returncode != 0 or not net.is_file():
                print(f"build failed (exit {proc.returncode}): {proc.stderr.strip()[-300:]}")
            else:
                print(f"built in {build:.1f} s (not part of the planner time)")
                print()
                r = measure(str(net), "gap9", tmp, "stress")
                all_identical &= bool(r.get("identical", False))
                print(md(TIMING_HEADERS, [timing_row("stress_12block", "gap9", r, TARGET_S["stress"])]))
            print()

        # --- peer graphs
        print("## Peer graphs (Deeploy), gap9")
        print()
        if not PEER.is_dir():
            print(f"skipped: {PEER} is absent (../shared beside the repository)")
            print()
        else:
            rows = []
            for name, _ in PEERS:
                net = PEER / name / "network.onnx"
                if not net.is_file():
                    rows.append([name, "gap9", "-", "-", "-", "-", "-", "-", "-", "-", "-", f"missing {net}"])
                    continue
                r = measure(str(net), "gap9", tmp, name)
                all_identical &= bool(r.get("identical", False))
                rows.append(timing_row(name, "gap9", r, TARGET_S["peer"]))
            print(md(TIMING_HEADERS, rows))
            print()

            # --- memory quality
            print("## Memory quality: L2 activation peak of the peer graphs on gap9 (bytes; graph "
                  "input and output included)")
            print()
            qrows = []
            for l1 in QUALITY_L1:
                row: list[object] = [f"{l1:,}"]
                for name, target in PEERS:
                    net = PEER / name / "network.onnx"
                    if not net.is_file():
                        row += ["-", f"{target:,}", "-", "-"]
                        continue
                    outd = tmp / f"q_{name}_{l1}"
                    _, err = run_solve(str(net), "gap9", outd, ["--l1", str(l1)])
                    if err:
                        row += [err, f"{target:,}", "-", "-"]
                        continue
                    import json
                    m = json.loads((outd / "plan.json").read_text())["memory"]["L2"]
                    act = m["breakdown"]["activations"]
                    row += [f"{act:,}", f"{target:,}", "ok" if act <= target else "ABOVE",
                            f"{m['lower_bound']:,}"]
                qrows.append(row)
            heads = ["--l1"]
            for name, _ in PEERS:
                short = name.split("_")[-1]
                heads += [f"{short} L2 act. peak", f"{short} target", f"{short} vs target", f"{short} lower bound"]
            print(md(heads, qrows))
            print()

    print("## Determinism")
    print()
    print("every case above solved twice: plan.json " + ("byte-identical in all cases" if all_identical
                                                         else "DIFFERS in some case (see tables)"))
    return 0 if all_identical else 1


if __name__ == "__main__":
    sys.exit(main())
