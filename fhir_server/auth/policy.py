"""The one access policy: from an access context to the rows it may see (DESIGN.md section 3)."""

from __future__ import annotations

from fhir_server.access import AccessContext, Visibility


def visibility(context: AccessContext) -> Visibility:
    return Visibility(unrestricted=context.kind == "local-operator")
