"""Both SMART launches in a real headless browser (SMART App Launch 2.x app-launch.html#launch-app-
standalone-launch and #launch-app-ehr-launch): Debian's Chromium, driven by Playwright, opens a
test SMART app served on its own port (smart_app.py), which discovers the server, sends the
browser to `/auth/authorize`; the user signs in and approves on the server's pages, the browser
is redirected back with a code, the app exchanges it and reads the FHIR API with the token.

The server runs as by default (no local operator) on a real uvicorn (live_smart.py). Without
/usr/bin/chromium the tests skip locally and fail under CI (`.ci/run` installs it); a Chromium
that is there but does not start is always a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.conftest import serve_in_thread
from tests.integration.live_smart import Deployment, deployment
from tests.integration.oauth_helpers import PASSWORD
from tests.integration.smart_app import EHR_SCOPE, STANDALONE_SCOPE, AppConfig, make_app

CHROMIUM = "/usr/bin/chromium"
TIMEOUT_MS = 20_000  # generous: the machine may be busy; a passing run takes a few seconds

pytestmark = pytest.mark.xdist_group("browser")  # one worker starts Chromium once for both


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} is absent (apt-get install chromium; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(f"CI needs the browser tests: {reason}")
        pytest.skip(reason)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("browser")) as made:
        yield made


@pytest.fixture(scope="module")
def smart_app(site: Deployment) -> Iterator[AppConfig]:
    config = AppConfig(standalone_iss=site.base)
    with serve_in_thread(make_app(config)) as origin:
        config.origin = origin
        config.client_id, _ = site.register("public", f"{STANDALONE_SCOPE} {EHR_SCOPE}", config.redirect_uri)
        yield config


@pytest.fixture
def page(chromium: Browser) -> Iterator[Page]:
    context = chromium.new_context()  # fresh cookies for every test
    context.set_default_timeout(TIMEOUT_MS)
    try:
        yield context.new_page()
    finally:
        context.close()


def _sign_in_and_approve(page: Page, site: Deployment, email: str, scope: str) -> dict[str, list[str]]:
    """On the server's pages: the login form, then the approval page listing the requested scopes."""
    page.wait_for_url(f"{site.origin}/auth/authorize?*")
    asked = parse_qs(urlsplit(page.url).query)
    assert page.title() == "Sign in"
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.click("#sign-in")
    page.wait_for_selector("#approve")
    assert page.title() == "Allow access"
    ticked = page.locator("input[name=scope]").evaluate_all("boxes => boxes.filter(b => b.checked).map(b => b.value)")
    assert ticked == scope.split()  # every requested scope, ticked; the user could untick some
    page.click("#approve")
    return asked


def _shown(page: Page) -> dict[str, str]:
    keys = ("context-patient", "patient-name", "scope", "fhir-user", "banner", "reads")
    return {key: page.inner_text(f"#{key}") for key in keys}


def test_standalone_patient_launch(page: Page, site: Deployment, smart_app: AppConfig) -> None:
    page.goto(f"{smart_app.origin}/")
    page.click("#connect")
    asked = _sign_in_and_approve(page, site, site.patient_email, STANDALONE_SCOPE)
    assert asked["aud"] == [site.base] and asked["code_challenge_method"] == ["S256"]
    page.wait_for_url(f"{smart_app.redirect_uri}?*")
    assert page.inner_text("#status") == "Connected", page.content()
    shown = _shown(page)
    assert shown["context-patient"] == site.patient.id
    assert shown["patient-name"] == site.patient.name
    assert shown["reads"] == "200 200"
    assert page.inner_text("#observations") == site.patient.observation
    assert shown["fhir-user"] == f"{site.base}/Patient/{site.patient.id}"  # a URL (app-launch.html#fhiruser)
    assert set(shown["scope"].split()) == set(STANDALONE_SCOPE.split())


def test_ehr_launch(page: Page, site: Deployment, smart_app: AppConfig) -> None:
    # The clinic's EHR mints a launch for a patient of the clinic, with its backend-service token.
    made = httpx.post(
        f"{site.origin}/auth/launch",
        json={"patient": f"Patient/{site.other.id}"},
        headers={"Authorization": f"Bearer {site.ehr_token()}"},
        timeout=30,
    )
    assert made.status_code == 200, made.text
    launch = made.json()
    assert launch["iss"] == site.base
    # ... and opens the app with iss and launch; a clinician signs in and approves.
    page.goto(f"{smart_app.origin}/launch?{urlencode({'iss': launch['iss'], 'launch': launch['launch']})}")
    asked = _sign_in_and_approve(page, site, site.clinician_email, EHR_SCOPE)
    assert asked["launch"] == [launch["launch"]] and asked["scope"] == [EHR_SCOPE]
    page.wait_for_url(f"{smart_app.redirect_uri}?*")
    assert page.inner_text("#status") == "Connected", page.content()
    shown = _shown(page)
    assert shown["context-patient"] == site.other.id  # the launch's patient, from the token response
    assert shown["patient-name"] == site.other.name
    assert shown["reads"] == "200 200"
    assert page.inner_text("#observations") == site.other.observation
    assert shown["fhir-user"] == f"{site.base}/Practitioner/{site.practitioner}"
    assert shown["banner"] == "false"  # the EHR shows its own patient banner
