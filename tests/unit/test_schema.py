"""The compiled R4 schema validator agrees with the reference `jsonschema` implementation.

Verdicts are compared on one official example per resource type and on mutations of them that
break each keyword the R4 schema uses (type, enum, pattern, additionalProperties, required).
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from functools import cache

import jsonschema
import pytest

from fhir_server.model.schema import schema_definitions, validate_against_schema
from tests.conftest import EXAMPLES


@cache
def reference_validator(resource_type: str) -> jsonschema.Draft6Validator:
    schema = {"$ref": f"#/definitions/{resource_type}", "definitions": schema_definitions()}
    return jsonschema.Draft6Validator(schema)


def one_example_per_type() -> list:
    seen: dict[str, object] = {}
    for path in sorted(EXAMPLES.glob("*.json")):
        seen.setdefault(path.name.split("-")[0], path)
    return sorted(seen.values())


def load(path) -> dict:
    return json.loads(path.read_bytes(), parse_float=Decimal)


MUTATIONS = {
    "wrong type": lambda r: r.__setitem__("id", 12),
    "unknown element": lambda r: r.__setitem__("notAnElement", "x"),
    "bad id pattern": lambda r: r.__setitem__("id", "has spaces"),
    "bad meta date": lambda r: r.__setitem__("meta", {"lastUpdated": "yesterday"}),
    "bad language code pattern": lambda r: r.__setitem__("language", " "),
    "code outside the required binding": lambda r: r.__setitem__("text", {"status": "not-a-status", "div": "<div/>"}),
}


@pytest.mark.parametrize("path", one_example_per_type(), ids=lambda p: p.name)
def test_official_examples_are_valid_for_both(path):
    resource = load(path)
    assert validate_against_schema(resource, resource["resourceType"]) == []
    assert list(reference_validator(resource["resourceType"]).iter_errors(resource)) == []


@pytest.mark.parametrize("mutation", sorted(MUTATIONS))
@pytest.mark.parametrize(
    "name",
    [
        "Patient-example.json",
        "Observation-example.json",
        "Consent-consent-example-basic.json",
        "Appointment-example.json",
        "Coverage-9876B1.json",
        "AllergyIntolerance-example.json",
    ],
)
def test_mutations_are_invalid_for_both(name, mutation):
    resource = copy.deepcopy(load(EXAMPLES / name))
    MUTATIONS[mutation](resource)
    ours = validate_against_schema(resource, resource["resourceType"])
    theirs = list(reference_validator(resource["resourceType"]).iter_errors(resource))
    assert ours and theirs
    assert len(ours) == 1


def test_enum_and_required_are_reported_with_their_paths():
    observation = {"resourceType": "Observation", "status": "bogus", "valueQuantity": {"value": "1"}}
    issues = validate_against_schema(observation, "Observation")
    assert {(i.error_code, i.expression) for i in issues} == {
        ("schema-code", "Observation.status"),
        ("schema-type", "Observation.valueQuantity.value"),
        ("schema-required", "Observation.code"),
    }
    assert not reference_validator("Observation").is_valid(observation)


def test_nested_contained_resources_are_validated_by_their_own_type():
    patient = {"resourceType": "Patient", "contained": [{"resourceType": "Organization", "active": "yes"}]}
    issues = validate_against_schema(patient, "Patient")
    assert [(i.error_code, i.expression) for i in issues] == [("schema-type", "Patient.contained[0].active")]


def test_first_use_from_many_threads_at_once_is_safe():
    """The checks are compiled before any thread can use them (a lazy compile once recursed forever)."""
    import sys
    import threading

    from fhir_server.model import schema

    bundle = json.loads(
        sorted((EXAMPLES.parent.parent / "synthea").glob("*.json"))[0].read_bytes(), parse_float=Decimal
    )
    schema._compiler.cache_clear()
    failures: list[BaseException] = []
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:

        def validate() -> None:
            try:
                assert validate_against_schema(bundle, "Bundle") == []
            except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
                failures.append(exc)

        threads = [threading.Thread(target=validate) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
