"""A tiny server-side SMART app under `/demo/` for trying the server (issue 4, demo), both ways
SMART App Launch 2.x (app-launch.html) launches an app:

- standalone: `/demo/start` sends the user to authorize (PKCE S256), the callback exchanges the
  code and shows the patient's name and Observations read with the access token;
- EHR launch: `/demo/ehr` is a stand-in for a clinic's EHR. The clinician signs in to it (an
  ordinary authorization with `user/` scopes), picks a patient, and the EHR asks the server's
  launch endpoint for a launch id with the clinician's token, then opens the app's launch URL
  `/demo/launch?iss=...&launch=...`; the app authorizes with `launch` and gets the patient from
  the token response.

Both are ordinary OAuth clients of this server: they talk to the token and launch endpoints and
the FHIR API over HTTP, and only know the public `demo-app` client registered by the demo set-up.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from html import escape
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from fhir_server.api.pages import SECURITY_HEADERS
from fhir_server.api.respond import env_base

CLIENT_ID = "demo-app"
COOKIE = "demo_session"
EHR_COOKIE = "demo_ehr_token"  # the stand-in EHR's session: its clinician's access token
SCOPES = {
    "patient": "openid fhirUser launch/patient patient/*.rs offline_access",
    "clinician": "openid fhirUser launch/patient user/*.rs",
    "ehr": "openid fhirUser user/*.rs",  # the EHR's own sign-in
    "launch": "openid fhirUser launch user/*.rs",  # the app, launched from the EHR
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
        for who in ("patient", "clinician")
    )
    ehr = '<li><a id="start-ehr" href="/demo/start?as=ehr">Open the demo EHR as the clinician (EHR launch)</a></li>'
    return _page("SMART demo app", f"<p>A SMART on FHIR app of this server.</p><ul>{links}{ehr}</ul>")


async def start(request: Request) -> Response:
    return _authorize(request, request.query_params.get("as", "patient"))


async def launch(request: Request) -> Response:
    """The app's launch URL: an EHR opens it with `iss` and `launch` (app-launch.html#launch-app-ehr-launch).
    This app trusts only its own server as `iss`."""
    iss, launch_id = request.query_params.get("iss", ""), request.query_params.get("launch", "")
    if iss != env_base(request) or not launch_id:
        return _page("Not launched", "<p>This app is launched by its own server's EHR only.</p>", 400)
    return _authorize(request, "launch", launch_id)


def _authorize(request: Request, who: str, launch_id: str | None = None) -> Response:
    who = who if who in SCOPES else "patient"
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
    if launch_id:
        params["launch"] = launch_id
    response = RedirectResponse(f"{origin}/auth/authorize?{urlencode(params)}", 303)
    cookie = f"{state}.{who}.{verifier}"
    response.set_cookie(COOKIE, cookie, max_age=900, path="/demo", httponly=True, samesite="lax")
    return response


async def callback(request: Request) -> Response:
    params = request.query_params
    if params.get("error"):
        return _page(
            "Not authorized", f"<p>{escape(params['error'])}: {escape(params.get('error_description', ''))}</p>"
        )
    state, _, rest = request.cookies.get(COOKIE, "").partition(".")
    who, _, verifier = rest.partition(".")
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
        if who == "ehr":
            response = _page("Demo EHR", await _patient_list(http, base, tokens))
            response.set_cookie(
                EHR_COOKIE, tokens["access_token"], max_age=600, path="/demo", httponly=True, samesite="lax"
            )
        else:
            response = _page("Signed in", await _patient_summary(http, base, tokens))
    response.delete_cookie(COOKIE, path="/demo")
    return response


async def _patient_list(http: httpx.AsyncClient, base: str, tokens: dict[str, Any]) -> str:
    """The EHR's patient list, each with a button that launches the app for that patient."""
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/fhir+json"}
    found = (await http.get(f"{base}/Patient", params={"_count": "20"}, headers=headers)).json()
    rows = []
    for entry in found.get("entry", []):
        patient = entry.get("resource", {})
        name = (patient.get("name") or [{}])[0]
        label = " ".join([*name.get("given", []), name.get("family", "")]).strip() or patient.get("id", "")
        rows.append(
            '<li><form method="post" action="/demo/ehr/launch">'
            f'<input type="hidden" name="patient" value="{escape(patient.get("id", ""))}">'
            f'<button type="submit">Launch the app for {escape(label)}</button></form></li>'
        )
    return f"<p>Signed in to the demo EHR.</p><ul>{''.join(rows)}</ul>"


async def ehr_launch(request: Request) -> Response:
    """The EHR asks the server for a launch id bound to the chosen patient, then opens the app."""
    token = request.cookies.get(EHR_COOKIE, "")
    form = await request.body()
    patient = dict(parse_qsl(form.decode("utf-8", "replace"))).get("patient", "")
    if not token or not patient:
        return _page("Not signed in", '<p><a href="/demo/start?as=ehr">Sign in to the demo EHR</a> first.</p>', 401)
    origin, base = _origin(request), env_base(request)
    async with httpx.AsyncClient(timeout=30) as http:
        answer = await http.post(
            f"{origin}/auth/launch", json={"patient": patient}, headers={"Authorization": f"Bearer {token}"}
        )
    if answer.status_code != 200:
        return _page("Launch refused", f"<pre>{escape(answer.text)}</pre>", 502)
    target = f"{origin}/demo/launch?{urlencode({'iss': base, 'launch': answer.json()['launch']})}"
    return RedirectResponse(target, 303)


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
        Route("/demo/launch", launch, methods=["GET"]),
        Route("/demo/ehr/launch", ehr_launch, methods=["POST"]),
    ]
