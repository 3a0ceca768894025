"""The one access policy: from an access context and the interaction asked for to the rows the
caller may touch (DESIGN.md section 3; SMART App Launch 2.x scopes-and-launch-context.html).

A SMART interaction needs a scope granting its letter on the resource type: `c` create, `r`
read/vread/instance history, `u` update/patch, `d` delete, `s` search and type/system history.
None: 403 (the type lacks the interaction). Each granting scope becomes a `Grant`: a `patient/`
scope reaches the launch patient's compartment only; a granular scope adds its search; `user/`
and `system/` scopes reach the rows of the type (the clinic and consent rules narrow these
further). A resource outside every grant is simply not there: 404, as if it never existed.
"""

from __future__ import annotations

from fhir_server.access import AccessContext, Grant, Visibility
from fhir_server.auth.scopes import ResourceScope, parsed_resource_scopes
from fhir_server.errors import Forbidden

UNRESTRICTED = Visibility(unrestricted=True)
INTERACTION_LETTERS = {
    "create": "c",
    "read": "r",
    "vread": "r",
    "history-instance": "r",
    "update": "u",
    "patch": "u",
    "delete": "d",
    "search": "s",
    "history-type": "s",
    "history-system": "s",
}


def visibility(context: AccessContext, letter: str, resource_type: str | None) -> Visibility:
    """What `context` may touch when doing an interaction of `letter` on `resource_type`
    (None: a system-level interaction over every type its grants allow)."""
    if context.kind == "local-operator":
        return UNRESTRICTED
    grants = tuple(
        grant
        for scope in resource_scopes(context)
        if scope.permits(resource_type, letter) and (grant := _grant(context, scope, resource_type)) is not None
    )
    if not grants:
        what = resource_type or "any resource type"
        raise Forbidden(f"The access token does not permit '{letter}' on {what}", "scope-insufficient")
    return Visibility(grants=grants)


def resource_scopes(context: AccessContext) -> list[ResourceScope]:
    """The context's resource scopes (a malformed one, which the authorization server never
    grants, grants nothing)."""
    return list(parsed_resource_scopes(sorted(context.scopes)))


def _grant(context: AccessContext, scope: ResourceScope, resource_type: str | None) -> Grant | None:
    if scope.context == "patient":
        if context.patient is None:
            return None  # a patient scope without a patient in context reaches nothing
        return Grant(scope.resource_type, patient=context.patient, query=scope.query)
    return Grant(scope.resource_type, query=scope.query)
