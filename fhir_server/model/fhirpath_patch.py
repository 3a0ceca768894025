"""FHIRPath Patch (FHIR R4 fhirpatch.html): apply a `Parameters` patch document to a resource.

Each `operation` parameter carries a `type` (add | insert | delete | replace | move), a FHIRPath
`path` and, depending on the type, `name`, `value`, `index`, `source` and `destination`.
Operations apply in order to a deep copy of the resource; the input is never modified.

Paths are parsed and walked to the locations they select by `fhirpath_locate`. The R4 JSON
Schema supplies element types and cardinalities: whether a property is a list, which JSON
property a typed value goes to (`value` + `valueString` -> `valueString`), and the type of
complex values built from named `part`s.

The patched resource is not validated here; the caller validates it against the schema.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

from fhir_server.errors import Invalid, Issue
from fhir_server.model.fhirpath_locate import (
    Node,
    PatchError,
    Step,
    child_type,
    parse_path,
    properties,
    type_for_suffix,
    walk,
)

ERROR_CODE = "patch-invalid"
OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_REQUIRED = {"add": ("name", "value"), "insert": ("value", "index"), "delete": (), "replace": ("value",)}
_REQUIRED["move"] = ("source", "destination")


@dataclass
class _Operation:
    position: int
    type: str
    path: list[Step] = field(default_factory=list)
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
        except PatchError as exc:
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
        except PatchError as exc:
            issues.append(_issue(str(exc), position))
    if issues:
        raise _invalid(issues)
    return operations


def _read_operation(position: int, entry: Any) -> _Operation:
    if not isinstance(entry, dict) or entry.get("name") != "operation":
        raise PatchError("Every parameter of a FHIRPath Patch must be named 'operation'")
    if not isinstance(entry.get("part"), list):
        raise PatchError("The operation has no parts")
    parts = {p["name"]: p for p in entry["part"] if isinstance(p, dict) and "name" in p}
    kind = parts.get("type", {}).get("valueCode")
    if kind not in OPERATION_TYPES:
        raise PatchError(f"Unknown or missing operation type {kind!r}; expected one of {OPERATION_TYPES}")
    path = parts.get("path", {}).get("valueString")
    if not isinstance(path, str) or not path.strip():
        raise PatchError(f"The {kind} operation has no path")
    steps = parse_path(path)
    for name in _REQUIRED[kind]:
        _check_part(kind, name, parts.get(name))
    return _Operation(position, kind, steps, parts)


def _check_part(kind: str, name: str, part: dict[str, Any] | None) -> None:
    if part is None:
        raise PatchError(f"The {kind} operation has no {name}")
    if name == "name" and not isinstance(part.get("valueString"), str):
        raise PatchError(f"The {kind} operation's name must be a valueString")
    if name in ("index", "source", "destination"):
        number = part.get("valueInteger")
        if not isinstance(number, int) or isinstance(number, bool):
            raise PatchError(f"The {kind} operation's {name} must be a valueInteger")
    if name == "value" and _value_suffix(part) is None and not isinstance(part.get("part"), list):
        raise PatchError(f"The {kind} operation's value has neither a value[x] nor parts")


def _is_list(type_name: str | None, key: str, existing: Any) -> bool:
    props = properties(type_name)
    if props is not None and key in props:
        return bool(props[key].get("type") == "array")
    return isinstance(existing, list)


def _target_key(type_name: str | None, name: str, suffix: str | None) -> str:
    """The JSON property a value for element `name` goes to (choice elements take the suffix)."""
    props = properties(type_name)
    if props is None or name in props:
        return name
    if suffix and name + suffix in props:
        return name + suffix
    if any(k.startswith(name) and k[len(name) : len(name) + 1].isupper() for k in props):
        raise PatchError(f"The value's type {suffix or '(parts)'} is not allowed for {type_name}.{name}[x]")
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
    raise PatchError(f"The part {part.get('name')!r} has neither a value[x] nor parts")


def _build(parts: list[Any], type_name: str | None) -> dict[str, Any]:
    """An object from named parts; repeated names, or list elements, become lists."""
    obj: dict[str, Any] = {}
    for part in parts:
        if not isinstance(part, dict) or not isinstance(part.get("name"), str):
            raise PatchError("Every part of a complex value needs a name")
        suffix = _value_suffix(part)
        key = _target_key(type_name, part["name"], suffix)
        child = _decode(part, child_type(type_name, key) or type_for_suffix(suffix))
        if _is_list(type_name, key, None):
            obj.setdefault(key, []).append(child)
        elif key in obj:
            obj[key] = (obj[key] if isinstance(obj[key], list) else [obj[key]]) + [child]
        else:
            obj[key] = child
    return obj


def _typed_value(op: _Operation, type_name: str | None, key: str) -> Any:
    part = op.parts["value"]
    return _decode(part, child_type(type_name, key) or type_for_suffix(_value_suffix(part)))


def _single(resource: dict[str, Any], op: _Operation) -> Node:
    nodes = walk(resource, op.path)
    if len(nodes) != 1:
        found = "nothing" if not nodes else f"{len(nodes)} elements"
        raise PatchError(f"The {op.type} path must select exactly one element but selected {found}")
    return nodes[0]


def _list_location(resource: dict[str, Any], op: _Operation) -> tuple[Node, str, list[Any]]:
    """The object holding the list a path names, the list's property and the list itself."""
    if op.path[-1].kind != "name":
        raise PatchError(f"The {op.type} path must end with the name of a list element")
    key = op.path[-1].arg
    holder = _single(resource, _Operation(op.position, op.type, op.path[:-1]))
    if not isinstance(holder.value, dict):
        raise PatchError(f"The {op.type} path does not select an element with children")
    items = holder.value.get(key, [])
    if not isinstance(items, list) or not _is_list(holder.type, key, items):
        raise PatchError(f"{holder.type or 'The element'}.{key} is not a list")
    return holder, key, items


def _add(resource: dict[str, Any], op: _Operation) -> None:
    holder = _single(resource, op)
    if not isinstance(holder.value, dict):
        raise PatchError("The add path must select an element that can have children")
    name = op.parts["name"]["valueString"]
    key = _target_key(holder.type, name, _value_suffix(op.parts["value"]))
    value = _typed_value(op, holder.type, key)
    target = holder.value
    if _is_list(holder.type, key, target.get(key)):
        existing = target.setdefault(key, [])
        if not isinstance(existing, list):
            raise PatchError(f"{holder.type}.{key} holds a single value, not a list")
        existing.append(value)
        return
    if key != name:
        _clear_choice(target, name)
    target[key] = value


def _insert(resource: dict[str, Any], op: _Operation) -> None:
    holder, key, items = _list_location(resource, op)
    index = op.integer("index")
    if not 0 <= index <= len(items):
        raise PatchError(f"Insert index {index} is outside 0..{len(items)}")
    holder.value[key] = items
    for seq in _aligned(holder.value, key):
        seq.insert(index, None)
    items[index] = _typed_value(op, holder.type, key)


def _move(resource: dict[str, Any], op: _Operation) -> None:
    holder, key, items = _list_location(resource, op)
    source, destination = op.integer("source"), op.integer("destination")
    for label, index in (("source", source), ("destination", destination)):
        if not 0 <= index < len(items):
            raise PatchError(f"Move {label} index {index} is outside 0..{len(items) - 1}")
    for seq in _aligned(holder.value, key):
        seq.insert(destination, seq.pop(source))


def _replace(resource: dict[str, Any], op: _Operation) -> None:
    node = _single(resource, op)
    if node.parent is None or node.key is None or node.up is None:
        raise PatchError("The replace path must select an element inside the resource")
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
    nodes = walk(resource, op.path)
    if not nodes:
        return
    if len(nodes) > 1:
        raise PatchError(f"The delete path must select at most one element but selected {len(nodes)}")
    node: Node | None = nodes[0]
    if nodes[0].parent is None:
        raise PatchError("The delete path must select an element inside the resource")
    # Remove the element, then any ancestors left empty (FHIR JSON has no empty objects).
    while node is not None and node.parent is not None:
        _remove(node)
        node = node.up
        if node is None or node.value not in ({}, []):
            break


def _remove(node: Node) -> None:
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
