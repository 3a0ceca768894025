"""`fhir-server proxy link|list` (DESIGN.md section 3, family members): a family member's account
linked from the command line to a dependent acts for them through the real SMART flow (the
patient picker offers the dependent), and the token reads the dependent's record and nothing of
another's; bad links are refused with exit code 2 and a clear message."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from fhir_server.cli import main
from tests.conftest import FHIR_JSON
from tests.integration.oauth_helpers import (
    PASSWORD,
    Browser,
    accounts,
    authorize_params,
    exchange,
    pkce,
    public_client,
    served_with_tokens,
    unique_email,
)

REMOTE = ("203.0.113.11", 50000)


@pytest.fixture()
def cli(monkeypatch: pytest.MonkeyPatch, database_url: str, capsys: pytest.CaptureFixture[str]) -> Any:
    monkeypatch.setenv("FHIR_DATABASE_URL", database_url)

    def run(*argv: str) -> Any:
        capsys.readouterr()
        code = main([*argv, "--json"])
        captured = capsys.readouterr()
        assert code == 0, captured.err
        return json.loads(captured.out)

    return run


@pytest.fixture()
def refused(monkeypatch: pytest.MonkeyPatch, database_url: str, capsys: pytest.CaptureFixture[str]) -> Any:
    """Runs a command that must fail: its exit code is 2; returns what it printed on stderr."""
    monkeypatch.setenv("FHIR_DATABASE_URL", database_url)

    def run(*argv: str) -> str:
        capsys.readouterr()
        assert main(list(argv)) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        return captured.err

    return run


@pytest.fixture(scope="module")
def guarded(settings: Any, store: Any) -> Iterator[TestClient]:
    """The same database served as by default: bearer tokens only, no local operator."""
    yield from served_with_tokens(settings, store, REMOTE)


def _post(client: TestClient, body: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _family(cli: Any, client: TestClient) -> dict[str, str]:
    """A parent's patient account (with their own Patient), a child without an account, the
    RelatedPerson saying the parent is the child's mother, and a child's Observation."""
    marker = uuid.uuid4().hex[:8]
    email = unique_email("parent")
    parent = cli(
        "user", "create", "--email", email, "--password", PASSWORD, "--kind", "patient", "--given", "Mum",
        "--family", f"Fam{marker}",
    )  # fmt: skip
    child = _post(client, {"resourceType": "Patient", "name": [{"family": f"Fam{marker}", "given": ["Kid"]}]})
    related = _post(
        client,
        {
            "resourceType": "RelatedPerson",
            "patient": {"reference": f"Patient/{child}"},
            "relationship": [
                {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}
            ],
            "name": [{"family": f"Fam{marker}", "given": ["Mum"]}],
        },
    )
    observation = _post(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": f"height {marker}"},
            "subject": {"reference": f"Patient/{child}"},
        },
    )
    own = parent["fhirUser"].removeprefix("Patient/")
    return {"email": email, "account": parent["id"], "own": own, "child": child, "related": related,
            "observation": observation}  # fmt: skip


def test_proxy_link_then_the_parent_reads_the_childs_record_with_a_real_token(
    cli: Any, client: TestClient, guarded: TestClient, store: Any
) -> None:
    family = _family(cli, client)
    linked = cli(
        "proxy", "link", "--account", family["email"], "--patient", family["child"],
        "--related-person", family["related"],
    )  # fmt: skip
    assert linked == {
        "account": family["account"],
        "email": family["email"],
        "patient": family["child"],
        "relatedPerson": family["related"],
    }
    assert cli("proxy", "list", "--account", family["account"])["patients"] == [family["child"]]
    assert accounts(store).dependents(family["account"]) == [family["child"]]

    client_id = public_client(store)
    verifier, challenge = pkce()
    browser = Browser(guarded)
    browser.open("/auth/authorize", authorize_params(client_id, "launch/patient patient/*.rs", challenge))
    browser.submit({"email": family["email"], "password": PASSWORD})
    assert browser.step() == "patient", browser.response.text
    assert set(browser.page.xpath("//input[@name='patient']/@value")) == {family["own"], family["child"]}
    browser.submit({"patient": family["child"]})
    assert browser.step() == "approve", browser.response.text
    browser.submit(button=("decision", "approve"))
    token = exchange(guarded, client_id, browser.redirect_params()["code"], verifier).json()
    assert token["patient"] == family["child"]
    headers = {**FHIR_JSON, "Authorization": f"Bearer {token['access_token']}"}
    assert guarded.get(f"/fhir/Patient/{family['child']}", headers=headers).status_code == 200
    assert guarded.get(f"/fhir/Observation/{family['observation']}", headers=headers).status_code == 200
    found = guarded.get("/fhir/Observation", params={"subject": f"Patient/{family['child']}"}, headers=headers)
    assert {entry["resource"]["id"] for entry in found.json()["entry"]} == {family["observation"]}
    stranger = _post(client, {"resourceType": "Patient"})
    assert guarded.get(f"/fhir/Patient/{stranger}", headers=headers).status_code == 404


def test_proxy_link_refuses_what_does_not_hold_together(cli: Any, refused: Any, client: TestClient) -> None:
    family = _family(cli, client)
    other_child = _post(client, {"resourceType": "Patient"})
    unknown = str(uuid.uuid4())
    assert "no account" in refused("proxy", "link", "--account", unique_email(), "--patient", family["child"])
    assert "no account" in refused("proxy", "link", "--account", unknown, "--patient", family["child"])
    assert f"Patient/{unknown}" in refused("proxy", "link", "--account", family["email"], "--patient", unknown)
    assert f"RelatedPerson/{unknown}" in refused(
        "proxy", "link", "--account", family["email"], "--patient", family["child"], "--related-person", unknown
    )
    mismatch = refused(
        "proxy", "link", "--account", family["email"], "--patient", other_child,
        "--related-person", family["related"],
    )  # fmt: skip
    assert f"is not about Patient/{other_child}" in mismatch
    assert "own record" in refused("proxy", "link", "--account", family["email"], "--patient", family["own"])
    clinician = cli(
        "user", "create", "--email", unique_email("doc"), "--password", PASSWORD, "--kind", "clinic-member",
        "--clinic", "clinic-x", "--role", "practitioner",
    )  # fmt: skip
    assert "not a patient's" in refused("proxy", "link", "--account", clinician["id"], "--patient", family["child"])
    assert client.delete(f"/fhir/Patient/{other_child}").status_code in (200, 204)
    assert "deleted" in refused("proxy", "link", "--account", family["email"], "--patient", other_child)
    cli("proxy", "link", "--account", family["account"], "--patient", family["child"])
    assert "already" in refused("proxy", "link", "--account", family["email"], "--patient", family["child"])
    assert cli("proxy", "list", "--account", family["email"])["patients"] == [family["child"]]


def test_proxy_unlink_ends_the_picker_choice_and_the_refresh_tokens_for_the_dependent(
    cli: Any, refused: Any, client: TestClient, guarded: TestClient, store: Any
) -> None:
    family = _family(cli, client)
    cli("proxy", "link", "--account", family["email"], "--patient", family["child"])
    client_id = public_client(store)

    def launch(patient: str) -> dict[str, Any]:
        verifier, challenge = pkce()
        browser = Browser(guarded)
        browser.open(
            "/auth/authorize", authorize_params(client_id, "launch/patient offline_access patient/*.rs", challenge)
        )
        browser.submit({"email": family["email"], "password": PASSWORD})
        if browser.step() == "patient":
            browser.submit({"patient": patient})
        browser.submit(button=("decision", "approve"))
        return dict(exchange(guarded, client_id, browser.redirect_params()["code"], verifier).json())

    def refresh(token: dict[str, Any]) -> Any:
        form = {"grant_type": "refresh_token", "refresh_token": token["refresh_token"], "client_id": client_id}
        return guarded.post("/auth/token", data=form)

    for_child, for_self = launch(family["child"]), launch(family["own"])
    assert for_child["patient"] == family["child"] and for_self["patient"] == family["own"]
    for_child = refresh(for_child).json()  # while linked, refreshing works
    assert for_child["patient"] == family["child"]

    unlinked = cli("proxy", "unlink", "--account", family["email"], "--patient", family["child"])
    assert unlinked == {"account": family["account"], "email": family["email"], "patient": family["child"]}
    assert cli("proxy", "list", "--account", family["email"])["patients"] == []
    refused_refresh = refresh(for_child)
    assert refused_refresh.status_code == 400 and refused_refresh.json()["error"] == "invalid_grant"
    assert refresh(for_self).status_code == 200  # her own record is hers still
    assert "does not act for" in refused("proxy", "unlink", "--account", family["email"], "--patient", family["child"])

    verifier, challenge = pkce()  # the picker no longer offers the child: her own record only
    browser = Browser(guarded)
    browser.open("/auth/authorize", authorize_params(client_id, "launch/patient patient/*.rs", challenge))
    browser.submit({"email": family["email"], "password": PASSWORD})
    offered = set(browser.page.xpath("//input[@name='patient']/@value")) if browser.step() == "patient" else set()
    assert family["child"] not in offered
