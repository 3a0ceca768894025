"""The search parameters of every resource type, from the official R4 definitions.

R4 searchparameter.html: each SearchParameter names its `base` types and a FHIRPath `expression`
that may cover several bases at once (`Patient.birthDate | Person.birthDate`). The registry
hands out, per resource type, one `SearchParam` per code with the expression narrowed to the
parts that apply to that type. The parameters defined on Resource (`_id`, `_lastUpdated`,
`_tag`, `_profile`, `_security`, `_source`, ...) and DomainResource (`_text`) apply to every
type (R4 search.html#all). `compartment_params` reads the Patient CompartmentDefinition
(R4 compartmentdefinition.html).

The definitions ship gzipped in data/: `search-parameters.json.gz` is the official
`search-parameters.json` Bundle (1375 entries), `compartmentdefinition-patient.json.gz` the
official Patient CompartmentDefinition, both byte for byte before compression.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import cache, lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Any

from fhir_server.model.schema import resource_types
from fhir_server.search.params import Component, SearchParam

# Types that derive from Resource directly rather than from DomainResource (R4 resource.html).
NOT_DOMAIN_RESOURCES = frozenset({"Binary", "Bundle", "Parameters"})

# Deliberate departures from the official expressions, keyed by (base type, code). Each value
# replaces the narrowed expression for that type; None makes the parameter unindexable.
EXPRESSION_OVERRIDES: dict[tuple[str, str], str | None] = {
    # `Bundle.entry[0].resource` for both: the descriptions say "the first resource, if the bundle
    # type is document" (a Composition) and "if it is message" (a MessageHeader). Without the
    # cast, the first entry of any Bundle (a Patient in a transaction) would be indexed as one.
    ("Bundle", "composition"): "Bundle.entry[0].resource as Composition",
    ("Bundle", "message"): "Bundle.entry[0].resource as MessageHeader",
}

# Departures in composite components, keyed by (base type, code): the component expressions by
# position. R4's DocumentReference `relationship` swaps them: its `relatesto` (reference) component
# reads `code` and its `relation` (token) component reads `target`, which can never match.
COMPONENT_OVERRIDES: dict[tuple[str, str], tuple[str, ...]] = {
    ("DocumentReference", "relationship"): ("target", "code"),
}
# FHIRPath system type names that component expressions cast to where the FHIR type is meant:
# `value.as(DateTime)` (Observation code-value-date) reads a dateTime value (fhirpath.html#types).
_SYSTEM_TYPES = {"DateTime": "dateTime", "Date": "date", "String": "string", "Boolean": "boolean"}
_SYSTEM_CAST = re.compile(r"\b(as|ofType|is)\((DateTime|Date|String|Boolean)\)")

_TYPE_PREFIX = re.compile(r"\(*\s*([A-Za-z]+)")


def _load(name: str) -> Any:
    raw = resources.files("fhir_server.search").joinpath(f"data/{name}.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw))


@cache
def _definitions() -> tuple[dict[str, Any], ...]:
    bundle = _load("search-parameters")
    return tuple(
        entry["resource"] for entry in bundle["entry"] if entry["resource"].get("resourceType") == "SearchParameter"
    )


def split_union(expression: str) -> list[str]:
    """The top-level `|` parts of a FHIRPath expression (not those inside parentheses or strings)."""
    parts: list[str] = []
    depth, quoted, start = 0, False, 0
    for index, char in enumerate(expression):
        if char == "'" and (index == 0 or expression[index - 1] != "\\"):
            quoted = not quoted
        elif quoted:
            continue
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            parts.append(expression[start:index].strip())
            start = index + 1
    parts.append(expression[start:].strip())
    return [part for part in parts if part]


def _applies(part: str, resource_type: str) -> bool:
    """Whether one union part is written for `resource_type`: its own name, a base type, or a
    relative path (no type name at all)."""
    match = _TYPE_PREFIX.match(part)
    if not match:
        return True
    head = match.group(1)
    if head == resource_type or head == "Resource":
        return True
    if head == "DomainResource":
        return resource_type not in NOT_DOMAIN_RESOURCES
    return head not in resource_types()


def narrow(expression: str | None, resource_type: str) -> str | None:
    """The parts of a (union) expression that apply to `resource_type`, or None if none does."""
    if not expression:
        return None
    parts = [part for part in split_union(expression) if _applies(part, resource_type)]
    return " | ".join(parts) or None


def _param(definition: dict[str, Any], resource_type: str) -> SearchParam:
    code = definition["code"]
    kind = definition["type"]
    if (resource_type, code) in EXPRESSION_OVERRIDES:
        expression = EXPRESSION_OVERRIDES[(resource_type, code)]
    elif kind == "special":
        expression = None
    else:
        expression = narrow(definition.get("expression"), resource_type)
    components = _components(definition, resource_type)
    return SearchParam(
        resource_type=resource_type,
        code=code,
        type=kind,
        expression=expression,
        url=definition.get("url", ""),
        targets=tuple(definition.get("target", ())),
        components=components,
    )


@cache
def _types_by_url() -> Mapping[str, str]:
    return MappingProxyType({d["url"]: d["type"] for d in _definitions() if "url" in d})


def _components(definition: dict[str, Any], resource_type: str) -> tuple[Component, ...]:
    """A composite's components, each with the type of the parameter its definition URL names."""
    parts = definition.get("component", ())
    expressions = COMPONENT_OVERRIDES.get((resource_type, definition["code"])) or [p["expression"] for p in parts]
    types = _types_by_url()
    return tuple(
        Component(part["definition"], _SYSTEM_CAST.sub(_fhir_cast, expression), types.get(part["definition"], ""))
        for part, expression in zip(parts, expressions, strict=True)
    )


def _fhir_cast(match: re.Match[str]) -> str:
    return f"{match[1]}({_SYSTEM_TYPES[match[2]]})"


def _bases(definition: dict[str, Any]) -> list[str]:
    bases: list[str] = []
    for base in definition.get("base", ()):
        if base == "Resource":
            bases.extend(resource_types())
        elif base == "DomainResource":
            bases.extend(t for t in resource_types() if t not in NOT_DOMAIN_RESOURCES)
        elif base in resource_types():
            bases.append(base)
    return bases


@cache
def _all_params() -> Mapping[str, Mapping[str, SearchParam]]:
    by_type: dict[str, dict[str, SearchParam]] = {name: {} for name in resource_types()}
    for definition in _definitions():
        for resource_type in _bases(definition):
            by_type[resource_type][definition["code"]] = _param(definition, resource_type)
    return MappingProxyType({name: MappingProxyType(dict(sorted(params.items()))) for name, params in by_type.items()})


def search_params(resource_type: str) -> Mapping[str, SearchParam]:
    """Every search parameter of a resource type by code, the official ones and the custom ones
    stored on this server (read-only; empty for unknown types)."""
    return _merged(resource_type, _custom["generation"])


def search_param(resource_type: str, code: str) -> SearchParam | None:
    return search_params(resource_type).get(code)


def official_params(resource_type: str) -> Mapping[str, SearchParam]:
    """The parameters the R4 specification defines for a type, without custom ones."""
    return _all_params().get(resource_type, MappingProxyType({}))


def official_param(resource_type: str, code: str) -> SearchParam | None:
    return official_params(resource_type).get(code)


# Custom SearchParameters (search.html#custom), installed from the stored resources by
# interactions/custom_params.py. `generation` changes with every install, so caches keyed by it
# (here and in extract.py) never serve a stale set; `ready` holds the URLs whose reindex is done.
_custom: dict[str, Any] = {"generation": 0, "by_type": {}, "ready": frozenset()}


def install_custom(definitions: list[dict[str, Any]], ready: set[str | None]) -> None:
    by_type: dict[str, dict[str, SearchParam]] = {}
    for definition in definitions:
        for resource_type in _bases(definition):
            by_type.setdefault(resource_type, {})[definition["code"]] = _param(definition, resource_type)
    _custom.update(by_type=by_type, ready=frozenset(url for url in ready if url), generation=_custom["generation"] + 1)


@contextmanager
def official_only() -> Iterator[None]:
    """The registry without custom parameters for a while (the conformance snapshot shows what
    the server itself implements, whatever a test or a client stored)."""
    saved = dict(_custom)
    _custom.update(by_type={}, ready=frozenset(), generation=_custom["generation"] + 1)
    try:
        yield
    finally:
        _custom.update(saved, generation=_custom["generation"] + 1)


def generation() -> int:
    return int(_custom["generation"])


def is_ready(param: SearchParam) -> bool:
    """Official parameters always are; custom ones once their reindex job has finished."""
    return official_param(param.resource_type, param.code) == param or param.url in _custom["ready"]


@lru_cache(maxsize=512)
def _merged(resource_type: str, _generation: int) -> Mapping[str, SearchParam]:
    official = _all_params().get(resource_type, MappingProxyType({}))
    custom = _custom["by_type"].get(resource_type)
    if not custom:
        return official
    return MappingProxyType(dict(sorted({**official, **custom}.items())))


@cache
def _compartments() -> Mapping[str, Mapping[str, tuple[str, ...]]]:
    definition = _load("compartmentdefinition-patient")
    members = {
        entry["code"]: tuple(code for code in entry.get("param", ()) if code != "{def}")
        for entry in definition.get("resource", ())
    }
    return MappingProxyType({definition["code"]: MappingProxyType(members)})


def compartment_members(compartment: str) -> tuple[tuple[str, str], ...]:
    """Every (resource type, parameter code) pair that puts resources into a `compartment`."""
    members = _compartments().get(compartment, MappingProxyType({}))
    return tuple((kind, code) for kind, codes in members.items() for code in codes)


def compartment_params(compartment: str, resource_type: str) -> tuple[str, ...]:
    """Codes of the parameters that put a `resource_type` resource into a `compartment`
    (only the Patient compartment ships); () when it is never in it."""
    return _compartments().get(compartment, MappingProxyType({})).get(resource_type, ())
