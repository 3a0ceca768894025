"""The command line: serve refuses non-loopback hosts; load posts Bundles and NDJSON."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import httpx

from fhir_server.cli import main
from tests.conftest import SYNTHEA


def test_serve_in_operator_mode_refuses_a_non_loopback_host(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "fhir_server.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True, text=True, timeout=60,
        env={
            "FHIR_DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
            "FHIR_ALLOW_UNAUTHENTICATED_LOOPBACK": "true",
            "PATH": "/usr/bin:/bin",
        },
    )
    assert result.returncode == 2
    assert "refusing" in result.stderr


def test_load_posts_a_synthea_bundle(live_server, capsys):
    smallest = min(SYNTHEA.glob("*.json"), key=lambda path: path.stat().st_size)
    entries = len(json.loads(smallest.read_bytes())["entry"])
    assert main(["load", str(smallest), "--url", live_server, "--quiet"]) == 0
    assert f"loaded {entries} resources" in capsys.readouterr().out


def test_load_ndjson_keeps_references_between_lines_and_chunks(live_server, tmp_path):
    x, y = f"x-{uuid.uuid4()}", f"y-{uuid.uuid4()}"
    lines = [
        {"resourceType": "Patient", "id": "p1", "identifier": [{"system": "urn:cli-test", "value": "p1"}]},
        {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": x},
         "subject": {"reference": "Patient/p1"}},
        {"resourceType": "Observation", "id": "o2", "status": "final", "code": {"text": y},
         "subject": {"reference": "Patient/p1"}},
    ]
    path = tmp_path / "data.ndjson"
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    assert main(["load", str(path), "--url", live_server, "--quiet", "--batch-size", "2"]) == 0
    history = httpx.get(f"{live_server}/Observation/_history", params={"_count": 1000}).json()
    subjects = {entry["resource"]["code"]["text"]: entry["resource"]["subject"]["reference"]
                for entry in history["entry"]  # a deletion's entry has no resource
                if "resource" in entry and entry["resource"]["code"].get("text") in (x, y)}
    assert subjects[x] == subjects[y]
    patient = httpx.get(f"{live_server}/{subjects[x]}")
    assert patient.status_code == 200
    assert patient.json()["identifier"][0]["value"] == "p1"
