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
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

from fhir_server.errors import Invalid
from fhir_server.model.dates import parse_instant_range
from fhir_server.search.clauses import IndexRow
from fhir_server.search.fhirpath_compile import Extractor, compile_expression, fallback, is_a
from fhir_server.search.fhirpath_parse import Unsupported
from fhir_server.search.normalize import UCUM, normalize, split_reference, ucum_canonical
from fhir_server.search.params import SearchParam
from fhir_server.search.registry import search_params

Columns = dict[str, Any]
Convert = Callable[[Any, str], Iterator[Columns]]

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


@cache
def _indexed(resource_type: str) -> tuple[tuple[SearchParam, Extractor, Convert], ...]:
    return tuple(
        (param, extractor(param.expression), _CONVERTERS[param.table])
        for param in search_params(resource_type).values()
        if param.table is not None and param.expression is not None
    )


def index_rows(resource: dict[str, Any], skip: frozenset[str] = frozenset()) -> list[IndexRow]:
    """One row per distinct value of every indexed parameter of the resource's type (`skip`:
    codes to leave out)."""
    rows: list[IndexRow] = []
    for param, extract, convert in _indexed(resource["resourceType"]):
        if param.code in skip:
            continue
        seen: set[tuple[Any, ...]] = set()
        for value, type_key in extract(resource):
            for columns in convert(value, type_key):
                key = tuple(columns.values())
                if key not in seen:
                    seen.add(key)
                    rows.append(IndexRow(param.table or "", param.code, columns))
    return rows


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
    return {"target_type": kind, "target_id": identity, "url": reference if base else None}


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
