"""An AuditEvent for every FHIR interaction and operation (DESIGN.md section 1, "Accountability";
IHE BALP for the content, built by fhir_server/audit).

One entry point: `audited(env, interaction, call, *args)` runs an interaction (the route layer
wraps every one with it) with a per-call `Trail`, and one hook: `written(...)`, which every write
passes through (interactions/writing.py).

- A change is audited in the same unit of work as the change (`written` stores the event beside
  the new version): a rolled-back write leaves no success event, a committed one always has it.
- Reads, searches, history, operations and writes that changed nothing are audited in a small
  transaction of their own right after the interaction (a read-only unit of work cannot write;
  requests auditing at the same moment share it: audit_writer.py), committed before the answer
  leaves the server; if that fails, the request fails.
- A failure (any error out of the interaction: 400, 403, 404, 409, 412, 5xx) is audited in its
  own transaction with the failure outcome; the error then propagates unchanged.
- A batch's entries are audited one by one (`begin_entry`/`entry_done`/`entry_failed`), each
  with its interaction and `batch` as a second subtype: a change in its entry's transaction, a
  read or a failure in the audit transaction after the batch. A
  transaction is one event per patient it concerns (and one for what concerns no patient), its
  resources as entities with the lifecycle step done to each (`transaction_done`), written in the
  transaction: one event for what may be hundreds of entries, and no patient's event names
  another patient's resources. A failed transaction leaves one failure event.

AuditEvents are stored as ordinary resources (search and the Patient compartment work on them),
and are read-only through the API (`refuse_audit_write`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhir_server.access import Visibility
from fhir_server.audit import AuditRecord, Touched, audit_event
from fhir_server.audit import codes as audit_codes
from fhir_server.errors import FhirError, MethodNotAllowed
from fhir_server.interactions import writing
from fhir_server.interactions.audit_subjects import resource_patients, search_patients, stored_patients, valid_id
from fhir_server.interactions.audit_writer import writer_for
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.ownership import owners
from fhir_server.search.indexing import index_rows
from fhir_server.search.protected import redacted_query
from fhir_server.store.repository import StoredVersion, UnitOfWork

AUDIT_EVENT = "AuditEvent"
_WRITE_ACTIONS = {"POST": "C", "DELETE": "D"}  # by StoredVersion.method; PUT and PATCH update
_UNRESTRICTED = Visibility(unrestricted=True)
_CURRENT: ContextVar[Trail | None] = ContextVar("audit_trail", default=None)
log = logging.getLogger("fhir_server.audit")


@dataclass(frozen=True)
class Interaction:
    """What the client asked for: its restful-interaction code and what it names."""

    subtype: str
    resource_type: str | None = None
    resource_id: str | None = None
    query: str | None = None  # the search request or conditional criteria, as a relative URL
    params: tuple[tuple[str, str], ...] = ()  # search parameters (to find the patients named)
    compartment: tuple[str, str] | None = None
    operation: str | None = None


class Trail:
    """The audit state of one audited call: the interaction running (a Bundle's current entry),
    how many events it produced, and the events waiting for their own transaction."""

    def __init__(self, env: Env, interaction: Interaction) -> None:
        self.env = env
        self.interaction = interaction
        self.current = interaction
        self.produced = 0  # events of the current scope (the call, or a Bundle entry)
        self.any_produced = False
        self.pending: list[AuditRecord] = []
        self.finished = False
        self.collecting = interaction.subtype == "transaction"
        self.collected: list[tuple[Touched, tuple[str, ...]]] = []  # a transaction's resources
        access = env.access  # whose record its events are, as auth/policy.py's acting clinic
        clinic = access.clinic_id if access.kind in ("clinic-member", "backend-service") else None
        self._recorded_for = Visibility(acting_clinic=clinic)

    @property
    def bundle(self) -> str | None:
        kind = self.interaction.subtype
        return kind if kind in ("batch", "transaction") and self.current is not self.interaction else None

    def record(self, record: AuditRecord, uow: UnitOfWork | None = None) -> None:
        """Stores `record` in `uow` (the change's own transaction), or keeps it for `flush`."""
        self.produced += 1
        self.any_produced = True
        if uow is None:
            self.pending.append(record)
            return
        stored, rows = self._event(record)
        uow.create(stored)
        uow.replace_index(AUDIT_EVENT, stored.id, rows, fresh=True)

    def collect(self, touched: Touched, patients: tuple[str, ...]) -> None:
        """A resource a transaction's entry touched, for `transaction_records`."""
        self.produced += 1
        self.collected.append((touched, patients))

    def transaction_records(self) -> list[AuditRecord]:
        """One record per patient of the transaction (its resources only), and one for the
        resources of no patient (or for the transaction itself, when it touched nothing else)."""
        groups: dict[str | None, list[Touched]] = {}
        for touched, patients in self.collected:
            for patient in patients or (None,):
                groups.setdefault(patient, []).append(touched)
        if not groups:
            groups[None] = []
        return [
            AuditRecord("transaction", "E", tuple(touched), (patient,) if patient else ())
            for patient, touched in groups.items()
        ]

    def flush(self) -> None:
        """The waiting events, in a transaction of their own (shared with other requests' that
        are flushing at the same moment: audit_writer.py); returns once they are committed."""
        pending, self.pending = self.pending, []
        if pending:
            writer_for(self.env.store).write(lambda: [self._event(record) for record in pending])

    def _event(self, record: AuditRecord) -> tuple[StoredVersion, list[Any]]:
        env, moment, event_id = self.env, writing.utc_now(), writing.new_id()
        event = audit_event(
            record, env.access, recorded=writing.instant(moment), server=env.base_url, request_id=env.request_id
        )
        content = writing.stamp(event, event_id, 1, moment)
        owned = owners(event, event_id, self._recorded_for, None)  # a clinic's request: that clinic's record
        stored = StoredVersion(AUDIT_EVENT, event_id, 1, moment, False, content, "POST", **owned)
        return stored, index_rows(event)

    def summary(self, interaction: Interaction, result: Result | None) -> AuditRecord:
        """The event of an interaction that changed nothing: what it read, or named."""
        stored = result.version if result is not None else None
        touched: tuple[Touched, ...]
        if stored is not None:
            touched = (Touched(stored.resource_type, stored.id, stored.version_id),)
            patients = stored_patients(stored.resource_type, stored.id, stored.content)
        else:
            touched, patients = _named(interaction), self._patients(interaction)
        return AuditRecord(
            interaction.subtype,
            audit_codes.ACTIONS.get(interaction.subtype, "E"),
            touched,
            patients,
            _recordable(interaction.query),
            interaction.operation,
            self.bundle,
        )

    def failure(self, interaction: Interaction, error: BaseException) -> AuditRecord:
        status = error.status if isinstance(error, FhirError) else 500
        code = error.error_code if isinstance(error, FhirError) else "internal-error"
        message = error.message if isinstance(error, FhirError) else "Internal error"
        failed = audit_codes.MINOR_FAILURE if status < 500 else audit_codes.SERIOUS_FAILURE
        return AuditRecord(
            interaction.subtype,
            audit_codes.ACTIONS.get(interaction.subtype, "E"),
            _named(interaction),
            self._patients(interaction),
            _recordable(interaction.query),
            interaction.operation,
            self.bundle,
            outcome=failed,
            outcome_desc=f"{status} {code}: {message}",
        )

    def _patients(self, interaction: Interaction) -> tuple[str, ...]:
        kind, named = interaction.resource_type, interaction.resource_id
        if kind == "Patient" and valid_id(named):
            return (str(named),)
        if interaction.subtype.startswith("search") or interaction.subtype.startswith("history"):
            patients = search_patients(self.env.access, kind, interaction.params, interaction.compartment)
            if interaction.subtype == "history-instance" and kind and valid_id(named):
                patients = tuple(dict.fromkeys((*patients, *self._current_patients(kind, str(named)))))
            return patients
        return ()

    def _current_patients(self, resource_type: str, resource_id: str) -> tuple[str, ...]:
        with self.env.store.unit_of_work(_UNRESTRICTED, read_only=True) as uow:
            current = uow.current(resource_type, resource_id)
        return stored_patients(resource_type, resource_id, current.content if current is not None else None)


def _named(interaction: Interaction) -> tuple[Touched, ...]:
    kind = interaction.resource_type
    if kind is None or interaction.subtype.startswith(("search", "history-type")):
        return ()
    named = interaction.resource_id
    return (Touched(kind, named if valid_id(named) else None),)


def audited(env: Env, interaction: Interaction, call: Callable[..., Result], *args: Any) -> Result:
    """Runs `call(*args)`, an interaction, and audits it (see the module docstring)."""
    if not env.settings.audit:
        return call(*args)
    trail = env.trail = Trail(env, interaction)
    token = _CURRENT.set(trail)
    try:
        result = call(*args)
    except Exception as error:
        _record_failure(trail, interaction, error)
        raise
    finally:
        _CURRENT.reset(token)
    if not trail.any_produced:
        trail.record(trail.summary(interaction, result))
    trail.flush()
    trail.finished = True
    return result


async def audit_read(env: Env, interaction: Interaction, result: Result) -> None:
    """Audits a read that already succeeded without `audited` (the lean read path, on the event
    loop): the event is built and committed by the writer thread, and awaited."""
    if env.settings.audit:
        trail = Trail(env, interaction)
        await writer_for(env.store).write_async(lambda: [trail._event(trail.summary(interaction, result))])


def audit_failure(env: Env, interaction: Interaction, error: BaseException) -> None:
    """Audits a request that failed before its interaction ran (an unknown type, a bad body)."""
    if env.settings.audit and (env.trail is None or not env.trail.finished):
        trail = env.trail or Trail(env, interaction)  # what the interaction knew, when it had begun
        _record_failure(trail, trail.interaction, error)


def _record_failure(trail: Trail, interaction: Interaction, error: BaseException) -> None:
    trail.finished = True
    trail.current = trail.interaction  # a failed transaction is one failure, not its last entry's
    try:
        trail.record(trail.failure(interaction, error))
        trail.flush()
    except Exception:  # the failure itself is what the client must hear about
        log.exception("could not record the AuditEvent of a failed request", extra={"request_id": trail.env.request_id})


# --- the write hook and Bundle entries --------------------------------------------------------


def written(
    uow: UnitOfWork,
    stored: StoredVersion,
    resource: dict[str, Any] | None = None,
    previous: StoredVersion | None = None,
) -> None:
    """Every write's hook (writing.py): audits the new version in its own unit of work; refuses
    any AuditEvent written other than by this module."""
    if stored.resource_type == AUDIT_EVENT:
        refuse_audit_write(AUDIT_EVENT)
    trail = _CURRENT.get()
    if trail is None:
        return
    if resource is not None:
        patients = resource_patients(stored.resource_type, stored.id, resource)
    else:  # a deletion: the patients of the version it ends
        patients = stored_patients(stored.resource_type, stored.id, previous.content if previous else None)
    action = _WRITE_ACTIONS.get(stored.method, "U")
    if trail.collecting:
        trail.collect(Touched(stored.resource_type, stored.id, stored.version_id, action), patients)
        return
    current = trail.current
    record = AuditRecord(
        current.subtype,
        action,
        (Touched(stored.resource_type, stored.id, stored.version_id),),
        patients,
        _recordable(current.query),
        current.operation,
        trail.bundle,
    )
    trail.record(record, uow)


def begin_entry(subtype: str, resource_type: str | None, resource_id: str | None, query: str | None) -> None:
    """A Bundle entry starts: its events carry its own interaction."""
    trail = _CURRENT.get()
    if trail is not None:
        trail.current = Interaction(subtype, resource_type or None, resource_id, query)
        trail.produced = 0


def entry_done(result: Result) -> None:
    """A Bundle entry succeeded: in a batch, audits it unless its writes already were (after its
    unit of work, in the batch's audit transaction); in a transaction, notes what it read."""
    trail = _CURRENT.get()
    if trail is None or trail.produced:
        return
    if not trail.collecting:
        trail.record(trail.summary(trail.current, result))
    elif result.version is not None:  # a read, or a conditional create that found its match
        stored = result.version
        touched = Touched(stored.resource_type, stored.id, stored.version_id, "R")
        trail.collect(touched, stored_patients(stored.resource_type, stored.id, stored.content))


def transaction_done(uow: UnitOfWork) -> None:
    """A transaction's entries all succeeded: its events, in its own unit of work."""
    trail = _CURRENT.get()
    if trail is not None and trail.collecting:
        uow.visibility = _UNRESTRICTED  # every entry has run under its own; an empty Bundle had none
        for record in trail.transaction_records():
            trail.record(record, uow)


def entry_failed(error: FhirError) -> None:
    """A batch entry failed (its unit of work rolled back): audits the failure."""
    trail = _CURRENT.get()
    if trail is not None:
        trail.record(trail.failure(trail.current, error))


def refuse_audit_write(resource_type: str | None) -> None:
    """AuditEvents are the server's record: no client creates, updates, patches or deletes one."""
    if resource_type == AUDIT_EVENT:
        raise MethodNotAllowed(
            "AuditEvent resources are recorded by the server and cannot be created, changed or deleted",
            "audit-event-read-only",
        )


def _recordable(query: str | None) -> str | None:
    """The request as an AuditEvent may hold it: values of parameters that may carry protected
    fields (phone, email, national ids; search/protected.py) replaced by `***`."""
    if not query:
        return query
    path, separator, search = query.partition("?")
    if not separator:
        return query
    pairs = redacted_query(parse_qsl(search, keep_blank_values=True))
    return f"{path}?{urlencode(pairs)}"
