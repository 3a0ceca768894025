"""row-level security on resource and resource_version, keyed by the request's clinic

Revision ID: 0013
Revises: 0012

DESIGN.md section 3 (issue 5, point 10): a second line of defence behind the access predicates
(store/compile_access.py). On PostgreSQL only; a no-op on SQLite. store/row_security.py keys a
clinic's unit of work: it switches to the role `fhir_clinic_scope` (NOLOGIN, NOSUPERUSER,
NOBYPASSRLS: the policies bind it) and sets `fhir.clinic`. The policy on `resource` lets a keyed
request touch a row (read, and write: the same expression is the WITH CHECK) when

- its clinic owns or contributed it (owner_clinic, contributor_clinic: interactions/ownership.py;
  an AuditEvent written in a clinic's write transaction is owned by that clinic too), or
- it belongs to a patient registered at the clinic (a `registration` row, in force or not: the
  consent and the period are the first line's business), or it is such a patient's Patient, or
- it has no owner at all (shared data: Organizations, ValueSets, ...),

a superset of what the access policy grants a clinic (and of the name-only view of a registered
patient). A `resource_version` row follows its current `resource` row (whose policy applies inside
the EXISTS). Unkeyed requests (no `fhir.clinic`: the operator, patients, platform admins, jobs)
pass as before, except under the scope role itself, which without a key sees only ownerless rows.
FORCE binds the tables' owner too when it is not a superuser (then `pg_dump` as that owner needs
--enable-row-security; unkeyed, the policies hide nothing from it).

The role is cluster-global: created when missing, tolerating a parallel migration of another
database creating it at the same moment, and granted to the migrating user so that it may SET ROLE
(a user without CREATEROLE fails here with what a superuser should run instead). Its table and
sequence privileges are granted by store/row_security.grant_scope at the end of every migration
run (store/migrate.py), so that tables added by later migrations are covered whoever creates them
(default privileges would cover only those created by the same user).
"""

from alembic import op
from sqlalchemy.exc import DBAPIError

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

ROLE = "fhir_clinic_scope"
_CLINIC = "current_setting('fhir.clinic', true)"
_UNKEYED = f"(coalesce({_CLINIC}, '') = '' AND current_user <> '{ROLE}')"
_RESOURCE_POLICY = f"""
    {_UNKEYED}
    OR owner_clinic = {_CLINIC}
    OR contributor_clinic = {_CLINIC}
    OR (owner_patient IS NULL AND owner_clinic IS NULL AND contributor_clinic IS NULL)
    OR (owner_patient IS NOT NULL AND EXISTS (
        SELECT 1 FROM registration r WHERE r.patient_id = resource.owner_patient AND r.clinic_id = {_CLINIC}
        OFFSET 0))
    OR (resource_type = 'Patient' AND EXISTS (
        SELECT 1 FROM registration r WHERE r.patient_id = resource.id AND r.clinic_id = {_CLINIC}
        OFFSET 0))
"""
_VERSION_POLICY = f"""
    {_UNKEYED}
    OR EXISTS (SELECT 1 FROM resource r WHERE r.resource_type = resource_version.resource_type
               AND r.id = resource_version.id OFFSET 0)
"""
_CREATE_ROLE = f"""
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{ROLE}') THEN
        CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT NOCREATEDB NOCREATEROLE;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- another database's migration created it meanwhile
END $$
"""
_GRANT_ROLE = f"""
DO $$
BEGIN
    IF NOT pg_has_role(current_user, '{ROLE}', '{{privilege}}') THEN
        EXECUTE 'GRANT {ROLE} TO ' || quote_ident(current_user);
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$
"""
_REVOKE = f"""
DO $$
BEGIN
    EXECUTE 'REVOKE ALL ON ALL TABLES IN SCHEMA ' || quote_ident(current_schema()) || ' FROM {ROLE}';
    EXECUTE 'REVOKE ALL ON ALL SEQUENCES IN SCHEMA ' || quote_ident(current_schema()) || ' FROM {ROLE}';
    EXECUTE 'REVOKE ALL ON SCHEMA ' || quote_ident(current_schema()) || ' FROM {ROLE}';
END $$
"""


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "postgresql":
        return
    version = int(bind.exec_driver_sql("SHOW server_version_num").scalar_one())
    try:
        op.execute(_CREATE_ROLE)
        op.execute(_GRANT_ROLE.format(privilege="SET" if version >= 160000 else "MEMBER"))
    except DBAPIError as error:
        if getattr(error.orig, "sqlstate", None) != "42501":  # insufficient_privilege
            raise
        raise RuntimeError(
            f"row-level security needs the role {ROLE}, which this database user may not create or grant; "
            f"as a superuser run: CREATE ROLE {ROLE} NOLOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT; "
            f"GRANT {ROLE} TO <this user>"
        ) from error
    for table, policy in (("resource", _RESOURCE_POLICY), ("resource_version", _VERSION_POLICY)):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY clinic_scope ON {table} USING ({policy}) WITH CHECK ({policy})")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in ("resource_version", "resource"):
        op.execute(f"DROP POLICY IF EXISTS clinic_scope ON {table}")
        op.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute(_REVOKE)
