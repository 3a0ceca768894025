"""Clinic isolation by every read path (DESIGN.md section 3; issue 5, point 4), on SQLite and
PostgreSQL, at the interaction level with the access contexts the bearer-token check builds.

Two clinics record data: clinic A a Patient with an Observation, an Appointment and a Coverage;
clinic B its own Patient and Observation, and an Observation about A's patient. For every
principal kind the expected view is one set (`VISIBLE`); every read path in `PATHS` is checked
against it, so a new read path is covered by adding one entry there. A clinic sees what it
recorded, nothing of another clinic's, and a patient everything in their own compartment; the
portable profile opens to a clinic with registration + consent (the last test). The name-only
view of a registered patient without consent is not built yet: such a Patient stays invisible.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from fhir_server.access import AccessContext
from fhir_server.errors import FhirError, Forbidden
from fhir_server.interactions import create, history, read, search
from fhir_server.interactions.context import Env
from fhir_server.interactions.ownership import SHARING_CATEGORY_CODE, SHARING_CATEGORY_SYSTEM
from fhir_server.ops.validate import validate

TAG = "urn:test:isolation"
CLINIC_A, CLINIC_B = f"clinic-a-{uuid.uuid4().hex[:6]}", f"clinic-b-{uuid.uuid4().hex[:6]}"
PRINCIPALS: dict[str, dict[str, Any]] = {
    "a-admin": {"kind": "clinic-member", "clinic_id": CLINIC_A, "role": "clinic-admin", "scopes": "user/*.cruds"},
    "a-practitioner": {"kind": "clinic-member", "clinic_id": CLINIC_A, "role": "practitioner", "scopes": "user/*.rs"},
    "a-staff": {"kind": "clinic-member", "clinic_id": CLINIC_A, "role": "staff", "scopes": "user/*.rs"},
    "a-backend": {"kind": "backend-service", "clinic_id": CLINIC_A, "scopes": "system/*.rs"},
    "b-admin": {"kind": "clinic-member", "clinic_id": CLINIC_B, "role": "clinic-admin", "scopes": "user/*.cruds"},
    "platform-admin": {"kind": "platform-admin", "scopes": "user/*.rs"},
    "patient-a": {"kind": "patient", "scopes": "patient/*.rs"},  # `patient` filled in with A's patient
}
# Which named resources each principal sees (the names are those of `World.ids`).
VISIBLE = {
    "a-admin": {"PA", "OA", "AA", "CA"},
    "a-practitioner": {"PA", "OA", "AA"},  # no insurance
    "a-staff": {"PA", "AA", "CA"},  # no clinical records
    "a-backend": {"PA", "OA", "AA", "CA"},
    "b-admin": {"PB", "OB", "OBA"},
    "platform-admin": set(),
    "patient-a": {"PA", "OA", "AA", "CA", "OBA"},  # everything about her, from both clinics
}


@dataclass
class World:
    tag: str
    ids: dict[str, str]  # name -> id
    types: dict[str, str]  # name -> resource type
    subjects: dict[str, str]  # Observation name -> Patient name

    def names(self, found: set[str]) -> set[str]:
        by_id = {identifier: name for name, identifier in self.ids.items()}
        return {by_id[identifier] for identifier in found if identifier in by_id}


def _env(store: Any, settings: Any, principal: str, patient: str | None = None) -> Env:
    spec = dict(PRINCIPALS[principal])
    scopes = frozenset(spec.pop("scopes").split())
    context = AccessContext(principal=principal, scopes=scopes, patient=patient, **spec)
    return Env(store, settings, context, "http://127.0.0.1/fhir")


@pytest.fixture(scope="module")
def world(store: Any, settings: Any) -> World:
    tag = uuid.uuid4().hex[:12]
    meta = {"tag": [{"system": TAG, "code": tag}]}
    recorders = {"A": _env(store, settings, "a-admin"), "B": _env(store, settings, "b-admin")}
    ids: dict[str, str] = {}
    types: dict[str, str] = {}

    def record(name: str, clinic: str, body: dict[str, Any]) -> None:
        result = create.create(recorders[clinic], body["resourceType"], {**body, "meta": meta})
        assert result.version is not None
        ids[name], types[name] = result.version.id, body["resourceType"]

    def observation(patient: str) -> dict[str, Any]:
        return {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": tag},
            "identifier": [{"system": TAG, "value": f"{tag}-{patient}-{len(ids)}"}],
            "subject": {"reference": f"Patient/{ids[patient]}"},
        }

    record("PA", "A", {"resourceType": "Patient", "name": [{"family": f"Alpha{tag}"}]})
    record("OA", "A", observation("PA"))
    record(
        "AA",
        "A",
        {
            "resourceType": "Appointment",
            "status": "booked",
            "participant": [{"actor": {"reference": f"Patient/{ids['PA']}"}, "status": "accepted"}],
        },
    )
    record(
        "CA",
        "A",
        {
            "resourceType": "Coverage",
            "status": "active",
            "beneficiary": {"reference": f"Patient/{ids['PA']}"},
            "payor": [{"display": "Insurer"}],
        },
    )
    record("PB", "B", {"resourceType": "Patient", "name": [{"family": f"Bravo{tag}"}]})
    record("OB", "B", observation("PB"))
    record("OBA", "B", observation("PA"))
    return World(tag, ids, types, {"OA": "PA", "OB": "PB", "OBA": "PA"})


def _found(result: Any, mode: str = "match") -> set[str]:
    body = orjson.loads(orjson.dumps(result.body))
    entries = body.get("entry", [])
    return {e["resource"]["id"] for e in entries if e.get("search", {}).get("mode", "match") == mode}


def _quietly(call: Callable[[], Any]) -> Any:
    """The answer, or None when the interaction is refused (403) for this principal."""
    try:
        return call()
    except Forbidden:
        return None


# --- the read paths: each answers the names it returned, given the expected view -------------------


def _direct(kind: str) -> Callable[[Env, World, set[str]], tuple[set[str], set[str]]]:
    def check(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
        seen = set()
        for name, identifier in world.ids.items():
            try:
                _one(kind, env, world.types[name], identifier)
                seen.add(name)
            except FhirError as error:
                assert error.status in (403, 404), (name, error)
        return seen, visible

    return check


def _one(kind: str, env: Env, resource_type: str, identifier: str) -> Any:
    if kind == "read":
        return read.read(env, resource_type, identifier)
    if kind == "vread":
        return read.vread(env, resource_type, identifier, "1")
    if kind == "history":
        return history.history(env, [], resource_type, identifier)
    return validate(env, resource_type, identifier, None, [])


def _type_search(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    seen: set[str] = set()
    for resource_type in sorted(set(world.types.values())):
        answer = _quietly(lambda t=resource_type: search.search(env, t, [("_tag", f"{TAG}|{world.tag}")]))
        if answer is not None:
            seen |= world.names(_found(answer))
            assert answer.body["total"] == len(_found(answer))  # counts see no more than the page
    return seen, visible


def _system_search(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    types = ",".join(sorted(set(world.types.values())))
    answer = _quietly(lambda: search.search(env, None, [("_type", types), ("_tag", f"{TAG}|{world.tag}")]))
    return (world.names(_found(answer)) if answer else set()), visible


def _histories(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    seen: set[str] = set()
    for resource_type in [*sorted(set(world.types.values())), None]:
        answer = _quietly(lambda t=resource_type: history.history(env, [("_count", "1000")], t))
        if answer is not None:
            body = orjson.loads(orjson.dumps(answer.body))
            seen |= world.names({e["resource"]["id"] for e in body.get("entry", []) if "resource" in e})
    return seen, visible


def _includes(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    params = [("_tag", f"{TAG}|{world.tag}"), ("_include", "Observation:subject")]
    answer = _quietly(lambda: search.search(env, "Observation", params))
    if answer is None:
        return set(), set()
    expected = {world.subjects[o] for o in visible if o in world.subjects} & visible
    return world.names(_found(answer, "include")), expected


def _revincludes(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    params = [("_tag", f"{TAG}|{world.tag}"), ("_revinclude", "Observation:subject")]
    answer = _quietly(lambda: search.search(env, "Patient", params))
    if answer is None:
        return set(), set()
    expected = {o for o, p in world.subjects.items() if p in visible} & visible
    return world.names(_found(answer, "include")), expected


def _chain(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    params = [("subject:Patient.family", f"Alpha{world.tag}")]
    answer = _quietly(lambda: search.search(env, "Observation", params))
    expected = {o for o, p in world.subjects.items() if p == "PA" and "PA" in visible} & visible
    return (world.names(_found(answer)) if answer else set()), (expected if answer else set())


def _has(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    params = [("_has:Observation:subject:code:text", world.tag)]
    answer = _quietly(lambda: search.search(env, "Patient", params))
    expected = {p for o, p in world.subjects.items() if o in visible} & visible
    return (world.names(_found(answer)) if answer else set()), (expected if answer else set())


def _compartment(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    answer = _quietly(lambda: search.search(env, "Observation", [], compartment=("Patient", world.ids["PA"])))
    expected = {o for o, p in world.subjects.items() if p == "PA"} & visible
    return (world.names(_found(answer)) if answer else set()), (expected if answer else set())


def _conditional_create(env: Env, world: World, visible: set[str]) -> tuple[set[str], set[str]]:
    """If-None-Exist on another's Observation's identifier: a match only when it is visible."""
    seen = set()
    for name in ("OA", "OB", "OBA"):
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "probe"},
            "subject": {"reference": f"Patient/{world.ids[world.subjects[name]]}"},
        }
        identifier = f"{TAG}|{world.tag}-{world.subjects[name]}-{list(world.ids).index(name)}"
        answer = _quietly(lambda b=body, i=identifier: create.create(env, "Observation", b, f"identifier={i}"))
        if answer is not None and answer.status == 200:
            seen.add(name)
    writable = {name for name in ("OA", "OB", "OBA") if name in visible}
    return seen, writable if env.access.scopes & {"user/*.cruds"} else set()


PATHS: dict[str, Callable[[Env, World, set[str]], tuple[set[str], set[str]]]] = {
    "read": _direct("read"),
    "vread": _direct("vread"),
    "instance history": _direct("history"),
    "$validate": _direct("validate"),
    "type search": _type_search,
    "system search": _system_search,
    "type and system history": _histories,
    "_include": _includes,
    "_revinclude": _revincludes,
    "chain": _chain,
    "_has": _has,
    "compartment search": _compartment,
    "conditional create match": _conditional_create,
}


@pytest.mark.parametrize("path", sorted(PATHS))
@pytest.mark.parametrize("principal", sorted(PRINCIPALS))
def test_each_principal_sees_exactly_its_view_by_every_read_path(
    world: World, store: Any, settings: Any, principal: str, path: str
) -> None:
    patient = world.ids["PA"] if principal == "patient-a" else None
    env = _env(store, settings, principal, patient)
    visible = VISIBLE[principal]
    seen, expected = PATHS[path](env, world, visible)
    assert seen == expected, f"{principal} by {path}: saw {sorted(seen)}, expected {sorted(expected)}"
    assert seen <= visible  # never more than the view, whatever the path


def test_a_clinic_cannot_write_into_another_clinics_records(world: World, store: Any, settings: Any) -> None:
    intruder = _env(store, settings, "b-admin")
    from fhir_server.errors import MethodNotAllowed
    from fhir_server.interactions import delete, update

    observation = {
        "resourceType": "Observation",
        "status": "amended",
        "code": {"text": "tampered"},
        "subject": {"reference": f"Patient/{world.ids['PA']}"},
    }
    with pytest.raises(MethodNotAllowed):  # A's Observation is not there for B: as if it never existed
        update.update(intruder, "Observation", world.ids["OA"], {**observation, "id": world.ids["OA"]})
    gone = delete.delete(intruder, "Observation", world.ids["OA"])
    assert gone.body is not None and gone.body["issue"][0]["details"]["coding"][0]["code"] == "nothing-deleted"
    owner_view = read.read(_env(store, settings, "a-admin"), "Observation", world.ids["OA"])
    assert owner_view.version is not None and owner_view.version.version_id == 1  # untouched


def _sharing_consent(patient: str, clinic: str, status: str = "active", ends: str | None = None) -> dict[str, Any]:
    period: dict[str, str] = {"start": "2020-01-01"}
    if ends:
        period["end"] = ends
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": SHARING_CATEGORY_SYSTEM, "code": SHARING_CATEGORY_CODE}]}],
        "patient": {"reference": f"Patient/{patient}"},
        "organization": [{"reference": f"Organization/{clinic}"}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"period": period},
    }


def test_registration_and_profile_sharing_consent_open_the_portable_profile_only(
    world: World, store: Any, settings: Any
) -> None:
    """Clinic B sees A's patient's portable profile (Patient, Coverage) once she is registered at B
    and has signed B's profile-sharing Consent, never A's clinical records; revoking the Consent
    closes it at once; a clinic cannot sign for her, nor register patients at another clinic."""
    from fhir_server.interactions import update

    patient_env = Env(
        store,
        settings,
        AccessContext("patient-a", "patient", scopes=frozenset({"patient/*.cruds"}), patient=world.ids["PA"]),
        "http://127.0.0.1/fhir",
    )
    clinic_b = _env(store, settings, "b-admin")

    def b_sees() -> set[str]:
        seen = set()
        for name in ("PA", "OA", "AA", "CA"):
            try:
                read.read(clinic_b, world.types[name], world.ids[name])
                seen.add(name)
            except FhirError as error:
                assert error.status == 404
        return seen

    assert b_sees() == set()
    episode = {
        "resourceType": "EpisodeOfCare",
        "status": "active",
        "patient": {"reference": f"Patient/{world.ids['PA']}"},
        "managingOrganization": {"reference": f"Organization/{CLINIC_B}"},
        "period": {"start": "2020-01-01"},
    }
    registered = create.create(patient_env, "EpisodeOfCare", episode)
    assert registered.version is not None
    assert read.read(clinic_b, "EpisodeOfCare", registered.version.id).version is not None  # B sees it
    assert b_sees() == {"PA"}  # registered, no consent yet: her name only (the name-only view)
    with pytest.raises(Forbidden):  # B cannot sign on her behalf
        create.create(clinic_b, "Consent", _sharing_consent(world.ids["PA"], CLINIC_B))
    with pytest.raises(Forbidden):  # nor register a patient at another clinic
        create.create(
            clinic_b, "EpisodeOfCare", {**episode, "managingOrganization": {"reference": f"Organization/{CLINIC_A}"}}
        )
    consent = create.create(patient_env, "Consent", _sharing_consent(world.ids["PA"], CLINIC_B))
    assert consent.version is not None
    assert b_sees() == {"PA", "CA"}  # the portable profile, not A's clinical records
    found = search.search(clinic_b, "Coverage", [("_tag", f"{TAG}|{world.tag}")])
    assert world.names(_found(found)) == {"CA"}
    revoked = {**_sharing_consent(world.ids["PA"], CLINIC_B, status="inactive"), "id": consent.version.id}
    update.update(patient_env, "Consent", consent.version.id, revoked)
    assert b_sees() == {"PA"}  # at once: back to her name only
    expired = _sharing_consent(world.ids["PA"], CLINIC_B, ends="2021-01-01")
    create.create(patient_env, "Consent", expired)
    assert b_sees() == {"PA"}  # a consent whose period has ended opens nothing more
