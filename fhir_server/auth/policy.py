"""The one access policy: from an access context and the interaction asked for to the rows the
caller may touch (DESIGN.md section 3; SMART App Launch 2.x scopes-and-launch-context.html).

A SMART interaction needs a scope granting its letter on the resource type: `c` create, `r`
read/vread/instance history, `u` update/patch, `d` delete, `s` search and type/system history.
None: 403 (the type lacks the interaction). Each granting scope becomes a `Grant`, narrowed by
who the caller is (DESIGN.md section 3):

- a `patient/` scope reaches the launch patient's compartment only (a patient user's `user/`
  scopes reach the same: their own record, across clinics);
- a clinic member reaches what their clinic owns or contributed (`clinic`), within their role's
  resource types (`ROLE_TYPES`), and reads the id and name of the patients registered at the
  clinic (`registered_names`; the whole portable profile once the patient's profile-sharing
  Consent is in force); a clinic's backend service reaches what its clinic admin does;
- a platform admin reaches the clinics themselves (Organization), and patient data only by
  impersonation;
- a granular scope adds its search.

A resource outside every grant is simply not there: 404, as if it never existed.
"""

from __future__ import annotations

from dataclasses import replace

from fhir_server.access import AccessContext, Grant, Visibility
from fhir_server.auth.scopes import ResourceScope, parsed_resource_scopes
from fhir_server.errors import Forbidden
from fhir_server.model.schema import resource_types

UNRESTRICTED = Visibility(unrestricted=True)

# What each clinic role reaches (DESIGN.md section 3, "roles inside a clinic"): staff see
# demographics, scheduling and insurance, not clinical records; practitioners see clinical records
# and demographics and scheduling, not billing; clinic admins (and the clinic's backend services)
# see all of their clinic. None: every type.
DEMOGRAPHICS = frozenset(
    {"Patient", "RelatedPerson", "Person", "Practitioner", "PractitionerRole", "Organization", "Location"}
    | {"HealthcareService", "Endpoint", "Group"}
)
SCHEDULING = frozenset({"Appointment", "AppointmentResponse", "Schedule", "Slot", "EpisodeOfCare", "Task"})
INSURANCE = frozenset(
    {"Coverage", "CoverageEligibilityRequest", "CoverageEligibilityResponse", "Claim", "ClaimResponse"}
    | {"ExplanationOfBenefit", "Account", "ChargeItem", "Invoice", "PaymentNotice", "PaymentReconciliation"}
)
ROLE_TYPES: dict[str, frozenset[str] | None] = {
    "staff": DEMOGRAPHICS | SCHEDULING | INSURANCE,
    "practitioner": None,  # narrowed below: everything but billing
    "clinic-admin": None,
}
PLATFORM_TYPES = frozenset({"Organization"})
INTERACTION_LETTERS = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
    "history-type": "s",
    "history-system": "s",
}


def visibility(context: AccessContext, letter: str, resource_type: str | None) -> Visibility:
    """What `context` may touch when doing an interaction of `letter` on `resource_type`
    (None: a system-level interaction over every type its grants allow)."""
    if context.kind == "local-operator":
        return UNRESTRICTED
    grants = tuple(
        grant
        for scope in resource_scopes(context)
        if scope.permits(resource_type, letter) and (grant := _grant(context, scope, letter)) is not None
    )
    if not grants:
        what = resource_type or "any resource type"
        raise Forbidden(f"The access token does not permit '{letter}' on {what}", "scope-insufficient")
    return Visibility(grants=grants, acting_clinic=_clinic(context), acting_patient=_patient(context))


def transaction_scope(context: AccessContext) -> Visibility:
    """A transaction's unit of work before its entries, each of which brings its own visibility:
    nothing yet, but for whom (a clinic's transaction runs in its row-security scope throughout,
    store/row_security.py)."""
    return Visibility(acting_clinic=_clinic(context), acting_patient=_patient(context))


def clinic_holdings(clinic: str) -> Visibility:
    """The Patients a clinic holds in full, whatever the caller's scopes: those it recorded or
    contributed to, and those whose profile-sharing Consent for it is in force (what a clinic
    may register at itself; interactions/writing.py)."""
    return Visibility(grants=(Grant("Patient", clinic=clinic),), acting_clinic=clinic)


def within_compartment(searchable: Visibility | None, readable: Visibility, patient: str) -> Visibility:
    """What a caller may see of one patient's compartment (Patient/$everything): its search grants
    (`searchable`; None: it may search nothing) and its read grants on Patient (`readable`), each
    narrowed to `patient`'s compartment. Never more than those grants reach, only less."""
    grants = [*(_within(searchable, patient, None) if searchable else []), *_within(readable, patient, "Patient")]
    return Visibility(
        grants=tuple(grants), acting_clinic=readable.acting_clinic, acting_patient=readable.acting_patient
    )


def _within(visibility: Visibility, patient: str, only: str | None) -> list[Grant]:
    if visibility.unrestricted:
        return [Grant(only or "*", patient=patient)]
    narrowed: list[Grant] = []
    for grant in visibility.grants:
        if grant.patient not in (None, patient):
            continue  # limited to another patient: nothing of this one
        if only is not None and grant.resource_type not in ("*", only):
            continue
        narrowed.append(replace(grant, resource_type=only or grant.resource_type, patient=patient))
    return narrowed


def resource_scopes(context: AccessContext) -> list[ResourceScope]:
    """The context's resource scopes (a malformed one, which the authorization server never
    grants, grants nothing)."""
    return list(parsed_resource_scopes(sorted(context.scopes)))


def _grant(context: AccessContext, scope: ResourceScope, letter: str) -> Grant | None:
    kind, query = context.kind, scope.query
    if kind == "patient":  # their own record, whatever the scope's context says
        patient = _patient(context)
        return Grant(scope.resource_type, patient=patient, query=query) if patient else None
    if kind == "platform-admin":
        return Grant(scope.resource_type, query=query, types=PLATFORM_TYPES) if scope.context != "patient" else None
    clinic = _clinic(context)
    if clinic is None or kind not in ("clinic-member", "backend-service"):
        return None  # no clinic, no data
    types = role_types(context.role if kind == "clinic-member" else "clinic-admin")
    if types is not None and not types:
        return None
    # Registered patients' names are read and searched, never written, before consent.
    names = letter in ("r", "s")
    if scope.context == "patient":  # a clinician's app launched for one patient
        if context.patient is None:
            return None
        patient = context.patient
        return Grant(scope.resource_type, patient, query, clinic, types, registered_names=names)
    return Grant(scope.resource_type, query=query, clinic=clinic, types=types, registered_names=names)


def role_types(role: str | None) -> frozenset[str] | None:
    """The resource types a clinic role reaches; None: all; empty: none (an unknown role)."""
    if role == "practitioner":
        return frozenset(resource_types()) - INSURANCE
    if role in ROLE_TYPES:
        return ROLE_TYPES[role]
    return frozenset()


def _clinic(context: AccessContext) -> str | None:
    return context.clinic_id if context.kind in ("clinic-member", "backend-service") else None


def _patient(context: AccessContext) -> str | None:
    """A patient user's own record: the launch patient, else their fhirUser if it is a Patient."""
    if context.kind != "patient":
        return None
    if context.patient:
        return context.patient
    user = context.fhir_user or ""
    return user.removeprefix("Patient/") if user.startswith("Patient/") else None
