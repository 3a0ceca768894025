"""Every official R4 example is accepted by create and read back unchanged, in JSON and in XML.

One test walks all 697 examples per backend and lists every failure (file and OperationOutcome),
which is much faster than one pytest item per file. The server assigns the id, `meta.versionId`
and `meta.lastUpdated`; everything else, other meta content included, must come back as sent,
decimals with their digits.
"""

from __future__ import annotations

import decimal
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from fhir_server.model.json import dumps
from tests.conftest import EXAMPLES, FHIR_JSON
from tests.integration.helpers import (
    FHIR_XML_IN,
    UUID,
    first_difference,
    load_json,
    parse,
    without_server_fields,
)

EXAMPLE_FILES = sorted(EXAMPLES.glob("*.json"))
# Types only the server writes (AuditEvent: interactions/auditing.py): creating one answers 405.
SERVER_ONLY = frozenset({"AuditEvent"})
# Examples that exercise the XML conversion beyond the first example of their type: narrative with
# `&quot;` and comments, integral decimals, contained resources, a Bundle of resources, extensions.
XML_EXTRA = [
    "PlanDefinition-KDN5.json",
    "Measure-measure-cms146-example.json",
    "Patient-example.json",
    "Bundle-hla-1.json",
    "Questionnaire-qs1.json",
]


def test_the_example_corpus_is_complete():
    assert len(EXAMPLE_FILES) == 697
    assert len({path.name.split("-", 1)[0] for path in EXAMPLE_FILES}) == 123


def _create_and_read(client: Any, path: Path, body: bytes, headers: dict[str, str]) -> tuple[Any, str | None]:
    """(stored resource, problem): the resource read back after a create, or why that failed."""
    resource_type = path.name.split("-", 1)[0]
    created = client.post(f"/fhir/{resource_type}", content=body, headers=headers)
    if created.status_code != 201:
        return None, f"POST answered {created.status_code}: {created.text[:1500]}"
    location = created.headers.get("location", "")
    prefix = f"http://127.0.0.1/fhir/{resource_type}/"
    if not (location.startswith(prefix) and location.endswith("/_history/1")):
        return None, f"Location {location!r}"
    new_id = location[len(prefix) : -len("/_history/1")]
    if not UUID.match(new_id):
        return None, f"id {new_id!r} is not a UUID"
    read = client.get(f"/fhir/{resource_type}/{new_id}", headers=FHIR_JSON)
    if read.status_code != 200:
        return None, f"GET answered {read.status_code}: {read.text[:1500]}"
    stored = parse(read.content)
    if parse(created.content) != stored:
        return None, "the POST response differs from what GET returns"
    if stored.get("id") != new_id or stored.get("meta", {}).get("versionId") != "1":
        return None, f"id/meta.versionId: {stored.get('id')!r} {stored.get('meta')!r}"
    if not str(stored["meta"].get("lastUpdated", "")).endswith("Z"):
        return None, f"meta.lastUpdated: {stored['meta']!r}"
    if read.headers.get("etag") != 'W/"1"':
        return None, f"ETag {read.headers.get('etag')!r}"
    return stored, None


def test_every_official_example_is_created_and_read_back_unchanged(client):
    failures = []
    with_meta = 0  # examples whose meta carries more than the server replaces (profile, tag, security...)
    for path in EXAMPLE_FILES:
        raw = path.read_bytes()
        original = parse(raw)
        assert path.name.startswith(f"{original['resourceType']}-"), path.name
        with_meta += bool(set(original.get("meta", {})) - {"versionId", "lastUpdated"})
        if original["resourceType"] in SERVER_ONLY:
            refused = client.post(f"/fhir/{original['resourceType']}", content=raw, headers=FHIR_JSON)
            if refused.status_code != 405:
                failures.append(f"{path.name}: POST of a server-only type answered {refused.status_code}")
            continue
        stored, problem = _create_and_read(client, path, raw, FHIR_JSON)
        if problem is None:
            difference = first_difference(without_server_fields(original), without_server_fields(stored))
            problem = f"read back differs at {difference}" if difference else None
        if problem:
            failures.append(f"{path.name}: {problem}")
    assert not failures, f"{len(failures)} of {len(EXAMPLE_FILES)} examples failed:\n" + "\n".join(failures)
    assert with_meta >= 14


def _canonical_narratives(node: Any) -> Any:
    """Narrative divs as canonical XML: `&quot;` versus `"` and XML comments are not significant."""
    if isinstance(node, dict):
        return {
            key: (
                etree.tostring(etree.fromstring(value), method="c14n", with_comments=False)
                if key == "div" and isinstance(value, str)
                else _canonical_narratives(value)
            )
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_canonical_narratives(item) for item in node]
    return node


def _xml_sample() -> list[Path]:
    first: dict[str, Path] = {}
    for path in EXAMPLE_FILES:
        if path.name.split("-", 1)[0] not in SERVER_ONLY:  # their XML is covered by tests/unit/test_xml.py
            first.setdefault(path.name.split("-", 1)[0], path)
    return sorted(set(first.values()) | {EXAMPLES / name for name in XML_EXTRA})


def test_xml_round_trip_for_one_example_of_every_type(client):
    """GET as FHIR XML, POST that XML back as a new resource, and read it as JSON: nothing is lost."""
    sample = _xml_sample()
    assert len({path.name.split("-", 1)[0] for path in sample}) == 123 - len(SERVER_ONLY)
    failures = []
    for path in sample:
        original = load_json(path)
        resource_type = original["resourceType"]
        stored, problem = _create_and_read(client, path, path.read_bytes(), FHIR_JSON)
        if problem:
            failures.append(f"{path.name} (JSON create): {problem}")
            continue
        as_xml = client.get(f"/fhir/{resource_type}/{stored['id']}", headers={"Accept": "application/fhir+xml"})
        if as_xml.status_code != 200 or not as_xml.headers["content-type"].startswith("application/fhir+xml"):
            failures.append(f"{path.name}: GET as XML answered {as_xml.status_code} {as_xml.headers['content-type']}")
            continue
        root = etree.fromstring(as_xml.content)
        if root.tag != f"{{http://hl7.org/fhir}}{resource_type}":
            failures.append(f"{path.name}: XML root is {root.tag}")
            continue
        copy, problem = _create_and_read(client, path, as_xml.content, FHIR_XML_IN)
        if problem:
            failures.append(f"{path.name} (XML create): {problem}")
            continue
        assert copy["id"] != stored["id"]
        difference = first_difference(
            _canonical_narratives(without_server_fields(original)), _canonical_narratives(without_server_fields(copy))
        )
        if difference:
            failures.append(f"{path.name}: the XML copy differs at {difference}")
    assert not failures, f"{len(failures)} of {len(sample)} XML round trips failed:\n" + "\n".join(failures)


@pytest.mark.parametrize("accept", ["application/fhir+xml", "application/xml", "text/xml"])
def test_xml_is_answered_for_each_xml_media_type(client, accept):
    original = load_json(EXAMPLES / "Patient-example.json")
    created = client.post("/fhir/Patient", json=original, headers=FHIR_JSON)
    assert created.status_code == 201
    location = created.headers["location"].rsplit("/_history", 1)[0]
    response = client.get(location, headers={"Accept": accept})
    assert response.status_code == 200
    assert response.headers["content-type"].split(";")[0] == accept
    root = etree.fromstring(response.content)
    assert root.tag == "{http://hl7.org/fhir}Patient"
    assert root.find("{http://hl7.org/fhir}gender").get("value") == "male"


def test_client_meta_survives_except_version_and_last_updated(client):
    """Few examples carry tags or security labels, so all of meta's client-owned parts are checked here."""
    meta = {
        "versionId": "99",
        "lastUpdated": "2000-01-01T00:00:00Z",
        "source": "urn:test:source#1",
        "profile": ["http://hl7.org/fhir/StructureDefinition/Patient"],
        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "tag": [{"system": "urn:test:tags", "code": "t1"}, {"system": "urn:test:tags", "code": "t2"}],
        "extension": [{"url": "urn:test:meta-extension", "valueDecimal": decimal.Decimal("1.50")}],
    }
    created = client.post("/fhir/Patient", content=dumps({"resourceType": "Patient", "meta": meta}), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    stored = parse(client.get(f"/fhir/Patient/{created.json()['id']}", headers=FHIR_JSON).content)
    assert stored["meta"]["versionId"] == "1"
    assert stored["meta"]["lastUpdated"] != meta["lastUpdated"]
    assert without_server_fields(stored)["meta"] == {
        k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")
    }
    assert b'"valueDecimal":1.50' in client.get(f"/fhir/Patient/{stored['id']}", headers=FHIR_JSON).content
