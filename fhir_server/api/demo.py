"""A tiny server-side SMART app under `/demo/` for trying the server (issue 4, demo): it starts a
standalone launch with PKCE S256 (SMART App Launch 2.x app-launch.html), exchanges the code on
its callback and shows the patient's name and Observations read with the access token.

It is an ordinary OAuth client of this server: it talks to the token endpoint and the FHIR API
over HTTP, and only knows the public `demo-app` client registered by the demo set-up.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from html import escape
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from fhir_server.api.pages import SECURITY_HEADERS
from fhir_server.api.respond import env_base

CLIENT_ID = "demo-app"
COOKIE = "demo_session"
SCOPES = {
    "patient": "openid fhirUser launch/patient patient/*.rs offline_access",
    "clinician": "openid fhirUser launch/patient user/*.rs",
}


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )
    return HTMLResponse(document, status, dict(SECURITY_HEADERS))


def _origin(request: Request) -> str:
    return env_base(request).removesuffix(request.app.state.settings.base_path)


async def home(request: Request) -> Response:
    links = "".join(
        f'<li><a id="start-{who}" href="/demo/start?as={who}">Sign in as a {who} (standalone launch)</a></li>'
        for who in SCOPES
    )
    return _page("SMART demo app", f"<p>A SMART on FHIR app of this server.</p><ul>{links}</ul>")


async def start(request: Request) -> Response:
    who = request.query_params.get("as", "patient")
    verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    origin = _origin(request)
    params = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": f"{origin}/demo/callback",
        "scope": SCOPES.get(who, SCOPES["patient"]),
        "state": state,
        "aud": env_base(request),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    response = RedirectResponse(f"{origin}/auth/authorize?{urlencode(params)}", 303)
    response.set_cookie(COOKIE, f"{state}.{verifier}", max_age=900, path="/demo", httponly=True, samesite="lax")
    return response


async def callback(request: Request) -> Response:
    params = request.query_params
    if params.get("error"):
        return _page(
            "Not authorized", f"<p>{escape(params['error'])}: {escape(params.get('error_description', ''))}</p>"
        )
    state, _, verifier = request.cookies.get(COOKIE, "").partition(".")
    if not state or not secrets.compare_digest(state, params.get("state", "")):
        return _page("Not authorized", "<p>The state does not match this browser's sign-in.</p>", 400)
    origin, base = _origin(request), env_base(request)
    form = {
        "grant_type": "authorization_code",
        "code": params.get("code", ""),
        "client_id": CLIENT_ID,
        "redirect_uri": f"{origin}/demo/callback",
        "code_verifier": verifier,
    }
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(f"{origin}/auth/token", data=form)
        if answer.status_code != 200:
            return _page("Token exchange failed", f"<pre>{escape(answer.text)}</pre>", 502)
        tokens = answer.json()
        body = await _patient_summary(http, base, tokens)
    response = _page("Signed in", body)
    response.delete_cookie(COOKIE, path="/demo")
    return response


async def _patient_summary(http: httpx.AsyncClient, base: str, tokens: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/fhir+json"}
    granted = f"<p>Granted scopes: <code>{escape(tokens.get('scope', ''))}</code></p>"
    patient_id = tokens.get("patient")
    if not patient_id:
        return granted + "<p>No patient in context.</p>"
    patient = (await http.get(f"{base}/Patient/{patient_id}", headers=headers)).json()
    found = await http.get(f"{base}/Observation", params={"subject": f"Patient/{patient_id}"}, headers=headers)
    rows = "".join(_observation_row(entry.get("resource", {})) for entry in found.json().get("entry", []))
    name = " ".join(
        [*(patient.get("name") or [{}])[0].get("given", []), (patient.get("name") or [{}])[0].get("family", "")]
    ).strip()
    table = f"<table><tr><th>Observation</th><th>Value</th></tr>{rows}</table>"
    return f'{granted}<h2 id="patient-name">{escape(name)}</h2>{table}'


def _observation_row(resource: dict[str, Any]) -> str:
    label = resource.get("code", {}).get("text", "")
    quantity = resource.get("valueQuantity", {})
    value = f"{quantity.get('value', '')} {quantity.get('unit', '')}".strip()
    return f"<tr><td>{escape(str(label))}</td><td>{escape(value)}</td></tr>"


def routes() -> list[Route]:
    return [
        Route("/demo/", home, methods=["GET"]),
        Route("/demo/start", start, methods=["GET"]),
        Route("/demo/callback", callback, methods=["GET"]),
    ]
