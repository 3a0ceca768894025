"""Shared helpers of the OAuth suites: key pairs, client assertions, registrations, and a small
form-driving browser over the ASGI TestClient (pages parsed with lxml)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from lxml import html
from starlette.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.authserver import admin
from fhir_server.store.accounts import Accounts
from tests.conftest import FHIR_JSON

ORIGIN = "http://127.0.0.1"
BASE = f"{ORIGIN}/fhir"
TOKEN_URL = f"{ORIGIN}/auth/token"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REDIRECT = "https://app.example.org/callback"


TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"
PATIENT_TYPE = "urn:fhir-server:params:oauth:token-type:patient"


def impersonation_form(client_id: str, actor: str, patient: str) -> dict[str, str]:
    """RFC 8693 token exchange: a platform admin's access token (`actor`) for a token of one patient."""
    return {
        "grant_type": TOKEN_EXCHANGE,
        "client_id": client_id,
        "subject_token": f"Patient/{patient}",
        "subject_token_type": PATIENT_TYPE,
        "actor_token": actor,
        "actor_token_type": ACCESS_TOKEN_TYPE,
    }


def served_with_tokens(settings: Any, store: Any, remote: tuple[str, int], **changes: Any) -> Iterator[TestClient]:
    """The test database served as by default (every FHIR request needs a bearer token; no
    local-operator shortcut), to a client at `remote` (not loopback), with settings `changes`."""
    update = {"allow_unauthenticated_loopback": False, **changes}
    app = create_app(settings.model_copy(update=update), store=store)
    with TestClient(app, base_url="http://127.0.0.1", client=remote) as test_client:
        yield test_client


def bearer(token: str) -> dict[str, str]:
    return {**FHIR_JSON, "Authorization": f"Bearer {token}"}


def accounts(store: Any) -> Accounts:
    return Accounts(store.engine)


def key_pair(alg: str) -> tuple[RSAKey | ECKey, dict[str, Any]]:
    """A fresh private key and its public JWK (with kid and alg), made with `cryptography`."""
    kid = uuid.uuid4().hex
    if alg.startswith("RS"):
        private: RSAKey | ECKey = RSAKey.generate_key(2048, parameters={"kid": kid})
    else:
        private = ECKey.generate_key("P-384", parameters={"kid": kid})
    public = dict(private.as_dict(private=False))
    public.update(kid=kid, alg=alg)
    return private, public


def assertion(
    private: RSAKey | ECKey,
    alg: str,
    client_id: str,
    *,
    aud: str = TOKEN_URL,
    lifetime: int = 240,
    jti: str | None = None,
    kid: str | None = None,
) -> str:
    now = int(time.time())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + lifetime, "jti": jti or uuid.uuid4().hex}
    header = {"alg": alg, "kid": kid or private.kid, "typ": "JWT"}
    return jwt.encode(header, claims, private, algorithms=[alg])


def backend_client(store: Any, jwks: dict[str, Any], scopes: str = "system/*.rs", clinic: str = "clinic-1") -> str:
    client, _ = admin.create_client(
        accounts(store), name="EHR integration", kind="backend-service", scopes=scopes.split(), jwks=jwks, clinic=clinic
    )
    return client.client_id


def client_credentials(client: TestClient, client_id: str, signed: str, scope: str = "system/*.rs") -> Any:
    return client.post(
        "/auth/token",
        data={
            "grant_type": "client_credentials",
            "scope": scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        },
    )


def backend_token(client: TestClient, store: Any, scopes: str = "system/*.rs", clinic: str = "clinic-1") -> str:
    private, public = key_pair("RS384")
    client_id = backend_client(store, {"keys": [public]}, scopes, clinic)
    response = client_credentials(client, client_id, assertion(private, "RS384", client_id), scopes)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def unique_email(prefix: str = "user") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}@example.org"


@dataclass
class Browser:
    """Submits the server's HTML forms like a user would; cookies live in the TestClient."""

    client: TestClient
    page: Any = None
    response: Any = None
    history: list[Any] = field(default_factory=list)

    def open(self, url: str, params: dict[str, str] | None = None) -> Any:
        self.response = self.client.get(url, params=params, follow_redirects=False)
        return self._parse()

    def _parse(self) -> Any:
        self.history.append(self.response)
        ctype = self.response.headers.get("content-type", "")
        self.page = html.fromstring(self.response.text) if "text/html" in ctype else None
        return self.response

    def step(self) -> str | None:
        if self.page is None:
            return None
        found = self.page.xpath("//input[@name='step']/@value")
        return str(found[0]) if found else None

    def error(self) -> str | None:
        found = self.page.xpath("//*[@id='error']/text()") if self.page is not None else []
        return str(found[0]) if found else None

    def submit(
        self,
        values: dict[str, Any] | None = None,
        button: tuple[str, str] | None = None,
        form_id: str | None = None,
        untick: tuple[str, ...] = (),
    ) -> Any:
        xpath = f"//form[@id='{form_id}']" if form_id else "//form"
        form = self.page.xpath(xpath)[0]
        pairs: list[tuple[str, str]] = []
        for element in form.xpath(".//input"):
            name, kind = element.get("name"), element.get("type")
            if not name or kind == "submit":
                continue
            if kind in ("checkbox", "radio"):
                if element.get("checked") is not None and element.get("value") not in untick:
                    pairs.append((name, element.get("value")))
                continue
            pairs.append((name, element.get("value") or ""))
        for name, value in (values or {}).items():
            pairs = [(n, v) for n, v in pairs if n != name] + [(name, value)]
        if button:
            pairs.append(button)
        self.response = self.client.post(
            form.get("action"),
            content=urlencode(pairs),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
            follow_redirects=False,
        )
        return self._parse()

    def redirect_params(self) -> dict[str, str]:
        assert self.response.status_code == 303, self.response.text
        query = parse_qs(urlsplit(self.response.headers["location"]).query)
        return {name: values[0] for name, values in query.items()}


def authorize_params(client_id: str, scope: str, challenge: str | None, **extra: str) -> dict[str, str]:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "scope": scope,
        "state": secrets.token_urlsafe(8),
        "aud": BASE,
    }
    if challenge:
        params.update(code_challenge=challenge, code_challenge_method="S256")
    params.update(extra)
    return params


SCOPES = "openid fhirUser launch/patient offline_access patient/*.rs patient/Observation.rs user/*.rs"
PASSWORD = "correct horse battery"


def public_client(store, scopes: str = SCOPES) -> str:
    client, _ = admin.create_client(
        accounts(store), name="Patient app <b>", kind="public", scopes=scopes.split(), redirect_uris=[REDIRECT]
    )
    return client.client_id


def patient_account(client, store, **extra) -> tuple[str, str, str]:
    created = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Flow", "given": ["Pat"]}]},
        headers=FHIR_JSON,
    )
    patient_id = created.json()["id"]
    email = unique_email("patient")
    account, _ = admin.create_account(
        accounts(store), email=email, password=PASSWORD, kind="patient", fhir_user=f"Patient/{patient_id}", **extra
    )
    return email, patient_id, account.id


def login_and_approve(browser: Browser, email: str, untick: tuple[str, ...] = ()) -> dict[str, str]:
    assert browser.step() == "login", browser.response.text
    browser.submit({"email": email, "password": PASSWORD})
    assert browser.step() == "approve", browser.response.text
    browser.submit(button=("decision", "approve"), untick=untick)
    return browser.redirect_params()


def exchange(client, client_id: str, code: str, verifier: str | None):
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": client_id}
    if verifier is not None:
        form["code_verifier"] = verifier
    return client.post("/auth/token", data=form)
