"""Search clauses to SQL predicates over the index tables (search.html#token)."""

from __future__ import annotations

from sqlalchemy import and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.search.clauses import Clause, IdClause, Token, TokenClause
from fhir_server.store.schema import resource, token_index


def clause_predicate(resource_type: str, clause: Clause) -> ColumnElement[bool]:
    if isinstance(clause, IdClause):
        return resource.c.id.in_(clause.ids)
    return _token_exists(resource_type, clause)


def _token_exists(resource_type: str, clause: TokenClause) -> ColumnElement[bool]:
    return (
        select(token_index.c.resource_id)
        .where(
            token_index.c.resource_type == resource_type,
            token_index.c.resource_id == resource.c.id,
            token_index.c.param == clause.param,
            or_(*(_token_match(value) for value in clause.values)),
        )
        .exists()
    )


def _token_match(token: Token) -> ColumnElement[bool]:
    conditions = []
    if token.code is not None:
        conditions.append(token_index.c.code == token.code)
    if token.system_given:
        conditions.append(token_index.c.system == token.system if token.system else token_index.c.system.is_(None))
    return and_(*conditions)
