"""Token introspection (RFC 7662) and revocation (RFC 7009).

Introspection is for authenticated clients (confidential, private_key_jwt, or a caller presenting
a valid access token as RFC 7662 section 2.1 allows); an inactive, unknown, expired or revoked
token answers only `{"active": false}` (section 2.2); an impersonation token shows its `act`
claim (RFC 8693 section 4.1), naming the platform admin behind it. Revocation answers 200 whether
or not the token was known (RFC 7009 section 2.2); revoking a refresh token revokes its whole
family, and an access token stays revoked until it would have expired.
"""

from __future__ import annotations

from typing import Any

from fhir_server.auth import codes
from fhir_server.authserver.clients import authenticate
from fhir_server.authserver.env import AuthEnv
from fhir_server.authserver.issue import Grant
from fhir_server.authserver.keys import check_access_token, key_ring
from fhir_server.errors import FhirError, OAuthClientError, OAuthError
from fhir_server.store.accounts import Client

INACTIVE = {"active": False}
_CONTEXT_CLAIMS = ("patient", "encounter", "fhirUser", "kind", "clinic", "role", "act")


def _caller(env: AuthEnv, form: dict[str, str], authorization: str | None) -> Client | None:
    """The authenticated client, or None for a caller authorised by a bearer access token."""
    if authorization and authorization.lower().startswith("bearer "):
        try:
            check_access_token(env.grants, authorization[7:].strip(), env.issuer, env.issuer)
        except FhirError:
            raise OAuthClientError("The bearer token is not valid", "invalid_client") from None
        return None
    return authenticate(env, form, authorization, confidential=True)


def introspect(env: AuthEnv, form: dict[str, str], authorization: str | None) -> dict[str, Any]:
    _caller(env, form, authorization)
    token = form.get("token")
    if not token:
        raise OAuthError("token is required", "invalid_request")
    hint = form.get("token_type_hint")
    if hint != "refresh_token" and token.count(".") == 2:
        return _introspect_access(env, token)
    return _introspect_refresh(env, token)


def _introspect_access(env: AuthEnv, token: str) -> dict[str, Any]:
    try:
        claims = check_access_token(env.grants, token, env.issuer, env.issuer)
    except FhirError:
        return INACTIVE
    answer = {
        "active": True,
        "scope": claims["scope"],
        "client_id": claims["client_id"],
        "sub": claims["sub"],
        "exp": claims["exp"],
        "iat": claims.get("iat"),
        "iss": claims["iss"],
        "aud": claims["aud"],
        "jti": claims["jti"],
        "token_type": "Bearer",
    }
    answer.update({name: claims[name] for name in _CONTEXT_CLAIMS if name in claims})
    return answer


def _introspect_refresh(env: AuthEnv, token: str) -> dict[str, Any]:
    seen = env.grants.peek_refresh(codes.digest(token))
    if seen.status != "ok" or seen.expired or seen.payload is None:
        return INACTIVE
    grant = Grant.from_payload(seen.payload)
    answer: dict[str, Any] = {
        "active": True,
        "scope": " ".join(grant.scopes),
        "client_id": grant.client_id,
        "sub": grant.subject,
        "token_type": "refresh_token",
        "kind": grant.kind,
    }
    for name, value in (("patient", grant.patient), ("encounter", grant.encounter), ("fhirUser", grant.fhir_user)):
        if value:
            answer[name] = value
    return answer


def revoke(env: AuthEnv, form: dict[str, str], authorization: str | None) -> None:
    client = authenticate(env, form, authorization)
    token = form.get("token")
    if not token:
        raise OAuthError("token is required", "invalid_request")
    if form.get("token_type_hint") != "refresh_token" and token.count(".") == 2:
        try:
            claims = check_access_token(env.grants, token, env.issuer, env.issuer)
        except FhirError:
            return
        if claims["client_id"] == client.client_id:
            env.grants.revoke_access_token(claims["jti"], int(claims["exp"]))
            key_ring(env.grants).forget(claims["jti"])  # refused at once by this process
        return
    seen = env.grants.peek_refresh(codes.digest(token))
    if seen.status != "unknown" and seen.client_id == client.client_id:
        env.grants.revoke_family(seen.family)
