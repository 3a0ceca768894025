"""FHIR XML <-> JSON (fhir_server.model.xml)."""

from __future__ import annotations

import decimal
import json
import time
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from fhir_server.errors import Invalid
from fhir_server.model.definitions import elements
from fhir_server.model.xml import FHIR_NS, json_to_xml, xml_to_json

EXAMPLES_DIR = Path(__file__).resolve().parents[3] / "shared" / "fhir-r4" / "examples"
EXAMPLES = sorted(EXAMPLES_DIR.glob("*.json"))
F = "{" + FHIR_NS + "}"


def load(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f, parse_float=decimal.Decimal)


def xml(body: str) -> bytes:
    return f'<?xml version="1.0" encoding="UTF-8"?>\n{body}'.encode()


def patient(inner: str) -> bytes:
    return xml(f'<Patient xmlns="http://hl7.org/fhir">{inner}</Patient>')


def normalise(value: Any) -> Any:
    """Narrative divs compared as canonical XML (quoting of `"` and comments are insignificant)."""
    if isinstance(value, dict):
        return {
            k: etree.tostring(etree.fromstring(v), method="c14n", with_comments=False) if k == "div" else normalise(v)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [normalise(v) for v in value]
    return value


def rejected(body: bytes, **kwargs: Any) -> Invalid:
    with pytest.raises(Invalid) as info:
        xml_to_json(body, **kwargs)
    return info.value


def assert_definition_order(el: etree._Element, key: str) -> None:
    """Every element's children appear in the order of the element definitions."""
    table = elements(key)
    order = {name: i for i, name in enumerate(table)}
    last = -1
    for child in el:
        name = etree.QName(child).localname
        assert order[name] >= last, f"{key}: <{name}> out of order"
        last = order[name]
        info = table[name]
        if info.type_code == "Resource":
            assert_definition_order(child[0], etree.QName(child[0]).localname)
        elif not info.is_primitive:
            assert_definition_order(child, info.children_key)


# --- round trips --------------------------------------------------------------------------------


def test_all_697_examples_are_present():
    assert len(EXAMPLES) == 697


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_round_trips(path: Path):
    resource = load(path)
    body = json_to_xml(resource)
    back = xml_to_json(body)
    assert back == resource or normalise(back) == normalise(resource)
    root = etree.fromstring(body)
    assert_definition_order(root, resource["resourceType"])


def test_most_examples_round_trip_exactly():
    exact = sum(xml_to_json(json_to_xml(r)) == r for r in map(load, EXAMPLES))
    # The rest differ only in how their narrative escapes `"` (&quot;) or in XML comments.
    assert exact >= 660


@pytest.mark.parametrize("name", ["Patient-example", "Bundle-bundle-transaction", "Questionnaire-3141"])
def test_pretty_output_round_trips(name: str):
    resource = load(EXAMPLES_DIR / f"{name}.json")
    body = json_to_xml(resource, pretty=True)
    assert b"\n  <" in body
    assert normalise(xml_to_json(body)) == normalise(resource)


def test_resource_types_missing_from_r4b_work_as_contained_resources():
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": {"resourceType": "MedicinalProductIngredient", "id": "a", "role": {"text": "x"}}},
            {"resource": {"resourceType": "EffectEvidenceSynthesis", "id": "b", "status": "draft"}},
        ],
    }
    body = json_to_xml(bundle)
    assert b'<resource><MedicinalProductIngredient><id value="a"/>' in body
    assert xml_to_json(body) == bundle


def test_output_starts_with_the_xml_declaration():
    body = json_to_xml({"resourceType": "Patient", "id": "p1", "active": True})
    assert body == (
        b'<?xml version="1.0" encoding="UTF-8"?>\n'
        b'<Patient xmlns="http://hl7.org/fhir"><id value="p1"/><active value="true"/></Patient>'
    )


def test_elements_are_written_in_definition_order():
    resource = {
        "resourceType": "Patient",
        "gender": "male",
        "active": False,
        "id": "x",
        "name": [{"family": "F"}],
    }
    root = etree.fromstring(json_to_xml(resource))
    assert [etree.QName(c).localname for c in root] == ["id", "active", "name", "gender"]


# --- values -------------------------------------------------------------------------------------


def test_primitive_types_become_json_types():
    body = patient(
        '<active value="true"/><multipleBirthInteger value="2"/>'
        '<extension url="http://e"><valueDecimal value="1.50"/></extension>'
    )
    result = xml_to_json(body)
    assert result["active"] is True
    assert result["multipleBirthInteger"] == 2 and isinstance(result["multipleBirthInteger"], int)
    value = result["extension"][0]["valueDecimal"]
    assert isinstance(value, decimal.Decimal) and str(value) == "1.50"


def test_decimals_keep_their_precision_both_ways():
    observation = {
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "x"},
        "valueQuantity": {"value": decimal.Decimal("1.50"), "unit": "mg"},
    }
    body = json_to_xml(observation)
    assert b'<value value="1.50"/>' in body
    assert str(xml_to_json(body)["valueQuantity"]["value"]) == "1.50"


def test_primitive_extensions_go_to_the_shadow_property():
    body = patient(
        '<birthDate id="b1" value="1970-03-30">'
        '<extension url="http://hl7.org/fhir/StructureDefinition/patient-birthTime">'
        '<valueDateTime value="1970-03-30T09:01:00+01:00"/></extension></birthDate>'
    )
    result = xml_to_json(body)
    assert result["birthDate"] == "1970-03-30"
    assert result["_birthDate"] == {
        "id": "b1",
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                "valueDateTime": "1970-03-30T09:01:00+01:00",
            }
        ],
    }
    assert xml_to_json(json_to_xml(result)) == result


def test_primitive_arrays_get_parallel_shadow_arrays_with_holes():
    body = patient(
        '<name><given value="A"/><given><extension url="http://e"><valueCode value="x"/></extension></given>'
        '<given value="C"/></name>'
    )
    name = xml_to_json(body)["name"][0]
    assert name["given"] == ["A", None, "C"]
    assert name["_given"] == [None, {"extension": [{"url": "http://e", "valueCode": "x"}]}, None]
    assert json_to_xml(xml_to_json(body)).endswith(body.split(b"\n", 1)[1])


def test_narrative_div_is_embedded_as_xhtml():
    div = '<div xmlns="http://www.w3.org/1999/xhtml"><p>a &amp; <b>b</b></p></div>'
    resource = {"resourceType": "Patient", "text": {"status": "generated", "div": div}}
    body = json_to_xml(resource)
    assert b'<text><status value="generated"/><div xmlns="http://www.w3.org/1999/xhtml"><p>a &amp; <b>' in body
    assert xml_to_json(body) == resource


def test_narrative_div_keeps_only_the_xhtml_namespace_declaration():
    body = xml(
        '<Patient xmlns="http://hl7.org/fhir" xmlns:h="http://www.w3.org/1999/xhtml"'
        ' xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"'
        ' xsi:schemaLocation="http://hl7.org/fhir x.xsd">'
        '<text><status value="generated"/><h:div><h:p>hi</h:p></h:div></text></Patient>'
    )
    assert xml_to_json(body)["text"]["div"] == '<div xmlns="http://www.w3.org/1999/xhtml"><p>hi</p></div>'


def test_contained_resources_are_wrapped():
    body = patient(
        '<contained><Organization><id value="o1"/><name value="Acme"/></Organization></contained>'
        '<managingOrganization><reference value="#o1"/></managingOrganization>'
    )
    result = xml_to_json(body)
    assert result["contained"] == [{"resourceType": "Organization", "id": "o1", "name": "Acme"}]
    assert json_to_xml(result).endswith(body.split(b"\n", 1)[1])


def test_element_ids_and_extension_urls_are_attributes():
    resource = {
        "resourceType": "Patient",
        "name": [{"id": "n1", "extension": [{"url": "http://e", "valueString": "v"}], "family": "F"}],
    }
    body = json_to_xml(resource)
    assert b'<name id="n1"><extension url="http://e"><valueString value="v"/></extension>' in body
    assert xml_to_json(body) == resource


# --- security -----------------------------------------------------------------------------------


def test_doctype_with_external_entity_is_rejected_without_leaking():
    body = (
        b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        b'<Patient xmlns="http://hl7.org/fhir"><id value="&e;"/></Patient>'
    )
    error = rejected(body)
    assert error.error_code == "xml-doctype-forbidden"
    assert [(i.error_code, i.code) for i in error.issues] == [("xml-doctype-forbidden", "security")]
    assert "root:" not in json.dumps(error.to_outcome())


def test_doctype_is_also_caught_after_parsing_utf16():
    text = (
        '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        '<Patient xmlns="http://hl7.org/fhir"><id value="&e;"/></Patient>'
    )
    error = rejected(text.encode("utf-16"))
    assert error.error_code == "xml-doctype-forbidden"
    assert "root:" not in json.dumps(error.to_outcome())


def test_billion_laughs_is_rejected_quickly():
    entities = '<!ENTITY lol0 "lol">' + "".join(
        f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
    )
    body = xml(f'<!DOCTYPE lolz [{entities}]><Patient xmlns="http://hl7.org/fhir"><id value="&lol9;"/></Patient>')
    start = time.monotonic()
    error = rejected(body)
    assert error.error_code == "xml-doctype-forbidden"
    assert time.monotonic() - start < 1


def test_deep_nesting_is_rejected():
    inner = '<valueString value="x"/>'
    for _ in range(70):
        inner = f'<extension url="http://e">{inner}</extension>'
    error = rejected(patient(inner))
    assert error.error_code == "xml-too-deep"
    assert xml_to_json(patient(inner), max_depth=200)["extension"][0]["url"] == "http://e"


# --- structural errors --------------------------------------------------------------------------


def test_malformed_xml_is_rejected_with_a_location():
    error = rejected(b'<Patient xmlns="http://hl7.org/fhir">\n  <id value="x">\n</Patient>')
    assert error.error_code == "xml-malformed"
    assert error.issues[0].code == "structure"
    assert "line 3" in error.message


def test_unknown_elements_are_reported_with_their_path():
    error = rejected(patient('<name><family value="F"/></name><name><foo value="x"/></name><bar/>'))
    assert [(i.error_code, i.expression) for i in error.issues] == [
        ("xml-unknown-element", "Patient.name[1].foo"),
        ("xml-unknown-element", "Patient.bar"),
    ]
    assert all(i.code == "structure" for i in error.issues)


def test_wrong_namespace_is_rejected():
    error = rejected(b'<Patient xmlns="http://example.org"><id value="x"/></Patient>')
    assert error.error_code == "xml-unknown-element"
    error = rejected(patient('<active xmlns="http://example.org" value="true"/>'))
    assert error.issues[0].expression == "Patient.active"


def test_unknown_resource_type_is_rejected():
    assert rejected(xml('<Patientx xmlns="http://hl7.org/fhir"/>')).error_code == "xml-unknown-element"
    assert rejected(patient("<contained><Foo/></contained>")).issues[0].expression == "Patient.contained[0]"


def test_invalid_values_are_rejected():
    error = rejected(patient('<active value="yes"/><multipleBirthInteger value="1.5"/><birthDate/>'))
    assert [(i.error_code, i.expression) for i in error.issues] == [
        ("xml-invalid-value", "Patient.active"),
        ("xml-invalid-value", "Patient.multipleBirthInteger"),
        ("xml-invalid-value", "Patient.birthDate"),
    ]


def test_text_content_is_rejected():
    error = rejected(patient('<active value="true">yes</active>'))
    assert error.issues[0].error_code == "xml-invalid-value"
    assert error.issues[0].expression == "Patient.active"


def test_repeats_choices_and_attributes_are_checked():
    error = rejected(
        patient(
            '<gender value="male"/><gender value="female"/><deceasedBoolean value="true"/>'
            '<deceasedDateTime value="2000"/><name foo="1"><family value="F"/></name>'
        )
    )
    assert [i.expression for i in error.issues] == [
        "Patient.gender",
        "Patient.deceasedDateTime",
        "Patient.name[0].foo",
    ]


def test_json_to_xml_rejects_unknown_properties():
    with pytest.raises(Invalid) as info:
        json_to_xml({"resourceType": "Patient", "nickname": "x", "name": [{"family": 1}]})
    assert [i.expression for i in info.value.issues] == ["Patient.nickname", "Patient.name[0].family"]
    with pytest.raises(Invalid):
        json_to_xml({"resourceType": "NotAType"})


def test_out_of_order_input_is_accepted():
    result = xml_to_json(patient('<gender value="male"/><id value="x"/>'))
    assert result == {"resourceType": "Patient", "gender": "male", "id": "x"}
