"""FHIR R4 XML (hl7.org/fhir/R4/xml.html) to FHIR JSON (json.html), with hardened XML parsing.

Input is parsed with a hardened lxml parser and any DOCTYPE is refused, which blocks external
entities (XXE) and entity expansion ("billion laughs"). The tree is read against the R4 element
definitions (`definitions.elements`); every structural problem is reported as its own issue with
a FHIRPath-like `expression`. The constants and helpers shared with `xml_write` live here too.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from functools import cache
from typing import Any

from lxml import etree

from fhir_server.errors import Invalid, Issue
from fhir_server.model import definitions
from fhir_server.model.definitions import ElementInfo, elements

FHIR_NS = "http://hl7.org/fhir"
XHTML_NS = "http://www.w3.org/1999/xhtml"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

F = "{" + FHIR_NS + "}"
_XSI = "{" + XSI_NS + "}"
XHTML_NSMAP = {None: XHTML_NS}
# "<!DOCTYPE" in UTF-8 and, with NUL bytes between the letters, in UTF-16 and UTF-32.
_DOCTYPE = re.compile(rb"\x00*".join(re.escape(bytes([c])) for c in b"<!DOCTYPE"), re.IGNORECASE)
_POSITION = re.compile(r", line \d+, column \d+$")
_INTEGER = re.compile(r"[+-]?(0|[1-9][0-9]*)\Z")
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?\Z")
INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "positiveInt": (1, 2**31 - 1), "unsignedInt": (0, 2**31 - 1)}
_MISSING = object()
# What a primitive element holds besides its value: the `id` attribute and `extension` (from Element).
PRIMITIVE_KEY = "Element"


@cache
def resource_types() -> frozenset[str]:
    return definitions.RESOURCE_TYPES


def _fail(message: str, error_code: str, code: str = "structure", expression: str | None = None) -> Invalid:
    return Invalid(message, error_code, issues=[Issue(message, error_code, code, expression)])


def invalid(issues: list[Issue]) -> Invalid:
    first = issues[0]
    message = first.message if len(issues) == 1 else f"{len(issues)} problems in the FHIR XML, first: {first.message}"
    return Invalid(message, first.error_code, issues=issues)


def _parser(remove_comments: bool = True) -> etree.XMLParser:
    # A new parser per call: lxml parsers must not be shared between threads.
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=remove_comments,
        remove_pis=True,
    )


def _doctype_forbidden() -> Invalid:
    return _fail("XML with a DOCTYPE declaration is not accepted", "xml-doctype-forbidden", "security")


def parse_xml(body: bytes | str, remove_comments: bool = True) -> etree._Element:
    """Parse untrusted XML text safely; any DOCTYPE is refused before and after parsing."""
    raw = body.encode("utf-8") if isinstance(body, str) else body
    if _DOCTYPE.search(raw):
        raise _doctype_forbidden()
    try:
        root = etree.fromstring(raw, _parser(remove_comments))
    except etree.XMLSyntaxError as exc:
        line, column = exc.position
        detail = _POSITION.sub("", exc.msg or "XML syntax error")
        if "depth" in detail.lower():
            raise _fail(f"XML is nested too deeply (line {line})", "xml-too-deep", "too-costly") from None
        raise _fail(f"Malformed XML at line {line}, column {column}: {detail}", "xml-malformed") from None
    except ValueError as exc:
        raise _fail(f"Malformed XML: {exc}", "xml-malformed") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise _doctype_forbidden()
    return root


def _split(tag: Any) -> tuple[str | None, str]:
    if tag.startswith(F):
        return FHIR_NS, tag[len(F) :]
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return None, tag


def _xhtml_text(div: etree._Element) -> str:
    """The div as FHIR JSON carries it: unprefixed, declaring only the XHTML namespace."""
    if div.prefix is None and div.nsmap == XHTML_NSMAP:
        return etree.tostring(div, encoding="unicode", with_tail=False)
    clean = _unprefixed(div)
    etree.cleanup_namespaces(clean)
    return etree.tostring(clean, encoding="unicode", with_tail=False)


def _unprefixed(source: etree._Element, parent: etree._Element | None = None) -> etree._Element:
    """Copy an XHTML subtree so that the XHTML namespace is the default one (no `h:` prefixes)."""
    attrib = dict(source.attrib)
    if parent is None:
        element = etree.Element(source.tag, attrib, nsmap=XHTML_NSMAP)
    else:
        element = etree.SubElement(parent, source.tag, attrib)
        element.tail = source.tail
    element.text = source.text
    for child in source:
        if isinstance(child.tag, str):
            _unprefixed(child, element)
        else:
            element.append(copy.copy(child))
    return element


class _Reader:
    """Turns a parsed FHIR XML tree into FHIR JSON, collecting every problem it finds."""

    def __init__(self, max_depth: int) -> None:
        self.max_depth = max_depth
        self.issues: list[Issue] = []

    def problem(self, message: str, error_code: str, expression: str | None) -> None:
        self.issues.append(Issue(message, error_code, "structure", expression))

    def text(self, text: str | None, expression: str) -> None:
        if text and not text.isspace():
            self.problem(f"Unexpected text content {text.strip()[:40]!r}", "xml-invalid-value", expression)

    def resource(self, el: etree._Element, expression: str, depth: int) -> dict[str, Any] | None:
        ns, name = _split(el.tag)
        where = expression or name
        if ns != FHIR_NS:
            self.problem(f"Element <{name}> is not in the FHIR namespace {FHIR_NS}", "xml-unknown-element", where)
            return None
        if name not in resource_types():
            self.problem(f"<{name}> is not a FHIR R4 resource type", "xml-unknown-element", where)
            return None
        out: dict[str, Any] = {"resourceType": name}
        self.element(el, name, out, where, depth)
        return out

    def attributes(self, el: etree._Element, table: Any, out: dict[str, Any], expression: str, primitive: bool) -> Any:
        """Copy xmlAttr elements (id, url) into `out`; returns a primitive's `value` attribute if any."""
        value = _MISSING
        for attr, text in el.attrib.items():
            info = table.get(attr)
            if info is not None and info.xml_attr:
                out[attr] = text
            elif primitive and attr == "value":
                value = text
            elif not attr.startswith(_XSI):
                self.unknown_attribute(attr, expression)
        return value

    def unknown_attribute(self, attr: str, expression: str) -> None:
        name = _split(attr)[1]
        self.problem(f"Unknown attribute '{name}'", "xml-unknown-element", f"{expression}.{name}")

    def element(
        self,
        el: etree._Element,
        key: str,
        out: dict[str, Any],
        expression: str,
        depth: int,
        primitive: bool = False,
    ) -> Any:
        """Read attributes and child elements of `el`, defined by `key`, into `out`."""
        if depth > self.max_depth:
            message = f"XML is nested deeper than {self.max_depth} elements"
            raise _fail(message, "xml-too-deep", "too-costly", expression)
        table = elements(key)
        value = self.attributes(el, table, out, expression, primitive)
        self.text(el.text, expression)
        found: dict[str, tuple[ElementInfo, list[Any], list[Any]]] = {}
        for child in el:
            self.text(child.tail, expression)
            if not isinstance(child.tag, str):
                continue
            ns, name = _split(child.tag)
            info = table.get(name)
            where = f"{expression}.{name}"
            if info is None or info.xml_attr or ns != (XHTML_NS if info.type_code == "xhtml" else FHIR_NS):
                self.problem(f"Unknown element <{name}>", "xml-unknown-element", where)
                continue
            if name not in found:
                self.check_choice(found, info, where)
                found[name] = (info, [], [])
            _, values, shadows = found[name]
            if info.is_array:
                where = f"{where}[{len(values)}]"
            elif values:
                self.problem(f"Element <{name}> may only appear once", "xml-invalid-value", where)
                continue
            item, shadow = self.child(child, info, where, depth + 1)
            values.append(item)
            shadows.append(shadow)
        _collect(found, out)
        return value

    def check_choice(self, found: dict[str, Any], info: ElementInfo, where: str) -> None:
        if info.choice and any(other.choice == info.choice for other, _, _ in found.values()):
            self.problem(f"Only one type of {info.choice}[x] is allowed", "xml-invalid-value", where)

    def child(self, el: etree._Element, info: ElementInfo, expression: str, depth: int) -> tuple[Any, Any]:
        """One child element's JSON value, and its `_name` shadow object for primitives."""
        if info.type_code == "xhtml":
            return _xhtml_text(el), None
        if info.is_primitive:
            return self.primitive(el, info, expression, depth)
        if info.type_code == "Resource":
            return self.wrapped(el, expression, depth), None
        out: dict[str, Any] = {}
        before = len(self.issues)
        self.element(el, info.children_key, out, expression, depth)
        if not out and len(self.issues) == before:
            self.problem("Element has no content", "xml-invalid-value", expression)
        return out, None

    def primitive(self, el: etree._Element, info: ElementInfo, expression: str, depth: int) -> tuple[Any, Any]:
        shadow: dict[str, Any] = {}
        raw = self.element(el, PRIMITIVE_KEY, shadow, expression, depth, primitive=True)
        if raw is _MISSING:
            if not shadow:
                self.problem("Primitive element has neither a value nor extensions", "xml-invalid-value", expression)
            return None, shadow or None
        value = _convert(raw, info.type_code)
        if value is None:
            self.problem(f"Invalid {info.type_code} value {raw[:60]!r}", "xml-invalid-value", expression)
        return value, shadow or None

    def wrapped(self, el: etree._Element, expression: str, depth: int) -> dict[str, Any] | None:
        """`<contained><Patient>...</Patient></contained>`: exactly one resource inside."""
        for attr in el.attrib:
            if not attr.startswith(_XSI):
                self.unknown_attribute(attr, expression)
        self.text(el.text, expression)
        inner = list(el)
        for child in inner:
            self.text(child.tail, expression)
        if len(inner) != 1:
            self.problem(f"Expected exactly one resource, found {len(inner)} elements", "xml-invalid-value", expression)
            return None
        return self.resource(inner[0], expression, depth + 1)


def _collect(found: dict[str, tuple[ElementInfo, list[Any], list[Any]]], out: dict[str, Any]) -> None:
    """Store what one element's children produced, with `_name` shadows for primitives."""
    for name, (info, values, shadows) in found.items():
        if info.is_array:
            if any(v is not None for v in values):
                out[name] = values
            if any(s is not None for s in shadows):
                out["_" + name] = shadows
        else:
            if values[0] is not None:
                out[name] = values[0]
            if shadows[0] is not None:
                out["_" + name] = shadows[0]


def _convert(raw: str, type_code: str) -> Any:
    """The JSON value of a primitive's `value` attribute, or None when it is not valid."""
    if not raw:
        return None
    if type_code == "boolean":
        return {"true": True, "false": False}.get(raw)
    if type_code in INT_RANGES:
        if not _INTEGER.match(raw):
            return None
        low, high = INT_RANGES[type_code]
        number = int(raw)
        return number if low <= number <= high else None
    if type_code == "decimal":
        return Decimal(raw) if _DECIMAL.match(raw) else None
    return raw


def xml_to_json(body: bytes, max_depth: int = 64) -> dict[str, Any]:
    """Parse one FHIR XML resource into FHIR JSON (decimals as `Decimal`)."""
    root = parse_xml(body)
    reader = _Reader(max_depth)
    result = reader.resource(root, "", 1)
    if reader.issues or result is None:
        raise invalid(reader.issues)
    return result
