"""Full-text search: `_text` on the narrative and `_content` on the whole resource (R4
search.html#text, #content), on both backends.

Every test creates its own resources under a tag unique to it and AND-s its searches with that
tag, so the shared database never changes an answer.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from fhir_server.search.fulltext import MAX_TEXT_BYTES, ROW_BYTES, row_values, words
from tests.conftest import FHIR_JSON
from tests.integration.helpers import error_code, parse

TAG_SYSTEM = "urn:fhir-server:test:search-text"
LOINC = "http://loinc.org"


def narrative(xhtml: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{xhtml}</div>'}


class Tagged:
    """Resources created under one new tag, and searches restricted to it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.tag = uuid.uuid4().hex[:16]

    def create(self, resource: dict[str, Any]) -> str:
        body = {**resource, "meta": {"tag": [{"system": TAG_SYSTEM, "code": self.tag}]}}
        response = self.client.post(f"/fhir/{resource['resourceType']}", json=body, headers=FHIR_JSON)
        assert response.status_code == 201, response.text[:2000]
        return str(response.json()["id"])

    def update(self, resource_id: str, resource: dict[str, Any]) -> None:
        body = {**resource, "id": resource_id, "meta": {"tag": [{"system": TAG_SYSTEM, "code": self.tag}]}}
        path = f"/fhir/{resource['resourceType']}/{resource_id}"
        response = self.client.put(path, json=body, headers=FHIR_JSON)
        assert response.status_code == 200, response.text[:2000]

    def params(self, params: list[tuple[str, str]]) -> list[tuple[str, str]]:
        return [*params, ("_tag", f"{TAG_SYSTEM}|{self.tag}")]

    def ids(self, path: str, *params: tuple[str, str]) -> set[str]:
        """Ids found by `GET [path]?params&_tag=...` (path "": a search across all types)."""
        url = f"/fhir/{path}" if path else "/fhir"
        response = self.client.get(url, params=self.params(list(params)), headers=FHIR_JSON)
        assert response.status_code == 200, (path, params, response.text[:2000])
        return {entry["resource"]["id"] for entry in parse(response.content).get("entry", [])}

    def rejected(self, path: str, *params: tuple[str, str], lenient: bool = False) -> Any:
        headers = {**FHIR_JSON, "Prefer": "handling=lenient"} if lenient else FHIR_JSON
        return self.client.get(f"/fhir/{path}", params=self.params(list(params)), headers=headers)


@pytest.fixture
def tagged(client: Any) -> Tagged:
    return Tagged(client)


def patient(xhtml: str | None = None, **elements: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"resourceType": "Patient", **elements}
    if xhtml is not None:
        body["text"] = narrative(xhtml)
    return body


def test_text_searches_the_narrative_only(tagged: Tagged) -> None:
    seen = tagged.create(patient("<p>Seen for <b>hypertension</b> follow-up</p>", name=[{"family": "Zamora"}]))
    named = tagged.create(patient("<p>Routine check</p>", name=[{"family": "Hypertension"}]))
    bare = tagged.create(patient(name=[{"family": "Hypertension"}]))  # no narrative at all
    assert tagged.ids("Patient", ("_text", "hypertension")) == {seen}
    assert tagged.ids("Patient", ("_text", "hyper")) == {seen}, "a word starting with the term"
    assert tagged.ids("Patient", ("_text", "tension")) == set(), "not a word's middle"
    assert tagged.ids("Patient", ("_text", "zamora")) == set(), "the name is not in the narrative"
    assert tagged.ids("Patient", ("_text", "follow-up")) == {seen}
    assert tagged.ids("Patient", ("_text", "routine")) == {named}
    assert tagged.ids("Patient", ("_content", "hypertension")) == {seen, named, bare}
    assert tagged.ids("Patient", ("_content", "zamora")) == {seen}


def test_content_finds_values_deep_in_the_resource(tagged: Tagged) -> None:
    home = tagged.create(patient(address=[{"line": ["534 Erewhon St"], "city": "Pleasantville"}]))
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "8480-6"}], "text": "Systolic blood pressure"},
        "subject": {"reference": f"Patient/{home}"},
        "valueQuantity": {"value": 120, "unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"},
        "note": [{"text": "Measured after *exercise*"}],
    }
    reading = tagged.create(observation)
    assert tagged.ids("Patient", ("_content", "pleasantville")) == {home}
    assert tagged.ids("Patient", ("_content", "erewhon st")) == {home}
    assert tagged.ids("Observation", ("_content", "systolic")) == {reading}
    assert tagged.ids("Observation", ("_content", "exercise")) == {reading}, "markdown in a note"
    assert tagged.ids("Observation", ("_content", "8480-6")) == {reading}, "a code"
    assert tagged.ids("Observation", ("_content", "mmhg")) == {reading}
    assert tagged.ids("Observation", ("_content", "final")) == {reading}
    # Not text: URIs, references (internal ids), numbers.
    assert tagged.ids("Observation", ("_content", "loinc")) == set()
    assert tagged.ids("Observation", ("_content", home)) == set()
    assert tagged.ids("Observation", ("_content", "120")) == set()
    assert tagged.ids("Observation", ("_text", "systolic")) == set(), "no narrative"


def test_phrases(tagged: Tagged) -> None:
    reading = tagged.create(
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "Systolic blood pressure"},
            "text": narrative("<p>Blood <i>pressure</i>, taken standing</p>"),
        }
    )
    other = tagged.create(
        {"resourceType": "Observation", "status": "final", "code": {"text": "Blood glucose; pressure normal"}}
    )
    assert tagged.ids("Observation", ("_content", "blood pressure")) == {reading}
    assert tagged.ids("Observation", ("_content", "systolic blood pressure")) == {reading}
    assert tagged.ids("Observation", ("_content", "blood  Press")) == {reading}, "the last word is a prefix"
    assert tagged.ids("Observation", ("_content", "pressure blood")) == set()
    assert tagged.ids("Observation", ("_content", "blood glucose")) == {other}
    assert tagged.ids("Observation", ("_content", "glucose; pressure")) == {other}
    assert tagged.ids("Observation", ("_text", "blood pressure, taken")) == {reading}, "across inline tags"
    assert tagged.ids("Observation", ("_text", "systolic blood")) == set()


def test_case_and_accents_are_folded(tagged: Tagged) -> None:
    french = tagged.create(patient("<p>Cr&egrave;me br&#xFB;l&eacute;e &Agrave;&nbsp;l'&Eacute;COLE</p>"))
    german = tagged.create(patient(name=[{"family": "Müller", "given": ["Jürgen"]}]))
    assert tagged.ids("Patient", ("_text", "creme brulee")) == {french}
    assert tagged.ids("Patient", ("_text", "CRÈME BRÛLÉE")) == {french}
    assert tagged.ids("Patient", ("_text", "a l'ecole")) == {french}, "entities read, &nbsp; a space"
    assert tagged.ids("Patient", ("_text", "École")) == {french}
    assert tagged.ids("Patient", ("_content", "MULLER")) == {german}
    assert tagged.ids("Patient", ("_content", "müller jürgen")) == {german}
    assert tagged.ids("Patient", ("_content", "jurg")) == {german}


def test_commas_or_and_repetition_ands(tagged: Tagged) -> None:
    first = tagged.create(patient("<p>alpha beta</p>"))
    second = tagged.create(patient("<p>alpha gamma</p>"))
    third = tagged.create(patient("<p>delta</p>"))
    assert tagged.ids("Patient", ("_text", "beta,gamma")) == {first, second}
    assert tagged.ids("Patient", ("_text", "delta,beta,omega")) == {first, third}
    assert tagged.ids("Patient", ("_text", "alpha"), ("_text", "gamma")) == {second}
    assert tagged.ids("Patient", ("_text", "delta,alpha"), ("_content", "gamma,beta")) == {first, second}
    assert tagged.ids("Patient", ("_text", "alpha"), ("_text", "delta")) == set()
    assert tagged.ids("Patient", ("_text", r"alpha\,beta")) == set(), "an escaped comma is text"


def test_like_wildcards_are_literal(tagged: Tagged) -> None:
    percent = tagged.create(patient("<p>dose 100% taken</p>"))
    thousand = tagged.create(patient("<p>dose 1000 mg</p>"))
    snake = tagged.create(patient("<p>snake_case value</p>"))
    camel = tagged.create(patient("<p>snakeXcase value</p>"))
    assert tagged.ids("Patient", ("_text", "100%")) == {percent}
    assert tagged.ids("Patient", ("_text", "100% taken")) == {percent}
    assert tagged.ids("Patient", ("_text", "%")) == {percent}
    assert tagged.ids("Patient", ("_text", "1%")) == set()
    assert tagged.ids("Patient", ("_text", "100")) == {percent, thousand}
    assert tagged.ids("Patient", ("_text", "snake_case")) == {snake}
    assert tagged.ids("Patient", ("_text", "_")) == {snake}
    assert tagged.ids("Patient", ("_text", "snake_")) == {snake}
    assert tagged.ids("Patient", ("_text", "snake")) == {snake, camel}
    assert tagged.ids("Patient", ("_text", "s_ake")) == set()


@pytest.mark.parametrize(
    ("name", "value"),
    [("_text:exact", "alpha"), ("_content:contains", "lph"), ("_content:missing", "true"), ("_text:text", "alpha")],
)
def test_modifiers_are_rejected(tagged: Tagged, name: str, value: str) -> None:
    alpha = tagged.create(patient("<p>alpha</p>"))
    response = tagged.rejected("Patient", (name, value))
    assert response.status_code == 400, response.text
    (issue,) = response.json()["issue"]
    assert issue["expression"] == [name] and error_code(issue) == "search-modifier-unsupported", issue
    lenient = tagged.rejected("Patient", (name, value), lenient=True)
    assert lenient.status_code == 200 and [e["resource"]["id"] for e in lenient.json()["entry"]] == [alpha]


@pytest.mark.parametrize(
    ("path", "name", "value", "code"),
    [
        ("Patient", "_sort", "_content", "search-parameter-unsupported"),
        ("Patient", "_sort", "-_text", "search-parameter-unsupported"),
        ("Bundle", "_text", "alpha", "search-parameter-unknown"),  # Bundle is not a DomainResource
        ("Patient", "_content", " ", "search-value-invalid"),
        ("Patient", "_content", "alpha,", "search-value-invalid"),
    ],
)
def test_unusable_requests_are_400(tagged: Tagged, path: str, name: str, value: str, code: str) -> None:
    response = tagged.rejected(path, (name, value))
    assert response.status_code == 400, response.text
    (issue,) = response.json()["issue"]
    assert issue["expression"] == [name] and error_code(issue) == code, issue


def test_an_update_replaces_the_text(tagged: Tagged) -> None:
    resource_id = tagged.create(patient("<p>before</p>", name=[{"family": "Oldname"}]))
    tagged.update(resource_id, patient("<p>after</p>", name=[{"family": "Newname"}]))
    assert tagged.ids("Patient", ("_text", "before")) == set()
    assert tagged.ids("Patient", ("_content", "oldname")) == set()
    assert tagged.ids("Patient", ("_text", "after")) == {resource_id}
    assert tagged.ids("Patient", ("_content", "newname")) == {resource_id}


def test_chains_has_and_system_search(tagged: Tagged) -> None:
    person = tagged.create(patient("<p>Quillfeather</p>"))
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "Quillfeather reading"},
        "subject": {"reference": f"Patient/{person}"},
    }
    reading = tagged.create(observation)
    assert tagged.ids("Observation", ("subject:Patient._text", "quillfeather")) == {reading}
    assert tagged.ids("Observation", ("subject:Patient._text", "reading")) == set()
    assert tagged.ids("Patient", ("_has:Observation:subject:_content", "quillfeather reading")) == {person}
    assert tagged.ids("", ("_content", "quillfeather")) == {person, reading}
    assert tagged.ids("", ("_type", "Patient,Observation"), ("_text", "quillfeather")) == {person}


def test_long_texts_are_split_into_overlapping_rows_and_capped(tagged: Tagged) -> None:
    """A narrative longer than one index row (PostgreSQL's B-tree limit) is written and searchable
    across the cuts; beyond MAX_TEXT_BYTES, words are not indexed."""
    listed = [f"w{n:05d}" for n in range(7000)]  # 7 bytes a word with its space: about 49 KB
    long_id = tagged.create(patient(f"<p>{' '.join(listed)}</p>"))
    rows = row_values(words(" ".join(listed)))
    assert len(rows) > 2 and all(len(row.encode()) <= ROW_BYTES for row in rows)
    for row in rows[:3]:  # 60 words (420 bytes) around each cut between two rows
        cut = listed.index(row.split()[-1]) + 1
        assert tagged.ids("Patient", ("_text", " ".join(listed[cut - 30 : cut + 30]))) == {long_id}
    last_kept = rows[-1].split()[-1]
    assert listed.index(last_kept) == (MAX_TEXT_BYTES - 1) // 7 - 1
    assert tagged.ids("Patient", ("_text", last_kept)) == {long_id}
    assert tagged.ids("Patient", ("_text", listed[-1])) == set(), "beyond the cap"
    huge_word = "x" * 450 + "tail"
    huge = tagged.create(patient(f"<p>{huge_word}</p>"))
    assert tagged.ids("Patient", ("_text", "x" * 300)) == {huge}
    assert tagged.ids("Patient", ("_text", huge_word)) == {huge}
    assert tagged.ids("Patient", ("_text", "x" * 460)) == set()


def test_capability_statement_lists_them(client: Any) -> None:
    statement = client.get("/fhir/metadata", headers=FHIR_JSON).json()
    resources = {entry["type"]: entry for entry in statement["rest"][0]["resource"]}

    def params(kind: str) -> dict[str, dict[str, Any]]:
        return {param["name"]: param for param in resources[kind]["searchParam"]}

    patient_params = params("Patient")
    assert patient_params["_text"]["type"] == patient_params["_content"]["type"] == "string"
    assert "documentation" not in patient_params["_text"], "no modifier, not even :missing"
    assert "_content" in params("Bundle") and "_text" not in params("Bundle")
