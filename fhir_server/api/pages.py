"""Server-rendered HTML5 pages of the authorization flow: login, second factor, clinic choice,
patient picker, approval and errors (SMART App Launch 2.x app-launch.html#obtain-authorization-code).

Plain forms that work without JavaScript or external assets; every input has a label; every
value is escaped (`html.escape`). Every form carries the request id, the step and the request's
CSRF token; the responses forbid framing and restrict what the page may load or post to.
"""

from __future__ import annotations

import re
from html import escape

from starlette.responses import HTMLResponse

from fhir_server.authserver.authorize import ErrorPage, Page

CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
}
INTERACT_PATH = "/auth/interact"
_ORIGIN = re.compile(r"^https?://[A-Za-z0-9.\-\[\]:]+$")  # nothing that could extend the CSP

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:2rem auto;padding:0 1rem;color:#1a1a1a}"
    "label{display:block;margin:.75rem 0 .25rem}input[type=email],input[type=password],input[type=text]"
    "{width:100%;padding:.5rem;font-size:1rem;box-sizing:border-box}button{margin-top:1rem;padding:.5rem 1rem;"
    "font-size:1rem}.error{color:#a00000;font-weight:bold}fieldset{border:1px solid #888;margin:1rem 0}"
    ".choice label{display:inline;margin:0 0 0 .4rem}.choice{margin:.4rem 0}"
)

_TITLES = {
    "login": "Sign in",
    "mfa": "Second factor",
    "clinic": "Choose a clinic",
    "patient": "Choose a patient",
    "approve": "Allow access",
}


def _document(title: str, body: str) -> str:
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{escape(title)}</h1>{body}</main></body></html>"
    )


def _hidden(page: Page) -> str:
    return (
        f'<input type="hidden" name="request" value="{escape(page.request_id)}">'
        f'<input type="hidden" name="step" value="{escape(page.step)}">'
        f'<input type="hidden" name="csrf" value="{escape(page.csrf)}">'
    )


def _form(page: Page, inner: str, form_id: str | None = None) -> str:
    identifier = f' id="{escape(form_id)}"' if form_id else ""
    return f'<form method="post" action="{INTERACT_PATH}"{identifier}>{_hidden(page)}{inner}</form>'


def _text(name: str, label: str, kind: str = "text", extra: str = "") -> str:
    return f'<label for="{name}">{escape(label)}</label><input id="{name}" name="{name}" type="{kind}" {extra}>'


def _login(page: Page) -> str:
    fields = _text("email", "Email", "email", 'autocomplete="username" required autofocus')
    fields += _text("password", "Password", "password", 'autocomplete="current-password" required')
    return _form(page, fields + '<button type="submit" id="sign-in">Sign in</button>')


def _mfa(page: Page) -> str:
    field = _text(
        "code",
        "Six-digit code from your authenticator app",
        "text",
        'inputmode="numeric" pattern="[0-9]{6}" autocomplete="one-time-code" required autofocus',
    )
    return _form(page, field + '<button type="submit" id="verify">Verify</button>')


def _radios(name: str, legend: str, choices: tuple[tuple[str, str], ...]) -> str:
    rows = "".join(
        f'<div class="choice"><input type="radio" id="{name}-{i}" name="{name}" value="{escape(value)}"'
        f'{" checked" if i == 0 else ""}><label for="{name}-{i}">{escape(label)}</label></div>'
        for i, (value, label) in enumerate(choices)
    )
    return f"<fieldset><legend>{escape(legend)}</legend>{rows}</fieldset>"


def _clinic(page: Page) -> str:
    return _form(page, _radios("clinic", "Clinic and role", page.choices) + '<button type="submit">Continue</button>')


def _patient(page: Page) -> str:
    choose = ""
    if page.choices:
        choose = _form(
            page,
            _radios("patient", "Patient", page.choices) + '<button type="submit" id="choose">'
            "Continue with this patient</button>",
            "choose-patient",
        )
    elif page.query:
        choose = f"<p>No patient's name starts with “{escape(page.query)}”.</p>"
    if page.choices and not page.query:
        return choose  # a patient user's own list: no search
    search = _text("name", "Patient name", "text", f'value="{escape(page.query)}" required')
    return _form(page, search + '<button type="submit" id="search">Search</button>', "search-patient") + choose


def _approve(page: Page) -> str:
    rows = "".join(
        f'<div class="choice"><input type="checkbox" id="scope-{i}" name="scope" value="{escape(scope)}" checked>'
        f'<label for="scope-{i}"><code>{escape(scope)}</code></label></div>'
        for i, scope in enumerate(page.scopes)
    )
    intro = f"<p><strong>{escape(page.client_name)}</strong> asks for this access. Untick what you do not allow.</p>"
    buttons = (
        '<button type="submit" name="decision" value="approve" id="approve">Allow</button> '
        '<button type="submit" name="decision" value="deny" id="deny">Deny</button>'
    )
    return intro + _form(page, f"<fieldset><legend>Permissions</legend>{rows}</fieldset>{buttons}")


_BODIES = {"login": _login, "mfa": _mfa, "clinic": _clinic, "patient": _patient, "approve": _approve}


def render(page: Page, headers: dict[str, str] | None = None) -> HTMLResponse:
    body = f"<p>for <strong>{escape(page.client_name)}</strong></p>" if page.step != "approve" else ""
    if page.error:
        body += f'<p class="error" role="alert" id="error">{escape(page.error)}</p>'
    body += _BODIES[page.step](page)
    # The last step redirects to the client: its origin must be a permitted form target.
    origin = page.redirect_origin if _ORIGIN.match(page.redirect_origin) else ""
    csp = CSP.replace("form-action 'self'", f"form-action 'self' {origin}") if origin else CSP
    merged = {**SECURITY_HEADERS, "Content-Security-Policy": csp, **(headers or {})}
    return HTMLResponse(_document(_TITLES[page.step], body), page.status, merged)


def render_error(error: ErrorPage) -> HTMLResponse:
    body = f'<p class="error" role="alert" id="error">{escape(error.message)}</p>'
    return HTMLResponse(_document("Cannot continue", body), error.status, dict(SECURITY_HEADERS))
