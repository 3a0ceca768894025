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

from bench.httpclient import Connection, Response, build_request, close_all, open_all

PATIENT_EXAMPLE = Path("/work/shared/fhir-r4/examples/Patient-example.json")
SYNTHEA_DIR = Path("/work/shared/synthea")
JSON_HEADERS = {"Content-Type": "application/fhir+json", "Accept": "application/fhir+json"}
_MARK = "BENCH-ID-000000000000"


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


class PatientRequests:
    """POST /fhir/Patient requests, each with a unique identifier, spliced into a pre-built template."""

    def __init__(self, host: str, base_path: str = "/fhir") -> None:
        patient = json.loads(PATIENT_EXAMPLE.read_bytes())
        for key in ("id", "meta", "text"):
            patient.pop(key, None)
        patient["identifier"].append({"system": "urn:fhir-server:bench", "value": _MARK})
        request = build_request("POST", f"{base_path}/Patient", host, json.dumps(patient).encode(), JSON_HEADERS)
        self.prefix, self.suffix = request.split(_MARK.encode())
        self.serial = 0

    def __call__(self) -> bytes:
        self.serial += 1
        return b"%sBENCH-ID-%012d%s" % (self.prefix, self.serial, self.suffix)


def read_requests(host: str, ids: list[str], base_path: str = "/fhir") -> Callable[[], bytes]:
    prebuilt = [build_request("GET", f"{base_path}/Patient/{id_}", host, headers={"Accept": "application/fhir+json"})
                for id_ in ids]
    cycle = _cycle(prebuilt)
    return lambda: next(cycle)


def _cycle(items: list[bytes]) -> Iterator[bytes]:
    while True:
        yield from items


def created_id(response: Response) -> str | None:
    location = response.headers.get(b"location", b"").decode()
    parts = location.split("/_history")[0].rsplit("/", 1)
    return parts[-1] if len(parts) == 2 else None
