"""A search request's parameters to a typed `SearchRequest` (R4 search.html).

`parse_search` reads the decoded `name=value` pairs of a search: a repeated parameter is AND-ed
(one clause each), the comma-separated values of one occurrence are OR-ed. The parameter
definitions come from `lookup` (the registry's `search_param`, injected so that nothing here
depends on which definitions are loaded). A `_filter` expression (filter.py) is one clause, its
value never split on commas.

Errors (search.html#errors): under `Prefer: handling=strict` (`strict=True`, the default) every
unknown or unsupported parameter, unsupported modifier or malformed value is reported, one issue
per parameter with the name as given in `expression`, in a single `Invalid`. Under `lenient`
such a parameter is dropped, listed in `ignored` and left out of `applied` (so of the `self` link,
search.html#conformance), and every other parameter still applies. Empty parameters are dropped
in both modes, silently ("Empty parameters are not an error - they are just ignored").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from fhir_server.errors import Invalid, Issue
from fhir_server.search.clauses import Clause, Include, SortKey
from fhir_server.search.controls import (
    SUMMARIES,
    TOTALS,
    parse_choice,
    parse_count,
    parse_elements,
    parse_include,
    parse_sort,
    parse_types,
)
from fhir_server.search.criteria import Lookup, Scope, parse_criterion
from fhir_server.search.filter import parse_filter
from fhir_server.search.syntax import MODIFIER, UNSUPPORTED, VALUE, Problem
from fhir_server.search.values import all_resource_types

# Interaction parameters (http.html#parameters) that the API layer handles; kept in `applied`.
PASSED_THROUGH = frozenset({"_format", "_pretty"})
# Result parameters that may appear once, each with its place in the canonical `applied` order;
# criteria come between `_type` and `_sort`.
_ONCE = ("_sort", "_count", "_total", "_summary", "_elements", "_page")
_ORDER = {"_type": 0, "_sort": 2, "_count": 3, "_total": 4, "_summary": 5, "_elements": 6}
_ORDER |= {"_include": 7, "_revinclude": 8, "_format": 9, "_pretty": 10, "_page": 11}
_PENDING = frozenset({"_contained", "_containedType"})
_ISSUE_TYPE = {VALUE: "invalid"}  # the other codes are all "not-supported"


@dataclass(frozen=True)
class SearchRequest:
    clauses: tuple[Clause, ...] = ()  # AND-ed
    sort: tuple[SortKey, ...] = ()
    count: int = 50
    page: str | None = None  # the opaque `_page` token
    includes: tuple[Include, ...] = ()  # _include and _revinclude (reverse=True)
    total: str | None = None  # none | estimate | accurate; None: not asked (interactions/search.py)
    summary: str | None = None  # true | text | data | count | false
    elements: tuple[str, ...] = ()
    types: tuple[str, ...] = ()  # `_type` of a system search
    applied: tuple[tuple[str, str], ...] = ()  # understood parameters, canonical order (for `self`)
    ignored: tuple[str, ...] = ()  # names (as given) of the parameters left out under lenient
    warnings: tuple[Issue, ...] = ()  # under lenient, why each ignored parameter was left out


@dataclass
class _State:
    count: int
    clauses: list[Clause] = field(default_factory=list)
    sort: tuple[SortKey, ...] = ()
    page: str | None = None
    includes: list[Include] = field(default_factory=list)
    total: str | None = None
    summary: str | None = None
    elements: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    applied: list[tuple[str, str]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    issues: list[Issue] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)


def parse_search(
    resource_type: str | None,
    params: list[tuple[str, str]],
    lookup: Lookup,
    strict: bool = True,
    default_count: int = 50,
    max_count: int = 1000,
    *,
    base_url: str | None = None,
) -> SearchRequest:
    """`resource_type` None is a search across all types. `base_url`, when given, makes absolute
    references to this server match their relative form (search.html#reference)."""
    state = _State(count=min(default_count, max_count))
    scope = Scope(lookup, base_url)
    for name, raw in params:  # _type first: it says where the other parameters are defined
        if name.partition(":")[0] == "_type":
            _guarded(state, name, raw, lambda n, r: _types(state, resource_type, n, r))
    searched = (resource_type,) if resource_type else state.types or all_resource_types()
    for name, raw in params:
        if name.partition(":")[0] != "_type":
            _guarded(state, name, raw, lambda n, r: _one(state, scope, searched, n, r, max_count))
    _check_summary(state)
    if strict and state.issues:
        codes = {issue.error_code for issue in state.issues}
        code = codes.pop() if len(codes) == 1 else "search-invalid"
        raise Invalid("The search parameters are not usable", code, issues=state.issues)
    return _freeze(state)


def _guarded(state: _State, name: str, raw: str, handle: Callable[[str, str], None]) -> None:
    if raw == "":
        return
    try:
        handle(name, raw)
    except Problem as problem:
        _reject(state, name, problem)


def _reject(state: _State, name: str, problem: Problem) -> None:
    issue_type = _ISSUE_TYPE.get(problem.error_code, "not-supported")
    state.issues.append(Issue(problem.message, problem.error_code, issue_type, name))
    state.ignored.append(name)


def _types(state: _State, resource_type: str | None, name: str, raw: str) -> None:
    if resource_type is not None:
        raise Problem(UNSUPPORTED, f"_type applies to a search across all types, not to a {resource_type} search")
    _once(state, name, "_type")
    state.types = parse_types(raw)
    state.seen.add("_type")
    state.applied.append((name, raw))


def _one(state: _State, scope: Scope, searched: tuple[str, ...], name: str, raw: str, max_count: int) -> None:
    base, _, modifier = name.partition(":")
    if base in ("_include", "_revinclude"):
        if modifier not in ("", "iterate"):
            raise Problem(MODIFIER, f"'{base}' takes only the :iterate modifier")
        state.includes.append(parse_include(scope, raw, bool(modifier), base == "_revinclude"))
    elif base in _ONCE:
        _once(state, name, base)
        _result_parameter(state, scope, searched, base, raw, max_count)
        state.seen.add(base)
        if base == "_count":
            raw = str(state.count)
    elif base == "_filter":
        if modifier:
            raise Problem(MODIFIER, "'_filter' takes no modifier")
        state.clauses.append(parse_filter(scope, searched, raw))
    elif base in _PENDING:
        raise Problem(UNSUPPORTED, f"'{base}' is not supported yet")
    elif base not in PASSED_THROUGH:
        state.clauses.append(parse_criterion(scope, searched, name, raw))
    state.applied.append((name, raw))


def _once(state: _State, name: str, base: str) -> None:
    if name != base:
        raise Problem(MODIFIER, f"'{base}' takes no modifier")
    if base in state.seen:
        raise Problem(VALUE, f"'{base}' may appear only once")


def _result_parameter(
    state: _State, scope: Scope, searched: tuple[str, ...], base: str, raw: str, max_count: int
) -> None:
    if base == "_sort":
        state.sort = parse_sort(scope, searched, raw)
    elif base == "_count":
        state.count = parse_count(raw, max_count)
    elif base == "_total":
        state.total = parse_choice(base, raw, TOTALS)
    elif base == "_summary":
        state.summary = parse_choice(base, raw, SUMMARIES)
    elif base == "_elements":
        state.elements = parse_elements(raw)
    else:
        state.page = raw


def _check_summary(state: _State) -> None:
    """search.html#summary: "_include and _revinclude parameters cannot be mixed with _summary=text"."""
    if state.summary == "text" and state.includes:
        state.summary = None
        state.applied = [pair for pair in state.applied if pair[0] != "_summary"]
        _reject(state, "_summary", Problem(VALUE, "_summary=text cannot be combined with _include or _revinclude"))


def _freeze(state: _State) -> SearchRequest:
    def order(pair: tuple[str, str]) -> tuple[int, str, str]:
        return _ORDER.get(pair[0].partition(":")[0], 1), pair[0], pair[1]

    warnings = tuple(Issue(i.message, i.error_code, i.code, i.expression, "warning") for i in state.issues)
    return SearchRequest(
        clauses=tuple(state.clauses),
        sort=state.sort,
        count=state.count,
        page=state.page,
        includes=tuple(state.includes),
        total=state.total,
        summary=state.summary,
        elements=state.elements,
        types=state.types,
        applied=tuple(sorted(state.applied, key=order)),
        ignored=tuple(dict.fromkeys(state.ignored)),
        warnings=warnings,
    )
