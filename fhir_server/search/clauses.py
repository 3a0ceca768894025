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
- composite (element_key, component, then the value columns of the component's type): one row
  per value of one component of one element the composite's expression selects (an Observation,
  one Observation.component, one UsageContext); `element_key` numbers those elements within the
  resource (per parameter), `component` is the component's position. Token, string, quantity,
  reference and uri components use the columns named above; a number uses `low`/`high` (floats),
  a date `date_low`/`date_high`. Only elements with a value for every component are indexed. A
  search value `a$b` matches when one element has a row of component 0 matching `a` and a row
  of component 1 matching `b`: one EXISTS over the table joined to itself on element_key.

Rows under derived parameter names (search/params.py):

- `<reference param>:identifier` (token table): Reference.identifier (system, value, type.text),
  for `:identifier` (search.html#reference).
- `<token param>:of-type` (token table): each Identifier with a value, once per Identifier.type
  coding with a system and a code: system = the coding's system, code = `of_type_code(coding
  code, value)` (`MR|12345`, a `|` or `\\` in the coding code escaped), for `:of-type`
  (search.html#token).

Full-text rows (search/fulltext.py): `_content` and `_text` in the string table, `value` the
normalised words of the whole resource or of its narrative between single spaces, with a leading
and a trailing space (` peter james chalmers `), `exact` None; a long text takes several rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_server.model.protect import fingerprint
from fhir_server.search.params import SearchParam


@dataclass(frozen=True)
class IndexRow:
    kind: str  # the index table: token, string, date, ...
    param: str
    values: dict[str, Any] = field(default_factory=dict)
    # A protected value (model/sensitive.py) is in `values["code"]` from this position on: the
    # store writes its keyed hash there instead (model/protect.py `blind`), never the value.
    secret: int | None = None


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


@dataclass(frozen=True)
class CompositeValue:
    """`a$b`: one value per component, in order, each of its component's type (search.html#composite)."""

    parts: tuple[Value, ...]


@dataclass(frozen=True)
class CodeSet:
    """A token search value the store resolved from stored terminology (search.html#token: the
    ValueSet of `:in` / `:not-in`, the CodeSystem hierarchy of `:above` / `:below`): codes by
    system, sorted; system None matches the codes in any system."""

    codes: tuple[tuple[str | None, tuple[str, ...]], ...]


@dataclass(frozen=True)
class ProtectedToken:
    """A token value searched among protected values (ContactPoint.value, national identifiers;
    model/sensitive.py), whose index rows hold keyed hashes: the store replaces it, before
    compiling, by `token` with its code (or an `:of-type` token's value) hashed under every
    search-hash key, plus `token` itself when `clear` (a parameter that also holds values kept
    in clear, such as non-national identifiers). Its repr shows a digest, never the value (the
    repr keys conditional writes' locks, search/conditional.py, which the store hashes again)."""

    token: Token
    clear: bool

    def __repr__(self) -> str:
        digest = fingerprint(repr(self.token))
        return f"ProtectedToken(system={self.token.system!r}, clear={self.clear}, value=sha256:{digest})"


Value = (
    Token
    | StringValue
    | DateValue
    | NumberValue
    | QuantityValue
    | ReferenceValue
    | UriValue
    | CompositeValue
    | CodeSet
    | ProtectedToken
)


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


@dataclass(frozen=True)
class AllClause:
    """Every one of several clauses (`_filter`'s `and`); no clauses: every resource."""

    clauses: tuple[Clause, ...]


@dataclass(frozen=True)
class NotClause:
    """Resources that do not match `clause` (`_filter`'s `not(...)`)."""

    clause: Clause


@dataclass(frozen=True)
class TextClause:
    """`_text` / `_content` (search.html#text, #content): OR-ed terms, each normalised into words
    as search/fulltext.py stores them (`blood pressure`); a resource matches a term when a row of
    the parameter in idx_string contains a space followed by the term."""

    code: str  # _text | _content
    terms: tuple[str, ...]


@dataclass(frozen=True)
class CompareClause:
    """A `_filter` comparison no URL search form expresses (search_filter.html#ops), matched per
    index row of `param`: string `eq` (whole value, normalised), `ew` (ends with, normalised) and
    `ne`; token, reference and uri `ne` (a value other than the given one); date `po` (overlaps)."""

    param: SearchParam
    operator: str
    value: Value


Clause = (
    IdClause
    | LastUpdatedClause
    | ParamClause
    | TokenClause
    | ChainClause
    | HasClause
    | AnyClause
    | AllClause
    | NotClause
    | CompareClause
    | TextClause
)


def param_clauses(clause: Clause) -> Iterator[ParamClause]:
    """Every ParamClause in `clause`'s tree: through chains, `_has`, and `_filter`'s and/or/not
    (what the store resolves before compiling: code sets, protected values)."""
    if isinstance(clause, ParamClause):
        yield clause
    elif isinstance(clause, ChainClause | HasClause):
        yield from param_clauses(clause.inner)
    elif isinstance(clause, AnyClause | AllClause):
        for inner in clause.clauses:
            yield from param_clauses(inner)
    elif isinstance(clause, NotClause):
        yield from param_clauses(clause.clause)


def searched_params(clauses: Iterable[Clause], sort: Iterable[SortKey] = ()) -> frozenset[str]:
    """The search parameters `clauses` and `sort` examine on the resource they are about (not
    on the resources their chains and `_has` reach): what decides whether a subset view of a
    resource may be matched (DESIGN.md section 3: hidden fields are neither searchable nor sortable)."""
    found: set[str] = set()
    pending = list(clauses)
    while pending:
        clause = pending.pop()
        if isinstance(clause, IdClause):
            found.add("_id")
        elif isinstance(clause, LastUpdatedClause):
            found.add("_lastUpdated")
        elif isinstance(clause, TokenClause):
            found.add(clause.param)
        elif isinstance(clause, TextClause):
            found.add(clause.code)
        elif isinstance(clause, HasClause):
            found.add("_has")
        elif isinstance(clause, ParamClause | ChainClause | CompareClause):
            found.add(clause.param.code)
        elif isinstance(clause, AnyClause | AllClause):
            pending.extend(clause.clauses)
        else:
            pending.append(clause.clause)
    found.update(key.param.code if key.param is not None else key.special or "" for key in sort)
    return frozenset(found)


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
