"""AuditEvent content for one FHIR interaction (R4 auditevent.html), following the IHE Basic Audit
Log Patterns (BALP 1.1: Read, Query, Create, Update, Delete and their Patient variants).

Plain dicts, nothing else: this module knows no store and no request. Its input is an
`AuditRecord` (what was done, to what, about which patients, with which outcome) and the caller's
`AccessContext` (who); its output is the AuditEvent the interactions store.

- `type` rest, `subtype` the restful-interaction code (plus `batch` for a batch entry, and the
  operation's name for an `$operation`), `action` C/R/U/D/E, `recorded`,
  `outcome` 0/4/8 with `outcomeDesc` on failure.
- agents: the user (requestor; `who` is their fhirUser and their account id; `role` their kind
  and clinic role), the clinic they act for (`Organization/<clinic>`), under impersonation the
  platform admin as a further agent marked `impersonator` (then the requestor, the user being
  marked `impersonated`), the client application with its network address, and the server.
  BALP's directions: for reads the client is the destination and the server the source; for
  queries and changes the other way round.
- entities: each resource touched (`Type/id/_history/n`, System Object, Domain Resource; in a
  transaction's event with the `lifecycle` step done to it: creation, amendment, access, logical
  deletion), each patient concerned (`Patient/id`, Person, Patient: what `AuditEvent?patient=`
  and the Patient compartment match), the search request base64-encoded (Query; never the
  results), and the request id (BALP XrequestId).
"""

from __future__ import annotations

import base64
import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from fhir_server.access import AccessContext
from fhir_server.audit import codes
from fhir_server.audit.codes import concept

MAX_DESCRIPTION = 1000


@dataclass(frozen=True)
class Touched:
    """A resource an interaction touched; `id` None when none was assigned (a refused create);
    `action` (C/R/U/D) what was done to it, where the event's own action does not say (a
    transaction's entries)."""

    resource_type: str
    id: str | None = None
    version: int | None = None
    action: str | None = None

    def reference(self) -> dict[str, Any]:
        if self.id is None:
            return {"type": self.resource_type}
        suffix = f"/_history/{self.version}" if self.version is not None else ""
        return {"reference": f"{self.resource_type}/{self.id}{suffix}"}


@dataclass(frozen=True)
class AuditRecord:
    """What one interaction did: `subtype` is its restful-interaction code, `action` C/R/U/D/E."""

    subtype: str
    action: str
    touched: tuple[Touched, ...] = ()
    patients: tuple[str, ...] = ()
    query: str | None = None  # the search request, as a relative URL with every parameter
    operation: str | None = None  # an $operation's name, without the `$`
    bundle: str | None = None  # "batch" or "transaction" for a Bundle entry
    outcome: str = codes.SUCCESS
    outcome_desc: str | None = None


def audit_event(
    record: AuditRecord, access: AccessContext, *, recorded: str, server: str, request_id: str | None = None
) -> dict[str, Any]:
    """The AuditEvent (without id and meta) for `record`, done by `access`, seen by `server` (the
    FHIR base URL) at `recorded` (an instant)."""
    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "type": codes.EVENT_TYPE_REST,
        "subtype": _subtype(record),
        "action": record.action,
        "recorded": recorded,
        "outcome": record.outcome,
    }
    if record.outcome_desc:
        event["outcomeDesc"] = record.outcome_desc[:MAX_DESCRIPTION]
    event["agent"] = _agents(record.action, access, server)
    event["source"] = _source(server)
    entities = _entities(record, request_id)
    if entities:
        event["entity"] = entities
    return event


def _subtype(record: AuditRecord) -> list[dict[str, Any]]:
    subtype = [{"system": codes.RESTFUL_INTERACTION, "code": record.subtype}]
    if record.bundle and record.bundle != record.subtype:
        subtype.append({"system": codes.RESTFUL_INTERACTION, "code": record.bundle})
    if record.operation:
        subtype.append({"system": codes.OPERATION_SYSTEM, "code": record.operation})
    return subtype


def _agents(action: str, access: AccessContext, server: str) -> list[dict[str, Any]]:
    reads = action == "R"
    impersonated = access.acting_admin is not None
    agents = [_user(access, action, requestor=not impersonated)]
    if access.clinic_id:
        agents.append(
            {
                "type": concept(codes.CLINIC_AGENT),
                "who": {"reference": f"Organization/{access.clinic_id}"},
                "requestor": False,
            }
        )
    if access.acting_admin is not None:
        agents.append(
            {
                "type": concept(codes.IMPERSONATOR),
                "role": [concept(codes.IMPERSONATOR), _kind("platform-admin")],
                "who": {"identifier": {"system": codes.ACCOUNT_SYSTEM, "value": access.acting_admin}},
                "requestor": True,
            }
        )
    agents.append(_client(access, codes.DESTINATION_ROLE if reads else codes.SOURCE_ROLE))
    agents.append(_server(server, codes.SOURCE_ROLE if reads else codes.DESTINATION_ROLE))
    return agents


def _user(access: AccessContext, action: str, requestor: bool) -> dict[str, Any]:
    system = codes.CLIENT_SYSTEM if access.kind == "backend-service" else codes.ACCOUNT_SYSTEM
    who: dict[str, Any] = {"identifier": {"system": system, "value": access.principal}}
    if access.fhir_user:
        who["reference"] = access.fhir_user
    if access.kind == "backend-service":
        kind = codes.APPLICATION
    else:
        kind = codes.RECIPIENT if action in ("R", "E") else codes.AUTHOR
    roles = [_kind(access.kind)]
    if access.role:
        roles.append(concept({"system": codes.CLINIC_ROLE_SYSTEM, "code": access.role}))
    if not requestor:
        roles.append(concept(codes.IMPERSONATED))
    return {"type": concept(kind), "role": roles, "who": who, "requestor": requestor}


def _kind(kind: str) -> dict[str, Any]:
    return concept({"system": codes.PRINCIPAL_KIND_SYSTEM, "code": kind})


def _client(access: AccessContext, role: dict[str, Any]) -> dict[str, Any]:
    if access.client_id:
        who: dict[str, Any] = {"identifier": {"system": codes.CLIENT_SYSTEM, "value": access.client_id}}
    else:
        who = {"display": "no client application (local operator)"}
    agent: dict[str, Any] = {"type": concept(role), "who": who, "requestor": False}
    if access.client_address:
        agent["network"] = {"address": access.client_address, "type": _address_type(access.client_address)}
    return agent


@lru_cache(maxsize=4096)
def _address_type(address: str) -> str:
    try:
        ipaddress.ip_address(address)
    except ValueError:
        return codes.MACHINE_NAME
    return codes.IP_ADDRESS


def _server(server: str, role: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": concept(role),
        "who": {"display": "FHIR server"},  # named by its network address below, and by source.site
        "requestor": False,
        "network": {"address": server, "type": codes.URI},
    }


def _source(server: str) -> dict[str, Any]:
    return {
        "site": server,
        "observer": {"display": "FHIR server"},
        "type": [codes.APPLICATION_SERVER],
    }


def _entities(record: AuditRecord, request_id: str | None) -> list[dict[str, Any]]:
    entities: list[dict[str, Any]] = []
    for touched in record.touched:
        entity = {"what": touched.reference(), "type": codes.SYSTEM_OBJECT, "role": codes.DOMAIN_RESOURCE_ROLE}
        if touched.action in codes.LIFECYCLES:
            entity["lifecycle"] = codes.LIFECYCLES[touched.action]
        entities.append(entity)
    entities.extend(
        {"what": {"reference": f"Patient/{patient}"}, "type": codes.PERSON, "role": codes.PATIENT_ROLE}
        for patient in record.patients
    )
    if record.query:
        encoded = base64.b64encode(record.query.encode()).decode()
        entities.append({"type": codes.SYSTEM_OBJECT, "role": codes.QUERY_ROLE, "query": encoded})
    if request_id:
        entities.append({"what": {"identifier": {"value": request_id}}, "type": codes.REQUEST_ID})
    return entities
