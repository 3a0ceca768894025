"""The server under test: a throw-away database and `fhir-server serve` as a subprocess.

SQLite lives in a temporary directory; PostgreSQL gets a fresh database `fhir_bench_<random>`
created through the admin URL and dropped (WITH (FORCE)) afterwards, even when the run fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from bench.httpclient import Connection, build_request

DEFAULT_POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


@contextlib.contextmanager
def sqlite_database() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="fhir_bench_")
    try:
        yield f"sqlite:///{directory}/fhir.db"
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextlib.contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A new, empty database reachable like `admin_url`; dropped on exit."""
    import psycopg

    name = f"fhir_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def postgres_reachable(admin_url: str) -> str | None:
    """None when PostgreSQL answers, else why not."""
    try:
        import psycopg

        with psycopg.connect(admin_url, autocommit=True, connect_timeout=3) as admin:
            admin.execute("SELECT 1")
    except Exception as exc:  # any failure means the backend is skipped, with the reason shown
        return f"{type(exc).__name__}: {exc}".strip()
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _serve_command() -> list[str]:
    script = Path(sys.executable).parent / "fhir-server"
    return [str(script)] if script.exists() else [sys.executable, "-m", "fhir_server.cli"]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


@contextlib.contextmanager
def running_server(database_url: str, workers: int, log_level: str, log_path: Path) -> Iterator[Server]:
    """`fhir-server serve` on a free loopback port, ready to answer; stopped on exit."""
    port = free_port()
    # The benchmarks measure the API itself, as the local operator (no token checks).
    env = {
        **os.environ,
        "FHIR_DATABASE_URL": database_url,
        "FHIR_LOG_LEVEL": log_level,
        "FHIR_ALLOW_UNAUTHENTICATED_LOOPBACK": "true",
        "FHIR_SEED_DEMO": "false",
    }
    command = [*_serve_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, port, log_path)
    try:
        asyncio.run(_wait_ready(server, timeout=90))
        yield server
    finally:
        stop(process)


async def _wait_ready(server: Server, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    probe = build_request("GET", "/readyz", server.host)
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"the server exited with {server.process.returncode}:\n{server.log_tail()}")
        try:
            connection = await Connection.open("127.0.0.1", server.port)
            response = await connection.request(probe)
            await connection.close()
            if response.status == 200:
                return
        except OSError:
            pass
        await asyncio.sleep(0.2)
    raise RuntimeError(f"the server was not ready within {timeout:.0f} s:\n{server.log_tail()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to uvicorn's supervisor (it stops its workers); the process group as a last resort."""
    if process.poll() is None:
        process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)
