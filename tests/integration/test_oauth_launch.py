"""EHR launch (SMART App Launch 2.x app-launch.html#launch-app-ehr-launch): a clinic's EHR mints a
launch id with its own access token, the app authorizes with `launch` and gets the patient and
encounter in the token response; members of other clinics and patients cannot use or make one."""

from __future__ import annotations

from fhir_server.admin.resources import create_person
from fhir_server.authserver import admin
from tests.integration.oauth_helpers import (
    PASSWORD,
    Browser,
    accounts,
    authorize_params,
    backend_token,
    exchange,
    patient_account,
    pkce,
    public_client,
    unique_email,
)

SCOPE = "launch user/*.rs openid fhirUser"


def _patient(store, settings, clinic: str) -> str:
    """A Patient recorded by `clinic` (a clinic launches only patients it may see)."""
    return create_person(store, settings, "Patient", None, "Launch", clinic=clinic)


def _clinician(store, clinic: str) -> str:
    email = unique_email("doc")
    admin.create_account(
        accounts(store),
        email=email,
        password=PASSWORD,
        kind="clinic-member",
        fhir_user="Practitioner/7",
        clinic=clinic,
        role="practitioner",
    )
    return email


def _launch(client, token: str, body: dict):
    return client.post("/auth/launch", json=body, headers={"Authorization": f"Bearer {token}"})


def _authorize(client, client_id: str, email: str, launch: str) -> Browser:
    browser = Browser(client)
    verifier, challenge = pkce()
    browser.open("/auth/authorize", authorize_params(client_id, SCOPE, challenge, launch=launch))
    browser.submit({"email": email, "password": PASSWORD})
    browser.verifier = verifier  # type: ignore[attr-defined]
    return browser


def test_ehr_launch_puts_patient_and_encounter_in_the_token_response(client, store, settings):
    patient = _patient(store, settings, "clinic-ehr")
    ehr = backend_token(client, store, clinic="clinic-ehr")
    made = _launch(client, ehr, {"patient": f"Patient/{patient}", "encounter": "enc-1"})
    assert made.status_code == 200, made.text
    launch = made.json()
    assert launch["patient"] == patient and launch["iss"].endswith("/fhir") and launch["expires_in"] == 300
    client_id = public_client(store, SCOPE)
    browser = _authorize(client, client_id, _clinician(store, "clinic-ehr"), launch["launch"])
    assert browser.step() == "approve", browser.response.text
    browser.submit(button=("decision", "approve"))
    body = exchange(client, client_id, browser.redirect_params()["code"], browser.verifier).json()
    assert body["patient"] == patient and body["encounter"] == "enc-1"
    assert body["need_patient_banner"] is False
    assert body["fhirContext"] == [{"reference": "Encounter/enc-1"}]
    assert "id_token" in body


def test_a_clinician_token_can_mint_launches_and_other_clinics_cannot_use_them(client, store, settings):
    patient = _patient(store, settings, "clinic-x")
    client_id = public_client(store, SCOPE + " launch/patient")
    email = _clinician(store, "clinic-x")
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "user/*.rs", challenge))
    browser.submit({"email": email, "password": PASSWORD})
    browser.submit(button=("decision", "approve"))
    clinician_token = exchange(client, client_id, browser.redirect_params()["code"], verifier).json()["access_token"]
    launch = _launch(client, clinician_token, {"patient": patient}).json()["launch"]
    outsider = _authorize(client, client_id, _clinician(store, "clinic-y"), launch)
    assert outsider.redirect_params()["error"] == "access_denied"


def test_launch_refusals(client, store, settings):
    patient = _patient(store, settings, "clinic-z")
    assert _launch(client, "not-a-token", {"patient": patient}).status_code == 401
    assert client.post("/auth/launch", json={"patient": patient}).json()["error"] == "invalid_token"
    ehr = backend_token(client, store, clinic="clinic-z")
    unknown = _launch(client, ehr, {"patient": "does-not-exist"})
    assert unknown.status_code == 400
    elsewhere = _launch(client, ehr, {"patient": _patient(store, settings, "clinic-elsewhere")})
    assert elsewhere.status_code == 400  # another clinic's patient: as unknown as one that never existed
    assert elsewhere.json()["error"] == unknown.json()["error"]
    assert _launch(client, ehr, {"encounter": "e"}).status_code == 400
    client_id = public_client(store)
    email, own, _ = patient_account(client, store)
    verifier, challenge = pkce()
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, "patient/*.rs", challenge))
    browser.submit({"email": email, "password": PASSWORD})
    browser.submit(button=("decision", "approve"))
    patient_token = exchange(client, client_id, browser.redirect_params()["code"], verifier).json()["access_token"]
    forbidden = _launch(client, patient_token, {"patient": own})
    assert forbidden.status_code == 403


def test_unknown_launch_id_is_an_error(client, store):
    client_id = public_client(store, SCOPE)
    browser = Browser(client)
    browser.open("/auth/authorize", authorize_params(client_id, SCOPE, pkce()[1], launch="nope"))
    assert browser.redirect_params()["error"] == "invalid_request"
