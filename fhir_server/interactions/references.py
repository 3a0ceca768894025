"""Resolving references inside a transaction (R4 bundle.html#references, http.html#trules).

Before any entry runs, every entry that creates or names a resource gets its final identity,
so `urn:uuid:` and fullUrl references can be rewritten to `Type/id`; conditional references
(`Patient?identifier=...`) must match exactly one stored resource.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from fhir_server.access import Visibility
from fhir_server.errors import Invalid, PreconditionFailed
from fhir_server.interactions.bundle_entries import Entry, entry_letter
from fhir_server.interactions.conditional import matches
from fhir_server.interactions.writing import new_id
from fhir_server.store.repository import UnitOfWork

_TAIL = re.compile(r"(?P<ref>[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64})$")
_CONDITIONAL = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)\?(?P<query>.+)$")


Permit = Callable[[str, str | None], Visibility]
"""What the caller may touch for a permission letter on a type (Env.visibility)."""


def assign_identities(uow: UnitOfWork, entries: list[Entry], permit: Permit) -> dict[str, str]:
    identities: dict[str, str] = {}
    for entry in entries:
        uow.visibility = permit(entry_letter(entry), entry.resource_type)
        target = _identity(uow, entry)
        if target and entry.full_url:
            identities[entry.full_url] = target
            tail = _TAIL.search(entry.full_url)
            if "://" in entry.full_url and tail:
                identities[tail["ref"]] = target
    return identities


def _identity(uow: UnitOfWork, entry: Entry) -> str | None:
    if entry.method == "POST":
        if entry.if_none_exist:
            found = matches(uow, entry.resource_type, entry.if_none_exist)
            if len(found) == 1:
                return f"{entry.resource_type}/{found[0].id}"
        entry.assigned_id = new_id()
        return f"{entry.resource_type}/{entry.assigned_id}"
    if entry.method == "PUT" and entry.resource_id:
        return f"{entry.resource_type}/{entry.resource_id}"
    if entry.method == "PUT" and entry.query:
        found = matches(uow, entry.resource_type, entry.query)
        return f"{entry.resource_type}/{found[0].id}" if len(found) == 1 else None
    return None


def rewrite_references(uow: UnitOfWork, entry: Entry, identities: dict[str, str], permit: Permit) -> None:
    if entry.resource is not None and entry.method in ("POST", "PUT"):
        _rewrite(uow, entry.resource, identities, permit)


def _rewrite(uow: UnitOfWork, node: Any, identities: dict[str, str], permit: Permit) -> None:
    if isinstance(node, list):
        for item in node:
            _rewrite(uow, item, identities, permit)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        if key == "reference" and isinstance(value, str):
            node[key] = _resolve(uow, value, identities, permit)
        elif isinstance(value, (dict, list)):
            _rewrite(uow, value, identities, permit)


def _resolve(uow: UnitOfWork, reference: str, identities: dict[str, str], permit: Permit) -> str:
    if reference in identities:
        return identities[reference]
    if reference.startswith("urn:uuid:"):
        raise Invalid(f"Reference '{reference}' names no entry of this transaction", "reference-unresolved")
    conditional = _CONDITIONAL.match(reference)
    if not conditional:
        return reference
    uow.visibility = permit("s", conditional["type"])  # a conditional reference is a search
    found = matches(uow, conditional["type"], conditional["query"])
    if len(found) != 1:
        count = "no" if not found else "more than one"
        raise PreconditionFailed(
            f"Conditional reference '{reference}' matches {count} resource", "conditional-reference-unresolved"
        )
    return f"{conditional['type']}/{found[0].id}"
