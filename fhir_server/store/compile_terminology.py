"""Token `:in`, `:not-in`, `:above`, `:below` against terminology stored on this server
(R4 search.html#token, valueset.html, codesystem.html).

Resolution happens before compiling, not inside the search statement. The codes of a value set
follow from its expansion or from `compose` rules (include / exclude, whole code systems, filters
over a code system's nested `concept` tree, imported value sets), and a hierarchy from nested
concepts and `parent` properties; none of that is in the index tables (CodeSystem's `code`
parameter indexes top-level concepts only, ValueSet's `code` has no systems and ignores
`exclude`). Working it out in SQL would mean recursive queries over JSON that SQLite and
PostgreSQL spell differently, or derived index rows that go stale when a CodeSystem changes
after the ValueSets that use it. So `Terminology.resolve` reads what the clauses name first:

- one statement for the ValueSets (by their `url` index rows, or by id for `ValueSet/[id]`), and
  one more per level of `compose.*.valueSet` imports still unread (at most MAX_ROUNDS);
- one statement for the CodeSystems needed (by their `url` index rows);

each narrowed by the caller's visibility and cached for the unit of work (a page and its count
resolve once; a search without these modifiers runs no extra statement). It then rewrites each
such clause to carry a `CodeSet` (search/clauses.py), which compiles to `system = s AND code IN
(...)` per system inside the usual EXISTS (compiler.py); `:not-in` is its negation, like `:not`.
An index row without a system (a `code` element such as Patient.gender, whose system is implied
by its binding) matches by its code alone, so `gender:in=...administrative-gender` works.

Errors are 400s: a ValueSet or CodeSystem that is not stored here (`search-valueset-unknown`,
`search-codesystem-unknown`), one that cannot be expanded (`search-valueset-unexpandable`), or
more than MAX_CODES codes (`search-valueset-too-large`). `url|version` picks that
`ValueSet.version`; without a version the most recently updated ValueSet with the url is used.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Select, and_, false, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from fhir_server.errors import Invalid, Issue, NotSupported
from fhir_server.model.json import parse
from fhir_server.search.clauses import (
    AllClause,
    AnyClause,
    ChainClause,
    Clause,
    CodeSet,
    HasClause,
    NotClause,
    ParamClause,
    Token,
    UriValue,
    Value,
    param_clauses,
)
from fhir_server.search.terminology import Coding, Hierarchy, Unresolvable, hierarchy, references, value_set_codes
from fhir_server.store.schema import resource, uri_index

Visible = Callable[[FromClause], ColumnElement[bool]]
Fetch = Callable[[Select[Any]], Sequence[Any]]

CODE_SET_MODIFIERS = frozenset({"in", "not-in", "above", "below"})
MAX_CODES = 10_000
MAX_ROUNDS = 8
_LOCAL_REFERENCE = re.compile(r"ValueSet/([A-Za-z0-9\-.]{1,64})")


def code_set_condition(table: FromClause, value: Value) -> ColumnElement[bool]:
    """A token row whose (system, code) is one of the set's. A row without a system (a `code`
    element such as Patient.gender, whose system its binding implies, or a Coding without one)
    matches by its code alone, as does a code of the set without a system."""
    if not isinstance(value, CodeSet):
        message = "A value set or code system hierarchy was not read from the store before compiling"
        raise NotSupported(message, "search-modifier-unsupported")
    forms: list[ColumnElement[bool]] = []
    every: set[str] = set()
    for system, codes in value.codes:
        every.update(codes)
        within = table.c.code.in_(codes)
        forms.append(within if system is None else and_(table.c.system == system, within))
    if every and any(system is not None for system, _ in value.codes):
        forms.append(and_(table.c.system.is_(None), table.c.code.in_(sorted(every))))
    return or_(*forms) if forms else false()


def _needs(clause: ParamClause) -> bool:
    """A token `:in`/`:not-in`/`:above`/`:below` whose codes are not read yet."""
    return (
        clause.param.type == "token"
        and clause.modifier in CODE_SET_MODIFIERS
        and any(not isinstance(value, CodeSet) for value in clause.values)
    )


def needs_terminology(clauses: Iterable[Clause]) -> bool:
    return any(True for clause in clauses for _ in _terminology_clauses(clause))


def _terminology_clauses(clause: Clause) -> Iterator[ParamClause]:
    return (found for found in param_clauses(clause) if _needs(found))


def _fail(message: str, error_code: str, issue_type: str = "invalid") -> Invalid:
    return Invalid(message, error_code, issues=[Issue(message, error_code, issue_type)])


def _canonical(reference: str) -> tuple[str, str | None]:
    url, bar, version = reference.partition("|")
    return url, (version or None) if bar else None


class Terminology:
    """ValueSets and CodeSystems read from the store for one unit of work (module docstring)."""

    def __init__(self, fetch: Fetch, visible: Visible) -> None:
        self._fetch = fetch
        self._visible = visible
        self._value_sets: dict[str, dict[str, Any] | None] = {}  # reference as given -> resource
        self._systems: dict[str, Hierarchy | None] = {}  # url -> hierarchy
        self._codes: dict[str, frozenset[Coding]] = {}  # value set reference -> its codes
        self._expanding: set[str] = set()

    def resolve(self, clauses: Sequence[Clause]) -> list[Clause]:
        """The clauses, with every `:in`/`:not-in`/`:above`/`:below` value replaced by its CodeSet."""
        wanted_sets: set[str] = set()
        wanted_systems: set[str] = set()
        for clause in clauses:
            for found in _terminology_clauses(clause):
                for value in found.values:
                    if isinstance(value, UriValue):
                        wanted_sets.add(value.uri)
                    elif isinstance(value, Token) and value.system:
                        wanted_systems.add(value.system)
        self._load(wanted_sets, wanted_systems)
        return [self._rewrite(clause) for clause in clauses]

    # --- reading -------------------------------------------------------------------------------

    def _load(self, value_sets: set[str], systems: set[str]) -> None:
        pending = {reference for reference in value_sets if reference not in self._value_sets}
        for _ in range(MAX_ROUNDS):
            if not pending:
                break
            found = self._read_value_sets(pending)
            self._value_sets.update(found)
            pending = set()
            for value_set in found.values():
                if value_set is not None:
                    imported, needed = references(value_set)
                    pending |= {reference for reference in imported if reference not in self._value_sets}
                    systems |= needed
        systems = {system for system in systems if system not in self._systems}
        if systems:
            self._systems.update(self._read_systems(systems))

    def _current(self, resource_type: str, urls: Iterable[str], ids: Iterable[str] = ()) -> list[dict[str, Any]]:
        """Current, visible resources of a type whose `url` is one of `urls` or whose id is one of
        `ids`, newest first."""
        link = uri_index.alias()
        urls, ids = sorted(set(urls)), sorted(set(ids))
        forms: list[ColumnElement[bool]] = []
        if urls:
            by_url = (
                select(literal_column("1"))
                .select_from(link)
                .where(
                    link.c.resource_type == resource_type,
                    link.c.resource_id == resource.c.id,
                    link.c.param == "url",
                    link.c.value.in_(urls),
                )
                .exists()
            )
            forms.append(by_url)
        if ids:
            forms.append(resource.c.id.in_(ids))
        statement = (
            select(resource.c.id, resource.c.content)
            .where(
                resource.c.resource_type == resource_type,
                resource.c.deleted == false(),
                self._visible(resource),
                or_(*forms),
            )
            .order_by(resource.c.last_updated.desc(), resource.c.id)
        )
        return [parse(row.content, max_depth=10_000) for row in self._fetch(statement) if row.content]

    def _read_value_sets(self, references_: set[str]) -> dict[str, dict[str, Any] | None]:
        local = {ref: match.group(1) for ref in references_ if (match := _LOCAL_REFERENCE.fullmatch(ref))}
        canonical = {reference: _canonical(reference) for reference in references_ if reference not in local}
        found = self._current("ValueSet", (url for url, _ in canonical.values()), local.values())
        result: dict[str, dict[str, Any] | None] = {}
        for reference, (url, version) in canonical.items():
            result[reference] = next(
                (vs for vs in found if vs.get("url") == url and (version is None or vs.get("version") == version)), None
            )
        for reference, identity in local.items():
            result[reference] = next((vs for vs in found if vs.get("id") == identity), None)
        return result

    def _read_systems(self, urls: set[str]) -> dict[str, Hierarchy | None]:
        found = self._current("CodeSystem", urls)
        result: dict[str, Hierarchy | None] = {}
        for url in urls:
            code_system = next((cs for cs in found if cs.get("url") == url), None)
            result[url] = hierarchy(code_system) if code_system is not None else None
        return result

    # --- codes ---------------------------------------------------------------------------------

    def _system(self, url: str) -> Hierarchy:
        if url not in self._systems:
            self._systems.update(self._read_systems({url}))
        known = self._systems.get(url)
        if known is None:
            raise Unresolvable(f"The CodeSystem '{url}' is not stored on this server", "search-codesystem-unknown")
        return known

    def _value_set(self, reference: str) -> frozenset[Coding]:
        if reference in self._codes:
            return self._codes[reference]
        if reference not in self._value_sets:
            self._load({reference}, set())
        value_set = self._value_sets.get(reference)
        if value_set is None:
            raise Unresolvable(f"The ValueSet '{reference}' is not stored on this server", "search-valueset-unknown")
        if reference in self._expanding:
            raise Unresolvable(f"The ValueSet '{reference}' includes itself")
        self._expanding.add(reference)
        try:
            codes = value_set_codes(value_set, self._system, self._value_set)
        finally:
            self._expanding.discard(reference)
        self._codes[reference] = codes
        return codes

    def _code_set(self, clause: ParamClause) -> CodeSet:
        codes: set[Coding] = set()
        name = f"{clause.param.code}:{clause.modifier}"
        try:
            for value in clause.values:
                if isinstance(value, CodeSet):
                    codes.update((system, code) for system, listed in value.codes for code in listed)
                elif isinstance(value, UriValue):
                    codes |= self._value_set(value.uri)
                elif isinstance(value, Token) and value.system and value.code:
                    known = self._system(value.system)
                    related = known.below(value.code) if clause.modifier == "below" else known.above(value.code)
                    codes.update((value.system, code) for code in related)
                else:
                    raise Unresolvable(f"'{name}' takes a ValueSet reference or system|code")
        except Unresolvable as problem:
            raise _fail(f"{name}: {problem.message}", problem.error_code, "not-found") from None
        if len(codes) > MAX_CODES:
            raise _fail(f"{name}: more than {MAX_CODES} codes", "search-valueset-too-large", "too-costly")
        return _code_set(codes)

    def _rewrite(self, clause: Clause) -> Clause:
        if isinstance(clause, ParamClause):
            return replace(clause, values=(self._code_set(clause),)) if _needs(clause) else clause
        if isinstance(clause, ChainClause | HasClause):
            return replace(clause, inner=self._rewrite(clause.inner))
        if isinstance(clause, AnyClause | AllClause):
            return replace(clause, clauses=tuple(self._rewrite(inner) for inner in clause.clauses))
        if isinstance(clause, NotClause):
            return replace(clause, clause=self._rewrite(clause.clause))
        return clause


def _code_set(codes: Iterable[Coding]) -> CodeSet:
    by_system: dict[str | None, set[str]] = {}
    for system, code in codes:
        by_system.setdefault(system, set()).add(code)
    ordered = sorted(by_system.items(), key=lambda item: (item[0] is not None, item[0] or ""))
    return CodeSet(tuple((system, tuple(sorted(listed))) for system, listed in ordered))
