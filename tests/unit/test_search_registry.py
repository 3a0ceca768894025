"""The search parameter registry against the official R4 definitions (searchparameter.html)."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import pytest

from fhir_server.model.schema import resource_types
from fhir_server.search.registry import (
    EXPRESSION_OVERRIDES,
    compartment_params,
    narrow,
    official_params,
    search_param,
    search_params,
    split_union,
)
from tests.conftest import SHARED

CORE_TYPES = ["Patient", "Consent", "Appointment", "Coverage", "AllergyIntolerance", "Observation"]


@cache
def official() -> list[dict[str, Any]]:
    bundle = json.loads((SHARED / "fhir-r4" / "search-parameters.json").read_bytes())
    return [entry["resource"] for entry in bundle["entry"]]


def official_codes(resource_type: str, domain: bool = True) -> set[str]:
    bases = {resource_type, "Resource"} | ({"DomainResource"} if domain else set())
    return {p["code"] for p in official() if bases & set(p["base"])}


def test_the_bundle_holds_1375_definitions() -> None:
    assert len(official()) == 1375


def test_patient_has_exactly_its_own_and_the_common_parameters() -> None:
    expected = official_codes("Patient")
    own = {p["code"] for p in official() if "Patient" in p["base"]}
    common = {p["code"] for p in official() if {"Resource", "DomainResource"} & set(p["base"])}
    assert len(expected) == len(own) + len(common)  # no code is both
    assert set(official_params("Patient")) == expected
    assert {"_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_text", "_content"} <= expected


def test_every_type_has_its_parameters() -> None:
    for resource_type in resource_types():
        domain = resource_type not in ("Bundle", "Binary", "Parameters")
        assert set(official_params(resource_type)) == official_codes(resource_type, domain), resource_type


@pytest.mark.parametrize("resource_type", CORE_TYPES)
def test_core_types_have_every_parameter_with_its_type(resource_type: str) -> None:
    for definition in official():
        if resource_type in definition["base"]:
            param = search_param(resource_type, definition["code"])
            assert param is not None, definition["code"]
            assert param.type == definition["type"]
            assert param.url == definition["url"]
            assert param.targets == tuple(definition.get("target", ()))
            if definition["type"] == "special":
                assert param.table is None
            elif definition["type"] == "composite":
                assert param.table == "composite"
                assert [c.definition for c in param.components] == [c["definition"] for c in definition["component"]]
            else:
                assert param.table == definition["type"]


def test_union_expressions_are_narrowed_to_the_type() -> None:
    assert search_param("Patient", "birthdate").expression == "Patient.birthDate"  # type: ignore[union-attr]
    assert search_param("Person", "birthdate").expression == "Person.birthDate"  # type: ignore[union-attr]
    param = search_param("Observation", "patient")
    assert param is not None and param.expression == "Observation.subject.where(resolve() is Patient)"
    # The shared definition lists Group as a target, though the expression only admits Patients.
    assert param.targets == ("Patient", "Group")
    code = search_param("Observation", "code-value-quantity")
    assert code is not None and code.type == "composite" and code.expression == "Observation"
    assert [c.expression for c in code.components] == ["code", "value.as(Quantity)"]


def test_common_parameters_keep_their_base_expression() -> None:
    tag = search_param("Observation", "_tag")
    assert tag is not None and tag.expression == "Resource.meta.tag" and tag.type == "token"
    assert search_param("Bundle", "_text") is None  # Bundle is not a DomainResource
    text = search_param("Patient", "_text")
    assert text is not None and text.expression is None and text.table is None


def test_unindexable_parameters_have_no_expression() -> None:
    near = search_param("Location", "near")
    assert near is not None and near.type == "special" and near.expression is None and near.table is None
    content = search_param("Patient", "_content")
    assert content is not None and content.expression is None


def test_the_registry_is_read_only_and_unknown_types_are_empty() -> None:
    with pytest.raises(TypeError):
        search_params("Patient")["x"] = None  # type: ignore[index]
    assert dict(search_params("NotAType")) == {}
    assert search_param("Patient", "no-such-code") is None


def test_overrides_name_real_parameters() -> None:
    for (resource_type, code), expression in EXPRESSION_OVERRIDES.items():
        param = search_param(resource_type, code)
        assert param is not None and param.expression == expression


def test_split_union_respects_parentheses_and_strings() -> None:
    assert split_union("A.b | (A.c as Quantity) | A.d.where(e = 'x|y')") == [
        "A.b",
        "(A.c as Quantity)",
        "A.d.where(e = 'x|y')",
    ]
    assert narrow("Patient.name | Person.name | Resource.meta.tag", "Patient") == "Patient.name | Resource.meta.tag"
    assert narrow("Person.name", "Patient") is None
    assert narrow("name | alias", "InsurancePlan") == "name | alias"


def test_patient_compartment() -> None:
    assert compartment_params("Patient", "Observation") == ("subject", "performer")
    assert compartment_params("Patient", "AllergyIntolerance") == ("patient", "recorder", "asserter")
    assert compartment_params("Patient", "Patient") == ("link",)
    assert compartment_params("Patient", "Organization") == ()
    assert compartment_params("Patient", "NotAType") == ()
    assert compartment_params("Encounter", "Observation") == ()


def test_compartment_parameters_exist() -> None:
    for resource_type in resource_types():
        for code in compartment_params("Patient", resource_type):
            param = search_param(resource_type, code)
            assert param is not None and param.type == "reference", (resource_type, code)


def test_custom_parameters_join_the_official_ones_in_a_new_generation() -> None:
    from fhir_server.search import registry

    before = registry.generation()
    definition = {
        "url": "http://example.org/sp/unit-test-nick",
        "code": "unit-test-nick",
        "base": ["Patient"],
        "type": "string",
        "expression": "Patient.name.given",
    }
    with registry.official_only():
        registry.install_custom([definition], set())
        assert registry.generation() == before + 2
        assert search_param("Patient", "unit-test-nick") is not None
        assert registry.official_param("Patient", "unit-test-nick") is None
        assert not registry.is_ready(search_param("Patient", "unit-test-nick"))
        assert registry.is_ready(search_param("Patient", "name"))
    assert registry.official_param("Patient", "unit-test-nick") is None
