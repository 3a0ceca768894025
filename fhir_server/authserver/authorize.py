"""The authorization endpoint (RFC 6749 section 4.1.1; SMART App Launch 2.x
app-launch.html#obtain-authorization-code): validate the request, then hand over to the login,
second-factor, clinic, patient-picker and approval steps (authserver/steps.py).

An unknown client or an unregistered redirect URI answers an error page and never redirects
(RFC 6749 section 4.1.2.1); every other problem is redirected to the client with `error` and
`state`. `aud` must be this server's FHIR base; PKCE S256 is required for public clients and
accepted from all, `plain` never (RFC 7636, SMART 2.x). The pending request lives in the
database, bound to the browser by a cookie whose digest it keeps, and carries a CSRF token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from fhir_server.auth import codes
from fhir_server.auth import scopes as scope_syntax
from fhir_server.authserver.env import AuthEnv
from fhir_server.store.grants import PendingRequest

REQUEST_SECONDS = 15 * 60


@dataclass(frozen=True)
class Redirect:
    url: str


@dataclass(frozen=True)
class ErrorPage:
    message: str
    status: int = 400


@dataclass(frozen=True)
class Page:
    """One interaction step for the browser: `step` is login, mfa, clinic, patient or approve."""

    step: str
    request_id: str
    csrf: str
    client_name: str
    error: str | None = None
    choices: tuple[tuple[str, str], ...] = ()
    scopes: tuple[str, ...] = ()
    query: str = ""
    status: int = 200
    # Where the final form submission redirects (the client's origin), for CSP form-action.
    redirect_origin: str = ""


@dataclass(frozen=True)
class Started:
    request_id: str
    binding: str  # the cookie value that ties the browser to the request
    page: Page
    extra: dict[str, Any] = field(default_factory=dict)


def redirect_with(uri: str, params: dict[str, str | None]) -> Redirect:
    """`uri` with `params` added to its query, keeping the query it had (RFC 6749 section 3.1.2)."""
    parts = urlsplit(uri)
    query = parse_qsl(parts.query, keep_blank_values=True)
    query += [(name, value) for name, value in params.items() if value is not None]
    return Redirect(urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), "")))


def error_redirect(payload: dict[str, Any], error: str, description: str) -> Redirect:
    return redirect_with(
        payload["redirect_uri"], {"error": error, "error_description": description, "state": payload.get("state")}
    )


def origin_of(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _same_base(aud: str, base: str) -> bool:
    return aud.rstrip("/") == base.rstrip("/")


def start(env: AuthEnv, params: dict[str, str]) -> Started | Redirect | ErrorPage:
    client = env.accounts.client(params.get("client_id", ""))
    if client is None or client.kind == "backend-service":
        return ErrorPage("Unknown client: the application is not registered here.")
    redirect_uri = params.get("redirect_uri")
    if redirect_uri is None and len(client.redirect_uris) == 1:
        redirect_uri = client.redirect_uris[0]
    if redirect_uri is None or redirect_uri not in client.redirect_uris:
        return ErrorPage("The redirect URI is not registered for this application.")
    payload: dict[str, Any] = {
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": params.get("state"),
    }
    problem = _problem(env, params, client.kind == "public", client.scopes)
    if problem is not None:
        return error_redirect(payload, *problem)
    scopes = scope_syntax.split(params.get("scope"))
    payload.update(
        scopes=scopes,
        code_challenge=params.get("code_challenge"),
        nonce=params.get("nonce"),
        launch=None,
    )
    if params.get("launch") and "launch" in scopes:
        launch = env.grants.launch(params["launch"])
        if launch is None:
            return error_redirect(payload, "invalid_request", "The launch id is unknown or has expired")
        payload["launch"] = {"clinic": launch.clinic_id, "patient": launch.patient_id, "encounter": launch.encounter_id}
    request_id, binding, csrf = codes.new_token(24), codes.new_token(32), codes.new_token(24)
    pending = PendingRequest(request_id, codes.digest(binding), csrf, client.client_id, payload)
    env.grants.save_request(pending, int(time.time()) + REQUEST_SECONDS)
    page = Page("login", request_id, csrf, client.name, redirect_origin=origin_of(redirect_uri))
    return Started(request_id, binding, page)


def _problem(env: AuthEnv, params: dict[str, str], public: bool, allowed: tuple[str, ...]) -> tuple[str, str] | None:
    """The (error, description) that makes this request unacceptable, if any."""
    if params.get("response_type") != "code":
        return "unsupported_response_type", "response_type must be code"
    if not params.get("state"):
        return "invalid_request", "state is required"
    aud = params.get("aud")
    if not aud or not _same_base(aud, env.fhir_base):
        return "invalid_request", f"aud must be this server's FHIR base URL {env.fhir_base}"
    challenge, method = params.get("code_challenge"), params.get("code_challenge_method")
    if challenge is not None or method is not None:
        if method != "S256":
            return "invalid_request", "code_challenge_method must be S256"
        if not challenge or not codes.valid_challenge(challenge):
            return "invalid_request", "code_challenge must be a base64url SHA-256 digest"
    elif public:
        return "invalid_request", "PKCE (code_challenge with S256) is required for public clients"
    scopes = scope_syntax.split(params.get("scope"))
    if not scopes:
        return "invalid_scope", "scope is required"
    refused = scope_syntax.refused(scopes, allowed)
    if refused:
        return "invalid_scope", f"Scopes not allowed for this application: {' '.join(refused)}"
    return None


def load(env: AuthEnv, request_id: str, binding: str | None, csrf: str | None) -> PendingRequest | ErrorPage:
    """The pending request, if this browser owns it and (for a POST) sent its CSRF token."""
    pending = env.grants.load_request(request_id) if request_id else None
    if pending is None:
        return ErrorPage("This sign-in request has expired or is unknown. Start again from the application.")
    if not binding or not codes.same(codes.digest(binding), pending.binding_hash):
        return ErrorPage("This sign-in request belongs to another browser session.", 403)
    if csrf is not None and not codes.same(csrf, pending.csrf):
        return ErrorPage("The form is stale or forged (CSRF token mismatch). Start again.", 403)
    return pending
