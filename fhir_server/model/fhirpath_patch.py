"""FHIRPath Patch (FHIR R4 fhirpatch.html): apply a `Parameters` patch document to a resource.

Each `operation` parameter carries a `type` (add | insert | delete | replace | move), a FHIRPath
`path` and, depending on the type, `name`, `value`, `index`, `source` and `destination`.
Operations apply in order to a deep copy of the resource; the input is never modified.

Patching needs the LOCATION of what a path selects (the containing object, the property and the
list index), not only its value, so paths are walked here rather than evaluated by a FHIRPath
engine. The forms that patch documents use are supported: `Type.a.b`, indexers `a[0]`,
`first()`, `last()`, `where(criteria)` (the criteria are evaluated by fhirpathpy on each
candidate) and `ofType(Type)`. Choice elements match by their base name, so `Observation.value`
finds `valueQuantity`. The R4 JSON Schema supplies element types and cardinalities: whether a
property is a list, which JSON property a typed value goes to (`value` + `valueString` ->
`valueString`), and the type of complex values built from named `part`s.

The patched resource is not validated here; the caller validates it against the schema.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import fhirpathpy

from fhir_server.errors import Invalid, Issue
from fhir_server.model.schema import schema_definitions

ERROR_CODE = "patch-invalid"
OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_REQUIRED = {"add": ("name", "value"), "insert": ("value", "index"), "delete": (), "replace": ("value",)}
_REQUIRED["move"] = ("source", "destination")
_IDENT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*|`[^`]+`)")
_INDEX = re.compile(r"\[\s*(\d+)\s*\]")
_TYPE_ARG = re.compile(r"(?:FHIR\.|System\.)?([A-Za-z][A-Za-z0-9_]*)")


class _PatchError(Exception):
    """A problem with one operation; turned into an Issue naming that operation."""


@dataclass(frozen=True)
class _Step:
    kind: str  # name | index | first | last | where | ofType
    arg: Any = None


@dataclass
class _Node:
    """One selected element and where it lives: parent[key] or parent[key][index]."""

    value: Any
    parent: dict[str, Any] | None = None
    key: str | None = None
    index: int | None = None
    type: str | None = None
    name: str | None = None  # the path step that matched (differs from key for choice elements)
    up: _Node | None = None


@dataclass
class _Operation:
    position: int
    type: str
    path: list[_Step] = field(default_factory=list)
    parts: dict[str, dict[str, Any]] = field(default_factory=dict)

    def integer(self, name: str) -> int:
        return int(self.parts[name]["valueInteger"])


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """Return a patched copy of `resource`; raise `Invalid` (patch-invalid) on any problem."""
    if not isinstance(resource, dict):
        raise _invalid([Issue("The resource to patch must be a JSON object", ERROR_CODE)])
    operations = _read_operations(parameters)
    result = copy.deepcopy(resource)
    for op in operations:
        try:
            _APPLY[op.type](result, op)
        except _PatchError as exc:
            raise _invalid([_issue(str(exc), op.position)]) from None
    return result


def _issue(message: str, position: int) -> Issue:
    return Issue(message, ERROR_CODE, expression=f"Parameters.parameter[{position}]")


def _invalid(issues: list[Issue]) -> Invalid:
    detail = "; ".join(i.message for i in issues)
    return Invalid(f"Invalid FHIRPath Patch: {detail}", ERROR_CODE, issues=issues)


def _read_operations(parameters: Any) -> list[_Operation]:
    if not isinstance(parameters, dict) or parameters.get("resourceType") != "Parameters":
        raise _invalid([Issue("A FHIRPath Patch document must be a Parameters resource", ERROR_CODE)])
    entries = parameters.get("parameter", [])
    if not isinstance(entries, list):
        raise _invalid([Issue("Parameters.parameter must be a list", ERROR_CODE, expression="Parameters")])
    operations, issues = [], []
    for position, entry in enumerate(entries):
        try:
            operations.append(_read_operation(position, entry))
        except _PatchError as exc:
            issues.append(_issue(str(exc), position))
    if issues:
        raise _invalid(issues)
    return operations


def _read_operation(position: int, entry: Any) -> _Operation:
    if not isinstance(entry, dict) or entry.get("name") != "operation":
        raise _PatchError("Every parameter of a FHIRPath Patch must be named 'operation'")
    if not isinstance(entry.get("part"), list):
        raise _PatchError("The operation has no parts")
    parts = {p["name"]: p for p in entry["part"] if isinstance(p, dict) and "name" in p}
    kind = parts.get("type", {}).get("valueCode")
    if kind not in OPERATION_TYPES:
        raise _PatchError(f"Unknown or missing operation type {kind!r}; expected one of {OPERATION_TYPES}")
    path = parts.get("path", {}).get("valueString")
    if not isinstance(path, str) or not path.strip():
        raise _PatchError(f"The {kind} operation has no path")
    steps = _parse_path(path)
    for name in _REQUIRED[kind]:
        _check_part(kind, name, parts.get(name))
    return _Operation(position, kind, steps, parts)


def _check_part(kind: str, name: str, part: dict[str, Any] | None) -> None:
    if part is None:
        raise _PatchError(f"The {kind} operation has no {name}")
    if name == "name" and not isinstance(part.get("valueString"), str):
        raise _PatchError(f"The {kind} operation's name must be a valueString")
    if name in ("index", "source", "destination"):
        number = part.get("valueInteger")
        if not isinstance(number, int) or isinstance(number, bool):
            raise _PatchError(f"The {kind} operation's {name} must be a valueInteger")
    if name == "value" and _value_suffix(part) is None and not isinstance(part.get("part"), list):
        raise _PatchError(f"The {kind} operation's value has neither a value[x] nor parts")


def _parse_path(text: str) -> list[_Step]:
    steps: list[_Step] = []
    pos, end = 0, len(text.rstrip())
    while True:
        match = _IDENT.match(text, pos)
        if not match:
            raise _PatchError(f"Cannot parse path {text!r} at character {pos}")
        ident, pos = match.group(1).strip("`"), match.end()
        if pos < end and text[pos] == "(":
            close = _closing_paren(text, pos)
            steps.append(_function(ident, text[pos + 1 : close].strip()))
            pos = close + 1
        else:
            steps.append(_Step("name", ident))
        while (index := _INDEX.match(text, pos)) is not None:
            steps.append(_Step("index", int(index.group(1))))
            pos = index.end()
        while pos < end and text[pos].isspace():
            pos += 1
        if pos >= end:
            return steps
        if text[pos] != ".":
            raise _PatchError(f"Cannot parse path {text!r} at character {pos}")
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
    raise _PatchError(f"Unbalanced parentheses in path {text!r}")


def _function(name: str, arg: str) -> _Step:
    if name in ("first", "last") and not arg:
        return _Step(name)
    if name == "where" and arg:
        _criteria(arg)  # reject unparseable criteria before any operation runs
        return _Step("where", arg)
    if name == "ofType" and (match := _TYPE_ARG.fullmatch(arg)):
        return _Step("ofType", match.group(1))
    if name in ("first", "last", "where", "ofType"):
        raise _PatchError(f"Invalid argument {arg!r} for {name}()")
    raise _PatchError(f"The function {name}() is not supported in patch paths")


@lru_cache(maxsize=256)
def _criteria(text: str) -> Any:
    try:
        return fhirpathpy.compile(text)
    except Exception as exc:  # fhirpathpy raises plain Exceptions for syntax errors
        raise _PatchError(f"Cannot parse where() criteria {text!r}: {exc}") from None


def _walk(resource: dict[str, Any], steps: list[_Step]) -> list[_Node]:
    root = _Node(resource, type=resource.get("resourceType"))
    if steps and steps[0].kind == "name" and steps[0].arg[:1].isupper():
        if steps[0].arg not in (root.type, "Resource", "DomainResource"):
            return []
        steps = steps[1:]
    nodes = [root]
    for step in steps:
        nodes = _apply_step(nodes, step, resource)
    return nodes


def _apply_step(nodes: list[_Node], step: _Step, resource: dict[str, Any]) -> list[_Node]:
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


def _matches(node: _Node, criteria: str, resource: dict[str, Any]) -> bool:
    try:
        result: list[Any] = _criteria(criteria)(node.value, {"resource": resource, "rootResource": resource})
    except Exception as exc:  # an evaluation error in user-supplied criteria
        raise _PatchError(f"Cannot evaluate where() criteria {criteria!r}: {exc}") from None
    return result == [True]


def _children(node: _Node, name: str) -> list[_Node]:
    if not isinstance(node.value, dict):
        return []
    found = []
    for key in _matching_keys(node.value, node.type, name):
        value = node.value[key]
        suffix_type = _suffix_type(key[len(name) :]) if key != name else None
        items = enumerate(value) if isinstance(value, list) else [(None, value)]
        for index, item in items:
            kind = _child_type(node.type, key, item) or suffix_type
            found.append(_Node(item, node.value, key, index, kind, name, node))
    return found


def _matching_keys(obj: dict[str, Any], type_name: str | None, name: str) -> list[str]:
    if name in obj:
        return [name]
    props = _props(type_name)
    keys = [k for k in obj if k.startswith(name) and k[len(name) : len(name) + 1].isupper()]
    if props is not None:
        return [k for k in keys if k in props and name not in props]
    return [k for k in keys if _suffix_type(k[len(name) :])]


def _props(type_name: str | None) -> dict[str, Any] | None:
    definition = schema_definitions().get(type_name) if type_name else None
    return definition.get("properties") if isinstance(definition, dict) else None


def _type_of_resource(value: Any) -> str | None:
    return value.get("resourceType") if isinstance(value, dict) else None


def _child_type(type_name: str | None, key: str, value: Any = None) -> str | None:
    prop = (_props(type_name) or {}).get(key, {})
    ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
    if ref:
        name: str = ref.rsplit("/", 1)[1]
        return _type_of_resource(value) if name == "ResourceList" else name
    return "code" if "enum" in prop else None


def _suffix_type(suffix: str | None) -> str | None:
    """The FHIR type named by a value[x] suffix: 'Quantity' -> Quantity, 'DateTime' -> dateTime."""
    if not suffix:
        return None
    definitions = schema_definitions()
    primitive = suffix[0].lower() + suffix[1:]
    return suffix if suffix in definitions else primitive if primitive in definitions else None


def _is_list(type_name: str | None, key: str, existing: Any) -> bool:
    props = _props(type_name)
    if props is not None and key in props:
        return bool(props[key].get("type") == "array")
    return isinstance(existing, list)


def _target_key(type_name: str | None, name: str, suffix: str | None) -> str:
    """The JSON property a value for element `name` goes to (choice elements take the suffix)."""
    props = _props(type_name)
    if props is None or name in props:
        return name
    if suffix and name + suffix in props:
        return name + suffix
    if any(k.startswith(name) and k[len(name) : len(name) + 1].isupper() for k in props):
        raise _PatchError(f"The value's type {suffix or '(parts)'} is not allowed for {type_name}.{name}[x]")
    return name


def _value_suffix(part: dict[str, Any]) -> str | None:
    for key in part:
        if key.startswith("value") and key[5:6].isupper():
            return key[5:]
    return None


def _decode(part: dict[str, Any], type_name: str | None) -> Any:
    suffix = _value_suffix(part)
    if suffix is not None:
        return copy.deepcopy(part["value" + suffix])
    if isinstance(part.get("part"), list):
        return _build(part["part"], type_name)
    raise _PatchError(f"The part {part.get('name')!r} has neither a value[x] nor parts")


def _build(parts: list[Any], type_name: str | None) -> dict[str, Any]:
    """An object from named parts; repeated names, or list elements, become lists."""
    obj: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise _PatchError("Every part of a complex value needs a name")
        suffix = _value_suffix(part)
        key = _target_key(type_name, part["name"], suffix)
        child = _decode(part, _child_type(type_name, key) or _suffix_type(suffix))
        if _is_list(type_name, key, None):
            obj.setdefault(key, []).append(child)
        elif key in obj:
            obj[key] = (obj[key] if isinstance(obj[key], list) else [obj[key]]) + [child]
        else:
            obj[key] = child
    return obj


def _typed_value(op: _Operation, type_name: str | None, key: str) -> Any:
    part = op.parts["value"]
    return _decode(part, _child_type(type_name, key) or _suffix_type(_value_suffix(part)))


def _single(resource: dict[str, Any], op: _Operation) -> _Node:
    nodes = _walk(resource, op.path)
    if len(nodes) != 1:
        found = "nothing" if not nodes else f"{len(nodes)} elements"
        raise _PatchError(f"The {op.type} path must select exactly one element but selected {found}")
    return nodes[0]


def _list_location(resource: dict[str, Any], op: _Operation) -> tuple[_Node, str, list[Any]]:
    """The object holding the list a path names, the list's property and the list itself."""
    if op.path[-1].kind != "name":
        raise _PatchError(f"The {op.type} path must end with the name of a list element")
    key = op.path[-1].arg
    holder = _single(resource, _Operation(op.position, op.type, op.path[:-1]))
    if not isinstance(holder.value, dict):
        raise _PatchError(f"The {op.type} path does not select an element with children")
    items = holder.value.get(key, [])
    if not isinstance(items, list) or not _is_list(holder.type, key, items):
        raise _PatchError(f"{holder.type or 'The element'}.{key} is not a list")
    return holder, key, items


def _add(resource: dict[str, Any], op: _Operation) -> None:
    holder = _single(resource, op)
    if not isinstance(holder.value, dict):
        raise _PatchError("The add path must select an element that can have children")
    name = op.parts["name"]["valueString"]
    key = _target_key(holder.type, name, _value_suffix(op.parts["value"]))
    value = _typed_value(op, holder.type, key)
    target = holder.value
    if _is_list(holder.type, key, target.get(key)):
        existing = target.setdefault(key, [])
        if not isinstance(existing, list):
            raise _PatchError(f"{holder.type}.{key} holds a single value, not a list")
        existing.append(value)
        return
    if key != name:
        _clear_choice(target, name)
    target[key] = value


def _insert(resource: dict[str, Any], op: _Operation) -> None:
    holder, key, items = _list_location(resource, op)
    index = op.integer("index")
    if not 0 <= index <= len(items):
        raise _PatchError(f"Insert index {index} is outside 0..{len(items)}")
    holder.value[key] = items
    for seq in _aligned(holder.value, key):
        seq.insert(index, None)
    items[index] = _typed_value(op, holder.type, key)


def _move(resource: dict[str, Any], op: _Operation) -> None:
    holder, key, items = _list_location(resource, op)
    source, destination = op.integer("source"), op.integer("destination")
    for label, index in (("source", source), ("destination", destination)):
        if not 0 <= index < len(items):
            raise _PatchError(f"Move {label} index {index} is outside 0..{len(items) - 1}")
    for seq in _aligned(holder.value, key):
        seq.insert(destination, seq.pop(source))


def _replace(resource: dict[str, Any], op: _Operation) -> None:
    node = _single(resource, op)
    if node.parent is None or node.key is None or node.up is None:
        raise _PatchError("The replace path must select an element inside the resource")
    key = node.key
    suffix = _value_suffix(op.parts["value"])
    if key != node.name and suffix:  # a choice element: the new value's type picks the property
        key = _target_key(node.up.type, node.name or key, suffix)
    value = _typed_value(op, node.up.type, key)
    if node.index is not None:
        node.parent[key][node.index] = value
        return
    if key != node.key:
        node.parent.pop(node.key)
        node.parent.pop("_" + node.key, None)
    node.parent[key] = value


def _delete(resource: dict[str, Any], op: _Operation) -> None:
    nodes = _walk(resource, op.path)
    if not nodes:
        return
    if len(nodes) > 1:
        raise _PatchError(f"The delete path must select at most one element but selected {len(nodes)}")
    node: _Node | None = nodes[0]
    if nodes[0].parent is None:
        raise _PatchError("The delete path must select an element inside the resource")
    # Remove the element, then any ancestors left empty (FHIR JSON has no empty objects).
    while node is not None and node.parent is not None:
        _remove(node)
        node = node.up
        if node is None or node.value not in ({}, []):
            break


def _remove(node: _Node) -> None:
    assert node.parent is not None and node.key is not None
    parent, key = node.parent, node.key
    if node.index is None:
        parent.pop(key, None)
        parent.pop("_" + key, None)
        return
    items = parent[key]
    for seq in _aligned(parent, key):
        del seq[node.index]
    if not items:
        parent.pop(key)
        parent.pop("_" + key, None)


def _aligned(obj: dict[str, Any], key: str) -> list[list[Any]]:
    """A list property and, when present, its parallel `_key` list of primitive extensions."""
    items, extensions = obj[key], obj.get("_" + key)
    return [items, extensions] if isinstance(extensions, list) and len(extensions) == len(items) else [items]


def _clear_choice(obj: dict[str, Any], name: str) -> None:
    """Drop every existing variant of choice element `name` (valueQuantity, _valueString...)."""
    for key in list(obj):
        base = key.lstrip("_")
        if base.startswith(name) and base[len(name) : len(name) + 1].isupper():
            del obj[key]


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}
