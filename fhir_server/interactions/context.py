"""What every interaction receives, and what it returns, free of any HTTP object."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fhir_server.access import AccessContext, Visibility
from fhir_server.auth import policy
from fhir_server.settings import Settings
from fhir_server.store.repository import Store, StoredVersion


@dataclass
class Env:
    """The caller's access context with the server's store, settings and public base URL, and the
    request's audit state (interactions/auditing.py)."""

    store: Store
    settings: Settings
    access: AccessContext
    base_url: str
    request_id: str | None = None  # X-Request-ID, named in the request's AuditEvents
    trail: Any = None  # the audit state of the interaction running (auditing.Trail)

    def visibility(self, letter: str, resource_type: str | None) -> Visibility:
        """What the caller may touch doing an interaction of `letter` (c, r, u, d, s; see
        auth/policy.py) on `resource_type`; 403 when its scopes do not permit it at all."""
        return policy.visibility(self.access, letter, resource_type)


@dataclass(frozen=True)
class Result:
    """An interaction's answer: a status, and either a stored version or a body to send."""

    status: int
    version: StoredVersion | None = None
    body: dict[str, Any] | None = None
    created: bool = False
    headers: dict[str, str] = field(default_factory=dict)
