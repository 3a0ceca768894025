"""Hand-built resources and index rows for the search SQL tests (no extraction involved).

Every test works on resource types of its own (`Kinds`), so that tests sharing one database never
see each other's rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from fhir_server.access import Visibility
from fhir_server.search.clauses import (
    Clause,
    DateValue,
    IndexRow,
    NumberValue,
    QuantityValue,
    ReferenceValue,
    SortKey,
)
from fhir_server.search.params import SearchParam
from fhir_server.store.repository import Store, StoredVersion

EVERYONE = Visibility(unrestricted=True)
NOBODY = Visibility()
MOMENT = datetime(2024, 1, 1, 12, 0, 0)


class Kinds:
    """Resource type names unique to one test: `kinds.Obs` is e.g. `Xa1b2c3d4e5Obs`."""

    def __init__(self) -> None:
        self.prefix = "X" + uuid.uuid4().hex[:10]

    def __getattr__(self, name: str) -> str:
        if name.startswith("_"):
            raise AttributeError(name)
        return self.prefix + name


def param(resource_type: str, code: str, kind: str) -> SearchParam:
    return SearchParam(resource_type, code, kind, f"{resource_type}.{code}")


def put(
    store: Store,
    resource_type: str,
    resource_id: str,
    rows: Sequence[IndexRow] = (),
    deleted: bool = False,
    last_updated: datetime = MOMENT,
) -> str:
    stored = StoredVersion(resource_type, resource_id, 1, last_updated, deleted, None if deleted else b"{}", "POST")
    with store.unit_of_work(EVERYONE) as uow:
        uow.create(stored)
        uow.replace_index(resource_type, resource_id, rows, fresh=True)
    return resource_id


def ids(
    store: Store,
    resource_type: str | None,
    *clauses: Clause,
    sort: Sequence[SortKey] = (),
    types: tuple[str, ...] = (),
    visibility: Visibility = EVERYONE,
) -> list[str]:
    with store.unit_of_work(visibility, read_only=True) as uow:
        return [found.id for found in uow.search(resource_type, clauses, sort, 1000, None, types)]


def id_set(store: Store, resource_type: str, *clauses: Clause) -> set[str]:
    return set(ids(store, resource_type, *clauses))


# --- index rows --------------------------------------------------------------------------------


def string_row(code: str, value: str, exact: str | None = None) -> IndexRow:
    return IndexRow("string", code, {"value": value, "exact": exact if exact is not None else value})


def token_row(code: str, system: str | None, value: str | None, text: str | None = None) -> IndexRow:
    return IndexRow("token", code, {"system": system, "code": value, "text": text})


def date_row(code: str, low: datetime | None, high: datetime | None) -> IndexRow:
    return IndexRow("date", code, {"low": low, "high": high})


def number_row(code: str, low: str | None, high: str | None) -> IndexRow:
    """A number (low == high) or a Range (None: an open end)."""
    return IndexRow("number", code, {"low": _decimal(low), "high": _decimal(high)})


def _decimal(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def quantity_row(
    code: str, value: float, system: str | None, unit: str | None, canonical: tuple[str, float] | None = None
) -> IndexRow:
    values: dict[str, Any] = {"system": system, "code": unit, "low": value, "high": value}
    if canonical:
        values.update(canonical_code=canonical[0], canonical_low=canonical[1], canonical_high=canonical[1])
    return IndexRow("quantity", code, values)


def reference_row(code: str, target_type: str | None, target_id: str | None, url: str | None = None) -> IndexRow:
    return IndexRow("reference", code, {"target_type": target_type, "target_id": target_id, "url": url})


def uri_row(code: str, value: str) -> IndexRow:
    return IndexRow("uri", code, {"value": value})


# --- search values -----------------------------------------------------------------------------


def year(prefix: str, value: int) -> DateValue:
    return DateValue(prefix, datetime(value, 1, 1), datetime(value + 1, 1, 1))


def number(prefix: str, value: str) -> NumberValue:
    """A number search value with the range its precision implies (search.html#number)."""
    exact = Decimal(value)
    half = Decimal(1).scaleb(exact.as_tuple().exponent) / 2  # type: ignore[arg-type]
    return NumberValue(prefix, exact, exact - half, exact + half)


def quantity(prefix: str, value: str, system: str | None, unit: str | None) -> QuantityValue:
    plain = number(prefix, value)
    return QuantityValue(prefix, plain.value, plain.low, plain.high, system, unit)


def ref(target_type: str | None, target_id: str | None = None, url: str | None = None) -> ReferenceValue:
    return ReferenceValue(target_type, target_id, url)
