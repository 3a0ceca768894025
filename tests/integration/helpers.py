"""Shared helpers of the integration suites: outcomes, history checks, example data."""

from __future__ import annotations

import copy
import decimal
import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from fhir_server.errors import ERROR_CODE_SYSTEM
from tests.conftest import FHIR_JSON

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
FHIR_XML_IN = {"Content-Type": "application/fhir+xml", "Accept": "application/fhir+json"}


def load_json(path: Path) -> Any:
    """A JSON file as the server sees it: decimals keep their digits."""
    with path.open("rb") as f:
        return json.load(f, parse_float=decimal.Decimal)


def parse(body: bytes) -> Any:
    return json.loads(body, parse_float=decimal.Decimal)


def now_instant() -> str:
    """The current UTC time as a FHIR instant, for `_since`."""
    return datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def error_code(issue: dict[str, Any]) -> str | None:
    for coding in (issue.get("details") or {}).get("coding") or []:
        if coding.get("system") == ERROR_CODE_SYSTEM:
            return str(coding.get("code"))
    return None


def outcome_issues(body: Any) -> list[tuple[str | None, str | None]]:
    """(error code, expression) of each issue of an OperationOutcome; the expression is its only entry."""
    assert isinstance(body, dict) and body.get("resourceType") == "OperationOutcome", body
    found = []
    for issue in body.get("issue") or []:
        expressions = issue.get("expression") or []
        assert len(expressions) <= 1, issue
        found.append((error_code(issue), expressions[0] if expressions else None))
    return found


def assert_outcome(response: Any, status: int, expected: list[tuple[str | None, str | None]]) -> dict[str, Any]:
    """The response has this status and exactly these issues (error code, expression), in any order."""
    assert response.status_code == status, (response.status_code, response.text[:2000])
    body = response.json()
    assert sorted(outcome_issues(body), key=repr) == sorted(expected, key=repr), body
    for issue in body["issue"]:
        assert issue["severity"] in ("error", "fatal"), issue
        assert issue["code"], issue
    return body  # type: ignore[no-any-return]


def history_since(client: TestClient, resource_type: str, since: str) -> list[dict[str, Any]]:
    response = client.get(f"/fhir/{resource_type}/_history", params={"_since": since, "_count": "100"})
    assert response.status_code == 200, response.text
    return response.json().get("entry") or []  # type: ignore[no-any-return]


def assert_nothing_stored(client: TestClient, since: str, *resource_types: str) -> None:
    for resource_type in resource_types:
        entries = history_since(client, resource_type, since)
        assert entries == [], f"{resource_type} history has new entries since {since}: {entries}"


def create(client: TestClient, resource: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=headers or FHIR_JSON)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def read(client: TestClient, reference: str) -> dict[str, Any]:
    response = client.get(f"/fhir/{reference}", headers=FHIR_JSON)
    assert response.status_code == 200, (reference, response.text)
    return parse(response.content)  # type: ignore[no-any-return]


def without_server_fields(resource: dict[str, Any]) -> dict[str, Any]:
    """A copy without what the server assigns: id, meta.versionId, meta.lastUpdated (and an emptied meta)."""
    clean = copy.deepcopy(resource)
    clean.pop("id", None)
    meta = clean.get("meta")
    if isinstance(meta, dict):
        meta.pop("versionId", None)
        meta.pop("lastUpdated", None)
        if not meta:
            del clean["meta"]
    return clean


def first_difference(expected: Any, actual: Any, path: str = "") -> str | None:
    """Where two JSON values first differ, for failure messages."""
    if type(expected) is not type(actual):
        return f"{path or '$'}: {expected!r:.80} != {actual!r:.80}"
    if isinstance(expected, dict):
        for key in sorted(set(expected) | set(actual)):
            if key not in expected or key not in actual:
                return f"{path}.{key}: only in {'original' if key in expected else 'stored'}"
            found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list):
        if len(expected) != len(actual):
            return f"{path}: {len(expected)} items != {len(actual)}"
        for index, (left, right) in enumerate(zip(expected, actual, strict=True)):
            found = first_difference(left, right, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if expected == actual else f"{path or '$'}: {expected!r:.80} != {actual!r:.80}"


def references(node: Any) -> list[str]:
    """Every `reference` string inside a resource, contained resources included."""
    found: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "reference" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(references(value))
    elif isinstance(node, list):
        for item in node:
            found.extend(references(item))
    return found
