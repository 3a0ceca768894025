"""Search criteria of conditional interactions (http.html#ccreate, #cond-update, #cdelete).

Any search criteria work, parsed exactly as a search (strict: an unknown or unsupported
parameter is an error, since ignoring a criterion would make a conditional write act on the
wrong resource). Parameters that shape results rather than select (`_sort`, `_include`...) are
refused: a condition selects.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.errors import Invalid, Issue
from fhir_server.search.clauses import Clause
from fhir_server.search.query import parse_search
from fhir_server.search.registry import search_param

# Result-shaping parameters that do not change which resources match.
_IGNORED = {"_format", "_pretty", "_summary", "_elements"}
_NOT_CRITERIA = {"_sort", "_count", "_include", "_revinclude", "_total", "_page", "_type"}


def parse_criteria(resource_type: str, query: str) -> list[Clause]:
    pairs = [
        (name, value) for name, value in parse_qsl(query, keep_blank_values=True) if name.split(":")[0] not in _IGNORED
    ]
    if not pairs:
        raise Invalid("A conditional request needs search criteria", "criteria-missing")
    refused = [name for name, _ in pairs if name.split(":")[0] in _NOT_CRITERIA]
    if refused:
        raise Invalid(
            "Conditional criteria select resources; result parameters are not allowed",
            "criteria-invalid",
            issues=[
                Issue(f"'{name}' is not a search criterion", "criteria-invalid", "invalid", name) for name in refused
            ],
        )
    request = parse_search(resource_type, pairs, search_param, strict=True)
    if not request.clauses:
        raise Invalid("A conditional request needs search criteria", "criteria-missing")
    return list(request.clauses)


def criteria_key(resource_type: str, clauses: list[Clause]) -> str:
    """The same criteria, however ordered or encoded, give the same key (for serialising writes)."""
    return resource_type + "?" + "&".join(sorted(repr(clause) for clause in clauses))
