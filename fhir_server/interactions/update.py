"""update and conditional update (R4 http.html#update, #cond-update).

Update-as-create is off: ids are the server's, so a PUT to an unknown id answers 405 as
http.html lists for servers that do not allow client-defined ids. A deleted resource may be
updated again, which brings it back with a new version.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Invalid, Issue, MethodNotAllowed, PreconditionFailed
from fhir_server.interactions.auditing import refuse_audit_write
from fhir_server.interactions.conditional import single_match
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.writing import write_new, write_version
from fhir_server.model.validate import require_resource, validate_resource
from fhir_server.store.repository import StoredVersion, UnitOfWork


def update(env: Env, resource_type: str, resource_id: str, body: Any, if_match: int | None = None) -> Result:
    resource = prepare_update(resource_type, body, resource_id)
    with env.store.unit_of_work(env.visibility("u", resource_type)) as uow:
        return update_in(uow, resource, resource_id, if_match)


def prepare_update(
    resource_type: str, body: Any, resource_id: str | None, allow_conditional_references: bool = False
) -> dict[str, Any]:
    refuse_audit_write(resource_type)
    resource = require_resource(body, resource_type)
    if resource_id is not None:
        check_body_id(resource, resource_id)
    validate_resource(resource, allow_conditional_references)
    return resource


def check_body_id(resource: dict[str, Any], resource_id: str) -> None:
    body_id = resource.get("id")
    if body_id is None:
        raise Invalid(
            "The resource must carry the id of the URL",
            "id-missing",
            issues=[Issue("The resource must carry the id of the URL", "id-missing", "required", "id")],
        )
    if body_id != resource_id:
        message = f"The resource id '{body_id}' differs from the id '{resource_id}' in the URL"
        raise Invalid(message, "id-mismatch", issues=[Issue(message, "id-mismatch", "invalid", "id")])


def check_if_match(current: StoredVersion, if_match: int | None) -> None:
    if if_match is not None and current.version_id != if_match:
        raise PreconditionFailed(
            f"If-Match expects version {if_match} but the current version is {current.version_id}",
            "version-mismatch",
        )


def update_in(uow: UnitOfWork, resource: dict[str, Any], resource_id: str, if_match: int | None = None) -> Result:
    current = uow.current(resource["resourceType"], resource_id, for_update=True)
    if current is None:
        raise MethodNotAllowed(
            f"{resource['resourceType']}/{resource_id} does not exist and this server assigns ids itself",
            "update-create-disabled",
        )
    check_if_match(current, if_match)
    return Result(200, write_version(uow, current, resource, "PUT"))


def conditional_update(env: Env, resource_type: str, query: str, body: Any, if_match: int | None = None) -> Result:
    resource = prepare_update(resource_type, body, None)
    with env.store.unit_of_work(env.visibility("u", resource_type)) as uow:
        return conditional_update_in(uow, resource, query, if_match)


def conditional_update_in(uow: UnitOfWork, resource: dict[str, Any], query: str, if_match: int | None = None) -> Result:
    match = single_match(uow, resource["resourceType"], query, "conditional update")
    if match is None:
        if resource.get("id"):
            raise MethodNotAllowed("No resource matches, and this server assigns ids itself", "update-create-disabled")
        return Result(201, write_new(uow, resource), created=True)
    if resource.get("id") is not None:
        check_body_id(resource, match.id)
    return update_in(uow, resource, match.id, if_match)
