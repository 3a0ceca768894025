"""The demo set-up `fhir-server serve` makes on a database without accounts (issue 4, "make run
... creates a demo clinic, a clinician, a patient with some data, and a public demo client"):
a clinic, a practitioner account, a patient account with a Patient and a few vital-sign
Observations (R4 observation-vitalsigns), and the public PKCE client of the `/demo/` app."""

from __future__ import annotations

from typing import Any

from fhir_server.admin.resources import create_clinic, create_person, create_resource
from fhir_server.auth import codes
from fhir_server.authserver import admin
from fhir_server.settings import Settings
from fhir_server.store.accounts import Accounts
from fhir_server.store.repository import Store

DEMO_CLIENT_ID = "demo-app"
DEMO_SCOPES = (
    "openid fhirUser launch launch/patient offline_access online_access "
    "patient/*.rs user/*.rs patient/*.read user/*.read"
)
_VITALS = (
    ("8867-4", "Heart rate", 72, "/min", "beats/minute"),
    ("29463-7", "Body weight", 71.5, "kg", "kg"),
    ("8310-5", "Body temperature", 36.8, "Cel", "C"),
)


def _observation(patient_id: str, code: str, display: str, value: float, unit: str, shown: str) -> dict[str, Any]:
    category = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
    return {
        "resourceType": "Observation",
        "status": "final",
        "category": [{"coding": [category]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": "2024-05-01T09:30:00Z",
        "valueQuantity": {"value": value, "unit": shown, "system": "http://unitsofmeasure.org", "code": unit},
    }


def seed(store: Store, settings: Settings, origin: str) -> dict[str, Any]:
    """Create the demo records; answers what to print (emails, passwords, URLs)."""
    accounts = Accounts(store.engine)
    clinic = create_clinic(store, settings, "Demo Clinic")
    # Recorded by the demo clinic, so that its clinician sees them (interactions/ownership.py).
    practitioner = create_person(store, settings, "Practitioner", "Alice", "Demo", clinic=clinic)
    patient = create_person(store, settings, "Patient", "Peter", "Demo", clinic=clinic)
    for vital in _VITALS:
        create_resource(store, settings, _observation(patient, *vital), clinic=clinic)
    clinician_password, patient_password = codes.new_token(9), codes.new_token(9)
    admin.create_account(
        accounts,
        email="clinician@demo.example",
        password=clinician_password,
        kind="clinic-member",
        fhir_user=f"Practitioner/{practitioner}",
        clinic=clinic,
        role="practitioner",
    )
    admin.create_account(
        accounts,
        email="patient@demo.example",
        password=patient_password,
        kind="patient",
        fhir_user=f"Patient/{patient}",
    )
    admin.create_client(
        accounts,
        name="Demo app",
        kind="public",
        scopes=DEMO_SCOPES.split(),
        redirect_uris=[f"{origin}/demo/callback"],
        client_id=DEMO_CLIENT_ID,
    )
    return {
        "clinic": clinic,
        "patient": patient,
        "practitioner": practitioner,
        "logins": [("clinician@demo.example", clinician_password), ("patient@demo.example", patient_password)],
        "app": f"{origin}/demo/",
    }


def seed_if_empty(store: Store, settings: Settings, origin: str) -> str | None:
    """Seed when the database has no accounts and the settings allow it; the text to print."""
    if not settings.seed_demo or Accounts(store.engine).count() > 0:
        return None
    made = seed(store, settings, origin)
    lines = ["Demo data created (this database had no accounts):", f"  demo app: {made['app']}"]
    lines += [f"  sign in as {email} with password {password}" for email, password in made["logins"]]
    lines.append(f"  clinic Organization/{made['clinic']}, patient Patient/{made['patient']}")
    return "\n".join(lines)
