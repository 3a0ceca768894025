"""`_summary` and `_elements` (R4 search.html#summary, #elements), applied to read results too.

A shortened resource is marked with the SUBSETTED tag so that no client mistakes it for the
whole resource and writes it back.
"""

from __future__ import annotations

from typing import Any

import orjson

from fhir_server.errors import Invalid, Issue
from fhir_server.model.definitions import mandatory_elements, summary_elements

SUBSETTED = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
    "code": "SUBSETTED",
    "display": "subsetted",
}
_BASE = ("resourceType", "id", "meta")


def check_summary(value: str | None) -> str | None:
    if value in (None, "false", "true", "text", "data"):
        return value
    raise Invalid(
        f"_summary '{value}' is not usable here (true, text, data or false)",
        "summary-invalid",
        issues=[Issue(f"_summary '{value}' is not usable here", "summary-invalid", "invalid", "_summary")],
    )


def shape(resource: dict[str, Any], summary: str | None, elements: str | None) -> dict[str, Any] | None:
    """The resource as asked for, or None when nothing is removed."""
    kind = resource["resourceType"]
    if summary == "true":
        keep = summary_elements(kind)
    elif summary == "text":
        keep = frozenset({*_BASE, "text", *mandatory_elements(kind)})
    elif summary == "data":
        keep = frozenset(key for key in resource if key != "text")
    elif elements:
        keep = frozenset({*_BASE, *mandatory_elements(kind), *_own_elements(kind, elements)})
        keep = _with_choices(keep, resource)
    else:
        return None
    shaped = {key: value for key, value in resource.items() if key in keep or key.lstrip("_") in keep}
    _mark_subsetted(shaped)
    return shaped


def _own_elements(kind: str, elements: str) -> set[str]:
    """The element names of `_elements` that apply to `kind`: plain names, and `Type.name` for
    this type (search.html#elements; a search across types names each type's own elements)."""
    names = set()
    for item in (e.strip() for e in elements.split(",")):
        owner, dot, name = item.rpartition(".")
        if item and (not dot or owner == kind):
            names.add(name)
    return names


def _with_choices(keep: frozenset[str], resource: dict[str, Any]) -> frozenset[str]:
    """`_elements=value` keeps valueQuantity: choice elements are named without their type."""
    extra = {key for key in resource for name in keep if key.startswith(name) and key[len(name) :][:1].isupper()}
    return keep | extra


def _mark_subsetted(resource: dict[str, Any]) -> None:
    meta = dict(resource.get("meta") or {})
    tags = [tag for tag in meta.get("tag", []) if tag.get("code") != "SUBSETTED"]
    meta["tag"] = [*tags, SUBSETTED]
    resource["meta"] = meta


def name_only(content: bytes) -> bytes:
    """A Patient as a clinic sees it before the patient's profile-sharing Consent (DESIGN.md
    section 3): its id and name, marked SUBSETTED; everything else, narrative included, left out."""
    patient = orjson.loads(content)
    meta = {key: value for key, value in (patient.get("meta") or {}).items() if key in ("versionId", "lastUpdated")}
    shown = {key: patient[key] for key in ("resourceType", "id", "name") if key in patient}
    shown["meta"] = {**meta, "tag": [SUBSETTED]}
    return orjson.dumps(shown)
