"""A caller's `Visibility` (access.py) as a SQL predicate on one resource row (DESIGN.md
section 3: enforcement in one place, as predicates the store applies to every query).

A grant is `<type> AND <in the patient's compartment> AND <granular search>`; the row is
visible when some grant holds. Compartment membership follows the Patient CompartmentDefinition
(compartmentdefinition-patient.html): the Patient itself, or a reference row of one of the
type's compartment parameters pointing at it. Rows of `resource_version` are judged by the same
current row, so a version is visible when its resource is. A clinic's grant reaches the rows its
clinic owns or contributed (the ownership columns, interactions/ownership.py), and the portable
profile of patients registered there with an active profile-sharing consent for it. Before that
consent a registered patient's Patient is visible by name only (`registered_names` grants):
reachable only by a query examining nothing but its id and name (`searched`,
search.clauses.searched_params), and shown cut down by the store (UnitOfWork._shown).
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import and_, false, literal_column, or_, select, true, tuple_
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import FromClause

from fhir_server.access import Grant, Visibility
from fhir_server.errors import Invalid
from fhir_server.search.clauses import Clause
from fhir_server.search.query import parse_search
from fhir_server.search.registry import compartment_members, compartment_params, search_param
from fhir_server.store.compiler import clause_predicate
from fhir_server.store.schema import reference_index, registration, resource, sharing_consent

# What a clinic may search a name-only Patient by (its id and name; `_has` examines the clinic's
# own records pointing at the Patient, not the Patient's fields).
NAME_ONLY_SEARCHABLE = frozenset({"_id", "name", "family", "given", "phonetic", "_has"})


def visible_predicate(
    visibility: Visibility, row: FromClause, searched: frozenset[str] | None = None
) -> ColumnElement[bool]:
    """Whether the caller may see `row`. `searched`: the parameters the query examines on it
    (compiler.Visible); a name-only view is reachable only when they are all id and name ones."""
    if visibility.unrestricted:
        return true()
    if not visibility.grants:
        return false()
    if "owner_clinic" not in row.c:  # a resource_version row: judged by its resource's current row
        current = resource.alias()
        same = [current.c.resource_type == row.c.resource_type, current.c.id == row.c.id]
        return select(literal_column("1")).where(*same, visible_predicate(visibility, current, searched)).exists()
    full = [_grant(grant, row) for grant in visibility.grants]
    if searched is None or not searched <= NAME_ONLY_SEARCHABLE:
        return or_(*full)
    return or_(*full, *(_name_only(grant, row) for grant in visibility.grants if offers_name_only(grant)))


def full_view_predicate(visibility: Visibility, row: FromClause) -> ColumnElement[bool]:
    """Whether the caller sees `row` in full (not only as a name-only Patient)."""
    return visible_predicate(visibility, row, None)


def offers_name_only(grant: Grant) -> bool:
    """A clinic's grant reaching Patients, without a granular search (whose criteria could
    examine hidden fields), shows its registered patients by name (DESIGN.md section 3)."""
    reaches_patients = grant.resource_type in ("*", "Patient") and (grant.types is None or "Patient" in grant.types)
    return grant.registered_names and grant.clinic is not None and reaches_patients and not grant.query


def _name_only(grant: Grant, row: FromClause) -> ColumnElement[bool]:
    """A Patient registered at the grant's clinic (registration in force), whatever its consent:
    before consent the clinic sees its id and name (the store shows only those)."""
    conditions = [row.c.resource_type == "Patient", _in_force(registration, row.c.id, grant.clinic or "")]
    if grant.patient is not None:
        conditions.append(row.c.id == grant.patient)
    return and_(*conditions)


def _grant(grant: Grant, row: FromClause) -> ColumnElement[bool]:
    conditions: list[ColumnElement[bool]] = []
    if grant.resource_type != "*":
        conditions.append(row.c.resource_type == grant.resource_type)
    if grant.types is not None:
        conditions.append(row.c.resource_type.in_(sorted(grant.types)))
    if grant.clinic is not None:  # what the clinic recorded or contributed, and profiles shared with it
        clinic = grant.clinic
        shared = and_(row.c.owner_patient.is_not(None), _shared_with(row.c.owner_patient, clinic))
        conditions.append(or_(row.c.owner_clinic == clinic, row.c.contributor_clinic == clinic, shared))
    if grant.patient is not None:
        conditions.append(_in_compartment(row, grant.patient, grant.resource_type))
    if grant.query:
        id_column: Any = row.c.id
        conditions.extend(
            clause_predicate(grant.resource_type, id_column, clause) for clause in granular_clauses(grant)
        )
    return and_(true(), *conditions)


def _shared_with(patient: Any, clinic: str) -> ColumnElement[bool]:
    """The patient is registered at the clinic and has an active profile-sharing consent for it,
    both in force now (DESIGN.md section 3: registered + active consent)."""
    return and_(_in_force(registration, patient, clinic), _in_force(sharing_consent, patient, clinic))


def _in_force(table: Any, patient: Any, clinic: str) -> ColumnElement[bool]:
    """A registration or sharing-consent fact of the patient for the clinic, active and in its period now."""
    now = datetime.now(UTC).replace(tzinfo=None)
    return (
        select(literal_column("1"))
        .where(
            table.c.patient_id == patient,
            table.c.clinic_id == clinic,
            table.c.active == true(),
            or_(table.c.starts.is_(None), table.c.starts <= now),
            or_(table.c.ends.is_(None), table.c.ends > now),
        )
        .exists()
    )


def _in_compartment(row: FromClause, patient: str, resource_type: str) -> ColumnElement[bool]:
    link = reference_index.alias()
    linked = [
        link.c.resource_type == row.c.resource_type,
        link.c.resource_id == row.c.id,
        link.c.target_type == "Patient",
        link.c.target_id == patient,
    ]
    if resource_type == "*":
        linked.append(tuple_(link.c.resource_type, link.c.param).in_(compartment_members("Patient")))
    else:
        params = compartment_params("Patient", resource_type)
        linked.append(link.c.param.in_(params) if params else false())
    itself = and_(row.c.resource_type == "Patient", row.c.id == patient)
    return or_(itself, select(literal_column("1")).where(*linked).exists())


def granular_clauses(grant: Grant) -> tuple[Clause, ...]:
    """A granular scope's search as clauses (parsed strictly: a scope the server cannot apply
    exactly must not widen into one it can)."""
    return _parse(grant.resource_type, grant.query)


@cache
def _parse(resource_type: str, query: tuple[tuple[str, str], ...]) -> tuple[Clause, ...]:
    request = parse_search(resource_type, list(query), search_param, True, 1, 1)
    if request.sort or request.includes or request.page:
        raise Invalid("A scope's search may only hold search criteria", "scope-query-invalid")
    return request.clauses
