"""Impersonation by OAuth 2.0 Token Exchange (RFC 8693; authserver/exchange.py): a platform admin,
signed in with password and TOTP through the authorization pages, trades their own access token
(`actor_token`) for a short-lived, read-only token of one patient (`subject_token=Patient/<id>`)
carrying an `act` claim that names them. Everything goes over HTTP through the ASGI app, with the
local-operator shortcut off for the FHIR requests; every token comes from a real flow.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from fhir_server.api.bearer import access_context
from fhir_server.auth import totp
from fhir_server.authserver import admin
from tests.conftest import FHIR_JSON
from tests.integration.oauth_helpers import (
    ACCESS_TOKEN_TYPE,
    ASSERTION_TYPE,
    BASE,
    PASSWORD,
    TOKEN_EXCHANGE,
    Browser,
    accounts,
    assertion,
    authorize_params,
    backend_client,
    bearer,
    exchange,
    impersonation_form,
    key_pair,
    login_and_approve,
    patient_account,
    pkce,
    public_client,
    served_with_tokens,
    unique_email,
)

REMOTE = ("203.0.113.9", 50000)  # not loopback: no local-operator shortcut


@pytest.fixture(scope="module")
def guarded(settings: Any, store: Any) -> Iterator[TestClient]:
    """The same database served as by default: every FHIR request needs a bearer token."""
    yield from served_with_tokens(settings, store, REMOTE)


@pytest.fixture(scope="module")
def stale(settings: Any, store: Any) -> Iterator[TestClient]:
    """The same database, issuing access tokens that are expired the moment they are issued."""
    yield from served_with_tokens(settings, store, REMOTE, access_token_seconds=0)


def _claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, read (not verified: the server verifies; this only looks)."""
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _admin_login(http: TestClient, store: Any, client_id: str) -> tuple[str, dict[str, Any]]:
    """A new platform admin signs in with password and TOTP and gets an access token."""
    email = unique_email("admin")
    account, secret = admin.create_account(accounts(store), email=email, password=PASSWORD, kind="platform-admin")
    assert secret
    verifier, challenge = pkce()
    browser = Browser(http)
    browser.open("/auth/authorize", authorize_params(client_id, "user/*.rs", challenge))
    browser.submit({"email": email, "password": PASSWORD})
    assert browser.step() == "mfa", browser.response.text
    browser.submit({"code": totp.code_at(secret, totp.current_step())})
    assert browser.step() == "approve", browser.response.text
    browser.submit(button=("decision", "approve"))
    answer = exchange(http, client_id, browser.redirect_params()["code"], verifier)
    assert answer.status_code == 200, answer.text
    return account.id, answer.json()


def _user_token(http: TestClient, client_id: str, email: str, scope: str) -> str:
    verifier, challenge = pkce()
    browser = Browser(http)
    browser.open("/auth/authorize", authorize_params(client_id, scope, challenge))
    answer = exchange(http, client_id, login_and_approve(browser, email)["code"], verifier)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def _impersonate(http: TestClient, client_id: str, actor: str, patient: str, **extra: str) -> Any:
    form = {**impersonation_form(client_id, actor, patient), **extra}
    return http.post("/auth/token", data={name: value for name, value in form.items() if value != ""})


def _error(response: Any, code: str) -> str:
    assert response.status_code in (400, 401), response.text
    body = response.json()
    assert body["error"] == code, body
    assert "access_token" not in body
    return str(body["error_description"])


def _patient(client: TestClient, family: str) -> str:
    created = client.post(
        "/fhir/Patient", json={"resourceType": "Patient", "name": [{"family": family}]}, headers=FHIR_JSON
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def _observation(client: TestClient, patient: str, text: str) -> str:
    created = client.post(
        "/fhir/Observation",
        json={
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": text},
            "subject": {"reference": f"Patient/{patient}"},
        },
        headers=FHIR_JSON,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def test_an_admin_impersonates_a_patient_read_only_and_the_token_names_the_admin(
    guarded: TestClient, client: TestClient, store: Any
) -> None:
    client_id = public_client(store)
    _, me, patient_account_id = patient_account(client, store)
    other = _patient(client, f"Other{uuid.uuid4().hex[:8]}")
    text = f"pulse-{uuid.uuid4().hex[:8]}"
    mine, theirs = _observation(client, me, text), _observation(client, other, text)
    admin_id, admin_token = _admin_login(guarded, store, client_id)
    assert "patient" not in admin_token
    assert _claims(admin_token["access_token"])["amr"] == ["pwd", "otp"]  # signed in with TOTP
    # Without impersonation the admin sees no patient data at all.
    assert guarded.get(f"/fhir/Patient/{me}", headers=bearer(admin_token["access_token"])).status_code == 404

    before = int(time.time())
    answer = _impersonate(guarded, client_id, admin_token["access_token"], me)
    assert answer.status_code == 200, answer.text
    assert answer.headers["cache-control"] == "no-store"
    issued = answer.json()
    assert issued["issued_token_type"] == ACCESS_TOKEN_TYPE and issued["token_type"] == "Bearer"
    assert issued["scope"] == "patient/*.rs" and issued["patient"] == me
    assert 0 < issued["expires_in"] <= 300 and "refresh_token" not in issued and "id_token" not in issued
    claims = _claims(issued["access_token"])
    assert claims["act"] == {"sub": admin_id}
    assert claims["kind"] == "patient" and claims["sub"] == patient_account_id
    assert claims["patient"] == me and claims["fhirUser"] == f"Patient/{me}"
    assert claims["client_id"] == client_id and claims["scope"] == "patient/*.rs"
    assert before + 290 <= claims["exp"] <= int(time.time()) + 300

    headers = bearer(issued["access_token"])
    assert guarded.get(f"/fhir/Patient/{me}", headers=headers).status_code == 200
    assert guarded.get(f"/fhir/Observation/{mine}", headers=headers).status_code == 200
    assert guarded.get(f"/fhir/Patient/{other}", headers=headers).status_code == 404
    assert guarded.get(f"/fhir/Observation/{theirs}", headers=headers).status_code == 404
    found = guarded.get("/fhir/Observation", params={"code:text": text}, headers=headers)
    assert found.status_code == 200
    assert {entry["resource"]["id"] for entry in found.json().get("entry", [])} == {mine}
    writes = [
        guarded.post(
            "/fhir/Observation",
            json={
                "resourceType": "Observation",
                "status": "final",
                "code": {"text": text},
                "subject": {"reference": f"Patient/{me}"},
            },
            headers=headers,
        ),
        guarded.put(f"/fhir/Patient/{me}", json={"resourceType": "Patient", "id": me}, headers=headers),
        guarded.delete(f"/fhir/Observation/{mine}", headers=headers),
    ]
    assert [response.status_code for response in writes] == [403, 403, 403], [w.text for w in writes]
    assert client.get(f"/fhir/Patient/{me}").json()["meta"]["versionId"] == "1"  # nothing was changed

    introspected = guarded.post(
        "/auth/introspect",
        data={"token": issued["access_token"]},
        headers={"Authorization": f"Bearer {issued['access_token']}"},
    ).json()
    assert introspected["active"] is True and introspected["act"] == {"sub": admin_id}
    assert introspected["kind"] == "patient" and introspected["patient"] == me
    assert introspected["sub"] == patient_account_id and introspected["scope"] == "patient/*.rs"


def test_the_api_sees_the_impersonation_as_the_patient_with_the_admin_acting(
    guarded: TestClient, client: TestClient, store: Any
) -> None:
    client_id = public_client(store)
    dependent = _patient(client, f"Dependent{uuid.uuid4().hex[:8]}")  # no account of their own
    admin_id, admin_token = _admin_login(guarded, store, client_id)
    issued = _impersonate(guarded, client_id, admin_token["access_token"], dependent).json()
    assert _claims(issued["access_token"])["sub"] == f"Patient/{dependent}"
    scope = {
        "type": "http",
        "app": guarded.app,
        "method": "GET",
        "path": f"/fhir/Patient/{dependent}",
        "headers": [(b"authorization", f"Bearer {issued['access_token']}".encode())],
        "client": REMOTE,
    }
    context = access_context(Request(scope), BASE)
    assert context.acting_admin == admin_id
    assert context.kind == "patient" and context.patient == dependent
    assert context.principal == f"Patient/{dependent}" and context.scopes == frozenset({"patient/*.rs"})
    plain = access_context(
        Request({**scope, "headers": [(b"authorization", f"Bearer {admin_token['access_token']}".encode())]}), BASE
    )
    assert plain.acting_admin is None and plain.kind == "platform-admin"


def test_requested_scopes_are_granted_as_asked_within_read_only_and_never_widened(
    guarded: TestClient, client: TestClient, store: Any
) -> None:
    client_id = public_client(store)
    _, me, _ = patient_account(client, store)
    _, admin_token = _admin_login(guarded, store, client_id)
    actor = admin_token["access_token"]
    narrow = _impersonate(guarded, client_id, actor, me, scope="patient/Observation.rs")
    assert narrow.status_code == 200, narrow.text
    assert narrow.json()["scope"] == "patient/Observation.rs"
    assert _claims(narrow.json()["access_token"])["scope"] == "patient/Observation.rs"
    narrow_headers = bearer(narrow.json()["access_token"])
    assert guarded.get(f"/fhir/Patient/{me}", headers=narrow_headers).status_code == 403
    for wider in ("patient/*.cruds", "user/*.*", "patient/*.rs offline_access", "patient/Observation.write", "openid"):
        description = _error(_impersonate(guarded, client_id, actor, me, scope=wider), "invalid_scope")
        assert "read-only" in description, (wider, description)
    other_client = public_client(store, scopes="user/*.rs launch/patient")  # patient scopes not registered
    _, other_admin = _admin_login(guarded, store, other_client)
    assert "not allowed for this client" in _error(
        _impersonate(guarded, other_client, other_admin["access_token"], me), "invalid_scope"
    )


def test_only_a_platform_admins_live_token_from_the_same_client_may_act(
    guarded: TestClient, stale: TestClient, client: TestClient, store: Any
) -> None:
    client_id = public_client(store)
    patient_email, me, _ = patient_account(client, store)
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    member_email = unique_email("doc")
    admin.create_account(
        accounts(store), email=member_email, password=PASSWORD, kind="clinic-member", clinic=clinic, role="clinic-admin"
    )
    member = _user_token(guarded, client_id, member_email, "user/*.rs")
    patient = _user_token(guarded, client_id, patient_email, "launch/patient patient/*.rs")
    assert _claims(member)["amr"] == ["pwd"]  # no second factor enrolled
    for actor in (member, patient):
        description = _error(_impersonate(guarded, client_id, actor, me), "invalid_request")
        assert "platform admin" in description
    _, admin_token = _admin_login(guarded, store, client_id)
    impersonating = _impersonate(guarded, client_id, admin_token["access_token"], me).json()["access_token"]
    assert "platform admin" in _error(_impersonate(guarded, client_id, impersonating, me), "invalid_request")

    other_client = public_client(store)
    assert "another client" in _error(
        _impersonate(guarded, other_client, admin_token["access_token"], me), "invalid_request"
    )

    _, revoked = _admin_login(guarded, store, client_id)
    revoking = guarded.post("/auth/revoke", data={"token": revoked["access_token"], "client_id": client_id})
    assert revoking.status_code == 200
    assert "revoked" in _error(_impersonate(guarded, client_id, revoked["access_token"], me), "invalid_request")

    _, expired = _admin_login(stale, store, client_id)  # issued with a lifetime of zero seconds
    assert "expired" in _error(_impersonate(guarded, client_id, expired["access_token"], me), "invalid_request")
    assert "not a valid access token" in _error(_impersonate(guarded, client_id, "x.y.z", me), "invalid_request")


def test_malformed_or_incomplete_requests_are_refused(guarded: TestClient, client: TestClient, store: Any) -> None:
    client_id = public_client(store)
    _, me, _ = patient_account(client, store)
    _, admin_token = _admin_login(guarded, store, client_id)
    actor = admin_token["access_token"]
    for missing in ("subject_token", "subject_token_type", "actor_token", "actor_token_type"):
        description = _error(_impersonate(guarded, client_id, actor, me, **{missing: ""}), "invalid_request")
        assert missing in description
    wrong = [
        {"subject_token_type": ACCESS_TOKEN_TYPE},
        {"actor_token_type": "urn:ietf:params:oauth:token-type:jwt"},
        {"requested_token_type": "urn:ietf:params:oauth:token-type:refresh_token"},
        {"subject_token": me},  # a bare id, not a reference
        {"subject_token": f"Observation/{me}"},
        {"subject_token": f"Patient/{uuid.uuid4()}"},  # no such patient
    ]
    for extra in wrong:
        _error(_impersonate(guarded, client_id, actor, me, **extra), "invalid_request")
    deleted = _patient(client, f"Gone{uuid.uuid4().hex[:8]}")
    assert client.delete(f"/fhir/Patient/{deleted}").status_code in (200, 204)
    assert "no Patient" in _error(_impersonate(guarded, client_id, actor, deleted), "invalid_request")
    _error(_impersonate(guarded, client_id, actor, me, audience="https://elsewhere.example/fhir"), "invalid_target")
    assert _impersonate(guarded, client_id, actor, me, resource=BASE, audience=BASE).status_code == 200
    anonymous = _impersonate(guarded, "", actor, me)
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"


def test_backend_services_cannot_impersonate(guarded: TestClient, client: TestClient, store: Any) -> None:
    _, me, _ = patient_account(client, store)
    private, public = key_pair("RS384")
    backend = backend_client(store, {"keys": [public]})
    _, admin_token = _admin_login(guarded, store, public_client(store))
    answer = _impersonate(
        guarded,
        "",
        admin_token["access_token"],
        me,
        client_assertion_type=ASSERTION_TYPE,
        client_assertion=assertion(private, "RS384", backend),
    )
    _error(answer, "unauthorized_client")


def test_discovery_advertises_token_exchange(guarded: TestClient) -> None:
    config = guarded.get("/fhir/.well-known/smart-configuration").json()
    assert TOKEN_EXCHANGE in config["grant_types_supported"]
