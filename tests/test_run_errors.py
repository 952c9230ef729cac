"""`planner run` on bad input: each a clear message and exit code 1 or 2, no traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from planner.cli import main

from conftest import EXAMPLES

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("make") is None,
                                reason="the host target needs gcc and make")


@pytest.fixture(scope="module")
def planned(tmp_path_factory) -> Path:
    """A solved and emitted ECG block (copied per test before it is damaged)."""
    base = tmp_path_factory.mktemp("planned")
    net = base / "net.onnx"
    shutil.copy(EXAMPLES / "ecg_block" / "int.onnx", net)
    assert main(["solve", str(net), "gap9", "-o", str(base / "out"), "-q"]) == 0
    return base


def _copy(planned: Path, tmp_path: Path) -> Path:
    shutil.copytree(planned, tmp_path / "p")
    # the plan records the network's resolved path: point it at the copy
    import json
    plan = json.loads((tmp_path / "p" / "out" / "plan.json").read_text())
    plan["source"]["path"] = str((tmp_path / "p" / "net.onnx").resolve())
    (tmp_path / "p" / "out" / "plan.json").write_text(json.dumps(plan))
    return tmp_path / "p" / "out"


def _run(capsys, *args) -> tuple[int, str]:
    rc = main(["run", *map(str, args)])
    cap = capsys.readouterr()
    assert "Traceback" not in cap.err
    return rc, cap.out + cap.err


def test_directory_without_plan(tmp_path, capsys):
    rc, text = _run(capsys, tmp_path)
    assert rc == 2 and "no plan.json" in text and "planner solve" in text


def test_missing_directory(tmp_path, capsys):
    rc, text = _run(capsys, tmp_path / "nope")
    assert rc == 2 and "no such directory" in text


def test_plan_without_project(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["solve", str(EXAMPLES / "ecg_block" / "int.onnx"), "gap9", "-o", str(out), "-q",
                 "--no-emit"]) == 0
    rc, text = _run(capsys, out)
    assert rc == 1 and "no emitted C project" in text and "--no-emit" in text


def test_unknown_target(planned, tmp_path, capsys):
    rc, text = _run(capsys, _copy(planned, tmp_path), "--target", "avr")
    assert rc == 2 and "known targets" in text


def test_missing_compiler_names_the_package(planned, tmp_path, capsys, monkeypatch):
    import planner.run as run_mod
    real = shutil.which
    monkeypatch.setattr(run_mod.shutil, "which", lambda t: None if t == "gcc" else real(t))
    rc, text = _run(capsys, _copy(planned, tmp_path))
    assert rc == 1 and "apt-get install gcc" in text


def test_build_failure_shows_the_first_error(planned, tmp_path, capsys):
    out = _copy(planned, tmp_path)
    src = out / "c" / "src" / "network.c"
    src.write_text(src.read_text() + "\nthis is not C;\n")
    rc, text = _run(capsys, out)
    assert rc == 1 and "network.c:" in text and "build" in text


def test_hang_is_killed(planned, tmp_path, capsys):
    out = _copy(planned, tmp_path)
    main_c = out / "c" / "platform" / "host" / "main.c"
    main_c.write_text(main_c.read_text().replace("    net_run();", "    for (;;) {\n        static volatile int spin;\n        spin++;\n    }"))
    rc, text = _run(capsys, out, "--timeout", "2")
    assert rc == 1 and "did not finish within 2 s" in text and "killed" in text


def test_crash_names_the_running_layer(planned, tmp_path, capsys):
    import json
    out = _copy(planned, tmp_path)
    plan = json.loads((out / "plan.json").read_text())
    victim = plan["layers"][2]["name"]
    from codegen.model import c_ident
    src = out / "c" / "src" / "network.c"
    call = f"    layer_{c_ident(victim)}(core_id, n_cores);"
    text = src.read_text()
    assert call in text
    # core 0 crashes after it has announced the layer (the other cores wait at its first barrier)
    src.write_text(text.replace(call, "    if (core_id == 0) { volatile int *p = (volatile int *)0; *p = 1; }\n" + call))
    rc, msg = _run(capsys, out, "--check-layers")
    assert rc == 1 and "SIGSEGV" in msg and f"while layer {victim} ran" in msg


def test_inputs_of_the_wrong_shape(planned, tmp_path, capsys):
    out = _copy(planned, tmp_path)
    bad = tmp_path / "bad.npz"
    np.savez(bad, np.zeros((1, 3, 3), np.int8))
    rc, text = _run(capsys, out, "--inputs", bad)
    assert rc == 1 and "shape" in text and "bad.npz" in text


def test_inputs_outside_the_input_range(planned, tmp_path, capsys):
    out = _copy(planned, tmp_path)
    from planner.frontend import load_graph
    g = load_graph(tmp_path / "p" / "net.onnx")
    t = g.tensors[g.inputs[0]]
    arr = np.full(t.shape, 300, np.int32)
    bad = tmp_path / "big.npz"
    np.savez(bad, arr)
    rc, text = _run(capsys, out, "--inputs", bad)
    assert rc == 1 and "300" in text and "range" in text


def test_network_changed_since_the_plan(planned, tmp_path, capsys):
    out = _copy(planned, tmp_path)
    shutil.copy(EXAMPLES / "eeg_block" / "int.onnx", tmp_path / "p" / "net.onnx")
    rc, text = _run(capsys, out)
    assert rc == 1 and "changed since the plan was made" in text


def test_network_moved(planned, tmp_path, capsys):
    out = _copy(planned, tmp_path)
    (tmp_path / "p" / "net.onnx").unlink()
    rc, text = _run(capsys, out)
    assert rc == 1 and "re-run planner solve" in text
