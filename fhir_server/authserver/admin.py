"""Account and client administration (server-host command line and the demo set-up).

SMART App Launch 2.x client types (client-public, client-confidential-symmetric,
client-confidential-asymmetric, backend services) with exact redirect URIs (RFC 6749 section
3.1.2, RFC 9700 section 2.1) and per-client allowed scopes; accounts with Argon2 hashes, an
optional TOTP secret (required for platform admins) and clinic roles.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlsplit

from joserfc.jwk import KeySet

from fhir_server.auth import codes, passwords, totp
from fhir_server.errors import Invalid
from fhir_server.store.accounts import Account, Accounts, Client

ACCOUNT_KINDS = ("patient", "clinic-member", "platform-admin")
ROLES = ("clinic-admin", "practitioner", "staff")
CLIENT_KINDS = ("public", "confidential-symmetric", "confidential-asymmetric", "backend-service")
FHIR_USER_TYPES = ("Patient", "Practitioner", "RelatedPerson")
MIN_PASSWORD = 8


def _check_fhir_user(fhir_user: str | None) -> None:
    if fhir_user is None:
        return
    kind, _, ident = fhir_user.partition("/")
    if kind not in FHIR_USER_TYPES or not ident or "/" in ident:
        raise Invalid("fhirUser must look like Patient/ID, Practitioner/ID or RelatedPerson/ID", "account-invalid")


def create_account(
    accounts: Accounts,
    *,
    email: str,
    password: str,
    kind: str,
    fhir_user: str | None = None,
    clinic: str | None = None,
    role: str | None = None,
    with_totp: bool = False,
) -> tuple[Account, str | None]:
    """A new account and, when it has one, its TOTP secret (shown once)."""
    if kind not in ACCOUNT_KINDS:
        raise Invalid(f"kind must be one of {', '.join(ACCOUNT_KINDS)}", "account-invalid")
    if "@" not in email or len(email) > 320:
        raise Invalid("email is not an email address", "account-invalid")
    if len(password) < MIN_PASSWORD:
        raise Invalid(f"password must have at least {MIN_PASSWORD} characters", "account-invalid")
    _check_fhir_user(fhir_user)
    if kind == "clinic-member" and (not clinic or role not in ROLES):
        raise Invalid(f"a clinic member needs --clinic and --role ({', '.join(ROLES)})", "account-invalid")
    if kind == "patient" and fhir_user and not fhir_user.startswith(("Patient/", "RelatedPerson/")):
        raise Invalid("a patient account's fhirUser is a Patient or RelatedPerson", "account-invalid")
    secret = totp.new_secret() if with_totp or kind == "platform-admin" else None
    account = accounts.create_account(email, passwords.hash_password(password), kind, fhir_user, secret)
    if clinic and role:
        if role not in ROLES:
            raise Invalid(f"role must be one of {', '.join(ROLES)}", "account-invalid")
        accounts.add_membership(account.id, clinic, role)
    return account, secret


def _check_redirect(uri: str) -> None:
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment:
        raise Invalid(f"redirect URI {uri} must be an absolute http(s) URL without fragment", "client-invalid")


def _check_jwks(jwks: Any) -> dict[str, Any]:
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list) or not jwks["keys"]:
        raise Invalid("the JWK Set must be an object with a non-empty 'keys' list", "client-invalid")
    for jwk in jwks["keys"]:
        if not isinstance(jwk, dict) or "d" in jwk or jwk.get("kty") not in ("RSA", "EC"):
            raise Invalid("the JWK Set must hold public RSA or EC keys only", "client-invalid")
    try:
        KeySet.import_key_set(jwks)  # type: ignore[arg-type]
    except Exception as exc:  # joserfc raises several types for malformed keys
        raise Invalid(f"the JWK Set does not parse: {exc}", "client-invalid") from None
    return jwks


def create_client(
    accounts: Accounts,
    *,
    name: str,
    kind: str,
    scopes: list[str],
    redirect_uris: list[str] | None = None,
    jwks: Any = None,
    jwks_uri: str | None = None,
    clinic: str | None = None,
    client_id: str | None = None,
) -> tuple[Client, str | None]:
    """A registered client and its secret (confidential-symmetric only; shown once)."""
    if kind not in CLIENT_KINDS:
        raise Invalid(f"kind must be one of {', '.join(CLIENT_KINDS)}", "client-invalid")
    if not scopes:
        raise Invalid("a client needs at least one allowed scope", "client-invalid")
    redirect_uris = redirect_uris or []
    for uri in redirect_uris:
        _check_redirect(uri)
    if kind != "backend-service" and not redirect_uris:
        raise Invalid("this client needs at least one redirect URI", "client-invalid")
    asymmetric = kind in ("confidential-asymmetric", "backend-service")
    if asymmetric and (jwks is None) == (jwks_uri is None):
        raise Invalid("an asymmetric client needs exactly one of a JWK Set or a jwks_uri", "client-invalid")
    if kind == "backend-service" and not clinic:
        raise Invalid("a backend service belongs to one clinic (--clinic)", "client-invalid")
    secret = codes.new_token(32) if kind == "confidential-symmetric" else None
    client = Client(
        client_id=client_id or uuid.uuid4().hex,
        name=name,
        kind=kind,
        secret_hash=passwords.hash_password(secret) if secret else None,
        jwks=_check_jwks(jwks) if asymmetric and jwks is not None else None,
        jwks_uri=jwks_uri if asymmetric else None,
        redirect_uris=tuple(redirect_uris),
        scopes=tuple(dict.fromkeys(scopes)),
        clinic_id=clinic,
    )
    return accounts.create_client(client), secret
