"""SQL for OAuth flow state (RFC 6749 sections 4.1 and 6, RFC 7009, RFC 7523 section 3, SMART
App Launch 2.x): signing keys, authorization requests, single-use codes, rotating refresh tokens,
EHR launch contexts, used assertion `jti`s and revoked access tokens.

Single use is enforced by the database: a code or refresh token is spent by a conditional UPDATE
that only one caller can win, and a `jti` by a primary key that only one insert can take.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from fhir_server.auth.tokens import SigningKey
from fhir_server.store.accounts import utcnow
from fhir_server.store.auth_schema import (
    authz_code,
    authz_request,
    launch_context,
    refresh_token,
    revoked_token,
    signing_key,
    used_jti,
)


def at(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC).replace(tzinfo=None)


def epoch(moment: datetime) -> int:
    return int(moment.replace(tzinfo=UTC).timestamp())


@dataclass(frozen=True)
class PendingRequest:
    id: str
    binding_hash: str
    csrf: str
    client_id: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Spent:
    """The outcome of spending a code or refresh token: `ok`, `reused` (spent before) or `unknown`."""

    status: str
    client_id: str = ""
    family: str = ""
    payload: dict[str, Any] | None = None
    expired: bool = False


@dataclass(frozen=True)
class Launch:
    id: str
    clinic_id: str
    patient_id: str
    encounter_id: str | None


class Grants:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # -- signing keys --------------------------------------------------------------------------
    def signing_keys(self) -> list[SigningKey]:
        """Every key, oldest first; the newest signs."""
        with self.engine.connect() as connection:
            rows = connection.execute(select(signing_key).order_by(signing_key.c.created, signing_key.c.kid))
            return [SigningKey(r.kid, r.alg, r.private_pem, epoch(r.created)) for r in rows]

    def add_signing_key(self, key: SigningKey) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(signing_key).values(
                    kid=key.kid, alg=key.alg, private_pem=key.private_pem, created=at(key.created)
                )
            )

    # -- authorization requests ----------------------------------------------------------------
    def save_request(self, request: PendingRequest, expires: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(authz_request).values(
                    id=request.id,
                    binding_hash=request.binding_hash,
                    csrf=request.csrf,
                    client_id=request.client_id,
                    payload=json.dumps(request.payload),
                    expires=at(expires),
                )
            )

    def load_request(self, request_id: str) -> PendingRequest | None:
        query = select(authz_request).where(authz_request.c.id == request_id, authz_request.c.expires > utcnow())
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        if row is None:
            return None
        return PendingRequest(row.id, row.binding_hash, row.csrf, row.client_id, json.loads(row.payload))

    def update_request(self, request_id: str, payload: dict[str, Any]) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(authz_request).where(authz_request.c.id == request_id).values(payload=json.dumps(payload))
            )

    def finish_request(self, request_id: str) -> bool:
        """Delete the request; False when another submission finished it first."""
        with self.engine.begin() as connection:
            return bool(connection.execute(delete(authz_request).where(authz_request.c.id == request_id)).rowcount)

    # -- authorization codes -------------------------------------------------------------------
    def save_code(self, code_hash: str, client_id: str, family: str, payload: dict[str, Any], expires: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(authz_code).values(
                    code_hash=code_hash,
                    client_id=client_id,
                    family=family,
                    used=False,
                    payload=json.dumps(payload),
                    expires=at(expires),
                )
            )

    def spend_code(self, code_hash: str) -> Spent:
        with self.engine.begin() as connection:
            won = connection.execute(
                update(authz_code)
                .where(authz_code.c.code_hash == code_hash, authz_code.c.used.is_(False))
                .values(used=True)
            ).rowcount
            row = connection.execute(select(authz_code).where(authz_code.c.code_hash == code_hash)).first()
        if row is None:
            return Spent("unknown")
        status = "ok" if won == 1 else "reused"
        return Spent(status, row.client_id, row.family, json.loads(row.payload), row.expires <= utcnow())

    # -- refresh tokens ------------------------------------------------------------------------
    def save_refresh(self, token_hash: str, family: str, client_id: str, payload: dict[str, Any], expires: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(refresh_token).values(
                    token_hash=token_hash,
                    family=family,
                    client_id=client_id,
                    state="active",
                    payload=json.dumps(payload),
                    expires=at(expires),
                )
            )

    def spend_refresh(self, token_hash: str) -> Spent:
        """Mark an active refresh token rotated; a rotated one coming back revokes its family."""
        with self.engine.begin() as connection:
            won = connection.execute(
                update(refresh_token)
                .where(refresh_token.c.token_hash == token_hash, refresh_token.c.state == "active")
                .values(state="rotated")
            ).rowcount
            row = connection.execute(select(refresh_token).where(refresh_token.c.token_hash == token_hash)).first()
            if row is not None and won != 1:
                connection.execute(
                    update(refresh_token).where(refresh_token.c.family == row.family).values(state="revoked")
                )
        if row is None:
            return Spent("unknown")
        status = "ok" if won == 1 else "reused"
        return Spent(status, row.client_id, row.family, json.loads(row.payload), row.expires <= utcnow())

    def peek_refresh(self, token_hash: str) -> Spent:
        """A refresh token's state without spending it (introspection)."""
        with self.engine.connect() as connection:
            row = connection.execute(select(refresh_token).where(refresh_token.c.token_hash == token_hash)).first()
        if row is None:
            return Spent("unknown")
        status = "ok" if row.state == "active" else row.state
        return Spent(status, row.client_id, row.family, json.loads(row.payload), row.expires <= utcnow())

    def revoke_family(self, family: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(update(refresh_token).where(refresh_token.c.family == family).values(state="revoked"))

    # -- launch contexts -----------------------------------------------------------------------
    def save_launch(self, launch: Launch, created_by: str, expires: int) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(launch_context).values(
                    id=launch.id,
                    clinic_id=launch.clinic_id,
                    patient_id=launch.patient_id,
                    encounter_id=launch.encounter_id,
                    created_by=created_by,
                    expires=at(expires),
                )
            )

    def launch(self, launch_id: str) -> Launch | None:
        query = select(launch_context).where(launch_context.c.id == launch_id, launch_context.c.expires > utcnow())
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return Launch(row.id, row.clinic_id, row.patient_id, row.encounter_id) if row else None

    # -- replay and revocation -----------------------------------------------------------------
    def remember_jti(self, client_id: str, jti: str, expires: int) -> bool:
        """Record a client assertion's jti until it expires; False when it was seen before."""
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(used_jti).values(client_id=client_id, jti=jti[:255], expires=at(expires)))
        except IntegrityError:
            return False
        return True

    def revoke_access_token(self, jti: str, expires: int) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(revoked_token).values(jti=jti, expires=at(expires)))
        except IntegrityError:
            pass  # revoked already

    def access_token_revoked(self, jti: str) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(select(revoked_token.c.jti).where(revoked_token.c.jti == jti)).first() is not None

    def purge_expired(self) -> None:
        """Drop flow state past its lifetime (jtis may go once the assertion could no longer pass)."""
        now = utcnow()
        with self.engine.begin() as connection:
            for table in (authz_request, authz_code, used_jti, revoked_token, launch_context, refresh_token):
                connection.execute(delete(table).where(table.c.expires < now))
