"""Re-encryption of stored resources under the current keys, and key usage (issue 5 point 9).

After a rotation (a new first key, store/protection.py) old envelopes stay readable; `reencrypt`
moves everything to the current keys so that the old ones can be dropped:

- every `resource` and `resource_version` row is read in clear and sealed again with the current
  encryption key (new nonces); rows written before field encryption existed, or before a national
  identifier system was added, are sealed the same way;
- every current resource holding protected values gets its index rows rebuilt (`index`, given by
  the caller, which knows the custom search parameters), so their keyed hashes use the current
  search-hash key and no clear value is left in an index table.

It works in batches, each one transaction (PostgreSQL: the batch's current rows locked, so a
concurrent write waits; a version row never changes once written). Writers meanwhile already
use the current keys, so running it while the server serves is safe.

`usage` counts what still uses a key id: envelopes in stored content, hashes in token rows.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Table, and_, func, or_, select, tuple_, update
from sqlalchemy.sql.elements import ColumnElement

from fhir_server.access import Visibility
from fhir_server.model.json import parse
from fhir_server.model.sensitive import envelope_kids, seal_content, secrets_of
from fhir_server.search.clauses import IndexRow
from fhir_server.store.protection import ENCRYPTION
from fhir_server.store.repository import Store, UnitOfWork
from fhir_server.store.schema import resource, resource_version, token_index

Index = Callable[[dict[str, Any]], list[IndexRow]]
SYSTEM = Visibility(unrestricted=True)


@dataclass
class Report:
    rows: int = 0  # rows read (both tables)
    resealed: int = 0  # rows whose content was written again
    reindexed: int = 0  # current resources whose index rows were rebuilt
    old_envelopes: dict[str, int] = field(default_factory=dict)  # key id -> envelopes found under it


def reencrypt(store: Store, index: Index, batch: int = 200) -> Report:
    """Everything under the current keys (module docstring)."""
    store.protection.reload()
    report = Report()
    for table, key in ((resource, ("resource_type", "id")), (resource_version, ("resource_type", "id", "version_id"))):
        after: tuple[Any, ...] | None = None
        while True:
            with store.unit_of_work(SYSTEM) as uow:
                rows = _page(uow, table, key, after, batch)
                for row in rows:
                    _one(uow, table, row, index if table is resource else None, report)
            if len(rows) < batch:
                break
            after = tuple(getattr(rows[-1], name) for name in key)
    return report


def _page(uow: UnitOfWork, table: Table, key: Sequence[str], after: tuple[Any, ...] | None, limit: int) -> list[Any]:
    columns = [table.c[name] for name in key]
    query = select(*columns, table.c.deleted, table.c.content).order_by(*columns).limit(limit)
    if after is not None:
        query = query.where(tuple_(*columns) > tuple_(*after))
    if uow.lock and table is resource:
        query = query.with_for_update()
    return list(uow.connection.execute(query))


def _one(uow: UnitOfWork, table: Table, row: Any, index: Index | None, report: Report) -> None:
    report.rows += 1
    if row.content is None:
        return
    protection = uow.protection
    current = protection.keys().encryption.current
    for kid in envelope_kids(row.content) - {current}:
        report.old_envelopes[kid] = report.old_envelopes.get(kid, 0) + 1
    clear = protection.reveal(row.resource_type, row.id, row.content)
    resealed = seal_content(clear, row.resource_type, row.id, protection.keys().encryption, protection.fields)
    if resealed != row.content:
        where = [table.c.resource_type == row.resource_type, table.c.id == row.id]
        if table is resource_version:
            where.append(table.c.version_id == row.version_id)
        uow.connection.execute(update(table).where(*where).values(content=resealed))
        report.resealed += 1
    if index is not None and not row.deleted and resealed is not clear:  # it holds protected values
        resource_json = parse(clear, max_depth=10_000)
        if secrets_of(resource_json, protection.fields):
            uow.replace_index(row.resource_type, row.id, index(resource_json))
            report.reindexed += 1


def usage(store: Store, purpose: str, kid: str) -> int:
    """How many stored rows still use key `kid`: contents with an envelope under it (encryption),
    or token rows with a hash under it (search-hash)."""
    with store.engine.connect() as connection:
        if purpose == ENCRYPTION:
            needle = f"enc:v1:{kid}:".encode()
            return sum(
                int(connection.execute(select(func.count()).where(_holds(store, table, needle))).scalar_one())
                for table in (resource, resource_version)
            )
        hashed = or_(token_index.c.code.like(f"hmac:{kid}:%"), token_index.c.code.like(f"%|hmac:{kid}:%"))
        return int(connection.execute(select(func.count()).where(and_(hashed))).scalar_one())


def _holds(store: Store, table: Table, needle: bytes) -> ColumnElement[bool]:
    """`table.content` contains `needle` (SQLite's LIKE does not read BLOBs; PostgreSQL's bytea does)."""
    if store.postgres:
        return table.c.content.op("LIKE", is_comparison=True)(b"%" + needle + b"%")  # bytea LIKE bytea
    return func.instr(table.c.content, needle) > 0
