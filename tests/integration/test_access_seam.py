"""The access-context seam: every interaction runs with an access context, and the store narrows
every query by it. The loopback operator (where the settings allow it) sees everything; a
context without scopes may do nothing."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from fhir_server.access import AccessContext
from fhir_server.errors import Forbidden
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


def test_a_context_without_scopes_is_refused_by_every_path(client, store, settings):
    """No scope, no interaction: 403 before any row is read (the scope cases are in
    test_scope_enforcement.py)."""
    from fhir_server.interactions import search

    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "active": True}, headers=FHIR_JSON)
    patient_id = created.json()["id"]
    outsider = Env(store, settings, OUTSIDER, "http://127.0.0.1/fhir")
    attempts = [
        lambda: read.read(outsider, "Patient", patient_id),
        lambda: read.vread(outsider, "Patient", patient_id, "1"),
        lambda: history.history(outsider, [], "Patient", patient_id),
        lambda: history.history(outsider, [], "Patient"),
        lambda: history.history(outsider, []),
        lambda: search.search(outsider, "Patient", [("_id", patient_id)]),
        lambda: search.search(outsider, None, [("_type", "Patient"), ("_id", patient_id)]),
        lambda: search.search(outsider, "Observation", [], compartment=("Patient", patient_id)),
        lambda: create.create(outsider, "Patient", {"resourceType": "Patient"}),
    ]
    for attempt in attempts:
        with pytest.raises(Forbidden) as refused:
            attempt()
        assert refused.value.error_code == "scope-insufficient"
