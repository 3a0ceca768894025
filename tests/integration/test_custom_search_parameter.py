"""Custom SearchParameters (search.html#custom): usable for new writes at once, existing data
reindexed by a background job whose progress can be read, listed in the CapabilityStatement when
done, and refused when they redefine an official parameter or cannot be evaluated."""

from __future__ import annotations

import time
import uuid

from tests.conftest import FHIR_JSON


def _patient(nickname: str) -> dict:
    return {"resourceType": "Patient", "name": [{"use": "nickname", "given": [nickname]}, {"family": "Formal"}]}


def _definition(code: str) -> dict:
    return {
        "resourceType": "SearchParameter",
        "url": f"http://example.org/SearchParameter/{code}",
        "name": code,
        "status": "active",
        "description": "A patient's nickname",
        "code": code,
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.where(use = 'nickname').given",
    }


def _wait_until_done(client, parameter_id: str) -> dict:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = client.get(f"/fhir/SearchParameter/{parameter_id}/$reindex-status").json()
        values = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in status["parameter"]}
        if values["status"] == "done":
            return values
        time.sleep(0.2)
    raise AssertionError(f"reindex did not finish: {values}")


def _ids(response) -> set[str]:
    assert response.status_code == 200, response.text
    return {entry["resource"]["id"] for entry in response.json().get("entry", [])}


def test_a_custom_parameter_indexes_new_writes_at_once_and_old_ones_by_a_job(client):
    code = f"nick{uuid.uuid4().hex[:8]}"
    nickname = f"Zed{uuid.uuid4().hex[:6]}"
    before = client.post("/fhir/Patient", json=_patient(nickname), headers=FHIR_JSON).json()["id"]
    created = client.post("/fhir/SearchParameter", json=_definition(code), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    after = client.post("/fhir/Patient", json=_patient(nickname), headers=FHIR_JSON).json()["id"]
    assert after in _ids(client.get(f"/fhir/Patient?{code}={nickname}"))
    progress = _wait_until_done(client, created.json()["id"])
    assert progress["processed"] >= 2 and progress["usable"] is True
    assert _ids(client.get(f"/fhir/Patient?{code}={nickname}")) == {before, after}
    assert _ids(client.get(f"/fhir/Patient?{code}=Formal")) == set()
    patient = next(r for r in client.get("/fhir/metadata").json()["rest"][0]["resource"] if r["type"] == "Patient")
    assert code in {param["name"] for param in patient["searchParam"]}
    assert client.delete(f"/fhir/SearchParameter/{created.json()['id']}").status_code == 204
    unknown = client.get(f"/fhir/Patient?{code}={nickname}")  # deleting it takes effect at once
    assert unknown.status_code == 400


def test_a_parameter_redefining_an_official_one_is_refused(client):
    definition = {**_definition("birthdate"), "url": f"http://example.org/SearchParameter/{uuid.uuid4().hex}"}
    response = client.post("/fhir/SearchParameter", json=definition, headers=FHIR_JSON)
    assert response.status_code == 422
    codes = [issue["details"]["coding"][0]["code"] for issue in response.json()["issue"]]
    assert codes == ["search-parameter-exists"]


def test_reindex_status_only_exists_on_search_parameters(client):
    patient_id = client.post("/fhir/Patient", json=_patient("x"), headers=FHIR_JSON).json()["id"]
    assert client.get(f"/fhir/Patient/{patient_id}/$reindex-status").status_code == 404
