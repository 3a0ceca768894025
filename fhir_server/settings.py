"""Settings from the environment (prefix FHIR_), with defaults that run on a fresh machine."""

from __future__ import annotations

from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FHIR_")

    database_url: str = "sqlite:///./var/fhir.db"
    base_path: str = "/fhir"
    # The public base URL when behind a proxy; by default taken from each request.
    public_base_url: str | None = None
    max_body_bytes: int = 16 * 1024 * 1024
    max_json_depth: int = 64
    max_bundle_entries: int = 10_000
    default_page_size: int = 50
    max_page_size: int = 1_000
    db_pool_size: int = 20
    # Threads per process running database work. Few threads mean less GIL contention (reads
    # measured 25% cheaper with 2 than with anyio's default 40); several let commits group.
    worker_threads: int = 6
    log_level: str = "INFO"
    # The local operator: an unauthenticated caller on a loopback address sees everything. Off:
    # every FHIR request needs a bearer token. On only for tests and benchmarks of the API itself
    # (api/bearer.py); `serve` then refuses to listen beyond loopback.
    allow_unauthenticated_loopback: bool = False
    # SMART authorization server (SMART App Launch 2.x): token lifetimes in seconds, login lockout.
    access_token_seconds: int = 600
    refresh_token_seconds: int = 30 * 24 * 3600  # offline_access
    online_refresh_seconds: int = 12 * 3600  # online_access
    impersonation_token_seconds: int = 300  # a platform admin's token exchange (authserver/exchange.py)
    login_max_failures: int = 5
    login_lock_seconds: int = 15 * 60
    # `fhir-server serve` on a database without accounts creates the demo clinic, users and app.
    seed_demo: bool = True
    # An AuditEvent for every FHIR interaction and operation (interactions/auditing.py).
    audit: bool = True
    # Field encryption (model/protect.py, model/sensitive.py; README "Field encryption"): keyrings
    # of `kid:base64key` entries (comma-separated, or JSON), the first one current. Unset: keys
    # generated once and kept in the database (table protection_key), shared by every process.
    encryption_keys: str | None = None  # AES-256-GCM keys of the stored envelopes
    search_hash_keys: str | None = None  # HMAC-SHA256 keys of the searchable hashes (separate keys)
    # Identifier systems treated as national ids, in addition to model/sensitive.py's table.
    national_identifier_systems: str = ""
    # How long a process trusts the keys it read from the database before reading them again
    # (a key added by `fhir-server keys rotate` in another process is picked up within this time,
    # and at once when an envelope names a key this process has not seen).
    key_refresh_seconds: float = 30.0
