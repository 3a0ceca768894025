"""Refresh tokens (RFC 6749 section 6, SMART offline_access/online_access): each use rotates the
token, a rotated token coming back revokes the whole family, a refresh may narrow the scope but
never widen it, and only the client it was issued to may use it."""

from __future__ import annotations

from tests.integration.oauth_helpers import (
    Browser,
    authorize_params,
    exchange,
    login_and_approve,
    patient_account,
    pkce,
    public_client,
)

SCOPE = "patient/*.rs patient/Observation.rs offline_access"


def _tokens(client, store) -> tuple[str, dict]:
    client_id = public_client(store)
    email, _, _ = patient_account(client, store)
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, SCOPE, challenge))
    code = login_and_approve(browser, email)["code"]
    answer = exchange(client, client_id, code, verifier)
    assert answer.status_code == 200
    return client_id, answer.json()


def _refresh(client, client_id: str, token: str, scope: str | None = None):
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    if scope:
        form["scope"] = scope
    return client.post("/auth/token", data=form)


def test_rotation_and_reuse_detection(client, store):
    client_id, first = _tokens(client, store)
    second = _refresh(client, client_id, first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["refresh_token"] != first["refresh_token"] and body["scope"] == SCOPE
    assert body["patient"] == first["patient"]
    reused = _refresh(client, client_id, first["refresh_token"])
    assert reused.status_code == 400 and reused.json()["error"] == "invalid_grant"
    # the reuse revoked the family: the newest token is dead too
    assert _refresh(client, client_id, body["refresh_token"]).json()["error"] == "invalid_grant"


def test_scope_narrows_but_never_widens(client, store):
    client_id, first = _tokens(client, store)
    wider = _refresh(client, client_id, first["refresh_token"], "patient/*.rs patient/*.cruds")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    narrowed = _refresh(client, client_id, first["refresh_token"], "patient/Observation.rs")
    assert narrowed.status_code == 200, narrowed.text
    assert narrowed.json()["scope"] == "patient/Observation.rs"
    # the new refresh token keeps the original grant: a later refresh may ask for all of it again
    full = _refresh(client, client_id, narrowed.json()["refresh_token"], SCOPE)
    assert full.status_code == 200 and full.json()["scope"] == SCOPE


def test_another_client_cannot_use_the_refresh_token(client, store):
    client_id, first = _tokens(client, store)
    other = public_client(store)
    stolen = _refresh(client, other, first["refresh_token"])
    assert stolen.json()["error"] == "invalid_grant"
    assert _refresh(client, client_id, first["refresh_token"]).json()["error"] == "invalid_grant"


def test_no_refresh_token_without_offline_or_online_access(client, store):
    client_id = public_client(store)
    email, _, _ = patient_account(client, store)
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs offline_access", challenge))
    code = login_and_approve(browser, email, untick=("offline_access",))
    body = exchange(client, client_id, code["code"], verifier).json()
    assert "refresh_token" not in body and body["scope"] == "patient/*.rs"
