"""The isolation matrix over HTTP (DESIGN.md section 3; issue 5, point 4): every principal kind, with a
bearer token from a real OAuth flow against this server, by every read path, on SQLite and
PostgreSQL, through the ASGI app with the local-operator shortcut off.

The world (isolation_world.py) is two clinics, seven patients (registered at one clinic, both or
neither; with a profile-sharing Consent, none, or a revoked one), a proxy's dependent, and their
clinical and portable-profile records, all written over HTTP with the writers' own tokens. What
each principal sees is written by hand below (`VIEWS`: the resources seen in full, and the Patients
seen by name only), from DESIGN.md section 3 and the README's ownership and visibility tables; it
is the independent spec. Every read path is one entry of `PATHS`, a function over HTTP answering
what it saw and what the view says it should have seen; the matrix is principal x path, so a new
read path is covered by adding one entry there. Writes across clinics, the name-only view as a
search oracle, and references to hidden Patients have tests of their own below.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from starlette.testclient import TestClient

from tests.integration.isolation_world import (
    BIRTH_DATE,
    RECORDS_BY_NAME,
    TAG,
    TWIN_SOURCES,
    World,
    bearer,
    body_of,
    build_world,
    mode_of,
    write,
)
from tests.integration.oauth_helpers import served_with_tokens

REMOTE = ("203.0.113.21", 50000)  # not loopback: no local-operator shortcut
PAGE = "1000"

# --- the expected views, by hand ----------------------------------------------------------------------

CLINIC_A = frozenset(  # what clinic A recorded, or owns as the clinic a registration names
    {"PR_A", "P1", "P2", "P3", "P5", "D", "RP_D"}
    | {"REG_P1_A", "REG_P2_A", "REG_P3_A", "REG_D_A", "REG_P6_A"}
    | {"OBS_P1_A", "APT_P1_A", "ENC_P1_A", "ALG_P1_A", "COV_P1_A", "BT_P1_A"}
    | {"OBS_P2_A", "COV_P2_A", "ALG_P2_A", "COV_P3_A", "BT_P3_A", "OBS_P5_A"}
    | {"OBS_D_A", "ALG_D_A", "APT_D_A"}
)


@dataclass(frozen=True)
class View:
    full: frozenset[str]
    names: frozenset[str] = frozenset()  # Patients seen by name only (SUBSETTED)

    def expect(self, candidates: Any, names: bool = True) -> dict[str, str]:
        """The candidates this view sees, with how: 'full' or 'name-only' (unless `names` is False:
        a path that never shows a name-only Patient)."""
        found = {name: "full" for name in candidates if name in self.full}
        if names:
            found |= {name: "name-only" for name in candidates if name in self.names}
        return found

    def sees(self, name: str) -> bool:
        return name in self.full or name in self.names


VIEWS: dict[str, View] = {
    # A clinic's admin and backend service: all their clinic recorded; P6 (registered at A, no
    # consent for A) by name only; no consent was given to A, so ALG_P1_SELF stays hidden.
    "a-admin": View(CLINIC_A, frozenset({"P6"})),
    "a-backend": View(CLINIC_A, frozenset({"P6"})),
    # Practitioners: no insurance.
    "a-practitioner": View(CLINIC_A - {"COV_P1_A", "COV_P2_A", "COV_P3_A"}, frozenset({"P6"})),
    # Staff: demographics, scheduling (EpisodeOfCare, Appointment), insurance; no clinical records.
    "a-staff": View(
        frozenset({"PR_A", "P1", "P2", "P3", "P5", "D", "RP_D"})
        | {"REG_P1_A", "REG_P2_A", "REG_P3_A", "REG_D_A", "REG_P6_A"}
        | {"APT_P1_A", "APT_D_A", "COV_P1_A", "COV_P2_A", "COV_P3_A"},
        frozenset({"P6"}),
    ),
    # Clinic B: its own records (registrations and consents naming B included, whoever wrote
    # them); P1's portable profile through her consent, whoever recorded it; P2 (no consent) and
    # P3 (consent revoked) by name only; nothing of P5 (a consent without registration) or D.
    "b-admin": View(
        frozenset({"PR_B", "P4", "P6"})
        | {"REG_P1_B", "REG_P2_B", "REG_P3_B", "REG_P4_B", "REG_P6_B", "CON_P1_B", "CON_P3_B", "CON_P5_B"}
        | {"OBS_P1_B", "OBS_P2_B", "APT_P2_B", "ENC_P3_B", "OBS_P4_B", "ALG_P4_B", "APT_P4_B"}
        | {"OBS_P6_B", "COV_P6_B"}
        | {"P1", "ALG_P1_A", "COV_P1_A", "BT_P1_A", "ALG_P1_SELF"},
        frozenset({"P2", "P3"}),
    ),
    # The platform admin: the clinics, no patient data.
    "platform-admin": View(frozenset({"ORG_A", "ORG_B"})),
    # P1 herself: her compartment, from both clinics.
    "patient": View(
        frozenset({"P1", "REG_P1_A", "REG_P1_B", "CON_P1_B", "OBS_P1_A", "OBS_P1_B", "APT_P1_A", "ENC_P1_A"})
        | {"ALG_P1_A", "COV_P1_A", "BT_P1_A", "ALG_P1_SELF"}
    ),
    # The proxy, acting for the dependent D chosen in the patient picker.
    "proxy": View(frozenset({"D", "REG_D_A", "OBS_D_A", "ALG_D_A", "APT_D_A", "RP_D"})),
    # The platform admin impersonating P2 (read-only): P2's compartment, from both clinics.
    "impersonating-admin": View(
        frozenset({"P2", "REG_P2_A", "REG_P2_B", "OBS_P2_A", "COV_P2_A", "ALG_P2_A", "OBS_P2_B", "APT_P2_B"})
    ),
}
PRINCIPALS = tuple(VIEWS)
READ_ONLY = frozenset({"patient", "proxy", "impersonating-admin"})  # patient/*.rs tokens
TWIN_PATHS = ("conditional update", "conditional delete")


@pytest.fixture(scope="module")
def guarded(settings: Any, store: Any) -> Iterator[TestClient]:
    """The test database served as by default: every FHIR request needs a bearer token."""
    # Auditing off: it records, it does not decide what anyone sees (test_audit.py covers it).
    yield from served_with_tokens(settings, store, REMOTE, audit=False)


@pytest.fixture(scope="module")
def world(guarded: TestClient, store: Any) -> World:
    return build_world(guarded, store, PRINCIPALS, TWIN_PATHS)


@dataclass
class Caller:
    world: World
    principal: str

    @property
    def token(self) -> str:
        return self.world.tokens[self.principal]

    def get(self, url: str, params: dict[str, str] | list[tuple[str, str]] | None = None) -> Any:
        path = url if url.startswith("http") else (f"/fhir/{url}" if url else "/fhir")
        return self.world.http.get(path, params=params, headers=bearer(self.token))

    def bundle(self, url: str, params: dict[str, str] | list[tuple[str, str]] | None = None) -> list[dict]:
        """Every entry of a searchset or history, following `next` links."""
        answer = self.get(url, params)
        assert answer.status_code == 200, (self.principal, url, params, answer.text)
        entries: list[dict] = []
        while True:
            body = answer.json()
            entries += body.get("entry", [])
            following = [link["url"] for link in body.get("link", []) if link["relation"] == "next"]
            if not following:
                return entries
            answer = self.get(following[0])
            assert answer.status_code == 200, answer.text

    def found(self, url: str, params: Any, search_mode: str = "match") -> dict[str, str]:
        """{name: mode} of the entries of `search_mode` (match or include)."""
        return self.world.names(
            {
                entry["resource"]["id"]: mode_of(entry["resource"])
                for entry in self.bundle(url, params)
                if entry.get("search", {}).get("mode", "match") == search_mode
            }
        )

    def write(self, method: str, url: str, body: Any = None, **headers: str) -> Any:
        return write(self.world.http, self.token, method, url, body, **headers)


Seen = dict[str, str]
Probe = Callable[[Caller, World, View], tuple[Seen, Seen]]


def _tag(world: World) -> str:
    return f"{TAG}|{world.tag}"


def _url(world: World, name: str) -> str:
    return f"{world.types[name]}/{world.ids[name]}"


# --- the read paths -----------------------------------------------------------------------------------


def _direct(suffix: str, names: bool = True) -> Probe:
    """GET <type>/<id><suffix> for every resource of the world: 200 or 404."""

    def probe(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
        seen: Seen = {}
        for name in world.ids:
            answer = caller.get(_url(world, name) + suffix)
            assert answer.status_code in (200, 404), (name, answer.status_code, answer.text)
            if answer.status_code == 200:
                body = answer.json()
                if body["resourceType"] == "Bundle":  # instance history: every version alike
                    modes = {mode_of(entry["resource"]) for entry in body["entry"] if "resource" in entry}
                    assert len(modes) == 1, (name, modes)
                    seen[name] = modes.pop()
                elif body["resourceType"] == "OperationOutcome" and suffix.endswith("$validate"):
                    seen[name] = "validated"  # what the caller sees of it: a name-only Patient as such
                else:
                    assert body["id"] == world.ids[name]
                    seen[name] = mode_of(body)
        expected = view.expect(world.ids, names)
        if suffix.endswith("$validate"):
            expected = dict.fromkeys(expected, "validated")
        return seen, expected

    return probe


def _type_history(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    seen: Seen = {}
    for resource_type in sorted(set(world.types.values())):
        params = {"_since": world.since, "_count": PAGE}
        entries = caller.bundle(f"{resource_type}/_history", params)
        seen |= world.names({e["resource"]["id"]: mode_of(e["resource"]) for e in entries if "resource" in e})
    return seen, view.expect(world.ids)


def _system_history(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    entries = caller.bundle("_history", {"_since": world.since, "_count": PAGE})
    return world.names({e["resource"]["id"]: mode_of(e["resource"]) for e in entries if "resource" in e}), (
        view.expect(world.ids)
    )


def _type_search(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """Every type by the world's _tag (which never finds a name-only Patient), and the Patients by
    family name too (which does)."""
    seen: Seen = {}
    for resource_type in sorted(set(world.types.values())):
        seen |= caller.found(resource_type, {"_tag": _tag(world), "_count": PAGE})
    by_tag = view.expect(world.ids, names=False)
    by_name = caller.found("Patient", {"family": world.family(), "_count": PAGE})
    return {**seen, **{f"family {n}": m for n, m in by_name.items()}}, {
        **by_tag,
        **{f"family {n}": m for n, m in view.expect(world.patients()).items()},
    }


def _system_search(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    types = ",".join(sorted(set(world.types.values())))
    seen = caller.found("", {"_type": types, "_tag": _tag(world), "_count": PAGE})
    return seen, view.expect(world.ids, names=False)


INCLUDES = (
    ("Observation", "subject"),
    ("EpisodeOfCare", "patient"),
    ("Coverage", "beneficiary"),
    ("AllergyIntolerance", "patient"),
    ("Consent", "patient"),
    ("Appointment", "actor"),
)
REVINCLUDES = (
    ("Observation", "subject"),
    ("AllergyIntolerance", "patient"),
    ("Coverage", "beneficiary"),
    ("EpisodeOfCare", "patient"),
    ("Consent", "patient"),
)


def _include(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """Patients included from each type's records; each Patient's general practitioners, which a
    name-only Patient never leads to (even to a Practitioner the caller sees otherwise)."""
    seen: Seen = {}
    expected: Seen = {}
    for resource_type, param in INCLUDES:
        label = f"{resource_type}:{param}"
        params = {"_tag": _tag(world), "_include": label, "_count": PAGE}
        seen |= {f"{label} {n}": m for n, m in caller.found(resource_type, params, "include").items()}
        sources = [s for s in world.of_type(resource_type) if s in view.full]
        targets = {target for s in sources for target in world.refs[s].get(param, [])}
        expected |= {f"{label} {n}": m for n, m in view.expect(targets).items()}
    for patient in world.patients():
        label = f"{patient} Patient:general-practitioner"
        params = {"_id": world.ids[patient], "_include": "Patient:general-practitioner"}
        seen |= {f"{label} {n}": m for n, m in caller.found("Patient", params, "include").items()}
        seen |= {f"{label} match {n}": m for n, m in caller.found("Patient", params).items()}
        expected |= {f"{label} match {n}": m for n, m in view.expect([patient]).items()}
        if patient in view.full:
            gps = world.refs[patient].get("general-practitioner", [])
            expected |= {f"{label} {n}": m for n, m in view.expect(gps, names=False).items()}
    return seen, expected


def _revinclude(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """Each Patient (by _id, which finds a name-only Patient too) with the records pointing at it
    that the caller sees."""
    seen: Seen = {}
    expected: Seen = {}
    revincludes = [("_revinclude", f"{kind}:{param}") for kind, param in REVINCLUDES]
    for patient in world.patients():
        params = [("_id", world.ids[patient]), *revincludes]
        seen |= {f"{patient} match {n}": m for n, m in caller.found("Patient", params).items()}
        seen |= {f"{patient} rev {n}": m for n, m in caller.found("Patient", params, "include").items()}
        if view.sees(patient):
            expected |= {f"{patient} match {n}": m for n, m in view.expect([patient]).items()}
            pointing = {
                name
                for kind, param in REVINCLUDES
                for name in world.of_type(kind)
                if patient in world.refs[name].get(param, [])
            }
            expected |= {f"{patient} rev {n}": m for n, m in view.expect(pointing, names=False).items()}
    return seen, expected


def _chain(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """Chains through the Patient: by name, which reaches a name-only Patient; by birth date,
    which reaches only a Patient seen in full."""
    seen: Seen = {}
    expected: Seen = {}
    chains = (
        ("Observation", "subject:Patient.family", world.family(), True),
        ("Observation", "subject:Patient.birthdate", BIRTH_DATE, False),
        ("Coverage", "beneficiary:Patient.family", world.family(), True),
        ("Coverage", "beneficiary:Patient.gender", "female", False),
    )
    for resource_type, chain, value, reaches_names in chains:
        label = f"{resource_type}?{chain}"
        found = caller.found(resource_type, {"_tag": _tag(world), chain: value, "_count": PAGE})
        seen |= {f"{label} {n}": m for n, m in found.items()}
        reachable = view.full | (view.names if reaches_names else frozenset())
        matched = {n for n in world.of_type(resource_type) if world.about[n] in reachable}
        expected |= {f"{label} {n}": m for n, m in view.expect(matched, names=False).items()}
    return seen, expected


def _has(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    seen: Seen = {}
    expected: Seen = {}
    for kind, param in (("Observation", "subject"), ("Coverage", "beneficiary"), ("Appointment", "actor")):
        label = f"_has:{kind}:{param}"
        found = caller.found("Patient", {f"{label}:_tag": _tag(world), "_count": PAGE})
        seen |= {f"{label} {n}": m for n, m in found.items()}
        pointed = {p for n in world.of_type(kind) if n in view.full for p in world.refs[n].get(param, [])}
        expected |= {f"{label} {n}": m for n, m in view.expect(pointed).items()}
    return seen, expected


def _compartment(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """Patient/<id>/<type> for every Patient of the world and a clinical, a portable and an access
    fact type: what the caller sees of that compartment; a hidden Patient's compartment is empty
    or 404, never more than the caller sees."""
    seen: Seen = {}
    expected: Seen = {}
    for patient in world.patients():
        for resource_type in ("Observation", "Coverage", "Consent"):
            label = f"{patient}/{resource_type}"
            answer = caller.get(f"Patient/{world.ids[patient]}/{resource_type}", {"_count": PAGE})
            members = {n for n in world.of_type(resource_type) if world.about[n] == patient}
            if answer.status_code == 404:
                seen[f"{label} 404"] = "404"
                if not view.sees(patient) and not view.expect(members):
                    expected[f"{label} 404"] = "404"
                continue
            found = caller.found(f"Patient/{world.ids[patient]}/{resource_type}", {"_count": PAGE})
            seen |= {f"{label} {n}": m for n, m in found.items()}
            expected |= {f"{label} {n}": m for n, m in view.expect(members, names=False).items()}
    return seen, expected


def _everything(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """Patient/<id>/$everything: the Patient (as the caller sees it), the compartment records the
    caller sees, and what those reference that the caller sees; a name-only Patient leads nowhere;
    a hidden Patient answers 404."""
    seen: Seen = {}
    expected: Seen = {}
    for patient in world.patients():
        answer = caller.get(f"Patient/{world.ids[patient]}/$everything", {"_count": PAGE})
        if answer.status_code == 200:
            entries = caller.bundle(f"Patient/{world.ids[patient]}/$everything", {"_count": PAGE})
            found = world.names({e["resource"]["id"]: mode_of(e["resource"]) for e in entries})
            seen |= {f"{patient} {n}": m for n, m in found.items()}
        else:
            seen[f"{patient} status"] = str(answer.status_code)
        if not view.sees(patient):
            expected[f"{patient} status"] = "404"
            continue
        members = {n for n, about in world.about.items() if about == patient and n in view.full}
        sources = members | ({patient} if patient in view.full else set())
        referenced = {t for s in sources for targets in world.refs[s].values() for t in targets}
        expected |= {f"{patient} {n}": m for n, m in view.expect(members | referenced, names=False).items()}
        expected |= {f"{patient} {n}": m for n, m in view.expect([patient]).items()}
    return seen, expected


def _counts(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """_summary=count and _total=accurate count what the caller sees, no more."""
    seen: Seen = {}
    expected: Seen = {}
    queries = [(t, {"_tag": _tag(world)}, False) for t in sorted(set(world.types.values()))]
    queries.append(("Patient", {"family": world.family()}, True))
    for resource_type, params, names in queries:
        label = f"{resource_type}?{next(iter(params))}"
        counted = caller.get(resource_type, {**params, "_summary": "count"})
        assert counted.status_code == 200, counted.text
        seen[f"{label} _summary=count"] = str(counted.json()["total"])
        accurate = caller.get(resource_type, {**params, "_total": "accurate", "_count": "1"})
        assert accurate.status_code == 200, accurate.text
        seen[f"{label} _total=accurate"] = str(accurate.json()["total"])
        count = str(len(view.expect(world.of_type(resource_type), names)))
        expected |= {f"{label} _summary=count": count, f"{label} _total=accurate": count}
    return seen, expected


def _junk(world: World, name: str) -> dict[str, Any]:
    """A minimal resource of `name`'s type about the same Patient, tagged apart from the world, that
    is neither a registration nor a profile-sharing consent."""
    resource_type, patient = world.types[name], world.about[name]
    subject = {"reference": f"Patient/{world.ids[patient]}"} if patient else None
    body: dict[str, Any] = {"resourceType": resource_type, "meta": {"tag": [{"system": TAG, "code": "junk"}]}}
    if resource_type == "Observation":
        body.update(status="final", code={"text": "probe"})
    elif resource_type in ("AllergyIntolerance", "RelatedPerson"):
        body.update(patient=subject)
    elif resource_type == "Coverage":
        body.update(status="active", beneficiary=subject, payor=[{"display": "probe"}])
    elif resource_type == "Appointment":
        body.update(status="proposed", participant=[{"actor": subject, "status": "needs-action"}])
    elif resource_type == "Encounter":
        body.update(status="planned", **{"class": {"code": "AMB"}})
    elif resource_type == "EpisodeOfCare":
        body.update(status="planned", patient=subject)
    elif resource_type == "Consent":
        body.update(
            status="draft",
            scope={"text": "probe"},
            category=[{"text": "probe"}],
            policyRule={"text": "probe"},
        )
    return body


def _conditional_create(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """POST with If-None-Exist on each world resource's identifier: 200 with that resource only
    when the caller sees it in full; otherwise a new resource (201), or 403 without the scope."""
    seen: Seen = {}
    for name in world.ids:
        criteria = f"identifier={TAG}|{world.identifier(name)}"
        answer = caller.write("POST", world.types[name], _junk(world, name), **{"If-None-Exist": criteria})
        assert answer.status_code in (200, 201, 403), (name, answer.status_code, answer.text)
        if answer.status_code == 200:
            assert answer.json()["id"] == world.ids[name], (name, answer.text)
            seen[name] = "full"
        if answer.status_code == 403 and caller.principal in READ_ONLY:
            seen.setdefault("refused", "403")
    if caller.principal in READ_ONLY:
        return seen, {"refused": "403"}
    return seen, view.expect(world.ids, names=False)


def _twin_reader(world: World, name: str) -> str:
    return world.tokens[RECORDS_BY_NAME[name][1]]


def _twin_state(world: World, name: str, twin: str) -> str:
    """The twin as its writer sees it: its version, or 'deleted'."""
    answer = world.http.get(f"/fhir/{world.types[name]}/{twin}", headers=bearer(_twin_reader(world, name)))
    if answer.status_code in (404, 410):  # gone (a deleted portable record leaves no compartment)
        return "deleted"
    assert answer.status_code == 200, answer.text
    return str(answer.json()["meta"]["versionId"])


def _conditional_update(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """PUT <type>?identifier=<twin's> with the twin's own content: updates the twin only when the
    caller sees it; otherwise creates another resource or is refused, and the twin is untouched."""
    seen: Seen = {}
    for name in TWIN_SOURCES:
        twin = world.twins[("conditional update", caller.principal, name)]
        identifier = f"{world.tag}-twin-conditional-update-{caller.principal}-{name}"
        _, _, resource_type, patient, _ = RECORDS_BY_NAME[name]
        body = body_of(world, name, resource_type, patient, identifier, f"{world.tag}-twin")
        answer = caller.write("PUT", f"{resource_type}?identifier={TAG}|{identifier}", body)
        assert answer.status_code < 500, answer.text
        if answer.status_code == 200:
            assert answer.json()["id"] == twin, (name, answer.text)
        state = _twin_state(world, name, twin)
        if state != "1":
            seen[name] = "full"
        if answer.status_code == 403 and caller.principal in READ_ONLY:
            seen.setdefault("refused", "403")
    if caller.principal in READ_ONLY:
        return seen, {"refused": "403"}
    return seen, view.expect(TWIN_SOURCES, names=False)


def _conditional_delete(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """DELETE <type>?identifier=<twin's>: deletes the twin only when the caller sees it."""
    seen: Seen = {}
    for name in TWIN_SOURCES:
        twin = world.twins[("conditional delete", caller.principal, name)]
        identifier = f"{world.tag}-twin-conditional-delete-{caller.principal}-{name}"
        answer = caller.write("DELETE", f"{world.types[name]}?identifier={TAG}|{identifier}")
        assert answer.status_code in (200, 204, 403, 404), (name, answer.status_code, answer.text)
        state = _twin_state(world, name, twin)
        assert state in ("1", "deleted"), state
        if state == "deleted":
            seen[name] = "full"
        if answer.status_code == 403 and caller.principal in READ_ONLY:
            seen.setdefault("refused", "403")
    if caller.principal in READ_ONLY:
        return seen, {"refused": "403"}
    return seen, view.expect(TWIN_SOURCES, names=False)


def _batch(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """One batch of GET entries: a read and a vread of every world resource, each answered alone."""
    requests = [(f"{verb} {name}", _url(world, name) + suffix) for name in world.ids for verb, suffix in VERBS]
    entries = [{"request": {"method": "GET", "url": url}} for _, url in requests]
    answer = caller.write("POST", "", {"resourceType": "Bundle", "type": "batch", "entry": entries})
    assert answer.status_code == 200, answer.text
    seen: Seen = {}
    for (label, _), entry in zip(requests, answer.json()["entry"], strict=True):
        status = entry["response"]["status"]
        assert status.startswith(("200", "404")), (label, entry)
        if status.startswith("200"):
            seen[label] = mode_of(entry["resource"])
    expected = {f"{verb} {n}": m for verb, _ in VERBS for n, m in view.expect(world.ids).items()}
    return seen, expected


VERBS = (("read", ""), ("vread", "/_history/1"))


def _transaction(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """A transaction of a read and a vread per world resource: the whole transaction answers 404
    for a hidden one (all or nothing), exactly as for one that never existed."""
    seen: Seen = {}
    for name in world.ids:
        entries = [{"request": {"method": "GET", "url": _url(world, name) + suffix}} for _, suffix in VERBS]
        answer = caller.write("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": entries})
        assert answer.status_code in (200, 404), answer.text
        if answer.status_code == 200:
            modes = {mode_of(entry["resource"]) for entry in answer.json()["entry"]}
            seen[name] = modes.pop() if len(modes) == 1 else f"mixed {modes}"
    return seen, view.expect(world.ids)


IGNORED_HEADERS = frozenset({"date", "x-request-id", "x-correlation-id", "server-timing"})


def _comparable(answer: Any, identifier: str) -> tuple[int, Any, dict[str, str]]:
    text = answer.text.replace(identifier, "<id>")
    headers = {k: v.replace(identifier, "<id>") for k, v in answer.headers.items() if k not in IGNORED_HEADERS}
    return answer.status_code, orjson.loads(text) if text else None, headers


def _errors(caller: Caller, world: World, view: View) -> tuple[Seen, Seen]:
    """A hidden resource answers read, vread, instance history and $validate exactly like one that
    never existed (apart from its id; headers apart from dates)."""
    seen: Seen = {}
    never_existed: dict[tuple[str, str], Any] = {}
    probed_types: set[str] = set()
    for name in world.ids:
        if view.sees(name):
            continue
        # A read of every hidden resource; the other interactions on one hidden resource per type.
        every = world.types[name] not in probed_types
        probed_types.add(world.types[name])
        for suffix in ("", "/_history/1", "/_history", "/$validate") if every else ("",):
            hidden = _comparable(caller.get(_url(world, name) + suffix), world.ids[name])
            key = (world.types[name], suffix)
            if key not in never_existed:
                missing = str(uuid.uuid4())
                never_existed[key] = _comparable(caller.get(f"{world.types[name]}/{missing}{suffix}"), missing)
            never = never_existed[key]
            if hidden != never:
                seen[f"{name}{suffix}"] = f"{hidden} != {never}"
    return seen, {}


PATHS: dict[str, Probe] = {
    "read": _direct(""),
    "vread": _direct("/_history/1"),
    "instance history": _direct("/_history"),
    "type history": _type_history,
    "system history": _system_history,
    "type search": _type_search,
    "system search": _system_search,
    "_include": _include,
    "_revinclude": _revinclude,
    "chain": _chain,
    "_has": _has,
    "compartment search": _compartment,
    "$validate": _direct("/$validate"),
    "$everything": _everything,
    "counts": _counts,
    "conditional create": _conditional_create,
    "conditional update": _conditional_update,
    "conditional delete": _conditional_delete,
    "batch": _batch,
    "transaction": _transaction,
    "error messages": _errors,
}


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("principal", PRINCIPALS)
def test_each_principal_sees_exactly_its_view_by_every_path(world: World, principal: str, path: str) -> None:
    seen, expected = PATHS[path](Caller(world, principal), world, VIEWS[principal])
    missing = {k: v for k, v in expected.items() if seen.get(k) != v}
    extra = {k: v for k, v in seen.items() if expected.get(k) != v}
    assert seen == expected, f"{principal} by {path}: missing or different {missing}; extra {extra}"


# --- writes across clinics, the name-only view as an oracle, references to hidden Patients -------------


def _as_if_missing(caller: Caller, method: str, resource_type: str, identifier: str, body: Any = None) -> None:
    """`method` on a hidden resource answers exactly like on an id that never existed."""
    missing = str(uuid.uuid4())

    def attempt(target: str) -> tuple[int, Any, dict[str, str]]:
        content = {**body, "id": target} if isinstance(body, dict) else body
        headers = {"Content-Type": "application/json-patch+json"} if method == "PATCH" else {}
        return _comparable(caller.write(method, f"{resource_type}/{target}", content, **headers), target)

    hidden, never = attempt(identifier), attempt(missing)
    assert hidden == never, (method, resource_type, hidden, never)
    assert hidden[0] in (204, 404, 405), hidden  # nothing written


def _unchanged(world: World, name: str) -> None:
    owner = Caller(world, "a-admin" if RECORDS_BY_NAME[name][1] == "A" else "b-admin")
    current = owner.get(_url(world, name))
    assert current.status_code == 200, (name, current.text)
    assert current.json()["meta"]["versionId"] == world.bodies[name]["meta"]["versionId"], name
    assert {k: v for k, v in current.json().items() if k != "meta"} == {
        k: v for k, v in world.bodies[name].items() if k != "meta"
    }, name


def test_a_clinic_cannot_write_another_clinics_records_nor_unconsented_profiles(world: World) -> None:
    """Clinic B on A's Observation about P1, on P2's Patient (name-only for B) and on A's
    AllergyIntolerance about P2 (no consent): update, patch and delete answer as if they did not
    exist, directly, as transaction entries and by conditional update; nothing changes."""
    intruder = Caller(world, "b-admin")
    patch = [{"op": "replace", "path": "/status", "value": "entered-in-error"}]
    for name in ("OBS_P1_A", "P2", "ALG_P2_A"):
        resource_type, identifier = world.types[name], world.ids[name]
        tampered = {**world.bodies[name], "meta": {}, "id": identifier}
        _as_if_missing(intruder, "PUT", resource_type, identifier, tampered)
        _as_if_missing(intruder, "PATCH", resource_type, identifier, patch)
        _as_if_missing(intruder, "DELETE", resource_type, identifier)
        for request, resource in (
            ({"method": "PUT", "url": f"{resource_type}/{identifier}"}, tampered),
            ({"method": "DELETE", "url": f"{resource_type}/{identifier}"}, None),
        ):
            entry = {"request": request, **({"resource": resource} if resource else {})}
            answer = intruder.write("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
            assert answer.status_code in (200, 404, 405), answer.text
        conditional = {k: v for k, v in tampered.items() if k != "id"}
        criteria = f"{resource_type}?identifier={TAG}|{world.identifier(name)}"
        answer = intruder.write("PUT", criteria, conditional)
        assert answer.status_code in (201, 403, 404, 412), answer.text  # a new resource of B's, or refused
        if answer.status_code == 201:
            assert answer.json()["id"] != identifier
        entry = {"request": {"method": "PUT", "url": criteria}, "resource": conditional}
        answer = intruder.write("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
        assert answer.status_code in (200, 403, 404, 412), answer.text
        if answer.status_code == 200:
            assert world.ids[name] not in answer.json()["entry"][0]["response"]["location"]
        _unchanged(world, name)


NAME_ONLY = (("b-admin", "P2"), ("b-admin", "P3"), ("a-admin", "P6"), ("a-staff", "P6"))


@pytest.mark.parametrize(("principal", "patient"), NAME_ONLY)
def test_a_name_only_patient_is_found_by_name_and_by_nothing_else(world: World, principal: str, patient: str) -> None:
    """Searches whose criteria or sort reach beyond the name never reveal a name-only Patient
    (DESIGN.md section 3: fields hidden before consent are not searchable); P1, seen in full by
    the same searches' control (B) or P1 for A, is found by each of them."""
    caller = Caller(world, principal)
    control = "P1"
    family = world.family(patient)

    def found(name: str, params: dict[str, str], resource_type: str = "Patient") -> set[str]:
        return set(caller.found(resource_type, params))

    assert caller.found("Patient", {"family": family}) == {patient: "name-only"}
    assert caller.found("Patient", {"name": family, "given": "Pat"}) == {patient: "name-only"}
    assert caller.found("Patient", {"_id": world.ids[patient]}) == {patient: "name-only"}
    oracles: list[dict[str, str]] = [
        {"birthdate": BIRTH_DATE},
        {"gender": "female"},
        {"telecom": f"555-{world.tag}"},
        {"phone": f"555-{world.tag}"},
        {"identifier": f"{TAG}|{world.identifier('{}')}"},
        {"_sort": "birthdate"},
        {"_tag": _tag(world)},
    ]
    for extra in oracles:
        for name in (patient, control):
            params = {"family": world.family(name), **{k: v.replace("{}", name) for k, v in extra.items()}}
            expected = {control} if name == control else set()
            assert found(name, params) == expected, (principal, name, params)
    for text_param in ("_text", "_content"):
        assert patient not in found(patient, {text_param: family}), text_param
    chains = [
        ("Observation", "subject:Patient.birthdate", BIRTH_DATE),
        ("Coverage", "beneficiary:Patient.gender", "female"),
    ]
    about = {n for n, p in world.about.items() if p == patient}
    for resource_type, chain, value in chains:
        assert not found(patient, {"_tag": _tag(world), chain: value}, resource_type) & about, chain


def test_writes_to_a_name_only_patient_answer_as_if_it_did_not_exist(world: World) -> None:
    for principal, patient in NAME_ONLY:
        caller = Caller(world, principal)
        identifier = world.ids[patient]
        _as_if_missing(caller, "PUT", "Patient", identifier, {"resourceType": "Patient", "active": False})
        _as_if_missing(caller, "PATCH", "Patient", identifier, [{"op": "add", "path": "/active", "value": False}])
        _as_if_missing(caller, "DELETE", "Patient", identifier)
        _unchanged(world, patient)


def test_referencing_a_hidden_patient_answers_like_referencing_one_that_never_existed(world: World) -> None:
    """No existence oracle through writes: clinic B records an Observation about P5 (hidden from B)
    and about an id that never existed, and both answer alike."""
    caller = Caller(world, "b-admin")
    answers = []
    for target in (world.ids["P5"], world.ids["D"], str(uuid.uuid4())):
        body = {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "probe"},
            "subject": {"reference": f"Patient/{target}"},
            "meta": {"tag": [{"system": TAG, "code": "junk"}]},
        }
        answer = caller.write("POST", "Observation", body)
        status, content, headers = _comparable(answer, target)
        answers.append((status, {k: v for k, v in (content or {}).items() if k not in ("id", "meta")}))
    assert answers[0] == answers[1] == answers[2], answers
