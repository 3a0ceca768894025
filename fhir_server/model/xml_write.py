"""FHIR JSON (hl7.org/fhir/R4/json.html) to FHIR R4 XML (xml.html).

Children are written in definition order, which the XML format requires; Narrative.div is parsed
with the hardened parser of `xml_read` and embedded as XHTML. Every problem is reported as its
own issue with a FHIRPath-like `expression`.
"""

from __future__ import annotations

from decimal import Decimal
from functools import cache
from itertools import zip_longest
from typing import Any

from lxml import etree

from fhir_server.errors import Invalid, Issue
from fhir_server.model.definitions import ElementInfo, elements
from fhir_server.model.xml_read import (
    FHIR_NS,
    INT_RANGES,
    PRIMITIVE_KEY,
    XHTML_NS,
    XHTML_NSMAP,
    F,
    invalid,
    parse_xml,
    resource_types,
)

XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
_DIV = "{" + XHTML_NS + "}div"
_FHIR_NSMAP = {None: FHIR_NS}


@cache
def _order(key: str) -> dict[str, int]:
    return {name: i for i, name in enumerate(elements(key))}


def _text(value: Any, type_code: str) -> str | None:
    """The XML attribute text of a JSON primitive, or None when the JSON type is wrong."""
    if type_code == "boolean":
        return ("true" if value else "false") if isinstance(value, bool) else None
    if isinstance(value, bool):
        return None
    if type_code in INT_RANGES:
        return str(value) if isinstance(value, int) else None
    if type_code == "decimal":
        return str(value) if isinstance(value, int | Decimal | float) else None
    return value if isinstance(value, str) else None


class _Writer:
    """Turns FHIR JSON into an lxml tree, collecting every problem it finds."""

    def __init__(self) -> None:
        self.issues: list[Issue] = []
        self.divs: list[tuple[etree._Element, etree._Element]] = []

    def problem(self, message: str, error_code: str, expression: str) -> None:
        self.issues.append(Issue(message, error_code, "structure", expression))

    def resource(self, parent: etree._Element | None, obj: Any, expression: str) -> etree._Element | None:
        kind = obj.get("resourceType") if isinstance(obj, dict) else None
        if kind not in resource_types():
            self.problem(f"Not a FHIR R4 resource (resourceType {kind!r})", "xml-unknown-element", expression)
            return None
        el = etree.Element(F + kind, nsmap=_FHIR_NSMAP) if parent is None else etree.SubElement(parent, F + kind)
        self.fill(el, obj, kind, expression or kind, resource=True)
        return el

    def fill(self, el: etree._Element, obj: Any, key: str, expression: str, resource: bool = False) -> None:
        """Write the properties of JSON object `obj` (defined by `key`) into `el` in definition order."""
        if not isinstance(obj, dict):
            self.problem("Expected a JSON object", "xml-invalid-value", expression)
            return
        table, order = elements(key), _order(key)
        names: set[str] = set()
        for prop in obj:
            name = prop[1:] if prop.startswith("_") else prop
            info = table.get(name)
            if info is None or (name != prop and not info.is_primitive):
                if not (resource and prop == "resourceType"):
                    self.problem(f"Unknown property '{prop}'", "xml-unknown-element", f"{expression}.{prop}")
                continue
            names.add(name)
        for name in sorted(names, key=order.__getitem__):
            info = table[name]
            self.emit(el, info, obj.get(name), obj.get("_" + name), f"{expression}.{name}")

    def emit(self, el: etree._Element, info: ElementInfo, value: Any, shadow: Any, expression: str) -> None:
        if info.xml_attr:
            if not isinstance(value, str):
                self.problem("Expected a string", "xml-invalid-value", expression)
            else:
                self.set(el, info.name, value, expression)
            return
        if not info.is_array:
            self.item(el, info, value, shadow, expression)
            return
        for name, seq in ((info.name, value), ("_" + info.name, shadow)):
            if seq is not None and not isinstance(seq, list):
                self.problem(f"'{name}' must be an array", "xml-invalid-value", expression)
                return
        if value is not None and shadow is not None and len(value) != len(shadow):
            self.problem(f"'_{info.name}' must have as many items as '{info.name}'", "xml-invalid-value", expression)
            return
        for i, (item, extra) in enumerate(zip_longest(value or (), shadow or ())):
            self.item(el, info, item, extra, f"{expression}[{i}]")

    def item(self, el: etree._Element, info: ElementInfo, value: Any, shadow: Any, expression: str) -> None:
        if info.type_code == "xhtml":
            if shadow is not None:
                self.problem("The narrative div cannot carry extensions", "xml-invalid-value", expression)
            self.div(el, value, expression)
        elif info.is_primitive:
            self.primitive(etree.SubElement(el, F + info.name), info, value, shadow, expression)
        elif info.type_code == "Resource":
            self.resource(etree.SubElement(el, F + info.name), value, expression)
        else:
            self.fill(etree.SubElement(el, F + info.name), value, info.children_key, expression)

    def primitive(self, el: etree._Element, info: ElementInfo, value: Any, shadow: Any, expression: str) -> None:
        if value is None and shadow is None:
            self.problem("A primitive needs a value or extensions", "xml-invalid-value", expression)
            return
        if shadow is not None:
            self.fill(el, shadow, PRIMITIVE_KEY, expression)
        if value is not None:
            text = _text(value, info.type_code)
            if text is None:
                self.problem(f"Invalid JSON value for a {info.type_code}", "xml-invalid-value", expression)
            else:
                self.set(el, "value", text, expression)

    def set(self, el: etree._Element, name: str, text: str, expression: str) -> None:
        try:
            el.set(name, text)
        except ValueError:
            self.problem("Text contains characters that XML 1.0 cannot carry", "xml-invalid-value", expression)

    def div(self, el: etree._Element, value: Any, expression: str) -> None:
        """Narrative.div: parsed and embedded as XHTML (a placeholder until the tree is complete)."""
        if not isinstance(value, str):
            self.problem("Narrative div must be a string", "xml-invalid-value", expression)
            return
        try:
            div = parse_xml(value.encode("utf-8"), remove_comments=False)
        except Invalid as exc:
            self.problem(exc.message, exc.error_code, expression)
            return
        if div.tag != _DIV:
            self.problem("Narrative must be an XHTML <div> element", "xml-invalid-value", expression)
            return
        self.divs.append((etree.SubElement(el, _DIV, nsmap=XHTML_NSMAP), div))


def json_to_xml(resource: dict[str, Any], pretty: bool = False) -> bytes:
    """Serialise one FHIR JSON resource as FHIR XML (UTF-8, with an XML declaration)."""
    writer = _Writer()
    root = writer.resource(None, resource, "")
    if writer.issues or root is None:
        raise invalid(writer.issues)
    if pretty:
        # Indent before the narrative goes in, so the XHTML content is left exactly as it was.
        etree.indent(root, space="  ")
    for placeholder, div in writer.divs:
        div.tail = placeholder.tail
        placeholder.getparent().replace(placeholder, div)
    return XML_DECLARATION + etree.tostring(root, encoding="UTF-8")
