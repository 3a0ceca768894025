"""Value set contents and code system hierarchies, from stored ValueSet and CodeSystem resources
(R4 valueset.html, codesystem.html; used by token `:in`, `:not-in`, `:above`, `:below`,
search.html#token).

Pure functions over the resources' JSON: the store reads the resources (store/compile_terminology.py)
and turns the resulting codes into SQL. Nothing here consults an external terminology server.

- A code system's hierarchy is its nested `concept` tree, plus the `parent` / `child` /
  `subsumedBy` concept properties that point at other codes of the same system. Every kind of
  hierarchy (`hierarchyMeaning`) is read as subsumption.
- A value set's codes are those of its `expansion.contains` (nested `contains` too) when it has
  one. Otherwise its `compose`: each `include` is a set of (system, code) pairs, the union of the
  includes minus the union of the `exclude`s (valueset.html#compose). One include or exclude is
  the explicit `concept` list of its `system`, or the whole system (a stored CodeSystem) narrowed
  by its `filter`s (all of which must hold), intersected with every value set in its `valueSet`.
- Filters: property `concept` (or `code`) with `is-a`, `descendent-of`, `is-not-a`,
  `generalizes`, `=`, `in`, `not-in`; any other property with `=`, `in`, `not-in`, `exists`
  against the concepts' `property` values. `regex` and the rest are refused.
- `include.version` / `compose.inactive` / `lockedDate` are not taken into account.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

Coding = tuple[str | None, str]  # (system, code); system None when the expansion names none
SystemLookup = Callable[[str], "Hierarchy"]
ValueSetLookup = Callable[[str], frozenset[Coding]]

CONCEPT_PROPERTIES = frozenset({"concept", "code"})
_PARENT_PROPERTIES = frozenset({"parent", "subsumedBy"})
_VALUE_KEYS = ("valueCode", "valueString", "valueInteger", "valueDecimal", "valueDateTime")


class Unresolvable(Exception):
    """A value set or hierarchy this server cannot work out; `error_code` says why."""

    def __init__(self, message: str, error_code: str = "search-valueset-unexpandable") -> None:
        super().__init__(message)
        self.message = message
        self.error_code = error_code


@dataclass(frozen=True)
class Hierarchy:
    """The codes of one code system with their subsumption links and property values."""

    url: str
    codes: tuple[str, ...]  # in document order
    parents: Mapping[str, frozenset[str]]
    children: Mapping[str, frozenset[str]]
    properties: Mapping[str, tuple[tuple[str, str], ...]]  # code -> ((property code, value), ...)

    def below(self, code: str, include_self: bool = True) -> set[str]:
        """`code` and every code it subsumes (its descendants)."""
        return _closure(code, self.children, include_self)

    def above(self, code: str, include_self: bool = True) -> set[str]:
        """`code` and every code that subsumes it (its ancestors)."""
        return _closure(code, self.parents, include_self)


def _closure(start: str, links: Mapping[str, frozenset[str]], include_self: bool) -> set[str]:
    found = {start} if include_self else set()
    frontier = [start]
    while frontier:
        for linked in links.get(frontier.pop(), ()):
            if linked not in found and linked != start:
                found.add(linked)
                frontier.append(linked)
    return found


def _property_value(prop: dict[str, Any]) -> str | None:
    for key in _VALUE_KEYS:
        if key in prop:
            return str(prop[key])
    if "valueBoolean" in prop:
        return "true" if prop["valueBoolean"] else "false"
    coding = prop.get("valueCoding")
    if isinstance(coding, dict) and isinstance(coding.get("code"), str):
        return str(coding["code"])
    return None


def _concepts(code_system: dict[str, Any]) -> Iterator[tuple[dict[str, Any], str | None]]:
    """Every concept of the (nested) `concept` tree with the code of its parent concept."""
    stack: list[tuple[Any, str | None]] = [(concept, None) for concept in reversed(code_system.get("concept") or [])]
    while stack:
        concept, parent = stack.pop()
        if not isinstance(concept, dict) or not isinstance(concept.get("code"), str):
            continue
        yield concept, parent
        stack.extend((child, concept["code"]) for child in reversed(concept.get("concept") or []))


def hierarchy(code_system: dict[str, Any]) -> Hierarchy:
    codes: dict[str, None] = {}
    parents: dict[str, set[str]] = {}
    children: dict[str, set[str]] = {}
    properties: dict[str, list[tuple[str, str]]] = {}

    def link(parent: str, child: str) -> None:
        parents.setdefault(child, set()).add(parent)
        children.setdefault(parent, set()).add(child)

    for concept, parent in _concepts(code_system):
        code = concept["code"]
        codes[code] = None
        if parent is not None:
            link(parent, code)
        for prop in concept.get("property") or []:
            if not isinstance(prop, dict) or not isinstance(prop.get("code"), str):
                continue
            value = _property_value(prop)
            if value is None:
                continue
            properties.setdefault(code, []).append((prop["code"], value))
            if prop["code"] in _PARENT_PROPERTIES and "valueCode" in prop:
                link(value, code)
            elif prop["code"] == "child" and "valueCode" in prop:
                link(code, value)
    return Hierarchy(
        url=str(code_system.get("url") or ""),
        codes=tuple(codes),
        parents={code: frozenset(linked) for code, linked in parents.items()},
        children={code: frozenset(linked) for code, linked in children.items()},
        properties={code: tuple(values) for code, values in properties.items()},
    )


# --- value sets ----------------------------------------------------------------------------------


def _flatten(contains: Iterable[Any]) -> Iterator[Coding]:
    stack = list(contains)
    while stack:
        entry = stack.pop()
        if not isinstance(entry, dict):
            continue
        if isinstance(entry.get("code"), str):
            system = entry.get("system")
            yield (system if isinstance(system, str) else None, entry["code"])
        stack.extend(entry.get("contains") or [])


def _expansion(value_set: dict[str, Any]) -> list[Any] | None:
    expansion = value_set.get("expansion")
    if isinstance(expansion, dict) and "contains" in expansion:
        return list(expansion.get("contains") or [])
    return None


def _parts(value_set: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    compose = value_set.get("compose")
    if not isinstance(compose, dict):
        return
    for kind in ("include", "exclude"):
        for part in compose.get(kind) or []:
            if isinstance(part, dict):
                yield kind, part


def references(value_set: dict[str, Any]) -> tuple[set[str], set[str]]:
    """What expanding `value_set` needs read first: (value set canonicals, code system URLs)."""
    value_sets: set[str] = set()
    systems: set[str] = set()
    if _expansion(value_set) is not None:
        return value_sets, systems
    for _, part in _parts(value_set):
        value_sets.update(item for item in part.get("valueSet") or [] if isinstance(item, str))
        system = part.get("system")
        if isinstance(system, str) and (part.get("filter") or not part.get("concept")):
            systems.add(system)
    return value_sets, systems


def value_set_codes(value_set: dict[str, Any], systems: SystemLookup, value_sets: ValueSetLookup) -> frozenset[Coding]:
    """The (system, code) pairs of a value set (module docstring)."""
    contains = _expansion(value_set)
    if contains is not None:
        return frozenset(_flatten(contains))
    included: set[Coding] = set()
    excluded: set[Coding] = set()
    for kind, part in _parts(value_set):
        (included if kind == "include" else excluded).update(_part_codes(part, systems, value_sets))
    return frozenset(included - excluded)


def _part_codes(part: dict[str, Any], systems: SystemLookup, value_sets: ValueSetLookup) -> set[Coding]:
    system = part.get("system")
    result: set[Coding] | None = None
    if isinstance(system, str):
        result = {(system, code) for code in _system_codes(system, part, systems)}
    for canonical in part.get("valueSet") or []:
        if isinstance(canonical, str):
            codes = set(value_sets(canonical))
            result = codes if result is None else result & codes
    return result or set()


def _system_codes(system: str, part: dict[str, Any], systems: SystemLookup) -> set[str]:
    concepts = [c.get("code") for c in part.get("concept") or [] if isinstance(c, dict)]
    filters = [f for f in part.get("filter") or [] if isinstance(f, dict)]
    if concepts and not filters:
        return {code for code in concepts if isinstance(code, str)}
    known = systems(system)
    codes = set(known.codes)
    for rule in filters:
        codes &= _filtered(known, rule)
    if concepts:
        codes &= {code for code in concepts if isinstance(code, str)}
    return codes


def _filtered(known: Hierarchy, rule: dict[str, Any]) -> set[str]:
    prop, op, value = rule.get("property"), rule.get("op"), rule.get("value")
    if not isinstance(prop, str) or not isinstance(op, str) or not isinstance(value, str):
        raise Unresolvable(f"A filter of a value set on {known.url} lacks its property, op or value")
    listed = {item.strip() for item in value.split(",")}
    if prop in CONCEPT_PROPERTIES:
        if op == "is-a":
            return known.below(value)
        if op == "descendent-of":
            return known.below(value, include_self=False)
        if op == "is-not-a":
            return set(known.codes) - known.below(value)
        if op == "generalizes":
            return known.above(value)
        if op == "=":
            return {value}
        if op == "in":
            return listed
        if op == "not-in":
            return set(known.codes) - listed
    else:
        having = {code for code, values in known.properties.items() for name, found in values if name == prop}
        if op == "exists":
            return having if value == "true" else set(known.codes) - having
        matching = {
            code
            for code, values in known.properties.items()
            for name, found in values
            if name == prop and (found == value if op == "=" else found in listed)
        }
        if op in ("=", "in"):
            return matching
        if op == "not-in":
            return set(known.codes) - matching
    raise Unresolvable(f"The value set filter '{prop} {op}' is not supported by this server")
