"""Composite parameters, reference `:identifier`, token `:of-type` and `:text`, end to end through
the REST API on both databases: extraction on write, parsing, SQL (R4 search.html#composite,
#reference, #token). Every test uses codes of its own, since the database is shared."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import FHIR_JSON
from tests.integration.helpers import assert_outcome

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
UNSUPPORTED = "search-parameter-unsupported"
MODIFIER = "search-modifier-unsupported"
VALUE = "search-value-invalid"


def unique() -> str:
    return uuid.uuid4().hex[:12]


def create(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def found(client: TestClient, path: str, params: list[tuple[str, str]] | dict[str, str]) -> set[str]:
    response = client.get(f"/fhir/{path}", params=params, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    return {entry["resource"]["id"] for entry in response.json().get("entry", [])}


def concept(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def mm_hg(value: int) -> dict[str, Any]:
    return {"value": value, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}


def observation(code: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": code, **more}


@pytest.fixture
def blood_pressure(client: TestClient) -> dict[str, str]:
    """A panel whose components carry systolic 120 and diastolic 80, and a single systolic 150."""
    panel, systolic, diastolic = f"panel-{unique()}", f"sys-{unique()}", f"dia-{unique()}"
    components = [
        {"code": concept(LOINC, systolic), "valueQuantity": mm_hg(120)},
        {"code": concept(LOINC, diastolic), "valueQuantity": mm_hg(80)},
    ]
    ids = {
        "panel": create(client, observation(concept(LOINC, panel), component=components)),
        "single": create(client, observation(concept(LOINC, systolic), valueQuantity=mm_hg(150))),
    }
    return {"panel_code": panel, "systolic": systolic, "diastolic": diastolic, **ids}


def test_code_value_quantity(client: TestClient, blood_pressure: dict[str, str]) -> None:
    systolic, single = blood_pressure["systolic"], blood_pressure["single"]

    def search(value: str) -> set[str]:
        return found(client, "Observation", {"code-value-quantity": value})

    assert search(f"{LOINC}|{systolic}$gt100") == {single}
    assert search(f"{systolic}$150") == {single}
    assert search(f"{LOINC}|{systolic}$gt100|{UCUM}|mm[Hg]") == {single}
    assert search(f"{LOINC}|{systolic}$gt100|{UCUM}|kg") == set()
    assert search(f"{LOINC}|{systolic}$gt150") == set()
    assert search(f"http://other|{systolic}$150") == set()
    # the panel's own code has no value; its components do not count for code-value-quantity
    assert search(f"{LOINC}|{blood_pressure['panel_code']}$gt0") == set()
    assert search(f"{LOINC}|{blood_pressure['diastolic']}$80") == set()


def test_component_code_value_quantity_matches_within_one_component(
    client: TestClient, blood_pressure: dict[str, str]
) -> None:
    panel, systolic, diastolic = blood_pressure["panel"], blood_pressure["systolic"], blood_pressure["diastolic"]

    def search(value: str) -> set[str]:
        return found(client, "Observation", {"component-code-value-quantity": value})

    assert search(f"{LOINC}|{systolic}$120") == {panel}
    assert search(f"{LOINC}|{systolic}$lt130") == {panel}
    assert search(f"{LOINC}|{diastolic}$le80") == {panel}
    # systolic with the diastolic value: both are in the panel, but in different components
    assert search(f"{LOINC}|{systolic}$80") == set()
    assert search(f"{LOINC}|{diastolic}$120") == set()
    # the single Observation's own code and value are not a component
    assert search(f"{LOINC}|{systolic}$150") == set()


def test_combo_code_value_quantity_reads_both_levels(client: TestClient, blood_pressure: dict[str, str]) -> None:
    panel, single = blood_pressure["panel"], blood_pressure["single"]
    systolic, diastolic = blood_pressure["systolic"], blood_pressure["diastolic"]

    def search(*values: str) -> set[str]:
        return found(client, "Observation", [("combo-code-value-quantity", value) for value in values])

    assert search(f"{LOINC}|{systolic}$gt100") == {panel, single}
    assert search(f"{LOINC}|{systolic}$gt130") == {single}
    assert search(f"{LOINC}|{systolic}$80") == set()  # split across components
    assert search(f"{systolic}$80,{systolic}$150") == {single}  # OR
    assert search(f"{systolic}$80,{diastolic}$80") == {panel}
    assert search(f"{systolic}$120", f"{diastolic}$80") == {panel}  # AND: each in its own component
    assert search(f"{systolic}$120", f"{diastolic}$90") == set()


def test_code_value_concept_date_and_string(client: TestClient) -> None:
    code, other = unique(), unique()
    smoker = create(
        client, observation(concept(LOINC, code), valueCodeableConcept=concept("http://snomed.info/sct", "77176002"))
    )
    dated = create(client, observation(concept(LOINC, code), valueDateTime="2021-06-15T10:00:00Z"))
    period = create(client, observation(concept(LOINC, code), valuePeriod={"start": "2019-01-01", "end": "2019-12-31"}))
    text = create(client, observation(concept(LOINC, code), valueString="Positive $ result"))
    create(client, observation(concept(LOINC, other), valueString="Negative"))

    def search(name: str, value: str) -> set[str]:
        return found(client, "Observation", {name: value})

    assert search("code-value-concept", f"{LOINC}|{code}$http://snomed.info/sct|77176002") == {smoker}
    assert search("code-value-concept", f"{code}$77176002") == {smoker}
    assert search("code-value-concept", f"{code}$http://snomed.info/sct|8517006") == set()
    assert search("code-value-concept", f"{other}$77176002") == set()
    assert search("code-value-date", f"{code}$2021-06") == {dated}
    assert search("code-value-date", f"{code}$ge2021-01-01") == {dated}
    assert search("code-value-date", f"{code}$lt2020") == {period}
    assert search("code-value-date", f"{code}$2019") == {period}
    assert search("code-value-date", f"{code}$2022") == set()
    assert search("code-value-string", f"{code}$positive") == {text}
    assert search("code-value-string", f"{code}$Positive \\$ res") == {text}  # an escaped $
    assert search("code-value-string", f"{code}$negative") == set()
    assert search("code-value-string", f"{other}$negative") != set()


def test_composites_on_other_types(client: TestClient) -> None:
    """UsageContext (token + quantity or token), MolecularSequence (a `%resource` token and two
    numbers), DocumentReference relatesTo (reference + token, with R4's swapped expressions fixed)."""
    system = f"http://example.org/{unique()}"
    age = {"system": system, "code": "age"}
    focus = {"system": system, "code": "focus"}
    value_set = create(
        client,
        {
            "resourceType": "ValueSet",
            "status": "draft",
            "useContext": [
                {
                    "code": age,
                    "valueRange": {
                        "low": {"value": 18, "system": UCUM, "code": "a"},
                        "high": {"value": 65, "system": UCUM, "code": "a"},
                    },
                },
                {"code": focus, "valueCodeableConcept": concept(system, "diabetes")},
            ],
        },
    )
    assert found(client, "ValueSet", {"context-type-quantity": f"{system}|age$gt30"}) == {value_set}
    assert found(client, "ValueSet", {"context-type-quantity": f"{system}|age$gt70"}) == set()
    assert found(client, "ValueSet", {"context-type-quantity": f"{system}|focus$gt30"}) == set()
    assert found(client, "ValueSet", {"context-type-value": f"{system}|focus${system}|diabetes"}) == {value_set}
    assert found(client, "ValueSet", {"context-type-value": f"{system}|age${system}|diabetes"}) == set()

    chromosome = unique()
    sequence = create(
        client,
        {
            "resourceType": "MolecularSequence",
            "coordinateSystem": 0,
            "referenceSeq": {"chromosome": concept("http://example.org/chromosome", chromosome)},
            "variant": [{"start": 200, "end": 300}, {"start": 1000, "end": 1100}],
        },
    )

    def coordinate(value: str) -> set[str]:
        return found(client, "MolecularSequence", {"chromosome-variant-coordinate": value})

    assert coordinate(f"{chromosome}$ge200$le300") == {sequence}
    assert coordinate(f"{chromosome}$gt150$lt350") == {sequence}
    assert coordinate(f"{chromosome}$200$1100") == set()  # start of one variant, end of the other
    assert coordinate("other$ge200$le300") == set()

    replaced = create(client, document())
    replacing = create(
        client, document(relatesTo=[{"code": "replaces", "target": {"reference": f"DocumentReference/{replaced}"}}])
    )
    assert found(client, "DocumentReference", {"relationship": f"DocumentReference/{replaced}$replaces"}) == {replacing}
    assert found(client, "DocumentReference", {"relationship": f"DocumentReference/{replaced}$appends"}) == set()


def document(**more: Any) -> dict[str, Any]:
    attachment = {"contentType": "text/plain", "data": "aGVsbG8="}
    return {"resourceType": "DocumentReference", "status": "current", "content": [{"attachment": attachment}], **more}


def test_composite_missing_and_errors(client: TestClient) -> None:
    code = unique()
    with_value = create(client, observation(concept(LOINC, code), valueQuantity=mm_hg(1)))
    without = create(client, observation(concept(LOINC, code)))
    both = found(client, "Observation", {"code": code})
    assert both == {with_value, without}
    missing = found(client, "Observation", [("code", code), ("code-value-quantity:missing", "true")])
    assert missing == {without}
    present = found(client, "Observation", [("code", code), ("code-value-quantity:missing", "false")])
    assert present == {with_value}

    def bad(name: str, value: str) -> Any:
        return client.get("/fhir/Observation", params={name: value}, headers=FHIR_JSON)

    assert_outcome(bad("code-value-quantity", f"{code}"), 400, [(VALUE, "code-value-quantity")])
    assert_outcome(bad("code-value-quantity", f"{code}$1$2"), 400, [(VALUE, "code-value-quantity")])
    assert_outcome(bad("code-value-quantity", f"{code}$"), 400, [(VALUE, "code-value-quantity")])
    assert_outcome(bad("code-value-quantity", f"{code}$abc"), 400, [(VALUE, "code-value-quantity")])
    assert_outcome(bad("code-value-quantity:exact", f"{code}$1"), 400, [(MODIFIER, "code-value-quantity:exact")])


def test_reference_identifier(client: TestClient) -> None:
    system = f"urn:mrn:{unique()}"
    by_identifier = create(
        client, observation(concept(LOINC, unique()), subject={"identifier": {"system": system, "value": "123"}})
    )
    create(client, observation(concept(LOINC, unique()), subject={"identifier": {"system": system, "value": "456"}}))
    assert found(client, "Observation", {"subject:identifier": f"{system}|123"}) == {by_identifier}
    assert found(client, "Observation", {"subject:identifier": f"{system}|789"}) == set()
    assert found(client, "Observation", {"subject:identifier": "urn:other|123"}) == set()


def test_token_of_type(client: TestClient) -> None:
    number = unique()

    def patient(type_code: str, value: str) -> dict[str, Any]:
        kind = {"coding": [{"system": V2_0203, "code": type_code}]}
        return {"resourceType": "Patient", "identifier": [{"type": kind, "system": "urn:hospital", "value": value}]}

    record = create(client, patient("MR", number))
    licence = create(client, patient("DL", number))
    create(client, patient("MR", f"{number}-other"))

    def search(value: str) -> set[str]:
        return found(client, "Patient", {"identifier:of-type": value})

    assert search(f"{V2_0203}|MR|{number}") == {record}
    assert search(f"{V2_0203}|DL|{number}") == {licence}
    assert search(f"{V2_0203}|MR|{number},{V2_0203}|DL|{number}") == {record, licence}
    assert search(f"{V2_0203}|PPN|{number}") == set()
    assert search(f"http://other|MR|{number}") == set()
    assert found(client, "Patient", {"identifier": f"urn:hospital|{number}"}) == {record, licence}
    bad = client.get("/fhir/Patient", params={"identifier:of-type": f"{V2_0203}|MR"}, headers=FHIR_JSON)
    assert_outcome(bad, 400, [(VALUE, "identifier:of-type")])


def test_token_text_works_and_string_text_is_refused(client: TestClient) -> None:
    word = unique()
    display = create(client, observation(concept(LOINC, unique(), f"Systolic {word} pressure")))
    text = create(client, observation({"text": f"{word} Panel"}))
    assert found(client, "Observation", {"code:text": f"systolic {word}"}) == {display}
    assert found(client, "Observation", {"code:text": word}) == {text}
    response = client.get("/fhir/Patient", params={"name:text": "x"}, headers=FHIR_JSON)
    assert_outcome(response, 400, [(UNSUPPORTED, "name:text")])


def test_update_and_delete_replace_composite_rows(client: TestClient) -> None:
    code = unique()
    resource = observation(concept(LOINC, code), valueQuantity=mm_hg(100))
    identity = create(client, resource)
    assert found(client, "Observation", {"code-value-quantity": f"{code}$100"}) == {identity}
    updated = client.put(f"/fhir/Observation/{identity}", json={**resource, "id": identity, "valueQuantity": mm_hg(90)})
    assert updated.status_code == 200, updated.text
    assert found(client, "Observation", {"code-value-quantity": f"{code}$100"}) == set()
    assert found(client, "Observation", {"code-value-quantity": f"{code}$90"}) == {identity}
    assert client.delete(f"/fhir/Observation/{identity}").status_code in (200, 204)
    assert found(client, "Observation", {"code-value-quantity": f"{code}$90"}) == set()
