"""The measured workloads: Patient creates, reads by id, and Synthea transaction ingest.

Each closed-loop phase runs N connections for a fixed time after a warm-up on the same
connections; every response's status is checked and latencies are kept for percentiles.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.cpu import CpuUse, snapshot, usage
from bench.httpclient import TRANSPORT_ERRORS, Connection, Response, build_request, close_all, open_all
from bench.spread import open_spread

SHARED = Path(__file__).resolve().parents[2] / "shared"  # shared/ lies beside the repository
PATIENT_EXAMPLE = SHARED / "fhir-r4" / "examples" / "Patient-example.json"
SYNTHEA_DIR = SHARED / "synthea"
JSON_HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
_MARK = "BENCH-ID-000000000000"


@dataclass(frozen=True)
class Target:
    """The server under test: its port, its supervisor's pid, and its workers' pids."""

    port: int
    pid: int
    workers: tuple[int, ...] = ()
    spread: bool = True  # spread connections evenly over the workers (see spread.py)

    async def connect(self, count: int) -> tuple[list[Connection], tuple[int, ...]]:
        """`count` connections, and how many each worker got (empty when unknown)."""
        if not self.spread or len(self.workers) < 2:
            return await open_all("127.0.0.1", self.port, count), ()
        connections, spread = await open_spread("127.0.0.1", self.port, count, self.workers)
        return connections, tuple(spread.values())


@dataclass
class Phase:
    """The outcome of one measurement."""

    name: str
    count: int = 0
    errors: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    first_error: str | None = None
    units: int = 0  # resources, for ingest
    cpu: CpuUse | None = None
    spread: tuple[int, ...] = ()  # connections per worker

    @property
    def rate(self) -> float:
        return (self.units or self.count) / self.elapsed if self.elapsed else 0.0

    def percentile(self, share: float) -> float:
        """Latency in ms at `share` (0..1), nearest rank."""
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))] * 1000

    def fail(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message


def _describe(response: Response) -> str:
    return f"HTTP {response.status}: {response.body[:300].decode(errors='replace')}"


async def exchange(connection: Connection, request: bytes, phase: Phase) -> Response | None:
    """One request; a dropped or garbled connection counts as an error and is opened again."""
    try:
        return await connection.request(request)
    except TRANSPORT_ERRORS as exc:
        phase.fail(f"connection failed: {type(exc).__name__}: {exc}")
        await connection.reconnect()
        return None


class PatientRequests:
    """POST /fhir/Patient requests, each with a unique identifier, spliced into a pre-built template."""

    def __init__(self, host: str, base_path: str = "/fhir") -> None:
        patient = json.loads(PATIENT_EXAMPLE.read_bytes())
        for key in ("id", "meta", "text"):
            patient.pop(key, None)
        patient["identifier"].append({"system": "urn:fhir-server:bench", "value": _MARK})
        self.host, self.path, self.body = host, f"{base_path}/Patient", json.dumps(patient).encode()
        self.serial = 0
        self.use({})

    def use(self, headers: dict[str, str]) -> None:
        """The same requests with these extra headers (a fresh bearer token) from now on."""
        request = build_request("POST", self.path, self.host, self.body, {**JSON_HEADERS, **headers})
        self.prefix, self.suffix = request.split(_MARK.encode())

    def __call__(self) -> bytes:
        self.serial += 1
        return b"%sBENCH-ID-%012d%s" % (self.prefix, self.serial, self.suffix)


def read_requests(
    host: str, ids: list[str], base_path: str = "/fhir", headers: dict[str, str] | None = None
) -> Callable[[], bytes]:
    request_headers = {"Accept": "application/fhir+json", **(headers or {})}
    prebuilt = [build_request("GET", f"{base_path}/Patient/{id_}", host, headers=request_headers) for id_ in ids]
    cycle = _cycle(prebuilt)
    return lambda: next(cycle)


def _cycle(items: list[bytes]) -> Iterator[bytes]:
    while True:
        yield from items


def created_id(response: Response) -> str | None:
    location = response.headers.get(b"location", b"").decode()
    parts = location.split("/_history")[0].rsplit("/", 1)
    return parts[-1] if len(parts) == 2 else None


async def closed_loop(
    connections: list[Connection],
    next_request: Callable[[], bytes],
    seconds: float,
    expect: int,
    on_ok: Callable[[Response], None] | None = None,
    name: str = "",
) -> Phase:
    """Every connection sends a request as soon as its previous answer arrived, for `seconds`."""
    phase = Phase(name)
    deadline = time.perf_counter() + seconds

    async def worker(connection: Connection) -> None:
        clock, latencies = time.perf_counter, phase.latencies
        while clock() < deadline:
            started = clock()
            response = await exchange(connection, next_request(), phase)
            latencies.append(clock() - started)
            if response is None:
                continue
            if response.status != expect:
                phase.fail(_describe(response))
            elif on_ok is not None:
                on_ok(response)

    started = time.perf_counter()
    await asyncio.gather(*(worker(connection) for connection in connections))
    phase.elapsed = time.perf_counter() - started
    phase.count = len(phase.latencies)
    return phase


async def measure(
    target: Target,
    clients: int,
    next_request: Callable[[], bytes],
    timing: tuple[float, float],
    expect: int,
    on_ok: Callable[[Response], None] | None = None,
    name: str = "",
) -> tuple[Phase, Phase]:
    """(warm-up, measured) phases on the same `clients` keep-alive connections."""
    warmup, seconds = timing
    connections, spread = await target.connect(clients)
    try:
        warm = await closed_loop(connections, next_request, warmup, expect, on_ok, f"{name} warm-up")
        before = snapshot(target.pid)
        measured = await closed_loop(connections, next_request, seconds, expect, on_ok, name)
        measured.cpu, measured.spread = usage(before, snapshot(target.pid)), spread
    finally:
        await close_all(connections)
    return warm, measured


def synthea_requests(
    host: str, directory: Path = SYNTHEA_DIR, base_path: str = "/fhir", headers: dict[str, str] | None = None
) -> list[tuple[bytes, int]]:
    """(request, entry count) per transaction Bundle, largest first so the tail is short."""
    requests = []
    request_headers = {**JSON_HEADERS, "Prefer": "return=minimal", **(headers or {})}
    for path in sorted(directory.glob("*.json")):
        raw = path.read_bytes()
        count = len(json.loads(raw).get("entry") or [])
        requests.append((build_request("POST", f"{base_path}/", host, raw, request_headers), count))
    requests.sort(key=lambda item: -item[1])
    return requests


async def ingest(target: Target, bundles: list[tuple[bytes, int]], in_flight: int, name: str = "") -> Phase:
    """POST every Bundle, `in_flight` at a time; the rate is in resources per second."""
    phase = Phase(name or f"ingest, {in_flight} in flight")
    queue = list(reversed(bundles))

    async def worker(connection: Connection) -> None:
        while queue:
            request, expected = queue.pop()
            started = time.perf_counter()
            response = await exchange(connection, request, phase)
            phase.latencies.append(time.perf_counter() - started)
            if response is not None:
                _check_transaction(phase, response, expected)

    connections, phase.spread = await target.connect(in_flight)
    before = snapshot(target.pid)
    started = time.perf_counter()
    try:
        await asyncio.gather(*(worker(connection) for connection in connections))
    finally:
        phase.elapsed = time.perf_counter() - started
        phase.cpu = usage(before, snapshot(target.pid))
        await close_all(connections)
    phase.count = len(phase.latencies)
    return phase


def _check_transaction(phase: Phase, response: Response, expected: int) -> None:
    if response.status != 200:
        phase.fail(_describe(response))
        return
    entries: list[dict[str, Any]] = json.loads(response.body).get("entry") or []
    created = sum(1 for entry in entries if entry.get("response", {}).get("status", "").startswith("201"))
    if created != expected:
        phase.fail(f"transaction answered {created} created entries of {expected}")
    phase.units += created
