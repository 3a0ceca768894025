"""Concurrent updates with If-Match (http.html#concurrency): exactly one writer wins, the other
gets 412, and no version is lost. Runs over real sockets against uvicorn, with real threads, so
that on PostgreSQL the two transactions truly overlap."""

from __future__ import annotations

import threading

import httpx

ROUNDS = 15


def _race(base: str, patient_id: str, version: int) -> list[int]:
    barrier = threading.Barrier(2)
    statuses: list[int] = []
    lock = threading.Lock()

    def writer(name: str) -> None:
        body = {"resourceType": "Patient", "id": patient_id, "name": [{"family": name}]}
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            response = http.put(
                f"{base}/Patient/{patient_id}",
                json=body,
                headers={"If-Match": f'W/"{version}"', "Content-Type": "application/fhir+json"},
            )
        with lock:
            statuses.append(response.status_code)

    threads = [threading.Thread(target=writer, args=(name,)) for name in ("Left", "Right")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(statuses)


def test_concurrent_if_match_updates_let_exactly_one_win(live_server):
    with httpx.Client(timeout=30) as http:
        created = http.post(
            f"{live_server}/Patient",
            json={"resourceType": "Patient"},
            headers={"Content-Type": "application/fhir+json"},
        )
        assert created.status_code == 201
        patient_id = created.json()["id"]
        for round_number in range(1, ROUNDS + 1):
            assert _race(live_server, patient_id, round_number) == [200, 412], f"round {round_number}"
        history = http.get(f"{live_server}/Patient/{patient_id}/_history", params={"_count": 100}).json()
    versions = [int(entry["resource"]["meta"]["versionId"]) for entry in history["entry"]]
    assert versions == list(range(ROUNDS + 1, 0, -1))


def test_concurrent_creates_all_succeed(live_server):
    statuses: list[int] = []
    lock = threading.Lock()

    def creator() -> None:
        with httpx.Client(timeout=30) as http:
            for _ in range(10):
                response = http.post(
                    f"{live_server}/Patient",
                    json={"resourceType": "Patient", "active": True},
                    headers={"Content-Type": "application/fhir+json"},
                )
                with lock:
                    statuses.append(response.status_code)

    threads = [threading.Thread(target=creator) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [201] * 80


def test_concurrent_conditional_creates_make_one_resource(live_server):
    """If-None-Exist under concurrency: one 201, the others 200 with the same resource."""
    identifier = f"urn:test:conditional|{threading.get_ident()}-{id(live_server)}-{__import__('uuid').uuid4()}"
    barrier = threading.Barrier(8)
    answers: list[tuple[int, str]] = []
    lock = threading.Lock()

    def creator() -> None:
        system, value = identifier.split("|")
        body = {"resourceType": "Patient", "identifier": [{"system": system, "value": value}]}
        with httpx.Client(timeout=30) as http:
            barrier.wait()
            response = http.post(
                f"{live_server}/Patient",
                json=body,
                headers={"Content-Type": "application/fhir+json", "If-None-Exist": f"identifier={identifier}"},
            )
        with lock:
            answers.append((response.status_code, response.json()["id"]))

    threads = [threading.Thread(target=creator) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(status for status, _ in answers) == [200] * 7 + [201]
    assert len({resource_id for _, resource_id in answers}) == 1
