"""Writes conformance/CapabilityStatement.json from the running code (run after changing what the
server implements; tests/integration/test_conformance.py fails while the snapshot is stale)."""

from __future__ import annotations

import json
from pathlib import Path

import fhir_server.ops.catalogue  # noqa: F401  (registers every $operation)
from fhir_server.interactions.capabilities import capability_statement
from fhir_server.ops.registry import OPERATIONS
from fhir_server.search.registry import official_only

SNAPSHOT = Path(__file__).resolve().parents[1] / "conformance" / "CapabilityStatement.json"
BASE = "http://127.0.0.1:8080/fhir"
OAUTH_BASE = "http://127.0.0.1:8080/auth"
DATE = "2026-01-01T00:00:00+00:00"


def current() -> dict:
    with official_only():
        return capability_statement(BASE, OAUTH_BASE, OPERATIONS.values(), DATE)


if __name__ == "__main__":
    SNAPSHOT.write_text(json.dumps(current(), indent=2) + "\n")
    print(f"wrote {SNAPSHOT}")
