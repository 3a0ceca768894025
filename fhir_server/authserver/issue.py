"""Token responses: access token, refresh token, id_token and launch context.

RFC 6749 section 5.1 with SMART App Launch 2.x app-launch.html#response-5 (`patient`,
`encounter`, `fhirContext`, `need_patient_banner`, `id_token` for `openid fhirUser`) and
scopes-and-launch-context.html (`offline_access` and `online_access` earn a refresh token).
Refresh tokens rotate within a family (RFC 9700 section 4.14.2): each use issues a new one.
A grant made by impersonation (`actor`, authserver/exchange.py) never earns one.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fhir_server.auth import codes
from fhir_server.auth.tokens import access_claims, id_token_claims, sign
from fhir_server.authserver.env import AuthEnv
from fhir_server.authserver.keys import key_ring

ID_TOKEN_SECONDS = 3600


@dataclass(frozen=True)
class Grant:
    """What the resource owner (or a backend service) granted to a client."""

    subject: str
    kind: str
    client_id: str
    scopes: tuple[str, ...]
    clinic: str | None = None
    role: str | None = None
    patient: str | None = None
    encounter: str | None = None
    fhir_user: str | None = None
    nonce: str | None = None
    need_patient_banner: bool | None = None
    # How the user signed in (RFC 8176 `amr` values: "pwd", "otp"); empty for backend services.
    amr: tuple[str, ...] = ()
    # Impersonation: the platform admin's account id acting as `subject` (RFC 8693 `act`).
    actor: str | None = None
    family: str = field(default_factory=lambda: str(uuid.uuid4()))

    def to_payload(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["scopes"] = list(self.scopes)
        payload["amr"] = list(self.amr)
        return payload

    @staticmethod
    def from_payload(payload: dict[str, Any]) -> Grant:
        values = dict(payload)
        values["scopes"] = tuple(values.get("scopes", ()))
        values["amr"] = tuple(values.get("amr", ()))
        return Grant(**values)

    def narrowed(self, scopes: tuple[str, ...]) -> Grant:
        return replace(self, scopes=scopes)


def access_token(env: AuthEnv, grant: Grant, lifetime: int | None = None) -> str:
    """A signed access token for `grant`, living `lifetime` seconds (default: the setting)."""
    context = {
        "clinic": grant.clinic,
        "role": grant.role,
        "patient": grant.patient,
        "encounter": grant.encounter,
        "fhirUser": grant.fhir_user,
        "amr": list(grant.amr) or None,
        "act": {"sub": grant.actor} if grant.actor else None,
    }
    claims = access_claims(
        issuer=env.issuer,
        subject=grant.subject,
        client_id=grant.client_id,
        scope=" ".join(grant.scopes),
        kind=grant.kind,
        lifetime=env.settings.access_token_seconds if lifetime is None else lifetime,
        context=context,
    )
    return sign(key_ring(env.grants).current(), claims)


def token_response(env: AuthEnv, grant: Grant, refresh_grant: Grant | None = None) -> dict[str, Any]:
    """The JSON answer of the token endpoint; `refresh_grant` is what a new refresh token carries
    (the original grant on refresh, which may be wider than this access token's narrowed one)."""
    response: dict[str, Any] = {
        "access_token": access_token(env, grant),
        "token_type": "Bearer",
        "expires_in": env.settings.access_token_seconds,
        "scope": " ".join(grant.scopes),
    }
    response.update(_launch_context(grant))
    if "openid" in grant.scopes and "fhirUser" in grant.scopes and grant.fhir_user:
        response["id_token"] = _id_token(env, grant)
    keeper = refresh_grant or grant
    earns = grant.kind != "backend-service" and grant.actor is None
    if earns and {"offline_access", "online_access"} & set(keeper.scopes):
        response["refresh_token"] = new_refresh_token(env, keeper)
    return response


def _launch_context(grant: Grant) -> dict[str, Any]:
    context: dict[str, Any] = {}
    if grant.patient:
        context["patient"] = grant.patient
        context["need_patient_banner"] = bool(grant.need_patient_banner)
    if grant.encounter:
        context["encounter"] = grant.encounter
        context["fhirContext"] = [{"reference": f"Encounter/{grant.encounter}"}]
    return context


def _id_token(env: AuthEnv, grant: Grant) -> str:
    assert grant.fhir_user is not None
    claims = id_token_claims(
        issuer=env.issuer,
        subject=grant.subject,
        client_id=grant.client_id,
        fhir_user=f"{env.fhir_base}/{grant.fhir_user}",
        lifetime=ID_TOKEN_SECONDS,
        nonce=grant.nonce,
    )
    return sign(key_ring(env.grants).current(), claims)


def new_refresh_token(env: AuthEnv, grant: Grant) -> str:
    token = codes.new_token()
    offline = "offline_access" in grant.scopes
    lifetime = env.settings.refresh_token_seconds if offline else env.settings.online_refresh_seconds
    expires = int(time.time()) + lifetime
    env.grants.save_refresh(codes.digest(token), grant.family, grant.client_id, grant.to_payload(), expires)
    return token
