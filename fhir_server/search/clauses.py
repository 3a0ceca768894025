"""Typed search clauses and index rows: what search hands the store (search.html).

A clause is one search parameter with its OR-ed values; a list of clauses is AND-ed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Token:
    """A token value: `code`, `system|code`, `|code` (no system) or `system|` (any code)."""

    system: str | None
    code: str | None
    system_given: bool


@dataclass(frozen=True)
class IdClause:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class TokenClause:
    param: str
    values: tuple[Token, ...]


Clause = IdClause | TokenClause


@dataclass(frozen=True)
class IndexRow:
    kind: str  # the index table: token, string, date, ...
    param: str
    values: dict[str, Any] = field(default_factory=dict)
