"""HTTP side of the authorization endpoint (RFC 6749 section 4.1.1, SMART `authorize-post`) and
of its interactive steps: cookies binding the browser, CSRF checks and redirects.

`GET|POST /auth/authorize` validates and starts a request and shows the login page with an
HttpOnly SameSite=Lax cookie bound to it; every step posts to `/auth/interact` with the request
id, the step and the CSRF token; the last step answers 303 to the client's redirect URI.
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from fhir_server.api.oauth import auth_env, read_pairs
from fhir_server.api.pages import INTERACT_PATH, SECURITY_HEADERS, render, render_error
from fhir_server.authserver import authorize, steps
from fhir_server.authserver.authorize import REQUEST_SECONDS, ErrorPage, Page, Redirect, Started
from fhir_server.authserver.env import AUTH_PREFIX
from fhir_server.errors import OAuthError


def cookie_name(request_id: str) -> str:
    return f"fhir_authz_{request_id}"


def _answer(outcome: Page | Redirect | ErrorPage) -> Response:
    if isinstance(outcome, Redirect):
        return RedirectResponse(outcome.url, 303, headers=dict(SECURITY_HEADERS))
    if isinstance(outcome, ErrorPage):
        return render_error(outcome)
    return render(outcome)


async def authorize_endpoint(request: Request) -> Response:
    if request.method == "POST":
        try:
            pairs = await read_pairs(request)
        except OAuthError as error:
            return render_error(ErrorPage(error.message))
    else:
        pairs = list(request.query_params.multi_items())
    names = [name for name, _ in pairs]
    if len(names) != len(set(names)):
        return render_error(ErrorPage("A request parameter is repeated (RFC 6749 section 3.1)."))
    env = auth_env(request)
    outcome = await run_in_threadpool(authorize.start, env, dict(pairs))
    if not isinstance(outcome, Started):
        return _answer(outcome)
    response = render(outcome.page)
    response.set_cookie(
        cookie_name(outcome.request_id),
        outcome.binding,
        max_age=REQUEST_SECONDS,
        path=AUTH_PREFIX,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )
    return response


async def interact_endpoint(request: Request) -> Response:
    env = auth_env(request)
    if request.method == "GET":
        request_id = request.query_params.get("request", "")
        pending = await run_in_threadpool(
            authorize.load, env, request_id, request.cookies.get(cookie_name(request_id)), None
        )
        if isinstance(pending, ErrorPage):
            return render_error(pending)
        return _answer(await run_in_threadpool(steps.advance, env, pending))
    try:
        pairs = await read_pairs(request)
    except OAuthError as error:
        return render_error(ErrorPage(error.message))
    fields = dict(pairs)
    request_id = fields.get("request", "")
    binding = request.cookies.get(cookie_name(request_id))
    pending = await run_in_threadpool(authorize.load, env, request_id, binding, fields.get("csrf", ""))
    if isinstance(pending, ErrorPage):
        return render_error(pending)
    outcome = await run_in_threadpool(steps.submit, env, pending, fields.get("step", ""), pairs)
    response = _answer(outcome)
    if isinstance(outcome, Redirect):
        response.delete_cookie(cookie_name(request_id), path=AUTH_PREFIX)
    return response


def routes() -> list[Route]:
    return [
        Route(f"{AUTH_PREFIX}/authorize", authorize_endpoint, methods=["GET", "POST"]),
        Route(INTERACT_PATH, interact_endpoint, methods=["GET", "POST"]),
    ]
