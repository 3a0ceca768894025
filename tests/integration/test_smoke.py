"""The basic create/read cycle on both backends (the deeper suites build on the same fixtures)."""

from tests.conftest import FHIR_JSON


def test_create_then_read_returns_the_stored_resource(client):
    created = client.post("/fhir/Patient", json={"resourceType": "Patient", "active": True}, headers=FHIR_JSON)
    assert created.status_code == 201
    location = created.headers["location"]
    assert location.startswith("http://127.0.0.1/fhir/Patient/") and location.endswith("/_history/1")
    read = client.get(location.rsplit("/_history", 1)[0])
    assert read.status_code == 200
    assert read.json()["active"] is True
    assert read.headers["etag"] == 'W/"1"'
