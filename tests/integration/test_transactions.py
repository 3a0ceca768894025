"""batch and transaction Bundles posted to the base (R4 http.html#transaction, bundle.html#references).

Transactions are all or nothing: after a failure, the type history since the request is empty and
conditional creates on the entries' identifiers still create. References between entries
(`urn:uuid:`, fullUrl) and conditional references are rewritten to the stored `Type/id`.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import pytest
from starlette.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.model.schema import validate_against_schema
from fhir_server.settings import Settings
from tests.conftest import FHIR_JSON
from tests.integration.helpers import (
    UUID,
    assert_nothing_stored,
    assert_outcome,
    create,
    history_since,
    now_instant,
    outcome_issues,
    read,
)

SYSTEM = "urn:test:transactions"


def _identifier() -> dict[str, str]:
    return {"system": SYSTEM, "value": str(uuid.uuid4())}


def _token(identifier: dict[str, str]) -> str:
    return f"identifier={identifier['system']}|{identifier['value']}"


def _urn() -> str:
    return f"urn:uuid:{uuid.uuid4()}"


def _patient(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Patient", "identifier": [_identifier()], **fields}


def _observation(**fields: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "heart rate"}, **fields}


def _post(resource: dict[str, Any], full_url: str | None = None, **request: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"], **request},
    }
    if full_url:
        entry["fullUrl"] = full_url
    return entry


def _bundle(kind: str, *entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": kind, "entry": list(entries)}


def _submit(client: TestClient, bundle: dict[str, Any], headers: dict[str, str] | None = None) -> Any:
    return client.post("/fhir", json=bundle, headers={**FHIR_JSON, **(headers or {})})


def _ok(response: Any, kind: str, count: int) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == f"{kind}-response"
    assert validate_against_schema(body, "Bundle") == [], body
    entries = body.get("entry", [])
    assert len(entries) == count, body
    return entries  # type: ignore[no-any-return]


def _reference(location: str) -> str:
    """`Patient/<id>` from a response location `Patient/<id>/_history/<n>`."""
    resource_type, resource_id, history, _ = location.split("/")
    assert history == "_history" and UUID.match(resource_id), location
    return f"{resource_type}/{resource_id}"


MINIMAL = {
    "Patient": {"resourceType": "Patient"},
    "Observation": {"resourceType": "Observation", "status": "final", "code": {"text": "probe"}},
    "Encounter": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"}},
}


def _no_match(client: TestClient, resource: dict[str, Any]) -> None:
    """No stored resource carries the identifier: a conditional create on it creates (201)."""
    identifier = resource["identifier"][0]
    probe = {**MINIMAL[resource["resourceType"]], "identifier": [identifier]}
    headers = {"If-None-Exist": _token(identifier), **FHIR_JSON}
    response = client.post(f"/fhir/{resource['resourceType']}", json=probe, headers=headers)
    assert response.status_code == 201, f"{identifier} was stored: {response.text}"


# --- all or nothing -------------------------------------------------------------------------------


def test_transaction_with_an_invalid_last_entry_stores_nothing(client):
    patient, patient_urn = _patient(), _urn()
    encounter = {
        "resourceType": "Encounter",
        "identifier": [_identifier()],
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": patient_urn},
    }
    bundle = _bundle(
        "transaction",
        _post(patient, patient_urn),
        _post(encounter),
        _post(_observation(identifier=[_identifier()], subject={"reference": patient_urn})),
        _post(_observation(identifier=[_identifier()], status="bogus")),
    )
    since = now_instant()
    response = _submit(client, bundle)
    assert_outcome(response, 400, [("schema-code", "Bundle.entry[3].resource.status")])
    assert_nothing_stored(client, since, "Patient", "Encounter", "Observation")
    for entry in bundle["entry"][:3]:
        _no_match(client, entry["resource"])


def test_transaction_failing_while_running_rolls_back_earlier_writes(client):
    """The failing entry runs after two creates (PUT after POST): their writes are undone too."""
    existing = create(client, _patient(active=True))
    patient = _patient()
    stale = {**existing, "active": False}
    bundle = _bundle(
        "transaction",
        {"resource": stale, "request": {"method": "PUT", "url": f"Patient/{existing['id']}", "ifMatch": 'W/"7"'}},
        _post(patient),
        _post(_observation(identifier=[_identifier()])),
    )
    since = now_instant()
    response = _submit(client, bundle)
    assert_outcome(response, 412, [("version-mismatch", "Bundle.entry[0]")])
    assert_nothing_stored(client, since, "Patient", "Observation")
    assert read(client, f"Patient/{existing['id']}")["meta"]["versionId"] == "1"
    _no_match(client, patient)


def test_transaction_with_a_failing_read_rolls_back_its_writes(client):
    patient = _patient()
    missing = f"Patient/{uuid.uuid4()}"
    bundle = _bundle("transaction", {"request": {"method": "GET", "url": missing}}, _post(patient))
    since = now_instant()
    response = _submit(client, bundle)
    assert_outcome(response, 404, [("resource-not-found", "Bundle.entry[0]")])
    assert_nothing_stored(client, since, "Patient")
    _no_match(client, patient)


def test_every_invalid_entry_of_a_transaction_is_named(client):
    bundle = _bundle(
        "transaction",
        _post(_patient(gender="x")),
        _post(_patient()),
        _post(_observation(status="bogus", subject={"reference": "Patient/1"})),
        {"resource": _patient()},
    )
    since = now_instant()
    response = _submit(client, bundle)
    assert response.status_code == 400
    locations = [expression for _, expression in outcome_issues(response.json())]
    assert "Bundle.entry[0].resource.gender" in locations
    assert "Bundle.entry[2].resource.status" in locations
    assert not any(location.startswith("Bundle.entry[1]") for location in locations), locations
    assert_nothing_stored(client, since, "Patient", "Observation")


def test_entry_without_a_request_is_named(client):
    since = now_instant()
    response = _submit(client, _bundle("transaction", _post(_patient()), {"resource": _patient()}))
    assert_outcome(response, 400, [("bundle-request-missing", "Bundle.entry[1].request")])
    assert_nothing_stored(client, since, "Patient")


# --- references between entries -----------------------------------------------------------------


def test_urn_uuid_references_are_rewritten_to_the_new_ids(client):
    patient_urn, encounter_urn = _urn(), _urn()
    encounter = {
        "resourceType": "Encounter",
        "status": "finished",
        "class": {"code": "AMB"},
        "subject": {"reference": patient_urn},
    }
    observation = _observation(
        subject={"reference": patient_urn, "display": "the patient"},
        encounter={"reference": encounter_urn},
        hasMember=[{"reference": "#inner"}],
        contained=[_observation(id="inner", subject={"reference": patient_urn})],
    )
    # The Observation comes first: references may point forward.
    bundle = _bundle("transaction", _post(observation), _post(encounter, encounter_urn), _post(_patient(), patient_urn))
    entries = _ok(_submit(client, bundle), "transaction", 3)
    assert [entry["response"]["status"] for entry in entries] == ["201 Created"] * 3
    observation_ref, encounter_ref, patient_ref = (_reference(e["response"]["location"]) for e in entries)
    assert patient_ref.split("/")[1] != patient_urn.removeprefix("urn:uuid:")
    stored = read(client, observation_ref)
    assert stored["subject"] == {"reference": patient_ref, "display": "the patient"}
    assert stored["encounter"] == {"reference": encounter_ref}
    assert stored["hasMember"] == [{"reference": "#inner"}]
    assert stored["contained"][0]["subject"] == {"reference": patient_ref}
    assert read(client, encounter_ref)["subject"] == {"reference": patient_ref}
    assert entries[0]["resource"] == stored


def test_absolute_full_urls_and_their_relative_form_are_rewritten(client):
    full_url = "http://example.org/fhir/Patient/pat-1"
    observation = _observation(subject={"reference": "Patient/pat-1"}, performer=[{"reference": full_url}])
    entries = _ok(
        _submit(client, _bundle("transaction", _post(_patient(), full_url), _post(observation))), "transaction", 2
    )
    patient_ref = _reference(entries[0]["response"]["location"])
    stored = read(client, _reference(entries[1]["response"]["location"]))
    assert stored["subject"]["reference"] == patient_ref
    assert stored["performer"] == [{"reference": patient_ref}]


def test_urn_uuid_reference_to_no_entry_fails_the_transaction(client):
    since = now_instant()
    bundle = _bundle("transaction", _post(_patient()), _post(_observation(subject={"reference": _urn()})))
    assert_outcome(_submit(client, bundle), 400, [("reference-unresolved", "Bundle.entry[1]")])
    assert_nothing_stored(client, since, "Patient", "Observation")


def test_conditional_reference_resolves_to_the_stored_resource(client):
    patient = create(client, _patient())
    query = f"Patient?{_token(patient['identifier'][0])}"
    bundle = _bundle("transaction", _post(_observation(subject={"reference": query})))
    entries = _ok(_submit(client, bundle), "transaction", 1)
    stored = read(client, _reference(entries[0]["response"]["location"]))
    assert stored["subject"] == {"reference": f"Patient/{patient['id']}"}


@pytest.mark.parametrize("matches", [0, 2])
def test_conditional_reference_matching_none_or_several_is_412(client, matches):
    identifier = _identifier()
    for _ in range(matches):
        create(client, {"resourceType": "Patient", "identifier": [identifier]})
    since = now_instant()
    bundle = _bundle(
        "transaction",
        _post(_patient()),
        _post(_observation(subject={"reference": f"Patient?{_token(identifier)}"})),
    )
    response = _submit(client, bundle)
    assert response.status_code == 412, response.text
    issues = outcome_issues(response.json())
    assert len(issues) == 1 and issues[0][0] == "conditional-reference-unresolved", issues
    assert issues[0][1].startswith("Bundle.entry[1]"), issues
    assert_nothing_stored(client, since, "Patient", "Observation")


# --- processing order and response entries --------------------------------------------------------


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def test_entries_run_in_the_order_http_html_sets_and_answer_in_request_order(client):
    doomed = create(client, _patient(active=True))
    kept = create(client, _patient(active=True))
    changed = {**kept, "active": False}
    new = _patient(gender="female")
    bundle = _bundle(
        "transaction",
        {"request": {"method": "GET", "url": f"Patient/{kept['id']}"}},
        {"resource": changed, "request": {"method": "PUT", "url": f"Patient/{kept['id']}"}},
        _post(new),
        {"request": {"method": "DELETE", "url": f"Patient/{doomed['id']}"}},
    )
    got, put, post, delete = _ok(_submit(client, bundle), "transaction", 4)

    # GET runs last, so it sees the PUT listed after it.
    assert got["response"]["status"] == "200 OK"
    assert got["resource"]["active"] is False and got["resource"]["meta"]["versionId"] == "2"
    assert got["response"]["etag"] == 'W/"2"'
    assert got["response"]["location"] == f"Patient/{kept['id']}/_history/2"

    assert put["response"]["status"] == "200 OK"
    assert put["response"]["location"] == f"Patient/{kept['id']}/_history/2"
    assert put["response"]["etag"] == 'W/"2"'
    assert put["response"]["lastModified"] == got["response"]["lastModified"] == got["resource"]["meta"]["lastUpdated"]

    assert post["response"]["status"] == "201 Created"
    new_ref = _reference(post["response"]["location"])
    assert post["response"]["location"].endswith("/_history/1") and post["response"]["etag"] == 'W/"1"'
    assert (
        post["resource"]["gender"] == "female"
        and post["response"]["lastModified"] == post["resource"]["meta"]["lastUpdated"]
    )

    assert delete["response"]["status"] in ("200 OK", "204 No Content")
    assert delete["response"]["etag"] == 'W/"2"'
    gone = client.get(f"/fhir/Patient/{doomed['id']}", headers=FHIR_JSON)
    assert gone.status_code == 410

    # DELETE, then POST, then PUT: the versions they wrote are in that order.
    deletion = client.get(f"/fhir/Patient/{doomed['id']}/_history", headers=FHIR_JSON).json()["entry"][0]
    assert deletion["request"]["method"] == "DELETE"
    deleted_at = _instant(deletion["response"]["lastModified"])
    created_at = _instant(post["response"]["lastModified"])
    updated_at = _instant(put["response"]["lastModified"])
    assert deleted_at <= created_at <= updated_at
    assert read(client, new_ref)["gender"] == "female"


def test_prefer_minimal_leaves_out_the_resources(client):
    entries = _ok(
        _submit(client, _bundle("transaction", _post(_patient())), {"Prefer": "return=minimal"}), "transaction", 1
    )
    assert "resource" not in entries[0]
    assert entries[0]["response"]["status"] == "201 Created"
    read(client, _reference(entries[0]["response"]["location"]))


# --- conditional create inside a transaction ------------------------------------------------------


def test_if_none_exist_in_a_transaction_does_not_duplicate(client):
    existing = create(client, _patient())
    patient_urn = _urn()
    again = {"resourceType": "Patient", "identifier": existing["identifier"], "active": False}
    bundle = _bundle(
        "transaction",
        _post(again, patient_urn, ifNoneExist=_token(existing["identifier"][0])),
        _post(_observation(subject={"reference": patient_urn})),
    )
    since = now_instant()
    matched, observation = _ok(_submit(client, bundle), "transaction", 2)
    assert matched["response"]["status"] == "200 OK"
    assert matched["response"]["location"] == f"Patient/{existing['id']}/_history/1"
    assert observation["response"]["status"] == "201 Created"
    assert history_since(client, "Patient", since) == []
    assert "active" not in read(client, f"Patient/{existing['id']}")
    stored = read(client, _reference(observation["response"]["location"]))
    assert stored["subject"] == {"reference": f"Patient/{existing['id']}"}


def test_if_none_exist_creates_once_then_matches(client):
    patient = _patient()
    bundle = _bundle("transaction", _post(patient, ifNoneExist=_token(patient["identifier"][0])))
    first = _ok(_submit(client, bundle), "transaction", 1)[0]["response"]
    second = _ok(_submit(client, bundle), "transaction", 1)[0]["response"]
    assert first["status"] == "201 Created" and second["status"] == "200 OK"
    assert _reference(first["location"]) == _reference(second["location"])


# --- batch ----------------------------------------------------------------------------------------


def test_batch_with_a_bad_entry_stores_the_good_ones(client):
    good, bad, other = _patient(), _patient(gender="x"), _observation(identifier=[_identifier()])
    missing = f"Patient/{uuid.uuid4()}"
    bundle = _bundle("batch", _post(good), _post(bad), {"request": {"method": "GET", "url": missing}}, _post(other))
    first, second, third, fourth = _ok(_submit(client, bundle), "batch", 4)

    assert first["response"]["status"] == "201 Created"
    assert read(client, _reference(first["response"]["location"]))["identifier"] == good["identifier"]
    assert fourth["response"]["status"] == "201 Created"
    assert read(client, _reference(fourth["response"]["location"]))["identifier"] == other["identifier"]

    assert second["response"]["status"].startswith("400")
    assert "resource" not in second and "location" not in second["response"]
    assert outcome_issues(second["response"]["outcome"]) == [("schema-code", "Bundle.entry[1].resource.gender")]
    _no_match(client, bad)

    assert third["response"]["status"].startswith("404")
    assert [code for code, _ in outcome_issues(third["response"]["outcome"])] == ["resource-not-found"]


def test_batch_entry_with_an_unsupported_request_gets_its_own_outcome(client):
    good = _patient()
    bundle = _bundle("batch", {"request": {"method": "GET", "url": "Alien/1"}}, _post(good))
    failed, created = _ok(_submit(client, bundle), "batch", 2)
    assert failed["response"]["status"].startswith("501")
    assert outcome_issues(failed["response"]["outcome"]) == [
        ("bundle-request-unsupported", "Bundle.entry[0].request.url")
    ]
    assert created["response"]["status"] == "201 Created"


# --- limits and Bundle types ----------------------------------------------------------------------


def test_too_many_entries_is_413(client, settings):
    assert settings.max_bundle_entries == 2_000
    entries = [_post({"resourceType": "Patient"}) for _ in range(settings.max_bundle_entries + 1)]
    since = now_instant()
    for kind in ("transaction", "batch"):
        assert_outcome(_submit(client, _bundle(kind, *entries)), 413, [("bundle-too-many-entries", None)])
    assert_nothing_stored(client, since, "Patient")


def test_entry_limit_is_inclusive(settings):
    app = create_app(
        Settings(
            database_url=settings.database_url,
            max_bundle_entries=3,
            log_level="WARNING",
            allow_unauthenticated_loopback=True,
        )
    )
    try:
        with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 40000)) as small:
            _ok(_submit(small, _bundle("transaction", *(_post(_patient()) for _ in range(3)))), "transaction", 3)
            too_many = _bundle("transaction", *(_post(_patient()) for _ in range(4)))
            assert_outcome(_submit(small, too_many), 413, [("bundle-too-many-entries", None)])
    finally:
        app.state.store.engine.dispose()


@pytest.mark.parametrize("kind", ["collection", "document", "searchset", "history", "message", "transaction-response"])
def test_only_batch_and_transaction_bundles_are_processed(client, kind):
    since = now_instant()
    response = _submit(client, _bundle(kind, {"fullUrl": _urn(), "resource": _patient()}))
    assert_outcome(response, 400, [("bundle-type", "Bundle.type")])
    assert_nothing_stored(client, since, "Patient", "Bundle")


def test_non_bundle_posted_to_the_base_is_refused(client):
    since = now_instant()
    assert_outcome(_submit(client, _patient()), 400, [("resource-type-mismatch", "resourceType")])
    assert_nothing_stored(client, since, "Patient")


@pytest.mark.parametrize("kind", ["transaction", "batch"])
def test_empty_bundle_answers_a_valid_empty_response(client, kind):
    """No entries, no `entry` element: FHIR JSON has no empty arrays (json.html)."""
    response = _submit(client, {"resourceType": "Bundle", "type": kind})
    assert _ok(response, kind, 0) == []
    assert "entry" not in response.json()


def test_the_base_url_without_a_trailing_slash_takes_bundles(client):
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}],
    }
    response = client.post(
        "/fhir", json=bundle, headers={"Content-Type": "application/fhir+json"}, follow_redirects=False
    )
    assert response.status_code == 200
    assert response.json()["entry"][0]["response"]["status"] == "201 Created"
