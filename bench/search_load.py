"""Loading the search data set straight through the store, with every search parameter indexed.

No HTTP and no validation: each loader process generates its share of patients (search_data.py)
and writes them with `fhir_server.interactions.writing.write_new` (server-assigned meta, JSON
serialisation, index rows of every parameter) inside `Store.unit_of_work`, about `batch`
resources per transaction: the same statements a create runs, without the request around it.
Each process reports where its time went: generating, `write_new` (index extraction and
serialisation, pure Python), and the unit of work's flush and commit (the executemany inserts,
client side and PostgreSQL together).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpu import CpuUse, snapshot, usage
from bench.search_data import OBSERVATIONS_PER_PATIENT, generate, load_templates

_state: dict[str, Any] = {}


@dataclass
class Timings:
    """Seconds spent by the loader processes, summed over processes."""

    generate: float = 0.0
    write_new: float = 0.0  # index rows + stamped JSON, queued in the unit of work
    commit: float = 0.0  # flush (executemany inserts) and COMMIT, wall time
    commit_cpu: float = 0.0  # of which the loader's own CPU (SQLAlchemy, psycopg)

    def add(self, other: Timings) -> None:
        self.generate += other.generate
        self.write_new += other.write_new
        self.commit += other.commit
        self.commit_cpu += other.commit_cpu

    @property
    def total(self) -> float:
        return self.generate + self.write_new + self.commit


@dataclass
class LoadResult:
    patients: int = 0
    resources: int = 0
    elapsed: float = 0.0
    processes: int = 1
    batch: int = 0
    timings: Timings = field(default_factory=Timings)
    cpu: CpuUse | None = None
    migrate_seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.resources / self.elapsed if self.elapsed else 0.0


def _init(database_url: str, synthea_dir: Path, seed: int) -> None:
    # Interrupts are the parent's business: it terminates the pool (SIGTERM) and drops the database.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    from fhir_server.store.engine import make_engine
    from fhir_server.store.repository import Store

    _state["store"] = Store(make_engine(database_url, pool_size=1))
    _state["templates"] = load_templates(synthea_dir)
    _state["seed"] = seed


def _load_range(bounds: tuple[int, int]) -> tuple[int, int, Timings]:
    """Patients [start, stop) in one transaction; (patients, resources, timings)."""
    from fhir_server.access import Visibility
    from fhir_server.interactions.writing import write_new

    store, templates, seed = _state["store"], _state["templates"], _state["seed"]
    timings = Timings()
    clock = time.perf_counter
    started = clock()
    resources: list[dict[str, Any]] = []
    for n in range(*bounds):
        generated = generate(templates, seed, n)
        resources.append(generated.patient)
        resources.extend(generated.observations)
    timings.generate = clock() - started
    with store.unit_of_work(Visibility(unrestricted=True)) as uow:
        started = clock()
        for resource in resources:
            write_new(uow, resource, resource["id"])
        written = clock()
        cpu = time.process_time()
    timings.write_new = written - started
    timings.commit = clock() - written
    timings.commit_cpu = time.process_time() - cpu
    return bounds[1] - bounds[0], len(resources), timings


def migrate(database_url: str) -> float:
    from fhir_server.store.engine import make_engine
    from fhir_server.store.migrate import upgrade

    started = time.perf_counter()
    engine = make_engine(database_url, pool_size=1)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    return time.perf_counter() - started


def _interruptible(results: Any) -> Iterator[Any]:
    """The pool's results, waited for in short steps so that Ctrl-C stops the load promptly."""
    while True:
        try:
            yield results.next(timeout=0.5)
        except multiprocessing.TimeoutError:
            continue
        except StopIteration:
            return


def load(
    database_url: str,
    synthea_dir: Path,
    seed: int,
    patients: int,
    processes: int,
    batch: int,
    progress_every: float = 15.0,
) -> LoadResult:
    """Migrates the empty database, then loads `patients` generated patients with `processes`."""
    result = LoadResult(processes=processes)
    result.migrate_seconds = migrate(database_url)
    per_batch = max(1, round(batch / (1 + OBSERVATIONS_PER_PATIENT)))
    result.batch = per_batch * (1 + OBSERVATIONS_PER_PATIENT)
    tasks = [(start, min(start + per_batch, patients)) for start in range(0, patients, per_batch)]
    context = multiprocessing.get_context("fork")
    before = snapshot(os.getpid())
    started = last = time.perf_counter()
    with context.Pool(processes, _init, (database_url, synthea_dir, seed)) as pool:
        for done, count, timings in _interruptible(pool.imap_unordered(_load_range, tasks)):
            result.patients += done
            result.resources += count
            result.timings.add(timings)
            now = time.perf_counter()
            if now - last >= progress_every:
                last = now
                rate = result.resources / (now - started)
                left = (patients - result.patients) * (1 + OBSERVATIONS_PER_PATIENT) / rate if rate else 0
                print(
                    f"  loaded {result.patients:,}/{patients:,} patients, {result.resources:,} resources,"
                    f" {rate:,.0f} resources/s, about {left:.0f} s to go",
                    flush=True,
                )
        result.elapsed = time.perf_counter() - started
        result.cpu = usage(before, snapshot(os.getpid()))
    return result


def describe(result: LoadResult) -> list[str]:
    t = result.timings
    busy = t.total or 1.0
    lines = [
        f"load: {result.patients:,} patients + {result.resources - result.patients:,} Observations ="
        f" {result.resources:,} resources in {result.elapsed:.1f} s = {result.rate:,.0f} resources/s"
        f" ({result.processes} loader processes, {result.batch:,} resources per transaction;"
        f" schema migration {result.migrate_seconds:.1f} s before)",
        f"  loader time (summed over processes): generate {t.generate:.1f} s ({t.generate / busy:.0%}),"
        f" write_new {t.write_new:.1f} s ({t.write_new / busy:.0%}),"
        f" flush+commit {t.commit:.1f} s ({t.commit / busy:.0%}; loader CPU in it {t.commit_cpu:.1f} s)",
    ]
    if result.cpu is not None:
        cpu = result.cpu
        per = result.elapsed / max(result.resources, 1) * 1000  # ms of wall time per resource
        loaders, postgres, cores = cpu.server * per, cpu.postgres * per, os.cpu_count() or 1
        lines.append(
            f"  cpu: loaders {cpu.server:.2f} + postgres {cpu.postgres:.2f} + other {cpu.other:.2f} cores;"
            f" CPU per resource: loaders {loaders:.2f} ms + postgres {postgres:.2f} ms"
            f" (at most {cores * 1000 / (loaders + postgres or 1):,.0f} resources/s on {cores} idle cores)"
        )
    return lines
