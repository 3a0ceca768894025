"""One Bundle entry: its request parsed, validated, run, and answered (R4 bundle.html#request)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson

from fhir_server.errors import FhirError, Invalid, Issue, NotSupported
from fhir_server.interactions import auditing
from fhir_server.interactions.context import Result
from fhir_server.interactions.create import create_in, prepare_create
from fhir_server.interactions.delete import conditional_delete_in, delete_in
from fhir_server.interactions.patch import FHIRPATH_PATCH, JSON_PATCH, patch_in
from fhir_server.interactions.read import read_in, vread_in
from fhir_server.interactions.update import check_body_id, conditional_update_in, prepare_update, update_in
from fhir_server.interactions.writing import instant
from fhir_server.model.json import parse
from fhir_server.model.schema import resource_types

_PATH = re.compile(r"^(?P<type>[A-Z][A-Za-z]+)(/(?P<id>[A-Za-z0-9\-.]{1,64})(/_history/(?P<version>[^/?]+))?)?$")
_STATUS_TEXT = {200: "200 OK", 201: "201 Created", 204: "204 No Content"}


@dataclass
class Entry:
    index: int
    method: str
    url: str
    resource_type: str
    resource_id: str | None = None
    version: str | None = None
    query: str | None = None
    full_url: str | None = None
    resource: dict[str, Any] | None = None
    if_none_exist: str | None = None
    if_match: int | None = None
    patch_document: Any = None
    patch_kind: str = JSON_PATCH
    assigned_id: str | None = None
    error: FhirError | None = None  # why a malformed entry could not be parsed


def parse_entries(bundle: dict[str, Any]) -> list[Entry]:
    """One Entry per request; a malformed one keeps its error, raised when the entry is prepared."""
    entries: list[Entry] = []
    for index, raw in enumerate(bundle.get("entry") or []):
        try:
            entries.append(_parse_entry(index, raw))
        except FhirError as error:
            entries.append(Entry(index, "INVALID", "", "", error=error))
    return entries


def _parse_entry(index: int, raw: dict[str, Any]) -> Entry:
    request = raw.get("request")
    if not isinstance(request, dict) or "method" not in request or "url" not in request:
        raise Invalid(
            "Each entry needs request.method and request.url",
            "bundle-request-missing",
            issues=[
                Issue(
                    "Each entry needs request.method and request.url", "bundle-request-missing", "required", "request"
                )
            ],
        )
    method = request["method"]
    path, _, query = _relative(request["url"]).partition("?")
    match = _PATH.match(path)
    if (
        method not in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
        or not match
        or match["type"] not in resource_types()
    ):
        message = f"Cannot process {method} {request['url']}"
        raise NotSupported(
            message,
            "bundle-request-unsupported",
            issues=[Issue(message, "bundle-request-unsupported", "not-supported", "request.url")],
        )
    return Entry(
        index,
        method,
        request["url"],
        match["type"],
        match["id"],
        match["version"],
        query or None,
        raw.get("fullUrl"),
        raw.get("resource"),
        request.get("ifNoneExist"),
        _if_match(request.get("ifMatch")),
    )


def _relative(url: str) -> str:
    if "://" in url:
        parts = urlsplit(url)
        segments = parts.path.rstrip("/").split("/")
        for start in range(len(segments)):
            if segments[start] in resource_types():
                path = "/".join(segments[start:])
                return f"{path}?{parts.query}" if parts.query else path
    return url.lstrip("/")


def _if_match(value: str | None) -> int | None:
    if value is None:
        return None
    digits = value.removeprefix("W/").strip('"')
    if not digits.isdigit():
        raise Invalid(f"ifMatch '{value}' is not an ETag such as W/\"3\"", "if-match-invalid")
    return int(digits)


def prepare_entry(entry: Entry, transaction: bool) -> None:
    """Validation that needs no database. The parsed body is ours, so resources are not copied."""
    if entry.error is not None:
        raise entry.error
    if entry.method in ("POST", "PUT") and entry.resource is None:
        raise Invalid(f"{entry.method} entries need a resource", "bundle-resource-missing")
    if entry.method == "POST":
        entry.resource = prepare_create(entry.resource_type, entry.resource, transaction)
    elif entry.method == "PUT":
        entry.resource = prepare_update(entry.resource_type, entry.resource, None, transaction)
        if entry.resource_id is not None:
            check_body_id(entry.resource, entry.resource_id)
    elif entry.method == "PATCH":
        entry.patch_document, entry.patch_kind = _patch_document(entry.resource)


def _patch_document(resource: Any) -> tuple[Any, str]:
    """A PATCH entry carries a Parameters (FHIRPath Patch) or a Binary holding a JSON Patch."""
    kind = resource.get("resourceType") if isinstance(resource, dict) else None
    if kind == "Parameters":
        return resource, FHIRPATH_PATCH
    if kind == "Binary" and resource.get("contentType") == "application/json-patch+json":
        return parse(base64.b64decode(resource.get("data", ""))), JSON_PATCH
    raise Invalid("PATCH entries carry a Parameters resource or a JSON Patch Binary", "patch-invalid")


# The restful-interaction each entry's method performs (its AuditEvent's subtype).
_INTERACTIONS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "read", "HEAD": "read"}


def begin_audit(entry: Entry, bundle_kind: str) -> None:
    """The entry's interaction, for its AuditEvent (interactions/auditing.py)."""
    subtype = "vread" if entry.version and entry.method in ("GET", "HEAD") else _INTERACTIONS.get(entry.method)
    criteria = entry.query or (entry.if_none_exist if entry.method == "POST" else None)
    query = f"{entry.resource_type}?{criteria}" if criteria else None
    auditing.begin_entry(subtype or bundle_kind, entry.resource_type, entry.resource_id, query)


# The SMART permission letter (auth/policy.py) each entry's interaction needs.
_LETTERS = {"POST": "c", "PUT": "u", "PATCH": "u", "DELETE": "d", "GET": "r", "HEAD": "r"}


def entry_letter(entry: Entry) -> str:
    return _LETTERS.get(entry.method, "r")


def run_entry(uow: Any, entry: Entry) -> Result:
    if entry.method == "POST":
        assert entry.resource is not None
        return create_in(uow, entry.resource, entry.if_none_exist, entry.assigned_id)
    if entry.method == "PUT":
        assert entry.resource is not None
        if entry.resource_id:
            return update_in(uow, entry.resource, entry.resource_id, entry.if_match)
        return conditional_update_in(uow, entry.resource, _criteria(entry), entry.if_match)
    if entry.method == "PATCH" and entry.resource_id:
        return patch_in(
            uow, entry.resource_type, entry.resource_id, entry.patch_document, entry.patch_kind, entry.if_match
        )
    if entry.method == "DELETE":
        if entry.resource_id:
            return delete_in(uow, entry.resource_type, entry.resource_id, entry.if_match)
        return conditional_delete_in(uow, entry.resource_type, _criteria(entry))
    if entry.method in ("GET", "HEAD") and entry.resource_id and not entry.query:
        if entry.version:
            return Result(200, vread_in(uow, entry.resource_type, entry.resource_id, entry.version))
        return Result(200, read_in(uow, entry.resource_type, entry.resource_id))
    raise NotSupported(f"{entry.method} {entry.url} is not supported in a Bundle yet", "bundle-request-unsupported")


def _criteria(entry: Entry) -> str:
    if not entry.query:
        raise Invalid(f"{entry.method} {entry.url} needs an id or search criteria", "criteria-missing")
    return entry.query


def response_entry(result: Result, return_resource: bool) -> dict[str, Any]:
    response: dict[str, Any] = {"status": _STATUS_TEXT.get(result.status, str(result.status))}
    entry: dict[str, Any] = {}
    stored = result.version
    if stored is not None:
        response["location"] = f"{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
        response["etag"] = f'W/"{stored.version_id}"'
        response["lastModified"] = instant(stored.last_updated)
        if return_resource and stored.content is not None:
            entry["resource"] = orjson.Fragment(stored.content)
    else:
        if "ETag" in result.headers:  # a delete: the deletion is a new version
            response["etag"] = result.headers["ETag"]
        if result.body is not None:
            response["outcome"] = result.body
    entry["response"] = response
    return entry


def relocate(error: FhirError, index: int) -> FhirError:
    """The same error, with each issue's location inside `Bundle.entry[index]`."""
    issues = [
        Issue(
            f"Entry {index}: {issue.message}",
            issue.error_code,
            issue.code,
            _locate(issue.expression, index),
            issue.severity,
        )
        for issue in error.issues
    ]
    located = type(error)(f"Entry {index}: {error.message}", error.error_code, issues, dict(error.headers))
    return located


def _locate(expression: str | None, index: int) -> str:
    prefix = f"Bundle.entry[{index}]"
    if not expression:
        return prefix
    head, _, rest = expression.partition(".")
    if head.split("[")[0] in resource_types():
        return f"{prefix}.resource" + (f".{rest}" if rest else "")
    return f"{prefix}.{expression}"
