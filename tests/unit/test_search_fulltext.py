"""Full-text extraction and parsing (fhir_server.search.fulltext, R4 search.html#text, #content)."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from fhir_server.errors import Invalid
from fhir_server.search.clauses import ChainClause, IndexRow, TextClause
from fhir_server.search.fulltext import (
    MAX_TEXT_BYTES,
    OVERLAP_BYTES,
    ROW_BYTES,
    index_rows,
    narrative_text,
    row_values,
    search_term,
    words,
)
from fhir_server.search.query import parse_search
from fhir_server.search.registry import search_param
from tests.conftest import EXAMPLES

DIV = '<div xmlns="http://www.w3.org/1999/xhtml">{}</div>'

PATIENT: dict[str, Any] = {
    "resourceType": "Patient",
    "id": "p-identifier-9",
    "meta": {"profile": ["http://example.org/StructureDefinition/portable"], "lastUpdated": "2024-01-02T03:04:05Z"},
    "text": {
        "status": "generated",
        "div": DIV.format(
            "<p>Peter <b>Chalmers</b> (&quot;Jim&quot;)&nbsp;&amp; Cr&egrave;me<!-- secret --></p>"
            "<table><tr><td>one</td><td>two</td></tr></table><script>alert('x')</script>"
        ),
    },
    "extension": [{"url": "http://example.org/ext/nickname", "valueString": "Jimbo"}],
    "identifier": [{"system": "http://acme.org/mrn", "value": "MRN-12345"}],
    "active": True,
    "name": [{"use": "official", "family": "Müller", "given": ["Ann", "Marie"]}],
    "birthDate": "1974-12-25",
    "address": [{"line": ["534 Erewhon St"], "city": "Pleasantville", "postalCode": "3999"}],
    "managingOrganization": {"reference": "Organization/org-internal-7", "display": "Acme Clinic"},
    "photo": [{"contentType": "image/png", "data": "iVBORw0KGgoAAAANSUhEUgAAAAE", "hash": "c2hhMQ=="}],
    "multipleBirthInteger": 2,
    "contained": [
        {
            "resourceType": "Organization",
            "id": "inner",
            "name": "Inner Org",
            "text": {"status": "additional", "div": DIV.format("<p>Contained narrative</p>")},
        }
    ],
}


def rows_by_param(resource: dict[str, Any]) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for row in index_rows(resource):
        assert isinstance(row, IndexRow) and row.kind == "string" and row.values["exact"] is None
        found.setdefault(row.param, []).append(row.values["value"])
    return found


def test_words_fold_case_and_accents_and_split_off_punctuation() -> None:
    assert words("  Peter  ÉCOLE Müller ") == ["peter", "ecole", "muller"]
    assert words('("Jim") O\'Brien, 100%') == ["(", '"', "jim", '"', ")", "o", "'", "brien", ",", "100", "%"]
    assert words("snake_case 5.4mg") == ["snake", "_", "case", "5", ".", "4mg"]
    assert search_term("Blood   PRESSURE") == "blood pressure"
    assert search_term("  ") == ""
    assert words("a" * 250) == ["a" * 100, "a" * 100, "a" * 50], "long words split the same way on both sides"


def test_narrative_text_reads_xhtml() -> None:
    text = narrative_text(PATIENT["text"]["div"])
    assert search_term(text) == 'peter chalmers ( " jim " ) & creme one two'
    assert narrative_text("<div>unclosed <b>bold").split() == ["unclosed", "bold"]
    assert narrative_text("") == ""
    assert narrative_text("plain text, no tags") == "plain text, no tags"


def test_text_is_the_root_narrative() -> None:
    assert rows_by_param(PATIENT)["_text"] == [' peter chalmers ( " jim " ) & creme one two ']


def test_content_is_every_text_value_of_the_resource() -> None:
    (content,) = rows_by_param(PATIENT)["_content"]
    assert content.startswith(' peter chalmers ( " jim " ) & creme one two ') and content.endswith(" ")
    assert "  " not in content
    for present in (
        "jimbo",  # an extension's value
        "mrn - 12345",  # an identifier's value
        "official muller ann marie",  # a code and a name, in document order
        "534 erewhon st pleasantville 3999",
        "acme clinic",  # a reference's display
        "image / png",
        "inner org contained narrative",  # a contained resource, with its narrative
    ):
        assert f" {present} " in content, present
    for absent in ("p", "identifier", "9", "example", "portable", "acme . org", "internal", "ivborw", "c2hhmq"):
        assert f" {absent} " not in content, absent  # ids, URIs, references, base64
    for absent in ("1974", "2024", "generated", "additional", "secret", "alert", "true", "2", "patient"):
        assert f" {absent} " not in content, absent  # dates, narrative status and hidden parts, non-strings


def test_resources_without_narrative_have_no_text_row() -> None:
    assert rows_by_param({"resourceType": "Patient", "gender": "female"}) == {"_content": [" female "]}
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Basic"}}]}
    assert rows_by_param(bundle) == {"_content": [" collection "]}
    assert rows_by_param({"resourceType": "Patient", "id": "x"}) == {}


@pytest.mark.parametrize("shape", ["ascii", "multibyte"])
def test_long_texts_take_overlapping_rows_up_to_a_cap(shape: str) -> None:
    if shape == "ascii":
        listed = [f"w{n}" + "x" * (n % 13) for n in range(6000)]
    else:
        listed = [f"日本{n}" + "語" * (n % 7) for n in range(3000)]
    rows = row_values(listed)
    assert len(rows) > 3
    assert all(len(row.encode()) <= ROW_BYTES and row.startswith(" ") and row.endswith(" ") for row in rows)
    kept = list(dict.fromkeys(word for row in rows for word in row.split()))
    assert kept == listed[: len(kept)], "the words in order, each kept at least once"
    assert MAX_TEXT_BYTES - 30 < len(" ".join(kept).encode()) + 2 <= MAX_TEXT_BYTES, "capped"
    for start in range(0, len(kept), 7):  # every phrase of up to OVERLAP_BYTES lies whole in a row
        end, size = start, 1
        while end < len(kept) and size + len(kept[end].encode()) + 1 <= OVERLAP_BYTES:
            size += len(kept[end].encode()) + 1
            end += 1
        phrase = " " + " ".join(kept[start:end]) + " "
        assert any(phrase in row for row in rows), (start, end)


def test_a_long_narrative_is_capped_in_both_rows() -> None:
    listed = [f"w{n:05d}" for n in range(7000)]
    patient = {"resourceType": "Patient", "text": {"status": "generated", "div": DIV.format(" ".join(listed))}}
    found = rows_by_param(patient)
    assert found["_text"] == row_values(listed)
    assert found["_content"] == found["_text"]


def test_every_official_example_indexes_within_the_limits() -> None:
    for path in sorted(EXAMPLES.glob("*.json")):
        resource = json.loads(path.read_text(), parse_float=Decimal)
        rows = index_rows(resource)
        assert {row.param for row in rows} <= {"_text", "_content"}
        assert all(len(row.values["value"].encode()) <= ROW_BYTES for row in rows), path.name
        if isinstance((resource.get("text") or {}).get("div"), str):
            assert any(row.param == "_text" for row in rows) or not narrative_text(resource["text"]["div"]).strip()


# --- parsing -----------------------------------------------------------------------------------------


def parse(params: list[tuple[str, str]], resource_type: str | None = "Patient") -> Any:
    return parse_search(resource_type, params, search_param)


def error_codes(params: list[tuple[str, str]], resource_type: str | None = "Patient") -> list[str]:
    with pytest.raises(Invalid) as caught:
        parse(params, resource_type)
    assert caught.value.status == 400
    return [issue.error_code for issue in caught.value.issues]


def test_values_are_normalised_terms_ored_by_commas_anded_by_repetition() -> None:
    request = parse([("_text", "Blood  Pressure,Crème,crème"), ("_content", r"a\,b"), ("_content", "100%")])
    assert request.clauses == (
        TextClause("_text", ("blood pressure", "creme")),
        TextClause("_content", ("a , b",)),
        TextClause("_content", ("100 %",)),
    )


def test_chains_and_has_reach_them() -> None:
    (chain,) = parse([("subject:Patient._text", "jim")], "Observation").clauses
    assert isinstance(chain, ChainClause) and chain.inner == TextClause("_text", ("jim",))
    (has,) = parse([("_has:Observation:subject:_content", "x")]).clauses
    assert has.inner == TextClause("_content", ("x",))
    (system,) = parse([("_content", "x")], None).clauses
    assert system == TextClause("_content", ("x",))


@pytest.mark.parametrize("name", ["_text:exact", "_text:contains", "_content:missing", "_content:text", "_text:not"])
def test_no_modifier_applies(name: str) -> None:
    assert error_codes([(name, "x")]) == ["search-modifier-unsupported"]


def test_unusable_values_types_and_sorts() -> None:
    assert error_codes([("_content", " ")]) == ["search-value-invalid"]
    assert error_codes([("_content", "a,,b")]) == ["search-value-invalid"]
    assert error_codes([("_text", "x")], "Bundle") == ["search-parameter-unknown"]
    assert error_codes([("_text", "x")], None) == ["search-parameter-unknown"]  # not on Bundle, Binary...
    assert error_codes([("_sort", "_text")]) == ["search-parameter-unsupported"]
    assert error_codes([("_sort", "-_content")]) == ["search-parameter-unsupported"]
