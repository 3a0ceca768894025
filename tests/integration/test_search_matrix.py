"""Search conformance matrix: every search parameter of Patient, Consent, Appointment, Coverage,
AllergyIntolerance and Observation, with each form, modifier and prefix of its type (R4
search.html), on both backends.

The cases are generated from the registry (search_matrix_cases.py): per parameter one subject
resource with a value for it, and per form a value that must find the subject and one that must
not. Every search is AND-ed with the subject's own marker tag (or its `_id`), so it returns exactly
the subject or nothing whatever else the shared database holds. Each type's resources are created
in one transaction Bundle, on first use.

A case may carry a strict xfail (`Case.xfail`) for a feature being built, so that it fails
(XPASS) the moment the feature lands; none does now. `_text` and `_content` have their own
cases: a narrative word finds the subject and not the blank resource, and a word of an element
outside the narrative is found by `_content` only.
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

from fhir_server.model.json import dumps
from fhir_server.search.registry import official_params as search_params  # the matrix covers the R4 set
from tests.conftest import FHIR_JSON
from tests.integration.helpers import parse
from tests.integration.search_matrix_cases import (
    MARK,
    PLACEHOLDER,
    RUN,
    TYPES,
    Case,
    Plan,
    all_cases,
    build_plan,
    pick_date,
)

CASES = list(all_cases())
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/(zzph[0-9]{6})$")


def _param(case: Case) -> Any:
    marks = [pytest.mark.xfail(strict=True, reason=case.xfail)] if case.xfail else []
    return pytest.param(case, id=case.id, marks=marks)


class Loaded:
    """The matrix resources on one backend: one transaction per type, sent on first use."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.run = uuid.uuid4().hex[:12]
        self.ids: dict[str, str] = {}
        self.last_updated: dict[str, datetime] = {}
        self.loaded: set[str] = set()

    def substitute(self, text: str) -> str:
        return PLACEHOLDER.sub(lambda match: self.ids[match.group(0)], text.replace(RUN, self.run))

    def load(self, resource_type: str) -> Plan:
        plan = build_plan(resource_type)
        if resource_type in self.loaded:
            return plan
        full_urls = {placeholder: f"urn:uuid:{uuid.uuid4()}" for placeholder in plan.entries}

        def linked(node: Any) -> Any:
            if isinstance(node, dict):
                out = {}
                for key, value in node.items():
                    match = _REFERENCE.match(value) if key == "reference" and isinstance(value, str) else None
                    out[key] = full_urls[match.group(1)] if match else linked(value)
                return out
            if isinstance(node, list):
                return [linked(item) for item in node]
            return node

        entries = [
            {
                "fullUrl": full_urls[placeholder],
                "resource": linked(entry.resource),
                "request": {"method": "POST", "url": entry.resource["resourceType"]},
            }
            for placeholder, entry in plan.entries.items()
        ]
        body = dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}).decode()
        response = self.client.post("/fhir", content=body.replace(RUN, self.run).encode(), headers=FHIR_JSON)
        assert response.status_code == 200, f"{resource_type} transaction: {response.text[:3000]}"
        answers = parse(response.content)["entry"]
        for placeholder, answer in zip(plan.entries, answers, strict=True):
            _, new_id, *_ = answer["response"]["location"].split("/")
            self.ids[placeholder] = new_id
        self.loaded.add(resource_type)
        return plan

    def updated(self, resource_type: str, placeholder: str) -> datetime:
        if placeholder not in self.last_updated:
            response = self.client.get(f"/fhir/{resource_type}/{self.ids[placeholder]}", headers=FHIR_JSON)
            assert response.status_code == 200, response.text
            stamp = datetime.fromisoformat(response.json()["meta"]["lastUpdated"].replace("Z", "+00:00"))
            self.last_updated[placeholder] = stamp.astimezone(UTC).replace(tzinfo=None)
        return self.last_updated[placeholder]

    def value(self, case: Case) -> str:
        if case.dynamic == "lastUpdated":
            moment = self.updated(case.resource_type, case.subject)
            rows = [{"low": moment, "high": moment + timedelta(microseconds=1)}]
            picked = pick_date(case.value, rows, case.match, datetime.now(UTC).replace(tzinfo=None))
            assert picked is not None, f"no {case.value} value {'matches' if case.match else 'misses'} {moment}"
            return case.value + picked
        return self.substitute(case.value)


@pytest.fixture(scope="module")
def loaded(client: Any) -> Loaded:
    return Loaded(client)


def _found(body: dict[str, Any]) -> list[str]:
    return [entry["resource"]["id"] for entry in body.get("entry", []) if entry["search"]["mode"] == "match"]


@pytest.mark.parametrize("case", [_param(case) for case in CASES])
def test_search_matrix(loaded: Loaded, client: Any, case: Case) -> None:
    assert case.subject, f"no resource with a value for {case.resource_type}.{case.name} could be found or built"
    plan = loaded.load(case.resource_type)
    entry = plan.entries[case.subject]
    subject_id = loaded.ids[case.subject]
    restriction = ("_tag", f"{MARK}|{loaded.substitute(entry.marker)}") if entry.marker else ("_id", subject_id)
    params = [(case.name, loaded.value(case)), restriction]
    headers = {"Accept": "application/fhir+json"}
    if case.lenient:
        headers["Prefer"] = "handling=lenient"
    response = client.get(f"/fhir/{case.resource_type}", params=params, headers=headers)
    query = f"{case.resource_type}?{case.name}={params[0][1]}"
    if case.status == 400:
        assert response.status_code == 400, (query, response.status_code, response.text[:1000])
        issues = response.json()["issue"]
        assert [issue.get("expression") for issue in issues] == [[case.name]], issues
        return
    assert response.status_code == 200, (query, response.status_code, response.text[:1000])
    body = response.json()
    found = _found(body)
    assert found == ([subject_id] if case.match else []), f"{query} ({'match' if case.match else 'no match'})"
    assert body.get("total", len(found)) == len(found)
    if case.lenient:
        self_link = next(link["url"] for link in body["link"] if link["relation"] == "self")
        assert case.name not in [name for name, _ in parse_qsl(urlsplit(self_link).query)], self_link


@pytest.mark.parametrize("resource_type", TYPES)
def test_every_parameter_has_a_matching_and_a_missing_case(resource_type: str) -> None:
    """The matrix covers the registry: no parameter of a matrix type is left without cases."""
    cases = [case for case in CASES if case.resource_type == resource_type]
    for code, param in search_params(resource_type).items():
        mine = [case for case in cases if re.split(r"[:.]", case.name)[0] == code]
        assert any(case.match for case in mine), f"{resource_type}.{code} has no matching case"
        assert any(not case.match for case in mine), f"{resource_type}.{code} has no non-matching case"
        if (param.table is not None or param.type == "composite") and code not in ("_id", "_lastUpdated"):
            assert any(case.name == f"{code}:missing" for case in mine), f"{resource_type}.{code}: no :missing"
