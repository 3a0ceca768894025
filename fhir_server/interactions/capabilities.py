"""The CapabilityStatement, generated from what is implemented (R4 capabilitystatement.html).

Nothing here is hand-listed per type: every R4 resource type gets the interactions the
interaction modules implement, and the operations come from the operation registry.
`rest.security` names the SMART authorization server (SMART App Launch 1.0
conformance.html#declaring-support-for-oauth2-endpoints: the `oauth-uris` extension, still read by
clients such as fhirclient; 2.x clients use `.well-known/smart-configuration`).
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from fhir_server.interactions.auditing import AUDIT_EVENT
from fhir_server.model.schema import resource_types
from fhir_server.search import capability
from fhir_server.search.params import SearchParam
from fhir_server.search.registry import generation

FHIR_VERSION = "4.0.1"
SOFTWARE_VERSION = "0.1.0"
TYPE_INTERACTIONS = (
    "read",
    "vread",
    "update",
    "patch",
    "delete",
    "history-instance",
    "history-type",
    "create",
    "search-type",
)
SYSTEM_INTERACTIONS = ("transaction", "batch", "history-system", "search-system")
# Types only the server writes (interactions/auditing.py): read, searched, never changed by clients.
READ_ONLY_TYPES = frozenset({AUDIT_EVENT})
_WRITES = frozenset({"create", "update", "patch", "delete"})
FORMATS = ("application/fhir+json", "application/fhir+xml", "json", "xml")
PATCH_FORMATS = ("application/json-patch+json", "application/fhir+json", "application/fhir+xml")
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
OAUTH_ENDPOINTS = ("authorize", "token", "introspect", "revoke")
SMART_SERVICE = {
    "coding": [
        {
            "system": "http://terminology.hl7.org/CodeSystem/restful-security-service",
            "code": "SMART-on-FHIR",
            "display": "SMART-on-FHIR",
        }
    ],
    "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)",
}


def capability_statement(base_url: str, oauth_base: str, operations: Iterable[Any], published: str) -> dict[str, Any]:
    """`oauth_base` is where the OAuth endpoints live, e.g. http://127.0.0.1:8080/auth."""
    return _statement(base_url, oauth_base, tuple(operations), published, generation())


@lru_cache(maxsize=16)
def _statement(
    base_url: str, oauth_base: str, operations: tuple[Any, ...], published: str, _generation: int
) -> dict[str, Any]:
    """Cached per registry generation: a custom SearchParameter changes what is listed."""
    system_operations = [op for op in operations if op.system_level]
    rest: dict[str, Any] = {
        "mode": "server",
        "security": _security(oauth_base),
        "resource": [_resource(kind, list(operations)) for kind in sorted(resource_types())],
        "interaction": [{"code": code} for code in SYSTEM_INTERACTIONS],
    }
    if system_operations:
        rest["operation"] = _operations(system_operations)
    # Parameters of every type that no SearchParameter resource defines (search.html#filter, #list).
    rest["searchParam"] = [
        {
            "name": "_filter",
            "type": "special",
            "documentation": "search_filter.html: eq ne co sw ew gt lt ge le "
            "sa eb ap pr po ss sb in ni re, and/or/not, parentheses",
        },
        {"name": "_list", "type": "special", "documentation": "resources referenced by the entries of a List"},
    ]
    return {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": published,
        "kind": "instance",
        "software": {"name": "fhir-server", "version": SOFTWARE_VERSION},
        "implementation": {"description": "FHIR R4 server for multi-clinic patient platforms", "url": base_url},
        "fhirVersion": FHIR_VERSION,
        "format": list(FORMATS),
        "patchFormat": list(PATCH_FORMATS),
        "rest": [rest],
    }


def _security(oauth_base: str) -> dict[str, Any]:
    uris = [{"url": name, "valueUri": f"{oauth_base}/{name}"} for name in OAUTH_ENDPOINTS]
    return {
        "extension": [{"url": OAUTH_URIS, "extension": uris}],
        "cors": False,
        "service": [SMART_SERVICE],
        "description": "Bearer access tokens from the built-in SMART on FHIR authorization server; "
        "discovery at [base]/.well-known/smart-configuration",
    }


def _resource(kind: str, operations: list[Any]) -> dict[str, Any]:
    read_only = kind in READ_ONLY_TYPES
    entry: dict[str, Any] = {
        "type": kind,
        "profile": f"http://hl7.org/fhir/StructureDefinition/{kind}",
        "interaction": [{"code": code} for code in TYPE_INTERACTIONS if not (read_only and code in _WRITES)],
        "versioning": "versioned-update",
        "readHistory": True,
        "updateCreate": False,
        "conditionalCreate": not read_only,
        "conditionalRead": "full-support",
        "conditionalUpdate": not read_only,
        "conditionalDelete": "not-supported" if read_only else "single",
    }
    if read_only:
        entry["documentation"] = "Recorded by the server for every interaction (IHE BALP); read-only"
    includes = capability.includes(kind)
    if includes:
        entry["searchInclude"] = includes
    revincludes = capability.revincludes(kind)
    if revincludes:
        entry["searchRevInclude"] = list(revincludes)
    entry["searchParam"] = [_search_param(param) for param in capability.searchable(kind)]
    type_operations = [op for op in operations if (op.type_level or op.instance_level) and op.applies_to(kind)]
    if type_operations:
        entry["operation"] = _operations(type_operations)
    return entry


def _search_param(param: SearchParam) -> dict[str, Any]:
    described: dict[str, Any] = {"name": param.code, "type": param.type}
    if param.url:
        described["definition"] = param.url
    modifiers = capability.modifiers(param)
    if modifiers:
        described["documentation"] = "Modifiers: " + ", ".join(f":{name}" for name in modifiers)
    return described


def _operations(operations: list[Any]) -> list[dict[str, Any]]:
    return [{"name": op.name, "definition": op.definition} for op in operations]
