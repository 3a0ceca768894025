"""PostgreSQL row-level security, the second line of defence (issue 5, point 10; migration 0013,
store/row_security.py): with the access predicate lost by a simulated query-building bug, a
clinic still cannot read, search, read the history of, or write another clinic's rows; a clinic's
unit of work runs as the restricted role, and a pooled connection comes back unkeyed; unkeyed
work (the operator) sees everything as before. PostgreSQL only (SQLite has no RLS).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import text, true, update
from sqlalchemy.exc import DBAPIError

from fhir_server.access import LOCAL_OPERATOR, AccessContext, Visibility
from fhir_server.auth import policy
from fhir_server.errors import FhirError
from fhir_server.interactions import create, delete, history, read, search
from fhir_server.interactions import update as update_interaction
from fhir_server.interactions.context import Env
from fhir_server.store import compile_access, repository
from fhir_server.store.engine import make_engine
from fhir_server.store.repository import Store, StoredVersion
from fhir_server.store.row_security import ROLE, clinic_key, scope
from fhir_server.store.schema import resource

TAG = "urn:test:row-security"
CLINIC_A, CLINIC_B = f"rls-a-{uuid.uuid4().hex[:6]}", f"rls-b-{uuid.uuid4().hex[:6]}"


@pytest.fixture(autouse=True)
def _postgres_only(backend: str) -> None:
    if backend != "postgresql":
        pytest.skip("row-level security is PostgreSQL's")


def _clinic(store: Any, settings: Any, clinic: str) -> Env:
    context = AccessContext(
        principal=f"admin-{clinic}",
        kind="clinic-member",
        clinic_id=clinic,
        role="clinic-admin",
        scopes=frozenset({"user/*.cruds"}),
    )
    return Env(store, settings, context, "http://127.0.0.1/fhir")


def _operator(store: Any, settings: Any) -> Env:
    return Env(store, settings, LOCAL_OPERATOR, "http://127.0.0.1/fhir")


@pytest.fixture(scope="module")
def world(store: Any, settings: Any) -> dict[str, str]:
    tag = uuid.uuid4().hex[:12]
    meta = {"tag": [{"system": TAG, "code": tag}]}
    ids = {"tag": tag}
    for clinic, name in ((CLINIC_A, "A"), (CLINIC_B, "B")):
        env = _clinic(store, settings, clinic)
        patient = create.create(env, "Patient", {"resourceType": "Patient", "meta": meta, "name": [{"family": name}]})
        assert patient.version is not None
        ids[f"P{name}"] = patient.version.id
        observation = {
            "resourceType": "Observation",
            "meta": meta,
            "status": "final",
            "code": {"text": f"{tag}-{name}"},
            "subject": {"reference": f"Patient/{patient.version.id}"},
        }
        found = create.create(env, "Observation", observation)
        assert found.version is not None
        ids[f"O{name}"] = found.version.id
    return ids


@pytest.fixture
def predicate_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    """The simulated bug: every query built without the caller's visibility."""

    def everything(*_args: Any, **_kwargs: Any) -> Any:
        return true()

    monkeypatch.setattr(compile_access, "visible_predicate", everything)
    monkeypatch.setattr(repository, "visible_predicate", everything)


def _ids(result: Any) -> set[str]:
    body = orjson.loads(orjson.dumps(result.body))
    return {entry["resource"]["id"] for entry in body.get("entry", []) if "resource" in entry}


def _status(call: Any) -> int:
    try:
        call()
    except FhirError as error:
        return error.status
    return 200


def test_the_simulated_bug_leaks_without_row_security(
    world: dict[str, str], store: Any, settings: Any, predicate_lost: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The control: with the predicate lost and the unit of work left unkeyed, B reads A's record;
    so what the next test shows is row-level security's doing."""
    monkeypatch.setattr(repository, "clinic_key", lambda _visibility: None)
    clinic_b = _clinic(store, settings, CLINIC_B)
    assert read.read(clinic_b, "Observation", world["OA"]).version is not None


def test_another_clinics_rows_stay_out_of_reach_when_the_predicate_is_lost(
    world: dict[str, str], store: Any, settings: Any, predicate_lost: None
) -> None:
    clinic_a, clinic_b = _clinic(store, settings, CLINIC_A), _clinic(store, settings, CLINIC_B)
    tagged = [("_tag", f"{TAG}|{world['tag']}")]
    # B: read, vread, instance history answer 404; searches and histories never show A's rows.
    assert _status(lambda: read.read(clinic_b, "Observation", world["OA"])) == 404
    assert _status(lambda: read.vread(clinic_b, "Observation", world["OA"], "1")) == 404
    assert _status(lambda: history.history(clinic_b, [], "Observation", world["OA"])) == 404
    found = search.search(clinic_b, "Observation", tagged)
    assert _ids(found) == {world["OB"]} and found.body is not None and found.body["total"] == 1
    system = search.search(clinic_b, None, [("_type", "Observation,Patient"), *tagged])
    assert _ids(system) == {world["OB"], world["PB"]}
    everything_b = _ids(history.history(clinic_b, [("_count", "1000")], "Observation"))
    assert world["OB"] in everything_b and world["OA"] not in everything_b
    assert world["OA"] not in _ids(history.history(clinic_b, [("_count", "1000")]))
    chained = search.search(clinic_b, "Observation", [("subject:Patient.family", "A"), *tagged])
    assert _ids(chained) == set()
    # A still reads its own.
    assert read.read(clinic_a, "Observation", world["OA"]).version is not None
    assert _ids(search.search(clinic_a, "Observation", tagged)) == {world["OA"]}
    assert world["OA"] in _ids(history.history(clinic_a, [], "Observation", world["OA"]))
    # B cannot write into A's record: through the interactions, nor with the store's own statements.
    tampered = {
        "resourceType": "Observation",
        "id": world["OA"],
        "status": "amended",
        "code": {"text": "tampered"},
        "subject": {"reference": f"Patient/{world['PA']}"},
    }
    assert _status(lambda: update_interaction.update(clinic_b, "Observation", world["OA"], tampered)) == 405
    gone = delete.delete(clinic_b, "Observation", world["OA"])
    assert gone.body is not None and gone.body["issue"][0]["details"]["coding"][0]["code"] == "nothing-deleted"
    visibility_b = policy.visibility(clinic_b.access, "u", "Observation")
    with store.unit_of_work(visibility_b) as uow:  # a bare UPDATE: the policy hides the row from it
        changed = uow.connection.execute(
            update(resource).where(resource.c.id == world["OA"]).values(owner_clinic=CLINIC_B)
        )
        assert changed.rowcount == 0
    forged = StoredVersion(
        "Observation", uuid.uuid4().hex, 1, datetime.now(UTC).replace(tzinfo=None), False, b"{}", "POST",
        owner_clinic=CLINIC_A, contributor_clinic=CLINIC_A,
    )  # fmt: skip
    with pytest.raises(DBAPIError, match="row-level security"), store.unit_of_work(visibility_b) as uow:
        uow.create(forged)  # WITH CHECK: B cannot write a row in A's name
    owner_view = read.read(clinic_a, "Observation", world["OA"])
    assert owner_view.version is not None and owner_view.version.version_id == 1
    assert owner_view.version.owner_clinic == CLINIC_A


def test_unkeyed_work_sees_everything(world: dict[str, str], store: Any, settings: Any, predicate_lost: None) -> None:
    operator = _operator(store, settings)
    tagged = [("_tag", f"{TAG}|{world['tag']}")]
    assert _ids(search.search(operator, "Observation", tagged)) == {world["OA"], world["OB"]}
    for name in ("OA", "OB"):
        assert read.read(operator, "Observation", world[name]).version is not None
    with store.unit_of_work(policy.UNRESTRICTED, read_only=True) as uow:
        role, key = scope(uow.connection)
        assert role != ROLE and key is None


@pytest.fixture
def one_connection(settings: Any, store: Any) -> Iterator[Store]:
    """A store whose pool holds one connection: every unit of work gets the same one back."""
    engine = make_engine(settings.database_url, pool_size=1)
    engine.pool._max_overflow = 0  # type: ignore[attr-defined]
    yield Store(engine, store.protection)
    engine.dispose()


def _backend(connection: Any) -> tuple[int, str, str | None]:
    pid = connection.execute(text("SELECT pg_backend_pid()")).scalar_one()
    return (pid, *scope(connection))


@pytest.mark.parametrize("read_only", [True, False], ids=["read", "write"])
@pytest.mark.parametrize("fails", [False, True], ids=["succeeds", "fails"])
def test_a_clinic_unit_of_work_runs_as_the_restricted_role_and_hands_back_an_unkeyed_connection(
    world: dict[str, str], settings: Any, one_connection: Store, read_only: bool, fails: bool
) -> None:
    store = one_connection
    with store.engine.connect() as connection:
        login = _backend(connection)
        superuser = connection.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar()
    assert login[1] != ROLE and login[2] is None
    visibility = policy.visibility(_clinic(store, settings, CLINIC_B).access, "r" if read_only else "u", "Observation")
    assert clinic_key(visibility) == CLINIC_B

    class Boom(Exception):
        pass

    try:
        with store.unit_of_work(visibility, read_only=read_only) as uow:
            inside = _backend(uow.connection)
            assert inside == (login[0], ROLE, CLINIC_B)  # the same connection, switched and keyed
            role = uow.connection.execute(
                text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
            ).one()
            assert tuple(role) == (False, False)
            assert uow.current("Observation", world["OA"]) is None
            if fails:
                raise Boom
    except Boom:
        pass
    with store.engine.connect() as connection:
        after = _backend(connection)
        assert after == login  # the pooled connection: the login role again, no key
        assert connection.execute(text("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")).scalar() == (
            superuser
        )


def test_the_role_without_a_key_sees_only_ownerless_rows(world: dict[str, str], store: Any) -> None:
    with store.engine.connect() as connection, connection.begin():
        connection.execute(text(f"SET LOCAL ROLE {ROLE}"))
        owned = connection.execute(
            text("SELECT count(*) FROM resource WHERE owner_clinic IS NOT NULL OR contributor_clinic IS NOT NULL")
        ).scalar_one()
        versions = connection.execute(
            text("SELECT count(*) FROM resource_version WHERE id = :id"), {"id": world["OA"]}
        ).scalar_one()
        assert (owned, versions) == (0, 0)


def test_the_key_is_the_acting_clinic() -> None:
    assert clinic_key(policy.UNRESTRICTED) is None
    assert clinic_key(Visibility()) is None
    assert clinic_key(Visibility(acting_clinic="x")) == "x"
    patient_context = AccessContext("p", "patient", scopes=frozenset({"patient/*.rs"}), patient="1")
    patient = policy.visibility(patient_context, "r", None)
    assert clinic_key(patient) is None
    two = Visibility(grants=(policy.Grant("*", clinic="x"),), acting_clinic="y")
    with pytest.raises(ValueError):
        clinic_key(two)
    assert clinic_key(replace(two, acting_clinic="x")) == "x"


def test_a_clinics_transaction_runs_in_its_scope_when_the_predicate_is_lost(
    world: dict[str, str], store: Any, settings: Any, predicate_lost: None
) -> None:
    """A transaction Bundle's unit of work is keyed for the clinic from the start (policy.
    transaction_scope): its entries cannot reach another clinic's rows either."""
    from fhir_server.interactions import bundle

    def transaction(env: Env, url: str) -> dict[str, Any]:
        body = {"resourceType": "Bundle", "type": "transaction", "entry": [{"request": {"method": "GET", "url": url}}]}
        try:
            result = bundle.process_bundle(env, body)
        except FhirError as error:
            return {"status": error.status}
        return orjson.loads(orjson.dumps(result.body))

    clinic_a, clinic_b = _clinic(store, settings, CLINIC_A), _clinic(store, settings, CLINIC_B)
    stolen = transaction(clinic_b, f"Observation/{world['OA']}")
    assert world["OA"] not in orjson.dumps(stolen).decode()
    own = transaction(clinic_a, f"Observation/{world['OA']}")
    assert own["entry"][0]["resource"]["id"] == world["OA"]
