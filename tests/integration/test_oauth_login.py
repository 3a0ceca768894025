"""Login protections of the authorization pages: the TOTP second factor (RFC 6238; required for
platform admins, replay of a used step refused) and the lockout after five failures."""

from __future__ import annotations

from fhir_server.auth import totp
from fhir_server.authserver import admin
from tests.integration.oauth_helpers import (
    PASSWORD,
    Browser,
    accounts,
    authorize_params,
    exchange,
    pkce,
    public_client,
    unique_email,
)

LOCKED = "locked"


def _start(client, client_id: str) -> Browser:
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "user/*.rs", pkce()[1]))
    return browser


def test_totp_second_factor_and_replay(client, store):
    client_id = public_client(store)
    email = unique_email("doc")
    _, secret = admin.create_account(
        accounts(store),
        email=email,
        password=PASSWORD,
        kind="clinic-member",
        clinic="c-1",
        role="practitioner",
        with_totp=True,
    )
    assert secret
    browser = _start(client, client_id)
    browser.submit({"email": email, "password": PASSWORD})
    assert browser.step() == "mfa"
    assert browser.page.xpath("//label[@for='code']")
    browser.submit({"code": "000000" if totp.code_at(secret, totp.current_step()) != "000000" else "111111"})
    assert browser.step() == "mfa" and browser.error()
    code = totp.code_at(secret, totp.current_step())
    browser.submit({"code": code})
    assert browser.step() == "approve"
    second = _start(client, client_id)
    second.submit({"email": email, "password": PASSWORD})
    second.submit({"code": code})
    assert second.step() == "mfa" and "already used" in second.error()


def test_platform_admins_always_get_a_second_factor(client, store):
    email = unique_email("admin")
    account, secret = admin.create_account(accounts(store), email=email, password=PASSWORD, kind="platform-admin")
    assert secret and account.kind == "platform-admin"
    browser = _start(client, public_client(store))
    browser.submit({"email": email, "password": PASSWORD})
    assert browser.step() == "mfa"


def test_five_failures_lock_the_account(client, store):
    client_id = public_client(store)
    email = unique_email("doc")
    admin.create_account(
        accounts(store), email=email, password=PASSWORD, kind="clinic-member", clinic="c-1", role="staff"
    )
    browser = _start(client, client_id)
    for attempt in range(5):
        browser.submit({"email": email, "password": f"wrong-{attempt}"})
        assert browser.response.status_code == 401 and browser.step() == "login"
    assert LOCKED in browser.error()
    browser.submit({"email": email, "password": PASSWORD})
    assert browser.step() == "login" and LOCKED in browser.error()
    assert accounts(store).by_email(email).locked()


def test_unknown_email_and_wrong_password_look_the_same(client, store):
    client_id = public_client(store)
    browser = _start(client, client_id)
    browser.submit({"email": unique_email("nobody"), "password": PASSWORD})
    unknown = browser.error()
    email = unique_email("pat")
    admin.create_account(accounts(store), email=email, password=PASSWORD, kind="patient")
    browser.submit({"email": email, "password": "not the password"})
    assert browser.error() == unknown


def test_emails_are_case_insensitive(client, store):
    client_id = public_client(store, "user/*.rs")
    email = unique_email("Doc")
    admin.create_account(
        accounts(store), email=email.upper(), password=PASSWORD, kind="clinic-member", clinic="c-2", role="practitioner"
    )
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "user/*.rs", challenge))
    browser.submit({"email": email.lower(), "password": PASSWORD})
    browser.submit(button=("decision", "approve"))
    assert exchange(client, client_id, browser.redirect_params()["code"], verifier).status_code == 200
