"""Unit tests see the official R4 registry only, whatever custom SearchParameters integration
tests running in the same process have stored."""

from collections.abc import Iterator

import pytest

from fhir_server.search.registry import official_only


@pytest.fixture(autouse=True)
def _official_registry() -> Iterator[None]:
    with official_only():
        yield
