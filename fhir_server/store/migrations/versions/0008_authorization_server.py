"""authorization server: accounts, clients, signing keys, OAuth flow state

Revision ID: 0008
Revises: 0007

The tables of store/auth_schema.py (SMART App Launch 2.x built-in authorization server).
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def _expiring(name: str, *columns: sa.Column, primary: list[str]) -> None:
    op.create_table(
        name, *columns, sa.Column("expires", sa.DateTime(), nullable=False), sa.PrimaryKeyConstraint(*primary)
    )


def upgrade() -> None:
    op.create_table(
        "account",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("fhir_user", sa.String(length=140), nullable=True),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_last_step", sa.Integer(), nullable=True),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.DateTime(), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "membership",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("account_id", "clinic_id", "role"),
    )
    op.create_table(
        "proxy_link",
        sa.Column("account_id", sa.String(length=36), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("related_person_id", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("account_id", "patient_id"),
    )
    op.create_table(
        "oauth_client",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=True),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("jwks_uri", sa.Text(), nullable=True),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("scopes", sa.Text(), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=True),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("client_id"),
    )
    op.create_table(
        "signing_key",
        sa.Column("kid", sa.String(length=64), nullable=False),
        sa.Column("alg", sa.String(length=16), nullable=False),
        sa.Column("private_pem", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("kid"),
    )
    _flow_tables()


def _flow_tables() -> None:
    _expiring(
        "authz_request",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("binding_hash", sa.String(length=64), nullable=False),
        sa.Column("csrf", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        primary=["id"],
    )
    _expiring(
        "authz_code",
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=36), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        primary=["code_hash"],
    )
    _expiring(
        "refresh_token",
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("family", sa.String(length=36), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        primary=["token_hash"],
    )
    _expiring(
        "launch_context",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("encounter_id", sa.String(length=64), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=False),
        primary=["id"],
    )
    _expiring(
        "used_jti",
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("jti", sa.String(length=255), nullable=False),
        primary=["client_id", "jti"],
    )
    _expiring("revoked_token", sa.Column("jti", sa.String(length=64), nullable=False), primary=["jti"])
    op.create_index("ix_authz_request_expires", "authz_request", ["expires"])
    op.create_index("ix_authz_code_expires", "authz_code", ["expires"])
    op.create_index("ix_refresh_token_family", "refresh_token", ["family"])
    op.create_index("ix_used_jti_expires", "used_jti", ["expires"])
    op.create_index("ix_revoked_token_expires", "revoked_token", ["expires"])


def downgrade() -> None:
    for table in ("revoked_token", "used_jti", "launch_context", "refresh_token", "authz_code", "authz_request"):
        op.drop_table(table)
    for table in ("signing_key", "oauth_client", "proxy_link", "membership", "account"):
        op.drop_table(table)
