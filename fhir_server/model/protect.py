"""Application-level protection of sensitive values: AES-GCM envelopes and keyed search hashes.

Issue 5 point 9 and DESIGN.md section 1 ("sensitive fields such as phone numbers are encrypted at
application level"). Which values are protected is decided in model/sensitive.py; this module is
the cryptography only, free of SQL and HTTP.

- Envelope: AES-256-GCM (NIST SP 800-38D, `cryptography`'s AESGCM) with a fresh random 96-bit
  nonce per value, written as the compact, versioned string
  `enc:v1:<kid>:<base64url(nonce || ciphertext || tag)>` (RFC 4648 section 5, no padding). The
  associated data (authenticated, not stored) names the resource and the value's place in it
  (model/sensitive.py: `Patient/123#0:value`), so a ciphertext moved to another field or
  resource fails to open.
- Search hash: HMAC-SHA256 (RFC 2104) of the normalised value (`normalise`) under a separate key,
  written `hmac:<kid>:<base64url(digest)>`; index rows hold it instead of the value, and a search
  value is hashed the same way under every hash key (old keys too, until re-encryption).
- Keyrings: `kid:base64key` entries separated by commas, or a JSON list of them, or a JSON object
  {kid: base64key}; the first entry is the current key (new values use it), the others only read.
  Keys are 32 bytes (AES-256; HMAC-SHA256 keys of the hash length). A kid is 1-32 characters of
  `[A-Za-z0-9_-]`.

Rotation is adding a new first key: old envelopes stay readable by their kid; re-encryption
(store/reencrypt.py) moves every stored value and index row to the current keys, after which
the old key can be dropped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

MARK = "enc:v1:"
MARK_BYTES = MARK.encode()
HASH_MARK = "hmac:"
KEY_BYTES = 32
NONCE_BYTES = 12
KID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_B64 = re.compile(r"^[A-Za-z0-9_-]+$")
_SEPARATORS = re.compile(r"[\s.\-()/+]+")  # dropped from phone-like values before hashing


class KeyringInvalid(ValueError):
    """A keyring setting that cannot be read (the message never contains key material)."""


class Undecryptable(Exception):
    """An envelope that does not open: unknown key id, damaged text or failed authentication.
    The message names the key id only; never the value, the ciphertext or the key."""

    def __init__(self, reason: str, kid: str | None = None) -> None:
        super().__init__(f"{reason} (key id {kid})" if kid else reason)
        self.kid = kid


@dataclass(frozen=True)
class Keyring:
    """Keys by id; `current` is the id new values are written with."""

    keys: Mapping[str, bytes]
    current: str

    def __post_init__(self) -> None:
        if self.current not in self.keys:
            raise KeyringInvalid("the current key id is not in the keyring")

    @classmethod
    def of(cls, entries: Iterable[tuple[str, bytes]]) -> Keyring:
        """A keyring from (kid, secret) pairs, the first one current."""
        pairs = list(entries)
        if not pairs:
            raise KeyringInvalid("a keyring needs at least one key")
        keys: dict[str, bytes] = {}
        for kid, secret in pairs:
            _check_key(kid, secret)
            if kid in keys:
                raise KeyringInvalid(f"key id {kid} appears twice")
            keys[kid] = secret
        return cls(MappingProxyType(keys), pairs[0][0])

    def secret(self, kid: str) -> bytes:
        found = self.keys.get(kid)
        if found is None:
            raise Undecryptable("unknown key", kid)
        return found


def _check_key(kid: str, secret: bytes) -> None:
    if not KID.fullmatch(kid):
        raise KeyringInvalid("a key id is 1-32 characters of A-Z a-z 0-9 _ -")
    if len(secret) != KEY_BYTES:
        raise KeyringInvalid(f"key {kid} is {len(secret)} bytes; keys are {KEY_BYTES} bytes (base64 of 32 bytes)")


def parse_keyring(text: str) -> Keyring:
    """`kid:base64key,kid:base64key`, a JSON list of such strings, or a JSON object {kid: key}."""
    text = text.strip()
    pairs: list[tuple[str, str]]
    if text.startswith(("{", "[")):
        found = _json(text)
        pairs = [(str(k), str(v)) for k, v in found.items()] if isinstance(found, dict) else []
        if isinstance(found, list):
            pairs = [_split_entry(str(item)) for item in found]
    else:
        pairs = [_split_entry(part.strip()) for part in text.split(",") if part.strip()]
    return Keyring.of((kid, decode_key(kid, value)) for kid, value in pairs)


def _json(text: str) -> Any:
    try:
        found = json.loads(text)
    except ValueError:
        raise KeyringInvalid("the keyring is not valid JSON") from None
    if not isinstance(found, (dict, list)):
        raise KeyringInvalid("the keyring is neither a list nor an object")
    return found


def _split_entry(entry: str) -> tuple[str, str]:
    kid, colon, value = entry.partition(":")
    if not colon:
        raise KeyringInvalid("a keyring entry is kid:base64key")
    return kid.strip(), value.strip()


def decode_key(kid: str, value: str) -> bytes:
    """Standard or URL-safe base64, padding optional."""
    compact = value.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise KeyringInvalid(f"key {kid} is not base64") from None


def new_secret() -> bytes:
    return os.urandom(KEY_BYTES)


def format_key(kid: str, secret: bytes) -> str:
    """The `kid:base64key` form the settings read."""
    _check_key(kid, secret)
    return f"{kid}:{base64.b64encode(secret).decode()}"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@lru_cache(maxsize=64)
def _cipher(secret: bytes) -> AESGCM:
    return AESGCM(secret)


# --- envelopes ---------------------------------------------------------------------------------


def seal(keyring: Keyring, value: str, associated: str) -> str:
    """`value` encrypted under the current key, bound to `associated` (module docstring)."""
    kid = keyring.current
    nonce = os.urandom(NONCE_BYTES)
    sealed = _cipher(keyring.keys[kid]).encrypt(nonce, value.encode(), associated.encode())
    return f"{MARK}{kid}:{_b64(nonce + sealed)}"


def is_envelope(value: str) -> bool:
    return value.startswith(MARK)


def envelope_kid(envelope: str) -> str:
    """The key id an envelope names (no decryption); raises Undecryptable when malformed."""
    kid, colon, body = envelope[len(MARK) :].partition(":")
    if not envelope.startswith(MARK) or not colon or not KID.fullmatch(kid) or not _B64.fullmatch(body):
        raise Undecryptable("malformed envelope")
    return kid


def open_envelope(keyring: Keyring, envelope: str, associated: str) -> str:
    """The value sealed in `envelope`; raises Undecryptable (never with the value in it). On the
    read path: the body is not checked against the alphabet first, since any change to it fails
    authentication anyway."""
    kid, colon, body = envelope[len(MARK) :].partition(":")
    secret = keyring.keys.get(kid) if envelope.startswith(MARK) and colon else None
    if secret is None:
        envelope_kid(envelope)  # malformed, or else:
        raise Undecryptable("unknown key", kid)
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raise Undecryptable("malformed envelope", kid) from None
    if len(raw) < NONCE_BYTES + 16:
        raise Undecryptable("truncated envelope", kid)
    try:
        clear = _cipher(secret).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated.encode())
    except InvalidTag:
        raise Undecryptable("authentication failed", kid) from None
    return clear.decode()


# --- search hashes -----------------------------------------------------------------------------


def normalise(value: str) -> str:
    """What is hashed: Unicode NFKC, case folded, trimmed, a `tel:`/`mailto:` scheme dropped;
    in values without `@` (phone numbers, national ids) also spaces, dots, hyphens, slashes,
    parentheses and `+` (which a URL query turns into a space), so that `+1 (555) 867-5309` and
    `15558675309` agree. Emails keep their dots."""
    text = unicodedata.normalize("NFKC", value).strip().casefold()
    for scheme in ("tel:", "mailto:"):
        if text.startswith(scheme):
            text = text[len(scheme) :].strip()
    return text if "@" in text else _SEPARATORS.sub("", text)


def blind(keyring: Keyring, value: str, kid: str | None = None) -> str:
    """The keyed hash of `value` (normalised) under key `kid` (default: the current one)."""
    kid = kid or keyring.current
    digest = hmac.new(keyring.secret(kid), normalise(value).encode(), hashlib.sha256).digest()
    return f"{HASH_MARK}{kid}:{_b64(digest)}"


def blinds(keyring: Keyring, value: str) -> tuple[str, ...]:
    """The hash of `value` under every key of the ring, the current key's first (a search must
    find rows hashed before a rotation until they are re-encrypted)."""
    kids = [keyring.current, *(kid for kid in keyring.keys if kid != keyring.current)]
    return tuple(blind(keyring, value, kid) for kid in kids)


def fingerprint(value: str) -> str:
    """A short unkeyed digest for places that need a stable stand-in for a value (never stored)."""
    return hashlib.sha256(value.encode()).hexdigest()[:16]
