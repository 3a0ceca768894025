"""Who owns a resource, assigned by the server on every write (DESIGN.md section 3, "data
ownership decides visibility"). The one table of rules, also in the README:

| written                                   | owner_patient          | owner_clinic      | contributor_clinic |
|-------------------------------------------|------------------------|-------------------|--------------------|
| portable profile, by a clinic             | the patient it is about | -                 | that clinic        |
| portable profile, by the patient (or none) | the patient it is about | -                 | -                  |
| anything else, by a clinic                | -                      | that clinic       | that clinic        |
| anything else, by anyone else             | -                      | -                 | -                  |

The portable profile: Patient, AllergyIntolerance, Coverage, RelatedPerson (emergency contacts),
a chronic Condition (category `problem-list-item`) and a blood-type Observation (LOINC 882-1,
883-9, 884-7, 10331-7). An update keeps the clinic columns of the version it replaces (the clinic
that recorded it stays its owner); the patient is read from the data each time. The writer comes
from the access token (the policy's `acting_clinic`), never from the request body.
"""

from __future__ import annotations

from typing import Any

from fhir_server.access import Visibility
from fhir_server.store.repository import StoredVersion

PORTABLE_TYPES = frozenset({"Patient", "AllergyIntolerance", "Coverage", "RelatedPerson"})
BLOOD_TYPE_CODES = frozenset({"882-1", "883-9", "884-7", "10331-7"})
_PATIENT_ELEMENTS = ("patient", "subject", "beneficiary")


def owners(
    resource: dict[str, Any], resource_id: str, visibility: Visibility, current: StoredVersion | None
) -> dict[str, Any]:
    """The ownership columns of a version about to be written."""
    clinic = current.contributor_clinic if current is not None else visibility.acting_clinic
    if is_portable(resource):
        return {"owner_patient": patient_of(resource, resource_id), "owner_clinic": None, "contributor_clinic": clinic}
    owner_clinic = current.owner_clinic if current is not None else visibility.acting_clinic
    return {"owner_patient": None, "owner_clinic": owner_clinic, "contributor_clinic": clinic}


def is_portable(resource: dict[str, Any]) -> bool:
    kind = resource.get("resourceType")
    if kind in PORTABLE_TYPES:
        return True
    if kind == "Condition":
        return any(coding.get("code") == "problem-list-item" for coding in _codings(resource.get("category")))
    if kind == "Observation":
        return any(
            coding.get("system") == "http://loinc.org" and coding.get("code") in BLOOD_TYPE_CODES
            for coding in _codings(resource.get("code"))
        )
    return False


def patient_of(resource: dict[str, Any], resource_id: str) -> str | None:
    """The Patient a portable resource is about: itself, or its patient/subject/beneficiary."""
    if resource.get("resourceType") == "Patient":
        return resource_id
    for name in _PATIENT_ELEMENTS:
        reference = (resource.get(name) or {}).get("reference") if isinstance(resource.get(name), dict) else None
        if isinstance(reference, str) and reference.startswith("Patient/"):
            return reference.removeprefix("Patient/")
    return None


def _codings(value: Any) -> list[dict[str, Any]]:
    concepts = value if isinstance(value, list) else [value]
    return [
        coding
        for concept in concepts
        if isinstance(concept, dict)
        for coding in concept.get("coding", [])
        if isinstance(coding, dict)
    ]
