"""Shared fixtures: one app per database backend (SQLite and a throw-away PostgreSQL database).

PostgreSQL tests use a database created for this run from FHIR_TEST_POSTGRES_URL (an admin URL)
and dropped afterwards. With FHIR_TEST_REQUIRE_POSTGRES=1 (CI) an unreachable PostgreSQL fails
the run instead of skipping its tests.
"""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

warnings.filterwarnings("ignore", message=".*httpx.*starlette.testclient.*")

from starlette.testclient import TestClient  # noqa: E402

from fhir_server.app import create_app  # noqa: E402
from fhir_server.settings import Settings  # noqa: E402
from fhir_server.store.engine import make_engine  # noqa: E402
from fhir_server.store.migrate import upgrade  # noqa: E402
from fhir_server.store.repository import Store  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"
EXAMPLES = SHARED / "fhir-r4" / "examples"
SYNTHEA = SHARED / "synthea"
ADMIN_URL = os.environ.get("FHIR_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
REQUIRE_POSTGRES = os.environ.get("FHIR_TEST_REQUIRE_POSTGRES") == "1"
BACKENDS = ["sqlite", "postgresql"]


def _admin_connect() -> psycopg.Connection:
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session (per xdist worker)."""
    try:
        admin = _admin_connect()
    except psycopg.OperationalError as exc:
        if REQUIRE_POSTGRES:
            pytest.fail(f"PostgreSQL is required (FHIR_TEST_REQUIRE_POSTGRES=1) but unreachable: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    name = f"fhir_test_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def database_url_for(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    if backend == "postgresql":
        return str(request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path_factory.mktemp('sqlite') / 'fhir.db'}"


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
def database_url(backend: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    url = database_url_for(backend, request, tmp_path_factory)
    upgrade(make_engine(url))
    return url


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    # The API-mechanics tests run as the local operator; the SMART tests turn it off (oauth_helpers).
    return Settings(
        database_url=database_url, max_bundle_entries=2_000, log_level="WARNING", allow_unauthenticated_loopback=True
    )


@pytest.fixture(scope="session")
def app(settings: Settings):  # type: ignore[no-untyped-def]
    application = create_app(settings)
    yield application
    application.state.store.engine.dispose()


@pytest.fixture(scope="session")
def store(app) -> Store:  # type: ignore[no-untyped-def]
    return app.state.store  # type: ignore[no-any-return]


@pytest.fixture(scope="session")
def client(app) -> Iterator[TestClient]:  # type: ignore[no-untyped-def]
    """HTTP through the ASGI app, from a loopback address like a local operator."""
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 40000)) as test_client:
        yield test_client


FHIR_JSON = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}


@contextmanager
def serve_in_thread(asgi_app: Any) -> Iterator[str]:
    """Serves an ASGI app with a real uvicorn on a free loopback port; yields its origin."""
    import socket
    import threading
    import time

    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(asgi_app, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def live_server(app) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app served by a real uvicorn on a loopback port, for tests that need real sockets."""
    with serve_in_thread(app) as origin:
        yield f"{origin}/fhir"
