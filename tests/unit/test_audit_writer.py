"""Group commit of AuditEvents (interactions/audit_writer.py): a request alone is committed at
once; requests handed over while a transaction is being written share the next one; each returns
once its own events are committed; a failed transaction fails each of its requests, and a request
whose events cannot be built fails alone."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from fhir_server.interactions import audit_writer
from fhir_server.interactions.audit_writer import GroupWriter


class _Uow:
    def __init__(self, written: list[str]) -> None:
        self.written = written

    def create(self, stored: Any) -> None:
        self.written.append(stored.id)

    def replace_index(self, *args: Any, **kwargs: Any) -> None:
        pass

    def flush_bulk(self) -> None:
        pass


class _Store:
    """Records each committed transaction's events; the first one waits for `release`."""

    postgres = False  # one writer thread

    def __init__(self, fail: bool = False) -> None:
        self.committed: list[list[str]] = []
        self.entered = threading.Event()
        self.release = threading.Event()
        self.fail = fail
        self.transactions = 0

    @contextmanager
    def unit_of_work(self, visibility: Any, read_only: bool = False) -> Iterator[_Uow]:
        assert visibility.unrestricted and not read_only
        self.transactions += 1
        self.entered.set()
        assert self.release.wait(5)
        written: list[str] = []
        yield _Uow(written)
        if self.fail:
            raise RuntimeError("database unreachable")
        self.committed.append(written)


class _Stored:
    resource_type = "AuditEvent"

    def __init__(self, name: str) -> None:
        self.id = name


def _make(*names: str) -> Any:
    return lambda: [(_Stored(name), []) for name in names]


def test_a_request_alone_is_committed_at_once() -> None:
    store = _Store()
    store.release.set()
    GroupWriter(store).write(_make("a", "b"))  # type: ignore[arg-type]
    assert store.committed == [["a", "b"]]


def test_requests_handed_over_during_a_commit_share_the_next_one() -> None:
    store = _Store()
    writer = GroupWriter(store)  # type: ignore[arg-type]
    first = writer.submit(_make("first"))
    assert store.entered.wait(5)  # the first transaction is being written
    others = [writer.submit(_make(f"r{n}")) for n in range(5)]
    store.release.set()
    for done in [first, *others]:
        assert done.result(5) is None
    assert store.committed == [["first"], [f"r{n}" for n in range(5)]]


def test_the_event_loop_awaits_its_commit_without_a_thread() -> None:
    store = _Store()
    store.release.set()
    writer = GroupWriter(store)  # type: ignore[arg-type]

    async def reads() -> None:
        await asyncio.gather(*(writer.write_async(_make(f"r{n}")) for n in range(3)))

    asyncio.run(reads())
    assert sorted(name for names in store.committed for name in names) == ["r0", "r1", "r2"]


def test_each_request_of_a_failed_transaction_fails_and_the_next_starts_afresh() -> None:
    store = _Store(fail=True)
    writer = GroupWriter(store)  # type: ignore[arg-type]
    first = writer.submit(_make("first"))
    assert store.entered.wait(5)
    others = [writer.submit(_make(f"r{n}")) for n in range(3)]
    store.release.set()
    for done in [first, *others]:
        with pytest.raises(RuntimeError, match="database unreachable"):
            done.result(5)
    store.fail = False
    writer.write(_make("later"))
    assert store.committed == [["later"]]


def test_a_request_whose_events_cannot_be_built_fails_alone() -> None:
    store = _Store()
    store.release.set()
    writer = GroupWriter(store)  # type: ignore[arg-type]

    def broken() -> Any:
        raise ValueError("cannot build")

    with pytest.raises(ValueError):
        writer.write(broken)
    writer.write(_make("fine"))
    assert store.committed == [["fine"]]


def test_an_idle_writer_thread_ends_and_the_next_request_starts_another(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(audit_writer, "IDLE_SECONDS", 0.05)
    store = _Store()
    store.release.set()
    writer = GroupWriter(store)  # type: ignore[arg-type]
    writer.write(_make("a"))
    deadline = time.monotonic() + 5
    while writer._threads and time.monotonic() < deadline:
        time.sleep(0.01)
    assert writer._threads == 0
    writer.write(_make("b"))
    assert store.committed == [["a"], ["b"]]
