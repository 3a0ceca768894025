"""Random credentials and their digests: authorization codes, refresh tokens, client secrets,
CSRF tokens (RFC 6749 section 10.10: at least 128 bits of entropy), and PKCE (RFC 7636).

Only digests of codes and tokens are stored, so a read of the database yields nothing usable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

_VERIFIER = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")  # RFC 7636 section 4.1


def new_token(nbytes: int = 32) -> str:
    return secrets.token_urlsafe(nbytes)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def s256(verifier: str) -> str:
    """RFC 7636 section 4.2: BASE64URL(SHA256(ASCII(code_verifier))) without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode("ascii")


def pkce_matches(challenge: str, verifier: str) -> bool:
    """RFC 7636 section 4.6, method S256 only."""
    return bool(_VERIFIER.match(verifier)) and same(s256(verifier), challenge)


def valid_challenge(challenge: str) -> bool:
    return bool(re.match(r"^[A-Za-z0-9\-_]{43}$", challenge))
