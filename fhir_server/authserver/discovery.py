"""Discovery documents: SMART App Launch 2.x conformance.html#using-well-known
(`[base]/.well-known/smart-configuration`) and OpenID Connect Discovery 1.0 section 3."""

from __future__ import annotations

from typing import Any

from fhir_server.auth.tokens import ACCESS_TOKEN_ALG, ASSERTION_ALGS
from fhir_server.authserver.env import AuthEnv
from fhir_server.authserver.exchange import TOKEN_EXCHANGE

CAPABILITIES = (
    "launch-ehr",
    "launch-standalone",
    "authorize-post",
    "client-public",
    "client-confidential-symmetric",
    "client-confidential-asymmetric",
    "sso-openid-connect",
    "context-passthrough-banner",
    "context-ehr-patient",
    "context-ehr-encounter",
    "context-standalone-patient",
    "permission-offline",
    "permission-online",
    "permission-patient",
    "permission-user",
    "permission-v1",
    "permission-v2",
)
SCOPES = (
    "openid",
    "fhirUser",
    "launch",
    "launch/patient",
    "offline_access",
    "online_access",
    "patient/*.cruds",
    "user/*.cruds",
    "system/*.cruds",
    "patient/*.read",
    "patient/*.write",
    "user/*.read",
    "user/*.write",
    "system/*.read",
    "system/*.write",
)
GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials", TOKEN_EXCHANGE)
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")


def smart_configuration(env: AuthEnv) -> dict[str, Any]:
    return {
        "issuer": env.issuer,
        "jwks_uri": env.endpoint("jwks"),
        "authorization_endpoint": env.endpoint("authorize"),
        "token_endpoint": env.token_endpoint,
        "introspection_endpoint": env.endpoint("introspect"),
        "revocation_endpoint": env.endpoint("revoke"),
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "scopes_supported": list(SCOPES),
        "response_types_supported": ["code"],
        "capabilities": list(CAPABILITIES),
        "code_challenge_methods_supported": ["S256"],
    }


def openid_configuration(env: AuthEnv) -> dict[str, Any]:
    return {
        "issuer": env.issuer,
        "authorization_endpoint": env.endpoint("authorize"),
        "token_endpoint": env.token_endpoint,
        "jwks_uri": env.endpoint("jwks"),
        "introspection_endpoint": env.endpoint("introspect"),
        "revocation_endpoint": env.endpoint("revoke"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": [ACCESS_TOKEN_ALG],
        "scopes_supported": ["openid", "fhirUser", "offline_access", "online_access"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "grant_types_supported": list(GRANT_TYPES),
        "token_endpoint_auth_methods_supported": list(AUTH_METHODS),
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "code_challenge_methods_supported": ["S256"],
    }
