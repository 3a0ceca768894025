"""The search benchmark's data set: Patients with about 20 Observations each, made from Synthea.

The Patients and Observations of the Synthea transaction Bundles in ../shared/synthea are
templates. Generated patient number `n` is a function of (seed, n) alone: its own
`random.Random(f"{seed}:{n}")` picks a template Patient and 20 of that Patient's Observations,
and varies everything a search looks at:

- ids: new UUIDs (Patient and Observation), references rewritten to `Patient/<id>` and
  `Encounter/<uuid5 of patient and source encounter>` (the Encounters are not stored);
- names: a family name from a pool of about 6,000 made by splicing the Synthea family names two
  by two (so a family name matches some 15 Patients of 100,000), a given name from the Synthea
  given names of the template's gender;
- identifiers: Synthea id and medical record number (the new Patient id), SSN, driver's licence
  and passport number unique per patient (bijections of `n`; the SSN for up to 10**6 patients);
- dates: the birth date, death date and every Observation's effective and issued time moved by
  the same number of days (up to 10 years either way), so each record stays consistent;
- values: every Quantity multiplied by a factor in [0.9, 1.1]; phone, city and postal code varied.

The narrative (`text`) of the template Patient is dropped: it would name someone else. The query
values of the benchmark come from regenerating a sample of patients (`sample_patients`).
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import date, timedelta
from functools import cache
from pathlib import Path
from typing import Any

import orjson

OBSERVATIONS_PER_PATIENT = 20
MAX_SHIFT_DAYS = 3650
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"
MRN_SYSTEM = "http://hospital.smarthealthit.org"
PASSPORT_SYSTEM = "http://standardhealthrecord.org/fhir/StructureDefinition/passportNumber"
_ENCOUNTER_NAMESPACE = uuid.UUID("6f1c1b4e-3b7a-4f1e-9a51-5e2b8c0d7a10")


@dataclass(frozen=True)
class Templates:
    patients: tuple[bytes, ...]  # Synthea Patients that have Observations (JSON: loads copies fast)
    observations: tuple[tuple[bytes, ...], ...]  # each Patient's Observations
    families: tuple[str, ...]
    givens: dict[str, tuple[str, ...]]  # gender -> given names
    cities: tuple[tuple[str, str], ...]  # (city, postal code)


@dataclass(frozen=True)
class Generated:
    """One generated patient: the Patient and its Observations, ready for `write_new`."""

    index: int
    patient: dict[str, Any]
    observations: list[dict[str, Any]]

    @property
    def id(self) -> str:
        return str(self.patient["id"])

    @property
    def family(self) -> str:
        return str(self.patient["name"][0]["family"])


def _splice(first: str, second: str) -> str:
    """The start of one family name and the end of another: "Riojas" + "Koepp" -> "Rioepp"."""
    return first[: (len(first) + 1) // 2] + second[len(second) // 2 :].lower()


@cache
def load_templates(directory: Path) -> Templates:
    patients: list[dict[str, Any]] = []
    observations: list[tuple[bytes, ...]] = []
    for path in sorted(directory.glob("*.json")):
        resources = [entry["resource"] for entry in json.loads(path.read_bytes()).get("entry") or []]
        found = [r for r in resources if r["resourceType"] == "Patient"]
        observed = tuple(r for r in resources if r["resourceType"] == "Observation")
        if len(found) == 1 and len(observed) >= OBSERVATIONS_PER_PATIENT:
            patient = {key: value for key, value in found[0].items() if key != "text"}
            patients.append(patient)
            observations.append(tuple(orjson.dumps(o) for o in observed))
    if not patients:
        raise RuntimeError(
            f"no Synthea Bundle with a Patient and {OBSERVATIONS_PER_PATIENT}+ Observations in {directory}"
        )
    surnames = sorted({p["name"][0]["family"] for p in patients})
    families = sorted({_splice(a, b) for a in surnames for b in surnames})
    givens: dict[str, set[str]] = {}
    for patient in patients:
        givens.setdefault(patient.get("gender", "unknown"), set()).update(patient["name"][0].get("given") or ())
    cities = sorted(
        {(a["city"], a.get("postalCode", "")) for p in patients for a in p.get("address") or () if "city" in a}
    )
    return Templates(
        tuple(orjson.dumps(p) for p in patients),
        tuple(observations),
        tuple(families),
        {gender: tuple(sorted(names)) for gender, names in givens.items()},
        tuple(cities),
    )


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _shift(value: str, days: int) -> str:
    """A FHIR date or dateTime moved by whole `days`: only the date part changes."""
    return (date.fromisoformat(value[:10]) + timedelta(days=days)).isoformat() + value[10:]


def _digits(n: int, width: int, multiplier: int, offset: int) -> str:
    """`n` scrambled into `width` digits, a bijection for n < 10**width (multiplier coprime to 10)."""
    return str((n * multiplier + offset) % 10**width).zfill(width)


def _vary_quantity(quantity: dict[str, Any], factor: float) -> None:
    value = quantity.get("value")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        quantity["value"] = round(value * factor, 2) if isinstance(value, float) else value


def _patient(template: bytes, templates: Templates, rng: random.Random, n: int, days: int) -> dict[str, Any]:
    patient: dict[str, Any] = orjson.loads(template)
    patient_id = _uuid(rng)
    patient["id"] = patient_id
    gender = patient.get("gender", "unknown")
    name = patient["name"][0]
    name["family"] = rng.choice(templates.families)
    name["given"] = [rng.choice(templates.givens.get(gender) or templates.givens[min(templates.givens)])]
    patient["name"] = [name]
    ssn = _digits(n, 6, 982_451_653, 12_345)
    identifiers = {
        "https://github.com/synthetichealth/synthea": patient_id,
        MRN_SYSTEM: patient_id,
        SSN_SYSTEM: f"999-{ssn[:2]}-{ssn[2:]}",
        "urn:oid:2.16.840.1.113883.4.3.25": f"S{_digits(n, 8, 49_979_687, 777)}",
        PASSPORT_SYSTEM: f"X{_digits(n, 8, 67_867_967, 4242)}X",
    }
    for identifier in patient.get("identifier") or ():
        if identifier.get("system") in identifiers:
            identifier["value"] = identifiers[identifier["system"]]
    patient["birthDate"] = _shift(patient["birthDate"], days)
    if "deceasedDateTime" in patient:
        patient["deceasedDateTime"] = _shift(patient["deceasedDateTime"], days)
    for telecom in patient.get("telecom") or ():
        telecom["value"] = f"555-{rng.randrange(200, 1000)}-{rng.randrange(10_000):04d}"
    city, postal = rng.choice(templates.cities)
    for address in patient.get("address") or ():
        address["line"] = [f"{rng.randrange(1, 9999)} {rng.choice(templates.families)} Street"]
        address["city"], address["postalCode"] = city, postal
    return patient


def _observation(template: bytes, rng: random.Random, patient_id: str, days: int) -> dict[str, Any]:
    observation: dict[str, Any] = orjson.loads(template)
    observation["id"] = _uuid(rng)
    observation["subject"] = {"reference": f"Patient/{patient_id}"}
    encounter = (observation.get("encounter") or {}).get("reference")
    if isinstance(encounter, str):
        source = encounter.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
        observation["encounter"] = {"reference": f"Encounter/{uuid.uuid5(_ENCOUNTER_NAMESPACE, patient_id + source)}"}
    for key in ("effectiveDateTime", "issued"):
        if isinstance(observation.get(key), str):
            observation[key] = _shift(observation[key], days)
    factor = rng.uniform(0.9, 1.1)
    if isinstance(observation.get("valueQuantity"), dict):
        _vary_quantity(observation["valueQuantity"], factor)
    for component in observation.get("component") or ():
        if isinstance(component.get("valueQuantity"), dict):
            _vary_quantity(component["valueQuantity"], factor)
    return observation


def generate(templates: Templates, seed: int, n: int) -> Generated:
    """Patient number `n` of the data set and its Observations; the same for the same (seed, n)."""
    rng = random.Random(f"{seed}:{n}")
    source = rng.randrange(len(templates.patients))
    days = rng.randint(-MAX_SHIFT_DAYS, MAX_SHIFT_DAYS)
    patient = _patient(templates.patients[source], templates, rng, n, days)
    chosen = sorted(rng.sample(range(len(templates.observations[source])), OBSERVATIONS_PER_PATIENT))
    observations = [_observation(templates.observations[source][i], rng, patient["id"], days) for i in chosen]
    return Generated(n, patient, observations)


def sample_patients(templates: Templates, seed: int, patients: int, count: int) -> list[Generated]:
    """`count` patients of the data set, chosen at random (seeded) among the `patients`."""
    rng = random.Random(f"{seed}:sample")
    indexes = rng.sample(range(patients), min(count, patients))
    return [generate(templates, seed, n) for n in indexes]


def code_frequencies(templates: Templates) -> list[tuple[str, str, int]]:
    """(system, code, template Observations) for every Observation code, most frequent first."""
    counts: dict[tuple[str, str], int] = {}
    for observations in templates.observations:
        for raw in observations:
            coding = orjson.loads(raw)["code"]["coding"][0]
            key = (coding["system"], coding["code"])
            counts[key] = counts.get(key, 0) + 1
    return sorted(((s, c, k) for (s, c), k in counts.items()), key=lambda item: (-item[2], item[1]))
