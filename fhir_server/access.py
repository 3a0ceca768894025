"""The access-context seam (DESIGN.md section 3).

Every interaction receives an `AccessContext`: who asks, for which clinic, with which scopes.
The policy (auth/policy.py) turns it into a `Visibility`, a plain description of which rows the
caller may touch, and the store compiles that into SQL predicates applied to every query.
Until SMART authorization exists, the only context is `LOCAL_OPERATOR`: an unauthenticated
caller on a loopback address, which the server accepts nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccessContext:
    principal: str
    kind: str  # "local-operator" now; later patient, proxy, clinic-member, system, admin
    clinic_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    client_address: str | None = None


@dataclass(frozen=True)
class Visibility:
    """Which stored rows a caller may see or change; `unrestricted` sees all of them.

    Anything not unrestricted sees nothing until the clinic and patient rules exist: the safe
    default for a seam that later issues narrow down.
    """

    unrestricted: bool = False


LOCAL_OPERATOR = AccessContext(principal="local-operator", kind="local-operator")
