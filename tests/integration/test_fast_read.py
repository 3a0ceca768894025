"""The lean read path answers exactly as the routed path does, and hands everything else over."""

from __future__ import annotations

from tests.conftest import FHIR_JSON


def _create(client) -> str:
    body = {"resourceType": "Patient", "name": [{"family": "Fast"}], "birthDate": "1970-01-01"}
    return str(client.post("/fhir/Patient", json=body, headers=FHIR_JSON).json()["id"])


def test_plain_read_matches_the_routed_read(client):
    patient_id = _create(client)
    fast = client.get(f"/fhir/Patient/{patient_id}")
    routed = client.get(f"/fhir/Patient/{patient_id}", params={"_format": "json"})
    assert fast.status_code == routed.status_code == 200
    assert fast.content == routed.content
    for header in ("content-type", "etag", "last-modified"):
        assert fast.headers[header] == routed.headers[header]
    assert fast.headers["x-request-id"]


def test_misses_and_other_requests_get_the_full_answers(client):
    patient_id = _create(client)
    assert client.get("/fhir/Patient/no-such-id").json()["issue"][0]["details"]["coding"][0]["code"] == (
        "resource-not-found"
    )
    etag = client.get(f"/fhir/Patient/{patient_id}").headers["etag"]
    assert client.get(f"/fhir/Patient/{patient_id}", headers={"If-None-Match": etag}).status_code == 304
    xml = client.get(f"/fhir/Patient/{patient_id}", headers={"Accept": "application/fhir+xml"})
    assert xml.headers["content-type"].startswith("application/fhir+xml")
    generic = client.get(f"/fhir/Patient/{patient_id}", headers={"Accept": "application/json"})
    assert generic.headers["content-type"].startswith("application/json")
    client.delete(f"/fhir/Patient/{patient_id}")
    assert client.get(f"/fhir/Patient/{patient_id}").status_code == 410


def test_a_caller_the_policy_refuses_is_refused_on_the_fast_path_too(app):
    from starlette.testclient import TestClient

    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 1)) as local:
        patient_id = _create(local)
    with TestClient(app, base_url="http://127.0.0.1", client=("192.0.2.7", 1)) as remote:
        response = remote.get(f"/fhir/Patient/{patient_id}")
    assert response.status_code == 401
