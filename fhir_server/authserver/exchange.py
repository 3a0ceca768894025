"""Impersonation: a platform admin's OAuth 2.0 Token Exchange (RFC 8693) for a short-lived,
read-only token of one patient, with an `act` claim naming the admin (DESIGN.md section 3:
"patient data only through impersonation").

The request (RFC 8693 section 2.1), at the token endpoint, with the client authenticated like
any token request (a confidential client, or a public client naming its `client_id`)::

    grant_type=urn:ietf:params:oauth:grant-type:token-exchange
    subject_token=Patient/<id>
    subject_token_type=urn:fhir-server:params:oauth:token-type:patient
    actor_token=<the admin's own access token>
    actor_token_type=urn:ietf:params:oauth:token-type:access_token
    scope=patient/*.rs                      (optional; the default)
    requested_token_type, resource, audience (optional; an access token for this FHIR base)

Why the subject is named by a token type of our own: RFC 8693 makes `subject_token` and
`subject_token_type` REQUIRED, and the subject is "the party on behalf of whom the request is
being made" - here the patient, who has no token to give (and must not need to: the point is that
the admin acts without them). Section 3 lets a server define further token type URIs, so
`urn:fhir-server:params:oauth:token-type:patient` says "this subject token is a reference to a
Patient of this server". The admin, who does authenticate, is the actor: their access token is
the `actor_token`, which is exactly the delegation shape of section 1.1 and yields the `act`
claim of section 4.1. (Sending the admin's token as `subject_token` with a `patient` parameter
would name the wrong party as the subject and need a parameter the RFC does not define.)

Who may act: the presenter of a valid, unrevoked, unexpired access token of this server whose
`kind` is `platform-admin`, whose account still is a platform admin, that was issued to the
client making this request, and whose `amr` shows the TOTP second factor (`otp`; every
interactive login records it, and platform admins cannot sign in without it). Anything else is
`invalid_request`: RFC 8693 section 2.2.2 says a subject or actor token that is "invalid for any
reason, or unacceptable based on policy" MUST answer that code (not `invalid_grant`); the
description says which rule failed. The actor is checked before the patient is looked up, so
nobody but an admin learns whether a Patient id exists. Backend services answer
`unauthorized_client`; a target other than this FHIR base `invalid_target` (section 2.2.2).

What is issued (section 2.2.1: `access_token`, `issued_token_type`, `token_type`, `expires_in`,
`scope`, plus SMART's `patient` and `need_patient_banner`): an access token of kind `patient`,
`sub` the patient's account id (or `Patient/<id>` for a patient without an account, such as a
dependent), `patient` and `fhirUser` the patient, `act: {"sub": <admin account id>}`, living
`FHIR_IMPERSONATION_TOKEN_SECONDS` (300) and never beyond the actor token's own expiry. Its
scopes are those requested (default `patient/*.rs`), each within `patient/*.rs` and allowed for
the client: impersonation is read-only, since an admin looks at a record to support its owner and
changes are the patient's (or their clinic's) to make; a wider request is `invalid_scope`, never
silently narrowed. No refresh token: a new exchange needs a live admin token. Every FHIR request
with the token is a patient request under the one policy, and api/bearer.py carries `act.sub`
into `AccessContext.acting_admin` for the audit trail. Revoking the admin's token does not revoke
tokens already exchanged; they expire within minutes (and can be revoked themselves, RFC 7009).
"""

from __future__ import annotations

import re
import time
from typing import Any

from fhir_server.auth import scopes as scope_syntax
from fhir_server.authserver.env import AuthEnv
from fhir_server.authserver.issue import Grant, access_token
from fhir_server.authserver.keys import check_access_token
from fhir_server.errors import FhirError, OAuthError
from fhir_server.store.accounts import Account, Client

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
PATIENT_TOKEN_TYPE = "urn:fhir-server:params:oauth:token-type:patient"
IMPERSONATION_SCOPES = ("patient/*.rs",)  # the most an impersonation token may carry
SECOND_FACTOR = "otp"  # RFC 8176: the TOTP step of the login
_PATIENT_REFERENCE = re.compile(r"^Patient/([A-Za-z0-9\-.]{1,64})$")  # R4 datatypes.html#id


def _refused(message: str) -> OAuthError:
    """RFC 8693 section 2.2.2: an invalid or unacceptable request, subject or actor token."""
    return OAuthError(message, "invalid_request")


def token_exchange(env: AuthEnv, client: Client, form: dict[str, str]) -> dict[str, Any]:
    if client.kind == "backend-service":
        raise OAuthError("Backend services cannot impersonate a patient", "unauthorized_client")
    for name in ("subject_token", "subject_token_type", "actor_token", "actor_token_type"):
        if not form.get(name):
            raise _refused(f"{name} is required (impersonation names the patient and the admin's token)")
    if form["subject_token_type"] != PATIENT_TOKEN_TYPE:
        raise _refused(f"subject_token_type must be {PATIENT_TOKEN_TYPE}")
    if form["actor_token_type"] != ACCESS_TOKEN_TYPE:
        raise _refused(f"actor_token_type must be {ACCESS_TOKEN_TYPE}")
    if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
        raise _refused(f"Only {ACCESS_TOKEN_TYPE} can be issued")
    for name in ("resource", "audience"):
        if form.get(name) and form[name].rstrip("/") != env.fhir_base.rstrip("/"):
            raise OAuthError(f"{name} must be this server's FHIR base URL {env.fhir_base}", "invalid_target")
    scopes = _scopes(client, form.get("scope"))
    admin, actor_expires = _actor(env, client, form["actor_token"])
    patient_id = _subject(env, form["subject_token"])
    patient_account = env.accounts.patient_account(patient_id)
    grant = Grant(
        subject=patient_account.id if patient_account else f"Patient/{patient_id}",
        kind="patient",
        client_id=client.client_id,
        scopes=scopes,
        patient=patient_id,
        fhir_user=f"Patient/{patient_id}",
        need_patient_banner=True,
        actor=admin.id,
    )
    lifetime = max(1, min(env.settings.impersonation_token_seconds, actor_expires - int(time.time())))
    return {
        "access_token": access_token(env, grant, lifetime),
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": " ".join(scopes),
        "patient": patient_id,
        "need_patient_banner": True,
    }


def _scopes(client: Client, requested_text: str | None) -> tuple[str, ...]:
    requested = scope_syntax.split(requested_text) or list(IMPERSONATION_SCOPES)
    wider = scope_syntax.refused(requested, IMPERSONATION_SCOPES)
    if wider:
        raise OAuthError(
            f"Impersonation grants read-only patient scopes within patient/*.rs, not: {' '.join(wider)}",
            "invalid_scope",
        )
    not_allowed = scope_syntax.refused(requested, client.scopes)
    if not_allowed:
        raise OAuthError(f"Scopes not allowed for this client: {' '.join(not_allowed)}", "invalid_scope")
    return tuple(requested)


def _actor(env: AuthEnv, client: Client, token: str) -> tuple[Account, int]:
    """The platform admin behind `token`, and when that token expires."""
    try:
        claims = check_access_token(env.grants, token, env.issuer, env.issuer)
    except FhirError as error:
        raise _refused(f"The actor_token is not a valid access token: {error.message}") from None
    if claims["kind"] != "platform-admin" or "act" in claims:
        raise _refused("Only a platform admin's own access token may act for a patient")
    if claims["client_id"] != client.client_id:
        raise _refused("The actor_token was issued to another client")
    amr = claims.get("amr")
    if not isinstance(amr, list) or SECOND_FACTOR not in amr:
        raise _refused("The platform admin must have signed in with a second factor")
    account = env.accounts.by_id(claims["sub"])
    if account is None or account.kind != "platform-admin":
        raise _refused("The actor_token's account is not a platform admin")
    return account, int(claims["exp"])


def _subject(env: AuthEnv, subject_token: str) -> str:
    """The id of the Patient that `subject_token` names, which must exist (and not be deleted)."""
    match = _PATIENT_REFERENCE.match(subject_token)
    if match is None:
        raise _refused("subject_token must be a Patient reference, Patient/<id>")
    patient_id = match.group(1)
    if patient_id not in env.accounts.patients([patient_id]):
        raise _refused(f"There is no Patient/{patient_id}")
    return patient_id
