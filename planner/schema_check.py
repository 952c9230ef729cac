"""The JSON Schema keywords hw_models/schema.json uses, checked as jsonschema's Draft 2020-12
validator checks them (one error per failing keyword, same paths and instances).

Why not jsonschema itself: importing it and checking the schema cost 0.1-0.3 s of every `planner
solve` on this machine (its format checkers pull in a dozen modules), more than the planning of a
small graph. The schema stays the one description of a valid hardware model; tests/test_hw.py runs
jsonschema on the shipped models and on every bad-model case and checks that both report the same
errors. A keyword outside SUPPORTED in the schema is an error here, so a schema change cannot be
silently ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Iterator

SUPPORTED = frozenset({"$schema", "$defs", "$ref", "title", "description", "type", "enum",
                       "properties", "required", "additionalProperties", "propertyNames",
                       "minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum", "minLength",
                       "pattern"})


@dataclass
class SchemaError:
    """What hw.py reads of a jsonschema ValidationError."""

    validator: str              # the failing keyword
    validator_value: Any        # its value in the schema
    instance: Any               # the value that fails it
    schema: dict                # the (sub)schema holding the keyword
    absolute_path: list = field(default_factory=list)

    @property
    def message(self) -> str:
        if self.validator == "pattern":
            return f"{self.instance!r} does not match {self.validator_value!r}"
        return f"{self.instance!r} fails {self.validator} {self.validator_value!r}"


def _is_type(value: Any, name: str) -> bool:
    if name == "object":
        return isinstance(value, dict)
    if name == "array":
        return isinstance(value, list)
    if name == "string":
        return isinstance(value, str)
    if name == "boolean":
        return isinstance(value, bool)
    if name == "null":
        return value is None
    if isinstance(value, bool):  # bool is an int in Python, never a JSON number
        return False
    if name == "number":
        return isinstance(value, (int, float))
    if name == "integer":  # draft 6+: a float with an integral value is an integer
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    raise ValueError(f"schema type {name!r} is not supported")


class Validator:
    def __init__(self, schema: dict):
        self.root = schema
        self._check_keywords(schema)

    def _check_keywords(self, s: Any, where: str = "#") -> None:
        if not isinstance(s, dict):
            return
        unknown = set(s) - SUPPORTED
        if unknown:
            raise ValueError(f"schema {where}: keyword(s) {sorted(unknown)} not supported by "
                             "planner/schema_check.py")
        for key in ("properties", "$defs"):
            for name, sub in s.get(key, {}).items():
                self._check_keywords(sub, f"{where}/{key}/{name}")
        for key in ("additionalProperties", "propertyNames"):
            self._check_keywords(s.get(key), f"{where}/{key}")

    def _resolve(self, ref: str) -> dict:
        if not ref.startswith("#/"):
            raise ValueError(f"schema $ref {ref!r}: only local references are supported")
        node: Any = self.root
        for part in ref[2:].split("/"):
            node = node[part]
        return node

    def iter_errors(self, instance: Any, schema: dict | None = None,
                    path: tuple = ()) -> Iterator[SchemaError]:
        s = self.root if schema is None else schema
        if s is True or s is None:
            return
        if s is False:
            yield SchemaError("false", False, instance, {}, list(path))
            return

        def err(kw: str) -> SchemaError:
            return SchemaError(kw, s[kw], instance, s, list(path))

        if "$ref" in s:
            yield from self.iter_errors(instance, self._resolve(s["$ref"]), path)
        if "type" in s and not _is_type(instance, s["type"]):
            yield err("type")
        if "enum" in s and instance not in s["enum"]:
            yield err("enum")
        if _is_type(instance, "number"):
            if "minimum" in s and instance < s["minimum"]:
                yield err("minimum")
            if "exclusiveMinimum" in s and instance <= s["exclusiveMinimum"]:
                yield err("exclusiveMinimum")
            if "maximum" in s and instance > s["maximum"]:
                yield err("maximum")
            if "exclusiveMaximum" in s and instance >= s["exclusiveMaximum"]:
                yield err("exclusiveMaximum")
        if isinstance(instance, str):
            if "minLength" in s and len(instance) < s["minLength"]:
                yield err("minLength")
            if "pattern" in s and not re.search(s["pattern"], instance):
                yield err("pattern")
        if isinstance(instance, dict):
            props = s.get("properties", {})
            for name in s.get("required", []):
                if name not in instance:
                    yield err("required")
            for name, sub in props.items():
                if name in instance:
                    yield from self.iter_errors(instance[name], sub, path + (name,))
            if "propertyNames" in s:
                for name in instance:  # jsonschema: the object's path, the name as instance
                    yield from self.iter_errors(name, s["propertyNames"], path)
            extra = [k for k in instance if k not in props]
            ap = s.get("additionalProperties")
            if ap is False and extra:
                yield err("additionalProperties")
            elif isinstance(ap, dict):
                for name in extra:
                    yield from self.iter_errors(instance[name], ap, path + (name,))
