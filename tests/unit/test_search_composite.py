"""Composite parameters (registry, parsing, extraction), and the rows behind reference
`:identifier` and token `:of-type` (R4 search.html#composite, #reference, #token)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

from fhir_server.errors import Invalid
from fhir_server.search.clauses import CompositeValue, IndexRow, NumberValue, ParamClause, QuantityValue, Token
from fhir_server.search.extract import COMPOSITE_COLUMNS, index_rows
from fhir_server.search.params import of_type_code
from fhir_server.search.query import parse_search
from fhir_server.search.registry import _all_params, _definitions, search_param
from fhir_server.store.schema import composite_index

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
VALUE = "search-value-invalid"
MODIFIER = "search-modifier-unsupported"
UNSUPPORTED = "search-parameter-unsupported"

# --- registry ----------------------------------------------------------------------------------


def test_every_composite_component_has_the_type_of_its_definition() -> None:
    types = {definition["url"]: definition["type"] for definition in _definitions()}
    composites = [p for params in _all_params().values() for p in params.values() if p.type == "composite"]
    assert len(composites) > 40
    for param in composites:
        assert param.table == "composite", param.code
        assert [c.type for c in param.components] == [types[c.definition] for c in param.components]


def test_component_expressions_departures() -> None:
    date = search_param("Observation", "code-value-date")
    assert date is not None
    assert [c.expression for c in date.components] == ["code", "value.as(dateTime) | value.as(Period)"]
    relationship = search_param("DocumentReference", "relationship")
    assert relationship is not None
    assert [(c.type, c.expression) for c in relationship.components] == [("reference", "target"), ("token", "code")]


# --- parsing -----------------------------------------------------------------------------------


def parse(name: str, value: str, resource_type: str = "Observation") -> ParamClause:
    request = parse_search(resource_type, [(name, value)], search_param)
    assert len(request.clauses) == 1 and isinstance(request.clauses[0], ParamClause)
    return request.clauses[0]


def problem(name: str, value: str, resource_type: str = "Observation") -> str:
    with pytest.raises(Invalid) as caught:
        parse_search(resource_type, [(name, value)], search_param)
    [issue] = caught.value.issues
    assert issue.expression == name
    return issue.error_code


def test_composite_values_take_each_component_syntax() -> None:
    found = parse("code-value-quantity", f"{LOINC}|8480-6$gt100|{UCUM}|mm[Hg],8462-4$lt90")
    assert found.values == (
        CompositeValue(
            (
                Token(LOINC, "8480-6", True),
                QuantityValue("gt", Decimal(100), Decimal("99.5"), Decimal("100.5"), UCUM, "mm[Hg]"),
            )
        ),
        CompositeValue(
            (
                Token(None, "8462-4", False),
                QuantityValue("lt", Decimal(90), Decimal("89.5"), Decimal("90.5"), None, None),
            )
        ),
    )


def test_prefixes_on_any_component_that_takes_them() -> None:
    found = parse("chromosome-variant-coordinate", "1$lt345$gt123", "MolecularSequence")
    [value] = found.values
    assert isinstance(value, CompositeValue)
    assert value.parts[0] == Token(None, "1", False)
    assert value.parts[1] == NumberValue("lt", Decimal(345), Decimal("344.5"), Decimal("345.5"))
    assert isinstance(value.parts[2], NumberValue) and value.parts[2].prefix == "gt"


def test_escaped_separators_stay_in_the_part() -> None:
    [value] = parse("code-value-string", "a\\$b$x\\,y\\$z").values
    assert isinstance(value, CompositeValue)
    assert value.parts[0] == Token(None, "a$b", False)
    assert value.parts[1].text == "x,y$z"  # type: ignore[union-attr]


@pytest.mark.parametrize("value", ["8480-6", "8480-6$1$2", "8480-6$", "$100", "8480-6$abc", "a|b|c$1"])
def test_malformed_composite_values(value: str) -> None:
    assert problem("code-value-quantity", value) == VALUE


def test_composite_modifiers() -> None:
    assert parse("code-value-quantity:missing", "true").missing is True
    assert problem("code-value-quantity:exact", "x$1") == MODIFIER
    assert problem("_sort", "code-value-quantity") == UNSUPPORTED


# --- extraction --------------------------------------------------------------------------------


def composite(rows: list[IndexRow], param: str) -> list[tuple[int, int, dict[str, Any]]]:
    """(element, component, the non-empty value columns) of one composite's rows."""
    found = []
    for row in rows:
        if row.param == param:
            assert row.kind == "composite" and set(row.values) == {"element_key", "component", *COMPOSITE_COLUMNS}
            values = {k: v for k, v in row.values.items() if v is not None and k not in ("element_key", "component")}
            found.append((row.values["element_key"], row.values["component"], values))
    return found


def quantity(value: float, code: str = "mm[Hg]") -> dict[str, Any]:
    return {"system": UCUM, "code": code, "low": value, "high": value}


OBSERVATION = {
    "resourceType": "Observation",
    "status": "final",
    "code": {"coding": [{"system": LOINC, "code": "85354-9"}]},
    "valueString": "High",
    "component": [
        {
            "code": {"coding": [{"system": LOINC, "code": "8480-6"}]},
            "valueQuantity": {"value": 120, "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"},
        },
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": {"value": 80, "system": UCUM, "code": "mm[Hg]"},
        },
        {"code": {"text": "Comment"}},
    ],
}


def test_one_element_per_component_complete_and_distinct() -> None:
    rows = index_rows(OBSERVATION)
    expected = [
        (0, 0, {"system": LOINC, "code": "8480-6"}),
        (0, 1, quantity(120.0)),
        (1, 0, {"system": LOINC, "code": "8462-4"}),
        (1, 1, quantity(80.0)),
    ]
    assert composite(rows, "component-code-value-quantity") == expected
    assert composite(rows, "combo-code-value-quantity") == expected  # the Observation has no quantity
    assert composite(rows, "code-value-quantity") == []
    assert composite(rows, "code-value-string") == [
        (0, 0, {"system": LOINC, "code": "85354-9"}),
        (0, 1, {"value": "high", "exact": "High"}),
    ]


def test_dates_numbers_and_the_resource_variable() -> None:
    dated = {**OBSERVATION, "valuePeriod": {"start": "2020", "end": "2021"}}
    del dated["valueString"]
    assert composite(index_rows(dated), "code-value-date")[1] == (
        0,
        1,
        {"date_low": datetime(2020, 1, 1), "date_high": datetime(2022, 1, 1)},
    )
    sequence = {
        "resourceType": "MolecularSequence",
        "coordinateSystem": 0,
        "referenceSeq": {"chromosome": {"coding": [{"system": "http://chr", "code": "1"}]}},
        "variant": [{"start": 10, "end": 20}, {"start": 30}],
    }
    assert composite(index_rows(sequence), "chromosome-variant-coordinate") == [
        (0, 0, {"system": "http://chr", "code": "1"}),
        (0, 1, {"low": 10.0, "high": 10.0}),
        (0, 2, {"low": 20.0, "high": 20.0}),
    ]


def test_composite_columns_are_the_tables() -> None:
    owner = {"resource_type", "resource_id", "param", "element_key", "component"}
    assert set(COMPOSITE_COLUMNS) == {column.name for column in composite_index.c} - owner


def test_reference_identifier_rows() -> None:
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "subject": {"identifier": {"system": "urn:mrn", "value": "42", "type": {"text": "MRN"}}},
        "performer": [{"reference": "Practitioner/1", "identifier": {"value": "p-1"}}],
    }
    rows = {(row.param, row.kind): row.values for row in index_rows(observation) if row.param.endswith(":identifier")}
    assert rows == {
        ("subject:identifier", "token"): {"system": "urn:mrn", "code": "42", "text": "mrn"},
        ("performer:identifier", "token"): {"system": None, "code": "p-1", "text": None},
    }


def test_of_type_rows() -> None:
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0203"
    patient = {
        "resourceType": "Patient",
        "identifier": [
            {
                "type": {"coding": [{"system": v2, "code": "MR"}, {"system": "http://local", "code": "a|b"}]},
                "value": "7",
            },
            {"type": {"coding": [{"code": "DL"}], "text": "licence"}, "value": "8"},
            {"type": {"coding": [{"system": v2, "code": "PPN"}]}},
        ],
    }
    rows = [
        (row.values["system"], row.values["code"]) for row in index_rows(patient) if row.param == "identifier:of-type"
    ]
    assert rows == [(v2, "MR|7"), ("http://local", "a\\|b|7")]


def test_of_type_code_is_unambiguous() -> None:
    assert of_type_code("MR", "a|b") != of_type_code("MR|a", "b")
    assert of_type_code("a\\", "b") != of_type_code("a", "\\b")
