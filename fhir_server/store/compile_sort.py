"""`_sort` expressions and keyset paging (R4 search.html#sort, #paging).

A sort key on a parameter is a scalar subquery correlated to the resource row: a resource with
several values sorts by its lowest value ascending and by its highest descending (search.html:
"the lowest value for ascending, the highest for descending"). Dates use their range (min of low
ascending, max of high descending), strings the normalised value, tokens the code, numbers and
quantities the value, references the target id, uris the value. `_id` and `_lastUpdated` are the
resource's own columns. Resources without a value sort last in either direction.

Paging is by keyset, never by offset: a page continues strictly after the last row served, named
by its key (sort values..., resource_type, id). Rows written, changed or deleted between two page
requests therefore never shift the others; a row whose sort value changed meanwhile appears where
its new value puts it (at most once on the pages still to come). The key is handed to clients in
an opaque token (`encode_keyset`): URL-safe base64 of a JSON list whose items are tagged by type
(`["s", str]`, `["t", ISO datetime]`, `["f", float]`, `null`), so that they compare as the same
SQL types they were read as.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Float, and_, cast, false, func, literal_column, null, or_, select, type_coerce
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.errors import Invalid
from fhir_server.search.clauses import SortKey
from fhir_server.store.compiler import Subject, subject_of
from fhir_server.store.schema import INDEX_TABLES, resource

# parameter type -> (column sorted ascending, column sorted descending, Python type of its value)
_SORT_COLUMNS: dict[str, tuple[str, str, type]] = {
    "date": ("low", "high", datetime),
    "string": ("value", "value", str),
    "token": ("code", "code", str),
    "number": ("low", "high", float),
    "quantity": ("low", "high", float),
    "reference": ("target_id", "target_id", str),
    "uri": ("value", "value", str),
}
_SPECIAL: dict[str, type] = {"_id": str, "_lastUpdated": datetime}


def sort_expression(resource_type: str | None, id_column: ColumnElement[Any] | None, key: SortKey) -> Any:
    """The value a resource sorts by for `key` (a column or a scalar subquery; NULL: no value)."""
    return subject_sort_expression(subject_of(resource_type, id_column), key)


def subject_sort_expression(subject: Subject, key: SortKey) -> Any:
    if key.param is None:
        if key.special == "_id":
            return subject.id
        if key.special == "_lastUpdated":
            return subject.row.c.last_updated
        raise Invalid(f"Sorting by '{key.special}' is not supported", "search-sort-unsupported")
    param = key.param
    if param.table is None or param.type not in _SORT_COLUMNS:
        message = f"Sorting by the {param.type} parameter '{param.code}' is not supported"
        raise Invalid(message, "search-sort-unsupported")
    table = INDEX_TABLES[param.table].alias()
    column = table.c[_column_name(key)]
    aggregate = _typed(key, func.max(column) if key.descending else func.min(column))
    return (
        select(aggregate)
        .where(
            table.c.resource_type == subject.type,
            table.c.resource_id == subject.id,
            table.c.param == param.code,
        )
        .scalar_subquery()
    )


def _column_name(key: SortKey) -> str:
    assert key.param is not None
    ascending, descending, _ = _SORT_COLUMNS[key.param.type]
    return descending if key.descending else ascending


def _typed(key: SortKey, value: Any) -> Any:
    """Numbers compare as floats on both databases (SQLite stores REAL anyway)."""
    assert key.param is not None
    if _SORT_COLUMNS[key.param.type][2] is float and key.param.type != "quantity":
        return type_coerce(value, Float())
    return value


def drives_page(resource_type: str | None, sort: Sequence[SortKey]) -> bool:
    """Whether a page can be read in the order of the first sort key's index rows (`driven_matches`)."""
    if resource_type is None or not sort:
        return False
    param = sort[0].param
    return param is not None and param.table is not None and param.type in _SORT_COLUMNS


def driven_matches(
    resource_type: str,
    sort: Sequence[SortKey],
    conditions: Sequence[ColumnElement[bool]],
    subject: Subject,
    valued: bool,
) -> Any:
    """One segment of the matches of a page sorted first by a parameter, read in the order of
    that parameter's index rows: with `ORDER BY value, ... LIMIT`, PostgreSQL walks the index on
    (resource_type, param, value) and stops after a page, instead of computing and sorting the
    key of every match (a `code=` search with `_sort=-date` has ~100,000 matches).

    `valued`: the matches with a value, each joined to its extreme row (the lowest value
    ascending, the highest descending: no row of its own lies beyond it); a resource holding its
    extreme value twice appears twice, and the repository drops the repeat. Otherwise: the
    matches without any value, which sort after all others (as NULL), by type and id."""
    first = sort[0]
    assert first.param is not None
    table = INDEX_TABLES[first.param.table or ""]
    name = _column_name(first)
    rest = [subject_sort_expression(subject, key).label(f"sort_{n}") for n, key in enumerate(sort) if n > 0]
    if not valued:
        absent = table.alias()
        has_value: Any = select(literal_column("1")).where(
            absent.c.resource_type == resource.c.resource_type,
            absent.c.resource_id == resource.c.id,
            absent.c.param == first.param.code,
            absent.c[name].is_not(None),
        )
        empty = _typed(first, cast(null(), table.c[name].type)).label("sort_0")
        return select(resource, empty, *rest).where(~has_value.exists(), *conditions).subquery("matches")
    driving, other = table.alias("sorted_by"), table.alias()
    value = driving.c[name]
    beyond = other.c[name] > value if first.descending else other.c[name] < value
    owned = [other.c.resource_type == driving.c.resource_type, other.c.resource_id == driving.c.resource_id]
    extreme = ~select(literal_column("1")).where(*owned, other.c.param == driving.c.param, beyond).exists()
    on = and_(resource.c.resource_type == driving.c.resource_type, resource.c.id == driving.c.resource_id)
    return (
        select(resource, _typed(first, value).label("sort_0"), *rest)
        .select_from(driving.join(resource, on))
        .where(driving.c.resource_type == resource_type, driving.c.param == first.param.code)
        .where(value.is_not(None), extreme, *conditions)
        .subquery("matches")
    )


def key_type(key: SortKey) -> type:
    """The Python type of a sort value in a keyset (what `decode_keyset` must give back)."""
    if key.param is None:
        return _SPECIAL.get(key.special or "", str)
    return _SORT_COLUMNS.get(key.param.type, ("", "", str))[2]


def order_by(
    columns: Sequence[Any], descending: Sequence[bool], nullable: Sequence[bool], reverse: bool = False
) -> list[Any]:
    """The page order (NULLs last), or exactly its reverse (for the page before a keyset)."""
    clauses = []
    for column, down, may_be_null in zip(columns, descending, nullable, strict=True):
        clause = column.desc() if down != reverse else column.asc()
        if may_be_null:
            clause = clause.nulls_first() if reverse else clause.nulls_last()
        clauses.append(clause)
    return clauses


def before_predicate(
    columns: Sequence[Any], descending: Sequence[bool], nullable: Sequence[bool], key: Sequence[Any]
) -> ColumnElement[bool]:
    """Rows strictly before `key` in the page order: neither after it nor the keyed row itself
    (the order is total: resource type and id end every key). Unknown comparisons count as false."""
    after = func.coalesce(after_predicate(columns, descending, nullable, key), false())
    same_row = and_(columns[-2] == key[-2], columns[-1] == key[-1])
    return and_(~after, ~same_row)


def after_predicate(
    columns: Sequence[Any], descending: Sequence[bool], nullable: Sequence[bool], after: Sequence[Any]
) -> ColumnElement[bool]:
    """Rows strictly after the key `after` in the order of `order_by` (NULLs last both ways):
    for some i, every earlier column equals its key value and column i comes after its own."""
    alternatives = []
    for i, (column, down, may_be_null, value) in enumerate(zip(columns, descending, nullable, after, strict=True)):
        if value is None:
            continue  # NULLs come last: nothing follows a NULL within its own column
        beyond = column < value if down else column > value
        if may_be_null:
            beyond = or_(beyond, column.is_(None))
        earlier = [_equal(c, v) for c, v in zip(columns[:i], after[:i], strict=True)]
        alternatives.append(and_(*earlier, beyond))
    return or_(*alternatives) if alternatives else false()


def _equal(column: Any, value: Any) -> ColumnElement[bool]:
    return column.is_(None) if value is None else column == value  # type: ignore[no-any-return]


def check_keyset(after: Sequence[Any], keys: Sequence[SortKey]) -> tuple[Any, ...]:
    """`after` fits a search sorted by `keys` (the sort values, then resource type and id)."""
    expected = [key_type(key) for key in keys] + [str, str]
    fits = len(after) == len(expected) and all(
        (value is None and i < len(keys)) or isinstance(value, kind)
        for i, (value, kind) in enumerate(zip(after, expected, strict=False))
    )
    if not fits:
        raise Invalid("The paging token does not belong to this search", "search-page-token-invalid")
    return tuple(after)


def encode_keyset(values: Sequence[Any]) -> str:
    items = [_tagged(value) for value in values]
    raw = json.dumps(items, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _tagged(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, datetime):
        return ["t", value.isoformat()]
    if isinstance(value, float | int) and not isinstance(value, bool):
        return ["f", float(value)]
    if isinstance(value, str):
        return ["s", value]
    raise TypeError(f"cannot put a {type(value).__name__} in a keyset")


def decode_keyset(token: str) -> tuple[Any, ...]:
    """The key encoded by `encode_keyset`; a damaged token is a 400."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        return tuple(_untagged(item) for item in json.loads(raw))
    except (ValueError, TypeError, binascii.Error):
        raise Invalid("The paging token is not valid", "search-page-token-invalid") from None


def _untagged(item: Any) -> Any:
    if item is None:
        return None
    tag, value = item
    if tag == "t" and isinstance(value, str):
        return datetime.fromisoformat(value)
    if tag == "f" and isinstance(value, float | int):
        return float(value)
    if tag == "s" and isinstance(value, str):
        return value
    raise ValueError(tag)
