"""The R4 element definitions table (fhir_server.model.definitions)."""

from __future__ import annotations

import pytest

from fhir_server.model import definitions
from fhir_server.model.definitions import elements, mandatory_elements, summary_elements

DOMAIN_RESOURCE = [
    "id",
    "meta",
    "implicitRules",
    "language",
    "text",
    "contained",
    "extension",
    "modifierExtension",
]


def test_resource_types_are_the_146_concrete_r4_resources():
    types = definitions.RESOURCE_TYPES
    assert isinstance(types, frozenset)
    assert len(types) == 146
    assert {"Patient", "Bundle", "Parameters", "MedicinalProduct", "EffectEvidenceSynthesis"} <= types
    assert not {"Resource", "DomainResource", "MetadataResource", "HumanName"} & types


def test_patient_elements_in_definition_order_with_inherited_ones():
    names = list(elements("Patient"))
    assert names[:8] == DOMAIN_RESOURCE
    assert names[8:12] == ["identifier", "active", "name", "telecom"]
    assert names.index("birthDate") < names.index("deceasedBoolean") < names.index("address")


def test_every_resource_starts_with_the_resource_elements():
    for resource_type in definitions.RESOURCE_TYPES:
        names = list(elements(resource_type))
        if resource_type in ("Bundle", "Binary", "Parameters"):
            assert names[:4] == DOMAIN_RESOURCE[:4], resource_type
        else:
            assert names[:8] == DOMAIN_RESOURCE, resource_type


def test_element_info_fields():
    patient = elements("Patient")
    name = patient["name"]
    assert (name.is_array, name.type_code, name.is_primitive, name.is_summary, name.min) == (
        True,
        "HumanName",
        False,
        True,
        0,
    )
    assert name.path is None and name.children_key == "HumanName"
    active = patient["active"]
    assert (active.is_array, active.type_code, active.is_primitive) == (False, "boolean", True)
    assert patient["id"].type_code == "id" and patient["id"].is_primitive and not patient["id"].xml_attr
    assert elements("Narrative")["div"].type_code == "xhtml"


def test_choice_elements_are_expanded():
    patient = elements("Patient")
    assert "deceased[x]" not in patient
    assert patient["deceasedBoolean"].type_code == "boolean"
    assert patient["deceasedDateTime"].choice == "deceased"
    observation = elements("Observation")
    assert observation["valueQuantity"].type_code == "Quantity"
    assert not observation["valueQuantity"].is_primitive
    assert len([n for n in elements("Extension") if n.startswith("value")]) == 50


def test_backbone_elements_have_paths():
    contact = elements("Patient")["contact"]
    assert (contact.type_code, contact.path, contact.is_array) == ("BackboneElement", "Patient.contact", True)
    assert list(elements("Patient.contact"))[:4] == ["id", "extension", "modifierExtension", "relationship"]
    assert elements("Patient.contact")["id"].xml_attr


def test_content_references_point_at_the_referenced_path():
    item = elements("Questionnaire.item")["item"]
    assert item.path == "Questionnaire.item" and item.is_array and item.type_code == "BackboneElement"
    assert elements("Questionnaire.item.item") == elements("Questionnaire.item")
    assert "valueCoding" in elements("Questionnaire.item.item.answerOption")
    assert elements("Bundle.entry")["link"].path == "Bundle.link"
    # The referencing element keeps its own cardinality.
    assert not elements("ExampleScenario.process.step.operation")["request"].is_array


def test_nested_elements_of_data_types():
    slicing = elements("ElementDefinition")["slicing"]
    assert (slicing.type_code, slicing.path) == ("Element", "ElementDefinition.slicing")
    discriminator = elements("ElementDefinition.slicing")["discriminator"]
    assert discriminator.path == "ElementDefinition.slicing.discriminator"
    assert list(elements("ElementDefinition.slicing.discriminator")) == ["id", "extension", "type", "path"]
    assert "modifierExtension" not in elements("Timing.repeat")


def test_data_types_and_xml_attributes():
    assert list(elements("HumanName"))[:4] == ["id", "extension", "use", "text"]
    assert elements("HumanName")["id"].xml_attr
    url = elements("Extension")["url"]
    assert (url.type_code, url.xml_attr, url.min) == ("uri", True, 1)
    assert list(elements("Element")) == ["id", "extension"]


def test_resource_typed_elements():
    assert elements("Bundle.entry")["resource"].type_code == "Resource"
    assert elements("Parameters.parameter")["resource"].type_code == "Resource"
    assert elements("Bundle.entry.response")["outcome"].type_code == "Resource"
    assert elements("Patient")["contained"].type_code == "Resource"


def test_every_complex_child_can_be_recursed_into():
    seen: set[str] = set()
    pending = list(definitions.RESOURCE_TYPES)
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        for info in elements(key).values():
            if not info.is_primitive and info.type_code != "Resource":
                pending.append(info.children_key)
    assert {"Patient.contact", "Dosage", "Timing.repeat", "ElementDefinition.slicing"} <= seen


def test_unknown_names_raise_key_error():
    with pytest.raises(KeyError):
        elements("NoSuchType")
    with pytest.raises(KeyError):
        elements("Patient.nothing")


def test_summary_elements_follow_the_is_summary_flags():
    summary = summary_elements("Patient")
    assert {"resourceType", "id", "meta", "name", "birthDate", "gender", "identifier", "link"} <= summary
    assert {"deceasedBoolean", "deceasedDateTime", "managingOrganization"} <= summary
    assert not {"photo", "contact", "communication", "text", "maritalStatus", "multipleBirthBoolean"} & summary
    # Mandatory elements are in the summary even when not flagged isSummary.
    assert not elements("Appointment")["participant"].is_summary
    assert "participant" in summary_elements("Appointment")


def test_mandatory_elements():
    assert mandatory_elements("Observation") == {"resourceType", "id", "meta", "status", "code"}
    assert mandatory_elements("Patient") == {"resourceType", "id", "meta"}
    assert {"medicationCodeableConcept", "medicationReference"} <= mandatory_elements("MedicationRequest")
