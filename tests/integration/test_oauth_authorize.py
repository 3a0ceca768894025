"""The authorization code flow driven through the HTML pages (SMART App Launch 2.x standalone
launch; RFC 6749 section 4.1, RFC 7636): login, approval with scope narrowing, the code and its
PKCE-checked exchange, the id_token, and the refusals around it."""

from __future__ import annotations

import base64
import uuid

from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from fhir_server.admin.resources import create_person
from fhir_server.auth.tokens import verify_access_token
from fhir_server.authserver import admin
from fhir_server.authserver.keys import key_ring
from fhir_server.store.grants import Grants
from tests.conftest import FHIR_JSON
from tests.integration.oauth_helpers import (
    BASE,
    PASSWORD,
    REDIRECT,
    SCOPES,
    Browser,
    accounts,
    authorize_params,
    exchange,
    login_and_approve,
    patient_account,
    pkce,
    public_client,
    unique_email,
)


def test_standalone_patient_launch_end_to_end(client, store):
    client_id = public_client(store)
    email, patient_id, account_id = patient_account(client, store)
    verifier, challenge = pkce()
    browser = Browser(client)
    params = authorize_params(client_id, SCOPES, challenge, nonce="n-1")
    response = browser.open("/auth/authorize", params)
    assert response.status_code == 200
    assert response.headers["x-frame-options"] == "DENY"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "httponly" in response.headers["set-cookie"].lower()
    assert "samesite=lax" in response.headers["set-cookie"].lower()
    assert "Patient app &lt;b&gt;" in response.text  # escaped
    assert browser.page.xpath("//label[@for='email']") and browser.page.xpath("//label[@for='password']")
    redirect = login_and_approve(browser, email, untick=("patient/Observation.rs",))
    assert redirect["state"] == params["state"]
    token = exchange(client, client_id, redirect["code"], verifier)
    assert token.status_code == 200, token.text
    assert token.headers["cache-control"] == "no-store"
    body = token.json()
    assert body["patient"] == patient_id and body["need_patient_banner"] is True
    assert body["scope"].split() == ["openid", "fhirUser", "launch/patient", "offline_access", "patient/*.rs"]
    assert body["refresh_token"]
    keys = key_ring(Grants(store.engine)).public()
    claims = verify_access_token(body["access_token"], keys, BASE, BASE)
    assert claims["sub"] == account_id and claims["kind"] == "patient" and claims["patient"] == patient_id
    assert claims["fhirUser"] == f"Patient/{patient_id}" and claims["client_id"] == client_id
    key_set = KeySet([RSAKey.import_key(key.jwk) for key in keys])
    id_token = jwt.decode(body["id_token"], key_set, algorithms=["RS256"]).claims
    assert id_token["aud"] == client_id and id_token["fhirUser"] == f"{BASE}/Patient/{patient_id}"
    assert id_token["nonce"] == "n-1" and id_token["iss"] == BASE


def test_user_scopes_are_not_offered_to_patients(client, store):
    client_id = public_client(store)
    email, _, _ = patient_account(client, store)
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "user/*.rs patient/*.rs", pkce()[1]))
    browser.submit({"email": email, "password": PASSWORD})
    offered = browser.page.xpath("//input[@name='scope']/@value")
    assert offered == ["patient/*.rs"]


def test_wrong_verifier_then_reused_code(client, store):
    client_id = public_client(store)
    email, _, _ = patient_account(client, store)
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs", challenge))
    code = login_and_approve(browser, email)["code"]
    wrong = exchange(client, client_id, code, pkce()[0])
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"
    again = exchange(client, client_id, code, verifier)  # the failed attempt spent the code
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"


def test_code_is_single_use_and_bound_to_redirect_uri(client, store):
    client_id = public_client(store)
    email, _, _ = patient_account(client, store)
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs offline_access", challenge))
    code = login_and_approve(browser, email)["code"]
    first = exchange(client, client_id, code, verifier)
    assert first.status_code == 200
    reused = exchange(client, client_id, code, verifier)
    assert reused.json()["error"] == "invalid_grant"
    # RFC 6749 4.1.2: what the code earned is revoked when it comes back
    refresh = client.post(
        "/auth/token",
        data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": first.json()["refresh_token"]},
    )
    assert refresh.json()["error"] == "invalid_grant"
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs", challenge))
    code = login_and_approve(browser, email)["code"]
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT + "/other",
        "client_id": client_id,
        "code_verifier": verifier,
    }
    assert client.post("/auth/token", data=form).json()["error"] == "invalid_grant"


def test_unregistered_redirect_uri_and_unknown_client_get_an_error_page(client, store):
    client_id = public_client(store)
    params = authorize_params(client_id, "patient/*.rs", pkce()[1], redirect_uri="https://evil.example/cb")
    response = client.get("/auth/authorize", params=params, follow_redirects=False)
    assert response.status_code == 400 and "location" not in response.headers
    assert "not registered" in response.text
    params = authorize_params("no-such-client", "patient/*.rs", pkce()[1])
    response = client.get("/auth/authorize", params=params, follow_redirects=False)
    assert response.status_code == 400 and "location" not in response.headers


def _error_of(client, params) -> dict[str, str]:
    browser = Browser(client)
    browser.open("/auth/authorize", params)
    return browser.redirect_params()


def test_bad_requests_are_redirected_with_an_error(client, store):
    client_id = public_client(store, "patient/Observation.rs openid")
    challenge = pkce()[1]
    refused = _error_of(client, authorize_params(client_id, "patient/Observation.cruds", challenge))
    assert refused["error"] == "invalid_scope" and refused["state"]
    assert _error_of(client, authorize_params(client_id, "user/Patient.rs", challenge))["error"] == "invalid_scope"
    assert _error_of(client, authorize_params(client_id, "patient/Observation.rs", None))["error"] == "invalid_request"
    wrong_aud = authorize_params(client_id, "patient/Observation.rs", challenge, aud="https://other.example/fhir")
    assert _error_of(client, wrong_aud)["error"] == "invalid_request"
    plain = authorize_params(client_id, "patient/Observation.rs", challenge, code_challenge_method="plain")
    assert _error_of(client, plain)["error"] == "invalid_request"
    token_type = authorize_params(client_id, "patient/Observation.rs", challenge, response_type="token")
    assert _error_of(client, token_type)["error"] == "unsupported_response_type"


def test_authorize_by_post_and_deny(client, store):
    client_id = public_client(store)
    email, _, _ = patient_account(client, store)
    browser = Browser(client)
    browser.response = client.post("/auth/authorize", data=authorize_params(client_id, "patient/*.rs", pkce()[1]))
    browser._parse()
    browser.submit({"email": email, "password": PASSWORD})
    browser.submit(button=("decision", "deny"))
    assert browser.redirect_params()["error"] == "access_denied"


def test_forms_need_the_csrf_token_and_the_browser_cookie(client, store):
    client_id = public_client(store)
    email, _, _ = patient_account(client, store)
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs", pkce()[1]))
    forged = browser.submit({"email": email, "password": PASSWORD, "csrf": "forged"})
    assert forged.status_code == 403
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs", pkce()[1]))
    request_id = browser.page.xpath("//input[@name='request']/@value")[0]
    client.cookies.delete(f"fhir_authz_{request_id}", domain="127.0.0.1", path="/auth")
    other_browser = browser.submit({"email": email, "password": PASSWORD})
    assert other_browser.status_code == 403


def test_confidential_client_authenticates_with_basic(client, store):
    made, secret = admin.create_client(
        accounts(store),
        name="Server app",
        kind="confidential-symmetric",
        scopes=["patient/*.rs"],
        redirect_uris=[REDIRECT],
    )
    email, _, _ = patient_account(client, store)
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(made.client_id, "patient/*.rs", None))
    code = login_and_approve(browser, email)["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT}
    wrong = base64.b64encode(f"{made.client_id}:nope".encode()).decode()
    assert client.post("/auth/token", data=form, headers={"Authorization": f"Basic {wrong}"}).status_code == 401
    basic = base64.b64encode(f"{made.client_id}:{secret}".encode()).decode()
    # the failed authentication did not spend the code
    answer = client.post("/auth/token", data=form, headers={"Authorization": f"Basic {basic}"})
    assert answer.status_code == 200, answer.text
    assert "refresh_token" not in answer.json()


def test_clinician_standalone_launch_picks_a_patient_by_name(client, store, settings):
    family = f"Zq{uuid.uuid4().hex[:8]}"
    patient_id = create_person(store, settings, "Patient", None, family, clinic="clinic-b")
    create_person(store, settings, "Patient", None, family, clinic="clinic-a")  # not offered when acting for b
    client_id = public_client(store)
    email = unique_email("doc")
    admin.create_account(
        accounts(store),
        email=email,
        password=PASSWORD,
        kind="clinic-member",
        fhir_user="Practitioner/9",
        clinic="clinic-a",
        role="practitioner",
    )
    accounts(store).add_membership(accounts(store).by_email(email).id, "clinic-b", "staff")
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "launch/patient user/*.rs openid fhirUser", challenge))
    browser.submit({"email": email, "password": PASSWORD})
    assert browser.step() == "clinic"
    browser.submit({"clinic": "clinic-b|staff"})
    assert browser.step() == "patient"
    browser.submit({"name": family.lower()}, form_id="search-patient")
    assert browser.page.xpath("//input[@name='patient']/@value") == [patient_id]
    browser.submit(form_id="choose-patient")
    assert browser.step() == "approve"
    browser.submit(button=("decision", "approve"))
    body = exchange(client, client_id, browser.redirect_params()["code"], verifier).json()
    assert body["patient"] == patient_id
    claims = verify_access_token(body["access_token"], key_ring(Grants(store.engine)).public(), BASE, BASE)
    assert claims["clinic"] == "clinic-b" and claims["role"] == "staff" and claims["kind"] == "clinic-member"
    assert claims["fhirUser"] == "Practitioner/9"


def test_proxy_picks_a_dependent_in_the_patient_picker(client, store):
    """A family member's account chooses among themselves and the dependents linked to it
    (DESIGN.md section 3, proxies); a patient not offered cannot be forced through the form."""
    client_id = public_client(store)
    email, own_patient, account_id = patient_account(client, store)
    child = client.post(
        "/fhir/Patient",
        json={"resourceType": "Patient", "name": [{"family": "Flow", "given": ["Kid"]}]},
        headers=FHIR_JSON,
    ).json()["id"]
    stranger = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"]
    accounts(store).add_proxy(account_id, child, None)
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "launch/patient patient/*.rs", challenge))
    browser.submit({"email": email, "password": PASSWORD})
    assert browser.step() == "patient", browser.response.text
    offered = set(browser.page.xpath("//input[@name='patient']/@value"))
    assert offered == {own_patient, child}
    refused = browser.submit({"patient": stranger})
    assert refused.status_code == 400 and browser.step() == "patient"
    browser.submit({"patient": child})
    assert browser.step() == "approve", browser.response.text
    browser.submit(button=("decision", "approve"))
    token = exchange(client, client_id, browser.redirect_params()["code"], verifier).json()
    assert token["patient"] == child
