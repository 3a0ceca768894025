"""`_filter` (R4 search_filter.html), `_list` (search.html#list) and the token values of `:in`,
`:not-in`, `:above`, `:below`, parsed against the official search parameter definitions."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import pytest

from fhir_server.errors import Invalid
from fhir_server.search.clauses import (
    AllClause,
    AnyClause,
    ChainClause,
    Clause,
    CompareClause,
    DateValue,
    HasClause,
    IdClause,
    LastUpdatedClause,
    NotClause,
    ParamClause,
    QuantityValue,
    ReferenceValue,
    StringValue,
    Token,
    UriValue,
)
from fhir_server.search.filter import MAX_COMPARISONS, MAX_DEPTH, Comparison, Logical, Negation, parse_expression
from fhir_server.search.params import SearchParam
from fhir_server.search.query import parse_search
from fhir_server.search.registry import search_param
from fhir_server.search.syntax import Problem

UNKNOWN = "search-parameter-unknown"
UNSUPPORTED = "search-parameter-unsupported"
MODIFIER = "search-modifier-unsupported"
VALUE = "search-value-invalid"
UCUM = "http://unitsofmeasure.org"


def P(resource_type: str, code: str) -> SearchParam:  # noqa: N802 - reads like the registry's answer
    param = search_param(resource_type, code)
    assert param is not None
    return param


def clauses(params: list[tuple[str, str]], resource_type: str | None = "Patient") -> tuple[Clause, ...]:
    return parse_search(resource_type, params, search_param, base_url="http://server/fhir").clauses


def only(text: str, resource_type: str | None = "Patient") -> Clause:
    found = clauses([("_filter", text)], resource_type)
    assert len(found) == 1
    return found[0]


def problems(params: list[tuple[str, str]], resource_type: str | None = "Patient") -> list[tuple[str | None, str]]:
    with pytest.raises(Invalid) as caught:
        parse_search(resource_type, params, search_param)
    assert caught.value.status == 400
    return [(issue.expression, issue.error_code) for issue in caught.value.issues]


def problem(text: str, resource_type: str | None = "Patient") -> str:
    found = problems([("_filter", text)], resource_type)
    assert len(found) == 1 and found[0][0] == "_filter"
    return found[0][1]


def syntax_error(text: str) -> Problem:
    with pytest.raises(Problem) as caught:
        parse_expression(text)
    return caught.value


# --- syntax --------------------------------------------------------------------------------------


def test_comparison_with_token_and_string_values() -> None:
    assert parse_expression("name eq peter") == Comparison(("name",), "eq", "peter")
    assert parse_expression('  name  co  "van der \\"Berg\\")"  ') == Comparison(("name",), "co", 'van der "Berg")')
    assert parse_expression("subject.name EQ x") == Comparison(("subject", "name"), "eq", "x")
    assert parse_expression("code eq http://loinc.org|1234-5") == Comparison(("code",), "eq", "http://loinc.org|1234-5")


def test_and_or_evaluate_left_to_right_without_precedence() -> None:
    a, b, c = (Comparison((name,), "eq", "1") for name in "abc")
    assert parse_expression("a eq 1 or b eq 2 and c eq 3".replace("2", "1").replace("3", "1")) == Logical(
        "and", (Logical("or", (a, b)), c)
    )
    assert parse_expression("a eq 1 and b eq 1 and c eq 1") == Logical("and", (a, b, c))
    assert parse_expression("a eq 1 and (b eq 1 or c eq 1)") == Logical("and", (a, Logical("or", (b, c))))
    assert parse_expression("(a eq 1)") == a


def test_not_takes_parentheses() -> None:
    a, b = Comparison(("a",), "eq", "1"), Comparison(("b",), "eq", "1")
    assert parse_expression("not(a eq 1)") == Negation(a)
    assert parse_expression("not (a eq 1) and b eq 1") == Logical("and", (Negation(a), b))
    assert parse_expression("b eq 1 or not(not(a eq 1))") == Logical("or", (b, Negation(Negation(a))))
    assert parse_expression("(a eq 1)and(b eq 1)") == Logical("and", (a, b))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "name",
        "name eq",
        "name eq ",
        "name equals x",
        "name eq x and",
        "name eq x xor b eq y",
        "(name eq x",
        "name eq x)",
        'name eq "unterminated',
        'name eq "bad \\q escape"',
        "1name eq x",
        "name:exact eq x",
        "name eq x garbage",
        "not(name eq x",
    ],
)
def test_syntax_errors(text: str) -> None:
    assert syntax_error(text).error_code == VALUE


def test_limits_and_path_filters() -> None:
    assert syntax_error("related[type eq has-component].target pr true").error_code == UNSUPPORTED
    many = " or ".join(f"name eq n{n}" for n in range(MAX_COMPARISONS + 1))
    assert "comparisons" in syntax_error(many).message
    deep = "(" * (MAX_DEPTH + 1) + "name eq x" + ")" * (MAX_DEPTH + 1)
    assert "parentheses" in syntax_error(deep).message
    assert "at character 10" in syntax_error("name eq x)").message


# --- translation to clauses ----------------------------------------------------------------------


def test_examples_of_the_specification() -> None:
    assert only('name co "pet"') == ParamClause(P("Patient", "name"), (StringValue("pet"),), "contains")
    born = DateValue("ge", datetime(2014, 10, 10), datetime(2014, 10, 11))
    assert only('given eq "peter" and birthdate ge 2014-10-10') == AllClause(
        (
            CompareClause(P("Patient", "given"), "eq", StringValue("peter")),
            ParamClause(P("Patient", "birthdate"), (born,)),
        )
    )
    loinc = Token("http://loinc.org", "1234-5", True)
    assert only("code eq http://loinc.org|1234-5", "Observation") == ParamClause(P("Observation", "code"), (loinc,))
    subject = P("Observation", "subject")
    assert only('subject.name co "pet"', "Observation") == ChainClause(
        subject, subject.targets, ParamClause(P("Patient", "name"), (StringValue("pet"),), "contains")
    )


def test_string_operators() -> None:
    name = P("Patient", "name")
    assert only("name sw pet") == ParamClause(name, (StringValue("pet"),))
    for operator in ["eq", "ne", "ew"]:
        assert only(f"name {operator} pet") == CompareClause(name, operator, StringValue("pet"))
    assert only("name pr false") == ParamClause(name, missing=True)
    assert only("name pr TRUE") == ParamClause(name, missing=False)
    for operator in ["gt", "lt", "ge", "le", "sa", "eb", "ap", "po", "ss", "sb", "in", "ni", "re"]:
        assert problem(f"name {operator} pet") == UNSUPPORTED


def test_token_operators() -> None:
    code = P("Observation", "code")
    assert only("code eq loinc|1234-5", "Observation") == ParamClause(
        code, (Token("http://loinc.org", "1234-5", True),)
    )
    assert only("code eq 1234-5", "Observation") == ParamClause(code, (Token(None, "1234-5", False),))
    assert only("code ne snomed|123", "Observation") == CompareClause(
        code, "ne", Token("http://snomed.info/sct", "123", True)
    )
    below = ParamClause(code, (Token("http://s", "a", True),), "below")
    assert only("code ss http://s|a", "Observation") == below
    assert only("code sb http://s|a", "Observation") == ParamClause(code, (Token("http://s", "a", True),), "above")
    assert only("code in http://x/vs", "Observation") == ParamClause(code, (UriValue("http://x/vs"),), "in")
    assert only("code ni ValueSet/1", "Observation") == ParamClause(code, (UriValue("ValueSet/1"),), "not-in")
    assert problem("code ss a", "Observation") == VALUE
    assert problem("code co a", "Observation") == UNSUPPORTED
    assert problem("code gt a", "Observation") == UNSUPPORTED
    assert problem('code in "two words"', "Observation") == VALUE


def test_ordered_operators_are_prefixes() -> None:
    for operator in ["eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap"]:
        assert only(f"birthdate {operator} 2014") == ParamClause(
            P("Patient", "birthdate"), (DateValue(operator, datetime(2014, 1, 1), datetime(2015, 1, 1)),)
        )
    quantity = only("value-quantity gt 5.4|http://unitsofmeasure.org|mg", "Observation")
    expected = QuantityValue("gt", Decimal("5.4"), Decimal("5.35"), Decimal("5.45"), UCUM, "mg")
    assert quantity == ParamClause(P("Observation", "value-quantity"), (expected,))
    probability = only("probability le 0.5", "RiskAssessment")
    assert isinstance(probability, ParamClause) and probability.values[0].prefix == "le"  # type: ignore[union-attr]
    assert only("birthdate po 2014-10") == CompareClause(
        P("Patient", "birthdate"), "po", DateValue("po", datetime(2014, 10, 1), datetime(2014, 11, 1))
    )
    assert problem("birthdate eq yesterday") == VALUE
    assert problem("birthdate co 2014") == UNSUPPORTED
    assert problem("probability co 1", "RiskAssessment") == UNSUPPORTED


def test_reference_uri_id_and_last_updated() -> None:
    general = P("Patient", "general-practitioner")
    practitioner = ReferenceValue("Practitioner", "1", None)
    assert only("general-practitioner re Practitioner/1") == ParamClause(general, (practitioner,))
    assert only("general-practitioner eq http://server/fhir/Practitioner/1") == ParamClause(general, (practitioner,))
    assert only("general-practitioner ne Practitioner/1") == CompareClause(general, "ne", practitioner)
    url = P("ValueSet", "url")
    assert only("url sw http://x/", "ValueSet") == ParamClause(url, (UriValue("http://x/"),), "below")
    assert only("url ne http://x/", "ValueSet") == CompareClause(url, "ne", UriValue("http://x/"))
    assert only("_id eq a-1") == IdClause(("a-1",))
    assert only("_id ne a-1") == NotClause(IdClause(("a-1",)))
    assert only("_id pr true") == AllClause(())
    assert only("_id pr false") == AnyClause(())
    assert problem("_id co a") == UNSUPPORTED
    assert problem("_id eq not/an/id") == VALUE
    assert only("_lastUpdated gt 2020") == LastUpdatedClause(
        (DateValue("gt", datetime(2020, 1, 1), datetime(2021, 1, 1)),)
    )
    assert only("_lastUpdated po 2020") == LastUpdatedClause(
        (DateValue("eq", datetime(2020, 1, 1), datetime(2021, 1, 1)),)
    )


def test_logic_becomes_all_any_and_not() -> None:
    gender = P("Patient", "gender")
    male = ParamClause(gender, (Token(None, "male", False),))
    female = ParamClause(gender, (Token(None, "female", False),))
    named = ParamClause(P("Patient", "name"), (StringValue("x"),))
    found = only("not(gender eq male) and (gender eq female or name sw x)")
    assert found == AllClause((NotClause(male), AnyClause((female, named))))


def test_unknown_and_unsupported_parameters() -> None:
    assert problem("bogus eq 1") == UNKNOWN
    assert problem("gender.name eq x") == UNKNOWN  # only references chain
    assert problem("near eq 1", "Location") == UNSUPPORTED  # special
    assert problems([("_filter:exact", "name eq x")]) == [("_filter:exact", MODIFIER)]
    assert problems([("subject._filter", "name eq x")], "Observation") == [("subject._filter", UNSUPPORTED)]


def test_each_bad_filter_is_one_issue_and_lenient_drops_it() -> None:
    found = problems([("_filter", "bogus eq 1"), ("name", "ok"), ("_filter", "name eq")])
    assert found == [("_filter", UNKNOWN), ("_filter", VALUE)]
    request = parse_search("Patient", [("_filter", "bogus eq 1"), ("_filter", "name eq x")], search_param, strict=False)
    assert request.clauses == (CompareClause(P("Patient", "name"), "eq", StringValue("x")),)
    assert request.applied == (("_filter", "name eq x"),)
    assert request.ignored == ("_filter",)


def test_commas_in_a_filter_are_not_or() -> None:
    assert only('name eq "a,b"') == CompareClause(P("Patient", "name"), "eq", StringValue("a,b"))


def test_filter_on_a_search_across_types_needs_the_parameter_on_each() -> None:
    found = clauses([("_type", "Patient,Practitioner"), ("_filter", "name sw a")], None)
    assert isinstance(found[0], ParamClause) and found[0].param.code == "name"
    assert problems([("_type", "Patient,Observation"), ("_filter", "name sw a")], None) == [("_filter", UNKNOWN)]


# --- _list and terminology values ----------------------------------------------------------------


def test_list() -> None:
    item = P("List", "item")
    assert clauses([("_list", "42")]) == (HasClause("List", item, IdClause(("42",))),)
    assert clauses([("_list", "List/42,43,42")]) == (HasClause("List", item, IdClause(("42", "43"))),)
    assert clauses([("_list", "42")], None) == (HasClause("List", item, IdClause(("42",))),)
    subject = P("Observation", "subject")
    chained = clauses([("subject:Patient._list", "7")], "Observation")
    assert chained == (ChainClause(subject, ("Patient",), HasClause("List", item, IdClause(("7",)))),)
    assert problems([("_list", "$current-allergies")]) == [("_list", UNSUPPORTED)]
    assert problems([("_list:missing", "true")]) == [("_list:missing", MODIFIER)]
    assert problems([("_list", "Patient/42")]) == [("_list", VALUE)]
    assert problems([("_list", "a,,b")]) == [("_list", VALUE)]


def test_terminology_modifier_values() -> None:
    code = P("Observation", "code")
    found = clauses([("code:in", "http://x/vs|2.0,ValueSet/vitals"), ("code:not-in", "http://x/vs")], "Observation")
    assert found == (
        ParamClause(code, (UriValue("http://x/vs|2.0"), UriValue("ValueSet/vitals")), "in"),
        ParamClause(code, (UriValue("http://x/vs"),), "not-in"),
    )
    assert problems([("code:in", "two words")], "Observation") == [("code:in", VALUE)]
    assert clauses([("code:below", "http://s|a\\|b")], "Observation") == (
        ParamClause(code, (Token("http://s", "a|b", True),), "below"),
    )
    assert problems([("code:above", "a"), ("code:below", "http://s|")], "Observation") == [
        ("code:above", VALUE),
        ("code:below", VALUE),
    ]
    assert problems([("name:in", "http://x/vs")]) == [("name:in", MODIFIER)]
