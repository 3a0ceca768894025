"""A SMART deployment for the end-to-end suites (browser launches, fhirclient): a fresh SQLite
database served as by default, with no local operator (every FHIR request needs a token), by a
real uvicorn on a free loopback port. Its clinic, patients, Observations, accounts and clients are
made through the administration API, as `fhir-server clinic|user|client create` and the demo
set-up make them; every token the suites use comes from a real flow against this server.

One database for the whole module, SQLite only: these suites prove the flows end to end, the
per-backend behaviour is covered by the other OAuth and scope suites.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from fhir_server.admin.resources import create_clinic, create_person, create_resource
from fhir_server.app import create_app
from fhir_server.authserver import admin
from fhir_server.settings import Settings
from fhir_server.store.accounts import Accounts
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.repository import Store
from tests.conftest import serve_in_thread
from tests.integration.oauth_helpers import ASSERTION_TYPE, PASSWORD, assertion, backend_client, key_pair, unique_email


@dataclass
class Person:
    """A Patient resource with one vital-sign Observation."""

    id: str
    name: str  # "Given Family", as an app shows it
    observation: str  # "Heart rate: 72 /min"


@dataclass
class Deployment:
    origin: str  # http://127.0.0.1:PORT
    base: str  # the FHIR base, which is also the issuer and the tokens' audience
    store: Store
    settings: Settings
    clinic: str
    patient: Person  # has a patient account (patient_email)
    other: Person  # a patient of the clinic without an account (for EHR launches)
    patient_email: str
    clinician_email: str
    practitioner: str

    @property
    def accounts(self) -> Accounts:
        return Accounts(self.store.engine)

    def register(self, kind: str, scopes: str, redirect_uri: str) -> tuple[str, str | None]:
        """A client of `kind` (public, confidential-symmetric): its client_id and secret."""
        client, secret = admin.create_client(
            self.accounts, name=f"Test {kind} app", kind=kind, scopes=scopes.split(), redirect_uris=[redirect_uri]
        )
        return client.client_id, secret

    def ehr_token(self) -> str:
        """The clinic's EHR as a backend service: client_credentials with a real RS384 key pair."""
        private, public = key_pair("RS384")
        client_id = backend_client(self.store, {"keys": [public]}, "system/*.rs", self.clinic)
        signed = assertion(private, "RS384", client_id, aud=f"{self.origin}/auth/token")
        form = {
            "grant_type": "client_credentials",
            "scope": "system/*.rs",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": signed,
        }
        response = httpx.post(f"{self.origin}/auth/token", data=form, timeout=30)
        assert response.status_code == 200, response.text
        return str(response.json()["access_token"])


def _person(store: Store, settings: Settings, given: str, vital: tuple[str, str, float, str], clinic: str) -> Person:
    family = f"Test{uuid.uuid4().hex[:6]}"
    patient = create_person(store, settings, "Patient", given, family, clinic=clinic)
    code, display, value, unit = vital
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "category": [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/{patient}"},
        "effectiveDateTime": "2024-05-01T09:30:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }
    create_resource(store, settings, observation, clinic=clinic)
    return Person(patient, f"{given} {family}", f"{display}: {value:g} {unit}")


def _records(store: Store, settings: Settings) -> dict[str, Any]:
    accounts = Accounts(store.engine)
    clinic = create_clinic(store, settings, "Browser Clinic")
    practitioner = create_person(store, settings, "Practitioner", "Clara", "Clinician", clinic=clinic)
    patient = _person(store, settings, "Ada", ("8867-4", "Heart rate", 72, "/min"), clinic)
    other = _person(store, settings, "Grace", ("29463-7", "Body weight", 60.5, "kg"), clinic)
    patient_email, clinician_email = unique_email("patient"), unique_email("clinician")
    admin.create_account(
        accounts, email=patient_email, password=PASSWORD, kind="patient", fhir_user=f"Patient/{patient.id}"
    )
    admin.create_account(
        accounts,
        email=clinician_email,
        password=PASSWORD,
        kind="clinic-member",
        fhir_user=f"Practitioner/{practitioner}",
        clinic=clinic,
        role="practitioner",
    )
    return {
        "clinic": clinic,
        "patient": patient,
        "other": other,
        "patient_email": patient_email,
        "clinician_email": clinician_email,
        "practitioner": practitioner,
    }


@contextmanager
def deployment(directory: Path) -> Iterator[Deployment]:
    settings = Settings(
        database_url=f"sqlite:///{directory / 'fhir.db'}", log_level="WARNING", allow_unauthenticated_loopback=False
    )
    upgrade(make_engine(settings.database_url))
    application = create_app(settings)
    store: Store = application.state.store
    records = _records(store, settings)
    try:
        with serve_in_thread(application) as origin:
            base = f"{origin}{settings.base_path}"
            # Served as by default: the FHIR API refuses a request without a token.
            refused = httpx.get(f"{base}/Patient/{records['patient'].id}", timeout=30)
            assert refused.status_code == 401, refused.text
            yield Deployment(origin, base, store, settings, **records)
    finally:
        store.engine.dispose()
