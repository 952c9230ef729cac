"""Hardware models: the shipped files load and state the facts; bad files fail with clear errors."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any, Callable

import jsonschema
import pytest

from planner.errors import PlannerError
from planner.hw import (
    HW_DIR,
    OVERHEAD_FIELDS,
    QEMU_PORT_FIELDS,
    SCHEMA_PATH,
    known_models,
    load_hw_model,
    with_overrides,
)

KiB = 1024
MODELS = ("gap9", "stm32h7", "stm32l4")


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(json.loads(SCHEMA_PATH.read_text()))


@pytest.mark.parametrize("name", MODELS)
def test_shipped_models_load_by_name_and_path(name: str) -> None:
    assert name in known_models()
    by_name = load_hw_model(name)
    by_path = load_hw_model(HW_DIR / f"{name}.json")
    assert by_name == by_path
    hw = by_name
    assert hw.name == name and hw.path == HW_DIR / f"{name}.json"
    keys = list(hw.levels)
    assert keys == [k for k in ("L1", "L2", "L3") if k in keys]
    for i, (key, lvl) in enumerate(hw.levels.items()):
        assert lvl.key == key and 0 < lvl.usable <= lvl.size
        farthest = i == len(keys) - 1
        assert (lvl.engine is None) == farthest
        assert (lvl.bandwidth_bytes_per_cycle is None) == farthest
    from kernel_lib import descriptions as kd
    from planner.tiling.kernels import isa_path
    assert set(hw.kernel_cost) == set(kd.COST_KEY_SET)
    for key, feats in hw.kernel_cost.items():
        assert sorted(feats) == sorted(kd.cost_features(key, isa_path(hw.isa))), key
    assert set(hw.overhead_cycles) == set(OVERHEAD_FIELDS)
    assert set(hw.qemu_dma_port) == set(QEMU_PORT_FIELDS)
    # Cost figures are assumed, or measured as QEMU instruction counts (planner calibrate) and
    # converted through insn_to_cycle, which stays assumed: their sources must say so.
    target = f"qemu-{hw.qemu_target.replace('x8', '')}"
    fields = ([f"kernel_cost.{k}.{f}" for k, feats in hw.kernel_cost.items() for f in feats]
              + [f"overhead_cycles.{k}" for k in OVERHEAD_FIELDS]
              + [f"qemu_dma_port.{k}" for k in QEMU_PORT_FIELDS])
    for f in fields:
        src = hw.source(f)
        assert src is not None, f
        assert src.startswith("assumed") or (
            src.startswith(f"measured: QEMU {target} instruction count, `planner calibrate ")
            and ("insn_to_cycle" in src and "(assumed)" in src or f.startswith("qemu_dma_port"))), (f, src)
        if name == "gap9" and src.startswith("measured"):
            assert "RV32IMC stand-in for GAP9 without XpulpV2" in src
    assert "insn_to_cycle" in hw.assumptions


def test_gap9_facts() -> None:
    hw = load_hw_model("gap9")
    assert (hw.cores, hw.frequency_hz, hw.isa, hw.qemu_target) == (8, 370_000_000, "rv32imc-xpulpv2", "rv32")
    assert hw.level("L1").display_name == "TCDM" and hw.level("L1").size == 128 * KiB
    assert hw.level("L1").reserve >= 9 * 512  # stacks of the 9 cluster cores
    assert hw.level("L2").size == 1536 * KiB
    assert (hw.level("L1").engine, hw.level("L2").engine) == ("cluster-dma", "micro-dma")
    assert hw.level("L3").addressable is False


def test_stm32h7_facts() -> None:
    hw = load_hw_model("stm32h7")
    assert (hw.cores, hw.frequency_hz, hw.isa, hw.qemu_target) == (1, 480_000_000, "armv7e-m", "m7")
    assert hw.level("L1").display_name == "DTCM" and hw.level("L1").size == 128 * KiB
    assert hw.level("L1").engine == "mdma"  # the only DMA that reaches DTCM
    assert hw.level("L2").size == (512 + 288) * KiB
    assert "AXI SRAM" in hw.level("L2").display_name and "SRAM1-3" in hw.level("L2").display_name
    assert hw.level("L3").size == 2048 * KiB and hw.level("L3").addressable is True


def test_stm32l4_facts_no_l1() -> None:
    hw = load_hw_model("stm32l4")
    assert (hw.cores, hw.frequency_hz, hw.qemu_target) == (1, 120_000_000, "m4")
    assert not hw.has_level("L1") and hw.has_level("L2") and hw.has_level("L3")
    assert list(hw.levels) == ["L2", "L3"]
    assert hw.level("L2").size == 640 * KiB
    assert hw.level("L3").size == 2048 * KiB and hw.level("L3").addressable is True
    with pytest.raises(PlannerError, match="stm32l4.*no L1"):
        hw.level("L1")


# --- bad inputs: mutated copies of gap9.json ------------------------------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        d[last] = value

    return mutate


def _del(path: str) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        for p in parents:
            d = d[p]
        del d[last]

    return mutate


def _del_source(field: str) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        del d["_source"][field]

    return mutate


def _add_source(field: str) -> Mutation:
    def mutate(d: dict[str, Any]) -> None:
        d["_source"][field] = "datasheet"

    return mutate


BAD = {
    # case: (mutation, text the message must contain besides the file name)
    "missing top-level field": (_del("cores"), ["cores", "missing"]),
    "missing level field": (_del("levels.L2.usable"), ["levels.L2.usable", "missing"]),
    "missing transfer field": (_del("levels.L1.engine"), ["levels.L1.engine", "missing"]),
    "transfer field on farthest level": (_set("levels.L3.engine", "micro-dma"), ["levels.L3.engine", "farthest"]),
    "unknown top-level field": (_set("corez", 8), ["corez", "unknown"]),
    "unknown level": (_set("levels.L4", {}), ["levels.L4", "unknown"]),
    "unknown level field": (_set("levels.L1.sise", 1), ["levels.L1.sise", "unknown"]),
    "unknown kernel": (_set("kernel_cost.conv", {"mac": 1.0}), ["kernel_cost", "conv"]),
    "unknown feature": (_set("kernel_cost.gemm.warp", 1.0), ["kernel_cost.gemm", "unknown warp"]),
    "missing feature": (_del("kernel_cost.gemm.mac"), ["kernel_cost.gemm", "missing mac"]),
    "missing overhead kind": (_del("overhead_cycles.tile"), ["overhead_cycles.tile", "missing"]),
    "wrong type string": (_set("cores", "eight"), ["cores", "integer"]),
    "wrong type bool": (_set("levels.L1.size", True), ["levels.L1.size", "integer"]),
    "wrong type fraction for int": (_set("frequency_hz", 370e6 + 0.5), ["frequency_hz", "integer"]),
    "wrong type feature cost": (_set("kernel_cost.gemm.mac", "fast"), ["kernel_cost.gemm.mac", "number"]),
    "negative size": (_set("levels.L1.size", -1), ["levels.L1.size", ">= 1"]),
    "negative feature cost": (_set("kernel_cost.gelu.elem", -1), ["kernel_cost.gelu.elem", ">= 0"]),
    "bad engine": (_set("levels.L1.engine", "teleport"), ["levels.L1.engine", "cluster-dma"]),
    "bad qemu target": (_set("qemu_target", "x86"), ["qemu_target", "m7"]),
    "usable above size": (_set("levels.L1.usable", 200_000), ["levels.L1.usable", "size"]),
    "numeric field without source": (_del_source("insn_to_cycle"), ["insn_to_cycle", "_source"]),
    "level number without source": (_del_source("levels.L2.dma_setup_cycles"), ["levels.L2.dma_setup_cycles", "_source"]),
    "source for no field": (_add_source("levels.L1.sise"), ["_source.levels.L1.sise"]),
    "empty source": (_set("_source.cores", ""), ["_source.cores", "non-empty"]),
    # implausible figures (issue 13): each would pass "> 0" and wreck the cost model or the plan
    "size above 4 GiB": (_set("levels.L2.size", 1e30), ["levels.L2.size", "<= 4294967296"]),
    "frequency of 1e30 Hz": (_set("frequency_hz", 1e30), ["frequency_hz", "<= 10000000000"]),
    "bandwidth of 1e-300": (_set("levels.L1.bandwidth_bytes_per_cycle", 1e-300),
                            ["levels.L1.bandwidth_bytes_per_cycle", ">= 0.001"]),
    "feature cost of 1e9": (_set("kernel_cost.gemm.mac", 1e9), ["kernel_cost.gemm.mac", "<= 1000000"]),
    "2048 cores": (_set("cores", 2048), ["cores", "<= 1024"]),
    "setup of 1e12 cycles": (_set("levels.L2.dma_setup_cycles", 10**12), ["levels.L2.dma_setup_cycles", "<= 1000000"]),
}


def _write_mutant(tmp_path: Path, mutate: Mutation) -> Path:
    data = copy.deepcopy(json.loads((HW_DIR / "gap9.json").read_text()))
    mutate(data)
    out = tmp_path / "mutant_gap9.json"
    out.write_text(json.dumps(data, indent=2))
    return out


def _jsonschema_errors(data) -> list[tuple]:
    schema = json.loads(SCHEMA_PATH.read_text())
    return sorted((e.validator, [str(p) for p in e.absolute_path], repr(e.instance))
                  for e in jsonschema.Draft202012Validator(schema).iter_errors(data))


def _our_errors(data) -> list[tuple]:
    from planner.schema_check import Validator
    v = Validator(json.loads(SCHEMA_PATH.read_text()))
    return sorted((e.validator, [str(p) for p in e.absolute_path], repr(e.instance))
                  for e in v.iter_errors(data))


EXTRA_SCHEMA_CASES = {
    "bad name pattern": _set("name", "GAP 9"),
    "bad source key": _set("_source", {"levels..L1": "x"}),
    "level not an object": _set("levels.L1", 5),
    "several problems": lambda d: (_del("cores")(d), _set("isa", "")(d), _set("levels.L2.size", 0.5)(d)),
    "float integer": _set("frequency_hz", 3.7e8),
}


@pytest.mark.parametrize("case", ["shipped"] + list(BAD) + list(EXTRA_SCHEMA_CASES))
def test_schema_checker_reports_what_jsonschema_reports(case: str) -> None:
    """planner.schema_check (used at run time, for start-up time) against jsonschema itself: the
    same failing keywords at the same paths on the same values, for every model and bad case."""
    for name in MODELS if case == "shipped" else ("gap9",):
        data = copy.deepcopy(json.loads((HW_DIR / f"{name}.json").read_text()))
        if case in BAD:
            BAD[case][0](data)
        elif case in EXTRA_SCHEMA_CASES:
            EXTRA_SCHEMA_CASES[case](data)
        assert _our_errors(data) == _jsonschema_errors(data)


def test_schema_checker_refuses_unknown_keywords() -> None:
    from planner.schema_check import Validator
    with pytest.raises(ValueError, match="oneOf"):
        Validator({"type": "object", "properties": {"a": {"oneOf": [{"type": "string"}]}}})


@pytest.mark.parametrize("case", list(BAD))
def test_bad_model_is_a_clear_error(tmp_path: Path, case: str) -> None:
    mutate, expected = BAD[case]
    path = _write_mutant(tmp_path, mutate)
    with pytest.raises(PlannerError) as info:
        load_hw_model(path)
    msg = str(info.value)
    assert "mutant_gap9.json" in msg
    for text in expected:
        assert text in msg, f"{case}: {text!r} not in {msg!r}"


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_are_refused(tmp_path: Path, token: str) -> None:
    text = re.sub(r'"mac": [0-9.eE+-]+', f'"mac": {token}', (HW_DIR / "gap9.json").read_text(), count=1)
    path = tmp_path / "nonfinite.json"
    path.write_text(text)
    line = text[:text.index(f'"mac": {token}')].count("\n") + 1
    with pytest.raises(PlannerError, match=rf"nonfinite\.json: field 'mac' \(line {line}\): {token} is "
                                           "not a JSON number"):
        load_hw_model(path)


def test_duplicate_keys_are_refused(tmp_path: Path) -> None:
    text = (HW_DIR / "gap9.json").read_text().replace('"size": 131072,', '"size": 131072,\n "size": 262144,', 1)
    path = tmp_path / "dup.json"
    path.write_text(text)
    with pytest.raises(PlannerError, match=r"dup\.json: key 'size' appears twice in one object"):
        load_hw_model(path)


def test_override_above_4_gib() -> None:
    with pytest.raises(PlannerError, match="L2 override.*4 GiB"):
        with_overrides(load_hw_model("gap9"), l2=(4 << 30) + 1024)


def test_integer_written_as_float_is_accepted(tmp_path: Path) -> None:
    hw = load_hw_model(_write_mutant(tmp_path, _set("frequency_hz", 3.7e8)))
    assert hw.frequency_hz == 370_000_000 and isinstance(hw.frequency_hz, int)


def test_top_level_not_an_object(tmp_path: Path) -> None:
    path = tmp_path / "list.json"
    path.write_text("[1, 2]")
    with pytest.raises(PlannerError, match=r"list\.json.*top level.*expected object"):
        load_hw_model(path)


def test_not_json_reports_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{\n  "name": "gap9",\n  "cores": ,\n}\n')
    with pytest.raises(PlannerError, match=r"broken\.json: not valid JSON at line 3, column 12"):
        load_hw_model(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PlannerError, match=r"nothere\.json: hardware model file not found"):
        load_hw_model(tmp_path / "nothere.json")
    with pytest.raises(PlannerError, match=r"nothere\.json: hardware model file not found"):
        load_hw_model(str(tmp_path / "nothere.json"))


def test_unknown_bare_name_lists_known_models() -> None:
    with pytest.raises(PlannerError, match=r"unknown hardware model 'gap10'.*gap9, stm32h7, stm32l4"):
        load_hw_model("gap10")


def test_l4_without_l1_is_valid(tmp_path: Path) -> None:
    # The farthest-level rule follows the levels present: dropping L1 keeps a valid model.
    def drop_l1(d: dict[str, Any]) -> None:
        del d["levels"]["L1"]
        for k in [k for k in d["_source"] if k.startswith("levels.L1.")]:
            del d["_source"][k]

    hw = load_hw_model(_write_mutant(tmp_path, drop_l1))
    assert list(hw.levels) == ["L2", "L3"]


# --- what-if overrides -------------------------------------------------------------------------


def test_overrides_replace_size_and_keep_reserve() -> None:
    hw = load_hw_model("gap9")
    l1, l2 = hw.level("L1"), hw.level("L2")
    hw2 = with_overrides(hw, l1=64 * KiB, l2=512 * KiB)
    assert hw2.level("L1").size == 64 * KiB and hw2.level("L1").usable == 64 * KiB - l1.reserve
    assert hw2.level("L2").size == 512 * KiB and hw2.level("L2").usable == 512 * KiB - l2.reserve
    assert hw2.level("L1").bandwidth_bytes_per_cycle == l1.bandwidth_bytes_per_cycle
    assert hw2.level("L3") == hw.level("L3")
    assert hw2.sources["levels.L1.size"].startswith("override")
    # the original is untouched, and overriding with the real size is the identity
    assert hw.level("L1") == l1 and hw.sources["levels.L1.size"].startswith("GAP9")
    same = with_overrides(hw, l1=l1.size, l2=l2.size)
    assert same.levels == hw.levels
    assert with_overrides(hw) == hw


def test_override_l2_only_and_larger_than_real() -> None:
    hw = load_hw_model("stm32h7")
    hw2 = with_overrides(hw, l2=2 * 1024 * KiB)
    assert hw2.level("L2").size == 2 * 1024 * KiB and hw2.level("L1") == hw.level("L1")


def test_override_errors() -> None:
    with pytest.raises(PlannerError, match="stm32l4.*no L1"):
        with_overrides(load_hw_model("stm32l4"), l1=64 * KiB)
    gap9 = load_hw_model("gap9")
    with pytest.raises(PlannerError, match="L1 override.*reserved"):
        with_overrides(gap9, l1=1024)  # smaller than the stacks
    with pytest.raises(PlannerError, match="L2 override"):
        with_overrides(gap9, l2=-5)
