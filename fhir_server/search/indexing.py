"""Index rows extracted on every write (search.html#ptypes).

Every parameter of the resource's type with an index table is extracted (extract.py), except
`_id` and `_lastUpdated`: the resource table holds the server-assigned id and lastUpdated
(which the resource handed to indexing does not carry yet), and searches on them use it. The
full-text parameters `_content` and `_text` have no expression: their rows come from one pass
over the resource (fulltext.py). Protected values (model/sensitive.py) appear in no row in clear.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from fhir_server.model.schema import schema_definitions
from fhir_server.model.sensitive import DEFAULT_FIELDS, SensitiveFields, secrets_of
from fhir_server.search import extract, fulltext
from fhir_server.search.clauses import IndexRow

# Parameters answered from the resource table's own columns, never from index rows.
RESOURCE_COLUMNS = frozenset({"_id", "_lastUpdated"})


@cache
def has_identifier(resource_type: str) -> bool:
    definition = schema_definitions().get(resource_type, {})
    return "identifier" in definition.get("properties", {})


def index_rows(resource: dict[str, Any], fields: SensitiveFields = DEFAULT_FIELDS) -> list[IndexRow]:
    """Every index row of a resource; `fields` says which values are protected (the store's
    configuration), whose rows hold keyed hashes and which full text leaves out."""
    secrets = secrets_of(resource, fields)
    return extract.index_rows(resource, RESOURCE_COLUMNS, secrets) + fulltext.index_rows(resource, secrets)
