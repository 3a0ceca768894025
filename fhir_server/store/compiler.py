"""Search clauses to SQL predicates over the index tables (R4 search.html).

`clause_predicate` turns one clause into a boolean SQL expression about one resource row (the
"subject": its type and id columns). A parameter becomes

    EXISTS (SELECT 1 FROM idx_<type> i WHERE i.resource_type = <subject type>
            AND i.resource_id = <subject id> AND i.param = :code AND (<value 1> OR <value 2> ...))

with the value conditions of compile_values.py and compile_ranges.py. `:missing` and token
`:not` are the same EXISTS without values, or negated. Reference `:identifier` and token
`:of-type` read token rows under a derived parameter name (search/params.py); a composite is one
EXISTS over idx_composite joined to itself per component (compile_composite.py). Chains
(search.html#chaining) and `_has` (#has) are one EXISTS over idx_reference joined to the resource
on its other end, with the inner clause compiled against that resource, nested for deeper chains:
always one SQL statement. Token `:in`, `:not-in`, `:above` and `:below` match the codes that
compile_terminology.py read beforehand; `_text` and `_content` are one EXISTS over their
idx_string rows (compile_values.text_condition); `_filter`'s `and`/`or`/`not` are AND/OR/NOT of
the parts (AllClause, AnyClause, NotClause), its other comparisons row conditions from
compile_filter.py.

Visibility: the resource on the other end of a chain or `_has` must be current, not deleted, and
visible to the caller; `visible(row)` (given by the repository, from the caller's Visibility) is
the predicate on a `resource` alias that says so. Every index subquery uses its own alias, so
nested subqueries never correlate to the wrong table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, false, literal_column, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from fhir_server.errors import Invalid, NotSupported
from fhir_server.search.clauses import (
    AllClause,
    AnyClause,
    ChainClause,
    Clause,
    CompareClause,
    HasClause,
    IdClause,
    LastUpdatedClause,
    NotClause,
    ParamClause,
    ProtectedToken,
    TextClause,
    TokenClause,
    Value,
    searched_params,
)
from fhir_server.search.params import identifier_param, of_type_code, of_type_param
from fhir_server.search.values import OfTypeToken
from fhir_server.store.compile_composite import composite_exists
from fhir_server.store.compile_filter import compare_condition
from fhir_server.store.compile_ranges import (
    column_bounds,
    date_condition,
    instant_bounds,
    number_condition,
    quantity_condition,
)
from fhir_server.store.compile_terminology import CODE_SET_MODIFIERS, code_set_condition
from fhir_server.store.compile_values import (
    reference_condition,
    string_condition,
    text_condition,
    token_condition,
    token_text_condition,
    unsupported,
    uri_condition,
)
from fhir_server.store.schema import INDEX_TABLES, reference_index, resource, string_index, token_index


class Visible(Protocol):
    """The caller's visibility as a predicate on a `resource` table or alias. `searched`: the
    search parameters the query examines on that row (search.clauses.searched_params; empty when
    the row is reached by id or by a reference), which decides whether a subset view of it may
    be matched; None when unknown, which allows full views only."""

    def __call__(self, row: FromClause, searched: frozenset[str] | None = None) -> ColumnElement[bool]: ...


@dataclass(frozen=True)
class Subject:
    """The resource row a predicate is about: its type (a string, or a column when it varies),
    its id column, and the resource table/alias holding it (for `_lastUpdated`)."""

    type: Any
    id: ColumnElement[Any]
    row: FromClause


def subject_of(resource_type: str | None, id_column: ColumnElement[Any] | None = None) -> Subject:
    """The subject for `id_column` (default `resource.c.id`): the id column of a `resource` table
    or alias. With no resource_type the row's own resource_type column is used (system search)."""
    id_column = resource.c.id if id_column is None else id_column
    row = getattr(id_column, "table", None)
    if row is None or "last_updated" not in row.c:
        raise ValueError("id_column must be the id column of the resource table or of an alias of it")
    return Subject(resource_type if resource_type else row.c.resource_type, id_column, row)


def clause_predicate(
    resource_type: str | None,
    id_column: ColumnElement[Any] | None,
    clause: Clause,
    visible: Visible | None = None,
) -> ColumnElement[bool]:
    """`clause` as a predicate correlated to `id_column` (None: `resource.c.id`) of a resource of
    `resource_type` (None: any type, taken from the row). `visible` narrows the resources chains
    and `_has` reach (None: every current, non-deleted resource)."""
    return predicate(subject_of(resource_type, id_column), clause, visible)


def predicate(subject: Subject, clause: Clause, visible: Visible | None) -> ColumnElement[bool]:
    """`clause` about `subject` (clause_predicate, for a subject that is not a plain id column)."""
    if isinstance(clause, IdClause):
        return subject.id.in_(clause.ids)
    if isinstance(clause, LastUpdatedClause):
        bounds = instant_bounds(subject.row.c.last_updated)
        return _any(clause.values, lambda v: date_condition(bounds, v))
    if isinstance(clause, TokenClause):
        table = token_index.alias()
        return _exists(table, subject, clause.param, _any(clause.values, lambda v: token_condition(table, v)))
    if isinstance(clause, ParamClause):
        return _param(subject, clause)
    if isinstance(clause, TextClause):
        table = string_index.alias()
        return _exists(table, subject, clause.code, _any(clause.terms, lambda term: text_condition(table, term)))
    if isinstance(clause, ChainClause):
        return _chain(subject, clause, visible)
    if isinstance(clause, AnyClause):
        return or_(*(predicate(subject, inner, visible) for inner in clause.clauses)) if clause.clauses else false()
    if isinstance(clause, AllClause):
        return and_(true(), *(predicate(subject, inner, visible) for inner in clause.clauses))
    if isinstance(clause, NotClause):
        return not_(predicate(subject, clause.clause, visible))
    if isinstance(clause, CompareClause):
        table = INDEX_TABLES[clause.param.table or ""].alias()
        return _exists(table, subject, clause.param.code, compare_condition(table, clause))
    return _has(subject, clause, visible)


def _exists(table: FromClause, subject: Subject, param: str, *conditions: ColumnElement[bool]) -> ColumnElement[bool]:
    return (
        select(literal_column("1"))
        .select_from(table)
        .where(
            table.c.resource_type == subject.type,
            table.c.resource_id == subject.id,
            table.c.param == param,
            *conditions,
        )
        .exists()
    )


def _param(subject: Subject, clause: ParamClause) -> ColumnElement[bool]:
    param = clause.param
    kind = param.table
    if kind is None:
        message = f"The {param.type} parameter '{param.code}' is not supported yet"
        raise NotSupported(message, "search-parameter-unsupported")
    table = INDEX_TABLES[kind].alias()
    if clause.missing is not None:
        present = _exists(table, subject, param.code)
        return not_(present) if clause.missing else present
    modifier = clause.modifier
    if kind == "token" and modifier == "not":
        return not_(_exists(table, subject, param.code, _any(clause.values, lambda v: token_condition(table, v))))
    if kind == "reference" and modifier == "identifier":
        return _reference_identifier(subject, clause)
    if kind == "token" and modifier == "of-type":
        return _of_type(subject, clause)
    if kind == "token" and modifier in CODE_SET_MODIFIERS:  # values resolved by compile_terminology.py
        present = _exists(table, subject, param.code, _any(clause.values, lambda v: code_set_condition(table, v)))
        return not_(present) if modifier == "not-in" else present
    if kind == "composite":
        if modifier is not None:
            raise unsupported("composite", modifier)
        return composite_exists(subject.type, subject.id, param, clause.values)
    return _exists(table, subject, param.code, _values(kind, table, modifier, clause.values))


def _any(values: tuple[Any, ...], condition: Callable[[Any], ColumnElement[bool]]) -> ColumnElement[bool]:
    return or_(*(condition(value) for value in values)) if values else false()


def _values(kind: str, table: FromClause, modifier: str | None, values: tuple[Value, ...]) -> ColumnElement[bool]:
    if kind == "string":
        return _any(values, lambda v: string_condition(table, modifier, v))
    if kind == "token":
        if modifier == "text":
            return _any(values, lambda v: token_text_condition(table, v))
        if modifier is not None:
            raise unsupported("token", modifier)
        return _any(values, lambda v: token_condition(table, v))
    if kind == "reference":
        return _any(values, lambda v: reference_condition(table, modifier, v))
    if kind == "uri":
        return _any(values, lambda v: uri_condition(table, modifier, v))
    if modifier is not None:
        raise unsupported(kind, modifier)
    if kind == "date":
        bounds = column_bounds(table.c.low, table.c.high)
        return _any(values, lambda v: date_condition(bounds, v))
    if kind == "number":
        bounds = column_bounds(table.c.low, table.c.high)
        return _any(values, lambda v: number_condition(bounds, v))
    return _any(values, lambda v: quantity_condition(table, v))


def _reference_identifier(subject: Subject, clause: ParamClause) -> ColumnElement[bool]:
    """`subject:identifier=system|value` (search.html#reference): the Reference.identifier."""
    table = token_index.alias()
    matches = _any(clause.values, lambda v: token_condition(table, v))
    return _exists(table, subject, identifier_param(clause.param.code), matches)


def _of_type(subject: Subject, clause: ParamClause) -> ColumnElement[bool]:
    """`identifier:of-type=system|code|value` (search.html#token): an Identifier whose type has
    the coding system|code and whose value is `value`, from the `<code>:of-type` token rows."""
    table = token_index.alias()

    def condition(value: Value) -> ColumnElement[bool]:
        if isinstance(value, ProtectedToken):  # not hashed before compiling: clear values only
            return condition(value.token) if value.clear else false()
        if not isinstance(value, OfTypeToken):
            raise Invalid(f"A {type(value).__name__} is not an :of-type search value", "search-value-invalid")
        return and_(table.c.system == value.system, table.c.code == of_type_code(value.code or "", value.value))

    return _exists(table, subject, of_type_param(clause.param.code), _any(clause.values, condition))


def _reachable(row: FromClause, visible: Visible | None, inner: Clause) -> ColumnElement[bool]:
    """The resource on the other end is current and visible to the caller for what `inner`
    examines on it."""
    conditions = [row.c.deleted == false()]
    if visible is not None:
        conditions.append(visible(row, searched_params([inner])))
    return and_(*conditions)


def _chain(subject: Subject, clause: ChainClause, visible: Visible | None) -> ColumnElement[bool]:
    """Resources whose reference `param` points at a (visible) resource matching `inner`."""
    link = reference_index.alias()
    target = resource.alias()
    types = clause.target_types
    conditions = [target.c.resource_type == link.c.target_type, target.c.id == link.c.target_id]
    if types:
        conditions.append(link.c.target_type.in_(types))
    target_type = types[0] if len(types) == 1 else target.c.resource_type
    inner = predicate(Subject(target_type, target.c.id, target), clause.inner, visible)
    return (
        select(literal_column("1"))
        .select_from(link.join(target, and_(*conditions)))
        .where(
            link.c.resource_type == subject.type,
            link.c.resource_id == subject.id,
            link.c.param == clause.param.code,
            _reachable(target, visible, clause.inner),
            inner,
        )
        .exists()
    )


def _has(subject: Subject, clause: HasClause, visible: Visible | None) -> ColumnElement[bool]:
    """Resources that a (visible) `source_type` resource matching `inner` refers to through its
    reference parameter `param`."""
    link = reference_index.alias()
    source = resource.alias()
    on = and_(source.c.resource_type == link.c.resource_type, source.c.id == link.c.resource_id)
    inner = predicate(Subject(clause.source_type, source.c.id, source), clause.inner, visible)
    return (
        select(literal_column("1"))
        .select_from(link.join(source, on))
        .where(
            link.c.target_type == subject.type,
            link.c.target_id == subject.id,
            link.c.resource_type == clause.source_type,
            link.c.param == clause.param.code,
            _reachable(source, visible, clause.inner),
            inner,
        )
        .exists()
    )
