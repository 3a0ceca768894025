"""patch (R4 http.html#patch): JSON Patch (RFC 6902) and FHIRPath Patch (fhirpatch.html), on both backends.

The patched resource is validated like an update; a failed patch leaves the stored resource as it was.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from tests.conftest import FHIR_JSON

JSON_PATCH = {"Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"}
SYSTEM = "urn:test:patch"


def _codes(response) -> list[str]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return [issue["details"]["coding"][0]["code"] for issue in body["issue"]]


def _create(client, **fields: Any) -> str:  # type: ignore[no-untyped-def]
    body = {
        "resourceType": "Patient",
        "identifier": [{"system": SYSTEM, "value": str(uuid.uuid4())}],
        "active": True,
        "gender": "male",
        "name": [{"family": "Chalmers", "given": ["Peter", "James"]}],
        "telecom": [{"system": "phone", "value": "555-0100"}, {"system": "email", "value": "p@example.org"}],
        **fields,
    }
    response = client.post("/fhir/Patient", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _read(client, resource_id: str) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    response = client.get(f"/fhir/Patient/{resource_id}", headers=FHIR_JSON)
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _json_patch(client, resource_id: str, operations: Any, **headers: str):  # type: ignore[no-untyped-def]
    return client.patch(f"/fhir/Patient/{resource_id}", json=operations, headers={**JSON_PATCH, **headers})


def _fhirpath_patch(client, resource_id: str, *operations: dict[str, Any], **headers: str):  # type: ignore[no-untyped-def]
    body = {"resourceType": "Parameters", "parameter": list(operations)}
    return client.patch(f"/fhir/Patient/{resource_id}", json=body, headers={**FHIR_JSON, **headers})


def _op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    """One FHIRPath Patch operation; `parts` maps a part name to its value[x] dict or list of sub-parts."""
    part: list[dict[str, Any]] = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        part.append({"name": name, "part": value} if isinstance(value, list) else {"name": name, **value})
    return {"name": "operation", "part": part}


def _assert_unchanged(client, resource_id: str, before: dict[str, Any]) -> None:  # type: ignore[no-untyped-def]
    after = _read(client, resource_id)
    assert after == before
    assert after["meta"]["versionId"] == "1"


def _assert_new_version(response, version: int) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["meta"]["versionId"] == str(version)
    assert response.headers["etag"] == f'W/"{version}"'
    assert "last-modified" in response.headers
    return body  # type: ignore[no-any-return]


# --- JSON Patch ---------------------------------------------------------------------------------


def test_json_patch_replace_add_remove(client):
    resource_id = _create(client)
    response = _json_patch(
        client,
        resource_id,
        [
            {"op": "replace", "path": "/gender", "value": "female"},
            {"op": "add", "path": "/birthDate", "value": "1974-12-25"},
            {"op": "add", "path": "/name/0/given/-", "value": "Jim"},
            {"op": "remove", "path": "/active"},
            {"op": "remove", "path": "/telecom/0"},
        ],
    )
    body = _assert_new_version(response, 2)
    assert body["gender"] == "female"
    assert body["birthDate"] == "1974-12-25"
    assert body["name"][0]["given"] == ["Peter", "James", "Jim"]
    assert "active" not in body
    assert body["telecom"] == [{"system": "email", "value": "p@example.org"}]

    stored = _read(client, resource_id)
    assert stored == body
    history = client.get(f"/fhir/Patient/{resource_id}/_history", headers=FHIR_JSON).json()
    assert [entry["request"]["method"] for entry in history["entry"]] == ["PATCH", "POST"]


def test_json_patch_test_operation_guards_the_patch(client):
    resource_id = _create(client)
    ok = _json_patch(
        client,
        resource_id,
        [{"op": "test", "path": "/gender", "value": "male"}, {"op": "replace", "path": "/gender", "value": "other"}],
    )
    assert _assert_new_version(ok, 2)["gender"] == "other"

    before = _read(client, resource_id)
    failed = _json_patch(
        client,
        resource_id,
        [{"op": "test", "path": "/gender", "value": "male"}, {"op": "replace", "path": "/gender", "value": "female"}],
    )
    assert failed.status_code in (400, 422)
    assert _codes(failed) == ["patch-invalid"]
    assert _read(client, resource_id) == before


@pytest.mark.parametrize(
    "document",
    [
        [{"op": "remove", "path": "/birthDate"}],  # nothing there to remove
        [{"op": "replace", "path": "/name/5/family", "value": "X"}],  # no such list item
        [{"op": "frobnicate", "path": "/gender"}],  # unknown op
        {"op": "replace", "path": "/gender", "value": "female"},  # not an array
    ],
)
def test_json_patch_that_cannot_be_applied_is_rejected_and_changes_nothing(client, document):
    resource_id = _create(client)
    before = _read(client, resource_id)
    response = _json_patch(client, resource_id, document)
    assert response.status_code == 400
    assert _codes(response) == ["patch-invalid"]
    _assert_unchanged(client, resource_id, before)


def test_json_patch_producing_an_invalid_resource_is_400_and_changes_nothing(client):
    resource_id = _create(client)
    before = _read(client, resource_id)
    response = _json_patch(
        client,
        resource_id,
        [
            {"op": "replace", "path": "/gender", "value": "robot"},
            {"op": "add", "path": "/favouriteColour", "value": "blue"},
        ],
    )
    assert response.status_code == 400
    issues = response.json()["issue"]
    assert len(issues) == 2
    assert all(issue["severity"] == "error" for issue in issues)
    assert {issue["expression"][0] for issue in issues} == {"Patient.gender", "Patient.favouriteColour"}
    assert set(_codes(response)) == {"schema-code", "schema-unknown-element"}
    _assert_unchanged(client, resource_id, before)


def test_json_patch_if_match(client):
    resource_id = _create(client)
    document = [{"op": "replace", "path": "/gender", "value": "female"}]
    before = _read(client, resource_id)

    stale = _json_patch(client, resource_id, document, **{"If-Match": 'W/"7"'})
    assert stale.status_code == 412
    assert _codes(stale) == ["version-mismatch"]
    _assert_unchanged(client, resource_id, before)

    current = _json_patch(client, resource_id, document, **{"If-Match": 'W/"1"'})
    assert _assert_new_version(current, 2)["gender"] == "female"

    again = _json_patch(client, resource_id, document, **{"If-Match": 'W/"1"'})
    assert again.status_code == 412


@pytest.mark.parametrize(
    "document",
    [
        [{"op": "replace", "path": "/id", "value": "someone-else"}],
        [{"op": "remove", "path": "/id"}],
        [{"op": "replace", "path": "/resourceType", "value": "Practitioner"}],
    ],
)
def test_json_patch_changing_the_identity_is_422(client, document):
    resource_id = _create(client)
    before = _read(client, resource_id)
    response = _json_patch(client, resource_id, document)
    assert response.status_code == 422
    assert _codes(response) == ["patch-changes-identity"]
    _assert_unchanged(client, resource_id, before)


def test_json_patch_cannot_forge_meta_version(client):
    resource_id = _create(client)
    response = _json_patch(client, resource_id, [{"op": "replace", "path": "/meta/versionId", "value": "41"}])
    assert _assert_new_version(response, 2)["meta"]["versionId"] == "2"


def test_json_patch_prefer_minimal(client):
    resource_id = _create(client)
    response = _json_patch(
        client, resource_id, [{"op": "replace", "path": "/gender", "value": "female"}], Prefer="return=minimal"
    )
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["etag"] == 'W/"2"'
    assert _read(client, resource_id)["gender"] == "female"


# --- FHIRPath Patch -----------------------------------------------------------------------------


def test_fhirpath_patch_add(client):
    resource_id = _create(client)
    response = _fhirpath_patch(
        client,
        resource_id,
        _op("add", "Patient", name={"valueString": "birthDate"}, value={"valueDate": "1930-01-01"}),
        _op(
            "add",
            "Patient",
            name={"valueString": "contact"},
            value=[
                {"name": "name", "part": [{"name": "family", "valueString": "Doe"}]},
                {"name": "gender", "valueCode": "female"},
            ],
        ),
        _op("add", "Patient.name[0]", name={"valueString": "given"}, value={"valueString": "Jim"}),
    )
    body = _assert_new_version(response, 2)
    assert body["birthDate"] == "1930-01-01"
    assert body["contact"] == [{"name": {"family": "Doe"}, "gender": "female"}]
    assert body["name"][0]["given"] == ["Peter", "James", "Jim"]
    assert _read(client, resource_id) == body


def test_fhirpath_patch_replace(client):
    resource_id = _create(client, birthDate="1930-01-01", deceasedBoolean=False)
    response = _fhirpath_patch(
        client,
        resource_id,
        _op("replace", "Patient.birthDate", value={"valueDate": "1930-01-02"}),
        _op("replace", "Patient.telecom.where(system = 'phone').value", value={"valueString": "555-0199"}),
        _op("replace", "Patient.name.given[1]", value={"valueString": "Jamie"}),
        _op("replace", "Patient.deceased", value={"valueDateTime": "2020-05-01"}),
    )
    body = _assert_new_version(response, 2)
    assert body["birthDate"] == "1930-01-02"
    assert body["telecom"][0] == {"system": "phone", "value": "555-0199"}
    assert body["name"][0]["given"] == ["Peter", "Jamie"]
    assert body["deceasedDateTime"] == "2020-05-01"
    assert "deceasedBoolean" not in body


def test_fhirpath_patch_delete(client):
    resource_id = _create(client, birthDate="1930-01-01")
    response = _fhirpath_patch(
        client,
        resource_id,
        _op("delete", "Patient.birthDate"),
        _op("delete", "Patient.telecom.where(system = 'email')"),
        _op("delete", "Patient.name[0].given[0]"),
        _op("delete", "Patient.multipleBirth"),  # selects nothing: no change, no error (fhirpatch.html)
    )
    body = _assert_new_version(response, 2)
    assert "birthDate" not in body
    assert body["telecom"] == [{"system": "phone", "value": "555-0100"}]
    assert body["name"][0]["given"] == ["James"]


def test_fhirpath_patch_insert_and_move(client):
    resource_id = _create(client)
    response = _fhirpath_patch(
        client,
        resource_id,
        _op("insert", "Patient.name[0].given", value={"valueString": "First"}, index={"valueInteger": 0}),
        _op("move", "Patient.telecom", source={"valueInteger": 1}, destination={"valueInteger": 0}),
    )
    body = _assert_new_version(response, 2)
    assert body["name"][0]["given"] == ["First", "Peter", "James"]
    assert [item["system"] for item in body["telecom"]] == ["email", "phone"]


@pytest.mark.parametrize(
    "operation",
    [
        _op("replace", "Patient.birthDate", value={"valueDate": "2000-01-01"}),  # selects nothing
        _op("replace", "Patient.telecom.value", value={"valueString": "x"}),  # selects two
        _op("frobnicate", "Patient.gender"),
        _op("add", "Patient"),  # no name, no value
        _op("replace", "Patient.name.where(", value={"valueString": "x"}),
    ],
)
def test_fhirpath_patch_that_cannot_be_applied_is_400_and_changes_nothing(client, operation):
    resource_id = _create(client)
    before = _read(client, resource_id)
    response = _fhirpath_patch(client, resource_id, operation)
    assert response.status_code == 400
    assert _codes(response) == ["patch-invalid"]
    assert response.json()["issue"][0]["expression"] == ["Parameters.parameter[0]"]
    _assert_unchanged(client, resource_id, before)


def test_fhirpath_patch_body_must_be_parameters(client):
    resource_id = _create(client)
    before = _read(client, resource_id)
    response = client.patch(
        f"/fhir/Patient/{resource_id}", json={"resourceType": "Patient", "gender": "female"}, headers=FHIR_JSON
    )
    assert response.status_code == 400
    assert _codes(response) == ["patch-invalid"]
    _assert_unchanged(client, resource_id, before)


def test_fhirpath_patch_producing_an_invalid_resource_is_400_and_changes_nothing(client):
    resource_id = _create(client)
    before = _read(client, resource_id)
    response = _fhirpath_patch(client, resource_id, _op("replace", "Patient.gender", value={"valueCode": "robot"}))
    assert response.status_code == 400
    issues = response.json()["issue"]
    assert [issue["expression"] for issue in issues] == [["Patient.gender"]]
    assert _codes(response) == ["schema-code"]
    _assert_unchanged(client, resource_id, before)


def test_fhirpath_patch_changing_the_id_is_422(client):
    resource_id = _create(client)
    before = _read(client, resource_id)
    response = _fhirpath_patch(client, resource_id, _op("replace", "Patient.id", value={"valueId": "other-id"}))
    assert response.status_code == 422
    assert _codes(response) == ["patch-changes-identity"]
    _assert_unchanged(client, resource_id, before)


def test_fhirpath_patch_if_match(client):
    resource_id = _create(client)
    operation = _op("replace", "Patient.gender", value={"valueCode": "female"})
    stale = _fhirpath_patch(client, resource_id, operation, **{"If-Match": 'W/"2"'})
    assert stale.status_code == 412
    assert _codes(stale) == ["version-mismatch"]
    assert _assert_new_version(_fhirpath_patch(client, resource_id, operation, **{"If-Match": 'W/"1"'}), 2)


def test_fhirpath_patch_in_xml(client):
    resource_id = _create(client)
    body = (
        '<Parameters xmlns="http://hl7.org/fhir"><parameter><name value="operation"/>'
        '<part><name value="type"/><valueCode value="replace"/></part>'
        '<part><name value="path"/><valueString value="Patient.gender"/></part>'
        '<part><name value="value"/><valueCode value="female"/></part>'
        "</parameter></Parameters>"
    )
    response = client.patch(
        f"/fhir/Patient/{resource_id}",
        content=body.encode(),
        headers={"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"},
    )
    assert _assert_new_version(response, 2)["gender"] == "female"


# --- the resource's state -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["json-patch", "fhirpath-patch"])
def test_patch_of_a_deleted_resource_is_410(client, kind):
    resource_id = _create(client)
    assert client.delete(f"/fhir/Patient/{resource_id}").status_code == 204
    if kind == "json-patch":
        response = _json_patch(client, resource_id, [{"op": "replace", "path": "/gender", "value": "female"}])
    else:
        response = _fhirpath_patch(client, resource_id, _op("replace", "Patient.gender", value={"valueCode": "female"}))
    assert response.status_code == 410
    assert _codes(response) == ["resource-deleted"]
    assert client.get(f"/fhir/Patient/{resource_id}").status_code == 410


@pytest.mark.parametrize("kind", ["json-patch", "fhirpath-patch"])
def test_patch_of_an_unknown_id_is_404(client, kind):
    resource_id = str(uuid.uuid4())
    if kind == "json-patch":
        response = _json_patch(client, resource_id, [{"op": "replace", "path": "/gender", "value": "female"}])
    else:
        response = _fhirpath_patch(client, resource_id, _op("replace", "Patient.gender", value={"valueCode": "female"}))
    assert response.status_code == 404
    assert _codes(response) == ["resource-not-found"]


def test_patch_with_an_unsupported_content_type_is_415(client):
    resource_id = _create(client)
    response = client.patch(
        f"/fhir/Patient/{resource_id}",
        content=b'{"gender": "female"}',
        headers={"Content-Type": "application/merge-patch+json", "Accept": "application/fhir+json"},
    )
    assert response.status_code == 415
    assert _codes(response) == ["media-type-unsupported"]
