#!/usr/bin/env python3
"""Instruction counts of kernel_lib on QEMU (Cortex-M7, Cortex-M4, RV32IMC) next to a plain C
reference, printed as markdown tables.

    python benchmarks/kernels_bench.py [--targets m7,m4,rv32] [--out FILE]

For every case the kernel and a plain triple-loop C reference (int32 accumulation, the same
compiler flags, no hand tuning; benchmarks/kernels_bench.c) run once each between
prof_start/prof_stop; the project's QEMU plugin (planner/qemu/icount_plugin.c, through
planner.toolchain) counts the guest instructions of both regions (instructions, never cycles: QEMU has no timing model). The two outputs are compared
byte for byte ("ok" column). Shapes: the example networks' projections, FFNs, per-head scores
and ·V, softmax rows of 81, the depth-first MHSA chunk kernel and one whole MHSA block per
example (standard and FWSA form), with the examples' requantization parameters and
softmax coefficients where the graphs are available (random int8 data otherwise: instruction
counts do not depend on the values). A script, not a test.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import kernel_lib  # noqa: E402
from planner import toolchain as tc  # noqa: E402

BENCH_C = Path(__file__).resolve().parent / "kernels_bench.c"
B_LINEAR, B_NT, B_NN, B_PV_T, B_ISOFTMAX, B_SMROWS, B_ITAMAX, B_CHUNK, B_BLOCK = range(1, 10)
TARGET_NAMES = {"m7": "qemu-m7", "m4": "qemu-m4", "rv32": "qemu-rv32"}

# the examples (S, E, P, H); softmax coefficients / RQ from the graphs when available
EXAMPLES = {"eeg": ("eeg_block", 81, 32, 32, 8), "ecg": ("ecg_block", 66, 16, 2, 8),
            "radar": ("radar_block", 32, 64, 64, 16)}
CHUNK = {"eeg": 27, "ecg": 22, "radar": 16}


def _mul_shift(k: int, amag: float = 74.0, sh: int = 24) -> tuple[int, int]:
    """RQ that maps an int8 dot product of length k to a spread of about 40 LSB."""
    sd = amag * 74.0 * math.sqrt(k)
    return max(1, round(40 * 2**sh / sd)), sh


def _graph_params(name: str) -> dict | None:
    """RQ mul/shift and softmax coefficients of an example's MHSA node (standard and FWSA)."""
    path = REPO / "examples" / name / "int.onnx"
    if not path.is_file():
        return None
    try:
        import numpy as np
        from planner.frontend import load_graph
        from planner.transforms.fwsa import fused_copy
        g = load_graph(path)
        node = next(n for n in g.nodes if n.op == "MHSA")
        a = node.attrs
        out = {}
        for key in ("q", "k", "v", "scores", "av", "o"):
            rq = a[key].attrs["rq"]
            out[key] = (int(np.asarray(rq.mul).reshape(-1)[0]), int(rq.div).bit_length() - 1)
        sm = a["softmax"].attrs
        out["sm"] = (sm["coeff_a"], sm["coeff_b"], sm["coeff_c"], sm["log2"])
        gf, _ = fused_copy(g, "on")
        fw = next(n for n in gf.nodes if n.op == "MHSA").attrs["fwsa"]
        out["i"] = (int(np.mean(np.asarray(fw.rq_i.mul))), int(fw.rq_i.div).bit_length() - 1)
        out["fscores"] = (int(np.asarray(fw.rq_scores.mul).reshape(-1)[0]),
                          int(fw.rq_scores.div).bit_length() - 1)
        return out
    except Exception as exc:  # noqa: BLE001 - a benchmark: fall back to generic parameters
        print(f"<!-- {name}: graph parameters unavailable ({exc}); generic ones used -->")
        return None


def build_cases() -> list[dict]:
    cases: list[dict] = []

    def add(group, label, kind, params, work, unit="MAC", **extra):
        cases.append(dict(group=group, label=label, kind=kind, params=[int(p) for p in params],
                          work=int(work), unit=unit, **extra))

    # ---- linear: projections and FFNs (S x K -> N) ------------------------------------------
    lin = [("EEG Q/K/V proj", 81, 32, 256), ("EEG O proj", 81, 256, 32),
           ("radar Q/K/V proj", 32, 64, 1024), ("radar O proj", 32, 1024, 64),
           ("ECG Q/K/V/O proj", 66, 16, 16),
           ("EEG FFN1", 81, 32, 128), ("EEG FFN2", 81, 128, 32),
           ("radar FFN1", 32, 64, 256), ("radar FFN2", 32, 256, 64),
           ("square K=32", 64, 32, 64), ("square K=64", 64, 64, 64),
           ("square K=128", 64, 128, 64)]
    for label, s, k, n in lin:
        add("linear", f"{label}", B_LINEAR, [s, k, n, *_mul_shift(k)], s * k * n,
            shape=f"{s}x{k}->{n}", K=k)
    # ---- per head: scores and probabilities . V ----------------------------------------------
    for ex, (_, s, e, p, h) in EXAMPLES.items():
        add("scores", f"{ex.upper()} scores/head", B_NT, [s, s, p, *_mul_shift(p)], s * s * p,
            shape=f"{s}x{p} . ({s}x{p})^T")
        add("pv", f"{ex.upper()} P.V/head (V^T)", B_PV_T, [s, p, s, *_mul_shift(s, 147)],
            s * s * p, shape=f"{s}x{s} . ({p}x{s})^T")
        add("pv", f"{ex.upper()} P.V/head (V token-major)", B_NN, [s, p, s, *_mul_shift(s, 147)],
            s * s * p, shape=f"{s}x{s} . {s}x{p}")
    # ---- softmax rows of 81 ------------------------------------------------------------------
    params = {ex: _graph_params(EXAMPLES[ex][0]) for ex in EXAMPLES}
    eeg_sm = params["eeg"]["sm"] if params["eeg"] else (1, 25, 338, 13)
    add("softmax", "iSoftmax kl_isoftmax", B_ISOFTMAX, [16, 81, *eeg_sm], 16 * 81, "element",
        shape="16 rows x 81")
    add("softmax", "iSoftmax kl_softmax_rows (table)", B_SMROWS, [16, 81, *eeg_sm], 16 * 81,
        "element", shape="16 rows x 81")
    add("softmax", "ITAMax kl_itamax", B_ITAMAX, [16, 81, 0, 0, 0, 1], 16 * 81, "element",
        shape="16 rows x 81")
    # ---- the chunk kernel --------------------------------------------------------------------
    for ex in ("eeg", "radar"):
        _, s, e, p, h = EXAMPLES[ex]
        x = CHUNK[ex]
        sm = params[ex]["sm"] if params[ex] else (1, 25, 338, 13)
        add("chunk", f"{ex.upper()} chunk kernel (1 head, fused O proj)", B_CHUNK,
            [s, e, p, h, x, *_mul_shift(p), *_mul_shift(s, 147), *sm],
            x * (s * p + s * p + p * e), shape=f"x={x}, S={s}, P={p}, E={e}")
    # ---- whole blocks ------------------------------------------------------------------------
    for ex, (name, s, e, p, h) in EXAMPLES.items():
        gp = params[ex]
        for fwsa in (False, True):
            if fwsa and ex == "ecg":
                continue  # FWSA is harmful there (P = 2): the planner never picks it
            if gp:
                q, k, v, sc, av, o = (gp[key] for key in ("q", "k", "v", "scores", "av", "o"))
                sm = gp["sm"]
                i = gp["i"]
                if fwsa:
                    sc = gp["fscores"]
            else:
                q = k = v = o = _mul_shift(e)
                sc, av, sm, i = _mul_shift(p), _mul_shift(s, 147), (1, 25, 338, 13), (40, 20)
            macs = (h * (s * e * e + s * s * e) if fwsa else 2 * s * e * h * p + h * s * s * p)
            macs += s * e * h * p + h * s * s * p + s * h * p * e
            add("block", f"{ex.upper()} MHSA block{' FWSA' if fwsa else ''}", B_BLOCK,
                [s, e, p, h, CHUNK[ex], int(fwsa), *q, *k, *v, *sc, *av, *o, *sm, *i], macs,
                shape=f"S={s} E={e} P={p} H={h}, chunk {CHUNK[ex]}", example=ex, fwsa=fwsa,
                softmax_elems=h * s * s)
    # chunk-size sensitivity of the depth-first block (EEG): the rows of a chunk are split
    # across cores and processed in groups of 6 (a 3- or 5-row rest is computed as 4 / 6 rows
    # when the next rows exist)
    for c in cases[:]:
        if c["group"] == "block" and c.get("example") == "eeg" and not c["fwsa"]:
            for chunk in (6, 9, 81):
                params = list(c["params"])
                params[4] = chunk
                add("block", f"EEG MHSA block, chunk {chunk}", B_BLOCK, params, c["work"],
                    shape=f"S=81 E=32 P=32 H=8, chunk {chunk}", example="eeg-sweep", fwsa=False)
    return cases


BENCH_W = 32  # int32 words per case row (kind + parameters), as BENCH_W in kernels_bench.c


def header(cases: list[dict]) -> str:
    width = BENCH_W
    assert max(len(c["params"]) for c in cases) + 1 <= width
    rows = []
    for c in cases:
        vals = [c["kind"], *c["params"]] + [0] * (width - 1 - len(c["params"]))
        rows.append("{" + ",".join(str(v) for v in vals) + "}")
    return (f"#define BENCH_N {len(cases)}\n#define BENCH_W {width}\n"
            f"static const int32_t bench_cases[{len(cases)}][{width}] = {{\n"
            + ",\n".join(rows) + "\n};\n")


def run_target(target: str, cases: list[dict]) -> tuple[list[dict], str | None]:
    if not tc.available(target):
        return [], f"{target}: missing {', '.join(tc.missing_tools(target))}"
    reason = tc.icount_unavailable_reason(target)
    if reason:
        return [], reason
    with tempfile.TemporaryDirectory(prefix=f"klbench-{target}-") as d:
        Path(d, "bench_cases.h").write_text(header(cases))
        exe = tc.build([BENCH_C, *kernel_lib.sources()], [kernel_lib.INCLUDE_DIR, d], target, d,
                       {"BENCH_ARENA": str(3 << 20)}, name="bench")
        res = tc.run(exe, target, timeout=600, icount=True)
    if res.exit_code != 0:
        return [], f"{target}: exit {res.exit_code}: {res.stdout[-400:]} {res.stderr[-400:]}"
    status = {}
    for line in res.stdout.splitlines():
        if line.startswith("R "):
            _, i, st = line.split()
            status[int(i)] = st
    regs = res.icount_regions or []
    if res.icount_errors:
        return [], f"{target}: instruction count: {'; '.join(res.icount_errors)}"
    if len(regs) != 2 * len(cases):
        return [], f"{target}: {len(regs)} regions for {len(cases)} cases"
    out = []
    for i, c in enumerate(cases):
        out.append(dict(c, insns=regs[2 * i], ref=regs[2 * i + 1], ok=status.get(i, "?")))
    return out, None


def _fmt_int(v: int) -> str:
    return f"{v:,}"


def table(results: list[dict], target: str) -> str:
    lines = [f"### {target}", "",
             "| kernel | shape | work | instructions | per instruction | plain C ref | ref per "
             "instruction | ref / kernel | ok |",
             "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        if r["unit"] == "MAC":
            eff = f"{r['work'] / r['insns']:.3f} MAC"
            ref = f"{r['work'] / r['ref']:.3f} MAC"
            work = f"{_fmt_int(r['work'])} MAC"
        else:
            eff = f"{r['insns'] / r['work']:.1f} insn/elem"
            ref = f"{r['ref'] / r['work']:.1f} insn/elem"
            work = f"{_fmt_int(r['work'])} elem"
        lines.append(f"| {r['label']} | {r['shape']} | {work} | {_fmt_int(r['insns'])} | {eff} | "
                     f"{_fmt_int(r['ref'])} | {ref} | {r['ref'] / r['insns']:.2f}x | {r['ok']} |")
    return "\n".join(lines)


def m7_targets(results: list[dict]) -> str:
    """The issue's Cortex-M7 targets, met or not."""
    by = {r["label"]: r for r in results}
    rows = ["### Cortex-M7 targets", "", "| target | measured | met |", "|---|---|---|"]
    lin = [r for r in results if r["group"] == "linear"]
    k64 = [r for r in lin if r["K"] >= 64]
    worst = min(k64, key=lambda r: r["work"] / r["insns"])
    rows.append(f"| linear >= 0.9 MAC/insn for K >= 64 | worst {worst['work'] / worst['insns']:.3f}"
                f" ({worst['label']}); " + ", ".join(
                    f"{r['label']} {r['work'] / r['insns']:.3f}" for r in k64)
                + f" | {'yes' if worst['work'] / worst['insns'] >= 0.9 else 'NO'} |")
    k32 = [r for r in lin if r["K"] < 64]
    rows.append("| (reported) linear K <= 32 | " + ", ".join(
        f"{r['label']} {r['work'] / r['insns']:.3f}" for r in k32) + " | - |")
    ratio = min(r["ref"] / r["insns"] for r in lin)
    rows.append(f"| linear >= 3x fewer instructions than the plain reference | min {ratio:.2f}x | "
                f"{'yes' if ratio >= 3 else 'NO'} |")
    for lab in ("iSoftmax kl_isoftmax", "iSoftmax kl_softmax_rows (table)"):
        r = by[lab]
        v = r["insns"] / r["work"]
        rows.append(f"| iSoftmax rows of 81 <= 40 insn/element ({lab.split()[1]}) | {v:.1f} | "
                    f"{'yes' if v <= 40 else 'NO'} |")
    for lab, lim in (("EEG MHSA block", 9.2e6), ("ECG MHSA block", 2.1e6)):
        r = by[lab]
        rows.append(f"| {lab} <= {lim / 1e6:.1f} M instructions | {r['insns'] / 1e6:.3f} M "
                    f"({r['work'] / r['insns']:.3f} MAC/insn) | {'yes' if r['insns'] <= lim else 'NO'} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--targets", default="m7,m4,rv32",
                    help="comma-separated subset of m7,m4,rv32 (default: all)")
    ap.add_argument("--out", help="also write the markdown to this file")
    args = ap.parse_args(argv)
    cases = build_cases()
    out = ["## kernel_lib instruction counts (QEMU; instructions, not cycles)", "",
           f"Cases: {len(cases)}; kernels vs plain triple-loop C (int32 accumulation, same "
           "flags -O2); `ok` = outputs byte-identical. Whole blocks: chunk sizes as listed, one "
           "core, softmax table built inside the call.", ""]
    failed = False
    m7 = None
    for t in args.targets.split(","):
        target = TARGET_NAMES.get(t.strip(), t.strip())
        t0 = time.time()
        res, err = run_target(target, cases)
        if err:
            out += [f"### {target}", "", f"skipped: {err}", ""]
            continue
        out += [table(res, target) + f"\n\n({time.time() - t0:.1f} s)", ""]
        failed |= any(r["ok"] != "ok" for r in res)
        if target == "qemu-m7":
            m7 = res
    if m7:
        out += [m7_targets(m7), ""]
    text = "\n".join(out)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
