"""The FHIR REST routes (R4 http.html). Thin: parse the request, call one interaction, respond."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from fhir_server.api.formats import render
from fhir_server.api.http import not_modified, parse_if_match, prefer_return
from fhir_server.api.respond import env_of, negotiated, not_modified_response, read_body, respond
from fhir_server.errors import Invalid, NotFound, NotSupported
from fhir_server.interactions import bundle, create, delete, history, patch, read, update
from fhir_server.interactions.capabilities import capability_statement
from fhir_server.interactions.context import Result
from fhir_server.model.schema import resource_types
from fhir_server.ops.registry import OPERATIONS

router = APIRouter()


def _type(resource_type: str) -> str:
    if resource_type not in resource_types():
        raise NotFound(f"'{resource_type}' is not a resource type this server knows", "resource-type-unknown")
    return resource_type


def _query(request: Request) -> str:
    return request.url.query


@router.get("/metadata")
async def metadata(request: Request) -> Response:
    published = request.app.state.started_at
    body = capability_statement(env_of(request).base_url, OPERATIONS.values(), published)
    return Response(render(body, negotiated(request)), 200, media_type=negotiated(request).content_type)


@router.post("/")
async def batch_or_transaction(request: Request) -> Response:
    env = env_of(request)
    body, _ = await read_body(request)
    minimal = prefer_return(request.headers.get("prefer")) == "minimal"
    return respond(request, await run_in_threadpool(bundle.process_bundle, env, body, not minimal))


@router.get("/_history")
async def system_history(request: Request) -> Response:
    env = env_of(request)
    return respond(request, await run_in_threadpool(history.history, env, list(request.query_params.multi_items())))


@router.get("/{resource_type}/_history")
async def type_history(request: Request, resource_type: str) -> Response:
    env = env_of(request)
    params = list(request.query_params.multi_items())
    return respond(request, await run_in_threadpool(history.history, env, params, _type(resource_type)))


@router.get("/{resource_type}/{resource_id}/_history")
async def instance_history(request: Request, resource_type: str, resource_id: str) -> Response:
    env = env_of(request)
    params = list(request.query_params.multi_items())
    result = await run_in_threadpool(history.history, env, params, _type(resource_type), resource_id)
    return respond(request, result)


@router.get("/{resource_type}/{resource_id}/_history/{version}")
async def vread(request: Request, resource_type: str, resource_id: str, version: str) -> Response:
    env = env_of(request)
    return respond(request, await run_in_threadpool(read.vread, env, _type(resource_type), resource_id, version))


@router.api_route("/{resource_type}/{resource_id}/{operation}", methods=["GET", "POST"])
async def instance_operation(request: Request, resource_type: str, resource_id: str, operation: str) -> Response:
    return await _operation(request, operation, _type(resource_type), resource_id, "instance")


@router.api_route("/{resource_type}/{operation}", methods=["GET", "POST"], include_in_schema=False)
async def type_operation_or_read(request: Request, resource_type: str, operation: str) -> Response:
    if not operation.startswith("$"):
        return await read_resource(request, resource_type, operation)
    return await _operation(request, operation, _type(resource_type), None, "type")


async def _operation(
    request: Request, operation: str, resource_type: str, resource_id: str | None, level: str
) -> Response:
    op = OPERATIONS.get(operation.removeprefix("$")) if operation.startswith("$") else None
    if op is None or not getattr(op, f"{level}_level"):
        raise NotFound(f"Operation '{operation}' is not known at {level} level", "operation-unknown")
    env = env_of(request)
    body = (await read_body(request))[0] if request.method == "POST" else None
    params = list(request.query_params.multi_items())
    return respond(request, await run_in_threadpool(op.handler, env, resource_type, resource_id, body, params))


async def read_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    if request.method != "GET":
        raise NotFound(f"Operation '{resource_id}' is not known", "operation-unknown")
    env = env_of(request)
    result: Result = await run_in_threadpool(read.read, env, _type(resource_type), resource_id)
    assert result.version is not None
    headers = request.headers
    if not_modified(result.version, headers.get("if-none-match"), headers.get("if-modified-since")):
        return not_modified_response(result)
    return respond(request, result)


@router.post("/{resource_type}")
async def create_resource(request: Request, resource_type: str) -> Response:
    env = env_of(request)
    body, _ = await read_body(request)
    if_none_exist = request.headers.get("if-none-exist")
    return respond(request, await run_in_threadpool(create.create, env, _type(resource_type), body, if_none_exist))


@router.put("/{resource_type}/{resource_id}")
async def update_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    env = env_of(request)
    body, _ = await read_body(request)
    if_match = parse_if_match(request.headers.get("if-match"))
    result = await run_in_threadpool(update.update, env, _type(resource_type), resource_id, body, if_match)
    return respond(request, result)


@router.put("/{resource_type}")
async def conditional_update(request: Request, resource_type: str) -> Response:
    env = env_of(request)
    body, _ = await read_body(request)
    if_match = parse_if_match(request.headers.get("if-match"))
    result = await run_in_threadpool(
        update.conditional_update, env, _type(resource_type), _query(request), body, if_match
    )
    return respond(request, result)


@router.patch("/{resource_type}/{resource_id}")
async def patch_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    env = env_of(request)
    document, kind = await read_body(request, allow_json_patch=True)
    patch_kind = patch.JSON_PATCH if kind == "json-patch" else patch.FHIRPATH_PATCH
    if_match = parse_if_match(request.headers.get("if-match"))
    result = await run_in_threadpool(
        patch.patch, env, _type(resource_type), resource_id, document, patch_kind, if_match
    )
    return respond(request, result)


@router.delete("/{resource_type}/{resource_id}")
async def delete_resource(request: Request, resource_type: str, resource_id: str) -> Response:
    env = env_of(request)
    if_match = parse_if_match(request.headers.get("if-match"))
    result = await run_in_threadpool(delete.delete, env, _type(resource_type), resource_id, if_match)
    return _deleted(request, result)


@router.delete("/{resource_type}")
async def conditional_delete(request: Request, resource_type: str) -> Response:
    env = env_of(request)
    if not _query(request):
        raise Invalid("DELETE on a type needs search criteria", "criteria-missing")
    result = await run_in_threadpool(delete.conditional_delete, env, _type(resource_type), _query(request))
    return _deleted(request, result)


def _deleted(request: Request, result: Result) -> Response:
    """204 by default; 200 with the OperationOutcome when the client prefers it."""
    if prefer_return(request.headers.get("prefer")) == "OperationOutcome":
        return respond(request, result)
    return Response(b"", 204, result.headers)


@router.get("/{resource_type}")
async def search_type(request: Request, resource_type: str) -> Response:
    _type(resource_type)
    raise NotSupported("Search is not available on this server yet", "search-unsupported")


def started_at() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
