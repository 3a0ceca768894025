"""Whole search statements: a page of matches, their count, and `_include`/`_revinclude` steps
(R4 search.html#sort, #count, #include, #revinclude).

Every statement reads current resources only (`resource`), never deleted ones, and takes the
caller's visibility as a predicate on the row (`visible`); the repository adds `_narrow` on top.
A page is

    SELECT * FROM (SELECT resource.*, <sort expression> AS sort_0, ... FROM resource
                   WHERE <type> AND NOT deleted AND <visible> AND <clause predicates>) AS matches
    WHERE <after the keyset> ORDER BY sort_0, ..., resource_type, id LIMIT :limit
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from sqlalchemy import Select, and_, false, func, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.search.clauses import Clause, SortKey, searched_params
from fhir_server.store.compile_sort import (
    after_predicate,
    before_predicate,
    driven_matches,
    order_by,
    subject_sort_expression,
)
from fhir_server.store.compiler import Visible, predicate, subject_of
from fhir_server.store.schema import reference_index, resource


def _filter(
    resource_type: str | None,
    types: Sequence[str],
    clauses: Sequence[Clause],
    visible: Visible,
    sort: Sequence[SortKey] = (),
) -> list[ColumnElement[bool]]:
    subject = subject_of(resource_type)
    searched = searched_params(clauses, sort)
    conditions: list[ColumnElement[bool]] = [resource.c.deleted == false(), visible(resource, searched)]
    if resource_type is not None:
        conditions.append(resource.c.resource_type == resource_type)
    elif types:
        conditions.append(resource.c.resource_type.in_(types))
    conditions.extend(predicate(subject, clause, visible) for clause in clauses)
    return conditions


def page_statement(
    resource_type: str | None,
    types: Sequence[str],
    clauses: Sequence[Clause],
    sort: Sequence[SortKey],
    limit: int,
    after: Sequence[Any] | None,
    visible: Visible,
    backwards: bool = False,
    segment: str | None = None,
) -> Select[Any]:
    """One page of matches; the row's `sort_<n>` columns, resource_type and id form its keyset.
    `backwards`: the page that ends just before the keyset `after`, in reverse order. `segment`
    ("valued" or "unvalued"): only those matches, read in the order of the first sort key's
    index rows (compile_sort.driven_matches; PostgreSQL's planner can stop early on it)."""
    subject = subject_of(resource_type)
    conditions = _filter(resource_type, types, clauses, visible, sort)
    matches: Any
    if segment is not None and resource_type is not None:
        matches = driven_matches(resource_type, sort, conditions, subject, valued=segment == "valued")
    else:
        sort_columns = [subject_sort_expression(subject, key).label(f"sort_{n}") for n, key in enumerate(sort)]
        matches = select(resource, *sort_columns).where(*conditions).subquery("matches")
    keys = [matches.c[f"sort_{n}"] for n in range(len(sort))] + [matches.c.resource_type, matches.c.id]
    descending = [key.descending for key in sort] + [False, False]
    nullable = [key.param is not None for key in sort] + [False, False]
    if segment == "valued":  # no NULLs here: a plain order, which an index scan in either direction gives
        nullable[0] = False
    statement = select(matches).order_by(*order_by(keys, descending, nullable, reverse=backwards)).limit(limit)
    if after is not None:
        boundary = before_predicate if backwards else after_predicate
        statement = statement.where(boundary(keys, descending, nullable, after))
    return statement


def count_statement(
    resource_type: str | None,
    types: Sequence[str],
    clauses: Sequence[Clause],
    visible: Visible,
    limit: int | None = None,
) -> Select[Any]:
    """How many resources match; with `limit`, counting stops after that many (a bounded cost)."""
    conditions = _filter(resource_type, types, clauses, visible)
    if limit is None:
        return select(func.count()).select_from(resource).where(*conditions)
    bounded: Select[Any] = (
        select(literal_column("1").label("one")).select_from(resource).where(*conditions).limit(limit)
    )
    return select(func.count()).select_from(bounded.subquery("counted"))


def matches_statement(
    resource_type: str | None, types: Sequence[str], clauses: Sequence[Clause], visible: Visible
) -> Select[Any]:
    """Every match, unordered (what the planner's row estimate is asked of)."""
    return select(literal_column("1")).select_from(resource).where(*_filter(resource_type, types, clauses, visible))


def _by_type(
    pairs: Iterable[tuple[str, str]], type_column: ColumnElement[Any], id_column: ColumnElement[Any]
) -> ColumnElement[bool]:
    """(type, id) IN pairs, as one `type = t AND id IN (...)` per type (index-friendly everywhere)."""
    grouped: dict[str, list[str]] = {}
    for kind, identifier in pairs:
        grouped.setdefault(kind, []).append(identifier)
    if not grouped:
        return false()
    return or_(*(and_(type_column == kind, id_column.in_(ids)) for kind, ids in grouped.items()))


def referenced_statement(
    sources: Iterable[tuple[str, str]],
    params: Sequence[str] | None,
    target_type: str | None,
    visible: Visible,
) -> Select[Any]:
    """`_include`: the current resources the `sources` point at through `params` (None: all)."""
    return _linked_statement(sources, params, target_type, visible, reverse=False)


def referencing_statement(
    targets: Iterable[tuple[str, str]],
    source_type: str | None,
    params: Sequence[str] | None,
    visible: Visible,
    exclude: Sequence[str] = (),
) -> Select[Any]:
    """`_revinclude`: the current `source_type` resources (None: any but those in `exclude`)
    pointing at `targets` through `params` (None: any reference parameter)."""
    statement = _linked_statement(targets, params, source_type, visible, reverse=True)
    return statement.where(resource.c.resource_type.not_in(exclude)) if exclude else statement


def _linked_statement(
    known: Iterable[tuple[str, str]],
    params: Sequence[str] | None,
    wanted_type: str | None,
    visible: Visible,
    reverse: bool,
) -> Select[Any]:
    """Current, visible resources linked to the `known` (type, id) pairs by a reference row:
    its target side (include) or, `reverse`, its source side (revinclude)."""
    link = reference_index.alias()
    source = (link.c.resource_type, link.c.resource_id)
    target = (link.c.target_type, link.c.target_id)
    found, given = (source, target) if reverse else (target, source)
    conditions = [
        found[0] == resource.c.resource_type,
        found[1] == resource.c.id,
        _by_type(known, given[0], given[1]),
    ]
    if params is not None:
        conditions.append(link.c.param.in_(params))
    linked = select(found[1]).where(*conditions).exists()
    statement = select(resource).where(resource.c.deleted == false(), visible(resource, frozenset()), linked)
    if wanted_type is not None:
        statement = statement.where(resource.c.resource_type == wanted_type)
    return statement.order_by(resource.c.resource_type, resource.c.id)
