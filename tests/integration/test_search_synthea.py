"""Search over Synthea patients, checked against an independent evaluation of the loaded JSON.

The four smallest Synthea patient bundles are loaded through `POST /fhir` (transactions with
`urn:uuid:` references), every resource carrying a tag unique to this load so that each search
can be AND-ed with it on the shared database. The expected result of each search is computed here
by filtering the loaded JSON in plain Python, following R4 search.html and written without the
server's extraction or SQL; the server's answer is collected over all its pages (`next` links).
"""

from __future__ import annotations

import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from fhir_server.model.json import dumps
from tests.conftest import FHIR_JSON, SYNTHEA
from tests.integration.helpers import load_json, parse

BUNDLES = sorted(
    (path for path in SYNTHEA.glob("*.json") if not path.name.startswith(("hospital", "practitioner"))),
    key=lambda path: (path.stat().st_size, path.name),
)[:4]
TAG_SYSTEM = "urn:fhir-server:test:search-synthea"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
# Units a server may convert to others (search.html#quantity, canonical units): avoided where the
# expected result must not depend on whether it does.
CONVERTIBLE = {"g", "kg", "mg", "ug", "m", "cm", "mm", "km", "L", "dL", "mL", "s", "min", "h", "d", "wk", "a"}


@dataclass
class Loaded:
    tag: str
    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def all(self, resource_type: str) -> list[dict[str, Any]]:
        return self.by_type.get(resource_type, [])

    def patient_of(self, resource: dict[str, Any]) -> str | None:
        reference = (resource.get("subject") or resource.get("patient") or {}).get("reference", "")
        return reference.split("/", 1)[1] if reference.startswith("Patient/") else None


def _rewritten(node: Any, new_refs: dict[str, str]) -> Any:
    if isinstance(node, dict):
        return {
            key: new_refs.get(value, value)
            if key == "reference" and isinstance(value, str)
            else _rewritten(value, new_refs)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_rewritten(item, new_refs) for item in node]
    return node


@pytest.fixture(scope="module")
def synthea(client: Any) -> Loaded:
    loaded = Loaded(uuid.uuid4().hex)
    for path in BUNDLES:
        bundle = load_json(path)
        for entry in bundle["entry"]:
            meta = entry["resource"].setdefault("meta", {})
            meta["tag"] = [*meta.get("tag", []), {"system": TAG_SYSTEM, "code": loaded.tag}]
        response = client.post("/fhir", content=dumps(bundle), headers=FHIR_JSON)
        assert response.status_code == 200, f"{path.name}: {response.text[:2000]}"
        answers = parse(response.content)["entry"]
        new_refs = {}
        for entry, answer in zip(bundle["entry"], answers, strict=True):
            kind, new_id, *_ = answer["response"]["location"].split("/")
            new_refs[entry["fullUrl"]] = f"{kind}/{new_id}"
        for entry in bundle["entry"]:
            resource = _rewritten(entry["resource"], new_refs)
            resource["id"] = new_refs[entry["fullUrl"]].split("/", 1)[1]
            loaded.by_type.setdefault(resource["resourceType"], []).append(resource)
    return loaded


def search_all(client: Any, path: str, params: list[tuple[str, str]], count: int = 20) -> list[dict[str, Any]]:
    """Every match over all pages (following `next`), checking the paging on the way."""
    response = client.get(f"/fhir/{path}", params=[*params, ("_count", str(count))], headers=FHIR_JSON)
    matches: list[dict[str, Any]] = []
    pages = 0
    while True:
        assert response.status_code == 200, (path, params, response.text[:2000])
        body = parse(response.content)
        page = [entry["resource"] for entry in body.get("entry", []) if entry["search"]["mode"] == "match"]
        assert len(page) <= count
        matches.extend(page)
        pages += 1
        links = {link["relation"]: link["url"] for link in body["link"]}
        if "next" not in links:
            assert body.get("total", len(matches)) == len(matches)
            break
        assert page, "a page with a next link has entries"
        assert pages < 200, "paging does not end"
        response = client.get(links["next"], headers=FHIR_JSON)
    ids = [resource["id"] for resource in matches]
    assert len(ids) == len(set(ids)), "a resource appeared on two pages"
    return matches


def ids(resources: list[dict[str, Any]]) -> set[str]:
    return {resource["id"] for resource in resources}


def tagged(loaded: Loaded) -> tuple[str, str]:
    return ("_tag", f"{TAG_SYSTEM}|{loaded.tag}")


# --- independent evaluation helpers ----------------------------------------------------------------


def normal(text: str) -> str:
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    return " ".join(plain.casefold().split())


def name_parts(patient: dict[str, Any]) -> list[str]:
    parts = []
    for name in patient.get("name", []):
        parts += [name.get("family", ""), name.get("text", "")]
        parts += name.get("given", []) + name.get("prefix", []) + name.get("suffix", [])
    return [part for part in parts if part]


def name_matches(patient: dict[str, Any], value: str) -> bool:
    return any(normal(part).startswith(normal(value)) for part in name_parts(patient))


def codings(concept: dict[str, Any] | None) -> list[tuple[str | None, str | None]]:
    return [(c.get("system"), c.get("code")) for c in (concept or {}).get("coding", [])]


def instant(text: str) -> datetime:
    """A dateTime with seconds and an offset, in naive UTC."""
    moment = datetime.fromisoformat(text)
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo else moment


def effective(observation: dict[str, Any]) -> datetime | None:
    text = observation.get("effectiveDateTime")
    return instant(text) if text else None


# --- the searches ----------------------------------------------------------------------------------


def test_patient_name(client: Any, synthea: Loaded) -> None:
    patients = synthea.all("Patient")
    assert len(patients) == len(BUNDLES)
    first = patients[0]["name"][0]
    values = [first["family"][:5], first["given"][0].lower(), patients[1]["name"][0]["family"][:2], "A"]
    for value in values:
        expected = {p["id"] for p in patients if name_matches(p, value)}
        found = ids(search_all(client, "Patient", [("name", value), tagged(synthea)], count=2))
        assert found == expected, value
    assert {patients[0]["id"]} <= ids(search_all(client, "Patient", [("name", values[0]), tagged(synthea)]))


def test_patient_birthdate_prefixes(client: Any, synthea: Loaded) -> None:
    patients = synthea.all("Patient")
    births = sorted(date.fromisoformat(p["birthDate"]) for p in patients)
    middle = births[len(births) // 2]
    checks = {
        "ge": lambda born: born >= middle,
        "gt": lambda born: born > middle,
        "le": lambda born: born <= middle,
        "lt": lambda born: born < middle,
        "eq": lambda born: born == middle,
        "ne": lambda born: born != middle,
    }
    for prefix, check in checks.items():
        expected = {p["id"] for p in patients if check(date.fromisoformat(p["birthDate"]))}
        found = ids(search_all(client, "Patient", [("birthdate", f"{prefix}{middle}"), tagged(synthea)]))
        assert found == expected, prefix
    year = births[0].year
    expected = {p["id"] for p in patients if p["birthDate"].startswith(str(year))}
    assert ids(search_all(client, "Patient", [("birthdate", str(year)), tagged(synthea)])) == expected


def test_observation_code_with_system(client: Any, synthea: Loaded) -> None:
    observations = synthea.all("Observation")
    common = Counter(c for o in observations for c in set(codings(o.get("code"))) if c[0] == LOINC)
    for (system, code), _ in common.most_common(3):
        expected = {o["id"] for o in observations if (system, code) in codings(o.get("code"))}
        found = ids(search_all(client, "Observation", [("code", f"{system}|{code}"), tagged(synthea)]))
        assert found == expected, code
        assert (
            ids(search_all(client, "Observation", [("code", f"http://snomed.info/sct|{code}"), tagged(synthea)]))
            == set()
        )


def test_observation_patient(client: Any, synthea: Loaded) -> None:
    observations = synthea.all("Observation")
    for patient in synthea.all("Patient")[:2]:
        expected = {o["id"] for o in observations if synthea.patient_of(o) == patient["id"]}
        assert expected
        found = ids(search_all(client, "Observation", [("patient", f"Patient/{patient['id']}"), tagged(synthea)]))
        assert found == expected
        by_id = ids(search_all(client, "Observation", [("subject", patient["id"]), tagged(synthea)]))
        assert by_id == expected


def test_observation_date_window(client: Any, synthea: Loaded) -> None:
    observations = synthea.all("Observation")
    moments = sorted(m for m in (effective(o) for o in observations) if m)
    # Year boundaries that no observation comes within a day of, so that the time zone a server
    # gives a date without one cannot change the answer; the window holds some, not all.
    years = sorted({m.year for m in moments})

    def clear(year: int) -> bool:
        edge = datetime(year, 1, 1)
        return all(abs(m - edge) > timedelta(days=1) for m in moments)

    windows = [(a, b) for a in years for b in years if a < b and clear(a) and clear(b + 1)]
    a, b = next(
        (a, b)
        for a, b in windows
        if 0 < sum(datetime(a, 1, 1) <= m < datetime(b + 1, 1, 1) for m in moments) < len(moments)
    )
    low, high = datetime(a, 1, 1), datetime(b + 1, 1, 1)
    expected = {o["id"] for o in observations if (m := effective(o)) and low <= m < high}
    params = [("date", f"ge{a}-01-01"), ("date", f"lt{b + 1}-01-01"), tagged(synthea)]
    assert ids(search_all(client, "Observation", params)) == expected
    outside = {o["id"] for o in observations if (m := effective(o)) and not low <= m < high}
    params = [("date", f"lt{a}-01-01,ge{b + 1}-01-01"), tagged(synthea)]  # OR: before or after
    assert ids(search_all(client, "Observation", params)) == outside


def test_observation_value_quantity(client: Any, synthea: Loaded) -> None:
    observations = [o for o in synthea.all("Observation") if "valueQuantity" in o]
    units = Counter(o["valueQuantity"].get("code") for o in observations if o["valueQuantity"].get("system") == UCUM)
    unit = next(u for u, _ in units.most_common() if u not in CONVERTIBLE)
    values = sorted(
        Decimal(str(o["valueQuantity"]["value"])) for o in observations if o["valueQuantity"]["code"] == unit
    )
    threshold = values[len(values) // 2].quantize(Decimal("0.1"))
    expected = {
        o["id"]
        for o in observations
        if o["valueQuantity"].get("code") == unit and Decimal(str(o["valueQuantity"]["value"])) > threshold
    }
    params = [("value-quantity", f"gt{threshold}|{UCUM}|{unit}"), tagged(synthea)]
    assert ids(search_all(client, "Observation", params)) == expected
    any_unit = {o["id"] for o in observations if Decimal(str(o["valueQuantity"]["value"])) > threshold}
    params = [("value-quantity", f"gt{threshold}"), tagged(synthea)]
    assert ids(search_all(client, "Observation", params)) == any_unit


def test_encounter_chained_patient_name(client: Any, synthea: Loaded) -> None:
    patients = {p["id"]: p for p in synthea.all("Patient")}
    encounters = synthea.all("Encounter")
    for patient in list(patients.values())[:2]:
        value = patient["name"][0]["family"][:4]
        expected = {
            e["id"] for e in encounters if (owner := synthea.patient_of(e)) and name_matches(patients[owner], value)
        }
        assert expected
        found = ids(search_all(client, "Encounter", [("patient.name", value), tagged(synthea)]))
        assert found == expected
        found = ids(search_all(client, "Encounter", [("subject:Patient.name", value), tagged(synthea)]))
        assert found == expected


def test_patient_has_observation_code(client: Any, synthea: Loaded) -> None:
    patients = synthea.all("Patient")
    observations = synthea.all("Observation")
    owners: dict[str, set[str]] = {}
    for o in observations:
        for _, code in codings(o.get("code")):
            owners.setdefault(code or "", set()).add(synthea.patient_of(o) or "")
    # A code some but not all of the patients have, if there is one.
    code = min(owners, key=lambda c: (not 0 < len(owners[c]) < len(patients), c))
    expected = owners[code] & {p["id"] for p in patients}
    found = ids(search_all(client, "Patient", [("_has:Observation:patient:code", code), tagged(synthea)]))
    assert found == expected


def test_condition_code(client: Any, synthea: Loaded) -> None:
    conditions = synthea.all("Condition")
    common = Counter(c for cond in conditions for c in set(codings(cond.get("code"))))
    for (system, code), _ in common.most_common(2):
        expected = {c["id"] for c in conditions if (system, code) in codings(c.get("code"))}
        assert ids(search_all(client, "Condition", [("code", f"{system}|{code}"), tagged(synthea)])) == expected
        assert ids(search_all(client, "Condition", [("code", code), tagged(synthea)])) == expected


@pytest.mark.parametrize("descending", [True, False], ids=["desc", "asc"])
def test_observations_sorted_by_date(client: Any, synthea: Loaded, descending: bool) -> None:
    patient = synthea.all("Patient")[0]
    mine = [o for o in synthea.all("Observation") if synthea.patient_of(o) == patient["id"]]
    sort = "-date" if descending else "date"
    params = [("patient", patient["id"]), ("_sort", sort), tagged(synthea)]
    found = search_all(client, "Observation", params, count=7)
    assert ids(found) == ids(mine)
    moments = [effective(o) for o in found]
    assert moments == sorted(moments, reverse=descending), "not in date order"  # type: ignore[type-var]
