"""Search parameter expressions compiled into Python functions over parsed JSON (R4 fhirpath.html).

Evaluating the official expressions with a general FHIRPath engine on every write is slow, and
nearly all of them are plain paths, unions, type casts and simple `where` filters
(fhirpath_parse.py). Those are compiled here into closures that walk the resource's dicts and
lists directly. Every value carries its FHIR type (`Quantity`, `date`, `Patient.contact` for a
backbone element), taken from the element definitions (model/definitions.py), so that
choice elements can be followed (`Observation.value as Quantity` reads `valueQuantity`) and the
index conversion knows what it is looking at.

Semantics follow fhirpath.html, with two deliberate choices:
- `x as T` on a collection of several items keeps those of type T (as `ofType(T)` does) instead
  of being an error; R4 expressions such as `(Observation.component.value as Quantity)` rely on it.
- `resolve()` does not fetch anything: a relative or absolute literal reference yields a stub of
  the type its URL names, a `#id` reference the contained resource, anything else nothing. That
  is all `where(resolve() is Patient)` needs.

Expressions outside the subset fall back to fhirpathpy with the R4 model (`fallback`).
"""

from __future__ import annotations

from collections.abc import Callable
from contextvars import ContextVar
from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
from fhirpathpy.engine.nodes import ResourceNode
from fhirpathpy.models import models

from fhir_server.model.definitions import elements
from fhir_server.model.schema import resource_types
from fhir_server.search.fhirpath_parse import (
    Binary,
    Call,
    Index,
    Literal,
    Member,
    Node,
    This,
    TypeOp,
    Unsupported,
    parse,
)
from fhir_server.search.normalize import split_reference

Item = tuple[Any, str]  # a value and its FHIR type (a backbone element's path for backbone elements)
Step = Callable[[list[Item], dict[str, Any]], list[Item]]  # (focus, root resource) -> result
Extractor = Callable[[dict[str, Any]], list[Item]]

_ROOT: ContextVar[dict[str, Any]] = ContextVar("fhirpath_root")

# Specialisations among data types (R4 datatypes.html) and resources, child -> parent.
_PARENTS = {
    "Age": "Quantity",
    "Count": "Quantity",
    "Distance": "Quantity",
    "Duration": "Quantity",
    "MoneyQuantity": "Quantity",
    "SimpleQuantity": "Quantity",
    "code": "string",
    "id": "string",
    "markdown": "string",
    "canonical": "uri",
    "oid": "uri",
    "url": "uri",
    "uuid": "uri",
    "positiveInt": "integer",
    "unsignedInt": "integer",
    "DomainResource": "Resource",
    "Binary": "Resource",
    "Bundle": "Resource",
    "Parameters": "Resource",
}


def _parent(name: str) -> str | None:
    if name in _PARENTS:
        return _PARENTS[name]
    return "DomainResource" if name in resource_types() else None


@cache
def is_a(type_key: str, target: str) -> bool:
    """Whether a value of `type_key` is a `target` (its type or one of its base types)."""
    name: str | None = "BackboneElement" if "." in type_key else type_key
    while name:
        if name == target:
            return True
        name = _parent(name)
    return False


@cache
def _children(type_key: str, name: str, narrow: str | None) -> tuple[tuple[str, str | None], ...]:
    """(JSON property, child type key or None for a contained resource) of element `name`,
    every expansion of a choice element, optionally only those of type `narrow`."""
    try:
        table = elements(type_key)
    except KeyError:
        return ()
    infos = [table[name]] if name in table else [info for info in table.values() if info.choice == name]
    found = [(info.name, None if info.type_code == "Resource" else info.children_key) for info in infos]
    if narrow is not None:
        found = [(key, child) for key, child in found if child is None or is_a(child, narrow)]
    return tuple(found)


def _kind(value: Any) -> str:
    kind = value.get("resourceType") if isinstance(value, dict) else None
    return kind if isinstance(kind, str) else "Resource"


def _member(name: str, narrow: str | None = None) -> Step:
    def step(focus: list[Item], root: dict[str, Any]) -> list[Item]:
        out: list[Item] = []
        for value, type_key in focus:
            if type(value) is not dict:
                continue
            for key, child in _children(type_key, name, narrow):
                found = value.get(key)
                if found is None:
                    continue
                if child is None:
                    out.extend(_resources(found, narrow))
                elif type(found) is list:
                    out.extend((each, child) for each in found if each is not None)
                else:
                    out.append((found, child))
        return out

    return step


def _resources(found: Any, narrow: str | None) -> list[Item]:
    """Contained resources (elements of type Resource), typed by their resourceType."""
    items = [(each, _kind(each)) for each in (found if isinstance(found, list) else (found,)) if each is not None]
    return items if narrow is None else [item for item in items if is_a(item[1], narrow)]


def _then(first: Step, second: Step) -> Step:
    return lambda focus, root: second(first(focus, root), root)


def _identity(focus: list[Item], root: dict[str, Any]) -> list[Item]:
    return focus


def _type_filter(target: str) -> Step:
    return lambda focus, root: [item for item in focus if is_a(item[1], target)]


def _is_type_name(name: str) -> bool:
    return name[:1].isupper() and (name in resource_types() or name in ("Resource", "DomainResource"))


def _compile(node: Node) -> Step:
    if isinstance(node, Member):
        if node.base is None and _is_type_name(node.name):
            return _type_filter(node.name)
        step = _member(node.name)
        return step if node.base is None else _then(_compile(node.base), step)
    if isinstance(node, TypeOp):
        return (
            _cast(node.operand, node.type_name)
            if node.operator == "as"
            else _is(_compile(node.operand), node.type_name)
        )
    if isinstance(node, Call):
        return _call(node)
    if isinstance(node, Index):
        base, index = _compile(node.base), node.index
        return lambda focus, root: base(focus, root)[index : index + 1]
    if isinstance(node, Binary):
        return _binary(node)
    if isinstance(node, Literal):
        item = (node.value, node.type_name)
        return lambda focus, root: [item]
    if isinstance(node, This):
        return _identity
    raise Unsupported(repr(node))


def _cast(operand: Node | None, target: str) -> Step:
    """`x as T` / `x.ofType(T)`; on a path step the cast picks the choice properties directly."""
    if isinstance(operand, Member) and not (operand.base is None and _is_type_name(operand.name)):
        step = _member(operand.name, narrow=target)
        return step if operand.base is None else _then(_compile(operand.base), step)
    return _then(_compile(operand) if operand is not None else _identity, _type_filter(target))


def _is(operand: Step, target: str) -> Step:
    def step(focus: list[Item], root: dict[str, Any]) -> list[Item]:
        found = operand(focus, root)
        return [(is_a(found[0][1], target), "boolean")] if len(found) == 1 else []

    return step


def _call(node: Call) -> Step:
    base = _compile(node.base) if node.base is not None else _identity
    if node.function in ("as", "ofType") and len(node.args) == 1 and isinstance(node.args[0], Literal):
        return _cast(node.base, str(node.args[0].value))
    if node.function == "is" and len(node.args) == 1 and isinstance(node.args[0], Literal):
        return _is(base, str(node.args[0].value))
    if node.function == "where" and len(node.args) == 1:
        criterion = _compile(node.args[0])
        return lambda focus, root: [item for item in base(focus, root) if _truth(criterion([item], root)) is True]
    if node.function == "exists" and not node.args:
        return lambda focus, root: [(bool(base(focus, root)), "boolean")]
    if node.function == "resolve" and not node.args:
        return lambda focus, root: [found for item in base(focus, root) for found in resolve(item, root)]
    raise Unsupported(f"function {node.function}()")


def _binary(node: Binary) -> Step:
    left, right = _compile(node.left), _compile(node.right)
    if node.operator == "|":
        return lambda focus, root: distinct(left(focus, root) + right(focus, root))
    if node.operator == "and":

        def conjunction(focus: list[Item], root: dict[str, Any]) -> list[Item]:
            a, b = _truth(left(focus, root)), _truth(right(focus, root))
            if a is False or b is False:
                return [(False, "boolean")]
            return [(True, "boolean")] if a is True and b is True else []

        return conjunction
    negate = node.operator == "!="

    def equality(focus: list[Item], root: dict[str, Any]) -> list[Item]:
        a, b = left(focus, root), right(focus, root)
        if not a or not b:
            return []
        same = len(a) == len(b) and all(equal(x[0], y[0]) for x, y in zip(a, b, strict=True))
        return [(same != negate, "boolean")]

    return equality


def _truth(result: list[Item]) -> bool | None:
    """Singleton evaluation of a collection as a boolean (fhirpath.html#singleton): empty is
    unknown, a single boolean is itself, any other single item is true."""
    if len(result) != 1:
        return None
    value = result[0][0]
    return value if isinstance(value, bool) else True


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, str) != isinstance(b, str):
        return False
    return bool(a == b)


def _key(value: Any) -> Any:
    if isinstance(value, dict):
        return ("o", tuple(sorted((k, _key(v)) for k, v in value.items())))
    if isinstance(value, list):
        return ("l", tuple(_key(v) for v in value))
    if isinstance(value, bool):
        return ("b", value)
    if isinstance(value, Decimal):
        return ("d", str(value))  # 1.0 and 1.00 stay apart, as they do in fhirpathpy
    if isinstance(value, (int, float)):
        return ("n", value)
    return ("s", value)


def distinct(items: list[Item]) -> list[Item]:
    """A union's result: each value once (fhirpath.html#union), first occurrence kept."""
    seen: set[Any] = set()
    out: list[Item] = []
    for item in items:
        key = _key(item[0])
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def resolve(item: Item, root: dict[str, Any]) -> list[Item]:
    """What `resolve()` can know without fetching: the type a literal reference names."""
    value = item[0]
    reference = value.get("reference") if isinstance(value, dict) else None
    if not isinstance(reference, str):
        return []
    if reference.startswith("#"):
        if reference == "#":
            return [(root, _kind(root))]
        contained = [r for r in root.get("contained") or () if isinstance(r, dict) and r.get("id") == reference[1:]]
        return [(resource, _kind(resource)) for resource in contained[:1]]
    parts = split_reference(reference)
    return [({"resourceType": parts[0]}, parts[0])] if parts else []


def compile_expression(expression: str) -> Extractor:
    """The compiled form of `expression`, evaluated against a whole resource; raises Unsupported."""
    step = _compile(parse(expression))

    def extract(resource: dict[str, Any]) -> list[Item]:
        return step([(resource, _kind(resource))], resource)

    return extract


RelativeExtractor = Callable[[Item, dict[str, Any]], list[Item]]
"""An expression evaluated on one element (an item), with the resource that holds it."""

_RESOURCE_VARIABLE = "%resource."


def compile_relative(expression: str) -> RelativeExtractor:
    """A composite component's expression, relative to the element the composite selects (R4
    searchparameter.html: SearchParameter.component.expression). `%resource.path` reads `path`
    from the whole resource (fhirpath.html#environment-variables); outside the subset, fhirpathpy
    on the element (whose values then carry the types their shape suggests)."""
    if expression.startswith(_RESOURCE_VARIABLE):
        step = _compile(parse(expression[len(_RESOURCE_VARIABLE) :]))
        return lambda item, root: step([(root, _kind(root))], root)
    try:
        relative = _compile(parse(expression))
    except Unsupported:
        return _relative_fallback(expression)
    return lambda item, root: relative([item], root)


def _relative_fallback(expression: str) -> RelativeExtractor:
    path = fhirpathpy.compile(expression, models["r4"], options={"returnRawData": True})

    def extract(item: Item, root: dict[str, Any]) -> list[Item]:
        return [_typed(node) for node in path(item[0], {"resource": root})]

    return extract


def fallback(expression: str) -> Extractor:
    """fhirpathpy with the R4 model and the same `resolve()`, for expressions outside the subset."""

    def resolve_nodes(inputs: list[Any]) -> list[Any]:
        root = _ROOT.get()
        found = [item for value in inputs for item in resolve((value, "Reference"), root)]
        return [ResourceNode.create_node(value, kind) for value, kind in found]

    table = {"resolve": {"fn": resolve_nodes, "arity": {0: []}}}
    path = fhirpathpy.compile(expression, models["r4"], options={"returnRawData": True, "userInvocationTable": table})

    def extract(resource: dict[str, Any]) -> list[Item]:
        token = _ROOT.set(resource)  # user functions see bare values: the root travels aside
        try:
            return [_typed(node) for node in path(resource, None)]
        finally:
            _ROOT.reset(token)

    return extract


def _typed(node: Any) -> Item:
    if isinstance(node, ResourceNode):
        value, path = node.data, node.path
        if isinstance(path, str) and not path.startswith("System."):
            return value, path
        return value, guess_type(value)
    return node, guess_type(node)


def guess_type(value: Any) -> str:
    """A value's type from its shape, for fallback results that lost their type."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, (Decimal, float)):
        return "decimal"
    if not isinstance(value, dict):
        return "string"
    if "resourceType" in value:
        return _kind(value)
    if isinstance(value.get("value"), (int, Decimal, float)):
        return "Quantity"
    for keys, name in _SHAPES:
        if keys & value.keys():
            return name
    return "Element"


_SHAPES = (
    ({"reference"}, "Reference"),
    ({"coding"}, "CodeableConcept"),
    ({"family", "given", "prefix", "suffix"}, "HumanName"),
    ({"line", "city", "district", "state", "postalCode", "country"}, "Address"),
    ({"start", "end"}, "Period"),
    ({"currency"}, "Money"),
    ({"low", "high"}, "Range"),
    ({"event", "repeat"}, "Timing"),
    ({"unit", "comparator"}, "Quantity"),
    ({"code"}, "Coding"),
    ({"value"}, "Identifier"),
    ({"text"}, "CodeableConcept"),
)
