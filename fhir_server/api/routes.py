"""The FHIR REST routes (R4 http.html). Thin: parse the request, call one interaction, respond.

Every interaction runs through `auditing.audited` (its AuditEvent); a request that fails before
its interaction runs (an unknown type, a body that cannot be read) is audited by the guard.

Plain Starlette routes inside the FastAPI app: FastAPI's per-request dependency and parameter
machinery cost more than a whole read, and these endpoints need none of it (bodies are FHIR,
parsed and validated by the model layer).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode

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
from fhir_server.interactions.auditing import Interaction, audit_failure, audited
from fhir_server.interactions.capabilities import capability_statement
from fhir_server.interactions.context import Env, Result
from fhir_server.model.schema import resource_types
from fhir_server.ops.registry import OPERATIONS


def _type(request: Request) -> str:
    resource_type: str = request.path_params["resource_type"]
    if resource_type not in resource_types():
        raise NotFound(f"'{resource_type}' is not a resource type this server knows", "resource-type-unknown")
    return resource_type


def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


async def _run(env: Env, interaction: Interaction, call: Callable[..., Result], *args: Any) -> Result:
    """The interaction `call(*args)` in the thread pool, audited."""
    return await run_in_threadpool(audited, env, interaction, call, *args)


def _requested(request: Request, extra: list[tuple[str, str]] | None = None) -> str | None:
    """The request as a URL relative to the base, with every parameter as sent (an AuditEvent's
    query entity, BALP: the raw request, not a cleaned one)."""
    base = request.app.state.settings.base_path
    path = request.url.path.removeprefix(base).lstrip("/")
    query = "&".join(part for part in (request.url.query, urlencode(extra or [])) if part)
    return f"{path}?{query}" if query else path or None


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
    kind = "batch" if isinstance(body, dict) and body.get("type") == "batch" else "transaction"
    return respond(request, await _run(env, Interaction(kind), bundle.process_bundle, env, body, not minimal))


async def system_history(request: Request) -> Response:
    return await _history(request, None, None)


async def type_history(request: Request) -> Response:
    return await _history(request, _type(request), None)


async def instance_history(request: Request) -> Response:
    return await _history(request, _type(request), request.path_params["resource_id"])


async def _history(request: Request, resource_type: str | None, resource_id: str | None) -> Response:
    env, params = env_of(request), _params(request)
    level = "instance" if resource_id else "type" if resource_type else "system"
    interaction = Interaction(f"history-{level}", resource_type, resource_id, _requested(request), tuple(params))
    return respond(request, await _run(env, interaction, history.history, env, params, resource_type, resource_id))


async def vread(request: Request) -> Response:
    env = env_of(request)
    path, resource_type = request.path_params, _type(request)
    interaction = Interaction("vread", resource_type, path["resource_id"])
    result = await _run(env, interaction, read.vread, env, resource_type, path["resource_id"], path["version"])
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
    env, params = env_of(request), _params(request)
    body = (await read_body(request))[0] if request.method == "POST" else None
    interaction = Interaction(
        "operation", resource_type, resource_id, _requested(request), tuple(params), operation=op.name
    )
    return respond(request, await _run(env, interaction, op.handler, env, resource_type, resource_id, body, params))


async def read_resource(request: Request, resource_id: str) -> Response:
    env, resource_type = env_of(request), _type(request)
    result: Result = await _run(
        env, Interaction("read", resource_type, resource_id), read.read, env, resource_type, resource_id
    )
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
        interaction = Interaction("delete", resource_type, query=_requested(request))
        result = await _run(env, interaction, delete.conditional_delete, env, resource_type, request.url.query)
        return _deleted(request, result)
    body, _ = await read_body(request)
    if request.method == "POST":
        if_none_exist = request.headers.get("if-none-exist")
        criteria = f"{resource_type}?{if_none_exist}" if if_none_exist else None
        interaction = Interaction("create", resource_type, query=criteria)
        return respond(request, await _run(env, interaction, create.create, env, resource_type, body, if_none_exist))
    if_match = parse_if_match(request.headers.get("if-match"))
    interaction = Interaction("update", resource_type, query=_requested(request))
    query = request.url.query
    result = await _run(env, interaction, update.conditional_update, env, resource_type, query, body, if_match)
    return respond(request, result)


async def instance_level(request: Request) -> Response:
    """PUT updates, PATCH patches and DELETE deletes one resource (GET is routed to read)."""
    resource_type = _type(request)
    resource_id = request.path_params["resource_id"]
    env = env_of(request)
    if_match = parse_if_match(request.headers.get("if-match"))
    if request.method == "DELETE":
        interaction = Interaction("delete", resource_type, resource_id)
        return _deleted(request, await _run(env, interaction, delete.delete, env, resource_type, resource_id, if_match))
    if request.method == "PATCH":
        document, kind = await read_body(request, allow_json_patch=True)
        patch_kind = patch.JSON_PATCH if kind == "json-patch" else patch.FHIRPATH_PATCH
        interaction = Interaction("patch", resource_type, resource_id)
        args = (env, resource_type, resource_id, document, patch_kind, if_match)
        return respond(request, await _run(env, interaction, patch.patch, *args))
    body, _ = await read_body(request)
    interaction = Interaction("update", resource_type, resource_id)
    return respond(
        request, await _run(env, interaction, update.update, env, resource_type, resource_id, body, if_match)
    )


async def system_search(request: Request) -> Response:
    """`GET [base]?_type=...` and `POST [base]/_search`."""
    return await _search(request, None)


async def _search(request: Request, resource_type: str | None, compartment: tuple[str, str] | None = None) -> Response:
    """Search with the query's parameters, plus a form body's for POST `_search` (search.html#post)."""
    params = _params(request)
    form: list[tuple[str, str]] = []
    if request.method == "POST":
        content_type = request.headers.get("content-type", "").split(";")[0].strip()
        if content_type != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType("POST _search takes application/x-www-form-urlencoded", "media-type-unsupported")
        form = await _form_params(request)
        params += form
    env = env_of(request)
    strict = prefer_strict(request.headers.get("prefer"))
    subtype = "search-type" if resource_type else "search-system"
    interaction = Interaction(subtype, resource_type, None, _requested(request, form), tuple(params), compartment)
    result = await _run(env, interaction, search.search, env, resource_type, params, strict, compartment)
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
        env = env_of(request)
        try:
            return await handler(request)
        except Exception as error:
            if env.settings.audit:
                await run_in_threadpool(audit_failure, env, _attempted(request), error)
            raise

    return guarded


def _attempted(request: Request) -> Interaction:
    """What a request that failed before its interaction ran was asking for, from its URL."""
    path, method = request.path_params, request.method
    resource_type = path.get("resource_type") if path.get("resource_type") in resource_types() else None
    resource_id, second = path.get("resource_id"), path.get("operation")
    if second is not None and second.startswith("$"):
        return Interaction("operation", resource_type, resource_id, operation=second[1:])
    if second == "_search" or (second is not None and resource_id is not None):  # a compartment search
        searched = second if second in resource_types() else None
        return Interaction("search-type", resource_type if second == "_search" else searched)
    if "version" in path:
        return Interaction("vread", resource_type, resource_id)
    if request.url.path.endswith("/_history"):
        level = "instance" if resource_id else "type" if resource_type else "system"
        return Interaction(f"history-{level}", resource_type, resource_id)
    if "resource_type" not in path:
        return Interaction("transaction" if method == "POST" and "_search" not in request.url.path else "search-system")
    resource_id = resource_id or second
    by_method = {"GET": "read" if resource_id else "search-type", "POST": "create", "PUT": "update"}
    by_method.update(PATCH="patch", DELETE="delete")
    return Interaction(by_method.get(method, "read"), resource_type, resource_id)


def started_at() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
