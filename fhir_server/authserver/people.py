"""Patients a user may pick for `launch/patient` (SMART App Launch 2.x, context-standalone-patient):
a patient user themselves and their dependents (proxy links through RelatedPerson), or for a
clinician the Patients of their clinic whose name starts with the text they typed (R4
search.html#string). A clinician's choices go through the one access policy, like any search."""

from __future__ import annotations

import json
from typing import Any

from fhir_server.access import AccessContext
from fhir_server.auth import policy
from fhir_server.authserver.env import AuthEnv
from fhir_server.errors import Forbidden
from fhir_server.search.query import parse_search
from fhir_server.search.registry import search_param
from fhir_server.store.accounts import Account
from fhir_server.store.repository import Store

PICKER_SIZE = 20


def display_name(content: bytes) -> str:
    try:
        resource: dict[str, Any] = json.loads(content)
    except ValueError:
        return ""
    for name in resource.get("name") or []:
        if name.get("text"):
            return str(name["text"])
        parts = [*name.get("given", []), name.get("family", "")]
        text = " ".join(str(part) for part in parts if part)
        if text:
            return text
    return ""


def _labelled(contents: dict[str, bytes], order: list[str]) -> list[tuple[str, str]]:
    return [
        (pid, f"{display_name(contents[pid]) or 'Unnamed patient'} (Patient/{pid})") for pid in order if pid in contents
    ]


def patient_choices(env: AuthEnv, account: Account) -> list[tuple[str, str]]:
    own = account.fhir_user.split("/", 1)[1] if account.fhir_user and account.fhir_user.startswith("Patient/") else None
    ids = ([own] if own else []) + [pid for pid in env.accounts.dependents(account.id) if pid != own]
    return _labelled(env.accounts.patients(ids), ids)


def search_patients(env: AuthEnv, text: str, clinician: AccessContext) -> list[tuple[str, str]]:
    words = text.split()
    if not words:
        return []
    found = clinic_patients(env, clinician, [("name", words[0])])
    return _labelled(found, sorted(found, key=lambda pid: display_name(found[pid]).lower()))


def clinician_context(
    account_id: str, clinic: str | None, role: str | None, kind: str = "clinic-member"
) -> AccessContext:
    """A clinic member (or a clinic's backend service) as the policy sees them, for the Patient
    lookups an authorization needs."""
    scopes = frozenset({"user/Patient.rs", "system/Patient.rs"})
    return AccessContext(principal=account_id, kind=kind, clinic_id=clinic, role=role, scopes=scopes)


def clinic_patients(env: AuthEnv, clinician: AccessContext, params: list[tuple[str, str]]) -> dict[str, bytes]:
    """The Patients matching `params` that `clinician` may see (none when they may see none)."""
    try:
        visibility = policy.visibility(clinician, "s", "Patient")
    except Forbidden:
        return {}
    request = parse_search("Patient", params, search_param, True, PICKER_SIZE, PICKER_SIZE)
    with Store(env.accounts.engine).unit_of_work(visibility, read_only=True) as uow:
        rows = uow.search("Patient", request.clauses, (), PICKER_SIZE)
    return {row.id: row.content for row in rows if row.content}
