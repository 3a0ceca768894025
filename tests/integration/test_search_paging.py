"""Paging, includes and result parameters of search (R4 search.html#paging, #include, #revinclude,
#chaining, #has, #total, #count, #summary, #elements, #post, #_type, #errors; http.html#search).

Every test creates its own resources under a tag unique to it and AND-s its searches with that
tag, so the shared database never changes an answer. The paging test reads pages over real
sockets (`live_server`) while another thread keeps creating matching resources.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest

from fhir_server.model.summary import SUBSETTED
from tests.conftest import FHIR_JSON
from tests.integration.helpers import error_code, parse

TAG_SYSTEM = "urn:fhir-server:test:search-paging"
LOINC = "http://loinc.org"


def new_tag() -> str:
    return uuid.uuid4().hex[:16]


def tag_param(tag: str) -> tuple[str, str]:
    return ("_tag", f"{TAG_SYSTEM}|{tag}")


def with_tag(resource: dict[str, Any], tag: str) -> dict[str, Any]:
    return {**resource, "meta": {"tag": [{"system": TAG_SYSTEM, "code": tag}]}}


def transaction(client: Any, resources: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Create resources keyed by a local name; `"reference": "name"` inside them points at another
    entry. Returns name -> server id."""
    full_urls = {name: f"urn:uuid:{uuid.uuid4()}" for name in resources}

    def linked(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: full_urls.get(v, v) if k == "reference" and isinstance(v, str) else linked(v)
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [linked(item) for item in node]
        return node

    entries = [
        {
            "fullUrl": full_urls[name],
            "resource": linked(body),
            "request": {"method": "POST", "url": body["resourceType"]},
        }
        for name, body in resources.items()
    ]
    response = client.post("/fhir", json={"resourceType": "Bundle", "type": "transaction", "entry": entries})
    assert response.status_code == 200, response.text[:2000]
    answers = response.json()["entry"]
    return {name: answer["response"]["location"].split("/")[1] for name, answer in zip(resources, answers, strict=True)}


def search(client: Any, path: str, params: list[tuple[str, str]], headers: dict[str, str] | None = None) -> Any:
    response = client.get(f"/fhir/{path}", params=params, headers=headers or FHIR_JSON)
    assert response.status_code == 200, (path, params, response.text[:2000])
    return parse(response.content)


def entries(body: dict[str, Any], mode: str | None = None) -> list[tuple[str, str]]:
    """(type, id) of the entries, in order, of one search mode (None: all)."""
    return [
        (e["resource"]["resourceType"], e["resource"]["id"])
        for e in body.get("entry", [])
        if mode is None or e["search"]["mode"] == mode
    ]


def link(body: dict[str, Any], relation: str) -> str | None:
    return next((item["url"] for item in body["link"] if item["relation"] == relation), None)


def query_names(url: str) -> list[str]:
    return [name for name, _ in parse_qsl(urlsplit(url).query)]


# --- paging while resources are being created ---------------------------------------------------------


class Writer(threading.Thread):
    """Creates matching Patients until stopped, over its own connection."""

    def __init__(self, base: str, tag: str) -> None:
        super().__init__(daemon=True)
        self.base, self.tag = base, tag
        self.stop = threading.Event()
        self.created: list[str] = []
        self.errors: list[str] = []
        self.progress = threading.Condition()

    def run(self) -> None:
        with httpx.Client(timeout=30) as http:
            n = 0
            while not self.stop.is_set() and n < 200:
                n += 1
                body = with_tag({"resourceType": "Patient", "name": [{"family": f"Pager{n % 37:02d}"}]}, self.tag)
                response = http.post(f"{self.base}/Patient", json=body, headers=FHIR_JSON)
                if response.status_code != 201:
                    self.errors.append(response.text[:500])
                    return
                with self.progress:
                    self.created.append(response.json()["id"])
                    self.progress.notify_all()

    def wait_for_more(self, than: int) -> None:
        with self.progress:
            self.progress.wait_for(lambda: len(self.created) > than or not self.is_alive(), timeout=10)


@pytest.mark.parametrize("sort", ["", "_lastUpdated", "-_lastUpdated", "family", "-_id"], ids=lambda s: s or "default")
def test_paging_while_matching_resources_are_created(live_server: str, sort: str) -> None:
    tag = new_tag()
    with httpx.Client(timeout=30) as http:
        initial = []
        for n in range(20):
            body = with_tag({"resourceType": "Patient", "name": [{"family": f"Pager{n:02d}"}]}, tag)
            response = http.post(f"{live_server}/Patient", json=body, headers=FHIR_JSON)
            assert response.status_code == 201, response.text
            initial.append(response.json()["id"])
        writer = Writer(live_server, tag)
        writer.start()
        try:
            params = [tag_param(tag), ("_count", "3")] + ([("_sort", sort)] if sort else [])
            response = http.get(f"{live_server}/Patient", params=params, headers=FHIR_JSON)
            seen: list[str] = []
            pages = 0
            while True:
                assert response.status_code == 200, response.text[:2000]
                body = response.json()
                page = [entry["resource"]["id"] for entry in body.get("entry", [])]
                assert len(page) <= 3
                seen.extend(page)
                pages += 1
                following = link(body, "next")
                if following is None:
                    break
                assert len(page) == 3, "only the last page may be short"
                writer.wait_for_more(len(writer.created))  # at least one more is created between two pages
                assert pages < 100
                response = http.get(following, headers=FHIR_JSON)
        finally:
            writer.stop.set()
            writer.join(timeout=30)
    assert not writer.errors, writer.errors
    assert len(writer.created) >= pages - 1, "the writer did not create while paging"
    assert len(seen) == len(set(seen)), f"resources seen twice: {[i for i in seen if seen.count(i) > 1]}"
    assert set(initial) <= set(seen), f"missing: {set(initial) - set(seen)}"
    assert set(seen) <= set(initial) | set(writer.created)


def test_last_page_has_no_next_link(client: Any) -> None:
    tag = new_tag()
    transaction(client, {f"p{n}": with_tag({"resourceType": "Patient"}, tag) for n in range(6)})
    body = search(client, "Patient", [tag_param(tag), ("_count", "3")])
    assert len(entries(body)) == 3 and link(body, "next")
    last = search(client, "Patient", list(parse_qsl(urlsplit(link(body, "next") or "").query)))
    assert len(entries(last)) == 3 and link(last, "next") is None
    exact = search(client, "Patient", [tag_param(tag), ("_count", "6")])
    assert len(entries(exact)) == 6 and link(exact, "next") is None
    assert link(search(client, "Patient", [tag_param(tag), ("_count", "7")]), "next") is None


# --- a small clinic for the include, chain and _has tests ----------------------------------------------


@dataclass
class Clinic:
    tag: str
    ids: dict[str, str]

    def ref(self, name: str) -> tuple[str, str]:
        kind = {"org": "Organization", "org2": "Organization", "doc": "Practitioner"}.get(name)
        kind = kind or ("Patient" if name.startswith("pat") else "Observation")
        return kind, self.ids[name]


@pytest.fixture(scope="module")
def clinic(client: Any) -> Clinic:
    """org <- patA, patB (general practitioner doc); org2 <- patC; obs1, obs2 on patA (performer doc),
    obs3 on patB, obs4 on patC; names Alpha/Bravo/Charlie + a unique suffix; obs1 and obs4 share a
    code of their own."""
    tag = new_tag()
    code = f"code-{tag}"

    def obs(patient: str, concept: str, performer: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"coding": [{"system": LOINC, "code": concept}]},
            "subject": {"reference": patient},
        }
        if performer:
            body["performer"] = [{"reference": "doc"}]
        return with_tag(body, tag)

    def patient(name: str, org: str) -> dict[str, Any]:
        body = {
            "resourceType": "Patient",
            "name": [{"family": f"{name}{tag}"}],
            "managingOrganization": {"reference": org},
            "generalPractitioner": [{"reference": "doc"}],
        }
        return with_tag(body, tag)

    resources = {
        "org": with_tag({"resourceType": "Organization", "name": f"Org {tag}"}, tag),
        "org2": with_tag({"resourceType": "Organization", "name": f"Org2 {tag}"}, tag),
        "doc": with_tag({"resourceType": "Practitioner", "name": [{"family": f"Doc{tag}"}]}, tag),
        "patA": patient("Alpha", "org"),
        "patB": patient("Bravo", "org"),
        "patC": patient("Charlie", "org2"),
        "obs1": obs("patA", code, performer=True),
        "obs2": obs("patA", "8302-2", performer=True),
        "obs3": obs("patB", "8302-2"),
        "obs4": obs("patC", code),
    }
    return Clinic(tag, transaction(client, resources))


def refs(clinic: Clinic, *names: str) -> set[tuple[str, str]]:
    return {clinic.ref(name) for name in names}


INCLUDES = [
    ("Observation", [("_include", "Observation:patient")], ["obs1", "obs2", "obs3", "obs4"], ["patA", "patB", "patC"]),
    (
        "Observation",
        [("_include", "Observation:patient"), ("_include:iterate", "Patient:organization")],
        ["obs1", "obs2", "obs3", "obs4"],
        ["patA", "patB", "patC", "org", "org2"],
    ),
    (  # without :iterate, Patient:organization applies to the matches only (Observations): nothing
        "Observation",
        [("_include", "Observation:patient"), ("_include", "Patient:organization")],
        ["obs1", "obs2", "obs3", "obs4"],
        ["patA", "patB", "patC"],
    ),
    (
        "Observation",
        [("_include", "Observation:subject:Patient")],
        ["obs1", "obs2", "obs3", "obs4"],
        ["patA", "patB", "patC"],
    ),
    ("Observation", [("_include", "Observation:performer")], ["obs1", "obs2", "obs3", "obs4"], ["doc"]),
    ("Observation", [("_include", "Observation:*")], ["obs1", "obs2", "obs3", "obs4"], ["patA", "patB", "patC", "doc"]),
    ("Observation", [("_include", "*")], ["obs1", "obs2", "obs3", "obs4"], ["patA", "patB", "patC", "doc"]),
    (
        "Observation",
        [("_include", "*"), ("_include:iterate", "*")],
        ["obs1", "obs2", "obs3", "obs4"],
        ["patA", "patB", "patC", "doc", "org", "org2"],
    ),
    ("Patient", [("_revinclude", "Observation:patient")], ["patA", "patB", "patC"], ["obs1", "obs2", "obs3", "obs4"]),
    ("Patient", [("_revinclude", "Observation:*")], ["patA", "patB", "patC"], ["obs1", "obs2", "obs3", "obs4"]),
    ("Patient", [("_revinclude", "*")], ["patA", "patB", "patC"], ["obs1", "obs2", "obs3", "obs4"]),
    ("Organization", [("_revinclude", "Patient:organization")], ["org", "org2"], ["patA", "patB", "patC"]),
    (
        "Organization",
        [("_revinclude", "Patient:organization"), ("_revinclude:iterate", "Observation:patient")],
        ["org", "org2"],
        ["patA", "patB", "patC", "obs1", "obs2", "obs3", "obs4"],
    ),
    (  # a forward include on the revincluded resources: their general practitioner
        "Organization",
        [("_revinclude", "Patient:organization"), ("_include:iterate", "Patient:general-practitioner")],
        ["org", "org2"],
        ["patA", "patB", "patC", "doc"],
    ),
    ("Practitioner", [("_revinclude", "Observation:performer")], ["doc"], ["obs1", "obs2"]),
]


@pytest.mark.parametrize(
    ("path", "params", "matches", "included"),
    INCLUDES,
    ids=[f"{path}-{'&'.join(f'{k}={v}' for k, v in params)}" for path, params, _, _ in INCLUDES],
)
def test_include_and_revinclude(
    client: Any, clinic: Clinic, path: str, params: list[tuple[str, str]], matches: list[str], included: list[str]
) -> None:
    body = search(client, path, [tag_param(clinic.tag), *params])
    assert set(entries(body, "match")) == refs(clinic, *matches)
    found = entries(body, "include")
    assert len(found) == len(set(found)), "an included resource appears twice"
    assert set(found) == refs(clinic, *included)
    assert body["total"] == len(matches), "included resources are not counted in the total"
    for name, _ in params:
        assert name in query_names(link(body, "self") or "")


def test_include_follows_the_page_not_the_whole_result(client: Any, clinic: Clinic) -> None:
    params = [tag_param(clinic.tag), ("_include", "Observation:patient"), ("_sort", "_id"), ("_count", "1")]
    body = search(client, "Observation", params)
    (match,) = entries(body, "match")
    observation = next(e["resource"] for e in body["entry"] if e["search"]["mode"] == "match")
    assert entries(body, "include") == [tuple(observation["subject"]["reference"].split("/"))]
    assert match[0] == "Observation"


def test_chain_with_several_values(client: Any, clinic: Clinic) -> None:
    t = clinic.tag
    for name, patients in [
        (f"Alpha{t},Bravo{t}", ["obs1", "obs2", "obs3"]),
        (f"Charlie{t}", ["obs4"]),
        (f"alpha{t},nobody{t}", ["obs1", "obs2"]),
        (f"nobody{t}", []),
    ]:
        for chain in ("subject:Patient.name", "patient.name", "subject:Patient.family"):
            body = search(client, "Observation", [tag_param(t), (chain, name)])
            assert set(entries(body)) == refs(clinic, *patients), (chain, name)
    # two chained clauses AND-ed; a chain two levels deep (to the patient's organization)
    body = search(client, "Observation", [tag_param(t), ("patient.name", f"Alpha{t},Charlie{t}"), ("code", "8302-2")])
    assert set(entries(body)) == refs(clinic, "obs2")
    body = search(client, "Observation", [tag_param(t), ("patient.organization.name", f"Org2 {t}")])
    assert set(entries(body)) == refs(clinic, "obs4")
    body = search(client, "Observation", [tag_param(t), ("patient.organization._id", clinic.ids["org"])])
    assert set(entries(body)) == refs(clinic, "obs1", "obs2", "obs3")


def test_has_and_nested_has(client: Any, clinic: Clinic) -> None:
    t, code = clinic.tag, f"code-{clinic.tag}"
    body = search(client, "Patient", [tag_param(t), ("_has:Observation:patient:code", code)])
    assert set(entries(body)) == refs(clinic, "patA", "patC")
    body = search(client, "Patient", [tag_param(t), ("_has:Observation:patient:code", f"{code},8302-2")])
    assert set(entries(body)) == refs(clinic, "patA", "patB", "patC")
    body = search(client, "Patient", [tag_param(t), ("_has:Observation:subject:performer", clinic.ids["doc"])])
    assert set(entries(body)) == refs(clinic, "patA")
    nested = "_has:Patient:organization:_has:Observation:patient:code"
    assert set(entries(search(client, "Organization", [tag_param(t), (nested, code)]))) == refs(clinic, "org", "org2")
    assert set(entries(search(client, "Organization", [tag_param(t), (nested, "8302-2")]))) == refs(clinic, "org")
    assert entries(search(client, "Organization", [tag_param(t), (nested, "no-such-code")])) == []
    both = [tag_param(t), ("_has:Observation:patient:code", code), ("_has:Observation:patient:code", "8302-2")]
    assert set(entries(search(client, "Patient", both))) == refs(clinic, "patA")


# --- totals, counts, summaries and elements ----------------------------------------------------------


def test_total_summary_count_and_zero_count(client: Any, clinic: Clinic) -> None:
    base = [tag_param(clinic.tag)]
    none = search(client, "Observation", [*base, ("_total", "none")])
    assert "total" not in none and len(entries(none)) == 4
    accurate = search(client, "Observation", [*base, ("_total", "accurate"), ("_count", "1")])
    assert accurate["total"] == 4 and len(entries(accurate)) == 1
    estimate = search(client, "Observation", [*base, ("_total", "estimate")])
    assert estimate["total"] == 4  # the whole set fits the page: the exact figure costs nothing
    counted = search(client, "Observation", [*base, ("_summary", "count")])
    assert counted["total"] == 4 and "entry" not in counted and link(counted, "next") is None
    zero = search(client, "Observation", [*base, ("_count", "0")])
    assert zero["total"] == 4 and "entry" not in zero and link(zero, "next") is None
    with_includes = search(client, "Observation", [*base, ("_summary", "count"), ("_include", "Observation:patient")])
    assert with_includes["total"] == 4 and "entry" not in with_includes


def test_total_without_total_parameter_is_given_only_when_free(client: Any, clinic: Clinic, backend: str) -> None:
    """Without `_total`: the exact total when every match is on the first page, none otherwise
    (counting costs as much as reading everything). `estimate`: the planner's figure on
    PostgreSQL, an exact count on SQLite."""
    whole = search(client, "Observation", [tag_param(clinic.tag), ("_count", "5")])
    assert whole["total"] == 4 and len(entries(whole)) == 4
    base = [tag_param(clinic.tag), ("_count", "2")]
    first = search(client, "Observation", base)
    assert "total" not in first and len(entries(first)) == 2
    second = search(client, "Observation", list(parse_qsl(urlsplit(link(first, "next") or "").query)))
    assert "total" not in second and len(entries(second)) == 2
    estimate = search(client, "Observation", [*base, ("_total", "estimate")])
    assert isinstance(estimate["total"], int) and estimate["total"] >= 0
    if backend == "sqlite":
        assert estimate["total"] == 4
    assert search(client, "Observation", [*base, ("_total", "accurate")])["total"] == 4


def test_elements_and_summary(client: Any, clinic: Clinic) -> None:
    body = search(client, "Patient", [tag_param(clinic.tag), ("_elements", "name")])
    assert len(entries(body)) == 3
    for entry in body["entry"]:
        resource = entry["resource"]
        assert set(resource) == {"resourceType", "id", "meta", "name"}, resource
        assert SUBSETTED in resource["meta"]["tag"]
    qualified = search(client, "Patient", [tag_param(clinic.tag), ("_elements", "Patient.managingOrganization")])
    for entry in qualified["entry"]:
        assert set(entry["resource"]) == {"resourceType", "id", "meta", "managingOrganization"}, entry["resource"]
    summary = search(client, "Patient", [tag_param(clinic.tag), ("_summary", "true")])
    for entry in summary["entry"]:
        resource = entry["resource"]  # managingOrganization is a summary element, generalPractitioner is not
        assert "managingOrganization" in resource and "generalPractitioner" not in resource, resource
        assert SUBSETTED in resource["meta"]["tag"]
    full = search(client, "Patient", [tag_param(clinic.tag)])
    for entry in full["entry"]:
        assert SUBSETTED not in entry["resource"]["meta"].get("tag", [])
    mixed = search(
        client,
        "",
        [("_type", "Patient,Observation"), tag_param(clinic.tag), ("_elements", "Patient.name,Observation.subject")],
    )
    for entry in mixed["entry"]:
        resource = entry["resource"]
        expected = {"name"} if resource["resourceType"] == "Patient" else {"subject", "status", "code"}
        assert set(resource) - {"resourceType", "id", "meta"} == expected, resource


# --- POST _search, system and compartment searches -------------------------------------------------------


def test_post_search_with_a_form_body(client: Any, clinic: Clinic) -> None:
    form = {"_tag": f"{TAG_SYSTEM}|{clinic.tag}", "code": "8302-2"}
    get = search(client, "Observation", list(form.items()))
    posted = client.post("/fhir/Observation/_search", data=form, headers={"Accept": "application/fhir+json"})
    assert posted.status_code == 200, posted.text[:2000]
    assert entries(posted.json()) == entries(get) and set(entries(get)) == refs(clinic, "obs2", "obs3")
    # query string and body together are AND-ed
    mixed = client.post(
        "/fhir/Observation/_search?patient.name=Bravo" + clinic.tag,
        data=form,
        headers={"Accept": "application/fhir+json"},
    )
    assert mixed.status_code == 200 and set(entries(mixed.json())) == refs(clinic, "obs3")
    system = client.post(
        "/fhir/_search", data={**form, "_type": "Observation"}, headers={"Accept": "application/fhir+json"}
    )
    assert system.status_code == 200 and set(entries(system.json())) == refs(clinic, "obs2", "obs3")
    as_json = client.post("/fhir/Observation/_search", json=form, headers={"Accept": "application/fhir+json"})
    assert as_json.status_code == 415, as_json.text
    form_type = {"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/fhir+json"}
    not_utf8 = client.post("/fhir/Observation/_search", content=b"_id=\xff", headers=form_type)
    assert not_utf8.status_code == 400, not_utf8.text
    unknown = client.post("/fhir/Observation/_search", content=b"unknown-parameter=1", headers=form_type)
    assert unknown.status_code == 400 and unknown.json()["issue"][0]["expression"] == ["unknown-parameter"]


def test_system_search(client: Any, clinic: Clinic) -> None:
    wanted = ["patA", "obs1", "org"]
    ids = ",".join(clinic.ids[name] for name in wanted)
    body = search(client, "", [("_type", "Patient,Observation"), ("_id", ids)])
    assert set(entries(body)) == refs(clinic, "patA", "obs1")
    body = search(client, "", [("_id", ids)])
    assert set(entries(body)) == refs(clinic, *wanted)
    body = search(client, "", [("_type", "Organization,Practitioner"), tag_param(clinic.tag)])
    assert set(entries(body)) == refs(clinic, "org", "org2", "doc")
    rejected = client.get("/fhir", params=[("_type", "Patient,Observation"), ("name", "x")], headers=FHIR_JSON)
    assert rejected.status_code == 400, "name is not a parameter of Observation"


def test_compartment_search(client: Any, clinic: Clinic) -> None:
    patient = clinic.ids["patA"]
    body = search(client, f"Patient/{patient}/Observation", [])
    assert set(entries(body)) == refs(clinic, "obs1", "obs2")
    body = search(client, f"Patient/{patient}/Observation", [("code", "8302-2")])
    assert set(entries(body)) == refs(clinic, "obs2")
    assert (link(body, "self") or "").startswith("http://127.0.0.1/fhir/Patient/" + patient + "/Observation")
    assert entries(search(client, f"Patient/{clinic.ids['patC']}/Observation", [])) == [clinic.ref("obs4")]
    assert entries(search(client, f"Patient/{uuid.uuid4()}/Observation", [])) == []


# --- strict and lenient handling ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "code"),
    [
        ("unknown-parameter", "x", "search-parameter-unknown"),
        ("name:nonsense", "x", "search-modifier-unsupported"),
        ("birthdate", "not-a-date", "search-value-invalid"),
    ],
)
def test_strict_and_lenient_handling(client: Any, clinic: Clinic, name: str, value: str, code: str) -> None:
    params = [tag_param(clinic.tag), (name, value)]
    for prefer in (None, "handling=strict"):
        headers = {**FHIR_JSON, **({"Prefer": prefer} if prefer else {})}
        response = client.get("/fhir/Patient", params=params, headers=headers)
        assert response.status_code == 400, response.text
        (issue,) = response.json()["issue"]
        assert issue["expression"] == [name] and error_code(issue) == code, issue
    lenient = search(client, "Patient", params, headers={**FHIR_JSON, "Prefer": "handling=lenient"})
    assert set(entries(lenient)) == refs(clinic, "patA", "patB", "patC"), "the bad parameter is ignored"
    self_link = link(lenient, "self") or ""
    assert name not in query_names(self_link) and "_tag" in query_names(self_link)


def _pages(client: Any, params: list[tuple[str, str]]) -> Iterator[dict[str, Any]]:
    body = search(client, "Observation", params)
    while True:
        yield body
        following = link(body, "next")
        if following is None:
            return
        body = search(client, "Observation", list(parse_qsl(urlsplit(following).query)))


def test_paging_links_keep_the_search(client: Any, clinic: Clinic) -> None:
    """Every page's links repeat the criteria and result parameters, and the pages join up."""
    params = [tag_param(clinic.tag), ("_count", "1"), ("_sort", "-_id"), ("_include", "Observation:patient")]
    seen: list[tuple[str, str]] = []
    started = time.monotonic()
    for body in _pages(client, params):
        assert time.monotonic() - started < 60
        self_names = query_names(link(body, "self") or "")
        assert {"_tag", "_count", "_sort", "_include"} <= set(self_names)
        seen += entries(body, "match")
        assert len(entries(body, "include")) == 1
    assert seen == sorted(refs(clinic, "obs1", "obs2", "obs3", "obs4"), key=lambda ref: ref[1], reverse=True)


def test_a_reference_to_another_server_never_matches_a_local_resource(client):
    import uuid as _uuid

    local = client.post("/fhir/Patient", json={"resourceType": "Patient"}, headers=FHIR_JSON).json()["id"]
    code = f"foreign-{_uuid.uuid4().hex[:10]}"
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"coding": [{"system": "urn:t", "code": code}]},
        "subject": {"reference": f"http://other.example.org/fhir/Patient/{local}"},
    }
    assert client.post("/fhir/Observation", json=observation, headers=FHIR_JSON).status_code == 201
    by_local = client.get("/fhir/Observation", params={"subject": f"Patient/{local}", "code": f"urn:t|{code}"}).json()
    assert "entry" not in by_local
    by_url = client.get(
        "/fhir/Observation",
        params={"subject": f"http://other.example.org/fhir/Patient/{local}", "code": f"urn:t|{code}"},
    ).json()
    assert len(by_url["entry"]) == 1
    included = client.get(
        "/fhir/Observation", params={"code": f"urn:t|{code}", "_include": "Observation:subject"}
    ).json()
    assert [entry["search"]["mode"] for entry in included["entry"]] == ["match"]
