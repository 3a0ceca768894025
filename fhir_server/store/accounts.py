"""SQL for the authorization server's people and clients (SMART App Launch 2.x, RFC 6749 section 2).

Accounts (email lower-cased and unique, Argon2 hash, TOTP state, lockout counters), clinic
memberships, proxy links to dependents, and registered OAuth clients. Each method is one
transaction. Patient lookups for the patient picker read the current Patient rows and the
`name` string index directly.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, insert, or_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from fhir_server.errors import Conflict
from fhir_server.store.auth_schema import account, membership, oauth_client, proxy_link
from fhir_server.store.schema import resource


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Account:
    id: str
    email: str
    password_hash: str
    kind: str
    fhir_user: str | None
    totp_secret: str | None
    totp_last_step: int | None
    failed_logins: int
    locked_until: datetime | None

    def locked(self, now: datetime | None = None) -> bool:
        return self.locked_until is not None and self.locked_until > (now or utcnow())


@dataclass(frozen=True)
class Membership:
    clinic_id: str
    role: str


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    kind: str  # public | confidential-symmetric | confidential-asymmetric | backend-service
    secret_hash: str | None = None
    jwks: dict[str, Any] | None = None
    jwks_uri: str | None = None
    redirect_uris: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()
    clinic_id: str | None = None


def _account(row: Any) -> Account:
    m = row._mapping
    return Account(
        m["id"],
        m["email"],
        m["password_hash"],
        m["kind"],
        m["fhir_user"],
        m["totp_secret"],
        m["totp_last_step"],
        m["failed_logins"],
        m["locked_until"],
    )


def _client(row: Any) -> Client:
    m = row._mapping
    return Client(
        client_id=m["client_id"],
        name=m["name"],
        kind=m["kind"],
        secret_hash=m["secret_hash"],
        jwks=json.loads(m["jwks"]) if m["jwks"] else None,
        jwks_uri=m["jwks_uri"],
        redirect_uris=tuple(json.loads(m["redirect_uris"])),
        scopes=tuple(m["scopes"].split()),
        clinic_id=m["clinic_id"],
    )


class Accounts:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def create_account(
        self, email: str, password_hash: str, kind: str, fhir_user: str | None, totp_secret: str | None = None
    ) -> Account:
        account_id = str(uuid.uuid4())
        values: dict[str, Any] = {
            "id": account_id,
            "email": email.strip().lower(),
            "password_hash": password_hash,
            "kind": kind,
            "fhir_user": fhir_user,
            "totp_secret": totp_secret,
            "totp_last_step": None,
            "failed_logins": 0,
            "locked_until": None,
            "created": utcnow(),
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(account).values(values))
        except IntegrityError:
            raise Conflict(f"An account with email {values['email']} exists already", "account-exists") from None
        found = self.by_id(account_id)
        assert found is not None
        return found

    def add_membership(self, account_id: str, clinic_id: str, role: str) -> None:
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(membership).values(account_id=account_id, clinic_id=clinic_id, role=role))
        except IntegrityError:
            pass  # the same role in the same clinic twice is the same membership

    def add_proxy(self, account_id: str, patient_id: str, related_person_id: str | None) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                insert(proxy_link).values(
                    account_id=account_id, patient_id=patient_id, related_person_id=related_person_id
                )
            )

    def remove_proxy(self, account_id: str, patient_id: str) -> bool:
        """Ends an account's authority to act for a dependent; False when it had none."""
        with self.engine.begin() as connection:
            removed = connection.execute(
                delete(proxy_link).where(proxy_link.c.account_id == account_id, proxy_link.c.patient_id == patient_id)
            )
        return bool(removed.rowcount)

    def by_email(self, email: str) -> Account | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(account).where(account.c.email == email.strip().lower())).first()
        return _account(row) if row else None

    def by_id(self, account_id: str) -> Account | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(account).where(account.c.id == account_id)).first()
        return _account(row) if row else None

    def patient_account(self, patient_id: str) -> Account | None:
        """The patient account whose fhirUser is this Patient (the oldest, should there be several)."""
        query = (
            select(account)
            .where(account.c.kind == "patient", account.c.fhir_user == f"Patient/{patient_id}")
            .order_by(account.c.created, account.c.id)
        )
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return _account(row) if row else None

    def count(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(account)).scalar_one())

    def memberships(self, account_id: str) -> list[Membership]:
        query = select(membership.c.clinic_id, membership.c.role).where(membership.c.account_id == account_id)
        with self.engine.connect() as connection:
            rows = connection.execute(query.order_by(membership.c.clinic_id, membership.c.role))
            return [Membership(row.clinic_id, row.role) for row in rows]

    def dependents(self, account_id: str) -> list[str]:
        query = select(proxy_link.c.patient_id).where(proxy_link.c.account_id == account_id)
        with self.engine.connect() as connection:
            return [row.patient_id for row in connection.execute(query.order_by(proxy_link.c.patient_id))]

    def record_failure(self, account_id: str, max_failures: int, lock_seconds: int) -> bool:
        """Count a failed login; at `max_failures` lock the account and start counting again."""
        with self.engine.begin() as connection:
            failures = connection.execute(
                select(account.c.failed_logins).where(account.c.id == account_id)
            ).scalar_one()
            if failures + 1 >= max_failures:
                until = utcnow() + timedelta(seconds=lock_seconds)
                values: dict[str, Any] = {"failed_logins": 0, "locked_until": until}
            else:
                values = {"failed_logins": failures + 1}
            connection.execute(update(account).where(account.c.id == account_id).values(values))
        return "locked_until" in values

    def record_success(self, account_id: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                update(account).where(account.c.id == account_id).values(failed_logins=0, locked_until=None)
            )

    def use_totp_step(self, account_id: str, step: int) -> bool:
        """Record the TOTP step just used; False when it (or a later one) was used already."""
        with self.engine.begin() as connection:
            result = connection.execute(
                update(account)
                .where(
                    account.c.id == account_id,
                    or_(account.c.totp_last_step.is_(None), account.c.totp_last_step < step),
                )
                .values(totp_last_step=step)
            )
        return bool(result.rowcount == 1)

    def create_client(self, client: Client) -> Client:
        values = {
            "client_id": client.client_id,
            "name": client.name,
            "kind": client.kind,
            "secret_hash": client.secret_hash,
            "jwks": json.dumps(client.jwks) if client.jwks is not None else None,
            "jwks_uri": client.jwks_uri,
            "redirect_uris": json.dumps(list(client.redirect_uris)),
            "scopes": " ".join(client.scopes),
            "clinic_id": client.clinic_id,
            "created": utcnow(),
        }
        try:
            with self.engine.begin() as connection:
                connection.execute(insert(oauth_client).values(values))
        except IntegrityError:
            raise Conflict(f"A client with client_id {client.client_id} exists already", "client-exists") from None
        return client

    def client(self, client_id: str) -> Client | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(oauth_client).where(oauth_client.c.client_id == client_id)).first()
        return _client(row) if row else None

    def patients(self, ids: list[str]) -> dict[str, bytes]:
        """The current content of these Patients (deleted ones left out)."""
        if not ids:
            return {}
        query = select(resource.c.id, resource.c.content).where(
            resource.c.resource_type == "Patient", resource.c.id.in_(ids), resource.c.deleted.is_(False)
        )
        with self.engine.connect() as connection:
            return {row.id: row.content for row in connection.execute(query) if row.content}
