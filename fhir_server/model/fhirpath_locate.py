"""Where a FHIRPath Patch path points (hl7.org/fhir/R4/fhirpatch.html; FHIRPath: hl7.org/fhirpath).

Patching needs the LOCATION of what a path selects (the containing object, the property and the
list index), not only its value, so paths are walked here rather than evaluated by a FHIRPath
engine. The forms that patch documents use are supported: `Type.a.b`, indexers `a[0]`,
`first()`, `last()`, `where(criteria)` (the criteria are evaluated by fhirpathpy on each
candidate) and `ofType(Type)`. Choice elements match by their base name, so `Observation.value`
finds `valueQuantity`. Element types come from the R4 JSON Schema.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import fhirpathpy

from fhir_server.model.schema import schema_definitions

_IDENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|`[^`]+`)")
_INDEX = re.compile(r"\[\s*(\d+)\s*\]")
_TYPE_ARG = re.compile(r"(?:FHIR\.|System\.)?([A-Za-z][A-Za-z0-9_]*)")


class PatchError(Exception):
    """A problem with one operation; turned into an Issue naming that operation."""


@dataclass(frozen=True)
class Step:
    kind: str  # name | index | first | last | where | ofType
    arg: Any = None


@dataclass
class Node:
    """One selected element and where it lives: parent[key] or parent[key][index]."""

    value: Any
    parent: dict[str, Any] | None = None
    key: str | None = None
    index: int | None = None
    type: str | None = None
    name: str | None = None  # the path step that matched (differs from key for choice elements)
    up: Node | None = None


def parse_path(text: str) -> list[Step]:
    steps: list[Step] = []
    pos, end = 0, len(text.rstrip())
    while True:
        match = _IDENT.match(text, pos)
        if not match:
            raise PatchError(f"Cannot parse path {text!r} at character {pos}")
        ident, pos = match.group(1).strip("`"), match.end()
        if pos < end and text[pos] == "(":
            close = _closing_paren(text, pos)
            steps.append(_function(ident, text[pos + 1 : close].strip()))
            pos = close + 1
        else:
            steps.append(Step("name", ident))
        while (index := _INDEX.match(text, pos)) is not None:
            steps.append(Step("index", int(index.group(1))))
            pos = index.end()
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            return steps
        if text[pos] != ".":
            raise PatchError(f"Cannot parse path {text!r} at character {pos}")
        pos += 1


def _closing_paren(text: str, start: int) -> int:
    depth, quote, pos = 0, None, start
    while pos < len(text):
        char = text[pos]
        if quote and char == "\\":
            pos += 1  # skip the escaped character
        elif quote:
            quote = None if char == quote else quote
        elif char in "'`\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return pos
        pos += 1
    raise PatchError(f"Unbalanced parentheses in path {text!r}")


def _function(name: str, arg: str) -> Step:
    if name in ("first", "last") and not arg:
        return Step(name)
    if name == "where" and arg:
        _criteria(arg)  # reject unparseable criteria before any operation runs
        return Step("where", arg)
    if name == "ofType" and (match := _TYPE_ARG.fullmatch(arg)):
        return Step("ofType", match.group(1))
    if name in ("first", "last", "where", "ofType"):
        raise PatchError(f"Invalid argument {arg!r} for {name}()")
    raise PatchError(f"The function {name}() is not supported in patch paths")


@lru_cache(maxsize=256)
def _criteria(text: str) -> Any:
    try:
        return fhirpathpy.compile(text)
    except Exception as exc:  # fhirpathpy raises plain Exceptions for syntax errors
        raise PatchError(f"Cannot parse where() criteria {text!r}: {exc}") from None


def walk(resource: dict[str, Any], steps: list[Step]) -> list[Node]:
    root = Node(resource, type=resource.get("resourceType"))
    if steps and steps[0].kind == "name" and steps[0].arg[:1].isupper():
        if steps[0].arg not in (root.type, "Resource", "DomainResource"):
            return []
        steps = steps[1:]
    nodes = [root]
    for step in steps:
        nodes = _apply_step(nodes, step, resource)
    return nodes


def _apply_step(nodes: list[Node], step: Step, resource: dict[str, Any]) -> list[Node]:
    if step.kind == "name":
        return [child for node in nodes for child in _children(node, step.arg)]
    if step.kind == "index":
        return nodes[step.arg : step.arg + 1]
    if step.kind == "first":
        return nodes[:1]
    if step.kind == "last":
        return nodes[-1:]
    if step.kind == "ofType":
        return [n for n in nodes if step.arg in (n.type, _type_of_resource(n.value))]
    return [n for n in nodes if _matches(n, step.arg, resource)]


def _matches(node: Node, criteria: str, resource: dict[str, Any]) -> bool:
    try:
        result: list[Any] = _criteria(criteria)(node.value, {"resource": resource, "rootResource": resource})
    except Exception as exc:  # an evaluation error in user-supplied criteria
        raise PatchError(f"Cannot evaluate where() criteria {criteria!r}: {exc}") from None
    return result == [True]


def _children(node: Node, name: str) -> list[Node]:
    if not isinstance(node.value, dict):
        return []
    found = []
    for key in _matching_keys(node.value, node.type, name):
        value = node.value[key]
        suffix_type = type_for_suffix(key[len(name) :]) if key != name else None
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            kind = child_type(node.type, key, item) or suffix_type
            found.append(Node(item, node.value, key, index, kind, name, node))
    return found


def _matching_keys(obj: dict[str, Any], type_name: str | None, name: str) -> list[str]:
    if name in obj:
        return [name]
    props = properties(type_name)
    keys = [k for k in obj if k.startswith(name) and k[len(name) : len(name) + 1].isupper()]
    if props is not None:
        return [k for k in keys if k in props and name not in props]
    return [k for k in keys if type_for_suffix(k[len(name) :])]


def properties(type_name: str | None) -> dict[str, Any] | None:
    definition = schema_definitions().get(type_name) if type_name else None
    return definition.get("properties") if isinstance(definition, dict) else None


def _type_of_resource(value: Any) -> str | None:
    return value.get("resourceType") if isinstance(value, dict) else None


def child_type(type_name: str | None, key: str, value: Any = None) -> str | None:
    prop = (properties(type_name) or {}).get(key, {})
    ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
    if ref:
        name: str = ref.rsplit("/", 1)[1]
        return _type_of_resource(value) if name == "ResourceList" else name
    return "code" if "enum" in prop else None


def type_for_suffix(suffix: str | None) -> str | None:
    """The FHIR type named by a value[x] suffix: 'Quantity' -> Quantity, 'DateTime' -> dateTime."""
    if not suffix:
        return None
    definitions = schema_definitions()
    primitive = suffix[0].lower() + suffix[1:]
    return suffix if suffix in definitions else primitive if primitive in definitions else None
