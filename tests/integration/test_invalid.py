"""Invalid resources and requests are refused with the right status, one issue per problem with its
FHIRPath location, and nothing is stored (R4 http.html#create, operationoutcome.html).

Each create case notes the time before the request and then checks that the type history since
then is empty, so a refused write that still stored something is caught.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from starlette.testclient import TestClient

from fhir_server.app import create_app
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from tests.conftest import FHIR_JSON
from tests.integration.helpers import FHIR_XML_IN, assert_nothing_stored, assert_outcome, create, now_instant

OBSERVATION = {"resourceType": "Observation", "status": "final", "code": {"text": "heart rate"}}
PATIENT = {"resourceType": "Patient"}


def _observation(**fields: Any) -> dict[str, Any]:
    return {**OBSERVATION, **fields}


def _patient(**fields: Any) -> dict[str, Any]:
    return {**PATIENT, **fields}


# (id, resource, [(error code, expression), ...]): each resource is POSTed to /fhir/{resourceType}.
INVALID_RESOURCES = [
    ("wrong-json-type", _patient(active="yes"), [("schema-type", "Patient.active")]),
    ("number-for-string", _patient(name=[{"family": 1}]), [("schema-type", "Patient.name[0].family")]),
    ("object-for-array", _patient(name={"family": "Chalmers"}), [("schema-type", "Patient.name")]),
    ("string-for-array-item", _patient(name=[{"given": "Peter"}]), [("schema-type", "Patient.name[0].given")]),
    ("unknown-element", _patient(favouriteColour="blue"), [("schema-unknown-element", "Patient.favouriteColour")]),
    (
        "unknown-nested-element",
        _patient(name=[{"family": "Chalmers"}, {"surname": "Chalmers"}]),
        [("schema-unknown-element", "Patient.name[1].surname")],
    ),
    (
        "unknown-element-in-primitive-shadow",
        _patient(birthDate="1980-01-01", _birthDate={"colour": "red"}),
        [("schema-unknown-element", "Patient.birthDate.colour")],
    ),
    ("month-13", _patient(birthDate="1980-13-01"), [("schema-format", "Patient.birthDate")]),
    ("february-30", _patient(birthDate="2021-02-30"), [("structure", "Patient.birthDate")]),
    ("datetime-as-date", _patient(birthDate="1980-01-01T10:00:00Z"), [("schema-format", "Patient.birthDate")]),
    ("bad-instant", _patient(meta={"lastUpdated": "yesterday"}), [("schema-format", "Patient.meta.lastUpdated")]),
    ("bad-id", _patient(id="not an id"), [("schema-format", "Patient.id")]),
    ("gender-outside-binding", _patient(gender="x"), [("schema-code", "Patient.gender")]),
    ("empty-code", _patient(gender=""), [("schema-code", "Patient.gender")]),
    ("status-outside-binding", _observation(status="bogus"), [("schema-code", "Observation.status")]),
    ("null-value", _patient(active=None), [("schema-null", "Patient.active")]),
    ("empty-array", _patient(name=[]), [("schema-empty-array", "Patient.name")]),
    (
        "missing-code",
        {"resourceType": "Observation", "status": "final"},
        [("schema-required", "Observation.code")],
    ),
    (
        "missing-status",
        {"resourceType": "Observation", "code": {"text": "x"}},
        [("required-element-missing", "Observation.status")],
    ),
    (
        "extension-without-url",
        _patient(extension=[{"valueString": "x"}]),
        [("structure", "Patient.extension[0].url")],
    ),
    (
        "invalid-contained-resource",
        _patient(contained=[{"resourceType": "Observation", "id": "o1", "status": "final"}]),
        [("schema-required", "Patient.contained[0].code")],
    ),
    (
        "three-problems",
        _patient(active="yes", gender="x", birthDate="1980-13-01"),
        [("schema-type", "Patient.active"), ("schema-code", "Patient.gender"), ("schema-format", "Patient.birthDate")],
    ),
    (
        "problems-in-several-items",
        _patient(name=[{"family": 1}, {"given": "Peter"}], telecom=[{"system": "pager?"}]),
        [
            ("schema-type", "Patient.name[0].family"),
            ("schema-type", "Patient.name[1].given"),
            ("schema-code", "Patient.telecom[0].system"),
        ],
    ),
    (
        "reference-syntax",
        _observation(subject={"reference": "not a ref"}),
        [("reference-syntax", "Observation.subject.reference")],
    ),
    (
        "reference-to-unknown-type",
        _observation(subject={"reference": "Alien/1"}),
        [("reference-syntax", "Observation.subject.reference")],
    ),
    (
        "conditional-reference-outside-transaction",
        _observation(subject={"reference": "Patient?identifier=urn:sys|1"}),
        [("reference-conditional", "Observation.subject.reference")],
    ),
    (
        "two-bad-references",
        _observation(
            subject={"reference": "Patient/"}, performer=[{"reference": "x"}, {"reference": "Practitioner/1"}]
        ),
        [
            ("reference-syntax", "Observation.subject.reference"),
            ("reference-syntax", "Observation.performer[0].reference"),
        ],
    ),
]


@pytest.mark.parametrize(
    ("resource", "expected"), [c[1:] for c in INVALID_RESOURCES], ids=[c[0] for c in INVALID_RESOURCES]
)
def test_invalid_resource_is_refused_with_one_issue_per_problem(client, resource, expected):
    since = now_instant()
    resource_type = resource["resourceType"]
    response = client.post(f"/fhir/{resource_type}", json=resource, headers=FHIR_JSON)
    assert_outcome(response, 400, expected)
    assert_nothing_stored(client, since, resource_type)


@pytest.mark.parametrize(
    ("resource", "expression"),
    [
        (_patient(deceasedBoolean=True, deceasedDateTime="2020-01-01"), "Patient"),
        (
            _observation(component=[{"code": {"text": "x"}, "valueString": "a", "valueBoolean": True}]),
            "Observation.component[0]",
        ),
    ],
    ids=["deceased", "component-value"],
)
def test_two_values_for_one_choice_element_are_refused(client, resource, expression):
    """The issue names the element that holds both values (or the choice element itself)."""
    since = now_instant()
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert response.status_code == 400
    body = response.json()
    assert len(body["issue"]) == 1, body
    issue = body["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "structure"
    choice = "deceased" if expression == "Patient" else "value"
    allowed = {expression, f"{expression}.{choice}[x]", f"{expression}.{choice}"}
    assert issue["expression"][0] in allowed, issue
    assert_nothing_stored(client, since, resource["resourceType"])


@pytest.mark.parametrize(
    ("resource", "expected"),
    [
        (
            {"resourceType": "Observation"},
            [("required-element-missing", "Observation.status"), ("schema-required", "Observation.code")],
        ),
        (
            _patient(gender="x", birthDate="2021-02-30", favouriteColour="blue"),
            [
                ("schema-code", "Patient.gender"),
                ("structure", "Patient.birthDate"),
                ("schema-unknown-element", "Patient.favouriteColour"),
            ],
        ),
        (
            _observation(status="bogus", subject={"reference": "not a ref"}),
            [("schema-code", "Observation.status"), ("reference-syntax", "Observation.subject.reference")],
        ),
    ],
    ids=["missing-status-and-code", "schema-and-model-problems", "schema-and-reference-problems"],
)
def test_problems_found_by_different_validation_stages_are_all_reported(client, resource, expected):
    response = client.post(f"/fhir/{resource['resourceType']}", json=resource, headers=FHIR_JSON)
    assert_outcome(response, 400, expected)


def test_every_problem_is_reported_in_a_large_resource(client):
    """Ten independent problems, ten issues: validation does not stop at the first."""
    since = now_instant()
    names = [{"family": index} for index in range(10)]
    response = client.post("/fhir/Patient", json=_patient(name=names), headers=FHIR_JSON)
    assert_outcome(response, 400, [("schema-type", f"Patient.name[{index}].family") for index in range(10)])
    assert_nothing_stored(client, since, "Patient")


# --- the envelope: resource type, JSON text, media types, size -----------------------------------


def test_resource_of_another_type_than_the_url_is_refused(client):
    since = now_instant()
    response = client.post("/fhir/Patient", json=OBSERVATION, headers=FHIR_JSON)
    assert_outcome(response, 400, [("resource-type-mismatch", "resourceType")])
    assert_nothing_stored(client, since, "Patient", "Observation")


def test_bundle_posted_to_a_type_is_a_mismatch(client):
    since = now_instant()
    bundle = {"resourceType": "Bundle", "type": "collection"}
    assert_outcome(
        client.post("/fhir/Patient", json=bundle, headers=FHIR_JSON), 400, [("resource-type-mismatch", "resourceType")]
    )
    assert_nothing_stored(client, since, "Patient", "Bundle")


@pytest.mark.parametrize("body", [{"resourceType": "Alien"}, {"active": True}, {"resourceType": 7}])
def test_unknown_or_missing_resource_type_in_the_body_is_refused(client, body):
    since = now_instant()
    assert_outcome(
        client.post("/fhir/Patient", json=body, headers=FHIR_JSON), 400, [("unknown-resource-type", "resourceType")]
    )
    assert_nothing_stored(client, since, "Patient")


def test_unknown_resource_type_in_the_url_is_not_found(client):
    response = client.post("/fhir/Alien", json={"resourceType": "Alien"}, headers=FHIR_JSON)
    assert_outcome(response, 404, [("resource-type-unknown", None)])
    assert_outcome(client.get("/fhir/Alien/1", headers=FHIR_JSON), 404, [("resource-type-unknown", None)])


@pytest.mark.parametrize("body", [b"[1, 2]", b'"Patient"', b"42", b"null"])
def test_json_that_is_not_an_object_is_refused(client, body):
    since = now_instant()
    assert_outcome(client.post("/fhir/Patient", content=body, headers=FHIR_JSON), 400, [("not-a-resource", None)])
    assert_nothing_stored(client, since, "Patient")


@pytest.mark.parametrize(
    "body",
    [
        b'{"resourceType": "Patient",',
        b"",
        b'{"resourceType": "Patient", "active": tru}',
        b"{'resourceType': 'Patient'}",
        b'{"resourceType": "Patient"} trailing',
        b'{"resourceType": "Patient", "active": true,}',
        b"\xff\xfe not utf-8",
    ],
    ids=["truncated", "empty", "bad-literal", "single-quotes", "trailing-text", "trailing-comma", "not-utf8"],
)
def test_malformed_json_is_refused(client, body):
    since = now_instant()
    assert_outcome(client.post("/fhir/Patient", content=body, headers=FHIR_JSON), 400, [("json-malformed", None)])
    assert_nothing_stored(client, since, "Patient")


def _nested_extension(levels: int) -> dict[str, Any]:
    """A Patient whose JSON nesting depth is 1 + 2 * levels (each extension level adds `[` and `{`)."""
    node: dict[str, Any] = {"url": "urn:test:leaf", "valueString": "x"}
    for _ in range(levels - 1):
        node = {"url": "urn:test:nested", "extension": [node]}
    return _patient(extension=[node])


def test_json_nested_deeper_than_the_limit_is_refused_before_parsing(client, settings):
    assert settings.max_json_depth == 64
    since = now_instant()
    too_deep = client.post("/fhir/Patient", json=_nested_extension(32), headers=FHIR_JSON)  # depth 65
    assert_outcome(too_deep, 400, [("json-too-deep", None)])
    hostile = b'{"resourceType": "Patient", "extension": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    assert_outcome(client.post("/fhir/Patient", content=hostile, headers=FHIR_JSON), 400, [("json-too-deep", None)])
    assert_nothing_stored(client, since, "Patient")


def test_json_at_the_depth_limit_is_parsed(client):
    # 64 levels is allowed: the array parses (and is then refused as not a resource, not as too deep).
    assert_outcome(
        client.post("/fhir/Patient", content=b"[" * 64 + b"]" * 64, headers=FHIR_JSON), 400, [("not-a-resource", None)]
    )
    assert_outcome(
        client.post("/fhir/Patient", content=b"[" * 65 + b"]" * 65, headers=FHIR_JSON), 400, [("json-too-deep", None)]
    )
    created = client.post("/fhir/Patient", json=_nested_extension(31), headers=FHIR_JSON)  # depth 63
    assert created.status_code == 201, created.text


def test_brackets_inside_strings_do_not_count_towards_the_depth(client):
    family = '[{"\\"' * 200
    created = client.post("/fhir/Patient", json=_patient(name=[{"family": family}]), headers=FHIR_JSON)
    assert created.status_code == 201, created.text
    assert created.json()["name"][0]["family"] == family


# --- XML ------------------------------------------------------------------------------------------

XXE = (
    b'<?xml version="1.0"?>\n<!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
    b'<Patient xmlns="http://hl7.org/fhir"><name><family value="&xxe;"/></name></Patient>'
)
BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10 if n > 1 else "&lol;" * 10}">'.encode() for n in range(1, 10))
    + b']>\n<Patient xmlns="http://hl7.org/fhir"><name><family value="&lol9;"/></name></Patient>'
)
PARAMETER_ENTITY = (
    b'<?xml version="1.0"?>\n<!DOCTYPE foo [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>\n'
    b'<Patient xmlns="http://hl7.org/fhir"/>'
)


@pytest.mark.parametrize(
    "body",
    [XXE, BILLION_LAUGHS, PARAMETER_ENTITY, XXE.decode().encode("utf-16")],
    ids=["external-entity", "billion-laughs", "parameter-entity", "utf16-external-entity"],
)
def test_xml_with_a_doctype_is_refused(client, body):
    since = now_instant()
    response = client.post("/fhir/Patient", content=body, headers=FHIR_XML_IN)
    assert_outcome(response, 400, [("xml-doctype-forbidden", None)])
    assert "root:" not in response.text
    assert_nothing_stored(client, since, "Patient")


@pytest.mark.parametrize(
    "body",
    [
        b'<Patient xmlns="http://hl7.org/fhir"><active value="true"></Patient>',
        b"<Patient",
        b"",
        b"not xml at all",
    ],
    ids=["unclosed", "truncated", "empty", "text"],
)
def test_malformed_xml_is_refused(client, body):
    since = now_instant()
    assert_outcome(client.post("/fhir/Patient", content=body, headers=FHIR_XML_IN), 400, [("xml-malformed", None)])
    assert_nothing_stored(client, since, "Patient")


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'<Patient><active value="true"/></Patient>', [("xml-unknown-element", "Patient")]),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><active value="true"/><colour value="red"/></Patient>',
            [("xml-unknown-element", "Patient.colour")],
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><active value="yes"/></Patient>',
            [("xml-invalid-value", "Patient.active")],
        ),
        (
            b'<Patient xmlns="http://hl7.org/fhir"><gender value="x"/><birthDate value="1980-13-01"/></Patient>',
            [("schema-code", "Patient.gender"), ("schema-format", "Patient.birthDate")],
        ),
        (
            b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="x"/></code>'
            b'<subject><reference value="not a ref"/></subject></Observation>',
            [("resource-type-mismatch", "resourceType")],
        ),
    ],
    ids=["no-namespace", "unknown-element", "bad-boolean", "schema-problems", "wrong-type"],
)
def test_invalid_xml_resources_are_refused_with_locations(client, body, expected):
    since = now_instant()
    assert_outcome(client.post("/fhir/Patient", content=body, headers=FHIR_XML_IN), 400, expected)
    assert_nothing_stored(client, since, "Patient")


def test_xml_reference_syntax_is_checked_like_json(client):
    body = (
        b'<Observation xmlns="http://hl7.org/fhir"><status value="final"/><code><text value="x"/></code>'
        b'<subject><reference value="not a ref"/></subject></Observation>'
    )
    since = now_instant()
    response = client.post("/fhir/Observation", content=body, headers=FHIR_XML_IN)
    assert_outcome(response, 400, [("reference-syntax", "Observation.subject.reference")])
    assert_nothing_stored(client, since, "Observation")


# --- media types and size -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/json-patch+json"]
)
def test_unsupported_content_type_is_415(client, content_type):
    since = now_instant()
    response = client.post(
        "/fhir/Patient", content=b'{"resourceType": "Patient"}', headers={"Content-Type": content_type}
    )
    assert_outcome(response, 415, [("media-type-unsupported", None)])
    assert_nothing_stored(client, since, "Patient")


def test_unsupported_accept_is_406_on_reads(client):
    created = create(client, _patient(active=True))
    for url in (f"/fhir/Patient/{created['id']}", "/fhir/metadata", f"/fhir/Patient/{created['id']}/_history"):
        assert_outcome(client.get(url, headers={"Accept": "text/html"}), 406, [("format-not-acceptable", None)])
        assert_outcome(client.get(url, params={"_format": "html"}), 406, [("format-unsupported", None)])


@pytest.mark.parametrize(
    ("headers", "params", "code"),
    [
        ({"Accept": "text/html"}, {}, "format-not-acceptable"),
        ({"Accept": "application/pdf, image/png;q=0.5"}, {}, "format-not-acceptable"),
        ({}, {"_format": "html"}, "format-unsupported"),
    ],
    ids=["accept-html", "accept-list", "format-param"],
)
def test_unsupported_accept_on_a_write_is_406_and_stores_nothing(client, headers, params, code):
    """A write whose answer cannot be rendered must not happen (retrying it would duplicate it)."""
    since = now_instant()
    response = client.post(
        "/fhir/Patient",
        json=_patient(active=True),
        params=params,
        headers={"Content-Type": "application/fhir+json", **headers},
    )
    assert_outcome(response, 406, [(code, None)])
    assert_nothing_stored(client, since, "Patient")


@pytest.fixture
def small_body_client(tmp_path):  # type: ignore[no-untyped-def]
    """An app with a 200-byte body limit, on its own SQLite database."""
    url = f"sqlite:///{tmp_path / 'small.db'}"
    engine = make_engine(url)
    upgrade(engine)
    engine.dispose()
    app = create_app(
        Settings(database_url=url, max_body_bytes=200, log_level="WARNING", allow_unauthenticated_loopback=True)
    )
    with TestClient(app, base_url="http://127.0.0.1", client=("127.0.0.1", 40000)) as test_client:
        yield test_client
    app.state.store.engine.dispose()


def test_body_over_the_size_limit_is_413(small_body_client):
    client = small_body_client
    small = _patient(name=[{"family": "x" * 50}])
    assert client.post("/fhir/Patient", json=small, headers=FHIR_JSON).status_code == 201
    since = now_instant()
    large = _patient(name=[{"family": "x" * 300}])
    assert_outcome(client.post("/fhir/Patient", json=large, headers=FHIR_JSON), 413, [("body-too-large", None)])
    # Without Content-Length (chunked), the limit holds while reading.
    chunks = iter([b'{"resourceType": "Patient", "name": [{"family": "', b"x" * 300, b'"}]}'])
    assert_outcome(client.post("/fhir/Patient", content=chunks, headers=FHIR_JSON), 413, [("body-too-large", None)])
    bundle = {
        "resourceType": "Bundle",
        "type": "batch",
        "entry": [{"request": {"method": "POST", "url": "Patient"}, "resource": large}],
    }
    assert_outcome(client.post("/fhir", json=bundle, headers=FHIR_JSON), 413, [("body-too-large", None)])
    assert_nothing_stored(client, since, "Patient")


# --- nothing stored, checked a second way: conditional create on a unique identifier --------------


def test_refused_create_leaves_no_resource_to_match(client):
    identifier = {"system": "urn:test:invalid", "value": str(uuid.uuid4())}
    refused = client.post("/fhir/Patient", json=_patient(identifier=[identifier], gender="x"), headers=FHIR_JSON)
    assert refused.status_code == 400
    condition = {"If-None-Exist": f"identifier={identifier['system']}|{identifier['value']}", **FHIR_JSON}
    first = client.post("/fhir/Patient", json=_patient(identifier=[identifier]), headers=condition)
    assert first.status_code == 201, first.text
    again = client.post("/fhir/Patient", json=_patient(identifier=[identifier]), headers=condition)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
