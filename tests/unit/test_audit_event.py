"""AuditEvent content (fhir_server/audit, IHE BALP): valid R4 by the server's own validator, the
agents and entities BALP asks for, impersonation naming both people, and the patients a
request concerns."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from fhir_server.access import AccessContext
from fhir_server.audit import AuditRecord, Touched, audit_event
from fhir_server.interactions.audit_subjects import resource_patients, search_patients
from fhir_server.model.validate import validation_issues

SERVER = "https://fhir.example.org/fhir"
CLINICIAN = AccessContext(
    principal="account-7",
    kind="clinic-member",
    clinic_id="clinic-1",
    scopes=frozenset({"user/*.rs"}),
    client_address="203.0.113.7",
    client_id="ehr-app",
    fhir_user="Practitioner/pr-1",
    role="practitioner",
)
IMPERSONATION = AccessContext(
    principal="account-42",
    kind="patient",
    scopes=frozenset({"patient/*.rs"}),
    client_address="2001:db8::1",
    client_id="support-console",
    patient="pat-1",
    fhir_user="Patient/pat-1",
    acting_admin="admin-3",
)
RECORDS = [
    AuditRecord("read", "R", (Touched("Observation", "obs-1", 2),), ("pat-1",)),
    AuditRecord("search-type", "E", (), ("pat-1",), query="Observation?patient=pat-1&code=x|y"),
    AuditRecord("create", "C", (Touched("Observation", None),), outcome="4", outcome_desc="403 scope-insufficient: no"),
    AuditRecord("create", "C", (Touched("Patient", "pat-1", 1),), ("pat-1",), bundle="transaction"),
    AuditRecord("operation", "E", (Touched("Patient", "pat-1"),), ("pat-1",), query="Patient/pat-1/$x", operation="x"),
    AuditRecord("transaction", "E", outcome="8", outcome_desc="500 internal-error: Internal error"),
]


def _event(record: AuditRecord, access: AccessContext, request_id: str | None = "req-1") -> dict[str, Any]:
    event = audit_event(record, access, recorded="2026-01-02T03:04:05.123456Z", server=SERVER, request_id=request_id)
    return event


def _agent(event: dict[str, Any], code: str) -> dict[str, Any]:
    (agent,) = [agent for agent in event["agent"] if agent["type"]["coding"][0]["code"] == code]
    return agent


@pytest.mark.parametrize("access", [CLINICIAN, IMPERSONATION], ids=["clinician", "impersonation"])
@pytest.mark.parametrize("record", RECORDS, ids=lambda record: f"{record.subtype}-{record.outcome}")
def test_built_events_are_valid_r4(record: AuditRecord, access: AccessContext) -> None:
    assert validation_issues(_event(record, access)) == []


def test_a_local_operator_without_client_or_request_id_is_valid_too() -> None:
    operator = AccessContext(principal="local-operator", kind="local-operator", client_address="testclient")
    event = _event(RECORDS[0], operator, request_id=None)
    assert validation_issues(event) == []
    client = _agent(event, "110152")
    assert client["network"] == {"address": "testclient", "type": "1"}  # a machine name, not an IP address


def test_a_read_names_user_clinic_client_and_server_with_balp_directions() -> None:
    event = _event(RECORDS[0], CLINICIAN)
    assert event["type"]["code"] == "rest" and event["action"] == "R" and event["outcome"] == "0"
    assert event["subtype"] == [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}]
    user = _agent(event, "IRCP")  # BALP: the user receives what is read
    assert user["requestor"] is True
    assert user["who"] == {
        "reference": "Practitioner/pr-1",
        "identifier": {"system": "urn:fhir-server:account", "value": "account-7"},
    }
    assert {coding["code"] for role in user["role"] for coding in role["coding"]} == {"clinic-member", "practitioner"}
    assert _agent(event, "clinic")["who"] == {"reference": "Organization/clinic-1"}
    client = _agent(event, "110152")  # a read flows to the client: the destination
    assert client["who"]["identifier"]["value"] == "ehr-app"
    assert client["network"] == {"address": "203.0.113.7", "type": "2"}
    assert _agent(event, "110153")["network"] == {"address": SERVER, "type": "5"}
    assert "outcomeDesc" not in event


def test_a_change_has_the_user_as_author_and_the_client_as_source() -> None:
    event = _event(RECORDS[3], CLINICIAN)
    assert [coding["code"] for coding in event["subtype"]] == ["create", "transaction"]
    assert _agent(event, "AUT")["requestor"] is True
    assert _agent(event, "110153")["who"]["identifier"]["value"] == "ehr-app"


def test_entities_are_the_resource_the_patient_the_request_id_and_for_searches_the_query() -> None:
    read = _event(RECORDS[0], CLINICIAN)
    assert [(entity["type"]["code"], entity.get("role", {}).get("code")) for entity in read["entity"]] == [
        ("2", "4"),
        ("1", "1"),
        ("XrequestId", None),
    ]
    assert read["entity"][0]["what"] == {"reference": "Observation/obs-1/_history/2"}
    assert read["entity"][1]["what"] == {"reference": "Patient/pat-1"}
    assert read["entity"][2]["what"] == {"identifier": {"value": "req-1"}}
    search = _event(RECORDS[1], CLINICIAN)
    (query,) = [entity for entity in search["entity"] if entity.get("role", {}).get("code") == "24"]
    assert base64.b64decode(query["query"]).decode() == "Observation?patient=pat-1&code=x|y"
    assert "what" not in query  # the request, never its results


def test_a_failure_has_its_outcome_and_description() -> None:
    event = _event(RECORDS[2], CLINICIAN)
    assert (event["outcome"], event["outcomeDesc"]) == ("4", "403 scope-insufficient: no")
    assert event["entity"][0]["what"] == {"type": "Observation"}  # no id was assigned


def test_impersonation_names_the_admin_and_the_patient() -> None:
    event = _event(RECORDS[0], IMPERSONATION)
    admin = _agent(event, "impersonator")
    assert admin["requestor"] is True
    assert admin["who"] == {"identifier": {"system": "urn:fhir-server:account", "value": "admin-3"}}
    assert {coding["code"] for role in admin["role"] for coding in role["coding"]} == {"impersonator", "platform-admin"}
    user = _agent(event, "IRCP")
    assert user["requestor"] is False  # the admin asked, as the patient
    assert user["who"]["reference"] == "Patient/pat-1"
    assert {coding["code"] for role in user["role"] for coding in role["coding"]} == {"patient", "impersonated"}
    assert _agent(event, "110152")["network"] == {"address": "2001:db8::1", "type": "2"}
    assert not any(agent["type"]["coding"][0]["code"] == "clinic" for agent in event["agent"])


def test_without_impersonation_no_agent_is_marked_so() -> None:
    codes = {coding["code"] for agent in _event(RECORDS[0], CLINICIAN)["agent"] for coding in agent["type"]["coding"]}
    assert "impersonator" not in codes


def test_the_patients_of_a_resource_are_those_of_its_compartment() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"reference": "Patient/p1"},
        "performer": [{"reference": "Patient/p2"}, {"reference": "Practitioner/d1"}],
        "focus": [{"reference": "Patient/p3"}],  # not a compartment parameter of Observation
    }
    assert sorted(resource_patients("Observation", "o1", observation)) == ["p1", "p2"]
    assert resource_patients("Patient", "p9", {"resourceType": "Patient"}) == ("p9",)
    assert resource_patients("Organization", "org", {"resourceType": "Organization"}) == ()
    assert resource_patients("Observation", "o1", None) == ()


@pytest.mark.parametrize(
    ("resource_type", "params", "expected"),
    [
        ("Observation", [("patient", "p1")], ("p1",)),
        ("Observation", [("subject", "Patient/p1,Group/g1")], ("p1",)),
        ("Observation", [("subject", "p1")], ()),  # subject may name a Group, a Device...: not an id of a Patient
        ("Observation", [("subject:Patient", "p1")], ("p1",)),
        ("Observation", [("subject", "https://other.example/fhir/Patient/p1")], ("p1",)),
        ("Observation", [("patient.name", "p1"), ("subject:identifier", "x|p1"), ("code", "p1")], ()),
        ("Patient", [("_id", "p1,p2")], ("p1", "p2")),
        ("Patient", [("name", "p1")], ()),
        ("Observation", [("patient", "not an id!")], ()),
        (None, [("_type", "Observation"), ("patient", "p1")], ()),
    ],
)
def test_the_patients_a_search_names(
    resource_type: str | None, params: list[tuple[str, str]], expected: tuple[str, ...]
) -> None:
    assert search_patients(CLINICIAN, resource_type, params) == expected


def test_a_search_concerns_the_compartment_and_the_patient_the_caller_is_limited_to() -> None:
    assert search_patients(CLINICIAN, "Observation", [], ("Patient", "p4")) == ("p4",)
    assert search_patients(IMPERSONATION, "Observation", [("code", "x")]) == ("pat-1",)
    launched = AccessContext(principal="a", kind="clinic-member", patient="p5", scopes=frozenset({"user/*.rs"}))
    assert search_patients(launched, "Observation", []) == ()  # a launch patient without patient/ scopes


def test_the_platform_codes_are_the_published_ones() -> None:
    """conformance/CodeSystem-*.json publish every platform code an AuditEvent carries (and
    tests/unit/test_platform_definitions.py checks they are valid R4)."""
    from pathlib import Path

    from fhir_server.audit import codes
    from fhir_server.auth.policy import ROLE_TYPES

    def published(name: str) -> dict[str, Any]:
        path = Path(__file__).resolve().parents[2] / "conformance" / f"CodeSystem-{name}.json"
        return json.loads(path.read_text())

    agents = published("audit-agent")
    assert agents["url"] == codes.AGENT_SYSTEM
    assert {(concept["code"], concept["display"]) for concept in agents["concept"]} == {
        (coding["code"], coding["display"]) for coding in (codes.CLINIC_AGENT, codes.IMPERSONATOR, codes.IMPERSONATED)
    }
    kinds = published("principal-kind")
    assert kinds["url"] == codes.PRINCIPAL_KIND_SYSTEM
    assert {concept["code"] for concept in kinds["concept"]} == {
        "patient",
        "clinic-member",
        "backend-service",
        "platform-admin",
        "local-operator",
    }
    roles = published("clinic-role")
    assert roles["url"] == codes.CLINIC_ROLE_SYSTEM
    assert {concept["code"] for concept in roles["concept"]} == set(ROLE_TYPES)
