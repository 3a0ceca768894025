"""The platform's own conformance resources (profiles/, conformance/) are valid R4 resources,
and the profile-sharing codes the server acts on are the ones they publish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_server.interactions.ownership import SHARING_CATEGORY_CODE, SHARING_CATEGORY_SYSTEM
from fhir_server.model.validate import validate_resource

ROOT = Path(__file__).resolve().parents[2]
FILES = sorted([*ROOT.glob("profiles/*.json"), *ROOT.glob("conformance/CodeSystem-*.json")])


@pytest.mark.parametrize("path", FILES, ids=lambda path: path.name)
def test_is_a_valid_r4_resource(path: Path) -> None:
    validate_resource(json.loads(path.read_text()))  # raises with every problem found


def test_the_sharing_category_is_the_published_code() -> None:
    system = json.loads((ROOT / "conformance/CodeSystem-consent-category.json").read_text())
    assert system["url"] == SHARING_CATEGORY_SYSTEM
    assert [concept["code"] for concept in system["concept"]] == [SHARING_CATEGORY_CODE]
    profile = json.loads((ROOT / "profiles/StructureDefinition-profile-sharing-consent.json").read_text())
    pattern = next(e for e in profile["differential"]["element"] if e["id"] == "Consent.category")
    assert pattern["patternCodeableConcept"]["coding"] == [
        {"system": SHARING_CATEGORY_SYSTEM, "code": SHARING_CATEGORY_CODE}
    ]
