"""The repository: the only place that reads and writes resources in SQL.

One `UnitOfWork` is one database transaction (R4 http.html#transaction: a write stores the
resource, its version and its index rows together or not at all). Every query it runs is
narrowed by the caller's `Visibility` (access.py), compiled to a predicate here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, delete, false, func, insert, select, text, tuple_, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.access import Visibility
from fhir_server.errors import Conflict, Forbidden
from fhir_server.model.summary import name_only
from fhir_server.search.clauses import Clause, IndexRow, SortKey, searched_params
from fhir_server.store import jobs
from fhir_server.store.compile_access import full_view_predicate, offers_name_only, visible_predicate
from fhir_server.store.compile_protected import blind_clauses
from fhir_server.store.compile_search import (
    count_statement,
    matches_statement,
    page_statement,
    referenced_statement,
    referencing_statement,
)
from fhir_server.store.compile_sort import check_keyset, drives_page
from fhir_server.store.compile_terminology import Terminology, needs_terminology
from fhir_server.store.compiler import clause_predicate
from fhir_server.store.engine import is_postgres
from fhir_server.store.protection import Protection, protection_for
from fhir_server.store.row_security import clinic_key, key_transaction, keyed_session
from fhir_server.store.schema import ACCESS_FACTS, INDEX_TABLES, OWNERS, registration, resource, resource_version


@dataclass(frozen=True)
class StoredVersion:
    resource_type: str
    id: str
    version_id: int
    last_updated: datetime
    deleted: bool
    content: bytes | None
    method: str = ""
    # Who owns it (DESIGN.md section 3), kept on the current row only (interactions/ownership.py).
    owner_patient: str | None = None
    owner_clinic: str | None = None
    contributor_clinic: str | None = None
    # Shown as a name-only Patient (UnitOfWork._shown): its other fields, references included,
    # are hidden from this caller.
    name_only: bool = False

    @property
    def key(self) -> tuple[datetime, str, str, int]:
        return (self.last_updated, self.resource_type, self.id, self.version_id)


@dataclass(frozen=True)
class Found(StoredVersion):
    """A search match with its keyset: (sort values..., resource_type, id), what `search(after=...)`
    continues from (compile_sort.encode_keyset makes a paging token of it)."""

    keyset: tuple[Any, ...] = field(default=(), compare=False)


Page = Callable[[int, Sequence[Any] | None], Any]
"""A page statement for (how many rows, after which keyset)."""


@dataclass(frozen=True)
class HistoryQuery:
    resource_type: str | None = None
    id: str | None = None
    since: datetime | None = None
    at: tuple[datetime, datetime] | None = None  # the instant's precision as [low, high)
    before: tuple[datetime, str, str, int] | None = None  # keyset: continue after this row
    limit: int = 50


class Store:
    def __init__(self, engine: Engine, protection: Protection | None = None) -> None:
        self.engine = engine
        self.postgres = is_postgres(engine)
        # Field encryption (store/protection.py): sealed on write, revealed on read, here only.
        self.protection = protection or protection_for(engine)

    @contextmanager
    def unit_of_work(self, visibility: Visibility, read_only: bool = False) -> Iterator[UnitOfWork]:
        # A clinic's work runs in its row-security scope on PostgreSQL (store/row_security.py):
        # the database refuses other clinics' rows even to a query built without the predicate.
        clinic = clinic_key(visibility) if self.postgres else None
        with self.engine.connect() as connection:
            if read_only and self.postgres:
                # Reads need no transaction: autocommit spares the BEGIN and COMMIT round trips.
                autocommit = connection.execution_options(isolation_level="AUTOCOMMIT")
                if clinic is None:
                    yield UnitOfWork(autocommit, visibility, lock=False, protection=self.protection)
                    return
                with keyed_session(autocommit, clinic):  # unkeyed again before the pool has it back
                    yield UnitOfWork(autocommit, visibility, lock=False, protection=self.protection)
                return
            connection.info["read_only"] = read_only
            with connection.begin():
                if clinic is not None:
                    key_transaction(connection, clinic)  # until COMMIT or ROLLBACK
                uow = UnitOfWork(connection, visibility, self.postgres and not read_only, self.protection)
                yield uow
                uow.flush()

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))


def _by_key(table: Any) -> ColumnElement[bool]:
    return and_(table.c.resource_type == bindparam("key_type"), table.c.id == bindparam("key_id"))


# Hot-path statements are built once: constructing SQLAlchemy expressions per call cost more than
# executing them (profiled on create).
_SELECT_CURRENT = select(resource).where(_by_key(resource))
_SELECT_VERSION = select(resource_version).where(
    _by_key(resource_version), resource_version.c.version_id == bindparam("key_version")
)
_INSERT_CURRENT = insert(resource)
_INSERT_VERSION = insert(resource_version)
_UPDATE_CURRENT = (
    update(resource)
    .where(_by_key(resource), resource.c.version_id == bindparam("expected_version"))
    .values({name: bindparam(f"new_{name}") for name in ("version_id", "last_updated", "deleted", "content", *OWNERS)})
)
_DELETE_INDEX = {
    kind: delete(table).where(
        table.c.resource_type == bindparam("key_type"), table.c.resource_id == bindparam("key_id")
    )
    for kind, table in INDEX_TABLES.items()
}
_INSERT_INDEX = {kind: insert(table) for kind, table in INDEX_TABLES.items()}
_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


class UnitOfWork:
    def __init__(
        self, connection: Connection, visibility: Visibility, lock: bool, protection: Protection | None = None
    ) -> None:
        self.connection = connection
        self.visibility = visibility
        self.lock = lock
        self.protection = protection or protection_for(connection.engine)
        # Inserts of new resources wait here and go out as one executemany per table (psycopg
        # pipelines those): a transaction Bundle of 200 creates costs 3 statements, not 600.
        self._pending: dict[Any, list[dict[str, Any]]] = {}
        self._terminology: Terminology | None = None
        # Patients shown by name only in this unit of work: `_include` does not follow their
        # references (hidden fields), whichever step of a search reads them.
        self._name_only_patients: set[str] = set()

    def _queue(self, statement: Any, rows: list[dict[str, Any]]) -> None:
        self._pending.setdefault(statement, []).extend(rows)

    def flush(self) -> None:
        pending, self._pending = self._pending, {}
        try:
            for statement, rows in pending.items():
                self.connection.execute(statement, rows)
        except IntegrityError:
            raise Conflict("A resource was written concurrently", "write-conflict") from None

    def _run(self, statement: Any, parameters: Any = None) -> Any:
        if self._pending:
            self.flush()
        return self.connection.execute(statement, parameters)

    def _version(self, row: Any) -> StoredVersion:
        """A stored version read from a row, in clear (store/protection.py)."""
        return self.protection.revealed(_version(row))

    def serialize_on(self, key: str) -> None:
        """Holds a transaction-scoped lock on `key` (conditional writes: the check and the write
        must not interleave with another writer's). SQLite already runs one writer at a time."""
        if self.lock:
            self._run(_ADVISORY_LOCK, {"key": key})

    def _narrow(self, statement: Any, row: Any = resource, searched: frozenset[str] | None = None) -> Any:
        """`statement` over `row` (the resource or resource_version table) restricted to what
        the caller may see (access.py, compile_access.py); `searched` as in `_visible`. Search
        statements carry the same predicate inside, on every row they reach (`_visible`)."""
        return statement if self.visibility.unrestricted else statement.where(self._visible(row, searched))

    def _visible(self, row: Any, searched: frozenset[str] | None = None) -> ColumnElement[bool]:
        """The caller's visibility as a predicate on one `resource` table or alias: what
        searches, chains, `_has` and includes apply to every resource they reach. `searched`:
        the parameters examined on that row (compiler.Visible); empty for a read by id."""
        return visible_predicate(self.visibility, row, searched)

    def _shown(self, versions: list[Any]) -> list[Any]:
        """`versions` as the caller may see them: a Patient the caller sees only by name (a
        clinic before the patient's profile-sharing Consent; compile_access.offers_name_only)
        keeps its id and name, marked SUBSETTED. Which ones are seen in full is asked of the
        database, by the same policy."""
        if not self._offers_names():
            return versions
        patients = {v.id for v in versions if v.resource_type == "Patient" and v.content is not None}
        if not patients:
            return versions
        query = select(resource.c.id).where(
            resource.c.resource_type == "Patient",
            resource.c.id.in_(sorted(patients)),
            full_view_predicate(self.visibility, resource),
        )
        return self._cut_down(versions, {row.id for row in self._run(query)})

    def _offers_names(self) -> bool:
        # Asked each time: a Bundle's entries each bring their own visibility.
        return any(offers_name_only(grant) for grant in self.visibility.grants)

    def _one_shown(self, statement: Any, key: dict[str, Any], resource_type: str, table: Any) -> StoredVersion | None:
        """One row of `statement` as the caller may see it (`_shown`), the full-view flag of a
        Patient read in the same query rather than asked afterwards."""
        flagged = resource_type == "Patient" and self._offers_names()
        if flagged:
            statement = statement.add_columns(full_view_predicate(self.visibility, table).label("full_view"))
        row = self._run(statement, key).first()
        if row is None:
            return None
        version = self._version(row)
        if not flagged or version.content is None:
            return version
        return self._cut_down([version], {version.id} if row.full_view else set())[0]

    def _cut_down(self, versions: list[Any], full: set[str]) -> list[Any]:
        """`versions` with the Patients not in `full` shown by name only."""
        shown = []
        for version in versions:
            if version.resource_type == "Patient" and version.content is not None and version.id not in full:
                self._name_only_patients.add(version.id)
                version = replace(version, content=name_only(version.content), name_only=True)
            shown.append(version)
        return shown

    def is_visible(self, resource_type: str, resource_id: str) -> bool:
        """Whether the caller may see this current resource now (a write checks its result:
        a resource written outside the caller's grants is refused, and the transaction undone)."""
        if self.visibility.unrestricted:
            return True
        query = self._narrow(select(resource.c.id).where(_by_key(resource)))
        return self._run(query, {"key_type": resource_type, "key_id": resource_id}).first() is not None

    def may_register(self, patient_id: str, clinic_holdings: Visibility, clinic_id: str) -> bool:
        """Whether a clinic may state a registration of this patient at itself: it holds the
        Patient in full (`clinic_holdings`, auth/policy.py), or the patient was registered there
        before (by themselves, or by the clinic). Anything else, an unknown id included, is no."""
        held = select(resource.c.id).where(_by_key(resource), visible_predicate(clinic_holdings, resource))
        if self._run(held, {"key_type": "Patient", "key_id": patient_id}).first() is not None:
            return True
        before = select(registration.c.id).where(
            registration.c.patient_id == patient_id, registration.c.clinic_id == clinic_id
        )
        return self._run(before.limit(1)).first() is not None

    def _resolved(self, clauses: Sequence[Clause]) -> Sequence[Clause]:
        """`clauses` with the ValueSets and CodeSystem hierarchies they name read from the store
        (token `:in`, `:not-in`, `:above`, `:below`; compile_terminology.py), once per unit of work."""
        clauses = blind_clauses(clauses, self.protection.search_hashes)  # values among protected ones
        if not needs_terminology(clauses):
            return clauses
        if self._terminology is None:
            self._terminology = Terminology(lambda statement: self._run(statement).all(), self._visible)
        return self._terminology.resolve(clauses)

    def current(self, resource_type: str, resource_id: str, for_update: bool = False) -> StoredVersion | None:
        query = self._narrow(_SELECT_CURRENT, searched=frozenset())
        if for_update and self.lock:
            query = query.with_for_update()
        return self._one_shown(query, {"key_type": resource_type, "key_id": resource_id}, resource_type, resource)

    def version(self, resource_type: str, resource_id: str, version_id: int) -> StoredVersion | None:
        key = {"key_type": resource_type, "key_id": resource_id, "key_version": version_id}
        statement = self._narrow(_SELECT_VERSION, resource_version, frozenset())
        return self._one_shown(statement, key, resource_type, resource_version)

    def create(self, stored: StoredVersion) -> None:
        if not self.visibility.unrestricted and not self.visibility.grants:
            raise Forbidden("This caller may not create resources", "write-forbidden")
        stored = self.protection.sealed(stored)
        self._queue(_INSERT_CURRENT, [_current_columns(stored)])
        self._queue(_INSERT_VERSION, [{**_columns(stored), "method": stored.method}])

    def replace(self, stored: StoredVersion, expected_version: int) -> bool:
        """Writes a new current version if the current one is still `expected_version`."""
        stored = self.protection.sealed(stored)
        values = {f"new_{name}": value for name, value in _current_columns(stored).items()}
        values.update(key_type=stored.resource_type, key_id=stored.id, expected_version=expected_version)
        result = self._run(self._narrow(_UPDATE_CURRENT), values)
        if result.rowcount != 1:
            return False
        self._add_version(stored)
        return True

    def _add_version(self, stored: StoredVersion) -> None:
        try:
            self._run(_INSERT_VERSION, {**_columns(stored), "method": stored.method})
        except IntegrityError:
            raise Conflict(f"{stored.resource_type}/{stored.id} was changed concurrently", "version-conflict") from None

    def replace_access_fact(self, kind: str | None, resource_id: str, fact: dict[str, Any] | None) -> None:
        """The registration or sharing-consent row kept from resource `resource_id` (migration 0012):
        replaced in this transaction, removed when the resource no longer states one."""
        for table in ACCESS_FACTS.values():
            self._run(delete(table).where(table.c.id == resource_id))
        if kind is not None and fact is not None:
            self._run(insert(ACCESS_FACTS[kind]), {"id": resource_id, **fact})

    def replace_index(
        self, resource_type: str, resource_id: str, rows: Sequence[IndexRow], fresh: bool = False
    ) -> None:
        """Index rows of a resource; `fresh` (a new resource) skips removing rows it cannot have."""
        if not fresh:
            for statement in _DELETE_INDEX.values():
                self._run(statement, {"key_type": resource_type, "key_id": resource_id})
        by_kind: dict[str, list[dict[str, Any]]] = {}
        for row in rows:
            by_kind.setdefault(row.kind, []).append(
                {"resource_type": resource_type, "resource_id": resource_id, "param": row.param}
                | self.protection.row_values(row)
            )
        for kind, values in by_kind.items():
            self._queue(_INSERT_INDEX[kind], values)

    def match(self, resource_type: str, clauses: Sequence[Clause], limit: int) -> list[StoredVersion]:
        """Current, not deleted, visible resources of a type matching every clause."""
        clauses = self._resolved(clauses)
        query = (
            select(resource)
            .where(
                resource.c.resource_type == resource_type,
                resource.c.deleted == false(),
                *(clause_predicate(resource_type, None, clause, self._visible) for clause in clauses),
            )
            .order_by(resource.c.last_updated.desc(), resource.c.id)
            .limit(limit)
        )
        narrowed = self._narrow(query, searched=searched_params(clauses))
        return self._shown([self._version(row) for row in self._run(narrowed)])

    def search(
        self,
        resource_type: str | None,
        clauses: Sequence[Clause],
        sort: Sequence[SortKey] = (),
        limit: int = 50,
        after: Sequence[Any] | None = None,
        types: tuple[str, ...] = (),
        backwards: bool = False,
    ) -> list[Found]:
        """One page of current, visible resources of `resource_type` (None: a system search over
        `types`, or every type when empty) matching every clause, in `sort` order then by
        (resource_type, id); `after` is the keyset of the last row of the previous page."""
        if after is not None:
            after = check_keyset(after, sort)
        clauses = self._resolved(clauses)

        def page(segment: str | None) -> Page:
            return lambda wanted, key: page_statement(
                resource_type, types, clauses, sort, wanted, key, self._visible, backwards, segment
            )

        if self.connection.dialect.name != "postgresql" or not drives_page(resource_type, sort):
            return self._read(page(None), len(sort), limit, after, set())
        # PostgreSQL: matches with a value, then those without, each read in index order (driven_matches)
        segments = ["valued", "unvalued"]
        current = 1 if after is not None and after[0] is None else 0  # the segment the keyset lies in
        order = list(reversed(segments[: current + 1])) if backwards else segments[current:]
        found: list[Found] = []
        seen: set[tuple[str, str]] = set()
        for position, segment in enumerate(order):
            key = after if position == 0 else None  # later segments lie wholly beyond the keyset
            found += self._read(page(segment), len(sort), limit - len(found), key, seen)
            if len(found) >= limit:
                break
        return found

    def _read(
        self, page: Page, sort_keys: int, limit: int, after: Sequence[Any] | None, seen: set[tuple[str, str]]
    ) -> list[Found]:
        """Up to `limit` rows of `page` after the keyset `after`, each resource once: a page
        holding a resource twice (driven_matches) is topped up from where it ended."""
        found: list[Found] = []
        while True:
            wanted = limit - len(found)
            rows = self._run(page(wanted, after)).all()
            for row in rows:
                version = self._version(row)
                keyset = (*row[len(resource.c) : len(resource.c) + sort_keys], version.resource_type, version.id)
                if (version.resource_type, version.id) not in seen:
                    seen.add((version.resource_type, version.id))
                    found.append(Found(**{**version.__dict__, "keyset": keyset}))
                after = keyset
            if len(rows) < wanted or len(found) >= limit:
                return self._shown(found)

    def count(self, resource_type: str | None, clauses: Sequence[Clause], types: tuple[str, ...] = ()) -> int:
        """How many current, visible resources `search` would find on all pages together."""
        statement = count_statement(resource_type, types, self._resolved(clauses), self._visible)
        return int(self._run(statement).scalar_one())

    def estimate(self, resource_type: str | None, clauses: Sequence[Clause], types: tuple[str, ...] = ()) -> int | None:
        """The planner's estimate of how many resources match (PostgreSQL), None elsewhere."""
        if self.connection.dialect.name != "postgresql":
            return None
        statement = matches_statement(resource_type, types, self._resolved(clauses), self._visible)
        compiled = statement.compile(dialect=self.connection.dialect, compile_kwargs={"render_postcompile": True})
        if self._pending:
            self.flush()
        explained = self.connection.exec_driver_sql(f"EXPLAIN (FORMAT JSON) {compiled}", compiled.params)
        plan = explained.scalar_one()
        return int(plan[0]["Plan"]["Plan Rows"])

    def referenced(
        self, sources: Iterable[tuple[str, str]], params: Sequence[str] | None, target_type: str | None = None
    ) -> list[StoredVersion]:
        """`_include` step: the current, visible resources that the (type, id) `sources` refer to
        through the reference parameters `params` (None for `*`: any), optionally of one type."""
        sources = [(kind, identifier) for kind, identifier in sources if not self._hides_fields_of(kind, identifier)]
        statement = referenced_statement(sources, params, target_type, self._visible)
        return self._shown([self._version(row) for row in self._run(statement)])

    def _hides_fields_of(self, resource_type: str, resource_id: str) -> bool:
        return resource_type == "Patient" and resource_id in self._name_only_patients

    def referencing(
        self,
        targets: Iterable[tuple[str, str]],
        source_type: str | None,
        params: Sequence[str] | None,
        exclude: Sequence[str] = (),
    ) -> list[StoredVersion]:
        """`_revinclude` step: the current, visible `source_type` resources (None: any type but
        those in `exclude`) that refer to one of the (type, id) `targets` through `params` (None
        for `*`: any)."""
        statement = referencing_statement(list(targets), source_type, params, self._visible, exclude)
        return self._shown([self._version(row) for row in self._run(statement)])

    def history(self, query: HistoryQuery) -> list[StoredVersion]:
        table = resource_version
        conditions: list[ColumnElement[bool]] = [self._visible(table, frozenset())]
        if query.resource_type:
            conditions.append(table.c.resource_type == query.resource_type)
        if query.id:
            conditions.append(table.c.id == query.id)
        if query.since:
            conditions.append(table.c.last_updated >= query.since)
        if query.at:
            conditions.extend(_current_during(query.at))
        key = tuple_(table.c.last_updated, table.c.resource_type, table.c.id, table.c.version_id)
        if query.before:
            conditions.append(key < tuple_(*query.before))
        statement = (
            select(table)
            .where(*conditions)
            .order_by(
                table.c.last_updated.desc(),
                table.c.resource_type.desc(),
                table.c.id.desc(),
                table.c.version_id.desc(),
            )
            .limit(query.limit)
        )
        return self._shown([self._version(row) for row in self._run(statement)])

    # --- custom search parameters and background jobs (interactions/custom_params.py, reindex.py)

    def latest_change(self, resource_type: str) -> tuple[int, datetime | None]:
        """How many current resources of a type exist and when the newest changed (a change marker)."""
        query = select(func.count(), func.max(resource.c.last_updated)).where(resource.c.resource_type == resource_type)
        count, newest = self._run(self._narrow(query)).one()
        return int(count), newest

    def current_contents(self, resource_type: str) -> list[bytes]:
        query = select(resource.c.id, resource.c.content).where(
            resource.c.resource_type == resource_type, resource.c.deleted == false()
        )
        reveal = self.protection.reveal
        return [reveal(resource_type, row.id, row.content) for row in self._run(self._narrow(query)) if row.content]

    def count_current(self, resource_type: str) -> int:
        query = select(func.count()).where(resource.c.resource_type == resource_type, resource.c.deleted == false())
        return int(self._run(self._narrow(query)).scalar_one())

    def current_page(self, resource_type: str, after_id: str | None, limit: int) -> list[StoredVersion]:
        """Current resources of a type in id order, after `after_id` (a job's keyset position)."""
        conditions = [resource.c.resource_type == resource_type, resource.c.deleted == false()]
        if after_id is not None:
            conditions.append(resource.c.id > after_id)
        query = select(resource).where(*conditions).order_by(resource.c.id).limit(limit)
        return [self._version(row) for row in self._run(self._narrow(query))]

    def replace_param_index(self, resource_type: str, param: str, rows_by_id: dict[str, list[IndexRow]]) -> None:
        """Replaces one parameter's index rows of the given resources (a reindex batch)."""
        ids = list(rows_by_id)
        for table in INDEX_TABLES.values():
            self._run(
                delete(table).where(
                    table.c.resource_type == resource_type, table.c.param == param, table.c.resource_id.in_(ids)
                )
            )
        for resource_id, rows in rows_by_id.items():
            self.replace_index(resource_type, resource_id, rows, fresh=True)

    def enqueue_job(self, kind: str, payload: dict[str, Any]) -> str:
        self.flush()
        return jobs.enqueue(self.connection, kind, payload)

    def claim_job(self) -> jobs.Job | None:
        return jobs.claim(self.connection, self.lock)

    def job_progress(self, job_id: str, state: str, processed: int, total: int | None, payload: dict[str, Any]) -> None:
        jobs.progress(self.connection, job_id, state=state, processed=processed, total=total, payload=payload)

    def jobs_of(self, kind: str) -> list[jobs.Job]:
        return jobs.of_kind(self.connection, kind)

    def finished_job_payloads(self, kind: str) -> list[dict[str, Any]]:
        return jobs.finished_payloads(self.connection, kind)

    _BULK_INSERTS: dict[tuple[str, tuple[str, ...]], str] = {}  # flush_bulk's statements, by table and columns

    def flush_bulk(self) -> None:
        """`flush` in one round trip on PostgreSQL: each table's queued rows as one
        `INSERT ... SELECT FROM unnest(<one array per column>)`, all of them pipelined, instead of
        a statement per row (the audit writer's group commits: ~20 index rows per AuditEvent).
        Same transaction, same rows as `flush`; SQLite's executemany is already cheap."""
        if not is_postgres(self.connection.engine):
            self.flush()
            return
        import psycopg
        from sqlalchemy.dialects import postgresql

        pending, self._pending = self._pending, {}
        try:
            driver: Any = self.connection.connection.driver_connection  # psycopg's, in this transaction
            with driver.cursor() as cursor, driver.pipeline():
                for statement, rows in pending.items():
                    table = statement.table
                    names = tuple(dict.fromkeys(name for row in rows for name in row))
                    sql = self._BULK_INSERTS.get((table.name, names))
                    if sql is None:
                        types = [table.c[name].type.compile(dialect=postgresql.dialect()) for name in names]
                        arrays = ", ".join(f"%b::{kind}[]" for kind in types)
                        sql = f"INSERT INTO {table.name} ({', '.join(names)}) SELECT * FROM unnest({arrays})"
                        self._BULK_INSERTS[(table.name, names)] = sql
                    cursor.execute(sql, [[row.get(name) for row in rows] for name in names])
        except psycopg.IntegrityError:
            raise Conflict("A resource was written concurrently", "write-conflict") from None


def _current_during(period: tuple[datetime, datetime]) -> list[ColumnElement[bool]]:
    """Versions that were current at some moment of [low, high) (search.html, `_at`)."""
    low, high = period
    later = resource_version.alias("later")
    superseded_before = (
        select(later.c.version_id)
        .where(
            later.c.resource_type == resource_version.c.resource_type,
            later.c.id == resource_version.c.id,
            later.c.version_id > resource_version.c.version_id,
            later.c.last_updated <= low,
        )
        .exists()
    )
    return [resource_version.c.last_updated < high, ~superseded_before]


def _columns(stored: StoredVersion) -> dict[str, Any]:
    return {
        "resource_type": stored.resource_type,
        "id": stored.id,
        "version_id": stored.version_id,
        "last_updated": stored.last_updated,
        "deleted": stored.deleted,
        "content": stored.content,
    }


def _current_columns(stored: StoredVersion) -> dict[str, Any]:
    """The `resource` row: a version's columns and who owns it."""
    return {
        **_columns(stored),
        "owner_patient": stored.owner_patient,
        "owner_clinic": stored.owner_clinic,
        "contributor_clinic": stored.contributor_clinic,
    }


def _version(row: Any) -> StoredVersion:
    mapping = row._mapping
    owned = "owner_clinic" in mapping
    return StoredVersion(
        resource_type=mapping["resource_type"],
        id=mapping["id"],
        version_id=mapping["version_id"],
        last_updated=mapping["last_updated"],
        deleted=mapping["deleted"],
        content=mapping["content"],
        method=mapping["method"] if "method" in mapping else "",  # noqa: SIM401 - RowMapping.get is slow on a miss
        owner_patient=mapping["owner_patient"] if owned else None,
        owner_clinic=mapping["owner_clinic"] if owned else None,
        contributor_clinic=mapping["contributor_clinic"] if owned else None,
    )
