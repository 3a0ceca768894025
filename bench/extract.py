"""Search value extraction benchmark: `python -m bench.extract [--duration S]`.

Measures `fhir_server.search.extract.index_rows` in-process (no database), the work every write
does to fill the index tables: the 22 official example Patients in a loop, and the Observations
of the first Synthea Bundle (one at a time, then all of them). Prints resources/s and rows per
resource. See search/extract.py.
"""

from __future__ import annotations

import argparse
import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from fhir_server.search.extract import index_rows

SHARED = Path(__file__).resolve().parents[2] / "shared"


def _load(path: Path) -> Any:
    return json.loads(path.read_bytes(), parse_float=Decimal)


def _rate(resources: list[dict[str, Any]], duration: float) -> float:
    for resource in resources:  # warm-up: compiles the expressions of the types involved
        index_rows(resource)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < duration:
        for resource in resources:
            index_rows(resource)
        count += len(resources)
    return count / (time.perf_counter() - start)


def _line(label: str, resources: list[dict[str, Any]], duration: float) -> str:
    rows = sum(len(index_rows(resource)) for resource in resources) / len(resources)
    return f"{label:<48} {_rate(resources, duration):>9,.0f}/s {rows:>6.1f} rows each"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per measurement")
    args = parser.parse_args()
    patients = [_load(path) for path in sorted((SHARED / "fhir-r4" / "examples").glob("Patient-*.json"))]
    bundle = _load(sorted((SHARED / "synthea").glob("*.json"))[0])
    observations = [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == "Observation"]
    print(_line(f"official example Patients ({len(patients)})", patients, args.duration))
    print(_line("Synthea Observation (one)", observations[:1], args.duration))
    print(_line(f"Synthea Observations ({len(observations)}, one Bundle)", observations, args.duration))


if __name__ == "__main__":
    main()
