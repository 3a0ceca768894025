"""FHIR R4 XML format (hl7.org/fhir/R4/xml.html) to and from FHIR JSON (json.html): the public facade.

Reading (with hardened parsing) lives in `xml_read`, writing in `xml_write`. The conversion is
driven by the R4 element definitions (`definitions.elements`), so it covers all 146 resource
types and every data type without per-type code:

- a primitive is an element whose `value` attribute holds the value; its `id` attribute and
  `extension` children go to the JSON shadow property `_name` (arrays get parallel `_name` arrays
  with null holes);
- Element.id and Extension.url are attributes (their ElementDefinition representation is xmlAttr);
- Narrative.div is an XHTML `div` element, carried in JSON as its serialised text;
- elements of type Resource (contained, Bundle.entry.resource, Parameters.parameter.resource, ...)
  wrap the resource element: `<contained><Patient>...</Patient></contained>`;
- children are written in definition order, which the XML format requires.

Input is parsed with a hardened lxml parser and any DOCTYPE is refused, which blocks external
entities (XXE) and entity expansion ("billion laughs"). Every structural problem is reported as
its own issue with a FHIRPath-like `expression`.
"""

from fhir_server.model.xml_read import FHIR_NS, XHTML_NS, XSI_NS, parse_xml, xml_to_json
from fhir_server.model.xml_write import XML_DECLARATION, json_to_xml

__all__ = ["FHIR_NS", "XHTML_NS", "XML_DECLARATION", "XSI_NS", "json_to_xml", "parse_xml", "xml_to_json"]
