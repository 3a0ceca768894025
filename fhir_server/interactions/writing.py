"""The steps every write shares: server-assigned id and meta, index rows, one new version.

R4 http.html#create and #update: the server assigns the id (a UUID here), `meta.versionId` and
`meta.lastUpdated`; whatever the client sent in those is replaced.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from fhir_server.auth import policy
from fhir_server.errors import Conflict, Forbidden
from fhir_server.interactions import auditing, custom_params
from fhir_server.interactions.ownership import access_fact, check_access_fact, owners
from fhir_server.model.json import dumps
from fhir_server.search.indexing import index_rows
from fhir_server.store.repository import StoredVersion, UnitOfWork


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds") + "Z"


def stamp(resource: dict[str, Any], resource_id: str, version_id: int, moment: datetime) -> bytes:
    """The stored JSON: resourceType, id and meta first, the rest as given."""
    meta = {
        key: value for key, value in (resource.get("meta") or {}).items() if key not in ("versionId", "lastUpdated")
    }
    ordered = {
        "resourceType": resource["resourceType"],
        "id": resource_id,
        "meta": {"versionId": str(version_id), "lastUpdated": instant(moment), **meta},
    }
    ordered.update((key, value) for key, value in resource.items() if key not in ordered)
    return dumps(ordered)


def new_id() -> str:
    return str(uuid.uuid4())


def _before_write(uow: UnitOfWork, resource: dict[str, Any]) -> None:
    """Custom search parameters: refuse unusable definitions, and index with the current set."""
    if resource["resourceType"] == "SearchParameter":
        custom_params.check_definition(resource)
    custom_params.sync(uow)


def _require_within_grants(uow: UnitOfWork, stored: StoredVersion) -> None:
    """A write must land inside what the caller may touch (SMART: a patient-scoped token writes
    only into its patient's compartment; a granular scope only what matches its search). Checked
    on the written row with the same predicates as reads; raising undoes the transaction."""
    if not uow.is_visible(stored.resource_type, stored.id):
        message = f"This {stored.resource_type} would lie outside what the access token permits"
        raise Forbidden(message, "scope-write-outside")


FACT_TYPES = ("EpisodeOfCare", "Consent")


def _record_access_fact(uow: UnitOfWork, resource_id: str, resource: dict[str, Any]) -> None:
    """Registrations and profile-sharing consents, as the policy reads them (ownership.py)."""
    if resource["resourceType"] not in FACT_TYPES:
        return
    fact = access_fact(resource)
    check_access_fact(fact, uow.visibility)
    # Else any clinic could register any Patient id at itself and read the name (the name-only
    # view): one refusal for unknown and hidden patients alike.
    clinic = uow.visibility.acting_clinic
    if fact is not None and fact.kind == "registration" and clinic is not None and not uow.visibility.unrestricted:
        _check_registrable(uow, fact.patient, clinic)
    values = None
    if fact is not None:
        values = {"patient_id": fact.patient, "clinic_id": fact.clinic, "active": fact.active}
        values |= {"starts": fact.starts, "ends": fact.ends}
    uow.replace_access_fact(fact.kind if fact else None, resource_id, values)


def _check_registrable(uow: UnitOfWork, patient: str, clinic: str) -> None:
    if not uow.may_register(patient, policy.clinic_holdings(clinic), clinic):
        message = "A clinic registers only patients it recorded, or who registered with it"
        raise Forbidden(message, "registration-forbidden")


def write_new(uow: UnitOfWork, resource: dict[str, Any], resource_id: str | None = None) -> StoredVersion:
    _before_write(uow, resource)
    resource_type = resource["resourceType"]
    resource_id = resource_id or new_id()
    moment = utc_now()
    owned = owners(resource, resource_id, uow.visibility, None)
    stored = StoredVersion(
        resource_type, resource_id, 1, moment, False, stamp(resource, resource_id, 1, moment), "POST", **owned
    )
    uow.create(stored)
    uow.replace_index(resource_type, resource_id, index_rows(resource, uow.protection.fields), fresh=True)
    _record_access_fact(uow, resource_id, resource)
    _require_within_grants(uow, stored)
    custom_params.written(uow, resource)
    auditing.written(uow, stored, resource)  # the AuditEvent, in this same transaction
    return stored


def write_version(uow: UnitOfWork, current: StoredVersion, resource: dict[str, Any], method: str) -> StoredVersion:
    _before_write(uow, resource)
    version_id = current.version_id + 1
    moment = max(utc_now(), current.last_updated)
    content = stamp(resource, current.id, version_id, moment)
    owned = owners(resource, current.id, uow.visibility, current)
    stored = StoredVersion(current.resource_type, current.id, version_id, moment, False, content, method, **owned)
    if not uow.replace(stored, current.version_id):
        raise Conflict(f"{current.resource_type}/{current.id} was changed concurrently", "version-conflict")
    uow.replace_index(current.resource_type, current.id, index_rows(resource, uow.protection.fields))
    _record_access_fact(uow, current.id, resource)
    _require_within_grants(uow, stored)
    custom_params.written(uow, resource)
    auditing.written(uow, stored, resource)  # the AuditEvent, in this same transaction
    return stored


def write_deletion(uow: UnitOfWork, current: StoredVersion) -> StoredVersion:
    """Soft delete: a new version marked deleted; every earlier version stays in history."""
    moment = max(utc_now(), current.last_updated)
    stored = replace(
        current, version_id=current.version_id + 1, last_updated=moment, deleted=True, content=None, method="DELETE"
    )
    if not uow.replace(stored, current.version_id):
        raise Conflict(f"{current.resource_type}/{current.id} was changed concurrently", "version-conflict")
    uow.replace_index(current.resource_type, current.id, [])
    if current.resource_type in FACT_TYPES:  # a deleted registration or consent stops applying at once
        uow.replace_access_fact(None, current.id, None)
    if current.resource_type == "SearchParameter":
        custom_params.sync(uow, force=True)  # a deleted custom parameter stops applying at once
    auditing.written(uow, stored, previous=current)  # the AuditEvent, in this same transaction
    return stored
