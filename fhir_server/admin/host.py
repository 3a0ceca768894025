"""What every administration command on the server host shares: the store at the newest schema,
with the field-encryption keys of the settings, and one way to report a refused command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from typing import Any

from fhir_server.errors import FhirError
from fhir_server.settings import Settings
from fhir_server.store.engine import make_engine
from fhir_server.store.migrate import upgrade
from fhir_server.store.protection import protection_for
from fhir_server.store.repository import Store


def open_store(settings: Settings) -> Store:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    return Store(engine, protection_for(engine, settings))


def guarded(handler: Callable[[argparse.Namespace], Any]) -> Callable[[argparse.Namespace], int]:
    """The command, with an error of the FhirError family printed and exit code 2."""

    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except FhirError as error:
            print(f"error: {error.message}", file=sys.stderr)
            return 2

    return run
