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

Two kinds of resource are also facts the policy reads (`AccessFact`, kept in their own tables in
the same transaction, so that revoking takes effect at once):

- a registration: an EpisodeOfCare whose `managingOrganization` is the clinic, active while its
  status is `active` and within its period; written by that clinic or by the patient;
- a profile-sharing consent: a Consent with the category `profile-sharing` of
  `SHARING_CATEGORY_SYSTEM` (conformance/CodeSystem-consent-category.json), for the clinic in
  `organization`, active while its status is `active` and within `provision.period`; signed (written)
  by the patient or their proxy only. Both are owned by the clinic they name.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from fhir_server.access import Visibility
from fhir_server.errors import Forbidden
from fhir_server.model.dates import parse_instant_range
from fhir_server.store.repository import StoredVersion

SHARING_CATEGORY_SYSTEM = "http://fhir-server.dev/CodeSystem/consent-category"
SHARING_CATEGORY_CODE = "profile-sharing"

PORTABLE_TYPES = frozenset({"Patient", "AllergyIntolerance", "Coverage", "RelatedPerson"})
BLOOD_TYPE_CODES = frozenset({"882-1", "883-9", "884-7", "10331-7"})
_PATIENT_ELEMENTS = ("patient", "subject", "beneficiary")


@dataclass(frozen=True)
class AccessFact:
    kind: str  # registration | sharing
    patient: str
    clinic: str
    active: bool
    starts: datetime | None
    ends: datetime | None


def access_fact(resource: dict[str, Any]) -> AccessFact | None:
    """The registration or profile-sharing consent this resource states, if it is one."""
    kind = resource.get("resourceType")
    if kind == "EpisodeOfCare":
        clinic = _reference_id(resource.get("managingOrganization"), "Organization")
        patient = _reference_id(resource.get("patient"), "Patient")
        period = resource.get("period")
    elif kind == "Consent" and _is_sharing(resource):
        organizations = resource.get("organization") or []
        clinic = _reference_id(organizations[0] if len(organizations) == 1 else None, "Organization")
        patient = _reference_id(resource.get("patient"), "Patient")
        period = (resource.get("provision") or {}).get("period")
    else:
        return None
    if clinic is None or patient is None:
        return None
    starts, ends = _period(period)
    fact_kind = "registration" if kind == "EpisodeOfCare" else "sharing"
    return AccessFact(fact_kind, patient, clinic, resource.get("status") == "active", starts, ends)


def check_access_fact(fact: AccessFact | None, visibility: Visibility) -> None:
    """Who may state it: a clinic registers patients at itself only; a profile-sharing consent
    is signed by the patient (or their proxy, acting for the dependent) only."""
    if fact is None or visibility.unrestricted:
        return
    if fact.kind == "registration" and visibility.acting_clinic not in (None, fact.clinic):
        raise Forbidden("A clinic registers patients at itself only", "registration-forbidden")
    if fact.kind == "sharing" and visibility.acting_patient != fact.patient:
        raise Forbidden("A profile-sharing Consent is signed by the patient or their proxy", "consent-forbidden")


def owners(
    resource: dict[str, Any], resource_id: str, visibility: Visibility, current: StoredVersion | None
) -> dict[str, Any]:
    """The ownership columns of a version about to be written."""
    clinic = current.contributor_clinic if current is not None else visibility.acting_clinic
    fact = access_fact(resource)
    if fact is not None:  # the clinic it names keeps it, whoever wrote it
        return {"owner_patient": None, "owner_clinic": fact.clinic, "contributor_clinic": clinic}
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


def _is_sharing(resource: dict[str, Any]) -> bool:
    return any(
        coding.get("system") == SHARING_CATEGORY_SYSTEM and coding.get("code") == SHARING_CATEGORY_CODE
        for coding in _codings(resource.get("category"))
    )


def _reference_id(value: Any, resource_type: str) -> str | None:
    reference = value.get("reference") if isinstance(value, dict) else None
    prefix = f"{resource_type}/"
    if isinstance(reference, str) and reference.startswith(prefix) and "/" not in reference[len(prefix) :]:
        return reference[len(prefix) :]
    return None


def _period(period: Any) -> tuple[datetime | None, datetime | None]:
    """The period's start and end as instants (an end date covers its whole day)."""
    if not isinstance(period, dict):
        return None, None
    starts = parse_instant_range(period["start"], "period.start")[0] if period.get("start") else None
    ends = parse_instant_range(period["end"], "period.end")[1] if period.get("end") else None
    return starts, ends


def _codings(value: Any) -> list[dict[str, Any]]:
    concepts = value if isinstance(value, list) else [value]
    return [
        coding
        for concept in concepts
        if isinstance(concept, dict)
        for coding in concept.get("coding", [])
        if isinstance(coding, dict)
    ]
