"""Which patients an interaction concerns, for its AuditEvent's Patient entities (IHE BALP: the
"Patient" variants of Read, Query, Create, Update and Delete).

A resource concerns the patients its Patient-compartment parameters refer to
(compartmentdefinition-patient.html), extracted as the index does, so that an AuditEvent about
it lands in exactly the compartments the resource itself is in; a Patient concerns itself. A
search concerns the patients it names (BALP PatientQuery: a patient id as a query parameter, the
compartment searched), and the patient the caller's security context is limited to; never the
patients of its results.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache
from typing import Any

from fhir_server.access import AccessContext
from fhir_server.model.json import parse
from fhir_server.search import extract
from fhir_server.search.normalize import split_reference
from fhir_server.search.registry import compartment_params, generation, search_param, search_params

_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def valid_id(value: str | None) -> bool:
    return value is not None and _ID.match(value) is not None


def resource_patients(resource_type: str, resource_id: str, resource: dict[str, Any] | None) -> tuple[str, ...]:
    """The patients whose compartment holds this resource."""
    if resource_type == "Patient":
        return (resource_id,)
    if resource is None or not compartment_params("Patient", resource_type):
        return ()
    rows = extract.index_rows(resource, skip=_not_compartment(resource_type, generation()))
    return _unique(
        row.values["target_id"]
        for row in rows
        if row.kind == "reference" and row.values.get("target_type") == "Patient"
    )


def stored_patients(resource_type: str, resource_id: str, content: bytes | None) -> tuple[str, ...]:
    """The patients of a stored version (its JSON parsed only when its type can concern one)."""
    if resource_type == "Patient":
        return (resource_id,)
    if not content or not compartment_params("Patient", resource_type):
        return ()
    return resource_patients(resource_type, resource_id, parse(content, max_depth=10_000))


@lru_cache(maxsize=1024)
def _not_compartment(resource_type: str, _generation: int) -> frozenset[str]:
    """The parameter codes to leave out when only the compartment's are wanted."""
    return frozenset(search_params(resource_type)) - frozenset(compartment_params("Patient", resource_type))


def search_patients(
    access: AccessContext,
    resource_type: str | None,
    params: Sequence[tuple[str, str]],
    compartment: tuple[str, str] | None = None,
) -> tuple[str, ...]:
    """The patients a search names, and the one the caller's context is limited to."""
    found: list[str] = []
    if compartment is not None and compartment[0] == "Patient":
        found.append(compartment[1])
    limited = context_patient(access)
    if limited:
        found.append(limited)
    if resource_type is not None:
        found.extend(_named(resource_type, params))
    return _unique(patient for patient in found if valid_id(patient))


def context_patient(access: AccessContext) -> str | None:
    """The patient a caller is limited to: a patient user's own record, or a `patient/` scope's
    launch patient."""
    if access.kind == "patient":
        user = access.fhir_user or ""
        return access.patient or (user.removeprefix("Patient/") if user.startswith("Patient/") else None)
    if access.patient and any(scope.startswith("patient/") for scope in access.scopes):
        return access.patient
    return None


def _named(resource_type: str, params: Sequence[tuple[str, str]]) -> Iterable[str]:
    """Patient ids in `_id` of a Patient search, or in the type's `patient` parameter and its
    Patient-compartment reference parameters (`patient=123`, `subject=Patient/123`,
    `subject:Patient=123`); chains, `_has` and other modifiers name no patient by id."""
    codes = (*compartment_params("Patient", resource_type), "patient")
    for name, value in params:
        code, _, modifier = name.partition(":")
        if resource_type == "Patient" and code == "_id" and not modifier:
            yield from value.split(",")
        elif code in codes and modifier in ("", "Patient"):
            param = search_param(resource_type, code)
            if param is None or param.type != "reference":
                continue
            bare = modifier == "Patient" or code == "patient" or param.targets == ("Patient",)
            for part in value.split(","):
                yield from _patient_id(part, bare)


def _patient_id(value: str, bare: bool) -> Iterable[str]:
    if "/" not in value:
        if bare:
            yield value
        return
    parsed = split_reference(value)
    if parsed is not None and parsed[0] == "Patient":
        yield parsed[1]


def _unique(values: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(values))
