"""Patients a user may pick for `launch/patient` (SMART App Launch 2.x, context-standalone-patient):
a patient user themselves and their dependents (proxy links through RelatedPerson), or for a
clinician the Patients whose name starts with the text they typed (R4 search.html#string)."""

from __future__ import annotations

import json
from typing import Any

from fhir_server.authserver.env import AuthEnv
from fhir_server.search.normalize import normalize
from fhir_server.store.accounts import Account


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


def search_patients(env: AuthEnv, text: str) -> list[tuple[str, str]]:
    words = text.split()
    if not words:
        return []
    found = env.accounts.patients_named(normalize(words[0]))
    return _labelled(found, sorted(found, key=lambda pid: display_name(found[pid]).lower()))
