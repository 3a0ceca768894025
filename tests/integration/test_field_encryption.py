"""Field encryption end to end (issue 5 point 9), on SQLite and PostgreSQL, through the HTTP API.

Telecom values and national identifiers are stored encrypted (content and every version) and
hashed in index rows; every read path serves them in clear; exact search works through the keyed
hash and anything else is a 400; keys rotate and re-encryption moves every row to the new keys;
a damaged ciphertext is a clean 500; neither responses to errors nor logs carry the values.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from sqlalchemy import MetaData, create_engine, select, update
from starlette.testclient import TestClient

from fhir_server.admin.keys import reencrypt_all
from fhir_server.api.middleware import JsonFormatter
from fhir_server.app import create_app
from fhir_server.cli import main
from fhir_server.model.protect import format_key, new_secret
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine, normalise_url
from fhir_server.store.migrate import upgrade
from fhir_server.store.protection import ENCRYPTION, SEARCH_HASH
from fhir_server.store.rekey import usage
from fhir_server.store.schema import resource as resource_table
from tests.conftest import ADMIN_URL, FHIR_JSON
from tests.integration.helpers import error_code

SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
JSON_PATCH = {"Content-Type": "application/json-patch+json", "Accept": "application/fhir+json"}
PROTECTED = "search-modifier-protected"


class Person:
    """Unique protected values for one test: a phone number, an email and an SSN."""

    def __init__(self) -> None:
        digits = f"{random.randrange(10**7):07d}"
        self.phone = f"+1 (555) {digits[:3]}-{digits[3:]}"
        self.phone_digits = f"1555{digits}"
        self.email = f"Ada.{uuid.uuid4().hex[:10]}@Example.org"
        number = f"{random.randrange(10**9):09d}"
        self.ssn = f"{number[:3]}-{number[3:5]}-{number[5:]}"
        self.mrn = f"MRN-{uuid.uuid4().hex[:8]}"

    def patient(self, **extra: Any) -> dict[str, Any]:
        return {
            "resourceType": "Patient",
            "name": [{"family": "Lovelace", "given": ["Ada"]}],
            "identifier": [{"system": SSN_SYSTEM, "value": self.ssn}, {"system": "urn:mrn", "value": self.mrn}],
            "telecom": [{"system": "phone", "value": self.phone}, {"system": "email", "value": self.email}],
            "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">{self.phone}</div>'},
            **extra,
        }

    def needles(self) -> list[bytes]:
        """What must never be found in the database: each value as written and normalised."""
        forms = [self.phone, self.phone_digits, self.phone[3:], self.email, self.email.lower(), self.ssn]
        return [form.encode() for form in [*forms, self.ssn.replace("-", "")]]


def _created(client: TestClient, resource: dict[str, Any], **headers: str) -> dict[str, Any]:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers={**FHIR_JSON, **headers})
    assert response.status_code in (200, 201), response.text
    return response.json()  # type: ignore[no-any-return]


def _search(client: TestClient, path: str, params: list[tuple[str, str]]) -> list[dict[str, Any]]:
    response = client.get(f"/fhir/{path}", params=params, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    return [entry["resource"] for entry in response.json().get("entry", [])]


def _ids(resources: list[dict[str, Any]]) -> set[str]:
    return {r["id"] for r in resources}


def _values(resource: dict[str, Any]) -> set[str]:
    found = {t["value"] for t in resource.get("telecom", [])}
    return found | {i["value"] for i in resource.get("identifier", [])}


# --- every read path sees clear values -----------------------------------------------------------


def test_round_trip_through_every_read_path(client: TestClient) -> None:
    ada = Person()
    patient = _created(client, ada.patient())
    pid = patient["id"]
    assert _values(patient) >= {ada.phone, ada.email, ada.ssn}
    observation = _created(
        client,
        {
            "resourceType": "Observation",
            "status": "final",
            "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"},
        },
    )
    read = client.get(f"/fhir/Patient/{pid}")  # the fast path
    assert read.status_code == 200 and read.json() == patient
    assert client.get(f"/fhir/Patient/{pid}", params={"_format": "json"}).json() == patient
    xml = client.get(f"/fhir/Patient/{pid}", headers={"Accept": "application/fhir+xml"})
    assert ada.phone in xml.text and ada.ssn in xml.text
    assert client.get(f"/fhir/Patient/{pid}/_history/1", headers=FHIR_JSON).json() == patient

    patient["telecom"][1]["value"] = other_email = f"second.{ada.email}"
    updated = client.put(f"/fhir/Patient/{pid}", json=patient, headers=FHIR_JSON)
    assert updated.status_code == 200
    history = client.get(f"/fhir/Patient/{pid}/_history", headers=FHIR_JSON).json()["entry"]
    assert [other_email in _values(e["resource"]) for e in history] == [True, False]
    assert all(ada.ssn in _values(e["resource"]) for e in history)

    assert _ids(_search(client, "Patient", [("phone", ada.phone)])) == {pid}
    assert _ids(_search(client, "Observation", [("subject:Patient.phone", ada.phone_digits)])) == {observation["id"]}
    included = _search(client, "Observation", [("_id", observation["id"]), ("_include", "Observation:subject")])
    assert [ada.phone in _values(r) for r in included if r["resourceType"] == "Patient"] == [True]
    revincluded = _search(client, "Patient", [("email", other_email), ("_revinclude", "Observation:subject")])
    assert _ids(revincluded) == {pid, observation["id"]}
    summary = _search(client, "Patient", [("_id", pid), ("_elements", "telecom,identifier")])
    assert _values(summary[0]) >= {ada.phone, ada.ssn}

    valid = client.get(f"/fhir/Patient/{pid}/$validate", headers=FHIR_JSON)
    assert valid.status_code == 200 and valid.json()["issue"][0]["severity"] == "information"


def test_transaction_patch_and_conditional_writes_see_clear_values(client: TestClient) -> None:
    ada = Person()
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:" + str(uuid.uuid4()),
                "resource": ada.patient(),
                "request": {"method": "POST", "url": "Patient"},
            }
        ],
    }
    answer = client.post("/fhir", json=bundle, headers={**FHIR_JSON, "Prefer": "return=representation"})
    assert answer.status_code == 200, answer.text
    created = answer.json()["entry"][0]["resource"]
    pid = created["id"]
    assert _values(created) >= {ada.phone, ada.ssn}

    # Conditional create on a national identifier finds the existing Patient: no duplicate.
    again = client.post(
        "/fhir/Patient",
        json=ada.patient(),
        headers={**FHIR_JSON, "If-None-Exist": f"identifier={SSN_SYSTEM}|{ada.ssn}"},
    )
    assert again.status_code == 200 and again.json()["id"] == pid
    # Conditional update by phone.
    changed = ada.patient(gender="female")
    assert client.put("/fhir/Patient", params={"phone": ada.phone}, json=changed, headers=FHIR_JSON).status_code == 200

    new_phone = "+1 555 " + str(random.randrange(10**6, 10**7))
    patch = [
        {"op": "test", "path": "/telecom/0/value", "value": ada.phone},
        {"op": "replace", "path": "/telecom/0/value", "value": new_phone},
    ]
    patched = client.patch(f"/fhir/Patient/{pid}", json=patch, headers=JSON_PATCH)
    assert patched.status_code == 200, patched.text
    assert patched.json()["telecom"][0]["value"] == new_phone and patched.json()["gender"] == "female"
    assert _ids(_search(client, "Patient", [("phone", new_phone)])) == {pid}
    assert _search(client, "Patient", [("phone", ada.phone)]) == []
    assert client.get(f"/fhir/Patient/{pid}", headers=FHIR_JSON).json()["telecom"][0]["value"] == new_phone


# --- the database holds none of them --------------------------------------------------------------


def _scan(database_url: str, needles: list[bytes]) -> list[str]:
    """(table, needle) of every raw row of resource, resource_version and idx_* holding a needle."""
    engine = create_engine(normalise_url(database_url))
    metadata = MetaData()
    metadata.reflect(engine)
    found = []
    try:
        with engine.connect() as connection:
            for name, table in metadata.tables.items():
                if not (name in ("resource", "resource_version") or name.startswith("idx_")):
                    continue
                for row in connection.execute(select(table)):
                    text = b" ".join(v if isinstance(v, bytes) else str(v).encode() for v in row)
                    found += [f"{name}: {needle!r}" for needle in needles if needle.lower() in text.lower()]
    finally:
        engine.dispose()
    return found


def test_database_holds_no_clear_value(client: TestClient, settings: Settings) -> None:
    ada = Person()
    pid = _created(client, ada.patient())["id"]
    _created(client, {"resourceType": "Person", "telecom": [{"system": "phone", "value": ada.phone}]})
    subject = {"reference": f"Patient/{pid}", "identifier": {"system": SSN_SYSTEM, "value": ada.ssn}}
    _created(client, {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": subject})
    patch = [{"op": "add", "path": "/telecom/-", "value": {"system": "sms", "value": ada.phone}}]
    assert client.patch(f"/fhir/Patient/{pid}", json=patch, headers=JSON_PATCH).status_code == 200
    assert client.delete(f"/fhir/Patient/{pid}").status_code in (200, 204)  # the versions stay
    assert _scan(settings.database_url, ada.needles()) == []
    assert _scan(settings.database_url, [b"enc:v1:"])  # positive control: envelopes are there


# --- search ---------------------------------------------------------------------------------------


def test_exact_search_finds_and_another_value_does_not(client: TestClient) -> None:
    ada, other = Person(), Person()
    pid = _created(client, ada.patient())["id"]
    for name, value in [
        ("phone", ada.phone),
        ("phone", ada.phone_digits),
        ("telecom", ada.phone),
        ("email", ada.email.upper()),
        ("telecom", f"|{ada.email}"),
        ("identifier", f"{SSN_SYSTEM}|{ada.ssn}"),
        ("identifier", ada.ssn.replace("-", "")),
        ("identifier", f"urn:mrn|{ada.mrn}"),
        ("phone", f"{other.phone},{ada.phone}"),  # OR-ed values
        ("_filter", f'phone eq "{ada.phone}"'),
    ]:
        assert _ids(_search(client, "Patient", [(name, value), ("_id", pid)])) == {pid}, (name, value)
    for name, value in [
        ("phone", other.phone),
        ("email", other.email),
        ("identifier", f"{SSN_SYSTEM}|{other.ssn}"),
        ("identifier", f"urn:other|{ada.ssn}"),
        ("phone", ada.phone[:-1]),  # no prefix matching
        ("telecom:not", ada.phone),
    ]:
        assert _search(client, "Patient", [(name, value), ("_id", pid)]) == [], (name, value)
    assert _ids(_search(client, "Patient", [("telecom:not", other.phone), ("_id", pid)])) == {pid}
    assert _ids(_search(client, "Patient", [("phone:missing", "false"), ("_id", pid)])) == {pid}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("telecom:text", "555"),
        ("phone:contains", "555"),
        ("email:exact", "ada@example.org"),
        ("phone:above", "http://s|555"),
        ("email:in", "http://example.org/ValueSet/x"),
        ("_sort", "phone"),
        ("_filter", "phone co 555"),
        ("_filter", "email sw ada"),
    ],
)
def test_non_exact_searches_on_protected_values_are_400(client: TestClient, name: str, value: str) -> None:
    response = client.get("/fhir/Patient", params=[(name, value)], headers=FHIR_JSON)
    assert response.status_code == 400, response.text
    assert [error_code(issue) for issue in response.json()["issue"]] == [PROTECTED]


# --- messages and logs ----------------------------------------------------------------------------


@contextmanager
def _captured_logs() -> Iterator[list[str]]:
    """Every record of the fhir_server loggers, as the JSON log line it becomes, at DEBUG."""
    lines: list[str] = []
    formatter = JsonFormatter()

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(formatter.format(record))

    root = logging.getLogger("fhir_server")
    handler, level = Capture(logging.DEBUG), root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


def test_error_messages_and_logs_never_carry_clear_values(client: TestClient) -> None:
    ada = Person()
    with _captured_logs() as lines:
        pid = _created(client, ada.patient())["id"]
        client.get(f"/fhir/Patient/{pid}")
        _search(client, "Patient", [("phone", ada.phone), ("identifier", f"{SSN_SYSTEM}|{ada.ssn}")])
        bodies = []
        invalid = ada.patient(telecom=[{"system": "phone", "value": ada.phone.replace(" ", "\u00a0")}])
        bodies.append(client.post("/fhir/Patient", json=invalid, headers=FHIR_JSON))  # not a valid string
        failing = [{"op": "test", "path": "/telecom/0/value", "value": "something else"}]
        bodies.append(client.patch(f"/fhir/Patient/{pid}", json=failing, headers=JSON_PATCH))
        bodies.append(client.get("/fhir/Patient", params={"phone": f"a|{ada.phone}|b"}, headers=FHIR_JSON))
        bodies.append(client.get("/fhir/Patient", params={"identifier:of-type": f"x|{ada.ssn}"}, headers=FHIR_JSON))
        bodies.append(client.get("/fhir/Patient", params={"phone:text": ada.phone}, headers=FHIR_JSON))
    assert [response.status_code for response in bodies] == [400] * 5
    assert any('"fhir_server.access"' in line for line in lines)  # the access log was captured
    for needle in ada.needles():
        text = needle.decode()
        assert not [line for line in lines if text in line], text
        assert not [r.text for r in bodies if text in r.text or text.replace(" ", "\u00a0") in r.text], text


# --- keys: rotation, re-encryption, damage (each on a database of its own) -------------------------


@pytest.fixture
def fresh_url(backend: str, request: pytest.FixtureRequest, tmp_path: Any) -> Iterator[str]:
    """An empty migrated database: these tests use keys the shared one does not know."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'keys.db'}"
    else:
        base = str(request.getfixturevalue("postgres_url")).rsplit("/", 1)[0]
        name = f"fhir_keys_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        url = f"{base}/{name}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    if backend != "sqlite":
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _app(url: str, **keys: Any) -> Iterator[TestClient]:
    settings = Settings(database_url=url, log_level="WARNING", allow_unauthenticated_loopback=True, **keys)
    app = create_app(settings)
    try:
        with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 40000)) as client:
            yield client
    finally:
        app.state.store.engine.dispose()


def _raw(url: str, needle: bytes) -> int:
    return len(_scan(url, [needle]))


def test_rotation_keeps_data_readable_and_reencryption_moves_it_to_the_new_keys(fresh_url: str) -> None:
    key_a, key_b, hash_a, hash_b = (format_key(kid, new_secret()) for kid in ("ka", "kb", "ha", "hb"))
    ada, bob = Person(), Person()
    with _app(fresh_url, encryption_keys=key_a, search_hash_keys=hash_a) as old:
        first = _created(old, ada.patient())
        assert client_update(old, first, gender="female")["meta"]["versionId"] == "2"
    assert _raw(fresh_url, b"enc:v1:ka:") and _raw(fresh_url, b"hmac:ha:")

    rotated = {"encryption_keys": f"{key_b},{key_a}", "search_hash_keys": f"{hash_b},{hash_a}"}
    with _app(fresh_url, **rotated) as both:
        second = _created(both, bob.patient())
        assert both.get(f"/fhir/Patient/{first['id']}").json()["telecom"][0]["value"] == ada.phone  # old key
        assert _ids(_search(both, "Patient", [("phone", ada.phone)])) == {first["id"]}  # old hash
        assert _ids(_search(both, "Patient", [("phone", bob.phone)])) == {second["id"]}
        store = both.app.state.store  # type: ignore[attr-defined]
        report = reencrypt_all(store)
        assert report.old_envelopes.get("ka", 0) >= 3 and report.reindexed >= 2
        assert usage(store, ENCRYPTION, "ka") == 0 and usage(store, SEARCH_HASH, "ha") == 0
    assert _raw(fresh_url, b"enc:v1:ka:") == 0 and _raw(fresh_url, b"hmac:ha:") == 0
    assert _scan(fresh_url, ada.needles() + bob.needles()) == []

    with _app(fresh_url, encryption_keys=key_b, search_hash_keys=hash_b) as new:  # the old keys dropped
        assert (
            new.get(f"/fhir/Patient/{first['id']}/_history/1", headers=FHIR_JSON).json()["identifier"][0]["value"]
            == ada.ssn
        )
        history = new.get(f"/fhir/Patient/{first['id']}/_history", headers=FHIR_JSON).json()["entry"]
        assert [e["resource"]["telecom"][1]["value"] for e in history] == [ada.email, ada.email]
        assert _ids(_search(new, "Patient", [("phone", ada.phone)])) == {first["id"]}
        assert _ids(_search(new, "Patient", [("identifier", f"{SSN_SYSTEM}|{bob.ssn}")])) == {second["id"]}


def client_update(client: TestClient, resource: dict[str, Any], **changes: Any) -> dict[str, Any]:
    response = client.put(f"/fhir/Patient/{resource['id']}", json={**resource, **changes}, headers=FHIR_JSON)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_database_keys_rotate_and_retire_from_the_command_line(
    fresh_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ada = Person()
    monkeypatch.setenv("FHIR_DATABASE_URL", fresh_url)
    with _app(fresh_url, key_refresh_seconds=0) as client:  # reads the key table on every use
        pid = _created(client, ada.patient())["id"]
        assert main(["keys", "retire", "k1"]) == 2  # the current key
        assert main(["keys", "rotate", "--hash", "--wait", "0", "--json"]) == 0
        assert '"added": [\n    "k2",\n    "h2"\n  ]' in capsys.readouterr().out
        assert main(["keys", "retire", "k1"]) == 0 and main(["keys", "retire", "h1", "--hash"]) == 0
        assert client.get(f"/fhir/Patient/{pid}").json()["telecom"][0]["value"] == ada.phone
        assert _ids(_search(client, "Patient", [("email", ada.email)])) == {pid}
        assert main(["keys", "status", "--json"]) == 0
    assert '"kid": "k1"' not in capsys.readouterr().out
    assert _raw(fresh_url, b"enc:v1:k2:") and not _raw(fresh_url, b"enc:v1:k1:")


def test_damaged_or_moved_ciphertext_is_a_clean_500(fresh_url: str) -> None:
    ada, bob = Person(), Person()
    with _app(fresh_url) as client:
        first, second = _created(client, ada.patient()), _created(client, bob.patient())
        engine = make_engine(fresh_url)
        try:
            with engine.begin() as connection:
                row = connection.execute(
                    select(resource_table.c.content).where(resource_table.c.id == first["id"])
                ).one()
                envelope = row.content.split(b'"telecom":[{"system":"phone","value":"')[1].split(b'"')[0]
                body = envelope.rsplit(b":", 1)[1]
                damaged = envelope[: -len(body)] + body[:10] + (b"A" if body[10:11] != b"A" else b"B") + body[11:]
                connection.execute(
                    update(resource_table)
                    .where(resource_table.c.id == first["id"])
                    .values(content=row.content.replace(envelope, damaged))
                )
                other = connection.execute(
                    select(resource_table.c.content).where(resource_table.c.id == second["id"])
                ).one()
                moved = other.content.split(b'"telecom":[{"system":"phone","value":"')[1].split(b'"')[0]
                connection.execute(
                    update(resource_table)
                    .where(resource_table.c.id == second["id"])
                    .values(content=other.content.replace(moved, envelope))
                )
        finally:
            engine.dispose()
        with _captured_logs() as lines:
            answers = [client.get(f"/fhir/Patient/{first['id']}"), client.get(f"/fhir/Patient/{second['id']}")]
            answers.append(client.get("/fhir/Patient", params={"_id": first["id"]}, headers=FHIR_JSON))
        for answer in answers:
            assert answer.status_code == 500, answer.text
            assert [error_code(issue) for issue in answer.json()["issue"]] == ["decryption-failed"]
        assert any("could not be decrypted" in line for line in lines)
        for needle in ada.needles() + bob.needles():
            assert not [text for text in [a.text for a in answers] + lines if needle.decode() in text]
        assert not [a for a in answers if b"enc:v1:" in a.content]  # nor any ciphertext
