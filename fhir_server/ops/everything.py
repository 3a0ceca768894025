"""$everything on a Patient (R4 patient-operation-everything.html, OperationDefinition
http://hl7.org/fhir/OperationDefinition/Patient-everything): the Patient and every resource in
its compartment (compartmentdefinition-patient.html), as a `searchset` Bundle with keyset paging.

Access goes through the one policy (auth/policy.py), as a read and a search would:

- the Patient must be readable (`r`): a hidden or unknown Patient answers 404 exactly like a
  read, a deleted one 410;
- the rest is a system-level search (`s`) over the compartment's types, with the caller's search
  visibility narrowed to this patient's compartment (every grant gets `patient` set, which the
  store compiles with the CompartmentDefinition, store/compile_access.py): types the scopes do not
  allow are simply absent, never 403. The Patient itself (and Patients whose `link` names it, the
  compartment's other Patients) come from the caller's read grants on Patient.

Parameters (GET query or a POST Parameters body): `_type` (comma-separated, repeatable; types
outside the compartment select nothing), `_since` (lastUpdated at or after the instant), `start`
and `end` (care dates: resources whose R4 `date` search parameter, the clinical date, falls in
the range; resources without one, of a type without one such as Patient or Condition, are kept),
`_count` (page size) and `_page` (the continuation token of a `next` link). AuditEvents are left
out unless `_type` names them (every access to the record adds one, as for `_revinclude=*`).

Each page also carries, as `include` entries, the resources its matches (but a name-only
Patient) refer to whose type is never in a Patient compartment (Practitioner, Organization,
Medication, Location...), as far as the caller's search grants reach. The type level (`Patient/$everything`)
is the caller's own record for a patient token; for others (the specification's "all patients",
a bulk export) it is 501.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from fhir_server.access import Visibility
from fhir_server.auth import policy
from fhir_server.errors import Forbidden, Invalid, Issue, NotSupported
from fhir_server.interactions import searchset
from fhir_server.interactions.audit_subjects import context_patient
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.read import read_in
from fhir_server.interactions.search import WILDCARD_EXCLUDED
from fhir_server.ops.registry import Operation, register
from fhir_server.search.clauses import AllClause, AnyClause, Clause, ParamClause
from fhir_server.search.controls import parse_count, parse_types
from fhir_server.search.query import parse_search
from fhir_server.search.registry import compartment_members, compartment_params, search_param
from fhir_server.search.syntax import Problem
from fhir_server.store.compile_sort import decode_keyset, encode_keyset
from fhir_server.store.repository import Found, StoredVersion

NAMES = ("start", "end", "_since", "_type", "_count", "_page")
IGNORED = ("_format", "_pretty")  # handled by the HTTP layer
CARE_DATE_TYPE = "Encounter"  # any type with the R4 clinical-date `date` parameter: its definition parses
_VALUE_KEYS = ("valueDate", "valueDateTime", "valueInstant", "valueString", "valueCode", "valueUri")
_COUNT_KEYS = ("valueInteger", "valuePositiveInt", "valueUnsignedInt")


@dataclass(frozen=True)
class Everything:
    """The request, parsed: the patient, the types searched, the clauses, one page's size and where
    it starts, and the parameters as applied (for the Bundle's links)."""

    patient: str
    types: tuple[str, ...]
    named: tuple[str, ...] | None  # `_type` as given; None: every type
    clauses: tuple[Clause, ...]
    count: int
    after: tuple[Any, ...] | None
    applied: tuple[tuple[str, str], ...]


def everything(
    env: Env, resource_type: str | None, resource_id: str | None, body: Any, params: list[tuple[str, str]]
) -> Result:
    patient = _patient(env, resource_id)
    request = _request(env, patient, [*params, *_body_params(body)])
    with env.store.unit_of_work(env.visibility("r", "Patient"), read_only=True) as uow:
        read_in(uow, "Patient", patient)  # hidden, unknown: 404 exactly like a read; deleted: 410
    rows: list[Found] = []
    total: int | None = None
    more = False
    if request.types:
        with env.store.unit_of_work(_compartment_visibility(env, patient), read_only=True) as uow:
            if request.count == 0:
                total = uow.count(None, request.clauses, request.types)
            else:
                found = uow.search(None, request.clauses, (), request.count + 1, request.after, request.types)
                more, rows = len(found) > request.count, found[: request.count]
                total = len(rows) if request.after is None and not more else None
    elif request.after is None:
        total = 0
    return Result(200, body=_bundle(env, request, rows, _referenced(env, rows, request), more, total))


def _patient(env: Env, resource_id: str | None) -> str:
    if resource_id is not None:
        return resource_id
    own = context_patient(env.access) if env.access.kind == "patient" else None
    if own is None:
        raise NotSupported(
            "Patient/$everything without an id is the caller's own record, for a patient token only",
            "everything-patient-unknown",
        )
    return own


def _body_params(body: Any) -> list[tuple[str, str]]:
    """A POST's Parameters resource as (name, value) pairs (anything else names nothing)."""
    if not isinstance(body, dict):
        return []
    if body.get("resourceType") != "Parameters":
        raise Invalid("$everything takes a Parameters resource", "everything-parameter-invalid")
    pairs: list[tuple[str, str]] = []
    for parameter in body.get("parameter") or []:
        values = [str(parameter[key]) for key in (*_VALUE_KEYS, *_COUNT_KEYS) if key in parameter]
        if not values:
            raise Invalid(f"Parameter '{parameter.get('name')}' has no value", "everything-parameter-invalid")
        pairs.append((str(parameter.get("name")), values[0]))
    return pairs


def _request(env: Env, patient: str, params: list[tuple[str, str]]) -> Everything:
    given: dict[str, list[str]] = {}
    applied: list[tuple[str, str]] = []
    for name, raw in params:
        if name in IGNORED or raw == "":
            continue
        if name not in NAMES:
            message, code = f"$everything has no parameter '{name}'", "everything-parameter-unknown"
            raise Invalid(message, code, [_issue(name, message, code)])
        if name != "_type" and name in given:
            message = f"'{name}' may be given once"
            raise Invalid(message, "everything-parameter-invalid", [_issue(name, message)])
        given.setdefault(name, []).append(raw)
        if name != "_page":
            applied.append((name, raw))
    named = _types(given.get("_type"))
    return Everything(
        patient=patient,
        types=_searched(named),
        named=named,
        clauses=_clauses(given),
        count=_count(env, given.get("_count")),
        after=decode_keyset(given["_page"][0]) if "_page" in given else None,
        applied=tuple(applied),
    )


def _issue(name: str, message: str, code: str = "everything-parameter-invalid") -> Issue:
    return Issue(message, code, "not-supported" if code.endswith("unknown") else "invalid", name)


def _types(raws: list[str] | None) -> tuple[str, ...] | None:
    if raws is None:
        return None
    try:
        return tuple(dict.fromkeys(kind for raw in raws for kind in parse_types(raw)))
    except Problem as problem:
        raise Invalid(problem.message, "everything-parameter-invalid", [_issue("_type", problem.message)]) from None


def _searched(named: tuple[str, ...] | None) -> tuple[str, ...]:
    """The types searched: the compartment's (and Patient), those of `_type` only when given;
    AuditEvent only when named."""
    members = {kind for kind, _ in compartment_members("Patient")} | {"Patient"}
    if named is None:
        return tuple(sorted(members - set(WILDCARD_EXCLUDED)))
    return tuple(sorted(members & set(named)))


def _count(env: Env, raws: list[str] | None) -> int:
    maximum = env.settings.max_page_size
    if raws is None:
        return min(env.settings.default_page_size, maximum)
    try:
        return parse_count(raws[0], maximum)
    except Problem as problem:
        raise Invalid(problem.message, "everything-parameter-invalid", [_issue("_count", problem.message)]) from None


def _clauses(given: dict[str, list[str]]) -> tuple[Clause, ...]:
    clauses: list[Clause] = []
    if "_since" in given:
        clauses.extend(_parsed("Patient", "_since", "_lastUpdated", f"ge{given['_since'][0]}"))
    dated = [(name, prefix) for name, prefix in (("start", "ge"), ("end", "le")) if name in given]
    if dated:
        in_range: list[Clause] = []
        for name, prefix in dated:
            in_range.extend(_parsed(CARE_DATE_TYPE, name, "date", f"{prefix}{given[name][0]}"))
        date = search_param(CARE_DATE_TYPE, "date")
        assert date is not None
        clauses.append(AnyClause((AllClause(tuple(in_range)), ParamClause(date, missing=True))))
    return tuple(clauses)


def _parsed(resource_type: str, name: str, code: str, value: str) -> tuple[Clause, ...]:
    """`code=value` parsed as search parses it, its problems named after `name`."""
    try:
        return parse_search(resource_type, [(code, value)], search_param, True, 1, 1).clauses
    except Invalid as error:
        issues = [replace(issue, expression=name, error_code="everything-parameter-invalid") for issue in error.issues]
        raise Invalid(f"'{name}' is not a usable date", "everything-parameter-invalid", issues) from None


def _compartment_visibility(env: Env, patient: str) -> Visibility:
    """The caller's search grants and its read grants on Patient, each narrowed to `patient`'s
    compartment (policy.within_compartment): never more than the caller sees, only less."""
    try:  # no search grant at all: the Patient alone
        searchable: Visibility | None = env.visibility("s", None)
    except Forbidden:
        searchable = None
    return policy.within_compartment(searchable, env.visibility("r", "Patient"), patient)


def _referenced(env: Env, rows: list[Found], request: Everything) -> list[StoredVersion]:
    """What this page's matches refer to, of types never in a Patient compartment, as far as the
    caller's search grants reach (`_type`, when given, selects among them too). The references of
    a Patient shown by name only (a clinic before consent) are hidden fields: not followed."""
    sources = [(row.resource_type, row.id) for row in rows if not row.name_only]
    if not sources:
        return []
    try:
        visibility = env.visibility("s", None)
    except Forbidden:
        return []
    with env.store.unit_of_work(visibility, read_only=True) as uow:
        found = uow.referenced(sources, None)
    wanted = [
        resource
        for resource in found
        if resource.resource_type != "Patient"
        and not compartment_params("Patient", resource.resource_type)
        and (request.named is None or resource.resource_type in request.named)
    ]
    return list({(resource.resource_type, resource.id): resource for resource in wanted}.values())


def _bundle(
    env: Env, request: Everything, rows: list[Found], included: list[StoredVersion], more: bool, total: int | None
) -> dict[str, Any]:
    path = f"Patient/{request.patient}/$everything"
    applied = list(request.applied)
    self_params = applied + ([("_page", encode_keyset(request.after))] if request.after is not None else [])
    links = [{"relation": "self", "url": searchset.link(env.base_url, path, self_params)}]
    if request.after is not None:
        links.append({"relation": "first", "url": searchset.link(env.base_url, path, applied)})
    if rows and more:
        next_params = [*applied, ("_page", encode_keyset(rows[-1].keyset))]
        links.append({"relation": "next", "url": searchset.link(env.base_url, path, next_params)})
    entries = [searchset.entry(env.base_url, row, "match", None, None) for row in rows]
    entries += [searchset.entry(env.base_url, resource, "include", None, None) for resource in included]
    return searchset.bundle(links, entries, total)


EVERYTHING = register(
    Operation(
        name="everything",
        definition="http://hl7.org/fhir/OperationDefinition/Patient-everything",
        handler=everything,
        type_level=True,
        instance_level=True,
        resource_types=frozenset({"Patient"}),
    )
)
