"""Value normalisation shared by indexing and query compilation (R4 search.html#ptypes).

- `normalize`: string search is case- and accent-insensitive and ignores repeated whitespace
  (search.html#string), so both stored values and query values go through it.
- `split_reference`: the type and id of a literal reference (references.html#literal), relative
  (`Patient/1`, `Patient/1/_history/2`) or absolute (`https://host/fhir/Patient/1`).
- `ucum_canonical`: a quantity in one of a few common UCUM units (ucum.org) expressed in that
  dimension's base unit, so that `5.4|http://unitsofmeasure.org|mg` finds `0.0054 g`
  (search.html#quantity "canonical units").
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal

from fhir_server.model.schema import resource_types

UCUM = "http://unitsofmeasure.org"

_WHITESPACE = re.compile(r"\s+")
_REFERENCE = re.compile(
    r"^(?:(?P<base>https?://\S+?)/)?(?P<type>[A-Z][A-Za-z]+)/(?P<id>[A-Za-z0-9\-.]{1,64})"
    r"(?:/_history/[A-Za-z0-9\-.]{1,64})?$"
)

# UCUM code -> (canonical code, factor): value * factor is the value in the canonical unit.
UCUM_UNITS: dict[str, tuple[str, Decimal]] = {
    "kg": ("g", Decimal(1000)),
    "g": ("g", Decimal(1)),
    "mg": ("g", Decimal("0.001")),
    "ug": ("g", Decimal("0.000001")),
    "km": ("m", Decimal(1000)),
    "m": ("m", Decimal(1)),
    "cm": ("m", Decimal("0.01")),
    "mm": ("m", Decimal("0.001")),
    "L": ("L", Decimal(1)),
    "dL": ("L", Decimal("0.1")),
    "mL": ("L", Decimal("0.001")),
    "s": ("s", Decimal(1)),
    "min": ("s", Decimal(60)),
    "h": ("s", Decimal(3600)),
    "d": ("s", Decimal(86400)),
}


def _normalize(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text)
    stripped = "".join(char for char in decomposed if not unicodedata.combining(char))
    return _WHITESPACE.sub(" ", stripped.casefold()).strip()


def normalize(text: str) -> str:
    """NFKD, combining marks dropped, casefolded, whitespace collapsed and trimmed."""
    if text.isascii():
        return _WHITESPACE.sub(" ", text.lower()).strip()
    return _normalize(text)


def split_reference(reference: str) -> tuple[str, str, str | None] | None:
    """(type, id, base URL or None) of a literal reference naming a known type, else None.

    `#contained`, `urn:uuid:...`, `urn:oid:...`, canonical URLs and conditional references
    give None.
    """
    match = _REFERENCE.match(reference)
    if not match or match["type"] not in resource_types():
        return None
    return match["type"], match["id"], match["base"]


def ucum_canonical(value: Decimal, code: str | None) -> tuple[str, Decimal] | None:
    """(canonical code, value in it) for a known UCUM unit, else None."""
    unit = UCUM_UNITS.get(code) if code else None
    if unit is None:
        return None
    return unit[0], value * unit[1]
