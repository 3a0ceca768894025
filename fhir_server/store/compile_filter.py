"""Index-row conditions of `CompareClause`: the `_filter` comparisons without a URL search form
(R4 search_filter.html#ops; search/filter.py says which those are).

Each returns the condition one row of the parameter's index table must meet; compiler.py wraps it
in the usual EXISTS, so a resource matches when one of its values does ("an item in the set").
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, false, func, not_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from fhir_server.errors import NotSupported
from fhir_server.search.clauses import CompareClause, DateValue, StringValue
from fhir_server.search.normalize import normalize
from fhir_server.store.compile_ranges import column_bounds, date_condition
from fhir_server.store.compile_values import reference_condition, token_condition, uri_condition


def _unequal(equal: ColumnElement[bool], present: ColumnElement[Any]) -> ColumnElement[bool]:
    """A row with a value (`present` not null) for which `equal` is false, NULL counting as false."""
    return and_(present.is_not(None), not_(func.coalesce(equal, false())))


def compare_condition(table: FromClause, clause: CompareClause) -> ColumnElement[bool]:
    kind, operator, value = clause.param.table, clause.operator, clause.value
    if kind == "string" and isinstance(value, StringValue):
        text = normalize(value.text)
        if operator == "eq":
            return table.c.value == text  # type: ignore[no-any-return]
        if operator == "ne":
            return table.c.value != text  # type: ignore[no-any-return]
        if operator == "ew":
            return table.c.value.endswith(text, autoescape=True)  # type: ignore[no-any-return]
    elif operator == "ne" and kind == "token":
        return _unequal(token_condition(table, value), table.c.code)
    elif operator == "ne" and kind == "reference":
        return _unequal(reference_condition(table, None, value), func.coalesce(table.c.target_id, table.c.url))
    elif operator == "ne" and kind == "uri":
        return _unequal(uri_condition(table, None, value), table.c.value)
    elif operator == "po" and kind == "date" and isinstance(value, DateValue):
        return date_condition(column_bounds(table.c.low, table.c.high), value)
    message = f"The _filter operator '{operator}' is not supported on {clause.param.type} parameters"
    raise NotSupported(message, "search-parameter-unsupported")
