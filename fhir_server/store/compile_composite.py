"""Composite search values to SQL (R4 search.html#composite), over idx_composite (search/clauses.py).

A composite value `a$b` matches a resource when ONE element (the same Observation, the same
Observation.component) has a value of component 0 matching `a` and a value of component 1
matching `b`. Each component's values are rows of idx_composite with the element's
`element_key`, so the table is joined to itself once per further component:

    EXISTS (SELECT 1 FROM idx_composite c0
            JOIN idx_composite c1 ON c1.resource_type = c0.resource_type
                 AND c1.resource_id = c0.resource_id AND c1.param = c0.param
                 AND c1.element_key = c0.element_key AND c1.component = 1
            WHERE c0.resource_type = <subject type> AND c0.resource_id = <subject id>
              AND c0.param = :code AND c0.component = 0
              AND ((<a on c0> AND <b on c1>) OR (<a' on c0> AND <b' on c1>) ...))

OR-ed values share the one EXISTS (each value is a conjunction over the same aliases); each
component condition is the one its type uses on its own table (compile_values.py,
compile_ranges.py), on the same-named columns (dates on date_low/date_high, numbers as floats).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import and_, false, literal_column, or_, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from fhir_server.errors import Invalid, NotSupported
from fhir_server.search.clauses import CompositeValue, Value
from fhir_server.search.params import SearchParam
from fhir_server.store.compile_ranges import column_bounds, date_condition, number_condition, quantity_condition
from fhir_server.store.compile_values import reference_condition, string_condition, token_condition, uri_condition
from fhir_server.store.schema import composite_index


def composite_exists(
    subject_type: Any, subject_id: ColumnElement[Any], param: SearchParam, values: tuple[Value, ...]
) -> ColumnElement[bool]:
    """Whether the subject has one element matching every component of one of `values`."""
    kinds = [component.type for component in param.components]
    aliases = [composite_index.alias() for _ in kinds]  # anonymous: never correlates to another subquery
    first = aliases[0]
    joined: FromClause = first
    for position, alias in enumerate(aliases[1:], start=1):
        on = and_(
            alias.c.resource_type == first.c.resource_type,
            alias.c.resource_id == first.c.resource_id,
            alias.c.param == first.c.param,
            alias.c.element_key == first.c.element_key,
            alias.c.component == position,
        )
        joined = joined.join(alias, on)
    matches = [_matches(kinds, aliases, value) for value in values]
    return (
        select(literal_column("1"))
        .select_from(joined)
        .where(
            first.c.resource_type == subject_type,
            first.c.resource_id == subject_id,
            first.c.param == param.code,
            first.c.component == 0,
            or_(*matches) if matches else false(),
        )
        .exists()
    )


def _matches(kinds: Sequence[str], aliases: Sequence[FromClause], value: Value) -> ColumnElement[bool]:
    if not isinstance(value, CompositeValue) or len(value.parts) != len(kinds):
        raise Invalid(f"A {type(value).__name__} is not a value of this composite parameter", "search-value-invalid")
    return and_(*(_component(kind, alias, part) for kind, alias, part in zip(kinds, aliases, value.parts, strict=True)))


def _component(kind: str, table: FromClause, value: Value) -> ColumnElement[bool]:
    if kind == "token":
        return token_condition(table, value)
    if kind == "quantity":
        return quantity_condition(table, value)
    if kind == "number":
        return number_condition(column_bounds(table.c.low, table.c.high), value, as_float=True)
    if kind == "date":
        return date_condition(column_bounds(table.c.date_low, table.c.date_high), value)
    if kind == "string":
        return string_condition(table, None, value)
    if kind == "reference":
        return reference_condition(table, None, value)
    if kind == "uri":
        return uri_condition(table, None, value)
    raise NotSupported(f"Composite components of type {kind} are not supported", "search-parameter-unsupported")
