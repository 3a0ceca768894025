"""Turning interaction results into HTTP responses: headers, Prefer, _summary and formats."""

from __future__ import annotations

from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from fhir_server.api.bearer import access_context
from fhir_server.api.formats import Format, body_kind, parse_body, render, response_format
from fhir_server.api.http import prefer_return, version_headers
from fhir_server.errors import TooLarge, information
from fhir_server.interactions.context import Env, Result
from fhir_server.model.json import parse
from fhir_server.model.summary import check_summary, shape

# Bodies up to this size parse faster than a hop to the thread pool costs.
_PARSE_INLINE_BYTES = 64 * 1024


def negotiated(request: Request) -> Format:
    params = request.query_params
    return response_format(params.get("_format"), request.headers.get("accept"), params.get("_pretty"))


def env_of(request: Request) -> Env:
    """The request's environment; the caller is authenticated once per request (api/bearer.py)."""
    env: Env | None = getattr(request.state, "env", None)
    if env is None:
        state = request.app.state
        base = env_base(request)
        request_id = getattr(request.state, "request_id", None)  # api/middleware.py
        env = request.state.env = Env(state.store, state.settings, access_context(request, base), base, request_id)
    return env


async def read_body(request: Request, allow_json_patch: bool = False) -> tuple[Any, str]:
    """The parsed request body and its kind ('json', 'xml', 'json-patch'), within the size limit."""
    settings = request.app.state.settings
    negotiated(request)  # 406 before any work: a write must not happen when its answer cannot be sent
    kind = body_kind(request.headers.get("content-type"), allow_json_patch)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
        raise _too_large(settings.max_body_bytes)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > settings.max_body_bytes:
            raise _too_large(settings.max_body_bytes)
        chunks.append(chunk)
    body, syntax = b"".join(chunks), "json" if kind == "json-patch" else kind
    if len(body) > _PARSE_INLINE_BYTES:  # big Bundles would stall every other request on this loop
        return await run_in_threadpool(parse_body, body, syntax, settings.max_json_depth), kind
    return parse_body(body, syntax, settings.max_json_depth), kind


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"The request body exceeds the limit of {limit} bytes", "body-too-large")


def respond(request: Request, result: Result) -> Response:
    """A resource result, honouring Prefer, _summary and _elements."""
    chosen = negotiated(request)
    headers = dict(result.headers)
    stored = result.version
    if stored is None:
        return Response(render(result.body or {}, chosen), result.status, headers, chosen.content_type)
    headers.update(version_headers(stored))
    if result.created:
        headers["Location"] = f"{env_base(request)}/{stored.resource_type}/{stored.id}/_history/{stored.version_id}"
    preference = prefer_return(request.headers.get("prefer")) if request.method != "GET" else "representation"
    if preference == "minimal":
        return Response(b"", result.status, headers)
    if preference == "OperationOutcome":
        body = information(f"{stored.resource_type}/{stored.id} version {stored.version_id} stored", "stored")
        return Response(render(body, chosen), result.status, headers, chosen.content_type)
    return Response(_content(request, stored.content or b"", chosen), result.status, headers, chosen.content_type)


def _content(request: Request, content: bytes, chosen: Format) -> bytes:
    params = request.query_params
    summary = check_summary(params.get("_summary"))
    shaped = (
        shape(parse(content, max_depth=10_000), summary, params.get("_elements"))
        if summary or params.get("_elements")
        else None
    )
    return render(shaped if shaped is not None else content, chosen)


def env_base(request: Request) -> str:
    settings = request.app.state.settings
    return settings.public_base_url or f"{str(request.base_url).rstrip('/')}{settings.base_path}"


def not_modified_response(result: Result) -> Response:
    assert result.version is not None
    return Response(b"", 304, version_headers(result.version))
