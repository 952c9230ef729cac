"""Hardware models: load hw_models/<name>.json, validate it, and expose it as frozen dataclasses.

The JSON files are the only place hardware numbers live (see docs/hardware-models.md).
Structure is checked with the JSON Schema in hw_models/schema.json; the rules a schema cannot
express (usable <= size, transfer fields on every level but the farthest, a `_source` for every
number) are checked here. Every failure is a PlannerError naming the file and the field.
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from planner.errors import PlannerError

# hw_models/ sits beside planner/ both in the repository and when installed as package data.
HW_DIR = Path(__file__).resolve().parent.parent / "hw_models"
SCHEMA_PATH = HW_DIR / "schema.json"

LEVEL_KEYS = ("L1", "L2", "L3")  # nearest to farthest from the cores
OVERHEAD_FIELDS = ("layer", "tile", "call", "transfer", "compact")  # overhead_cycles
QEMU_PORT_FIELDS = ("transfer", "row", "byte", "byte_unaligned")   # qemu_dma_port (instructions)
TRANSFER_FIELDS = ("bandwidth_bytes_per_cycle", "dma_setup_cycles", "engine")
READ_FIELDS = ("read_wait_states", "read_width_bytes", "read_clock_hz")  # in-place reads (flash)
MAX_LEVEL_BYTES = 1 << 32  # the schema's bound on a level's size (a 32-bit address space)


@dataclass(frozen=True)
class MemoryLevel:
    """One level of the hierarchy. The transfer fields describe moving data between this level
    and the next-farther one (L1<->L2 on L1, L2<->L3 on L2); they are None on the farthest level."""

    key: str
    display_name: str
    size: int
    usable: int
    bandwidth_bytes_per_cycle: float | None
    dma_setup_cycles: int | None
    engine: str | None
    addressable: bool
    # Reading this level in place (a memory-mapped flash): each access of `read_width_bytes`
    # waits `read_wait_states` cycles of `read_clock_hz` beyond a zero-wait-state RAM access.
    # None: read at RAM speed (no wait states).
    read_wait_states: int | None = None
    read_width_bytes: int | None = None
    read_clock_hz: int | None = None

    @property
    def reserve(self) -> int:
        """Bytes kept for stacks and the runtime (size - usable)."""
        return self.size - self.usable

    def read_wait_cycles(self, core_hz: int) -> float:
        """Core cycles a core load waits per access of `read_width_bytes` read in place here
        (0 without read figures)."""
        if not self.read_wait_states:
            return 0.0
        return self.read_wait_states * core_hz / (self.read_clock_hz or core_hz)


@dataclass(frozen=True)
class HardwareModel:
    name: str
    display_name: str
    isa: str
    cores: int
    frequency_hz: int
    levels: dict[str, MemoryLevel]  # present levels only, in order L1, L2, L3
    kernel_cost: dict[str, dict[str, float]]  # key -> feature -> cycles per count per core
    insn_to_cycle: float
    overhead_cycles: dict[str, float]  # OVERHEAD_FIELDS -> cycles per count
    qemu_dma_port: dict[str, float]    # QEMU_PORT_FIELDS -> instructions per count (QEMU only)
    qemu_target: str
    sources: dict[str, str]  # dotted field path -> where the number comes from
    qemu_estimate_deviation: float | None = None  # measured by planner calibrate (optional)
    path: Path | None = None

    def has_level(self, key: str) -> bool:
        return key in self.levels

    def level(self, key: str) -> MemoryLevel:
        if key not in self.levels:
            raise PlannerError(
                f"hardware model '{self.name}' has no {key} (its levels: {', '.join(self.levels)})"
            )
        return self.levels[key]

    def source(self, path: str) -> str | None:
        """The `_source` of a field: its own, else that of the nearest enclosing object
        (`kernel_cost.gemm` covers `kernel_cost.gemm.mac`)."""
        parts = path.split(".")
        for i in range(len(parts), 0, -1):
            src = self.sources.get(".".join(parts[:i]))
            if src is not None:
                return src
        return None

    @property
    def isa_path(self) -> str:
        """The kernel library's ISA path for this model (arm-dsp, generic)."""
        from planner.tiling.kernels import isa_path
        return isa_path(self.isa)

    @property
    def assumptions(self) -> list[str]:
        """Fields whose figure is assumed rather than taken from a datasheet or a measurement."""
        return [k for k, v in self.sources.items() if v.lower().startswith("assumed")]


def known_models() -> list[str]:
    return sorted(p.stem for p in HW_DIR.glob("*.json") if p != SCHEMA_PATH)


def resolve_hw_path(spec: str | Path) -> Path:
    """A path to a model file, or a bare name ("gap9") meaning hw_models/<name>.json."""
    s = str(spec)
    if isinstance(spec, str) and "/" not in s and "\\" not in s and not s.endswith(".json"):
        path = HW_DIR / f"{s}.json"
        if not path.is_file():
            raise PlannerError(
                f"unknown hardware model '{s}': no {path} (known models: {', '.join(known_models())})"
            )
        return path
    path = Path(spec)
    if not path.is_file():
        raise PlannerError(
            f"{path}: hardware model file not found "
            f"(give a path to a .json file or one of: {', '.join(known_models())})"
        )
    return path


def load_hw_model(path: str | Path) -> HardwareModel:
    """Load and validate a hardware model from a file path or a bare model name."""
    file = resolve_hw_path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise PlannerError(f"{file}: cannot read hardware model: {e}") from None
    data = _parse_json(file, text)
    _check_schema(file, data)
    _check_semantics(file, data)
    return _build(file, data)


class _DuplicateKey(ValueError):
    pass


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for k, v in pairs:
        if k in seen:
            raise _DuplicateKey(k)
        seen[k] = v
    return seen


def _no_constant(name: str) -> Any:
    raise ValueError(name)


def _parse_json(file: Path, text: str) -> Any:
    """Strict JSON: Python's parser would take NaN/Infinity (not JSON, and they pass every
    numeric range check) and keep the last of duplicated keys silently."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as e:
        raise PlannerError(
            f"{file}: not valid JSON at line {e.lineno}, column {e.colno}: {e.msg}"
        ) from None
    except _DuplicateKey as e:
        lines = _line_numbers(text, rf'"{re.escape(str(e))}"\s*:')
        where = f" (the key is on lines {', '.join(map(str, lines))})" if len(lines) > 1 else ""
        raise PlannerError(f"{file}: key '{e}' appears twice in one object{where}; JSON keys must "
                           "be unique (keep one)") from None
    except ValueError as e:
        m = re.search(rf'"([^"]*)"\s*:\s*{re.escape(str(e))}', text)
        where = f" field '{m.group(1)}' (line {_line_numbers(text, re.escape(m.group(0)))[0]}):" if m else ""
        raise PlannerError(f"{file}:{where} {e} is not a JSON number; give a finite number") from None


def _line_numbers(text: str, pattern: str) -> list[int]:
    return [text.count("\n", 0, m.start()) + 1 for m in re.finditer(pattern, text)]


def with_overrides(hw: HardwareModel, l1: int | None = None, l2: int | None = None) -> HardwareModel:
    """What-if: the same target with a different L1/L2 capacity in bytes.

    An override is a chip with that much memory: it sets `size` to the given bytes and `usable`
    to size minus the level's original reserve (stacks and runtime do not shrink with the memory),
    so overriding with the real size reproduces the real model. Transfer figures are unchanged.
    """
    levels = dict(hw.levels)
    sources = dict(hw.sources)
    for key, size in (("L1", l1), ("L2", l2)):
        if size is None:
            continue
        lvl = hw.level(key)  # raises for a level the target does not have (e.g. L1 on STM32L4)
        if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size <= lvl.reserve:
            raise PlannerError(
                f"{key} override for '{hw.name}': expected an integer number of bytes above the "
                f"{lvl.reserve:,} B reserved for stacks and runtime, got {size!r}"
            )
        if size > MAX_LEVEL_BYTES:
            raise PlannerError(
                f"{key} override for '{hw.name}': {size:,} B is above the 4 GiB address space of a "
                "32-bit MCU"
            )
        size = int(size)
        levels[key] = dataclasses.replace(lvl, size=size, usable=size - lvl.reserve)
        sources[f"levels.{key}.size"] = f"override: what-if {key} of {size} B"
        sources[f"levels.{key}.usable"] = f"override: {size} B minus the model's {lvl.reserve} B reserve"
    return dataclasses.replace(hw, levels=levels, sources=sources)


# --- validation -----------------------------------------------------------------------------


@lru_cache(maxsize=1)
def _validator():
    """schema.json's checker (planner.schema_check: jsonschema's results for the keywords the
    schema uses, without its import cost; tests/test_hw.py compares the two)."""
    from planner.schema_check import Validator
    return Validator(json.loads(SCHEMA_PATH.read_text(encoding="utf-8")))


def _dotted(parts: Any) -> str:
    return ".".join(str(p) for p in parts) or "(top level)"


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string", list: "array", dict: "object", type(None): "null"}.get(
        type(value), type(value).__name__
    )


def _check_schema(file: Path, data: Any) -> None:
    # Shallowest, then alphabetical: deterministic, and a missing top-level field is reported
    # before the noise it causes deeper down.
    errors = sorted(
        _validator().iter_errors(data),
        key=lambda e: (len(e.absolute_path), [str(p) for p in e.absolute_path], str(e.validator)),
    )
    if not errors:
        return
    e = errors[0]
    path = list(e.absolute_path)
    desc = e.schema.get("description") if isinstance(e.schema, dict) else None
    unit = f" ({desc})" if desc and e.validator in ("type", "minimum", "exclusiveMinimum", "maximum") else ""
    if e.validator == "required":
        missing = [k for k in e.validator_value if k not in e.instance]
        field, problem = _dotted(path + missing[:1]), "missing required field"
    elif e.validator == "additionalProperties":
        known = e.schema.get("properties", {})
        unknown = sorted(k for k in e.instance if k not in known)
        field = _dotted(path + unknown[:1])
        problem = f"unknown field (expected one of: {', '.join(k for k in known if k != '$schema')})"
    elif e.validator == "type":
        field = _dotted(path)
        problem = f"expected {e.validator_value}{unit}, got {_json_type(e.instance)} {e.instance!r}"
    elif e.validator in ("minimum", "exclusiveMinimum", "maximum"):
        op = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<="}[e.validator]
        field, problem = _dotted(path), f"expected a value {op} {e.validator_value}{unit}, got {e.instance!r}"
    elif e.validator == "minLength":
        field, problem = _dotted(path), f"expected a non-empty string, got {e.instance!r}"
    elif e.validator == "enum":
        field = _dotted(path)
        problem = f"expected one of {', '.join(map(str, e.validator_value))}, got {e.instance!r}"
    else:
        field, problem = _dotted(path), e.message
    more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
    raise PlannerError(f"{file}: field '{field}': {problem}{more}")


def _leaves(obj: dict[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, value) of every scalar field, `_source` and `$schema` excluded."""
    for k, v in obj.items():
        if k in ("_source", "$schema"):
            continue
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            yield from _leaves(v, path + ".")
        else:
            yield path, v


def _check_semantics(file: Path, data: dict[str, Any]) -> None:
    def fail(field: str, problem: str) -> None:
        raise PlannerError(f"{file}: field '{field}': {problem}")

    present = [k for k in LEVEL_KEYS if k in data["levels"]]
    for i, key in enumerate(present):
        lvl = data["levels"][key]
        if lvl["usable"] > lvl["size"]:
            fail(f"levels.{key}.usable", f"expected usable <= size ({lvl['size']}), got {lvl['usable']}")
        farthest = i == len(present) - 1
        for f in TRANSFER_FIELDS:
            if farthest and f in lvl:
                fail(
                    f"levels.{key}.{f}",
                    f"{key} is the farthest level: transfer fields describe the link to the "
                    f"next-farther level and must be absent here",
                )
            if not farthest and f not in lvl:
                fail(
                    f"levels.{key}.{f}",
                    f"missing required field (transfer between {key} and {present[i + 1]})",
                )
        given = [f for f in READ_FIELDS if f in lvl]
        if given and len(given) != len(READ_FIELDS):
            missing = next(f for f in READ_FIELDS if f not in lvl)
            fail(f"levels.{key}.{missing}", f"missing: the in-place read figures come together "
                 f"({', '.join(READ_FIELDS)})")
        if given and not lvl["addressable"]:
            fail(f"levels.{key}.{given[0]}", "in-place read figures on a level that is not "
                 "addressable (its data is only moved by DMA): remove them or set addressable")

    _check_kernel_cost(file, data)
    leaves = dict(_leaves(data))
    objects = set(_objects(data))
    sources = data["_source"]
    for path, value in leaves.items():
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        parts = path.split(".")
        covered = any(".".join(parts[:i]) in sources for i in range(len(parts), 0, -1))
        if numeric and not covered:
            fail(
                path,
                f'numeric field without a source: expected "_source": {{"{path}": '
                f'"<datasheet reference> or assumed: <reason>"}} (or one for an object holding it)',
            )
    for path in sources:
        if path not in leaves and path not in objects:
            fail(f"_source.{path}", "names no field of this model (expected a dotted path such as levels.L1.size)")


def _objects(obj: dict[str, Any], prefix: str = "") -> Iterator[str]:
    """Dotted paths of every nested object (a `_source` there covers all its numbers)."""
    for k, v in obj.items():
        if isinstance(v, dict) and k not in ("_source",):
            path = f"{prefix}{k}"
            yield path
            yield from _objects(v, path + ".")


def _check_kernel_cost(file: Path, data: dict[str, Any]) -> None:
    """kernel_cost has every key of the kernel library's cost model with exactly the features
    kernel_lib/descriptions.py counts for the model's ISA path."""
    from kernel_lib import descriptions as kd
    from planner.tiling.kernels import isa_path

    isa = isa_path(data["isa"])
    kc = data["kernel_cost"]
    for key in kd.COST_KEY_SET:
        want = kd.cost_features(key, isa)
        if key not in kc:
            raise PlannerError(f"{file}: field 'kernel_cost.{key}': missing required field (features "
                               f"{', '.join(want)} for the {isa} path of isa {data['isa']!r})")
        got = kc[key]
        missing = [f for f in want if f not in got]
        extra = sorted(f for f in got if f not in want)
        if missing or extra:
            what = (f"missing {', '.join(missing)}" if missing else "") + \
                   ("; " if missing and extra else "") + (f"unknown {', '.join(extra)}" if extra else "")
            raise PlannerError(f"{file}: field 'kernel_cost.{key}': {what} (the {isa} path counts "
                               f"exactly {', '.join(want)}: kernel_lib/descriptions.py cost_features)")


def _opt(conv: Any, value: Any) -> Any:
    return None if value is None else conv(value)


def _build(file: Path, data: dict[str, Any]) -> HardwareModel:
    # JSON Schema counts 3.7e8 as an integer (no fraction): store integer fields as int.
    levels = {
        key: MemoryLevel(
            key=key,
            display_name=d["display_name"],
            size=int(d["size"]),
            usable=int(d["usable"]),
            bandwidth_bytes_per_cycle=_opt(float, d.get("bandwidth_bytes_per_cycle")),
            dma_setup_cycles=_opt(int, d.get("dma_setup_cycles")),
            engine=d.get("engine"),
            addressable=d["addressable"],
            read_wait_states=_opt(int, d.get("read_wait_states")),
            read_width_bytes=_opt(int, d.get("read_width_bytes")),
            read_clock_hz=_opt(int, d.get("read_clock_hz")),
        )
        for key in LEVEL_KEYS
        if (d := data["levels"].get(key)) is not None
    }
    return HardwareModel(
        name=data["name"],
        display_name=data["display_name"],
        isa=data["isa"],
        cores=int(data["cores"]),
        frequency_hz=int(data["frequency_hz"]),
        levels=levels,
        kernel_cost={k: {f: float(v) for f, v in feats.items()} for k, feats in data["kernel_cost"].items()},
        insn_to_cycle=float(data["insn_to_cycle"]),
        overhead_cycles={k: float(v) for k, v in data["overhead_cycles"].items()},
        qemu_dma_port={k: float(v) for k, v in data["qemu_dma_port"].items()},
        qemu_target=data["qemu_target"],
        sources=dict(data["_source"]),
        qemu_estimate_deviation=_opt(float, data.get("qemu_estimate_deviation")),
        path=file,
    )
