"""history at instance, type and system level (R4 http.html#history).

Newest first, with `_since`, `_at`, `_count` and keyset paging: the `_page` token names the last
version shown, so new writes during paging never shift or repeat entries.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.errors import Invalid, Issue, NotFound
from fhir_server.interactions.context import Env, Result
from fhir_server.interactions.read import MAX_VERSION
from fhir_server.interactions.writing import instant
from fhir_server.model.dates import parse_instant_range
from fhir_server.store.repository import HistoryQuery, StoredVersion

_STATUS = {"POST": "201 Created", "PUT": "200 OK", "PATCH": "200 OK", "DELETE": "204 No Content"}
# _summary and _elements are refused rather than ignored: history entries are always whole.
_KNOWN = {"_since", "_at", "_count", "_page", "_format", "_pretty"}


def history(
    env: Env, params: list[tuple[str, str]], resource_type: str | None = None, resource_id: str | None = None
) -> Result:
    query = _query(env, dict(params), resource_type, resource_id, [name for name, _ in params])
    with env.store.unit_of_work(env.visibility("r" if resource_id else "s", resource_type), read_only=True) as uow:
        if resource_type and resource_id and uow.current(resource_type, resource_id) is None:
            raise NotFound(f"{resource_type}/{resource_id} is not known", "resource-not-found")
        rows = uow.history(HistoryQuery(**{**query.__dict__, "limit": query.limit + 1}))
    return Result(
        200, body=_bundle(env, rows[: query.limit], len(rows) > query.limit, params, resource_type, resource_id)
    )


def _query(
    env: Env, params: dict[str, str], resource_type: str | None, resource_id: str | None, names: list[str]
) -> HistoryQuery:
    unknown = [name for name in names if name not in _KNOWN]
    if unknown:
        raise Invalid(
            "Unknown history parameters",
            "history-parameter-unknown",
            issues=[
                Issue(f"Unknown history parameter '{name}'", "history-parameter-unknown", "not-supported", name)
                for name in unknown
            ],
        )
    since = parse_instant_range(params["_since"], "_since")[0] if "_since" in params else None
    at = parse_instant_range(params["_at"], "_at") if "_at" in params else None
    return HistoryQuery(
        resource_type, resource_id, since, at, _page_key(params.get("_page")), _count(env, params.get("_count"))
    )


def _count(env: Env, value: str | None) -> int:
    if value is None:
        return env.settings.default_page_size
    if not (value.isascii() and value.isdigit()):
        raise Invalid(
            f"_count must be a non-negative integer, not '{value}'",
            "count-invalid",
            issues=[
                Issue(f"_count must be a non-negative integer, not '{value}'", "count-invalid", "invalid", "_count")
            ],
        )
    return min(int(value), env.settings.max_page_size)


def _page_key(token: str | None) -> tuple[datetime, str, str, int] | None:
    if not token:
        return None
    try:
        moment, resource_type, resource_id, version = json.loads(base64.urlsafe_b64decode(token.encode()))
        if not isinstance(version, int) or not 0 <= version <= MAX_VERSION:
            raise ValueError("version out of range")
        return datetime.fromisoformat(moment), str(resource_type), str(resource_id), version
    except (ValueError, TypeError):
        raise Invalid("The _page token is not one this server issued", "page-token-invalid") from None


def _page_token(row: StoredVersion) -> str:
    key = [row.last_updated.isoformat(), row.resource_type, row.id, row.version_id]
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _bundle(
    env: Env,
    rows: list[StoredVersion],
    more: bool,
    params: list[tuple[str, str]],
    resource_type: str | None,
    resource_id: str | None,
) -> dict[str, Any]:
    path = "/".join(part for part in (resource_type, resource_id, "_history") if part)
    kept = [(name, value) for name, value in params if name != "_page"]
    links = [{"relation": "self", "url": _url(env, path, params)}]
    if more and rows:
        links.append({"relation": "next", "url": _url(env, path, [*kept, ("_page", _page_token(rows[-1]))])})
    if any(name == "_page" for name, _ in params):
        links.append({"relation": "first", "url": _url(env, path, kept)})
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "history", "link": links}
    if rows:  # FHIR JSON has no empty arrays
        bundle["entry"] = [_entry(env, row) for row in rows]
    return bundle


def _url(env: Env, path: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{env.base_url}/{path}" + (f"?{query}" if query else "")


def _entry(env: Env, row: StoredVersion) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{env.base_url}/{row.resource_type}/{row.id}"}
    if row.content is not None:
        entry["resource"] = orjson.Fragment(row.content)
    url = row.resource_type if row.method == "POST" else f"{row.resource_type}/{row.id}"
    entry["request"] = {"method": row.method, "url": url}
    entry["response"] = {
        "status": _STATUS.get(row.method, "200 OK"),
        "etag": f'W/"{row.version_id}"',
        "lastModified": instant(row.last_updated),
    }
    return entry
