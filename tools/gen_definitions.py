"""Generate fhir_server/model/data/elements.json.gz from the official R4 StructureDefinitions.

Reads the snapshots of every base resource and data type StructureDefinition (profiles-resources
and profiles-types, FHIR 4.0.1) and keeps, for each type and each backbone element path, only what
the server needs: the child elements in definition order with their type codes, cardinality, the
isSummary flag and the XML representation. Primitive types, constraint profiles (SimpleQuantity,
MoneyQuantity) and logical models are left out.

Output format (consumed by fhir_server/model/definitions.py)::

    {"version": "4.0.1",
     "primitives": [type code, ...],
     "resources": [concrete resource type, ...],
     "tables": {type or path: [[name, type code or [codes], min, flags, ref?], ...]},
     "aliases": {contentReference element path: referenced path}}

`name` is the element name as in the definition (choices keep their "[x]"); flags is a bit set
(1 = max is not "1", 2 = isSummary, 4 = XML attribute); `ref` is only present for elements defined
by a contentReference and names the table holding their children.

Usage: python tools/gen_definitions.py [--source DIR] [--output FILE]
"""

from __future__ import annotations

import argparse
import gzip
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = Path(__file__).resolve().parents[2] / "shared" / "fhir-r4"
DEFAULT_OUTPUT = ROOT / "fhir_server" / "model" / "data" / "elements.json.gz"

FHIR_TYPE_EXT = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type"
SYSTEM_PREFIX = "http://hl7.org/fhirpath/System."
ARRAY, SUMMARY, XML_ATTR = 1, 2, 4
NESTED_TYPES = ("BackboneElement", "Element")


def load_definitions(source: Path) -> list[dict[str, Any]]:
    """All StructureDefinitions from the two official bundles."""
    with gzip.open(source / "profiles-resources.json.gz", "rt", encoding="utf-8") as f:
        resources = json.load(f)
    with open(source / "profiles-types.json", encoding="utf-8") as f:
        types = json.load(f)
    return [
        entry["resource"]
        for bundle in (resources, types)
        for entry in bundle["entry"]
        if entry["resource"]["resourceType"] == "StructureDefinition"
    ]


def wanted(sd: dict[str, Any]) -> bool:
    """Base definitions of resources and complex types (abstract bases included)."""
    return sd["kind"] in ("resource", "complex-type") and sd.get("derivation") != "constraint"


def type_code(element: dict[str, Any], type_: dict[str, Any], top_level_resource: bool) -> str:
    """The FHIR type code; FHIRPath System types (id, url, primitive values) use the fhir-type extension."""
    code = type_["code"]
    if not code.startswith(SYSTEM_PREFIX):
        return code
    if top_level_resource and element["path"].endswith(".id"):
        return "id"  # resource.html: Resource.id is an `id`, although the 4.0.1 snapshot says "string"
    for ext in type_.get("extension", []):
        if ext.get("url") == FHIR_TYPE_EXT:
            return ext["valueUrl"]
    return code[len(SYSTEM_PREFIX) :].lower()


def element_row(sd: dict[str, Any], element: dict[str, Any], by_path: dict[str, dict[str, Any]]) -> list[Any]:
    """One compact row for a child element."""
    path = element["path"]
    parent, name = path.rsplit(".", 1)
    flags = (ARRAY if element["max"] != "1" else 0) | (SUMMARY if element.get("isSummary") else 0)
    if "xmlAttr" in element.get("representation", []):
        flags |= XML_ATTR
    if "contentReference" in element:
        target = element["contentReference"].lstrip("#")
        code = by_path[target]["type"][0]["code"]
        return [name, code, element["min"], flags, target]
    top_level = sd["kind"] == "resource" and "." not in parent
    codes = [type_code(element, t, top_level) for t in element["type"]]
    if len(codes) == 1 and not name.endswith("[x]"):
        if codes[0] in NESTED_TYPES and not any(p.startswith(path + ".") for p in by_path):
            raise ValueError(f"{path} is a {codes[0]} without children")
        return [name, codes[0], element["min"], flags]
    return [name, codes, element["min"], flags]


def build(definitions: list[dict[str, Any]]) -> dict[str, Any]:
    tables: dict[str, list[list[Any]]] = {}
    aliases: dict[str, str] = {}
    resources, primitives = [], []
    for sd in sorted(definitions, key=lambda s: s["type"]):
        if sd["kind"] == "primitive-type":
            primitives.append(sd["type"])
            continue
        if not wanted(sd):
            continue
        if sd["kind"] == "resource" and not sd.get("abstract"):
            resources.append(sd["type"])
        snapshot = sd["snapshot"]["element"]
        by_path = {e["path"]: e for e in snapshot}
        tables[sd["type"]] = []
        for element in snapshot[1:]:
            if element["max"] == "0":
                continue
            row = element_row(sd, element, by_path)
            parent = element["path"].rsplit(".", 1)[0]
            tables.setdefault(parent, []).append(row)
            if len(row) == 5:
                aliases[element["path"]] = row[4]
    return {
        "version": "4.0.1",
        "primitives": primitives,
        "resources": resources,
        "tables": tables,
        "aliases": aliases,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()
    data = build(load_definitions(args.source))
    text = json.dumps(data, separators=(",", ":"), sort_keys=False).encode()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 and no file name keep the output byte-identical between runs
    with open(args.output, "wb") as out, gzip.GzipFile("", "wb", 9, out, mtime=0) as gz:
        gz.write(text)
    print(
        f"{args.output}: {len(data['resources'])} resources, {len(data['tables'])} tables, "
        f"{len(text)} bytes JSON, {args.output.stat().st_size} bytes gzipped"
    )


if __name__ == "__main__":
    main()
