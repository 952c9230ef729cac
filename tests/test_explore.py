"""`planner explore`: sweep CSV + PNG plots, infeasible points recorded, --min-memory checked against
`solve` directly (feasible at the answer, infeasible 1 KiB below), range syntax errors, determinism,
and the safe minimum search on synthetic non-monotone feasibility."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest

from planner.cli import main
from planner.errors import PlannerError, UsageError
from planner.explore import (CSV_COLUMNS, KIB, Outcome, parse_range, parse_vary,
                             safe_min_search)
from planner.hw import load_hw_model
from planner.solve import SolveOptions, solve

ROOT = Path(__file__).resolve().parents[1]
ECG = ROOT / "examples" / "ecg_block" / "int.onnx"
EEG = ROOT / "examples" / "eeg_block" / "int.onnx"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _net(p: Path) -> str:
    if not p.is_file():
        pytest.skip(f"example network {p} not built (examples/build_examples.py)")
    return str(p)


def _rows(path: Path) -> tuple[list[str], list[dict]]:
    with path.open(newline="", encoding="utf-8") as f:
        r = csv.DictReader(f)
        return list(r.fieldnames or []), list(r)


@pytest.fixture(scope="module")
def ecg_sweep(tmp_path_factory):
    out = tmp_path_factory.mktemp("explore") / "ecg"
    rc = main(["explore", _net(ECG), "gap9", "--l1", "16K:64K:16K", "--vary", "dft", "-o", str(out), "-q"])
    assert rc == 0
    return out


def test_sweep_writes_csv_and_pngs(ecg_sweep):
    header, rows = _rows(ecg_sweep / "explore.csv")
    assert header == CSV_COLUMNS
    grid = [(int(r["l1"]), r["dft"]) for r in rows]
    assert grid == [(k * KIB, d) for k in (16, 32, 48, 64) for d in ("on", "off")]
    hw = load_hw_model("gap9")
    for r in rows:
        assert r["network"] == "ecg_block/int.onnx" and r["hardware"] == "gap9"
        assert int(r["l2"]) == hw.levels["L2"].size  # not swept: the model's L2
        assert int(r["l1_usable"]) == int(r["l1"]) - hw.levels["L1"].reserve
        assert r["fwsa"] == "auto"  # not varied: the default of planner solve
        assert r["status"] in ("feasible", "infeasible")
        if r["status"] == "feasible":  # peaks never exceed the swept capacity (nor the usable part)
            assert 0 < int(r["l1_peak"]) <= int(r["l1_usable"]) <= int(r["l1"])
            assert 0 < int(r["l2_peak"]) <= int(r["l2_usable"]) <= int(r["l2"])
            assert float(r["latency_ms"]) > 0 and int(r["cycles"]) > 0
            assert r["forms"] == ("depth-first" if r["dft"] == "on" else "layer-by-layer")
            assert r["infeasible_level"] == r["message"] == ""
    for name in ("memory_peak.png", "latency.png"):
        data = (ecg_sweep / name).read_bytes()
        assert data[:8] == PNG_MAGIC and len(data) > 10_000
        assert b"Software" not in data[:2000]  # fixed metadata: no matplotlib version stamp


def test_sweep_is_deterministic(ecg_sweep, tmp_path):
    out = tmp_path / "again"
    assert main(["explore", _net(ECG), "gap9", "--l1", "16K:64K:16K", "--vary", "dft", "-o", str(out), "-q"]) == 0
    for name in ("explore.csv", "memory_peak.png", "latency.png"):
        assert (out / name).read_bytes() == (ecg_sweep / name).read_bytes(), name


def test_infeasible_points_recorded(tmp_path, capsys):
    """Tight L2 (gap9 reserves 256 KiB of its L2): points that do not fit are rows, not an abort;
    an L1 at the reserve is recorded too."""
    out = tmp_path / "tight"
    rc = main(["explore", _net(ECG), "gap9", "--l1", "10K:16K:6K", "--l2", "262K:278K:8K", "--vary", "dft",
               "-o", str(out), "-q"])
    assert rc == 0
    _, rows = _rows(out / "explore.csv")
    assert len(rows) == 2 * 3 * 2
    bad = [r for r in rows if r["status"] == "infeasible"]
    good = [r for r in rows if r["status"] == "feasible"]
    assert bad and good
    for r in bad:
        assert r["l1_peak"] == r["l2_peak"] == r["latency_ms"] == ""
        assert r["infeasible_level"] in ("L1", "L2") and r["message"]
        if int(r["l1"]) <= 10 * KIB:  # at the reserve: no usable L1 at all
            assert r["infeasible_level"] == "L1" and r["l1_usable"] == ""
        else:
            assert r["infeasible_level"] == "L2" and int(r["missing_bytes"]) > 0
            assert f"{int(r['missing_bytes']):,} B missing at L2" in r["message"]
    # layer-by-layer needs ~72 KiB of L2 activations: never fits here
    assert all(r["status"] == "infeasible" for r in rows if r["dft"] == "off")
    for r in good:
        assert int(r["l2_peak"]) <= int(r["l2_usable"])
    assert (out / "memory_peak.png").is_file() and (out / "latency.png").is_file()


def _fits(net: str, dft: str, fwsa: str, l1: int, l2: int) -> bool:
    try:
        solve(net, "gap9", SolveOptions(dft=dft, fwsa=fwsa, l1=l1, l2=l2))
        return True
    except PlannerError:
        return False


@pytest.mark.parametrize("net,dft,fwsa", [(ECG, "auto", "auto"), (EEG, "on", "auto"), (EEG, "off", "off")])
def test_min_memory_is_tight(tmp_path, net, dft, fwsa):
    """The answer is feasible and 1 KiB less is not (solve called directly). eeg_block with
    --dft off: when both forms fail the planner names the depth-first node (11.7 KB smallest
    footprint), which must not be taken as a bound for the layer-by-layer parts (fit at 13K)."""
    net = _net(net)
    out = tmp_path / "mm"
    assert main(["explore", net, "gap9", "--min-memory", "--dft", dft, "--fwsa", fwsa, "-o", str(out), "-q"]) == 0
    doc = json.loads((out / "min_memory.json").read_text())
    assert not (out / "explore.csv").exists()  # no ranges: no sweep
    (m,) = doc["results"]
    assert m["status"] == "feasible" and m["options"] == {"dft": dft, "fwsa": fwsa}
    hw = load_hw_model("gap9")
    l1, l2, l2_real = m["l1"], m["l2"], hw.levels["L2"].size
    assert l1 % KIB == 0 and l2 % KIB == 0
    assert m["l2_configured"] == l2_real
    assert m["l1_usable"] == l1 - hw.levels["L1"].reserve
    # smallest L1 with L2 as configured, at 1 KiB resolution
    assert _fits(net, dft, fwsa, l1, l2_real)
    assert not _fits(net, dft, fwsa, l1 - KIB, l2_real)
    # then the smallest L2 for that L1
    assert _fits(net, dft, fwsa, l1, l2)
    assert not _fits(net, dft, fwsa, l1, l2 - KIB)
    assert m["l2_peak"] <= m["l2_usable"]
    for key in ("l1_search", "l2_search"):
        assert m[key]["non_monotone"] == []
    if net == str(EEG):  # not the trivial answer just above the reserve
        assert l1 - KIB > hw.levels["L1"].reserve


@pytest.mark.parametrize("bad", ["64K:16K", "abc", "16K:64K:0", "1:2:3:4", "16K::8K", "-4K", "1.5"])
def test_bad_range_is_usage_error(tmp_path, capsys, bad):
    rc = main(["explore", str(ECG), "gap9", f"--l1={bad}", "-o", str(tmp_path / "x")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--l1" in err and "START:STOP:STEP" in err and "Traceback" not in err


def test_usage_errors(tmp_path, capsys):
    assert main(["explore", str(ECG), "gap9", "-o", str(tmp_path / "a")]) == 2
    assert "nothing to explore" in capsys.readouterr().err
    assert main(["explore", str(ECG), "gap9", "--l1", "32K", "--vary", "dft,tiling", "-o", str(tmp_path / "b")]) == 2
    assert "--vary" in capsys.readouterr().err
    assert main(["explore", str(ECG), "stm32l4", "--l1", "32K:64K:16K", "-o", str(tmp_path / "c")]) == 2
    assert "has no L1" in capsys.readouterr().err
    assert main(["explore", str(ECG), "gap9", "--l1", "8K", "-o", str(tmp_path / "d")]) == 2
    assert "reserve" in capsys.readouterr().err


def test_progress_on_stderr_and_table_on_stdout(tmp_path, capsys):
    assert main(["explore", _net(ECG), "gap9", "--l1", "64K", "-o", str(tmp_path / "p")]) == 0
    cap = capsys.readouterr()
    assert re.search(r"^\[1/1\] L1=64K L2=1536K dft=auto fwsa=auto \.\.\. feasible, [\d.]+ ms, [\d.]+ s$",
                     cap.err, re.M), cap.err
    assert "status" in cap.out and "wrote" in cap.out and " s\n" not in cap.out  # timings: console, stderr


def test_parse_range():
    assert parse_range("32K:64K:16K") == [32768, 49152, 65536]
    assert parse_range("32K:60K:16K") == [32768, 49152]  # STOP included only on the grid
    assert parse_range("64K") == [65536]
    assert parse_range("1M:1M") == [1 << 20]
    assert parse_range("32K:256K") == [32768 + k * 28 * KIB for k in range(9)]  # 8 steps
    with pytest.raises(UsageError, match="START:STOP:STEP"):
        parse_range("16K:1M:1")  # too many points
    assert parse_vary("fwsa, dft") == ("dft", "fwsa")


def test_vary_dft_fwsa_combinations(tmp_path):
    """Four series; a combination the planner refuses (--fwsa on needs depth-first) is a row
    marked unsupported, not the end of the sweep."""
    out = tmp_path / "fw"
    assert main(["explore", _net(ECG), "gap9", "--l1", "64K", "--vary", "dft,fwsa", "-o", str(out), "-q"]) == 0
    _, rows = _rows(out / "explore.csv")
    assert [(r["dft"], r["fwsa"]) for r in rows] == [("on", "on"), ("on", "off"), ("off", "on"), ("off", "off")]
    by = {(r["dft"], r["fwsa"]): r for r in rows}
    assert by[("on", "off")]["status"] == by[("off", "off")]["status"] == "feasible"
    for r in rows:
        assert r["status"] in ("feasible", "infeasible", "unsupported")
        if r["status"] == "unsupported":
            assert r["message"].startswith(("--fwsa", "--dft")) and r["l1_peak"] == ""


# ------------------------------------------------------------- the search, without the solver


def _outcome(ok: bool, level: str = "L2", missing: int | None = None) -> Outcome:
    return Outcome(None, 0, "auto", "off", "feasible" if ok else "infeasible", level=level, missing=missing)


def _run(pattern: dict[int, bool], cert=lambda c, o: None, guess=lambda c, o: None):
    cands = sorted(pattern)
    seen = []

    def evaluate(c):
        seen.append(c)
        return _outcome(pattern[c])
    return safe_min_search(cands, evaluate, cert, guess), seen


def test_safe_search_monotone():
    pattern = {c: c >= 37 for c in range(1, 101)}
    # certified: every failure proves all smaller sizes fail (like a layer that does not fit L1)
    r, seen = _run(pattern, cert=lambda c, o: None if o.feasible else c + 1)
    assert r.value == 37 and r.scanned == 0 and r.non_monotone == []
    assert len(seen) <= 10  # bisection, not a scan


def test_safe_search_non_monotone_finds_true_minimum():
    """Feasible at 20 and from 60 up, infeasible in between: bisection alone would answer 60;
    with nothing certified the search scans the gap and returns 20."""
    pattern = {c: c == 20 or c >= 60 for c in range(1, 101)}
    r, _ = _run(pattern)
    assert r.value == 20
    assert r.scanned > 0
    assert r.non_monotone and all(f == 20 and i > 20 for f, i in r.non_monotone)


def test_safe_search_certified_floor_limits_the_scan():
    pattern = {c: c == 20 or c >= 60 for c in range(1, 101)}
    # a bound proves everything below 50 infeasible (it must be sound: here 20 is not below it)
    pattern[20] = False
    r, seen = _run(pattern, cert=lambda c, o: 50)
    assert r.value == 60
    assert all(c >= 50 or c == 100 for c in seen[1:])


def test_safe_search_infeasible_top():
    r, _ = _run({c: False for c in range(1, 20)})
    assert r.value is None
