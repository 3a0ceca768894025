"""Group commit of the AuditEvents written in a transaction of their own (reads, searches,
operations, failures).

Each such event is committed before its request is answered, and a transaction costs far more
than its rows: round trips and a WAL flush on PostgreSQL, the write lock and the pages of every
table and index touched on SQLite. So writer threads of the store (one on SQLite, whose writers
take turns anyway; two on PostgreSQL, so that one commits while the other builds) commit what the
requests of the process have handed over since, in one transaction: a request alone is written at
once; under load, each commit carries many requests' events. A request waits for its own commit
(`write` in a worker thread, `write_async` on the event loop, which holds no thread meanwhile). A
failed transaction fails each request whose events were in it; the next one starts afresh.

A transaction's rows go out as one statement per table, all pipelined (`UnitOfWork.flush_bulk`).
An event is committed (synchronous commit) before its request is answered, so a crash loses no
event of an answered request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

from fhir_server.access import Visibility
from fhir_server.store.repository import Store, StoredVersion

Event = tuple[StoredVersion, list[Any]]  # a stored AuditEvent version and its index rows
Make = Callable[[], Sequence[Event]]  # builds a request's events (in the writer thread)
_UNRESTRICTED = Visibility(unrestricted=True)
IDLE_SECONDS = 30.0
log = logging.getLogger("fhir_server.audit")


class GroupWriter:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._ready = threading.Condition()
        self._queue: list[tuple[Make, Future[None]]] = []
        self._threads = 0  # running writer threads
        self._idle = 0  # of which waiting for work
        self._max_threads = 2 if store.postgres else 1

    def write(self, make: Make) -> None:
        """Builds and commits a request's events; returns once they are committed."""
        self.submit(make).result()

    async def write_async(self, make: Make) -> None:
        await asyncio.wrap_future(self.submit(make))

    def submit(self, make: Make) -> Future[None]:
        done: Future[None] = Future()
        with self._ready:
            self._queue.append((make, done))
            if self._idle:
                self._ready.notify()
            elif self._threads < self._max_threads:
                self._threads += 1
                threading.Thread(target=self._run, name="audit-writer", daemon=True).start()
        return done

    def _run(self) -> None:
        while True:
            with self._ready:
                if not self._queue:
                    self._idle += 1
                    self._ready.wait(IDLE_SECONDS)
                    self._idle -= 1
                if not self._queue:  # idle: the thread ends (a later request starts another)
                    self._threads -= 1
                    return
                batch, self._queue = self._queue, []
            self._commit(batch)

    def _commit(self, batch: list[tuple[Make, Future[None]]]) -> None:
        built: list[tuple[Sequence[Event], Future[None]]] = []
        for make, done in batch:
            try:
                built.append((make(), done))
            except Exception as error:  # that request fails alone
                done.set_exception(error)
        if not built:
            return
        try:
            with self._store.unit_of_work(_UNRESTRICTED) as uow:
                for events, _ in built:
                    for stored, rows in events:
                        uow.create(stored)
                        uow.replace_index(stored.resource_type, stored.id, rows, fresh=True)
                uow.flush_bulk()  # every table's rows in one statement, all in one round trip
        except Exception as error:  # each request of the transaction fails with it
            log.exception("could not commit AuditEvents")
            for _, done in built:
                done.set_exception(error)
            return
        for _, done in built:
            done.set_result(None)


_WRITERS: weakref.WeakKeyDictionary[Store, GroupWriter] = weakref.WeakKeyDictionary()
_WRITERS_LOCK = threading.Lock()


def writer_for(store: Store) -> GroupWriter:
    """The one group writer of a store (of an application), made on first use."""
    writer = _WRITERS.get(store)
    if writer is None:
        with _WRITERS_LOCK:
            writer = _WRITERS.setdefault(store, GroupWriter(store))
    return writer
