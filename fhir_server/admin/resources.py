"""FHIR resources behind administrative records: a clinic is an Organization tagged as a platform
clinic; an account's `fhirUser` is a Patient or Practitioner (R4 organization.html,
patient.html, practitioner.html). Written through the create interaction like any other write."""

from __future__ import annotations

from typing import Any

from fhir_server.access import LOCAL_OPERATOR, AccessContext
from fhir_server.interactions import create
from fhir_server.interactions.context import Env
from fhir_server.settings import Settings
from fhir_server.store.repository import Store

PLATFORM_TAG_SYSTEM = "urn:fhir-server:platform"
CLINIC_TAG = {"system": PLATFORM_TAG_SYSTEM, "code": "clinic", "display": "Clinic hosted on this platform"}


def _env(store: Store, settings: Settings, clinic: str | None) -> Env:
    """The platform operator, or with `clinic` the clinic itself (as its backend service would be):
    what it creates is then that clinic's record (interactions/ownership.py)."""
    access = LOCAL_OPERATOR
    if clinic is not None:
        scopes = frozenset({"system/*.cruds"})
        access = AccessContext(principal=f"setup:{clinic}", kind="backend-service", clinic_id=clinic, scopes=scopes)
    return Env(store, settings, access, settings.public_base_url or f"http://127.0.0.1:8080{settings.base_path}")


def create_resource(store: Store, settings: Settings, resource: dict[str, Any], clinic: str | None = None) -> str:
    result = create.create(_env(store, settings, clinic), resource["resourceType"], resource)
    assert result.version is not None
    return result.version.id


def create_clinic(store: Store, settings: Settings, name: str) -> str:
    organization = {"resourceType": "Organization", "meta": {"tag": [CLINIC_TAG]}, "active": True, "name": name}
    return create_resource(store, settings, organization)


def create_person(
    store: Store,
    settings: Settings,
    resource_type: str,
    given: str | None,
    family: str | None,
    clinic: str | None = None,
) -> str:
    name: dict[str, Any] = {}
    if given:
        name["given"] = [given]
    if family:
        name["family"] = family
    resource: dict[str, Any] = {"resourceType": resource_type}
    if name:
        resource["name"] = [name]
    return create_resource(store, settings, resource, clinic)
