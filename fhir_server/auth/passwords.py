"""Password hashing with Argon2id (RFC 9106) through argon2-cffi.

Hashes carry their own parameters and salt; `verify` answers False for any mismatch or malformed
hash, and `dummy_verify` spends the same time for unknown accounts so that response times do not
tell which email addresses exist.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

_HASHER = PasswordHasher()
_DUMMY = _HASHER.hash("not a real password")


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def verify(hashed: str, password: str) -> bool:
    try:
        return _HASHER.verify(hashed, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    verify(_DUMMY, password)


def needs_rehash(hashed: str) -> bool:
    return _HASHER.check_needs_rehash(hashed)
