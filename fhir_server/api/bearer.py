"""Who is calling: the bearer access token of every FHIR request (RFC 6750; SMART App Launch 2.x,
app-launch.html#access-fhir-api), turned into the access context the policy reads.

A missing token is 401 with a `WWW-Authenticate: Bearer` challenge; an invalid, expired, revoked
or foreign token is 401 with `error="invalid_token"` (errors.TokenInvalid). The claims are the
authorization server's (auth/tokens.py); nothing in the request body decides who the caller is.
The one exception is the local operator: an unauthenticated caller on a loopback address, let in
only when `FHIR_ALLOW_UNAUTHENTICATED_LOOPBACK` is set (tests and benchmarks of the API itself).
A token with an RFC 8693 `act` claim (a platform admin impersonating a patient, authserver/exchange.py)
is a request of the principal it names, with `acting_admin` set to the admin for the audit trail.
"""

from __future__ import annotations

from starlette.requests import Request

from fhir_server.access import AccessContext
from fhir_server.authserver.keys import check_access_token
from fhir_server.errors import TokenInvalid, Unauthorized
from fhir_server.store.grants import Grants

LOOPBACK = ("127.", "::1", "localhost")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="fhir"'}


def access_context(request: Request, fhir_base: str) -> AccessContext:
    host = request.client.host if request.client else ""
    header = request.headers.get("authorization")
    if header is None:
        if request.app.state.settings.allow_unauthenticated_loopback and host.startswith(LOOPBACK):
            return AccessContext(principal="local-operator", kind="local-operator", client_address=host)
        raise Unauthorized("Authentication is required", "authentication-required", headers=dict(_CHALLENGE))
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenInvalid("The Authorization header must carry a Bearer token", "token-invalid")
    claims = check_access_token(grants(request), token.strip(), issuer=fhir_base, audience=fhir_base)
    act = claims.get("act")  # verified by check_access_token: an object naming the actor's `sub`
    return AccessContext(
        principal=claims["sub"],
        kind=claims["kind"],
        clinic_id=claims.get("clinic"),
        scopes=frozenset(claims["scope"].split()),
        client_address=host,
        client_id=claims["client_id"],
        patient=claims.get("patient"),
        encounter=claims.get("encounter"),
        fhir_user=claims.get("fhirUser"),
        role=claims.get("role"),
        acting_admin=act["sub"] if isinstance(act, dict) else None,
    )


def grants(request: Request) -> Grants:
    """The authorization server's records (signing keys, revocations) of this app's database."""
    state = request.app.state
    if getattr(state, "grants", None) is None:
        state.grants = Grants(state.store.engine)
    return state.grants  # type: ignore[no-any-return]
