"""SMART backend services (backend-services.html): client_credentials with private_key_jwt signed
RS384 or ES384 with real key pairs, the resulting access token's contract, and every refusal:
replayed jti, expired or too long-lived assertion, `alg: none`, HS256 signed with the public key,
wrong audience, unknown key, scopes the client may not have, and discovery of all of it."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from fhir_server.auth.tokens import verify_access_token
from fhir_server.authserver.keys import key_ring
from fhir_server.store.grants import Grants
from tests.integration.oauth_helpers import (
    BASE,
    TOKEN_URL,
    assertion,
    backend_client,
    client_credentials,
    key_pair,
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(claims: dict, alg: str = "none") -> str:
    header = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    return f"{header}.{_b64(json.dumps(claims).encode())}."


def _claims(client_id: str, lifetime: int = 240) -> dict:
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": TOKEN_URL,
        "exp": int(time.time()) + lifetime,
        "jti": str(time.time_ns()),
    }


def test_discovery_documents_name_every_required_field(client):
    smart = client.get("/fhir/.well-known/smart-configuration")
    assert smart.status_code == 200
    config = smart.json()
    for name in (
        "issuer",
        "jwks_uri",
        "authorization_endpoint",
        "token_endpoint",
        "grant_types_supported",
        "token_endpoint_auth_methods_supported",
        "token_endpoint_auth_signing_alg_values_supported",
        "scopes_supported",
        "response_types_supported",
        "capabilities",
        "code_challenge_methods_supported",
        "introspection_endpoint",
        "revocation_endpoint",
    ):
        assert name in config, name
    assert config["issuer"] == BASE
    assert config["token_endpoint"] == TOKEN_URL
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert set(config["token_endpoint_auth_signing_alg_values_supported"]) == {"RS384", "ES384"}
    for capability in (
        "launch-ehr",
        "launch-standalone",
        "authorize-post",
        "client-public",
        "client-confidential-symmetric",
        "client-confidential-asymmetric",
        "sso-openid-connect",
        "context-ehr-patient",
        "context-standalone-patient",
        "permission-v1",
        "permission-v2",
        "permission-offline",
        "permission-patient",
        "permission-user",
    ):
        assert capability in config["capabilities"], capability
    openid = client.get("/fhir/.well-known/openid-configuration").json()
    assert openid["issuer"] == BASE and openid["id_token_signing_alg_values_supported"] == ["RS256"]
    keys = client.get("/auth/jwks").json()["keys"]
    assert keys and all(key["kty"] == "RSA" and "d" not in key for key in keys)


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_client_credentials_with_a_real_key_pair(client, store, alg):
    private, public = key_pair(alg)
    client_id = backend_client(store, {"keys": [public]}, "system/*.rs system/Observation.cruds", clinic="org-7")
    response = client_credentials(client, client_id, assertion(private, alg, client_id), "system/Patient.rs")
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "system/Patient.rs" and body["expires_in"] == 600
    assert "refresh_token" not in body
    keys = key_ring(Grants(store.engine)).public()
    claims = verify_access_token(body["access_token"], keys, BASE, BASE)
    assert claims["sub"] == client_id and claims["client_id"] == client_id
    assert claims["kind"] == "backend-service" and claims["clinic"] == "org-7"
    assert claims["exp"] - claims["iat"] == 600 and claims["jti"]


def test_replayed_jti_is_refused(client, store):
    private, public = key_pair("RS384")
    client_id = backend_client(store, {"keys": [public]})
    signed = assertion(private, "RS384", client_id)
    assert client_credentials(client, client_id, signed).status_code == 200
    again = client_credentials(client, client_id, signed)
    assert again.status_code == 401 and again.json()["error"] == "invalid_client"
    assert "jti" in again.json()["error_description"]


@pytest.mark.parametrize("lifetime", [-10, 301 + 60])
def test_expired_or_too_long_lived_assertion_is_refused(client, store, lifetime):
    private, public = key_pair("ES384")
    client_id = backend_client(store, {"keys": [public]})
    response = client_credentials(client, client_id, assertion(private, "ES384", client_id, lifetime=lifetime))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_alg_none_assertion_is_refused(client, store):
    _, public = key_pair("RS384")
    client_id = backend_client(store, {"keys": [public]})
    response = client_credentials(client, client_id, _unsigned(_claims(client_id)))
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_hs256_signed_with_the_public_key_is_refused(client, store):
    private, public = key_pair("RS384")
    client_id = backend_client(store, {"keys": [public]})
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": public["kid"]}).encode())
    body = _b64(json.dumps(_claims(client_id)).encode())
    secret = private.as_pem(private=False)
    signature = _b64(hmac.new(secret, f"{header}.{body}".encode(), hashlib.sha256).digest())
    response = client_credentials(client, client_id, f"{header}.{body}.{signature}")
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"


def test_wrong_audience_and_unknown_key_are_refused(client, store):
    private, public = key_pair("RS384")
    client_id = backend_client(store, {"keys": [public]})
    wrong_aud = assertion(private, "RS384", client_id, aud=f"{BASE}/token")
    assert client_credentials(client, client_id, wrong_aud).json()["error"] == "invalid_client"
    stranger, _ = key_pair("RS384")
    forged = assertion(stranger, "RS384", client_id, kid=public["kid"])
    assert client_credentials(client, client_id, forged).json()["error"] == "invalid_client"


def test_disallowed_scopes_are_refused(client, store):
    private, public = key_pair("RS384")
    client_id = backend_client(store, {"keys": [public]}, "system/Observation.rs")
    wider = client_credentials(client, client_id, assertion(private, "RS384", client_id), "system/Observation.cruds")
    assert wider.status_code == 400 and wider.json()["error"] == "invalid_scope"
    other = client_credentials(client, client_id, assertion(private, "RS384", client_id), "system/Patient.rs")
    assert other.json()["error"] == "invalid_scope"
    user = client_credentials(client, client_id, assertion(private, "RS384", client_id), "user/Observation.rs")
    assert user.json()["error"] == "invalid_scope"
    granular = "system/Observation.rs?category=vital-signs"
    ok = client_credentials(client, client_id, assertion(private, "RS384", client_id), granular)
    assert ok.status_code == 200 and ok.json()["scope"] == granular


def test_token_endpoint_request_errors(client):
    assert client.post("/auth/token", data={}).json()["error"] == "invalid_request"
    unsupported = client.post("/auth/token", data={"grant_type": "password"})
    assert unsupported.status_code == 400 and unsupported.json()["error"] == "unsupported_grant_type"
    unknown = client.post("/auth/token", data={"grant_type": "client_credentials", "client_id": "nobody"})
    assert unknown.status_code == 401 and unknown.json()["error"] == "invalid_client"
    as_json = client.post("/auth/token", json={"grant_type": "client_credentials"})
    assert as_json.status_code == 400 and as_json.json()["error"] == "invalid_request"
