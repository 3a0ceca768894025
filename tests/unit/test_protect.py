"""Field encryption, pure parts (issue 5 point 9): envelopes, keyed hashes, keyrings
(model/protect.py), which values are protected and how stored JSON is sealed and revealed
(model/sensitive.py), index rows and search values over them (search/protected.py,
store/compile_protected.py)."""

from __future__ import annotations

import base64
import json
from decimal import Decimal

import pytest

from fhir_server.errors import Invalid
from fhir_server.model.definitions import RESOURCE_TYPES, elements
from fhir_server.model.json import dumps, parse
from fhir_server.model.protect import (
    Keyring,
    KeyringInvalid,
    Undecryptable,
    blind,
    blinds,
    envelope_kid,
    format_key,
    normalise,
    open_envelope,
    parse_keyring,
    seal,
)
from fhir_server.model.sensitive import (
    SensitiveFields,
    envelope_kids,
    redact_issues,
    reveal,
    seal_content,
    secrets_of,
)
from fhir_server.model.validate import validation_issues
from fhir_server.search.clauses import ChainClause, IndexRow, NotClause, ParamClause, ProtectedToken, Token
from fhir_server.search.extract import index_rows as extracted_rows
from fhir_server.search.indexing import index_rows
from fhir_server.search.protected import CONTACT, MIXED, protection, redacted_query, value_types
from fhir_server.search.registry import search_param
from fhir_server.search.values import OfTypeToken
from fhir_server.store.compile_protected import blind_clauses
from fhir_server.store.compile_values import token_condition
from fhir_server.store.schema import token_index

A = bytes(range(32))
B = bytes(range(1, 33))
RING_A = Keyring.of([("a", A)])
RING_BA = Keyring.of([("b", B), ("a", A)])
PHONE, EMAIL, SSN = "+1 (555) 010-4477", "Ada.Lovelace@Example.org", "123-45-6789"
SSN_SYSTEM = "http://hl7.org/fhir/sid/us-ssn"


def patient() -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": "p1",
        "meta": {"versionId": "1", "lastUpdated": "2024-01-01T00:00:00.000000Z"},
        "text": {"status": "generated", "div": f'<div xmlns="http://www.w3.org/1999/xhtml">Ada, {PHONE}</div>'},
        "identifier": [{"system": SSN_SYSTEM, "value": SSN}, {"system": "urn:mrn", "value": "MRN-7"}],
        "name": [{"family": "Lovelace", "given": ["Ada"]}],
        "telecom": [{"system": "phone", "value": PHONE}, {"system": "email", "value": EMAIL}],
        "contact": [{"telecom": [{"system": "phone", "value": "+44 20 7946 0958"}]}],
        "extension": [{"url": "http://example.org/x", "valueDecimal": Decimal("1.50")}],
        "contained": [
            {
                "resourceType": "RelatedPerson",
                "id": "r",
                "patient": {"reference": "#"},
                "telecom": [{"system": "sms", "value": "+61 491 570 156"}],
            }
        ],
    }


# --- envelopes ---------------------------------------------------------------------------------


def test_envelope_round_trip_and_format() -> None:
    sealed = seal(RING_A, PHONE, "Patient/p1#/telecom/0/value")
    assert sealed.startswith("enc:v1:a:") and PHONE not in sealed
    assert envelope_kid(sealed) == "a"
    assert open_envelope(RING_A, sealed, "Patient/p1#/telecom/0/value") == PHONE
    assert seal(RING_A, PHONE, "x") != seal(RING_A, PHONE, "x")  # a fresh nonce each time
    raw = base64.urlsafe_b64decode(sealed.split(":")[3] + "==")
    assert len(raw) == 12 + len(PHONE.encode()) + 16  # nonce || ciphertext || tag


def test_envelope_is_bound_to_its_place_and_key() -> None:
    sealed = seal(RING_A, SSN, "Patient/p1#/identifier/0/value")
    for elsewhere in ("Patient/p2#/identifier/0/value", "Patient/p1#/identifier/1/value", "Person/p1#/x"):
        with pytest.raises(Undecryptable) as caught:
            open_envelope(RING_A, sealed, elsewhere)
        assert SSN not in str(caught.value) and caught.value.kid == "a"
    with pytest.raises(Undecryptable, match="unknown key"):
        open_envelope(Keyring.of([("b", B)]), sealed, "Patient/p1#/identifier/0/value")
    body = sealed.split(":")[3]
    flipped = body[:20] + ("A" if body[20] != "A" else "B") + body[21:]
    with pytest.raises(Undecryptable, match="authentication failed"):
        open_envelope(RING_A, sealed.replace(body, flipped), "Patient/p1#/identifier/0/value")
    for broken in ("enc:v1:a", "enc:v1::xx", "enc:v1:a:%%", "enc:v1:a:AAAA"):
        with pytest.raises(Undecryptable):
            open_envelope(RING_A, broken, "x")


def test_rotation_keeps_old_envelopes_readable() -> None:
    old = seal(RING_A, EMAIL, "p")
    new = seal(RING_BA, EMAIL, "p")
    assert envelope_kid(new) == "b"
    assert open_envelope(RING_BA, old, "p") == open_envelope(RING_BA, new, "p") == EMAIL


# --- keyed hashes --------------------------------------------------------------------------------


def test_normalise() -> None:
    assert normalise("+1 (555) 010-4477") == normalise("15550104477") == normalise("tel:+1.555.010.4477")
    assert normalise(" Ada.Lovelace@Example.ORG ") == "ada.lovelace@example.org"  # emails keep their dots
    assert normalise("mailto:a@b.c") == "a@b.c"
    assert normalise("123-45-6789") == normalise("123 45 6789") == "123456789"


def test_blind_is_keyed_deterministic_and_normalised() -> None:
    digest = blind(RING_A, PHONE)
    assert digest.startswith("hmac:a:") and len(digest.split(":")[2]) == 43  # 32 bytes, base64url
    assert digest == blind(RING_A, "15550104477")
    assert digest != blind(Keyring.of([("a", B)]), PHONE)  # another key, another hash
    assert blinds(RING_BA, PHONE) == (blind(RING_BA, PHONE, "b"), blind(RING_BA, PHONE, "a"))


def test_keyrings_from_settings() -> None:
    text_a, text_b = format_key("a", A), format_key("b", B)
    for setting in (
        f"{text_b}, {text_a}",
        json.dumps([text_b, text_a]),
        json.dumps(dict([text_b.split(":", 1), text_a.split(":", 1)])),
    ):
        ring = parse_keyring(setting)
        assert ring.current == "b" and dict(ring.keys) == {"b": B, "a": A}
    url_safe = "a:" + base64.urlsafe_b64encode(A).decode().rstrip("=")
    assert parse_keyring(url_safe).keys["a"] == A
    for bad in (
        "",
        "a",
        "a:notbase64!",
        f"a:{base64.b64encode(b'short').decode()}",
        f"{text_a},{text_a}",
        "{",
        "bad kid:" + text_a.split(":")[1],
    ):
        with pytest.raises(KeyringInvalid) as caught:
            parse_keyring(bad)
        assert text_a.split(":")[1] not in str(caught.value)  # never the key material


# --- which values, sealed and revealed -----------------------------------------------------------


def test_protected_values_are_found_by_type() -> None:
    found = secrets_of(patient())
    assert found.values == {PHONE, EMAIL, SSN, "+44 20 7946 0958", "+61 491 570 156"}  # not the MRN
    extra = SensitiveFields.with_extra("urn:mrn, urn:other")
    assert "MRN-7" in secrets_of(patient(), extra).values
    assert not secrets_of({"resourceType": "Observation", "valueQuantity": {"value": 1}})


def test_sealed_content_holds_no_clear_value_and_reveals_byte_for_byte() -> None:
    content = dumps(patient())
    sealed = seal_content(content, "Patient", "p1", RING_A)
    for clear in (PHONE, EMAIL, SSN, "7946 0958", "491 570 156", "010-4477"):
        assert clear.encode() not in sealed
    assert b"MRN-7" in sealed and b'"valueDecimal":1.50' in sealed  # the rest untouched, decimals too
    document = parse(sealed)
    assert document["telecom"][0]["value"].startswith("enc:v1:a:")
    assert document["text"]["div"].startswith("enc:v1:a:")  # the narrative repeats the phone number
    assert reveal(sealed, "Patient", "p1", RING_A) == content
    assert envelope_kids(sealed) == {"a"}
    with pytest.raises(Undecryptable):  # moved to another resource: refused
        reveal(sealed, "Patient", "p2", RING_A)


def test_content_without_protected_values_is_left_as_it_is() -> None:
    observation = dumps(
        {"resourceType": "Observation", "id": "o", "status": "final", "valueQuantity": {"value": Decimal("7.50")}}
    )
    assert seal_content(observation, "Observation", "o", RING_A) is observation
    assert reveal(observation, "Observation", "o", RING_A) is observation


@pytest.mark.parametrize("text", ["enc:v1:a:AAAA", 'see "enc:v1:a:AAAA" here', 'x\\"enc:v1:a:AAAA'])
def test_client_strings_holding_the_envelope_mark_are_refused(text: str) -> None:
    """The mark is reserved, so that reading can find envelopes by scanning bytes (sensitive.py)."""
    resource = patient()
    resource["name"] = [{"family": "Lovelace", "given": ["Ada", text]}]
    with pytest.raises(Invalid) as caught:
        seal_content(dumps(resource), "Patient", "p1", RING_A)
    assert caught.value.error_code == "value-reserved-marker"
    assert caught.value.issues[0].expression == "Patient.name[0].given[1]"


def test_envelopes_are_numbered_in_document_order() -> None:
    """Swapping two envelopes of one resource, or dropping one, is noticed (associated data)."""
    sealed = parse(seal_content(dumps(patient()), "Patient", "p1", RING_A))
    phone, email = sealed["telecom"][0]["value"], sealed["telecom"][1]["value"]
    sealed["telecom"][0]["value"], sealed["telecom"][1]["value"] = email, phone
    with pytest.raises(Undecryptable):
        reveal(dumps(sealed), "Patient", "p1", RING_A)
    sealed["telecom"][0]["value"], sealed["telecom"][1]["value"] = phone, email
    assert PHONE.encode() in reveal(dumps(sealed), "Patient", "p1", RING_A)
    del sealed["identifier"][0]  # the SSN, first in document order
    with pytest.raises(Undecryptable):
        reveal(dumps(sealed), "Patient", "p1", RING_A)


def test_validation_messages_do_not_quote_protected_values() -> None:
    resource = patient()
    resource["telecom"] = [{"system": "phone", "value": "555\u00a00104477"}]  # a no-break space: not a valid string
    issues = validation_issues(resource)
    assert issues and all("0104477" not in issue.message for issue in issues)
    assert redact_issues(issues, resource) == issues


# --- index rows and search values ----------------------------------------------------------------


def test_index_rows_mark_protected_values_and_leave_them_out_of_full_text() -> None:
    rows = index_rows(patient())
    secret = {(row.param, row.values["code"]) for row in rows if row.secret is not None}
    assert ("telecom", PHONE) in secret and ("phone", PHONE) in secret and ("email", EMAIL) in secret
    assert ("identifier", SSN) in secret and ("identifier", "MRN-7") not in secret
    text = " ".join(str(row.values) for row in rows if row.kind == "string")
    assert "4477" not in text and "6789" not in text and "lovelace" in text.lower()
    assert [r for r in extracted_rows(patient()) if r.secret is not None]  # the extractor alone too


def test_of_type_rows_mark_the_value_after_the_type_code() -> None:
    resource = patient()
    resource["identifier"] = [
        {"system": SSN_SYSTEM, "value": SSN, "type": {"coding": [{"system": "http://t", "code": "S|S"}]}}
    ]
    (row,) = [r for r in index_rows(resource) if r.param == "identifier:of-type"]
    assert row.values["code"] == f"S\\|S|{SSN}" and row.values["code"][row.secret :] == SSN


def test_parameters_are_classified_from_their_types() -> None:
    assert value_types("Patient", "Patient.telecom.where(system='phone')") == frozenset({"ContactPoint"})
    assert value_types("Patient", "Patient.telecom.value") == frozenset({"ContactPoint.value"})
    for code in ("telecom", "phone", "email"):
        assert protection(search_param("Patient", code)) == CONTACT  # type: ignore[arg-type]
    assert protection(search_param("Patient", "identifier")) == MIXED  # type: ignore[arg-type]
    for code in ("gender", "name", "birthdate", "_tag"):
        assert protection(search_param("Patient", code)) is None  # type: ignore[arg-type]


def test_blind_clauses_hash_search_values_under_every_key() -> None:
    phone, identifier = search_param("Patient", "phone"), search_param("Patient", "identifier")
    assert phone is not None and identifier is not None
    hashes = lambda value: blinds(RING_BA, value)  # noqa: E731
    contact = ParamClause(phone, (ProtectedToken(Token(None, PHONE, False), clear=False),))
    mixed = ParamClause(identifier, (ProtectedToken(Token(SSN_SYSTEM, SSN, True), clear=True),), "not")
    typed = ParamClause(identifier, (ProtectedToken(OfTypeToken("http://t", "SS", True, SSN), clear=True),))
    chained = ChainClause(phone, ("Patient",), NotClause(contact))
    out = blind_clauses([contact, mixed, typed, chained], hashes)
    assert out[0].values == tuple(Token(None, h, False) for h in blinds(RING_BA, PHONE))  # type: ignore[union-attr]
    assert out[1].values == (Token(SSN_SYSTEM, SSN, True), *(Token(SSN_SYSTEM, h, True) for h in blinds(RING_BA, SSN)))  # type: ignore[union-attr]
    assert out[2].values[1] == OfTypeToken("http://t", "SS", True, blinds(RING_BA, SSN)[0])  # type: ignore[union-attr]
    assert out[3].inner.clause == out[0]  # type: ignore[union-attr]
    plain = [ParamClause(phone, (Token(None, "x", False),))]
    assert blind_clauses(plain, hashes) is plain
    assert SSN not in repr(mixed) and PHONE not in repr(contact)


def test_index_row_secret_defaults_to_none() -> None:
    assert IndexRow("token", "gender", {"code": "male"}).secret is None


def test_recorded_queries_hide_protected_values() -> None:
    pairs = [("phone", PHONE), ("name", "Ada"), ("subject:Patient.identifier", SSN), ("_filter", f"email eq {EMAIL}")]
    pairs += [("_has:Observation:subject:identifier", SSN), ("subject:identifier", SSN), ("code", "x")]
    recorded = redacted_query(pairs)
    assert recorded[1] == ("name", "Ada") and recorded[-1] == ("code", "x")
    assert not any(secret in value for _, value in recorded for secret in (PHONE, SSN, EMAIL))


def test_the_quick_test_before_sealing_knows_every_contact_point_element() -> None:
    """seal_content skips parsing when no ContactPoint element name nor national system appears."""
    seen: set[str] = set()
    pending = [*RESOURCE_TYPES, "Extension", "ContactDetail"]
    names = set()
    while pending:
        key = pending.pop()
        if key in seen:
            continue
        seen.add(key)
        for name, info in elements(key).items():
            if info.type_code == "ContactPoint":
                names.add(name)
            elif not info.is_primitive and info.type_code != "Resource":
                pending.append(info.children_key)
    fields = SensitiveFields()
    assert names and all(fields.may_hold(f'{{"{name}":[]}}'.encode()) for name in names), names
    assert fields.may_hold(SSN_SYSTEM.encode()) and not fields.may_hold(b'{"resourceType":"Observation"}')


def test_a_protected_value_compiled_without_hashing_fails_closed() -> None:
    """A granular scope's query is compiled into the access predicate without the store's hashing
    pass: a ContactPoint value then matches nothing, an identifier its clear form only."""
    contact = token_condition(token_index, ProtectedToken(Token(None, PHONE, False), clear=False))
    assert str(contact.compile(compile_kwargs={"literal_binds": True})) == "false"
    mixed = token_condition(token_index, ProtectedToken(Token(SSN_SYSTEM, SSN, True), clear=True))
    assert str(mixed.compile(compile_kwargs={"literal_binds": True})).count(SSN) == 1
