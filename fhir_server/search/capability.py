"""What search supports, per resource type, for the CapabilityStatement (capabilitystatement.html).

Derived from the same tables that parsing and indexing use, so the statement lists exactly what
works: parameters with an index (or answered from the resource table, or the full-text `_text`
and `_content`), their implemented modifiers, and the reference parameters usable in `_include`
and `_revinclude`.
"""

from __future__ import annotations

from functools import cache

from fhir_server.model.schema import resource_types
from fhir_server.search.criteria import MODIFIERS, PENDING_MODIFIERS
from fhir_server.search.fulltext import PARAMETERS as FULL_TEXT
from fhir_server.search.params import SearchParam
from fhir_server.search.registry import generation, is_ready, search_params

_FROM_RESOURCE_TABLE = frozenset({"_id", "_lastUpdated"})


def searchable(resource_type: str) -> list[SearchParam]:
    """Parameters that work: answered from the resource table, full-text, or indexed (custom ones
    once their reindex is done)."""
    answered = _FROM_RESOURCE_TABLE | FULL_TEXT
    return [
        param
        for param in search_params(resource_type).values()
        if param.code in answered or (param.table is not None and is_ready(param))
    ]


def modifiers(param: SearchParam) -> list[str]:
    if param.code in _FROM_RESOURCE_TABLE | FULL_TEXT:  # no modifier, not even :missing
        return []
    working = MODIFIERS.get(param.type, frozenset()) - PENDING_MODIFIERS.get(param.type, frozenset())
    return sorted({*working, "missing"})


def includes(resource_type: str) -> list[str]:
    references = [param.code for param in searchable(resource_type) if param.type == "reference"]
    return [f"{resource_type}:{code}" for code in sorted(references)] + ["*"] if references else []


def revincludes(resource_type: str) -> tuple[str, ...]:
    return _revincludes(resource_type, generation())


@cache
def _revincludes(resource_type: str, _generation: int) -> tuple[str, ...]:
    found = []
    for source in sorted(resource_types()):
        for param in searchable(source):
            if param.type == "reference" and (not param.targets or resource_type in param.targets):
                found.append(f"{source}:{param.code}")
    return tuple(found)
