"""The registration and profile-sharing Consent lifecycle (DESIGN.md section 3; issue 5), on SQLite
and PostgreSQL, at the interaction level with the access contexts the bearer-token check builds.

Clinic A records a Patient with an Observation, an Appointment and a Coverage. Clinic B sees none
of it until she registers at B; then her name only (a subset marked SUBSETTED); her portable profile
once she signs B's profile-sharing Consent, never A's clinical records; revoking or letting the
Consent end closes it again. The isolation matrix itself (every principal kind by every read path,
over HTTP with real tokens) is test_isolation_http.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest

from fhir_server.access import AccessContext
from fhir_server.errors import FhirError, Forbidden
from fhir_server.interactions import create, read, search
from fhir_server.interactions.context import Env
from tests.integration.isolation_world import sharing_consent

TAG = "urn:test:isolation"
CLINIC_A, CLINIC_B = f"clinic-a-{uuid.uuid4().hex[:6]}", f"clinic-b-{uuid.uuid4().hex[:6]}"
PRINCIPALS: dict[str, dict[str, Any]] = {
    "a-admin": {"kind": "clinic-member", "clinic_id": CLINIC_A, "role": "clinic-admin", "scopes": "user/*.cruds"},
    "b-admin": {"kind": "clinic-member", "clinic_id": CLINIC_B, "role": "clinic-admin", "scopes": "user/*.cruds"},
}
SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}


@dataclass
class World:
    tag: str
    ids: dict[str, str]  # name -> id
    types: dict[str, str]  # name -> resource type

    def names(self, found: set[str]) -> set[str]:
        by_id = {identifier: name for name, identifier in self.ids.items()}
        return {by_id[identifier] for identifier in found if identifier in by_id}


def _env(store: Any, settings: Any, principal: str) -> Env:
    spec = dict(PRINCIPALS[principal])
    scopes = frozenset(spec.pop("scopes").split())
    context = AccessContext(principal=principal, scopes=scopes, **spec)
    return Env(store, settings, context, "http://127.0.0.1/fhir")


@pytest.fixture(scope="module")
def world(store: Any, settings: Any) -> World:
    tag = uuid.uuid4().hex[:12]
    meta = {"tag": [{"system": TAG, "code": tag}]}
    recorder = _env(store, settings, "a-admin")
    ids: dict[str, str] = {}
    types: dict[str, str] = {}

    def record(name: str, body: dict[str, Any]) -> None:
        result = create.create(recorder, body["resourceType"], {**body, "meta": meta})
        assert result.version is not None
        ids[name], types[name] = result.version.id, body["resourceType"]

    record("PA", {"resourceType": "Patient", "name": [{"family": f"Alpha{tag}"}], "birthDate": "1980-01-01"})
    patient = {"reference": f"Patient/{ids['PA']}"}
    record("OA", {"resourceType": "Observation", "status": "final", "code": {"text": tag}, "subject": patient})
    record(
        "AA",
        {"resourceType": "Appointment", "status": "booked", "participant": [{"actor": patient, "status": "accepted"}]},
    )
    record(
        "CA",
        {"resourceType": "Coverage", "status": "active", "beneficiary": patient, "payor": [{"display": "Insurer"}]},
    )
    return World(tag, ids, types)


def _found(result: Any) -> set[str]:
    body = orjson.loads(orjson.dumps(result.body))
    return {e["resource"]["id"] for e in body.get("entry", []) if e.get("search", {}).get("mode", "match") == "match"}


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

    def b_sees() -> dict[str, str]:
        """What B reads of A's records: 'full', or 'name-only' for a Patient shown as a subset."""
        seen = {}
        for name in ("PA", "OA", "AA", "CA"):
            try:
                result = read.read(clinic_b, world.types[name], world.ids[name])
            except FhirError as error:
                assert error.status == 404
                continue
            assert result.version is not None and result.version.content is not None
            shown = orjson.loads(result.version.content)
            tags = shown.get("meta", {}).get("tag", [])
            subset = any(tag.get("system") == SUBSETTED["system"] and tag.get("code") == "SUBSETTED" for tag in tags)
            if subset:
                assert set(shown) <= {"resourceType", "id", "meta", "name"}, shown
            seen[name] = "name-only" if subset else "full"
        return seen

    assert b_sees() == {}
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
    assert b_sees() == {"PA": "name-only"}  # registered, no consent yet: her name only
    with pytest.raises(Forbidden):  # B cannot sign on her behalf
        create.create(clinic_b, "Consent", sharing_consent(world.ids["PA"], CLINIC_B))
    with pytest.raises(Forbidden):  # nor register a patient at another clinic
        create.create(
            clinic_b, "EpisodeOfCare", {**episode, "managingOrganization": {"reference": f"Organization/{CLINIC_A}"}}
        )
    consent = create.create(patient_env, "Consent", sharing_consent(world.ids["PA"], CLINIC_B))
    assert consent.version is not None
    assert b_sees() == {"PA": "full", "CA": "full"}  # the portable profile, not A's clinical records
    found = search.search(clinic_b, "Coverage", [("_tag", f"{TAG}|{world.tag}")])
    assert world.names(_found(found)) == {"CA"}
    revoked = {**sharing_consent(world.ids["PA"], CLINIC_B, status="inactive"), "id": consent.version.id}
    update.update(patient_env, "Consent", consent.version.id, revoked)
    assert b_sees() == {"PA": "name-only"}  # at once: back to her name only
    expired = sharing_consent(world.ids["PA"], CLINIC_B, ends="2021-01-01")
    create.create(patient_env, "Consent", expired)
    assert b_sees() == {"PA": "name-only"}  # a consent whose period has ended opens nothing more


def test_a_clinic_registers_only_patients_it_holds_or_who_registered_with_it(
    world: World, store: Any, settings: Any
) -> None:
    """Else any clinic could register any Patient id at itself and read the name: B registering A's
    patient is refused exactly like registering an id that never existed; A registers its own
    patient; once she registered herself at B, B may change that registration (end it)."""
    from fhir_server.interactions import update

    clinic_a, clinic_b = _env(store, settings, "a-admin"), _env(store, settings, "b-admin")
    patient = create.create(clinic_a, "Patient", {"resourceType": "Patient", "name": [{"family": "Held"}]})
    assert patient.version is not None

    def episode(patient_id: str, clinic: str) -> dict[str, Any]:
        return {
            "resourceType": "EpisodeOfCare",
            "status": "active",
            "patient": {"reference": f"Patient/{patient_id}"},
            "managingOrganization": {"reference": f"Organization/{clinic}"},
        }

    refusals = []
    for patient_id in (patient.version.id, str(uuid.uuid4())):  # hidden from B; never existed
        with pytest.raises(Forbidden) as refused:
            create.create(clinic_b, "EpisodeOfCare", episode(patient_id, CLINIC_B))
        refusals.append((refused.value.status, str(refused.value), refused.value.error_code))
    assert refusals[0] == refusals[1] and refusals[0][2] == "registration-forbidden"
    with pytest.raises(FhirError):
        read.read(clinic_b, "Patient", patient.version.id)  # and B learned nothing
    assert create.create(clinic_a, "EpisodeOfCare", episode(patient.version.id, CLINIC_A)).status == 201

    herself = Env(
        store,
        settings,
        AccessContext("p", "patient", scopes=frozenset({"patient/*.cruds"}), patient=patient.version.id),
        "http://127.0.0.1/fhir",
    )
    at_b = create.create(herself, "EpisodeOfCare", episode(patient.version.id, CLINIC_B))
    assert at_b.version is not None
    ended = {**episode(patient.version.id, CLINIC_B), "id": at_b.version.id, "status": "finished"}
    assert update.update(clinic_b, "EpisodeOfCare", at_b.version.id, ended).status == 200
    with pytest.raises(FhirError):  # her registration at B ended: B no longer sees even her name
        read.read(clinic_b, "Patient", patient.version.id)
