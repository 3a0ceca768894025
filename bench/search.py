"""Search benchmark: `python -m bench.search [--patients N] [--workers N] [--duration S]`.

Builds a throw-away PostgreSQL database (`fhir_bench_<random>`, dropped at the end) holding
`--patients` Patients (default 100,000) with 20 Observations each, generated from the Synthea
Bundles (search_data.py) and loaded straight through the store with every search parameter
indexed (search_load.py); reports the load rate, index rows per resource and table sizes; then
starts `fhir-server serve --workers 2` on it and measures search latency (p50, p95; one client)
and throughput (8 and 16 connections) with values varied per request (search_queries.py); and
explains the slowest search's SQL (search_explain.py). The table is printed and written to
bench/results/search-<timestamp>.txt. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import signal
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from bench import search_report as report
from bench.cpu import worker_pids
from bench.rest import _runner
from bench.search_data import OBSERVATIONS_PER_PATIENT, code_frequencies, load_templates, sample_patients
from bench.search_explain import explain
from bench.search_load import describe, load
from bench.search_queries import Query, build_queries, deep_pages, sequential, verify
from bench.server import (
    DEFAULT_POSTGRES_ADMIN_URL,
    Server,
    postgres_database,
    postgres_reachable,
    running_server,
)
from bench.workloads import SYNTHEA_DIR, Phase, Target, measure

SAMPLE_PATIENTS = 1000  # patients regenerated to draw query values from
VERIFIED_PER_QUERY = 5  # answers checked (untimed) per search before the timing


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.search", description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000, help="generated Patients (default 100,000)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the generated data and query values")
    parser.add_argument("--load-processes", type=int, default=2, help="loader processes (default 2)")
    parser.add_argument("--batch", type=int, default=1000, help="resources per load transaction (default 1,000)")
    parser.add_argument("--no-vacuum", dest="vacuum", action="store_false", help="skip VACUUM (ANALYZE) after the load")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes (default 2)")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per measured phase (default 5)")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up before each phase")
    parser.add_argument("--min-requests", type=int, default=20, help="latency phases last until this many answers")
    parser.add_argument("--max-seconds", type=float, default=20.0, help="...but no longer than this (default 20)")
    parser.add_argument(
        "--clients", type=int, default=8, help="concurrent clients of the throughput phases (default 8)"
    )
    parser.add_argument(
        "--connections", type=int, default=16, help="connections of the Patient?name= rate (default 16)"
    )
    parser.add_argument("--deep-page", type=int, default=50, help="which page of the deep paging search to time")
    parser.add_argument("--deep-walks", type=int, default=1, help="walks to the deep page, over the most common codes")
    parser.add_argument("--explain", type=int, default=1, help="EXPLAIN ANALYZE the N slowest searches (default 1)")
    parser.add_argument("--synthea-dir", type=Path, default=SYNTHEA_DIR)
    parser.add_argument("--log-level", default="WARNING", help="the server's FHIR_LOG_LEVEL (default WARNING)")
    parser.add_argument("--postgres-url", default=DEFAULT_POSTGRES_ADMIN_URL, help="admin URL to create databases")
    parser.add_argument("--keep", action="store_true", help="keep the loaded database and print its URL (for --reuse)")
    parser.add_argument("--reuse", metavar="URL", help="search a database loaded before (same --patients and --seed)")
    parser.add_argument(
        "--load-only", action="store_true", help="stop after the load and the table sizes (with --keep)"
    )
    parser.add_argument(
        "--no-spread",
        dest="spread",
        action="store_false",
        help="open connections one by one without balancing them over the workers (see bench/spread.py)",
    )
    return parser.parse_args(argv)


@contextlib.contextmanager
def _kept_database(admin_url: str) -> Iterator[str]:
    import psycopg
    from sqlalchemy.engine import make_url

    name = f"fhir_bench_keep_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    print(f"keeping the database: --reuse {url}  (drop it with DROP DATABASE {name})", flush=True)
    yield url


def _database(args: argparse.Namespace) -> contextlib.AbstractContextManager[str]:
    if args.reuse:
        return contextlib.nullcontext(args.reuse)
    return _kept_database(args.postgres_url) if args.keep else postgres_database(args.postgres_url)


def vacuum(url: str) -> float:
    """VACUUM (ANALYZE): planner statistics and the visibility map, as autovacuum would leave them."""
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM (ANALYZE)")
    return time.perf_counter() - started


def table_sizes(url: str) -> list[report.TableSize]:
    import psycopg

    sizes = []
    with psycopg.connect(url, autocommit=True) as connection:
        for table in report.TABLES:
            rows: dict[str, int] = dict(
                connection.execute(f"SELECT resource_type, count(*) FROM {table} GROUP BY 1").fetchall()
            )
            heap, indexes, total = connection.execute(
                "SELECT pg_table_size(c), pg_indexes_size(c), pg_total_relation_size(c) FROM CAST(%s AS regclass) c",
                (table,),
            ).fetchone() or (0, 0, 0)
            sizes.append(report.TableSize(table, rows, heap, indexes, total))
    return sizes


def show(phase: Phase, label: str = "") -> None:
    line = (
        f"  {label or phase.name:<52} {phase.count:>6,} requests in {phase.elapsed:5.1f} s = {phase.rate:>8,.1f}/s"
        f"  p50 {phase.percentile(0.5):8.1f} ms  p95 {phase.percentile(0.95):8.1f} ms  errors {phase.errors}"
    )
    print(line + (f"\n    !!! first error: {phase.first_error}" if phase.errors else ""), flush=True)
    if phase.cpu is not None:
        print(f"    cpu: {phase.cpu.describe()}{report.spread_note(phase)}", flush=True)


async def _deep(
    server: Server,
    target: Target,
    queries: tuple[Query, Query],
    codes: list[str],
    args: argparse.Namespace,
    run: report.SearchRun,
) -> None:
    """Walks to page `--deep-page` of `Observation?code=<c>&_count=20` for the most common codes."""
    query, without_count = queries
    phase = Phase(f"pages 1-{args.deep_page - 1} of {query.label.split(',')[0]}")
    connection = (await target.connect(1))[0][0]
    try:
        for code in codes:
            start = f"/fhir/Observation?code={code.replace('|', '%7C')}&_count=20"
            path, seconds = await deep_pages(connection, server.host, start, args.deep_page, phase)
            run.deep_walks.append(seconds)
            if path is not None:
                query.paths.append(path)
                without_count.paths.append(path + "&_total=none")
            print(f"  walked {args.deep_page - 1} pages of {start} in {seconds:.1f} s", flush=True)
    finally:
        await connection.close()
    run.deep_pages = args.deep_page
    run.walk = phase


async def run_searches(server: Server, args: argparse.Namespace, run: report.SearchRun) -> None:
    target = Target(server.port, server.process.pid, worker_pids(server.process.pid), args.spread)
    templates = load_templates(args.synthea_dir)
    sample = sample_patients(templates, args.seed, args.patients, SAMPLE_PATIENTS)
    common = [f"{system}|{code}" for system, code, _ in code_frequencies(templates)[: max(args.deep_walks, 1)]]
    run.queries = build_queries(sample, args.seed, OBSERVATIONS_PER_PATIENT, common[0], args.deep_page)
    by_key = {query.key: query for query in run.queries}
    await _deep(server, target, (by_key["deep"], by_key["deep-nototal"]), common[: args.deep_walks], args, run)
    print(f"verifying {VERIFIED_PER_QUERY} answers of each search (untimed)", flush=True)
    checks = Phase("verification")
    connection = (await target.connect(1))[0][0]
    try:
        for query in run.queries:
            await verify(connection, server.host, query, VERIFIED_PER_QUERY, checks)
    finally:
        await connection.close()
    run.checks.append(checks)
    if checks.errors:
        print(f"  !!! {checks.errors} wrong answers; first: {checks.first_error}", flush=True)
    timing = (args.warmup, args.duration)
    print("latency, one client:", flush=True)
    for query in run.queries:
        if not query.paths:
            continue
        warm, phase = await sequential(
            target, query.requests(server.host), timing, args.min_requests, args.max_seconds, query.label
        )
        run.checks.append(warm)
        run.latency[query.key] = phase
        show(phase)
    print("throughput:", flush=True)
    plan = [(key, args.clients) for key in ("name", "identifier", "combo")] + [("name", args.connections)]
    for key, clients in plan:
        query = by_key[key]
        label = f"{query.label}, {clients} connections"
        warm, phase = await measure(target, clients, query.requests(server.host), timing, 200, name=label)
        run.checks.append(warm)
        run.throughput.append((key, query.label, clients, phase))
        show(phase)


def _explain_slowest(url: str, run: report.SearchRun, count: int) -> None:
    ranked = sorted(run.latency.items(), key=lambda item: -item[1].percentile(0.5))
    by_key = {query.key: query for query in run.queries}
    for key, phase in ranked[:count]:
        query = by_key[key]
        heading = (
            f"EXPLAIN (ANALYZE, BUFFERS) of the slowest search: {query.label} (p50 {phase.percentile(0.5):.1f} ms)"
        )
        print(f"\n{heading}", flush=True)
        try:
            lines = explain(url, query.paths[0])
        except Exception as exc:  # the plan is a diagnosis; its failure must not hide the figures
            lines = [f"EXPLAIN failed: {type(exc).__name__}: {exc}"]
        run.explain.extend(["", heading, *lines])
        print("\n".join(lines), flush=True)


def execute(args: argparse.Namespace, stamp: str, run: report.SearchRun) -> None:
    log_path = report.RESULTS_DIR / f"search-{stamp}-server.log"
    with _database(args) as url:
        if not args.reuse:
            print(f"loading {args.patients:,} patients with {OBSERVATIONS_PER_PATIENT} Observations each", flush=True)
            run.load = load(url, args.synthea_dir, args.seed, args.patients, args.load_processes, args.batch)
            print("\n".join(describe(run.load)), flush=True)
            if args.vacuum:
                run.vacuum_seconds = vacuum(url)
                print(f"VACUUM (ANALYZE) {run.vacuum_seconds:.1f} s", flush=True)
        started = time.perf_counter()
        run.sizes = table_sizes(url)
        print(f"table sizes and row counts ({time.perf_counter() - started:.1f} s)", flush=True)
        if args.load_only:
            return
        print(f"starting the server ({args.workers} workers, log {log_path.name})", flush=True)
        with running_server(url, args.workers, args.log_level, log_path) as server:
            _runner()(run_searches(server, args, run))
        if args.explain and run.latency:
            _explain_slowest(url, run, args.explain)


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM (also SIGINT when started in the background, where it is ignored) unwind
    # normally, so that the server is stopped and the database dropped.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    settings = (
        f"{args.patients:,} Patients x {OBSERVATIONS_PER_PATIENT} Observations (seed {args.seed}), PostgreSQL, "
        f"workers={args.workers}, {args.duration:g} s per phase (at least {args.min_requests} requests, at most "
        f"{args.max_seconds:g} s) after {args.warmup:g} s warm-up"
    )
    print(report.heading(settings), flush=True)
    run = report.SearchRun()
    if not args.reuse and (reason := postgres_reachable(args.postgres_url)):
        run.problem = f"SKIPPED, PostgreSQL unreachable at {args.postgres_url}: {reason}"
    else:
        report.RESULTS_DIR.mkdir(exist_ok=True)
        try:
            execute(args, stamp, run)
        except Exception as exc:  # reported with whatever was measured before
            run.problem = f"FAILED: {type(exc).__name__}: {exc}"
    text = report.render(report.heading(settings), run)
    print("\n" + text)
    print(f"\nwritten to {report.write(text, stamp)}")
    return 1 if run.errors or run.problem else 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
