"""Index rows of a resource: every search parameter's values, as the index tables hold them.

For each parameter of the resource's type that has an index table (registry.py), the compiled
expression (fhirpath_compile.py) yields typed values, which are converted into rows following
R4 search.html#ptypes and the column table in clauses.py:

- string: primitives as they are; HumanName and Address one row per part (family, given, text,
  prefix, suffix; line, city, district, state, postalCode, country, text).
- token: Coding (system, code, display), CodeableConcept (a row per coding, and one with only
  the text), Identifier (system, value, type.text), ContactPoint (its value as the code: R4 uses
  no token system for it), code/string/id/uri/boolean primitives (booleans as true/false).
- date: date/dateTime/instant (and strings that read as one) as the span their precision
  covers; Period from the start's low to the end's high (open ends None); Timing by its events
  and its repeat.boundsPeriod.
- number: decimal/integer (low == high); a Range by its low and high values.
- quantity: Quantity, Age, Duration, Count, Distance, SimpleQuantity (system, code, value; a
  comparator opens the other end), Money (code = currency, system ISO 4217), Range; plus the
  value in canonical units for the UCUM units normalize.py knows.
- reference: Reference (`Type/id` split; absolute URLs ending in Type/id also split, with the
  URL kept; urn:uuid, urn:oid, canonical and other URLs in `url`), canonical and uri values
  (`url`), and a whole resource (Bundle.entry[0].resource) by its type and id.
- uri: uri/url/canonical/oid/uuid values as written.

Values of any other type are not indexable by that parameter type and are skipped.

Protected values (model/sensitive.py: ContactPoint.value, national identifiers) are never
written in clear: their token rows are marked for the store to hash, other rows holding one are
left out (search/protected.py).

Alongside: a Reference's `identifier` as a token row under `<param>:identifier`, and an
Identifier's value with each of its type codings under `<param>:of-type` (search/clauses.py).

Composite parameters (search.html#composite): the parameter's expression selects elements; each
component's expression (relative to the element, fhirpath_compile.compile_relative) gives values
that the component type's conversion above turns into columns, placed into the composite table's
columns (a date's low/high as date_low/date_high, a number's as floats). An element is indexed
when every component has a value; identical elements once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

from fhir_server.errors import Invalid
from fhir_server.model.dates import parse_instant_range
from fhir_server.model.sensitive import Secrets, secrets_of
from fhir_server.search.clauses import IndexRow
from fhir_server.search.fhirpath_compile import Extractor, compile_expression, compile_relative, fallback, is_a
from fhir_server.search.fhirpath_parse import Unsupported
from fhir_server.search.normalize import UCUM, normalize, split_reference, ucum_canonical
from fhir_server.search.params import SearchParam, identifier_param, of_type_code, of_type_param
from fhir_server.search.protected import protect_rows
from fhir_server.search.registry import generation, search_params

Columns = dict[str, Any]
Convert = Callable[[Any, str], Iterator[Columns]]
Rows = Callable[[dict[str, Any]], Iterator[IndexRow]]

# The value columns of idx_composite (store/schema.py), every one in every row.
COMPOSITE_COLUMNS = (
    "system",
    "code",
    "text",
    "value",
    "exact",
    "low",
    "high",
    "canonical_code",
    "canonical_low",
    "canonical_high",
    "date_low",
    "date_high",
    "target_type",
    "target_id",
    "url",
)

ISO_4217 = "urn:iso:std:iso:4217"
_NAME_PARTS = ("family", "given", "text", "prefix", "suffix")
_ADDRESS_PARTS = ("line", "city", "district", "state", "postalCode", "country", "text")
_OPEN_BELOW = frozenset({"<", "<="})
_OPEN_ABOVE = frozenset({">", ">="})


@cache
def extractor(expression: str) -> Extractor:
    """The compiled extractor of an expression, or fhirpathpy when it is outside the subset."""
    try:
        return compile_expression(expression)
    except Unsupported:
        return fallback(expression)


def _indexed(resource_type: str) -> tuple[tuple[str, Rows], ...]:
    return _indexed_in(resource_type, generation())


@lru_cache(maxsize=1024)
def _indexed_in(resource_type: str, _generation: int) -> tuple[tuple[str, Rows], ...]:
    """Row makers of a type's parameters, for one generation of the registry (custom parameters)."""
    return tuple(
        (param.code, _composite_rows(param) if param.table == "composite" else _value_rows(param))
        for param in search_params(resource_type).values()
        if param.table is not None and param.expression is not None
    )


def index_rows(
    resource: dict[str, Any], skip: frozenset[str] = frozenset(), secrets: Secrets | None = None
) -> list[IndexRow]:
    """One row per distinct value of every indexed parameter of the resource's type (`skip`:
    codes to leave out); protected values (`secrets`, by default those model/sensitive.py finds
    with the built-in national identifier table) marked for hashing or left out (protected.py)."""
    if secrets is None:
        secrets = secrets_of(resource)
    rows: list[IndexRow] = []
    seen: set[tuple[Any, ...]] = set()
    for code, make in _indexed(resource["resourceType"]):
        if code in skip:
            continue
        for row in make(resource):
            key = (row.param, *row.values.values())
            if key not in seen:
                seen.add(key)
                rows.append(row)
    return protect_rows(rows, secrets)


def _value_rows(param: SearchParam) -> Rows:
    extract, table, code = extractor(param.expression or ""), param.table or "", param.code
    convert = _CONVERTERS[table]
    alongside = _ALONGSIDE.get(table)

    def make(resource: dict[str, Any]) -> Iterator[IndexRow]:
        for value, type_key in extract(resource):
            for columns in convert(value, type_key):
                yield IndexRow(table, code, columns)
            if alongside is not None:
                yield from alongside(code, value, type_key)

    return make


def _identifier_rows(code: str, value: Any, type_key: str) -> Iterator[IndexRow]:
    """`Reference.identifier`, for `:identifier` (search.html#reference)."""
    if type_key == "Reference" and isinstance(value, dict) and isinstance(value.get("identifier"), dict):
        for columns in token_columns(value["identifier"], "Identifier"):
            yield IndexRow("token", identifier_param(code), columns)


def _of_type_rows(code: str, value: Any, type_key: str) -> Iterator[IndexRow]:
    """An Identifier's value under each of its type codings, for `:of-type` (search.html#token)."""
    if type_key != "Identifier" or not isinstance(value, dict):
        return
    kind, number = value.get("type"), value.get("value")
    if not isinstance(kind, dict) or not isinstance(number, str) or not number:
        return
    for coding in kind.get("coding") or ():
        system = coding.get("system") if isinstance(coding, dict) else None
        type_code = coding.get("code") if isinstance(coding, dict) else None
        if isinstance(system, str) and system and isinstance(type_code, str) and type_code:
            columns = {"system": system, "code": of_type_code(type_code, number), "text": None}
            yield IndexRow("token", of_type_param(code), columns)


_ALONGSIDE: dict[str, Callable[[str, Any, str], Iterator[IndexRow]]] = {
    "reference": _identifier_rows,
    "token": _of_type_rows,
}


# --- composite ---------------------------------------------------------------------------------

_EMPTY_COMPOSITE: Columns = dict.fromkeys(COMPOSITE_COLUMNS)


def _placed(kind: str, columns: Columns) -> Columns:
    """A component value's columns as idx_composite holds them (every column present)."""
    if kind == "date":
        return {**_EMPTY_COMPOSITE, "date_low": columns["low"], "date_high": columns["high"]}
    if kind == "number":
        return {**_EMPTY_COMPOSITE, "low": _float(columns["low"]), "high": _float(columns["high"])}
    return {**_EMPTY_COMPOSITE, **columns}


def _composite_rows(param: SearchParam) -> Rows:
    elements, code = extractor(param.expression or ""), param.code
    parts = [(compile_relative(c.expression), _CONVERTERS[c.type], c.type) for c in param.components]

    def component_values(element: tuple[Any, str], resource: dict[str, Any]) -> list[list[Columns]] | None:
        found: list[list[Columns]] = []
        for extract, convert, kind in parts:
            values = [_placed(kind, columns) for item in extract(element, resource) for columns in convert(*item)]
            if not values:
                return None
            found.append(values)
        return found

    def make(resource: dict[str, Any]) -> Iterator[IndexRow]:
        seen: set[tuple[Any, ...]] = set()
        for element in elements(resource):
            found = component_values(element, resource)
            if found is None:
                continue
            signature = tuple(tuple(tuple(columns.values()) for columns in values) for values in found)
            if signature in seen:
                continue
            seen.add(signature)
            key = len(seen) - 1
            for position, values in enumerate(found):
                for columns in values:
                    yield IndexRow("composite", code, {"element_key": key, "component": position, **columns})

    return make


def _strings(value: Any) -> Iterator[str]:
    """The non-empty strings of a primitive or a list of them."""
    for item in value if isinstance(value, list) else (value,):
        if isinstance(item, str) and item.strip():
            yield item


# --- string ------------------------------------------------------------------------------------


def string_columns(value: Any, type_key: str) -> Iterator[Columns]:
    if isinstance(value, dict) and type_key in ("HumanName", "Address"):
        parts = _NAME_PARTS if type_key == "HumanName" else _ADDRESS_PARTS
        for part in parts:
            for text in _strings(value.get(part)):
                yield {"value": normalize(text), "exact": text}
    elif isinstance(value, str) and value.strip():
        yield {"value": normalize(value), "exact": value}


# --- token -------------------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return normalize(value) if isinstance(value, str) and value.strip() else None


def _token(system: Any, code: Any, text: str | None = None) -> Iterator[Columns]:
    system = system if isinstance(system, str) else None
    code = code if isinstance(code, str) else None
    if system or code or text:
        yield {"system": system, "code": code, "text": text}


def token_columns(value: Any, type_key: str) -> Iterator[Columns]:
    if isinstance(value, bool):
        yield {"system": None, "code": "true" if value else "false", "text": None}
    elif isinstance(value, (str, int, Decimal)):
        yield from _token(None, str(value))
    elif not isinstance(value, dict):
        return
    elif type_key == "Coding":
        yield from _token(value.get("system"), value.get("code"), _text(value.get("display")))
    elif type_key == "CodeableConcept":
        for coding in value.get("coding") or ():
            if isinstance(coding, dict):
                yield from _token(coding.get("system"), coding.get("code"), _text(coding.get("display")))
        yield from _token(None, None, _text(value.get("text")))
    elif type_key == "Identifier":
        kind = value.get("type")
        text = _text(kind.get("text")) if isinstance(kind, dict) else None
        yield from _token(value.get("system"), value.get("value"), text)
    elif type_key == "ContactPoint":
        yield from _token(None, value.get("value"))


# --- date --------------------------------------------------------------------------------------


def _span(value: Any) -> tuple[datetime, datetime] | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_instant_range(value, "")
    except (Invalid, OverflowError):  # not a date, or at the edge of datetime's range (an open end)
        return None


def _period(value: dict[str, Any]) -> Iterator[Columns]:
    start, end = _span(value.get("start")), _span(value.get("end"))
    if start or end:
        yield {"low": start[0] if start else None, "high": end[1] if end else None}


def date_columns(value: Any, type_key: str) -> Iterator[Columns]:
    if isinstance(value, str):
        span = _span(value)
        if span:
            yield {"low": span[0], "high": span[1]}
    elif not isinstance(value, dict):
        return
    elif type_key == "Period":
        yield from _period(value)
    elif type_key == "Timing":
        for event in _strings(value.get("event")):
            yield from date_columns(event, "dateTime")
        bounds = (value.get("repeat") or {}).get("boundsPeriod")
        if isinstance(bounds, dict):
            yield from _period(bounds)


# --- number and quantity -----------------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, Decimal, float)):
        return None
    return Decimal(str(value)) if isinstance(value, float) else Decimal(value)


def number_columns(value: Any, type_key: str) -> Iterator[Columns]:
    number = _decimal(value)
    if number is not None:
        yield {"low": number, "high": number}
    elif isinstance(value, dict) and type_key == "Range":
        low, high = _decimal((value.get("low") or {}).get("value")), _decimal((value.get("high") or {}).get("value"))
        if low is not None or high is not None:
            yield {"low": low, "high": high}


def _float(value: Decimal | None) -> float | None:
    return None if value is None else float(value)


def _quantity_row(system: Any, code: Any, low: Decimal | None, high: Decimal | None) -> Columns:
    system = system if isinstance(system, str) else None
    code = code if isinstance(code, str) else None
    row: Columns = {"system": system, "code": code, "low": _float(low), "high": _float(high)}
    unit = ucum_canonical(Decimal(1), code) if system == UCUM else None
    if unit is None:
        row.update(canonical_code=None, canonical_low=None, canonical_high=None)
    else:
        factor = unit[1]
        row.update(
            canonical_code=unit[0],
            canonical_low=None if low is None else float(low * factor),
            canonical_high=None if high is None else float(high * factor),
        )
    return row


def quantity_columns(value: Any, type_key: str) -> Iterator[Columns]:
    if not isinstance(value, dict):
        return
    if type_key == "Range":
        low, high = value.get("low") or {}, value.get("high") or {}
        bound_low, bound_high = _decimal(low.get("value")), _decimal(high.get("value"))
        if bound_low is not None or bound_high is not None:
            unit = low if bound_low is not None else high
            yield _quantity_row(unit.get("system"), unit.get("code"), bound_low, bound_high)
    elif type_key == "Money":
        amount = _decimal(value.get("value"))
        if amount is not None:
            yield _quantity_row(ISO_4217, value.get("currency"), amount, amount)
    elif is_a(type_key, "Quantity"):
        amount = _decimal(value.get("value"))
        if amount is not None:
            comparator = value.get("comparator")
            low = None if comparator in _OPEN_BELOW else amount
            high = None if comparator in _OPEN_ABOVE else amount
            yield _quantity_row(value.get("system"), value.get("code"), low, high)


# --- reference and uri -------------------------------------------------------------------------


def _reference(reference: str) -> Columns:
    parts = split_reference(reference)
    if parts is None:
        return {"target_type": None, "target_id": None, "url": reference}
    kind, identity, base = parts
    if base:
        # Another server's resource (search.html#reference): matched by its URL only, so that
        # neither a search for `Patient/1` nor a chain or _include lands on our own Patient/1.
        return {"target_type": kind, "target_id": None, "url": reference}
    return {"target_type": kind, "target_id": identity, "url": None}


def reference_columns(value: Any, type_key: str) -> Iterator[Columns]:
    if isinstance(value, str):
        if value.strip():
            yield {"target_type": None, "target_id": None, "url": value}
    elif not isinstance(value, dict):
        return
    elif type_key == "Reference":
        reference = value.get("reference")
        if isinstance(reference, str) and reference and not reference.startswith("#"):
            yield _reference(reference)
    elif isinstance(value.get("resourceType"), str) and isinstance(value.get("id"), str):
        yield {"target_type": value["resourceType"], "target_id": value["id"], "url": None}


def uri_columns(value: Any, type_key: str) -> Iterator[Columns]:
    if isinstance(value, str) and value:
        yield {"value": value}


_CONVERTERS: dict[str, Convert] = {
    "string": string_columns,
    "token": token_columns,
    "date": date_columns,
    "number": number_columns,
    "quantity": quantity_columns,
    "reference": reference_columns,
    "uri": uri_columns,
}
