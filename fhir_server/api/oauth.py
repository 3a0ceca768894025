"""HTTP endpoints of the built-in authorization server (SMART App Launch 2.x; RFC 6749, 7009, 7662).

Thin: read the form or JSON body, call one function of `fhir_server.authserver`, answer JSON with
`Cache-Control: no-store` (RFC 6749 section 5.1) or one of the HTML pages. Errors of the OAuth
endpoints are RFC 6749 section 5.2 JSON (`error`, `error_description`), not OperationOutcomes.
The discovery documents live under the FHIR base, the endpoints under `/auth/`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from fhir_server.api.bearer import grants
from fhir_server.api.respond import env_base
from fhir_server.auth.tokens import jwks_document
from fhir_server.authserver import discovery, introspect, launch, token
from fhir_server.authserver.env import AUTH_PREFIX, AuthEnv
from fhir_server.authserver.keys import key_ring
from fhir_server.errors import FhirError, OAuthError, TokenInvalid
from fhir_server.store.accounts import Accounts

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
FORM_LIMIT = 64 * 1024
Handler = Callable[[Request], Awaitable[Response]]


def auth_env(request: Request) -> AuthEnv:
    state = request.app.state
    if getattr(state, "accounts", None) is None:
        state.accounts = Accounts(state.store.engine)
    return AuthEnv(state.accounts, grants(request), state.settings, env_base(request))


async def read_pairs(request: Request) -> list[tuple[str, str]]:
    """The pairs of an application/x-www-form-urlencoded body (RFC 6749 appendix B)."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise OAuthError("The body must be application/x-www-form-urlencoded", "invalid_request")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > FORM_LIMIT:
            raise OAuthError("The request body is too large", "invalid_request")
    try:
        return parse_qsl(body.decode("utf-8"), keep_blank_values=True)
    except UnicodeDecodeError:
        raise OAuthError("The form body is not UTF-8", "invalid_request") from None


def single(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """RFC 6749 section 3.1: parameters must not be repeated."""
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise OAuthError(f"Parameter '{name}' is repeated", "invalid_request")
        values[name] = value
    return values


def oauth_json(error: FhirError) -> JSONResponse:
    if isinstance(error, OAuthError):
        code = error.error_code
    elif isinstance(error, TokenInvalid):
        code = "invalid_token"
    else:
        code = {401: "invalid_token", 403: "insufficient_scope"}.get(error.status, "invalid_request")
    body = {"error": code, "error_description": error.message}
    return JSONResponse(body, error.status, {**error.headers, **NO_STORE})


def oauth_endpoint(handler: Handler) -> Handler:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except FhirError as error:
            return oauth_json(error)

    return endpoint


async def smart_configuration(request: Request) -> Response:
    return JSONResponse(discovery.smart_configuration(auth_env(request)))


async def openid_configuration(request: Request) -> Response:
    return JSONResponse(discovery.openid_configuration(auth_env(request)))


async def jwks(request: Request) -> Response:
    env = auth_env(request)
    keys = await run_in_threadpool(lambda: (key_ring(env.grants).current(), key_ring(env.grants).public())[1])
    return JSONResponse(jwks_document(keys), headers={"Cache-Control": "public, max-age=300"})


async def token_endpoint(request: Request) -> Response:
    form = single(await read_pairs(request))
    env = auth_env(request)
    answer = await run_in_threadpool(token.token, env, form, request.headers.get("authorization"))
    return JSONResponse(answer, headers=NO_STORE)


async def introspect_endpoint(request: Request) -> Response:
    form = single(await read_pairs(request))
    env = auth_env(request)
    answer = await run_in_threadpool(introspect.introspect, env, form, request.headers.get("authorization"))
    return JSONResponse(answer, headers=NO_STORE)


async def revoke_endpoint(request: Request) -> Response:
    form = single(await read_pairs(request))
    env = auth_env(request)
    await run_in_threadpool(introspect.revoke, env, form, request.headers.get("authorization"))
    return Response(b"", 200, NO_STORE)


async def launch_endpoint(request: Request) -> Response:
    raw = await request.body()
    if len(raw) > FORM_LIMIT:
        raise OAuthError("The request body is too large", "invalid_request")
    try:
        body: Any = json.loads(raw or b"null")
    except ValueError:
        raise OAuthError("The body must be JSON", "invalid_request") from None
    env = auth_env(request)
    answer = await run_in_threadpool(launch.create_launch, env, request.headers.get("authorization"), body)
    return JSONResponse(answer, headers=NO_STORE)


def routes(base: str) -> list[Route]:
    return [
        Route(f"{base}/.well-known/smart-configuration", smart_configuration, methods=["GET"]),
        Route(f"{base}/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route(f"{AUTH_PREFIX}/jwks", jwks, methods=["GET"]),
        Route(f"{AUTH_PREFIX}/token", oauth_endpoint(token_endpoint), methods=["POST"]),
        Route(f"{AUTH_PREFIX}/introspect", oauth_endpoint(introspect_endpoint), methods=["POST"]),
        Route(f"{AUTH_PREFIX}/revoke", oauth_endpoint(revoke_endpoint), methods=["POST"]),
        Route(f"{AUTH_PREFIX}/launch", oauth_endpoint(launch_endpoint), methods=["POST"]),
    ]
