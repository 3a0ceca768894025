"""Reindexing after a custom SearchParameter (search.html#custom): a job, in batches.

Any worker process picks the oldest unfinished job, indexes the next batch of resources of the
parameter's base types for that parameter only, records its position and progress, and commits;
so a job survives restarts and several workers share the work.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from fhir_server.access import Visibility
from fhir_server.interactions import custom_params
from fhir_server.model.json import parse
from fhir_server.model.sensitive import SensitiveFields, secrets_of
from fhir_server.search.clauses import IndexRow
from fhir_server.search.extract import index_rows
from fhir_server.store.repository import Store

BATCH = 500
SYSTEM = Visibility(unrestricted=True)  # jobs run for the platform, not for a caller
log = logging.getLogger("fhir_server.jobs")


def work_once(store: Store) -> bool:
    """One batch of the oldest unfinished job; False when there is nothing to do."""
    finished = False
    with store.unit_of_work(SYSTEM) as uow:
        job = uow.claim_job()
        if job is None:
            return False
        custom_params.sync(uow, force=True)
        payload: dict[str, Any] = dict(job.payload)
        types: list[str] = payload["types"]
        total = job.total if job.total is not None else sum(uow.count_current(kind) for kind in types)
        position = payload.setdefault("position", 0)
        after = payload.get("after")
        if position < len(types):
            page = uow.current_page(types[position], after, BATCH)
            rows = {stored.id: _param_rows(uow.protection.fields, stored.content, payload["code"]) for stored in page}
            if rows:
                uow.replace_param_index(types[position], payload["code"], rows)
            if len(page) == BATCH:
                payload["after"] = page[-1].id
            else:  # this type is done: the next one starts from its beginning
                payload["after"], payload["position"] = None, position + 1
            processed = job.processed + len(page)
        else:
            processed = job.processed
        finished = payload["position"] >= len(types)
        uow.job_progress(job.id, "done" if finished else "running", processed, total, payload)
    if finished:
        with store.unit_of_work(SYSTEM, read_only=True) as uow:
            custom_params.sync(uow, force=True)
    return True


def _param_rows(fields: SensitiveFields, content: bytes | None, code: str) -> list[IndexRow]:
    """The index rows of one parameter of a stored resource (protected values hashed or left out)."""
    resource = parse(content or b"{}")
    return [row for row in index_rows(resource, secrets=secrets_of(resource, fields)) if row.param == code]


def start_worker(store: Store, interval: float = 0.5) -> threading.Event:
    """A daemon thread working through jobs; set the returned event to stop it."""
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                busy = work_once(store)
            except Exception:  # a failing batch must not kill the worker; it is retried
                log.exception("job batch failed")
                busy = False
            if not busy:
                stop.wait(interval)

    threading.Thread(target=loop, name="fhir-jobs", daemon=True).start()
    return stop
