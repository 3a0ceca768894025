"""EXPLAIN (ANALYZE, BUFFERS) of the SQL a search really runs, as the server runs it.

The search interaction (fhir_server.interactions.search) is called in-process on the benchmark's
database with the query parameters the server received, and every statement it sends is
captured from the engine (`before_cursor_execute`) with its parameters. Nothing is rebuilt by
hand, so the SQL is the server's, whatever the compiler emits.

Each statement is explained twice, because the server's connections do not plan it the same way
every time: psycopg prepares a statement on a connection once it has run 5 times
(`prepare_threshold`), and from then on PostgreSQL (plan_cache_mode=auto) may run a *generic*
plan, made without the parameter values, whenever its estimated cost looks no worse than the
custom plans so far. So: (1) the plan made for these values (what the first executions get), and
(2) the plan of a prepared statement after 5 executions with the same values (what a warm server
connection gets; a generic plan shows `$n` where the values were).
"""

from __future__ import annotations

import re
import time
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sqlalchemy import event

PREPARE_THRESHOLD = 5  # psycopg's default: executions of one statement before it is prepared
_PARAMETER = re.compile(r"%\((\w+)\)s")


def positional(statement: str, parameters: dict[str, Any]) -> tuple[str, list[Any]]:
    """psycopg's `%(name)s` placeholders as `$n` (for PREPARE), and the values in that order."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    return _PARAMETER.sub(number, statement).replace("%%", "%"), [parameters[name] for name in names]


def _prepared_plan(database_url: str, statement: str, parameters: dict[str, Any]) -> list[str]:
    import psycopg

    sql, values = positional(statement, parameters)
    arguments = ", ".join(["%s"] * len(values))
    with psycopg.connect(database_url, autocommit=True) as connection:
        cursor = psycopg.ClientCursor(connection)  # values as literals in EXECUTE (...)
        cursor.execute(f"PREPARE bench_search AS {sql}")
        execute = f"EXECUTE bench_search({arguments})" if values else "EXECUTE bench_search"
        for _ in range(PREPARE_THRESHOLD):
            cursor.execute(execute, values)
            cursor.fetchall()
        cursor.execute(f"EXPLAIN (ANALYZE, BUFFERS) {execute}", values)
        return [row[0] for row in cursor.fetchall()]


def explain(database_url: str, path: str) -> list[str]:
    """The plans of every statement `GET path` runs (path as sent: /fhir/Type?query)."""
    from fhir_server.access import LOCAL_OPERATOR
    from fhir_server.interactions.context import Env
    from fhir_server.interactions.search import search
    from fhir_server.settings import Settings
    from fhir_server.store.engine import make_engine
    from fhir_server.store.repository import Store

    parts = urlsplit(path)
    resource_type = parts.path.rstrip("/").rsplit("/", 1)[-1]
    params = parse_qsl(parts.query, keep_blank_values=True)
    engine = make_engine(database_url, pool_size=1)
    captured: list[tuple[str, Any]] = []

    def capture(_conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        captured.append((statement, parameters))

    lines: list[str] = []
    try:
        env = Env(Store(engine), Settings(database_url=database_url), LOCAL_OPERATOR, "http://127.0.0.1/fhir")
        search(env, resource_type, params, True, None)  # warm: imports and compiled expressions
        event.listen(engine, "before_cursor_execute", capture)
        started = time.perf_counter()
        try:
            search(env, resource_type, params, True, None)
        finally:
            event.remove(engine, "before_cursor_execute", capture)
        elapsed = (time.perf_counter() - started) * 1000
        lines.append(f"in-process search {path}: {elapsed:.1f} ms, {len(captured)} statements")
        with engine.connect() as connection:
            for number, (statement, parameters) in enumerate(captured, 1):
                if not statement.lstrip().upper().startswith("SELECT"):
                    continue
                lines += ["", f"-- statement {number}, parameters {parameters}", *statement.splitlines()]
                result = connection.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + statement, parameters)
                lines += ["", "-- (1) planned for these values (a connection's first executions):"]
                lines += [row[0] for row in result]
                lines += ["", f"-- (2) prepared, after {PREPARE_THRESHOLD} executions (a warm server connection):"]
                lines += _prepared_plan(database_url, statement, parameters or {})
    finally:
        engine.dispose()
    return lines
