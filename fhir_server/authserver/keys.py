"""The server's signing keys, shared by every worker process through the database.

The first process that needs a key generates one (RS256, RFC 7518 section 3.3) and stores it;
the newest key signs, and every stored key verifies and is published in the JWKS (RFC 7517
section 5), so keys can be rotated by adding one. Public keys are cached per process and reloaded
when a token names a `kid` the cache does not know.

Revocation (RFC 7009) is checked against the database, and a "not revoked" answer is trusted for
`UNREVOKED_SECONDS`: a token revoked through this process stops at once, one revoked through
another worker within that time (instead of a database round trip on every request).
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fhir_server.auth.tokens import (
    SigningKey,
    SigningKeyPublic,
    generate_signing_key,
    public_of,
    unverified_kid,
    verify_access_token,
)
from fhir_server.errors import TokenInvalid
from fhir_server.store.grants import Grants

UNREVOKED_SECONDS = 5.0
_UNREVOKED_LIMIT = 100_000  # jtis remembered at most; past it the memory starts afresh


class KeyRing:
    def __init__(self, grants: Grants) -> None:
        self._grants = grants
        self._lock = threading.Lock()
        self._keys: list[SigningKey] = []
        self._public: list[SigningKeyPublic] = []
        self._unrevoked: dict[str, float] = {}  # jti -> until when "not revoked" is trusted

    def _reload(self) -> None:
        keys = self._grants.signing_keys()
        self._keys, self._public = keys, [public_of(key) for key in keys]

    def current(self) -> SigningKey:
        with self._lock:
            if not self._keys:
                self._reload()
            if not self._keys:
                self._grants.add_signing_key(generate_signing_key())
                self._reload()
            return self._keys[-1]

    def public(self) -> list[SigningKeyPublic]:
        with self._lock:
            if not self._public:
                self._reload()
            return list(self._public)

    def refresh(self) -> None:
        with self._lock:
            self._reload()

    def verify(self, token: str, issuer: str, audience: str) -> dict[str, Any]:
        """`verify_access_token` with the cached keys, reloading them once for an unknown kid."""
        keys = self.public()
        kid = unverified_kid(token)
        if kid is not None and kid not in {key.kid for key in keys}:
            self.refresh()
            keys = self.public()
        return verify_access_token(token, keys, issuer, audience)


    def revoked(self, jti: str) -> bool:
        """Whether an access token was revoked (within UNREVOKED_SECONDS for another worker's revocation)."""
        now = time.monotonic()
        if self._unrevoked.get(jti, 0.0) > now:
            return False
        if self._grants.access_token_revoked(jti):
            return True
        if len(self._unrevoked) >= _UNREVOKED_LIMIT:
            self._unrevoked.clear()
        self._unrevoked[jti] = now + UNREVOKED_SECONDS
        return False

    def forget(self, jti: str) -> None:
        """A token revoked through this process: checked against the database again from now."""
        self._unrevoked.pop(jti, None)


_RINGS: dict[int, KeyRing] = {}
_RINGS_LOCK = threading.Lock()


def key_ring(grants: Grants) -> KeyRing:
    """The process-wide key ring of this database."""
    with _RINGS_LOCK:
        ring = _RINGS.get(id(grants.engine))
        if ring is None or ring._grants.engine is not grants.engine:
            ring = _RINGS[id(grants.engine)] = KeyRing(grants)
        return ring


def check_access_token(grants: Grants, token: str, issuer: str, audience: str) -> dict[str, Any]:
    """A valid, unrevoked access token's claims (RFC 7009 revocation honoured), else TokenInvalid."""
    ring = key_ring(grants)
    claims = ring.verify(token, issuer, audience)
    if ring.revoked(claims["jti"]):
        raise TokenInvalid("The access token has been revoked", "token-invalid")
    return claims
