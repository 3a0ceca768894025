"""EHR launch contexts (SMART App Launch 2.x app-launch.html#launch-app-ehr-launch).

A clinic's EHR, holding an access token of one of the clinic's members or of the clinic's backend
service, asks for a launch id bound to a patient (and optionally an encounter) of that clinic
(one the clinic may see, by the access policy); it then opens the app with `iss` and `launch`.
The id is opaque, random and lives five minutes; `authorize` with `launch=<id>` and scope
`launch` puts its patient and encounter into the token response, for members of the same clinic
only.
"""

from __future__ import annotations

import time
from typing import Any

from fhir_server.auth import codes
from fhir_server.authserver.env import AuthEnv
from fhir_server.authserver.keys import check_access_token
from fhir_server.authserver.people import clinic_patients, clinician_context
from fhir_server.errors import Forbidden, Invalid, TokenInvalid
from fhir_server.store.grants import Launch

LAUNCH_SECONDS = 300


def _bare_id(value: Any, resource_type: str, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise Invalid(f"'{name}' must be a {resource_type} id", "launch-invalid")
    bare = value.removeprefix(f"{resource_type}/")
    if "/" in bare or len(bare) > 64:
        raise Invalid(f"'{name}' must be a {resource_type} id", "launch-invalid")
    return bare


def create_launch(env: AuthEnv, authorization: str | None, body: Any) -> dict[str, Any]:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise TokenInvalid("A bearer access token is required", "token-invalid")
    claims = check_access_token(env.grants, authorization[7:].strip(), env.issuer, env.issuer)
    clinic = claims.get("clinic")
    if claims["kind"] not in ("clinic-member", "backend-service") or not clinic:
        raise Forbidden("Only a clinic's members and backend services may create launches", "launch-forbidden")
    if not isinstance(body, dict):
        raise Invalid("The body must be a JSON object {patient, encounter?}", "launch-invalid")
    patient = _bare_id(body.get("patient"), "Patient", "patient")
    encounter = _bare_id(body["encounter"], "Encounter", "encounter") if body.get("encounter") else None
    kind = str(claims["kind"])
    launcher = clinician_context(str(claims["sub"]), str(clinic), claims.get("role"), kind)
    if patient not in clinic_patients(env, launcher, [("_id", patient)]):  # the clinic's patients only
        raise Invalid(f"Patient/{patient} is not a patient this clinic may see", "launch-invalid")
    launch = Launch(codes.new_token(24), str(clinic), patient, encounter)
    env.grants.save_launch(launch, str(claims["sub"]), int(time.time()) + LAUNCH_SECONDS)
    answer: dict[str, Any] = {
        "launch": launch.id,
        "iss": env.issuer,
        "patient": patient,
        "expires_in": LAUNCH_SECONDS,
    }
    if encounter:
        answer["encounter"] = encounter
    return answer
