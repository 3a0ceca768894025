"""The SMART Python client `fhirclient` (PyPI) against this server, over real sockets: it learns
the OAuth endpoints from the CapabilityStatement (`rest.security`, the oauth-uris extension),
builds the authorize URL (PKCE S256, `aud` = the base, `launch/patient` added for it), the user
signs in and approves on the server's pages, `handle_callback` checks `state` and exchanges the
code (HTTP Basic for a confidential client), then fhirclient reads and searches with the token and
refreshes it (`offline_access`). As a public and as a confidential-symmetric client.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from fhirclient import client as smart_client
from fhirclient.models.observation import Observation
from fhirclient.models.patient import Patient
from fhirclient.server import FHIRNotFoundException

from tests.integration.live_smart import Deployment, deployment
from tests.integration.oauth_helpers import PASSWORD, Browser

REDIRECT = "https://app.example.org/fhirclient/callback"  # never fetched: the test takes the redirect
SCOPE = "openid fhirUser offline_access patient/*.rs"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    with deployment(tmp_path_factory.mktemp("fhirclient")) as made:
        yield made


def _authorize_in_forms(site: Deployment, url: str) -> str:
    """The user's part: login and approval pages; answers the redirect back to the app."""
    with httpx.Client(base_url=site.origin, timeout=30) as http:
        browser = Browser(http)  # type: ignore[arg-type]
        browser.open(url)
        assert browser.step() == "login", browser.response.text
        browser.submit({"email": site.patient_email, "password": PASSWORD})
        assert browser.step() == "approve", browser.response.text
        browser.submit(button=("decision", "approve"))
        assert browser.response.status_code == 303, browser.response.text
        return str(browser.response.headers["location"])


@pytest.mark.parametrize("kind", ["public", "confidential-symmetric"])
def test_fhirclient_authorizes_reads_searches_and_refreshes(site: Deployment, kind: str) -> None:
    client_id, secret = site.register(kind, f"launch/patient {SCOPE}", REDIRECT)
    settings = {"app_id": client_id, "api_base": site.base, "redirect_uri": REDIRECT, "scope": SCOPE}
    if secret:
        settings["app_secret"] = secret
    smart = smart_client.FHIRClient(settings=settings)
    assert not smart.ready

    url = smart.authorize_url  # fetches /metadata, reads rest[0].security
    assert url.startswith(f"{site.origin}/auth/authorize?")
    assert smart.server.auth._token_uri == f"{site.origin}/auth/token"
    redirect = _authorize_in_forms(site, url)
    assert redirect.startswith(f"{REDIRECT}?")
    smart.handle_callback(redirect)

    assert smart.ready and smart.patient_id == site.patient.id
    assert set(smart.launch_context["scope"].split()) == {"launch/patient", *SCOPE.split()}
    patient = Patient.read(site.patient.id, smart.server)
    assert smart.human_name(patient.name[0]) == site.patient.name
    found = list(Observation.where(struct={"patient": site.patient.id}).perform_resources_iter(smart.server))
    assert [(o.code.text, o.valueQuantity.value) for o in found] == [("Heart rate", 72)]
    with pytest.raises(FHIRNotFoundException):  # another patient is out of the token's reach
        Patient.read(site.other.id, smart.server)

    first = smart.server.auth.access_token
    assert smart.reauthorize()  # refresh_token grant
    assert smart.server.auth.access_token != first
    assert Patient.read(site.patient.id, smart.server).id == site.patient.id
