"""Tables of the built-in SMART authorization server (SMART App Launch 2.x; RFC 6749, 7636, 7009).

Accounts and their clinic memberships, registered clients, the server's signing keys, and the
short-lived state of OAuth flows: authorization requests, codes, refresh tokens, EHR launch
contexts, used client-assertion `jti`s and revoked access tokens. Codes and tokens are stored as
SHA-256 digests only. Flow state that only the authorization server reads is a JSON `payload`.
Times are naive UTC.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, DateTime, Index, Integer, String, Table, Text

from fhir_server.store.schema import RESOURCE_ID, metadata

ACCOUNT_ID = String(36)
CLIENT_ID = String(64)
DIGEST = String(64)

account = Table(
    "account",
    metadata,
    Column("id", ACCOUNT_ID, primary_key=True),
    Column("email", String(320), nullable=False, unique=True),
    Column("password_hash", Text, nullable=False),
    Column("kind", String(16), nullable=False),  # patient | clinic-member | platform-admin
    Column("fhir_user", String(140), nullable=True),  # e.g. Patient/123
    Column("totp_secret", String(64), nullable=True),
    Column("totp_last_step", Integer, nullable=True),
    Column("failed_logins", Integer, nullable=False),
    Column("locked_until", DateTime, nullable=True),
    Column("created", DateTime, nullable=False),
)

membership = Table(
    "membership",
    metadata,
    Column("account_id", ACCOUNT_ID, primary_key=True),
    Column("clinic_id", RESOURCE_ID, primary_key=True),  # an Organization id
    Column("role", String(16), primary_key=True),  # clinic-admin | practitioner | staff
)

proxy_link = Table(
    "proxy_link",
    metadata,
    Column("account_id", ACCOUNT_ID, primary_key=True),
    Column("patient_id", RESOURCE_ID, primary_key=True),  # the dependent
    Column("related_person_id", RESOURCE_ID, nullable=True),
)

oauth_client = Table(
    "oauth_client",
    metadata,
    Column("client_id", CLIENT_ID, primary_key=True),
    Column("name", Text, nullable=False),
    # public | confidential-symmetric | confidential-asymmetric | backend-service
    Column("kind", String(32), nullable=False),
    Column("secret_hash", Text, nullable=True),
    Column("jwks", Text, nullable=True),
    Column("jwks_uri", Text, nullable=True),
    Column("redirect_uris", Text, nullable=False),  # JSON list, matched exactly
    Column("scopes", Text, nullable=False),  # space-separated allowed scopes
    Column("clinic_id", RESOURCE_ID, nullable=True),
    Column("created", DateTime, nullable=False),
)

signing_key = Table(
    "signing_key",
    metadata,
    Column("kid", String(64), primary_key=True),
    Column("alg", String(16), nullable=False),
    Column("private_pem", Text, nullable=False),
    Column("created", DateTime, nullable=False),
)

authz_request = Table(
    "authz_request",
    metadata,
    Column("id", DIGEST, primary_key=True),
    Column("binding_hash", DIGEST, nullable=False),  # digest of the browser cookie
    Column("csrf", DIGEST, nullable=False),
    Column("client_id", CLIENT_ID, nullable=False),
    Column("payload", Text, nullable=False),
    Column("expires", DateTime, nullable=False),
    Index("ix_authz_request_expires", "expires"),
)

authz_code = Table(
    "authz_code",
    metadata,
    Column("code_hash", DIGEST, primary_key=True),
    Column("client_id", CLIENT_ID, nullable=False),
    Column("family", String(36), nullable=False),
    Column("used", Boolean, nullable=False),
    Column("payload", Text, nullable=False),
    Column("expires", DateTime, nullable=False),
    Index("ix_authz_code_expires", "expires"),
)

refresh_token = Table(
    "refresh_token",
    metadata,
    Column("token_hash", DIGEST, primary_key=True),
    Column("family", String(36), nullable=False),
    Column("client_id", CLIENT_ID, nullable=False),
    Column("state", String(16), nullable=False),  # active | rotated | revoked
    Column("payload", Text, nullable=False),
    Column("expires", DateTime, nullable=False),
    Index("ix_refresh_token_family", "family"),
)

launch_context = Table(
    "launch_context",
    metadata,
    Column("id", DIGEST, primary_key=True),
    Column("clinic_id", RESOURCE_ID, nullable=False),
    Column("patient_id", RESOURCE_ID, nullable=False),
    Column("encounter_id", RESOURCE_ID, nullable=True),
    Column("created_by", String(64), nullable=False),
    Column("expires", DateTime, nullable=False),
)

used_jti = Table(
    "used_jti",
    metadata,
    Column("client_id", CLIENT_ID, primary_key=True),
    Column("jti", String(255), primary_key=True),
    Column("expires", DateTime, nullable=False),
    Index("ix_used_jti_expires", "expires"),
)

revoked_token = Table(
    "revoked_token",
    metadata,
    Column("jti", String(64), primary_key=True),
    Column("expires", DateTime, nullable=False),
    Index("ix_revoked_token_expires", "expires"),
)
