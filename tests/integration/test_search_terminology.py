"""Token `:in`, `:not-in`, `:above`, `:below` against ValueSets and CodeSystems stored here,
`_list` and `_filter`, through the REST API on both databases (R4 search.html#token, #list,
search_filter.html). Every test makes its own code systems, urls and names (the database is
shared), and narrows searches that could reach other tests' resources by subject or tag."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import FHIR_JSON
from tests.integration.helpers import assert_outcome

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

# root
# +-- animal
# |   +-- mammal
# |   |   +-- dog
# |   |   +-- cat
# |   +-- bird
# +-- plant
CODES = ("root", "animal", "mammal", "dog", "cat", "bird", "plant")


def post(client: TestClient, resource: dict[str, Any]) -> str:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def search(client: TestClient, path: str, params: dict[str, str] | list[tuple[str, str]]) -> dict[str, Any]:
    response = client.get(f"/fhir/{path}", params=params, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def matches(client: TestClient, path: str, params: dict[str, str] | list[tuple[str, str]]) -> set[str]:
    entries = search(client, path, params).get("entry") or []
    return {entry["resource"]["id"] for entry in entries if entry["search"]["mode"] == "match"}


class World:
    """A CodeSystem with the tree above, a Patient, and one Observation of that Patient per code
    (plus `dog` in another system and one coded in no system at all)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.tag = uuid.uuid4().hex[:12]
        self.system = f"http://example.org/cs/{self.tag}"
        self.other = f"http://example.org/other/{self.tag}"
        post(client, {"resourceType": "CodeSystem", "url": self.system, "status": "active", "content": "complete",
                      "concept": [{"code": "root", "concept": [
                          {"code": "animal", "concept": [
                              {"code": "mammal", "concept": [{"code": "dog"}, {"code": "cat"}]},
                              {"code": "bird"}]},
                          {"code": "plant"}]}]})  # fmt: skip
        self.patient = post(client, {"resourceType": "Patient", "name": [{"family": f"Owner{self.tag}"}]})
        self.obs: dict[str, str] = {}  # observation id -> label
        for code in CODES:
            self.observation(code, [{"system": self.system, "code": code}])
        self.observation("other-dog", [{"system": self.other, "code": "dog"}])
        self.observation("text-only", [], text="a dog")

    def observation(self, label: str, codings: list[dict[str, str]], text: str | None = None) -> str:
        code: dict[str, Any] = {"text": text} if text else {}
        if codings:
            code["coding"] = codings
        resource = {
            "resourceType": "Observation",
            "status": "final",
            "code": code,
            "subject": {"reference": f"Patient/{self.patient}"},
        }
        identity = post(self.client, resource)
        self.obs[identity] = label
        return identity

    def value_set(self, **content: Any) -> tuple[str, str]:
        """A ValueSet with a fresh url; (url, id)."""
        url = f"http://example.org/vs/{uuid.uuid4().hex[:12]}"
        return url, post(self.client, {"resourceType": "ValueSet", "url": url, "status": "active", **content})

    def labels(self, name: str, value: str, **more: str) -> set[str]:
        params = {name: value, "subject": f"Patient/{self.patient}", **more}
        return {self.obs[identity] for identity in matches(self.client, "Observation", params)}


@pytest.fixture
def world(client: TestClient) -> World:
    return World(client)


def test_in_and_not_in_by_expansion(world: World) -> None:
    contains = [
        {"system": world.system, "code": "dog"},
        {"abstract": True, "display": "birds", "contains": [{"system": world.system, "code": "bird"}]},
    ]
    url, identity = world.value_set(expansion={"timestamp": "2024-01-01T00:00:00Z", "contains": contains})
    assert world.labels("code:in", url) == {"dog", "bird"}
    assert world.labels("code:in", f"ValueSet/{identity}") == {"dog", "bird"}
    # :not-in: no code in the set, including resources with no code at all
    assert world.labels("code:not-in", url) == {"root", "animal", "mammal", "cat", "plant", "other-dog", "text-only"}
    unrelated = matches(world.client, "Observation", {"code:in": url})
    assert {world.obs[i] for i in unrelated} == {"dog", "bird"}  # nothing of other tests


def test_in_by_compose(world: World) -> None:
    whole, _ = world.value_set(
        compose={
            "include": [{"system": world.system}],
            "exclude": [{"system": world.system, "filter": [{"property": "concept", "op": "is-a", "value": "mammal"}]}],
        }
    )
    assert world.labels("code:in", whole) == {"root", "animal", "bird", "plant"}
    descendants = [{"property": "concept", "op": "descendent-of", "value": "animal"}]
    below, _ = world.value_set(compose={"include": [{"system": world.system, "filter": descendants}]})
    assert world.labels("code:in", below) == {"mammal", "dog", "cat", "bird"}
    listed, _ = world.value_set(
        compose={
            "include": [
                {"system": world.system, "concept": [{"code": "plant"}, {"code": "cat"}]},
                {"system": world.other, "concept": [{"code": "dog"}]},
            ]
        }
    )
    assert world.labels("code:in", listed) == {"plant", "cat", "other-dog"}
    imported, _ = world.value_set(compose={"include": [{"valueSet": [below, listed]}]})  # the intersection
    assert world.labels("code:in", imported) == {"cat"}
    assert world.labels("code:in", f"{imported},{whole}") == {"cat", "root", "animal", "bird", "plant"}
    assert world.labels("code:not-in", listed) == {"root", "animal", "mammal", "dog", "bird", "text-only"}


def test_value_set_versions_and_deleted_value_sets(world: World) -> None:
    url = f"http://example.org/vs/{world.tag}"
    old = {"resourceType": "ValueSet", "url": url, "version": "1", "status": "active"}
    post(world.client, {**old, "compose": {"include": [{"system": world.system, "concept": [{"code": "dog"}]}]}})
    newer = {**old, "version": "2", "compose": {"include": [{"system": world.system, "concept": [{"code": "cat"}]}]}}
    identity = post(world.client, newer)
    assert world.labels("code:in", f"{url}|1") == {"dog"}
    assert world.labels("code:in", f"{url}|2") == {"cat"}
    assert world.labels("code:in", url) == {"cat"}  # the most recently updated
    assert world.client.delete(f"/fhir/ValueSet/{identity}").status_code in (200, 204)
    assert world.labels("code:in", url) == {"dog"}
    response = world.client.get("/fhir/Observation", params={"code:in": f"{url}|2"}, headers=FHIR_JSON)
    assert_outcome(response, 400, [("search-valueset-unknown", None)])


def test_above_and_below(world: World) -> None:
    assert world.labels("code:below", f"{world.system}|mammal") == {"mammal", "dog", "cat"}
    assert world.labels("code:above", f"{world.system}|cat") == {"cat", "mammal", "animal", "root"}
    assert world.labels("code:below", f"{world.system}|dog,{world.system}|plant") == {"dog", "plant"}
    assert world.labels("code:below", f"{world.system}|not-in-the-system") == set()


def test_terminology_inside_chains_and_has(world: World) -> None:
    url, _ = world.value_set(compose={"include": [{"system": world.system, "concept": [{"code": "cat"}]}]})
    owners = matches(world.client, "Patient", {"_has:Observation:subject:code:in": url})
    assert owners == {world.patient}
    owners = matches(world.client, "Patient", {"_has:Observation:subject:code:below": f"{world.system}|bird"})
    assert owners == {world.patient}
    female, _ = world.value_set(
        compose={"include": [{"system": "http://hl7.org/fhir/administrative-gender", "concept": [{"code": "female"}]}]}
    )
    her = post(world.client, {"resourceType": "Patient", "gender": "female", "name": [{"family": f"Her{world.tag}"}]})
    observed = post(world.client, {"resourceType": "Observation", "status": "final", "code": {"text": world.tag},
                                   "subject": {"reference": f"Patient/{her}"}})  # fmt: skip
    # Patient.gender is a `code`: its rows have no system and match by code
    assert matches(world.client, "Observation", {"subject:Patient.gender:in": female, "code:text": world.tag}) == {
        observed
    }
    assert matches(world.client, "Patient", {"gender:in": female, "family": f"Her{world.tag}"}) == {her}
    assert matches(world.client, "Patient", {"gender:not-in": female, "family": f"Her{world.tag}"}) == set()


def test_unknown_terminology_is_a_bad_request(world: World) -> None:
    def outcome(params: dict[str, str], code: str) -> None:
        response = world.client.get("/fhir/Observation", params=params, headers=FHIR_JSON)
        assert_outcome(response, 400, [(code, None)])

    outcome({"code:in": f"http://example.org/vs/unknown-{world.tag}"}, "search-valueset-unknown")
    outcome({"code:not-in": "ValueSet/unknown-id"}, "search-valueset-unknown")
    outcome({"code:below": f"http://example.org/cs/unknown-{world.tag}|a"}, "search-codesystem-unknown")
    unstored, _ = world.value_set(compose={"include": [{"system": f"http://example.org/cs/unknown-{world.tag}"}]})
    outcome({"code:in": unstored}, "search-codesystem-unknown")
    regex, _ = world.value_set(
        compose={
            "include": [{"system": world.system, "filter": [{"property": "display", "op": "regex", "value": "."}]}]
        }
    )
    outcome({"code:in": regex}, "search-valueset-unexpandable")
    response = world.client.get("/fhir/Observation", params={"code:below": "dog"}, headers=FHIR_JSON)
    assert_outcome(response, 400, [("search-value-invalid", "code:below")])
    # lenient handling drops a malformed parameter, but an unknown ValueSet is still an error
    lenient = {**FHIR_JSON, "Prefer": "handling=lenient"}
    response = world.client.get("/fhir/Observation", params={"code:in": unstored}, headers=lenient)
    assert response.status_code == 400


def test_total_and_paging_resolve_once_and_agree(world: World) -> None:
    url, _ = world.value_set(compose={"include": [{"system": world.system}]})
    params = {"code:in": url, "subject": f"Patient/{world.patient}", "_count": "3", "_total": "accurate"}
    first = search(world.client, "Observation", params)
    assert first["total"] == len(CODES)
    seen = {entry["resource"]["id"] for entry in first["entry"]}
    next_url = next(link["url"] for link in first["link"] if link["relation"] == "next")
    while next_url:
        page = world.client.get(next_url.replace("http://127.0.0.1", ""), headers=FHIR_JSON).json()
        seen |= {entry["resource"]["id"] for entry in page.get("entry") or []}
        next_url = next((link["url"] for link in page["link"] if link["relation"] == "next"), None)
    assert {world.obs[i] for i in seen} == set(CODES)


# --- _list -----------------------------------------------------------------------------------------


def test_list(client: TestClient) -> None:
    tag = uuid.uuid4().hex[:12]
    listed = [post(client, {"resourceType": "Patient", "name": [{"family": f"Listed{tag}"}]}) for _ in range(2)]
    unlisted = post(client, {"resourceType": "Patient", "name": [{"family": f"Listed{tag}"}]})
    observation = post(client, {"resourceType": "Observation", "status": "final", "code": {"text": tag}})
    entries = [{"item": {"reference": f"Patient/{identity}"}} for identity in listed]
    entries.append({"item": {"reference": f"Observation/{observation}"}})
    the_list = post(client, {"resourceType": "List", "status": "current", "mode": "working", "entry": entries})
    empty = post(client, {"resourceType": "List", "status": "current", "mode": "working"})
    assert matches(client, "Patient", {"_list": the_list}) == set(listed)
    assert matches(client, "Patient", {"_list": f"List/{the_list}"}) == set(listed)
    assert matches(client, "Patient", {"_list": f"{empty},{the_list}", "family": f"Listed{tag}"}) == set(listed)
    assert matches(client, "Patient", {"_list": empty}) == set()
    assert matches(client, "Patient", {"_list": "no-such-list"}) == set()
    assert matches(client, "Observation", {"_list": the_list}) == {observation}
    assert matches(client, "", {"_list": the_list}) == {*listed, observation}
    assert unlisted not in matches(client, "Patient", {"_filter": f"family eq Listed{tag}", "_list": the_list})
    response = client.get("/fhir/Patient", params={"_list": "$current-allergies"}, headers=FHIR_JSON)
    assert_outcome(response, 400, [("search-parameter-unsupported", "_list")])
    assert client.delete(f"/fhir/List/{the_list}").status_code in (200, 204)
    assert matches(client, "Patient", {"_list": the_list}) == set()


# --- _filter ---------------------------------------------------------------------------------------


@pytest.fixture
def people(client: TestClient) -> dict[str, str]:
    """Patients of one family unique to the test: label -> id."""
    family = f"Fam{uuid.uuid4().hex[:12]}"

    def patient(label: str, given: str, **more: Any) -> tuple[str, str]:
        resource = {"resourceType": "Patient", "name": [{"family": family, "given": [given]}], **more}
        return label, post(client, resource)

    found = dict(
        [
            patient("peter", "Peter", gender="male", birthDate="2015-03-01"),
            patient("petra", "Petra", gender="female", birthDate="2010-01-01"),
            patient("anna", "Anna", gender="female", birthDate="2014-10-10"),
            patient("hans", "Hänsel", gender="male"),
        ]
    )
    found["family"] = family
    return found


def filtered(client: TestClient, people: dict[str, str], expression: str, path: str = "Patient") -> set[str]:
    family = people["family"]
    found = matches(client, path, {"_filter": f'family eq "{family}" and ({expression})'})
    labels = {identity: label for label, identity in people.items()}
    return {labels.get(identity, identity) for identity in found}


def test_filter_strings_dates_and_tokens(client: TestClient, people: dict[str, str]) -> None:
    assert filtered(client, people, 'given co "ete"') == {"peter"}
    assert filtered(client, people, "given sw pet") == {"peter", "petra"}
    assert filtered(client, people, "given eq PETER") == {"peter"}  # case insensitive
    assert filtered(client, people, "given eq pet") == set()  # the whole value
    assert filtered(client, people, "given ew ra") == {"petra"}
    assert filtered(client, people, "given eq hansel") == {"hans"}  # accents too
    assert filtered(client, people, "given ne peter") == {"petra", "anna", "hans"}
    assert filtered(client, people, "birthdate ge 2014-10-10") == {"peter", "anna"}
    assert filtered(client, people, "birthdate lt 2014") == {"petra"}
    assert filtered(client, people, "birthdate po 2014-10") == {"anna"}
    assert filtered(client, people, "birthdate pr false") == {"hans"}
    assert filtered(client, people, "gender eq female") == {"petra", "anna"}
    assert filtered(client, people, "gender eq http://hl7.org/fhir/administrative-gender|female") == set()  # no system
    assert filtered(client, people, f"_id eq {people['anna']}") == {"anna"}
    assert filtered(client, people, f"_id ne {people['anna']}") == {"peter", "petra", "hans"}


def test_filter_logic(client: TestClient, people: dict[str, str]) -> None:
    assert filtered(client, people, 'given eq "peter" and birthdate ge 2014-10-10') == {"peter"}
    assert filtered(client, people, "gender eq male or birthdate eq 2010") == {"peter", "hans", "petra"}
    assert filtered(client, people, "not(gender eq male)") == {"petra", "anna"}
    # left to right: (a or b) and c
    assert filtered(client, people, "given eq anna or given eq peter and gender eq male") == {"peter"}
    assert filtered(client, people, "given eq anna or (given eq peter and gender eq male)") == {"anna", "peter"}
    assert filtered(client, people, "not(given sw pet or birthdate pr false)") == {"anna"}


def test_filter_chains_references_and_terminology(world: World) -> None:
    client = world.client
    family = f"Owner{world.tag}"
    at = {identity: label for identity, label in world.obs.items()}
    chained = matches(client, "Observation", {"_filter": f"subject.family eq {family} and code eq {world.system}|cat"})
    assert {at[i] for i in chained} == {"cat"}
    subject = f"subject re Patient/{world.patient}"
    found = matches(client, "Observation", {"_filter": f"{subject} and code ss {world.system}|mammal"})
    assert {at[i] for i in found} == {"mammal", "dog", "cat"}
    found = matches(client, "Observation", {"_filter": f"{subject} and code sb {world.system}|dog"})
    assert {at[i] for i in found} == {"dog", "mammal", "animal", "root"}
    url, _ = world.value_set(compose={"include": [{"system": world.system, "concept": [{"code": "bird"}]}]})
    found = matches(client, "Observation", {"_filter": f"{subject} and code in {url}"})
    assert {at[i] for i in found} == {"bird"}
    found = matches(client, "Observation", {"_filter": f"{subject} and code ni {url} and code pr true"})
    assert {at[i] for i in found} == set(world.obs.values()) - {"bird"}
    # ne: "an item in the set has an unequal value": two codings, one of them unequal
    both = world.observation("both", [{"system": world.system, "code": "cat"}, {"system": world.system, "code": "dog"}])
    found = matches(client, "Observation", {"_filter": f"{subject} and code ne {world.system}|cat"})
    assert both in found and {at.get(i) for i in found} >= {"dog", "other-dog"}
    assert "cat" not in {at.get(i) for i in found} and "text-only" not in {at.get(i) for i in found}
    found = matches(client, "Observation", {"_filter": f"{subject} and not(code eq {world.system}|cat)"})
    assert both not in found and "text-only" in {at.get(i) for i in found}
    response = client.get("/fhir/Observation", params={"_filter": "code in http://example.org/nope"}, headers=FHIR_JSON)
    assert_outcome(response, 400, [("search-valueset-unknown", None)])


def test_filter_with_paging_sort_and_links(client: TestClient, people: dict[str, str]) -> None:
    expression = f'family eq "{people["family"]}" and (gender eq female or given eq peter)'
    params = [("_filter", expression), ("_sort", "-birthdate"), ("_total", "accurate"), ("_count", "2")]
    body = search(client, "Patient", params)
    assert body["total"] == 3
    assert [entry["resource"]["id"] for entry in body["entry"]] == [people["peter"], people["anna"]]
    links = {link["relation"]: link["url"] for link in body["link"]}
    assert "_filter=" in links["self"]
    page = client.get(links["next"].replace("http://127.0.0.1", ""), headers=FHIR_JSON).json()
    assert [entry["resource"]["id"] for entry in page["entry"]] == [people["petra"]]


def test_filter_errors(client: TestClient) -> None:
    def outcome(params: list[tuple[str, str]], expected: list[tuple[str | None, str | None]]) -> None:
        response = client.get("/fhir/Patient", params=params, headers=FHIR_JSON)
        assert_outcome(response, 400, expected)

    outcome([("_filter", "bogus eq 1")], [("search-parameter-unknown", "_filter")])
    outcome([("_filter", "name eq")], [("search-value-invalid", "_filter")])
    outcome([("_filter", "gender gt x")], [("search-parameter-unsupported", "_filter")])
    outcome([("_filter", "related[type eq x].target pr true")], [("search-parameter-unsupported", "_filter")])
    outcome(
        [("_filter", "(name eq a"), ("_filter", "birthdate eq 2000-13")],
        [("search-value-invalid", "_filter"), ("search-value-invalid", "_filter")],
    )
    lenient = {**FHIR_JSON, "Prefer": "handling=lenient"}
    response = client.get("/fhir/Patient", params={"_filter": "bogus eq 1", "_count": "1"}, headers=lenient)
    assert response.status_code == 200
