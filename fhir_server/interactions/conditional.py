"""The matching step of conditional create, update and delete (R4 http.html#ccreate, #cond-update,
#cdelete): at most two matches (one is enough to act, two to refuse with 412), found while holding
a lock on the criteria so that concurrent conditional writes cannot both act on "no match"."""

from __future__ import annotations

from fhir_server.errors import PreconditionFailed
from fhir_server.search.conditional import criteria_key, parse_criteria
from fhir_server.store.repository import StoredVersion, UnitOfWork


def matches(uow: UnitOfWork, resource_type: str, query: str) -> list[StoredVersion]:
    clauses = parse_criteria(resource_type, query)
    # keyed: criteria may hold protected values (a phone number, a national id)
    uow.serialize_on(uow.protection.keyed(criteria_key(resource_type, clauses)))
    return uow.match(resource_type, clauses, 2)


def single_match(uow: UnitOfWork, resource_type: str, query: str, what: str) -> StoredVersion | None:
    """The one match, None for none; more than one is a 412 (http.html: "multiple matches")."""
    found = matches(uow, resource_type, query)
    if len(found) > 1:
        raise PreconditionFailed(f"The {what} criteria match more than one resource", "multiple-matches")
    return found[0] if found else None
