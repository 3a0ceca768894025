"""Audit (issue 5 point 8; IHE BALP): every FHIR interaction leaves exactly its AuditEvents, with
the right subtype, action, outcome, agents and entities; a change and its event are committed or
undone together; AuditEvents are read-only through the API; a patient reads the audit trail of
their own record and no one else's; impersonation names both people.

Tokens come from real flows (client_credentials with a real key, the authorization-code flow
through the HTML forms); the impersonation case runs at the interaction level (the token exchange
that would carry `act` comes later).
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

import pytest
from starlette.testclient import TestClient

from fhir_server.access import AccessContext
from fhir_server.app import create_app
from fhir_server.interactions import create, read, search
from fhir_server.interactions.auditing import Interaction, audited
from fhir_server.interactions.context import Env
from tests.conftest import FHIR_JSON
from tests.integration.oauth_helpers import (
    Browser,
    assertion,
    authorize_params,
    backend_client,
    client_credentials,
    exchange,
    key_pair,
    login_and_approve,
    patient_account,
    pkce,
    public_client,
    served_with_tokens,
)

REMOTE = ("203.0.113.7", 50000)
BASE = "http://127.0.0.1/fhir"
CLIENT_SYSTEM = "urn:fhir-server:client"
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


@pytest.fixture(scope="module")
def guarded(settings: Any, store: Any) -> Iterator[TestClient]:
    """The same database served as by default: every request needs a token."""
    yield from served_with_tokens(settings, store, REMOTE)


def _backend(guarded: TestClient, store: Any, scopes: str, clinic: str) -> tuple[dict[str, str], str]:
    """A clinic's backend service: the headers of its token, and its client id."""
    private, public = key_pair("RS384")
    client_id = backend_client(store, {"keys": [public]}, scopes, clinic)
    response = client_credentials(guarded, client_id, assertion(private, "RS384", client_id), scopes)
    assert response.status_code == 200, response.text
    return {**FHIR_JSON, "Authorization": f"Bearer {response.json()['access_token']}"}, client_id


def _events(client: TestClient, **params: str) -> list[dict[str, Any]]:
    """AuditEvents matching `params`, oldest first (read by the local operator, who sees all)."""
    response = client.get("/fhir/AuditEvent", params={**params, "_count": "500"}, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    events = [entry["resource"] for entry in response.json().get("entry", [])]
    return sorted(events, key=lambda event: event["recorded"])


def _by_client(client: TestClient, client_id: str) -> list[dict[str, Any]]:
    return _events(client, **{"agent:identifier": f"{CLIENT_SYSTEM}|{client_id}"})


def _agent(event: dict[str, Any], code: str) -> dict[str, Any]:
    (agent,) = [agent for agent in event["agent"] if agent["type"]["coding"][0]["code"] == code]
    return agent


def _entities(event: dict[str, Any], role: str) -> list[dict[str, Any]]:
    return [entity for entity in event.get("entity", []) if entity.get("role", {}).get("code") == role]


def _summary(event: dict[str, Any]) -> tuple[Any, ...]:
    """(subtypes, action, outcome, request id, resource touched, patients) of one event."""
    (request_id,) = [
        entity["what"]["identifier"]["value"] for entity in event["entity"] if entity["type"]["code"] == "XrequestId"
    ]
    touched = [entity["what"].get("reference", entity["what"].get("type")) for entity in _entities(event, "4")]
    patients = [entity["what"]["reference"] for entity in _entities(event, "1")]
    subtypes = tuple(coding["code"] for coding in event["subtype"])
    return subtypes, event["action"], event["outcome"], request_id, touched, patients


def _observation(patient: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
    }


def test_a_scripted_session_leaves_exactly_its_audit_events(guarded: TestClient, client: TestClient, store: Any):
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    headers, client_id = _backend(guarded, store, "system/*.cruds", clinic)
    marker = f"audit-{uuid.uuid4().hex[:8]}"
    request_ids: list[str] = []

    def call(method: str, path: str, status: int, **kwargs: Any) -> Any:
        response = guarded.request(method, path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
        assert response.status_code == status, (method, path, response.text)
        request_ids.append(response.headers["x-request-id"])
        return response

    patient = call("POST", "/fhir/Patient", 201, json={"resourceType": "Patient", "name": [{"family": marker}]})
    p = patient.json()["id"]
    call("GET", f"/fhir/Patient/{p}", 200)
    call("GET", f"/fhir/Patient/{p}/_history/1", 200)
    call("PUT", f"/fhir/Patient/{p}", 200, json={"resourceType": "Patient", "id": p, "active": True})
    call(
        "PATCH",
        f"/fhir/Patient/{p}",
        200,
        json=[{"op": "add", "path": "/gender", "value": "other"}],
        headers=JSON_PATCH,
    )
    call("GET", "/fhir/Observation", 200, params={"patient": p, "code:text": marker})
    call("GET", f"/fhir/Patient/{p}/_history", 200)
    o = call("POST", "/fhir/Observation", 201, json=_observation(p, marker)).json()["id"]
    call("DELETE", f"/fhir/Observation/{o}", 204)
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Observation"}, "resource": _observation(p, marker)},
            {"request": {"method": "GET", "url": f"Patient/{p}"}},
        ],
    }
    answer = call("POST", "/fhir", 200, json=transaction).json()
    t = answer["entry"][0]["response"]["location"].split("/")[1]
    call("GET", f"/fhir/Patient/{p}/$validate", 200)
    missing = str(uuid.uuid4())
    call("GET", f"/fhir/Patient/{missing}", 404)
    reader_headers, reader_id = _backend(guarded, store, "system/*.rs", clinic)
    refused = guarded.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=reader_headers)
    assert refused.status_code == 403

    events = _by_client(client, client_id)
    r = request_ids
    pp = [f"Patient/{p}"]
    assert [_summary(event) for event in events] == [
        (("create",), "C", "0", r[0], [f"Patient/{p}/_history/1"], pp),
        (("read",), "R", "0", r[1], [f"Patient/{p}/_history/1"], pp),
        (("vread",), "R", "0", r[2], [f"Patient/{p}/_history/1"], pp),
        (("update",), "U", "0", r[3], [f"Patient/{p}/_history/2"], pp),
        (("patch",), "U", "0", r[4], [f"Patient/{p}/_history/3"], pp),
        (("search-type",), "E", "0", r[5], [], pp),
        (("history-instance",), "R", "0", r[6], [f"Patient/{p}"], pp),
        (("create",), "C", "0", r[7], [f"Observation/{o}/_history/1"], pp),
        (("delete",), "D", "0", r[8], [f"Observation/{o}/_history/2"], pp),
        (("transaction",), "E", "0", r[9], [f"Observation/{t}/_history/1", f"Patient/{p}/_history/3"], pp),
        (("operation", "validate"), "E", "0", r[10], [f"Patient/{p}"], pp),
        (("read",), "R", "4", r[11], [f"Patient/{missing}"], [f"Patient/{missing}"]),
    ]
    for event in events:
        user = event["agent"][0]
        assert user["requestor"] is True and user["who"]["identifier"] == {"system": CLIENT_SYSTEM, "value": client_id}
        assert _agent(event, "clinic")["who"] == {"reference": f"Organization/{clinic}"}
        app_agent = _agent(event, "110152" if event["action"] == "R" else "110153")
        assert app_agent["who"]["identifier"]["value"] == client_id
        assert app_agent["network"] == {"address": REMOTE[0], "type": "2"}
        assert _agent(event, "110153" if event["action"] == "R" else "110152")["network"]["address"] == BASE
        assert "outcomeDesc" in event if event["outcome"] != "0" else "outcomeDesc" not in event
    lifecycles = [entity["lifecycle"]["code"] for entity in _entities(events[9], "4")]
    assert lifecycles == ["1", "6"]  # created, accessed (DICOM audit lifecycle)
    (query,) = _entities(events[5], "24")
    path, _, sent = base64.b64decode(query["query"]).decode().partition("?")
    assert (path, parse_qsl(sent)) == ("Observation", [("patient", p), ("code:text", marker)])
    assert "resource-not-found" in events[-1]["outcomeDesc"]
    (forbidden,) = _by_client(client, reader_id)
    assert _summary(forbidden)[:3] == (("create",), "C", "4")
    assert _entities(forbidden, "4")[0]["what"] == {"type": "Patient"}
    assert "scope-insufficient" in forbidden["outcomeDesc"]
    assert forbidden["agent"][0]["type"]["coding"][0]["code"] == "110150"  # a backend service is an application
    by_patient = _events(client, patient=p, **{"agent:identifier": f"{CLIENT_SYSTEM}|{client_id}"})
    assert len(by_patient) == 11  # AuditEvent?patient= finds each event about the patient
    # the clinic's events are the clinic's record: it reads them, another clinic does not
    mine = {"agent:identifier": f"{CLIENT_SYSTEM}|{client_id}", "_count": "100"}
    own = guarded.get("/fhir/AuditEvent", params=mine, headers=headers).json()
    assert {entry["resource"]["id"] for entry in own["entry"]} == {event["id"] for event in events}
    stranger, _ = _backend(guarded, store, "system/*.rs", f"clinic-{uuid.uuid4().hex[:8]}")
    assert "entry" not in guarded.get("/fhir/AuditEvent", params=mine, headers=stranger).json()
    assert guarded.get(f"/fhir/AuditEvent/{events[0]['id']}", headers=stranger).status_code == 404


def test_a_failed_write_leaves_its_failure_and_no_success(guarded: TestClient, client: TestClient, store: Any):
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    headers, client_id = _backend(guarded, store, "system/*.cruds", clinic)
    marker = f"rollback-{uuid.uuid4().hex[:8]}"
    p = guarded.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=headers).json()["id"]
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"request": {"method": "POST", "url": "Observation"}, "resource": _observation(p, marker)},
            {
                "request": {"method": "PUT", "url": f"Patient/{p}", "ifMatch": 'W/"7"'},
                "resource": {"resourceType": "Patient", "id": p},
            },
        ],
    }
    failed = guarded.post("/fhir", json=transaction, headers=headers)
    assert failed.status_code == 412, failed.text
    # a granular scope: the write is stored, found outside the grant, and undone
    narrow, narrow_id = _backend(guarded, store, "system/Observation.cruds?category=laboratory", clinic)
    outside = guarded.post("/fhir/Observation", json=_observation(p, marker), headers=narrow)
    assert outside.status_code == 403, outside.text

    assert client.get("/fhir/Observation", params={"code:text": marker}).json().get("entry") is None
    events = _by_client(client, client_id)
    assert [_summary(event)[:3] for event in events] == [(("create",), "C", "0"), (("transaction",), "E", "4")]
    assert "412 version-mismatch" in events[1]["outcomeDesc"]
    assert not _entities(events[1], "4")  # none of the undone entries
    (undone,) = _by_client(client, narrow_id)
    assert _summary(undone)[:3] == (("create",), "C", "4")
    assert _entities(undone, "4")[0]["what"] == {"type": "Observation"}  # the id it had is gone with the write
    assert "scope-write-outside" in undone["outcomeDesc"]


def test_audit_events_cannot_be_created_changed_or_deleted_through_the_api(client: TestClient):
    """Refused even for the local operator, who may do anything else: 405 and nothing changes."""
    patient = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"]
    assert client.get(f"/fhir/Patient/{patient}").status_code == 200
    (event,) = _events(client, entity=f"Patient/{patient}", subtype="read")
    event_id = event["id"]
    before = client.get(f"/fhir/AuditEvent/{event_id}", headers=FHIR_JSON).json()
    body = {key: value for key, value in before.items() if key not in ("id", "meta")}
    patch = [{"op": "replace", "path": "/outcome", "value": "8"}]
    attempts = [
        ("POST", "/fhir/AuditEvent", body, {}),
        ("POST", "/fhir/AuditEvent", body, {"If-None-Exist": f"_id={event_id}"}),
        ("PUT", f"/fhir/AuditEvent/{event_id}", {**body, "id": event_id}, {}),
        ("PUT", f"/fhir/AuditEvent?_id={event_id}", {**body, "id": event_id}, {}),
        ("PATCH", f"/fhir/AuditEvent/{event_id}", patch, JSON_PATCH),
        ("DELETE", f"/fhir/AuditEvent/{event_id}", None, {}),
        ("DELETE", f"/fhir/AuditEvent?_id={event_id}", None, {}),
        ("DELETE", f"/fhir/AuditEvent/{uuid.uuid4()}", None, {}),
    ]
    for method, path, payload, extra in attempts:
        response = client.request(method, path, json=payload, headers={**FHIR_JSON, **extra})
        assert response.status_code == 405, (method, path, response.text)
        assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "audit-event-read-only"
    binary = base64.b64encode(b'[{"op": "remove", "path": "/agent"}]').decode()
    entries = [
        {"request": {"method": "POST", "url": "AuditEvent"}, "resource": body},
        {"request": {"method": "PUT", "url": f"AuditEvent/{event_id}"}, "resource": {**body, "id": event_id}},
        {
            "request": {"method": "PATCH", "url": f"AuditEvent/{event_id}"},
            "resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": binary},
        },
        {"request": {"method": "DELETE", "url": f"AuditEvent/{event_id}"}},
        {"request": {"method": "DELETE", "url": f"AuditEvent?_id={event_id}"}},
    ]
    batch = client.post("/fhir", json={"resourceType": "Bundle", "type": "batch", "entry": entries}, headers=FHIR_JSON)
    assert [entry["response"]["status"] for entry in batch.json()["entry"]] == ["405"] * len(entries)
    for entry in entries:
        bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [entry]}
        refused = client.post("/fhir", json=bundle, headers=FHIR_JSON)
        assert refused.status_code == 405, refused.text
        assert refused.json()["issue"][0]["details"]["coding"][0]["code"] == "audit-event-read-only"
    assert client.get(f"/fhir/AuditEvent/{event_id}", headers=FHIR_JSON).json() == before
    history = client.get(f"/fhir/AuditEvent/{event_id}/_history", headers=FHIR_JSON).json()
    assert [entry["resource"]["meta"]["versionId"] for entry in history["entry"]] == ["1"]
    attempts_audited = _events(client, entity=f"AuditEvent/{event_id}", outcome="4")
    assert {_summary(event)[0][0] for event in attempts_audited} == {"update", "patch", "delete"}
    statement = client.get("/fhir/metadata", headers=FHIR_JSON).json()
    (declared,) = [entry for entry in statement["rest"][0]["resource"] if entry["type"] == "AuditEvent"]
    assert [interaction["code"] for interaction in declared["interaction"]] == [
        "read",
        "vread",
        "history-instance",
        "history-type",
        "search-type",
    ]
    assert (declared["conditionalCreate"], declared["conditionalUpdate"]) == (False, False)


def _patient_token(guarded: TestClient, client: TestClient, store: Any) -> tuple[dict[str, str], str, str]:
    """A patient's own token (standalone launch, patient/*.rs), their Patient id and account id."""
    client_id = public_client(store)
    email, patient, account = patient_account(client, store)
    verifier, challenge = pkce()
    browser = Browser(guarded)
    browser.open("/auth/authorize", authorize_params(client_id, "launch/patient patient/*.rs", challenge))
    token = exchange(guarded, client_id, login_and_approve(browser, email)["code"], verifier).json()
    assert token["patient"] == patient
    return {**FHIR_JSON, "Authorization": f"Bearer {token['access_token']}"}, patient, account


def test_a_patient_reads_the_audit_trail_of_their_own_record_and_no_one_elses(
    guarded: TestClient, client: TestClient, store: Any
):
    mine, me, account = _patient_token(guarded, client, store)
    other = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"]
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    clinic_headers, clinic_client = _backend(guarded, store, "system/*.cruds", clinic)
    for subject in (me, other):
        created = guarded.post("/fhir/Observation", json=_observation(subject, "pulse"), headers=clinic_headers)
        assert created.status_code == 201, created.text
        assert guarded.get(f"/fhir/Observation/{created.json()['id']}", headers=clinic_headers).status_code == 200

    trail = guarded.get("/fhir/AuditEvent", params={"patient": me, "_count": "100"}, headers=mine)
    assert trail.status_code == 200, trail.text
    events = [entry["resource"] for entry in trail.json()["entry"]]
    by_clinic = [
        event
        for event in events
        if any(agent["who"].get("reference") == f"Organization/{clinic}" for agent in event["agent"])
    ]
    assert sorted(_summary(event)[:3] for event in by_clinic) == [(("create",), "C", "0"), (("read",), "R", "0")]
    for event in by_clinic:  # who (the clinic's service), when, from which clinic
        assert event["agent"][0]["who"]["identifier"]["value"] == clinic_client and event["recorded"]
    assert all(f"Patient/{other}" not in str(event) for event in events)
    their_trail = guarded.get("/fhir/AuditEvent", params={"patient": other}, headers=mine)
    assert their_trail.status_code == 200 and "entry" not in their_trail.json()
    (about_other,) = [
        event
        for event in _by_client(client, clinic_client)
        if _entities(event, "1")[0]["what"]["reference"] == f"Patient/{other}" and event["action"] == "R"
    ]
    assert guarded.get(f"/fhir/AuditEvent/{about_other['id']}", headers=mine).status_code == 404
    # the patient's own reading of their trail is on it too (the next time they look)
    again = guarded.get("/fhir/AuditEvent", params={"patient": me, "subtype": "search-type"}, headers=mine).json()
    assert any(entry["resource"]["agent"][0]["who"]["identifier"]["value"] == account for entry in again["entry"])


def test_impersonation_is_audited_naming_the_admin_and_the_patient(client: TestClient, store: Any, settings: Any):
    me = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"]
    admin = f"admin-{uuid.uuid4().hex[:8]}"
    impersonating = AccessContext(
        principal=f"account-{me}",
        kind="patient",
        scopes=frozenset({"patient/*.cruds"}),
        client_address="198.51.100.9",
        client_id="support-console",
        patient=me,
        fhir_user=f"Patient/{me}",
        acting_admin=admin,
    )
    env = Env(store, settings, impersonating, BASE, request_id=uuid.uuid4().hex)
    audited(env, Interaction("read", "Patient", me), read.read, env, "Patient", me)
    observation = _observation(me, "seen by support")
    audited(env, Interaction("create", "Observation"), create.create, env, "Observation", observation)

    events = _events(client, **{"agent:identifier": f"urn:fhir-server:account|{admin}"})
    assert [_summary(event)[:3] for event in events] == [(("read",), "R", "0"), (("create",), "C", "0")]
    for event in events:
        admin_agent = _agent(event, "impersonator")
        assert admin_agent["requestor"] is True and admin_agent["who"]["identifier"]["value"] == admin
        user = event["agent"][0]
        assert user["requestor"] is False and user["who"]["reference"] == f"Patient/{me}"
        assert {coding["code"] for role in user["role"] for coding in role["coding"]} >= {"impersonated"}
        assert _entities(event, "1")[0]["what"]["reference"] == f"Patient/{me}"
    # the patient finds them in their own trail (Patient compartment, no impersonation)
    own = AccessContext(principal=f"account-{me}", kind="patient", scopes=frozenset({"patient/*.rs"}), patient=me)
    found = search.search(
        Env(store, settings, own, BASE), "AuditEvent", [("patient", me), ("agent-role", "impersonator")]
    )
    assert found.body is not None
    assert {entry["fullUrl"].rsplit("/", 1)[1] for entry in found.body["entry"]} == {event["id"] for event in events}


def test_with_audit_off_nothing_is_recorded(settings: Any, store: Any, client: TestClient):
    quiet = create_app(settings.model_copy(update={"audit": False}), store=store)
    with TestClient(quiet, base_url="http://127.0.0.1", client=("127.0.0.1", 40001)) as silent:
        patient = silent.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"]
        assert silent.get(f"/fhir/Patient/{patient}", headers=FHIR_JSON).status_code == 200
        assert silent.get(f"/fhir/Patient/{uuid.uuid4()}", headers=FHIR_JSON).status_code == 404
    assert _events(client, entity=f"Patient/{patient}") == []
    client.get(f"/fhir/Patient/{patient}", headers=FHIR_JSON)
    assert len(_events(client, entity=f"Patient/{patient}")) == 1  # the default app audits again


def test_revinclude_wildcard_leaves_the_audit_trail_out_unless_asked_for(client: TestClient):
    patient = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"]
    client.post("/fhir/Observation", json=_observation(patient, "x"), headers=FHIR_JSON)

    def included(revinclude: str) -> set[str]:
        params = {"_id": patient, "_revinclude": revinclude}
        body = client.get("/fhir/Patient", params=params, headers=FHIR_JSON).json()
        return {entry["resource"]["resourceType"] for entry in body["entry"] if entry["search"]["mode"] == "include"}

    assert included("*") == {"Observation"}  # each search would otherwise add to its own answer
    assert included("AuditEvent:patient") == {"AuditEvent"}


def test_a_transaction_is_one_event_per_patient_it_concerns(client: TestClient):
    """A patient's event names only that patient's resources; what concerns no patient has its own."""
    a, b = (
        client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"] for _ in "ab"
    )
    entries = [
        {"request": {"method": "POST", "url": "Observation"}, "resource": _observation(a, "a")},
        {"request": {"method": "POST", "url": "Observation"}, "resource": _observation(b, "b")},
        {"request": {"method": "POST", "url": "Organization"}, "resource": {"resourceType": "Organization"}},
        {"request": {"method": "PUT", "url": f"Patient/{a}"}, "resource": {"resourceType": "Patient", "id": a}},
        {"request": {"method": "GET", "url": f"Patient/{b}"}},
    ]
    response = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.text
    where = [entry["response"]["location"].rsplit("/_history", 1)[0] for entry in response.json()["entry"][:3]]
    events = _events(client, **{"entity:identifier": response.headers["x-request-id"]})
    found = {
        tuple(_summary(event)[5]): sorted(
            (entity["what"]["reference"], entity["lifecycle"]["code"]) for entity in _entities(event, "4")
        )
        for event in events
    }
    assert found == {
        (f"Patient/{a}",): sorted([(f"{where[0]}/_history/1", "1"), (f"Patient/{a}/_history/2", "3")]),
        (f"Patient/{b}",): sorted([(f"{where[1]}/_history/1", "1"), (f"Patient/{b}/_history/1", "6")]),
        (): [(f"{where[2]}/_history/1", "1")],
    }
    assert {_summary(event)[:3] for event in events} == {(("transaction",), "E", "0")}
    empty = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction"}, headers=FHIR_JSON)
    assert empty.status_code == 200
    (nothing,) = _events(client, **{"entity:identifier": empty.headers["x-request-id"]})
    assert _summary(nothing)[:5] == (("transaction",), "E", "0", empty.headers["x-request-id"], [])
