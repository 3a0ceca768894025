"""The single OperationOutcome handler: every error leaves the server as an OperationOutcome.

No stack trace or SQL reaches a client; unexpected failures are logged with the request id and
answered with a generic outcome naming that id.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from fhir_server.api.formats import DEFAULT, render
from fhir_server.api.respond import negotiated
from fhir_server.errors import (
    FhirError,
    Internal,
    Invalid,
    MethodNotAllowed,
    NotFound,
    TooLarge,
    Unavailable,
)

log = logging.getLogger("fhir_server.errors")


def _render(request: Request, error: FhirError) -> Response:
    try:
        chosen = negotiated(request)
    except FhirError:
        chosen = DEFAULT
    return Response(render(error.to_outcome(), chosen), error.status, error.headers, chosen.content_type)


def _from_http(exc: HTTPException) -> FhirError:
    if exc.status_code == 404:
        return NotFound("No such endpoint", "endpoint-unknown")
    if exc.status_code == 405:
        return MethodNotAllowed("This method is not allowed on this URL", "method-not-allowed")
    if exc.status_code == 413:
        return TooLarge("The request is too large", "body-too-large")
    return Invalid(str(exc.detail), "http-error")


def install(app: FastAPI) -> None:
    @app.exception_handler(FhirError)
    async def fhir_error(request: Request, exc: FhirError) -> Response:
        return _render(request, exc)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Response:
        return _render(request, _from_http(exc))

    @app.exception_handler(RequestValidationError)
    async def request_error(request: Request, exc: RequestValidationError) -> Response:
        return _render(request, Invalid("The request is malformed", "request-malformed"))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        request_id = getattr(request.state, "request_id", "-")
        # This handler runs outside RequestLogMiddleware (Starlette's ServerErrorMiddleware is
        # outermost), so the request id header is added here.
        headers = {"X-Request-ID": request_id}
        if _is_database_down(exc):
            log.error("database unavailable", extra={"request_id": request_id})
            return _render(
                request, Unavailable("The database is not reachable", "database-unavailable", headers=headers)
            )
        log.exception("unexpected error", extra={"request_id": request_id})
        return _render(request, Internal(f"Internal error (request {request_id})", "internal-error", headers=headers))


def _is_database_down(exc: Exception) -> bool:
    return type(exc).__name__ == "OperationalError"
