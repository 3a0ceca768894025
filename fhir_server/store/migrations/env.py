"""Alembic environment: runs migrations on the connection or URL handed over by store.migrate."""

from __future__ import annotations

from alembic import context

import fhir_server.store.auth_schema  # noqa: F401  (registers the authorization server tables)
import fhir_server.store.protection  # noqa: F401  (registers the protection_key table)
from fhir_server.store.schema import metadata

config = context.config
connection = config.attributes.get("connection")

if connection is None:
    raise RuntimeError("run migrations through fhir_server.store.migrate")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
