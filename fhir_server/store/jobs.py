"""Jobs in the database, claimable by any worker process (DESIGN.md section 4, "long work runs
as jobs in the database"). On PostgreSQL a claim skips rows other workers hold
(`FOR UPDATE SKIP LOCKED`); SQLite runs one writer at a time anyway.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from fhir_server.store.schema import job


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    state: str
    payload: dict[str, Any]
    processed: int
    total: int | None
    message: str | None


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _job(row: Any) -> Job:
    values = row._mapping
    return Job(
        values["id"],
        values["kind"],
        values["state"],
        json.loads(values["payload"]),
        values["processed"],
        values["total"],
        values["message"],
    )


def enqueue(connection: Connection, kind: str, payload: dict[str, Any]) -> str:
    job_id = str(uuid.uuid4())
    moment = _now()
    connection.execute(
        insert(job).values(
            id=job_id,
            kind=kind,
            state="queued",
            payload=json.dumps(payload),
            processed=0,
            total=None,
            message=None,
            created=moment,
            updated=moment,
        )
    )
    return job_id


def claim(connection: Connection, postgres: bool) -> Job | None:
    """The oldest unfinished job, locked for this transaction (running jobs continue where they were)."""
    query = select(job).where(job.c.state.in_(("queued", "running"))).order_by(job.c.created).limit(1)
    if postgres:
        query = query.with_for_update(skip_locked=True)
    row = connection.execute(query).first()
    return _job(row) if row else None


def progress(
    connection: Connection,
    job_id: str,
    *,
    state: str,
    processed: int,
    total: int | None,
    payload: dict[str, Any],
    message: str | None = None,
) -> None:
    connection.execute(
        update(job)
        .where(job.c.id == job_id)
        .values(
            state=state, processed=processed, total=total, payload=json.dumps(payload), message=message, updated=_now()
        )
    )


def get(connection: Connection, job_id: str) -> Job | None:
    row = connection.execute(select(job).where(job.c.id == job_id)).first()
    return _job(row) if row else None


def of_kind(connection: Connection, kind: str) -> list[Job]:
    rows = connection.execute(select(job).where(job.c.kind == kind).order_by(job.c.created))
    return [_job(row) for row in rows]


def finished_payloads(connection: Connection, kind: str) -> list[dict[str, Any]]:
    rows = connection.execute(select(job.c.payload).where(job.c.kind == kind, job.c.state == "done"))
    return [json.loads(row.payload) for row in rows]
