"""read and vread (R4 http.html#read, #vread). A hidden resource is a missing one."""

from __future__ import annotations

from fhir_server.errors import Gone, NotFound
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.writing import instant
from fhir_server.store.repository import StoredVersion, UnitOfWork


def read(env: Env, resource_type: str, resource_id: str) -> Result:
    with env.store.unit_of_work(env.visibility("r", resource_type), read_only=True) as uow:
        return Result(200, read_in(uow, resource_type, resource_id))


def read_in(uow: UnitOfWork, resource_type: str, resource_id: str) -> StoredVersion:
    current = uow.current(resource_type, resource_id)
    if current is None:
        raise NotFound(f"{resource_type}/{resource_id} is not known", "resource-not-found")
    if current.deleted:
        raise Gone(f"{resource_type}/{resource_id} was deleted", "resource-deleted", headers=_deleted_headers(current))
    return current


def vread(env: Env, resource_type: str, resource_id: str, version: str) -> Result:
    with env.store.unit_of_work(env.visibility("r", resource_type), read_only=True) as uow:
        return Result(200, vread_in(uow, resource_type, resource_id, version))


# Version ids are stored as 32-bit integers; a larger number names no version (and must not reach SQL).
MAX_VERSION = 2**31 - 1


def version_number(text: str) -> int | None:
    """The version id a URL segment names, or None (ASCII digits only: `int()` rejects '²')."""
    if not (text.isascii() and text.isdigit()) or len(text) > 10 or int(text) > MAX_VERSION:
        return None
    return int(text)


def vread_in(uow: UnitOfWork, resource_type: str, resource_id: str, version: str) -> StoredVersion:
    number = version_number(version)
    stored = uow.version(resource_type, resource_id, number) if number is not None else None
    if stored is None:
        raise NotFound(f"{resource_type}/{resource_id}/_history/{version} is not known", "version-not-found")
    if stored.deleted:
        raise Gone(
            f"Version {version} of {resource_type}/{resource_id} is a deletion",
            "version-deleted",
            headers=_deleted_headers(stored),
        )
    return stored


def _deleted_headers(stored: StoredVersion) -> dict[str, str]:
    return {"ETag": f'W/"{stored.version_id}"', "X-Last-Updated": instant(stored.last_updated)}
