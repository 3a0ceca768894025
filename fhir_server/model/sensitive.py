"""Which values of a resource are protected, and sealing / revealing them in stored JSON.

Issue 5 point 9. Protected values (the "secrets" of a resource):

- `ContactPoint.value` (R4 datatypes.html#ContactPoint: phone, email, fax, sms, url...) wherever a
  ContactPoint occurs: `Patient.telecom`, `Patient.contact.telecom`, `Organization.contact`,
  extensions' `valueContactPoint`, contained resources, resources inside a Bundle.
- `Identifier.value` (datatypes.html#Identifier) when `Identifier.system` is a national person
  identifier system: the table below, plus `FHIR_NATIONAL_IDENTIFIER_SYSTEMS` (settings.py).
- Copies: any other string equal to a protected value once normalised (protect.normalise; an
  extension repeating the phone number), and a narrative `div` that contains one verbatim (a
  generated narrative listing the telecom), sealed whole. A copy the narrative writes differently
  (another spelling of the number) is not recognised.

Protected positions are found by walking the resource with the R4 element definitions
(definitions.py), so a ContactPoint is known by its type, never guessed from its shape.

Stored form: each protected string is replaced by an envelope (protect.py) whose associated data
is `<type>/<id>#<n>:<name>`: the resource, the envelope's position among the resource's envelopes
in document order, and the JSON name holding it (`Patient/123#0:value`; empty in an array), so an
envelope moved to another resource, swapped with another one or dropped no longer opens. Reading
reverses it without parsing the JSON: a stored document without `enc:v1:` is served as stored,
byte for byte; in one with envelopes only those strings are replaced (`reveal`, a scan of the
bytes), so decimals and key order stay as written. For that scan to be exact, `enc:v1:` is
reserved: a client string containing it is refused (400 `value-reserved-marker`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import orjson

from fhir_server.errors import Invalid, Issue
from fhir_server.model.definitions import elements
from fhir_server.model.json import dumps, parse
from fhir_server.model.protect import MARK, MARK_BYTES, Keyring, Undecryptable, normalise, open_envelope, seal

# National person identifier systems, as their national FHIR specifications name them. An
# Identifier.value under one of these is encrypted and searched by keyed hash only.
NATIONAL_IDENTIFIER_SYSTEMS: dict[str, str] = {
    "http://hl7.org/fhir/sid/us-ssn": "United States Social Security Number",
    "http://hl7.org/fhir/sid/us-mbi": "United States Medicare Beneficiary Identifier",
    "https://fhir.nhs.uk/Id/nhs-number": "NHS number (England, Wales, Isle of Man)",
    "http://ns.electronichealth.net.au/id/hi/ihi/1.0": "Australian Individual Healthcare Identifier",
    "http://ns.electronichealth.net.au/id/medicare-number": "Australian Medicare card number",
    "http://fhir.nl/fhir/NamingSystem/bsn": "Dutch citizen service number (BSN)",
    "http://fhir.de/sid/gkv/kvid-10": "German statutory health insurance number (KVID-10)",
    "urn:oid:1.2.250.1.213.1.4.8": "French national health identifier (INS-NIR)",
    "urn:oid:1.2.208.176.1.2": "Danish civil registration number (CPR)",
    "urn:oid:2.16.578.1.12.4.1.4.1": "Norwegian national identity number",
    "http://electronichealth.se/identifier/personnummer": "Swedish personal identity number",
    "http://hl7.it/sid/codiceFiscale": "Italian fiscal code",
    "https://www.ehealth.fgov.be/standards/fhir/core/NamingSystem/ssin": "Belgian social security number (SSIN)",
    "urn:oid:2.16.756.5.32": "Swiss social security number (AHV/AVS)",
}

RESERVED = "value-reserved-marker"
_MIN_COPY = 4  # a normalised value shorter than this is not looked for as a copy
# Keys whose strings are never copies to seal: the server's own identity and structure.
_STRUCTURAL = frozenset({"resourceType", "id", "meta", "reference", "url", "system", "fullUrl"})


@dataclass(frozen=True)
class SensitiveFields:
    """The configuration of what is protected: the national identifier systems in force."""

    national: frozenset[str] = frozenset(NATIONAL_IDENTIFIER_SYSTEMS)

    @cached_property
    def _markers(self) -> tuple[bytes, ...]:
        # JSON names of every ContactPoint element in R4 (Patient.telecom, Organization.contact,
        # Endpoint.contact, value/fixed/pattern/defaultValueContactPoint), and the national systems.
        return (b'"telecom"', b'"contact"', b'ContactPoint"', *(system.encode() for system in self.national))

    def may_hold(self, content: bytes) -> bool:
        """Whether stored JSON may hold a protected value: a ContactPoint, or a national system named
        (a quick bytes test that lets most resources, such as Observations, skip parsing)."""
        return any(marker in content for marker in self._markers)

    @classmethod
    def with_extra(cls, extra: str | None) -> SensitiveFields:
        """The built-in table plus `extra`: systems separated by commas or whitespace."""
        added = frozenset(part for part in re.split(r"[\s,]+", extra or "") if part)
        return cls(frozenset(NATIONAL_IDENTIFIER_SYSTEMS) | added)


DEFAULT_FIELDS = SensitiveFields()


@dataclass
class Secrets:
    """The protected values of one resource: where they are, and what they are."""

    holders: list[dict[str, Any]] = field(default_factory=list)  # ContactPoints and Identifiers
    values: set[str] = field(default_factory=set)  # as written
    normalised: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return bool(self.values)

    def covers(self, text: str) -> bool:
        """Whether `text` is, once normalised, one of the protected values."""
        return bool(self.normalised) and normalise(text) in self.normalised

    @cached_property
    def lengths(self) -> tuple[int, int]:
        """The lengths a string may have to be a copy: from the shortest normalised value to the
        longest value as written plus room for separators."""
        if not self.normalised:
            return (1, 0)
        return (min(len(v) for v in self.normalised), max(len(v) for v in self.values) + 16)

    @cached_property
    def copies(self) -> list[str]:
        """The values worth looking for inside other text (long enough not to be everywhere),
        longest first; read once the walk is done."""
        return sorted((v for v in self.values if len(normalise(v)) >= _MIN_COPY), key=len, reverse=True)

    def redact(self, text: str, replacement: str = "***") -> str:
        """`text` with every protected value (of `copies`) written in it replaced."""
        for value in self.copies:
            if value in text:
                text = text.replace(value, replacement)
        return text


def secrets_of(resource: Any, fields: SensitiveFields = DEFAULT_FIELDS) -> Secrets:
    """The protected values of a (parsed) resource, found by type (module docstring)."""
    found = Secrets()
    if isinstance(resource, dict) and isinstance(resource.get("resourceType"), str):
        _walk(resource, resource["resourceType"], fields, found)
    return found


def _walk(node: dict[str, Any], type_key: str, fields: SensitiveFields, found: Secrets) -> None:
    try:
        table = elements(type_key)
    except KeyError:
        return
    for key, value in node.items():
        info = table.get(key)
        if info is None or info.is_primitive:
            continue
        child = None if info.type_code == "Resource" else info.children_key
        for item in value if type(value) is list else (value,):
            if type(item) is not dict:
                continue
            if child is None:
                kind = item.get("resourceType")
                if isinstance(kind, str):
                    _walk(item, kind, fields, found)
                continue
            if _protected(info.type_code, item, fields):
                _add(found, item)
            _walk(item, child, fields, found)


def _protected(type_code: str, item: dict[str, Any], fields: SensitiveFields) -> bool:
    if type_code == "ContactPoint":
        return True
    return type_code == "Identifier" and item.get("system") in fields.national


def _add(found: Secrets, holder: dict[str, Any]) -> None:
    value = holder.get("value")
    if isinstance(value, str) and value:
        found.holders.append(holder)
        found.values.add(value)
        normalised = normalise(value)
        if normalised:
            found.normalised.add(normalised)


def associated(resource_type: str, resource_id: str, position: int, name: str) -> str:
    """The associated data of the `position`-th envelope of a resource, held by JSON name `name`."""
    return f"{resource_type}/{resource_id}#{position}:{name}"


# --- sealing (write) ---------------------------------------------------------------------------


def seal_content(
    content: bytes, resource_type: str, resource_id: str, keyring: Keyring, fields: SensitiveFields = DEFAULT_FIELDS
) -> bytes:
    """Stored JSON with every protected value sealed; `content` itself when there is none."""
    if MARK_BYTES in content:
        refuse_envelopes(parse(content, max_depth=10_000))
    if not fields.may_hold(content):
        return content  # no ContactPoint, no national identifier: nothing to seal
    document = parse(content, max_depth=10_000)
    if not seal_document(document, resource_type, resource_id, keyring, fields):
        return content
    return dumps(document)


def seal_document(
    document: dict[str, Any], resource_type: str, resource_id: str, keyring: Keyring, fields: SensitiveFields
) -> bool:
    """Seals the protected values of `document` in place, in document order; whether there were any."""
    found = secrets_of(document, fields)
    if not found:
        return False
    chosen = {id(holder) for holder in found.holders}  # their "value" is sealed
    _seal_in_order(document, chosen, found, keyring, (resource_type, resource_id), [0])
    return True


def _seal_in_order(
    node: Any, chosen: set[int], found: Secrets, keyring: Keyring, owner: tuple[str, str], count: list[int]
) -> None:
    """Seals the protected values and their copies (module docstring) in one walk, numbering
    them in the order the JSON text will hold them."""
    is_dict = type(node) is dict
    for key, value in node.items() if is_dict else enumerate(node):
        kind = type(value)
        if kind is str:
            if (key == "value" and id(node) in chosen) or (key not in _STRUCTURAL and _is_copy(key, value, found)):
                name = key if is_dict else ""
                node[key] = seal(keyring, value, associated(owner[0], owner[1], count[0], str(name)))
                count[0] += 1
        elif (kind is dict or kind is list) and key != "meta":
            _seal_in_order(value, chosen, found, keyring, owner, count)


def _is_copy(key: Any, text: str, found: Secrets) -> bool:
    """Another string equal to a protected value once normalised, or a narrative quoting one."""
    if key == "div":
        return _mentions(text, found)
    low, high = found.lengths
    if not low <= len(text) <= high:  # cheap: most strings are far shorter or longer
        return False
    normalised = normalise(text)
    return len(normalised) >= _MIN_COPY and normalised in found.normalised


def _mentions(text: str, found: Secrets) -> bool:
    return any(value in text for value in found.copies)


def refuse_envelopes(document: Any) -> None:
    """400 when a client string contains `enc:v1:` (reserved: stored text holds it only in envelopes)."""
    kind = document.get("resourceType") if isinstance(document, dict) else None
    where = _marked(document, kind if isinstance(kind, str) else "")
    if where is not None:
        message = f"A value may not contain '{MARK}' (reserved for encrypted values)"
        raise Invalid(message, RESERVED, issues=[Issue(message, RESERVED, "value", where)])


def _marked(node: Any, at: str) -> str | None:
    """The location (`Patient.name[0].family`) of the first string holding the mark, if any."""
    entries = node.items() if type(node) is dict else enumerate(node) if type(node) is list else ()
    for key, value in entries:
        where = f"{at}[{key}]" if type(node) is list else f"{at}.{key}".lstrip(".")
        if (type(value) is str and MARK in value) or (type(key) is str and MARK in key):
            return where
        found = _marked(value, where) if type(value) in (dict, list) else None
        if found is not None:
            return found
    return None


# --- revealing (read) --------------------------------------------------------------------------

_QUOTE, _COLON = 34, 58  # `"` and `:`


def _envelopes(content: bytes) -> Iterator[tuple[int, int, str]]:
    """(start, end, name) of each envelope string in stored JSON, quotes included; `name` is the
    object member holding it (`"value":"enc:v1:..."`, orjson writes no spaces), "" in an array.
    Exact, since no other stored string contains the mark; found with bytes.find, not a regex."""
    at = content.find(MARK_BYTES)
    while at != -1:
        start, end = at - 1, content.find(b'"', at)
        if start < 0 or content[start] != _QUOTE or end == -1:
            raise Undecryptable("a marked value that is not an envelope")
        name = ""
        if start >= 2 and content[start - 1] == _COLON and content[start - 2] == _QUOTE:
            name = content[content.rfind(b'"', 0, start - 2) + 1 : start - 2].decode()
        yield start, end + 1, name
        at = content.find(MARK_BYTES, end)


def reveal(content: bytes, resource_type: str, resource_id: str, keyring: Keyring) -> bytes:
    """Stored JSON with its envelopes opened; `content` itself when it holds none (the hot path:
    one bytes search). Raises protect.Undecryptable."""
    if MARK_BYTES not in content:
        return content
    out: list[bytes] = []
    last = 0
    for position, (start, end, name) in enumerate(_envelopes(content)):
        envelope = content[start + 1 : end - 1].decode()
        clear = open_envelope(keyring, envelope, associated(resource_type, resource_id, position, name))
        out += [content[last:start], orjson.dumps(clear)]
        last = end
    out.append(content[last:])
    return b"".join(out)


def envelope_kids(content: bytes) -> set[str]:
    """The key ids of the envelopes in stored JSON (re-encryption's progress)."""
    return {content[start + 1 : end - 1].decode().split(":")[2] for start, end, _ in _envelopes(content)}


# --- messages ----------------------------------------------------------------------------------


def redact_issues(issues: list[Issue], resource: Any, fields: SensitiveFields = DEFAULT_FIELDS) -> list[Issue]:
    """Issues whose messages repeat a protected value of `resource` get `***` instead (a
    validation message quoting an invalid phone number must not carry it into a response or log)."""
    found = secrets_of(resource, fields)
    if not found:
        return issues
    return [
        Issue(found.redact(issue.message), issue.error_code, issue.code, issue.expression, issue.severity)
        for issue in issues
    ]
