"""The world of the HTTP isolation matrix (test_isolation_http.py; DESIGN.md section 3, issue 5):
two clinics, their members and backend service, patients, a proxy, a platform admin and an
impersonating admin, every one with a bearer token from a real OAuth flow against this server,
and records written over HTTP with the writers' own tokens so that the server assigns ownership
as it does in production.

The patients (each registration is an EpisodeOfCare with managingOrganization the clinic, status
active, period start in the past; each profile-sharing Consent is signed with the patient's own
token):

| patient | recorded by | registered at | profile-sharing Consent |
|---|---|---|---|
| P1 | A | A (by A), B (by herself) | for B, active |
| P2 | A | A (by A), B (by himself) | none |
| P3 | A | A (by A), B (by herself) | for B, revoked (active, then inactive) |
| P4 | B | B (by B) | none |
| P5 | A | nowhere | for B, active: without registration it opens nothing |
| P6 | B | A (by himself), B (by B) | none: A's members see P6 by name only |
| D  | A | A (by A) | none |

P5 is the proxy account's own record (a second choice in its patient picker), D its dependent
(RelatedPerson RP_D).

Every resource has a name (`World.ids`), the writer that recorded it (`RECORDS`), the patient it
is about (`World.about`: its Patient compartment) and the references the include paths follow
(`World.refs`). Everything carries a `_tag` unique to the module run, and an identifier
`TAG|<tag>-<name>`.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
from argon2 import PasswordHasher
from starlette.testclient import TestClient

from fhir_server.auth import passwords, totp
from fhir_server.authserver import admin
from fhir_server.interactions.ownership import SHARING_CATEGORY_CODE, SHARING_CATEGORY_SYSTEM
from tests.integration.oauth_helpers import (
    PASSWORD,
    Browser,
    accounts,
    authorize_params,
    backend_token,
    bearer,
    exchange,
    impersonation_form,
    pkce,
    unique_email,
)

TAG = "urn:test:isolation-http"
FHIR = "application/fhir+json"
SUBSETTED = ("http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "SUBSETTED")
CLIENT_SCOPES = "openid fhirUser launch/patient patient/*.rs patient/*.cruds user/*.rs user/*.cruds"
BIRTH_DATE = "1970-05-05"
LOINC_BLOOD_TYPE = "882-1"

# The writers of the world: the clinics' admins, the patients (with write tokens), the platform.
# (name, writer, type, patient it is about, extra): `extra` holds references by search parameter.
RECORDS: list[tuple[str, str, str, str | None, dict[str, list[str]]]] = [
    ("ORG_A", "platform", "Organization", None, {}),
    ("ORG_B", "platform", "Organization", None, {}),
    ("PR_A", "A", "Practitioner", None, {}),
    ("PR_B", "B", "Practitioner", None, {}),
    ("P1", "A", "Patient", "P1", {"general-practitioner": ["PR_A", "PR_B"]}),
    ("P2", "A", "Patient", "P2", {"general-practitioner": ["PR_A", "PR_B"]}),
    ("P3", "A", "Patient", "P3", {"general-practitioner": ["PR_A"]}),
    ("P5", "A", "Patient", "P5", {}),
    ("D", "A", "Patient", "D", {"general-practitioner": ["PR_A"]}),
    ("P4", "B", "Patient", "P4", {"general-practitioner": ["PR_B"]}),
    ("P6", "B", "Patient", "P6", {"general-practitioner": ["PR_A", "PR_B"]}),
    ("RP_D", "A", "RelatedPerson", "D", {}),
    ("REG_P1_A", "A", "EpisodeOfCare", "P1", {}),
    ("REG_P2_A", "A", "EpisodeOfCare", "P2", {}),
    ("REG_P3_A", "A", "EpisodeOfCare", "P3", {}),
    ("REG_D_A", "A", "EpisodeOfCare", "D", {}),
    ("REG_P6_A", "P6", "EpisodeOfCare", "P6", {}),
    ("REG_P1_B", "P1", "EpisodeOfCare", "P1", {}),
    ("REG_P2_B", "P2", "EpisodeOfCare", "P2", {}),
    ("REG_P3_B", "P3", "EpisodeOfCare", "P3", {}),
    ("REG_P4_B", "B", "EpisodeOfCare", "P4", {}),
    ("REG_P6_B", "B", "EpisodeOfCare", "P6", {}),
    ("CON_P1_B", "P1", "Consent", "P1", {}),
    ("CON_P3_B", "P3", "Consent", "P3", {}),  # revoked after the world is built
    ("CON_P5_B", "P5", "Consent", "P5", {}),
    ("OBS_P1_A", "A", "Observation", "P1", {}),
    ("OBS_P1_B", "B", "Observation", "P1", {}),  # B's record about P1: A never sees it
    ("APT_P1_A", "A", "Appointment", "P1", {}),
    ("ENC_P1_A", "A", "Encounter", "P1", {}),
    ("ALG_P1_A", "A", "AllergyIntolerance", "P1", {}),
    ("COV_P1_A", "A", "Coverage", "P1", {}),  # B sees it through P1's consent
    ("BT_P1_A", "A", "Observation", "P1", {}),  # blood type: portable
    ("ALG_P1_SELF", "P1", "AllergyIntolerance", "P1", {}),  # by herself: A (no consent) never sees it
    ("OBS_P2_A", "A", "Observation", "P2", {}),
    ("COV_P2_A", "A", "Coverage", "P2", {}),  # B does not see it: no consent
    ("ALG_P2_A", "A", "AllergyIntolerance", "P2", {}),
    ("OBS_P2_B", "B", "Observation", "P2", {}),
    ("APT_P2_B", "B", "Appointment", "P2", {}),
    ("COV_P3_A", "A", "Coverage", "P3", {}),
    ("BT_P3_A", "A", "Observation", "P3", {}),
    ("ENC_P3_B", "B", "Encounter", "P3", {}),
    ("OBS_P4_B", "B", "Observation", "P4", {}),
    ("ALG_P4_B", "B", "AllergyIntolerance", "P4", {}),
    ("APT_P4_B", "B", "Appointment", "P4", {}),
    ("OBS_P5_A", "A", "Observation", "P5", {}),
    ("ALG_P5_SELF", "P5", "AllergyIntolerance", "P5", {}),
    ("OBS_D_A", "A", "Observation", "D", {}),
    ("ALG_D_A", "A", "AllergyIntolerance", "D", {}),
    ("APT_D_A", "A", "Appointment", "D", {}),
    ("OBS_P6_B", "B", "Observation", "P6", {}),
    ("COV_P6_B", "B", "Coverage", "P6", {}),
]
# Records the conditional update and delete paths probe, each through a twin of its own (same
# writer, type and patient, another identifier) so that a matching probe changes no world record.
TWIN_SOURCES = (
    "OBS_P1_A",
    "OBS_P1_B",
    "APT_P1_A",
    "ENC_P1_A",
    "COV_P1_A",
    "BT_P1_A",
    "ALG_P1_SELF",
    "COV_P2_A",
    "ALG_P2_A",
    "OBS_P2_B",
    "BT_P3_A",
    "ALG_P4_B",
    "OBS_D_A",
    "COV_P6_B",
)
REFERENCE_PARAMS = {  # the search parameter of the patient reference, by type (R4)
    "Observation": ("subject", "subject"),
    "AllergyIntolerance": ("patient", "patient"),
    "Coverage": ("beneficiary", "beneficiary"),
    "EpisodeOfCare": ("patient", "patient"),
    "Consent": ("patient", "patient"),
    "Encounter": ("subject", "subject"),
    "RelatedPerson": ("patient", "patient"),
}


@dataclass
class Clinics:
    a: str
    b: str


@dataclass
class World:
    http: TestClient
    tag: str
    since: str
    clinics: Clinics
    tokens: dict[str, str]  # principal or writer -> access token
    ids: dict[str, str] = field(default_factory=dict)  # name -> id
    types: dict[str, str] = field(default_factory=dict)
    about: dict[str, str | None] = field(default_factory=dict)  # name -> the Patient's name
    refs: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # name -> search param -> names
    bodies: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> as written
    writers: dict[str, str] = field(default_factory=dict)
    twins: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (path, principal, name) -> id
    patient_accounts: dict[str, str] = field(default_factory=dict)  # patient name -> account id

    def names(self, found: dict[str, str]) -> dict[str, str]:
        """{id: mode} of an answer as {name: mode}, ignoring resources of other tests."""
        by_id = {identifier: name for name, identifier in self.ids.items()}
        return {by_id[identifier]: mode for identifier, mode in found.items() if identifier in by_id}

    def identifier(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def family(self, name: str = "") -> str:
        return f"Fam{self.tag}{name}"

    def of_type(self, resource_type: str) -> set[str]:
        return {name for name, kind in self.types.items() if kind == resource_type}

    def patients(self) -> list[str]:
        return sorted(self.of_type("Patient"))


def mode_of(resource: dict[str, Any]) -> str:
    """'name-only' for a Patient marked SUBSETTED (whose content must then be the name-only view),
    'full' otherwise."""
    tags = {(tag.get("system"), tag.get("code")) for tag in resource.get("meta", {}).get("tag", [])}
    if SUBSETTED not in tags:
        return "full"
    assert resource["resourceType"] == "Patient", resource
    assert set(resource) <= {"resourceType", "id", "meta", "name"}, resource
    assert set(resource["meta"]) <= {"versionId", "lastUpdated", "tag"}, resource
    assert [(t.get("system"), t.get("code")) for t in resource["meta"]["tag"]] == [SUBSETTED], resource
    return "name-only"


# --- tokens, each from a real flow ------------------------------------------------------------------


def user_token(
    http: TestClient,
    client_id: str,
    email: str,
    scope: str,
    *,
    clinic: str | None = None,
    patient: str | None = None,
    offered: set[str] | None = None,
    secret: str | None = None,
) -> dict[str, Any]:
    """The authorization-code flow through the HTML pages: login, second factor, clinic choice,
    patient picker, approval; then the code exchanged with PKCE."""
    verifier, challenge = pkce()
    browser = Browser(http)
    browser.open("/auth/authorize", authorize_params(client_id, scope, challenge))
    assert browser.step() == "login", browser.response.text
    browser.submit({"email": email, "password": PASSWORD})
    if secret is not None:
        assert browser.step() == "mfa", browser.response.text
        browser.submit({"code": totp.code_at(secret, totp.current_step())})
    if clinic is not None:
        assert browser.step() == "clinic", browser.response.text
        browser.submit({"clinic": clinic})
    if patient is not None:
        assert browser.step() == "patient", browser.response.text
        if offered is not None:
            assert set(browser.page.xpath("//input[@name='patient']/@value")) == offered
        browser.submit({"patient": patient})
    assert browser.step() == "approve", browser.response.text
    browser.submit(button=("decision", "approve"))
    answer = exchange(http, client_id, browser.redirect_params()["code"], verifier)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def impersonate(http: TestClient, client_id: str, actor: str, patient: str) -> dict[str, Any]:
    """RFC 8693 token exchange: the platform admin's token for a read-only token of one patient."""
    answer = http.post("/auth/token", data=impersonation_form(client_id, actor, patient))
    assert answer.status_code == 200, answer.text
    assert answer.json()["scope"] == "patient/*.rs"
    return dict(answer.json())


def _member(store: Any, clinic: str, role: str) -> str:
    email = unique_email(role)
    admin.create_account(
        accounts(store), email=email, password=PASSWORD, kind="clinic-member", clinic=clinic, role=role
    )
    return email


# --- writing over HTTP --------------------------------------------------------------------------------


def write(http: TestClient, token: str, method: str, url: str, body: Any = None, **headers: str) -> Any:
    path = f"/fhir/{url}" if url else "/fhir"
    content = orjson.dumps(body) if body is not None else None
    return http.request(method, path, content=content, headers={**bearer(token), **headers})


def located(location: str) -> tuple[str, str]:
    """(type, id) of a Location (absolute or relative, with or without _history)."""
    found = re.search(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$", location)
    assert found, location
    return found[1], found[2]


def _ref(world: World, name: str) -> dict[str, str]:
    return {"reference": f"{world.types[name]}/{world.ids[name]}"}


def body_of(world: World, name: str, resource_type: str, patient: str | None, identifier: str, tag: str) -> dict:
    """The resource a writer records for `name` (about `patient`, a name of the world)."""
    meta = {"tag": [{"system": TAG, "code": tag}]}
    body: dict[str, Any] = {
        "resourceType": resource_type,
        "meta": meta,
        "identifier": [{"system": TAG, "value": identifier}],
    }
    subject = _ref(world, patient) if patient and patient in world.ids else None
    clinics = {"A": world.clinics.a, "B": world.clinics.b}
    if resource_type == "Organization":
        body["name"] = f"Clinic {name[-1]}"
    elif resource_type == "Practitioner":
        body["name"] = [{"family": f"Doc{world.tag}{name}"}]
    elif resource_type == "Patient":
        body.update(
            name=[{"family": world.family(name), "given": ["Pat"]}],
            birthDate=BIRTH_DATE,
            gender="female",
            telecom=[{"system": "phone", "value": f"555-{world.tag}"}],
        )
        gps = [ref for ref in RECORDS_BY_NAME[name][4].get("general-practitioner", [])]
        if gps:
            body["generalPractitioner"] = [_ref(world, gp) for gp in gps]
    elif resource_type == "RelatedPerson":
        body.update(patient=subject, relationship=[{"text": "parent"}], name=[{"family": "Proxy"}])
    elif resource_type == "EpisodeOfCare":
        clinic = clinics[name[-1]]
        body.update(
            status="active",
            patient=subject,
            managingOrganization={"reference": f"Organization/{clinic}"},
            period={"start": "2020-01-01"},
        )
    elif resource_type == "Consent":
        body.update(sharing_consent(world.ids[patient or ""], clinics[name[-1]]))
        body["meta"], body["identifier"] = meta, [{"system": TAG, "value": identifier}]
    elif resource_type == "Observation":
        if name.startswith("BT_"):
            body["code"] = {"coding": [{"system": "http://loinc.org", "code": LOINC_BLOOD_TYPE}]}
            body["valueCodeableConcept"] = {"text": "A+"}
        else:
            body["code"] = {"text": f"obs-{world.tag}"}
        body.update(status="final", subject=subject)
    elif resource_type == "AllergyIntolerance":
        active = {"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}
        body.update(patient=subject, code={"text": "peanut"}, clinicalStatus={"coding": [active]})
    elif resource_type == "Coverage":
        body.update(status="active", beneficiary=subject, payor=[{"display": "Insurer"}])
    elif resource_type == "Appointment":
        body.update(status="booked", participant=[{"actor": subject, "status": "accepted"}])
    elif resource_type == "Encounter":
        body.update(
            status="finished",
            subject=subject,
            **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}},
        )
    return body


def sharing_consent(patient_id: str, clinic: str, status: str = "active", ends: str | None = None) -> dict[str, Any]:
    """A profile-sharing Consent (ownership.py) of the patient for the clinic, from 2020 (to `ends`)."""
    period = {"start": "2020-01-01", **({"end": ends} if ends else {})}
    return {
        "resourceType": "Consent",
        "status": status,
        "scope": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]
        },
        "category": [{"coding": [{"system": SHARING_CATEGORY_SYSTEM, "code": SHARING_CATEGORY_CODE}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "organization": [{"reference": f"Organization/{clinic}"}],
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"period": period},
    }


RECORDS_BY_NAME = {record[0]: record for record in RECORDS}


def _record(world: World, name: str) -> None:
    _, writer, resource_type, patient, refs = RECORDS_BY_NAME[name]
    body = body_of(world, name, resource_type, patient, world.identifier(name), world.tag)
    answer = write(world.http, world.tokens[writer], "POST", resource_type, body)
    assert answer.status_code == 201, (name, answer.text)
    world.ids[name], world.types[name], world.about[name] = answer.json()["id"], resource_type, patient
    world.bodies[name], world.writers[name] = answer.json(), writer
    element = REFERENCE_PARAMS.get(resource_type)
    world.refs[name] = {**refs, **({element[0]: [patient]} if element and patient else {})}
    if resource_type == "Appointment" and patient:
        world.refs[name]["actor"] = [patient]


@contextmanager
def quick_passwords() -> Iterator[None]:
    """Argon2id with the smallest parameters while the world's accounts sign in: the flows stay
    real (hashes carry their own parameters), a login costs milliseconds instead of a second."""
    default = passwords._HASHER
    passwords._HASHER = PasswordHasher(time_cost=1, memory_cost=64, parallelism=1)
    try:
        yield
    finally:
        passwords._HASHER = default


def build_world(http: TestClient, store: Any, principals: tuple[str, ...], twin_paths: tuple[str, ...]) -> World:
    with quick_passwords():
        return _build_world(http, store, principals, twin_paths)


def _build_world(http: TestClient, store: Any, principals: tuple[str, ...], twin_paths: tuple[str, ...]) -> World:
    tag = uuid.uuid4().hex[:12]
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    clinics = Clinics(f"clinic-a-{tag}", f"clinic-b-{tag}")
    client_id = admin.create_client(
        accounts(store),
        name="Isolation app",
        kind="public",
        scopes=CLIENT_SCOPES.split(),
        redirect_uris=["https://app.example.org/callback"],
    )[0].client_id
    tokens: dict[str, str] = {}
    world = World(http, tag, since, clinics, tokens)

    # Clinic A's admin is also staff at B: the clinic is chosen at login.
    a_admin = _member(store, clinics.a, "clinic-admin")
    accounts(store).add_membership(accounts(store).by_email(a_admin).id, clinics.b, "staff")
    user = "user/*.cruds"
    tokens["a-admin"] = tokens["A"] = user_token(http, client_id, a_admin, user, clinic=f"{clinics.a}|clinic-admin")[
        "access_token"
    ]
    tokens["a-practitioner"] = user_token(http, client_id, _member(store, clinics.a, "practitioner"), user)[
        "access_token"
    ]
    tokens["a-staff"] = user_token(http, client_id, _member(store, clinics.a, "staff"), user)["access_token"]
    tokens["b-admin"] = tokens["B"] = user_token(http, client_id, _member(store, clinics.b, "clinic-admin"), user)[
        "access_token"
    ]
    tokens["a-backend"] = backend_token(http, store, "system/*.cruds", clinic=clinics.a)
    email = unique_email("platform")
    _, secret = admin.create_account(accounts(store), email=email, password=PASSWORD, kind="platform-admin")
    assert secret
    tokens["platform-admin"] = tokens["platform"] = user_token(http, client_id, email, user, secret=secret)[
        "access_token"
    ]

    for name in ("ORG_A", "ORG_B", "PR_A", "PR_B", "P1", "P2", "P3", "P5", "D", "P4", "P6", "RP_D"):
        _record(world, name)

    # Patient accounts; the proxy's own record is P5, its dependent D (RelatedPerson RP_D).
    def patient_account(name: str) -> tuple[str, str]:
        email = unique_email(f"patient-{name.lower()}")
        account, _ = admin.create_account(
            accounts(store), email=email, password=PASSWORD, kind="patient", fhir_user=f"Patient/{world.ids[name]}"
        )
        world.patient_accounts[name] = account.id
        return email, account.id

    writes = "launch/patient patient/*.cruds"
    for name in ("P1", "P2", "P3", "P6"):
        email, _ = patient_account(name)
        granted = user_token(http, client_id, email, writes)
        assert granted["patient"] == world.ids[name]
        tokens[name] = granted["access_token"]
        if name == "P1":
            tokens["patient"] = user_token(http, client_id, email, "launch/patient patient/*.rs")["access_token"]
    proxy_email, proxy_account = patient_account("P5")
    accounts(store).add_proxy(proxy_account, world.ids["D"], world.ids["RP_D"])
    offered = {world.ids["P5"], world.ids["D"]}
    tokens["P5"] = user_token(http, client_id, proxy_email, writes, patient=world.ids["P5"], offered=offered)[
        "access_token"
    ]
    chosen = user_token(http, client_id, proxy_email, "launch/patient patient/*.rs", patient=world.ids["D"])
    assert chosen["patient"] == world.ids["D"]
    tokens["proxy"] = chosen["access_token"]
    tokens["impersonating-admin"] = impersonate(http, client_id, tokens["platform-admin"], world.ids["P2"])[
        "access_token"
    ]

    for name, *_ in RECORDS:
        if name not in world.ids:
            _record(world, name)
    revoked = {**world.bodies["CON_P3_B"], "status": "inactive"}
    answer = write(http, tokens["P3"], "PUT", f"Consent/{world.ids['CON_P3_B']}", revoked)
    assert answer.status_code == 200, answer.text
    world.bodies["CON_P3_B"] = answer.json()
    _twins(world, principals, twin_paths)
    return world


def _twins(world: World, principals: tuple[str, ...], paths: tuple[str, ...]) -> None:
    """A twin of each of TWIN_SOURCES per (path, principal), written in one transaction per writer,
    tagged `<tag>-twin` so that no search of the world finds them."""
    by_writer: dict[str, list[tuple[tuple[str, str, str], dict[str, Any]]]] = {}
    for path in paths:
        for principal in principals:
            for name in TWIN_SOURCES:
                _, writer, resource_type, patient, _ = RECORDS_BY_NAME[name]
                identifier = f"{world.tag}-twin-{path}-{principal}-{name}".replace(" ", "-")
                body = body_of(world, name, resource_type, patient, identifier, f"{world.tag}-twin")
                by_writer.setdefault(writer, []).append(((path, principal, name), body))
    for writer, twins in by_writer.items():
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"resource": body, "request": {"method": "POST", "url": body["resourceType"]}} for _, body in twins
            ],
        }
        answer = write(world.http, world.tokens[writer], "POST", "", bundle)
        assert answer.status_code == 200, answer.text
        for (key, _), entry in zip(twins, answer.json()["entry"], strict=True):
            assert entry["response"]["status"].startswith("201"), entry
            world.twins[key] = located(entry["response"]["location"])[1]
