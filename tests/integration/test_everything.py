"""Patient/[id]/$everything (R4 patient-operation-everything.html) over HTTP, on SQLite and
PostgreSQL: the Patient and its compartment, `_type`, `_since`, `start`/`end`, `_count` paging
through `next` links, 404 like a read, one AuditEvent; and through the one access policy with real
bearer tokens: a clinic sees only its own records, another clinic learns nothing, a patient sees
their record from every clinic and nothing of another patient's."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from fhir_server.authserver import admin
from tests.conftest import FHIR_JSON
from tests.integration.oauth_helpers import (
    PASSWORD,
    Browser,
    accounts,
    authorize_params,
    backend_token,
    bearer,
    exchange,
    login_and_approve,
    pkce,
    public_client,
    served_with_tokens,
    unique_email,
)

REMOTE = ("203.0.113.9", 50000)


@pytest.fixture(scope="module")
def guarded(settings: Any, store: Any) -> Iterator[TestClient]:
    """The same database served as by default: bearer tokens only, no local operator."""
    yield from served_with_tokens(settings, store, REMOTE)


def _post(client: TestClient, body: dict[str, Any], headers: dict[str, str] = FHIR_JSON) -> dict[str, Any]:
    response = client.post(f"/fhir/{body['resourceType']}", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _observation(patient: str, text: str, when: str = "2021-06-01", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": text},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": when,
        **extra,
    }


def _record(client: TestClient, headers: dict[str, str] = FHIR_JSON) -> dict[str, Any]:
    """A Patient with three Observations, an Encounter and a Condition, a Practitioner they refer to."""
    marker = uuid.uuid4().hex[:10]
    patient = _post(client, {"resourceType": "Patient", "name": [{"family": f"Every{marker}"}]}, headers)["id"]
    practitioner = _post(client, {"resourceType": "Practitioner", "name": [{"family": f"Doc{marker}"}]}, headers)["id"]
    performer = {"performer": [{"reference": f"Practitioner/{practitioner}"}]}
    observations = [
        _post(client, _observation(patient, marker, f"20{year}-03-01", **performer), headers)["id"]
        for year in (19, 21, 23)
    ]
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": f"Patient/{patient}"},
        "period": {"start": "2021-05-01", "end": "2021-05-01"},
    }
    condition = {
        "resourceType": "Condition",
        "code": {"text": f"condition {marker}"},
        "subject": {"reference": f"Patient/{patient}"},
    }
    return {
        "marker": marker,
        "patient": patient,
        "practitioner": practitioner,
        "observations": observations,
        "encounter": _post(client, encounter, headers)["id"],
        "condition": _post(client, condition, headers)["id"],
    }


def _entries(bundle: dict[str, Any], mode: str = "match") -> set[tuple[str, str]]:
    return {
        (entry["resource"]["resourceType"], entry["resource"]["id"])
        for entry in bundle.get("entry", [])
        if entry["search"]["mode"] == mode
    }


def _everything(client: TestClient, patient: str, headers: dict[str, str] = FHIR_JSON, **params: str) -> Any:
    return client.get(f"/fhir/Patient/{patient}/$everything", params=params, headers=headers)


def _all_pages(client: TestClient, first: Any, headers: dict[str, str]) -> list[dict[str, Any]]:
    """Every page, following `next` links to the end."""
    assert first.status_code == 200, first.text
    pages = [first.json()]
    while (following := [link["url"] for link in pages[-1]["link"] if link["relation"] == "next"]) and len(pages) < 50:
        response = client.get(following[0], headers=headers)
        assert response.status_code == 200, response.text
        pages.append(response.json())
    return pages


def _expected(record: dict[str, Any]) -> set[tuple[str, str]]:
    return {
        ("Patient", record["patient"]),
        *(("Observation", o) for o in record["observations"]),
        ("Encounter", record["encounter"]),
        ("Condition", record["condition"]),
    }


# --- the operation, as the local operator ---------------------------------------------------------


def test_everything_is_the_patient_and_its_compartment_and_nothing_of_another(client: TestClient) -> None:
    record = _record(client)
    stranger = _post(client, {"resourceType": "Patient"})["id"]
    theirs = _post(client, _observation(stranger, record["marker"]))["id"]
    response = _everything(client, record["patient"])
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert _entries(bundle) == _expected(record)
    assert ("Observation", theirs) not in _entries(bundle) and ("Patient", stranger) not in _entries(bundle)
    assert _entries(bundle, "include") == {("Practitioner", record["practitioner"])}
    assert bundle["total"] == len(_expected(record))
    self_link = bundle["link"][0]
    assert self_link["relation"] == "self" and self_link["url"].endswith(f"/Patient/{record['patient']}/$everything")
    by_post = client.post(
        f"/fhir/Patient/{record['patient']}/$everything",
        json={"resourceType": "Parameters", "parameter": [{"name": "_type", "valueString": "Encounter"}]},
        headers=FHIR_JSON,
    )
    assert by_post.status_code == 200, by_post.text
    assert _entries(by_post.json()) == {("Encounter", record["encounter"])}


def test_type_since_and_care_dates_select(client: TestClient) -> None:
    record = _record(client)
    typed = _everything(client, record["patient"], _type="Observation,Condition").json()
    assert _entries(typed) == {("Observation", o) for o in record["observations"]} | {
        ("Condition", record["condition"])
    }
    repeated = _everything(client, record["patient"], _type="Patient").json()
    assert _entries(repeated) == {("Patient", record["patient"])}
    latest = _post(client, _observation(record["patient"], record["marker"]))
    since = _everything(client, record["patient"], _since=latest["meta"]["lastUpdated"]).json()
    assert _entries(since) == {("Observation", latest["id"])}
    in_2021 = _everything(client, record["patient"], start="2021-01-01", end="2021-12-31").json()
    dated = {("Observation", record["observations"][1]), ("Observation", latest["id"])}
    dated.add(("Encounter", record["encounter"]))
    undated = {("Patient", record["patient"]), ("Condition", record["condition"])}  # no clinical `date`
    assert _entries(in_2021) == dated | undated
    from_2023 = _everything(client, record["patient"], start="2023-01-01").json()
    assert _entries(from_2023) == {("Observation", record["observations"][2])} | undated


def test_count_pages_through_next_links_to_the_end(client: TestClient) -> None:
    record = _record(client)
    pages = _all_pages(client, _everything(client, record["patient"], _count="2"), FHIR_JSON)
    assert len(pages) == 3  # 6 matches, 2 a page
    seen = [entry for page in pages for entry in page.get("entry", []) if entry["search"]["mode"] == "match"]
    assert all(len([e for e in page["entry"] if e["search"]["mode"] == "match"]) <= 2 for page in pages)
    keys = [(entry["resource"]["resourceType"], entry["resource"]["id"]) for entry in seen]
    assert len(keys) == len(set(keys)) and set(keys) == _expected(record)
    assert "total" not in pages[0]  # not every match is on the first page
    assert all("_count=2" in link["url"] for page in pages for link in page["link"])
    assert not [link for link in pages[-1]["link"] if link["relation"] == "next"]
    none = _everything(client, record["patient"], _count="0").json()
    assert none["total"] == len(_expected(record)) and "entry" not in none


def test_unknown_patient_and_bad_parameters(client: TestClient) -> None:
    missing = _everything(client, str(uuid.uuid4()))
    assert missing.status_code == 404
    assert missing.json()["issue"][0]["details"]["coding"][0]["code"] == "resource-not-found"
    patient = _post(client, {"resourceType": "Patient"})["id"]
    for params, code in (
        ({"nonsense": "1"}, "everything-parameter-unknown"),
        ({"_type": "NotAType"}, "everything-parameter-invalid"),
        ({"_count": "many"}, "everything-parameter-invalid"),
        ({"_since": "yesterday"}, "everything-parameter-invalid"),
        ({"_page": "garbage!"}, "search-page-token-invalid"),
    ):
        response = _everything(client, patient, **params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["issue"][0]["details"]["coding"][0]["code"] == code, params
    assert client.delete(f"/fhir/Patient/{patient}").status_code in (200, 204)
    assert _everything(client, patient).status_code == 410  # like a read of a deleted resource
    assert client.get("/fhir/Observation/x/$everything").status_code == 404  # Patient only


def test_everything_is_audited_once(client: TestClient) -> None:
    patient = _post(client, {"resourceType": "Patient"})["id"]
    assert _everything(client, patient).status_code == 200
    found = client.get(
        "/fhir/AuditEvent", params={"patient": patient, "subtype": "everything"}, headers=FHIR_JSON
    ).json()
    events = [entry["resource"] for entry in found.get("entry", [])]
    assert len(events) == 1
    assert {coding["code"] for coding in events[0]["subtype"]} >= {"operation", "everything"}
    assert f"Patient/{patient}" in {entity.get("what", {}).get("reference") for entity in events[0]["entity"]}
    everything = _everything(client, patient).json()  # the audit trail is left out unless asked for
    assert {kind for kind, _ in _entries(everything)} == {"Patient"}
    asked = _everything(client, patient, _type="AuditEvent").json()
    assert len(_entries(asked)) >= 2


# --- through the access policy, with real tokens --------------------------------------------------


def _patient_token(guarded: TestClient, store: Any, patient: str) -> str:
    """A patient account for `patient`, signed in through the authorization-code flow."""
    client_id = public_client(store)
    email = unique_email("everything")
    admin.create_account(
        accounts(store), email=email, password=PASSWORD, kind="patient", fhir_user=f"Patient/{patient}"
    )
    verifier, challenge = pkce()
    browser = Browser(guarded)
    browser.open("/auth/authorize", authorize_params(client_id, "launch/patient patient/*.rs", challenge))
    token = exchange(guarded, client_id, login_and_approve(browser, email)["code"], verifier).json()
    assert token["patient"] == patient
    return str(token["access_token"])


def test_clinics_see_their_own_records_and_nothing_of_another(guarded: TestClient, store: Any) -> None:
    clinic_a, clinic_b = f"clinic-a-{uuid.uuid4().hex[:8]}", f"clinic-b-{uuid.uuid4().hex[:8]}"
    a_writes = bearer(backend_token(guarded, store, "system/*.cruds", clinic=clinic_a))
    b_writes = bearer(backend_token(guarded, store, "system/*.cruds", clinic=clinic_b))
    record = _record(guarded, a_writes)
    b_about_a = _post(guarded, _observation(record["patient"], record["marker"]), b_writes)["id"]
    b_patient = _post(guarded, {"resourceType": "Patient"}, b_writes)["id"]

    a_reads = bearer(backend_token(guarded, store, "system/*.rs", clinic=clinic_a))
    pages = _all_pages(guarded, _everything(guarded, record["patient"], a_reads, _count="2"), a_reads)
    seen = set().union(*(_entries(page) for page in pages))
    assert seen == _expected(record)  # not clinic B's Observation about the same patient
    assert ("Observation", b_about_a) not in seen

    b_reads = bearer(backend_token(guarded, store, "system/*.rs", clinic=clinic_b))
    unknown = _everything(guarded, str(uuid.uuid4()), b_reads)
    for params in ({}, {"_type": "Observation"}, {"_count": "1"}, {"_since": "2000-01-01"}):
        hidden = _everything(guarded, record["patient"], b_reads, **params)
        assert hidden.status_code == unknown.status_code == 404, hidden.text
        assert hidden.json()["issue"][0]["details"]["coding"] == unknown.json()["issue"][0]["details"]["coding"]
        assert record["marker"] not in hidden.text and b_about_a not in hidden.text
    assert _entries(_everything(guarded, b_patient, b_reads).json()) == {("Patient", b_patient)}

    narrow = bearer(backend_token(guarded, store, "system/Patient.rs system/Observation.rs", clinic=clinic_a))
    narrowed = _everything(guarded, record["patient"], narrow)
    assert narrowed.status_code == 200, narrowed.text  # types out of scope are left out, not refused
    assert _entries(narrowed.json()) == {("Patient", record["patient"])} | {
        ("Observation", o) for o in record["observations"]
    }
    assert not _entries(narrowed.json(), "include")  # no Practitioner scope, no Practitioner
    no_patient = bearer(backend_token(guarded, store, "system/Observation.rs", clinic=clinic_a))
    assert _everything(guarded, record["patient"], no_patient).status_code == 403


def test_a_patient_token_gets_its_own_record_from_every_clinic_and_nothing_else(
    guarded: TestClient, store: Any
) -> None:
    clinic_a, clinic_b = f"clinic-a-{uuid.uuid4().hex[:8]}", f"clinic-b-{uuid.uuid4().hex[:8]}"
    a_writes = bearer(backend_token(guarded, store, "system/*.cruds", clinic=clinic_a))
    b_writes = bearer(backend_token(guarded, store, "system/*.cruds", clinic=clinic_b))
    record = _record(guarded, a_writes)
    b_about_a = _post(guarded, _observation(record["patient"], record["marker"]), b_writes)["id"]
    other = _record(guarded, a_writes)

    token = bearer(_patient_token(guarded, store, record["patient"]))
    pages = _all_pages(guarded, _everything(guarded, record["patient"], token, _count="3"), token)
    seen = set().union(*(_entries(page) for page in pages))
    assert seen == _expected(record) | {("Observation", b_about_a)}  # both clinics' records
    own = guarded.get("/fhir/Patient/$everything", headers=token)
    assert own.status_code == 200, own.text
    assert _entries(own.json()) == seen
    hidden = _everything(guarded, other["patient"], token)
    unknown = _everything(guarded, str(uuid.uuid4()), token)
    assert hidden.status_code == unknown.status_code == 404
    assert hidden.json()["issue"][0]["details"]["coding"] == unknown.json()["issue"][0]["details"]["coding"]
    assert other["marker"] not in hidden.text
    clinic = guarded.get("/fhir/Patient/$everything", headers=a_writes)  # type level: a patient's own only
    assert clinic.status_code == 501


def test_a_clinic_where_the_patient_registered_without_consent_learns_the_name_only(
    guarded: TestClient, store: Any
) -> None:
    """Registered at clinic B, no profile-sharing Consent: B's $everything shows the Patient by name
    only (DESIGN.md section 3), B's own records, and nothing of clinic A's."""
    clinic_a, clinic_b = f"clinic-a-{uuid.uuid4().hex[:8]}", f"clinic-b-{uuid.uuid4().hex[:8]}"
    a_writes = bearer(backend_token(guarded, store, "system/*.cruds", clinic=clinic_a))
    b_writes = bearer(backend_token(guarded, store, "system/*.cruds", clinic=clinic_b))
    record = _record(guarded, a_writes)
    patient = record["patient"]
    updated = guarded.put(
        f"/fhir/Patient/{patient}",
        json={"resourceType": "Patient", "id": patient, "name": [{"family": "Named"}], "birthDate": "1980-02-03",
              "generalPractitioner": [{"reference": f"Practitioner/{record['practitioner']}"}]},
        headers=a_writes,
    )  # fmt: skip
    assert updated.status_code == 200, updated.text
    client_id = public_client(store, "launch/patient patient/*.cruds")
    email = unique_email("registered")
    admin.create_account(
        accounts(store), email=email, password=PASSWORD, kind="patient", fhir_user=f"Patient/{patient}"
    )
    verifier, challenge = pkce()
    browser = Browser(guarded)
    browser.open("/auth/authorize", authorize_params(client_id, "launch/patient patient/*.cruds", challenge))
    own = bearer(
        exchange(guarded, client_id, login_and_approve(browser, email)["code"], verifier).json()["access_token"]
    )
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "patient": {"reference": f"Patient/{patient}"},
        "managingOrganization": {"reference": f"Organization/{clinic_b}"},
        "period": {"start": "2020-01-01"},
    }
    registered = _post(guarded, episode, own)["id"]
    b_record = _post(guarded, _observation(patient, record["marker"]), b_writes)["id"]

    b_reads = bearer(backend_token(guarded, store, "system/*.rs", clinic=clinic_b))
    response = _everything(guarded, patient, b_reads)
    assert response.status_code == 200, response.text
    bundle = response.json()
    assert _entries(bundle) == {("Patient", patient), ("EpisodeOfCare", registered), ("Observation", b_record)}
    shown = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient")
    assert "birthDate" not in shown and "generalPractitioner" not in shown
    assert "1980-02-03" not in response.text and record["practitioner"] not in response.text
    assert record["observations"][0] not in response.text and record["encounter"] not in response.text
