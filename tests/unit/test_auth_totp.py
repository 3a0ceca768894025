"""RFC 6238 TOTP: the RFC's SHA-1 test vectors (appendix B, last six digits), the one-step window
and replay refusal."""

from __future__ import annotations

import base64

import pytest

from fhir_server.auth import totp

SECRET = base64.b32encode(b"12345678901234567890").decode().rstrip("=")


@pytest.mark.parametrize(
    ("moment", "expected"),
    [(59, "287082"), (1111111109, "081804"), (1111111111, "050471"), (1234567890, "005924"), (2000000000, "279037")],
)
def test_rfc_6238_vectors(moment, expected):
    assert totp.code_at(SECRET, moment // 30) == expected


def test_window_and_replay():
    now = 1234567890.0
    step = totp.current_step(now)
    assert totp.verify(SECRET, totp.code_at(SECRET, step), now=now) == step
    assert totp.verify(SECRET, totp.code_at(SECRET, step - 1), now=now) == step - 1
    assert totp.verify(SECRET, totp.code_at(SECRET, step + 1), now=now) == step + 1
    assert totp.verify(SECRET, totp.code_at(SECRET, step - 2), now=now) is None
    assert totp.verify(SECRET, totp.code_at(SECRET, step), last_step=step, now=now) is None
    assert totp.verify(SECRET, "12345", now=now) is None and totp.verify(SECRET, "abcdef", now=now) is None


def test_provisioning_uri_and_secret():
    secret = totp.new_secret()
    assert len(base64.b32decode(secret + "=" * (-len(secret) % 8))) == 20
    uri = totp.provisioning_uri(secret, "a@b.example")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
