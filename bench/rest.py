"""REST benchmark: `python -m bench.rest [--backend sqlite|postgresql|both] [--workers N] [--duration S]`.

Starts `fhir-server serve` as a subprocess on a throw-away database (SQLite in a temporary
directory; PostgreSQL in a new `fhir_bench_<random>` database, dropped afterwards) and measures,
with a lean asyncio keep-alive client: validated Patient creates/s (1 client, then N clients),
reads by id/s with p50/p99 latency, and Synthea transaction ingest in resources/s, as the local
operator or (`--as clinic`) as a clinic's backend service with bearer tokens. The table is printed
and written to bench/results/rest-<timestamp>.txt. See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report
from bench.clinic import BackendService, access_token, register
from bench.cpu import worker_pids
from bench.httpclient import Response
from bench.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    Server,
    postgres_database,
    postgres_reachable,
    running_server,
    sqlite_database,
)
from bench.workloads import (
    SYNTHEA_DIR,
    PatientRequests,
    Phase,
    Target,
    created_id,
    ingest,
    measure,
    read_requests,
    synthea_requests,
)

MAX_READ_IDS = 20_000


def _runner() -> Callable[[Coroutine[Any, Any, None]], None]:
    """uvloop when installed (it comes with uvicorn[standard]): the load generator costs less CPU."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run
    return uvloop.run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.rest", description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured phase (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each phase")
    parser.add_argument("--clients", type=int, default=8, help="concurrent create clients (default 8)")
    parser.add_argument("--connections", type=int, default=16, help="concurrent read connections (default 16)")
    parser.add_argument("--in-flight", type=int, default=4, help="Synthea bundles in flight (default 4)")
    parser.add_argument("--bundles", type=int, default=0, help="ingest only the N largest bundles (default all)")
    parser.add_argument("--synthea-dir", type=Path, default=SYNTHEA_DIR)
    parser.add_argument("--log-level", default="WARNING", help="the server's FHIR_LOG_LEVEL (default WARNING)")
    parser.add_argument(
        "--no-spread",
        dest="spread",
        action="store_false",
        help="open connections one by one without balancing them over the workers (see bench/spread.py)",
    )
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_ADMIN_URL, help="admin URL to create databases")
    parser.add_argument(
        "--reads-only",
        action="store_true",
        help="only the read phase (after the N-client creates that make the Patients to read): no ingest",
    )
    parser.add_argument(
        "--as",
        dest="principal",
        choices=["operator", "clinic"],
        default="operator",
        help="send the requests as the unauthenticated local operator (default) or as a clinic's backend"
        " service with a bearer token (token check, access policy, row-level security)",
    )
    return parser.parse_args(argv)


def show(backend: str, phase: Phase) -> None:
    rate = f"{phase.rate:,.0f} resources/s" if phase.units else f"{phase.rate:,.0f}/s"
    line = (
        f"  {backend:<10} {phase.name:<26} {phase.count:>7,} requests in {phase.elapsed:5.1f} s = {rate:<18}"
        f" p50 {phase.percentile(0.5):7.1f} ms  p99 {phase.percentile(0.99):7.1f} ms  errors {phase.errors}"
    )
    print(line + (f"\n    !!! first error: {phase.first_error}" if phase.errors else ""), flush=True)
    if phase.cpu is not None:
        print(f"    cpu: {phase.cpu.describe()}{report.spread_note(phase)}", flush=True)
        if phase.count:  # CPU per request: the figure a busy machine disturbs least
            per = 1000 * phase.elapsed / phase.count
            server, postgres = phase.cpu.server * per, phase.cpu.postgres * per
            print(f"    cpu per request: server {server:.3f} ms + postgres {postgres:.3f} ms", flush=True)


async def run_phases(
    server: Server, args: argparse.Namespace, run: report.BackendRun, service: BackendService | None = None
) -> None:
    """Creates (1 then N clients), Synthea ingest, then reads of the Patients created; as `service`
    when given, with a fresh access token per phase (tokens live 10 minutes).

    Warm-up phases are kept too (as `<key>-warmup`): their errors count, only their figures don't.
    """
    target = Target(server.port, server.process.pid, worker_pids(server.process.pid), args.spread)
    timing = (args.warmup, args.duration)
    ids: list[str] = []

    def keep_id(response: Response) -> None:
        if len(ids) < MAX_READ_IDS and (found := created_id(response)):
            ids.append(found)

    async def authorization() -> dict[str, str]:
        if service is None:
            return {}
        return {"Authorization": f"Bearer {await access_token(server.port, service)}"}

    def record(key: str, phase: Phase) -> None:
        run.phases[key] = phase
        if not key.endswith("-warmup") or phase.errors:
            show(run.backend, phase)

    async def closed(key: str, clients: int, requests: Callable[[], bytes], expect: int, name: str) -> None:
        on_ok = keep_id if expect == 201 else None
        warm, phase = await measure(target, clients, requests, timing, expect, on_ok, name)
        record(f"{key}-warmup", warm)
        record(key, phase)

    patients = PatientRequests(server.host)
    if not args.reads_only:
        patients.use(await authorization())
        await closed("create1", 1, patients, 201, "create, 1 client")
    patients.use(await authorization())
    await closed("createN", args.clients, patients, 201, f"create, {args.clients} clients")
    if not args.reads_only:
        bundles = synthea_requests(server.host, args.synthea_dir, headers=await authorization())
        bundles = bundles[: args.bundles or None]
        warm_bundles = bundles[-args.in_flight :]
        record("ingest-warmup", await ingest(target, warm_bundles, args.in_flight, "ingest warm-up"))
        record("ingest", await ingest(target, bundles, args.in_flight))
    if not ids:
        raise RuntimeError("no Patient was created, so there is nothing to read")
    reads = read_requests(server.host, ids, headers=await authorization())
    await closed("read", args.connections, reads, 200, f"read, {args.connections} connections")


def run_backend(backend: str, args: argparse.Namespace, stamp: str) -> report.BackendRun:
    run = report.BackendRun(backend)
    if backend == "postgresql" and (reason := postgres_reachable(args.postgres_url)):
        run.problem = f"SKIPPED, PostgreSQL unreachable at {args.postgres_url}: {reason}"
        return run
    database = sqlite_database() if backend == "sqlite" else postgres_database(args.postgres_url)
    report.RESULTS_DIR.mkdir(exist_ok=True)
    log_path = report.RESULTS_DIR / f"rest-{stamp}-{backend}-server.log"
    print(f"{backend}: starting the server ({args.workers} workers, log {log_path.name})", flush=True)
    try:
        with database as url, running_server(url, args.workers, args.log_level, log_path) as server:
            service = register(url) if args.principal == "clinic" else None
            if service is not None:
                print(f"{backend}: as clinic {service.clinic}, backend service {service.client_id}", flush=True)
            _runner()(run_phases(server, args, run, service))
    except Exception as exc:  # a failed backend is reported loudly; the other one still runs
        run.problem = f"FAILED: {type(exc).__name__}: {exc} (server log: {log_path})"
    return run


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backends = ["sqlite", "postgresql"] if args.backend == "both" else [args.backend]
    settings = (
        f"workers={args.workers}, {args.duration:g} s per phase after {args.warmup:g} s warm-up, "
        f"server log level {args.log_level}" + (", as a clinic's backend service" if args.principal == "clinic" else "")
    )
    print(report.heading(settings), flush=True)
    runs = [run_backend(backend, args, stamp) for backend in backends]
    table_rows = report.rows(args.clients, args.connections, args.in_flight)
    text = "\n".join(
        [
            report.heading(settings),
            "",
            report.table(runs, table_rows),
            "",
            *report.cpu_lines(runs),
            *report.problem_lines(runs),
        ]
    )
    print("\n" + text)
    print(f"\nwritten to {report.write(text, stamp)}")
    return 1 if any(run.errors or run.problem for run in runs) else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
