"""delete and conditional delete (R4 http.html#delete, #cdelete).

Deletion is always soft: a new version marked deleted, so reads answer 410 and history keeps
every version. Deleting a resource that does not exist (or is already deleted) succeeds without
change, as http.html allows.
"""

from __future__ import annotations

from fhir_server.errors import information
from fhir_server.interactions.auditing import refuse_audit_write
from fhir_server.interactions.conditional import single_match
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.update import check_if_match
from fhir_server.interactions.writing import write_deletion
from fhir_server.store.repository import UnitOfWork


def delete(env: Env, resource_type: str, resource_id: str, if_match: int | None = None) -> Result:
    refuse_audit_write(resource_type)
    with env.store.unit_of_work(env.visibility("d", resource_type)) as uow:
        return delete_in(uow, resource_type, resource_id, if_match)


def delete_in(uow: UnitOfWork, resource_type: str, resource_id: str, if_match: int | None = None) -> Result:
    refuse_audit_write(resource_type)
    current = uow.current(resource_type, resource_id, for_update=True)
    if current is None or current.deleted:
        return Result(
            200, body=information(f"{resource_type}/{resource_id} does not exist; nothing deleted", "nothing-deleted")
        )
    check_if_match(current, if_match)
    stored = write_deletion(uow, current)
    return Result(
        200,
        body=information(f"{resource_type}/{resource_id} deleted", "deleted"),
        headers={"ETag": f'W/"{stored.version_id}"'},
    )


def conditional_delete(env: Env, resource_type: str, query: str) -> Result:
    refuse_audit_write(resource_type)
    with env.store.unit_of_work(env.visibility("d", resource_type)) as uow:
        return conditional_delete_in(uow, resource_type, query)


def conditional_delete_in(uow: UnitOfWork, resource_type: str, query: str) -> Result:
    refuse_audit_write(resource_type)
    match = single_match(uow, resource_type, query, "conditional delete")
    if match is None:
        return Result(200, body=information("No resource matches; nothing deleted", "nothing-deleted"))
    return delete_in(uow, resource_type, match.id)
