"""The FHIR API as a SMART resource server (SMART App Launch 2.x app-launch.html#access-fhir-api,
RFC 6750): with the local operator off, as served by default, every FHIR endpoint wants a valid
bearer token except the CapabilityStatement and the discovery documents; tokens come from real
flows against this server (client_credentials with a real RS384 key, the authorization-code flow
through the HTML forms) and their scopes decide what each request may do.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from fhir_server.app import create_app
from tests.conftest import FHIR_JSON
from tests.integration.oauth_helpers import (
    Browser,
    authorize_params,
    backend_token,
    bearer,
    exchange,
    login_and_approve,
    patient_account,
    pkce,
    public_client,
    served_with_tokens,
)

REMOTE = ("203.0.113.7", 50000)  # not loopback: the operator shortcut could not apply anyway


@pytest.fixture(scope="module")
def guarded(settings: Any, store: Any) -> Iterator[TestClient]:
    """The same database served with the default: no unauthenticated local operator."""
    yield from served_with_tokens(settings, store, REMOTE)


def _patient(client: TestClient, family: str) -> str:
    response = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": family}]}, headers=FHIR_JSON
    )
    assert response.status_code == 201
    return str(response.json()["id"])


def test_every_fhir_endpoint_refuses_a_request_without_a_token(guarded: TestClient, client: TestClient) -> None:
    patient = _patient(client, f"Guard{uuid.uuid4().hex[:8]}")
    body = {"resourceType": "Patient"}
    transaction = {"resourceType": "Bundle", "type": "transaction", "entry": []}
    attempts = [
        ("GET", f"/fhir/Patient/{patient}", None),
        ("GET", f"/fhir/Patient/{patient}/_history/1", None),
        ("GET", f"/fhir/Patient/{patient}/_history", None),
        ("GET", "/fhir/Patient/_history", None),
        ("GET", "/fhir/_history", None),
        ("GET", "/fhir/Patient?name=x", None),
        ("POST", "/fhir/Patient/_search", None),
        ("GET", "/fhir?_type=Patient", None),
        ("GET", f"/fhir/Patient/{patient}/Observation", None),
        ("POST", "/fhir/Patient", body),
        ("PUT", f"/fhir/Patient/{patient}", {**body, "id": patient}),
        ("DELETE", f"/fhir/Patient/{patient}", None),
        ("POST", "/fhir", transaction),
        ("POST", "/fhir/Patient/$validate", body),
        ("GET", f"/fhir/Patient/{patient}/$validate", None),
    ]
    for method, path, payload in attempts:
        response = guarded.request(method, path, json=payload, headers=FHIR_JSON)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["www-authenticate"].startswith("Bearer"), (method, path)
    patch = guarded.patch(
        f"/fhir/Patient/{patient}",
        json=[{"op": "add", "path": "/active", "value": True}],
        headers={"Content-Type": "application/json-patch+json"},
    )
    assert patch.status_code == 401
    assert guarded.get("/fhir/metadata", headers=FHIR_JSON).status_code == 200
    assert guarded.get("/fhir/.well-known/smart-configuration").status_code == 200
    assert guarded.get("/fhir/.well-known/openid-configuration").status_code == 200
    assert client.get(f"/fhir/Patient/{patient}").json()["meta"]["versionId"] == "1"  # nothing was changed


def test_a_backend_service_reads_its_clinic_with_its_own_key_and_writes_only_with_write_scopes(
    guarded: TestClient, store: Any
) -> None:
    clinic, other_clinic = f"clinic-{uuid.uuid4().hex[:8]}", f"clinic-{uuid.uuid4().hex[:8]}"
    writer = backend_token(guarded, store, "system/Patient.cruds", clinic=clinic)
    created = guarded.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=bearer(writer))
    assert created.status_code == 201, created.text
    patient = created.json()["id"]
    reader = backend_token(guarded, store, "system/*.rs", clinic=clinic)
    assert guarded.get(f"/fhir/Patient/{patient}", headers=bearer(reader)).status_code == 200
    found = guarded.get("/fhir/Patient", params={"_id": patient}, headers=bearer(reader)).json()
    assert [entry["resource"]["id"] for entry in found["entry"]] == [patient]
    outsider = backend_token(guarded, store, "system/*.rs", clinic=other_clinic)
    assert guarded.get(f"/fhir/Patient/{patient}", headers=bearer(outsider)).status_code == 404
    refused = guarded.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=bearer(reader))
    assert refused.status_code == 403, refused.text  # read scopes never imply write
    other_type = guarded.post(
        "/fhir/Observation",
        json={"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
        headers=bearer(writer),
    )
    assert other_type.status_code == 403


def test_a_patient_token_reads_its_own_record_and_nothing_of_another_patient(
    guarded: TestClient, client: TestClient, store: Any
) -> None:
    client_id = public_client(store)
    email, me, _ = patient_account(client, store)
    other = _patient(client, f"Other{uuid.uuid4().hex[:8]}")
    mine, theirs = (
        client.post(
            "/fhir/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": "heart rate"},
                "subject": {"reference": f"Patient/{subject}"},
            },
            headers=FHIR_JSON,
        ).json()["id"]
        for subject in (me, other)
    )
    verifier, challenge = pkce()
    browser = Browser(guarded)
    browser.open("/auth/authorize", authorize_params(client_id, "launch/patient patient/*.rs", challenge))
    token = exchange(guarded, client_id, login_and_approve(browser, email)["code"], verifier).json()
    assert token["patient"] == me
    headers = bearer(token["access_token"])
    assert guarded.get(f"/fhir/Patient/{me}", headers=headers).status_code == 200
    assert guarded.get(f"/fhir/Observation/{mine}", headers=headers).status_code == 200
    hidden = guarded.get(f"/fhir/Patient/{other}", headers=headers)
    missing = guarded.get(f"/fhir/Patient/{uuid.uuid4()}", headers=headers)
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["issue"][0]["details"] == missing.json()["issue"][0]["details"] | {
        "text": hidden.json()["issue"][0]["details"]["text"]
    }
    assert guarded.get(f"/fhir/Observation/{theirs}", headers=headers).status_code == 404
    searched = guarded.get("/fhir/Observation", params={"code:text": "heart rate"}, headers=headers).json()
    assert {entry["resource"]["id"] for entry in searched.get("entry", [])} == {mine}
    write = guarded.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{me}"},
        },
        headers=headers,
    )
    assert write.status_code == 403  # a read-only token writing
    revoked = guarded.post("/auth/revoke", data={"token": token["access_token"], "client_id": client_id})
    assert revoked.status_code == 200
    after = guarded.get(f"/fhir/Patient/{me}", headers=headers)
    assert after.status_code == 401 and 'error="invalid_token"' in after.headers["www-authenticate"]


def test_tampered_garbage_and_expired_tokens_are_401(
    guarded: TestClient, settings: Any, store: Any, client: TestClient
) -> None:
    token = backend_token(guarded, store, "system/*.cruds", clinic="clinic-tamper")
    created = guarded.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=bearer(token))
    assert created.status_code == 201
    patient = created.json()["id"]
    header, payload, signature = token.split(".")
    flipped = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    for bad in (f"{header}.{flipped}.{signature}", "not-a-token", token + "x"):
        response = guarded.get(f"/fhir/Patient/{patient}", headers=bearer(bad))
        assert response.status_code == 401, bad
        assert 'error="invalid_token"' in response.headers["www-authenticate"]
    assert guarded.get(f"/fhir/Patient/{patient}", headers={"Authorization": f"Basic {token}"}).status_code == 401
    assert guarded.get(f"/fhir/Patient/{patient}", headers=bearer(token)).status_code == 200
    short = create_app(
        settings.model_copy(update={"allow_unauthenticated_loopback": False, "access_token_seconds": 3}), store=store
    )
    with TestClient(short, base_url="http://127.0.0.1", client=REMOTE) as short_lived:
        expiring = backend_token(short_lived, store, "system/*.rs", clinic="clinic-tamper")
        assert short_lived.get(f"/fhir/Patient/{patient}", headers=bearer(expiring)).status_code == 200
        time.sleep(4.1)
        expired = short_lived.get(f"/fhir/Patient/{patient}", headers=bearer(expiring))
        assert expired.status_code == 401 and 'error="invalid_token"' in expired.headers["www-authenticate"]
