"""Content negotiation and rendering (R4 http.html#mime-type, #parameters: _format, _pretty).

JSON and XML, under their FHIR types and the generic ones many clients send. A generic type
asked for is the type answered with, as http.html recommends. Stored resources are sent as the
bytes stored, without rebuilding a model; XML is produced from that JSON when asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fhir_server.errors import NotAcceptable, UnsupportedMediaType
from fhir_server.model import xml as fhir_xml
from fhir_server.model.json import dumps, parse

JSON_TYPES = {"application/fhir+json", "application/json", "text/json", "json"}
XML_TYPES = {"application/fhir+xml", "application/xml", "text/xml", "xml"}
JSON_PATCH_TYPE = "application/json-patch+json"
_FORMAT_ALIASES = {"json": "application/fhir+json", "xml": "application/fhir+xml", "text/json": "application/json"}


@dataclass(frozen=True)
class Format:
    media_type: str
    is_xml: bool
    pretty: bool = False

    @property
    def content_type(self) -> str:
        return f"{self.media_type}; charset=utf-8"


DEFAULT = Format("application/fhir+json", False)


def response_format(format_param: str | None, accept: str | None, pretty_param: str | None) -> Format:
    pretty = pretty_param == "true"
    if format_param:
        # An unencoded `+` (`_format=application/fhir+xml`) arrives as a space; no media type has one.
        chosen = _known(format_param.split(";")[0].strip().lower().replace(" ", "+"))
        if chosen is None:
            raise NotAcceptable(f"_format '{format_param}' is not supported; use json or xml", "format-unsupported")
        return Format(chosen, chosen in XML_TYPES, pretty)
    for media_type in _accepted(accept or "*/*"):
        chosen = _known(media_type)
        if chosen is not None:
            return Format(chosen, chosen in XML_TYPES, pretty)
        if media_type in ("*/*", "application/*", "text/*"):
            return Format(DEFAULT.media_type, False, pretty)
    raise NotAcceptable(
        f"None of the accepted types ({accept}) is supported; use application/fhir+json or application/fhir+xml",
        "format-not-acceptable",
    )


def _known(media_type: str) -> str | None:
    media_type = _FORMAT_ALIASES.get(media_type, media_type)
    return media_type if media_type in JSON_TYPES | XML_TYPES else None


def _accepted(accept: str) -> list[str]:
    ranked: list[tuple[float, int, str]] = []
    for position, part in enumerate(accept.split(",")):
        fields = [f.strip() for f in part.split(";")]
        quality = 1.0
        for parameter in fields[1:]:
            if parameter.startswith("q="):
                try:
                    quality = float(parameter[2:])
                except ValueError:
                    quality = 0.0
        if fields[0] and quality > 0:
            ranked.append((-quality, position, fields[0].lower()))
    return [media_type for _, _, media_type in sorted(ranked)]


def body_kind(content_type: str | None, allow_json_patch: bool = False) -> str:
    """'json', 'xml' or 'json-patch' for a request body; anything else is 415."""
    media_type = (content_type or "application/fhir+json").split(";")[0].strip().lower()
    if media_type in JSON_TYPES:
        return "json"
    if media_type in XML_TYPES:
        return "xml"
    if allow_json_patch and media_type == JSON_PATCH_TYPE:
        return "json-patch"
    raise UnsupportedMediaType(f"Content-Type '{content_type}' is not supported", "media-type-unsupported")


def parse_body(body: bytes, kind: str, max_depth: int) -> Any:
    if kind == "xml":
        return fhir_xml.xml_to_json(body, max_depth=max_depth)
    return parse(body, max_depth=max_depth)


def render(content: bytes | dict[str, Any], chosen: Format) -> bytes:
    """The wire bytes of a stored resource (bytes) or a built body (dict) in the chosen format."""
    if chosen.is_xml:
        resource = parse(content if isinstance(content, bytes) else dumps(content), max_depth=10_000)
        return fhir_xml.json_to_xml(resource, pretty=chosen.pretty)
    if isinstance(content, bytes):
        return dumps(parse(content, max_depth=10_000), pretty=True) if chosen.pretty else content
    return dumps(content, pretty=chosen.pretty)
