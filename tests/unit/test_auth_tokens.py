"""Access tokens (auth/tokens.py): the contract's claims, and refusal of expired, tampered,
wrongly addressed, `alg: none`, HS256-confused and unknown-key tokens; client assertions with the
five-minute bound; PKCE (RFC 7636 appendix B) and password hashing."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import pytest

from fhir_server.auth import codes, passwords
from fhir_server.auth.tokens import (
    access_claims,
    generate_signing_key,
    public_of,
    sign,
    verify_access_token,
    verify_client_assertion,
)
from fhir_server.errors import OAuthClientError, TokenInvalid

ISS = "https://fhir.example/fhir"
KEY = generate_signing_key()
PUBLIC = [public_of(KEY)]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _token(**overrides) -> str:
    claims = access_claims(
        issuer=ISS,
        subject="acc-1",
        client_id="app",
        scope="patient/*.rs",
        kind="patient",
        lifetime=600,
        context={"patient": "p1", "fhirUser": "Patient/p1", "clinic": None},
    )
    claims.update(overrides)
    return sign(KEY, claims)


def test_contract_claims():
    claims = verify_access_token(_token(), PUBLIC, ISS, ISS)
    assert {"iss", "aud", "sub", "client_id", "scope", "iat", "exp", "jti", "kind"} <= set(claims)
    assert claims["patient"] == "p1" and "clinic" not in claims
    header = json.loads(base64.urlsafe_b64decode(_token().split(".")[0] + "=="))
    assert header["alg"] == "RS256" and header["kid"] == KEY.kid
    acting = verify_access_token(_token(act={"sub": "admin-1"}), PUBLIC, ISS, ISS)
    assert acting["act"] == {"sub": "admin-1"}  # RFC 8693 section 4.1: impersonation names the actor


@pytest.mark.parametrize(
    "overrides",
    [
        {"exp": int(time.time()) - 1},
        {"iss": "https://other"},
        {"aud": "https://other"},
        {"nbf": int(time.time()) + 600},
        {"act": "admin-1"},
        {"act": {"client_id": "app"}},
        {"act": {"sub": ""}},
    ],
)
def test_refused_claims(overrides):
    with pytest.raises(TokenInvalid) as caught:
        verify_access_token(_token(**overrides), PUBLIC, ISS, ISS)
    assert caught.value.error_code == "token-invalid" and caught.value.status == 401


def test_tampered_none_confused_and_unknown_key():
    header, payload, signature = _token().split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["scope"] = "patient/*.cruds"
    tampered = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    none = f"{_b64(json.dumps({'alg': 'none'}).encode())}.{payload}."
    hs_header = _b64(json.dumps({"alg": "HS256", "kid": KEY.kid}).encode())
    pem = PUBLIC[0].jwk["n"].encode()
    confused = (
        f"{hs_header}.{payload}.{_b64(hmac.new(pem, f'{hs_header}.{payload}'.encode(), hashlib.sha256).digest())}"
    )
    other = [public_of(generate_signing_key())]
    for bad, keys in ((tampered, PUBLIC), (none, PUBLIC), (confused, PUBLIC), (_token(), other), ("x", PUBLIC)):
        with pytest.raises(TokenInvalid):
            verify_access_token(bad, keys, ISS, ISS)


def test_client_assertion_lifetime_bound():
    from joserfc import jwt
    from joserfc.jwk import RSAKey

    key = RSAKey.generate_key(2048, parameters={"kid": "k"})
    jwks = {"keys": [key.as_dict(private=False)]}
    now = int(time.time())

    def signed(exp: int, alg: str = "RS384") -> str:
        claims = {"iss": "c", "sub": "c", "aud": "https://as/token", "exp": exp, "jti": "j"}
        return jwt.encode({"alg": alg, "kid": "k"}, claims, key, algorithms=[alg])

    assert verify_client_assertion(signed(now + 300), jwks, "c", "https://as/token")["jti"] == "j"
    for bad in (signed(now + 3600), signed(now - 5), signed(now + 60, "RS256")):
        with pytest.raises(OAuthClientError):
            verify_client_assertion(bad, jwks, "c", "https://as/token")
    with pytest.raises(OAuthClientError):
        verify_client_assertion(signed(now + 60), jwks, "other-client", "https://as/token")


def test_pkce_rfc_7636_appendix_b():
    verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
    assert codes.s256(verifier) == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
    assert codes.pkce_matches("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", verifier)
    assert not codes.pkce_matches("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM", verifier[:-1] + "x")
    assert not codes.pkce_matches(codes.s256("short"), "short")  # under 43 characters


def test_passwords():
    hashed = passwords.hash_password("s3cret-enough")
    assert hashed.startswith("$argon2id$")
    assert passwords.verify(hashed, "s3cret-enough") and not passwords.verify(hashed, "wrong")
    assert not passwords.verify("not a hash", "x")
