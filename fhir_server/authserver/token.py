"""The token endpoint (RFC 6749 section 3.2): authorization_code with PKCE (RFC 7636 section 4.6),
refresh_token (RFC 6749 section 6; rotation, reuse detection, never a wider scope),
client_credentials for SMART backend services (backend-services.html, private_key_jwt only) and
RFC 8693 token exchange for a platform admin's impersonation of a patient (authserver/exchange.py).

Errors are `OAuthError`s whose `error_code` is the RFC 6749 section 5.2 `error`.
"""

from __future__ import annotations

from typing import Any

from fhir_server.auth import codes
from fhir_server.auth import scopes as scope_syntax
from fhir_server.authserver.clients import authenticate
from fhir_server.authserver.env import AuthEnv
from fhir_server.authserver.exchange import TOKEN_EXCHANGE, token_exchange
from fhir_server.authserver.issue import Grant, token_response
from fhir_server.errors import OAuthError
from fhir_server.store.accounts import Client

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE)


def token(env: AuthEnv, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
    grant_type = form.get("grant_type")
    if not grant_type:
        raise OAuthError("grant_type is required", "invalid_request")
    if grant_type not in GRANT_TYPES:
        raise OAuthError(f"grant_type {grant_type} is not supported", "unsupported_grant_type")
    client = authenticate(env, form, authorization)
    if grant_type == "authorization_code":
        return _authorization_code(env, client, form)
    if grant_type == "refresh_token":
        return _refresh(env, client, form)
    if grant_type == TOKEN_EXCHANGE:
        return token_exchange(env, client, form)
    return _client_credentials(env, client, form)


def _invalid_grant(message: str) -> OAuthError:
    return OAuthError(message, "invalid_grant")


def _authorization_code(env: AuthEnv, client: Client, form: dict[str, str]) -> dict[str, Any]:
    if client.kind == "backend-service":
        raise OAuthError("Backend services use client_credentials", "unauthorized_client")
    code = form.get("code")
    if not code:
        raise OAuthError("code is required", "invalid_request")
    spent = env.grants.spend_code(codes.digest(code))
    if spent.status == "unknown" or spent.payload is None:
        raise _invalid_grant("The authorization code is not valid")
    if spent.status == "reused":
        env.grants.revoke_family(spent.family)  # RFC 6749 section 4.1.2: revoke what it earned
        raise _invalid_grant("The authorization code has been used already")
    if spent.expired:
        raise _invalid_grant("The authorization code has expired")
    if spent.client_id != client.client_id:
        raise _invalid_grant("The authorization code was issued to another client")
    payload = spent.payload
    if form.get("redirect_uri") != payload["redirect_uri"]:
        raise _invalid_grant("redirect_uri does not match the authorization request")
    challenge = payload.get("code_challenge")
    if challenge:
        verifier = form.get("code_verifier") or ""
        if not codes.pkce_matches(challenge, verifier):
            raise _invalid_grant("The PKCE code_verifier does not match the code_challenge")
    elif form.get("code_verifier"):
        raise _invalid_grant("No code_challenge was sent with the authorization request")
    return token_response(env, Grant.from_payload(payload["grant"]))


def _refresh(env: AuthEnv, client: Client, form: dict[str, str]) -> dict[str, Any]:
    presented = form.get("refresh_token")
    if not presented:
        raise OAuthError("refresh_token is required", "invalid_request")
    token_hash = codes.digest(presented)
    seen = env.grants.peek_refresh(token_hash)
    if seen.status == "ok" and seen.payload is not None and seen.client_id == client.client_id:
        requested = scope_syntax.split(form.get("scope"))  # checked before the token is spent
        original = Grant.from_payload(seen.payload)
        wider = [scope for scope in requested if scope not in original.scopes]
        if wider:
            raise OAuthError(f"Scopes not originally granted: {' '.join(wider)}", "invalid_scope")
    spent = env.grants.spend_refresh(token_hash)
    if spent.status == "unknown" or spent.payload is None:
        raise _invalid_grant("The refresh token is not valid")
    if spent.status == "reused":
        raise _invalid_grant("The refresh token has been used already; its whole family is revoked")
    if spent.client_id != client.client_id:
        env.grants.revoke_family(spent.family)
        raise _invalid_grant("The refresh token was issued to another client")
    if spent.expired:
        raise _invalid_grant("The refresh token has expired")
    original = Grant.from_payload(spent.payload)
    if not _still_authorised(env, original):
        env.grants.revoke_family(spent.family)
        raise _invalid_grant("The user's authority behind this refresh token has ended")
    requested = scope_syntax.split(form.get("scope"))
    if not requested:
        return token_response(env, original)
    return token_response(env, original.narrowed(tuple(requested)), refresh_grant=original)


def _still_authorised(env: AuthEnv, grant: Grant) -> bool:
    """Whether the person behind a refresh token may still act as it says: the account exists,
    a proxy still acts for the dependent chosen at launch (`proxy unlink` ends it), a clinic
    member still holds that role in that clinic. Checked at every refresh, so that a withdrawn
    authority outlives it by one access token's lifetime at most."""
    if grant.kind not in ("patient", "clinic-member") or grant.actor is not None:
        return True  # backend services authenticate afresh; impersonation has no refresh token
    account = env.accounts.by_id(grant.subject)
    if account is None:
        return False
    if grant.kind == "clinic-member":
        return any(m.clinic_id == grant.clinic and m.role == grant.role for m in env.accounts.memberships(account.id))
    own = (account.fhir_user or "").removeprefix("Patient/")
    return grant.patient in (None, own) or grant.patient in env.accounts.dependents(account.id)


def _client_credentials(env: AuthEnv, client: Client, form: dict[str, str]) -> dict[str, Any]:
    if client.kind != "backend-service":
        raise OAuthError("Only backend services may use client_credentials", "unauthorized_client")
    requested = scope_syntax.split(form.get("scope"))
    if not requested:
        raise OAuthError("scope is required", "invalid_scope")
    not_system = [scope for scope in requested if scope_syntax.context_of(scope) != "system"]
    if not_system:
        raise OAuthError(f"Backend services may only ask for system scopes: {' '.join(not_system)}", "invalid_scope")
    refused = scope_syntax.refused(requested, client.scopes)
    if refused:
        raise OAuthError(f"Scopes not allowed for this client: {' '.join(refused)}", "invalid_scope")
    grant = Grant(
        subject=client.client_id,
        kind="backend-service",
        client_id=client.client_id,
        scopes=tuple(requested),
        clinic=client.clinic_id,
    )
    return token_response(env, grant)
