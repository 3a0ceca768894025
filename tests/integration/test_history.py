"""history and vread (R4 http.html#history, #vread) on both backends.

Every test writes its own resources; system and type history are narrowed with `_since` set just
before the test's own writes, and entries of other tests are filtered out by id.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import pytest

from tests.conftest import FHIR_JSON

SYSTEM = "urn:test:history"


def _codes(response) -> list[str]:  # type: ignore[no-untyped-def]
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return [issue["details"]["coding"][0]["code"] for issue in body["issue"]]


def _now() -> str:
    """The current moment as a FHIR instant with microseconds (what `_since` and `_at` take)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _tick() -> None:
    """Lets the clock move on so that moments noted between writes lie strictly between them."""
    time.sleep(0.003)


def _create(client, resource_type: str = "Patient", **fields) -> str:  # type: ignore[no-untyped-def]
    body = {"resourceType": resource_type, **fields}
    if resource_type == "Patient":
        body.setdefault("identifier", [{"system": SYSTEM, "value": str(uuid.uuid4())}])
    response = client.post(f"/fhir/{resource_type}", json=body, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _update(client, resource_id: str, resource_type: str = "Patient", **fields) -> int:  # type: ignore[no-untyped-def]
    current = client.get(f"/fhir/{resource_type}/{resource_id}", headers=FHIR_JSON).json()
    current.update(fields)
    response = client.put(f"/fhir/{resource_type}/{resource_id}", json=current, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    return int(response.json()["meta"]["versionId"])


def _delete(client, resource_id: str, resource_type: str = "Patient") -> None:  # type: ignore[no-untyped-def]
    assert client.delete(f"/fhir/{resource_type}/{resource_id}").status_code == 204


def _history(client, url: str, **params) -> dict:  # type: ignore[no-untyped-def,type-arg]
    response = client.get(url, params=params or None, headers=FHIR_JSON)  # an empty dict would drop the URL's query
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["resourceType"] == "Bundle" and body["type"] == "history"
    return body  # type: ignore[no-any-return]


def _key(entry: dict) -> tuple[str, str, str]:  # type: ignore[type-arg]
    """(type, id, version) of a history entry, from its fullUrl and its etag."""
    resource_type, resource_id = entry["fullUrl"].split("/fhir/", 1)[1].split("/")
    etag = entry["response"]["etag"]
    assert etag.startswith('W/"') and etag.endswith('"')
    return resource_type, resource_id, etag[3:-1]


def _mine(bundle: dict, ids: set[str]) -> list[tuple[str, str, str]]:  # type: ignore[type-arg]
    return [key for key in map(_key, bundle.get("entry", [])) if key[1] in ids]


def _link(bundle: dict, relation: str) -> str | None:  # type: ignore[type-arg]
    return next((link["url"] for link in bundle.get("link", []) if link["relation"] == relation), None)


def _walk_pages(client, url: str, params: dict, between=None) -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    """Every page reached by following `next` from the first; `between` runs before each later page."""
    pages = [_history(client, url, **params)]
    while (next_url := _link(pages[-1], "next")) is not None:
        assert len(pages) < 50, "paging does not end"
        if between is not None:
            between(len(pages))
        pages.append(_history(client, next_url))
    return pages


def _last_modified(entry: dict) -> datetime:  # type: ignore[type-arg]
    return datetime.fromisoformat(entry["response"]["lastModified"].replace("Z", "+00:00"))


# --- instance history ---------------------------------------------------------------------------


def test_instance_history_lists_every_version_newest_first_with_the_deletion(client):
    resource_id = _create(client, gender="male")
    _update(client, resource_id, gender="female")
    _update(client, resource_id, gender="other")
    _delete(client, resource_id)

    bundle = _history(client, f"/fhir/Patient/{resource_id}/_history")
    entries = bundle["entry"]
    assert [_key(entry) for entry in entries] == [("Patient", resource_id, str(v)) for v in (4, 3, 2, 1)]

    deletion = entries[0]
    assert "resource" not in deletion
    assert deletion["request"]["method"] == "DELETE"
    assert deletion["request"]["url"] == f"Patient/{resource_id}"

    assert [entry["request"]["method"] for entry in entries[1:]] == ["PUT", "PUT", "POST"]
    assert [entry["resource"]["gender"] for entry in entries[1:]] == ["other", "female", "male"]
    for entry, version in zip(entries[1:], ("3", "2", "1"), strict=True):
        assert entry["resource"]["id"] == resource_id
        assert entry["resource"]["meta"]["versionId"] == version
        assert entry["response"]["etag"] == f'W/"{version}"'
        assert entry["response"]["lastModified"] == entry["resource"]["meta"]["lastUpdated"]
    moments = [_last_modified(entry) for entry in entries]
    assert moments == sorted(moments, reverse=True)
    assert all(entry["response"]["status"].split()[0].isdigit() for entry in entries)
    assert _link(bundle, "self") is not None


def test_instance_history_of_an_unknown_id_is_404(client):
    response = client.get(f"/fhir/Patient/{uuid.uuid4()}/_history", headers=FHIR_JSON)
    assert response.status_code == 404
    assert _codes(response) == ["resource-not-found"]


def test_history_of_an_unknown_resource_type_is_404(client):
    response = client.get("/fhir/NoSuchType/_history", headers=FHIR_JSON)
    assert response.status_code == 404
    assert _codes(response) == ["resource-type-unknown"]


# --- type and system history --------------------------------------------------------------------


def test_type_history_contains_the_writes_since(client):
    other = _create(client)  # written before _since: must not appear
    _tick()
    since = _now()
    first = _create(client, gender="male")
    _update(client, first, gender="female")
    second = _create(client)
    _delete(client, second)
    observation = _create(
        client, "Observation", status="final", code={"text": "a code"}, subject={"reference": f"Patient/{first}"}
    )

    bundle = _history(client, "/fhir/Patient/_history", _since=since)
    assert {_key(entry)[0] for entry in bundle["entry"]} == {"Patient"}
    assert _mine(bundle, {first, second, other, observation}) == [
        ("Patient", second, "2"),
        ("Patient", second, "1"),
        ("Patient", first, "2"),
        ("Patient", first, "1"),
    ]
    moments = [_last_modified(entry) for entry in bundle["entry"]]
    assert moments == sorted(moments, reverse=True)
    assert min(moments) >= datetime.fromisoformat(since.replace("Z", "+00:00"))


def test_system_history_contains_the_writes_since_across_types(client):
    before = _create(client)
    _tick()
    since = _now()
    patient = _create(client)
    observation = _create(
        client, "Observation", status="final", code={"text": "x"}, subject={"reference": f"Patient/{patient}"}
    )
    _update(client, patient, active=True)
    _delete(client, observation, "Observation")

    bundle = _history(client, "/fhir/_history", _since=since)
    assert _mine(bundle, {before, patient, observation}) == [
        ("Observation", observation, "2"),
        ("Patient", patient, "2"),
        ("Observation", observation, "1"),
        ("Patient", patient, "1"),
    ]
    for entry in bundle["entry"]:
        assert entry["response"]["etag"].startswith('W/"')
        assert entry["response"]["lastModified"].endswith("Z")


def test_since_in_the_future_gives_an_empty_bundle(client):
    resource_id = _create(client)
    bundle = _history(client, f"/fhir/Patient/{resource_id}/_history", _since="2999-01-01T00:00:00Z")
    assert bundle.get("entry", []) == []


def test_at_gives_the_version_current_at_that_moment(client):
    before_creation = _now()
    _tick()
    resource_id = _create(client, gender="male")
    _tick()
    between = _now()
    _tick()
    _update(client, resource_id, gender="female")
    _tick()
    after = _now()
    url = f"/fhir/Patient/{resource_id}/_history"

    at_between = _history(client, url, _at=between)
    assert [_key(entry) for entry in at_between["entry"]] == [("Patient", resource_id, "1")]
    assert at_between["entry"][0]["resource"]["gender"] == "male"

    at_after = _history(client, url, _at=after)
    assert [_key(entry) for entry in at_after["entry"]] == [("Patient", resource_id, "2")]

    assert _history(client, url, _at=before_creation).get("entry", []) == []

    # type level: the same answer for this resource
    assert _mine(_history(client, "/fhir/Patient/_history", _at=between), {resource_id}) == [
        ("Patient", resource_id, "1")
    ]


def test_at_with_day_precision_covers_the_whole_day(client):
    resource_id = _create(client, gender="male")
    _update(client, resource_id, gender="female")
    day = _history(client, f"/fhir/Patient/{resource_id}/_history")["entry"][0]["response"]["lastModified"][:10]
    bundle = _history(client, f"/fhir/Patient/{resource_id}/_history", _at=day)
    assert [_key(entry) for entry in bundle["entry"]] == [("Patient", resource_id, "2"), ("Patient", resource_id, "1")]


def test_bad_since_or_at_is_400(client):
    resource_id = _create(client)
    for name in ("_since", "_at"):
        response = client.get(f"/fhir/Patient/{resource_id}/_history", params={name: "yesterday"}, headers=FHIR_JSON)
        assert response.status_code == 400
        assert _codes(response) == ["date-invalid"]


# --- paging -------------------------------------------------------------------------------------


def test_count_2_pages_through_every_version_once_in_order(client):
    resource_id = _create(client, gender="male")
    for gender in ("female", "other", "unknown", "male"):
        _update(client, resource_id, gender=gender)

    pages = _walk_pages(client, f"/fhir/Patient/{resource_id}/_history", {"_count": "2"})
    assert [len(page["entry"]) for page in pages] == [2, 2, 1]
    seen = [_key(entry) for page in pages for entry in page["entry"]]
    assert seen == [("Patient", resource_id, str(v)) for v in (5, 4, 3, 2, 1)]
    for page in pages[1:]:
        assert _link(page, "first") is not None
        assert "_count=2" in (_link(page, "self") or "")
    assert _link(pages[-1], "next") is None


def test_paging_is_stable_when_versions_are_written_between_pages(client):
    resource_id = _create(client, gender="male")
    for gender in ("female", "other", "unknown", "male"):
        _update(client, resource_id, gender=gender)

    def write_more(_page: int) -> None:
        _update(client, resource_id, active=_page % 2 == 0)

    pages = _walk_pages(client, f"/fhir/Patient/{resource_id}/_history", {"_count": "2"}, write_more)
    seen = [_key(entry) for page in pages for entry in page["entry"]]
    assert seen == [("Patient", resource_id, str(v)) for v in (5, 4, 3, 2, 1)]
    # the versions written meanwhile exist and head a fresh listing
    fresh = _history(client, f"/fhir/Patient/{resource_id}/_history", _count="2")
    assert _key(fresh["entry"][0]) == ("Patient", resource_id, str(5 + len(pages) - 1))


def test_type_history_paging_with_writes_between_pages_has_no_duplicates_or_skips(client):
    since = _now()
    ids = [_create(client) for _ in range(3)]
    for resource_id in ids[:2]:
        _update(client, resource_id, active=True)
    expected = _mine(_history(client, "/fhir/Patient/_history", _since=since), set(ids))
    assert len(expected) == 5

    def write_more(page: int) -> None:
        _update(client, ids[page % 3], active=page % 2 == 0)
        ids.append(_create(client))

    pages = _walk_pages(client, "/fhir/Patient/_history", {"_since": since, "_count": "2"}, write_more)
    seen = [_key(entry) for page in pages for entry in page["entry"]]
    assert len(seen) == len(set(seen)), "an entry appeared twice"
    assert [key for key in seen if key[1] in set(ids)] == expected


def test_garbage_page_token_is_400(client):
    resource_id = _create(client)
    forged = base64.urlsafe_b64encode(json.dumps(["2020-01-01T00:00:00", "Patient", resource_id, 10**20]).encode())
    # not base64 / not JSON / wrong shape / a version no database column holds
    for token in ("garbage", "!!!", "bm90IGpzb24", "WzEsMiwzLDRd", forged.decode()):
        response = client.get(f"/fhir/Patient/{resource_id}/_history", params={"_page": token}, headers=FHIR_JSON)
        assert response.status_code == 400, token
        assert _codes(response) == ["page-token-invalid"]


@pytest.mark.parametrize("count", ["abc", "-1", "2.5", "\u00b2"])
def test_bad_count_is_400(client, count):
    response = client.get("/fhir/_history", params={"_count": count}, headers=FHIR_JSON)
    assert response.status_code == 400
    assert _codes(response) == ["count-invalid"]


@pytest.mark.parametrize("level", ["instance", "type", "system"])
def test_unknown_parameter_is_400(client, level):
    resource_id = _create(client)
    url = {
        "instance": f"/fhir/Patient/{resource_id}/_history",
        "type": "/fhir/Patient/_history",
        "system": "/fhir/_history",
    }[level]
    response = client.get(url, params={"_sincee": "2020"}, headers=FHIR_JSON)
    assert response.status_code == 400
    assert _codes(response) == ["history-parameter-unknown"]


# --- vread --------------------------------------------------------------------------------------


def test_vread_returns_each_version_with_its_etag_and_last_modified(client):
    resource_id = _create(client, gender="male")
    _update(client, resource_id, gender="female")
    _update(client, resource_id, gender="other")
    for version, gender in ((1, "male"), (2, "female"), (3, "other")):
        response = client.get(f"/fhir/Patient/{resource_id}/_history/{version}", headers=FHIR_JSON)
        assert response.status_code == 200
        body = response.json()
        assert body["id"] == resource_id
        assert body["meta"]["versionId"] == str(version)
        assert body["gender"] == gender
        assert response.headers["etag"] == f'W/"{version}"'
        last_modified = parsedate_to_datetime(response.headers["last-modified"])
        stored = datetime.fromisoformat(body["meta"]["lastUpdated"].replace("Z", "+00:00"))
        assert last_modified == stored.replace(microsecond=0)


def test_vread_of_the_deletion_version_is_410(client):
    resource_id = _create(client)
    _delete(client, resource_id)
    response = client.get(f"/fhir/Patient/{resource_id}/_history/2", headers=FHIR_JSON)
    assert response.status_code == 410
    assert _codes(response) == ["version-deleted"]
    # the version before the deletion stays readable
    assert client.get(f"/fhir/Patient/{resource_id}/_history/1", headers=FHIR_JSON).status_code == 200


@pytest.mark.parametrize("version", ["3", "0", "abc", "99999999999999999999", "\u00b2"])
def test_vread_of_a_version_that_does_not_exist_is_404(client, version):
    resource_id = _create(client)
    _update(client, resource_id, active=True)
    response = client.get(f"/fhir/Patient/{resource_id}/_history/{version}", headers=FHIR_JSON)
    assert response.status_code == 404
    assert _codes(response) == ["version-not-found"]


def test_vread_of_an_unknown_id_is_404(client):
    response = client.get(f"/fhir/Patient/{uuid.uuid4()}/_history/1", headers=FHIR_JSON)
    assert response.status_code == 404
    assert _codes(response) == ["version-not-found"]


def test_an_empty_history_is_a_valid_bundle_without_entries(client):
    from fhir_server.model.validate import validation_issues

    future = "2999-01-01T00:00:00Z"
    body = client.get("/fhir/Patient/_history", params={"_since": future}).json()
    assert "entry" not in body
    assert validation_issues(body) == []
