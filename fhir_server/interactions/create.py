"""create and conditional create (R4 http.html#create, #ccreate)."""

from __future__ import annotations

from typing import Any

from fhir_server.interactions.auditing import refuse_audit_write
from fhir_server.interactions.conditional import single_match
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.writing import write_new
from fhir_server.model.validate import require_resource, validate_resource
from fhir_server.store.repository import UnitOfWork


def create(env: Env, resource_type: str, body: Any, if_none_exist: str | None = None) -> Result:
    resource = prepare_create(resource_type, body)
    with env.store.unit_of_work(env.visibility("c", resource_type)) as uow:
        return create_in(uow, resource, if_none_exist)


def prepare_create(resource_type: str, body: Any, allow_conditional_references: bool = False) -> dict[str, Any]:
    """Checks done before any database work; the client's id is ignored as http.html says."""
    refuse_audit_write(resource_type)
    resource = require_resource(body, resource_type)
    validate_resource(resource, allow_conditional_references)
    return resource


def create_in(
    uow: UnitOfWork, resource: dict[str, Any], if_none_exist: str | None = None, resource_id: str | None = None
) -> Result:
    if if_none_exist:
        existing = single_match(uow, resource["resourceType"], if_none_exist, "If-None-Exist")
        if existing is not None:
            return Result(200, existing)
    return Result(201, write_new(uow, resource, resource_id), created=True)
