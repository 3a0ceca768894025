"""One search value of each parameter type (R4 search.html#ptypes, #prefix).

Values arrive still escaped (syntax.py) and one at a time (the caller splits the OR-ed list).

- number (search.html#number): the value's precision gives its range, half a unit of the last
  significant digit either side: `100` -> [99.5, 100.5), `100.00` -> [99.995, 100.005),
  `1.00e2` -> [99.5, 100.5), `1e2` -> [50, 150) ("the number of significant digits ... is the
  number of digits specified ... excluding leading zeros").
- date (search.html#date): `parse_instant_range` gives [low, high) for the precision written.
- quantity (search.html#quantity): `[prefix]number|system|code`, `[prefix]number||code`, `[prefix]number`.
- token (search.html#token): `code`, `system|code`, `|code`, `system|`; `:of-type` takes
  `system|code|value` with all three parts.
- reference (search.html#reference): `id`, `Type/id`, or an absolute / canonical URL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext
from functools import cache

from fhir_server.errors import Invalid
from fhir_server.model import definitions
from fhir_server.model.dates import parse_instant_range
from fhir_server.search.clauses import (
    DateValue,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    StringValue,
    Token,
    UriValue,
)
from fhir_server.search.syntax import VALUE, Problem, split_unescaped, unescape

PREFIXES = frozenset({"eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"})

# FHIR decimal (datatypes.html#decimal) and id (datatypes.html#id).
_DECIMAL = re.compile(r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$")
LOGICAL_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_MAX_EXPONENT = 1000  # far beyond any measurement; keeps Decimal arithmetic bounded


@dataclass(frozen=True)
class OfTypeToken(Token):
    """A `:of-type` value `system|code|value`: `system`/`code` are the Identifier.type coding,
    `value` the Identifier.value (search.html#token, "All 3 parts must be present")."""

    value: str


def split_prefix(text: str) -> tuple[str, str]:
    """`ge2020` -> ("ge", "2020"); no prefix -> ("eq", text) (search.html#prefix)."""
    if text[:2] in PREFIXES:
        return text[:2], text[2:]
    return "eq", text


def number_range(text: str) -> tuple[Decimal, Decimal, Decimal]:
    """The value and the [low, high) range its precision implies."""
    if not _DECIMAL.fullmatch(text):
        raise Problem(VALUE, f"'{text}' is not a number")
    value = Decimal(text)
    exponent = value.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > _MAX_EXPONENT:
        raise Problem(VALUE, f"'{text}' is out of range")
    half = Decimal(5).scaleb(exponent - 1)
    with localcontext() as context:
        context.prec = len(value.as_tuple().digits) + 2
        try:
            return value, value - half, value + half
        except ArithmeticError:
            raise Problem(VALUE, f"'{text}' is out of range") from None


def parse_number(text: str) -> NumberValue:
    prefix, rest = split_prefix(text)
    value, low, high = number_range(rest)
    return NumberValue(prefix, value, low, high)


def parse_date(text: str, name: str) -> DateValue:
    prefix, rest = split_prefix(text)
    low, high = _date_range(rest, name)
    return DateValue(prefix, low, high)


def _date_range(text: str, name: str) -> tuple[datetime, datetime]:
    try:
        return parse_instant_range(text, name)
    except Invalid:
        raise Problem(VALUE, f"'{text}' is not a valid date, dateTime or instant") from None


def parse_quantity(text: str) -> QuantityValue:
    parts = split_unescaped(text, "|")
    if len(parts) not in (1, 3):
        raise Problem(VALUE, f"'{text}' is not [prefix]number|system|code, [prefix]number||code or [prefix]number")
    prefix, rest = split_prefix(parts[0])
    value, low, high = number_range(rest)
    system = code = None
    if len(parts) == 3:
        system, code = unescape(parts[1]) or None, unescape(parts[2]) or None
    if system and not code:
        raise Problem(VALUE, f"'{text}' names a unit system but no unit code")
    return QuantityValue(prefix, value, low, high, system, code)


def parse_token(text: str) -> Token:
    parts = split_unescaped(text, "|")
    if len(parts) == 1:
        return Token(None, unescape(text), system_given=False)
    if len(parts) > 2:
        raise Problem(VALUE, f"'{text}' has more than one unescaped '|' (write \\| for a literal one)")
    system, code = unescape(parts[0]) or None, unescape(parts[1]) or None
    if system is None and code is None:
        raise Problem(VALUE, f"'{text}' has neither a system nor a code")
    return Token(system, code, system_given=True)


def parse_of_type(text: str) -> OfTypeToken:
    parts = [unescape(part) for part in split_unescaped(text, "|")]
    if len(parts) != 3 or not all(parts):
        raise Problem(VALUE, f"'{text}' is not system|code|value (all three parts are required with :of-type)")
    return OfTypeToken(parts[0], parts[1], True, parts[2])


def parse_string(text: str) -> StringValue:
    return StringValue(unescape(text))


def parse_uri(text: str) -> UriValue:
    return UriValue(unescape(text))


def parse_reference(text: str, type_modifier: str | None, base_url: str | None) -> ReferenceValue:
    """`id`, `Type/id` or an absolute URL; an absolute URL under `base_url` counts as the relative one."""
    value = unescape(text)
    if base_url:
        base = base_url.rstrip("/") + "/"
        if value.startswith(base):
            value = value[len(base) :]
    if _is_absolute(value):
        return ReferenceValue(None, None, value)
    parts = value.split("/")
    if len(parts) == 1 and LOGICAL_ID.fullmatch(value):
        return ReferenceValue(type_modifier, value, None)
    if len(parts) == 2 and is_resource_type(parts[0]) and LOGICAL_ID.fullmatch(parts[1]):
        if type_modifier and parts[0] != type_modifier:
            raise Problem(VALUE, f"'{text}' is not a {type_modifier} reference")
        return ReferenceValue(parts[0], parts[1], None)
    raise Problem(VALUE, f"'{text}' is not an id, a Type/id reference or an absolute URL")


def _is_absolute(value: str) -> bool:
    return "://" in value or value.startswith("urn:")


def is_resource_type(name: str) -> bool:
    """An R4 resource type name (read lazily: the definitions load on first use)."""
    return name in definitions.RESOURCE_TYPES


@cache
def all_resource_types() -> tuple[str, ...]:
    return tuple(sorted(definitions.RESOURCE_TYPES))
