"""Introspection (RFC 7662) and revocation (RFC 7009): active tokens describe themselves to
authenticated callers, tampered, revoked or unknown ones answer only `active: false`, and a
revoked refresh token cannot be used."""

from __future__ import annotations

import base64

from fhir_server.authserver import admin
from tests.integration.oauth_helpers import (
    REDIRECT,
    Browser,
    accounts,
    authorize_params,
    backend_token,
    exchange,
    login_and_approve,
    patient_account,
    pkce,
)


def _confidential(store) -> tuple[str, dict[str, str]]:
    made, secret = admin.create_client(
        accounts(store),
        name="Resource server",
        kind="confidential-symmetric",
        scopes=["patient/*.rs", "offline_access"],
        redirect_uris=[REDIRECT],
    )
    basic = base64.b64encode(f"{made.client_id}:{secret}".encode()).decode()
    return made.client_id, {"Authorization": f"Basic {basic}"}


def _tampered(token: str) -> str:
    header, payload, signature = token.split(".")
    claims = base64.urlsafe_b64decode(payload + "==").replace(b'"system/', b'"systxm/')
    return f"{header}.{base64.urlsafe_b64encode(claims).rstrip(b'=').decode()}.{signature}"


def test_introspect_access_tokens(client, store):
    _, auth = _confidential(store)
    token = backend_token(client, store, clinic="clinic-i")
    active = client.post("/auth/introspect", data={"token": token}, headers=auth)
    assert active.status_code == 200 and active.headers["cache-control"] == "no-store"
    body = active.json()
    assert body["active"] is True and body["scope"] == "system/*.rs" and body["kind"] == "backend-service"
    assert body["clinic"] == "clinic-i" and body["exp"] > 0 and body["client_id"] == body["sub"]
    assert client.post("/auth/introspect", data={"token": _tampered(token)}, headers=auth).json() == {"active": False}
    assert client.post("/auth/introspect", data={"token": "garbage"}, headers=auth).json() == {"active": False}
    by_bearer = client.post("/auth/introspect", data={"token": token}, headers={"Authorization": f"Bearer {token}"})
    assert by_bearer.json()["active"] is True


def test_introspection_needs_an_authenticated_caller(client, store):
    token = backend_token(client, store)
    anonymous = client.post("/auth/introspect", data={"token": token})
    assert anonymous.status_code == 401 and anonymous.json()["error"] == "invalid_client"
    bad_bearer = client.post("/auth/introspect", data={"token": token}, headers={"Authorization": "Bearer x.y.z"})
    assert bad_bearer.status_code == 401


def test_revoke_access_and_refresh_tokens(client, store):
    client_id, auth = _confidential(store)
    email, patient_id, _ = patient_account(client, store)
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs offline_access", None))
    code = login_and_approve(browser, email)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    tokens = client.post("/auth/token", data=form, headers=auth).json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    seen = client.post("/auth/introspect", data={"token": refresh, "token_type_hint": "refresh_token"}, headers=auth)
    assert seen.json()["active"] is True and seen.json()["patient"] == patient_id
    assert client.post("/auth/introspect", data={"token": access}, headers=auth).json()["patient"] == patient_id
    assert client.post("/auth/revoke", data={"token": access}, headers=auth).status_code == 200
    assert client.post("/auth/introspect", data={"token": access}, headers=auth).json() == {"active": False}
    assert client.post("/auth/revoke", data={"token": refresh}, headers=auth).status_code == 200
    assert client.post("/auth/introspect", data={"token": refresh}, headers=auth).json() == {"active": False}
    again = client.post("/auth/token", data={"grant_type": "refresh_token", "refresh_token": refresh}, headers=auth)
    assert again.json()["error"] == "invalid_grant"
    assert client.post("/auth/revoke", data={"token": "unknown"}, headers=auth).status_code == 200


def test_public_clients_may_revoke_their_own_refresh_tokens(client, store):
    from tests.integration.oauth_helpers import public_client

    client_id = public_client(store)
    email, _, _ = patient_account(client, store)
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs offline_access", challenge))
    tokens = exchange(client, client_id, login_and_approve(browser, email)["code"], verifier).json()
    revoked = client.post("/auth/revoke", data={"token": tokens["refresh_token"], "client_id": client_id})
    assert revoked.status_code == 200
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
    assert client.post("/auth/token", data=refresh).json()["error"] == "invalid_grant"
