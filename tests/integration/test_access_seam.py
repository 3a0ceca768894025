"""The access-context seam: every interaction runs with an access context, and the store narrows
every query by it. Until SMART exists only the loopback operator may see anything; any other
context sees nothing, by every read path, and cannot write."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from fhir_server.access import AccessContext
from fhir_server.errors import Forbidden, NotFound
from fhir_server.interactions import create, history, read
from fhir_server.interactions.context import Env
from tests.conftest import FHIR_JSON

OUTSIDER = AccessContext(principal="someone", kind="clinic-member", clinic_id="other-clinic")


def test_a_caller_off_loopback_gets_401_with_a_challenge(app):
    with TestClient(app, base_url="http://127.0.0.1", client=("10.1.2.3", 5000)) as remote:
        response = remote.get("/fhir/Patient/anything", headers=FHIR_JSON)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "authentication-required"


def test_a_restricted_context_sees_nothing_by_any_read_path(client, store, settings):
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "active": True}, headers=FHIR_JSON)
    patient_id = created.json()["id"]
    outsider = Env(store, settings, OUTSIDER, "http://127.0.0.1/fhir")
    with pytest.raises(NotFound):
        read.read(outsider, "Patient", patient_id)
    with pytest.raises(NotFound):
        read.vread(outsider, "Patient", patient_id, "1")
    with pytest.raises(NotFound):
        history.history(outsider, [], "Patient", patient_id)
    type_history = history.history(outsider, [("_count", "1000")], "Patient").body
    assert type_history is not None and "entry" not in type_history
    system_history = history.history(outsider, [("_count", "1000")]).body
    assert system_history is not None and "entry" not in system_history


def test_a_restricted_context_cannot_write(store, settings):
    outsider = Env(store, settings, OUTSIDER, "http://127.0.0.1/fhir")
    with pytest.raises(Forbidden):
        create.create(outsider, "Patient", {"resourceType": "Patient"})


def test_a_restricted_context_finds_nothing_by_any_search_path(client, store, settings):
    """Search, system search, compartment search, includes and counts go through the same policy."""
    import uuid

    from fhir_server.interactions import search

    family = f"Seam{uuid.uuid4().hex[:10]}"
    patient = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": family}]}, headers=FHIR_JSON
    ).json()["id"]
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": family},
        "subject": {"reference": f"Patient/{patient}"},
    }
    assert client.post("/fhir/Observation", json=observation, headers=FHIR_JSON).status_code == 201
    assert client.get("/fhir/Patient", params={"family": family}).json()["total"] == 1  # the operator sees it
    outsider = Env(store, settings, OUTSIDER, "http://127.0.0.1/fhir")
    answers = [
        search.search(outsider, "Patient", [("family", family), ("_revinclude", "Observation:patient")]),
        search.search(outsider, "Observation", [("patient.family", family), ("_include", "Observation:subject")]),
        search.search(outsider, "Patient", [("_has:Observation:patient:code:text", family)]),
        search.search(outsider, None, [("_type", "Patient,Observation"), ("_id", patient)]),
        search.search(outsider, "Observation", [], compartment=("Patient", patient)),
    ]
    for answer in answers:
        assert answer.body is not None
        assert answer.body["total"] == 0 and "entry" not in answer.body
