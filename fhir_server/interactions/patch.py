"""patch with JSON Patch (RFC 6902) or FHIRPath Patch (R4 http.html#patch, fhirpatch.html).

The patched resource is validated like any update and must keep its type and id.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from fhir_server.errors import BusinessRule, Invalid, Issue
from fhir_server.interactions.auditing import refuse_audit_write
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.read import read_in
from fhir_server.interactions.update import check_if_match
from fhir_server.interactions.writing import write_version
from fhir_server.model.fhirpath_patch import apply_fhirpath_patch
from fhir_server.model.json import parse
from fhir_server.model.sensitive import secrets_of
from fhir_server.model.validate import validate_resource
from fhir_server.store.repository import UnitOfWork

JSON_PATCH = "json-patch"
FHIRPATH_PATCH = "fhirpath-patch"


def patch(
    env: Env, resource_type: str, resource_id: str, document: Any, kind: str, if_match: int | None = None
) -> Result:
    refuse_audit_write(resource_type)
    with env.store.unit_of_work(env.visibility("u", resource_type)) as uow:
        return patch_in(uow, resource_type, resource_id, document, kind, if_match)


def patch_in(
    uow: UnitOfWork, resource_type: str, resource_id: str, document: Any, kind: str, if_match: int | None = None
) -> Result:
    refuse_audit_write(resource_type)
    current = read_in(uow, resource_type, resource_id)
    check_if_match(current, if_match)
    assert current.content is not None
    patched = apply_patch(parse(current.content), document, kind)
    if patched.get("resourceType") != resource_type or patched.get("id") != resource_id:
        raise BusinessRule("A patch may not change the resource type or id", "patch-changes-identity")
    validate_resource(patched)
    return Result(200, write_version(uow, current, patched, "PATCH"))


def apply_patch(resource: dict[str, Any], document: Any, kind: str) -> dict[str, Any]:
    if kind == FHIRPATH_PATCH:
        return apply_fhirpath_patch(resource, document)
    if not isinstance(document, list):
        raise Invalid("A JSON Patch document is a JSON array of operations", "patch-invalid")
    try:
        result = jsonpatch.apply_patch(copy.deepcopy(resource), document)
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException, TypeError, KeyError) as exc:
        # a failed `test` operation quotes the value it found: never a protected one (model/sensitive.py)
        message = f"The JSON Patch cannot be applied: {secrets_of(resource).redact(str(exc))}"
        raise Invalid(message, "patch-invalid", issues=[Issue(message, "patch-invalid", "processing")]) from None
    if not isinstance(result, dict):
        raise Invalid("The JSON Patch does not produce a resource", "patch-invalid")
    return result
