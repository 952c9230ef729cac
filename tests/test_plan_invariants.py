"""Every example network (int.onnx and qdq.onnx) on every hardware model: the plan passes the
independent checker (tests/plan_checker.py) and two solves give byte-identical plan.json.

(Byte identity of plans across a refactoring is checked with scripts/plan_snapshot.py: run it
before and after, then `diff -r`.)"""

from __future__ import annotations

import pytest

from planner.solve import SolveOptions, solve

from conftest import EXAMPLES
from plan_checker import check_plan

HW = ("gap9", "stm32h7", "stm32l4")
NETS = [(d.name, f) for d in sorted(EXAMPLES.iterdir()) if d.is_dir()
        for f in ("int", "qdq") if (d / f"{f}.onnx").is_file()]


@pytest.mark.parametrize("name,flavour", NETS)
@pytest.mark.parametrize("hw", HW)
def test_plan_valid_and_deterministic(name, flavour, hw):
    net = str(EXAMPLES / name / f"{flavour}.onnx")
    opts = SolveOptions(fwsa="auto")  # what `planner solve` does by default
    first = solve(net, hw, opts)
    check_plan(first.plan.to_dict(), first.graph)
    assert solve(net, hw, opts).plan.dumps() == first.plan.dumps()
