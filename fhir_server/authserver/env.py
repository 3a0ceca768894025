"""What every authorization-server flow receives: the stores, the settings and the public URLs.

The issuer and the access tokens' audience are the FHIR base URL (SMART App Launch 2.x,
app-launch.html#obtain-authorization-code: `aud`); the OAuth endpoints live under `{origin}/auth/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from fhir_server.settings import Settings
from fhir_server.store.accounts import Accounts
from fhir_server.store.grants import Grants

AUTH_PREFIX = "/auth"


@dataclass
class AuthEnv:
    accounts: Accounts
    grants: Grants
    settings: Settings
    fhir_base: str  # e.g. http://127.0.0.1:8080/fhir

    @cached_property
    def origin(self) -> str:
        base_path = self.settings.base_path
        if base_path and self.fhir_base.endswith(base_path):
            return self.fhir_base[: -len(base_path)]
        return self.fhir_base

    def endpoint(self, name: str) -> str:
        return f"{self.origin}{AUTH_PREFIX}/{name}"

    @property
    def issuer(self) -> str:
        return self.fhir_base

    @property
    def token_endpoint(self) -> str:
        return self.endpoint("token")
