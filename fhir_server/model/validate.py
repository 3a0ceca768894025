"""Validation of a resource on every write (R4 validation.html, http.html#update).

Order: the body must be a resource of the expected type; then the R4 JSON Schema (every problem,
with locations, and the syntax of every reference: references.html#literal); then required
elements and the fhir.resources structural rules. Nothing is stored unless all pass.
"""

from __future__ import annotations

from typing import Any

from fhir_server.errors import Invalid, Issue, invalid
from fhir_server.model.definitions import elements
from fhir_server.model.references import CONDITIONAL_REFERENCE
from fhir_server.model.schema import resource_types, validate_against_schema
from fhir_server.model.sensitive import redact_issues
from fhir_server.model.structure import validate_structure
from fhir_server.model.structure import warm_up as warm_structure


def warm_up() -> None:
    """Compile the schema checks and load the models before serving (see schema._compiler)."""
    validate_against_schema({"resourceType": "Patient"}, "Patient")
    warm_structure()
    elements("Patient")


def require_resource(body: Any, expected_type: str | None = None) -> dict[str, Any]:
    """Checks that a parsed body is a resource (of `expected_type`, when given)."""
    if not isinstance(body, dict):
        raise Invalid("The body must be a JSON object holding a resource", "not-a-resource")
    kind = body.get("resourceType")
    if not isinstance(kind, str) or kind not in resource_types():
        raise Invalid(
            f"Unknown resourceType '{kind}'",
            "unknown-resource-type",
            issues=[Issue(f"Unknown resourceType '{kind}'", "unknown-resource-type", "structure", "resourceType")],
        )
    if expected_type and kind != expected_type:
        message = f"The body holds a {kind} but the URL names {expected_type}"
        raise Invalid(
            message,
            "resource-type-mismatch",
            issues=[Issue(message, "resource-type-mismatch", "invalid", "resourceType")],
        )
    return body


def validation_issues(resource: dict[str, Any], allow_conditional_references: bool = False) -> list[Issue]:
    """Every problem of a resource whose resourceType is already known to be an R4 type.

    All stages run, so that one answer lists every problem; a later stage's issue at, above or
    below a location already reported is the same problem seen again, and is left out.
    """
    issues = validate_against_schema(resource, resource["resourceType"])
    if allow_conditional_references:  # resolved by the transaction before anything is stored
        issues = [issue for issue in issues if issue.error_code != CONDITIONAL_REFERENCE]
    later = [*_missing_mandatory(resource), *validate_structure(resource)]
    for issue in later:
        if not any(_related(issue.expression, earlier.expression) for earlier in issues):
            issues.append(issue)
    return redact_issues(issues, resource) if issues else issues  # no phone number quoted back


def _related(first: str | None, second: str | None) -> bool:
    """Whether one location contains the other (or they are the same)."""
    if first is None or second is None:
        return first == second
    shorter, longer = sorted((first, second), key=len)
    return longer == shorter or longer.startswith((shorter + ".", shorter + "["))


def _missing_mandatory(resource: dict[str, Any]) -> list[Issue]:
    """Top-level elements with min >= 1 that are absent (the schema cannot require primitives)."""
    present = {key.lstrip("_") for key in resource}
    missing: dict[str, None] = {}
    for info in elements(resource["resourceType"]).values():
        name = info.choice or info.name
        if info.min >= 1 and name not in missing and not _has(present, info, name):
            missing[name] = None
    kind = resource["resourceType"]
    return [
        Issue(f"Missing required element '{name}'", "required-element-missing", "required", f"{kind}.{name}")
        for name in missing
    ]


def _has(present: set[str], info: Any, name: str) -> bool:
    if info.choice:
        return any(key.startswith(name) and key[len(name) : len(name) + 1].isupper() for key in present)
    return name in present


def validate_resource(resource: dict[str, Any], allow_conditional_references: bool = False) -> None:
    issues = validation_issues(resource, allow_conditional_references)
    if issues:
        raise invalid(issues, f"The {resource['resourceType']} is not valid")
