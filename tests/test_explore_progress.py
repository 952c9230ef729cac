"""Issue 13, item 4: `planner explore` writes its CSV as it goes (Ctrl-C leaves a valid partial
CSV and says so), prints an ETA, gives the reason of every infeasible point in the table, and
explains on the latency plot (and the console) where more memory gives a slower plan because an
auto rule switched form."""

from __future__ import annotations

import csv
import re

import pytest

import planner.explore as explore
from conftest import example_net
from planner.cli import main
from planner.explore import (CSV_COLUMNS, KIB, Outcome, Sweep, fmt_duration, slower_with_more_memory,
                             switch_explanation)


def _rows(path):
    with path.open(newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


def test_ctrl_c_leaves_a_valid_partial_csv(tmp_path, capsys, monkeypatch):
    out = tmp_path / "sweep"
    out.mkdir()
    (out / "latency.png").write_bytes(b"an earlier run's plot")
    calls = []
    real_solve = explore.solve

    def solve_then_interrupt(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            # rows are flushed as they are solved, not at the end: two are on disk already
            _, rows = _rows(out / "explore.csv")
            assert [int(r["l1"]) for r in rows] == [16 * KIB, 32 * KIB]
            raise KeyboardInterrupt
        return real_solve(*a, **k)

    monkeypatch.setattr(explore, "solve", solve_then_interrupt)
    rc = main(["explore", str(example_net("ecg_block")), "gap9", "--l1", "16K:64K:16K", "-o", str(out)])
    cap = capsys.readouterr()
    assert rc == 130 and "Traceback" not in cap.out + cap.err
    header, rows = _rows(out / "explore.csv")
    assert header == CSV_COLUMNS and len(rows) == 2
    assert all(r["status"] in ("feasible", "infeasible") and r["network"] == "ecg_block/int.onnx" for r in rows)
    assert "interrupted after 2 of 4 points" in cap.err and "partial CSV" in cap.err
    assert "16K" in cap.out and "32K" in cap.out  # the table of the finished points
    assert not (out / "latency.png").exists()  # an earlier run's plot does not pass for this one
    assert (out / "latency.png.stale").read_bytes() == b"an earlier run's plot"


def test_eta_on_progress_lines(tmp_path, capsys):
    rc = main(["explore", str(example_net("ecg_block")), "gap9", "--l1", "32K:64K:16K", "-o", str(tmp_path / "e")])
    err = capsys.readouterr().err
    assert rc == 0
    lines = [l for l in err.splitlines() if l.startswith("[")]
    assert len(lines) == 3
    for line in lines[:2]:
        assert re.search(r", [\d.]+ s; ETA \d+ (s|min \d\d s)$", line), line
    assert "ETA" not in lines[2]  # nothing left after the last point


def test_fmt_duration():
    assert (fmt_duration(4.4), fmt_duration(61), fmt_duration(3725)) == ("4 s", "1 min 01 s", "1 h 02 min")


def test_reason_of_every_infeasible_point(tmp_path, capsys):
    """gap9 reserves 10 KiB of L1 and 256 KiB of L2: the table says why each point has no plan."""
    out = tmp_path / "tight"
    rc = main(["explore", str(example_net("ecg_block")), "gap9", "--l1", "10K:16K:6K", "--l2", "262K:270K:8K",
               "--vary", "dft", "-o", str(out)])
    text = capsys.readouterr().out
    assert rc == 0 and "why no plan" in text
    _, rows = _rows(out / "explore.csv")
    table = [l for l in text.splitlines() if re.match(r"^\d+K\s+\d+K\s", l)]
    assert len(table) == len(rows) == 8
    for r, line in zip(rows, table):
        if r["status"] == "feasible":
            assert r["reason"] == "" and line.rstrip().endswith(r["forms"])
            continue
        assert r["reason"] and line.rstrip().endswith(r["reason"])
        if int(r["l1"]) == 10 * KIB:
            assert r["reason"] == "L1 size at or below its 10,240 B reserve"
        else:
            assert r["reason"] == (f"L2: {int(r['missing_bytes']):,} B missing even with every weight "
                                   "streamed from L3")


def test_reason_of_a_layer_that_does_not_fit():
    o = Outcome(12 * KIB, 1536 * KIB, "on", "auto", "infeasible", level="L1", layer="mhsa0", layer_op="MHSA",
                missing=9640, smallest=11688, message="layer mhsa0 (MHSA) does not fit L1: ...")
    assert o.reason == "mhsa0 (MHSA) needs 11,688 B of L1, 9,640 B missing"
    u = Outcome(None, 1, "off", "on", "unsupported", message="--fwsa on needs depth-first MHSA blocks (the "
                "FWSA kernel is depth-first; ...)")
    assert u.reason == "--fwsa on needs depth-first MHSA blocks"


def _point(l1: int, ms: float, form: str, how: str = "memory") -> Outcome:
    return Outcome(l1 * KIB, 1536 * KIB, "auto", "auto", "feasible", latency_ms=ms, forms=form,
                   fwsa_applied="no", block_choices=(("blk", form, how, "..."),))


def _sweep(points) -> Sweep:
    return Sweep("n/int.onnx", "gap9", "GAP9", [o.l1 for o in points], [1536 * KIB],
                 [{"dft": "auto", "fwsa": "auto"}], list(points), total=len(points))


def test_slower_with_more_memory_is_found_only_at_form_switches():
    pts = [_point(24, 1.50, "layer-by-layer"), _point(25, 1.40, "layer-by-layer"),
           _point(26, 1.80, "depth-first"), _point(27, 1.85, "depth-first"),  # slower, same form: a tiling matter
           _point(28, 1.70, "depth-first")]
    found = slower_with_more_memory(_sweep(pts))
    assert [(a.l1 // KIB, b.l1 // KIB) for _, a, b in found] == [(25, 26)]
    _, a, b = found[0]
    assert switch_explanation(a, b) == ("blk: layer-by-layer -> depth-first (estimates within the cost "
                                        "model's uncertainty, so the lower L2 need)")


def test_latency_plot_explains_the_switch():
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    pts = [_point(26, 1.5683, "layer-by-layer"), _point(27, 1.8678, "depth-first")]
    fig = Figure(figsize=(8, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    h0 = fig.get_size_inches()[1]
    explore._annotate_switches(fig, ax, _sweep(pts), lambda o: o.l1)
    marks = [t.get_text() for t in ax.texts]
    notes = [t.get_text() for t in fig.texts]
    assert marks == ["(1) slower with more L1"]
    assert len(notes) == 1 and notes[0].startswith("(1) 26K -> 27K: 1.5683 -> 1.8678 ms: blk: layer-by-layer")
    assert fig.get_size_inches()[1] > h0  # room made for the footnote


def test_switch_on_a_real_sweep_is_explained_on_the_console(tmp_path, capsys):
    """eeg_block on gap9: at L1 26K --dft auto takes depth-first (estimates within the cost model's
    uncertainty, lower L2 need), which is slower than 25K's layer-by-layer plan (with the
    calibrated per-feature figures; the switch moves with the figures)."""
    out = tmp_path / "sw"
    rc = main(["explore", str(example_net("eeg_block")), "gap9", "--l1", "25K:26K:1K", "-o", str(out), "-q"])
    text = capsys.readouterr().out
    assert rc == 0
    _, rows = _rows(out / "explore.csv")
    if not (rows[1]["forms"] != rows[0]["forms"] and float(rows[1]["latency_ms"]) > float(rows[0]["latency_ms"])):
        pytest.skip("the cost model no longer switches form between 25K and 26K on this example")
    assert re.search(r"note: L1 25K -> 26K \(dft=auto fwsa=auto\): slower with more memory "
                     r"\([\d.]+ -> [\d.]+ ms\): mhsa0_b0\.o\.matmul\.out: layer-by-layer -> depth-first", text)
