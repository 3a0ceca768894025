"""Database engines for the embedded default (SQLite) and production (PostgreSQL, psycopg 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Engine, make_url


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` URLs and use psycopg 3 for them."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, pool_size: int = 20) -> Engine:
    url = normalise_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    # psycopg prepares a statement after 5 runs; PostgreSQL may then plan it without its values,
    # and generic plans of search statements measured 5-30x slower (bench/search.py, 100k patients).
    # Searches read a page (LIMIT) by walking an index and probing the others: merge joins scanned
    # an index from its start instead (deep page 110 -> 1.9 ms without), parallel workers cost more
    # to start than such a page takes (92 -> 9 ms), and JIT compiled cheap plans for 50 ms. Index
    # probes are priced as on SSD or cache (random_page_cost 1.1, not the spinning-disk 4), which
    # turns a `_has` over a mid-frequency code from a scan of every reference row (1.05 s) into
    # probes (0.42 s).
    settings = (
        "plan_cache_mode=force_custom_plan",
        "jit=off",
        "enable_mergejoin=off",
        "max_parallel_workers_per_gather=0",
        "random_page_cost=1.1",
    )
    options = {"options": " ".join(f"-c {setting}" for setting in settings)}
    return create_engine(url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False, connect_args=options)


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not the driver, open transactions (see _begin), and use WAL so that
        # readers never wait for the single writer.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        # IMMEDIATE takes the write lock up front, so two writers queue instead of deadlocking
        # when both upgrade from a read lock; readers begin deferred and never wait.
        read_only = connection.info.get("read_only", False)
        connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def is_postgres(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"
