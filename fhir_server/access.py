"""The access-context seam (DESIGN.md section 3).

Every interaction receives an `AccessContext`: who asks, for which clinic, with which scopes.
The policy (auth/policy.py) turns it, for one kind of interaction, into a `Visibility`: a plain
description of which rows the caller may touch, which the store compiles into SQL predicates
applied to every query (store/compile_access.py). `LOCAL_OPERATOR` is an unauthenticated caller
on a loopback address, let in only where the settings allow it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class AccessContext:
    principal: str
    kind: str  # local-operator | patient | clinic-member | backend-service | platform-admin
    clinic_id: str | None = None
    scopes: frozenset[str] = field(default_factory=frozenset)
    client_address: str | None = None
    client_id: str | None = None
    patient: str | None = None  # the launch context's patient id (SMART `patient`)
    encounter: str | None = None
    fhir_user: str | None = None
    role: str | None = None
    # Impersonation: the platform admin's account id when they act as this principal (the token
    # exchange's RFC 8693 `act` claim); every access so made is audited naming both.
    acting_admin: str | None = None


@dataclass(frozen=True)
class Grant:
    """Rows of `resource_type` ("*": every type) a caller may touch; with `patient`, only those
    in that patient's compartment; with `query`, only those matching that search (a SMART
    granular scope); with `clinic`, only what that clinic owns or contributed; with `types`,
    only resources of those types (a clinic role's reach); with `registered_names`, also the id
    and name of the Patients registered at `clinic` (reads and searches before consent)."""

    resource_type: str
    patient: str | None = None
    query: tuple[tuple[str, str], ...] = ()
    clinic: str | None = None
    types: frozenset[str] | None = None
    registered_names: bool = False


@dataclass(frozen=True)
class Visibility:
    """Which stored rows a caller may see or change: all of them (`unrestricted`), or those of
    any of its grants. No grant sees nothing: the safe default. `acting_clinic` and
    `acting_patient` say for whom a write is recorded (the owner the server assigns)."""

    unrestricted: bool = False
    grants: tuple[Grant, ...] = ()
    acting_clinic: str | None = None
    acting_patient: str | None = None


LOCAL_OPERATOR = AccessContext(principal="local-operator", kind="local-operator")
