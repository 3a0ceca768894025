"""Search criteria of conditional interactions (http.html#ccreate, #cond-update, #cdelete).

The REST core matches on `_id` and `identifier`; the search issue extends this to every
parameter. Anything else is refused (search.html#errors: strict handling is our default), since
ignoring a criterion would make a conditional write act on the wrong resource.
"""

from __future__ import annotations

from urllib.parse import parse_qsl

from fhir_server.errors import Invalid, Issue
from fhir_server.search.clauses import Clause, IdClause, Token, TokenClause
from fhir_server.search.indexing import has_identifier

# Result-shaping parameters carry no criterion and may appear in conditional URLs.
_IGNORED = {"_format", "_pretty", "_summary", "_elements"}


def parse_criteria(resource_type: str, query: str) -> list[Clause]:
    pairs = [(name, value) for name, value in parse_qsl(query, keep_blank_values=True) if name not in _IGNORED]
    if not pairs:
        raise Invalid("A conditional request needs search criteria", "criteria-missing")
    clauses: list[Clause] = []
    problems: list[Issue] = []
    for name, value in pairs:
        if not value:
            problems.append(Issue(f"Search parameter '{name}' has no value", "search-value-missing", "invalid", name))
        elif name == "_id":
            clauses.append(IdClause(tuple(value.split(","))))
        elif name == "identifier" and has_identifier(resource_type):
            clauses.append(TokenClause("identifier", tuple(parse_token(v) for v in value.split(","))))
        else:
            problems.append(
                Issue(
                    f"Search parameter '{name}' is not supported for {resource_type} in conditional requests",
                    "search-parameter-unsupported",
                    "not-supported",
                    name,
                )
            )
    if problems:
        raise Invalid("The search criteria are not usable", "criteria-invalid", issues=problems)
    return clauses


def criteria_key(resource_type: str, clauses: list[Clause]) -> str:
    """The same criteria, however ordered or encoded, give the same key (for serialising writes)."""
    return resource_type + "?" + "&".join(sorted(repr(clause) for clause in clauses))


def parse_token(value: str) -> Token:
    if "|" not in value:
        return Token(None, _unescape(value), system_given=False)
    system, code = _split_unescaped(value)
    return Token(_unescape(system) or None, _unescape(code) or None, system_given=True)


def _split_unescaped(value: str) -> tuple[str, str]:
    index = 0
    while True:
        index = value.index("|", index)
        if index == 0 or value[index - 1] != "\\":
            return value[:index], value[index + 1 :]
        index += 1


def _unescape(value: str) -> str:
    return value.replace("\\|", "|").replace("\\,", ",").replace("\\$", "$").replace("\\\\", "\\")
