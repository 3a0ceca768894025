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
