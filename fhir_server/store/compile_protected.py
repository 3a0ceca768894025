"""Search values among protected values, hashed before compiling (issue 5 point 9).

The query parser marks the token values of parameters over protected values as `ProtectedToken`
(search/protected.py); their index rows hold keyed hashes (store/protection.py). Before a search
is compiled, `blind_clauses` replaces each such value, wherever it sits (chains, `_has`,
`_filter`'s and/or/not), by the OR-ed tokens that can match: the token with its code (or an
`:of-type` value) hashed under each search-hash key, and the token as written when the parameter
also holds clear values. OR-ed values of one parameter are what a ParamClause holds already, so
the compiler sees nothing new: `code IN (...)` through the same index.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from fhir_server.search.clauses import (
    AllClause,
    AnyClause,
    ChainClause,
    Clause,
    HasClause,
    NotClause,
    ParamClause,
    ProtectedToken,
    Token,
    Value,
    param_clauses,
)
from fhir_server.search.values import OfTypeToken

Hashes = Callable[[str], tuple[str, ...]]


def needs_blinding(clauses: Sequence[Clause]) -> bool:
    return any(
        isinstance(value, ProtectedToken)
        for clause in clauses
        for found in param_clauses(clause)
        for value in found.values
    )


def blind_clauses(clauses: Sequence[Clause], hashes: Hashes) -> Sequence[Clause]:
    """`clauses` with every ProtectedToken replaced (module docstring); as given when none has one."""
    if not needs_blinding(clauses):
        return clauses
    return [_blinded(clause, hashes) for clause in clauses]


def _blinded(clause: Clause, hashes: Hashes) -> Clause:
    if isinstance(clause, ParamClause):
        values = tuple(found for value in clause.values for found in _expanded(value, hashes))
        return replace(clause, values=values)
    if isinstance(clause, ChainClause | HasClause):
        return replace(clause, inner=_blinded(clause.inner, hashes))
    if isinstance(clause, AnyClause | AllClause):
        return replace(clause, clauses=tuple(_blinded(inner, hashes) for inner in clause.clauses))
    if isinstance(clause, NotClause):
        return replace(clause, clause=_blinded(clause.clause, hashes))
    return clause


def _expanded(value: Value, hashes: Hashes) -> tuple[Value, ...]:
    if not isinstance(value, ProtectedToken):
        return (value,)
    token = value.token
    hashed: list[Token]
    if isinstance(token, OfTypeToken):
        hashed = [replace(token, value=digest) for digest in hashes(token.value)]
    else:
        hashed = [replace(token, code=digest) for digest in hashes(token.code or "")]
    return (token, *hashed) if value.clear else tuple(hashed)
