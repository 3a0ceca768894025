"""The CapabilityStatement is generated from the code, valid R4, and matches the committed snapshot."""

from __future__ import annotations

import json

from fhir_server.model.validate import validation_issues
from tools.snapshot_capabilities import SNAPSHOT, current


def test_snapshot_under_conformance_is_current():
    assert json.loads(SNAPSHOT.read_text()) == json.loads(json.dumps(current())), (
        "conformance/CapabilityStatement.json is stale: run python -m tools.snapshot_capabilities"
    )


def test_served_statement_is_valid_r4_and_says_what_is_implemented(client):
    statement = client.get("/fhir/metadata").json()
    assert validation_issues(statement) == []
    assert statement["fhirVersion"] == "4.0.1"
    rest = statement["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system", "search-system"}
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    assert patient["updateCreate"] is False
    assert {i["code"] for i in patient["interaction"]} >= {"read", "vread", "create", "update", "patch", "delete"}
    assert "search-type" in {i["code"] for i in patient["interaction"]}
    params = {param["name"]: param for param in patient["searchParam"]}
    assert {"name", "birthdate", "identifier", "_id", "_lastUpdated", "_tag"} <= set(params)
    assert ":exact" in params["name"]["documentation"]
    assert "Observation:patient" in patient["searchRevInclude"]
    assert [op["name"] for op in patient["operation"]] == ["everything", "validate"]
    assert len(rest["resource"]) == 146


def test_security_names_the_smart_authorization_server_as_discovery_does(client):
    """rest.security: the SMART-on-FHIR service and the oauth-uris extension (SMART App Launch 1.0
    conformance.html, read by fhirclient) point at the endpoints `.well-known` lists."""
    security = client.get("/fhir/metadata").json()["rest"][0]["security"]
    assert security["service"][0]["coding"][0]["code"] == "SMART-on-FHIR"
    (oauth,) = [e for e in security["extension"] if e["url"].endswith("/StructureDefinition/oauth-uris")]
    uris = {e["url"]: e["valueUri"] for e in oauth["extension"]}
    discovery = client.get("/fhir/.well-known/smart-configuration").json()
    assert uris == {
        "authorize": discovery["authorization_endpoint"],
        "token": discovery["token_endpoint"],
        "introspect": discovery["introspection_endpoint"],
        "revoke": discovery["revocation_endpoint"],
    }
    assert uris["token"] == "http://127.0.0.1/auth/token"
