"""Paging links (search.html#paging): next, previous, first and self walk the same keyset order."""

from __future__ import annotations

import uuid

from tests.conftest import FHIR_JSON


def _ids(bundle: dict) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def _link(bundle: dict, relation: str) -> str | None:
    return next((link["url"] for link in bundle["link"] if link["relation"] == relation), None)


def _get(client, url: str) -> dict:
    response = client.get(url.removeprefix("http://127.0.0.1"))
    assert response.status_code == 200, response.text
    return response.json()


def test_next_and_previous_walk_the_same_pages_both_ways(client):
    tag = f"paging-{uuid.uuid4().hex[:12]}"
    for index in range(7):
        body = {"resourceType": "Patient", "meta": {"tag": [{"system": "urn:test", "code": tag}]},
                "birthDate": f"19{50 + index % 3}-01-0{1 + index}"}
        assert client.post("/fhir/Patient", json=body, headers=FHIR_JSON).status_code == 201
    first = _get(client, f"/fhir/Patient?_tag=urn:test|{tag}&_sort=birthdate&_count=3")
    assert _link(first, "previous") is None
    pages = [first]
    while _link(pages[-1], "next"):
        pages.append(_get(client, _link(pages[-1], "next")))
    forward = [_ids(page) for page in pages]
    assert [len(ids) for ids in forward] == [3, 3, 1]
    assert len({i for ids in forward for i in ids}) == 7
    back = [pages[-1]]
    while _link(back[-1], "previous"):
        back.append(_get(client, _link(back[-1], "previous")))
    assert [_ids(page) for page in reversed(back)] == forward
    assert _ids(_get(client, _link(pages[-1], "first"))) == forward[0]
