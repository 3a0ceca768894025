"""The FHIR REST routes (R4 http.html). Thin: parse the request, call one interaction, respond.

Plain Starlette routes inside the FastAPI app: FastAPI's per-request dependency and parameter
machinery cost more than a whole read, and these endpoints need none of it (bodies are FHIR,
parsed and validated by the model layer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from fhir_server.api.formats import render
from fhir_server.api.http import not_modified, parse_if_match, prefer_return, prefer_strict
from fhir_server.api.respond import env_base, env_of, negotiated, not_modified_response, read_body, respond
from fhir_server.authserver.env import AUTH_PREFIX
from fhir_server.errors import Invalid, NotFound, TooLarge, UnsupportedMediaType
from fhir_server.interactions import bundle, create, delete, history, patch, read, search, update
from fhir_server.interactions.capabilities import capability_statement
from fhir_server.interactions.context import Result
from fhir_server.model.schema import resource_types
from fhir_server.ops.registry import OPERATIONS


def _type(request: Request) -> str:
    resource_type: str = request.path_params["resource_type"]
    if resource_type not in resource_types():
        raise NotFound(f"'{resource_type}' is not a resource type this server knows", "resource-type-unknown")
    return resource_type


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


async def metadata(request: Request) -> Response:
    chosen = negotiated(request)
    base = env_base(request)
    oauth_base = base.removesuffix(request.app.state.settings.base_path) + AUTH_PREFIX  # as AuthEnv.endpoint
    body = capability_statement(base, oauth_base, OPERATIONS.values(), request.app.state.started_at)
    return Response(render(body, chosen), 200, media_type=chosen.content_type)


async def batch_or_transaction(request: Request) -> Response:
    env = env_of(request)
    body, _ = await read_body(request)
    minimal = prefer_return(request.headers.get("prefer")) == "minimal"
    return respond(request, await run_in_threadpool(bundle.process_bundle, env, body, not minimal))


async def system_history(request: Request) -> Response:
    env = env_of(request)
    return respond(request, await run_in_threadpool(history.history, env, _params(request)))


async def type_history(request: Request) -> Response:
    env = env_of(request)
    return respond(request, await run_in_threadpool(history.history, env, _params(request), _type(request)))


async def instance_history(request: Request) -> Response:
    env = env_of(request)
    resource_id = request.path_params["resource_id"]
    result = await run_in_threadpool(history.history, env, _params(request), _type(request), resource_id)
    return respond(request, result)


async def vread(request: Request) -> Response:
    env = env_of(request)
    path = request.path_params
    result = await run_in_threadpool(read.vread, env, _type(request), path["resource_id"], path["version"])
    return respond(request, result)


async def instance_operation(request: Request) -> Response:
    """`[type]/[id]/$op`, or a compartment search `Patient/[id]/[type]`."""
    path = request.path_params
    if not path["operation"].startswith("$") and request.method == "GET":
        compartment = (_type(request), path["resource_id"])
        return await _search(request, _known_type(path["operation"]), compartment=compartment)
    return await _operation(request, path["operation"], _type(request), path["resource_id"], "instance")


async def type_operation_or_read(request: Request) -> Response:
    """`[type]/$op`, `[type]/_search` and `[type]/[id]` share one path shape."""
    second = request.path_params["operation"]
    if second == "_search" and request.method == "POST":
        return await _search(request, _type(request))
    if second.startswith("$"):
        return await _operation(request, second, _type(request), None, "type")
    if request.method != "GET":
        raise NotFound(f"Operation '{second}' is not known", "operation-unknown")
    return await read_resource(request, second)


async def _operation(
    request: Request, operation: str, resource_type: str, resource_id: str | None, level: str
) -> Response:
    op = OPERATIONS.get(operation.removeprefix("$")) if operation.startswith("$") else None
    if op is None or not getattr(op, f"{level}_level") or not op.applies_to(resource_type):
        raise NotFound(f"Operation '{operation}' is not known at {level} level", "operation-unknown")
    env = env_of(request)
    body = (await read_body(request))[0] if request.method == "POST" else None
    return respond(
        request, await run_in_threadpool(op.handler, env, resource_type, resource_id, body, _params(request))
    )


async def read_resource(request: Request, resource_id: str) -> Response:
    env = env_of(request)
    result: Result = await run_in_threadpool(read.read, env, _type(request), resource_id)
    assert result.version is not None
    headers = request.headers
    if not_modified(result.version, headers.get("if-none-match"), headers.get("if-modified-since")):
        return not_modified_response(result)
    return respond(request, result)


async def type_level(request: Request) -> Response:
    """POST creates, PUT and DELETE act on search criteria; GET is search (not here yet)."""
    resource_type = _type(request)
    if request.method == "GET":
        return await _search(request, resource_type)
    env = env_of(request)
    if request.method == "DELETE":
        if not request.url.query:
            raise Invalid("DELETE on a type needs search criteria", "criteria-missing")
        result = await run_in_threadpool(delete.conditional_delete, env, resource_type, request.url.query)
        return _deleted(request, result)
    body, _ = await read_body(request)
    if request.method == "POST":
        if_none_exist = request.headers.get("if-none-exist")
        return respond(request, await run_in_threadpool(create.create, env, resource_type, body, if_none_exist))
    if_match = parse_if_match(request.headers.get("if-match"))
    result = await run_in_threadpool(update.conditional_update, env, resource_type, request.url.query, body, if_match)
    return respond(request, result)


async def instance_level(request: Request) -> Response:
    """PUT updates, PATCH patches and DELETE deletes one resource (GET is routed to read)."""
    resource_type = _type(request)
    resource_id = request.path_params["resource_id"]
    env = env_of(request)
    if_match = parse_if_match(request.headers.get("if-match"))
    if request.method == "DELETE":
        return _deleted(request, await run_in_threadpool(delete.delete, env, resource_type, resource_id, if_match))
    if request.method == "PATCH":
        document, kind = await read_body(request, allow_json_patch=True)
        patch_kind = patch.JSON_PATCH if kind == "json-patch" else patch.FHIRPATH_PATCH
        result = await run_in_threadpool(patch.patch, env, resource_type, resource_id, document, patch_kind, if_match)
        return respond(request, result)
    body, _ = await read_body(request)
    return respond(request, await run_in_threadpool(update.update, env, resource_type, resource_id, body, if_match))


async def system_search(request: Request) -> Response:
    """`GET [base]?_type=...` and `POST [base]/_search`."""
    return await _search(request, None)


async def _search(request: Request, resource_type: str | None, compartment: tuple[str, str] | None = None) -> Response:
    """Search with the query's parameters, plus a form body's for POST `_search` (search.html#post)."""
    params = _params(request)
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded", "media-type-unsupported")
        params += await _form_params(request)
    env = env_of(request)
    strict = prefer_strict(request.headers.get("prefer"))
    result = await run_in_threadpool(search.search, env, resource_type, params, strict, compartment)
    return respond(request, result)


async def _form_params(request: Request) -> list[tuple[str, str]]:
    """The pairs of an application/x-www-form-urlencoded body, within the body size limit. Parsed
    here: Starlette's `request.form()` needs python-multipart, which is not a dependency."""
    limit = request.app.state.settings.max_body_bytes
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"The request body exceeds the limit of {limit} bytes", "body-too-large")
        chunks.append(chunk)
    try:
        text = b"".join(chunks).decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("The form body is not UTF-8", "search-value-invalid") from None
    return parse_qsl(text, keep_blank_values=True)


def _known_type(name: str) -> str:
    if name not in resource_types():
        raise NotFound(f"'{name}' is not a resource type this server knows", "resource-type-unknown")
    return name


def _deleted(request: Request, result: Result) -> Response:
    """204 by default; 200 with the OperationOutcome when the client prefers it."""
    if prefer_return(request.headers.get("prefer")) == "OperationOutcome":
        return respond(request, result)
    return Response(b"", 204, result.headers)


def routes(base: str) -> list[Route]:
    """Most specific first: `_history` and `metadata` before the generic type/id shapes."""
    type_path, instance_path = f"{base}/{{resource_type}}", f"{base}/{{resource_type}}/{{resource_id}}"
    guarded = [
        (f"{base}/", batch_or_transaction, ["POST"]),
        (base, batch_or_transaction, ["POST"]),
        (f"{base}/_history", system_history, ["GET"]),
        (f"{base}/_search", system_search, ["POST"]),
        (f"{base}/", system_search, ["GET"]),
        (base, system_search, ["GET"]),
        (f"{type_path}/_history", type_history, ["GET"]),
        (f"{instance_path}/_history", instance_history, ["GET"]),
        (f"{instance_path}/_history/{{version}}", vread, ["GET"]),
        (f"{instance_path}/{{operation}}", instance_operation, ["GET", "POST"]),
        (f"{type_path}/{{operation}}", type_operation_or_read, ["GET", "POST"]),
        (instance_path, instance_level, ["PUT", "PATCH", "DELETE"]),
        (type_path, type_level, ["GET", "POST", "PUT", "DELETE"]),
    ]
    return [Route(f"{base}/metadata", metadata, methods=["GET"])] + [
        Route(path, _authenticated(handler), methods=methods) for path, handler, methods in guarded
    ]


def _authenticated(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """The caller is established before anything else of the request is looked at: without a
    valid token, every FHIR endpoint but `metadata` answers 401 and nothing more (RFC 6750)."""

    async def guarded(request: Request) -> Response:
        env_of(request)
        return await handler(request)

    return guarded


def started_at() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
