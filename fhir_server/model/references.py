"""The syntax of literal references (R4 references.html#literal, bundle.html#references).

Checked inside the compiled schema walk (schema.py), on every `Reference.reference`.
"""

from __future__ import annotations

import re

from fhir_server.errors import Issue

REFERENCE_SYNTAX = "reference-syntax"
# Valid only inside a transaction, which resolves it before anything is stored.
CONDITIONAL_REFERENCE = "reference-conditional"

_RELATIVE = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)/[A-Za-z0-9\-.]{1,64}(/_history/[A-Za-z0-9\-.]{1,64})?$")
_ABSOLUTE = re.compile(r"^(https?://\S+|urn:uuid:[0-9a-fA-F\-]{36}|urn:oid:[0-2](\.(0|[1-9][0-9]*))+)$")
_CONDITIONAL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)\?\S+$")


def reference_issue(reference: str, path: str, resource_types: frozenset[str]) -> Issue | None:
    """The problem with a literal reference, or None when it is well formed."""
    if reference.startswith("#") or _ABSOLUTE.match(reference):
        return None
    relative = _RELATIVE.match(reference)
    if relative:
        if relative["type"] in resource_types:
            return None
        return Issue(f"Reference '{reference}' names an unknown resource type", REFERENCE_SYNTAX, "value", path)
    conditional = _CONDITIONAL.match(reference)
    if conditional and conditional["type"] in resource_types:
        message = f"Conditional reference '{reference}' is only allowed inside a transaction"
        return Issue(message, CONDITIONAL_REFERENCE, "value", path)
    message = f"'{reference}' is not a valid reference (Type/id, an absolute URL, urn:uuid: or #id)"
    return Issue(message, REFERENCE_SYNTAX, "value", path)
