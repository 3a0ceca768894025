"""keys of field encryption and of searchable hashes

Revision ID: 0011
Revises: 0010

Issue 5 point 9 (store/protection.py): when no keys are configured (`FHIR_ENCRYPTION_KEYS`,
`FHIR_SEARCH_HASH_KEYS`), the database keeps them, so that every worker process shares them. One
AES-256 key (`k1`) and one HMAC-SHA256 key (`h1`) are generated here, once; `fhir-server keys
rotate` adds newer ones (the highest serial of a purpose is current).
"""

import base64
import os
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "protection_key",
        sa.Column("purpose", sa.String(16), primary_key=True),
        sa.Column("kid", sa.String(32), primary_key=True),
        sa.Column("serial", sa.Integer, nullable=False),
        sa.Column("secret", sa.String(64), nullable=False),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    created = datetime.now(UTC).replace(tzinfo=None)
    op.bulk_insert(
        table,
        [
            {
                "purpose": purpose,
                "kid": kid,
                "serial": 1,
                "secret": base64.b64encode(os.urandom(32)).decode(),
                "created": created,
            }
            for purpose, kid in (("encryption", "k1"), ("search-hash", "h1"))
        ],
    )


def downgrade() -> None:
    op.drop_table("protection_key")
