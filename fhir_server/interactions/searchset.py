"""The searchset Bundle (R4 bundle.html, search.html#return): entries, modes, links, total."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import orjson

from fhir_server.model.json import parse
from fhir_server.model.summary import shape
from fhir_server.store.repository import StoredVersion


def entry(base_url: str, stored: StoredVersion, mode: str, summary: str | None, elements: str | None) -> dict[str, Any]:
    """One entry; the stored bytes are embedded as they are unless the client asked for less."""
    assert stored.content is not None
    resource: Any = orjson.Fragment(stored.content)
    if summary in ("true", "text", "data") or elements:
        shaped = shape(parse(stored.content, max_depth=10_000), summary, elements)
        resource = shaped if shaped is not None else resource
    return {
        "fullUrl": f"{base_url}/{stored.resource_type}/{stored.id}",
        "resource": resource,
        "search": {"mode": mode},
    }


def link(base_url: str, path: str, params: list[tuple[str, str]]) -> str:
    query = urlencode(params)
    return f"{base_url}/{path}" + (f"?{query}" if query else "")


def bundle(links: list[dict[str, str]], entries: list[dict[str, Any]], total: int | None) -> dict[str, Any]:
    result: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        result["total"] = total
    result["link"] = links
    if entries:  # FHIR JSON has no empty arrays
        result["entry"] = entries
    return result
