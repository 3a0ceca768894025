"""The clause compiler against both databases: every parameter type, prefix and modifier, chains
and `_has` (R4 search.html), on hand-built index rows (the columns of search/clauses.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from fhir_server.errors import NotSupported
from fhir_server.search.clauses import (
    AnyClause,
    ChainClause,
    DateValue,
    HasClause,
    IdClause,
    LastUpdatedClause,
    ParamClause,
    StringValue,
    Token,
    TokenClause,
    UriValue,
)
from fhir_server.store.compile_ranges import approximate_range
from fhir_server.store.compiler import clause_predicate, identifier_param
from fhir_server.store.schema import resource
from tests.integration.search_sql_helpers import (
    Kinds,
    date_row,
    id_set,
    ids,
    number,
    number_row,
    param,
    put,
    quantity,
    quantity_row,
    ref,
    reference_row,
    string_row,
    token_row,
    uri_row,
    year,
)

UCUM = "http://unitsofmeasure.org"
LOINC = "http://loinc.org"


def test_string_default_contains_exact_and_escaped_wildcards(store):
    k = Kinds()
    name = param(k.Pat, "name", "string")
    put(store, k.Pat, "muller", [string_row("name", "muller", "Müller")])
    put(store, k.Pat, "mull", [string_row("name", "mull", "Mull")])
    put(store, k.Pat, "percent", [string_row("name", "50% off", "50% off")])
    put(store, k.Pat, "fifty", [string_row("name", "50x off", "50x off")])
    put(store, k.Pat, "under", [string_row("name", "a_c", "a_c")])
    put(store, k.Pat, "abc", [string_row("name", "abc", "abc")])
    put(store, k.Pat, "nameless")

    def find(text: str, modifier: str | None = None) -> set[str]:
        return id_set(store, k.Pat, ParamClause(name, (StringValue(text),), modifier))

    assert find("MÜLL") == {"muller", "mull"}  # normalised, starts-with
    assert find("muller") == {"muller"}
    assert find("ller", "contains") == {"muller"}
    assert find("Müller", "exact") == {"muller"}
    assert find("muller", "exact") == set()
    assert find("50%") == {"percent"}
    assert find("0%", "contains") == {"percent"}
    assert find("a_") == {"under"}
    assert find("_", "contains") == {"under"}
    both = ParamClause(name, (StringValue("abc"), StringValue("mull")))
    assert id_set(store, k.Pat, both) == {"abc", "muller", "mull"}


def test_token_forms_text_not_and_missing(store):
    k = Kinds()
    code = param(k.Obs, "code", "token")
    put(store, k.Obs, "loinc", [token_row("code", LOINC, "1234-5", "body weight")])
    put(store, k.Obs, "local", [token_row("code", "urn:local", "1234-5")])
    put(store, k.Obs, "bare", [token_row("code", None, "1234-5")])
    put(store, k.Obs, "other", [token_row("code", LOINC, "9999-9", "heart rate")])
    put(store, k.Obs, "none")

    def find(*tokens: Token, modifier: str | None = None) -> set[str]:
        return id_set(store, k.Obs, ParamClause(code, tokens, modifier))

    assert find(Token(None, "1234-5", False)) == {"loinc", "local", "bare"}
    assert find(Token(LOINC, "1234-5", True)) == {"loinc"}
    assert find(Token(None, "1234-5", True)) == {"bare"}  # |code: no system
    assert find(Token(LOINC, None, True)) == {"loinc", "other"}  # system|: any code
    assert find(Token(LOINC, "1234-5", True), Token("urn:local", "1234-5", True)) == {"loinc", "local"}
    # :not matches resources without any value too (search.html#modifiers)
    assert find(Token(LOINC, "1234-5", True), modifier="not") == {"local", "bare", "other", "none"}
    assert find(Token(None, "1234-5", False), Token(None, "9999-9", False), modifier="not") == {"none"}
    assert id_set(store, k.Obs, ParamClause(code, (StringValue("HEART"),), "text")) == {"other"}
    assert id_set(store, k.Obs, ParamClause(code, (StringValue("body w"),), "text")) == {"loinc"}
    assert id_set(store, k.Obs, ParamClause(code, missing=True)) == {"none"}
    assert id_set(store, k.Obs, ParamClause(code, missing=False)) == {"loinc", "local", "bare", "other"}
    assert id_set(store, k.Obs, TokenClause("code", (Token(LOINC, "9999-9", True),))) == {"other"}
    with pytest.raises(NotSupported):  # :below needs the hierarchy the repository reads first
        clause_predicate(k.Obs, None, ParamClause(code, (Token(LOINC, "1234-5", True),), "below"))


# Stored date ranges [low, high) against the search value 2010 = [2010-01-01, 2011-01-01).
DATE_TARGETS = {
    "inside": (datetime(2010, 6, 1), datetime(2010, 6, 2)),
    "whole": (datetime(2010, 1, 1), datetime(2011, 1, 1)),
    "before": (datetime(2009, 3, 1), datetime(2009, 3, 2)),
    "after": (datetime(2012, 1, 1), datetime(2012, 1, 2)),
    "straddles_start": (datetime(2009, 12, 31), datetime(2010, 1, 2)),
    "straddles_end": (datetime(2010, 12, 31), datetime(2011, 1, 2)),
    "open_start": (None, datetime(2010, 3, 1)),
    "open_end": (datetime(2010, 3, 1), None),
    "touches_start": (datetime(2009, 12, 31), datetime(2010, 1, 1)),
    "touches_end": (datetime(2011, 1, 1), datetime(2011, 1, 2)),
}
EQ = {"inside", "whole"}
GT = {"after", "straddles_end", "open_end", "touches_end"}
LT = {"before", "straddles_start", "open_start", "touches_start"}
DATE_EXPECTED = {
    "eq": EQ,
    "ne": set(DATE_TARGETS) - EQ,
    "gt": GT,
    "lt": LT,
    "ge": GT | EQ,
    "le": LT | EQ,
    "sa": {"after", "touches_end"},
    "eb": {"before", "touches_start"},
}


@pytest.mark.parametrize("prefix", list(DATE_EXPECTED))
def test_date_prefixes_on_ranges_and_open_periods(store, prefix):
    k = Kinds()
    when = param(k.Enc, "date", "date")
    for name, (low, high) in DATE_TARGETS.items():
        put(store, k.Enc, name, [date_row("date", low, high)])
    put(store, k.Enc, "undated")
    assert id_set(store, k.Enc, ParamClause(when, (year(prefix, 2010),))) == DATE_EXPECTED[prefix]


def test_date_ap_is_ten_percent_of_the_gap_to_now(store):
    k = Kinds()
    when = param(k.Enc, "date", "date")
    today = datetime.now(UTC).replace(tzinfo=None, hour=0, minute=0, second=0, microsecond=0)
    day = today - timedelta(days=100)  # margin: about 10 days either side
    for offset in (-20, -8, 0, 8, 20):
        start = day + timedelta(days=offset)
        put(store, k.Enc, f"d{offset}", [date_row("date", start, start + timedelta(days=1))])
    value = DateValue("ap", day, day + timedelta(days=1))
    assert id_set(store, k.Enc, ParamClause(when, (value,))) == {"d-8", "d0", "d8"}
    # a past value: 10% of the gap between its end and now; a future one: of the gap to its start
    margin = (datetime(2011, 1, 1) - datetime(2001, 1, 1)) / 10
    low, high = approximate_range(datetime(2000, 1, 1), datetime(2001, 1, 1), datetime(2011, 1, 1))
    assert (low, high) == (datetime(2000, 1, 1) - margin, datetime(2001, 1, 1) + margin)
    low, high = approximate_range(datetime(2021, 1, 1), datetime(2022, 1, 1), datetime(2011, 1, 1))
    margin = (datetime(2021, 1, 1) - datetime(2011, 1, 1)) / 10
    assert (low, high) == (datetime(2021, 1, 1) - margin, datetime(2022, 1, 1) + margin)


def test_date_missing_and_or_values(store):
    k = Kinds()
    when = param(k.Enc, "date", "date")
    put(store, k.Enc, "a", [date_row("date", datetime(2001, 5, 1), datetime(2001, 5, 2))])
    put(store, k.Enc, "b", [date_row("date", datetime(2003, 5, 1), datetime(2003, 5, 2))])
    put(store, k.Enc, "none")
    assert id_set(store, k.Enc, ParamClause(when, (year("eq", 2001), year("eq", 2003)))) == {"a", "b"}
    assert id_set(store, k.Enc, ParamClause(when, missing=True)) == {"none"}
    assert id_set(store, k.Enc, ParamClause(when, missing=False)) == {"a", "b"}


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        ("eq", {"100", "99.7", "100.4"}),
        ("ne", {"100.5", "101", "90.5", "111"}),
        ("gt", {"100.4", "100.5", "101", "111"}),
        ("lt", {"99.7", "90.5"}),
        ("ge", {"100", "100.4", "100.5", "101", "111"}),
        ("le", {"100", "99.7", "90.5"}),
        ("sa", {"100.4", "100.5", "101", "111"}),
        ("eb", {"99.7", "90.5"}),
        ("ap", {"100", "99.7", "100.4", "100.5", "101", "90.5"}),
    ],
)
def test_number_prefixes(store, prefix, expected):
    """`100` is [99.5, 100.5) for eq/ne; the other prefixes compare with exactly 100; ap is
    within 10% (search.html#number)."""
    k = Kinds()
    count = param(k.Risk, "probability", "number")
    for value in ("100", "99.7", "100.4", "100.5", "101", "90.5", "111"):
        put(store, k.Risk, value.replace(".", "_"), [number_row("probability", value, value)])
    put(store, k.Risk, "none")
    found = id_set(store, k.Risk, ParamClause(count, (number(prefix, "100"),)))
    assert found == {value.replace(".", "_") for value in expected}


def test_number_ranges_with_open_ends(store):
    k = Kinds()
    age = param(k.Risk, "age", "number")
    put(store, k.Risk, "below", [number_row("age", None, "10")])
    put(store, k.Risk, "above", [number_row("age", "50", None)])
    put(store, k.Risk, "between", [number_row("age", "20", "30")])
    assert id_set(store, k.Risk, ParamClause(age, (number("gt", "40"),))) == {"above"}
    assert id_set(store, k.Risk, ParamClause(age, (number("lt", "25"),))) == {"below", "between"}
    assert id_set(store, k.Risk, ParamClause(age, (number("eq", "25"),))) == set()
    assert id_set(store, k.Risk, ParamClause(age, (number("ne", "25"),))) == {"below", "above", "between"}


def test_quantity_units_and_canonical_forms(store):
    k = Kinds()
    value = param(k.Obs, "value-quantity", "quantity")
    put(store, k.Obs, "5mg", [quantity_row("value-quantity", 5, UCUM, "mg", ("g", 0.005))])
    put(store, k.Obs, "5g", [quantity_row("value-quantity", 5, UCUM, "g", ("g", 5))])
    put(store, k.Obs, "5000mg", [quantity_row("value-quantity", 5000, UCUM, "mg", ("g", 5))])
    put(store, k.Obs, "5lb", [quantity_row("value-quantity", 5, "urn:other", "[lb_av]")])
    put(store, k.Obs, "7g", [quantity_row("value-quantity", 7, UCUM, "g", ("g", 7))])

    def find(prefix: str, number_text: str, system: str | None, unit: str | None) -> set[str]:
        return id_set(store, k.Obs, ParamClause(value, (quantity(prefix, number_text, system, unit),)))

    assert find("eq", "5", None, None) == {"5mg", "5g", "5lb"}  # any unit
    assert find("eq", "5", UCUM, "g") == {"5g", "5000mg"}  # canonical: 5000 mg is 5 g
    assert find("eq", "5000", UCUM, "mg") == {"5000mg", "5g"}
    assert find("eq", "5", None, "mg") == {"5mg"}  # code in any system, no conversion
    assert find("eq", "5", "urn:other", "[lb_av]") == {"5lb"}
    assert find("gt", "4", UCUM, "g") == {"5g", "5000mg", "7g"}
    assert find("lt", "6", UCUM, "g") == {"5mg", "5g", "5000mg"}
    assert find("ap", "5", UCUM, "g") == {"5g", "5000mg"}
    assert find("ne", "5", UCUM, "g") == {"5mg", "7g"}


def test_reference_forms_type_modifier_identifier_and_missing(store):
    k = Kinds()
    subject = param(k.Obs, "subject", "reference")
    put(store, k.Obs, "pat1", [reference_row("subject", k.Pat, "1")])
    put(store, k.Obs, "grp1", [reference_row("subject", k.Grp, "1")])
    put(store, k.Obs, "pat2", [reference_row("subject", k.Pat, "2", "http://elsewhere/fhir/Pat/2")])
    put(store, k.Obs, "urn", [reference_row("subject", None, None, "urn:uuid:abc")])
    put(store, k.Obs, "ident", [token_row(identifier_param("subject"), "urn:mrn", "12345")])
    put(store, k.Obs, "none")

    def find(*values, modifier=None) -> set[str]:  # type: ignore[no-untyped-def]
        return id_set(store, k.Obs, ParamClause(subject, values, modifier))

    assert find(ref(k.Pat, "1")) == {"pat1"}
    assert find(ref(None, "1")) == {"pat1", "grp1"}  # a bare id: any type
    assert find(ref(None, "1"), modifier=k.Grp) == {"grp1"}
    assert find(ref(None, None, "urn:uuid:abc")) == {"urn"}
    assert find(ref(None, None, "http://elsewhere/fhir/Pat/2")) == {"pat2"}
    assert find(ref(k.Pat, "1"), ref(k.Pat, "2")) == {"pat1", "pat2"}
    assert find(Token("urn:mrn", "12345", True), modifier="identifier") == {"ident"}
    assert id_set(store, k.Obs, ParamClause(subject, missing=True)) == {"ident", "none"}
    assert id_set(store, k.Obs, ParamClause(subject, missing=False)) == {"pat1", "grp1", "pat2", "urn"}
    performer = param(k.Obs, "performer", "reference")
    put(store, k.Obs, "performed", [reference_row("performer", k.Pat, "1")])
    either = AnyClause((ParamClause(subject, (ref(k.Pat, "1"),)), ParamClause(performer, (ref(k.Pat, "1"),))))
    assert id_set(store, k.Obs, either) == {"pat1", "performed"}  # compartments: any of the parameters
    assert id_set(store, k.Obs, AnyClause(())) == set()


def test_uri_equality_above_below(store):
    k = Kinds()
    url = param(k.VS, "url", "uri")
    put(store, k.VS, "root", [uri_row("url", "http://acme.org/fhir/")])
    put(store, k.VS, "vs", [uri_row("url", "http://acme.org/fhir/ValueSet/123")])
    put(store, k.VS, "upper", [uri_row("url", "http://ACME.org/fhir/ValueSet/123")])
    put(store, k.VS, "wild", [uri_row("url", "http://acme.org/fhir/V_lueSet")])

    def find(uri: str, modifier: str | None = None) -> set[str]:
        return id_set(store, k.VS, ParamClause(url, (UriValue(uri),), modifier))

    assert find("http://acme.org/fhir/ValueSet/123") == {"vs"}
    assert find("http://acme.org/fhir/", "below") == {"root", "vs", "wild"}
    assert find("http://acme.org/fhir/V_", "below") == {"wild"}  # case-sensitive, `_` literal
    assert find("http://acme.org/fhir/ValueSet/123/_history/5", "above") == {"root", "vs"}
    assert id_set(store, k.VS, ParamClause(url, missing=False)) == {"root", "vs", "upper", "wild"}


def test_id_and_last_updated(store):
    k = Kinds()
    for day in (1, 2, 3):
        put(store, k.Pat, f"d{day}", last_updated=datetime(2020, 3, day, 10, 30))
    assert id_set(store, k.Pat, IdClause(("d1", "d3", "nope"))) == {"d1", "d3"}

    def updated(prefix: str, day: int) -> set[str]:
        value = DateValue(prefix, datetime(2020, 3, day), datetime(2020, 3, day + 1))
        return id_set(store, k.Pat, LastUpdatedClause((value,)))

    assert updated("eq", 2) == {"d2"}
    assert updated("ne", 2) == {"d1", "d3"}
    assert updated("gt", 2) == updated("sa", 2) == {"d3"}
    assert updated("ge", 2) == {"d2", "d3"}
    assert updated("lt", 2) == updated("eb", 2) == {"d1"}
    assert updated("le", 2) == {"d1", "d2"}


def _people(store, k: Kinds) -> None:
    """Orgs acme and other; Pat p1 (ann, acme), p2 (bob, other), Grp g1 (ann, acme); Obs o1 -> p1
    and o3 -> g1 coded 1, o2 -> p2 coded 2."""
    put(store, k.Org, "acme", [string_row("name", "acme")])
    put(store, k.Org, "other", [string_row("name", "other")])
    put(store, k.Pat, "p1", [reference_row("organization", k.Org, "acme"), string_row("name", "ann")])
    put(store, k.Pat, "p2", [reference_row("organization", k.Org, "other"), string_row("name", "bob")])
    put(store, k.Grp, "g1", [reference_row("organization", k.Org, "acme"), string_row("name", "ann")])
    put(store, k.Obs, "o1", [reference_row("subject", k.Pat, "p1"), token_row("code", LOINC, "1")])
    put(store, k.Obs, "o2", [reference_row("subject", k.Pat, "p2"), token_row("code", LOINC, "2")])
    put(store, k.Obs, "o3", [reference_row("subject", k.Grp, "g1"), token_row("code", LOINC, "1")])


def test_chains_one_and_two_levels(store):
    k = Kinds()
    _people(store, k)
    put(store, k.Pat, "dead", deleted=True)
    put(store, k.Obs, "o4", [reference_row("subject", k.Pat, "dead")])
    subject = param(k.Obs, "subject", "reference")
    organization = param(k.Pat, "organization", "reference")
    name = param(k.Pat, "name", "string")
    org_name = param(k.Org, "name", "string")
    by_name = ChainClause(subject, (k.Pat,), ParamClause(name, (StringValue("an"),)))
    assert id_set(store, k.Obs, by_name) == {"o1"}
    either = ChainClause(subject, (k.Pat, k.Grp), ParamClause(name, (StringValue("an"),)))
    assert id_set(store, k.Obs, either) == {"o1", "o3"}
    two = ChainClause(
        subject, (k.Pat, k.Grp), ChainClause(organization, (k.Org,), ParamClause(org_name, (StringValue("acme"),)))
    )
    assert id_set(store, k.Obs, two) == {"o1", "o3"}
    by_id = ChainClause(subject, (k.Pat,), IdClause(("p2", "dead")))
    assert id_set(store, k.Obs, by_id) == {"o2"}  # a deleted target never matches


def test_has_and_nested_has(store):
    k = Kinds()
    _people(store, k)
    put(store, k.Obs, "deleted", [reference_row("subject", k.Pat, "p2"), token_row("code", LOINC, "1")], deleted=True)
    subject = param(k.Obs, "subject", "reference")
    code = param(k.Obs, "code", "token")
    organization = param(k.Pat, "organization", "reference")
    coded_1 = ParamClause(code, (Token(LOINC, "1", True),))
    assert id_set(store, k.Pat, HasClause(k.Obs, subject, coded_1)) == {"p1"}
    assert id_set(store, k.Grp, HasClause(k.Obs, subject, coded_1)) == {"g1"}
    any_code = ParamClause(code, missing=False)
    assert id_set(store, k.Pat, HasClause(k.Obs, subject, any_code)) == {"p1", "p2"}
    # organizations with a patient that has an observation coded 1
    nested = HasClause(k.Pat, organization, HasClause(k.Obs, subject, coded_1))
    assert id_set(store, k.Org, nested) == {"acme"}


def test_chain_and_has_apply_visibility_to_the_resource_on_the_other_end(store):
    k = Kinds()
    _people(store, k)
    subject = param(k.Obs, "subject", "reference")
    name = param(k.Pat, "name", "string")
    code = param(k.Obs, "code", "token")
    chain = ChainClause(subject, (k.Pat,), ParamClause(name, (StringValue("an"),)))
    has = HasClause(k.Obs, subject, ParamClause(code, (Token(LOINC, "1", True),)))

    def visible(row, searched=None):  # type: ignore[no-untyped-def]
        return row.c.id.not_in(["p1", "o1"])

    with store.engine.connect() as connection:
        for resource_type, clause in ((k.Obs, chain), (k.Pat, has)):
            query = select(resource.c.id).where(
                resource.c.resource_type == resource_type, clause_predicate(resource_type, None, clause, visible)
            )
            assert connection.execute(query).scalars().all() == []
    assert ids(store, k.Obs, chain) == ["o1"]
