"""search at type, system and compartment level (R4 http.html#search, search.html).

Parsing turns the parameters into typed clauses (search/query.py); the store compiles them into
one SQL statement per page and per include step. Paging is keyset-based: the `_page` token holds
the sort values of the last entry shown, so writes during paging neither repeat nor skip entries.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Invalid
from fhir_server.interactions import searchset
from fhir_server.interactions.context import Env, Result
from fhir_server.search.clauses import AnyClause, Clause, Include, ParamClause, ReferenceValue
from fhir_server.search.query import SearchRequest, parse_search
from fhir_server.search.registry import compartment_params, search_param
from fhir_server.store.compile_sort import decode_keyset, encode_keyset
from fhir_server.store.repository import Found, StoredVersion, UnitOfWork

# How many _include:iterate rounds at most (search.html#revinclude leaves the limit to servers).
MAX_ITERATIONS = 4


def search(
    env: Env,
    resource_type: str | None,
    params: list[tuple[str, str]],
    strict: bool = True,
    compartment: tuple[str, str] | None = None,
) -> Result:
    request = parse_search(
        resource_type, params, search_param, strict, env.settings.default_page_size, env.settings.max_page_size
    )
    clauses = list(request.clauses)
    if compartment is not None:
        assert resource_type is not None
        clauses.append(_compartment_clause(compartment, resource_type))
    after = _after(request.page)
    with env.store.unit_of_work(env.visibility, read_only=True) as uow:
        rows: list[Found] = []
        if request.count > 0 and request.summary != "count":
            rows = uow.search(resource_type, clauses, request.sort, request.count + 1, after, request.types)
        more, rows = len(rows) > request.count, rows[: request.count]
        total = uow.count(resource_type, clauses, request.types) if request.total != "none" else None
        included = _included(uow, rows, request.includes)
    return Result(200, body=_bundle(env, request, rows, included, more, total, _path(resource_type, compartment)))


def _after(page: str | None) -> tuple[Any, ...] | None:
    if not page:
        return None
    try:
        return decode_keyset(page)
    except (ValueError, TypeError, KeyError):
        raise Invalid("The _page token is not one this server issued", "page-token-invalid") from None


def _compartment_clause(compartment: tuple[str, str], resource_type: str) -> Clause:
    """Patient/123/Observation: Observations that refer to Patient/123 through a compartment
    parameter (compartmentdefinition-patient). Any of those parameters may link them."""
    kind, owner = compartment
    codes = compartment_params(kind, resource_type)
    params = [search_param(resource_type, code) for code in codes]
    usable = [param for param in params if param is not None and param.table == "reference"]
    if not usable:
        raise Invalid(f"{resource_type} is not in the {kind} compartment", "compartment-invalid")
    value = ReferenceValue(kind, owner, None)
    if len(usable) == 1:
        return ParamClause(usable[0], (value,))
    return AnyClause(tuple(ParamClause(param, (value,)) for param in usable))


def _included(uow: UnitOfWork, rows: list[Found], includes: tuple[Include, ...]) -> list[StoredVersion]:
    """_include and _revinclude targets, with :iterate applied to what was just added."""
    seen = {(row.resource_type, row.id) for row in rows}
    added: list[StoredVersion] = []
    frontier: list[StoredVersion] = list(rows)
    for round_number in range(MAX_ITERATIONS):
        step = [include for include in includes if round_number == 0 or include.iterate]
        found = [resource for include in step for resource in _include_step(uow, frontier, include)]
        frontier = []
        for resource in found:
            if (resource.resource_type, resource.id) not in seen:
                seen.add((resource.resource_type, resource.id))
                frontier.append(resource)
        added.extend(frontier)
        if not frontier:
            break
    return added


def _include_step(uow: UnitOfWork, frontier: list[StoredVersion], include: Include) -> list[StoredVersion]:
    params = [include.param.code] if include.param is not None else None
    if include.reverse:
        targets = [(row.resource_type, row.id) for row in frontier]
        return uow.referencing(targets, include.source_type, params)
    sources = [(row.resource_type, row.id) for row in frontier if row.resource_type == include.source_type]
    return uow.referenced(sources, params, include.target_type) if sources else []


def _path(resource_type: str | None, compartment: tuple[str, str] | None) -> str:
    if compartment is not None:
        return f"{compartment[0]}/{compartment[1]}/{resource_type}"
    return resource_type or ""


def _bundle(
    env: Env,
    request: SearchRequest,
    rows: list[Found],
    included: list[StoredVersion],
    more: bool,
    total: int | None,
    path: str,
) -> dict[str, Any]:
    applied = [(name, value) for name, value in request.applied if name != "_page"]
    links = [{"relation": "self", "url": searchset.link(env.base_url, path, list(request.applied))}]
    if request.page:
        links.append({"relation": "first", "url": searchset.link(env.base_url, path, applied)})
    if more and rows:
        token = encode_keyset(rows[-1].keyset)
        links.append({"relation": "next", "url": searchset.link(env.base_url, path, [*applied, ("_page", token)])})
    elements = ",".join(request.elements) or None
    entries = [searchset.entry(env.base_url, row, "match", request.summary, elements) for row in rows]
    entries += [searchset.entry(env.base_url, row, "include", request.summary, elements) for row in included]
    return searchset.bundle(links, entries, total)
