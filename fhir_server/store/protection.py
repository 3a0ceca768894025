"""The store's side of field encryption: keys, sealing on write, revealing on read, hashed rows.

Issue 5 point 9 (model/protect.py for the cryptography, model/sensitive.py for which values).
The repository calls this in one place per direction: every content it writes (current row and
version) is sealed, every content it reads is revealed, every index row marked `secret` gets the
keyed hash in place of the value, and search values marked protected are hashed before compiling
(compile_protected.py). Above the store, resources are always in clear; in the database, never.

Keys: `FHIR_ENCRYPTION_KEYS` / `FHIR_SEARCH_HASH_KEYS` (settings.py) when set; the keys in the
`protection_key` table otherwise (migration 0011 generates one of each, so every worker process
shares them; `fhir-server keys rotate` adds newer ones). Database keys stay readable alongside
configured ones, so moving from one to the other loses nothing. Each process caches the keys and
reads the table again after `key_refresh_seconds`, and at once when an envelope names a key id
it does not know.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import threading
import time
import weakref
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, ClassVar, Protocol, TypeVar

from sqlalchemy import Column, DateTime, Integer, String, Table, delete, func, insert, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from fhir_server.errors import Internal
from fhir_server.model.protect import (
    MARK_BYTES,
    Keyring,
    Undecryptable,
    blind,
    blinds,
    decode_key,
    new_secret,
    parse_keyring,
)
from fhir_server.model.sensitive import SensitiveFields, reveal, seal_content
from fhir_server.search.clauses import IndexRow
from fhir_server.settings import Settings
from fhir_server.store.schema import metadata

log = logging.getLogger("fhir_server.protection")

ENCRYPTION, SEARCH_HASH = "encryption", "search-hash"
PURPOSES = {ENCRYPTION: "k", SEARCH_HASH: "h"}  # purpose -> prefix of database key ids (k1, h1...)

protection_key = Table(
    "protection_key",
    metadata,
    Column("purpose", String(16), primary_key=True),
    Column("kid", String(32), primary_key=True),
    Column("serial", Integer, nullable=False),  # the newest (highest) is current
    Column("secret", String(64), nullable=False),  # base64 of 32 bytes
    Column("created", DateTime, nullable=False),
)


class Versioned(Protocol):
    """What sealing and revealing read of a repository.StoredVersion (a dataclass)."""

    __dataclass_fields__: ClassVar[dict[str, Any]]

    @property
    def resource_type(self) -> str: ...

    @property
    def id(self) -> str: ...

    @property
    def content(self) -> bytes | None: ...


Stored = TypeVar("Stored", bound=Versioned)


@dataclass(frozen=True)
class Keys:
    encryption: Keyring
    hashing: Keyring


class Protection:
    """One per database (engine): its keys and the sensitive-field configuration."""

    def __init__(self, engine: Engine, settings: Settings | None = None) -> None:
        settings = settings or Settings()
        self.engine = engine
        self.fields = SensitiveFields.with_extra(settings.national_identifier_systems)
        self._configured = {
            ENCRYPTION: parse_keyring(settings.encryption_keys) if settings.encryption_keys else None,
            SEARCH_HASH: parse_keyring(settings.search_hash_keys) if settings.search_hash_keys else None,
        }
        self._refresh = settings.key_refresh_seconds
        self._keys: Keys | None = None
        self._loaded = 0.0
        self._lock = threading.Lock()

    # --- keys ----------------------------------------------------------------------------------

    def keys(self) -> Keys:
        keys = self._keys
        if keys is None or time.monotonic() - self._loaded > self._refresh:
            keys = self.reload()
        return keys

    def reload(self) -> Keys:
        with self._lock:
            with self.engine.connect() as connection:
                # A reader (SQLite: a deferred BEGIN), since it may run while this thread holds
                # the write lock in another connection; the flag lives on the pooled connection.
                connection.info["read_only"] = True
                try:
                    stored = stored_keys(connection)
                finally:
                    connection.rollback()
                    connection.info["read_only"] = False
            self._keys = Keys(self._ring(ENCRYPTION, stored), self._ring(SEARCH_HASH, stored))
            self._loaded = time.monotonic()
            return self._keys

    def _ring(self, purpose: str, stored: dict[str, list[tuple[str, bytes]]]) -> Keyring:
        configured = self._configured[purpose]
        from_db = stored.get(purpose, [])
        if configured is None and not from_db:
            raise Internal(f"No {purpose} key: run `fhir-server migrate`", "protection-key-missing")
        entries = list(configured.keys.items()) if configured else []
        entries += [(kid, secret) for kid, secret in from_db if configured is None or kid not in configured.keys]
        return Keyring.of(entries)

    # --- content -------------------------------------------------------------------------------

    def sealed(self, stored: Stored) -> Stored:
        """`stored` (a StoredVersion) with its content's protected values sealed."""
        content = stored.content
        if content is None:
            return stored
        sealed = seal_content(content, stored.resource_type, stored.id, self.keys().encryption, self.fields)
        return stored if sealed is content else replace(stored, content=sealed)

    def revealed(self, stored: Stored) -> Stored:
        """`stored` with its content in clear; itself when it holds no envelope."""
        content = stored.content
        if content is None or MARK_BYTES not in content:
            return stored
        return replace(stored, content=self.reveal(stored.resource_type, stored.id, content))

    def reveal(self, resource_type: str, resource_id: str, content: bytes) -> bytes:
        """Stored JSON in clear; a key this process does not know yet is read once more; a value
        that does not open is a 500 naming nothing but the resource."""
        try:
            return reveal(content, resource_type, resource_id, self.keys().encryption)
        except Undecryptable as first:
            if first.kid is None or first.kid in self.keys().encryption.keys:
                return self._undecryptable(resource_type, resource_id, first)
        try:
            return reveal(content, resource_type, resource_id, self.reload().encryption)
        except Undecryptable as again:
            return self._undecryptable(resource_type, resource_id, again)

    @staticmethod
    def _undecryptable(resource_type: str, resource_id: str, problem: Undecryptable) -> bytes:
        # The reason names a key id at most: never a value, a ciphertext or a key.
        log.error("a stored value of %s/%s could not be decrypted: %s", resource_type, resource_id, problem)
        raise Internal(f"A stored value of {resource_type}/{resource_id} could not be decrypted", "decryption-failed")

    # --- hashes --------------------------------------------------------------------------------

    def row_values(self, row: IndexRow) -> dict[str, Any]:
        """An index row's columns, the protected part of `code` replaced by its keyed hash."""
        if row.secret is None:
            return row.values
        code = row.values["code"]
        return {**row.values, "code": code[: row.secret] + blind(self.keys().hashing, code[row.secret :])}

    def search_hashes(self, value: str) -> tuple[str, ...]:
        """A search value's hashes under every search-hash key (current first)."""
        return blinds(self.keys().hashing, value)

    def keyed(self, text: str) -> str:
        """`text` (a lock key that may be derived from protected values) as a keyed hash (as is:
        not normalised like a search value)."""
        hashing = self.keys().hashing
        return hmac.new(hashing.keys[hashing.current], text.encode(), hashlib.sha256).hexdigest()


_SHARED: weakref.WeakKeyDictionary[Engine, Protection] = weakref.WeakKeyDictionary()
_SHARED_LOCK = threading.Lock()


def protection_for(engine: Engine, settings: Settings | None = None) -> Protection:
    """The engine's Protection: built from `settings` when given (and then shared by every Store
    on the same engine), else the one already shared, else one from the environment's settings."""
    with _SHARED_LOCK:
        if settings is not None or engine not in _SHARED:
            _SHARED[engine] = Protection(engine, settings)
        return _SHARED[engine]


# --- the key table -------------------------------------------------------------------------------


def stored_keys(connection: Connection) -> dict[str, list[tuple[str, bytes]]]:
    """Database keys by purpose, newest (current) first."""
    query = select(protection_key).order_by(protection_key.c.purpose, protection_key.c.serial.desc())
    found: dict[str, list[tuple[str, bytes]]] = {}
    for row in connection.execute(query):
        found.setdefault(row.purpose, []).append((row.kid, decode_key(row.kid, row.secret)))
    return found


def add_key(connection: Connection, purpose: str) -> str:
    """A new random database key for `purpose`, made current; returns its id."""
    serial = connection.execute(
        select(func.coalesce(func.max(protection_key.c.serial), 0)).where(protection_key.c.purpose == purpose)
    ).scalar_one()
    kid = f"{PURPOSES[purpose]}{serial + 1}"
    secret = base64.b64encode(new_secret()).decode()
    created = datetime.now(UTC).replace(tzinfo=None)
    try:
        connection.execute(
            insert(protection_key).values(purpose=purpose, kid=kid, serial=serial + 1, secret=secret, created=created)
        )
    except IntegrityError:
        raise Internal("Another process added a key at the same moment: try again", "protection-key-race") from None
    return kid


def remove_key(connection: Connection, purpose: str, kid: str) -> bool:
    return bool(
        connection.execute(
            delete(protection_key).where(protection_key.c.purpose == purpose, protection_key.c.kid == kid)
        ).rowcount
    )
