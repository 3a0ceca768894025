"""FHIR date, dateTime and instant values as UTC ranges (datatypes.html#dateTime, search.html#date).

A value stands for the whole span its precision names: `2024` is [2024-01-01, 2025-01-01).
Values without a time zone are read as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from fhir_server.errors import Invalid, Issue

_DATE_TIME = re.compile(
    r"^(?P<year>\d{4})(-(?P<month>\d{2})(-(?P<day>\d{2})"
    r"(T(?P<hour>\d{2}):(?P<minute>\d{2})(:(?P<second>\d{2})(?P<fraction>\.\d+)?)?"
    r"(?P<zone>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def parse_instant_range(value: str, name: str) -> tuple[datetime, datetime]:
    match = _DATE_TIME.match(value)
    try:
        if not match:
            raise ValueError
        return _range(match)
    except (ValueError, OverflowError):  # 9999-12-31 ends past datetime.max
        message = f"'{value}' is not a valid FHIR date or dateTime for {name}"
        raise Invalid(message, "date-invalid", issues=[Issue(message, "date-invalid", "invalid", name)]) from None


def _range(match: re.Match[str]) -> tuple[datetime, datetime]:
    parts = match.groupdict()
    year = int(parts["year"])
    if parts["month"] is None:
        return datetime(year, 1, 1), datetime(year + 1, 1, 1)
    month = int(parts["month"])
    if parts["day"] is None:
        low = datetime(year, month, 1)
        return low, datetime(year + (month == 12), month % 12 + 1, 1)
    day = datetime(year, month, int(parts["day"]))
    if parts["hour"] is None:
        return day, day + timedelta(days=1)
    fraction = parts["fraction"] or ""
    low = datetime.fromisoformat(
        f"{day.date().isoformat()}T{parts['hour']}:{parts['minute']}:{parts['second'] or '00'}{fraction[:7]}"
        + _zone(parts["zone"])
    )
    low = low.astimezone(UTC).replace(tzinfo=None)
    if parts["second"] is None:
        step = timedelta(minutes=1)
    elif fraction:
        step = timedelta(microseconds=10 ** max(0, 6 - (len(fraction) - 1)))
    else:
        step = timedelta(seconds=1)
    return low, low + step


def _zone(zone: str | None) -> str:
    return "+00:00" if zone in (None, "Z") else zone
