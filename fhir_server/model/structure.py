"""Structural validation through the fhir.resources models (R4B family).

The R4 JSON Schema (schema.py) is the authority; the models add what the schema cannot say:
required primitive elements, one value per choice element, primitive formats. R4B differs from
R4 in places, so the models are consulted only where they agree with R4:

- Types absent from R4B (MedicinalProduct*, EffectEvidenceSynthesis, RiskEvidenceSynthesis and
  SubstanceNucleicAcid, -Polymer, -Protein, -ReferenceInformation, -SourceMaterial, -Specification):
  no model exists, the schema alone decides.
- Types whose R4 elements the R4B model lacks (Evidence, EvidenceVariable, redefined in R4B): the
  schema alone decides. Both rules are computed, not listed: see `_model_for`.
- `Questionnaire.item.linkId` (at any depth): R4 says 1..1, yet the official R4 example
  Questionnaire-qs1 omits it and the R4 schema accepts it, so its absence is not enforced.
"""

from __future__ import annotations

import os
import re
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from fhir_server.errors import Issue
from fhir_server.model.schema import schema_definitions

# fhir.resources names the variants of a choice element it found missing or repeated in a list.
_CHOICE_LIST = re.compile(r"list (\[[^\]]*\])")

# (resource type, element name at any depth, pydantic error type) left to the R4 schema.
_RELAXED = {("Questionnaire", "linkId", "model_field_validation.missing")}


@cache
def _model_for(resource_type: str) -> Any:
    """The R4B model class when it covers every R4 element of the type, else None."""
    try:
        model = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, ImportError, AttributeError):
        return None
    aliases = {field.alias or name for name, field in model.model_fields.items()}
    r4_elements = set(schema_definitions()[resource_type]["properties"]) - {"resourceType"}
    return model if r4_elements <= aliases else None


def warm_up() -> None:
    """Load every model class now rather than on the first request that needs it."""
    for resource_type in schema_definitions()["ResourceList"]["oneOf"]:
        _model_for(resource_type["$ref"].rsplit("/", 1)[1])


def _expression(resource_type: str, location: tuple[Any, ...]) -> str:
    path = resource_type
    for step in location:
        if isinstance(step, int):
            path += f"[{step}]"
        elif step != "__root__":
            path += f".{str(step).lstrip('_')}"
    return path


def validate_structure(resource: dict[str, Any]) -> list[Issue]:
    resource_type = resource["resourceType"]
    model = _model_for(resource_type)
    if model is None:
        return []
    try:
        model.model_validate(resource)
    except ValidationError as exc:
        return [
            Issue(error["msg"], "structure", "structure", _location(resource_type, error))
            for error in exc.errors(include_url=False)
            if not _relaxed(resource_type, error)
        ]
    return []


def _location(resource_type: str, error: Any) -> str:
    """Where the problem is; choice-element errors name the choice (e.g. `Observation.value`)."""
    path = _expression(resource_type, error["loc"])
    names = _CHOICE_LIST.search(error["msg"])
    if names:
        choices = re.findall(r"'([A-Za-z]+)'", names.group(1))
        base = os.path.commonprefix(choices)
        if len(choices) > 1 and base:
            return f"{path}.{base}"
    return path


def _relaxed(resource_type: str, error: Any) -> bool:
    names = [step for step in error["loc"] if isinstance(step, str)]
    return any(
        kind == resource_type and error_type == error["type"] and name in names for kind, name, error_type in _RELAXED
    )
