"""FHIRPath Patch (R4 fhirpatch.html): operations, path forms, value typing and errors."""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

import pytest

from fhir_server.errors import Invalid
from fhir_server.model.fhirpath_patch import apply_fhirpath_patch


def op(kind: str | None, path: str | None = None, **parts: Any) -> dict[str, Any]:
    """One `operation` parameter. Dict values are parts as given (value[x] or `part`)."""
    items: list[dict[str, Any]] = []
    if kind is not None:
        items.append({"name": "type", "valueCode": kind})
    if path is not None:
        items.append({"name": "path", "valueString": path})
    for name, value in parts.items():
        if isinstance(value, dict):
            items.append({"name": name, **value})
        elif isinstance(value, int):
            items.append({"name": name, "valueInteger": value})
        else:
            items.append({"name": name, "valueString": value})
    return {"name": "operation", "part": items}


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(operations)}


def apply(resource: dict[str, Any], *operations: dict[str, Any]) -> dict[str, Any]:
    return apply_fhirpath_patch(resource, patch(*operations))


def failure(resource: dict[str, Any], *operations: dict[str, Any]) -> Invalid:
    with pytest.raises(Invalid) as info:
        apply(resource, *operations)
    assert info.value.error_code == "patch-invalid"
    assert info.value.status == 400
    assert info.value.issues and all(i.error_code == "patch-invalid" for i in info.value.issues)
    return info.value


@pytest.fixture
def patient() -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": "example",
        "identifier": [
            {"system": "http://example.org/mrn", "value": "12345"},
            {"system": "http://example.org/ssn", "value": "999-99-9999"},
        ],
        "name": [
            {"use": "official", "family": "Chalmers", "given": ["Peter", "James"]},
            {"use": "usual", "given": ["Jim"]},
        ],
        "telecom": [{"system": "phone", "value": "(03) 5555 6473"}],
        "gender": "male",
        "birthDate": "1974-12-25",
    }


@pytest.fixture
def observation() -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "weight"},
        "valueQuantity": {"value": Decimal("72.50"), "unit": "kg"},
    }


# --- add --------------------------------------------------------------------------------------


def test_add_sets_a_single_element(patient: dict[str, Any]) -> None:
    del patient["birthDate"]
    result = apply(patient, op("add", "Patient", name="birthDate", value={"valueDate": "1930-01-01"}))
    assert result["birthDate"] == "1930-01-01"


def test_add_appends_to_an_existing_list(patient: dict[str, Any]) -> None:
    email = {"system": "email", "value": "p@example.org"}
    result = apply(patient, op("add", "Patient", name="telecom", value={"valueContactPoint": email}))
    assert result["telecom"] == [patient["telecom"][0], email]


def test_add_creates_a_missing_list(patient: dict[str, Any]) -> None:
    del patient["telecom"]
    result = apply(patient, op("add", "Patient", name="telecom", value={"valueContactPoint": {"value": "1"}}))
    assert result["telecom"] == [{"value": "1"}]


def test_add_into_a_nested_element(patient: dict[str, Any]) -> None:
    result = apply(patient, op("add", "Patient.name[1]", name="given", value={"valueString": "Jimmy"}))
    assert result["name"][1]["given"] == ["Jim", "Jimmy"]


def test_add_complex_value_built_from_parts(patient: dict[str, Any]) -> None:
    value = {
        "part": [
            {"name": "name", "valueHumanName": {"text": "Bénédicte du Marché"}},
            {"name": "relationship", "valueCodeableConcept": {"text": "partner"}},
            {
                "name": "telecom",
                "part": [{"name": "system", "valueCode": "phone"}, {"name": "value", "valueString": "1"}],
            },
        ]
    }
    result = apply(patient, op("add", "Patient", name="contact", value=value))
    assert result["contact"] == [
        {
            "name": {"text": "Bénédicte du Marché"},
            "relationship": [{"text": "partner"}],  # a list element: a single part still makes a list
            "telecom": [{"system": "phone", "value": "1"}],
        }
    ]


def test_add_extension_from_parts_types_the_choice_value(patient: dict[str, Any]) -> None:
    value = {
        "part": [{"name": "url", "valueUri": "http://example.org/ext"}, {"name": "value", "valueCode": "x"}]
    }
    result = apply(patient, op("add", "Patient", name="extension", value=value))
    assert result["extension"] == [{"url": "http://example.org/ext", "valueCode": "x"}]


def test_add_repeated_part_names_become_a_list(patient: dict[str, Any]) -> None:
    value = {"part": [{"name": "given", "valueString": "A"}, {"name": "given", "valueString": "B"}]}
    result = apply(patient, op("add", "Patient", name="name", value=value))
    assert result["name"][-1] == {"given": ["A", "B"]}


def test_add_choice_element_uses_the_value_type(observation: dict[str, Any]) -> None:
    del observation["valueQuantity"]
    result = apply(observation, op("add", "Observation", name="value", value={"valueString": "heavy"}))
    assert result["valueString"] == "heavy" and "value" not in result


def test_add_choice_element_replaces_the_other_variant(observation: dict[str, Any]) -> None:
    result = apply(observation, op("add", "Observation", name="value", value={"valueBoolean": True}))
    assert result["valueBoolean"] is True and "valueQuantity" not in result


# --- insert -----------------------------------------------------------------------------------


def test_insert_given_name_at_the_start(patient: dict[str, Any]) -> None:
    result = apply(patient, op("insert", "Patient.name[0].given", index=0, value={"valueString": "Pete"}))
    assert result["name"][0]["given"] == ["Pete", "Peter", "James"]


def test_insert_at_the_end_and_in_the_middle(patient: dict[str, Any]) -> None:
    new = {"system": "http://example.org/x", "value": "1"}
    result = apply(
        patient,
        op("insert", "Patient.identifier", index=2, value={"valueIdentifier": new}),
        op("insert", "Patient.identifier", index=1, value={"valueIdentifier": {"value": "mid"}}),
    )
    assert [i["value"] for i in result["identifier"]] == ["12345", "mid", "999-99-9999", "1"]


def test_insert_into_a_missing_list(patient: dict[str, Any]) -> None:
    result = apply(
        patient, op("insert", "Patient.address", index=0, value={"valueAddress": {"city": "Ann Arbor"}})
    )
    assert result["address"] == [{"city": "Ann Arbor"}]


def test_insert_keeps_primitive_extensions_aligned(patient: dict[str, Any]) -> None:
    patient["name"][0]["_given"] = [None, {"extension": [{"url": "u", "valueString": "x"}]}]
    result = apply(patient, op("insert", "Patient.name[0].given", index=0, value={"valueString": "A"}))
    assert result["name"][0]["_given"] == [None, None, {"extension": [{"url": "u", "valueString": "x"}]}]


# --- delete -----------------------------------------------------------------------------------


def test_delete_identifier_selected_with_where(patient: dict[str, Any]) -> None:
    result = apply(patient, op("delete", "Patient.identifier.where(system='http://example.org/ssn')"))
    assert result["identifier"] == [{"system": "http://example.org/mrn", "value": "12345"}]


def test_delete_single_element_and_its_extension(patient: dict[str, Any]) -> None:
    patient["_birthDate"] = {"extension": [{"url": "u", "valueString": "x"}]}
    result = apply(patient, op("delete", "Patient.birthDate"))
    assert "birthDate" not in result and "_birthDate" not in result


def test_delete_matching_nothing_is_a_no_op(patient: dict[str, Any]) -> None:
    assert apply(patient, op("delete", "Patient.identifier.where(system='nope')")) == patient
    assert apply(patient, op("delete", "Patient.deceased")) == patient


def test_delete_last_list_item_removes_the_list(patient: dict[str, Any]) -> None:
    result = apply(patient, op("delete", "Patient.telecom[0]"))
    assert "telecom" not in result


def test_delete_prunes_containers_left_empty(patient: dict[str, Any]) -> None:
    result = apply(patient, op("delete", "Patient.name[1].given[0]"), op("delete", "Patient.name[1].use"))
    assert result["name"] == [patient["name"][0]]


def test_delete_a_choice_element(observation: dict[str, Any]) -> None:
    assert "valueQuantity" not in apply(observation, op("delete", "Observation.value"))


def test_delete_with_first_and_last(patient: dict[str, Any]) -> None:
    result = apply(patient, op("delete", "Patient.name.first().given.last()"))
    assert result["name"][0]["given"] == ["Peter"]
    result = apply(patient, op("delete", "Patient.identifier.first()"))
    assert [i["value"] for i in result["identifier"]] == ["999-99-9999"]


def test_delete_primitive_selected_with_this(patient: dict[str, Any]) -> None:
    result = apply(patient, op("delete", "Patient.name.given.where($this = 'James')"))
    assert result["name"][0]["given"] == ["Peter"]


# --- replace ----------------------------------------------------------------------------------


def test_replace_birth_date(patient: dict[str, Any]) -> None:
    result = apply(patient, op("replace", "Patient.birthDate", value={"valueDate": "1930-01-01"}))
    assert result["birthDate"] == "1930-01-01"


def test_replace_nested_list_item(patient: dict[str, Any]) -> None:
    result = apply(patient, op("replace", "Patient.name[0].given[1]", value={"valueString": "Jacob"}))
    assert result["name"][0]["given"] == ["Peter", "Jacob"]


def test_replace_with_where_and_complex_criteria(patient: dict[str, Any]) -> None:
    path = "Patient.name.where(use = 'official' and family.exists()).family"
    result = apply(patient, op("replace", path, value={"valueString": "Smith"}))
    assert result["name"][0]["family"] == "Smith"


def test_replace_whole_list_item_from_parts(patient: dict[str, Any]) -> None:
    value = {"part": [{"name": "family", "valueString": "Doe"}, {"name": "given", "valueString": "J"}]}
    result = apply(patient, op("replace", "Patient.name[1]", value=value))
    assert result["name"][1] == {"family": "Doe", "given": ["J"]}


def test_replace_choice_element_with_another_type(observation: dict[str, Any]) -> None:
    observation["_valueQuantity"] = {"id": "x"}
    result = apply(observation, op("replace", "Observation.value", value={"valueString": "heavy"}))
    assert result["valueString"] == "heavy"
    assert "valueQuantity" not in result and "_valueQuantity" not in result


def test_replace_inside_choice_element_keeps_decimal(observation: dict[str, Any]) -> None:
    result = apply(
        observation, op("replace", "Observation.value.value", value={"valueDecimal": Decimal("80.0")})
    )
    assert result["valueQuantity"] == {"value": Decimal("80.0"), "unit": "kg"}
    assert str(result["valueQuantity"]["value"]) == "80.0"


def test_of_type_selects_choice_variant(observation: dict[str, Any]) -> None:
    result = apply(
        observation, op("replace", "Observation.value.ofType(Quantity).unit", value={"valueString": "g"})
    )
    assert result["valueQuantity"]["unit"] == "g"
    assert apply(observation, op("delete", "Observation.value.ofType(string)")) == observation


def test_where_can_compare_decimals(observation: dict[str, Any]) -> None:
    result = apply(observation, op("delete", "Observation.value.where(value > 70).unit"))
    assert result["valueQuantity"] == {"value": Decimal("72.50")}


def test_contained_resources_are_typed(patient: dict[str, Any]) -> None:
    patient["contained"] = [{"resourceType": "Organization", "id": "o", "name": "Acme"}]
    path = "Patient.contained.ofType(Organization).name"
    result = apply(patient, op("replace", path, value={"valueString": "Acme Inc"}))
    assert result["contained"][0]["name"] == "Acme Inc"


# --- move -------------------------------------------------------------------------------------


def test_move_names(patient: dict[str, Any]) -> None:
    result = apply(patient, op("move", "Patient.name", source=0, destination=1))
    assert [n["use"] for n in result["name"]] == ["usual", "official"]


def test_move_within_nested_list(patient: dict[str, Any]) -> None:
    patient["name"][0]["given"].append("Paul")
    patient["name"][0]["_given"] = [{"id": "p"}, None, None]
    result = apply(patient, op("move", "Patient.name[0].given", source=0, destination=2))
    assert result["name"][0]["given"] == ["James", "Paul", "Peter"]
    assert result["name"][0]["_given"] == [None, None, {"id": "p"}]


# --- general behaviour ------------------------------------------------------------------------


def test_operations_apply_in_order(patient: dict[str, Any]) -> None:
    result = apply(
        patient,
        op("add", "Patient", name="active", value={"valueBoolean": False}),
        op("replace", "Patient.active", value={"valueBoolean": True}),
        op("delete", "Patient.gender"),
    )
    assert result["active"] is True and "gender" not in result


def test_paths_without_the_type_prefix_and_with_backticks(patient: dict[str, Any]) -> None:
    result = apply(patient, op("replace", "`name`[0] . family", value={"valueString": "X"}))
    assert result["name"][0]["family"] == "X"


def test_a_path_for_another_resource_type_matches_nothing(patient: dict[str, Any]) -> None:
    assert apply(patient, op("delete", "Observation.status")) == patient


def test_input_and_parameters_are_not_mutated(patient: dict[str, Any]) -> None:
    before = copy.deepcopy(patient)
    document = patch(
        op("replace", "Patient.birthDate", value={"valueDate": "2000-01-01"}),
        op("add", "Patient", name="telecom", value={"valueContactPoint": {"value": "2"}}),
        op("delete", "Patient.identifier[0]"),
        op("insert", "Patient.name[0].given", index=0, value={"valueString": "A"}),
        op("move", "Patient.name", source=1, destination=0),
    )
    document_before = copy.deepcopy(document)
    result = apply_fhirpath_patch(patient, document)
    assert patient == before and document == document_before
    result["telecom"][1]["value"] = "changed"
    assert document == document_before


def test_empty_patch_returns_an_equal_copy(patient: dict[str, Any]) -> None:
    result = apply_fhirpath_patch(patient, {"resourceType": "Parameters"})
    assert result == patient and result is not patient


# --- errors -----------------------------------------------------------------------------------


def test_not_a_parameters_resource(patient: dict[str, Any]) -> None:
    documents: list[Any] = [{"resourceType": "Patient"}, [], {"resourceType": "Parameters", "parameter": {}}]
    for document in documents:
        with pytest.raises(Invalid) as info:
            apply_fhirpath_patch(patient, document)
        assert info.value.error_code == "patch-invalid"


def test_parameter_not_named_operation(patient: dict[str, Any]) -> None:
    error = failure(patient, {"name": "op", "part": []})
    assert error.issues[0].expression == "Parameters.parameter[0]"


@pytest.mark.parametrize(
    ("operation", "words"),
    [
        (op("upsert", "Patient.gender", value={"valueCode": "male"}), "type"),
        (op(None, "Patient.gender", value={"valueCode": "male"}), "type"),
        (op("replace", None, value={"valueCode": "male"}), "path"),
        (op("replace", "Patient.gender"), "value"),
        (op("add", "Patient", value={"valueCode": "male"}), "name"),
        (op("add", "Patient", name="gender"), "value"),
        (op("insert", "Patient.name", value={"valueHumanName": {}}), "index"),
        (op("insert", "Patient.name", index=0), "value"),
        (op("move", "Patient.name", source=0), "destination"),
        (op("move", "Patient.name", destination=0), "source"),
        (op("replace", "Patient.gender", value={"name": "value"}), "value"),
    ],
)
def test_missing_or_unknown_parts(patient: dict[str, Any], operation: dict[str, Any], words: str) -> None:
    error = failure(patient, operation)
    assert words in error.issues[0].message
    assert error.issues[0].expression == "Parameters.parameter[0]"


@pytest.mark.parametrize(
    "path",
    [
        "Patient..name",
        "Patient.name[",
        "Patient.name[x]",
        "Patient.name.where(use = 'official'",
        "Patient.name.where()",
        "Patient.name.first(1)",
        "Patient.name.resolve()",
        "Patient.name.ofType('x' + 1)",
        "Patient.name.where(use = = )",
        "Patient.name +",
        "Patient.name.where(use = 'x)'",
    ],
)
def test_unparseable_paths(patient: dict[str, Any], path: str) -> None:
    error = failure(patient, op("delete", path))
    assert error.issues[0].expression == "Parameters.parameter[0]"


@pytest.mark.parametrize(
    "operation",
    [
        op("add", "Patient.contact", name="gender", value={"valueCode": "male"}),
        op("replace", "Patient.deceased", value={"valueBoolean": True}),
        op("replace", "Patient.name.where(use = 'old')", value={"valueHumanName": {}}),
        op("insert", "Patient.contact[0].telecom", index=0, value={"valueContactPoint": {}}),
        op("move", "Patient.contact[0].telecom", source=0, destination=0),
    ],
)
def test_path_matching_nothing(patient: dict[str, Any], operation: dict[str, Any]) -> None:
    assert "nothing" in failure(patient, operation).issues[0].message


@pytest.mark.parametrize(
    "operation",
    [
        op("replace", "Patient.name.given", value={"valueString": "X"}),
        op("add", "Patient.name", name="text", value={"valueString": "X"}),
        op("delete", "Patient.identifier"),
        op("insert", "Patient.name.given", index=0, value={"valueString": "X"}),
    ],
)
def test_path_matching_several_elements(patient: dict[str, Any], operation: dict[str, Any]) -> None:
    failure(patient, operation)


@pytest.mark.parametrize(
    "operation",
    [
        op("insert", "Patient.identifier", index=3, value={"valueIdentifier": {}}),
        op("insert", "Patient.identifier", index=-1, value={"valueIdentifier": {}}),
        op("move", "Patient.identifier", source=2, destination=0),
        op("move", "Patient.identifier", source=0, destination=2),
        op("move", "Patient.address", source=0, destination=0),
    ],
)
def test_index_out_of_range(patient: dict[str, Any], operation: dict[str, Any]) -> None:
    assert "outside" in failure(patient, operation).issues[0].message


def test_insert_into_a_single_element(patient: dict[str, Any]) -> None:
    failure(patient, op("insert", "Patient.birthDate", index=0, value={"valueDate": "2000"}))


def test_choice_value_of_a_disallowed_type(observation: dict[str, Any]) -> None:
    failure(observation, op("add", "Observation", name="value", value={"valueAddress": {}}))


def test_error_names_the_failing_operation(patient: dict[str, Any]) -> None:
    error = failure(
        patient,
        op("delete", "Patient.gender"),
        op("replace", "Patient.birthDate", value={"valueDate": "2000-01-01"}),
        op("replace", "Patient.gender", value={"valueCode": "female"}),  # deleted by operation 0
    )
    assert [i.expression for i in error.issues] == ["Parameters.parameter[2]"]


def test_every_malformed_operation_is_reported(patient: dict[str, Any]) -> None:
    error = failure(
        patient,
        op("delete", "Patient.gender"),
        op("bogus", "Patient.gender"),
        op("replace", "Patient.gender"),
    )
    assert [i.expression for i in error.issues] == ["Parameters.parameter[1]", "Parameters.parameter[2]"]
    assert error.to_outcome()["issue"][0]["expression"] == ["Parameters.parameter[1]"]
