"""SMART scopes enforced through the access-context seam (SMART App Launch 2.x
scopes-and-launch-context.html; auth/policy.py, store/compile_access.py).

Interactions run here with access contexts as the bearer-token check builds them, on SQLite and
PostgreSQL: a missing permission letter is 403; a resource outside the grants (another patient's,
or not matching a granular scope) is absent by every read path, and a write that would land
outside them is refused with nothing stored.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from fhir_server.access import AccessContext
from fhir_server.errors import Forbidden, MethodNotAllowed, NotFound
from fhir_server.interactions import bundle, create, delete, history, read, search, update
from fhir_server.interactions.context import Env
from tests.conftest import FHIR_JSON

VITALS = "http://terminology.hl7.org/CodeSystem/observation-category|vital-signs"


@dataclass
class World:
    tag: str
    alice: str
    bob: str
    alice_vitals: str
    alice_lab: str
    bob_vitals: str
    practitioner: str


def _observation(patient: str, category: str, tag: str, performer: str) -> dict[str, Any]:
    return {
        "resourceType": "Observation",
        "status": "final",
        "meta": {"tag": [{"system": "urn:test", "code": tag}]},
        "category": [
            {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}], "text": tag},
        "subject": {"reference": f"Patient/{patient}"},
        "performer": [{"reference": f"Practitioner/{performer}"}],
    }


@pytest.fixture(scope="module")
def world(client: Any) -> World:
    tag = uuid.uuid4().hex[:12]

    def post(body: dict[str, Any]) -> str:
        response = client.post(f"/fhir/{body['resourceType']}", json=body, headers=FHIR_JSON)
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    meta = {"tag": [{"system": "urn:test", "code": tag}]}
    practitioner = post({"resourceType": "Practitioner", "meta": meta, "name": [{"family": f"Doc{tag}"}]})
    alice = post({"resourceType": "Patient", "meta": meta, "name": [{"family": f"Alice{tag}"}]})
    bob = post({"resourceType": "Patient", "meta": meta, "name": [{"family": f"Bob{tag}"}]})
    return World(
        tag,
        alice,
        bob,
        post(_observation(alice, "vital-signs", tag, practitioner)),
        post(_observation(alice, "laboratory", tag, practitioner)),
        post(_observation(bob, "vital-signs", tag, practitioner)),
        practitioner,
    )


@pytest.fixture
def env_for(store: Any, settings: Any) -> Callable[..., Env]:
    def make(
        *scopes: str,
        patient: str | None = None,
        kind: str = "patient",
        clinic: str | None = None,
        role: str | None = None,
    ) -> Env:
        context = AccessContext(
            principal="someone", kind=kind, scopes=frozenset(scopes), patient=patient, clinic_id=clinic, role=role
        )
        return Env(store, settings, context, "http://127.0.0.1/fhir")

    return make


def ids(result: Any, mode: str = "match") -> set[str]:
    body = orjson.loads(orjson.dumps(result.body))  # entries hold the stored bytes as fragments
    return {e["resource"]["id"] for e in body.get("entry", []) if e["search"]["mode"] == mode}


def test_no_scope_for_the_interaction_is_403(world: World, env_for: Callable[..., Env]) -> None:
    nothing = env_for()
    read_only = env_for("patient/Observation.rs", patient=world.alice)
    with pytest.raises(Forbidden):
        read.read(nothing, "Observation", world.alice_vitals)
    with pytest.raises(Forbidden):
        search.search(nothing, "Observation", [])
    with pytest.raises(Forbidden):
        read.read(read_only, "Patient", world.alice)  # a type the token does not name
    with pytest.raises(Forbidden):  # read scopes never imply write
        create.create(read_only, "Observation", _observation(world.alice, "laboratory", world.tag, world.practitioner))
    with pytest.raises(Forbidden):
        delete.delete(read_only, "Observation", world.alice_vitals)
    search_only = env_for("patient/Observation.s", patient=world.alice)
    with pytest.raises(Forbidden):  # `s` searches; reading by id needs `r`
        read.read(search_only, "Observation", world.alice_vitals)
    assert ids(search.search(search_only, "Observation", [("_tag", f"urn:test|{world.tag}")])) == {
        world.alice_vitals,
        world.alice_lab,
    }


@pytest.mark.parametrize("scope", ["patient/Observation.rs", "patient/Observation.read", "patient/*.rs"])
def test_a_patient_token_reaches_its_patient_only_by_every_read_path(
    world: World, env_for: Callable[..., Env], scope: str
) -> None:
    env = env_for(scope, patient=world.alice)
    tagged = ("_tag", f"urn:test|{world.tag}")
    assert read.read(env, "Observation", world.alice_vitals).version is not None
    with pytest.raises(NotFound):
        read.read(env, "Observation", world.bob_vitals)
    with pytest.raises(NotFound):
        read.vread(env, "Observation", world.bob_vitals, "1")
    with pytest.raises(NotFound):
        history.history(env, [], "Observation", world.bob_vitals)
    mine = {world.alice_vitals, world.alice_lab}
    assert ids(search.search(env, "Observation", [tagged])) == mine
    assert ids(search.search(env, "Observation", [("code", "http://loinc.org|8867-4"), tagged])) == mine
    assert ids(search.search(env, "Observation", [], compartment=("Patient", world.bob))) == set()
    assert ids(search.search(env, None, [("_type", "Observation"), tagged])) == mine
    type_history = history.history(env, [("_count", "1000")], "Observation").body
    assert type_history is not None
    assert {e["resource"]["id"] for e in orjson.loads(orjson.dumps(type_history)).get("entry", [])} <= mine
    counted = search.search(env, "Observation", [tagged, ("_total", "accurate")])
    assert counted.body is not None and counted.body["total"] == 2
    chained = search.search(env, "Observation", [("subject:Patient.family", f"Bob{world.tag}")])
    assert ids(chained) == set()
    included = search.search(env, "Observation", [tagged, ("_include", "Observation:subject")])
    if scope == "patient/*.rs":  # Patient readable too: the patient herself comes along, Bob never
        assert ids(included, "include") == {world.alice}
        with pytest.raises(NotFound):
            read.read(env, "Patient", world.bob)
        assert read.read(env, "Patient", world.alice).version is not None
        revincluded = search.search(env, "Patient", [tagged, ("_revinclude", "Observation:subject")])
        assert ids(revincluded) == {world.alice} and ids(revincluded, "include") == mine
        has = search.search(env, "Patient", [tagged, ("_has:Observation:subject:code", "8867-4")])
        assert ids(has) == {world.alice}
        assert ids(search.search(env, "Practitioner", [tagged])) == set()  # not in Alice's compartment
    else:  # Patient not granted: neither included nor reachable through a chain
        assert ids(included, "include") == set()
        assert ids(search.search(env, "Observation", [("subject:Patient.family", f"Alice{world.tag}")])) == set()


def test_a_granular_scope_narrows_reads_to_its_search(world: World, env_for: Callable[..., Env]) -> None:
    env = env_for(f"patient/Observation.rs?category={VITALS}", patient=world.alice)
    assert ids(search.search(env, "Observation", [("_tag", f"urn:test|{world.tag}")])) == {world.alice_vitals}
    assert read.read(env, "Observation", world.alice_vitals).version is not None
    with pytest.raises(NotFound):
        read.read(env, "Observation", world.alice_lab)
    clinic = f"clinic-{uuid.uuid4().hex[:8]}"
    recorder = env_for("user/*.cruds", kind="clinic-member", clinic=clinic, role="clinic-admin")
    mine = {
        category: create.create(
            recorder, "Observation", _observation(world.bob, category, world.tag, world.practitioner)
        )
        for category in ("vital-signs", "laboratory")
    }
    user_env = env_for(
        f"user/Observation.rs?category={VITALS}", kind="clinic-member", clinic=clinic, role="practitioner"
    )
    found = ids(search.search(user_env, "Observation", [("_tag", f"urn:test|{world.tag}")]))
    assert found == {mine["vital-signs"].version.id}  # type: ignore[union-attr]


def test_a_patient_token_writes_only_into_its_patient(world: World, env_for: Callable[..., Env], client: Any) -> None:
    env = env_for("patient/Observation.cruds", patient=world.alice)
    written = _observation(world.alice, "laboratory", f"{world.tag}-written", world.practitioner)
    mine = create.create(env, "Observation", written)
    assert mine.status == 201 and mine.version is not None
    marker = f"elsewhere-{uuid.uuid4().hex[:8]}"
    foreign = _observation(world.bob, "laboratory", marker, world.practitioner)
    with pytest.raises(Forbidden):
        create.create(env, "Observation", foreign)
    assert client.get("/fhir/Observation", params={"code:text": marker}).json()["total"] == 0
    moved = {**written, "subject": {"reference": f"Patient/{world.bob}"}, "id": mine.version.id}
    with pytest.raises(Forbidden):  # re-pointing Alice's Observation at Bob
        update.update(env, "Observation", mine.version.id, moved)
    stored = client.get(f"/fhir/Observation/{mine.version.id}").json()
    assert stored["subject"]["reference"] == f"Patient/{world.alice}" and stored["meta"]["versionId"] == "1"
    with pytest.raises(MethodNotAllowed) as hidden:  # Bob's Observation is not there for this token...
        update.update(env, "Observation", world.bob_vitals, {**foreign, "id": world.bob_vitals})
    with pytest.raises(MethodNotAllowed) as missing:  # ...exactly as if it had never existed
        update.update(env, "Observation", "no-such-id", {**foreign, "id": "no-such-id"})
    assert hidden.value.error_code == missing.value.error_code
    transaction = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "resource": _observation(world.alice, "laboratory", marker, world.practitioner),
                "request": {"method": "POST", "url": "Observation"},
            },
            {"resource": foreign, "request": {"method": "POST", "url": "Observation"}},
        ],
    }
    with pytest.raises(Forbidden):
        bundle.process_bundle(env, transaction)
    assert client.get("/fhir/Observation", params={"code:text": marker}).json()["total"] == 0  # all or nothing
    batch = {**transaction, "type": "batch"}
    answer = bundle.process_bundle(env, batch).body
    assert answer is not None
    assert [entry["response"]["status"][:3] for entry in answer["entry"]] == ["201", "403"]
