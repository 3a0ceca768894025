"""$validate at type and instance level (R4 resource-operation-validate.html).

The answer is always 200 with an OperationOutcome: its issues say whether the resource is valid,
for the given `mode` (create, update, delete). Nothing is stored.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Invalid, Issue, NotSupported, information, outcome
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.read import read_in
from fhir_server.model.json import parse
from fhir_server.model.validate import require_resource, validation_issues
from fhir_server.ops.registry import Operation, register

_MODES = {None, "create", "update", "delete"}


def validate(
    env: Env, resource_type: str | None, resource_id: str | None, body: Any, params: list[tuple[str, str]]
) -> Result:
    assert resource_type is not None
    resource, mode, profile = _arguments(body, dict(params))
    if profile:
        raise NotSupported("Validation against a named profile is not supported yet", "profile-unsupported")
    if mode not in _MODES:
        raise Invalid(f"Unknown $validate mode '{mode}'", "validate-mode-invalid")
    with env.store.unit_of_work(env.visibility("r" if resource_id else "c", resource_type), read_only=True) as uow:
        stored = read_in(uow, resource_type, resource_id) if resource_id else None
    if resource is None:
        if stored is None or stored.content is None:
            raise Invalid("$validate needs a resource to validate", "validate-resource-missing")
        resource = parse(stored.content)
    issues = _issues(resource, resource_type, resource_id, mode)
    if not issues:
        return Result(200, body=information("Validation successful: no issues found", "valid"))
    return Result(200, body=outcome(issues))


def _arguments(body: Any, params: dict[str, str]) -> tuple[dict[str, Any] | None, str | None, str | None]:
    mode, profile = params.get("mode"), params.get("profile")
    if isinstance(body, dict) and body.get("resourceType") == "Parameters":
        resource = None
        for parameter in body.get("parameter") or []:
            name = parameter.get("name")
            if name == "resource":
                resource = parameter.get("resource")
            elif name == "mode":
                mode = parameter.get("valueCode")
            elif name == "profile":
                profile = parameter.get("valueUri") or parameter.get("valueCanonical")
        return resource, mode, profile
    return body, mode, profile


def _issues(resource: Any, resource_type: str, resource_id: str | None, mode: str | None) -> list[Issue]:
    if mode == "delete":
        return []
    try:
        resource = require_resource(resource, resource_type)
    except Invalid as error:
        return error.issues
    issues = validation_issues(resource)
    if mode == "update" and resource.get("id") != resource_id:
        issues.append(
            Issue("For mode=update the resource must carry the id of the URL", "id-mismatch", "invalid", "id")
        )
    return issues


VALIDATE = register(
    Operation(
        name="validate",
        definition="http://hl7.org/fhir/OperationDefinition/Resource-validate",
        handler=validate,
        type_level=True,
        instance_level=True,
    )
)
