"""auth/scopes.py: which requested SMART scopes a client's allowed scopes cover (v1 and v2
permissions, wildcards, granular queries, non-clinical scopes)."""

from __future__ import annotations

import pytest

from fhir_server.auth.scopes import context_of, refused, split, within


@pytest.mark.parametrize(
    ("requested", "allowed_scopes", "expected"),
    [
        ("patient/Observation.rs", ["patient/*.rs"], True),
        ("patient/Observation.read", ["patient/*.rs"], True),
        ("patient/Observation.r", ["patient/Observation.read"], True),
        ("patient/Observation.cruds", ["patient/*.read"], False),
        ("patient/Observation.write", ["patient/*.cud"], True),
        ("patient/Observation.*", ["patient/*.cruds"], True),
        ("user/Observation.rs", ["patient/*.cruds"], False),
        ("system/Patient.rs", ["system/*.*"], True),
        ("patient/Observation.rs?category=vital-signs", ["patient/Observation.rs"], True),
        ("patient/Observation.rs", ["patient/Observation.rs?category=vital-signs"], False),
        ("patient/Observation.sr", ["patient/*.cruds"], False),  # v2 letters must be in order
        ("openid", ["openid", "fhirUser"], True),
        ("offline_access", ["online_access"], False),
        ("launch/patient", ["launch"], False),
    ],
)
def test_allowed(requested, allowed_scopes, expected):
    assert within(requested, allowed_scopes) is expected


def test_helpers():
    assert split(" a  b a ") == ["a", "b"] and split(None) == []
    assert refused(["patient/*.rs", "user/*.rs"], ["patient/*.cruds"]) == ["user/*.rs"]
    assert context_of("system/*.rs") == "system" and context_of("openid") is None
