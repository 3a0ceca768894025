"""Prefix semantics of date, number and quantity searches (R4 search.html#prefix, #date, #number,
#quantity).

Both sides are ranges. The search value's range is [low, high), the span of its precision
(`2010` is [2010-01-01, 2011-01-01), `100` is [99.5, 100.5)). A stored date is [low, high) too, a
stored number or quantity the closed range [low, high] (a point: low == high). A NULL low or high
is an open end: -infinity or +infinity. With S the search range and T the stored one:

| prefix | dates: T vs S = [sl, sh) | numbers, quantities: T vs the value v (S for eq/ne/ap) |
|---|---|---|
| eq | sl <= T.low and T.high <= sh (S contains T) | sl <= T.low and T.high < sh |
| ne | not eq | not eq |
| gt | T extends above S: T.high > sh | T.high > v |
| lt | T extends below S: T.low < sl | T.low < v |
| ge | gt or eq | T.high >= v |
| le | lt or eq | T.low <= v |
| sa | T starts after S ends: T.low >= sh | T.low > v |
| eb | T ends before S starts: T.high <= sl | T.high < v |
| ap | T overlaps S widened on each side by 10% of the gap to now | T overlaps S joined with [v - 10%, v + 10%] |

For numbers the implicit precision applies to eq, ne and ap only; the other prefixes compare with
the value as if of arbitrarily high precision (search.html#number). Conditions are per index row:
a resource matches when one of its values does (so `ne` matches a resource with any value outside
the range), and a resource without values matches no prefix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import and_, false, not_, or_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from fhir_server.errors import Invalid
from fhir_server.search.clauses import DateValue, NumberValue, QuantityValue, Value
from fhir_server.search.normalize import UCUM, ucum_canonical

APPROXIMATELY = Decimal("0.1")

Condition = Callable[[Any], ColumnElement[bool]]


@dataclass(frozen=True)
class Bounds:
    """How a stored range compares with a point x, each open end counting as infinite."""

    low_lt: Condition
    low_le: Condition
    low_gt: Condition
    low_ge: Condition
    high_lt: Condition
    high_le: Condition
    high_gt: Condition
    high_ge: Condition


def column_bounds(low: ColumnElement[Any], high: ColumnElement[Any]) -> Bounds:
    """A stored range [low, high] with NULL for -inf / +inf."""
    return Bounds(
        low_lt=lambda x: or_(low.is_(None), low < x),
        low_le=lambda x: or_(low.is_(None), low <= x),
        low_gt=lambda x: and_(low.is_not(None), low > x),
        low_ge=lambda x: and_(low.is_not(None), low >= x),
        high_lt=lambda x: and_(high.is_not(None), high < x),
        high_le=lambda x: and_(high.is_not(None), high <= x),
        high_gt=lambda x: or_(high.is_(None), high > x),
        high_ge=lambda x: or_(high.is_(None), high >= x),
    )


def instant_bounds(moment: ColumnElement[Any]) -> Bounds:
    """A non-null instant t seen as the range [t, t + epsilon) (resource.last_updated)."""
    return Bounds(
        low_lt=lambda x: moment < x,
        low_le=lambda x: moment <= x,
        low_gt=lambda x: moment > x,
        low_ge=lambda x: moment >= x,
        high_lt=lambda x: moment < x,
        high_le=lambda x: moment < x,
        high_gt=lambda x: moment >= x,
        high_ge=lambda x: moment >= x,
    )


def _unknown_prefix(prefix: str) -> Invalid:
    return Invalid(f"Unknown search prefix '{prefix}'", "search-prefix-unknown")


def date_condition(bounds: Bounds, value: Value, now: datetime | None = None) -> ColumnElement[bool]:
    if not isinstance(value, DateValue):
        raise Invalid(f"A {type(value).__name__} is not a date search value", "search-value-invalid")
    low, high = _naive_utc(value.low), _naive_utc(value.high)
    if value.prefix == "ap":
        low, high = approximate_range(low, high, now or datetime.now(UTC).replace(tzinfo=None))
    eq = and_(bounds.low_ge(low), bounds.high_le(high))
    conditions: dict[str, Callable[[], ColumnElement[bool]]] = {
        "eq": lambda: eq,
        "ne": lambda: or_(bounds.low_lt(low), bounds.high_gt(high)),
        "gt": lambda: bounds.high_gt(high),
        "lt": lambda: bounds.low_lt(low),
        "ge": lambda: or_(bounds.high_gt(high), eq),
        "le": lambda: or_(bounds.low_lt(low), eq),
        "sa": lambda: bounds.low_ge(high),
        "eb": lambda: bounds.high_le(low),
        "ap": lambda: and_(bounds.low_lt(high), bounds.high_gt(low)),
        "po": lambda: and_(bounds.low_lt(high), bounds.high_gt(low)),  # overlaps: `_filter` only
    }
    if value.prefix not in conditions:
        raise _unknown_prefix(value.prefix)
    return conditions[value.prefix]()


def approximate_range(low: datetime, high: datetime, now: datetime) -> tuple[datetime, datetime]:
    """`ap` on dates: 10% of the gap between now and the value, on both sides (at least the
    value's own precision, which is always kept)."""
    reference = low if low > now else min(high, now)
    margin = abs(now - reference) * 0.1
    return low - margin, high + margin


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def number_condition(bounds: Bounds, value: Value, as_float: bool = False) -> ColumnElement[bool]:
    if not isinstance(value, NumberValue | QuantityValue):
        raise Invalid(f"A {type(value).__name__} is not a number search value", "search-value-invalid")
    exact, low, high = value.value, value.low, value.high
    if value.prefix == "ap":
        margin = abs(exact) * APPROXIMATELY
        low, high = min(low, exact - margin), max(high, exact + margin)
    number: Callable[[Decimal], Any] = float if as_float else Decimal
    v, sl, sh = number(exact), number(low), number(high)
    eq = and_(bounds.low_ge(sl), bounds.high_lt(sh))
    conditions: dict[str, Callable[[], ColumnElement[bool]]] = {
        "eq": lambda: eq,
        "ne": lambda: not_(eq),
        "gt": lambda: bounds.high_gt(v),
        "lt": lambda: bounds.low_lt(v),
        "ge": lambda: bounds.high_ge(v),
        "le": lambda: bounds.low_le(v),
        "sa": lambda: bounds.low_gt(v),
        "eb": lambda: bounds.high_lt(v),
        "ap": lambda: and_(bounds.low_le(sh), bounds.high_ge(sl)),
    }
    if value.prefix not in conditions:
        raise _unknown_prefix(value.prefix)
    return conditions[value.prefix]()


def quantity_condition(table: FromClause, value: Value) -> ColumnElement[bool]:
    """The number comparison on the value as given, restricted to the given units (`code`, and
    `system` when given); or on the canonical columns when the search value converts.
    `5.4` (no units) compares values in any unit."""
    if not isinstance(value, QuantityValue):
        raise Invalid(f"A {type(value).__name__} is not a quantity search value", "search-value-invalid")
    as_given = number_condition(column_bounds(table.c.low, table.c.high), value, as_float=True)
    if value.code is None and value.system is None:
        return as_given
    units = []
    if value.code is not None:
        units.append(table.c.code == value.code)
    if value.system is not None:
        units.append(table.c.system == value.system)
    forms = [and_(*units, as_given)]
    canonical = canonical_quantity(value)
    if canonical is not None and canonical.code is not None:
        in_canonical = number_condition(
            column_bounds(table.c.canonical_low, table.c.canonical_high), canonical, as_float=True
        )
        forms.append(and_(table.c.canonical_code == canonical.code, in_canonical))
    return or_(*forms) if forms else false()


def canonical_quantity(value: QuantityValue) -> QuantityValue | None:
    """The search value in canonical UCUM units (search/normalize.py, the extractor's conversion),
    when it is given in a known UCUM unit (the extractor fills the canonical columns for UCUM
    values only); the value's precision range converts with it."""
    if value.code is None or value.system != UCUM:
        return None
    converted = [ucum_canonical(number, value.code) for number in (value.value, value.low, value.high)]
    if any(item is None for item in converted):
        return None
    (code, exact), (_, low), (_, high) = converted  # type: ignore[misc]
    return QuantityValue(value.prefix, exact, low, high, UCUM, code)
