"""Synthea patients (transaction Bundles with `urn:uuid:` references) load through `POST /fhir`.

The five smallest patient bundles and the largest one are loaded on each backend (the whole set
would be slow). Every
entry must be created, and every stored resource must equal its entry apart from the server's id
and meta and the `urn:uuid:` references, which must now name the new `Type/id` of their entry.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FHIR_JSON, SYNTHEA
from tests.integration.helpers import UUID, first_difference, load_json, parse, references, without_server_fields

PATIENT_BUNDLES = sorted(
    (path for path in SYNTHEA.glob("*.json") if not path.name.startswith(("hospital", "practitioner"))),
    key=lambda path: (path.stat().st_size, path.name),
)
SMALLEST = PATIENT_BUNDLES[:5]
SAMPLE = [*SMALLEST, PATIENT_BUNDLES[-1]]  # and the largest (about 1 MB)


def _rewritten(node: Any, new_refs: dict[str, str]) -> Any:
    """The resource as it should be stored: references to entries replaced by their new Type/id."""
    if isinstance(node, dict):
        return {
            key: new_refs.get(value, value)
            if key == "reference" and isinstance(value, str)
            else _rewritten(value, new_refs)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewritten(item, new_refs) for item in node]
    return node


def _load(client: Any, path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], float]:
    """(bundle, response entries, seconds) after POSTing one Synthea file as it is on disk."""
    bundle = load_json(path)
    started = time.perf_counter()
    response = client.post("/fhir", content=path.read_bytes(), headers=FHIR_JSON)
    seconds = time.perf_counter() - started
    assert response.status_code == 200, f"{path.name}: {response.status_code} {response.text[:2000]}"
    body = parse(response.content)
    assert body["type"] == "transaction-response"
    assert len(body["entry"]) == len(bundle["entry"])
    return bundle, body["entry"], seconds


def _new_references(bundle: dict[str, Any], responses: list[dict[str, Any]]) -> dict[str, str]:
    new_refs = {}
    for entry, answer in zip(bundle["entry"], responses, strict=True):
        location = answer["response"]["location"]
        resource_type, resource_id, _, version = location.split("/")
        assert resource_type == entry["resource"]["resourceType"] and UUID.match(resource_id) and version == "1"
        new_refs[entry["fullUrl"]] = f"{resource_type}/{resource_id}"
    return new_refs


def test_the_synthea_sample_is_what_the_tests_expect():
    assert len(PATIENT_BUNDLES) == 80
    assert PATIENT_BUNDLES[-1].stat().st_size > 1_000_000
    for path in SAMPLE:
        bundle = load_json(path)
        assert bundle["type"] == "transaction"
        assert sum(entry["resource"]["resourceType"] == "Patient" for entry in bundle["entry"]) == 1
        assert all(entry["fullUrl"].startswith("urn:uuid:") for entry in bundle["entry"])


@pytest.mark.parametrize("path", SAMPLE, ids=[path.name.split("_")[0] for path in SAMPLE])
def test_synthea_bundle_loads_with_references_rewritten(client, backend, path):
    bundle, responses, seconds = _load(client, path)
    print(f"{backend}: {path.name} ({len(responses)} entries) loaded in {seconds:.2f} s")
    failures = [
        f"entry {index}: {answer['response']}"
        for index, answer in enumerate(responses)
        if answer["response"]["status"] != "201 Created"
    ]
    assert not failures, failures
    new_refs = _new_references(bundle, responses)
    patient_ref = next(ref for ref in new_refs.values() if ref.startswith("Patient/"))

    observations = local = 0
    for index, (entry, answer) in enumerate(zip(bundle["entry"], responses, strict=True)):
        new_ref = new_refs[entry["fullUrl"]]
        read = client.get(f"/fhir/{new_ref}", headers=FHIR_JSON)
        assert read.status_code == 200, (new_ref, read.text)
        stored = parse(read.content)
        assert stored == answer["resource"], f"entry {index}: the response resource differs from the stored one"
        assert not [ref for ref in references(stored) if ref.startswith("urn:uuid:")], f"entry {index}: {stored}"
        expected = without_server_fields(_rewritten(entry["resource"], new_refs))
        difference = first_difference(expected, without_server_fields(stored))
        assert difference is None, f"entry {index} ({new_ref}) differs at {difference}"
        if stored["resourceType"] == "Observation":
            observations += 1
            assert stored["subject"]["reference"] == patient_ref
            assert stored["encounter"]["reference"].startswith("Encounter/")
            assert stored["encounter"]["reference"] in new_refs.values()
        if stored["resourceType"] in ("Claim", "ExplanationOfBenefit"):
            assert stored["patient"]["reference"] == patient_ref
        # References to contained resources stay local (the equality above checks their values).
        local += sum(ref.startswith("#") for ref in references(stored))
    assert observations > 0 and local > 0


def test_loading_the_same_bundle_twice_creates_new_resources(client):
    """Ids are the server's: a second load does not collide with (or update) the first."""
    path = SMALLEST[0]
    bundle, first, _ = _load(client, path)
    _, second, _ = _load(client, path)
    first_refs = set(_new_references(bundle, first).values())
    second_refs = set(_new_references(bundle, second).values())
    assert len(first_refs) == len(second_refs) == len(bundle["entry"])
    assert not first_refs & second_refs
    assert all(answer["response"]["status"] == "201 Created" for answer in second)
