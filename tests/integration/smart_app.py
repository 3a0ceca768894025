"""A tiny SMART app for the browser suites, served by the test on its own port (SMART App Launch
2.x app-launch.html). It knows nothing of the server but the `iss` it is given:

- `/` (standalone launch): a "Connect" link to `/launch?iss=...` with the FHIR base it is set up for;
- `/launch?iss=...[&launch=...]` (an EHR opens it with both): discovery through
  `{iss}/.well-known/smart-configuration`, then a redirect to its `authorization_endpoint` with
  PKCE S256, `state`, `aud` = iss, and scope `launch` (EHR) or `launch/patient` (standalone);
- `/callback`: checks `state`, exchanges the code at the discovered `token_endpoint`, reads the
  patient in context and its Observations from `iss` with the access token, and shows them.

Server-side, like the `/demo/` app: the server sends no CORS headers, so the browser only
navigates; the app's own HTTP calls carry the tokens. Sessions live in memory, keyed by state.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from dataclasses import dataclass, field
from html import escape
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

STANDALONE_SCOPE = "launch/patient openid fhirUser patient/*.rs"
EHR_SCOPE = "launch openid fhirUser user/*.rs"


@dataclass
class AppConfig:
    """Filled in once the app's port (hence its redirect URI) is known and the client registered."""

    origin: str = ""
    client_id: str = ""
    standalone_iss: str = ""
    sessions: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def redirect_uri(self) -> str:
        return f"{self.origin}/callback"


def _page(title: str, body: str, status: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title></head>'
        f'<body><h1 id="status">{escape(title)}</h1>{body}</body></html>',
        status,
    )


def _claims(id_token: str | None) -> dict[str, Any]:
    """The id_token's claims, shown, not trusted (the app only displays fhirUser)."""
    if not id_token:
        return {}
    payload = id_token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


def make_app(config: AppConfig) -> Starlette:
    async def home(request: Request) -> Response:
        href = escape(f"/launch?{urlencode({'iss': config.standalone_iss})}")
        return _page("Test SMART app", f'<a id="connect" href="{href}">Connect to my health record</a>')

    async def launch(request: Request) -> Response:
        iss, launch_id = request.query_params.get("iss", ""), request.query_params.get("launch")
        async with httpx.AsyncClient(timeout=30) as http:
            discovered = await http.get(f"{iss}/.well-known/smart-configuration")
        if discovered.status_code != 200:
            return _page("Discovery failed", f"<pre id='error'>{escape(discovered.text)}</pre>", 502)
        smart = discovered.json()
        needed = "launch-ehr" if launch_id else "launch-standalone"
        if needed not in smart.get("capabilities", []):
            return _page("Discovery failed", f"<p id='error'>the server lacks {needed}</p>", 502)
        verifier, state = secrets.token_urlsafe(48), secrets.token_urlsafe(16)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        config.sessions[state] = {"iss": iss, "token_endpoint": smart["token_endpoint"], "verifier": verifier}
        params = {
            "response_type": "code",
            "client_id": config.client_id,
            "redirect_uri": config.redirect_uri,
            "scope": EHR_SCOPE if launch_id else STANDALONE_SCOPE,
            "state": state,
            "aud": iss,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        if launch_id:
            params["launch"] = launch_id
        return RedirectResponse(f"{smart['authorization_endpoint']}?{urlencode(params)}", 302)

    async def callback(request: Request) -> Response:
        params = request.query_params
        if params.get("error"):
            return _page("Not authorized", f"<p id='error'>{escape(params['error'])}</p>", 400)
        session = config.sessions.pop(params.get("state", ""), None)
        if session is None:
            return _page("Not authorized", "<p id='error'>unknown state</p>", 400)
        form = {
            "grant_type": "authorization_code",
            "code": params.get("code", ""),
            "redirect_uri": config.redirect_uri,
            "client_id": config.client_id,
            "code_verifier": session["verifier"],
        }
        async with httpx.AsyncClient(timeout=30) as http:
            answer = await http.post(session["token_endpoint"], data=form)
            if answer.status_code != 200:
                return _page("Token exchange failed", f"<pre id='error'>{escape(answer.text)}</pre>", 502)
            return _page("Connected", await _summary(http, session["iss"], answer.json()))

    return Starlette(
        routes=[
            Route("/", home),
            Route("/launch", launch),
            Route("/callback", callback),
        ]
    )


async def _summary(http: httpx.AsyncClient, iss: str, tokens: dict[str, Any]) -> str:
    headers = {"Authorization": f"Bearer {tokens['access_token']}", "Accept": "application/fhir+json"}
    patient_id = str(tokens.get("patient", ""))
    read = await http.get(f"{iss}/Patient/{patient_id}", headers=headers)
    found = await http.get(f"{iss}/Observation", params={"patient": patient_id}, headers=headers)
    name = (read.json().get("name") or [{}])[0] if read.status_code == 200 else {}
    shown = " ".join([*name.get("given", []), name.get("family", "")]).strip()
    items = ""
    for entry in found.json().get("entry", []) if found.status_code == 200 else []:
        resource = entry["resource"]
        quantity = resource.get("valueQuantity", {})
        items += (
            f"<li>{escape(resource['code']['text'])}: {quantity.get('value')} {escape(quantity.get('unit', ''))}</li>"
        )
    facts = {
        "context-patient": patient_id,
        "patient-name": shown,
        "scope": str(tokens.get("scope", "")),
        "fhir-user": str(_claims(tokens.get("id_token")).get("fhirUser", "")),
        "banner": json.dumps(tokens.get("need_patient_banner")),
        "reads": f"{read.status_code} {found.status_code}",
    }
    rows = "".join(f'<dt>{key}</dt><dd id="{key}">{escape(value)}</dd>' for key, value in facts.items())
    return f'<dl>{rows}</dl><ul id="observations">{items}</ul>'
