"""Signed JWTs: access tokens, OpenID id_tokens and SMART backend-service client assertions.

RFC 7519 (JWT) and RFC 7515 (JWS) through joserfc, the JOSE library of authlib's author (authlib's
own `authlib.jose` is deprecated in favour of it). Every decode names its algorithms explicitly:
RS256 for what this server signs, RS384 and ES384 for client assertions (SMART App Launch 2.x,
backend-services.html#authenticating-to-the-token-endpoint). Keys are typed (RSAKey, ECKey), so
`alg: none` and HMAC-with-a-public-key confusion fail before any signature check.

Access token contract (checked on every FHIR request): RS256, header `kid`; claims `iss` and `aud`
= the FHIR base URL, `sub`, `client_id`, `scope`, `iat`, `exp`, `jti`, `kind`, and optionally
`clinic`, `role`, `patient`, `encounter`, `fhirUser`, `amr` (RFC 8176 methods of an interactive
login: `pwd`, plus `otp` after the TOTP second factor) and `act` (RFC 8693 section 4.1: the party
acting as `sub`, an object with at least its own `sub`; set by impersonation, authserver/exchange.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from fhir_server.errors import OAuthClientError, TokenInvalid

ACCESS_TOKEN_ALG = "RS256"
ASSERTION_ALGS = ("RS384", "ES384")
MAX_ASSERTION_SECONDS = 300
CLOCK_SKEW = 30
KINDS = ("patient", "clinic-member", "platform-admin", "backend-service")


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    private_pem: str
    created: int


@dataclass(frozen=True)
class SigningKeyPublic:
    kid: str
    alg: str
    jwk: dict[str, Any]


def generate_signing_key() -> SigningKey:
    kid = uuid.uuid4().hex
    key = RSAKey.generate_key(2048, parameters={"kid": kid})
    pem = key.as_pem(private=True)
    return SigningKey(kid, ACCESS_TOKEN_ALG, pem.decode("ascii") if isinstance(pem, bytes) else pem, int(time.time()))


def public_of(key: SigningKey) -> SigningKeyPublic:
    rsa = RSAKey.import_key(key.private_pem, parameters={"kid": key.kid})
    jwk = dict(rsa.as_dict(private=False))
    jwk.update({"kid": key.kid, "alg": key.alg, "use": "sig"})
    return SigningKeyPublic(key.kid, key.alg, jwk)


def jwks_document(keys: list[SigningKeyPublic]) -> dict[str, Any]:
    return {"keys": [key.jwk for key in keys]}


def sign(key: SigningKey, claims: dict[str, Any]) -> str:
    private = RSAKey.import_key(key.private_pem, parameters={"kid": key.kid})
    header = {"alg": key.alg, "kid": key.kid, "typ": "JWT"}
    return jwt.encode(header, claims, private, algorithms=[ACCESS_TOKEN_ALG])


def access_claims(
    *, issuer: str, subject: str, client_id: str, scope: str, kind: str, lifetime: int, context: dict[str, Any]
) -> dict[str, Any]:
    """The claims of an access token; `context` adds clinic, role, patient, encounter, fhirUser."""
    if kind not in KINDS:
        raise ValueError(f"unknown principal kind {kind}")
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "aud": issuer,
        "sub": subject,
        "client_id": client_id,
        "scope": scope,
        "iat": now,
        "exp": now + lifetime,
        "jti": uuid.uuid4().hex,
        "kind": kind,
    }
    claims.update({name: value for name, value in context.items() if value is not None})
    return claims


def id_token_claims(
    *, issuer: str, subject: str, client_id: str, fhir_user: str, lifetime: int, nonce: str | None
) -> dict[str, Any]:
    """OpenID Connect Core section 2 with SMART's `fhirUser` (scopes-and-launch-context, fhirUser)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": subject,
        "aud": client_id,
        "iat": now,
        "exp": now + lifetime,
        "fhirUser": fhir_user,
    }
    if nonce:
        claims["nonce"] = nonce
    return claims


def _invalid(message: str) -> TokenInvalid:
    return TokenInvalid(message, "token-invalid")


_KEY_SETS: dict[tuple[tuple[str, str, str], ...], KeySet] = {}


def _key_set(keys: list[SigningKeyPublic]) -> KeySet:
    """The imported keys (importing them took a third of a token check), kept by kid and material."""
    usable = [key for key in keys if key.alg == "RS256"]
    marker = tuple((key.kid, str(key.jwk.get("n")), str(key.jwk.get("e"))) for key in usable)
    found = _KEY_SETS.get(marker)
    if found is None:
        if len(_KEY_SETS) >= 64:
            _KEY_SETS.clear()
        found = _KEY_SETS[marker] = KeySet([RSAKey.import_key(key.jwk, parameters={"kid": key.kid}) for key in usable])
    return found


def unverified_kid(token: str) -> str | None:
    try:
        header = jws.extract_compact(token.encode("ascii")).headers()
    except (JoseError, ValueError, UnicodeError, IndexError):
        return None
    kid = header.get("kid")
    return kid if isinstance(kid, str) else None


def verify_access_token(
    token: str, keys: list[SigningKeyPublic], issuer: str, audience: str, now: int | None = None
) -> dict[str, Any]:
    """The claims of a valid access token; `TokenInvalid` (code token-invalid) for anything else."""
    if not isinstance(token, str) or token.count(".") != 2:
        raise _invalid("The access token is not a JWS")
    try:
        decoded = jwt.decode(token, _key_set(keys), algorithms=[ACCESS_TOKEN_ALG])
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise _invalid(f"The access token could not be verified ({type(exc).__name__})") from None
    if decoded.header.get("alg") != ACCESS_TOKEN_ALG:
        raise _invalid("The access token's algorithm is not allowed")
    claims = dict(decoded.claims)
    _check_times(claims, int(time.time()) if now is None else now)
    if claims.get("iss") != issuer:
        raise _invalid("The access token was issued by someone else")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise _invalid("The access token is meant for another audience")
    for name in ("sub", "client_id", "jti", "kind"):
        if not isinstance(claims.get(name), str):
            raise _invalid(f"The access token lacks '{name}'")
    if not isinstance(claims.get("scope"), str):
        raise _invalid("The access token lacks 'scope'")
    act = claims.get("act")
    if act is not None and not (isinstance(act, dict) and isinstance(act.get("sub"), str) and act["sub"]):
        raise _invalid("The access token's 'act' claim does not name the actor")
    return claims


def _check_times(claims: dict[str, Any], now: int) -> None:
    exp, nbf, iat = claims.get("exp"), claims.get("nbf"), claims.get("iat")
    if not isinstance(exp, int) or exp <= now:
        raise _invalid("The access token has expired")
    if isinstance(nbf, int) and nbf > now + CLOCK_SKEW:
        raise _invalid("The access token is not valid yet")
    if iat is not None and (not isinstance(iat, int) or iat > now + CLOCK_SKEW):
        raise _invalid("The access token was issued in the future")


def _assertion_failed(message: str) -> OAuthClientError:
    return OAuthClientError(message, "invalid_client")


def _client_keys(jwks: dict[str, Any]) -> KeySet:
    keys: list[RSAKey | ECKey] = []
    for jwk in jwks.get("keys", []) if isinstance(jwks, dict) else []:
        if jwk.get("kty") == "RSA":
            keys.append(RSAKey.import_key(jwk))
        elif jwk.get("kty") == "EC" and jwk.get("crv") == "P-384":
            keys.append(ECKey.import_key(jwk))
    return KeySet(keys)  # type: ignore[arg-type]


def verify_client_assertion(
    assertion: str, jwks: dict[str, Any], client_id: str, audience: str, now: int | None = None
) -> dict[str, Any]:
    """RFC 7523 section 3 as SMART backend services narrow it: iss = sub = client_id, aud = the
    token endpoint, exp at most five minutes ahead, a jti (its replay is the caller's check)."""
    now = int(time.time()) if now is None else now
    try:
        decoded = jwt.decode(assertion, _client_keys(jwks), algorithms=list(ASSERTION_ALGS))
    except (JoseError, ValueError, KeyError, TypeError) as exc:
        raise _assertion_failed(f"The client assertion could not be verified ({type(exc).__name__})") from None
    claims = dict(decoded.claims)
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise _assertion_failed("The client assertion's iss and sub must be the client_id")
    aud = claims.get("aud")
    if aud != audience and not (isinstance(aud, list) and audience in aud):
        raise _assertion_failed("The client assertion's aud must be the token endpoint URL")
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= now:
        raise _assertion_failed("The client assertion has expired")
    if exp > now + MAX_ASSERTION_SECONDS + CLOCK_SKEW:
        raise _assertion_failed("The client assertion's exp is more than five minutes ahead")
    nbf = claims.get("nbf")
    if isinstance(nbf, int) and nbf > now + CLOCK_SKEW:
        raise _assertion_failed("The client assertion is not valid yet")
    if not isinstance(claims.get("jti"), str) or not claims["jti"]:
        raise _assertion_failed("The client assertion has no jti")
    return claims
