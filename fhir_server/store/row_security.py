"""PostgreSQL row-level security: the second line of defence behind the access predicates
(DESIGN.md section 3; issue 5, point 10).

The first line is compile_access.py: every query the store builds carries the caller's
`Visibility` as a predicate. Should a query ever be built without it (a bug in a compiler, a new
read path that forgets `_narrow`), the database itself still refuses another clinic's rows: the
policies of migration 0013 on `resource` and `resource_version` are keyed by the setting
`fhir.clinic`, which a clinic's unit of work sets, after switching to the role `ROLE` (no login,
no superuser, no BYPASSRLS: the policies bind it even where the login role would bypass them).

The policies are a superset of what the access policy lets a clinic reach: rows it owns or
contributed, rows of patients registered at it (whatever their consent), and rows without any
owner (shared data: Organizations, ValueSets, ...). Unkeyed work (the local operator, patients,
platform admins, jobs, the audit writer) runs as the login role with no key, and the policies let
it through as before. The role with no key sees only rows without owner (fail closed).

Keying is per unit of work: in a write's transaction with `set_config(..., true)` (undone by its
COMMIT or ROLLBACK whatever happens); for a read, which runs in autocommit without a transaction,
at session level and undone in a `finally` before the connection goes back to the pool (a
connection whose undoing failed is invalidated, never reused).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import text
from sqlalchemy.engine import Connection

from fhir_server.access import Visibility

ROLE = "fhir_clinic_scope"
KEY = "fhir.clinic"

_KEY_TRANSACTION = text(f"SELECT set_config('role', '{ROLE}', true), set_config('{KEY}', :clinic, true)")
_KEY_SESSION = text(f"SELECT set_config('role', '{ROLE}', false), set_config('{KEY}', :clinic, false)")
_UNKEY_SESSION = text(f"SELECT set_config('role', 'none', false), set_config('{KEY}', '', false)")


def clinic_key(visibility: Visibility) -> str | None:
    """The clinic a unit of work is keyed for: the acting clinic, or the clinic of its grants;
    None for unrestricted or clinic-less callers (they run unkeyed)."""
    if visibility.unrestricted:
        return None
    clinics = {grant.clinic for grant in visibility.grants if grant.clinic is not None}
    if visibility.acting_clinic is not None:
        clinics.add(visibility.acting_clinic)
    if len(clinics) > 1:  # the policy never grants two clinics at once; one key cannot say both
        raise ValueError(f"a unit of work is keyed for one clinic, not {sorted(clinics)}")
    return clinics.pop() if clinics else None


def key_transaction(connection: Connection, clinic: str) -> None:
    """Switches the open transaction to the clinic's scope until it ends."""
    connection.execute(_KEY_TRANSACTION, {"clinic": clinic})


@contextmanager
def keyed_session(connection: Connection, clinic: str) -> Iterator[None]:
    """The connection in the clinic's scope (autocommit reads), back to the login role and no key
    on leaving, whatever happened inside."""
    try:
        connection.execute(_KEY_SESSION, {"clinic": clinic})
        yield
    finally:
        unkey_session(connection)


def unkey_session(connection: Connection) -> None:
    try:
        connection.execute(_UNKEY_SESSION)
    except BaseException:
        connection.invalidate()  # never hand a possibly keyed connection back to the pool
        raise


def scope(connection: Connection) -> tuple[str, str | None]:
    """The role and key a connection runs with now (tests, diagnostics)."""
    row = connection.execute(text(f"SELECT current_user, current_setting('{KEY}', true)")).one()
    return str(row[0]), row[1] or None


def grant_scope(connection: Connection) -> None:
    """Lets the role reach every table and sequence of the schema (it needs what the store's units
    of work touch, and later migrations add tables): granted where anything is missing, so that
    an upgrade with nothing new changes no catalog row. Runs at the end of every migration run
    (migrate.upgrade), after the role exists (migration 0013); then checks that the login role may
    switch to it, so that a database user without that right fails at startup, not at the first
    clinic request."""
    if connection.dialect.name != "postgresql":
        return
    if connection.execute(text("SELECT 1 FROM pg_roles WHERE rolname = :role"), {"role": ROLE}).first() is None:
        return  # before migration 0013
    schema = connection.execute(text("SELECT current_schema()")).scalar_one()
    missing = connection.execute(
        text(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = :schema AND ("
            " (c.relkind IN ('r', 'p') AND NOT (has_table_privilege(:role, c.oid, 'SELECT')"
            "  AND has_table_privilege(:role, c.oid, 'INSERT') AND has_table_privilege(:role, c.oid, 'UPDATE')"
            "  AND has_table_privilege(:role, c.oid, 'DELETE')))"
            " OR (c.relkind = 'S' AND NOT (has_sequence_privilege(:role, c.oid, 'USAGE')"
            "  AND has_sequence_privilege(:role, c.oid, 'UPDATE'))))"
            " OR NOT has_schema_privilege(:role, :schema, 'USAGE') LIMIT 1"
        ),
        {"schema": schema, "role": ROLE},
    ).first()
    if missing is not None:
        quoted = connection.dialect.identifier_preparer.quote(schema)
        connection.execute(text(f"GRANT USAGE ON SCHEMA {quoted} TO {ROLE}"))
        connection.execute(text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {quoted} TO {ROLE}"))
        connection.execute(text(f"GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA {quoted} TO {ROLE}"))
    check_can_switch(connection)


def check_can_switch(connection: Connection) -> None:
    """The role binds the policies (no superuser, no BYPASSRLS) and the login role may switch to it."""
    bypasses = connection.execute(
        text("SELECT rolsuper OR rolbypassrls FROM pg_roles WHERE rolname = :role"), {"role": ROLE}
    ).scalar_one()
    if bypasses:
        raise RuntimeError(f"row-level security: the role {ROLE} is a superuser or BYPASSRLS, unbound by the policies")
    version = int(connection.execute(text("SHOW server_version_num")).scalar_one())
    privilege = "SET" if version >= 160000 else "MEMBER"  # PostgreSQL 16 separates SET from membership
    allowed = connection.execute(
        text("SELECT pg_has_role(current_user, :role, :privilege)"), {"role": ROLE, "privilege": privilege}
    ).scalar_one()
    if not allowed:
        user = connection.execute(text("SELECT current_user")).scalar_one()
        raise RuntimeError(
            f"row-level security: the database user {user!r} may not SET ROLE {ROLE}; "
            f"as a superuser run: GRANT {ROLE} TO {user}"
        )
