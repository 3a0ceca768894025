"""The codes an AuditEvent is built from: R4 terminology (auditevent.html), DICOM audit roles and
the IHE Basic Audit Log Patterns (BALP 1.1, profiles.ihe.net/ITI/BALP), and the platform's own
codes where no standard code says it (the clinic a user acts for, impersonation by a platform
admin, the kinds of principal and clinic roles), published in conformance/CodeSystem-*.json."""

from __future__ import annotations

from typing import Any

RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
EVENT_TYPE_REST = {
    "system": "http://terminology.hl7.org/CodeSystem/audit-event-type",
    "code": "rest",
    "display": "Restful Operation",
}

# AuditEvent.action (R4 audit-event-action) of each interaction; writes that create say C.
ACTIONS = {
    "create": "C",
    "read": "R",
    "vread": "R",
    "history-instance": "R",
    "history-type": "R",
    "history-system": "R",
    "update": "U",
    "patch": "U",
    "delete": "D",
    "search-type": "E",
    "search-system": "E",
    "batch": "E",
    "transaction": "E",
    "operation": "E",
    "capabilities": "E",
}

# AuditEvent.outcome (R4 audit-event-outcome).
SUCCESS, MINOR_FAILURE, SERIOUS_FAILURE, MAJOR_FAILURE = "0", "4", "8", "12"

_DCM = "http://dicom.nema.org/resources/ontology/DCM"
_PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
APPLICATION = {"system": _DCM, "code": "110150", "display": "Application"}
DESTINATION_ROLE = {"system": _DCM, "code": "110152", "display": "Destination Role ID"}
SOURCE_ROLE = {"system": _DCM, "code": "110153", "display": "Source Role ID"}
# BALP: the user is the information recipient of reads and queries, the author of changes.
RECIPIENT = {"system": _PARTICIPATION, "code": "IRCP", "display": "information recipient"}
AUTHOR = {"system": _PARTICIPATION, "code": "AUT", "display": "author (originator)"}

_ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
_OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PERSON = {"system": _ENTITY_TYPE, "code": "1", "display": "Person"}
SYSTEM_OBJECT = {"system": _ENTITY_TYPE, "code": "2", "display": "System Object"}
PATIENT_ROLE = {"system": _OBJECT_ROLE, "code": "1", "display": "Patient"}
DOMAIN_RESOURCE_ROLE = {"system": _OBJECT_ROLE, "code": "4", "display": "Domain Resource"}
QUERY_ROLE = {"system": _OBJECT_ROLE, "code": "24", "display": "Query"}
REQUEST_ID = {
    "system": "https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType",
    "code": "XrequestId",
    "display": "transport specific unique identifier where http X-Request-Id is used",
}
APPLICATION_SERVER = {
    "system": "http://terminology.hl7.org/CodeSystem/security-source-type",
    "code": "4",
    "display": "Application Server",
}
# AuditEvent.entity.lifecycle (R4 object-lifecycle-events) of each resource a transaction touched.
_LIFECYCLE = "http://terminology.hl7.org/CodeSystem/dicom-audit-lifecycle"
LIFECYCLES = {
    "C": {"system": _LIFECYCLE, "code": "1", "display": "Origination / Creation"},
    "U": {"system": _LIFECYCLE, "code": "3", "display": "Amendment"},
    "R": {"system": _LIFECYCLE, "code": "6", "display": "Access / Use"},
    "D": {"system": _LIFECYCLE, "code": "14", "display": "Logical deletion"},
}
# AuditEvent.agent.network.type (R4 network-type).
MACHINE_NAME, IP_ADDRESS, URI = "1", "2", "5"

# The platform's own codes (conformance/CodeSystem-audit-agent.json, -principal-kind, -clinic-role).
AGENT_SYSTEM = "http://fhir-server.dev/CodeSystem/audit-agent"
CLINIC_AGENT = {"system": AGENT_SYSTEM, "code": "clinic", "display": "Clinic the user acts for"}
IMPERSONATOR = {
    "system": AGENT_SYSTEM,
    "code": "impersonator",
    "display": "Platform admin acting as the user (impersonation, RFC 8693 act)",
}
IMPERSONATED = {"system": AGENT_SYSTEM, "code": "impersonated", "display": "User impersonated by a platform admin"}
PRINCIPAL_KIND_SYSTEM = "http://fhir-server.dev/CodeSystem/principal-kind"
CLINIC_ROLE_SYSTEM = "http://fhir-server.dev/CodeSystem/clinic-role"
# Identifier namespaces: account ids of this server's users, client ids of its OAuth clients; and
# the names of this server's $operations (ops/registry.py) as codes.
ACCOUNT_SYSTEM = "urn:fhir-server:account"
CLIENT_SYSTEM = "urn:fhir-server:client"
OPERATION_SYSTEM = "urn:fhir-server:operation"


def concept(*codings: dict[str, Any]) -> dict[str, Any]:
    return {"coding": list(codings)}
