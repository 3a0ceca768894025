"""`--as clinic`: the phases sent as a clinic's backend service instead of the local operator.

In the benchmark database, a clinic (admin/resources.py) and a backend-service client bound to
it, allowed `system/*.cruds`, with a fresh RS384 key pair (as tests/integration/oauth_helpers.py
does); then access tokens over HTTP from the running server: the client_credentials grant with a
private_key_jwt assertion (SMART backend-services.html) at the token endpoint the server's
`.well-known/smart-configuration` names.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from joserfc import jwt
from joserfc.jwk import RSAKey

from bench.httpclient import Connection, build_request

SCOPE = "system/*.cruds"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@dataclass(frozen=True)
class BackendService:
    client_id: str
    key: RSAKey
    clinic: str


def register(database_url: str) -> BackendService:
    """A new clinic and its backend-service client, written straight to the benchmark database."""
    from fhir_server.admin.host import open_store
    from fhir_server.admin.resources import create_clinic
    from fhir_server.authserver import admin
    from fhir_server.settings import Settings
    from fhir_server.store.accounts import Accounts

    settings = Settings(database_url=database_url)  # the server's other settings come from the same env
    store = open_store(settings)
    try:
        clinic = create_clinic(store, settings, "Benchmark clinic")
        key = RSAKey.generate_key(2048, parameters={"kid": uuid.uuid4().hex})
        public = {**key.as_dict(private=False), "alg": "RS384"}
        client, _ = admin.create_client(
            Accounts(store.engine),
            name="Benchmark backend service",
            kind="backend-service",
            scopes=[SCOPE],
            jwks={"keys": [public]},
            clinic=clinic,
        )
    finally:
        store.engine.dispose()
    return BackendService(client.client_id, key, clinic)


async def access_token(port: int, service: BackendService) -> str:
    """A fresh access token (it lives FHIR_ACCESS_TOKEN_SECONDS, 10 minutes by default)."""
    host = f"127.0.0.1:{port}"
    connection = await Connection.open("127.0.0.1", port)
    try:
        found = await connection.request(build_request("GET", "/fhir/.well-known/smart-configuration", host))
        token_url = json.loads(found.body)["token_endpoint"]
        now = int(time.time())
        claims = {"iss": service.client_id, "sub": service.client_id, "aud": token_url}
        claims.update(exp=now + 240, jti=uuid.uuid4().hex)
        header = {"alg": "RS384", "kid": service.key.kid, "typ": "JWT"}
        form = {
            "grant_type": "client_credentials",
            "scope": SCOPE,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": jwt.encode(header, claims, service.key, algorithms=["RS384"]),
        }
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        request = build_request("POST", urlsplit(token_url).path, host, urlencode(form).encode(), headers)
        answer = await connection.request(request)
    finally:
        await connection.close()
    if answer.status != 200:
        problem = answer.body[:300].decode(errors="replace")
        raise RuntimeError(f"the token endpoint answered HTTP {answer.status}: {problem}")
    return str(json.loads(answer.body)["access_token"])
