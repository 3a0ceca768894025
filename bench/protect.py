"""Field encryption cost on the hot paths: `python -m bench.protect [--duration S]`.

In-process, on a throw-away SQLite database. For the official example Patient (telecom values
and a narrative quoting them, sealed in storage), the same Patient without them, and an
Observation of the first Synthea Bundle (nothing to seal) it prints:

- reveal: `Protection.revealed` alone, what every stored version read costs on top (without
  envelopes a bytes search for `enc:v1:` that finds nothing; with them the envelopes are found
  by scanning the bytes and opened, the rest of the bytes kept); beside it, for scale, what a
  JSON parse and serialisation of the same content would cost (what revealing avoids);
- read: the `read` interaction (primary-key lookup + reveal), as the fast path calls it;
- seal: `seal_content` on a write (parse, seal, serialise; the Observation skips it).

See store/protection.py and model/sensitive.py.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhir_server.access import LOCAL_OPERATOR, Visibility
from fhir_server.interactions import create, read
from fhir_server.interactions.context import Env
from fhir_server.model.json import dumps, parse
from fhir_server.model.sensitive import seal_content
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.protection import protection_for
from fhir_server.store.repository import Store

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _load(path: Path) -> Any:
    return json.loads(path.read_bytes(), parse_float=Decimal)


def _per_call(call: Callable[[], Any], duration: float) -> float:
    """Microseconds per call, after a warm-up: the best of three rounds (the machine is shared)."""
    for _ in range(100):
        call()
    best = float("inf")
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while time.perf_counter() - start < duration / 3:
            for _ in range(100):
                call()
            count += 100
        best = min(best, (time.perf_counter() - start) / count * 1e6)
    return best


def _samples() -> list[tuple[str, dict[str, Any]]]:
    patient = _load(SHARED / "fhir-r4" / "examples" / "Patient-example.json")
    bundle = _load(sorted((SHARED / "synthea").glob("*.json"))[0])
    observation = next(e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation")
    for resource in (patient, observation):
        resource.pop("id", None)
    plain = {key: value for key, value in patient.items() if key not in ("telecom", "contact", "text")}
    return [
        ("Patient (example: 5 telecom, narrative)", patient),
        ("Patient (same, no telecom or narrative)", plain),
        ("Observation (Synthea)", observation),
    ]


def _measure(env: Env, label: str, resource: dict[str, Any], duration: float) -> str:
    store = env.store
    keyring = store.protection.keys().encryption
    stored = create.create(env, resource["resourceType"], resource, None).version
    assert stored is not None
    kind, identity = stored.resource_type, stored.id
    with store.unit_of_work(Visibility(unrestricted=True), read_only=True) as uow:
        raw = uow.connection.exec_driver_sql(
            "SELECT content FROM resource WHERE resource_type = ? AND id = ?", (kind, identity)
        ).scalar_one()
    sealed = replace(stored, content=raw)
    clear = dumps(resource)
    reveal = _per_call(lambda: store.protection.revealed(sealed), duration)
    slow = _per_call(lambda: dumps(parse(raw, max_depth=10_000)), duration)
    reading = _per_call(lambda: read.read(env, kind, identity), duration)
    sealing = _per_call(lambda: seal_content(clear, kind, identity, keyring), duration)
    return f"{label:<40} {len(raw):>6} {reveal:>7.1f}us {slow:>9.1f}us {reading:>7.1f}us {sealing:>7.1f}us"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=1.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        url = f"sqlite:///{folder}/bench.db"
        engine = make_engine(url)
        upgrade(engine)
        settings = Settings(database_url=url)
        env = Env(Store(engine, protection_for(engine, settings)), settings, LOCAL_OPERATOR, "http://127.0.0.1/fhir")
        print(f"{'resource':<40} {'bytes':>6} {'reveal':>9} {'parse+dump':>11} {'read':>9} {'seal':>9}")
        for label, resource in _samples():
            print(_measure(env, label, resource, args.duration))
        engine.dispose()


if __name__ == "__main__":
    main()
