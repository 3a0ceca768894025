"""Validation against the official R4 JSON Schema (hl7.org/fhir/R4/json.html#schema).

The schema is the authority for what R4 JSON may contain, including the codes of required
bindings (its `enum`s). Generic JSON Schema validators are slow on it (about 760 Patients/s with
`jsonschema`) and stop at the first error when compiled, so the few keywords the R4 schema uses
(`$ref type items properties additionalProperties required enum const pattern oneOf`) are
compiled here into closures that walk the instance once and report every problem with its
FHIRPath location; the same walk checks the syntax of literal references (references.py).
`tests/unit/test_schema.py` checks that the verdicts agree with `jsonschema`.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Callable
from decimal import Decimal
from functools import cache
from importlib import resources
from typing import Any

from fhir_server.errors import Issue
from fhir_server.model.references import reference_issue

Check = Callable[[Any, str, list[Issue]], None]

_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float, Decimal)) and not isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
}


@cache
def schema_definitions() -> dict[str, Any]:
    raw = resources.files("fhir_server.model").joinpath("data/fhir.schema.json.gz").read_bytes()
    definitions: dict[str, Any] = json.loads(gzip.decompress(raw))["definitions"]
    return definitions


@cache
def resource_types() -> frozenset[str]:
    """Every R4 resource type, as listed by the schema's ResourceList."""
    refs = schema_definitions()["ResourceList"]["oneOf"]
    return frozenset(ref["$ref"].rsplit("/", 1)[1] for ref in refs)


class _Compiler:
    """Turns schema nodes into checks; definitions are compiled once and shared."""

    def __init__(self, definitions: dict[str, Any]) -> None:
        self.definitions = definitions
        self.compiled: dict[str, Check] = {}

    def definition(self, name: str) -> Check:
        if name not in self.compiled:
            # Recursive types (Extension, Reference...) reach themselves: bind lazily.
            self.compiled[name] = lambda v, p, e: self.compiled[name](v, p, e)
            self.compiled[name] = self.node(self.definitions[name], name)
        return self.compiled[name]

    def node(self, node: dict[str, Any], name: str = "") -> Check:
        if "$ref" in node:
            return self.definition(node["$ref"].rsplit("/", 1)[1])
        if name == "ResourceList" or "oneOf" in node:
            return self.resource_choice()
        checks: list[Check] = []
        if "type" in node:
            checks.append(_type_check(node["type"], name))
        if "const" in node:
            checks.append(_const_check(node["const"]))
        if "enum" in node:
            checks.append(_enum_check(node["enum"]))
        if "pattern" in node and node.get("type") == "string":
            checks.append(_pattern_check(node["pattern"], name))
        if "items" in node:
            checks.append(_items_check(self.node(node["items"])))
        if "properties" in node:
            checks.append(self.object_check(node, name))
        return _all(checks)

    def object_check(self, node: dict[str, Any], name: str) -> Check:
        properties = {key: self.node(sub) for key, sub in node["properties"].items()}
        if name == "Reference":  # literal reference syntax, checked in the same walk
            properties["reference"] = _all([properties["reference"], _reference_check])
        required = tuple(node.get("required", ()))

        def check(value: Any, path: str, errors: list[Issue]) -> None:
            if not isinstance(value, dict):
                return
            for key, item in value.items():
                prop = properties.get(key)
                child = f"{path}.{key.lstrip('_')}"
                if prop is None:
                    errors.append(Issue(f"Unknown element '{key}'", "schema-unknown-element", "structure", child))
                elif item is None:
                    errors.append(Issue(f"Element '{key}' is null", "schema-null", "structure", child))
                else:
                    prop(item, child, errors)
            for key in required:
                if key not in value:
                    errors.append(
                        Issue(f"Missing required element '{key}'", "schema-required", "required", f"{path}.{key}")
                    )

        return check

    def resource_choice(self) -> Check:
        def check(value: Any, path: str, errors: list[Issue]) -> None:
            if not isinstance(value, dict):
                errors.append(Issue("Expected a resource (a JSON object)", "schema-type", "structure", path))
                return
            kind = value.get("resourceType")
            if not isinstance(kind, str) or kind not in resource_types():
                errors.append(Issue(f"Unknown resourceType '{kind}'", "schema-resource-type", "structure", path))
                return
            self.definition(kind)(value, path, errors)

        return check


def _all(checks: list[Check]) -> Check:
    if len(checks) == 1:
        return checks[0]

    def check(value: Any, path: str, errors: list[Issue]) -> None:
        before = len(errors)
        for single in checks:
            single(value, path, errors)
            if len(errors) > before:
                return  # a wrong type makes the remaining checks noise

    return check


def _reference_check(value: Any, path: str, errors: list[Issue]) -> None:
    problem = reference_issue(value, path, resource_types())
    if problem is not None:
        errors.append(problem)


def _type_check(kind: str, name: str) -> Check:
    test = _JSON_TYPES[kind]
    label = name or kind

    def check(value: Any, path: str, errors: list[Issue]) -> None:
        if not test(value):
            errors.append(
                Issue(f"Expected {label} ({kind}) but found {_describe(value)}", "schema-type", "structure", path)
            )

    return check


def _const_check(expected: Any) -> Check:
    def check(value: Any, path: str, errors: list[Issue]) -> None:
        if value != expected:
            errors.append(Issue(f"Expected '{expected}' but found {_describe(value)}", "schema-value", "value", path))

    return check


def _enum_check(allowed: list[Any]) -> Check:
    allowed_set = frozenset(allowed)

    def check(value: Any, path: str, errors: list[Issue]) -> None:
        if isinstance(value, str) and value not in allowed_set:
            options = ", ".join(allowed)
            errors.append(
                Issue(f"'{value}' is not one of the allowed codes: {options}", "schema-code", "code-invalid", path)
            )

    return check


def _pattern_check(pattern: str, name: str) -> Check:
    regex = re.compile(pattern)

    def check(value: Any, path: str, errors: list[Issue]) -> None:
        if isinstance(value, str) and not regex.search(value):
            shown = value if len(value) <= 60 else value[:57] + "..."
            errors.append(Issue(f"'{shown}' is not a valid {name}", "schema-format", "value", path))

    return check


def _items_check(item: Check) -> Check:
    def check(value: Any, path: str, errors: list[Issue]) -> None:
        if isinstance(value, list):
            if not value:
                errors.append(Issue("Arrays must not be empty", "schema-empty-array", "structure", path))
            for index, element in enumerate(value):
                if element is not None:  # nulls are legal fillers in primitive shadow arrays
                    item(element, f"{path}[{index}]", errors)

    return check


def _describe(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float, Decimal)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


@cache
def _compiler() -> _Compiler:
    """Every resource type compiled up front (about 12 ms): compiling lazily while other threads
    validate would let them call a half-built, self-referring check."""
    compiler = _Compiler(schema_definitions())
    for name in sorted(resource_types()):
        compiler.definition(name)
    return compiler


def validate_against_schema(resource: dict[str, Any], resource_type: str) -> list[Issue]:
    """All schema problems of `resource`, read as `resource_type`."""
    errors: list[Issue] = []
    _compiler().definition(resource_type)(resource, resource_type, errors)
    return errors
