"""Search value extraction: the compiled expressions agree with fhirpathpy on every official
example, and values become the index rows clauses.py describes (R4 search.html#ptypes)."""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from typing import Any

import fhirpathpy
import pytest
from fhirpathpy.engine.nodes import FP_Type, ResourceNode
from fhirpathpy.models import models

from fhir_server.model.schema import resource_types
from fhir_server.search import indexing
from fhir_server.search.clauses import IndexRow
from fhir_server.search.extract import extractor, index_rows
from fhir_server.search.fhirpath_compile import compile_expression, resolve
from fhir_server.search.fhirpath_parse import Unsupported
from fhir_server.search.normalize import normalize, split_reference, ucum_canonical
from fhir_server.search.registry import search_params
from tests.conftest import EXAMPLES

# --- equivalence with fhirpathpy ----------------------------------------------------------------

_ROOT: dict[str, Any] = {}


def _resolve(inputs: list[Any]) -> list[Any]:
    # The same no-fetch resolve() as the compiled form (it is unit-tested on its own below).
    return [ResourceNode.create_node(v, t) for i in inputs for v, t in resolve((i, "Reference"), _ROOT["root"])]


@cache
def reference_path(expression: str) -> Any:
    table = {"resolve": {"fn": _resolve, "arity": {0: []}}}
    return fhirpathpy.compile(expression, models["r4"], options={"userInvocationTable": table})


def for_fhirpathpy(expression: str, resource_type: str) -> str:
    """fhirpathpy finds nothing for a supertype at the root (`Resource.meta.tag` on a Patient),
    which FHIRPath allows (fhirpath.html#paths-and-polymorphic-items): name the type instead."""
    return re.sub(r"\b(Resource|DomainResource)\.", resource_type + ".", expression)


def as_of_type(expression: str) -> str:
    """fhirpathpy makes `x as T` an error when x has several items; R4 expressions apply it to
    collections (`Observation.component.value as Quantity`), meaning what `ofType` does."""
    expression = re.sub(r"\(([A-Za-z.]+) as (\w+)\)", r"\1.ofType(\2)", expression)
    return expression.replace(".as(", ".ofType(")


def comparable(values: list[Any]) -> list[str]:
    return sorted(json.dumps(str(v) if isinstance(v, FP_Type) else v, sort_keys=True, default=str) for v in values)


@dataclass
class Comparison:
    compared: int = 0
    non_empty: Counter[str] = field(default_factory=Counter)
    mismatches: list[tuple[str, str, str, list[str], list[str]]] = field(default_factory=list)
    rewritten: set[tuple[str, str]] = field(default_factory=set)


def _fhirpathpy_values(expression: str, resource: dict[str, Any], comparison: Comparison, code: str) -> list[Any]:
    _ROOT["root"] = resource
    expression = for_fhirpathpy(expression, resource["resourceType"])
    try:
        return list(reference_path(expression)(resource))
    except ValueError as error:
        if "singleton" not in str(error):
            raise
        comparison.rewritten.add((resource["resourceType"], code))
        return list(reference_path(as_of_type(expression))(resource))


def load(path: Any) -> dict[str, Any]:
    return json.loads(path.read_bytes(), parse_float=Decimal)


@cache
def comparison() -> Comparison:
    """Every parameter with an expression on every official example (Bundles included)."""
    result = Comparison()
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = load(path)
        for code, param in search_params(resource["resourceType"]).items():
            if param.expression is None:
                continue
            mine = comparable([value for value, _ in compile_expression(param.expression)(resource)])
            theirs = comparable(_fhirpathpy_values(param.expression, resource, result, code))
            result.compared += 1
            if mine:
                result.non_empty[param.expression] += 1
            if mine != theirs:
                result.mismatches.append((path.name, code, param.expression, mine, theirs))
    return result


def test_every_official_expression_compiles() -> None:
    for resource_type in resource_types():
        for code, param in search_params(resource_type).items():
            if param.expression is not None:
                try:
                    compile_expression(param.expression)
                except Unsupported as error:  # pragma: no cover - the message names the culprit
                    pytest.fail(f"{resource_type}.{code}: {param.expression}: {error}")


def test_compiled_extraction_equals_fhirpathpy_on_every_official_example() -> None:
    result = comparison()
    assert result.compared > 15_000
    assert result.mismatches == []


@pytest.mark.parametrize(
    "construct",
    ["where(resolve() is", "where(system=", "where(type=", " as ", ".as(", "|", "[0]", "exists() and", "Resource."],
)
def test_the_comparison_exercises_every_construct(construct: str) -> None:
    assert sum(n for expression, n in comparison().non_empty.items() if construct in expression) > 0


def test_only_casts_on_collections_needed_of_type_for_fhirpathpy() -> None:
    rewritten = comparison().rewritten
    assert rewritten  # Observation component values, Medication ingredients, useContext values...
    for resource_type, code in rewritten:
        expression = search_params(resource_type)[code].expression or ""
        assert " as " in expression or ".as(" in expression


def test_fallback_to_fhirpathpy_outside_the_subset() -> None:
    with pytest.raises(Unsupported):
        compile_expression("Patient.name.given.first()")
    patient = {"resourceType": "Patient", "name": [{"family": "A", "given": ["B", "C"]}, {"given": ["D"]}]}
    assert extractor("Patient.name.given.first()")(patient) == [("B", "string")]
    assert extractor("Patient.name.first()")(patient) == [({"family": "A", "given": ["B", "C"]}, "HumanName")]
    assert extractor("Patient.name.given")(patient) == [("B", "string"), ("C", "string"), ("D", "string")]


# --- resolve() and references --------------------------------------------------------------------


def test_resolve_reads_the_type_from_the_reference() -> None:
    root = {"resourceType": "Observation", "contained": [{"resourceType": "Patient", "id": "p"}]}
    assert resolve(({"reference": "Patient/1"}, "Reference"), root) == [({"resourceType": "Patient"}, "Patient")]
    assert resolve(({"reference": "http://x.org/fhir/Group/9/_history/2"}, "Reference"), root)[0][1] == "Group"
    assert resolve(({"reference": "#p"}, "Reference"), root) == [(root["contained"][0], "Patient")]
    assert resolve(({"reference": "#missing"}, "Reference"), root) == []
    assert resolve(({"reference": "urn:uuid:0e3f6c2a-93c1-4d6f-b6a1-0b0e3f6c2a11"}, "Reference"), root) == []
    assert resolve(({"identifier": {"value": "x"}}, "Reference"), root) == []
    assert resolve(({"reference": "Unknown/1"}, "Reference"), root) == []


def test_where_resolve_is_follows_the_reference_type() -> None:
    patient = compile_expression("Observation.subject.where(resolve() is Patient)")
    observation = {"resourceType": "Observation", "subject": {"reference": "Group/1"}}
    assert patient(observation) == []
    observation["subject"] = {"reference": "Patient/1"}
    assert patient(observation) == [({"reference": "Patient/1"}, "Reference")]


def test_split_reference() -> None:
    assert split_reference("Patient/1") == ("Patient", "1", None)
    assert split_reference("Patient/1/_history/3") == ("Patient", "1", None)
    assert split_reference("https://h.org/fhir/Patient/1") == ("Patient", "1", "https://h.org/fhir")
    assert split_reference("http://hl7.org/fhir/ValueSet/x|1.0") is None
    assert split_reference("urn:uuid:0e3f6c2a-93c1-4d6f-b6a1-0b0e3f6c2a11") is None
    assert split_reference("Nope/1") is None


# --- normalisation -------------------------------------------------------------------------------


def test_normalize() -> None:
    assert normalize("  Zoë\tMÜLLER  ") == "zoe muller"
    assert normalize("Straße") == "strasse"
    assert normalize("ﬁne") == "fine"  # NFKD compatibility ligature
    assert normalize("Peter") == "peter"


def test_ucum_canonical() -> None:
    assert ucum_canonical(Decimal("72.5"), "kg") == ("g", Decimal("72500.0"))
    assert ucum_canonical(Decimal("5.4"), "mg") == ("g", Decimal("0.0054"))
    assert ucum_canonical(Decimal(2), "h") == ("s", Decimal(7200))
    assert ucum_canonical(Decimal(250), "mL") == ("L", Decimal("0.250"))
    assert ucum_canonical(Decimal(1), "mm[Hg]") is None


# --- conversion to index rows --------------------------------------------------------------------


def rows_by_param(rows: list[IndexRow]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    found: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for row in rows:
        found.setdefault(row.param, []).append((row.kind, row.values))
    return found


def S(text: str, exact: str) -> tuple[str, dict[str, Any]]:  # noqa: N802
    return ("string", {"value": text, "exact": exact})


def T(system: str | None, code: str | None, text: str | None = None) -> tuple[str, dict[str, Any]]:  # noqa: N802
    return ("token", {"system": system, "code": code, "text": text})


def R(kind: str | None, ident: str | None, url: str | None = None) -> tuple[str, dict[str, Any]]:  # noqa: N802
    return ("reference", {"target_type": kind, "target_id": ident, "url": url})


def D(low: datetime | None, high: datetime | None) -> tuple[str, dict[str, Any]]:  # noqa: N802
    return ("date", {"low": low, "high": high})


def Q(system: str | None, code: str | None, low: float | None, high: float | None, canonical: Any = None):  # noqa: N802
    c_code, c_low, c_high = canonical or (None, None, None)
    values = {"system": system, "code": code, "low": low, "high": high}
    values |= {"canonical_code": c_code, "canonical_low": c_low, "canonical_high": c_high}
    return ("quantity", values)


UCUM = "http://unitsofmeasure.org"

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p1",
    "meta": {
        "tag": [{"system": "http://acme.org/tags", "code": "vip", "display": "V.I.P."}],
        "profile": ["http://acme.org/StructureDefinition/p"],
    },
    "identifier": [{"system": "http://acme.org/mrn", "value": "MRN-1", "type": {"text": "Medical  Record"}}],
    "active": True,
    "name": [{"use": "official", "family": "Müller", "given": ["Zoë", "Anne  Marie"], "prefix": ["Dr."]}],
    "telecom": [{"system": "phone", "value": "+41 44 000 00 00"}, {"system": "email", "value": "zoe@example.org"}],
    "gender": "female",
    "birthDate": "1980-05",
    "deceasedDateTime": "2020-01-02T03:04:05+01:00",
    "address": [{"line": ["Bahnhofstrasse 1"], "city": "Zürich", "postalCode": "8001", "country": "CH"}],
    "generalPractitioner": [
        {"reference": "Practitioner/pr1"},
        {"reference": "https://other.example/fhir/Organization/o9/_history/2"},
    ],
    "managingOrganization": {"reference": "urn:uuid:8c3e8f8e-1111-4222-8333-944455556666"},
    "link": [{"other": {"reference": "#c1"}, "type": "seealso"}],
    "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "de-CH"}]}}],
}


def test_patient_rows() -> None:
    name_parts = [S("muller", "Müller"), S("zoe", "Zoë"), S("anne marie", "Anne  Marie"), S("dr.", "Dr.")]
    assert rows_by_param(index_rows(PATIENT)) == {
        "_id": [T(None, "p1")],
        "_profile": [("uri", {"value": "http://acme.org/StructureDefinition/p"})],
        "_tag": [T("http://acme.org/tags", "vip", "v.i.p.")],
        "active": [T(None, "true")],
        "address": [S("bahnhofstrasse 1", "Bahnhofstrasse 1"), S("zurich", "Zürich"), S("8001", "8001"), S("ch", "CH")],
        "address-city": [S("zurich", "Zürich")],
        "address-country": [S("ch", "CH")],
        "address-postalcode": [S("8001", "8001")],
        "birthdate": [D(datetime(1980, 5, 1), datetime(1980, 6, 1))],
        "death-date": [D(datetime(2020, 1, 2, 2, 4, 5), datetime(2020, 1, 2, 2, 4, 6))],
        "deceased": [T(None, "true")],
        "email": [T(None, "zoe@example.org")],
        "family": [S("muller", "Müller")],
        "gender": [T(None, "female")],
        "general-practitioner": [
            R("Practitioner", "pr1"),
            R("Organization", None, "https://other.example/fhir/Organization/o9/_history/2"),  # another server
        ],
        "given": [S("zoe", "Zoë"), S("anne marie", "Anne  Marie")],
        "identifier": [T("http://acme.org/mrn", "MRN-1", "medical record")],
        "language": [T("urn:ietf:bcp:47", "de-CH")],
        "name": name_parts,
        "organization": [R(None, None, "urn:uuid:8c3e8f8e-1111-4222-8333-944455556666")],
        "phone": [T(None, "+41 44 000 00 00")],
        "phonetic": name_parts,
        "telecom": [T(None, "+41 44 000 00 00"), T(None, "zoe@example.org")],
    }  # `link` is a contained reference (#c1): nothing to index


OBSERVATION: dict[str, Any] = {
    "resourceType": "Observation",
    "id": "o1",
    "status": "final",
    "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body Weight"}], "text": "Weight"},
    "subject": {"reference": "Patient/p1"},
    "effectivePeriod": {"start": "2024-03-01T10:00:00Z"},
    "performer": [{"reference": "Practitioner/pr1"}],
    "valueQuantity": {"value": Decimal("72.5"), "unit": "kg", "system": UCUM, "code": "kg"},
    "component": [
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
            "valueQuantity": {"value": Decimal(120), "comparator": "<", "system": UCUM, "code": "mm[Hg]"},
        },
        {"code": {"text": "Note"}, "valueString": "fine"},
    ],
}


def test_observation_rows() -> None:
    weight = Q(UCUM, "kg", 72.5, 72.5, ("g", 72500.0, 72500.0))
    pressure = Q(UCUM, "mm[Hg]", None, 120.0)
    codes = [T("http://loinc.org", "29463-7", "body weight"), T(None, None, "weight")]
    component_codes = [T("http://loinc.org", "8480-6"), T(None, None, "note")]
    simple = [row for row in index_rows(OBSERVATION) if row.kind != "composite"]  # see test_search_composite.py
    assert rows_by_param(simple) == {
        "_id": [T(None, "o1")],
        "code": codes,
        "combo-code": codes + component_codes,
        "combo-value-quantity": [weight, pressure],
        "component-code": component_codes,
        "component-value-quantity": [pressure],
        "date": [D(datetime(2024, 3, 1, 10), None)],
        "patient": [R("Patient", "p1")],
        "performer": [R("Practitioner", "pr1")],
        "status": [T(None, "final")],
        "subject": [R("Patient", "p1")],
        "value-quantity": [weight],
    }


def rows(resource_type: str, param: str, **elements: Any) -> list[tuple[str, dict[str, Any]]]:
    found = rows_by_param(index_rows({"resourceType": resource_type, **elements}))
    return found.get(param, [])


def test_dates() -> None:
    assert rows("Encounter", "date", period={"end": "2024"}) == [D(None, datetime(2025, 1, 1))]
    assert rows("Encounter", "date", period={"start": "2024-02-03", "end": "2024-02-04"}) == [
        D(datetime(2024, 2, 3), datetime(2024, 2, 5))
    ]
    assert rows("Patient", "birthdate", birthDate="not a date") == []
    assert rows("Immunization", "date", occurrenceString="last spring") == []
    assert rows("Immunization", "date", occurrenceString="2019-04") == [D(datetime(2019, 4, 1), datetime(2019, 5, 1))]
    assert rows("Encounter", "date", period={"start": "2024", "end": "9999-12-31"}) == [D(datetime(2024, 1, 1), None)]
    assert rows("Patient", "birthdate", birthDate="9999-12-31") == []  # ends past datetime.max
    timing = {"event": ["2024-01-01", "2024-01-03"], "repeat": {"boundsPeriod": {"start": "2024-01-01"}}}
    assert rows("ServiceRequest", "occurrence", occurrenceTiming=timing) == [
        D(datetime(2024, 1, 1), datetime(2024, 1, 2)),
        D(datetime(2024, 1, 3), datetime(2024, 1, 4)),
        D(datetime(2024, 1, 1), None),
    ]


def test_tokens() -> None:
    assert rows("Patient", "active", active=False) == [T(None, "false")]
    assert rows("Observation", "code", code={"text": "Only text"}) == [T(None, None, "only text")]
    assert rows("Patient", "identifier", identifier=[{"value": "x"}, {"system": "s"}, {"use": "usual"}]) == [
        T(None, "x"),
        T("s", None),
    ]
    assert rows("Patient", "_security", meta={"security": [{"code": "R"}]}) == [T(None, "R")]


def test_quantities_and_numbers() -> None:
    price = {"value": Decimal("12.50"), "currency": "EUR"}
    assert rows("ChargeItem", "price-override", priceOverride=price) == [Q("urn:iso:std:iso:4217", "EUR", 12.5, 12.5)]
    age = {"value": 40, "system": UCUM, "code": "a"}
    assert rows("Condition", "onset-age", onsetAge=age) == [Q(UCUM, "a", 40.0, 40.0)]
    length = {"value": Decimal(90), "system": UCUM, "code": "min", "comparator": ">="}
    assert rows("Encounter", "length", length=length) == [Q(UCUM, "min", 90.0, None, ("s", 5400.0, None))]
    no_system = {"value": 3, "code": "mg"}
    assert rows("Observation", "value-quantity", valueQuantity=no_system) == [Q(None, "mg", 3.0, 3.0)]
    assert rows("RiskAssessment", "probability", prediction=[{"probabilityDecimal": Decimal("0.02")}]) == [
        ("number", {"low": Decimal("0.02"), "high": Decimal("0.02")})
    ]
    ranged = {"probabilityRange": {"low": {"value": 1}, "high": {"value": 5}}}
    assert rows("RiskAssessment", "probability", prediction=[ranged]) == [
        ("number", {"low": Decimal(1), "high": Decimal(5)})
    ]


def test_references_and_uris() -> None:
    canonical = "http://acme.org/PlanDefinition/p|1.0"
    assert rows("CarePlan", "instantiates-canonical", instantiatesCanonical=[canonical]) == [R(None, None, canonical)]
    assert rows("CarePlan", "instantiates-uri", instantiatesUri=["http://a.org/x"]) == [
        ("uri", {"value": "http://a.org/x"})
    ]
    assert rows("Consent", "source-reference", sourceAttachment={"url": "http://a.org/doc"}) == []
    document = {"type": "document", "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}]}
    assert rows("Bundle", "composition", **document) == [R("Composition", "c1")]
    transaction = {"type": "transaction", "entry": [{"resource": {"resourceType": "Patient", "id": "p1"}}]}
    assert rows("Bundle", "composition", **transaction) == []


def test_duplicate_values_give_one_row() -> None:
    patient = {"resourceType": "Patient", "name": [{"given": ["Ann"]}, {"given": ["Ann"], "family": "Ann"}]}
    assert rows_by_param(index_rows(patient))["name"] == [S("ann", "Ann")]


def test_writes_index_everything_but_the_resource_columns() -> None:
    written = rows_by_param(indexing.index_rows(PATIENT))
    assert "_id" not in written and "_lastUpdated" not in written
    assert written["identifier"] == [T("http://acme.org/mrn", "MRN-1", "medical record")]
    assert written["family"] == [S("muller", "Müller")]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.stem)
def test_every_official_example_indexes(path: Any) -> None:
    resource = load(path)
    params = search_params(resource["resourceType"])
    for row in index_rows(resource):
        code, _, derived = row.param.partition(":")  # `subject:identifier`, `identifier:of-type`
        assert code in params
        assert derived in ("", {"reference": "identifier", "token": "of-type"}.get(params[code].table or ""))
        assert row.kind == ("token" if derived else params[code].table)
        assert any(value is not None for value in row.values.values())
