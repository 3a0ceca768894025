"""The demo set-up and the `/demo/` app over real sockets: seeding on an empty account table, a
standalone patient launch through the pages, and the callback reading the patient's data with
the token it received."""

from __future__ import annotations

import httpx

from fhir_server.admin.demo import seed, seed_if_empty
from tests.integration.oauth_helpers import Browser


def test_demo_seed_and_app(live_server, store, settings):
    origin = live_server.removesuffix("/fhir")
    made = seed(store, settings, origin)
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
