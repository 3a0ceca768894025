"""Typed search clauses and index rows: what search hands the store (R4 search.html).

A query is a list of clauses, AND-ed; each clause holds OR-ed values. The store compiles clauses
into SQL over the index tables (store/compiler.py) and knows nothing of query syntax.

Index rows, one per extracted value (`IndexRow.values` holds the columns of its table):

- string (value, exact): `value` casefolded, accents removed, whitespace collapsed (default and
  :contains matching); `exact` as written (:exact).
- token (system, code, text): Coding/Identifier/ContactPoint system and code or value (either may
  be None); `text` the normalised display or CodeableConcept.text (:text).
- date (low, high): naive UTC datetimes, [low, high), the span the value's precision covers (a
  Period's start and end; an open end is None).
- number (low, high): Decimal; a stored value has low == high.
- quantity (system, code, low, high, canonical_code, canonical_low, canonical_high): the value as
  given and, for units with a known UCUM conversion, in canonical units.
- reference (target_type, target_id, url): `Type/id` split; absolute, canonical and urn references
  in `url`.
- uri (value): as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_server.search.params import SearchParam


@dataclass(frozen=True)
class IndexRow:
    kind: str  # the index table: token, string, date, ...
    param: str
    values: dict[str, Any] = field(default_factory=dict)


# --- values of one search parameter (search.html#ptypes) --------------------------------------


@dataclass(frozen=True)
class Token:
    """A token value: `code`, `system|code`, `|code` (no system) or `system|` (any code)."""

    system: str | None
    code: str | None
    system_given: bool


@dataclass(frozen=True)
class StringValue:
    text: str  # as given; the compiler normalises for default and :contains matching


@dataclass(frozen=True)
class DateValue:
    prefix: str  # eq ne gt lt ge le sa eb ap
    low: datetime  # the span of the given precision, [low, high)
    high: datetime


@dataclass(frozen=True)
class NumberValue:
    prefix: str
    value: Decimal
    low: Decimal  # the range the given precision implies (search.html#number): 100 -> [99.5, 100.5)
    high: Decimal


@dataclass(frozen=True)
class QuantityValue:
    prefix: str
    value: Decimal
    low: Decimal
    high: Decimal
    system: str | None
    code: str | None


@dataclass(frozen=True)
class ReferenceValue:
    target_type: str | None  # None: any type (`:Type` modifier or a bare id)
    target_id: str | None
    url: str | None  # an absolute or canonical reference


@dataclass(frozen=True)
class UriValue:
    uri: str


Value = Token | StringValue | DateValue | NumberValue | QuantityValue | ReferenceValue | UriValue


# --- clauses -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class IdClause:
    ids: tuple[str, ...]


@dataclass(frozen=True)
class LastUpdatedClause:
    values: tuple[DateValue, ...]


@dataclass(frozen=True)
class ParamClause:
    """One parameter with its modifier and OR-ed values; `missing` set for `:missing`."""

    param: SearchParam
    values: tuple[Value, ...] = ()
    modifier: str | None = None  # exact contains text not above below in not-in of-type identifier
    missing: bool | None = None


@dataclass(frozen=True)
class TokenClause:
    """`identifier` on the REST core's conditional path; kept until conditional uses ParamClause."""

    param: str
    values: tuple[Token, ...]


@dataclass(frozen=True)
class ChainClause:
    """`subject:Patient.name=x`: resources whose reference `param` points at a match of `inner`."""

    param: SearchParam
    target_types: tuple[str, ...]
    inner: Clause


@dataclass(frozen=True)
class HasClause:
    """`_has:Observation:patient:code=x`: resources that a `source_type` resource refers to
    through `param` (a reference parameter of the source type), where that resource matches `inner`."""

    source_type: str
    param: SearchParam
    inner: Clause


@dataclass(frozen=True)
class AnyClause:
    """Any one of several clauses (compartment search: any compartment parameter may link)."""

    clauses: tuple[Clause, ...]


Clause = IdClause | LastUpdatedClause | ParamClause | TokenClause | ChainClause | HasClause | AnyClause


@dataclass(frozen=True)
class SortKey:
    param: SearchParam | None  # None for _id / _lastUpdated, named by `special`
    descending: bool
    special: str | None = None


@dataclass(frozen=True)
class Include:
    """`_include=Source:param[:Target]` or `_revinclude=...`, with `:iterate`; param None for `*`."""

    source_type: str
    param: SearchParam | None
    target_type: str | None
    iterate: bool
    reverse: bool
