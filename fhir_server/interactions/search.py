"""search at type, system and compartment level (R4 http.html#search, search.html).

Parsing turns the parameters into typed clauses (search/query.py); the store compiles them into
one SQL statement per page and per include step. Paging is keyset-based: the `_page` token holds
the sort values of the last entry shown, so writes during paging neither repeat nor skip entries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.errors import Invalid
from fhir_server.interactions import custom_params, searchset
from fhir_server.interactions.context import Env, Result
from fhir_server.search.clauses import AnyClause, Clause, Include, ParamClause, ReferenceValue
from fhir_server.search.query import SearchRequest, parse_search
from fhir_server.search.registry import compartment_params, search_param
from fhir_server.store.compile_sort import decode_keyset, encode_keyset
from fhir_server.store.repository import Found, StoredVersion, UnitOfWork

_BACKWARDS = "~"
WILDCARD_EXCLUDED = ("AuditEvent",)
# How many _include:iterate rounds at most (search.html#revinclude leaves the limit to servers).
MAX_ITERATIONS = 4


def search(
    env: Env,
    resource_type: str | None,
    params: list[tuple[str, str]],
    strict: bool = True,
    compartment: tuple[str, str] | None = None,
) -> Result:
    with env.store.unit_of_work(env.visibility("s", resource_type), read_only=True) as uow:
        custom_params.sync(uow)  # parameters another process just defined are searchable too
        request = parse_search(
            resource_type, params, search_param, strict, env.settings.default_page_size, env.settings.max_page_size
        )
        clauses = list(request.clauses)
        if compartment is not None:
            assert resource_type is not None
            clauses.append(_compartment_clause(compartment, resource_type))
        backwards, key = _page(request.page)
        rows: list[Found] = []
        fetched = request.count > 0 and request.summary != "count"
        if fetched:
            limit = request.count + 1
            rows = uow.search(resource_type, clauses, request.sort, limit, key, request.types, backwards)
        more, rows = len(rows) > request.count, rows[: request.count]
        if backwards:
            rows.reverse()
        whole = fetched and key is None and not more  # every match is on this first page
        total = _total(uow, request, resource_type, clauses, len(rows) if whole else None)
        included = _included(uow, rows, request.includes)
    page = Page(rows, included, total, more, backwards, key is not None)
    return Result(200, body=_bundle(env, request, page, _path(resource_type, compartment)))


def _total(
    uow: UnitOfWork,
    request: SearchRequest,
    resource_type: str | None,
    clauses: list[Clause],
    known: int | None,
) -> int | None:
    """Bundle.total (search.html#total: `_total` is a hint; servers may leave the total out).

    `accurate` (also `_summary=count` and `_count=0`) counts every match. Without `_total`, the
    total is given only when it costs nothing: when every match is on the first page. Counting
    a large set costs as much as reading all of it (a `_has` over 86,000 patients: 3 s, for a
    page read in 9 ms), so paging never pays for it unasked. `estimate` is PostgreSQL's planner
    estimate (SQLite has none, so it counts)."""
    if request.total == "accurate" or request.summary == "count" or request.count == 0:
        return uow.count(resource_type, clauses, request.types)
    if request.total == "none" or known is not None:
        return known if request.total != "none" else None
    if request.total != "estimate":
        return None
    estimated = uow.estimate(resource_type, clauses, request.types)
    return estimated if estimated is not None else uow.count(resource_type, clauses, request.types)


@dataclass(frozen=True)
class Page:
    rows: list[Found]
    included: list[StoredVersion]
    total: int | None
    more: bool  # more matches lie beyond this page, in the direction it was read
    backwards: bool
    keyed: bool  # reached through a _page token, so matches lie on the other side too


def _page(token: str | None) -> tuple[bool, tuple[Any, ...] | None]:
    """A `_page` token: the keyset of the last row shown, or `~` and the first row's for the page before."""
    if not token:
        return False, None
    backwards = token.startswith(_BACKWARDS)
    try:
        return backwards, decode_keyset(token.removeprefix(_BACKWARDS))
    except (ValueError, TypeError, KeyError):
        raise Invalid("The _page token is not one this server issued", "search-page-token-invalid") from None


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
    source_type = None if include.source_type == "*" else include.source_type  # `_include=*`: any source
    if include.reverse:
        targets = [(row.resource_type, row.id) for row in frontier]
        # `_revinclude=*` leaves out the audit trail: every access to a resource refers to it, so
        # the answer would grow with each such search (`_revinclude=AuditEvent:entity` asks for it)
        return uow.referencing(targets, source_type, params, exclude=() if source_type else WILDCARD_EXCLUDED)
    sources = [(row.resource_type, row.id) for row in frontier if source_type in (None, row.resource_type)]
    return uow.referenced(sources, params, include.target_type) if sources else []


def _path(resource_type: str | None, compartment: tuple[str, str] | None) -> str:
    if compartment is not None:
        return f"{compartment[0]}/{compartment[1]}/{resource_type}"
    return resource_type or ""


def _bundle(env: Env, request: SearchRequest, page: Page, path: str) -> dict[str, Any]:
    applied = [(name, value) for name, value in request.applied if name != "_page"]

    def url(token: str | None) -> str:
        return searchset.link(env.base_url, path, applied + ([("_page", token)] if token else []))

    links = [{"relation": "self", "url": searchset.link(env.base_url, path, list(request.applied))}]
    if page.keyed:
        links.append({"relation": "first", "url": url(None)})
    rows = page.rows
    has_next = page.more if not page.backwards else page.keyed
    has_previous = page.more if page.backwards else page.keyed
    if rows and has_previous:
        links.append({"relation": "previous", "url": url(_BACKWARDS + encode_keyset(rows[0].keyset))})
    if rows and has_next:
        links.append({"relation": "next", "url": url(encode_keyset(rows[-1].keyset))})
    elements = ",".join(request.elements) or None
    entries = [searchset.entry(env.base_url, row, "match", request.summary, elements) for row in rows]
    entries += [searchset.entry(env.base_url, row, "include", request.summary, elements) for row in page.included]
    return searchset.bundle(links, entries, page.total)
