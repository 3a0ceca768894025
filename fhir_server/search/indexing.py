"""Index rows extracted on every write (search.html#ptypes).

For now the `identifier` token of every type that has a top-level `identifier` element, which
conditional interactions match on; the search issue replaces this with extraction driven by the
official SearchParameter expressions.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.model.schema import schema_definitions
from fhir_server.search.clauses import IndexRow


@cache
def has_identifier(resource_type: str) -> bool:
    definition = schema_definitions().get(resource_type, {})
    return "identifier" in definition.get("properties", {})


def index_rows(resource: dict[str, Any]) -> list[IndexRow]:
    identifiers = resource.get("identifier")
    if isinstance(identifiers, dict):
        identifiers = [identifiers]
    rows: list[IndexRow] = []
    for identifier in identifiers or ():
        if isinstance(identifier, dict) and (identifier.get("value") or identifier.get("system")):
            rows.append(
                IndexRow("token", "identifier", {"system": identifier.get("system"), "code": identifier.get("value")})
            )
    return rows
