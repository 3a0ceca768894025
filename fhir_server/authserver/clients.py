"""Client authentication at the token, introspection and revocation endpoints.

RFC 6749 section 2.3.1 (HTTP Basic or `client_secret_post` for confidential-symmetric clients),
RFC 7523 section 2.2 with SMART App Launch 2.x client-confidential-asymmetric and
backend-services.html (`private_key_jwt`: an assertion signed RS384 or ES384 with a key of the
client's JWKS or `jwks_uri`, `aud` = the token endpoint, at most five minutes of life, `jti` used
once), and public clients that only name their `client_id` (RFC 6749 section 2.1).
"""

from __future__ import annotations

import base64
import json
import threading
import time
from typing import Any
from urllib.parse import unquote

import httpx
from joserfc import jws

from fhir_server.auth import passwords
from fhir_server.auth.tokens import verify_client_assertion
from fhir_server.authserver.env import AuthEnv
from fhir_server.errors import OAuthClientError, OAuthError
from fhir_server.store.accounts import Client

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_JWKS_TTL = 300
_jwks_cache: dict[str, tuple[float, dict[str, Any]]] = {}
_jwks_lock = threading.Lock()


def _failed(message: str) -> OAuthClientError:
    return OAuthClientError(message, "invalid_client", headers={"WWW-Authenticate": 'Basic realm="token"'})


def _basic(authorization: str | None) -> tuple[str, str] | None:
    if not authorization or not authorization.lower().startswith("basic "):
        return None
    try:
        decoded = base64.b64decode(authorization[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        raise _failed("The Basic credentials are malformed") from None
    client_id, sep, secret = decoded.partition(":")
    if not sep:
        raise _failed("The Basic credentials are malformed")
    return unquote(client_id), unquote(secret)  # RFC 6749 section 2.3.1: form-encoded first


def _known(env: AuthEnv, client_id: str | None) -> Client:
    client = env.accounts.client(client_id) if client_id else None
    if client is None:
        passwords.dummy_verify("x")
        raise _failed("Unknown client")
    return client


def authenticate(
    env: AuthEnv, form: dict[str, str], authorization: str | None, *, confidential: bool = False
) -> Client:
    """The client making this request, authenticated by whichever method it registered for."""
    basic = _basic(authorization)
    if basic is not None:
        return _by_secret(env, basic[0], basic[1], form)
    if form.get("client_assertion") or form.get("client_assertion_type"):
        return _by_assertion(env, form)
    if form.get("client_secret"):
        return _by_secret(env, form.get("client_id", ""), form["client_secret"], form)
    client = _known(env, form.get("client_id"))
    if client.kind != "public" or confidential:
        raise _failed("This client must authenticate")
    return client


def _by_secret(env: AuthEnv, client_id: str, secret: str, form: dict[str, str]) -> Client:
    if form.get("client_id") and form["client_id"] != client_id:
        raise _failed("client_id does not match the credentials")
    client = _known(env, client_id)
    if client.kind != "confidential-symmetric" or not client.secret_hash:
        raise _failed("This client does not authenticate with a secret")
    if not passwords.verify(client.secret_hash, secret):
        raise _failed("Wrong client secret")
    return client


def _assertion_issuer(assertion: str) -> str | None:
    try:
        payload = json.loads(jws.extract_compact(assertion.encode("ascii")).payload)
    except (ValueError, UnicodeError, IndexError, TypeError, Exception):  # any malformed JWS
        return None
    issuer = payload.get("iss") if isinstance(payload, dict) else None
    return issuer if isinstance(issuer, str) else None


def _by_assertion(env: AuthEnv, form: dict[str, str]) -> Client:
    if form.get("client_assertion_type") != ASSERTION_TYPE:
        raise OAuthError(f"client_assertion_type must be {ASSERTION_TYPE}", "invalid_request")
    assertion = form.get("client_assertion", "")
    client_id = form.get("client_id") or _assertion_issuer(assertion)
    client = _known(env, client_id)
    if client.kind not in ("confidential-asymmetric", "backend-service"):
        raise _failed("This client does not authenticate with private_key_jwt")
    claims = verify_client_assertion(assertion, _jwks(client), client.client_id, env.token_endpoint)
    if not env.grants.remember_jti(client.client_id, claims["jti"], int(claims["exp"])):
        raise _failed("This client assertion's jti has been used already")
    return client


def _jwks(client: Client) -> dict[str, Any]:
    if client.jwks is not None:
        return client.jwks
    if not client.jwks_uri:
        raise _failed("The client has no registered keys")
    with _jwks_lock:
        cached = _jwks_cache.get(client.jwks_uri)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    try:
        response = httpx.get(client.jwks_uri, timeout=5, follow_redirects=False)
        response.raise_for_status()
        document = response.json()
    except (httpx.HTTPError, ValueError):
        raise _failed("The client's jwks_uri could not be read") from None
    if not isinstance(document, dict):
        raise _failed("The client's jwks_uri does not hold a JWK Set")
    with _jwks_lock:
        _jwks_cache[client.jwks_uri] = (time.monotonic() + _JWKS_TTL, document)
    return document
