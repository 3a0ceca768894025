"""The interactive steps of an authorization request (SMART App Launch 2.x
app-launch.html#obtain-authorization-code, scopes-and-launch-context.html).

Login (email and password; five failures lock the account for fifteen minutes), a TOTP second
factor (RFC 6238; required for platform admins, for others when enrolled; a step is never
accepted twice), the clinic when a member has several, the patient picker for `launch/patient`
(patients: themselves and their dependents; clinicians: a name search), and the approval page
where the user may untick scopes. The last step issues a single-use code bound to the client,
redirect URI, PKCE challenge and grant, valid 60 seconds (RFC 6749 section 4.1.2).
"""

from __future__ import annotations

import time
from typing import Any

from fhir_server.access import AccessContext
from fhir_server.auth import codes, passwords, totp
from fhir_server.auth import scopes as scope_syntax
from fhir_server.authserver.authorize import Page, Redirect, error_redirect, origin_of, redirect_with
from fhir_server.authserver.env import AuthEnv
from fhir_server.authserver.issue import Grant
from fhir_server.authserver.people import clinic_patients, clinician_context, patient_choices, search_patients
from fhir_server.store.accounts import Account
from fhir_server.store.grants import PendingRequest

CODE_SECONDS = 60
Form = list[tuple[str, str]]


def _page(env: AuthEnv, pending: PendingRequest, step: str, **values: Any) -> Page:
    client = env.accounts.client(pending.client_id)
    name = client.name if client else pending.client_id
    origin = origin_of(pending.payload["redirect_uri"])
    return Page(step, pending.id, pending.csrf, name, redirect_origin=origin, **values)


def _account(env: AuthEnv, payload: dict[str, Any]) -> Account | None:
    return env.accounts.by_id(payload["account_id"]) if payload.get("account_id") else None


def advance(env: AuthEnv, pending: PendingRequest) -> Page | Redirect:
    """The page of the first unfinished step, or the final redirect when all are done."""
    payload = pending.payload
    account = _account(env, payload)
    if account is None:
        return _page(env, pending, "login")
    if account.totp_secret and not payload.get("mfa_ok"):
        return _page(env, pending, "mfa")
    if account.kind == "clinic-member" and not payload.get("clinic"):
        return _choose_clinic(env, pending, account)
    if _needs_patient(payload, account) and not payload.get("patient"):
        return _choose_patient(env, pending, account)
    if not payload.get("approved"):
        return _page(env, pending, "approve", scopes=tuple(offered_scopes(payload, account)))
    return _finish(env, pending, account)


def _needs_patient(payload: dict[str, Any], account: Account) -> bool:
    scopes = payload["scopes"]
    if payload.get("launch"):
        return True  # an EHR launch always carries its patient
    if account.kind == "patient":
        return "launch/patient" in scopes or any(scope_syntax.context_of(s) == "patient" for s in scopes)
    return "launch/patient" in scopes


def offered_scopes(payload: dict[str, Any], account: Account) -> list[str]:
    """The requested scopes this kind of account can hold (never system/*; patients no user/*)."""
    refused = {"system"} | ({"user"} if account.kind == "patient" else set())
    refused |= {"patient"} if account.kind == "platform-admin" else set()
    return [s for s in payload["scopes"] if scope_syntax.context_of(s) not in refused]


def _save(env: AuthEnv, pending: PendingRequest, **changes: Any) -> PendingRequest:
    payload = {**pending.payload, **changes}
    env.grants.update_request(pending.id, payload)
    return PendingRequest(pending.id, pending.binding_hash, pending.csrf, pending.client_id, payload)


def _choose_clinic(env: AuthEnv, pending: PendingRequest, account: Account) -> Page | Redirect:
    memberships = env.accounts.memberships(account.id)
    launch = pending.payload.get("launch")
    if launch:
        memberships = [m for m in memberships if m.clinic_id == launch["clinic"]]
    if not memberships:
        return error_redirect(pending.payload, "access_denied", "The user is not a member of this clinic")
    if len(memberships) == 1:
        pending = _save(env, pending, clinic=memberships[0].clinic_id, role=memberships[0].role)
        return advance(env, pending)
    choices = tuple((f"{m.clinic_id}|{m.role}", f"Organization/{m.clinic_id} as {m.role}") for m in memberships)
    return _page(env, pending, "clinic", choices=choices)


def _choose_patient(env: AuthEnv, pending: PendingRequest, account: Account, query: str = "") -> Page | Redirect:
    launch = pending.payload.get("launch")
    if launch:  # EHR launch: the EHR chose the patient
        pending = _save(env, pending, patient=launch["patient"], encounter=launch.get("encounter"))
        return advance(env, pending)
    if account.kind == "patient":
        choices = patient_choices(env, account)
        if len(choices) == 1:
            return advance(env, _save(env, pending, patient=choices[0][0]))
        if not choices:
            return error_redirect(pending.payload, "access_denied", "No patient record is linked to this account")
        return _page(env, pending, "patient", choices=tuple(choices))
    found = search_patients(env, query, _clinician(pending, account)) if query else []
    return _page(env, pending, "patient", choices=tuple(found), query=query)


def submit(env: AuthEnv, pending: PendingRequest, step: str, form: Form) -> Page | Redirect:
    """Apply one submitted step; a step that is not the current one just shows the current page."""
    current = advance(env, pending)
    if isinstance(current, Redirect) or current.step != step:
        return current
    fields = dict(form)
    if step == "login":
        return _login(env, pending, fields.get("email", ""), fields.get("password", ""))
    account = _account(env, pending.payload)
    assert account is not None
    if step == "mfa":
        return _second_factor(env, pending, account, fields.get("code", ""))
    if step == "clinic":
        return _clinic(env, pending, account, fields.get("clinic", ""))
    if step == "patient":
        return _patient(env, pending, account, fields)
    return _approve(env, pending, account, form)


def _login(env: AuthEnv, pending: PendingRequest, email: str, password: str) -> Page | Redirect:
    account = env.accounts.by_email(email) if email else None
    if account is None:
        passwords.dummy_verify(password)
        return _page(env, pending, "login", error="Wrong email or password.", status=401)
    if account.locked():
        return _page(env, pending, "login", error=_LOCKED, status=401)
    if not passwords.verify(account.password_hash, password):
        locked = env.accounts.record_failure(
            account.id, env.settings.login_max_failures, env.settings.login_lock_seconds
        )
        return _page(env, pending, "login", error=_LOCKED if locked else "Wrong email or password.", status=401)
    if account.kind == "platform-admin" and not account.totp_secret:
        return _page(env, pending, "login", error="A second factor is required but not enrolled.", status=401)
    if not account.totp_secret:
        env.accounts.record_success(account.id)
    return advance(env, _save(env, pending, account_id=account.id))


_LOCKED = "Too many failed attempts: this account is locked for a while. Try again later."


def _second_factor(env: AuthEnv, pending: PendingRequest, account: Account, code: str) -> Page | Redirect:
    assert account.totp_secret is not None
    if account.locked():
        return _page(env, pending, "mfa", error=_LOCKED, status=401)
    step = totp.verify(account.totp_secret, code, account.totp_last_step)
    if step is None or not env.accounts.use_totp_step(account.id, step):
        locked = env.accounts.record_failure(
            account.id, env.settings.login_max_failures, env.settings.login_lock_seconds
        )
        return _page(env, pending, "mfa", error=_LOCKED if locked else "Wrong or already used code.", status=401)
    env.accounts.record_success(account.id)
    return advance(env, _save(env, pending, mfa_ok=True))


def _clinic(env: AuthEnv, pending: PendingRequest, account: Account, choice: str) -> Page | Redirect:
    clinic, _, role = choice.partition("|")
    if not any(m.clinic_id == clinic and m.role == role for m in env.accounts.memberships(account.id)):
        return _page(env, pending, "clinic", error="Choose one of the listed clinics.", status=400)
    return advance(env, _save(env, pending, clinic=clinic, role=role))


def _patient(env: AuthEnv, pending: PendingRequest, account: Account, fields: dict[str, str]) -> Page | Redirect:
    chosen = fields.get("patient", "")
    if not chosen:
        return _choose_patient(env, pending, account, fields.get("name", "").strip())
    if account.kind == "patient":
        allowed = {value for value, _ in patient_choices(env, account)}
    else:
        allowed = set(clinic_patients(env, _clinician(pending, account), [("_id", chosen)]))
    if chosen not in allowed:
        return _page(env, pending, "patient", error="Choose one of the listed patients.", status=400)
    return advance(env, _save(env, pending, patient=chosen))


def _clinician(pending: PendingRequest, account: Account) -> AccessContext:
    return clinician_context(account.id, pending.payload.get("clinic"), pending.payload.get("role"))


def _approve(env: AuthEnv, pending: PendingRequest, account: Account, form: Form) -> Page | Redirect:
    if dict(form).get("decision") != "approve":
        env.grants.finish_request(pending.id)
        return error_redirect(pending.payload, "access_denied", "The user denied the request")
    ticked = {value for name, value in form if name == "scope"}
    granted = [scope for scope in offered_scopes(pending.payload, account) if scope in ticked]
    return advance(env, _save(env, pending, approved=True, granted=granted))


def _finish(env: AuthEnv, pending: PendingRequest, account: Account) -> Redirect:
    payload = pending.payload
    if not env.grants.finish_request(pending.id):
        return error_redirect(payload, "invalid_request", "This request was completed already")
    grant = Grant(
        subject=account.id,
        kind=account.kind,
        client_id=pending.client_id,
        scopes=tuple(payload.get("granted", [])),
        clinic=payload.get("clinic"),
        role=payload.get("role"),
        patient=payload.get("patient"),
        encounter=payload.get("encounter"),
        fhir_user=account.fhir_user,
        nonce=payload.get("nonce"),
        need_patient_banner=not payload.get("launch"),
        amr=("pwd", "otp") if payload.get("mfa_ok") else ("pwd",),
    )
    code = codes.new_token()
    stored = {"redirect_uri": payload["redirect_uri"], "code_challenge": payload.get("code_challenge")}
    stored["grant"] = grant.to_payload()
    env.grants.save_code(codes.digest(code), pending.client_id, grant.family, stored, int(time.time()) + CODE_SECONDS)
    return redirect_with(payload["redirect_uri"], {"code": code, "state": payload.get("state")})
