"""Search parameter parsing (fhir_server.search.query, R4 search.html) against a small fake registry."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from fhir_server.errors import Invalid
from fhir_server.search.clauses import (
    ChainClause,
    DateValue,
    HasClause,
    IdClause,
    Include,
    LastUpdatedClause,
    NumberValue,
    ParamClause,
    ProtectedToken,
    QuantityValue,
    ReferenceValue,
    SortKey,
    StringValue,
    Token,
    UriValue,
)
from fhir_server.search.params import SearchParam
from fhir_server.search.query import SearchRequest, parse_search
from fhir_server.search.values import OfTypeToken

UNKNOWN = "search-parameter-unknown"
UNSUPPORTED = "search-parameter-unsupported"
MODIFIER = "search-modifier-unsupported"
VALUE = "search-value-invalid"
PREFIXES = ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]


def sp(resource_type: str, code: str, kind: str, targets: tuple[str, ...] = (), indexed: bool = True) -> SearchParam:
    expression = f"{resource_type}.{code}" if indexed else None
    return SearchParam(resource_type, code, kind, expression, targets=targets)


# Defined on every resource type, as the registry does for the Resource parameters.
COMMON = {"_id": "token", "_lastUpdated": "date", "_tag": "token", "_profile": "uri", "_security": "token"}
SUBJECTS = ("Group", "Device", "Patient", "Location")
PARAMS = {
    (p.resource_type, p.code): p
    for p in [
        sp("Patient", "name", "string"),
        sp("Patient", "family", "string"),
        sp("Patient", "birthdate", "date"),
        sp("Patient", "gender", "token"),
        sp("Patient", "identifier", "token"),
        sp("Patient", "alias", "token"),
        sp("Patient", "organization", "reference", ("Organization",)),
        sp("Patient", "general-practitioner", "reference", ("Organization", "Practitioner")),
        sp("Patient", "unindexed", "string", indexed=False),
        sp("Observation", "code", "token"),
        sp("Observation", "subject", "reference", SUBJECTS),
        sp("Observation", "patient", "reference", ("Patient",)),
        sp("Observation", "performer", "reference", ("Practitioner", "Organization", "Patient")),
        sp("Observation", "focus", "reference"),
        sp("Observation", "date", "date"),
        sp("Observation", "value-quantity", "quantity"),
        sp("Observation", "code-value-quantity", "composite"),
        sp("Organization", "name", "string"),
        sp("Organization", "partof", "reference", ("Organization",)),
        sp("Practitioner", "name", "string"),
        sp("Location", "name", "string"),
        sp("Location", "alias", "string"),
        sp("Location", "near", "special", indexed=False),
        sp("Device", "device-name", "string"),
        sp("RiskAssessment", "probability", "number"),
        sp("ValueSet", "url", "uri"),
        sp("AuditEvent", "entity", "reference", ("Observation", "Patient")),
        sp("AuditEvent", "agent-name", "string"),
        sp("Provenance", "target", "reference"),
    ]
}


def lookup(resource_type: str, code: str) -> SearchParam | None:
    if code in COMMON:
        return sp(resource_type, code, COMMON[code])
    return PARAMS.get((resource_type, code))


def P(resource_type: str, code: str) -> SearchParam:  # noqa: N802 - reads like the registry's answer
    param = lookup(resource_type, code)
    assert param is not None
    return param


def parse(params: list[tuple[str, str]], resource_type: str | None = "Patient", **options: object) -> SearchRequest:
    return parse_search(resource_type, params, lookup, **options)  # type: ignore[arg-type]


def clause(name: str, value: str, resource_type: str | None = "Patient", **options: object) -> object:
    request = parse([(name, value)], resource_type, **options)
    assert len(request.clauses) == 1
    return request.clauses[0]


def values(name: str, value: str, resource_type: str = "Patient") -> tuple[object, ...]:
    found = clause(name, value, resource_type)
    assert isinstance(found, ParamClause)
    return found.values


def problems(params: list[tuple[str, str]], resource_type: str | None = "Patient") -> list[tuple[str | None, str]]:
    with pytest.raises(Invalid) as caught:
        parse(params, resource_type)
    assert caught.value.status == 400
    return [(issue.expression, issue.error_code) for issue in caught.value.issues]


def problem(name: str, value: str, resource_type: str | None = "Patient") -> str:
    found = problems([(name, value)], resource_type)
    assert len(found) == 1 and found[0][0] == name
    return found[0][1]


D = Decimal


# --- number (search.html#number) ----------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_number_prefixes(prefix: str) -> None:
    assert values("probability", f"{prefix}100", "RiskAssessment") == (
        NumberValue(prefix, D(100), D("99.5"), D("100.5")),
    )


def test_number_without_prefix_is_eq() -> None:
    assert values("probability", "0.8", "RiskAssessment") == (NumberValue("eq", D("0.8"), D("0.75"), D("0.85")),)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("100", "99.5", "100.5"),
        ("100.00", "99.995", "100.005"),
        ("1.00e2", "99.5", "100.5"),  # "100 and 1.00e2 both have ... three" significant digits
        ("1e2", "50", "150"),  # one significant digit
        ("1.0e2", "95", "105"),
        ("-1.5", "-1.55", "-1.45"),
        ("5.40e-3", "0.005395", "0.005405"),
        ("0", "-0.5", "0.5"),
        (
            "12345678901234567890.123456789012",
            "12345678901234567890.1234567890115",
            "12345678901234567890.1234567890125",
        ),
    ],
)
def test_number_precision_ranges(text: str, low: str, high: str) -> None:
    (value,) = values("probability", text, "RiskAssessment")
    assert isinstance(value, NumberValue)
    assert (value.value, value.low, value.high) == (D(text), D(low), D(high))


@pytest.mark.parametrize("text", ["abc", "01", "1.", ".5", "+1", "xx100", "gt", "1e99999", "1 0", "NaN", "Infinity"])
def test_number_malformed(text: str) -> None:
    assert problem("probability", text, "RiskAssessment") == VALUE


# --- date (search.html#date) ----------------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_date_prefixes(prefix: str) -> None:
    expected = DateValue(prefix, datetime(2013, 1, 14), datetime(2013, 1, 15))
    assert values("birthdate", f"{prefix}2013-01-14") == (expected,)


@pytest.mark.parametrize(
    ("text", "low", "high"),
    [
        ("2013", datetime(2013, 1, 1), datetime(2014, 1, 1)),
        ("2013-12", datetime(2013, 12, 1), datetime(2014, 1, 1)),
        ("2013-02", datetime(2013, 2, 1), datetime(2013, 3, 1)),
        ("2013-01-14", datetime(2013, 1, 14), datetime(2013, 1, 15)),
        ("2013-01-14T10:00Z", datetime(2013, 1, 14, 10), datetime(2013, 1, 14, 10, 1)),
        ("2013-01-14T10:00:05Z", datetime(2013, 1, 14, 10, 0, 5), datetime(2013, 1, 14, 10, 0, 6)),
        ("2013-01-14T10:00:05.5Z", datetime(2013, 1, 14, 10, 0, 5, 500000), datetime(2013, 1, 14, 10, 0, 5, 600000)),
        ("2013-01-14T10:00:05+02:00", datetime(2013, 1, 14, 8, 0, 5), datetime(2013, 1, 14, 8, 0, 6)),
        ("2013-01-14T10:00", datetime(2013, 1, 14, 10), datetime(2013, 1, 14, 10, 1)),  # no zone: UTC
    ],
)
def test_date_ranges_per_precision(text: str, low: datetime, high: datetime) -> None:
    assert values("birthdate", text) == (DateValue("eq", low, high),)


@pytest.mark.parametrize(
    "text", ["2013-13", "2013-02-30", "2013-01-14T10", "23 May 2009", "ge", "xx2013", "13-01-2013"]
)
def test_date_malformed(text: str) -> None:
    assert problem("birthdate", text) == VALUE


def test_date_takes_no_modifier_but_missing() -> None:
    assert problem("birthdate:exact", "2013") == MODIFIER
    assert clause("birthdate:missing", "true") == ParamClause(P("Patient", "birthdate"), missing=True)


# --- quantity (search.html#quantity) ---------------------------------------------------------------


@pytest.mark.parametrize("prefix", PREFIXES)
def test_quantity_prefixes(prefix: str) -> None:
    (value,) = values("value-quantity", f"{prefix}5.4|http://unitsofmeasure.org|mg", "Observation")
    assert value == QuantityValue(prefix, D("5.4"), D("5.35"), D("5.45"), "http://unitsofmeasure.org", "mg")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.4", QuantityValue("eq", D("5.4"), D("5.35"), D("5.45"), None, None)),
        ("5.4||mg", QuantityValue("eq", D("5.4"), D("5.35"), D("5.45"), None, "mg")),
        (
            "5.40e-3|http://unitsofmeasure.org|g",
            QuantityValue("eq", D("0.00540"), D("0.005395"), D("0.005405"), "http://unitsofmeasure.org", "g"),
        ),
        ("le5.4|urn:x|m\\|g", QuantityValue("le", D("5.4"), D("5.35"), D("5.45"), "urn:x", "m|g")),
    ],
)
def test_quantity_forms(text: str, expected: QuantityValue) -> None:
    assert values("value-quantity", text, "Observation") == (expected,)


@pytest.mark.parametrize(
    "text", ["5.4|mg", "5.4|http://unitsofmeasure.org|", "abc|s|mg", "5.4|a|b|c", "|s|mg", "xx5|s|mg"]
)
def test_quantity_malformed(text: str) -> None:
    assert problem("value-quantity", text, "Observation") == VALUE


def test_prefixes_are_literal_text_for_other_types() -> None:
    """Only number, date and quantity take prefixes: elsewhere `ne1` is the value itself."""
    assert values("family", "ne1") == (StringValue("ne1"),)
    assert values("gender", "gt5") == (Token(None, "gt5", False),)
    assert values("url", "ap1", "ValueSet") == (UriValue("ap1"),)


# --- token (search.html#token) ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("male", Token(None, "male", False)),
        ("http://acme.org/patient|2345", Token("http://acme.org/patient", "2345", True)),
        ("|2345", Token(None, "2345", True)),
        ("http://acme.org/patient|", Token("http://acme.org/patient", None, True)),
        ("a\\|b|c\\,d", Token("a|b", "c,d", True)),
    ],
)
def test_token_forms(text: str, expected: Token) -> None:
    assert values("gender", text) == (expected,)
    # identifiers may be national ids, stored hashed: the store hashes a code it is given (protected.py)
    assert values("identifier", text) == ((ProtectedToken(expected, clear=True) if expected.code else expected),)


@pytest.mark.parametrize("text", ["|", "a|b|c", "a\\b"])
def test_token_malformed(text: str) -> None:
    assert problem("identifier", text) == VALUE


def test_token_not_modifier() -> None:
    found = clause("gender:not", "http://s|male,female")
    assert found == ParamClause(
        P("Patient", "gender"), (Token("http://s", "male", True), Token(None, "female", False)), "not"
    )


@pytest.mark.parametrize("modifier", ["above", "below"])
def test_token_subsumption_modifiers_take_system_and_code(modifier: str) -> None:
    found = clause(f"gender:{modifier}", "http://s|male,http://t|female")
    assert found == ParamClause(
        P("Patient", "gender"), (Token("http://s", "male", True), Token("http://t", "female", True)), modifier
    )
    for text in ["female", "|female", "http://s|"]:  # no hierarchy without a system
        assert problem(f"gender:{modifier}", text) == VALUE


def test_token_text_modifier_takes_text() -> None:
    found = clause("code:text", "head ache,migraine", "Observation")
    assert found == ParamClause(P("Observation", "code"), (StringValue("head ache"), StringValue("migraine")), "text")


def test_token_of_type() -> None:
    found = clause("identifier:of-type", "http://terminology.hl7.org/CodeSystem/v2-0203|MR|446053")
    assert isinstance(found, ParamClause) and found.modifier == "of-type"
    expected = OfTypeToken("http://terminology.hl7.org/CodeSystem/v2-0203", "MR", True, "446053")
    assert found.values == (ProtectedToken(expected, clear=True),)
    assert problem("identifier:of-type", "http://s|MR") == VALUE
    assert problem("identifier:of-type", "http://s||446053") == VALUE


@pytest.mark.parametrize("modifier", ["in", "not-in"])
def test_token_value_set_modifiers_name_a_value_set(modifier: str) -> None:
    found = clause(f"gender:{modifier}", "http://hl7.org/fhir/ValueSet/administrative-gender,ValueSet/42")
    expected = (UriValue("http://hl7.org/fhir/ValueSet/administrative-gender"), UriValue("ValueSet/42"))
    assert found == ParamClause(P("Patient", "gender"), expected, modifier)


@pytest.mark.parametrize("modifier", ["exact", "contains", "Patient", "identifier", "bogus"])
def test_token_rejects_other_modifiers(modifier: str) -> None:
    assert problem(f"gender:{modifier}", "male") == MODIFIER


@pytest.mark.parametrize(("text", "missing"), [("true", True), ("false", False)])
def test_missing_modifier(text: str, missing: bool) -> None:
    assert clause("gender:missing", text) == ParamClause(P("Patient", "gender"), (), None, missing)


@pytest.mark.parametrize("text", ["yes", "True", "true,false"])
def test_missing_takes_true_or_false(text: str) -> None:
    assert problem("gender:missing", text) == VALUE


# --- string (search.html#string) -------------------------------------------------------------------


@pytest.mark.parametrize("modifier", [None, "exact", "contains"])
def test_string_modifiers(modifier: str | None) -> None:
    name = f"name:{modifier}" if modifier else "name"
    assert clause(name, "Eve") == ParamClause(P("Patient", "name"), (StringValue("Eve"),), modifier)


def test_string_missing_and_bad_modifiers() -> None:
    assert clause("name:missing", "false") == ParamClause(P("Patient", "name"), missing=False)
    assert problem("name:text", "eve") == UNSUPPORTED
    assert problem("name:below", "eve") == MODIFIER
    assert problem("name:", "eve") == MODIFIER


# --- reference (search.html#reference) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Patient/23", ReferenceValue("Patient", "23", None)),
        ("23", ReferenceValue(None, "23", None)),
        ("http://other.org/fhir/Patient/23", ReferenceValue(None, None, "http://other.org/fhir/Patient/23")),
        (
            "urn:uuid:5e3a1c9e-93c1-4d6f-b6a1-0b0e3f6c2a11",
            ReferenceValue(None, None, "urn:uuid:5e3a1c9e-93c1-4d6f-b6a1-0b0e3f6c2a11"),
        ),
        ("http://acme.com/some-profile|1.0", ReferenceValue(None, None, "http://acme.com/some-profile|1.0")),
    ],
)
def test_reference_forms(text: str, expected: ReferenceValue) -> None:
    assert values("subject", text, "Observation") == (expected,)


def test_reference_under_the_server_base_is_relative() -> None:
    found = clause("subject", "http://example.org/fhir/Patient/23", "Observation", base_url="http://example.org/fhir/")
    assert isinstance(found, ParamClause)
    assert found.values == (ReferenceValue("Patient", "23", None),)


def test_reference_type_modifier() -> None:
    found = clause("subject:Patient", "23,Patient/24", "Observation")
    assert found == ParamClause(
        P("Observation", "subject"), (ReferenceValue("Patient", "23", None), ReferenceValue("Patient", "24", None))
    )
    assert problem("subject:Patient", "Group/1", "Observation") == VALUE
    assert problem("subject:Organization", "1", "Observation") == MODIFIER  # not a target
    assert problem("subject:Bogus", "1", "Observation") == MODIFIER


def test_reference_identifier_modifier() -> None:
    found = clause("subject:identifier", "http://acme.org/fhir/identifier/mrn|123456", "Observation")
    expected = (ProtectedToken(Token("http://acme.org/fhir/identifier/mrn", "123456", True), clear=True),)
    assert found == ParamClause(P("Observation", "subject"), expected, "identifier")


def test_reference_missing_and_unsupported_modifiers() -> None:
    assert clause("subject:missing", "true", "Observation") == ParamClause(P("Observation", "subject"), missing=True)
    assert problem("subject:below", "Location/42", "Observation") == UNSUPPORTED
    assert problem("subject:exact", "1", "Observation") == MODIFIER


@pytest.mark.parametrize("text", ["Bogus/1", "Patient/1/_history/2", "not an id", "Patient/", "a\\b"])
def test_reference_malformed(text: str) -> None:
    assert problem("subject", text, "Observation") == VALUE


# --- uri (search.html#uri) -------------------------------------------------------------------------


@pytest.mark.parametrize("modifier", [None, "above", "below"])
def test_uri_modifiers(modifier: str | None) -> None:
    name = f"url:{modifier}" if modifier else "url"
    found = clause(name, "http://acme.org/fhir/ValueSet/123", "ValueSet")
    assert found == ParamClause(P("ValueSet", "url"), (UriValue("http://acme.org/fhir/ValueSet/123"),), modifier)


def test_uri_other_modifiers() -> None:
    assert clause("url:missing", "true", "ValueSet") == ParamClause(P("ValueSet", "url"), missing=True)
    assert problem("url:contains", "acme", "ValueSet") == MODIFIER


# --- OR, AND, escaping (search.html#combining, #escaping) ------------------------------------------


def test_comma_is_or_and_repetition_is_and() -> None:
    request = parse([("gender", "male,female"), ("name", "a"), ("name", "b")])
    gender, name_a, name_b = request.clauses
    assert gender == ParamClause(P("Patient", "gender"), (Token(None, "male", False), Token(None, "female", False)))
    assert name_a == ParamClause(P("Patient", "name"), (StringValue("a"),))
    assert name_b == ParamClause(P("Patient", "name"), (StringValue("b"),))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a\\,b", ("a,b",)),
        ("a\\$b", ("a$b",)),
        ("a\\|b", ("a|b",)),
        ("a\\\\b", ("a\\b",)),
        ("a\\\\,b", ("a\\", "b")),
        ("a|b", ("a|b",)),
    ],
)
def test_escaping(text: str, expected: tuple[str, ...]) -> None:
    assert values("name", text) == tuple(StringValue(v) for v in expected)


@pytest.mark.parametrize("text", ["a\\b", "a\\", "a,,b", ",a", "a,"])
def test_bad_escapes_and_empty_values(text: str) -> None:
    assert problem("name", text) == VALUE


def test_empty_parameters_are_ignored() -> None:
    request = parse([("name", ""), ("gender", "male"), ("_count", "")])
    assert request.clauses == (ParamClause(P("Patient", "gender"), (Token(None, "male", False),)),)
    assert request.applied == (("gender", "male"),)
    assert request.count == 50 and request.ignored == ()


# --- chains (search.html#chaining) -----------------------------------------------------------------


def test_chain_one_level() -> None:
    found = clause("organization.name", "Acme", "Patient")
    inner = ParamClause(P("Organization", "name"), (StringValue("Acme"),))
    assert found == ChainClause(P("Patient", "organization"), ("Organization",), inner)


def test_chain_with_type_modifier_and_several_values() -> None:
    found = clause("subject:Patient.name:exact", "Peter,Paul", "Observation")
    inner = ParamClause(P("Patient", "name"), (StringValue("Peter"), StringValue("Paul")), "exact")
    assert found == ChainClause(P("Observation", "subject"), ("Patient",), inner)


def test_chain_three_levels() -> None:
    found = clause("subject:Patient.organization.partof.name", "Acme", "Observation")
    name = ParamClause(P("Organization", "name"), (StringValue("Acme"),))
    partof = ChainClause(P("Organization", "partof"), ("Organization",), name)
    organization = ChainClause(P("Patient", "organization"), ("Organization",), partof)
    assert found == ChainClause(P("Observation", "subject"), ("Patient",), organization)


def test_chain_without_type_lists_every_target() -> None:
    found = clause("subject.name", "peter", "Observation")
    assert isinstance(found, ChainClause)
    assert found.target_types == SUBJECTS
    assert found.inner == ParamClause(P("Patient", "name"), (StringValue("peter"),))  # first target that has it
    device = clause("subject.device-name", "pump", "Observation")
    assert isinstance(device, ChainClause) and device.target_types == SUBJECTS


def test_chain_to_special_parameters() -> None:
    found = clause("subject:Patient._id", "1,2", "Observation")
    assert found == ChainClause(P("Observation", "subject"), ("Patient",), IdClause(("1", "2")))


def test_chain_errors() -> None:
    assert problem("subject.probability", "1", "Observation") == UNKNOWN  # on no target
    assert problem("subject:Patient.device-name", "x", "Observation") == UNKNOWN  # not on the named target
    assert problem("subject.alias", "x", "Observation") == UNSUPPORTED  # token on Patient, string on Location
    assert problem("code.name", "x", "Observation") == UNKNOWN  # not a reference
    assert problem("subject:identifier.name", "x", "Observation") == MODIFIER
    assert problem("subject:Organization.name", "x", "Observation") == MODIFIER  # not a target
    assert problem("focus.name", "x", "Observation") == UNSUPPORTED  # any type: needs :Type
    assert problem("bogus.name", "x", "Observation") == UNKNOWN
    assert problem("organization.name:bogus", "x") == MODIFIER
    assert problem("organization.name", "a\\b") == VALUE


def test_chain_through_any_type_with_type_modifier() -> None:
    found = clause("focus:Patient.name", "x", "Observation")
    assert isinstance(found, ChainClause) and found.target_types == ("Patient",)


# --- _has (search.html#has) ------------------------------------------------------------------------


def test_has() -> None:
    found = clause("_has:Observation:patient:code", "1234-5,6789-0")
    inner = ParamClause(P("Observation", "code"), (Token(None, "1234-5", False), Token(None, "6789-0", False)))
    assert found == HasClause("Observation", P("Observation", "patient"), inner)


def test_has_with_modifier_and_chain_inside() -> None:
    found = clause("_has:Observation:patient:code:text", "headache")
    assert isinstance(found, HasClause) and isinstance(found.inner, ParamClause) and found.inner.modifier == "text"
    chained = clause("_has:Observation:patient:performer:Practitioner.name", "Joe")
    assert isinstance(chained, HasClause) and isinstance(chained.inner, ChainClause)


def test_has_nested() -> None:
    found = clause("_has:Observation:patient:_has:AuditEvent:entity:agent-name", "MyUserId")
    inner = HasClause(
        "AuditEvent", P("AuditEvent", "entity"), ParamClause(P("AuditEvent", "agent-name"), (StringValue("MyUserId"),))
    )
    assert found == HasClause("Observation", P("Observation", "patient"), inner)


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("_has", UNKNOWN),
        ("_has:Observation:patient", UNKNOWN),
        ("_has:Observation::code", UNKNOWN),
        ("_has:Bogus:patient:code", UNKNOWN),
        ("_has:Observation:bogus:code", UNKNOWN),
        ("_has:Observation:code:code", UNKNOWN),  # not a reference parameter
        ("_has:Observation:patient:bogus", UNKNOWN),
        ("_has:Observation:patient:code:exact", MODIFIER),
        ("_has:Observation:patient:_has:AuditEvent:entity:bogus", UNKNOWN),
    ],
)
def test_has_errors(name: str, code: str) -> None:
    assert problem(name, "x") == code


def test_has_reference_must_point_at_the_searched_type() -> None:
    assert problem("_has:Observation:patient:code", "x", "Organization") == UNKNOWN
    assert isinstance(clause("_has:Observation:performer:code", "x", "Organization"), HasClause)


# --- _id and _lastUpdated (search.html#id, #lastUpdated) -------------------------------------------


def test_id() -> None:
    assert clause("_id", "23,a-b.c") == IdClause(("23", "a-b.c"))
    assert problem("_id", "not an id") == VALUE
    assert problem("_id:not", "23") == MODIFIER
    assert problem("_id:missing", "true") == MODIFIER


@pytest.mark.parametrize("prefix", PREFIXES)
def test_last_updated(prefix: str) -> None:
    found = clause("_lastUpdated", f"{prefix}2010-10-01,2011")
    assert found == LastUpdatedClause(
        (
            DateValue(prefix, datetime(2010, 10, 1), datetime(2010, 10, 2)),
            DateValue("eq", datetime(2011, 1, 1), datetime(2012, 1, 1)),
        )
    )


def test_last_updated_errors() -> None:
    assert problem("_lastUpdated", "yesterday") == VALUE
    assert problem("_lastUpdated:missing", "true") == MODIFIER


def test_common_parameters_come_from_the_registry() -> None:
    assert clause("_tag", "http://acme.org/codes|needs-review") == ParamClause(
        P("Patient", "_tag"), (Token("http://acme.org/codes", "needs-review", True),)
    )
    assert clause("_profile:below", "http://x/") == ParamClause(
        P("Patient", "_profile"), (UriValue("http://x/"),), "below"
    )


# --- result parameters (search.html#return) --------------------------------------------------------


def test_sort() -> None:
    request = parse([("_sort", "name,-birthdate,_id,-_lastUpdated")])
    assert request.sort == (
        SortKey(P("Patient", "name"), False),
        SortKey(P("Patient", "birthdate"), True),
        SortKey(None, False, "_id"),
        SortKey(None, True, "_lastUpdated"),
    )


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("bogus", UNKNOWN),
        ("name:exact", MODIFIER),
        ("_score", UNSUPPORTED),
        ("organization.name", UNSUPPORTED),
        ("unindexed", UNSUPPORTED),
        ("name,,birthdate", VALUE),
        ("-", UNKNOWN),
    ],
)
def test_sort_errors(value: str, code: str) -> None:
    assert problem("_sort", value) == code


def test_sort_composite_is_unsupported() -> None:
    assert problem("_sort", "code-value-quantity", "Observation") == UNSUPPORTED


def test_result_parameters_appear_once() -> None:
    assert problems([("_sort", "name"), ("_sort", "birthdate")]) == [("_sort", VALUE)]
    assert problems([("_count", "10"), ("_count", "20")]) == [("_count", VALUE)]
    assert problems([("_count:x", "10")]) == [("_count:x", MODIFIER)]


def test_count() -> None:
    assert parse([]).count == 50
    assert parse([], default_count=20).count == 20
    assert parse([], default_count=20, max_count=10).count == 10
    assert parse([("_count", "7")]).count == 7
    assert parse([("_count", "0")]).count == 0
    capped = parse([("_count", "5000")], max_count=1000)
    assert capped.count == 1000 and capped.applied == (("_count", "1000"),)
    assert parse([("_count", "9" * 5000)]).count == 1000
    assert parse([("_count", "007")]).count == 7


@pytest.mark.parametrize("value", ["-1", "ten", "1.5", "gt5", "1e3", " 5"])
def test_count_malformed(value: str) -> None:
    assert problem("_count", value) == VALUE


def test_total_summary_elements_page() -> None:
    request = parse(
        [("_total", "estimate"), ("_summary", "data"), ("_elements", "identifier,active,link"), ("_page", "abc")]
    )
    assert (request.total, request.summary, request.elements, request.page) == (
        "estimate",
        "data",
        ("identifier", "active", "link"),
        "abc",
    )
    assert parse([]).total is None and parse([]).summary is None
    for summary in ["true", "text", "data", "count", "false"]:
        assert parse([("_summary", summary)]).summary == summary
    for total in ["none", "estimate", "accurate"]:
        assert parse([("_total", total)]).total == total
    assert problem("_total", "exact") == VALUE
    assert problem("_summary", "yes") == VALUE
    assert problem("_elements", "name,1x") == VALUE


def test_summary_text_cannot_be_mixed_with_includes() -> None:
    assert problems([("_summary", "text"), ("_include", "Patient:organization")]) == [("_summary", VALUE)]
    lenient = parse([("_summary", "text"), ("_include", "Patient:organization")], strict=False)
    assert lenient.summary is None and lenient.ignored == ("_summary",)
    assert lenient.applied == (("_include", "Patient:organization"),)


def test_include_and_revinclude() -> None:
    request = parse(
        [
            ("_include", "Observation:subject"),
            ("_include", "Observation:subject:Patient"),
            ("_include:iterate", "Patient:general-practitioner"),
            ("_include", "*"),
            ("_include", "Observation:*"),
            ("_revinclude", "Provenance:target"),
            ("_revinclude:iterate", "Observation:patient"),
            ("_revinclude", "*"),
        ],
        "Observation",
    )
    assert request.includes == (
        Include("Observation", P("Observation", "subject"), None, False, False),
        Include("Observation", P("Observation", "subject"), "Patient", False, False),
        Include("Patient", P("Patient", "general-practitioner"), None, True, False),
        Include("*", None, None, False, False),
        Include("Observation", None, None, False, False),
        Include("Provenance", P("Provenance", "target"), None, False, True),
        Include("Observation", P("Observation", "patient"), None, True, True),
        Include("*", None, None, False, True),
    )


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("_include", "Observation", VALUE),
        ("_include", "Observation:subject:Patient:x", VALUE),
        ("_include", "Bogus:subject", VALUE),
        ("_include", "Observation:bogus", UNKNOWN),
        ("_include", "Observation:code", VALUE),
        ("_include", "Observation:subject:Organization", VALUE),
        ("_include", "Observation:subject:Bogus", VALUE),
        ("_include", "Observation:subject,Observation:patient", VALUE),
        ("_include:recurse", "Observation:subject", MODIFIER),
        ("_revinclude:bogus", "Observation:subject", MODIFIER),
    ],
)
def test_include_errors(name: str, value: str, code: str) -> None:
    assert problem(name, value, "Observation") == code


# --- system search and _type (search.html#_type) ---------------------------------------------------


def test_type_on_system_search() -> None:
    request = parse([("_type", "Patient,Organization"), ("name", "Acme"), ("_sort", "name")], None)
    assert request.types == ("Patient", "Organization")
    assert request.clauses == (ParamClause(P("Patient", "name"), (StringValue("Acme"),)),)
    assert request.sort == (SortKey(P("Patient", "name"), False),)


def test_type_parameters_must_be_common_to_all_types() -> None:
    assert problems([("_type", "Patient,Organization"), ("birthdate", "2000")], None) == [("birthdate", UNKNOWN)]
    assert problem("_type", "Patient,Bogus", None) == VALUE
    assert problem("_type", "Patient") == UNSUPPORTED  # not on a type-level search


def test_system_search_without_type_takes_common_parameters() -> None:
    request = parse([("_tag", "a|b"), ("_id", "1"), ("_lastUpdated", "gt2020")], None)
    assert len(request.clauses) == 3 and request.types == ()
    assert problem("name", "x", None) == UNKNOWN


# --- ignored, unsupported, strict and lenient (search.html#errors) ---------------------------------


def test_format_and_pretty_are_not_criteria() -> None:
    request = parse([("_format", "xml"), ("_pretty", "true"), ("name", "x")])
    assert len(request.clauses) == 1
    assert request.applied == (("name", "x"), ("_format", "xml"), ("_pretty", "true"))


@pytest.mark.parametrize("name", ["_query", "_contained", "_containedType"])
def test_not_supported_yet(name: str) -> None:
    assert problem(name, "x") == UNSUPPORTED


def test_composite_special_and_unindexed_parameters_are_unsupported() -> None:
    assert problem("code-value-quantity", "http://loinc.org|8480-6$lt60", "Observation") == UNSUPPORTED
    assert problem("code-value-quantity:missing", "true", "Observation") == UNSUPPORTED
    assert problem("near", "42|-83|10|km", "Location") == UNSUPPORTED
    assert problem("unindexed", "x") == UNSUPPORTED


def test_strict_lists_every_bad_parameter() -> None:
    params = [
        ("bogus", "1"),
        ("name", "ok"),
        ("birthdate", "notadate"),
        ("name:bogus", "x"),
        ("_query", "x"),
        ("name:text", "eve"),
        ("_count", "x"),
        ("bogus", "2"),
    ]
    with pytest.raises(Invalid) as caught:
        parse(params)
    found = [(issue.expression, issue.error_code, issue.code) for issue in caught.value.issues]
    assert found == [
        ("bogus", UNKNOWN, "not-supported"),
        ("birthdate", VALUE, "invalid"),
        ("name:bogus", MODIFIER, "not-supported"),
        ("_query", UNSUPPORTED, "not-supported"),
        ("name:text", UNSUPPORTED, "not-supported"),
        ("_count", VALUE, "invalid"),
        ("bogus", UNKNOWN, "not-supported"),
    ]
    assert all(issue.severity == "error" and issue.message for issue in caught.value.issues)
    outcome = caught.value.to_outcome()
    assert outcome["issue"][0]["expression"] == ["bogus"]


def test_strict_error_code_is_the_issues_code_when_they_agree() -> None:
    with pytest.raises(Invalid) as caught:
        parse([("bogus", "1"), ("other", "2")])
    assert caught.value.error_code == UNKNOWN


def test_lenient_drops_only_bad_parameters() -> None:
    params = [
        ("bogus", "1"),
        ("name", "ok"),
        ("birthdate", "notadate"),
        ("birthdate", "ge2000"),
        ("name:text", "eve"),
        ("_count", "x"),
        ("_sort", "-birthdate"),
    ]
    request = parse(params, strict=False)
    assert request.clauses == (
        ParamClause(P("Patient", "name"), (StringValue("ok"),)),
        ParamClause(P("Patient", "birthdate"), (DateValue("ge", datetime(2000, 1, 1), datetime(2001, 1, 1)),)),
    )
    assert request.count == 50 and request.sort == (SortKey(P("Patient", "birthdate"), True),)
    assert request.applied == (("birthdate", "ge2000"), ("name", "ok"), ("_sort", "-birthdate"))
    assert request.ignored == ("bogus", "birthdate", "name:text", "_count")
    assert [(w.expression, w.error_code, w.severity) for w in request.warnings] == [
        ("bogus", UNKNOWN, "warning"),
        ("birthdate", VALUE, "warning"),
        ("name:text", UNSUPPORTED, "warning"),
        ("_count", VALUE, "warning"),
    ]


def test_lenient_keeps_a_good_repeat_after_a_bad_one() -> None:
    request = parse([("_count", "x"), ("_count", "10")], strict=False)
    assert request.count == 10 and request.applied == (("_count", "10"),) and request.ignored == ("_count",)


def test_lenient_bad_type_searches_all_types() -> None:
    request = parse([("_type", "Bogus"), ("_tag", "x")], None, strict=False)
    assert request.types == () and len(request.clauses) == 1 and request.ignored == ("_type",)


def test_applied_is_canonical() -> None:
    params = [
        ("_page", "p2"),
        ("_include", "Patient:organization"),
        ("name", "b"),
        ("_count", "10"),
        ("gender", "male"),
        ("name", "a"),
        ("_sort", "name"),
        ("_revinclude", "Observation:patient"),
        ("_total", "none"),
        ("_summary", "true"),
        ("_elements", "name"),
        ("_format", "json"),
    ]
    expected = (
        ("gender", "male"),
        ("name", "a"),
        ("name", "b"),
        ("_sort", "name"),
        ("_count", "10"),
        ("_total", "none"),
        ("_summary", "true"),
        ("_elements", "name"),
        ("_include", "Patient:organization"),
        ("_revinclude", "Observation:patient"),
        ("_format", "json"),
        ("_page", "p2"),
    )
    assert parse(params).applied == expected
    assert parse(list(reversed(params))).applied == expected


def test_system_type_comes_first_in_applied() -> None:
    request = parse([("_tag", "x"), ("_type", "Patient")], None)
    assert request.applied == (("_type", "Patient"), ("_tag", "x"))


def test_search_request_is_frozen() -> None:
    request = parse([])
    with pytest.raises(AttributeError):
        request.count = 3  # type: ignore[misc]
