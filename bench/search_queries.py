"""The searches measured, with their values varied per request from the generated data.

Each `Query` is a list of request paths built from a sample of generated patients (search_data),
cycled by the load generator, and a check of what a correct answer holds (entries, total),
applied to a few answers before any timing (`verify`). Latency is measured by `sequential`:
one connection, one request after the other, for at least `seconds` and `min_requests`.
`deep_pages` follows `next` links into a large result and keeps the URL of the Nth page.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlsplit

from bench.cpu import snapshot, usage
from bench.httpclient import Connection, build_request
from bench.search_data import MRN_SYSTEM, SSN_SYSTEM, Generated
from bench.workloads import Phase, Target, exchange

ACCEPT = {"Accept": "application/fhir+json"}
Check = Callable[[dict[str, Any]], str | None]  # a searchset Bundle -> what is wrong with it, or None


@dataclass
class Query:
    key: str
    label: str
    paths: list[str]
    check: Check
    totals: list[int] = field(default_factory=list)  # Bundle.total of the verified answers
    entries: list[int] = field(default_factory=list)  # entries (matches and includes) of the verified answers

    def requests(self, host: str) -> Callable[[], bytes]:
        prebuilt = [build_request("GET", path, host, headers=ACCEPT) for path in self.paths]
        cycle = _cycle(prebuilt)
        return lambda: next(cycle)


def _cycle(items: list[bytes]) -> Iterator[bytes]:
    while True:
        yield from items


def _q(value: str) -> str:
    return quote(value, safe="")


def _entries(bundle: dict[str, Any], mode: str | None = None) -> list[dict[str, Any]]:
    entries = bundle.get("entry") or []
    return [e for e in entries if mode is None or (e.get("search") or {}).get("mode") == mode]


def _at_least_one(bundle: dict[str, Any]) -> str | None:
    return None if _entries(bundle, "match") else "no match, though the value comes from a stored resource"


def _exactly_one(bundle: dict[str, Any]) -> str | None:
    matches = len(_entries(bundle, "match"))
    return None if matches == 1 else f"{matches} matches, expected exactly 1"


def _revincluded(per_patient: int) -> Check:
    def check(bundle: dict[str, Any]) -> str | None:
        matches, included = len(_entries(bundle, "match")), len(_entries(bundle, "include"))
        if matches != 1 or included != per_patient:
            return f"{matches} matches and {included} included, expected 1 and {per_patient}"
        return None

    return check


def _dates_descending(bundle: dict[str, Any]) -> str | None:
    matches = _entries(bundle, "match")
    if not matches:
        return "no match, though the code comes from a stored Observation"
    dates = [(e.get("resource") or {}).get("effectiveDateTime", "") for e in matches]
    return None if dates == sorted(dates, reverse=True) else "entries are not in descending date order"


def _full_page(size: int) -> Check:
    def check(bundle: dict[str, Any]) -> str | None:
        matches = len(_entries(bundle, "match"))
        return None if matches == size else f"{matches} matches on a page of {size}"

    return check


def build_queries(sample: list[Generated], seed: int, per_patient: int, deep_code: str, deep_page: int) -> list[Query]:
    """The measured searches; `sample` supplies the values, in a seeded order. The deep page's
    paths are added by following next links (`deep_pages`)."""
    rng = random.Random(f"{seed}:queries")
    patients = list(sample)
    rng.shuffle(patients)
    observations = [(p, o) for p in patients for o in p.observations]
    picked = [rng.choice(p.observations) for p in patients]

    def code(observation: dict[str, Any]) -> str:
        coding = observation["code"]["coding"][0]
        return f"{coding['system']}|{coding['code']}"

    identifiers = []
    for n, patient in enumerate(patients):
        wanted = SSN_SYSTEM if n % 2 else MRN_SYSTEM
        value = next(i["value"] for i in patient.patient["identifier"] if i.get("system") == wanted)
        identifiers.append(f"{wanted}|{value}")
    combos = [
        f"/fhir/Observation?patient={_q(p.id)}&code={_q(code(o))}&date=ge{o['effectiveDateTime'][:10]}"
        for p, o in zip(patients, picked, strict=True)
    ]
    weighted_codes = [code(o) for _, o in rng.sample(observations, min(len(observations), len(patients)))]
    return [
        Query("name", "Patient?name=", [f"/fhir/Patient?name={_q(p.family)}" for p in patients], _at_least_one),
        Query(
            "identifier",
            "Patient?identifier=",
            [f"/fhir/Patient?identifier={_q(i)}" for i in identifiers],
            _exactly_one,
        ),
        Query("combo", "Observation?patient=&code=&date=ge", combos, _at_least_one),
        Query(
            "chain",
            "Observation?patient.name=",
            [f"/fhir/Observation?patient.name={_q(p.family)}" for p in patients],
            _at_least_one,
        ),
        Query(
            "has",
            "Patient?_has:Observation:patient:code=",
            [f"/fhir/Patient?_has:Observation:patient:code={_q(c)}" for c in weighted_codes],
            _at_least_one,
        ),
        Query(
            "revinclude",
            "Patient?_id=&_revinclude=Observation:patient",
            [f"/fhir/Patient?_id={_q(p.id)}&_revinclude=Observation:patient" for p in patients],
            _revincluded(per_patient),
        ),
        Query(
            "sort",
            "Observation?code=&_sort=-date&_count=20",
            [f"/fhir/Observation?code={_q(c)}&_sort=-date&_count=20" for c in weighted_codes],
            _dates_descending,
        ),
        Query("deep", f"Observation?code={deep_code.split('|')[-1]}&_count=20, page {deep_page}", [], _full_page(20)),
        # The same pages without the count every page runs by default (_total=accurate): the count's share.
        Query("deep-nototal", "  the same page with &_total=none", [], _full_page(20)),
    ]


async def _get(connection: Connection, path: str, host: str, phase: Phase) -> dict[str, Any] | None:
    response = await exchange(connection, build_request("GET", path, host, headers=ACCEPT), phase)
    if response is None:
        return None
    if response.status != 200:
        phase.fail(f"GET {path}: HTTP {response.status}: {response.body[:300].decode(errors='replace')}")
        return None
    parsed: dict[str, Any] = json.loads(response.body)
    return parsed


async def verify(connection: Connection, host: str, query: Query, count: int, phase: Phase) -> None:
    """The first `count` requests of `query`, answers checked (untimed); totals kept for the report."""
    for path in query.paths[:count]:
        bundle = await _get(connection, path, host, phase)
        if bundle is None:
            continue
        if isinstance(bundle.get("total"), int):
            query.totals.append(bundle["total"])
        query.entries.append(len(_entries(bundle)))
        if problem := query.check(bundle):
            phase.fail(f"GET {path}: {problem}")


def _next_path(bundle: dict[str, Any]) -> str | None:
    for link in bundle.get("link") or ():
        if link.get("relation") == "next":
            parts = urlsplit(link["url"])
            return f"{parts.path}?{parts.query}"
    return None


async def deep_pages(
    connection: Connection, host: str, start: str, pages: int, phase: Phase
) -> tuple[str | None, float]:
    """Follows `next` from `start` to page `pages`: (its path, seconds the walk to it took); the
    latency of each page before it goes to `phase`."""
    path: str | None = start
    started = time.perf_counter()
    for _ in range(pages - 1):
        assert path is not None
        sent = time.perf_counter()
        bundle = await _get(connection, path, host, phase)
        phase.latencies.append(time.perf_counter() - sent)
        phase.count += 1
        if bundle is None:
            return None, time.perf_counter() - started
        path = _next_path(bundle)
        if path is None:
            phase.fail(f"no next link after {start} (fewer than {pages} pages)")
            return None, time.perf_counter() - started
    return path, time.perf_counter() - started


async def sequential(
    target: Target,
    next_request: Callable[[], bytes],
    timing: tuple[float, float],
    min_requests: int,
    max_seconds: float,
    name: str,
) -> tuple[Phase, Phase]:
    """(warm-up, measured) latency phases on one keep-alive connection, one request at a time.

    The measured phase lasts `seconds`, longer if fewer than `min_requests` answers came back
    by then, but never beyond `max_seconds`."""
    warmup, seconds = timing
    connection = (await target.connect(1))[0][0]
    try:
        warm = await _serial(connection, next_request, warmup, 0, warmup, f"{name} warm-up")
        before = snapshot(target.pid)
        measured = await _serial(connection, next_request, seconds, min_requests, max_seconds, name)
        measured.cpu = usage(before, snapshot(target.pid))
    finally:
        await connection.close()
    return warm, measured


async def _serial(
    connection: Connection,
    next_request: Callable[[], bytes],
    seconds: float,
    min_requests: int,
    max_seconds: float,
    name: str,
) -> Phase:
    phase = Phase(name)
    clock = time.perf_counter
    started = clock()
    while True:
        elapsed = clock() - started
        if elapsed >= max_seconds or (elapsed >= seconds and len(phase.latencies) >= min_requests):
            break
        sent = clock()
        response = await exchange(connection, next_request(), phase)
        phase.latencies.append(clock() - sent)
        if response is not None and response.status != 200:
            phase.fail(f"HTTP {response.status}: {response.body[:300].decode(errors='replace')}")
    phase.elapsed = clock() - started
    phase.count = len(phase.latencies)
    return phase
