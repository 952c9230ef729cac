"""Issue 13, item 5: --version, help text for every argument, `inspect --json`, and a failed
`solve` that never leaves the previous plan.json looking current."""

from __future__ import annotations

import argparse
import configparser
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import planner
from conftest import EXAMPLES, example_net
from planner.cli import build_parser, main


def run(args, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in args])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.out + cap.err
    return rc, cap.out, cap.err


def test_version(capsys):
    rc, out, _ = run(["--version"], capsys)
    assert rc == 0 and out.strip() == f"planner {planner.__version__}"


def test_help_exits_zero_in_process(capsys):
    rc, out, _ = run(["solve", "--help"], capsys)
    assert rc == 0 and "--time-limit" in out


def test_the_process_entry_is_main_with_its_exit_codes(tmp_path):
    """`planner` (the console script) and `python -m planner` run console_main, which is main
    with the collector tuned for a short process: same output, same exit codes, and a plan
    written the same way."""
    cfg = configparser.ConfigParser()
    cfg.read(Path(__file__).resolve().parents[1] / "setup.cfg")
    assert cfg["options.entry_points"]["console_scripts"].strip() == "planner = planner.cli:console_main"

    def proc(*args):
        return subprocess.run([sys.executable, "-m", "planner", *map(str, args)], capture_output=True,
                              text=True, cwd=tmp_path)

    r = proc("--version")
    assert (r.returncode, r.stdout.strip()) == (0, f"planner {planner.__version__}")
    r = proc("solve", "--cores", "many", example_net("ecg_block"), "gap9", "-o", tmp_path / "o")
    assert r.returncode == 2 and "--cores" in r.stderr and "Traceback" not in r.stderr
    r = proc("inspect", tmp_path / "missing.onnx")
    assert r.returncode == 1 and "missing.onnx" in r.stderr and "Traceback" not in r.stderr
    r = proc("solve", example_net("ecg_block"), "gap9", "-o", tmp_path / "o", "-q", "--no-emit")
    assert r.returncode == 0 and json.loads((tmp_path / "o" / "plan.json").read_text())["layers"]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    subs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(subs.choices)


def test_every_argument_has_help():
    parser, commands = build_parser()
    subs = _subparsers(parser)
    assert set(commands) <= set(subs) and {"inspect", "golden", "solve", "explore"} <= set(subs)
    missing = []
    for name, p in [("planner", parser), *subs.items()]:
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                continue
            if not (a.help and a.help.strip()) or a.help == argparse.SUPPRESS:
                missing.append(f"{name} {'/'.join(a.option_strings) or a.dest}")
    assert not missing, f"arguments without help text: {missing}"
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    helps = {c.dest: c.help for c in action._choices_actions}
    for name in subs:  # and every command says what it does in `planner --help`
        assert helps.get(name), f"command {name} has no help line"


@pytest.mark.parametrize("example", ["eeg_block", "eeg_2block"])
def test_inspect_json(example, capsys):
    net = example_net(example)
    rc, out, _ = run(["inspect", net, "--json"], capsys)
    assert rc == 0
    doc = json.loads(out)
    rc, text, _ = run(["inspect", net], capsys)
    # the same facts as the tables
    assert f"{doc['flavour']} graph '{doc['graph']}', {len(doc['nodes'])} nodes" in text
    assert f"total: {doc['total']['macs']:,} MACs, {doc['total']['weight_bytes']:,} weight bytes" in text
    assert doc["total"]["macs"] == sum(n["macs"] for n in doc["nodes"]) > 0
    assert [i["name"] for i in doc["inputs"]] == ["input"] and doc["inputs"][0]["dtype"] == "int8"
    meta = json.loads((EXAMPLES / example / "meta.json").read_text())
    assert doc["inputs"][0]["shape"] == [1, meta["S"], meta["E"]]
    blocks = doc["mhsa_blocks"]
    assert len(blocks) == meta["blocks"]
    for b in blocks:
        assert (b["s"], b["e"], b["p"], b["h"]) == (meta["S"], meta["E"], meta["P"], meta["H"])
        node = next(n for n in doc["nodes"] if n["name"] == b["node"])
        assert node["op"] == "MHSA" and node["mhsa"] == {"s": b["s"], "e": b["e"], "p": b["p"], "h": b["h"]}
    assert "before any FWSA" in doc["total"]["counted"]
    # deterministic
    rc, again, _ = run(["inspect", net, "--json"], capsys)
    assert again == out


def test_failed_solve_retires_the_previous_plan(tmp_path, capsys):
    net = example_net("ecg_block")
    out = tmp_path / "out"
    rc, _, _ = run(["solve", net, "gap9", "-o", out, "-q"], capsys)
    assert rc == 0
    old_plan = (out / "plan.json").read_text()
    # a solve into the same directory that fails (layer-by-layer does not fit 300K of L2)
    rc, _, err = run(["solve", net, "gap9", "--dft", "off", "--l2", "300K", "-o", out, "-q"], capsys)
    assert rc == 1 and "B missing at L2" in err
    assert not (out / "plan.json").exists() and not (out / "report.md").exists()
    assert (out / "plan.json.stale").read_text() == old_plan and (out / "report.md.stale").is_file()
    assert re.search(r"error: .*\nplanner: note: the plan\.json and report\.md of an earlier solve in "
                     r".* were renamed to \*\.stale \(this solve failed\)", err)
    # a usage error found by solve itself (not argparse) retires them too; nothing to retire now
    rc, _, err = run(["solve", net, "gap9", "--cores", "99", "-o", out, "-q"], capsys)
    assert rc == 2 and "renamed" not in err
    # the next good solve writes fresh files and drops the stale copies; no temporary left behind
    rc, _, _ = run(["solve", net, "gap9", "-o", out, "-q"], capsys)
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["c", "plan.json", "report.md"]
    assert (out / "plan.json").read_text() == old_plan  # same inputs, byte-identical plan


def test_failed_solve_with_usage_error_inside_solve_retires_too(tmp_path, capsys):
    net = example_net("ecg_block")
    out = tmp_path / "out"
    assert run(["solve", net, "gap9", "-o", out, "-q"], capsys)[0] == 0
    rc, _, err = run(["solve", net, "gap9", "--cores", "99", "-o", out, "-q"], capsys)
    assert rc == 2 and "--cores 99" in err and "renamed to *.stale" in err
    assert not (out / "plan.json").exists() and (out / "plan.json.stale").exists()
