"""SMART scope syntax and the policy's letters (SMART App Launch 2.x scopes-and-launch-context.html)."""

from __future__ import annotations

import pytest

from fhir_server.access import AccessContext, Grant
from fhir_server.auth import policy
from fhir_server.auth.scopes import ScopeError, parse_scope, parse_scopes, within
from fhir_server.errors import Forbidden


@pytest.mark.parametrize(
    ("text", "context", "resource_type", "letters"),
    [
        ("patient/Observation.read", "patient", "Observation", "rs"),
        ("user/*.*", "user", "*", "cruds"),
        ("system/*.read", "system", "*", "rs"),
        ("user/Patient.write", "user", "Patient", "cud"),
        ("patient/Observation.rs", "patient", "Observation", "rs"),
        ("user/Appointment.cruds", "user", "Appointment", "cruds"),
        ("system/Patient.c", "system", "Patient", "c"),
        ("patient/*.s", "patient", "*", "s"),
    ],
)
def test_v1_and_v2_resource_scopes(text: str, context: str, resource_type: str, letters: str) -> None:
    scope = parse_scope(text)
    assert scope is not None
    assert (scope.context, scope.resource_type, scope.letters) == (context, resource_type, frozenset(letters))


def test_granular_scope_keeps_its_search() -> None:
    scope = parse_scope(
        "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"
    )
    assert scope is not None and scope.query == (
        ("category", "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"),
    )


@pytest.mark.parametrize(
    "text",
    [
        "patient/Observation.sr",  # letters out of order
        "patient/Observation.rx",
        "patient/Observation.",
        "patient/observation.rs",  # not a type name
        "patient/Observation.read?code=1",  # a query needs v2 letters
        "patient/*.rs?code=1",  # a query needs one type
        "patient/Observation.rs?",  # an empty search
        "patient/Observation",
    ],
)
def test_malformed_resource_scopes_are_refused(text: str) -> None:
    with pytest.raises(ScopeError):
        parse_scope(text)


def test_other_scopes_grant_no_data() -> None:
    resources, others = parse_scopes("openid fhirUser launch launch/patient offline_access patient/Patient.r")
    assert others == {"openid", "fhirUser", "launch", "launch/patient", "offline_access"}
    assert [scope.text for scope in resources] == ["patient/Patient.r"]


@pytest.mark.parametrize(
    ("requested", "allowed", "ok"),
    [
        ("patient/Observation.rs", "patient/*.rs", True),
        ("patient/Observation.read", "patient/*.rs", True),
        ("patient/Observation.rs?code=1", "patient/Observation.rs", True),
        ("patient/Observation.rs", "patient/Observation.rs?code=1", False),
        ("patient/Observation.cruds", "patient/*.rs", False),
        ("user/Observation.rs", "patient/*.cruds", False),
        ("launch/patient", "openid launch/patient", True),
        ("launch", "launch/patient", False),
        ("patient/Observation.bogus", "patient/*.*", False),
    ],
)
def test_a_request_is_within_what_is_allowed(requested: str, allowed: str, ok: bool) -> None:
    assert within(requested, allowed.split()) is ok


def _context(*scopes: str, patient: str | None = "p1") -> AccessContext:
    return AccessContext(principal="a", kind="patient", scopes=frozenset(scopes), patient=patient)


def test_policy_grants_per_letter_and_keeps_the_patient() -> None:
    context = _context("patient/Observation.rs", "patient/Patient.r")
    assert policy.visibility(context, "s", "Observation").grants == (Grant("Observation", patient="p1"),)
    assert policy.visibility(context, "r", "Patient").grants == (Grant("Patient", patient="p1"),)
    for letter, resource_type in [("c", "Observation"), ("u", "Observation"), ("s", "Patient"), ("r", "Encounter")]:
        with pytest.raises(Forbidden):
            policy.visibility(context, letter, resource_type)


def test_policy_patient_scope_without_patient_context_grants_nothing() -> None:
    with pytest.raises(Forbidden):
        policy.visibility(_context("patient/*.rs", patient=None), "r", "Observation")


def test_policy_clinic_members_reach_their_clinic_within_their_role() -> None:
    def member(role: str | None, clinic: str | None = "c1", kind: str = "clinic-member") -> AccessContext:
        return AccessContext(principal="u", kind=kind, scopes=frozenset({"user/*.cruds"}), clinic_id=clinic, role=role)

    admin = policy.visibility(member("clinic-admin"), "d", "Observation")
    assert admin.grants == (Grant("*", clinic="c1"),) and admin.acting_clinic == "c1"
    staff = policy.visibility(member("staff"), "r", "Observation").grants[0]
    assert staff.clinic == "c1" and staff.types is not None
    assert "Appointment" in staff.types and "Coverage" in staff.types and "Observation" not in staff.types
    practitioner = policy.visibility(member("practitioner"), "r", "Observation").grants[0]
    assert practitioner.types is not None and "Observation" in practitioner.types
    assert "Coverage" not in practitioner.types
    backend = AccessContext("b", "backend-service", scopes=frozenset({"system/*.rs"}), clinic_id="c2")
    # Registered patients' names are read and searched (the admin's delete grant above: never written).
    assert policy.visibility(backend, "s", "Patient").grants == (Grant("*", clinic="c2", registered_names=True),)
    for nobody in (member("clinic-admin", clinic=None), member("janitor"), member(None)):
        with pytest.raises(Forbidden):
            policy.visibility(nobody, "r", "Observation")
    assert policy.visibility(AccessContext("op", "local-operator"), "d", "Observation").unrestricted


def test_policy_platform_admins_reach_clinics_only() -> None:
    admin = AccessContext("a", "platform-admin", scopes=frozenset({"user/*.cruds"}))
    assert policy.visibility(admin, "r", "Observation").grants == (Grant("*", types=frozenset({"Organization"})),)
