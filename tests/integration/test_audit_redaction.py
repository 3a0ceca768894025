"""A search's AuditEvent records the request, never protected values (issue 5, points 8 and 9):
the query of `Patient?phone=...` is kept with the phone number replaced."""

from __future__ import annotations

import base64
import uuid
from typing import Any

from tests.conftest import FHIR_JSON


def test_the_recorded_query_holds_no_protected_value(client: Any) -> None:
    phone = f"+1 555 {uuid.uuid4().int % 10_000_000:07d}"
    marker = f"Redact{uuid.uuid4().hex[:8]}"
    patient = {
        "resourceType": "Patient",
        "name": [{"family": marker}],
        "telecom": [{"system": "phone", "value": phone}],
    }
    assert client.post("/fhir/Patient", json=patient, headers=FHIR_JSON).status_code == 201
    found = client.get("/fhir/Patient", params={"phone": phone, "family": marker}, headers=FHIR_JSON)
    assert found.status_code == 200 and len(found.json()["entry"]) == 1
    events = client.get("/fhir/AuditEvent", params={"_count": "200", "_sort": "-_lastUpdated"}, headers=FHIR_JSON)
    queries = [
        base64.b64decode(entity["query"]).decode()
        for entry in events.json().get("entry", [])
        for entity in entry["resource"].get("entity", [])
        if "query" in entity
    ]
    ours = [query for query in queries if marker in query]
    assert ours, "the search was audited with its query"
    digits = phone.replace(" ", "").replace("+", "")
    for query in ours:
        assert digits[-7:] not in query.replace("+", "").replace("%20", "").replace(" ", "")
        assert "phone=%2A%2A%2A" in query or "phone=***" in query
