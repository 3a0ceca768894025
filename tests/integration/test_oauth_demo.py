"""The demo set-up and the `/demo/` app over real sockets: seeding on an empty account table, a
standalone patient launch through the pages, and the callback reading the patient's data with
the token it received."""

from __future__ import annotations

import httpx
import pytest

from fhir_server.admin.demo import seed, seed_if_empty
from tests.integration.oauth_helpers import Browser


@pytest.fixture(scope="module")
def made(live_server, store, settings):
    """The demo records, made once per database (their emails are fixed)."""
    return seed(store, settings, live_server.removesuffix("/fhir"))


def test_demo_seed_and_app(live_server, store, settings, made):
    origin = live_server.removesuffix("/fhir")
    assert seed_if_empty(store, settings, origin) is None  # accounts exist now
    email, password = made["logins"][1]
    with httpx.Client(base_url=origin, timeout=30) as http:
        browser = Browser(http)  # type: ignore[arg-type]
        start = http.get("/demo/start", params={"as": "patient"})
        assert start.status_code == 303
        browser.open(start.headers["location"])
        assert browser.step() == "login", browser.response.text
        browser.submit({"email": email, "password": password})
        assert browser.step() == "approve"
        browser.submit(button=("decision", "approve"))
        callback = browser.response.headers["location"]
        assert callback.startswith(f"{origin}/demo/callback?")
        page = http.get(callback)
    assert page.status_code == 200, page.text
    assert "Peter Demo" in page.text and "Heart rate" in page.text and "Body weight" in page.text


def test_demo_ehr_launch(live_server, made):
    """The stand-in EHR: the clinician signs in to it, launches the app for the demo patient
    through the server's launch endpoint, signs in to the app's authorization, and the app gets
    the patient from the launch and reads their data."""
    origin = live_server.removesuffix("/fhir")
    email, password = made["logins"][0]  # the clinician
    with httpx.Client(base_url=origin, timeout=30) as http:
        browser = Browser(http)  # type: ignore[arg-type]

        def sign_in(url: str) -> str:
            browser.open(url)
            assert browser.step() == "login", browser.response.text
            browser.submit({"email": email, "password": password})
            while browser.step() == "clinic":  # a clinician of several clinics picks one
                browser.submit()
            assert browser.step() == "approve", browser.response.text
            browser.submit(button=("decision", "approve"))
            return str(browser.response.headers["location"])

        ehr_start = http.get("/demo/start", params={"as": "ehr"})
        ehr_page = http.get(sign_in(ehr_start.headers["location"]))
        assert ehr_page.status_code == 200, ehr_page.text
        assert "Launch the app for Peter Demo" in ehr_page.text
        launched = http.post("/demo/ehr/launch", data={"patient": made["patient"]})
        assert launched.status_code == 303, launched.text
        app_url = launched.headers["location"]
        assert app_url.startswith(f"{origin}/demo/launch?") and "launch=" in app_url and "iss=" in app_url
        to_authorize = http.get(app_url)
        assert to_authorize.status_code == 303 and "launch=" in to_authorize.headers["location"]
        page = http.get(sign_in(to_authorize.headers["location"]))
    assert page.status_code == 200, page.text
    assert "Peter Demo" in page.text and "Heart rate" in page.text
    assert "launch" in page.text  # the granted scopes shown by the app include `launch`
