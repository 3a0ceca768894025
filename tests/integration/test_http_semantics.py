"""The REST core's HTTP semantics (R4 http.html): headers, conditional interactions, Prefer, formats,
`_summary`/`_elements`, errors, `$validate`, the CapabilityStatement and the operational endpoints.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any

import pytest
from lxml import etree
from starlette.testclient import TestClient

from tests.conftest import FHIR_JSON, SHARED

SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")
FHIR_NS = "{http://hl7.org/fhir}"
TYPE_INTERACTIONS = {"read", "vread", "update", "patch", "delete", "history-instance", "history-type", "create"}


# --- helpers ------------------------------------------------------------------------------------


def _codes(response) -> list[str]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return [issue["details"]["coding"][0]["code"] for issue in body["issue"]]


def _identifier() -> dict[str, str]:
    return {"system": "urn:test:http", "value": str(uuid.uuid4())}


def _token(identifier: dict[str, str]) -> str:
    return f"identifier={identifier['system']}|{identifier['value']}"


def _patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [_identifier()], "name": [{"family": "Chalmers"}], **fields}


def _create(client, resource: dict[str, Any] | None = None) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.post(
        f"/fhir/{(resource or {}).get('resourceType', 'Patient')}", json=resource or _patient(), headers=FHIR_JSON
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def _put(client, resource: dict[str, Any], **headers: str):  # type: ignore[no-untyped-def]
    url = f"/fhir/{resource['resourceType']}/{resource['id']}"
    return client.put(url, json=resource, headers={**FHIR_JSON, **headers})


def _lastupdated(resource: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(resource["meta"]["lastUpdated"].replace("Z", "+00:00"))


def _assert_version_headers(response, resource: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    assert response.headers["etag"] == f'W/"{resource["meta"]["versionId"]}"'
    last_modified = response.headers["last-modified"]
    assert last_modified.endswith(" GMT")
    assert parsedate_to_datetime(last_modified) == _lastupdated(resource).replace(microsecond=0)


def _tags(resource: dict[str, Any]) -> set[tuple[str, str]]:
    return {(tag.get("system"), tag.get("code")) for tag in resource.get("meta", {}).get("tag", [])}


def _media_type(response) -> str:  # type: ignore[no-untyped-def]
    return str(response.headers["content-type"].split(";")[0].strip())


def _xml_root(response) -> etree._Element:  # type: ignore[no-untyped-def]
    return etree.fromstring(response.content)


# --- ETag, Last-Modified, Location --------------------------------------------------------------


def test_create_read_update_carry_etag_last_modified_and_location(client):
    created = client.post("/fhir/Patient", json=_patient(gender="male"), headers=FHIR_JSON)
    assert created.status_code == 201
    body = created.json()
    resource_id = body["id"]
    _assert_version_headers(created, body)
    assert body["meta"]["versionId"] == "1"
    assert created.headers["location"] == f"http://127.0.0.1/fhir/Patient/{resource_id}/_history/1"

    read = client.get(f"/fhir/Patient/{resource_id}", headers=FHIR_JSON)
    assert read.status_code == 200
    assert read.json() == body
    _assert_version_headers(read, body)

    updated = _put(client, {**body, "gender": "female"})
    assert updated.status_code == 200
    new = updated.json()
    assert new["meta"]["versionId"] == "2"
    assert new["gender"] == "female"
    _assert_version_headers(updated, new)
    assert _lastupdated(new) >= _lastupdated(body)


def test_client_supplied_id_and_meta_on_create_are_replaced(client):
    sent = _patient(id="my-own-id", meta={"versionId": "42", "lastUpdated": "2001-01-01T00:00:00Z"})
    created = _create(client, sent)
    assert created["id"] != "my-own-id"
    uuid.UUID(created["id"])
    assert created["meta"]["versionId"] == "1"
    assert _lastupdated(created) > datetime(2020, 1, 1, tzinfo=UTC)


# --- If-Match -----------------------------------------------------------------------------------


def test_if_match_on_update(client):
    body = _create(client)
    stale = _put(client, {**body, "active": True}, **{"If-Match": 'W/"2"'})
    assert stale.status_code == 412
    assert _codes(stale) == ["version-mismatch"]
    assert client.get(f"/fhir/Patient/{body['id']}").json()["meta"]["versionId"] == "1"

    ok = _put(client, {**body, "active": True}, **{"If-Match": 'W/"1"'})
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"2"'

    replayed = _put(client, {**body, "active": False}, **{"If-Match": 'W/"1"'})
    assert replayed.status_code == 412


def test_if_match_on_delete(client):
    body = _create(client)
    stale = client.delete(f"/fhir/Patient/{body['id']}", headers={"If-Match": 'W/"5"'})
    assert stale.status_code == 412
    assert _codes(stale) == ["version-mismatch"]
    assert client.get(f"/fhir/Patient/{body['id']}").status_code == 200
    assert client.delete(f"/fhir/Patient/{body['id']}", headers={"If-Match": 'W/"1"'}).status_code == 204
    assert client.get(f"/fhir/Patient/{body['id']}").status_code == 410


def test_malformed_if_match_is_400(client):
    body = _create(client)
    response = _put(client, body, **{"If-Match": "yesterday"})
    assert response.status_code == 400
    assert _codes(response) == ["if-match-invalid"]


# --- conditional read ---------------------------------------------------------------------------


def test_if_none_match_gives_304_for_the_current_version_and_200_when_stale(client):
    body = _create(client)
    url = f"/fhir/Patient/{body['id']}"
    not_modified = client.get(url, headers={"If-None-Match": 'W/"1"'})
    assert not_modified.status_code == 304
    assert not_modified.content == b""
    assert not_modified.headers["etag"] == 'W/"1"'

    assert client.get(url, headers={"If-None-Match": 'W/"0", W/"1"'}).status_code == 304
    assert client.get(url, headers={"If-None-Match": "*"}).status_code == 304

    _put(client, {**body, "active": True})
    stale = client.get(url, headers={"If-None-Match": 'W/"1"'})
    assert stale.status_code == 200
    assert stale.json()["meta"]["versionId"] == "2"
    assert stale.headers["etag"] == 'W/"2"'


def test_if_modified_since(client):
    body = _create(client)
    url = f"/fhir/Patient/{body['id']}"
    last_modified = client.get(url).headers["last-modified"]
    moment = parsedate_to_datetime(last_modified)

    for since in (last_modified, format_datetime(moment + timedelta(hours=1), usegmt=True)):
        response = client.get(url, headers={"If-Modified-Since": since})
        assert response.status_code == 304, since
        assert response.content == b""
        assert response.headers["etag"] == 'W/"1"'

    for since in (format_datetime(moment - timedelta(seconds=1), usegmt=True), "Sat, 01 Jan 2000 00:00:00 GMT"):
        response = client.get(url, headers={"If-Modified-Since": since})
        assert response.status_code == 200, since
        assert response.json()["id"] == body["id"]

    # an unparseable date is ignored (RFC 9110 13.1.3)
    assert client.get(url, headers={"If-Modified-Since": "last tuesday"}).status_code == 200


def test_if_none_match_takes_precedence_over_if_modified_since(client):
    body = _create(client)
    url = f"/fhir/Patient/{body['id']}"
    future = format_datetime(datetime.now(UTC) + timedelta(days=1), usegmt=True)
    response = client.get(url, headers={"If-None-Match": 'W/"9"', "If-Modified-Since": future})
    assert response.status_code == 200


# --- Prefer -------------------------------------------------------------------------------------


def test_prefer_return_on_create(client):
    minimal = client.post("/fhir/Patient", json=_patient(), headers={**FHIR_JSON, "Prefer": "return=minimal"})
    assert minimal.status_code == 201
    assert minimal.content == b""
    assert minimal.headers["etag"] == 'W/"1"'
    assert "last-modified" in minimal.headers
    location = minimal.headers["location"]
    assert client.get(location.split("/_history")[0]).status_code == 200

    representation = client.post(
        "/fhir/Patient", json=_patient(gender="other"), headers={**FHIR_JSON, "Prefer": "return=representation"}
    )
    assert representation.status_code == 201
    assert representation.json()["gender"] == "other"
    assert representation.headers["location"].endswith(f"/Patient/{representation.json()['id']}/_history/1")

    outcome = client.post("/fhir/Patient", json=_patient(), headers={**FHIR_JSON, "Prefer": "return=OperationOutcome"})
    assert outcome.status_code == 201
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert all(issue["severity"] == "information" for issue in outcome.json()["issue"])
    assert outcome.headers["etag"] == 'W/"1"'
    assert "/Patient/" in outcome.headers["location"]


def test_prefer_return_on_update(client):
    body = _create(client)
    minimal = _put(client, {**body, "active": True}, Prefer="return=minimal")
    assert minimal.status_code == 200
    assert minimal.content == b""
    assert minimal.headers["etag"] == 'W/"2"'
    assert "last-modified" in minimal.headers

    representation = _put(client, {**body, "active": False}, Prefer="return=representation")
    assert representation.status_code == 200
    assert representation.json()["active"] is False
    assert representation.json()["meta"]["versionId"] == "3"

    outcome = _put(client, {**body, "active": True}, Prefer="return=OperationOutcome")
    assert outcome.status_code == 200
    assert outcome.json()["resourceType"] == "OperationOutcome"
    assert outcome.headers["etag"] == 'W/"4"'
    assert client.get(f"/fhir/Patient/{body['id']}").json()["meta"]["versionId"] == "4"


# --- formats ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "media_type"),
    [
        ({"_format": "xml"}, "application/fhir+xml"),
        ({"_format": "application/fhir+xml"}, "application/fhir+xml"),
        ({"_format": "application/xml"}, "application/xml"),
        ({"_format": "text/xml"}, "text/xml"),
    ],
)
def test_format_parameter_gives_xml(client, query, media_type):
    body = _create(client, _patient(gender="female"))
    response = client.get(f"/fhir/Patient/{body['id']}", params=query)
    assert response.status_code == 200
    assert _media_type(response) == media_type
    root = _xml_root(response)
    assert root.tag == f"{FHIR_NS}Patient"
    assert root.find(f"{FHIR_NS}id").get("value") == body["id"]
    assert root.find(f"{FHIR_NS}gender").get("value") == "female"


def test_format_with_an_unencoded_plus_is_understood(client):
    """`?_format=application/fhir+xml` as typed in a shell: the `+` arrives as a space."""
    body = _create(client)
    response = client.get(f"/fhir/Patient/{body['id']}?_format=application/fhir+xml")
    assert response.status_code == 200
    assert _media_type(response) == "application/fhir+xml"


@pytest.mark.parametrize("value", ["json", "application/fhir+json", "application/json"])
def test_format_parameter_gives_json(client, value):
    body = _create(client)
    response = client.get(
        f"/fhir/Patient/{body['id']}", params={"_format": value}, headers={"Accept": "application/xml"}
    )
    assert response.status_code == 200
    assert _media_type(response) == ("application/json" if value == "application/json" else "application/fhir+json")
    assert response.json()["id"] == body["id"]


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        ("application/fhir+json", "application/fhir+json"),
        ("application/json", "application/json"),
        ("application/fhir+xml", "application/fhir+xml"),
        ("application/xml", "application/xml"),
        ("*/*", "application/fhir+json"),
        ("application/fhir+json;q=0.5, application/fhir+xml;q=0.9", "application/fhir+xml"),
        ("application/fhir+xml;q=0.4, application/fhir+json", "application/fhir+json"),
        ("application/fhir+json;q=0, application/xml", "application/xml"),
        ("text/html, application/xhtml+xml, application/xml;q=0.9, */*;q=0.8", "application/xml"),
        ("text/html, */*;q=0.8", "application/fhir+json"),
        ("application/fhir+json; fhirVersion=4.0", "application/fhir+json"),
    ],
)
def test_accept_header(client, accept, media_type):
    body = _create(client)
    response = client.get(f"/fhir/Patient/{body['id']}", headers={"Accept": accept})
    assert response.status_code == 200
    assert _media_type(response) == media_type
    if "xml" in media_type:
        assert _xml_root(response).tag == f"{FHIR_NS}Patient"
    else:
        assert response.json()["id"] == body["id"]


def test_no_accept_header_gives_fhir_json(client):
    body = _create(client)
    response = client.get(f"/fhir/Patient/{body['id']}", headers={"Accept": ""})
    assert response.status_code == 200
    assert _media_type(response) == "application/fhir+json"


def test_xml_request_body(client):
    xml = '<Patient xmlns="http://hl7.org/fhir"><gender value="female"/><birthDate value="1970-01-02"/></Patient>'
    response = client.post(
        "/fhir/Patient",
        content=xml.encode(),
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+xml"},
    )
    assert response.status_code == 201
    root = _xml_root(response)
    assert root.find(f"{FHIR_NS}birthDate").get("value") == "1970-01-02"
    stored = client.get(response.headers["location"].split("/_history")[0], headers=FHIR_JSON).json()
    assert stored["gender"] == "female"


def test_pretty(client):
    body = _create(client)
    url = f"/fhir/Patient/{body['id']}"
    compact = client.get(url, headers=FHIR_JSON)
    pretty = client.get(url, params={"_pretty": "true"}, headers=FHIR_JSON)
    assert b"\n" not in compact.content.strip()
    assert b"\n  " in pretty.content
    assert pretty.json() == compact.json()
    pretty_xml = client.get(url, params={"_pretty": "true", "_format": "xml"})
    assert b"\n  <" in pretty_xml.content


def test_unsupported_format_is_406(client):
    body = _create(client)
    response = client.get(f"/fhir/Patient/{body['id']}", params={"_format": "text/csv"})
    assert response.status_code == 406
    assert _media_type(response) == "application/fhir+json"
    assert _codes(response) == ["format-unsupported"]

    response = client.get(f"/fhir/Patient/{body['id']}", headers={"Accept": "text/csv"})
    assert response.status_code == 406
    assert _codes(response) == ["format-not-acceptable"]


def test_unacceptable_format_on_create_stores_nothing(client):
    identifier = _identifier()
    response = client.post(
        "/fhir/Patient", params={"_format": "text/csv"}, json=_patient(identifier=[identifier]), headers=FHIR_JSON
    )
    assert response.status_code == 406
    again = client.post(
        "/fhir/Patient",
        json=_patient(identifier=[identifier]),
        headers={**FHIR_JSON, "If-None-Exist": _token(identifier)},
    )
    assert again.status_code == 201  # nothing was stored by the refused request


def test_errors_follow_the_requested_format(client):
    response = client.get(f"/fhir/Patient/{uuid.uuid4()}", params={"_format": "xml"})
    assert response.status_code == 404
    assert _media_type(response) == "application/fhir+xml"
    root = _xml_root(response)
    assert root.tag == f"{FHIR_NS}OperationOutcome"
    codes = [code.get("value") for code in root.iter(f"{FHIR_NS}code")]
    assert "resource-not-found" in codes


@pytest.mark.parametrize("content_type", ["application/fhir+json; charset=utf-8", "application/json", None])
def test_json_content_types_are_accepted(client, content_type):
    headers = {"Accept": "application/fhir+json"} | ({"Content-Type": content_type} if content_type else {})
    response = client.post("/fhir/Patient", content=json.dumps(_patient()).encode(), headers=headers)
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("content", "code"),
    [(b"{not json", "json-malformed"), (b"", "json-malformed"), (b"[1, 2]", "not-a-resource")],
)
def test_malformed_body_is_400(client, content, code):
    response = client.post("/fhir/Patient", content=content, headers=FHIR_JSON)
    assert response.status_code == 400
    assert _codes(response) == [code]


@pytest.mark.parametrize("method", ["post", "put"])
def test_unsupported_content_type_is_415(client, method):
    body = _create(client)
    payload = json.dumps(body).encode()
    headers = {"Content-Type": "text/plain", "Accept": "application/fhir+json"}
    if method == "post":
        response = client.post("/fhir/Patient", content=payload, headers=headers)
    else:
        response = client.put(f"/fhir/Patient/{body['id']}", content=payload, headers=headers)
    assert response.status_code == 415
    assert _codes(response) == ["media-type-unsupported"]
    assert client.get(f"/fhir/Patient/{body['id']}").json()["meta"]["versionId"] == "1"


# --- _summary and _elements ---------------------------------------------------------------------


def _rich_patient() -> dict[str, Any]:
    return _patient(
        text={"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">Peter Chalmers</div>'},
        gender="male",
        birthDate="1974-12-25",
        maritalStatus={"text": "married"},
        communication=[{"language": {"text": "English"}}],
        contact=[{"name": {"family": "Doe"}}],
    )


def test_summary_true(client):
    body = _create(client, _rich_patient())
    response = client.get(f"/fhir/Patient/{body['id']}", params={"_summary": "true"}, headers=FHIR_JSON)
    assert response.status_code == 200
    summary = response.json()
    for kept in ("resourceType", "id", "meta", "identifier", "name", "gender", "birthDate"):
        assert summary[kept] == body[kept] or kept == "meta", kept
    for dropped in ("text", "maritalStatus", "communication", "contact"):
        assert dropped not in summary, dropped
    assert SUBSETTED in _tags(summary)
    assert summary["meta"]["versionId"] == "1"
    # the stored resource is untouched
    assert SUBSETTED not in _tags(client.get(f"/fhir/Patient/{body['id']}").json())


def test_summary_true_keeps_mandatory_elements(client):
    patient = _create(client)
    observation = _create(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "weight"},
            "subject": {"reference": f"Patient/{patient['id']}"},
            "valueQuantity": {"value": 70, "unit": "kg"},
            "note": [{"text": "after lunch"}],
        },
    )
    summary = client.get(f"/fhir/Observation/{observation['id']}", params={"_summary": "true"}).json()
    assert summary["status"] == "final"
    assert summary["code"] == {"text": "weight"}
    assert summary["valueQuantity"]["value"] == 70
    assert "note" not in summary
    assert SUBSETTED in _tags(summary)

    elements = client.get(f"/fhir/Observation/{observation['id']}", params={"_elements": "note"}).json()
    assert elements["note"] == [{"text": "after lunch"}]
    assert elements["status"] == "final" and elements["code"] == {"text": "weight"}  # mandatory, kept
    assert "valueQuantity" not in elements and "subject" not in elements
    assert SUBSETTED in _tags(elements)

    choice = client.get(f"/fhir/Observation/{observation['id']}", params={"_elements": "value"}).json()
    assert choice["valueQuantity"]["unit"] == "kg"


def test_summary_text(client):
    body = _create(client, _rich_patient())
    text = client.get(f"/fhir/Patient/{body['id']}", params={"_summary": "text"}).json()
    assert text["text"] == body["text"]
    assert text["id"] == body["id"]
    for dropped in ("name", "gender", "identifier", "maritalStatus"):
        assert dropped not in text, dropped
    assert SUBSETTED in _tags(text)


def test_summary_data(client):
    body = _create(client, _rich_patient())
    data = client.get(f"/fhir/Patient/{body['id']}", params={"_summary": "data"}).json()
    assert "text" not in data
    for kept in ("name", "gender", "maritalStatus", "communication", "contact", "identifier"):
        assert data[kept] == body[kept], kept
    assert SUBSETTED in _tags(data)


def test_summary_false_is_the_whole_resource(client):
    body = _create(client, _rich_patient())
    whole = client.get(f"/fhir/Patient/{body['id']}", params={"_summary": "false"}).json()
    assert whole == body


def test_summary_count_on_read_is_400(client):
    body = _create(client)
    response = client.get(f"/fhir/Patient/{body['id']}", params={"_summary": "count"})
    assert response.status_code == 400
    assert _codes(response) == ["summary-invalid"]


def test_elements(client):
    body = _create(client, _rich_patient())
    response = client.get(f"/fhir/Patient/{body['id']}", params={"_elements": "name,gender"})
    assert response.status_code == 200
    shaped = response.json()
    assert shaped["name"] == body["name"]
    assert shaped["gender"] == "male"
    assert shaped["id"] == body["id"]
    for dropped in ("birthDate", "identifier", "text", "maritalStatus", "contact"):
        assert dropped not in shaped, dropped
    assert SUBSETTED in _tags(shaped)


def test_summary_in_xml(client):
    body = _create(client, _rich_patient())
    response = client.get(f"/fhir/Patient/{body['id']}", params={"_summary": "true", "_format": "xml"})
    root = _xml_root(response)
    assert root.find(f"{FHIR_NS}maritalStatus") is None
    assert root.find(f"{FHIR_NS}gender").get("value") == "male"
    codes = [tag.find(f"{FHIR_NS}code").get("value") for tag in root.iter(f"{FHIR_NS}tag")]
    assert "SUBSETTED" in codes


# --- update ------------------------------------------------------------------------------------


def test_update_with_a_different_id_in_the_body_is_400(client):
    body = _create(client)
    response = client.put(f"/fhir/Patient/{body['id']}", json={**body, "id": str(uuid.uuid4())}, headers=FHIR_JSON)
    assert response.status_code == 400
    assert _codes(response) == ["id-mismatch"]
    assert response.json()["issue"][0]["expression"] == ["id"]


def test_update_without_id_is_400(client):
    body = _create(client)
    without = {key: value for key, value in body.items() if key != "id"}
    response = client.put(f"/fhir/Patient/{body['id']}", json=without, headers=FHIR_JSON)
    assert response.status_code == 400
    assert _codes(response) == ["id-missing"]


def test_update_of_an_unknown_id_is_405_since_update_as_create_is_off(client):
    resource_id = str(uuid.uuid4())
    response = _put(client, {**_patient(), "id": resource_id})
    assert response.status_code == 405
    assert _codes(response) == ["update-create-disabled"]
    assert client.get(f"/fhir/Patient/{resource_id}").status_code == 404


def test_update_with_the_wrong_resource_type_is_400(client):
    body = _create(client)
    response = client.put(
        f"/fhir/Patient/{body['id']}", json={"resourceType": "Practitioner", "id": body["id"]}, headers=FHIR_JSON
    )
    assert response.status_code == 400
    assert _codes(response) == ["resource-type-mismatch"]


def test_invalid_update_is_400_with_every_issue_and_changes_nothing(client):
    body = _create(client)
    response = _put(client, {**body, "gender": "robot", "birthDate": "yesterday"})
    assert response.status_code == 400
    expressions = sorted(issue["expression"][0] for issue in response.json()["issue"])
    assert expressions == ["Patient.birthDate", "Patient.gender"]
    assert client.get(f"/fhir/Patient/{body['id']}").json() == body


def test_update_of_a_deleted_resource_revives_it(client):
    body = _create(client, _patient(gender="male"))
    url = f"/fhir/Patient/{body['id']}"
    assert client.delete(url).status_code == 204
    assert client.get(url).status_code == 410

    revived = _put(client, {**body, "gender": "female"})
    assert revived.status_code == 200
    assert revived.json()["meta"]["versionId"] == "3"
    assert revived.headers["etag"] == 'W/"3"'
    read = client.get(url, headers=FHIR_JSON)
    assert read.status_code == 200
    assert read.json()["gender"] == "female"


# --- delete -------------------------------------------------------------------------------------


def test_delete_then_read_is_410_and_delete_again_is_204(client):
    body = _create(client)
    url = f"/fhir/Patient/{body['id']}"
    deleted = client.delete(url)
    assert deleted.status_code == 204
    assert deleted.content == b""

    gone = client.get(url, headers=FHIR_JSON)
    assert gone.status_code == 410
    assert _codes(gone) == ["resource-deleted"]

    assert client.delete(url).status_code == 204
    # deleting again wrote no further version
    history = client.get(f"{url}/_history", headers=FHIR_JSON).json()
    assert len(history["entry"]) == 2


def test_delete_of_an_unknown_id_is_204(client):
    assert client.delete(f"/fhir/Patient/{uuid.uuid4()}").status_code == 204


def test_delete_with_prefer_operation_outcome_is_200(client):
    body = _create(client)
    response = client.delete(
        f"/fhir/Patient/{body['id']}", headers={"Prefer": "return=OperationOutcome", "Accept": "application/fhir+json"}
    )
    assert response.status_code == 200
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert outcome["issue"][0]["severity"] == "information"
    assert client.get(f"/fhir/Patient/{body['id']}").status_code == 410


# --- unknown types and endpoints ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", "/fhir/Patientt/1"),
        ("post", "/fhir/Patientt"),
        ("put", "/fhir/Patientt/1"),
        ("delete", "/fhir/Patientt/1"),
        ("get", "/fhir/patient/1"),
        ("get", "/fhir/Patientt/1/_history/1"),
    ],
)
def test_unknown_resource_type_is_404(client, method, url):
    kwargs: dict[str, Any] = {"headers": FHIR_JSON}
    if method in ("post", "put"):
        kwargs["json"] = {"resourceType": "Patient", "id": "1"}
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == 404
    assert _codes(response) == ["resource-type-unknown"]


def test_read_of_an_unknown_id_is_404(client):
    response = client.get(f"/fhir/Patient/{uuid.uuid4()}", headers=FHIR_JSON)
    assert response.status_code == 404
    assert _codes(response) == ["resource-not-found"]


# --- conditional create, update, delete ---------------------------------------------------------


def test_conditional_create(client):
    identifier = _identifier()
    headers = {**FHIR_JSON, "If-None-Exist": _token(identifier)}
    first = client.post("/fhir/Patient", json=_patient(identifier=[identifier]), headers=headers)
    assert first.status_code == 201
    second = client.post("/fhir/Patient", json=_patient(identifier=[identifier], gender="female"), headers=headers)
    assert second.status_code == 200
    assert second.json()["id"] == first.json()["id"]
    assert second.json()["meta"]["versionId"] == "1"
    assert "gender" not in second.json()  # the existing resource, not the one posted


def test_conditional_create_with_two_matches_is_412(client):
    identifier = _identifier()
    for _ in range(2):
        _create(client, _patient(identifier=[identifier]))
    response = client.post(
        "/fhir/Patient",
        json=_patient(identifier=[identifier]),
        headers={**FHIR_JSON, "If-None-Exist": _token(identifier)},
    )
    assert response.status_code == 412
    assert _codes(response) == ["multiple-matches"]


def test_conditional_create_matches_identifier_value_only_and_id(client):
    identifier = _identifier()
    first = _create(client, _patient(identifier=[identifier]))
    by_value = client.post(
        "/fhir/Patient",
        json=_patient(identifier=[identifier]),
        headers={**FHIR_JSON, "If-None-Exist": f"identifier={identifier['value']}"},
    )
    assert (by_value.status_code, by_value.json()["id"]) == (200, first["id"])
    by_id = client.post("/fhir/Patient", json=_patient(), headers={**FHIR_JSON, "If-None-Exist": f"_id={first['id']}"})
    assert (by_id.status_code, by_id.json()["id"]) == (200, first["id"])


def test_conditional_create_ignores_a_deleted_match(client):
    identifier = _identifier()
    deleted = _create(client, _patient(identifier=[identifier]))
    assert client.delete(f"/fhir/Patient/{deleted['id']}").status_code == 204
    response = client.post(
        "/fhir/Patient",
        json=_patient(identifier=[identifier]),
        headers={**FHIR_JSON, "If-None-Exist": _token(identifier)},
    )
    assert response.status_code == 201
    assert response.json()["id"] != deleted["id"]


def test_conditional_update(client):
    identifier = _identifier()
    url = f"/fhir/Patient?{_token(identifier)}"

    created = client.put(url, json=_patient(identifier=[identifier], gender="male"), headers=FHIR_JSON)
    assert created.status_code == 201
    resource_id = created.json()["id"]
    assert created.headers["location"].endswith(f"/Patient/{resource_id}/_history/1")

    updated = client.put(url, json=_patient(identifier=[identifier], gender="female"), headers=FHIR_JSON)
    assert updated.status_code == 200
    assert updated.json()["id"] == resource_id
    assert updated.json()["meta"]["versionId"] == "2"
    assert client.get(f"/fhir/Patient/{resource_id}").json()["gender"] == "female"

    _create(client, _patient(identifier=[identifier]))
    ambiguous = client.put(url, json=_patient(identifier=[identifier], gender="other"), headers=FHIR_JSON)
    assert ambiguous.status_code == 412
    assert _codes(ambiguous) == ["multiple-matches"]
    assert client.get(f"/fhir/Patient/{resource_id}").json()["gender"] == "female"


def test_conditional_update_with_a_conflicting_body_id_is_400(client):
    identifier = _identifier()
    _create(client, _patient(identifier=[identifier]))
    response = client.put(
        f"/fhir/Patient?{_token(identifier)}",
        json={**_patient(identifier=[identifier]), "id": str(uuid.uuid4())},
        headers=FHIR_JSON,
    )
    assert response.status_code == 400
    assert _codes(response) == ["id-mismatch"]


def test_conditional_update_without_match_but_with_an_id_is_405(client):
    """http.html#cond-update: no match and an id given is update-as-create, which this server refuses."""
    identifier = _identifier()
    response = client.put(
        f"/fhir/Patient?{_token(identifier)}",
        json={**_patient(identifier=[identifier]), "id": str(uuid.uuid4())},
        headers=FHIR_JSON,
    )
    assert response.status_code == 405
    assert _codes(response) == ["update-create-disabled"]


def test_conditional_update_by_id(client):
    body = _create(client)
    response = client.put(f"/fhir/Patient?_id={body['id']}", json={**body, "active": True}, headers=FHIR_JSON)
    assert response.status_code == 200
    assert response.json()["id"] == body["id"]
    assert response.json()["meta"]["versionId"] == "2"


def test_conditional_delete(client):
    identifier = _identifier()
    target = _create(client, _patient(identifier=[identifier]))
    bystander = _create(client)
    response = client.delete(f"/fhir/Patient?{_token(identifier)}")
    assert response.status_code == 204
    assert client.get(f"/fhir/Patient/{target['id']}").status_code == 410
    assert client.get(f"/fhir/Patient/{bystander['id']}").status_code == 200

    twice = _identifier()
    first, second = (_create(client, _patient(identifier=[twice])) for _ in range(2))
    ambiguous = client.delete(f"/fhir/Patient?{_token(twice)}")
    assert ambiguous.status_code == 412
    assert _codes(ambiguous) == ["multiple-matches"]
    assert client.get(f"/fhir/Patient/{first['id']}").status_code == 200
    assert client.get(f"/fhir/Patient/{second['id']}").status_code == 200


def test_conditional_delete_without_criteria_is_400(client):
    response = client.delete("/fhir/Patient")
    assert response.status_code == 400
    assert _codes(response) == ["criteria-missing"]


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("put", "/fhir/Patient?colour=x"),
        ("delete", "/fhir/Patient?colour=x"),
        ("post", "/fhir/Patient"),  # If-None-Exist: colour=x
    ],
)
def test_conditional_with_an_unknown_parameter_is_400(client, method, url):
    if method == "post":
        response = client.post(url, json=_patient(), headers={**FHIR_JSON, "If-None-Exist": "colour=x"})
    elif method == "put":
        response = client.put(url, json=_patient(), headers=FHIR_JSON)
    else:
        response = client.delete(url)
    assert response.status_code == 400
    assert _codes(response) == ["search-parameter-unknown"]
    assert response.json()["issue"][0]["expression"] == ["colour"]


def test_conditional_update_matches_on_any_search_parameter(client):
    family = f"Cond{uuid.uuid4().hex[:10]}"
    body = {"resourceType": "Patient", "name": [{"family": family}], "birthDate": "1960-05-05"}
    created = client.put(f"/fhir/Patient?family={family}&birthdate=1960", json=body, headers=FHIR_JSON)
    assert created.status_code == 201
    again = client.put(
        f"/fhir/Patient?family={family}&birthdate=1960", json={**body, "active": True}, headers=FHIR_JSON
    )
    assert again.status_code == 200
    assert again.json()["id"] == created.json()["id"]
    assert again.json()["active"] is True


# --- $validate ----------------------------------------------------------------------------------


def _information_only(response) -> bool:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    return all(issue["severity"] in ("information", "warning") for issue in outcome["issue"])


def test_validate_type_level(client):
    valid = client.post("/fhir/Patient/$validate", json=_patient(gender="male"), headers=FHIR_JSON)
    assert _information_only(valid)
    assert valid.json()["issue"][0]["severity"] == "information"

    invalid = client.post(
        "/fhir/Patient/$validate", json=_patient(gender="robot", favouriteColour="blue"), headers=FHIR_JSON
    )
    assert invalid.status_code == 200
    issues = invalid.json()["issue"]
    assert {issue["severity"] for issue in issues} == {"error"}
    assert sorted(issue["expression"][0] for issue in issues) == ["Patient.favouriteColour", "Patient.gender"]


def test_validate_stores_nothing(client):
    identifier = _identifier()
    client.post("/fhir/Patient/$validate", json=_patient(identifier=[identifier]), headers=FHIR_JSON)
    created = client.post(
        "/fhir/Patient",
        json=_patient(identifier=[identifier]),
        headers={**FHIR_JSON, "If-None-Exist": _token(identifier)},
    )
    assert created.status_code == 201


def test_validate_instance_level(client):
    body = _create(client)
    assert _information_only(client.get(f"/fhir/Patient/{body['id']}/$validate", headers=FHIR_JSON))
    unknown = client.get(f"/fhir/Patient/{uuid.uuid4()}/$validate", headers=FHIR_JSON)
    assert unknown.status_code == 404


def test_validate_parameters_with_mode_update(client):
    body = _create(client)

    def parameters(resource: dict[str, Any]) -> dict[str, Any]:
        return {
            "resourceType": "Parameters",
            "parameter": [{"name": "mode", "valueCode": "update"}, {"name": "resource", "resource": resource}],
        }

    url = f"/fhir/Patient/{body['id']}/$validate"
    ok = client.post(url, json=parameters({**body, "gender": "female"}), headers=FHIR_JSON)
    assert _information_only(ok)

    wrong_id = client.post(url, json=parameters({**body, "id": "another"}), headers=FHIR_JSON)
    assert wrong_id.status_code == 200
    assert "id-mismatch" in _codes(wrong_id)

    invalid = client.post(url, json=parameters({**body, "gender": "robot"}), headers=FHIR_JSON)
    assert [issue["expression"] for issue in invalid.json()["issue"]] == [["Patient.gender"]]
    assert invalid.json()["issue"][0]["severity"] == "error"


def test_validate_with_an_unknown_mode_is_400(client):
    response = client.post("/fhir/Patient/$validate?mode=sideways", json=_patient(), headers=FHIR_JSON)
    assert response.status_code == 400
    assert _codes(response) == ["validate-mode-invalid"]


# --- operational endpoints and request ids ------------------------------------------------------


def test_health_and_readiness(client):
    for url in ("/healthz", "/readyz"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert "x-request-id" in response.headers


def test_every_response_carries_a_request_id(client):
    body = _create(client)
    url = f"/fhir/Patient/{body['id']}"
    responses = [
        client.get(url),
        client.get(url, headers={"If-None-Match": 'W/"1"'}),  # 304
        client.get(f"/fhir/Patient/{uuid.uuid4()}"),  # 404
        client.get(url, params={"_format": "text/csv"}),  # 406
        client.get("/fhir/metadata"),
        client.get("/no/such/endpoint"),
        client.delete(url),  # 204
    ]
    ids = [response.headers.get("x-request-id") for response in responses]
    assert all(ids), ids
    assert len(set(ids)) == len(ids)


def test_incoming_request_id_is_echoed(client):
    response = client.get("/fhir/metadata", headers={"X-Request-ID": "abc123"})
    assert response.headers["x-request-id"] == "abc123"
    error = client.get(f"/fhir/Patient/{uuid.uuid4()}", headers={"X-Request-ID": "abc123"})
    assert error.status_code == 404
    assert error.headers["x-request-id"] == "abc123"


def test_unsafe_incoming_request_id_is_replaced(client):
    response = client.get("/healthz", headers={"X-Request-ID": "abc 123\\n<script>"})
    assert response.headers["x-request-id"] not in ("", "abc 123\\n<script>")
    assert response.headers["x-request-id"].replace("-", "").isalnum()


def test_unexpected_error_leaks_no_traceback(app, monkeypatch):
    from fhir_server.interactions import read

    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("SECRET-internal-detail")

    monkeypatch.setattr(read, "read", explode)
    raw = TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 40001), raise_server_exceptions=False)
    response = raw.get(f"/fhir/Patient/{uuid.uuid4()}", headers={**FHIR_JSON, "X-Request-ID": "boom42"})
    assert response.status_code == 500
    assert _codes(response) == ["internal-error"]
    assert "SECRET" not in response.text
    assert "Traceback" not in response.text and "RuntimeError" not in response.text
    assert response.headers["x-request-id"] == "boom42"
    assert "boom42" in response.json()["issue"][0]["details"]["text"]


# --- CapabilityStatement ------------------------------------------------------------------------


def _r4_resource_types() -> set[str]:
    schema = json.loads((SHARED / "fhir-r4" / "fhir.schema.json").read_text())
    return set(schema["discriminator"]["mapping"])


def test_metadata(client):
    response = client.get("/fhir/metadata", headers={"Accept": "application/fhir+json"})
    assert response.status_code == 200
    statement = response.json()
    assert statement["resourceType"] == "CapabilityStatement"
    assert statement["fhirVersion"] == "4.0.1"
    assert statement["kind"] == "instance"
    assert {"json", "xml"} <= set(statement["format"]) or {"application/fhir+json", "application/fhir+xml"} <= set(
        statement["format"]
    )
    assert "application/json-patch+json" in statement["patchFormat"]

    (rest,) = statement["rest"]
    assert rest["mode"] == "server"
    assert {"transaction", "batch", "history-system"} <= {i["code"] for i in rest["interaction"]}
    resources = {entry["type"]: entry for entry in rest["resource"]}
    assert set(resources) == _r4_resource_types()
    for kind, entry in resources.items():
        assert entry["updateCreate"] is False, kind
        interactions = {i["code"] for i in entry["interaction"]}
        # AuditEvent is recorded by the server only: read-only (tests/integration/test_audit.py)
        writes = {"create", "update", "patch", "delete"} if kind == "AuditEvent" else set()
        assert interactions >= TYPE_INTERACTIONS - writes and not interactions & writes, kind
        assert "search-type" in interactions, kind
        assert any(param["name"] == "_id" for param in entry["searchParam"]), kind
        assert entry["versioning"] in ("versioned", "versioned-update")
        assert entry["readHistory"] is True
    validate_ops = [op for op in resources["Patient"].get("operation", []) if op["name"] == "validate"]
    assert validate_ops and validate_ops[0]["definition"].endswith("Resource-validate")


def test_metadata_in_xml(client):
    response = client.get("/fhir/metadata", params={"_format": "xml"})
    assert response.status_code == 200
    root = _xml_root(response)
    assert root.tag == f"{FHIR_NS}CapabilityStatement"
    assert root.find(f"{FHIR_NS}fhirVersion").get("value") == "4.0.1"


def test_metadata_validates(client):
    statement = client.get("/fhir/metadata", headers=FHIR_JSON).json()
    response = client.post("/fhir/CapabilityStatement/$validate", json=statement, headers=FHIR_JSON)
    assert response.status_code == 200
    errors = [issue for issue in response.json()["issue"] if issue["severity"] in ("error", "fatal")]
    assert errors == []


def test_if_match_star_updates_any_current_version(client):
    created = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()
    body = {"resourceType": "Patient", "id": created["id"], "active": True}
    updated = client.put(f"/fhir/Patient/{created['id']}", json=body, headers={**FHIR_JSON, "If-Match": "*"})
    assert updated.status_code == 200
    assert updated.headers["etag"] == 'W/"2"'


def test_history_refuses_summary_rather_than_ignoring_it(client):
    response = client.get("/fhir/Patient/_history", params={"_summary": "true"}, headers=FHIR_JSON)
    assert response.status_code == 400
    assert response.json()["issue"][0]["details"]["coding"][0]["code"] == "history-parameter-unknown"
